"""Shared fixtures: real processes with distinctive argv and environment."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each test run starts with an empty profile cache: tests that check where symbols come from
# must not see profiles an earlier run left behind (child processes inherit this).
# It is removed when the run ends (atexit: pytest-xdist workers and plain runs alike).
_PROFILE_DIR = tempfile.mkdtemp(prefix="kvmfx-profiles-")
os.environ["KVMFX_PROFILE_DIR"] = _PROFILE_DIR
atexit.register(shutil.rmtree, _PROFILE_DIR, ignore_errors=True)
# ... and the entry points kvmfx finds are remembered there too, not in the user's cache
# (tests run kvmfx with search paths of their own, each of which would leave a file)
os.environ.setdefault("KVMFX_ENTRY_POINT_CACHE", os.path.join(_PROFILE_DIR,
                                                              "entry-points.json"))

# KVMFX_FIXTURE_NO_BUILD=1: use the fixtures already built, never boot a guest to build one
# (several test runs sharing one cache while the factory changes elsewhere).
if os.environ.get("KVMFX_FIXTURE_NO_BUILD"):
    import tests.factory as _factory

    def _no_boot(scenario: object, *args: object, **kwargs: object) -> float:
        raise _factory.FactoryError(
            f"fixture {getattr(scenario, 'name', scenario)!r} is not built for this tree's "
            "factory and KVMFX_FIXTURE_NO_BUILD is set")

    _factory.boot_and_dump = _no_boot  # type: ignore[assignment]

#: argv of the marked process: spaces, unicode, empty strings, 200 arguments.
MARK_ARGS = ["a", "b c", "", "ünïcødé ✓", "tab\there", *[f"arg{i:03d}" for i in range(200)],
             ""]
MARK_ENV = {"KVMFX_MARK": "1", "KVMFX_SPACES": "x y  z", "KVMFX_UNICODE": "ğüş", "EMPTY": "",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture(scope="session")
def marked_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose argv/environment tests compare against /proc."""
    argv = [sys.executable, "-c", "import time; time.sleep(600)", *MARK_ARGS]
    proc = subprocess.Popen(argv, env=MARK_ENV, stdin=subprocess.DEVNULL)
    # Wait until the interpreter has exec'd (its cmdline is final).
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] == \
                    os.fsencode(sys.executable):
                break
        except OSError:
            pass
        time.sleep(0.02)
    yield proc
    proc.kill()
    proc.wait()


def proc_vector(pid: int, name: str) -> list[str]:
    raw = Path(f"/proc/{pid}/{name}").read_bytes()
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [b.decode("utf-8", "backslashreplace") for b in raw.split(b"\0")] if raw else []


# -- limits that hold for any input (issue: hostile input) ----------------------------------
#: Every hostile case must finish within this wall time and peak resident memory.
HOSTILE_SECONDS = 5.0
HOSTILE_RSS_MIB = 500
#: Where to write each case's figures (for docs/robustness.md), if set.
LIMITS_REPORT = os.environ.get("KVMFX_LIMITS_REPORT")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_bounded(fn: object, name: str, seconds: float = HOSTILE_SECONDS,
                rss_mib: int = HOSTILE_RSS_MIB) -> dict[str, float]:
    """Run ``fn()`` in a forked child; fail if it raises, runs longer than ``seconds`` or
    its resident memory grows by ``rss_mib`` MiB or more (the child's high-water mark less
    its resident size when it started, which it shares with this process)."""
    import json
    import signal
    import traceback

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the case, report a failure through the pipe
        os.close(read_fd)
        code = 0
        # what the child shares with this process at the start (not the case's own use)
        os.write(write_fd, f"{_rss_kib()}\n".encode())
        try:
            fn()  # type: ignore[operator]
        except BaseException:  # noqa: BLE001 - everything goes back to the parent
            os.write(write_fd, traceback.format_exc()[-6000:].encode())
            code = 1
        os.close(write_fd)
        os._exit(code)
    os.close(write_fd)
    start = time.monotonic()
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        elapsed = time.monotonic() - start
        if done:
            break
        if elapsed > seconds:
            os.kill(pid, signal.SIGKILL)
            os.wait4(pid, 0)
            os.close(read_fd)
            pytest.fail(f"{name}: still running after {seconds} s (a hang or unbounded work)")
        time.sleep(0.005)
    with os.fdopen(read_fd, "rb") as pipe:
        baseline, _, report = pipe.read().decode("utf-8", "replace").partition("\n")
    # the case's own peak: the child's high-water mark less what it started with
    peak = (usage.ru_maxrss - int(baseline or 0)) / 1024
    figures = {"seconds": round(elapsed, 3), "peak_rss_mib": round(peak, 1),
               "rss_at_start_mib": round(int(baseline or 0) / 1024, 1)}
    if LIMITS_REPORT:
        with open(LIMITS_REPORT, "a") as f:
            f.write(json.dumps({"case": name, **figures}) + "\n")
    if os.WIFSIGNALED(status):
        pytest.fail(f"{name}: killed by signal {os.WTERMSIG(status)}")
    if os.WEXITSTATUS(status) != 0:
        pytest.fail(f"{name}: failed in the bounded child:\n{report}", pytrace=False)
    assert peak < rss_mib, f"{name}: peak RSS {peak:.0f} MiB >= {rss_mib} MiB"
    return figures


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Tests marked ``hostile`` run under :func:`run_bounded` (time and memory asserted)."""
    if pyfuncitem.get_closest_marker("hostile") is None:
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_bounded(lambda: pyfuncitem.obj(**args), pyfuncitem.nodeid)
    return True

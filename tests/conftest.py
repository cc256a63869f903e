"""Shared fixtures: real processes with distinctive argv and environment."""

from __future__ import annotations

import os
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
os.environ["KVMFX_PROFILE_DIR"] = tempfile.mkdtemp(prefix="kvmfx-profiles-")

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

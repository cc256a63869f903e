"""kvmfx on a live system's own memory: run inside the fixture guest (scenario ``live``, see
docs/fixtures.md) on the guest's /proc/kcore and /dev/mem, its answers compared with the
guest's /proc as the guest recorded it just before.

The guest records, for each command, its exit status, stdout, stderr, its own pid and the
guest's pids right before and right after it (tests/factory/guest/live.sh).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.factory import get_fixture

PSLIST = ["python3", "-m", "kvmfx.cli", "run", "pslist", "/proc/kcore", "--format", "json"]
PSAUX = ["python3", "-m", "kvmfx.cli", "run", "psaux", "/proc/kcore", "--format", "json"]


@pytest.fixture(scope="module")
def fx():
    return get_fixture("live")


def _run(fx, name: str) -> dict:
    return fx.truth["live"][name]


def _worker(comm: str) -> str:
    """A workqueue worker's own name: the part after - or + names its current work item,
    which changes from moment to moment."""
    return re.split(r"[-+]", comm, maxsplit=1)[0] if comm.startswith("kworker/") else comm


def _listed_pids(run: dict, rows: list[dict]) -> None:
    """kvmfx lists exactly the processes the guest had while it ran: every pid present both
    before and after, its own, and nothing that was there neither before nor after (the
    same set when nothing started or ended meanwhile, as the guest records), plus the idle
    task, pid 0, which /proc does not show."""
    idle = [r for r in rows if r["pid"] == 0]
    assert [r["comm"] for r in idle] == ["swapper/0"], idle
    listed = {r["pid"] for r in rows} - {0}
    before, after = set(run["pids_before"]), set(run["pids_after"])
    must = (before & after) | {run["pid"]}
    may = before | after | {run["pid"]}
    assert must <= listed, f"not listed: {sorted(must - listed)}"
    assert listed <= may, f"listed but not in the guest: {sorted(listed - may)}"


def _rows(fx, name: str) -> tuple[dict, dict[int, dict], set[int]]:
    """A command's run in the guest (it must have succeeded silently), its rows by pid
    (checked against the guest's pids), and the pids alive before and after it."""
    run = _run(fx, name)
    assert (run["exit"], run["stderr"]) == (0, ""), run
    rows = json.loads(run["stdout"])
    _listed_pids(run, rows)
    return run, {r["pid"]: r for r in rows}, set(run["pids_before"]) & set(run["pids_after"])


def test_pslist_on_the_guests_own_kcore_lists_its_processes(fx):
    run, by_pid, stable = _rows(fx, "pslist")
    truth = fx.truth["processes"]
    compared = 0
    for pid, t in truth.items():
        if int(pid) not in stable:
            continue  # exited between the ground truth and the command
        r = by_pid[int(pid)]
        got = (r["ppid"], r["uid"], r["euid"], r["gid"], _worker(r["comm"]))
        want = (t["ppid"], t["uid"][0], t["uid"][1], t["gid"][0], _worker(t["comm"]))
        assert got == want, (pid, got, want)
        assert r["source"] != "procfs", r  # read from kernel memory, not from /proc
        compared += 1
    assert compared >= len(truth) - 2, (compared, len(truth))
    # kvmfx sees itself: the python3 process init started for it
    me = by_pid[run["pid"]]
    assert (me["comm"], me["ppid"], me["uid"], me["kernel_thread"]) == ("python3", 1, 0,
                                                                           False), me


def test_psaux_on_the_guests_own_kcore_gives_every_argv(fx):
    run, by_pid, stable = _rows(fx, "psaux")
    compared = 0
    for pid, t in fx.truth["processes"].items():
        if int(pid) not in stable:
            continue
        r = by_pid[int(pid)]
        assert (r["argv"], r["partial"], r["missing"]) == (t["cmdline"], False, None), (
            pid, r, t["cmdline"])
        compared += 1
    assert compared >= len(fx.truth["processes"]) - 2
    me = by_pid[run["pid"]]
    assert (me["argv"], me["partial"]) == (PSAUX, False), me


def test_info_on_the_guests_own_kcore_names_the_kernel(fx):
    run = _run(fx, "info")
    assert (run["exit"], run["stderr"]) == (0, ""), run
    info = json.loads(run["stdout"])
    k = fx.truth["kernel"]
    got = (info["corefile"], info["format"], info["kernel_release"], info["banner"],
           info["symbols"]["complete"], "errors" in info)
    assert got == ("/proc/kcore", "elf", k["release"], k["version"], True, False), info


def test_kvm_openfiles_with_no_corefile_reads_the_live_kernel(fx):
    """kvm_openfiles(NULL, NULL, NULL, O_RDONLY): kvm_open(3)'s default memory, which on
    Linux is /dev/mem, then /proc/kcore. The kernel's memory it opens must be readable:
    kvm_nlist and kvm_read of linux_banner give the guest's own symbol and /proc/version."""
    run = _run(fx, "api")
    assert (run["exit"], run["stderr"]) == (0, ""), run
    out = json.loads(run["stdout"])
    assert out["opened"] and out["corefile_used"] in ("/dev/mem", "/proc/kcore"), out
    addrs = fx.truth["kernel"]["kallsyms"]
    assert out["nlist_missing"] == 0, out
    assert out["nlist"] == {n: int(addrs[n], 16) for n in ("init_task", "linux_banner")}, out
    assert (out["read"], out["read_error"]) == (512, ""), out
    assert out["banner"].rstrip("\n") == fx.truth["kernel"]["version"], out


def test_devmem_refused_by_strict_devmem_is_one_line_naming_it(fx):
    """Debian's kernel refuses reads of RAM through /dev/mem (CONFIG_STRICT_DEVMEM): kvmfx
    cannot read the kernel there, and says so in one line naming that refusal, exit 3."""
    assert "CONFIG_STRICT_DEVMEM=y" in fx.config.read_text().splitlines()
    run = _run(fx, "devmem")
    lines = run["stderr"].splitlines()
    assert run["exit"] == 3 and len(lines) == 1 and "/dev/mem" in lines[0], run
    assert re.search(r"STRICT_DEVMEM|EPERM", lines[0]), lines[0]

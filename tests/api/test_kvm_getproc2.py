"""kvm_getproc2 / kvm_getargv2 / kvm_getenvv2 on the live system agree with /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvmfx import kvm
from kvmfx.kvm import KINFO_PROC2_SIZE, KVM_NO_FILES, kvm_close, kvm_openfiles
from tests.conftest import MARK_ARGS, proc_vector


@pytest.fixture
def kd():
    kd = kvm_openfiles(None, None, None, KVM_NO_FILES, None)
    assert kd is not None
    yield kd
    kvm_close(kd)


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return [text[:text.index("(") - 1], text[text.index("(") + 1:text.rindex(")")],
            *text[text.rindex(")") + 2:].split()]


def test_all_processes_match_proc(kd, marked_process):
    cnt = [-1]
    procs = kvm.kvm_getproc2(kd, kvm.KERN_PROC_ALL, 0, KINFO_PROC2_SIZE, cnt)
    assert procs is not None and cnt[0] == len(procs) > 3
    by_pid = {p.p_pid: p for p in procs}
    mine = by_pid[marked_process.pid]
    st = _stat(marked_process.pid)
    assert mine.p_ppid == int(st[3]) == os.getpid()
    assert mine.p_comm == st[1]
    assert mine.p__pgid == int(st[4]) and mine.p_sid == int(st[5])
    assert mine.p_ruid == os.getuid() and mine.p_uid == os.geteuid()
    assert mine.p_rgid == os.getgid() and mine.p_gid == os.getegid()
    assert mine.p_stat in (kvm.LSRUN, kvm.LSSLEEP)


def _proc_ids(pid: int) -> dict[int, int]:
    """What each KERN_PROC_* op selects on, read from /proc/PID by the test itself."""
    st = _stat(pid)
    status = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    uid, gid = status["Uid"].split(), status["Gid"].split()
    return {kvm.KERN_PROC_PID: pid, kvm.KERN_PROC_PGRP: int(st[4]),
            kvm.KERN_PROC_SESSION: int(st[5]), kvm.KERN_PROC_TTY: int(st[6]),
            kvm.KERN_PROC_UID: int(uid[1]), kvm.KERN_PROC_RUID: int(uid[0]),
            kvm.KERN_PROC_GID: int(gid[1]), kvm.KERN_PROC_RGID: int(gid[0])}


def _proc_selects(op: int, arg: int) -> set[int]:
    """The processes /proc says ``op``/``arg`` selects (those alive through the read)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if _proc_ids(int(entry.name))[op] == arg:
                    out.add(int(entry.name))
            except (OSError, KeyError, IndexError):
                pass  # exited while read
    return out


@pytest.mark.parametrize("op", [kvm.KERN_PROC_PID, kvm.KERN_PROC_PGRP, kvm.KERN_PROC_SESSION,
                                kvm.KERN_PROC_UID, kvm.KERN_PROC_RUID, kvm.KERN_PROC_GID,
                                kvm.KERN_PROC_RGID, kvm.KERN_PROC_TTY])
def test_each_op_selects_what_proc_says(kd, marked_process, op):
    arg = _proc_ids(marked_process.pid)[op]
    before = _proc_selects(op, arg)
    cnt = [0]
    got = kvm.kvm_getproc2(kd, op, arg, KINFO_PROC2_SIZE, cnt)
    after = _proc_selects(op, arg)
    assert got is not None and cnt[0] == len(got)
    pids = {p.p_pid for p in got}
    assert marked_process.pid in pids
    # processes that matched in /proc before and after the call must all be selected; a
    # selected one must have matched in /proc at one of the two reads (others come and go)
    assert before & after <= pids, sorted((before & after) - pids)
    assert pids <= before | after, sorted(pids - (before | after))


def test_tty_nodev_selects_processes_without_terminal(kd, marked_process):
    got = kvm.kvm_getproc2(kd, kvm.KERN_PROC_TTY, kvm.KERN_PROC_TTY_NODEV,
                           KINFO_PROC2_SIZE, [0])
    assert got is not None and all(p.p_tdev == 0 for p in got)


def test_invalid_op_and_elemsize_fail(kd):
    cnt = [7]
    assert kvm.kvm_getproc2(kd, 99, 0, KINFO_PROC2_SIZE, cnt) is None
    assert "operation" in kvm.kvm_geterr(kd) and cnt[0] == 0
    assert kvm.kvm_getproc2(kd, kvm.KERN_PROC_ALL, 0, 0, cnt) is None
    assert "elemsize" in kvm.kvm_geterr(kd)


def test_elemsize_keeps_only_fields_that_fit(kd, marked_process):
    # An old caller whose kinfo_proc2 ends before p_comm gets no p_comm.
    small = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, marked_process.pid, 0x80, [0])
    assert small is not None and len(small) == 1
    rec = small[0]
    assert rec.p_pid == marked_process.pid  # p_pid ends at offset 0x7c
    assert rec.p_comm == ""
    assert len(rec.pack()) == 0x80
    full = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, marked_process.pid, KINFO_PROC2_SIZE,
                            [0])[0]
    assert full.p_comm == "python3" or full.p_comm.startswith("python")
    assert len(full.pack()) == KINFO_PROC2_SIZE


def test_getargv2_and_getenvv2_match_proc(kd, marked_process):
    (p,) = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, marked_process.pid, KINFO_PROC2_SIZE, [0])
    argv = kvm.kvm_getargv2(kd, p, 0)
    assert argv == proc_vector(marked_process.pid, "cmdline")
    assert argv[3:] == MARK_ARGS
    envv = kvm.kvm_getenvv2(kd, p, 0)
    assert envv == proc_vector(marked_process.pid, "environ")
    assert "KVMFX_UNICODE=ğüş" in envv


def test_getargv2_nchr_limits_total_characters(kd, marked_process):
    (p,) = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, marked_process.pid, KINFO_PROC2_SIZE, [0])
    full = kvm.kvm_getargv2(kd, p, 0)
    limited = kvm.kvm_getargv2(kd, p, 10)
    assert limited is not None and limited[0] == full[0][:10]
    assert sum(len(s) for s in limited) <= 10


def test_getargv2_of_an_exited_process_fails_cleanly(kd):
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    fake = kvm.KinfoProc2({"p_pid": child.pid})
    assert kvm.kvm_getargv2(kd, fake, 0) is None
    assert str(child.pid) in kvm.kvm_geterr(kd)

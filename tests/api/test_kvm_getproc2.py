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


@pytest.mark.parametrize("op, arg_of", [
    (kvm.KERN_PROC_PID, lambda p: p.p_pid),
    (kvm.KERN_PROC_PGRP, lambda p: p.p__pgid),
    (kvm.KERN_PROC_SESSION, lambda p: p.p_sid),
    (kvm.KERN_PROC_UID, lambda p: p.p_uid),
    (kvm.KERN_PROC_RUID, lambda p: p.p_ruid),
    (kvm.KERN_PROC_GID, lambda p: p.p_gid),
    (kvm.KERN_PROC_RGID, lambda p: p.p_rgid),
    (kvm.KERN_PROC_TTY, lambda p: p.p_tdev),
])
def test_each_op_filters(kd, marked_process, op, arg_of):
    everything = kvm.kvm_getproc2(kd, kvm.KERN_PROC_ALL, 0, KINFO_PROC2_SIZE, [0])
    mine = next(p for p in everything if p.p_pid == marked_process.pid)
    arg = arg_of(mine)
    cnt = [0]
    got = kvm.kvm_getproc2(kd, op, arg, KINFO_PROC2_SIZE, cnt)
    assert got is not None and cnt[0] == len(got) >= 1
    assert marked_process.pid in {p.p_pid for p in got}
    assert all(arg_of(p) == arg for p in got)
    expected = {p.p_pid for p in everything if arg_of(p) == arg}
    assert {p.p_pid for p in got} >= expected - {p.p_pid for p in everything
                                                  if not Path(f"/proc/{p.p_pid}").exists()}


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

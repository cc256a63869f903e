"""kvm_open(3) / kvm_openfiles(3) semantics: defaults, flags, both error styles, close."""

from __future__ import annotations

import os

from kvmfx import kvm
from kvmfx.kvm import (
    _POSIX2_LINE_MAX,
    KVM_NO_FILES,
    O_RDONLY,
    O_RDWR,
    kvm_close,
    kvm_geterr,
    kvm_open,
    kvm_openfiles,
)

MISSING = "/nonexistent/kvmfx-test.core"


def test_kvm_open_failure_returns_none_and_prints_errstr_prefixed(capsys):
    kd = kvm_open(None, MISSING, None, O_RDONLY, "myprog")
    assert kd is None
    err = capsys.readouterr().err
    assert err.startswith("myprog: ") and MISSING in err
    assert err.count("\n") == 1


def test_kvm_open_with_null_errstr_reports_nothing(capsys):
    assert kvm_open(None, MISSING, None, O_RDONLY, None) is None
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_kvm_openfiles_failure_fills_errbuf_and_prints_nothing(capsys):
    errbuf = bytearray(_POSIX2_LINE_MAX)
    assert kvm_openfiles(None, MISSING, None, O_RDONLY, errbuf) is None
    assert MISSING in errbuf.decode()
    assert len(errbuf) < _POSIX2_LINE_MAX
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_errbuf_is_bounded_by_posix2_line_max(tmp_path):
    long_name = tmp_path / ("x" * 200) / ("y" * 200) / ("z" * 200) / ("w" * 200) / "c"
    deep = str(long_name) * 3
    errbuf = bytearray()
    assert kvm_openfiles(None, deep, None, O_RDONLY, errbuf) is None
    assert 0 < len(errbuf) <= _POSIX2_LINE_MAX - 1


def test_bad_flags_are_refused():
    errbuf = bytearray()
    assert kvm_openfiles(None, None, None, os.O_CREAT, errbuf) is None
    assert "flags" in errbuf.decode()
    assert kvm_openfiles(None, None, None, KVM_NO_FILES | O_RDWR, errbuf) is None


def test_default_corefile_is_path_mem_then_kcore():
    # kvm_open(3): a NULL corefile means _PATH_MEM (on Linux /dev/mem, then /proc/kcore).
    errbuf = bytearray()
    kd = kvm_openfiles(None, None, None, O_RDONLY, errbuf)
    if kd is None:
        msg = errbuf.decode()
        assert "/dev/mem" in msg and "/proc/kcore" in msg
    else:
        assert kd.session.corefile_used in ("/dev/mem", "/proc/kcore")
        assert kvm_close(kd) == 0


def test_kvm_close_returns_zero_then_minus_one():
    kd = kvm_openfiles(None, None, None, KVM_NO_FILES, None)
    assert kd is not None
    assert kvm_close(kd) == 0
    assert kvm_close(kd) == -1
    assert kvm_close(None) == -1


def test_errors_after_open_are_read_with_kvm_geterr(capsys):
    kd = kvm_openfiles(None, None, None, KVM_NO_FILES, None)
    assert kd is not None
    buf = bytearray(16)
    assert kvm.kvm_read(kd, 0xFFFFFFFF81000000, buf, 16) == -1
    assert "KVM_NO_FILES" in kvm_geterr(kd)
    assert capsys.readouterr().err == ""  # BSD style: nothing printed
    kvm_close(kd)


def test_sun_style_errors_after_open_go_to_stderr(capsys):
    kd = kvm_open(None, None, None, KVM_NO_FILES, "prog")
    assert kd is not None
    assert kvm.kvm_nlist(kd, [kvm.nlist("_init_task"), kvm.nlist(None)]) == -1
    err = capsys.readouterr().err
    assert err.startswith("prog: ") and "KVM_NO_FILES" in err
    kvm_close(kd)


def test_kvm_no_files_allows_only_process_calls(marked_process):
    kd = kvm_openfiles("/ignored/kernel", "/ignored/core", "/ignored/swap", KVM_NO_FILES, None)
    assert kd is not None  # KVM_NO_FILES ignores execfile, corefile and swapfile
    cnt = [0]
    procs = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, marked_process.pid,
                             kvm.KINFO_PROC2_SIZE, cnt)
    assert procs is not None and cnt[0] == 1
    assert kvm.kvm_getargv2(kd, procs[0], 0) is not None
    assert kvm.kvm_getenvv2(kd, procs[0], 0) is not None
    assert kvm.kvm_read(kd, 0, bytearray(8), 8) == -1
    assert kvm.kvm_write(kd, 0, b"x", 1) == -1
    assert kvm.kvm_nlist(kd, [kvm.nlist("init_task")]) == -1
    assert kvm.kvm_getloadavg(kd, [], 3) == -1
    assert kvm.kvm_getkernelname(kd, bytearray(64), 64) == -1
    for message in [kvm_geterr(kd)]:
        assert "KVM_NO_FILES" in message
    kvm_close(kd)

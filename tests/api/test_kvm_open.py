"""kvm_open(3) / kvm_openfiles(3) semantics: defaults, flags, both error styles, close."""

from __future__ import annotations

import os

import pytest

from kvmfx import kvm
from kvmfx import session as session_mod
from kvmfx.kvm import (
    _POSIX2_LINE_MAX,
    KVM_NO_FILES,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    kvm_close,
    kvm_geterr,
    kvm_open,
    kvm_openfiles,
)
from tests.factory import get_fixture

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


NO_LIVE_MEMORY = not any(os.path.exists(p) for p in ("/dev/mem", "/proc/kcore"))


@pytest.mark.skipif(not NO_LIVE_MEMORY, reason="this machine has /dev/mem or /proc/kcore")
def test_default_corefile_fails_naming_both_when_neither_exists(capsys):
    # kvm_open(3): a NULL corefile means _PATH_MEM (on Linux /dev/mem, then /proc/kcore).
    errbuf = bytearray()
    assert kvm_openfiles(None, None, None, O_RDONLY, errbuf) is None
    assert errbuf.decode() == ("no live kernel memory: /dev/mem: No such file or directory; "
                               "/proc/kcore: No such file or directory")
    assert kvm_open(None, None, None, O_RDONLY, "prog") is None
    assert capsys.readouterr().err == f"prog: {errbuf.decode()}\n"


@pytest.mark.skipif(NO_LIVE_MEMORY, reason="no /dev/mem and no /proc/kcore here")
def test_default_corefile_opens_the_first_live_memory_that_exists():
    first = next(p for p in ("/dev/mem", "/proc/kcore") if os.path.exists(p))
    errbuf = bytearray()
    kd = kvm_openfiles(None, None, None, O_RDONLY, errbuf)
    assert kd is not None, errbuf.decode()
    assert kd.session.corefile_used == first
    assert kvm_close(kd) == 0


def test_default_corefile_falls_back_in_path_mem_order(tmp_path, monkeypatch):
    dump = str(get_fixture("basic").path("elf"))
    monkeypatch.setattr(session_mod, "PATH_MEM", (str(tmp_path), dump))
    kd = kvm_openfiles(None, None, None, O_RDONLY, bytearray())
    assert kd is not None and kd.session.corefile_used == dump
    assert kvm_close(kd) == 0
    monkeypatch.setattr(session_mod, "PATH_MEM", (str(tmp_path), str(tmp_path / "none")))
    errbuf = bytearray()
    assert kvm_openfiles(None, None, None, O_RDONLY, errbuf) is None
    assert errbuf.decode() == (f"no live kernel memory: {tmp_path}: is a directory, not a "
                               f"memory image or kernel file; {tmp_path}/none: No such file "
                               "or directory")


@pytest.mark.parametrize("flags", [O_RDWR, O_WRONLY])
def test_a_dump_opened_for_writing_is_refused(tmp_path, flags):
    # docs/api.md: dumps are evidence; a write-open fails rather than opening read-only
    dump = str(get_fixture("basic").path("elf"))
    errbuf = bytearray()
    assert kvm_openfiles(None, dump, None, flags, errbuf) is None
    assert errbuf.decode() == (f"{dump}: elf dumps are evidence and are never opened for "
                               "writing (only a live /dev/mem is)")
    kd = kvm_openfiles(None, dump, None, O_RDONLY, errbuf)
    assert kd is not None
    assert kvm.kvm_write(kd, 0xFFFFFFFF81000000, b"x", 1) == -1
    assert kvm_geterr(kd) == (f"{dump}, address 0xffffffff81000000: dumps are evidence and "
                              "read-only")
    kvm_close(kd)


def test_write_open_of_live_memory_refuses_proc_kcore(tmp_path, monkeypatch):
    # only /dev/mem can be written: an ELF memory image (as /proc/kcore is) fails the open
    dump = str(get_fixture("basic").path("elf"))
    monkeypatch.setattr(session_mod, "PATH_MEM", (str(tmp_path / "mem"), dump))
    errbuf = bytearray()
    assert kvm_openfiles(None, None, None, O_RDWR, errbuf) is None
    assert errbuf.decode() == (f"no live kernel memory: {tmp_path}/mem: No such file or "
                               f"directory; {dump}: elf dumps are evidence and are never "
                               "opened for writing (only a live /dev/mem is)")


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
    # kvm_open(3): every other call fails, each with its own error in kvm_geterr
    refused = {
        "kvm_read": lambda: kvm.kvm_read(kd, 0, bytearray(8), 8) == -1,
        "kvm_write": lambda: kvm.kvm_write(kd, 0, b"x", 1) == -1,
        "kvm_nlist": lambda: kvm.kvm_nlist(kd, [kvm.nlist("init_task")]) == -1,
        "kvm_getloadavg": lambda: kvm.kvm_getloadavg(kd, [], 3) == -1,
        "kvm_getkernelname": lambda: kvm.kvm_getkernelname(kd, bytearray(64), 64) == -1,
        "kvm_getprocs": lambda: kvm.kvm_getprocs(kd, kvm.KERN_PROC_ALL, 0, cnt) is None,
        "kvm_getargv": lambda: kvm.kvm_getargv(kd, procs[0], 0) is None,
        "kvm_getenvv": lambda: kvm.kvm_getenvv(kd, procs[0], 0) is None,
    }
    for name, call in refused.items():
        kd.errbuf = ""
        assert call(), f"{name} answered on a KVM_NO_FILES descriptor"
        assert "KVM_NO_FILES" in kvm_geterr(kd), (name, kvm_geterr(kd))
    assert cnt[0] == 0  # kvm_getprocs reported no records
    kvm_close(kd)


def test_getprocs_getargv_getenvv_answer_on_memory_descriptors():
    fx = get_fixture("basic")
    kd = kvm_openfiles(None, str(fx.path("elf")), None, O_RDONLY, bytearray())
    assert kd is not None
    cnt = [0]
    procs = kvm.kvm_getprocs(kd, kvm.KERN_PROC_PID, 1, cnt)
    assert procs is not None and cnt[0] == 1, kvm_geterr(kd)
    truth = fx.truth["processes"]["1"]
    assert kvm.kvm_getargv(kd, procs[0], 0) == truth["cmdline"]
    assert kvm.kvm_getenvv(kd, procs[0], 0) == truth["environ"]
    kvm_close(kd)

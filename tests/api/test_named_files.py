"""Files the caller names (corefile, execfile -N, swapfile -W) fail at open when unusable,
as kvm_openfiles(3) does; swapfile=None means the live system's active swap (/proc/swaps)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import kvmfx
from kvmfx import session as session_mod
from kvmfx.kvm import KVM_NO_FILES, O_RDONLY, kvm_close, kvm_open, kvm_openfiles
from tests.factory import get_fixture

PAGE = 4096


@pytest.fixture(scope="module")
def dump() -> str:
    return str(get_fixture("basic").path("elf"))


def make_swap(path) -> str:
    """A swap area written by the real mkswap."""
    path.write_bytes(bytes(PAGE * 16))
    mkswap = shutil.which("mkswap") or "/sbin/mkswap"
    subprocess.run([mkswap, str(path)], check=True, capture_output=True)
    return str(path)


def unusable_files(tmp_path) -> dict[str, str]:
    """Named files that cannot serve as an execfile or swapfile, by what is wrong."""
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    return {"missing": str(tmp_path / "missing.bin"), "directory": str(tmp_path),
            "empty": str(empty)}


def open_error(**kwargs) -> str:
    with pytest.raises(kvmfx.KvmOpenError) as info:
        kvmfx.open(**kwargs)
    return str(info.value)


# -- corefile ------------------------------------------------------------------------------
def test_directory_as_corefile_is_an_open_error(tmp_path):
    message = open_error(corefile=str(tmp_path))
    assert message == f"{tmp_path}: is a directory, not a memory image or kernel file"
    errbuf = bytearray()
    assert kvm_openfiles(None, str(tmp_path), None, O_RDONLY, errbuf) is None
    assert errbuf.decode() == message


def test_missing_corefile_names_the_path(tmp_path):
    missing = str(tmp_path / "missing.core")
    assert open_error(corefile=missing) == f"{missing}: No such file or directory"


def test_unreadable_corefile_names_the_path_and_reason(tmp_path, monkeypatch):
    core = tmp_path / "secret.core"
    core.write_bytes(bytes(PAGE))
    real_open = os.open

    def refusing_open(path, flags, *args):  # root reads anything: refuse as the kernel would
        if str(path) == str(core):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing_open)
    assert open_error(corefile=str(core)) == f"{core}: Permission denied"
    errbuf = bytearray()
    assert kvm_openfiles(None, str(core), None, O_RDONLY, errbuf) is None
    assert errbuf.decode() == f"{core}: Permission denied"


def test_fifo_as_corefile_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "not a regular file or device" in open_error(corefile=str(fifo))


# -- execfile ------------------------------------------------------------------------------
@pytest.mark.parametrize("what", ["missing", "directory", "empty"])
def test_unusable_execfile_fails_the_open_of_a_dump(dump, tmp_path, what):
    path = unusable_files(tmp_path)[what]
    message = open_error(corefile=dump, execfile=path)
    assert message.startswith(f"{path}: cannot use the execfile: ")
    errbuf = bytearray()
    assert kvm_openfiles(path, dump, None, O_RDONLY, errbuf) is None
    assert errbuf.decode() == message


@pytest.mark.parametrize("what", ["missing", "directory", "empty"])
def test_unusable_execfile_fails_the_open_of_the_live_system(tmp_path, what):
    path = unusable_files(tmp_path)[what]
    message = open_error(execfile=path)
    assert message.startswith(f"{path}: cannot use the execfile: ")
    # kvm_openfiles checks the execfile before kernel memory (absent on this machine)
    errbuf = bytearray()
    assert kvm_openfiles(path, None, None, O_RDONLY, errbuf) is None
    assert errbuf.decode() == message


# -- swapfile ------------------------------------------------------------------------------
def test_unusable_swapfile_fails_the_open(dump, tmp_path):
    files = unusable_files(tmp_path)
    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(PAGE * 4))
    files["not a swap area"] = str(zeros)
    reasons = {"missing": "No such file or directory", "directory": "is a directory",
               "empty": "empty file: not a swap area",
               "not a swap area": "not a swap area (no swap-format plugin recognises it)"}
    for what, path in files.items():
        for corefile in (dump, None):  # a dump, and the live system
            message = open_error(corefile=corefile, swapfile=path)
            assert message.startswith(f"{path}: cannot use the swapfile: "), (what, message)
            assert reasons[what] in message, (what, message)
            errbuf = bytearray()
            assert kvm_openfiles(None, corefile, path, O_RDONLY, errbuf) is None, what
            assert errbuf.decode() == message, what


def test_kvm_open_prints_the_swapfile_error(dump, tmp_path, capsys):
    missing = str(tmp_path / "missing.swap")
    assert kvm_open(None, dump, missing, O_RDONLY, "prog") is None
    assert capsys.readouterr().err == \
        f"prog: {missing}: cannot use the swapfile: No such file or directory\n"


def test_a_real_swap_area_is_the_session_swap(dump, tmp_path):
    swap = make_swap(tmp_path / "swap.img")
    with kvmfx.open(dump, swapfile=swap) as s:
        assert s.swap_paths == [swap]
    kd = kvm_openfiles(None, dump, swap, O_RDONLY, bytearray())
    assert kd is not None and kd.session.swap_paths == [swap]
    kvm_close(kd)


def test_no_files_ignores_named_files(tmp_path):
    missing = str(tmp_path / "missing")
    kd = kvm_openfiles(missing, missing, missing, KVM_NO_FILES, bytearray())
    assert kd is not None and kd.session.swap_paths == []
    kvm_close(kd)


# -- swapfile=None: _PATH_DRUM --------------------------------------------------------------
def test_proc_swaps_is_parsed_with_the_kernel_escapes():
    text = ("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
            "/dev/vda2                               partition\t1048572\t\t0\t\t-2\n"
            "/var/swap\\040file                       file\t\t65532\t\t0\t\t-3\n")
    assert session_mod.parse_proc_swaps(text) == ["/dev/vda2", "/var/swap file"]
    assert session_mod.parse_proc_swaps("Filename Type Size Used Priority\n") == []


def _proc_swaps(tmp_path, *paths: str) -> str:
    listing = tmp_path / "swaps"
    listing.write_text("Filename\tType\tSize\tUsed\tPriority\n" + "".join(
        f"{p.replace(' ', chr(92) + '040')}\tfile\t60\t0\t-2\n" for p in paths))
    return str(listing)


def test_live_memory_session_uses_the_active_swap_areas(dump, tmp_path, monkeypatch):
    good = make_swap(tmp_path / "active swap.img")
    gone = str(tmp_path / "gone.img")
    monkeypatch.setattr(session_mod, "PATH_DRUM", _proc_swaps(tmp_path, good, gone))
    # the dump stands in for the live kernel memory (/dev/mem and /proc/kcore are absent)
    monkeypatch.setattr(session_mod, "PATH_MEM", (str(tmp_path / "no-mem"), dump))
    kd = kvm_openfiles(None, None, None, O_RDONLY, bytearray())
    assert kd is not None
    assert kd.session.corefile_used == dump
    assert kd.session.swap_paths == [good]
    assert kd.session.swap_failures == [f"{gone}: cannot use the swapfile: "
                                        "No such file or directory"]
    info = kd.session.info()
    assert info["swap"] == [good] and info["swap_unusable"] == kd.session.swap_failures
    kvm_close(kd)


def test_a_dump_has_no_swap_unless_given(dump, tmp_path, monkeypatch):
    good = make_swap(tmp_path / "swap.img")
    monkeypatch.setattr(session_mod, "PATH_DRUM", _proc_swaps(tmp_path, good))
    with kvmfx.open(dump) as s:
        _ = s.physical
        assert s.swap_paths == [] and s.swap_failures == []
        assert "swap" not in s.info()

"""The Pythonic API under the libkvm layer: kvmfx.open() and Session."""

from __future__ import annotations

import random

import pytest

import kvmfx
from tests.conftest import MARK_ARGS
from tests.factory import get_fixture


def test_live_session_lists_processes_and_vectors(marked_process):
    with kvmfx.open() as s:
        (p,) = [p for p in s.processes() if p.pid == marked_process.pid]
        assert s.argv(p).strings()[3:] == MARK_ARGS
        assert "KVMFX_MARK=1" in s.envv(p).strings()
        info = s.info()
        assert info["live"] is True and info["os_profile"] == "linux-procfs"
        assert len(s.loadavg()) == 3
    assert s.closed


def test_memory_calls_raise_typed_errors_without_memory():
    with kvmfx.open(no_files=True) as s:
        with pytest.raises(kvmfx.UnsupportedError, match="KVM_NO_FILES"):
            s.read(0xFFFFFFFF81000000, 8)
        with pytest.raises(kvmfx.UnsupportedError):
            s.read_physical(0, 8)
        with pytest.raises(kvmfx.UnsupportedError):
            _ = s.symbols


def test_missing_dump_is_a_kvm_open_error(tmp_path):
    with pytest.raises(kvmfx.KvmOpenError, match="missing.core"):
        kvmfx.open(str(tmp_path / "missing.core"))


def test_dumps_are_never_opened_writable(tmp_path):
    f = tmp_path / "x.core"
    f.write_bytes(b"\0" * 4096)
    with pytest.raises(kvmfx.UnsupportedError, match="never opened for writing"):
        kvmfx.open(str(f), writable=True)


def test_directory_as_corefile_is_a_kvm_open_error(tmp_path):
    with pytest.raises(kvmfx.KvmOpenError) as info:
        kvmfx.open(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: is a directory, not a memory image or kernel file"


@pytest.mark.parametrize("content", [
    pytest.param(bytes(random.Random(10).randrange(256) for _ in range(1 << 20)), id="random"),
    pytest.param(b"hello world, not a memory image\n" * 500, id="text"),
])
def test_info_on_what_is_no_kernel_names_the_reason_once(tmp_path, content):
    image = tmp_path / "image.bin"
    image.write_bytes(content)
    with kvmfx.open(str(image)) as s:
        info = s.info()
        # the raw format takes any file; no kernel is found in it: the image is unusable
        assert set(info["errors"]) == {"arch"}, info["errors"]
        reason = info["errors"]["arch"]
        assert "page-table root" in reason and "arch" not in info
        # asked again and again, each stage runs its chain once: each reason once
        for _ in range(3):
            for what in ("symbols", "types", "profile"):
                with pytest.raises(kvmfx.KvmError) as exc:
                    getattr(s, what)
                assert str(exc.value).count(reason) == 1, str(exc.value)
        assert s.symbol_failures == sorted(set(s.symbol_failures), key=s.symbol_failures.index)


def test_a_provider_failure_is_recorded_once(tmp_path):
    bad_map = tmp_path / "System.map"
    bad_map.write_text("not a symbol map\n")
    with kvmfx.open(str(get_fixture("basic").path("elf")), execfile=str(bad_map)) as s:
        info = s.info()
        assert s.symbol_failures == [f"execfile: {bad_map} line 1: bad address 'not'"]
        # the symbols failure is the reason; types and OS profile would only repeat it
        assert info["errors"] == {"symbols": f"{bad_map}: cannot read symbols: "
                                             f"{s.symbol_failures[0]}"}
        text = repr(info)
        assert text.count("bad address") == 1, text
        with pytest.raises(kvmfx.ProcessError) as exc:
            s.processes()
        assert str(exc.value).count("bad address") == 1
        assert len(s.symbol_failures) == 1


def test_live_info_without_kernel_memory_is_no_error(monkeypatch, tmp_path):
    from kvmfx import session as session_mod

    monkeypatch.setattr(session_mod, "PATH_MEM", (str(tmp_path / "mem"),))
    with kvmfx.open() as s:
        info = s.info()
    assert "errors" not in info, info["errors"]
    assert info["kernel_memory"] == (f"unavailable: no live kernel memory: {tmp_path}/mem: "
                                     "No such file or directory")
    assert info["os_profile"] == "linux-procfs"

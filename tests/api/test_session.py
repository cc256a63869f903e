"""The Pythonic API under the libkvm layer: kvmfx.open() and Session."""

from __future__ import annotations

import pytest

import kvmfx
from tests.conftest import MARK_ARGS


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

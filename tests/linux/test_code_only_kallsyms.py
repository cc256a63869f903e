"""Kernels whose kallsyms lists code only (built without CONFIG_KALLSYMS_ALL, as Debian's
arm64 6.1 is): BTF is found by its header in the image and init_task by its shape. Checked
here on x86_64 dumps with every data symbol taken out of the table, against the guest's own
kallsyms."""

from __future__ import annotations

import struct

import pytest

import kvmfx
from kvmfx_plugins.linux.tasks import find_init_task
from kvmfx_plugins.symbols.btf import find_btf
from kvmfx_plugins.symbols.image import _btf_by_shape, _kernel_span
from tests.factory import debug_files, get_fixture
from tests.linux.test_dump_processes import _check_session


def _header(type_len: int, str_len: int) -> bytes:
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, type_len, type_len, str_len)


def test_find_btf_takes_the_whole_blob_and_skips_lookalikes():
    blob = _header(12, 5) + bytes(12) + b"\0abc\0"
    lookalike = _header(12, 5) + bytes(12) + b"xabc\0"  # strings must start with ""
    short = _header(4096, 4096)  # runs past the buffer
    head = b"pad!" + lookalike
    buf = head + bytes(-len(head) % 4) + blob + short
    at = buf.index(blob)
    assert find_btf(buf) == (at, len(blob))
    assert find_btf(bytes(64)) is None
    assert find_btf(b"\x9f\xeb\x01\x00" + bytes(10)) is None


@pytest.mark.parametrize("name", ["basic", "trixie"])
def test_init_task_and_btf_by_shape_when_symbols_name_no_data(name, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    fx = get_fixture(name)
    want = int(fx.truth["kernel"]["kallsyms"]["init_task"], 16)
    with kvmfx.open(str(fx.path("elf"))) as s:
        table = s.symbols
        for sym in [n for n, v in table.symbols.items() if v.type not in "TtWw"]:
            del table.symbols[sym]
        assert table.lookup("init_task") is None and table.lookup("__start_BTF") is None
        assert find_init_task(s) == want
        assert s.types.source == "image:BTF"  # found by its header
        assert table.lookup("__start_BTF") is not None
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])
        assert table.lookup("init_task") == want


@pytest.mark.parametrize("name", ["arm64", "basic"])
def test_searches_a_window_at_a_time_find_what_the_whole_image_holds(name, tmp_path,
                                                                       monkeypatch):
    """BTF and init_task are searched for without holding the image: they are where the
    kernel's System.map puts them (moved by the KASLR offset), and BTF is the blob a search
    of the image's bytes read whole finds."""
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    fx = get_fixture(name)
    _vmlinux, system_map = debug_files(fx.truth["kernel"]["release"])
    smap = {}
    for line in system_map.read_text().splitlines():
        addr, _kind, symbol = line.split()[:3]
        smap.setdefault(symbol, int(addr, 16))
    with kvmfx.open(str(fx.path("elf"))) as s:
        slide = s.image.kaslr_offset
        start, whole = _kernel_span(s)
        found = find_btf(whole)
        assert found is not None
        at, size = found
        assert _btf_by_shape(s) == (start + at, whole[at:at + size])
        assert (start + at, size) == (smap["__start_BTF"] + slide,
                                      smap["__stop_BTF"] - smap["__start_BTF"])
        assert find_init_task(s) == smap["init_task"] + slide


def test_types_that_put_comm_past_any_task_struct_find_no_init_task(tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(get_fixture("basic").path("elf"))) as s:
        real = s.types.offsetof
        monkeypatch.setattr(s.types, "offsetof", lambda struct_name, member: 1 << 30
                            if member == "comm" else real(struct_name, member))
        assert find_init_task(s) is None

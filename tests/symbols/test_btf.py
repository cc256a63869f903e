"""BTF decoding: synthetic edge cases built from the format's declaration, and real BTF."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import construct as cs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmfx.errors import FormatError, SymbolError
from kvmfx.objects import Object
from kvmfx_plugins.symbols.btf import BTF_MAGIC, parse_btf

#: struct btf_header as Documentation/bpf/btf.rst declares it (kvmfx reads it with struct)
BTF_HEADER = cs.Struct("magic" / cs.Int16ul, "version" / cs.Int8ul, "flags" / cs.Int8ul,
                       "hdr_len" / cs.Int32ul, "type_off" / cs.Int32ul,
                       "type_len" / cs.Int32ul, "str_off" / cs.Int32ul,
                       "str_len" / cs.Int32ul)


class BtfBuilder:
    """Builds BTF blobs record by record (ids start at 1)."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types = bytearray()

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def rec(self, name: str, kind: int, vlen: int, size_or_type: int, extra: bytes = b"",
            kind_flag: int = 0) -> None:
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, size_or_type) + extra

    def int_(self, name: str, size: int, signed: bool = False) -> None:
        self.rec(name, 1, 0, size, struct.pack("<I", (1 << 24 if signed else 0) | size * 8))

    def struct_(self, name: str, size: int, members: list[tuple[str, int, int, int]],
                union: bool = False) -> None:
        bitfields = any(m[3] for m in members)
        extra = b"".join(struct.pack("<III", self.s(n), t, (bs << 24 | off) if bitfields
                                     else off) for n, t, off, bs in members)
        self.rec(name, 5 if union else 4, len(members), size, extra, int(bitfields))

    def blob(self) -> bytes:
        hdr = BTF_HEADER.build(dict(magic=BTF_MAGIC, version=1, flags=0, hdr_len=24,
                                    type_off=0, type_len=len(self.types),
                                    str_off=len(self.types), str_len=len(self.strings)))
        return hdr + bytes(self.types) + bytes(self.strings)


def sample() -> BtfBuilder:
    b = BtfBuilder()
    b.int_("int", 4, signed=True)                       # 1
    b.int_("unsigned long", 8)                          # 2
    b.rec("", 2, 0, 5)                                  # 3: ptr -> 5
    b.rec("list_head_t", 8, 0, 5)                       # 4: typedef -> 5
    b.struct_("list_head", 16, [("next", 3, 0, 0), ("prev", 3, 64, 0)])  # 5
    b.int_("char", 1, signed=True)                      # 6
    b.rec("", 3, 0, 0, struct.pack("<III", 6, 1, 16))   # 7: char[16]
    b.struct_("", 8, [("a", 1, 0, 0), ("b", 1, 32, 0)], union=False)     # 8: anon struct
    b.struct_("task", 64, [("tasks", 5, 0, 0), ("comm", 7, 128, 0), ("", 8, 256, 0),
                           ("flag", 1, 320, 3), ("pid", 1, 384, 0)])     # 9
    return b


def test_sample_members_offsets_and_types():
    m = parse_btf(sample().blob())
    assert m.offsetof("task", "tasks") == 0
    assert m.offsetof("task", "tasks.prev") == 8
    assert m.offsetof("task", "comm") == 16
    assert m.offsetof("task", "a") == 32 and m.offsetof("task", "b") == 36  # anonymous
    assert m.bitfield("task", "flag") == (320, 3)
    assert m.offsetof("task", "pid") == 48
    assert m.struct_size("task") == 64
    assert m.sizeof(m.member("task", "comm")[1]) == 16
    assert m.find("list_head_t", kinds=("struct",)) == m.find("list_head")
    assert m.type_name(m.member("list_head", "next")[1]) == "struct list_head *"
    data = bytes(range(64))
    task = Object(m, "task", 0, lambda addr, size: data[addr:addr + size])
    assert task.comm == bytes(range(16, 32))
    assert task.tasks.prev == int.from_bytes(bytes(range(8, 16)), "little")
    assert task.pid == int.from_bytes(bytes(range(48, 52)), "little")
    with pytest.raises(SymbolError, match="no member 'nope'"):
        m.offsetof("task", "nope")


def test_typedef_loop_is_an_error_not_a_hang():
    b = BtfBuilder()
    b.rec("a", 8, 0, 2)
    b.rec("b", 8, 0, 1)
    m = parse_btf(b.blob())
    with pytest.raises(SymbolError, match="too deep"):
        m.resolve(1)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[:10], "shorter than its header"),
    (lambda d: b"\x00\x00" + d[2:], "not BTF"),
    (lambda d: d[:-5], "past the data"),
    (lambda d: d[:24] + d[24:28] + struct.pack("<I", (99 << 24)) + d[32:], "unknown BTF kind"),
])
def test_malformed_btf_is_a_format_error(mutate, message):
    with pytest.raises(FormatError, match=message):
        parse_btf(mutate(sample().blob()))


def test_name_offset_outside_strings_is_a_format_error():
    b = sample()
    blob = bytearray(b.blob())
    struct.pack_into("<I", blob, 24, 0xFFFFFF)
    with pytest.raises(FormatError, match="name offset"):
        parse_btf(bytes(blob)).decode_all()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.integers(0, 400))
def test_arbitrary_bytes_give_a_model_or_a_format_error(junk, cut):
    blob = sample().blob()
    data = blob[:cut] + junk
    try:
        parse_btf(data).decode_all()
    except FormatError:
        pass


@pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                    reason="the running kernel publishes no BTF")
def test_running_kernels_btf_decodes_with_sane_task_struct():
    path = Path("/sys/kernel/btf/vmlinux")
    m = parse_btf(path.read_bytes(), str(path))
    assert m.count > 10000
    ts = m.struct_size("task_struct")
    for member in ("tasks", "pid", "tgid", "comm", "mm", "real_parent", "cred"):
        assert 0 <= m.offsetof("task_struct", member) < ts
    assert m.offsetof("task_struct", "tgid") == m.offsetof("task_struct", "pid") + 4
    assert m.sizeof(m.member("task_struct", "comm")[1]) == 16
    assert m.offsetof("list_head", "prev") == 8
    assert m.offsetof("mm_struct", "arg_end") == m.offsetof("mm_struct", "arg_start") + 8


def test_a_saved_index_restores_the_same_lookups_and_names():
    """A profile keeps the index and the names of the named types; a restored model finds
    the same types (a name given twice included), with or without the saved names, and
    saved names that do not fit are made again rather than trusted."""
    b = sample()
    b.struct_("task", 8, [("pid", 1, 0, 0)])  # 10: a second 'task' string, a later type
    blob = b.blob()
    made = parse_btf(blob)
    state = made.index_state()
    assert state["names"].startswith(b"\0task\0") or b"\0task\0" in state["names"]
    expect = {n: made.find(n) for n in ("task", "list_head", "list_head_t")}
    assert expect["task"] == 9
    without = {k: v for k, v in state.items() if k not in ("names", "namekeys")}
    damaged = {**state, "names": state["names"][:-3]}
    for index in (state, without, damaged):
        restored = parse_btf(blob, index=index)
        assert {n: restored.find(n) for n in expect} == expect
        with pytest.raises(SymbolError, match="nope"):
            restored.find("nope")
    with pytest.raises(FormatError, match="other parts"):
        parse_btf(blob, index={**state, "extra": b""})

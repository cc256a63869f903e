"""Property tests (hypothesis) of the pure decoders: what is built is read back exactly, and
arbitrary bytes give a result or a KvmError, never another exception."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kvmfx.errors import FormatError, KvmError
from kvmfx.process import split_nul_block
from kvmfx.symbols import parse_system_map
from kvmfx_plugins.arch.x86_64 import swap_entry as x86_64_swap_entry
from kvmfx_plugins.formats.lime import HEADER_SIZE, LIME_HEADER, parse_lime
from kvmfx_plugins.formats.swap import (
    PAGE_SIZE,
    SWAP_INFO,
    SWAP_MAGIC,
    parse_swap_header,
)
from kvmfx_plugins.linux.vmcoreinfo import parse_vmcoreinfo
from kvmfx_plugins.symbols.dwarf import _uleb
from kvmfx_plugins.symbols.files import parse_elf_symbols

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=24)
KERNEL_ADDR = st.integers(min_value=0xFFFFFFFF80000000, max_value=0xFFFFFFFFFFFFF000)
SETTINGS = settings(max_examples=300, deadline=None)


@SETTINGS
@given(st.dictionaries(NAMES, KERNEL_ADDR, min_size=1, max_size=40),
       st.dictionaries(NAMES, st.integers(0, 1 << 20), max_size=20),
       st.text(alphabet="0123456789.-abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=40))
def test_vmcoreinfo_round_trips(symbols, offsets, release):
    lines = [f"OSRELEASE={release}", "PAGESIZE=4096", "KERNELOFFSET=3e00000"]
    lines += [f"SYMBOL({n})={a:016x}" for n, a in symbols.items()]
    lines += [f"OFFSET(task_struct.{n})={o}" for n, o in offsets.items()]
    info = parse_vmcoreinfo(("\n".join(lines) + "\n").encode())
    assert info.osrelease == release and info.page_size == 4096
    assert info.kernel_offset == 0x3E00000 and info.symbols == symbols
    assert info.offsets == {f"task_struct.{n}": o for n, o in offsets.items()}


@SETTINGS
@given(st.binary(max_size=4096))
def test_vmcoreinfo_takes_any_bytes(data):
    try:
        info = parse_vmcoreinfo(data)
    except FormatError:
        return
    _ = (info.symbols, info.numbers, info.offsets, info.sizes, info.kernel_offset,
         info.page_size, info.phys_base)


@SETTINGS
@given(st.dictionaries(NAMES, st.tuples(KERNEL_ADDR, st.sampled_from("TtDdBbRrA")),
                       min_size=1, max_size=60))
def test_system_map_round_trips(entries):
    text = "".join(f"{a:016x} {k} {n}\n" for n, (a, k) in entries.items())
    table = parse_system_map(text)
    assert {n: (s.address, s.type) for n, s in table.symbols.items()} == entries


@SETTINGS
@given(st.text(max_size=2000))
def test_system_map_takes_any_text(text):
    try:
        parse_system_map(text)
    except KvmError:
        pass


@SETTINGS
@given(st.integers(1, 1 << 31), st.frozensets(st.integers(1, 1 << 31), max_size=50),
       st.text(alphabet="abcdefgh", max_size=15))
def test_swap_header_round_trips(last_page, bad, label):
    page = bytearray(PAGE_SIZE)
    SWAP_INFO.build_stream(dict(bootbits=bytes(1024), version=1, last_page=last_page,
                                nr_badpages=len(bad), uuid=bytes(range(16)),
                                volume=label.encode().ljust(16, b"\0"), padding=bytes(468)),
                           _Into(page))
    at = SWAP_INFO.sizeof()
    for i, b in enumerate(sorted(bad)):
        page[at + 4 * i:at + 4 * i + 4] = struct.pack("<I", b)
    page[PAGE_SIZE - 10:] = SWAP_MAGIC
    hdr = parse_swap_header(bytes(page))
    assert (hdr.last_page, hdr.bad_pages, hdr.label) == (last_page, bad, label)


@SETTINGS
@given(st.binary(min_size=PAGE_SIZE - 10, max_size=PAGE_SIZE))
def test_swap_header_takes_any_page(data):
    page = data.ljust(PAGE_SIZE - 10, b"\0")[:PAGE_SIZE - 10] + SWAP_MAGIC
    try:
        parse_swap_header(page)
    except FormatError:
        pass


@given(st.integers(0, 31), st.integers(0, (1 << 50) - 1))
def test_x86_64_swap_entries_round_trip(swp_type, offset):
    pte = (swp_type << 59) | ((~offset & ((1 << 50) - 1)) << 9)
    assert x86_64_swap_entry(pte) == (swp_type, offset)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 64)), min_size=1,
                max_size=12))
def test_lime_ranges_round_trip(ranges):
    data, pos, expected = b"", 0, []
    for gap, pages in ranges:
        start = pos + gap * 4096
        end = start + pages * 4096 - 1
        data += LIME_HEADER.build(dict(version=1, s_addr=start, e_addr=end, reserved=bytes(8)))
        expected.append((start, end + 1, len(data)))
        data += bytes(pages * 4096)
        pos = end + 1
    segments, truncated = parse_lime(lambda o, n: data[o:o + n], len(data))
    assert not truncated
    assert [(s.paddr, s.paddr + s.size, s.offset) for s in segments] == expected
    assert HEADER_SIZE == 32


@SETTINGS
@given(st.binary(max_size=512))
def test_lime_takes_any_bytes(data):
    try:
        parse_lime(lambda o, n: data[o:o + n], len(data))
    except FormatError:
        pass


@SETTINGS
@given(st.dictionaries(NAMES, st.tuples(KERNEL_ADDR, st.sampled_from([1, 2]),
                                        st.sampled_from([0, 1])), min_size=1, max_size=50),
       st.sampled_from([64, 32]))
def test_elf_symbol_tables_round_trip(entries, elfclass):
    strtab, symtab = b"\0", b""
    for name, (addr, stype, bind) in entries.items():
        value = addr if elfclass == 64 else addr & 0xFFFFFFFF
        info = bind << 4 | stype
        if elfclass == 64:
            symtab += struct.pack("<IBBHQQ", len(strtab), info, 0, 1, value, 8)
        else:
            symtab += struct.pack("<IIIBBH", len(strtab), value, 8, info, 0, 1)
        strtab += name.encode() + b"\0"
    table = parse_elf_symbols(symtab, strtab, elfclass, True, "test")
    kinds = {(2, 0): "t", (2, 1): "T", (1, 0): "d", (1, 1): "D"}
    assert {n: (s.address, s.type) for n, s in table.symbols.items()} == {
        n: (a if elfclass == 64 else a & 0xFFFFFFFF, kinds[(t, b)])
        for n, (a, t, b) in entries.items()}


@SETTINGS
@given(st.binary(max_size=2048), st.binary(max_size=512), st.sampled_from([64, 32]),
       st.booleans())
def test_elf_symbol_tables_take_any_bytes(symtab, strtab, elfclass, little):
    parse_elf_symbols(symtab, strtab, elfclass, little, "fuzz")


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\0" not in b), min_size=1,
                max_size=30))
def test_argv_blocks_split_back(args):
    assert split_nul_block(b"\0".join(args) + b"\0") == args


@given(st.integers(0, (1 << 63) - 1))
def test_uleb128_round_trips(value):
    out, rest = [], value
    while True:
        byte, rest = rest & 0x7F, rest >> 7
        out.append(byte | (0x80 if rest else 0))
        if not rest:
            break
    assert _uleb(out) == value


class _Into:
    """A writable stream over a bytearray (construct's build_stream target)."""

    def __init__(self, buf: bytearray) -> None:
        self.buf, self.pos = buf, 0

    def write(self, data: bytes) -> int:
        self.buf[self.pos:self.pos + len(data)] = data
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        return self.pos


def test_fixed_sizes_match_the_declarations():
    from kvmfx_plugins.formats import swap

    assert SWAP_INFO.sizeof() == swap.INFO_SIZE and LIME_HEADER.sizeof() == HEADER_SIZE

"""aarch64 translation on tables built from the Arm ARM's descriptor formats (VMSAv8-64):
every granule (4K, 16K, 64K; 64K has no Debian kernel), VA sizes from 39 to 52 bits, block
mappings at each level that allows one, LPA2 and LPA output addresses, the two halves, and
swap entries of each kernel generation. The real 4K and 16K dumps are in test_aarch64.py."""

from __future__ import annotations

import struct

import pytest

from kvmfx.boot import parse_boot_notes
from kvmfx.errors import SwappedOutError, TranslationError
from kvmfx.layers import FileSource, Segment, SegmentedLayer
from kvmfx_plugins.arch.aarch64 import (
    Aarch64,
    Aarch64Layer,
    Regime,
    adrp_refs,
    regime_of,
    swap_entry,
)

TABLE, PAGE, BLOCK = 0b11, 0b11, 0b01
AF = 1 << 10


def _memory(tmp_path, writes: dict[int, int], data: dict[int, bytes], size: int):
    mem = bytearray(size)
    for addr, val in writes.items():
        struct.pack_into("<Q", mem, addr, val)
    for addr, blob in data.items():
        mem[addr:addr + len(blob)] = blob
    path = tmp_path / "mem.raw"
    path.write_bytes(bytes(mem))
    return SegmentedLayer(FileSource(str(path)), [Segment(0, size, 0)])


def _index(regime: Regime, vaddr: int, level: int) -> int:
    shift = regime.shift(level)
    width = regime.va_bits - shift if level == regime.start else regime.bits
    return (vaddr >> shift) & ((1 << width) - 1)


def _map(regime: Regime, tables: list[int], vaddr: int, leaf_level: int, leaf: int
         ) -> dict[int, int]:
    """Descriptors that map ``vaddr`` through ``tables`` (one per level from the start) to
    ``leaf`` at ``leaf_level``."""
    out = {}
    levels = list(range(regime.start, leaf_level + 1))
    for i, level in enumerate(levels):
        at = tables[i] + 8 * _index(regime, vaddr, level)
        out[at] = leaf if level == leaf_level else (tables[i + 1] | TABLE)
    return out


CASES = [  # granule, VA bits, levels
    (4096, 39, 3), (4096, 48, 4), (16384, 36, 2), (16384, 47, 3), (16384, 48, 4),
    (16384, 52, 4), (65536, 42, 2), (65536, 48, 3), (65536, 52, 3), (4096, 52, 5),
]


@pytest.mark.parametrize(("granule", "va_bits", "levels"), CASES)
def test_pages_in_both_halves(tmp_path, granule, va_bits, levels):
    r = Regime(granule, va_bits, lpa2=va_bits > 48)
    assert r.levels == levels
    kernel_va = ((1 << 64) - (1 << va_bits)) + 3 * granule + 0x123   # upper half
    user_va = 0x0000_5555_0000_0000 % (1 << va_bits) + 5 * granule + 0x45
    n = levels
    ktables = [granule * (1 + i) for i in range(n)]
    utables = [granule * (1 + n + i) for i in range(n)]
    kpage, upage = granule * (2 * n + 2), granule * (2 * n + 3)
    writes = {**_map(r, ktables, kernel_va, 3, kpage | PAGE | AF),
              **_map(r, utables, user_va, 3, upage | PAGE | AF)}
    mem = _memory(tmp_path, writes, {kpage + 0x123: b"kernel", upage + 0x45: b"user"},
                  granule * (2 * n + 4))
    kernel = Aarch64Layer(mem, ktables[0], r)
    proc = Aarch64().process_space(kernel, utables[0])
    assert kernel.read(kernel_va, 6) == b"kernel"
    assert proc.read(user_va, 4) == b"user"
    assert proc.read(kernel_va, 6) == b"kernel"  # a process sees the kernel half
    with pytest.raises(TranslationError, match="TTBR1 half"):
        kernel.translate(user_va)
    # tag and pointer-authentication bits above the VA size are ignored, as with TBI
    tagged = kernel_va & ~(0xFF << 56) | (0xA5 << 56) | (1 << 55)
    assert kernel.translate(tagged) == kernel.translate(kernel_va)


@pytest.mark.parametrize(("granule", "va_bits", "level", "lpa2"), [
    (4096, 48, 2, False), (4096, 48, 1, False), (16384, 48, 2, False),
    (65536, 48, 2, False), (65536, 52, 1, False), (16384, 52, 1, True), (4096, 52, 0, True),
])
def test_block_mappings(tmp_path, granule, va_bits, level, lpa2):
    r = Regime(granule, va_bits, lpa2=lpa2)
    block = 1 << r.shift(level)
    assert r.block_allowed(level)
    vaddr = ((1 << 64) - (1 << va_bits)) + block * 3 + granule * 7 + 0x10
    tables = [granule * (1 + i) for i in range(level - r.start + 1)]
    target = 0x40000000 if block <= 0x40000000 else block  # the block's output, aligned
    # the data is read through a small window of physical memory at the block's start
    writes = _map(r, tables, vaddr, level, target | BLOCK | AF)
    mem = _memory(tmp_path, writes, {}, granule * (len(tables) + 1))
    layer = Aarch64Layer(mem, tables[0], r)
    assert layer.translate(vaddr) == (target + granule * 7 + 0x10, granule)


def test_a_block_where_the_granule_has_none_is_refused(tmp_path):
    r = Regime(16384, 48)  # 16K without LPA2: no level-1 blocks
    vaddr = (1 << 64) - (1 << 48)
    tables = [0x4000, 0x8000]
    writes = _map(r, tables, vaddr, 1, 0x40000000 | BLOCK | AF)
    layer = Aarch64Layer(_memory(tmp_path, writes, {}, 0x10000), tables[0], r)
    with pytest.raises(TranslationError, match="does not allow"):
        layer.translate(vaddr)


def test_52_bit_output_addresses_lpa2_and_lpa():
    lpa2 = Regime(16384, 52, lpa2=True)
    desc = 0x0000_1234_5678_4000 | (0b10 << 8) | PAGE  # OA[51:50] = 0b10 in bits 9:8
    assert lpa2.output(desc, 14) == (0b10 << 50) | 0x0000_1234_5678_4000
    plain = Regime(16384, 48)  # bits 9:8 are shareability: not part of the address
    assert plain.output(desc, 14) == 0x0000_1234_5678_4000
    lpa = Regime(65536, 52)
    desc64 = 0x0000_abcd_0001_0000 | (0xC << 12) | PAGE  # OA[51:48] = 0xC in bits 15:12
    assert lpa.output(desc64, 16) == (0xC << 48) | 0x0000_abcd_0001_0000


def test_invalid_descriptors_name_the_level_and_swap_entries_decode(tmp_path):
    r = Regime(4096, 48)
    vaddr = 0x0000_7FFF_F000_0000
    tables = [0x1000, 0x2000, 0x3000, 0x4000]
    writes = _map(r, tables, vaddr, 3, 0)
    writes[tables[3] + 8 * _index(r, vaddr + 0x1000, 3)] = (3 << 3) | (0x1234 << 8)
    mem = _memory(tmp_path, writes, {}, 0x6000)
    user = Aarch64Layer(mem, tables[0], r, upper=False, release=(6, 1))
    with pytest.raises(TranslationError, match="level-3 descriptor invalid"):
        user.translate(vaddr)
    with pytest.raises(SwappedOutError) as exc:
        user.translate(vaddr + 0x1000)
    assert (exc.value.swap_type, exc.value.swap_offset) == (3, 0x1234)
    with pytest.raises(TranslationError, match="level-0 descriptor invalid"):
        user.translate(0x0000_0100_0000_0000)


@pytest.mark.parametrize(("release", "pte", "want"), [
    ((5, 10), (7 << 2) | (0x55 << 8), (7, 0x55)),       # type 2-7, offset 8-57
    ((6, 1), (1 << 2) | (9 << 3) | (0x66 << 8), (9, 0x66)),  # bit 2 PG_anon_exclusive
    ((6, 12), (1 << 3) | (17 << 6) | (0x77 << 12), (17, 0x77)),  # type 6-10, offset 12-61
])
def test_swap_entries_of_each_generation(release, pte, want):
    assert swap_entry(pte, release) == want


def test_present_prot_none_entries_map_their_page(tmp_path):
    r = Regime(4096, 48)
    vaddr = 0x0000_0040_0000_0000
    tables = [0x1000, 0x2000, 0x3000, 0x4000]
    for release, bit in (((6, 12), 1 << 11), ((6, 1), 1 << 58)):
        writes = _map(r, tables, vaddr, 3, 0x5000 | bit | AF)  # VALID clear: PROT_NONE
        mem = _memory(tmp_path, writes, {0x5000: b"prot-none"}, 0x6000)
        user = Aarch64Layer(mem, tables[0], r, upper=False, release=release)
        assert user.read(vaddr, 9) == b"prot-none"


def test_tables_that_loop_end_the_walk(tmp_path):
    r = Regime(4096, 48)
    writes = {0x1000 + 8 * i: 0x1000 | TABLE for i in range(512)}
    layer = Aarch64Layer(_memory(tmp_path, writes, {}, 0x2000), 0x1000, r)
    # every level points back at the root; level 3 reads it as a page: the walk ends
    assert layer.translate((1 << 64) - 0x1000)[0] == 0x1000 + 0x000


def test_adrp_with_add_and_ldr_give_addresses_and_loads():
    pc = 0xFFFF800008123000
    adrp = 0x90000000 | (1 << 29) | (0x12 << 5) | 3   # ADRP x3, pc page + 0x12001 pages
    add = 0x91000000 | (0x988 << 10) | (3 << 5) | 3    # ADD x3, x3, #0x988
    ldr = 0xF9400000 | (0x28 << 10) | (3 << 5) | 4     # LDR x4, [x3, #0x140]
    ret = 0xD65F03C0
    code = b"".join(struct.pack("<I", i) for i in (adrp, add, ldr, ret, ldr))
    page = (pc & ~0xFFF) + (((0x12 << 2) | 1) << 12)
    assert adrp_refs(code, pc) == [("addr", page + 0x988), ("load", page + 0x988 + 0x140)]


def test_regime_from_vmcoreinfo():
    notes = parse_boot_notes(b"OSRELEASE=6.12.1\nPAGESIZE=16384\nNUMBER(VA_BITS)=52\n"
                             b"NUMBER(TCR_EL1_T1SZ)=0xc\n")
    r = regime_of(notes)
    assert (r.page_size, r.va_bits, r.levels, r.lpa2) == (16384, 52, 4, True)
    # a 52-bit kernel on hardware without LPA2 runs 48-bit: T1SZ says so
    notes = parse_boot_notes(b"OSRELEASE=6.12.1\nPAGESIZE=16384\nNUMBER(VA_BITS)=52\n"
                             b"NUMBER(TCR_EL1_T1SZ)=0x10\n")
    assert (regime_of(notes).va_bits, regime_of(notes).lpa2) == (48, False)
    with pytest.raises(TranslationError, match="granule"):
        Regime(8192, 48)


def test_an_unmapped_address_reports_its_aligned_unmapped_neighbourhood(tmp_path):
    """The span of an unmapped address is the largest aligned block of zero descriptors
    around it (readers skip it whole); a swap entry is not unmapped."""
    r = Regime(4096, 48)
    base = (1 << 64) - (1 << 48)
    tables = [0x1000, 0x2000, 0x3000, 0x4000]
    writes = _map(r, tables, base, 3, 0x5000 | PAGE | AF)
    for i in [*range(1, 0x50), *range(0xA0, 0x200)]:
        writes[tables[3] + 8 * i] = 0x5000 | PAGE | AF
    writes[tables[3] + 8 * 0x60] = (3 << 3) | (0x99 << 8)  # swapped out
    layer = Aarch64Layer(_memory(tmp_path, writes, {}, 0x6000), tables[0], r)

    def span(vaddr: int) -> int:
        with pytest.raises(TranslationError) as exc:
            layer.translate(vaddr)
        return exc.value.span

    assert span(base + 0x50 * 0x1000) == 0x10 * 0x1000   # 0x50-0x5f; 0x40-0x4f is mapped
    assert span(base + 0x85 * 0x1000) == 0x20 * 0x1000   # 0x80-0x9f; 0xa0 is mapped
    assert span(base + 0x61 * 0x1000) == 0x1000          # next to the swap entry
    assert span(base + 0x7F * 0x1000) == 0x10 * 0x1000   # 0x70-0x7f
    assert span(base + (1 << 21) * 7) == (1 << 21) * 4   # level 2: 4-7; 0 is mapped
    assert layer.translate(base + 0x4F * 0x1000) == (0x5000, 0x1000)


def test_a_table_the_dump_holds_in_part_is_read_a_descriptor_at_a_time(tmp_path):
    r = Regime(4096, 48)
    vaddr = (1 << 64) - (1 << 48) + 5 * 0x1000
    tables = [0x1000, 0x2000, 0x3000, 0x5000]
    writes = _map(r, tables, vaddr, 3, 0x4000 | PAGE | AF)
    mem = _memory(tmp_path, writes, {0x4000: b"partial"}, 0x5000 + 0x100)
    layer = Aarch64Layer(mem, tables[0], r)
    assert layer.read(vaddr, 7) == b"partial"
    with pytest.raises(TranslationError, match="level-3 translation table at physical "
                                               "0x5000 is not in the dump"):
        layer.translate(vaddr + 0x40 * 0x1000)

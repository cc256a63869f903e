"""x86_64 paging on real dumps (4- and 5-level) and synthetic page tables for edge cases."""

from __future__ import annotations

import struct

import pytest

import kvmfx
from kvmfx.errors import SwappedOutError, TranslationError
from kvmfx.layers import FileSource, Segment, SegmentedLayer
from kvmfx_plugins.arch.x86_64 import (
    ADDR_MASK,
    PTI_USER_BIT,
    X86_64Layer,
    rip_relative_refs,
    scan_for_root,
)
from kvmfx_plugins.linux.boot import find_banner
from tests.factory import get_fixture
from tests.linux.test_dump_processes import _check_session

PAGE = 4096


@pytest.fixture(scope="module")
def basic():
    return get_fixture("basic")


@pytest.fixture(scope="module")
def la57():
    return get_fixture("la57")


def test_five_level_paging_dump_reads_exactly(la57):
    assert la57.truth["kernel"]["paging_levels"] == 5
    for key in ("elf", "kdump-zlib", "raw"):
        with kvmfx.open(str(la57.path(key))) as s:
            assert s.kernel.describe()["paging_levels"] == 5
            assert _check_session(s, la57.truth) == len(la57.truth["processes"])


def test_four_level_dump_says_so(basic):
    with kvmfx.open(str(basic.path("elf"))) as s:
        assert basic.truth["kernel"]["paging_levels"] == 4
        assert s.kernel.describe()["paging_levels"] == 4


def test_saved_cr3_and_vmcoreinfo_root_map_the_kernel_alike(basic):
    with kvmfx.open(str(basic.path("elf"))) as s:
        banner = int(basic.truth["kernel"]["kallsyms"]["linux_banner"], 16)
        want = s.kernel.translate(banner)
        (cpu,) = s.cpus
        roots = {(cpu["cr3"] & ADDR_MASK) & ~PTI_USER_BIT, cpu["cr3"] & ADDR_MASK}
        for root in roots:
            assert X86_64Layer(s.physical, root, 4).translate(banner) == want


@pytest.mark.parametrize("name", ["basic", "la57"])
def test_scan_finds_the_kernel_root(name):
    fx = get_fixture(name)
    with kvmfx.open(str(fx.path("raw"))) as s:
        levels = fx.truth["kernel"]["paging_levels"]
        banner_at = find_banner(s.physical, None)
        assert banner_at is not None
        found = scan_for_root(s.physical, banner_at[0], levels)
        assert found is not None
        banner = int(fx.truth["kernel"]["kallsyms"]["linux_banner"], 16)
        scanned = X86_64Layer(s.physical, found, levels)
        assert scanned.read(banner, 14) == b"Linux version "


def test_unmapped_address_names_it(basic):
    with kvmfx.open(str(basic.path("elf"))) as s:
        with pytest.raises(TranslationError) as exc:
            s.read(0xFFFFFE0000000000 + 0x1234000, 8)
        assert "0xfffffe0001234000" in str(exc.value)
        with pytest.raises(TranslationError, match="non-canonical"):
            s.read(0x0000900000000000, 8)


# -- synthetic tables -------------------------------------------------------------------
def _image(tmp_path, tables: dict[int, dict[int, int]], data: dict[int, bytes], size: int):
    mem = bytearray(size)
    for base, entries in tables.items():
        for idx, val in entries.items():
            struct.pack_into("<Q", mem, base + idx * 8, val)
    for addr, blob in data.items():
        mem[addr:addr + len(blob)] = blob
    path = tmp_path / "mem.raw"
    path.write_bytes(bytes(mem))
    src = FileSource(str(path))
    return SegmentedLayer(src, [Segment(0, size, 0)])


def test_large_pages_and_swap_entries(tmp_path):
    P, U = 0x1, 0x7  # present; present|rw|user
    pml4, pdpt, pd, pt = 0x1000, 0x2000, 0x3000, 0x4000
    swap_pte = ((3 << 59) | ((~0x1234 & ((1 << 50) - 1)) << 9))  # type 3, slot 0x1234
    layer = _image(tmp_path, {
        pml4: {0: pdpt | U},
        pdpt: {1: 0x40000000 | U | 0x80,  # 1 GiB page at 1 GiB -> physical 1 GiB? (beyond)
               0: pd | U},
        pd: {2: 0x200000 | U | 0x80, 3: pt | U},  # 2 MiB page; then a 4 KiB table
        pt: {0: 0x5000 | P, 1: swap_pte, 2: 0},
    }, {0x205678: b"2MiB-page", 0x5010: b"4KiB-page"}, 0x400000)
    v = X86_64Layer(layer, pml4, 4)
    assert v.read(0x405678, 9) == b"2MiB-page"     # pd[2]: 2 MiB page
    assert v.read(0x600010, 9) == b"4KiB-page"     # pd[3] -> pt[0]
    assert v.translate(0x40000000 + 0x123456)[0] == 0x40000000 + 0x123456  # 1 GiB page
    with pytest.raises(SwappedOutError) as exc:
        v.translate(0x601000)
    assert (exc.value.swap_type, exc.value.swap_offset) == (3, 0x1234)
    with pytest.raises(TranslationError, match="level-1 entry not present"):
        v.translate(0x602000)


def test_rip_relative_lea_and_mov_give_addresses_and_loads():
    pc = 0xFFFFFFFF81000000
    lea = bytes([0x48, 0x8D, 0x05]) + (0x1000).to_bytes(4, "little", signed=True)
    mov = bytes([0x4C, 0x8B, 0x0D]) + (-0x20).to_bytes(4, "little", signed=True)
    code = b"\x90" + lea + mov + b"\xc3" + lea
    assert rip_relative_refs(code, pc) == [("addr", pc + 8 + 0x1000),
                                           ("load", pc + 15 - 0x20)]


def test_self_referencing_tables_terminate(tmp_path):
    pml4 = 0x1000
    layer = _image(tmp_path, {pml4: {i: pml4 | 0x7 for i in range(512)}}, {}, 0x10000)
    v = X86_64Layer(layer, pml4, 4)
    # every level points back at the root: the walk still ends after four levels
    assert v.translate(0x12345678)[0] == pml4 + 0x678
    v5 = X86_64Layer(layer, pml4, 5)
    assert v5.translate(0x12345678)[0] == pml4 + 0x678

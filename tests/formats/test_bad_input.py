"""Truncated, corrupt and lying dumps: one-line typed errors or flagged partial results.

Cases are cut from the real fixtures, and built synthetically from the formats' own construct
declarations where a real tool cannot produce them.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

import construct as cs
import pytest

import kvmfx
from kvmfx.errors import FormatError, KvmError, MissingPageError
from kvmfx_plugins.formats.kdump import (
    DISK_DUMP_HEADER,
    DUMP_DH_COMPRESSED_ZLIB,
    KDUMP_SUB_HEADER,
    PAGE_DESC,
)
from kvmfx_plugins.formats.lime import LIME_HEADER
from tests.factory import get_fixture

PAGE = 4096

#: every case runs in a child bounded in time and memory (tests/conftest.py)
pytestmark = pytest.mark.hostile


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _cut(fx, key, size, tmp_path):
    out = tmp_path / f"{key}.cut"
    with open(fx.path(key), "rb") as f:
        out.write_bytes(f.read(size))
    return out


def _one_line(exc: BaseException, *words: str) -> None:
    text = str(exc)
    assert "\n" not in text
    for w in words:
        assert w in text, (w, text)


@pytest.mark.parametrize("key, size", [("elf", 40), ("elf", 100), ("mdf-zlib", 300),
                                       ("mdf-zlib", 5000), ("flattened", 20),
                                       ("lime", 20)])
def test_truncated_headers_are_format_errors(fx, tmp_path, key, size):
    path = _cut(fx, key, size, tmp_path)
    with pytest.raises(KvmError) as exc:
        kvmfx.open(str(path))
    _one_line(exc.value, path.name)


def test_elf_cut_inside_memory_opens_with_the_rest_missing(fx, tmp_path):
    raw = fx.path("raw").read_bytes()
    path = _cut(fx, "elf", 64 << 20, tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with kvmfx.open(str(path)) as s:
        layer = s.physical
        assert layer.details["truncated"] is True and "not in it" in layer.details["missing"]
        assert layer.read(0x100000, PAGE) == raw[0x100000:0x100000 + PAGE]
        with pytest.raises(MissingPageError) as exc:
            layer.read(200 << 20, PAGE)
        _one_line(exc.value, "0xc800000")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_kdump_cut_inside_page_data_reports_missing_pages(fx, tmp_path):
    path = _cut(fx, "mdf-zlib", 20 << 20, tmp_path)
    with kvmfx.open(str(path)) as s:
        layer = s.physical
        assert layer.details["truncated"] is True
        assert layer.read(0x100000, PAGE)  # early pages are there
        with pytest.raises(MissingPageError) as exc:
            layer.read(250 << 20, PAGE)
        _one_line(exc.value, "truncated")


# -- synthetic ELF ---------------------------------------------------------------------
#: Elf64_Ehdr and Elf64_Phdr as <elf.h> declares them (kvmfx reads them with struct)
ELF64_EHDR = cs.Struct(
    "magic" / cs.Const(b"\x7fELF"),
    "ei_class" / cs.Int8ul, "ei_data" / cs.Int8ul, "ei_version" / cs.Int8ul,
    "ei_pad" / cs.Bytes(9),
    "e_type" / cs.Int16ul, "e_machine" / cs.Int16ul, "e_version" / cs.Int32ul,
    "e_entry" / cs.Int64ul, "e_phoff" / cs.Int64ul, "e_shoff" / cs.Int64ul,
    "e_flags" / cs.Int32ul, "e_ehsize" / cs.Int16ul, "e_phentsize" / cs.Int16ul,
    "e_phnum" / cs.Int16ul, "e_shentsize" / cs.Int16ul, "e_shnum" / cs.Int16ul,
    "e_shstrndx" / cs.Int16ul,
)
ELF64_PHDR = cs.Struct(
    "p_type" / cs.Int32ul, "p_flags" / cs.Int32ul, "p_offset" / cs.Int64ul,
    "p_vaddr" / cs.Int64ul, "p_paddr" / cs.Int64ul, "p_filesz" / cs.Int64ul,
    "p_memsz" / cs.Int64ul, "p_align" / cs.Int64ul,
)


def _elf(loads: list[tuple[int, int, int]], size: int) -> bytes:
    eh = ELF64_EHDR.build(dict(ei_class=2, ei_data=1, ei_version=1, ei_pad=bytes(9), e_type=4,
                               e_machine=62, e_version=1, e_entry=0, e_phoff=64, e_shoff=0,
                               e_flags=0, e_ehsize=64, e_phentsize=56, e_phnum=len(loads),
                               e_shentsize=0, e_shnum=0, e_shstrndx=0))
    ph = b"".join(ELF64_PHDR.build(dict(p_type=1, p_flags=7, p_offset=off, p_vaddr=0,
                                        p_paddr=pa, p_filesz=sz, p_memsz=sz, p_align=0))
                  for pa, sz, off in loads)
    blob = eh + ph
    return blob + bytes(size - len(blob))


def test_overlapping_pt_loads_are_refused(tmp_path):
    path = tmp_path / "overlap.elf"
    path.write_bytes(_elf([(0, 0x3000, 0x1000), (0x2000, 0x2000, 0x4000)], 0x6000))
    with pytest.raises(FormatError) as exc:
        kvmfx.open(str(path))
    _one_line(exc.value, "overlapping", "overlap.elf", "offset 0x4000")


def test_program_headers_past_the_end(tmp_path):
    data = bytearray(_elf([(0, 0x1000, 0x1000)], 0x2000))
    struct.pack_into("<H", data, 56, 60000)  # e_phnum lies
    path = tmp_path / "phnum.elf"
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError) as exc:
        kvmfx.open(str(path))
    _one_line(exc.value, "past the end", "offset 0x20")


# -- synthetic kdump -------------------------------------------------------------------
def _kdump(pages: dict[int, tuple[bytes, int]], max_mapnr: int = 64, bitmap_blocks: int = 2,
           desc_override: dict[int, tuple[int, int]] | None = None) -> bytes:
    bs = PAGE
    hdr = DISK_DUMP_HEADER.build(dict(
        signature=b"KDUMP   ", header_version=6,
        utsname={k: v.ljust(65, b"\0") for k, v in dict(
            sysname=b"Linux", nodename=b"n", release=b"6.1.0", version=b"#1",
            machine=b"x86_64", domainname=b"").items()},
        tv_sec=0, tv_usec=0, status=0, block_size=bs, sub_hdr_size=1,
        bitmap_blocks=bitmap_blocks, max_mapnr=max_mapnr, total_ram_blocks=0,
        device_blocks=0, written_blocks=0, current_cpu=0, nr_cpus=1))
    sub = KDUMP_SUB_HEADER.build(dict(
        phys_base=0, dump_level=0, split=0, start_pfn=0, end_pfn=max_mapnr,
        offset_vmcoreinfo=0, size_vmcoreinfo=0, offset_note=0, size_note=0,
        offset_eraseinfo=0, size_eraseinfo=0, start_pfn_64=0, end_pfn_64=max_mapnr,
        max_mapnr_64=max_mapnr))
    half = bitmap_blocks * bs // 2
    bitmap = bytearray(2 * half)
    for pfn in pages:
        bitmap[pfn // 8] |= 1 << (pfn % 8)
        bitmap[half + pfn // 8] |= 1 << (pfn % 8)
    desc_at = (2 + bitmap_blocks) * bs
    data_at = desc_at + len(pages) * PAGE_DESC.sizeof()
    descs, data = b"", b""
    for pfn in sorted(pages):
        blob, flags = pages[pfn]
        off, size = (desc_override or {}).get(pfn, (data_at + len(data), len(blob)))
        descs += PAGE_DESC.build(dict(offset=off, size=size, flags=flags, page_flags=0))
        data += blob
    head = hdr.ljust(bs, b"\0") + sub.ljust(bs, b"\0") + bytes(bitmap)
    return head + descs + data


def test_synthetic_kdump_reads_and_reports_missing(tmp_path):
    page = bytes(range(256)) * 16
    path = tmp_path / "ok.kdump"
    path.write_bytes(_kdump({3: (zlib.compress(page), DUMP_DH_COMPRESSED_ZLIB),
                             5: (page, 0)}))
    with kvmfx.open(str(path)) as s:
        assert s.read_physical(3 * PAGE, PAGE) == page == s.read_physical(5 * PAGE, PAGE)
        with pytest.raises(MissingPageError) as exc:
            s.read_physical(4 * PAGE, 8)
        _one_line(exc.value, "0x4000", "not in the dump")


def test_decompression_bomb_is_stopped_at_one_page(tmp_path):
    bomb = zlib.compress(bytes(64 << 20))  # 64 MiB of zeroes in ~64 KiB
    path = tmp_path / "bomb.kdump"
    path.write_bytes(_kdump({1: (bomb[:PAGE], DUMP_DH_COMPRESSED_ZLIB)}))
    with kvmfx.open(str(path)) as s, pytest.raises(FormatError) as exc:
        s.read_physical(PAGE, 16)
    _one_line(exc.value, "not 4096", "bomb.kdump")


def test_descriptor_pointing_outside_the_file(tmp_path):
    page = b"x" * PAGE
    path = tmp_path / "desc.kdump"
    path.write_bytes(_kdump({2: (page, 0)}, desc_override={2: (1 << 40, PAGE)}))
    with kvmfx.open(str(path)) as s, pytest.raises(FormatError) as exc:
        s.read_physical(2 * PAGE, 16)
    _one_line(exc.value, "points outside the file", "0x2000")


def test_garbage_page_data_is_a_format_error(tmp_path):
    path = tmp_path / "garbage.kdump"
    path.write_bytes(_kdump({1: (b"\xff" * 100, DUMP_DH_COMPRESSED_ZLIB)}))
    with kvmfx.open(str(path)) as s, pytest.raises(FormatError) as exc:
        s.read_physical(PAGE, 16)
    _one_line(exc.value, "does not decompress", "0x1000")


def test_bitmap_too_small_for_max_mapnr(tmp_path):
    path = tmp_path / "bitmap.kdump"
    path.write_bytes(_kdump({1: (b"y" * PAGE, 0)}, max_mapnr=1 << 30, bitmap_blocks=2))
    with pytest.raises(FormatError) as exc:
        kvmfx.open(str(path))
    _one_line(exc.value, "cannot hold", "offset 0x1b4")


# -- LiME --------------------------------------------------------------------------------
def _lime(ranges: list[tuple[int, int]], cut: int = 0, magic_at: int | None = None) -> bytes:
    out = b""
    for i, (start, end) in enumerate(ranges):
        h = LIME_HEADER.build(dict(version=1, s_addr=start, e_addr=end, reserved=bytes(8)))
        if magic_at == i:
            h = b"XXXX" + h[4:]
        out += h + bytes(max(0, end - start + 1))
    return out[:len(out) - cut] if cut else out


@pytest.mark.parametrize("blob, words", [
    (_lime([(0, 0xFFF), (0x2000, 0x2FFF)], magic_at=1), ["magic", "offset 0x1020"]),
    (_lime([(0x2000, 0x1000)]), ["ends", "before it starts"]),
], ids=["bad-magic-in-second-header", "range-ends-before-start"])
def test_lime_lies_are_format_errors(tmp_path, blob, words):
    path = tmp_path / "bad.lime"
    path.write_bytes(blob)
    with pytest.raises(FormatError) as exc:
        kvmfx.open(str(path))
    _one_line(exc.value, *words)


def test_lime_cut_in_its_last_range_is_flagged(tmp_path):
    path = tmp_path / "cut.lime"
    path.write_bytes(_lime([(0, 0xFFF), (0x100000, 0x10FFFF)], cut=0x8000))
    with kvmfx.open(str(path)) as s:
        assert s.physical.details["truncated"] is True
        s.read_physical(0x100000, PAGE)
        with pytest.raises(MissingPageError):
            s.read_physical(0x10F000, PAGE)

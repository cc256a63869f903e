"""Byte-level vectors from the real tools and the formats' documentation.

The round-trip property tests build their inputs with kvmfx's own construct declarations, so a
wrong layout would pass them. Here every expected value comes from somewhere else: what we
passed to the real ``mkswap`` and what ``blkid -p`` / ``swaplabel`` read back; raw bytes of
makedumpfile's files at the offsets its IMPLEMENTATION and diskdump_mod.h document (x86_64
LP64 alignment), the options the factory gave it, the guest's RAM size and the kernel's own
VMCOREINFO; ``makedumpfile -R`` (the tool's own rebuild of a flattened file) and ``file``
(libmagic's reading of the kdump header); LiME's documented header written with
``struct.pack``; the x86_64 swap-entry encoding read from arch/x86/include/asm/pgtable_64.h.
Nothing here imports a construct declaration or a constant from kvmfx.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import lzallright
import pytest
import zstandard

from kvmfx.errors import FormatError, MissingPageError
from kvmfx.layers import FileSource, Range
from kvmfx.registry import load_registry
from kvmfx.session import open_dump
from kvmfx_plugins.arch.x86_64 import X86_64
from kvmfx_plugins.arch.x86_64 import swap_entry as x86_64_swap_entry
from kvmfx_plugins.formats.flattened import FlatReader, parse_flat_header
from kvmfx_plugins.formats.swap import SwapArea, parse_swap_header
from tests.factory import get_fixture

PAGE = 4096
MASK64 = (1 << 64) - 1


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


@pytest.fixture(scope="module")
def registry():
    return load_registry()


# -- swap: the real mkswap ------------------------------------------------------------------
# include/linux/swap.h, union swap_header: the info view starts after 1024 bytes of bootbits
# (version, last_page, nr_badpages: __u32 each; sws_uuid[16]; sws_volume[16];
# padding[117] of __u32; then badpages[]); the magic "SWAPSPACE2" ends the first page.
SWAP_NR_BADPAGES_AT = 1024 + 8
SWAP_BADPAGES_AT = 1024 + 3 * 4 + 16 + 16 + 117 * 4


def _mkswap(path: Path, size: int, *args: str) -> tuple[int, str]:
    """Run mkswap on a zero file of ``size`` bytes: (usable bytes it reports, its stdout)."""
    with open(path, "wb") as f:
        f.truncate(size)
    path.chmod(0o600)
    r = subprocess.run([_tool("mkswap"), *args, str(path)], capture_output=True, text=True,
                       check=True)
    m = re.search(r"Setting up swapspace version (\d+), size = .*\((\d+) bytes\)", r.stdout)
    assert m, r.stdout
    assert m.group(1) == "1", r.stdout
    return int(m.group(2)), r.stdout


def _blkid(path: Path) -> dict[str, str]:
    r = subprocess.run([_tool("blkid"), "-p", "-o", "export", str(path)], capture_output=True,
                       text=True, check=True)
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def _swaplabel(path: Path) -> dict[str, str]:
    r = subprocess.run([_tool("swaplabel"), str(path)], capture_output=True, text=True,
                       check=True)
    return {k.strip(): v.strip() for k, v in
            (line.split(":", 1) for line in r.stdout.splitlines() if ":" in line)}


@pytest.mark.parametrize("size, label, uuid", [
    (10 * PAGE, "tiny", "00000000-0000-0000-0000-000000000001"),  # mkswap's minimum
    (1 << 20, "kvmfx-swap", "0b3c9c9e-6a6f-4f43-9b5e-0123456789ab"),
    # 16 bytes asked: mkswap keeps a NUL in sws_volume[16] and stores the first 15
    ((1 << 20) + 2048, "0123456789abcdef", "ffffffff-ffff-4fff-bfff-ffffffffffff"),
    (64 << 20, "", None),  # no label; mkswap picks the uuid
])
def test_mkswap_header_matches_what_mkswap_and_blkid_say(tmp_path, size, label, uuid):
    path = tmp_path / "swap.img"
    args = (["-L", label] if label else []) + (["-U", uuid] if uuid else [])
    usable, out = _mkswap(path, size, *args)
    blkid = _blkid(path)
    assert blkid["TYPE"] == "swap" and blkid["VERSION"] == "1", blkid

    h = parse_swap_header(path.read_bytes()[:PAGE], str(path))
    # mkswap's "size = N bytes" is the pages after the header page: last_page of them
    assert (h.version, h.last_page) == (1, usable // PAGE), (h, out)
    assert h.last_page == size // PAGE - 1, (h, size)  # a partial last page is not used
    assert h.bad_pages == frozenset()
    said = dict(re.findall(r"(LABEL|UUID)=([^,\s]*)", out))  # "LABEL=..., UUID=..."
    assert h.label == label[:15] == blkid.get("LABEL", "") == said.get("LABEL", ""), \
        (h.label, blkid, out)
    assert h.uuid == blkid["UUID"] == _swaplabel(path)["UUID"] == said["UUID"], (h.uuid, blkid)
    if uuid:
        assert h.uuid == uuid
    if label:
        assert h.label == _swaplabel(path)["LABEL"]

    # slots: 1 .. last_page hold data at slot * PAGE; the page past last_page is not swap
    data = bytearray(path.read_bytes())
    last = usable // PAGE
    data[last * PAGE:(last + 1) * PAGE] = b"last slot page\0".ljust(PAGE, b"\xa5")
    path.write_bytes(bytes(data))
    area = SwapArea(str(path))
    try:
        assert area.read_slot(last) == bytes(data[last * PAGE:(last + 1) * PAGE])
        with pytest.raises(MissingPageError):
            area.read_slot(last + 1)
        with pytest.raises(MissingPageError):
            area.read_slot(0)  # the header page
    finally:
        area.close()


def test_mkswap_bad_pages_at_the_kernel_header_offsets(tmp_path):
    """mkswap -c finds no bad blocks in a file: they are written where swap.h puts them."""
    path = tmp_path / "swap.img"
    usable, _ = _mkswap(path, 1 << 20, "-L", "bad")
    data = bytearray(path.read_bytes())
    bad = [3, 7, usable // PAGE]
    struct.pack_into("<I", data, SWAP_NR_BADPAGES_AT, len(bad))
    struct.pack_into(f"<{len(bad)}I", data, SWAP_BADPAGES_AT, *bad)
    path.write_bytes(bytes(data))
    assert _blkid(path)["LABEL"] == "bad"  # still the same area to blkid
    h = parse_swap_header(bytes(data[:PAGE]))
    assert h.bad_pages == frozenset(bad) and h.label == "bad"
    area = SwapArea(str(path))
    try:
        for slot in bad:
            with pytest.raises(MissingPageError):
                area.read_slot(slot)
        assert area.read_slot(4) == bytes(data[4 * PAGE:5 * PAGE])
    finally:
        area.close()


def test_mkswap_16k_pages_is_not_a_4k_swap_area(tmp_path):
    """mkswap -p 16384 puts the magic at the end of a 16 KiB page: an x86_64 kernel (4 KiB
    pages) refuses that area, and kvmfx must not read it with 4 KiB slots."""
    path = tmp_path / "swap16k.img"
    usable, _ = _mkswap(path, 1 << 20, "-p", "16384", "-L", "big")
    data = path.read_bytes()
    assert data[16384 - 10:16384] == b"SWAPSPACE2" and usable == (64 - 1) * 16384
    assert _blkid(path)["LABEL"] == "big"
    with pytest.raises(FormatError, match="SWAPSPACE2"):
        parse_swap_header(data[:PAGE])


# -- x86_64 swap entries ----------------------------------------------------------------------
# arch/x86/include/asm/pgtable_64.h (since the L1TF fix, 4.18): SWP_TYPE_BITS = 5,
# SWP_OFFSET_FIRST_BIT = _PAGE_BIT_PROTNONE + 1 = 9, SWP_OFFSET_SHIFT = 14;
# __swp_entry(type, offset) = (~offset << SWP_OFFSET_SHIFT >> SWP_TYPE_BITS) | type << 59.
def _kernel_swp_entry(swp_type: int, offset: int) -> int:
    return ((((~offset << 14) & MASK64) >> 5) | (swp_type << 59)) & MASK64


@pytest.mark.parametrize("pte, swp_type, offset", [
    (0x07FFFFFFFFFFFC00, 0, 1),           # worked by hand from the macro above
    (0x07FFFFFFFFFFFA00, 0, 2),           # inverted: only bit 10 of the field clear
    (0x0FFFFFFFFFFFFC00, 1, 1),
    (0xFFFFFFFFFFFFFC00, 31, 1),
    (0x0000000000000200, 0, (1 << 50) - 2),  # inverted: only bit 9 left set
])
def test_x86_64_swap_entry_vectors(pte, swp_type, offset):
    assert _kernel_swp_entry(swp_type, offset) == pte
    assert pte & 1 == 0 and pte & (1 << 8) == 0  # not present, not PROT_NONE
    assert x86_64_swap_entry(pte) == (swp_type, offset)
    # bits 1-4 are soft-dirty / uffd-wp / exclusive markers, not part of the entry
    assert x86_64_swap_entry(pte | 0b11110) == (swp_type, offset)


def test_x86_64_swap_entry_round_trip_across_the_field():
    for t in (0, 1, 5, 30, 31):
        for off in (1, 0x1234, 0xFFFFF, 1 << 32, (1 << 49) + 77, (1 << 50) - 2):
            assert x86_64_swap_entry(_kernel_swp_entry(t, off)) == (t, off), (t, off)


# -- kdump-compressed: makedumpfile's own files ------------------------------------------------
# diskdump_mod.h: status / page_desc flags
ZLIB, LZO, SNAPPY, ZSTD = 0x1, 0x2, 0x4, 0x20
CODEC_MASK = ZLIB | LZO | SNAPPY | ZSTD
#: fixture file -> (dump level, codec flag): the options tests/factory gave makedumpfile
MDF = {"mdf-zlib": (0, ZLIB), "mdf-lzo": (0, LZO), "mdf-zlib-d31": (31, ZLIB),
       "mdf-zstd": (0, ZSTD)}
CODEC_NAMES = {ZLIB: "zlib", LZO: "lzo", SNAPPY: "snappy", ZSTD: "zstd"}
# struct disk_dump_header on x86_64: signature[8]; int header_version @8; new_utsname (6 x 65
# bytes) @12..402; struct timeval aligned to 8 @408 (16 bytes); then status @424, block_size
# @428, sub_hdr_size @432, bitmap_blocks @436, max_mapnr @440, ..., nr_cpus @460.
DH = struct.Struct("<8si390x6xqqIiiII")
# struct kdump_sub_header (block 1): phys_base @0, dump_level @8, split @12, start_pfn @16,
# end_pfn @24, offset_vmcoreinfo @32, size_vmcoreinfo @40, offset_note @48, size_note @56,
# offset_eraseinfo @64, size_eraseinfo @72, start/end_pfn_64 @80/@88, max_mapnr_64 @96.
SUB = struct.Struct("<QiiQQqQqQqQQQQ")
SUB_SIZE = 104  # sizeof(struct kdump_sub_header); makedumpfile puts the ELF notes right after
PAGE_DESC = struct.Struct("<qIIQ")  # off_t offset; unsigned size, flags; u64 page_flags
UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _mdf(fx, key: str) -> Path:
    if key not in fx.files:
        pytest.skip(f"{key}: {fx.manifest.get('not_produced', {}).get(key, 'not built')}")
    return fx.path(key)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _raw_header(path: Path) -> dict:
    with open(path, "rb") as f:
        head = f.read(2 * PAGE)
    (sig, version, tv_sec, tv_usec, status, block_size, sub_hdr_size, bitmap_blocks,
     max_mapnr) = DH.unpack_from(head)
    uts = {name: head[12 + 65 * i:12 + 65 * (i + 1)].split(b"\0", 1)[0].decode()
           for i, name in enumerate(UTS_FIELDS)}
    sub = dict(zip(("phys_base", "dump_level", "split", "start_pfn", "end_pfn",
                    "offset_vmcoreinfo", "size_vmcoreinfo", "offset_note", "size_note",
                    "offset_eraseinfo", "size_eraseinfo", "start_pfn_64", "end_pfn_64",
                    "max_mapnr_64"), SUB.unpack_from(head, block_size), strict=True))
    return {"signature": sig, "header_version": version, "status": status,
            "block_size": block_size, "sub_hdr_size": sub_hdr_size,
            "bitmap_blocks": bitmap_blocks, "max_mapnr": max_mapnr, "uts": uts, "sub": sub,
            "nr_cpus": struct.unpack_from("<i", head, 460)[0]}


def _elf_core(path: Path) -> tuple[list[tuple[int, int]], list[tuple[bytes, int, bytes]]]:
    """(PT_LOAD (paddr, filesz) list, notes) of the ELF core, read per the ELF64 spec."""
    with open(path, "rb") as f:
        eh = f.read(64)
        assert eh[:4] == b"\x7fELF" and eh[4] == 2 and eh[5] == 1
        phoff = struct.unpack_from("<Q", eh, 0x20)[0]
        phentsize, phnum = struct.unpack_from("<HH", eh, 0x36)
        assert phnum < 0xFFFF
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        loads, notes = [], []
        for i in range(phnum):
            p_type, _fl, off, _va, paddr, filesz, _memsz, _al = struct.unpack_from(
                "<IIQQQQQQ", table, i * phentsize)
            if p_type == 1:
                loads.append((paddr, filesz))
            elif p_type == 4:
                f.seek(off)
                blob, pos = f.read(filesz), 0
                while pos + 12 <= len(blob):
                    namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
                    pos += 12
                    name = blob[pos:pos + namesz].rstrip(b"\0")
                    pos += (namesz + 3) & ~3
                    notes.append((name, ntype, blob[pos:pos + descsz]))
                    pos += (descsz + 3) & ~3
    return loads, notes


@pytest.fixture(scope="module")
def elf_core(fx):
    return _elf_core(fx.path("elf"))


@pytest.fixture(scope="module")
def vmcoreinfo(elf_core) -> bytes:
    found = [d for name, _t, d in elf_core[1] if name == b"VMCOREINFO"]
    assert len(found) == 1
    return found[0]


def _file_says(path: Path) -> str:
    return subprocess.run([_tool("file"), "-b", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.parametrize("key", sorted(MDF))
def test_kdump_header_fields_equal_the_documented_bytes(fx, registry, vmcoreinfo, key):
    path = _mdf(fx, key)
    level, codec = MDF[key]
    raw = _raw_header(path)
    # what makedumpfile writes (write_kdump_header), checked on the raw bytes first
    assert raw["signature"] == b"KDUMP   " and raw["header_version"] == 6, raw
    assert raw["block_size"] == PAGE  # x86_64 page size
    assert raw["status"] & CODEC_MASK == codec, hex(raw["status"])
    assert raw["sub"]["dump_level"] == level, raw["sub"]
    ram_pages = fx.manifest["ram_mb"] << 20 >> 12  # the guest's RAM, given to QEMU -m
    assert raw["max_mapnr"] == raw["sub"]["max_mapnr_64"] == ram_pages, raw
    assert raw["sub"]["offset_note"] == raw["block_size"] + SUB_SIZE
    assert raw["sub_hdr_size"] == _ceil_div(SUB_SIZE + raw["sub"]["size_note"], PAGE)
    # two bitmaps of one bit per page, each rounded up to whole blocks
    assert raw["bitmap_blocks"] == 2 * _ceil_div(_ceil_div(ram_pages, 8), PAGE)
    phys_base = int(re.search(rb"NUMBER\(phys_base\)=(-?\d+)", vmcoreinfo).group(1))
    assert raw["sub"]["phys_base"] == phys_base & MASK64
    assert raw["uts"]["release"] == fx.manifest["release"]

    layer = open_dump(str(path), registry)
    try:
        h = layer.h
        assert layer.format_name == "kdump"
        assert (h.header_version, h.block_size, h.sub_hdr_size, h.bitmap_blocks,
                h.max_mapnr, h.status) == (
            raw["header_version"], raw["block_size"], raw["sub_hdr_size"],
            raw["bitmap_blocks"], raw["max_mapnr"], raw["status"])
        assert h.utsname == raw["uts"]
        assert h.sub == raw["sub"]
        d = layer.describe()
        assert d["dump_level"] == level and d["phys_base"] == phys_base & MASK64
        assert d["release"] == fx.manifest["release"] and d["machine"] == "x86_64"
        assert d["codec"] == CODEC_NAMES[codec], d["codec"]
        assert d["incomplete"] is False and d["producer"] == "makedumpfile"
        # the VMCOREINFO makedumpfile copied is the kernel's own note in the ELF core
        assert layer.notes["vmcoreinfo"].rstrip(b"\0") == vmcoreinfo.rstrip(b"\0")
        assert len(X86_64().cpu_states(layer.notes["elf_notes"])) == raw["nr_cpus"]
    finally:
        layer.close()

    # libmagic reads the same header: "Kdump compressed dump v6, system Linux, node ..."
    said = _file_says(path)
    want = (f"Kdump compressed dump v{h.header_version}, system {h.utsname['sysname']}, "
            f"node {h.utsname['nodename']}, release {h.utsname['release']}, "
            f"version {h.utsname['version']}, machine {h.utsname['machine']}")
    assert said.startswith(want), (said, want)


def _ram_ranges(loads: list[tuple[int, int]], max_pfn: int) -> list[Range]:
    """PT_LOADs clipped to the first ``max_pfn`` pages, adjacent ones merged."""
    out: list[Range] = []
    for paddr, size in sorted(loads):
        start, end = paddr, min(paddr + size, max_pfn * PAGE)
        if start >= end:
            continue
        if out and out[-1].end == start:
            out[-1] = Range(out[-1].start, end)
        else:
            out.append(Range(start, end))
    return out


@pytest.mark.parametrize("key", sorted(MDF))
def test_kdump_ranges_are_the_elf_cores_memory(fx, registry, elf_core, key):
    """At -d 0 the dumped pages are the ELF core's PT_LOADs below max_mapnr; at -d 31 a
    subset of them."""
    path = _mdf(fx, key)
    level, _codec = MDF[key]
    ram = _ram_ranges(elf_core[0], fx.manifest["ram_mb"] << 20 >> 12)
    layer = open_dump(str(path), registry)
    try:
        if level == 0:
            assert layer.ranges == ram, layer.ranges
        else:
            assert sum(r.size for r in layer.ranges) < sum(r.size for r in ram) // 2
            for r in layer.ranges:
                assert any(m.start <= r.start and r.end <= m.end for m in ram), r
    finally:
        layer.close()


def _decode_page_independently(path: Path, raw: dict, pfn: int) -> bytes | None:
    """The page of ``pfn`` read with the documented layout: 2nd bitmap, descriptor by rank."""
    bs = raw["block_size"]
    bitmap_at = (1 + raw["sub_hdr_size"]) * bs
    half = raw["bitmap_blocks"] * bs // 2
    with open(path, "rb") as f:
        f.seek(bitmap_at + half)
        dumped = f.read(half)
        if not dumped[pfn // 8] >> (pfn % 8) & 1:
            return None
        rank = sum(bin(b).count("1") for b in dumped[:pfn // 8])
        rank += bin(dumped[pfn // 8] & ((1 << (pfn % 8)) - 1)).count("1")
        f.seek((1 + raw["sub_hdr_size"] + raw["bitmap_blocks"]) * bs + rank * PAGE_DESC.size)
        offset, size, flags, _pf = PAGE_DESC.unpack(f.read(PAGE_DESC.size))
        f.seek(offset)
        data = f.read(size)
    if flags & ZLIB:
        return zlib.decompress(data)
    if flags & LZO:
        return bytes(lzallright.LZOCompressor.decompress(data, output_size_hint=bs))
    if flags & ZSTD:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=bs)
    assert flags & CODEC_MASK == 0 and size == bs, (flags, size)
    return data


@pytest.mark.parametrize("key", sorted(MDF))
def test_kdump_pages_by_the_documented_descriptor_table(fx, registry, key):
    path = _mdf(fx, key)
    raw = _raw_header(path)
    pfns = [0, 1, 0x9F, 0xC0, 0x100, 0x1000, 0x1234, 0x8000,
            raw["max_mapnr"] // 2 + 17, raw["max_mapnr"] - 1]
    layer = open_dump(str(path), registry)
    seen = 0
    try:
        with open(fx.path("raw"), "rb") as ram:
            for pfn in pfns:
                want = _decode_page_independently(path, raw, pfn)
                if want is None:
                    with pytest.raises(MissingPageError):
                        layer.read(pfn * PAGE, PAGE)
                    continue
                seen += 1
                ram.seek(pfn * PAGE)
                assert want == ram.read(PAGE), hex(pfn)  # the guest's memory (pmemsave)
                assert layer.read(pfn * PAGE, PAGE) == want, hex(pfn)
    finally:
        layer.close()
    assert seen >= 3


# -- makedumpfile's flattened format ----------------------------------------------------------
# makedumpfile.h: struct makedumpfile_header { char signature[16] ("makedumpfile" padded to
# 8 bytes); int64_t type (TYPE_FLAT_HEADER 1); int64_t version (VERSION_FLAT_HEADER 1); },
# big-endian, in a 4096-byte block; then (int64 offset, int64 buf_size) big-endian records,
# each followed by buf_size bytes; the stream ends with offset = buf_size = -1.
@pytest.mark.parametrize("key", ["flattened", "kdump-zlib"])  # makedumpfile -F; QEMU 7
def test_flattened_is_what_makedumpfile_rebuilds(fx, registry, tmp_path, key):
    path = _mdf(fx, key)
    with open(path, "rb") as f:
        head = f.read(PAGE)
        f.seek(-16, 2)
        tail = f.read(16)
    assert head[:16] == b"makedumpfile\0\0\0\0"
    assert struct.unpack_from(">qq", head, 16) == (1, 1)
    assert head[32:] == bytes(PAGE - 32)
    assert struct.unpack(">qq", tail) == (-1, -1)  # write_end_flat_header: file is complete
    assert parse_flat_header(head) == (1, 1)
    assert "Flattened kdump compressed dump v6" in _file_says(path)

    rebuilt = tmp_path / "rebuilt.kdump"
    with open(path, "rb") as f:
        subprocess.run([_tool("makedumpfile"), "-R", str(rebuilt)], stdin=f,
                       capture_output=True, check=True)
    want = rebuilt.read_bytes()
    source = FileSource(str(path))
    try:
        reader = FlatReader(source)
        assert reader.size == len(want) and not reader.truncated
        assert reader.read(0, reader.size) == want
    finally:
        source.close()

    flat, plain = open_dump(str(path), registry), open_dump(str(rebuilt), registry)
    try:
        assert flat.format_name == "flattened" and plain.format_name == "kdump"
        assert flat.h == plain.h and flat.ranges == plain.ranges
        for paddr in (0, 0x100000, plain.ranges[-1].end - PAGE):
            assert flat.read(paddr, PAGE) == plain.read(paddr, PAGE)
    finally:
        flat.close()
        plain.close()


def test_flattened_makedumpfile_options_are_in_the_header(fx, registry):
    """makedumpfile -F -c -d 0: zlib pages, dump level 0."""
    raw_head = _mdf(fx, "flattened").read_bytes()[:PAGE]
    assert raw_head[:12] == b"makedumpfile"
    layer = open_dump(str(fx.path("flattened")), registry)
    try:
        d = layer.describe()
        assert d["dump_level"] == 0 and d["codec"] == "zlib" and d["container"] == "flattened"
        assert layer.h.status & CODEC_MASK == ZLIB and layer.h.header_version == 6
        assert layer.h.utsname["release"] == fx.manifest["release"]
    finally:
        layer.close()


# -- LiME: the header of its documentation ----------------------------------------------------
# LiME docs/README.md, "LiME Memory Range Header Version 1 Specification" (packed, little-
# endian on x86): unsigned int magic (0x4C694D45), unsigned int version (1), unsigned long
# long s_addr, unsigned long long e_addr (inclusive: LiME writes resource->end), unsigned
# char reserved[8] (zeros); the range's bytes follow.
def _lime_range(s_addr: int, e_addr: int, data: bytes, *, magic: int = 0x4C694D45,
                version: int = 1) -> bytes:
    return struct.pack("<IIQQ8s", magic, version, s_addr, e_addr, bytes(8)) + data


def test_lime_two_ranges_with_a_gap(tmp_path, registry):
    low = bytes(range(256)) * 32                      # 0x1000..0x2fff, 8 KiB
    high = b"high range page\0".ljust(PAGE, b"\x5a")  # 0x10000..0x10fff
    one = b"\x99"                                     # a one-byte range: s_addr == e_addr
    image = (_lime_range(0x1000, 0x2FFF, low) + _lime_range(0x10000, 0x10FFF, high)
             + _lime_range(0x20000, 0x20000, one))
    assert image[:4] == b"EMiL" and len(image) == 3 * 32 + len(low) + PAGE + 1
    path = tmp_path / "two.lime"
    path.write_bytes(image)
    layer = open_dump(str(path), registry)
    try:
        assert layer.format_name == "lime"
        assert layer.ranges == [Range(0x1000, 0x3000), Range(0x10000, 0x11000),
                                Range(0x20000, 0x20001)]
        assert layer.read(0x1000, len(low)) == low
        assert layer.read(0x1FF0, 0x20) == low[0xFF0:0x1010]
        assert layer.read(0x10000, PAGE) == high
        assert layer.read(0x20000, 1) == one
        assert not layer.describe().get("truncated")
        for gap in (0x0, 0xFFF, 0x3000, 0xFFFF, 0x11000, 0x20001):
            with pytest.raises(MissingPageError):
                layer.read(gap, 1)
        with pytest.raises(MissingPageError):
            layer.read(0x2FFF, 2)  # runs from the first range into the gap
    finally:
        layer.close()


@pytest.mark.parametrize("header, why", [
    (dict(version=2), "version"),
    (dict(version=0), "version"),
    (dict(s_addr=0x2000, e_addr=0x1FFF), "before it starts"),
])
def test_lime_bad_headers_are_format_errors(tmp_path, registry, header, why):
    s_addr = header.get("s_addr", 0x1000)
    e_addr = header.get("e_addr", 0x1FFF)
    image = (_lime_range(0, 0xFFF, bytes(PAGE))
             + _lime_range(s_addr, e_addr, bytes(PAGE), version=header.get("version", 1)))
    path = tmp_path / "bad.lime"
    path.write_bytes(image)
    with pytest.raises(FormatError, match=why) as exc:
        open_dump(str(path), registry)
    assert exc.value.offset is not None and exc.value.offset >= 32 + PAGE  # the 2nd header


def test_lime_magic_is_little_endian(tmp_path, registry):
    """The magic written big-endian ("LiME" on disk) is not LiME's documented header."""
    path = tmp_path / "be.lime"
    path.write_bytes(struct.pack(">IIQQ8s", 0x4C694D45, 1, 0, 0xFFF, bytes(8)) + bytes(PAGE))
    try:
        layer = open_dump(str(path), registry)
    except FormatError:
        return
    try:
        assert layer.format_name != "lime"
    finally:
        layer.close()

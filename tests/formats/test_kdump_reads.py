"""Reads of kdump pages through the fast path (one page) and the general one (several pages):
the same bytes, the same errors, and a page cache that a scan does not flush."""

from __future__ import annotations

import random
import struct
import zlib

import lzallright
import pytest

import kvmfx
from kvmfx.errors import FormatError, MissingPageError
from kvmfx_plugins.formats.flattened import HEADER_SIZE, SIGNATURE
from kvmfx_plugins.formats.kdump import (
    DESC_BATCH,
    DUMP_DH_COMPRESSED_LZO,
    DUMP_DH_COMPRESSED_ZLIB,
    KdumpLayer,
)
from tests.formats.test_bad_input import PAGE, _kdump

#: dumped pages: three descriptor blocks' worth, with holes (pfns not dumped)
DUMPED = [pfn for pfn in range(3 * DESC_BATCH + 40) if pfn % 97 not in (5, 6)]
MAX_MAPNR = 2048


def _content(pfn: int) -> bytes:
    return (pfn.to_bytes(4, "little") * 64 + random.Random(pfn).randbytes(64)) * 12 + \
        bytes(PAGE - 320 * 12)


def _encode(pfn: int, data: bytes) -> tuple[bytes, int]:
    if pfn % 3 == 0:
        return zlib.compress(data), DUMP_DH_COMPRESSED_ZLIB
    if pfn % 3 == 1:
        return bytes(lzallright.LZOCompressor().compress(data)), DUMP_DH_COMPRESSED_LZO
    return data, 0


def _flatten(data: bytes, rng: random.Random) -> bytes:
    """makedumpfile -F's form of ``data``: records of assorted sizes (page data often
    spans two), out of order, the first block written twice (the later copy wins)."""
    out = [SIGNATURE, struct.pack(">qq", 1, 1)]
    out[0] = out[0].ljust(16, b"\0")
    head = b"".join(out).ljust(HEADER_SIZE, b"\0")
    pieces, pos = [], 0
    while pos < len(data):
        n = min(len(data) - pos, rng.choice([100, 3000, 4096, 40000]))
        pieces.append((pos, data[pos:pos + n]))
        pos += n
    rng.shuffle(pieces)
    pieces.insert(0, (0, b"\xee" * PAGE))  # overwritten by the real first block
    records = b"".join(struct.pack(">qq", off, len(d)) + d for off, d in pieces)
    return head + records + struct.pack(">qq", -1, 0)


@pytest.fixture(scope="module", params=["kdump", "flattened"])
def dump(request, tmp_path_factory):
    data = _kdump({pfn: _encode(pfn, _content(pfn)) for pfn in DUMPED}, max_mapnr=MAX_MAPNR)
    path = tmp_path_factory.mktemp("kdump") / f"mixed.{request.param}"
    path.write_bytes(data if request.param == "kdump" else _flatten(data, random.Random(5)))
    return path


def _expected(addr: int, size: int) -> bytes | None:
    """The bytes at ``addr``, or None when some page is not dumped."""
    if size == 0:
        return b""
    out = b""
    dumped = set(DUMPED)
    for pfn in range(addr // PAGE, (addr + size + PAGE - 1) // PAGE):
        if pfn not in dumped:
            return None
        out += _content(pfn)
    first = addr // PAGE * PAGE
    return out[addr - first:addr - first + size]


def _shapes(rng: random.Random) -> list[tuple[int, int]]:
    top = MAX_MAPNR * PAGE
    reads = [(pfn * PAGE, PAGE) for pfn in range(len(DUMPED) + 60)]  # in order, whole
    for _ in range(1500):
        pfn = rng.randrange(len(DUMPED) + 60)
        kind = rng.randrange(4)
        if kind == 0:
            reads.append((pfn * PAGE, PAGE))
        elif kind == 1:
            off = rng.randrange(PAGE)
            reads.append((pfn * PAGE + off, rng.randrange(1, PAGE - off + 1)))
        elif kind == 2:  # across pages
            reads.append((pfn * PAGE + rng.randrange(PAGE), rng.randrange(PAGE, 3 * PAGE)))
        else:
            reads.append((pfn * PAGE + rng.randrange(PAGE), 0))
    return [r for r in reads if r[0] + r[1] <= top]


@pytest.mark.parametrize("seed", [1, 2])
def test_every_read_shape_gives_the_pages_bytes_or_missing(dump, seed):
    with kvmfx.open(str(dump)) as s:
        layer = s.physical
        assert layer.format_name == dump.suffix[1:]
        for addr, size in _shapes(random.Random(seed)):
            want = _expected(addr, size)
            if want is None:
                with pytest.raises(MissingPageError):
                    layer.read(addr, size)
                got = layer.read(addr, size, zero_fill=True)
                assert len(got) == size
            else:
                assert layer.read(addr, size) == want, (hex(addr), size)
                assert layer.read(addr, size, zero_fill=True) == want


def test_a_small_page_cache_gives_the_same_bytes(dump):
    with kvmfx.open(str(dump)) as s:
        small = KdumpLayer(s.physical.source, s.physical.reader, s.physical.h, cache_pages=3)
        rng = random.Random(3)
        for addr, size in _shapes(rng)[::3]:
            want = _expected(addr, size)
            if want is not None:
                assert small.read(addr, size) == want
        assert len(small._pages) <= 3


def test_a_scan_of_whole_pages_keeps_the_cached_pages(dump):
    with kvmfx.open(str(dump)) as s:
        layer = s.physical
        hot = DUMPED[10:20]
        for pfn in hot:
            assert layer.read(pfn * PAGE + 8, 8) == _content(pfn)[8:16]
        for pfn in DUMPED:
            assert layer.read(pfn * PAGE, PAGE) == _content(pfn)
        assert all(pfn in layer._pages for pfn in hot)
        assert len(layer._pages) <= len(hot) + 200  # out-of-order pages only
        # a page the scan read, read again, is then cached
        last = DUMPED[-1]
        assert layer.read(last * PAGE + 100, 4) == _content(last)[100:104]
        assert last in layer._pages


def test_a_truncated_page_is_missing_or_zeros_when_asked(tmp_path):
    pages = {pfn: _encode(pfn, _content(pfn)) for pfn in range(8)}
    full = _kdump(pages, max_mapnr=64)
    path = tmp_path / "cut.kdump"
    path.write_bytes(full[:len(full) - len(pages[7][0]) // 2])  # the last page's data is cut
    with kvmfx.open(str(path)) as s:
        layer = s.physical
        assert layer.details["truncated"] is True
        assert layer.read(6 * PAGE, PAGE) == _content(6)
        for size in (PAGE, 16):
            with pytest.raises(MissingPageError) as exc:
                layer.read(7 * PAGE, size)
            assert "truncated" in str(exc.value)
            assert layer.read(7 * PAGE, size, zero_fill=True) == bytes(size)
        assert layer.read(6 * PAGE, 2 * PAGE, zero_fill=True) == _content(6) + bytes(PAGE)


def test_pages_sharing_one_stored_page_read_as_it(tmp_path):
    """makedumpfile and QEMU store one page of zeros that every page of zeros points at."""
    zero = zlib.compress(bytes(PAGE))
    pfns = list(range(1, 40))
    pages = {pfn: (zero, DUMP_DH_COMPRESSED_ZLIB) if pfn % 4 else
             _encode(pfn, _content(pfn)) for pfn in pfns}
    # a descriptor at the shared data with other flags is decoded as what it says: an
    # uncompressed page of the wrong size
    pages[41] = (b"", 0)
    shared = 4 * PAGE + len(pages) * 24  # pfn 1's data: the first stored, after descriptors
    override = {pfn: (shared, len(zero)) for pfn in [*pfns, 41] if pfn % 4 and pfn != 1}
    path = tmp_path / "shared.kdump"
    path.write_bytes(_kdump(pages, desc_override=override))
    want = {pfn: bytes(PAGE) if pfn % 4 else _content(pfn) for pfn in pfns}
    for order in (pfns, random.Random(7).sample(pfns, len(pfns))):
        with kvmfx.open(str(path)) as s:
            for pfn in order:
                assert s.read_physical(pfn * PAGE, PAGE) == want[pfn]
                assert s.read_physical(pfn * PAGE + 5, 9) == want[pfn][5:14]
            with pytest.raises(FormatError) as exc:
                s.read_physical(41 * PAGE, PAGE)
            assert "has" in str(exc.value) and "not 4096" in str(exc.value)

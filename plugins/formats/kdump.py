"""kdump-compressed dumps (makedumpfile, QEMU ``dump-guest-memory -z/-l/-s``).

Layout (makedumpfile's IMPLEMENTATION and diskdump_mod.h): block 0 holds the disk_dump_header
("KDUMP   "), then ``sub_hdr_size`` blocks of kdump_sub_header (phys_base, dump level,
VMCOREINFO and ELF-note locations, 64-bit max_mapnr from header version 6), then
``bitmap_blocks`` blocks of two bitmaps (pages in memory; pages dumped), then one page_desc
(offset, size, flags, page_flags) per dumped page in PFN order, then the page data.

A page whose bit is clear in the dumped bitmap is missing (excluded or never captured):
:class:`~kvmfx.errors.MissingPageError`, never zeroes. Pages are decompressed with the codec
their descriptor names, through a bounded cache; a descriptor pointing outside the file, or
data that does not decompress to exactly one page, is a FormatError naming the page and the
file offset. The header parsers are pure functions of bytes.
"""

from __future__ import annotations

import functools
import mmap
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, Protocol

from kvmfx.errors import FormatError, MissingPageError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import DumpFormat, FileSource, PhysicalLayer, Range
from kvmfx.records import Record
from kvmfx_plugins.formats.elf import parse_notes

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"
DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
DUMP_DH_EXCLUDED_VMEMMAP = 0x10
DUMP_DH_COMPRESSED_ZSTD = 0x20
CODECS = {DUMP_DH_COMPRESSED_ZLIB: "zlib", DUMP_DH_COMPRESSED_LZO: "lzo",
          DUMP_DH_COMPRESSED_SNAPPY: "snappy", DUMP_DH_COMPRESSED_ZSTD: "zstd"}
MAX_BLOCK_SIZE = 1 << 20
MAX_MAPNR = 1 << 40
#: both bitmaps together; 512 MiB covers 16 TiB of 4 KiB pages
MAX_BITMAP_BYTES = 512 << 20
#: rank index granularity: bits of the dumped bitmap per precomputed popcount
RANK_STEP = 512
#: page descriptors are read and unpacked this many at a time
DESC_BATCH = 512
#: descriptor blocks kept (raw, 12 KiB each: at most 48 MiB)
DESC_BLOCKS = 4096

PAGE_DESC_SIZE = 24  # the size of PAGE_DESC


@functools.cache
def _layouts() -> SimpleNamespace:
    """The kdump headers and page descriptor as construct declarations, built when a kdump
    file is first read (construct is not imported at start-up)."""
    import construct as cs

    NEW_UTSNAME = cs.Struct(*(f / cs.Bytes(65) for f in (
        "sysname", "nodename", "release", "version", "machine", "domainname")))
    DISK_DUMP_HEADER = cs.Struct(
        "signature" / cs.Bytes(8),
        "header_version" / cs.Int32sl,
        "utsname" / NEW_UTSNAME,
        cs.Padding(6),
        "tv_sec" / cs.Int64sl, "tv_usec" / cs.Int64sl,
        "status" / cs.Int32ul,
        "block_size" / cs.Int32sl,
        "sub_hdr_size" / cs.Int32sl,
        "bitmap_blocks" / cs.Int32ul,
        "max_mapnr" / cs.Int32ul,
        "total_ram_blocks" / cs.Int32ul,
        "device_blocks" / cs.Int32ul,
        "written_blocks" / cs.Int32ul,
        "current_cpu" / cs.Int32ul,
        "nr_cpus" / cs.Int32sl,
    )
    KDUMP_SUB_HEADER = cs.Struct(
        "phys_base" / cs.Int64ul, "dump_level" / cs.Int32sl, "split" / cs.Int32sl,
        "start_pfn" / cs.Int64ul, "end_pfn" / cs.Int64ul,
        "offset_vmcoreinfo" / cs.Int64sl, "size_vmcoreinfo" / cs.Int64ul,
        "offset_note" / cs.Int64sl, "size_note" / cs.Int64ul,
        "offset_eraseinfo" / cs.Int64sl, "size_eraseinfo" / cs.Int64ul,
        "start_pfn_64" / cs.Int64ul, "end_pfn_64" / cs.Int64ul, "max_mapnr_64" / cs.Int64ul,
    )
    PAGE_DESC = cs.Struct("offset" / cs.Int64sl, "size" / cs.Int32ul, "flags" / cs.Int32ul,
                          "page_flags" / cs.Int64ul)
    return SimpleNamespace(NEW_UTSNAME=NEW_UTSNAME, DISK_DUMP_HEADER=DISK_DUMP_HEADER,
                           KDUMP_SUB_HEADER=KDUMP_SUB_HEADER, PAGE_DESC=PAGE_DESC)


def __getattr__(name: str) -> Any:
    if name in ("NEW_UTSNAME", "DISK_DUMP_HEADER", "KDUMP_SUB_HEADER", "PAGE_DESC"):
        return getattr(_layouts(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PAGE_DESC = struct.Struct("<qIIQ")  # PAGE_DESC, unpacked on the hot path


class Reader(Protocol):
    """Random access to the (logical) dump file: a FileSource, or a flattened file's map.

    A reader may also offer ``extent(offset)``: the stretch ``(lo, hi, mapping, at)`` of the
    dump file around ``offset`` that lies contiguously in a memory map (at ``at``), or None;
    page data inside it is then sliced from the map rather than read."""

    path: str
    size: int

    def read(self, offset: int, size: int) -> bytes: ...


#: (lo, hi, mapping, at): dump file offsets [lo, hi) are ``mapping[at:at + hi - lo]``
Extent = tuple[int, int, "mmap.mmap", int]


class KdumpHeader(Record):
    __slots__ = ("header_version", "block_size", "sub_hdr_size", "bitmap_blocks", "max_mapnr",
                 "status", "utsname", "sub")
    header_version: int
    block_size: int
    sub_hdr_size: int
    bitmap_blocks: int
    max_mapnr: int
    status: int
    utsname: dict[str, str]
    sub: dict[str, int]

    def __init__(self, header_version: int, block_size: int, sub_hdr_size: int,
                 bitmap_blocks: int, max_mapnr: int, status: int, utsname: dict[str, str],
                 sub: dict[str, int]) -> None:
        self.header_version = header_version
        self.block_size = block_size
        self.sub_hdr_size = sub_hdr_size
        self.bitmap_blocks = bitmap_blocks
        self.max_mapnr = max_mapnr
        self.status = status
        self.utsname = utsname
        self.sub = sub

    @property
    def bitmap_offset(self) -> int:
        return (1 + self.sub_hdr_size) * self.block_size

    @property
    def bitmap_bytes(self) -> int:
        return self.bitmap_blocks * self.block_size // 2

    @property
    def desc_offset(self) -> int:
        return (1 + self.sub_hdr_size + self.bitmap_blocks) * self.block_size


def parse_kdump_header(data: bytes, file_size: int) -> KdumpHeader:
    """Parse and check block 0 and the sub header (``data`` = at least two blocks)."""
    if data[:8] not in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE):
        raise FormatError("not a kdump-compressed dump (no KDUMP signature)", offset=0)
    layouts = _layouts()
    if len(data) < layouts.DISK_DUMP_HEADER.sizeof():
        raise FormatError(f"kdump header truncated ({len(data)} of "
                          f"{layouts.DISK_DUMP_HEADER.sizeof()} bytes)", offset=0)
    h = layouts.DISK_DUMP_HEADER.parse(data)
    if not 0 < h.block_size <= MAX_BLOCK_SIZE or h.block_size & (h.block_size - 1):
        raise FormatError(f"block size {h.block_size} is impossible", offset=428)
    if not 0 < h.sub_hdr_size < 1 << 16:
        raise FormatError(f"sub header of {h.sub_hdr_size} blocks is impossible", offset=432)
    if h.header_version < 1 or h.header_version > 100:
        raise FormatError(f"header version {h.header_version} is unknown", offset=8)
    sub: dict[str, int] = {}
    if data[:8] == KDUMP_SIGNATURE:
        need = h.block_size + layouts.KDUMP_SUB_HEADER.sizeof()
        if len(data) < need:
            raise FormatError("kdump sub header is truncated", offset=h.block_size)
        s = layouts.KDUMP_SUB_HEADER.parse(data[h.block_size:need])
        sub = {k: v for k, v in s.items() if not k.startswith("_")}
    max_mapnr = h.max_mapnr
    if h.header_version >= 6 and sub.get("max_mapnr_64"):
        max_mapnr = sub["max_mapnr_64"]
    if not 0 < max_mapnr <= MAX_MAPNR:
        raise FormatError(f"max_mapnr {max_mapnr} is impossible", offset=440)
    if h.bitmap_blocks * h.block_size > MAX_BITMAP_BYTES:
        raise FormatError(f"bitmaps of {h.bitmap_blocks} blocks are larger than "
                          f"{MAX_BITMAP_BYTES >> 20} MiB", offset=436)
    if h.bitmap_blocks * h.block_size < 2 * ((max_mapnr + 7) // 8):
        raise FormatError(f"bitmaps of {h.bitmap_blocks} blocks cannot hold {max_mapnr} "
                          "pages", offset=436)
    uts = {k: v.split(b"\0", 1)[0].decode("utf-8", "replace")
           for k, v in h.utsname.items() if not k.startswith("_")}
    hdr = KdumpHeader(h.header_version, h.block_size, h.sub_hdr_size, h.bitmap_blocks,
                      max_mapnr, h.status, uts, sub)
    if hdr.desc_offset > file_size:
        raise FormatError(f"bitmaps end at {hdr.desc_offset}, past the end of the file "
                          f"({file_size} bytes)", offset=436)
    hdr.utsname.pop("_io", None)
    return hdr


def _decompress(codec: int, data: bytes, block_size: int) -> bytes:
    if codec == DUMP_DH_COMPRESSED_ZLIB:
        d = zlib.decompressobj()
        return d.decompress(data, block_size + 1)  # bounded: a bomb stops at one page
    if codec == DUMP_DH_COMPRESSED_LZO:
        import lzallright  # the codecs are imported when a page needs them

        return bytes(lzallright.LZOCompressor.decompress(data, output_size_hint=block_size))
    if codec == DUMP_DH_COMPRESSED_SNAPPY:
        # raw snappy starts with the uncompressed length (a varint), which the library
        # allocates up front: a page claiming more than one block is refused unread
        claimed, shift = 0, 0
        for i, byte in enumerate(data[:5]):
            claimed |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if i == 4:
                claimed = block_size + 1
        if claimed > block_size:
            raise ValueError(f"claims {claimed} bytes, more than one {block_size}-byte page")
        import cramjam

        return bytes(cramjam.snappy.decompress_raw(data))
    if codec == DUMP_DH_COMPRESSED_ZSTD:
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=block_size)
    raise FormatError(f"unknown compression flags {codec:#x}")


class KdumpLayer(PhysicalLayer):
    """Pages of a kdump-compressed dump by PFN."""

    format_name = "kdump"
    zeros_kept = ("kdump files store pages of zeros (as one shared zero page), so the "
                  "filter left this page out for another reason")

    def __init__(self, source: FileSource, reader: Reader, header: KdumpHeader,
                 cache_pages: int = 4096) -> None:
        super().__init__(source)
        self.reader = reader
        self.h = header
        bs = header.block_size
        bitmap = reader.read(header.bitmap_offset, 2 * header.bitmap_bytes)
        self._valid = int.from_bytes(bitmap[:header.bitmap_bytes], "little")
        self._dumped_bytes = bitmap[header.bitmap_bytes:] + b"\0"
        dumped = int.from_bytes(self._dumped_bytes, "little")
        self._rank = self._rank_index()
        #: decoded pages by pfn, least recently used first (at most ``cache_pages``)
        self._pages: OrderedDict[int, bytes] = OrderedDict()
        self._cache_pages = max(1, cache_pages)
        self.codecs: set[str] = set()
        self.ranges = self._runs(dumped, header.max_mapnr, bs)
        # A file that ends inside its descriptor table, or whose last page's data runs past
        # its end, was cut short: pages beyond the end are missing, not corrupt.
        self.truncated = self._looks_truncated()
        self._probe_codec()
        self.page_size = bs
        self.incomplete = bool(header.status & DUMP_DH_COMPRESSED_INCOMPLETE)
        self._page_reader = self._in_page_reader()
        self._read_in_page = self._page_reader

    def _rank_index(self) -> list[int]:
        """Set bits of the dumped bitmap before each RANK_STEP-bit block."""
        step = RANK_STEP // 8
        out, total = [], 0
        data = self._dumped_bytes
        for i in range(0, len(data), step):
            out.append(total)
            total += int.from_bytes(data[i:i + step], "little").bit_count()
        out.append(total)
        self.dumped_pages = total
        return out

    @staticmethod
    def _runs(bits: int, max_mapnr: int, bs: int) -> list[Range]:
        ranges = []
        pfn = 0
        while bits and pfn < max_mapnr:
            low = (bits & -bits).bit_length() - 1
            bits >>= low
            pfn += low
            inverted = ~bits
            run = (inverted & -inverted).bit_length() - 1
            ranges.append(Range(pfn * bs, min(pfn + run, max_mapnr) * bs))
            bits >>= run
            pfn += run
        return ranges

    def excluded(self, pfn: int) -> bool:
        """In memory (first bitmap) but not in the file (second bitmap)."""
        if not 0 <= pfn < self.h.max_mapnr or self.truncated or self.incomplete:
            return False
        return bool(self._valid >> pfn & 1) and not (self._dumped_bytes[pfn >> 3] >> (pfn & 7)) & 1

    def excluded_pfns(self) -> Iterator[int]:
        bits = self._valid & ~int.from_bytes(self._dumped_bytes, "little")
        bits &= (1 << self.h.max_mapnr) - 1
        while bits:
            low = bits & -bits
            yield low.bit_length() - 1
            bits ^= low

    def _desc_index(self, pfn: int) -> int:
        """Number of dumped pages before ``pfn``: its descriptor's index."""
        block = pfn // RANK_STEP
        first = block * RANK_STEP // 8
        data = self._dumped_bytes
        count = int.from_bytes(data[first:pfn >> 3], "little").bit_count()
        count += (data[pfn >> 3] & ((1 << (pfn & 7)) - 1)).bit_count()
        return self._rank[block] + count

    def _page(self, pfn: int) -> bytes:
        """Page ``pfn``, decoded (through the page cache); MissingPageError when the dump
        does not hold it."""
        page = self._page_reader(pfn * self.page_size, self.page_size, True)
        if page is None:
            raise MissingPageError("page not in the dump (excluded or not captured)",
                                   address=pfn * self.page_size, path=self.reader.path)
        return page

    def _in_page_reader(self) -> Callable[..., bytes | None]:
        """The reader of bytes inside one dumped page (:attr:`PhysicalLayer._read_in_page`,
        the hot path of every read of a compressed dump): ``read(paddr, size, keep=False)``
        gives None when the dump does not hold the page, or the read is not inside one page
        (the general path then reads or explains it); MissingPageError for a page a
        truncated file lost, FormatError for a corrupt one.

        Decoded pages are kept in a bounded LRU cache, except the pages of a scan: a page
        read whole, right after the page before it, unless ``keep`` (the general path's
        reads of several pages, which small reads often come back to).

        A page's descriptor is found by rank in the dumped bitmap, or as the one after the
        previous page's when pages are read in order; it is checked against the file before
        the page's data is decompressed with the codec it names. Everything the function
        needs is bound here, once, so the per-page work looks nothing up on ``self``."""
        bs = self.h.block_size
        shift = bs.bit_length() - 1
        mask = bs - 1
        max_mapnr = self.h.max_mapnr
        dumped = self._dumped_bytes
        desc_offset = self.h.desc_offset
        reader = self.reader
        path = reader.path
        reader_size = reader.size
        read_file = reader.read
        # Page data is sliced directly from a memory map where the reader has one (the
        # descriptor was checked against the file's size first): the extent in use, a
        # stretch [lo, hi) of the dump file stored at ``at`` of ``mapped``; reader.read
        # otherwise (pread of a file too large to map, or the map is closed)
        extent: Callable[[int], Extent | None]
        if isinstance(reader, FileSource):
            whole = None if reader.mapping is None else (0, reader.size, reader.mapping, 0)
            extent = lambda offset: whole  # noqa: E731
        else:
            extent = getattr(reader, "extent", lambda offset: None)
        ext_lo, ext_hi, ext_at = 0, 0, 0
        mapped: mmap.mmap | None = None
        truncated = self.truncated
        desc_index = self._desc_index
        desc_block_raw = self._desc_block_raw
        unpack_desc = _PAGE_DESC.unpack_from
        batch, desc_size, decompress = DESC_BATCH, PAGE_DESC_SIZE, _decompress
        cache_pages = self._cache_pages
        pages = self._pages
        cached = pages.get
        move = pages.move_to_end
        evict = pages.popitem
        descs: OrderedDict[int, bytes] = OrderedDict()  # raw blocks, most recent last
        move_desc = descs.move_to_end
        codecs_seen = self.codecs
        named: set[int] = set()
        any_codec = (DUMP_DH_COMPRESSED_ZLIB | DUMP_DH_COMPRESSED_LZO |
                     DUMP_DH_COMPRESSED_SNAPPY | DUMP_DH_COMPRESSED_ZSTD)
        # the last page decoded and its descriptor's index; the descriptor block last used
        last_pfn, last_index = -2, -2
        block_no, block = -1, b""
        # the last page a scan read, not cached (see below)
        aside_pfn, aside_page = -1, b""
        # the data offset of the last page decoded; the data several descriptors share
        last_offset = shared_offset = shared_size = shared_flags = -1
        shared_page = b""

        def read(paddr: int, size: int, keep: bool = False) -> bytes | None:
            nonlocal last_pfn, last_index, block_no, block, aside_pfn, aside_page
            nonlocal ext_lo, ext_hi, mapped, ext_at, last_offset
            nonlocal shared_offset, shared_size, shared_flags, shared_page
            off = paddr & mask
            if size <= 0 or off + size > bs or paddr < 0:
                return None
            pfn = paddr >> shift
            page = cached(pfn)
            if page is not None:
                move(pfn)
                return page if size == bs else page[off:off + size]
            if pfn == aside_pfn:  # the page kept aside (below), read again: cached now
                page, aside_pfn = aside_page, -1
                pages[pfn] = page
                if len(pages) > cache_pages:
                    evict(False)
                return page if size == bs else page[off:off + size]
            if pfn >= max_mapnr or not (dumped[pfn >> 3] >> (pfn & 7)) & 1:
                return None
            # a dumped page right after the last one decoded has the next descriptor
            in_order = pfn == last_pfn + 1
            index = last_index + 1 if in_order else desc_index(pfn)
            last_pfn, last_index = pfn, index
            b = index // batch
            if b != block_no:
                got = descs.get(b)
                if got is None:
                    got = desc_block_raw(b)
                    descs[b] = got
                    if len(descs) > DESC_BLOCKS:
                        descs.popitem(last=False)
                else:
                    move_desc(b)
                block_no, block = b, got
            within = (index % batch) * desc_size
            if within + desc_size > len(block):
                raise MissingPageError("page's descriptor lies past the end of the file "
                                       "(truncated dump)", path=path, address=pfn * bs)
            d_offset, d_size, d_flags, _pf = unpack_desc(block, within)
            if d_offset == shared_offset and d_size == shared_size and d_flags == shared_flags:
                page = shared_page  # (a descriptor checked and decoded before)
            else:
                if d_offset < 0 or d_size == 0 or d_size > bs or d_offset + d_size > reader_size:
                    if truncated and d_offset + d_size > reader_size and d_offset < (1 << 50):
                        raise MissingPageError("page's data lies past the end of the file "
                                               "(truncated dump)", path=path, address=pfn * bs)
                    raise FormatError(f"page descriptor of physical {pfn * bs:#x} points "
                                      f"outside the file ({d_size} bytes at {d_offset:#x})",
                                      path=path, offset=desc_offset + index * PAGE_DESC_SIZE)
                d_end = d_offset + d_size
                if not ext_lo <= d_offset or d_end > ext_hi:
                    found = extent(d_offset)
                    if found is not None:
                        ext_lo, ext_hi, mapped, ext_at = found
                if ext_lo <= d_offset and d_end <= ext_hi and mapped is not None:
                    try:
                        data = mapped[ext_at + d_offset - ext_lo:ext_at + d_end - ext_lo]
                    except ValueError:  # the map is closed: reader.read says so, as a KvmError
                        data = read_file(d_offset, d_size)
                else:
                    data = read_file(d_offset, d_size)
                codec = d_flags & any_codec
                if not codec:
                    if d_size != bs:
                        raise FormatError(f"uncompressed page of physical {pfn * bs:#x} has "
                                          f"{d_size} bytes, not {bs}", path=path,
                                          offset=d_offset)
                    page = data
                else:
                    if codec not in named:
                        named.add(codec)
                        codecs_seen.add(CODECS.get(codec, hex(codec)))
                    try:
                        page = decompress(codec, data, bs)
                    except FormatError:
                        raise
                    except Exception as exc:  # codec libraries raise their own error types
                        raise FormatError(f"page of physical {pfn * bs:#x} does not decompress "
                                          f"({CODECS.get(codec, codec)}: {exc})", path=path,
                                          offset=d_offset) from None
                    if len(page) != bs:
                        raise FormatError(f"page of physical {pfn * bs:#x} decompresses to "
                                          f"{len(page)} bytes, not {bs}", path=path,
                                          offset=d_offset)
                if d_offset == last_offset:
                    # data another descriptor points at too (a dump stores one page of
                    # zeros for all its pages of zeros): kept, decoded, for the next ones
                    shared_offset, shared_size, shared_flags = d_offset, d_size, d_flags
                    shared_page = page
                last_offset = d_offset
            if size == bs and in_order and not keep:
                # a scan (whole pages, in order; the reader holds each): the page is kept
                # aside rather than cached, so that reading memory page by page evicts
                # none of the pages small reads come back to; read again, it is cached
                aside_pfn, aside_page = pfn, page
                return page
            pages[pfn] = page
            if len(pages) > cache_pages:
                evict(False)
            return page if size == bs else page[off:off + size]

        return read

    def _desc_block_raw(self, block: int) -> bytes:
        """The bytes of descriptors ``block * DESC_BATCH`` onwards (fewer at the end of
        the table or of a truncated file)."""
        first = block * DESC_BATCH
        count = min(DESC_BATCH, self.dumped_pages - first)
        at = self.h.desc_offset + first * PAGE_DESC_SIZE
        avail = max(0, min(count * PAGE_DESC_SIZE, self.reader.size - at))
        return self.reader.read(at, avail - avail % PAGE_DESC_SIZE) if avail else b""

    def _desc_block(self, block: int) -> list[tuple[int, int, int, int]]:
        return list(_PAGE_DESC.iter_unpack(self._desc_block_raw(block)))

    def _read_chunk(self, paddr: int, size: int) -> bytes:
        bs = self.page_size
        read = self._page_reader
        out = bytearray()
        pos, end = paddr, paddr + size
        while pos < end:
            stop = min(end, (pos // bs + 1) * bs)
            data = read(pos, stop - pos, True)
            out += data if data is not None else self._page(pos // bs)
            pos = stop
        return bytes(out)

    def _looks_truncated(self) -> bool:
        if not self.dumped_pages:
            return False
        table_end = self.h.desc_offset + self.dumped_pages * PAGE_DESC_SIZE
        if table_end > self.reader.size:
            return True
        last = self._desc_block((self.dumped_pages - 1) // DESC_BATCH)
        if not last:
            return True
        off, size, _f, _p = last[-1]
        # page data is written in PFN order: a cut file's last offsets still increase,
        # where a corrupt descriptor's offset is arbitrary
        return bool(off + size > self.reader.size and len(last) >= 2
                    and off >= last[-2][0] + last[-2][1])

    def _probe_codec(self) -> None:
        """Name the codec from the first dumped page's descriptor (for ``info``)."""
        if not self.dumped_pages:
            return
        try:
            _o, _s, flags, _pf = _PAGE_DESC.unpack(
                self.reader.read(self.h.desc_offset, PAGE_DESC_SIZE))
        except FormatError:
            return
        for bit, name in CODECS.items():
            if flags & bit:
                self.codecs.add(name)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["codec"] = ", ".join(sorted(self.codecs)) or "none (uncompressed pages)"
        return info


def _machine(name: str | None) -> str | None:
    """The header's machine, unless it names none (QEMU writes "Unknown" for some CPUs)."""
    return None if not name or name.lower() == "unknown" else name


def open_kdump(source: FileSource, reader: Reader, fmt: str) -> KdumpLayer:
    head = reader.read(0, min(reader.size, 2 * MAX_BLOCK_SIZE))
    header = parse_kdump_header(head, reader.size)
    layer = KdumpLayer(source, reader, header)
    sub = header.sub
    if sub.get("offset_vmcoreinfo", 0) > 0 and 0 < sub.get("size_vmcoreinfo", 0) < 1 << 20:
        try:
            layer.notes["vmcoreinfo"] = reader.read(sub["offset_vmcoreinfo"],
                                                    sub["size_vmcoreinfo"])
        except FormatError:
            pass
    if sub.get("offset_note", 0) > 0 and 0 < sub.get("size_note", 0) < 64 << 20:
        try:
            notes = parse_notes(reader.read(sub["offset_note"], sub["size_note"]))
            layer.notes["elf_notes"] = notes  # CPU notes are decoded by the architecture
            if "vmcoreinfo" not in layer.notes:
                vmci = [d for n, _t, d in notes if n == "VMCOREINFO"]
                if vmci:
                    layer.notes["vmcoreinfo"] = vmci[0]
        except FormatError:
            pass
    incomplete = bool(header.status & DUMP_DH_COMPRESSED_INCOMPLETE)
    if layer.truncated:
        layer.details["truncated"] = True
    layer.details.update({
        "container": fmt, "header_version": header.header_version,
        "block_size": header.block_size, "dump_level": sub.get("dump_level"),
        "phys_base": sub.get("phys_base"), "machine": _machine(header.utsname.get("machine")),
        "release": header.utsname.get("release"), "max_mapnr": header.max_mapnr,
        "dumped_pages": layer.dumped_pages, "incomplete": incomplete,
        "producer": "qemu" if header.utsname.get("release") == "" or
        header.utsname.get("sysname") == "" else "makedumpfile",
    })
    level = sub.get("dump_level")
    layer.dump_level = level if isinstance(level, int) and level > 0 else None
    valid = layer._valid.bit_count()
    if valid > layer.dumped_pages:
        layer.details["missing"] = (f"{valid - layer.dumped_pages} pages in memory but "
                                    f"excluded from the dump (dump level "
                                    f"{sub.get('dump_level')})")
    if incomplete or layer.truncated:
        layer.details["missing"] = ("the dump is incomplete (marked so by makedumpfile, or "
                                    "cut short): pages past the end of the file are missing")
    return layer


class KdumpFormat:
    name = "kdump"
    description = "kdump-compressed (makedumpfile, QEMU): zlib, lzo, snappy, zstd pages"

    def probe(self, head: bytes, source: FileSource) -> int:
        return 95 if head[:8] in (KDUMP_SIGNATURE, DISKDUMP_SIGNATURE) else 0

    def open(self, source: FileSource) -> PhysicalLayer:
        return open_kdump(source, source, "kdump")


@hookimpl
def kvmfx_dump_formats() -> list[DumpFormat]:
    return [KdumpFormat()]

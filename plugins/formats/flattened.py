"""makedumpfile's flattened format (``makedumpfile -F``; QEMU 7's kdump output).

A 4096-byte header ("makedumpfile", type 1, version 1) and then records, each a big-endian
(offset, size) pair followed by ``size`` bytes destined for ``offset`` of the kdump file they
flatten; an offset of -1 ends the stream. The records are mapped, not copied: reads of the
logical kdump file are served from the flattened file (later records win where they
overlap), and the result is decoded as kdump-compressed.
"""

from __future__ import annotations

import bisect
import mmap
import struct

from kvmfx.errors import FormatError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import DumpFormat, FileSource, PhysicalLayer
from kvmfx_plugins.formats.kdump import open_kdump

SIGNATURE = b"makedumpfile\0\0\0\0"
HEADER_SIZE = 4096
TYPE_FLAT_HEADER = 1
END_FLAG = -1
_REC = struct.Struct(">qq")
MAX_RECORDS = 50_000_000
#: an unwritten stretch of the logical file larger than this is corruption, not padding
MAX_HOLE = 16 << 20


def parse_flat_header(head: bytes) -> tuple[int, int]:
    """(type, version) of a flattened file; FormatError if it is not one."""
    if head[:16] != SIGNATURE[:len(head)] or not head:
        raise FormatError("not a makedumpfile flattened file", offset=0)
    if len(head) < 32:
        raise FormatError(f"flattened header truncated ({len(head)} of 32 bytes)", offset=0)
    ftype, version = struct.unpack_from(">qq", head, 16)
    if ftype != TYPE_FLAT_HEADER:
        raise FormatError(f"flattened header type {ftype} is not 1", offset=16)
    return ftype, version


def _resolve(records: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int]]:
    """Disjoint (lo, hi, file offset) pieces, sorted; where records overlap the later one
    wins (makedumpfile rewrites headers at the end)."""
    records.sort()
    pieces: list[tuple[int, int, int]] = []
    i = 0
    while i < len(records):
        j, hi = i + 1, records[i][1]
        while j < len(records) and records[j][0] < hi:
            hi = max(hi, records[j][1])
            j += 1
        if j == i + 1:
            lo, hi, at, _ = records[i]
            pieces.append((lo, hi, at))
        else:  # an overlapping cluster: paint it latest first, keeping uncovered parts
            covered: list[tuple[int, int, int]] = []
            for lo, hi, at, _seq in sorted(records[i:j], key=lambda r: -r[3]):
                parts = [(lo, hi)]
                for c_lo, c_hi, _o in covered:
                    parts = [q for a, b in parts for q in ((a, min(b, c_lo)), (max(a, c_hi), b))
                             if q[0] < q[1]]
                covered += [(a, b, at + (a - lo)) for a, b in parts]
            pieces += sorted(covered)
        i = j
    return pieces


class FlatReader:
    """The logical (rearranged) kdump file, read through the flattened file's records."""

    def __init__(self, source: FileSource) -> None:
        self.source = source
        self.path = source.path
        records: list[tuple[int, int, int, int]] = []  # (logical lo, hi, file offset, seq)
        pos = HEADER_SIZE
        end_logical = 0
        while pos + 16 <= source.size:
            offset, size = _REC.unpack(source.read(pos, 16))
            if offset == END_FLAG:
                break
            if offset < 0 or size < 0 or pos + 16 + size > source.size or \
                    len(records) >= MAX_RECORDS:
                raise FormatError(f"flattened record ({size} bytes for offset {offset}) runs "
                                  "past the end of the file or is impossible", path=self.path,
                                  offset=pos)
            if size:
                records.append((offset, offset + size, pos + 16, len(records)))
                end_logical = max(end_logical, offset + size)
            pos += 16 + size
        self.truncated = pos + 16 > source.size and bool(records)
        self.size = end_logical
        self._pieces = _resolve(records)
        self._starts = [p[0] for p in self._pieces]

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > self.size:
            raise FormatError(f"read of {size} bytes at logical offset {offset:#x} past the "
                              "end of the flattened data", path=self.path)
        # bytes inside one record (a page's data, usually: records hold whole writes)
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0:
            s, e, o = self._pieces[i]
            if offset + size <= e:
                return self.source.read(o + (offset - s), size)
        return self._read_pieces(offset, size)

    def extent(self, offset: int) -> tuple[int, int, mmap.mmap, int] | None:
        """The record holding logical ``offset`` as ``(lo, hi, mapping, at)``: logical
        ``[lo, hi)`` is ``mapping[at:at + hi - lo]``; None in a hole or if the file is not
        memory-mapped."""
        i = bisect.bisect_right(self._starts, offset) - 1
        mapping = self.source.mapping
        if i < 0 or mapping is None:
            return None
        lo, hi, at = self._pieces[i]
        return (lo, hi, mapping, at) if offset < hi else None

    def _read_pieces(self, offset: int, size: int) -> bytes:
        """``read`` across records and the holes between them."""
        out = bytearray()
        pos, end = offset, offset + size
        i = bisect.bisect_right(self._starts, pos) - 1
        while pos < end:
            if i >= len(self._pieces):
                break
            if i < 0:
                i = 0
                continue
            if pos < self._pieces[i][0]:
                # never written: a hole of the logical file, which reads as zeroes (as in
                # the file makedumpfile -R would rebuild); headers are padded this way
                n = min(self._pieces[i][0], end) - pos
                if n > MAX_HOLE:
                    raise FormatError(f"logical offset {pos:#x}: {n} bytes never written "
                                      "(corrupt records)", path=self.path)
                out += bytes(n)
                pos += n
                continue
            s, e, o = self._pieces[i]
            if pos >= e:
                i += 1
                continue
            n = min(e, end) - pos
            out += self.source.read(o + (pos - s), n)
            pos += n
            i += 1
        if pos < end:
            if end - pos > MAX_HOLE:
                raise FormatError(f"logical offset {pos:#x}: {end - pos} bytes never written "
                                  "(corrupt records)", path=self.path)
            out += bytes(end - pos)
        return bytes(out)


class FlattenedFormat:
    name = "flattened"
    description = "makedumpfile flattened format (makedumpfile -F, QEMU 7 kdump output)"

    def probe(self, head: bytes, source: FileSource) -> int:
        return 95 if head[:12] == SIGNATURE[:12] else 0

    def open(self, source: FileSource) -> PhysicalLayer:
        parse_flat_header(source.read_upto(0, HEADER_SIZE))
        reader = FlatReader(source)
        layer = open_kdump(source, reader, "flattened")
        layer.format_name = "flattened"
        if reader.truncated:
            layer.details["truncated"] = True
        return layer


@hookimpl
def kvmfx_dump_formats() -> list[DumpFormat]:
    return [FlattenedFormat()]

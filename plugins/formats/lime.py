"""LiME memory images: a 32-byte header per physical range, then the range's bytes.

The header (LiME's documentation): magic 0x4C694D45 ("EMiL" on disk), version 1, start and
end physical addresses (end inclusive), 8 reserved bytes. :func:`parse_lime` walks the file's
headers (a pure function of a reader) with bounds checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from kvmfx.errors import FormatError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import DumpFormat, FileSource, PhysicalLayer, Segment, SegmentedLayer

LIME_MAGIC = 0x4C694D45
HEADER_SIZE = 32  # the size of LIME_HEADER


@functools.cache
def _lime_header() -> Any:
    """LiME's range header (construct is imported when a LiME file is read, not at
    start-up)."""
    import construct as cs

    return cs.Struct(
        "magic" / cs.Const(LIME_MAGIC, cs.Int32ul),
        "version" / cs.Int32ul,
        "s_addr" / cs.Int64ul,
        "e_addr" / cs.Int64ul,
        "reserved" / cs.Bytes(8),
    )


def __getattr__(name: str) -> Any:
    if name == "LIME_HEADER":
        return _lime_header()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
MAX_RANGES = 1 << 16


def parse_lime(read: Callable[[int, int], bytes], file_size: int,
               path: str | None = None) -> tuple[list[Segment], bool]:
    """Segments of a LiME file, and whether its last range is cut short by the file's end."""
    import construct as cs

    header = _lime_header()
    segments = []
    pos = 0
    truncated = False
    while pos < file_size:
        if pos + HEADER_SIZE > file_size:
            raise FormatError("LiME header truncated", path=path, offset=pos)
        try:
            h = header.parse(read(pos, HEADER_SIZE))
        except cs.ConstructError:
            raise FormatError("bad LiME header magic", path=path, offset=pos) from None
        if h.version != 1:
            raise FormatError(f"LiME version {h.version} is not 1", path=path, offset=pos + 4)
        if h.e_addr < h.s_addr:
            raise FormatError(f"LiME range ends ({h.e_addr:#x}) before it starts "
                              f"({h.s_addr:#x})", path=path, offset=pos + 8)
        size = h.e_addr - h.s_addr + 1
        data_at = pos + HEADER_SIZE
        if data_at + size > file_size:
            size = file_size - data_at
            truncated = True
        segments.append(Segment(h.s_addr, size, data_at))
        if len(segments) > MAX_RANGES:
            raise FormatError(f"more than {MAX_RANGES} LiME ranges", path=path, offset=pos)
        pos = data_at + size
    return segments, truncated


class LimeLayer(SegmentedLayer):
    format_name = "lime"


class LimeFormat:
    name = "lime"
    description = "LiME memory image (lime-forensics 'lime' format)"

    def probe(self, head: bytes, source: FileSource) -> int:
        return 90 if head[:4] == LIME_MAGIC.to_bytes(4, "little") else 0

    def open(self, source: FileSource) -> PhysicalLayer:
        segments, truncated = parse_lime(source.read, source.size, source.path)
        layer = LimeLayer(source, segments)
        layer.details = {"producer": "LiME", "ranges_in_file": len(segments)}
        if truncated:
            layer.details["truncated"] = True
            layer.details["missing"] = "the file ends inside its last range"
        return layer


@hookimpl
def kvmfx_dump_formats() -> list[DumpFormat]:
    return [LimeFormat()]

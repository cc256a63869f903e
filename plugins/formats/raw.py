"""Raw physical memory images: byte N of the file is physical address N.

The fallback format: it claims a file only weakly (other formats recognise their headers),
never an empty one, and never one that starts with another known format's magic.
"""

from __future__ import annotations

from kvmfx.hookspecs import hookimpl
from kvmfx.layers import DumpFormat, FileSource, PhysicalLayer, Segment, SegmentedLayer

_OTHER_MAGICS = (b"\x7fELF", b"KDUMP   ", b"DISKDUMP", b"makedumpfile", b"EMiL", b"PAGEDUMP",
                 b"PAGEDU64", b"HIBR", b"hibr")


class RawLayer(SegmentedLayer):
    format_name = "raw"


class RawFormat:
    name = "raw"
    description = "raw physical memory image (pmemsave, dd of /dev/mem, padded raw)"

    def probe(self, head: bytes, source: FileSource) -> int:
        if source.size < 4096 or head.startswith(_OTHER_MAGICS):
            return 0
        return 5 if source.size % 4096 == 0 else 2

    def open(self, source: FileSource) -> PhysicalLayer:
        layer = RawLayer(source, [Segment(0, source.size, 0)])
        layer.details = {"producer": "unknown (raw image)"}
        return layer


@hookimpl
def kvmfx_dump_formats() -> list[DumpFormat]:
    return [RawFormat()]

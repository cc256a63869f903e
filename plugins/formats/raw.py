"""Raw physical memory images: byte N of the file is physical address N.

The fallback format: it claims a file only weakly (other formats recognise their headers),
never an empty one, and never one that starts with another known format's magic.
"""

from __future__ import annotations

from kvmfx.hookspecs import hookimpl
from kvmfx.layers import DumpFormat, FileSource, PhysicalLayer, Range, Segment, SegmentedLayer

_OTHER_MAGICS = (b"\x7fELF", b"KDUMP   ", b"DISKDUMP", b"makedumpfile", b"EMiL", b"PAGEDUMP",
                 b"PAGEDU64", b"HIBR", b"hibr")


class RawLayer(SegmentedLayer):
    """Byte N is physical N, unless the image turns out to start where the machine's RAM
    does (QEMU's pmemsave of RAM, a capture of one RAM range): :meth:`rebase`."""

    format_name = "raw"
    #: Where byte 0 lies is an assumption (the file says nothing of it).
    base_assumed = True

    def rebase(self, base: int) -> None:
        """Byte 0 of the file is physical ``base``."""
        assert self.source is not None
        self.segments = [Segment(base + s.paddr, s.size, s.offset) for s in self.segments]
        self.ranges = [Range(s.paddr, s.paddr + s.size) for s in self.segments]
        self._starts = []
        self.details["base"] = base
        self.base_assumed = False


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

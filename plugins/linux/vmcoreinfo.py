"""VMCOREINFO: the ``KEY=value`` text a Linux kernel publishes for dump tools.

:func:`parse_vmcoreinfo` is a pure function (bytes to :class:`~kvmfx.boot.BootNotes`, or
FormatError). :func:`find_vmcoreinfo` finds it in a dump: in the dump's notes, or, for
formats without notes (LiME, raw), in physical memory where the kernel keeps it.
"""

from __future__ import annotations

from kvmfx.boot import BootNotes, parse_boot_notes
from kvmfx.errors import FormatError, MissingPageError
from kvmfx.layers import PhysicalLayer

#: The parsed notes (kept under the name the kernel gives them).
VmcoreInfo = BootNotes
_SCAN_CHUNK = 16 << 20


def parse_vmcoreinfo(data: bytes) -> BootNotes:
    """Parse VMCOREINFO text; lines that are not ``KEY=value`` are ignored."""
    try:
        return parse_boot_notes(data)
    except FormatError:
        raise FormatError("VMCOREINFO has no OSRELEASE entry") from None


def scan_vmcoreinfo(physical: PhysicalLayer) -> BootNotes | None:
    """Find the kernel's in-memory VMCOREINFO text by scanning physical memory (bounded)."""
    for r in physical.ranges:
        pos = r.start
        while pos < r.end:
            size = min(_SCAN_CHUNK, r.end - pos)
            try:
                chunk = physical.read(pos, size, zero_fill=True)
            except MissingPageError:
                pos += size
                continue
            at = chunk.find(b"OSRELEASE=")
            while at >= 0:
                # the text starts a page (vmcoreinfo_data is page-aligned)
                if at % 4096 == 0:
                    try:
                        return parse_vmcoreinfo(bytes(chunk[at:at + 4096 * 2]))
                    except FormatError:
                        pass
                at = chunk.find(b"OSRELEASE=", at + 1)
            pos += size
    return None


def find_vmcoreinfo(physical: PhysicalLayer) -> BootNotes | None:
    """VMCOREINFO of a dump: its note first, then a scan of memory."""
    note = physical.notes.get("vmcoreinfo")
    if note:
        try:
            return parse_vmcoreinfo(note)
        except FormatError:
            pass
    return scan_vmcoreinfo(physical)

"""ELF cores: kdump /proc/vmcore, QEMU ``dump-guest-memory``, /proc/kcore.

Memory is the PT_LOAD segments by physical address (``p_filesz`` bytes of each; a
``p_memsz`` tail not in the file is missing, not zero). PT_NOTE carries VMCOREINFO and the
CPU notes (NT_PRSTATUS, QEMU's CPU state), kept raw in ``notes["elf_notes"]`` for the
architecture to decode. /proc/kcore is recognised by its
segments (kernel virtual addresses, some without a physical address): only its RAM segments
are used, by physical address. :func:`parse_elf_core` is a pure function of the header bytes.
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

from kvmfx.errors import FormatError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import PAGE_SIZE, DumpFormat, FileSource, PhysicalLayer, Segment, SegmentedLayer
from kvmfx.records import Record

# The ELF64 headers (little-endian; <elf.h>), read with struct: this format is opened more
# than any other, and these three fixed layouts do not need construct's import at start-up
# (nor a named tuple's definition: the fields are unpacked into names where they are read).
#: Elf64_Ehdr: magic ei_class ei_data ei_version ei_pad e_type e_machine e_version e_entry
#: e_phoff e_shoff e_flags e_ehsize e_phentsize e_phnum e_shentsize e_shnum e_shstrndx
ELF64_EHDR = struct.Struct("<4sBBB9sHHIQQQIHHHHHH")
#: Elf64_Phdr: p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
ELF64_PHDR = struct.Struct("<IIQQQQQQ")
NOTE_HDR = struct.Struct("<III")  # namesz, descsz, type
PT_LOAD, PT_NOTE, ET_CORE = 1, 4, 4
MAX_PHNUM = 1 << 16
MAX_NOTES_BYTES = 64 << 20
NO_PADDR = 0xFFFFFFFFFFFFFFFF


class ElfCore(Record):
    """What the headers of an ELF core say."""

    __slots__ = ("machine", "loads", "notes", "tails")
    machine: int
    loads: list[dict[str, int]]
    notes: list[tuple[int, int]]  # (offset, size) of PT_NOTEs
    #: Physical ranges a PT_LOAD covers past its file bytes (p_memsz > p_filesz).
    tails: list[tuple[int, int]]

    def __init__(self, machine: int, loads: list[dict[str, int]],
                 notes: list[tuple[int, int]] | None = None,
                 tails: list[tuple[int, int]] | None = None) -> None:
        self.machine = machine
        self.loads = loads
        self.notes = [] if notes is None else notes
        self.tails = [] if tails is None else tails


def parse_elf_core(head: bytes, file_size: int, read: Any = None) -> ElfCore:
    """Parse an ELF64 core's header and program headers (``read(off, n)`` for headers
    beyond ``head``); FormatError names the offset that is wrong."""
    if head[:4] != b"\x7fELF":
        raise FormatError("not an ELF file", offset=0)
    if len(head) < ELF64_EHDR.size:
        raise FormatError(f"ELF header truncated ({len(head)} of 64 bytes)", offset=0)
    if head[4] != 2 or head[5] != 1:
        raise FormatError("only little-endian ELF64 cores are supported", offset=4)
    (_magic, _class, _data, _version, _pad, e_type, e_machine, _e_version, _entry, e_phoff,
     _shoff, _flags, _ehsize, e_phentsize, e_phnum, *_sections) = ELF64_EHDR.unpack_from(head)
    if e_type != ET_CORE:
        raise FormatError(f"ELF type {e_type} is not a core (4)", offset=16)
    if e_phentsize != ELF64_PHDR.size or not 0 < e_phnum <= MAX_PHNUM:
        raise FormatError(f"bad program header table ({e_phnum} x {e_phentsize})",
                          offset=54)
    size = e_phnum * e_phentsize
    if e_phoff + size > file_size:
        raise FormatError("program headers lie past the end of the file", offset=32)
    table = head[e_phoff:e_phoff + size] if e_phoff + size <= len(head) else \
        read(e_phoff, size)
    core = ElfCore(e_machine, [])
    for i in range(e_phnum):
        p_type, _flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _align = \
            ELF64_PHDR.unpack_from(table, i * 56)
        if p_type == PT_LOAD and p_memsz > p_filesz:
            core.tails.append((p_paddr + p_filesz, p_paddr + p_memsz))
        if p_type == PT_LOAD and p_filesz:
            core.loads.append({"paddr": p_paddr, "vaddr": p_vaddr, "offset": p_offset,
                               "filesz": p_filesz, "memsz": p_memsz, "index": i})
        elif p_type == PT_NOTE and p_filesz:
            core.notes.append((p_offset, p_filesz))
    return core


def parse_notes(data: bytes) -> list[tuple[str, int, bytes]]:
    """(name, type, descriptor) of every note in a PT_NOTE blob (4-byte aligned)."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = NOTE_HDR.unpack_from(data, pos)
        name_end = pos + 12 + namesz
        desc_at = pos + 12 + ((namesz + 3) & ~3)
        desc_end = desc_at + descsz
        if name_end > len(data) or desc_end > len(data):
            break  # a truncated or padded note area ends the list
        name = data[pos + 12:name_end].rstrip(b"\0").decode("ascii", "replace")
        out.append((name, ntype, data[desc_at:desc_end]))
        pos = desc_at + ((descsz + 3) & ~3)
    return out


def _kcore_segments(loads: list[dict[str, int]]) -> list[dict[str, int]]:
    """/proc/kcore maps RAM twice (direct map and kernel text): keep the direct map."""
    ram = [ld for ld in loads if ld["paddr"] != NO_PADDR and ld["vaddr"] >= (1 << 63)]
    deltas = Counter(ld["vaddr"] - ld["paddr"] for ld in ram)
    if not deltas:
        return []
    direct = deltas.most_common(1)[0][0]
    return [ld for ld in ram if ld["vaddr"] - ld["paddr"] == direct]


class ElfLayer(SegmentedLayer):
    """A PT_LOAD's ``p_memsz`` beyond its ``p_filesz`` is memory the producer left out
    (makedumpfile -E drops runs of 256 or more filtered pages that way): :meth:`excluded`.
    ELF files do not record the dump level, so every filter is assumed."""

    format_name = "elf"
    tails: list[tuple[int, int]] = []

    #: Page size of the kernel whose memory this is (set once the kernel is known).
    page_size = PAGE_SIZE

    def excluded(self, pfn: int) -> bool:
        addr = pfn * self.page_size
        i = bisect.bisect_right(self.tails, (addr, 1 << 64)) - 1
        return i >= 0 and self.tails[i][0] <= addr < self.tails[i][1]

    def excluded_pfns(self) -> Iterator[int]:
        for start, end in self.tails:
            yield from range(-(-start // self.page_size), end // self.page_size)


class ElfFormat:
    name = "elf"
    description = "ELF core: kdump vmcore, QEMU dump-guest-memory, /proc/kcore"

    def probe(self, head: bytes, source: FileSource) -> int:
        if head[:4] == b"\x7fELF" and len(head) > 18 and head[16] == ET_CORE:
            return 90
        return 0

    def open(self, source: FileSource) -> PhysicalLayer:
        core = parse_elf_core(source.read_upto(0, 65536), source.size, source.read)
        notes: list[tuple[str, int, bytes]] = []
        for off, size in core.notes:
            size = min(size, MAX_NOTES_BYTES, max(0, source.size - off))
            notes += parse_notes(source.read_upto(off, size))
        kcore = any(ld["paddr"] == NO_PADDR for ld in core.loads) or (
            core.loads and all(ld["paddr"] == 0 for ld in core.loads)
            and all(ld["vaddr"] >= (1 << 63) for ld in core.loads))
        loads = _kcore_segments(core.loads) if kcore else core.loads
        truncated = []
        segments = []
        for ld in loads:
            size = ld["filesz"]
            if ld["offset"] + size > source.size:
                size = max(0, source.size - ld["offset"])
                truncated.append(ld["paddr"] + size)
            segments.append(Segment(ld["paddr"], size, ld["offset"]))
        layer = ElfLayer(source, segments)
        if not kcore:
            layer.tails = sorted(core.tails)
        vmcoreinfo = [d for n, _t, d in notes if n == "VMCOREINFO"]
        if vmcoreinfo:
            layer.notes["vmcoreinfo"] = vmcoreinfo[0]
        layer.notes["elf_notes"] = notes  # CPU notes are decoded by the architecture
        producer = ("kcore" if kcore else "qemu" if any(n == "QEMU" for n, _t, _d in notes)
                    else "vmcore")
        layer.details = {"producer": producer,
                         "elf_machine": core.machine,
                         "segments": len(segments), "vmcoreinfo": bool(vmcoreinfo)}
        if truncated:
            layer.details["truncated"] = True
            layer.details["missing"] = (f"file ends inside {len(truncated)} segment(s); "
                                        f"memory from {truncated[0]:#x} on is not in it")
        if kcore:
            layer.details["note"] = ("/proc/kcore: a virtual-address ELF; its RAM segments "
                                     "are used by physical address")
        return layer


@hookimpl
def kvmfx_dump_formats() -> list[DumpFormat]:
    return [ElfFormat()]

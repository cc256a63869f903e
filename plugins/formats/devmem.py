"""/dev/mem: the live system's physical memory (kvm_open(3)'s _PATH_MEM).

Recognised by what the file is (the mem character device, major 1 minor 1), not by its name.
Readable RAM ranges come from /proc/iomem ("System RAM"); a kernel built with STRICT_DEVMEM
refuses most of them, which surfaces as MissingPageError naming the address.
"""

from __future__ import annotations

import os
import stat

from kvmfx.errors import MissingPageError, ReadOnlyError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import DumpFormat, FileSource, PhysicalLayer, Range

MEM_MAJOR, MEM_MINOR = 1, 1


def parse_iomem(text: str) -> list[Range]:
    """Top-level "System RAM" ranges of /proc/iomem (inclusive ends made exclusive)."""
    out = []
    for line in text.splitlines():
        if line.startswith(" ") or "System RAM" not in line:
            continue
        span = line.split(":", 1)[0].strip()
        lo, _, hi = span.partition("-")
        try:
            start, end = int(lo, 16), int(hi, 16) + 1
        except ValueError:
            continue
        if end > start:
            out.append(Range(start, end))
    return sorted(out, key=lambda r: r.start)


class DevMemLayer(PhysicalLayer):
    format_name = "devmem"

    def __init__(self, source: FileSource, ranges: list[Range]) -> None:
        super().__init__(source, ranges)
        self.details = {"producer": "live /dev/mem", "note": "live memory changes while read"}

    def _read_chunk(self, paddr: int, size: int) -> bytes:
        assert self.source is not None
        try:
            data = os.pread(self.source._fd, size, paddr)
        except OSError as exc:
            raise MissingPageError(f"/dev/mem refuses the read ({exc.strerror})",
                                   path=self.source.path, address=paddr) from None
        if len(data) != size:
            raise MissingPageError("/dev/mem returned a short read", path=self.source.path,
                                   address=paddr + len(data))
        return data

    def write(self, paddr: int, data: bytes) -> int:
        raise ReadOnlyError("kvmfx opens /dev/mem read-only", path="/dev/mem", address=paddr)


class DevMemFormat:
    name = "devmem"
    description = "live physical memory: the /dev/mem device (ranges from /proc/iomem)"

    def probe(self, head: bytes, source: FileSource) -> int:
        try:
            st = os.stat(source.path)
        except OSError:
            return 0
        if stat.S_ISCHR(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) == (
                MEM_MAJOR, MEM_MINOR):
            return 100
        return 0

    def open(self, source: FileSource) -> PhysicalLayer:
        try:
            with open("/proc/iomem") as f:
                ranges = parse_iomem(f.read())
        except OSError:
            ranges = []
        return DevMemLayer(source, ranges)


@hookimpl
def kvmfx_dump_formats() -> list[DumpFormat]:
    return [DevMemFormat()]

"""/dev/mem: the live system's physical memory (kvm_open(3)'s _PATH_MEM).

Recognised by what the file is (the mem character device, major 1 minor 1), not by its name.
Readable RAM ranges come from /proc/iomem ("System RAM").

What Linux allows (drivers/char/mem.c, arch/x86/mm/init.c ``devmem_is_allowed``): opening
the device needs CAP_SYS_RAWIO and fails with EPERM under kernel lockdown. A kernel built with
CONFIG_STRICT_DEVMEM (the distributions' default) refuses reads and writes of RAM above the
first MiB with EPERM, which surfaces as MissingPageError (reads) or ReadOnlyError (writes)
naming the address; RAM in the first MiB reads as zeroes and writes to it are dropped by the
kernel although it reports them done.
"""

from __future__ import annotations

import os
import stat

from kvmfx.errors import KvmError, KvmOpenError, MissingPageError, ReadOnlyError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import DumpFormat, FileSource, PhysicalLayer, Range

MEM_MAJOR, MEM_MINOR = 1, 1
PATH_DEVMEM = "/dev/mem"
PATH_IOMEM = "/proc/iomem"


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


def read_iomem_ranges(path: str = PATH_IOMEM) -> list[Range]:
    """The System RAM ranges of the running kernel (none when /proc/iomem is unreadable)."""
    try:
        with open(path) as f:
            return parse_iomem(f.read())
    except OSError:
        return []


class DevMemLayer(PhysicalLayer):
    """Physical memory through the mem device; writable when its source was opened O_RDWR."""

    format_name = "devmem"

    def __init__(self, source: FileSource, ranges: list[Range]) -> None:
        super().__init__(source, ranges)
        self.writable = source.writable
        self.details = {"producer": f"live {source.path}",
                        "note": "live memory changes while read", "writable": source.writable}

    @classmethod
    def open_device(cls, path: str = PATH_DEVMEM, *, writable: bool = False,
                    ranges: list[Range] | None = None) -> DevMemLayer:
        """Open the mem device at ``path`` (read-write only when ``writable``); RAM ranges from
        /proc/iomem unless given."""
        source = FileSource(path, writable=writable)
        return cls(source, read_iomem_ranges() if ranges is None else ranges)

    def _read_chunk(self, paddr: int, size: int) -> bytes:
        assert self.source is not None
        try:
            data = os.pread(self.source._fd, size, paddr)
        except OSError as exc:
            raise MissingPageError(f"{self.source.path} refuses the read ({exc.strerror})",
                                   path=self.source.path, address=paddr) from None
        if len(data) != size:
            raise MissingPageError(f"{self.source.path} returned a short read",
                                   path=self.source.path, address=paddr + len(data))
        return data

    def write(self, paddr: int, data: bytes) -> int:
        """Write ``data`` at physical ``paddr`` (inside System RAM); the bytes written."""
        assert self.source is not None
        path = self.source.path
        if not self.writable:
            raise ReadOnlyError(f"{path} was opened read-only (open the session for writing)",
                                path=path, address=paddr)
        pos, end = paddr, paddr + len(data)
        while pos < end:
            rng = self._range_at(pos)
            if rng is None:
                raise MissingPageError("not System RAM (see /proc/iomem): kvmfx writes only RAM",
                                       path=path, address=pos)
            pos = rng.end
        try:
            written = os.pwrite(self.source._fd, data, paddr)
        except PermissionError:
            raise ReadOnlyError("the kernel refuses writes to this address through /dev/mem "
                                "(EPERM: a kernel built with CONFIG_STRICT_DEVMEM allows no "
                                "writes to RAM above the first MiB)", path=path,
                                address=paddr) from None
        except OSError as exc:
            raise KvmError(f"write failed ({exc.strerror or exc})", path=path,
                           address=paddr) from None
        if written != len(data):
            raise KvmError(f"short write ({written} of {len(data)} bytes)", path=path,
                           address=paddr + written)
        return written


class DevMemFormat:
    name = "devmem"
    description = "live physical memory: the /dev/mem device (ranges from /proc/iomem)"
    #: the only format a writable session may open (kvm_write on the live system)
    writable = True

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
        ranges = read_iomem_ranges()
        refuse_strict_devmem(source, ranges)
        return DevMemLayer(source, ranges)


#: CONFIG_STRICT_DEVMEM lets the first MiB through (BIOS, legacy devices); RAM above it not.
LOW_MIB = 1 << 20


def refuse_strict_devmem(source: FileSource, ranges: list[Range]) -> None:
    """Raise KvmOpenError when the kernel refuses reads of RAM through the mem device
    (CONFIG_STRICT_DEVMEM: EPERM for RAM above the first MiB): such a device holds none of
    the kernel's memory, so kvm_open(3)'s chain goes on to /proc/kcore."""
    probe = next((max(r.start, LOW_MIB) for r in ranges if r.end > LOW_MIB), None)
    if probe is None:
        return
    probe -= probe % 4096
    try:
        os.pread(source._fd, 1, probe)
    except PermissionError:
        raise KvmOpenError(f"the kernel refuses reads of RAM through it (EPERM at {probe:#x}: "
                           "CONFIG_STRICT_DEVMEM); read /proc/kcore instead",
                           path=source.path) from None
    except OSError:
        return  # another failure names its own address when that page is read


@hookimpl
def kvmfx_dump_formats() -> list[DumpFormat]:
    return [DevMemFormat()]

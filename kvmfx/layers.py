"""Physical address spaces: the contract every dump format implements, and shared machinery.

Layers stack: a read-only file source, a physical layer decoding one dump format on it, and a
virtual layer (an architecture's page tables) on the physical one. A physical layer answers
``read(paddr, size)`` with the bytes the evidence holds, and raises
:class:`~kvmfx.errors.MissingPageError` for bytes it does not hold: kvmfx never invents bytes
unless the caller asks for zero-fill.
"""

from __future__ import annotations

import bisect
import mmap
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

from kvmfx.errors import FormatError, KvmError, KvmOpenError, MissingPageError, ReadOnlyError
from kvmfx.records import Record

PAGE_SIZE = 4096


class Range(NamedTuple):
    """A half-open range of physical addresses ``[start, end)``."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


class FileSource:
    """A view of an evidence file (memory-mapped when the file allows), read-only by default.

    Evidence is never opened for writing; only a live memory device asked for by a writable
    session (``writable=True``) is opened read-write. Character devices such as /dev/mem,
    which cannot be mapped, are read with positioned reads. A directory, FIFO or socket is
    refused with :class:`~kvmfx.errors.KvmOpenError` before it is opened (a FIFO would block).
    """

    #: Files up to this size are memory-mapped; larger ones are read with pread, so that a
    #: multi-GiB dump read end to end does not grow the process's resident set.
    MMAP_LIMIT = 512 << 20

    def __init__(self, path: str, *, writable: bool = False) -> None:
        self.path = str(path)
        self.writable = writable
        self._fd = -1
        self._map: mmap.mmap | None = None
        try:
            mode = os.stat(self.path).st_mode
        except OSError as exc:
            raise KvmOpenError(exc.strerror or str(exc), path=self.path) from None
        if stat.S_ISDIR(mode):
            raise KvmOpenError("is a directory, not a memory image or kernel file",
                               path=self.path)
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            raise KvmOpenError("not a regular file or device (a FIFO or socket)", path=self.path)
        flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.path, flags)
        except OSError as exc:
            what = "cannot open for writing: " if writable else ""
            raise KvmOpenError(what + (exc.strerror or str(exc)), path=self.path) from None
        st = os.fstat(self._fd)
        # a block device (a swap partition) reports size 0 in st_size: ask the device
        self.size = st.st_size if not stat.S_ISBLK(st.st_mode) else \
            os.lseek(self._fd, 0, os.SEEK_END)
        if 0 < self.size <= self.MMAP_LIMIT and not writable:
            try:
                self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                self._map = None

    def read(self, offset: int, size: int) -> bytes:
        """Return exactly ``size`` bytes at ``offset`` or raise FormatError (truncated file)."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise FormatError(f"read of {size} bytes past the end of the file "
                              f"({self.size} bytes)", path=self.path, offset=offset)
        if self._map is not None:
            return self._map[offset:offset + size]
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as exc:
            raise KvmError(f"read error ({exc.strerror or exc})", path=self.path,
                           offset=offset) from None
        if len(data) != size:
            raise FormatError(f"short read ({len(data)} of {size} bytes)", path=self.path,
                              offset=offset)
        return data

    def read_upto(self, offset: int, size: int) -> bytes:
        """Return up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
        if offset >= self.size:
            return b""
        return self.read(offset, min(size, self.size - offset))

    @property
    def mapping(self) -> mmap.mmap | None:
        """The file's read-only memory map (None when it is read with pread); slicing it
        past the end gives fewer bytes, and after :meth:`close` raises ValueError."""
        return self._map

    def release(self) -> None:
        """Let the kernel take back the pages of the file's map this process touched
        (they stay in the page cache; a later read maps them again). For after a bulk
        read that was copied out: a search of the kernel image must not keep tens of MiB
        of the dump resident."""
        if self._map is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                self._map.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass  # a closed map, or a platform without it: nothing to give back

    def view(self) -> memoryview | None:
        """A zero-copy view of the whole file, if it is memory-mapped."""
        return memoryview(self._map) if self._map is not None else None

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BoundedCache:
    """A least-recently-used cache with a fixed number of entries (decoded pages, tables)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = max(1, capacity)
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        try:
            value = self._data[key]
        except KeyError:
            value = load()
            self._data[key] = value
            if len(self._data) > self.capacity:
                self._data.popitem(last=False)
            return value
        self._data.move_to_end(key)
        return value

    def __len__(self) -> int:
        return len(self._data)


class PhysicalLayer:
    """Base class of physical address spaces (one per dump format or live source).

    Subclasses implement :meth:`_read_chunk`, which reads bytes inside one contiguous present
    run, and fill :attr:`ranges` (sorted, non-overlapping). ``notes`` holds what the format
    carries besides memory (``vmcoreinfo`` bytes, ``cpu`` register sets with ``cr3``...).
    """

    #: short name of the format, e.g. ``elf``, ``kdump``, ``lime``.
    format_name = "unknown"
    #: whether addresses are physical (False for virtual-address ELF such as /proc/kcore).
    physical = True
    #: A format's fast path for reads inside one of its pages: given (paddr, size), the bytes,
    #: or None for a read it leaves to the general path (which finds the ranges and gaps and
    #: says why a page is missing); it raises what :meth:`_read_chunk` would for the page.
    #: Page-granular formats set it.
    _read_in_page: Callable[[int, int], bytes | None] | None = None

    def __init__(self, source: FileSource | None, ranges: list[Range] | None = None) -> None:
        self.source = source
        self.ranges: list[Range] = ranges or []
        self.notes: dict[str, Any] = {}
        self.details: dict[str, Any] = {}
        self.writable = False
        self._starts: list[int] = []
        #: Set by an OS profile on formats that filter pages (:meth:`excluded`): given the
        #: pfn of a page the filter left out, None when the page provably held only zeros
        #: (it then reads as zeros), else why that cannot be shown.
        self.zero_verdict: Callable[[int], str | None] | None = None
        #: Pages read as zeros that way, by pfn.
        self.zero_pages_read: set[int] = set()
        self._verdicts = BoundedCache(1 << 16)
        self._judging = False

    # -- contract for subclasses -------------------------------------------------------
    def _read_chunk(self, paddr: int, size: int) -> bytes:
        """Read ``size`` bytes at ``paddr``; the run is known to lie inside one range."""
        raise NotImplementedError

    def _missing_in(self, paddr: int, size: int) -> int | None:
        """First missing address inside a present range (for page-granular formats)."""
        return None

    def excluded(self, pfn: int) -> bool:
        """True when page ``pfn`` was in the machine's memory but the dump's filter left it
        out (kdump files made at a dump level say so per page); False for every other gap."""
        return False

    #: The dump level the filter ran at (makedumpfile -d), when the format records it.
    dump_level: int | None = None
    #: Why no excluded page of this format can have been a page of zeros, when that holds
    #: (kdump files keep pages of zeros, pointing them all at one stored zero page).
    zeros_kept: str | None = None

    def excluded_pfns(self) -> Iterator[int]:
        """Every pfn :meth:`excluded` is true of."""
        return iter(())

    def excluded_as_zeros(self, pfn: int) -> str | None:
        """None when excluded page ``pfn`` provably held zeros, else why not (cached)."""
        if self.zeros_kept is not None:
            return self.zeros_kept
        if self.zero_verdict is None:
            return "nothing shows what it held"
        if self._judging:  # the verdict's own reads do not ask for verdicts
            return "it is needed to judge another excluded page"
        return self._verdicts.get(pfn, lambda: self._judge(pfn))

    def _judge(self, pfn: int) -> str | None:
        assert self.zero_verdict is not None
        self._judging = True
        try:
            return self.zero_verdict(pfn)
        finally:
            self._judging = False

    def _gap(self, pos: int, stop: int) -> bytes:
        """Bytes of ``[pos, stop)``, which no range holds: zeros for excluded pages that
        provably held zeros; anything else raises MissingPageError saying why."""
        out = bytearray()
        while pos < stop:
            size = getattr(self, "page_size", PAGE_SIZE)
            pfn = pos // size
            page_end = min(stop, (pfn + 1) * size)
            if not self.excluded(pfn):
                raise MissingPageError("physical address not in the dump", address=pos,
                                       path=self.source.path if self.source else None)
            why = self.excluded_as_zeros(pfn)
            if why is not None:
                level = "" if self.dump_level is None else f" (dump level {self.dump_level})"
                raise MissingPageError(f"physical address not in the dump: its filter{level} "
                                       f"left it out, and it is not provably zeros: {why}",
                                       address=pos,
                                       path=self.source.path if self.source else None)
            self.zero_pages_read.add(pfn)
            out += bytes(page_end - pos)
            pos = page_end
        return bytes(out)

    # -- shared behaviour ----------------------------------------------------------------
    def _index(self) -> list[int]:
        if len(self._starts) != len(self.ranges):
            self._starts = [r.start for r in self.ranges]
        return self._starts

    def _range_at(self, paddr: int) -> Range | None:
        starts = self._index()
        i = bisect.bisect_right(starts, paddr) - 1
        if i >= 0 and self.ranges[i].start <= paddr < self.ranges[i].end:
            return self.ranges[i]
        return None

    def read(self, paddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        """Read ``size`` bytes of physical memory at ``paddr``.

        Bytes the dump does not hold raise MissingPageError naming the first missing
        address; with ``zero_fill=True`` they read as zeroes instead (explicitly requested).
        """
        fast = self._read_in_page
        if fast is not None:
            try:
                data = fast(paddr, size)
            except MissingPageError:
                if not zero_fill:
                    raise
                data = None  # the general path fills it with zeros
            if data is not None:
                return data
        if size < 0 or paddr < 0:
            raise MissingPageError("negative physical read", address=paddr)
        out = bytearray()
        pos = paddr
        end = paddr + size
        while pos < end:
            rng = self._range_at(pos)
            if rng is None:
                nxt = self._next_start(pos)
                stop = min(end, nxt) if nxt is not None else end
                out += bytes(stop - pos) if zero_fill else self._gap(pos, stop)
                pos = stop
                continue
            stop = min(end, rng.end)
            try:
                out += self._read_chunk(pos, stop - pos)
            except MissingPageError as exc:
                if not zero_fill:
                    raise
                out += self._read_chunk_zero_filled(pos, stop - pos, exc)
            pos = stop
        return bytes(out)

    def _read_chunk_zero_filled(self, paddr: int, size: int, _exc: MissingPageError) -> bytes:
        out = bytearray()
        pos, end = paddr, paddr + size
        while pos < end:
            stop = min(end, (pos // PAGE_SIZE + 1) * PAGE_SIZE)
            try:
                out += self._read_chunk(pos, stop - pos)
            except MissingPageError:
                out += bytes(stop - pos)
            pos = stop
        return bytes(out)

    def _next_start(self, paddr: int) -> int | None:
        starts = self._index()
        i = bisect.bisect_right(starts, paddr)
        return starts[i] if i < len(starts) else None

    def write(self, paddr: int, data: bytes) -> int:
        """Dumps are evidence: writing is refused unless a live device was opened writable."""
        raise ReadOnlyError(f"{self.format_name} evidence is read-only",
                            path=self.source.path if self.source else None, address=paddr)

    @property
    def size(self) -> int:
        """Highest physical address held plus one."""
        return self.ranges[-1].end if self.ranges else 0

    def describe(self) -> dict[str, Any]:
        """Facts for ``kvmfx info``: format, producer, codec, ranges..."""
        info: dict[str, Any] = {"format": self.format_name, "physical": self.physical}
        info.update(self.details)
        info["ranges"] = [[r.start, r.end] for r in self.ranges]
        return info

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def __enter__(self) -> PhysicalLayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Segment(Record):
    """A run of physical memory stored contiguously in a file."""

    __slots__ = ("paddr", "size", "offset")
    paddr: int
    size: int
    offset: int

    def __init__(self, paddr: int, size: int, offset: int) -> None:
        self.paddr = paddr
        self.size = size
        self.offset = offset


class SegmentedLayer(PhysicalLayer):
    """A physical layer whose memory is a list of contiguous file segments (ELF, LiME, raw)."""

    def __init__(self, source: FileSource, segments: list[Segment]) -> None:
        segments = sorted((s for s in segments if s.size > 0), key=lambda s: s.paddr)
        for a, b in zip(segments, segments[1:], strict=False):
            if a.paddr + a.size > b.paddr:
                raise FormatError(f"overlapping memory segments at {a.paddr:#x} and "
                                  f"{b.paddr:#x}", path=source.path, offset=b.offset)
        for s in segments:
            if s.offset + s.size > source.size:
                raise FormatError(f"segment for {s.paddr:#x}+{s.size:#x} runs past the end of "
                                  f"the file ({source.size} bytes)", path=source.path,
                                  offset=s.offset)
        super().__init__(source, [Range(s.paddr, s.paddr + s.size) for s in segments])
        self.segments = segments

    def _read_chunk(self, paddr: int, size: int) -> bytes:
        i = bisect.bisect_right(self._index(), paddr) - 1
        seg = self.segments[i]
        assert self.source is not None
        return self.source.read(seg.offset + (paddr - seg.paddr), size)


class DumpFormat(Protocol):
    """What a format plugin provides (see :func:`kvmfx.hookspecs.kvmfx_dump_formats`)."""

    #: short unique name, e.g. ``elf``.
    name: str
    #: one line for ``kvmfx plugins``.
    description: str

    def probe(self, head: bytes, source: FileSource) -> int:
        """Confidence 0-100 that the file is in this format, from its first bytes."""
        ...

    def open(self, source: FileSource) -> PhysicalLayer:
        """Open the physical layer; raise FormatError when the file is malformed."""
        ...

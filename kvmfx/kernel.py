"""The kernel an image holds: who it is and where it lives, found once when a session opens.

A kernel finder (:func:`kvmfx.hookspecs.kvmfx_kernel_finders`) knows one OS's boot
conventions: Linux's VMCOREINFO, its banner, how KASLR is reported. It reads what the image
says of itself (:meth:`KernelFinder.boot_notes`), and, given the architecture, finds the
kernel's page-table root and returns a :class:`KernelImage`. Symbol providers, OS profiles and
commands read the kernel's identity from that one object.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from kvmfx.arch import Architecture, VirtualLayer
from kvmfx.boot import BootNotes
from kvmfx.errors import KvmError, TranslationError
from kvmfx.layers import PAGE_SIZE, PhysicalLayer
from kvmfx.records import Record

#: The kernel image is read in runs of this size (its mapping's largest block).
RUN = 2 << 20
#: How much of the image is read before runs that do not map contiguously end it.
IMAGE_PAST = 32 << 20
#: What an unmapped run reads as (a slice of the whole is the object itself).
_UNMAPPED = bytes(RUN)


class KernelImage(Record):
    """One kernel in one image: identity (release, build id), placement (KASLR offset,
    page-table root) and its address space."""

    __slots__ = ("os", "layer", "release", "build_id", "kaslr_offset", "kaslr_source",
                 "anchors", "boot", "cpus", "page_size", "image_window", "extra",
                 "_find_banner", "_banner")
    _no_repr = frozenset({"_find_banner", "_banner"})

    #: Which OS's finder found it (``linux``).
    os: str
    #: The kernel's virtual address space.
    layer: VirtualLayer
    release: str | None
    build_id: str | None
    #: KASLR offset of the kernel text (0 when not randomised or not reported).
    kaslr_offset: int
    #: Where the offset came from (``vmcoreinfo``, or why it is assumed 0).
    kaslr_source: str
    #: Symbol addresses the kernel reports itself (VMCOREINFO SYMBOL()s), KASLR included:
    #: symbol files are checked and slid against these.
    anchors: dict[str, int]
    #: What the kernel says of itself (VMCOREINFO), empty when it says nothing.
    boot: BootNotes
    #: Registers of each CPU from the dump's notes (architecture-decoded).
    cpus: list[dict[str, Any]]
    #: Page size of the kernel (bytes).
    page_size: int
    #: Where the kernel image lies when not randomised, [low, high): symbols in it move
    #: with the KASLR offset, others (per-CPU offsets, absolute values) do not.
    image_window: tuple[int, int]
    #: Further facts for ``kvmfx info`` (phys_base...).
    extra: dict[str, Any]
    _find_banner: Callable[[], str | None] | None
    _banner: str | None | bool

    def __init__(self, os: str, layer: VirtualLayer, release: str | None = None,
                 build_id: str | None = None, kaslr_offset: int = 0,
                 kaslr_source: str = "assumed 0", anchors: dict[str, int] | None = None,
                 boot: BootNotes | None = None, cpus: list[dict[str, Any]] | None = None,
                 page_size: int = 4096, image_window: tuple[int, int] = (0, 0),
                 extra: dict[str, Any] | None = None,
                 _find_banner: Callable[[], str | None] | None = None,
                 _banner: str | None | bool = False) -> None:
        self.os = os
        self.layer = layer
        self.release = release
        self.build_id = build_id
        self.kaslr_offset = kaslr_offset
        self.kaslr_source = kaslr_source
        self.anchors = {} if anchors is None else anchors
        self.boot = BootNotes() if boot is None else boot
        self.cpus = [] if cpus is None else cpus
        self.page_size = page_size
        self.image_window = image_window
        self.extra = {} if extra is None else extra
        self._find_banner = _find_banner
        self._banner = _banner

    def banner(self) -> str | None:
        """The kernel's version banner (``Linux version ...``), found on first use."""
        if self._banner is False:
            self._banner = self._find_banner() if self._find_banner is not None else None
        return self._banner  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """Facts for ``kvmfx info`` (the address space's, then the kernel's)."""
        return {**self.layer.describe(), "kernel_release": self.release,
                "build_id": self.build_id, **self.extra, "kaslr_offset": self.kaslr_offset,
                "kaslr_offset_source": self.kaslr_source}

    def unslide(self, address: int) -> int:
        """``address`` as in the kernel file (KASLR offset taken off image addresses)."""
        lo, hi = self.image_window
        return address - self.kaslr_offset if lo <= address - self.kaslr_offset < hi \
            else address

    def unslide_all(self, addresses: Iterable[int]) -> list[int]:
        """:meth:`unslide` of each address (one pass, for whole symbol tables)."""
        off = self.kaslr_offset
        if not off:
            return list(addresses)
        lo, hi = self.image_window
        # in C over the whole list: every address moved, then the few outside the image
        # window (per-CPU offsets, absolute values) put back
        given = addresses if isinstance(addresses, Sequence) else list(addresses)
        out = list(map(operator.sub, given, itertools.repeat(off)))
        outside = itertools.compress(itertools.count(), map(
            operator.or_, map(lo.__gt__, out), map(hi.__le__, out)))
        for i in outside:
            out[i] = given[i]
        return out

    def slide(self, address: int, offset: int | None = None) -> int:
        """A kernel-file address where it lies in this image (``offset``: another slide)."""
        off = self.kaslr_offset if offset is None else offset
        lo, hi = self.image_window
        return address + off if lo <= address < hi else address

    def text_start(self, default_text: int) -> int:
        """Where the kernel's text starts in this image (_stext as reported, else the
        architecture's unrandomised _text slid by the KASLR offset)."""
        return self.anchors.get("_stext") or self.slide(default_text)

    def image_bytes(self, start: int, span: int) -> bytes:
        """``span`` bytes of the kernel image's virtual memory from ``start``, for searching
        (unmapped or missing pages read as zeros: nothing found there is evidence); the
        concatenation of :meth:`image_chunks`."""
        # grown in place, each chunk let go once copied (a join would hold them all)
        out = bytearray()
        for chunk in self.image_chunks(start, span):
            out += chunk
        return bytes(out)

    def image_chunks(self, start: int, span: int) -> Iterator[bytes]:
        """:meth:`image_bytes` of ``start`` and ``span`` in order, one piece of at most
        2 MiB at a time, so a search need never hold the whole image."""
        for chunk, _mapped in self._chunks(start, span):
            yield chunk

    def image_windows(self, start: int, span: int, overlap: int
                      ) -> Iterator[tuple[int, bytes, int]]:
        """:meth:`image_chunks` as windows ``(address, bytes, fresh)`` for searches that
        must not hold the whole image: each chunk, and before it a seam of the
        ``overlap`` bytes either side of where it starts. Anything of up to ``overlap``
        bytes lies whole in a window where it ends past ``fresh``, and in only one: a
        search takes what it finds ending at or before ``fresh`` as another window's.
        A chunk nothing of which is mapped is only in its seams: what lies whole inside
        it, away from its ends, is zeros, which no search looks for."""
        tail = b""
        address = start
        for chunk, mapped in self._chunks(start, span):
            if tail:
                yield address - len(tail), tail + chunk[:overlap], len(tail)
            if mapped and (len(chunk) > overlap or not tail):
                yield address, chunk, min(overlap, len(chunk)) if tail else 0
            address += len(chunk)
            if overlap > 0:
                tail = chunk[-overlap:] if len(chunk) >= overlap else (tail + chunk)[-overlap:]

    def _chunks(self, start: int, span: int) -> Iterator[tuple[bytes, bool]]:
        """:meth:`image_chunks`, each with whether any of it is mapped. The image is
        physically contiguous on every architecture kvmfx reads, so each 2 MiB run whose
        ends map contiguously is read in one physical read; any other is read page by
        page (:meth:`_pieces`). Past 32 MiB, nine such runs in a row end the image (it is
        over: what lies beyond is other mappings, or none)."""
        physical = self.layer.physical
        pos, end = start, start + span
        done = misses = 0
        while pos < end and not (misses > 8 and done > IMAGE_PAST):
            n = min(RUN - pos % RUN, end - pos)
            pieces = list(self._pieces(pos, n))
            if len(pieces) == 1 and pieces[0][1] >= 0:
                yield physical.read(pieces[0][1], n, zero_fill=True), True
                misses = 0
            elif len(pieces) == 1:  # unmapped: the same zeros each time, not new ones
                yield _UNMAPPED[:n], False
                misses += 1
            else:
                yield b"".join(physical.read(paddr, size, zero_fill=True) if paddr >= 0
                               else bytes(size) for _, paddr, size in pieces), True
                misses += 1
            pos += n
            done += n

    def _pieces(self, start: int, size: int) -> Iterator[tuple[int, int, int]]:
        """``[start, start + size)`` as ``(address, physical address, length)`` pieces in
        order: a 2 MiB run whose ends map contiguously is one piece (see
        :meth:`image_chunks`); any other is walked page by page, pages that follow each
        other in physical memory making one piece, and unmapped ones (physical address
        -1) skipped with the whole unmapped region the walk reports."""
        layer = self.layer
        end = start + size
        try:
            first, _ = layer.translate(start)
        except TranslationError as exc:
            hole = max(exc.span, PAGE_SIZE)
            if start // hole == (end - 1) // hole:  # all of it unmapped
                yield start, -1, size
                return
        else:
            try:
                last, _ = layer.translate(end - 1)
                if last - first == size - 1:
                    yield start, first, size
                    return
            except TranslationError:
                pass
        at, paddr, n = start, -1, 0  # the piece being built
        pos = start
        while pos < end:
            try:
                here, page = layer.translate(pos)
                stop = min(end, (pos // page + 1) * page)
            except TranslationError as exc:
                hole = max(exc.span, PAGE_SIZE)
                here, stop = -1, min(end, (pos // hole + 1) * hole)
            if n and (paddr + n == here if paddr >= 0 else here < 0):
                n += stop - pos
            else:
                if n:
                    yield at, paddr, n
                at, paddr, n = pos, here, stop - pos
            pos = stop
        yield at, paddr, n

    def read(self, start: int, size: int) -> bytes:
        """``size`` bytes of kernel virtual memory, exactly (a missing page raises as any
        read does). Inside the kernel image, which the kernel maps linearly onto
        physically contiguous memory, each 2 MiB run whose ends map contiguously is one
        physical read; elsewhere it is read page by page."""
        lo, hi = self.image_window
        if not (lo <= start - self.kaslr_offset and start + size - self.kaslr_offset <= hi):
            return self.layer.read(start, size)
        out = bytearray()
        pos, end = start, start + size
        while pos < end:
            n = min(RUN - pos % RUN, end - pos)
            try:
                first, _ = self.layer.translate(pos)
                last, _ = self.layer.translate(pos + n - 1)
            except KvmError:
                first = last = -1
            if first >= 0 and last - first == n - 1:
                out += self.layer.physical.read(first, n)
            else:
                out += self.layer.read(pos, n)
            pos += n
        return bytes(out)

    def identity(self) -> str:
        """The kernel as one phrase, for messages: ``the image is 6.1.0-57-amd64 build ...``."""
        return f"the image is {self.release or '?'}" + (
            f" build {self.build_id}" if self.build_id else "")


class KernelFinder(Protocol):
    """What a kernel finder provides (:func:`kvmfx.hookspecs.kvmfx_kernel_finders`)."""

    name: str
    description: str

    def boot_notes(self, physical: PhysicalLayer) -> BootNotes | None:
        """What the image's kernel says of itself (Linux: VMCOREINFO, from the dump's notes or
        found in memory), or None when this OS's notes are not there."""
        ...

    def find(self, physical: PhysicalLayer, arch: Architecture,
             boot: BootNotes | None) -> KernelImage:
        """The kernel: page-table root, KASLR offset and identity; raises KvmError (one line
        naming what is missing) when it cannot be found."""
        ...

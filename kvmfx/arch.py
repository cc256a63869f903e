"""Architectures: the contract for virtual-to-physical translation.

As in libkvm's ``kvm_<arch>.c`` files, the core knows no page-table format: an architecture
plugin detects itself, finds the kernel's page-table root and translates addresses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from kvmfx.errors import MissingPageError, TranslationError
from kvmfx.layers import PAGE_SIZE, PhysicalLayer

if TYPE_CHECKING:
    from kvmfx.session import Session


class VirtualLayer:
    """A virtual address space stacked on a physical layer.

    Subclasses implement :meth:`translate`; reads are split at page boundaries and each page
    translated, so a read crossing into an unmapped page fails naming that address.
    """

    #: How the page-table root was found (``vmcoreinfo``, ``cpu-notes``, ``scan``...).
    dtb_source = ""

    def __init__(self, physical: PhysicalLayer, dtb: int) -> None:
        self.physical = physical
        self.dtb = dtb
        #: Kernel symbol addresses the image itself reports (e.g. VMCOREINFO SYMBOL()
        #: entries), already including any KASLR slide: symbol files are checked and slid
        #: against these.
        self.anchors: dict[str, int] = {}

    def translate(self, vaddr: int) -> tuple[int, int]:
        """Physical address of ``vaddr`` and the size of the page that maps it."""
        raise NotImplementedError

    def read(self, vaddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        out = bytearray()
        pos, end = vaddr, vaddr + size
        while pos < end:
            try:
                paddr, page_size = self.translate(pos)
            except TranslationError:
                if not zero_fill:
                    raise
                paddr, page_size = -1, PAGE_SIZE
            stop = min(end, (pos // page_size + 1) * page_size)
            if paddr < 0:
                out += bytes(stop - pos)
            else:
                try:
                    out += self.physical.read(paddr, stop - pos, zero_fill=zero_fill)
                except MissingPageError as exc:
                    why = exc.message.partition("not provably zeros: ")[2]
                    raise MissingPageError(f"virtual address maps to physical {paddr:#x}, "
                                           "which is not in the dump"
                                           + (f" (the filter left it out; not provably "
                                              f"zeros: {why})" if why else ""),
                                           address=pos) from exc
            pos = stop
        return bytes(out)

    def describe(self) -> dict[str, Any]:
        return {"dtb": self.dtb, "dtb_source": self.dtb_source}


class Architecture(Protocol):
    """What an architecture plugin provides (:func:`kvmfx.hookspecs.kvmfx_architectures`)."""

    name: str
    description: str

    def detect(self, session: Session) -> int:
        """Confidence 0-100 that the session's kernel runs on this architecture."""
        ...

    def kernel_layer(self, session: Session) -> VirtualLayer:
        """The kernel's virtual address space (finds the DTB)."""
        ...

    def process_layer(self, session: Session, root: int) -> VirtualLayer:
        """A process's address space from its page-table root (physical address)."""
        ...

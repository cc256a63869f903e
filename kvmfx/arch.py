"""Architectures: the contract for virtual-to-physical translation.

As in libkvm's ``kvm_<arch>.c`` files, the core knows no page-table format: an architecture
plugin detects itself, walks page tables and knows where kernels live on its CPU; a kernel
finder (:mod:`kvmfx.kernel`) uses it to find one OS's kernel in a dump.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from kvmfx.boot import BootNotes
from kvmfx.errors import MissingPageError, TranslationError
from kvmfx.layers import PAGE_SIZE, PhysicalLayer


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


def header_says(physical: PhysicalLayer, machines: tuple[str, ...], elf_machine: int
                ) -> int | None:
    """What the dump's header says of an architecture: 90 when it names this CPU (its
    ``machine`` or ELF ``e_machine``), 0 when it names another, None when it names none."""
    machine = physical.details.get("machine")
    elf = physical.details.get("elf_machine")
    if machine in machines or elf == elf_machine:
        return 90
    if machine or elf:
        return 0
    return None


class Architecture(Protocol):
    """What an architecture plugin provides (:func:`kvmfx.hookspecs.kvmfx_architectures`):
    what libkvm's ``kvm_<arch>.c`` is. Page-table walks, the constants of where a kernel
    lives on this CPU, swap-entry decoding and CPU-note decoding; nothing about finding a
    particular OS's kernel (that is a kernel finder's job, :mod:`kvmfx.kernel`).
    """

    name: str
    description: str
    #: Names of the CPU in dump headers and ``uname -m`` (``x86_64``; ``aarch64``, ``arm64``).
    machines: tuple[str, ...]
    #: ELF ``e_machine`` of this CPU's cores (62 x86_64, 183 aarch64).
    elf_machine: int
    #: The lowest kernel virtual address: image, direct map and vmalloc lie above it.
    kernel_start: int

    def detect(self, physical: PhysicalLayer, boot: BootNotes | None) -> int:
        """Confidence 0-100 that the image's kernel runs on this CPU, from the dump's header
        (``physical.details["machine"]``, ELF machine) and what the kernel says of itself
        (``boot``: VMCOREINFO entries, or None)."""
        ...

    def cpu_states(self, notes: list[tuple[str, int, bytes]]) -> list[dict[str, Any]]:
        """Registers of each CPU from a dump's ELF notes (name, type, descriptor): at least
        ``pc`` and ``sp``, and the system registers the note holds."""
        ...

    def root_candidates(self, cpus: list[dict[str, Any]]) -> list[int]:
        """Kernel page-table roots the CPUs' registers give (CR3, TTBR1_EL1), best first."""
        ...

    def image_root(self, boot: BootNotes) -> int | None:
        """Physical address of the kernel page-table root the kernel names in ``boot``
        (Linux: SYMBOL(swapper_pg_dir) through the kernel-image mapping), or None."""
        ...

    def kernel_space(self, physical: PhysicalLayer, root: int,
                     boot: BootNotes | None, cpus: list[dict[str, Any]]
                     ) -> VirtualLayer:
        """The kernel address space from its page-table root; paging parameters (levels,
        granule, VA bits) from ``boot`` and the CPU registers."""
        ...

    def process_space(self, kernel: VirtualLayer, root: int) -> VirtualLayer:
        """A process's address space from its page-table root (physical address), with
        the kernel space's paging parameters."""
        ...

    def default_text(self, boot: BootNotes | None) -> int:
        """Where the kernel's text starts when not randomised (Linux: _text of a kernel
        loaded without KASLR)."""
        ...

    def text_is_plausible(self, linked_text: int) -> bool:
        """Whether ``linked_text`` (a decoded _text less the KASLR offset) is where this
        CPU's kernels are linked: a check that a kallsyms decode is right."""
        ...

    def code_refs(self, code: bytes, pc: int) -> list[tuple[str, int]]:
        """The data a function's code at ``pc`` reaches PC-relatively, in order: ``("addr",
        a)`` where it computes address ``a``, ``("load", a)`` where it loads from ``a``
        (x86_64: RIP-relative lea / mov; aarch64: ADRP with ADD / LDR), up to its first
        return. For kernels whose symbols name no data (kallsyms of code only)."""
        ...

    def ram_base(self, boot: BootNotes | None) -> int:
        """Where the machine's RAM starts (0 on x86_64): a raw image whose kernel lies past
        its end is taken to start there."""
        ...

    def direct_map(self, boot: BootNotes | None,
                   read_pointer: Callable[[str], int | None]) -> tuple[int, int]:
        """(virtual, physical) start of the kernel's direct map of RAM: physical address p
        is at virtual ``p - physical + virtual``. ``read_pointer(name)`` reads a kernel
        pointer variable by symbol name (None when there is none)."""
        ...

    def scan_root(self, physical: PhysicalLayer, target: int, boot: BootNotes | None,
                  cpus: list[dict[str, Any]]) -> int | None:
        """With no root named anywhere: a page-table root whose kernel mapping reaches
        physical address ``target`` (the kernel's banner), found by scanning memory."""
        ...

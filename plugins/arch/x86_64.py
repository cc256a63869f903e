"""x86_64: 4- and 5-level paging, large pages, the kernel's page-table root and KASLR.

Like libkvm's ``kvm_amd64.c``: the architecture finds the kernel page-table root (DTB) and
translates addresses; the core knows no page-table format. The DTB comes from VMCOREINFO
(``swapper_pg_dir`` through the kernel-text mapping and ``phys_base``), else from the CR3 the
dump's CPU notes saved, else from a scan of physical memory for a root that maps the
kernel's own banner.
"""

from __future__ import annotations

import re
from typing import Any

from kvmfx.arch import Architecture, VirtualLayer
from kvmfx.errors import KvmError, MissingPageError, SwappedOutError, TranslationError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import PAGE_SIZE, BoundedCache, PhysicalLayer
from kvmfx.session import Session
from kvmfx_plugins.linux.swap import x86_64_swap_entry
from kvmfx_plugins.linux.vmcoreinfo import VmcoreInfo, session_vmcoreinfo

START_KERNEL_MAP = 0xFFFFFFFF80000000
DEFAULT_TEXT = 0xFFFFFFFF81000000
ADDR_MASK = 0x000FFFFFFFFFF000
PRESENT, PSE = 0x1, 0x80
PTI_USER_BIT = 0x1000
CR4_LA57 = 1 << 12
#: kernel image addresses only: VMCOREINFO's SYMBOL(mem_section) is a heap pointer
_IMAGE_LOW = START_KERNEL_MAP
_BANNER = b"Linux version "


class X86_64Layer(VirtualLayer):
    """An x86_64 address space: 4 levels (PML4) or 5 (PML5 with LA57)."""

    def __init__(self, physical: PhysicalLayer, dtb: int, levels: int = 4) -> None:
        super().__init__(physical, dtb)
        self.levels = levels
        self._cache = BoundedCache(1 << 16)
        self.facts: dict[str, Any] = {}

    def _entry(self, table: int, index: int, vaddr: int, level: int) -> int:
        try:
            raw = self.physical.read(table + index * 8, 8)
        except MissingPageError:
            raise TranslationError(f"level-{level} page table at physical {table:#x} is not "
                                   "in the dump", address=vaddr) from None
        return int.from_bytes(raw, "little")

    def translate(self, vaddr: int) -> tuple[int, int]:
        page = vaddr & ~0xFFF
        hit = self._cache.get(page, lambda: self._walk(page))
        base, size = hit
        return base + (vaddr & (size - 1)), size

    def _walk(self, vaddr: int) -> tuple[int, int]:
        if self.levels == 4:
            top = vaddr >> 47
            if top not in (0, 0x1FFFF):
                raise TranslationError("non-canonical address", address=vaddr)
        table = self.dtb
        shifts = (48, 39, 30, 21, 12) if self.levels == 5 else (39, 30, 21, 12)
        for depth, shift in enumerate(shifts):
            level = len(shifts) - depth
            entry = self._entry(table, (vaddr >> shift) & 0x1FF, vaddr, level)
            if not entry & PRESENT:
                if level == 1 and entry:
                    swp_type, swp_offset = x86_64_swap_entry(entry)
                    raise SwappedOutError(f"page swapped out (swap area {swp_type}, slot "
                                          f"{swp_offset})", swap_type=swp_type,
                                          swap_offset=swp_offset, address=vaddr)
                exc = TranslationError(f"not mapped (level-{level} entry not present)",
                                       address=vaddr)
                exc.span = 1 << shift
                raise exc
            if level in (2, 3) and entry & PSE:
                size = 1 << shift
                base = (entry & ADDR_MASK) & ~(size - 1)
                return base + (vaddr & (size - 1) & ~0xFFF), PAGE_SIZE
            table = entry & ADDR_MASK
        return table, PAGE_SIZE

    def describe(self) -> dict[str, Any]:
        return {"dtb": self.dtb, "dtb_source": self.dtb_source, "paging_levels": self.levels,
                **self.facts}

    def banner(self) -> str | None:
        """The kernel's "Linux version ..." banner, found in physical memory (cached)."""
        if "banner" not in self.facts:
            found = _find_banner(self.physical, self.facts.get("kernel_release"))
            self.facts["banner"] = found[1].decode("utf-8", "replace") if found else None
        return self.facts["banner"]


def _levels(info: VmcoreInfo | None, cpus: list[dict[str, Any]]) -> int:
    if info is not None and info.numbers.get("pgtable_l5_enabled") == 1:
        return 5
    for cpu in cpus:
        cr4 = cpu.get("cr4")
        if cr4 is not None:
            return 5 if cr4 & CR4_LA57 else 4
    return 4


def _maps_kernel_text(layer: X86_64Layer, kernel_offset: int) -> bool:
    try:
        layer.translate(DEFAULT_TEXT + kernel_offset)
    except KvmError:
        return False
    return True


def _find_banner(physical: PhysicalLayer, release: str | None) -> tuple[int, bytes] | None:
    """Physical address and text of the kernel's banner (bounded chunked scan)."""
    needle = _BANNER + (release.encode() + b" (" if release else b"")
    chunk_size = 16 << 20
    for r in physical.ranges:
        pos = r.start
        while pos < r.end:
            size = min(chunk_size + 4096, r.end - pos)
            try:
                chunk = physical.read(pos, size, zero_fill=True)
            except KvmError:
                pos += chunk_size
                continue
            at = chunk.find(needle)
            while at >= 0:
                end = chunk.find(b"\n", at, at + 512)
                # linux_banner itself: one line, with UTS_VERSION's "#<build number>"
                if end > 0 and re.search(rb"\) #\d+ ", chunk[at:end]):
                    return pos + at, bytes(chunk[at:end])
                at = chunk.find(needle, at + 1)
            pos += chunk_size
    return None


def _scan_for_dtb(physical: PhysicalLayer, levels: int) -> int | None:
    """A kernel page-table root, found as the page whose kernel-text mapping covers the
    banner (and whose user half is empty, as swapper_pg_dir's is)."""
    banner = _find_banner(physical, None)
    if banner is None:
        return None
    banner_pa = banner[0]
    for r in physical.ranges:
        for page in range(r.start - r.start % PAGE_SIZE, r.end, PAGE_SIZE):
            try:
                data = physical.read(page, PAGE_SIZE)
            except KvmError:
                continue
            top = int.from_bytes(data[511 * 8:512 * 8], "little")
            if not top & PRESENT or any(data[:256 * 8]):
                continue
            layer = X86_64Layer(physical, page, levels)
            for delta in range(0, 1 << 30, 2 << 20):
                try:
                    pa, _ = layer.translate(DEFAULT_TEXT - (16 << 20) + delta)
                except KvmError:
                    continue
                if pa <= banner_pa < pa + (2 << 20) or (pa & ~0x1FFFFF) == (
                        banner_pa & ~0x1FFFFF):
                    return page
    return None


class X86_64:
    name = "x86_64"
    description = "x86_64 4/5-level paging; DTB from VMCOREINFO, CPU notes or a scan"

    def detect(self, session: Session) -> int:
        layer = session.physical
        if layer.details.get("machine") == "x86_64":
            return 90
        info = session_vmcoreinfo(session)
        if info is not None and any(a >= _IMAGE_LOW for a in info.symbols.values()):
            return 80
        if any("cr3" in c for c in layer.notes.get("cpus", [])):
            return 60
        return 10

    def kernel_layer(self, session: Session) -> VirtualLayer:
        physical = session.physical
        info = session_vmcoreinfo(session)
        cpus: list[dict[str, Any]] = list(physical.notes.get("cpus", []))
        levels = _levels(info, cpus)
        kernel_offset = info.kernel_offset if info is not None else None
        layer: X86_64Layer | None = None
        if info is not None:
            root = info.symbols.get("swapper_pg_dir") or info.symbols.get("init_top_pgt")
            phys_base = info.phys_base
            if root is not None and phys_base is not None:
                dtb = (root - START_KERNEL_MAP + phys_base) & ((1 << 52) - 1)
                layer = X86_64Layer(physical, dtb, levels)
                layer.dtb_source = "vmcoreinfo"
        if layer is None:
            for cpu in cpus:
                cr3 = cpu.get("cr3")
                if not cr3:
                    continue
                for dtb in ((cr3 & ADDR_MASK) & ~PTI_USER_BIT, cr3 & ADDR_MASK):
                    cand = X86_64Layer(physical, dtb, levels)
                    if _maps_kernel_text(cand, kernel_offset or 0) or kernel_offset is None:
                        layer, layer.dtb_source = cand, "cpu-notes"
                        break
                if layer is not None:
                    break
        if layer is None:
            dtb = _scan_for_dtb(physical, levels)
            if dtb is None:
                raise TranslationError("no kernel page-table root: no VMCOREINFO, no saved "
                                       "CR3, and no page table maps the kernel banner")
            layer = X86_64Layer(physical, dtb, levels)
            layer.dtb_source = "scan"
        if info is not None:
            layer.anchors = {n: a for n, a in info.symbols.items() if a >= _IMAGE_LOW}
            layer.facts.update({"kernel_release": info.osrelease, "build_id": info.build_id,
                                "phys_base": info.phys_base})
        layer.facts["kaslr_offset"] = kernel_offset if kernel_offset is not None else 0
        layer.facts["kaslr_offset_source"] = ("vmcoreinfo" if kernel_offset is not None
                                              else "assumed 0 (no VMCOREINFO)")
        return layer

    def process_layer(self, session: Session, root: int) -> VirtualLayer:
        kernel = session.kernel
        levels = getattr(kernel, "levels", 4)
        layer = X86_64Layer(session.physical, root & ADDR_MASK, levels)
        layer.dtb_source = "mm->pgd"
        return layer


@hookimpl
def kvmfx_architectures() -> list[Architecture]:
    return [X86_64()]

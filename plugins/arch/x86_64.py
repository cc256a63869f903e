"""x86_64: 4- and 5-level paging, large pages, swap entries, CPU notes, where kernels live.

Like libkvm's ``kvm_amd64.c``: page-table walks and the constants of the kernel's place on
this CPU. Finding a kernel's root and KASLR offset from what the kernel reports is the
kernel finder's (plugins/linux/boot.py), which asks this plugin for each CPU-specific step.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from kvmfx.arch import Architecture, VirtualLayer, header_says
from kvmfx.boot import BootNotes
from kvmfx.errors import KvmError, MissingPageError, SwappedOutError, TranslationError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import PAGE_SIZE, BoundedCache, PhysicalLayer

#: __START_KERNEL_map: the kernel image is linked in the GiB above it.
START_KERNEL_MAP = 0xFFFFFFFF80000000
#: Unrandomised start of kernel text (__START_KERNEL_map + 16 MiB).
DEFAULT_TEXT = 0xFFFFFFFF81000000
#: __PAGE_OFFSET of 4-level paging without memory randomisation.
PAGE_OFFSET_4LEVEL = 0xFFFF888000000000
#: The kernel half of a 4-level address space (5-level: 0xff00000000000000).
KERNEL_START = 0xFFFF800000000000
ADDR_MASK = 0x000FFFFFFFFFF000
PRESENT, PSE = 0x1, 0x80
PTI_USER_BIT = 0x1000
CR4_LA57 = 1 << 12
#: reads up to this size are made of as few physical reads as the mapping allows
MAX_COALESCED = 1 << 20
#: large-page translations kept per address space, of each size (16 GiB of 2 MiB pages)
LARGE_PAGES = 8192
EM_X86_64 = 62
#: x86_64 struct elf_prstatus: pr_reg (27 registers) starts at byte 112.
PRSTATUS_REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax",
                 "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss",
                 "fs_base", "gs_base", "ds", "es", "fs", "gs")
#: QEMU's x86_64 CPU state note (target/i386/arch_dump.c QEMUCPUState): version, size, 18
#: general registers, 10 segments (selector, limit, flags, pad: u32; base: u64), cr[5]
QEMU_CPU_STATE = struct.Struct("<II18Q" + "IIIIQ" * 10 + "5Q")
_QEMU_RIP, _QEMU_RSP, _QEMU_CR = 2 + 16, 2 + 6, 2 + 18 + 50


def swap_entry(pte: int) -> tuple[int, int]:
    """(area type, slot offset) of a non-present PTE holding a swap entry.

    arch/x86/include/asm/pgtable_64.h: type in bits 59-63, the offset stored inverted in
    bits 9-58 (the L1TF mitigation).
    """
    swp_type = pte >> 59
    offset = ((~pte << 5) & 0xFFFFFFFFFFFFFFFF) >> 14
    return swp_type, offset


def cpu_states(notes: list[tuple[str, int, bytes]]) -> list[dict[str, Any]]:
    """Per-CPU registers: QEMU's CPU state (with control registers), else NT_PRSTATUS."""
    cpus = []
    for name, _t, desc in notes:
        if name != "QEMU" or len(desc) < QEMU_CPU_STATE.size:
            continue
        st = QEMU_CPU_STATE.unpack_from(desc)
        rip, rsp, cr = st[_QEMU_RIP], st[_QEMU_RSP], st[_QEMU_CR:_QEMU_CR + 5]
        cpus.append({"pc": rip, "sp": rsp, "rip": rip, "rsp": rsp,
                     "cr0": cr[0], "cr3": cr[3], "cr4": cr[4],
                     "root": cr[3] & ADDR_MASK, "source": "qemu"})
    if cpus:
        return cpus
    for name, ntype, desc in notes:
        if name == "CORE" and ntype == 1 and len(desc) >= 112 + 27 * 8:
            regs = {r: int.from_bytes(desc[112 + 8 * i:120 + 8 * i], "little")
                    for i, r in enumerate(PRSTATUS_REGS)}
            cpus.append({"pc": regs["rip"], "sp": regs["rsp"], "rip": regs["rip"],
                         "rsp": regs["rsp"], "source": "prstatus"})
    return cpus


class X86_64Layer(VirtualLayer):
    """An x86_64 address space: 4 levels (PML4) or 5 (PML5 with LA57)."""

    def __init__(self, physical: PhysicalLayer, dtb: int, levels: int = 4) -> None:
        super().__init__(physical, dtb)
        self.levels = levels
        self._cache = BoundedCache(1 << 16)
        #: vaddr >> 21 (>> 30) -> physical base of a 2 MiB (1 GiB) page walked
        self._large_2m: dict[int, int] = {}
        self._large_1g: dict[int, int] = {}

    def _entry(self, table: int, index: int, vaddr: int, level: int) -> int:
        try:
            raw = self.physical.read(table + index * 8, 8)
        except MissingPageError:
            raise TranslationError(f"level-{level} page table at physical {table:#x} is not "
                                   "in the dump", address=vaddr) from None
        return int.from_bytes(raw, "little")

    def translate(self, vaddr: int) -> tuple[int, int]:
        if self._large_2m:  # inside a 2 MiB page already walked (the kernel's direct map)
            base = self._large_2m.get(vaddr >> 21)
            if base is not None:
                return base + (vaddr & 0x1FFFFF), PAGE_SIZE
        page = vaddr & ~0xFFF
        hit = self._cache.get(page, lambda: self._large_or_walk(page))
        base, size = hit
        return base + (vaddr & (size - 1)), size

    def read(self, vaddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        """As VirtualLayer.read; a read inside one page is one translation and one
        physical read, and pages that follow each other in physical memory too (the
        direct map) are one physical read. Errors are worded by the general path."""
        if not zero_fill and size > 0:
            if (vaddr & 0xFFF) + size <= PAGE_SIZE:
                paddr, _ = self.translate(vaddr)
                try:
                    return self.physical.read(paddr, size)
                except MissingPageError:
                    pass
            elif size <= MAX_COALESCED:
                try:
                    return self._read_runs(vaddr, size)
                except KvmError:
                    pass
        return super().read(vaddr, size, zero_fill=zero_fill)

    def _read_runs(self, vaddr: int, size: int) -> bytes:
        runs: list[list[int]] = []
        pos, end = vaddr, vaddr + size
        while pos < end:
            paddr, _ = self.translate(pos)
            stop = min(end, (pos | 0xFFF) + 1)
            if runs and runs[-1][0] + runs[-1][1] == paddr:
                runs[-1][1] += stop - pos
            else:
                runs.append([paddr, stop - pos])
            pos = stop
        if len(runs) == 1:
            return self.physical.read(runs[0][0], runs[0][1])
        return b"".join(self.physical.read(p, n) for p, n in runs)

    def _large_or_walk(self, page: int) -> tuple[int, int]:
        """A page inside a 1 GiB mapping already walked needs no walk of its own (those
        inside 2 MiB ones are found before the page cache); any other page is walked."""
        if self._large_1g:
            base = self._large_1g.get(page >> 30)
            if base is not None:
                return base + (page & 0x3FFFFFFF), PAGE_SIZE
        return self._walk(page)

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
                    swp_type, swp_offset = swap_entry(entry)
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
                large = self._large_2m if shift == 21 else self._large_1g
                if len(large) >= LARGE_PAGES:
                    large.clear()
                large[vaddr >> shift] = base
                return base + (vaddr & (size - 1) & ~0xFFF), PAGE_SIZE
            table = entry & ADDR_MASK
        return table, PAGE_SIZE

    def describe(self) -> dict[str, Any]:
        return {"dtb": self.dtb, "dtb_source": self.dtb_source, "paging_levels": self.levels}


def _levels(boot: BootNotes | None, cpus: list[dict[str, Any]]) -> int:
    if boot is not None and boot.numbers.get("pgtable_l5_enabled") == 1:
        return 5
    for cpu in cpus:
        cr4 = cpu.get("cr4")
        if cr4 is not None:
            return 5 if cr4 & CR4_LA57 else 4
    return 4


def scan_for_root(physical: PhysicalLayer, target: int, levels: int) -> int | None:
    """A kernel page-table root: a page whose user half is empty (as swapper_pg_dir's is)
    and whose kernel-text mapping covers physical address ``target``."""
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
                if pa <= target < pa + (2 << 20) or (pa & ~0x1FFFFF) == (target & ~0x1FFFFF):
                    return page
    return None


def rip_relative_refs(code: bytes, pc: int) -> list[tuple[str, int]]:
    """RIP-relative ``lea`` (an address) and ``mov`` loads of 64-bit registers (REX.W 8D /
    8B, ModRM mod 00 r/m 101, disp32) in ``code``, up to the first ``ret``. A scan for the
    encodings, not a disassembly: callers check what they find."""
    out: list[tuple[str, int]] = []
    i = 0
    while i + 7 <= len(code):
        if code[i] == 0xC3:
            break
        if code[i] in (0x48, 0x4C) and code[i + 1] in (0x8B, 0x8D) and \
                code[i + 2] & 0xC7 == 0x05:
            disp = int.from_bytes(code[i + 3:i + 7], "little", signed=True)
            target = (pc + i + 7 + disp) & 0xFFFFFFFFFFFFFFFF
            out.append(("load" if code[i + 1] == 0x8B else "addr", target))
            i += 7
            continue
        i += 1
    return out


class X86_64:
    name = "x86_64"
    description = "x86_64 4/5-level paging, swap entries, QEMU and ELF CPU notes"
    machines: tuple[str, ...] = ("x86_64", "amd64")
    elf_machine = EM_X86_64
    kernel_start = KERNEL_START

    def detect(self, physical: PhysicalLayer, boot: BootNotes | None) -> int:
        said = header_says(physical, self.machines, self.elf_machine)
        if said is not None:
            return said
        if boot is not None:
            symbols = boot.symbols.values()
            if "NUMBER(pgtable_l5_enabled)" in boot or any(a >= START_KERNEL_MAP
                                                           for a in symbols):
                return 80
        if any("cr3" in c for c in cpu_states(physical.notes.get("elf_notes", []))):
            return 60
        return 10

    def cpu_states(self, notes: list[tuple[str, int, bytes]]) -> list[dict[str, Any]]:
        return cpu_states(notes)

    def image_root(self, boot: BootNotes) -> int | None:
        root = boot.symbols.get("swapper_pg_dir") or boot.symbols.get("init_top_pgt")
        phys_base = boot.phys_base
        if root is None or phys_base is None or root < START_KERNEL_MAP:
            return None
        return (root - START_KERNEL_MAP + phys_base) & ((1 << 52) - 1)

    def kernel_space(self, physical: PhysicalLayer, root: int, boot: BootNotes | None,
                     cpus: list[dict[str, Any]]) -> VirtualLayer:
        return X86_64Layer(physical, root & ADDR_MASK, _levels(boot, cpus))

    def root_candidates(self, cpus: list[dict[str, Any]]) -> list[int]:
        """Roots the CPUs' CR3 gives (with PTI, the kernel's is the one without bit 12)."""
        out: list[int] = []
        for cpu in cpus:
            cr3 = cpu.get("cr3")
            if cr3:
                for root in ((cr3 & ADDR_MASK) & ~PTI_USER_BIT, cr3 & ADDR_MASK):
                    if root not in out:
                        out.append(root)
        return out

    def process_space(self, kernel: VirtualLayer, root: int) -> VirtualLayer:
        layer = X86_64Layer(kernel.physical, root & ADDR_MASK, getattr(kernel, "levels", 4))
        layer.dtb_source = "mm->pgd"
        return layer

    def default_text(self, boot: BootNotes | None) -> int:
        return DEFAULT_TEXT

    def text_is_plausible(self, linked_text: int) -> bool:
        """x86_64 links a kernel at a CONFIG_PHYSICAL_ALIGN multiple (at least 2 MiB) in
        the first GiB of __START_KERNEL_map."""
        return (linked_text % (2 << 20) == 0
                and START_KERNEL_MAP <= linked_text < START_KERNEL_MAP + (1 << 30))

    def code_refs(self, code: bytes, pc: int) -> list[tuple[str, int]]:
        return rip_relative_refs(code, pc)

    def ram_base(self, boot: BootNotes | None) -> int:
        return 0

    def direct_map(self, boot: BootNotes | None,
                   read_pointer: Callable[[str], int | None]) -> tuple[int, int]:
        """page_offset_base (randomised with CONFIG_RANDOMIZE_MEMORY), else the fixed
        __PAGE_OFFSET of 4-level paging."""
        return read_pointer("page_offset_base") or PAGE_OFFSET_4LEVEL, 0

    def scan_root(self, physical: PhysicalLayer, target: int, boot: BootNotes | None,
                  cpus: list[dict[str, Any]]) -> int | None:
        return scan_for_root(physical, target, _levels(boot, cpus))


@hookimpl
def kvmfx_architectures() -> list[Architecture]:
    return [X86_64()]

"""aarch64 (arm64): VMSAv8-64 translation with 4K, 16K and 64K granules, where kernels live.

Like libkvm's ``kvm_aarch64.c``. A translation regime is fixed by the granule (PAGESIZE),
the VA size (64 - TCR_EL1.T1SZ, from VMCOREINFO) and whether 52-bit output addresses are
encoded the LPA2 way (4K/16K granules with 52-bit VAs) or the LPA way (64K). The kernel
half (TTBR1) and a process's half (TTBR0) have separate roots: a process space passes
kernel addresses to the kernel space. Address bits above the VA size (tags, pointer
authentication codes) are ignored by the walk, as the MMU ignores them with TBI.

Descriptors (Arm ARM D8.3): bits[1:0] 0b11 is a table (levels 0-2) or a page (level 3),
0b01 a block (level 1 with 4K, level 2 with every granule; level 1 with 64K and LPA2/LPA).
"""

from __future__ import annotations

import array
import re
from collections.abc import Callable
from typing import Any

from kvmfx.arch import Architecture, VirtualLayer, header_says
from kvmfx.arrays import from_little
from kvmfx.boot import BootNotes
from kvmfx.errors import MissingPageError, SwappedOutError, TranslationError
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import BoundedCache, PhysicalLayer

EM_AARCH64 = 183
#: The lowest kernel address of any configuration (52-bit VA: the linear map's start).
KERNEL_START = 0xFFF0000000000000
#: Unrandomised _text of Linux on a 48-bit (or 52-bit) VA kernel: KIMAGE_VADDR, i.e.
#: MODULES_END (128 MiB of modules above _PAGE_END(48) before 6.5; 2 GiB since).
KIMAGE_VADDR_OLD = 0xFFFF800008000000
KIMAGE_VADDR = 0xFFFF800080000000
VALID, TABLE = 0x1, 0x2
#: Decoded translation tables a kernel space keeps, in bytes of tables.
TABLE_CACHE_BYTES = 4 << 20
#: struct elf_prstatus: pr_reg (x0-x30, sp, pc, pstate) starts at byte 112.
PRSTATUS_REGS = tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "pstate")


def _release(boot: BootNotes | None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", (boot.osrelease or "") if boot is not None else "")
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)


def swap_entry(pte: int, release: tuple[int, int] = (99, 0)) -> tuple[int, int]:
    """(area type, slot offset) of a non-present PTE holding a swap entry, as the kernel of
    ``release`` encodes it (arch/arm64/include/asm/pgtable.h): type in bits 2-7 and offset
    in 8-57 before 5.19; type 3-7 (bit 2: PG_anon_exclusive) from 5.19; type 6-10 and
    offset 12-61 from 6.10 (bit 3 uffd-wp, bit 11 PTE_PRESENT_INVALID)."""
    if release >= (6, 10):
        return (pte >> 6) & 0x1F, (pte >> 12) & ((1 << 50) - 1)
    if release >= (5, 19):
        return (pte >> 3) & 0x1F, (pte >> 8) & ((1 << 50) - 1)
    return (pte >> 2) & 0x3F, (pte >> 8) & ((1 << 50) - 1)


def prot_none_bit(release: tuple[int, int]) -> int:
    """The software bit of a present entry the MMU sees as invalid (PROT_NONE, NUMA
    hinting): PTE_PRESENT_INVALID, bit 11 from 6.10; PTE_PROT_NONE, bit 58 before."""
    return 1 << 11 if release >= (6, 10) else 1 << 58


class Regime:
    """One translation regime: granule, VA size, output-address encoding."""

    def __init__(self, page_size: int, va_bits: int, lpa2: bool = False) -> None:
        if page_size not in (4096, 16384, 65536):
            raise TranslationError(f"aarch64 has no {page_size}-byte granule")
        if not 25 <= va_bits <= 52:
            raise TranslationError(f"aarch64 VA size of {va_bits} bits is not possible")
        self.page_size = page_size
        self.page_shift = page_size.bit_length() - 1
        self.va_bits = va_bits
        self.bits = self.page_shift - 3  # index bits per level
        self.levels = -(-(va_bits - self.page_shift) // self.bits)
        self.lpa2 = lpa2 and page_size in (4096, 16384)
        self.lpa = page_size == 65536
        self.start = 4 - self.levels  # 0 for 4 levels, -1 for 5 (LPA2 with 4K)

    def shift(self, level: int) -> int:
        return self.page_shift + self.bits * (3 - level)

    def output(self, desc: int, shift: int) -> int:
        """The output address of a descriptor, aligned to ``1 << shift``."""
        if self.lpa2:
            addr = (desc & ((1 << 50) - 1)) | ((desc >> 8) & 0x3) << 50
        elif self.lpa:
            addr = (desc & ((1 << 48) - 1)) | ((desc >> 12) & 0xF) << 48
        else:
            addr = desc & ((1 << 48) - 1)
        return addr & ~((1 << shift) - 1)

    def block_allowed(self, level: int) -> bool:
        if level == 2:
            return True
        if level == 1:
            return self.page_size == 4096 or self.lpa2 or self.lpa
        return level == 0 and self.page_size == 4096 and self.lpa2


class Aarch64Layer(VirtualLayer):
    """One half of an aarch64 address space: the kernel's (TTBR1, ``upper``) or a
    process's (TTBR0), which hands upper-half addresses to ``kernel``."""

    def __init__(self, physical: PhysicalLayer, root: int, regime: Regime, *,
                 upper: bool = True, kernel: Aarch64Layer | None = None,
                 release: tuple[int, int] = (99, 0)) -> None:
        super().__init__(physical, root)
        self.regime = regime
        self.upper = upper
        self.kernel = kernel
        self.release = release
        self._cache = BoundedCache(1 << 16)
        #: the kernel's translation tables read whole and decoded, by (physical address,
        #: entries): the walks of neighbouring pages share them (a process's space reads
        #: single descriptors: the few pages of it read seldom share a table)
        self._tables = BoundedCache(max(16, TABLE_CACHE_BYTES // regime.page_size)) \
            if upper else None

    @property
    def levels(self) -> int:
        return self.regime.levels

    def _entry(self, table: int, index: int, vaddr: int, level: int) -> int:
        try:
            raw = self.physical.read(table + index * 8, 8)
        except MissingPageError:
            raise TranslationError(f"level-{level} translation table at physical {table:#x} "
                                   "is not in the dump", address=vaddr) from None
        return int.from_bytes(raw, "little")

    def _table(self, table: int, count: int) -> array.array[int] | None:
        """The ``count`` descriptors of the kernel's translation table at physical
        ``table``, read and decoded whole once (the walks of the pages next to one walked
        read the same tables); None in a process's space, or when the dump does not hold
        the table whole."""
        def load() -> array.array[int] | None:
            try:
                return from_little("Q", self.physical.read(table, count * 8))
            except MissingPageError:
                return None
        return self._tables.get((table, count), load) if self._tables is not None else None

    def translate(self, vaddr: int) -> tuple[int, int]:
        upper = bool(vaddr >> 55 & 1)
        if upper != self.upper:
            if self.kernel is not None and upper:
                return self.kernel.translate(vaddr)
            half = "kernel" if upper else "user"
            mapped = "TTBR1 half (kernel)" if self.upper else "TTBR0 half (user)"
            raise TranslationError(f"a {half} address, and this address space maps the "
                                   f"{mapped}", address=vaddr)
        page = vaddr & ~(self.regime.page_size - 1)
        base, size = self._cache.get(page, lambda: self._walk(page))
        return base + (vaddr & (size - 1)), size

    def _walk(self, vaddr: int) -> tuple[int, int]:
        r = self.regime
        table = self.dtb
        for level in range(r.start, 4):
            shift = r.shift(level)
            width = r.va_bits - shift if level == r.start else r.bits
            index = (vaddr >> shift) & ((1 << width) - 1)
            descs = self._table(table, 1 << width)
            desc = descs[index] if descs is not None else \
                self._entry(table, index, vaddr, level)
            if not desc & VALID:
                if level == 3 and desc:
                    if desc & prot_none_bit(self.release):  # present, PROT_NONE
                        return r.output(desc, shift), r.page_size
                    swp_type, swp_offset = swap_entry(desc, self.release)
                    raise SwappedOutError(f"page swapped out (swap area {swp_type}, slot "
                                          f"{swp_offset})", swap_type=swp_type,
                                          swap_offset=swp_offset, address=vaddr)
                exc = TranslationError(f"not mapped (level-{level} descriptor invalid)",
                                       address=vaddr)
                exc.span = (1 << shift) * (max(1, zeros_around(descs, index))
                                           if descs is not None else 1)
                raise exc
            if level == 3:
                if not desc & TABLE:
                    raise TranslationError("reserved level-3 descriptor", address=vaddr)
                return r.output(desc, shift), r.page_size
            if not desc & TABLE:  # a block
                if not r.block_allowed(level):
                    raise TranslationError(f"block descriptor at level {level}, which this "
                                           "granule does not allow", address=vaddr)
                base = r.output(desc, shift)
                offset = vaddr & ((1 << shift) - 1) & ~(r.page_size - 1)
                return base + offset, r.page_size
            table = r.output(desc, r.page_shift)
        raise TranslationError("translation table walk did not end", address=vaddr)

    def describe(self) -> dict[str, Any]:
        r = self.regime
        return {"dtb": self.dtb, "dtb_source": self.dtb_source, "paging_levels": r.levels,
                "granule": r.page_size, "va_bits": r.va_bits,
                "output_addresses": "52-bit LPA2" if r.lpa2 else
                ("52-bit LPA" if r.lpa else "48-bit")}


def zeros_around(descs: array.array[int], index: int) -> int:
    """How many descriptors the largest aligned block of zero (unmapped) descriptors
    around ``index`` holds (a power of two; 0 when descriptor ``index`` is not zero): an
    unmapped address's whole unmapped neighbourhood, for readers that skip it."""
    if descs[index]:
        return 0
    n = 1
    while n < len(descs):
        lo = index & ~(2 * n - 1)
        if any(descs[lo:lo + 2 * n]):
            break
        n *= 2
    return n


RET = 0xD65F03C0


def adrp_refs(code: bytes, pc: int) -> list[tuple[str, int]]:
    """PC-relative data references of A64 code up to its first RET: ADRP gives a register a
    4 KiB page, ADD (immediate, 64-bit) an address in it, LDR (unsigned offset) a load from
    it (A64 encodings, Arm ARM C6)."""
    out: list[tuple[str, int]] = []
    regs: dict[int, int] = {}
    for i in range(0, len(code) - 3, 4):
        ins = int.from_bytes(code[i:i + 4], "little")
        if ins == RET:
            break
        rd, rn = ins & 31, (ins >> 5) & 31
        if ins & 0x9F000000 == 0x90000000:  # ADRP Xd, label
            imm = ((ins >> 29) & 3) | ((ins >> 5) & 0x7FFFF) << 2
            if imm & (1 << 20):
                imm -= 1 << 21
            regs[rd] = ((pc + i) & ~0xFFF) + (imm << 12) & 0xFFFFFFFFFFFFFFFF
        elif ins & 0xFF800000 == 0x91000000 and rn in regs:  # ADD Xd, Xn, #imm{, lsl 12}
            imm = (ins >> 10) & 0xFFF
            regs[rd] = regs[rn] + (imm << 12 if ins >> 22 & 1 else imm)
            out.append(("addr", regs[rd]))
        elif ins & 0x3FC00000 == 0x39400000 and rn in regs:  # LDR{B,H,W,X} (unsigned imm)
            out.append(("load", regs[rn] + (((ins >> 10) & 0xFFF) << (ins >> 30))))
            regs.pop(rd, None)
        elif rd in regs and ins & 0x1F000000 not in (0x11000000,):
            regs.pop(rd, None)  # anything else writing Xd ends what ADRP gave it
    return out


def cpu_states(notes: list[tuple[str, int, bytes]]) -> list[dict[str, Any]]:
    """Per-CPU registers from NT_PRSTATUS (x0-x30, sp, pc, pstate)."""
    cpus = []
    for name, ntype, desc in notes:
        if name == "CORE" and ntype == 1 and len(desc) >= 112 + 34 * 8:
            regs = {r: int.from_bytes(desc[112 + 8 * i:120 + 8 * i], "little")
                    for i, r in enumerate(PRSTATUS_REGS)}
            cpus.append({**regs, "source": "prstatus"})
    return cpus


def regime_of(boot: BootNotes | None) -> Regime:
    """The kernel's regime from VMCOREINFO: PAGESIZE, TCR_EL1.T1SZ (else VA_BITS)."""
    numbers = boot.numbers if boot is not None else {}
    page_size = (boot.page_size if boot is not None else None) or 4096
    t1sz = numbers.get("TCR_EL1_T1SZ")
    va_bits = 64 - t1sz if t1sz else numbers.get("VA_BITS", 48)
    return Regime(page_size, va_bits, lpa2=va_bits > 48)


class Aarch64:
    name = "aarch64"
    description = "aarch64 4K/16K/64K granules, 39-52-bit VA, LPA2, KASLR, PAC-tolerant"
    machines: tuple[str, ...] = ("aarch64", "arm64")
    elf_machine = EM_AARCH64
    kernel_start = KERNEL_START

    def detect(self, physical: PhysicalLayer, boot: BootNotes | None) -> int:
        said = header_says(physical, self.machines, self.elf_machine)
        if said is not None:
            return said
        if boot is not None and ("NUMBER(kimage_voffset)" in boot
                                 or "NUMBER(TCR_EL1_T1SZ)" in boot):
            return 85
        return 0

    def cpu_states(self, notes: list[tuple[str, int, bytes]]) -> list[dict[str, Any]]:
        return cpu_states(notes)

    def root_candidates(self, cpus: list[dict[str, Any]]) -> list[int]:
        return []  # NT_PRSTATUS holds no TTBR1_EL1

    def image_root(self, boot: BootNotes) -> int | None:
        """swapper_pg_dir through the kernel-image mapping: PA = VA - kimage_voffset."""
        root = boot.symbols.get("swapper_pg_dir")
        voffset = boot.numbers.get("kimage_voffset")
        if root is None or voffset is None:
            return None
        return (root - voffset) & ((1 << 64) - 1)

    def kernel_space(self, physical: PhysicalLayer, root: int, boot: BootNotes | None,
                     cpus: list[dict[str, Any]]) -> VirtualLayer:
        return Aarch64Layer(physical, root, regime_of(boot), release=_release(boot))

    def process_space(self, kernel: VirtualLayer, root: int) -> VirtualLayer:
        if not isinstance(kernel, Aarch64Layer):
            raise TranslationError("an aarch64 process space needs an aarch64 kernel space")
        layer = Aarch64Layer(kernel.physical, root, kernel.regime, upper=False,
                             kernel=kernel, release=kernel.release)
        layer.dtb_source = "mm->pgd"
        return layer

    def default_text(self, boot: BootNotes | None) -> int:
        if boot is not None:
            stext, kaslr = boot.symbols.get("_stext"), boot.kernel_offset
            if stext is not None and kaslr is not None:
                return (stext - kaslr) & ~0xFFFF  # _text: _stext less the head text
        return KIMAGE_VADDR if _release(boot) >= (6, 5) else KIMAGE_VADDR_OLD

    def text_is_plausible(self, linked_text: int) -> bool:
        """Linux links arm64 kernels 64 KiB-aligned in the upper half, above the linear
        map of the largest VA size."""
        return linked_text % 0x10000 == 0 and linked_text >= KERNEL_START

    def code_refs(self, code: bytes, pc: int) -> list[tuple[str, int]]:
        return adrp_refs(code, pc)

    def ram_base(self, boot: BootNotes | None) -> int:
        """PHYS_OFFSET (memstart_addr): where the kernel's linear map of RAM starts."""
        return (boot.numbers.get("PHYS_OFFSET") or 0) if boot is not None else 0

    def direct_map(self, boot: BootNotes | None,
                   read_pointer: Callable[[str], int | None]) -> tuple[int, int]:
        """The linear map starts at PAGE_OFFSET (-(1 << VA size)) with PHYS_OFFSET."""
        regime = regime_of(boot)
        phys = boot.numbers.get("PHYS_OFFSET") if boot is not None else None
        if phys is None:
            phys = read_pointer("memstart_addr") or 0
        return (-(1 << regime.va_bits)) & ((1 << 64) - 1), phys

    def scan_root(self, physical: PhysicalLayer, target: int, boot: BootNotes | None,
                  cpus: list[dict[str, Any]]) -> int | None:
        return None  # without VMCOREINFO's kimage_voffset nothing names the root


@hookimpl
def kvmfx_architectures() -> list[Architecture]:
    return [Aarch64()]

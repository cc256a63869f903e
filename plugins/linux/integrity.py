"""Signs of a tampered kernel: its taint mask, and system-call tables that point outside
the kernel's text.

``tainted_mask`` (kernel/panic.c) is what /proc/sys/kernel/tainted prints; each set bit is
named by the kernel's own ``taint_flags`` table (:meth:`Modules.taint_flags`).

The system-call tables are arrays of handler addresses: x86_64 ``sys_call_table`` (and
``ia32_sys_call_table`` / ``x32_sys_call_table`` where the kernel has them), arm64
``sys_call_table`` and ``compat_sys_call_table``. An entry that points outside the kernel's
text (``_stext`` .. ``_etext``) is hooked; the module it points into is named from every
view of the modules (a hidden module's too), else "unknown". NR_syscalls is not a symbol:
a table ends where the next symbol starts (its trailing alignment, zeros, left out), or,
where the symbols name no data, at its first entry that is no kernel address.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from kvmfx.errors import KvmError, SymbolError
from kvmfx_plugins.linux.modules import (
    LoadedModule,
    Modules,
    TaintFlag,
    find_variable,
    modules_of,
)
from kvmfx_plugins.linux.tasks import LinuxKernel

#: A table read without a symbol to end it holds at most this many entries.
MAX_SYSCALLS = 4096
#: Per architecture: each system-call table, and functions whose code reaches it (for
#: kernels whose kallsyms names code only: arm64's do_el0_svc passes sys_call_table).
SYSCALL_TABLES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "x86_64": (("sys_call_table", ()), ("ia32_sys_call_table", ()),
               ("x32_sys_call_table", ())),
    "aarch64": (("sys_call_table", ("do_el0_svc", "el0_svc_handler")),
                ("compat_sys_call_table", ("do_el0_svc_compat", "el0_svc_compat_handler"))),
}


@dataclass
class Taint:
    """The kernel's taint mask, decoded."""

    #: tainted_mask, as /proc/sys/kernel/tainted prints it
    mask: int
    #: the letter of each set bit, in bit order ("OE"; "" when untainted)
    letters: str
    #: the name of each set bit (taint_flags' desc, else include/linux/panic.h's TAINT_*
    #: without the prefix; "bit N" for a bit the kernel's table does not name)
    flags: list[str]


def kernel_taint(k: LinuxKernel) -> Taint:
    """tainted_mask: its symbol, else where get_taint() loads it."""
    at = find_variable(k, "tainted_mask", ("get_taint", "test_taint"), lambda a: True,
                       kinds=("load",))
    if at is None:
        raise SymbolError("tainted_mask: not in the symbols, and no code that reads it was "
                          "found")
    mask = int.from_bytes(k.read(at, 8), "little")
    table: list[TaintFlag] = modules_of(k.session).taint_flags()
    letters, names = "", []
    for bit in range(64):
        if mask >> bit & 1:
            if bit < len(table):
                letters += table[bit].letter
                names.append(table[bit].name or f"bit {bit}")
            else:
                names.append(f"bit {bit}")
    return Taint(mask, letters, names)


@dataclass
class SyscallEntry:
    """One entry of a system-call table."""

    table: str
    index: int
    #: the handler address the entry holds (None: unreadable, why in ``missing``)
    address: int | None
    symbol: str | None = None
    #: the module the address lies in; "unknown" for an address outside the kernel's
    #: text and every module; None inside the kernel's text
    module: str | None = None
    hooked: bool | None = None
    missing: dict[str, str] = field(default_factory=dict)


class CodeMap:
    """Which code an address lies in: the kernel's text, a module (listed, or found only
    in sysfs or by the scan), or neither; and the symbol there."""

    def __init__(self, k: LinuxKernel) -> None:
        self.k = k
        self.mods: Modules = modules_of(k.session)
        symbols = k.symbols
        self.text = symbols.lookup("_stext") or symbols.lookup("_text")
        self.etext = symbols.lookup("_etext")
        self.image_end = max((a for a in (symbols.lookup(n) for n in (
            "_end", "__bss_stop", "_einittext", "__init_end", "_etext")) if a is not None),
            default=None)
        if self.text is None or self.etext is None:
            raise SymbolError("the kernel's text bounds (_stext, _etext) are not in the "
                              "symbols")
        self._ranges: list[tuple[int, int, LoadedModule]] = []
        self._seen: set[int] = set()
        self._symbols: dict[int, list[tuple[int, str]]] = {}
        self._wider = False
        try:
            self._add(self.mods.listed())
        except KvmError as exc:
            k.session.warnings.append(f"the module list: {exc}")

    def _add(self, addresses: list[int]) -> None:
        for addr in addresses:
            if addr in self._seen:
                continue
            self._seen.add(addr)
            info = self.mods.read(addr)
            self._ranges.extend((s, e, info) for s, e, _ in info.ranges)
        self._ranges.sort(key=lambda r: r[0])

    def _widen(self) -> None:
        """Add the modules only sysfs or the scan finds (once, when an address is in no
        listed module)."""
        if self._wider:
            return
        self._wider = True
        for view in (lambda: [a for a, _ in self.mods.in_sysfs()], self.mods.scanned):
            try:
                self._add(view())
            except KvmError as exc:
                self.k.session.warnings.append(f"looking for hidden modules: {exc}")

    def in_text(self, address: int) -> bool:
        assert self.text is not None and self.etext is not None
        return self.text <= address < self.etext

    def module(self, address: int) -> LoadedModule | None:
        """The module whose memory holds ``address``."""
        for wider in (False, True):
            if wider:
                self._widen()
            starts = [r[0] for r in self._ranges]
            i = bisect.bisect_right(starts, address) - 1
            for start, end, info in self._ranges[max(0, i - 8):i + 1]:
                if start <= address < end:
                    return info
        return None

    def symbol(self, address: int, owner: LoadedModule | None) -> str | None:
        """``name`` or ``name+0xOFF`` of the symbol at or below ``address``: the module's
        own symbols for a module address, the kernel's for the kernel image."""
        if owner is not None:
            syms = self._symbols.get(owner.address)
            if syms is None:
                try:
                    syms = sorted((a, n) for a, _t, n in self.mods.symbols(owner.address)
                                  if not n.startswith("$"))
                except KvmError:
                    syms = []
                self._symbols[owner.address] = syms
            i = bisect.bisect_right(syms, (address, "\U0010ffff")) - 1
            if i < 0 or not owner.contains(syms[i][0]):
                return None
            base, name = syms[i]
            return name if base == address else f"{name}+{address - base:#x}"
        assert self.text is not None
        if self.image_end is None or not self.text <= address < self.image_end:
            return None
        found = self.k.symbols.reverse(address)
        if found is None:
            return None
        name, off = found
        return name if off == 0 else f"{name}+{off:#x}"


def _table_length(k: LinuxKernel, table: int) -> tuple[int, bool]:
    """How many entries the table at ``table`` may have, and whether that is its size: up
    to the next symbol (exact but for alignment), else :data:`MAX_SYSCALLS` (the table
    then ends at its first entry that is no kernel address)."""
    following = k.symbols.following(table)
    if following is not None and table < following[1] <= table + 8 * MAX_SYSCALLS:
        return (following[1] - table) // 8, True
    return MAX_SYSCALLS, False


def syscall_tables(k: LinuxKernel) -> list[tuple[str, int, bool]]:
    """(name, address, named) of each system-call table of this kernel; ``named``: its
    symbol is the kernel's own (whose symbols then name data, and the next symbol ends
    it), not one found through the code (which :func:`find_variable` records, as the
    other variables found so, with the lower-case letter "d": these tables are global)."""
    arch = k.session.arch.name
    known = SYSCALL_TABLES.get(arch)
    if known is None:
        raise SymbolError(f"the system-call tables of {arch} are not known to kvmfx")
    text, etext = (k.symbols.lookup("_stext") or k.symbols.lookup("_text"),
                   k.symbols.lookup("_etext"))

    def valid(at: int) -> bool:
        first = int.from_bytes(k.read(at, 8), "little")
        return text is not None and etext is not None and text <= first < etext

    out = []
    for name, uses in known:
        sym = k.symbols.symbols.get(name)
        named = sym is not None and sym.type != "d"
        at = find_variable(k, name, uses, valid, kinds=("addr",))
        if at is not None:
            out.append((name, at, named))
    if not out:
        raise SymbolError("no system-call table: none is in the symbols, and no code that "
                          "uses one was found")
    return out


def check_syscalls(k: LinuxKernel) -> Iterator[SyscallEntry]:
    """Every entry of every system-call table, classified."""
    cmap = CodeMap(k)
    kernel_start = k.session.arch.kernel_start
    for name, table, named in syscall_tables(k):
        count, exact = _table_length(k, table) if named else (MAX_SYSCALLS, False)
        try:
            raw = k.read(table, count * 8)
        except KvmError:
            raw = b""  # read entry by entry below, each unreadable one named
        values: list[int | None] = []
        errors: dict[int, str] = {}
        for i in range(count):
            if raw:
                values.append(int.from_bytes(raw[8 * i:8 * i + 8], "little"))
                continue
            try:
                values.append(int.from_bytes(k.read(table + 8 * i, 8), "little"))
            except KvmError as exc:
                values.append(None)
                errors[i] = str(exc)
        if exact:  # what follows the last entry up to the next symbol: alignment, or
            # data the kernel's kallsyms does not name (a static string): no handler
            while values and values[-1] is not None and values[-1] < kernel_start:
                values.pop()
        else:
            for i, v in enumerate(values):
                if v is None or v < kernel_start:
                    del values[i:]
                    break
        for i, value in enumerate(values):
            entry = SyscallEntry(name, i, value)
            if value is None:
                entry.missing["address"] = errors.get(i, "unreadable")
                for f in ("symbol", "hooked"):
                    entry.missing[f] = "the entry could not be read"
                yield entry
                continue
            owner = None
            if cmap.in_text(value):
                entry.hooked = False
            else:
                entry.hooked = True
                owner = cmap.module(value)
                entry.module = owner.name if owner is not None and owner.name else "unknown"
            entry.symbol = cmap.symbol(value, owner)
            yield entry

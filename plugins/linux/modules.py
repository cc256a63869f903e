"""Loadable kernel modules: the module list, the sysfs kobject set and a scan of module memory.

What /proc/modules prints of a module (kernel/module/procfs.c ``m_show``: name, size,
refcount, users, state, text base, taint flags) and what /sys/module/NAME/sections shows
(kernel/module/sysfs.c), read from ``struct module`` as each kernel lays it out: 5.10 .. 6.3
keep the module's memory in ``core_layout`` / ``init_layout`` (and, on 6.2-6.3 where the
architecture asks for it, ``data_layout``); 6.4 and later in ``mem[MOD_MEM_NUM_TYPES]``.

A module is found three ways, which a rootkit must all defeat to hide one: walking the
``modules`` list, walking ``module_kset`` (each kobject of /sys/module inside a
``struct module_kobject`` whose ``mod`` points back to its module), and scanning the memory
modules are loaded into for structures that are consistent with themselves.

Every walk is bounded and every field read on its own: what cannot be read is None, with the
reason, never the end of a listing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kvmfx.errors import KvmError, SymbolError, TranslationError
from kvmfx.layers import PAGE_SIZE
from kvmfx.objects import Object, cstring, read_with_holes
from kvmfx.session import Session
from kvmfx_plugins.linux.tasks import LinuxKernel

#: Walks stop after this many modules, users or sections (a corrupt list cannot loop).
MAX_MODULES = 65536
MAX_SECTIONS = 65536
#: A module's symbol table is read up to this many entries, and its names this far.
MAX_MODULE_SYMBOLS = 1 << 20
MAX_STRTAB = 16 << 20
#: Bytes of a function read to find the kernel variables its code reaches.
CODE_BYTES = (1024, 256)
#: enum module_state names, as /proc/modules prints them (MODULE_STATE_UNFORMED modules
#: are skipped there; they are listed here as "Unformed").
STATE_WORDS = {"MODULE_STATE_LIVE": "Live", "MODULE_STATE_COMING": "Loading",
               "MODULE_STATE_GOING": "Unloading", "MODULE_STATE_UNFORMED": "Unformed"}
#: list_del() leaves these in a removed entry's links (include/linux/poison.h, with the
#: 0xdead000000000000 POISON_POINTER_DELTA of x86_64 and arm64)
POISON_BASE = 0xDEAD000000000000
#: An ELF64 symbol (the module's own symbol table is ELF): st_name u32, st_info u8,
#: st_other u8, st_shndx u16, st_value u64, st_size u64
ELF64_SYM = struct.Struct("<IBBHQQ")
SHN_UNDEF = 0
#: Where each CPU's Linux loads modules (the scan's window), around the kernel image:
#: x86_64 the module mapping space (Documentation/arch/x86/x86_64/mm.rst: from
#: 0xffffffffa0000000, or above the image when it reaches further, to the fixmap at
#: 0xffffffffff000000); arm64 within 2 GiB of the image (arch/arm64/kernel/module.c: a
#: 128 MiB region or, with PLTs, a 2 GiB one that covers the kernel), the image excluded.
X86_MODULES = (0xFFFFFFFFA0000000, 0xFFFFFFFFFF000000)
ARM64_REACH = 2 << 30
#: scanned memory is read this many bytes at most at a time
SCAN_RUN = 8 << 20

T = TypeVar("T")


@dataclass
class TaintFlag:
    """One bit of the kernel's taint mask: its letter when set (``c_true``), when clear
    (``c_false``), whether a module can carry it, and its name."""

    letter: str
    clear: str
    module: bool
    name: str


#: Taint bits by number (include/linux/panic.h TAINT_*, kernel/panic.c taint_flags):
#: used where the dump's own table cannot be read.
TAINT_FLAGS = tuple(TaintFlag(c, " " if c != "P" else "G", m, n) for n, c, m in (
    ("PROPRIETARY_MODULE", "P", True), ("FORCED_MODULE", "F", True),
    ("CPU_OUT_OF_SPEC", "S", False), ("FORCED_RMMOD", "R", False),
    ("MACHINE_CHECK", "M", False), ("BAD_PAGE", "B", False), ("USER", "U", False),
    ("DIE", "D", False), ("OVERRIDDEN_ACPI_TABLE", "A", False), ("WARN", "W", False),
    ("CRAP", "C", True), ("FIRMWARE_WORKAROUND", "I", False), ("OOT_MODULE", "O", True),
    ("UNSIGNED_MODULE", "E", True), ("SOFTLOCKUP", "L", False), ("LIVEPATCH", "K", True),
    ("AUX", "X", True), ("RANDSTRUCT", "T", True), ("TEST", "N", True),
    ("FWCTL", "J", True)))


@dataclass
class LoadedModule:
    """A module as /proc/modules shows it, with where its memory is; a field that could not
    be read is None and named in ``missing`` with the reason."""

    #: the struct module
    address: int
    name: str | None = None
    #: Live, Loading, Unloading (as /proc/modules), or Unformed
    state: str | None = None
    #: module_total_size(): every memory region's size, init regions included
    size: int | None = None
    #: module_refcount(): refcnt less the reference the module holds on itself
    refcount: int | None = None
    #: the base of the module's core text (what /proc/modules prints as its address)
    base: int | None = None
    #: modules using it, as /proc/modules' fourth column ("[permanent]" for a module with
    #: an init and no exit), in the kernel's order
    used_by: list[str] | None = None
    #: the taint letters in parentheses, as /proc/modules prints them ("" when untainted)
    taint: str | None = None
    taints: int | None = None
    #: the module's memory: (start, end, region) of each non-empty region
    ranges: list[tuple[int, int, str]] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    partial: bool = False

    def contains(self, address: int) -> bool:
        return any(start <= address < end for start, end, _ in self.ranges)


def _try(missing: dict[str, str], name: str, read: Callable[[], T]) -> T | None:
    """``read()``, or None with the reason under ``missing[name]``."""
    try:
        return read()
    except KvmError as exc:
        missing[name] = str(exc)
        return None


def _u64(k: LinuxKernel, address: int) -> int:
    return int.from_bytes(k.read(address, 8), "little")


def read_cstring(k: LinuxKernel, address: int, limit: int = 256) -> str:
    """The NUL-terminated string at ``address`` (at most ``limit`` bytes), read up to the
    end of its page first so that a string at a page's end does not need the next page."""
    if not address:
        raise SymbolError("NULL string pointer")
    first = min(limit, PAGE_SIZE - address % PAGE_SIZE)
    raw = k.read(address, first)
    if b"\0" not in raw and first < limit:
        raw += k.read(address + first, limit - first)
    return cstring(raw).decode("utf-8", "backslashreplace")


def find_variable(k: LinuxKernel, name: str, uses: tuple[str, ...],
                  valid: Callable[[int], bool], kinds: tuple[str, ...] = ("addr", "load"),
                  remember: Callable[[int], bool] | None = None) -> int | None:
    """The address of kernel variable ``name``: its symbol, else the first place the code
    of one of the functions ``uses`` reaches (PC-relative: kernels whose kallsyms names
    code only) that ``valid`` accepts. A place found through the code is added to the
    symbols (and the profile cache) when ``remember`` (default ``valid``) holds for it."""
    addr = k.symbols.lookup(name)
    if addr is not None:
        return addr
    arch = k.session.arch
    for function in uses:
        start = k.symbols.lookup(function)
        if start is None:
            continue
        refs: list[tuple[str, int]] = []
        for size in CODE_BYTES:
            try:
                refs = arch.code_refs(k.read(start, size), start)
                break
            except KvmError:
                continue
        for kind, at in refs:
            try:
                if kind not in kinds or not valid(at):
                    continue
                keep = (remember or valid)(at)
            except KvmError:
                continue
            if keep:
                k.session.found_symbol(name, at, "d")
            return at
    return None


class Modules:
    """A dump's modules: the layouts of its kernel's structures, read once, and the
    readers that use them. One per session (:func:`modules_of`)."""

    def __init__(self, k: LinuxKernel) -> None:
        self.k = k
        self.session: Session = k.session
        types = self.types = k.types
        self.size = types.struct_size("module")
        layout = types.layout("module")
        self.list_off = types.offsetof("module", "list")
        self.name_off = types.offsetof("module", "name")
        self.name_len = types.sizeof(layout["name"][1])
        self.mkobj_off = types.offsetof("module", "mkobj")
        self.mkobj_mod_off = self.mkobj_off + types.offsetof("module_kobject", "mod")
        self.kobj_entry_off = types.offsetof("kobject", "entry")
        self.mk_kobj_off = types.offsetof("module_kobject", "kobj")
        states = types.get(types.find("module_state", kinds=("enum",))).enumerators
        self.states = {v: STATE_WORDS.get(n, n) for n, v in states.items()}
        self.going = states.get("MODULE_STATE_GOING", 2)
        self.coming = states.get("MODULE_STATE_COMING", 1)
        #: memory regions: 6.4+ mem[] by enum mod_mem_type, else the layouts
        self.regions: list[tuple[str, str]] = []  # (member path, region name)
        self.text_region = ""
        if "mem" in layout:
            kinds = types.get(types.find("mod_mem_type", kinds=("enum",))).enumerators
            count = types.get(types.resolve(layout["mem"][1])).nelems
            names = {v: n for n, v in kinds.items() if 0 <= v < count}
            self.regions = [(f"mem[{i}]", names.get(i, f"mem[{i}]")) for i in range(count)]
            self.text_region = f"mem[{kinds.get('MOD_TEXT', 0)}]"
        else:
            self.regions = [(n, n) for n in ("core_layout", "init_layout", "data_layout")
                            if n in layout]
            self.text_region = "core_layout"
        #: where a struct module may start in the scan: its alignment (cacheline aligned)
        self.stride = 64 if self.size % 64 == 0 else 8
        self.kernel_start = self.session.arch.kernel_start
        self._listed: list[int] | None = None
        #: the modules list head and module_kset, once looked for (None: not found)
        self._head: tuple[int | None] | None = None
        self._kset: tuple[int | None] | None = None
        self._scanned: list[int] | None = None
        self._sysfs: list[tuple[int, str | None]] | None = None
        self._taint_flags: list[TaintFlag] | None = None

    # -- the three views ------------------------------------------------------------------
    def module(self, address: int) -> Object:
        return Object(self.types, "module", address, self.k.read)

    def plausible(self, mod: Object) -> bool:
        """Whether ``mod`` is consistent with itself as a loaded module: a known state, a
        printable name, list links that are kernel pointers (or list_del's poison),
        ``mkobj.mod`` pointing back to it, and the structure inside its own memory."""
        try:
            if mod.state not in self.states:
                return False
            name = cstring(mod.name)
            if not name or len(name) >= self.name_len or \
                    any(b < 0x21 or b > 0x7E for b in name):
                return False
            if mod.mkobj.mod != mod.address:
                return False
            links = mod.list
            for p in (links.next, links.prev):
                if p < self.kernel_start and p & ~0xFFFF != POISON_BASE:
                    return False
            return any(start <= mod.address < end for start, end, _ in self._ranges(mod))
        except KvmError:
            return False

    def _is_list_head(self, head: int) -> bool:
        """Whether ``head`` is the list_head of a ring of plausible modules (a ring with at
        least one: an empty list_head looks like any other)."""
        nxt, prev = _u64(self.k, head), _u64(self.k, head + 8)
        if nxt == head or nxt < self.kernel_start or prev < self.kernel_start:
            return False
        if _u64(self.k, nxt + 8) != head or _u64(self.k, prev) != head:
            return False
        return self.plausible(self.module(nxt - self.list_off))

    def list_head(self) -> int | None:
        """The ``modules`` list head: its symbol, else where the code that walks it reaches
        it, else the one node of a scanned module's ring that is no module."""
        if self._head is None:
            k = self.k

            def valid(at: int) -> bool:
                return self._is_list_head(at) or (_u64(k, at) == at and _u64(k, at + 8) == at)

            head = find_variable(k, "modules", ("m_start", "print_modules", "find_module_all",
                                                "module_get_kallsym"), valid,
                                 remember=self._is_list_head)
            if head is None:
                head = self._head_from_ring()
            self._head = (head,)
        return self._head[0]

    def _head_from_ring(self) -> int | None:
        """The list head reached from a module found by the scan: walking its ring, the
        node that is not inside a plausible module (bounded; a broken ring gives None)."""
        for addr in self.scanned():
            node = addr + self.list_off
            seen: set[int] = set()
            try:
                while len(seen) < MAX_MODULES:
                    node = _u64(self.k, node)
                    if node in seen:
                        break
                    seen.add(node)
                    if not self.plausible(self.module(node - self.list_off)):
                        if self._is_list_head(node):
                            return node
                        break
            except KvmError:
                continue
        return None

    def listed(self) -> list[int]:
        """Addresses of the modules on the ``modules`` list, in its order (as /proc/modules)."""
        if self._listed is None:
            head = self.list_head()
            if head is None:
                raise SymbolError("the modules list: not in the symbols, and no code that "
                                  "walks it was found")
            self._listed = list(self.k.list_entries(head, self.list_off, MAX_MODULES,
                                                    what="module list"))
        return self._listed

    def kset(self) -> int | None:
        """``module_kset`` (the kset of /sys/module): its symbol, else a listed module's
        ``mkobj.kobj.kset``, else where the code that uses it reaches it; checked by the
        kset's own name, "module"."""
        if self._kset is None:
            k = self.k

            def valid(kset: int) -> bool:
                try:
                    obj = k.obj("kset", kset)
                    return obj is not None and read_cstring(k, obj.kobj.name, 16) == "module"
                except KvmError:
                    return False

            found = None
            var = k.symbols.lookup("module_kset")
            if var is not None:
                found = _u64(k, var)
            else:
                try:
                    listed = self.listed()
                except KvmError:
                    listed = []
                for addr in listed[:8]:
                    try:
                        cand = self.module(addr).mkobj.kobj.kset
                    except KvmError:
                        continue
                    if valid(cand):
                        found = cand
                        break
                if found is None:
                    var = find_variable(k, "module_kset", ("mod_sysfs_init",
                                                           "mod_sysfs_setup",
                                                           "locate_module_kobject"),
                                        lambda at: valid(_u64(k, at)), kinds=("load", "addr"))
                    found = _u64(k, var) if var is not None else None
            self._kset = (found if found and valid(found) else None,)
        return self._kset[0]

    def in_sysfs(self) -> list[tuple[int, str | None]]:
        """The loadable modules of /sys/module: (struct module, kobject name) for each
        kobject of ``module_kset`` inside a module_kobject whose ``mod`` points back to
        the module_kobject's own module (built-in modules, with no struct module, are left
        out)."""
        if self._sysfs is not None:
            return self._sysfs
        kset = self.kset()
        if kset is None:
            raise SymbolError("module_kset (/sys/module): not in the symbols, not reachable "
                              "from a listed module, no code that uses it was found")
        k = self.k
        head = kset + self.types.offsetof("kset", "list")
        out = []
        for kobj in k.list_entries(head, self.kobj_entry_off, MAX_MODULES, what="module_kset"):
            mk = kobj - self.mk_kobj_off
            try:
                mod = _u64(k, mk + self.types.offsetof("module_kobject", "mod"))
            except KvmError as exc:
                self.session.warnings.append(f"module_kobject at {mk:#x}: {exc}")
                continue
            if not mod or mod + self.mkobj_off != mk:
                continue  # a built-in module's kobject (mod NULL), or not a module's own
            try:
                name: str | None = read_cstring(k, _u64(k, kobj + self.types.offsetof(
                    "kobject", "name")), self.name_len)
            except KvmError:
                name = None
            out.append((mod, name))
        self._sysfs = out
        return out

    def scan_window(self) -> list[tuple[int, int]]:
        """The virtual ranges the scan reads (:data:`X86_MODULES`, :data:`ARM64_REACH`)."""
        symbols = self.k.symbols
        text = symbols.lookup("_stext") or symbols.lookup("_text")
        ends = [a for a in (symbols.lookup(n) for n in ("_end", "__bss_stop", "_einittext",
                                                         "__init_end", "_etext"))
                if a is not None]
        if text is None or not ends:
            raise SymbolError("the kernel image's bounds (_stext, _end) are not in the "
                              "symbols: the module area is unknown")
        end = (max(ends) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        text &= ~(PAGE_SIZE - 1)
        arch = self.session.arch.name
        if arch == "x86_64":
            return [(max(end, X86_MODULES[0]), X86_MODULES[1])]
        if arch == "aarch64":
            return [(max(end - ARM64_REACH, self.kernel_start), text),
                    (end, min(text + ARM64_REACH, 1 << 64))]
        raise SymbolError(f"where Linux loads modules on {arch} is not known to kvmfx")

    def scanned(self) -> list[int]:
        """Addresses of the plausible struct modules in the module area (:meth:`plausible`),
        in address order."""
        if self._scanned is None:
            found: set[int] = set()
            for start, end in self.scan_window():
                for base, buf in mapped_runs(self.session.kernel, start, end, self.size):
                    found.update(self._scan_run(base, buf))
            self._scanned = sorted(found)
        return self._scanned

    def _scan_run(self, base: int, buf: bytes) -> Iterator[int]:
        mod_at, size, stride = self.mkobj_mod_off, self.size, self.stride
        first = -base % stride
        unpack = struct.Struct("<Q").unpack_from
        for off in range(first, len(buf) - size + 1, stride):
            if unpack(buf, off + mod_at)[0] != base + off:
                continue
            mod = Object(self.types, "module", base + off, buf=buf, base=off)
            if self.plausible(mod):
                yield base + off

    # -- one module -----------------------------------------------------------------------
    def _ranges(self, mod: Object) -> list[tuple[int, int, str]]:
        out = []
        for path, name in self.regions:
            region = _member_path(mod, path)
            base, size = region.base, region.size
            if base and size:
                out.append((base, base + size, name))
        return out

    def read(self, address: int) -> LoadedModule:
        """What /proc/modules shows of the module at ``address``, field by field."""
        info = LoadedModule(address)
        miss = info.missing
        try:
            mod = self.module(address)
        except KvmError as exc:
            for name in ("name", "state", "size", "refcount", "base", "used_by", "taint"):
                miss[name] = str(exc)
            return info
        info.name = _try(miss, "name", lambda: cstring(mod.name).decode("utf-8",
                                                                         "backslashreplace"))
        raw_state = _try(miss, "state", lambda: mod.state)
        if raw_state is not None:
            info.state = self.states.get(raw_state, f"unknown ({raw_state})")
        regions = _try(miss, "size", lambda: [(_member_path(mod, p), n) for p, n in
                                              self.regions])
        if regions is not None:
            info.size = _try(miss, "size", lambda: sum(r.size for r, _ in regions) &
                             0xFFFFFFFF)
            info.ranges = _try(miss, "size", lambda: self._ranges(mod)) or []
        info.base = _try(miss, "base", lambda: _member_path(mod, self.text_region).base)
        if mod.has("refcnt"):
            # MODULE_REF_BASE: a live module holds one reference on itself
            info.refcount = _try(miss, "refcount", lambda: mod.refcnt.counter - 1)
        else:
            miss["refcount"] = "the kernel is built without CONFIG_MODULE_UNLOAD"
        info.used_by, cut = self._users(mod, miss)
        info.partial = cut
        info.taints = _try(miss, "taint", lambda: mod.taints)
        if info.taints is not None:
            info.taint = _try(miss, "taint", lambda: self.taint_text(info.taints or 0,
                                                                     raw_state))
        return info

    def _users(self, mod: Object, miss: dict[str, str]) -> tuple[list[str] | None, bool]:
        """print_unload_info(): the source module of each module_use on ``source_list``,
        then "[permanent]" for a module with an init function and no exit."""
        if not mod.has("source_list"):
            miss["used_by"] = "the kernel is built without CONFIG_MODULE_UNLOAD"
            return None, False
        k = self.k
        head = mod.address + mod.offsetof("source_list")
        use_off = self.types.offsetof("module_use", "source_list")
        source_off = self.types.offsetof("module_use", "source")
        users: list[str] = []
        before = len(self.session.warnings)
        try:
            for use in k.list_entries(head, use_off, MAX_MODULES,
                                      what=f"users of the module at {mod.address:#x}"):
                source = _u64(k, use + source_off)
                users.append(read_cstring(k, source + self.name_off, self.name_len))
            if mod.init and not mod.exit:
                users.append("[permanent]")
        except KvmError as exc:
            miss["used_by"] = str(exc)
            return users, True
        cut = len(self.session.warnings) > before
        if cut:
            miss["used_by"] = self.session.warnings[-1]
        return users, cut

    # -- taint ----------------------------------------------------------------------------
    def taint_flags(self) -> list[TaintFlag]:
        """The kernel's own taint_flags table (kernel/panic.c), else :data:`TAINT_FLAGS`."""
        if self._taint_flags is None:
            self._taint_flags = self._read_taint_flags() or list(TAINT_FLAGS)
        return self._taint_flags

    def _read_taint_flags(self) -> list[TaintFlag] | None:
        k, types = self.k, self.types
        try:
            size = types.struct_size("taint_flag")
            has_module = "module" in types.layout("taint_flag")
            has_desc = "desc" in types.layout("taint_flag")
        except KvmError:
            return None

        def entry(at: int) -> TaintFlag | None:
            obj = k.obj("taint_flag", at)
            if obj is None:
                return None
            c_true, c_false = obj.c_true & 0xFF, obj.c_false & 0xFF
            module = bool(obj.module) if has_module else True
            if not 0x41 <= c_true <= 0x5A or not 0x20 <= c_false <= 0x7E or \
                    (has_module and obj.module not in (0, 1)):
                return None
            name = ""
            if has_desc:
                try:
                    name = read_cstring(k, obj.desc, 64)
                except KvmError:
                    name = ""
            return TaintFlag(chr(c_true), chr(c_false), module, name)

        def valid(at: int) -> bool:
            first = entry(at)
            return first is not None and first.letter == "P" and first.clear == "G"

        table = find_variable(k, "taint_flags", ("print_tainted", "_print_tainted",
                                                 "print_tainted_seq", "module_flags_taint"),
                              valid, kinds=("addr",))
        if table is None:
            return None
        following = k.symbols.following(table)
        count = 64
        if following is not None and table < following[1] <= table + 64 * size:
            count = (following[1] - table) // size
        flags: list[TaintFlag] = []
        try:
            for i in range(count):
                flag = entry(table + i * size)
                if flag is None:
                    break
                if not flag.name and i < len(TAINT_FLAGS):
                    flag.name = TAINT_FLAGS[i].name
                flags.append(flag)
        except KvmError:
            pass
        return flags if flags and flags[0].letter == "P" else None

    def taint_text(self, taints: int, state: int | None) -> str:
        """module_flags() as m_show prints it: "" when untainted, else the letters of the
        module's taint bits in parentheses, with "-" while it unloads and "+" while it
        loads ("(OE)")."""
        if not taints:
            return ""
        letters = "".join(f.letter for i, f in enumerate(self.taint_flags())
                          if f.module and taints >> i & 1)
        if state == self.going:
            letters += "-"
        elif state == self.coming:
            letters += "+"
        return f"({letters})"

    # -- sections and symbols -------------------------------------------------------------
    def sections(self, address: int) -> tuple[dict[str, int] | None, str | None, bool]:
        """/sys/module/NAME/sections: ``({section: address}, why not all, cut short)``.
        The names come from the sysfs group's NULL-terminated ``bin_attrs``; each address
        from its ``module_sect_attr`` (5.10 .. 6.13) or the attribute's ``private``
        (later kernels)."""
        k, types = self.k, self.types
        try:
            mod = self.module(address)
            attrs = mod.sect_attrs
            if not attrs:
                return None, "the module has no section attributes (sect_attrs is NULL)", False
            group = k.obj("module_sect_attrs", attrs)
            assert group is not None
            grp = group.grp
            table = grp.bin_attrs if grp.has("bin_attrs") else grp.bin_attrs_new
            count = MAX_SECTIONS
            if group.has("nsections"):
                count = min(count, group.nsections)
        except KvmError as exc:
            return None, str(exc), False
        name_off = types.offsetof("bin_attribute", "attr") + types.offsetof("attribute",
                                                                              "name")
        if types.has("module_sect_attr") and "address" in types.layout("module_sect_attr"):
            addr_off = (types.offsetof("module_sect_attr", "address")
                        - types.offsetof("module_sect_attr", "battr"))
        else:
            addr_off = types.offsetof("bin_attribute", "private")
        out: dict[str, int] = {}
        try:
            for i in range(count + 1):
                battr = _u64(k, table + 8 * i)
                if not battr:
                    return out, None, False
                if i == count:
                    break
                name = read_cstring(k, _u64(k, battr + name_off))
                out.setdefault(name, _u64(k, battr + addr_off))
        except KvmError as exc:
            return out, str(exc), True
        if count == MAX_SECTIONS:
            return out, f"more than {MAX_SECTIONS} sections: the rest is not listed", True
        return out, None, False

    def symbols(self, address: int) -> list[tuple[int, str, str]]:
        """The module's own symbols, as /proc/kallsyms lists them: (address, type letter,
        name) of each named, defined entry of ``mod->kallsyms`` (ELF symbols, their
        letters in ``typetab``), the letter upper case for a symbol the module exports and
        lower case otherwise (kernel/kallsyms.c ``s_show``)."""
        k = self.k
        mod = self.module(address)
        ks = k.obj("mod_kallsyms", mod.kallsyms)
        if ks is None:
            return []
        num = min(ks.num_symtab, MAX_MODULE_SYMBOLS)
        if num == 0 or not ks.symtab:
            return []
        raw = k.read(ks.symtab, num * ELF64_SYM.size)
        syms = [ELF64_SYM.unpack_from(raw, i * ELF64_SYM.size) for i in range(num)]
        types = b""
        if ks.has("typetab") and ks.typetab:
            types = k.read(ks.typetab, num)
        longest = max((s[0] for s in syms), default=0) + 512
        strtab, _holes = read_with_holes(k.read, ks.strtab, min(longest, MAX_STRTAB))
        exports = self._exports(mod)
        out = []
        for i, (st_name, st_info, _o, shndx, value, _size) in enumerate(syms):
            if i == 0 or shndx == SHN_UNDEF:
                continue
            name = cstring(strtab[st_name:st_name + 512])
            if not name:
                continue
            letter = chr(types[i]) if i < len(types) else _elf_letter(st_info)
            letter = letter.upper() if _exported(exports, name, value) else letter.lower()
            out.append((value, letter, name.decode("utf-8", "backslashreplace")))
        return out

    def _exports(self, mod: Object) -> list[tuple[bytes, int]]:
        """(name, address) of each ``kernel_symbol`` of ``mod->syms``, in their order: the
        symbols the module exports (GPL-only ones apart, in ``gpl_syms``, before Linux
        6.x merged them), as is_exported() searches them. A ``kernel_symbol`` holds
        offsets relative to itself (PREL32 relocations) or absolute addresses."""
        k, types = self.k, self.types
        if not mod.has("syms") or not mod.syms:
            return []
        count = min(mod.num_syms, MAX_MODULE_SYMBOLS)
        size = types.struct_size("kernel_symbol")
        layout = types.layout("kernel_symbol")
        relative = "value_offset" in layout
        value_off = types.offsetof("kernel_symbol", "value_offset" if relative else "value")
        name_off = types.offsetof("kernel_symbol", "name_offset" if relative else "name")
        try:
            raw = k.read(mod.syms, count * size)
        except KvmError:
            return []
        out = []
        for i in range(count):
            at = mod.syms + i * size
            if relative:
                value = at + value_off + int.from_bytes(raw[i * size + value_off:][:4],
                                                        "little", signed=True)
                name_at = at + name_off + int.from_bytes(raw[i * size + name_off:][:4],
                                                         "little", signed=True)
            else:
                value = int.from_bytes(raw[i * size + value_off:][:8], "little")
                name_at = int.from_bytes(raw[i * size + name_off:][:8], "little")
            try:
                name = read_cstring(k, name_at & 0xFFFFFFFFFFFFFFFF, 512).encode(
                    "utf-8", "surrogateescape")
            except KvmError:
                name = b""
            out.append((name, value & 0xFFFFFFFFFFFFFFFF))
        return out


def _exported(exports: list[tuple[bytes, int]], name: bytes, value: int) -> bool:
    """is_exported(): the kernel's binary search of the module's exports by name (which
    finds nothing where they are not sorted, as the kernel's does not), and the value."""
    base, num = 0, len(exports)
    while num > 0:
        pivot = base + (num >> 1)
        found, at = exports[pivot]
        if name == found:
            return at == value
        if name > found:
            base = pivot + 1
            num -= 1
        num >>= 1
    return False


def _elf_letter(st_info: int) -> str:
    """A symbol's type letter from its ELF binding and type, where the module keeps no
    typetab: functions t/T, other symbols d/D."""
    kind = "t" if st_info & 0xF == 2 else "d"
    return kind.upper() if st_info >> 4 in (1, 2) else kind


def _member_path(obj: Object, path: str) -> Any:
    """A member by a path of names with an optional ``[index]`` (``mem[0]``)."""
    name, _, index = path.partition("[")
    value = obj.member(name)
    if index:
        value = value[int(index.rstrip("]"))]
    return value


def mapped_runs(layer: Any, start: int, end: int, overlap: int = 0
                ) -> Iterator[tuple[int, bytes]]:
    """(address, bytes) of the runs of mapped, readable memory between ``start`` and
    ``end``, each at most about :data:`SCAN_RUN` long (a run cut for its length starts
    again ``overlap`` bytes before the cut); unmapped ranges are skipped as a whole where
    the page tables say how far they reach."""
    pos = start
    run_at, size = start, 0
    parts: list[bytes] = []
    while pos < end:
        data = None
        try:
            _paddr, page = layer.translate(pos)
            stop = min(end, (pos // page + 1) * page)
            data = layer.read(pos, stop - pos)
        except TranslationError as exc:
            step = max(exc.span, PAGE_SIZE)
            stop = min(end, (pos // step + 1) * step)
        except KvmError:
            stop = min(end, (pos // PAGE_SIZE + 1) * PAGE_SIZE)
        if data is None:
            if parts:
                yield run_at, b"".join(parts)
            parts, size = [], 0
        else:
            if not parts:
                run_at = pos
            parts.append(data)
            size += len(data)
            if size >= SCAN_RUN:
                buf = b"".join(parts)
                yield run_at, buf
                tail = buf[len(buf) - overlap:] if overlap else b""
                parts, size, run_at = ([tail] if tail else []), len(tail), stop - len(tail)
        pos = stop
    if parts:
        yield run_at, b"".join(parts)


def modules_of(session: Session) -> Modules:
    """The session's :class:`Modules` (made once; SymbolError where this kernel's types
    describe no modules)."""
    found = session.plugin_data.get("linux-modules")
    if found is None:
        found = Modules(session.profile.kernel(session))
        session.plugin_data["linux-modules"] = found
    assert isinstance(found, Modules)
    return found

"""Linux memory mappings from kernel memory: every VMA of a process, as /proc/PID/maps shows it.

A process's mappings hang off its ``mm_struct``: in a maple tree (``mm->mm_mt``, Linux 6.1
and later: lib/maple_tree.c) or, before, on a list sorted by address (``mm->mmap``, each
``vma->vm_next``). Each mapping is rendered as fs/proc/task_mmu.c ``show_map_vma()`` renders
it: the file's path, else the name the mapping's operations give it (``[vdso]``, ``[vvar]``:
special mappings), else ``[heap]`` or ``[stack]`` by the mm's brk and stack start, else the
name userspace gave it (``[anon:NAME]``). On x86_64 the vsyscall page, which is in no mm's
tree, follows the last mapping, as /proc prints it.

Every walk is bounded: the maple tree by its height, a seen-set of nodes, the order of its
pivots and a limit on entries; the list by a seen-set, the order of its addresses and the
same limit. What breaks a walk is reported (:attr:`ProcessMaps.problems`), never loops.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kvmfx.errors import FormatError, KvmError
from kvmfx.objects import Fields, cstring
from kvmfx.types import TypeModel
from kvmfx_plugins.linux.tasks import LinuxKernel, _read_user
from kvmfx_plugins.linux.vfs import VfsPath, vfs

#: vm_flags bits /proc/PID/maps shows (include/linux/mm.h)
VM_READ, VM_WRITE, VM_EXEC, VM_MAYSHARE = 0x1, 0x2, 0x4, 0x80
#: at most this many mappings are read of one process (the kernel's vm.max_map_count is
#: 65,530 by default; more is memory that is not a mapping tree)
MAX_VMAS = 1 << 21
#: the tallest maple tree (include/linux/maple_tree.h MAPLE_HEIGHT_MAX)
MAPLE_HEIGHT_MAX = 31
#: maple nodes are 256-byte aligned; an encoded node keeps its type in bits 3-6
MAPLE_NODE_MASK = 0xFF
MAPLE_NODE_TYPE_SHIFT, MAPLE_NODE_TYPE_MASK = 3, 0x0F
#: entries below this with the bottom bits 10 are the tree's own markers, not pointers
MAPLE_RESERVED_RANGE = 4096
ULONG_MAX = (1 << 64) - 1
#: a name userspace gives a mapping (prctl PR_SET_VMA_ANON_NAME) is at most this long
ANON_VMA_NAME_MAX_LEN = 80
#: where x86_64's vsyscall page lies (arch/x86/include/asm/vsyscall.h VSYSCALL_ADDR)
VSYSCALL_ADDR = 0xFFFFFFFFFF600000
#: vsyscall_mode's value when there is no vsyscall page (vsyscall=none: EMULATE, XONLY,
#: NONE since Linux 5.2)
VSYSCALL_NONE = 2
#: mm->context.flags bit of an mm that sees the vsyscall page (MM_CONTEXT_HAS_VSYSCALL)
MM_CONTEXT_HAS_VSYSCALL_BIT = 1
#: the first release whose [heap] test leaves out mappings that only touch the heap's ends
#: (vma_is_initial_heap: vm_start < brk && vm_end > start_brk; <= and >= before)
STRICT_HEAP_SINCE = (6, 7)

_U64 = struct.Struct("<Q").unpack_from


# -- the maple tree ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeShape:
    """Where a maple node of one type keeps its pivots, slots and metadata end."""

    pivot_off: int
    pivots: int
    slot_off: int
    slots: int
    meta_end_off: int


@dataclass(frozen=True)
class MapleLayout:
    """A kernel's maple nodes: their size, the numbers of the node types and each type's
    shape. The defaults are a 64-bit kernel's (include/linux/maple_tree.h: 256-byte nodes,
    16 slots in a range node, 10 in an allocation-range node)."""

    node_size: int = 256
    leaf: frozenset[int] = frozenset({1})  # maple_leaf_64
    shapes: dict[int, NodeShape] = field(default_factory=lambda: {
        1: NodeShape(8, 15, 128, 16, 248),    # maple_leaf_64
        2: NodeShape(8, 15, 128, 16, 248),    # maple_range_64
        3: NodeShape(8, 9, 80, 10, 240),      # maple_arange_64
    })
    #: the type whose data end is always its metadata (maple_arange_64)
    meta_only: int = 3

    @classmethod
    def from_types(cls, types: TypeModel) -> MapleLayout:
        """The layout the kernel's own types give (BTF/DWARF)."""
        kinds = types.get(types.find("maple_type", kinds=("enum",))).enumerators

        def shape(struct_name: str) -> NodeShape:
            layout = types.layout(struct_name)

            def count(member: str) -> int:
                return types.get(types.resolve(layout[member][1])).nelems

            return NodeShape(types.offsetof(struct_name, "pivot"), count("pivot"),
                             types.offsetof(struct_name, "slot"), count("slot"),
                             types.offsetof(struct_name, "meta") +
                             types.offsetof("maple_metadata", "end"))

        range64, arange64 = shape("maple_range_64"), shape("maple_arange_64")
        leaf = kinds["maple_leaf_64"]
        return cls(node_size=types.struct_size("maple_node"), leaf=frozenset({leaf}),
                   shapes={leaf: range64, kinds["maple_range_64"]: range64,
                           kinds["maple_arange_64"]: arange64},
                   meta_only=kinds["maple_arange_64"])


def is_maple_node(entry: int) -> bool:
    """xa_is_node(): an internal entry (bottom bits 10) above the reserved range."""
    return entry & 3 == 2 and entry > MAPLE_RESERVED_RANGE


def maple_entries(read: Callable[[int, int], bytes], layout: MapleLayout, root: int,
                  problems: list[str], limit: int = MAX_VMAS) -> Iterator[tuple[int, int, int]]:
    """``(first, last, entry)`` of every non-empty range of a maple tree whose ``ma_root`` is
    ``root``, in index order (ranges are inclusive, as the tree stores them).

    Each node is read once. A node reached twice, deeper than MAPLE_HEIGHT_MAX, dead (its
    parent is itself: freed), of a type a tree in use does not hold, unreadable, or whose
    pivots leave its range or go backwards ends the walk of that node (and what it leads to)
    with a line in ``problems``; the walk goes on with the rest of the tree.
    """
    if not root:
        return
    if not is_maple_node(root):  # a single entry kept in the root: index 0 alone
        yield 0, 0, root
        return
    stack: list[tuple[int, int, int, int]] = [(root & ~2, 0, ULONG_MAX, 1)]
    seen: set[int] = set()
    count = 0
    while stack:
        enode, lo, hi, depth = stack.pop()
        node = enode & ~MAPLE_NODE_MASK
        ntype = (enode >> MAPLE_NODE_TYPE_SHIFT) & MAPLE_NODE_TYPE_MASK
        if node in seen:
            problems.append(f"maple node {node:#x} is reached twice (a loop): "
                            "its entries are listed once")
            continue
        seen.add(node)
        if len(seen) > limit:
            problems.append(f"more than {limit} maple nodes: the rest is not read")
            return
        if depth > MAPLE_HEIGHT_MAX:
            problems.append(f"maple node {node:#x} is deeper than {MAPLE_HEIGHT_MAX} levels: "
                            "not read")
            continue
        shape = layout.shapes.get(ntype)
        if shape is None:
            problems.append(f"maple node {node:#x} has type {ntype}, which a tree in use does "
                            "not hold: not read")
            continue
        try:
            buf = read(node, layout.node_size)
        except KvmError as exc:
            problems.append(f"maple node {node:#x} (entries {lo:#x}-{hi:#x}) is unreadable: "
                            f"{exc}")
            continue
        if _U64(buf, 0)[0] & ~MAPLE_NODE_MASK == node:
            problems.append(f"maple node {node:#x} is dead (freed: its parent is itself)")
            continue
        pivots = struct.unpack_from(f"<{shape.pivots}Q", buf, shape.pivot_off)
        slots = struct.unpack_from(f"<{shape.slots}Q", buf, shape.slot_off)
        end = _data_end(layout, ntype, shape, buf, pivots, hi)
        if end >= shape.slots:
            problems.append(f"maple node {node:#x} says it holds {end + 1} entries (at most "
                            f"{shape.slots}): the first {shape.slots} are read")
            end = shape.slots - 1
        leaf = ntype in layout.leaf
        children: list[tuple[int, int, int, int]] = []
        first = lo
        for i in range(end + 1):
            last = pivots[i] if i < shape.pivots else hi
            if last < first or last > hi:
                problems.append(f"maple node {node:#x}: pivot {i} ({last:#x}) is out of "
                                f"order (the slot starts at {first:#x}, the node ends at "
                                f"{hi:#x}): the rest of the node is not read")
                break
            entry = slots[i]
            if leaf:
                if entry and not (entry & 3 == 2 and entry < MAPLE_RESERVED_RANGE):
                    count += 1
                    if count > limit:
                        problems.append(f"more than {limit} entries: the rest is not listed")
                        return
                    yield first, last, entry
            elif not entry:
                problems.append(f"maple node {node:#x}: slot {i} ({first:#x}-{last:#x}) "
                                "points to no node")
            else:
                children.append((entry, first, last, depth + 1))
            if last >= hi:
                break
            first = last + 1
        stack.extend(reversed(children))


def _data_end(layout: MapleLayout, ntype: int, shape: NodeShape, buf: bytes,
              pivots: tuple[int, ...], hi: int) -> int:
    """ma_data_end(): the offset of a node's last used slot."""
    meta_end = buf[shape.meta_end_off]
    if ntype == layout.meta_only:
        return meta_end
    last = pivots[shape.pivots - 1]
    if not last:
        return meta_end
    if last == hi:
        return shape.pivots - 1
    return shape.pivots


def vma_list(read: Callable[[int, int], bytes], first: int, next_off: int,
             problems: list[str], limit: int = MAX_VMAS) -> Iterator[int]:
    """The VMAs on an mm's list (``mm->mmap``, then each ``vm_next``; before Linux 6.1), by
    address; a loop, an unreadable link or more than ``limit`` entries ends the walk with a
    line in ``problems``."""
    seen: set[int] = set()
    vma = first
    while vma:
        if vma in seen:
            problems.append(f"the VMA list loops at {vma:#x} after {len(seen)} entries")
            return
        if len(seen) >= limit:
            problems.append(f"the VMA list is longer than {limit} entries: the rest is not "
                            "listed")
            return
        seen.add(vma)
        yield vma
        try:
            vma = _U64(read(vma + next_off, 8))[0]
        except KvmError as exc:
            problems.append(f"the VMA list is broken at {vma:#x} after {len(seen)} entries: "
                            f"{exc}")
            return


# -- mappings as /proc shows them -----------------------------------------------------------------
@dataclass
class Mapping:
    """One mapping as /proc/PID/maps prints it. A field that could not be read is None,
    with why in ``missing``."""

    start: int
    end: int
    flags: int | None = None
    offset: int | None = None
    dev: tuple[int, int] | None = None
    inode: int | None = None
    #: the file's path, the mapping's name, or "" (an anonymous mapping without a name)
    path: str | None = None
    #: backed by a file (None: unknown)
    file: bool | None = None
    #: named by the kernel's code for it (special mappings: [vdso], [vvar], [vsyscall])
    special: bool = False
    #: the file is no longer in the directory tree (unlinked, `` (deleted)``)
    deleted: bool = False
    #: the vm_area_struct (0: none was read)
    vma: int = 0
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def executable(self) -> bool:
        return self.flags is not None and bool(self.flags & VM_EXEC)

    @property
    def writable(self) -> bool:
        return self.flags is not None and bool(self.flags & VM_WRITE)

    @property
    def perms(self) -> str | None:
        """``r-xp`` as /proc prints the flags (``s``: a shared mapping)."""
        f = self.flags
        if f is None:
            return None
        return ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + \
            ("x" if f & VM_EXEC else "-") + ("s" if f & VM_MAYSHARE else "p")


@dataclass
class ProcessMaps:
    """A process's mappings in address order; ``problems`` says why the list may be cut
    short (empty: every mapping the kernel holds was read)."""

    mappings: list[Mapping]
    problems: list[str]


def maps_line(m: Mapping) -> str:
    """The line /proc/PID/maps prints for ``m`` (without its newline), as
    show_vma_header_prefix() and seq_pad() lay it out: the name starts after column 73."""
    major, minor = m.dev if m.dev is not None else (0, 0)
    head = (f"{m.start:08x}-{m.end:08x} {m.perms or '----'} {m.offset or 0:08x} "
            f"{major:02x}:{minor:02x} {m.inode or 0} ")
    if not m.path:
        return head
    return head.ljust(25 + 8 * 6 - 1) + " " + m.path


def _mangle(path: str) -> str:
    """seq_path()'s escaping of a file path: a newline as ``\\012``."""
    return path.replace("\n", "\\012")


def _release_tuple(release: str | None) -> tuple[int, int] | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


class Maps:
    """The mappings of one kernel's processes: its structures laid out once, what files,
    inodes and special mappings resolve to kept for the listing."""

    def __init__(self, k: LinuxKernel) -> None:
        self.k = k
        types = k.types
        self.mm_off = types.offsetof("task_struct", "mm")
        mm_layout = types.layout("mm_struct")
        self.maple = "mm_mt" in mm_layout
        root = "mm_mt.ma_root" if self.maple else "mmap"
        self.maple_layout = MapleLayout.from_types(types) if self.maple else None
        self.mm = Fields(types, "mm_struct", [root, "pgd", "start_brk", "brk", "start_stack"])
        vma_layout = types.layout("vm_area_struct")
        names = ["vm_start", "vm_end", "vm_flags", "vm_pgoff", "vm_file", "vm_ops",
                 "vm_private_data", "vm_mm"]
        #: the name userspace gives an anonymous mapping (Linux 5.17+, CONFIG_ANON_VMA_NAME):
        #: in a union with the file's i_mmap link until 6.2 (valid only without a file),
        #: a member of its own (present only with the option) since
        self.anon_in_union = False
        self.has_anon_name = "anon_name" in vma_layout
        if self.has_anon_name:
            shared = vma_layout.get("shared")
            self.anon_in_union = shared is not None and \
                shared[0] == vma_layout["anon_name"][0]
            if self.anon_in_union and k.symbols.lookup("anon_vma_name_alloc") is None and \
                    k.symbols.lookup("anon_vma_name") is None:
                self.has_anon_name = False  # the union is there, the option is off
        if self.has_anon_name:
            names.append("anon_name")
        self.vma = Fields(types, "vm_area_struct", names)
        self.next_off = types.offsetof("vm_area_struct", "vm_next") \
            if "vm_next" in vma_layout else None
        self.anon_name_off = types.offsetof("anon_vma_name", "name") \
            if self.has_anon_name else 0
        self.ops_name_off = types.offsetof("vm_operations_struct", "name")
        self.special_name_off = types.offsetof("vm_special_mapping", "name")
        self.inode = Fields(types, "inode", ["i_sb", "i_ino"])
        self.s_dev_off = types.offsetof("super_block", "s_dev")
        self.file = Fields(types, "file", ["f_path.mnt", "f_path.dentry", "f_inode"])
        symbols = k.symbols
        self.special_mapping_name = symbols.lookup("special_mapping_name")
        self.gate_vma_name = symbols.lookup("gate_vma_name")
        self.x86 = k.session.arch.name == "x86_64"
        self.page_size = k.session.image.page_size
        release = _release_tuple(k.session.image.release)
        if release is None:
            try:
                release = _release_tuple(k.session.profile.uname(k.session)["release"])
            except KvmError:
                release = None
        #: vma_is_initial_heap's test: strict since 6.7 (and when the release is unknown)
        self.strict_heap = release is None or release >= STRICT_HEAP_SINCE
        self._files: dict[int, tuple[tuple[int, int] | None, int | None, str | None, bool,
                                     dict[str, str]]] = {}
        self._inodes: dict[int, tuple[tuple[int, int], int]] = {}
        self._paths: dict[tuple[int, int], tuple[str, bool]] = {}
        self._names: dict[tuple[int, int], str | None] = {}
        self._gate: Mapping | None | bool = False
        self._ctx: tuple[str, int] | None | bool = False

    # -- one process ---------------------------------------------------------------------------
    def process(self, task: int) -> ProcessMaps | None:
        """The mappings of the process whose task_struct is at ``task``; None for a task
        without an mm (a kernel thread, a zombie): /proc shows it no mapping."""
        k = self.k
        mm = _U64(k.read(task + self.mm_off, 8))[0]
        if not mm:
            return None
        root, pgd, start_brk, brk, start_stack = self.mm.read(k.read, mm)
        problems: list[str] = []
        out: list[Mapping] = []
        ranges: Iterator[tuple[int, int, int]]
        if self.maple:
            assert self.maple_layout is not None
            ranges = maple_entries(k.read, self.maple_layout, root, problems)
        else:
            assert self.next_off is not None
            ranges = ((0, ULONG_MAX, vma) for vma in vma_list(k.read, root, self.next_off,
                                                               problems))
        prev_end = 0
        for first, last, vma in ranges:
            try:
                m = self.mapping(vma, first, last, (start_brk, brk, start_stack))
            except KvmError as exc:  # on the list: nothing tells where the next one is
                problems.append(f"{exc}: the rest is not listed")
                break
            if self.maple and m.flags is not None and \
                    (m.start != first or m.end != (last + 1) & ULONG_MAX):
                problems.append(f"the VMA at {vma:#x} says {m.start:#x}-{m.end:#x}; the tree "
                                f"files it under {first:#x}-{last + 1:#x}: the rest is not "
                                "listed")
                break
            if m.start < prev_end or m.end <= m.start:
                problems.append(f"the VMA at {vma:#x} ({m.start:#x}-{m.end:#x}) is out of "
                                f"address order (after {prev_end:#x}): the rest is not listed")
                break
            prev_end = m.end
            out.append(m)
        gate = self.gate(mm)
        if gate is not None:
            out.append(gate)
        return ProcessMaps(out, problems)

    def mapping(self, vma: int, first: int, last: int,
                mm_marks: tuple[int, int, int] | None) -> Mapping:
        """The VMA at ``vma`` as /proc shows it. When the vm_area_struct cannot be read the
        range the tree files it under stands for it (``first``..``last``), everything else
        None with why. ``mm_marks``: (start_brk, brk, start_stack) of its mm."""
        k = self.k
        try:
            vals = self.vma.read(k.read, vma)
        except KvmError as exc:
            why = f"vm_area_struct at {vma:#x} is unreadable: {exc}"
            missing = {name: why for name in ("perms", "offset", "dev", "inode", "path")}
            if not self.maple:
                raise FormatError(why, address=vma) from exc
            return Mapping(first, (last + 1) & ULONG_MAX, vma=vma, missing=missing)
        start, end, flags, pgoff, file, ops, private, vm_mm = vals[:8]
        anon_name = vals[8] if self.has_anon_name else 0
        m = Mapping(start, end, flags=flags, offset=0, dev=(0, 0), inode=0, path="",
                    file=bool(file), vma=vma)
        if file:
            m.offset = pgoff * self.page_size & ULONG_MAX
            self._file(m, file)
            if anon_name and not self.anon_in_union:
                name = self._anon_name(anon_name, m)
                if name is not None:
                    m.path = f"[anon_shmem:{name}]"
            return m
        if ops:
            try:
                name = self._ops_name(ops, private)
            except KvmError as exc:
                m.path = None
                m.missing["path"] = f"vm_ops at {ops:#x}: {exc}"
                return m
            if name:
                m.path, m.special = name, True
                return m
        if not vm_mm:
            m.path, m.special = "[vdso]", True
            return m
        if mm_marks is not None:
            start_brk, brk, start_stack = mm_marks
            heap = (start < brk and end > start_brk) if self.strict_heap else \
                (start <= brk and end >= start_brk)
            if heap:
                m.path = "[heap]"
                return m
            if start <= start_stack <= end:
                m.path = "[stack]"
                return m
        if anon_name:
            name = self._anon_name(anon_name, m)
            if name is not None:
                m.path = f"[anon:{name}]"
        return m

    def _file(self, m: Mapping, file: int) -> None:
        """Fill in a file mapping's device, inode and path (kept per struct file, the path
        per mount and dentry: every process mapping a binary shares them)."""
        found = self._files.get(file)
        if found is None:
            missing: dict[str, str] = {}
            dev = ino = path = None
            deleted = False
            try:
                mnt, dentry, inode = self.file.read(self.k.read, file)
            except KvmError as exc:
                why = f"struct file at {file:#x} is unreadable: {exc}"
                missing = {"dev": why, "inode": why, "path": why}
            else:
                try:
                    dev, ino = self._inode(inode)
                except KvmError as exc:
                    missing["dev"] = missing["inode"] = f"inode of file {file:#x}: {exc}"
                try:
                    path, deleted = self._path(mnt, dentry)
                except KvmError as exc:
                    missing["path"] = f"path of file {file:#x}: {exc}"
            found = (dev, ino, path, deleted, missing)
            if len(self._files) > 1 << 16:
                self._files.clear()
            self._files[file] = found
        m.dev, m.inode, m.path, m.deleted, missing = found
        m.missing.update(missing)

    def _path(self, mnt: int, dentry: int) -> tuple[str, bool]:
        """The path /proc shows for a file's ``f_path`` (as /proc/PID/fd does: d_path()
        against the reader's root), escaped as seq_path() escapes it, and whether the file
        is unlinked."""
        key = (mnt, dentry)
        found = self._paths.get(key)
        if found is None:
            path = vfs(self.k).d_path(VfsPath(mnt, dentry))
            found = (_mangle(path), path.endswith(" (deleted)"))
            if len(self._paths) > 1 << 16:
                self._paths.clear()
            self._paths[key] = found
        return found

    def _inode(self, inode: int) -> tuple[tuple[int, int], int]:
        found = self._inodes.get(inode)
        if found is None:
            if not inode:
                raise FormatError("the file has no inode")
            sb, ino = self.inode.read(self.k.read, inode)
            dev = struct.unpack("<I", self.k.read(sb + self.s_dev_off, 4))[0]
            found = ((dev >> 20, dev & 0xFFFFF), ino)  # MAJOR/MINOR: 20 minor bits
            if len(self._inodes) > 1 << 16:
                self._inodes.clear()
            self._inodes[inode] = found
        return found

    def _ops_name(self, ops: int, private: int) -> str | None:
        """What ``vma->vm_ops->name(vma)`` returns, for the names the kernel's code gives:
        a special mapping's own name (special_mapping_name), the vsyscall page's
        (gate_vma_name). FormatError for another function, which kvmfx cannot run."""
        key = (ops, private)
        if key in self._names:
            return self._names[key]
        k = self.k
        fn = _U64(k.read(ops + self.ops_name_off, 8))[0]
        if not fn:
            name = None
        elif fn == self.special_mapping_name:
            ptr = _U64(k.read(private + self.special_name_off, 8))[0]
            name = _read_cstring(k, ptr, 256).decode("utf-8", "backslashreplace")
        elif fn == self.gate_vma_name:
            name = "[vsyscall]"
        else:
            sym = k.symbols.reverse(fn)
            what = f"{sym[0]}+{sym[1]:#x}" if sym and sym[1] else sym[0] if sym else \
                f"{fn:#x}"
            raise FormatError(f"the mapping is named by {what}(), which kvmfx does not run")
        self._names[key] = name
        return name

    def _anon_name(self, ptr: int, m: Mapping) -> str | None:
        try:
            raw = _read_cstring(self.k, ptr + self.anon_name_off, ANON_VMA_NAME_MAX_LEN)
        except KvmError as exc:
            m.path = None
            m.missing["path"] = f"anon_vma_name at {ptr:#x}: {exc}"
            return None
        return raw.decode("utf-8", "backslashreplace")

    # -- the vsyscall page ---------------------------------------------------------------------
    def gate(self, mm: int) -> Mapping | None:
        """get_gate_vma(mm) on x86_64: the vsyscall page, shown after the last mapping of an
        mm that sees it (none under vsyscall=none, the default of Debian's kernels, nor for
        a 32-bit mm)."""
        if not self.x86:
            return None
        gate = self._gate_vma()
        if gate is None or not self._sees_vsyscall(mm):
            return None
        return gate

    def _gate_vma(self) -> Mapping | None:
        if self._gate is False:
            self._gate = None
            k = self.k
            mode_at, gate_at = k.symbols.lookup("vsyscall_mode"), k.symbols.lookup("gate_vma")
            if mode_at is None or gate_at is None:
                k.session.warnings.append(
                    "maps: the vsyscall page cannot be shown (vsyscall_mode or gate_vma is "
                    "not in the symbols)")
                return None
            try:
                mode = struct.unpack("<i", k.read(mode_at, 4))[0]
                if mode != VSYSCALL_NONE:
                    self._gate = self.mapping(gate_at, VSYSCALL_ADDR, VSYSCALL_ADDR + 4095,
                                              None)
            except KvmError as exc:
                k.session.warnings.append(f"maps: the vsyscall page cannot be shown: {exc}")
        return self._gate  # type: ignore[return-value]

    def _sees_vsyscall(self, mm: int) -> bool:
        """Whether get_gate_vma() gives ``mm`` the vsyscall page: not a 32-bit mm (before
        Linux 6.1: ``context.ia32_compat``; since: ``context.flags``'s
        MM_CONTEXT_HAS_VSYSCALL)."""
        if self._ctx is False:
            types = self.k.types
            ctx = types.offsetof("mm_struct", "context")
            layout = types.layout("mm_context_t")
            if "ia32_compat" in layout:
                self._ctx = ("ia32_compat", ctx + types.offsetof("mm_context_t", "ia32_compat"))
            elif "flags" in layout:
                self._ctx = ("flags", ctx + types.offsetof("mm_context_t", "flags"))
            else:
                self._ctx = None
        if self._ctx is None:
            return True
        kind, off = self._ctx  # type: ignore[misc]
        try:
            value = _U64(self.k.read(mm + off, 8))[0]
        except KvmError:
            return True
        if kind == "ia32_compat":
            return not value & 0xFFFF
        return bool(value >> MM_CONTEXT_HAS_VSYSCALL_BIT & 1)

    # -- contents ------------------------------------------------------------------------------
    def first_bytes(self, task: int, start: int, size: int = 64) -> bytes:
        """The first ``size`` bytes of a mapping of the process at ``task``; KvmError naming
        the page when they are not all in the dump (a swapped-out page is read from the swap
        image given with -W)."""
        k = self.k
        mm = _U64(k.read(task + self.mm_off, 8))[0]
        pgd = self.mm.read(k.read, mm)[1]
        layer = k.user_layer(pgd)
        data, missing, why = _read_user(k, layer, start, size)
        if missing:
            raise FormatError(f"{start:#x}+{size}: {why[0] if why else 'unreadable'}")
        return data


def _read_cstring(k: LinuxKernel, address: int, limit: int) -> bytes:
    """A NUL-terminated string of at most ``limit`` bytes, read no further than it runs
    (a string at the end of a page is read without the page after it)."""
    out = b""
    pos = address
    while len(out) < limit:
        chunk = min(limit - len(out), 4096 - pos % 4096)
        data = k.read(pos, chunk)
        nul = data.find(b"\0")
        if nul >= 0:
            return out + data[:nul]
        out += data
        pos += chunk
    return cstring(out)


def maps(k: LinuxKernel) -> Maps:
    """The kernel's mapping reader (one per LinuxKernel)."""
    found: Any = getattr(k, "_maps", None)
    if found is None:
        found = Maps(k)
        k._maps = found
    return found

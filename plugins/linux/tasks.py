"""Linux processes from kernel memory: the task list, credentials, argv and environment.

Helpers are named after the kernel concept they walk (``for_each_task``, ``task_argv``), take
a Session and typed :class:`~kvmfx.objects.Object` views, and are bounded: a cyclic list, a
pointer into unmapped memory or an absurd length stops the walk and is reported, never loops.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterator
from typing import Any

from kvmfx.errors import (
    KvmError,
    MissingPageError,
    ProcessError,
    SwappedOutError,
    SymbolError,
    TranslationError,
)
from kvmfx.hookspecs import hookimpl
from kvmfx.layers import PAGE_SIZE
from kvmfx.objects import Fields, Object, cstring
from kvmfx.process import ArgVector, Credentials, OSProfile, Process, split_nul_block
from kvmfx.session import Session
from kvmfx_plugins.linux.pageflags import excluded_summary, install_zero_pages

#: Walks stop after this many list entries (a cyclic or corrupt list cannot loop forever).
MAX_TASKS = 1_000_000
#: argv/environ longer than this are cut and flagged (Linux itself caps them near 2 MiB+).
MAX_ARG_BYTES = 8 << 20
PF_KTHREAD = 0x00200000
PF_WQ_WORKER = 0x00000020
_STATE_LETTERS = "RSDTtXZPI"
TASK_REPORT = 0x7F
TASK_IDLE = 0x402
TASK_RTLOCK_WAIT = 0x1000
NSEC = 1_000_000_000


def task_state(task: Object) -> str:
    """The state letter /proc/PID/stat shows (fs/proc/array.c task_state_index)."""
    raw = task.member("__state") if task.has("__state") else task.member("state")
    return state_letter(raw, task.exit_state)


def state_letter(raw: int, exit_state: int) -> str:
    """task_state's letter from the raw ``__state`` and ``exit_state`` values."""
    raw &= 0xFFFFFFFF
    exit_state &= 0xFFFFFFFF
    state = (raw | exit_state) & TASK_REPORT
    if raw == TASK_IDLE:
        state = TASK_REPORT + 1
    elif raw == TASK_RTLOCK_WAIT:
        state = 2
    return _STATE_LETTERS[min(state.bit_length(), len(_STATE_LETTERS) - 1)]


#: Where the code of a function reaches a kernel variable, for symbol tables that name no
#: data: (function, "addr" or "load", which such reference). get_avenrun() loads avenrun[0]
#: first; getboottime64() first computes &tk_core (its timekeeper's seqcount); free_task()
#: first loads task_struct_cachep (to free the task_struct into it).
VARIABLE_USES = {
    "avenrun": ("get_avenrun", "load", 0),
    "tk_core": ("getboottime64", "addr", 0),
    "task_struct_cachep": ("free_task", "load", 0),
    # si_meminfo() first loads it (val->totalram = totalram_pages()): tmpfs's size=
    "_totalram_pages": ("si_meminfo", "load", 0),
}


class LinuxKernel:
    """One dump's kernel: symbols, types and the readers the helpers share."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.types = session.types
        self.symbols = session.symbols
        self.read: Callable[[int, int], bytes] = session.read
        self.task_size = self.types.struct_size("task_struct")
        self.tasks_off = self.types.offsetof("task_struct", "tasks")
        self.thread_node_off = (self.types.offsetof("task_struct", "thread_node")
                                if self.types.layout("task_struct").get("thread_node")
                                else None)
        pid_type = self.types.get(self.types.find("pid_type", kinds=("enum",))).enumerators
        self.pidtype_pgid = pid_type.get("PIDTYPE_PGID", 2)
        self.pidtype_sid = pid_type.get("PIDTYPE_SID", 3)
        self.upid_size = self.types.struct_size("upid")
        self._boot_wall: float | None | bool = False
        install_zero_pages(session)
        #: this listing's reader (:meth:`begin_pass`): kernel pages read once, on a dump
        self.pages: KernelPages | None = None
        self._fast: FastTasks | None | bool = False
        #: per listing, on a dump: task address -> (mm, pgd, arg/env start and end), and
        #: the tgid of each task and the number of each struct pid decoded so far
        self.mm_info: dict[int, tuple[int, int, int, int, int, int]] = {}
        self.tgids: dict[int, int] = {}
        self.pid_nrs: dict[int, int | None] = {}
        self._user_layers: dict[int, Any] = {}
        #: the last argv read on a dump: (its address space, start, bytes), which run on
        #: through the environment (get_mm_cmdline reads to env_end)
        self.last_user: tuple[Any, int, bytes] | None = None

    def begin_pass(self) -> None:
        """Start a listing: on a dump (memory that does not change) kernel pages are read
        once for the listing and what it decodes is kept for argv/envv; live memory (a
        memory device, /proc/kcore) is read afresh each time, as before."""
        self.mm_info, self.tgids, self.pid_nrs, self._user_layers = {}, {}, {}, {}
        self.last_user = None
        physical = self.session.physical
        live = physical.format_name == "devmem" or physical.details.get("producer") == "kcore"
        self.pages = None if live else KernelPages(self.session.kernel)
        self.read = self.pages.read if self.pages is not None else self.session.read

    def fast(self) -> FastTasks | None:
        """The members the listing reads, laid out once (None: this kernel's structures
        are not all covered; each task is then read member by member)."""
        if self._fast is False:
            try:
                self._fast = FastTasks(self)
            except KvmError:
                self._fast = None
        return self._fast  # type: ignore[return-value]

    def user_layer(self, pgd: int) -> Any:
        """A process's address space by its mm->pgd, kept for the listing on a dump (argv
        and envv of one process share its translations)."""
        layer = self._user_layers.get(pgd) if self.pages is not None else None
        if layer is None:
            pgd_paddr, _ = self.session.kernel.translate(pgd)
            layer = self.session.arch.process_space(self.session.kernel, pgd_paddr)
            if self.pages is not None:
                if len(self._user_layers) >= USER_LAYERS:
                    self._user_layers.clear()
                self._user_layers[pgd] = layer
        return layer

    def variable(self, name: str, required: bool = True) -> int | None:
        """The address of kernel variable ``name``: its symbol, else, for kernels whose
        symbols name no data, where the code of a function that uses it reaches it
        (:data:`VARIABLE_USES`); None (or SymbolError if ``required``) when neither does."""
        addr = self.symbols.lookup(name)
        if addr is None and name in VARIABLE_USES:
            function, kind, index = VARIABLE_USES[name]
            start = self.symbols.lookup(function)
            if start is not None:
                try:
                    refs = [a for k, a in self.session.arch.code_refs(
                        self.read(start, 512), start) if k == kind]
                except KvmError:
                    refs = []
                if len(refs) > index:
                    addr = refs[index]
                    # found through the code: lower case
                    self.session.found_symbol(name, addr, "d")
        if addr is None and required:
            raise SymbolError(f"kernel variable {name!r}: not in {self.symbols.source}, and "
                              "no code that uses it was found")
        return addr

    def task(self, address: int) -> Object:
        return Object(self.types, "task_struct", address, self.read)

    def task_or_warn(self, address: int) -> Object | None:
        """The task_struct at ``address``; None, with a session warning, if unreadable."""
        try:
            return self.task(address)
        except KvmError as exc:
            self.session.warnings.append(f"task_struct at {address:#x} is unreadable: {exc}")
            return None

    def obj(self, type_name: str, address: int) -> Object | None:
        if not address:
            return None
        return Object(self.types, type_name, address, self.read)

    def list_entries(self, head: int, member_off: int, limit: int = MAX_TASKS,
                     what: str = "list", broken: list[int] | None = None,
                     before: Callable[[int], None] | None = None) -> Iterator[int]:
        """Addresses of the structures on a list_head ring, excluding the head.

        A ring that loops back on itself (anywhere but its head), runs past ``limit`` or
        leads into unreadable memory ends the walk with a session warning. ``before`` is
        called with each structure's address before its link is read (a prefetch).
        """
        seen: set[int] = set()
        try:
            node = int.from_bytes(self.read(head, 8), "little")
        except KvmError as exc:
            self.session.warnings.append(f"{what} at {head:#x} is unreadable: {exc}")
            return
        while node != head:
            if node in seen:
                self.session.warnings.append(f"{what} at {head:#x} loops at {node:#x} after "
                                             f"{len(seen)} entries: the rest is not listed")
                return
            if len(seen) >= limit:
                self.session.warnings.append(f"{what} at {head:#x} is longer than {limit} "
                                             "entries: the rest is not listed")
                return
            seen.add(node)
            if before is not None:
                before(node - member_off)
            try:
                nxt = int.from_bytes(self.read(node, 8), "little")
            except KvmError as exc:
                if broken is not None:
                    broken.append(node)
                back = self._walk_back(head, seen, limit)
                self.session.warnings.append(
                    f"{what} at {head:#x} is broken at {node:#x} after {len(seen) - 1} "
                    f"entries: {exc}; {len(back)} more reached walking back from the head")
                yield from (n - member_off for n in reversed(back))
                return
            yield node - member_off
            node = nxt

    def _walk_back(self, head: int, seen: set[int], limit: int) -> list[int]:
        """Nodes of a ring broken going forward, reached from its head through ``prev``
        (the ring is doubly linked), up to a node already seen or unreadable."""
        out: list[int] = []
        try:
            node = int.from_bytes(self.read(head + 8, 8), "little")
            while node != head and node not in seen and len(seen) + len(out) < limit:
                prev = int.from_bytes(self.read(node + 8, 8), "little")
                seen.add(node)
                out.append(node)
                node = prev
        except KvmError:
            pass  # the other end of the break: what was reached is kept
        return out

    def pid_nr(self, pid_ptr: int, level: int = 0) -> int | None:
        """The number of a struct pid in the namespace at ``level`` (0: the global one);
        ``numbers`` is a flexible array, read past the struct."""
        if not pid_ptr:
            return None
        at = pid_ptr + self.types.offsetof("pid", "numbers") + level * self.upid_size
        upid = self.obj("upid", at)
        return int(upid.nr) if upid is not None else None

    def timekeeper(self) -> int | None:
        """Where the kernel's timekeeper is: in ``tk_core`` after its seqcount (an unnamed
        struct, so the offset is the seqcount's size rounded to 8), or, since Linux 6.17,
        in ``timekeeper_data[TIMEKEEPER_CORE]`` (index 0), a ``struct tk_data``."""
        addr = self.variable("tk_core", required=False)
        if addr is not None:
            seq = self.types.struct_size("seqcount_raw_spinlock")
            return addr + ((seq + 7) // 8) * 8
        data = self.symbols.lookup("timekeeper_data")
        if data is not None and self.types.has("tk_data"):
            return data + self.types.offsetof("tk_data", "timekeeper")
        return None

    def boot_wall_time(self) -> float | None:
        """Wall-clock boot time (what /proc/stat calls btime), from the timekeeper."""
        if self._boot_wall is False:
            self._boot_wall = None
            try:
                tk_at = self.timekeeper()
            except KvmError:
                tk_at = None
            if tk_at is not None:
                try:
                    tk = self.obj("timekeeper", tk_at)
                    if tk is not None:
                        offs_real = tk.offs_real
                        offs_boot = tk.offs_boot
                        wall = (offs_real - offs_boot) / NSEC
                        if 946684800 < wall < 4102444800:  # 2000..2100: a sane clock
                            self._boot_wall = wall
                except KvmError:
                    pass
        return self._boot_wall if self._boot_wall is not False else None


#: Kernel pages a listing keeps (16 MiB), and the user address spaces
KERNEL_PAGES = 4096
USER_LAYERS = 256


class KernelPages:
    """Kernel virtual pages read once for one listing of a dump: a structure read is a
    slice of a page already read. Only whole pages read without error are kept; a read that
    touches any other page is the layer's own read (same bytes, same error)."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.pages: dict[int, bytes] = {}

    def _page(self, page: int) -> bytes | None:
        data = self.pages.get(page)
        if data is None:
            try:
                data = self.layer.read(page, PAGE_SIZE)
            except KvmError:
                return None
            if len(self.pages) >= KERNEL_PAGES:
                self.pages.clear()  # (a dict emptied from its front grows slow to iterate)
            self.pages[page] = data
        return data

    def prefetch(self, vaddr: int, size: int) -> None:
        """Read the pages of a range not read yet, in one read of the layer when they
        follow each other (a structure about to be read); nothing is kept on an error."""
        first = vaddr & ~(PAGE_SIZE - 1)
        pages = self.pages
        todo = [p for p in range(first, vaddr + size, PAGE_SIZE) if p not in pages]
        if len(todo) < 2 or todo[-1] - todo[0] != (len(todo) - 1) * PAGE_SIZE:
            return  # one page (read when asked for) or not one run
        try:
            data = self.layer.read(todo[0], len(todo) * PAGE_SIZE)
        except KvmError:
            return
        if len(pages) + len(todo) > KERNEL_PAGES:
            pages.clear()
        for i, p in enumerate(todo):
            pages[p] = data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]

    def read(self, vaddr: int, size: int) -> bytes:
        page = vaddr & ~(PAGE_SIZE - 1)
        end = vaddr + size
        if size > 0 and end <= page + PAGE_SIZE:
            data = self.pages.get(page) or self._page(page)
            if data is not None:
                return data[vaddr - page:end - page]
        elif size > 0:
            parts = []
            for p in range(page, end, PAGE_SIZE):
                data = self.pages.get(p) or self._page(p)
                if data is None:
                    break
                parts.append(data)
            else:
                return b"".join(parts)[vaddr - page:end - page]
        return self.layer.read(vaddr, size)


_I32 = struct.Struct("<i").unpack_from
_U64 = struct.Struct("<Q").unpack_from


class FastTasks:
    """What task_to_process reads of a task and the structures it points to, as
    :class:`~kvmfx.objects.Fields`: each structure is one read, decoded in one call."""

    def __init__(self, k: LinuxKernel) -> None:
        types = k.types
        layout = types.layout("task_struct")
        names = ["tgid", "__state" if "__state" in layout else "state", "exit_state", "flags",
                 "real_cred", "signal", "real_parent", "comm",
                 "start_boottime" if "start_boottime" in layout else "real_start_time", "mm"]
        self.has_thread_pid = "thread_pid" in layout
        if self.has_thread_pid:
            names.append("thread_pid")
        self.task = Fields(types, "task_struct", names)
        self.tgid_off = types.offsetof("task_struct", "tgid")
        self.mm_off = types.offsetof("task_struct", "mm")
        self.cred = Fields(types, "cred", [f"{n}.val" for n in ("uid", "euid", "suid", "gid",
                                                                 "egid", "sgid")])
        self.signal = Fields(types, "signal_struct", [
            f"pids[{k.pidtype_pgid}]", f"pids[{k.pidtype_sid}]", "nr_threads", "tty"])
        self.pid_level = Fields(types, "pid", ["level", "numbers[0].nr"])
        self.nr_off = types.offsetof("pid", "numbers") + types.offsetof("upid", "nr")
        self.upid_size = k.upid_size
        self.mm = Fields(types, "mm_struct", ["pgd", "arg_start", "arg_end", "env_start",
                                              "env_end", *_rss_paths(k)])

    def pid_nr(self, k: LinuxKernel, pid_ptr: int) -> int | None:
        """LinuxKernel.pid_nr at level 0, each struct pid read once per listing."""
        if not pid_ptr:
            return None
        nr = k.pid_nrs.get(pid_ptr)
        if nr is None:
            nr = _I32(k.read(pid_ptr + self.nr_off, 4))[0]
            k.pid_nrs[pid_ptr] = nr
        return nr

    def process(self, k: LinuxKernel, address: int) -> Process | None:
        """task_to_process of the task at ``address`` when every structure it reads is
        wholly readable; None otherwise (the member-by-member path then says what is
        missing, field by field)."""
        read = k.read
        try:
            vals = self.task.read(read, address)
            pid, raw_state, exit_state, flags, real_cred, signal, parent, comm, start, mm = \
                vals[:10]
            if parent:
                ppid = k.tgids.get(parent)
                if ppid is None:
                    ppid = _I32(read(parent + self.tgid_off, 4))[0]
            else:
                ppid = 0
            if flags & PF_KTHREAD:
                name = task_comm(k, k.task(address))
            else:
                name = cstring(comm).decode("utf-8", "backslashreplace")
            if real_cred:
                uid, euid, suid, gid, egid, sgid = self.cred.read(read, real_cred)
            else:
                uid = euid = suid = gid = egid = sgid = None
            if signal:
                pgid_ptr, sid_ptr, nthreads, tty_ptr = self.signal.read(read, signal)
                pgid, sid = self.pid_nr(k, pgid_ptr), self.pid_nr(k, sid_ptr)
                tty = _tty_nr(k, tty_ptr) if tty_ptr else 0
            else:
                pgid = sid = nthreads = tty = None
            nspid = None
            if self.has_thread_pid and vals[10]:
                thread_pid = vals[10]
                level, nspid = self.pid_level.read(read, thread_pid)
                if not 0 <= level < 32:
                    nspid = None
                elif level:  # the number in the task's own namespace, further on
                    nspid = _I32(read(thread_pid + self.nr_off + level * self.upid_size,
                                      4))[0]
            rss = 0
            if mm:
                mvals = self.mm.read(read, mm)
                if k.pages is not None:
                    k.mm_info[address] = (mm, *mvals[:5])
                for i, v in enumerate(mvals[5:]):
                    if i != MM_SWAPENTS and v > 0:
                        rss += v
            elif k.pages is not None:
                k.mm_info[address] = (0, 0, 0, 0, 0, 0)
        except KvmError:
            return None
        if k.pages is not None:
            k.tgids[address] = pid
        start_boot = start / NSEC
        boot = k.boot_wall_time()
        flags &= 0xFFFFFFFF
        return Process(
            pid=pid, tgid=pid, ppid=ppid, comm=name, state=state_letter(raw_state, exit_state),
            pgid=pgid, sid=sid, uid=uid, euid=euid, suid=suid, gid=gid, egid=egid, sgid=sgid,
            flags=flags, nthreads=nthreads, tty=tty, rss=rss, start_boot=start_boot,
            start_time=(boot + start_boot) if boot is not None else None,
            kernel_thread=bool(flags & PF_KTHREAD), nspid=nspid, source="task_list",
            handle=address)


def _rss_paths(k: LinuxKernel) -> list[str]:
    """The counters _rss reads, as member paths of mm_struct: ``rss_stat[i].count``
    (percpu_counter, 6.2+) or ``rss_stat.count[i].counter`` (atomic_long_t, before)."""
    types = k.types
    tid = types.resolve(types.member("mm_struct", "rss_stat")[1])
    t = types.get(tid)
    if t.kind == "array":
        prefix, n, elem = "rss_stat", t.nelems, types.resolve(t.target)
    else:
        inner = types.resolve(types.layout_of(tid)["count"][1])
        it = types.get(inner)
        prefix, n, elem = "rss_stat.count", it.nelems, types.resolve(it.target)
    member = "count" if "count" in types.layout_of(elem) else "counter"
    return [f"{prefix}[{i}].{member}" for i in range(min(n, 4096))]


#: The comm of CPU 0's idle task (INIT_TASK_COMM, renamed "swapper/0" at boot on SMP).
_INIT_COMMS = (b"swapper/0\0", b"swapper\0")
#: Either of them, in one search.
_INIT_COMM = re.compile(b"|".join(re.escape(c) for c in _INIT_COMMS))
#: How far past the kernel text init_task is searched for (its .data).
INIT_TASK_SPAN = 96 << 20
#: A task_struct is some KiB (with every option, under 16).
MAX_TASK_STRUCT = 1 << 20


def find_init_task(session: Session) -> int | None:
    """init_task found by its shape in the kernel image, for kernels whose symbols do not
    name it (kallsyms without CONFIG_KALLSYMS_ALL lists code only): a task_struct in the
    image's data with comm "swapper/0", pid and tgid 0, itself as its real parent, and a
    ``tasks`` list whose neighbours point back at it. The image is searched a window at a
    time (never held whole); the first comm of ``_INIT_COMMS`` found wins over the next."""
    types, image = session.types, session.image
    offs = {m: types.offsetof("task_struct", m)
            for m in ("comm", "pid", "tgid", "real_parent", "tasks")}
    comm = offs["comm"]
    # the bytes of a candidate that are read: from its start to its comm's or its
    # members' end, whichever is furthest
    reach = max(max(len(n) for n in _INIT_COMMS) + comm, offs["pid"] + 4, offs["tgid"] + 4,
                offs["real_parent"] + 8, offs["tasks"] + 16)
    if reach > MAX_TASK_STRUCT:
        return None  # types that say so describe no task_struct
    start = image.text_start(session.arch.default_text(image.boot))
    fallback: int | None = None
    for address, data, fresh in image.image_windows(start, INIT_TASK_SPAN, reach):
        for found in _INIT_COMM.finditer(data, max(0, fresh - reach + comm)):
            rank = _INIT_COMMS.index(found.group())
            base = found.start() - comm
            cand = address + base
            # each candidate once: in the first window that holds all of it
            if base >= 0 and base + reach > fresh and base + reach <= len(data) and \
                    (cand - start) % 8 == 0 and (rank == 0 or fallback is None) and \
                    _is_init_task(session, data, base, cand, offs):
                if rank == 0:
                    return cand
                fallback = cand
    return fallback


def _is_init_task(session: Session, data: bytes, base: int, cand: int,
                  offs: dict[str, int]) -> bool:
    """Whether the task_struct at ``data[base:]`` (at address ``cand``) is CPU 0's idle
    task: pid and tgid 0, itself its real parent, its ``tasks`` neighbours pointing back."""
    def u64(at: int) -> int:
        return int.from_bytes(data[at:at + 8], "little")

    if data[base + offs["pid"]:base + offs["pid"] + 4] != bytes(4) or \
            data[base + offs["tgid"]:base + offs["tgid"] + 4] != bytes(4) or \
            u64(base + offs["real_parent"]) != cand:
        return False
    head = cand + offs["tasks"]
    nxt, prev = u64(base + offs["tasks"]), u64(base + offs["tasks"] + 8)
    try:
        return int.from_bytes(session.read(nxt + 8, 8), "little") == head and \
            int.from_bytes(session.read(prev, 8), "little") == head
    except KvmError:
        return False


def for_each_task(k: LinuxKernel) -> Iterator[Object]:
    """init_task and every thread-group leader on its ``tasks`` list.

    Where the list is broken (a task_struct on a page the dump left out), the tasks past
    the break are still reached: walking back from the list's head, then through the links
    of every task reached (list neighbours, children, parents), then through the pid
    numbers: a task any readable link leads to is listed; last, the task cache's slabs
    are scanned for live thread-group leaders that nothing readable links to."""
    for address, task in for_each_task_address(k):
        if task is None:
            task = k.task(address) if address == k.symbols.address_of("init_task") \
                else k.task_or_warn(address)
        if task is not None:
            yield task


def for_each_task_address(k: LinuxKernel) -> Iterator[tuple[int, Object | None]]:
    """for_each_task's tasks by address: (address, None) where the walk read nothing of
    the task_struct but its list links (the task list itself), (address, task) where it
    read the task to reach it (the ways past a broken list)."""
    init = k.symbols.address_of("init_task")
    yield init, None
    seen = {init}
    broken: list[int] = []
    prefetch: Callable[[int], None] | None = None
    fast = k.fast()
    if k.pages is not None and fast is not None:  # the task's members with its link
        pages, start, size = k.pages, fast.task.start, fast.task.size

        def prefetch(task: int) -> None:
            pages.prefetch(task + start, size)

    for addr in k.list_entries(init + k.tasks_off, k.tasks_off, what="task list",
                               broken=broken, before=prefetch):
        seen.add(addr)
        yield addr, None
    if broken:
        for task in _tasks_by_links(k, init, seen):
            yield task.address, task
        before = len(seen)
        for task in _tasks_by_pid(k, seen):
            yield task.address, task
        if len(seen) > before:  # what the pid numbers found may link to more
            for task in _tasks_by_links(k, init, seen):
                yield task.address, task
        for task in _tasks_by_scan(k, seen):
            yield task.address, task


def _tasks_by_scan(k: LinuxKernel, seen: set[int]) -> Iterator[Object]:
    """Live thread-group leaders in the task cache's slabs that no walk reached (their
    list neighbours, parent and pid all on pages the dump lacks)."""
    from kvmfx_plugins.linux.taskscan import scan_tasks  # it builds on this module

    found = 0
    try:
        for t in scan_tasks(k.session):
            if t.vaddr in seen or t.exited or t.pid != t.tgid:
                continue
            seen.add(t.vaddr)
            task = k.task_or_warn(t.vaddr)
            if task is not None:
                found += 1
                yield task
    except KvmError as exc:
        k.session.warnings.append(f"task cache scan not possible: {exc}")
        return
    k.session.warnings.append(f"{found} more task(s) found by scanning the task cache's "
                              "slabs (nothing readable links to them)")


#: xarray internals (include/linux/xarray.h): a node pointer is tagged 2 and above 4096
XA_CHUNK_SLOTS = 64
MAX_XA_NODES = 1 << 16


def _tasks_by_pid(k: LinuxKernel, seen: set[int]) -> Iterator[Object]:
    """Thread-group leaders not in ``seen``, found through the pid numbers the kernel has
    allocated: init_pid_ns.idr (an xarray of struct pid), each pid's PIDTYPE_TGID task."""
    types = k.types
    ns = k.symbols.lookup("init_pid_ns")
    if ns is None:
        return
    try:
        head = ns + types.offsetof("pid_namespace", "idr") + \
            types.offsetof("idr", "idr_rt") + types.offsetof("xarray", "xa_head")
        slots_off = types.offsetof("xa_node", "slots")
        tgid_type = types.get(types.find("pid_type", kinds=("enum",))).enumerators[
            "PIDTYPE_TGID"]
        tasks_off = types.offsetof("pid", "tasks") + tgid_type * types.pointer_size
        links_off = types.offsetof("task_struct", "pid_links") + \
            tgid_type * types.struct_size("hlist_node")
        stack = [int.from_bytes(k.read(head, 8), "little")]
    except KvmError as exc:
        k.session.warnings.append(f"pid numbers (init_pid_ns) unreadable: {exc}")
        return
    nodes, found = 0, 0
    while stack:
        entry = stack.pop()
        try:
            if entry & 3 == 2 and entry > 4096:  # an xa_node
                nodes += 1
                if nodes > MAX_XA_NODES:
                    k.session.warnings.append("pid numbers: more xarray nodes than "
                                              f"{MAX_XA_NODES}: the rest is not read")
                    break
                raw = k.read(entry - 2 + slots_off, XA_CHUNK_SLOTS * 8)
                stack.extend(v for i in range(0, len(raw), 8)
                             if (v := int.from_bytes(raw[i:i + 8], "little")))
            elif entry and entry & 3 == 0:  # a struct pid
                first = int.from_bytes(k.read(entry + tasks_off, 8), "little")
                task = first - links_off if first else 0
                if task and task not in seen:
                    seen.add(task)
                    found += 1
                    yield k.task(task)
        except KvmError:
            continue  # a node or pid on a page the dump lacks: the rest is still read
    k.session.warnings.append(f"{found} more task(s) reached through the pid numbers")


#: pid_max's upper bound (PID_MAX_LIMIT on 64-bit): a larger tgid is not a task_struct
PID_MAX_LIMIT = 4 * 1024 * 1024


def task_links(k: LinuxKernel, task: Object) -> list[int]:
    """The thread-group leaders ``task`` points to: its neighbours on the task list and on
    its parent's children list, its first and last child, its real parent. Links this task's
    readable part does not hold are left out; list heads are not tasks and are left out."""
    types = k.types
    tasks_off, sibling_off = k.tasks_off, types.offsetof("task_struct", "sibling")
    children_off = types.offsetof("task_struct", "children")
    out = []
    reads = (("tasks", tasks_off, None), ("sibling", sibling_off, "parent"),
             ("children", sibling_off, "self"))
    for member, off, head in reads:
        try:
            node = task.member(member)
            ptrs = (node.next, node.prev)
            parent = task.real_parent if head == "parent" else 0
        except KvmError:
            continue
        for ptr in ptrs:
            if head == "self" and ptr == task.address + children_off:
                continue  # no children: the list head points to itself
            if head == "parent" and ptr == parent + children_off:
                continue  # the parent's children list head
            out.append(ptr - off)
    try:
        out.append(task.real_parent)
    except KvmError:
        pass
    return [a for a in out if a]


def _tasks_by_links(k: LinuxKernel, init: int, seen: set[int]) -> Iterator[Object]:
    """Thread-group leaders not in ``seen``, reached from the tasks already found through
    every link a task holds (task_links), breadth first, until nothing new is reached."""
    queue, found = [init, *seen - {init}], 0
    visited: set[int] = set()
    while queue and len(visited) < MAX_TASKS:
        addr = queue.pop(0)
        if addr in visited:
            continue
        visited.add(addr)
        try:
            task = k.task(addr)
        except KvmError:
            continue
        for target in task_links(k, task):
            if target in seen:
                continue
            seen.add(target)
            try:
                candidate = k.task(target)
                if not 0 < candidate.tgid <= PID_MAX_LIMIT:
                    continue
            except KvmError:
                continue
            queue.append(target)
            found += 1
            yield candidate
    k.session.warnings.append(f"{found} more task(s) reached through the links of the "
                              "tasks found (list neighbours, children, parents)")


def task_threads(k: LinuxKernel, task: Object) -> Iterator[Object]:
    """Every thread of ``task``'s thread group (signal->thread_head / thread_node)."""
    if k.thread_node_off is None:
        yield task
        return
    signal = task.signal
    if not signal:
        yield task
        return
    head = signal + k.types.offsetof("signal_struct", "thread_head")
    for addr in k.list_entries(head, k.thread_node_off, limit=1 << 20, what="thread list"):
        yield k.task(addr)


def task_comm(k: LinuxKernel, task: Object) -> str:
    """The name /proc shows (fs/proc/array.c proc_task_name): comm; a kernel thread's
    full name when comm had to truncate it; for a workqueue worker, comm and its current
    work's description (wq_worker_comm: ``-desc``, ``+desc`` while busy)."""
    comm = cstring(task.comm).decode("utf-8", "backslashreplace")
    flags = task.flags
    if not flags & PF_KTHREAD:
        return comm
    try:
        # to_kthread(): task->worker_private since 5.17, task->set_child_tid before
        kthread = k.obj("kthread", task.worker_private if task.has("worker_private")
                        else task.set_child_tid)
        if kthread is None:
            return comm
        if not flags & PF_WQ_WORKER:
            # kthreads whose name does not fit in comm keep it whole (kthread.full_name)
            if kthread.has("full_name") and kthread.full_name:
                full = cstring(k.read(kthread.full_name, 64)).decode("utf-8",
                                                                     "backslashreplace")
                return full or comm
            return comm
        worker = k.obj("worker", kthread.data)
        if worker is None or not worker.pool:
            return comm
        desc = cstring(worker.desc).decode("utf-8", "backslashreplace")
        if desc:
            comm += ("+" if worker.current_work else "-") + desc
    except KvmError:
        pass  # the plain comm is still right
    return comm[:63]


class FieldReader:
    """Reads a record's fields one by one: a field whose read fails is None, and why is
    kept in ``missing`` (field name -> reason); the record itself is never lost."""

    def __init__(self) -> None:
        self.missing: dict[str, str] = {}

    def get(self, name: str, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except KvmError as exc:
            self.missing[name] = str(exc)
            return None


def task_start_boot(task: Object) -> float:
    """Start time in seconds after boot (start_boottime since 5.5, real_start_time before)."""
    ns = task.start_boottime if task.has("start_boottime") else task.real_start_time
    return ns / NSEC


def task_to_process(k: LinuxKernel, task: Object) -> Process:
    """One task as a Process. Only the task's own tgid is required; every other field that
    cannot be read (a member this kernel lacks, an object on a page the dump left out) is
    None with the reason in ``missing``."""
    pid = task.tgid
    f = FieldReader()
    cred = f.get("cred", lambda: k.obj("cred", task.real_cred))
    signal = f.get("signal", lambda: k.obj("signal_struct", task.signal))
    flags = f.get("flags", lambda: task.flags & 0xFFFFFFFF)

    def from_cred(name: str) -> int | None:
        if cred is None:
            if "cred" in f.missing:
                f.missing[name] = f.missing["cred"]
            return None
        return f.get(name, lambda: cred.member(name).val)

    def from_signal(name: str, read: Callable[[Object], Any]) -> Any:
        if signal is None:
            if "signal" in f.missing:
                f.missing[name] = f.missing["signal"]
            return None
        return f.get(name, lambda: read(signal))

    pgid = from_signal("pgid", lambda sig: k.pid_nr(sig.pids[k.pidtype_pgid]))
    sid = from_signal("sid", lambda sig: k.pid_nr(sig.pids[k.pidtype_sid]))
    nthreads = from_signal("nthreads", lambda sig: sig.nr_threads)
    tty = from_signal("tty", lambda sig: _tty_nr(k, sig.tty))
    start_boot = f.get("start_boot", lambda: task_start_boot(task))
    boot = k.boot_wall_time()
    process = Process(
        pid=pid, tgid=pid,
        ppid=f.get("ppid", lambda: _parent_tgid(k, task)),
        comm=f.get("comm", lambda: task_comm(k, task)),
        state=f.get("state", lambda: task_state(task)) or "?",
        pgid=pgid, sid=sid,
        uid=from_cred("uid"), euid=from_cred("euid"), suid=from_cred("suid"),
        gid=from_cred("gid"), egid=from_cred("egid"), sgid=from_cred("sgid"),
        flags=flags, nthreads=nthreads, tty=tty, rss=f.get("rss", lambda: _rss(k, task)),
        start_boot=start_boot,
        start_time=(boot + start_boot) if boot is not None and start_boot is not None
        else None,
        kernel_thread=bool((flags or 0) & PF_KTHREAD),
        nspid=f.get("nspid", lambda: _nspid(k, task)), source="task_list",
        handle=task.address)
    f.missing.pop("cred", None)
    f.missing.pop("signal", None)
    process.missing = f.missing
    return process


def _parent_tgid(k: LinuxKernel, task: Object) -> int:
    parent = k.obj("task_struct", task.real_parent)
    return parent.tgid if parent is not None else 0


def _nspid(k: LinuxKernel, task: Object) -> int | None:
    """The pid in the task's own (innermost) pid namespace."""
    if not task.has("thread_pid"):
        return None
    leader_pid = k.obj("pid", task.thread_pid)
    if leader_pid is None or not 0 <= leader_pid.level < 32:
        return None
    return k.pid_nr(task.thread_pid, leader_pid.level)


def _tty_nr(k: LinuxKernel, tty_ptr: int) -> int:
    tty = k.obj("tty_struct", tty_ptr)
    if tty is None:
        return 0
    driver = k.obj("tty_driver", tty.driver)
    if driver is None:
        return 0
    major, minor = driver.major, driver.minor_start + tty.index
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


#: Index of MM_SWAPENTS in the mm counters (MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS,
#: MM_SHMEMPAGES since 4.5): swap entries are not resident.
MM_SWAPENTS = 2


def _rss(k: LinuxKernel, task: Object) -> int:
    """Resident pages as /proc/PID/stat counts them (get_mm_rss): the mm's counters.

    Before 6.2 ``mm->rss_stat`` is a struct holding ``atomic_long_t count[]``; since 6.2 it
    is an array of ``struct percpu_counter`` whose ``count`` /proc reads alone
    (percpu_counter_read_positive)."""
    mm = k.obj("mm_struct", task.mm)
    if mm is None:
        return 0
    stat = mm.rss_stat
    counters = stat if isinstance(stat, list) else stat.count
    total = 0
    for i, c in enumerate(counters):
        v = c.count if c.has("count") else c.counter  # percpu_counter / atomic_long_t
        if i != MM_SWAPENTS and v > 0:
            total += v
    return total


def _user_layer(k: LinuxKernel, mm: Object) -> Any:
    pgd_paddr, _ = k.session.kernel.translate(mm.pgd)
    return k.session.arch.process_space(k.session.kernel, pgd_paddr)


def _read_user(k: LinuxKernel, layer: Any, start: int, size: int
               ) -> tuple[bytes, list[int], list[str]]:
    """The readable prefix of a user range, the pages that could not be read, and why.

    Bytes after the first unreadable page are not returned (a hole is never filled with
    invented bytes); the remaining pages are still probed so the caller can say how many
    are missing. A swapped-out page is read from the swap image (-W) when one is given.
    """
    out = bytearray()
    missing: list[int] = []
    why: list[str] = []
    pos, end = start, start + size
    while pos < end:
        stop = min(end, (pos // PAGE_SIZE + 1) * PAGE_SIZE)
        page = pos - pos % PAGE_SIZE
        try:
            data = layer.read(pos, stop - pos)
        except SwappedOutError as exc:
            data = None
            area = k.session.swap_area(exc.swap_type)
            if area is not None:
                try:
                    data = area.read_slot(exc.swap_offset)[pos - page:stop - page]
                except MissingPageError as err:
                    why.append(str(err))
            else:
                why.append(f"swapped out (area {exc.swap_type}, slot {exc.swap_offset}); "
                           "give the swap image with -W" if exc.swap_type == 0 else
                           f"swapped out (area {exc.swap_type}, slot {exc.swap_offset}); "
                           "no such swap area given")
            if data is None:
                missing.append(page)
        except (TranslationError, MissingPageError) as exc:
            data = None
            why.append(str(exc))
            span = getattr(exc, "span", 0)
            if span > PAGE_SIZE:  # a whole unmapped region: every page of it at once
                stop = min(end, (pos // span + 1) * span)
            missing.extend(range(page, stop, PAGE_SIZE))
        if data is not None and not missing:
            out += data
        pos = stop
    return bytes(out), missing, why


def _mm_fast(k: LinuxKernel, task: int) -> tuple[int, int, int, int, int, int] | None:
    """(mm, pgd, arg_start, arg_end, env_start, env_end) of a task, as the listing
    decoded them or read now in one piece; None when any of it is unreadable."""
    info = k.mm_info.get(task)
    if info is not None:
        return info
    fast = k.fast()
    if fast is None:
        return None
    try:
        mm = _U64(k.read(task + fast.mm_off, 8))[0]
        if not mm:
            return (0, 0, 0, 0, 0, 0)
        pgd, arg_start, arg_end, env_start, env_end = fast.mm.read(k.read, mm)[:5]
    except KvmError:
        return None
    return mm, pgd, arg_start, arg_end, env_start, env_end


def _vector(k: LinuxKernel, proc: Process, which: str) -> ArgVector:
    layer = None
    info = _mm_fast(k, proc.handle)
    if info is not None:
        mm_ptr, pgd, arg_start, arg_end, env_start, env_end = info
        if not mm_ptr:
            return ArgVector([])  # kernel threads have no argv, as in /proc
        try:
            layer = k.user_layer(pgd)
        except KvmError:
            layer = None  # the member-by-member path says why
    if layer is None:
        task = k.task(proc.handle)
        mm = k.obj("mm_struct", task.mm)
        if mm is None:
            return ArgVector([])  # kernel threads have no argv, as in /proc
        arg_start, arg_end = mm.arg_start, mm.arg_end
        env_start, env_end = mm.env_start, mm.env_end
        try:
            layer = _user_layer(k, mm)
        except KvmError as exc:
            return ArgVector([], partial=True, missing=f"page tables unreadable: {exc}")
    if which == "argv":
        if arg_start >= arg_end:
            return ArgVector([])
        # fs/proc/base.c get_mm_cmdline: setproctitle() may run past arg_end into environ.
        if env_start != arg_end or env_end < env_start:
            env_start = env_end = arg_end
        length = env_end - arg_start
        if length > MAX_ARG_BYTES:
            return ArgVector([], partial=True,
                             missing=f"argv area of {length} bytes exceeds {MAX_ARG_BYTES}")
        data, missing, why = _read_user(k, layer, arg_start, length)
        if k.pages is not None and not missing:  # the environment is read with it
            k.last_user = (layer, arg_start, data)
        args_len = arg_end - arg_start
        if len(data) >= args_len:
            if data[args_len - 1:args_len] == b"\0":
                data, missing = data[:args_len], []
            else:  # a rewritten title: up to its first NUL, which may lie past arg_end
                nul = data.find(b"\0")
                if nul >= 0:
                    data, missing = data[:nul + 1], []
    else:
        if env_start >= env_end:
            return ArgVector([])
        if env_end - env_start > MAX_ARG_BYTES:
            return ArgVector([], partial=True, missing=f"environment area of "
                             f"{env_end - env_start} bytes exceeds {MAX_ARG_BYTES}")
        last = k.last_user
        if last is not None and last[0] is layer and last[1] <= env_start and \
                env_end <= last[1] + len(last[2]):  # read whole with argv, a moment ago
            data, missing, why = last[2][env_start - last[1]:env_end - last[1]], [], []
        else:
            data, missing, why = _read_user(k, layer, env_start, env_end - env_start)
    if missing:
        pages = ", ".join(f"{m:#x}" for m in missing[:4])
        # what was read before the first hole; its last string may be cut short
        return ArgVector(split_nul_block(data), partial=True,
                         missing=f"{len(missing)} page(s) unreadable ({pages}): {why[0]}")
    return ArgVector(split_nul_block(data))


class LinuxDumpProfile:
    """Processes of a Linux kernel read from its memory (dumps; /dev/mem, /proc/kcore)."""

    name = "linux"
    description = "Linux from kernel memory: task list, cred, mm (argv/environ)"

    def kernel(self, session: Session) -> LinuxKernel:
        k = session.plugin_data.get("linux-kernel")
        if k is None:
            k = LinuxKernel(session)
            session.plugin_data["linux-kernel"] = k
        return k

    def applies(self, session: Session) -> int:
        if session.live or session.no_files:
            return 0
        try:
            session.types.find("task_struct")
            if session.symbols.lookup("init_task") is None:
                found = find_init_task(session)
                if found is None:
                    return 0
                session.found_symbol("init_task", found, "D")
        except KvmError:
            return 0
        return 80

    def processes(self, session: Session) -> Iterator[Process]:
        k = self.kernel(session)
        k.begin_pass()
        fast = k.fast()
        init = k.symbols.address_of("init_task")
        for address, task in for_each_task_address(k):
            if fast is not None:
                proc = fast.process(k, address)
                if proc is not None:
                    yield proc
                    continue
            # member by member: what cannot be read is None, with why (or the task is
            # skipped, with a warning, when not even its tgid can be read)
            if task is None:
                task = k.task(address) if address == init else k.task_or_warn(address)
                if task is None:
                    continue
            try:
                yield task_to_process(k, task)
            except KvmError as exc:
                session.warnings.append(f"process at {task.address:#x} skipped: {exc}")

    def threads(self, session: Session, proc: Process) -> Iterator[Process]:
        k = self.kernel(session)
        for t in task_threads(k, k.task(proc.handle)):
            p = task_to_process(k, t)
            p.pid = t.pid
            yield p

    def argv(self, session: Session, proc: Process) -> ArgVector:
        return self._vector(session, proc, "argv")

    def envv(self, session: Session, proc: Process) -> ArgVector:
        return self._vector(session, proc, "envv")

    def credentials(self, session: Session, proc: Process) -> Credentials:
        """The credentials /proc/PID/status shows: ids, groups, capability sets,
        no_new_privs, seccomp (plugins/linux/creds.py)."""
        from kvmfx_plugins.linux.creds import task_credentials  # it builds on this module

        return task_credentials(session, self.kernel(session), proc.handle)

    def _vector(self, session: Session, proc: Process, which: str) -> ArgVector:
        """argv/envv; a task or mm that cannot be read leaves nothing read, with why."""
        try:
            return _vector(self.kernel(session), proc, which)
        except KvmError as exc:
            return ArgVector([], partial=True, missing=str(exc))

    def loadavg(self, session: Session) -> tuple[float, float, float]:
        k = self.kernel(session)
        addr = k.variable("avenrun")
        assert addr is not None  # required: SymbolError otherwise
        raw = session.read(addr, 24)
        fixed_1 = 1 << 11  # FSHIFT 11
        vals = [int.from_bytes(raw[i:i + 8], "little") for i in (0, 8, 16)]
        # /proc/loadavg prints LOAD_INT.LOAD_FRAC, rounded to two decimals (+FIXED_1/200)
        out = []
        for v in vals:
            v += fixed_1 // 200
            out.append((v >> 11) + ((v & (fixed_1 - 1)) * 100 >> 11) / 100)
        return out[0], out[1], out[2]

    def boot_time(self, session: Session) -> float | None:
        return self.kernel(session).boot_wall_time()

    def describe(self, session: Session) -> dict[str, Any]:
        """For ``kvmfx info``: the pages the dump's filter left out, and how many of them
        kvmfx reads as zeros because they provably held zeros."""
        summary = excluded_summary(session)
        return {"excluded_pages": summary} if summary else {}

    def banner(self, session: Session) -> str:
        """The kernel's linux_banner string."""
        k = self.kernel(session)
        addr = k.symbols.lookup("linux_banner")
        if addr is None:  # kallsyms of code only: the banner as found in memory
            found = session.image.banner()
            if found is None:
                raise ProcessError("no linux_banner: not in the symbols, not found in memory")
            return found
        raw = cstring(session.read(addr, 512))
        return raw.decode("utf-8", "replace").rstrip("\n")

    def uname(self, session: Session) -> dict[str, str]:
        k = self.kernel(session)
        ns = Object(k.types, "uts_namespace", k.symbols.address_of("init_uts_ns"), k.read)
        name = ns.name
        return {f: cstring(name.member(f)).decode("utf-8", "replace")
                for f in ("sysname", "nodename", "release", "version", "machine")}


@hookimpl
def kvmfx_os_profiles() -> list[OSProfile]:
    return [LinuxDumpProfile()]

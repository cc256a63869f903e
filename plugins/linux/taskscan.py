"""Task structures found by scanning physical memory, not by walking the task list.

Linux allocates task_structs from the SLUB cache ``task_struct_cachep``: slabs of
``2^order`` pages, naturally aligned in physical memory, each holding ``objects`` tasks
``size`` bytes apart (``kmem_cache.oo`` / ``.size``). Scanning every such slot of physical
memory and keeping those that look like a task (sane pid, printable comm, kernel pointers
in its lists and credentials) finds processes that are unlinked from the list (hidden) and
tasks that have exited but whose memory was not reused yet.

The ``psscan`` and ``psxview`` commands (plugins/commands/psscan.py) show them.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass

from kvmfx.errors import KvmError, UnsupportedError
from kvmfx.objects import Object, cstring
from kvmfx.session import Session
from kvmfx_plugins.linux.tasks import LinuxKernel, task_state

MAX_PID = 1 << 22
_PRINTABLE = set(string.printable.encode()) - set(b"\t\n\r\x0b\x0c")
#: physical memory is read this much at a time while scanning
CHUNK = 8 << 20


#: exit_state of a task released by its parent (include/linux/sched.h)
EXIT_DEAD = 0x10


@dataclass
class ScannedTask:
    paddr: int
    vaddr: int
    pid: int
    tgid: int
    comm: str
    state: str
    ppid: int | None
    start_boot: float
    exited: bool


def _plausible(task: Object, kernel_start: int) -> bool:
    pid, tgid = task.pid, task.tgid
    if not (0 <= pid < MAX_PID and 0 <= tgid < MAX_PID) or (pid and not tgid):
        return False
    comm = cstring(task.comm)
    if not comm or len(comm) > 15 or any(b not in _PRINTABLE for b in comm):
        return False
    ptrs = (task.tasks.next, task.tasks.prev, task.real_parent, task.real_cred, task.cred)
    return all(p >= kernel_start for p in ptrs)


def scan_tasks(session: Session) -> Iterator[ScannedTask]:
    """Every task_struct-shaped slot of the task cache's slabs in physical memory."""
    k: LinuxKernel = session.profile.kernel(session)
    types, symbols = k.types, k.symbols
    cache_var = k.variable("task_struct_cachep")
    assert cache_var is not None  # required: SymbolError otherwise
    cache_ptr = int.from_bytes(session.read(cache_var, 8),
                               "little")
    cache = Object(types, "kmem_cache", cache_ptr, session.read)
    oo = cache.oo.x if isinstance(cache.oo, Object) else cache.oo
    order, per_slab = oo >> 16, oo & 0xFFFF
    size = cache.size
    slab_bytes = session.image.page_size << order
    if not 0 < size <= slab_bytes or not 0 < per_slab <= slab_bytes // size or order > 10:
        raise UnsupportedError(f"task_struct cache geometry is implausible (order {order}, "
                               f"{per_slab} objects of {size} bytes)", address=cache_ptr)
    def read_pointer(name: str) -> int | None:
        addr = symbols.lookup(name)
        return None if addr is None else int.from_bytes(session.read(addr, 8), "little")

    virt, phys = session.arch.direct_map(session.boot, read_pointer)
    page_offset = virt - phys
    kernel_start = session.arch.kernel_start
    task_size = types.struct_size("task_struct")
    start_off = types.offsetof("task_struct", "start_boottime")
    physical = session.physical
    scanned_to = 0  # slabs are whole: a range that starts or ends inside one still
    for r in physical.ranges:  # holds the tasks on its present pages
        pos = max(r.start - r.start % slab_bytes, scanned_to)
        end = r.end + (-r.end) % slab_bytes
        while pos < end:
            span = min(CHUNK - CHUNK % slab_bytes, end - pos)
            scanned_to = pos + span
            try:
                chunk = physical.read(pos, span + task_size, zero_fill=True)
            except KvmError:
                pos += span
                continue
            for slab in range(0, span, slab_bytes):
                for i in range(per_slab):
                    at = slab + i * size
                    task = Object(types, "task_struct", page_offset + pos + at, buf=chunk,
                                  base=at)
                    if not _plausible(task, kernel_start):
                        continue
                    parent = None
                    try:
                        parent = int(Object(types, "task_struct", task.real_parent,
                                            session.read).tgid)
                    except KvmError:
                        pass
                    start = int.from_bytes(chunk[at + start_off:at + start_off + 8], "little")
                    yield ScannedTask(pos + at, page_offset + pos + at, task.pid, task.tgid,
                                      cstring(task.comm).decode("utf-8", "replace"),
                                      task_state(task), parent, start / 1e9,
                                      # EXIT_DEAD, or off the task list: a zombie
                                      # (EXIT_ZOMBIE) is still a process /proc lists
                                      bool(task.exit_state & EXIT_DEAD) or
                                      task.tasks.next == 0)
            pos += span

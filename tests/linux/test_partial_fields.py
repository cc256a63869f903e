"""One unreadable field never costs a row: a real dump with one page made unreadable.

A kernel page left out of a dump (makedumpfile's filters, a capture that missed it) can hold
part of a task_struct, a cred or an mm. The process must still be listed, with exactly the
fields on that page set to None and the reason in ``missing``; nothing is invented.
"""

from __future__ import annotations

import pytest

import kvmfx
from kvmfx.errors import MissingPageError
from kvmfx.objects import Object, read_with_holes
from tests.factory import get_fixture

PAGE = 4096


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _without_page(session: kvmfx.Session, bad_page: int) -> None:
    """Make kernel virtual page ``bad_page`` unreadable in ``session`` (as if left out)."""
    layer = session.kernel
    real_read = layer.read

    def read(vaddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        if vaddr < bad_page + PAGE and bad_page < vaddr + size:
            raise MissingPageError("page not in the dump (test)", address=bad_page)
        return real_read(vaddr, size, zero_fill=zero_fill)

    layer.read = read  # type: ignore[method-assign]


def _target(fx) -> int:
    return next(int(pid) for pid, t in fx.truth["processes"].items()
                if t["cmdline"][:1] == ["kvmfx-user"])


def test_a_missing_cred_page_leaves_the_credentials_null(fx):
    pid = _target(fx)
    with kvmfx.open(str(fx.path("elf"))) as s:
        before = {p.pid: p for p in s.processes()}
        task = Object(s.types, "task_struct", before[pid].handle, s.read)
        cred_page = task.real_cred & ~(PAGE - 1)
        _without_page(s, cred_page)
        after = {p.pid: p for p in s.processes()}
    assert set(after) == set(before)
    p = after[pid]
    assert (p.uid, p.euid, p.gid, p.egid) == (None, None, None, None)
    assert set(p.missing) >= {"uid", "euid", "suid", "gid", "egid", "sgid"}
    assert "not in the dump" in p.missing["uid"]
    # everything not on that page is still exact
    t = fx.truth["processes"][str(pid)]
    assert (p.ppid, p.comm, p.pgid, p.sid) == (t["ppid"], t["comm"], t["pgid"], t["sid"])
    assert s.warnings == []


#: task_struct member -> the Process field read from it
_MEMBER_FIELD = {"comm": "comm", "real_cred": "uid", "real_parent": "ppid", "signal": "pgid",
                 "start_boottime": "start_boot", "flags": "flags", "thread_pid": "nspid",
                 "mm": "rss"}


def test_a_task_struct_straddling_a_missing_page_is_still_listed(fx):
    with kvmfx.open(str(fx.path("elf"))) as s:
        types = s.types

        def page_of(handle: int, member: str) -> int:
            return (handle + types.offsetof("task_struct", member)) & ~(PAGE - 1)

        # a process whose task_struct has one of those members on another page than tgid
        pid, member, bad = next(
            (p.pid, m, page_of(p.handle, m)) for p in s.processes() if p.pid > 1
            for m in _MEMBER_FIELD if page_of(p.handle, m) != page_of(p.handle, "tgid"))
        _without_page(s, bad)
        procs = {p.pid: p for p in s.processes()}
    p = procs[pid]
    field = _MEMBER_FIELD[member]
    assert getattr(p, field) is None and "not in the dump" in p.missing[field], member
    row = p.as_row()
    assert row[field] is None and row["missing"][field] == p.missing[field]


def test_read_with_holes_never_invents_bytes():
    data = bytes(range(256)) * 48  # 3 pages

    def read(addr: int, size: int) -> bytes:
        if addr < 2 * PAGE and addr + size > PAGE:
            raise MissingPageError("left out", address=PAGE)
        return data[addr:addr + size]

    buf, holes = read_with_holes(read, 100, 3 * PAGE - 200)
    assert holes == ((PAGE - 100, 2 * PAGE - 100, "address 0x1000: left out"),)
    assert buf[:PAGE - 100] == data[100:PAGE] and buf[2 * PAGE - 100:] == data[2 * PAGE:-100]
    with pytest.raises(MissingPageError):
        read_with_holes(read, PAGE + 8, 64)  # nothing readable at all: the error itself

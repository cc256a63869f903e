"""psscan finds tasks in physical memory; psxview shows a process hidden from the task list."""

from __future__ import annotations

import pytest

import kvmfx
from tests.factory import get_fixture
from tests.linux.test_hostile_memory import _copy, _patch


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _rows(path, command):
    with kvmfx.open(str(path)) as s:
        return list(s.registry.command(command).run(s, {}))


def test_psscan_finds_every_process_of_the_guest(fx):
    rows = _rows(fx.path("elf"), "psscan")
    by_pid = {r["pid"]: r for r in rows}
    for pid, t in fx.truth["processes"].items():
        row = by_pid[int(pid)]
        assert row["in_task_list"] and row["tgid"] == int(pid)
        if not t["comm"].startswith("kworker/"):
            assert t["comm"].startswith(row["comm"])


@pytest.mark.parametrize("key", ["mdf-zlib", "lime"])
def test_psscan_agrees_across_formats(fx, key):
    want = {(r["pid"], r["comm"]) for r in _rows(fx.path("elf"), "psscan")}
    assert {(r["pid"], r["comm"]) for r in _rows(fx.path(key), "psscan")} == want


def test_a_process_unlinked_from_the_task_list_is_caught(fx, tmp_path):
    """DKOM: a rootkit unlinks its process from init_task.tasks; the scan still sees it."""
    path = _copy(fx, tmp_path)
    victim_pid = next(int(p) for p, t in fx.truth["processes"].items()
                      if t["cmdline"][:1] == ["/usr/sbin/sshd"])
    with kvmfx.open(str(path)) as s:
        (victim,) = [p for p in s.processes() if p.pid == victim_pid]
        off = s.types.offsetof("task_struct", "tasks")
        node = victim.handle + off
        nxt = int.from_bytes(s.read(node, 8), "little")
        prv = int.from_bytes(s.read(node + 8, 8), "little")
    _patch(path, prv, nxt.to_bytes(8, "little"))        # prev->next = next
    _patch(path, nxt + 8, prv.to_bytes(8, "little"))    # next->prev = prev
    with kvmfx.open(str(path)) as s:
        assert victim_pid not in {p.pid for p in s.processes()}
    hidden = [r for r in _rows(path, "psscan") if r["pid"] == victim_pid]
    assert len(hidden) == 1 and hidden[0]["in_task_list"] is False
    view = [r for r in _rows(path, "psxview") if r["pid"] == victim_pid]
    assert view == [{"pid": victim_pid, "comm": "kvmfx-pause", "task": victim.handle,
                     "task_list": False, "scan": True, "state": "S",
                     "note": "not on the task list: unlinked or exiting"}]

"""Hostile kernel memory: a task list that loops or points nowhere, an absurd argv length.

Each case edits a copy of a real dump (the fixture itself is never touched) and checks that
the walk stops cleanly, reports what it could read and says what it could not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

import kvmfx
from tests.factory import get_fixture

#: every case runs in a child bounded in time and memory (tests/conftest.py)
pytestmark = pytest.mark.hostile


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _copy(fx, tmp_path):
    path = tmp_path / "edited.elf"
    shutil.copyfile(fx.path("elf"), path)
    path.chmod(0o644)
    return path


def _patch(path, vaddr: int, data: bytes) -> None:
    """Overwrite kernel virtual memory ``vaddr`` in an ELF dump file."""
    with kvmfx.open(str(path)) as s:
        paddr, _ = s.kernel.translate(vaddr)
        seg = next(g for g in s.physical.segments if g.paddr <= paddr < g.paddr + g.size)
        offset = seg.offset + (paddr - seg.paddr)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _task(path, pid: int) -> tuple[int, int, int]:
    with kvmfx.open(str(path)) as s:
        (p,) = [p for p in s.processes() if p.pid == pid]
        types = s.types
        order = [q.pid for q in s.processes()]
        return p.handle, types.offsetof("task_struct", "tasks"), order.index(pid)


def test_a_looping_task_list_stops_and_says_so(fx, tmp_path):
    path = _copy(fx, tmp_path)
    pid = sorted(int(p) for p in fx.truth["processes"])[10]
    task, tasks_off, index = _task(path, pid)
    # the task's tasks.next points back at an earlier task: a cycle that misses the head
    with kvmfx.open(str(path)) as s:
        first = s.symbols.address_of("init_task") + tasks_off
        second = int.from_bytes(s.read(first, 8), "little")
    _patch(path, task + tasks_off, second.to_bytes(8, "little"))
    with kvmfx.open(str(path)) as s:
        pids = [p.pid for p in s.processes()]
        assert pids[-1] == pid and len(pids) == index + 1
        assert any("loops" in w for w in s.warnings)
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "pslist", str(path),
                        "--format", "json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 4
    assert "task list" in r.stderr and "loops" in r.stderr and "Traceback" not in r.stderr


def test_a_task_list_into_unmapped_memory_stops(fx, tmp_path):
    path = _copy(fx, tmp_path)
    pid = sorted(int(p) for p in fx.truth["processes"])[20]
    task, tasks_off, index = _task(path, pid)
    poison = 0xDEAD000000000100  # LIST_POISON1, what list_del leaves behind
    _patch(path, task + tasks_off, poison.to_bytes(8, "little"))
    with kvmfx.open(str(path)) as s:
        pids = [p.pid for p in s.processes()]
        # the walk stops at the broken link, then reaches the rest back from the head
        assert len(pids) > index + 1
        assert set(pids) - {0} == {int(p) for p in fx.truth["processes"]}
        assert any("broken at" in w and "0xdead000000000100" in w and "walking back" in w
                   for w in s.warnings), s.warnings


def test_an_absurd_argv_length_is_refused_not_read(fx, tmp_path):
    path = _copy(fx, tmp_path)
    with kvmfx.open(str(path)) as s:
        (p,) = [p for p in s.processes() if p.comm == "kvmfx-pause"][:1]
        mm = int.from_bytes(s.read(p.handle + s.types.offsetof("task_struct", "mm"), 8),
                            "little")
        arg_end_at = mm + s.types.offsetof("mm_struct", "arg_end")
        env_end_at = mm + s.types.offsetof("mm_struct", "env_end")
        arg_start = int.from_bytes(s.read(mm + s.types.offsetof("mm_struct", "arg_start"), 8),
                                   "little")
    _patch(path, arg_end_at, (arg_start + (1 << 40)).to_bytes(8, "little"))
    _patch(path, env_end_at, (arg_start + (1 << 41)).to_bytes(8, "little"))
    with kvmfx.open(str(path)) as s:
        (q,) = [q for q in s.processes() if q.pid == p.pid]
        argv = s.argv(q)
        assert argv.partial and "exceeds" in argv.missing and argv.items == []

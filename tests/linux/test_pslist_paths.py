"""pslist's exe, cwd and root on real dumps equal what the guest's /proc/PID/exe, cwd and
root link to, for every process, on every format of every kernel of the matrix: a binary
deleted after its exec (`` (deleted)``), a chroot (/jail, seen from init's root), kernel
threads (no executable), a zombie (none of the three)."""

from __future__ import annotations

import os

import pytest

import kvmfx
from kvmfx_plugins.commands.ps import PsList
from tests.factory import get_fixture
from tests.linux.test_lsof import FILTERED, KERNELS, dump_path, dumps, left_out

PATHS = ("exe", "cwd", "root")


@pytest.mark.parametrize(("name", "key"), dumps())
def test_exe_cwd_and_root_match_the_guest(name, key):
    fx = get_fixture(name)
    filtered = key in FILTERED
    with kvmfx.open(dump_path(name, key)) as s:
        rows = {r["pid"]: r for r in PsList().run(s, {})}
    checked, problems = 0, []
    for pid, t in fx.truth["processes"].items():
        row = rows.get(int(pid))
        if row is None:
            assert filtered, pid  # its task_struct is on a page the filter left out
            continue
        missing = row["missing"] or {}
        for name_ in PATHS:
            want = t[name_]
            if want is None:  # unreadable in the guest: a kernel thread's exe, a zombie's
                if row[name_] is not None or name_ not in missing:
                    problems.append((pid, name_, row[name_], missing.get(name_)))
            elif name_ in missing:
                if not (filtered and left_out(missing[name_])):
                    problems.append((pid, name_, missing[name_], want))
            elif row[name_] != want:
                problems.append((pid, name_, row[name_], want))
            else:
                checked += 1
    assert problems == []
    assert checked >= len(fx.truth["processes"])


@pytest.mark.parametrize("name", KERNELS)
def test_the_planted_paths(name):
    fx = get_fixture(name)
    roles, procs = fx.truth["roles"], fx.truth["processes"]
    with kvmfx.open(dump_path(name, "elf")) as s:
        rows = {r["pid"]: r for r in PsList().run(s, {})}
    deleted = rows[roles["deleted_exe"]]
    assert deleted["exe"].endswith(" (deleted)")
    assert deleted["exe"] == procs[str(roles["deleted_exe"])]["exe"]
    jail = rows[roles["chroot"]]
    assert (jail["root"], jail["cwd"]) == ("/jail", "/jail")
    assert jail["exe"].startswith("/jail/")
    kthread = rows[2]
    assert kthread["exe"] is None and "kernel thread" in kthread["missing"]["exe"]
    zombies = [r for r in rows.values() if r["state"] == "Z"]
    assert zombies and all(r["exe"] is r["cwd"] is r["root"] is None for r in zombies)


def test_the_live_system_links_as_proc_does():
    with kvmfx.open() as s:
        (row,) = PsList().run(s, {"pid": os.getpid()})
    assert row["exe"] == os.readlink("/proc/self/exe")
    assert (row["cwd"], row["root"]) == (os.getcwd(), os.readlink("/proc/self/root"))

"""lsof on real dumps equals the guest's own /proc/PID/fd and fdinfo, descriptor by
descriptor, for every process but init (whose descriptors change while it takes the ground
truth), on every format of every kernel of the matrix (x86_64 5.10 .. 7.3 and arm64, and
6.1's PREEMPT_RT build and 5-level paging).

The guest plants: a file open for reading at a seeked position, one appended to, a
deleted-but-open file, both ends of a pipe, a file on a tmpfs ("files"); sockets of every
kind; a chrooted process holding a file in its jail ("chroot"; /proc shows it against
the reader's root: /jail/data); a process in its own mount namespace with a file on its own
tmpfs ("mntns").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import kvmfx
from kvmfx_plugins.commands.files import Lsof
from tests.factory import ALL_DUMPS, get_fixture
from tests.factory.scenarios import SCENARIOS

#: the kernels of the matrix: x86_64 5.10, 6.1, 6.12, the newest; arm64 6.1 and 6.12; and
#: 6.1's PREEMPT_RT build (other structure layouts) and 6.1 with 5-level paging
KERNELS = ("bullseye", "basic", "trixie", "backports", "arm64", "arm64-16k", "rt", "la57")
#: Debian 12's QEMU writes neither (the factory lists them under not_produced)
QEMU_CANNOT = {"kdump-lzo", "kdump-snappy"}
#: what an aarch64 guest is captured in: QEMU's formats (this machine's makedumpfile is an
#: amd64 build, which reads x86_64 dumps only)
QEMU_WRITES = ("elf", "kdump-zlib", "raw", "lime")
#: makedumpfile -d 31: user, cache and free pages left out
FILTERED = ("mdf-zlib-d31", "mdf-elf-d31")
#: the planted processes whose files must be exactly right on every format
ROLES = ("files", "deleted_exe", "chroot", "mntns")


def dumps(kernels: tuple[str, ...] = KERNELS) -> list[tuple[str, str]]:
    """(fixture, dump format) of every format each kernel's fixture is captured in."""
    out = []
    for name in kernels:
        scenario = SCENARIOS[name]
        keys = scenario.dumps or ALL_DUMPS
        out += [(name, key) for key in keys if key not in QEMU_CANNOT and
                (scenario.arch == "x86_64" or key in QEMU_WRITES)]
    return out


def dump_path(name: str, key: str) -> str:
    fx = get_fixture(name)
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    return str(fx.path(key))


def fdinfo(text: str) -> dict[str, Any]:
    """The fields of an fdinfo file lsof carries (5.10 prints no ino: line)."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {"pos": int(fields["pos"]), "flags": fields["flags"].strip(),
            "mnt_id": int(fields["mnt_id"]),
            "inode": int(fields["ino"]) if "ino" in fields else None}


def compared(truth: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The processes whose descriptors are compared: all but init."""
    return {int(pid): t for pid, t in truth["processes"].items() if pid != "1"}


def left_out(why: str | None) -> bool:
    """A reason that says the dump's filter left the page out."""
    return why is not None and "not in the dump" in why


@pytest.mark.parametrize(("name", "key"), dumps())
def test_every_descriptor_matches_the_guest(name, key):
    """Every descriptor of every process but init, field by field. A filtered dump
    (makedumpfile -d 31 on a kernel it does not know may leave slab pages out) reads
    what it holds exactly: anything else is flagged, never wrong."""
    fx = get_fixture(name)
    filtered = key in FILTERED
    with kvmfx.open(dump_path(name, key)) as s:
        listed = {p.pid for p in s.processes()}
        rows = list(Lsof().run(s, {}))
    by_pid: dict[int, dict[int, dict[str, Any]]] = {}
    unread = set()
    for row in rows:
        if row["partial"]:
            assert filtered and left_out(row["missing"]["fd"]), row
            unread.add(row["pid"])
            continue
        by_pid.setdefault(row["pid"], {})[row["fd"]] = row
    checked = fields = 0
    problems: list[tuple[Any, ...]] = []
    for pid, t in compared(fx.truth).items():
        if pid in unread or (filtered and pid not in listed):
            continue  # its file table (or task) is on a page the filter left out
        got = by_pid.get(pid, {})
        want = {int(fd): link for fd, link in t["fd"].items()}
        if set(got) != set(want):
            problems.append((pid, "fds", sorted(got), sorted(want)))
            continue
        for fd, link in want.items():
            row, expected = got[fd], {"path": link, **fdinfo(t["fdinfo"][str(fd)])}
            missing = row["missing"] or {}
            for field, value in expected.items():
                if field == "inode" and value is None:
                    continue  # 5.10's fdinfo has no ino: line
                fields += 1
                if field in missing:
                    if not (filtered and left_out(missing[field])):
                        problems.append((pid, fd, field, missing[field]))
                elif row[field] != value:
                    problems.append((pid, fd, field, row[field], value))
                else:
                    checked += 1
    assert problems == []
    assert checked >= 40
    if not filtered:
        roles = fx.truth["roles"]
        assert all(by_pid.get(roles[role]) for role in ROLES if role != "deleted_exe")
        assert checked == fields  # every field of every descriptor, none missing


@pytest.mark.parametrize("name", KERNELS)
def test_the_planted_files_are_what_the_guest_opened(name):
    """The "files" role on the ELF dump, by kind: a seeked read, O_APPEND, a deleted
    file, a pipe's two ends (one inode, read end 00, write end 01), a file on a tmpfs
    (its own mount id)."""
    fx = get_fixture(name)
    pid = fx.truth["roles"]["files"]
    with kvmfx.open(dump_path(name, "elf")) as s:
        rows = {r["fd"]: r for r in Lsof().run(s, {"pid": pid})}
    paths = [r["path"] for r in rows.values()]
    assert any(p.endswith(" (deleted)") for p in paths)
    pipes = [r for r in rows.values() if r["path"].startswith("pipe:[")]
    assert len(pipes) == 2 and pipes[0]["inode"] == pipes[1]["inode"]
    assert sorted(int(r["flags"], 8) & 3 for r in pipes) == [0, 1]
    assert any(int(r["flags"], 8) & 0o2000 for r in rows.values())  # O_APPEND
    assert any(r["pos"] > 0 and int(r["flags"], 8) & 3 == 0 for r in rows.values())
    assert len({r["mnt_id"] for r in rows.values()}) >= 3  # /dev, /, the tmpfs
    for r in rows.values():
        assert f"[{r['inode']}]" in r["path"] or not r["path"].startswith(("pipe", "socket"))


@pytest.mark.parametrize("name", KERNELS)
def test_filters_select_processes(name):
    fx = get_fixture(name)
    pid = fx.truth["roles"]["chroot"]
    with kvmfx.open(dump_path(name, "elf")) as s:
        rows = list(Lsof().run(s, {"pid": pid}))
        assert rows and {r["pid"] for r in rows} == {pid}
        assert "/jail/data" in [r["path"] for r in rows]
        comm = rows[0]["comm"]
        assert {r["comm"] for r in Lsof().run(s, {"comm": comm})} == {comm}
        assert {r["pid"] for r in Lsof().run(s, {"uid": 1000})} == {
            int(p) for p, t in fx.truth["processes"].items()
            if t["uid"][0] == 1000 and t["fd"]}


def test_the_live_system_shows_this_process_as_proc_does(tmp_path):
    """On the live system lsof reads /proc: this test's own descriptors, a file at a
    seeked position, a deleted file, a pipe."""
    kept = tmp_path / "kept"
    kept.write_bytes(b"x" * 100)
    gone = tmp_path / "gone"
    gone.write_bytes(b"y")
    with open(kept, "rb") as f, open(gone, "rb") as g:
        f.seek(42)
        gone.unlink()
        r, w = os.pipe()
        try:
            with kvmfx.open() as s:
                rows = {row["fd"]: row for row in Lsof().run(s, {"pid": os.getpid()})}
            assert rows[f.fileno()]["path"] == str(kept)
            assert rows[f.fileno()]["pos"] == 42
            assert rows[g.fileno()]["path"] == f"{gone} (deleted)"
            assert rows[r]["path"] == rows[w]["path"] == f"pipe:[{os.fstat(r).st_ino}]"
            info = fdinfo(Path(f"/proc/self/fdinfo/{r}").read_text())
            assert rows[r]["flags"] == info["flags"]
            assert rows[f.fileno()]["inode"] == os.fstat(f.fileno()).st_ino
        finally:
            os.close(r)
            os.close(w)

"""caps: each process's credentials and privileges equal the guest's own /proc/PID/status,
field by field, on every format of every kernel of the matrix (Linux 5.10 .. 7.3 on x86_64,
6.1 and 6.12 on arm64); what a dump does not hold is null with the reason, never wrong.

| fixture | kernel | kernel_cap_t |
| --- | --- | --- |
| bullseye | Debian 11's 5.10 | u32 cap[2] |
| basic | Debian 12's 6.1 | u32 cap[2] |
| trixie | Debian 13's 6.12 | u64 val |
| backports | the newest in trixie-backports | u64 val |
| arm64 | Debian 12's 6.1 (aarch64, 4K pages) | u32 cap[2] |
| arm64-16k | Debian 13's 6.12 (aarch64, 16K pages) | u64 val |
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

import kvmfx
from kvmfx.objects import Object
from kvmfx_plugins.linux.creds import parse_status_credentials
from tests.cli.test_live_commands import kvmfx as run_cli
from tests.factory import ALL_DUMPS, get_fixture
from tests.factory.scenarios import SCENARIOS
from tests.linux.test_partial_fields import _target, _without_page

KERNELS = ("bullseye", "basic", "trixie", "backports", "arm64", "arm64-16k")
#: the formats QEMU writes of an aarch64 guest (makedumpfile here reads x86_64 dumps only)
ARM64_FORMATS = ("elf", "kdump-zlib", "raw", "lime")
#: Debian 12's QEMU 7.2 writes neither (the factory lists them under not_produced)
QEMU_CANNOT = ("kdump-lzo", "kdump-snappy")
#: makedumpfile -d 31: user pages left out, and on kernels newer than it knows some kernel
#: pages too
FILTERED = ("mdf-zlib-d31", "mdf-elf-d31")
CAPS = ("cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb")
IDS = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid")
CRED_FIELDS = (*IDS, "groups", *CAPS, "no_new_privs", "seccomp", "seccomp_filters")
CAP_NET_BIND_SERVICE, CAP_NET_RAW = 10, 13
PAGE = 4096


def _formats(name: str) -> list[str]:
    if name.startswith("arm64"):
        return list(ARM64_FORMATS)
    return [k for k in (SCENARIOS[name].dumps or ALL_DUMPS) if k not in QEMU_CANNOT]


FULL = [(n, k) for n in KERNELS for k in _formats(n) if k not in FILTERED]
PARTIAL = [(n, k) for n in KERNELS for k in _formats(n) if k in FILTERED]


def status_fields(raw: str) -> dict[str, Any]:
    """The caps columns of a /proc/PID/status text, read here on their own: ids as
    numbers, the capability sets as the 16 hex digits printed, flags as printed."""
    lines = {}
    for line in raw.splitlines():
        key, _, value = line.partition(":")
        lines[key] = value.strip()
    uid, gid = lines["Uid"].split(), lines["Gid"].split()
    out: dict[str, Any] = dict(zip(IDS, map(int, [*uid, *gid]), strict=True))
    out["groups"] = [int(g) for g in lines["Groups"].split()]
    for name, key in zip(CAPS, ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"),
                         strict=True):
        out[name] = lines[key]
    out["no_new_privs"] = {"0": False, "1": True}[lines["NoNewPrivs"]]
    out["seccomp"] = int(lines["Seccomp"])
    out["seccomp_filters"] = int(lines["Seccomp_filters"]) \
        if "Seccomp_filters" in lines else None
    return out


def expected(t: dict[str, Any]) -> dict[str, Any]:
    """What the guest's /proc said of a process: every caps column from its status as
    printed (status_raw)."""
    return status_fields(t["status_raw"])


def caps_rows(session: kvmfx.Session, **options: Any) -> list[dict[str, Any]]:
    return list(session.registry.command("caps").run(session, options))


def _mismatches(rows: list[dict[str, Any]], truth: dict[str, Any]) -> dict[int, Any]:
    """Per pid, the columns whose value differs from the guest's (expected, got)."""
    wrong = {}
    for row in rows:
        if row["pid"] == 0:
            continue
        want = expected(truth["processes"][str(row["pid"])])
        diff = {k: (v, row[k]) for k, v in want.items() if row[k] != v}
        if diff:
            wrong[row["pid"]] = diff
    return wrong


@pytest.mark.parametrize(("name", "key"), FULL)
def test_every_process_credentials_match_the_guest(name, key):
    fx = get_fixture(name)
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    with kvmfx.open(str(fx.path(key))) as s:
        rows = caps_rows(s)
        assert s.warnings == []
    truth = fx.truth
    by_pid = {r["pid"]: r for r in rows}
    assert len(by_pid) == len(rows)
    assert set(by_pid) - {0} == {int(p) for p in truth["processes"]}
    assert _mismatches(rows, truth) == {}
    assert [r["pid"] for r in rows if r["missing"]] == []
    # kernel threads run with init_cred, as the idle task (pid 0, which /proc does not list)
    kthreadd = {k: v for k, v in by_pid[2].items() if k in CRED_FIELDS}
    assert {k: v for k, v in by_pid[0].items() if k in CRED_FIELDS} == kthreadd
    assert kthreadd["uid"] == 0 and kthreadd["cap_eff"] == kthreadd["cap_bnd"] != "0" * 16
    # the uid-1000 process of every guest: no capabilities, all sets 16 digits
    user = [r for r in rows if r["uid"] == 1000 and r["euid"] == 1000]
    assert user and all(r["cap_eff"] == r["cap_prm"] == "0" * 16 for r in user)
    assert {len(r[c]) for r in rows for c in CAPS} == {16}


@pytest.mark.parametrize(("name", "key"), PARTIAL)
def test_a_filtered_dump_never_shows_a_wrong_credential(name, key):
    """makedumpfile -d 31 keeps the kernel's slab pages, but on kernels newer than it knows
    it leaves some of them out: a credential on such a page is null with the reason, every
    other is the guest's own."""
    fx = get_fixture(name)
    assert key in fx.files, fx.manifest.get("not_produced", {}).get(key)
    with kvmfx.open(str(fx.path(key))) as s:
        rows = caps_rows(s)
    assert {r["pid"] for r in rows} - {0} <= {int(p) for p in fx.truth["processes"]}
    unexplained = {}
    for pid, diff in _mismatches(rows, fx.truth).items():
        row = next(r for r in rows if r["pid"] == pid)
        bad = {k: d for k, d in diff.items()
               if d[1] is not None or "not in the dump" not in (row["missing"] or {}).get(k, "")}
        if bad:
            unexplained[pid] = bad
    assert unexplained == {}
    assert sum(r["uid"] is not None for r in rows) > len(rows) // 2


@pytest.mark.parametrize("name", KERNELS)
def test_the_process_with_privileges_set(name):
    """The guest's planted process: uid 1000 with real, effective and saved ids set apart,
    ambient CAP_NET_BIND_SERVICE and CAP_NET_RAW, no_new_privs, a seccomp filter and
    supplementary groups; read from a dump exactly as its /proc/PID/status printed them."""
    fx = get_fixture(name)
    pid = fx.truth["roles"]["caps"]
    t = fx.truth["processes"][str(pid)]
    with kvmfx.open(str(fx.path("elf"))) as s:
        (row,) = caps_rows(s, pid=pid)
    assert {k: row[k] for k in CRED_FIELDS} == status_fields(t["status_raw"])
    assert row["missing"] is None
    assert row["uid"] == 1000 and len({row["uid"], row["euid"], row["suid"]}) == 3
    assert len({row["gid"], row["egid"], row["sgid"]}) == 3
    assert int(row["cap_amb"], 16) == 1 << CAP_NET_BIND_SERVICE | 1 << CAP_NET_RAW
    assert int(row["cap_amb"], 16) & ~int(row["cap_prm"], 16) == 0  # ambient <= permitted
    assert row["no_new_privs"] is True and row["seccomp"] == 2
    assert row["seccomp_filters"] >= 1 and row["groups"]
    # the libkvm record carries the same groups (kinfo_proc2's p_groups, p_ngroups)
    from kvmfx import kvm

    kd = kvm.kvm_openfiles(None, str(fx.path("elf")), None, kvm.O_RDONLY, None)
    assert kd is not None
    try:
        (kp,) = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, pid, kvm.KINFO_PROC2_SIZE, [0])
    finally:
        kvm.kvm_close(kd)
    assert kp.p_ngroups == len(row["groups"])
    assert list(kp.p_groups)[:len(row["groups"])] == row["groups"][:16]


@pytest.fixture(scope="module")
def basic():
    return get_fixture("basic")


def _overwrite(session: kvmfx.Session, address: int, data: bytes) -> None:
    """Make kernel memory at ``address`` read as ``data`` in ``session`` (hostile memory)."""
    layer = session.kernel
    real_read = layer.read

    def read(vaddr: int, size: int, *, zero_fill: bool = False) -> bytes:
        out = real_read(vaddr, size, zero_fill=zero_fill)
        lo, hi = max(vaddr, address), min(vaddr + size, address + len(data))
        if lo >= hi:
            return out
        return out[:lo - vaddr] + data[lo - address:hi - address] + out[hi - vaddr:]

    layer.read = read  # type: ignore[method-assign]


def _task(session: kvmfx.Session, pid: int) -> Object:
    proc = next(p for p in session.processes() if p.pid == pid)
    return Object(session.types, "task_struct", proc.handle, session.read)


def test_a_missing_cred_page_leaves_the_cred_fields_null(basic):
    pid = _target(basic)
    with kvmfx.open(str(basic.path("elf"))) as s:
        cred = _task(s, pid).real_cred
        before = {r["pid"]: r for r in caps_rows(s)}
        _without_page(s, cred & ~(PAGE - 1))
        after = {r["pid"]: r for r in caps_rows(s)}
    assert set(after) == set(before)
    row = after[pid]
    from_cred = (*IDS, "groups", *CAPS)
    assert {k: row[k] for k in from_cred} == dict.fromkeys(from_cred)
    assert set(row["missing"]) == set(from_cred)
    assert all("not in the dump (test)" in why for why in row["missing"].values())
    # what the task_struct itself holds is still read
    assert (row["no_new_privs"], row["seccomp"], row["seccomp_filters"]) == (False, 0, 0)
    # every other process whose cred is elsewhere is unchanged
    assert [p for p, r in after.items() if r["missing"] is None and r != before[p]] == []


def test_a_missing_group_info_page_leaves_the_groups_null(basic):
    pid = _target(basic)
    with kvmfx.open(str(basic.path("elf"))) as s:
        cred = Object(s.types, "cred", _task(s, pid).real_cred, s.read)
        before = next(r for r in caps_rows(s) if r["pid"] == pid)
        _without_page(s, cred.group_info & ~(PAGE - 1))
        (row,) = caps_rows(s, pid=pid)
    assert row["groups"] is None and set(row["missing"]) == {"groups"}
    assert {k: v for k, v in row.items() if k not in ("groups", "missing")} == \
        {k: v for k, v in before.items() if k not in ("groups", "missing")}


def test_an_unreadable_task_leaves_every_field_null_with_why(basic):
    """A task_struct none of whose pages the dump holds (a stale or wild pointer): the
    credentials are all null, each with the reason; nothing is raised."""
    pid = _target(basic)
    with kvmfx.open(str(basic.path("elf"))) as s:
        proc = next(p for p in s.processes() if p.pid == pid)
        size = s.types.struct_size("task_struct")
        for page in range(proc.handle & ~(PAGE - 1), proc.handle + size, PAGE):
            _without_page(s, page)
        assert pid not in {p.pid for p in s.processes()}  # a new listing: not reached
        creds = s.credentials(proc)
    assert all(getattr(creds, name) is None for name in CRED_FIELDS)
    assert set(creds.missing) == set(CRED_FIELDS)
    assert all("not in the dump (test)" in why for why in creds.missing.values())


@pytest.mark.parametrize("name", ["bullseye", "basic", "trixie", "backports"])
def test_member_by_member_equals_the_fast_read(name):
    """Each task's members read one by one through typed views (the way past a missing
    page) give the same row as the one-read-per-structure path, on both kernel_cap_t
    layouts."""
    fx = get_fixture(name)
    with kvmfx.open(str(fx.path("elf"))) as s:
        fast = caps_rows(s)
        s.plugin_data["linux-creds"] = None  # no layout: every task member by member
        slow = caps_rows(s)
    assert slow == fast and len(fast) == len(fx.truth["processes"]) + 1


@pytest.mark.hostile
def test_a_hostile_group_count_is_refused(basic):
    """A group_info claiming two billion groups: refused by its count (at most NGROUPS_MAX),
    never read, within the hostile-input time and memory bounds."""
    pid = _target(basic)
    with kvmfx.open(str(basic.path("elf"))) as s:
        cred = Object(s.types, "cred", _task(s, pid).real_cred, s.read)
        ngroups = cred.group_info + s.types.offsetof("group_info", "ngroups")
        _overwrite(s, ngroups, (0x7FFF_FFFF).to_bytes(4, "little"))
        (row,) = caps_rows(s, pid=pid)
    assert row["groups"] is None and set(row["missing"]) == {"groups"}
    assert "2147483647: not a group count" in row["missing"]["groups"]
    assert row["uid"] == 1000


def test_a_status_without_a_line_leaves_its_fields_null():
    """A kernel without seccomp filters (or before 5.9) prints no Seccomp_filters: line;
    a line that is not numbers is not guessed at."""
    raw = ("Name:\tx\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nGroups:\t10 20 \n"
           "CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\tzz\n"
           "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000002400\nNoNewPrivs:\t1\n"
           "Seccomp:\t2\n")
    c = parse_status_credentials(raw, "/proc/9/status")
    assert (c.uid, c.euid, c.suid, c.fsuid, c.gid, c.egid, c.sgid, c.fsgid) == tuple(range(8))
    assert c.groups == [10, 20] and c.cap_amb == 0x2400 and c.cap_prm == (1 << 41) - 1
    assert (c.no_new_privs, c.seccomp, c.seccomp_filters, c.cap_eff) == (True, 2, None, None)
    assert set(c.missing) == {"seccomp_filters", "cap_eff"}
    assert c.missing["seccomp_filters"] == "/proc/9/status has no Seccomp_filters: line"


def test_caps_on_the_live_system_is_proc_status():
    """Without a dump, caps reads /proc: this process's row is its own status."""
    r = run_cli("run", "caps", "--format", "json", "--pid", str(os.getpid()))
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert {k: row[k] for k in CRED_FIELDS} == \
        status_fields(Path(f"/proc/{os.getpid()}/status").read_text())
    assert row["groups"] == sorted(set(os.getgroups())) or set(row["groups"]) == \
        set(os.getgroups())
    assert (row["uid"], row["euid"], row["suid"]) == os.getresuid()


def test_caps_cli_on_a_dump(basic):
    """``kvmfx run caps DUMP --pid N`` in CSV: the columns in their order, the capability
    sets as /proc prints them, the groups as a JSON array; in text, the groups spaced."""
    pid = basic.truth["roles"]["caps"]
    r = run_cli("run", "caps", str(basic.path("kdump-zlib")), "--format", "csv", "--pid",
                str(pid))
    assert r.returncode == 0, r.stderr
    (row,) = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(row) == ["pid", "comm", *CRED_FIELDS, "missing"]
    want = status_fields(basic.truth["processes"][str(pid)]["status_raw"])
    assert json.loads(row["groups"]) == want["groups"]
    assert [row[c] for c in CAPS] == [want[c] for c in CAPS]
    assert (row["no_new_privs"], row["seccomp"], row["missing"]) == ("True", "2", "")
    text = run_cli("run", "caps", str(basic.path("kdump-zlib")), "--pid", str(pid))
    assert " ".join(map(str, want["groups"])) in text.stdout.splitlines()[1]


# -- the libkvm API: kinfo_proc2's group fields ---------------------------------------------


def test_kvm_getproc2_carries_the_supplementary_groups():
    """kinfo_proc2's p_groups / p_ngroups (zero before) hold the process's supplementary
    groups, as NetBSD fills them; the other fields keep their meaning."""
    from kvmfx import kvm

    kd = kvm.kvm_openfiles(None, None, None, kvm.KVM_NO_FILES, None)
    assert kd is not None
    try:
        (kp,) = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, os.getpid(), kvm.KINFO_PROC2_SIZE,
                                 [0])
        (short,) = kvm.kvm_getproc2(kd, kvm.KERN_PROC_PID, os.getpid(), 0x80, [0])
    finally:
        kvm.kvm_close(kd)
    status = status_fields(Path(f"/proc/{os.getpid()}/status").read_text())
    assert kp.p_ngroups == len(status["groups"]) == len(os.getgroups())
    assert list(kp.p_groups) == [*status["groups"][:16], *[0] * (16 - len(status["groups"]))]
    assert (kp.p_ruid, kp.p_uid, kp.p_svuid) == os.getresuid()
    assert short.p_ngroups == 0 and list(short.p_groups) == [0] * 16  # beyond elemsize


def test_kinfo_proc2_keeps_the_first_sixteen_groups():
    """NetBSD's kinfo_proc2 has room for KI_NGROUPS (16) groups: p_ngroups counts them
    all, p_groups holds the first sixteen."""
    from kvmfx import kvm
    from kvmfx.process import Credentials, Process

    class Groups:
        def credentials(self, proc: Process) -> Credentials:
            return Credentials(groups=list(range(100, 120)))

    values = kvm._group_values(Groups(), Process(1, 0, "x"))  # type: ignore[arg-type]
    kp = kvm.KinfoProc2(values)
    assert kp.p_ngroups == 20 and list(kp.p_groups) == list(range(100, 116))
    assert kvm.KINFO_PROC2.parse(kp.pack()).p_groups == list(range(100, 116))

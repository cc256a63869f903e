"""Processes, argv and environment from real dumps equal the guest's own /proc, exactly."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import kvmfx
from kvmfx import kvm
from tests.factory import get_fixture

#: every full-memory format of the capture (the -d 31 file excludes user pages by design)
FORMATS = ["elf", "kdump-zlib", "mdf-zlib", "mdf-lzo", "flattened", "lime", "raw"]


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def worker_name(comm: str | None) -> str | None:
    """A command name to compare with the guest's: a workqueue worker's (``kworker/...``)
    carries the work item it runs, which changes between the guest's snapshot and the dump,
    so only the worker's own name counts."""
    if comm is not None and comm.startswith("kworker/"):
        return re.split(r"[-+]", comm, maxsplit=1)[0]
    return comm


def _check_session(s: kvmfx.Session, truth: dict) -> int:
    procs = {p.pid: p for p in s.processes()}
    expected = {int(pid): t for pid, t in truth["processes"].items()}
    assert set(procs) - {0} == set(expected)
    checked = 0
    for pid, t in expected.items():
        p = procs[pid]
        comm, want = worker_name(p.comm), worker_name(t["comm"])
        assert (p.ppid, comm, p.uid, p.euid, p.gid) == (
            t["ppid"], want, t["uid"][0], t["uid"][1], t["gid"][0]), pid
        assert (p.pgid, p.sid, p.nthreads) == (t["pgid"], t["sid"], t["nthreads"]), pid
        assert (p.tty, p.flags & ~0x4000_0000) == (t["tty_nr"], t["flags"] & ~0x4000_0000), pid
        if "nspid" in t:
            assert p.nspid == t["nspid"][-1], pid
        if pid != 1 and not p.kernel_thread:  # init was busy taking the ground truth
            assert p.state == t["state"], pid
        argv, envv = s.argv(p), s.envv(p)
        assert not argv.partial and not envv.partial, (pid, argv.missing, envv.missing)
        assert argv.strings() == t["cmdline"], pid
        assert envv.strings() == t["environ"], pid
        checked += 1
    return checked


@pytest.mark.parametrize("key", FORMATS)
def test_every_process_argv_and_environment_match_the_guest(fx, key):
    with kvmfx.open(str(fx.path(key))) as s:
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


def test_threads_match_the_guest(fx):
    with kvmfx.open(str(fx.path("elf"))) as s:
        for p in s.processes():
            if p.pid == 0:
                continue
            tids = sorted(t.pid for t in s.threads(p))
            assert tids == fx.truth["processes"][str(p.pid)]["tasks"], p.pid


def test_kernel_facts_match_the_guest(fx):
    k = fx.truth["kernel"]
    with kvmfx.open(str(fx.path("elf"))) as s:
        u = s.uname()
        assert u["release"] == k["release"] and u["nodename"] == k["hostname"]
        assert k["version"].endswith(u["version"])
        assert abs(s.boot_time() - k["btime"]) <= 1
        for name, addr in k["kallsyms"].items():
            assert s.symbols.lookup(name) == int(addr, 16), name


def test_symbols_from_the_image_equal_the_guests_kallsyms(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))  # no cached profile: the image
    truth = {}
    for addr, kind, name in fx.kallsyms():
        truth.setdefault(name, (addr, kind))
    with kvmfx.open(str(fx.path("elf"))) as s:
        table = s.symbols
        assert table.source == "image:kallsyms"
        assert {n: (v.address, v.type) for n, v in table.symbols.items()} == truth


def test_cli_psaux_json_matches(fx):
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "psaux", str(fx.path("elf")),
                        "--format", "json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = {row["pid"]: row for row in json.loads(r.stdout)}
    for pid, t in fx.truth["processes"].items():
        assert rows[int(pid)]["argv"] == t["cmdline"]


def test_libkvm_api_gives_the_same_answers(fx):
    errbuf = bytearray()
    kd = kvm.kvm_openfiles(None, str(fx.path("elf")), None, kvm.O_RDONLY, errbuf)
    assert kd is not None, errbuf.decode()
    cnt = [0]
    procs = kvm.kvm_getproc2(kd, kvm.KERN_PROC_ALL, 0, kvm.KINFO_PROC2_SIZE, cnt)
    assert procs is not None and cnt[0] == len(procs) == len(fx.truth["processes"]) + 1
    for kp in procs:
        t = fx.truth["processes"].get(str(kp.p_pid))
        if t is None:
            continue
        assert kp.p_ppid == t["ppid"] and kp.p_ruid == t["uid"][0]
        if not t["comm"].startswith("kworker/"):
            assert kp.p_comm == t["comm"][:kvm.KI_MAXCOMLEN - 1]
        assert kvm.kvm_getargv2(kd, kp, 0) == t["cmdline"]
        assert kvm.kvm_getenvv2(kd, kp, 0) == t["environ"]
    nl = [kvm.nlist("_init_task"), kvm.nlist("linux_banner"), kvm.nlist("no_such_symbol"),
          kvm.nlist(None)]
    assert kvm.kvm_nlist(kd, nl) == 1
    assert nl[0].n_value == int(fx.truth["kernel"]["kallsyms"]["init_task"], 16)
    buf = bytearray(64)
    assert kvm.kvm_read(kd, nl[1].n_value, buf, 64) == 64
    assert bytes(buf).startswith(b"Linux version " + fx.truth["kernel"]["release"].encode())
    assert kvm.kvm_write(kd, nl[1].n_value, b"x", 1) == -1
    assert "read-only" in kvm.kvm_geterr(kd)
    load: list[float] = []
    assert kvm.kvm_getloadavg(kd, load, 3) == 3
    # avenrun moves every 5 s (LOAD_FREQ); the guest read /proc/loadavg right after it
    # moved and the host dumped at once, inside the same period: the values are exact
    assert [f"{v:.2f}" for v in load] == fx.truth["kernel"]["loadavg"]
    assert kvm.kvm_close(kd) == 0


@pytest.mark.parametrize("key", ["elf", "kdump-zlib", "raw"])
def test_hundreds_of_processes_match_the_guest(key):
    many = get_fixture("many")
    assert len(many.truth["processes"]) > 300
    with kvmfx.open(str(many.path(key))) as s:
        assert _check_session(s, many.truth) == len(many.truth["processes"])

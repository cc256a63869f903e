"""The CLI on the live system reports processes exactly as /proc does."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from kvmfx.exporters import IDENTITY_FIELDS
from tests.conftest import proc_vector


def kvmfx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kvmfx.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_psaux_json_shows_exact_argv(marked_process):
    r = kvmfx("run", "psaux", "--format", "json", "--pid", str(marked_process.pid))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 1
    assert rows[0]["argv"] == proc_vector(marked_process.pid, "cmdline")
    assert rows[0]["argv"][3:] == ["a", "b c", "", "ünïcødé ✓", "tab\there",
                                   *[f"arg{i:03d}" for i in range(200)], ""]
    assert rows[0]["partial"] is False


def test_envars_json_shows_exact_environment(marked_process):
    r = kvmfx("run", "envars", "--format", "jsonl", "--pid", str(marked_process.pid))
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["envv"] == proc_vector(marked_process.pid, "environ")
    assert "KVMFX_MARK=1" in row["envv"] and "KVMFX_SPACES=x y  z" in row["envv"]
    assert "EMPTY=" in row["envv"]


def _stable_comm(comm: str) -> str:
    """A workqueue worker's name without the work it is doing now: /proc computes
    ``kworker/1:1-events`` at each read (wq_worker_comm), so the suffix moves between reads."""
    return comm.partition("-")[0] if comm.startswith("kworker/") else comm


def _proc_snapshot() -> dict[int, tuple[str, int, int]]:
    snap = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue  # exited while we looked
        comm = _stable_comm(stat[stat.index("(") + 1:stat.rindex(")")])
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
        snap[int(entry)] = (comm, ppid, uid)
    return snap


def test_pslist_matches_proc_for_every_process(marked_process):
    before = _proc_snapshot()
    r = kvmfx("run", "pslist", "--format", "json")
    after = _proc_snapshot()
    assert r.returncode == 0, r.stderr
    rows = {row["pid"]: row for row in json.loads(r.stdout)}
    assert marked_process.pid in rows
    # Every process that existed unchanged throughout the listing is reported exactly.
    stable = {pid: v for pid, v in before.items() if after.get(pid) == v}
    assert len(stable) >= 3
    for pid, (comm, ppid, uid) in stable.items():
        row = rows[pid]
        got = (_stable_comm(row["comm"]), row["ppid"], row["uid"])
        assert got == (comm, ppid, uid), (pid, row["comm"])
    assert rows[os.getpid()]["ppid"] == os.getppid()
    # every field of a live process was read: nothing is named missing
    assert list(rows[os.getpid()])[-1] == "missing" and rows[os.getpid()]["missing"] is None


def test_all_formats_carry_the_same_columns(marked_process):
    pid = str(marked_process.pid)
    js = json.loads(kvmfx("run", "psaux", "--format", "json", "--pid", pid).stdout)[0]
    jl = json.loads(kvmfx("run", "psaux", "--format", "jsonl", "--pid", pid).stdout)
    rows = list(csv.DictReader(io.StringIO(kvmfx("run", "psaux", "--format", "csv",
                                                 "--pid", pid).stdout)))
    # jsonl: the same columns after the identity (the live system: no dump file)
    assert list(js) == list(rows[0])
    assert list(jl) == [*IDENTITY_FIELDS, *js]
    assert (jl["dump_path"], jl["dump_sha256"], jl["command"]) == (None, None, "psaux")
    assert jl["dump_host"] == os.uname().nodename
    assert jl["kernel_release"] == os.uname().release
    assert jl["argv"] == js["argv"]
    assert json.loads(rows[0]["argv"]) == js["argv"]
    text = kvmfx("run", "psaux", "--pid", pid).stdout.splitlines()
    assert text[0].split()[:3] == ["PID", "PPID", "UID"]
    assert "b c" in text[1] and str(marked_process.pid) in text[1]


def test_pstree_places_child_under_parent(marked_process):
    rows = json.loads(kvmfx("run", "pstree", "--format", "json").stdout)
    by_pid = {r["pid"]: r for r in rows}
    child = by_pid[marked_process.pid]
    parent = by_pid[child["ppid"]]
    assert child["depth"] == parent["depth"] + 1
    order = [r["pid"] for r in rows]
    assert order.index(parent["pid"]) < order.index(child["pid"])


def test_loadavg_and_uname_match_the_kernel(tmp_path):
    # /proc/loadavg read just before and just after kvmfx: when both agree (no 5 s update
    # fell between them) kvmfx's answer is exactly that value
    for _ in range(5):
        before = Path("/proc/loadavg").read_text().split()[:3]
        r = kvmfx("run", "loadavg", "--format", "json")
        after = Path("/proc/loadavg").read_text().split()[:3]
        if before == after:
            break
    assert before == after, "the load average moved during each of 5 tries"
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert [f"{row[k]:.2f}" for k in ("load1", "load5", "load15")] == before
    out = tmp_path / "uname.json"
    r = kvmfx("run", "uname", "--format", "json", "-o", str(out))
    assert r.returncode == 0 and r.stdout == ""
    (u,) = json.loads(out.read_text())
    assert u["release"] == os.uname().release
    assert u["machine"] == os.uname().machine


def test_threads_lists_each_thread():
    code = ("import threading, time\n"
            "ts=[threading.Thread(target=time.sleep, args=(60,), daemon=True) for _ in range(3)]\n"
            "[t.start() for t in ts]\nprint('ok', flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == b"ok"
        rows = json.loads(kvmfx("run", "threads", "--format", "json", "--pid",
                                str(p.pid)).stdout)
        tids = sorted(int(t) for t in os.listdir(f"/proc/{p.pid}/task"))
        assert sorted(r["tid"] for r in rows) == tids
        assert len(tids) == 4
    finally:
        p.kill()
        p.wait()

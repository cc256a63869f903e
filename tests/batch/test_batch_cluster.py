"""``kvmfx batch`` on a real Dask LocalCluster over the factory's dumps: the same rows as
``kvmfx run`` on each dump alone, the corrupt dump reported and the rest complete, a worker
killed mid-batch retried without duplicate or missing rows, a second run skipping all."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kvmfx.batch import (
    FAILED,
    OK,
    PARTIAL,
    BatchState,
    TaskOptions,
    plan,
    run_batch,
    write_outputs,
)
from kvmfx.registry import load_registry
from tests.batch.conftest import COMMANDS, strip_identity

pytestmark = pytest.mark.slow


def _registry() -> Any:
    registry = load_registry()
    registry.collect_all()
    return registry


def _batch(fleet: Any, outdir: Path, client: Any, **kw: Any) -> tuple[BatchState, Any]:
    specs = plan(fleet.inputs, _registry())
    return run_batch(specs, TaskOptions(COMMANDS), outdir, client, **kw)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_against_single_runs(fleet: Any, reference: Any, outdir: Path) -> None:
    """Every command's output: for each dump, row for row what ``kvmfx run --format jsonl``
    gives alone, identity included; no dump twice; the corrupt one absent from the rows and
    failed in the summary with run's own error line."""
    summary = json.loads((outdir / "batch.json").read_text())
    entries = {e["path"]: e for e in summary["dumps"]}
    assert sorted(entries) == sorted(fleet.paths)
    for command in COMMANDS:
        rows = _jsonl(outdir / f"{command}.jsonl")
        by_dump: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            assert row["command"] == command and row["kvmfx_version"]
            by_dump.setdefault(row["dump_path"], []).append(row)
        for path in fleet.paths:
            status, expected, stderr = reference[(path, command)]
            entry = entries[path]
            if status == 3:  # run refused the dump: so did the batch, with the same line
                assert entry["status"] == FAILED and path not in by_dump
                assert entry["error"] == stderr.strip()
                continue
            assert by_dump[path] == expected, (path, command)
            assert entry["status"] == (PARTIAL if status == 4 else OK)
            assert entry["counts"][command] == len(expected)
        # each dump's rows once: (dump, pid) pairs are unique
        pairs = Counter((r["dump_path"], r["pid"]) for r in rows)
        assert max(pairs.values()) == 1


def test_batch_rows_equal_single_runs_and_the_corrupt_dump_is_reported(
        fleet, reference, dask_client, outdir):
    state, outcome = _batch(fleet, outdir, dask_client)
    write_outputs(state, COMMANDS, _registry())
    assert outcome.planned == len(fleet.paths) and outcome.ran == len(fleet.paths)
    assert outcome.failed == 1
    _check_against_single_runs(fleet, reference, outdir)
    entries = {e["path"]: e for e in json.loads((outdir / "batch.json").read_text())["dumps"]}
    assert entries[str(fleet.corrupt)]["error"].startswith("kvmfx: ")
    for path, host in fleet.hosts.items():  # the manifest's host names, in rows and summary
        assert entries[path]["host"] == host
    rows = _jsonl(outdir / "psaux.jsonl")
    assert {r["dump_host"] for r in rows if r["dump_path"] in fleet.hosts} == \
        set(fleet.hosts.values())
    assert all(r["kernel_release"] and r["build_id"] for r in rows)
    assert len({r["kernel_release"] for r in rows}) >= 3  # several kernels

    # a second run skips every dump (the corrupt one too: it failed, and stays failed)
    state2, again = _batch(fleet, outdir, dask_client)
    assert again.ran == 0 and again.skipped == len(fleet.paths)
    # --retry-failed runs the failed dump only
    state3, retried = _batch(fleet, outdir, dask_client, retry_failed=True)
    assert retried.ran == 1 and retried.failed == 1
    write_outputs(state3, COMMANDS, _registry())
    _check_against_single_runs(fleet, reference, outdir)


def test_a_worker_killed_mid_batch_is_retried_without_duplicates(
        fleet, reference, dask_client, outdir):
    pids = dask_client.run(os.getpid)  # worker address -> pid
    killed: dict[str, Any] = {}

    def kill_a_busy_worker(entry: dict[str, Any], result: dict[str, Any]) -> None:
        if killed:
            return
        busy = {w: keys for w, keys in dask_client.processing().items() if keys}
        for worker, keys in busy.items():
            if pids.get(worker) != result.get("worker_pid"):
                killed.update(worker=worker, keys=list(keys), pid=pids[worker])
                os.kill(pids[worker], signal.SIGKILL)
                return

    state, outcome = _batch(fleet, outdir, dask_client, on_result=kill_a_busy_worker)
    assert killed, "no worker was busy to kill"
    assert outcome.ran == len(fleet.paths) and outcome.failed == 1
    write_outputs(state, COMMANDS, _registry())
    _check_against_single_runs(fleet, reference, outdir)
    # the cluster has its two workers again (the nanny restarted the killed one)
    dask_client.wait_for_workers(2, timeout=60)


def test_a_dump_changed_since_is_read_again(fleet, dask_client, tmp_path):
    from kvmfx.batch import DumpSpec

    copy = tmp_path / "copy.kdump"
    copy.write_bytes(Path(fleet.paths[1]).read_bytes())
    options = TaskOptions(("psaux",))
    out = tmp_path / "out"
    _, first = run_batch([DumpSpec(str(copy))], options, out, dask_client)
    assert first.ran == 1
    _, second = run_batch([DumpSpec(str(copy))], options, out, dask_client)
    assert second.ran == 0
    os.utime(copy, ns=(0, 0))
    _, third = run_batch([DumpSpec(str(copy))], options, out, dask_client)
    assert third.ran == 1
    # more commands later: only they run, and the dump's earlier rows stay
    state, fourth = run_batch([DumpSpec(str(copy))], TaskOptions(("psaux", "pslist")), out,
                              dask_client)
    assert fourth.ran == 1
    assert state.dumps[str(copy)]["commands"] == ["psaux", "pslist"]
    assert state.dumps[str(copy)]["counts"]["psaux"] > 0


def test_a_manifest_gives_each_dump_its_swap_file(dask_client, tmp_path):
    """-W per dump from the manifest: the rows equal ``kvmfx run psaux DUMP -W SWAP``."""
    from click.testing import CliRunner

    from kvmfx.cli import main
    from tests.factory import get_fixture

    fx = get_fixture("swap")
    dump, swap = str(fx.path("kdump-zlib")), str(fx.path("swap"))
    manifest = tmp_path / "hosts.csv"
    manifest.write_text(f"path,host,W\n{dump},swapper,{swap}\n")
    specs = plan([str(manifest)], _registry())
    assert [(s.host, s.swapfile) for s in specs] == [("swapper", swap)]
    state, outcome = run_batch(specs, TaskOptions(("psaux",)), tmp_path / "out", dask_client)
    assert outcome.ran == 1
    write_outputs(state, ("psaux",), _registry())
    got = _jsonl(tmp_path / "out" / "psaux.jsonl")
    single = CliRunner().invoke(main, ["run", "psaux", dump, "-W", swap, "--format", "jsonl",
                                       "--host", "swapper"])
    assert got == [json.loads(line) for line in single.stdout.splitlines()]
    without = CliRunner().invoke(main, ["run", "psaux", dump, "--format", "jsonl",
                                        "--host", "swapper"])
    assert got != [json.loads(line) for line in without.stdout.splitlines()]  # -W mattered


def test_shipped_dumps_give_the_same_rows_under_their_own_names(
        fleet, reference, dask_client, tmp_path):
    """--ship: the bytes go with the task; rows, identity and errors name the original."""
    from kvmfx.batch import DumpSpec

    dumps = [fleet.paths[1], fleet.paths[3], str(fleet.corrupt)]
    state, outcome = run_batch([DumpSpec(p) for p in dumps], TaskOptions(("psaux",)),
                               tmp_path / "out", dask_client, ship=True)
    assert outcome.ran == 3 and outcome.failed == 1
    write_outputs(state, ("psaux",), _registry())
    rows = _jsonl(tmp_path / "out" / "psaux.jsonl")
    for path in dumps[:2]:
        assert [strip_identity(r) for r in rows if r["dump_path"] == path] == \
            [strip_identity(r) for r in reference[(path, "psaux")][1]]
    assert state.dumps[str(fleet.corrupt)]["error"] == \
        reference[(str(fleet.corrupt), "psaux")][2].strip()
    assert not list(Path(tempfile.gettempdir()).glob("kvmfx-shipped-*"))


CRASHER = '''
"""A command that kills the process running it on dumps named crash-*: a worker that dies."""
import os

from kvmfx import hookimpl
from kvmfx.commands import Column, Command


class Crash(Command):
    def __init__(self):
        super().__init__(name="crash", description="die on crash-* dumps",
                         columns=[Column("pid", "int")])

    def run(self, session, options):
        if os.path.basename(session.corefile).startswith("crash-"):
            os._exit(9)
        yield {"pid": os.getpid()}


@hookimpl
def kvmfx_commands():
    return [Crash()]
'''


def test_a_dump_that_kills_its_worker_every_try_fails_alone(fleet, dask_client, tmp_path):
    """Dask retries the dump on a new worker until its allowed failures are spent, then
    gives up on it; the summary says so in one line and the other dumps complete."""
    from kvmfx.batch import DumpSpec

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "crasher.py").write_text(CRASHER)
    crash = tmp_path / "crash-web01.kdump"
    crash.symlink_to(fleet.paths[1])
    specs = [DumpSpec(str(crash)), DumpSpec(fleet.paths[3])]
    options = TaskOptions(("crash", "psaux"), plugin_dirs=(str(plugins),))
    state, outcome = run_batch(specs, options, tmp_path / "out", dask_client)
    assert outcome.failed == 1 and outcome.ok + outcome.partial == 1
    entry = state.dumps[str(crash)]
    assert entry["status"] == FAILED and "\n" not in entry["error"]
    assert entry["error"].startswith(f"kvmfx: {crash}: the worker reading it died on every try")
    assert state.dumps[fleet.paths[3]]["counts"]["crash"] == 1
    dask_client.wait_for_workers(2, timeout=60)


def test_an_interrupted_batch_resumes_where_it_stopped(fleet, reference, dask_client, outdir):
    """Ctrl-C after the first dump: what finished is kept; the re-run reads the rest only,
    and the outputs hold every dump's rows once."""
    from kvmfx.batch import DumpSpec

    specs = [DumpSpec(p) for p in fleet.paths[:4]]
    options = TaskOptions(COMMANDS)

    def interrupt(entry: dict[str, Any], result: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(specs, options, outdir, dask_client, on_result=interrupt)
    kept = json.loads((outdir / "batch.json").read_text())["dumps"]
    assert len(kept) == 1
    state, outcome = run_batch(specs, options, outdir, dask_client)
    assert outcome.skipped == 1 and outcome.ran == 3
    write_outputs(state, COMMANDS, _registry())
    for command in COMMANDS:
        rows = _jsonl(outdir / f"{command}.jsonl")
        for spec in specs:
            assert [strip_identity(r) for r in rows if r["dump_path"] == spec.path] == \
                [strip_identity(r) for r in reference[(spec.path, command)][1]]

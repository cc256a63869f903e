"""``kvmfx batch`` from the command line: on an existing Dask cluster (``--scheduler``) and on
the embedded local one; Parquet, Timesketch (parsed by Timesketch's own import client), ECS
(checked against the ECS field definitions) and the report page (rendered in a headless
Chromium); one-line errors for bad input."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kvmfx.exporters import DUMP_CAPTURE, PROCESS_START
from tests.batch.conftest import COMMANDS, env_without_pyc, strip_identity
from tests.batch.ecs_check import problems
from tests.batch.timesketch_check import timesketch_parse

pytestmark = pytest.mark.slow


def kvmfx_batch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kvmfx.cli", "batch", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=env_without_pyc())


def test_batch_on_a_dask_cluster_writes_parquet_timesketch_ecs_and_a_report(
        fleet, reference, dask_client, outdir):
    address = dask_client.scheduler.address
    r = kvmfx_batch(*fleet.inputs, "-c", "psaux", "-c", "envars", "-o", str(outdir),
                    "--scheduler", address, "--output-format", "parquet", "--format", "rows",
                    "--format", "timesketch", "--format", "ecs", "--hash", "--report")
    assert r.returncode == 4, r.stderr  # one corrupt dump: partial
    assert "Traceback" not in r.stderr
    assert f"failed: {fleet.corrupt}: kvmfx: " in r.stderr
    summary = json.loads((outdir / "batch.json").read_text())
    assert summary["totals"]["failed"] == 1
    entries = {e["path"]: e for e in summary["dumps"]}

    import pyarrow.parquet as pq

    for command in COMMANDS:
        table = pq.read_table(outdir / f"{command}.parquet")
        assert table.column_names[:7] == ["dump_path", "dump_host", "kernel_release",
                                          "build_id", "dump_sha256", "kvmfx_version", "command"]
        rows = table.to_pylist()
        for path in fleet.paths:
            status, expected, _ = reference[(path, command)]
            got = [strip_identity(r) for r in rows if r["dump_path"] == path]
            if status == 3:
                assert got == []
                continue
            # Parquet keeps `missing` as JSON text: compare it decoded
            for row in got:
                row["missing"] = json.loads(row["missing"]) if row["missing"] else None
            assert got == [strip_identity(r) for r in expected], (path, command)
    small = fleet.paths[1]  # the sha256 is the file's
    assert entries[small]["sha256"] == hashlib.sha256(Path(small).read_bytes()).hexdigest()
    assert {r["dump_sha256"] for r in pq.read_table(outdir / "psaux.parquet").to_pylist()
            if r["dump_path"] == small} == {entries[small]["sha256"]}

    for command in COMMANDS:
        docs = [json.loads(x) for x in (outdir / f"{command}.ecs.jsonl").read_text().splitlines()]
        assert docs and all(problems(d) == [] for d in docs)
        events = timesketch_parse(outdir / f"{command}.timesketch.jsonl")
        expected_rows = sum(len(reference[(p, command)][1]) for p in fleet.paths
                            if reference[(p, command)][0] != 3)
        assert len(docs) == expected_rows
        # Timesketch events need a time: rows of processes whose start is unknown are
        # left out, counted in the summary and said on stderr
        outputs = {o["file"]: o for o in json.loads(
            (outdir / "batch.json").read_text())["outputs"]}
        left_out = outputs[f"{command}.timesketch.jsonl"]["left_out"]
        assert len(events) == expected_rows - left_out > 0
        assert (f"{command}.timesketch.jsonl: {left_out} rows without a time" in r.stderr) \
            == bool(left_out)
        for event in events:  # rows without a start of their own: the capture time
            assert event["message"]
            assert event["timestamp_desc"] in (PROCESS_START, DUMP_CAPTURE)
            assert event["datetime"].endswith("+00:00")
        assert any(e["timestamp_desc"] == PROCESS_START for e in events)
    envars = [json.loads(x) for x in (outdir / "envars.ecs.jsonl").read_text().splitlines()]
    assert any(d["process"].get("env_vars") for d in envars)

    _render_in_chromium(outdir / "report.html")


def _render_in_chromium(page: Path) -> None:
    """Open the report in a headless Chromium: the plots draw and no script fails."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium (Debian package chromium; .ci/run installs it)")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          "--virtual-time-budget=15000", "--enable-logging=stderr", "--v=0",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert 'id="kvmfx-status">rendered<' in dom.stdout, dom.stdout[-2000:]
    for plot in ("plot-hosts", "plot-spread", "plot-rare"):  # plotly drew every plot
        assert re.search(f'<div id="{plot}" class="[^"]*js-plotly-plot', dom.stdout), plot
    assert dom.stdout.count('class="main-svg"') >= 3
    console_errors = [line for line in dom.stderr.splitlines()
                      if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert console_errors == []


def test_batch_on_the_embedded_local_cluster_resumes(fleet, reference, outdir):
    dumps = [fleet.paths[0], fleet.paths[1]]
    r = kvmfx_batch(*dumps, "-c", "psaux", "-o", str(outdir), "--workers", "1",
                    "--format", "timesketch", "--output-format", "csv", "--format", "rows")
    assert r.returncode == 0, r.stderr
    assert "[2/2]" in r.stderr and "2 ok" in r.stderr  # a plain progress line per dump
    rows = (outdir / "psaux.csv").read_text().splitlines()
    assert len(rows) == 1 + sum(len(reference[(p, "psaux")][1]) for p in dumps)
    events = timesketch_parse(outdir / "psaux.timesketch.csv")
    assert len(events) == len(rows) - 1 and all(e["message"] for e in events)
    again = kvmfx_batch(*dumps, "-c", "psaux", "-o", str(outdir), "--workers", "1")
    assert again.returncode == 0
    assert "2 dumps done before, skipped" in again.stderr and "(2 skipped" in again.stderr


@pytest.mark.parametrize("args, status, words", [
    (["-o", "OUT"], 2, "Missing option '-c'"),
    (["-c", "no-such", "-o", "OUT"], 2, "unknown command 'no-such'"),
    (["-c", "psaux", "-o", "OUT", "--format", "pdf"], 2, "'pdf' is not one of"),
    (["-c", "psaux", "-o", "OUT", "--scheduler", "no port"], 2, "--scheduler: missing port"),
    (["-c", "psaux", "-o", "OUT", "--memory-limit", "lots"], 2, "--memory-limit: Could not"),
])
def test_usage_errors_are_one_line(tmp_path, args, status, words):
    r = kvmfx_batch(str(tmp_path), *[str(tmp_path / "out") if a == "OUT" else a for a in args])
    assert r.returncode == status and words in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_bad_inputs_are_one_line(tmp_path):
    bad = tmp_path / "hosts.json"
    bad.write_text("[{\"host\": \"web01\"}]")
    r = kvmfx_batch(str(bad), "-c", "psaux", "-o", str(tmp_path / "out"))
    assert r.returncode == 3 and "manifest entry without a path" in r.stderr
    assert r.stderr.count("\n") == 1
    broken = tmp_path / "hosts.csv"
    broken.write_text("host,file\nweb01,a.core\n")
    r = kvmfx_batch(str(broken), "-c", "psaux", "-o", str(tmp_path / "out"))
    assert r.returncode == 3 and "'path' column" in r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    r = kvmfx_batch(str(empty), "-c", "psaux", "-o", str(tmp_path / "out"))
    assert r.returncode == 3 and "no dumps found" in r.stderr
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = kvmfx_batch(str(empty), "-c", "psaux", "-o", str(afile))
    assert r.returncode == 3 and "not a directory" in r.stderr

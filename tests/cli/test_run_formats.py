"""``kvmfx run CMD DUMP --format jsonl|timesketch|ecs`` on real dumps: rows with the dump's
identity, Timesketch events and ECS documents, line for line what ``kvmfx batch`` writes for
that dump and command (the same mappings, kvmfx/exporters.py)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kvmfx.cli import main
from kvmfx.exporters import DUMP_CAPTURE, IDENTITY_FIELDS, NO_TIME, PROCESS_START
from tests.batch.ecs_check import problems
from tests.factory import get_fixture

#: Commands with start times (psaux), with processes but no start (envars: from pslist), and
#: with no time at all (uname, loadavg: the dump's capture time).
COMMANDS = ("psaux", "envars", "uname", "loadavg")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["run", *args])


def lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@cache
def dump(scenario: str = "basic", key: str = "elf") -> str:
    return str(get_fixture(scenario).path(key))


@cache
def facts(path: str) -> dict[str, Any]:
    """What kvmfx says of the dump otherwise: info, uname, boottime."""
    info = CliRunner().invoke(main, ["info", path, "--format", "json"])
    assert info.exit_code == 0, info.stderr
    (uname,) = json.loads(run("uname", path, "--format", "json").stdout)
    (boot,) = json.loads(run("boottime", path, "--format", "json").stdout)
    return {"info": json.loads(info.stdout), "uname": uname, "boot": boot}


def test_jsonl_rows_carry_the_dump_identity_then_the_json_rows():
    path = dump()
    plain = run("psaux", path, "--format", "json")
    got = run("psaux", path, "--format", "jsonl")
    assert plain.exit_code == got.exit_code == 0, got.stderr
    rows, expected = lines(got), json.loads(plain.stdout)
    assert len(rows) == len(expected) > 10
    info = facts(path)["info"]
    identity = {"dump_path": os.path.abspath(path),
                "dump_host": facts(path)["uname"]["nodename"],
                "kernel_release": info["kernel_release"], "build_id": info["build_id"],
                "dump_sha256": None, "kvmfx_version": __import__("kvmfx").__version__,
                "command": "psaux"}
    for row, want in zip(rows, expected, strict=True):
        assert list(row) == [*IDENTITY_FIELDS, *want]
        assert row == {**identity, **want}
    # json, csv and text stay as they were: the declared columns only
    assert list(expected[0]) == ["pid", "ppid", "uid", "gid", "comm", "state", "start_time",
                                 "argv", "partial", "missing"]
    csv_head = run("psaux", path, "--format", "csv").stdout.splitlines()[0]
    assert csv_head == ",".join(expected[0])


def test_host_and_hash_label_every_row():
    path = dump()
    got = run("uname", path, "--format", "jsonl", "--host", "web01", "--hash")
    assert got.exit_code == 0, got.stderr
    (row,) = lines(got)
    assert row["dump_host"] == "web01"
    assert row["dump_sha256"] == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert row["nodename"] == facts(path)["uname"]["nodename"]  # the row's own field stays


@pytest.mark.parametrize("args", [("--host", "web01"), ("--hash",)], ids=" ".join)
@pytest.mark.parametrize("fmt", ["text", "json", "csv"])
def test_identity_options_with_a_format_without_identity_are_usage_errors(fmt, args):
    got = run("uname", dump(), "--format", fmt, *args)
    assert got.exit_code == 2 and got.stdout == ""
    assert got.stderr.count("\n") == 1 and args[0] in got.stderr, got.stderr


def test_hash_of_the_live_system_is_a_usage_error():
    got = run("uname", "--format", "jsonl", "--hash")
    assert got.exit_code == 2 and got.stdout == ""
    assert got.stderr.count("\n") == 1 and "--hash needs a dump" in got.stderr


def _batch_outputs(path: str, tmp: Path) -> dict[str, dict[str, list[str]]]:
    """The files ``kvmfx batch -c psaux -c envars -c uname -c loadavg --format rows
    --format timesketch --format ecs`` writes for ``path`` (its task and writer, run here
    without a cluster): command -> kind -> lines."""
    from kvmfx.batch import BatchState, DumpSpec, TaskOptions, _registry, run_dump, write_outputs

    spec = DumpSpec(os.path.abspath(path))
    state = BatchState(tmp)
    state.record(spec, run_dump(spec, TaskOptions(COMMANDS)))
    write_outputs(state, COMMANDS, _registry(()), kinds=("rows", "timesketch", "ecs"))
    return {c: {kind: (tmp / f"{c}.{suffix}").read_text(encoding="utf-8").splitlines()
                for kind, suffix in (("jsonl", "jsonl"), ("timesketch", "timesketch.jsonl"),
                                     ("ecs", "ecs.jsonl"))} for c in COMMANDS}


def _without_created(doc: dict[str, Any]) -> dict[str, Any]:
    """An ECS document without ``event.created`` (when it was written: run and batch differ
    in that alone; and in ``@timestamp`` where that is the time of writing, ECS's rule
    for a document without a time of its own)."""
    out = copy.deepcopy(doc)
    created = out["event"].pop("created")
    if out["@timestamp"] == created:
        out["@timestamp"] = "event.created"
    return out


@pytest.mark.parametrize("scenario,key", [("basic", "elf"), ("bullseye", "mdf-lzo"),
                                          ("backports", "kdump-zlib")])
def test_run_writes_what_batch_writes_for_the_dump_and_command(scenario, key, tmp_path):
    path = dump(scenario, key)
    batch = _batch_outputs(path, tmp_path)
    for command in COMMANDS:
        plain = run(command, path, "--format", "jsonl")
        assert plain.stdout.splitlines() == batch[command]["jsonl"], command

        ts = run(command, path, "--format", "timesketch")
        events = lines(ts)
        assert len(events) == len(batch[command]["jsonl"])
        timed = [json.dumps(e, ensure_ascii=False) for e in events if e["datetime"]]
        # batch leaves out the rows with no time at all; run writes them, time null
        assert timed == batch[command]["timesketch"], command
        untimed = [e for e in events if e["datetime"] is None]
        assert (ts.exit_code == 4) == bool(untimed), ts.stderr
        assert (f"{len(untimed)} event" in ts.stderr) == bool(untimed)

        ecs = run(command, path, "--format", "ecs")
        assert ecs.exit_code in (0, 4), ecs.stderr
        assert [_without_created(d) for d in lines(ecs)] == \
            [_without_created(json.loads(x)) for x in batch[command]["ecs"]], command


@pytest.mark.parametrize("scenario,key", [("basic", "elf"), ("trixie", "kdump-zlib"),
                                          ("backports", "kdump-zlib")])
def test_timesketch_events_are_timed_by_start_else_capture_else_null(scenario, key,
                                                                     tmp_path):
    """Each event's time: its process's start; else the dump's capture time (boottime's
    capture_time), said in timestamp_desc; else null, with the reason, never made up."""
    from tests.batch.timesketch_check import timesketch_parse

    path = dump(scenario, key)
    captured = facts(path)["boot"]["capture_time"]
    starts = {r["pid"]: r["start_time"] for r in json.loads(
        run("pslist", path, "--format", "json").stdout)}
    for command in COMMANDS:
        got = run(command, path, "--format", "timesketch")
        events = lines(got)
        assert events, command
        for event in events:
            start = event.get("start_time") or starts.get(event.get("pid"))
            if start:
                want = (start, PROCESS_START)
            elif captured:
                want = (captured, DUMP_CAPTURE)
            else:
                want = (None, NO_TIME)
            assert (event["datetime"], event["timestamp_desc"]) == want, (command, event)
            assert ("no_time_reason" in event) == (want[0] is None)
            assert event["message"] and event["data_type"] == f"kvmfx:{command}"
        timed = [e for e in events if e["datetime"]]
        if timed:  # what Timesketch's importer reads from the file: every timed event
            target = tmp_path / f"{command}.jsonl"
            target.write_text("".join(json.dumps(e) + "\n" for e in timed))
            parsed = timesketch_parse(target)
            assert [p["message"] for p in parsed] == [e["message"] for e in timed]
            assert all(p["datetime"] and p["timestamp_desc"] for p in parsed)


def test_capture_time_is_after_boot_and_times_the_rows_without_one():
    path = dump()
    boot = facts(path)["boot"]
    assert boot["capture_time"] and boot["capture_time"] >= boot["boot_time"]
    (event,) = lines(run("uname", path, "--format", "timesketch"))
    assert event["datetime"] == boot["capture_time"]
    assert event["timestamp_desc"] == DUMP_CAPTURE and "no_time_reason" not in event
    (doc,) = lines(run("loadavg", path, "--format", "ecs"))
    assert doc["@timestamp"] == boot["capture_time"]


def test_ecs_documents_are_valid_ecs():
    path = dump()
    for command in COMMANDS:
        got = run(command, path, "--format", "ecs", "--hash", "--host", "web01")
        assert got.exit_code == 0, got.stderr
        docs = lines(got)
        assert docs and all(problems(d) == [] for d in docs), command
        assert {d["host"]["name"] for d in docs} == {"web01"}
        assert {d["kvmfx"]["dump"]["sha256"] for d in docs} == \
            {hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    envars = lines(run("envars", path, "--format", "ecs"))
    assert any(d["process"].get("env_vars") for d in envars)
    assert all(d["process"]["start"] == d["@timestamp"] for d in envars
               if "start" in d["process"])


def test_live_rows_without_a_time_go_out_null_with_the_reason():
    got = run("uname", "--format", "timesketch")
    assert got.exit_code == 4
    (event,) = lines(got)
    assert event["datetime"] is None and event["timestamp_desc"] == NO_TIME
    assert event["no_time_reason"] == \
        "uname rows have no time and the live system has no capture time"
    assert event["dump_path"] is None and event["dump_host"] == os.uname().nodename
    assert got.stderr.splitlines() == [
        "kvmfx: uname: 1 event without a time (datetime null; the reason in no_time_reason)",
        "kvmfx: uname: partial result (events without a time)"]

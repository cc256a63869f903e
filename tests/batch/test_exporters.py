"""Timesketch events and ECS documents built from command rows (kvmfx/exporters.py)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from kvmfx.exporters import (
    IDENTITY_FIELDS,
    DumpId,
    ecs_document,
    process_starts,
    timesketch_event,
    with_identity,
)
from tests.batch.ecs_check import problems

DUMP = DumpId(path="/evidence/web01.core", host="web01", kernel_release="6.1.0-57-amd64",
              build_id="6a2b4ac7", sha256="ab" * 32, kvmfx_version="0.1.0",
              machine="x86_64", nodename="web01.example")
CREATED = "2026-12-02T05:00:00+00:00"
PSAUX = {"pid": 412, "ppid": 1, "uid": 1000, "gid": 1000, "comm": "sshd", "state": "S",
         "start_time": "2026-12-02T02:12:17+00:00", "argv": ["/usr/sbin/sshd", "-D"],
         "partial": False, "missing": None}
ENVARS = {"pid": 412, "comm": "sshd", "envv": ["PATH=/usr/bin", "LANG=C"], "partial": False,
          "missing": None}


def test_plain_rows_carry_the_dump_identity_first():
    row = with_identity(PSAUX, DUMP, "psaux")
    assert list(row)[:len(IDENTITY_FIELDS)] == list(IDENTITY_FIELDS)
    assert row["dump_host"] == "web01" and row["build_id"] == "6a2b4ac7"
    assert row["command"] == "psaux" and row["pid"] == 412


def test_timesketch_event_has_the_required_fields_and_the_start_time():
    event = timesketch_event(PSAUX, DUMP, "psaux", {})
    assert event is not None
    assert event["datetime"] == "2026-12-02T02:12:17+00:00"
    assert event["timestamp_desc"] == "Process Start Time"
    assert "sshd" in event["message"] and "/usr/sbin/sshd -D" in event["message"]
    assert event["argv"] == ["/usr/sbin/sshd", "-D"] and event["dump_host"] == "web01"


def test_envars_rows_take_the_start_time_of_their_process():
    starts = process_starts({"psaux": [PSAUX], "envars": [ENVARS]})
    event = timesketch_event(ENVARS, DUMP, "envars", starts)
    assert event is not None and event["datetime"] == PSAUX["start_time"]
    assert "2 variables" in event["message"]


def test_a_row_without_a_time_is_no_timesketch_event():
    assert timesketch_event({"sysname": "Linux"}, DUMP, "uname", {}) is None


def test_a_row_without_a_time_takes_the_dump_capture_time_and_says_so():
    captured = replace(DUMP, captured="2026-12-02T02:12:37+00:00")
    event = timesketch_event({"sysname": "Linux"}, captured, "uname", {})
    assert event is not None and event["datetime"] == "2026-12-02T02:12:37+00:00"
    assert event["timestamp_desc"] == "Dump Capture Time" and "no_time_reason" not in event
    row = {**PSAUX, "start_time": None}  # a process whose start could not be read
    event = timesketch_event(row, captured, "psaux", {})
    assert event is not None and event["timestamp_desc"] == "Dump Capture Time"
    timed = timesketch_event(PSAUX, captured, "psaux", {})  # its own start comes first
    assert timed is not None and timed["timestamp_desc"] == "Process Start Time"
    doc = ecs_document({"sysname": "Linux"}, captured, "uname", {}, CREATED)
    assert doc["@timestamp"] == "2026-12-02T02:12:37+00:00" and problems(doc) == []


def test_an_untimed_row_kept_has_a_null_time_and_the_reason():
    event = timesketch_event({"sysname": "Linux"}, DUMP, "uname", {}, keep_untimed=True)
    assert event is not None and event["datetime"] is None
    assert event["timestamp_desc"] == "No Time Known"
    assert event["no_time_reason"] == \
        "uname rows have no time and the dump's capture time is not known"
    event = timesketch_event({**PSAUX, "start_time": None}, DUMP, "psaux", {},
                             keep_untimed=True)
    assert event is not None and event["no_time_reason"].startswith(
        "the process's start time could not be read")
    # a row field named like the reason is kept under kvmfx_
    event = timesketch_event({"no_time_reason": "x"}, DUMP, "uname", {}, keep_untimed=True)
    assert event is not None and event["kvmfx_no_time_reason"] == "x"


def test_ecs_process_document_is_valid_ecs():
    doc = ecs_document(PSAUX, DUMP, "psaux", {}, CREATED)
    assert problems(doc) == []
    assert doc["process"]["pid"] == 412 and doc["process"]["parent"]["pid"] == 1
    assert doc["process"]["args"] == ["/usr/sbin/sshd", "-D"]
    assert doc["process"]["command_line"] == "/usr/sbin/sshd -D"
    assert doc["process"]["start"] == doc["@timestamp"] == PSAUX["start_time"]
    assert doc["user"]["id"] == "1000" and doc["host"]["name"] == "web01"
    assert doc["kvmfx"]["dump"]["sha256"] == "ab" * 32


def test_ecs_envars_document_carries_env_vars():
    starts = process_starts({"psaux": [PSAUX]})
    doc = ecs_document(ENVARS, DUMP, "envars", starts, CREATED)
    assert problems(doc) == []
    assert doc["process"]["env_vars"] == ["PATH=/usr/bin", "LANG=C"]
    assert doc["@timestamp"] == PSAUX["start_time"]


def test_ecs_document_without_a_time_uses_the_creation_time():
    doc = ecs_document({"sysname": "Linux", "release": "6.1"}, DUMP, "uname", {}, CREATED)
    assert problems(doc) == [] and doc["@timestamp"] == CREATED
    assert doc["event"]["category"] == ["host"]


def test_the_checker_catches_what_is_not_ecs():
    doc = ecs_document(PSAUX, DUMP, "psaux", {}, CREATED)
    doc["process"]["pid"] = "412"
    doc["process"]["colour"] = "red"
    doc["event"]["kind"] = "snapshot"
    found = " ".join(problems(doc))
    assert "process.pid" in found and "process.colour" in found and "event.kind" in found


_text = st.text(max_size=20)
_maybe_int = st.one_of(st.none(), st.integers(-2**31, 2**63 - 1), st.booleans(), _text)
_times = st.one_of(st.none(), _text, st.datetimes(
    min_value=_dt.datetime(1971, 1, 1), max_value=_dt.datetime(2100, 1, 1),
    timezones=st.just(_dt.UTC)).map(lambda d: d.isoformat()))
_rows = st.fixed_dictionaries({}, optional={
    "pid": _maybe_int, "ppid": _maybe_int, "uid": _maybe_int, "gid": _maybe_int,
    "euid": _maybe_int, "pgid": _maybe_int, "tid": _maybe_int, "comm": st.one_of(
        st.none(), _text), "start_time": _times,
    "argv": st.one_of(st.none(), st.lists(_text, max_size=5)),
    "envv": st.one_of(st.none(), st.lists(_text, max_size=5)),
    "partial": st.one_of(st.none(), st.booleans()),
    "missing": st.one_of(st.none(), st.dictionaries(_text, _text, max_size=2)),
    "_hidden": _text, "message": _text, "datetime": _text})


@settings(max_examples=300, deadline=None)
@given(row=_rows, command=st.sampled_from(["psaux", "envars", "pslist", "threads", "uname"]))
def test_any_row_gives_valid_ecs_and_timesketch(row, command):
    assert problems(ecs_document(row, DUMP, command, {}, CREATED)) == []
    event = timesketch_event(row, DUMP, command, {})
    if event is not None:
        assert {"message", "datetime", "timestamp_desc"} <= event.keys()
        assert _dt.datetime.fromisoformat(event["datetime"]).utcoffset() == _dt.timedelta(0)
        assert not any(k.startswith("_") for k in event)
        if "message" in row:  # a row's own field of that name is kept beside Timesketch's
            assert event["kvmfx_message"] == row["message"]

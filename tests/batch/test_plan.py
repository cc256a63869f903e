"""Which dumps a batch reads: files, directories (by content), CSV and JSON manifests."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmfx.batch import DumpSpec, plan, read_manifest
from kvmfx.errors import KvmError
from kvmfx.registry import load_registry


def _registry():
    registry = load_registry()
    registry.collect_all()
    return registry


def test_a_directory_gives_the_files_a_format_recognises(tmp_path):
    d = tmp_path / "dumps"
    (d / "sub").mkdir(parents=True)
    raw = d / "sub" / "host1.raw"
    raw.write_bytes(b"\0" * (2 << 20))  # whole pages: a raw image
    (d / "notes.txt").write_text("not a dump")
    (d / "odd.bin").write_bytes(b"\1" * ((2 << 20) + 3))  # not whole pages
    (d / ".hidden.raw").write_bytes(b"\0" * (2 << 20))
    assert plan([str(d)], _registry()) == [DumpSpec(str(raw))]


def test_a_file_named_is_always_a_dump(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    assert plan([str(f), str(f)], _registry()) == [DumpSpec(str(f))]


def test_manifests_name_hosts_and_files(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"dumps": [
        {"path": "a.core", "host": "web01", "N": "vmlinux", "W": "swap.img"}]}))
    (tmp_path / "m.csv").write_text("path,host,execfile,swapfile\nb.core,db01,,\n")
    assert read_manifest(str(tmp_path / "m.json")) == [DumpSpec(
        str(tmp_path / "a.core"), "web01", str(tmp_path / "vmlinux"),
        str(tmp_path / "swap.img"))]
    assert plan([str(tmp_path / "m.csv"), str(tmp_path / "m.json")], _registry()) == [
        DumpSpec(str(tmp_path / "b.core"), "db01"),
        DumpSpec(str(tmp_path / "a.core"), "web01", str(tmp_path / "vmlinux"),
                 str(tmp_path / "swap.img"))]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(
    lambda b: b.decode("latin-1"))), suffix=st.sampled_from([".csv", ".json"]))
def test_any_manifest_is_read_or_refused_in_one_line(tmp_path, text, suffix):
    manifest = tmp_path / f"m{suffix}"
    manifest.write_text(text, encoding="utf-8")
    try:
        specs = read_manifest(str(manifest))
    except KvmError as exc:
        assert "\n" not in str(exc) and str(manifest) in str(exc)
    else:
        assert all(os.path.isabs(s.path) for s in specs)


def test_a_nul_in_a_manifest_path_is_refused(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,host\nweb\0.core,web01\n")
    with pytest.raises(KvmError, match="manifest path with a NUL character"):
        read_manifest(str(manifest))

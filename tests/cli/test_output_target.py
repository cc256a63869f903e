"""Where output goes: a closed pipe is a normal end; an unusable -o path is a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli.test_live_commands import kvmfx


@pytest.mark.parametrize("args", [
    ("run", "psaux", "--format", "json"), ("run", "psaux", "--format", "jsonl"),
    ("run", "psaux", "--format", "csv"), ("run", "psaux", "--format", "text"),
    ("info",), ("plugins",), ("profile", "list"),
    ("--help",), ("run", "--help"), ("run", "psaux", "--help"), ("--version",),
], ids=" ".join)
def test_a_closed_pipe_is_a_normal_end(args):
    # The reader is gone before kvmfx writes anything (``kvmfx ... | head -0``): every write
    # meets a broken pipe, whatever the size of the output.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "kvmfx.cli", *args],
                           stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (0, "")


def test_a_pipe_closed_after_the_first_line_is_a_normal_end():
    p = subprocess.Popen([sys.executable, "-m", "kvmfx.cli", "run", "envars", "--format",
                          "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert first.startswith(b"{") and err == ""


def test_output_into_a_missing_directory_is_a_one_line_error(tmp_path):
    target = tmp_path / "nonexistent" / "x.json"
    r = kvmfx("run", "psaux", "--format", "json", "-o", str(target))
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and str(target) in r.stderr, r.stderr
    assert "internal error" not in r.stderr and r.stdout == ""


def test_output_onto_a_directory_is_a_one_line_error(tmp_path):
    r = kvmfx("run", "uname", "-o", str(tmp_path))
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and str(tmp_path) in r.stderr, r.stderr
    assert "internal error" not in r.stderr
    r = kvmfx("info", "-o", str(tmp_path))
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and str(tmp_path) in r.stderr, r.stderr


def test_a_failed_run_leaves_an_existing_output_file(tmp_path):
    out = tmp_path / "keep.json"
    out.write_text("earlier\n")
    r = kvmfx("run", "psaux", str(tmp_path / "missing.core"), "-o", str(out))
    assert r.returncode == 3, r.stderr
    assert out.read_text() == "earlier\n"

"""No bad input ends in "internal error" (exit 1) or a traceback: each is a one-line error
with the documented exit status, or a normal answer."""

from __future__ import annotations

import os

import pytest

from tests.cli.test_live_commands import kvmfx


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("bad-inputs")
    (d / "empty.bin").write_bytes(b"")
    (d / "random.bin").write_bytes(os.urandom(64 * 1024))
    (d / "notes.txt").write_text("nothing like a kernel\n" * 500)
    return {"dir": str(d), "empty": str(d / "empty.bin"), "random": str(d / "random.bin"),
            "text": str(d / "notes.txt"), "missing": str(d / "missing" / "x.json"),
            "nonexistent": str(d / "nonexistent")}


INVOCATIONS = [
    ("run", "--help"), ("run", "-h"), ("profile", "--help"), ("profile", "-h"),
    ("profile", "list"), ("profile", "build", "--help"), ("run", "psaux", "--help"),
    ("run",), ("profile",), ("run", "no-such"), ("profile", "no-such"),
    ("run", "psaux", "--format", "xml"), ("run", "pslist", "--bogus"),
    ("run", "pslist", "--pid", "one"),
    ("run", "psaux", "-o", "{missing}"), ("run", "psaux", "-o", "{dir}"),
    ("info", "-o", "{dir}"), ("info", "-o", "{missing}"),
    ("run", "psaux", "{dir}"), ("info", "{dir}"), ("run", "pslist", "-M", "{dir}"),
    ("info", "{random}"), ("info", "{text}"), ("info", "{empty}"),
    ("run", "pslist", "{random}"), ("run", "psaux", "{text}"), ("run", "uname", "{empty}"),
    ("run", "uname", "{random}", "-M", "{empty}"),
    ("--plugin-dir", "{nonexistent}", "plugins"), ("--plugin-dir", "{text}", "run", "uname"),
    ("run", "psaux", "-N", "{nonexistent}"), ("run", "psaux", "-N", "{dir}"),
    ("run", "psaux", "-W", "{nonexistent}"), ("run", "psaux", "-W", "{empty}"),
    ("run", "dmesg"), ("profile", "build"), ("--types", "isf", "run", "pslist", "{random}"),
]


@pytest.mark.parametrize("args", INVOCATIONS, ids=" ".join)
def test_no_invocation_ends_in_an_internal_error(args, files):
    argv = [a.format(**files) for a in args]
    r = kvmfx(*argv)
    assert "internal error" not in r.stderr, (argv, r.stderr)
    assert "Traceback" not in r.stderr, (argv, r.stderr)
    assert r.returncode != 1, (argv, r.returncode, r.stderr)
    if r.returncode in (2, 3) and "Usage:" not in r.stderr:
        assert r.stderr.startswith("kvmfx: ") and r.stderr.count("\n") == 1, (argv, r.stderr)

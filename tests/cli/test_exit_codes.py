"""Documented exit statuses and one-line errors (docs/cli.md)."""

from __future__ import annotations

from tests.cli.test_live_commands import kvmfx


def test_unknown_command_is_a_usage_error():
    r = kvmfx("run", "no-such-command")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown command 'no-such-command'" in r.stderr


def test_bad_option_is_a_usage_error():
    r = kvmfx("run", "pslist", "--no-such-option")
    assert r.returncode == 2


def test_unreadable_input_names_the_file(tmp_path):
    r = kvmfx("run", "pslist", str(tmp_path / "missing.core"))
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1
    assert "missing.core" in r.stderr and "Traceback" not in r.stderr


def test_unrecognised_dump_names_file_and_offset(tmp_path):
    bogus = tmp_path / "bogus.core"
    bogus.write_bytes(b"")
    r = kvmfx("info", str(bogus))
    assert r.returncode == 3
    assert "bogus.core" in r.stderr and "Traceback" not in r.stderr


def test_debug_shows_a_traceback(tmp_path):
    r = kvmfx("--debug", "run", "pslist", str(tmp_path / "missing.core"))
    assert r.returncode == 3
    assert "Traceback" in r.stderr


def test_help_for_a_command_lists_its_options():
    r = kvmfx("run", "psaux", "--help")
    assert r.returncode == 0
    assert "--pid" in r.stdout and "--format" in r.stdout

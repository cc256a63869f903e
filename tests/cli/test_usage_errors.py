"""Usage errors and unusable inputs: one line on stderr, the documented exit status."""

from __future__ import annotations

import json
import os

from tests.cli.test_live_commands import kvmfx


def _one_line(stderr: str) -> bool:
    return stderr.count("\n") == 1 and stderr.startswith("kvmfx: ")


def test_an_unknown_format_is_a_one_line_usage_error():
    r = kvmfx("run", "psaux", "--format", "xml")
    assert r.returncode == 2, r.stderr
    assert _one_line(r.stderr), r.stderr
    assert "'xml'" in r.stderr and "Usage:" not in r.stderr


def test_a_bad_option_value_is_a_one_line_usage_error():
    r = kvmfx("run", "pslist", "--pid", "one")
    assert r.returncode == 2, r.stderr
    assert _one_line(r.stderr), r.stderr


def test_a_missing_plugin_dir_is_an_error_at_start(tmp_path):
    missing = tmp_path / "nonexistent"
    r = kvmfx("--plugin-dir", str(missing), "run", "uname")
    assert r.returncode in (2, 3), r.stderr
    assert _one_line(r.stderr) and str(missing) in r.stderr, r.stderr
    assert r.stdout == ""


def test_a_plugin_dir_that_is_a_file_is_an_error_at_start(tmp_path):
    not_dir = tmp_path / "plugin.txt"
    not_dir.write_text("")
    r = kvmfx("--plugin-dir", str(not_dir), "plugins")
    assert r.returncode in (2, 3), r.stderr
    assert _one_line(r.stderr) and str(not_dir) in r.stderr, r.stderr


def test_two_corefiles_are_refused(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    other = tmp_path / "other.core"
    other.write_bytes(b"\0" * 4096)
    for args in (("run", "uname", str(other), "-M", str(empty)),
                 ("info", str(other), "--core", str(empty))):
        r = kvmfx(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert _one_line(r.stderr) and str(empty) in r.stderr, (args, r.stderr)


def test_a_directory_as_corefile_is_unusable_input(tmp_path):
    for args in (("run", "psaux", str(tmp_path)), ("info", str(tmp_path)),
                 ("run", "pslist", "-M", str(tmp_path))):
        r = kvmfx(*args)
        assert r.returncode == 3, (args, r.stderr)
        assert _one_line(r.stderr) and str(tmp_path) in r.stderr, (args, r.stderr)
        assert "internal error" not in r.stderr, (args, r.stderr)


def _unrecognisable_files(tmp_path):
    noise = tmp_path / "random.bin"
    noise.write_bytes(os.urandom(64 * 1024))
    text = tmp_path / "notes.txt"
    text.write_text("Just some notes, nothing like a kernel.\n" * 200)
    return noise, text


def test_info_on_a_file_with_no_kernel_exits_3(tmp_path):
    for path in _unrecognisable_files(tmp_path):
        for fmt in ("text", "json"):
            r = kvmfx("info", str(path), "--format", fmt)
            assert r.returncode == 3, (path.name, fmt, r.returncode, r.stderr)
            assert _one_line(r.stderr) and str(path) in r.stderr, (path.name, r.stderr)


def test_info_prints_each_reason_once(tmp_path):
    for path in _unrecognisable_files(tmp_path):
        errors = json.loads(kvmfx("info", str(path), "--format", "json").stdout)["errors"]
        reason = errors.get("arch") or errors["memory"]
        r = kvmfx("info", str(path))
        assert r.stdout.count(reason) == 1, (reason, r.stdout)
        assert r.stderr.count(reason) <= 1, (reason, r.stderr)
        error_lines = [ln for ln in r.stdout.splitlines() if ln.startswith("error")]
        assert error_lines, r.stdout
        assert len(set(error_lines)) == len(error_lines), error_lines


def test_info_on_the_live_system_succeeds():
    r = kvmfx("info", "--format", "json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["live"] is True and info["kernel_release"] == os.uname().release

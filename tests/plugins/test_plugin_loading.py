"""Plugins load from entry points, --plugin-dir and KVMFX_PLUGIN_PATH; broken ones are skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from kvmfx.registry import load_registry
from tests.cli.test_live_commands import kvmfx

ROOT = Path(__file__).resolve().parents[2]

DROPIN = textwrap.dedent('''
    from kvmfx import hookimpl
    from kvmfx.commands import Column, Command

    class Count(Command):
        def __init__(self):
            super().__init__(name="dropcount", description="Count processes (drop-in).",
                             columns=[Column("count", "int")])

        def run(self, session, options):
            yield {"count": sum(1 for _ in session.processes())}

    @hookimpl
    def kvmfx_commands():
        return [Count()]
''')


def test_plugin_dir_plugin_is_listed_and_runs(tmp_path):
    (tmp_path / "dropcount.py").write_text(DROPIN)
    r = kvmfx("--plugin-dir", str(tmp_path), "plugins")
    assert r.returncode == 0, r.stderr
    assert any(line.split()[:1] == ["dropcount"] for line in r.stdout.splitlines())
    r = kvmfx("--plugin-dir", str(tmp_path), "run", "dropcount", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["count"] > 1


def test_plugin_path_environment_variable(tmp_path):
    (tmp_path / "dropcount.py").write_text(DROPIN)
    env = dict(os.environ, KVMFX_PLUGIN_PATH=str(tmp_path))
    r = kvmfx("run", "dropcount", "--format", "jsonl", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["count"] > 1


def test_broken_plugin_is_reported_by_name_and_skipped(tmp_path):
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "badhook.py").write_text(
        "from kvmfx import hookimpl\n@hookimpl\ndef kvmfx_commands():\n    return 1/0\n")
    r = kvmfx("--plugin-dir", str(tmp_path), "run", "uname", "--format", "json")
    assert r.returncode == 0
    assert "broken.py" in r.stderr and "boom at import" in r.stderr
    assert "badhook" in r.stderr and "ZeroDivisionError" in r.stderr
    assert json.loads(r.stdout)[0]["sysname"] == "Linux"
    reg = load_registry([str(tmp_path)])
    assert "pslist" in reg.commands
    assert {f.name.split("/")[-1].split(":")[-1] for f in reg.failures} >= {"broken.py"}


def test_builtins_register_through_entry_points():
    from importlib.metadata import entry_points
    names = {ep.value for ep in entry_points(group="kvmfx")}
    assert "kvmfx_plugins.commands.ps" in names
    reg = load_registry(use_entry_points=False)
    assert reg.commands == {}  # nothing is built in except through entry points


def test_example_package_installs_and_runs(tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--no-build-isolation", "--target", str(target),
                        str(ROOT / "examples" / "kvmfx-usercount")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]))
    r = kvmfx("plugins", env=env)
    assert "usercount" in r.stdout, r.stderr
    r = kvmfx("run", "usercount", "--format", "json", "--min", "1", env=env)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert {"uid": os.getuid()} .items() <= rows[0].items() or any(
        row["uid"] == os.getuid() for row in rows)
    assert sum(row["processes"] for row in rows) > 1

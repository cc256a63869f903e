"""Entry points are remembered between starts, and found again when a distribution changes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = textwrap.dedent('''
    from kvmfx import hookimpl
    from kvmfx.commands import Column, Command

    class Hello(Command):
        def __init__(self):
            super().__init__(name="{name}", description="Say hello.",
                             columns=[Column("greeting", "str")])

        def run(self, session, options):
            yield {{"greeting": "hello"}}

    @hookimpl
    def kvmfx_commands():
        return [Hello()]
''')

#: run in a fresh interpreter with ``site_dir`` on sys.path: the command names the registry
#: has, and whether importlib.metadata had to be imported to find them
PROBE = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from kvmfx.registry import load_registry
    reg = load_registry()
    print(json.dumps({"commands": sorted(reg.commands),
                      "metadata": "importlib.metadata" in sys.modules}))
''')


def _install(site: Path, dist: str, module: str, command: str) -> None:
    """A distribution as pip leaves it: a module and a dist-info with entry_points.txt."""
    (site / f"{module}.py").write_text(PLUGIN.format(name=command))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"  # as pip names it
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[kvmfx]\n{dist} = {module}\n")


def _probe(site: Path, cache: Path) -> dict[str, object]:
    import json

    env = dict(os.environ, KVMFX_ENTRY_POINT_CACHE=str(cache))
    r = subprocess.run([sys.executable, "-c", PROBE, str(site)], capture_output=True,
                       text=True, env=env, timeout=120, cwd=site)
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout)
    return result


def test_a_second_start_reads_the_remembered_entry_points(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache" / "entry-points.json"
    site.mkdir()
    _install(site, "kvmfx-hello", "kvmfx_hello", "hello")
    first = _probe(site, cache)
    assert "hello" in first["commands"] and "pslist" in first["commands"]  # type: ignore
    assert first["metadata"] is True and cache.exists()
    second = _probe(site, cache)
    assert second == {"commands": first["commands"], "metadata": False}


def test_installing_or_changing_a_distribution_is_seen(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "entry-points.json"
    site.mkdir()
    _install(site, "kvmfx-hello", "kvmfx_hello", "hello")
    assert "hello" in _probe(site, cache)["commands"]  # type: ignore[operator]
    _install(site, "kvmfx-other", "kvmfx_other", "other")  # a new distribution
    got = _probe(site, cache)
    assert {"hello", "other"} <= set(got["commands"]) and got["metadata"] is True  # type: ignore
    # an entry point rewritten in place to name another module
    (site / "kvmfx_hello2.py").write_text(PLUGIN.format(name="hello2"))
    info = site / "kvmfx_hello-1.0.dist-info" / "entry_points.txt"
    info.write_text("[kvmfx]\nkvmfx-hello = kvmfx_hello2\n")
    got = _probe(site, cache)
    assert "hello2" in got["commands"] and "hello" not in got["commands"]  # type: ignore


def test_an_unreadable_or_corrupt_cache_is_only_a_cache(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "entry-points.json"
    site.mkdir()
    cache.write_text("{not json")
    assert "pslist" in _probe(site, cache)["commands"]  # type: ignore[operator]
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert "pslist" in _probe(site, blocked / "entry-points.json")["commands"]  # type: ignore


def test_scripts_in_different_folders_share_the_remembered_entry_points(tmp_path):
    """sys.path[0] is the running script's folder: two scripts elsewhere (a console script
    and a program of the user's) find the same distributions and read the metadata once."""
    import json

    cache = tmp_path / "entry-points.json"
    seen = []
    for folder in ("one", "two", "one"):
        where = tmp_path / folder
        where.mkdir(exist_ok=True)
        script = where / "probe.py"
        script.write_text(PROBE.replace("sys.path.insert(0, sys.argv[1])", ""))
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=dict(os.environ, KVMFX_ENTRY_POINT_CACHE=str(cache)),
                           timeout=120, cwd=where)
        assert r.returncode == 0, r.stderr
        seen.append(json.loads(r.stdout)["metadata"])
    assert seen[1:] == [False, False]


def test_the_user_cache_keeps_the_newest_interpreters_entry_points(tmp_path, monkeypatch):
    """Each interpreter and search path has a file of its own in the user's cache: writing
    one removes all but the newest few, so virtual environments that come and go do not
    fill the cache."""
    from kvmfx import registry

    monkeypatch.delenv("KVMFX_ENTRY_POINT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "kvmfx"
    folder.mkdir()
    for k in range(registry.KEEP_ENTRY_POINT_FILES + 5):
        old = folder / f"entry-points-{k:08x}.json"
        old.write_text("{}")
        os.utime(old, ns=(k * 10**9, k * 10**9))
    (folder / "profile.zip").write_text("")
    specs = registry.entry_point_specs()
    assert ("commands_ps", "kvmfx_plugins.commands.ps") in specs
    left = sorted(p.name for p in folder.glob("entry-points-*.json"))
    assert len(left) == registry.KEEP_ENTRY_POINT_FILES
    assert os.path.basename(registry._cache_path()) in left
    assert "entry-points-00000000.json" not in left
    assert f"entry-points-{registry.KEEP_ENTRY_POINT_FILES + 4:08x}.json" in left
    assert (folder / "profile.zip").exists()

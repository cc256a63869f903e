"""A command-line start imports, of the plugins that only provide commands, the one whose
command runs: which plugin provides which command is remembered with the entry points, and
the registry answers exactly as one that loaded every plugin."""

from __future__ import annotations

import json
import textwrap

import pytest

from kvmfx import hookimpl
from kvmfx.registry import load_registry


@pytest.fixture
def cache(tmp_path, monkeypatch):
    where = tmp_path / "entry-points.json"
    monkeypatch.setenv("KVMFX_ENTRY_POINT_CACHE", str(where))
    monkeypatch.delenv("KVMFX_PLUGIN_PATH", raising=False)
    return where


def _kinds(registry) -> list[tuple[str, str]]:
    return [(name, type(cmd).__module__) for name, cmd in registry.commands.items()]


def test_the_first_start_loads_every_plugin_and_the_next_only_the_command_asked_for(cache):
    full = load_registry(defer_commands=True)
    assert full._deferred == {}
    index = json.loads(cache.read_text())["plugins"]["kvmfx"]
    assert index["commands_ps"]["hooks"] == ["kvmfx_commands"]
    assert "pslist" in index["commands_ps"]["commands"]
    assert "kvmfx_dump_formats" in index["formats_elf"]["hooks"]

    made = cache.read_text()
    lazy = load_registry(defer_commands=True)
    assert cache.read_text() == made  # read, not written again
    assert {"commands_ps", "commands_caps", "commands_modules"} <= set(lazy._deferred)
    assert not {"formats_elf", "linux_tasks", "arch"} & set(lazy._deferred)
    lazy.collect_all()
    assert lazy._deferred and not lazy.failures
    assert lazy.find_command("pslist").name == "pslist"
    assert "commands_ps" not in lazy._deferred and "commands_caps" in lazy._deferred
    assert lazy.command("caps").name == "caps" and "commands_caps" not in lazy._deferred
    assert lazy.find_command("no-such-command") is None and lazy._deferred == {}
    assert _kinds(lazy) == _kinds(full)  # every command, in the same order


def test_the_api_loads_every_plugin(cache):
    load_registry(defer_commands=True)
    assert load_registry()._deferred == {}


def test_a_plugin_changed_since_the_index_was_made_loads_everything(cache):
    load_registry(defer_commands=True)
    data = json.loads(cache.read_text())
    data["plugins"]["kvmfx"]["commands_caps"]["stat"][0] += 1
    cache.write_text(json.dumps(data))
    assert load_registry(defer_commands=True)._deferred == {}
    assert load_registry(defer_commands=True)._deferred  # indexed again


def test_a_command_another_plugin_also_names_is_the_one_a_full_registry_picks(cache,
                                                                              tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "shadow.py").write_text(textwrap.dedent('''
        from kvmfx import hookimpl
        from kvmfx.commands import Column, Command

        class Caps(Command):
            def __init__(self):
                super().__init__(name="caps", description="not the real one",
                                 columns=[Column("x", "int")])

        @hookimpl
        def kvmfx_commands():
            return [Caps()]
    '''))
    full = load_registry([str(folder)], defer_commands=True)
    lazy = load_registry([str(folder)], defer_commands=True)
    assert "commands_caps" in lazy._deferred
    assert lazy.find_command("caps") is not None
    assert type(lazy.find_command("caps")).__module__ == \
        type(full.find_command("caps")).__module__ == "kvmfx_plugins.commands.caps"
    assert _kinds(lazy) == _kinds(full)


class _Wrapper:
    """A plugin wrapping the command hook (it sees every plugin's answer)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl(wrapper=True)
    def kvmfx_commands(self):
        answers = yield
        self.seen = [c.name for found in answers for c in found or ()]
        return answers


def test_a_wrapper_of_the_command_hook_sees_every_plugin(cache):
    load_registry(defer_commands=True)
    wrapper = _Wrapper()
    lazy = load_registry(defer_commands=True, extra_plugins=[wrapper])
    assert lazy._deferred
    assert lazy.find_command("pslist") is not None
    assert lazy._deferred == {} and {"pslist", "caps", "lsmod"} <= set(wrapper.seen)

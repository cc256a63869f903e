"""The registry finds in a plugin module the hook implementations pluggy finds, and only
those (kvmfx.registry skips the names that cannot be one before pluggy looks)."""

from __future__ import annotations

import types

import pluggy

from kvmfx import hookspecs
from kvmfx.registry import HOOKS, _load_spec, _PluginManager, entry_point_specs

TRICKY = '''
import functools, os
from kvmfx import hookimpl
from kvmfx.commands import Column, Command

class Named(Command):
    def __init__(self, name):
        super().__init__(name=name, columns=[Column("x")])

@hookimpl
def kvmfx_commands():
    return [Named("plain")]

@hookimpl(specname="kvmfx_commands")
def more_commands():
    return [Named("by-specname")]

@hookimpl(tryfirst=True)
def kvmfx_os_profiles():
    return []

alias = kvmfx_commands              # the same function under a name no hook has
def helper():                       # a function without the marker
    return 1
getpid = os.getpid                  # a builtin
partial = functools.partial(helper)
method = Named("m").run             # a bound method
static = staticmethod(helper)
klass = classmethod(helper)
number, text, module = 1, "kvmfx_commands", os
'''


def _impls(manager_class: type, plugins: list[tuple[str, object]]) -> dict[str, list]:
    pm = manager_class(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    return {hook: [(i.plugin_name, i.function.__name__, i.tryfirst, i.trylast, i.wrapper,
                    i.hookwrapper) for i in caller.get_hookimpls()]
            for hook, caller in vars(pm.hook).items()}


def _tricky() -> types.ModuleType:
    module = types.ModuleType("kvmfx_test_tricky")
    exec(compile(TRICKY, "<tricky>", "exec"), module.__dict__)
    return module


def test_the_builtin_plugins_hooks_are_pluggys():
    plugins = [(name, _load_spec(value)) for name, value in entry_point_specs()]
    found = _impls(_PluginManager, plugins)
    assert found == _impls(pluggy.PluginManager, plugins)
    assert sum(map(len, found.values())) >= len(plugins)


def test_a_module_with_every_kind_of_name_gives_pluggys_hooks():
    found = _impls(_PluginManager, [("tricky", _tricky())])
    assert found == _impls(pluggy.PluginManager, [("tricky", _tricky())])
    assert sorted(f for _, f, *_ in found["kvmfx_commands"]) == \
        ["kvmfx_commands", "more_commands"]
    assert [f for _, f, *_ in found["kvmfx_os_profiles"]] == ["kvmfx_os_profiles"]
    assert [f for _, f, *_ in found["alias"]] == ["kvmfx_commands"]  # unverified, as pluggy
    assert set(found) == {*HOOKS, "alias"}

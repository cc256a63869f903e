"""Loading plugins: entry points, plugin directories, and the collected providers.

A plugin that fails to import or to answer a hook is reported by name in
:attr:`Registry.failures` and skipped; it never takes kvmfx down.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Iterable
from types import FunctionType, ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from kvmfx import hookspecs
from kvmfx.errors import UsageError
from kvmfx.records import Record

if TYPE_CHECKING:  # pathlib is imported where a plugin folder is given, not at every start
    from pathlib import Path

ENTRY_POINT_GROUP = "kvmfx"
PLUGIN_PATH_ENV = "KVMFX_PLUGIN_PATH"
#: where the entry points found are remembered (the user cache dir when unset)
ENTRY_POINT_CACHE_ENV = "KVMFX_ENTRY_POINT_CACHE"
HOOKS = ("kvmfx_dump_formats", "kvmfx_swap_formats", "kvmfx_symbol_providers",
         "kvmfx_architectures", "kvmfx_kernel_finders", "kvmfx_os_profiles",
         "kvmfx_commands")


class PluginFailure(Record):
    """A plugin that could not be used, and why (one line)."""

    __slots__ = ("name", "reason")
    name: str
    reason: str

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason


class Registry(Record):
    """Every provider contributed by the loaded plugins."""

    __slots__ = ("manager", "failures", "_cache", "_deferred", "_homes", "_rank", "_late")
    _fields = ("manager", "failures", "_cache")
    manager: pluggy.PluginManager
    failures: list[PluginFailure]
    _cache: dict[str, list[Any]]

    def __init__(self, manager: pluggy.PluginManager,
                 failures: list[PluginFailure] | None = None,
                 _cache: dict[str, list[Any]] | None = None) -> None:
        self.manager = manager
        self.failures = [] if failures is None else failures
        self._cache = {} if _cache is None else _cache
        #: command-only entry points not imported yet (name -> "module:attr"), the entry
        #: point each of their commands comes from, and every entry point's place in the
        #: order they are registered in when none waits (see :func:`load_registry`)
        self._deferred: dict[str, str] = {}
        self._homes: dict[str, str] = {}
        self._rank: dict[str, int] = {}
        self._late = False

    def _load_deferred(self, names: Iterable[str]) -> None:
        """Import and register deferred entry points; the command list is then made again
        in the order a registry loading every plugin at once has (:meth:`_collect`)."""
        for name in [n for n in names if n in self._deferred]:
            value = self._deferred.pop(name)
            try:
                self.manager.register(_load_spec(value), name=name)
                self._late = True
            except Exception as exc:
                self.failures.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))
        self._cache.pop("kvmfx_commands", None)

    def _wrapped(self, hook_name: str) -> bool:
        """Whether a plugin wraps the hook (it must see every plugin's answer)."""
        return any(impl.hookwrapper or impl.wrapper
                   for impl in getattr(self.manager.hook, hook_name).get_hookimpls())

    def _place(self, impl: Any) -> tuple[int, int]:
        """Where pluggy puts an implementation among a hook's when every plugin registers
        in entry point order (trylast ones first, the newest first; tryfirst ones last)."""
        rank = self._rank.get(impl.plugin_name, len(self._rank))
        return (0, -rank) if impl.trylast else (2 if impl.tryfirst else 1, rank)

    def _each(self, hook_name: str, impls: Iterable[Any]) -> list[Any]:
        """Every implementation's answer, asked one by one: a broken plugin is reported and
        skipped."""
        items: list[Any] = []
        for impl in impls:
            name = self.manager.get_name(impl.plugin) or repr(impl.plugin)
            try:
                items.extend(impl.function() or [])
            except Exception as exc:
                self.failures.append(PluginFailure(name, f"{hook_name}: "
                                                   f"{type(exc).__name__}: {exc}"))
        return items

    def _collect(self, hook_name: str) -> list[Any]:
        if hook_name in self._cache:
            return self._cache[hook_name]
        hook = getattr(self.manager.hook, hook_name)
        if self._late and not self._wrapped(hook_name):
            # plugins registered after their turn: answers in the order of a registry that
            # registered every plugin at once (a wrapper had every plugin loaded first)
            items = self._each(hook_name, sorted(hook.get_hookimpls(), key=self._place))
        else:
            try:
                # pluggy calls the newest registration first: keep registration order
                items = []
                for result in reversed(hook()):
                    items.extend(result or [])
            except Exception:  # a broken plugin: ask each alone, report and skip the culprit
                items = self._each(hook_name, hook.get_hookimpls())
        self._cache[hook_name] = items
        return items

    def collect_all(self) -> None:
        """Ask every hook now, so that every broken plugin is in :attr:`failures`."""
        for name in HOOKS:
            self._collect(name)

    @property
    def dump_formats(self) -> list[Any]:
        return self._collect("kvmfx_dump_formats")

    @property
    def swap_formats(self) -> list[Any]:
        return self._collect("kvmfx_swap_formats")

    @property
    def symbol_providers(self) -> list[Any]:
        return self._collect("kvmfx_symbol_providers")

    @property
    def architectures(self) -> list[Any]:
        return self._collect("kvmfx_architectures")

    @property
    def kernel_finders(self) -> list[Any]:
        return self._collect("kvmfx_kernel_finders")

    @property
    def os_profiles(self) -> list[Any]:
        return self._collect("kvmfx_os_profiles")

    @property
    def commands(self) -> dict[str, Any]:
        """Every command by name (the first of a name wins), every plugin loaded."""
        if self._deferred:
            self._load_deferred(list(self._deferred))
        return self._loaded_commands()

    def _loaded_commands(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cmd in self._collect("kvmfx_commands"):
            out.setdefault(cmd.name, cmd)
        return out

    def find_command(self, name: str) -> Any:
        """The command ``name``, or None; of the plugins not loaded yet, only the one known
        to provide it is imported (all of them when none is known to)."""
        home = self._homes.get(name)
        if home in self._deferred:
            self._load_deferred(list(self._deferred) if self._wrapped("kvmfx_commands")
                                else [home])
        found = self._loaded_commands().get(name)
        if found is None and self._deferred:
            found = self.commands.get(name)
        return found

    def command(self, name: str) -> Any:
        found = self.find_command(name)
        if found is None:
            known = ", ".join(sorted(self.commands)) or "none"
            raise UsageError(f"unknown command {name!r} (known: {known})")
        return found


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, quicker at registering a module. Of the names a module binds, one
    bound to something that is no routine, or to a function without the hook marker, is
    no hook implementation: that is told from the module's namespace, without the static
    attribute lookup pluggy makes for each name (most of a start's registering); pluggy
    itself decides about every other name."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        if type(plugin) is ModuleType:
            namespace = plugin.__dict__
            if name in namespace:
                value = namespace[name]
                if isinstance(value, FunctionType):
                    if f"{self.project_name}_impl" not in value.__dict__:
                        return None
                elif not inspect.isroutine(value):
                    return None
        return super().parse_hookimpl_opts(plugin, name)


def _load_file(path: Path) -> ModuleType:
    mod_name = f"kvmfx_local_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(mod_name, None)
        raise
    return module


def _plugin_files(dirs: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for d in dirs:
        from pathlib import Path

        p = Path(d)
        if p.is_file() and p.suffix == ".py":
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(f for f in p.glob("*.py") if not f.name.startswith("_")))
    return files


def _installed_state() -> list[list[object]]:
    """What the entry points found depend on: the distributions in each sys.path folder,
    with the mtime and size of each one's entry_points.txt (installing, removing or editing
    a distribution changes them; other files coming and going do not)."""
    state: list[list[object]] = []
    for k, folder in enumerate(sys.path):
        found: list[list[object]] = []
        try:
            with os.scandir(folder or ".") as it:
                for entry in it:
                    if entry.name.endswith((".dist-info", ".egg-info")):
                        try:
                            ep = os.stat(os.path.join(entry.path, "entry_points.txt"))
                        except OSError:
                            found.append([entry.name])
                            continue
                        found.append([entry.name, ep.st_mtime_ns, ep.st_size])
        except OSError:  # not a folder (a zip), gone, or unreadable
            continue
        # sys.path[0] is the running script's folder (or the working directory): what
        # counts there is the distributions it holds, not which folder it is
        state.append(["" if k == 0 else folder, sorted(found, key=str)])
    return state


def _cache_path() -> str:
    where = os.environ.get(ENTRY_POINT_CACHE_ENV)
    if where:
        return where
    import zlib

    # one file per interpreter and search path (the script's own folder, sys.path[0], left
    # out): environments do not overwrite each other's
    key = f"{zlib.crc32(chr(0).join([sys.executable, *sys.path[1:]]).encode()):08x}"
    return os.path.join(user_cache_dir(), f"entry-points-{key}.json")


def user_cache_dir() -> str:
    """kvmfx's folder in the user's cache (profiles, remembered entry points): on Linux
    ``$XDG_CACHE_HOME/kvmfx`` or ``~/.cache/kvmfx`` as the XDG base directory specification
    says (what platformdirs answers there, without importing it at every start), else
    where platformdirs puts it on the platform."""
    if sys.platform == "linux":
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        return os.path.join(xdg if os.path.isabs(xdg) else os.path.expanduser("~/.cache"),
                            "kvmfx")
    import platformdirs

    return str(platformdirs.user_cache_dir("kvmfx"))


def entry_point_specs(group: str = ENTRY_POINT_GROUP) -> list[tuple[str, str]]:
    """``(name, "module:attr")`` of every entry point of ``group``, as importlib.metadata
    finds them; remembered in the user cache while no distribution on sys.path changes, so
    a start neither imports importlib.metadata nor reads every distribution's metadata."""
    state = _installed_state()
    path = _cache_path()
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.loads(f.read())
        if cached.get("state") == state and group in cached.get("groups", {}):
            _remembered[group] = (path, cached)
            return [(str(n), str(v)) for n, v in cached["groups"][group]]
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    from importlib.metadata import entry_points

    specs = [(ep.name, ep.value) for ep in entry_points(group=group)]
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        made: dict[str, Any] = {"state": state, "groups": {group: specs}}
        write_atomically(path, json.dumps(made))
        _remembered[group] = (path, made)
        if not os.environ.get(ENTRY_POINT_CACHE_ENV):
            _prune(folder, "entry-points-", KEEP_ENTRY_POINT_FILES)
    except OSError:
        pass  # a cache: reading the metadata again next time is fine
    return specs


def write_atomically(path: str, text: str) -> None:
    """Write a cache file whole or not at all (a temporary file renamed into place): a
    start reading it meanwhile sees the old one or the new one."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


#: how many interpreters' (or search paths') remembered entry points the cache keeps
KEEP_ENTRY_POINT_FILES = 16


def _prune(folder: str, prefix: str, keep: int) -> None:
    """Remove all but the ``keep`` newest ``prefix*.json`` files of ``folder`` (each search
    path kvmfx ran with leaves one: virtual environments come and go)."""
    found = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(prefix) and entry.name.endswith(".json"):
                try:
                    found.append((entry.stat().st_mtime_ns, entry.path))
                except OSError:
                    continue
    for _mtime, old in sorted(found, reverse=True)[keep:]:
        try:
            os.unlink(old)
        except OSError:
            pass


#: group -> (cache file, its contents) as entry_point_specs read them on this start
_remembered: dict[str, tuple[str, dict[str, Any]]] = {}


def _file_stat(path: str | None) -> list[int] | None:
    """mtime and size of a file (None when there is none)."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return None if st is None else [st.st_mtime_ns, st.st_size]


def _plugin_index(pm: pluggy.PluginManager, specs: list[tuple[str, str]]
                  ) -> dict[str, Any]:
    """What each entry point's plugin provides, for later starts: its hooks, its commands'
    names, its module's file and that file's mtime and size."""
    index: dict[str, Any] = {}
    for name, value in specs:
        plugin = pm.get_plugin(name)
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or ())
        commands: list[str] = []
        for impl in pm.hook.kvmfx_commands.get_hookimpls():
            if impl.plugin is plugin:
                try:
                    made: Any = impl.function()
                    commands = [str(c.name) for c in made or ()]
                except Exception:  # noqa: BLE001 - reported when the registry asks
                    return {}
        module = value.partition(":")[0].strip()
        path = getattr(sys.modules.get(module), "__file__", None)
        index[name] = {"hooks": hooks, "commands": commands, "module": module,
                       "file": path, "stat": _file_stat(path)}
    return index


def _save_plugin_index(group: str, index: dict[str, Any]) -> None:
    """Add ``index`` to the entry points remembered for ``group`` (a cache: best effort)."""
    path, cached = _remembered.get(group, (None, None))
    if path is None or cached is None or not index:
        return
    cached = {**cached, "plugins": {**cached.get("plugins", {}), group: index}}
    try:
        write_atomically(path, json.dumps(cached))
    except OSError:
        pass


def _deferrable(group: str, specs: list[tuple[str, str]]
                ) -> tuple[dict[str, str], dict[str, str]] | None:
    """The entry points a start may leave unimported until one of their commands is asked
    for (those that only provide commands, whose module file is as it was when the index
    was made, and none of whose commands another plugin also names) and the entry point
    of each of their commands; None when the remembered index does not cover ``specs``."""
    _path, cached = _remembered.get(group, (None, None))
    index = (cached or {}).get("plugins", {}).get(group)
    if not isinstance(index, dict) or set(index) != {n for n, _v in specs}:
        return None
    try:
        owners: dict[str, list[str]] = {}
        for name, info in index.items():
            for command in info["commands"]:
                owners.setdefault(str(command), []).append(name)
        deferred: dict[str, str] = {}
        homes: dict[str, str] = {}
        for name, value in specs:
            info = index[name]
            if info["hooks"] != ["kvmfx_commands"] or info["module"] != \
                    value.partition(":")[0].strip():
                continue
            if any(len(owners[c]) > 1 for c in info["commands"]):
                continue
            now = _file_stat(info["file"])
            if now is None or now != info["stat"]:
                return None  # a plugin changed since: load everything, index again
            deferred[name] = value
            homes.update((str(c), name) for c in info["commands"])
    except (KeyError, TypeError, AttributeError):
        return None
    return deferred, homes


def _load_spec(value: str) -> Any:
    """The object an entry point's ``module:attr`` value names (as EntryPoint.load)."""
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.strip().split(".") if attr.strip() else []:
        obj = getattr(obj, part)
    return obj


def load_registry(plugin_dirs: Iterable[str] = (), *, use_entry_points: bool = True,
                  extra_plugins: Iterable[Any] = (), defer_commands: bool = False) -> Registry:
    """Build a registry from entry points, ``plugin_dirs`` and ``$KVMFX_PLUGIN_PATH``.

    ``defer_commands`` (the command line's start): entry points that only provide
    commands are imported when one of their commands is asked for
    (:meth:`Registry.find_command`) or the whole list is; which those are is remembered
    with the entry points (made on a start that loads every plugin)."""
    pm = _PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    specs = entry_point_specs() if use_entry_points else []
    known = _deferrable(ENTRY_POINT_GROUP, specs) if defer_commands else None
    deferred, homes = known or ({}, {})
    if use_entry_points:
        for name, value in specs:
            if pm.has_plugin(name) or name in deferred:
                continue
            try:
                pm.register(_load_spec(value), name=name)
            except Exception as exc:
                failures.append(PluginFailure(name, f"{type(exc).__name__}: {exc}"))
    env_dirs = [d for d in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if d]
    for path in _plugin_files([*plugin_dirs, *env_dirs]):
        name = f"file:{path}"
        if pm.has_plugin(name):
            continue
        try:
            pm.register(_load_file(path), name=name)
        except Exception as exc:
            failures.append(PluginFailure(str(path), f"{type(exc).__name__}: {exc}"))
    for plugin in extra_plugins:
        pm.register(plugin)
    registry = Registry(pm, failures)
    if defer_commands and known is None and specs and not failures:
        _save_plugin_index(ENTRY_POINT_GROUP, _plugin_index(pm, specs))
    registry._deferred, registry._homes = deferred, homes
    registry._rank = {name: k for k, (name, _v) in enumerate(specs)}
    return registry

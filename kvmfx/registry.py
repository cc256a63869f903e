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

    __slots__ = ("manager", "failures", "_cache")
    manager: pluggy.PluginManager
    failures: list[PluginFailure]
    _cache: dict[str, list[Any]]

    def __init__(self, manager: pluggy.PluginManager,
                 failures: list[PluginFailure] | None = None,
                 _cache: dict[str, list[Any]] | None = None) -> None:
        self.manager = manager
        self.failures = [] if failures is None else failures
        self._cache = {} if _cache is None else _cache

    def _collect(self, hook_name: str) -> list[Any]:
        if hook_name in self._cache:
            return self._cache[hook_name]
        hook = getattr(self.manager.hook, hook_name)
        items: list[Any] = []
        try:
            # pluggy calls the newest registration first: keep registration order
            for result in reversed(hook()):
                items.extend(result or [])
        except Exception:  # a broken plugin: ask each alone, report and skip the culprit
            items = []
            for impl in hook.get_hookimpls():
                name = self.manager.get_name(impl.plugin) or repr(impl.plugin)
                try:
                    items.extend(impl.function() or [])
                except Exception as exc:
                    self.failures.append(PluginFailure(name, f"{hook_name}: "
                                                       f"{type(exc).__name__}: {exc}"))
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
        out: dict[str, Any] = {}
        for cmd in self._collect("kvmfx_commands"):
            out.setdefault(cmd.name, cmd)
        return out

    def command(self, name: str) -> Any:
        try:
            return self.commands[name]
        except KeyError:
            known = ", ".join(sorted(self.commands)) or "none"
            raise UsageError(f"unknown command {name!r} (known: {known})") from None


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
            return [(str(n), str(v)) for n, v in cached["groups"][group]]
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    from importlib.metadata import entry_points

    specs = [(ep.name, ep.value) for ep in entry_points(group=group)]
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        tmp = f"{os.path.splitext(path)[0]}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"state": state, "groups": {group: specs}}))
        os.replace(tmp, path)
        if not os.environ.get(ENTRY_POINT_CACHE_ENV):
            _prune(folder, "entry-points-", KEEP_ENTRY_POINT_FILES)
    except OSError:
        pass  # a cache: reading the metadata again next time is fine
    return specs


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


def _load_spec(value: str) -> Any:
    """The object an entry point's ``module:attr`` value names (as EntryPoint.load)."""
    module, _, attr = value.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.strip().split(".") if attr.strip() else []:
        obj = getattr(obj, part)
    return obj


def load_registry(plugin_dirs: Iterable[str] = (), *, use_entry_points: bool = True,
                  extra_plugins: Iterable[Any] = ()) -> Registry:
    """Build a registry from entry points, ``plugin_dirs`` and ``$KVMFX_PLUGIN_PATH``."""
    pm = _PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    if use_entry_points:
        for name, value in entry_point_specs():
            if pm.has_plugin(name):
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
    return Registry(pm, failures)

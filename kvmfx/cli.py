"""The ``kvmfx`` command line.

Exit status: 0 success; 1 internal error (a bug: rerun with --debug); 2 usage error;
3 unreadable or unusable input (the one-line message names file, offset or address);
4 partial result (output written, some rows flagged ``partial``).
"""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from typing import IO, Any

import click

from kvmfx.commands import Column
from kvmfx.errors import KvmError
from kvmfx.registry import Registry, load_registry
from kvmfx.render import FORMATS, render, tee_partial
from kvmfx.session import Session

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_PARTIAL = 0, 1, 2, 3, 4


class _State:
    def __init__(self, plugin_dirs: tuple[str, ...], debug: bool) -> None:
        self.plugin_dirs = plugin_dirs
        self.debug = debug
        self.types: str | None = None
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = load_registry(self.plugin_dirs)
            self._registry.collect_all()
            for failure in self._registry.failures:
                click.echo(f"kvmfx: warning: plugin {failure.name} skipped: {failure.reason}",
                           err=True)
        return self._registry


def _fail(state: _State | None, exc: BaseException) -> None:
    if state is not None and state.debug:
        traceback.print_exc()
    if isinstance(exc, KvmError):
        click.echo(f"kvmfx: {exc}", err=True)
        sys.exit(exc.exit_status)
    message = " ".join(str(exc).split()) or type(exc).__name__
    click.echo(f"kvmfx: internal error: {type(exc).__name__}: {message} "
               "(rerun with --debug for a traceback)", err=True)
    sys.exit(EXIT_INTERNAL)


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(_State)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            sys.exit(EXIT_OK)
        except Exception as exc:
            _fail(state, exc)
    return wrapper


def _open_output(path: str | None) -> IO[str]:
    if path is None or path == "-":
        return sys.stdout
    return open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115


def _session(state: _State, corefile: str | None, execfile: str | None,
             swapfile: str | None) -> Session:
    return Session(corefile=corefile, execfile=execfile, swapfile=swapfile,
                   registry=state.registry, types=state.types)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--plugin-dir", "plugin_dirs", multiple=True, type=click.Path(),
              help="Load plugin files (*.py) from this directory (repeatable).")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.option("--types", "types", type=click.Choice(["btf", "dwarf", "isf"]), default=None,
              help="Read types in this format only (default: the first source found).")
@click.version_option(package_name="kvmfx")
@click.pass_context
def main(ctx: click.Context, plugin_dirs: tuple[str, ...], debug: bool,
         types: str | None) -> None:
    """kvmfx: kernel-memory forensics for live systems and crash dumps."""
    ctx.obj = _State(plugin_dirs, debug)
    ctx.obj.types = types


@main.command("plugins")
@click.pass_obj
@_guarded
def plugins_cmd(state: _State) -> None:
    """List commands, dump formats, architectures, symbol providers and OS profiles."""
    reg = state.registry
    sections = [("commands", list(reg.commands.values())), ("formats", reg.dump_formats),
                ("architectures", reg.architectures), ("symbols", reg.symbol_providers),
                ("os-profiles", reg.os_profiles)]
    for title, items in sections:
        if not items:
            continue
        click.echo(f"{title}:")
        width = max(len(i.name) for i in items)
        for item in sorted(items, key=lambda i: i.name):
            click.echo(f"  {item.name:<{width}}  {getattr(item, 'description', '')}")
    for failure in reg.failures:
        click.echo(f"broken: {failure.name}: {failure.reason}")


_COMMON = [
    click.option("-M", "--core", "core_opt", type=click.Path(), default=None,
                 help="Core file (dump); default: the live system."),
    click.option("-N", "--exec", "execfile", type=click.Path(), default=None,
                 help="Kernel image / symbol file (execfile)."),
    click.option("-W", "--swap", "swapfile", type=click.Path(), default=None,
                 help="Swap image (swapfile)."),
]


def _apply(options: list[Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def common_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _apply(_COMMON, fn)


@main.command("info")
@click.argument("corefile", required=False, type=click.Path())
@common_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.option("-o", "--output", type=click.Path(), default=None)
@click.pass_obj
@_guarded
def info_cmd(state: _State, corefile: str | None, core_opt: str | None, execfile: str | None,
             swapfile: str | None, fmt: str, output: str | None) -> None:
    """Describe a dump (or the live system): format, architecture, kernel, symbols."""
    with _session(state, corefile or core_opt, execfile, swapfile) as session:
        info = session.info()
    out = _open_output(output)
    try:
        if fmt == "json":
            json.dump(info, out, indent=1, default=str)
            out.write("\n")
        else:
            for key, value in info.items():
                if key == "ranges":
                    value = ", ".join(f"{a:#x}-{b:#x}" for a, b in value)
                elif isinstance(value, int) and not isinstance(value, bool) and key in (
                        "dtb", "kaslr_offset", "phys_base"):
                    value = f"{value:#x}"
                elif isinstance(value, dict):
                    value = "; ".join(f"{k}: {v}" for k, v in value.items())
                out.write(f"{key:<16} {value}\n")
    finally:
        if out is not sys.stdout:
            out.close()


def _option_to_click(opt: Any) -> Any:
    decl = "--" + opt.name.replace("_", "-")
    if opt.flag:
        return click.option(decl, opt.name, is_flag=True, help=opt.help)
    kind = {"int": int, "str": str, "float": float}.get(opt.type, str)
    return click.option(decl, opt.name, type=kind, default=opt.default, help=opt.help)


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True,
                 "help_option_names": []}


@main.command("run", context_settings=_PASS_THROUGH)
@click.argument("plugin")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@_guarded
def run_cmd(state: _State, plugin: str, args: tuple[str, ...]) -> None:
    """Run command PLUGIN on COREFILE (or the live system). PLUGIN --help lists its options."""
    _run_command(state, plugin, args)


@main.command("profile", context_settings=_PASS_THROUGH)
@click.argument("action")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
@_guarded
def profile_cmd(state: _State, action: str, args: tuple[str, ...]) -> None:
    """Kernel profiles: ``build DUMP`` (cache its symbols and types), ``export-isf DUMP
    --isf FILE`` (a Volatility 3 symbol file). Same as ``kvmfx run profile-ACTION``."""
    _run_command(state, f"profile-{action}", args)


def _run_command(state: _State, plugin: str, args: tuple[str, ...]) -> None:
    command = state.registry.command(plugin)

    def invoke(corefile: str | None, core_opt: str | None, execfile: str | None,
               swapfile: str | None, fmt: str, output: str | None, **opts: Any) -> None:
        with _session(state, corefile or core_opt, execfile, swapfile) as session:
            partial = [False]
            rows = tee_partial(command.run(session, opts), partial)
            out = _open_output(output)
            try:
                render(fmt, list(command.columns) or [Column("value")], rows, out)
            finally:
                if out is not sys.stdout:
                    out.close()
                else:
                    out.flush()
            warnings = list(session.warnings)
        for warning in warnings:
            click.echo(f"kvmfx: warning: {warning}", err=True)
        if partial[0] or warnings:
            what = "rows flagged partial" if partial[0] else "see the warnings"
            click.echo(f"kvmfx: {plugin}: partial result ({what})", err=True)
            sys.exit(EXIT_PARTIAL)

    params = [click.argument("corefile", required=False, type=click.Path()), *_COMMON,
              click.option("--format", "fmt", type=click.Choice(FORMATS), default="text",
                           help="Output format."),
              click.option("-o", "--output", type=click.Path(), default=None,
                           help="Write to FILE instead of stdout."),
              *(_option_to_click(o) for o in command.options)]
    sub = click.command(plugin, help=command.description,
                        context_settings={"help_option_names": ["-h", "--help"]})(
        _apply(params, invoke))
    sub.main(list(args), prog_name=f"kvmfx run {plugin}", standalone_mode=False)


def entry() -> None:
    main()


if __name__ == "__main__":
    main()

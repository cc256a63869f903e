"""The ``kvmfx`` command tree (click): every command, its options and its help.

:mod:`kvmfx.cli` is the entry point: it runs a plain ``kvmfx run`` line itself and hands
every other line to the group here (exit statuses there).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from kvmfx.cli import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PARTIAL,
    OPTION_TYPES,
    State,
    check_output,
    close_output,
    corefile_of,
    fail,
    open_output,
    open_session,
    pipe_closed,
    run_command,
)
from kvmfx.commands import OUTPUT_FORMATS
from kvmfx.errors import KvmOpenError
from kvmfx.symbols import TYPE_FORMATS

if TYPE_CHECKING:  # the rest is imported when a command runs (kvmfx --help stays quick)
    from kvmfx.registry import Registry


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(State)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            pipe_closed()
        except Exception as exc:
            fail(state, exc)
    return wrapper


def _one_line(exc: click.ClickException) -> str:
    """A click error as one line, with where to look for help when there is a command."""
    text = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        text += f" (see '{ctx.command_path} --help')"
    return text


class _Main(click.Group):
    """The ``kvmfx`` group: usage errors as one line ``kvmfx: <what>``, exit 2."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            status = super().main(args, prog_name or "kvmfx", complete_var,
                                  standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # a group alone: its help
            if not standalone_mode:
                raise
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            if not standalone_mode:
                raise
            click.echo(f"kvmfx: {_one_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            if not standalone_mode:
                raise
            click.echo("kvmfx: interrupted", err=True)
            sys.exit(130)
        except SystemExit as exc:
            # click ends its own writes (help, version) to a closed pipe with exit 1, after
            # wrapping stdout in its PacifyFlushWrapper (recognised by name: click 8.5 made
            # the class private as _PacifyFlushWrapper)
            if exc.code == EXIT_INTERNAL and \
                    type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper":
                pipe_closed()
            raise
        if not standalone_mode:
            return status
        sys.exit(status if isinstance(status, int) else EXIT_OK)


_HELP = {"help_option_names": ["-h", "--help"]}


@click.group(cls=_Main, context_settings=_HELP)
@click.option("--plugin-dir", "plugin_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False, dir_okay=True),
              help="Load plugin files (*.py) from this directory (repeatable).")
@click.option("--debug", is_flag=True, help="Show a traceback on errors.")
@click.option("--types", "types", type=click.Choice([t for t in TYPE_FORMATS if t]), default=None,
              help="Read types in this format only (default: the first source found).")
@click.version_option(package_name="kvmfx")
@click.pass_context
def main(ctx: click.Context, plugin_dirs: tuple[str, ...], debug: bool,
         types: str | None) -> None:
    """kvmfx: kernel-memory forensics for live systems and crash dumps."""
    state = State(plugin_dirs, debug, types)
    if isinstance(ctx.obj, State):  # the registry kvmfx.cli loaded on its way here
        state.adopt(ctx.obj)
    ctx.obj = state


@main.command("plugins")
@click.pass_obj
@_guarded
def plugins_cmd(state: State) -> None:
    """List commands, dump and swap formats, architectures, symbol providers and OS
    profiles."""
    reg = state.registry
    sections = [("commands", list(reg.commands.values())), ("formats", reg.dump_formats),
                ("swap-formats", reg.swap_formats),
                ("architectures", reg.architectures), ("kernel-finders", reg.kernel_finders),
                ("symbols", reg.symbol_providers),
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
                 help="Core file (dump), instead of COREFILE; default: the live system."),
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


#: Errors of these parts mean nothing about the kernel was recognised (Session.info()).
_FATAL_INFO_ERRORS = ("memory", "arch")


def _trailing_group(part: str) -> tuple[str, str] | None:
    """``("what failed", "causes")`` for ``"what failed (causes)"``, else None."""
    if not part.endswith(")"):
        return None
    depth = 0
    for i in range(len(part) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(part[i], 0)
        if depth == 0:
            head = part[:i]
            return (head.rstrip(), part[i + 1:-1]) if head.endswith(" ") else None
    return None


def _split_reasons(message: str) -> list[str]:
    """The separate reasons in one error message: its ``; ``-separated parts, and those of
    a trailing parenthesised list of causes, each part once."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(message):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == ";" and depth == 0:
            parts.append(message[start:i])
            start = i + 1
    parts.append(message[start:])
    out: list[str] = []
    for part in (p.strip() for p in parts):
        group = _trailing_group(part)
        if group is not None:
            out.extend(_split_reasons(group[1]))
            out.append(group[0])
        elif part:
            out.append(part)
    return list(dict.fromkeys(out))


def _distinct_reasons(errors: dict[str, str]) -> list[tuple[str, str]]:
    """The reasons in ``errors`` (part -> message), each once: ``(parts, reasons)`` pairs.

    A reason that only wraps another one (``no kernel symbols: image-kallsyms: <reason>``)
    is that reason; the parts one reason made fail are named together."""
    per_key = {key: _split_reasons(str(message)) for key, message in errors.items()}
    every = list(dict.fromkeys(r for reasons in per_key.values() for r in reasons))

    def root(reason: str) -> str:
        inner = [r for r in every if r != reason and reason.endswith(": " + r)]
        return root(min(inner, key=len)) if inner else reason

    keys_of: dict[str, list[str]] = {}
    for key, reasons in per_key.items():
        for reason in reasons:
            owners = keys_of.setdefault(root(reason), [])
            if key not in owners:
                owners.append(key)
    grouped: dict[str, list[str]] = {}
    for reason, keys in keys_of.items():
        grouped.setdefault(", ".join(keys), []).append(reason)
    return [(keys, "; ".join(reasons)) for keys, reasons in grouped.items()]


@main.command("info")
@click.argument("corefile", required=False, type=click.Path())
@common_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="Output format.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Write to FILE instead of stdout.")
@click.pass_obj
@_guarded
def info_cmd(state: State, corefile: str | None, core_opt: str | None, execfile: str | None,
             swapfile: str | None, fmt: str, output: str | None) -> None:
    """Describe a dump (or the live system): format, architecture, kernel, symbols.

    Exit status 3 when nothing about the kernel could be recognised."""
    path = corefile_of(corefile, core_opt)
    check_output(output)
    with open_session(state, path, execfile, swapfile) as session:
        info = session.info()
    errors = info.get("errors") or {}
    out = open_output(output)
    try:
        if fmt == "json":
            json.dump(info, out, indent=1, default=str)
            out.write("\n")
        else:
            for key, value in info.items():
                if key == "errors":
                    continue
                if key == "ranges":
                    value = ", ".join(f"{a:#x}-{b:#x}" for a, b in value)
                elif isinstance(value, int) and not isinstance(value, bool) and key in (
                        "dtb", "kaslr_offset", "phys_base"):
                    value = f"{value:#x}"
                elif isinstance(value, dict):
                    value = "; ".join(f"{k}: {v}" for k, v in value.items())
                out.write(f"{key:<16} {value}\n")
            for keys, reasons in _distinct_reasons(errors):
                out.write(f"{'error':<16} {keys}: {reasons}\n")
    finally:
        close_output(out)
    fatal = {key: errors[key] for key in _FATAL_INFO_ERRORS if key in errors}
    if fatal and "os_profile" not in info:
        reasons = "; ".join(reason for _, reason in _distinct_reasons(fatal))
        click.echo(f"kvmfx: {path or 'live system'}: no kernel recognised: {reasons}", err=True)
        sys.exit(EXIT_INPUT)


def _option_to_click(opt: Any) -> Any:
    decl = "--" + opt.name.replace("_", "-")
    if opt.flag:
        return click.option(decl, opt.name, is_flag=True, help=opt.help)
    kind = OPTION_TYPES.get(opt.type, str)
    return click.option(decl, opt.name, type=kind, default=opt.default, help=opt.help)


def _command_for(plugin: str, command: Any, name: str) -> click.Command:
    """The click command that runs plugin command ``command`` (shown as ``name``)."""

    @_guarded
    def invoke(corefile: str | None, core_opt: str | None, execfile: str | None,
               swapfile: str | None, fmt: str, output: str | None, id_host: str | None,
               use_hash: bool, **opts: Any) -> None:
        state = click.get_current_context().find_object(State)
        assert state is not None
        run_command(state, plugin, command, corefile, core_opt, execfile, swapfile, fmt,
                    output, id_host, use_hash, opts)

    params = [click.argument("corefile", required=False, type=click.Path()), *_COMMON,
              click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="text",
                           help="Output format (jsonl, timesketch and ecs: each row with the "
                                "dump's identity, as kvmfx batch writes it; docs/output.md)."),
              click.option("-o", "--output", type=click.Path(), default=None,
                           help="Write to FILE instead of stdout."),
              click.option("--host", "id_host", default=None, metavar="NAME",
                           help="jsonl/timesketch/ecs: the host name rows carry (default: "
                                "the dump's own, uname nodename, where known)."),
              click.option("--hash", "use_hash", is_flag=True,
                           help="jsonl/timesketch/ecs: the dump's sha256 in every row."),
              *(_option_to_click(o) for o in command.options)]
    return click.command(name, help=command.description, context_settings=_HELP)(
        _apply(params, invoke))


class _PluginGroup(click.Group):
    """Subcommands built from the registry's commands whose names start with ``prefix``
    (shown without it): ``kvmfx run psaux``, ``kvmfx profile build``."""

    def __init__(self, *args: Any, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prefix = prefix

    def registry(self, ctx: click.Context) -> Registry:
        state = ctx.find_object(State)
        assert state is not None
        return state.registry

    def list_commands(self, ctx: click.Context) -> list[str]:
        plugins = sorted(n[len(self.prefix):] for n in self.registry(ctx).commands
                         if n.startswith(self.prefix))
        return sorted({*super().list_commands(ctx), *plugins})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        own = super().get_command(ctx, cmd_name)
        if own is not None:
            return own
        plugin = self.prefix + cmd_name
        command = self.registry(ctx).find_command(plugin)
        return None if command is None else _command_for(plugin, command, cmd_name)

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if self.get_command(ctx, name) is None and not name.startswith("-"):
            known = ", ".join(self.list_commands(ctx)) or "none"
            raise click.UsageError(f"unknown command {name!r} (known: {known})")
        return super().resolve_command(ctx, args)


@main.group("run", cls=_PluginGroup, context_settings=_HELP)
def run_group() -> None:
    """Run a command on COREFILE (or the live system): kvmfx run COMMAND [COREFILE]
    [OPTIONS]. kvmfx run COMMAND --help lists its options."""


@main.group("profile", cls=_PluginGroup, prefix="profile-", context_settings=_HELP)
def profile_group() -> None:
    """Kernel profiles: build DUMP caches the dump's symbols and types; export-isf DUMP
    --isf FILE writes them as a Volatility 3 symbol file."""


@profile_group.command("list")
@click.pass_context
@_guarded
def profile_list(ctx: click.Context) -> None:
    """List the profile actions."""
    group = ctx.parent.command if ctx.parent is not None else None
    assert isinstance(group, _PluginGroup)
    registry = group.registry(ctx)
    names = [n for n in group.list_commands(ctx) if n != "list"]
    width = max((len(n) for n in names), default=0)
    for name in names:
        description = registry.commands[group.prefix + name].description
        click.echo(f"{name:<{width}}  {description}")


@main.command("batch", context_settings=_HELP)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-c", "--command", "commands", multiple=True, required=True,
              help="A command to run on every dump (repeatable): -c psaux -c envars.")
@click.option("-o", "--outdir", required=True, type=click.Path(),
              help="Directory for the outputs, batch.json and the resume state.")
@click.option("--format", "kinds", multiple=True, type=click.Choice(["rows", "timesketch", "ecs"]),
              default=("rows",), show_default=True,
              help="What to write per command (repeatable): rows (with the dump's identity), "
                   "timesketch, ecs.")
@click.option("--output-format", "file_format", type=click.Choice(["jsonl", "csv", "parquet"]),
              default="jsonl", show_default=True,
              help="File format of rows (timesketch: jsonl or csv; ecs: always jsonl).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
              help="Run on this Dask cluster (dump paths must be readable by its workers); "
                   "default: a local cluster on this machine.")
@click.option("--ship", is_flag=True,
              help="Send each dump's bytes to the worker with its task (workers that cannot "
                   "read the dump paths; a few dumps in memory at a time).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local cluster: worker processes (default: one per core).")
@click.option("--memory-limit", default=None, metavar="SIZE",
              help="Local cluster: memory per worker, e.g. 4GB (default: Dask's auto).")
@click.option("--hash", "use_hash", is_flag=True,
              help="Record each dump's sha256 (in every row; resume by content).")
@click.option("--retry-failed", is_flag=True, help="Run again the dumps that failed before.")
@click.option("--report", is_flag=True, help="Write OUTDIR/report.html (fleet views).")
@click.option("--progress/--no-progress", "live", default=None,
              help="A live progress bar (default: when stderr is a terminal).")
@click.pass_obj
@_guarded
def batch_cmd(state: State, inputs: tuple[str, ...], commands: tuple[str, ...], outdir: str,
              kinds: tuple[str, ...], file_format: str, scheduler: str | None, ship: bool,
              workers: int | None, memory_limit: str | None, use_hash: bool,
              retry_failed: bool, report: bool, live: bool | None) -> None:
    """Run commands on many dumps (one Dask task per dump): INPUT is a dump, a directory
    of dumps (recognised by content) or a manifest (CSV/JSON: path, host, execfile,
    swapfile). Writes one file per command and OUTDIR/batch.json; a re-run skips what is
    done. Exit status 4 when a dump failed or gave partial results (docs/batch.md)."""
    import importlib.util

    from kvmfx import batch

    known = state.registry.commands
    for name in commands:
        if name not in known:
            raise click.UsageError(f"unknown command {name!r} (known: {', '.join(sorted(known))})")
    needed = ["distributed"] + (["pyarrow"] if file_format == "parquet" else []) + \
        (["jinja2", "plotly"] if report else [])
    absent = [m for m in needed if importlib.util.find_spec(m) is None]
    if absent:
        raise click.UsageError(f"kvmfx batch needs {', '.join(absent)} (pip install "
                               "'kvmfx[batch]')")
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise KvmOpenError("cannot write the outputs: not a directory", path=outdir)
    batch.check_cluster_options(scheduler, memory_limit)
    commands = tuple(dict.fromkeys(commands))
    specs = batch.plan(inputs, state.registry)
    if not specs:
        raise KvmOpenError("no dumps found (no file a dump format recognises)",
                           path=", ".join(inputs))
    os.makedirs(outdir, exist_ok=True)
    options = batch.TaskOptions(commands, state.plugin_dirs, state.types, use_hash)
    view = batch.ProgressView(sys.stderr.isatty() if live is None else live,
                              lambda line: click.echo(line, err=True))
    client = batch.remote_client(scheduler) if scheduler else \
        batch.local_client(workers, memory_limit)
    n_workers = len(client.scheduler_info()["workers"])
    where = scheduler or f"local cluster, {n_workers} worker{'' if n_workers == 1 else 's'}"
    try:
        result, outcome = batch.run_batch(
            specs, options, outdir, client, retry_failed=retry_failed, ship=ship,
            on_start=view.start,
            on_result=view.update, meta={"scheduler": where})
    finally:
        view.stop()
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None and not scheduler:
            cluster.close()
    for written in batch.write_outputs(result, commands, state.registry, kinds=kinds,
                                       file_format=file_format):
        if written.left_out:
            click.echo(f"kvmfx: batch: {written.path}: {written.left_out} rows without a "
                       "time left out (no process start and no capture time known)", err=True)
    if report:
        from kvmfx.report import write_report

        write_report(result, os.path.join(outdir, "report.html"))
    entries = [result.dumps[s.path] for s in specs if s.path in result.dumps]
    statuses = [e["status"] for e in entries]
    failed, partial = statuses.count(batch.FAILED), statuses.count(batch.PARTIAL)
    click.echo(f"kvmfx: batch: {len(specs)} dumps: {statuses.count(batch.OK)} ok, {partial} "
               f"partial, {failed} failed ({outcome.skipped} skipped, done before); "
               f"{outcome.seconds:.1f} s on {where}; "
               f"{os.path.join(outdir, batch.SUMMARY)}", err=True)
    for entry in entries:
        if entry["status"] == batch.FAILED:  # run's line, after the dump it is about
            click.echo(f"kvmfx: batch: failed: {entry['path']}: {entry['error']}", err=True)
    if failed == len(entries):
        sys.exit(EXIT_INPUT)
    if failed or partial:
        sys.exit(EXIT_PARTIAL)


if __name__ == "__main__":
    main()

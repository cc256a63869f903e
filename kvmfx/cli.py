"""The ``kvmfx`` command line.

Exit status: 0 success; 1 internal error (a bug: rerun with --debug); 2 usage error;
3 unreadable or unusable input (the one-line message names file, offset or address);
4 partial result (output written, some rows flagged ``partial``, or Timesketch events
without a time).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import click

from kvmfx.commands import IDENTIFIED_FORMATS, OUTPUT_FORMATS, Column
from kvmfx.errors import KvmError, KvmOpenError
from kvmfx.symbols import TYPE_FORMATS

if TYPE_CHECKING:  # the rest is imported when a command runs (kvmfx --help stays quick)
    from kvmfx.exporters import DumpId
    from kvmfx.registry import Registry
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
            from kvmfx.registry import load_registry

            self._registry = load_registry(self.plugin_dirs)
            self._registry.collect_all()
            for failure in self._registry.failures:
                click.echo(f"kvmfx: warning: plugin {failure.name} skipped: {failure.reason}",
                           err=True)
        return self._registry


def _pipe_closed() -> None:
    """End normally when the reader of stdout went away (``kvmfx run psaux | head -1``).

    devnull takes stdout's place so that the flush at interpreter shutdown has somewhere to
    write: without it Python reports the broken pipe again and exits 120."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # not a file (e.g. captured): nothing to do
        sys.exit(EXIT_OK)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    sys.exit(EXIT_OK)


def _fail(state: _State | None, exc: BaseException) -> None:
    if state is not None and state.debug:
        traceback.print_exc()
    if isinstance(exc, KvmError):
        click.echo(f"kvmfx: {exc}", err=True)
        sys.exit(exc.exit_status)
    if isinstance(exc, OSError) and exc.filename is not None:
        # a file the system refused (a directory, no permission...): input, not a bug
        click.echo(f"kvmfx: {exc.filename}: {exc.strerror or type(exc).__name__}", err=True)
        sys.exit(EXIT_INPUT)
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
            _pipe_closed()
        except Exception as exc:
            _fail(state, exc)
    return wrapper


def _check_output(path: str | None) -> None:
    """Refuse an ``-o`` path that cannot be written before any work is done (the file itself
    is only created when the output is ready, so a failed run leaves an existing file)."""
    if path is None or path == "-":
        return
    if os.path.isdir(path):
        raise KvmOpenError("cannot write the output: it is a directory", path=path)
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise KvmOpenError(f"cannot write the output: no directory {parent}", path=path)


def _open_output(path: str | None) -> IO[str]:
    if path is None or path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise KvmOpenError(f"cannot write the output: {exc.strerror}", path=path) from None


def _corefile(corefile: str | None, core_opt: str | None) -> str | None:
    """The one corefile given, positionally or with -M."""
    if corefile is not None and core_opt is not None:
        raise click.UsageError(f"two corefiles: {corefile} and -M {core_opt} "
                               "(give one, as COREFILE or with -M)")
    path = corefile if corefile is not None else core_opt
    if path is not None and os.path.isdir(path):
        raise KvmOpenError("is a directory, not a dump or a memory device", path=path)
    return path


def _session(state: _State, corefile: str | None, execfile: str | None,
             swapfile: str | None) -> Session:
    from kvmfx.session import Session

    return Session(corefile=corefile, execfile=execfile, swapfile=swapfile,
                   registry=state.registry, types=state.types)


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
                _pipe_closed()
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
    ctx.obj = _State(plugin_dirs, debug)
    ctx.obj.types = types


@main.command("plugins")
@click.pass_obj
@_guarded
def plugins_cmd(state: _State) -> None:
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
def info_cmd(state: _State, corefile: str | None, core_opt: str | None, execfile: str | None,
             swapfile: str | None, fmt: str, output: str | None) -> None:
    """Describe a dump (or the live system): format, architecture, kernel, symbols.

    Exit status 3 when nothing about the kernel could be recognised."""
    path = _corefile(corefile, core_opt)
    _check_output(output)
    with _session(state, path, execfile, swapfile) as session:
        info = session.info()
    errors = info.get("errors") or {}
    out = _open_output(output)
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
        if out is not sys.stdout:
            out.close()
        else:
            out.flush()
    fatal = {key: errors[key] for key in _FATAL_INFO_ERRORS if key in errors}
    if fatal and "os_profile" not in info:
        reasons = "; ".join(reason for _, reason in _distinct_reasons(fatal))
        click.echo(f"kvmfx: {path or 'live system'}: no kernel recognised: {reasons}", err=True)
        sys.exit(EXIT_INPUT)


def _option_to_click(opt: Any) -> Any:
    decl = "--" + opt.name.replace("_", "-")
    if opt.flag:
        return click.option(decl, opt.name, is_flag=True, help=opt.help)
    kind = {"int": int, "str": str, "float": float}.get(opt.type, str)
    return click.option(decl, opt.name, type=kind, default=opt.default, help=opt.help)


def _dump_identity(session: Session, path: str | None, host: str | None,
                   use_hash: bool) -> DumpId:
    """The identity ``kvmfx batch`` gives this dump's rows (kvmfx/batch.py)."""
    from kvmfx.batch import dump_identity, file_sha256
    from kvmfx.exporters import DumpId

    identity = dump_identity(session, path, host)
    if use_hash and path is not None:
        identity["sha256"] = file_sha256(path)
    return DumpId(**identity)


def _process_starts(session: Session, plugin: str, command: Any) -> dict[int, str]:
    """pid -> start time for the rows of a process command without a start of their own
    (envars, threads, pstree): from pslist on the same session, as ``kvmfx batch`` takes
    them from the commands run with it; none when pslist cannot tell."""
    from kvmfx.exporters import PROCESS_COMMANDS, process_starts

    if plugin not in PROCESS_COMMANDS or any(c.name == "start_time" for c in command.columns):
        return {}
    pslist = session.registry.commands.get("pslist")
    if pslist is None:
        return {}
    try:
        return process_starts({"pslist": list(pslist.run(session, {}))})
    except KvmError:
        return {}


def _command_for(plugin: str, command: Any, name: str) -> click.Command:
    """The click command that runs plugin command ``command`` (shown as ``name``)."""

    @_guarded
    def invoke(corefile: str | None, core_opt: str | None, execfile: str | None,
               swapfile: str | None, fmt: str, output: str | None, id_host: str | None,
               use_hash: bool, **opts: Any) -> None:
        state = click.get_current_context().find_object(_State)
        assert state is not None
        path = _corefile(corefile, core_opt)
        if (id_host is not None or use_hash) and fmt not in IDENTIFIED_FORMATS:
            which = "--host" if id_host is not None else "--hash"
            raise click.UsageError(f"{which} labels the rows of --format "
                                   f"{', '.join(IDENTIFIED_FORMATS)} (not {fmt})")
        if use_hash and path is None:
            raise click.UsageError("--hash needs a dump (the live system is no file)")
        _check_output(output)
        untimed = 0
        with _session(state, path, execfile, swapfile) as session:
            partial = [False]
            from kvmfx.render import render, render_exported, tee_partial

            rows = tee_partial(command.run(session, opts), partial)
            columns = list(command.columns) or [Column("value")]
            out = _open_output(output)
            try:
                if fmt in IDENTIFIED_FORMATS:
                    untimed = render_exported(
                        fmt, plugin, list(command.columns), rows, out,
                        dump=lambda: _dump_identity(session, path, id_host, use_hash),
                        starts=lambda: _process_starts(session, plugin, command)).untimed
                else:
                    render(fmt, columns, rows, out)
            finally:
                if out is not sys.stdout:
                    out.close()
                else:
                    out.flush()
            warnings = list(session.warnings)
        for warning in warnings:
            click.echo(f"kvmfx: warning: {warning}", err=True)
        if untimed:
            events = "1 event" if untimed == 1 else f"{untimed} events"
            click.echo(f"kvmfx: {plugin}: {events} without a time (datetime null; the "
                       "reason in no_time_reason)", err=True)
        if partial[0] or warnings or untimed:
            what = "rows flagged partial" if partial[0] else \
                "see the warnings" if warnings else "events without a time"
            click.echo(f"kvmfx: {plugin}: partial result ({what})", err=True)
            sys.exit(EXIT_PARTIAL)

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
        state = ctx.find_object(_State)
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
        command = self.registry(ctx).commands.get(plugin)
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
def batch_cmd(state: _State, inputs: tuple[str, ...], commands: tuple[str, ...], outdir: str,
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

"""The ``kvmfx`` command line.

Exit status: 0 success; 1 internal error (a bug: rerun with --debug); 2 usage error;
3 unreadable or unusable input (the one-line message names file, offset or address);
4 partial result (output written, some rows flagged ``partial``, or Timesketch events
without a time).

The commands, their options and help are click's, in :mod:`kvmfx.clitree`. The line typed
most, ``kvmfx run COMMAND [COREFILE] [OPTIONS]``, is parsed here and run without click
(importing click and building its command tree would be a good part of a short command's
start): only a line whose every word is understood here is, and anything else (help, an
unknown option, a value click would refuse, a usage error) goes to click's tree, which then
answers exactly as it always does. Both run a command through :func:`run_command`.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any

from kvmfx.commands import IDENTIFIED_FORMATS, OUTPUT_FORMATS, Column
from kvmfx.errors import KvmError, KvmOpenError

if TYPE_CHECKING:  # the rest is imported when a command runs (kvmfx --help stays quick)
    import click

    from kvmfx.exporters import DumpId
    from kvmfx.registry import Registry
    from kvmfx.session import Session

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_PARTIAL = 0, 1, 2, 3, 4


def echo_err(message: str) -> None:
    """A line on stderr, written as click writes it (ANSI styles left out when stderr is no
    terminal): click is imported when there is something to say."""
    import click

    click.echo(message, err=True)


class State:
    """What the options of ``kvmfx`` itself set (plugin folders, --debug, --types), and the
    registry of plugins, loaded on first use."""

    def __init__(self, plugin_dirs: tuple[str, ...], debug: bool,
                 types: str | None = None) -> None:
        self.plugin_dirs = plugin_dirs
        self.debug = debug
        self.types = types
        self._registry: Registry | None = None
        self._reported = False

    def load_registry(self) -> Registry:
        """The registry, loaded once (its broken plugins not reported yet)."""
        if self._registry is None:
            from kvmfx.registry import load_registry

            self._registry = load_registry(self.plugin_dirs, defer_commands=True)
            self._registry.collect_all()
        return self._registry

    def adopt(self, other: State) -> None:
        """Use the registry ``other`` loaded for the same plugin folders (a line the plain
        ``run`` parser handed to click), its broken plugins still reported here."""
        if other.plugin_dirs == self.plugin_dirs and self._registry is None:
            self._registry, self._reported = other._registry, other._reported

    @property
    def registry(self) -> Registry:
        """The registry; the plugins it skipped are named on stderr, once."""
        registry = self.load_registry()
        if not self._reported:
            self._reported = True
            for failure in registry.failures:
                echo_err(f"kvmfx: warning: plugin {failure.name} skipped: {failure.reason}")
        return registry


def pipe_closed() -> None:
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


def fail(state: State | None, exc: BaseException) -> None:
    """End on an error a command raised: one line on stderr and its exit status (the
    traceback too with --debug)."""
    if state is not None and state.debug:
        import traceback

        traceback.print_exc()
    if isinstance(exc, KvmError):
        echo_err(f"kvmfx: {exc}")
        sys.exit(exc.exit_status)
    if isinstance(exc, OSError) and exc.filename is not None:
        # a file the system refused (a directory, no permission...): input, not a bug
        echo_err(f"kvmfx: {exc.filename}: {exc.strerror or type(exc).__name__}")
        sys.exit(EXIT_INPUT)
    message = " ".join(str(exc).split()) or type(exc).__name__
    echo_err(f"kvmfx: internal error: {type(exc).__name__}: {message} "
             "(rerun with --debug for a traceback)")
    sys.exit(EXIT_INTERNAL)


def check_output(path: str | None) -> None:
    """Refuse an ``-o`` path that cannot be written before any work is done (the file itself
    is only created when the output is ready, so a failed run leaves an existing file)."""
    if path is None or path == "-":
        return
    if os.path.isdir(path):
        raise KvmOpenError("cannot write the output: it is a directory", path=path)
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise KvmOpenError(f"cannot write the output: no directory {parent}", path=path)


def open_output(path: str | None) -> IO[str]:
    """Where output goes: stdout, or the file ``-o`` names."""
    if path is None or path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise KvmOpenError(f"cannot write the output: {exc.strerror}", path=path) from None


def close_output(out: IO[str]) -> None:
    """Close a file :func:`open_output` opened; flush stdout."""
    if out is not sys.stdout:
        out.close()
    else:
        out.flush()


def corefile_of(corefile: str | None, core_opt: str | None) -> str | None:
    """The one corefile given, positionally or with -M."""
    if corefile is not None and core_opt is not None:
        import click

        raise click.UsageError(f"two corefiles: {corefile} and -M {core_opt} "
                               "(give one, as COREFILE or with -M)")
    path = corefile if corefile is not None else core_opt
    if path is not None and os.path.isdir(path):
        raise KvmOpenError("is a directory, not a dump or a memory device", path=path)
    return path


def open_session(state: State, corefile: str | None, execfile: str | None,
                 swapfile: str | None) -> Session:
    """A session on the dump (or the live system) with the plugins of ``state``."""
    from kvmfx.session import Session

    return Session(corefile=corefile, execfile=execfile, swapfile=swapfile,
                   registry=state.registry, types=state.types)


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
    pslist = session.registry.find_command("pslist")
    if pslist is None:
        return {}
    try:
        return process_starts({"pslist": list(pslist.run(session, {}))})
    except KvmError:
        return {}


def run_command(state: State, plugin: str, command: Any, corefile: str | None,
                core_opt: str | None, execfile: str | None, swapfile: str | None, fmt: str,
                output: str | None, id_host: str | None, use_hash: bool,
                opts: dict[str, Any]) -> None:
    """``kvmfx run``: the rows of plugin command ``command`` in format ``fmt``, then its
    warnings on stderr; exit status 4 when the result is partial."""
    path = corefile_of(corefile, core_opt)
    if (id_host is not None or use_hash) and fmt not in IDENTIFIED_FORMATS:
        import click

        which = "--host" if id_host is not None else "--hash"
        raise click.UsageError(f"{which} labels the rows of --format "
                               f"{', '.join(IDENTIFIED_FORMATS)} (not {fmt})")
    if use_hash and path is None:
        import click

        raise click.UsageError("--hash needs a dump (the live system is no file)")
    check_output(output)
    untimed = 0
    with open_session(state, path, execfile, swapfile) as session:
        partial = [False]
        from kvmfx.render import render, render_exported, tee_partial

        rows = tee_partial(command.run(session, opts), partial)
        columns = list(command.columns) or [Column("value")]
        out = open_output(output)
        try:
            if fmt in IDENTIFIED_FORMATS:
                untimed = render_exported(
                    fmt, plugin, list(command.columns), rows, out,
                    dump=lambda: _dump_identity(session, path, id_host, use_hash),
                    starts=lambda: _process_starts(session, plugin, command)).untimed
            else:
                render(fmt, columns, rows, out)
        finally:
            close_output(out)
        warnings = list(session.warnings)
    for warning in warnings:
        echo_err(f"kvmfx: warning: {warning}")
    if untimed:
        events = "1 event" if untimed == 1 else f"{untimed} events"
        echo_err(f"kvmfx: {plugin}: {events} without a time (datetime null; the reason in "
                 "no_time_reason)")
    if partial[0] or warnings or untimed:
        what = "rows flagged partial" if partial[0] else \
            "see the warnings" if warnings else "events without a time"
        echo_err(f"kvmfx: {plugin}: partial result ({what})")
        sys.exit(EXIT_PARTIAL)


# -- the plain ``kvmfx run`` line, parsed without click ------------------------------------

#: The options of every ``kvmfx run COMMAND`` that take a value (kvmfx.clitree declares
#: them; tests/cli/test_plain_run.py holds the two the same): option -> parameter.
RUN_VALUE_OPTIONS = {"-M": "core_opt", "--core": "core_opt", "-N": "execfile",
                     "--exec": "execfile", "-W": "swapfile", "--swap": "swapfile",
                     "--format": "fmt", "-o": "output", "--output": "output",
                     "--host": "id_host"}
#: ... and its flags
RUN_FLAGS = {"--hash": "use_hash"}
#: its parameters and their defaults
RUN_DEFAULTS: dict[str, Any] = {"corefile": None, "core_opt": None, "execfile": None,
                                "swapfile": None, "fmt": "text", "output": None,
                                "id_host": None, "use_hash": False}
#: the parameters that are paths (click.Path(): an existing path must be readable)
RUN_PATHS = ("corefile", "core_opt", "execfile", "swapfile", "output")
#: a command option's type -> how click converts its value
OPTION_TYPES = {"int": int, "str": str, "float": float}


def _plain_head(args: list[str]) -> tuple[bool, str | None, str, list[str]] | None:
    """``(debug, types, command, words after it)`` of ``kvmfx [--debug] [--types T] run
    COMMAND ...``; None for any other line."""
    debug, types, i = False, None, 0
    while i < len(args) and args[i] != "run":
        arg = args[i]
        if arg == "--debug":
            debug, i = True, i + 1
        elif arg == "--types" and i + 1 < len(args):
            types, i = args[i + 1], i + 2
        elif arg.startswith("--types="):
            types, i = arg[len("--types="):], i + 1
        else:
            return None
    if i + 1 >= len(args) or args[i + 1].startswith("-"):
        return None
    if types is not None:
        from kvmfx.symbols import TYPE_FORMATS

        if not types or types not in TYPE_FORMATS:
            return None
    return debug, types, args[i + 1], args[i + 2:]


def _own_options(command: Any) -> tuple[dict[str, tuple[str, Any]], dict[str, str],
                                        dict[str, Any]] | None:
    """A command's own options as click makes them (kvmfx.clitree): value options
    (option -> parameter, type), flags (option -> parameter) and defaults; None when one
    is not a plain ``--name`` of its own."""
    values: dict[str, tuple[str, Any]] = {}
    flags: dict[str, str] = {}
    defaults: dict[str, Any] = {}
    for opt in command.options:
        decl = "--" + opt.name.replace("_", "-")
        if not opt.name.isidentifier() or opt.name in RUN_DEFAULTS or opt.name in defaults \
                or decl in RUN_VALUE_OPTIONS or decl in RUN_FLAGS or decl == "--help" \
                or decl in values or decl in flags:
            return None
        if opt.flag:
            flags[decl], defaults[opt.name] = opt.name, False
            continue
        kind = OPTION_TYPES.get(opt.type, str)
        values[decl] = (opt.name, kind)
        try:
            defaults[opt.name] = None if opt.default is None else kind(opt.default)
        except (TypeError, ValueError):
            return None
    return values, flags, defaults


def _plain_options(command: Any, words: list[str]) -> tuple[dict[str, Any],
                                                           dict[str, Any]] | None:
    """The parameters and the command's options of ``kvmfx run COMMAND WORDS``, as click
    would parse them; None when click would answer otherwise (help, an unknown option, a
    refused value, a usage error) or this parser is not sure."""
    own = _own_options(command)
    if own is None:
        return None
    own_values, own_flags, opts = own
    params = dict(RUN_DEFAULTS)
    raw: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            return None
        if len(word) < 2 or not word.startswith("-"):
            positional.append(word)
            continue
        name, eq, attached = word.partition("=")
        if name.startswith("--") and (name in RUN_VALUE_OPTIONS or name in own_values):
            if not eq:
                if i == len(words):
                    return None
                attached, i = words[i], i + 1
        elif not eq and (word in RUN_FLAGS or word in own_flags):
            if word in RUN_FLAGS:
                params[RUN_FLAGS[word]] = True
            else:
                opts[own_flags[word]] = True
            continue
        elif word.startswith("--"):
            return None
        else:  # -X: a short option, its value attached or the next word
            name = word[:2]
            if name not in RUN_VALUE_OPTIONS:
                return None
            attached = word[2:]
            if not attached:
                if i == len(words):
                    return None
                attached, i = words[i], i + 1
        if name in RUN_VALUE_OPTIONS:
            params[RUN_VALUE_OPTIONS[name]] = attached
        else:
            raw[name] = attached
    if len(positional) > 1:
        return None
    if positional:
        params["corefile"] = positional[0]
    for name, value in raw.items():
        param, kind = own_values[name]
        try:
            opts[param] = kind(value)
        except ValueError:
            return None
    if params["fmt"] not in OUTPUT_FORMATS:
        return None
    for param in RUN_PATHS:
        value = params[param]
        if value is None:
            continue
        try:
            os.stat(value)
        except OSError:
            continue
        except ValueError:
            return None
        if not os.access(value, os.R_OK):
            return None
    # what run_command would refuse as a usage error
    if params["corefile"] is not None and params["core_opt"] is not None:
        return None
    if (params["id_host"] is not None or params["use_hash"]) and \
            params["fmt"] not in IDENTIFIED_FORMATS:
        return None
    if params["use_hash"] and params["corefile"] is None and params["core_opt"] is None:
        return None
    return params, opts


def run_plain(args: list[str]) -> State | None:
    """Run ``args`` when it is a plain ``kvmfx run`` line (this ends the process); else
    None, or the state with the registry loaded on the way, for click's tree."""
    head = _plain_head(args)
    if head is None:
        return None
    debug, types, name, words = head
    state = State((), debug, types)
    try:
        registry = state.load_registry()
        if registry.failures:  # click's tree names them, where it always does
            return state
        command = registry.find_command(name)
        parsed = None if command is None else _plain_options(command, words)
        if parsed is None:
            return state
        params, opts = parsed
        try:
            run_command(state, name, command, opts=opts, **params)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            pipe_closed()
        except Exception as exc:
            fail(state, exc)
    except KeyboardInterrupt:
        import click

        click.echo(file=sys.stderr)  # as click ends the terminal's ^C
        echo_err("kvmfx: interrupted")
        sys.exit(130)
    sys.exit(EXIT_OK)


class Kvmfx:
    """The ``kvmfx`` command, as the console script and ``python -m kvmfx.cli`` call it:
    the click group of :mod:`kvmfx.clitree` (whose attributes it has), imported when first
    needed; a plain ``kvmfx run`` line (:func:`run_plain`) is run without it."""

    name = "kvmfx"

    @property
    def group(self) -> click.Group:
        """click's ``kvmfx`` group."""
        from kvmfx.clitree import main as group

        return group

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """As :meth:`click.Command.main`."""
        if standalone_mode and prog_name in (None, self.name) and complete_var is None \
                and not extra and not os.environ.get("_KVMFX_COMPLETE"):
            state = run_plain(sys.argv[1:] if args is None else list(args))
            if state is not None:
                extra["obj"] = state
        return self.group.main(args, prog_name, complete_var, standalone_mode, **extra)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.main(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.group, name)


main = Kvmfx()


if __name__ == "__main__":
    from kvmfx.cli import main as entry  # this module as kvmfx.cli, as kvmfx.clitree uses it

    entry()

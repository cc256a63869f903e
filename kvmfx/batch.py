"""``kvmfx batch``: many dumps, several commands on each, one Dask task per dump.

The parts, in the order a batch runs them:

* :func:`plan`: the dumps named by the inputs (files, directories walked for files a dump
  format recognises by content, CSV/JSON manifests with a host name and ``-N``/``-W`` per
  dump).
* :func:`run_dump`: the task, run on a Dask worker: opens one dump once, runs every command
  on that session, returns the rows, the dump's identity and its status. It never raises for
  a bad dump: its error is the one line ``kvmfx run`` prints.
* :class:`BatchState`: ``OUTDIR/batch.json`` (per dump: status, error, seconds, counts) and
  ``OUTDIR/parts/`` (each finished dump's rows), written as each dump finishes, so that an
  interrupted batch resumes where it stopped and a re-run skips what is done.
* :func:`write_outputs`: the per-command files (JSONL, CSV or Parquet rows; Timesketch;
  ECS), rebuilt from the parts, in the order of the summary.

Scheduling, retries after a worker dies and worker memory limits are Dask's; nothing here
imports Dask, distributed or pyarrow until a batch runs (:mod:`kvmfx.fleet` does).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kvmfx.errors import KvmError, KvmOpenError, UsageError

#: Statuses of one dump in the summary.
OK, PARTIAL, FAILED = "ok", "partial", "failed"
#: Output kinds (``--format``) and the file formats (``--output-format``) each can take.
KINDS = ("rows", "timesketch", "ecs")
FILE_FORMATS = ("jsonl", "csv", "parquet")
SUMMARY = "batch.json"
PARTS = "parts"


@dataclass(frozen=True)
class DumpSpec:
    """One dump to read: its file, the host it came from and its -N / -W files."""

    path: str
    host: str | None = None
    execfile: str | None = None
    swapfile: str | None = None

    @property
    def key(self) -> str:
        """A file name for this dump's parts (the same path gives the same key)."""
        return hashlib.sha256(self.path.encode("utf-8", "surrogateescape")).hexdigest()[:20]


# -- planning ----------------------------------------------------------------------------

#: Manifest columns (CSV header or JSON keys) and the DumpSpec field each fills.
_MANIFEST_KEYS = {"path": "path", "host": "host", "hostname": "host", "execfile": "execfile",
                  "n": "execfile", "-n": "execfile", "swapfile": "swapfile", "w": "swapfile",
                  "-w": "swapfile"}


def _spec_from(entry: dict[str, Any], base: Path, where: str, manifest: str) -> DumpSpec:
    fields: dict[str, str | None] = {}
    for key, value in entry.items():
        name = _MANIFEST_KEYS.get(str(key).strip().lower())
        if name is None:
            continue
        text = None if value is None else str(value).strip()
        fields[name] = text or None
    if not fields.get("path"):
        raise KvmOpenError(f"manifest entry without a path ({where})", path=manifest)
    for name in ("path", "execfile", "swapfile"):
        value = fields.get(name)
        if value is not None and "\0" in value:
            raise KvmOpenError(f"manifest {name} with a NUL character ({where})",
                               path=manifest)
        if value is not None:
            fields[name] = os.path.abspath(base / os.path.expanduser(value))
    return DumpSpec(**fields)  # type: ignore[arg-type]


def read_manifest(path: str) -> list[DumpSpec]:
    """The dumps a manifest lists: JSON (a list of objects, or ``{"dumps": [...]}``) or CSV
    with a header row; columns ``path`` (relative to the manifest), ``host``, ``execfile``
    (or ``N``), ``swapfile`` (or ``W``)."""
    base = Path(path).resolve().parent
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise KvmOpenError(f"cannot read the manifest: {exc}", path=path) from None
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KvmOpenError(f"manifest is not valid JSON: {exc}", path=path) from None
        entries = data.get("dumps") if isinstance(data, dict) else data
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise KvmOpenError('a JSON manifest is a list of objects (or {"dumps": [...]})',
                               path=path)
        return [_spec_from(e, base, f"entry {i}", path) for i, e in enumerate(entries)]
    reader = csv.DictReader(io.StringIO(text))
    try:
        if not reader.fieldnames or \
                "path" not in [f.strip().lower() for f in reader.fieldnames]:
            raise KvmOpenError("a CSV manifest needs a header row with a 'path' column",
                               path=path)
        return [_spec_from(row, base, f"line {reader.line_num}", path) for row in reader]
    except csv.Error as exc:
        raise KvmOpenError(f"manifest is not valid CSV: line {reader.line_num}: {exc}",
                           path=path) from None


#: In a directory, a file is taken as a dump when a format scores it at least this (a raw
#: image, which any file could be, only when it is whole pages: kvmfx_plugins.formats.raw)
#: and it is at least DIRECTORY_MIN_SIZE bytes; a file named on the command line always is.
DIRECTORY_MIN_SCORE = 5
DIRECTORY_MIN_SIZE = 1 << 20


def probe_score(path: str, registry: Any) -> int:
    """The best score a dump format plugin gives ``path`` from its first 64 KiB (how
    ``run`` chooses the format); 0 when none claims it or it cannot be read."""
    from kvmfx.layers import FileSource

    best = 0
    try:
        with FileSource(path) as source:
            head = source.read_upto(0, 65536)
            for fmt in registry.dump_formats:
                try:
                    best = max(best, int(fmt.probe(head, source)))
                except KvmError:
                    continue
    except (KvmError, OSError):
        return 0
    return best


def _dump_in_directory(path: str, registry: Any) -> bool:
    try:
        if os.path.getsize(path) < DIRECTORY_MIN_SIZE:
            return False
    except OSError:
        return False
    return probe_score(path, registry) >= DIRECTORY_MIN_SCORE


def _is_manifest(path: str) -> bool:
    return path.lower().endswith((".csv", ".json"))


def plan(inputs: Iterable[str], registry: Any) -> list[DumpSpec]:
    """The dumps ``inputs`` name, each once, in the order given (directories sorted).

    A file is a dump (even one no format recognises: its error is then reported in the
    summary) unless it is a manifest (``.csv``/``.json`` that no dump format claims); a
    directory gives the files in it, at any depth, that a dump format recognises
    (:data:`DIRECTORY_MIN_SCORE`; hidden files are left out)."""
    out: dict[str, DumpSpec] = {}
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.abspath(os.path.join(root, name))
                    if not name.startswith(".") and os.path.isfile(path) and \
                            _dump_in_directory(path, registry):
                        out.setdefault(path, DumpSpec(path))
        elif _is_manifest(item) and os.path.isfile(item) and \
                probe_score(item, registry) < DIRECTORY_MIN_SCORE:
            for spec in read_manifest(item):
                out.setdefault(spec.path, spec)
        else:
            path = os.path.abspath(item)
            out.setdefault(path, DumpSpec(path))
    return list(out.values())


# -- the task ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskOptions:
    """What every task of a batch shares."""

    commands: tuple[str, ...]
    plugin_dirs: tuple[str, ...] = ()
    types: str | None = None
    hash: bool = False


def error_line(exc: BaseException) -> str:
    """The one line ``kvmfx run`` prints for ``exc`` (kvmfx/cli.py)."""
    if isinstance(exc, KvmError):
        return f"kvmfx: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"kvmfx: {exc.filename}: {exc.strerror or type(exc).__name__}"
    message = " ".join(str(exc).split()) or type(exc).__name__
    return (f"kvmfx: internal error: {type(exc).__name__}: {message} "
            "(rerun with --debug for a traceback)")


@cache
def _registry(plugin_dirs: tuple[str, ...]) -> Any:
    """The plugin registry of this worker process (loaded once per process)."""
    from kvmfx.registry import load_registry

    registry = load_registry(plugin_dirs)
    registry.collect_all()
    return registry


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def capture_time(session: Any) -> str | None:
    """When the dump was taken (ISO 8601 UTC), as the ``boottime`` command says
    (``capture_time``: its crash time, else the kernel's clock at its last update); None
    when no such command is installed or it cannot tell."""
    command = session.registry.commands.get("boottime")
    if command is None:
        return None
    try:
        for row in command.run(session, {}):
            value = row.get("capture_time")
            return value if isinstance(value, str) and value else None
    except KvmError:
        return None
    return None


def dump_identity(session: Any, path: str | None, host: str | None = None) -> dict[str, Any]:
    """What a row's identity fields say of the dump open in ``session`` (the fields of
    :class:`kvmfx.exporters.DumpId`): ``path`` (absolute; None for the live system), the
    host (``host`` if given, else the kernel's own host name, uname nodename, where known),
    the kernel's release and build id, kvmfx's version, the machine and the capture time.
    What cannot be read is None; ``sha256`` is left None (``--hash`` fills it)."""
    from kvmfx import __version__

    release = build_id = nodename = machine = None
    if not session.live:
        try:
            image = session.image
            release, build_id = image.release, image.build_id
            machine = getattr(session.arch, "name", None)
        except KvmError:
            pass
    try:
        uts = session.uname()
        nodename = uts.get("nodename") or None
        release = release or uts.get("release") or None
        machine = machine or uts.get("machine") or None
    except KvmError:
        pass
    return {"path": os.path.abspath(path) if path is not None else None,
            "host": host or nodename, "kernel_release": release, "build_id": build_id,
            "sha256": None, "kvmfx_version": __version__, "machine": machine,
            "nodename": nodename, "captured": capture_time(session)}


def _identity(session: Any, spec: DumpSpec) -> dict[str, Any]:
    _ = session.image  # a dump whose kernel cannot be found fails here, with that reason
    identity = dump_identity(session, spec.path, spec.host)
    identity["path"] = spec.path
    return identity


def run_dump(spec: DumpSpec, options: TaskOptions) -> dict[str, Any]:
    """Open ``spec``'s dump once and run every command on it (the task of one dump).

    Returns ``{"path", "status", "error", "seconds", "identity", "rows": {command: [row]},
    "counts", "errors": {command: line}, "warnings"}``; a dump that cannot be read is
    ``status: failed`` with ``run``'s one-line error, never an exception."""
    from kvmfx.session import Session

    t0 = time.perf_counter()
    result: dict[str, Any] = {"path": spec.path, "status": FAILED, "error": None,
                              "identity": None, "rows": {}, "counts": {}, "errors": {},
                              "warnings": [], "worker_pid": os.getpid()}
    try:
        registry = _registry(options.plugin_dirs)
        unknown = [c for c in options.commands if c not in registry.commands]
        if unknown:
            raise KvmOpenError(f"unknown command {unknown[0]!r} on this worker")
        with Session(corefile=spec.path, execfile=spec.execfile, swapfile=spec.swapfile,
                     registry=registry, types=options.types) as session:
            identity = _identity(session, spec)
            partial = False
            for name in options.commands:
                try:
                    rows = list(registry.commands[name].run(session, {}))
                except KvmError as exc:
                    result["errors"][name] = error_line(exc)
                    continue
                partial = partial or any(r.get("partial") for r in rows)
                result["rows"][name] = rows
                result["counts"][name] = len(rows)
            result["warnings"] = list(session.warnings)
        if options.hash:
            identity["sha256"] = file_sha256(spec.path)
        result["identity"] = identity
        if not result["rows"]:
            result["error"] = next(iter(result["errors"].values()), None)
        else:
            bad = partial or result["errors"] or result["warnings"]
            result["status"] = PARTIAL if bad else OK
            if result["errors"]:
                result["error"] = "; ".join(f"{k}: {v}" for k, v in result["errors"].items())
    except Exception as exc:  # one bad dump never stops the batch
        result["error"] = error_line(exc)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


# -- state: the summary and the parts ------------------------------------------------------

def _stat_key(path: str) -> dict[str, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in a manifest's path
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@dataclass
class BatchState:
    """``OUTDIR/batch.json`` and ``OUTDIR/parts``: what each dump gave, kept across runs."""

    outdir: Path
    dumps: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, outdir: str | Path) -> BatchState:
        out = Path(outdir)
        state = cls(out)
        summary = out / SUMMARY
        if summary.exists():
            try:
                data = json.loads(summary.read_text(encoding="utf-8"))
                entries = data["dumps"]
                state.dumps = {e["path"]: e for e in entries}
                state.meta = {k: v for k, v in data.items() if k != "dumps"}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise KvmOpenError(f"not a kvmfx batch summary: {exc}", path=str(summary)) \
                    from None
        return state

    def part_path(self, spec_key: str) -> Path:
        return self.outdir / PARTS / f"{spec_key}.json"

    def done(self, spec: DumpSpec, commands: Iterable[str], *, retry_failed: bool,
             use_hash: bool) -> bool:
        """Whether ``spec`` needs no new run: its entry is from the same file (path, size,
        mtime; or, with ``use_hash``, the same sha256) and ran every command (failed
        entries count as done unless ``retry_failed``)."""
        entry = self.dumps.get(spec.path)
        if entry is None:
            return False
        if entry["status"] == FAILED:
            return not retry_failed and entry.get("file") == _stat_key(spec.path)
        same = entry.get("file") == _stat_key(spec.path)
        if not same and use_hash and entry.get("sha256") and os.path.isfile(spec.path):
            same = file_sha256(spec.path) == entry["sha256"]
        if not same or not self.part_path(DumpSpec(spec.path).key).exists():
            return False
        return set(commands) <= set(entry.get("commands", []))

    def record(self, spec: DumpSpec, result: dict[str, Any]) -> dict[str, Any]:
        """Keep one task's result: its rows as a part (merged with the commands an earlier
        run gave) and its summary entry; the summary is rewritten at once."""
        part_file = self.part_path(spec.key)
        part_file.parent.mkdir(parents=True, exist_ok=True)
        old = self.dumps.get(spec.path) or {}
        rows = dict(result["rows"])
        counts = dict(result["counts"])
        status, error = result["status"], result["error"]
        errors, warnings = dict(result.get("errors") or {}), list(result.get("warnings") or [])
        if status != FAILED and part_file.exists() and old.get("status") != FAILED and \
                old.get("file") == _stat_key(spec.path):
            # more commands on a dump done before: its earlier rows and verdict stay
            earlier = json.loads(part_file.read_text(encoding="utf-8"))
            for name, old_rows in earlier.get("rows", {}).items():
                rows.setdefault(name, old_rows)
                counts.setdefault(name, len(old_rows))
            if old.get("status") == PARTIAL:
                status = PARTIAL
            errors = {**old.get("errors", {}), **errors}
            warnings = list(dict.fromkeys([*old.get("warnings", []), *warnings]))
            error = "; ".join(f"{k}: {v}" for k, v in errors.items()) or None
        identity = result.get("identity") or {}
        entry = {"path": spec.path, "host": identity.get("host") or spec.host,
                 "status": status, "error": error,
                 "seconds": result.get("seconds"), "counts": counts,
                 "commands": sorted(rows), "errors": errors, "warnings": warnings,
                 "kernel_release": identity.get("kernel_release"),
                 "build_id": identity.get("build_id"), "sha256": identity.get("sha256"),
                 "file": _stat_key(spec.path), "execfile": spec.execfile,
                 "swapfile": spec.swapfile, "key": spec.key,
                 "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        if result["status"] != FAILED:
            _write_atomic(part_file, json.dumps({"identity": identity, "rows": rows},
                                                ensure_ascii=False).encode("utf-8"))
        self.dumps[spec.path] = entry
        self.save()
        return entry

    def save(self) -> None:
        self.outdir.mkdir(parents=True, exist_ok=True)
        statuses = [e["status"] for e in self.dumps.values()]
        data = {**self.meta, "totals": {s: statuses.count(s) for s in (OK, PARTIAL, FAILED)},
                "dumps": list(self.dumps.values())}
        _write_atomic(self.outdir / SUMMARY,
                      json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8"))

    def parts(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """``(entry, part)`` of every dump that gave rows, in summary order."""
        for entry in self.dumps.values():
            if entry["status"] == FAILED:
                continue
            path = self.part_path(entry["key"])
            if path.exists():
                yield entry, json.loads(path.read_text(encoding="utf-8"))


# -- outputs -------------------------------------------------------------------------------

def _dump_id(identity: dict[str, Any]) -> Any:
    from kvmfx.exporters import DumpId

    fields = {k: identity.get(k) for k in DumpId.__dataclass_fields__ if k != "path"}
    path = identity.get("path")
    return DumpId(path=str(path) if path is not None else None, **fields)


def _columns(registry: Any, command: str) -> list[Any]:
    cmd = registry.commands.get(command)
    return list(cmd.columns) if cmd is not None else []


def _csv_cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    n = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False))
            f.write("\n")
            n += 1
    os.replace(tmp, path)
    return n


def _write_csv(path: Path, names: list[str], records: Iterable[dict[str, Any]]) -> int:
    n = 0
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for record in records:
            writer.writerow([_csv_cell(record.get(k)) for k in names])
            n += 1
    os.replace(tmp, path)
    return n


_ARROW_TYPES = {"int": "int64", "float": "float64", "bool": "bool_", "str": "string"}


def _write_parquet(path: Path, names: list[str], types: dict[str, str],
                   records: Iterable[dict[str, Any]]) -> int:
    """Rows as Parquet: columns typed from the command's declared columns (lists of
    strings as lists; objects such as ``missing`` as JSON text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = []
    for name in names:
        kind = types.get(name, "str")
        if kind.startswith("list"):
            fields.append(pa.field(name, pa.list_(pa.string())))
        elif kind in _ARROW_TYPES:
            fields.append(pa.field(name, getattr(pa, _ARROW_TYPES[kind])()))
        else:
            fields.append(pa.field(name, pa.string()))
    schema = pa.schema(fields)
    columns: dict[str, list[Any]] = {n: [] for n in names}
    n = 0
    for record in records:
        for name, f in zip(names, schema, strict=True):
            value = record.get(name)
            if pa.types.is_string(f.type) and isinstance(value, dict | list):
                value = json.dumps(value, ensure_ascii=False)
            elif pa.types.is_string(f.type) and value is not None and \
                    not isinstance(value, str):
                value = str(value)
            columns[name].append(value)
        n += 1
    table = pa.Table.from_pydict(columns, schema=schema)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return n


@dataclass(frozen=True)
class OutputFile:
    """One file :func:`write_outputs` wrote: its rows, and the rows left out of it
    (Timesketch events need a time: a row of a process whose start could not be read has
    none)."""

    path: Path
    rows: int
    left_out: int = 0


def write_outputs(state: BatchState, commands: Iterable[str], registry: Any, *,
                  kinds: Iterable[str] = ("rows",),
                  file_format: str = "jsonl") -> list[OutputFile]:
    """Write every command's output files from the parts (each file whole, replaced
    atomically): ``CMD.jsonl|csv|parquet`` (rows with the dump identity in front),
    ``CMD.timesketch.jsonl|csv``, ``CMD.ecs.jsonl``; the files are listed in the summary
    (``outputs``)."""
    from kvmfx.exporters import (
        IDENTITY_FIELDS,
        ecs_document,
        process_starts,
        timesketch_event,
        with_identity,
    )

    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    parts = list(state.parts())
    written: list[OutputFile] = []
    for command in commands:
        declared = _columns(registry, command)
        names = [*IDENTITY_FIELDS, *(c.name for c in declared)]
        types = {c.name: c.type for c in declared}
        total = sum(len(part["rows"].get(command, [])) for _, part in parts)

        def rows_of(command: str = command) -> Iterator[tuple[Any, dict[str, Any],
                                                               dict[int, str]]]:
            for _entry, part in parts:
                if command not in part["rows"]:
                    continue
                starts = process_starts(part["rows"])
                dump = _dump_id(part["identity"])
                for row in part["rows"][command]:
                    yield dump, row, starts

        for kind in kinds:
            if kind == "rows":
                target = state.outdir / f"{command}.{file_format}"
                plain = (with_identity(r, d, command) for d, r, _ in rows_of())
                if file_format == "jsonl":
                    n = _write_jsonl(target, ({k: r.get(k) for k in names} for r in plain))
                elif file_format == "csv":
                    n = _write_csv(target, names, plain)
                else:
                    n = _write_parquet(target, names, types, plain)
            elif kind == "timesketch":
                events = (e for d, r, s in rows_of()
                          if (e := timesketch_event(r, d, command, s)) is not None)
                if file_format == "csv":
                    materialised = list(events)
                    head = list(dict.fromkeys(k for e in materialised for k in e))
                    target = state.outdir / f"{command}.timesketch.csv"
                    n = _write_csv(target, head, materialised)
                else:
                    target = state.outdir / f"{command}.timesketch.jsonl"
                    n = _write_jsonl(target, events)
            else:
                target = state.outdir / f"{command}.ecs.jsonl"
                n = _write_jsonl(target, (ecs_document(r, d, command, s, created)
                                          for d, r, s in rows_of()))
            written.append(OutputFile(target, n, total - n))
    state.meta["outputs"] = [{"file": f.path.name, "rows": f.rows, "left_out": f.left_out}
                             for f in written]
    state.save()
    return written


# -- running a batch -----------------------------------------------------------------------

@dataclass
class Outcome:
    """What one run of a batch did."""

    planned: int = 0
    skipped: int = 0
    ran: int = 0
    ok: int = 0
    partial: int = 0
    failed: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_death_line(exc: BaseException, spec: DumpSpec) -> str:
    """The summary's error for a task Dask gave up on (its workers died every try)."""
    what = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__name__ == "KilledWorker":
        return (f"kvmfx: {spec.path}: the worker reading it died on every try (out of "
                f"memory? see the Dask worker logs): {what}")
    return error_line(exc)


def run_shipped(spec: DumpSpec, data: bytes, options: TaskOptions) -> dict[str, Any]:
    """:func:`run_dump` on a copy of the dump sent with the task (``--ship``): written to
    the worker's temporary directory, read, and removed; the result names the original."""
    fd, tmp = tempfile.mkstemp(prefix="kvmfx-shipped-", suffix=".dump")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        del data
        result = run_dump(DumpSpec(tmp, spec.host, spec.execfile, spec.swapfile), options)
    finally:
        os.unlink(tmp)
    result["path"] = spec.path
    if result.get("identity"):
        result["identity"]["path"] = spec.path
    if result.get("error"):
        result["error"] = result["error"].replace(tmp, spec.path)
    return result


def run_batch(specs: list[DumpSpec], options: TaskOptions, outdir: str | Path, client: Any,
              *, retry_failed: bool = False, ship: bool = False,
              on_result: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
              on_start: Callable[[int, int], None] | None = None,
              meta: dict[str, Any] | None = None) -> tuple[BatchState, Outcome]:
    """Run the dumps of ``specs`` that are not done yet on ``client`` (a Dask Client), each
    as one task, keeping each result as it arrives. ``on_start(todo, skipped)`` is called
    once; ``on_result(entry, result)`` after each dump.

    With ``ship``, each dump's bytes go to the worker with its task (for workers that cannot
    read the client's files); only twice as many dumps as there are workers are in flight,
    so that the client holds a few dumps in memory at a time, not all."""
    from distributed import as_completed

    from kvmfx import __version__

    t0 = time.perf_counter()
    state = BatchState.load(outdir)
    state.meta.update({"kvmfx_version": __version__, **(meta or {})})
    outcome = Outcome(planned=len(specs))
    todo = [s for s in specs if not state.done(s, options.commands, retry_failed=retry_failed,
                                              use_hash=options.hash)]
    outcome.skipped = len(specs) - len(todo)
    if on_start is not None:
        on_start(len(todo), outcome.skipped)
    by_key: dict[str, DumpSpec] = {}
    futures: list[Any] = []

    def submit(spec: DumpSpec) -> Any:
        entry = state.dumps.get(spec.path)
        run_options = options
        if entry is not None and entry["status"] != FAILED and \
                entry.get("file") == _stat_key(spec.path):
            missing = tuple(c for c in options.commands if c not in entry.get("commands", []))
            run_options = TaskOptions(missing or options.commands, options.plugin_dirs,
                                      options.types, options.hash)
        key = f"kvmfx-dump-{spec.key}-{os.urandom(4).hex()}"
        if ship:
            try:
                data = Path(spec.path).read_bytes()
            except OSError:  # unreadable here: the worker says so, as run would
                future = client.submit(run_dump, spec, run_options, pure=False, key=key)
            else:  # scattered, not embedded in the task graph (Dask warns of large graphs)
                shipped = client.scatter(data, hash=False)
                del data
                future = client.submit(run_shipped, spec, shipped, run_options, pure=False,
                                       key=key)
                del shipped  # the task holds it; released with the task
        else:
            future = client.submit(run_dump, spec, run_options, pure=False, key=key)
        by_key[future.key] = spec
        futures.append(future)
        return future

    window = max(2, 2 * len(client.scheduler_info().get("workers", {}))) if ship else len(todo)
    queue = iter(todo)
    first = [submit(spec) for spec, _ in zip(queue, range(window), strict=False)]
    try:
        running = as_completed(first)
        for future in running:
            spec = by_key[future.key]
            try:
                result = future.result()
            except Exception as exc:  # Dask gave up (KilledWorker...): the dump failed
                result = {"path": spec.path, "status": FAILED,
                          "error": worker_death_line(exc, spec), "rows": {}, "counts": {}}
            entry = state.record(spec, result)
            outcome.ran += 1
            setattr(outcome, entry["status"], getattr(outcome, entry["status"]) + 1)
            if on_result is not None:
                on_result(entry, result)
            future.release()
            following = next(queue, None)
            if following is not None:
                running.add(submit(following))
    finally:
        for future in futures:
            future.cancel()
        state.meta["finished"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        state.meta["commands"] = sorted({*state.meta.get("commands", []), *options.commands})
        state.save()
    outcome.seconds = round(time.perf_counter() - t0, 3)
    return state, outcome


def check_cluster_options(scheduler: str | None, memory_limit: str | None) -> None:
    """Refuse, before any work, a scheduler that is no address and a memory limit that is
    no size (UsageError)."""
    if memory_limit is not None:
        from dask.utils import parse_bytes

        try:
            parse_bytes(memory_limit)
        except ValueError as exc:
            raise UsageError(f"--memory-limit: {exc}") from None
    if scheduler is not None:
        from distributed.comm import parse_address
        from distributed.comm.addressing import parse_host_port

        try:
            scheme, location = parse_address(scheduler)
            if scheme in ("tcp", "tls"):
                parse_host_port(location)
        except ValueError as exc:
            raise UsageError(f"--scheduler: {exc}") from None


def local_client(workers: int | None = None, memory_limit: str | None = None) -> Any:
    """A Dask client of a local cluster on this machine: one single-threaded worker
    process per core (or ``workers``), each held to ``memory_limit`` (Dask's "auto": the
    machine's memory shared out)."""
    import logging

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, memory_limit=memory_limit or "auto",
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster)


def remote_client(address: str) -> Any:
    """A Dask client of the running cluster at ``address`` (``tcp://HOST:8786``)."""
    from distributed import Client

    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise KvmOpenError(f"cannot reach the Dask scheduler: {' '.join(str(exc).split())}",
                           path=address) from None


def _dumps(n: int) -> str:
    return f"{n} dump" if n == 1 else f"{n} dumps"


class ProgressView:
    """Progress of a batch on stderr: a live bar (dumps done / total, failures, throughput)
    on a terminal, one plain line per finished dump otherwise (a log)."""

    def __init__(self, live: bool, echo: Callable[[str], None]) -> None:
        self.live = live
        self.echo = echo
        self.total = 0
        self.done = 0
        self.failed = 0
        self.bytes = 0
        self.t0 = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None

    def _rate(self) -> str:
        elapsed = max(time.perf_counter() - self.t0, 1e-6)
        return (f"{self.done / elapsed * 60:.1f} dumps/min, "
                f"{self.bytes / elapsed / (1 << 20):.0f} MB/s")

    def start(self, todo: int, skipped: int) -> None:
        self.total = todo
        self.t0 = time.perf_counter()
        if skipped:
            self.echo(f"kvmfx: batch: {_dumps(skipped)} done before, skipped")
        if self.live and todo:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("dumps"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=False)
            self._progress.start()
            self._task = self._progress.add_task("batch", total=todo, failed=0, rate="")
        elif todo:
            self.echo(f"kvmfx: batch: {_dumps(todo)} to read")

    def update(self, entry: dict[str, Any], result: dict[str, Any]) -> None:
        self.done += 1
        self.failed += entry["status"] == FAILED
        self.bytes += (entry.get("file") or {}).get("size", 0)
        if self._progress is not None:
            self._progress.update(self._task, advance=1, failed=self.failed,
                                  rate=self._rate())
            if entry["status"] != OK:
                self._progress.console.print(
                    f"{entry['status']}: {entry['path']}: {entry.get('error') or 'partial'}",
                    markup=False, highlight=False)
            return
        seconds = entry.get("seconds")
        what = f" ({entry['error']})" if entry.get("error") else ""
        self.echo(f"kvmfx: batch: [{self.done}/{self.total}] {entry['status']} "
                  f"{entry['path']} host={entry.get('host') or '-'} "
                  f"{seconds if seconds is not None else '-'} s; {self.failed} failed; "
                  f"{self._rate()}{what}")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

"""Bench suite ``batch``: N dumps read one ``kvmfx run`` process at a time, against one
``kvmfx batch`` on a local Dask cluster of 1 and 2 workers (psaux and envars on each dump);
and what the first dump of a kernel build costs (its profile is made then, and shared on
disk by every worker) beside the others.

Each configuration starts with an empty profile cache (``KVMFX_PROFILE_DIR``) so that all
pay for the one profile build; wall times are whole processes, cluster start-up included.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("psaux", "envars")
#: at least this many dumps (the fixture's dump files, repeated through links if short)
MIN_DUMPS = 8


def _dumps(fx: Any, into: Path) -> list[str]:
    """The fixture's dumps (every format), as links in ``into`` (at least MIN_DUMPS)."""
    keys = [k for k in fx.files if k != "swap"]
    out = []
    i = 0
    while len(out) < max(MIN_DUMPS, len(keys)):
        key = keys[i % len(keys)]
        link = into / f"{i:02d}-{key}"
        link.symlink_to(fx.path(key))
        out.append(str(link))
        i += 1
    return out


def _env(profiles: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), KVMFX_PROFILE_DIR=profiles,
                PYTHONDONTWRITEBYTECODE="1")


def _sequential(dumps: list[str]) -> dict[str, Any]:
    """``kvmfx run CMD DUMP`` for every dump and command, one process after the other."""
    per_dump = []
    with tempfile.TemporaryDirectory() as profiles:
        t0 = time.perf_counter()
        for dump in dumps:
            t = time.perf_counter()
            for command in COMMANDS:
                subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", command, dump,
                                "--format", "jsonl", "-o", os.devnull], env=_env(profiles),
                               capture_output=True, cwd=ROOT, timeout=1800)
            per_dump.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
    return {"wall": wall, "per_dump": per_dump, "order": list(range(len(dumps)))}


def _batch(dumps: list[str], workers: int) -> dict[str, Any]:
    """One ``kvmfx batch`` on a local cluster of ``workers`` worker processes."""
    with tempfile.TemporaryDirectory() as profiles, tempfile.TemporaryDirectory() as out:
        args = [sys.executable, "-m", "kvmfx.cli", "batch", *dumps, "-o", out,
                "--workers", str(workers), "--no-progress"]
        for command in COMMANDS:
            args += ["-c", command]
        t0 = time.perf_counter()
        proc = subprocess.run(args, env=_env(profiles), capture_output=True, text=True,
                              cwd=ROOT, timeout=1800)
        wall = time.perf_counter() - t0
        if proc.returncode not in (0, 4):
            return {"error": proc.stderr.strip().splitlines()[-1:], "wall": wall}
        summary = json.loads((Path(out) / "batch.json").read_text())
    entries = {e["path"]: e for e in summary["dumps"]}
    ordered = [entries[d] for d in dumps]
    finished = sorted(range(len(dumps)), key=lambda i: ordered[i]["finished"])
    return {"wall": wall, "per_dump": [e["seconds"] for e in ordered], "order": finished,
            "statuses": [e["status"] for e in ordered]}


def _first_of_build(builds: list[str], run: dict[str, Any]) -> tuple[list[float],
                                                                     list[float]]:
    """Seconds of the first dump of each kernel build to finish (its profile was made
    then, by whichever worker got there first), and of the others."""
    first: list[float] = []
    rest: list[float] = []
    seen: set[str] = set()
    for i in run["order"]:
        (rest if builds[i] in seen else first).append(run["per_dump"][i])
        seen.add(builds[i])
    return first, rest


def _rows(what: str, dumps: list[str], builds: list[str],
          data: dict[str, Any]) -> list[list[str]]:
    rows = []
    seq = _sequential(dumps)
    data[f"{what}-sequential"] = seq
    runs = [("kvmfx run, one process per dump and command", "-", seq)]
    for workers in (1, 2):
        r = _batch(dumps, workers)
        data[f"{what}-batch-{workers}"] = r
        runs.append(("kvmfx batch (local Dask)", str(workers), r))
    for mode, workers, r in runs:
        label = f"{what}: {mode}"
        if "error" in r:
            rows.append([label, workers, str(len(dumps)), f"{r['wall']:.1f}", "-", "-", "-",
                         "-", str(r["error"])])
            continue
        first, rest = _first_of_build(builds, r)
        rows.append([label, workers, str(len(dumps)), f"{r['wall']:.1f}",
                     f"{len(dumps) / r['wall'] * 60:.1f}", f"{seq['wall'] / r['wall']:.2f}",
                     f"{statistics.median(r['per_dump']):.2f}",
                     f"{statistics.median(first):.2f} ({len(first)})",
                     f"{statistics.median(rest):.2f}" if rest else "-"])
    return rows


#: the kernels part: two dumps of each of four kernel builds
KERNELS = [("basic", "kdump-zlib"), ("basic", "mdf-lzo"), ("trixie", "kdump-zlib"),
           ("trixie", "mdf-lzo"), ("bullseye", "kdump-zlib"), ("bullseye", "mdf-lzo"),
           ("backports", "kdump-zlib"), ("backports", "mdf-lzo")]


def batch(fx: Any, peer_py: str | None) -> tuple[list[str], list[list[str]], Any]:
    from tests.factory import get_fixture

    header = ["dumps: mode", "workers", "dumps", "wall s", "dumps/min", "x sequential",
              "per dump s (median)", "first of a build s (median, builds)",
              "rest median s"]
    rows: list[list[str]] = []
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as links:
        dumps = _dumps(fx, Path(links))
        rows += _rows(f"{fx.name} (every format)", dumps, ["one"] * len(dumps), data)
        kernels = [str(get_fixture(s).path(k)) for s, k in KERNELS]
        rows += _rows("4 kernel builds", kernels, [s for s, _ in KERNELS], data)
    return header, rows, data

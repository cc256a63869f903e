"""The scale suite: psaux on 100 to 20,000 processes, kvmfx cold and warm beside drgn.

``python -m bench --suite scale``: for each of the factory's scale scenarios (``scale-100``,
``scale-1k``, ``scale``, ``scale-20k``: ~100, ~1,000, ~5,063 and ~20,000 processes, Debian
12's kernel), the headline job (bench/job.py: every process's pid, ppid, comm, argv and
environment as JSON) by kvmfx as installed (bench/.kvmfx, from the image alone) and by drgn
0.3 with the Debian debug vmlinux. Each figure is the median of :data:`RUNS` whole
processes (interpreter start, imports, open, walk): cold with an empty profile cache, warm
with the profile the cold run left; each round runs kvmfx cold, kvmfx warm and drgn one
after the other. The guest's own counts of processes and
tasks (truth["counts"]) are printed beside what each tool listed.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from typing import Any

from bench.headline import JOB, _env, kvmfx_python, timed

#: scenario -> what it holds
SIZES = {"scale-100": "~100 processes", "scale-1k": "~1,000", "scale": "~5,000",
         "scale-20k": "~20,000"}
RUNS = 3


def _vmlinux(release: str) -> str | None:
    from tests.factory import FactoryError, debug_vmlinux

    try:
        return str(debug_vmlinux(release))
    except (FactoryError, OSError) as exc:
        print(f"bench: no debug vmlinux for {release} ({exc})", file=sys.stderr)
        return None


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if key in r and r.get("status") == 0]
    return statistics.median(vals) if vals else None


def _runs(path: str, peer_py: str | None, vmlinux: str | None
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """RUNS rounds of: kvmfx cold (a fresh profile directory), kvmfx warm (the profile the
    cold run left), drgn; a round's three runs are close in time, so a load that comes and
    goes on the machine weighs on each tool alike."""
    py = kvmfx_python()
    cold, warm, drgn = [], [], []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as profiles:
            env = _env(KVMFX_PROFILE_DIR=profiles)
            cold.append(_counted(timed([py, JOB, "kvmfx", path], env)))
            warm.append(_counted(timed([py, JOB, "kvmfx", path], env)))
        if peer_py and vmlinux:
            drgn.append(_counted(timed([peer_py, JOB, "drgn", path, vmlinux], _env())))
    return cold, warm, drgn


def _counted(result: dict[str, Any]) -> dict[str, Any]:
    """A run's figures, its rows counted (not kept)."""
    rows = result.pop("rows", None)
    if rows is not None:
        result["processes"] = len(rows)
    return result


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def scale(fx: Any, peer_py: str | None) -> tuple[list[str], list[list[str]], Any]:
    """psaux against the number of processes (fx, the --scenario fixture, is not used)."""
    from tests.factory import get_fixture

    header = ["scenario", "guest processes / tasks", "kvmfx listed", "drgn listed",
              "kvmfx cold s", "kvmfx warm s", "drgn s", "µs/process cold / warm / drgn",
              "marginal µs/process warm / drgn", "peak RSS MiB cold / warm / drgn",
              "drgn / kvmfx cold", "drgn / kvmfx warm"]
    rows, data = [], {}
    py = kvmfx_python()
    prev: tuple[int, float | None, float | None] | None = None
    for name in SIZES:
        sfx = get_fixture(name)
        path = str(sfx.path("elf"))
        counts = sfx.truth.get("counts", {})
        n = counts.get("processes") or 0
        vmlinux = _vmlinux(sfx.truth["kernel"]["release"]) if peer_py else None
        timed([py, JOB, "kvmfx", path], _env())  # untimed: the dump in the page cache
        if peer_py and vmlinux:  # untimed: the debug vmlinux in the page cache
            timed([peer_py, JOB, "drgn", path, vmlinux], _env())
        cold, warm, drgn = _runs(path, peer_py, vmlinux)
        c, w, d = (_median(r, "seconds") for r in (cold, warm, drgn))
        per = [f"{t / n * 1e6:,.0f}" if t and n else "-" for t in (c, w, d)]
        marginal = "-"
        if prev is not None and n > prev[0] and w and prev[1]:
            dw = (w - prev[1]) / (n - prev[0]) * 1e6
            dd = (d - prev[2]) / (n - prev[0]) * 1e6 if d and prev[2] else None
            marginal = f"{dw:,.0f} / {_fmt(dd, ',.0f')}"
        prev = (n, w, d)
        rss = " / ".join(_fmt(_median(r, "rss_mib"), ".0f") for r in (cold, warm, drgn))
        rows.append([name, f"{n:,} / {counts.get('tasks', 0):,}",
                     str(warm[-1].get("processes", warm[-1].get("error"))),
                     str(drgn[-1].get("processes", drgn[-1].get("error"))) if drgn else "-",
                     _fmt(c), _fmt(w), _fmt(d), " / ".join(per), marginal, rss,
                     f"{d / c:.2f}x" if d and c else "-", f"{d / w:.2f}x" if d and w else "-"])
        data[name] = {"counts": counts, "kvmfx-cold": cold, "kvmfx-warm": warm, "drgn": drgn}
    return header, rows, data

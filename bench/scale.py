"""The scale suite: psaux on 100 to 20,000 processes, kvmfx cold and warm beside drgn.

``python -m bench --suite scale``: for each of the factory's scale scenarios (``scale-100``,
``scale-1k``, ``scale``, ``scale-20k``: ~100, ~1,000, ~5,063 and ~20,000 processes, Debian
12's kernel), the worker kinds ``kvmfx-psaux`` (open the dump from the image alone, list
every process and read its argv) and ``drgn-psaux`` (drgn 0.3 with the Debian debug vmlinux:
every task and its cmdline). Each figure is the median of :data:`RUNS` fresh worker
processes, timed whole (interpreter start, imports, open, walk): cold with an empty profile
cache, warm with the profile the cold run left; each round runs kvmfx cold, kvmfx warm and
drgn one after the other. The guest's own counts of processes and
tasks (truth["counts"]) are printed beside what each tool listed.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from typing import Any

from bench.__main__ import run_worker

#: scenario -> what it holds
SIZES = {"scale-100": "~100 processes", "scale-1k": "~1,000", "scale": "~5,000",
         "scale-20k": "~20,000"}
RUNS = 3
#: the workers write their bytecode once (PYTHONDONTWRITEBYTECODE=1 would make every run
#: compile kvmfx's sources: ~0.17 s of each figure)
ENV = {"PYTHONDONTWRITEBYTECODE": ""}


def _vmlinux(release: str) -> str | None:
    from tests.factory import FactoryError, debug_vmlinux

    try:
        return str(debug_vmlinux(release))
    except (FactoryError, OSError) as exc:
        print(f"bench: no debug vmlinux for {release} ({exc})", file=sys.stderr)
        return None


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if key in r and "error" not in r]
    return statistics.median(vals) if vals else None


def _runs(path: str, peer_py: str | None, vmlinux: str | None
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """RUNS rounds of: kvmfx cold (a fresh profile directory), kvmfx warm (the profile the
    cold run left), drgn; a round's three runs are close in time, so a load that comes and
    goes on the machine weighs on each tool alike."""
    cold, warm, drgn = [], [], []
    for _ in range(RUNS):
        with tempfile.TemporaryDirectory() as profiles:
            env = {**ENV, "KVMFX_PROFILE_DIR": profiles}
            task = {"kind": "kvmfx-psaux", "path": path}
            cold.append(run_worker(sys.executable, task, env))
            warm.append(run_worker(sys.executable, task, env))
        if peer_py and vmlinux:
            drgn.append(run_worker(peer_py, {"kind": "drgn-psaux", "path": path,
                                             "vmlinux": vmlinux}, ENV))
    return cold, warm, drgn


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
    # one untimed run first: every worker's bytecode written, the dump in the page cache
    first = get_fixture(next(iter(SIZES)))
    run_worker(sys.executable, {"kind": "kvmfx-psaux", "path": str(first.path("elf"))}, ENV)
    prev: tuple[int, float | None, float | None] | None = None
    for name in SIZES:
        sfx = get_fixture(name)
        path = str(sfx.path("elf"))
        counts = sfx.truth.get("counts", {})
        n = counts.get("processes") or 0
        vmlinux = _vmlinux(sfx.truth["kernel"]["release"]) if peer_py else None
        if peer_py and vmlinux:  # untimed: the debug vmlinux in the page cache
            run_worker(peer_py, {"kind": "drgn-psaux", "path": path, "vmlinux": vmlinux}, ENV)
        cold, warm, drgn = _runs(path, peer_py, vmlinux)
        c, w, d = _median(cold, "wall"), _median(warm, "wall"), _median(drgn, "wall")
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

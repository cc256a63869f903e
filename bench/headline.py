"""The headline figures: whole processes, kvmfx as a user installs it, drgn beside it.

kvmfx runs from its own virtual environment (``bench/.kvmfx``: ``pip install .`` of this
tree, bytecode compiled at install, as a user gets it), drgn from the peers' (``bench/.peers``,
with the kernel's Debian debug vmlinux). Each figure is the median of ``ROUNDS`` rounds; a
round runs kvmfx cold, kvmfx warm, ``kvmfx run pslist`` warm and drgn one after the other
(paired: a slow moment of the machine touches all of them).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.__main__ import ROOT

VENV = ROOT / "bench" / ".kvmfx"
JOB = str(ROOT / "bench" / "job.py")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
#: the kernel matrix and the arm64 kernels: fixture -> label
KERNELS = {"bullseye": "Debian 11", "basic": "Debian 12", "trixie": "Debian 13",
           "backports": "trixie-backports", "arm64": "Debian 12 arm64 (4K)",
           "arm64-16k": "Debian 13 arm64 (16K)"}
#: the issue's targets
COLD_RATIO, WARM_RATIO, PSLIST_S, IMPORT_MS, HELP_S, RSS_MIB = 1.0, 1 / 3, 0.25, 60, 0.15, 100


def _tree_digest() -> str:
    h = hashlib.sha256()
    for folder in ("kvmfx", "plugins", "profiles"):
        for f in sorted((ROOT / folder).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode() + f.read_bytes())
    h.update((ROOT / "pyproject.toml").read_bytes())
    return h.hexdigest()


def kvmfx_python() -> str:
    """The interpreter of bench/.kvmfx, with this tree installed (again when it changed)."""
    py = VENV / "bin" / "python"
    stamp = VENV / "installed-tree"
    digest = _tree_digest()
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(ROOT)], check=True,
                       timeout=900)
    elif not stamp.exists() or stamp.read_text() != digest:
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps",
                        "--force-reinstall", str(ROOT)], check=True, timeout=900)
    stamp.write_text(digest)
    return str(py)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KVMFX_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd`` as a whole process: wall seconds, peak RSS (the job's own VmHWM, or the
    child's ru_maxrss), exit status, and what it printed (JSON rows when it is a job)."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err, rss = (Path(tmp) / n for n in ("out", "err", "rss"))
        env = dict(env, BENCH_RSS_FILE=str(rss))
        with out.open("wb") as fo, err.open("wb") as fe:
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=tmp)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        kib = int(rss.read_text()) if rss.exists() else usage.ru_maxrss
        result: dict[str, Any] = {"seconds": wall, "rss_mib": kib / 1024,
                                  "status": proc.returncode}
        if proc.returncode != 0:
            result["error"] = (err.read_text(errors="replace").strip().splitlines()
                               or ["failed"])[-1]
        elif cmd[1:2] == [JOB]:
            result["rows"] = json.loads(out.read_text())
        return result


def _median(runs: list[dict[str, Any]], key: str = "seconds") -> float | None:
    values = [r[key] for r in runs if r.get("status") == 0]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def kernels(fx: Any, peer_py: str | None) -> tuple[list[str], list[list[str]], Any]:
    """Cold and warm whole-process times of the job on each kernel, beside drgn's."""
    from bench.suites import _debug_vmlinux
    from tests.factory import FactoryError, get_fixture

    py = kvmfx_python()
    cli = str(VENV / "bin" / "kvmfx")
    header = ["kernel", "release", "processes", "kvmfx cold s", "kvmfx warm s", "drgn s",
              "cold / drgn", "warm / drgn", "pslist warm s", "RSS MiB cold / warm / drgn",
              "targets"]
    rows, data = [], {}
    for name, label in KERNELS.items():
        try:
            kfx = get_fixture(name)
        except FactoryError as exc:
            rows.append([label, "-", f"no fixture: {exc}"[:60]] + ["-"] * 8)
            continue
        dump = str(kfx.path("elf"))
        vmlinux = _debug_vmlinux(kfx) if peer_py else None
        runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "pslist": [],
                                                 "drgn": []}
        with tempfile.TemporaryDirectory() as warm_dir:
            timed([py, JOB, "kvmfx", dump], _env(KVMFX_PROFILE_DIR=warm_dir))  # the profile
            for _ in range(ROUNDS):
                with tempfile.TemporaryDirectory() as cold_dir:
                    runs["cold"].append(timed([py, JOB, "kvmfx", dump],
                                              _env(KVMFX_PROFILE_DIR=cold_dir)))
                runs["warm"].append(timed([py, JOB, "kvmfx", dump],
                                          _env(KVMFX_PROFILE_DIR=warm_dir)))
                runs["pslist"].append(timed([cli, "run", "pslist", dump, "-o", os.devnull],
                                            _env(KVMFX_PROFILE_DIR=warm_dir)))
                if peer_py and vmlinux:
                    runs["drgn"].append(timed([peer_py, JOB, "drgn", dump, vmlinux], _env()))
        cold, warm, drgn = (_median(runs[k]) for k in ("cold", "warm", "drgn"))
        pslist = _median(runs["pslist"])
        rss = [_median(runs[k], "rss_mib") for k in ("cold", "warm", "drgn")]
        procs = next((len(r["rows"]) for r in runs["warm"] if "rows" in r), None)
        errors = sorted({r["error"] for rs in runs.values() for r in rs if "error" in r})
        met = []
        if cold and warm and drgn:
            met += [f"cold {'ok' if cold / drgn <= COLD_RATIO else 'MISSED'}",
                    f"warm {'ok' if warm / drgn <= WARM_RATIO else 'MISSED'}"]
        if pslist:
            met.append(f"pslist {'ok' if pslist <= PSLIST_S else 'MISSED'}")
        if rss[0]:
            met.append(f"RSS {'ok' if max(r or 0 for r in rss[:2]) < RSS_MIB else 'MISSED'}")
        rows.append([label, kfx.truth["kernel"]["release"],
                     str(procs) if procs is not None else "; ".join(errors)[:60],
                     _fmt(cold), _fmt(warm), _fmt(drgn),
                     _fmt(cold / drgn if cold and drgn else None),
                     _fmt(warm / drgn if warm and drgn else None), _fmt(pslist),
                     " / ".join(_fmt(r, ".0f") for r in rss), ", ".join(met)])
        data[name] = {"release": kfx.truth["kernel"]["release"], "runs": {
            k: [{x: y for x, y in r.items() if x != "rows"} for r in v]
            for k, v in runs.items()}, "errors": errors}
    return header, rows, data


def startup(fx: Any, peer_py: str | None) -> tuple[list[str], list[list[str]], Any]:
    """``import kvmfx`` and ``kvmfx --help``, as installed (medians of ROUNDS)."""
    py = Path(kvmfx_python())
    header = ["what", "median", "target", "how"]
    imports, helps, bare = [], [], []
    for _ in range(ROUNDS):
        r = subprocess.run([str(py), "-X", "importtime", "-c", "import kvmfx"],
                           capture_output=True, text=True, env=_env())
        for line in r.stderr.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] == "kvmfx":
                imports.append(int(parts[1]) / 1000)
        helps.append(timed([str(VENV / "bin" / "kvmfx"), "--help"], _env())["seconds"])
        bare.append(timed([str(py), "-c", "pass"], _env())["seconds"])
    imp, hlp, base = (statistics.median(v) if v else None for v in (imports, helps, bare))
    rows = [["import kvmfx", f"{_fmt(imp, '.1f')} ms", f"<= {IMPORT_MS} ms",
             "python -X importtime -c 'import kvmfx' (cumulative)"],
            ["kvmfx --help", f"{_fmt(hlp)} s", f"<= {HELP_S} s",
             "whole process of the installed console script"],
            ["python -c pass", f"{_fmt(base)} s", "-", "the interpreter alone"]]
    return header, rows, {"import_ms": imports, "help_s": helps, "python_s": bare}

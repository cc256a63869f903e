"""Run the benchmarks and print a table: ``python -m bench [--scenario basic] [--suite ...]``.

Each measurement runs in a fresh subprocess so that peak RSS (ru_maxrss) is its own. Peer tools
(drgn, Volatility 3) run from a private virtual environment (``bench/.peers``, created on first
use with pip) on the same input, and the ratio is printed beside kvmfx.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / ".peers"
WORKER = [sys.executable, "-m", "bench.worker"]


def peers_python() -> str | None:
    """Python of the peers' venv (drgn, volatility3), creating it if needed."""
    py = PEERS / "bin" / "python"
    if not py.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "--quiet", "drgn", "volatility3"],
                           check=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"bench: peers unavailable: {exc}", file=sys.stderr)
            return None
    return str(py)


def run_worker(python: str, task: dict[str, object],
               env_extra: dict[str, str] | None = None) -> dict[str, object]:
    """Run one measurement in a subprocess; returns its JSON result plus peak RSS."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    t = time.perf_counter()
    proc = subprocess.run([python, "-m", "bench.worker", json.dumps(task)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=3600)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"], "wall": wall}
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    result.setdefault("wall", wall)
    return result


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> int:
    from bench import suites

    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--scenario", default="basic", help="fixture scenario (tests/factory)")
    ap.add_argument("--suite", action="append", choices=sorted(suites.SUITES),
                    help="run only these suites (repeatable)")
    ap.add_argument("--no-peers", action="store_true", help="skip drgn / Volatility 3")
    ap.add_argument("--json", help="also write the raw results to this file")
    args = ap.parse_args()
    from tests.factory import get_fixture

    fx = get_fixture(args.scenario)
    peer_py = None if args.no_peers else peers_python()
    print(f"# kvmfx bench, {time.strftime('%Y-%m-%d')}, {machine()}, scenario {args.scenario}")
    raw = {}
    for name in args.suite or sorted(suites.SUITES):
        header, rows, data = suites.SUITES[name](fx, peer_py)
        raw[name] = data
        print(f"\n## {name}\n")
        print(table(rows, header))
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark suites: each returns (header, rows, raw data) for the table."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import headline
from bench.__main__ import run_worker
from bench.scale import scale

MB = 1 << 20
READ_FORMATS = ["raw", "elf", "lime", "mdf-zlib", "mdf-lzo", "mdf-zstd", "flattened",
                "kdump-zlib"]


def _mbps(nbytes: float, seconds: float) -> str:
    return f"{nbytes / MB / seconds:,.0f}" if seconds > 0 else "-"


def _debug_vmlinux(fx: Any) -> str | None:
    """The Debian debug vmlinux of the fixture's kernel (for drgn), downloaded once."""
    from tests.factory import FactoryError, debug_vmlinux

    try:
        return str(debug_vmlinux(fx.truth["kernel"]["release"]))
    except (FactoryError, OSError) as exc:
        print(f"bench: no debug vmlinux ({exc})", file=sys.stderr)
        return None


def reads(fx: Any, peer_py: str | None) -> tuple[list[str], list[list[str]], Any]:
    header = ["file", "format", "producer", "size MB", "seq 4K MB/s", "random 4K MB/s",
              "peak RSS MiB", "limit MB/s", "limit", "x limit"]
    rows, data = [], {}
    raw = fx.path("raw") if "raw" in fx.files else fx.path("elf")
    t = time.perf_counter()
    subprocess.run(["dd", f"if={raw}", "of=/dev/null", "bs=1M"], capture_output=True)
    dd = raw.stat().st_size / (time.perf_counter() - t)
    dd_what = f"dd of the {raw.name} file"
    for key in READ_FORMATS:
        if key not in fx.files:
            continue
        path = fx.path(key)
        meta = fx.manifest["files"][key]
        seq = run_worker(sys.executable, {"kind": "kvmfx-read", "path": str(path),
                                          "mode": "seq"})
        rnd = run_worker(sys.executable, {"kind": "kvmfx-read", "path": str(path),
                                          "mode": "random"})
        codec = run_worker(sys.executable, {"kind": "codec-limit", "path": str(path)})
        limit, what = (codec.get("mbps"), codec.get("codec")) if codec.get("mbps") else (
            dd / MB, dd_what)
        seq_mbps = seq.get("bytes", 0) / MB / seq["read_s"] if "read_s" in seq else 0
        rows.append([key, meta["format"], meta["producer"].split(" (")[0],
                     f"{meta['size'] / MB:,.0f}", _mbps(seq.get("bytes", 0), seq.get("read_s", 0)),
                     _mbps(rnd.get("bytes", 0), rnd.get("read_s", 0)),
                     f"{max(seq.get('rss_mib', 0), rnd.get('rss_mib', 0)):.0f}",
                     f"{limit:,.0f}" if limit else "-", what,
                     f"{seq_mbps / limit:.2f}" if limit else "-"])
        data[key] = {"seq": seq, "random": rnd, "codec": codec}
        if key == "elf" and peer_py:
            ranges = [[a, b] for a, b in _ranges(path)]
            dseq = run_worker(peer_py, {"kind": "drgn-read", "path": str(path), "mode": "seq",
                                        "ranges": ranges})
            if "read_s" in dseq:
                ratio = (seq.get("bytes", 0) / seq["read_s"]) / (dseq["bytes"] / dseq["read_s"])
                rows.append(["elf", "elf", "drgn 0.3 (same file)",
                             f"{meta['size'] / MB:,.0f}", _mbps(dseq["bytes"], dseq["read_s"]),
                             "-", f"{dseq.get('rss_mib', 0):.0f}", "-",
                             "kvmfx/drgn seq ratio", f"{ratio:.2f}"])
            data["drgn-elf"] = dseq
    return header, rows, data


def _ranges(path: Path) -> list[tuple[int, int]]:
    import kvmfx
    with kvmfx.open(str(path)) as s:
        return [(r.start, r.end) for r in s.physical.ranges]


def startup(fx: Any, peer_py: str | None) -> tuple[list[str], list[list[str]], Any]:
    """Open to symbols + types ready, from the image alone (cold: a fresh process)."""
    header = ["tool", "input", "cache", "symbols from", "symbols", "types", "seconds",
              "peak RSS MiB"]
    rows, data = [], {}
    for key in ("elf", "mdf-zlib", "kdump-zlib", "lime"):
        if key not in fx.files:
            continue
        with tempfile.TemporaryDirectory() as profiles:
            env = {"KVMFX_PROFILE_DIR": profiles}
            for cache in ("cold", "warm"):
                r = run_worker(sys.executable, {"kind": "kvmfx-symbols",
                                                "path": str(fx.path(key))}, env)
                data[f"{key}-{cache}"] = r
                rows.append(["kvmfx", key, cache, str(r.get("source", r.get("error")))[:24],
                             str(r.get("symbols")), str(r.get("types")),
                             f"{r.get('total_s', 0):.2f}", f"{r.get('rss_mib', 0):.0f}"])
    vmlinux = _debug_vmlinux(fx)
    if vmlinux:
        for cache, r in _dwarf_runs(fx, vmlinux, "kvmfx-symbols"):
            data[f"dwarf-{cache}"] = r
            rows.append(["kvmfx", "elf", cache, "-N debug vmlinux, DWARF",
                         str(r.get("symbols")), str(r.get("types")),
                         f"{r.get('total_s', 0):.2f}", f"{r.get('rss_mib', 0):.0f}"])
    if peer_py and vmlinux:
        r = run_worker(peer_py, {"kind": "drgn-symbols", "path": str(fx.path("elf")),
                                 "vmlinux": vmlinux})
        data["drgn"] = r
        rows.append(["drgn 0.3", "elf", "-", "debug vmlinux (633 MB)", "-", "-",
                     f"{r.get('total_s', 0):.2f}", f"{r.get('rss_mib', 0):.0f}"])
    return header, rows, data


def _dwarf_runs(fx: Any, vmlinux: str, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """A worker run with the debug vmlinux's DWARF, cold then warm (the second open finds,
    per build id, where the first one found each name)."""
    with tempfile.TemporaryDirectory() as profiles:
        return [(cache, run_worker(sys.executable, {"kind": kind, "path": str(fx.path("elf")),
                                                    "execfile": vmlinux, "types": "dwarf"},
                                   {"KVMFX_PROFILE_DIR": profiles}))
                for cache in ("cold", "warm")]


def processes(fx: Any, peer_py: str | None) -> tuple[list[str], list[list[str]], Any]:
    """psaux: every process with its argv, cold (fresh process, no cache)."""
    header = ["tool", "input", "symbol file", "processes", "seconds", "peak RSS MiB",
              "kvmfx / peer"]
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as profiles:
        for cache in ("cold", "warm"):
            r = run_worker(sys.executable, {"kind": "kvmfx-psaux", "path": str(fx.path("elf"))},
                           {"KVMFX_PROFILE_DIR": profiles})
            data[f"kvmfx-{cache}"] = r
            rows.append([f"kvmfx ({cache})", "elf", "none", str(r.get("processes")),
                         f"{r.get('total_s', 0):.2f}", f"{r.get('rss_mib', 0):.0f}", ""])
    k = data["kvmfx-cold"]
    vol_row = _volatility_psaux(fx, peer_py, k)
    if vol_row:
        rows.append(vol_row[0])
        data["volatility3"] = vol_row[1]
    vmlinux = _debug_vmlinux(fx)
    if vmlinux:
        for cache, r in _dwarf_runs(fx, vmlinux, "kvmfx-psaux"):
            data[f"kvmfx-dwarf-{cache}"] = r
            rows.append([f"kvmfx (DWARF, {cache})", "elf", "debug vmlinux (633 MB)",
                         str(r.get("processes")), f"{r.get('total_s', 0):.2f}",
                         f"{r.get('rss_mib', 0):.0f}", ""])
    if peer_py and vmlinux:
        d = run_worker(peer_py, {"kind": "drgn-psaux", "path": str(fx.path("elf")),
                                 "vmlinux": vmlinux})
        data["drgn"] = d
        ratio = d.get("total_s", 0) / k["total_s"] if k.get("total_s") else 0  # type: ignore
        rows.append(["drgn 0.3", "elf", "debug vmlinux (633 MB)", str(d.get("processes")),
                     f"{d.get('total_s', 0):.2f}", f"{d.get('rss_mib', 0):.0f}",
                     f"{ratio:.2f}x (drgn time / kvmfx time)"])
    return header, rows, data


def _volatility_psaux(fx: Any, peer_py: str | None, k: dict[str, Any]
                      ) -> tuple[list[str], dict[str, Any]] | None:
    """Volatility 3 linux.psaux with an ISF that kvmfx exported from the dump itself."""
    if not peer_py:
        return None
    vol = Path(peer_py).parent / "vol"
    if not vol.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        isf = Path(tmp) / "symbols" / "linux" / "kernel.json.xz"
        isf.parent.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "profile-export-isf",
                        str(fx.path("elf")), "--isf", str(isf)], check=True,
                       capture_output=True)
        (Path(tmp) / "cache").mkdir()
        t = time.perf_counter()
        r = subprocess.run([str(vol), "-q", "-r", "json", "-s", str(isf.parent.parent),
                            "--cache-path", str(Path(tmp) / "cache"), "-f",
                            str(fx.path("elf")), "linux.psaux"], capture_output=True,
                           text=True, timeout=1800)
        seconds = time.perf_counter() - t
    if r.returncode != 0:
        print(f"bench: volatility3 failed: {r.stderr[-300:]}", file=sys.stderr)
        return None
    import json
    n = len(json.loads(r.stdout))
    ratio = seconds / k["total_s"] if k.get("total_s") else 0
    return (["volatility3", "elf", "ISF exported by kvmfx", str(n), f"{seconds:.2f}", "-",
             f"{ratio:.2f}x (vol time / kvmfx time)"],
            {"processes": n, "total_s": seconds})


SUITES = {"reads": reads, "startup": startup, "processes": processes,
          "kernels": headline.kernels, "cli": headline.startup}
SUITES["batch"] = __import__("bench.batch", fromlist=["batch"]).batch  # bench/batch.py
SUITES["scale"] = scale  # bench/scale.py: psaux from 100 to 20,000 processes

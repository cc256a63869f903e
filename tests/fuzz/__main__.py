"""``python -m tests.fuzz [--target NAME ...] [--seconds N] [--runs N]``: atheris fuzzing.

Each target runs in its own process (atheris owns the interpreter), seeded from the real
fixtures; a crash prints the input and exits non-zero. Corpora are kept in
``$KVMFX_FUZZ_DIR`` (default ~/.cache/kvmfx/fuzz/<target>).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tests.fuzz import TARGETS


def corpus_dir(name: str) -> Path:
    root = Path(os.environ.get("KVMFX_FUZZ_DIR") or Path.home() / ".cache" / "kvmfx" / "fuzz")
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def child(name: str, argv: list[str]) -> None:
    import atheris

    # third-party libraries first, uninstrumented: only kvmfx's own code is under test
    import construct  # noqa: F401
    import cramjam  # noqa: F401
    import elftools.dwarf.dwarfinfo  # noqa: F401
    import elftools.elf.elffile  # noqa: F401
    import lzallright  # noqa: F401
    import pluggy  # noqa: F401
    import zstandard  # noqa: F401

    with atheris.instrument_imports(include=["kvmfx", "kvmfx_plugins"]):
        import kvmfx.layers  # noqa: F401
        import kvmfx.session  # noqa: F401
        import kvmfx.symbols  # noqa: F401
        import kvmfx.types  # noqa: F401
        import kvmfx_plugins.arch.x86_64  # noqa: F401
        import kvmfx_plugins.formats.elf  # noqa: F401
        import kvmfx_plugins.formats.flattened  # noqa: F401
        import kvmfx_plugins.formats.kdump  # noqa: F401
        import kvmfx_plugins.formats.lime  # noqa: F401
        import kvmfx_plugins.formats.swap  # noqa: F401
        import kvmfx_plugins.linux.tasks  # noqa: F401
        import kvmfx_plugins.linux.vmcoreinfo  # noqa: F401
        import kvmfx_plugins.symbols.btf  # noqa: F401
        import kvmfx_plugins.symbols.dwarf  # noqa: F401
        import kvmfx_plugins.symbols.files  # noqa: F401
        import kvmfx_plugins.symbols.isf_input  # noqa: F401
        import kvmfx_plugins.symbols.kallsyms  # noqa: F401
        import kvmfx_plugins.symbols.vmlinuz  # noqa: F401
        from tests.fuzz import TARGETS, run_one
    if name in ("tasks", "argv"):
        from tests.fuzz import _overlay
        _overlay("task" if name == "tasks" else "mm")  # open the dump before fuzzing
    target = TARGETS[name]
    atheris.Setup([sys.argv[0], *argv, str(corpus_dir(name))],
                  lambda data: run_one(target, data))
    atheris.Fuzz()


def write_seeds(name: str) -> None:
    """Seed the target's corpus with real inputs (in this process: the child instruments
    kvmfx, and must import it itself, after setting up the instrumentation)."""
    from tests.fuzz import seeds

    corpus = corpus_dir(name)
    for i, seed in enumerate(seeds(name)):
        (corpus / f"seed-{i}").write_bytes(seed)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz")
    ap.add_argument("--target", action="append", choices=sorted(TARGETS))
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--runs", type=int, default=0, help="stop after this many executions")
    ap.add_argument("--max-len", type=int, default=1 << 16)
    args = ap.parse_args()
    failed = []
    for name in args.target or sorted(TARGETS):
        write_seeds(name)
        flags = [f"-max_total_time={args.seconds}", f"-max_len={args.max_len}",
                 "-timeout=5", "-rss_limit_mb=500", "-print_final_stats=1"]
        if args.runs:
            flags.append(f"-runs={args.runs}")
        r = subprocess.run([sys.executable, "-m", "tests.fuzz", "--child", name, *flags],
                           capture_output=True, text=True)
        lines = r.stderr.splitlines()
        stats = [ln for ln in lines if "stat::number_of_executed_units" in ln
                 or ln.startswith("Done ")]
        cov = [ln.split(" cov: ", 1)[1].split(" lim:")[0] for ln in lines if " cov: " in ln]
        if cov:
            stats.append(f"cov: {cov[-1]}")  # coverage points, features, corpus at the end
        print(f"{name}: exit {r.returncode}; {' '.join(stats) or r.stderr[-300:]}")
        if r.returncode != 0:
            failed.append(name)
            print(r.stderr[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

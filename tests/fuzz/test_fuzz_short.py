"""A short coverage-guided fuzz round of every parser, and every crash ever found replayed.

The long run is ``python -m tests.fuzz --seconds 3600`` (figures in docs/robustness.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import TARGETS, run_one

REGRESSIONS = sorted((Path(__file__).parent / "regressions").iterdir())


@pytest.mark.hostile
@pytest.mark.parametrize("case", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_crashes_found_by_fuzzing_stay_fixed(case):
    target = case.name.split("-", 1)[0]
    run_one(TARGETS[target], case.read_bytes())  # returns or raises a KvmError only


def test_short_fuzz_round_finds_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tests.fuzz", "--seconds", "2"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path,
                       env={**__import__("os").environ, "KVMFX_FUZZ_DIR": str(tmp_path),
                            "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    lines = [ln for ln in r.stdout.splitlines() if ": exit 0" in ln]
    assert len(lines) == len(TARGETS), r.stdout

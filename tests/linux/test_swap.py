"""Swapped-out argv/environment pages: flagged partial without -W, recovered exactly with it.

The fixture guest swaps to a virtio disk and pushes some processes' stacks (where argv and
environ live) out with process_madvise(MADV_PAGEOUT) after recording its ground truth.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

import kvmfx
from tests.factory import get_fixture


@pytest.fixture(scope="module")
def fx():
    return get_fixture("swap")


def test_the_guest_really_swapped(fx):
    swapped = fx.truth["swapped_kb"]
    assert len(swapped) >= 4 and all(kb > 0 for kb in swapped.values()), swapped


@pytest.mark.parametrize("key", ["elf", "kdump-zlib"])
def test_without_swap_image_rows_are_partial(fx, key):
    swapped = {int(p) for p in fx.truth["swapped_kb"]}
    with kvmfx.open(str(fx.path(key))) as s:
        flagged = set()
        for p in s.processes():
            argv, envv = s.argv(p), s.envv(p)
            if argv.partial or envv.partial:
                flagged.add(p.pid)
                reason = argv.missing or envv.missing
                assert "swapped out" in reason and "-W" in reason
        assert flagged and flagged <= swapped


@pytest.mark.parametrize("key", ["elf", "kdump-zlib"])
def test_with_swap_image_everything_is_exact(fx, key):
    before = hashlib.sha256(fx.path("swap").read_bytes()).hexdigest()
    with kvmfx.open(str(fx.path(key)), swapfile=str(fx.path("swap"))) as s:
        procs = {p.pid: p for p in s.processes()}
        for pid, t in fx.truth["processes"].items():
            p = procs[int(pid)]
            argv, envv = s.argv(p), s.envv(p)
            assert not argv.partial and not envv.partial, pid
            assert argv.strings() == t["cmdline"] and envv.strings() == t["environ"], pid
    assert hashlib.sha256(fx.path("swap").read_bytes()).hexdigest() == before


def test_cli_exit_status_says_partial(fx):
    args = [sys.executable, "-m", "kvmfx.cli", "run", "psaux", str(fx.path("elf")),
            "--format", "json"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 4 and "partial" in r.stderr
    rows = json.loads(r.stdout)
    partial = [row for row in rows if row["partial"]]
    assert partial
    for row in partial:
        # what was read, never an invented element: null, or a prefix of the true argv
        # whose last string may be cut short; the reason is named under missing.argv
        truth = fx.truth["processes"][str(row["pid"])]["cmdline"]
        assert "swapped out" in row["missing"]["argv"], row
        argv = row["argv"]
        assert argv is None or (argv[:-1] == truth[:len(argv) - 1] and
                                truth[len(argv) - 1].startswith(argv[-1])), (argv, truth)
    r = subprocess.run([*args, "-W", str(fx.path("swap"))], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert not any(row["partial"] for row in json.loads(r.stdout))

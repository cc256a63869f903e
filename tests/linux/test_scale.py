"""At scale: 100 to 20,000 processes, every one listed with its argv, from the image alone.

The scale scenarios (tests/factory/scenarios.py) start ``N`` sleepers named kvmfx-scale-I
(argv ``kvmfx-scale-I --slot=I``, environment ``KVMFX_SCALE=I PATH=/bin``) beside the basic
set; the guest counts its own processes and tasks right before the dump (truth["counts"]).
"""

from __future__ import annotations

import pytest

import kvmfx
from tests.factory import get_fixture
from tests.factory.scenarios import SCENARIOS
from tests.linux.test_dump_processes import worker_name

#: scenario -> how many kvmfx-scale sleepers it starts
SLEEPERS = {"scale-100": 40, "scale-1k": 940, "scale": 5000, "scale-20k": 19940}


def test_the_scale_scenarios_start_what_this_test_expects():
    for name, n in SLEEPERS.items():
        assert f"kvmfx-helper spawnmany {n}\n" in SCENARIOS[name].extra


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLEEPERS))
def test_every_process_of_the_guest_is_listed_with_its_argv(name):
    fx = get_fixture(name)
    counts = fx.truth["counts"]
    with kvmfx.open(str(fx.path("elf"))) as s:  # no symbol file: the image's own
        procs = [p for p in s.processes() if p.pid != 0]  # /proc does not list the idle task
        assert s.symbols.source != "" and s.warnings == []
        # the guest's own counts: thread-group leaders, and every thread of them
        assert len(procs) == counts["processes"]
        assert len({p.pid for p in procs}) == len(procs)
        assert sum(p.nthreads for p in procs) == counts["tasks"]
        slots = {}
        for p in procs:
            argv = s.argv(p)
            assert argv.readable and not argv.partial, (p.pid, argv.missing)
            if p.kernel_thread or p.state == "Z":  # no mm: no argv, as in /proc
                assert argv.items == []
                continue
            assert argv.items, p.pid
            first = argv.items[0].decode()
            if first.startswith("kvmfx-scale-"):
                i = int(first.removeprefix("kvmfx-scale-"))
                assert argv.items == [first.encode(), f"--slot={i}".encode()]
                assert s.envv(p).items == [f"KVMFX_SCALE={i}".encode(), b"PATH=/bin"]
                assert (p.comm, p.ppid, p.nthreads) == ("kvmfx-pause", 1, 1)
                slots[i] = p.pid
    assert sorted(slots) == list(range(SLEEPERS[name]))
    if name == "scale-100":  # its guest recorded every process's /proc in full
        truth = fx.truth["processes"]
        assert {p.pid for p in procs} == {int(pid) for pid in truth}
        for p in procs:
            t = truth[str(p.pid)]
            assert (p.ppid, worker_name(p.comm), p.nthreads) == (
                t["ppid"], worker_name(t["comm"]), t["nthreads"])

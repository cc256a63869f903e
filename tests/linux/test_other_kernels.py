"""Another build of the kernel: Debian's PREEMPT_RT flavour (a different task_struct, locks
and scheduler). Nothing in kvmfx is told which build it reads: the same checks as for the
default kernel, against the RT guest's own /proc and /proc/kallsyms."""

from __future__ import annotations

import pytest

import kvmfx
from tests.factory import get_fixture
from tests.linux.test_dump_processes import _check_session

FORMATS = ["elf", "kdump-zlib", "mdf-lzo", "lime"]


@pytest.fixture(scope="module")
def fx():
    return get_fixture("rt")


def test_it_is_another_build(fx):
    basic = get_fixture("basic")
    assert fx.truth["kernel"]["release"].endswith("-rt-amd64")
    with kvmfx.open(str(fx.path("elf"))) as rt, kvmfx.open(str(basic.path("elf"))) as default:
        assert rt.info()["build_id"] != default.info()["build_id"]
        # the layouts differ: offsets read from this kernel, never assumed
        assert rt.types.struct_size("spinlock") != default.types.struct_size("spinlock")
        assert rt.types.struct_size("mm_struct") != default.types.struct_size("mm_struct")
        assert rt.types.offsetof("task_struct", "comm") != \
            default.types.offsetof("task_struct", "comm")


@pytest.mark.parametrize("key", FORMATS)
def test_every_process_matches_the_guest(fx, key, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(fx.path(key))) as s:
        assert s.symbols.source == "image:kallsyms" and s.types.source == "image:BTF"
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


def test_symbols_and_kernel_facts_match_the_guest(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    truth = {}
    for addr, kind, name in fx.kallsyms():
        truth.setdefault(name, (addr, kind))
    k = fx.truth["kernel"]
    with kvmfx.open(str(fx.path("elf"))) as s:
        assert {n: (v.address, v.type) for n, v in s.symbols.symbols.items()} == truth
        u = s.uname()
        assert u["release"] == k["release"] and k["version"].endswith(u["version"])
        assert abs(s.boot_time() - k["btime"]) <= 1
        assert s.info()["kernel_release"] == k["release"]

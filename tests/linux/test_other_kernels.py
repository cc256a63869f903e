"""Other builds of the kernel: Debian's PREEMPT_RT flavour of 6.1 (a different task_struct,
locks and scheduler) and Debian 11's Linux 5.10 (another release: task_struct `state`,
other kallsyms and BTF contents). Nothing in kvmfx is told which kernel it reads: the same
checks as for the default kernel, against each guest's own /proc and /proc/kallsyms."""

from __future__ import annotations

import pytest

import kvmfx
from tests.factory import get_fixture
from tests.linux.test_dump_processes import _check_session

KERNELS = {"rt": "-rt-amd64", "bullseye": "5.10.0-"}


@pytest.fixture(scope="module", params=sorted(KERNELS))
def fx(request):
    return get_fixture(request.param)


def test_it_is_another_build(fx):
    basic = get_fixture("basic")
    release = fx.truth["kernel"]["release"]
    assert KERNELS[fx.name] in release and release != basic.truth["kernel"]["release"]
    with kvmfx.open(str(fx.path("elf"))) as other, kvmfx.open(str(basic.path("elf"))) as std:
        assert other.info()["build_id"] != std.info()["build_id"]
        # the layouts differ: offsets read from each kernel, never assumed
        assert other.types.struct_size("mm_struct") != std.types.struct_size("mm_struct")
        assert other.types.offsetof("task_struct", "comm") != \
            std.types.offsetof("task_struct", "comm")


def test_every_process_matches_the_guest(fx, tmp_path, monkeypatch):
    assert len(fx.files) >= 3
    # the dump level 31 files leave user pages out: test_kernel_matrix.py checks them
    for key in sorted(set(fx.files) - {"mdf-zlib-d31", "mdf-elf-d31"}):
        monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path / key))  # each from the image
        with kvmfx.open(str(fx.path(key))) as s:
            assert s.symbols.source == "image:kallsyms" and s.types.source == "image:BTF", key
            assert _check_session(s, fx.truth) == len(fx.truth["processes"]), key


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
        assert any("Linux version" in line for line in _dmesg(s))


def _dmesg(s: kvmfx.Session) -> list[str]:
    from kvmfx_plugins.linux.printk import log_records
    return [r.text for r in log_records(s)]

"""The kernel matrix: one kernel of each Debian release a responder meets, every dump
format of each, read with no symbol file and no cached profile (symbols and types come from
the dump itself), against each guest's own /proc.

| fixture | kernel |
| --- | --- |
| bullseye | Debian 11's Linux 5.10 |
| basic | Debian 12's Linux 6.1 |
| trixie | Debian 13's Linux 6.12 |
| backports | the newest kernel in trixie-backports |
"""

from __future__ import annotations

import pytest

import kvmfx
from kvmfx.errors import KvmError
from kvmfx_plugins.linux.tasks import LinuxKernel
from tests.factory import ALL_DUMPS, Fixture, debug_files, get_fixture
from tests.factory.scenarios import SCENARIOS
from tests.linux.test_dump_processes import _check_session

#: fixture -> the start of its kernel release (uname -r)
KERNELS = {"bullseye": "5.10.", "basic": "6.1.", "trixie": "6.12.", "backports": ""}
#: the dump level 31 files (kdump, and ELF where pages of zeros are left out too) leave
#: user pages out: they have their own tests
FILTERED = ("mdf-zlib-d31", "mdf-elf-d31")
#: kallsyms.c leaves its own tables out of the tables it writes
KALLSYMS_TABLES = ("kallsyms_",)


def _formats(name: str) -> list[str]:
    return list(SCENARIOS[name].dumps or ALL_DUMPS)


#: Debian 12's QEMU 7.2 is built without LZO and snappy: it cannot write these (the factory
#: lists them under not_produced), so they are not in the matrix
QEMU_CANNOT = {"kdump-lzo", "kdump-snappy"}
MATRIX = [(name, key) for name in KERNELS for key in _formats(name)
          if key not in FILTERED and key not in QEMU_CANNOT]


@pytest.fixture
def no_profile(tmp_path, monkeypatch):
    """An empty profile cache: every open decodes the dump's own kallsyms and BTF."""
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path / "profiles"))


def _dump(fx: Fixture, key: str) -> str:
    assert fx.truth["kernel"]["release"].startswith(KERNELS[fx.name])
    reason = fx.manifest.get("not_produced", {}).get(key)
    assert key in fx.files, reason
    return str(fx.path(key))


@pytest.mark.parametrize(("name", "key"), MATRIX)
def test_every_process_matches_the_guest(name, key, no_profile):
    fx = get_fixture(name)
    with kvmfx.open(_dump(fx, key)) as s:
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


@pytest.mark.parametrize(("name", "key"), [(n, k) for n in KERNELS for k in FILTERED
                                           if k in _formats(n)])
def test_a_filtered_dump_lists_every_process_and_never_a_wrong_argument(name, key, no_profile):
    """makedumpfile -d 31 leaves out user, cache and zero pages (and, on a kernel it does
    not know, may misclassify kernel pages): every task is still listed, and each argv and
    environment is either the guest's own or flagged partial."""
    fx = get_fixture(name)
    expected = {int(pid): t for pid, t in fx.truth["processes"].items()}
    with kvmfx.open(str(fx.path("elf"))) as full:
        handles = {p.pid: p.handle for p in full.processes()}
    with kvmfx.open(_dump(fx, key)) as s:
        procs = {p.pid: p for p in s.processes()}
        assert set(procs) - {0} <= set(expected)
        # A process left out is one whose task_struct (at the same address in the full dump
        # of the same instant) the filtered dump does not hold: every other is reached, by
        # the task list, the links of the tasks reached, the pid numbers, or a scan of the
        # task cache's slabs.
        tgid_off = s.types.offsetof("task_struct", "tgid")
        unlisted = {}
        for pid in set(expected) - set(procs):
            try:
                s.read(handles[pid] + tgid_off, 4)
            except KvmError:
                continue  # the task_struct is not in the dump
            unlisted[pid] = "its task_struct is in the dump"
        assert unlisted == {}
        expected = {pid: t for pid, t in expected.items() if pid in procs}
        wrong = {}
        for pid, t in expected.items():
            argv, envv = s.argv(procs[pid]), s.envv(procs[pid])
            if not argv.partial and argv.strings() != t["cmdline"]:
                wrong[pid] = ("argv", argv.strings(), t["cmdline"])
            if not envv.partial and envv.strings() != t["environ"]:
                wrong[pid] = ("envv", envv.strings(), t["environ"])
        assert wrong == {}


@pytest.mark.parametrize("name", [n for n in KERNELS if "mdf-elf-d31" in _formats(n)])
def test_every_excluded_page_read_as_zeros_held_zeros(name, no_profile):
    """makedumpfile -E -d 31 leaves pages of zeros out with the rest: kvmfx reads an
    excluded page as zeros only where the kernel's struct page rules out every other
    filter; each such page is checked against the full dump of the same instant."""
    fx = get_fixture(name)
    with kvmfx.open(_dump(fx, "mdf-elf-d31")) as s, kvmfx.open(str(fx.path("elf"))) as full:
        LinuxKernel(s)  # installs the rule
        zeros = wrong = total = 0
        for pfn in s.physical.excluded_pfns():
            total += 1
            if s.physical.excluded_as_zeros(pfn) is None:
                zeros += 1
                if any(full.read_physical(pfn * 4096, 4096)):
                    wrong += 1
        assert wrong == 0
        assert total > zeros > 0  # in-use kernel pages of zeros exist on every kernel
        assert s.info()["excluded_pages"]["read_as_zeros"] == zeros


@pytest.mark.parametrize("name", [n for n in KERNELS if "mdf-zlib-d31" in _formats(n)])
def test_a_kdump_file_never_reads_an_excluded_page_as_zeros(name, no_profile):
    """kdump files keep pages of zeros (all pointing at one stored zero page): a page left
    out of one was left out for another reason, and stays missing."""
    fx = get_fixture(name)
    with kvmfx.open(_dump(fx, "mdf-zlib-d31")) as s:
        pfn = next(s.physical.excluded_pfns())
        with pytest.raises(KvmError, match="store pages of zeros"):
            s.read_physical(pfn * 4096, 8)
        summary = s.info()["excluded_pages"]
        assert summary["read_as_zeros"] == 0 and summary["pages"] > 0


@pytest.mark.parametrize("name", list(KERNELS))
def test_image_symbols_equal_the_debug_packages_system_map(name, no_profile):
    """The symbols kvmfx decodes from the dump's kallsyms tables are exactly the text and
    data symbols of the kernel's real System.map (from Debian's -dbg package), slid by the
    dump's KASLR offset; per-cpu symbols keep their unslid offsets."""
    fx = get_fixture(name)
    _vmlinux, system_map = debug_files(fx.truth["kernel"]["release"])
    listed: dict[str, int] = {}
    names = set()
    for line in system_map.read_text().splitlines():
        addr, kind, sym = line.split()[:3]
        names.add(sym)
        if kind in "TtDdBbRrWV" and not sym.startswith(KALLSYMS_TABLES):
            listed.setdefault(sym, int(addr, 16))
    slide = int(fx.truth["kernel"]["kallsyms"]["_stext"], 16) - listed["_stext"]
    with kvmfx.open(str(fx.path("elf"))) as s:
        assert s.symbols.source == "image:kallsyms"
        image = {n: v.address for n, v in s.symbols.symbols.items()}
    want = {n: a + slide if a >= 0xFFFF_FFFF_8000_0000 else a for n, a in listed.items()}
    assert sorted(set(want) - set(image))[:20] == []
    # scripts/mksysmap leaves local labels out of System.map; 5.10's kallsyms keeps them
    assert sorted(n for n in set(image) - names if not n.startswith(".L"))[:20] == []
    wrong = {n: (hex(image[n]), hex(a)) for n, a in want.items() if image[n] != a}
    assert dict(list(wrong.items())[:20]) == {}, f"{len(wrong)} of {len(want)} differ"


@pytest.mark.parametrize("name", list(KERNELS))
def test_boot_time_and_process_start_times_match_the_guest(name, no_profile):
    """The timekeeper is found on every kernel (tk_core, or timekeeper_data[0] since
    Linux 6.17), so boot time and every process's start time are known."""
    fx = get_fixture(name)
    k = fx.truth["kernel"]
    with kvmfx.open(str(fx.path("elf"))) as s:
        assert s.boot_time() is not None and abs(s.boot_time() - k["btime"]) <= 1
        started = [p for p in s.processes() if p.pid > 0]
        assert started and all(p.start_time is not None for p in started)
        assert all(k["btime"] - 1 <= p.start_time <= k["btime"] + k["uptime"] + 1
                   for p in started)

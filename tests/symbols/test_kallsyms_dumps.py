"""kallsyms of the real dumps, every kernel of the matrix the factory builds: the tables
VMCOREINFO names (6.x) and the tables found by a scan give exactly the guest's own
/proc/kallsyms; a decode VMCOREINFO's anchors contradict is refused."""

from __future__ import annotations

import json

import pytest

import kvmfx
from kvmfx_plugins.symbols import image
from tests.factory import get_fixture
from tests.factory.scenarios import SCENARIOS

#: fixture -> (how the tables are found, their address encoding)
KERNELS = {
    "bullseye": ("scan", "absolute-percpu"),  # 5.10: VMCOREINFO names no tables
    "basic": ("vmcoreinfo", "absolute-percpu"),  # 6.1
    "trixie": ("vmcoreinfo", "absolute-percpu"),  # 6.12
    "backports": ("vmcoreinfo", "place-relative"),  # 7.x: no kallsyms_relative_base
}


@pytest.fixture(scope="module", params=[k for k in KERNELS if k in SCENARIOS])
def fx(request):
    return get_fixture(request.param)


def _truth(fx) -> dict[str, tuple[int, str]]:
    truth: dict[str, tuple[int, str]] = {}
    for addr, kind, name in fx.kallsyms():
        truth.setdefault(name, (addr, kind))
    return truth


def test_image_symbols_equal_the_guests_kallsyms(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(fx.path("elf"))) as s:
        got = {n: (v.address, v.type) for n, v in s.symbols.symbols.items()}
        found = s.plugin_data["image-symbols"]
        assert (found["kallsyms_found_by"], found.get("kallsyms_encoding",
                                                      "absolute-percpu")) == KERNELS[fx.name]
    assert got == _truth(fx)


def test_a_scan_finds_the_same_symbols(fx, tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(fx.path("elf"))) as s:
        table = image.kallsyms_by_scan(s, s.image.anchors, {})
    assert {n: (v.address, v.type) for n, v in table.symbols.items()} == _truth(fx)


def test_a_decode_the_anchors_contradict_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(get_fixture("basic").path("elf"))) as s:
        s.image.anchors["_stext"] += 0x200000  # as if the tables were another kernel's
        assert s.symbols.source == "image:vmcoreinfo"  # the last resort, not wrong addresses
        assert any("disagree" in f and "_stext" in f for f in s.symbol_failures)


def test_lookups_through_the_kernels_name_index_equal_the_guests_kallsyms(fx, tmp_path,
                                                                          monkeypatch):
    """6.x kernels carry kallsyms_seqs_of_names (Debian 12's 6.1 by a stable backport): a
    cold open decodes no name but those it looks up, and so does the profile it leaves;
    5.10 has none, and its names are looked up compressed as its build compressed them.
    Either way every name (one in five here, and the first entry of a repeated name)
    gives the guest's own address and type, and names it lacks (near misses of its own)
    give nothing."""
    from kvmfx_plugins.symbols.kallsyms import IndexedSymbols

    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    truth = _truth(fx)
    picks = sorted(truth)[::5]
    misses = [m for n in picks[::20] for m in (n + "_", n[:-1], "x" + n) if m not in truth]
    for _ in ("cold", "warm"):
        with kvmfx.open(str(fx.path("elf"))) as s:
            symbols = s.symbols.symbols
            assert isinstance(symbols, IndexedSymbols)
            if fx.name == "bullseye":
                assert (symbols.index.key, len(symbols.index.seqs)) == ("compressed", 0)
            else:
                assert (symbols.index.key, len(symbols.index.seqs)) == \
                    ("full", symbols.index.count)
            got = {n: (symbols[n].address, symbols[n].type) for n in picks}
            assert got == {n: truth[n] for n in picks}
            assert "no_such_symbol_in_any_kernel" not in symbols
            assert not [m for m in misses if m in symbols]
            assert s.symbols.lookup(picks[0] + "\x00") is None


def test_names_searched_compressed_are_answered_from_the_profile_next_time(tmp_path,
                                                                          monkeypatch):
    """Debian 11's 5.10 has no name index: each name a cold open searches for is kept
    beside the profile when the session closes, and the next open answers it without
    searching (the answer checked against the table), the same as the guest's kallsyms."""
    fx = get_fixture("bullseye")
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    truth = _truth(fx)
    with kvmfx.open(str(fx.path("elf"))) as s:
        cold = s.symbols.symbols.index
        assert [p.pid for p in s.processes()]
        searched = dict(cold.searched)
    kept = list(tmp_path.glob("*.lookups.json"))
    assert len(kept) == 1 and "init_task" in searched and "no_such_symbol" not in searched
    assert json.loads(kept[0].read_text()) == searched
    with kvmfx.open(str(fx.path("elf"))) as s:
        warm = s.symbols.symbols
        for name, found in searched.items():
            if name in truth:
                assert found and (warm[name].address, warm[name].type) == truth[name]
            else:
                assert not found and name not in warm
        assert warm.index.searched == {}
        assert "no_such_symbol" not in warm and warm.index.searched == {"no_such_symbol": []}
    assert json.loads(kept[0].read_text()) == {**searched, "no_such_symbol": []}

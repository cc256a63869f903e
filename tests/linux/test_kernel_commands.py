"""dmesg, uname and boottime from a dump, and symbol providers other than the image."""

from __future__ import annotations

import pytest

import kvmfx
from tests.factory import get_fixture


@pytest.fixture(scope="module")
def fx():
    return get_fixture("basic")


def _rows(session, name, **options):
    return list(session.registry.command(name).run(session, options))


def test_dmesg_holds_the_boot_log(fx):
    with kvmfx.open(str(fx.path("kdump-zlib"))) as s:
        rows = _rows(s, "dmesg")
    assert rows[0]["seq"] == 0 and rows[0]["text"] == fx.truth["kernel"]["version"]
    texts = [r["text"] for r in rows]
    assert any(t.startswith("Command line: console=ttyS0") for t in texts)
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)
    assert [r for r in rows if not 0 <= r["level"] <= 7] == []
    assert rows[-1]["time"] > 0


def test_uname_and_boottime(fx):
    k = fx.truth["kernel"]
    with kvmfx.open(str(fx.path("lime"))) as s:
        (u,) = _rows(s, "uname")
        (b,) = _rows(s, "boottime")
    assert (u["release"], u["nodename"], u["sysname"]) == (k["release"], k["hostname"], "Linux")
    assert abs(b["btime"] - k["btime"]) <= 1


def test_vmlinuz_as_execfile_gives_the_same_processes(fx, tmp_path, monkeypatch):
    from tests.linux.test_dump_processes import _check_session
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(fx.path("elf")), execfile=str(fx.vmlinuz)) as s:
        assert s.symbols.source.endswith("(kallsyms)") and s.types.source.endswith("(.BTF)")
        # the file's unrandomised addresses, slid by the dump's KASLR offset
        assert s.symbols.slide == int(fx.truth["kernel"]["kallsyms"]["_stext"], 16) - \
            0xFFFFFFFF81000000
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


def test_a_symbol_file_for_another_kernel_is_refused(fx, tmp_path):
    bogus = tmp_path / "System.map"
    bogus.write_text("ffffffff81000000 T _stext\nffffffff82000000 D init_uts_ns\n"
                     "ffffffff82100000 D swapper_pg_dir\n")
    with kvmfx.open(str(fx.path("elf")), execfile=str(bogus)) as s, \
            pytest.raises(kvmfx.SymbolError) as exc:
        _ = s.symbols
    assert "does not match the image" in str(exc.value) and "\n" not in str(exc.value)


def test_debug_packages_system_map_agrees_and_serves_alone(fx, tmp_path, monkeypatch):
    """The real System.map (in the -dbg package) equals the image's kallsyms after the KASLR
    slide, and as the execfile it is enough for the process plugins."""
    from tests.factory import debug_files
    from tests.linux.test_dump_processes import _check_session

    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    _vmlinux, system_map = debug_files(fx.truth["kernel"]["release"])
    slide = int(fx.truth["kernel"]["kallsyms"]["_stext"], 16) - 0xFFFFFFFF81000000
    listed = {}
    for line in system_map.read_text().splitlines():
        addr, _kind, name = line.split()[:3]
        listed.setdefault(name, int(addr, 16))
    with kvmfx.open(str(fx.path("elf"))) as s:
        image = {n: v.address for n, v in s.symbols.symbols.items()}
    common = [n for n in image if n in listed and image[n] >= 0xFFFFFFFF80000000]
    assert len(common) > 0.95 * len(image)
    wrong = {n: (hex(image[n]), hex(listed[n] + slide)) for n in common
             if image[n] != listed[n] + slide}
    assert wrong == {}
    with kvmfx.open(str(fx.path("mdf-zlib")), execfile=str(system_map)) as s:
        assert s.symbols.source == str(system_map) and s.symbols.slide == slide
        assert s.types.source == "image:BTF"  # the map has no types: the image's BTF
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


def test_a_raw_btf_file_as_execfile_gives_types(fx, tmp_path, monkeypatch):
    from kvmfx_plugins.symbols.image import _KernelFile
    from tests.linux.test_dump_processes import _check_session

    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    btf = tmp_path / "vmlinux.btf"
    btf.write_bytes(_KernelFile(str(fx.vmlinuz)).section(".BTF"))
    with kvmfx.open(str(fx.path("elf")), execfile=str(btf)) as s:
        assert s.types.source == str(btf)
        assert s.symbols.source == "image:kallsyms"  # BTF has no symbols: the image's
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


def test_an_unreadable_execfile_is_an_error_not_ignored(fx, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    with kvmfx.open(str(fx.path("elf")), execfile=str(junk)) as s, \
            pytest.raises(kvmfx.SymbolError, match="junk.bin"):
        _ = s.symbols


def test_the_debug_vmlinux_as_execfile(fx, tmp_path, monkeypatch):
    """Debian's 633 MB debug vmlinux: its symbol table and .BTF, read without loading it."""
    from tests.factory import debug_files
    from tests.linux.test_dump_processes import _check_session

    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    vmlinux, _map = debug_files(fx.truth["kernel"]["release"])
    with kvmfx.open(str(fx.path("flattened")), execfile=str(vmlinux)) as s:
        assert s.symbols.source == str(vmlinux) and len(s.symbols) > 100000
        assert s.types.source == f"{vmlinux} (.BTF)"
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


def test_kernel_files_carry_the_dumps_build_id_and_others_are_refused(fx):
    from kvmfx_plugins.symbols.image import _KernelFile

    with kvmfx.open(str(fx.path("elf"))) as s:
        dump_id = s.image.build_id
        assert _KernelFile(str(fx.vmlinuz)).build_id() == dump_id
        s.check_build_id(dump_id, str(fx.vmlinuz))  # the same build: accepted
        with pytest.raises(kvmfx.SymbolError) as exc:
            s.check_build_id("00" * 20, "other-vmlinuz")
    message = str(exc.value)
    assert "00" * 20 in message and dump_id in message and fx.truth["kernel"]["release"] \
        in message and "\n" not in message

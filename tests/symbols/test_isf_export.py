"""ISF export: the dump's own kallsyms + BTF as a Volatility 3 symbol file that Volatility
really uses to list the dump's processes (no debug kernel anywhere)."""

from __future__ import annotations

import base64
import json
import lzma
import shutil
import subprocess
import sys

import pytest

from tests.factory import get_fixture


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    fx = get_fixture("basic")
    d = tmp_path_factory.mktemp("isf")
    (d / "linux").mkdir()
    path = d / "linux" / "kernel.json.xz"
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "profile", "export-isf",
                        str(fx.path("elf")), "--isf", str(path), "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return fx, d, json.loads(lzma.decompress(path.read_bytes()))


def test_isf_holds_unrandomised_symbols_types_and_the_banner(exported):
    fx, _d, isf = exported
    k = fx.truth["kernel"]
    stext = int(k["kallsyms"]["_stext"], 16)
    slide = stext - 0xFFFFFFFF81000000
    for name in ("init_task", "init_uts_ns", "linux_banner"):
        assert isf["symbols"][name]["address"] == int(k["kallsyms"][name], 16) - slide
    banner = base64.b64decode(isf["symbols"]["linux_banner"]["constant_data"])
    assert banner == (k["version"] + "\n\0").encode()
    task = isf["user_types"]["task_struct"]
    assert task["fields"]["comm"]["type"] == {"kind": "array", "count": 16,
                                              "subtype": {"kind": "base", "name": "char"}}
    assert isf["symbols"]["init_task"]["type"] == {"kind": "struct", "name": "task_struct"}
    assert isf["base_types"]["pointer"]["size"] == 8


def test_volatility_lists_the_processes_with_it(exported, tmp_path):
    fx, d, _isf = exported
    vol = shutil.which("vol")
    assert vol, "volatility3 is a test dependency (pyproject dev extras)"
    r = subprocess.run([vol, "-q", "-r", "json", "-s", str(d), "--cache-path", str(tmp_path),
                        "-f", str(fx.path("elf")), "linux.pslist"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(r.stdout)
    # Volatility walks init_task's list as kvmfx does: every process the guest saw
    # (Volatility's pslist leaves zombies out)
    alive = {int(p) for p, t in fx.truth["processes"].items() if t["state"] != "Z"}
    assert {row["PID"] for row in rows} - {0} == alive


def test_an_isf_as_execfile_serves_the_process_plugins(exported, tmp_path, monkeypatch):
    from tests.linux.test_dump_processes import _check_session

    fx, d, _isf = exported
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    isf_path = d / "linux" / "kernel.json.xz"
    import kvmfx
    with kvmfx.open(str(fx.path("mdf-lzo")), execfile=str(isf_path)) as s:
        assert s.symbols.source == s.types.source == str(isf_path)
        assert s.symbols.slide == int(fx.truth["kernel"]["kallsyms"]["_stext"], 16) - \
            0xFFFFFFFF81000000
        assert _check_session(s, fx.truth) == len(fx.truth["processes"])


def test_a_file_that_is_not_isf_is_not_taken_for_one(tmp_path):
    from kvmfx.errors import FormatError
    from kvmfx_plugins.symbols.isf_input import parse_isf

    with pytest.raises(FormatError, match="not an ISF"):
        parse_isf(b'{"symbols": {}}')
    with pytest.raises(FormatError, match="not an ISF"):
        parse_isf(b"\xfd7zXZ\x00garbage")

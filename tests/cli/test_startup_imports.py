"""What a start imports: the libraries a command does not need stay unloaded.

Start-up time is measured in bench/ (``python -m bench --suite cli``); these tests hold the
structure that makes it: which modules a warm ``pslist`` on an ELF dump and ``kvmfx --help``
load, in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.factory import get_fixture

#: run a CLI invocation in this interpreter, then print the modules it loaded
PROBE = """
import json, sys
from kvmfx.cli import main
try:
    main(sys.argv[1:], prog_name="kvmfx", standalone_mode=False)
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""

#: libraries for other inputs: DWARF and ELF symbol files (pyelftools), compressed kernels
#: and kdump pages (the codecs), kdump/LiME/swap headers (construct, which also brings
#: hashlib and pdb), plugin discovery's metadata reader, which the remembered entry points
#: spare; rich, which measures text cells only when a cell is not ASCII; platformdirs, whose
#: answer on Linux kvmfx computes itself; zipfile (and with it shutil, bz2, lzma), which
#: only writing a profile needs: a profile is read member by member; dataclasses, whose
#: classes cost about 1 ms each to define (records are kvmfx.records classes); pathlib (and
#: with it urllib.parse and ipaddress), which only /proc and plugin folders need
NOT_FOR_AN_ELF_DUMP = ("elftools", "zstandard", "lzallright", "cramjam", "construct",
                       "importlib.metadata", "hashlib", "pdb", "rich", "platformdirs",
                       "zipfile", "shutil", "bz2", "lzma", "dataclasses", "pathlib",
                       "urllib", "ipaddress")


def _modules(*args: str, env: dict[str, str]) -> set[str]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stderr.strip().splitlines()[-1]))


def _interpreter_modules(env: dict[str, str]) -> set[str]:
    """What this interpreter has loaded before running anything (its site hooks: an
    editable install's finder loads zipfile, for one)."""
    r = subprocess.run([sys.executable, "-c", "import json, sys; "
                        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stderr.strip().splitlines()[-1]))


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, KVMFX_PROFILE_DIR=str(tmp_path / "profiles"),
                KVMFX_ENTRY_POINT_CACHE=str(tmp_path / "entry-points.json"))


def test_help_loads_no_plugin_and_no_renderer(env):
    _modules("--help", env=env)  # the entry points are remembered
    loaded = _modules("--help", env=env)
    assert not {m for m in loaded if m.startswith(("kvmfx_plugins", "rich", "pluggy"))}
    assert "kvmfx.session" not in loaded and "kvmfx.registry" not in loaded


def test_a_warm_elf_dump_loads_only_what_it_reads(env):
    dump = str(get_fixture("basic").path("elf"))
    _modules("run", "pslist", dump, "-o", os.devnull, env=env)  # cold: the profile is made
    loaded = _modules("run", "pslist", dump, "-o", os.devnull, env=env)
    assert "kvmfx_plugins.formats.elf" in loaded and "kvmfx_plugins.linux.tasks" in loaded
    loaded -= _interpreter_modules(env)  # what the environment's site hooks load
    unwanted = {m for m in loaded for lib in NOT_FOR_AN_ELF_DUMP
                if m == lib or m.startswith(lib + ".")}
    assert not unwanted, sorted(unwanted)
    # of the plugins that only provide commands, the one providing pslist
    commands = {m for m in loaded if m.startswith("kvmfx_plugins.commands.")}
    assert commands == {"kvmfx_plugins.commands.ps"}, sorted(commands)

"""A plain ``kvmfx run`` line, parsed and run without click (kvmfx/cli.py), is answered
exactly as click's command tree (kvmfx/clitree.py) answers it: the same parameters, output,
messages and exit status; any other line is click's to answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from kvmfx import cli
from kvmfx.clitree import _command_for
from kvmfx.registry import load_registry
from tests.factory import get_fixture

#: words after ``kvmfx run COMMAND`` (D: a dump path, absent here)
WORDS = [
    [], ["D"], ["D", "--format", "json"], ["--format=csv", "D"], ["-MD"], ["-M", "D"],
    ["--core", "D"], ["--core=D"], ["-o", "x", "D"], ["D", "-ox"], ["-o=x"], ["--output=x"],
    ["--output", "-"], ["-", "--format", "text"], [""], ["D", "--host", "h", "--format", "jsonl"],
    ["--hash", "--format", "ecs", "D"], ["-N", "vmlinux", "-W", "swap", "D"],
    ["D", "--exec=v", "--swap=s"], ["-Nv", "-Ws", "D"], ["-o", "--help"], ["-o", "-h"],
    ["D", "--format", "json", "--format", "csv"], ["-o", "a", "-o", "b"],
    # refused by click, or by the command when it runs: the plain parser hands them over
    ["D", "E"], ["--format", "xml"], ["--format="], ["--format"], ["-o"], ["-M"], ["--bogus"],
    ["-x"], ["-h"], ["--help"], ["D", "--", "--pid"], ["--hash=1"], ["--host"], ["-oh", "-h"],
    ["D", "-M", "E"], ["--hash", "D"], ["--host", "h", "D"], ["--hash", "--format", "jsonl"],
    ["--formats", "json"], ["-format", "json"], ["--Format", "json"],
]


def _own_words(command) -> list[list[str]]:
    """Lines with the command's own options: given, attached, repeated, refused."""
    out: list[list[str]] = []
    for opt in command.options:
        decl = "--" + opt.name.replace("_", "-")
        if opt.flag:
            out += [[decl], ["D", decl, decl], [decl + "=1"], [decl, "D", "--format", "json"]]
        else:
            out += [[decl, "1"], [decl + "=2", "D"], [decl, " 3 "], [decl, "4_0"], [decl, "x"],
                    [decl, "-5"], [decl, "1.5"], [decl], [decl, "1", decl, "2"], [decl + "="]]
    return out


def _click_params(cmd: click.Command, name: str, words: list[str]) -> dict | None:
    """What click parses from ``words`` (None: it refuses them, or shows help)."""
    try:
        with cmd.make_context(name, list(words)) as ctx:
            return dict(ctx.params)
    except (click.ClickException, click.exceptions.Exit):
        return None


def test_the_plain_parser_reads_a_line_as_click_does(capsys):
    registry = load_registry()
    taken = 0
    for name, command in registry.commands.items():
        cmd = _command_for(name, command, name)
        for words in WORDS + _own_words(command):
            expected = _click_params(cmd, name, words)
            got = cli._plain_options(command, words)
            if got is None:
                continue
            taken += 1
            assert expected is not None, (name, words)
            assert {**got[0], **got[1]} == expected, (name, words)
    assert taken > 20 * len(registry.commands)  # it does take the lines it can
    capsys.readouterr()  # the help click showed


@pytest.mark.parametrize("words", [["D"], ["-M", "D", "--format", "json", "-o", "x"],
                                   ["D", "--format=jsonl", "--host", "h"]])
def test_the_plain_parser_takes_the_usual_lines(words):
    command = load_registry().commands["pslist"]
    assert cli._plain_options(command, words + ["--pid", "1"]) is not None


@pytest.mark.parametrize("args, plain", [
    (["run", "pslist"], True), (["--debug", "run", "pslist"], True),
    (["--types", "btf", "run", "pslist"], True), (["--types=dwarf", "run", "pslist"], True),
    (["run"], False), (["run", "-h"], False), (["--types", "bogus", "run", "pslist"], False),
    (["--types", "run", "pslist"], False), (["--plugin-dir", ".", "run", "pslist"], False),
    (["--debug=1", "run", "pslist"], False), (["info"], False), (["run", "-", "x"], False),
    (["--version"], False), ([], False), (["-h", "run", "pslist"], False),
])
def test_only_a_run_line_is_plain(args, plain):
    assert (cli._plain_head(args) is not None) == plain


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plain")
    (tmp / "empty.core").write_bytes(b"")
    return {"DUMP": str(get_fixture("basic").path("elf")), "TMP": str(tmp),
            "EMPTY": str(tmp / "empty.core"), "MISSING": str(tmp / "no-such-file"),
            "NODIR": str(tmp / "no-dir" / "out.txt")}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    where = tmp_path_factory.mktemp("plain-env")
    return dict(os.environ, KVMFX_PROFILE_DIR=str(where / "profiles"),
                KVMFX_ENTRY_POINT_CACHE=str(where / "entry-points.json"))


#: a line through the entry point, then whether click's tree answered it
ENTRY = """
import sys
from kvmfx.cli import main
try:
    main()
finally:
    print(f"@@clitree={'kvmfx.clitree' in sys.modules}", file=sys.stderr)
"""
#: a line through click's tree alone
TREE = "from kvmfx.clitree import main\nmain()\n"


def _run(code: str, args: list[str], env: dict[str, str],
         out: Path) -> tuple[int, str, str, str | None]:
    args = [a.replace("{OUT}", str(out)) for a in args]
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       env=env, timeout=300)
    written = out.read_text() if out.exists() else None
    return r.returncode, r.stdout, r.stderr.replace(str(out), "{OUT}"), written


@pytest.mark.parametrize("line, plain", [
    ("run pslist DUMP", True),
    ("run pslist DUMP --format json --pid 1", True),
    ("run psaux -M DUMP --pid=1 --format=csv", True),
    ("--debug run envars DUMP --uid 0 --format jsonl --host h1", True),
    ("--types btf run pstree DUMP -o {OUT}", True),
    ("run lsmod DUMP --sections -o{OUT} --format json", True),
    ("run pslist MISSING", True),
    ("run pslist EMPTY", True),
    ("run pslist TMP", True),
    ("run pslist DUMP -o NODIR", True),
    ("run pslist DUMP --pid one", False),
    ("run pslist DUMP --format xml", False),
    ("run pslist DUMP -M DUMP", False),
    ("run pslist DUMP --hash", False),
    ("run pslist DUMP --bogus", False),
    ("run pslist DUMP --help", False),
    ("run nosuch DUMP", False),
    ("--types bogus run pslist DUMP", False),
])
def test_a_line_is_answered_as_click_answers_it(line, plain, places, env, tmp_path):
    args = [places.get(word, word) for word in line.split()]
    code, stdout, stderr, written = _run(ENTRY, args, env, tmp_path / "entry.out")
    stderr, _, tree = stderr.rpartition("@@clitree=")
    assert tree == f"{not plain}\n", (line, stderr)
    expected = _run(TREE, args, env, tmp_path / "tree.out")
    assert (code, stdout, stderr, written) == expected, line


def test_a_plain_line_writes_the_table_json_and_errors_it_did(places, env):
    """Beside the comparison, what the plain path writes."""
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "pslist", places["DUMP"],
                        "--format", "json", "--pid", "1"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert (r.returncode, r.stderr) == (0, "")
    (row,) = json.loads(r.stdout)
    assert row["pid"] == 1 and row["exe"]
    r = subprocess.run([sys.executable, "-m", "kvmfx.cli", "run", "pslist", places["TMP"]],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 3 and r.stdout == ""
    assert r.stderr == f"kvmfx: {places['TMP']}: is a directory, not a dump or a memory " \
        "device\n"

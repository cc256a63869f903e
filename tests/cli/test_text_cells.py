"""Text tables show every character of a cell: control characters escaped, none dropped."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

from kvmfx.commands import Column
from kvmfx.render import escape_controls, render_text
from tests.cli.test_live_commands import kvmfx

COLUMNS = [Column("pid", "int"), Column("argv", "list[str]"), Column("note")]


def _table(rows: list[dict[str, object]]) -> list[str]:
    out = io.StringIO()
    render_text(COLUMNS, rows, out)
    return out.getvalue().split("\n")[:-1]


def test_a_tab_is_escaped_and_what_follows_it_is_kept():
    lines = _table([{"pid": 1, "argv": ["prog", "a\tb", "END1234"], "note": "x"}])
    assert len(lines) == 2, lines
    assert "prog a\\tb END1234" in lines[1], lines
    assert lines[1].rstrip().endswith("x"), lines


def test_control_characters_are_escaped_one_row_one_line():
    value = "l1\nl2\rz \x1b[31mred \x00nul \x7f \x85 \u2028 \u202eevil \udcff"
    lines = _table([{"pid": 1, "argv": [value], "note": "last"}])
    assert len(lines) == 2, lines
    shown = "l1\\nl2\\rz \\x1b[31mred \\x00nul \\x7f \\x85 \\u2028 \\u202eevil \\udcff"
    assert shown in lines[1], lines
    assert lines[1].endswith("last"), lines
    assert all(ch.isprintable() for ch in "".join(lines)), lines


def test_wide_characters_keep_the_columns_aligned():
    lines = _table([{"pid": 1, "argv": ["日本語のテキスト", "END"], "note": "n1"},
                    {"pid": 22, "argv": ["ascii"], "note": "n2"}])
    assert "日本語のテキスト END" in lines[1], lines
    assert lines[1].endswith("n1") and lines[2].endswith("n2"), lines
    from rich.cells import cell_len
    assert cell_len(lines[1]) == cell_len(lines[2]), lines


def test_escape_controls_leaves_printable_text_alone():
    text = "ünïcødé ✓ back\\slash 日本"
    assert escape_controls(text) == text
    assert escape_controls("a\tb") == "a\\tb"


def test_psaux_text_shows_an_argument_after_a_tab():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                             "a\tb", "END1234"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while time.time() < deadline and b"END1234" not in \
                Path(f"/proc/{proc.pid}/cmdline").read_bytes():
            time.sleep(0.02)
        r = kvmfx("run", "psaux", "--pid", str(proc.pid))
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert len(lines) == 2, lines
        assert "a\\tb END1234" in lines[1], lines
        assert "\t" not in r.stdout, lines
    finally:
        proc.kill()
        proc.wait()


def test_a_mapping_cell_shows_each_entry():
    lines = _table([{"pid": 1, "argv": [], "note": {"uid": "page 0x1000\tleft out",
                                                    "gid": "same"}}])
    assert lines[1].endswith("uid: page 0x1000\\tleft out; gid: same"), lines

"""Every command and group answers --help and -h: exit 0, a usage line naming itself."""

from __future__ import annotations

import pytest

from tests.cli.test_live_commands import kvmfx


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("words, usage", [
    ((), "Usage: kvmfx [OPTIONS] COMMAND"),
    (("run",), "Usage: kvmfx run [OPTIONS] COMMAND"),
    (("profile",), "Usage: kvmfx profile [OPTIONS] COMMAND"),
    (("profile", "build"), "Usage: kvmfx profile build [OPTIONS] [COREFILE]"),
    (("profile", "export-isf"), "Usage: kvmfx profile export-isf [OPTIONS] [COREFILE]"),
    (("profile", "list"), "Usage: kvmfx profile list"),
    (("run", "psaux"), "Usage: kvmfx run psaux [OPTIONS] [COREFILE]"),
    (("run", "profile-build"), "Usage: kvmfx run profile-build [OPTIONS] [COREFILE]"),
    (("info",), "Usage: kvmfx info [OPTIONS] [COREFILE]"),
    (("plugins",), "Usage: kvmfx plugins"),
])
def test_every_command_and_group_answers_help(words, usage, flag):
    r = kvmfx(*words, flag)
    assert (r.returncode, r.stderr) == (0, "")
    first = r.stdout.splitlines()[0] if r.stdout else ""
    assert first.startswith(usage), first


def test_run_help_lists_the_commands():
    r = kvmfx("run", "--help")
    assert r.returncode == 0, r.stderr
    for name in ("pslist", "psaux", "pstree", "envars", "threads", "uname"):
        assert f"  {name} " in r.stdout, (name, r.stdout)


def test_profile_list_names_the_profile_actions():
    r = kvmfx("profile", "list")
    assert (r.returncode, r.stderr) == (0, "")
    actions = [line.split()[0] for line in r.stdout.splitlines()]
    assert actions == ["build", "export-isf"]


def test_profile_help_lists_its_actions():
    r = kvmfx("profile", "--help")
    assert r.returncode == 0, r.stderr
    assert "  build " in r.stdout and "  export-isf " in r.stdout, r.stdout


def test_main_help_shows_no_markup():
    r = kvmfx("--help")
    assert r.returncode == 0, r.stderr
    assert "``" not in r.stdout, r.stdout
    assert "profile" in r.stdout

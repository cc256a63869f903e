"""The core never imports a plugin by name: every extension point is a hook."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kvmfx
from kvmfx.errors import KvmOpenError
from kvmfx.registry import load_registry
from kvmfx.session import check_swapfile

CORE = Path(kvmfx.__file__).parent


@pytest.mark.parametrize("module", sorted(p.name for p in CORE.glob("*.py")))
def test_core_module_imports_no_plugin(module):
    tree = ast.parse((CORE / module).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in imported if m.split(".")[0] == "kvmfx_plugins"] == []


def test_swap_areas_are_recognised_through_the_swap_format_hook(tmp_path):
    registry = load_registry()
    assert [f.name for f in registry.swap_formats] == ["linux-swap"]
    page = bytearray(4096)
    page[4086:] = b"SWAPSPACE2"
    page[1024:1036] = (1).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(4)
    area = tmp_path / "area"
    area.write_bytes(bytes(page) * 2)
    check_swapfile(str(area), registry)  # version 1, last page 1: a swap area
    other = tmp_path / "other"
    other.write_bytes(bytes(8192))
    with pytest.raises(KvmOpenError) as exc:
        check_swapfile(str(other), registry)
    assert str(exc.value) == (f"{other}: cannot use the swapfile: not a swap area (no "
                              "swap-format plugin recognises it)")


PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


@pytest.mark.parametrize("module", sorted(str(p.relative_to(PLUGINS))
                                          for p in PLUGINS.glob("*/*.py")))
def test_only_commands_import_across_plugin_folders(module):
    """One folder per role (formats, arch, linux, symbols, commands): a plugin uses another
    folder's plugins through the session and the hooks; only commands import them."""
    folder = module.split("/")[0]
    tree = ast.parse((PLUGINS / module).read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    others = {m.split(".")[1] for m in imported
              if m.startswith("kvmfx_plugins.") and m.count(".") >= 2}
    if folder != "commands":
        assert others <= {folder}, others

"""Symbol files (in progress)."""

from __future__ import annotations

from kvmfx.hookspecs import hookimpl


@hookimpl
def kvmfx_symbol_providers() -> list:
    return []

"""flattened dump format (in progress)."""

from __future__ import annotations

from kvmfx.hookspecs import hookimpl


@hookimpl
def kvmfx_dump_formats() -> list:
    return []

"""x86_64 paging (in progress)."""

from __future__ import annotations

from kvmfx.hookspecs import hookimpl


@hookimpl
def kvmfx_architectures() -> list:
    return []

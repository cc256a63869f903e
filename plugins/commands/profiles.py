"""Profiles: save a dump's kernel symbols and types for the next open (``profile-build``),
or as a Volatility 3 ISF (``profile-export-isf``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from kvmfx.commands import Column, Command, Option
from kvmfx.errors import UsageError
from kvmfx.hookspecs import hookimpl
from kvmfx.session import Session


class BuildProfile(Command):
    def __init__(self) -> None:
        super().__init__(
            name="profile-build",
            description="Save the dump's kernel symbols and types as a cached profile.",
            columns=[Column("profile", "str", "the profile file"),
                     Column("symbols_from", "str", "where the symbols came from"),
                     Column("symbols", "int", "symbols"), Column("types", "int", "types")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        from kvmfx_plugins.symbols.profile_cache import ProfileCacheProvider

        symbols, types = session.symbols, session.types
        where = ProfileCacheProvider()._path(session)
        if where is None:
            raise UsageError("no VMCOREINFO (build id, release) to key a profile by")
        if not os.path.exists(where):
            raise UsageError(f"symbols came from {symbols.source}: only a profile of the "
                             "image's own symbols and BTF is cached")
        yield {"profile": str(where), "symbols_from": symbols.source,
               "symbols": len(symbols), "types": types.count}


class ExportIsf(Command):
    def __init__(self) -> None:
        super().__init__(
            name="profile-export-isf",
            description="Write the dump's kernel symbols and types as a Volatility 3 ISF.",
            columns=[Column("path", "str", "the ISF file written"),
                     Column("symbols", "int", "symbols"), Column("types", "int", "user types"),
                     Column("bytes", "int", "file size")],
            options=[Option("isf", "Where to write the ISF (.json or .json.xz).")])

    def run(self, session: Session, options: dict[str, Any]) -> Iterable[dict[str, Any]]:
        from kvmfx_plugins.symbols.isf import export_isf, write_isf  # when an ISF is written

        out = options.get("isf")
        if not out:
            raise UsageError("give the ISF file to write with --isf FILE.json.xz")
        addr = session.symbols.lookup("linux_banner")
        banner = None
        if addr is not None:
            raw = session.read(addr, 512)
            banner = raw[:raw.index(b"\0") + 1] if b"\0" in raw else None
        isf = export_isf(session.symbols, session.types, session.image.unslide, banner)
        size = write_isf(isf, out)
        yield {"path": out, "symbols": len(isf["symbols"]), "types": len(isf["user_types"]),
               "bytes": size}


@hookimpl
def kvmfx_commands() -> list[Command]:
    return [BuildProfile(), ExportIsf()]

"""Profiles: a kernel's symbols and BTF, saved once, so the next open of it is instant.

A profile is a zip file (``meta.json``, the symbols as three columns, ``types.btf`` and
the BTF index) in the user's cache (``~/.cache/kvmfx/profiles`` on Linux, where the platform
keeps caches elsewhere), keyed by the kernel's build id (VMCOREINFO ``BUILD-ID``) or,
failing that, its release. Symbol addresses are stored
unslid (KASLR offset removed) and slid again by the opening image's own offset, so one
profile serves every boot of the same kernel build.
"""

from __future__ import annotations

import array
import json
import mmap
import os
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

from kvmfx.arrays import from_little, to_little
from kvmfx.errors import FormatError, KvmError, SymbolError
from kvmfx.hookspecs import hookimpl
from kvmfx.registry import user_cache_dir, write_atomically
from kvmfx.session import Session
from kvmfx.symbols import (
    SortedSymbols,
    Symbol,
    SymbolProvider,
    SymbolTable,
    columns_of,
    sorted_columns,
)
from kvmfx.types import TypeModel
from kvmfx_plugins.symbols.btf import parse_btf
from kvmfx_plugins.symbols.kallsyms import CompressedNames, IndexedNames, IndexedSymbols

PROFILE_FORMAT = "kvmfx-profile"
PROFILE_VERSION = 4


def cache_dir() -> str:
    return os.environ.get("KVMFX_PROFILE_DIR") or os.path.join(user_cache_dir(), "profiles")


def shipped_dir() -> str:
    """Profiles that ship with kvmfx (package data of ``kvmfx_profiles``), read-only."""
    import kvmfx_profiles

    return os.path.dirname(os.path.realpath(kvmfx_profiles.__file__))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def kernel_key(session: Session) -> str | None:
    """The profile key of a dump's kernel (release and build id), from its VMCOREINFO."""
    if session.live:
        return None
    try:
        info = session.boot
    except KvmError:
        return None
    if info is None or not (info.build_id or info.osrelease):
        return None
    # readable, and safe as a file name whatever the dump's VMCOREINFO says (what it
    # claims is checked against the profile's own record when one is loaded)
    release = re.sub(r"[^A-Za-z0-9._+-]", "_", info.osrelease or "unknown")[:80]
    build = re.sub(r"[^0-9a-f]", "", (info.build_id or "").lower())[:64] or "no-build-id"
    return f"{release}-{build}"


#: zip members of a profile: the symbols as columns sorted by name (the names, NUL-ended,
#: in one blob; little-endian u32 offsets of each name and one past the last; u64
#: addresses; one type letter each), so a load is a binary search away from any name; the
#: BTF and its index as the BTF model saves it
_NAMES, _OFFSETS, _ADDRS, _KINDS = ("symbols.names", "symbols.offsets", "symbols.addresses",
                                    "symbols.types")
#: or, for a kallsyms table with its own name index (Linux 6.2+), the kernel's tables as
#: they are: kallsyms_names, the 256 tokens (NUL-separated), where each entry starts and
#: the index (little-endian u32 each), the addresses in table order (u64); symbols set or
#: deleted by hand, and how the index compares names, in meta.json
_K_NAMES, _K_TOKENS, _K_OFFSETS, _K_SEQS, _K_ADDRS = (
    "kallsyms.names", "kallsyms.tokens", "kallsyms.offsets", "kallsyms.seqs",
    "kallsyms.addresses")




class StoredZip:
    """The members of a zip archive that stores them uncompressed, as :func:`save_profile`
    writes one, read from its bytes (or a read-only map of the file) without the zipfile
    module: a warm open reads a profile and nothing else of it. Every member read is
    checked against its CRC-32; anything else (compressed members, zip64, an archive
    that does not add up) is a FormatError naming the offset."""

    def __init__(self, data: bytes | mmap.mmap) -> None:
        self._data = data
        self._members: dict[str, tuple[int, int, int]] = {}
        size = len(data)
        end = data.rfind(b"PK\x05\x06", max(0, size - 22 - 0xFFFF))
        if end < 0 or end + 22 > size:
            raise FormatError("not a zip archive: no end of central directory")
        disk, cd_disk, here, total, cd_size, cd_off = struct.unpack_from("<4xHHHHII", data, end)
        if disk or cd_disk or here != total or cd_off + cd_size > end:
            raise FormatError("zip central directory does not fit the archive", offset=end)
        pos = cd_off
        for _ in range(total):
            if pos + 46 > end or data[pos:pos + 4] != b"PK\x01\x02":
                raise FormatError("damaged zip central directory", offset=pos)
            flags, method, crc, csize, usize, nlen, xlen, clen = struct.unpack_from(
                "<8xHH4xIIIHHH", data, pos)
            local = struct.unpack_from("<I", data, pos + 42)[0]
            name = bytes(data[pos + 46:pos + 46 + nlen]).decode("utf-8", "replace")
            pos += 46 + nlen + xlen + clen
            if method != 0 or flags & 1 or csize != usize or csize == 0xFFFFFFFF:
                raise FormatError(f"zip member {name!r} is not stored plainly", offset=pos)
            if local + 30 > size or data[local:local + 4] != b"PK\x03\x04":
                raise FormatError(f"zip member {name!r} has no local header", offset=local)
            lnlen, lxlen = struct.unpack_from("<HH", data, local + 26)
            start = local + 30 + lnlen + lxlen
            if start + csize > size:
                raise FormatError(f"zip member {name!r} runs past the archive", offset=start)
            self._members[name] = (start, csize, crc)

    @property
    def names(self) -> list[str]:
        return list(self._members)

    def read(self, name: str) -> bytes:
        """A member's bytes (KeyError when there is none; FormatError when its CRC-32 is
        not the directory's)."""
        start, size, crc = self._members[name]
        blob = bytes(self._data[start:start + size])
        if zlib.crc32(blob) != crc:
            raise FormatError(f"zip member {name!r} is damaged (CRC-32)", offset=start)
        return blob


def save_profile(path: str | os.PathLike[str], symbols: SymbolTable,
                 unslide: Callable[[list[int]], list[int]], btf: bytes | None,
                 meta: dict[str, object], btf_index: dict[str, bytes] | None = None) -> None:
    """Write a profile atomically (a temporary file renamed into place); addresses as in
    the kernel file (``unslide`` takes the image's KASLR offset off a list of them)."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    members: dict[str, bytes] = {}
    indexed = symbols.symbols
    if isinstance(indexed, IndexedSymbols) and indexed.move is None:
        # the kernel's compressed tables and name index as they are: nothing decoded
        index = indexed.index
        members[_K_NAMES] = index.names
        members[_K_TOKENS] = "\0".join(index.tokens).encode("latin-1")
        members[_K_OFFSETS] = to_little(array.array("I", index.offsets))
        members[_K_SEQS] = to_little(array.array("I", index.seqs))
        members[_K_ADDRS] = to_little(array.array("Q", unslide(list(indexed.addresses))))
        meta = {**meta, "by_hand": {name: [unslide([sym.address])[0], sym.type[:1] or "?"]
                                    for name, sym in indexed.by_hand.items()},
                "deleted": sorted(indexed.deleted), "index_key": index.key}
        if isinstance(index, CompressedNames):
            meta["letters"] = b"".join(index.letters()).decode("latin-1")
    else:
        if isinstance(symbols.symbols, SortedSymbols):  # sorted when the table was made
            blob, offsets, addrs, kinds = symbols.symbols.sorted_columns()
            addrs = unslide(addrs)
        else:
            names, addrs, kinds = columns_of(symbols.symbols)
            blob, offsets, addrs, kinds = sorted_columns(names, unslide(addrs), kinds)
        members[_NAMES] = blob
        members[_OFFSETS] = to_little(array.array("I", offsets))
        members[_ADDRS] = to_little(array.array("Q", addrs))
        members[_KINDS] = kinds.encode("latin-1", "replace")
    import zipfile

    tmp = f"{os.path.splitext(path)[0]}.tmp{os.getpid()}"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        z.writestr("meta.json", json.dumps({"format": PROFILE_FORMAT,
                                            "version": PROFILE_VERSION, **meta}))
        for name, data in members.items():
            z.writestr(name, data)
        if btf is not None:
            z.writestr("types.btf", btf)
        for name, blob in (btf_index or {}).items():
            z.writestr(f"types.index.{name}", blob)
    os.replace(tmp, path)


def load_profile(path: str | os.PathLike[str], slide: Callable[[int], int] | None = None
                 ) -> tuple[SymbolTable, bytes | None, dict[str, Any]]:
    """Read a profile, its addresses moved by ``slide`` (when a symbol is made) to where
    this image's kernel lies; FormatError when it is not one kvmfx can use."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            try:
                data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (ValueError, OSError):  # empty, or a file that cannot be mapped
                data = f.read()
        try:
            z = StoredZip(data)
            meta = json.loads(z.read("meta.json"))
            if meta.get("format") != PROFILE_FORMAT or meta.get("version") != PROFILE_VERSION:
                raise FormatError("not a kvmfx profile of this version", path=str(path))
            members = z.names
            if _K_SEQS in members:
                kallsyms_members = {m: z.read(m) for m in (_K_NAMES, _K_TOKENS, _K_OFFSETS,
                                                           _K_SEQS, _K_ADDRS)}
            else:
                kallsyms_members = None
                raw_names, raw_offsets = z.read(_NAMES), z.read(_OFFSETS)
                raw_addrs, raw_kinds = z.read(_ADDRS), z.read(_KINDS)
            btf = z.read("types.btf") if "types.btf" in members else None
            index = {m.rpartition(".")[2]: z.read(m) for m in members
                     if m.startswith("types.index.")}
            if index:
                meta["btf_index"] = index
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
    except FormatError as exc:
        if exc.path is not None:  # not a profile of this version
            raise
        raise FormatError(f"unreadable profile: {exc.message}", path=str(path),
                          offset=exc.offset) from None
    except (OSError, KeyError, ValueError) as exc:
        raise FormatError(f"unreadable profile: {exc}", path=str(path)) from None
    if kallsyms_members is not None:
        return _indexed_profile(path, kallsyms_members, meta, slide), btf, meta
    try:
        offsets = from_little("I", raw_offsets)
        count = len(offsets) - 1
        kinds = raw_kinds.decode("latin-1")
        if count < 0 or len(raw_addrs) != 8 * count or len(kinds) != count:
            raise ValueError(f"{count} names, {len(raw_addrs) // 8} addresses and "
                             f"{len(kinds)} type letters")
        if offsets[0] != 0 or offsets[-1] != len(raw_names) or (
                count and raw_names[-1:] != b"\0"):
            raise ValueError("name offsets do not fit the names")
        symbols = SortedSymbols(raw_names, offsets, from_little("Q", raw_addrs), kinds, slide)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"unreadable profile symbols: {exc}", path=str(path)) from None
    table = SymbolTable(f"profile:{os.path.basename(path)}", symbols)
    return table, btf, meta


def _indexed_profile(path: str, raw: dict[str, bytes], meta: dict[str, Any],
                     slide: Callable[[int], int] | None) -> SymbolTable:
    """The kallsyms tables of a profile, read through their index (FormatError when the
    members do not fit together)."""
    try:
        tokens = raw[_K_TOKENS].decode("latin-1").split("\0")
        offsets = from_little("I", raw[_K_OFFSETS])
        seqs = from_little("I", raw[_K_SEQS])
        addrs = from_little("Q", raw[_K_ADDRS])
        key = meta.get("index_key")
        # a table without an index (key "compressed") keeps none: names are looked up
        # compressed (kallsyms.CompressedNames)
        count = len(offsets) if key == "compressed" and not seqs else len(seqs)
        if len(tokens) != 256 or len(addrs) != count or len(offsets) != count or \
                key not in ("full", "lto", "compressed"):
            raise ValueError(f"{len(tokens)} tokens, {count} index entries, {len(addrs)} "
                             f"addresses, {len(offsets)} name offsets, key {key!r}")
        # checked when the profile was made; a damaged one gives misses, never an error
        letters = meta.get("letters")
        index = CompressedNames(raw[_K_NAMES], tokens, offsets,
                                letters if isinstance(letters, str) else None) \
            if key == "compressed" \
            else IndexedNames(raw[_K_NAMES], tokens, offsets, seqs, key)
        symbols = IndexedSymbols(index, addrs, slide)
        for name, (address, kind) in dict(meta.get("by_hand") or {}).items():
            symbols[str(name)] = Symbol(str(name), slide(int(address)) if slide else
                                        int(address), str(kind)[:1] or "?")
        for name in meta.get("deleted") or ():
            symbols.forget(str(name))
    except (TypeError, ValueError, AttributeError) as exc:
        raise FormatError(f"unreadable profile symbols: {exc}", path=str(path)) from None
    return SymbolTable(f"profile:{os.path.basename(path)}", symbols)


class ProfileCacheProvider:
    """A cached profile of the dump's kernel, made on an earlier open of the same build."""

    name = "profile-cache"
    description = "dump: the cached profile of this kernel build (user cache dir)"
    stage = "image"
    priority = 5
    type_format = "btf"

    def _path(self, session: Session) -> str | None:
        """The profile of the session's kernel: the user's cache first, then the profiles
        shipped with kvmfx (the ``kvmfx_profiles`` package: the repository's profiles/)."""
        key = kernel_key(session)
        if key is None:
            return None
        name = f"{key}-v{PROFILE_VERSION}.zip"
        for folder in (cache_dir(), shipped_dir()):
            if os.path.exists(os.path.join(folder, name)):
                return os.path.join(folder, name)
        return os.path.join(cache_dir(), name)

    def load(self, session: Session, path: str | None) -> SymbolTable | None:
        if "profile-table" in session.plugin_data:
            return session.plugin_data["profile-table"]
        where = self._path(session)
        if where is None or not os.path.exists(where):
            return None
        try:
            table, btf, meta = load_profile(where, session.image.slide)
        except FormatError as exc:
            raise SymbolError(exc.message, path=exc.path) from None
        info = session.boot
        if info is not None and (meta.get("release"), meta.get("build_id")) != (
                info.osrelease, info.build_id):
            raise SymbolError(f"profile is of {meta.get('release')} ({meta.get('build_id')}), "
                              f"not of this dump's kernel", path=where)
        keep_lookups(session, table, _lookups_path(where))
        for name, (address, kind) in self._found(session).items():
            if name not in table.symbols:
                table.symbols[name] = Symbol(name, session.image.slide(address), kind)
        session.plugin_data["profile-btf"] = (btf, table.source, meta.get("btf_index"))
        session.plugin_data["profile-table"] = session.relocate_symbols(table)
        return session.plugin_data["profile-table"]

    def _found_path(self, session: Session) -> str | None:
        key = kernel_key(session)
        return None if key is None else os.path.join(cache_dir(),
                                                     f"{key}-v{PROFILE_VERSION}.found.json")

    def _found(self, session: Session) -> dict[str, tuple[int, str]]:
        """Symbols an earlier open of this kernel found by searching (unslid)."""
        where = self._found_path(session)
        try:
            raw = json.loads(_read_text(where)) if where is not None else {}
            return {str(n): (int(a), str(k)[:1] or "?") for n, (a, k) in raw.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def remember_symbol(self, session: Session, name: str, address: int, kind: str) -> None:
        """Keep a symbol found by searching beside this kernel's profile (the next open
        reads it with the profile instead of searching)."""
        where, profile = self._found_path(session), self._path(session)
        if where is None or profile is None or not os.path.exists(profile):
            return
        found = self._found(session)
        found[name] = (session.image.unslide(address), kind)
        write_atomically(where, json.dumps({n: list(v) for n, v in sorted(found.items())}))

    def load_types(self, session: Session, path: str | None) -> TypeModel | None:
        if "profile-btf" not in session.plugin_data:
            self.load(session, path)  # types asked for first: the profile has both
        cached = session.plugin_data.get("profile-btf")
        if cached is None:
            return None
        btf, source, index = cached
        if not btf:
            return None
        try:
            return parse_btf(btf, f"{source} (BTF)", index)
        except (FormatError, KeyError, ValueError, TypeError):
            return parse_btf(btf, f"{source} (BTF)")  # a bad saved index: index again


#: names whose compressed lookups a profile keeps beside it, at most
MAX_LOOKUPS = 4096


def _lookups_path(profile: str) -> str:
    """Where the compressed lookups of a profile's kernel are kept: in the user's cache
    (a profile shipped with kvmfx lies in the installed package, never written)."""
    name = os.path.splitext(os.path.basename(profile))[0]
    return os.path.join(cache_dir(), name + ".lookups.json")


def keep_lookups(session: Session, table: SymbolTable, where: str) -> None:
    """For a kallsyms table looked up compressed (no name index): answer the names earlier
    opens of this kernel searched for from ``where`` (a JSON object ``name -> [table
    indexes]`` beside the profile), and add the names this session searches for when it
    closes. Each search reads the whole compressed name table; a warm open of the same
    command then searches for none."""
    index = getattr(table.symbols, "index", None)
    if not isinstance(index, CompressedNames):
        return
    try:
        known = json.loads(_read_text(where))
    except (OSError, ValueError):
        known = None
    if isinstance(known, dict):
        index.remember(known)
    else:
        known = {}

    def keep() -> None:
        room = MAX_LOOKUPS - len(known)
        new = [(n, f) for n, f in index.searched.items() if known.get(n) != f]
        if not new or room <= 0:
            return
        merged = {**known, **dict(new[:room])}
        write_atomically(where, json.dumps(merged, sort_keys=True))

    session.at_close(keep)


def remember(session: Session, table: SymbolTable, btf: bytes | None,
             model: TypeModel | None = None) -> None:
    """Save the profile of a session's kernel (best effort: a cache, never an error)."""
    where = ProfileCacheProvider()._path(session)
    if where is None or os.path.exists(where):
        return
    info = session.boot
    try:
        save_profile(where, table, session.image.unslide_all, btf,
                     {"release": info.osrelease if info else None,
                      "build_id": info.build_id if info else None,
                      "symbols_from": table.source},
                     getattr(model, "index_state", lambda: None)())
    except OSError:
        return
    keep_lookups(session, table, _lookups_path(where))


@hookimpl
def kvmfx_symbol_providers() -> list[SymbolProvider]:
    return [ProfileCacheProvider()]



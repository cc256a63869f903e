"""Typed errors of kvmfx.

Every failure kvmfx reports is a :class:`KvmError`. Each carries what failed and where
(a file, an offset, an address), and its ``str()`` is one line fit for a terminal.
"""

from __future__ import annotations


class KvmError(Exception):
    """Base class of all kvmfx errors: one line, naming what failed and where."""

    #: CLI exit status used when this error ends a command.
    exit_status = 3

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None,
                 address: int | None = None) -> None:
        self.message = message
        self.path = path
        self.offset = offset
        self.address = address
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.offset is not None:
            where.append(f"offset {self.offset:#x}")
        if self.address is not None:
            where.append(f"address {self.address:#x}")
        text = " ".join(self.message.split())  # always one line
        return f"{', '.join(where)}: {text}" if where else text


class KvmOpenError(KvmError):
    """A kernel image, dump, swap file or device could not be opened."""


class FormatError(KvmError):
    """A dump or symbol file is malformed, truncated or lies about itself."""


class UnsupportedError(KvmError):
    """The operation is not available for this session (e.g. under KVM_NO_FILES)."""

    exit_status = 2


class ReadOnlyError(KvmError):
    """A write was attempted on evidence opened read-only."""


class MissingPageError(KvmError):
    """A physical page is not contained in the dump (excluded, a hole, or never captured)."""


class TranslationError(KvmError):
    """A virtual address has no valid translation in the page tables.

    ``span``: the aligned size of the unmapped region around the address, when the walk
    knows it (a non-present upper-level entry leaves 2 MiB, 1 GiB... unmapped); 0 unknown.
    """

    span = 0


class SwappedOutError(TranslationError):
    """A user page is swapped out: its page-table entry holds a swap entry.

    ``swap_type`` and ``swap_offset`` say where in which swap area the page is.
    """

    def __init__(self, message: str, *, swap_type: int, swap_offset: int,
                 address: int | None = None) -> None:
        self.swap_type = swap_type
        self.swap_offset = swap_offset
        super().__init__(message, address=address)


class SymbolError(KvmError):
    """A symbol or type is unknown, or a symbol source is corrupt or for another kernel."""


class ProcessError(KvmError):
    """Process information could not be read."""


class UsageError(KvmError):
    """The caller asked for something that does not make sense."""

    exit_status = 2

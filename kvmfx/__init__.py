"""kvmfx: kernel-memory forensics for live systems and crash dumps.

``kvmfx.open()`` gives a :class:`~kvmfx.session.Session` (the Pythonic API);
:mod:`kvmfx.kvm` is the libkvm API of the BSD manual pages built on it; plugins implement
the hooks in :mod:`kvmfx.hookspecs`.
"""

from kvmfx.errors import (
    FormatError,
    KvmError,
    KvmOpenError,
    MissingPageError,
    ProcessError,
    ReadOnlyError,
    SymbolError,
    TranslationError,
    UnsupportedError,
    UsageError,
)
from kvmfx.hookspecs import hookimpl
from kvmfx.process import ArgVector, Process
from kvmfx.session import Session, open

__version__ = "0.1.0"

__all__ = [
    "ArgVector", "FormatError", "KvmError", "KvmOpenError", "MissingPageError",
    "Process", "ProcessError", "ReadOnlyError", "Session", "SymbolError", "TranslationError",
    "UnsupportedError", "UsageError", "hookimpl", "open",
]

"""Records: classes of named fields made without :mod:`dataclasses`.

A ``@dataclass`` execs generated source for every class it makes (about 1 ms each: the 19
made on a ``kvmfx run pslist`` cost some 20 ms of its start). A :class:`Record` subclass
names its fields in ``__slots__`` (in order) and writes its own ``__init__``; it gets a
dataclass's ``__repr__`` and ``__eq__`` (and, like one, no hash) from here.
"""

from __future__ import annotations

from reprlib import recursive_repr
from typing import Any, ClassVar


class Record:
    """Base of records. Fields are the class's ``__slots__`` after its base's fields (a
    class that keeps a ``__dict__`` sets ``_fields`` instead); ``_no_repr`` and
    ``_no_compare`` name fields left out of ``repr()`` and ``==``, as dataclasses'
    ``field(repr=False)`` and ``field(compare=False)`` do."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _no_repr: ClassVar[frozenset[str]] = frozenset()
    _no_compare: ClassVar[frozenset[str]] = frozenset()
    _repr_fields: ClassVar[tuple[str, ...]] = ()
    _compare_fields: ClassVar[tuple[str, ...]] = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__slots__")
        if own and "_fields" not in cls.__dict__:
            cls._fields = cls._fields + tuple(own)
        cls.__match_args__ = cls._fields  # type: ignore[misc]
        cls._repr_fields = tuple(f for f in cls._fields if f not in cls._no_repr)
        cls._compare_fields = tuple(f for f in cls._fields if f not in cls._no_compare)

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._compare_fields)

    @recursive_repr()
    def __repr__(self) -> str:
        values = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._repr_fields)
        return f"{self.__class__.__qualname__}({values})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._compared() == other._compared()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class FrozenRecord(Record):
    """A record whose fields are not assigned after ``__init__`` (which sets them with
    ``object.__setattr__``), hashed by its compared fields: a frozen dataclass."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self._compared())

    def __setstate__(self, state: Any) -> None:
        """Fields restored by copy and pickle (which would assign them one by one)."""
        values = state[1] if isinstance(state, tuple) else state
        for name, value in (values or {}).items():
            object.__setattr__(self, name, value)


def record_fields(cls: type[Record] | Record) -> tuple[str, ...]:
    """The field names of a record class (or of a record), in order."""
    return cls._fields

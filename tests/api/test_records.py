"""kvmfx.records: the records keep what a dataclass gave them (repr, ==, no hash, frozen)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kvmfx.commands import Column, Command
from kvmfx.process import Process
from kvmfx.records import FrozenRecord, Record, record_fields
from kvmfx.symbols import SymbolTable


class Point(Record):
    __slots__ = ("x", "y", "note")
    _no_repr = frozenset({"note"})
    _no_compare = frozenset({"note"})

    def __init__(self, x: int, y: int = 0, note: Any = None) -> None:
        self.x, self.y, self.note = x, y, note


@dataclasses.dataclass
class DataPoint:
    x: int
    y: int = 0
    note: Any = dataclasses.field(default=None, repr=False, compare=False)


class Frozen(FrozenRecord):
    __slots__ = ("a", "b")

    def __init__(self, a: int, b: Any) -> None:
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)


@dataclasses.dataclass(frozen=True)
class DataFrozen:
    a: int
    b: Any


def test_repr_eq_and_hash_as_a_dataclass():
    assert repr(Point(1, "two", note=3)) == repr(DataPoint(1, "two", note=3)).replace(
        "DataPoint", "Point")
    assert Point(1, 2, "a") == Point(1, 2, "b") and Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != DataPoint(1, 2) and Point(1) != (1, 0)
    with pytest.raises(TypeError):
        hash(Point(1))
    assert record_fields(Point) == ("x", "y", "note") == Point.__match_args__


def test_a_frozen_record_refuses_assignment_and_hashes_by_its_fields():
    f, d = Frozen(1, (2,)), DataFrozen(1, (2,))
    assert repr(f) == repr(d).replace("DataFrozen", "Frozen")
    assert hash(f) == hash(d) and f == Frozen(1, (2,))
    for obj in (f, d):
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.a = 2  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            del obj.a  # type: ignore[misc]


def test_a_record_refers_to_itself_in_repr():
    p = Point(1)
    p.y = p  # type: ignore[assignment]
    assert repr(p) == "Point(x=1, y=...)"


def test_mutable_defaults_are_fresh_and_private_fields_keep_their_flags():
    a, b = SymbolTable("a"), SymbolTable("a")
    assert a.symbols is not b.symbols and a._sorted is not b._sorted
    assert repr(a) == "SymbolTable(source='a', symbols={}, complete=True, slide=0)"
    p = Process(1, 0, "init", handle=0x1000)
    assert "handle" not in repr(p) and p == Process(1, 0, "init", missing={"uid": "x"})
    assert p.as_row()["missing"] is None and "handle" not in p.as_row()
    assert list(p.as_row()) == [f for f in record_fields(Process) if f != "handle"]


def test_a_command_takes_its_fields_from_init_or_from_class_attributes():
    class Passed(Command):
        def __init__(self) -> None:
            super().__init__(name="passed", columns=[Column("x")])

    class Declared(Command):
        name = "declared"
        description = "set on the class"
        columns = [Column("y")]

    assert Passed().name == "passed" and Passed().columns == [Column("x")]
    assert Passed().options == [] and Passed().options is not Passed().options
    d = Declared()
    assert (d.name, d.description, d.columns) == ("declared", "set on the class", [Column("y")])
    assert d.columns is not Declared.columns
    assert repr(Command()) == "Command(name='', description='', columns=[], options=[])"


def test_records_copy_and_pickle_as_dataclasses_do():
    import copy
    import pickle

    from kvmfx.symbols import Symbol
    from kvmfx_plugins.linux.vfs import FileInfo

    records = [Frozen(1, (2,)), Point(3, 4, note="n"), Process(5, 1, "init", missing={"x": "y"}),
               Symbol("init_task", 0xFFFF, "D"), FileInfo(None, 1, 0o2, 3, None, {"inode": "?"})]
    for obj in records:
        for again in (copy.copy(obj), copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
            assert type(again) is type(obj) and again == obj and repr(again) == repr(obj)
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.copy(records[0]).a = 2  # type: ignore[misc]

"""``session.types.struct(name)``: a structure's layout, and an instance read with
``Object``, as a plugin author uses them, on a real dump."""

from __future__ import annotations

import kvmfx
from kvmfx.objects import Object, cstring
from tests.factory import get_fixture


def test_struct_describes_and_parses_task_struct(tmp_path, monkeypatch):
    monkeypatch.setenv("KVMFX_PROFILE_DIR", str(tmp_path))
    with kvmfx.open(str(get_fixture("basic").path("elf"))) as s:
        t = s.types.struct("task_struct")
        assert (t.name, t.kind, t.size) == ("task_struct", "struct",
                                            s.types.struct_size("task_struct"))
        assert t.members["comm"].type_name == "char[16]" and t.members["comm"].size == 16
        assert t.members["pid"].offset == s.types.offsetof("task_struct", "pid")
        assert t.offsetof("tasks.next") == s.types.offsetof("task_struct", "tasks")
        bits = [m for m in t.members.values() if m.bit_size]
        assert bits and all(m.bit_offset < 8 for m in bits)
        init = Object(s.types, "task_struct", s.symbols.address_of("init_task"), s.read)
        assert init.pid == 0 and cstring(init.comm) == b"swapper/0"
        assert s.types.struct("list_head").members["next"].type_name == "struct list_head *"

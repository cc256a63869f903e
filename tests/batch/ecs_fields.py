"""The vendored ECS field definitions, and how they were made.

``data/ecs_fields_9.4.0.yml`` is a subset of ``generated/ecs/ecs_flat.yml`` of elastic/ecs at
tag v9.4.0 (the published field reference): every field of the field sets kvmfx's ECS export
may write, with its type, ``normalize`` (array) and allowed values. Regenerate:

    python -m tests.batch.ecs_fields path/to/ecs_flat.yml
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).resolve().parent / "data" / "ecs_fields_9.4.0.yml"
#: sha256 of ecs_flat.yml at elastic/ecs v9.4.0 (commit 354fd8d0ca99faa15405d1ea1d3bb396724d3e5a)
SOURCE_SHA256 = "f2c78b7c68503d42f5713ebea63fbfafbbeb7056f0d3ec7208c9cc2202ba7d8f"
KEPT = ("@timestamp", "message", "labels", "tags", "ecs.", "event.", "host.", "process.",
        "user.", "group.", "agent.")

HEADER = """# ECS field definitions (name -> type, normalize, allowed values), a subset of
# generated/ecs/ecs_flat.yml of elastic/ecs v9.4.0 (commit 354fd8d0ca99faa15405d1ea1d3bb396724d3e5a,
# file sha256 f2c78b7c68503d42f5713ebea63fbfafbbeb7056f0d3ec7208c9cc2202ba7d8f): the field sets
# kvmfx's ECS export can write (@timestamp, message, labels, tags, ecs, event, host, process,
# user, group, agent), each kept whole. Regenerate with tests/batch/ecs_fields.py.
"""


def subset(flat: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, field in flat.items():
        if name in KEPT or name.startswith(tuple(k for k in KEPT if k.endswith("."))):
            entry: dict[str, Any] = {"type": field["type"]}
            if field.get("normalize"):
                entry["normalize"] = field["normalize"]
            if field.get("allowed_values"):
                entry["allowed_values"] = [v["name"] for v in field["allowed_values"]]
            out[name] = entry
    return out


def load() -> dict[str, Any]:
    """The vendored definitions: field name -> {type, normalize, allowed_values}."""
    return yaml.safe_load(DATA.read_text())


def main(source: str) -> None:
    raw = Path(source).read_bytes()
    if hashlib.sha256(raw).hexdigest() != SOURCE_SHA256:
        sys.exit(f"{source}: not ecs_flat.yml of ECS v9.4.0 (sha256 differs)")
    DATA.write_text(HEADER + yaml.safe_dump(subset(yaml.safe_load(raw)), sort_keys=True,
                                            width=100))


if __name__ == "__main__":
    main(sys.argv[1])

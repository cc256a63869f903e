"""``python -m tests.factory build [--scenario NAME ...] [--force]``: build fixtures."""

from __future__ import annotations

import argparse
import json
import sys

from tests.factory import FactoryError, build
from tests.factory.scenarios import SCENARIOS


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.factory")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse) fixtures")
    b.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = ap.parse_args()
    for name in args.scenario or ["basic"]:
        try:
            fx = build(name, force=args.force)
        except FactoryError as exc:
            print(f"factory: {name}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"scenario": name, "dir": str(fx.dir),
                          "files": sorted(fx.files), **fx.manifest["timings"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

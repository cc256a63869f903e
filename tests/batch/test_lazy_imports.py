"""``import kvmfx`` and ``kvmfx --help`` stay quick: Dask, distributed, pyarrow, jinja2 and
plotly are imported only when a batch runs."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("dask", "distributed", "pyarrow", "jinja2", "plotly", "pandas")


def _imported_after(code: str) -> set[str]:
    probe = (f"{code}\nimport sys\n"
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return set(out.splitlines()[-1].split()) & set(HEAVY)


def test_importing_kvmfx_and_its_cli_imports_no_batch_dependency():
    assert _imported_after("import kvmfx, kvmfx.cli, kvmfx.batch, kvmfx.exporters, "
                           "kvmfx.report") == set()


def test_batch_help_imports_no_batch_dependency():
    code = ("from kvmfx.cli import main\n"
            "try:\n    main(['batch', '--help'])\nexcept SystemExit:\n    pass")
    assert _imported_after(code) == set()

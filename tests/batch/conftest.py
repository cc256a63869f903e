"""A fleet of real dumps (several kernels, every format, one corrupt copy), a small Dask
LocalCluster, and what ``kvmfx run`` gives for each dump alone."""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Dask's scratch space (worker directories, locks) in a directory of this run, removed at
# its end, for the clusters of these tests and of the kvmfx batch processes they start
_DASK_DIR = tempfile.mkdtemp(prefix="kvmfx-dask-")
os.environ["DASK_TEMPORARY_DIRECTORY"] = _DASK_DIR
atexit.register(shutil.rmtree, _DASK_DIR, ignore_errors=True)

pytest.importorskip("distributed")

from click.testing import CliRunner  # noqa: E402

from kvmfx.cli import main  # noqa: E402
from kvmfx.exporters import IDENTITY_FIELDS  # noqa: E402
from tests.factory import get_fixture  # noqa: E402

COMMANDS = ("psaux", "envars")
#: (scenario, dump) pairs: every format of Debian 12's kernel, and Debian 11's, 13's and
#: trixie-backports' kernels in other formats
FLEET = [("basic", "elf"), ("basic", "kdump-zlib"), ("basic", "lime"), ("basic", "raw"),
         ("basic", "flattened"), ("basic", "mdf-lzo"), ("basic", "mdf-zstd"),
         ("basic", "mdf-zlib-d31"), ("basic", "mdf-elf-d31"), ("trixie", "kdump-zlib"),
         ("trixie", "mdf-zlib"), ("bullseye", "elf"), ("bullseye", "mdf-lzo"),
         ("backports", "kdump-zlib")]


class Fleet:
    """The dumps of a test batch: a directory of links (read as a directory input), a
    manifest naming hosts, and one corrupt copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "dumps"
        self.dir.mkdir()
        manifest = []
        self.paths: list[str] = []
        for i, (scenario, key) in enumerate(FLEET):
            src = get_fixture(scenario).path(key)
            if i % 2 == 0:  # half found in the directory, half named in the manifest
                link = self.dir / f"{scenario}-{key}"
                link.symlink_to(src)
                self.paths.append(str(link))
            else:
                manifest.append({"path": str(src), "host": f"host-{scenario}-{key}"})
                self.paths.append(str(src))
        self.corrupt = root / "corrupt.core"
        with open(get_fixture("basic").path("elf"), "rb") as f:
            self.corrupt.write_bytes(f.read(1 << 20))  # headers and the first MiB only
        self.paths.append(str(self.corrupt))
        self.manifest = root / "fleet.json"
        self.manifest.write_text(json.dumps(manifest))
        self.hosts = {m["path"]: m["host"] for m in manifest}

    @property
    def inputs(self) -> list[str]:
        return [str(self.dir), str(self.manifest), str(self.corrupt)]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    yield Fleet(root)
    shutil.rmtree(root, ignore_errors=True)


def single_run(command: str, path: str, host: str | None = None
               ) -> tuple[int, list[dict[str, Any]], str]:
    """``kvmfx run COMMAND PATH --format jsonl [--host HOST]``: exit status, rows (the
    dump's identity in front), stderr."""
    result = CliRunner().invoke(main, ["run", command, path, "--format", "jsonl",
                                       *(["--host", host] if host else [])])
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, rows, result.stderr


@pytest.fixture(scope="session")
def reference(fleet: Fleet) -> dict[tuple[str, str], tuple[int, list[dict[str, Any]], str]]:
    """What ``kvmfx run`` gives for each dump of the fleet alone, per command (with the
    manifest's host name as ``--host``): the rows a batch writes for that dump."""
    return {(path, command): single_run(command, path, fleet.hosts.get(path))
            for path in fleet.paths for command in COMMANDS}


def strip_identity(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in IDENTITY_FIELDS}


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Any]:
    """A real Dask LocalCluster: two single-threaded worker processes under nannies."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR,
                           memory_limit="2GiB")
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture()
def outdir(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    assert not out.exists()
    return out


def env_without_pyc() -> dict[str, str]:
    return dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

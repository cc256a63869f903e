"""The fixture factory: real Linux crash dumps with the guest's own ground truth.

``get_fixture("basic")`` boots a Debian kernel package (downloaded with ``apt-get download``
and unpacked with ``dpkg-deb -x``, never installed) under QEMU (TCG) with a busybox initramfs
that starts known processes, records the guest's /proc view, and is then dumped over QMP in
every format QEMU writes; makedumpfile converts the ELF dump to its formats. Results are
cached under ``$KVMFX_FIXTURE_DIR`` (default ``~/.cache/kvmfx/fixtures``), keyed by the
factory's own sources, the scenario and the kernel package. See docs/fixtures.md.
"""

from __future__ import annotations

import base64
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.factory.scenarios import SCENARIOS, Scenario

HERE = Path(__file__).resolve().parent
#: Dump files a scenario can produce: name -> (format, producer).
ALL_DUMPS = {
    "elf": ("elf", "qemu dump-guest-memory"),
    "kdump-zlib": ("kdump-zlib", "qemu dump-guest-memory"),
    "kdump-lzo": ("kdump-lzo", "qemu dump-guest-memory"),
    "kdump-snappy": ("kdump-snappy", "qemu dump-guest-memory"),
    "raw": ("raw", "qemu pmemsave"),
    "mdf-zlib": ("kdump-zlib", "makedumpfile -c -d 0"),
    "mdf-lzo": ("kdump-lzo", "makedumpfile -l -d 0"),
    "mdf-zlib-d31": ("kdump-zlib", "makedumpfile -c -d 31 (excluded pages)"),
    "mdf-elf-d31": ("elf", "makedumpfile -E -d 31 (excluded pages, zero pages left out)"),
    "mdf-zstd": ("kdump-zstd", "Debian 13's makedumpfile -z -d 0"),
    "flattened": ("flattened", "makedumpfile -F -c -d 0"),
    "lime": ("lime", "kvmfx factory, from the ELF dump's RAM segments"),
}
BOOT_TIMEOUT = 300
#: added for a guest that runs Python (Scenario.python): kvmfx under TCG takes minutes
PYTHON_TIMEOUT = 1500


@dataclass(frozen=True)
class Arch:
    """How a guest of one architecture is built and booted (Scenario.arch)."""

    qemu: str
    #: QEMU arguments that pick the machine
    machine: tuple[str, ...]
    #: the kernel's console (its output, and init's, goes to console.log)
    console: str
    #: the guest's device for the ground-truth port (init.sh names the x86 one, ttyS1)
    gt_tty: str
    #: the C compiler for the static guest helper
    cc: str
    #: where RAM starts in the guest's physical address space (pmemsave, LiME)
    ram_base: int = 0
    #: busybox: None for this machine's own (busybox-static), else (release, package) to
    #: take from that release's package index (OTHER_RELEASES) and unpack
    busybox: tuple[str, str] | None = None
    #: shell lines for init.sh's ground truth (@ARCH@)
    truth: str = ""


#: aarch64 guests record their machine, page size (sysconf and the kernel's page size of a
#: mapping), the VA size the kernel runs with (kvmfx-helper vabits) and their dmesg
AARCH64_TRUTH = """uname -m > /gt/machine
kvmfx-helper pagesize > /gt/pagesize
kvmfx-helper vabits > /gt/vabits
grep -m1 KernelPageSize /proc/self/smaps > /gt/kernelpagesize
dmesg > /gt/dmesg
"""

ARCHES = {
    "x86_64": Arch("qemu-system-x86_64", (), "ttyS0", "/dev/ttyS1", "gcc"),
    # QEMU 7.2's virt machine has one PL011 UART (the second is the secure world's): the
    # ground truth goes to a 16550 on PCI (8250_pci is built into Debian's arm64 kernels),
    # the guest's ttyS0. RAM starts at 1 GiB.
    "aarch64": Arch("qemu-system-aarch64", ("-M", "virt"), "ttyAMA0", "/dev/ttyS0",
                    "aarch64-linux-gnu-gcc", ram_base=0x40000000,
                    busybox=("arm64", "busybox-static"), truth=AARCH64_TRUTH),
}


class FactoryError(RuntimeError):
    """A fixture could not be built; the message says which step and why."""


@dataclass
class Fixture:
    """A built fixture: its dump files, kernel files and the guest's ground truth."""

    name: str
    dir: Path
    files: dict[str, Path]
    manifest: dict[str, Any]
    truth: dict[str, Any] = field(repr=False)

    def path(self, key: str) -> Path:
        return self.files[key]

    @property
    def vmlinuz(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def config(self) -> Path:
        return self.dir / "config"

    def kallsyms(self) -> list[tuple[int, str, str]]:
        """The guest's full /proc/kallsyms: (address, type, name) for built-in symbols."""
        out = []
        with gzip.open(self.dir / "kallsyms.gz", "rt") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    out.append((int(parts[0], 16), parts[1], parts[2]))
        return out


def cache_root() -> Path:
    return Path(os.environ.get("KVMFX_FIXTURE_DIR") or
                Path.home() / ".cache" / "kvmfx" / "fixtures")


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, **kw)
    except FileNotFoundError as exc:
        raise FactoryError(f"{cmd[0]} is not installed (see tests/factory/apt-packages.txt)"
                           ) from exc
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise FactoryError(f"{' '.join(cmd[:3])} failed: {' | '.join(err)}") from exc


def ensure_tools() -> None:
    """Install the factory's Debian packages when they are missing and we are root."""
    wanted = [p.strip() for p in (HERE / "apt-packages.txt").read_text().splitlines()
              if p.strip() and not p.startswith("#")]
    missing = [p for p in wanted
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0:
        raise FactoryError(f"missing packages {missing}: install them (apt-get install "
                           f"{' '.join(missing)})")
    _run(["apt-get", "update", "-qq"])
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
         env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


# -- the kernel -------------------------------------------------------------------------
DEBIAN = "http://deb.debian.org/debian/"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security/"


@dataclass(frozen=True)
class Release:
    """Where another Debian release's kernel comes from (the machine's apt sources know only
    its own release): the package indexes to read, and which packages hold the kernel."""

    #: (mirror, suite): the index is ``{mirror}dists/{suite}/main/binary-{arch}/Packages.xz``
    #: and its packages' Filename is relative to the same mirror
    indexes: tuple[tuple[str, str], ...]
    #: the kernel releases (uname -r) taken from it, a regular expression; the newest
    #: in all its indexes is built
    kver: str
    #: the package holding vmlinuz
    image: str = "linux-image-{kver}-unsigned"
    #: further packages the kernel's files come from (config, modules)
    parts: tuple[str, ...] = ()
    #: the package with the debug vmlinux (DWARF) and, where the release ships it, the real
    #: System.map
    dbg: str = "linux-image-{kver}-dbg"
    #: the Debian architecture of the indexes (an arm64 kernel for an aarch64 guest)
    arch: str = "amd64"

    def image_pattern(self) -> str:
        return re.escape(self.image).replace(re.escape("{kver}"), f"(?P<kver>{self.kver})")


#: Kernels of other Debian releases, by scenario flavour; the first whose ``kver`` matches
#: a kernel release serves its -dbg package (debug_files). Newer suites split the image:
#: the backports kernel is linux-binary-unsigned (vmlinuz) + linux-base (config, a
#: placeholder System.map) + linux-modules, all under usr/lib/modules/KVER/.
OTHER_RELEASES = {
    "bullseye": Release(((DEBIAN_SECURITY, "bullseye-security"),), r"5\.10\.0-\d+-amd64"),
    "trixie": Release(((DEBIAN, "trixie"), (DEBIAN_SECURITY, "trixie-security")),
                      r"6\.12\.\d+\+deb13-amd64"),
    "backports": Release(((DEBIAN, "trixie-backports"),), r"\d+\.\d+\.\d+\+deb13-amd64",
                         image="linux-binary-unsigned-{kver}",
                         parts=("linux-base-{kver}", "linux-modules-{kver}")),
    # arm64 kernels for aarch64 guests (this machine's apt sources are amd64 only): Debian
    # 12's (4K pages) and Debian 13's 16K-page flavour
    "arm64": Release(((DEBIAN, "bookworm"), (DEBIAN_SECURITY, "bookworm-security")),
                     r"6\.1\.0-\d+-arm64", arch="arm64"),
    "arm64-16k": Release(((DEBIAN, "trixie"), (DEBIAN_SECURITY, "trixie-security")),
                         r"6\.12\.\d+\+deb13-arm64-16k", arch="arm64"),
}


def kernel_package(flavour: str = "") -> str:
    """The Debian kernel package of a flavour ("" the default amd64, "rt", "cloud"; or
    another release's kernel: OTHER_RELEASES)."""
    override = os.environ.get("KVMFX_KERNEL_PKG")
    if override and not flavour:
        return override
    if flavour in OTHER_RELEASES:
        return release_packages(flavour)[0]["Package"]
    meta = f"linux-image-{flavour}-amd64" if flavour else "linux-image-amd64"
    suffix = f"-{flavour}-amd64" if flavour else "-amd64"
    out = _run(["apt-cache", "depends", meta]).stdout.decode()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-") and line.endswith(suffix):
            return line.split()[1] + "-unsigned"
    raise FactoryError(f"cannot resolve the kernel package from {meta}")


_INDEXES: dict[str, dict[str, dict[str, str]]] = {}


def _index(release: str) -> dict[str, dict[str, str]]:
    """The packages of a release's package indexes: name -> fields as in the index
    (Package, Version, Filename, SHA256, Size), plus ``Mirror``; a later index (security
    updates) overrides an earlier one."""
    if release not in _INDEXES:
        import lzma
        import urllib.request

        packages: dict[str, dict[str, str]] = {}
        for mirror, suite in OTHER_RELEASES[release].indexes:
            url = f"{mirror}dists/{suite}/main/binary-{OTHER_RELEASES[release].arch}/Packages.xz"
            try:
                with urllib.request.urlopen(url, timeout=120) as r:  # noqa: S310 - Debian's
                    text = lzma.decompress(r.read()).decode("utf-8", "replace")
            except OSError as exc:
                raise FactoryError(f"cannot read the {suite} package index: {exc}") from None
            for para in text.split("\n\n"):
                fields = dict(line.split(": ", 1) for line in para.splitlines()
                              if ": " in line and not line.startswith(" "))
                if "Package" not in fields:
                    continue
                fields["Mirror"] = mirror
                packages[fields["Package"]] = fields
        _INDEXES[release] = packages
    return _INDEXES[release]


def _version_key(kver: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", kver))


def release_kver(release: str) -> str:
    """The kernel release (uname -r) of the newest kernel of ``release`` in its indexes."""
    pattern = OTHER_RELEASES[release].image_pattern()
    kvers = [m["kver"] for name in _index(release) if (m := re.fullmatch(pattern, name))]
    if not kvers:
        raise FactoryError(f"no kernel package matching {pattern} in the {release} indexes")
    return max(kvers, key=_version_key)


def release_packages(release: str) -> list[dict[str, str]]:
    """The index entries of every package the newest kernel of ``release`` comes from, the
    image package first."""
    rel, kver = OTHER_RELEASES[release], release_kver(release)
    index = _index(release)
    names = [p.format(kver=kver) for p in (rel.image, *rel.parts)]
    missing = [n for n in names if n not in index]
    if missing:
        raise FactoryError(f"{release}: {missing} not in its package indexes")
    return [index[n] for n in names]


def _download_deb(fields: dict[str, str], dest: Path) -> Path:
    """Download a package's .deb from its mirror into ``dest`` and check its SHA256."""
    import urllib.request

    target = dest / Path(fields["Filename"]).name
    tmp = target.with_suffix(".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(fields["Mirror"] + fields["Filename"],  # noqa: S310
                                    timeout=600) as r, open(tmp, "wb") as out:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FactoryError(f"cannot download {fields['Package']}: {exc}") from None
    if h.hexdigest() != fields["SHA256"]:
        tmp.unlink()
        raise FactoryError(f"{fields['Package']}: SHA256 differs from its package index")
    os.replace(tmp, target)
    return target


def kernel_dir(root: Path, flavour: str = "") -> Path:
    """Unpacked kernel package(s) (vmlinuz, config, modules) in ``root/``, downloaded once.
    Another release's packages are all unpacked into the same root and their .debs then
    deleted (the sizes are kept in ``debs.json``)."""
    pkg = kernel_package(flavour)
    kdir = root / "kernels" / pkg
    if (kdir / "done").exists():
        return kdir
    kdir.mkdir(parents=True, exist_ok=True)
    if flavour in OTHER_RELEASES:
        sizes = {}
        shutil.rmtree(kdir / "root", ignore_errors=True)
        for fields in release_packages(flavour):
            deb = _download_deb(fields, kdir)
            sizes[fields["Package"]] = deb.stat().st_size
            _run(["dpkg-deb", "-x", str(deb), str(kdir / "root")])
            deb.unlink()
        (kdir / "debs.json").write_text(json.dumps(sizes, indent=1))
        (kdir / "done").write_text(" ".join(sizes))
        return kdir
    debs = list(kdir.glob("*.deb"))
    if not debs:
        try:
            _run(["apt-get", "download", pkg], cwd=kdir)
        except FactoryError:
            _run(["apt-get", "update", "-qq"])
            _run(["apt-get", "download", pkg], cwd=kdir)
        debs = list(kdir.glob("*.deb"))
    _run(["dpkg-deb", "-x", str(debs[0]), str(kdir / "root")])
    (kdir / "done").write_text(debs[0].name)
    return kdir


def kernel_file(kroot: Path, name: str) -> Path:
    """``vmlinuz``, ``config`` or ``System.map`` of an unpacked kernel, in either layout:
    ``boot/NAME-KVER`` (up to Debian 13's image package) or ``usr/lib/modules/KVER/NAME``
    (the split packages; the unsigned vmlinuz is ``vmlinuz.unsigned`` there)."""
    for pattern in (f"boot/{name}-*", f"usr/lib/modules/*/{name}", f"usr/lib/modules/*/{name}.*",
                    f"lib/modules/*/{name}"):
        found = sorted(kroot.glob(pattern))
        if found:
            return found[0]
    raise FactoryError(f"the kernel package has no {name} (looked under boot/ and "
                       f"usr/lib/modules/)")


def module_bytes(kroot: Path, module: str) -> bytes | None:
    """A kernel module's bytes, decompressed (``.ko``, ``.ko.xz`` or ``.ko.zst``, under
    lib/modules or usr/lib/modules); None when the kernel has it built in."""
    for base in ("lib/modules", "usr/lib/modules"):
        for path in sorted(kroot.glob(f"{base}/*/kernel/{module}*")):
            data = path.read_bytes()
            if path.name.endswith(".xz"):
                import lzma
                return lzma.decompress(data)
            if path.name.endswith(".zst"):
                import zstandard
                return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
            return data
    for base in ("lib/modules", "usr/lib/modules"):
        for builtin in kroot.glob(f"{base}/*/modules.builtin"):
            if f"kernel/{module}\n" in builtin.read_text():
                return None
    raise FactoryError(f"kernel package lacks {module}")


def _release_of_kver(kver: str) -> str | None:
    """Which OTHER_RELEASES entry ships the -dbg package of kernel release ``kver``."""
    for release, rel in OTHER_RELEASES.items():
        if re.fullmatch(rel.kver, kver) and rel.dbg.format(kver=kver) in _index(release):
            return release
    return None


class _HashedStream(io.RawIOBase):
    """A download read once, front to back, hashing every byte; ``limit`` bounds the reads
    to one ar member at a time."""

    def __init__(self, response: Any) -> None:
        self.response, self.sha256, self.limit = response, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.limit)
        data = self.response.read(n) if n else b""
        self.sha256.update(data)
        self.limit -= len(data)
        buf[:len(data)] = data
        return len(data)

    def exact(self, n: int) -> bytes:
        self.limit = n
        data = b""
        while len(data) < n and (chunk := self.read(n - len(data))):
            data += chunk
        if len(data) < n:
            raise FactoryError("download ended early")
        return data

    def drain(self) -> None:
        """Read (and hash) the rest of the download without looking at it."""
        while chunk := self.response.read(1 << 20):
            self.sha256.update(chunk)


def _stream_extract(fields: dict[str, str], dest: Path, wanted: list[str]) -> None:
    """Extract the members named in ``wanted`` (paths as in the package) into ``dest``
    while the package downloads, without keeping the .deb. Decompression stops once every
    wanted file that the layout holds is out (a kernel's vmlinux and System.map come first
    in its -dbg package); the rest is only hashed, and the SHA256 checked against the
    index."""
    import lzma
    import urllib.request

    import zstandard

    names = {w.lstrip("./") for w in wanted}
    try:
        with urllib.request.urlopen(fields["Mirror"] + fields["Filename"],  # noqa: S310
                                    timeout=600) as r:
            raw = _HashedStream(r)
            if raw.exact(8) != b"!<arch>\n":
                raise FactoryError(f"{fields['Package']}: not a .deb")
            while True:
                hdr = raw.exact(60)
                member, size = hdr[:16].decode().strip().rstrip("/"), int(hdr[48:58])
                if member.startswith("data.tar"):
                    break
                raw.exact(size + size % 2)
            raw.limit = size
            buffered = io.BufferedReader(raw, 1 << 20)
            data: Any = buffered
            if member.endswith(".xz"):
                data = lzma.LZMAFile(buffered)  # noqa: SIM115 - closed with the download
            elif member.endswith(".zst"):
                data = zstandard.ZstdDecompressor().stream_reader(buffered)
            elif member.endswith(".gz"):
                data = gzip.GzipFile(fileobj=buffered)  # noqa: SIM115
            kinds = set()
            with tarfile.open(fileobj=data, mode="r|") as tar:
                for info in tar:
                    if info.isfile() and info.name.lstrip("./") in names:
                        src = tar.extractfile(info)
                        assert src is not None
                        with open(dest / Path(info.name).name, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                        kinds.add(Path(info.name).name.split("-", 1)[0])
                        if kinds == {"vmlinux", "System.map"}:
                            break
            raw.limit = 1 << 62
            raw.drain()
    except (OSError, tarfile.TarError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise FactoryError(f"cannot download {fields['Package']}: {exc}") from None
    if raw.sha256.hexdigest() != fields["SHA256"]:
        raise FactoryError(f"{fields['Package']}: SHA256 differs from its package index")


def debug_files(release: str, root: Path | None = None) -> tuple[Path, Path]:
    """The Debian debug vmlinux (DWARF) and real System.map of kernel ``release`` (uname
    -r): the ~1 GB ``-dbg`` package (from this machine's apt sources, or another release's
    package index: OTHER_RELEASES) is streamed once and only those two files are kept.
    Where no package ships the real System.map (the split packages' linux-base holds a
    placeholder), it is made from the vmlinux's symbol table as the kernel's own
    scripts/mksysmap does."""
    root = root or cache_root()
    vmlinux = root / "debug" / f"vmlinux-{release}"
    system_map = root / "debug" / f"System.map-{release}"
    if vmlinux.exists() and system_map.exists():
        return vmlinux, system_map
    vmlinux.parent.mkdir(parents=True, exist_ok=True)
    with open(vmlinux.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if vmlinux.exists() and system_map.exists():
            return vmlinux, system_map
        tmp = vmlinux.parent / "extract"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        other = _release_of_kver(release)
        try:
            if other is not None:
                fields = _index(other)[OTHER_RELEASES[other].dbg.format(kver=release)]
                _stream_extract(fields, tmp, [
                    f"./usr/lib/debug/boot/vmlinux-{release}",
                    f"./usr/lib/debug/boot/System.map-{release}",
                    f"./usr/lib/debug/lib/modules/{release}/vmlinux",
                    f"./usr/lib/debug/lib/modules/{release}/System.map",
                    f"./usr/lib/debug/usr/lib/modules/{release}/vmlinux",
                    f"./usr/lib/debug/usr/lib/modules/{release}/System.map"])
            else:
                _apt_extract_debug(release, tmp)
            found = {p.name.split("-", 1)[0]: p for p in tmp.rglob("*")
                     if p.is_file() and not p.is_symlink()}  # one layout links the other
            if "vmlinux" not in found:
                raise FactoryError(f"no vmlinux in the -dbg package of {release}")
            if "System.map" not in found:
                found["System.map"] = tmp / "System.map"
                _system_map_from_vmlinux(found["vmlinux"], found["System.map"])
            os.replace(found["System.map"], system_map)
            os.replace(found["vmlinux"], vmlinux)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return vmlinux, system_map


def _apt_extract_debug(release: str, tmp: Path) -> None:
    """The -dbg package of this machine's own release, with apt-get download."""
    pkg = f"linux-image-{release}-dbg"
    for stale in tmp.parent.glob("*.deb"):
        stale.unlink()
    try:
        _run(["apt-get", "download", pkg], cwd=tmp.parent)
    except FactoryError:
        _run(["apt-get", "update", "-qq"])
        _run(["apt-get", "download", pkg], cwd=tmp.parent)
    deb = next(tmp.parent.glob(f"{pkg}_*.deb"))
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    r = subprocess.run(["tar", "-x", "-C", str(tmp),
                        f"./usr/lib/debug/boot/vmlinux-{release}",
                        f"./usr/lib/debug/boot/System.map-{release}"], stdin=tar.stdout)
    tar.wait()
    deb.unlink()
    if r.returncode != 0 or tar.returncode != 0:
        raise FactoryError(f"could not extract the debug files from {pkg}")


def _system_map_from_vmlinux(vmlinux: Path, out: Path) -> None:
    """System.map from a vmlinux's symbol table, filtered as scripts/mksysmap does."""
    nm = _run(["nm", "-n", str(vmlinux)]).stdout.decode()
    keep = []
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[1] in "aUNw" or parts[2].startswith(
                ("__crc_", "__kstrtab", "__kstrtabns", ".L", "__efistub_", "__kvm_nvhe_")):
            continue
        if parts[2] in ("_SDA_BASE_", "_SDA2_BASE_") or "$" in parts[2]:
            continue
        keep.append(line)
    out.write_text("\n".join(keep) + "\n")


#: Debian 13's makedumpfile (1.7.6, built with zstd; Debian 12's 1.7.2 has no zstd, and no
#: Debian build has snappy) and the libraries it loads, run from the unpacked packages with
#: their own dynamic loader
NEW_MAKEDUMPFILE = ("trixie", ("makedumpfile", "libc6", "libzstd1", "liblzo2-2", "zlib1g",
                               "libelf1t64", "libdw1t64", "liblzma5", "libbz2-1.0"))


def new_makedumpfile(root: Path) -> list[str]:
    """The command that runs Debian 13's makedumpfile here (downloaded once, SHA256
    checked, unpacked under ``root/tools``; never installed)."""
    release, packages = NEW_MAKEDUMPFILE
    tdir = root / "tools" / f"makedumpfile-{release}"
    if not (tdir / "done").exists():
        shutil.rmtree(tdir, ignore_errors=True)
        tdir.mkdir(parents=True)
        index = _index(release)
        for name in packages:
            deb = _download_deb(index[name], tdir)
            _run(["dpkg-deb", "-x", str(deb), str(tdir / "root")])
            deb.unlink()
        (tdir / "done").write_text(" ".join(index[n]["Version"] for n in packages))
    lib = tdir / "root" / "usr" / "lib" / "x86_64-linux-gnu"
    return [str(lib / "ld-linux-x86-64.so.2"), "--library-path", str(lib),
            str(tdir / "root" / "usr" / "bin" / "makedumpfile")]


def foreign_busybox(root: Path, release: str, package: str) -> Path:
    """busybox from another architecture's busybox-static package (``release``'s package
    index, SHA256 checked, unpacked under ``root/tools``; never installed)."""
    fields = _index(release)[package]
    tdir = root / "tools" / f"{package}-{OTHER_RELEASES[release].arch}"
    busybox = tdir / "root" / "bin" / "busybox"
    if not (tdir / "done").exists():
        shutil.rmtree(tdir, ignore_errors=True)
        tdir.mkdir(parents=True)
        deb = _download_deb(fields, tdir)
        _run(["dpkg-deb", "-x", str(deb), str(tdir / "root")])
        deb.unlink()
        if not busybox.exists():
            raise FactoryError(f"{package} ({release}) has no bin/busybox")
        (tdir / "done").write_text(fields["Version"])
    return busybox


def debug_vmlinux(release: str, root: Path | None = None) -> Path:
    """The Debian debug vmlinux of ``release`` (see :func:`debug_files`)."""
    return debug_files(release, root)[0]


# -- the guest ----------------------------------------------------------------------------
def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio 'newc' archive (the initramfs format) of (path, mode, data) entries."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08X}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        out.write(hdr.encode() + nb)
        out.write(b"\0" * ((-out.tell()) % 4))
        out.write(data)
        out.write(b"\0" * ((-out.tell()) % 4))
    return out.getvalue()


#: what kvmfx imports at run time: itself, its plugins and profiles, the dependencies in
#: pyproject.toml and theirs
KVMFX_RUNTIME = ("kvmfx", "kvmfx_plugins", "kvmfx_profiles", "pluggy", "elftools", "construct",
                 "click", "rich", "markdown_it", "mdurl", "pygments", "platformdirs", "cramjam",
                 "zstandard", "lzallright")
#: standard-library parts kvmfx never needs (and the installed packages, copied one by one)
STDLIB_SKIP = {"test", "idlelib", "tkinter", "ensurepip", "lib2to3", "__pycache__",
               "site-packages", "dist-packages", "turtledemo"}
#: the guest's site directory (PYTHONPATH in guest/live.sh)
GUEST_SITE = "opt/kvmfx/site"


def _file_entry(path: Path, at: str | None = None) -> tuple[str, int, bytes]:
    """A regular file for the initramfs, at its own path (or ``at``), symlinks resolved."""
    real = path.resolve()
    return ((at or str(path)).lstrip("/"), 0o100000 | (real.stat().st_mode & 0o777),
            real.read_bytes())


def _shared_libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries and dynamic loader ``binaries`` load, as ldd names them."""
    libs: set[Path] = set()
    for b in binaries:
        r = subprocess.run(["ldd", str(b)], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if m:
                libs.add(Path(m.group(1)))
    return libs


def _copy_tree(src: Path, at: str, skip: set[str], sos: list[Path]
               ) -> list[tuple[str, int, bytes]]:
    """The files under ``src`` as entries under ``at``, leaving out directories named in
    ``skip``; extension modules (``*.so``) are also appended to ``sos``."""
    out = []
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if any(part in skip for part in rel.parts) or not f.is_file() or \
                f.name.startswith("_tkinter"):
            continue
        if f.name.endswith(".so"):
            sos.append(f)
        out.append(_file_entry(f, f"{at}/{rel}"))
    return out


def python_entries() -> list[tuple[str, int, bytes]]:
    """The factory's own Python for the guest: the interpreter and its shared libraries at
    their paths here (so it finds its prefix as here), the standard library without the
    parts listed in STDLIB_SKIP, and kvmfx with its run-time packages in GUEST_SITE; plus
    ``/bin/python3``. kvmfx registers its plugins through entry points, so GUEST_SITE gets
    a kvmfx dist-info with kvmfx's entry_points.txt as installed here (an sdist install or
    an editable one: either way the package directories are copied from where they are
    imported from), and the other packages' own dist-info directories."""
    import importlib.metadata
    import importlib.util
    import sys
    import sysconfig

    exe = Path(sys.executable).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    entries = [_file_entry(exe)]
    sos: list[Path] = []
    entries.append(("bin/python3", 0o120777, str(exe).encode()))
    entries += _copy_tree(stdlib, str(stdlib), STDLIB_SKIP | {
        f"config-{sys.version_info[0]}.{sys.version_info[1]}{sys.abiflags}-"
        f"{sys.implementation._multiarch}"}, sos)  # type: ignore[attr-defined]
    site: list[tuple[str, int, bytes]] = []
    distributions = importlib.metadata.packages_distributions()
    for name in KVMFX_RUNTIME:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise FactoryError(f"{name} is not importable: the live scenario packs it")
        if spec.submodule_search_locations:
            site += _copy_tree(Path(next(iter(spec.submodule_search_locations))),
                               f"{GUEST_SITE}/{name}", {"__pycache__"}, sos)
        else:
            site.append(_file_entry(Path(spec.origin), f"{GUEST_SITE}/{Path(spec.origin).name}"))
        for dist in distributions.get(name, []):
            path = getattr(importlib.metadata.distribution(dist), "_path", None)
            if dist != "kvmfx" and path is not None and Path(path).is_dir():
                site += _copy_tree(Path(path), f"{GUEST_SITE}/{Path(path).name}", set(), sos)
    # kvmfx's metadata as installed (an sdist install's dist-info before a stale egg-info
    # that the working directory may hold)
    kvmfx_dist = sorted(importlib.metadata.distributions(name="kvmfx"), key=lambda d: not str(
        getattr(d, "_path", "")).endswith(".dist-info"))[0]
    info = f"{GUEST_SITE}/kvmfx-{kvmfx_dist.version}.dist-info"
    site.append((f"{info}/METADATA", 0o100644, f"Metadata-Version: 2.1\nName: kvmfx\n"
                 f"Version: {kvmfx_dist.version}\n".encode()))
    site.append((f"{info}/entry_points.txt", 0o100644,
                 (kvmfx_dist.read_text("entry_points.txt") or "").encode()))
    entries += site
    # ldd of the interpreter and of every extension module packed (Tk's is left out: its
    # X11 libraries are not wanted)
    loaded = [exe, *(Path(src) for src in sos)]
    entries += [_file_entry(lib) for lib in sorted(_shared_libraries(loaded))]
    return entries


def _with_parents(entries: list[tuple[str, int, bytes]]) -> list[tuple[str, int, bytes]]:
    """The entries with every parent directory listed once, before its first file."""
    seen = {n for n, mode, _d in entries if mode & 0o170000 == 0o040000}
    out = []
    for name, mode, data in entries:
        parts = name.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in seen:
                seen.add(d)
                out.append((d, 0o40755, b""))
        out.append((name, mode, data))
    return out


#: modules every guest loads after its scenario's own (Scenario.modules), for lsmod and the
#: module tests: vfat needs fat (the dependency /proc/modules shows), nls_cp437 needs
#: nothing; all three are loadable modules on every kernel of the factory
GUEST_MODULES = ("fs/fat/fat.ko", "fs/fat/vfat.ko", "fs/nls/nls_cp437.ko")


def build_initramfs(scenario: Scenario, kroot: Path, work: Path, root: Path | None = None
                    ) -> Path:
    """The guest's initramfs in ``work`` (``root``: the cache, for another architecture's
    busybox; by default ``work``'s parent)."""
    arch = ARCHES[scenario.arch]
    helper = work / "kvmfx-helper"
    _run([arch.cc, "-static", "-O2", "-pthread", "-o", str(helper),
          str(HERE / "guest" / "kvmfx-helper.c")])
    if arch.busybox is None:
        busybox = shutil.which("busybox") or "/bin/busybox"
    else:
        busybox = str(foreign_busybox(root or work.parent, *arch.busybox))
    entries: list[tuple[str, int, bytes]] = []
    for d in ("bin", "proc", "sys", "dev", "lib", "lib/modules", "spec", "tmp", "usr",
              "usr/sbin"):
        entries.append((d, 0o40755, b""))
    entries.append(("bin/busybox", 0o100755, Path(busybox).read_bytes()))
    helper_bytes = helper.read_bytes()
    entries.append(("bin/kvmfx-helper", 0o100755, helper_bytes))
    entries.append(("bin/kvmfx-pause", 0o100755, helper_bytes))
    for order, mod in enumerate((*scenario.modules, *GUEST_MODULES)):
        data = module_bytes(kroot, mod)
        if data is None:
            continue  # built into this kernel
        # init loads them in name order: the number keeps dependencies first
        entries.append((f"lib/modules/{order:02d}-{Path(mod).name}", 0o100644, data))
    for i, proc in enumerate(scenario.procs):
        entries.append((f"spec/{i:04d}.argv", 0o100644,
                        b"".join(a.encode() + b"\0" for a in proc.argv)))
        entries.append((f"spec/{i:04d}.env", 0o100644,
                        b"".join(e.encode() + b"\0" for e in proc.env)))
        entries.append((f"spec/{i:04d}.cred", 0o100644, f"{proc.uid} {proc.gid}\n".encode()))
    live = ""
    if scenario.python:
        entries += python_entries()
        entries.append(("opt/kvmfx/live_api.py", 0o100644,
                        (HERE / "guest" / "live_api.py").read_bytes()))
        live = (HERE / "guest" / "live.sh").read_text()
    init = (HERE / "guest" / "init.sh").read_text().replace("@EXTRA@", scenario.extra) \
        .replace("@AFTER@", scenario.after).replace("@PROCS@", scenario.truth_glob) \
        .replace("@LIVE@", live).replace("@ARCH@", arch.truth)
    if arch.gt_tty != "/dev/ttyS1":  # init.sh and the scenarios' shell lines name x86's
        init = init.replace("/dev/ttyS1", arch.gt_tty)
    entries.append(("init", 0o100755, init.encode()))
    entries = _with_parents(entries)
    out = work / "initramfs.cpio.gz"
    out.write_bytes(gzip.compress(_newc(entries), 6))
    return out


class Qmp:
    """A minimal QMP client (JSON lines over a unix socket)."""

    def __init__(self, path: Path, timeout: float = 600) -> None:
        deadline = time.time() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(timeout)
                self.sock.connect(str(path))
                break
            except OSError:
                if time.time() > deadline:
                    raise FactoryError("QEMU's QMP socket did not come up") from None
                time.sleep(0.2)
        self.f = self.sock.makefile("rw")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name: str, **args: Any) -> Any:
        msg = {"execute": name, **({"arguments": args} if args else {})}
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise FactoryError(f"QMP closed during {name}")
            reply = json.loads(line)
            if "error" in reply:
                raise FactoryError(f"QMP {name}: {reply['error'].get('desc')}")
            if "return" in reply:
                return reply["return"]

    def close(self) -> None:
        self.sock.close()


def qemu_command(scenario: Scenario, vmlinuz: Path, initrd: Path, console: Path,
                 gt_port: Path, qmp_path: Path) -> list[str]:
    """QEMU's command line for a scenario's guest (TCG: KVM is never used)."""
    arch = ARCHES[scenario.arch]
    if scenario.arch == "x86_64":
        gt = ["-serial", f"file:{gt_port}"]
    else:  # the ground-truth port: a 16550 on PCI (see ARCHES)
        gt = ["-chardev", f"file,id=gt,path={gt_port}", "-device", "pci-serial,chardev=gt"]
    return [arch.qemu, *arch.machine, "-accel", "tcg", "-m", f"{scenario.ram_mb}M",
            "-smp", str(scenario.smp), "-cpu", scenario.cpu, "-kernel", str(vmlinuz),
            "-initrd", str(initrd), "-append", f"console={arch.console} panic=-1 quiet",
            "-nographic", "-no-reboot", "-device", "vmcoreinfo", "-monitor", "none",
            "-serial", f"file:{console}", *gt,
            "-qmp", f"unix:{qmp_path},server=on,wait=off"]


def boot_and_dump(scenario: Scenario, kroot: Path, initrd: Path, out: Path) -> float:
    vmlinuz = kernel_file(kroot, "vmlinuz")
    console, gt_port, qmp_path = out / "console.log", out / "groundtruth.b64", out / "qmp.sock"
    for p in (console, gt_port, qmp_path):
        p.unlink(missing_ok=True)
    cmd = qemu_command(scenario, vmlinuz, initrd, console, gt_port, qmp_path)
    if scenario.swap_mb:
        swap = out / "swap"
        with open(swap, "wb") as f:
            f.truncate(scenario.swap_mb << 20)
        cmd += ["-drive", f"file={swap},if=virtio,format=raw,cache=writethrough"]
    timeout = BOOT_TIMEOUT + (PYTHON_TIMEOUT if scenario.python else 0)
    t0 = time.time()
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while b"=== READY" not in (console.read_bytes() if console.exists() else b""):
            if qemu.poll() is not None:
                raise FactoryError(f"QEMU exited ({qemu.returncode}): "
                                   f"{qemu.stderr.read().decode(errors='replace')[-300:]}")
            if time.time() - t0 > timeout:
                tail = console.read_text(errors="replace")[-600:] if console.exists() else ""
                raise FactoryError(f"guest did not reach READY in {timeout}s; console "
                                   f"ends: {tail}")
            time.sleep(0.05)
        boot_s = time.time() - t0
        # stop at once: the guest's last values (load average) must still hold at the dump
        qmp = Qmp(qmp_path)
        qmp.cmd("stop")
        wanted = scenario.dumps or tuple(ALL_DUMPS)
        can = set(qmp.cmd("query-dump-guest-memory-capability")["formats"])
        for key in ("elf", "kdump-zlib", "kdump-lzo", "kdump-snappy"):
            if key in can and (key in wanted or key == "elf"):
                qmp.cmd("dump-guest-memory", paging=False, protocol=f"file:{out / key}",
                        format=key)
        if "raw" in wanted:
            qmp.cmd("pmemsave", val=ARCHES[scenario.arch].ram_base,
                    size=scenario.ram_mb << 20, filename=str(out / "raw"))
        qmp.cmd("quit")
        qmp.close()
        qemu.wait(60)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        qmp_path.unlink(missing_ok=True)
    return boot_s


# -- derived files --------------------------------------------------------------------------
def _elf_loads(path: Path) -> tuple[bytes, list[tuple[int, int, int, int]], bytes]:
    """(ELF header, [(paddr, filesz, offset, vaddr)], notes) of an ELF core."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        f.seek(phoff)
        phdrs = f.read(phentsize * phnum)
        loads, notes = [], b""
        for i in range(phnum):
            p_type, _fl, off, vaddr, paddr, filesz, _memsz, _al = struct.unpack_from(
                "<IIQQQQQQ", phdrs, i * phentsize)
            if p_type == 1:
                loads.append((paddr, filesz, off, vaddr))
            elif p_type == 4:
                f.seek(off)
                notes += f.read(filesz)
    return ehdr, loads, notes


def canonical_elf(src: Path, dst: Path) -> None:
    """The same core with program headers right after the ELF header (makedumpfile 1.7
    reads them there; QEMU 7 writes section headers first). Memory bytes are unchanged."""
    ehdr, loads, notes = _elf_loads(src)
    n = len(loads) + 1
    data_off = 64 + 56 * n + len(notes)
    data_off += (-data_off) % 4096
    hdr = bytearray(ehdr)
    struct.pack_into("<QQ", hdr, 32, 64, 0)          # e_phoff, e_shoff
    struct.pack_into("<HHHH", hdr, 54, 56, n, 64, 0)  # phentsize, phnum, shentsize, shnum
    struct.pack_into("<H", hdr, 62, 0)                # e_shstrndx
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, 64 + 56 * n, 0, 0, len(notes), len(notes), 0)
    off = data_off
    for paddr, filesz, _o, vaddr in loads:
        phdrs += struct.pack("<IIQQQQQQ", 1, 7, off, vaddr, paddr, filesz, filesz, 0)
        off += filesz
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        fo.write(bytes(hdr) + phdrs + notes)
        fo.write(b"\0" * (data_off - fo.tell()))
        for _paddr, filesz, o, _v in loads:
            fi.seek(o)
            left = filesz
            while left:
                chunk = fi.read(min(left, 1 << 24))
                fo.write(chunk)
                left -= len(chunk)


def lime_from_elf(src: Path, dst: Path, ram_bytes: int, ram_base: int = 0) -> None:
    """A LiME image (header per range, then the bytes) of the ELF dump's RAM segments:
    those inside [ram_base, ram_base + ram_bytes) (on x86 all RAM ranges start below
    ram_bytes; QEMU's aarch64 virt machine puts RAM at 1 GiB)."""
    _e, loads, _n = _elf_loads(src)
    end = ram_base + ram_bytes
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        for paddr, filesz, off, _v in loads:
            if paddr >= end or paddr < ram_base or filesz == 0:
                continue  # device memory (VGA, ROM) is not RAM: LiME captures RAM only
            size = min(filesz, end - paddr)
            fo.write(struct.pack("<IIQQQ", 0x4C694D45, 1, paddr, paddr + size - 1, 0))
            fi.seek(off)
            left = size
            while left:
                chunk = fi.read(min(left, 1 << 24))
                fo.write(chunk)
                left -= len(chunk)


#: why an aarch64 guest's dump gets no makedumpfile files (Scenario.arch)
FOREIGN_MAKEDUMPFILE = (
    "this machine's makedumpfile is Debian's amd64 build, and makedumpfile reads the dumps "
    "of the architecture it was compiled for only (x86_64): on an aarch64 dump it stops "
    "at 'check_release: Can't get the address of system_utsname'")


def makedumpfile_outputs(out: Path, wanted: tuple[str, ...], root: Path,
                         arch: str = "x86_64") -> tuple[dict[str, str], dict[str, str]]:
    """makedumpfile's files of the ELF dump. Returns (failed, warnings), each by output
    key: makedumpfile 1.7.2 warns on kernels newer than it knows (and may then classify
    pages wrongly at -d 31); when it fails outright on a kernel, that file is left out and
    the failure recorded rather than failing the whole fixture. Another architecture's
    dump is not handed to makedumpfile at all (FOREIGN_MAKEDUMPFILE)."""
    jobs = {"mdf-zlib": ["-c", "-d", "0"], "mdf-lzo": ["-l", "-d", "0"],
            "mdf-zlib-d31": ["-c", "-d", "31"], "mdf-elf-d31": ["-E", "-d", "31"],
            "flattened": ["-F", "-c", "-d", "0"],
            "mdf-zstd": ["-z", "-d", "0"]}
    failed: dict[str, str] = {}
    warnings: dict[str, str] = {}
    if not any(k in wanted for k in jobs):
        return failed, warnings
    if arch != "x86_64":
        return {k: FOREIGN_MAKEDUMPFILE for k in jobs if k in wanted}, warnings
    programs = {k: ["makedumpfile"] for k in jobs}
    if "mdf-zstd" in wanted:
        try:
            programs["mdf-zstd"] = new_makedumpfile(root)
        except FactoryError as exc:
            failed["mdf-zstd"] = f"Debian 13's makedumpfile: {exc}"
            wanted = tuple(k for k in wanted if k != "mdf-zstd")
    canon = out / "elf-canonical"
    canonical_elf(out / "elf", canon)
    try:
        for key, flags in jobs.items():
            if key not in wanted:
                continue
            (out / key).unlink(missing_ok=True)
            if "-F" in flags:  # the flattened stream goes to stdout
                with open(out / key, "wb") as f:
                    r = subprocess.run([*programs[key], *flags, str(canon)], stdout=f,
                                       stderr=subprocess.PIPE)
                log = r.stderr.decode(errors="replace")
            else:
                r = subprocess.run([*programs[key], *flags, str(canon), str(out / key)],
                                   capture_output=True)
                log = (r.stdout + r.stderr).decode(errors="replace")
            lines = [ln.strip() for ln in log.splitlines()
                     if ln.strip() and ("support" in ln.lower() or "warn" in ln.lower())]
            if lines:
                warnings[key] = " | ".join(lines)[:300]
            if r.returncode != 0:
                (out / key).unlink(missing_ok=True)
                tail = " | ".join(ln.strip() for ln in log.strip().splitlines()[-3:])
                failed[key] = f"makedumpfile {' '.join(flags)} exited {r.returncode}: {tail}"
    finally:
        canon.unlink(missing_ok=True)
    return failed, warnings


# -- ground truth ------------------------------------------------------------------------
def _split(raw: bytes) -> list[str]:
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return [b.decode("utf-8", "backslashreplace") for b in raw.split(b"\0")] if raw else []


def parse_ground_truth(b64: Path, out: Path) -> dict[str, Any]:
    text = b64.read_bytes()
    try:
        body = text.split(b"=== GT-BEGIN", 1)[1].split(b"=== GT-END", 1)[0]
    except IndexError:
        raise FactoryError("ground truth markers missing on the guest's second serial port"
                           ) from None
    tgz = base64.b64decode(b"".join(body.split()))
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                files[m.name] = f.read() if f else b""
    (out / "kallsyms.gz").write_bytes(gzip.compress(files["gt/kallsyms"]))
    swapped: dict[str, int] = {}
    if b"=== SWAPPED-BEGIN" in text:
        block = text.split(b"=== SWAPPED-BEGIN", 1)[1].split(b"=== SWAPPED-END", 1)[0]
        for line in block.decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].isdigit():
                swapped[parts[0]] = int(parts[2])  # "PID VmSwap: N kB"

    procs: dict[str, Any] = {}
    fds: dict[str, dict[str, dict[str, str]]] = {}
    for name, data in files.items():
        parts = name.split("/")
        if len(parts) == 4 and parts[1].isdigit() and parts[2] in ("fd", "fdinfo"):
            fds.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = _text(data)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        procs.setdefault(parts[1], {})[parts[2]] = data
    processes = {}
    for pid, f in procs.items():
        stat = f.get("stat", b"").decode(errors="surrogateescape")
        if not stat:
            continue  # exited while the guest looked
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        status = {}
        for line in f.get("status", b"").decode(errors="replace").splitlines():
            k, _, v = line.partition(":")
            status[k] = v.split()
        processes[pid] = {
            "pid": int(pid), "comm": comm, "state": rest[0], "ppid": int(rest[1]),
            "pgid": int(rest[2]), "sid": int(rest[3]), "tty_nr": int(rest[4]),
            "flags": int(rest[6]), "nthreads": int(rest[17]), "starttime": int(rest[19]),
            "uid": [int(x) for x in status.get("Uid", [])],
            "nspid": [int(x) for x in status.get("NSpid", [])],
            "gid": [int(x) for x in status.get("Gid", [])],
            "cmdline": _split(f.get("cmdline", b"")),
            "environ": _split(f.get("environ", b"")),
            "cmdline_b64": base64.b64encode(f.get("cmdline", b"")).decode(),
            "environ_b64": base64.b64encode(f.get("environ", b"")).decode(),
            "tasks": sorted(int(t) for t in f.get("tasks", b"").split()),
            # raw, as the guest's /proc printed them (kvmfx-helper record); a link the
            # guest could not read is None
            "fd": _fd_sorted(fds.get(pid, {}).get("fd", {})),
            "fdinfo": _fd_sorted(fds.get(pid, {}).get("fdinfo", {})),
            "maps": _text(f.get("maps", b"")),
            "exe": _text(f["exe"]) if "exe" in f else None,
            "cwd": _text(f["cwd"]) if "cwd" in f else None,
            "root": _text(f["root"]) if "root" in f else None,
            "status_raw": _text(f.get("status", b"")),
            "mnt_ns": _text(f["mnt_ns"]) if "mnt_ns" in f else None,
        }
    kallsyms: dict[str, str] = {}
    for line in files["gt/kallsyms"].decode().splitlines():
        a, _t, n = line.split()[:3]
        if n in ("linux_banner", "init_task", "_stext", "_text", "init_uts_ns", "avenrun",
                 "swapper_pg_dir", "init_top_pgt", "prb", "tk_core", "__start_BTF",
                 "__stop_BTF", "page_offset_base") and n not in kallsyms:
            kallsyms[n] = a
    # the load average as the guest read it right before READY (see guest/init.sh)
    loadavg = files["gt/loadavg"].decode().split()[:3]
    moved = False
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("=== LOADAVG "):
            *loadavg, flag = line.split()[2:6]
            moved = flag == "yes"
    # the guest's own counts (scenarios.COUNT_AFTER): processes and tasks at dump time
    counts = {}
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("=== COUNT "):
            _, _, what, n = line.split()[:4]
            counts[what] = int(n)
    btime = next(int(ln.split()[1]) for ln in files["gt/stat"].decode().splitlines()
                 if ln.startswith("btime "))
    cpuinfo = files["gt/cpuinfo"].decode()
    # kvmfx run inside the guest (guest/live.sh): per command, its output and exit status,
    # its own pid and the guest's pids just before and after it
    live: dict[str, dict[str, Any]] = {}
    for name, data in files.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[1] == "live":
            cmd, _, kind = parts[2].rpartition(".")
            live.setdefault(cmd, {})[kind] = data.decode("utf-8", "replace")
    for cmd, f in live.items():
        live[cmd] = {"stdout": f.get("out", ""), "stderr": f.get("err", ""),
                     "exit": int(f["rc"]), "pid": int(f["pid"]),
                     "pids_before": sorted(int(w.split("/")[2]) for w in f["before"].split()),
                     "pids_after": sorted(int(w.split("/")[2]) for w in f["after"].split()),
                     "seconds": round(float(f["uptime"].split()[1]) -
                                      float(f["uptime"].split()[0]), 2)}
    truth = {
        "live": live,
        "kernel": {"release": files["gt/osrelease"].decode().strip(),
                   "version": files["gt/version"].decode().strip(),
                   "hostname": files["gt/hostname"].decode().strip(),
                   "loadavg": loadavg, "loadavg_moved": moved,
                   "uptime": float(files["gt/uptime"].decode().split()[0]),
                   "btime": btime, "kallsyms": kallsyms,
                   "paging_levels": 5 if " la57" in cpuinfo else 4},
        "processes": processes,
        "swapped_kb": swapped,
    }
    truth.update(_planted_truth(files))
    if counts:  # (scenarios without COUNT_AFTER keep the truth they had)
        truth["counts"] = counts
    if "gt/machine" in files:  # a guest other than x86_64 (Arch.truth)
        _arch_truth(truth["kernel"], files, files["gt/kallsyms"].decode())
    return truth


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _fd_sorted(d: dict[str, str]) -> dict[str, str]:
    return dict(sorted(d.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else -1))


#: the /proc/net tables the guest records (truth["net"])
NET_TABLES = ("tcp", "tcp6", "udp", "udp6", "unix")


def _planted_truth(files: dict[str, bytes]) -> dict[str, Any]:
    """What the guest recorded once (kvmfx-helper record) about its modules, taint,
    network tables and mount namespaces, and the pids of its planted processes
    (guest/init.sh: "ROLE PID" lines)."""
    roles = {}
    for line in _text(files.get("gt/roles", b"")).splitlines():
        role, _, pid = line.partition(" ")
        if pid.strip().isdigit():
            roles[role] = int(pid)
    sections: dict[str, dict[str, str]] = {}
    mountinfo: dict[str, str] = {}
    for name, data in sorted(files.items()):
        parts = name.split("/")
        if len(parts) == 4 and parts[1] == "sections":
            sections.setdefault(parts[2], {})[parts[3]] = _text(data).strip()
        elif len(parts) == 3 and parts[1] == "mountinfo":
            mountinfo[f"mnt:[{parts[2]}]"] = _text(data)
    tainted = files.get("gt/tainted", b"").strip()
    return {
        "modules": _text(files.get("gt/modules", b"")),
        "module_sections": sections,
        "tainted": int(tainted) if tainted else None,
        "net": {t: _text(files[f"gt/net/{t}"]) if f"gt/net/{t}" in files else None
                for t in NET_TABLES},
        # a kernel without IPv6 has no tcp6/udp6 tables: the planted IPv6 sockets are then
        # left out (kvmfx-helper tcp_server, udp)
        "ipv6": "gt/net/tcp6" in files,
        "mountinfo": mountinfo,
        "roles": roles,
    }


#: the arm64 kernel's build settings kept in the ground truth (kernel.config)
AARCH64_CONFIG = ("CONFIG_ARM64_VA_BITS", "CONFIG_ARM64_PA_BITS", "CONFIG_PGTABLE_LEVELS",
                  "CONFIG_ARM64_4K_PAGES", "CONFIG_ARM64_16K_PAGES", "CONFIG_ARM64_64K_PAGES",
                  "CONFIG_ARM64_LPA2", "CONFIG_ARM64_PTR_AUTH", "CONFIG_RANDOMIZE_BASE",
                  "CONFIG_KALLSYMS_ALL")

#: arm64 symbols whose addresses the ground truth keeps besides the common ones
AARCH64_SYMBOLS = ("kimage_voffset", "memstart_addr", "vabits_actual", "idmap_pg_dir",
                   "init_pg_dir", "tramp_pg_dir", "_end")


def _arch_truth(kernel: dict[str, Any], files: dict[str, bytes], kallsyms: str) -> None:
    """What an aarch64 guest recorded about itself (AARCH64_TRUTH): machine, page size,
    the VA size it runs with, its CPU's features and its dmesg; paging levels follow from
    page size and VA size."""
    text = {k[3:]: v.decode(errors="replace").strip() for k, v in files.items()
            if k in ("gt/machine", "gt/pagesize", "gt/vabits", "gt/kernelpagesize",
                     "gt/dmesg", "gt/cpuinfo")}
    kernel["machine"] = text["machine"]
    kernel["page_size"] = int(text["pagesize"])
    kps = text.get("kernelpagesize", "").split()  # "KernelPageSize:  16 kB"
    kernel["kernel_page_size"] = int(kps[1]) * 1024 if len(kps) >= 2 else None
    kernel["va_bits"] = int(text["vabits"])
    shift = kernel["page_size"].bit_length() - 1
    # each level resolves PAGE_SHIFT - 3 bits (8-byte entries) above the page offset
    kernel["paging_levels"] = -(-(kernel["va_bits"] - shift) // (shift - 3))
    cpu: dict[str, str] = {}
    for line in text["cpuinfo"].splitlines():
        k, _, v = line.partition(":")
        cpu.setdefault(k.strip(), v.strip())
    kernel["cpu_features"] = cpu.get("Features", "").split()
    kernel["cpu"] = {k: cpu[k] for k in ("CPU implementer", "CPU architecture", "CPU variant",
                                         "CPU part", "CPU revision") if k in cpu}
    kernel["dmesg"] = text.get("dmesg", "")
    for line in kallsyms.splitlines():
        a, _t, n = line.split()[:3]
        if n in AARCH64_SYMBOLS and n not in kernel["kallsyms"]:
            kernel["kallsyms"][n] = a


def kernel_config(path: Path) -> dict[str, str]:
    """A kernel config file's settings (CONFIG_X=value)."""
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        k, eq, v = line.partition("=")
        if eq and k.startswith("CONFIG_"):
            out[k] = v
    return out


# -- orchestration -----------------------------------------------------------------------
#: what every fixture's guest is built from besides its scenario (whose repr covers
#: scenarios.py's part): this file (the build), the guest's programs, the host's packages.
#: scenarios.py and __main__.py are left out, so that adding or changing one scenario does
#: not invalidate the others' fixtures.
def _factory_sources() -> list[Path]:
    return [HERE / "__init__.py", HERE / "apt-packages.txt",
            *sorted(f for f in (HERE / "guest").rglob("*")
                    if f.is_file() and f.suffix in (".py", ".c", ".sh", ".txt"))]


def _factory_digest(scenario: Scenario, pkg: str) -> str:
    h = hashlib.sha256(repr(scenario).encode() + pkg.encode())
    for f in _factory_sources():
        h.update(f.relative_to(HERE).as_posix().encode() + b"\0" + f.read_bytes())
    if scenario.python:  # the guest runs kvmfx itself: its answers change with kvmfx's code
        import kvmfx
        import kvmfx_plugins

        for pkg_dir in (Path(kvmfx.__file__).parent, Path(kvmfx_plugins.__file__).parent):
            for f in sorted(pkg_dir.rglob("*.py")):
                h.update(f.relative_to(pkg_dir).as_posix().encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def build(name: str, root: Path | None = None, force: bool = False) -> Fixture:
    scenario = SCENARIOS[name]
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_tools()
        kdir = kernel_dir(root, scenario.flavour)
        kroot = kdir / "root"
        out = root / f"{name}-{_factory_digest(scenario, kdir.name)}"
        if (out / "manifest.json").exists() and not force:
            return load(out)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        t0 = time.time()
        initrd = build_initramfs(scenario, kroot, out, root)
        boot_s = boot_and_dump(scenario, kroot, initrd, out)
        t_dump = time.time()
        truth = parse_ground_truth(out / "groundtruth.b64", out)
        if scenario.arch != "x86_64":  # what the kernel was built for, beside what it runs
            config = kernel_config(kernel_file(kroot, "config"))
            truth["kernel"]["config"] = {k: config.get(k) for k in AARCH64_CONFIG}
        wanted = scenario.dumps or tuple(ALL_DUMPS)
        failed, warnings = makedumpfile_outputs(out, wanted, root, scenario.arch)
        if "lime" in wanted:
            lime_from_elf(out / "elf", out / "lime", scenario.ram_mb << 20,
                          ARCHES[scenario.arch].ram_base)
        shutil.copy(kernel_file(kroot, "vmlinuz"), out / "vmlinuz")
        shutil.copy(kernel_file(kroot, "config"), out / "config")
        (out / "groundtruth.json").write_text(json.dumps(truth, indent=1))
        files = {}
        for key in (*ALL_DUMPS, "swap"):
            p = out / key
            if p.exists():
                os.chmod(p, 0o444)  # evidence: read-only
                fmt, producer = ALL_DUMPS.get(key, ("linux-swap", "the guest's mkswap/swapon"))
                files[key] = {"path": key, "format": fmt, "producer": producer,
                              "size": p.stat().st_size, "sha256": _sha256(p)}
        manifest = {"scenario": name, "kernel_package": kdir.name,
                    "release": truth["kernel"]["release"], "ram_mb": scenario.ram_mb,
                    "cpu": scenario.cpu, "files": files,
                    # wanted but not made, and why (QEMU builds without lzo/snappy;
                    # makedumpfile failing on a kernel it does not know)
                    "not_produced": {k: failed.get(k, f"{ALL_DUMPS[k][1]} cannot write it "
                                                      "here") for k in wanted
                                     if k not in files},
                    "warnings": warnings,
                    "timings": {"boot_s": round(boot_s, 1),
                                "dumps_s": round(t_dump - t0 - boot_s, 1),
                                "convert_s": round(time.time() - t_dump, 1)}}
        if scenario.arch != "x86_64":  # (x86 manifests are as they were)
            manifest["machine"] = scenario.arch
            manifest["qemu_command"] = qemu_command(
                scenario, kernel_file(kroot, "vmlinuz"), out / "initramfs.cpio.gz",
                out / "console.log", out / "groundtruth.b64", out / "qmp.sock")
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
        for stale in root.glob(f"{name}-*"):  # "arm64-*" also matches arm64-16k-DIGEST
            if stale != out and stale.is_dir() and re.fullmatch(
                    re.escape(name) + "-[0-9a-f]{16}", stale.name):
                shutil.rmtree(stale, ignore_errors=True)
        return load(out)


def load(out: Path) -> Fixture:
    manifest = json.loads((out / "manifest.json").read_text())
    truth = json.loads((out / "groundtruth.json").read_text())
    files = {k: out / v["path"] for k, v in manifest["files"].items()}
    return Fixture(manifest["scenario"], out, files, manifest, truth)


_LOADED: dict[str, Fixture] = {}


def get_fixture(name: str) -> Fixture:
    """The fixture ``name`` (see scenarios.py), built on first use and cached on disk."""
    if name not in _LOADED:
        _LOADED[name] = build(name)
    return _LOADED[name]

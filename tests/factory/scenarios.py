"""Fixture scenarios: guest RAM, CPU model, and the processes the guest starts.

Each process is started by the guest helper with exactly this argv (argv[0] included),
environment and credentials; the guest's own /proc is recorded as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Proc:
    argv: tuple[str, ...]
    env: tuple[str, ...] = ("PATH=/bin",)
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    ram_mb: int
    cpu: str = "qemu64"
    smp: int = 1
    procs: tuple[Proc, ...] = field(default_factory=tuple)
    #: extra shell lines for the guest's init (before the ground truth is taken)
    extra: str = ""
    #: which dump files to produce (subset of factory.ALL_DUMPS); None for all
    dumps: tuple[str, ...] | None = None
    #: shell lines run after the ground truth is taken (before the dump)
    after: str = ""
    #: a swap disk of this many MiB (virtio), kept beside the dumps as ``swap``
    swap_mb: int = 0
    #: which /proc entries the guest records in full (a glob); benchmarks at scale record
    #: only the scenario's named processes' parent (init) to keep the guest fast
    truth_glob: str = "/proc/[0-9]*"
    #: kernel modules to load, in order (paths under lib/modules/*/kernel/)
    modules: tuple[str, ...] = ("drivers/firmware/qemu_fw_cfg.ko",)
    #: Debian kernel flavour ("" the default amd64 kernel; "rt": PREEMPT_RT, "cloud"), or
    #: another Debian release's kernel ("bullseye", "trixie", "backports":
    #: factory.OTHER_RELEASES)
    flavour: str = ""
    #: pack the Python the factory runs under, its standard library and kvmfx with its
    #: run-time dependencies, and run kvmfx inside the guest on its own live memory
    #: (/proc/kcore, /dev/mem) after the ground truth is taken (guest/live.sh)
    python: bool = False
    #: the guest's architecture (uname -m): "x86_64", or "aarch64" (factory.ARCHES: the
    #: QEMU binary, machine, serial ports, compiler and busybox of each)
    arch: str = "x86_64"


def distinctive() -> tuple[Proc, ...]:
    """Processes whose argv/env exercise every corner of the readers."""
    return (
        Proc(("sleep", "300", "a", "b c"), ("KVMFX_MARK=1", "PATH=/bin")),
        Proc(("kvmfx-unicode", "ünïcødé ✓", "日本語", "emoji 🦊"),
             ("KVMFX_UNICODE=ğüş", "LANG=C.UTF-8")),
        Proc(("kvmfx-empty", "", "x", "", ""), ("EMPTY=", "KVMFX_EMPTY_ARGS=1")),
        Proc(("kvmfx-200", *[f"arg{i:03d}" for i in range(200)]), ("KVMFX_COUNT=200",)),
        Proc(("kvmfx-1000", *[f"a{i}" for i in range(1000)]), ("KVMFX_COUNT=1000",)),
        Proc(("kvmfx-long", "L" * 5000, "tail"), ("KVMFX_LONG=" + "e" * 3000,)),
        Proc(("kvmfx-user", "--uid", "1000"), ("USER=kvmfx", "HOME=/home/kvmfx"), uid=1000,
             gid=1000),
        Proc(("/usr/sbin/sshd", "-D", "-o", "PermitRootLogin=no"),
             ("KVMFX_SECRET=s3cr3t value", "SSH_AUTH_SOCK=/tmp/agent.1")),
        Proc(("kvmfx-noenv",), ()),
    )


def many(n: int) -> tuple[Proc, ...]:
    return tuple(Proc((f"kvmfx-worker-{i}", f"--id={i}", "x" * (i % 50)),
                      (f"KVMFX_WORKER={i}", f"KVMFX_PAD={'p' * (i % 97)}"),
                      uid=i % 3 * 1000, gid=i % 3 * 1000)
                 for i in range(n))


#: after the ground truth, with shell builtins only (nothing forks from here to the dump):
#: the guest's own count of processes (/proc/PID: thread-group leaders, kernel threads
#: included) and of tasks (/proc/PID/task/TID: every thread), for exact assertions at scale
COUNT_AFTER = """
set -- /proc/[0-9]*
echo "=== COUNT processes $#" > /dev/ttyS1
set -- /proc/[0-9]*/task/[0-9]*
echo "=== COUNT tasks $#" > /dev/ttyS1
"""


def spawn_many(n: int, started: int = len(distinctive())) -> str:
    """init lines: start ``n`` sleepers (kvmfx-helper spawnmany: kvmfx-scale-I, --slot=I,
    KVMFX_SCALE=I) and wait (at most 5 minutes) until every one has exec'd kvmfx-pause, as
    the ``started`` processes of the scenario's own list have."""
    return f"""echo 65536 > /proc/sys/kernel/threads-max
kvmfx-helper spawnmany {n}
i=0
while [ "$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^kvmfx-pause$')" -lt {n + started} ]
do
    [ $i -ge 300 ] && break
    sleep 1
    i=$((i + 1))
done
sleep 2"""


VIRTIO_BLK = ("drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko",
              "drivers/virtio/virtio_pci_modern_dev.ko",
              "drivers/virtio/virtio_pci_legacy_dev.ko", "drivers/virtio/virtio_pci.ko",
              "drivers/block/virtio_blk.ko")

SWAP_SETUP = """
mkswap /dev/vda > /dev/null && swapon /dev/vda
"""
#: after the ground truth: push the spawned processes' argv/env pages out to swap
SWAP_AFTER = """
pids=$(cat /spec/*.pid | head -n 6)
kvmfx-helper pageout $pids > /tmp/pageout
sync
sleep 3
echo "=== SWAPPED-BEGIN" > /dev/ttyS1
for p in $pids; do echo "$p $(grep VmSwap /proc/$p/status)" > /dev/ttyS1; done
echo "=== SWAPPED-END" > /dev/ttyS1
"""

#: every format the factory makes here (QEMU 7.2 writes neither kdump-lzo nor kdump-snappy)
MATRIX_DUMPS = ("elf", "kdump-zlib", "raw", "mdf-zlib", "mdf-lzo", "mdf-zlib-d31", "mdf-elf-d31",
                "flattened", "lime")

#: aarch64 guests: QEMU's own dumps and the LiME image; makedumpfile's formats are wanted
#: too, and recorded under not_produced (this machine's makedumpfile reads x86_64 dumps only)
ARM64_DUMPS = ("elf", "kdump-zlib", "raw", "lime", "mdf-zlib", "mdf-lzo", "mdf-zlib-d31",
               "mdf-elf-d31", "flattened")

SCENARIOS = {
    "basic": Scenario("basic", 256, "qemu64", procs=distinctive()),
    "la57": Scenario("la57", 256, "max", procs=distinctive(),
                     dumps=("elf", "kdump-zlib", "raw")),
    "many": Scenario("many", 512, "qemu64", procs=distinctive() + many(300),
                     dumps=("elf", "kdump-zlib", "raw")),
    "swap": Scenario("swap", 256, "qemu64", procs=distinctive(), extra=SWAP_SETUP,
                     after=SWAP_AFTER, swap_mb=64,
                     modules=("drivers/firmware/qemu_fw_cfg.ko", *VIRTIO_BLK),
                     dumps=("elf", "kdump-zlib")),
    # for benchmarks (python -m bench --suite scale): ~100, ~1,000, ~5,000 and ~20,000
    # processes (kvmfx-helper spawnmany beside the basic set; only init's /proc is recorded
    # past 100: reading /proc for each would take the TCG guest minutes), with the guest's
    # own counts of processes and tasks (truth["counts"])
    "scale-100": Scenario("scale-100", 256, "qemu64", procs=distinctive(),
                          extra=spawn_many(40), after=COUNT_AFTER, dumps=("elf",)),
    "scale-1k": Scenario("scale-1k", 512, "qemu64", procs=distinctive(),
                         extra=spawn_many(940), after=COUNT_AFTER, truth_glob="/proc/1",
                         dumps=("elf",)),
    "scale": Scenario("scale", 2048, "qemu64", procs=distinctive(),
                      extra=spawn_many(5000), after=COUNT_AFTER, truth_glob="/proc/1",
                      dumps=("elf", "kdump-zlib")),
    # 20,000 processes: ~1.6 GiB of kernel stacks, page tables and task structures
    "scale-20k": Scenario("scale-20k", 3072, "qemu64", procs=distinctive(),
                          extra=spawn_many(19940), after=COUNT_AFTER, truth_glob="/proc/1",
                          dumps=("elf",)),
    # another kernel build: PREEMPT_RT changes task_struct, locks and the scheduler
    "rt": Scenario("rt", 256, "qemu64", procs=distinctive(), flavour="rt",
                   dumps=("elf", "kdump-zlib", "mdf-lzo", "lime")),
    # another kernel release: Debian 11's Linux 5.10 (task_struct `state`, older kallsyms)
    "bullseye": Scenario("bullseye", 256, "qemu64", procs=distinctive(), flavour="bullseye",
                         dumps=MATRIX_DUMPS),
    # Debian 13's Linux 6.12 (rss_stat an array of percpu counters, maple-tree VMAs) and
    # the newest kernel in trixie-backports (split packages under usr/lib/modules/KVER/,
    # the newest kallsyms layout): every format, for the kernel matrix
    "trixie": Scenario("trixie", 256, "qemu64", procs=distinctive(), flavour="trixie",
                       dumps=MATRIX_DUMPS),
    "backports": Scenario("backports", 256, "qemu64", procs=distinctive(),
                          flavour="backports", dumps=MATRIX_DUMPS),
    # kvmfx run inside the guest on the guest's own /proc/kcore and /dev/mem (room for
    # Python and kvmfx in the initramfs); the answers travel back with the ground truth
    "live": Scenario("live", 1024, "qemu64", procs=distinctive(), dumps=("elf",),
                     python=True),
    # for benchmarks: RAM above the 32-bit PCI hole, so memory is split in two ranges
    "big": Scenario("big", 4096, "qemu64", procs=distinctive(),
                    dumps=("elf", "kdump-zlib", "mdf-lzo")),
    # aarch64 guests (QEMU's virt machine, TCG, -cpu max): Debian 12's arm64 kernel with
    # 4K pages, and Debian 13's arm64-16k flavour (16K pages, 52-bit VA with LPA2)
    "arm64": Scenario("arm64", 256, "max", procs=distinctive(), flavour="arm64",
                      arch="aarch64", dumps=ARM64_DUMPS),
    "arm64-16k": Scenario("arm64-16k", 256, "max", procs=distinctive(), flavour="arm64-16k",
                          arch="aarch64", dumps=ARM64_DUMPS),
}

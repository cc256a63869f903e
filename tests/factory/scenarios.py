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


#: a real ext4 filesystem (4 MiB, 1 KiB blocks, a 1 MiB journal, metadata_csum, 64bit,
#: flex_bg: what e2fsprogs 1.47 makes by default), xz-compressed (CRC32 check, which
#: busybox's unxz reads) and base64-encoded: busybox's mke2fs makes ext2 only. Made with
#: E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -b 1024 -N 16 -m 5 -L kvmfx-ext4
#: -U 6b766d66-7800-4000-8000-000000000004
#: -E hash_seed=6b766d66-7800-4000-8000-000000000005,lazy_itable_init=0,nodiscard
#: -O ^resize_inode (on a 4 MiB file); xz -9e --check=crc32; base64 -w 92
EXT4_IMAGE = (
    "/Td6WFoAAAFpIt42AgAhARwAAAAQz1jM//9HAvtdAABv/f//o7d/UqZcwDeQRVSl23qy6M+VFYMqe5ey7MtuRIwo1fr5\n"
    "/ShtMOgd4CrklUnPHQbhk1uTmx6zB1pRgm6mMZeoXTH+VgxX9zOg/uRyfeGDbX6lEbDySAkmCFt6SCw3kwl+rVRp0Zjp\n"
    "m9EZY0ADyOP4Y0Z2QX6GStI5yDZYo4GAXjWi+qPfodXfPniZqE+tWZYcs4QwS6B04S1cfmw6zjs6wHzB6QawtrorHBTa\n"
    "SQQjYlpGvDJa1P4Fr4oDPrTZkD/TKJEEs3LEkVXB805SQ5STkRlRDWi6Hw9j1uI3WJWM6V8uJm0JUX5qeW0PRchihSnj\n"
    "6G0xr8zRCpVq2Salcp0nl0Z0JyMi8NafVWUuiHHtJC56lm1lJIzRLGeCTa08vSOwbH1aVbJIzIGZ9fxwrYv52ZdThRns\n"
    "t1h+IDtSP78WQpMwcC5FoLlqyeizxfozlrWgRJHPaHOkAvwjAnJg9nGA22iJYeLMil9bD7z8IFHtmnHDnadukedEByX6\n"
    "4J2WULG/+V333qQ6DRCz5+0Ct/OZtxPGyvD0uBaEbECvtes3cAJLYmSdMEJxLDLB8WZbsuaib9QogQH63hIU1hRZUpuq\n"
    "v6tivD47zW/JcaRMo+w7r2V4aTdUAdxOFy9bzgr0AeIPkO9jZGWNvza3+US2YO2mcN5OXncomgqYVG7Xi8qIP18x+8hP\n"
    "6BM9t+OAuiOo+AaL2fV/1g0bP313q4MUIW7R1XrzPhRTYnasWeTlWwUI+cfarfz7Uit0zR5bIEL53VM9+ClkCTuAyyps\n"
    "37U78MS9Ll+qDz5LZkKQEw7/EJP4cXhZ+AvN/5UoRg+p/Hze+5owLlbAj4Xzg4HAZcQlU/j1kTYxBaWw7m/BcE1HDNGR\n"
    "EaqtYB26zrEnGFxZhulmUli+6XasWeTlWwUI+cfarfz7Uit0zR5bIEL53VM9+ClkCTuAyyps37U78MS9Ll+qDz5LZkKQ\n"
    "Ew7/EJP4cXhZ+AvN/5UoRg+p/Hze+5owLlbAj4Xzg2IpaDmf/xABKwDsc1On/b6ufDEan7eNMW5wnqcjX+woy4XRlZiK\n"
    "fiqR8id19xnABphNmP3Yr9WQD8QlU/j1kTYxBaWw7m/BcE1HDNGREaqtYB26zrEnGFxZhulmUli+6XasWeTlWwUI+cfa\n"
    "rfz7Uit0zR5bIEL53VM9+ClkCTuAyyps37U78MS9Ll+qDz5LZkKQEw7/EJP4cXhZ+AvN/5UoRg+p/Hze+5owLlbAj4Xz\n"
    "g4HAZcQlU/j1kTYxBaWw7m/BcE1HDNGREaqtYB26zrEnGFxZhulmUli+6XasWeTlWwUI+cfarfz7Uit0zR5bIEL53VM9\n"
    "+ClkCTuAyyps37U78MS9Ll+qDz5LZkKQEw7/EJP4cXhZ+AvN/5UoRg+p/Hze+5owLlbAj4Xzg4HAZcQlUQ8/soABpgAF\n"
    "AD+G5HEAAABIqwSIAAHPCICAgAKhZ3rKPjANiwIAAAAAAVla\n"
)

#: init lines (before the ground truth): the filesystems a real system mounts, each with
#: options its ->show_options prints, each guarded by /proc/filesystems so a kernel
#: without one skips it: cgroup2 (and a named cgroup v1 hierarchy), debugfs, tracefs,
#: securityfs, bpf, mqueue, configfs, pstore, hugetlbfs, a real ext4 on a loop device and
#: a vfat (busybox mkdosfs) on another. ext4 is mounted no_prefetch_block_bitmaps (and made
#: with its inode tables zeroed): else its ext4lazyinit thread, in the ground truth, would
#: exit before the dump; Linux 5.10 knows no such option (it prefetches only when asked)
MORE_MOUNTS = f"""
has() {{ grep -qw "$1" /proc/filesystems; }}
has cgroup2 && mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
has cgroup && mkdir -p /mnt/cgroup1 && \\
    mount -t cgroup -o none,name=kvmfx,xattr cgroup /mnt/cgroup1
has debugfs && mount -t debugfs -o mode=750,gid=1000 debugfs /sys/kernel/debug
has tracefs && mount -t tracefs -o mode=750 tracefs /sys/kernel/tracing
has securityfs && mount -t securityfs securityfs /sys/kernel/security
has bpf && mount -t bpf -o mode=700 bpf /sys/fs/bpf
has mqueue && mkdir -p /dev/mqueue && mount -t mqueue mqueue /dev/mqueue
has configfs && mount -t configfs configfs /sys/kernel/config
has pstore && mount -t pstore -o kmsg_bytes=8192 pstore /sys/fs/pstore
has hugetlbfs && mkdir -p /dev/hugepages && \\
    mount -t hugetlbfs -o mode=1770,gid=1000 hugetlbfs /dev/hugepages
mkdir -p /mnt/ext4 /mnt/vfat
base64 -d > /tmp/ext4.img.xz << 'KVMFX_EXT4'
{"".join(EXT4_IMAGE)}KVMFX_EXT4
unxz /tmp/ext4.img.xz
opts=noatime,errors=remount-ro,commit=7,resgid=1000,inode_readahead_blks=16,data_err=abort
opts=$opts,nodelalloc
has ext4 && {{ mount -t ext4 -o loop,$opts,no_prefetch_block_bitmaps /tmp/ext4.img \\
    /mnt/ext4 2> /dev/null || mount -t ext4 -o loop,$opts /tmp/ext4.img /mnt/ext4; }}
dd if=/dev/zero of=/tmp/vfat.img bs=1024 count=2048 2> /dev/null
mkdosfs -n KVMFX-VFAT -i 6b766d66 /tmp/vfat.img > /dev/null
has vfat && mount -t vfat -o loop,uid=1000,gid=1000,umask=022,codepage=437,\\
shortname=winnt /tmp/vfat.img /mnt/vfat
"""

#: the modules MORE_MOUNTS needs beside the default ones (loop, ext4 and what it needs,
#: configfs, nls_ascii for vfat's default iocharset): crc16 moved to lib/crc/ in Linux
#: 6.15, where crc32c became a library function (before, ext4 asks the crypto API for
#: crc32c at mount time)
MOUNT_MODULES = ("drivers/firmware/qemu_fw_cfg.ko", "drivers/block/loop.ko", "lib/crc16.ko",
                 "fs/mbcache.ko", "fs/jbd2/jbd2.ko", "crypto/crc32c_generic.ko",
                 "fs/ext4/ext4.ko", "fs/configfs/configfs.ko", "fs/nls/nls_ascii.ko")
MOUNT_MODULES_7 = ("drivers/firmware/qemu_fw_cfg.ko", "drivers/block/loop.ko",
                   "lib/crc/crc16.ko", "fs/mbcache.ko", "fs/jbd2/jbd2.ko", "fs/ext4/ext4.ko",
                   "fs/configfs/configfs.ko", "fs/nls/nls_ascii.ko")

SCENARIOS = {
    "basic": Scenario("basic", 256, "qemu64", procs=distinctive(), extra=MORE_MOUNTS,
                      modules=MOUNT_MODULES),
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
                         dumps=MATRIX_DUMPS, extra=MORE_MOUNTS, modules=MOUNT_MODULES),
    # Debian 13's Linux 6.12 (rss_stat an array of percpu counters, maple-tree VMAs) and
    # the newest kernel in trixie-backports (split packages under usr/lib/modules/KVER/,
    # the newest kallsyms layout): every format, for the kernel matrix
    "trixie": Scenario("trixie", 256, "qemu64", procs=distinctive(), flavour="trixie",
                       dumps=MATRIX_DUMPS, extra=MORE_MOUNTS, modules=MOUNT_MODULES),
    "backports": Scenario("backports", 256, "qemu64", procs=distinctive(),
                          flavour="backports", dumps=MATRIX_DUMPS, extra=MORE_MOUNTS,
                          modules=MOUNT_MODULES_7),
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
                      arch="aarch64", dumps=ARM64_DUMPS, extra=MORE_MOUNTS,
                      modules=MOUNT_MODULES),
    "arm64-16k": Scenario("arm64-16k", 256, "max", procs=distinctive(), flavour="arm64-16k",
                          arch="aarch64", dumps=ARM64_DUMPS, extra=MORE_MOUNTS,
                          modules=MOUNT_MODULES),
}

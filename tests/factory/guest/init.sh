#!/bin/busybox sh
# kvmfx fixture guest: start the scenario's processes, record the guest's own view of them
# (the ground truth) on the second serial port, then wait to be dumped.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /lib/modules/*.ko; do insmod "$m"; done
echo 0 > /proc/sys/kernel/kptr_restrict
echo 64 > /proc/sys/kernel/tainted
hostname kvmfx-guest
ip link set lo up 2>/dev/null || ifconfig lo up
mkdir -p /mnt/kvmfx /mnt/kvmfx-ns /jail/bin
mount -t tmpfs -o size=4m,mode=1777,nosuid,nodev kvmfx-tmp /mnt/kvmfx

# processes with exact argv / environment / credentials
for spec in /spec/*.argv; do
    n=${spec%.argv}
    read uid gid < "$n.cred"
    kvmfx-helper spawn "$uid" "$gid" "$n.argv" "$n.env" > "$n.pid"
done
# a process that rewrote its argv, short and long (past the argv area) titles
kvmfx-helper retitle short original-arg-1 original-arg-2 &
KVMFX_LONG_ENV=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx kvmfx-helper retitle long &
kvmfx-helper threads 3 &
kvmfx-helper zombie &
setsid kvmfx-helper threads 1 &
# planted processes for files, sockets, mounts and privileges (kvmfx-helper.c): each is
# set up and asleep when its pid is printed; "ROLE PID" lines go to /gt/roles
mkdir /gt
for role in files tcp_server tcp_client udp unix caps mntns; do
    echo "$role $(kvmfx-helper $role)" >> /gt/roles
done
cp /bin/kvmfx-helper /tmp/kvmfx-deleted-exe
echo "deleted_exe $(/tmp/kvmfx-deleted-exe deleted_exe)" >> /gt/roles
rm /tmp/kvmfx-deleted-exe
cp /bin/kvmfx-helper /jail/bin/kvmfx-helper
echo "kvmfx: data in the jail" > /jail/data
echo "chroot $(kvmfx-helper chroot /jail)" >> /gt/roles
@EXTRA@
sleep 2
kvmfx-helper threads 1 &
last=$!

# ground truth: what the guest itself says (kvmfx-helper record: every process's /proc
# files and links, the network tables, modules, taint and mounts, with no fork per file)
kvmfx-helper record /gt '@PROCS@'
cat /proc/kallsyms > /gt/kallsyms
for f in version loadavg uptime stat cpuinfo; do cat /proc/$f > /gt/$f; done
cat /proc/sys/kernel/osrelease > /gt/osrelease
cat /proc/sys/kernel/hostname > /gt/hostname
@ARCH@
@LIVE@
cd / && tar -czf /gt.tgz gt
echo "=== GT-BEGIN" > /dev/ttyS1
base64 /gt.tgz > /dev/ttyS1
echo "=== GT-END" > /dev/ttyS1
@AFTER@
# The load average moves every 5 s (LOAD_FREQ). Spin (builtins only: no forks) until it
# moves, so the host's dump, taken at once after READY, falls well inside the same 5 s
# period; the value recorded here is then the one in the dump. Give up after 12 s.
read l1 l2 l3 rest < /proc/loadavg
first="$l1 $l2 $l3"
read up0 rest < /proc/uptime
moved=no
while :; do
    read l1 l2 l3 rest < /proc/loadavg
    if [ "$l1 $l2 $l3" != "$first" ]; then moved=yes; break; fi
    read up rest < /proc/uptime
    [ "${up%.*}" -ge $(( ${up0%.*} + 12 )) ] && break
done
echo "=== LOADAVG $l1 $l2 $l3 $moved" > /dev/ttyS1
echo "=== READY"
wait $last

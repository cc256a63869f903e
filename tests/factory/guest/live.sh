# kvmfx inside the guest, on the guest's own live memory (scenarios with python=True;
# included in init.sh after the ground truth is taken, before it is sent). Each command's
# stdout, stderr, exit status, pid, the /proc pids just before and after it and the
# uptime it took go to /gt/live/NAME.* and travel back in the ground-truth tar.
export PYTHONPATH=/opt/kvmfx/site KVMFX_PROFILE_DIR=/tmp/profiles HOME=/root LANG=C.UTF-8
mkdir -p /gt/live /tmp/profiles /root
live() {
    n=$1; shift
    echo /proc/[0-9]* > /gt/live/$n.before
    read t0 rest < /proc/uptime
    # the shell records its pid, then becomes the command: the pid kvmfx will also list
    sh -c 'echo $$ > "$0"; exec "$@"' /gt/live/$n.pid "$@" > /gt/live/$n.out 2> /gt/live/$n.err
    echo $? > /gt/live/$n.rc
    read t1 rest < /proc/uptime
    echo /proc/[0-9]* > /gt/live/$n.after
    echo "$t0 $t1" > /gt/live/$n.uptime
    echo "live: $n exit $(cat /gt/live/$n.rc) ($t0 -> $t1 s)"
}
live pslist python3 -m kvmfx.cli run pslist /proc/kcore --format json
live psaux python3 -m kvmfx.cli run psaux /proc/kcore --format json
live info python3 -m kvmfx.cli info /proc/kcore --format json
live api python3 /opt/kvmfx/live_api.py
live devmem python3 -m kvmfx.cli info /dev/mem --format json

/*
 * kvmfx fixture helper, run inside the test guest (static binary).
 *
 * Invoked as kvmfx-pause (by execve path) it just sleeps forever, whatever its argv: the
 * target of processes started with an exact argv and environment.
 * Invoked as kvmfx-helper:
 *   spawn UID GID ARGVFILE ENVFILE   fork; child sets gid/uid and execve()s /bin/kvmfx-pause
 *                                    with the NUL-separated argv and environment read from
 *                                    the files (argv[0] included). Prints the child's pid.
 *   retitle short|long               overwrite this process's argv area with a title
 *                                    (setproctitle style): "short" fits in the argv area,
 *                                    "long" runs past it into the environment; then sleep.
 *   threads N                        start N-1 extra threads, then sleep.
 *   zombie                           fork a child that exits at once and never reap it.
 *   spawnmany N                      start N sleepers (kvmfx-pause) named kvmfx-scale-I with
 *                                    an argument and an environment variable each.
 *   pageout PID...                   push each process's [stack] mapping (where argv and
 *                                    the environment live) out to swap with
 *                                    process_madvise(MADV_PAGEOUT); prints "PID result".
 *   pagesize                         print sysconf(_SC_PAGESIZE) (what getconf PAGESIZE says).
 *   vabits                           print the user address space's size in bits: the
 *                                    highest B for which a page maps at 1 << (B - 1)
 *                                    (MAP_FIXED_NOREPLACE). On arm64 TASK_SIZE is
 *                                    1 << vabits_actual, so this is the VA size the kernel
 *                                    runs with (52 with LPA2, else 48 or 47).
 *
 * Planted processes for the forensic commands (files, sockets, mounts, privileges). Each
 * forks; the child sets itself up, points stdin/stdout/stderr at /dev/null, tells the
 * parent it is ready and sleeps; the parent prints the child's pid and exits (so the child
 * is init's, and nothing it holds changes from then on). Their fds are numbered from 3 in
 * the order below.
 *   files                            3: /tmp/kvmfx-read O_RDONLY at offset 4097 (10,000
 *                                    bytes), 4: /tmp/kvmfx-append O_WRONLY|O_APPEND (63
 *                                    bytes written), 5: /tmp/kvmfx-deleted O_RDWR, unlinked,
 *                                    6/7: a pipe's read and write ends, 8: /mnt/kvmfx/file
 *                                    O_RDWR on init's tmpfs; /tmp/kvmfx-read mapped private
 *                                    read-only and /tmp/kvmfx-deleted shared read-write.
 *   deleted_exe                      sleep (init runs it from a copy it deletes).
 *   chroot DIR                       chroot(DIR), then exec DIR/bin/kvmfx-helper jailed,
 *                                    which holds /data open (fd 3) and sleeps.
 *   tcp_server                       3: listen on 127.0.0.1:4444, 4: on [::1]:4446
 *                                    (IPV6_V6ONLY); ready; then 5: accept one connection
 *                                    on 4444 and send it one byte.
 *   tcp_client                       3: connect to 127.0.0.1:4444, read the server's byte.
 *   udp                              3: bound to 0.0.0.0:5353, 4: [::]:5354 (IPV6_V6ONLY).
 *   unix                             3: stream socket listening on /tmp/kvmfx.sock, 4: a
 *                                    datagram socket bound to the abstract @kvmfx-abstract,
 *                                    5/6: a stream socketpair.
 *   caps                             groups 2000 2001, gid 1000/1001/1002 and uid
 *                                    1000/1001/1002 (real/effective/saved) with
 *                                    PR_SET_KEEPCAPS; permitted, effective and inheritable
 *                                    CAP_NET_BIND_SERVICE|CAP_NET_RAW, both ambient;
 *                                    no_new_privs; an allow-all seccomp filter (mode 2).
 *   mntns                            unshare(CLONE_NEWNS), mount a tmpfs kvmfx-ns on
 *                                    /mnt/kvmfx-ns (size=1m,mode=700, nosuid,noexec) seen
 *                                    only there, 3: /mnt/kvmfx-ns/inside O_RDWR.
 * IPv6 parts are left out where the kernel has no IPv6 (socket() fails EAFNOSUPPORT).
 *
 *   record DIR GLOB                  the ground truth, without a fork per file: for every
 *                                    /proc/PID matching GLOB but its own, DIR/PID/{stat,
 *                                    status,cmdline,environ,comm,maps} copied, tasks (the
 *                                    task ids), exe, cwd, root and mnt_ns (the links'
 *                                    text; absent when unreadable), fd/N (each fd link's
 *                                    text), fdinfo/N; once: DIR/net/{tcp,tcp6,udp,udp6,
 *                                    unix}, DIR/modules, DIR/tainted,
 *                                    DIR/sections/MODULE/SECTION (/sys/module/MODULE/sections),
 *                                    DIR/mountinfo/INODE: the mountinfo of the first
 *                                    process recorded in each mount namespace whose root
 *                                    is "/" (INODE from "mnt:[INODE]").
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void sleep_forever(void) {
    for (;;)
        pause();
}

static char **read_vector(const char *path, size_t *count) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror(path); exit(2); }
    struct stat st;
    fstat(fd, &st);
    char *buf = malloc(st.st_size + 1);
    ssize_t n = read(fd, buf, st.st_size);
    close(fd);
    if (n != st.st_size) { perror("read"); exit(2); }
    buf[n] = 0;
    size_t items = 0;
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == 0) items++;
    char **vec = calloc(items + 1, sizeof(char *));
    size_t k = 0;
    char *p = buf;
    while (k < items) {
        vec[k++] = p;
        p += strlen(p) + 1;
    }
    vec[k] = NULL;
    *count = items;
    return vec;
}

static void *thread_main(void *arg) {
    (void)arg;
    sleep_forever();
    return NULL;
}

/* -- planted processes ------------------------------------------------------------------ */
#define READY_FD 99

static void die(const char *what) {
    perror(what);
    _exit(2);
}

/* Fork; the parent waits for the child's "ready" byte, prints the child's pid and exits
 * (1 if the child died first). Returns in the child, whose fds but 0-2 are closed and
 * whose ready pipe is READY_FD. */
static void role_begin(void) {
    int p[2];
    if (pipe(p) != 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid > 0) {
        char c;
        close(p[1]);
        ssize_t n = read(p[0], &c, 1);
        if (n != 1) {
            int st;
            waitpid(pid, &st, 0);
            fprintf(stderr, "kvmfx-helper: the planted process %d failed\n", (int)pid);
            exit(1);
        }
        printf("%d\n", (int)pid);
        exit(0);
    }
    if (dup2(p[1], READY_FD) < 0) die("dup2");
    for (int fd = 3; fd < 1024; fd++)
        if (fd != READY_FD) close(fd);
}

static void null_stdio(void) {
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0) die("/dev/null");
    for (int i = 0; i < 3; i++) dup2(fd, i);
    if (fd > 2) close(fd);
}

/* Tell the parent this process is set up, then sleep for good. */
static void role_ready(int devnull) {
    if (devnull) null_stdio();
    if (write(READY_FD, "k", 1) != 1) _exit(2);
    close(READY_FD);
    sleep_forever();
}

static int open_at(const char *path, int flags, int want) {
    int fd = open(path, flags, 0644);
    if (fd < 0) die(path);
    if (fd != want) { fprintf(stderr, "%s: fd %d, not %d\n", path, fd, want); _exit(2); }
    return fd;
}

static void write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) die("write");
        p += n;
        len -= n;
    }
}

static void role_files(void) {
    role_begin();
    char block[10000];
    for (size_t i = 0; i < sizeof block; i++) block[i] = "kvmfx-read\n"[i % 11];
    int fd = open_at("/tmp/kvmfx-read", O_WRONLY | O_CREAT | O_TRUNC, 3);
    write_all(fd, block, sizeof block);
    close(fd);
    fd = open_at("/tmp/kvmfx-read", O_RDONLY, 3);
    if (lseek(fd, 4097, SEEK_SET) != 4097) die("lseek");
    int app = open_at("/tmp/kvmfx-append", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 4);
    for (int i = 0; i < 3; i++) write_all(app, "kvmfx: appended line\n", 21);
    int del = open_at("/tmp/kvmfx-deleted", O_RDWR | O_CREAT | O_TRUNC, 5);
    char page[4096];
    memset(page, 'D', sizeof page);
    write_all(del, page, sizeof page);
    if (unlink("/tmp/kvmfx-deleted") != 0) die("unlink");
    int pp[2];
    if (pipe(pp) != 0 || pp[0] != 6 || pp[1] != 7) die("pipe");
    write_all(pp[1], "kvmfx pipe\n", 11); /* left unread in the pipe */
    int tmp = open_at("/mnt/kvmfx/file", O_RDWR | O_CREAT | O_TRUNC, 8);
    write_all(tmp, "kvmfx on tmpfs\n", 15);
    if (mmap(NULL, sizeof block, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED) die("mmap");
    char *shared = mmap(NULL, sizeof page, PROT_READ | PROT_WRITE, MAP_SHARED, del, 0);
    if (shared == MAP_FAILED) die("mmap");
    shared[0] = 'd';
    role_ready(1);
}

static void role_chroot(const char *dir) {
    role_begin();
    null_stdio(); /* the jail has no /dev */
    if (chroot(dir) != 0) die("chroot");
    if (chdir("/") != 0) die("chdir");
    execl("/bin/kvmfx-helper", "kvmfx-helper", "jailed", (char *)NULL);
    die("execl");
}

static void role_jailed(void) {
    open_at("/data", O_RDONLY, 3);
    role_ready(0);
}

static int inet_socket(int family, int type, int port, const char *addr, int want) {
    int fd = socket(family, type, 0);
    if (fd < 0 && family == AF_INET6 && errno == EAFNOSUPPORT)
        return -1; /* a kernel without IPv6 */
    if (fd < 0) die("socket");
    if (fd != want) { fprintf(stderr, "socket: fd %d, not %d\n", fd, want); _exit(2); }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        inet_pton(AF_INET, addr, &sa.sin_addr);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
    } else {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        inet_pton(AF_INET6, addr, &sa.sin6_addr);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind6");
    }
    if (type == SOCK_STREAM && listen(fd, 8) != 0) die("listen");
    return fd;
}

static void role_tcp_server(void) {
    role_begin();
    int l4 = inet_socket(AF_INET, SOCK_STREAM, 4444, "127.0.0.1", 3);
    int l6 = inet_socket(AF_INET6, SOCK_STREAM, 4446, "::1", 4);
    if (l6 < 0) {  /* keep the accepted connection at fd 5 */
        if (dup2(open("/dev/null", O_RDONLY), 4) != 4) die("dup2");
    }
    null_stdio();
    if (write(READY_FD, "k", 1) != 1) _exit(2);
    close(READY_FD);
    int c = accept(l4, NULL, NULL);
    if (c < 0) _exit(2);
    if (l6 < 0) close(4);
    if (write(c, "k", 1) != 1) _exit(2);
    sleep_forever();
}

static void role_tcp_client(void) {
    role_begin();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd != 3) die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(4444)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("connect");
    char c;
    if (read(fd, &c, 1) != 1) die("read"); /* the server has accepted */
    role_ready(1);
}

static void role_udp(void) {
    role_begin();
    inet_socket(AF_INET, SOCK_DGRAM, 5353, "0.0.0.0", 3);
    inet_socket(AF_INET6, SOCK_DGRAM, 5354, "::", 4);
    role_ready(1);
}

static void role_unix(void) {
    role_begin();
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd != 3) die("socket");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, "/tmp/kvmfx.sock");
    unlink(sa.sun_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
    if (listen(fd, 8) != 0) die("listen");
    int ab = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (ab != 4) die("socket");
    struct sockaddr_un an = {.sun_family = AF_UNIX};
    static const char name[] = "kvmfx-abstract";
    memcpy(an.sun_path + 1, name, sizeof name - 1); /* sun_path[0] == 0: abstract */
    socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + sizeof name - 1;
    if (bind(ab, (struct sockaddr *)&an, len) != 0) die("bind abstract");
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0 || sp[0] != 5 || sp[1] != 6)
        die("socketpair");
    role_ready(1);
}

static void role_caps(void) {
    role_begin();
    null_stdio(); /* before the uid changes (and /dev/null is there to open) */
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) die("PR_SET_KEEPCAPS");
    gid_t groups[] = {2000, 2001};
    if (setgroups(2, groups) != 0) die("setgroups");
    if (setresgid(1000, 1001, 1002) != 0) die("setresgid");
    if (setresuid(1000, 1001, 1002) != 0) die("setresuid");
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    unsigned caps = (1u << CAP_NET_BIND_SERVICE) | (1u << CAP_NET_RAW);
    data[0].permitted = data[0].effective = data[0].inheritable = caps;
    if (syscall(SYS_capset, &hdr, data) != 0) die("capset");
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0 ||
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0) != 0)
        die("PR_CAP_AMBIENT_RAISE");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
    struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 1, .filter = allow};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) die("seccomp");
    role_ready(0);
}

static void role_mntns(void) {
    role_begin();
    if (unshare(CLONE_NEWNS) != 0) die("unshare");
    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL); /* nothing leaks back to init's */
    if (mount("kvmfx-ns", "/mnt/kvmfx-ns", "tmpfs", MS_NOSUID | MS_NOEXEC,
              "size=1m,mode=700") != 0)
        die("mount");
    int fd = open_at("/mnt/kvmfx-ns/inside", O_RDWR | O_CREAT | O_TRUNC, 3);
    write_all(fd, "kvmfx in its own mount namespace\n", 33);
    role_ready(1);
}

/* -- the ground truth ---------------------------------------------------------------- */
/* The whole of a file (/proc files report no size); NULL if it cannot be opened. */
static char *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n == cap) buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += r;
    }
    close(fd);
    *len = n;
    return buf;
}

static void put(const char *path, const char *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror(path); return; }
    write_all(fd, data, len);
    close(fd);
}

static void copy(const char *src, const char *dst) {
    size_t len;
    char *data = slurp(src, &len);
    if (!data) return;
    put(dst, data, len);
    free(data);
}

/* a link's text into dst; returns 1 if it was readable */
static int copy_link(const char *src, const char *dst, char *out, size_t outlen) {
    char buf[4096];
    ssize_t n = readlink(src, buf, sizeof buf);
    if (n < 0) return 0;
    put(dst, buf, n);
    if (out) {
        size_t k = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
        memcpy(out, buf, k);
        out[k] = 0;
    }
    return 1;
}

static void record(const char *dir, const char *pattern) {
    char src[1024], dst[1024];
    glob_t g;
    char seen_ns[64][64];
    int nseen = 0;
    snprintf(dst, sizeof dst, "%s/mountinfo", dir);
    mkdir(dst, 0755);
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            const char *pid = strrchr(g.gl_pathv[i], '/') + 1;
            if (atoi(pid) == getpid()) continue;
            const char *d = g.gl_pathv[i];
            snprintf(dst, sizeof dst, "%s/%s", dir, pid);
            mkdir(dst, 0755);
            static const char *files[] = {"stat", "status", "cmdline", "environ", "comm",
                                          "maps"};
            for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
                snprintf(src, sizeof src, "%s/%s", d, files[f]);
                snprintf(dst, sizeof dst, "%s/%s/%s", dir, pid, files[f]);
                copy(src, dst);
            }
            /* the task ids, one a line (as ls wrote them) */
            snprintf(src, sizeof src, "%s/task", d);
            DIR *td = opendir(src);
            char *tasks = NULL;
            size_t tlen = 0;
            FILE *tf = open_memstream(&tasks, &tlen);
            if (td) {
                struct dirent *e;
                while ((e = readdir(td)))
                    if (e->d_name[0] != '.') fprintf(tf, "%s\n", e->d_name);
                closedir(td);
            }
            fclose(tf);
            snprintf(dst, sizeof dst, "%s/%s/tasks", dir, pid);
            put(dst, tasks, tlen);
            free(tasks);
            char root[4096] = "", ns[64] = "";
            static const char *links[][2] = {{"exe", "exe"}, {"cwd", "cwd"},
                                             {"root", "root"}, {"ns/mnt", "mnt_ns"}};
            for (int l = 0; l < 4; l++) {
                snprintf(src, sizeof src, "%s/%s", d, links[l][0]);
                snprintf(dst, sizeof dst, "%s/%s/%s", dir, pid, links[l][1]);
                copy_link(src, dst, l == 2 ? root : l == 3 ? ns : NULL,
                          l == 2 ? sizeof root : sizeof ns);
            }
            /* one mountinfo per mount namespace, from a process whose root is "/" */
            const char *ino = strchr(ns, '[');
            if (ino && strcmp(root, "/") == 0) {
                int known = 0;
                for (int k = 0; k < nseen; k++) known |= strcmp(seen_ns[k], ns) == 0;
                if (!known && nseen < 64) {
                    strcpy(seen_ns[nseen++], ns);
                    snprintf(src, sizeof src, "%s/mountinfo", d);
                    snprintf(dst, sizeof dst, "%s/mountinfo/%.*s", dir,
                             (int)strcspn(ino + 1, "]"), ino + 1);
                    copy(src, dst);
                }
            }
            static const char *fdirs[] = {"fd", "fdinfo"};
            for (int k = 0; k < 2; k++) {
                snprintf(dst, sizeof dst, "%s/%s/%s", dir, pid, fdirs[k]);
                mkdir(dst, 0755);
            }
            snprintf(src, sizeof src, "%s/fd", d);
            DIR *fdd = opendir(src);
            if (fdd) {
                struct dirent *e;
                while ((e = readdir(fdd))) {
                    if (e->d_name[0] == '.') continue;
                    snprintf(src, sizeof src, "%s/fd/%s", d, e->d_name);
                    snprintf(dst, sizeof dst, "%s/%s/fd/%s", dir, pid, e->d_name);
                    copy_link(src, dst, NULL, 0);
                    snprintf(src, sizeof src, "%s/fdinfo/%s", d, e->d_name);
                    snprintf(dst, sizeof dst, "%s/%s/fdinfo/%s", dir, pid, e->d_name);
                    copy(src, dst);
                }
                closedir(fdd);
            }
        }
        globfree(&g);
    }
    snprintf(dst, sizeof dst, "%s/net", dir);
    mkdir(dst, 0755);
    static const char *nets[] = {"tcp", "tcp6", "udp", "udp6", "unix"};
    for (int k = 0; k < 5; k++) {
        snprintf(src, sizeof src, "/proc/net/%s", nets[k]);
        snprintf(dst, sizeof dst, "%s/net/%s", dir, nets[k]);
        copy(src, dst);
    }
    snprintf(dst, sizeof dst, "%s/modules", dir);
    copy("/proc/modules", dst);
    snprintf(dst, sizeof dst, "%s/tainted", dir);
    copy("/proc/sys/kernel/tainted", dst);
    snprintf(dst, sizeof dst, "%s/sections", dir);
    mkdir(dst, 0755);
    DIR *md = opendir("/sys/module");
    if (md) {
        struct dirent *m;
        while ((m = readdir(md))) {
            if (m->d_name[0] == '.') continue;
            snprintf(src, sizeof src, "/sys/module/%s/sections", m->d_name);
            DIR *sd = opendir(src);
            if (!sd) continue; /* built in: no sections */
            snprintf(dst, sizeof dst, "%s/sections/%s", dir, m->d_name);
            mkdir(dst, 0755);
            struct dirent *e;
            while ((e = readdir(sd))) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                snprintf(src, sizeof src, "/sys/module/%s/sections/%s", m->d_name, e->d_name);
                snprintf(dst, sizeof dst, "%s/sections/%s/%s", dir, m->d_name, e->d_name);
                copy(src, dst);
            }
            closedir(sd);
        }
        closedir(md);
    }
}

int main(int argc, char **argv) {
    const char *execfn = (const char *)getauxval(AT_EXECFN);
    const char *base = execfn ? strrchr(execfn, '/') : NULL;
    base = base ? base + 1 : execfn;
    if (base && strcmp(base, "kvmfx-pause") == 0)
        sleep_forever();
    if (argc >= 6 && strcmp(argv[1], "spawn") == 0) {
        size_t na, ne;
        char **av = read_vector(argv[4], &na);
        char **ev = read_vector(argv[5], &ne);
        pid_t pid = fork();
        if (pid == 0) {
            int gid = atoi(argv[3]), uid = atoi(argv[2]);
            if (gid && setgid(gid) != 0) { perror("setgid"); _exit(2); }
            if (uid && setuid(uid) != 0) { perror("setuid"); _exit(2); }
            execve("/bin/kvmfx-pause", av, ev);
            perror("execve");
            _exit(2);
        }
        printf("%d\n", (int)pid);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "retitle") == 0) {
        char long_title[512];
        memset(long_title, 0, sizeof long_title);
        memcpy(long_title, "kvmfx: long title ", 18);
        memset(long_title + 18, 'T', 300);
        const char *title = strcmp(argv[2], "long") == 0 ? long_title : "kvmfx: worker [idle]";
        char *start = argv[0];
        /* the argv area runs to the end of the last argument; the environment follows */
        char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
        char *env_end = end;
        for (char **e = environ; *e; e++)
            if (*e >= end && *e + strlen(*e) + 1 > env_end)
                env_end = *e + strlen(*e) + 1;
        size_t len = strlen(title);
        char *copy = strdup(title);
        if (len + 1 <= (size_t)(end - start)) {
            memset(start, 0, end - start);
            memcpy(start, copy, len);
        } else {
            size_t room = env_end - start - 1;
            if (len > room) len = room;
            memset(start, 0, env_end - start);
            memcpy(start, copy, len);
        }
        sleep_forever();
    }
    if (argc >= 3 && strcmp(argv[1], "threads") == 0) {
        int n = atoi(argv[2]);
        for (int i = 1; i < n; i++) {
            pthread_t t;
            pthread_create(&t, NULL, thread_main, NULL);
        }
        sleep_forever();
    }
    if (argc >= 3 && strcmp(argv[1], "spawnmany") == 0) {
        int n = atoi(argv[2]);
        for (int i = 0; i < n; i++) {
            if (fork() == 0) {
                char name[32], arg[32], env[48];
                snprintf(name, sizeof name, "kvmfx-scale-%d", i);
                snprintf(arg, sizeof arg, "--slot=%d", i);
                snprintf(env, sizeof env, "KVMFX_SCALE=%d", i);
                char *av[] = {name, arg, NULL};
                char *ev[] = {env, "PATH=/bin", NULL};
                execve("/bin/kvmfx-pause", av, ev);
                _exit(2);
            }
        }
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "pageout") == 0) {
        for (int i = 2; i < argc; i++) {
            char path[64], line[512];
            unsigned long lo = 0, hi = 0;
            snprintf(path, sizeof path, "/proc/%s/maps", argv[i]);
            FILE *f = fopen(path, "r");
            if (!f) { printf("%s -1\n", argv[i]); continue; }
            while (fgets(line, sizeof line, f))
                if (strstr(line, "[stack]")) sscanf(line, "%lx-%lx", &lo, &hi);
            fclose(f);
            long pidfd = syscall(434 /* pidfd_open */, atoi(argv[i]), 0);
            struct iovec iov = { (void *)lo, hi - lo };
            long r = syscall(440 /* process_madvise */, pidfd, &iov, 1, 21 /* MADV_PAGEOUT */, 0);
            printf("%s %ld\n", argv[i], r);
            close((int)pidfd);
        }
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "pagesize") == 0) {
        printf("%ld\n", sysconf(_SC_PAGESIZE));
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "vabits") == 0) {
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
        long page = sysconf(_SC_PAGESIZE);
        int bits = 0;
        for (int b = 36; b <= 56; b++) {
            void *want = (void *)(1UL << (b - 1));
            void *got = mmap(want, page, PROT_NONE,
                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (got == want)
                bits = b;
            if (got != MAP_FAILED)
                munmap(got, page);
        }
        printf("%d\n", bits);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "zombie") == 0) {
        if (fork() == 0)
            _exit(0);
        sleep_forever();
    }
    if (argc >= 2) {
        const char *cmd = argv[1];
        if (strcmp(cmd, "files") == 0) role_files();
        if (strcmp(cmd, "deleted_exe") == 0) { role_begin(); role_ready(1); }
        if (strcmp(cmd, "chroot") == 0 && argc >= 3) role_chroot(argv[2]);
        if (strcmp(cmd, "jailed") == 0) role_jailed();
        if (strcmp(cmd, "tcp_server") == 0) role_tcp_server();
        if (strcmp(cmd, "tcp_client") == 0) role_tcp_client();
        if (strcmp(cmd, "udp") == 0) role_udp();
        if (strcmp(cmd, "unix") == 0) role_unix();
        if (strcmp(cmd, "caps") == 0) role_caps();
        if (strcmp(cmd, "mntns") == 0) role_mntns();
        if (strcmp(cmd, "record") == 0 && argc >= 4) { record(argv[2], argv[3]); return 0; }
    }
    fprintf(stderr, "usage: kvmfx-helper spawn|retitle|threads|zombie|files|record ...\n");
    return 2;
}

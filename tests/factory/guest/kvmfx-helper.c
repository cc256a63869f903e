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
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/stat.h>
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
    fprintf(stderr, "usage: kvmfx-helper spawn|retitle|threads|zombie ...\n");
    return 2;
}

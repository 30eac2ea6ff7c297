/* A fault-injecting preload shim for tests/test_faults.py: the N-th file-system call of a run
 * fails with a chosen errno, in Python and in the native core alike.
 *
 * Only calls on the test's files count: paths that contain $FAULT_MATCH or are relative (the
 * test runs fastrec in its own folder; Python's imports use absolute paths elsewhere), and reads,
 * writes and syncs of the descriptors such an open returned. Each call has a class:
 *   open_r open_w read write sync rename
 * $FAULT_OPS (comma-separated classes) are the ones counted; the $FAULT_AT-th of them fails with
 * errno $FAULT_ERRNO (0: none fails, the dry run; with $FAULT_EVERY set, every one from then on). At exit the counts of every class are written
 * appended to $FAULT_COUNTS (the dry run's census, from which the test samples N).
 * Built by the test: gcc -shared -fPIC -O2 tests/faultshim.c -o faultshim.so -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { OPEN_R, OPEN_W, READ, WRITE, SYNC, RENAME, NCLASS };
static const char *names[NCLASS] = {"open_r", "open_w", "read", "write", "sync", "rename"};
#define MAXFD 65536

static int ready, counted[NCLASS], err_no, every;
static long fault_at;
static const char *match;
static long counts[NCLASS], total;
static unsigned char watched[MAXFD];

static void setup(void)
{
    if (ready)
        return;
    const char *s = getenv("FAULT_AT");
    fault_at = s ? atol(s) : 0;
    s = getenv("FAULT_ERRNO");
    err_no = s ? atoi(s) : EIO;
    match = getenv("FAULT_MATCH");
    every = getenv("FAULT_EVERY") != NULL;   /* every counted call from the N-th on fails (a read-only disk) */
    s = getenv("FAULT_OPS");
    for (int c = 0; c < NCLASS; c++)
        counted[c] = !s || strstr(s, names[c]) != NULL;
    ready = 1;
}

static int path_watched(const char *path)
{
    setup();
    return path && (path[0] != '/' || (match && *match && strstr(path, match)));
}

/* 1 if this call must fail (errno set) */
static int tick(int cls)
{
    setup();
    __atomic_add_fetch(&counts[cls], 1, __ATOMIC_RELAXED);
    if (!counted[cls])
        return 0;
    long n = __atomic_add_fetch(&total, 1, __ATOMIC_RELAXED);
    if (fault_at > 0 && (n == fault_at || (every && n > fault_at))) {
        errno = err_no;
        return 1;
    }
    return 0;
}

/* $FAULT_DELAY_MS: every open of a path containing $FAULT_DELAY_MATCH first sleeps that long
 * (a slow disk: keeps a run going while a test starts a second one) */
static void delay(const char *path)
{
    static long ms = -1;
    static const char *only;
    if (ms < 0) {
        const char *s = getenv("FAULT_DELAY_MS");
        only = getenv("FAULT_DELAY_MATCH");
        ms = s ? atol(s) : 0;
    }
    if (ms > 0 && path && only && *only && strstr(path, only)) {
        struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&t, &t) != 0) {
        }
    }
}

static int fd_watched(int fd) { return fd >= 0 && fd < MAXFD && watched[fd]; }

__attribute__((destructor)) static void report(void)
{
    const char *out = getenv("FAULT_COUNTS");
    long any = 0;
    for (int c = 0; c < NCLASS; c++)
        any += counts[c];
    if (!out || !*out || !any)   /* a helper process the run started (ldconfig, ...) touched nothing */
        return;
    static int (*real_open)(const char *, int, ...);
    real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    int fd = real_open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return;
    char buf[512];
    int len = 0;
    for (int c = 0; c < NCLASS; c++)
        len += snprintf(buf + len, sizeof buf - len, "%s %ld\n", names[c], counts[c]);
    ssize_t (*real_write)(int, const void *, size_t) =
        (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    real_write(fd, buf, len);
    close(fd);
}

#define REAL(type, name, ...)                                                       \
    static type (*real)(__VA_ARGS__);                                               \
    if (!real)                                                                      \
        real = (type (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name);

static int opened(int fd, const char *path)
{
    if (fd >= 0 && fd < MAXFD)
        watched[fd] = path_watched(path);
    return fd;
}

#define OPEN_BODY(call)                                                             \
    va_list ap;                                                                     \
    va_start(ap, flags);                                                            \
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;         \
    va_end(ap);                                                                     \
    delay(path);                                                                    \
    if (path_watched(path) && tick((flags & O_ACCMODE) == O_RDONLY ? OPEN_R : OPEN_W)) \
        return -1;                                                                  \
    return opened(call, path);

int open(const char *path, int flags, ...) { REAL(int, "open", const char *, int, ...) OPEN_BODY(real(path, flags, mode)) }
int open64(const char *path, int flags, ...) { REAL(int, "open64", const char *, int, ...) OPEN_BODY(real(path, flags, mode)) }
int openat(int dir, const char *path, int flags, ...) { REAL(int, "openat", int, const char *, int, ...) OPEN_BODY(real(dir, path, flags, mode)) }
int openat64(int dir, const char *path, int flags, ...) { REAL(int, "openat64", int, const char *, int, ...) OPEN_BODY(real(dir, path, flags, mode)) }

int close(int fd)
{
    REAL(int, "close", int)
    if (fd >= 0 && fd < MAXFD)
        watched[fd] = 0;
    return real(fd);
}

#define FD_CALL(cls, type, name, call, ...)                                         \
    type name(__VA_ARGS__)                                                          \
    {                                                                               \
        REAL(type, #name, __VA_ARGS__)                                              \
        if (fd_watched(fd) && tick(cls))                                            \
            return -1;                                                              \
        return call;                                                                \
    }

FD_CALL(READ, ssize_t, read, real(fd, buf, n), int fd, void *buf, size_t n)
FD_CALL(READ, ssize_t, pread, real(fd, buf, n, off), int fd, void *buf, size_t n, off_t off)
FD_CALL(READ, ssize_t, pread64, real(fd, buf, n, off), int fd, void *buf, size_t n, off_t off)
FD_CALL(WRITE, ssize_t, write, real(fd, buf, n), int fd, const void *buf, size_t n)
FD_CALL(WRITE, ssize_t, pwrite, real(fd, buf, n, off), int fd, const void *buf, size_t n, off_t off)
FD_CALL(WRITE, ssize_t, pwrite64, real(fd, buf, n, off), int fd, const void *buf, size_t n, off_t off)
FD_CALL(SYNC, int, fsync, real(fd), int fd)
FD_CALL(SYNC, int, fdatasync, real(fd), int fd)
FD_CALL(WRITE, int, ftruncate, real(fd, len), int fd, off_t len)
FD_CALL(WRITE, int, ftruncate64, real(fd, len), int fd, off_t len)

int rename(const char *a, const char *b)
{
    REAL(int, "rename", const char *, const char *)
    if ((path_watched(a) || path_watched(b)) && tick(RENAME))
        return -1;
    return real(a, b);
}

int renameat(int da, const char *a, int db, const char *b)
{
    REAL(int, "renameat", int, const char *, int, const char *)
    if ((path_watched(a) || path_watched(b)) && tick(RENAME))
        return -1;
    return real(da, a, db, b);
}

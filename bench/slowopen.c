/* A latency-injecting preload shim for the slow-storage benchmark (bench/slow_storage.py).
 *
 * Every open of a path that contains $SLOW_OPEN_MATCH sleeps $SLOW_OPEN_MS milliseconds first:
 * the round trip a cold disk, NFS or an object-store gateway costs per file. open/open64/openat/
 * openat64 catch Python's os.open and io.open; fopen/fopen64 catch OpenCV's imread (im2rec.py).
 * Built by the benchmark with `gcc -shared -fPIC -O2 bench/slowopen.c -o slowopen.so -ldl`. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void maybe_sleep(const char *path)
{
    static const char *match;
    static long ms = -1;
    if (ms < 0) {
        const char *s = getenv("SLOW_OPEN_MS");
        ms = s ? atol(s) : 0;
        match = getenv("SLOW_OPEN_MATCH");
    }
    if (ms > 0 && path && match && *match && strstr(path, match)) {
        struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&t, &t) != 0) {
        }
    }
}

#define REAL(type, name, ...)                                                       \
    static type (*real)(__VA_ARGS__);                                               \
    if (!real)                                                                      \
        real = (type (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name);

int open(const char *path, int flags, ...)
{
    REAL(int, "open", const char *, int, ...)
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    maybe_sleep(path);
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    REAL(int, "open64", const char *, int, ...)
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    maybe_sleep(path);
    return real(path, flags, mode);
}

int openat(int dir, const char *path, int flags, ...)
{
    REAL(int, "openat", int, const char *, int, ...)
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    maybe_sleep(path);
    return real(dir, path, flags, mode);
}

int openat64(int dir, const char *path, int flags, ...)
{
    REAL(int, "openat64", int, const char *, int, ...)
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    maybe_sleep(path);
    return real(dir, path, flags, mode);
}

FILE *fopen(const char *path, const char *mode)
{
    REAL(FILE *, "fopen", const char *, const char *)
    maybe_sleep(path);
    return real(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    REAL(FILE *, "fopen64", const char *, const char *)
    maybe_sleep(path);
    return real(path, mode);
}

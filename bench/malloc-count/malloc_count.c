/* malloc_count.c: an LD_PRELOAD interposer that counts a process's heap allocations.
 *
 *     cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c -ldl
 *     LD_PRELOAD=$PWD/malloc_count.so verso-server ... &
 *     kill -USR2 $!        # the server writes "malloc-count: N" to its stderr
 *
 * N is the number of calls so far to malloc, calloc, realloc, reallocarray, posix_memalign,
 * aligned_alloc, memalign, valloc and pvalloc (each call counts once, whatever its size,
 * and realloc counts even when it shrinks in place or frees). free is not counted. Every call
 * is forwarded to the next definition (glibc's), found with dlsym(RTLD_NEXT, ...).
 *
 * dlsym itself may allocate (its error buffer) before the real functions are known: those
 * few requests are served from a static bump buffer, which is never reused, and free()
 * ignores pointers into it. Used by bench/allocations.py.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static atomic_ullong allocations; /* the count; relaxed increments */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static size_t (*real_malloc_usable_size)(void *);

/* ---- the bump buffer for allocations made while dlsym runs ---- */

#define BOOT_SIZE (64 * 1024)
#define HEADER 16 /* each block is preceded by its size, and 16-byte aligned */
static _Alignas(16) char boot[BOOT_SIZE];
static atomic_size_t boot_used;

static void *boot_alloc(size_t size) {
    size_t need = HEADER + ((size + 15) & ~(size_t)15);
    if (need < size) return NULL; /* overflow */
    size_t at = atomic_fetch_add_explicit(&boot_used, need, memory_order_relaxed);
    if (at > BOOT_SIZE || need > BOOT_SIZE - at) {
        errno = ENOMEM;
        return NULL;
    }
    *(size_t *)(boot + at) = size;
    return boot + at + HEADER; /* already zero: static storage, never reused */
}

static int in_boot(const void *p) {
    return (const char *)p >= boot && (const char *)p < boot + BOOT_SIZE;
}

static size_t boot_size(const void *p) {
    return *(const size_t *)((const char *)p - HEADER);
}

/* ---- finding the real functions ---- */

enum { UNRESOLVED, RESOLVING, READY };
static atomic_int state;

/* Whether the real functions are known; resolves them on the first call. False while dlsym
 * runs (on this thread, recursively, or on another one): the caller then uses the buffer. */
static int ready(void) {
    int s = atomic_load_explicit(&state, memory_order_acquire);
    if (s == READY) return 1;
    if (s == RESOLVING || !atomic_compare_exchange_strong(&state, &s, RESOLVING)) return 0;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_valloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "pvalloc");
    real_malloc_usable_size = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    atomic_store_explicit(&state, READY, memory_order_release);
    return 1;
}

static inline void count(void) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
}

/* ---- the interposed functions ---- */

void *malloc(size_t size) {
    count();
    return ready() ? real_malloc(size) : boot_alloc(size);
}

void *calloc(size_t n, size_t size) {
    count();
    if (ready()) return real_calloc(n, size);
    if (size && n > SIZE_MAX / size) return NULL;
    return boot_alloc(n * size);
}

void *realloc(void *p, size_t size) {
    count();
    if (in_boot(p)) { /* move a buffer block to the real heap (or to a bigger block) */
        void *q = ready() ? real_malloc(size) : boot_alloc(size);
        if (q) memcpy(q, p, boot_size(p) < size ? boot_size(p) : size);
        return q;
    }
    return ready() ? real_realloc(p, size) : boot_alloc(size); /* p is NULL before READY */
}

void *reallocarray(void *p, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n * size); /* counted there */
}

void free(void *p) {
    if (p == NULL || in_boot(p)) return;
    if (ready()) real_free(p);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    count();
    if (ready()) return real_posix_memalign(out, alignment, size);
    if (alignment > 16 || !(*out = boot_alloc(size))) return ENOMEM;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    count();
    if (ready()) return real_aligned_alloc(alignment, size);
    return alignment <= 16 ? boot_alloc(size) : NULL;
}

void *memalign(size_t alignment, size_t size) {
    count();
    if (ready()) return real_memalign(alignment, size);
    return alignment <= 16 ? boot_alloc(size) : NULL;
}

void *valloc(size_t size) {
    count();
    return ready() ? real_valloc(size) : NULL; /* page-aligned: not from the buffer */
}

void *pvalloc(size_t size) {
    count();
    return ready() ? real_pvalloc(size) : NULL;
}

/* Swift's runtime asks for it; buffer blocks know their size. Not counted. */
size_t malloc_usable_size(void *p) {
    if (p == NULL) return 0;
    if (in_boot(p)) return boot_size(p);
    return ready() ? real_malloc_usable_size(p) : 0;
}

/* ---- SIGUSR2: print the count ---- */

/* Async-signal-safe: an atomic load, digits by hand, one write(2). */
static void report(int signal) {
    (void)signal;
    int saved = errno;
    static const char prefix[] = "malloc-count: ";
    char line[sizeof prefix + 24];
    char digits[24];
    unsigned long long n = atomic_load_explicit(&allocations, memory_order_relaxed);
    size_t d = 0, len = sizeof prefix - 1;
    do {
        digits[d++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    memcpy(line, prefix, len);
    while (d) line[len++] = digits[--d];
    line[len++] = '\n';
    ssize_t written = write(STDERR_FILENO, line, len);
    (void)written;
    errno = saved;
}

__attribute__((constructor)) static void init(void) {
    ready();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = report;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &action, NULL);
}

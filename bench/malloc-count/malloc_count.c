/* malloc_count.c: an LD_PRELOAD interposer that counts a process's heap allocations and, on
 * request, samples where they come from.
 *
 *     cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c -ldl -lpthread
 *     LD_PRELOAD=$PWD/malloc_count.so verso-server ... &
 *     kill -USR2 $!        # logs "malloc-count: N" to stderr (bench/allocations.py)
 *
 *     MALLOC_SITES_EVERY=64 MALLOC_SITES_OUT=/tmp/sites.txt LD_PRELOAD=$PWD/malloc_count.so verso-server ... &
 *     kill -USR2 $!        # logs the count and starts sampling
 *     ...load...
 *     kill -USR1 $!        # stops sampling; a background thread writes MALLOC_SITES_OUT
 *
 * Counts calls to malloc, calloc, realloc, reallocarray, posix_memalign, aligned_alloc,
 * memalign, valloc and pvalloc (free is not counted) in one relaxed atomic, serving the
 * allocations dlsym makes before the real functions are known from a static bump buffer. While
 * sampling is on, every MALLOC_SITES_EVERY-th counted call (a global counter) records a
 * backtrace of up to MAX_FRAMES raw return addresses, with the thread id, the thread's name,
 * the current libdispatch queue's label, the kind of call and its size, into a fixed mmap'd
 * table (slots claimed with an atomic index; samples past its capacity are counted as lost).
 * backtrace() may allocate on its first use (it loads libgcc_s): a thread-local flag stops a
 * sample inside a sample, and the constructor calls it once so the loading happens early.
 *
 * The output file (written by a thread made in the constructor, woken by the SIGUSR1 handler
 * through a semaphore, so nothing but sem_post runs in the handler):
 *     # every N / # count_start C / # count_stop C / # samples S / # lost L
 *     S lines: tid<TAB>thread name<TAB>queue label<TAB>kind<TAB>size<TAB>hex addr hex addr ...
 *     # maps
 *     the /proc/self/maps of the moment (the binary is a PIE: addresses are mapped through it)
 * Used by bench/allocation_sites.py.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

/* ---- the bump buffer for allocations made while dlsym runs (as in malloc_count.c) ---- */

#define BOOT_SIZE (64 * 1024)
#define HEADER 16
static _Alignas(16) char boot[BOOT_SIZE];
static atomic_size_t boot_used;

static void *boot_alloc(size_t size) {
    size_t need = HEADER + ((size + 15) & ~(size_t)15);
    if (need < size) return NULL;
    size_t at = atomic_fetch_add_explicit(&boot_used, need, memory_order_relaxed);
    if (at > BOOT_SIZE || need > BOOT_SIZE - at) {
        errno = ENOMEM;
        return NULL;
    }
    *(size_t *)(boot + at) = size;
    return boot + at + HEADER;
}

static int in_boot(const void *p) {
    return (const char *)p >= boot && (const char *)p < boot + BOOT_SIZE;
}

static size_t boot_size(const void *p) {
    return *(const size_t *)((const char *)p - HEADER);
}

enum { UNRESOLVED, RESOLVING, READY };
static atomic_int state;

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

/* ---- sampling ---- */

#define MAX_FRAMES 40
#define NAME 16
#define LABEL 40
#define CAPACITY (1u << 18) /* 262144 samples, ~100 MB of address space, touched only as used */

struct sample {
    uint32_t tid;
    uint16_t depth;
    char kind; /* m calloc c, realloc r, aligned a, other o */
    char pad;
    uint64_t size;
    char name[NAME];
    char label[LABEL];
    void *frames[MAX_FRAMES];
};

static unsigned long long every; /* 0: never sample */
static atomic_int sampling;
static atomic_ullong calls;     /* counted calls while sampling, for the every-Nth choice */
static atomic_uint used;        /* slots claimed */
static atomic_ullong lost;
static struct sample *table;
static unsigned long long count_start, count_stop;
static const char *(*queue_label)(void *); /* dispatch_queue_get_label, if libdispatch is there */
static sem_t wake;
static __thread int busy __attribute__((tls_model("initial-exec")));

static void take(char kind, size_t size) {
    if (!atomic_load_explicit(&sampling, memory_order_relaxed) || busy) return;
    if (atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) % every) return;
    busy = 1;
    unsigned at = atomic_fetch_add_explicit(&used, 1, memory_order_relaxed);
    if (at >= CAPACITY) {
        atomic_fetch_add_explicit(&lost, 1, memory_order_relaxed);
        busy = 0;
        return;
    }
    struct sample *s = &table[at];
    int depth = backtrace(s->frames, MAX_FRAMES);
    s->depth = (uint16_t)(depth > 0 ? depth : 0);
    s->tid = (uint32_t)syscall(SYS_gettid);
    s->kind = kind;
    s->size = size;
    if (prctl(PR_GET_NAME, s->name) != 0) s->name[0] = 0;
    s->name[NAME - 1] = 0;
    s->label[0] = 0;
    if (queue_label) {
        const char *l = queue_label(NULL); /* DISPATCH_CURRENT_QUEUE_LABEL */
        if (l) {
            strncpy(s->label, l, LABEL - 1);
            s->label[LABEL - 1] = 0;
        }
    }
    busy = 0;
}

static inline void count(char kind, size_t size) {
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    if (every) take(kind, size);
}

/* ---- the interposed functions ---- */

void *malloc(size_t size) {
    count('m', size);
    return ready() ? real_malloc(size) : boot_alloc(size);
}

void *calloc(size_t n, size_t size) {
    count('c', n * size);
    if (ready()) return real_calloc(n, size);
    if (size && n > SIZE_MAX / size) return NULL;
    return boot_alloc(n * size);
}

void *realloc(void *p, size_t size) {
    count('r', size);
    if (in_boot(p)) {
        void *q = ready() ? real_malloc(size) : boot_alloc(size);
        if (q) memcpy(q, p, boot_size(p) < size ? boot_size(p) : size);
        return q;
    }
    return ready() ? real_realloc(p, size) : boot_alloc(size);
}

void *reallocarray(void *p, size_t n, size_t size) {
    if (size && n > SIZE_MAX / size) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n * size);
}

void free(void *p) {
    if (p == NULL || in_boot(p)) return;
    if (ready()) real_free(p);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    count('a', size);
    if (ready()) return real_posix_memalign(out, alignment, size);
    if (alignment > 16 || !(*out = boot_alloc(size))) return ENOMEM;
    return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
    count('a', size);
    if (ready()) return real_aligned_alloc(alignment, size);
    return alignment <= 16 ? boot_alloc(size) : NULL;
}

void *memalign(size_t alignment, size_t size) {
    count('a', size);
    if (ready()) return real_memalign(alignment, size);
    return alignment <= 16 ? boot_alloc(size) : NULL;
}

void *valloc(size_t size) {
    count('o', size);
    return ready() ? real_valloc(size) : NULL;
}

void *pvalloc(size_t size) {
    count('o', size);
    return ready() ? real_pvalloc(size) : NULL;
}

size_t malloc_usable_size(void *p) {
    if (p == NULL) return 0;
    if (in_boot(p)) return boot_size(p);
    return ready() ? real_malloc_usable_size(p) : 0;
}

/* ---- signals ---- */

static void say_count(unsigned long long n) { /* async-signal-safe */
    static const char prefix[] = "malloc-count: ";
    char line[sizeof prefix + 24];
    char digits[24];
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
}

static void start(int signal) { /* SIGUSR2 */
    (void)signal;
    int saved = errno;
    count_start = atomic_load_explicit(&allocations, memory_order_relaxed);
    atomic_store_explicit(&sampling, 1, memory_order_relaxed);
    say_count(count_start);
    errno = saved;
}

static void stop(int signal) { /* SIGUSR1 */
    (void)signal;
    int saved = errno;
    atomic_store_explicit(&sampling, 0, memory_order_relaxed);
    count_stop = atomic_load_explicit(&allocations, memory_order_relaxed);
    say_count(count_stop);
    sem_post(&wake);
    errno = saved;
}

/* ---- the writer thread ---- */

static void dump(void) {
    const char *path = getenv("MALLOC_SITES_OUT");
    if (!path) path = "malloc_sites.txt";
    FILE *out = fopen(path, "w");
    if (!out) return;
    unsigned n = atomic_load(&used);
    if (n > CAPACITY) n = CAPACITY;
    fprintf(out, "# every %llu\n# count_start %llu\n# count_stop %llu\n# samples %u\n# lost %llu\n",
            every, count_start, count_stop, n, (unsigned long long)atomic_load(&lost));
    for (unsigned i = 0; i < n; i++) {
        struct sample *s = &table[i];
        fprintf(out, "%u\t%s\t%s\t%c\t%llu\t", s->tid, s->name, s->label, s->kind, (unsigned long long)s->size);
        for (int f = 0; f < s->depth; f++) fprintf(out, f ? " %lx" : "%lx", (unsigned long)(uintptr_t)s->frames[f]);
        fputc('\n', out);
    }
    fputs("# maps\n", out);
    int maps = open("/proc/self/maps", O_RDONLY);
    if (maps >= 0) {
        char buffer[65536];
        ssize_t got;
        while ((got = read(maps, buffer, sizeof buffer)) > 0) fwrite(buffer, 1, (size_t)got, out);
        close(maps);
    }
    fclose(out);
    static const char done[] = "malloc-sites: written\n";
    ssize_t written = write(STDERR_FILENO, done, sizeof done - 1);
    (void)written;
}

static void *writer(void *unused) {
    (void)unused;
    busy = 1; /* never sample this thread */
    for (;;) {
        while (sem_wait(&wake) != 0 && errno == EINTR) {}
        dump();
        atomic_store(&used, 0); /* a later USR2/USR1 pair samples afresh */
        atomic_store(&lost, 0);
        atomic_store(&calls, 0);
    }
    return NULL;
}

__attribute__((constructor)) static void init(void) {
    ready();
    const char *e = getenv("MALLOC_SITES_EVERY");
    unsigned long long n = e ? strtoull(e, NULL, 10) : 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    action.sa_handler = start;
    sigaction(SIGUSR2, &action, NULL);
    if (!n) return; /* only counting, and USR2 reports the count */
    void *mem = mmap(NULL, sizeof(struct sample) * (size_t)CAPACITY, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return;
    table = mem;
    {   /* loads libgcc_s now, not in the first sample */
        void *frames[4];
        busy = 1;
        backtrace(frames, 4);
        busy = 0;
    }
    queue_label = (const char *(*)(void *))dlsym(RTLD_DEFAULT, "dispatch_queue_get_label");
    sem_init(&wake, 0, 0);
    pthread_t thread;
    if (pthread_create(&thread, NULL, writer, NULL) != 0) return;
    pthread_detach(thread);
    action.sa_handler = stop;
    sigaction(SIGUSR1, &action, NULL);
    every = n;
}

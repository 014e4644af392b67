/*
 * A per-thread cache of large freed buffers (libc allocator only), so that a connection
 * moving big messages does not hand its buffers back to the kernel after every message
 * only to fault the same pages in again for the next one. glibc's malloc returns large
 * blocks with munmap, or trims the top of the heap, as soon as they are freed; for a
 * 1 MiB echo that was 2 blocks, up to 512 page faults, per message.
 *
 * Buffers of at least KITE__BUF_CACHE_MIN bytes freed through kite__buf_free() land here,
 * up to CACHE_SLOTS blocks and CACHE_BYTES bytes per thread; kite__buf_grow() takes the
 * smallest block that fits when a buffer needs that much. Connections themselves still
 * hold nothing once their buffers drain: idle connections stay small.
 *
 * Nothing is kept for long: kite__buf_cache_trim(now) frees blocks that stayed unused
 * for KITE__BUF_CACHE_MS. The event loop calls it on every iteration and wakes up for
 * it, so a process that goes quiet gives the memory back within about two seconds.
 * Blocks left at thread exit are freed by a thread-specific destructor.
 */
#include <pthread.h>

#include "util/util.h"

#define CACHE_SLOTS 4
#define CACHE_BYTES ((size_t)16 << 20)

struct cached {
    void *p;
    size_t cap;
    uint64_t since; /* first trim() that saw it unused (ms); 0 = not seen yet */
};

struct cache {
    struct cached slot[CACHE_SLOTS];
    unsigned n;   /* blocks held */
    size_t bytes; /* their total size */
    bool keyed;   /* registered for the exit destructor */
};

static _Thread_local struct cache tc;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void drop(struct cache *c, unsigned i)
{
    kite__free(NULL, c->slot[i].p);
    c->bytes -= c->slot[i].cap;
    c->slot[i] = c->slot[--c->n];
}

static void on_thread_exit(void *arg)
{
    struct cache *c = arg;
    while (c->n)
        drop(c, 0);
}

static void make_key(void)
{
    if (pthread_key_create(&exit_key, on_thread_exit) != 0)
        exit_key = (pthread_key_t)-1;
}

bool kite__buf_cache_put(void *p, size_t cap)
{
    struct cache *c = &tc;
    if (cap < KITE__BUF_CACHE_MIN || cap > CACHE_BYTES)
        return false;
    if (!c->keyed) {
        pthread_once(&exit_once, make_key);
        if (exit_key == (pthread_key_t)-1 || pthread_setspecific(exit_key, c) != 0)
            return false; /* no way to free them at thread exit: do not keep any */
        c->keyed = true;
    }
    /* Make room: the smallest blocks go first, the new one too if it is smaller. */
    while (c->n == CACHE_SLOTS || c->bytes + cap > CACHE_BYTES) {
        unsigned small = 0;
        for (unsigned i = 1; i < c->n; i++)
            if (c->slot[i].cap < c->slot[small].cap)
                small = i;
        if (c->n == 0 || c->slot[small].cap > cap)
            return false;
        drop(c, small);
    }
    c->slot[c->n++] = (struct cached){p, cap, 0};
    c->bytes += cap;
    return true;
}

void *kite__buf_cache_take(size_t need, size_t *cap)
{
    struct cache *c = &tc;
    unsigned best = CACHE_SLOTS;
    if (need > CACHE_BYTES)
        return NULL;
    /* The smallest that fits, and not one far too big for the buffer. */
    for (unsigned i = 0; i < c->n; i++)
        if (c->slot[i].cap >= need && c->slot[i].cap / 4 <= need &&
            (best == CACHE_SLOTS || c->slot[i].cap < c->slot[best].cap))
            best = i;
    if (best == CACHE_SLOTS)
        return NULL;
    void *p = c->slot[best].p;
    *cap = c->slot[best].cap;
    c->bytes -= *cap;
    c->slot[best] = c->slot[--c->n];
    return p;
}

#if defined(__GNUC__)
__attribute__((noinline))
#endif
static uint64_t trim(struct cache *c, uint64_t now_ms)
{
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < c->n;) {
        struct cached *b = &c->slot[i];
        if (b->since == 0)
            b->since = now_ms ? now_ms : 1;
        if (now_ms - b->since >= KITE__BUF_CACHE_MS) {
            drop(c, i);
            continue;
        }
        next = KITE_MIN(next, b->since + KITE__BUF_CACHE_MS);
        i++;
    }
    return next;
}

/* The loop calls this on every iteration: with nothing cached it is a load and a test. */
uint64_t kite__buf_cache_trim(uint64_t now_ms)
{
    return tc.n ? trim(&tc, now_ms) : UINT64_MAX;
}

size_t kite__buf_cache_bytes(void)
{
    return tc.bytes;
}

/*
 * The event loop: iteration, fd watchers, the cross-thread queue, deferred tasks and
 * before-sleep work. Timers are in timer.c, signals in signal.c, epoll in loop_epoll.c.
 */
#include <errno.h>
#include <limits.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "loop/backend.h"
#include "loop/loop.h"

#define TASK_OWNED 1u    /* allocated by kite_loop_post(): freed before fn runs */
#define TASK_DEFERRED 2u /* on the defer list */

/* `posted` holds this once the loop is closing: pushes see it and fail. */
static struct kite_loop_task closed_mark;
/* The loop whose iteration runs on this thread (kite_loop_is_current). */
static _Thread_local const struct kite_loop *current_loop;

uint64_t kite__clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void kite__loop_update_time(struct kite_loop *loop)
{
    loop->now = kite__clock_ms();
}

uint64_t kite_loop_now(const struct kite_loop *loop)
{
    return loop->now;
}

bool kite_loop_is_current(const struct kite_loop *loop)
{
    return loop && current_loop == loop;
}

/* ---- fd watchers ---------------------------------------------------------------- */

/* The slot is an int16_t: every event index of a wait must fit. */
_Static_assert(KITE__LOOP_MAX_EVENTS <= INT16_MAX, "kite__io.slot cannot index the events");
/* Every connection embeds one (loop.h): keep it from growing unnoticed. */
_Static_assert(sizeof(void *) != 8 || sizeof(struct kite__io) <= 32,
               "struct kite__io grew past 32 bytes");

void kite__io_init(struct kite__io *io, int fd, kite__io_cb *cb)
{
    io->cb = cb;
    io->fd = fd;
    io->events = 0;
    io->slot = -1;
    io->active = false;
    io->fnext = NULL;
    io->fprev = NULL;
}

int kite__io_update(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    int rc;
    if (events & ~(uint32_t)(KITE__IO_READ | KITE__IO_WRITE | KITE__IO_EDGE))
        return KITE_ERR_INVALID; /* io->events keeps only these */
    if (io->active) {
        if (io->events == events)
            return KITE_OK;
        rc = kite__poll_ctl(loop->pfd, KITE__POLL_MOD, io->fd, events, io);
    } else {
        rc = kite__poll_ctl(loop->pfd, KITE__POLL_ADD, io->fd, events, io);
    }
    if (rc < 0)
        return rc;
    io->events = (uint8_t)events;
    io->active = true;
    return KITE_OK;
}

/* Forget the event of this wait that belongs to `io`, if one is still to be
 * dispatched: after kite__io_stop its owner may already be gone. dispatch() noted
 * where each watcher's event sits (an fd is reported at most once per wait), so this
 * is one look, not a scan: with a thousand events per wait, a scan per stop made
 * closing connections quadratic. A stale slot fails the pointer test. */
static void drop_collected(struct kite_loop *loop, const struct kite__io *io)
{
    kite__poll_event *ev = loop->events;
    int i = io->slot;
    if (i > loop->ievent && i < loop->nevents && kite__pev_ptr(&ev[i]) == io)
        kite__pev_clear(&ev[i]);
}

void kite__io_stop(struct kite_loop *loop, struct kite__io *io)
{
    if (!io->active)
        return;
    /* EBADF/ENOENT here mean the fd was closed first; the registration is gone then. */
    (void)kite__poll_ctl(loop->pfd, KITE__POLL_DEL, io->fd, 0, io);
    io->active = false;
    io->events = 0;
    drop_collected(loop, io);
}

void kite__io_close(struct kite_loop *loop, struct kite__io *io)
{
    if (!io->active)
        return;
    io->active = false;
    io->events = 0;
    drop_collected(loop, io);
}

int kite__io_transfer(struct kite_loop *loop, struct kite__io *from, struct kite__io *to,
                      uint32_t events)
{
    if (!from->active || to->active || from->fd != to->fd ||
        (events & ~(uint32_t)(KITE__IO_READ | KITE__IO_WRITE | KITE__IO_EDGE)))
        return KITE_ERR_INVALID;
    int rc = kite__poll_ctl(loop->pfd, KITE__POLL_MOD, to->fd, events, to);
    if (rc < 0)
        return rc;
    from->active = false;
    from->events = 0;
    drop_collected(loop, from);
    to->events = (uint8_t)events;
    to->active = true;
    return KITE_OK;
}

static void dispatch(struct kite_loop *loop, int n)
{
    kite__poll_event *ev = loop->events;
    for (int i = 0; i < n; i++)
        ((struct kite__io *)kite__pev_ptr(&ev[i]))->slot = (int16_t)i;
    loop->nevents = n;
    for (loop->ievent = 0; loop->ievent < loop->nevents; loop->ievent++) {
        struct kite__io *io = kite__pev_ptr(&ev[loop->ievent]);
        if (!io)
            continue;
        uint32_t e = kite__pev_events(&ev[loop->ievent]);
        /* An error or hang-up must reach whichever side is listening, so that its read
         * or write returns the error (epoll reports these whatever the interest). */
        if (e & (KITE__IO_ERROR | KITE__IO_HUP))
            e |= io->events & (KITE__IO_READ | KITE__IO_WRITE);
        io->cb(loop, io, e);
    }
    loop->nevents = 0;
    loop->ievent = 0;
}

/* ---- deferred tasks ------------------------------------------------------------- */

void kite__loop_defer(struct kite_loop *loop, struct kite_loop_task *task, kite_loop_fn *fn,
                      void *arg)
{
    if (task->flags & TASK_DEFERRED)
        return;
    task->flags |= TASK_DEFERRED;
    task->fn = fn;
    task->arg = arg;
    task->next = NULL;
    *loop->defer_tail = task;
    loop->defer_tail = &task->next;
}

static void run_deferred(struct kite_loop *loop)
{
    struct kite_loop_task *t;
    while ((t = loop->defer_head) != NULL) {
        loop->defer_head = t->next;
        if (!loop->defer_head)
            loop->defer_tail = &loop->defer_head;
        t->flags &= ~TASK_DEFERRED;
        t->fn(loop, t->arg); /* may free t */
    }
}

/* ---- before-sleep work ---------------------------------------------------------- */

void kite__io_flush_link(struct kite_loop *loop, struct kite__io *io)
{
    io->fnext = loop->pending;
    if (io->fnext)
        io->fnext->fprev = &io->fnext;
    loop->pending = io;
    io->fprev = &loop->pending;
}

void kite__io_flush_cancel(struct kite_loop *loop, struct kite__io *io)
{
    KITE_UNUSED(loop);
    if (!io->fprev)
        return;
    *io->fprev = io->fnext;
    if (io->fnext)
        io->fnext->fprev = io->fprev;
    io->fnext = NULL;
    io->fprev = NULL;
}

void kite__loop_hook_add(struct kite_loop *loop, struct kite__hook *h, kite__hook_cb *cb)
{
    h->cb = cb;
    if (h->pprev)
        return;
    h->next = loop->hooks;
    if (h->next)
        h->next->pprev = &h->next;
    loop->hooks = h;
    h->pprev = &loop->hooks;
}

void kite__loop_hook_remove(struct kite_loop *loop, struct kite__hook *h)
{
    KITE_UNUSED(loop);
    if (!h->pprev)
        return;
    *h->pprev = h->next;
    if (h->next)
        h->next->pprev = h->pprev;
    h->next = NULL;
    h->pprev = NULL;
}

/* One pass over the flushes queued so far. The batch is moved to a local list first, so
 * flushes queued by the callbacks wait for the next pass, and a cancel during the pass
 * (through fprev) unlinks from the local list. */
static void pending_pass(struct kite_loop *loop)
{
    struct kite__io *batch = loop->pending;
    loop->pending = NULL;
    batch->fprev = &batch;
    struct kite__io *io;
    while ((io = batch) != NULL) {
        kite__io_flush_cancel(loop, io);
        io->cb(loop, io, KITE__IO_FLUSH);
    }
}

static void before_sleep(struct kite_loop *loop)
{
    struct kite__hook *h = loop->hooks, *next;
    for (; h; h = next) {
        next = h->next;
        h->cb(loop, h);
    }
    for (int pass = 0; pass < KITE__PENDING_PASSES && loop->pending; pass++)
        pending_pass(loop);
}

/* ---- the cross-thread queue ----------------------------------------------------- */

/*
 * A multi-producer, single-consumer lock-free queue: producers push onto a LIFO with a
 * CAS; the loop takes the whole list with one exchange and reverses it, which gives
 * posting order per producer. Taking everything at once is what keeps this free of ABA
 * (no single pops). Only the producer that finds the list empty writes the eventfd, so
 * a burst of posts costs one wake-up.
 */
static void wake(struct kite_loop *loop)
{
    uint64_t one = 1;
    ssize_t r = write(loop->efd, &one, sizeof one); /* EAGAIN: counter saturated, awake */
    KITE_UNUSED(r);
}

static int push(struct kite_loop *loop, struct kite_loop_task *task)
{
    struct kite_loop_task *old = atomic_load_explicit(&loop->posted, memory_order_relaxed);
    do {
        if (old == &closed_mark)
            return KITE_ERR_CLOSED;
        task->next = old;
    } while (!atomic_compare_exchange_weak_explicit(&loop->posted, &old, task,
                                                    memory_order_release,
                                                    memory_order_relaxed));
    if (!old)
        wake(loop);
    return KITE_OK;
}

static void run_posted(struct kite_loop *loop, struct kite_loop_task *list)
{
    struct kite_loop_task *fifo = NULL;
    while (list) {
        struct kite_loop_task *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        struct kite_loop_task *t = fifo;
        fifo = t->next;
        kite_loop_fn *fn = t->fn;
        void *arg = t->arg;
        if (t->flags & TASK_OWNED)
            kite__free(loop->alloc, t);
        fn(loop, arg); /* may free or re-post t */
    }
}

static void on_wake(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    uint64_t v;
    ssize_t r = read(io->fd, &v, sizeof v);
    KITE_UNUSED(r);
    KITE_UNUSED(events);
    /* Read the eventfd before taking the list: a push after the exchange finds the
     * list empty and writes again, so nothing is left without a wake-up. */
    run_posted(loop, atomic_exchange_explicit(&loop->posted, NULL, memory_order_acquire));
}

int kite_loop_post_task(struct kite_loop *loop, struct kite_loop_task *task, kite_loop_fn *fn,
                        void *arg)
{
    if (!loop || !task || !fn)
        return KITE_ERR_INVALID;
    task->fn = fn;
    task->arg = arg;
    task->flags = 0;
    return push(loop, task);
}

int kite_loop_post(struct kite_loop *loop, kite_loop_fn *fn, void *arg)
{
    if (!loop || !fn)
        return KITE_ERR_INVALID;
    struct kite_loop_task *t = kite__malloc(loop->alloc, sizeof *t);
    if (!t)
        return KITE_ERR_NOMEM;
    t->fn = fn;
    t->arg = arg;
    t->flags = TASK_OWNED;
    int rc = push(loop, t);
    if (rc < 0)
        kite__free(loop->alloc, t);
    return rc;
}

void kite_loop_stop(struct kite_loop *loop)
{
    atomic_store(&loop->stop, true);
    wake(loop);
}

/* ---- life cycle ----------------------------------------------------------------- */

static void release_buffers(struct kite_loop *loop)
{
    kite__free(loop->alloc, loop->rxbuf);
    kite__free(loop->alloc, loop->bulkbuf);
    loop->bulkbuf = NULL;
    kite__free(loop->alloc, loop->events);
    kite__free(loop->alloc, loop->slots);
    kite__free(loop->alloc, loop->slotmap);
    loop->rxbuf = NULL;
    loop->events = NULL;
    loop->slots = NULL;
    loop->slotmap = NULL;
    kite__poll_free(loop->pfd);
    loop->pfd = -1;
}

uint8_t *kite__loop_bulkbuf(struct kite_loop *loop, size_t *len)
{
    if (!loop->bulkbuf)
        loop->bulkbuf = kite__malloc(loop->alloc, KITE__LOOP_BULKBUF_SIZE);
    if (!loop->bulkbuf)
        return kite__loop_rxbuf(loop, len);
    *len = KITE__LOOP_BULKBUF_SIZE;
    return loop->bulkbuf;
}

static void destroy(struct kite_loop *loop)
{
    release_buffers(loop);
    if (loop->efd >= 0)
        close(loop->efd);
    kite__free(loop->alloc, loop);
}

void kite__loop_ref(struct kite_loop *loop)
{
    atomic_fetch_add(&loop->refs, 1);
}

void kite__loop_unref(struct kite_loop *loop)
{
    if (atomic_fetch_sub(&loop->refs, 1) == 1)
        destroy(loop);
}

static int alloc_parts(struct kite_loop *loop)
{
    const struct kite_allocator *a = loop->alloc;
    loop->rxbuf = kite__malloc(a, KITE__LOOP_RXBUF_SIZE);
    loop->events = kite__malloc(a, KITE__LOOP_MAX_EVENTS * sizeof(kite__poll_event));
    loop->slots = kite__calloc(a, KITE__TIMER_SLOTS * sizeof *loop->slots);
    loop->slotmap = kite__calloc(a, KITE__TIMER_SLOTS / 64 * sizeof *loop->slotmap);
    if (!loop->rxbuf || !loop->events || !loop->slots || !loop->slotmap)
        return KITE_ERR_NOMEM;
    return KITE_OK;
}

int kite_loop_new(const struct kite_allocator *alloc, struct kite_loop **out)
{
    if (!out)
        return KITE_ERR_INVALID;
    *out = NULL;
    struct kite_loop *loop = kite__calloc(alloc, sizeof *loop);
    if (!loop)
        return KITE_ERR_NOMEM;
    loop->alloc = alloc;
    loop->pfd = -1;
    loop->efd = -1;
    loop->defer_tail = &loop->defer_head;
    atomic_init(&loop->posted, NULL);
    atomic_init(&loop->stop, false);
    atomic_init(&loop->refs, 1u);
    kite__io_init(&loop->sigio, -1, NULL);
    int rc = alloc_parts(loop);
    if (rc < 0)
        goto fail;
    rc = loop->pfd = kite__poll_create();
    if (rc < 0)
        goto fail;
    loop->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->efd < 0) {
        rc = -errno;
        goto fail;
    }
    kite__io_init(&loop->wake, loop->efd, on_wake);
    rc = kite__io_start(loop, &loop->wake, KITE__IO_READ);
    if (rc < 0)
        goto fail;
    kite__loop_update_time(loop);
    loop->tick = loop->now >> KITE__TIMER_TICK_SHIFT;
    *out = loop;
    return KITE_OK;
fail:
    destroy(loop);
    return rc;
}

void kite_loop_free(struct kite_loop *loop)
{
    if (!loop)
        return;
    loop->closing = true;
    kite_loop_unwatch_signals(loop);
    /* From here on pushes fail; whatever was queued runs now so ownership carried by
     * the arguments is not leaked. */
    struct kite_loop_task *left = atomic_exchange(&loop->posted, &closed_mark);
    run_posted(loop, left);
    run_deferred(loop);
    release_buffers(loop);
    kite__loop_unref(loop); /* the eventfd and struct stay while resolutions run */
}

/* ---- running -------------------------------------------------------------------- */

/* How long the next wait may block: until the first timer, the caller's cap, or the
 * moment the thread's cache of large buffers (util/bufcache.c) has something to free,
 * so an idle process gives that memory back. */
static int poll_timeout(const struct kite_loop *loop, int cap, bool for_run)
{
    if (loop->defer_head || loop->pending || (for_run && atomic_load(&loop->stop)))
        return 0;
    int t = loop->ntimers ? kite__timers_timeout(loop) : -1;
    if (cap >= 0 && (t < 0 || cap < t))
        t = cap;
    uint64_t due = kite__buf_cache_trim(loop->now);
    if (due != UINT64_MAX) {
        uint64_t ms = due > loop->now ? due - loop->now : 0;
        if (t < 0 || ms < (uint64_t)t)
            t = (int)KITE_MIN(ms, (uint64_t)INT_MAX);
    }
    return t;
}

/* The timers, unless none is armed: then only the tick catches up with the clock (what
 * kite__timers_run would do), without a call. A busy server with no timers armed wakes
 * up once per message or so, and this runs every time. */
static inline void run_timers(struct kite_loop *loop)
{
    if (loop->ntimers)
        kite__timers_run(loop);
    else
        loop->tick = KITE_MAX(loop->tick, loop->now >> KITE__TIMER_TICK_SHIFT);
}

static int iterate(struct kite_loop *loop, int cap, bool for_run)
{
    const struct kite_loop *prev = current_loop;
    current_loop = loop;
    loop->depth++;
    if (loop->hooks || loop->pending)
        before_sleep(loop);
    if (loop->defer_head)
        run_deferred(loop);
    int n = kite__poll_wait(loop->pfd, loop->events, KITE__LOOP_MAX_EVENTS,
                            poll_timeout(loop, cap, for_run));
    kite__loop_update_time(loop);
    if (n > 0)
        dispatch(loop, n);
    run_timers(loop);
    if (loop->defer_head)
        run_deferred(loop);
    loop->depth--;
    current_loop = prev;
    return n < 0 ? n : KITE_OK;
}

int kite_loop_run_once(struct kite_loop *loop, int timeout_ms)
{
    if (loop->depth > 0)
        return KITE_ERR_STATE;
    return iterate(loop, timeout_ms, false);
}

int kite_loop_run(struct kite_loop *loop)
{
    if (loop->depth > 0)
        return KITE_ERR_STATE;
    int rc;
    do
        rc = iterate(loop, -1, true);
    while (rc == KITE_OK && !atomic_load(&loop->stop));
    atomic_store(&loop->stop, false);
    return rc;
}

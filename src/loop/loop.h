/*
 * loop — the internal side of the event loop (the public side is include/kite/loop.h).
 * Everything here is for the loop's own thread only.
 *
 * Building blocks, all intrusive (embedded in their owner; registering allocates
 * nothing, and after a stop/cancel/remove the loop never touches the struct again, so
 * the owner may free it at once):
 *
 *   struct kite__io      an fd watcher: callback(loop, io, events), read/write interest,
 *                        and "flush me before the loop sleeps" (kite__io_flush), O(1)
 *                        add (deduplicated)
 *   struct kite__timer   a one-shot timer on a hashed wheel, O(1) start/restart/stop
 *   struct kite__hook    a callback run before every sleep
 *   struct kite_loop_task (public) a deferred function, run at the end of the iteration
 *
 * FD WATCHERS are level-triggered by default, which is what a WebSocket server that
 * writes directly from a per-connection output queue wants:
 *   - register KITE__IO_READ once and leave it on (except to apply backpressure);
 *   - write directly (send/writev) whenever there is output; only when the kernel did
 *     not take everything, add KITE__IO_WRITE, and remove it again once the queue is
 *     empty. So a connection that keeps up costs no epoll_ctl at all; a slow one costs
 *     two per backpressure episode. kite__io_start() skips the syscall when the
 *     interest does not change, so calling it unconditionally is cheap.
 *   - a read that fills the buffer may leave data behind: level triggering reports the
 *     fd again on the next iteration, which also keeps one busy peer from starving the
 *     others (no "read until EAGAIN" loop needed).
 * KITE__IO_EDGE switches a watcher to edge-triggered (EPOLLET); its owner must then
 * read until a short read or KITE_AGAIN and track writability itself.
 * Errors and hang-ups are always reported (epoll reports them whatever the interest):
 * the callback then sees KITE__IO_ERROR and/or KITE__IO_HUP, plus READ and/or WRITE for
 * whichever of those are in the interest, so a read or write reveals the error (-errno
 * or EOF). An owner that does not react (read, or stop the watcher) is called again on
 * the next iteration.
 * Stop the watcher (kite__io_stop) before closing its fd.
 *
 * TIMERS live on a hashed timer wheel of KITE__TIMER_SLOTS slots of KITE__TIMER_TICK_MS
 * each. A timer fires on the first tick at or after its deadline: never early, at most
 * one tick (plus scheduling) late. Timers fire in deadline order at tick granularity;
 * timers due in the same tick fire in an unspecified order. Deadlines beyond one wheel
 * revolution (~32 s) are fine: such a timer is looked at once per revolution until due.
 * Restarting a timer to a deadline in the same tick as its current one is a no-op, so
 * "restart the idle timer on every message" costs a compare. A timer callback may
 * restart its own timer, stop or start any other timer, or free its owner.
 *
 * BEFORE-SLEEP FLUSHING (DESIGN §3: small writes of one iteration corked into one
 * syscall). The pattern for a connection with an output queue:
 *
 *     struct conn { struct kite__io io; ... };
 *     kite__io_init(&c->io, fd, conn_io);            // once
 *     // on send: append to c's output queue, then
 *     kite__io_flush(loop, &c->io);                  // O(1); no-op if already queued
 *     // before epoll_wait the loop calls conn_io(loop, &c->io, KITE__IO_FLUSH) once; it
 *     // does one writev of everything queued, and on a partial write turns
 *     // KITE__IO_WRITE on.
 *     // on close: kite__io_flush_cancel(loop, &c->io);
 *
 * The flush request lives in the watcher (a connection that writes has one anyway), so
 * it costs no callback pointer of its own: an idle connection is mostly these structs.
 * It is independent of the registration: an inactive watcher (never started, or
 * stopped) can be flushed too, and kite__io_stop/close leave a queued flush queued.
 *
 * Entries added while the loop is flushing (by another entry's callback, or by an entry
 * re-adding itself) are flushed in a further pass before sleeping; after
 * KITE__PENDING_PASSES passes whatever is still queued waits for the next iteration,
 * which then does not block. So an entry that keeps re-adding itself cannot hang the
 * loop, though it does keep it busy.
 *
 * DEFERRED FREES (DESIGN §6): to close an object from inside any of its callbacks,
 * detach it from the loop (io stop, timer stop, pending remove) and
 * kite__loop_defer(loop, &obj->free_task, obj_free, obj): obj_free runs at the end of
 * the current iteration, after every callback of the iteration, so code up the stack
 * that still holds the pointer stays safe until it returns. The task is embedded in the
 * object, so deferring cannot fail.
 */
#ifndef KITE_LOOP_LOOP_H
#define KITE_LOOP_LOOP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/loop.h"
#include "util/util.h"

#ifndef kite__container_of
/* The struct that embeds `ptr` as its member `member`. */
#define kite__container_of(ptr, type, member)                                              \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

/* ---- fd watchers ---------------------------------------------------------------- */

/* Event bits. They equal the epoll bits so the epoll backend needs no translation, but
 * for KITE__IO_EDGE (a low bit, so the interest fits in a byte; loop_epoll.c). */
#define KITE__IO_READ 0x001u  /* readable, or EOF/error pending (EPOLLIN) */
#define KITE__IO_WRITE 0x004u /* writable (EPOLLOUT) */
#define KITE__IO_ERROR 0x008u /* error pending on the fd (EPOLLERR); reported only */
#define KITE__IO_HUP 0x010u   /* both directions hung up (EPOLLHUP); reported only */
#define KITE__IO_EDGE 0x080u  /* interest flag: edge-triggered (EPOLLET; the backend
                                * translates it, so the interest fits in a byte) */
#define KITE__IO_FLUSH 0x10000u /* reported only: the before-sleep call (kite__io_flush) */

struct kite__io;
/* `events`: KITE__IO_* bits that are ready, or exactly KITE__IO_FLUSH for a requested
 * before-sleep flush. Runs on the loop thread. */
typedef void kite__io_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events);

/* 32 bytes on 64-bit targets, the before-sleep flush link included (an idle connection
 * is mostly its session, which embeds one). */
struct kite__io {
    kite__io_cb *cb; /* called with the ready events, and with KITE__IO_FLUSH */
    int fd;          /* the watched fd; owned by the watcher's owner, not by the loop */
    uint8_t events;  /* current interest (KITE__IO_READ|WRITE|EDGE) */
    bool active;     /* registered with epoll */
    int16_t slot;    /* loop-private: index of its event in the wait being dispatched
                      * (< KITE__LOOP_MAX_EVENTS) */
    /* loop-private: the before-sleep flush list; fprev is NULL when not queued */
    struct kite__io *fnext, **fprev;
};

/* Prepare a watcher for `fd` (no syscall). Not on a watcher whose flush is queued. */
void kite__io_init(struct kite__io *io, int fd, kite__io_cb *cb);
/*
 * Register the watcher, or change its interest to `events` (KITE__IO_READ, _WRITE,
 * _EDGE; 0 keeps it registered for errors only). No syscall when already registered
 * with the same interest. Returns KITE_OK, KITE_ERR_INVALID for other bits, or the
 * -errno of epoll_ctl (the watcher's state is then unchanged). The no-change test is inline; kite__io_update does the rest.
 */
int kite__io_update(struct kite_loop *loop, struct kite__io *io, uint32_t events);
static inline int kite__io_start(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    if (io->active && io->events == events)
        return KITE_OK; /* the usual case, on every dispatch: nothing to tell epoll */
    return kite__io_update(loop, io, events);
}
/* Unregister (idempotent). Events already collected for this iteration are dropped, so
 * the callback is not called again and the owner may free the struct at once (once a
 * queued flush is cancelled too). */
void kite__io_stop(struct kite_loop *loop, struct kite__io *io);
/*
 * kite__io_stop() for an fd that is closed right after, before the loop waits again:
 * no epoll_ctl, since closing the fd removes it from epoll. Only for fds that have no
 * duplicate (kite's sockets are opened with SOCK_CLOEXEC and never dup'ed): a duplicate
 * would keep the registration alive, pointing at freed memory. Saves one system call
 * per connection.
 */
void kite__io_close(struct kite_loop *loop, struct kite__io *io);
/*
 * Hand the registration of `from` (active) over to `to`, a watcher of the same fd that
 * is not registered, with interest `events`: one EPOLL_CTL_MOD instead of a DEL and an
 * ADD, e.g. when an HTTP connection becomes a WebSocket session. Afterwards `from` is
 * inactive (its events collected in this iteration are dropped, so its owner may be
 * freed) and `to` active. Returns KITE_OK, KITE_ERR_INVALID (from not active, to
 * active, or another fd), or the -errno of epoll_ctl (nothing changed then).
 */
int kite__io_transfer(struct kite_loop *loop, struct kite__io *from, struct kite__io *to,
                      uint32_t events);
static inline bool kite__io_active(const struct kite__io *io)
{
    return io->active;
}

/* ---- timers --------------------------------------------------------------------- */

#define KITE__TIMER_TICK_SHIFT 3u                       /* 8 ms ticks */
#define KITE__TIMER_TICK_MS (1u << KITE__TIMER_TICK_SHIFT)
#define KITE__TIMER_SLOTS_SHIFT 12u                     /* 4096 slots: ~32.8 s a turn */
#define KITE__TIMER_SLOTS (1u << KITE__TIMER_SLOTS_SHIFT)

struct kite__timer;
/* Runs on the loop thread when the timer is due; the timer is inactive by then. */
typedef void kite__timer_cb(struct kite_loop *loop, struct kite__timer *t);

struct kite__timer {
    struct kite__timer *next;   /* wheel slot list */
    struct kite__timer **pprev; /* NULL when inactive */
    uint64_t expiry;            /* tick at which it fires */
    kite__timer_cb *cb;
};

/* Prepare a timer (inactive). Zero-initialised memory plus setting cb also works. */
void kite__timer_init(struct kite__timer *t, kite__timer_cb *cb);
/* (Re)arm to fire `delay_ms` after kite__loop_now(); replaces any previous deadline.
 * O(1), no allocation, cannot fail. */
void kite__timer_start(struct kite_loop *loop, struct kite__timer *t, uint64_t delay_ms);
/* (Re)arm to fire at the absolute time `deadline_ms` (kite__loop_now() clock); a
 * deadline in the past fires on the next tick. */
void kite__timer_start_at(struct kite_loop *loop, struct kite__timer *t, uint64_t deadline_ms);
/* Cancel (idempotent). Safe inside any timer callback, this timer's own included. */
void kite__timer_unlink(struct kite_loop *loop, struct kite__timer *t); /* active t only */
static inline void kite__timer_stop(struct kite_loop *loop, struct kite__timer *t)
{
    if (t->pprev)
        kite__timer_unlink(loop, t);
}
static inline bool kite__timer_active(const struct kite__timer *t)
{
    return t->pprev != NULL;
}

/* ---- before-sleep: flushes and hooks --------------------------------------------- */

/* Call io->cb(loop, io, KITE__IO_FLUSH) once before the loop next sleeps. O(1); no-op
 * if already queued. Whether the watcher is registered does not matter. */
void kite__io_flush_link(struct kite_loop *loop, struct kite__io *io); /* unqueued io only */
static inline void kite__io_flush(struct kite_loop *loop, struct kite__io *io)
{
    if (!io->fprev)
        kite__io_flush_link(loop, io);
}
/* Unqueue (idempotent). O(1). The loop then no longer touches the watcher for it. */
void kite__io_flush_cancel(struct kite_loop *loop, struct kite__io *io);
static inline bool kite__io_flush_queued(const struct kite__io *io)
{
    return io->fprev != NULL;
}

struct kite__hook;
typedef void kite__hook_cb(struct kite_loop *loop, struct kite__hook *h);

struct kite__hook {
    struct kite__hook *next;
    struct kite__hook **pprev; /* NULL when not registered */
    kite__hook_cb *cb;
};

/* Run cb(loop, h) before every sleep, before the flushes (so a hook may queue
 * flushes). Hooks run in an unspecified order. A hook may remove itself. */
void kite__loop_hook_add(struct kite_loop *loop, struct kite__hook *h, kite__hook_cb *cb);
void kite__loop_hook_remove(struct kite_loop *loop, struct kite__hook *h);

#define KITE__PENDING_PASSES 4

/* ---- deferred tasks ------------------------------------------------------------- */

/*
 * Run fn(loop, arg) at the end of the current iteration (after I/O and timer callbacks),
 * or at the end of the next one when called outside an iteration. Deferred tasks run in
 * the order they were deferred; a task deferred by a deferred task runs in the same
 * pass. Deferring a task that is already deferred does nothing. Cannot fail.
 * The task must be zero-initialised before its first use (it usually sits in a calloc'ed
 * object); it may be deferred again once its function has started.
 */
void kite__loop_defer(struct kite_loop *loop, struct kite_loop_task *task, kite_loop_fn *fn,
                      void *arg);

/* ---- the loop itself -------------------------------------------------------------- */

#define KITE__LOOP_RXBUF_SIZE (64u * 1024u) /* one receive buffer per loop */
#define KITE__LOOP_BULKBUF_SIZE (256u * 1024u) /* and one for bulk reads, made on first use */
#define KITE__LOOP_MAX_EVENTS 1024          /* epoll events collected per wait */

/*
 * The loop's state. Private to src/loop/; it is here only so the hot accessors below can
 * be inlined. Other layers use the functions.
 */
struct kite_loop {
    /* hot fields */
    uint64_t now;                         /* cached monotonic ms */
    uint8_t *rxbuf;                       /* shared receive buffer */
    uint8_t *bulkbuf;                     /* shared bulk receive buffer, or NULL */
    const struct kite_allocator *alloc;   /* borrowed; NULL = libc */
    int pfd;                              /* poller (epoll) fd */
    int efd;                              /* eventfd: wake-ups from other threads */
    /* dispatch state, so kite__io_stop can drop events collected for a stopped io */
    void *events;                         /* backend event array */
    int nevents;                          /* events collected in this wait */
    int ievent;                           /* index being dispatched */
    /* timer wheel */
    struct kite__timer **slots;           /* KITE__TIMER_SLOTS list heads */
    uint64_t *slotmap;                    /* bit per slot: non-empty */
    uint64_t tick;                        /* last tick processed */
    size_t ntimers;                       /* active timers */
    /* before-sleep and end-of-iteration work */
    struct kite__io *pending;             /* queued flushes (kite__io_flush) */
    struct kite__hook *hooks;
    struct kite_loop_task *defer_head, **defer_tail;
    /* cross-thread queue: a lock-free LIFO of tasks, taken whole and reversed */
    _Atomic(struct kite_loop_task *) posted;
    atomic_bool stop;                     /* stop requested */
    atomic_uint refs;                     /* owner + resolutions in flight */
    struct kite__io wake;                 /* watcher on efd */
    /* signals (kite_loop_watch_signals) */
    struct kite__io sigio;
    kite_loop_signal_cb *sig_cb;
    void *sig_arg;
    int depth;                            /* >0 while running an iteration */
    bool closing;                         /* kite_loop_free in progress */
};

/* The cached monotonic time in ms, read once per iteration. */
static inline uint64_t kite__loop_now(const struct kite_loop *loop)
{
    return loop->now;
}
/* Re-read the clock (after a long computation inside a callback). */
void kite__loop_update_time(struct kite_loop *loop);
/* Read CLOCK_MONOTONIC in ms (no caching). */
uint64_t kite__clock_ms(void);

/*
 * The loop's receive buffer: read into it, parse, and keep only what must survive
 * (partial frames) in the connection. Valid until the callback returns; every reader on
 * the loop shares it, so never hold it across iterations.
 */
static inline uint8_t *kite__loop_rxbuf(struct kite_loop *loop, size_t *len)
{
    *len = KITE__LOOP_RXBUF_SIZE;
    return loop->rxbuf;
}

/*
 * A larger shared receive buffer, for input that streams through without being kept:
 * the payload of a message delivered in parts, where a read of 256 KiB costs a quarter
 * of the system calls of 64 KiB reads and still stays in the cache. Same rules as
 * kite__loop_rxbuf(). Allocated on first use; falls back to the receive buffer without
 * memory for it.
 */
uint8_t *kite__loop_bulkbuf(struct kite_loop *loop, size_t *len);

/* The allocator the loop was created with (NULL = libc); objects on the loop may use it. */
static inline const struct kite_allocator *kite__loop_allocator(const struct kite_loop *loop)
{
    return loop->alloc;
}

/*
 * References that keep the loop's memory and eventfd alive after kite_loop_free()
 * (background resolutions hold one while they run). Any thread. The last unref frees.
 */
void kite__loop_ref(struct kite_loop *loop);
void kite__loop_unref(struct kite_loop *loop);

/* src/loop internals (timer.c, signal.c), used by loop.c. */
void kite__timers_run(struct kite_loop *loop);
int kite__timers_timeout(const struct kite_loop *loop); /* ms until the next tick with
                                                           timers; -1 if none */

#endif

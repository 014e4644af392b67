/*
 * coro/handler — sequential handlers on the session engine (include/kite/handler.h is
 * the public side; docs/ktor-to-kite.md explains the model).
 *
 * A handler is a coroutine (coro.h) started in its session's on_open and driven by the
 * session's callbacks: on_message/on_frame hand it the next message and resume it,
 * on_drain and the one-shot flushed hook resume a waiting send or flush, on_close
 * resumes whatever it waits in with the end. While a handler waits for anything but
 * input, its session is paused (kite__session_pause), so no message arrives that it
 * cannot take.
 *
 * Per loop (struct kite__hloop, created lazily on the loop thread by the first handler,
 * freed at the end of the iteration in which its last handler goes away): the coroutine
 * scheduler, spare receive buffers for pinning, the worker pool of blocking calls. Per
 * app (a process-wide registry, handler_reg.c): the specs kite_route_ws() allocates and
 * the worker-pool size.
 */
#ifndef KITE_CORO_HANDLER_H
#define KITE_CORO_HANDLER_H

#include "coro/coro.h"
#include "kite/handler.h"
#include "loop/loop.h"

/* Spare 64 KiB receive buffers a loop keeps for pinning (see pin() in handler.c). */
#define KITE__HLOOP_SPARES 2u

/* What a loop's handlers share. Loop thread only. */
struct kite__hloop {
    struct kite__hloop *next; /* this thread's list */
    struct kite_loop *loop;
    const struct kite_allocator *alloc; /* the loop's: receive buffers must match it */
    struct kite__coro_sched *sched;
    struct kite__workers *workers; /* blocking calls; NULL until the first one */
    uint8_t *spare[KITE__HLOOP_SPARES];
    unsigned nspare;
    size_t live;   /* handlers whose coroutine exists */
    size_t pinned; /* receive buffers held by suspended handlers */
    uint64_t resumes; /* handler resumptions, for tests and tuning */
    struct kite_loop_task idle; /* deferred: free the struct if still unused */
    bool idle_queued;
};

/* This thread's state for `loop`, created on first use. NULL when out of memory. */
struct kite__hloop *kite__hloop_get(struct kite_loop *loop);
/* Count a handler in / out; the last one out frees the state at the end of the
 * iteration (unless another comes in first). */
void kite__hloop_use(struct kite__hloop *hl);
void kite__hloop_unuse(struct kite__hloop *hl);
/* The worker pool, started on first use with the registry's thread count. */
int kite__hloop_workers(struct kite__hloop *hl, struct kite__workers **out);

/* Counters of one loop's handler state, as seen from its thread. */
struct kite__handler_stats {
    size_t live;   /* handlers with a coroutine */
    size_t pinned; /* receive buffers held for suspended handlers */
    size_t spare;  /* spare receive buffers */
    bool workers;  /* the worker pool is running */
    uint64_t resumes; /* handler resumptions so far */
    struct kite__coro_stats coro;
};
/* False when this thread has no handler state for `loop` (none ever, or freed). */
bool kite__handler_stats(const struct kite_loop *loop, struct kite__handler_stats *st);

/* ---- registry (handler_reg.c) ---------------------------------------------------------- */

/* A spec kite_route_ws() made, registered under its app; freed with the app. */
struct kite_handler_spec *kite__handler_spec_new(struct kite_app *app, kite_handler_fn *fn,
                                                 void *ud);
void kite__handler_spec_drop(struct kite_app *app, struct kite_handler_spec *spec);
/* Worker threads configured for the app that runs `loop` (0: none configured). */
unsigned kite__handler_threads_for(const struct kite_loop *loop);

/*
 * Release what the registry holds for `app` (its specs and settings). Called by
 * kite_app_free() through the server's teardown hook (kite__app_add_teardown), once no
 * session of the app can start any more. Idempotent; unknown apps are ignored.
 */
void kite__handler_app_free(const struct kite_app *app);

/* True when `r` is a route whose sessions run handlers (its spec in *spec). */
bool kite__route_handler_spec(struct kite_route *r, struct kite_handler_spec **spec);

#endif

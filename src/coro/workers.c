/*
 * Worker pool: blocking work from coroutines (DESIGN.md §4, docs/coroutines.md).
 *
 * A handler coroutine must never block its loop thread. kite__coro_run_blocking()
 * queues the call for a pool thread and suspends the coroutine; the worker hands the
 * finished job back to the coroutine's own loop through the post callback given at
 * pool creation, and the loop thread resumes the coroutine. The pool knows nothing of
 * loops beyond that callback.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "coro/coro.h"
#include "util/util.h"

/* More threads than this is a configuration mistake, not a pool. */
#define MAX_THREADS 1024u

struct kite__workers {
    const struct kite_allocator *alloc; /* allocated this struct and `threads` */
    kite__workers_post_fn *post;        /* completion path to an owner's thread */
    void *post_ud;
    pthread_mutex_t mu; /* guards everything below but post_failures */
    pthread_cond_t cv;  /* a job was queued, or stop */
    struct kite__work *head, *tail; /* FIFO of queued jobs */
    unsigned queued;                /* jobs in the FIFO */
    unsigned cap;                   /* bound on queued */
    bool stopping;                  /* no more submits; workers exit */
    unsigned nthreads;              /* started threads */
    pthread_t *threads;
    atomic_ulong post_failures;
};

void kite__work_complete(struct kite__work *work)
{
    work->done(work);
}

/* After this the job belongs to its owner's thread: not one more touch here. */
static void deliver(struct kite__workers *w, struct kite__work *work)
{
    if (w->post(w->post_ud, work) != 0)
        atomic_fetch_add_explicit(&w->post_failures, 1, memory_order_relaxed);
}

static struct kite__work *pop(struct kite__workers *w)
{
    struct kite__work *work = w->head;
    w->head = work->next;
    if (!w->head)
        w->tail = NULL;
    w->queued--;
    work->next = NULL;
    return work;
}

static void *worker_main(void *arg)
{
    struct kite__workers *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->stopping)
            break; /* what is still queued is cancelled by shutdown */
        struct kite__work *work = pop(w);
        pthread_mutex_unlock(&w->mu);
        work->result = work->fn(work->arg);
        work->status = KITE_OK;
        deliver(w, work);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Worker threads take no asynchronous signals: SIGINT, SIGTERM and the like belong to
 * the application's threads. Faults stay unblocked so they are reported as usual. */
static void block_async_signals(sigset_t *old)
{
    sigset_t set;
    sigfillset(&set);
    sigdelset(&set, SIGSEGV);
    sigdelset(&set, SIGBUS);
    sigdelset(&set, SIGFPE);
    sigdelset(&set, SIGILL);
    sigdelset(&set, SIGTRAP);
    sigdelset(&set, SIGABRT);
    pthread_sigmask(SIG_SETMASK, &set, old);
}

static int start_threads(struct kite__workers *w, unsigned n)
{
    sigset_t old;
    int rc = 0;
    block_async_signals(&old);
    for (; w->nthreads < n; w->nthreads++) {
        rc = pthread_create(&w->threads[w->nthreads], NULL, worker_main, w);
        if (rc != 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc ? -rc : KITE_OK;
}

int kite__workers_new(const struct kite_allocator *a, unsigned nthreads, unsigned queue_cap,
                      kite__workers_post_fn *post, void *post_ud, struct kite__workers **out)
{
    unsigned n = nthreads ? nthreads : KITE__WORKERS_THREADS_DEFAULT;
    if (!post || !out || n > MAX_THREADS)
        return KITE_ERR_INVALID;
    struct kite__workers *w = kite__calloc(a, sizeof *w);
    if (!w)
        return KITE_ERR_NOMEM;
    w->threads = kite__calloc(a, n * sizeof *w->threads);
    if (!w->threads) {
        kite__free(a, w);
        return KITE_ERR_NOMEM;
    }
    w->alloc = a;
    w->post = post;
    w->post_ud = post_ud;
    w->cap = queue_cap ? queue_cap : KITE__WORKERS_QUEUE_DEFAULT;
    atomic_init(&w->post_failures, 0);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    int rc = start_threads(w, n);
    if (rc != KITE_OK) {
        kite__workers_free(w);
        return rc;
    }
    *out = w;
    return KITE_OK;
}

int kite__workers_submit(struct kite__workers *w, struct kite__work *work)
{
    if (!w || !work || !work->fn || !work->done)
        return KITE_ERR_INVALID;
    int rc = KITE_OK;
    pthread_mutex_lock(&w->mu);
    if (w->stopping) {
        rc = KITE_ERR_CLOSED;
    } else if (w->queued >= w->cap) {
        rc = KITE_ERR_LIMIT;
    } else {
        work->next = NULL;
        work->result = NULL;
        work->status = KITE_OK;
        if (w->tail)
            w->tail->next = work;
        else
            w->head = work;
        w->tail = work;
        w->queued++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void kite__workers_shutdown(struct kite__workers *w)
{
    pthread_mutex_lock(&w->mu);
    bool first = !w->stopping;
    w->stopping = true;
    struct kite__work *cancelled = w->head;
    w->head = w->tail = NULL;
    w->queued = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (!first)
        return;
    while (cancelled) {
        struct kite__work *work = cancelled;
        cancelled = work->next;
        work->next = NULL;
        work->result = NULL;
        work->status = KITE_ERR_CLOSED;
        deliver(w, work);
    }
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);
    w->nthreads = 0;
}

void kite__workers_free(struct kite__workers *w)
{
    if (!w)
        return;
    kite__workers_shutdown(w);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    kite__free(w->alloc, w->threads);
    kite__free(w->alloc, w);
}

unsigned long kite__workers_post_failures(const struct kite__workers *w)
{
    return atomic_load_explicit(&w->post_failures, memory_order_relaxed);
}

/* ---- from a coroutine -------------------------------------------------------------- */

/* A blocking call's state lives on the waiting coroutine's own stack; a hold keeps
 * that stack mapped until the completion has run, even if the coroutine is freed. */
struct blocking_call {
    struct kite__work work; /* first: the completion gets this pointer back */
    struct kite__coro *co;
    bool done;
};

/* On the coroutine's own thread, through the post callback. */
static void blocking_done(struct kite__work *work)
{
    struct blocking_call *call = (struct blocking_call *)work;
    struct kite__coro *co = call->co;
    call->done = true;
    if (kite__coro_release(co))
        return; /* it was freed while waiting: nobody to wake */
    (void)kite__coro_resume(co);
}

int kite__coro_run_blocking(struct kite__workers *w, kite__work_fn *fn, void *arg, void **result)
{
    struct kite__coro *co = kite__coro_current();
    if (!co)
        return KITE_ERR_STATE;
    if (!w || !fn)
        return KITE_ERR_INVALID;
    struct blocking_call call = {
        .work = {.fn = fn,
                 .arg = arg,
                 .done = blocking_done,
                 .owner = kite__coro_sched_owner(kite__coro_sched_of(co))},
        .co = co,
        .done = false,
    };
    kite__coro_hold(co);
    int rc = kite__workers_submit(w, &call.work);
    if (rc != KITE_OK) {
        kite__coro_release(co);
        return rc;
    }
    /* Any other resume before the completion is absorbed here. */
    while (!call.done)
        kite__coro_yield();
    if (call.work.status == KITE_OK && result)
        *result = call.work.result;
    return call.work.status;
}

/*
 * Sequential handlers: per-loop state (scheduler, spare receive buffers, worker pool),
 * the per-app registry, and the route functions (handler.h).
 */
#include <pthread.h>

#include "coro/handler.h"
#include "server/server.h"

/* ---- per-loop state ------------------------------------------------------------------------ */

/* Loops this thread has handler state for. A thread runs few loops: a list will do. */
static _Thread_local struct kite__hloop *tls_hloops;

static void hloop_free(struct kite__hloop *hl)
{
    kite__workers_free(hl->workers); /* no handler left, so no call in flight: quick */
    kite__coro_sched_free(hl->sched);
    for (unsigned i = 0; i < hl->nspare; i++)
        kite__free(hl->alloc, hl->spare[i]);
    for (struct kite__hloop **pp = &tls_hloops; *pp; pp = &(*pp)->next) {
        if (*pp == hl) {
            *pp = hl->next;
            break;
        }
    }
    kite__free(hl->alloc, hl);
}

struct kite__hloop *kite__hloop_get(struct kite_loop *loop)
{
    for (struct kite__hloop *hl = tls_hloops; hl; hl = hl->next)
        if (hl->loop == loop)
            return hl;
    const struct kite_allocator *a = kite__loop_allocator(loop);
    struct kite__hloop *hl = kite__calloc(a, sizeof(*hl));
    if (!hl)
        return NULL;
    hl->sched = kite__coro_sched_new(a);
    if (!hl->sched) {
        kite__free(a, hl);
        return NULL;
    }
    kite__coro_sched_set_owner(hl->sched, loop);
    hl->loop = loop;
    hl->alloc = a;
    hl->next = tls_hloops;
    tls_hloops = hl;
    return hl;
}

void kite__hloop_use(struct kite__hloop *hl)
{
    hl->live++;
}

/* End of an iteration in which the last handler went away: free unless one came. */
static void idle_check(struct kite_loop *loop, void *arg)
{
    struct kite__hloop *hl = arg;
    KITE_UNUSED(loop);
    hl->idle_queued = false;
    if (hl->live == 0)
        hloop_free(hl);
}

void kite__hloop_unuse(struct kite__hloop *hl)
{
    if (--hl->live > 0 || hl->idle_queued)
        return;
    hl->idle_queued = true;
    kite__loop_defer(hl->loop, &hl->idle, idle_check, hl);
}

bool kite__handler_stats(const struct kite_loop *loop, struct kite__handler_stats *st)
{
    for (struct kite__hloop *hl = tls_hloops; hl; hl = hl->next) {
        if (hl->loop != loop)
            continue;
        st->live = hl->live;
        st->pinned = hl->pinned;
        st->spare = hl->nspare;
        st->workers = hl->workers != NULL;
        st->resumes = hl->resumes;
        kite__coro_sched_stats(hl->sched, &st->coro);
        return true;
    }
    return false;
}

/* ---- the worker pool --------------------------------------------------------------------------- */

static void job_posted(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    kite__work_complete(arg);
}

/* From a worker thread: hand the finished job to its loop (coro.h's recipe). If the
 * loop is already being freed the completion is dropped and the handler stays parked
 * (its loop is gone); the reference taken at submission is released here instead. */
static int post_job(void *ud, struct kite__work *w)
{
    KITE_UNUSED(ud);
    struct kite_loop *loop = w->owner;
    int rc = kite_loop_post_task(loop, (struct kite_loop_task *)(void *)w->post_space, job_posted,
                                 w);
    if (rc != KITE_OK)
        kite__loop_unref(loop);
    return rc;
}

int kite__hloop_workers(struct kite__hloop *hl, struct kite__workers **out)
{
    if (!hl->workers) {
        unsigned n = kite__handler_threads_for(hl->loop);
        int rc = kite__workers_new(hl->alloc, n, 0, post_job, NULL, &hl->workers);
        if (rc != KITE_OK)
            return rc;
    }
    *out = hl->workers;
    return KITE_OK;
}

/* ---- per-app registry ----------------------------------------------------------------------------- */

/*
 * What kite keeps for an app: the specs kite_route_ws() allocated and the pool size.
 * Keyed by the app's address; `loop` is recorded whenever the app is seen so the pool can
 * be sized from the loop thread without touching the app. The registry is process-wide
 * bookkeeping, not part of any one object, so it uses the default allocator: an app's
 * own allocator could be gone by the time a stale entry is released.
 */
struct spec_node {
    struct kite_handler_spec spec; /* first: the route's user data points here */
    struct spec_node *next;
};

struct app_entry {
    struct app_entry *next;
    const struct kite_app *app;
    const struct kite_loop *loop;
    unsigned threads;                   /* 0: the default */
    struct spec_node *specs;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct app_entry *reg_head;

static void app_teardown(struct kite_app *app, void *arg)
{
    (void)arg;
    kite__handler_app_free(app);
}

/* Find or make the entry of `app`; reg_mu held. A new entry is released by
 * kite_app_free() through the server's teardown hook (if its few slots were all taken,
 * the entry stays reachable here until exit, which is harmless). */
static struct app_entry *entry_get(struct kite_app *app)
{
    struct app_entry *e = reg_head;
    while (e && e->app != app)
        e = e->next;
    if (!e) {
        e = kite__calloc(NULL, sizeof(*e));
        if (!e)
            return NULL;
        e->app = app;
        e->next = reg_head;
        reg_head = e;
        (void)kite__app_add_teardown(app, app_teardown, NULL);
    }
    e->loop = app->loop;
    return e;
}

struct kite_handler_spec *kite__handler_spec_new(struct kite_app *app, kite_handler_fn *fn,
                                                 void *ud)
{
    pthread_mutex_lock(&reg_mu);
    struct app_entry *e = entry_get(app);
    struct spec_node *n = e ? kite__calloc(NULL, sizeof(*n)) : NULL;
    if (n) {
        n->spec.fn = fn;
        n->spec.ud = ud;
        n->next = e->specs;
        e->specs = n;
    }
    pthread_mutex_unlock(&reg_mu);
    return n ? &n->spec : NULL;
}

void kite__handler_spec_drop(struct kite_app *app, struct kite_handler_spec *spec)
{
    pthread_mutex_lock(&reg_mu);
    for (struct app_entry *e = reg_head; e; e = e->next) {
        if (e->app != app)
            continue;
        for (struct spec_node **pp = &e->specs; *pp; pp = &(*pp)->next) {
            if (&(*pp)->spec == spec) {
                struct spec_node *n = *pp;
                *pp = n->next;
                kite__free(NULL, n);
                break;
            }
        }
        break;
    }
    pthread_mutex_unlock(&reg_mu);
}

unsigned kite__handler_threads_for(const struct kite_loop *loop)
{
    unsigned n = 0;
    pthread_mutex_lock(&reg_mu);
    for (struct app_entry *e = reg_head; e && !n; e = e->next)
        if (e->loop == loop)
            n = e->threads;
    pthread_mutex_unlock(&reg_mu);
    return n;
}

void kite__handler_app_free(const struct kite_app *app)
{
    pthread_mutex_lock(&reg_mu);
    for (struct app_entry **pp = &reg_head; *pp; pp = &(*pp)->next) {
        struct app_entry *e = *pp;
        if (e->app != app)
            continue;
        *pp = e->next;
        while (e->specs) {
            struct spec_node *n = e->specs;
            e->specs = n->next;
            kite__free(NULL, n);
        }
        kite__free(NULL, e);
        break;
    }
    pthread_mutex_unlock(&reg_mu);
}

int kite_app_set_handler_threads(struct kite_app *app, unsigned threads)
{
    if (!app || threads == 0 || threads > 1024)
        return KITE_ERR_INVALID;
    pthread_mutex_lock(&reg_mu);
    struct app_entry *e = entry_get(app);
    if (e)
        e->threads = threads;
    pthread_mutex_unlock(&reg_mu);
    return e ? KITE_OK : KITE_ERR_NOMEM;
}

/* ---- routes --------------------------------------------------------------------------------------- */

static struct kite_route *handler_route(struct kite_app *app, const char *path,
                                        kite_handler_fn *fn, void *ud, bool raw)
{
    if (!app || !path || !fn)
        return NULL;
    struct kite_handler_spec *spec = kite__handler_spec_new(app, fn, ud);
    if (!spec)
        return NULL;
    const struct kite_ws_callbacks *cb = kite_handler_callbacks();
    struct kite_route *r = raw ? kite_route_ws_raw_callbacks(app, path, cb, spec)
                               : kite_route_ws_callbacks(app, path, cb, spec);
    if (!r)
        kite__handler_spec_drop(app, spec);
    return r;
}

struct kite_route *kite_route_ws(struct kite_app *app, const char *path, kite_handler_fn *fn,
                                 void *ud)
{
    return handler_route(app, path, fn, ud, false);
}

struct kite_route *kite_route_ws_raw(struct kite_app *app, const char *path, kite_handler_fn *fn,
                                     void *ud)
{
    return handler_route(app, path, fn, ud, true);
}

int kite_route_set_stack_size(struct kite_route *r, size_t bytes)
{
    struct kite_handler_spec *spec;
    if (!kite__route_handler_spec(r, &spec) || bytes < KITE__CORO_STACK_MIN ||
        bytes > KITE__CORO_STACK_MAX)
        return KITE_ERR_INVALID;
    spec->stack_size = bytes;
    return KITE_OK;
}

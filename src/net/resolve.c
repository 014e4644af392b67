/*
 * Background name resolution (net/resolve.h).
 *
 * Requests go on a process-wide queue served by up to KITE__RESOLVE_THREADS detached
 * helper threads, started when a request finds no idle one and exiting after
 * IDLE_SECONDS without work. A helper runs getaddrinfo and posts the request back to its
 * loop with the task embedded in it, so delivering costs no allocation and cannot fail
 * for lack of memory.
 *
 * Lifetime: each request in flight holds a reference on its loop, so the loop's eventfd
 * and memory outlive kite_loop_free() until the helper has posted (or found the loop
 * closing and dropped the request). Cancelling only sets a flag: the helper still owns
 * the request while getaddrinfo runs, and the loop frees it when it comes back.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "net/resolve.h"

#define IDLE_SECONDS 5

struct kite__resolve {
    struct kite_loop_task task;  /* delivery to the loop */
    struct kite__resolve *qnext; /* helper queue */
    struct kite_loop *loop;
    kite__resolve_cb *cb;
    void *arg;
    atomic_bool cancelled;
    int status;
    uint16_t port;
    size_t n;
    struct kite__addr addrs[KITE__RESOLVE_MAX];
    char host[]; /* NUL-terminated copy */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct kite__resolve *head, **tail;
    unsigned nthreads; /* helpers alive */
    unsigned nidle;    /* helpers waiting for work */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, &pool.head, 0, 0};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* A forked child has none of the parent's helper threads; requests queued by the
 * parent's loops are the parent's business. Start from scratch. */
static void atfork_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.cond, NULL);
    pool.head = NULL;
    pool.tail = &pool.head;
    pool.nthreads = 0;
    pool.nidle = 0;
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

static void free_req(struct kite__resolve *r)
{
    kite__free(kite__loop_allocator(r->loop), r);
}

static int map_gai_error(int rc)
{
    if (rc == EAI_MEMORY)
        return KITE_ERR_NOMEM;
    return KITE_ERR_RESOLVE;
}

static void run_getaddrinfo(struct kite__resolve *r)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)r->port);
    int rc = getaddrinfo(r->host, service, &hints, &res);
    if (rc != 0) {
        r->status = map_gai_error(rc);
        return;
    }
    for (struct addrinfo *ai = res; ai && r->n < KITE__RESOLVE_MAX; ai = ai->ai_next)
        if (kite__addr_from_sockaddr(&r->addrs[r->n], ai->ai_addr, ai->ai_addrlen) == KITE_OK)
            r->n++;
    freeaddrinfo(res);
    r->status = r->n ? KITE_OK : KITE_ERR_RESOLVE;
}

/* On the loop thread: hand the result over, unless cancelled or the loop is closing. */
static void deliver(struct kite_loop *loop, void *arg)
{
    struct kite__resolve *r = arg;
    if (!atomic_load(&r->cancelled) && !loop->closing)
        r->cb(loop, r->status, r->status == KITE_OK ? r->addrs : NULL, r->n, r->arg);
    free_req(r);
}

static void finish(struct kite__resolve *r)
{
    struct kite_loop *loop = r->loop; /* r may be freed by the loop once posted */
    if (kite_loop_post_task(loop, &r->task, deliver, r) != KITE_OK)
        free_req(r); /* the loop is closing: nobody is waiting */
    kite__loop_unref(loop);
}

static struct kite__resolve *next_request(void)
{
    while (!pool.head) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += IDLE_SECONDS;
        pool.nidle++;
        int rc = pthread_cond_timedwait(&pool.cond, &pool.lock, &until);
        pool.nidle--;
        if (rc == ETIMEDOUT && !pool.head)
            return NULL;
    }
    struct kite__resolve *r = pool.head;
    pool.head = r->qnext;
    if (!pool.head)
        pool.tail = &pool.head;
    return r;
}

static void *helper(void *unused)
{
    KITE_UNUSED(unused);
    pthread_mutex_lock(&pool.lock);
    struct kite__resolve *r;
    while ((r = next_request()) != NULL) {
        pthread_mutex_unlock(&pool.lock);
        if (!atomic_load(&r->cancelled))
            run_getaddrinfo(r);
        finish(r);
        pthread_mutex_lock(&pool.lock);
    }
    pool.nthreads--;
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

static int spawn_helper(void)
{
    pthread_attr_t attr;
    pthread_t tid;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&tid, &attr, helper, NULL);
    pthread_attr_destroy(&attr);
    return -rc;
}

/* Queue `r` and make sure a helper will see it. Called with the pool locked. */
static int enqueue_locked(struct kite__resolve *r)
{
    r->qnext = NULL;
    *pool.tail = r;
    pool.tail = &r->qnext;
    if (pool.nidle == 0 && pool.nthreads < KITE__RESOLVE_THREADS) {
        int rc = spawn_helper();
        if (rc == 0) {
            pool.nthreads++;
        } else if (pool.nthreads == 0) {
            /* No helper at all: take the request back. It is the last in the queue,
             * and the queue is otherwise empty since no helper exists to drain it. */
            pool.head = NULL;
            pool.tail = &pool.head;
            return rc;
        }
    }
    pthread_cond_signal(&pool.cond);
    return KITE_OK;
}

static struct kite__resolve *new_request(struct kite_loop *loop, const char *host,
                                         uint16_t port, kite__resolve_cb *cb, void *arg)
{
    size_t len = strlen(host);
    struct kite__resolve *r = kite__calloc(kite__loop_allocator(loop), sizeof *r + len + 1);
    if (!r)
        return NULL;
    memcpy(r->host, host, len + 1);
    r->loop = loop;
    r->cb = cb;
    r->arg = arg;
    r->port = port;
    atomic_init(&r->cancelled, false);
    return r;
}

int kite__resolve_async(struct kite_loop *loop, const char *host, uint16_t port,
                        kite__resolve_cb *cb, void *arg, struct kite__resolve **req)
{
    if (!loop || !host || !*host || !cb)
        return KITE_ERR_INVALID;
    struct kite__resolve *r = new_request(loop, host, port, cb, arg);
    if (!r)
        return KITE_ERR_NOMEM;
    if (kite__addr_parse(&r->addrs[0], host, port) == KITE_OK) {
        r->n = 1; /* a literal: no lookup, but still answered later, not re-entrantly */
        r->status = KITE_OK;
        kite__loop_defer(loop, &r->task, deliver, r);
    } else {
        pthread_once(&atfork_once, register_atfork);
        kite__loop_ref(loop);
        pthread_mutex_lock(&pool.lock);
        int rc = enqueue_locked(r);
        pthread_mutex_unlock(&pool.lock);
        if (rc < 0) {
            kite__loop_unref(loop);
            free_req(r);
            return rc;
        }
    }
    if (req)
        *req = r;
    return KITE_OK;
}

void kite__resolve_cancel(struct kite__resolve *req)
{
    if (req)
        atomic_store(&req->cancelled, true);
}

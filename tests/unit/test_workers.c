/* Worker pool: blocking calls from coroutines, completions back on the owning thread. */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "coro/coro.h"
#include "test.h"

/* ---- a tiny loop of our own: a locked queue and an eventfd, like the real loop's post */

struct titem {
    struct kite__work *work;
    struct titem *next;
};

struct tloop {
    int efd;
    pthread_mutex_t mu;
    struct titem *head, *tail;
    atomic_int posts;
};

static void tloop_init(struct tloop *l)
{
    l->efd = eventfd(0, EFD_CLOEXEC);
    ASSERT(l->efd >= 0);
    pthread_mutex_init(&l->mu, NULL);
    l->head = l->tail = NULL;
    atomic_init(&l->posts, 0);
}

static void tloop_destroy(struct tloop *l)
{
    ASSERT(l->head == NULL);
    close(l->efd);
    pthread_mutex_destroy(&l->mu);
}

/* The post callback given to the pool: work->owner is the loop of the coroutine's
 * scheduler. Callable from any thread; the queue node lives in the job's post_space,
 * as the real loop's task would, so posting allocates nothing. */
static int tloop_post(void *post_ud, struct kite__work *work)
{
    (void)post_ud;
    _Static_assert(sizeof(struct titem) <= sizeof work->post_space, "node fits");
    struct tloop *l = work->owner;
    struct titem *it = (struct titem *)(void *)work->post_space;
    it->work = work;
    it->next = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    pthread_mutex_unlock(&l->mu);
    atomic_fetch_add(&l->posts, 1);
    uint64_t one = 1;
    ssize_t r = write(l->efd, &one, sizeof one);
    (void)r;
    return 0;
}

/* Wait up to timeout_ms for posted work and run all of it; returns how many ran. */
static int tloop_run_once(struct tloop *l, int timeout_ms)
{
    struct pollfd p = {.fd = l->efd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    uint64_t v;
    ssize_t r = read(l->efd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&l->mu);
    struct titem *it = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->mu);
    int n = 0;
    while (it) {
        struct titem *next = it->next; /* read first: completing may free the node */
        kite__work_complete(it->work);
        it = next;
        n++;
    }
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until *done reaches want (bounded to 20 s). */
static void tloop_run_until(struct tloop *l, atomic_int *done, int want)
{
    double end = now_s() + 20;
    while (atomic_load(done) < want && now_s() < end)
        tloop_run_once(l, 100);
    ASSERT_EQ(atomic_load(done), want);
}

/* ---- a gate that holds a worker job until the test opens it ------------------------- */

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int entered;
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
    g->entered = 0;
}

static void gate_pass(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->entered++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait_entered(struct gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    while (g->entered < n)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---- one blocking call ------------------------------------------------------------------ */

struct call {
    struct kite__workers *w;
    struct gate *gate;     /* if set, the job waits at it */
    long in;
    void *out;
    int rc;
    pthread_t worker_thread, loop_thread, after_thread;
    bool returned;
    atomic_int *done;
};

static void *double_it(void *arg)
{
    struct call *c = arg;
    c->worker_thread = pthread_self();
    if (c->gate)
        gate_pass(c->gate);
    return (void *)(intptr_t)(c->in * 2);
}

static void caller_body(void *arg)
{
    struct call *c = arg;
    c->rc = kite__coro_run_blocking(c->w, double_it, c, &c->out);
    c->after_thread = pthread_self();
    c->returned = true;
    if (c->done)
        atomic_fetch_add(c->done, 1);
}

struct fixture {
    struct tloop loop;
    struct kite__coro_sched *s;
    struct kite__workers *w;
};

static void fixture_init(struct fixture *f, unsigned threads, unsigned cap)
{
    tloop_init(&f->loop);
    f->s = kite__coro_sched_new(NULL);
    ASSERT(f->s != NULL);
    kite__coro_sched_set_owner(f->s, &f->loop);
    ASSERT_EQ(kite__workers_new(NULL, threads, cap, tloop_post, NULL, &f->w), KITE_OK);
}

static void fixture_destroy(struct fixture *f)
{
    kite__workers_free(f->w);
    while (tloop_run_once(&f->loop, 0) > 0)
        ;
    kite__coro_sched_free(f->s);
    tloop_destroy(&f->loop);
}

TEST(workers_blocking_call_resumes_on_own_thread)
{
    struct fixture f;
    fixture_init(&f, 2, 0);
    atomic_int done;
    atomic_init(&done, 0);
    struct call c = {.w = f.w, .in = 21, .done = &done};
    struct kite__coro *co;
    ASSERT_EQ(kite__coro_new(f.s, caller_body, &c, 0, &co), KITE_OK);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK); /* suspended in the blocking call */
    ASSERT(!c.returned);
    tloop_run_until(&f.loop, &done, 1);
    ASSERT(kite__coro_is_done(co));
    ASSERT_EQ(c.rc, KITE_OK);
    ASSERT_EQ((intptr_t)c.out, 42);
    ASSERT(pthread_equal(c.after_thread, pthread_self()));   /* back on the loop thread */
    ASSERT(!pthread_equal(c.worker_thread, pthread_self())); /* fn ran on a worker */
    ASSERT_EQ(kite__workers_post_failures(f.w), 0);
    kite__coro_free(co);
    fixture_destroy(&f);
}

TEST(workers_run_blocking_outside_coroutine)
{
    struct fixture f;
    fixture_init(&f, 1, 0);
    void *out = NULL;
    ASSERT_EQ(kite__coro_run_blocking(f.w, double_it, NULL, &out), KITE_ERR_STATE);
    fixture_destroy(&f);
}

/* ---- many calls, several loops ---------------------------------------------------------- */

#define LOOP_COROS 200
#define CALLS_EACH 5

struct loop_thread {
    struct kite__workers *w;
    atomic_int done;
    int wrong_thread, wrong_result;
};

static void *add_one(void *arg)
{
    return (void *)((intptr_t)arg + 1);
}

struct multi {
    struct loop_thread *lt;
    intptr_t base;
};

static void multi_body(void *arg)
{
    struct multi *m = arg;
    pthread_t me = pthread_self();
    for (int i = 0; i < CALLS_EACH; i++) {
        void *out = NULL;
        int rc = kite__coro_run_blocking(m->lt->w, add_one, (void *)(m->base + i), &out);
        if (rc != KITE_OK || (intptr_t)out != m->base + i + 1)
            m->lt->wrong_result++;
        if (!pthread_equal(pthread_self(), me))
            m->lt->wrong_thread++;
    }
    atomic_fetch_add(&m->lt->done, 1);
}

static void *loop_main(void *arg)
{
    struct loop_thread *lt = arg;
    struct tloop l;
    tloop_init(&l);
    struct kite__coro_sched *s = kite__coro_sched_new(NULL);
    if (!s)
        return NULL;
    kite__coro_sched_set_owner(s, &l);
    static _Thread_local struct multi m[LOOP_COROS];
    struct kite__coro *cos[LOOP_COROS];
    for (int i = 0; i < LOOP_COROS; i++) {
        m[i].lt = lt;
        m[i].base = i * 100;
        if (kite__coro_new(s, multi_body, &m[i], 64 * 1024, &cos[i]) != KITE_OK)
            return NULL;
        kite__coro_resume(cos[i]);
    }
    double end = now_s() + 20;
    while (atomic_load(&lt->done) < LOOP_COROS && now_s() < end)
        tloop_run_once(&l, 100);
    for (int i = 0; i < LOOP_COROS; i++)
        kite__coro_free(cos[i]);
    kite__coro_sched_free(s);
    tloop_destroy(&l);
    return NULL;
}

/* Two loop threads share one pool; each coroutine always comes back on its own loop. */
TEST(workers_two_loops_share_a_pool)
{
    struct kite__workers *w;
    ASSERT_EQ(kite__workers_new(NULL, 3, 0, tloop_post, NULL, &w), KITE_OK);
    struct loop_thread lt[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        lt[i].w = w;
        atomic_init(&lt[i].done, 0);
        lt[i].wrong_thread = lt[i].wrong_result = 0;
        ASSERT_EQ(pthread_create(&th[i], NULL, loop_main, &lt[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(pthread_join(th[i], NULL), 0);
        ASSERT_EQ(atomic_load(&lt[i].done), LOOP_COROS);
        ASSERT_EQ(lt[i].wrong_thread, 0);
        ASSERT_EQ(lt[i].wrong_result, 0);
    }
    kite__workers_free(w);
}

/* ---- concurrency ------------------------------------------------------------------------ */

static atomic_int running, max_running;

static void *sleepy(void *arg)
{
    int now = atomic_fetch_add(&running, 1) + 1;
    int seen = atomic_load(&max_running);
    while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now))
        ;
    usleep(2000);
    atomic_fetch_sub(&running, 1);
    return arg;
}

struct sleeper {
    struct kite__workers *w;
    atomic_int *done;
    intptr_t id;
    int ok;
};

static void sleeper_body(void *arg)
{
    struct sleeper *sl = arg;
    void *out = NULL;
    int rc = kite__coro_run_blocking(sl->w, sleepy, (void *)sl->id, &out);
    sl->ok = rc == KITE_OK && (intptr_t)out == sl->id;
    atomic_fetch_add(sl->done, 1);
}

#define SLEEPERS 1000

/* 1000 coroutines wait at once; the four workers run their calls in parallel. */
TEST(workers_many_concurrent_blocking_calls)
{
    struct fixture f;
    fixture_init(&f, 4, SLEEPERS);
    atomic_init(&running, 0);
    atomic_init(&max_running, 0);
    atomic_int done;
    atomic_init(&done, 0);
    struct sleeper *sl = calloc(SLEEPERS, sizeof *sl);
    struct kite__coro **cos = calloc(SLEEPERS, sizeof *cos);
    ASSERT(sl && cos);
    double t0 = now_s();
    for (int i = 0; i < SLEEPERS; i++) {
        sl[i] = (struct sleeper){.w = f.w, .done = &done, .id = i + 1};
        ASSERT_EQ(kite__coro_new(f.s, sleeper_body, &sl[i], 64 * 1024, &cos[i]), KITE_OK);
        ASSERT_EQ(kite__coro_resume(cos[i]), KITE_OK);
    }
    tloop_run_until(&f.loop, &done, SLEEPERS);
    double took = now_s() - t0;
    printf("# %d blocking calls of 2 ms on 4 workers: %.0f ms, %d at most in parallel\n",
           SLEEPERS, took * 1000, atomic_load(&max_running));
    ASSERT(atomic_load(&max_running) <= 4); /* never more than the pool's threads */
    ASSERT(atomic_load(&max_running) >= 2); /* and they do run side by side */
    for (int i = 0; i < SLEEPERS; i++) {
        ASSERT(sl[i].ok);
        ASSERT(kite__coro_is_done(cos[i]));
        kite__coro_free(cos[i]);
    }
    free(sl);
    free(cos);
    fixture_destroy(&f);
}

/* ---- bounded queue and shutdown --------------------------------------------------------- */

struct plain_job {
    struct kite__work work;
    atomic_int *done;
    struct gate *gate;
};

static void *gated(void *arg)
{
    struct plain_job *j = arg;
    if (j->gate)
        gate_pass(j->gate);
    return j;
}

static void plain_done(struct kite__work *work)
{
    struct plain_job *j = (struct plain_job *)work;
    atomic_fetch_add(j->done, 1);
}

static void plain_init(struct plain_job *j, struct tloop *l, atomic_int *done, struct gate *g)
{
    memset(j, 0, sizeof *j);
    j->work.fn = gated;
    j->work.arg = j;
    j->work.done = plain_done;
    j->work.owner = l;
    j->done = done;
    j->gate = g;
}

TEST(workers_queue_is_bounded)
{
    struct fixture f;
    fixture_init(&f, 1, 2);
    struct gate g;
    gate_init(&g);
    atomic_int done;
    atomic_init(&done, 0);
    struct plain_job j[4];
    for (int i = 0; i < 4; i++)
        plain_init(&j[i], &f.loop, &done, &g);
    ASSERT_EQ(kite__workers_submit(f.w, &j[0].work), KITE_OK);
    gate_wait_entered(&g, 1); /* the only worker is busy with j[0] */
    ASSERT_EQ(kite__workers_submit(f.w, &j[1].work), KITE_OK);
    ASSERT_EQ(kite__workers_submit(f.w, &j[2].work), KITE_OK);
    ASSERT_EQ(kite__workers_submit(f.w, &j[3].work), KITE_ERR_LIMIT); /* 2 queued: full */
    j[3].work.fn = NULL;
    ASSERT_EQ(kite__workers_submit(f.w, &j[3].work), KITE_ERR_INVALID);
    gate_open(&g);
    tloop_run_until(&f.loop, &done, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(j[i].work.status, KITE_OK);
        ASSERT(j[i].work.result == &j[i]);
    }
    fixture_destroy(&f);
}

static void *open_later(void *arg)
{
    usleep(50 * 1000);
    gate_open(arg);
    return NULL;
}

#define PENDING 6

/* Shutdown lets the running job finish (KITE_OK) and cancels the queued ones
 * (KITE_ERR_CLOSED); every waiting coroutine is resumed with its outcome. */
TEST(workers_shutdown_with_jobs_pending)
{
    struct fixture f;
    fixture_init(&f, 1, 0);
    struct gate g;
    gate_init(&g);
    atomic_int done;
    atomic_init(&done, 0);
    struct call c[PENDING];
    struct kite__coro *cos[PENDING];
    void *sentinel = (void *)(intptr_t)-7;
    for (int i = 0; i < PENDING; i++) {
        c[i] = (struct call){.w = f.w, .gate = &g, .in = i + 1, .out = sentinel, .done = &done};
        ASSERT_EQ(kite__coro_new(f.s, caller_body, &c[i], 0, &cos[i]), KITE_OK);
        ASSERT_EQ(kite__coro_resume(cos[i]), KITE_OK);
        if (i == 0)
            gate_wait_entered(&g, 1); /* the first call is running before the rest queue */
    }
    pthread_t opener;
    ASSERT_EQ(pthread_create(&opener, NULL, open_later, &g), 0);
    kite__workers_shutdown(f.w); /* waits for the running job, cancels the others */
    ASSERT_EQ(pthread_join(opener, NULL), 0);
    ASSERT_EQ(atomic_load(&f.loop.posts), PENDING); /* every completion was posted */
    struct plain_job late;
    plain_init(&late, &f.loop, &done, NULL);
    ASSERT_EQ(kite__workers_submit(f.w, &late.work), KITE_ERR_CLOSED);
    tloop_run_until(&f.loop, &done, PENDING);
    ASSERT_EQ(c[0].rc, KITE_OK);
    ASSERT_EQ((intptr_t)c[0].out, 2);
    for (int i = 1; i < PENDING; i++) {
        ASSERT_EQ(c[i].rc, KITE_ERR_CLOSED);
        ASSERT(c[i].out == sentinel); /* untouched */
        ASSERT(pthread_equal(c[i].after_thread, pthread_self()));
    }
    for (int i = 0; i < PENDING; i++)
        kite__coro_free(cos[i]);
    kite__workers_shutdown(f.w); /* idempotent */
    fixture_destroy(&f);
}

/* A coroutine released while its call runs keeps its stack until the completion;
 * it is never resumed. A resume by someone else while it waits is absorbed. */
TEST(workers_coroutine_freed_or_poked_while_waiting)
{
    struct fixture f;
    fixture_init(&f, 1, 0);
    struct gate g;
    gate_init(&g);
    atomic_int done;
    atomic_init(&done, 0);
    struct call c = {.w = f.w, .gate = &g, .in = 5};
    struct kite__coro *co;
    ASSERT_EQ(kite__coro_new(f.s, caller_body, &c, 0, &co), KITE_OK);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK); /* a spurious resume: it yields again */
    ASSERT(!c.returned);
    ASSERT_EQ(kite__coro_free(co), KITE_OK);
    struct kite__coro_stats st;
    kite__coro_sched_stats(f.s, &st);
    ASSERT_EQ(st.live, 1); /* held by the pending call */
    gate_open(&g);
    double end = now_s() + 20;
    while (atomic_load(&f.loop.posts) < 1 && now_s() < end)
        usleep(1000);
    while (tloop_run_once(&f.loop, 100) == 0 && now_s() < end)
        ;
    kite__coro_sched_stats(f.s, &st);
    ASSERT_EQ(st.live, 0);
    ASSERT_EQ(st.pooled, 1);
    ASSERT(!c.returned);
    fixture_destroy(&f);
}

static int failing_post(void *post_ud, struct kite__work *work)
{
    (void)post_ud;
    (void)work;
    return KITE_ERR_CLOSED;
}

TEST(workers_failed_posts_are_counted)
{
    struct kite__workers *w;
    ASSERT_EQ(kite__workers_new(NULL, 1, 0, failing_post, NULL, &w), KITE_OK);
    atomic_int done;
    atomic_init(&done, 0);
    struct plain_job j;
    plain_init(&j, NULL, &done, NULL);
    ASSERT_EQ(kite__workers_submit(w, &j.work), KITE_OK);
    double end = now_s() + 20;
    while (kite__workers_post_failures(w) < 1 && now_s() < end)
        usleep(1000);
    ASSERT_EQ(kite__workers_post_failures(w), 1);
    ASSERT_EQ(atomic_load(&done), 0);
    kite__workers_free(w);
}

TEST(workers_new_arguments_and_out_of_memory)
{
    struct kite__workers *w = NULL;
    ASSERT_EQ(kite__workers_new(NULL, 1, 0, NULL, NULL, &w), KITE_ERR_INVALID);
    ASSERT_EQ(kite__workers_new(NULL, 100000, 0, tloop_post, NULL, &w), KITE_ERR_INVALID);
    for (long n = 1; n <= 2; n++) {
        struct kite_test_alloc st = {.fail_at = n};
        ASSERT_EQ(kite__workers_new(kite_test_allocator(&st), 2, 0, tloop_post, NULL, &w),
                  KITE_ERR_NOMEM);
        ASSERT(st.failed);
        ASSERT_EQ(st.live, 0);
    }
    struct kite_test_alloc ok = {0};
    ASSERT_EQ(kite__workers_new(kite_test_allocator(&ok), 2, 0, tloop_post, NULL, &w), KITE_OK);
    kite__workers_free(w);
    ASSERT_EQ(ok.live, 0);
    kite__workers_free(NULL);
}

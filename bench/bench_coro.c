/*
 * Coroutine micro-benchmarks (docs/coroutines.md): the cost of a context switch
 * (resume + yield round trip / 2) against glibc's swapcontext measured in the same run,
 * the cost of a coroutine's life (pooled and unpooled stacks), a blocking call through
 * the worker pool, and the memory of 10,000 suspended coroutines (RSS growth / count,
 * stacks included).
 *
 *   bench_coro [samples]     (default 9; pin it: taskset -c 1 bench_coro)
 *
 * Timed figures are medians of `samples` samples. The memory figure is measured once,
 * in a fresh scheduler, from /proc/self/statm.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "coro/coro.h"

#define MAX_SAMPLES 51
#define SWITCH_ROUNDS 2000000
#define LIFE_ROUNDS 200000
#define MMAP_ROUNDS 20000
#define BLOCKING_CALLS 20000
#define MEM_COROS 10000

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void die(const char *what)
{
    fprintf(stderr, "bench_coro: %s failed\n", what);
    exit(1);
}

/* ---- switch: kite ------------------------------------------------------------------- */

static void yielder(void *arg)
{
    (void)arg;
    for (;;)
        kite__coro_yield();
}

static double kite_switch_ns(struct kite__coro *co)
{
    double t0 = now_ns();
    for (int i = 0; i < SWITCH_ROUNDS; i++)
        kite__coro_resume(co);
    return (now_ns() - t0) / (2.0 * SWITCH_ROUNDS);
}

/* ---- switch: swapcontext, the portable baseline -------------------------------------- */

static ucontext_t uc_main, uc_co;

static void uc_body(void)
{
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

/* Separate from main: getcontext returns twice, which would pin main's locals. */
static void uc_setup(void)
{
    static char uc_stack[64 * 1024];
    getcontext(&uc_co);
    uc_co.uc_stack.ss_sp = uc_stack;
    uc_co.uc_stack.ss_size = sizeof uc_stack;
    makecontext(&uc_co, uc_body, 0);
}

static double uc_switch_ns(void)
{
    double t0 = now_ns();
    for (int i = 0; i < SWITCH_ROUNDS / 4; i++)
        swapcontext(&uc_main, &uc_co);
    return (now_ns() - t0) / (2.0 * (SWITCH_ROUNDS / 4));
}

/* ---- a coroutine's life ------------------------------------------------------------------ */

static void quick(void *arg)
{
    (void)arg;
}

static double life_ns(struct kite__coro_sched *s, int rounds)
{
    double t0 = now_ns();
    for (int i = 0; i < rounds; i++) {
        struct kite__coro *co;
        if (kite__coro_new(s, quick, NULL, 0, &co) != KITE_OK)
            die("kite__coro_new");
        kite__coro_resume(co);
        kite__coro_free(co);
    }
    return (now_ns() - t0) / rounds;
}

/* ---- blocking call round trip, through an eventfd loop on this thread ---------------------- */

struct item {
    struct kite__work *work;
    struct item *next;
};

struct bloop {
    int efd;
    pthread_mutex_t mu;
    struct item *head, *tail;
};

/* Like the real loop's kite_loop_post_task: the node lives in the job, no allocation. */
static int bloop_post(void *ud, struct kite__work *work)
{
    (void)ud;
    struct bloop *l = work->owner;
    struct item *it = (struct item *)(void *)work->post_space;
    *it = (struct item){work, NULL};
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    pthread_mutex_unlock(&l->mu);
    uint64_t one = 1;
    ssize_t r = write(l->efd, &one, sizeof one);
    (void)r;
    return 0;
}

static void bloop_run_once(struct bloop *l)
{
    struct pollfd p = {.fd = l->efd, .events = POLLIN};
    if (poll(&p, 1, 1000) <= 0)
        return;
    uint64_t v;
    ssize_t r = read(l->efd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&l->mu);
    struct item *it = l->head;
    l->head = l->tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (it) {
        struct item *next = it->next;
        kite__work_complete(it->work);
        it = next;
    }
}

static void *identity(void *arg)
{
    return arg;
}

struct caller {
    struct kite__workers *w;
    int calls;
    int ok;
};

static void caller_body(void *arg)
{
    struct caller *c = arg;
    for (int i = 0; i < c->calls; i++) {
        void *out;
        if (kite__coro_run_blocking(c->w, identity, c, &out) == KITE_OK && out == c)
            c->ok++;
    }
}

static double blocking_us(struct kite__coro_sched *s, struct bloop *l, struct kite__workers *w)
{
    struct caller c = {.w = w, .calls = BLOCKING_CALLS / 4};
    struct kite__coro *co;
    if (kite__coro_new(s, caller_body, &c, 0, &co) != KITE_OK)
        die("kite__coro_new");
    double t0 = now_ns();
    kite__coro_resume(co);
    while (!kite__coro_is_done(co))
        bloop_run_once(l);
    double t = now_ns() - t0;
    if (c.ok != c.calls)
        die("blocking calls");
    kite__coro_free(co);
    return t / c.calls / 1000.0;
}

/* ---- memory -------------------------------------------------------------------------------- */

static size_t statm_field(int which)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long v[2] = {0, 0};
    if (!f || fscanf(f, "%lu %lu", &v[0], &v[1]) != 2)
        die("reading /proc/self/statm");
    fclose(f);
    return (size_t)v[which] * (size_t)sysconf(_SC_PAGESIZE);
}

/* What a handler waiting in receive looks like: a few frames and a small buffer. */
static void handler_like(void *arg)
{
    volatile char buf[1024];
    memset((char *)buf, 1, sizeof buf);
    kite__coro_yield();
    *(int *)arg += buf[7];
}

static void memory_figure(size_t stack)
{
    struct kite__coro_sched *s = kite__coro_sched_new(NULL);
    struct kite__coro **cos = calloc(MEM_COROS, sizeof *cos);
    if (!s || !cos)
        die("setup");
    memset(cos, 0, MEM_COROS * sizeof *cos);
    int sum = 0;
    size_t rss0 = statm_field(1), vsz0 = statm_field(0);
    for (int i = 0; i < MEM_COROS; i++) {
        if (kite__coro_new(s, handler_like, &sum, stack, &cos[i]) != KITE_OK)
            die("kite__coro_new");
        kite__coro_resume(cos[i]);
    }
    size_t rss1 = statm_field(1), vsz1 = statm_field(0);
    for (int i = 0; i < MEM_COROS; i++) {
        kite__coro_resume(cos[i]);
        kite__coro_free(cos[i]);
    }
    printf("| %4zu KiB stack | %6d | %9.0f B | %8.0f KiB |\n", stack / 1024, MEM_COROS,
           (double)(rss1 - rss0) / MEM_COROS, (double)(vsz1 - vsz0) / MEM_COROS / 1024);
    free(cos);
    kite__coro_sched_free(s);
}

int main(int argc, char **argv)
{
    int samples = argc > 1 ? atoi(argv[1]) : 9;
    if (samples < 1 || samples > MAX_SAMPLES)
        samples = 9;
    struct kite__coro_sched *s = kite__coro_sched_new(NULL);
    struct kite__coro *co;
    if (!s || kite__coro_new(s, yielder, NULL, 0, &co) != KITE_OK)
        die("setup");
    uc_setup();

    double ks[MAX_SAMPLES], us[MAX_SAMPLES], lp[MAX_SAMPLES], lm[MAX_SAMPLES];
    for (int i = 0; i < samples; i++) {
        ks[i] = kite_switch_ns(co);
        us[i] = uc_switch_ns();
        kite__coro_sched_set_pool_cap(s, KITE__CORO_POOL_CAP_DEFAULT);
        lp[i] = life_ns(s, LIFE_ROUNDS / samples + 1);
        kite__coro_sched_set_pool_cap(s, 0);
        lm[i] = life_ns(s, MMAP_ROUNDS / samples + 1);
    }
    printf("kite coroutines (%s switch), median of %d samples\n\n", kite__coro_backend(),
           samples);
    printf("| %-46s | %10s |\n", "operation", "cost");
    printf("|------------------------------------------------|------------|\n");
    printf("| %-46s | %7.1f ns |\n", "context switch (resume+yield round trip / 2)",
           median(ks, samples));
    printf("| %-46s | %7.1f ns |\n", "glibc swapcontext switch (same measure)",
           median(us, samples));
    printf("| %-46s | %7.1f ns |\n", "new + run + free, stack from the pool", median(lp, samples));
    printf("| %-46s | %7.1f ns |\n", "new + run + free, fresh mmap (pool off)",
           median(lm, samples));

    struct bloop l = {.efd = eventfd(0, EFD_CLOEXEC), .head = NULL, .tail = NULL};
    pthread_mutex_init(&l.mu, NULL);
    struct kite__workers *w;
    if (l.efd < 0 || kite__workers_new(NULL, 1, 0, bloop_post, NULL, &w) != KITE_OK)
        die("worker setup");
    kite__coro_sched_set_pool_cap(s, KITE__CORO_POOL_CAP_DEFAULT);
    kite__coro_sched_set_owner(s, &l);
    double bl[MAX_SAMPLES];
    for (int i = 0; i < samples; i++)
        bl[i] = blocking_us(s, &l, w);
    printf("| %-46s | %7.1f us |\n", "run_blocking round trip (1 worker, eventfd loop)",
           median(bl, samples));
    kite__workers_free(w);
    close(l.efd);

    kite__coro_free(co);
    kite__coro_sched_free(s);

    printf("\nmemory of suspended coroutines (each touched ~1 KiB, like a handler waiting "
           "in receive)\n\n");
    printf("| %-14s | %6s | %11s | %12s |\n", "stack", "count", "RSS / coro", "virt / coro");
    printf("|----------------|--------|-------------|--------------|\n");
    memory_figure(64 * 1024);
    memory_figure(256 * 1024);
    return 0;
}

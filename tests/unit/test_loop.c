/* The event loop: life cycle, posting from threads, deferred tasks, before-sleep work,
 * fd watchers, signals. Timers are in test_timer.c. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop.h"
#include "test.h"

static struct kite_loop *new_loop(void)
{
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    ASSERT(loop != NULL);
    return loop;
}

/* Run iterations until *flag is set or `max_ms` have passed. */
static void run_until(struct kite_loop *loop, const volatile int *flag, int max_ms)
{
    uint64_t end = kite__clock_ms() + (uint64_t)max_ms;
    while (!*flag && kite__clock_ms() < end)
        ASSERT_EQ(kite_loop_run_once(loop, 10), KITE_OK);
}

TEST(loop_new_free_and_basics)
{
    struct kite_test_alloc st = {0};
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(kite_test_allocator(&st), &loop), KITE_OK);
    size_t len = 0;
    uint8_t *rx = kite__loop_rxbuf(loop, &len);
    ASSERT(rx != NULL);
    ASSERT_EQ(len, KITE__LOOP_RXBUF_SIZE);
    memset(rx, 0xab, len); /* the whole buffer is ours (ASan checks) */
    ASSERT(kite__loop_allocator(loop) == kite_test_allocator(&st));
    uint64_t t0 = kite_loop_now(loop);
    ASSERT_EQ(kite_loop_now(loop), t0); /* cached: no clock read between iterations */
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT(kite_loop_now(loop) >= t0);
    kite_loop_free(loop);
    ASSERT_EQ(st.live, 0);
    kite_loop_free(NULL);
}

TEST(loop_new_out_of_memory_leaks_nothing)
{
    for (long i = 1; i <= 5; i++) {
        struct kite_test_alloc st = {.fail_at = i};
        struct kite_loop *loop = (struct kite_loop *)1;
        ASSERT_EQ(kite_loop_new(kite_test_allocator(&st), &loop), KITE_ERR_NOMEM);
        ASSERT(loop == NULL);
        ASSERT_EQ(st.live, 0);
    }
}

/* ---- posting from threads -------------------------------------------------------- */

#define POSTERS 4
#define POSTS_EACH 20000

struct post_state {
    struct kite_loop *loop;
    int seen[POSTERS][POSTS_EACH]; /* times each item ran */
    int last[POSTERS];             /* last index run per poster: checks FIFO order */
    int order_errors;
    int total;
    int done;
    int wrong_thread;
};

struct post_item {
    struct post_state *st;
    int poster, index;
};

static void on_post(struct kite_loop *loop, void *arg)
{
    struct post_item *it = arg;
    struct post_state *st = it->st;
    if (!kite_loop_is_current(loop))
        st->wrong_thread++;
    st->seen[it->poster][it->index]++;
    if (it->index != st->last[it->poster] + 1)
        st->order_errors++;
    st->last[it->poster] = it->index;
    if (++st->total == POSTERS * POSTS_EACH)
        st->done = 1;
    free(it);
}

struct poster_arg {
    struct post_state *st;
    int poster;
};

static void *poster_thread(void *p)
{
    struct poster_arg *a = p;
    for (int i = 0; i < POSTS_EACH; i++) {
        struct post_item *it = malloc(sizeof *it);
        it->st = a->st;
        it->poster = a->poster;
        it->index = i;
        while (kite_loop_post(a->st->loop, on_post, it) != KITE_OK)
            ;
    }
    return NULL;
}

struct done_hook {
    struct kite__hook h;
    struct post_state *st;
};

static void stop_when_done(struct kite_loop *loop, struct kite__hook *h)
{
    struct done_hook *d = kite__container_of(h, struct done_hook, h);
    if (d->st->done)
        kite_loop_stop(loop);
}

TEST(loop_post_from_threads_runs_each_item_once_in_order)
{
    struct post_state *st = calloc(1, sizeof *st);
    st->loop = new_loop();
    for (int p = 0; p < POSTERS; p++)
        st->last[p] = -1;
    struct done_hook hook = {.st = st};
    kite__loop_hook_add(st->loop, &hook.h, stop_when_done);
    pthread_t th[POSTERS];
    struct poster_arg args[POSTERS];
    for (int p = 0; p < POSTERS; p++) {
        args[p] = (struct poster_arg){st, p};
        ASSERT_EQ(pthread_create(&th[p], NULL, poster_thread, &args[p]), 0);
    }
    /* kite_loop_run returns only through the hook's stop: every item must arrive. */
    ASSERT_EQ(kite_loop_run(st->loop), KITE_OK);
    for (int p = 0; p < POSTERS; p++)
        pthread_join(th[p], NULL);
    ASSERT_EQ(st->total, POSTERS * POSTS_EACH);
    for (int p = 0; p < POSTERS; p++)
        for (int i = 0; i < POSTS_EACH; i++)
            ASSERT_EQ(st->seen[p][i], 1);
    ASSERT_EQ(st->order_errors, 0);
    ASSERT_EQ(st->wrong_thread, 0);
    kite_loop_free(st->loop);
    free(st);
}

struct task_obj {
    struct kite_loop_task task;
    int *counter;
};

static void on_task(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    struct task_obj *o = arg;
    (*o->counter)++;
}

TEST(loop_post_task_needs_no_allocation_and_can_be_reposted)
{
    struct kite_test_alloc st = {0};
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(kite_test_allocator(&st), &loop), KITE_OK);
    long before = st.count;
    int counter = 0;
    struct task_obj o = {.counter = &counter};
    ASSERT_EQ(kite_loop_post_task(loop, &o.task, on_task, &o), KITE_OK);
    ASSERT_EQ(st.count, before); /* nothing allocated */
    ASSERT_EQ(counter, 0);       /* never run inside the post */
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(counter, 1);
    ASSERT_EQ(kite_loop_post_task(loop, &o.task, on_task, &o), KITE_OK);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(counter, 2);
    ASSERT_EQ(kite_loop_post_task(loop, NULL, on_task, &o), KITE_ERR_INVALID);
    ASSERT_EQ(kite_loop_post(loop, NULL, NULL), KITE_ERR_INVALID);
    kite_loop_free(loop);
    ASSERT_EQ(st.live, 0);
}

TEST(loop_post_out_of_memory_queues_nothing)
{
    struct kite_test_alloc st = {0};
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(kite_test_allocator(&st), &loop), KITE_OK);
    int counter = 0;
    struct task_obj o = {.counter = &counter};
    st.fail_at = st.count + 1;
    ASSERT_EQ(kite_loop_post(loop, on_task, &o), KITE_ERR_NOMEM);
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT_EQ(counter, 0);
    kite_loop_free(loop);
    ASSERT_EQ(st.live, 0);
}

static void *stopper(void *p)
{
    usleep(20000);
    kite_loop_stop(p);
    return NULL;
}

TEST(loop_stop_from_another_thread_ends_run)
{
    struct kite_loop *loop = new_loop();
    pthread_t th;
    uint64_t t0 = kite__clock_ms();
    ASSERT_EQ(pthread_create(&th, NULL, stopper, loop), 0);
    ASSERT_EQ(kite_loop_run(loop), KITE_OK); /* blocks with no timers until stopped */
    pthread_join(th, NULL);
    ASSERT(kite__clock_ms() - t0 >= 15);
    /* The stop request was consumed: a new stop is needed to end the next run. */
    kite_loop_stop(loop);
    ASSERT_EQ(kite_loop_run(loop), KITE_OK);
    kite_loop_free(loop);
}

struct count_hook {
    struct kite__hook h;
    int n;
};

static void count_hook(struct kite_loop *loop, struct kite__hook *h)
{
    KITE_UNUSED(loop);
    kite__container_of(h, struct count_hook, h)->n++;
}

TEST(loop_stop_before_run_returns_after_one_iteration)
{
    struct kite_loop *loop = new_loop();
    struct count_hook hook = {0};
    kite__loop_hook_add(loop, &hook.h, count_hook);
    kite_loop_stop(loop);
    ASSERT_EQ(kite_loop_run(loop), KITE_OK);
    ASSERT_EQ(hook.n, 1);
    kite__loop_hook_remove(loop, &hook.h);
    kite_loop_free(loop);
}

static void nested_run(struct kite_loop *loop, void *arg)
{
    int *rc = arg;
    rc[0] = kite_loop_run(loop);
    rc[1] = kite_loop_run_once(loop, 0);
}

TEST(loop_nested_run_is_refused)
{
    struct kite_loop *loop = new_loop();
    int rc[2] = {1, 1};
    ASSERT_EQ(kite_loop_post(loop, nested_run, rc), KITE_OK);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(rc[0], KITE_ERR_STATE);
    ASSERT_EQ(rc[1], KITE_ERR_STATE);
    kite_loop_free(loop);
}

static void *check_not_current(void *p)
{
    return (void *)(intptr_t)kite_loop_is_current(p);
}

static void note_current(struct kite_loop *loop, void *arg)
{
    *(int *)arg = kite_loop_is_current(loop) ? 1 : 2;
}

TEST(loop_is_current_only_inside_its_iteration)
{
    struct kite_loop *loop = new_loop();
    struct kite_loop *other = new_loop();
    ASSERT(!kite_loop_is_current(loop));
    int inside = 0, other_inside = 0;
    ASSERT_EQ(kite_loop_post(loop, note_current, &inside), KITE_OK);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(inside, 1);
    ASSERT_EQ(kite_loop_post(other, note_current, &other_inside), KITE_OK);
    ASSERT_EQ(kite_loop_run_once(other, 1000), KITE_OK);
    ASSERT_EQ(other_inside, 1);
    pthread_t th;
    void *res;
    ASSERT_EQ(pthread_create(&th, NULL, check_not_current, loop), 0);
    pthread_join(th, &res);
    ASSERT(res == NULL);
    kite_loop_free(other);
    kite_loop_free(loop);
}

/* ---- loop free with work queued ------------------------------------------------- */

static void post_during_free(struct kite_loop *loop, void *arg)
{
    int *r = arg;
    r[0]++;
    r[1] = kite_loop_post(loop, post_during_free, arg); /* the loop is closing */
}

static void deferred_count(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    (*(int *)arg)++;
}

TEST(loop_free_runs_queued_posts_and_refuses_new_ones)
{
    struct kite_test_alloc st = {0};
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(kite_test_allocator(&st), &loop), KITE_OK);
    int r[2] = {0, 0};
    ASSERT_EQ(kite_loop_post(loop, post_during_free, r), KITE_OK);
    int deferred = 0;
    struct kite_loop_task t = {0};
    kite__loop_defer(loop, &t, deferred_count, &deferred);
    kite_loop_free(loop);
    ASSERT_EQ(r[0], 1);
    ASSERT_EQ(r[1], KITE_ERR_CLOSED);
    ASSERT_EQ(deferred, 1);
    ASSERT_EQ(st.live, 0); /* the posted node was freed too */
}

/* ---- deferred tasks, hooks, pending --------------------------------------------- */

struct order_log {
    char buf[64];
    int n;
};

static void log_c(struct order_log *l, char c)
{
    if (l->n < (int)sizeof l->buf - 1)
        l->buf[l->n++] = c;
}

struct defer_fix;
struct dio {
    struct kite__io io;
    struct defer_fix *f;
};

struct defer_fix {
    struct dio io[2];
    int fds[2][2];
    struct kite_loop_task task, task2;
    struct order_log log;
};

static void defer_second(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    log_c(arg, 'E');
}

static void defer_first(struct kite_loop *loop, void *arg)
{
    struct defer_fix *f = arg;
    log_c(&f->log, 'D');
    /* deferred from a deferred task: runs in the same pass */
    kite__loop_defer(loop, &f->task2, defer_second, &f->log);
}

static void defer_io_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    struct defer_fix *f = kite__container_of(io, struct dio, io)->f;
    char c;
    ASSERT_EQ(read(io->fd, &c, 1), 1);
    kite__io_stop(loop, io);
    log_c(&f->log, 'I');
    kite__loop_defer(loop, &f->task, defer_first, f);
    kite__loop_defer(loop, &f->task, defer_first, f); /* already deferred: no-op */
}

TEST(loop_deferred_tasks_run_after_all_callbacks_of_the_iteration)
{
    struct kite_loop *loop = new_loop();
    struct defer_fix *f = calloc(1, sizeof *f);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, f->fds[i]), 0);
        ASSERT_EQ(write(f->fds[i][1], "x", 1), 1);
        f->io[i].f = f;
        kite__io_init(&f->io[i].io, f->fds[i][0], defer_io_cb);
        ASSERT_EQ(kite__io_start(loop, &f->io[i].io, KITE__IO_READ), KITE_OK);
    }
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    /* Both I/O callbacks ran in the same wait, then the deferred task (once), then the
     * task it deferred. */
    f->log.buf[f->log.n] = '\0';
    ASSERT_STREQ(f->log.buf, "IIDE");
    for (int i = 0; i < 2; i++) {
        close(f->fds[i][0]);
        close(f->fds[i][1]);
    }
    free(f);
    kite_loop_free(loop);
}

struct owned {
    struct kite__io io;
    struct kite_loop_task free_task;
    int fd;
    int *freed;
};

static void owned_free(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    struct owned *o = arg;
    (*o->freed)++;
    close(o->fd);
    free(o);
}

static void owned_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    struct owned *o = kite__container_of(io, struct owned, io);
    kite__io_stop(loop, io);
    kite__loop_defer(loop, &o->free_task, owned_free, o);
    /* still usable until the end of the iteration */
    ASSERT_EQ(o->io.fd, o->fd);
}

TEST(loop_callback_can_close_its_own_object_via_defer)
{
    struct kite_loop *loop = new_loop();
    int sv[2], freed = 0;
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct owned *o = calloc(1, sizeof *o);
    o->fd = sv[0];
    o->freed = &freed;
    kite__io_init(&o->io, sv[0], owned_cb);
    ASSERT_EQ(kite__io_start(loop, &o->io, KITE__IO_READ), KITE_OK);
    ASSERT_EQ(write(sv[1], "x", 1), 1);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(freed, 1);
    close(sv[1]);
    kite_loop_free(loop);
}

TEST(loop_before_sleep_hooks_run_every_iteration)
{
    struct kite_loop *loop = new_loop();
    struct count_hook a = {0}, b = {0};
    kite__loop_hook_add(loop, &a.h, count_hook);
    kite__loop_hook_add(loop, &b.h, count_hook);
    kite__loop_hook_add(loop, &b.h, count_hook); /* twice: still registered once */
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT_EQ(a.n, 5);
    ASSERT_EQ(b.n, 5);
    kite__loop_hook_remove(loop, &a.h);
    kite__loop_hook_remove(loop, &a.h); /* idempotent */
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT_EQ(a.n, 5);
    ASSERT_EQ(b.n, 6);
    kite_loop_free(loop);
}

struct flusher {
    struct kite__io io; /* never registered: flushing does not need it */
    int runs;
    int readd; /* re-add self this many more times */
    struct flusher *other;
};

static void flush_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    struct flusher *f = kite__container_of(io, struct flusher, io);
    ASSERT_EQ(events, KITE__IO_FLUSH);
    f->runs++;
    ASSERT(!kite__io_flush_queued(io));
    if (f->other)
        kite__io_flush(loop, &f->other->io);
    if (f->readd > 0) {
        f->readd--;
        kite__io_flush(loop, io);
    }
}

TEST(loop_flush_runs_once_before_sleep_and_can_be_cancelled)
{
    struct kite_loop *loop = new_loop();
    struct flusher a = {0}, b = {0}, c = {0};
    kite__io_init(&a.io, -1, flush_cb);
    kite__io_init(&b.io, -1, flush_cb);
    kite__io_init(&c.io, -1, flush_cb);
    kite__io_flush(loop, &a.io);
    kite__io_flush(loop, &a.io); /* deduplicated */
    kite__io_flush(loop, &b.io);
    kite__io_flush(loop, &c.io);
    kite__io_flush_cancel(loop, &b.io);
    ASSERT(!kite__io_flush_queued(&b.io));
    ASSERT(kite__io_flush_queued(&a.io) && kite__io_flush_queued(&c.io));
    a.other = &b; /* a's flush queues b: flushed in a further pass, same sleep */
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT_EQ(a.runs, 1);
    ASSERT_EQ(b.runs, 1);
    ASSERT_EQ(c.runs, 1);
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT_EQ(a.runs, 1); /* nothing queued: nothing runs */
    kite_loop_free(loop);
}

TEST(loop_flush_that_readds_itself_is_bounded_and_does_not_block)
{
    struct kite_loop *loop = new_loop();
    struct flusher a = {0};
    kite__io_init(&a.io, -1, flush_cb);
    a.readd = 100;
    kite__io_flush(loop, &a.io);
    uint64_t t0 = kite__clock_ms();
    ASSERT_EQ(kite_loop_run_once(loop, 5000), KITE_OK);
    ASSERT_EQ(a.runs, KITE__PENDING_PASSES);
    /* still queued, so the next wait does not block for 5 s */
    ASSERT_EQ(kite_loop_run_once(loop, 5000), KITE_OK);
    ASSERT_EQ(a.runs, 2 * KITE__PENDING_PASSES);
    ASSERT(kite__clock_ms() - t0 < 2000);
    kite__io_flush_cancel(loop, &a.io);
    kite_loop_free(loop);
}

/* ---- fd watchers ---------------------------------------------------------------- */

struct rw {
    struct kite__io io;
    uint32_t events;
    int calls;
};

static void rw_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(loop);
    struct rw *w = kite__container_of(io, struct rw, io);
    w->events |= events;
    w->calls++;
}

TEST(loop_fd_watcher_reports_read_and_write_readiness)
{
    struct kite_loop *loop = new_loop();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct rw w = {0};
    kite__io_init(&w.io, sv[0], rw_cb);
    /* write interest on an empty socket: writable at once */
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_WRITE), KITE_OK);
    ASSERT(kite__io_active(&w.io));
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(w.calls, 1);
    ASSERT_EQ(w.events, KITE__IO_WRITE);
    /* read interest only: nothing to read, so no callback */
    w = (struct rw){.io = w.io};
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_READ), KITE_OK);
    ASSERT_EQ(kite_loop_run_once(loop, 30), KITE_OK);
    ASSERT_EQ(w.calls, 0);
    ASSERT_EQ(write(sv[1], "hello", 5), 5);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(w.calls, 1);
    ASSERT_EQ(w.events, KITE__IO_READ);
    /* level-triggered: not read yet, so reported again */
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(w.calls, 2);
    char buf[8];
    ASSERT_EQ(read(sv[0], buf, sizeof buf), 5);
    ASSERT_EQ(kite_loop_run_once(loop, 30), KITE_OK);
    ASSERT_EQ(w.calls, 2);
    /* the peer closes: readable (EOF), read returns 0 */
    close(sv[1]);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(w.calls, 3);
    ASSERT(w.events & KITE__IO_READ);
    ASSERT_EQ(read(sv[0], buf, sizeof buf), 0);
    /* stopped: no more callbacks even though EOF stays readable */
    kite__io_stop(loop, &w.io);
    kite__io_stop(loop, &w.io); /* idempotent */
    ASSERT(!kite__io_active(&w.io));
    ASSERT_EQ(kite_loop_run_once(loop, 30), KITE_OK);
    ASSERT_EQ(w.calls, 3);
    close(sv[0]);
    kite_loop_free(loop);
}

TEST(loop_fd_watcher_edge_triggered_reports_once)
{
    struct kite_loop *loop = new_loop();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct rw w = {0};
    kite__io_init(&w.io, sv[0], rw_cb);
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_READ | KITE__IO_EDGE), KITE_OK);
    ASSERT_EQ(write(sv[1], "a", 1), 1);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(w.calls, 1);
    ASSERT_EQ(kite_loop_run_once(loop, 30), KITE_OK); /* no new edge */
    ASSERT_EQ(w.calls, 1);
    kite__io_stop(loop, &w.io);
    close(sv[0]);
    close(sv[1]);
    kite_loop_free(loop);
}

TEST(loop_fd_watcher_refuses_unknown_interest_bits)
{
    struct kite_loop *loop = new_loop();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct rw w = {0};
    kite__io_init(&w.io, sv[0], rw_cb);
    /* the interest is kept in a byte: anything but READ, WRITE and EDGE is refused */
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_READ | 0x002u), KITE_ERR_INVALID);
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_FLUSH), KITE_ERR_INVALID);
    ASSERT(!kite__io_active(&w.io));
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_READ), KITE_OK);
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_READ | 0x100u), KITE_ERR_INVALID);
    ASSERT(kite__io_active(&w.io)); /* unchanged */
    kite__io_stop(loop, &w.io);
    close(sv[0]);
    close(sv[1]);
    kite_loop_free(loop);
}

struct rwf {
    struct kite__io io;
    int reads, flushes;
};

static void rwf_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    struct rwf *w = kite__container_of(io, struct rwf, io);
    KITE_UNUSED(loop);
    if (events & KITE__IO_FLUSH) {
        ASSERT_EQ(events, KITE__IO_FLUSH); /* never mixed with readiness */
        w->flushes++;
        return;
    }
    if (events & KITE__IO_READ) {
        char c;
        ASSERT_EQ(read(io->fd, &c, 1), 1);
        w->reads++;
    }
}

TEST(loop_fd_watcher_flush_is_independent_of_the_registration)
{
    struct kite_loop *loop = new_loop();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct rwf w = {0};
    kite__io_init(&w.io, sv[0], rwf_cb);
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_READ), KITE_OK);
    ASSERT_EQ(write(sv[1], "a", 1), 1);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(w.reads, 1);
    ASSERT_EQ(w.flushes, 0);
    kite__io_flush(loop, &w.io);
    kite__io_stop(loop, &w.io); /* a stopped watcher keeps its queued flush */
    ASSERT(kite__io_flush_queued(&w.io));
    ASSERT_EQ(write(sv[1], "b", 1), 1);
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT_EQ(w.flushes, 1);
    ASSERT_EQ(w.reads, 1); /* not registered: the byte waits */
    ASSERT(!kite__io_flush_queued(&w.io));
    close(sv[0]);
    close(sv[1]);
    kite_loop_free(loop);
}

TEST(loop_fd_watcher_error_reaches_the_write_side)
{
    struct kite_loop *loop = new_loop();
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct rw w = {0};
    kite__io_init(&w.io, sv[0], rw_cb);
    /* fill the socket so that it is not writable, then wait for write */
    char big[4096] = {0};
    while (write(sv[0], big, sizeof big) > 0)
        ;
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_WRITE), KITE_OK);
    ASSERT_EQ(kite_loop_run_once(loop, 30), KITE_OK);
    ASSERT_EQ(w.calls, 0);
    close(sv[1]); /* hang-up: reported with WRITE so the writer learns of it */
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(w.calls, 1);
    ASSERT(w.events & KITE__IO_WRITE);
    ASSERT(w.events & (KITE__IO_HUP | KITE__IO_ERROR));
    kite__io_stop(loop, &w.io);
    close(sv[0]);
    kite_loop_free(loop);
}

struct stopper_pair;
struct sio {
    struct kite__io io;
    struct stopper_pair *p;
    int index;
};

struct stopper_pair {
    struct sio io[2];
    int calls[2];
};

static void stop_other_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    struct sio *me = kite__container_of(io, struct sio, io);
    struct stopper_pair *p = me->p;
    p->calls[me->index]++;
    kite__io_stop(loop, &p->io[1 - me->index].io);
    kite__io_stop(loop, io);
}

TEST(loop_io_stop_drops_events_already_collected)
{
    struct kite_loop *loop = new_loop();
    struct stopper_pair p = {0};
    int sv[2][2];
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]), 0);
        ASSERT_EQ(write(sv[i][1], "x", 1), 1);
        p.io[i].p = &p;
        p.io[i].index = i;
        kite__io_init(&p.io[i].io, sv[i][0], stop_other_cb);
        ASSERT_EQ(kite__io_start(loop, &p.io[i].io, KITE__IO_READ), KITE_OK);
    }
    /* Both fds are ready in the same wait; whichever runs first stops the other, whose
     * collected event must then be dropped. */
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(p.calls[0] + p.calls[1], 1);
    for (int i = 0; i < 2; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    kite_loop_free(loop);
}

TEST(loop_io_start_on_a_bad_fd_fails_cleanly)
{
    struct kite_loop *loop = new_loop();
    struct rw w = {0};
    kite__io_init(&w.io, 12345, rw_cb);
    ASSERT_EQ(kite__io_start(loop, &w.io, KITE__IO_READ), -EBADF);
    ASSERT(!kite__io_active(&w.io));
    kite_loop_free(loop);
}

/* ---- signals -------------------------------------------------------------------- */

static void on_sig(struct kite_loop *loop, int signo, void *arg)
{
    int *got = arg;
    *got = kite_loop_is_current(loop) ? signo : -1;
}

TEST(loop_signals_are_delivered_on_the_loop)
{
    struct kite_loop *loop = new_loop();
    struct kite_loop *other = new_loop();
    /* what to restore: SIG_DFL normally, SIG_IGN for SIGINT in a background job */
    struct sigaction before_int, before_term, sa;
    ASSERT_EQ(sigaction(SIGINT, NULL, &before_int), 0);
    ASSERT_EQ(sigaction(SIGTERM, NULL, &before_term), 0);
    volatile int got = 0;
    ASSERT_EQ(kite_loop_watch_signals(loop, on_sig, (void *)&got), KITE_OK);
    ASSERT_EQ(kite_loop_watch_signals(other, on_sig, (void *)&got), KITE_ERR_EXISTS);
    ASSERT_EQ(kite_loop_watch_signals(loop, on_sig, (void *)&got), KITE_ERR_EXISTS);
    ASSERT_EQ(sigaction(SIGTERM, NULL, &sa), 0);
    ASSERT(sa.sa_handler != before_term.sa_handler); /* ours is installed */
    ASSERT_EQ(raise(SIGTERM), 0); /* would kill us without the handler */
    run_until(loop, &got, 2000);
    ASSERT_EQ(got, SIGTERM);
    got = 0;
    ASSERT_EQ(raise(SIGINT), 0);
    run_until(loop, &got, 2000);
    ASSERT_EQ(got, SIGINT);
    kite_loop_unwatch_signals(loop);
    ASSERT_EQ(sigaction(SIGTERM, NULL, &sa), 0);
    ASSERT(sa.sa_handler == before_term.sa_handler); /* restored */
    ASSERT_EQ(sigaction(SIGINT, NULL, &sa), 0);
    ASSERT(sa.sa_handler == before_int.sa_handler);
    /* now another loop may watch; freeing it unwatches */
    ASSERT_EQ(kite_loop_watch_signals(other, on_sig, (void *)&got), KITE_OK);
    kite_loop_free(other);
    ASSERT_EQ(sigaction(SIGTERM, NULL, &sa), 0);
    ASSERT(sa.sa_handler == before_term.sa_handler);
    kite_loop_free(loop);
}

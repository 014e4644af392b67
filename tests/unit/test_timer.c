/* Timers on the loop's hashed wheel: order, timing, cancel/re-arm inside callbacks,
 * scale. Some tests drive the wheel with a simulated clock (loop->now and
 * kite__timers_run) so that long deadlines can be checked without waiting. */
#include <stdlib.h>

#include "loop/loop.h"
#include "test.h"

static struct kite_loop *new_loop(void)
{
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    return loop;
}

#define TICK KITE__TIMER_TICK_MS
/* Scheduling slack for a shared, sanitizer-slowed machine: with the real clock a timer
 * may fire this late on top of the tick resolution without failing a test. The exact
 * resolution (never early, less than one tick late) is checked with a simulated clock
 * in timer_fires_within_one_tick_of_its_deadline. */
#define SLACK_MS 250

struct rec {
    struct kite__timer t;
    uint64_t start, delay; /* when started, and for how long */
    uint64_t fired_at;
    int fires;
    int id;
    int *order;
    int *norder;
};

static void rec_cb(struct kite_loop *loop, struct kite__timer *t)
{
    struct rec *r = kite__container_of(t, struct rec, t);
    ASSERT(!kite__timer_active(t));
    r->fired_at = kite__clock_ms();
    r->fires++;
    if (r->order)
        r->order[(*r->norder)++] = r->id;
    KITE_UNUSED(loop);
}

static void run_for(struct kite_loop *loop, uint64_t ms)
{
    uint64_t end = kite__clock_ms() + ms;
    while (kite__clock_ms() < end)
        ASSERT_EQ(kite_loop_run_once(loop, (int)(end - kite__clock_ms()) + 1), KITE_OK);
}

TEST(timer_fires_in_deadline_order_and_on_time)
{
    struct kite_loop *loop = new_loop();
    static const uint64_t delays[] = {50, 10, 90, 30, 70, 20};
    enum { N = sizeof delays / sizeof delays[0] };
    struct rec r[N];
    int order[N], norder = 0;
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        kite__timer_init(&r[i].t, rec_cb);
        r[i].id = i;
        r[i].order = order;
        r[i].norder = &norder;
        r[i].delay = delays[i];
        r[i].start = kite_loop_now(loop);
        kite__timer_start(loop, &r[i].t, delays[i]);
        ASSERT(kite__timer_active(&r[i].t));
    }
    run_for(loop, 90 + TICK + SLACK_MS);
    ASSERT_EQ(norder, N);
    static const int want[N] = {1, 5, 3, 0, 4, 2}; /* 10 20 30 50 70 90 */
    for (int i = 0; i < N; i++)
        ASSERT_EQ(order[i], want[i]);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(r[i].fires, 1);
        /* never early; late by at most a tick plus scheduling */
        ASSERT(r[i].fired_at >= r[i].start + r[i].delay);
        ASSERT(r[i].fired_at <= r[i].start + r[i].delay + TICK + SLACK_MS);
    }
    kite_loop_free(loop);
}

TEST(timer_zero_delay_fires_on_the_next_tick_without_blocking)
{
    struct kite_loop *loop = new_loop();
    struct rec r = {0};
    kite__timer_init(&r.t, rec_cb);
    kite__timer_start(loop, &r.t, 0);
    uint64_t t0 = kite__clock_ms();
    /* the wait ends at the next tick at the latest, not after the 5 s cap */
    while (!r.fires && kite__clock_ms() - t0 < 1000)
        ASSERT_EQ(kite_loop_run_once(loop, 5000), KITE_OK);
    ASSERT_EQ(r.fires, 1);
    ASSERT(kite__clock_ms() - t0 <= TICK + SLACK_MS);
    kite_loop_free(loop);
}

TEST(timer_wait_uses_the_next_deadline)
{
    struct kite_loop *loop = new_loop();
    ASSERT_EQ(kite__timers_timeout(loop), -1); /* no timers: block */
    struct rec r = {0};
    kite__timer_init(&r.t, rec_cb);
    kite__timer_start(loop, &r.t, 100);
    int to = kite__timers_timeout(loop);
    ASSERT(to >= 100 - (int)TICK && to <= 100 + (int)TICK);
    kite__timer_stop(loop, &r.t);
    ASSERT_EQ(kite__timers_timeout(loop), -1);
    kite_loop_free(loop);
}

TEST(timer_stop_and_restart)
{
    struct kite_loop *loop = new_loop();
    struct rec a = {0}, b = {0};
    kite__timer_init(&a.t, rec_cb);
    kite__timer_init(&b.t, rec_cb);
    kite__timer_start(loop, &a.t, 10);
    kite__timer_start(loop, &b.t, 10);
    kite__timer_stop(loop, &a.t);
    kite__timer_stop(loop, &a.t); /* idempotent */
    ASSERT(!kite__timer_active(&a.t));
    kite__timer_start(loop, &b.t, 120); /* restart moves the deadline later */
    uint64_t t0 = kite__clock_ms();
    run_for(loop, 40);
    ASSERT_EQ(a.fires, 0);
    ASSERT_EQ(b.fires, 0);
    run_for(loop, 120 + TICK + SLACK_MS - 40);
    ASSERT_EQ(b.fires, 1);
    ASSERT(b.fired_at - t0 >= 110);
    ASSERT_EQ(a.fires, 0);
    kite_loop_free(loop);
}

struct canceller {
    struct kite__timer t;
    struct canceller *victim;
    int fires;
};

static void cancel_cb(struct kite_loop *loop, struct kite__timer *t)
{
    struct canceller *c = kite__container_of(t, struct canceller, t);
    c->fires++;
    kite__timer_stop(loop, t); /* stopping itself inside its callback: harmless */
    if (c->victim)
        kite__timer_stop(loop, &c->victim->t);
}

TEST(timer_cancel_inside_callback_same_tick_and_later)
{
    struct kite_loop *loop = new_loop();
    /* a and b are due in the same tick and cancel each other: exactly one fires,
     * whichever the wheel visits first. c (later) is cancelled by a or b. */
    struct canceller a = {0}, b = {0}, c = {0};
    kite__timer_init(&a.t, cancel_cb);
    kite__timer_init(&b.t, cancel_cb);
    kite__timer_init(&c.t, cancel_cb);
    a.victim = &b;
    b.victim = &a;
    kite__timer_start(loop, &a.t, 20);
    kite__timer_start(loop, &b.t, 20);
    kite__timer_start(loop, &c.t, 1000);
    run_for(loop, 20 + TICK + SLACK_MS);
    ASSERT_EQ(a.fires + b.fires, 1);
    /* a/b now cancel c via victim swap */
    if (a.fires)
        a.victim = &c;
    else
        b.victim = &c;
    struct canceller *fired = a.fires ? &a : &b;
    kite__timer_start(loop, &fired->t, 0);
    run_for(loop, 1100);
    ASSERT_EQ(c.fires, 0);
    ASSERT_EQ(loop->ntimers, 0);
    kite_loop_free(loop);
}

struct periodic {
    struct kite__timer t;
    int fires, max;
    uint64_t last;
    int short_gaps;
};

static void periodic_cb(struct kite_loop *loop, struct kite__timer *t)
{
    struct periodic *p = kite__container_of(t, struct periodic, t);
    uint64_t now = kite__clock_ms();
    if (p->fires && now - p->last < 15)
        p->short_gaps++;
    p->last = now;
    if (++p->fires < p->max)
        kite__timer_start(loop, t, 15); /* re-arm itself */
}

TEST(timer_rearms_itself_inside_callback)
{
    struct kite_loop *loop = new_loop();
    struct periodic p = {.max = 5};
    kite__timer_init(&p.t, periodic_cb);
    kite__timer_start(loop, &p.t, 15);
    run_for(loop, 5 * 15 + 5 * TICK + SLACK_MS);
    ASSERT_EQ(p.fires, 5);
    ASSERT_EQ(p.short_gaps, 0);
    ASSERT(!kite__timer_active(&p.t));
    kite_loop_free(loop);
}

struct victim {
    struct kite__timer t;
    struct kite_loop_task free_task;
    int *freed;
};

static void victim_free(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    struct victim *v = arg;
    (*v->freed)++;
    free(v);
}

static void victim_cb(struct kite_loop *loop, struct kite__timer *t)
{
    struct victim *v = kite__container_of(t, struct victim, t);
    kite__loop_defer(loop, &v->free_task, victim_free, v);
}

static void free_now_cb(struct kite_loop *loop, struct kite__timer *t)
{
    KITE_UNUSED(loop);
    struct victim *v = kite__container_of(t, struct victim, t);
    (*v->freed)++;
    free(v); /* the timer is inactive once its callback runs: immediate free is fine */
}

TEST(timer_callback_can_free_its_owner)
{
    struct kite_loop *loop = new_loop();
    int freed = 0;
    for (int i = 0; i < 10; i++) {
        struct victim *v = calloc(1, sizeof *v);
        v->freed = &freed;
        kite__timer_init(&v->t, i % 2 ? victim_cb : free_now_cb);
        kite__timer_start(loop, &v->t, 5 + (uint64_t)(i % 3)); /* several per tick */
    }
    run_for(loop, 10 + TICK + SLACK_MS);
    ASSERT_EQ(freed, 10); /* ASan catches a touch after free */
    kite_loop_free(loop);
}

/* ---- simulated clock ------------------------------------------------------------ */

/* Advance the loop's clock by `ms` in steps of `step` and run due timers each step. */
static void advance(struct kite_loop *loop, uint64_t ms, uint64_t step)
{
    for (uint64_t done = 0; done < ms; done += step) {
        loop->now += step;
        kite__timers_run(loop);
    }
}

struct simrec {
    struct kite__timer t;
    struct kite_loop *loop;
    uint64_t deadline, fired_now;
    int fires;
};

static void sim_cb(struct kite_loop *loop, struct kite__timer *t)
{
    struct simrec *r = kite__container_of(t, struct simrec, t);
    r->fired_now = loop->now;
    r->fires++;
}

TEST(timer_fires_within_one_tick_of_its_deadline)
{
    struct kite_loop *loop = new_loop();
    enum { N = 64 };
    struct simrec r[N];
    memset(r, 0, sizeof r);
    loop->now += 3; /* not on a tick boundary */
    for (int i = 0; i < N; i++) {
        kite__timer_init(&r[i].t, sim_cb);
        r[i].deadline = loop->now + (uint64_t)i * 5u; /* 0..315 ms, every phase */
        kite__timer_start(loop, &r[i].t, (uint64_t)i * 5u);
    }
    advance(loop, 320 + 2 * TICK, 1); /* a loop that wakes every millisecond */
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(r[i].fires, 1);
        ASSERT(r[i].fired_now >= r[i].deadline);      /* never early */
        ASSERT(r[i].fired_now < r[i].deadline + TICK); /* less than a tick late */
    }
    kite_loop_free(loop);
}

TEST(timer_deadlines_beyond_one_wheel_turn)
{
    struct kite_loop *loop = new_loop();
    const uint64_t span = (uint64_t)KITE__TIMER_SLOTS * TICK; /* one turn of the wheel */
    enum { N = 5 };
    const uint64_t delays[N] = {span - TICK, span, span + TICK, 2 * span + 3, 120000};
    struct simrec r[N];
    memset(r, 0, sizeof r);
    uint64_t base = loop->now;
    for (int i = 0; i < N; i++) {
        kite__timer_init(&r[i].t, sim_cb);
        r[i].deadline = base + delays[i];
        kite__timer_start_at(loop, &r[i].t, r[i].deadline);
    }
    advance(loop, 120000 + 2 * TICK, 1);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(r[i].fires, 1);
        ASSERT(r[i].fired_now >= r[i].deadline);
        ASSERT(r[i].fired_now < r[i].deadline + TICK);
    }
    kite_loop_free(loop);
}

TEST(timer_a_long_stall_fires_everything_overdue_once)
{
    struct kite_loop *loop = new_loop();
    enum { N = 1000 };
    struct simrec *r = calloc(N, sizeof *r);
    for (int i = 0; i < N; i++) {
        kite__timer_init(&r[i].t, sim_cb);
        kite__timer_start(loop, &r[i].t, (uint64_t)i * 97u); /* up to ~97 s */
    }
    loop->now += 200000; /* the loop was stuck for 200 s (several turns) */
    kite__timers_run(loop);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(r[i].fires, 1);
    ASSERT_EQ(loop->ntimers, 0);
    ASSERT_EQ(kite__timers_timeout(loop), -1);
    free(r);
    kite_loop_free(loop);
}

/* ---- scale ---------------------------------------------------------------------- */

#define MANY 100000

struct many {
    struct kite__timer t;
    uint64_t deadline;
};

static uint64_t last_deadline_tick;
static int order_violations, many_fired;

static void many_cb(struct kite_loop *loop, struct kite__timer *t)
{
    KITE_UNUSED(loop);
    struct many *m = kite__container_of(t, struct many, t);
    uint64_t tick = (m->deadline + TICK - 1) / TICK;
    if (tick < last_deadline_tick)
        order_violations++;
    last_deadline_tick = tick;
    many_fired++;
}

TEST(timer_100k_timers_are_cheap_and_fire_in_order)
{
    struct kite_loop *loop = new_loop();
    struct many *m = calloc(MANY, sizeof *m);
    uint64_t base = loop->now;
    srand(42);
    uint64_t t0 = kite__clock_ms();
    for (int i = 0; i < MANY; i++) {
        kite__timer_init(&m[i].t, many_cb);
        m[i].deadline = base + 1 + (uint64_t)(rand() % 60000); /* up to a minute */
        kite__timer_start_at(loop, &m[i].t, m[i].deadline);
    }
    /* restart every timer many times, as a busy server restarts idle timers */
    for (int round = 0; round < 10; round++)
        for (int i = 0; i < MANY; i++) {
            m[i].deadline = base + 1 + (uint64_t)((i * 7919 + round * 104729) % 60000);
            kite__timer_start_at(loop, &m[i].t, m[i].deadline);
        }
    /* cancel every 10th */
    for (int i = 0; i < MANY; i += 10)
        kite__timer_stop(loop, &m[i].t);
    uint64_t elapsed = kite__clock_ms() - t0;
    /* 1.2M O(1) operations: well under a second even under sanitizers */
    ASSERT(elapsed < 1500);
    ASSERT_EQ(loop->ntimers, MANY - MANY / 10);
    advance(loop, 60000 + 2 * TICK, TICK);
    ASSERT_EQ(many_fired, MANY - MANY / 10);
    ASSERT_EQ(order_violations, 0);
    ASSERT_EQ(loop->ntimers, 0);
    free(m);
    kite_loop_free(loop);
}

TEST(timer_restart_within_the_same_tick_is_a_no_op)
{
    struct kite_loop *loop = new_loop();
    struct simrec r = {0};
    kite__timer_init(&r.t, sim_cb);
    uint64_t d = (loop->now / TICK + 10) * TICK; /* a tick boundary */
    kite__timer_start_at(loop, &r.t, d);
    struct kite__timer *next = r.t.next;
    struct kite__timer **pprev = r.t.pprev;
    kite__timer_start_at(loop, &r.t, d - TICK + 1); /* same tick */
    ASSERT(r.t.next == next && r.t.pprev == pprev);
    ASSERT_EQ(loop->ntimers, 1);
    kite__timer_start_at(loop, &r.t, d + 1); /* next tick: moves */
    ASSERT_EQ(loop->ntimers, 1);
    advance(loop, 10 * TICK, 1);
    ASSERT_EQ(r.fires, 0);
    advance(loop, 2 * TICK, 1);
    ASSERT_EQ(r.fires, 1);
    kite_loop_free(loop);
}

TEST(timer_past_deadline_fires_on_next_tick)
{
    struct kite_loop *loop = new_loop();
    struct simrec r = {0};
    kite__timer_init(&r.t, sim_cb);
    kite__timer_start_at(loop, &r.t, 0); /* long past */
    ASSERT(kite__timer_active(&r.t));
    ASSERT(kite__timers_timeout(loop) <= (int)TICK);
    advance(loop, TICK, TICK);
    ASSERT_EQ(r.fires, 1);
    kite_loop_free(loop);
}

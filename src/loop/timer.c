/*
 * Timers on a hashed wheel: KITE__TIMER_SLOTS lists, one per tick modulo the wheel size.
 * A timer sits in the slot of its expiry tick; each tick the loop walks that one slot,
 * fires the timers whose expiry is this tick and leaves the ones due in a later turn.
 * Start, restart and stop are O(1) list operations; a bitmap of non-empty slots lets
 * the loop find how long it may sleep without walking the wheel.
 *
 * With 1M connections and minute-long timeouts each timer is looked at about twice
 * before it fires, and a restart within the same tick costs nothing: that is the
 * "restart the idle timer on every message" case.
 */
#include <limits.h>

#include "loop/loop.h"

#define SLOT_MASK ((uint64_t)KITE__TIMER_SLOTS - 1u)
#define MAP_WORDS (KITE__TIMER_SLOTS / 64u)

static void link_timer(struct kite_loop *loop, struct kite__timer *t)
{
    size_t s = (size_t)(t->expiry & SLOT_MASK);
    struct kite__timer **head = &loop->slots[s];
    t->next = *head;
    if (t->next)
        t->next->pprev = &t->next;
    *head = t;
    t->pprev = head;
    loop->slotmap[s / 64u] |= (uint64_t)1 << (s % 64u);
    loop->ntimers++;
}

static void unlink_timer(struct kite_loop *loop, struct kite__timer *t)
{
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
    size_t s = (size_t)(t->expiry & SLOT_MASK);
    if (!loop->slots[s])
        loop->slotmap[s / 64u] &= ~((uint64_t)1 << (s % 64u));
    loop->ntimers--;
}

void kite__timer_init(struct kite__timer *t, kite__timer_cb *cb)
{
    t->next = NULL;
    t->pprev = NULL;
    t->expiry = 0;
    t->cb = cb;
}

void kite__timer_start_at(struct kite_loop *loop, struct kite__timer *t, uint64_t deadline_ms)
{
    /* Round up: a timer never fires before its deadline. The first tick still to be
     * processed is loop->tick + 1, so nothing may expire earlier than that. */
    uint64_t expiry = (deadline_ms + KITE__TIMER_TICK_MS - 1u) >> KITE__TIMER_TICK_SHIFT;
    if (deadline_ms > UINT64_MAX - KITE__TIMER_TICK_MS)
        expiry = UINT64_MAX >> KITE__TIMER_TICK_SHIFT;
    if (expiry <= loop->tick)
        expiry = loop->tick + 1u;
    if (t->pprev) {
        if (t->expiry == expiry)
            return;
        unlink_timer(loop, t);
    }
    t->expiry = expiry;
    link_timer(loop, t);
}

void kite__timer_start(struct kite_loop *loop, struct kite__timer *t, uint64_t delay_ms)
{
    uint64_t now = loop->now;
    uint64_t deadline = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
    kite__timer_start_at(loop, t, deadline);
}

void kite__timer_unlink(struct kite_loop *loop, struct kite__timer *t)
{
    unlink_timer(loop, t);
}

/*
 * Fire the timers of one tick. The slot's list is moved to a local head first: timers
 * due in a later turn are linked back, timers started by callbacks land in other slots
 * (or back in this one for a later turn), and a callback stopping a timer still on the
 * local list unlinks it through its pprev, which points into this frame.
 */
static void fire_slot(struct kite_loop *loop, uint64_t tick)
{
    size_t s = (size_t)(tick & SLOT_MASK);
    struct kite__timer *batch = loop->slots[s];
    if (!batch)
        return;
    loop->slots[s] = NULL;
    loop->slotmap[s / 64u] &= ~((uint64_t)1 << (s % 64u));
    batch->pprev = &batch;
    struct kite__timer *t;
    while ((t = batch) != NULL) {
        unlink_timer(loop, t);
        if (t->expiry > tick)
            link_timer(loop, t);
        else
            t->cb(loop, t);
    }
}

void kite__timers_run(struct kite_loop *loop)
{
    uint64_t target = loop->now >> KITE__TIMER_TICK_SHIFT;
    /* After a stall longer than a turn, visiting each slot once is enough: every timer
     * overdue by then fires when its slot comes up. */
    if (target > loop->tick + KITE__TIMER_SLOTS)
        loop->tick = target - KITE__TIMER_SLOTS;
    while (loop->tick < target) {
        if (!loop->ntimers) {
            loop->tick = target;
            break;
        }
        loop->tick++;
        fire_slot(loop, loop->tick);
    }
}

/* Distance in slots from slot `from` to the next non-empty one, wrapping around;
 * KITE__TIMER_SLOTS if all are empty. */
static uint64_t next_busy_slot(const uint64_t *map, size_t from)
{
    size_t w = from / 64u;
    uint64_t bits = map[w] & (~(uint64_t)0 << (from % 64u));
    for (size_t i = 0; i <= MAP_WORDS; i++) {
        if (bits) {
            size_t pos = w * 64u + (size_t)__builtin_ctzll(bits);
            return (uint64_t)(pos - from) & SLOT_MASK;
        }
        w = (w + 1u) % MAP_WORDS;
        bits = map[w];
    }
    return KITE__TIMER_SLOTS;
}

int kite__timers_timeout(const struct kite_loop *loop)
{
    if (!loop->ntimers)
        return -1;
    uint64_t first = loop->tick + 1u;
    uint64_t dist = next_busy_slot(loop->slotmap, (size_t)(first & SLOT_MASK));
    uint64_t deadline = (first + dist) << KITE__TIMER_TICK_SHIFT;
    if (deadline <= loop->now)
        return 0;
    uint64_t ms = deadline - loop->now;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

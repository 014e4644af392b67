/*
 * Unit tests for fd watchers beyond start and stop (src/loop/loop.c): dropping the
 * collected event of a stopped watcher among many, handing a registration over to
 * another watcher (kite__io_transfer), and stopping without a system call before the fd
 * is closed (kite__io_close).
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop.h"
#include "test.h"

#define N 200

struct w {
    struct kite__io io;
    struct many *m;
    int calls;
};

struct many {
    struct w w[N];
    struct w extra[N]; /* transfer targets */
    int sv[N][2];
    int mode; /* 0: stop every other watcher; 1: transfer every other one; 2: io_close */
    int total;
};

static void many_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    struct w *me = kite__container_of(io, struct w, io);
    struct many *m = me->m;
    me->calls++;
    m->total++;
    char c;
    ASSERT_EQ(read(io->fd, &c, 1), 1); /* drain: level-triggered */
    if (m->total > 1)
        return;
    for (int i = 0; i < N; i++) {
        struct kite__io *o = &m->w[i].io;
        if (o == io)
            continue;
        if (m->mode == 0)
            kite__io_stop(loop, o);
        else if (m->mode == 1)
            ASSERT_EQ(kite__io_transfer(loop, o, &m->extra[i].io, KITE__IO_READ), KITE_OK);
        else
            kite__io_close(loop, o);
    }
}

static struct kite_loop *new_loop(void)
{
    struct kite_loop *loop;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    return loop;
}

static void setup(struct many *m, struct kite_loop *loop, int mode)
{
    memset(m, 0, sizeof(*m));
    m->mode = mode;
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, m->sv[i]), 0);
        ASSERT_EQ(write(m->sv[i][1], "x", 1), 1);
        m->w[i].m = m;
        m->extra[i].m = m;
        kite__io_init(&m->w[i].io, m->sv[i][0], many_cb);
        kite__io_init(&m->extra[i].io, m->sv[i][0], many_cb);
        ASSERT_EQ(kite__io_start(loop, &m->w[i].io, KITE__IO_READ), KITE_OK);
    }
}

static void teardown(struct many *m, struct kite_loop *loop)
{
    for (int i = 0; i < N; i++) {
        kite__io_stop(loop, &m->w[i].io);
        kite__io_stop(loop, &m->extra[i].io);
        close(m->sv[i][0]);
        close(m->sv[i][1]);
    }
    kite_loop_free(loop);
}

/* All N fds are ready in one wait; the first callback stops the other watchers, whose
 * collected events must all be dropped (their owners could be freed by then). */
TEST(io_stop_drops_collected_events_among_many)
{
    static struct many m;
    struct kite_loop *loop = new_loop();
    setup(&m, loop, 0);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(m.total, 1);
    ASSERT_EQ(kite_loop_run_once(loop, 30), KITE_OK);
    ASSERT_EQ(m.total, 1); /* stopped: never again, though their bytes are unread */
    teardown(&m, loop);
}

/* A transferred registration reports to the new watcher only, from the next wait on:
 * the old watcher's event collected in this wait is dropped. */
TEST(io_transfer_hands_the_fd_to_another_watcher)
{
    static struct many m;
    struct kite_loop *loop = new_loop();
    setup(&m, loop, 1);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(m.total, 1);
    int first = -1;
    for (int i = 0; i < N; i++)
        if (m.w[i].calls)
            first = i;
    ASSERT(first >= 0);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(kite__io_active(&m.w[i].io), i == first);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(m.total, N); /* every other fd, now through its new watcher */
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(m.w[i].calls, i == first);
        ASSERT_EQ(m.extra[i].calls, i != first);
        ASSERT_EQ(kite__io_active(&m.extra[i].io), i != first);
    }
    teardown(&m, loop);
}

TEST(io_transfer_refuses_bad_arguments)
{
    struct kite_loop *loop = new_loop();
    int sv[2], sv2[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv2), 0);
    struct kite__io a, b, c;
    kite__io_init(&a, sv[0], NULL);
    kite__io_init(&b, sv[0], NULL);
    kite__io_init(&c, sv2[0], NULL);
    ASSERT_EQ(kite__io_transfer(loop, &a, &b, KITE__IO_READ), KITE_ERR_INVALID); /* a idle */
    ASSERT_EQ(kite__io_start(loop, &a, KITE__IO_READ), KITE_OK);
    ASSERT_EQ(kite__io_transfer(loop, &a, &c, KITE__IO_READ), KITE_ERR_INVALID); /* fd */
    ASSERT_EQ(kite__io_start(loop, &c, KITE__IO_READ), KITE_OK);
    c.fd = sv[0];
    ASSERT_EQ(kite__io_transfer(loop, &a, &c, KITE__IO_READ), KITE_ERR_INVALID); /* c on */
    c.fd = sv2[0];
    ASSERT(kite__io_active(&a));
    ASSERT_EQ(kite__io_transfer(loop, &a, &b, KITE__IO_READ | KITE__IO_WRITE), KITE_OK);
    ASSERT(!kite__io_active(&a) && kite__io_active(&b));
    ASSERT_EQ(b.events, KITE__IO_READ | KITE__IO_WRITE);
    kite__io_stop(loop, &b);
    kite__io_stop(loop, &c);
    close(sv[0]);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
    kite_loop_free(loop);
}

/* kite__io_close: no callback for the closed fds (their collected events are dropped
 * and closing the fd took them out of epoll), and the fd numbers can be reused at once
 * by new watchers without stale events. */
TEST(io_close_before_close_needs_no_epoll_ctl)
{
    static struct many m;
    struct kite_loop *loop = new_loop();
    setup(&m, loop, 2);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(m.total, 1);
    int first = -1;
    for (int i = 0; i < N; i++) {
        if (m.w[i].calls) {
            first = i;
            continue;
        }
        ASSERT(!kite__io_active(&m.w[i].io));
        close(m.sv[i][0]);
    }
    /* New sockets take the freed numbers; only they report, to their own watchers. */
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    struct w fresh = {.m = &m};
    kite__io_init(&fresh.io, sv[0], many_cb);
    ASSERT_EQ(kite__io_start(loop, &fresh.io, KITE__IO_READ), KITE_OK);
    ASSERT_EQ(write(sv[1], "y", 1), 1);
    ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(m.total, 2);
    ASSERT_EQ(fresh.calls, 1);
    kite__io_stop(loop, &fresh.io);
    close(sv[0]);
    close(sv[1]);
    kite__io_stop(loop, &m.w[first].io);
    for (int i = 0; i < N; i++) {
        if (i == first)
            close(m.sv[i][0]);
        close(m.sv[i][1]);
    }
    kite_loop_free(loop);
}

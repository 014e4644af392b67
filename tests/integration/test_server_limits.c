/*
 * Session limits over loopback: pings and the ping timeout, frame and message size
 * limits (1009), the outgoing queue (high-water mark, on_drain, hard limit with both
 * policies), per-session overrides, and the pause/resume hooks the coroutine layer uses.
 */
#include <sys/socket.h>
#include <unistd.h>

#include "session/session.h"
#include "test_server_kit.h"

static struct kite_route *g_route;

static void start_with_cb(struct ts *t, const struct kite_ws_callbacks *cb,
                          const struct kite_ws_options *wo, const struct kite_send_limits *sl)
{
    struct kite_app_options o;
    ts_options(&o);
    t->app = kite_app_new(&o);
    ASSERT(t->app != NULL);
    g_route = kite_route_ws_callbacks(t->app, "/t", cb, NULL);
    ASSERT(g_route != NULL);
    if (wo)
        ASSERT_EQ(kite_route_set_ws_options(g_route, wo), KITE_OK);
    if (sl)
        ASSERT_EQ(kite_route_set_send_limits(g_route, sl), KITE_OK);
    ts_start(t);
}

static void start_with(struct ts *t, const struct kite_ws_options *wo,
                       const struct kite_send_limits *sl)
{
    start_with_cb(t, &tapp_callbacks, wo, sl);
}

/* Ktor's pingPeriod: the server pings; a client that answers stays connected. */
TEST(limits_ping_period_keeps_live_client)
{
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    wo.ping_period_ms = 60;
    wo.timeout_ms = 1000;
    struct ts t;
    start_with(&t, &wo, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    int pings = 0;
    uint64_t end = kit_now_ms() + 600;
    while (kit_now_ms() < end) {
        struct tc_frame f;
        if (tc_next(c, &f, 50) != 1)
            continue;
        ASSERT_EQ(f.op, KITE_OP_PING);                 /* RFC 6455 §5.5.2 */
        tc_send(c, KITE_OP_PONG, true, f.data, f.len); /* §5.5.3: same payload */
        free(f.data);
        pings++;
    }
    ASSERT(pings >= 3);
    tc_text(c, "alive");
    TC_EXPECT(c, KITE_OP_TEXT, "alive");
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* Ktor's timeout: no pong within timeout_ms fails the session (on_error TIMEOUT). */
TEST(limits_ping_timeout)
{
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    wo.ping_period_ms = 50;
    wo.timeout_ms = 100;
    struct ts t;
    start_with(&t, &wo, NULL);
    /* Start the clock before the handshake: the server's ping period starts when the
     * session opens, which is before the client sees the 101. */
    uint64_t t0 = kit_now_ms();
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    ASSERT(tc_wait_eof(c, 3000)); /* never answering the pings */
    ASSERT(kit_now_ms() - t0 >= 140);
    ASSERT_REC("error KITE_ERR_TIMEOUT;close ", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* A close frame the peer never answers: the close handshake times out (§7.1.1). */
TEST(limits_close_handshake_timeout)
{
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    wo.timeout_ms = 150;
    struct ts t;
    start_with(&t, &wo, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:close 4000 go");
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 4000);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("close 4000 local unclean err=KITE_ERR_TIMEOUT", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* Ktor's maxFrameSize: a bigger frame fails with 1009 (RFC 6455 §7.4.1). */
TEST(limits_max_frame_1009)
{
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    wo.max_frame_size = 1000;
    struct ts t;
    start_with(&t, &wo, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    static char big[1001];
    memset(big, 'a', sizeof(big));
    tc_send(c, KITE_OP_TEXT, true, big, 1000); /* at the limit: fine */
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), 1);
    ASSERT_EQ(f.len, 1000);
    free(f.data);
    tc_send(c, KITE_OP_BINARY, true, big, 1001);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1009);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("error KITE_ERR_TOO_BIG;close 1009 local", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* max_message_size: fragments that add up past it fail with 1009. */
TEST(limits_max_message_1009)
{
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    wo.max_message_size = 1000;
    struct ts t;
    start_with(&t, &wo, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    static char part[600];
    memset(part, 'b', sizeof(part));
    tc_send(c, KITE_OP_TEXT, false, part, 600);
    tc_send(c, KITE_OP_CONTINUATION, true, part, 600);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1009);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("error KITE_ERR_TOO_BIG;", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/*
 * Sessions share their route's options rather than copying them, so a change must not
 * reach the sessions already open: "cmd:routemax N" (run on the loop thread) gives the
 * route max_message_size N; the session that asked keeps its 1000, a new one gets N.
 */
static void routemax_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    unsigned n;
    char cmd[64];
    if (m->type == KITE_OP_TEXT && m->len < sizeof(cmd)) {
        memcpy(cmd, m->data, m->len);
        cmd[m->len] = 0;
        if (sscanf(cmd, "cmd:routemax %u", &n) == 1) {
            struct kite_ws_options wo;
            kite_ws_options_init(&wo);
            wo.max_message_size = n;
            rec_add("routemax %d;", kite_route_set_ws_options(g_route, &wo));
            return;
        }
    }
    tapp_message(s, m, ud);
}

TEST(limits_route_options_change_reaches_only_new_sessions)
{
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    wo.max_message_size = 1000;
    struct kite_ws_callbacks cb = tapp_callbacks;
    cb.on_message = routemax_message;
    struct ts t;
    start_with_cb(&t, &cb, &wo, NULL);
    static char body[800];
    memset(body, 'm', sizeof(body));
    struct tc *old = tc_open_ok(t.port, "/t", NULL);
    tc_send(old, KITE_OP_BINARY, true, body, sizeof(body));
    struct tc_frame f;
    ASSERT_EQ(tc_next(old, &f, 3000), 1);
    ASSERT_EQ(f.len, sizeof(body));
    free(f.data);
    tc_text(old, "cmd:routemax 100");
    ASSERT_REC("routemax 0;", 2000);
    /* The open session still takes 800 bytes under its own 1000. */
    tc_send(old, KITE_OP_BINARY, true, body, sizeof(body));
    ASSERT_EQ(tc_next(old, &f, 3000), 1);
    ASSERT_EQ(f.op, KITE_OP_BINARY);
    ASSERT_EQ(f.len, sizeof(body));
    free(f.data);
    /* A new one is held to 100 (RFC 6455 §7.4.1: 1009). */
    struct tc *young = tc_open_ok(t.port, "/t", NULL);
    tc_send(young, KITE_OP_BINARY, true, body, sizeof(body));
    ASSERT_EQ(tc_expect_close(young, NULL, 0), 1009);
    ASSERT(tc_wait_eof(young, 3000));
    tc_free(young);
    tc_free(old);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* Read every frame until `n` binary ones arrived, each checked against the pattern of
 * its place in the sequence (kit_pattern: order and content); returns how many came. */
static unsigned read_binaries(struct tc *c, unsigned n, size_t size)
{
    unsigned got = 0;
    struct tc_frame f;
    while (got < n && tc_next(c, &f, 3000) == 1) {
        if (f.op == KITE_OP_CLOSE) {
            /* put it back for the caller: simplest is to remember the code */
            rec_add("client-saw-close %u;",
                    f.len >= 2 ? (unsigned)(f.data[0] << 8 | f.data[1]) : 0);
            free(f.data);
            break;
        }
        ASSERT_EQ(f.op, KITE_OP_BINARY);
        ASSERT_EQ(f.len, size);
        ASSERT(kit_check(f.data, got, size));
        free(f.data);
        got++;
    }
    return got;
}

/* The flood's counts and the queue at its first refusal (SIZE_MAX: none), from the log. */
struct flood {
    unsigned ok, queued, dropped, closed;
    size_t refused_at;
};

static struct flood flood_result(void)
{
    ASSERT_REC("flood ok=", 5000);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "broken") == NULL); /* every status agreed with the queue */
    struct flood r = {.refused_at = SIZE_MAX};
    const char *p = strstr(log, "flood ok=");
    ASSERT_EQ(sscanf(p, "flood ok=%u queued=%u dropped=%u closed=%u;", &r.ok, &r.queued, &r.dropped,
                     &r.closed),
              4);
    if ((p = strstr(log, "refused-at ")) != NULL)
        ASSERT_EQ(sscanf(p, "refused-at %zu;", &r.refused_at), 1);
    return r;
}

/*
 * A peer that stops reading: sends past the high-water mark return QUEUED, on_drain
 * fires once the client reads again and the queue falls below the mark, and every
 * message arrives in order. The first sends find the queue empty and are written during
 * the call until the kernel is full (how many depends on its buffers); from the first
 * that leaves something queued on, every send queues its whole message (checked per send
 * by the flood, with each status against the queue it reports).
 */
TEST(limits_backpressure_queued_then_drain)
{
    struct kite_send_limits sl;
    kite_send_limits_init(&sl);
    sl.high_water = 256 * 1024;
    sl.hard_limit = 64u * 1024 * 1024;
    struct ts t;
    start_with(&t, NULL, &sl);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:flood 400 65536"); /* 25 MiB: more than loopback buffers hold */
    struct flood r = flood_result();
    ASSERT_EQ(r.ok + r.queued, 400);
    ASSERT_EQ(r.dropped + r.closed, 0);
    ASSERT(r.ok >= 3);    /* the 3 that fit under the mark even if nothing was written */
    ASSERT(r.queued > 0); /* the kernel did fill up */
    kit_sleep_ms(200);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "drain") == NULL); /* the client is not reading yet */
    ASSERT_EQ(read_binaries(c, 400, 65536), 400);
    ASSERT_REC("drain ", 3000);
    tc_text(c, "after");
    TC_EXPECT(c, KITE_OP_TEXT, "after");
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* The refused send met the hard limit: the queue held no more than it, and one more
 * message (with the largest header, 14 bytes) would have passed it. */
static void assert_refused_at_limit(const struct flood *r, size_t hard, size_t size)
{
    ASSERT(r->refused_at <= hard);
    ASSERT(r->refused_at + size + 14 > hard);
}

/* The hard limit under the CLOSE policy: the send that would pass it is refused and
 * the session closes with 1008; what was accepted before still arrives first. Enough
 * messages that the queue reaches the limit after the kernel's buffers are full. */
TEST(limits_hard_limit_close_1008)
{
    struct kite_send_limits sl;
    kite_send_limits_init(&sl);
    sl.high_water = 64 * 1024;
    sl.hard_limit = 1024 * 1024;
    sl.policy = KITE_SEND_POLICY_CLOSE;
    struct ts t;
    start_with(&t, NULL, &sl);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:flood 400 65536"); /* 25 MiB against a 1 MiB limit */
    struct flood r = flood_result();
    ASSERT(r.queued >= 15); /* a queue that started empty holds 15 before the limit */
    ASSERT(r.closed > 0);
    ASSERT_EQ(r.ok + r.queued + r.closed, 400);
    ASSERT_EQ(r.dropped, 0);
    assert_refused_at_limit(&r, sl.hard_limit, 65536);
    ASSERT_EQ(read_binaries(c, 400, 65536), r.ok + r.queued);
    ASSERT_REC("client-saw-close 1008;", 3000);
    tc_close(c, 1008, NULL);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("close 1008 local clean err=0 reason=send queue full;", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* The DROP policy: refused sends return DROPPED and the session goes on. */
TEST(limits_hard_limit_drop)
{
    struct kite_send_limits sl;
    kite_send_limits_init(&sl);
    sl.high_water = 64 * 1024;
    sl.hard_limit = 1024 * 1024;
    sl.policy = KITE_SEND_POLICY_DROP;
    struct ts t;
    start_with(&t, NULL, &sl);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:flood 400 65536");
    struct flood r = flood_result();
    ASSERT(r.queued >= 15);
    ASSERT(r.dropped > 0);
    ASSERT_EQ(r.ok + r.queued + r.dropped, 400);
    ASSERT_EQ(r.closed, 0);
    assert_refused_at_limit(&r, sl.hard_limit, 65536);
    ASSERT_EQ(read_binaries(c, r.ok + r.queued, 65536), r.ok + r.queued);
    tc_text(c, "still here");
    TC_EXPECT(c, KITE_OP_TEXT, "still here");
    ASSERT_REC("drain ", 3000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/*
 * The same limits for small messages, which take the session's short send path: 22
 * bytes a message framed (RFC 6455 §5.2), so the 5th send reaches the high-water mark
 * of 100 (QUEUED) and the 14th would pass the hard limit of 300 (14 bytes of header
 * room are counted): under CLOSE it is refused, and so is everything after it.
 */
TEST(limits_small_messages_queue_then_hit_the_hard_limit)
{
    struct kite_send_limits sl;
    kite_send_limits_init(&sl);
    sl.high_water = 100;
    sl.hard_limit = 300;
    sl.policy = KITE_SEND_POLICY_CLOSE;
    struct ts t;
    start_with(&t, NULL, &sl);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:flood 40 20");
    ASSERT_REC("flood ok=4 queued=9 dropped=0 closed=27;", 3000);
    ASSERT_EQ(read_binaries(c, 40, 20), 13);
    ASSERT_REC("client-saw-close 1008;", 3000);
    tc_close(c, 1008, NULL);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_EQ(ts_stop(&t), 0);
}

/* ---- large messages written during the send ------------------------------------------ */

/* Expect message `i` of the pattern, `size` bytes. */
static void expect_pattern(struct tc *c, unsigned i, size_t size)
{
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 5000), 1);
    ASSERT_EQ(f.op, KITE_OP_BINARY);
    ASSERT_EQ(f.len, size);
    ASSERT(kit_check(f.data, i, size));
    free(f.data);
}

static size_t logged_q(void)
{
    char log[16384];
    rec_get(log, sizeof(log));
    const char *p = strstr(log, "big ");
    size_t q = SIZE_MAX;
    int rc = -1;
    ASSERT(p && sscanf(p, "big %d q=%zu", &rc, &q) == 2);
    return q;
}

/* 1 MiB to a reading peer, nothing queued: the kernel takes it during the send, so at
 * most the part it did not take is copied into the queue; it arrives intact. */
TEST(limits_large_send_written_during_the_call)
{
    struct ts t;
    start_with(&t, NULL, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:big 0 1048576");
    expect_pattern(c, 0, 1048576);
    expect_pattern(c, 0, 1048576); /* the second send of the same buffer */
    ASSERT_REC("open=1 again=", 2000);
    ASSERT(logged_q() < 1048576 + 10); /* some of it went out during the call */
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* 16 MiB to a peer that is not reading: more than loopback buffers hold, so the write
 * is partial. Exactly the rest is queued (QUEUED: it is over the high-water mark); the
 * peer gets the whole message, then the next one, queued behind it. */
TEST(limits_large_send_partial_write_queues_the_tail)
{
    enum { SIZE = 16 << 20 };
    struct ts t;
    start_with(&t, NULL, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:big 0 16777216");
    ASSERT_REC("big 1 q=", 5000);
    size_t q = logged_q();
    ASSERT(q > 0 && q < (size_t)SIZE + 10);
    expect_pattern(c, 0, SIZE);
    expect_pattern(c, 0, SIZE);
    ASSERT_REC("drain ", 3000);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "broken") == NULL);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* Large and small messages keep their order: a small one queued behind the rest of a
 * large one, a large one behind a queued small one (never written ahead of it). */
static void order_case(struct tc *c, const char *cmd, const char *logged, size_t size,
                       unsigned wait_ms)
{
    tc_text(c, cmd);
    ASSERT_REC(logged, 5000);
    kit_sleep_ms(wait_ms); /* the peer reads late: the first write is partial */
    expect_pattern(c, 0, size);
    TC_EXPECT(c, KITE_OP_TEXT, "one");
    expect_pattern(c, 1, size);
    TC_EXPECT(c, KITE_OP_TEXT, "two");
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "broken") == NULL);
}

TEST(limits_large_and_small_sends_keep_their_order)
{
    struct ts t;
    start_with(&t, NULL, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    order_case(c, "cmd:order 1048576", "order ", 1048576, 0);
    /* All QUEUED: the rest of the first (over 64 KiB), then everything behind it. */
    order_case(c, "cmd:order 16777216", "order 1 1 1 1;", 16777216, 100);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* The peer resets the connection before the server writes a large message: the direct
 * write fails inside the callback, the send says CLOSED, the session stays usable for
 * the rest of the callback (closed, not freed), and it ends after the callback with the
 * transport error. */
TEST(limits_peer_reset_during_a_direct_write)
{
    struct ts t;
    start_with(&t, NULL, NULL);
    struct tc *c = tc_open_ok(t.port, "/t", NULL);
    tc_text(c, "cmd:big 200 1048576"); /* the server waits 200 ms before sending */
    struct linger lg = {1, 0};
    ASSERT_EQ(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(c->fd); /* SO_LINGER 0: a reset */
    c->fd = -1;
    ASSERT_REC("big 3 q=0 open=0 again=3;", 3000);
    ASSERT_REC("close 1006 ", 3000);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "error ") != NULL); /* on_error: the reset is an error */
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* ---- per-session overrides ---------------------------------------------------------- */

static void ovr_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)req;
    (void)ud;
    struct kite_ws_options o = *kite_session_options(s);
    o.max_message_size = 10;
    ASSERT_EQ(kite_session_set_options(s, &o), KITE_OK);
    o.timeout_ms = 0;
    ASSERT_EQ(kite_session_set_options(s, &o), KITE_ERR_INVALID);
    struct kite_send_limits l;
    kite_session_send_limits(s, &l);
    ASSERT_EQ(l.high_water, 64 * 1024);
    l.high_water = 1;
    ASSERT_EQ(kite_session_set_send_limits(s, &l), KITE_OK);
    l.high_water = l.hard_limit + 1;
    ASSERT_EQ(kite_session_set_send_limits(s, &l), KITE_ERR_INVALID);
    size_t q = 99;
    rec_add("ovr send=%d", kite_session_send_text(s, "hello", 5, &q)); /* over high water 1 */
    rec_add(" q=%zu;", q);
}

TEST(limits_per_session_overrides)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_ws_callbacks cb = tapp_callbacks;
    cb.on_open = ovr_open;
    ASSERT(kite_route_ws_callbacks(t.app, "/o", &cb, NULL) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/o", NULL);
    ASSERT_REC("ovr send=1 q=7;", 2000); /* QUEUED: 5 bytes + 2 header bytes queued */
    TC_EXPECT(c, KITE_OP_TEXT, "hello");
    ASSERT_REC("drain 0;", 2000);
    tc_text(c, "0123456789");
    TC_EXPECT(c, KITE_OP_TEXT, "0123456789");
    tc_text(c, "0123456789a"); /* over this session's 10-byte message limit */
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1009);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* ---- pause / resume (hooks for sequential handlers) ---------------------------------- */

static struct kite_session *_Atomic g_paused;

static void pause_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    rec_add("got %.*s;", (int)m->len, (const char *)m->data);
    if (m->len == 5 && memcmp(m->data, "pause", 5) == 0) {
        kite__session_pause(s);
        g_paused = s;
    }
}

static void resume_fn(struct kite_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    rec_add("resume;");
    kite__session_resume(g_paused);
}

TEST(limits_pause_holds_back_delivery)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_ws_callbacks cb = {.on_message = pause_message};
    ASSERT(kite_route_ws_callbacks(t.app, "/p", &cb, NULL) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/p", NULL);
    /* Three messages in one write: the two after "pause" are left in the receive
     * buffer when delivery stops, and must survive in the session's stash. */
    ASSERT_EQ(kite_codec_send(c->codec, KITE_OP_TEXT, "pause", 5), KITE_OK);
    ASSERT_EQ(kite_codec_send(c->codec, KITE_OP_TEXT, "one", 3), KITE_OK);
    ASSERT_EQ(kite_codec_send(c->codec, KITE_OP_TEXT, "two", 3), KITE_OK);
    tc_flush(c);
    ASSERT_REC("got pause;", 2000);
    kit_sleep_ms(100);
    tc_text(c, "three"); /* arrives while paused: not read from the socket */
    kit_sleep_ms(100);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "got one") == NULL);
    ASSERT_EQ(kite_app_post(t.app, resume_fn, NULL), KITE_OK);
    ASSERT_REC("got pause;resume;got one;got two;got three;", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

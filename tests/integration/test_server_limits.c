/*
 * Session limits over loopback: pings and the ping timeout, frame and message size
 * limits (1009), the outgoing queue (high-water mark, on_drain, hard limit with both
 * policies), per-session overrides, and the pause/resume hooks the coroutine layer uses.
 */
#include "session/session.h"
#include "test_server_kit.h"

static struct kite_route *g_route;

static void start_with(struct ts *t, const struct kite_ws_options *wo,
                       const struct kite_send_limits *sl)
{
    struct kite_app_options o;
    ts_options(&o);
    t->app = kite_app_new(&o);
    ASSERT(t->app != NULL);
    g_route = kite_route_ws_callbacks(t->app, "/t", &tapp_callbacks, NULL);
    ASSERT(g_route != NULL);
    if (wo)
        ASSERT_EQ(kite_route_set_ws_options(g_route, wo), KITE_OK);
    if (sl)
        ASSERT_EQ(kite_route_set_send_limits(g_route, sl), KITE_OK);
    ts_start(t);
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

/* Read every frame until `n` binary ones arrived; returns how many came. */
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
        free(f.data);
        got++;
    }
    return got;
}

/*
 * A peer that stops reading: sends past the high-water mark return QUEUED, on_drain
 * fires once the client reads again and the queue falls below the mark, and every
 * message arrives in order.
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
    ASSERT_REC("flood ok=3 queued=397 dropped=0 closed=0;", 3000);
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

/* The hard limit under the CLOSE policy: the send that would pass it is refused and
 * the session closes with 1008; what was queued before still arrives first. */
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
    tc_text(c, "cmd:flood 40 65536"); /* 2.5 MiB against a 1 MiB limit */
    ASSERT_REC("flood ok=0 queued=15 dropped=0 closed=25;", 3000);
    ASSERT_EQ(read_binaries(c, 40, 65536), 15);
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
    tc_text(c, "cmd:flood 40 65536");
    ASSERT_REC("flood ok=0 queued=15 dropped=25 closed=0;", 3000);
    ASSERT_EQ(read_binaries(c, 15, 65536), 15);
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

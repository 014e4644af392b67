/*
 * Sequential handlers over a real server (include/kite/handler.h): the seed's echo
 * conversation, how the end of `incoming` maps to onClose/onError, what happens when a
 * handler returns, message lifetime across suspensions, flush/close/terminate, request
 * info, raw routes, blocking calls and calls from the wrong place.
 */
#include <sys/resource.h>
#include <sys/wait.h>

#include "test_server_kit.h"

#include "coro/handler.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* Read the handler counters of the app's loop, on its thread. */
struct stats_req {
    struct kite_loop *loop;
    struct kite__handler_stats st;
    bool found;
    volatile bool done;
};

static void stats_on_loop(struct kite_loop *loop, void *arg)
{
    struct stats_req *r = arg;
    r->found = kite__handler_stats(loop, &r->st);
    __atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
}

static struct stats_req loop_stats(struct ts *t)
{
    struct stats_req r = {.loop = kite_app_loop(t->app)};
    ASSERT_EQ(kite_app_post(t->app, stats_on_loop, &r), KITE_OK);
    uint64_t end = kit_now_ms() + 3000;
    while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE) && kit_now_ms() < end)
        kit_sleep_ms(1);
    ASSERT(r.done);
    return r;
}

/* Wait until the app's loop has no handler left (its per-loop state is freed at the
 * end of the iteration in which the last one went away). */
static void wait_no_handlers(struct ts *t)
{
    uint64_t end = kit_now_ms() + 5000;
    for (;;) {
        struct stats_req r = loop_stats(t);
        if (!r.found)
            return;
        if (kit_now_ms() > end)
            kite_test_fail(__FILE__, __LINE__, "%zu handlers still live", r.st.live);
        kit_sleep_ms(5);
    }
}

/* Every handler gone, the app stopped and freed, and (under ASan) nothing leaked: the
 * harness's children _exit(), so LeakSanitizer is asked here. */
static void stop_app(struct ts *t)
{
    wait_no_handlers(t);
    ASSERT_EQ(ts_stop(t), KITE_OK);
#ifdef UNDER_ASAN
    ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
#endif
}

static const char *initiator(enum kite_close_initiator i)
{
    return i == KITE_CLOSED_BY_PEER ? "peer" : i == KITE_CLOSED_BY_LOCAL ? "local" : "none";
}

/* Log how the handler's session ended: "end <rc-name> <code> <who> <clean|unclean>;" */
static void log_end(struct kite_session *s, int rc)
{
    const struct kite_close_info *ci = kite_close_reason(s);
    ASSERT(ci != NULL);
    rec_add("end %s %u %s %s \"%.*s\";", kite_err_name(rc), (unsigned)ci->code,
            initiator(ci->initiator), ci->clean ? "clean" : "unclean", (int)ci->reason_len,
            ci->reason);
}

/* Fills the caller's *t: the server thread keeps that pointer (ts_main), so it must not
 * be a local of this function returned by value. */
static void start_app(struct ts *t, const char *path, kite_handler_fn *fn, bool raw)
{
    struct kite_app_options o;
    ts_options(&o);
    *t = (struct ts){.app = kite_app_new(&o)};
    ASSERT(t->app != NULL);
    struct kite_route *r = raw ? kite_route_ws_raw(t->app, path, fn, NULL)
                               : kite_route_ws(t->app, path, fn, NULL);
    ASSERT(r != NULL);
    ts_start(t);
}

/* ---- the seed's echo --------------------------------------------------------------------- */

/* Seed 000/004, line for line. */
static void seed_echo(struct kite_session *s, void *ud)
{
    (void)ud;
    kite_send_str(s, "Please enter your name");
    struct kite_msg m;
    int rc;
    while ((rc = kite_receive(s, &m)) == KITE_OK) {
        if (m.type != KITE_OP_TEXT)
            continue;
        if (kite_msg_equals_ci(&m, "bye"))
            kite_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
        else
            kite_send_textf(s, "Hi, %.*s!", (int)m.len, (const char *)m.data);
    }
    log_end(s, rc);
}

TEST(handler_seed_echo_conversation)
{
    struct ts t;
    start_app(&t, "/echo", seed_echo, false);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    TC_EXPECT(c, KITE_OP_TEXT, "Please enter your name");
    tc_text(c, "Kite");
    TC_EXPECT(c, KITE_OP_TEXT, "Hi, Kite!");
    tc_send(c, KITE_OP_BINARY, true, "\x01\x02", 2); /* frame as? Frame.Text ?: continue */
    tc_text(c, "World");
    TC_EXPECT(c, KITE_OP_TEXT, "Hi, World!");
    char name[600], hi[610];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = 0;
    snprintf(hi, sizeof(hi), "Hi, %s!", name); /* longer than kite_send_textf's stack buffer */
    tc_text(c, name);
    TC_EXPECT(c, KITE_OP_TEXT, hi);
    tc_text(c, "ByE");
    char reason[128];
    /* RFC 6455 §7.1.2: the close frame carries 1000 and the reason. */
    ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), 1000);
    ASSERT_STREQ(reason, "Client said BYE");
    tc_close(c, 1000, "");
    ASSERT(tc_wait_eof(c, 3000)); /* RFC 6455 §7.1.1: the server closes TCP first */
    ASSERT_REC("end KITE_ERR_CLOSED 1000 local clean \"Client said BYE\";", 3000);
    tc_free(c);
    stop_app(&t);
}

/* ---- many messages in one read -------------------------------------------------------------- */

static void logging_echo(struct kite_session *s, void *ud);

TEST(handler_pipelined_messages_keep_their_order)
{
    struct ts t;
    start_app(&t, "/", logging_echo, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    struct stats_req before = loop_stats(&t);
    /* 200 messages in a few writes: many arrive in one read. */
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof(msg), "message %d", i);
        ASSERT_EQ(kite_codec_send(c->codec, i % 3 ? KITE_OP_TEXT : KITE_OP_BINARY, msg,
                                  (size_t)n),
                  KITE_OK);
    }
    tc_flush(c);
    for (int i = 0; i < N; i++) {
        char msg[32];
        snprintf(msg, sizeof(msg), "message %d", i);
        TC_EXPECT(c, i % 3 ? KITE_OP_TEXT : KITE_OP_BINARY, msg);
    }
    struct stats_req after = loop_stats(&t);
    uint64_t resumes = after.st.resumes - before.st.resumes;
#ifdef KITE_HAVE_ON_INPUT_DONE
    ASSERT(resumes < N / 4); /* one resumption per read, not per message */
#else
    ASSERT(resumes >= N);
#endif
    tc_free(c);
    stop_app(&t);
}

/* Every send parks (high-water mark 1 byte), so the handler stops receiving between any
 * two messages: messages queued in one read, a reassembled one among them, and the
 * rest held back must still come out whole and in order. */
static void parking_echo(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_send_limits l;
    kite_send_limits_init(&l);
    l.high_water = 1;
    ASSERT_EQ(kite_session_set_send_limits(s, &l), KITE_OK);
    logging_echo(s, ud);
}

TEST(handler_mixed_reads_under_backpressure_keep_their_order)
{
    struct ts t;
    start_app(&t, "/", parking_echo, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    for (int round = 0; round < 20; round++) {
        /* One write: two whole messages, one in two fragments (RFC 6455 §5.4), one more. */
        char a[16], b[16], c1[16], c2[16], d[16], cc[32];
        snprintf(a, sizeof(a), "a%d", round);
        snprintf(b, sizeof(b), "b%d", round);
        snprintf(c1, sizeof(c1), "c%d-", round);
        snprintf(c2, sizeof(c2), "tail%d", round);
        snprintf(d, sizeof(d), "d%d", round);
        snprintf(cc, sizeof(cc), "%s%s", c1, c2);
        ASSERT_EQ(kite_codec_send(c->codec, KITE_OP_TEXT, a, strlen(a)), KITE_OK);
        ASSERT_EQ(kite_codec_send(c->codec, KITE_OP_BINARY, b, strlen(b)), KITE_OK);
        ASSERT_EQ(kite_codec_send_frame(c->codec, KITE_OP_TEXT, false, 0, c1, strlen(c1)),
                  KITE_OK);
        ASSERT_EQ(kite_codec_send_frame(c->codec, KITE_OP_PING, true, 0, "p", 1), KITE_OK);
        ASSERT_EQ(kite_codec_send_frame(c->codec, KITE_OP_CONTINUATION, true, 0, c2, strlen(c2)),
                  KITE_OK);
        ASSERT_EQ(kite_codec_send(c->codec, KITE_OP_TEXT, d, strlen(d)), KITE_OK);
        tc_flush(c);
        /* Data in order; the pong (kite's answer, not the handler's) anywhere. */
        const char *want[4] = {a, b, cc, d};
        const uint8_t ops[4] = {KITE_OP_TEXT, KITE_OP_BINARY, KITE_OP_TEXT, KITE_OP_TEXT};
        int next = 0, pongs = 0;
        while (next < 4 || pongs < 1) {
            struct tc_frame f;
            ASSERT_EQ(tc_next(c, &f, 3000), 1);
            if (f.op == KITE_OP_PONG) {
                pongs++;
            } else {
                ASSERT(next < 4);
                ASSERT_EQ(f.op, ops[next]);
                ASSERT_STREQ((char *)f.data, want[next]);
                next++;
            }
            free(f.data);
        }
        ASSERT_EQ(pongs, 1);
    }
    tc_free(c);
    stop_app(&t);
}

/* ---- how the end of `incoming` is reported --------------------------------------------------- */

/* Seed 001's FAQ: echo until receive fails, then log onClose/onError with closeReason. */
static void logging_echo(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg m;
    int rc;
    while ((rc = kite_receive(s, &m)) == KITE_OK)
        kite_send(s, m.type, m.data, m.len);
    rec_add("%s;", rc == KITE_ERR_CLOSED ? "onClose" : "onError");
    log_end(s, rc);
}

TEST(handler_peer_close_is_onclose)
{
    struct ts t;
    start_app(&t, "/", logging_echo, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    tc_text(c, "one");
    TC_EXPECT(c, KITE_OP_TEXT, "one");
    tc_close(c, 1001, "going");
    /* RFC 6455 §5.5.1: the server echoes the code. */
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1001);
    ASSERT_REC("onClose;end KITE_ERR_CLOSED 1001 peer clean \"going\";", 3000);
    tc_free(c);
    stop_app(&t);
}

TEST(handler_protocol_error_is_onerror)
{
    struct ts t;
    start_app(&t, "/", logging_echo, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    /* RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection with 1007. */
    tc_send(c, KITE_OP_TEXT, true, "\xc3\x28", 2);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1007);
    ASSERT_REC("onError;end KITE_ERR_UTF8 1007 local unclean", 3000);
    tc_free(c);
    stop_app(&t);
}

TEST(handler_peer_vanishes_while_receiving)
{
    struct ts t;
    start_app(&t, "/", logging_echo, false);
    /* A FIN without a close frame is not an error: 1006, onClose (session.h). */
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    tc_text(c, "x");
    TC_EXPECT(c, KITE_OP_TEXT, "x");
    close(c->fd);
    c->fd = -1;
    ASSERT_REC("onClose;end KITE_ERR_CLOSED 1006 none unclean", 3000);
    tc_free(c);
    /* A reset is: -ECONNRESET, onError. */
    c = tc_open_ok(t.port, "/", NULL);
    tc_text(c, "y");
    TC_EXPECT(c, KITE_OP_TEXT, "y");
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(c->fd);
    c->fd = -1;
    ASSERT_REC("onError;end ECONNRESET 1006 none unclean", 3000);
    tc_free(c);
    stop_app(&t);
}

/* ---- what returning does --------------------------------------------------------------------- */

static void returns_at_once(struct kite_session *s, void *ud)
{
    (void)s;
    (void)ud;
    rec_add("started;");
}

TEST(handler_return_closes_1000)
{
    struct ts t;
    start_app(&t, "/", returns_at_once, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    ASSERT_REC("started;", 3000);
    /* Ktor: once the block returns, close(CloseReason(NORMAL, "")) is scheduled. */
    char reason[64];
    ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), 1000);
    ASSERT_STREQ(reason, "");
    tc_close(c, 1000, "");
    ASSERT(tc_wait_eof(c, 3000));
    tc_free(c);
    stop_app(&t);
}

TEST(handler_raw_return_terminates)
{
    struct ts t;
    start_app(&t, "/", returns_at_once, true);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    ASSERT_REC("started;", 3000);
    /* Ktor's webSocketRaw: the connection is terminated at once, no close frame. */
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), -1);
    tc_free(c);
    stop_app(&t);
}

/* ---- messages stay valid across suspensions ------------------------------------------------- */

static uint8_t blob[64 * 1024];
#define BLOBS 200

/* Take one message, then send BLOBS x 64 KiB (the peer does not read, so a send
 * suspends with the message held), then echo the message. */
static void hold_then_echo(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg m;
    if (kite_receive(s, &m) != KITE_OK)
        return;
    const uint8_t *data = m.data; /* a derived pointer must stay valid too */
    rec_add("got %zu;", m.len);
    for (int i = 0; i < BLOBS; i++)
        if (kite_send_binary(s, blob, sizeof(blob)) != KITE_OK)
            return;
    rec_add("sent;");
    kite_send(s, m.type, data, m.len);
    if (kite_receive(s, &m) == KITE_OK) /* releases the pinned buffer */
        rec_add("again;");
}

/* Noise on another connection: every message read overwrites the shared buffer. */
static void noise_echo(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK)
        kite_send(s, m.type, m.data, m.len);
}

static void read_blobs(struct tc *c)
{
    for (int i = 0; i < BLOBS; i++) {
        struct tc_frame f;
        ASSERT_EQ(tc_next(c, &f, 5000), 1);
        ASSERT_EQ(f.op, KITE_OP_BINARY);
        ASSERT_EQ(f.len, sizeof(blob));
        free(f.data);
    }
}

static void hold_case(bool fragmented)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    ASSERT(kite_route_ws(t.app, "/hold", hold_then_echo, NULL) != NULL);
    ASSERT(kite_route_ws(t.app, "/noise", noise_echo, NULL) != NULL);
    ts_start(&t);
    struct tc *a = tc_open_ok(t.port, "/hold", NULL);
    struct tc *b = tc_open_ok(t.port, "/noise", NULL);
    /* 5000 bytes: in one read it is a view of the shared buffer; in two fragments it is
     * reassembled by the codec, which frees a buffer that big right after delivery. */
    char msg[5000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (char)('a' + i % 26);
    if (fragmented) {
        tc_send(a, KITE_OP_TEXT, false, msg, 2000);
        kit_sleep_ms(50);
        tc_send(a, KITE_OP_CONTINUATION, true, msg + 2000, sizeof(msg) - 2000);
    } else {
        tc_send(a, KITE_OP_TEXT, true, msg, sizeof(msg));
    }
    ASSERT_REC("got 5000;", 3000);
    /* The handler is now parked in a send with the message held. */
    uint64_t end = kit_now_ms() + 5000;
    struct stats_req r;
    for (;;) {
        r = loop_stats(&t);
        if (r.found && (fragmented || r.st.pinned == 1))
            break;
        ASSERT(kit_now_ms() < end);
        kit_sleep_ms(5);
    }
    if (!fragmented)
        ASSERT_EQ(r.st.pinned, 1);
    else
        ASSERT_EQ(r.st.pinned, 0); /* copied, not pinned */
    char noise[6000];
    memset(noise, 'z', sizeof(noise));
    for (int i = 0; i < 20; i++) {
        tc_send(b, KITE_OP_TEXT, true, noise, sizeof(noise));
        struct tc_frame f;
        ASSERT_EQ(tc_next(b, &f, 3000), 1);
        ASSERT_EQ(f.len, sizeof(noise));
        free(f.data);
    }
    read_blobs(a);
    struct tc_frame f;
    ASSERT_EQ(tc_next(a, &f, 3000), 1);
    ASSERT_EQ(f.op, KITE_OP_TEXT);
    ASSERT_EQ(f.len, sizeof(msg));
    ASSERT_MEMEQ(f.data, msg, sizeof(msg));
    free(f.data);
    ASSERT_REC("sent;", 3000);
    tc_text(a, "next");
    ASSERT_REC("again;", 3000);
    r = loop_stats(&t);
    ASSERT_EQ(r.st.pinned, 0);
    tc_free(a);
    tc_free(b);
    stop_app(&t);
}

TEST(handler_message_pinned_across_a_full_send)
{
    hold_case(false);
}

TEST(handler_reassembled_message_survives_a_full_send)
{
    hold_case(true);
}

/* ---- backpressure: a full queue parks send; a vanished peer ends it -------------------------- */

static void flood(struct kite_session *s, void *ud)
{
    (void)ud;
    int i, rc = KITE_OK;
    for (i = 0; i < BLOBS && rc == KITE_OK; i++)
        rc = kite_send_binary(s, blob, sizeof(blob));
    rec_add("flood %d %s;", i, kite_err_name(rc));
    if (rc != KITE_OK)
        log_end(s, rc);
}

TEST(handler_send_parks_then_resumes_when_peer_reads)
{
    struct ts t;
    start_app(&t, "/", flood, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    kit_sleep_ms(300);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "flood") == NULL); /* parked: 12.8 MB do not fit in the kernel */
    read_blobs(c);
    ASSERT_REC("flood 200 KITE_OK;", 3000);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1000); /* the handler returned */
    tc_free(c);
    stop_app(&t);
}

TEST(handler_send_ends_when_peer_vanishes)
{
    struct ts t;
    start_app(&t, "/", flood, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    kit_sleep_ms(200);
    close(c->fd); /* with unread data: a reset */
    c->fd = -1;
    ASSERT_REC("KITE_ERR_CLOSED;end ", 5000);
    tc_free(c);
    stop_app(&t);
}

/* ---- flush, close, terminate ---------------------------------------------------------------------- */

static void flush_then_log(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_send_limits l;
    kite_send_limits_init(&l);
    l.high_water = 32u << 20; /* so the sends do not park: the flush must */
    ASSERT_EQ(kite_session_set_send_limits(s, &l), KITE_OK);
    for (int i = 0; i < 100; i++)
        kite_send_binary(s, blob, sizeof(blob));
    rec_add("queued;");
    int rc = kite_flush(s);
    rec_add("flushed %s;", kite_err_name(rc));
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK)
        ;
}

TEST(handler_flush_waits_for_the_kernel)
{
    struct ts t;
    start_app(&t, "/", flush_then_log, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    ASSERT_REC("queued;", 3000);
    kit_sleep_ms(200);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "flushed") == NULL);
    for (int i = 0; i < 100; i++) {
        struct tc_frame f;
        ASSERT_EQ(tc_next(c, &f, 5000), 1);
        free(f.data);
    }
    ASSERT_REC("flushed KITE_OK;", 3000);
    tc_free(c);
    stop_app(&t);
}

static void terminate_on_message(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg m;
    int rc = kite_receive(s, &m);
    kite_terminate(s);
    kite_terminate(s); /* a no-op now */
    rc = kite_receive(s, &m);
    ASSERT_EQ(kite_send_str(s, "late"), KITE_ERR_CLOSED);
    ASSERT_EQ(kite_flush(s), KITE_ERR_CLOSED);
    ASSERT_EQ(kite_close(s, 1000, NULL), KITE_ERR_CLOSED);
    log_end(s, rc);
}

TEST(handler_terminate_drops_without_close_frame)
{
    struct ts t;
    start_app(&t, "/", terminate_on_message, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    tc_text(c, "go");
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), -1); /* EOF, no close frame (Ktor's terminate()) */
    ASSERT_REC("end KITE_ERR_CLOSED 1006 local unclean", 3000);
    tc_free(c);
    stop_app(&t);
}

/* kite_close() after which the peer still sends data: it is received (RFC 6455 §7.1.2:
 * the peer may send until it has sent its close). */
static void close_then_drain(struct kite_session *s, void *ud)
{
    (void)ud;
    rec_add("close %s;", kite_err_name(kite_close(s, 4000, "done")));
    rec_add("again %s;", kite_err_name(kite_close(s, 4000, "done")));
    struct kite_msg m;
    int rc;
    while ((rc = kite_receive(s, &m)) == KITE_OK)
        rec_add("late %.*s;", (int)m.len, (const char *)m.data);
    log_end(s, rc);
}

TEST(handler_close_then_receive_until_the_reply)
{
    struct ts t;
    start_app(&t, "/", close_then_drain, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    char reason[64];
    ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), 4000);
    ASSERT_STREQ(reason, "done");
    tc_text(c, "still here");
    tc_close(c, 4000, "");
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("close KITE_OK;again KITE_ERR_CLOSED;late still here;"
               "end KITE_ERR_CLOSED 4000 local clean \"done\";",
               3000);
    tc_free(c);
    stop_app(&t);
}

/* ---- request info and options -------------------------------------------------------------------- */

static void request_info(struct kite_session *s, void *ud)
{
    (void)ud;
    const struct kite_request *req = kite_handler_request(s);
    ASSERT(req != NULL);
    struct kite_str room, q, hdr;
    ASSERT(kite_request_param(req, "room", &room));
    ASSERT(kite_request_query_param(req, "who", &q));
    ASSERT(kite_request_header(req, "X-Test", &hdr));
    char addr[80];
    ASSERT(kite_session_remote_addr(s, addr, sizeof(addr)) > 0);
    rec_add("room=%.*s who=%.*s x=%.*s from=%.9s;", (int)room.len, room.ptr, (int)q.len, q.ptr,
            (int)hdr.len, hdr.ptr, addr);
    ASSERT(kite_handler_session() == s);
    /* Ktor's per-session options: read and change them. */
    const struct kite_ws_options *o = kite_session_options(s);
    ASSERT_EQ(o->timeout_ms, 15000);
    struct kite_ws_options no = *o;
    no.ping_period_ms = 50;
    ASSERT_EQ(kite_session_set_options(s, &no), KITE_OK);
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK) {
        rec_add("req-after=%s;", kite_handler_request(s) ? "set" : "null");
        kite_send(s, m.type, m.data, m.len);
    }
}

TEST(handler_request_info_and_options)
{
    struct ts t;
    start_app(&t, "/chat/{room}", request_info, false);
    struct tc *c = tc_open_ok(t.port, "/chat/lobby?who=ann", "X-Test: 42\r\n");
    ASSERT_REC("room=lobby who=ann x=42 from=127.0.0.1;", 3000);
    /* ping_period_ms 50: a ping arrives (RFC 6455 §5.5.2). */
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), 1);
    ASSERT_EQ(f.op, KITE_OP_PING);
    free(f.data);
    tc_text(c, "hi");
    ASSERT_REC("req-after=null;", 3000);
    tc_free(c);
    stop_app(&t);
}

/* ---- raw routes ------------------------------------------------------------------------------------ */

static void raw_handler(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_frame f;
    struct kite_msg m;
    ASSERT_EQ(kite_receive(s, &m), KITE_ERR_INVALID); /* raw sessions read frames */
    int rc;
    while ((rc = kite_receive_frame(s, &f)) == KITE_OK) {
        rec_add("f%u%s %.*s;", (unsigned)f.opcode, f.fin ? "" : "+", (int)f.len,
                f.opcode == KITE_OP_CLOSE ? "" : (const char *)f.data);
        if (f.opcode == KITE_OP_PING)
            kite_send_frame(s, KITE_OP_PONG, true, 0, f.data, f.len);
        if (f.opcode == KITE_OP_CLOSE) {
            uint16_t code;
            struct kite_str why;
            ASSERT_EQ(kite_frame_read_reason(&f, &code, &why), KITE_OK);
            rec_add("reason %u %.*s %s;", (unsigned)code, (int)why.len, why.ptr,
                    kite_close_code_name(code));
            kite_close(s, code, "ok");
        }
    }
    log_end(s, rc);
}

TEST(handler_raw_route_sees_every_frame)
{
    struct ts t;
    start_app(&t, "/", raw_handler, true);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    tc_send(c, KITE_OP_PING, true, "p", 1);
    TC_EXPECT(c, KITE_OP_PONG, "p"); /* answered by the handler, not by kite */
    tc_send(c, KITE_OP_TEXT, false, "ab", 2);
    tc_send(c, KITE_OP_CONTINUATION, true, "cd", 2);
    tc_close(c, 1000, "bye");
    char reason[64];
    ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), 1000);
    ASSERT_STREQ(reason, "ok");
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("f9 p;f1+ ab;f0 cd;f8 ;reason 1000 bye NORMAL;"
               "end KITE_ERR_CLOSED 1000 peer clean \"bye\";",
               3000);
    tc_free(c);
    stop_app(&t);
}

/* ---- blocking work --------------------------------------------------------------------------------- */

static pthread_t loop_thread;

static void *slow_double(void *arg)
{
    kit_sleep_ms(100);
    if (pthread_equal(pthread_self(), loop_thread))
        return NULL; /* must run on a worker, not the loop */
    return (void *)((uintptr_t)arg * 2);
}

/* While the handler waits for a worker, input is held back, not lost. */
static void blocking_handler(struct kite_session *s, void *ud)
{
    (void)ud;
    loop_thread = pthread_self();
    void *res = NULL;
    int rc = kite_handler_run_blocking(slow_double, (void *)(uintptr_t)21, &res);
    rec_add("blocking %s %lu;", kite_err_name(rc), (unsigned long)(uintptr_t)res);
    struct kite_msg m;
    int n = 0;
    while (kite_receive(s, &m) == KITE_OK) {
        char want[16];
        snprintf(want, sizeof(want), "m%d", n++);
        if (m.len != strlen(want) || memcmp(m.data, want, m.len) != 0)
            rec_add("out of order;");
        if (n == 50)
            kite_send_textf(s, "got %d", n);
    }
}

TEST(handler_run_blocking_resumes_with_result)
{
    struct ts t;
    start_app(&t, "/", blocking_handler, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    for (int i = 0; i < 50; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "m%d", i);
        tc_text(c, msg);
    }
    ASSERT_REC("blocking KITE_OK 42;", 3000);
    TC_EXPECT(c, KITE_OP_TEXT, "got 50");
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "out of order") == NULL);
    tc_free(c);
    stop_app(&t);
}

/* The session ends while its handler is in a blocking call: the call still returns its
 * result, then the handler sees the end. */
static void blocking_then_end(struct kite_session *s, void *ud)
{
    (void)ud;
    loop_thread = pthread_self();
    void *res = NULL;
    int rc = kite_handler_run_blocking(slow_double, (void *)(uintptr_t)5, &res);
    struct kite_msg m;
    int end = kite_receive(s, &m);
    rec_add("after %s %lu %s;", kite_err_name(rc), (unsigned long)(uintptr_t)res,
            kite_err_name(end));
}

TEST(handler_session_ends_during_blocking_call)
{
    struct ts t;
    start_app(&t, "/", blocking_then_end, false);
    struct tc *c = tc_open_ok(t.port, "/", NULL);
    close(c->fd);
    c->fd = -1;
    ASSERT_REC("after KITE_OK 10 KITE_ERR_CLOSED;", 3000);
    tc_free(c);
    stop_app(&t);
}

/* The pool's size is the app's setting: with one thread, two 150 ms calls from two
 * handlers take at least 300 ms; the loop keeps serving meanwhile. */
static void *sleep_150(void *arg)
{
    kit_sleep_ms(150);
    return arg;
}

static void two_blocking(struct kite_session *s, void *ud)
{
    (void)ud;
    void *res = NULL;
    int rc = kite_handler_run_blocking(sleep_150, s, &res);
    rec_add("done %s %s %llu;", kite_err_name(rc), res == s ? "same" : "other",
            (unsigned long long)kit_now_ms());
}

TEST(handler_worker_pool_size_is_the_apps)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    ASSERT(kite_route_ws(t.app, "/", two_blocking, NULL) != NULL);
    ASSERT_EQ(kite_app_set_handler_threads(t.app, 1), KITE_OK);
    ts_start(&t);
    struct tc *a = tc_open_ok(t.port, "/", NULL);
    struct tc *b = tc_open_ok(t.port, "/", NULL);
    /* One call finishes after 150 ms; the other waits for the one thread. */
    uint64_t end = kit_now_ms() + 5000;
    char log[16384];
    const char *second = NULL;
    while (!second) {
        ASSERT(kit_now_ms() < end);
        kit_sleep_ms(5);
        rec_get(log, sizeof(log));
        const char *first = strstr(log, "done ");
        second = first ? strstr(first + 5, "done ") : NULL;
    }
    /* Completion times: with one worker the second call starts only when the first
     * ends, so they finish at least one call (150 ms) apart, however late the second
     * session opened. (Timing each call from its own start would depend on when the
     * second client got through, which a loaded machine delays.) */
    unsigned long long d1 = 0, d2 = 0;
    ASSERT_EQ(sscanf(strstr(log, "done "), "done KITE_OK same %llu;", &d1), 1);
    ASSERT_EQ(sscanf(second, "done KITE_OK same %llu;", &d2), 1);
    ASSERT(d2 >= d1 + 140); /* serialised by the single worker */
    tc_free(a);
    tc_free(b);
    stop_app(&t);
}

/* ---- calls from the wrong place ------------------------------------------------------------------- */

static struct kite_session *volatile first_session;

static void wrong_place_cb(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    (void)m;
    struct kite_msg mm;
    rec_add("cb %s %s %s %s %s;", kite_err_name(kite_receive(s, &mm)),
            kite_err_name(kite_send_str(s, "x")), kite_err_name(kite_flush(s)),
            kite_close_reason(s) ? "info" : "null",
            kite_err_name(kite_handler_run_blocking(slow_double, NULL, NULL)));
    kite_session_send_str(s, "ok");
}

static const struct kite_ws_callbacks wrong_cb = {.on_message = wrong_place_cb};

static void first_handler(struct kite_session *s, void *ud)
{
    (void)ud;
    first_session = s;
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK)
        ;
    first_session = NULL;
}

static void second_handler(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK) {
        struct kite_session *other = first_session;
        rec_add("other %s %s;", kite_err_name(kite_send_str(other, "x")),
                kite_err_name(kite_receive(other, &m)));
        kite_send_str(s, "ok");
    }
}

TEST(handler_calls_outside_their_handler_are_refused)
{
    struct kite_msg m;
    struct kite_session *bogus = (struct kite_session *)&m; /* never dereferenced */
    ASSERT_EQ(kite_receive(bogus, &m), KITE_ERR_STATE);
    ASSERT_EQ(kite_send_text(bogus, "x", 1), KITE_ERR_STATE);
    ASSERT_EQ(kite_send_textf(bogus, "%d", 1), KITE_ERR_STATE);
    ASSERT_EQ(kite_send(bogus, KITE_OP_PING, "x", 1), KITE_ERR_STATE);
    ASSERT_EQ(kite_close(bogus, 1000, NULL), KITE_ERR_STATE);
    ASSERT(kite_close_reason(bogus) == NULL);
    ASSERT(kite_handler_request(bogus) == NULL);
    ASSERT(kite_handler_session() == NULL);

    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    ASSERT(kite_route_ws_callbacks(t.app, "/cb", &wrong_cb, NULL) != NULL);
    ASSERT(kite_route_ws(t.app, "/a", first_handler, NULL) != NULL);
    ASSERT(kite_route_ws(t.app, "/b", second_handler, NULL) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/cb", NULL);
    tc_text(c, "x");
    TC_EXPECT(c, KITE_OP_TEXT, "ok");
    ASSERT_REC("cb KITE_ERR_STATE KITE_ERR_STATE KITE_ERR_STATE null KITE_ERR_STATE;", 3000);
    struct tc *a = tc_open_ok(t.port, "/a", NULL);
    struct tc *b = tc_open_ok(t.port, "/b", NULL);
    uint64_t end = kit_now_ms() + 3000;
    while (!first_session && kit_now_ms() < end)
        kit_sleep_ms(1);
    tc_text(b, "x");
    TC_EXPECT(b, KITE_OP_TEXT, "ok");
    ASSERT_REC("other KITE_ERR_STATE KITE_ERR_STATE;", 3000);
    tc_free(a);
    tc_free(b);
    tc_free(c);
    stop_app(&t);
}

/* ---- routes ------------------------------------------------------------------------------------ */

TEST(handler_route_arguments)
{
    struct kite_app_options o;
    ts_options(&o);
    struct kite_app *app = kite_app_new(&o);
    ASSERT(kite_route_ws(app, "/x", NULL, NULL) == NULL);
    ASSERT(kite_route_ws(app, "bad", seed_echo, NULL) == NULL);
    struct kite_route *r = kite_route_ws(app, "/x", seed_echo, NULL);
    ASSERT(r != NULL);
    ASSERT(kite_route_ws(app, "/x", seed_echo, NULL) == NULL); /* taken */
    ASSERT_EQ(kite_route_set_stack_size(r, 8 * 1024), KITE_ERR_INVALID);
    ASSERT_EQ(kite_route_set_stack_size(r, 64 * 1024), KITE_OK);
    struct kite_route *cbr = kite_route_ws_callbacks(app, "/y", &wrong_cb, NULL);
    ASSERT_EQ(kite_route_set_stack_size(cbr, 64 * 1024), KITE_ERR_INVALID);
    ASSERT_EQ(kite_app_set_handler_threads(app, 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite_app_set_handler_threads(app, 2), KITE_OK);
    kite_app_free(app);
    kite__handler_app_free(app); /* what the app-teardown hook will do */
}

/* ---- out of memory -------------------------------------------------------------------------- */

/* Send a frame, ignoring a server that has already gone. */
static void send_lenient_frame(struct tc *c, enum kite_opcode op, bool fin, const char *text)
{
    if (kite_codec_send_frame(c->codec, op, fin, 0, text, strlen(text)) != KITE_OK)
        return;
    const uint8_t *p;
    size_t n = kite_codec_pending(c->codec, &p);
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    (void)w;
    kite_codec_consume(c->codec, n);
}

static void send_lenient(struct tc *c, enum kite_opcode op, const char *text)
{
    send_lenient_frame(c, op, true, text);
}

/* One conversation against an app whose allocator fails once, somewhere after start-up.
 * Whatever fails, the session ends (a close or a drop), nothing crashes, nothing leaks. */
static void oom_round(struct kite_test_alloc *st)
{
    struct kite_app_options o;
    ts_options(&o);
    o.allocator = kite_test_allocator(st);
    struct ts t = {.app = kite_app_new(&o)};
    if (!t.app)
        return; /* failed while making the app: nothing else to check */
    if (!kite_route_ws(t.app, "/echo", seed_echo, NULL) ||
        kite_app_listen(t.app, "127.0.0.1", 0) != KITE_OK) {
        kite_app_free(t.app);
        return;
    }
    t.port = kite_app_listener_port(t.app, 0);
    ASSERT_EQ(pthread_create(&t.th, NULL, ts_main, &t), 0);
    struct tc *c = tc_open(t.port, "/echo", NULL);
    if (c->status == 101) {
        send_lenient(c, KITE_OP_TEXT, "Kite");
        send_lenient_frame(c, KITE_OP_TEXT, false, "Ann "); /* reassembled: copied */
        kit_sleep_ms(5);
        send_lenient_frame(c, KITE_OP_CONTINUATION, true, "Lee");
        send_lenient(c, KITE_OP_TEXT, "bye");
        /* The server ends the session (answer its close; RFC 6455 §7.1.1: then it
         * closes TCP), or, if its close could not be queued, we close after a second. */
        uint64_t start = kit_now_ms();
        bool closed = false;
        for (;;) {
            struct tc_frame f;
            int r = tc_next(c, &f, 100);
            if (r < 0)
                break;
            if (r > 0 && f.op == KITE_OP_CLOSE && !closed) {
                send_lenient(c, KITE_OP_CLOSE, "");
                closed = true;
            }
            if (r > 0)
                free(f.data);
            if (!closed && kit_now_ms() > start + 1000) {
                send_lenient(c, KITE_OP_CLOSE, "");
                closed = true;
            }
            if (kit_now_ms() > start + 6000)
                kite_test_fail(__FILE__, __LINE__, "allocation %ld failing: the session hangs",
                               st->fail_at);
        }
    }
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

TEST(handler_out_of_memory_anywhere_is_clean)
{
    struct kite_test_alloc st;
    memset(&st, 0, sizeof(st));
    oom_round(&st); /* a dry run counts the allocations of a whole conversation */
    ASSERT_EQ(st.live, 0);
    long total = st.count;
    ASSERT(total > 10);
    for (long k = 1; k <= total; k++) {
        memset(&st, 0, sizeof(st));
        st.fail_at = k;
        oom_round(&st);
        if (st.live != 0)
            kite_test_fail(__FILE__, __LINE__, "allocation %ld of %ld failing: %ld blocks leaked",
                           k, total, st.live);
    }
}

/* ---- stack overflow ------------------------------------------------------------------------------- */

static volatile unsigned long never_ = ~0ul;

__attribute__((noinline)) static unsigned long deep(unsigned long n)
{
    volatile char buf[512];
    buf[0] = (char)n;
    if (n == never_)
        return 0;
    return deep(n + 1) + (unsigned long)buf[0];
}

static void overflowing(struct kite_session *s, void *ud)
{
    (void)s;
    (void)ud;
    rec_add("deep %lu;", deep(0));
}

/* In a child: a server whose handler runs off its 64 KiB stack on the first session. */
static void overflow_child(void)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_route *r = kite_route_ws(t.app, "/deep", overflowing, NULL);
    if (!r || kite_route_set_stack_size(r, 64 * 1024) != KITE_OK)
        _exit(3);
    ts_start(&t);
    struct tc *c = tc_open(t.port, "/deep", NULL);
    (void)c;
    kit_sleep_ms(3000);
    _exit(4); /* not reached: the overflow aborts the process */
}

TEST(handler_stack_overflow_is_reported)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        overflow_child();
    }
    close(fds[1]);
    char err[8192];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof(err) && (r = read(fds[0], err + n, sizeof(err) - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = 0;
    close(fds[0]);
    int st = 0;
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    if (!strstr(err, "coroutine stack overflow"))
        fprintf(stderr, "# child stderr: %s\n", err);
    ASSERT(WIFSIGNALED(st));
    ASSERT_EQ(WTERMSIG(st), SIGABRT);
    ASSERT(strstr(err, "kite: coroutine stack overflow (stack size 65536 bytes); "
                       "raise the route's stack size\n") != NULL);
}

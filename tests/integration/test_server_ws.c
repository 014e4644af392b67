/*
 * The server's WebSocket behaviour over loopback: the seed conversation, echo,
 * fragmentation, ping/pong, the close handshake from both sides with every valid code,
 * request information, subprotocols, raw routes, terminate, protocol errors.
 */
#include <strings.h>

#include "test_server_kit.h"

/* The thread keeps a pointer to *t: it must stay where it is until ts_stop. */
static void start_app(struct ts *t)
{
    struct kite_app_options o;
    ts_options(&o);
    t->app = kite_app_new(&o);
    ASSERT(kite_route_ws_callbacks(t->app, "/echo", &tapp_callbacks, NULL) != NULL);
    ASSERT(kite_route_ws_callbacks(t->app, "/chat/{room}", &tapp_callbacks, NULL) != NULL);
    ts_start(t);
}

/* ---- the seed (Ktor docs): "Please enter your name", "Hi, X!", bye -> 1000 ---------- */

static void seed_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)req;
    (void)ud;
    kite_session_send_str(s, "Please enter your name");
}

static void seed_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    if (m->type != KITE_OP_TEXT)
        return;
    if (m->len == 3 && strncasecmp((const char *)m->data, "bye", 3) == 0) {
        kite_session_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
        return;
    }
    char buf[300];
    int n = snprintf(buf, sizeof(buf), "Hi, %.*s!", (int)m->len, (const char *)m->data);
    kite_session_send_text(s, buf, (size_t)n, NULL);
}

static const struct kite_ws_callbacks seed_callbacks = {
    .on_open = seed_open, .on_message = seed_message, .on_close = tapp_close};

TEST(ws_seed_conversation)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    ASSERT(kite_route_ws_callbacks(t.app, "/echo", &seed_callbacks, NULL) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    TC_EXPECT(c, KITE_OP_TEXT, "Please enter your name");
    tc_text(c, "Kite");
    TC_EXPECT(c, KITE_OP_TEXT, "Hi, Kite!");
    tc_send(c, KITE_OP_BINARY, true, "x", 1); /* ignored, as `frame as? Frame.Text` */
    tc_text(c, "BYE");
    char reason[128];
    ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), 1000);
    ASSERT_STREQ(reason, "Client said BYE");
    tc_close(c, 1000, NULL); /* RFC 6455 §5.5.1: reply, then the server closes TCP */
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("close 1000 local clean err=0 reason=Client said BYE;", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* RFC 6455 §5.4: fragments form one message, and control frames may be interleaved;
 * §5.5.2/§5.5.3: a ping is answered by a pong with the same payload. */
TEST(ws_echo_fragments_and_ping)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    tc_text(c, "hello");
    TC_EXPECT(c, KITE_OP_TEXT, "hello");
    tc_send(c, KITE_OP_BINARY, true, "\x00\x01\x02", 3);
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), 1);
    ASSERT_EQ(f.op, KITE_OP_BINARY);
    ASSERT_EQ(f.len, 3);
    ASSERT_MEMEQ(f.data, "\x00\x01\x02", 3);
    free(f.data);
    tc_send(c, KITE_OP_TEXT, false, "one ", 4);
    tc_send(c, KITE_OP_PING, true, "mid", 3);
    tc_send(c, KITE_OP_CONTINUATION, false, "two ", 4);
    tc_send(c, KITE_OP_CONTINUATION, true, "three", 5);
    TC_EXPECT(c, KITE_OP_PONG, "mid");
    TC_EXPECT(c, KITE_OP_TEXT, "one two three");
    ASSERT_REC("msg T 13;", 2000);
    tc_send(c, KITE_OP_PING, true, "", 0);
    TC_EXPECT(c, KITE_OP_PONG, "");
    tc_text(c, "cmd:ping");
    TC_EXPECT(c, KITE_OP_PING, "srv");
    tc_text(c, ""); /* an empty message is a message */
    TC_EXPECT(c, KITE_OP_TEXT, "");
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* Bytes sent right behind the upgrade request (before the 101 arrived) are frames. */
TEST(ws_early_data_after_handshake)
{
    struct ts t;
    start_app(&t);
    int fd = kit_connect(t.port);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n");
    /* RFC 6455 §5.7: a masked "Hello" */
    static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                    0x7f, 0x9f, 0x4d, 0x51, 0x58};
    memcpy(req + n, hello, sizeof(hello));
    kit_write_all(fd, req, (size_t)n + sizeof(hello));
    char resp[512];
    bool eof;
    size_t len = 0;
    uint64_t end = kit_now_ms() + 3000;
    while (kit_now_ms() < end && (len < 7 || memcmp(resp + len - 7, "\x81\x05Hello", 7) != 0)) {
        ssize_t r = kit_read(fd, resp + len, sizeof(resp) - len, 1000);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    (void)eof;
    ASSERT(len > 7);
    ASSERT_EQ(strncmp(resp, "HTTP/1.1 101 ", 13), 0);
    ASSERT_MEMEQ(resp + len - 7, "\x81\x05Hello", 7); /* unmasked from the server, §5.1 */
    close(fd);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* RFC 6455 §7.4.1 / §7.4.2: every code an endpoint may send. */
static const unsigned valid_codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                       1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};

/* §5.5.1: the peer's close is answered with a close frame echoing its code; then the
 * server closes TCP (§7.1.1). on_close says who started, the code and the reason. */
TEST(ws_close_from_client_every_valid_code)
{
    struct ts t;
    start_app(&t);
    for (size_t i = 0; i < KIT_LEN(valid_codes); i++) {
        struct tc *c = tc_open_ok(t.port, "/echo", NULL);
        tc_close(c, valid_codes[i], "client bye");
        char reason[128];
        ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), valid_codes[i]);
        ASSERT(tc_wait_eof(c, 3000));
        char want[128];
        snprintf(want, sizeof(want), "close %u peer clean err=0 reason=client bye;",
                 valid_codes[i]);
        ASSERT_REC(want, 2000);
        tc_free(c);
    }
    ASSERT_EQ(ts_stop(&t), 0);
}

/* A close frame without a payload is valid (§5.5.1); on_close reports 1005. */
TEST(ws_close_from_client_without_code)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    tc_close(c, 0, NULL);
    unsigned code = tc_expect_close(c, NULL, 0);
    ASSERT(code == 1005 || code == 1000);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("close 1005 peer clean err=0", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* §7.4.1/§7.4.2: 1004-1006, 1015 and codes outside 1000-4999 must not be sent; a peer
 * sending one is failed with 1002. */
TEST(ws_close_from_client_invalid_codes)
{
    static const unsigned bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    struct ts t;
    start_app(&t);
    for (size_t i = 0; i < KIT_LEN(bad); i++) {
        struct tc *c = tc_open_ok(t.port, "/echo", NULL);
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        tc_send(c, KITE_OP_CLOSE, true, p, 2);
        ASSERT_EQ(tc_expect_close(c, NULL, 0), 1002);
        ASSERT(tc_wait_eof(c, 3000));
        tc_free(c);
    }
    ASSERT_REC("error KITE_ERR_PROTOCOL;", 2000);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* kite_session_close() with every valid code: the client gets it, answers, and the
 * server reports a clean close it started. */
TEST(ws_close_from_server_every_valid_code)
{
    struct ts t;
    start_app(&t);
    for (size_t i = 0; i < KIT_LEN(valid_codes); i++) {
        struct tc *c = tc_open_ok(t.port, "/echo", NULL);
        char cmd[64];
        snprintf(cmd, sizeof(cmd), "cmd:close %u server bye", valid_codes[i]);
        tc_text(c, cmd);
        char reason[128];
        ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), valid_codes[i]);
        ASSERT_STREQ(reason, "server bye");
        tc_close(c, valid_codes[i], NULL);
        ASSERT(tc_wait_eof(c, 3000));
        char want[128];
        snprintf(want, sizeof(want), "close %u local clean err=0 reason=server bye;",
                 valid_codes[i]);
        ASSERT_REC(want, 2000);
        tc_free(c);
    }
    tc_free(NULL);
    ASSERT_EQ(ts_stop(&t), 0);
}

TEST(ws_server_close_rejects_invalid_code_and_late_sends)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    tc_text(c, "cmd:close 1005 nope");
    ASSERT_REC("closecmd -5200;", 2000); /* KITE_ERR_INVALID: 1005 is never sent */
    tc_text(c, "still open");
    TC_EXPECT(c, KITE_OP_TEXT, "still open");
    tc_text(c, "cmd:sendafterclose");
    ASSERT_REC("after-close send=3 open=0;", 2000); /* KITE_SEND_CLOSED */
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1000);
    tc_close(c, 1000, NULL);
    ASSERT(tc_wait_eof(c, 3000));
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* Ktor's terminate(): no close frame, TCP closed, on_close 1006 started by us. */
TEST(ws_terminate)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    tc_text(c, "cmd:terminate");
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("terminated;close 1006 local unclean err=0", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* A peer that closes TCP without a close frame: on_close 1006, and no on_error. */
TEST(ws_abrupt_disconnect)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    tc_text(c, "x");
    TC_EXPECT(c, KITE_OP_TEXT, "x");
    tc_free(c);
    ASSERT_REC("close 1006 none unclean err=0", 2000);
    char log[16384];
    rec_get(log, sizeof(log));
    ASSERT(strstr(log, "error") == NULL);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* §5.1: a server must fail a connection whose client frames are unmasked (1002). */
TEST(ws_unmasked_frame_is_protocol_error)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    kit_write_all(c->fd, "\x81\x02hi", 4);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1002);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("error KITE_ERR_PROTOCOL;close 1002 local unclean err=KITE_ERR_PROTOCOL", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* §8.1: invalid UTF-8 in a text message fails the connection with 1007. */
TEST(ws_invalid_utf8_is_1007)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/echo", NULL);
    tc_send(c, KITE_OP_TEXT, true, "ok\xc3\x28", 4);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1007);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("error KITE_ERR_UTF8;", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* on_open sees the path parameters, the query, headers and the peer address. */
TEST(ws_request_info)
{
    struct ts t;
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/chat/lobby?flag&name=ann%20b", "X-Test: yes\r\n");
    ASSERT_REC("open /chat/lobby room=lobby name=ann%20b x-test=yes from-loopback;", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

TEST(ws_user_data_starts_as_route_data)
{
    static int marker;
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_ws_callbacks cb = tapp_callbacks;
    cb.on_open = NULL;
    cb.on_drain = NULL;
    ASSERT(kite_route_ws_callbacks(t.app, "/ud", &cb, &marker) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/ud", NULL);
    tc_text(c, "a");
    TC_EXPECT(c, KITE_OP_TEXT, "a");
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* ---- subprotocols (RFC 6455 §4.2.2 /subprotocol/, Ktor's webSocket(path, protocol)) -- */

TEST(ws_required_subprotocol)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_route *r = kite_route_ws_callbacks(t.app, "/p", &tapp_callbacks, NULL);
    ASSERT(r != NULL);
    ASSERT_EQ(kite_route_set_protocol(r, "bad token"), KITE_ERR_INVALID);
    ASSERT_EQ(kite_route_set_protocol(r, "chat.v1"), KITE_OK);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/p", "Sec-WebSocket-Protocol: other, chat.v1\r\n");
    ASSERT(strstr(c->head, "Sec-WebSocket-Protocol: chat.v1\r\n") != NULL);
    ASSERT_REC("proto=chat.v1 sproto=chat.v1", 2000);
    tc_free(c);
    c = tc_open(t.port, "/p", NULL);
    ASSERT_EQ(c->status, 400);
    tc_free(c);
    c = tc_open(t.port, "/p", "Sec-WebSocket-Protocol: chat.v2\r\n");
    ASSERT_EQ(c->status, 400);
    ASSERT(strstr(c->head, "subprotocol") != NULL);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

static int select_b(const struct kite_request *req, void *ud)
{
    (void)ud;
    struct kite_str p;
    struct kite_str none;
    if (kite_request_header(req, "X-None", &none))
        return -1;
    for (size_t i = 0; kite_request_protocol_at(req, i, &p); i++)
        if (p.len == 1 && p.ptr[0] == 'b')
            return (int)i;
    return -2;
}

TEST(ws_subprotocol_selector)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_route *r = kite_route_ws_callbacks(t.app, "/s", &tapp_callbacks, NULL);
    ASSERT_EQ(kite_route_set_protocol_selector(r, select_b), KITE_OK);
    /* Without a selector or required protocol, offers are ignored. */
    ASSERT(kite_route_ws_callbacks(t.app, "/plain", &tapp_callbacks, NULL) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/s",
                              "Sec-WebSocket-Protocol: a\r\n"
                              "Sec-WebSocket-Protocol: b, c\r\n");
    ASSERT(strstr(c->head, "Sec-WebSocket-Protocol: b\r\n") != NULL);
    tc_free(c);
    c = tc_open_ok(t.port, "/s", "Sec-WebSocket-Protocol: a\r\nX-None: 1\r\n");
    ASSERT(strstr(c->head, "Sec-WebSocket-Protocol") == NULL);
    tc_free(c);
    c = tc_open(t.port, "/s", "Sec-WebSocket-Protocol: a, c\r\n");
    ASSERT_EQ(c->status, 400);
    tc_free(c);
    c = tc_open_ok(t.port, "/plain", "Sec-WebSocket-Protocol: a\r\n");
    ASSERT(strstr(c->head, "Sec-WebSocket-Protocol") == NULL);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* ---- raw routes (Ktor's webSocketRaw): every frame, control frames and fragments ----- */

static void raw_frame(struct kite_session *s, const struct kite_frame *f, void *ud)
{
    (void)ud;
    rec_add("frame %u%s %.*s;", (unsigned)f->opcode, f->fin ? "" : "+",
            (int)(f->opcode == KITE_OP_CLOSE ? 0 : f->len), (const char *)f->data);
    if (f->opcode == KITE_OP_PING) /* nothing is answered for us: pong by hand */
        kite_session_send_frame(s, KITE_OP_PONG, true, 0, f->data, f->len, NULL);
    else if (f->opcode == KITE_OP_CLOSE) /* and the close reply is ours to send */
        kite_session_send_frame(s, KITE_OP_CLOSE, true, 0, f->data, f->len, NULL);
    else if (f->opcode < KITE_OP_CLOSE) /* data frames are echoed as they came */
        kite_session_send_frame(s, f->opcode, f->fin, 0, f->data, f->len, NULL);
}

TEST(ws_raw_route_sees_every_frame)
{
    struct kite_app_options o;
    ts_options(&o);
    o.ws.ping_period_ms = 50; /* ignored in raw mode: the handler owns pings */
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_ws_callbacks cb = {.on_frame = raw_frame, .on_close = tapp_close};
    struct kite_ws_callbacks no_frame = {.on_message = tapp_message};
    ASSERT(kite_route_ws_raw_callbacks(t.app, "/raw", &no_frame, NULL) == NULL);
    ASSERT(kite_route_ws_raw_callbacks(t.app, "/raw", &cb, NULL) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/raw", NULL);
    tc_send(c, KITE_OP_TEXT, false, "ab", 2);
    tc_send(c, KITE_OP_PING, true, "p", 1);
    tc_send(c, KITE_OP_CONTINUATION, true, "cd", 2);
    tc_send(c, KITE_OP_PONG, true, "unsolicited", 11);
    ASSERT_REC("frame 1+ ab;frame 9 p;frame 0 cd;frame 10 unsolicited;", 2000);
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 2000), 1);
    ASSERT(f.op == KITE_OP_TEXT && !f.fin);
    free(f.data);
    TC_EXPECT(c, KITE_OP_PONG, "p");
    ASSERT_EQ(tc_next(c, &f, 2000), 1);
    ASSERT(f.op == KITE_OP_CONTINUATION && f.fin);
    free(f.data);
    /* No automatic pings arrived: raw mode sends nothing by itself. */
    ASSERT_EQ(tc_next(c, &f, 200), 0);
    tc_close(c, 4001, "raw done");
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 4001);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_REC("frame 8 ;close 4001 peer clean err=0 reason=raw done;", 2000);
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* ---- other threads: references, posts and async sends ----------------------------- */

static struct kite_session *_Atomic g_ref;

static void ref_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)req;
    (void)ud;
    kite_session_ref(s); /* the test thread uses it from now on */
    g_ref = s;
}

static void report_open(struct kite_session *s, void *arg)
{
    rec_add("posted %s open=%d;", (const char *)arg, (int)kite_session_is_open(s));
}

TEST(ws_send_from_another_thread)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    struct kite_ws_callbacks cb = tapp_callbacks;
    cb.on_open = ref_open;
    ASSERT(kite_route_ws_callbacks(t.app, "/x", &cb, NULL) != NULL);
    ts_start(&t);
    struct tc *c = tc_open_ok(t.port, "/x", NULL);
    uint64_t end = kit_now_ms() + 2000;
    while (!g_ref && kit_now_ms() < end)
        kit_sleep_ms(1);
    struct kite_session *s = g_ref;
    ASSERT(s != NULL);
    /* This thread is not the loop's: only the "any thread" functions are used. */
    ASSERT_EQ(kite_session_send_async(s, KITE_OP_TEXT, "from a thread", 13), KITE_OK);
    ASSERT_EQ(kite_session_send_async(s, KITE_OP_BINARY, "\x01\x02", 2), KITE_OK);
    ASSERT_EQ(kite_session_send_async(s, KITE_OP_PING, "x", 1), KITE_ERR_INVALID);
    TC_EXPECT(c, KITE_OP_TEXT, "from a thread");
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), 1);
    ASSERT(f.op == KITE_OP_BINARY && f.len == 2);
    free(f.data);
    ASSERT_EQ(kite_session_post(s, report_open, "live"), KITE_OK);
    ASSERT_REC("posted live open=1;", 2000);
    /* The session closes; the reference keeps a shell that posts still reach. */
    tc_close(c, 1000, NULL);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1000);
    tc_free(c);
    ASSERT_REC("close 1000 peer clean", 2000);
    kit_sleep_ms(50); /* past the end of the iteration that freed the session's insides */
    ASSERT_EQ(kite_session_post(s, report_open, "shell"), KITE_OK);
    ASSERT_EQ(kite_session_send_async(s, KITE_OP_TEXT, "dropped", 7), KITE_OK);
    ASSERT_REC("posted shell open=0;", 2000);
    kite_session_unref(s);
    ASSERT_EQ(ts_stop(&t), 0);
}

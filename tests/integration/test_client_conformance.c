/*
 * Client-role conformance: a scripted raw server (our own bytes over a socket) answers
 * the kite client with broken handshakes and malformed frames, and each test checks
 * that the client refuses the handshake with a clear error, or fails the connection
 * with the right close code (sent masked, RFC 6455 §5.3) and reports it in on_close.
 */
#include "test_client_kit.h"

static struct kite_loop *g_loop;

/* Run a scripted server; connect; wait for the outcome. */
static void run_script(struct rs *r, const char *path, const struct kite_client_options *o)
{
    struct kite_client_options def;
    if (!o) {
        co_options(&def);
        o = &def;
    }
    rs_start(r);
    ASSERT_EQ(kite_loop_new(NULL, &g_loop), KITE_OK);
    char url[128];
    rs_url(r, url, sizeof(url), path);
    co_connect(g_loop, url, o);
}

static void finish(struct rs *r)
{
    if (g_co.opened)
        ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed, 5000));
    co_settle(g_loop, 30);
    rs_join(r);
    /* Whatever happened, the session is gone and the socket closed by now. */
    co_settle(g_loop, 30);
    kite_loop_free(g_loop);
    g_loop = NULL;
}

/* ---- the opening handshake (RFC 6455 §4.1, the client's checks) ---------------------- */

static void expect_handshake_error(const char *response, const char *needle, int status,
                                   const struct kite_client_options *o)
{
    struct rs r = {0};
    r.response = response;
    r.drop_after = true;
    run_script(&r, "/", o);
    ASSERT(g_co.failed);
    ASSERT(!g_co.opened);
    ASSERT_EQ(g_co.err, KITE_ERR_HANDSHAKE);
    ASSERT_EQ(g_co.http_status, status);
    ASSERT_CONTAINS(g_co.msg, needle);
    finish(&r);
}

/* §4.1 client item 1: anything but 101 is not a WebSocket. */
TEST(handshake_200_instead_of_101)
{
    expect_handshake_error("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
                           "server answered 200 OK instead of 101 Switching Protocols", 200,
                           NULL);
}

TEST(handshake_403_forbidden)
{
    expect_handshake_error("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
                           "server answered 403 Forbidden instead of 101", 403, NULL);
}

/* §4.1 client item 4: Sec-WebSocket-Accept must be base64(SHA-1(key + GUID)). */
TEST(handshake_wrong_accept_key)
{
    expect_handshake_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n%.0s",
                           "Sec-WebSocket-Accept mismatch", 0, NULL);
}

TEST(handshake_missing_accept_key)
{
    expect_handshake_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\n\r\n%.0s",
                           "Sec-WebSocket-Accept mismatch (the header is missing)", 0, NULL);
}

/* §4.1 client items 2 and 3. */
TEST(handshake_missing_upgrade)
{
    expect_handshake_error("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Accept: %s\r\n\r\n",
                           "lacks 'Upgrade: websocket'", 0, NULL);
}

TEST(handshake_missing_connection)
{
    expect_handshake_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Sec-WebSocket-Accept: %s\r\n\r\n",
                           "lacks 'Connection: Upgrade'", 0, NULL);
}

/* §4.1 client item 6: a subprotocol that was not offered fails the connection. */
TEST(handshake_unoffered_subprotocol)
{
    struct kite_client_options o;
    co_options(&o);
    const char *protos[] = {"chat"};
    o.protocols = protos;
    o.num_protocols = 1;
    expect_handshake_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                           "Sec-WebSocket-Protocol: x\r\n\r\n",
                           "server chose subprotocol 'x' which was not offered", 0, &o);
}

TEST(handshake_subprotocol_when_none_offered)
{
    expect_handshake_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                           "Sec-WebSocket-Protocol: chat\r\n\r\n",
                           "server chose subprotocol 'chat' which was not offered", 0, NULL);
}

/* §4.1 client item 5: an extension that was not offered fails the connection. */
TEST(handshake_unoffered_extension)
{
    expect_handshake_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                           "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                           "extension which was not offered: 'permessage-deflate'", 0, NULL);
}

TEST(handshake_not_http)
{
    struct rs r = {0};
    r.response = "SSH-2.0-OpenSSH_9.2\r\n\r\n%.0s";
    r.drop_after = true;
    run_script(&r, "/", NULL);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_HTTP);
    ASSERT_CONTAINS(g_co.msg, "not a valid HTTP/1.1 response");
    finish(&r);
}

TEST(handshake_server_drops_before_answering)
{
    struct rs r = {0};
    r.response = "%.0s";
    r.drop_after = true;
    run_script(&r, "/", NULL);
    ASSERT(g_co.failed);
    ASSERT(g_co.err == KITE_ERR_CLOSED || g_co.err == -ECONNRESET);
    ASSERT_CONTAINS(g_co.msg, "before completing the WebSocket handshake");
    finish(&r);
}

/* The request the client sends (§4.1 items 1-9). */
TEST(handshake_request_shape)
{
    struct rs r = {0};
    r.drop_after = true;
    struct kite_client_options o;
    co_options(&o);
    o.origin = "https://a.test";
    run_script(&r, "?q=1", &o);
    finish(&r);
    /* An empty path with a query is sent as "/?q=1" (§3). */
    ASSERT(strncmp(r.request, "GET /?q=1 HTTP/1.1\r\n", 20) == 0);
    char v[128];
    rs_header(r.request, "Host", v, sizeof(v));
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)r.port);
    ASSERT_STREQ(v, want);
    rs_header(r.request, "Upgrade", v, sizeof(v));
    ASSERT_STREQ(v, "websocket");
    rs_header(r.request, "Sec-WebSocket-Version", v, sizeof(v));
    ASSERT_STREQ(v, "13");
    rs_header(r.request, "Origin", v, sizeof(v));
    ASSERT_STREQ(v, "https://a.test");
    /* item 7: a random 16-byte nonce, base64 */
    rs_header(r.request, "Sec-WebSocket-Key", v, sizeof(v));
    ASSERT_EQ(strlen(v), 24);
}

/* ---- frames from the server ---------------------------------------------------------- */

/* The server's first frames come in the same segment as the 101. Returns after the
 * session has closed; checks the close code the client sent and reported. */
static void expect_failure(const uint8_t *frames, size_t len, unsigned code, int err)
{
    struct rs r = {0};
    r.after = frames;
    r.after_len = len;
    run_script(&r, "/", NULL);
    ASSERT(g_co.opened);
    ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed, 5000));
    ASSERT_EQ(g_co.ci.code, code);
    ASSERT_EQ(g_co.ci.initiator, KITE_CLOSED_BY_LOCAL);
    ASSERT(!g_co.ci.clean);
    ASSERT_EQ(g_co.ci.error, err);
    ASSERT_EQ(g_co.on_error, err);
    finish(&r);
    /* The close frame went out masked (§5.3) with the same code (§7.1.7). */
    ASSERT_EQ(wf_close_code(&r), (int)code);
}

/* §5.1: "A client MUST close a connection if it detects a masked frame." */
TEST(frame_masked_from_server_1002)
{
    const uint8_t f[] = {0x81, 0x85, 1, 2, 3, 4, 'h' ^ 1, 'e' ^ 2, 'l' ^ 3, 'l' ^ 4, 'o' ^ 1};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved. */
TEST(frame_reserved_opcode_1002)
{
    const uint8_t f[] = {0x83, 0x00};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

TEST(frame_reserved_control_opcode_1002)
{
    const uint8_t f[] = {0x8B, 0x00};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §5.2: RSV bits without a negotiated extension. */
TEST(frame_rsv_bits_1002)
{
    const uint8_t f[] = {0xC1, 0x02, 'h', 'i'};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

TEST(frame_rsv3_bit_1002)
{
    const uint8_t f[] = {0x91, 0x00};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §8.1: a text message that is not UTF-8 fails with 1007. */
TEST(frame_bad_utf8_1007)
{
    const uint8_t f[] = {0x81, 0x04, 'o', 'k', 0xC0, 0xAF};
    expect_failure(f, sizeof(f), 1007, KITE_ERR_UTF8);
}

/* §5.5: control frames must not be fragmented. */
TEST(frame_fragmented_ping_1002)
{
    const uint8_t f[] = {0x09, 0x01, 'x'};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §5.5: control frame payloads are at most 125 bytes. */
TEST(frame_long_ping_1002)
{
    uint8_t f[4 + 126] = {0x89, 126, 0, 126};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §5.4: a continuation with nothing to continue. */
TEST(frame_orphan_continuation_1002)
{
    const uint8_t f[] = {0x80, 0x01, 'x'};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §5.4: a new data frame while a fragmented message is in progress. */
TEST(frame_interleaved_data_1002)
{
    const uint8_t f[] = {0x01, 0x01, 'a', 0x81, 0x01, 'b'};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §7.4.1: 1005 must not appear in a close frame; 999 and 1004 are not valid codes. */
TEST(close_code_1005_on_wire_1002)
{
    const uint8_t f[] = {0x88, 0x02, 0x03, 0xED};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

TEST(close_code_999_1002)
{
    const uint8_t f[] = {0x88, 0x02, 0x03, 0xE7};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

TEST(close_code_1004_1002)
{
    const uint8_t f[] = {0x88, 0x02, 0x03, 0xEC};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §5.5.1: a close body of one byte cannot hold a code. */
TEST(close_one_byte_body_1002)
{
    const uint8_t f[] = {0x88, 0x01, 0x03};
    expect_failure(f, sizeof(f), 1002, KITE_ERR_PROTOCOL);
}

/* §5.5.1 + §8.1: the close reason must be UTF-8. */
TEST(close_bad_utf8_reason_1007)
{
    const uint8_t f[] = {0x88, 0x04, 0x03, 0xE8, 0xFF, 0xFE};
    expect_failure(f, sizeof(f), 1007, KITE_ERR_UTF8);
}

/* §10.4: a frame over the configured limit fails with 1009. */
TEST(frame_over_limit_1009)
{
    struct rs r = {0};
    static uint8_t f[4 + 2000] = {0x82, 126, 0x07, 0xD0};
    r.after = f;
    r.after_len = sizeof(f);
    struct kite_client_options o;
    co_options(&o);
    o.ws.max_frame_size = 1000;
    run_script(&r, "/", &o);
    ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed, 5000));
    ASSERT_EQ(g_co.ci.code, 1009);
    ASSERT_EQ(g_co.ci.error, KITE_ERR_TOO_BIG);
    finish(&r);
    ASSERT_EQ(wf_close_code(&r), 1009);
}

/* ---- what works ------------------------------------------------------------------------ */

/* §5.4 reassembly, §5.5.2 pong echoes the ping's payload, §5.5.1 the server's close is
 * answered with the same code; everything the client sends is masked (§5.3). */
TEST(frames_valid_sequence)
{
    const uint8_t f[] = {
        0x01, 0x03, 'h', 'e', 'l',         /* text, not fin */
        0x89, 0x02, 'p', '1',              /* ping in the middle (§5.4) */
        0x80, 0x02, 'l', 'o',              /* last fragment */
        0x82, 0x03, 1, 2, 3,               /* binary */
        0x88, 0x05, 0x03, 0xE8, 'b', 'y', 'e' /* close 1000 "bye" */
    };
    struct rs r = {0};
    r.after = f;
    r.after_len = sizeof(f);
    run_script(&r, "/", NULL);
    ASSERT(g_co.opened);
    ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed, 5000));
    ASSERT_STREQ(g_co.log, "T:hello;B:3;");
    ASSERT_EQ(g_co.ci.code, 1000);
    ASSERT_EQ(g_co.ci.initiator, KITE_CLOSED_BY_PEER);
    ASSERT(g_co.ci.clean);
    ASSERT_STREQ(g_co.ci.reason, "bye");
    finish(&r);
    size_t off = 0;
    struct wf w;
    ASSERT(wf_next(r.got, r.got_len, &off, &w));
    ASSERT(w.masked);
    ASSERT_EQ(w.op, KITE_OP_PONG);
    ASSERT_EQ(w.len, 2);
    ASSERT_MEMEQ(w.data, "p1", 2);
    ASSERT(wf_next(r.got, r.got_len, &off, &w));
    ASSERT(w.masked);
    ASSERT_EQ(w.op, KITE_OP_CLOSE);
    ASSERT_EQ(w.data[0] << 8 | w.data[1], 1000);
}

/* What the client sends is masked with a fresh key per frame (§5.3). */
TEST(client_frames_masked_with_fresh_keys)
{
    struct rs r = {0};
    g_co.send_on_open[0] = "aaaa";
    g_co.send_on_open[1] = "aaaa";
    g_co.close_on_open = true;
    run_script(&r, "/", NULL);
    ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed || g_co.failed, 5000));
    finish(&r);
    /* Two identical payloads: with fresh keys, the masked bytes differ (a 2^-32 chance
     * of a false failure). */
    ASSERT(r.got_len >= 2 * 10);
    ASSERT_EQ(r.got[0], 0x81);
    ASSERT_EQ(r.got[1], 0x84);
    ASSERT_EQ(r.got[10], 0x81);
    ASSERT(memcmp(r.got + 2, r.got + 12, 8) != 0);
    size_t off = 0;
    struct wf w;
    ASSERT(wf_next(r.got, r.got_len, &off, &w));
    ASSERT_MEMEQ(w.data, "aaaa", 4);
}

/* ---- the server goes away --------------------------------------------------------------- */

/* A server that disappears mid-frame: 1006, not clean, nobody sent a close (§7.1.5). */
TEST(server_drops_mid_frame_1006)
{
    const uint8_t f[] = {0x81, 0x0A, 'p', 'a', 'r'}; /* 10 bytes announced, 3 sent */
    struct rs r = {0};
    r.after = f;
    r.after_len = sizeof(f);
    r.drop_after = true;
    run_script(&r, "/", NULL);
    ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed, 5000));
    ASSERT_EQ(g_co.ci.code, 1006);
    ASSERT_EQ(g_co.ci.initiator, KITE_CLOSED_BY_NONE);
    ASSERT(!g_co.ci.clean);
    ASSERT_EQ(g_co.nmsg, 0);
    ASSERT_EQ(g_co.on_error, 0); /* a plain EOF is not an error (session.h) */
    finish(&r);
}

/* The same with a reset: the transport error is reported (on_error, then 1006). */
TEST(server_resets_mid_frame_1006_with_error)
{
    const uint8_t f[] = {0x81, 0x0A, 'p', 'a', 'r'};
    struct rs r = {0};
    r.after = f;
    r.after_len = sizeof(f);
    r.reset_after = true;
    run_script(&r, "/", NULL);
    ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed, 5000));
    ASSERT_EQ(g_co.ci.code, 1006);
    ASSERT(!g_co.ci.clean);
    ASSERT_EQ(g_co.ci.error, -ECONNRESET);
    ASSERT_EQ(g_co.on_error, -ECONNRESET);
    finish(&r);
}

/* The client pings too (Ktor's pingPeriod): a server that never answers with a pong
 * fails the session with 1011 and KITE_ERR_TIMEOUT; the pings went out masked. */
TEST(client_ping_timeout_1011)
{
    struct rs r = {0};
    struct kite_client_options o;
    co_options(&o);
    o.ws.ping_period_ms = 50;
    o.ws.timeout_ms = 100;
    run_script(&r, "/", &o);
    ASSERT(g_co.opened);
    ASSERT(CO_RUN_UNTIL(g_loop, g_co.closed, 5000));
    ASSERT_EQ(g_co.ci.code, 1011);
    ASSERT_EQ(g_co.ci.error, KITE_ERR_TIMEOUT);
    ASSERT_EQ(g_co.on_error, KITE_ERR_TIMEOUT);
    finish(&r);
    size_t off = 0;
    struct wf w;
    ASSERT(wf_next(r.got, r.got_len, &off, &w));
    ASSERT(w.masked);
    ASSERT_EQ(w.op, KITE_OP_PING); /* RFC 6455 §5.5.2 */
    ASSERT_EQ(wf_close_code(&r), 1011);
}

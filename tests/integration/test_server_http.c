/*
 * The server's HTTP side: plain routes with keep-alive, and every refusal with its
 * status: 400, 403 (origin), 404, 405, 426, 431, 503 (max connections), the slow-loris
 * deadline, and the graceful shutdown.
 */
#include "test_server_kit.h"

static void page(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)ud;
    static const struct kite_header hdrs[] = {{"X-Kite", "yes"}, {"Cache-Control", "no-store"}};
    struct kite_str v;
    if (kite_request_query_param(req, "status", &v) && v.ptr && v.len == 3) {
        res->status = atoi(v.ptr);
        res->body = "custom\n";
        res->body_len = 7;
        return;
    }
    if (kite_request_query_param(req, "bad", &v)) {
        static const struct kite_header bad[] = {{"X-Bad", "a\r\nInjected: 1"}};
        res->headers = bad;
        res->num_headers = 1;
        return;
    }
    res->content_type = "text/html; charset=utf-8";
    res->body = "<p>hi</p>";
    res->body_len = 9;
    res->headers = hdrs;
    res->num_headers = 2;
}

static void hello(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)ud;
    static char body[128];
    struct kite_str name = {"", 0};
    kite_request_param(req, "name", &name);
    int n = snprintf(body, sizeof(body), "hello %.*s", (int)name.len, name.ptr);
    res->body = body;
    res->body_len = (size_t)n;
}

static void start(struct ts *t, struct kite_app_options *o)
{
    t->app = kite_app_new(o);
    ASSERT(t->app != NULL);
    ASSERT(kite_route_get(t->app, "/", page, NULL) != NULL);
    ASSERT(kite_route_get(t->app, "/hello/{name}", hello, NULL) != NULL);
    ASSERT(kite_route_ws_callbacks(t->app, "/ws", &tapp_callbacks, NULL) != NULL);
    ASSERT(kite_route_ws_callbacks(t->app, "/", &tapp_callbacks, NULL) != NULL);
    ts_start(t);
}

static void start_default(struct ts *t)
{
    struct kite_app_options o;
    ts_options(&o);
    start(t, &o);
}

TEST(http_plain_get_and_head)
{
    struct ts t;
    start_default(&t);
    char resp[4096];
    ASSERT_EQ(http_exchange(t.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 200);
    ASSERT(strstr(resp, "Content-Type: text/html; charset=utf-8\r\n") != NULL);
    ASSERT(strstr(resp, "X-Kite: yes\r\nCache-Control: no-store\r\n") != NULL);
    ASSERT(strstr(resp, "Content-Length: 9\r\n") != NULL);
    ASSERT(strstr(resp, "\r\n\r\n<p>hi</p>") != NULL);
    /* RFC 9110 §9.3.2: HEAD gets the same header fields and no content. */
    ASSERT_EQ(http_exchange(t.port, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 200);
    ASSERT(strstr(resp, "Content-Length: 9\r\n") != NULL);
    ASSERT(strstr(resp, "<p>") == NULL);
    ASSERT_EQ(
        http_exchange(t.port, "GET /hello/ann HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)),
        200);
    ASSERT(strstr(resp, "\r\n\r\nhello ann") != NULL);
    ASSERT_EQ(http_exchange(t.port, "GET /?status=201 HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0), 201);
    /* A handler that tries to inject a header gets a 500 instead. */
    ASSERT_EQ(http_exchange(t.port, "GET /?bad HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)),
              500);
    ASSERT(strstr(resp, "Injected") == NULL);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* RFC 9112 §9.3: HTTP/1.1 connections persist; pipelined requests are answered in
 * order; "Connection: close" ends it after the response. */
TEST(http_keepalive_and_pipelining)
{
    struct ts t;
    start_default(&t);
    int fd = kit_connect(t.port);
    const char *two = "GET /hello/a HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /hello/b HTTP/1.1\r\nHost: x\r\n\r\n";
    kit_write_all(fd, two, strlen(two));
    char resp[4096];
    size_t len = 0;
    uint64_t end = kit_now_ms() + 3000;
    while (kit_now_ms() < end && !strstr(resp, "hello b")) {
        ssize_t n = kit_read(fd, resp + len, sizeof(resp) - 1 - len, 500);
        ASSERT(n > 0);
        len += (size_t)n;
        resp[len] = 0;
    }
    char *a = strstr(resp, "hello a"), *b = strstr(resp, "hello b");
    ASSERT(a && b && a < b);
    ASSERT(strstr(resp, "Connection: keep-alive\r\n") != NULL);
    /* The same connection still works, split across writes. */
    kit_write_all(fd, "GET /hello/c HTTP/1.1\r\nHo", 25);
    kit_sleep_ms(20);
    kit_write_all(fd, "st: x\r\nConnection: close\r\n\r\n", 29);
    bool eof;
    kit_read_until_eof(fd, resp, sizeof(resp), 3000, &eof);
    ASSERT(eof);
    ASSERT(strstr(resp, "Connection: close\r\n") != NULL);
    ASSERT(strstr(resp, "hello c") != NULL);
    close(fd);
    /* HTTP/1.0 closes unless asked to keep alive. */
    ASSERT_EQ(http_exchange(t.port, "GET /hello/d HTTP/1.0\r\n\r\n", resp, sizeof(resp)), 200);
    ASSERT(strstr(resp, "Connection: close\r\n") != NULL);
    ASSERT_EQ(ts_stop(&t), 0);
}

TEST(http_404_405_426)
{
    struct ts t;
    start_default(&t);
    char resp[4096];
    ASSERT_EQ(http_exchange(t.port, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0), 404);
    struct tc *c = tc_open(t.port, "/nope", NULL);
    ASSERT_EQ(c->status, 404);
    tc_free(c);
    /* RFC 9110 §15.5.6: 405 lists the allowed methods. */
    ASSERT_EQ(
        http_exchange(t.port, "DELETE /hello/x HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)),
        405);
    ASSERT(strstr(resp, "Allow: GET, HEAD\r\n") != NULL);
    ASSERT_EQ(http_exchange(t.port,
                            "POST /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Version: 13\r\n\r\n",
                            resp, sizeof(resp)),
              405);
    ASSERT(strstr(resp, "Allow: GET\r\n") != NULL);
    /* RFC 7231 §6.5.15: a plain GET to a WebSocket-only path needs an upgrade. */
    ASSERT_EQ(http_exchange(t.port, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)),
              426);
    ASSERT(strstr(resp, "Upgrade: websocket\r\n") != NULL);
    /* A path with both a page and a socket: the upgrade goes to the socket. */
    c = tc_open_ok(t.port, "/", NULL);
    tc_text(c, "both");
    TC_EXPECT(c, KITE_OP_TEXT, "both");
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

static int upgrade_status(uint16_t port, const char *head, char *resp, size_t cap)
{
    return http_exchange(port, head, resp, cap);
}

/* RFC 6455 §4.2.1 and §4.4: what makes an opening handshake unacceptable. */
TEST(http_bad_handshakes)
{
    struct ts t;
    start_default(&t);
    char resp[4096];
    /* No Sec-WebSocket-Key: 400. */
    ASSERT_EQ(upgrade_status(t.port,
                             "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
                             resp, sizeof(resp)),
              400);
    /* A key that is not 16 bytes of base64: 400. */
    ASSERT_EQ(upgrade_status(t.port,
                             "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n",
                             resp, sizeof(resp)),
              400);
    /* Connection without "upgrade": 400. */
    ASSERT_EQ(upgrade_status(t.port,
                             "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             "Connection: keep-alive\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n",
                             resp, sizeof(resp)),
              400);
    /* §4.4: an unsupported version gets 426 with the versions we speak. */
    ASSERT_EQ(
        upgrade_status(t.port,
                       "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 8\r\n\r\n",
                       resp, sizeof(resp)),
        426);
    ASSERT(strstr(resp, "Sec-WebSocket-Version: 13\r\n") != NULL);
    /* HTTP/1.0 cannot upgrade (§4.1: HTTP/1.1 or higher): 400. */
    ASSERT_EQ(
        upgrade_status(t.port,
                       "GET /ws HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n",
                       resp, sizeof(resp)),
        400);
    /* Malformed HTTP: 400. */
    ASSERT_EQ(http_exchange(t.port, "GET / HTTP/1.1\nHost: x\n\n", NULL, 0), 400);
    ASSERT_EQ(http_exchange(t.port, "NOT HTTP AT ALL\r\n\r\n", NULL, 0), 400);
    /* The connection was closed after each refusal, and nothing was opened. */
    ASSERT_EQ(kite_app_session_count(t.app), 0);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* RFC 6455 §10.2: a server may refuse origins it does not trust (403). */
TEST(http_origin_allow_list)
{
    static const char *const origins[] = {"https://good.example", NULL};
    struct kite_app_options o;
    ts_options(&o);
    o.allowed_origins = origins;
    struct ts t;
    start(&t, &o);
    struct tc *c = tc_open(t.port, "/ws", "Origin: https://evil.example\r\n");
    ASSERT_EQ(c->status, 403);
    tc_free(c);
    c = tc_open_ok(t.port, "/ws", "Origin: https://GOOD.example\r\n");
    tc_free(c);
    c = tc_open_ok(t.port, "/ws", NULL); /* not a browser */
    tc_free(c);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* RFC 6585 §5: a head over the limit gets 431 and the connection closes. */
TEST(http_head_too_large_431)
{
    struct kite_app_options o;
    ts_options(&o);
    o.max_head_size = 1024;
    o.max_headers = 8;
    struct ts t;
    start(&t, &o);
    char req[4096];
    char big[2048];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    char resp[2048];
    ASSERT_EQ(http_exchange(t.port, req, resp, sizeof(resp)), 431);
    ASSERT(strstr(resp, "Connection: close\r\n") != NULL);
    /* Too many header lines, each small. */
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\n%s\r\n",
             "A: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\n");
    ASSERT_EQ(http_exchange(t.port, req, NULL, 0), 431);
    /* Under the limit still works. */
    ASSERT_EQ(http_exchange(t.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0), 200);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* A head that trickles in slower than the deadline is dropped without an answer. */
TEST(http_slowloris_dropped)
{
    struct kite_app_options o;
    ts_options(&o);
    o.handshake_timeout_ms = 300;
    struct ts t;
    start(&t, &o);
    int fd = kit_connect(t.port);
    uint64_t t0 = kit_now_ms();
    kit_write_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n", 25);
    char buf[256];
    bool eof = false;
    /* Keep trickling: every 100 ms one more byte of a never-ending header. */
    for (int i = 0; i < 20 && !eof; i++) {
        kit_sleep_ms(100);
        if (send(fd, "X", 1, MSG_NOSIGNAL) < 0)
            eof = true;
        ssize_t n = kit_read(fd, buf, sizeof(buf), 0);
        if (n == 0 || n == -2)
            eof = true;
        ASSERT(n <= 0); /* no answer is sent */
    }
    uint64_t took = kit_now_ms() - t0;
    ASSERT(eof);
    ASSERT(took >= 280 && took < 3000);
    close(fd);
    /* An idle keep-alive connection is dropped after the same deadline. */
    fd = kit_connect(t.port);
    kit_write_all(fd, "GET /hello/x HTTP/1.1\r\nHost: x\r\n\r\n", 35);
    kit_read_until_eof(fd, buf, sizeof(buf), 2000, &eof);
    ASSERT(eof);
    ASSERT(strstr(buf, "hello x") != NULL);
    close(fd);
    ASSERT_EQ(ts_stop(&t), 0);
}

TEST(http_max_connections_503)
{
    struct kite_app_options o;
    ts_options(&o);
    o.max_connections = 2;
    struct ts t;
    start(&t, &o);
    struct tc *a = tc_open_ok(t.port, "/ws", NULL);
    struct tc *b = tc_open_ok(t.port, "/ws", NULL);
    char resp[1024];
    ASSERT_EQ(http_exchange(t.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 503);
    ASSERT(strstr(resp, "Retry-After: 1\r\n") != NULL);
    tc_close(a, 1000, NULL);
    ASSERT(tc_wait_eof(a, 3000));
    tc_free(a);
    uint64_t end = kit_now_ms() + 2000;
    while (kite_app_connection_count(t.app) > 1 && kit_now_ms() < end)
        kit_sleep_ms(5);
    ASSERT_EQ(http_exchange(t.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0), 200);
    tc_free(b);
    ASSERT_EQ(ts_stop(&t), 0);
}

/* Graceful shutdown: every session gets 1001 (RFC 6455 §7.4.1 "going away"); a client
 * that answers ends cleanly, one that does not is dropped at the deadline; run
 * returns 0. */
TEST(http_graceful_shutdown)
{
    struct kite_app_options o;
    ts_options(&o);
    o.shutdown_timeout_ms = 500;
    struct ts t;
    start(&t, &o);
    struct tc *good = tc_open_ok(t.port, "/ws", NULL);
    struct tc *mute = tc_open_ok(t.port, "/ws", NULL);
    int idle = kit_connect(t.port); /* an HTTP connection with no request yet */
    tc_text(good, "x");
    TC_EXPECT(good, KITE_OP_TEXT, "x");
    uint64_t t0 = kit_now_ms();
    kite_app_stop(t.app);
    char reason[128];
    ASSERT_EQ(tc_expect_close(good, reason, sizeof(reason)), 1001);
    ASSERT_STREQ(reason, "server shutting down");
    tc_close(good, 1001, NULL);
    ASSERT(tc_wait_eof(good, 3000));
    ASSERT_EQ(tc_expect_close(mute, NULL, 0), 1001); /* and never answers */
    ASSERT(tc_wait_eof(mute, 3000));
    char buf[64];
    bool eof;
    kit_read_until_eof(idle, buf, sizeof(buf), 2000, &eof);
    ASSERT(eof);
    pthread_join(t.th, NULL);
    ASSERT_EQ(t.rc, 0);
    ASSERT(kit_now_ms() - t0 < 2500);
    ASSERT_REC("close 1001 local clean", 100);
    /* New connections are refused once it is shutting down. */
    kite_app_free(t.app);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(t.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT(connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0);
    close(fd);
    close(idle);
    tc_free(good);
    tc_free(mute);
}

TEST(http_app_api_errors)
{
    struct kite_app_options o;
    ts_options(&o);
    o.ws.timeout_ms = 0;
    ASSERT(kite_app_new(&o) == NULL);
    ts_options(&o);
    o.send.high_water = 10;
    o.send.hard_limit = 5;
    ASSERT(kite_app_new(&o) == NULL);
    ts_options(&o);
    struct kite_app *app = kite_app_new(&o);
    ASSERT(app != NULL);
    ASSERT(kite_route_get(app, "no-slash", page, NULL) == NULL);
    ASSERT(kite_route_get(app, "/", page, NULL) != NULL);
    ASSERT(kite_route_get(app, "/", page, NULL) == NULL); /* same pattern twice */
    struct kite_route *r = kite_route_get(app, "/p", page, NULL);
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    ASSERT_EQ(kite_route_set_ws_options(r, &wo), KITE_ERR_INVALID); /* not a WS route */
    ASSERT_EQ(kite_app_run(app, NULL, 0), KITE_ERR_STATE);          /* no listener */
    ASSERT_EQ(kite_app_listen(app, "127.0.0.1", 0), KITE_OK);
    uint16_t port = kite_app_listener_port(app, 0);
    char url[64], want[64];
    ASSERT(kite_app_listener_url(app, 0, url, sizeof(url)) > 0);
    snprintf(want, sizeof(want), "ws://127.0.0.1:%u/", (unsigned)port);
    ASSERT_STREQ(url, want);
    ASSERT_EQ(kite_app_listener_url(app, 1, url, sizeof(url)), KITE_ERR_NOTFOUND);
    ASSERT_EQ(kite_app_listen(app, "127.0.0.1", port), -EADDRINUSE);
    kite_app_free(app);
    kite_app_free(NULL);
}

/* Several listeners, IPv4 and IPv6 (when the machine has IPv6). */
TEST(http_ipv4_and_ipv6_listeners)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t;
    t.app = kite_app_new(&o);
    ASSERT(kite_route_get(t.app, "/", page, NULL) != NULL);
    int rc6 = kite_app_listen(t.app, "::1", 0);
    ts_start(&t); /* adds 127.0.0.1 as the second listener */
    if (rc6 == KITE_OK) {
        ASSERT_EQ(kite_app_listener_count(t.app), 2);
        char url[64];
        ASSERT(kite_app_listener_url(t.app, 0, url, sizeof(url)) > 0);
        ASSERT_EQ(strncmp(url, "ws://[::1]:", 11), 0);
        int fd = socket(AF_INET6, SOCK_STREAM, 0);
        struct sockaddr_in6 a = {.sin6_family = AF_INET6,
                                 .sin6_port = htons(kite_app_listener_port(t.app, 0))};
        a.sin6_addr = in6addr_loopback;
        ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        const char *req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        kit_write_all(fd, req, strlen(req));
        char resp[1024];
        bool eof;
        kit_read_until_eof(fd, resp, sizeof(resp), 2000, &eof);
        ASSERT_EQ(strncmp(resp, "HTTP/1.1 200", 12), 0);
        close(fd);
    }
    t.port = kite_app_listener_port(t.app, kite_app_listener_count(t.app) - 1);
    ASSERT_EQ(http_exchange(t.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0), 200);
    ASSERT_EQ(ts_stop(&t), 0);
}

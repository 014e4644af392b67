/*
 * The kite client against the kite server: ws:// and wss://, URL forms (IPv4, IPv6
 * literal, name), request options (subprotocols, headers, Origin), the session API in
 * the client role, and the TLS trust rules (CA file, untrusted, wrong host, insecure).
 */
#include "../certs/testcerts.h"
#include "test_client_kit.h"

static struct kite_loop *new_loop(void)
{
    struct kite_loop *loop;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    return loop;
}

static void start_server(struct ts *t, const char *host)
{
    struct kite_app_options o;
    ts_options(&o);
    t->app = kite_app_new(&o);
    ASSERT(t->app);
    ASSERT(kite_route_ws_callbacks(t->app, "/echo", &tapp_callbacks, NULL));
    struct kite_route *r = kite_route_ws_callbacks(t->app, "/chat", &tapp_callbacks, NULL);
    ASSERT(r);
    ASSERT_EQ(kite_route_set_protocol(r, "chat.v2"), KITE_OK);
    ASSERT_EQ(kite_app_listen(t->app, host, 0), KITE_OK);
    t->port = kite_app_listener_port(t->app, 0);
    ASSERT_EQ(pthread_create(&t->th, NULL, ts_main, t), 0);
}

/* One conversation: two messages echoed, then a close 1000 from the client. */
static void echo_roundtrip(struct kite_loop *loop, const char *url,
                           const struct kite_client_options *o)
{
    g_co.send_on_open[0] = "hello";
    g_co.send_on_open[1] = "world";
    co_connect(loop, url, o);
    ASSERT(g_co.opened);
    ASSERT(CO_RUN_UNTIL(loop, g_co.nmsg == 2, 5000));
    ASSERT_STREQ(g_co.log, "T:hello;T:world;");
    ASSERT(kite_session_is_open(g_co.s));
    ASSERT_EQ(kite_session_close(g_co.s, KITE_CLOSE_NORMAL, "bye"), KITE_OK);
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    /* RFC 6455 §7.1.2: our close, answered by the server: clean, initiated locally. */
    ASSERT_EQ(g_co.ci.code, 1000);
    ASSERT_EQ(g_co.ci.initiator, KITE_CLOSED_BY_LOCAL);
    ASSERT(g_co.ci.clean);
    ASSERT_EQ(g_co.ci.error, 0);
    ASSERT_STREQ(g_co.ci.reason, "bye");
    co_settle(loop, 50);
}

TEST(client_echo_ipv4_with_query)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    struct kite_loop *loop = new_loop();
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/echo?name=kite", (unsigned)t.port);
    struct kite_client_options o;
    co_options(&o);
    echo_roundtrip(loop, url, &o);
    ASSERT_REC("open /echo name=kite", 2000);
    ASSERT_REC("msg T 5;msg T 5;", 2000);
    ASSERT_REC("close 1000 peer clean err=0 reason=bye;", 2000);
    kite_loop_free(loop);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

TEST(client_echo_ipv6_literal)
{
    struct ts t = {0};
    struct kite_app_options ao;
    ts_options(&ao);
    t.app = kite_app_new(&ao);
    ASSERT(kite_route_ws_callbacks(t.app, "/echo", &tapp_callbacks, NULL));
    if (kite_app_listen(t.app, "::1", 0) != KITE_OK) {
        kite_app_free(t.app);
        printf("# no IPv6 loopback: skipped\n");
        return;
    }
    t.port = kite_app_listener_port(t.app, 0);
    ASSERT_EQ(pthread_create(&t.th, NULL, ts_main, &t), 0);
    struct kite_loop *loop = new_loop();
    char url[128];
    snprintf(url, sizeof(url), "ws://[::1]:%u/echo", (unsigned)t.port);
    struct kite_client_options o;
    co_options(&o);
    echo_roundtrip(loop, url, &o);
    ASSERT_REC("open /echo;", 2000);
    kite_loop_free(loop);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

TEST(client_echo_by_name_localhost)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    struct kite_loop *loop = new_loop();
    char url[128];
    /* "localhost" goes through the resolver's helper thread (net/resolve.h). */
    snprintf(url, sizeof(url), "WS://localhost:%u/echo", (unsigned)t.port);
    struct kite_client_options o;
    co_options(&o);
    echo_roundtrip(loop, url, &o);
    kite_loop_free(loop);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

TEST(client_subprotocol_headers_origin)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    struct kite_loop *loop = new_loop();
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/chat", (unsigned)t.port);
    struct kite_client_options o;
    co_options(&o);
    /* RFC 6455 §4.1 item 10: offered in preference order; the server picks one. */
    const char *protos[] = {"chat.v3", "chat.v2"};
    o.protocols = protos;
    o.num_protocols = 2;
    struct kite_header h[] = {{"X-Test", "yes please"}};
    o.headers = h;
    o.num_headers = 1;
    o.origin = "https://kite.test";
    g_co.close_on_open = true;
    co_connect(loop, url, &o);
    ASSERT(g_co.opened);
    ASSERT_STREQ(g_co.subprotocol, "chat.v2");
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    ASSERT_EQ(g_co.ci.code, 1000);
    ASSERT_REC("open /chat x-test=yes please proto=chat.v2 sproto=chat.v2", 2000);
    co_settle(loop, 50);
    kite_loop_free(loop);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

TEST(client_server_closes_and_binary)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    struct kite_loop *loop = new_loop();
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/echo", (unsigned)t.port);
    struct kite_client_options o;
    co_options(&o);
    co_connect(loop, url, &o);
    ASSERT(g_co.opened);
    uint8_t big[100000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    ASSERT(kite_session_send_binary(g_co.s, big, sizeof(big), NULL) >= 0);
    ASSERT(CO_RUN_UNTIL(loop, g_co.nmsg == 1, 5000));
    ASSERT_STREQ(g_co.log, "B:100000;");
    kite_session_send_str(g_co.s, "cmd:close 4001 server says so");
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    /* RFC 6455 §5.5.1: the server's close is echoed; it started it. */
    ASSERT_EQ(g_co.ci.code, 4001);
    ASSERT_EQ(g_co.ci.initiator, KITE_CLOSED_BY_PEER);
    ASSERT(g_co.ci.clean);
    ASSERT_STREQ(g_co.ci.reason, "server says so");
    co_settle(loop, 50);
    kite_loop_free(loop);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* Raw mode on the client: every frame, control frames included, reaches on_frame. */
static int g_frames;
static void raw_frame(struct kite_session *s, const struct kite_frame *f, void *ud)
{
    (void)ud;
    g_frames++;
    co_log("F%d:%.*s;", (int)f->opcode, (int)f->len, (const char *)f->data);
    if (f->opcode == KITE_OP_CLOSE)
        kite_session_send_frame(s, KITE_OP_CLOSE, true, 0, f->data, f->len, NULL);
}

TEST(client_raw_mode)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    struct kite_loop *loop = new_loop();
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/echo", (unsigned)t.port);
    struct kite_client_options o;
    co_options(&o);
    o.mode = KITE_MODE_RAW;
    struct kite_ws_callbacks cb = co_callbacks;
    cb.on_frame = raw_frame;
    cb.on_message = NULL;
    ASSERT_EQ(kite_connect(loop, url, &o, &cb, NULL, NULL), KITE_OK);
    ASSERT(CO_RUN_UNTIL(loop, g_co.opened, 5000));
    kite_session_send_str(g_co.s, "cmd:ping");
    kite_session_send_str(g_co.s, "abc");
    ASSERT(CO_RUN_UNTIL(loop, g_frames >= 2, 5000));
    /* The server's ping reaches us (no automatic pong in raw mode), then the echo. */
    ASSERT_STREQ(g_co.log, "F9:srv;F1:abc;");
    kite_session_send_str(g_co.s, "cmd:close 1000 raw");
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    ASSERT_EQ(g_co.ci.code, 1000);
    ASSERT(g_co.ci.clean);
    co_settle(loop, 50);
    kite_loop_free(loop);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* Raw mode needs on_frame; bad URLs and options are refused at once. */
TEST(client_connect_argument_errors)
{
    struct kite_loop *loop = new_loop();
    struct kite_client_options o;
    co_options(&o);
    struct kite_client *c = (struct kite_client *)1;
    ASSERT_EQ(kite_connect(loop, "http://127.0.0.1/", &o, &co_callbacks, NULL, &c), KITE_ERR_URL);
    ASSERT(c == NULL);
    ASSERT_EQ(kite_connect(loop, "ws://", &o, &co_callbacks, NULL, NULL), KITE_ERR_URL);
    ASSERT_EQ(kite_connect(loop, "ws://h:0/", &o, &co_callbacks, NULL, NULL), KITE_ERR_URL);
    ASSERT_EQ(kite_connect(loop, "ws://h:65536/", &o, &co_callbacks, NULL, NULL), KITE_ERR_URL);
    ASSERT_EQ(kite_connect(loop, "ws://h/#frag", &o, &co_callbacks, NULL, NULL), KITE_ERR_URL);
    ASSERT_EQ(kite_connect(loop, "ws://u@h/", &o, &co_callbacks, NULL, NULL), KITE_ERR_URL);
    ASSERT_EQ(kite_connect(loop, "ws://[::1/", &o, &co_callbacks, NULL, NULL), KITE_ERR_URL);
    ASSERT_EQ(kite_connect(loop, "ws://h/a b", &o, &co_callbacks, NULL, NULL), KITE_ERR_URL);
    ASSERT_EQ(kite_connect(NULL, "ws://h/", &o, &co_callbacks, NULL, NULL), KITE_ERR_INVALID);
    const char *bad_proto[] = {"a b"};
    o.protocols = bad_proto;
    o.num_protocols = 1;
    ASSERT_EQ(kite_connect(loop, "ws://h/", &o, &co_callbacks, NULL, NULL), KITE_ERR_INVALID);
    co_options(&o);
    struct kite_header reserved[] = {{"Sec-WebSocket-Key", "x"}};
    o.headers = reserved;
    o.num_headers = 1;
    ASSERT_EQ(kite_connect(loop, "ws://h/", &o, &co_callbacks, NULL, NULL), KITE_ERR_INVALID);
    co_options(&o);
    struct kite_header ctl[] = {{"X-A", "bad\r\nvalue"}};
    o.headers = ctl;
    o.num_headers = 1;
    ASSERT_EQ(kite_connect(loop, "ws://h/", &o, &co_callbacks, NULL, NULL), KITE_ERR_INVALID);
    co_options(&o);
    o.mode = KITE_MODE_RAW;
    ASSERT_EQ(kite_connect(loop, "ws://h/", &o, &co_callbacks, NULL, NULL), KITE_ERR_INVALID);
    co_options(&o);
    o.handshake_timeout_ms = 0;
    ASSERT_EQ(kite_connect(loop, "ws://h/", &o, &co_callbacks, NULL, NULL), KITE_ERR_INVALID);
    co_settle(loop, 20);
    ASSERT(!g_co.failed && !g_co.opened);
    kite_loop_free(loop);
}

/* A cancelled attempt reports nothing and leaks nothing. */
TEST(client_cancel)
{
    struct rs r = {0};
    r.no_answer = true;
    rs_start(&r);
    struct kite_loop *loop = new_loop();
    char url[128];
    rs_url(&r, url, sizeof(url), "/");
    struct kite_client_options o;
    co_options(&o);
    struct kite_client *c;
    ASSERT_EQ(kite_connect(loop, url, &o, &co_callbacks, NULL, &c), KITE_OK);
    ASSERT_STREQ(kite_client_url(c), url);
    co_settle(loop, 100);
    kite_client_cancel(c);
    co_settle(loop, 100);
    ASSERT(!g_co.failed && !g_co.opened);
    kite_loop_free(loop);
    rs_join(&r);
    ASSERT(strstr(r.request, "GET / HTTP/1.1\r\n") == r.request);
}

/* ---- failures before the session ----------------------------------------------------- */

TEST(client_connect_refused)
{
    /* A port that was free a moment ago: nothing listens there. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    struct kite_loop *loop = new_loop();
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/", (unsigned)ntohs(a.sin_port));
    struct kite_client_options o;
    co_options(&o);
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, -ECONNREFUSED);
    ASSERT_CONTAINS(g_co.msg, "cannot connect to 127.0.0.1:");
    ASSERT_CONTAINS(g_co.msg, "refused");
    co_settle(loop, 20);
    kite_loop_free(loop);
}

TEST(client_dns_failure)
{
    struct kite_loop *loop = new_loop();
    struct kite_client_options o;
    co_options(&o);
    /* RFC 6761 §6.4: ".invalid" never resolves. */
    co_connect(loop, "ws://nonexistent.invalid/", &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_RESOLVE);
    ASSERT_CONTAINS(g_co.msg, "cannot resolve host 'nonexistent.invalid'");
    co_settle(loop, 20);
    kite_loop_free(loop);
}

/* A server that accepts TCP but never answers the upgrade: the handshake timeout. */
TEST(client_handshake_timeout)
{
    struct rs r = {0};
    r.no_answer = true;
    rs_start(&r);
    struct kite_loop *loop = new_loop();
    char url[128];
    rs_url(&r, url, sizeof(url), "/slow");
    struct kite_client_options o;
    co_options(&o);
    o.handshake_timeout_ms = 300;
    uint64_t t0 = kit_now_ms();
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_TIMEOUT);
    ASSERT(kit_now_ms() - t0 >= 290);
    ASSERT_CONTAINS(g_co.msg, "no WebSocket handshake answer");
    co_settle(loop, 20);
    kite_loop_free(loop);
    rs_join(&r);
}

/* A listening socket whose accept queue is full drops our SYN: TCP never completes,
 * and the connect timeout fires. */
TEST(client_connect_timeout)
{
    struct rs r = {0};
    r.never_accept = true;
    rs_start(&r);
    /* Fill the backlog (listen(fd, 0) queues one) with connections nobody accepts. */
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(r.port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        (void)connect(fillers[i], (struct sockaddr *)&a, sizeof(a));
    }
    kit_sleep_ms(50);
    struct kite_loop *loop = new_loop();
    char url[128];
    rs_url(&r, url, sizeof(url), "/");
    struct kite_client_options o;
    co_options(&o);
    o.connect_timeout_ms = 300;
    o.handshake_timeout_ms = 300;
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_TIMEOUT);
    /* Either the SYN was dropped (connect timeout) or the kernel completed it and
     * nobody answers (handshake timeout): both are timeouts with a clear message. */
    ASSERT(strstr(g_co.msg, "could not connect to 127.0.0.1") ||
           strstr(g_co.msg, "no WebSocket handshake answer"));
    co_settle(loop, 20);
    kite_loop_free(loop);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    rs_join(&r);
}

/* ---- TLS -------------------------------------------------------------------------------- */

static struct tc_dir g_certs;

/* The server's view of a TLS session: the request info says TLS and its version. */
static void tlsinfo_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    const char *v = kite_request_tls_version(req);
    rec_add("tlsinfo tls=%d version=%s session_tls=%d;", (int)kite_request_is_tls(req),
            v ? v : "-", (int)kite_session_is_tls(s));
    kite_session_close(s, KITE_CLOSE_NORMAL, "info given");
}

static const struct kite_ws_callbacks tlsinfo_callbacks = {.on_open = tlsinfo_open};

static void start_tls_server(struct ts *t, const char *cert, const char *key)
{
    ASSERT_EQ(tc_standard(&g_certs), 0);
    struct kite_app_options o;
    ts_options(&o);
    t->app = kite_app_new(&o);
    ASSERT(t->app);
    ASSERT(kite_route_ws_callbacks(t->app, "/echo", &tapp_callbacks, NULL));
    ASSERT(kite_route_ws_callbacks(t->app, "/tlsinfo", &tlsinfo_callbacks, NULL));
    struct kite_tls_server_options tls;
    kite_tls_server_options_init(&tls);
    tls.cert_file = tc_path(&g_certs, cert);
    tls.key_file = tc_path(&g_certs, key);
    char err[256];
    /* One plain and one TLS listener in the same app. */
    ASSERT_EQ(kite_app_listen(t->app, "127.0.0.1", 0), KITE_OK);
    ASSERT_EQ(kite_app_listen_tls(t->app, "127.0.0.1", 0, &tls, err, sizeof(err)), KITE_OK);
    ASSERT(!kite_app_listener_is_tls(t->app, 0));
    ASSERT(kite_app_listener_is_tls(t->app, 1));
    char url[128];
    ASSERT(kite_app_listener_url(t->app, 1, url, sizeof(url)) > 0);
    ASSERT(strncmp(url, "wss://127.0.0.1:", 16) == 0);
    t->port = kite_app_listener_port(t->app, 1);
    ASSERT_EQ(pthread_create(&t->th, NULL, ts_main, t), 0);
}

static void stop_tls_server(struct ts *t)
{
    ASSERT_EQ(ts_stop(t), KITE_OK);
    tc_cleanup(&g_certs);
}

TEST(client_wss_echo_with_ca_file)
{
    struct ts t = {0};
    start_tls_server(&t, "server.crt", "server.key");
    struct kite_loop *loop = new_loop();
    struct kite_tls_client_options tls;
    kite_tls_client_options_init(&tls);
    tls.ca_file = tc_path(&g_certs, "ca.pem");
    struct kite_client_options o;
    co_options(&o);
    o.tls = &tls;
    char url[128];
    snprintf(url, sizeof(url), "wss://localhost:%u/echo", (unsigned)t.port);
    echo_roundtrip(loop, url, &o);
    ASSERT_REC("open /echo", 2000);
    /* The same with the IP address (the certificate has an IP SAN) and a big message. */
    memset(&g_co, 0, sizeof(g_co));
    snprintf(url, sizeof(url), "wss://127.0.0.1:%u/echo", (unsigned)t.port);
    co_connect(loop, url, &o);
    ASSERT(g_co.opened);
    size_t n = 1u << 20;
    uint8_t *big = malloc(n);
    memset(big, 'x', n);
    ASSERT(kite_session_send_binary(g_co.s, big, n, NULL) >= 0);
    free(big);
    ASSERT(CO_RUN_UNTIL(loop, g_co.nmsg == 1, 8000));
    ASSERT_STREQ(g_co.log, "B:1048576;");
    ASSERT(kite_session_is_tls(g_co.s));
    kite_session_close(g_co.s, KITE_CLOSE_NORMAL, NULL);
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    ASSERT(g_co.ci.clean);
    /* The server side's request info. */
    memset(&g_co, 0, sizeof(g_co));
    snprintf(url, sizeof(url), "wss://localhost:%u/tlsinfo", (unsigned)t.port);
    co_connect(loop, url, &o);
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    ASSERT_STREQ(g_co.ci.reason, "info given");
    ASSERT_REC("tlsinfo tls=1 version=TLSv1.3 session_tls=1;", 2000);
    co_settle(loop, 50);
    kite_loop_free(loop);
    stop_tls_server(&t);
}

TEST(client_wss_untrusted_certificate)
{
    struct ts t = {0};
    start_tls_server(&t, "self.crt", "self.key");
    struct kite_loop *loop = new_loop();
    struct kite_tls_client_options tls;
    kite_tls_client_options_init(&tls);
    tls.ca_file = tc_path(&g_certs, "ca.pem"); /* self.crt is not signed by it */
    struct kite_client_options o;
    co_options(&o);
    o.tls = &tls;
    char url[128];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%u/echo", (unsigned)t.port);
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(g_co.msg, "certificate");
    /* insecure: the same server is accepted (testing only). */
    memset(&g_co, 0, sizeof(g_co));
    tls.ca_file = NULL;
    tls.insecure = true;
    g_co.close_on_open = true;
    co_connect(loop, url, &o);
    ASSERT(g_co.opened);
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    ASSERT(g_co.ci.clean);
    co_settle(loop, 50);
    kite_loop_free(loop);
    stop_tls_server(&t);
}

TEST(client_wss_wrong_hostname)
{
    struct ts t = {0};
    start_tls_server(&t, "api.crt", "api.key"); /* valid for api.other.test only */
    struct kite_loop *loop = new_loop();
    struct kite_tls_client_options tls;
    kite_tls_client_options_init(&tls);
    tls.ca_file = tc_path(&g_certs, "ca.pem");
    struct kite_client_options o;
    co_options(&o);
    o.tls = &tls;
    char url[128];
    snprintf(url, sizeof(url), "wss://localhost:%u/echo", (unsigned)t.port);
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(g_co.msg, "localhost");
    co_settle(loop, 20);
    kite_loop_free(loop);
    stop_tls_server(&t);
}

TEST(client_wss_to_plain_port_and_bad_ca_file)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    struct kite_loop *loop = new_loop();
    struct kite_client_options o;
    co_options(&o);
    struct kite_tls_client_options tls;
    kite_tls_client_options_init(&tls);
    tls.insecure = true;
    o.tls = &tls;
    o.handshake_timeout_ms = 3000;
    char url[128];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%u/echo", (unsigned)t.port);
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT(g_co.err == KITE_ERR_TLS || g_co.err == KITE_ERR_CLOSED || g_co.err == -ECONNRESET);
    ASSERT(g_co.msg[0]);
    memset(&g_co, 0, sizeof(g_co));
    tls.insecure = false;
    tls.ca_file = "/nonexistent/ca.pem";
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_TLS);
    ASSERT_CONTAINS(g_co.msg, "ca.pem");
    co_settle(loop, 20);
    kite_loop_free(loop);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* SNI (RFC 6066 §3): the server picks the certificate by the name the client sends;
 * the client's server_name overrides the URL's host for SNI and the name check. */
TEST(client_wss_sni_and_server_name)
{
    ASSERT_EQ(tc_standard(&g_certs), 0);
    struct ts t = {0};
    struct kite_app_options ao;
    ts_options(&ao);
    t.app = kite_app_new(&ao);
    ASSERT(kite_route_ws_callbacks(t.app, "/echo", &tapp_callbacks, NULL));
    struct kite_tls_sni_cert sni[1];
    char wc[PATH_MAX], wk[PATH_MAX];
    snprintf(wc, sizeof(wc), "%s", tc_path(&g_certs, "wild.crt"));
    snprintf(wk, sizeof(wk), "%s", tc_path(&g_certs, "wild.key"));
    sni[0] = (struct kite_tls_sni_cert){"*.example.test", wc, wk};
    struct kite_tls_server_options tls;
    kite_tls_server_options_init(&tls);
    tls.cert_file = tc_path(&g_certs, "server.crt");
    tls.key_file = tc_path(&g_certs, "server.key");
    tls.sni = sni;
    tls.sni_count = 1;
    ASSERT_EQ(kite_app_listen_tls(t.app, "127.0.0.1", 0, &tls, NULL, 0), KITE_OK);
    t.port = kite_app_listener_port(t.app, 0);
    ASSERT_EQ(pthread_create(&t.th, NULL, ts_main, &t), 0);
    struct kite_loop *loop = new_loop();
    struct kite_tls_client_options ctls;
    kite_tls_client_options_init(&ctls);
    ctls.ca_file = tc_path(&g_certs, "ca.pem");
    ctls.server_name = "a.example.test";
    struct kite_client_options o;
    co_options(&o);
    o.tls = &ctls;
    char url[128];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%u/echo", (unsigned)t.port);
    g_co.close_on_open = true;
    co_connect(loop, url, &o);
    ASSERT(g_co.opened); /* wild.crt was chosen and verified for a.example.test */
    ASSERT(CO_RUN_UNTIL(loop, g_co.closed, 5000));
    /* A name no SNI entry matches gets the default certificate, which is not valid
     * for it: refused. */
    memset(&g_co, 0, sizeof(g_co));
    ctls.server_name = "other.test";
    co_connect(loop, url, &o);
    ASSERT(g_co.failed);
    ASSERT_EQ(g_co.err, KITE_ERR_TLS_VERIFY);
    co_settle(loop, 50);
    kite_loop_free(loop);
    stop_tls_server(&t);
}

/* ---- the convenience runner ------------------------------------------------------------- */

static void run_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)req;
    (void)ud;
    g_co.s = s;
    kite_session_send_str(s, "cmd:close 1000 Client said BYE");
}

TEST(client_run_convenience)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    char url[128], err[256];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/echo", (unsigned)t.port);
    struct kite_ws_callbacks cb = co_callbacks;
    cb.on_open = run_open;
    g_co.s = NULL;
    ASSERT_EQ(kite_client_run(url, NULL, &cb, NULL, err, sizeof(err)), KITE_OK);
    ASSERT(g_co.closed);
    ASSERT_EQ(g_co.ci.code, 1000);
    ASSERT_STREQ(g_co.ci.reason, "Client said BYE");
    ASSERT_EQ(kite_client_run("ws://nonexistent.invalid/", NULL, &cb, NULL, err, sizeof(err)),
              KITE_ERR_RESOLVE);
    ASSERT_CONTAINS(err, "nonexistent.invalid");
    ASSERT_EQ(kite_client_run("ftp://x/", NULL, &cb, NULL, err, sizeof(err)), KITE_ERR_URL);
    ASSERT_CONTAINS(err, "bad URL");
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* Out of memory at every allocation the client makes, one run each: kite_connect fails
 * with KITE_ERR_NOMEM, or the attempt reports it, or the session fails with 1011; never
 * a crash, and nothing leaks (every block is back when the loop is freed). */
static long oom_runs(const char *url, const struct kite_tls_client_options *tls)
{
    const char *protos[] = {"p1"};
    struct kite_header h[] = {{"X-Test", "1"}};
    long n = 1;
    for (;; n++) {
        struct kite_test_alloc st = {0};
        st.fail_at = n;
        memset(&g_co, 0, sizeof(g_co));
        g_co.send_on_open[0] = "hi";
        struct kite_loop *loop = new_loop();
        struct kite_client_options o;
        co_options(&o);
        o.allocator = kite_test_allocator(&st);
        o.protocols = protos;
        o.num_protocols = 1;
        o.headers = h;
        o.num_headers = 1;
        o.tls = tls;
        int rc = kite_connect(loop, url, &o, &co_callbacks, NULL, NULL);
        if (rc == KITE_OK) {
            /* A send that failed for memory is not retried: no echo comes then. */
            (void)CO_RUN_UNTIL(loop, g_co.failed || g_co.closed || g_co.nmsg == 1, 1000);
            /* A close that cannot get memory queues nothing: drop the connection. */
            if (g_co.s && kite_session_close(g_co.s, KITE_CLOSE_NORMAL, NULL) == KITE_ERR_NOMEM)
                kite_session_terminate(g_co.s);
            if (!CO_RUN_UNTIL(loop, g_co.failed || g_co.closed, 5000))
                kite_test_fail(__FILE__, __LINE__, "step %ld: no outcome (opened %d, msgs %zu)",
                               n, (int)g_co.opened, g_co.nmsg);
        } else {
            ASSERT_EQ(rc, KITE_ERR_NOMEM);
        }
        co_settle(loop, 20);
        kite_loop_free(loop);
        ASSERT_EQ(st.live, 0);
        if (!st.failed)
            return n - 1; /* a whole run without a failure: every step was covered */
    }
}

TEST(client_out_of_memory_every_step)
{
    struct ts t = {0};
    start_server(&t, "127.0.0.1");
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/echo?x=1", (unsigned)t.port);
    long n = oom_runs(url, NULL);
    printf("# %ld allocation points\n", n);
    ASSERT(n > 5);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

TEST(client_out_of_memory_every_step_wss)
{
    struct ts t = {0};
    start_tls_server(&t, "server.crt", "server.key");
    struct kite_tls_client_options tls;
    kite_tls_client_options_init(&tls);
    tls.ca_file = tc_path(&g_certs, "ca.pem");
    char url[128];
    snprintf(url, sizeof(url), "wss://localhost:%u/echo", (unsigned)t.port);
    long n = oom_runs(url, &tls);
    printf("# %ld allocation points\n", n);
    ASSERT(n > 5);
    stop_tls_server(&t);
}

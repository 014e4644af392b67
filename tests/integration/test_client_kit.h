/*
 * A kit for the client's integration tests (header-only, included by
 * tests/integration/test_client*.c), on top of test_server_kit.h:
 *
 *   - co_*  the kite client under test on a loop in the test's thread: callbacks that
 *           record everything (open, messages, close info, connect error) in g_co, and
 *           co_run() to drive the loop until the attempt or the session has ended;
 *   - rs_*  a scripted raw server in a thread: accepts one connection, reads the
 *           upgrade request, answers with exactly the bytes the test gives (a correct
 *           101 by default, with "%s" standing for the right Sec-WebSocket-Accept),
 *           then sends more scripted bytes and records what the client sends back;
 *   - wf_*  a small frame decoder for what the client sent (masked frames).
 */
#ifndef KITE_TEST_CLIENT_KIT_H
#define KITE_TEST_CLIENT_KIT_H

#include "http/handshake.h"
#include "test_server_kit.h"

/* ---- the client under test -------------------------------------------------------- */

struct co {
    struct kite_session *s; /* the open session (NULL before on_open / after on_close) */
    bool opened, closed, failed;
    int err;         /* on_connect_error's code */
    int http_status; /* on_connect_error's status */
    char msg[512];   /* on_connect_error's message */
    int on_error;    /* the last on_error code, 0 if none */
    struct kite_close_info ci;
    char subprotocol[64];
    char log[8192]; /* "T:hello;B:3;" per message */
    size_t nmsg;
    /* optional script for on_open: send these and then close */
    const char *send_on_open[4];
    bool close_on_open;
};

static struct co g_co;

static void co_log(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void co_log(const char *fmt, ...)
{
    size_t len = strlen(g_co.log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_co.log + len, sizeof(g_co.log) - len, fmt, ap);
    va_end(ap);
}

static KIT_UNUSED void co_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    ASSERT(req == NULL);
    g_co.s = s;
    g_co.opened = true;
    const char *p = kite_session_subprotocol(s);
    snprintf(g_co.subprotocol, sizeof(g_co.subprotocol), "%s", p ? p : "");
    for (int i = 0; i < 4 && g_co.send_on_open[i]; i++)
        kite_session_send_str(s, g_co.send_on_open[i]);
    if (g_co.close_on_open)
        kite_session_close(s, KITE_CLOSE_NORMAL, "done");
}

static KIT_UNUSED void co_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)s;
    (void)ud;
    g_co.nmsg++;
    if (m->type == KITE_OP_TEXT)
        co_log("T:%.*s;", (int)KITE_TEST_MIN(m->len, 200), (const char *)m->data);
    else
        co_log("B:%zu;", m->len);
}

static KIT_UNUSED void co_error(struct kite_session *s, int err, void *ud)
{
    (void)s;
    (void)ud;
    g_co.on_error = err;
}

static KIT_UNUSED void co_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    (void)ud;
    ASSERT(s == g_co.s);
    g_co.ci = *ci;
    g_co.closed = true;
    g_co.s = NULL;
}

static KIT_UNUSED void co_connect_error(struct kite_client *c, const struct kite_connect_error *e,
                                       void *ud)
{
    (void)c;
    (void)ud;
    g_co.failed = true;
    g_co.err = e->code;
    g_co.http_status = e->http_status;
    snprintf(g_co.msg, sizeof(g_co.msg), "%s", e->message);
    printf("# connect error %s: %s\n", kite_err_name(e->code), e->message);
}

static const struct kite_ws_callbacks co_callbacks KIT_UNUSED = {
    .on_open = co_open,
    .on_message = co_message,
    .on_error = co_error,
    .on_close = co_close,
};

static inline void co_options(struct kite_client_options *o)
{
    kite_client_options_init(o);
    o->on_connect_error = co_connect_error;
}

/* Run `loop` until `cond` holds or timeout_ms passes; returns whether it held. */
#define CO_RUN_UNTIL(loop, cond, timeout_ms)                                                       \
    ({                                                                                             \
        uint64_t end_ = kit_now_ms() + (timeout_ms);                                               \
        while (!(cond) && kit_now_ms() < end_)                                                     \
            kite_loop_run_once((loop), 10);                                                        \
        (cond);                                                                                    \
    })

/* Drive the loop a little more so deferred frees and lingering sockets finish. */
static inline void co_settle(struct kite_loop *loop, unsigned ms)
{
    uint64_t end = kit_now_ms() + ms;
    while (kit_now_ms() < end)
        kite_loop_run_once(loop, 5);
}

/* Connect and wait for the outcome (open or failure). */
static inline void co_connect(struct kite_loop *loop, const char *url,
                              const struct kite_client_options *o)
{
    ASSERT_EQ(kite_connect(loop, url, o, &co_callbacks, NULL, NULL), KITE_OK);
    ASSERT(CO_RUN_UNTIL(loop, g_co.opened || g_co.failed, 8000));
}

#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            kite_test_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", (hay),           \
                           (needle));                                                              \
    } while (0)

/* ---- a scripted raw server ---------------------------------------------------------- */

struct rs {
    int lfd;
    uint16_t port;
    pthread_t th;
    bool started;
    /* the script */
    const char *response;  /* printf format with one %s (the accept key); NULL: plain 101 */
    const uint8_t *after;  /* bytes sent right after the response */
    size_t after_len;
    bool drop_after;       /* close TCP at once after `after` */
    bool reset_after;      /* ... with a reset (SO_LINGER 0) instead of a FIN */
    bool no_answer;        /* accept, read the request, never answer */
    bool never_accept;     /* do not even accept (the kernel's backlog holds the client) */
    /* what happened */
    char request[4096];
    uint8_t got[16384]; /* bytes the client sent after its request */
    size_t got_len;
    bool got_eof;
};

static const char rs_101[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n";

/* The value of header `name` in the request (into out), or "" */
static inline void rs_header(const char *req, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = req;
    size_t n = strlen(name);
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, "\r");
            snprintf(out, cap, "%.*s", (int)KITE_TEST_MIN(len, cap - 1), p);
            return;
        }
    }
}

static inline int wf_close_code(const struct rs *r);

static void *rs_main(void *arg)
{
    struct rs *r = arg;
    if (r->never_accept) {
        kit_sleep_ms(4000);
        return NULL;
    }
    struct pollfd p = {r->lfd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0)
        return NULL;
    int fd = accept(r->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t len = 0;
    while (len + 1 < sizeof(r->request) && !strstr(r->request, "\r\n\r\n")) {
        ssize_t n = kit_read(fd, r->request + len, sizeof(r->request) - 1 - len, 3000);
        if (n <= 0)
            break;
        len += (size_t)n;
        r->request[len] = '\0';
    }
    if (r->no_answer) {
        kit_read(fd, r->got, sizeof(r->got), 3000);
        close(fd);
        return NULL;
    }
    char key[128], accept_key[KITE_WS_ACCEPT_LEN + 1] = "";
    rs_header(r->request, "Sec-WebSocket-Key", key, sizeof(key));
    kite__ws_accept_key(key, strlen(key), accept_key);
    char resp[2048];
    int n = snprintf(resp, sizeof(resp), r->response ? r->response : rs_101, accept_key);
    (void)send(fd, resp, (size_t)n, MSG_NOSIGNAL);
    if (r->after_len)
        (void)send(fd, r->after, r->after_len, MSG_NOSIGNAL);
    if (r->reset_after) {
        kit_sleep_ms(50);
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else if (!r->drop_after) {
        uint64_t end = kit_now_ms() + 3000;
        while (r->got_len < sizeof(r->got) && kit_now_ms() < end) {
            ssize_t m = kit_read(fd, r->got + r->got_len, sizeof(r->got) - r->got_len, 100);
            if (m == 0 || m == -2) {
                r->got_eof = true;
                break;
            }
            if (m > 0)
                r->got_len += (size_t)m;
            /* The client's close frame is in: close TCP first, as a server does
             * (RFC 6455 §7.1.1), so the client need not wait. */
            if (wf_close_code(r) != 0)
                break;
        }
    }
    close(fd);
    return NULL;
}

/* Listen on 127.0.0.1:0 and start the script. */
static inline void rs_start(struct rs *r)
{
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(r->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(listen(r->lfd, r->never_accept ? 0 : 8), 0);
    socklen_t al = sizeof(a);
    getsockname(r->lfd, (struct sockaddr *)&a, &al);
    r->port = ntohs(a.sin_port);
    ASSERT_EQ(pthread_create(&r->th, NULL, rs_main, r), 0);
    r->started = true;
}

static inline void rs_join(struct rs *r)
{
    if (r->started)
        pthread_join(r->th, NULL);
    r->started = false;
    close(r->lfd);
}

static inline void rs_url(const struct rs *r, char *url, size_t cap, const char *path)
{
    snprintf(url, cap, "ws://127.0.0.1:%u%s", (unsigned)r->port, path);
}

/* ---- decoding what the client sent --------------------------------------------------- */

struct wf {
    uint8_t op;
    bool fin, masked;
    uint8_t rsv;
    uint8_t data[1024];
    size_t len;
};

/* Decode the frame at buf[*off..len) (unmasking it). Returns false when incomplete. */
static inline bool wf_next(const uint8_t *buf, size_t len, size_t *off, struct wf *f)
{
    size_t o = *off;
    if (len - o < 2)
        return false;
    uint8_t b0 = buf[o], b1 = buf[o + 1];
    f->fin = b0 & 0x80;
    f->rsv = b0 & 0x70;
    f->op = b0 & 0x0f;
    f->masked = b1 & 0x80;
    uint64_t n = b1 & 0x7f;
    o += 2;
    if (n == 126) {
        if (len - o < 2)
            return false;
        n = (uint64_t)buf[o] << 8 | buf[o + 1];
        o += 2;
    } else if (n == 127) {
        if (len - o < 8)
            return false;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | buf[o + (size_t)i];
        o += 8;
    }
    uint8_t key[4] = {0};
    if (f->masked) {
        if (len - o < 4)
            return false;
        memcpy(key, buf + o, 4);
        o += 4;
    }
    if (len - o < n)
        return false;
    f->len = (size_t)KITE_TEST_MIN(n, sizeof(f->data));
    for (size_t i = 0; i < f->len; i++)
        f->data[i] = buf[o + i] ^ (f->masked ? key[i % 4] : 0);
    *off = o + (size_t)n;
    return true;
}

/* The close code of the first close frame the client sent, 0 if none (-1: unmasked). */
static inline int wf_close_code(const struct rs *r)
{
    size_t off = 0;
    struct wf f;
    while (wf_next(r->got, r->got_len, &off, &f)) {
        if (!f.masked)
            return -1;
        if (f.op == KITE_OP_CLOSE)
            return f.len >= 2 ? (f.data[0] << 8 | f.data[1]) : 1005;
    }
    return 0;
}

#endif

/*
 * A small kit for the server's integration tests (header-only, included by each
 * tests/integration/test_server*.c):
 *
 *   - ts_*   a kite_app running in a thread on 127.0.0.1 with port 0;
 *   - rec_*  a thread-safe event log the server's callbacks write to ("open /x;msg T
 *            hello;close 1000 peer clean;") and tests wait on;
 *   - tc_*   a blocking WebSocket client built on the codec in raw client mode, so the
 *            test sees every frame the server sends (control frames included), chooses
 *            what to answer, and can also write arbitrary bytes;
 *   - http_* one raw HTTP exchange.
 *
 * Every wait has a timeout so a broken server fails a test instead of hanging it.
 */
#ifndef KITE_TEST_SERVER_KIT_H
#define KITE_TEST_SERVER_KIT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kite/kite.h"
#include "test.h"

#define KITE_TEST_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KIT_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline uint64_t kit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void kit_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- event log ---------------------------------------------------------------------- */

struct rec {
    pthread_mutex_t mu;
    char log[16384];
    size_t len;
};

static struct rec g_rec = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};

static void rec_add(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void rec_add(const char *fmt, ...)
{
    pthread_mutex_lock(&g_rec.mu);
    va_list ap;
    va_start(ap, fmt);
    if (g_rec.len < sizeof(g_rec.log) - 1) {
        int n = vsnprintf(g_rec.log + g_rec.len, sizeof(g_rec.log) - g_rec.len, fmt, ap);
        if (n > 0)
            g_rec.len = KITE_TEST_MIN(g_rec.len + (size_t)n, sizeof(g_rec.log) - 1);
    }
    va_end(ap);
    pthread_mutex_unlock(&g_rec.mu);
}

/* Copy of the log so far. */
static inline void rec_get(char *out, size_t cap)
{
    pthread_mutex_lock(&g_rec.mu);
    snprintf(out, cap, "%s", g_rec.log);
    pthread_mutex_unlock(&g_rec.mu);
}

/* Wait until `needle` appears in the log; false after timeout_ms. */
static inline bool rec_wait(const char *needle, unsigned timeout_ms)
{
    uint64_t end = kit_now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&g_rec.mu);
        bool found = strstr(g_rec.log, needle) != NULL;
        pthread_mutex_unlock(&g_rec.mu);
        if (found)
            return true;
        if (kit_now_ms() >= end)
            return false;
        kit_sleep_ms(2);
    }
}

#define ASSERT_REC(needle, ms)                                                                     \
    do {                                                                                           \
        if (!rec_wait((needle), (ms))) {                                                           \
            char log_[16384];                                                                      \
            rec_get(log_, sizeof(log_));                                                           \
            kite_test_fail(__FILE__, __LINE__, "event \"%s\" not seen; log: %s", (needle), log_);  \
        }                                                                                          \
    } while (0)

/* ---- server in a thread ------------------------------------------------------------- */

struct ts {
    struct kite_app *app;
    pthread_t th;
    uint16_t port;
    int rc;
};

static void *ts_main(void *arg)
{
    struct ts *t = arg;
    t->rc = kite_app_run(t->app, NULL, 0);
    return NULL;
}

/* Options for a test server: no signal handling (the test process owns signals). */
static inline void ts_options(struct kite_app_options *o)
{
    kite_app_options_init(o);
    o->handle_signals = false;
}

static inline void ts_start(struct ts *t)
{
    ASSERT(t->app != NULL);
    ASSERT_EQ(kite_app_listen(t->app, "127.0.0.1", 0), KITE_OK);
    t->port = kite_app_listener_port(t->app, 0);
    ASSERT(t->port != 0);
    ASSERT_EQ(pthread_create(&t->th, NULL, ts_main, t), 0);
}

/* Stop gracefully and free; returns kite_app_run's result. */
static inline int ts_stop(struct ts *t)
{
    kite_app_stop(t->app);
    pthread_join(t->th, NULL);
    kite_app_free(t->app);
    t->app = NULL;
    return t->rc;
}

/* ---- plain TCP ---------------------------------------------------------------------- */

static inline int kit_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static inline void kit_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        ASSERT(w > 0);
        b += w;
        n -= (size_t)w;
    }
}

/* read() with a timeout: > 0 bytes, 0 EOF, -1 timeout, -2 error (ECONNRESET...). */
static inline ssize_t kit_read(int fd, void *buf, size_t cap, unsigned timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, (int)timeout_ms);
    if (r == 0)
        return -1;
    ssize_t n = read(fd, buf, cap);
    return n < 0 ? -2 : n;
}

/* Read until EOF (or timeout) into out (NUL-terminated); returns bytes read, and
 * *eof whether the peer closed. */
static inline size_t kit_read_until_eof(int fd, char *out, size_t cap, unsigned timeout_ms,
                                        bool *eof)
{
    size_t len = 0;
    uint64_t end = kit_now_ms() + timeout_ms;
    *eof = false;
    while (len + 1 < cap) {
        uint64_t now = kit_now_ms();
        if (now >= end)
            break;
        ssize_t n = kit_read(fd, out + len, cap - 1 - len, (unsigned)(end - now));
        if (n == 0 || n == -2) {
            *eof = true;
            break;
        }
        if (n < 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    return len;
}

/* Send a raw request and return the status of the first response (0 if none), with the
 * whole response text in resp when given. The connection is closed afterwards. */
static inline int http_exchange(uint16_t port, const char *req, char *resp, size_t cap)
{
    char local[8192];
    if (!resp) {
        resp = local;
        cap = sizeof(local);
    }
    int fd = kit_connect(port);
    kit_write_all(fd, req, strlen(req));
    shutdown(fd, SHUT_WR);
    bool eof;
    kit_read_until_eof(fd, resp, cap, 3000, &eof);
    close(fd);
    int status = 0;
    if (strncmp(resp, "HTTP/1.1 ", 9) == 0)
        status = atoi(resp + 9);
    return status;
}

/* ---- WebSocket test client -------------------------------------------------------------- */

struct tc_frame {
    uint8_t op;
    bool fin;
    uint8_t *data; /* malloc'd, NUL-terminated for convenience */
    size_t len;
};

#define TC_QUEUE 256

struct tc {
    int fd;
    int status;               /* HTTP status of the handshake response */
    char head[4096];          /* the response head */
    struct kite_codec *codec; /* raw client mode */
    struct tc_frame q[TC_QUEUE];
    size_t qh, qt; /* queue head/tail (qt - qh frames) */
    bool eof;      /* the server closed TCP (or reset it) */
};

static inline int tc_on_frame(struct kite_codec *c, const struct kite_frame *f, void *ud)
{
    struct tc *t = ud;
    (void)c;
    ASSERT(t->qt - t->qh < TC_QUEUE);
    struct tc_frame *q = &t->q[t->qt++ % TC_QUEUE];
    q->op = (uint8_t)f->opcode;
    q->fin = f->fin;
    q->len = f->len;
    q->data = malloc(f->len + 1);
    ASSERT(q->data != NULL);
    if (f->len)
        memcpy(q->data, f->data, f->len);
    q->data[f->len] = 0;
    return KITE_OK;
}

static const struct kite_codec_callbacks tc_callbacks = {.on_frame = tc_on_frame};

/* Write what the codec has queued. */
static inline void tc_flush(struct tc *t)
{
    const uint8_t *p;
    size_t n = kite_codec_pending(t->codec, &p);
    if (n) {
        kit_write_all(t->fd, p, n);
        kite_codec_consume(t->codec, n);
    }
}

static inline void tc_feed(struct tc *t, uint8_t *buf, size_t len)
{
    ssize_t r = kite_codec_recv(t->codec, buf, len, kit_now_ms());
    ASSERT(r >= 0);
}

/*
 * Open a WebSocket to `path` with optional extra header lines (each ending in \r\n).
 * Returns the client with t->status set: 101 means open; otherwise t->head holds the
 * response and t->fd is closed.
 */
static inline struct tc *tc_open(uint16_t port, const char *path, const char *extra)
{
    struct tc *t = calloc(1, sizeof(*t));
    ASSERT(t != NULL);
    t->fd = kit_connect(port);
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     path, (unsigned)port, extra ? extra : "");
    kit_write_all(t->fd, req, (size_t)n);
    size_t len = 0;
    char *end = NULL;
    while (!end && len + 1 < sizeof(t->head)) {
        ssize_t r = kit_read(t->fd, t->head + len, sizeof(t->head) - 1 - len, 3000);
        if (r <= 0)
            break;
        len += (size_t)r;
        t->head[len] = 0;
        end = strstr(t->head, "\r\n\r\n");
    }
    if (strncmp(t->head, "HTTP/1.1 ", 9) == 0)
        t->status = atoi(t->head + 9);
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.role = KITE_ROLE_CLIENT;
    cfg.mode = KITE_MODE_RAW;
    cfg.options.max_frame_size = 1ull << 40;
    cfg.options.max_message_size = 1ull << 40;
    t->codec = kite_codec_new(&cfg, &tc_callbacks, t, kit_now_ms());
    ASSERT(t->codec != NULL);
    if (t->status == 101 && end) {
        size_t hlen = (size_t)(end + 4 - t->head);
        if (len > hlen)
            tc_feed(t, (uint8_t *)t->head + hlen, len - hlen);
        end[2] = 0; /* keep just the head */
    }
    return t;
}

/* Like tc_open but requires the 101. */
static inline struct tc *tc_open_ok(uint16_t port, const char *path, const char *extra)
{
    struct tc *t = tc_open(port, path, extra);
    if (t->status != 101)
        kite_test_fail(__FILE__, __LINE__, "handshake to %s failed: %s", path, t->head);
    /* RFC 6455 §4.2.2: the accept for the key above is the RFC's own example. */
    ASSERT(strstr(t->head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != NULL);
    return t;
}

static inline void tc_free(struct tc *t)
{
    if (!t)
        return;
    while (t->qh < t->qt)
        free(t->q[t->qh++ % TC_QUEUE].data);
    kite_codec_free(t->codec);
    if (t->fd >= 0)
        close(t->fd);
    free(t);
}

/* Send one frame (masked by the codec, RFC 6455 §5.3). */
static inline void tc_send(struct tc *t, enum kite_opcode op, bool fin, const void *data,
                           size_t len)
{
    ASSERT_EQ(kite_codec_send_frame(t->codec, op, fin, 0, data, len), KITE_OK);
    tc_flush(t);
}

static inline void tc_text(struct tc *t, const char *s)
{
    tc_send(t, KITE_OP_TEXT, true, s, strlen(s));
}

/* Send a close frame with a code and reason. */
static inline void tc_close(struct tc *t, unsigned code, const char *reason)
{
    uint8_t p[125];
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2;
        size_t r = reason ? strlen(reason) : 0;
        if (r)
            memcpy(p + 2, reason, r);
        n += r;
    }
    tc_send(t, KITE_OP_CLOSE, true, p, n);
}

/*
 * Next frame from the server into *f (the caller frees f->data): 1, or 0 on timeout,
 * or -1 when the server closed TCP (t->eof) with no frame left.
 */
static inline int tc_next(struct tc *t, struct tc_frame *f, unsigned timeout_ms)
{
    uint64_t end = kit_now_ms() + timeout_ms;
    static uint8_t buf[1 << 16];
    while (t->qh == t->qt) {
        if (t->eof)
            return -1;
        uint64_t now = kit_now_ms();
        if (now >= end)
            return 0;
        ssize_t n = kit_read(t->fd, buf, sizeof(buf), (unsigned)(end - now));
        if (n == -1)
            return 0;
        if (n <= 0) {
            t->eof = true;
            continue;
        }
        tc_feed(t, buf, (size_t)n);
    }
    *f = t->q[t->qh++ % TC_QUEUE];
    return 1;
}

/* Expect a frame of type `op` with payload `data` (a NUL-terminated string). */
#define TC_EXPECT(t, opc, str)                                                                     \
    do {                                                                                           \
        struct tc_frame f_;                                                                        \
        int r_ = tc_next((t), &f_, 3000);                                                          \
        if (r_ != 1)                                                                               \
            kite_test_fail(__FILE__, __LINE__, "no frame (%s)", r_ ? "eof" : "timeout");           \
        if (f_.op != (opc) || f_.len != strlen(str) || memcmp(f_.data, (str), f_.len))             \
            kite_test_fail(__FILE__, __LINE__, "got op %u \"%.*s\", want op %u \"%s\"", f_.op,     \
                           (int)KITE_TEST_MIN(f_.len, 200), (char *)f_.data, (unsigned)(opc),      \
                           (str));                                                                 \
        free(f_.data);                                                                             \
    } while (0)

/* Expect a close frame; returns its code (1005 for none) and copies the reason. */
static inline unsigned tc_expect_close(struct tc *t, char *reason, size_t cap)
{
    struct tc_frame f;
    for (;;) {
        int r = tc_next(t, &f, 5000);
        if (r != 1)
            kite_test_fail(__FILE__, __LINE__, "no close frame (%s)", r ? "eof" : "timeout");
        if (f.op == KITE_OP_CLOSE)
            break;
        free(f.data); /* skip data and pings */
    }
    unsigned code = f.len >= 2 ? (unsigned)(f.data[0] << 8 | f.data[1]) : 1005;
    if (reason && cap) {
        size_t n = f.len > 2 ? KITE_TEST_MIN(f.len - 2, cap - 1) : 0;
        memcpy(reason, f.data + 2, n);
        reason[n] = 0;
    }
    free(f.data);
    return code;
}

/* Wait until the server closes TCP (RFC 6455 §7.1.1: the server closes first). */
static inline bool tc_wait_eof(struct tc *t, unsigned timeout_ms)
{
    struct tc_frame f;
    uint64_t end = kit_now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = kit_now_ms();
        if (now >= end)
            return false;
        int r = tc_next(t, &f, (unsigned)(end - now));
        if (r < 0)
            return true;
        if (r == 0)
            return false;
        free(f.data);
    }
}

/* ---- a scripted server app --------------------------------------------------------- *
 *
 * Echoes every message and logs events to the rec log. Text messages starting with
 * "cmd:" are commands run on the server:
 *   cmd:close CODE REASON   kite_session_close(CODE, REASON)
 *   cmd:terminate           kite_session_terminate()
 *   cmd:ping                kite_session_ping("srv")
 *   cmd:flood N SIZE        send N binary messages of SIZE bytes (kit_pattern); logs
 *                           the statuses and the queue at the first refusal
 *   cmd:order SIZE          a SIZE-byte message, "one", another, "two"; logs statuses
 *   cmd:big MS SIZE         sleep MS ms, send a SIZE-byte message, then another; logs
 *   cmd:sendafterclose      close 1000, then try to send; logs the status
 */

#define KIT_UNUSED __attribute__((unused))

static const char *kit_initiator(enum kite_close_initiator i)
{
    return i == KITE_CLOSED_BY_PEER ? "peer" : i == KITE_CLOSED_BY_LOCAL ? "local" : "none";
}

static KIT_UNUSED void tapp_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    struct kite_str path = kite_request_path(req), v;
    const char *proto = kite_request_subprotocol(req);
    rec_add("open %.*s", (int)path.len, path.ptr);
    if (kite_request_param(req, "room", &v))
        rec_add(" room=%.*s", (int)v.len, v.ptr);
    if (kite_request_query_param(req, "name", &v) && v.ptr)
        rec_add(" name=%.*s", (int)v.len, v.ptr);
    if (kite_request_header(req, "X-Test", &v))
        rec_add(" x-test=%.*s", (int)v.len, v.ptr);
    if (proto)
        rec_add(" proto=%s", proto);
    if (kite_session_subprotocol(s))
        rec_add(" sproto=%s", kite_session_subprotocol(s));
    char addr[80];
    if (kite_request_remote_addr(req, addr, sizeof(addr)) > 0 &&
        strncmp(addr, "127.0.0.1:", 10) == 0)
        rec_add(" from-loopback");
    rec_add(";");
}

/* Byte j of test message i: differs between neighbouring messages and along a message,
 * so a lost, repeated or reordered chunk shows. */
static inline uint8_t kit_pattern(unsigned i, size_t j)
{
    return (uint8_t)(i * 131u + j * 7u + (j >> 9));
}

static void kit_fill(uint8_t *buf, unsigned i, size_t size)
{
    for (size_t j = 0; j < size; j++)
        buf[j] = kit_pattern(i, j);
}

/* True if buf holds message i of the pattern. */
static KIT_UNUSED bool kit_check(const uint8_t *buf, unsigned i, size_t size)
{
    for (size_t j = 0; j < size; j++)
        if (buf[j] != kit_pattern(i, j))
            return false;
    return true;
}

static size_t kit_frame_size(size_t len)
{
    return len + (len < 126 ? 2 : len <= 0xffff ? 4 : 10); /* RFC 6455 §5.2, unmasked */
}

/*
 * Send message `i` (pattern above) and check what the send says against the queue
 * (session.h): a status of QUEUED exactly when the queue is at or over the high-water
 * mark; a message accepted while something was queued is queued whole behind it; one
 * accepted with nothing queued may be written during the call, leaving at most its own
 * frame queued; a refused one queues nothing (a 1008 close frame aside). Logs
 * "broken ...;" otherwise.
 */
static int kit_send_checked(struct kite_session *s, uint8_t *buf, unsigned i, size_t size)
{
    struct kite_send_limits l;
    kite_session_send_limits(s, &l);
    kit_fill(buf, i, size);
    size_t before = kite_session_buffered(s), q = 0;
    int rc = kite_session_send_binary(s, buf, size, &q);
    bool ok = true;
    if (rc == KITE_SEND_OK || rc == KITE_SEND_QUEUED)
        ok = q == kite_session_buffered(s) && (rc == KITE_SEND_QUEUED) == (q >= l.high_water) &&
             (before ? q == before + kit_frame_size(size) : q <= kit_frame_size(size));
    else if (rc == KITE_SEND_DROPPED)
        ok = q == before && kite_session_buffered(s) == before;
    if (!ok)
        rec_add("broken send %u rc=%d before=%zu q=%zu;", i, rc, before, q);
    return rc;
}

/* cmd:flood: also logs the queue before the first refused send ("refused-at Q;"). */
static void tapp_flood(struct kite_session *s, unsigned n, size_t size)
{
    uint8_t *buf = calloc(1, size ? size : 1);
    unsigned count[4] = {0, 0, 0, 0};
    for (unsigned i = 0; i < n; i++) {
        size_t before = kite_session_buffered(s);
        int rc = kit_send_checked(s, buf, i, size);
        if (rc >= 0 && rc <= 3)
            count[rc]++;
        if ((rc == KITE_SEND_DROPPED || rc == KITE_SEND_CLOSED) && count[rc] == 1)
            rec_add("refused-at %zu;", before);
    }
    free(buf);
    rec_add("flood ok=%u queued=%u dropped=%u closed=%u;", count[0], count[1], count[2], count[3]);
}

/* cmd:order: message 0 (SIZE bytes), text "one", message 1, text "two". */
static void tapp_order(struct kite_session *s, size_t size)
{
    uint8_t *buf = malloc(size);
    int a = kit_send_checked(s, buf, 0, size);
    int b = kite_session_send_text(s, "one", 3, NULL);
    int c = kit_send_checked(s, buf, 1, size);
    int d = kite_session_send_text(s, "two", 3, NULL);
    free(buf);
    rec_add("order %d %d %d %d;", a, b, c, d);
}

/* cmd:big: message 0 of SIZE bytes, after MS milliseconds of sleep on the loop (time
 * for the peer to do something first), then another; logs both statuses, the queue,
 * and whether the session is still open. */
static void tapp_big(struct kite_session *s, unsigned ms, size_t size)
{
    uint8_t *buf = malloc(size);
    kit_sleep_ms(ms);
    int a = kit_send_checked(s, buf, 0, size);
    size_t q = kite_session_buffered(s);
    int b = kite_session_send_binary(s, buf, size, NULL);
    free(buf);
    rec_add("big %d q=%zu open=%d again=%d;", a, q, (int)kite_session_is_open(s), b);
}

static KIT_UNUSED bool tapp_command(struct kite_session *s, const struct kite_msg *m)
{
    char cmd[256];
    if (m->type != KITE_OP_TEXT || m->len < 4 || m->len >= sizeof(cmd) ||
        memcmp(m->data, "cmd:", 4) != 0)
        return false;
    memcpy(cmd, m->data, m->len);
    cmd[m->len] = 0;
    unsigned a, b;
    char reason[128] = "";
    if (sscanf(cmd, "cmd:close %u %127[^\n]", &a, reason) >= 1) {
        rec_add("closecmd %d;", kite_session_close(s, a, reason));
    } else if (strcmp(cmd, "cmd:terminate") == 0) {
        kite_session_terminate(s);
        rec_add("terminated;");
    } else if (strcmp(cmd, "cmd:ping") == 0) {
        rec_add("ping %d;", kite_session_ping(s, "srv", 3));
    } else if (sscanf(cmd, "cmd:flood %u %u", &a, &b) == 2) {
        tapp_flood(s, a, b);
    } else if (sscanf(cmd, "cmd:order %u", &a) == 1) {
        tapp_order(s, a);
    } else if (sscanf(cmd, "cmd:big %u %u", &a, &b) == 2) {
        tapp_big(s, a, b);
    } else if (strcmp(cmd, "cmd:sendafterclose") == 0) {
        kite_session_close(s, KITE_CLOSE_NORMAL, NULL);
        rec_add("after-close send=%d open=%d;", kite_session_send_str(s, "late"),
                (int)kite_session_is_open(s));
    } else {
        return false;
    }
    return true;
}

static KIT_UNUSED void tapp_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    if (tapp_command(s, m))
        return;
    rec_add("msg %c %zu;", m->type == KITE_OP_TEXT ? 'T' : 'B', m->len);
    kite_session_send(s, m->type, m->data, m->len, NULL);
}

static KIT_UNUSED void tapp_drain(struct kite_session *s, void *ud)
{
    (void)ud;
    rec_add("drain %zu;", kite_session_buffered(s));
}

static KIT_UNUSED void tapp_error(struct kite_session *s, int err, void *ud)
{
    (void)s;
    (void)ud;
    rec_add("error %s;", kite_err_name(err));
}

static KIT_UNUSED void tapp_close(struct kite_session *s, const struct kite_close_info *ci,
                                  void *ud)
{
    (void)ud;
    const struct kite_close_info *same = kite_session_close_info(s);
    rec_add("close %u %s %s err=%s reason=%.*s%s;", (unsigned)ci->code,
            kit_initiator(ci->initiator), ci->clean ? "clean" : "unclean",
            ci->error ? kite_err_name(ci->error) : "0", (int)ci->reason_len, ci->reason,
            same && same->code == ci->code ? "" : " MISMATCH");
}

static const struct kite_ws_callbacks tapp_callbacks KIT_UNUSED = {
    .on_open = tapp_open,
    .on_message = tapp_message,
    .on_drain = tapp_drain,
    .on_error = tapp_error,
    .on_close = tapp_close,
};

#endif

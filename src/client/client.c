/*
 * The WebSocket client (include/kite/client.h): URL -> resolve -> connect -> TLS ->
 * upgrade request -> checked 101 -> a struct kite_session in the client role.
 *
 * A struct kite_client is one attempt. Its states run in order; each step is
 * non-blocking and driven by the loop (the fd watcher, one timer for the current
 * deadline, and the resolver's callback):
 *
 *   RESOLVING   kite__resolve_async (IP literals too, so every outcome is reported
 *               from the loop, never from inside kite_connect)
 *   CONNECTING  non-blocking connect to each address in turn; the first that answers
 *               wins. Resolve + connect share connect_timeout_ms.
 *   TLS         wss:// only: the transport's handshake, stepped on readiness
 *   HTTP        write the request, read and parse the response head, check it.
 *               TLS + HTTP share handshake_timeout_ms.
 *   OPEN        the transport now belongs to a session; the struct stays alive only
 *               because the session's cfg (callbacks, options) lives in it, and is
 *               freed by the session's on_free hook.
 *   DEAD        failed or cancelled; freed at the end of the iteration.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "client/client.h"

enum { C_RESOLVING, C_CONNECTING, C_TLS, C_HTTP, C_OPEN, C_DEAD };

static void client_io(struct kite_loop *loop, struct kite__io *io, uint32_t events);
static void client_timer(struct kite_loop *loop, struct kite__timer *t);
static void try_connect(struct kite_client *c);

void kite_client_options_init(struct kite_client_options *o)
{
    memset(o, 0, sizeof(*o));
    kite_ws_options_init(&o->ws);
    kite_send_limits_init(&o->send);
    o->mode = KITE_MODE_DEFAULT;
    o->connect_timeout_ms = 10000;
    o->handshake_timeout_ms = 10000;
    o->max_head_size = KITE_HTTP_DEFAULT_MAX_HEAD;
}

/* ---- memory ------------------------------------------------------------------------- */

static char *dup_n(const struct kite_allocator *a, const char *s, size_t n)
{
    char *d = kite__malloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Everything the handshake needed; the session needs none of it. */
static void release_handshake(struct kite_client *c)
{
    const struct kite_allocator *a = c->alloc;
    for (size_t i = 0; i < c->creq.num_protocols; i++)
        kite__free(a, (void *)c->protos[i].ptr);
    kite__free(a, c->protos);
    c->protos = NULL;
    c->creq.num_protocols = 0;
    for (size_t i = 0; i < c->creq.num_extra; i++) {
        kite__free(a, (void *)c->extra[i].name);
        kite__free(a, (void *)c->extra[i].value);
    }
    kite__free(a, c->extra);
    c->extra = NULL;
    c->creq.num_extra = 0;
    kite__free(a, c->origin);
    c->origin = NULL;
    kite__free(a, c->ext_offer);
    c->ext_offer = NULL;
    kite__free(a, c->target);
    c->target = NULL;
    kite__buf_free(&c->out, a);
    kite__buf_free(&c->in, a);
    kite__tls_client_ctx_free(c->tls);
    c->tls = NULL;
}

static void client_free(void *arg)
{
    struct kite_client *c = arg;
    release_handshake(c);
    kite__free(c->alloc, c->host);
    kite__free(c->alloc, c->url);
    kite__free(c->alloc, c);
}

static void client_free_task(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    client_free(arg);
}

/* Stop every watcher and close the socket (not once a session owns it). */
static void teardown(struct kite_client *c)
{
    if (c->res) {
        kite__resolve_cancel(c->res);
        c->res = NULL;
    }
    kite__io_stop(c->loop, &c->io);
    kite__timer_stop(c->loop, &c->timer);
    if (c->has_tp)
        kite__tp_close(&c->tp);
    else if (c->fd >= 0)
        close(c->fd);
    c->has_tp = false;
    c->fd = -1;
}

/* ---- failure -------------------------------------------------------------------------- */

static void report(struct kite_client *c, int code, int status, const char *msg)
{
    if (c->run) {
        c->run->rc = code;
        if (c->run->err && c->run->errlen)
            snprintf(c->run->err, c->run->errlen, "%s", msg);
        kite_loop_stop(c->loop);
    }
    if (c->on_connect_error) {
        struct kite_connect_error e = {code, status, msg};
        c->on_connect_error(c, &e, c->cfg.ud);
    }
}

/* The attempt failed: tear down, tell the user, free at the end of the iteration. */
static void fail(struct kite_client *c, int code, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct kite_client *c, int code, int status, const char *fmt, ...)
{
    if (c->state >= C_OPEN)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    teardown(c);
    c->state = C_DEAD;
    kite__loop_defer(c->loop, &c->free_task, client_free_task, c);
    report(c, code, status, msg);
}

/* A failure found inside kite_connect (a TLS context that cannot be made), reported
 * from the loop like every other outcome. */
static void late_fail_task(struct kite_loop *loop, void *arg)
{
    struct kite_client *c = arg;
    KITE_UNUSED(loop);
    if (c->state != C_DEAD)
        fail(c, c->late_code, 0, "%s", c->late_msg);
}

/* ---- opening the session ------------------------------------------------------------ */

static void session_destroyed(struct kite_session *s, void *owner)
{
    struct kite_client *c = owner;
    KITE_UNUSED(s);
    if (c->run)
        kite_loop_stop(c->loop);
}

/* Join every Sec-WebSocket-Extensions line with ", " for kite_ext_accept (RFC 9110
 * §5.3: repeated list headers are one list). */
static int joined_extensions(struct kite_client *c, const struct kite_http_response *resp,
                             struct kite_buf *b)
{
    const struct kite_http_header *h;
    size_t pos = 0;
    bool first = true;
    while ((h = kite__http_header_next(resp->headers, resp->num_headers,
                                       "Sec-WebSocket-Extensions", &pos)) != NULL) {
        if (!first && kite__buf_append(b, c->alloc, ", ", 2) < 0)
            return KITE_ERR_NOMEM;
        if (kite__buf_append(b, c->alloc, h->value, h->value_len) < 0)
            return KITE_ERR_NOMEM;
        first = false;
    }
    return KITE_OK;
}

/* Build the extension chain from the server's answer (NULL when none were offered). */
static int accept_extensions(struct kite_client *c, const struct kite_http_response *resp,
                             struct kite_ext_chain **chain)
{
    *chain = NULL;
    if (!c->extensions || !c->ext_offer)
        return KITE_OK;
    struct kite_buf b = {0};
    int rc = joined_extensions(c, resp, &b);
    if (rc == KITE_OK)
        rc = kite_ext_accept(c->extensions, (enum kite_mode)c->cfg.mode,
                             b.len ? (const char *)kite__buf_head(&b) : NULL, b.len, c->alloc,
                             chain);
    if (rc == KITE_ERR_HANDSHAKE)
        fail(c, rc, 101, "server's Sec-WebSocket-Extensions answer is not acceptable: %.*s",
             (int)KITE_MIN(b.len, 200), b.len ? (const char *)kite__buf_head(&b) : "");
    else if (rc < 0)
        fail(c, rc, 101, "cannot set up the negotiated extensions: %s", kite_strerror(rc));
    kite__buf_free(&b, c->alloc);
    return rc;
}

/* The 101 checked out: hand the transport to a session and open it. `rest` are the
 * bytes after the head (the server's first frames), in c->in. */
static void open_session(struct kite_client *c, const struct kite_http_response *resp,
                         struct kite_view proto, size_t head_len)
{
    struct kite_ext_chain *chain;
    if (accept_extensions(c, resp, &chain) < 0)
        return;
    struct kite_session *s;
    int rc = kite__session_new_ext(c->loop, &c->cfg, &c->tp, chain, &s);
    if (rc < 0) {
        kite_ext_chain_free(chain);
        fail(c, rc, 101, "cannot open the session: %s", kite_strerror(rc));
        return;
    }
    if (proto.ptr && kite__session_set_subprotocol(s, proto.ptr, proto.len) < 0) {
        kite__session_discard(s);
        fail(c, KITE_ERR_NOMEM, 101, "cannot open the session: out of memory");
        return;
    }
    /* The session owns the transport from here on. */
    kite__io_stop(c->loop, &c->io);
    kite__timer_stop(c->loop, &c->timer);
    c->has_tp = false;
    c->fd = -1;
    c->state = C_OPEN;
    struct kite_buf in = c->in;
    memset(&c->in, 0, sizeof(c->in));
    release_handshake(c);
    rc = kite__session_start(s, NULL, kite__buf_head(&in) + head_len, in.len - head_len);
    kite__buf_free(&in, c->alloc);
    if (rc < 0) {
        /* The session never opened (no callback ran) and is already torn down; c is
         * still valid until its deferred free at the end of this iteration. */
        char msg[128];
        snprintf(msg, sizeof(msg), "cannot watch the socket: %s", kite_strerror(rc));
        report(c, rc, 101, msg);
    }
}

/* ---- the upgrade response ----------------------------------------------------------- */

static void fail_check(struct kite_client *c, const struct kite_http_response *resp,
                       const struct kite_ws_client_result *res)
{
    const struct kite_http_header *h;
    switch (res->error) {
    case KITE_WS_CLIENT_STATUS:
        fail(c, KITE_ERR_HANDSHAKE, resp->status,
             "server answered %d %.*s instead of 101 Switching Protocols", resp->status,
             (int)KITE_MIN(resp->reason.len, 100), resp->reason.ptr);
        return;
    case KITE_WS_CLIENT_UPGRADE:
        fail(c, KITE_ERR_HANDSHAKE, 0, "server's 101 response lacks 'Upgrade: websocket'");
        return;
    case KITE_WS_CLIENT_CONNECTION:
        fail(c, KITE_ERR_HANDSHAKE, 0, "server's 101 response lacks 'Connection: Upgrade'");
        return;
    case KITE_WS_CLIENT_ACCEPT:
        fail(c, KITE_ERR_HANDSHAKE, 0, "Sec-WebSocket-Accept mismatch (%s)",
             kite__http_header_next(resp->headers, resp->num_headers, "Sec-WebSocket-Accept",
                                    NULL)
                 ? "the server's value is not the hash of our key"
                 : "the header is missing");
        return;
    case KITE_WS_CLIENT_EXTENSION:
        h = kite__http_header_next(resp->headers, resp->num_headers, "Sec-WebSocket-Extensions",
                                   NULL);
        fail(c, KITE_ERR_HANDSHAKE, 0, "server accepted an extension which was not offered: '%.*s'",
             h ? (int)KITE_MIN(h->value_len, 200) : 0, h ? h->value : "");
        return;
    case KITE_WS_CLIENT_PROTOCOL:
        h = kite__http_header_next(resp->headers, resp->num_headers, "Sec-WebSocket-Protocol",
                                   NULL);
        if (kite__http_header_count(resp->headers, resp->num_headers, "Sec-WebSocket-Protocol") >
                1 ||
            !kite__http_is_token(h->value, h->value_len))
            fail(c, KITE_ERR_HANDSHAKE, 0, "server must choose exactly one subprotocol, got '%.*s'",
                 (int)KITE_MIN(h->value_len, 200), h->value);
        else
            fail(c, KITE_ERR_HANDSHAKE, 0, "server chose subprotocol '%.*s' which was not offered",
                 (int)KITE_MIN(h->value_len, 200), h->value);
        return;
    default:
        fail(c, KITE_ERR_HANDSHAKE, 0, "server's answer is not a valid upgrade: %s",
             res->reason ? res->reason : "?");
    }
}

/* Try to parse a whole response head from c->in. */
static void parse_response(struct kite_client *c)
{
    struct kite_http_header hdrs[KITE_HTTP_DEFAULT_MAX_HEADERS];
    struct kite_http_limits lim = {c->max_head_size, KITE_HTTP_DEFAULT_MAX_HEADERS};
    struct kite_http_response resp;
    ssize_t h = kite__http_parse_response((const char *)kite__buf_head(&c->in), c->in.len,
                                          c->last_len, &lim, &resp, hdrs);
    if (h == KITE_INCOMPLETE) {
        c->last_len = c->in.len;
        return;
    }
    if (h == KITE_ERR_HEAD_TOO_BIG) {
        fail(c, KITE_ERR_HEAD_TOO_BIG, 0, "server's response head is over %u bytes or %u lines",
             (unsigned)c->max_head_size, (unsigned)KITE_HTTP_DEFAULT_MAX_HEADERS);
        return;
    }
    if (h < 0) {
        fail(c, KITE_ERR_HTTP, 0, "server's answer is not a valid HTTP/1.1 response%s",
             c->url_tls ? "" : " (is it a TLS port? try wss://)");
        return;
    }
    struct kite_ws_client_result res;
    if (kite__ws_client_check(&resp, &c->creq, c->key, &res) != KITE_OK) {
        fail_check(c, &resp, &res);
        return;
    }
    open_session(c, &resp, res.protocol, (size_t)h);
}

/* ---- I/O -------------------------------------------------------------------------------- */

static void watch(struct kite_client *c, uint32_t want)
{
    int rc = kite__io_start(c->loop, &c->io, kite__tp_want_events(&c->tp, want));
    if (rc < 0)
        fail(c, rc, 0, "cannot watch the socket: %s", kite_strerror(rc));
}

static void describe_tp_error(struct kite_client *c, int rc, const char *when)
{
    char why[KITE__TLS_ERRLEN];
    if (c->url_tls && kite__tls_last_error(&c->tp, why, sizeof(why)) != KITE_OK && why[0]) {
        fail(c, rc, 0, "%s", why);
        return;
    }
    if (rc == KITE_ERR_CLOSED)
        fail(c, rc, 0, "server closed the connection %s", when);
    else
        fail(c, rc, 0, "connection failed %s: %s", when, kite_strerror(rc));
}

static void http_read(struct kite_client *c)
{
    for (int i = 0; i < 16 && c->state == C_HTTP; i++) {
        uint8_t *p = kite__buf_reserve(&c->in, c->alloc, 4096);
        if (!p) {
            fail(c, KITE_ERR_NOMEM, 0, "out of memory reading the response");
            return;
        }
        ssize_t n = kite__tp_read(&c->tp, p, 4096);
        if (n == KITE_AGAIN)
            return;
        if (n <= 0) {
            describe_tp_error(c, n == 0 ? KITE_ERR_CLOSED : (int)n,
                              "before completing the WebSocket handshake");
            return;
        }
        c->in.len += (size_t)n;
        parse_response(c);
        if (c->state != C_HTTP || kite__tp_pending(&c->tp) == 0)
            return;
    }
}

static void http_write(struct kite_client *c)
{
    while (c->out.len) {
        ssize_t w = kite__tp_write(&c->tp, kite__buf_head(&c->out), c->out.len);
        if (w == KITE_AGAIN)
            return;
        if (w < 0) {
            describe_tp_error(c, (int)w, "while sending the upgrade request");
            return;
        }
        kite__buf_consume(&c->out, (size_t)w);
    }
}

static void http_step(struct kite_client *c, uint32_t events)
{
    /* Any readiness may unblock a TLS write (it can wait for the fd to be readable). */
    if (c->out.len)
        http_write(c);
    if (c->state == C_HTTP && (events & (KITE__IO_READ | KITE__IO_HUP | KITE__IO_ERROR)))
        http_read(c);
    if (c->state == C_HTTP)
        watch(c, KITE__IO_READ | (c->out.len ? KITE__IO_WRITE : 0));
}

static void start_http(struct kite_client *c)
{
    c->state = C_HTTP;
    http_write(c);
    /* A TLS transport may already hold bytes that came with the handshake. */
    if (c->state == C_HTTP && kite__tp_pending(&c->tp) > 0)
        http_read(c);
    if (c->state == C_HTTP)
        watch(c, KITE__IO_READ | (c->out.len ? KITE__IO_WRITE : 0));
}

static void tls_step(struct kite_client *c)
{
    int rc = kite__tp_handshake(&c->tp);
    if (rc == KITE_AGAIN) {
        watch(c, 0);
        return;
    }
    if (rc < 0) {
        describe_tp_error(c, rc, "during the TLS handshake");
        return;
    }
    start_http(c);
}

/* TCP is up: the handshake deadline starts; wrap in TLS for wss://. */
static void connected(struct kite_client *c)
{
    kite__timer_start(c->loop, &c->timer, c->handshake_timeout_ms);
    if (!c->url_tls) {
        kite__tcp_transport_init(&c->tp, c->fd);
        c->has_tp = true;
        start_http(c);
        return;
    }
    int rc = kite__tls_transport_init_client(&c->tp, c->tls, c->fd, c->host);
    if (rc < 0) {
        fail(c, rc, 0, "cannot start TLS for '%s': %s", c->host, kite_strerror(rc));
        return;
    }
    c->has_tp = true;
    c->state = C_TLS;
    tls_step(c);
}

static void connect_done(struct kite_client *c)
{
    int rc = kite__tcp_connect_result(c->fd);
    if (rc == KITE_OK) {
        connected(c);
        return;
    }
    kite__io_stop(c->loop, &c->io);
    close(c->fd);
    c->fd = -1;
    c->last_err = rc;
    c->iaddr++;
    try_connect(c);
}

static void client_io(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    struct kite_client *c = kite__container_of(io, struct kite_client, io);
    KITE_UNUSED(loop);
    switch (c->state) {
    case C_CONNECTING:
        connect_done(c);
        break;
    case C_TLS:
        tls_step(c);
        break;
    case C_HTTP:
        http_step(c, events);
        break;
    default:
        kite__io_stop(c->loop, &c->io);
    }
}

/* ---- connecting ------------------------------------------------------------------------- */

static void fail_connect(struct kite_client *c)
{
    char a[KITE__ADDRSTRLEN];
    kite__addr_format(&c->addrs[c->naddrs - 1], a, sizeof(a));
    if (c->naddrs == 1)
        fail(c, c->last_err, 0, "cannot connect to %s: %s", a, kite_strerror(c->last_err));
    else
        fail(c, c->last_err, 0, "cannot connect to %s (%zu addresses tried; last %s): %s",
             c->host, c->naddrs, a, kite_strerror(c->last_err));
}

/* Connect to addrs[iaddr], or the next one that does not fail at once. */
static void try_connect(struct kite_client *c)
{
    c->state = C_CONNECTING;
    for (; c->iaddr < c->naddrs; c->iaddr++) {
        int fd = -1;
        int rc = kite__tcp_connect(&c->addrs[c->iaddr], &fd);
        if (rc == KITE_OK || rc == KITE_AGAIN) {
            c->fd = fd;
            kite__io_init(&c->io, fd, client_io);
            if (rc == KITE_OK) {
                connected(c);
                return;
            }
            rc = kite__io_start(c->loop, &c->io, KITE__IO_WRITE);
            if (rc == KITE_OK)
                return;
            close(fd);
            c->fd = -1;
        }
        c->last_err = rc;
    }
    fail_connect(c);
}

static void resolved(struct kite_loop *loop, int status, const struct kite__addr *addrs, size_t n,
                     void *arg)
{
    struct kite_client *c = arg;
    KITE_UNUSED(loop);
    c->res = NULL;
    if (status < 0 || n == 0) {
        if (status == KITE_ERR_NOMEM)
            fail(c, status, 0, "out of memory resolving '%s'", c->host);
        else
            fail(c, KITE_ERR_RESOLVE, 0, "cannot resolve host '%s'", c->host);
        return;
    }
    n = KITE_MIN(n, KITE_ARRAY_LEN(c->addrs));
    memcpy(c->addrs, addrs, n * sizeof(*addrs));
    c->naddrs = n;
    c->iaddr = 0;
    try_connect(c);
}

static void client_timer(struct kite_loop *loop, struct kite__timer *t)
{
    struct kite_client *c = kite__container_of(t, struct kite_client, timer);
    KITE_UNUSED(loop);
    if (c->state == C_RESOLVING)
        fail(c, KITE_ERR_TIMEOUT, 0, "could not resolve '%s' within %u ms", c->host,
             (unsigned)c->connect_timeout_ms);
    else if (c->state == C_CONNECTING)
        fail(c, KITE_ERR_TIMEOUT, 0, "could not connect to %s port %u within %u ms", c->host,
             (unsigned)c->port, (unsigned)c->connect_timeout_ms);
    else if (c->state == C_TLS)
        fail(c, KITE_ERR_TIMEOUT, 0, "TLS handshake with %s did not complete within %u ms",
             c->host, (unsigned)c->handshake_timeout_ms);
    else
        fail(c, KITE_ERR_TIMEOUT, 0, "no WebSocket handshake answer from %s within %u ms",
             c->host, (unsigned)c->handshake_timeout_ms);
}

/* ---- kite_connect -------------------------------------------------------------------- */

/* Headers the handshake writes itself (RFC 6455 §4.1); the user may not add them. */
static bool reserved_header(const char *name)
{
    static const char *const names[] = {"Host", "Upgrade", "Connection", "Content-Length",
                                        "Transfer-Encoding", "Origin"};
    size_t n = strlen(name);
    for (size_t i = 0; i < KITE_ARRAY_LEN(names); i++)
        if (kite__ieq(name, n, names[i], strlen(names[i])))
            return true;
    return n >= 14 && kite__ieq(name, 14, "Sec-WebSocket-", 14);
}

static int copy_protocols(struct kite_client *c, const struct kite_client_options *o)
{
    if (o->num_protocols == 0)
        return KITE_OK;
    if (!o->protocols)
        return KITE_ERR_INVALID;
    c->protos = kite__calloc(c->alloc, o->num_protocols * sizeof(*c->protos));
    if (!c->protos)
        return KITE_ERR_NOMEM;
    for (size_t i = 0; i < o->num_protocols; i++) {
        const char *p = o->protocols[i];
        if (!p || !kite__http_is_token(p, strlen(p)))
            return KITE_ERR_INVALID;
        char *d = dup_n(c->alloc, p, strlen(p));
        if (!d)
            return KITE_ERR_NOMEM;
        c->protos[i] = (struct kite_view){d, strlen(d)};
        c->creq.num_protocols = i + 1;
    }
    c->creq.protocols = c->protos;
    return KITE_OK;
}

static int copy_headers(struct kite_client *c, const struct kite_client_options *o)
{
    if (o->num_headers == 0)
        return KITE_OK;
    if (!o->headers)
        return KITE_ERR_INVALID;
    c->extra = kite__calloc(c->alloc, o->num_headers * sizeof(*c->extra));
    if (!c->extra)
        return KITE_ERR_NOMEM;
    for (size_t i = 0; i < o->num_headers; i++) {
        const struct kite_header *h = &o->headers[i];
        if (!h->name || !h->value || reserved_header(h->name))
            return KITE_ERR_INVALID;
        struct kite_http_header *x = &c->extra[i];
        x->name = dup_n(c->alloc, h->name, strlen(h->name));
        x->value = dup_n(c->alloc, h->value, strlen(h->value));
        c->creq.num_extra = i + 1; /* counted even if half-made, so it is freed */
        if (!x->name || !x->value)
            return KITE_ERR_NOMEM;
        x->name_len = strlen(x->name);
        x->value_len = strlen(x->value);
        if (!kite__http_header_ok(x))
            return KITE_ERR_INVALID;
    }
    c->creq.extra = c->extra;
    return KITE_OK;
}

/* The extension offer string (kite_ext_offer, snprintf-style). */
static int make_offer(struct kite_client *c)
{
    if (!c->extensions)
        return KITE_OK;
    ssize_t n = kite_ext_offer(c->extensions, (enum kite_mode)c->cfg.mode, NULL, 0);
    if (n <= 0)
        return n < 0 ? (int)n : KITE_OK;
    c->ext_offer = kite__malloc(c->alloc, (size_t)n + 1);
    if (!c->ext_offer)
        return KITE_ERR_NOMEM;
    ssize_t m = kite_ext_offer(c->extensions, (enum kite_mode)c->cfg.mode, c->ext_offer,
                               (size_t)n + 1);
    if (m != n)
        return m < 0 ? (int)m : KITE_ERR_STATE;
    c->creq.extensions = (struct kite_view){c->ext_offer, (size_t)n};
    return KITE_OK;
}

/* URL pieces: the host (NUL-terminated, no brackets) and the request target. */
static int copy_url(struct kite_client *c, const char *url)
{
    c->url = dup_n(c->alloc, url, strlen(url));
    if (!c->url)
        return KITE_ERR_NOMEM;
    struct kite__url u;
    if (kite__url_parse(c->url, &u) != KITE_OK)
        return KITE_ERR_URL;
    c->url_tls = u.tls;
    c->port = u.port;
    c->host = dup_n(c->alloc, u.host.ptr, u.host.len);
    if (!c->host)
        return KITE_ERR_NOMEM;
    /* "ws://h?x" has an empty path: the request target is "/?x" (RFC 6455 §3). */
    bool slash = !u.target.ptr || u.target.ptr[0] == '?';
    size_t n = u.target.len + (slash ? 1 : 0);
    c->target = kite__malloc(c->alloc, n + 1);
    if (!c->target)
        return KITE_ERR_NOMEM;
    c->target[0] = '/';
    if (u.target.len)
        memcpy(c->target + (slash ? 1 : 0), u.target.ptr, u.target.len);
    c->target[n] = '\0';
    c->creq.host = (struct kite_view){u.host.ptr, u.host.len};
    c->creq.port = u.default_port ? 0 : u.port;
    c->creq.path = (struct kite_view){c->target, n};
    return KITE_OK;
}

static bool options_ok(const struct kite_client_options *o, const struct kite_ws_callbacks *cb)
{
    return o->ws.timeout_ms > 0 && o->ws.max_frame_size > 0 && o->ws.max_message_size > 0 &&
           o->connect_timeout_ms > 0 && o->handshake_timeout_ms > 0 && o->max_head_size >= 64 &&
           o->send.high_water <= o->send.hard_limit &&
           (o->mode == KITE_MODE_DEFAULT || (o->mode == KITE_MODE_RAW && cb->on_frame));
}

static void setup_cfg(struct kite_client *c, const struct kite_client_options *o,
                      const struct kite_ws_callbacks *cb, void *ud)
{
    c->ws = o->ws;
    c->ws.masking = true;
    c->send = o->send;
    c->cfg.cb = *cb;
    c->cfg.ud = ud;
    c->cfg.ws = &c->ws;
    c->cfg.send = &c->send;
    c->cfg.alloc = c->alloc;
    c->cfg.mode = (uint8_t)o->mode;
    c->cfg.role = KITE_ROLE_CLIENT;
    c->cfg.on_destroy = session_destroyed;
    c->cfg.owner = c;
    c->cfg.on_free = client_free;
}

/* Copy everything and build the request bytes (which validates them). */
static int prepare(struct kite_client *c, const char *url, const struct kite_client_options *o)
{
    int rc = copy_url(c, url);
    if (rc == KITE_OK)
        rc = copy_protocols(c, o);
    if (rc == KITE_OK)
        rc = copy_headers(c, o);
    if (rc == KITE_OK && o->origin) {
        c->origin = dup_n(c->alloc, o->origin, strlen(o->origin));
        rc = c->origin ? KITE_OK : KITE_ERR_NOMEM;
        if (c->origin)
            c->creq.origin = kite__view_cstr(c->origin);
    }
    if (rc == KITE_OK)
        rc = make_offer(c);
    if (rc == KITE_OK)
        rc = kite__ws_make_key(c->key);
    if (rc == KITE_OK)
        rc = kite__ws_write_request(&c->out, c->alloc, &c->creq, c->key);
    return rc;
}

/* wss://: the trust context. A failure (an unreadable CA file) is reported from the
 * loop with the TLS layer's message. */
static void make_tls(struct kite_client *c, const struct kite_client_options *o)
{
    if (!c->url_tls)
        return;
    char err[KITE__TLS_ERRLEN] = "";
    int rc = kite__tls_client_ctx_new(o->tls, c->alloc, &c->tls, err, sizeof(err));
    if (rc < 0) {
        c->late_code = rc;
        snprintf(c->late_msg, sizeof(c->late_msg), "TLS setup failed: %s",
                 err[0] ? err : kite_strerror(rc));
    }
}

int kite_connect(struct kite_loop *loop, const char *url, const struct kite_client_options *o,
                 const struct kite_ws_callbacks *cb, void *ud, struct kite_client **out)
{
    struct kite_client_options def;
    if (out)
        *out = NULL;
    if (!o) {
        kite_client_options_init(&def);
        o = &def;
    }
    if (!loop || !url || !cb || !options_ok(o, cb))
        return KITE_ERR_INVALID;
    struct kite_client *c = kite__calloc(o->allocator, sizeof(*c));
    if (!c)
        return KITE_ERR_NOMEM;
    c->loop = loop;
    c->alloc = o->allocator;
    c->fd = -1;
    c->extensions = o->extensions;
    c->on_connect_error = o->on_connect_error;
    c->connect_timeout_ms = o->connect_timeout_ms;
    c->handshake_timeout_ms = o->handshake_timeout_ms;
    c->max_head_size = o->max_head_size;
    setup_cfg(c, o, cb, ud);
    kite__timer_init(&c->timer, client_timer);
    kite__io_init(&c->io, -1, client_io);
    int rc = prepare(c, url, o);
    if (rc < 0) {
        client_free(c);
        return rc;
    }
    make_tls(c, o);
    c->state = C_RESOLVING;
    if (c->late_code == 0) {
        rc = kite__resolve_async(loop, c->host, c->port, resolved, c, &c->res);
        if (rc < 0) {
            c->late_code = rc;
            snprintf(c->late_msg, sizeof(c->late_msg), "cannot resolve '%s': %s", c->host,
                     kite_strerror(rc));
        }
    }
    if (c->late_code)
        kite__loop_defer(loop, &c->late_task, late_fail_task, c);
    else
        kite__timer_start(loop, &c->timer, c->connect_timeout_ms);
    if (out)
        *out = c;
    return KITE_OK;
}

void kite_client_cancel(struct kite_client *c)
{
    if (!c || c->state >= C_OPEN)
        return;
    teardown(c);
    c->state = C_DEAD;
    kite__loop_defer(c->loop, &c->free_task, client_free_task, c);
}

const char *kite_client_url(const struct kite_client *c)
{
    return c->url;
}

/* ---- kite_client_run ------------------------------------------------------------------- */

int kite_client_run(const char *url, const struct kite_client_options *o,
                    const struct kite_ws_callbacks *cb, void *ud, char *err, size_t errlen)
{
    struct kite__client_run run = {KITE_OK, err, errlen};
    if (err && errlen)
        err[0] = '\0';
    struct kite_loop *loop;
    int rc = kite_loop_new(o ? o->allocator : NULL, &loop);
    if (rc < 0)
        return rc;
    struct kite_client *c;
    rc = kite_connect(loop, url, o, cb, ud, &c);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", rc == KITE_ERR_URL ? "bad URL" : "cannot connect",
                     kite_strerror(rc));
        kite_loop_free(loop);
        return rc;
    }
    c->run = &run;
    rc = kite_loop_run(loop);
    kite_loop_free(loop);
    /* permessage-deflate's idle zlib streams for this thread came from o->allocator,
     * which the caller may free as soon as we return. */
    kite_pmd_pool_trim();
    return rc < 0 ? rc : run.rc;
}

/*
 * HTTP connections: request heads, plain responses with keep-alive, limits, and the
 * WebSocket upgrade that hands the connection to a session (server.h).
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "codec/conn_internal.h" /* kite__ext_negotiate_headers */
#include "server/server.h"

enum {
    H_CLOSE_AFTER = 1u << 0, /* close once the output is written */
    H_WRITE_WAIT = 1u << 1,  /* the kernel is full: waiting for KITE__IO_WRITE */
    H_LINGER = 1u << 2,      /* output done, half-closed, waiting for the peer's EOF */
    H_DEAD = 1u << 3,        /* torn down; freed at the end of the iteration */
    H_UPGRADED = 1u << 4,    /* the transport now belongs to a session */
    H_TLS_HS = 1u << 5,      /* the TLS handshake is still running */
};

static void hc_io(struct kite_loop *loop, struct kite__io *io, uint32_t events);
static void hc_timer(struct kite_loop *loop, struct kite__timer *t);
static void hc_finish(struct kite__hconn *hc);

/* ---- lifecycle -------------------------------------------------------------------- */

/* The answer to a connection over max_connections: best effort, one non-blocking send,
 * then close. Cheaper for both sides than a client retrying into a silent socket. */
static void refuse(int fd)
{
    static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Length: 20\r\nRetry-After: 1\r\n"
                               "Connection: close\r\n\r\ntoo many connections";
    ssize_t n = send(fd, resp, sizeof(resp) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    KITE_UNUSED(n);
    close(fd);
}

/* Make the connection's transport: plain TCP, or the server side of TLS. */
static int hc_transport(struct kite__hconn *hc, int fd, struct kite_tls_server_ctx *tls)
{
    if (!tls) {
        kite__tcp_transport_init(&hc->tp, fd);
        return KITE_OK;
    }
    int rc = kite__tls_transport_init_server(&hc->tp, tls, fd);
    if (rc == KITE_OK) {
        hc->tls = true;
        hc->flags |= H_TLS_HS;
    }
    return rc;
}

void kite__hconn_accept(struct kite_app *app, int fd, const struct kite__addr *peer,
                        struct kite_tls_server_ctx *tls)
{
    char a[KITE__ADDRSTRLEN];
    if (app->state != KITE__APP_RUNNING) {
        close(fd);
        return;
    }
    if (app->nconns >= app->max_conns) {
        if (kite__app_log_on(app, KITE_LOG_WARN)) {
            kite__addr_format(peer, a, sizeof(a));
            kite__app_log(app, KITE_LOG_WARN, "%s: refused (503): %zu connections", a, app->nconns);
        }
        if (tls)
            close(fd); /* a plain-text 503 means nothing to a TLS client */
        else
            refuse(fd);
        return;
    }
    struct kite__hconn *hc = kite__calloc(app->alloc, sizeof(*hc));
    if (hc && !(hc->s = kite__session_reserve(app->alloc, hc))) {
        kite__free(app->alloc, hc);
        hc = NULL;
    }
    if (!hc) {
        kite__app_log(app, KITE_LOG_ERROR, "out of memory accepting a connection");
        close(fd);
        return;
    }
    hc->app = app;
    hc->peer = *peer;
    if (hc_transport(hc, fd, tls) < 0) {
        kite__app_log(app, KITE_LOG_ERROR, "out of memory accepting a connection");
        close(fd);
        kite__session_unreserve(hc->s, app->alloc);
        kite__free(app->alloc, hc);
        return;
    }
    kite__io_init(&hc->s->io, fd, hc_io);
    kite__timer_init(&hc->timer, hc_timer);
    /* The handshake deadline covers TLS too: a client that stalls it is dropped. */
    int rc = kite__io_start(app->loop, &hc->s->io, kite__tp_want_events(&hc->tp, KITE__IO_READ));
    if (rc < 0) {
        kite__tp_close(&hc->tp);
        kite__session_unreserve(hc->s, app->alloc);
        kite__free(app->alloc, hc);
        return;
    }
    kite__timer_start(app->loop, &hc->timer, app->opt.handshake_timeout_ms);
    hc->next = app->hconns;
    if (app->hconns)
        app->hconns->prev = hc;
    app->hconns = hc;
    app->nconns++;
}

static void hc_free(struct kite_loop *loop, void *arg)
{
    struct kite__hconn *hc = arg;
    KITE_UNUSED(loop);
    kite__buf_free(&hc->in, hc->app->alloc);
    kite__buf_free(&hc->out, hc->app->alloc);
    kite__session_unreserve(hc->s, hc->app->alloc); /* NULL once a session took it */
    kite__free(hc->app->alloc, hc);
}

/* Detach and free at the end of the iteration. The transport is closed unless a
 * session took it over. */
static void hc_destroy(struct kite__hconn *hc)
{
    if (hc->flags & H_DEAD)
        return;
    struct kite_app *app = hc->app;
    hc->flags |= H_DEAD;
    if (hc->s) { /* else the watcher went with the block to the session */
        kite__io_close(app->loop, &hc->s->io); /* the fd is closed just below */
        kite__io_flush_cancel(app->loop, &hc->s->io);
    }
    kite__timer_stop(app->loop, &hc->timer);
    if (!(hc->flags & H_UPGRADED))
        kite__tp_close(&hc->tp);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        app->hconns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    kite__loop_defer(app->loop, &hc->free_task, hc_free, hc);
    if (!(hc->flags & H_UPGRADED))
        kite__app_conn_gone(app); /* an upgraded one lives on as a session */
}

void kite__hconn_close(struct kite__hconn *hc)
{
    hc_destroy(hc);
}

/* ---- output ------------------------------------------------------------------------- */

static void hc_write(struct kite__hconn *hc)
{
    if (hc->out.len == 0 || (hc->flags & H_DEAD))
        return;
    ssize_t w = kite__tp_write(&hc->tp, kite__buf_head(&hc->out), hc->out.len);
    if (w == KITE_AGAIN) {
        hc->flags |= H_WRITE_WAIT;
        return;
    }
    if (w < 0) {
        hc_destroy(hc);
        return;
    }
    kite__buf_consume(&hc->out, (size_t)w);
    if (hc->out.len)
        hc->flags |= H_WRITE_WAIT;
    else
        hc->flags &= ~(uint32_t)H_WRITE_WAIT;
}

/* The before-sleep write of the responses queued in this iteration (KITE__IO_FLUSH). */
static void hc_flush(struct kite__hconn *hc)
{
    hc_write(hc);
    hc_finish(hc);
}

/* Append a response head (and body unless `head_only`). Extra headers are trusted
 * (built here) or checked by the caller. */
static int put_response(struct kite__hconn *hc, int status, const char *ctype,
                        const struct kite_http_header *extra, size_t nextra, const void *body,
                        size_t len, bool head_only)
{
    char line[256];
    const struct kite_allocator *a = hc->app->alloc;
    bool close_after = (hc->flags & H_CLOSE_AFTER) != 0;
    int n =
        snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, kite__http_status_text(status));
    int rc = kite__buf_append(&hc->out, a, line, (size_t)n);
    if (rc == KITE_OK && ctype) {
        n = snprintf(line, sizeof(line), "Content-Type: %s\r\n", ctype);
        rc = n > 0 && (size_t)n < sizeof(line) ? kite__buf_append(&hc->out, a, line, (size_t)n)
                                               : KITE_ERR_INVALID;
    }
    if (rc == KITE_OK)
        rc = kite__http_append_headers(&hc->out, a, extra, nextra);
    if (rc == KITE_OK) {
        n = snprintf(line, sizeof(line), "Content-Length: %zu\r\nConnection: %s\r\n\r\n", len,
                     close_after ? "close" : "keep-alive");
        rc = kite__buf_append(&hc->out, a, line, (size_t)n);
    }
    if (rc == KITE_OK && !head_only)
        rc = kite__buf_append(&hc->out, a, body, len);
    if (rc == KITE_OK)
        kite__io_flush(hc->app->loop, &hc->s->io);
    return rc;
}

/* An error answer: text body "<status> <reason>\n" plus `why`, and the connection
 * closes after it unless `keep` (404/405 on a plain request may keep it). */
static void respond_error(struct kite__hconn *hc, int status, const char *why,
                          const struct kite_http_header *extra, size_t nextra, bool keep)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "%d %s%s%s\n", status, kite__http_status_text(status),
                     why ? ": " : "", why ? why : "");
    if (n < 0 || (size_t)n >= sizeof(body))
        n = (int)sizeof(body) - 1;
    if (!keep)
        hc->flags |= H_CLOSE_AFTER;
    if (put_response(hc, status, "text/plain; charset=utf-8", extra, nextra, body, (size_t)n,
                     false) < 0)
        hc_destroy(hc);
}

/* ---- the request deadline and linger ------------------------------------------------ */

static void hc_timer(struct kite_loop *loop, struct kite__timer *t)
{
    struct kite__hconn *hc = kite__container_of(t, struct kite__hconn, timer);
    KITE_UNUSED(loop);
    if (!(hc->flags & H_LINGER) && kite__app_log_on(hc->app, KITE_LOG_WARN)) {
        char a[KITE__ADDRSTRLEN];
        kite__addr_format(&hc->peer, a, sizeof(a));
        kite__app_log(hc->app, KITE_LOG_WARN, "%s: %s after %u ms: dropped", a,
                      hc->in.len ? "request head too slow" : "idle",
                      (unsigned)hc->app->opt.handshake_timeout_ms);
    }
    hc_destroy(hc);
}

/* Output written and the connection must close: half-close and wait briefly for the
 * client's EOF so our answer is not wiped by a reset caused by unread input. */
static void start_linger(struct kite__hconn *hc)
{
    hc->flags |= H_LINGER;
    (void)kite__tp_shutdown(&hc->tp);
    kite__buf_free(&hc->in, hc->app->alloc);
    kite__timer_start(hc->app->loop, &hc->timer, KITE__HCONN_LINGER_MS);
}

static void hc_finish(struct kite__hconn *hc)
{
    if (hc->flags & (H_DEAD | H_UPGRADED | H_TLS_HS))
        return;
    if ((hc->flags & H_CLOSE_AFTER) && hc->out.len == 0 && !(hc->flags & H_LINGER))
        start_linger(hc);
    uint32_t ev = 0;
    if ((hc->flags & H_LINGER) ||
        (!(hc->flags & H_CLOSE_AFTER) && hc->out.len < KITE__HCONN_OUT_HIGH))
        ev |= KITE__IO_READ;
    if (hc->flags & H_WRITE_WAIT)
        ev |= KITE__IO_WRITE;
    if (kite__io_start(hc->app->loop, &hc->s->io, kite__tp_want_events(&hc->tp, ev)) < 0)
        hc_destroy(hc);
}

/* ---- plain requests ----------------------------------------------------------------- */

/* Does the request carry a body we would have to skip? (We take none.) */
static bool has_body(const struct kite_http_request *req)
{
    const struct kite_http_header *h =
        kite__http_header_next(req->headers, req->num_headers, "Content-Length", NULL);
    if (h && !(h->value_len == 1 && h->value[0] == '0'))
        return true;
    return kite__http_header_next(req->headers, req->num_headers, "Transfer-Encoding", NULL) !=
           NULL;
}

/* RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive". */
static bool wants_keepalive(const struct kite_http_request *req)
{
    const struct kite_http_header *h = req->headers;
    size_t n = req->num_headers;
    if (req->version_minor == 0)
        return kite__http_has_token(h, n, "Connection", "keep-alive");
    return !kite__http_has_token(h, n, "Connection", "close");
}

static bool response_ok(const struct kite_response *res)
{
    if (res->status < 100 || res->status > 599 || (!res->body && res->body_len))
        return false;
    if (res->content_type) {
        for (const char *p = res->content_type; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return false;
    }
    return res->num_headers == 0 || res->headers;
}

static void serve_plain(struct kite__hconn *hc, const struct kite_route *route,
                        const struct kite_request *kreq)
{
    struct kite_response res = {200, "text/plain; charset=utf-8", NULL, 0, NULL, 0};
    route->handler(kreq, &res, route->ud);
    bool head = kreq->http->method.len == 4; /* the router lets only GET and HEAD here */
    struct kite_http_header extra[16];
    size_t n = 0;
    bool ok = response_ok(&res) && res.num_headers <= KITE_ARRAY_LEN(extra);
    for (size_t i = 0; ok && i < res.num_headers; i++) {
        const struct kite_header *h = &res.headers[i];
        extra[n] = (struct kite_http_header){h->name, h->name ? strlen(h->name) : 0, h->value,
                                             h->value ? strlen(h->value) : 0};
        ok = h->name && h->value && kite__http_header_ok(&extra[n]);
        n++;
    }
    if (!ok) {
        kite__app_log(hc->app, KITE_LOG_ERROR, "handler for %.*s gave an invalid response",
                      (int)kreq->path.len, kreq->path.ptr);
        respond_error(hc, 500, "invalid response", NULL, 0, true);
        return;
    }
    if (put_response(hc, res.status, res.content_type, extra, n, res.body, res.body_len, head) < 0)
        hc_destroy(hc);
}

/* ---- upgrade ------------------------------------------------------------------------ */

static bool origin_allowed(const struct kite_app *app, struct kite_view origin)
{
    const char *const *list = app->opt.allowed_origins;
    if (!list || !origin.ptr)
        return true; /* no list, or not a browser: Origin only guards browsers (§10.2) */
    for (; *list; list++)
        if (kite__ieq(*list, strlen(*list), origin.ptr, origin.len))
            return true;
    return false;
}

/*
 * Pick the subprotocol (RFC 6455 §4.2.2 item 5.4 /subprotocol/): the route's required
 * one if offered, or the selector's choice, or none. Returns 0 with *chosen (ptr NULL
 * for none), or 400 with *why set.
 */
static int choose_protocol(const struct kite_route *r, const struct kite_request *kreq,
                           struct kite_view *chosen, const char **why)
{
    struct kite_str p;
    chosen->ptr = NULL;
    chosen->len = 0;
    if (r->protocol) {
        size_t want = strlen(r->protocol);
        for (size_t i = 0; kite_request_protocol_at(kreq, i, &p); i++) {
            if (p.len == want && memcmp(p.ptr, r->protocol, want) == 0) {
                chosen->ptr = r->protocol;
                chosen->len = want;
                return 0;
            }
        }
        *why = "required subprotocol not offered";
        return 400;
    }
    if (!r->select)
        return 0;
    int idx = r->select(kreq, r->scfg.ud);
    if (idx == -1)
        return 0;
    if (idx < 0 || !kite_request_protocol_at(kreq, (size_t)idx, &p)) {
        *why = "no acceptable subprotocol";
        return 400;
    }
    chosen->ptr = p.ptr;
    chosen->len = p.len;
    return 0;
}

/* Log a refused handshake at INFO: these are the client's mistakes, not ours. */
static void log_reject(struct kite__hconn *hc, const struct kite_request *kreq, int status,
                       const char *why)
{
    if (!kite__app_log_on(hc->app, KITE_LOG_INFO))
        return;
    char a[KITE__ADDRSTRLEN];
    kite__addr_format(&hc->peer, a, sizeof(a));
    kite__app_log(hc->app, KITE_LOG_INFO, "%s: %d %.*s %.*s%s%s", a, status,
                  (int)kreq->http->method.len, kreq->http->method.ptr, (int)kreq->path.len,
                  kreq->path.ptr, why ? ": " : "", why ? why : "");
}

/* Hand the transport to a new session, made in the block reserved at accept around the
 * fd's watcher, and open it. `rest` are the bytes after the head (the first frames, if
 * the client did not wait for the 101). `ch` (the negotiated extensions, or NULL) goes
 * to the session, or is freed here on failure. */
static void become_session(struct kite__hconn *hc, struct kite_route *route,
                           struct kite_request *kreq, struct kite_view proto,
                           struct kite_ext_chain *ch, uint8_t *rest, size_t rest_len)
{
    struct kite_app *app = hc->app;
    struct kite_session *s = hc->s;
    /* Our queued flush (responses before this request) is done: the 101 went out
     * directly and what the kernel did not take becomes the session's prefix. */
    kite__io_flush_cancel(app->loop, &s->io);
    /* The route's allocator is the app's (server.c), the one the block came from. */
    int rc = kite__session_new_in(s, app->loop, &route->scfg, &hc->tp, ch);
    if (rc < 0) {
        kite_ext_chain_free(ch); /* still ours when the session was not made */
        kite__app_log(app, KITE_LOG_ERROR, "cannot open a session: %s", kite_strerror(rc));
        hc_destroy(hc);
        return;
    }
    hc->s = NULL; /* the block, its watcher and the fd's registration are the session's */
    if (proto.ptr)
        rc = kite__session_set_subprotocol(s, proto.ptr, proto.len);
    if (rc == KITE_OK)
        rc = kite__session_set_prefix(s, &hc->out); /* what the kernel did not take */
    if (rc < 0) {
        kite__app_log(app, KITE_LOG_ERROR, "cannot open a session: %s", kite_strerror(rc));
        kite__io_close(app->loop, &s->io); /* hc_destroy closes the fd */
        kite__io_flush_cancel(app->loop, &s->io);
        kite__session_discard(s); /* frees the chain with the codec, and the block */
        hc_destroy(hc);
        return;
    }
    kreq->subprotocol = kite_session_subprotocol(s);
    hc->flags |= H_UPGRADED; /* hc_destroy leaves the transport, now the session's, open */
    hc_destroy(hc);
    kite__app_session_add(app, s);
    kite__session_start(s, kreq, rest, rest_len);
}

/*
 * Extensions (RFC 6455 §9.1): each one the route's registry holds, in install order,
 * picks among the client's offers of it. Returns 0 with *ch (NULL: none agreed), or
 * 400/500 with *why. A registry that does not apply (none, or a raw route without raw
 * negotiation) is not consulted: the header was checked for §9.1 syntax already.
 */
static int negotiate_extensions(struct kite__hconn *hc, const struct kite_route *r,
                                const struct kite_request *kreq, struct kite_ext_chain **ch,
                                const char **why)
{
    const struct kite_ext_list *l = kite__route_extensions(r);
    enum kite_mode mode = (enum kite_mode)r->scfg.mode;
    *ch = NULL;
    if (kite_ext_list_count(l) == 0 || (mode == KITE_MODE_RAW && !kite_ext_list_raw_negotiation(l)))
        return 0;
    int rc = kite__ext_negotiate_headers(l, mode, kreq->http->headers, kreq->http->num_headers,
                                         hc->app->alloc, ch);
    if (rc == KITE_OK)
        return 0;
    if (rc == KITE_ERR_HANDSHAKE) {
        *why = "invalid Sec-WebSocket-Extensions";
        return 400;
    }
    kite__app_log(hc->app, KITE_LOG_ERROR, "cannot set up extensions: %s", kite_strerror(rc));
    *why = "cannot set up extensions";
    return 500;
}

/* Log what was agreed, at DEBUG. */
static void log_extensions(struct kite__hconn *hc, const struct kite_ext_chain *ch)
{
    if (!ch || !kite__app_log_on(hc->app, KITE_LOG_DEBUG))
        return;
    char a[KITE__ADDRSTRLEN];
    size_t n;
    const char *v = kite_ext_chain_header(ch, &n);
    kite__addr_format(&hc->peer, a, sizeof(a));
    kite__app_log(hc->app, KITE_LOG_DEBUG, "%s: extensions: %.*s", a, (int)n, v);
}

static void upgrade(struct kite__hconn *hc, struct kite_route *route, struct kite_request *kreq,
                    uint8_t *rest, size_t rest_len)
{
    struct kite_app *app = hc->app;
    struct kite_ws_upgrade up;
    const char *why = NULL;
    int status = 0;
    if (kite__ws_server_check(kreq->http, &up) != KITE_OK) {
        status = up.status;
        why = up.reason;
    } else if (!origin_allowed(app, up.origin)) {
        status = 403;
        why = "origin not allowed";
    }
    struct kite_view proto = {NULL, 0};
    struct kite_ext_chain *ch = NULL;
    if (!status)
        status = choose_protocol(route, kreq, &proto, &why);
    if (!status)
        status = negotiate_extensions(hc, route, kreq, &ch, &why);
    if (status) {
        log_reject(hc, kreq, status, why);
        hc->flags |= H_CLOSE_AFTER;
        if (status == 426 || status == 405) {
            if (kite__ws_write_reject(&hc->out, app->alloc, &up) < 0)
                hc_destroy(hc);
            else
                kite__io_flush(app->loop, &hc->s->io);
        } else {
            respond_error(hc, status, why, NULL, 0, false);
        }
        return;
    }
    size_t elen;
    const char *ev = kite_ext_chain_header(ch, &elen);
    struct kite_view exts = {ch ? ev : NULL, elen};
    log_extensions(hc, ch);
    if (kite__ws_write_accept(&hc->out, app->alloc, up.key, proto, exts, NULL, 0) < 0) {
        kite_ext_chain_free(ch);
        hc_destroy(hc);
        return;
    }
    /* Write the 101 now rather than at the end of the iteration: the session's first
     * frames must follow it, and they live in another buffer. */
    hc_write(hc);
    if (hc->flags & H_DEAD) {
        kite_ext_chain_free(ch);
        return;
    }
    become_session(hc, route, kreq, proto, ch, rest, rest_len);
}

/* ---- request dispatch ------------------------------------------------------------------ */

/* One whole request head at buf[0..head_len); `rest` follows it. Returns false when the
 * connection is done with requests (upgraded, closing, or dead). */
static bool handle_request(struct kite__hconn *hc, const struct kite_http_request *req,
                           uint8_t *rest, size_t rest_len)
{
    struct kite_app *app = hc->app;
    struct kite_request kreq;
    struct kite__route_match m;
    memset(&kreq, 0, sizeof(kreq));
    kreq.http = req;
    kreq.peer = &hc->peer;
    kreq.tp = &hc->tp;
    kreq.match = &m;
    if (kite__http_split_target(req->target, &kreq.path, &kreq.query) != KITE_OK) {
        respond_error(hc, 400, "bad request target", NULL, 0, false);
        return false;
    }
    bool upgrade_req = kite__http_has_token(req->headers, req->num_headers, "Upgrade", "websocket");
    int status = kite__router_resolve(&app->router, req->method.ptr, req->method.len, kreq.path.ptr,
                                      kreq.path.len, upgrade_req, &m);
    bool keep = !upgrade_req && wants_keepalive(req) && !has_body(req);
    if (!keep)
        hc->flags |= H_CLOSE_AFTER;
    if (kite__app_log_on(app, KITE_LOG_DEBUG)) {
        char a[KITE__ADDRSTRLEN];
        kite__addr_format(&hc->peer, a, sizeof(a));
        kite__app_log(app, KITE_LOG_DEBUG, "%s: %.*s %.*s -> %d", a, (int)req->method.len,
                      req->method.ptr, (int)req->target.len, req->target.ptr,
                      status ? status : (upgrade_req ? 101 : 200));
    }
    if (status == 405) {
        struct kite_http_header allow = {"Allow", 5, m.allow, strlen(m.allow)};
        respond_error(hc, 405, NULL, &allow, 1, keep);
    } else if (status == 426) {
        struct kite_http_header h[2] = {{"Upgrade", 7, "websocket", 9},
                                        {"Sec-WebSocket-Version", 21, "13", 2}};
        respond_error(hc, 426, "this path takes WebSocket connections", h, 2, keep);
    } else if (status) {
        respond_error(hc, status, NULL, NULL, 0, keep);
    } else {
        struct kite_route *route = m.entry->target;
        if (route->kind == KITE__ROUTE_HTTP) {
            serve_plain(hc, route, &kreq);
        } else {
            upgrade(hc, route, &kreq, rest, rest_len);
            return false;
        }
    }
    return !(hc->flags & (H_CLOSE_AFTER | H_DEAD));
}

/* Keep unparsed bytes for the next read (they may be the rxbuf's, which is shared). */
static void keep_rest(struct kite__hconn *hc, uint8_t *buf, size_t len, bool from_in)
{
    if (from_in) {
        kite__buf_consume(&hc->in, (size_t)(buf - kite__buf_head(&hc->in)));
        return;
    }
    if (kite__buf_append(&hc->in, hc->app->alloc, buf, len) < 0)
        hc_destroy(hc);
}

/* Parse and handle every whole request head in buf[0..len). */
static void process(struct kite__hconn *hc, uint8_t *buf, size_t len, bool from_in)
{
    struct kite_app *app = hc->app;
    struct kite_http_limits lim = {app->opt.max_head_size, app->opt.max_headers};
    struct kite_http_header hdrs[lim.max_headers];
    while (len > 0) {
        struct kite_http_request req;
        ssize_t h =
            kite__http_parse_request((const char *)buf, len, hc->last_len, &lim, &req, hdrs);
        if (h == KITE_INCOMPLETE) {
            hc->last_len = len;
            keep_rest(hc, buf, len, from_in);
            return;
        }
        hc->last_len = 0;
        if (h < 0) {
            int status = h == KITE_ERR_HEAD_TOO_BIG ? 431 : 400;
            kite__app_log(app, KITE_LOG_INFO, "bad request head: %d", status);
            respond_error(hc, status, NULL, NULL, 0, false);
            return;
        }
        /* A whole head: the slow-loris deadline starts over for the next one. */
        kite__timer_start(app->loop, &hc->timer, app->opt.handshake_timeout_ms);
        uint8_t *rest = buf + h;
        size_t rest_len = len - (size_t)h;
        if (!handle_request(hc, &req, rest, rest_len))
            return;
        buf = rest;
        len = rest_len;
    }
    if (from_in)
        kite__buf_consume(&hc->in, hc->in.len);
}

static void hc_read(struct kite__hconn *hc)
{
    size_t cap;
    uint8_t *rx = kite__loop_rxbuf(hc->app->loop, &cap);
    ssize_t n = kite__tp_read(&hc->tp, rx, cap);
    if (n == KITE_AGAIN)
        return;
    if (n <= 0) {
        hc_destroy(hc); /* EOF or error: nothing more to answer */
        return;
    }
    if (hc->flags & (H_LINGER | H_CLOSE_AFTER))
        return; /* closing: input is discarded */
    if (hc->in.len == 0) {
        process(hc, rx, (size_t)n, false);
        return;
    }
    if (kite__buf_append(&hc->in, hc->app->alloc, rx, (size_t)n) < 0) {
        hc_destroy(hc);
        return;
    }
    process(hc, kite__buf_head(&hc->in), hc->in.len, true);
}

/* Read, then drain what TLS already decrypted: the fd will not signal it again. */
static void hc_read_all(struct kite__hconn *hc)
{
    hc_read(hc);
    for (int i = 0; i < 16 && !(hc->flags & (H_DEAD | H_UPGRADED | H_LINGER)) &&
                    kite__tp_pending(&hc->tp) > 0;
         i++)
        hc_read(hc);
}

/* One step of the TLS handshake (never blocks: OpenSSL says what it waits for). A
 * failure is the client's business (wrong port, untrusted certificate): log, drop. */
static void hc_tls_step(struct kite__hconn *hc)
{
    int rc = kite__tp_handshake(&hc->tp);
    if (rc == KITE_AGAIN) {
        if (kite__io_start(hc->app->loop, &hc->s->io, kite__tp_want_events(&hc->tp, 0)) < 0)
            hc_destroy(hc);
        return;
    }
    if (rc < 0) {
        if (kite__app_log_on(hc->app, KITE_LOG_INFO)) {
            char a[KITE__ADDRSTRLEN], why[KITE__TLS_ERRLEN];
            kite__addr_format(&hc->peer, a, sizeof(a));
            kite__tls_last_error(&hc->tp, why, sizeof(why));
            kite__app_log(hc->app, KITE_LOG_INFO, "%s: %s", a,
                          why[0] ? why : kite_strerror(rc));
        }
        hc_destroy(hc);
        return;
    }
    hc->flags &= ~(uint32_t)H_TLS_HS;
    /* The request may have come with the last handshake flight: read it now, the fd
     * will not signal it again (net/tls.h). */
    hc_read_all(hc);
}

static void hc_io(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    struct kite__hconn *hc =
        kite__session_reserved_owner(kite__container_of(io, struct kite_session, io));
    KITE_UNUSED(loop);
    if (events & KITE__IO_FLUSH) {
        hc_flush(hc);
        return;
    }
    if (hc->flags & H_TLS_HS) {
        hc_tls_step(hc);
        hc_finish(hc);
        return;
    }
    if (events & KITE__IO_WRITE) {
        hc->flags &= ~(uint32_t)H_WRITE_WAIT;
        hc_write(hc);
    }
    if (hc->flags & H_DEAD)
        return;
    if (events & (KITE__IO_READ | KITE__IO_HUP | KITE__IO_ERROR))
        hc_read_all(hc);
    hc_finish(hc);
}

/* The app: options, routes, listeners, run and graceful shutdown (server.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kite/kite.h" /* kite_app_listen_tls and the request TLS getters */
#include "server/server.h"

void kite_app_options_init(struct kite_app_options *o)
{
    memset(o, 0, sizeof(*o));
    kite_ws_options_init(&o->ws);
    kite_send_limits_init(&o->send);
    o->max_head_size = KITE_HTTP_DEFAULT_MAX_HEAD;
    o->max_headers = KITE_HTTP_DEFAULT_MAX_HEADERS;
    o->handshake_timeout_ms = 10000;
    o->shutdown_timeout_ms = 5000;
    o->handle_signals = true;
    o->log_level = KITE_LOG_INFO;
}

void kite__app_log(const struct kite_app *app, enum kite_log_level level, const char *fmt, ...)
{
    if (!kite__app_log_on(app, level))
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    app->opt.log(level, line, app->opt.log_ud);
}

/* The default connection cap: what the open-file limit allows, minus a reserve for
 * listeners, logs and the loop's own descriptors. */
static uint32_t default_max_conns(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (1u << 24))
        return 1u << 20;
    return rl.rlim_cur > 128 ? (uint32_t)(rl.rlim_cur - 64) : 64;
}

static bool ws_options_ok(const struct kite_ws_options *o)
{
    return o->timeout_ms > 0 && o->max_frame_size > 0 && o->max_message_size > 0;
}

static bool send_limits_ok(const struct kite_send_limits *l)
{
    return l->high_water <= l->hard_limit &&
           (l->policy == KITE_SEND_POLICY_CLOSE || l->policy == KITE_SEND_POLICY_DROP);
}

struct kite_app *kite_app_new(const struct kite_app_options *o)
{
    struct kite_app_options def;
    if (!o) {
        kite_app_options_init(&def);
        o = &def;
    }
    if (!ws_options_ok(&o->ws) || !send_limits_ok(&o->send) || o->max_head_size < 64 ||
        o->max_headers == 0 || o->max_headers > 1024)
        return NULL;
    struct kite_app *app = kite__calloc(o->allocator, sizeof(*app));
    if (!app)
        return NULL;
    app->opt = *o;
    app->alloc = o->allocator;
    app->loop = o->loop;
    if (!app->loop) {
        if (kite_loop_new(app->alloc, &app->loop) != KITE_OK) {
            kite__free(app->alloc, app);
            return NULL;
        }
        app->own_loop = true;
    }
    app->max_conns = o->max_connections ? o->max_connections : default_max_conns();
    atomic_init(&app->stop_requested, false);
    app->ws_cur = &app->opt.ws;
    kite__router_init(&app->router, app->alloc);
    return app;
}

static void close_listeners(struct kite_app *app)
{
    struct kite__app_listener *l = app->listeners;
    while (l) {
        struct kite__app_listener *next = l->next;
        kite__listener_stop(app->loop, &l->l);
        close(l->fd);
        kite__tls_server_ctx_free(l->tls); /* connections still open keep it alive */
        kite__free(app->alloc, l);
        l = next;
    }
    app->listeners = NULL;
    app->nlisteners = 0;
}

void kite_app_free(struct kite_app *app)
{
    if (!app)
        return;
    close_listeners(app);
    if (app->watching_signals)
        kite_loop_unwatch_signals(app->loop);
    /* The loop first: its deferred frees still read the routes' session configs. */
    if (app->own_loop)
        kite_loop_free(app->loop);
    struct kite_route *r = app->routes;
    while (r) {
        struct kite_route *next = r->next;
        kite__free(app->alloc, r->protocol);
        kite__free(app->alloc, r);
        r = next;
    }
    kite__router_free(&app->router);
    while (app->ws_blocks) {
        struct kite__ws_block *b = app->ws_blocks;
        app->ws_blocks = b->next;
        kite__free(app->alloc, b);
    }
    for (uint8_t i = 0; i < app->nteardown; i++)
        app->teardown[i].fn(app, app->teardown[i].arg);
    /* After the loop: no session (and no instance reading its configs) is left. */
    kite_ext_list_free(app->exts_own);
    /* This thread's idle zlib streams may come from this app's allocator. */
    kite_pmd_pool_trim();
    kite__free(app->alloc, app);
}

int kite__app_add_teardown(struct kite_app *app, void (*fn)(struct kite_app *app, void *arg),
                           void *arg)
{
    for (uint8_t i = 0; i < app->nteardown; i++)
        if (app->teardown[i].fn == fn && app->teardown[i].arg == arg)
            return KITE_OK;
    if (app->nteardown == KITE_ARRAY_LEN(app->teardown))
        return KITE_ERR_LIMIT;
    app->teardown[app->nteardown].fn = fn;
    app->teardown[app->nteardown].arg = arg;
    app->nteardown++;
    return KITE_OK;
}

/* A new options block for sessions made from now on (struct kite__ws_block). */
static const struct kite_ws_options *ws_publish(struct kite_app *app,
                                                const struct kite_ws_options *o)
{
    struct kite__ws_block *b = kite__malloc(app->alloc, sizeof(*b));
    if (!b)
        return NULL;
    b->ws = *o;
    b->next = app->ws_blocks;
    app->ws_blocks = b;
    return &b->ws;
}

int kite_app_set_ws_options(struct kite_app *app, const struct kite_ws_options *o)
{
    if (!app || !o || !ws_options_ok(o))
        return KITE_ERR_INVALID;
    const struct kite_ws_options *ws = ws_publish(app, o);
    if (!ws)
        return KITE_ERR_NOMEM;
    app->ws_cur = ws;
    for (struct kite_route *r = app->routes; r; r = r->next)
        if (r->kind == KITE__ROUTE_WS && !r->own_ws)
            r->scfg.ws = ws;
    return KITE_OK;
}

struct kite_loop *kite_app_loop(const struct kite_app *app)
{
    return app->loop;
}

size_t kite_app_connection_count(const struct kite_app *app)
{
    return app->nconns;
}

size_t kite_app_session_count(const struct kite_app *app)
{
    return app->nsessions;
}

/* ---- routes ---------------------------------------------------------------------- */

static struct kite_route *route_add(struct kite_app *app, const char *path,
                                    enum kite__route_kind kind)
{
    if (!app || !path)
        return NULL;
    struct kite_route *r = kite__calloc(app->alloc, sizeof(*r));
    if (!r)
        return NULL;
    int rc = kite__router_add(&app->router, path, kind, r);
    if (rc < 0) {
        kite__app_log(app, KITE_LOG_ERROR, "cannot add route %s: %s", path, kite_strerror(rc));
        kite__free(app->alloc, r);
        return NULL;
    }
    r->app = app;
    r->kind = (uint8_t)kind;
    r->next = app->routes;
    app->routes = r;
    return r;
}

static struct kite_route *ws_route(struct kite_app *app, const char *path,
                                   const struct kite_ws_callbacks *cb, void *ud,
                                   enum kite_mode mode)
{
    if (!cb || (mode == KITE_MODE_RAW && !cb->on_frame))
        return NULL;
    struct kite_route *r = route_add(app, path, KITE__ROUTE_WS);
    if (!r)
        return NULL;
    r->scfg.cb = *cb;
    r->scfg.ud = ud;
    r->scfg.ws = app->ws_cur;
    r->scfg.send = &app->opt.send;
    r->scfg.alloc = app->alloc;
    r->scfg.mode = (uint8_t)mode;
    r->scfg.role = KITE_ROLE_SERVER;
    r->scfg.on_destroy = kite__app_session_destroyed;
    r->scfg.owner = app;
    return r;
}

struct kite_route *kite_route_ws_callbacks(struct kite_app *app, const char *path,
                                           const struct kite_ws_callbacks *cb, void *ud)
{
    return ws_route(app, path, cb, ud, KITE_MODE_DEFAULT);
}

struct kite_route *kite_route_ws_raw_callbacks(struct kite_app *app, const char *path,
                                               const struct kite_ws_callbacks *cb, void *ud)
{
    return ws_route(app, path, cb, ud, KITE_MODE_RAW);
}

struct kite_route *kite_route_get(struct kite_app *app, const char *path,
                                  kite_http_handler *handler, void *ud)
{
    if (!handler)
        return NULL;
    struct kite_route *r = route_add(app, path, KITE__ROUTE_HTTP);
    if (r) {
        r->handler = handler;
        r->ud = ud;
    }
    return r;
}

int kite_route_set_ws_options(struct kite_route *r, const struct kite_ws_options *o)
{
    if (!r || !o || r->kind != KITE__ROUTE_WS || !ws_options_ok(o))
        return KITE_ERR_INVALID;
    const struct kite_ws_options *ws = ws_publish(r->app, o);
    if (!ws)
        return KITE_ERR_NOMEM;
    r->scfg.ws = ws;
    r->own_ws = true;
    return KITE_OK;
}

int kite_route_set_send_limits(struct kite_route *r, const struct kite_send_limits *l)
{
    if (!r || !l || r->kind != KITE__ROUTE_WS || !send_limits_ok(l))
        return KITE_ERR_INVALID;
    r->send = *l;
    r->scfg.send = &r->send;
    return KITE_OK;
}

int kite_route_set_protocol(struct kite_route *r, const char *protocol)
{
    if (!r || r->kind != KITE__ROUTE_WS || !protocol ||
        !kite__http_is_token(protocol, strlen(protocol)))
        return KITE_ERR_INVALID;
    size_t n = strlen(protocol);
    char *p = kite__malloc(r->app->alloc, n + 1);
    if (!p)
        return KITE_ERR_NOMEM;
    memcpy(p, protocol, n + 1);
    kite__free(r->app->alloc, r->protocol);
    r->protocol = p;
    return KITE_OK;
}

int kite_route_set_protocol_selector(struct kite_route *r, kite_protocol_select_cb *cb)
{
    if (!r || r->kind != KITE__ROUTE_WS)
        return KITE_ERR_INVALID;
    r->select = cb;
    return KITE_OK;
}

/* ---- extensions ------------------------------------------------------------------- */

int kite_app_install_extension(struct kite_app *app, const struct kite_extension *ext,
                               const void *config)
{
    if (!app || !ext)
        return KITE_ERR_INVALID;
    if (app->exts && app->exts != app->exts_own)
        return KITE_ERR_STATE; /* the app uses a registry it was given: install there */
    if (!app->exts_own) {
        app->exts_own = kite_ext_list_new(app->alloc);
        if (!app->exts_own)
            return KITE_ERR_NOMEM;
    }
    int rc = kite_ext_list_install(app->exts_own, ext, config);
    if (rc == KITE_OK)
        app->exts = app->exts_own;
    return rc;
}

int kite_app_set_extensions(struct kite_app *app, const struct kite_ext_list *l)
{
    if (!app)
        return KITE_ERR_INVALID;
    app->exts = l;
    return KITE_OK;
}

int kite_route_set_extensions(struct kite_route *r, const struct kite_ext_list *l)
{
    if (!r || r->kind != KITE__ROUTE_WS)
        return KITE_ERR_INVALID;
    r->exts = l;
    r->own_exts = true;
    return KITE_OK;
}

const struct kite_ext_list *kite__route_extensions(const struct kite_route *r)
{
    return r->own_exts ? r->exts : r->app->exts;
}

/* ---- listeners ---------------------------------------------------------------------- */

static void on_accept(struct kite_loop *loop, struct kite__listener *l, int fd,
                      const struct kite__addr *peer)
{
    KITE_UNUSED(loop);
    struct kite__app_listener *al = kite__container_of(l, struct kite__app_listener, l);
    kite__hconn_accept(l->data, fd, peer, al->tls);
}

static void on_accept_error(struct kite_loop *loop, struct kite__listener *l, int err)
{
    KITE_UNUSED(loop);
    kite__app_log(l->data, KITE_LOG_WARN, "accept failed: %s; pausing %u ms", kite_strerror(err),
                  (unsigned)KITE__LISTENER_PAUSE_MS);
}

static int listener_start(struct kite_app *app, struct kite__app_listener *al)
{
    int rc = kite__listener_start(app->loop, &al->l, al->fd, on_accept, on_accept_error);
    al->l.data = app;
    return rc;
}

static void on_signal(struct kite_loop *loop, int signo, void *arg);

/* Watch SIGINT/SIGTERM from the first listen on, not only from kite_app_run(): a
 * program prints its address between the two, and a signal sent as soon as that line is
 * read must not kill it. The loop records the signal and runs on_signal once it runs. */
static int watch_signals(struct kite_app *app)
{
    if (!app->opt.handle_signals || app->watching_signals)
        return KITE_OK;
    int rc = kite_loop_watch_signals(app->loop, on_signal, app);
    if (rc == KITE_OK)
        app->watching_signals = true;
    return rc;
}

/* Bind host:port and add the listener (with its TLS context, which it then owns). */
static int listen_add(struct kite_app *app, const char *host, uint16_t port,
                      struct kite_tls_server_ctx *tls)
{
    struct kite__app_listener *al = kite__calloc(app->alloc, sizeof(*al));
    if (!al)
        return KITE_ERR_NOMEM;
    int fd = kite__tcp_listen(host, port, NULL, &al->addr);
    if (fd < 0) {
        kite__free(app->alloc, al);
        return fd;
    }
    al->fd = fd;
    al->tls = tls;
    (void)watch_signals(app); /* a failure is reported by kite_app_run() */
    if (app->state == KITE__APP_RUNNING) {
        int rc = listener_start(app, al);
        if (rc < 0) {
            close(fd);
            kite__free(app->alloc, al);
            return rc;
        }
    }
    /* Append, so listener i is the i-th one added. */
    struct kite__app_listener **pp = &app->listeners;
    while (*pp)
        pp = &(*pp)->next;
    *pp = al;
    app->nlisteners++;
    return KITE_OK;
}

int kite_app_listen(struct kite_app *app, const char *host, uint16_t port)
{
    if (!app)
        return KITE_ERR_INVALID;
    if (app->state >= KITE__APP_STOPPING)
        return KITE_ERR_STATE;
    return listen_add(app, host, port, NULL);
}

int kite_app_listen_tls(struct kite_app *app, const char *host, uint16_t port,
                        const struct kite_tls_server_options *tls, char *err, size_t errlen)
{
    char local[KITE__TLS_ERRLEN];
    bool log = !err || errlen == 0; /* nobody will read err: the log gets it */
    if (log) {
        err = local;
        errlen = sizeof(local);
    }
    err[0] = '\0';
    if (!app || !tls) {
        snprintf(err, errlen, "no TLS options");
        return KITE_ERR_INVALID;
    }
    if (app->state >= KITE__APP_STOPPING)
        return KITE_ERR_STATE;
    struct kite_tls_server_ctx *ctx;
    int rc = kite__tls_server_ctx_new(tls, app->alloc, &ctx, err, errlen);
    if (rc < 0) {
        if (log)
            kite__app_log(app, KITE_LOG_ERROR, "TLS listener on port %u: %s", (unsigned)port,
                          err);
        return rc;
    }
    rc = listen_add(app, host, port, ctx);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen: %s", kite_strerror(rc));
        kite__tls_server_ctx_free(ctx);
    }
    return rc;
}

bool kite_app_listener_is_tls(const struct kite_app *app, size_t i)
{
    const struct kite__app_listener *l = app->listeners;
    while (l && i--)
        l = l->next;
    return l && l->tls;
}

size_t kite_app_listener_count(const struct kite_app *app)
{
    return app->nlisteners;
}

static const struct kite__app_listener *listener_at(const struct kite_app *app, size_t i)
{
    const struct kite__app_listener *l = app->listeners;
    while (l && i--)
        l = l->next;
    return l;
}

uint16_t kite_app_listener_port(const struct kite_app *app, size_t i)
{
    const struct kite__app_listener *l = listener_at(app, i);
    return l ? kite__addr_port(&l->addr) : 0;
}

int kite_app_listener_url(const struct kite_app *app, size_t i, char *buf, size_t cap)
{
    const struct kite__app_listener *l = listener_at(app, i);
    if (!l)
        return KITE_ERR_NOTFOUND;
    char a[KITE__ADDRSTRLEN];
    kite__addr_format(&l->addr, a, sizeof(a));
    int n = snprintf(buf, cap, "%s://%s/", l->tls ? "wss" : "ws", a);
    if (n < 0 || (size_t)n >= cap)
        return KITE_ERR_INVALID;
    return n;
}

/* ---- connections and sessions --------------------------------------------------------- */

static void maybe_done(struct kite_app *app)
{
    if (app->state == KITE__APP_STOPPING && app->nconns == 0 && !app->drained) {
        app->drained = true;
        kite__timer_stop(app->loop, &app->shutdown_timer);
        kite__app_log(app, KITE_LOG_INFO, "shutdown complete");
        kite_loop_stop(app->loop);
    }
}

void kite__app_conn_gone(struct kite_app *app)
{
    app->nconns--;
    maybe_done(app);
}

void kite__app_session_add(struct kite_app *app, struct kite_session *s)
{
    s->prev = NULL;
    s->next = app->sessions;
    if (app->sessions)
        app->sessions->prev = s;
    app->sessions = s;
    app->nsessions++;
}

void kite__app_session_destroyed(struct kite_session *s, void *owner)
{
    struct kite_app *app = owner;
    if (s->prev)
        s->prev->next = s->next;
    else
        app->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    app->nsessions--;
    kite__app_conn_gone(app);
}

/* ---- run and shutdown ---------------------------------------------------------------- */

/* Close every connection now: HTTP ones, and sessions without a close handshake. */
static void drop_all(struct kite_app *app)
{
    while (app->hconns)
        kite__hconn_close(app->hconns);
    while (app->sessions) {
        struct kite_session *s = app->sessions;
        kite_session_terminate(s); /* unlinks it through on_destroy */
        if (app->sessions == s)
            break; /* a session inside its own callback: never spin */
    }
}

/* The shutdown deadline passed: drop whatever has not finished its close handshake. */
static void shutdown_timeout(struct kite_loop *loop, struct kite__timer *t)
{
    struct kite_app *app = kite__container_of(t, struct kite_app, shutdown_timer);
    KITE_UNUSED(loop);
    kite__app_log(app, KITE_LOG_WARN, "shutdown timeout: dropping %zu connection(s)", app->nconns);
    drop_all(app);
    kite_loop_stop(app->loop);
}

/*
 * Graceful shutdown (loop thread): stop accepting, close idle HTTP connections, send
 * every session a close frame 1001 "going away" (RFC 6455 §7.4.1), then wait for the
 * handshakes up to shutdown_timeout_ms.
 */
static void begin_shutdown(struct kite_app *app)
{
    if (app->state != KITE__APP_RUNNING)
        return;
    app->state = KITE__APP_STOPPING;
    kite__app_log(app, KITE_LOG_INFO, "shutting down: closing %zu session(s)", app->nsessions);
    close_listeners(app);
    while (app->hconns)
        kite__hconn_close(app->hconns);
    for (struct kite_session *s = app->sessions, *next; s; s = next) {
        next = s->next;
        if (kite_session_close(s, KITE_CLOSE_GOING_AWAY, "server shutting down") < 0)
            kite_session_terminate(s);
    }
    kite__timer_init(&app->shutdown_timer, shutdown_timeout);
    kite__timer_start(app->loop, &app->shutdown_timer, app->opt.shutdown_timeout_ms);
    maybe_done(app);
}

static void stop_task(struct kite_loop *loop, void *arg)
{
    KITE_UNUSED(loop);
    begin_shutdown(arg);
}

void kite_app_stop(struct kite_app *app)
{
    if (!app || atomic_exchange(&app->stop_requested, true))
        return;
    if (kite_loop_post_task(app->loop, &app->stop_task, stop_task, app) != KITE_OK)
        kite_loop_stop(app->loop);
}

int kite_app_post(struct kite_app *app, kite_loop_fn *fn, void *arg)
{
    if (!app || !fn)
        return KITE_ERR_INVALID;
    return kite_loop_post(app->loop, fn, arg);
}

static void on_signal(struct kite_loop *loop, int signo, void *arg)
{
    struct kite_app *app = arg;
    kite__app_log(app, KITE_LOG_INFO, "signal %d: graceful shutdown (again to force)", signo);
    /* A second Ctrl-C gets the default disposition: the user insists. */
    kite_loop_unwatch_signals(loop);
    app->watching_signals = false;
    begin_shutdown(app);
}

int kite_app_run(struct kite_app *app, const char *host, uint16_t port)
{
    if (!app)
        return KITE_ERR_INVALID;
    if (app->state != KITE__APP_NEW)
        return KITE_ERR_STATE;
    if (host) {
        int rc = kite_app_listen(app, host, port);
        if (rc < 0)
            return rc;
    }
    if (!app->listeners)
        return KITE_ERR_STATE;
    int src = watch_signals(app);
    if (src < 0)
        return src;
    for (struct kite__app_listener *l = app->listeners; l; l = l->next) {
        int rc = listener_start(app, l);
        if (rc < 0) {
            close_listeners(app);
            return rc;
        }
    }
    app->state = KITE__APP_RUNNING;
    if (atomic_load(&app->stop_requested))
        begin_shutdown(app); /* stopped before it ran */
    int rc = kite_loop_run(app->loop);
    if (app->watching_signals) {
        kite_loop_unwatch_signals(app->loop);
        app->watching_signals = false;
    }
    /* A loop stopped from outside (not through the app): still close everything. */
    if (app->state == KITE__APP_RUNNING)
        begin_shutdown(app);
    drop_all(app);
    kite__timer_stop(app->loop, &app->shutdown_timer);
    app->state = KITE__APP_DONE;
    /* One more pass runs the deferred frees of what was just closed, while the routes
     * their session configs live in still exist. */
    kite_loop_run_once(app->loop, 0);
    /* permessage-deflate keeps idle zlib streams per thread (allocated through the
     * app's allocator): give them back while this is still the loop's thread. */
    kite_pmd_pool_trim();
    return rc;
}

/* ---- request information --------------------------------------------------------- */

static struct kite_str str_of(struct kite_view v)
{
    struct kite_str s = {v.ptr, v.len};
    return s;
}

struct kite_str kite_request_method(const struct kite_request *r)
{
    return str_of(r->http->method);
}

struct kite_str kite_request_path(const struct kite_request *r)
{
    return str_of(r->path);
}

struct kite_str kite_request_query(const struct kite_request *r)
{
    return str_of(r->query);
}

bool kite_request_query_param(const struct kite_request *r, const char *name,
                              struct kite_str *value)
{
    struct kite_view v = {NULL, 0};
    if (!r->query.ptr || !kite__http_query_get(r->query, name, strlen(name), &v))
        return false;
    *value = str_of(v);
    return true;
}

bool kite_request_param(const struct kite_request *r, const char *name, struct kite_str *value)
{
    if (!r->match)
        return false;
    return kite__route_param(r->match, name, strlen(name), &value->ptr, &value->len);
}

bool kite_request_header(const struct kite_request *r, const char *name, struct kite_str *value)
{
    const struct kite_http_header *h =
        kite__http_header_next(r->http->headers, r->http->num_headers, name, NULL);
    if (!h)
        return false;
    value->ptr = h->value;
    value->len = h->value_len;
    return true;
}

size_t kite_request_header_count(const struct kite_request *r)
{
    return r->http->num_headers;
}

bool kite_request_header_at(const struct kite_request *r, size_t i, struct kite_str *name,
                            struct kite_str *value)
{
    if (i >= r->http->num_headers)
        return false;
    const struct kite_http_header *h = &r->http->headers[i];
    name->ptr = h->name;
    name->len = h->name_len;
    value->ptr = h->value;
    value->len = h->value_len;
    return true;
}

size_t kite_request_protocol_count(const struct kite_request *r)
{
    struct kite_str p;
    size_t n = 0;
    while (kite_request_protocol_at(r, n, &p))
        n++;
    return n;
}

bool kite_request_protocol_at(const struct kite_request *r, size_t i, struct kite_str *proto)
{
    struct kite_http_list_iter it;
    struct kite_view v;
    kite__http_list_init(&it, r->http->headers, r->http->num_headers, "Sec-WebSocket-Protocol");
    size_t k = 0;
    while (kite__ws_protocol_next(&it, &v) == 1) {
        if (k++ == i) {
            *proto = str_of(v);
            return true;
        }
    }
    return false;
}

const char *kite_request_subprotocol(const struct kite_request *r)
{
    return r->subprotocol;
}

bool kite_request_is_tls(const struct kite_request *r)
{
    return r->tp && kite__tls_is(r->tp);
}

const char *kite_request_tls_version(const struct kite_request *r)
{
    return kite_request_is_tls(r) ? kite__tls_version(r->tp) : NULL;
}

int kite_request_remote_addr(const struct kite_request *r, char *buf, size_t cap)
{
    return (int)kite__addr_format(r->peer, buf, cap);
}

ssize_t kite_url_decode(const char *in, size_t len, char *out, size_t cap, bool plus_as_space)
{
    return kite__http_pct_decode(in, len, out, cap, plus_as_space);
}

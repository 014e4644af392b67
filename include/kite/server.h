/*
 * kite — the WebSocket server: an app with routes, listeners and a loop. Included by
 * <kite/kite.h>.
 *
 *   struct kite_app *app = kite_app_new(NULL);            // defaults
 *   kite_route_ws_callbacks(app, "/chat/{room}", &chat_callbacks, &state);
 *   kite_route_get(app, "/", page_handler, NULL);
 *   return kite_app_run(app, "127.0.0.1", 8080);          // until SIGINT/SIGTERM
 *
 * An app owns one loop (its own, or one you pass in the options) and serves every
 * connection on it. kite_app_run() returns 0 after a graceful shutdown: it stops
 * accepting, sends every open session a close frame 1001 (going away), waits up to
 * shutdown_timeout_ms for the close handshakes, then drops what is left.
 *
 * HTTP. Plain requests are HTTP/1.1 with keep-alive (HTTP/1.0 without); request
 * bodies are not supported (a request with one is answered and the connection closed).
 * What a request gets:
 *   101  a valid upgrade (RFC 6455 §4.2.2) to a WebSocket route
 *   200  (or what the handler sets) a GET or HEAD on a plain route
 *   400  a malformed request or upgrade (bad key, missing Host or Connection: upgrade,
 *        ...), or a route's required subprotocol not offered, or a selector that refused
 *   403  an Origin not in allowed_origins
 *   404  no route for the path
 *   405  a method the route does not take (WebSocket routes: GET; plain routes: GET and
 *        HEAD), with Allow
 *   426  a plain GET to a WebSocket-only path, or an unsupported Sec-WebSocket-Version
 *        (with Sec-WebSocket-Version: 13, RFC 6455 §4.4)
 *   431  a request head over max_head_size bytes or max_headers lines; then close
 *   503  over max_connections: answered at once, then closed
 * A connection that has not sent a whole request head within handshake_timeout_ms of
 * being accepted (or of its previous response, on keep-alive) is dropped without an
 * answer: a slow-loris defence, and the idle timeout of keep-alive connections.
 *
 * Threads: all functions are for the app's loop thread (or any thread while the app is
 * not running), except kite_app_stop() and kite_app_post(), which any thread may call.
 */
#ifndef KITE_SERVER_H
#define KITE_SERVER_H

#include "kite/codec.h"
#include "kite/common.h"
#include "kite/loop.h"
#include "kite/session.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kite_app;
struct kite_route;
struct kite_tls_server_options; /* <kite/tls.h> */

/* Log levels for the app's log hook. */
enum kite_log_level {
    KITE_LOG_ERROR = 0, /* the app cannot do its job (listen failed, out of memory) */
    KITE_LOG_WARN = 1,  /* a connection was refused or dropped by a limit */
    KITE_LOG_INFO = 2,  /* connection events: handshake rejected, shutdown progress */
    KITE_LOG_DEBUG = 3, /* every request */
};
/* One log line (no trailing newline), valid during the call. Called on the loop
 * thread. */
typedef void kite_log_cb(enum kite_log_level level, const char *line, void *ud);

struct kite_app_options {
    /* Allocator for everything the app and its connections allocate (NULL = libc).
     * Borrowed: must outlive the app. */
    const struct kite_allocator *allocator;
    /* Run on this loop (borrowed; must outlive the app). NULL: the app makes its own. */
    struct kite_loop *loop;
    /* Protocol options for every WebSocket route that has none of its own
     * (kite_ws_options_init(): no pings, 15 s timeout, 16 MiB frames and messages). */
    struct kite_ws_options ws;
    /* Outgoing queue limits for every route without its own (kite_send_limits_init). */
    struct kite_send_limits send;
    /* Most simultaneous connections (HTTP and WebSocket); one more is answered 503 and
     * closed. 0 (default): the process's open-file limit minus 64. */
    uint32_t max_connections;
    uint32_t max_head_size;        /* request head bytes; more -> 431. Default 8192 */
    uint32_t max_headers;          /* header lines; more -> 431. Default 64, at most 1024 */
    uint32_t handshake_timeout_ms; /* see the file comment. Default 10000 */
    uint32_t shutdown_timeout_ms;  /* graceful shutdown bound. Default 5000 */
    /* Browser origins allowed to open WebSockets: a NULL-terminated array of exact
     * Origin values ("https://example.com", compared ASCII case-insensitively), or NULL
     * (default) for any. A request whose Origin is not listed gets 403; a request
     * without Origin (not a browser) is allowed. Borrowed: must outlive the app. */
    const char *const *allowed_origins;
    /* Handle SIGINT and SIGTERM with a graceful shutdown (default true). Watched from
     * the first kite_app_listen() on, so a signal that arrives before kite_app_run()
     * is acted on as soon as it runs; a second signal gets the default disposition.
     * Only one loop per process can watch signals. */
    bool handle_signals;
    /* Log hook (NULL, the default: silent) and the most verbose level it gets. */
    kite_log_cb *log;
    void *log_ud;
    enum kite_log_level log_level; /* default KITE_LOG_INFO */
};

/* Fill `o` with the defaults documented on each field. */
KITE_EXTERN void kite_app_options_init(struct kite_app_options *o);

/*
 * Create an app. `o` is copied (NULL: defaults). Returns NULL when out of memory, when
 * the options are invalid (ws.timeout_ms 0, send.high_water > send.hard_limit), or when
 * creating its loop failed.
 */
KITE_EXTERN struct kite_app *kite_app_new(const struct kite_app_options *o);
/* Free the app, its routes and listeners. Not while kite_app_run() runs. NULL: no-op. */
KITE_EXTERN void kite_app_free(struct kite_app *app);

/* Replace the app-wide protocol options (copied); routes without their own options
 * use them from their next session on, and sessions already open keep the options
 * they started with. Sessions share one copy per call rather than holding their own
 * (an idle connection stays small); each call keeps its copy, about 48 bytes, until
 * kite_app_free(). Loop thread, or before kite_app_run(). KITE_OK, KITE_ERR_INVALID,
 * or KITE_ERR_NOMEM (nothing changed). */
KITE_EXTERN int kite_app_set_ws_options(struct kite_app *app, const struct kite_ws_options *o);

/* The app's loop (its own or the one from the options). */
KITE_EXTERN struct kite_loop *kite_app_loop(const struct kite_app *app);

/*
 * Listen on host:port now (so a port in use is reported here, and port 0 gets its real
 * number). `host` is a numeric IPv4 or IPv6 address ("127.0.0.1", "::1", "0.0.0.0",
 * "::"), a name ("localhost"), or NULL for every address (dual-stack "::"). A specific
 * IPv6 address listens on IPv6 only, so "0.0.0.0" and "::" can both be added on the same
 * port. Call it several times for several listeners. Returns KITE_OK, -EADDRINUSE,
 * -EACCES, -EADDRNOTAVAIL, KITE_ERR_RESOLVE, KITE_ERR_STATE (shutting down) or
 * KITE_ERR_NOMEM.
 */
KITE_EXTERN int kite_app_listen(struct kite_app *app, const char *host, uint16_t port);
/* Number of listeners. */
KITE_EXTERN size_t kite_app_listener_count(const struct kite_app *app);
/* The bound port of listener `i` (0 if there is no such listener). */
KITE_EXTERN uint16_t kite_app_listener_port(const struct kite_app *app, size_t i);
/* Listener `i` as a URL, "ws://127.0.0.1:8080/" or "ws://[::1]:8080/", into buf[0..cap)
 * with a NUL. Returns the length, or KITE_ERR_NOTFOUND / KITE_ERR_INVALID (cap too
 * small). */
KITE_EXTERN int kite_app_listener_url(const struct kite_app *app, size_t i, char *buf, size_t cap);

/* TLS for the server (wss://).
 *
 * A TLS listener sits beside plain ones in the same app: kite_app_listen() for ws://,
 * kite_app_listen_tls() for wss://, as many of each as you like, all serving the same
 * routes. The TLS handshake runs on the loop without blocking it, inside the app's
 * handshake_timeout_ms (a client that stalls it is dropped like a slow request head).
 */

/*
 * Listen on host:port (as kite_app_listen()) with TLS: `tls` (borrowed for the call;
 * kite_tls_server_options_init(), then cert_file + key_file and/or an SNI list) is
 * loaded now, so a missing file or a key that does not match is reported here. On
 * failure, if `err` is not NULL, err[0..errlen) holds a message naming the file and the
 * reason (with `err` NULL, the message goes to the app's log at KITE_LOG_ERROR). Returns KITE_OK, KITE_ERR_INVALID (bad
 * options), KITE_ERR_TLS (a file cannot be read or parsed, key mismatch),
 * KITE_ERR_NOMEM, or kite_app_listen()'s errors.
 */
KITE_EXTERN int kite_app_listen_tls(struct kite_app *app, const char *host, uint16_t port,
                                    const struct kite_tls_server_options *tls, char *err,
                                    size_t errlen);
/* Is listener `i` a TLS one? (kite_app_listener_url() then says "wss://".) False when
 * there is no such listener. */
KITE_EXTERN bool kite_app_listener_is_tls(const struct kite_app *app, size_t i);

/* Did this request come over TLS (a listener made by kite_app_listen_tls)? */
KITE_EXTERN bool kite_request_is_tls(const struct kite_request *r);
/* Its TLS version ("TLSv1.3"), or NULL for a plain connection. Static storage. */
KITE_EXTERN const char *kite_request_tls_version(const struct kite_request *r);


/*
 * Serve until stopped (kite_app_stop(), or SIGINT/SIGTERM when handle_signals), then
 * shut down gracefully (see the file comment) and return KITE_OK. When `host` is not
 * NULL, first kite_app_listen(app, host, port); with NULL, the listeners added before
 * are used. Returns an error from kite_app_listen, KITE_ERR_STATE (no listener, already
 * running, or already shut down: an app runs once), KITE_ERR_EXISTS (handle_signals
 * and another loop already watches signals), or the loop's -errno.
 */
KITE_EXTERN int kite_app_run(struct kite_app *app, const char *host, uint16_t port);

/* Start the graceful shutdown; kite_app_run() returns when it is done. Any thread;
 * async-signal-safe. Idempotent. */
KITE_EXTERN void kite_app_stop(struct kite_app *app);

/* Run fn(loop, arg) on the app's loop thread (kite_loop_post()). Any thread. KITE_OK,
 * KITE_ERR_NOMEM or KITE_ERR_CLOSED. */
KITE_EXTERN int kite_app_post(struct kite_app *app, kite_loop_fn *fn, void *arg);

/* Open connections (HTTP and WebSocket) and open WebSocket sessions. */
KITE_EXTERN size_t kite_app_connection_count(const struct kite_app *app);
KITE_EXTERN size_t kite_app_session_count(const struct kite_app *app);

/* ---- routes --------------------------------------------------------------------------
 *
 * Paths are patterns of '/'-separated segments: literals, {name} (one non-empty
 * segment, captured), * (one segment, not captured), and a final {name...} (the rest
 * of the path, possibly empty). The most specific pattern wins: comparing segment by
 * segment from the left, literal > {name} > * > {name...}. A path can have one
 * WebSocket route and one plain route: upgrades go to the first, plain GETs to the
 * second (so "/" can serve a page and a socket). Add routes before kite_app_run() or
 * from the loop thread. Route objects belong to the app.
 */

/*
 * Add a WebSocket route with callbacks, in default mode (Ktor's webSocket(path)):
 * kite answers pings, runs the close handshake, reassembles fragments and hands whole
 * messages to on_message. `cb` is copied; `ud` is every session's initial user data.
 * Returns the route, or NULL: a malformed pattern, the same pattern already has a
 * WebSocket route, or out of memory.
 */
KITE_EXTERN struct kite_route *kite_route_ws_callbacks(struct kite_app *app, const char *path,
                                                       const struct kite_ws_callbacks *cb,
                                                       void *ud);
/* The same in raw mode (Ktor's webSocketRaw): every frame goes to on_frame (required),
 * nothing is answered for you. */
KITE_EXTERN struct kite_route *kite_route_ws_raw_callbacks(struct kite_app *app, const char *path,
                                                           const struct kite_ws_callbacks *cb,
                                                           void *ud);

/* This route's protocol options (copied), instead of the app's, for the route's
 * sessions from the next one on (shared the same way as the app's, kept until
 * kite_app_free()). Loop thread, or before kite_app_run(). KITE_OK, KITE_ERR_INVALID
 * (timeout_ms of 0, or not a WebSocket route) or KITE_ERR_NOMEM (nothing changed). */
KITE_EXTERN int kite_route_set_ws_options(struct kite_route *r, const struct kite_ws_options *o);
/* This route's outgoing queue limits (copied). KITE_OK or KITE_ERR_INVALID. */
KITE_EXTERN int kite_route_set_send_limits(struct kite_route *r, const struct kite_send_limits *l);

/*
 * Require one subprotocol (Ktor's webSocket(path, protocol)): a client that does not
 * offer `protocol` in Sec-WebSocket-Protocol gets 400 (the route exists, the request
 * lacks what it needs); one that does gets it echoed back in the 101. `protocol` is
 * copied and must be an RFC 9110 token. KITE_OK, KITE_ERR_INVALID or KITE_ERR_NOMEM.
 */
KITE_EXTERN int kite_route_set_protocol(struct kite_route *r, const char *protocol);

/*
 * Choose among the subprotocols the client offers. Called during the handshake with
 * the request (kite_request_protocol_count()/_at() list the offers, in the client's
 * order). Return the index of the one to accept, -1 to accept without a subprotocol,
 * or -2 to refuse the handshake (400). Without a selector and without a required
 * protocol, offers are ignored (RFC 6455 §4.2.2 lets a server pick none).
 */
typedef int kite_protocol_select_cb(const struct kite_request *req, void *ud);
KITE_EXTERN int kite_route_set_protocol_selector(struct kite_route *r, kite_protocol_select_cb *cb);

/* ---- extensions (RFC 6455 §9, <kite/extension.h>) --------------------------------
 *
 * A WebSocket route negotiates the extensions of one registry (struct kite_ext_list):
 * its own, given with kite_route_set_extensions(), or else the app's, made with
 * kite_app_install_extension() or given with kite_app_set_extensions(). In the upgrade,
 * each installed extension, in install order, sees the client's offers of it and
 * accepts one or declines (a decline is not an error: the session runs without it).
 * The 101 lists the accepted ones, in install order, in Sec-WebSocket-Extensions;
 * outgoing messages pass through them in that order and incoming ones in reverse.
 * A request whose Sec-WebSocket-Extensions breaks the §9.1 grammar gets 400; running out
 * of memory (or an extension's instance_new failing) gets 500. kite_session_extension(s,
 * &ext) returns a session's instance, e.g. for kite_pmd_params().
 *
 * Raw routes (kite_route_ws_raw_callbacks) negotiate only when the registry asks for it
 * (kite_ext_list_set_raw_negotiation(l, true), Ktor's negotiateExtensions), and then
 * transform nothing: frames arrive and leave as they are (extension.h, "Modes").
 *
 * Registries are read at each upgrade, so a change applies to sessions opened later.
 * Every registry must outlive the sessions negotiated with it (their instances read its
 * configs): a registry you give must outlive the app. Call these on the loop thread or
 * before kite_app_run(). permessage-deflate keeps a small per-thread pool of idle zlib
 * streams; kite_app_run() empties the loop thread's pool before it returns, and
 * kite_app_free() the calling thread's.
 *
 *   kite_app_install_extension(app, &kite_ext_permessage_deflate, NULL);  // balanced
 */

/*
 * Install `ext` with `config` (copied; NULL: the extension's defaults) in the app's own
 * registry, which is made on first use, freed by kite_app_free(), and used by every
 * WebSocket route without a registry of its own. It never negotiates for raw routes
 * (give a registry with raw negotiation for that). Returns KITE_OK; KITE_ERR_INVALID
 * (NULL app or ext, or kite_ext_list_install()'s reasons: a bad name or RSV bits, a
 * config its config_check refuses); KITE_ERR_EXISTS (already installed, or an RSV bit
 * claimed by an installed extension); KITE_ERR_STATE (the app uses a registry given
 * with kite_app_set_extensions(): install into that one); KITE_ERR_NOMEM. Nothing is
 * installed on error.
 */
KITE_EXTERN int kite_app_install_extension(struct kite_app *app, const struct kite_extension *ext,
                                           const void *config);
/*
 * Use the registry `l` for every WebSocket route without its own, instead of the app's
 * own (which is kept, unused, until kite_app_free()). Borrowed: `l` must outlive the
 * app. NULL: the app offers no extension. KITE_OK or KITE_ERR_INVALID (app NULL).
 */
KITE_EXTERN int kite_app_set_extensions(struct kite_app *app, const struct kite_ext_list *l);
/*
 * This route negotiates with `l` (borrowed: must outlive the app) instead of the app's
 * registry; NULL: this route negotiates no extension. KITE_OK or KITE_ERR_INVALID (r
 * NULL or not a WebSocket route).
 */
KITE_EXTERN int kite_route_set_extensions(struct kite_route *r, const struct kite_ext_list *l);

/* ---- plain HTTP routes ----------------------------------------------------------- */

/* An extra response header. Both strings NUL-terminated. */
struct kite_header {
    const char *name;
    const char *value;
};

/*
 * What a plain handler answers. Starts as 200, "text/plain; charset=utf-8", empty
 * body. Every pointer is borrowed until the handler returns (kite copies the bytes).
 * Header names must be tokens and values free of control characters; a bad one turns
 * the answer into a 500.
 */
struct kite_response {
    int status;               /* 100-599 */
    const char *content_type; /* NULL: no Content-Type */
    const void *body;
    size_t body_len;
    const struct kite_header *headers; /* extra headers, num_headers of them */
    size_t num_headers;
};

/* A plain GET/HEAD handler (HEAD gets the same headers without the body). Runs on the
 * loop thread and must not block. */
typedef void kite_http_handler(const struct kite_request *req, struct kite_response *res, void *ud);

/* Add a plain GET route (also answers HEAD). Returns the route or NULL (see
 * kite_route_ws_callbacks). */
KITE_EXTERN struct kite_route *kite_route_get(struct kite_app *app, const char *path,
                                              kite_http_handler *handler, void *ud);

/* ---- request information ---------------------------------------------------------
 *
 * A struct kite_request is valid only during the callback that receives it (on_open,
 * a plain handler, a protocol selector): the views point into the connection's receive
 * buffer. Copy what you need to keep. Values are raw, as sent (percent-encoding
 * included); kite_url_decode() decodes.
 */

KITE_EXTERN struct kite_str kite_request_method(const struct kite_request *r);
/* The path without the query, e.g. "/chat/lobby". */
KITE_EXTERN struct kite_str kite_request_path(const struct kite_request *r);
/* The query without the '?' ("a=1&b=2"); ptr NULL when the target had no '?'. */
KITE_EXTERN struct kite_str kite_request_query(const struct kite_request *r);
/* The first query parameter named `name` (compared after decoding): true and its raw
 * value (ptr NULL for "?flag" without '='), or false. */
KITE_EXTERN bool kite_request_query_param(const struct kite_request *r, const char *name,
                                          struct kite_str *value);
/* A path parameter captured by {name} or {name...}: true and its raw value, or false. */
KITE_EXTERN bool kite_request_param(const struct kite_request *r, const char *name,
                                    struct kite_str *value);
/* The first header named `name` (ASCII case-insensitive): true and its value. */
KITE_EXTERN bool kite_request_header(const struct kite_request *r, const char *name,
                                     struct kite_str *value);
KITE_EXTERN size_t kite_request_header_count(const struct kite_request *r);
/* Header line `i` (0-based, in order): true and its name and value, false past the end. */
KITE_EXTERN bool kite_request_header_at(const struct kite_request *r, size_t i,
                                        struct kite_str *name, struct kite_str *value);
/* Subprotocols offered in Sec-WebSocket-Protocol, in order. */
KITE_EXTERN size_t kite_request_protocol_count(const struct kite_request *r);
KITE_EXTERN bool kite_request_protocol_at(const struct kite_request *r, size_t i,
                                          struct kite_str *proto);
/* The subprotocol chosen for this session (in on_open), or NULL. */
KITE_EXTERN const char *kite_request_subprotocol(const struct kite_request *r);
/* The peer's address as text ("127.0.0.1:5555", "[::1]:5555") into buf[0..cap) with a
 * NUL; returns the length it needed (snprintf-style). */
KITE_EXTERN int kite_request_remote_addr(const struct kite_request *r, char *buf, size_t cap);

/* Percent-decode (RFC 3986 §2.1) `len` bytes into out[0..cap); with plus_as_space, '+'
 * becomes ' ' (query values). out may equal in. Returns the decoded length,
 * KITE_ERR_HTTP for a malformed escape, or KITE_ERR_INVALID when cap is too small. */
KITE_EXTERN ssize_t kite_url_decode(const char *in, size_t len, char *out, size_t cap,
                                    bool plus_as_space);

#ifdef __cplusplus
}
#endif
#endif

/*
 * kite — the WebSocket client: ws:// and wss:// with the same session API as the
 * server (Ktor's client install(WebSockets)). Included by <kite/kite.h>.
 *
 *   struct kite_client_options o;
 *   kite_client_options_init(&o);
 *   o.on_connect_error = failed;                 // why the connection could not open
 *   static const struct kite_ws_callbacks cb = {.on_open = opened, .on_message = got,
 *                                               .on_close = closed};
 *   struct kite_client *c;
 *   int rc = kite_connect(loop, "wss://example.com/chat?room=1", &o, &cb, ud, &c);
 *
 * What happens after kite_connect() returns KITE_OK, all on the loop's thread and never
 * from inside kite_connect() itself:
 *   1. the host is resolved without stalling the loop (a helper thread runs
 *      getaddrinfo; IP literals are parsed at once), and the addresses are tried in the
 *      resolver's order with non-blocking connects, all within connect_timeout_ms;
 *   2. for wss://, the TLS handshake runs on the loop (non-blocking): the server's
 *      certificate is verified against the system trust store, or the CA file/directory
 *      given in `tls`, and must be valid for the URL's host (SNI is sent for names);
 *   3. the upgrade request is sent (RFC 6455 §4.1) and the response fully checked:
 *      status 101, Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Accept, a
 *      subprotocol only if offered, extensions only if offered. Steps 2 and 3 share
 *      handshake_timeout_ms;
 *   4. then exactly one of these fires:
 *        on_open(session, NULL, ud)      (struct kite_ws_callbacks) the session is open;
 *                                        from here on it is an ordinary struct
 *                                        kite_session (<kite/session.h>): send, close,
 *                                        terminate, on_message/on_frame, on_drain,
 *                                        on_error, on_close, user data, references;
 *        on_connect_error(client, e, ud) (struct kite_client_options) it could not
 *                                        open: e->code and a message in words, e.g.
 *                                        "server answered 200 OK instead of 101
 *                                        Switching Protocols". No session exists and
 *                                        no other callback fires.
 *      unless kite_client_cancel() was called first (then neither fires).
 *
 * A client session is a session like a server's, in the client role: every frame it
 * sends is masked with a fresh key from a CSPRNG (RFC 6455 §5.3), a masked frame from
 * the server fails the connection with 1002 (§5.1), and every other rule of the
 * protocol core applies as on the server (1002, 1007, 1009, ping and close timeouts).
 * After a close handshake it waits for the server to close TCP first (§7.1.1), at most
 * two seconds.
 *
 * Threads: kite_connect() and kite_client_cancel() are called on the loop's thread (or
 * before the loop runs); callbacks run on it. A session is then used as <kite/session.h>
 * says (kite_session_post/send_async from other threads).
 */
#ifndef KITE_CLIENT_H
#define KITE_CLIENT_H

#include "kite/codec.h"
#include "kite/common.h"
#include "kite/loop.h"
#include "kite/server.h" /* struct kite_header */
#include "kite/session.h"
#include "kite/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One connection attempt, from kite_connect() until on_open or on_connect_error has
 * returned (or kite_client_cancel()); kite frees it itself. */
struct kite_client;

/* Why a connection could not be opened. Valid during the callback only. */
struct kite_connect_error {
    /*
     * KITE_ERR_RESOLVE  the host name did not resolve ("nonexistent.invalid");
     * -ECONNREFUSED, -ENETUNREACH, ... the TCP connect failed (every address tried);
     * KITE_ERR_TIMEOUT  connect_timeout_ms or handshake_timeout_ms passed;
     * KITE_ERR_TLS, KITE_ERR_TLS_VERIFY  the TLS handshake failed, or the server's
     *                   certificate did not verify (untrusted, expired, wrong host);
     * KITE_ERR_HANDSHAKE the server's answer was not an acceptable 101 (see status);
     * KITE_ERR_HTTP     the server's answer was not HTTP;
     * KITE_ERR_HEAD_TOO_BIG its head was over max_head_size;
     * -ECONNRESET, KITE_ERR_CLOSED ... the server dropped the connection mid-handshake
     *                   (KITE_ERR_CLOSED: a clean EOF);
     * KITE_ERR_NOMEM, KITE_ERR_CRYPTO (no randomness for the key), or an error of the
     * extension registry's client_accept.
     */
    int code;
    /* The server's HTTP status when it answered something other than 101 (e.g. 403,
     * 404, 200); 0 otherwise. */
    int http_status;
    /* In words, for a user or a log: "connection refused (127.0.0.1:9)", "Sec-WebSocket-
     * Accept mismatch", "server chose subprotocol 'x' which was not offered",
     * "certificate verification failed: ...". NUL-terminated, never NULL. */
    const char *message;
};

/* The connection could not be opened (see struct kite_connect_error). May call any
 * kite function, including kite_connect() for a retry; `c` is dead after it returns. */
typedef void kite_connect_error_cb(struct kite_client *c, const struct kite_connect_error *e,
                                   void *ud);

/*
 * Client options. Fill with kite_client_options_init() and change what you need. All
 * pointers are borrowed for the kite_connect() call only (strings and arrays are
 * copied), except `allocator` and `extensions`, which must outlive the session.
 */
struct kite_client_options {
    /* Allocator for the connection and its session (NULL = libc; must be thread-safe
     * if a session reference is dropped on another thread). */
    const struct kite_allocator *allocator;
    /* Protocol options of the session (kite_ws_options_init(): no pings, 15 s timeout,
     * 16 MiB frames and messages). `masking` is ignored: a client always masks. */
    struct kite_ws_options ws;
    /* Outgoing queue limits (kite_send_limits_init()). */
    struct kite_send_limits send;
    /* KITE_MODE_DEFAULT (on_message gets whole messages; pings answered; close
     * handshake run for you) or KITE_MODE_RAW (on_frame gets every frame; needs
     * callbacks->on_frame). Default: KITE_MODE_DEFAULT. */
    enum kite_mode mode;
    /* Subprotocols to offer in Sec-WebSocket-Protocol, in preference order (RFC 9110
     * tokens), num_protocols of them. The one the server chose is
     * kite_session_subprotocol(); a server that chooses one not offered fails the
     * connection (KITE_ERR_HANDSHAKE). */
    const char *const *protocols;
    size_t num_protocols;
    /* Extra request headers (Authorization, Cookie, ...), num_headers of them: names
     * must be tokens and values free of control characters (KITE_ERR_INVALID from
     * kite_connect otherwise). The handshake's own headers (Host, Upgrade, Connection,
     * Sec-WebSocket-*) must not be given here (KITE_ERR_INVALID). */
    const struct kite_header *headers;
    size_t num_headers;
    /* Origin header value ("https://example.com"), or NULL (default) for none. */
    const char *origin;
    /* Resolving and connecting (all addresses) must finish within this. Default 10000 */
    uint32_t connect_timeout_ms;
    /* TLS handshake plus the HTTP upgrade must finish within this. Default 10000 */
    uint32_t handshake_timeout_ms;
    /* The response head may be at most this many bytes. Default 8192 */
    uint32_t max_head_size;
    /* wss:// trust: CA file or directory, server_name override, `insecure` for tests.
     * NULL (default): verify against the system trust store and check the host name. */
    const struct kite_tls_client_options *tls;
    /* Extensions to offer (<kite/extension.h>, e.g. permessage-deflate), or NULL
     * (default: offer none, and refuse a server that accepts any). Borrowed: must
     * outlive every session made with it. permessage-deflate keeps a few idle zlib
     * streams per thread: on a loop of your own, call kite_pmd_pool_trim() on its
     * thread before that thread exits (or before freeing the allocator). */
    const struct kite_ext_list *extensions;
    /* See kite_connect_error_cb. NULL: failures are silent (kite_client_run() still
     * returns them). */
    kite_connect_error_cb *on_connect_error;
};

/* Fill `o` with the defaults documented on each field. */
KITE_EXTERN void kite_client_options_init(struct kite_client_options *o);

/*
 * Connect to `url` on `loop`:
 *   ws://HOST[:PORT][/PATH][?QUERY]   port 80 by default
 *   wss://HOST[:PORT][/PATH][?QUERY]  port 443 by default, TLS
 * HOST is a name, an IPv4 address, or an IPv6 address in brackets ("[::1]"). The
 * scheme is case-insensitive; no user info, no fragment (RFC 6455 §3).
 *
 * `o` may be NULL (defaults) and is copied; `cb` is copied (every member may be NULL,
 * except on_frame in raw mode); `ud` is the session's initial user data, and is also
 * passed to on_connect_error. On KITE_OK, *out (if out is not NULL) is the attempt's
 * handle, valid until on_open or on_connect_error has returned, for
 * kite_client_cancel(); the outcome is reported by a callback later, never from inside
 * this call (see the file comment).
 *
 * Returns KITE_OK, or without calling anything: KITE_ERR_URL (malformed URL, a scheme
 * other than ws/wss, a bad port), KITE_ERR_INVALID (NULL loop/url/cb, raw mode without
 * on_frame, a bad option: timeout 0, a protocol that is not a token, a bad header),
 * KITE_ERR_NOMEM, KITE_ERR_CRYPTO.
 */
KITE_EXTERN int kite_connect(struct kite_loop *loop, const char *url,
                             const struct kite_client_options *o,
                             const struct kite_ws_callbacks *cb, void *ud,
                             struct kite_client **out);

/* Abandon a connection attempt that has not opened yet: closes the socket, and neither
 * on_open nor on_connect_error will fire. Loop thread. Must not be called once either
 * callback has started (the handle is dead then). NULL is a no-op. */
KITE_EXTERN void kite_client_cancel(struct kite_client *c);

/* The URL being connected to (as given). Valid as long as the handle. */
KITE_EXTERN const char *kite_client_url(const struct kite_client *c);

/*
 * For simple programs and tests: make a loop, connect, run until the session has ended
 * (or the connection failed), free the loop (and the thread's idle permessage-deflate
 * streams, kite_pmd_pool_trim()). `cb` is used as with kite_connect();
 * callbacks run on this thread, and from them every session function may be used.
 * Returns KITE_OK when the session opened (however it ended later: see the close info
 * in on_close), the kite_connect() error, or the connection's error code; then, if
 * `err` is not NULL, err[0..errlen) holds the message (NUL-terminated).
 */
KITE_EXTERN int kite_client_run(const char *url, const struct kite_client_options *o,
                                const struct kite_ws_callbacks *cb, void *ud, char *err,
                                size_t errlen);

#ifdef __cplusplus
}
#endif
#endif

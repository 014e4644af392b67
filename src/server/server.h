/*
 * server — internal structures of the WebSocket server (include/kite/server.h is the
 * public side): the app, its routes and listeners, HTTP connections before the upgrade,
 * and the request view handed to callbacks.
 *
 * A connection starts as a struct kite__hconn (HTTP/1.1: request heads, plain
 * responses, keep-alive) and, on a successful upgrade, hands its transport to a new
 * struct kite_session (src/session) and goes away. Both count towards
 * max_connections; the app keeps a list of each for the graceful shutdown.
 */
#ifndef KITE_SERVER_SERVER_H
#define KITE_SERVER_SERVER_H

#include <stdatomic.h>

#include "http/handshake.h"
#include "http/http.h"
#include "kite/server.h"
#include "loop/loop.h"
#include "net/listener.h"
#include "net/sockutil.h"
#include "net/tls.h"
#include "net/transport.h"
#include "server/router.h"
#include "session/session.h"

/* How long a connection we are closing waits for the peer's EOF after our last byte
 * (so an error response is not destroyed by a reset). */
#define KITE__HCONN_LINGER_MS 1000
/* Stop reading a keep-alive connection while this much response output is queued. */
#define KITE__HCONN_OUT_HIGH (64u * 1024u)

struct kite_route {
    struct kite_app *app;
    struct kite_route *next; /* the app's list */
    uint8_t kind;            /* enum kite__route_kind */
    /* plain routes */
    kite_http_handler *handler;
    void *ud;
    /* WebSocket routes: what every session of the route shares */
    /* scfg.ws points at a published options block (the route's own when own_ws, else
     * the app's current one); scfg.send at `send` below or the app's. */
    struct kite__session_cfg scfg;
    bool own_ws;                   /* kite_route_set_ws_options() was called */
    struct kite_send_limits send;  /* own limits when scfg.send == &send */
    char *protocol;                /* required subprotocol, owned, or NULL */
    kite_protocol_select_cb *select;
    /* Extensions: the route's own registry (borrowed; NULL with own_exts: none) when
     * own_exts, else the app's, read at each upgrade. */
    const struct kite_ext_list *exts;
    bool own_exts;
};

struct kite__app_listener {
    struct kite__listener l;
    int fd;
    struct kite__addr addr; /* bound address */
    struct kite_tls_server_ctx *tls; /* wss:// listener, or NULL for ws:// */
    struct kite__app_listener *next;
};

enum kite__app_state {
    KITE__APP_NEW = 0,      /* not run yet */
    KITE__APP_RUNNING = 1,  /* accepting */
    KITE__APP_STOPPING = 2, /* graceful shutdown in progress */
    KITE__APP_DONE = 3,     /* ran and stopped */
};

struct kite__hconn;

/*
 * Protocol options as sessions see them: every session's codec points at one of these
 * (kite_codec_config.shared_options) instead of carrying a copy. A change publishes a
 * new block and never edits one in place, so sessions already open keep the options
 * they started with; the blocks are freed with the app, after its last session.
 */
struct kite__ws_block {
    struct kite__ws_block *next;
    struct kite_ws_options ws;
};

struct kite_app {
    /* Copied. opt.send is the app's send limits; opt.ws the first protocol options,
     * then ws_cur (kite_app_set_ws_options) is the current ones. */
    struct kite_app_options opt;
    const struct kite_ws_options *ws_cur; /* opt.ws or the newest of ws_blocks */
    struct kite__ws_block *ws_blocks;     /* published by the setters; owned */
    const struct kite_allocator *alloc;
    struct kite_loop *loop;
    bool own_loop;
    bool watching_signals;
    bool drained;  /* shutdown: the last connection is gone */
    uint8_t state; /* enum kite__app_state */
    atomic_bool stop_requested;
    struct kite_loop_task stop_task; /* kite_app_stop() from any thread */
    struct kite__timer shutdown_timer;
    struct kite__router router;
    struct kite_route *routes;
    struct kite__app_listener *listeners;
    size_t nlisteners;
    struct kite__hconn *hconns;    /* HTTP connections */
    struct kite_session *sessions; /* open WebSocket sessions */
    size_t nconns;                 /* hconns + sessions */
    size_t nsessions;
    uint32_t max_conns; /* resolved max_connections */
    /* Extensions for WebSocket routes without their own: the app's registry (exts_own,
     * made by kite_app_install_extension, or one given by kite_app_set_extensions), or
     * NULL. exts_own lives until kite_app_free: sessions' instances read its configs. */
    const struct kite_ext_list *exts;
    struct kite_ext_list *exts_own;
    /* Teardown hooks of layers above the server (sequential handlers), run by
     * kite_app_free() after the loop is gone; see kite__app_add_teardown(). */
    struct {
        void (*fn)(struct kite_app *app, void *arg);
        void *arg;
    } teardown[4];
    uint8_t nteardown;
};

/*
 * Register fn(app, arg) to run once from kite_app_free(), after the app's loop and
 * sessions are gone, so a layer above the server (src/coro) can release what it keeps
 * per app without the server depending on it. Adding the same fn and arg twice is a
 * no-op. KITE_OK, or KITE_ERR_LIMIT when the few slots are taken.
 */
int kite__app_add_teardown(struct kite_app *app, void (*fn)(struct kite_app *app, void *arg),
                           void *arg);

/* An HTTP connection: from accept to the upgrade (or to the end of keep-alive). */
struct kite__hconn {
    struct kite__transport tp;
    /* The session this connection may become, reserved at accept: its watcher is ours
     * until the upgrade (kite__session_reserve), so the fd's epoll registration never
     * has to move. Also the before-sleep write of responses (KITE__IO_FLUSH). NULL once
     * the session has it. */
    struct kite_session *s;
    struct kite__timer timer; /* request deadline, then the linger deadline */
    struct kite_app *app;
    struct kite__hconn *prev, *next;
    struct kite_buf in;  /* a partial request head (copied out of rxbuf) */
    struct kite_buf out; /* response bytes not yet written */
    size_t last_len;     /* parser hint: bytes already scanned */
    struct kite__addr peer;
    uint32_t flags; /* H_* in hconn.c */
    bool tls;       /* accepted on a TLS listener */
    struct kite_loop_task free_task;
};

/* The request view behind the public struct kite_request. */
struct kite_request {
    const struct kite_http_request *http;
    struct kite_view path;
    struct kite_view query;
    const struct kite__route_match *match;
    const struct kite__addr *peer;
    const char *subprotocol; /* chosen one (NUL-terminated), or NULL */
    const struct kite__transport *tp; /* the connection's transport (TLS details) */
};

/* A new connection from a listener (hconn.c); `tls` is the listener's TLS context, or
 * NULL for a plain one. */
void kite__hconn_accept(struct kite_app *app, int fd, const struct kite__addr *peer,
                        struct kite_tls_server_ctx *tls);
/* Close an HTTP connection now (shutdown; hconn.c). */
void kite__hconn_close(struct kite__hconn *hc);

/* The registry an upgrade on route `r` negotiates with (its own or the app's; NULL:
 * none) (server.c). */
const struct kite_ext_list *kite__route_extensions(const struct kite_route *r);

/* Bookkeeping when a connection goes away (server.c). */
void kite__app_conn_gone(struct kite_app *app);
/* Session cfg hook: unlink a session from its app (server.c). */
void kite__app_session_destroyed(struct kite_session *s, void *owner);
/* Link a session (made by an upgrade) into the app (server.c). */
void kite__app_session_add(struct kite_app *app, struct kite_session *s);

/* printf-style log line through the app's hook, if `level` is enabled (server.c). */
void kite__app_log(const struct kite_app *app, enum kite_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline bool kite__app_log_on(const struct kite_app *app, enum kite_log_level level)
{
    return app->opt.log && level <= app->opt.log_level;
}

#endif

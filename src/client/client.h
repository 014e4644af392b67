/*
 * client — internal structures of the WebSocket client (include/kite/client.h is the
 * public side; client.c describes the states).
 */
#ifndef KITE_CLIENT_CLIENT_H
#define KITE_CLIENT_CLIENT_H

#include <unistd.h>

#include "client/url.h"
#include "http/handshake.h"
#include "kite/client.h"
#include "loop/loop.h"
#include "net/resolve.h"
#include "net/sockutil.h"
#include "net/tls.h"
#include "net/transport.h"
#include "session/session.h"

/* kite_client_run's result, filled by the attempt. */
struct kite__client_run {
    int rc;      /* KITE_OK, or the connection's error */
    char *err;   /* message buffer (may be NULL) */
    size_t errlen;
};

struct kite_client {
    struct kite_loop *loop;
    const struct kite_allocator *alloc;
    /* What the session will share (it points here: the struct lives until on_free). */
    struct kite__session_cfg cfg;
    struct kite_ws_options ws;
    struct kite_send_limits send;
    /* The URL and the request */
    char *url;    /* copy of the URL as given */
    char *host;   /* host, NUL-terminated, without brackets */
    char *target; /* request target, "/path?query" */
    uint16_t port;
    bool url_tls; /* wss:// */
    struct kite_ws_client_req creq; /* views into the copies below */
    struct kite_view *protos;       /* offered subprotocols (owned strings) */
    struct kite_http_header *extra; /* extra headers (owned strings) */
    char *origin;
    char *ext_offer; /* Sec-WebSocket-Extensions offer, or NULL */
    const struct kite_ext_list *extensions;
    char key[KITE_WS_KEY_LEN + 1];
    kite_connect_error_cb *on_connect_error;
    uint32_t connect_timeout_ms;
    uint32_t handshake_timeout_ms;
    uint32_t max_head_size;
    struct kite_tls_client_ctx *tls; /* wss:// only */
    /* Progress */
    uint8_t state; /* C_* in client.c */
    bool has_tp;   /* tp is set up (else fd alone) */
    int fd;
    int last_err; /* the last connect error, for the message */
    struct kite__resolve *res;
    struct kite__addr addrs[KITE__RESOLVE_MAX];
    size_t naddrs, iaddr;
    struct kite__transport tp;
    struct kite__io io;
    struct kite__timer timer; /* connect deadline, then handshake deadline */
    struct kite_buf out;      /* request bytes not yet written */
    struct kite_buf in;       /* response bytes read so far */
    size_t last_len;          /* parser hint */
    struct kite_loop_task free_task;
    struct kite_loop_task late_task; /* a failure found inside kite_connect */
    int late_code;
    char late_msg[KITE__TLS_ERRLEN + 32];
    struct kite__client_run *run; /* kite_client_run, or NULL */
};

#endif

/*
 * peer_lws_echo — an echo server on libwebsockets, measured side by side with kite by
 * bench/run.sh.
 *
 * It follows the same convention as `kite echo`: every text or binary message comes
 * back as one message of the same type; the first stdout line is
 * "listening on ws://HOST:PORT/"; --port 0 picks a free port; SIGTERM or SIGINT ends it.
 *
 * It is written the way the libwebsockets documentation asks a server to be written:
 * one service thread, received fragments gathered into whole messages in the
 * RECEIVE callback, replies queued and written from the WRITEABLE callback. Several
 * queued replies go out in one WRITEABLE callback, checking lws_partial_buffered()
 * after each write as lws-ws-state.h says to. Text is UTF-8 checked (RFC 6455 §8.1),
 * as kite and the other peers do. Messages up to MAX_MESSAGE bytes are accepted; a
 * bigger one is closed with 1009 (RFC 6455 §7.4.1). When a connection's queue grows
 * past QUEUE_HIGH bytes, reading from it stops until the queue drains.
 *
 * It runs on lws's own poll() loop. The Debian build also offers libev and libuv loops
 * (LWS_SERVER_OPTION_LIBEV/_LIBUV): measured here, they accepted 19,000 connections
 * 1.7-2.5x faster but spent 20-50% more CPU per echoed message, and their signal
 * handling got in the way of a clean SIGTERM, so the default loop is the one measured.
 *
 * For the variant scenarios it serves wss:// with --tls-cert/--tls-key (lws's own
 * OpenSSL setup; the listening line then says wss://) and accepts permessage-deflate
 * (RFC 7692) with --deflate, through lws's built-in extension at its default settings.
 * Known limit (lws 4.1.6): when several connections receive compressed messages much
 * larger than the extension's 1 KiB buffers at once, lws's inflate fails ("invalid
 * distance too far back") and the connection closes; one connection at a time, or small
 * messages, work. So S3-PMD fails for lws and S1-PMD does not.
 *
 * Usage: peer_lws_echo [--host IPV4] [--port N] [--tls-cert PEM --tls-key PEM]
 *                      [--deflate] [-q]
 */
#include <libwebsockets.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_MESSAGE (16u * 1024 * 1024)
#define QUEUE_HIGH (4u * 1024 * 1024)

/* One message: LWS_PRE bytes of headroom for lws's frame header, then the payload. */
struct msg {
    struct msg *next;
    size_t len, cap;
    bool binary;
    unsigned char buf[]; /* LWS_PRE + cap */
};

/* Per-connection state, allocated by lws (per_session_data_size) and zeroed. */
struct pss {
    struct msg *rx;                /* message being gathered, NULL between messages */
    struct msg *head, *tail;       /* replies waiting to be written */
    size_t queued;                 /* their payload bytes */
    bool paused;                   /* rx flow control is off */
    /* --deflate: the message written last. lws's permessage-deflate compresses a big
     * message in pieces, reading our buffer again on later POLLOUTs after lws_write()
     * returned, and calls WRITEABLE only when it is done: so free it then. */
    struct msg *written;
};

static volatile sig_atomic_t g_stop;
static bool g_deflate; /* --deflate: one message per WRITEABLE callback, kept until the next */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static struct msg *msg_grow(struct msg *m, size_t need)
{
    size_t cap = m ? m->cap : 0;
    if (need <= cap)
        return m;
    size_t ncap = cap ? cap : 256;
    while (ncap < need)
        ncap *= 2;
    struct msg *n = realloc(m, sizeof(*n) + LWS_PRE + ncap);
    if (!n)
        return NULL;
    if (!m)
        n->len = 0;
    n->cap = ncap;
    n->next = NULL;
    return n;
}

static void queue_free(struct pss *p)
{
    while (p->head) {
        struct msg *m = p->head;
        p->head = m->next;
        free(m);
    }
    p->tail = NULL;
    p->queued = 0;
    free(p->rx);
    p->rx = NULL;
    free(p->written);
    p->written = NULL;
}

/* Gather one fragment; when the message is whole, queue it for the echo. */
static int on_receive(struct lws *wsi, struct pss *p, const void *in, size_t len)
{
    size_t have = p->rx ? p->rx->len : 0;
    if (have + len > MAX_MESSAGE) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
    }
    struct msg *m = msg_grow(p->rx, have + len);
    if (!m)
        return -1;
    p->rx = m;
    memcpy(m->buf + LWS_PRE + have, in, len);
    m->len = have + len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
        return 0;
    m->binary = lws_frame_is_binary(wsi) != 0;
    p->rx = NULL;
    if (p->tail)
        p->tail->next = m;
    else
        p->head = m;
    p->tail = m;
    p->queued += m->len;
    if (p->queued > QUEUE_HIGH && !p->paused) {
        p->paused = true;
        lws_rx_flow_control(wsi, 0);
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* Write queued replies until the queue is empty or lws had to buffer a write. */
static int on_writeable(struct lws *wsi, struct pss *p)
{
    free(p->written); /* lws is done with it: it calls WRITEABLE after draining */
    p->written = NULL;
    while (p->head) {
        struct msg *m = p->head;
        enum lws_write_protocol wp = m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
        if (lws_write(wsi, m->buf + LWS_PRE, m->len, wp) < (int)m->len)
            return -1;
        p->head = m->next;
        if (!p->head)
            p->tail = NULL;
        p->queued -= m->len;
        if (g_deflate) {
            p->written = m;
            if (p->head)
                lws_callback_on_writable(wsi);
            break;
        }
        free(m);
        if (lws_partial_buffered(wsi)) {
            lws_callback_on_writable(wsi);
            break;
        }
    }
    if (p->paused && p->queued <= QUEUE_HIGH / 2) {
        p->paused = false;
        lws_rx_flow_control(wsi, 1);
    }
    return 0;
}

static int echo_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct pss *p = user;
    switch (reason) {
    case LWS_CALLBACK_RECEIVE:
        return on_receive(wsi, p, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return on_writeable(wsi, p);
    case LWS_CALLBACK_CLOSED:
        queue_free(p);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    /* The first protocol is the one a handshake without Sec-WebSocket-Protocol gets. */
    {.name = "echo", .callback = echo_cb, .per_session_data_size = sizeof(struct pss)},
    {0},
};

/* lws's permessage-deflate. The offer string only matters to lws clients; a server
 * matches offers by name and answers with the extension's defaults. */
static const struct lws_extension extensions[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_max_window_bits"},
    {NULL, NULL, NULL},
};

struct args {
    const char *host;
    int port;
    bool quiet;
    bool deflate;
    const char *tls_cert, *tls_key;
};

static int parse_args(int argc, char **argv, struct args *a)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-q") == 0) {
            a->quiet = true;
        } else if (strcmp(argv[i], "--deflate") == 0) {
            a->deflate = true;
        } else if (i + 1 < argc && strcmp(argv[i], "--tls-cert") == 0) {
            a->tls_cert = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--tls-key") == 0) {
            a->tls_key = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--host") == 0) {
            a->host = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--port") == 0) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 65535)
                return -1;
            a->port = (int)v;
        } else {
            return -1;
        }
    }
    return !a->tls_cert != !a->tls_key ? -1 : 0; /* both or neither */
}

/* lws sizes its fd table from the limit at context creation: 19,000 connections need
 * the hard limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct args a = {.host = "127.0.0.1"};
    if (parse_args(argc, argv, &a) < 0) {
        fprintf(stderr, "usage: peer_lws_echo [--host IPV4] [--port N] "
                        "[--tls-cert PEM --tls-key PEM] [--deflate] [-q]\n");
        return 2;
    }
    lws_set_log_level(a.quiet ? LLL_ERR : LLL_ERR | LLL_WARN | LLL_NOTICE, NULL);
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: the signal must end lws's poll wait */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = a.port;
    info.iface = a.host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    if (a.tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = a.tls_cert;
        info.ssl_private_key_filepath = a.tls_key;
    }
    if (a.deflate)
        info.extensions = extensions;
    g_deflate = a.deflate;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) {
        fprintf(stderr, "peer_lws_echo: cannot create the lws context\n");
        return 1;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
    printf("listening on %s://%s:%d/\n", a.tls_cert ? "wss" : "ws", a.host,
           vh ? lws_get_vhost_listen_port(vh) : a.port);
    fflush(stdout);
    while (!g_stop && lws_service(ctx, 0) >= 0)
        ;
    lws_context_destroy(ctx);
    return 0;
}

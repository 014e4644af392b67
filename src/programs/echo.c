/*
 * kite echo — every text and binary message, on any path, comes back as one message of
 * the same type. The target for conformance suites and benchmarks.
 *
 * Flow control: when a reply cannot be written as fast as requests come in (the queue
 * passes the high-water mark), the session stops reading until the queue drains, so a
 * client that sends without reading slows itself down instead of growing our memory.
 */
#include <stdio.h>
#include <string.h>

#include "programs/programs.h"
#include "session/session.h"

static const char usage[] =
    "usage: kite echo [--host H] [--port N] [-q|-v] [options]\n"
    "\n"
    "Echo every WebSocket message, on any path, back as one message of the same type.\n"
    "Messages of 64 KiB or more go back in fragments as their bytes arrive.\n"
    "\n"
    "  --host H            address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
    "  --port N            port (default 9001; 0 picks a free one)\n"
    "  --max-message BYTES largest message accepted (default 16M); bigger -> close 1009\n"
    "  --max-frame BYTES   largest frame accepted (default 16M); bigger -> close 1009\n"
    "  --ping-period MS    ping every MS milliseconds (default 0: never)\n"
    "  --timeout MS        pong and close-handshake timeout (default 15000)\n"
    "  --tls-cert FILE     serve wss:// (TLS) with this PEM certificate chain ...\n"
    "  --tls-key FILE      ... and this PEM private key\n"
    "  --deflate[=PRESET]  accept permessage-deflate (RFC 7692) from clients that offer it;\n"
    "                      PRESET: balanced (default), speed, memory or max-ratio\n"
    "  --handler           echo from a sequential handler (kite_receive/kite_send, one\n"
    "                      coroutine per session) instead of callbacks\n"
    "  -q, --quiet         log errors only\n"
    "  -v, --verbose       also log every request and message\n"
    "\n"
    "The first line on stdout is 'listening on ws://HOST:PORT/' (wss:// with TLS).\n"
    "SIGINT or SIGTERM closes every session with 1001 and exits 0.\n";

static void on_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    prog_log_open(s, req);
}

/* What a send that was not simply accepted asks for. */
static void send_result(struct kite_session *s, int rc)
{
    if (rc == KITE_SEND_QUEUED)
        kite__session_pause(s); /* resumed by on_drain */
    else if (rc == KITE_ERR_NOMEM)
        kite_session_close(s, KITE_CLOSE_INTERNAL_ERROR, "out of memory");
}

/* on_message() with -v: log, then echo. Out of line, so that on_message() itself keeps
 * nothing but the session across its one call. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void echo_logged(struct kite_session *s, const struct kite_msg *m)
{
    prog_log(PROG_VERBOSE, "#%lu %s %zu bytes", prog_session_id(s),
             m->type == KITE_OP_TEXT ? "text" : "binary", m->len);
    send_result(s, kite_session_send(s, m->type, m->data, m->len, NULL));
}

static void on_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    /* Tested here: the call would cost its argument set-up on every message. */
    if (KITE_UNLIKELY(prog_verbosity >= PROG_VERBOSE)) {
        echo_logged(s, m);
        return;
    }
    int rc = kite_session_send(s, m->type, m->data, m->len, NULL);
    if (KITE_UNLIKELY(rc != KITE_SEND_OK))
        send_result(s, rc);
}

/* A large message (64 KiB or more in its first frame) comes in parts as it arrives and
 * goes back the same way, one fragment per part (RFC 6455 §5.4), so the echo never holds
 * a whole message: the first fragment carries the message's type, the last one FIN. */
static void on_message_part(struct kite_session *s, const struct kite_msg_part *p, void *ud)
{
    (void)ud;
    if (KITE_UNLIKELY(prog_verbosity >= PROG_VERBOSE) && p->last)
        prog_log(PROG_VERBOSE, "#%lu %s %llu bytes, in parts", prog_session_id(s),
                 p->type == KITE_OP_TEXT ? "text" : "binary",
                 (unsigned long long)(p->offset + p->len));
    enum kite_opcode op = p->offset == 0 ? p->type : KITE_OP_CONTINUATION;
    int rc = kite_session_send_frame(s, op, p->last, 0, p->data, p->len, NULL);
    if (KITE_UNLIKELY(rc != KITE_SEND_OK))
        send_result(s, rc);
}

static void on_drain(struct kite_session *s, void *ud)
{
    (void)ud;
    kite__session_resume(s);
}

static void on_error(struct kite_session *s, int err, void *ud)
{
    (void)ud;
    prog_log_error(s, err);
}

static void on_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    (void)ud;
    prog_log_close(s, ci);
}

static const struct kite_ws_callbacks callbacks = {
    .on_open = on_open,
    .on_message = on_message,
    .on_message_part = on_message_part,
    .on_drain = on_drain,
    .on_error = on_error,
    .on_close = on_close,
};

/* Take echo's own flag, --handler, out of argv (the shared parser does not know it).
 * Returns the new argc. */
static int take_handler_flag(int argc, char **argv, bool *handler)
{
    int n = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--handler") == 0)
            *handler = true;
        else
            argv[n++] = argv[i];
    }
    return n;
}

int prog_echo(int argc, char **argv)
{
    struct prog_opts o = {
        .name = "echo", .host = "127.0.0.1", .port = 9001, .verbosity = PROG_NORMAL};
    kite_ws_options_init(&o.ws);
    bool handler = false;
    argc = take_handler_flag(argc, argv, &handler);
    int rc = prog_parse(argc, argv, &o, usage);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct kite_app *app = prog_app_new(&o);
    if (!app)
        return 1;
    struct kite_route *echo = handler ? prog_echo_handler_route(app, "/{path...}")
                                      : kite_route_ws_callbacks(app, "/{path...}", &callbacks, NULL);
    if (!echo ||
        !kite_route_get(app, "/health", prog_health, NULL)) {
        fprintf(stderr, "kite echo: cannot add routes (out of memory)\n");
        kite_app_free(app);
        return 1;
    }
    return prog_serve(app, &o);
}

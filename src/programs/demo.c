/*
 * kite demo — the seed's echo conversation, with a page to try it in a browser:
 *   GET /        the page: type into a box, talk to /echo
 *   ws  /echo    "Please enter your name" on connect; each text X is answered "Hi, X!";
 *                "bye" in any letter case closes with 1000 "Client said BYE".
 *   GET /health  "ok"
 * /echo is a sequential handler, written like the seed's Kotlin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "programs/programs.h"

static const char usage[] =
    "usage: kite demo [--host H] [--port N] [-q|-v] [options]\n"
    "\n"
    "Serve the demo page at http://H:N/ and the seed's echo conversation at ws://H:N/echo.\n"
    "\n"
    "  --host H            address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
    "  --port N            port (default 8080; 0 picks a free one)\n"
    "  --max-message BYTES largest message accepted (default 16M); bigger -> close 1009\n"
    "  --max-frame BYTES   largest frame accepted (default 16M); bigger -> close 1009\n"
    "  --ping-period MS    ping every MS milliseconds (default 0: never)\n"
    "  --timeout MS        pong and close-handshake timeout (default 15000)\n"
    "  --tls-cert FILE     serve wss:// (TLS) with this PEM certificate chain ...\n"
    "  --tls-key FILE      ... and this PEM private key\n"
    "  --deflate[=PRESET]  permessage-deflate (RFC 7692) preset for clients that offer it:\n"
    "                      balanced (the default), speed, memory or max-ratio\n"
    "  --no-deflate        do not accept permessage-deflate\n"
    "  -q, --quiet         log errors only\n"
    "  -v, --verbose       also log every request and message\n"
    "\n"
    "The first line on stdout is 'listening on ws://HOST:PORT/' (wss:// with TLS).\n"
    "SIGINT or SIGTERM closes every session with 1001 and exits 0.\n";

/* "Hi, X!" for a received text X, with X's bytes as they are (NULs included). */
static int send_greeting(struct kite_session *s, unsigned long id, const struct kite_msg *m)
{
    char small[256];
    size_t len = m->len + 5;
    char *buf = len <= sizeof(small) ? small : malloc(len);
    if (!buf) {
        prog_log_error_as(id, KITE_ERR_NOMEM);
        return KITE_ERR_NOMEM;
    }
    memcpy(buf, "Hi, ", 4);
    memcpy(buf + 4, m->data, m->len);
    buf[len - 1] = '!';
    int rc = kite_send_text(s, buf, len);
    if (buf != small)
        free(buf);
    return rc;
}

/*
 * The seed's /echo, line for line, as a sequential handler (a coroutine on the loop):
 *   send("Please enter your name")
 *   for (frame in incoming) {
 *       frame as? Frame.Text ?: continue
 *       if (text.equals("bye", ignoreCase = true)) close(NORMAL, "Client said BYE")
 *       else send(Frame.Text("Hi, $receivedText!"))
 *   }
 * plus the program's log lines (onConnect / onClose / onError, seed 001's FAQ).
 */
static void echo(struct kite_session *s, void *ud)
{
    (void)ud;
    unsigned long id = prog_new_session_id();
    prog_log_open_as(id, s, kite_handler_request(s));
    kite_send_str(s, "Please enter your name");
    struct kite_msg m;
    int rc;
    while ((rc = kite_receive(s, &m)) == KITE_OK) {
        if (m.type != KITE_OP_TEXT)
            continue;
        prog_log(PROG_VERBOSE, "#%lu text %zu bytes", id, m.len);
        if (kite_msg_equals_ci(&m, "bye"))
            kite_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
        else
            send_greeting(s, id, &m);
    }
    if (rc != KITE_ERR_CLOSED)
        prog_log_error_as(id, rc); /* onError */
    const struct kite_close_info *ci = kite_close_reason(s);
    if (ci)
        prog_log_close_as(id, ci); /* onClose: closeReason */
}

static void page(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)req;
    (void)ud;
    res->content_type = "text/html; charset=utf-8";
    res->body = prog_demo_page;
    res->body_len = strlen(prog_demo_page);
}

int prog_demo(int argc, char **argv)
{
    struct prog_opts o = {
        .name = "demo", .host = "127.0.0.1", .port = 8080, .verbosity = PROG_NORMAL,
        .deflate = true}; /* compression on, balanced preset; --no-deflate turns it off */
    kite_ws_options_init(&o.ws);
    int rc = prog_parse(argc, argv, &o, usage);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct kite_app *app = prog_app_new(&o);
    if (!app)
        return 1;
    if (!kite_route_get(app, "/", page, NULL) || !kite_route_get(app, "/health", prog_health, NULL) ||
        !kite_route_ws(app, "/echo", echo, NULL)) {
        fprintf(stderr, "kite demo: cannot add routes (out of memory)\n");
        kite_app_free(app);
        return 1;
    }
    return prog_serve(app, &o);
}

/*
 * kite demo — the seed's echo conversation, with a page to try it in a browser:
 *   GET /        the page: type into a box, talk to /echo
 *   ws  /echo    "Please enter your name" on connect; each text X is answered "Hi, X!";
 *                "bye" in any letter case closes with 1000 "Client said BYE".
 *   GET /health  "ok"
 * Written with callbacks; the sequential-handler version will replace it.
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

/* ASCII case-insensitive equality with a lowercase literal (Ktor's ignoreCase = true). */
static bool equals_ci(const uint8_t *p, size_t len, const char *lower)
{
    size_t n = strlen(lower);
    if (len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (c >= 'A' && c <= 'Z')
            c = (uint8_t)(c + 32);
        if (c != (uint8_t)lower[i])
            return false;
    }
    return true;
}

static void echo_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    prog_log_open(s, req);
    kite_session_send_str(s, "Please enter your name");
}

/* The seed: frame as? Frame.Text ?: continue; "bye" closes, anything else is greeted. */
static void echo_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    if (m->type != KITE_OP_TEXT)
        return;
    prog_log(PROG_VERBOSE, "#%lu text %zu bytes", prog_session_id(s), m->len);
    if (equals_ci(m->data, m->len, "bye")) {
        kite_session_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
        return;
    }
    char buf[256];
    if (m->len <= sizeof(buf) - 5) {
        int n = snprintf(buf, sizeof(buf), "Hi, %.*s!", (int)m->len, (const char *)m->data);
        kite_session_send_text(s, buf, (size_t)n, NULL);
        return;
    }
    /* A long name: build the reply in a heap buffer. */
    size_t len = m->len + 5;
    char *big = malloc(len);
    if (!big)
        return;
    memcpy(big, "Hi, ", 4);
    memcpy(big + 4, m->data, m->len);
    big[len - 1] = '!';
    kite_session_send_text(s, big, len, NULL);
    free(big);
}

static void echo_error(struct kite_session *s, int err, void *ud)
{
    (void)ud;
    prog_log_error(s, err);
}

static void echo_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    (void)ud;
    prog_log_close(s, ci);
}

static const struct kite_ws_callbacks echo_callbacks = {
    .on_open = echo_open,
    .on_message = echo_message,
    .on_error = echo_error,
    .on_close = echo_close,
};

static void page(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)req;
    (void)ud;
    res->content_type = "text/html; charset=utf-8";
    res->body = prog_demo_page;
    res->body_len = strlen(prog_demo_page);
}

static void health(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)req;
    (void)ud;
    res->body = "ok\n";
    res->body_len = 3;
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
    if (!kite_route_get(app, "/", page, NULL) || !kite_route_get(app, "/health", health, NULL) ||
        !kite_route_ws_callbacks(app, "/echo", &echo_callbacks, NULL)) {
        fprintf(stderr, "kite demo: cannot add routes (out of memory)\n");
        kite_app_free(app);
        return 1;
    }
    return prog_serve(app, &o);
}

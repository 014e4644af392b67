/*
 * Chat rooms with the event-callback API.
 *
 *   ./example_chat_callbacks [port]        (default 8081; 0 picks a free port)
 *   then connect to ws://127.0.0.1:PORT/chat/ROOM?name=NAME with any WebSocket client;
 *   every text message is sent to everyone in the same room as "NAME: text".
 *
 * What it shows: path parameters and query values in on_open, per-session user data,
 * broadcasting with send statuses, a lossy send policy for slow readers, on_error and
 * on_close, and a plain GET route next to the WebSocket one. Ctrl-C closes every
 * session with 1001 and exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kite/kite.h>

struct member {
    struct kite_session *s;
    struct member *next; /* in the room's list */
    char room[64];
    char name[32];
    unsigned dropped; /* messages this slow reader missed */
};

/* Every member of every room: small demos can afford a scan per message. */
static struct member *members;

/* Copy a raw, percent-encoded value into a NUL-terminated buffer, decoded. */
static void copy_decoded(struct kite_str v, char *out, size_t cap, const char *fallback)
{
    ssize_t n = v.ptr ? kite_url_decode(v.ptr, v.len, out, cap - 1, true) : -1;
    if (n <= 0)
        snprintf(out, cap, "%s", fallback);
    else
        out[n] = '\0';
}

static void broadcast(const char *room, const char *text, size_t len)
{
    for (struct member *m = members; m; m = m->next) {
        if (strcmp(m->room, room) != 0)
            continue;
        int rc = kite_session_send_text(m->s, text, len, NULL);
        if (rc == KITE_SEND_DROPPED)
            m->dropped++; /* over its hard limit: this reader is too slow */
    }
}

static void chat_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    struct member *m = calloc(1, sizeof(*m));
    if (!m) {
        kite_session_close(s, KITE_CLOSE_TRY_AGAIN_LATER, "server busy");
        return;
    }
    struct kite_str v = {NULL, 0};
    kite_request_param(req, "room", &v);
    copy_decoded(v, m->room, sizeof(m->room), "lobby");
    v.ptr = NULL;
    kite_request_query_param(req, "name", &v);
    copy_decoded(v, m->name, sizeof(m->name), "anonymous");
    m->s = s;
    m->next = members;
    members = m;
    kite_session_set_user_data(s, m); /* every later callback gets it as `ud` */

    char addr[64], line[160];
    kite_request_remote_addr(req, addr, sizeof(addr));
    printf("%s joined %s from %s\n", m->name, m->room, addr);
    int n = snprintf(line, sizeof(line), "* %s joined", m->name);
    broadcast(m->room, line, (size_t)n);
}

static void chat_message(struct kite_session *s, const struct kite_msg *msg, void *ud)
{
    struct member *m = ud;
    (void)s;
    if (msg->type != KITE_OP_TEXT)
        return;
    char line[1024];
    int n =
        snprintf(line, sizeof(line), "%s: %.*s", m->name, (int)msg->len, (const char *)msg->data);
    if (n >= (int)sizeof(line)) {
        /* Long messages are cut; step back over continuation bytes (10xxxxxx) so the
         * cut falls between characters and the text stays valid UTF-8 (RFC 6455 §5.6). */
        n = (int)sizeof(line) - 1;
        while (n > 0 && ((unsigned char)line[n] & 0xC0) == 0x80)
            n--;
    }
    broadcast(m->room, line, (size_t)n);
}

static void chat_error(struct kite_session *s, int err, void *ud)
{
    struct member *m = ud;
    (void)s;
    fprintf(stderr, "%s: %s\n", m ? m->name : "?", kite_strerror(err));
}

static void chat_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    struct member *m = ud;
    (void)s;
    if (!m)
        return;
    for (struct member **pp = &members; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    printf("%s left %s: %u %.*s%s (missed %u)\n", m->name, m->room, (unsigned)ci->code,
           (int)ci->reason_len, ci->reason, ci->clean ? "" : " (not clean)", m->dropped);
    char line[160];
    int n = snprintf(line, sizeof(line), "* %s left", m->name);
    broadcast(m->room, line, (size_t)n);
    free(m); /* the session pointer is dead after on_close returns */
}

static const struct kite_ws_callbacks chat = {
    .on_open = chat_open,
    .on_message = chat_message,
    .on_error = chat_error,
    .on_close = chat_close,
};

static void index_page(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)req;
    (void)ud;
    static const char body[] = "connect to ws://HOST:PORT/chat/ROOM?name=NAME\n";
    res->body = body;
    res->body_len = sizeof(body) - 1;
}

int main(int argc, char **argv)
{
    unsigned port = argc > 1 ? (unsigned)atoi(argv[1]) : 8081;
    struct kite_app_options o;
    kite_app_options_init(&o);
    o.ws.ping_period_ms = 30000; /* find dead peers within ~45 s */
    struct kite_app *app = kite_app_new(&o);
    if (!app)
        return 1;
    struct kite_route *r = kite_route_ws_callbacks(app, "/chat/{room}", &chat, NULL);
    struct kite_send_limits lim;
    kite_send_limits_init(&lim);
    lim.hard_limit = 1 << 20;           /* 1 MiB per reader... */
    lim.policy = KITE_SEND_POLICY_DROP; /* ...then a slow reader misses messages */
    if (!r || kite_route_set_send_limits(r, &lim) != KITE_OK ||
        !kite_route_get(app, "/", index_page, NULL)) {
        kite_app_free(app);
        return 1;
    }
    int rc = kite_app_listen(app, "127.0.0.1", (uint16_t)port);
    if (rc < 0) {
        fprintf(stderr, "cannot listen on port %u: %s\n", port, kite_strerror(rc));
        kite_app_free(app);
        return 1;
    }
    char url[64];
    kite_app_listener_url(app, 0, url, sizeof(url));
    printf("listening on %s\n", url);
    fflush(stdout);
    rc = kite_app_run(app, NULL, 0);
    kite_app_free(app);
    return rc == KITE_OK ? 0 : 1;
}

/*
 * kite cat URL — a WebSocket client on the terminal or in a pipe (what people reach for
 * wscat or websocat for): each line of stdin goes out as one text message (binary with
 * --binary), each message received is printed on its own line on stdout.
 *
 * stdin is watched by the loop (never a blocking read: one read(2) per readiness, so
 * the descriptor's blocking mode, shared with the shell, is left alone); a regular file
 * on stdin, which epoll cannot watch, is read in steps between loop iterations. A send
 * that fills the outgoing queue stops reading stdin until on_drain.
 *
 * The end: Ctrl-C sends close 1000 at once; stdin's EOF does too, once the answers to
 * what was sent have had time to arrive (a server that already got our close may not
 * send them any more, RFC 6455 §5.5.1): when as many messages came back as lines went
 * out and the connection has been quiet for a moment, or after --eof-wait ms without a
 * message. Then the server's reply is awaited (at most --close-timeout ms); a second
 * Ctrl-C kills. The close is shown on stderr as
 * "closed: CODE REASON". Exit status: 0 after a clean close (either side started it),
 * 1 after a connection or handshake failure or an unclean end, 2 for bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop/loop.h"
#include "programs/programs.h"

static const char usage[] =
    "usage: kite cat [options] URL\n"
    "\n"
    "Connect to URL (ws://HOST[:PORT]/PATH or wss://...). Each line on stdin is sent as a\n"
    "text message; each message received is printed on its own line on stdout. At the\n"
    "end of stdin (or on Ctrl-C) the connection is closed with 1000; the close code and\n"
    "reason are shown on stderr as 'closed: CODE REASON'.\n"
    "\n"
    "  --binary             send each line as a binary message\n"
    "  --deflate            offer permessage-deflate (RFC 7692) compression\n"
    "  --header 'N: V'      add a request header (repeatable)\n"
    "  --subprotocol P      offer subprotocol P (repeatable, in preference order)\n"
    "  --origin O           send Origin: O\n"
    "  --ca FILE            trust the CA certificates in FILE (PEM) for wss://\n"
    "  --insecure           do not verify the server's certificate (testing only)\n"
    "  --connect-timeout MS resolve + connect + handshake bound (default 10000)\n"
    "  --close-timeout MS   wait this long for the server's close reply (default 5000)\n"
    "  --eof-wait MS        after stdin ends, close once as many messages came back as\n"
    "                       lines were sent, or after MS ms without one (default 2000;\n"
    "                       0: close at once)\n"
    "  --ping-period MS     ping every MS milliseconds (default 0: never)\n"
    "  --max-message BYTES  largest message accepted (default 16M)\n"
    "  -q, --quiet          no 'connected' line; errors and the close line only\n"
    "\n"
    "Exit status: 0 after a clean close, 1 when the connection failed or ended\n"
    "uncleanly, 2 for bad usage.\n";

#define MAX_LIST 32
#define LINE_MAX_BYTES (16u << 20)

struct cat {
    const char *url;
    bool binary, quiet, insecure, deflate;
    const char *ca, *origin;
    uint32_t connect_timeout_ms, close_timeout_ms, ping_ms, eof_wait_ms;
    uint64_t max_message;
    struct kite_header headers[MAX_LIST];
    char header_store[MAX_LIST][512];
    size_t nheaders;
    const char *protocols[MAX_LIST];
    size_t nprotocols;
    /* running state */
    struct kite_loop *loop;
    struct kite_session *s;
    struct kite__io in; /* stdin watcher (pipes, terminals) */
    bool in_file;       /* stdin is a regular file: read it in posted steps */
    bool in_eof, in_paused, closing, ended;
    uint64_t sent, received;    /* messages each way */
    uint64_t last_activity;     /* loop time of the last send or receive */
    struct kite__timer eof_timer; /* the wait after stdin's end */
    struct kite_buf line; /* a partial line */
    int status;           /* exit status */
};

static struct cat g_cat;

/* ---- options -------------------------------------------------------------------------- */

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "kite cat: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (try 'kite cat --help')\n");
    return 2;
}

static int parse_ms(const char *v, uint32_t *out, bool zero_ok)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || (n == 0 && !zero_ok) || n > UINT32_MAX)
        return -1;
    *out = (uint32_t)n;
    return 0;
}

/* "Name: value" -> a kite_header with copies in header_store. */
static int add_header(struct cat *c, const char *v)
{
    if (c->nheaders == MAX_LIST)
        return bad("too many --header options%s", "");
    char *st = c->header_store[c->nheaders];
    snprintf(st, sizeof(c->header_store[0]), "%s", v);
    char *colon = strchr(st, ':');
    if (!colon || colon == st)
        return bad("--header needs 'Name: value', got '%s'", v);
    *colon = '\0';
    char *val = colon + 1;
    while (*val == ' ' || *val == '\t')
        val++;
    c->headers[c->nheaders++] = (struct kite_header){st, val};
    return 0;
}

static int apply_valued(struct cat *c, const char *opt, const char *v)
{
    uint32_t ms;
    if (strcmp(opt, "--header") == 0)
        return add_header(c, v);
    if (strcmp(opt, "--subprotocol") == 0) {
        if (c->nprotocols == MAX_LIST)
            return bad("too many --subprotocol options%s", "");
        c->protocols[c->nprotocols++] = v;
    } else if (strcmp(opt, "--origin") == 0) {
        c->origin = v;
    } else if (strcmp(opt, "--ca") == 0) {
        c->ca = v;
    } else if (strcmp(opt, "--eof-wait") == 0) {
        if (parse_ms(v, &c->eof_wait_ms, true) < 0)
            return bad("invalid milliseconds '%s'", v);
    } else if (strcmp(opt, "--connect-timeout") == 0 || strcmp(opt, "--close-timeout") == 0 ||
               strcmp(opt, "--ping-period") == 0) {
        if (parse_ms(v, &ms, opt[2] == 'p') < 0)
            return bad("invalid milliseconds '%s'", v);
        if (opt[2] == 'p')
            c->ping_ms = ms;
        else if (opt[4] == 'n')
            c->connect_timeout_ms = ms;
        else
            c->close_timeout_ms = ms;
    } else if (strcmp(opt, "--max-message") == 0) {
        char *end;
        unsigned long long n = strtoull(v, &end, 10);
        if (end == v || n == 0)
            return bad("invalid size '%s'", v);
        if (*end == 'k' || *end == 'K')
            n <<= 10;
        else if (*end == 'm' || *end == 'M')
            n <<= 20;
        c->max_message = n;
    } else {
        return bad("unknown option '%s'", opt);
    }
    return 0;
}

static bool takes_value(const char *o)
{
    static const char *const with[] = {"--header",        "--subprotocol",  "--origin",
                                       "--ca",            "--connect-timeout", "--close-timeout",
                                       "--ping-period",   "--max-message", "--eof-wait"};
    for (size_t i = 0; i < sizeof(with) / sizeof(with[0]); i++)
        if (strcmp(o, with[i]) == 0)
            return true;
    return false;
}

/* Returns 0 to go on, 1 after --help, 2 after an error. */
static int parse(int argc, char **argv, struct cat *c)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        if (strcmp(a, "--binary") == 0) {
            c->binary = true;
        } else if (strcmp(a, "--deflate") == 0) {
            c->deflate = true;
        } else if (strcmp(a, "--insecure") == 0 || strcmp(a, "-k") == 0) {
            c->insecure = true;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            c->quiet = true;
        } else if (a[0] == '-' && a[1] == '-' && strchr(a, '=')) {
            char opt[32];
            size_t n = (size_t)(strchr(a, '=') - a);
            snprintf(opt, sizeof(opt), "%.*s", (int)n, a);
            if (!takes_value(opt) || apply_valued(c, opt, a + n + 1))
                return takes_value(opt) ? 2 : bad("unknown option '%s'", a);
        } else if (takes_value(a)) {
            if (i + 1 >= argc)
                return bad("option %s needs a value", a);
            if (apply_valued(c, a, argv[++i]))
                return 2;
        } else if (a[0] == '-' && a[1]) {
            return bad("unknown option '%s'", a);
        } else if (!c->url) {
            c->url = a;
        } else {
            return bad("one URL only; '%s' is extra", a);
        }
    }
    if (!c->url)
        return bad("missing URL%s", "");
    return 0;
}

/* ---- sending stdin --------------------------------------------------------------------- */

static void stdin_stop(struct cat *c)
{
    if (!c->in_file)
        kite__io_stop(c->loop, &c->in);
}

#define EOF_QUIET_MS 20 /* quiet time that, with every answer in, means "done" */

/* Start the close handshake (stdin's end or Ctrl-C). */
static void begin_close(struct cat *c)
{
    if (c->closing || !c->s)
        return;
    c->closing = true;
    stdin_stop(c);
    int rc = kite_session_close(c->s, KITE_CLOSE_NORMAL, NULL);
    if (rc < 0 && rc != KITE_ERR_CLOSED)
        kite_session_terminate(c->s);
}

static void send_line(struct cat *c, const uint8_t *p, size_t n)
{
    if (n && p[n - 1] == '\r')
        n--; /* CRLF input: the CR is part of the line ending */
    enum kite_opcode op = c->binary ? KITE_OP_BINARY : KITE_OP_TEXT;
    if (op == KITE_OP_TEXT && !kite_utf8_valid(p, n)) {
        fprintf(stderr, "kite cat: a line is not valid UTF-8; not sent (use --binary)\n");
        return;
    }
    int rc = kite_session_send(c->s, op, p, n, NULL);
    if (rc == KITE_SEND_OK || rc == KITE_SEND_QUEUED) {
        c->sent++;
        c->last_activity = kite_loop_now(c->loop);
    }
    if (rc == KITE_SEND_QUEUED && !c->in_paused) {
        c->in_paused = true; /* resumed by on_drain */
        stdin_stop(c);
    } else if (rc < 0) {
        fprintf(stderr, "kite cat: cannot send: %s\n", kite_strerror(rc));
    }
}

/* Split buf into lines; keep the tail in c->line. */
static void take_input(struct cat *c, const uint8_t *buf, size_t n)
{
    while (n > 0 && !c->closing && kite_session_is_open(c->s)) {
        const uint8_t *nl = memchr(buf, '\n', n);
        if (!nl) {
            if (c->line.len + n > LINE_MAX_BYTES) {
                fprintf(stderr, "kite cat: a line is over %u bytes; not sent\n", LINE_MAX_BYTES);
                c->line.len = 0;
                return;
            }
            if (kite__buf_append(&c->line, NULL, buf, n) < 0)
                begin_close(c);
            return;
        }
        size_t k = (size_t)(nl - buf);
        if (c->line.len) {
            if (kite__buf_append(&c->line, NULL, buf, k) < 0) {
                begin_close(c);
                return;
            }
            send_line(c, kite__buf_head(&c->line), c->line.len);
            kite__buf_consume(&c->line, c->line.len);
        } else {
            send_line(c, buf, k);
        }
        buf += k + 1;
        n -= k + 1;
    }
}

/* After stdin's end: close once the answers are in, or the server has gone quiet. */
static void eof_check(struct cat *c)
{
    if (c->closing || !c->s)
        return;
    uint64_t now = kite_loop_now(c->loop), quiet = now - c->last_activity;
    if (quiet >= c->eof_wait_ms || (c->received >= c->sent && quiet >= EOF_QUIET_MS)) {
        begin_close(c);
        return;
    }
    uint64_t wait = c->received >= c->sent ? EOF_QUIET_MS - quiet : c->eof_wait_ms - quiet;
    kite__timer_start(c->loop, &c->eof_timer, wait);
}

static void eof_timer_cb(struct kite_loop *loop, struct kite__timer *t)
{
    (void)loop;
    eof_check(kite__container_of(t, struct cat, eof_timer));
}

static void stdin_eof(struct cat *c)
{
    c->in_eof = true;
    stdin_stop(c);
    if (c->line.len && kite_session_is_open(c->s))
        send_line(c, kite__buf_head(&c->line), c->line.len); /* a last line without \n */
    kite__buf_free(&c->line, NULL);
    if (c->eof_wait_ms == 0)
        begin_close(c);
    else
        eof_check(c);
}

/* One read(2): called only when stdin is readable (or a regular file), so it never
 * blocks. Returns false at EOF or on an error. */
static bool read_some(struct cat *c)
{
    uint8_t buf[65536];
    ssize_t n = read(0, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0) {
        if (n < 0)
            fprintf(stderr, "kite cat: reading stdin: %s\n", strerror(errno));
        stdin_eof(c);
        return false;
    }
    take_input(c, buf, (size_t)n);
    return true;
}

static void stdin_io(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    (void)loop;
    (void)io;
    (void)events;
    if (!g_cat.closing)
        read_some(&g_cat);
}

static void file_step(struct kite_loop *loop, void *arg);

static void file_schedule(struct cat *c)
{
    if (kite_loop_post(c->loop, file_step, c) < 0)
        stdin_eof(c);
}

/* A regular file: one chunk per loop turn, so the socket is served in between. */
static void file_step(struct kite_loop *loop, void *arg)
{
    struct cat *c = arg;
    (void)loop;
    if (c->closing || c->in_paused || c->ended)
        return;
    if (read_some(c) && !c->in_paused)
        file_schedule(c);
}

static void stdin_start(struct cat *c)
{
    if (c->in_eof || c->closing)
        return;
    if (c->in_file) {
        file_schedule(c);
        return;
    }
    kite__io_init(&c->in, 0, stdin_io);
    int rc = kite__io_start(c->loop, &c->in, KITE__IO_READ);
    if (rc == -EPERM) {
        c->in_file = true; /* epoll cannot watch regular files: they never block */
        file_schedule(c);
    } else if (rc < 0) {
        fprintf(stderr, "kite cat: cannot watch stdin: %s\n", kite_strerror(rc));
        stdin_eof(c);
    }
}

/* ---- session callbacks ----------------------------------------------------------------- */

static void on_signal(struct kite_loop *loop, int signo, void *arg)
{
    struct cat *c = arg;
    (void)signo;
    kite_loop_unwatch_signals(loop); /* a second Ctrl-C kills */
    begin_close(c);
}

static void on_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    struct cat *c = ud;
    (void)req;
    c->s = s;
    c->loop = kite_session_loop(s);
    c->last_activity = kite_loop_now(c->loop);
    kite__timer_init(&c->eof_timer, eof_timer_cb);
    if (!c->quiet) {
        const char *p = kite_session_subprotocol(s);
        bool z = kite_session_extension(s, &kite_ext_permessage_deflate) != NULL;
        fprintf(stderr, "connected: %s%s%s%s\n", c->url, p ? " subprotocol " : "", p ? p : "",
                z ? " permessage-deflate" : "");
    }
    (void)kite_loop_watch_signals(c->loop, on_signal, c);
    stdin_start(c);
}

static void on_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    struct cat *c = ud;
    (void)s;
    fwrite(m->data, 1, m->len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    c->received++;
    c->last_activity = kite_loop_now(c->loop);
    if (c->in_eof)
        eof_check(c);
}

static void on_drain(struct kite_session *s, void *ud)
{
    struct cat *c = ud;
    (void)s;
    if (!c->in_paused)
        return;
    c->in_paused = false;
    stdin_start(c);
}

static void on_error(struct kite_session *s, int err, void *ud)
{
    (void)s;
    (void)ud;
    fprintf(stderr, "kite cat: %s\n", kite_strerror(err));
}

static void on_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    struct cat *c = ud;
    (void)s;
    c->ended = true;
    stdin_stop(c);
    kite__timer_stop(c->loop, &c->eof_timer);
    kite_loop_unwatch_signals(c->loop);
    if (ci->code == KITE_CLOSE_ABNORMAL)
        fprintf(stderr, "closed: 1006 (connection lost without a close frame)\n");
    else if (ci->code == KITE_CLOSE_NO_STATUS)
        fprintf(stderr, "closed: 1005 (no status code)\n");
    else
        fprintf(stderr, "closed: %u%s%.*s\n", (unsigned)ci->code, ci->reason_len ? " " : "",
                (int)ci->reason_len, ci->reason);
    c->status = ci->clean ? 0 : 1;
    c->s = NULL;
}

static const struct kite_ws_callbacks callbacks = {
    .on_open = on_open,
    .on_message = on_message,
    .on_drain = on_drain,
    .on_error = on_error,
    .on_close = on_close,
};

int prog_cat(int argc, char **argv)
{
    struct cat *c = &g_cat;
    memset(c, 0, sizeof(*c));
    c->connect_timeout_ms = 10000;
    c->close_timeout_ms = 5000;
    c->eof_wait_ms = 2000;
    c->status = 1;
    int rc = parse(argc, argv, c);
    if (rc)
        return rc == 1 ? 0 : rc;
    struct kite_tls_client_options tls;
    kite_tls_client_options_init(&tls);
    tls.ca_file = c->ca;
    tls.insecure = c->insecure;
    struct kite_client_options o;
    kite_client_options_init(&o);
    o.tls = &tls;
    o.protocols = c->protocols;
    o.num_protocols = c->nprotocols;
    o.headers = c->headers;
    o.num_headers = c->nheaders;
    o.origin = c->origin;
    o.connect_timeout_ms = c->connect_timeout_ms;
    o.handshake_timeout_ms = c->connect_timeout_ms;
    o.ws.timeout_ms = c->close_timeout_ms;
    o.ws.ping_period_ms = c->ping_ms;
    if (c->max_message)
        o.ws.max_message_size = o.ws.max_frame_size = c->max_message;
    struct kite_ext_list *ext = NULL;
    if (c->deflate) {
        ext = kite_ext_list_new(NULL);
        if (!ext || kite_ext_list_install(ext, &kite_ext_permessage_deflate, NULL) < 0) {
            fprintf(stderr, "kite cat: cannot set up permessage-deflate\n");
            kite_ext_list_free(ext);
            return 1;
        }
        o.extensions = ext;
    }
    char err[512];
    rc = kite_client_run(c->url, &o, &callbacks, c, err, sizeof(err));
    kite__buf_free(&c->line, NULL);
    kite_ext_list_free(ext);
    kite_pmd_pool_trim();
    if (rc == KITE_ERR_URL) {
        fprintf(stderr, "kite cat: invalid URL '%s' (expected ws://HOST[:PORT]/PATH or "
                        "wss://...)\n", c->url);
        return 2;
    }
    if (rc == KITE_ERR_INVALID) {
        fprintf(stderr, "kite cat: invalid --header or --subprotocol value\n");
        return 2;
    }
    if (rc < 0) {
        fprintf(stderr, "kite cat: %s\n", err[0] ? err : kite_strerror(rc));
        return 1;
    }
    return c->status;
}

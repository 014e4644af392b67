/*
 * permessage-deflate under load, end to end: what compression costs a server per
 * connection (RSS) and per message (CPU), and what it saves on the wire. The load side
 * is kite's own client (one loop, one thread); the server is any WebSocket echo server
 * (`kite echo --deflate[=PRESET]`, this tool's `serve` mode for settings no preset has,
 * python-websockets...), measured through /proc/PID.
 *
 *   bench_pmd_load hold  ws://H:P/PATH -c N [--server-pid PID] [load options]
 *       N connections, idle; then each sends one message and waits for its echo. The
 *       server's VmRSS is read before connecting, with all N idle, and after the
 *       messages: bytes per connection = growth / N.
 *   bench_pmd_load echo  ws://H:P/PATH -c N -d SEC [--server-pid PID] [load options]
 *       N connections in ping-pong (one message in flight each) for SEC seconds after a
 *       1 s warm-up: messages/s, payload MB/s, the server's CPU per message
 *       (utime+stime), and the wire ratio: bytes read from the server (this process's
 *       /proc/self/io rchar: its frames with their headers) / payload bytes echoed.
 *   bench_pmd_load serve [--host H] [--port N] [--preset P | --window B --mem-level M
 *                        --level L (--kept | --pooled | --no-context-takeover)]
 *       an echo server with exactly those permessage-deflate settings ("listening on
 *       ws://H:P/" first on stdout; SIGTERM stops it).
 *   load options: --no-deflate (offer nothing), --workload json|binary (default json,
 *       bench_pmd_workload.h), --concurrency K (connection attempts in flight, 256),
 *       --json-only.
 *
 * The client offers "permessage-deflate; client_max_window_bits" (what browsers and
 * python-websockets offer), so the server's settings decide the agreement. Every echo
 * is checked byte for byte; any mismatch, failed connection or unexpected close makes
 * the exit status 1. Pin the two sides to different cores (taskset -c 0 / -c 1).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench_pmd_workload.h"
#include "kite/kite.h"

/* ---- /proc -------------------------------------------------------------------------------- */

static long proc_rss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

/* utime + stime in clock ticks. */
static long long proc_cpu_ticks(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* Bytes this process has read (read(2) and friends: the sockets, here). */
static long long self_rchar(void)
{
    char line[128];
    FILE *f = fopen("/proc/self/io", "r");
    long long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "rchar: %lld", &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the load ------------------------------------------------------------------------------ */

struct conn {
    struct kite_session *s;
    unsigned idx;
    unsigned sent, got; /* messages */
    bool open, closed, failed, busy;
};

struct load {
    struct kite_loop *loop;
    struct kite_ext_list *exts;
    const char *url;
    enum pmd_workload wl;
    unsigned n, concurrency;
    struct conn *c;
    unsigned started, opened, failed, closed, unexpected, bad;
    bool deflate_seen, counting;
    uint64_t msgs, bytes; /* echoed within the measured window */
    bool ping_pong;       /* echo mode: send the next message on each echo */
    uint8_t buf[2048], want[2048];
};

static struct load g;

static void send_next(struct conn *c)
{
    size_t len = pmd_message(g.wl, g.buf, sizeof(g.buf), c->idx, c->sent);
    enum kite_opcode op = g.wl == PMD_WL_JSON ? KITE_OP_TEXT : KITE_OP_BINARY;
    int rc = kite_session_send(c->s, op, g.buf, len, NULL);
    if (rc == KITE_SEND_OK || rc == KITE_SEND_QUEUED) {
        c->sent++;
        c->busy = true;
    }
}

static void on_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)req;
    struct conn *c = ud;
    c->s = s;
    c->open = true;
    g.opened++;
    if (kite_session_extension(s, &kite_ext_permessage_deflate))
        g.deflate_seen = true;
}

static void on_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)s;
    struct conn *c = ud;
    size_t len = pmd_message(g.wl, g.want, sizeof(g.want), c->idx, c->got);
    if (m->len != len || memcmp(m->data, g.want, len) != 0)
        g.bad++;
    c->got++;
    c->busy = false;
    if (g.counting) {
        g.msgs++;
        g.bytes += m->len;
    }
    if (g.ping_pong)
        send_next(c);
}

static void on_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    (void)s;
    struct conn *c = ud;
    if (ci->initiator != KITE_CLOSED_BY_LOCAL)
        g.unexpected++; /* only we close */
    c->open = false;
    c->closed = true;
    c->s = NULL;
    g.closed++;
}

static void on_connect_error(struct kite_client *cl, const struct kite_connect_error *e, void *ud)
{
    (void)cl;
    struct conn *c = ud;
    if (g.failed < 5)
        fprintf(stderr, "bench_pmd_load: connect: %s\n", e->message);
    c->failed = true;
    g.failed++;
}

static const struct kite_ws_callbacks callbacks = {
    .on_open = on_open, .on_message = on_message, .on_close = on_close};

static void run_for(unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        kite_loop_run_once(g.loop, 10);
}

/* Run until cond() or timeout; false on timeout. */
static bool run_until(bool (*cond)(void), unsigned timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;
    while (!cond()) {
        if (now_ms() >= end)
            return false;
        kite_loop_run_once(g.loop, 10);
    }
    return true;
}

static bool all_settled(void)
{
    return g.opened + g.failed == g.n;
}

static bool all_idle(void)
{
    for (unsigned i = 0; i < g.n; i++)
        if (g.c[i].busy && g.c[i].open)
            return false;
    return true;
}

static bool all_closed(void)
{
    return g.closed + g.failed >= g.n;
}

/* Open every connection, at most g.concurrency attempts in flight. */
static int connect_all(void)
{
    struct kite_client_options o;
    kite_client_options_init(&o);
    o.extensions = g.exts;
    o.on_connect_error = on_connect_error;
    o.connect_timeout_ms = 30000;
    o.handshake_timeout_ms = 30000;
    uint64_t end = now_ms() + 60000 + g.n * 5u;
    while (g.started < g.n) {
        while (g.started < g.n && g.started - g.opened - g.failed < g.concurrency) {
            struct conn *c = &g.c[g.started];
            c->idx = g.started++;
            int rc = kite_connect(g.loop, g.url, &o, &callbacks, c, NULL);
            if (rc < 0) {
                fprintf(stderr, "bench_pmd_load: kite_connect: %s\n", kite_strerror(rc));
                return 1;
            }
        }
        kite_loop_run_once(g.loop, 10);
        if (now_ms() > end)
            return 1;
    }
    return run_until(all_settled, 60000) && g.failed == 0 ? 0 : 1;
}

static void close_all(void)
{
    g.counting = false;
    g.ping_pong = false;
    for (unsigned i = 0; i < g.n; i++)
        if (g.c[i].open)
            kite_session_close(g.c[i].s, KITE_CLOSE_NORMAL, NULL);
    run_until(all_closed, 20000);
    run_for(100);
}

struct opts {
    const char *mode, *url;
    unsigned n, seconds;
    long pid;
    bool deflate, json_only;
    enum pmd_workload wl;
    unsigned concurrency;
};

static int mode_hold(const struct opts *o)
{
    long rss0 = o->pid ? proc_rss_kb(o->pid) : -1;
    uint64_t t0 = now_ms();
    if (connect_all() != 0) {
        fprintf(stderr, "bench_pmd_load: %u of %u connections failed\n", g.failed, g.n);
        return 1;
    }
    uint64_t t_conn = now_ms() - t0;
    run_for(1000);
    long rss1 = o->pid ? proc_rss_kb(o->pid) : -1;
    for (unsigned i = 0; i < g.n; i++)
        send_next(&g.c[i]);
    bool done = run_until(all_idle, 60000);
    run_for(1000);
    long rss2 = o->pid ? proc_rss_kb(o->pid) : -1;
    unsigned unexpected = g.unexpected;
    close_all();
    double per_idle = rss0 >= 0 ? (double)(rss1 - rss0) * 1024.0 / g.n : -1;
    double per_msg = rss0 >= 0 ? (double)(rss2 - rss0) * 1024.0 / g.n : -1;
    if (!o->json_only)
        fprintf(
            stderr,
            "hold: %u connections in %.1f s, deflate %s; server RSS %ld -> %ld (idle) -> %ld kB "
            "(one message each): %.0f B/conn idle, %.0f B/conn after one message\n",
            g.n, t_conn / 1000.0, g.deflate_seen ? "agreed" : "not agreed", rss0, rss1, rss2,
            per_idle, per_msg);
    printf("{\"mode\":\"hold\",\"connections\":%u,\"workload\":\"%s\",\"deflate\":%s,"
           "\"rss_kb\":[%ld,%ld,%ld],\"bytes_per_conn_idle\":%.0f,"
           "\"bytes_per_conn_one_message\":%.0f,\"bad\":%u,\"unexpected_close\":%u}\n",
           g.n, o->wl == PMD_WL_JSON ? "json" : "binary", g.deflate_seen ? "true" : "false", rss0,
           rss1, rss2, per_idle, per_msg, g.bad, unexpected);
    return done && g.bad == 0 && unexpected == 0 ? 0 : 1;
}

static int mode_echo(const struct opts *o)
{
    if (connect_all() != 0) {
        fprintf(stderr, "bench_pmd_load: %u of %u connections failed\n", g.failed, g.n);
        return 1;
    }
    g.ping_pong = true;
    for (unsigned i = 0; i < g.n; i++)
        send_next(&g.c[i]);
    run_for(1000); /* warm-up */
    long long cpu0 = o->pid ? proc_cpu_ticks(o->pid) : -1;
    long long r0 = self_rchar();
    uint64_t t0 = now_ms();
    g.counting = true;
    run_for(o->seconds * 1000u);
    g.counting = false;
    double secs = (now_ms() - t0) / 1000.0;
    long long cpu1 = o->pid ? proc_cpu_ticks(o->pid) : -1;
    long long r1 = self_rchar();
    g.ping_pong = false;
    run_until(all_idle, 10000);
    unsigned unexpected = g.unexpected;
    close_all();
    double hz = (double)sysconf(_SC_CLK_TCK);
    double cpu_us = o->pid && g.msgs ? (double)(cpu1 - cpu0) / hz * 1e6 / (double)g.msgs : -1;
    double ratio = r0 >= 0 && g.bytes ? (double)(r1 - r0) / (double)g.bytes : -1;
    double cpu_pct = o->pid ? (double)(cpu1 - cpu0) / hz / secs * 100.0 : -1;
    if (!o->json_only)
        fprintf(stderr,
                "echo: %u connections, %.0f msg/s, %.2f MB/s payload, server CPU %.1f us/msg "
                "(%.0f%% of a core), wire/payload %.3f, deflate %s\n",
                g.n, g.msgs / secs, g.bytes / secs / 1e6, cpu_us, cpu_pct, ratio,
                g.deflate_seen ? "agreed" : "not agreed");
    printf("{\"mode\":\"echo\",\"connections\":%u,\"workload\":\"%s\",\"deflate\":%s,"
           "\"seconds\":%.2f,\"msgs_per_s\":%.0f,\"payload_mb_per_s\":%.3f,"
           "\"server_cpu_us_per_msg\":%.2f,\"server_cpu_pct\":%.0f,\"wire_ratio\":%.4f,"
           "\"bad\":%u,\"unexpected_close\":%u}\n",
           g.n, o->wl == PMD_WL_JSON ? "json" : "binary", g.deflate_seen ? "true" : "false", secs,
           g.msgs / secs, g.bytes / secs / 1e6, cpu_us, cpu_pct, ratio, g.bad, unexpected);
    return g.bad == 0 && unexpected == 0 && g.msgs > 0 ? 0 : 1;
}

/* ---- serve ------------------------------------------------------------------------------------
 */

static void srv_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    kite_session_send(s, m->type, m->data, m->len, NULL);
}

static const struct kite_ws_callbacks srv_callbacks = {.on_message = srv_message};

struct serve_opts {
    const char *host, *preset;
    unsigned port;
    int window, mem_level, level;
    bool kept, pooled, no_takeover, deflate;
};

static int mode_serve(const struct serve_opts *so)
{
    struct kite_pmd_config pc;
    enum kite_pmd_preset pre = KITE_PMD_BALANCED;
    if (so->preset && kite_pmd_preset_by_name(so->preset, &pre) != KITE_OK) {
        fprintf(stderr, "bench_pmd_load: unknown preset %s\n", so->preset);
        return 2;
    }
    kite_pmd_config_preset(&pc, pre);
    if (so->window)
        pc.server_max_window_bits = pc.client_max_window_bits = (uint8_t)so->window;
    if (so->mem_level)
        pc.mem_level = so->mem_level;
    if (so->level >= 0)
        pc.level = so->level;
    if (so->kept)
        pc.pool_streams = false;
    if (so->pooled)
        pc.pool_streams = true;
    if (so->no_takeover)
        pc.server_no_context_takeover = pc.client_no_context_takeover = true;
    struct kite_app_options ao;
    kite_app_options_init(&ao);
    struct kite_app *app = kite_app_new(&ao);
    if (!app || !kite_route_ws_callbacks(app, "/{p...}", &srv_callbacks, NULL))
        return 1;
    if (so->deflate && kite_app_install_extension(app, &kite_ext_permessage_deflate, &pc) != 0) {
        fprintf(stderr, "bench_pmd_load: bad permessage-deflate settings\n");
        return 2;
    }
    int rc = kite_app_listen(app, so->host, (uint16_t)so->port);
    if (rc < 0) {
        fprintf(stderr, "bench_pmd_load: listen: %s\n", kite_strerror(rc));
        return 1;
    }
    char url[128];
    kite_app_listener_url(app, 0, url, sizeof(url));
    printf("listening on %s\n", url);
    fflush(stdout);
    rc = kite_app_run(app, NULL, 0);
    kite_app_free(app);
    return rc < 0 ? 1 : 0;
}

/* ---- main -------------------------------------------------------------------------------------
 */

static int usage(void)
{
    fprintf(stderr,
            "usage: bench_pmd_load hold|echo URL -c N [-d SEC] [--server-pid PID] [--no-deflate]\n"
            "                      [--workload json|binary] [--concurrency K] [--json-only]\n"
            "       bench_pmd_load serve [--host H] [--port N] [--preset P] [--window B]\n"
            "                      [--mem-level M] [--level L] "
            "[--kept|--pooled|--no-context-takeover]\n"
            "                      [--no-deflate]\n");
    return 2;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int serve_main(int argc, char **argv)
{
    struct serve_opts so = {.host = "127.0.0.1", .level = -1, .deflate = true};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--host") == 0 && v)
            so.host = argv[++i];
        else if (strcmp(a, "--port") == 0 && v)
            so.port = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--preset") == 0 && v)
            so.preset = argv[++i];
        else if (strcmp(a, "--window") == 0 && v)
            so.window = atoi(argv[++i]);
        else if (strcmp(a, "--mem-level") == 0 && v)
            so.mem_level = atoi(argv[++i]);
        else if (strcmp(a, "--level") == 0 && v)
            so.level = atoi(argv[++i]);
        else if (strcmp(a, "--kept") == 0)
            so.kept = true;
        else if (strcmp(a, "--pooled") == 0)
            so.pooled = true;
        else if (strcmp(a, "--no-context-takeover") == 0)
            so.no_takeover = true;
        else if (strcmp(a, "--no-deflate") == 0)
            so.deflate = false;
        else
            return usage();
    }
    raise_nofile();
    return mode_serve(&so);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "serve") == 0)
        return serve_main(argc, argv);
    struct opts o = {.mode = argv[1], .n = 100, .seconds = 5, .deflate = true, .concurrency = 256};
    if (strcmp(o.mode, "hold") != 0 && strcmp(o.mode, "echo") != 0)
        return usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (strcmp(a, "-c") == 0 && v)
            o.n = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "-d") == 0 && v)
            o.seconds = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--server-pid") == 0 && v)
            o.pid = atol(argv[++i]);
        else if (strcmp(a, "--no-deflate") == 0)
            o.deflate = false;
        else if (strcmp(a, "--workload") == 0 && v)
            o.wl = strcmp(argv[++i], "binary") == 0 ? PMD_WL_BINARY : PMD_WL_JSON;
        else if (strcmp(a, "--concurrency") == 0 && v)
            o.concurrency = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--json-only") == 0)
            o.json_only = true;
        else if (!o.url && strncmp(a, "ws://", 5) == 0)
            o.url = a;
        else
            return usage();
    }
    if (!o.url || o.n == 0 || o.concurrency == 0)
        return usage();
    raise_nofile();
    memset(&g, 0, sizeof(g));
    g.url = o.url;
    g.n = o.n;
    g.wl = o.wl;
    g.concurrency = o.concurrency;
    g.c = calloc(o.n, sizeof(*g.c));
    if (!g.c || kite_loop_new(NULL, &g.loop) != KITE_OK)
        return 1;
    if (o.deflate) {
        /* The plain offer of browsers and python-websockets: the server decides. */
        struct kite_pmd_config pc;
        kite_pmd_config_preset(&pc, KITE_PMD_BALANCED);
        pc.server_max_window_bits = pc.client_max_window_bits = 15;
        g.exts = kite_ext_list_new(NULL);
        if (!g.exts || kite_ext_list_install(g.exts, &kite_ext_permessage_deflate, &pc) != KITE_OK)
            return 1;
    }
    int rc = strcmp(o.mode, "hold") == 0 ? mode_hold(&o) : mode_echo(&o);
    kite_loop_free(g.loop);
    kite_pmd_pool_trim();
    kite_ext_list_free(g.exts);
    free(g.c);
    return rc;
}

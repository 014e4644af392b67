/*
 * permessage-deflate in process: compression ratio, CPU per message and memory per
 * session, for kite's presets and other settings, beside python-websockets' defaults
 * (window 12, memLevel 5, level 6, context takeover) run on plain zlib the way that
 * library runs it (one compressobj and one decompressobj per connection, sync flush,
 * the 4-byte tail stripped). Same messages for all (bench_pmd_workload.h).
 *
 *   bench_pmd [-n MESSAGES] [--workload json|binary] [--seed N]   (pin it: taskset -c 1)
 *
 * For each setting, a server codec and a client codec negotiate with kite's own
 * extension code, then the client sends each message and the server echoes it (both
 * compressing). Reported for the server side:
 *   ratio      wire payload bytes the server sent / message bytes (lower is better)
 *   us/msg     server CPU (thread time) per echoed message: inflate + deflate + framing
 *   held@1     bytes the server session holds after one echoed message (codec, chain,
 *              zlib and history; the per-thread pool not counted, it is shared)
 *   held@N     the same after all N messages (history windows full)
 *   pool       bytes of the per-thread stream pool afterwards (shared by all sessions)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zlib.h>

#include "bench_pmd_workload.h"
#include "codec/conn_internal.h"

/* ---- counting allocator ------------------------------------------------------------ */

struct counter {
    size_t live;
};

union chdr {
    size_t n;
    max_align_t align;
};

static void *c_malloc(size_t n, void *ud)
{
    union chdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->n = n;
    ((struct counter *)ud)->live += n;
    return h + 1;
}

static void c_free(void *p, void *ud)
{
    if (!p)
        return;
    union chdr *h = (union chdr *)p - 1;
    ((struct counter *)ud)->live -= h->n;
    free(h);
}

static void *c_realloc(void *p, size_t n, void *ud)
{
    void *q = c_malloc(n, ud);
    if (q && p) {
        union chdr *h = (union chdr *)p - 1;
        memcpy(q, p, h->n < n ? h->n : n);
        c_free(p, ud);
    }
    return q;
}

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- a codec pair ------------------------------------------------------------------ */

struct side {
    struct kite_codec *c;
    bool echo;    /* server: send every message back */
    uint64_t got; /* message bytes received */
    unsigned msgs;
    int closed;
};

static int on_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data, size_t len,
                      void *ud)
{
    struct side *s = ud;
    s->msgs++;
    s->got += len;
    if (s->echo && kite_codec_send(c, type, data, len) != KITE_OK)
        s->closed = -1;
    return KITE_OK;
}

static void on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    (void)c;
    ((struct side *)ud)->closed = ci->code;
    if (ci->code != KITE_CLOSE_NORMAL)
        fprintf(stderr, "bench_pmd: closed %u %s (%s)\n", ci->code, ci->reason,
                kite_err_name(ci->error));
}

static const struct kite_codec_callbacks cbs = {.on_message = on_message, .on_close = on_close};

/* Move what `from` wrote into `to`; returns the bytes moved (frame headers included). */
static size_t pump(struct side *from, struct side *to, uint8_t *buf, size_t cap)
{
    const uint8_t *o;
    size_t n = kite_codec_pending(from->c, &o);
    if (n > cap) {
        fprintf(stderr, "bench_pmd: output of %zu bytes does not fit\n", n);
        exit(1);
    }
    memcpy(buf, o, n);
    kite_codec_consume(from->c, n);
    ssize_t rc = kite_codec_recv(to->c, buf, n, 0);
    if (rc != (ssize_t)n) {
        fprintf(stderr, "bench_pmd: the peer took %zd of %zu bytes (close %d)\n", rc, n,
                to->closed);
        exit(1);
    }
    return n;
}

/* Payload bytes of the frames in buf[0..n) (server frames: unmasked). */
static size_t payload_bytes(const uint8_t *b, size_t n)
{
    size_t off = 0, total = 0;
    while (off + 2 <= n) {
        uint64_t len = b[off + 1] & 0x7f;
        size_t h = 2;
        if (len == 126) {
            len = (uint64_t)b[off + 2] << 8 | b[off + 3];
            h = 4;
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | b[off + 2 + (size_t)i];
            h = 10;
        }
        total += (size_t)len;
        off += h + (size_t)len;
    }
    return total;
}

struct result {
    double ratio, us_per_msg;
    size_t held1, heldn, pool;
};

static struct kite_codec *codec_for(enum kite_role role, struct kite_ext_chain *ch,
                                    const struct kite_allocator *a, struct side *s)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.role = role;
    cfg.allocator = a;
    cfg.extensions = ch;
    s->c = kite_codec_new(&cfg, &cbs, s, 0);
    if (!s->c) {
        fprintf(stderr, "bench_pmd: cannot make a codec\n");
        exit(1);
    }
    return s->c;
}

static void run_kite(const struct kite_pmd_config *pc, enum pmd_workload wl, unsigned n,
                     uint64_t seed, struct result *r)
{
    static uint8_t msg[2048], wire[1 << 16];
    struct counter k = {0};
    struct kite_allocator a = {c_malloc, c_realloc, c_free, &k};
    struct kite_ext_list *ls = kite_ext_list_new(NULL), *lc = kite_ext_list_new(NULL);
    kite_ext_list_install(ls, &kite_ext_permessage_deflate, pc);
    kite_ext_list_install(lc, &kite_ext_permessage_deflate, pc);
    char offer[256];
    ssize_t on = kite_ext_offer(lc, KITE_MODE_DEFAULT, offer, sizeof(offer));
    struct kite_ext_chain *sch = NULL, *cch = NULL;
    size_t rl = 0;
    int rc = kite_ext_negotiate(ls, KITE_MODE_DEFAULT, offer, (size_t)on, &a, &sch);
    const char *resp = kite_ext_chain_header(sch, &rl);
    if (rc == KITE_OK && sch)
        rc = kite_ext_accept(lc, KITE_MODE_DEFAULT, resp, rl, NULL, &cch);
    if (rc != KITE_OK || !sch || !cch) {
        fprintf(stderr, "bench_pmd: negotiation failed\n");
        exit(1);
    }
    struct side srv = {.echo = true}, cli = {0};
    codec_for(KITE_ROLE_SERVER, sch, &a, &srv);
    codec_for(KITE_ROLE_CLIENT, cch, NULL, &cli);
    uint64_t raw = 0, paid = 0;
    double t = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t len = pmd_message(wl, msg, sizeof(msg), seed, i);
        kite_codec_send(cli.c, wl == PMD_WL_JSON ? KITE_OP_TEXT : KITE_OP_BINARY, msg, len);
        const uint8_t *o;
        size_t cn = kite_codec_pending(cli.c, &o);
        memcpy(wire, o, cn);
        kite_codec_consume(cli.c, cn);
        double t0 = cpu_ns();
        kite_codec_recv(srv.c, wire, cn, 0); /* inflates, echoes: deflates */
        t += cpu_ns() - t0;
        const uint8_t *so;
        size_t sn = kite_codec_pending(srv.c, &so);
        paid += payload_bytes(so, sn);
        pump(&srv, &cli, wire, sizeof(wire));
        raw += len;
        if (i == 0) {
            /* Pooled streams came from this allocator too, but belong to the thread:
             * empty the pool before counting (it refills at the next message). */
            kite_pmd_pool_trim();
            r->held1 = k.live;
        }
    }
    if (srv.closed || cli.closed || cli.got != raw) {
        fprintf(stderr, "bench_pmd: the exchange failed (close %d/%d)\n", srv.closed, cli.closed);
        exit(1);
    }
    kite_pmd_pool_size(&r->pool);
    kite_pmd_pool_trim();
    r->heldn = k.live;
    r->ratio = (double)paid / (double)raw;
    r->us_per_msg = t / n / 1e3;
    kite_codec_free(srv.c);
    kite_codec_free(cli.c);
    kite_pmd_pool_trim();
    kite_ext_list_free(ls);
    kite_ext_list_free(lc);
}

/* ---- python-websockets on plain zlib ------------------------------------------------- */

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    struct counter *k = opaque;
    return c_malloc((size_t)items * size, k);
}

static void z_free(voidpf opaque, voidpf p)
{
    c_free(p, opaque);
}

/*
 * What python-websockets does per connection (websockets/extensions/permessage_deflate.py):
 * zlib.compressobj(wbits=-12, memLevel=5) at the default level, .compress(data) +
 * .flush(Z_SYNC_FLUSH), tail removed; a decompressobj(wbits=-12) for the other way.
 * Both kept for the connection's life (context takeover).
 */
static void run_python_like(int wbits, int mem_level, enum pmd_workload wl, unsigned n,
                            uint64_t seed, struct result *r)
{
    static uint8_t msg[2048], out[4096], back[4096];
    struct counter k = {0};
    z_stream d, f;
    memset(&d, 0, sizeof(d));
    memset(&f, 0, sizeof(f));
    d.zalloc = f.zalloc = z_alloc;
    d.zfree = f.zfree = z_free;
    d.opaque = f.opaque = &k;
    deflateInit2(&d, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -wbits, mem_level, Z_DEFAULT_STRATEGY);
    inflateInit2(&f, -wbits);
    uint64_t raw = 0, paid = 0;
    double t = 0;
    for (unsigned i = 0; i < n; i++) {
        size_t len = pmd_message(wl, msg, sizeof(msg), seed, i);
        double t0 = cpu_ns();
        /* the client's message, inflated (the same bytes: both sides use these settings) */
        d.next_in = msg;
        d.avail_in = (uInt)len;
        d.next_out = out;
        d.avail_out = sizeof(out);
        deflate(&d, Z_SYNC_FLUSH);
        size_t cl = sizeof(out) - d.avail_out - 4;
        memcpy(out + cl, "\x00\x00\xff\xff", 4);
        f.next_in = out;
        f.avail_in = (uInt)cl + 4;
        f.next_out = back;
        f.avail_out = sizeof(back);
        inflate(&f, Z_SYNC_FLUSH);
        t += cpu_ns() - t0;
        if (sizeof(back) - f.avail_out != len || memcmp(back, msg, len) != 0) {
            fprintf(stderr, "bench_pmd: zlib round trip failed\n");
            exit(1);
        }
        paid += cl;
        raw += len;
        if (i == 0)
            r->held1 = k.live;
    }
    r->heldn = k.live;
    r->pool = 0;
    r->ratio = (double)paid / (double)raw;
    r->us_per_msg = t / n / 1e3;
    deflateEnd(&d);
    inflateEnd(&f);
}

/* ---- settings -------------------------------------------------------------------------- */

struct setting {
    const char *name;
    int preset; /* a kite preset, or -1 */
    int level, mem_level, bits;
    bool no_takeover, pool_streams;
};

static const struct setting settings[] = {
    {"balanced (default)", KITE_PMD_BALANCED, 0, 0, 0, false, false},
    {"speed", KITE_PMD_SPEED, 0, 0, 0, false, false},
    {"memory", KITE_PMD_MEMORY, 0, 0, 0, false, false},
    {"max-ratio", KITE_PMD_MAX_RATIO, 0, 0, 0, false, false},
    {"12/5 kept streams", -1, 6, 5, 12, false, false},
    {"12/5 pooled", -1, 6, 5, 12, false, true},
    {"12/6 pooled", -1, 6, 6, 12, false, true},
    {"12/8 pooled", -1, 6, 8, 12, false, true},
    {"12/9 pooled", -1, 6, 9, 12, false, true},
    {"12/8 pooled level 5", -1, 5, 8, 12, false, true},
    {"13/5 pooled", -1, 6, 5, 13, false, true},
    {"13/6 pooled", -1, 6, 6, 13, false, true},
    {"13/8 pooled", -1, 6, 8, 13, false, true},
    {"15/8 pooled", -1, 6, 8, 15, false, true},
    {"13/6 kept streams", -1, 6, 6, 13, false, false},
};

static void print_row(const char *name, const struct result *r)
{
    printf("| %-24s | %6.3f | %6.2f | %8zu | %8zu | %8zu |\n", name, r->ratio, r->us_per_msg,
           r->held1, r->heldn, r->pool);
}

int main(int argc, char **argv)
{
    unsigned n = 2000;
    uint64_t seed = 1;
    const char *only = NULL;
    enum pmd_workload wl = PMD_WL_JSON;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--workload") == 0 && i + 1 < argc)
            wl = strcmp(argv[++i], "binary") == 0 ? PMD_WL_BINARY : PMD_WL_JSON;
        else {
            fprintf(stderr, "usage: bench_pmd [-n MESSAGES] [--workload json|binary] [--seed N] "
                            "[--only NAME]\n");
            return 2;
        }
    }
    if (n == 0)
        n = 1;
    printf("workload %s, %u messages, zlib %s\n\n", wl == PMD_WL_JSON ? "json" : "binary", n,
           zlibVersion());
    printf("| %-24s | %6s | %6s | %8s | %8s | %8s |\n", "setting", "ratio", "us/msg", "held@1",
           "held@N", "pool");
    printf("|---|---:|---:|---:|---:|---:|\n");
    struct result r;
    memset(&r, 0, sizeof(r));
    run_python_like(12, 5, wl, n, seed, &r);
    print_row("python-websockets 12/5", &r);
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
        const struct setting *s = &settings[i];
        if (only && !strstr(s->name, only))
            continue;
        struct kite_pmd_config pc;
        if (s->preset >= 0) {
            kite_pmd_config_preset(&pc, (enum kite_pmd_preset)s->preset);
        } else {
            kite_pmd_config_init(&pc);
            pc.level = s->level;
            pc.mem_level = s->mem_level;
            pc.server_max_window_bits = pc.client_max_window_bits = (uint8_t)s->bits;
            pc.server_no_context_takeover = pc.client_no_context_takeover = s->no_takeover;
            pc.pool_streams = s->pool_streams;
        }
        memset(&r, 0, sizeof(r));
        run_kite(&pc, wl, n, seed, &r);
        print_row(s->name, &r);
    }
    return 0;
}

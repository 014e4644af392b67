/*
 * `kite bench`: a WebSocket load generator (docs/bench-tool.md).
 *
 * It drives a server over loopback with N connections and measures throughput,
 * latency, and the CPU both sides spend. It is built on the kite codec in the client
 * role (frames masked with the codec's CSPRNG keys, RFC 6455 §5.3) and on a small
 * epoll loop of its own: it does not use the server or client layers, so it can
 * measure them, and it must stay cheaper per message than any server it measures.
 * One thread; every wait bounded; a hard deadline even if the server stalls.
 *
 * Every message carries its sequence number (16 hex digits) followed by bytes from a
 * pattern table at an offset derived from (connection, seq), so every echoed byte is
 * checked with two memcmp calls: a lost, duplicated or reordered message shows as a
 * wrong sequence number, a flipped byte as a pattern mismatch.
 *
 * Modes:
 *   echo       -c connections, -p messages in flight on each, -s bytes each; latency
 *              is send time -> echo time.
 *   connect    open -c connections as fast as the server takes them, hold them idle;
 *              connect rate and the server's RSS growth per connection.
 *   broadcast  -c subscribers and one publisher on --path; the publisher keeps -p
 *              messages in flight, a message completing when every subscriber got it.
 *
 * A "raw peer" (bench/peers/raw_echo.c) echoes our bytes verbatim, so its frames come
 * back masked. For it a second codec in the server role parses what we read: it
 * unmasks, and every byte is still verified.
 *
 * wss:// URLs (or --tls) speak TLS with plain OpenSSL over the same non-blocking
 * sockets (SSL_set_fd): the handshake is one more connection state, and reads and
 * writes go through SSL_read_ex/SSL_write_ex. Everything a connection has queued is
 * handed to one SSL_write, so small messages share full records. The server's
 * certificate is not verified: this is a load generator for servers we start.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "kite/kite.h"
#include "http/handshake.h"
#include "util/util.h"

#include "cmd_bench.h"

#define RBUF_SIZE (256 * 1024)
#define MAX_MSG_SIZE (16u * 1024 * 1024)
#define MAX_CONNS 1000000u
#define SEQ_DIGITS 16          /* a message starts with its sequence number in hex */
#define PAT_SPREAD 256         /* pattern offsets per (connection, seq) */
#define DRAIN_NS (5 * NS_PER_S) /* wait this long for in-flight echoes at the end */
#define CLOSE_NS (2 * NS_PER_S) /* and this long (+1 s per 5,000 connections) to close */
#define NS_PER_S 1000000000ull
#define HS_READ_CHUNK 2048

/* ------------------------------------------------------------------------------------
 * Options.
 */

enum bmode { MODE_ECHO, MODE_CONNECT, MODE_BROADCAST };

struct bopts {
    enum bmode mode;
    const char *host;
    unsigned port;
    const char *path;      /* NULL: "/" (echo, connect) or "/broadcast" */
    uint32_t conns;        /* -c */
    uint32_t pipeline;     /* -p: messages in flight per connection (publisher) */
    size_t size;           /* -s: payload bytes per message */
    double duration;       /* -d seconds; < 0 when not given */
    uint64_t messages;     /* -n; 0 when not given */
    bool binary;           /* --binary: binary messages (else text) */
    long server_pid;       /* --server-pid; 0 = unknown */
    double warmup;         /* --warmup seconds */
    bool json_only;        /* --json-only: no human-readable lines */
    bool raw_peer;         /* --raw-peer: the peer echoes masked frames */
    double timeout;        /* --timeout: hard deadline in seconds; < 0 = derived */
    uint32_t src_addrs;    /* --src-addrs: loopback source addresses to rotate over */
    uint32_t concurrency;  /* --concurrency: connection attempts in progress at once */
    bool tls;              /* wss:// or --tls */
    bool deflate;          /* --deflate: offer permessage-deflate, require it, send words */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kite bench echo|connect|broadcast [ws[s]://HOST:PORT/PATH] [options]\n"
            "  --host H          server address (127.0.0.1)\n"
            "  --port N          server port (8080)\n"
            "  --path P          request path (/; /broadcast in broadcast mode)\n"
            "  -c N              connections (echo, connect) or subscribers (100)\n"
            "  -p N              messages in flight per connection; 1 = ping-pong (1)\n"
            "  -s N              message size in bytes (32)\n"
            "  -d SEC            measure for SEC seconds (10; connect: hold time, 5)\n"
            "  -n N              measure N messages in total instead of a duration\n"
            "  --binary          binary messages (default text)\n"
            "  --warmup SEC      run this long before measuring (0)\n"
            "  --server-pid PID  report the server's CPU and RSS from /proc\n"
            "  --raw-peer        the peer echoes bytes verbatim (auto-detected)\n"
            "  --timeout SEC     hard deadline for the whole run (derived)\n"
            "  --src-addrs N     rotate source addresses 127.0.0.1..N (16)\n"
            "  --concurrency N   connection attempts in progress at once (256)\n"
            "  --tls             speak TLS (wss://); the certificate is not verified\n"
            "  --deflate         offer permessage-deflate (RFC 7692) and require it; the\n"
            "                    messages are compressible text (words)\n"
            "  --json-only       print only the JSON result line\n");
}

static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_secs(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0 || v > 1e6)
        return -1;
    *out = v;
    return 0;
}

/* ws://HOST:PORT/PATH or wss://..., HOST possibly a bracketed IPv6 literal. Writes
 * into `store`, which must outlive the options. */
static int parse_url(const char *url, struct bopts *o, char *store, size_t cap)
{
    size_t skip = strncmp(url, "wss://", 6) == 0 ? 6 : 5;
    if ((skip == 5 && strncmp(url, "ws://", 5) != 0) || strlen(url + skip) + 2 > cap)
        return -1;
    o->tls = skip == 6;
    strcpy(store, url + skip);
    char *host = store, *p;
    if (*host == '[') {
        p = strchr(++host, ']');
        if (!p)
            return -1;
        *p++ = '\0';
    } else {
        p = host + strcspn(host, ":/");
    }
    char *path = strchr(p, '/');
    o->port = o->tls ? 443 : 80; /* RFC 6455 §3: the schemes' default ports */
    if (*p == ':') {
        *p++ = '\0';
        char digits[8] = {0};
        size_t n = path ? (size_t)(path - p) : strlen(p);
        uint64_t port;
        if (n == 0 || n >= sizeof(digits))
            return -1;
        memcpy(digits, p, n);
        if (parse_u64(digits, 1, 65535, &port) < 0)
            return -1;
        o->port = (unsigned)port;
    }
    o->path = "/";
    if (path) {
        /* The path keeps its slash; the host string ends where it started. */
        memmove(path + 1, path, strlen(path) + 1);
        *path = '\0';
        o->path = path + 1;
    }
    o->host = host;
    return *host ? 0 : -1;
}

static void opts_init(struct bopts *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 8080;
    o->conns = 100;
    o->pipeline = 1;
    o->size = 32;
    o->duration = -1;
    o->timeout = -1;
    o->src_addrs = 16;
    o->concurrency = 256;
}

/* One option with a value; returns 1 if consumed, 0 if unknown, -1 if the value is bad. */
static int parse_valued(struct bopts *o, const char *name, const char *v)
{
    uint64_t u;
    if (!strcmp(name, "--host"))
        o->host = v;
    else if (!strcmp(name, "--path"))
        o->path = v;
    else if (!strcmp(name, "--port"))
        return parse_u64(v, 1, 65535, &u) < 0 ? -1 : (o->port = (unsigned)u, 1);
    else if (!strcmp(name, "-c"))
        return parse_u64(v, 1, MAX_CONNS, &u) < 0 ? -1 : (o->conns = (uint32_t)u, 1);
    else if (!strcmp(name, "-p"))
        return parse_u64(v, 1, 65536, &u) < 0 ? -1 : (o->pipeline = (uint32_t)u, 1);
    else if (!strcmp(name, "-s"))
        return parse_u64(v, 0, MAX_MSG_SIZE, &u) < 0 ? -1 : (o->size = (size_t)u, 1);
    else if (!strcmp(name, "-n"))
        return parse_u64(v, 1, UINT64_MAX / 2, &o->messages) < 0 ? -1 : 1;
    else if (!strcmp(name, "--server-pid"))
        return parse_u64(v, 1, 1u << 30, &u) < 0 ? -1 : (o->server_pid = (long)u, 1);
    else if (!strcmp(name, "--src-addrs"))
        return parse_u64(v, 0, 254, &u) < 0 ? -1 : (o->src_addrs = (uint32_t)u, 1);
    else if (!strcmp(name, "--concurrency"))
        return parse_u64(v, 1, MAX_CONNS, &u) < 0 ? -1 : (o->concurrency = (uint32_t)u, 1);
    else if (!strcmp(name, "-d"))
        return parse_secs(v, &o->duration) < 0 ? -1 : 1;
    else if (!strcmp(name, "--warmup"))
        return parse_secs(v, &o->warmup) < 0 ? -1 : 1;
    else if (!strcmp(name, "--timeout"))
        return parse_secs(v, &o->timeout) < 0 ? -1 : 1;
    else
        return 0;
    return 1;
}

static int parse_flag(struct bopts *o, const char *name)
{
    if (!strcmp(name, "--binary"))
        o->binary = true;
    else if (!strcmp(name, "--json-only"))
        o->json_only = true;
    else if (!strcmp(name, "--raw-peer"))
        o->raw_peer = true;
    else if (!strcmp(name, "--tls"))
        o->tls = true;
    else if (!strcmp(name, "--deflate"))
        o->deflate = true;
    else
        return 0;
    return 1;
}

static int parse_mode(struct bopts *o, const char *m)
{
    if (!strcmp(m, "echo"))
        o->mode = MODE_ECHO;
    else if (!strcmp(m, "connect"))
        o->mode = MODE_CONNECT;
    else if (!strcmp(m, "broadcast"))
        o->mode = MODE_BROADCAST;
    else
        return -1;
    return 0;
}

static int parse_args(int argc, char **argv, struct bopts *o, char *url_store, size_t cap)
{
    opts_init(o);
    if (argc < 2 || parse_mode(o, argv[1]) < 0)
        return -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strncmp(a, "ws://", 5) || !strncmp(a, "wss://", 6)) {
            if (parse_url(a, o, url_store, cap) < 0)
                return -1;
            continue;
        }
        if (parse_flag(o, a))
            continue;
        int r = i + 1 < argc ? parse_valued(o, a, argv[i + 1]) : 0;
        if (r <= 0) {
            fprintf(stderr, "kite bench: %s option %s\n", r < 0 ? "bad value for" : "unknown",
                    a);
            return -1;
        }
        i++;
    }
    if (!o->path)
        o->path = o->mode == MODE_BROADCAST ? "/broadcast" : "/";
    if (o->duration < 0)
        o->duration = o->mode == MODE_CONNECT ? 5 : 10;
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Clocks and /proc.
 */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t client_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* The server's utime + stime in µs (all threads), from /proc/PID/stat fields 14-15
 * (proc(5)); -1 when unreadable. The command name (field 2) may hold spaces and
 * parentheses, so parsing starts after the last ')'. */
static int64_t server_cpu_us(long pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (int64_t)((ut + st) * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100));
}

/* The server's VmRSS in kB from /proc/PID/status; -1 when unreadable. */
static long server_rss_kb(long pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* ------------------------------------------------------------------------------------
 * Latency histogram, log-linear (HdrHistogram-like): values below 128 ns have a bucket
 * each; above, every power of two is split into 64 buckets, so a bucket is at most
 * 1/64 (1.6%) of its value wide. Values in ns; anything past ~2^46 ns shares the top
 * bucket.
 */

#define H_LINEAR 128
#define H_HALF 64
#define H_MAX_SHIFT 40
#define H_BUCKETS (H_LINEAR + H_MAX_SHIFT * H_HALF)

struct hist {
    uint64_t count[H_BUCKETS];
    uint64_t total;
    uint64_t max;
    uint64_t sum;
};

static unsigned hist_index(uint64_t v)
{
    if (v < H_LINEAR)
        return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - 6; /* v >> shift in [64, 128) */
    if (shift > H_MAX_SHIFT)
        return H_BUCKETS - 1;
    return H_LINEAR + (shift - 1) * H_HALF + (unsigned)((v >> shift) - H_HALF);
}

/* The middle of bucket i, the value we report for it. */
static uint64_t hist_value(unsigned i)
{
    if (i < H_LINEAR)
        return i;
    unsigned k = i - H_LINEAR, shift = k / H_HALF + 1;
    uint64_t lo = (uint64_t)(k % H_HALF + H_HALF) << shift;
    return lo + (((uint64_t)1 << shift) >> 1);
}

static inline void hist_record(struct hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->total++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

/* The value at quantile q (0..1), in ns; never above the maximum seen. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->total == 0)
        return 0;
    double want = q * (double)h->total;
    uint64_t rank = (uint64_t)want, seen = 0;
    if ((double)rank < want || rank == 0)
        rank++; /* the smallest rank covering a fraction q */
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank)
            return KITE_MIN(hist_value(i), h->max);
    }
    return h->max;
}

/* ------------------------------------------------------------------------------------
 * Bench state.
 */

enum cstate { CS_NEW, CS_CONNECTING, CS_TLS, CS_HS_WRITE, CS_HS_READ, CS_OPEN, CS_DONE };
enum phase { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_HOLD, PH_DRAIN, PH_CLOSE, PH_DONE };

struct bench;

struct bconn {
    struct bench *b;
    struct kite_codec *tx; /* client role: frames what we send; reads a WebSocket server */
    struct kite_codec *rx; /* raw peer only: server role, reads our own echoed frames */
    struct kite_buf hs;    /* handshake bytes: the request, then the response */
    SSL *ssl;              /* wss://: the TLS connection, else NULL */
    uint64_t next_send;    /* sequence number of the next message to send */
    uint64_t next_recv;    /* sequence number expected next */
    uint64_t send_limit;   /* -n: send no message numbered this or higher */
    uint64_t *sent_ns;     /* echo: send times, a ring of pipeline entries */
    int fd;                /* -1 when closed */
    uint32_t id;           /* index; also picks the source address */
    uint32_t events;       /* epoll interest registered */
    uint8_t state;         /* enum cstate */
    bool finished;         /* -n: done with its quota (or dead) */
    bool eof;              /* the transport ended */
    bool counted_lost;     /* its unanswered messages have been counted lost */
    bool opened;           /* the handshake completed */
    bool part_skip;        /* echo in parts: the verdict is known, compare no more */
    uint8_t part_v;        /* echo in parts: enum verdict so far */
    uint64_t part_seq;     /* echo in parts: the message its first part claims to be */
    char key[KITE_WS_KEY_LEN + 1]; /* Sec-WebSocket-Key sent */
};

/* Broadcast: one publisher slot per message in flight. */
struct pub_slot {
    uint64_t sent_ns;
    uint32_t remaining; /* subscribers that have not received it yet */
};

struct errs {
    uint64_t connect; /* connect or handshake failed, or timed out */
    uint64_t closed;  /* a connection ended before we closed it */
    uint64_t corrupt; /* right sequence number, wrong bytes */
    uint64_t order;   /* wrong sequence number, type or length: lost, reordered, extra */
    uint64_t lost;    /* sent and never echoed (delivered) by the end */
};

struct bench {
    struct bopts o;
    struct sockaddr_storage dst;
    socklen_t dst_len;
    bool dst_loopback4;            /* bind sources to 127.0.0.x */
    struct kite_ws_client_req creq; /* what the upgrade asks for */
    char *req;                     /* the upgrade request, built once; each connection */
    size_t req_len, req_key_off;   /* patches its own key in at req_key_off */
    uint8_t nonces[4096];          /* random bytes for the keys, drawn in bulk */
    size_t nonces_left;
    SSL_CTX *tls;                  /* wss://: one client context for every connection */
    struct kite_ext_list *exts;    /* --deflate: permessage-deflate installed */
    char *ext_offer;               /* --deflate: the Sec-WebSocket-Extensions offer */
    uint32_t n_deflate;            /* connections that negotiated permessage-deflate */
    char deflate_agreed[128];      /* --deflate: the first connection's agreement */
    int ep;
    struct bconn *conns;
    uint32_t n_conns;              /* broadcast: subscribers + the publisher */
    uint32_t n_subs;               /* broadcast: subscribers (= -c) */
    struct bconn *pub;             /* broadcast: the publisher (last of conns) */
    struct pub_slot *slots;        /* broadcast: pipeline slots */
    uint64_t pub_oldest;           /* broadcast: oldest message not yet delivered to all */
    uint64_t *sent_ring;           /* echo: every connection's sent_ns, one block */
    uint8_t *rbuf;                 /* the receive buffer, shared by all connections */
    uint8_t *msg;                  /* scratch for one outgoing message */
    uint8_t *pat;                  /* the pattern table, size + PAT_SPREAD bytes */
    enum kite_opcode op;
    enum phase phase;
    uint32_t n_started, n_pending, n_open, n_live, n_working;
    uint64_t inflight;             /* echo: sent and not yet echoed, all connections */
    uint64_t now;                  /* ns, refreshed per event and per read */
    uint64_t t_start, t_open, t_measure, t_end, t_deadline, t_hard, t_connect_limit;
    bool counting;                 /* inside the measured window */
    bool raw_seen;                 /* some connection talks to a raw peer */
    bool deadline_hit;
    bool interrupted;
    uint64_t msgs, bytes;          /* echoes (deliveries) in the window, payload bytes */
    uint64_t sent;                 /* messages sent in the window */
    uint64_t self_recv;            /* broadcast: copies the publisher got back */
    uint64_t close_timeouts;       /* connections that did not finish the close handshake */
    struct errs err;
    struct hist *h;
    uint64_t cpu0, cpu1;           /* client CPU µs at the window's ends */
    int64_t scpu0, scpu1;          /* server CPU µs, -1 unknown */
    uint64_t ccon0, ccon1;         /* connect mode: client CPU µs over the connect phase */
    int64_t scon0, scon1;          /* ... and the server's, -1 unknown */
    long rss0, rss1;               /* server VmRSS kB, -1 unknown */
    char first_error[160];
};

static volatile sig_atomic_t g_interrupt;

static void on_sigint(int sig)
{
    KITE_UNUSED(sig);
    g_interrupt = 1;
}

static void note_error(struct bench *b, const char *what, const char *detail)
{
    if (!b->first_error[0])
        snprintf(b->first_error, sizeof(b->first_error), "%s: %s", what, detail);
}

static uint64_t errors_total(const struct bench *b)
{
    return b->err.connect + b->err.closed + b->err.corrupt + b->err.order + b->err.lost +
           (b->deadline_hit ? 1 : 0);
}

/* ------------------------------------------------------------------------------------
 * Message payloads: SEQ_DIGITS hex digits of the sequence number (the last `size`
 * digits if the message is shorter), then pattern bytes from an offset that depends on
 * the sending connection and the sequence number. Text messages use letters and
 * digits only (valid UTF-8); binary ones use every byte value.
 */

static size_t hdr_len(const struct bench *b)
{
    return KITE_MIN(b->o.size, (size_t)SEQ_DIGITS);
}

static size_t pat_offset(uint32_t id, uint64_t seq)
{
    uint64_t h = (id + 1) * 0x9E3779B97F4A7C15ull ^ seq * 0xC2B2AE3D27D4EB4Full;
    return (size_t)((h ^ (h >> 29)) % PAT_SPREAD);
}

static void write_seq(uint8_t *out, size_t n, uint64_t seq)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n && i < SEQ_DIGITS; i++)
        out[n - 1 - i] = (uint8_t)hex[(seq >> (4 * i)) & 15];
}

static void build_msg(const struct bench *b, uint8_t *out, uint32_t id, uint64_t seq)
{
    size_t h = hdr_len(b);
    write_seq(out, h, seq);
    memcpy(out + h, b->pat + pat_offset(id, seq), b->o.size - h);
}

enum verdict { MSG_OK, MSG_CORRUPT, MSG_ORDER };

/* The sequence number a message claims, when its header is whole and hex. */
static bool parse_seq(const struct bench *b, const uint8_t *data, size_t len, uint64_t *seq)
{
    if (b->o.size < SEQ_DIGITS || len < SEQ_DIGITS)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < SEQ_DIGITS; i++) {
        uint8_t c = data[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a') + 10;
        else
            return false;
        v = v << 4 | d;
    }
    *seq = v;
    return true;
}

static bool body_ok(const struct bench *b, uint32_t id, uint64_t seq, const uint8_t *data,
                    size_t len)
{
    size_t h = hdr_len(b);
    return memcmp(b->pat + pat_offset(id, seq), data + h, len - h) == 0;
}

/* Is `data` message `seq` of connection `id`? A wrong sequence number whose bytes are
 * those of another message is an ordering error (lost, duplicated, reordered); any
 * other difference is corruption. */
static enum verdict check_msg(const struct bench *b, uint32_t id, uint64_t seq,
                              enum kite_opcode type, const uint8_t *data, size_t len)
{
    if (type != b->op || len != b->o.size)
        return MSG_ORDER;
    uint8_t want[SEQ_DIGITS];
    size_t h = hdr_len(b);
    write_seq(want, h, seq);
    if (memcmp(want, data, h) == 0)
        return body_ok(b, id, seq, data, len) ? MSG_OK : MSG_CORRUPT;
    uint64_t claimed;
    if (parse_seq(b, data, len, &claimed) && !body_ok(b, id, claimed, data, len))
        return MSG_CORRUPT;
    return MSG_ORDER;
}

static uint64_t xorshift64(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* --deflate: words from a small vocabulary in a pseudo-random order, separated by
 * spaces. Like chat or JSON traffic it compresses (3.5:1 at zlib level 1, 4.8:1 at 6),
 * but it is not one phrase repeated, which deflate would shrink to almost nothing. */
static void fill_words(uint8_t *out, size_t n, uint64_t *x)
{
    static const char *const words[] = {
        "the",    "server", "sends",   "a",       "message", "to",      "every",  "client",
        "and",    "waits",  "for",     "its",     "reply",   "while",   "frames", "arrive",
        "over",   "one",    "socket",  "with",    "text",    "data",    "user",   "status",
        "online", "update", "channel", "price",   "order",   "id",      "time",   "value",
        "event",  "room",   "join",    "leave",   "hello",   "world",   "queue",  "drain",
        "close",  "open",   "ping",    "pong",    "chat",    "stream",  "ticker", "quote"};
    size_t i = 0;
    while (i < n) {
        const char *w = words[(xorshift64(x) >> 32) % (sizeof(words) / sizeof(words[0]))];
        for (; *w && i < n; w++)
            out[i++] = (uint8_t)*w;
        if (i < n)
            out[i++] = ' ';
    }
}

static int make_pattern(struct bench *b)
{
    static const char alnum[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t n = b->o.size + PAT_SPREAD;
    b->pat = kite__malloc(NULL, n);
    b->msg = kite__malloc(NULL, b->o.size ? b->o.size : 1);
    if (!b->pat || !b->msg)
        return KITE_ERR_NOMEM;
    uint64_t x = 0x2545F4914F6CDD1Dull; /* xorshift64: fixed, so runs are comparable */
    if (b->o.deflate) {
        fill_words(b->pat, n, &x);
        return KITE_OK;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t r = xorshift64(&x);
        b->pat[i] = b->o.binary ? (uint8_t)(r >> 32) : (uint8_t)alnum[(r >> 32) % 62];
    }
    return KITE_OK;
}

/* ------------------------------------------------------------------------------------
 * Connections: I/O.
 */

static struct kite_codec *reader(const struct bconn *k)
{
    return k->rx ? k->rx : k->tx;
}

static void conn_set_events(struct bench *b, struct bconn *k, uint32_t events)
{
    if (k->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = k};
    if (epoll_ctl(b->ep, EPOLL_CTL_MOD, k->fd, &ev) == 0)
        k->events = events;
}

/* A failed SSL call as a return code: -EAGAIN (wants I/O), 0 (the peer closed),
 * -errno, or -EPROTO for a TLS failure. */
static ssize_t tls_err(struct bconn *k, int ret)
{
    int e = SSL_get_error(k->ssl, ret);
    int sys = errno;
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        return sys ? -sys : 0;
    default:
        return -EPROTO;
    }
}

/* One non-blocking write over TCP or TLS: bytes taken, -EAGAIN, or -errno. A TLS write
 * that returned -EAGAIN is retried with the same bytes first (the codec's pending
 * output only grows at its end; the context accepts a moving buffer). */
static ssize_t io_send(struct bconn *k, const void *p, size_t n)
{
    if (k->ssl) {
        size_t w = 0;
        if (SSL_write_ex(k->ssl, p, n, &w) == 1)
            return (ssize_t)w;
        return tls_err(k, 0);
    }
    for (;;) {
        ssize_t w = send(k->fd, p, n, MSG_NOSIGNAL);
        if (w >= 0 || errno != EINTR)
            return w >= 0 ? w : -errno;
    }
}

/* One non-blocking read: bytes, 0 at EOF, -EAGAIN, or -errno. */
static ssize_t io_recv(struct bconn *k, void *p, size_t n)
{
    if (k->ssl) {
        size_t r = 0;
        if (SSL_read_ex(k->ssl, p, n, &r) == 1)
            return (ssize_t)r;
        return tls_err(k, 0);
    }
    for (;;) {
        ssize_t r = recv(k->fd, p, n, 0);
        if (r >= 0 || errno != EINTR)
            return r >= 0 ? r : -errno;
    }
}

static void conn_transport_closed(struct bconn *k, int err)
{
    k->eof = true;
    if (k->tx)
        kite_codec_transport_closed(k->tx, err);
    if (k->rx)
        kite_codec_transport_closed(k->rx, err);
}

/* Write what the codec has queued; ask for EPOLLOUT only while some is left. */
static void conn_flush(struct bench *b, struct bconn *k)
{
    const uint8_t *p;
    size_t n;
    while (!k->eof && (n = kite_codec_pending(k->tx, &p)) > 0) {
        ssize_t w = io_send(k, p, n);
        if (w == -EAGAIN) {
            conn_set_events(b, k, EPOLLIN | EPOLLOUT);
            return;
        }
        if (w <= 0) {
            conn_transport_closed(k, w < 0 ? (int)w : -EPIPE);
            return;
        }
        kite_codec_consume(k->tx, (size_t)w);
    }
    conn_set_events(b, k, EPOLLIN);
}

static void count_lost(struct bench *b, struct bconn *k);

/* Close the socket and free the codecs. Never called from inside a codec callback. */
static void conn_release(struct bench *b, struct bconn *k)
{
    if (k->fd < 0)
        return;
    SSL_free(k->ssl);
    k->ssl = NULL;
    close(k->fd);
    k->fd = -1;
    b->n_live--;
    k->state = CS_DONE;
    kite_codec_free(k->tx);
    kite_codec_free(k->rx);
    k->tx = k->rx = NULL;
    kite__buf_free(&k->hs, NULL);
}

static void mark_finished(struct bench *b, struct bconn *k)
{
    if (k->finished)
        return;
    k->finished = true;
    if (b->n_working > 0)
        b->n_working--;
}

/* The connection ended (EOF, error, or the close handshake done). */
static void conn_finish(struct bench *b, struct bconn *k)
{
    if (b->phase < PH_CLOSE) {
        const struct kite_close_info *ci = reader(k) ? kite_codec_close_info(reader(k)) : NULL;
        char d[96];
        snprintf(d, sizeof(d), "connection %u ended early (close code %u, %s)", k->id,
                 ci ? ci->code : 1006, ci && ci->error ? kite_strerror(ci->error) : "no error");
        note_error(b, "closed", d);
        b->err.closed++;
        count_lost(b, k);
    }
    mark_finished(b, k);
    conn_release(b, k);
}

/* Flush, then finish the connection if it is over. */
static void conn_sync(struct bench *b, struct bconn *k)
{
    if (k->fd < 0 || k->state != CS_OPEN)
        return;
    conn_flush(b, k);
    if (k->eof || kite_codec_is_closed(reader(k)))
        conn_finish(b, k);
}

static void feed(struct bench *b, struct bconn *k, uint8_t *p, size_t n)
{
    struct kite_codec *c = reader(k);
    kite_codec_recv(c, p, n, b->now / 1000000u);
    if (k->rx) {
        /* The server-role codec may queue replies (a close echo): they are not ours
         * to send; the client-role codec speaks for us. */
        const uint8_t *q;
        kite_codec_consume(k->rx, kite_codec_pending(k->rx, &q));
    }
}

static void conn_read(struct bench *b, struct bconn *k)
{
    /* TLS hands over one record (<= 16 KiB) per read: keep going while OpenSSL holds
     * read-ahead bytes (epoll cannot see them); once it holds none, its last read(2)
     * took what the socket had, or epoll (level-triggered) reports the rest. */
    for (int i = 0; (k->ssl ? (i == 0 || SSL_has_pending(k->ssl)) : i < 4) &&
                    !kite_codec_is_closed(reader(k));
         i++) {
        /* Inside a large message: read (decrypt) straight into the codec's message
         * buffer instead of copying it there from ours, as the server does. */
        uint8_t *buf;
        size_t cap = kite_codec_recv_space(reader(k), &buf);
        if (cap == 0) {
            buf = b->rbuf;
            cap = RBUF_SIZE;
        }
        ssize_t n = io_recv(k, buf, cap);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            conn_transport_closed(k, (int)n);
            break;
        }
        b->now = now_ns();
        feed(b, k, buf, (size_t)n);
        if (!k->ssl && (size_t)n < cap)
            break;
    }
    conn_sync(b, k);
}

/* ------------------------------------------------------------------------------------
 * Connections: connect and the opening handshake (RFC 6455 §4.1).
 */

static void conn_fail(struct bench *b, struct bconn *k, const char *what, const char *detail)
{
    note_error(b, what, detail);
    b->err.connect++;
    if (b->n_pending > 0)
        b->n_pending--;
    conn_release(b, k);
}

/* Bind to 127.0.0.(1 + id % src_addrs) with the port left to connect(): with
 * IP_BIND_ADDRESS_NO_PORT the kernel picks it per 4-tuple, so each source address has
 * its own ephemeral range and 19,000 connections fit. */
static int bind_source(const struct bench *b, int fd, uint32_t id)
{
    if (!b->dst_loopback4 || b->o.src_addrs == 0)
        return 0;
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(0x7F000001u + id % b->o.src_addrs);
    return bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
}

static int conn_watch(struct bench *b, struct bconn *k, uint32_t events, enum cstate st);
static int early_request(struct bench *b, struct bconn *k);

static int conn_start(struct bench *b, struct bconn *k)
{
    int fd = socket(b->dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    k->fd = fd;
    b->n_live++;
    /* Connect mode sends the request and one close frame, each with nothing else
     * in flight: Nagle never holds them, so skip the setsockopt. */
    int one = 1;
    if (b->o.mode != MODE_CONNECT)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = bind_source(b, fd, k->id);
    if (rc < 0)
        return rc;
    if (connect(fd, (struct sockaddr *)&b->dst, b->dst_len) < 0 && errno != EINPROGRESS)
        return -errno;
    return b->tls ? conn_watch(b, k, EPOLLOUT, CS_CONNECTING) : early_request(b, k);
}

static void start_connects(struct bench *b)
{
    while (b->n_started < b->n_conns && b->n_pending < b->o.concurrency) {
        struct bconn *k = &b->conns[b->n_started++];
        b->n_pending++;
        int rc = conn_start(b, k);
        if (rc < 0)
            conn_fail(b, k, "connect", kite_strerror(rc));
    }
}

static void hs_write(struct bench *b, struct bconn *k)
{
    while (k->hs.len > 0) {
        ssize_t w = io_send(k, kite__buf_head(&k->hs), k->hs.len);
        if (w == -EAGAIN) {
            conn_set_events(b, k, EPOLLOUT);
            return;
        }
        if (w <= 0) {
            conn_fail(b, k, "handshake write", w < 0 ? strerror((int)-w) : "EOF");
            return;
        }
        kite__buf_consume(&k->hs, (size_t)w);
    }
    k->state = CS_HS_READ;
    conn_set_events(b, k, EPOLLIN);
}

/* A fresh Sec-WebSocket-Key (RFC 6455 §4.1 item 7: 16 random bytes, base64) into
 * k->key and the request template. The bytes come from libcrypto 4 KiB at a time: one
 * RAND_bytes call per key cost a getpid(2) and the provider's locking each. */
static int next_key(struct bench *b, struct bconn *k)
{
    if (b->nonces_left < 16) {
        int rc = kite__random(b->nonces, sizeof(b->nonces));
        if (rc != KITE_OK)
            return rc;
        b->nonces_left = sizeof(b->nonces);
    }
    b->nonces_left -= 16;
    kite__base64_encode(b->nonces + b->nonces_left, 16, k->key);
    memcpy(b->req + b->req_key_off, k->key, KITE_WS_KEY_LEN);
    return KITE_OK;
}

/* TCP (and TLS, for wss://) is up: send the upgrade request. */
static void send_request(struct bench *b, struct bconn *k)
{
    int rc = next_key(b, k);
    if (rc == KITE_OK && kite__buf_append(&k->hs, NULL, b->req, b->req_len) < 0)
        rc = KITE_ERR_NOMEM;
    if (rc != KITE_OK) {
        conn_fail(b, k, "handshake request", kite_strerror(rc));
        return;
    }
    k->state = CS_HS_WRITE;
    hs_write(b, k);
}

static int conn_watch(struct bench *b, struct bconn *k, uint32_t events, enum cstate st)
{
    struct epoll_event ev = {.events = events, .data.ptr = k};
    if (epoll_ctl(b->ep, EPOLL_CTL_ADD, k->fd, &ev) < 0)
        return -errno;
    k->events = events;
    k->state = st;
    return 0;
}

/* ws:// right after connect(): over loopback the kernel has usually finished the TCP
 * handshake inside connect(), so send the request at once and skip the EPOLLOUT
 * round (an epoll_ctl MOD, a wakeup and a getsockopt per connection). A socket still
 * connecting refuses with EAGAIN and waits for EPOLLOUT as before; a refused one
 * reports its error here. */
static int early_request(struct bench *b, struct bconn *k)
{
    int rc = next_key(b, k);
    if (rc != KITE_OK)
        return rc;
    ssize_t w = send(k->fd, b->req, b->req_len, MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN)
        return conn_watch(b, k, EPOLLOUT, CS_CONNECTING);
    if (w < 0)
        return -errno;
    if ((size_t)w == b->req_len)
        return conn_watch(b, k, EPOLLIN, CS_HS_READ);
    if (kite__buf_append(&k->hs, NULL, b->req + w, b->req_len - (size_t)w) < 0)
        return KITE_ERR_NOMEM;
    return conn_watch(b, k, EPOLLOUT, CS_HS_WRITE);
}

/* One step of the TLS handshake; the fd interest follows what OpenSSL waits for. */
static void tls_step(struct bench *b, struct bconn *k)
{
    int r = SSL_do_handshake(k->ssl);
    if (r == 1) {
        send_request(b, k);
        return;
    }
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        conn_set_events(b, k, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT);
        return;
    }
    char d[120];
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    snprintf(d, sizeof(d), "%s", code ? ERR_reason_error_string(code) : "connection closed");
    conn_fail(b, k, "tls handshake", d);
}

static void conn_connected(struct bench *b, struct bconn *k)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_fail(b, k, "connect", strerror(err));
        return;
    }
    if (!b->tls) {
        send_request(b, k);
        return;
    }
    k->ssl = SSL_new(b->tls);
    if (!k->ssl || SSL_set_fd(k->ssl, k->fd) != 1) {
        conn_fail(b, k, "tls", "SSL_new failed");
        return;
    }
    /* SNI for names only (RFC 6066 §3 forbids IP literals). */
    struct in6_addr a6;
    if (inet_pton(AF_INET, b->o.host, &a6) != 1 && inet_pton(AF_INET6, b->o.host, &a6) != 1)
        SSL_set_tlsext_host_name(k->ssl, b->o.host);
    SSL_set_connect_state(k->ssl);
    k->state = CS_TLS;
    tls_step(b, k);
}

static struct kite_codec *codec_make(struct bench *b, struct bconn *k, enum kite_role role,
                                     struct kite_ext_chain *chain);

/* Is this the raw echo peer (its 101 says so), or did the user say it is? */
static bool is_raw_peer(const struct bench *b, const struct kite_http_response *resp)
{
    if (b->o.raw_peer)
        return true;
    const struct kite_http_header *h =
        kite__http_header_next(resp->headers, resp->num_headers, "X-Kite-Peer", NULL);
    return h && kite__ieq(h->value, h->value_len, "raw-echo", 8);
}

/* The 101 is whole and valid: set up the codecs (the client one with the negotiated
 * extensions, `chain`, which it takes over) and hand them any bytes that came after its
 * head in `in` (b->rbuf or k->hs). */
static void conn_open(struct bench *b, struct bconn *k, bool raw, uint8_t *in, size_t len,
                      size_t head_len, struct kite_ext_chain *chain)
{
    k->tx = codec_make(b, k, KITE_ROLE_CLIENT, chain);
    k->rx = raw ? codec_make(b, k, KITE_ROLE_SERVER, NULL) : NULL;
    if (!k->tx || (raw && !k->rx)) {
        conn_fail(b, k, "codec", kite_strerror(KITE_ERR_NOMEM));
        return;
    }
    b->raw_seen |= raw;
    k->state = CS_OPEN;
    k->opened = true;
    b->n_pending--;
    b->n_open++;
    if (len > head_len)
        feed(b, k, in + head_len, len - head_len);
    kite__buf_free(&k->hs, NULL);
    conn_sync(b, k);
}

/* What was agreed, in the header's notation ("" for all defaults). */
static void describe_deflate(const void *inst, char *buf, size_t cap)
{
    struct kite_pmd_params p;
    buf[0] = '\0';
    if (kite_pmd_params(inst, &p) != KITE_OK)
        return;
    snprintf(buf, cap, "server_max_window_bits=%u; client_max_window_bits=%u%s%s",
             p.server_max_window_bits, p.client_max_window_bits,
             p.server_no_context_takeover ? "; server_no_context_takeover" : "",
             p.client_no_context_takeover ? "; client_no_context_takeover" : "");
}

/* --deflate: build the chain from the 101's Sec-WebSocket-Extensions (all lines joined
 * with ", ", RFC 9110 §5.3), and fail the connection unless permessage-deflate is in it:
 * a run that asked for compression must not quietly measure without. */
static int accept_deflate(struct bench *b, struct bconn *k, const struct kite_http_response *resp,
                          struct kite_ext_chain **chain)
{
    struct kite_buf v = {0};
    const struct kite_http_header *h;
    size_t pos = 0;
    int rc = KITE_OK;
    while (rc == KITE_OK && (h = kite__http_header_next(resp->headers, resp->num_headers,
                                                        "Sec-WebSocket-Extensions", &pos))) {
        if (v.len > 0 && kite__buf_append(&v, NULL, ", ", 2) < 0)
            rc = KITE_ERR_NOMEM;
        else if (kite__buf_append(&v, NULL, h->value, h->value_len) < 0)
            rc = KITE_ERR_NOMEM;
    }
    if (rc == KITE_OK)
        rc = kite_ext_accept(b->exts, KITE_MODE_DEFAULT,
                             v.len ? (const char *)kite__buf_head(&v) : NULL, v.len, NULL, chain);
    kite__buf_free(&v, NULL);
    void *inst = rc == KITE_OK ? kite_ext_chain_get(*chain, &kite_ext_permessage_deflate) : NULL;
    if (!inst) {
        kite_ext_chain_free(*chain);
        *chain = NULL;
        conn_fail(b, k, "handshake",
                  rc < 0 ? kite_strerror(rc) : "the server did not accept permessage-deflate");
        return -1;
    }
    if (b->n_deflate++ == 0)
        describe_deflate(inst, b->deflate_agreed, sizeof(b->deflate_agreed));
    return 0;
}

/* Check the server's response head, the `len` bytes at `in` of which the first
 * `last_len` were checked before (RFC 6455 §4.1: status 101, Upgrade, Connection,
 * Sec-WebSocket-Accept, no extension or subprotocol we did not offer). False while the
 * head is incomplete. */
static bool hs_check(struct bench *b, struct bconn *k, uint8_t *in, size_t len, size_t last_len)
{
    struct kite_http_header hdrs[KITE_HTTP_DEFAULT_MAX_HEADERS];
    struct kite_http_response resp;
    ssize_t n = kite__http_parse_response((const char *)in, len, last_len, NULL, &resp, hdrs);
    if (n == KITE_INCOMPLETE)
        return false;
    if (n < 0) {
        conn_fail(b, k, "handshake response", kite_strerror((int)n));
        return true;
    }
    struct kite_ws_client_result res;
    if (kite__ws_client_check(&resp, &b->creq, k->key, &res) != KITE_OK) {
        char d[96];
        snprintf(d, sizeof(d), "status %d: %s", res.status, res.reason ? res.reason : "?");
        conn_fail(b, k, "handshake", d);
        return true;
    }
    struct kite_ext_chain *chain = NULL;
    if (b->exts && accept_deflate(b, k, &resp, &chain) < 0)
        return true;
    conn_open(b, k, is_raw_peer(b, &resp), in, len, (size_t)n, chain);
    return true;
}

/* The response normally arrives in one read: take it into the shared receive buffer
 * and keep it (in k->hs, allocated then) only while its head is incomplete. */
static void hs_read(struct bench *b, struct bconn *k)
{
    bool first = k->hs.len == 0;
    uint8_t *dst = first ? b->rbuf : kite__buf_reserve(&k->hs, NULL, HS_READ_CHUNK);
    if (!dst) {
        conn_fail(b, k, "handshake", kite_strerror(KITE_ERR_NOMEM));
        return;
    }
    ssize_t n = io_recv(k, dst, first ? RBUF_SIZE : HS_READ_CHUNK);
    if (n == -EAGAIN)
        return;
    if (n <= 0) {
        conn_fail(b, k, "handshake", n == 0 ? "server closed the connection" : strerror((int)-n));
        return;
    }
    b->now = now_ns();
    if (first) {
        if (!hs_check(b, k, b->rbuf, (size_t)n, 0) &&
            kite__buf_append(&k->hs, NULL, b->rbuf, (size_t)n) < 0)
            conn_fail(b, k, "handshake", kite_strerror(KITE_ERR_NOMEM));
        return;
    }
    size_t last = k->hs.len;
    k->hs.len += (size_t)n;
    hs_check(b, k, kite__buf_head(&k->hs), k->hs.len, last);
}

static void conn_on_event(struct bench *b, struct bconn *k, uint32_t events)
{
    switch (k->state) {
    case CS_CONNECTING:
        conn_connected(b, k);
        break;
    case CS_TLS:
        tls_step(b, k);
        break;
    case CS_HS_WRITE:
        hs_write(b, k);
        break;
    case CS_HS_READ:
        hs_read(b, k);
        break;
    case CS_OPEN:
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_read(b, k);
        else
            conn_sync(b, k);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------------------
 * Echo mode.
 */

static int send_msg(struct bench *b, struct bconn *sender, uint64_t seq)
{
    build_msg(b, b->msg, sender->id, seq);
    int rc = kite_codec_send(sender->tx, b->op, b->msg, b->o.size);
    if (rc != KITE_OK)
        note_error(b, "send", kite_strerror(rc));
    return rc;
}

static bool sending(const struct bench *b)
{
    return b->phase == PH_WARMUP || b->phase == PH_MEASURE;
}

static void echo_send_more(struct bench *b, struct bconn *k)
{
    while (sending(b) && k->next_send - k->next_recv < b->o.pipeline &&
           k->next_send < k->send_limit) {
        if (send_msg(b, k, k->next_send) != KITE_OK)
            return;
        k->sent_ns[k->next_send % b->o.pipeline] = b->now;
        k->next_send++;
        b->inflight++;
        b->sent += b->counting;
    }
}

static void count_verdict(struct bench *b, enum verdict v, uint32_t id, uint64_t seq)
{
    if (v == MSG_OK)
        return;
    char d[80];
    snprintf(d, sizeof(d), "connection %u message %llu", id, (unsigned long long)seq);
    note_error(b, v == MSG_CORRUPT ? "corrupt echo" : "wrong sequence, type or size", d);
    if (v == MSG_CORRUPT)
        b->err.corrupt++;
    else
        b->err.order++;
}

/* An echo of `len` bytes arrived, with check_msg()'s verdict on it. */
static void echo_judged(struct bench *b, struct bconn *k, enum verdict v, size_t len)
{
    if (k->counted_lost)
        return; /* late echoes after the drain timed out: already counted lost */
    if (k->next_recv == k->next_send) {
        count_verdict(b, MSG_ORDER, k->id, k->next_recv); /* an echo of nothing we sent */
        return;
    }
    uint64_t seq = k->next_recv++;
    b->inflight--;
    count_verdict(b, v, k->id, seq);
    if (b->counting) {
        hist_record(b->h, b->now - k->sent_ns[seq % b->o.pipeline]);
        b->msgs++;
        b->bytes += len;
    }
    if (k->next_recv == k->send_limit)
        mark_finished(b, k);
    echo_send_more(b, k);
}

static void echo_received(struct bench *b, struct bconn *k, enum kite_opcode type,
                          const uint8_t *data, size_t len)
{
    enum verdict v = k->next_recv < k->next_send
                         ? check_msg(b, k->id, k->next_recv, type, data, len)
                         : MSG_ORDER;
    echo_judged(b, k, v, len);
}

/*
 * A large echo that the codec hands over in parts (a server that streams it back in
 * fragments, or any echo of 64 KiB or more): checked as it arrives, with check_msg's
 * rules, without gathering it. The first part holds the sequence digits; the rest is
 * compared with the pattern of the message they claim to be.
 */
static void echo_part_begin(struct bench *b, struct bconn *k, const struct kite_msg_part *p)
{
    size_t h = hdr_len(b);
    uint8_t want[SEQ_DIGITS];
    write_seq(want, h, k->next_recv);
    k->part_seq = k->next_recv;
    k->part_v = MSG_OK;
    k->part_skip = false;
    if (p->type != b->op || p->len < h) {
        k->part_v = MSG_ORDER;
        k->part_skip = true;
    } else if (memcmp(want, p->data, h) != 0) {
        /* Another message's bytes (ordering) unless its own pattern does not match. */
        k->part_v = MSG_ORDER;
        k->part_skip = !parse_seq(b, p->data, p->len, &k->part_seq);
    }
}

static void echo_part_check(struct bench *b, struct bconn *k, const struct kite_msg_part *p)
{
    size_t h = hdr_len(b);
    uint64_t from = KITE_MAX(p->offset, (uint64_t)h), to = p->offset + p->len;
    if (to > b->o.size) {
        k->part_v = MSG_ORDER; /* longer than what we sent */
        k->part_skip = true;
    }
    if (k->part_skip || to <= from)
        return;
    const uint8_t *want = b->pat + pat_offset(k->id, k->part_seq) + (from - h);
    if (memcmp(want, p->data + (from - p->offset), (size_t)(to - from)) != 0) {
        k->part_v = MSG_CORRUPT;
        k->part_skip = true;
    }
}

static int on_message_part(struct kite_codec *c, const struct kite_msg_part *p, void *ud)
{
    struct bconn *k = ud;
    struct bench *b = k->b;
    if (c != reader(k) || b->phase >= PH_CLOSE)
        return KITE_OK;
    if (p->offset == 0)
        echo_part_begin(b, k, p);
    echo_part_check(b, k, p);
    if (!p->last)
        return KITE_OK;
    enum verdict v = (enum verdict)k->part_v;
    if (v != MSG_CORRUPT && p->offset + p->len != b->o.size)
        v = MSG_ORDER;
    echo_judged(b, k, v, (size_t)(p->offset + p->len));
    return KITE_OK;
}

/* ------------------------------------------------------------------------------------
 * Broadcast mode. The publisher keeps `pipeline` messages in flight; a message leaves
 * the window once every live subscriber has received it.
 */

static void pub_advance(struct bench *b)
{
    while (b->pub_oldest < b->pub->next_send &&
           b->slots[b->pub_oldest % b->o.pipeline].remaining == 0)
        b->pub_oldest++;
}

/* Subscriber k got message seq (or skipped it, record = false). */
static void slot_delivered(struct bench *b, uint64_t seq, bool record)
{
    if (seq < b->pub_oldest || seq >= b->pub->next_send)
        return;
    struct pub_slot *s = &b->slots[seq % b->o.pipeline];
    if (record && b->counting)
        hist_record(b->h, b->now - s->sent_ns);
    if (s->remaining > 0 && --s->remaining == 0)
        pub_advance(b);
}

static void pub_send_more(struct bench *b)
{
    struct bconn *p = b->pub;
    while (sending(b) && p->state == CS_OPEN && p->next_send - b->pub_oldest < b->o.pipeline &&
           p->next_send < p->send_limit) {
        if (send_msg(b, p, p->next_send) != KITE_OK)
            return;
        struct pub_slot *s = &b->slots[p->next_send % b->o.pipeline];
        s->sent_ns = b->now;
        s->remaining = b->n_live - 1; /* every live subscriber */
        p->next_send++;
        b->sent += b->counting;
    }
}

/* The publisher's own copies, if the server sends them back: checked, not counted. */
static void pub_received(struct bench *b, enum kite_opcode type, const uint8_t *data,
                         size_t len)
{
    struct bconn *p = b->pub;
    uint64_t seq = p->next_recv++;
    count_verdict(b, check_msg(b, p->id, seq, type, data, len), p->id, seq);
    b->self_recv++;
}

static void sub_received(struct bench *b, struct bconn *k, enum kite_opcode type,
                         const uint8_t *data, size_t len)
{
    uint64_t seq = k->next_recv, got;
    if (k->counted_lost)
        return;
    if (seq >= b->pub->next_send) {
        count_verdict(b, MSG_ORDER, k->id, seq); /* more than was published */
        return;
    }
    enum verdict v = check_msg(b, b->pub->id, seq, type, data, len);
    if (v == MSG_ORDER && parse_seq(b, data, len, &got) && got > seq &&
        got < b->pub->next_send && check_msg(b, b->pub->id, got, type, data, len) == MSG_OK) {
        /* The server skipped messages for this subscriber: count them lost. */
        note_error(b, "lost", "a subscriber missed messages");
        b->err.lost += got - seq;
        for (; seq < got; seq++)
            slot_delivered(b, seq, false);
        v = MSG_OK;
    }
    count_verdict(b, v, k->id, seq);
    k->next_recv = seq + 1;
    if (b->counting) {
        b->msgs++;
        b->bytes += len;
    }
    slot_delivered(b, seq, true);
}

/* Count what a connection will never receive; release the window slots it held. */
static void count_lost(struct bench *b, struct bconn *k)
{
    if (k->counted_lost || k->state != CS_OPEN)
        return;
    k->counted_lost = true;
    if (b->o.mode == MODE_ECHO) {
        b->err.lost += k->next_send - k->next_recv;
        b->inflight -= k->next_send - k->next_recv;
    } else if (b->o.mode == MODE_BROADCAST && k != b->pub && k->next_recv < b->pub->next_send) {
        b->err.lost += b->pub->next_send - k->next_recv;
        for (uint64_t s = KITE_MAX(k->next_recv, b->pub_oldest); s < b->pub->next_send; s++)
            slot_delivered(b, s, false);
    }
}

/* ------------------------------------------------------------------------------------
 * Codec callbacks.
 */

static int on_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                      size_t len, void *ud)
{
    struct bconn *k = ud;
    struct bench *b = k->b;
    if (c != reader(k) || b->phase >= PH_CLOSE)
        return KITE_OK;
    if (b->o.mode == MODE_ECHO)
        echo_received(b, k, type, data, len);
    else if (b->o.mode == MODE_BROADCAST && k == b->pub)
        pub_received(b, type, data, len);
    else if (b->o.mode == MODE_BROADCAST)
        sub_received(b, k, type, data, len);
    return KITE_OK; /* connect mode: whatever the server says while idle is ignored */
}

static void on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    /* Nothing to do here: conn_sync() notices kite_codec_is_closed() once
     * kite_codec_recv() returns and finishes the connection outside the callback. */
    KITE_UNUSED(c);
    KITE_UNUSED(ci);
    KITE_UNUSED(ud);
}

static const struct kite_codec_callbacks bench_callbacks = {
    .on_message = on_message,
    .on_close = on_close,
};
/* Echo mode: large echoes are checked as they stream in (on_message_part). */
static const struct kite_codec_callbacks bench_echo_callbacks = {
    .on_message = on_message,
    .on_close = on_close,
    .on_message_part = on_message_part,
};

/* `chain` (may be NULL) goes to the codec, which owns it from then on, even when this
 * fails. */
static struct kite_codec *codec_make(struct bench *b, struct bconn *k, enum kite_role role,
                                     struct kite_ext_chain *chain)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.role = role;
    cfg.extensions = chain;
    uint64_t max = KITE_MAX((uint64_t)b->o.size + 1024, cfg.options.max_frame_size);
    cfg.options.max_frame_size = max;
    cfg.options.max_message_size = max;
    const struct kite_codec_callbacks *cb =
        b->o.mode == MODE_ECHO ? &bench_echo_callbacks : &bench_callbacks;
    return kite_codec_new(&cfg, cb, k, b->now / 1000000u);
}

/* ------------------------------------------------------------------------------------
 * Phases: CONNECT -> [WARMUP] -> MEASURE -> DRAIN -> CLOSE -> DONE (echo, broadcast),
 * CONNECT -> HOLD -> CLOSE -> DONE (connect).
 */

static void sample_start(struct bench *b)
{
    b->t_measure = b->now;
    b->cpu0 = client_cpu_us();
    b->scpu0 = server_cpu_us(b->o.server_pid);
}

static void sample_end(struct bench *b)
{
    b->t_end = b->now;
    b->cpu1 = client_cpu_us();
    b->scpu1 = server_cpu_us(b->o.server_pid);
    b->counting = false;
}

/* Split -n over the live connections (echo) or give it to the publisher. */
static void set_quotas(struct bench *b)
{
    b->n_working = 0;
    if (b->o.mode == MODE_BROADCAST) {
        b->pub->send_limit = b->pub->next_send + b->o.messages;
        return;
    }
    uint32_t live = 0, i = 0;
    for (uint32_t j = 0; j < b->n_conns; j++)
        live += b->conns[j].state == CS_OPEN;
    for (uint32_t j = 0; j < b->n_conns; j++) {
        struct bconn *k = &b->conns[j];
        if (k->state != CS_OPEN)
            continue;
        uint64_t quota = b->o.messages / live + (i++ < b->o.messages % live);
        k->send_limit = k->next_send + quota;
        b->n_working++;
        if (k->next_recv >= k->send_limit)
            mark_finished(b, k);
    }
}

static void pump_all(struct bench *b)
{
    if (b->o.mode == MODE_BROADCAST) {
        pub_send_more(b);
        conn_sync(b, b->pub);
        return;
    }
    for (uint32_t i = 0; i < b->n_conns; i++) {
        struct bconn *k = &b->conns[i];
        if (k->state != CS_OPEN)
            continue;
        echo_send_more(b, k);
        conn_sync(b, k);
    }
}

static void begin_measure(struct bench *b)
{
    b->phase = PH_MEASURE;
    b->counting = true;
    b->msgs = b->bytes = b->sent = 0;
    memset(b->h, 0, sizeof(*b->h));
    if (b->o.messages > 0)
        set_quotas(b);
    /* A -n run ends on its count; only the hard deadline bounds it. */
    b->t_deadline = b->o.messages ? b->t_hard : b->now + (uint64_t)(b->o.duration * 1e9);
    sample_start(b);
}

static void close_all(struct bench *b)
{
    b->phase = PH_CLOSE;
    b->t_deadline = b->now + CLOSE_NS + b->n_conns / 5000u * NS_PER_S;
    for (uint32_t i = 0; i < b->n_conns; i++) {
        struct bconn *k = &b->conns[i];
        if (k->fd < 0)
            continue;
        if (k->state != CS_OPEN) {
            conn_fail(b, k, "connect", "handshake did not finish in time");
            continue;
        }
        kite_codec_close(k->tx, KITE_CLOSE_NORMAL, "bench done", b->now / 1000000u);
        conn_sync(b, k);
    }
}

static void all_connected(struct bench *b)
{
    b->t_open = b->now;
    b->ccon1 = client_cpu_us();
    b->scon1 = server_cpu_us(b->o.server_pid);
    if (b->n_open == 0 || (b->pub && b->pub->state != CS_OPEN)) {
        note_error(b, "connect", "no usable connection");
        close_all(b);
        return;
    }
    if (b->o.mode == MODE_CONNECT) {
        b->phase = PH_HOLD;
        b->t_deadline = b->now + (uint64_t)(b->o.duration * 1e9);
        sample_start(b);
        return;
    }
    if (b->o.warmup > 0) {
        b->phase = PH_WARMUP;
        b->t_deadline = b->now + (uint64_t)(b->o.warmup * 1e9);
    } else {
        begin_measure(b);
    }
    pump_all(b);
}

static bool measure_done(const struct bench *b)
{
    if (b->interrupted || b->n_live == 0)
        return true;
    if (b->o.mode == MODE_BROADCAST && (b->pub->state != CS_OPEN || b->n_live < 2))
        return true;
    if (b->o.messages == 0)
        return b->now >= b->t_deadline;
    if (b->o.mode == MODE_BROADCAST)
        return b->pub_oldest >= b->pub->send_limit;
    return b->n_working == 0;
}

static bool drained(const struct bench *b)
{
    if (b->o.mode == MODE_BROADCAST)
        return b->pub->state != CS_OPEN || b->pub_oldest == b->pub->next_send;
    return b->inflight == 0;
}

static void end_drain(struct bench *b)
{
    if (!drained(b)) {
        note_error(b, "lost", "messages still unanswered after the drain time");
        for (uint32_t i = 0; i < b->n_conns; i++)
            count_lost(b, &b->conns[i]);
    }
    close_all(b);
}

static void connect_step(struct bench *b)
{
    if (b->interrupted) {
        close_all(b);
        return;
    }
    start_connects(b);
    if (b->n_pending > 0 && b->now >= b->t_connect_limit) {
        for (uint32_t i = 0; i < b->n_started; i++)
            if (b->conns[i].fd >= 0 && b->conns[i].state != CS_OPEN)
                conn_fail(b, &b->conns[i], "connect", "handshake did not finish in time");
        for (; b->n_started < b->n_conns; b->n_started++)
            b->err.connect++; /* never attempted */
        b->n_pending = 0;
    }
    if (b->n_pending == 0 && b->n_started == b->n_conns)
        all_connected(b);
}

static void hard_stop(struct bench *b)
{
    b->deadline_hit = true;
    note_error(b, "timeout", "the hard deadline passed");
    if (b->phase <= PH_MEASURE && b->phase != PH_CONNECT)
        sample_end(b);
    for (uint32_t i = 0; i < b->n_conns; i++) {
        struct bconn *k = &b->conns[i];
        if (k->fd >= 0 && k->state != CS_OPEN)
            b->err.connect++; /* its handshake never finished */
        count_lost(b, k);
        conn_release(b, k);
    }
    b->phase = PH_DONE;
}

static void advance(struct bench *b)
{
    if (b->now >= b->t_hard) {
        hard_stop(b);
        return;
    }
    switch (b->phase) {
    case PH_CONNECT:
        connect_step(b);
        break;
    case PH_WARMUP:
        if (b->now >= b->t_deadline || b->interrupted || b->n_live == 0)
            begin_measure(b);
        break;
    case PH_MEASURE:
        if (measure_done(b)) {
            sample_end(b);
            b->phase = PH_DRAIN;
            b->t_deadline = b->now + DRAIN_NS;
        }
        break;
    case PH_DRAIN:
        if (drained(b) || b->now >= b->t_deadline)
            end_drain(b);
        break;
    case PH_HOLD:
        if (b->now >= b->t_deadline || b->interrupted) {
            sample_end(b);
            b->rss1 = server_rss_kb(b->o.server_pid);
            close_all(b);
        }
        break;
    case PH_CLOSE:
        if (b->n_live > 0 && b->now < b->t_deadline)
            break;
        b->close_timeouts += b->n_live;
        for (uint32_t i = 0; i < b->n_conns; i++)
            conn_release(b, &b->conns[i]);
        b->phase = PH_DONE;
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------------------
 * The loop.
 */

static int wait_ms(const struct bench *b)
{
    uint64_t next = KITE_MIN(b->t_hard, b->phase == PH_CONNECT ? b->t_connect_limit
                                                               : b->t_deadline);
    if (next <= b->now)
        return 0;
    return (int)KITE_MIN((next - b->now + 999999) / 1000000u, 100u);
}

static int run_loop(struct bench *b)
{
    struct epoll_event evs[512];
    while (b->phase != PH_DONE) {
        b->now = now_ns();
        b->interrupted |= g_interrupt != 0;
        advance(b);
        if (b->phase == PH_DONE)
            break;
        int n = epoll_wait(b->ep, evs, 512, wait_ms(b));
        if (n < 0 && errno != EINTR) {
            perror("kite bench: epoll_wait");
            return -1;
        }
        /* Reads take their own timestamps; this one serves connects and sends
         * started outside a read. */
        b->now = now_ns();
        for (int i = 0; i < n; i++)
            conn_on_event(b, evs[i].data.ptr, evs[i].events);
        if (b->pub && b->pub->state == CS_OPEN) {
            pub_send_more(b);
            conn_sync(b, b->pub);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Setup and teardown.
 */

static int resolve(struct bench *b)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", b->o.port);
    int rc = getaddrinfo(b->o.host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        fprintf(stderr, "kite bench: cannot resolve %s: %s\n", b->o.host, gai_strerror(rc));
        return -1;
    }
    /* Prefer IPv4 ("localhost" may list ::1 first): that is where the source
     * addresses rotate and where the servers listen by default. */
    const struct addrinfo *pick = ai;
    for (const struct addrinfo *p = ai; p; p = p->ai_next)
        if (p->ai_family == AF_INET) {
            pick = p;
            break;
        }
    memcpy(&b->dst, pick->ai_addr, pick->ai_addrlen);
    b->dst_len = pick->ai_addrlen;
    freeaddrinfo(ai);
    if (b->dst.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&b->dst;
        b->dst_loopback4 = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    return 0;
}

/* Raise the soft descriptor limit to the hard one; fail early if N connections cannot
 * fit. */
static int raise_nofile(uint32_t conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur < (rlim_t)conns + 32) {
        fprintf(stderr, "kite bench: %u connections need more file descriptors than the "
                        "limit of %llu\n", conns, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int bench_alloc(struct bench *b)
{
    b->n_subs = b->o.conns;
    b->n_conns = b->o.conns + (b->o.mode == MODE_BROADCAST);
    b->conns = kite__calloc(NULL, sizeof(*b->conns) * b->n_conns);
    b->rbuf = kite__malloc(NULL, RBUF_SIZE);
    b->h = kite__calloc(NULL, sizeof(*b->h));
    if (!b->conns || !b->rbuf || !b->h || make_pattern(b) != KITE_OK)
        return KITE_ERR_NOMEM;
    if (b->o.mode == MODE_ECHO) {
        b->sent_ring = kite__calloc(NULL, sizeof(uint64_t) * b->o.pipeline * b->n_conns);
        if (!b->sent_ring)
            return KITE_ERR_NOMEM;
    }
    if (b->o.mode == MODE_BROADCAST) {
        b->slots = kite__calloc(NULL, sizeof(*b->slots) * b->o.pipeline);
        if (!b->slots)
            return KITE_ERR_NOMEM;
        b->pub = &b->conns[b->n_conns - 1];
    }
    for (uint32_t i = 0; i < b->n_conns; i++) {
        struct bconn *k = &b->conns[i];
        k->b = b;
        k->fd = -1;
        k->id = i;
        k->send_limit = UINT64_MAX;
        if (b->sent_ring)
            k->sent_ns = b->sent_ring + (size_t)i * b->o.pipeline;
    }
    return KITE_OK;
}

static void bench_free(struct bench *b)
{
    if (b->conns)
        for (uint32_t i = 0; i < b->n_conns; i++)
            conn_release(b, &b->conns[i]);
    if (b->ep >= 0)
        close(b->ep);
    SSL_CTX_free(b->tls);
    kite_ext_list_free(b->exts); /* after the codecs: their chains came from it */
    kite__free(NULL, b->ext_offer);
    kite__free(NULL, b->req);
    kite_pmd_pool_trim();
    kite__free(NULL, b->conns);
    kite__free(NULL, b->rbuf);
    kite__free(NULL, b->h);
    kite__free(NULL, b->pat);
    kite__free(NULL, b->msg);
    kite__free(NULL, b->sent_ring);
    kite__free(NULL, b->slots);
}

/* One client context for every wss:// connection: TLS 1.2+, no verification (we
 * measure servers we started), partial writes so a big queued output goes out record by
 * record, and an EOF without close_notify read as a plain EOF. */
static int tls_setup(struct bench *b)
{
    b->tls = SSL_CTX_new(TLS_client_method());
    if (!b->tls) {
        fprintf(stderr, "kite bench: cannot make a TLS context\n");
        return -1;
    }
    SSL_CTX_set_min_proto_version(b->tls, TLS1_2_VERSION);
    SSL_CTX_set_verify(b->tls, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(b->tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(b->tls, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Offer AES-128-GCM first, as browsers do (OpenSSL's own order starts with
     * AES-256); the server picks from our order unless it insists on its own. */
    SSL_CTX_set_ciphersuites(b->tls, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                     "TLS_CHACHA20_POLY1305_SHA256");
    /* One read(2) takes several records; conn_read drains what OpenSSL buffers. */
    SSL_CTX_set_read_ahead(b->tls, 1);
    SSL_CTX_set_default_read_buffer_len(b->tls, 64 * 1024);
    return 0;
}

/* --deflate: install permessage-deflate for the client side of every connection and
 * make the offer. The speed preset (zlib level 1, 15-bit windows, kept streams) keeps the
 * generator's own compression cheap and asks nothing of the server's window, so the
 * offer is "permessage-deflate; client_max_window_bits", what browsers send: each
 * server answers with its own defaults. */
static int deflate_setup(struct bench *b)
{
    struct kite_pmd_config pc;
    b->exts = kite_ext_list_new(NULL);
    int rc = b->exts ? kite_pmd_config_preset(&pc, KITE_PMD_SPEED) : KITE_ERR_NOMEM;
    if (rc == KITE_OK)
        rc = kite_ext_list_install(b->exts, &kite_ext_permessage_deflate, &pc);
    ssize_t n = rc == KITE_OK ? kite_ext_offer(b->exts, KITE_MODE_DEFAULT, NULL, 0) : rc;
    if (n > 0) {
        b->ext_offer = kite__malloc(NULL, (size_t)n + 1);
        n = !b->ext_offer ? KITE_ERR_NOMEM
                          : kite_ext_offer(b->exts, KITE_MODE_DEFAULT, b->ext_offer, (size_t)n + 1);
    }
    if (n <= 0) {
        fprintf(stderr, "kite bench: cannot set up permessage-deflate: %s\n",
                kite_strerror(n < 0 ? (int)n : KITE_ERR_STATE));
        return -1;
    }
    b->creq.extensions = (struct kite_view){b->ext_offer, (size_t)n};
    return 0;
}

/* Build the upgrade request once around a placeholder key; next_key() overwrites the
 * key in place for each connection instead of formatting the whole request again. */
static int request_setup(struct bench *b)
{
    static const char placeholder[] = "AAAAAAAAAAAAAAAAAAAAAA==";
    static const char field[] = "\r\nSec-WebSocket-Key: ";
    struct kite_buf req = {0};
    int rc = kite__ws_write_request(&req, NULL, &b->creq, placeholder);
    const char *at = NULL;
    if (rc == KITE_OK) {
        /* The request line and Host cannot hold a CRLF: the first match is the field. */
        at = memmem(kite__buf_head(&req), req.len, field, sizeof(field) - 1);
        b->req = kite__malloc(NULL, req.len);
    }
    if (!at || !b->req) {
        kite__buf_free(&req, NULL);
        fprintf(stderr, "kite bench: cannot build the upgrade request: %s\n",
                kite_strerror(rc != KITE_OK ? rc : KITE_ERR_NOMEM));
        return -1;
    }
    b->req_len = req.len;
    b->req_key_off = (size_t)(at - (const char *)kite__buf_head(&req)) + sizeof(field) - 1;
    memcpy(b->req, kite__buf_head(&req), req.len);
    kite__buf_free(&req, NULL);
    return 0;
}

static int bench_setup(struct bench *b)
{
    b->ep = -1;
    b->scpu0 = b->scpu1 = -1;
    b->scon0 = b->scon1 = -1;
    b->rss0 = b->rss1 = -1;
    b->op = b->o.binary ? KITE_OP_BINARY : KITE_OP_TEXT;
    if (b->o.mode == MODE_BROADCAST && b->o.size < SEQ_DIGITS) {
        fprintf(stderr, "kite bench: broadcast needs -s %d or more\n", SEQ_DIGITS);
        return -1;
    }
    if (raise_nofile(b->o.conns + 1) < 0 || resolve(b) < 0)
        return -1;
    if (bench_alloc(b) != KITE_OK) {
        fprintf(stderr, "kite bench: out of memory\n");
        return -1;
    }
    b->ep = epoll_create1(EPOLL_CLOEXEC);
    if (b->ep < 0) {
        perror("kite bench: epoll_create1");
        return -1;
    }
    b->creq.host = kite__view_cstr(b->o.host);
    b->creq.port = (uint16_t)b->o.port;
    b->creq.path = kite__view_cstr(b->o.path);
    if (b->o.deflate && deflate_setup(b) < 0)
        return -1;
    if (request_setup(b) < 0)
        return -1;
    return b->o.tls ? tls_setup(b) : 0;
}

/* Deadlines: connecting may take 10 s plus 1 s per 1,000 connections; the hard
 * deadline covers every phase (-n runs get 60 s of messages) unless --timeout says. */
static void set_deadlines(struct bench *b)
{
    double connect_s = 10.0 + b->o.conns / 1000.0;
    double work_s = b->o.messages > 0 && b->o.mode != MODE_CONNECT ? 60.0 : b->o.duration;
    double total = b->o.timeout >= 0
                       ? b->o.timeout
                       : connect_s + b->o.warmup + work_s + (DRAIN_NS + CLOSE_NS) / 1e9 +
                             b->o.conns / 5000u + 3;
    b->t_start = b->now = now_ns();
    b->ccon0 = client_cpu_us();
    b->scon0 = server_cpu_us(b->o.server_pid);
    b->t_connect_limit = b->t_start + (uint64_t)(KITE_MIN(connect_s, total) * 1e9);
    b->t_hard = b->t_start + (uint64_t)(total * 1e9);
}

/* ------------------------------------------------------------------------------------
 * Report.
 */

static double window_s(const struct bench *b)
{
    return b->t_end > b->t_measure ? (double)(b->t_end - b->t_measure) / 1e9 : 0.0;
}

static double per_msg_us(int64_t cpu_us, uint64_t msgs)
{
    return msgs ? (double)cpu_us / (double)msgs : 0.0;
}

/* Print a number, or null when unknown (JSON). */
static void json_num(const char *name, bool known, double v, const char *fmt)
{
    printf(",\"%s\":", name);
    if (known)
        printf(fmt, v);
    else
        printf("null");
}

static void json_string(const char *name, const char *s)
{
    printf(",\"%s\":\"", name);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

static const char *mode_name(enum bmode m)
{
    return m == MODE_ECHO ? "echo" : m == MODE_CONNECT ? "connect" : "broadcast";
}

/* Connections (subscribers, in broadcast) whose handshake completed. */
static uint32_t conns_open(const struct bench *b)
{
    return b->n_open - (b->pub && b->pub->opened ? 1 : 0);
}

static void json_common(const struct bench *b)
{
    printf("{\"mode\":\"%s\"", mode_name(b->o.mode));
    json_string("host", b->o.host);
    printf(",\"port\":%u", b->o.port);
    json_string("path", b->o.path);
    printf(",\"connections\":%u,\"open\":%u,\"raw_peer\":%s,\"tls\":%s", b->o.conns,
           conns_open(b), b->raw_seen ? "true" : "false", b->o.tls ? "true" : "false");
    /* --deflate: connections that negotiated it (every one, or they failed), and the
     * agreement of the first. */
    printf(",\"deflate\":%s,\"deflate_conns\":%u", b->n_deflate > 0 ? "true" : "false",
           b->n_deflate);
    if (b->o.deflate)
        json_string("deflate_params", b->deflate_agreed);
}

static void json_errors(const struct bench *b)
{
    printf(",\"errors\":%llu,\"error_detail\":{\"connect\":%llu,\"closed\":%llu,"
           "\"corrupt\":%llu,\"order\":%llu,\"lost\":%llu,\"deadline\":%d}",
           (unsigned long long)errors_total(b), (unsigned long long)b->err.connect,
           (unsigned long long)b->err.closed, (unsigned long long)b->err.corrupt,
           (unsigned long long)b->err.order, (unsigned long long)b->err.lost,
           b->deadline_hit ? 1 : 0);
    printf(",\"close_timeouts\":%llu,\"interrupted\":%s", (unsigned long long)b->close_timeouts,
           b->interrupted ? "true" : "false");
    json_string("first_error", b->first_error);
    printf("}\n");
}

/* CPU seconds in the window, and µs per `unit` ("msg", "delivery", "conn"). */
static void json_cpu(const struct bench *b, uint64_t units, const char *unit)
{
    bool sk = b->scpu0 >= 0 && b->scpu1 >= 0;
    int64_t ccpu = (int64_t)(b->cpu1 - b->cpu0), scpu = sk ? b->scpu1 - b->scpu0 : 0;
    char name[48];
    json_num("client_cpu_s", true, (double)ccpu / 1e6, "%.3f");
    snprintf(name, sizeof(name), "client_cpu_us_per_%s", unit);
    json_num(name, true, per_msg_us(ccpu, units), "%.3f");
    json_num("server_cpu_s", sk, (double)scpu / 1e6, "%.3f");
    snprintf(name, sizeof(name), "server_cpu_us_per_%s", unit);
    json_num(name, sk && units, per_msg_us(scpu, units), "%.3f");
}

static void json_latency(const struct bench *b)
{
    const struct hist *h = b->h;
    printf(",\"latency_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
           "\"mean\":%.1f}",
           hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.99) / 1e3,
           hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
           h->total ? (double)h->sum / (double)h->total / 1e3 : 0.0);
}

static void json_traffic(const struct bench *b)
{
    double secs = window_s(b);
    printf(",\"pipeline\":%u,\"size\":%zu,\"binary\":%s,\"duration_s\":%.3f", b->o.pipeline,
           b->o.size, b->o.binary ? "true" : "false", secs);
    printf(",\"sent\":%llu,\"messages\":%llu", (unsigned long long)b->sent,
           (unsigned long long)b->msgs);
    json_num("msgs_per_s", secs > 0, secs > 0 ? b->msgs / secs : 0, "%.0f");
    json_num("mb_per_s", secs > 0, secs > 0 ? b->bytes / secs / 1e6 : 0, "%.3f");
}

static void human_errors(const struct bench *b)
{
    fprintf(stderr, "  errors     : %llu (connect %llu, closed %llu, corrupt %llu, order %llu, "
                    "lost %llu%s)\n",
            (unsigned long long)errors_total(b), (unsigned long long)b->err.connect,
            (unsigned long long)b->err.closed, (unsigned long long)b->err.corrupt,
            (unsigned long long)b->err.order, (unsigned long long)b->err.lost,
            b->deadline_hit ? ", hard deadline hit" : "");
    if (b->close_timeouts)
        fprintf(stderr, "  note       : %llu connections did not finish the close handshake\n",
                (unsigned long long)b->close_timeouts);
    if (b->first_error[0])
        fprintf(stderr, "  first error: %s\n", b->first_error);
}

static void human_cpu(const struct bench *b, uint64_t units, const char *unit)
{
    double ccpu = (double)(b->cpu1 - b->cpu0);
    fprintf(stderr, "  client CPU : %.2f s (%.3f us/%s)\n", ccpu / 1e6,
            per_msg_us((int64_t)ccpu, units), unit);
    if (b->scpu0 >= 0 && b->scpu1 >= 0)
        fprintf(stderr, "  server CPU : %.2f s (%.3f us/%s)\n",
                (double)(b->scpu1 - b->scpu0) / 1e6, per_msg_us(b->scpu1 - b->scpu0, units),
                unit);
}

static void human_traffic(const struct bench *b, const char *what)
{
    double secs = window_s(b);
    const struct hist *h = b->h;
    fprintf(stderr, "  %-11s: %llu in %.2f s (%.0f/s, %.2f MB/s)\n", what,
            (unsigned long long)b->msgs, secs, secs > 0 ? b->msgs / secs : 0.0,
            secs > 0 ? b->bytes / secs / 1e6 : 0.0);
    fprintf(stderr, "  latency us : p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
            hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.99) / 1e3,
            hist_quantile(h, 0.999) / 1e3, h->max / 1e3);
}

static void report_echo(const struct bench *b)
{
    if (!b->o.json_only) {
        fprintf(stderr, "kite bench echo: %u/%u connections, %u in flight, %zu-byte %s "
                        "messages, %s://%s:%u%s%s\n",
                b->n_open, b->o.conns, b->o.pipeline, b->o.size,
                b->o.binary ? "binary" : "text", b->o.tls ? "wss" : "ws", b->o.host, b->o.port,
                b->o.path,
                b->raw_seen ? " (raw peer)" : "");
        human_traffic(b, "echoes");
        human_cpu(b, b->msgs, "msg");
        human_errors(b);
    }
    json_common(b);
    json_traffic(b);
    json_latency(b);
    json_cpu(b, b->msgs, "msg");
    json_errors(b);
}

static void report_broadcast(const struct bench *b)
{
    double secs = window_s(b);
    if (!b->o.json_only) {
        fprintf(stderr, "kite bench broadcast: %u subscribers, 1 publisher, %u in flight, "
                        "%zu-byte messages, ws://%s:%u%s\n",
                b->n_subs, b->o.pipeline, b->o.size, b->o.host, b->o.port, b->o.path);
        fprintf(stderr, "  published  : %llu (%.0f/s)\n", (unsigned long long)b->sent,
                secs > 0 ? b->sent / secs : 0.0);
        human_traffic(b, "deliveries");
        human_cpu(b, b->msgs, "delivery");
        human_errors(b);
    }
    json_common(b);
    json_traffic(b);
    json_num("deliveries_per_s", secs > 0, secs > 0 ? b->msgs / secs : 0, "%.0f");
    json_num("publish_per_s", secs > 0, secs > 0 ? b->sent / secs : 0, "%.0f");
    printf(",\"self_deliveries\":%llu", (unsigned long long)b->self_recv);
    json_latency(b);
    json_cpu(b, b->msgs, "delivery");
    json_errors(b);
}

static void report_connect(const struct bench *b)
{
    double cs = (double)(b->t_open - b->t_start) / 1e9, hold = window_s(b);
    bool rk = b->rss0 >= 0 && b->rss1 >= 0;
    double per = rk && b->n_open ? (double)(b->rss1 - b->rss0) * 1024.0 / b->n_open : 0;
    if (!b->o.json_only) {
        fprintf(stderr, "kite bench connect: %u/%u connections open in %.3f s (%.0f/s), "
                        "held %.2f s, ws://%s:%u%s\n",
                b->n_open, b->o.conns, cs, cs > 0 ? b->n_open / cs : 0.0, hold, b->o.host,
                b->o.port, b->o.path);
        if (rk)
            fprintf(stderr, "  server RSS : %ld kB -> %ld kB (%.0f bytes/connection)\n",
                    b->rss0, b->rss1, per);
        human_cpu(b, b->n_open, "connection held");
        if (b->n_open && b->scon0 >= 0 && b->scon1 >= 0)
            fprintf(stderr, "  opening    : client %.2f us, server %.2f us CPU per connection\n",
                    per_msg_us((int64_t)(b->ccon1 - b->ccon0), b->n_open),
                    per_msg_us(b->scon1 - b->scon0, b->n_open));
        human_errors(b);
    }
    json_common(b);
    printf(",\"connect_s\":%.3f", cs);
    json_num("connects_per_s", cs > 0, cs > 0 ? b->n_open / cs : 0, "%.0f");
    printf(",\"hold_s\":%.3f", hold);
    json_num("server_rss_before_kb", rk, (double)b->rss0, "%.0f");
    json_num("server_rss_after_kb", rk, (double)b->rss1, "%.0f");
    json_num("server_rss_per_conn_bytes", rk && b->n_open, per, "%.0f");
    json_cpu(b, b->n_open, "conn");
    /* What opening the connections cost each side (the figures above are the hold's):
     * the connect rate is whichever side runs out of CPU first. */
    bool sk = b->scon0 >= 0 && b->scon1 >= 0 && b->n_open;
    json_num("connect_client_cpu_us_per_conn", b->n_open > 0,
             per_msg_us((int64_t)(b->ccon1 - b->ccon0), b->n_open), "%.2f");
    json_num("connect_server_cpu_us_per_conn", sk,
             sk ? per_msg_us(b->scon1 - b->scon0, b->n_open) : 0, "%.2f");
    json_errors(b);
}

/* ------------------------------------------------------------------------------------
 * Entry point.
 */

static int bench_run(struct bench *b)
{
    if (bench_setup(b) < 0)
        return 2;
    b->rss0 = server_rss_kb(b->o.server_pid);
    if (b->o.server_pid && b->rss0 < 0)
        fprintf(stderr, "kite bench: cannot read /proc/%ld; no server figures\n",
                b->o.server_pid);
    set_deadlines(b);
    if (run_loop(b) < 0)
        return 1;
    if (b->o.mode == MODE_ECHO)
        report_echo(b);
    else if (b->o.mode == MODE_BROADCAST)
        report_broadcast(b);
    else
        report_connect(b);
    fflush(stdout);
    bool ok = errors_total(b) == 0 && b->n_open > 0;
    return ok ? 0 : 1;
}

int kite__cmd_bench(int argc, char **argv)
{
    static char url_store[512];
    struct bench *b = kite__calloc(NULL, sizeof(*b));
    if (!b) {
        fprintf(stderr, "kite bench: out of memory\n");
        return 1;
    }
    if (argc >= 2 && (!strcmp(argv[argc - 1], "--help") || !strcmp(argv[argc - 1], "-h"))) {
        usage(stdout);
        kite__free(NULL, b);
        return 0;
    }
    if (parse_args(argc, argv, &b->o, url_store, sizeof(url_store)) < 0) {
        usage(stderr);
        kite__free(NULL, b);
        return 2;
    }
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sa.sa_flags = (int)SA_RESETHAND; /* a second Ctrl-C kills */
    g_interrupt = 0;
    sigaction(SIGINT, &sa, &old);
    int rc = bench_run(b);
    sigaction(SIGINT, &old, NULL);
    bench_free(b);
    kite__free(NULL, b);
    return rc;
}

/*
 * The TLS transport (src/net/transport_tls.c): handshakes through the transport vtable
 * on socketpairs, driven by a small poll loop (and once by the real loop); data both
 * ways, large and coalesced writes, TLS 1.2 and 1.3, ALPN, SNI, certificate
 * verification and its failures, garbage and early closes, close_notify, contexts'
 * error messages, and the memory an idle connection costs.
 *
 * Certificates are made at run time (tests/certs/testcerts.h), so none can expire.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../certs/testcerts.h"
#include "loop/loop.h"
#include "net/tls.h"
#include "test.h"

/* ---- OpenSSL's heap, counted ------------------------------------------------------ */

/* Bytes OpenSSL holds, through CRYPTO_set_mem_functions (installed before any OpenSSL
 * allocation, so every block has our size header). */
static size_t ossl_live;
static bool ossl_counted;

#define HDR 16u

static void *cm_malloc(size_t n, const char *file, int line)
{
    KITE_UNUSED(file);
    KITE_UNUSED(line);
    unsigned char *p = malloc(n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    __atomic_add_fetch(&ossl_live, n, __ATOMIC_RELAXED);
    return p + HDR;
}

static void cm_free(void *q, const char *file, int line)
{
    KITE_UNUSED(file);
    KITE_UNUSED(line);
    if (!q)
        return;
    unsigned char *b = (unsigned char *)q - HDR;
    size_t n;
    memcpy(&n, b, sizeof n);
    __atomic_sub_fetch(&ossl_live, n, __ATOMIC_RELAXED);
    free(b);
}

static void *cm_realloc(void *q, size_t n, const char *file, int line)
{
    if (!q)
        return cm_malloc(n, file, line);
    if (n == 0) {
        cm_free(q, file, line);
        return NULL;
    }
    unsigned char *b = (unsigned char *)q - HDR;
    size_t old;
    memcpy(&old, b, sizeof old);
    unsigned char *p = realloc(b, n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    __atomic_add_fetch(&ossl_live, n, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&ossl_live, old, __ATOMIC_RELAXED);
    return p + HDR;
}

__attribute__((constructor(101))) static void count_openssl(void)
{
    ossl_counted = CRYPTO_set_mem_functions(cm_malloc, cm_realloc, cm_free) == 1;
}

/* kite's own blocks (the per-connection state), counted the same way. */
static size_t kite_live;

static void *kite_count_malloc(size_t n, void *ud)
{
    KITE_UNUSED(ud);
    unsigned char *p = malloc(n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    kite_live += n;
    return p + HDR;
}

static void kite_count_free(void *q, void *ud)
{
    KITE_UNUSED(ud);
    if (!q)
        return;
    unsigned char *b = (unsigned char *)q - HDR;
    size_t n;
    memcpy(&n, b, sizeof n);
    kite_live -= n;
    free(b);
}

static void *kite_count_realloc(void *q, size_t n, void *ud)
{
    if (!q)
        return kite_count_malloc(n, ud);
    unsigned char *b = (unsigned char *)q - HDR;
    size_t old;
    memcpy(&old, b, sizeof old);
    unsigned char *p = realloc(b, n + HDR);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    kite_live = kite_live - old + n;
    return p + HDR;
}

static const struct kite_allocator counting = {kite_count_malloc, kite_count_realloc,
                                               kite_count_free, NULL};

/* ---- fixtures ------------------------------------------------------------------------ */

static struct tc_dir certs;

/* Paths of the files in `certs`, kept for the whole test (options borrow them). */
static struct {
    char name[32];
    char path[PATH_MAX];
} paths[32];
static size_t npaths;

static void cleanup_certs(void)
{
    tc_cleanup(&certs);
}

/* A fresh set of certificates per test. A failing test exits through exit(), so the
 * atexit hook removes its directory too. */
static void setup(void)
{
    static bool hooked;
    if (!hooked)
        hooked = atexit(cleanup_certs) == 0;
    npaths = 0;
    if (tc_standard(&certs) != 0)
        kite_test_fail(__FILE__, __LINE__, "cannot make test certificates");
}

static const char *P(const char *name)
{
    for (size_t i = 0; i < npaths; i++)
        if (strcmp(paths[i].name, name) == 0)
            return paths[i].path;
    ASSERT(npaths < KITE_ARRAY_LEN(paths) && strlen(name) < sizeof paths[0].name);
    snprintf(paths[npaths].name, sizeof paths[0].name, "%s", name);
    snprintf(paths[npaths].path, sizeof paths[0].path, "%s", tc_path(&certs, name));
    return paths[npaths++].path;
}

static void server_opts(struct kite_tls_server_options *o)
{
    kite_tls_server_options_init(o);
    o->cert_file = P("server.crt");
    o->key_file = P("server.key");
}

static struct kite_tls_server_ctx *server_ctx(const struct kite_tls_server_options *o)
{
    struct kite_tls_server_ctx *ctx = NULL;
    char err[KITE__TLS_ERRLEN];
    int rc = kite__tls_server_ctx_new(o, &counting, &ctx, err, sizeof err);
    if (rc != KITE_OK)
        kite_test_fail(__FILE__, __LINE__, "server ctx: %s (%s)", err, kite_err_name(rc));
    return ctx;
}

static struct kite_tls_server_ctx *default_server(void)
{
    struct kite_tls_server_options o;
    server_opts(&o);
    return server_ctx(&o);
}

static struct kite_tls_client_ctx *client_ctx(const struct kite_tls_client_options *o)
{
    struct kite_tls_client_ctx *ctx = NULL;
    char err[KITE__TLS_ERRLEN];
    int rc = kite__tls_client_ctx_new(o, &counting, &ctx, err, sizeof err);
    if (rc != KITE_OK)
        kite_test_fail(__FILE__, __LINE__, "client ctx: %s (%s)", err, kite_err_name(rc));
    return ctx;
}

/* A client that trusts the test CA. */
static struct kite_tls_client_ctx *trusting_client(void)
{
    struct kite_tls_client_options o;
    kite_tls_client_options_init(&o);
    o.ca_file = P("ca.pem");
    return client_ctx(&o);
}

static void nb_socketpair(int fds[2])
{
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

struct pair {
    struct kite__transport srv, cli;
    int hs_srv, hs_cli; /* last handshake results */
};

static void pair_open(struct pair *p, struct kite_tls_server_ctx *s, struct kite_tls_client_ctx *c,
                      const char *host)
{
    int fds[2];
    nb_socketpair(fds);
    ASSERT_EQ(kite__tls_transport_init_server(&p->srv, s, fds[0]), KITE_OK);
    ASSERT_EQ(kite__tls_transport_init_client(&p->cli, c, fds[1], host), KITE_OK);
    p->hs_srv = p->hs_cli = KITE_AGAIN;
}

static void pair_close(struct pair *p)
{
    kite__tp_close(&p->cli);
    kite__tp_close(&p->srv);
}

static short poll_bits(uint32_t ev)
{
    return (short)(((ev & KITE__IO_READ) ? POLLIN : 0) | ((ev & KITE__IO_WRITE) ? POLLOUT : 0));
}

/* Step both handshakes until neither can progress. Both ends run on this thread, so
 * when neither fd is ready after a step, nothing more will happen. */
static void drive_handshake(struct pair *p)
{
    for (int round = 0; round < 100; round++) {
        if (p->hs_cli == KITE_AGAIN)
            p->hs_cli = kite__tp_handshake(&p->cli);
        if (p->hs_srv == KITE_AGAIN)
            p->hs_srv = kite__tp_handshake(&p->srv);
        if (p->hs_cli != KITE_AGAIN && p->hs_srv != KITE_AGAIN)
            return;
        struct pollfd pf[2];
        int n = 0;
        if (p->hs_cli == KITE_AGAIN)
            pf[n++] = (struct pollfd){kite__tp_fd(&p->cli),
                                      poll_bits(kite__tp_want_events(&p->cli, 0)), 0};
        if (p->hs_srv == KITE_AGAIN)
            pf[n++] = (struct pollfd){kite__tp_fd(&p->srv),
                                      poll_bits(kite__tp_want_events(&p->srv, 0)), 0};
        if (poll(pf, (nfds_t)n, 100) == 0)
            return;
    }
}

/* Open a pair and handshake; both sides must succeed. */
static void connect_ok(struct pair *p, struct kite_tls_server_ctx *s, struct kite_tls_client_ctx *c,
                       const char *host)
{
    char err[KITE__TLS_ERRLEN];
    pair_open(p, s, c, host);
    drive_handshake(p);
    if (p->hs_cli != KITE_OK) {
        kite__tls_last_error(&p->cli, err, sizeof err);
        kite_test_fail(__FILE__, __LINE__, "client handshake: %s: %s", kite_err_name(p->hs_cli),
                       err);
    }
    if (p->hs_srv != KITE_OK) {
        kite__tls_last_error(&p->srv, err, sizeof err);
        kite_test_fail(__FILE__, __LINE__, "server handshake: %s: %s", kite_err_name(p->hs_srv),
                       err);
    }
}

static const char *last_error(struct kite__transport *t)
{
    static char buf[KITE__TLS_ERRLEN];
    kite__tls_last_error(t, buf, sizeof buf);
    return buf;
}

#define ASSERT_CONTAINS(hay, needle)                                                               \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!strstr(h_, n_))                                                                       \
            kite_test_fail(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"", h_, n_);          \
    } while (0)

/* The peer certificate's CN, as the client sees it. */
static const char *peer_cn(struct kite__transport *cli)
{
    static char cn[128];
    X509 *x = SSL_get0_peer_certificate(kite__tls_ssl(cli));
    ASSERT(x != NULL);
    ASSERT(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0);
    return cn;
}

/* ---- moving bytes ---------------------------------------------------------------------- */

struct xfer_stats {
    int short_writes; /* writev took fewer bytes than offered */
    int again;        /* writev took nothing */
};

/* iovecs over data[0..len): `split`-byte pieces (0: one piece), at most 64. */
static int build_iov(const uint8_t *data, size_t len, size_t split, struct iovec *iov,
                     size_t *offered)
{
    int n = 0;
    *offered = 0;
    while (len > 0 && n < 64) {
        size_t k = split && split < len ? split : len;
        iov[n++] = (struct iovec){(void *)data, k};
        data += k;
        len -= k;
        *offered += k;
    }
    return n;
}

/* Send data[0..len) from w to r through the transports, reading as a level-triggered
 * loop would (one read per readiness, more while pending() says so), polling only when
 * neither side can progress. The retry rule holds: after a short write the same bytes
 * are offered again, laid out the same way. */
static void transfer(struct kite__transport *w, struct kite__transport *r, const uint8_t *data,
                     size_t len, size_t split, struct xfer_stats *st)
{
    static uint8_t rbuf[KITE__LOOP_RXBUF_SIZE];
    uint8_t *out = malloc(len);
    size_t sent = 0, got = 0;
    ASSERT(out != NULL);
    while (got < len) {
        bool progress = false;
        if (sent < len) {
            struct iovec iov[64];
            size_t offered;
            int cnt = build_iov(data + sent, len - sent, split, iov, &offered);
            ssize_t n = kite__tp_writev(w, iov, cnt);
            if (n == KITE_AGAIN) {
                st->again++;
            } else {
                ASSERT(n > 0);
                st->short_writes += (size_t)n < offered;
                sent += (size_t)n;
                progress = true;
            }
        }
        do {
            ssize_t n = kite__tp_read(r, rbuf, sizeof rbuf);
            if (n == KITE_AGAIN)
                break;
            ASSERT(n > 0);
            ASSERT(got + (size_t)n <= len);
            memcpy(out + got, rbuf, (size_t)n);
            got += (size_t)n;
            progress = true;
        } while (kite__tp_pending(r) > 0);
        if (!progress) {
            struct pollfd pf[2] = {
                {kite__tp_fd(w),
                 poll_bits(kite__tp_want_events(w, sent < len ? KITE__IO_WRITE : 0)), 0},
                {kite__tp_fd(r), poll_bits(kite__tp_want_events(r, KITE__IO_READ)), 0},
            };
            ASSERT(poll(pf, 2, 2000) > 0);
        }
    }
    ASSERT_EQ(sent, len);
    ASSERT_MEMEQ(out, data, len);
    free(out);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *p = malloc(len);
    ASSERT(p != NULL);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 131u + seed * 7u + (i >> 8)) & 0xff);
    return p;
}

static void exchange(struct pair *p, size_t len, size_t split)
{
    struct xfer_stats st = {0, 0};
    uint8_t *a = pattern(len, 1), *b = pattern(len, 2);
    transfer(&p->cli, &p->srv, a, len, split, &st);
    transfer(&p->srv, &p->cli, b, len, split, &st);
    free(a);
    free(b);
}

/* Read everything that arrives within a short while from a raw fd. */
static size_t raw_read_all(int fd, uint8_t *buf, size_t cap, bool *eof)
{
    size_t got = 0;
    *eof = false;
    for (;;) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0)
            return got;
        ssize_t n = read(fd, buf + got, cap - got);
        if (n == 0) {
            *eof = true;
            return got;
        }
        if (n < 0)
            return got;
        got += (size_t)n;
        if (got == cap)
            return got;
    }
}

/* ---- handshakes and data ----------------------------------------------------------------- */

/* RFC 8446: a TLS 1.3 handshake through the vtable; ALPN http/1.1 (RFC 7301 §3.2) on both
 * sides; data both ways; the client verified the server against the test CA. */
TEST(tls13_handshake_alpn_and_data)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    connect_ok(&p, s, c, "server.test");
    ASSERT(kite__tls_is(&p.srv) && kite__tls_is(&p.cli));
    ASSERT_STREQ(kite__tls_version(&p.srv), "TLSv1.3");
    ASSERT_STREQ(kite__tls_version(&p.cli), "TLSv1.3");
    size_t n;
    const uint8_t *a = kite__tls_alpn(&p.srv, &n);
    ASSERT(a && n == 8 && memcmp(a, "http/1.1", 8) == 0);
    a = kite__tls_alpn(&p.cli, &n);
    ASSERT(a && n == 8 && memcmp(a, "http/1.1", 8) == 0);
    ASSERT_STREQ(peer_cn(&p.cli), "localhost");
    ASSERT_EQ(kite__tls_last_error(&p.cli, NULL, 0), KITE_OK);
    exchange(&p, 5, 0);
    exchange(&p, 3000, 7); /* many iovecs in one writev */
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    ASSERT_EQ(kite_live, 0);
    tc_cleanup(&certs);
}

/* TLS 1.2 (RFC 5246) forced by either side's max_version. */
TEST(tls12_forced_by_server_or_client)
{
    setup();
    struct kite_tls_server_options so;
    server_opts(&so);
    so.max_version = KITE_TLS_VERSION_1_2;
    struct kite_tls_server_ctx *s12 = server_ctx(&so), *s = default_server();
    struct kite_tls_client_options co;
    kite_tls_client_options_init(&co);
    co.ca_file = P("ca.pem");
    struct kite_tls_client_ctx *c = client_ctx(&co);
    co.max_version = KITE_TLS_VERSION_1_2;
    struct kite_tls_client_ctx *c12 = client_ctx(&co);
    struct pair p;
    connect_ok(&p, s12, c, "server.test");
    ASSERT_STREQ(kite__tls_version(&p.cli), "TLSv1.2");
    size_t n;
    ASSERT(kite__tls_alpn(&p.srv, &n) != NULL && n == 8);
    exchange(&p, 70000, 0);
    pair_close(&p);
    connect_ok(&p, s, c12, "server.test");
    ASSERT_STREQ(kite__tls_version(&p.srv), "TLSv1.2");
    exchange(&p, 100, 3);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_client_ctx_free(c12);
    kite__tls_server_ctx_free(s);
    kite__tls_server_ctx_free(s12);
    tc_cleanup(&certs);
}

/* A 1.3-only server and a 1.2-only client share no version: both fail, clearly. */
TEST(tls_no_common_version)
{
    setup();
    struct kite_tls_server_options so;
    server_opts(&so);
    so.min_version = KITE_TLS_VERSION_1_3;
    struct kite_tls_server_ctx *s = server_ctx(&so);
    struct kite_tls_client_options co;
    kite_tls_client_options_init(&co);
    co.ca_file = P("ca.pem");
    co.max_version = KITE_TLS_VERSION_1_2;
    struct kite_tls_client_ctx *c = client_ctx(&co);
    struct pair p;
    pair_open(&p, s, c, "server.test");
    drive_handshake(&p);
    ASSERT_EQ(p.hs_srv, KITE_ERR_TLS);
    ASSERT_CONTAINS(last_error(&p.srv), "no TLS version in common");
    ASSERT_EQ(p.hs_cli, KITE_ERR_TLS);
    ASSERT_CONTAINS(last_error(&p.cli), "protocol version");
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* 1 MiB each way, as one buffer and as many small ones, over a socketpair whose buffer
 * is far smaller: writes come back short or KITE_AGAIN and are retried with the same
 * bytes (the OpenSSL retry rule). Both versions. */
TEST(tls_large_writes_partial)
{
    setup();
    struct kite_tls_server_options so;
    server_opts(&so);
    struct kite_tls_server_ctx *s = server_ctx(&so);
    so.max_version = KITE_TLS_VERSION_1_2;
    struct kite_tls_server_ctx *s12 = server_ctx(&so);
    struct kite_tls_client_ctx *c = trusting_client();
    struct kite_tls_server_ctx *ctxs[2] = {s, s12};
    for (int v = 0; v < 2; v++) {
        struct pair p;
        connect_ok(&p, ctxs[v], c, "localhost");
        size_t len = 1u << 20;
        uint8_t *a = pattern(len, 3), *b = pattern(len, 4);
        struct xfer_stats st = {0, 0};
        transfer(&p.cli, &p.srv, a, len, 0, &st);
        transfer(&p.srv, &p.cli, b, len, 1000, &st);
        transfer(&p.cli, &p.srv, b, len, 20000, &st);
        ASSERT(st.short_writes + st.again > 0);
        free(a);
        free(b);
        pair_close(&p);
    }
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    kite__tls_server_ctx_free(s12);
    tc_cleanup(&certs);
}

/* Small buffers are coalesced into one record instead of one record each. RFC 8446
 * §5.2: a TLS 1.3 AEAD record is a 5-byte header, the data, a content-type byte and a
 * 16-byte tag (AES-GCM and ChaCha20-Poly1305 alike). */
TEST(tls_writev_coalesces_small_buffers)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    connect_ok(&p, s, c, "localhost");
    static uint8_t data[100 * 32];
    struct iovec iov[100];
    for (int i = 0; i < 100; i++)
        iov[i] = (struct iovec){data + 32 * i, 32};
    ASSERT_EQ(kite__tp_writev(&p.cli, iov, 100), sizeof data);
    static uint8_t raw[65536];
    bool eof;
    ASSERT_EQ(raw_read_all(kite__tp_fd(&p.srv), raw, sizeof raw, &eof), 5 + sizeof data + 1 + 16);
    ASSERT_EQ(raw[0], 0x17); /* one application_data record */
    /* 10 bytes, 20000 bytes, 10 bytes: a full record (10 + 16374), then the 3626 left
     * of the big buffer with the last 10 bytes: two records, not three or four. */
    static uint8_t big[20000];
    struct iovec iov2[3] = {{data, 10}, {big, sizeof big}, {data, 10}};
    ASSERT_EQ(kite__tp_writev(&p.cli, iov2, 3), 20020);
    ASSERT_EQ(raw_read_all(kite__tp_fd(&p.srv), raw, sizeof raw, &eof), 20020 + 2 * 22);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* Records already read from the socket are reported by pending(), so the owner reads
 * them without waiting for the fd (which will not signal them again). */
TEST(tls_pending_reports_buffered_records)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    connect_ok(&p, s, c, "localhost");
    uint8_t *a = pattern(30000, 5);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(kite__tp_write(&p.srv, a + i * 10000, 10000), 10000);
    int avail = 0;
    for (int i = 0; i < 100 && avail < 30000; i++) {
        usleep(1000);
        ASSERT_EQ(ioctl(kite__tp_fd(&p.cli), FIONREAD, &avail), 0);
    }
    ASSERT(avail > 30000);
    uint8_t buf[4096], got[30000];
    size_t n = 0;
    ssize_t r = kite__tp_read(&p.cli, buf, 100);
    ASSERT_EQ(r, 100);
    memcpy(got, buf, 100);
    n += 100;
    ASSERT(kite__tp_pending(&p.cli) > 0);
    /* NewSessionTicket came first and may be all a read finds: allow AGAIN once. */
    while (kite__tp_pending(&p.cli) > 0) {
        r = kite__tp_read(&p.cli, buf, sizeof buf);
        ASSERT(r > 0);
        memcpy(got + n, buf, (size_t)r);
        n += (size_t)r;
    }
    ASSERT_EQ(n, 30000);
    ASSERT_MEMEQ(got, a, 30000);
    ASSERT_EQ(kite__tp_read(&p.cli, buf, sizeof buf), KITE_AGAIN);
    ASSERT_EQ(kite__tp_pending(&p.cli), 0);
    free(a);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* RFC 8446 §4.4.4: a TLS 1.3 client may send data right after its Finished. The server's
 * last handshake step reads it along (read-ahead); pending() must say so, since the fd
 * is no longer readable. */
TEST(tls_data_with_last_flight_is_pending)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    pair_open(&p, s, c, "localhost");
    for (int i = 0; i < 10 && p.hs_cli == KITE_AGAIN; i++) {
        p.hs_cli = kite__tp_handshake(&p.cli);
        if (p.hs_cli == KITE_AGAIN)
            ASSERT_EQ(kite__tp_handshake(&p.srv), KITE_AGAIN);
    }
    ASSERT_EQ(p.hs_cli, KITE_OK);
    ASSERT_EQ(kite__tp_write(&p.cli, "GET / HTTP/1.1\r\n\r\n", 18), 18);
    ASSERT_EQ(kite__tp_handshake(&p.srv), KITE_OK);
    ASSERT(kite__tp_pending(&p.srv) > 0);
    struct pollfd pf = {kite__tp_fd(&p.srv), POLLIN, 0};
    ASSERT_EQ(poll(&pf, 1, 0), 0);
    char buf[64];
    ASSERT_EQ(kite__tp_read(&p.srv, buf, sizeof buf), 18);
    ASSERT_MEMEQ(buf, "GET / HTTP/1.1\r\n\r\n", 18);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* RFC 8446 §4.6.3: a KeyUpdate (with update_requested) in the middle of the stream is
 * handled by read() on the other side; data keeps flowing both ways. */
TEST(tls13_key_update_mid_stream)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    connect_ok(&p, s, c, "localhost");
    exchange(&p, 1000, 0);
    ASSERT_EQ(SSL_key_update(kite__tls_ssl(&p.srv), SSL_KEY_UPDATE_REQUESTED), 1);
    exchange(&p, 50000, 0);
    exchange(&p, 10, 0);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* read/writev before the handshake completed is a state error, not an implicit
 * handshake. */
TEST(tls_io_before_handshake_is_state_error)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    pair_open(&p, s, c, "localhost");
    char buf[8];
    ASSERT_EQ(kite__tp_read(&p.srv, buf, sizeof buf), KITE_ERR_STATE);
    ASSERT_EQ(kite__tp_write(&p.cli, "x", 1), KITE_ERR_STATE);
    /* before any step, a handshake waits to read (server) */
    ASSERT_EQ(kite__tp_want_events(&p.srv, KITE__IO_WRITE), KITE__IO_READ);
    ASSERT_EQ(kite__tp_handshake(&p.cli), KITE_AGAIN);
    ASSERT_EQ(kite__tp_want_events(&p.cli, 0), KITE__IO_READ);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* ---- SNI ------------------------------------------------------------------------------ */

static void sni_expect(struct kite_tls_server_ctx *s, struct kite_tls_client_ctx *c,
                       const char *host, const char *cn)
{
    struct pair p;
    connect_ok(&p, s, c, host);
    ASSERT_STREQ(peer_cn(&p.cli), cn);
    pair_close(&p);
}

/* RFC 6066 §3: the certificate follows the name the client asks for: exact names (any
 * case), a one-label wildcard, else the default (also when no SNI is sent: IP hosts). */
TEST(tls_sni_picks_certificate)
{
    setup();
    struct kite_tls_sni_cert sni[] = {
        {"*.example.test", P("wild.crt"), P("wild.key")},
        {"api.other.test", P("api.crt"), P("api.key")},
    };
    struct kite_tls_server_options so;
    server_opts(&so);
    so.sni = sni;
    so.sni_count = 2;
    struct kite_tls_server_ctx *s = server_ctx(&so);
    struct kite_tls_client_ctx *c = trusting_client();
    sni_expect(s, c, "a.example.test", "wild.example.test");
    sni_expect(s, c, "B.Example.TEST", "wild.example.test");
    sni_expect(s, c, "api.other.test", "api.other.test");
    sni_expect(s, c, "server.test", "localhost");
    sni_expect(s, c, "127.0.0.1", "localhost"); /* no SNI for an IP literal */
    struct kite_tls_client_options co;
    kite_tls_client_options_init(&co);
    co.insecure = true; /* these names match no certificate: look, don't verify */
    struct kite_tls_client_ctx *ci = client_ctx(&co);
    sni_expect(s, ci, "x.y.example.test", "localhost"); /* the wildcard is one label */
    sni_expect(s, ci, "example.test", "localhost");
    sni_expect(s, ci, "unknown.test", "localhost");
    kite__tls_client_ctx_free(ci);
    kite__tls_server_ctx_free(s);
    /* Without cert_file the first SNI entry is the default. */
    server_opts(&so);
    so.cert_file = so.key_file = NULL;
    so.sni = sni;
    so.sni_count = 2;
    s = server_ctx(&so);
    struct pair p;
    connect_ok(&p, s, ci = client_ctx(&co), "unknown.test");
    ASSERT_STREQ(peer_cn(&p.cli), "wild.example.test");
    pair_close(&p);
    kite__tls_client_ctx_free(ci);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* An SNI context survives its creator's free while a connection made from it is open
 * (contexts are reference counted). */
TEST(tls_ctx_outlives_free_while_connections_open)
{
    setup();
    struct kite_tls_sni_cert sni[] = {{"*.example.test", P("wild.crt"), P("wild.key")}};
    struct kite_tls_server_options so;
    server_opts(&so);
    so.sni = sni;
    so.sni_count = 1;
    struct kite_tls_server_ctx *s = server_ctx(&so);
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    pair_open(&p, s, c, "a.example.test");
    kite__tls_server_ctx_free(s);
    kite__tls_client_ctx_free(c);
    drive_handshake(&p);
    ASSERT_EQ(p.hs_cli, KITE_OK);
    ASSERT_EQ(p.hs_srv, KITE_OK);
    ASSERT_STREQ(peer_cn(&p.cli), "wild.example.test");
    exchange(&p, 100, 0);
    ASSERT(kite_live > 0);
    pair_close(&p);
    ASSERT_EQ(kite_live, 0);
    tc_cleanup(&certs);
}

/* ---- verification ------------------------------------------------------------------------ */

/* Handshake a client context against a server presenting cert/key, as `host`. Returns the
 * client's result; the server's is in *srv_rc. */
static int try_verify(struct kite_tls_client_ctx *c, const char *cert, const char *key,
                      const char *host, char *msg, size_t msglen, int *srv_rc)
{
    struct kite_tls_server_options so;
    kite_tls_server_options_init(&so);
    so.cert_file = P(cert);
    so.key_file = P(key);
    struct kite_tls_server_ctx *s = server_ctx(&so);
    struct pair p;
    pair_open(&p, s, c, host);
    drive_handshake(&p);
    kite__tls_last_error(&p.cli, msg, msglen);
    if (srv_rc)
        *srv_rc = p.hs_srv;
    int rc = p.hs_cli;
    if (rc == KITE_OK) {
        ASSERT_EQ(p.hs_srv, KITE_OK);
        exchange(&p, 10, 0);
    }
    pair_close(&p);
    kite__tls_server_ctx_free(s);
    return rc;
}

/* RFC 5280 path validation to the given CA (file or hashed directory), through an
 * intermediate the server sends; RFC 6125 name checks for names and IP literals. */
TEST(tls_verify_succeeds_with_test_ca)
{
    setup();
    struct kite_tls_client_ctx *c = trusting_client();
    char msg[KITE__TLS_ERRLEN];
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "server.test", msg, sizeof msg, NULL),
              KITE_OK);
    ASSERT_STREQ(msg, "");
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "localhost.", msg, sizeof msg, NULL),
              KITE_OK);
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "127.0.0.1", msg, sizeof msg, NULL),
              KITE_OK);
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "[::1]", msg, sizeof msg, NULL), KITE_OK);
    ASSERT_EQ(try_verify(c, "chain.crt", "chain.key", "chain.test", msg, sizeof msg, NULL),
              KITE_OK);
    ASSERT_EQ(try_verify(c, "wild.crt", "wild.key", "z.example.test", msg, sizeof msg, NULL),
              KITE_OK);
    kite__tls_client_ctx_free(c);
    struct kite_tls_client_options co;
    kite_tls_client_options_init(&co);
    co.ca_dir = P("cadir");
    c = client_ctx(&co);
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "server.test", msg, sizeof msg, NULL),
              KITE_OK);
    kite__tls_client_ctx_free(c);
    /* server_name: reach the server by address, check the certificate by name */
    kite_tls_client_options_init(&co);
    co.ca_file = P("ca.pem");
    co.server_name = "chain.test";
    c = client_ctx(&co);
    ASSERT_EQ(try_verify(c, "chain.crt", "chain.key", "127.0.0.1", msg, sizeof msg, NULL), KITE_OK);
    kite__tls_client_ctx_free(c);
    tc_cleanup(&certs);
}

/* Without the test CA (only the system store), the chain does not verify: the client
 * fails with KITE_ERR_TLS_VERIFY and says why; the server hears the client's alert. */
TEST(tls_verify_untrusted_fails_clearly)
{
    setup();
    struct kite_tls_client_ctx *c = client_ctx(NULL); /* system trust store */
    char msg[KITE__TLS_ERRLEN];
    int srv;
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "server.test", msg, sizeof msg, &srv),
              KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(msg, "certificate verification failed: unable to get local issuer "
                         "certificate");
    ASSERT_CONTAINS(msg, "not trusted");
    ASSERT_EQ(srv, KITE_ERR_TLS);
    ASSERT_EQ(try_verify(c, "self.crt", "self.key", "self.test", msg, sizeof msg, NULL),
              KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(msg, "self");
    kite__tls_client_ctx_free(c);
    /* the server sends its leaf without the intermediate: the test CA alone can't
     * build the path */
    c = trusting_client();
    ASSERT_EQ(try_verify(c, "leafonly.crt", "chain.key", "chain.test", msg, sizeof msg, NULL),
              KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(msg, "intermediate");
    kite__tls_client_ctx_free(c);
    tc_cleanup(&certs);
}

/* The server's alert reason is reported on its side too. */
TEST(tls_server_reports_client_alert)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = client_ctx(NULL);
    struct pair p;
    pair_open(&p, s, c, "server.test");
    drive_handshake(&p);
    ASSERT_EQ(p.hs_cli, KITE_ERR_TLS_VERIFY);
    ASSERT_EQ(p.hs_srv, KITE_ERR_TLS);
    ASSERT_CONTAINS(last_error(&p.srv), "TLS handshake failed: the peer sent the alert");
    ASSERT_CONTAINS(last_error(&p.srv), "unknown CA");
    /* the failure is sticky */
    ASSERT_EQ(kite__tp_handshake(&p.srv), KITE_ERR_TLS);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* RFC 6125 §6.4: the certificate must name the host. */
TEST(tls_verify_hostname_mismatch)
{
    setup();
    struct kite_tls_client_ctx *c = trusting_client();
    char msg[KITE__TLS_ERRLEN];
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "wrong.test", msg, sizeof msg, NULL),
              KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(msg, "hostname mismatch");
    ASSERT_CONTAINS(msg, "\"wrong.test\"");
    /* RFC 6125 §6.4.3: a wildcard covers exactly one label */
    ASSERT_EQ(try_verify(c, "wild.crt", "wild.key", "a.b.example.test", msg, sizeof msg, NULL),
              KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(msg, "hostname mismatch");
    /* RFC 6125 §3.1.3.2 (via RFC 5280 iPAddress): a literal must match an IP SAN */
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", "127.0.0.2", msg, sizeof msg, NULL),
              KITE_ERR_TLS_VERIFY);
    ASSERT_CONTAINS(msg, "IP address mismatch");
    ASSERT_CONTAINS(msg, "127.0.0.2");
    kite__tls_client_ctx_free(c);
    tc_cleanup(&certs);
}

/* RFC 5280 §4.1.2.5: a certificate past its notAfter is refused. */
TEST(tls_verify_expired)
{
    setup();
    struct kite_tls_client_ctx *c = trusting_client();
    char msg[KITE__TLS_ERRLEN];
    ASSERT_EQ(try_verify(c, "expired.crt", "expired.key", "expired.test", msg, sizeof msg, NULL),
              KITE_ERR_TLS_VERIFY);
    ASSERT_STREQ(msg, "certificate verification failed: certificate has expired");
    kite__tls_client_ctx_free(c);
    tc_cleanup(&certs);
}

/* insecure = true accepts what verification would refuse (testing only). */
TEST(tls_insecure_accepts_untrusted)
{
    setup();
    struct kite_tls_client_options co;
    kite_tls_client_options_init(&co);
    co.insecure = true;
    struct kite_tls_client_ctx *c = client_ctx(&co);
    char msg[KITE__TLS_ERRLEN];
    ASSERT_EQ(try_verify(c, "self.crt", "self.key", "self.test", msg, sizeof msg, NULL), KITE_OK);
    ASSERT_EQ(try_verify(c, "expired.crt", "expired.key", "other.test", msg, sizeof msg, NULL),
              KITE_OK);
    ASSERT_EQ(try_verify(c, "server.crt", "server.key", NULL, msg, sizeof msg, NULL), KITE_OK);
    kite__tls_client_ctx_free(c);
    tc_cleanup(&certs);
}

/* A verifying client needs a host to check; a malformed one is refused up front and
 * the caller keeps its fd. */
TEST(tls_client_host_rules)
{
    setup();
    struct kite_tls_client_ctx *c = trusting_client();
    int fds[2];
    nb_socketpair(fds);
    struct kite__transport t;
    memset(&t, 0, sizeof t);
    ASSERT_EQ(kite__tls_transport_init_client(&t, c, fds[0], NULL), KITE_ERR_INVALID);
    ASSERT_EQ(kite__tls_transport_init_client(&t, c, fds[0], ""), KITE_ERR_INVALID);
    ASSERT_EQ(kite__tls_transport_init_client(&t, c, fds[0], "[::1"), KITE_ERR_INVALID);
    ASSERT_EQ(kite__tls_transport_init_client(&t, c, fds[0], "a%b"), KITE_ERR_INVALID);
    ASSERT(t.vt == NULL);
    ASSERT_EQ(fcntl(fds[0], F_GETFD) >= 0, 1);
    ASSERT_EQ(kite__tls_transport_init_client(&t, c, fds[0], "[fe80::1%1]"), KITE_OK);
    ASSERT(t.conn != NULL);
    ASSERT_EQ(kite__tp_fd(&t), fds[0]);
    kite__tp_close(&t);
    ASSERT(t.conn == NULL);
    ASSERT_EQ(kite__tp_fd(&t), -1);
    ASSERT_EQ(fcntl(fds[0], F_GETFD) < 0, 1); /* the transport owned and closed it */
    kite__tp_close(&t);                       /* idempotent */
    close(fds[1]);
    kite__tls_client_ctx_free(c);
    ASSERT_EQ(kite_live, 0);
    tc_cleanup(&certs);
}

/* ---- ALPN with a bare OpenSSL client ------------------------------------------------------ */

/* Handshake our server against a plain OpenSSL client offering `alpn` (wire form; NULL:
 * no ALPN extension). Returns the server's result. */
static int raw_client_alpn(struct kite_tls_server_ctx *s, const char *alpn, unsigned alpn_len,
                           struct kite__transport *srv)
{
    int fds[2];
    nb_socketpair(fds);
    ASSERT_EQ(kite__tls_transport_init_server(srv, s, fds[0]), KITE_OK);
    SSL_CTX *rc = SSL_CTX_new(TLS_client_method());
    ASSERT(rc != NULL);
    if (alpn)
        ASSERT_EQ(SSL_CTX_set_alpn_protos(rc, (const unsigned char *)alpn, alpn_len), 0);
    SSL *r = SSL_new(rc);
    ASSERT(r != NULL);
    SSL_set_fd(r, fds[1]);
    SSL_set_connect_state(r);
    int hs = KITE_AGAIN, cr = 0;
    for (int i = 0; i < 50 && (hs == KITE_AGAIN || cr != 1); i++) {
        if (cr != 1) {
            cr = SSL_do_handshake(r);
            if (cr != 1 && SSL_get_error(r, cr) != SSL_ERROR_WANT_READ)
                cr = 1; /* failed: stop driving it */
        }
        if (hs == KITE_AGAIN)
            hs = kite__tp_handshake(srv);
        struct pollfd pf[2] = {{fds[1], POLLIN, 0}, {fds[0], POLLIN, 0}};
        if (poll(pf, 2, 50) == 0)
            break;
    }
    SSL_free(r);
    SSL_CTX_free(rc);
    ERR_clear_error();
    close(fds[1]);
    return hs;
}

/* RFC 7301 §3.2: a client offering no ALPN is served without it; one offering http/1.1
 * among others gets it; one offering only protocols we lack is refused with
 * no_application_protocol. */
TEST(tls_alpn_rules)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite__transport srv;
    size_t n = 99;
    ASSERT_EQ(raw_client_alpn(s, NULL, 0, &srv), KITE_OK);
    ASSERT(kite__tls_alpn(&srv, &n) == NULL && n == 0);
    kite__tp_close(&srv);
    static const char both[] = "\x02h2\x08http/1.1";
    ASSERT_EQ(raw_client_alpn(s, both, sizeof both - 1, &srv), KITE_OK);
    const uint8_t *a = kite__tls_alpn(&srv, &n);
    ASSERT(a && n == 8 && memcmp(a, "http/1.1", 8) == 0);
    kite__tp_close(&srv);
    ASSERT_EQ(raw_client_alpn(s, "\x02h2", 3, &srv), KITE_ERR_TLS);
    ASSERT_STREQ(last_error(&srv),
                 "TLS handshake failed: no application protocol in common (ALPN: kite speaks "
                 "http/1.1)");
    kite__tp_close(&srv);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* ---- garbage and early closes --------------------------------------------------------------- */

static int server_gets(struct kite_tls_server_ctx *s, const void *bytes, size_t len,
                       bool then_close, char *msg, size_t msglen)
{
    int fds[2];
    struct kite__transport srv;
    nb_socketpair(fds);
    ASSERT_EQ(kite__tls_transport_init_server(&srv, s, fds[0]), KITE_OK);
    ASSERT_EQ(write(fds[1], bytes, len), (ssize_t)len);
    if (then_close)
        close(fds[1]);
    int rc = kite__tp_handshake(&srv);
    for (int i = 0; i < 10 && rc == KITE_AGAIN; i++)
        rc = kite__tp_handshake(&srv);
    kite__tls_last_error(&srv, msg, msglen);
    kite__tp_close(&srv);
    if (!then_close)
        close(fds[1]);
    return rc;
}

/* A peer that sends something other than a ClientHello (RFC 8446 §5.1 record layer)
 * fails the handshake with KITE_ERR_TLS and a useful message; nothing leaks. */
TEST(tls_garbage_instead_of_client_hello)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    static const char http[] = "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
    static const uint8_t junk[] = {0x00, 0x01, 0x02, 0x03, 0xff, 0xfe, 'k',  'i',
                                   't',  'e',  0x99, 0x42, 0x00, 0x00, 0x10, 0x20};
    static const uint8_t bad_hello[] = {0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00,
                                        0x00, 0x04, 0x03, 0x03, 0xde, 0xad};
    char msg[KITE__TLS_ERRLEN];
    /* warm up OpenSSL's lazily made per-thread and global state */
    ASSERT_EQ(server_gets(s, http, sizeof http - 1, false, msg, sizeof msg), KITE_ERR_TLS);
    size_t o0 = ossl_live, k0 = kite_live;
    ASSERT_EQ(server_gets(s, http, sizeof http - 1, false, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_STREQ(msg, "TLS handshake failed: the peer sent plain HTTP to a TLS port");
    ASSERT_EQ(server_gets(s, junk, sizeof junk, false, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "TLS handshake failed: ");
    ASSERT_EQ(server_gets(s, bad_hello, sizeof bad_hello, false, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "TLS handshake failed: ");
    if (ossl_counted)
        ASSERT_EQ(ossl_live, o0);
    ASSERT_EQ(kite_live, k0);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* The first bytes a client transport sends: its ClientHello. */
static size_t client_hello(struct kite_tls_client_ctx *c, uint8_t *buf, size_t cap)
{
    int fds[2];
    struct kite__transport cli;
    nb_socketpair(fds);
    ASSERT_EQ(kite__tls_transport_init_client(&cli, c, fds[1], "localhost"), KITE_OK);
    ASSERT_EQ(kite__tp_handshake(&cli), KITE_AGAIN);
    ssize_t n = read(fds[0], buf, cap);
    ASSERT(n > 50);
    kite__tp_close(&cli);
    close(fds[0]);
    return (size_t)n;
}

/* A peer that closes in the middle of the handshake: each side fails with KITE_ERR_TLS
 * and says the peer closed the connection. */
TEST(tls_peer_closes_mid_handshake)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    uint8_t hello[4096];
    size_t n = client_hello(c, hello, sizeof hello);
    char msg[KITE__TLS_ERRLEN];
    ASSERT_EQ(server_gets(s, hello, n / 2, true, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_STREQ(msg, "the peer closed the connection during the TLS handshake");
    ASSERT_EQ(server_gets(s, hello, 0, true, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_STREQ(msg, "the peer closed the connection during the TLS handshake");
    /* the server goes away after reading the ClientHello */
    int fds[2];
    struct kite__transport cli;
    nb_socketpair(fds);
    ASSERT_EQ(kite__tls_transport_init_client(&cli, c, fds[1], "localhost"), KITE_OK);
    ASSERT_EQ(kite__tp_handshake(&cli), KITE_AGAIN);
    ASSERT(read(fds[0], hello, sizeof hello) > 50);
    close(fds[0]);
    ASSERT_EQ(kite__tp_handshake(&cli), KITE_ERR_TLS);
    ASSERT_STREQ(last_error(&cli), "the peer closed the connection during the TLS handshake");
    kite__tp_close(&cli);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* A reset in the middle of the stream is -errno with words; never SIGPIPE. */
TEST(tls_write_to_closed_peer_is_epipe)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    connect_ok(&p, s, c, "localhost");
    shutdown(kite__tp_fd(&p.srv), SHUT_RDWR); /* the peer vanishes without a TLS close; a send to it
                                      would raise SIGPIPE without MSG_NOSIGNAL */
    ssize_t w = kite__tp_write(&p.cli, "hello", 5);
    if (w == 5) /* the first send may still succeed; the next cannot */
        w = kite__tp_write(&p.cli, "hello", 5);
    ASSERT_EQ(w, -EPIPE);
    ASSERT_STREQ(last_error(&p.cli), "TLS connection failed: Broken pipe");
    ASSERT_EQ(kite__tp_write(&p.cli, "x", 1), -EPIPE); /* sticky */
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* ---- close_notify --------------------------------------------------------------------------- */

/* RFC 8446 §6.1 / RFC 5246 §7.2.1: shutdown() sends close_notify, then the socket's end of
 * stream; the peer reads a clean EOF (0). With TLS 1.2 the alert record (type 21) is
 * visible on the wire; close() alone sends it too. */
TEST(tls_close_notify)
{
    setup();
    struct kite_tls_server_options so;
    server_opts(&so);
    so.max_version = KITE_TLS_VERSION_1_2;
    struct kite_tls_server_ctx *s12 = server_ctx(&so), *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    uint8_t raw[512];
    bool eof;
    struct pair p;
    connect_ok(&p, s12, c, "localhost");
    ASSERT_EQ(kite__tp_shutdown(&p.cli), KITE_OK);
    size_t n = raw_read_all(kite__tp_fd(&p.srv), raw, sizeof raw, &eof);
    ASSERT(n > 5 && raw[0] == 21 && (size_t)((raw[3] << 8) | raw[4]) + 5 == n);
    ASSERT(eof);
    pair_close(&p);
    connect_ok(&p, s12, c, "localhost");
    kite__tp_close(&p.cli);
    n = raw_read_all(kite__tp_fd(&p.srv), raw, sizeof raw, &eof);
    ASSERT(n > 5 && raw[0] == 21 && eof);
    pair_close(&p);
    /* TLS 1.3, through the transports: EOF on the peer, which may still send (a TLS 1.3
     * close_notify closes one direction only) */
    connect_ok(&p, s, c, "localhost");
    exchange(&p, 100, 0);
    ASSERT_EQ(kite__tp_shutdown(&p.srv), KITE_OK);
    ASSERT_EQ(kite__tp_shutdown(&p.srv), KITE_OK); /* idempotent */
    char buf[64];
    ssize_t r = KITE_AGAIN;
    for (int i = 0; i < 20 && r == KITE_AGAIN; i++) {
        struct pollfd pf = {kite__tp_fd(&p.cli), POLLIN, 0};
        poll(&pf, 1, 100);
        r = kite__tp_read(&p.cli, buf, sizeof buf);
    }
    ASSERT_EQ(r, 0);
    ASSERT_EQ(kite__tp_write(&p.cli, "bye", 3), 3);
    r = KITE_AGAIN;
    for (int i = 0; i < 20 && r == KITE_AGAIN; i++) {
        struct pollfd pf = {kite__tp_fd(&p.srv), POLLIN, 0};
        poll(&pf, 1, 100);
        r = kite__tp_read(&p.srv, buf, sizeof buf);
    }
    ASSERT_EQ(r, 3);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    kite__tls_server_ctx_free(s12);
    tc_cleanup(&certs);
}

/* A bare EOF (no close_notify) reads as the end of the stream too: WebSocket's close
 * handshake, not TLS, tells a clean close from a cut. */
TEST(tls_bare_eof_reads_as_end_of_stream)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    connect_ok(&p, s, c, "localhost");
    exchange(&p, 10, 0);
    shutdown(kite__tp_fd(&p.cli), SHUT_WR);
    char buf[16];
    ssize_t r = KITE_AGAIN;
    for (int i = 0; i < 20 && r == KITE_AGAIN; i++) {
        struct pollfd pf = {kite__tp_fd(&p.srv), POLLIN, 0};
        poll(&pf, 1, 100);
        r = kite__tp_read(&p.srv, buf, sizeof buf);
    }
    ASSERT_EQ(r, 0);
    pair_close(&p);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* ---- contexts: errors users can act on ------------------------------------------------------ */

static int server_err(const struct kite_tls_server_options *o, char *msg, size_t len)
{
    struct kite_tls_server_ctx *ctx = (void *)1;
    int rc = kite__tls_server_ctx_new(o, &counting, &ctx, msg, len);
    ASSERT(ctx == NULL);
    return rc;
}

TEST(tls_server_ctx_errors)
{
    setup();
    struct kite_tls_server_options o;
    char msg[KITE__TLS_ERRLEN], want[KITE__TLS_ERRLEN * 2];
    ASSERT_EQ(server_err(NULL, msg, sizeof msg), KITE_ERR_INVALID);
    kite_tls_server_options_init(&o);
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_INVALID);
    ASSERT_CONTAINS(msg, "no TLS certificate");
    server_opts(&o);
    o.cert_file = P("missing.crt");
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    snprintf(want, sizeof want, "cannot read certificate file %s: No such file or directory",
             P("missing.crt"));
    ASSERT_STREQ(msg, want);
    server_opts(&o);
    o.key_file = P("missing.key");
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "cannot read private key file");
    server_opts(&o);
    o.key_file = P("wild.key");
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    snprintf(want, sizeof want, "private key %s does not match certificate %s", P("wild.key"),
             P("server.crt"));
    ASSERT_STREQ(msg, want);
    server_opts(&o);
    o.key_file = NULL;
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_INVALID);
    ASSERT_CONTAINS(msg, "both a certificate file and a key file");
    server_opts(&o);
    o.cert_file = P("server.key"); /* a key is not a certificate */
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "cannot load certificate file");
    server_opts(&o);
    o.key_file = P("enc.key");
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "key_password");
    o.key_password = "wrong";
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "cannot load private key file");
    ASSERT_CONTAINS(msg, "(wrong key_password?)");
    o.key_password = NULL;
    o.key_file = P("ca.pem"); /* not a key: no password hint */
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "cannot load private key file");
    ASSERT(strstr(msg, "key_password") == NULL);
    o.key_file = P("enc.key");
    o.key_password = "kite-pass";
    kite__tls_server_ctx_free(server_ctx(&o));
    server_opts(&o);
    o.min_version = KITE_TLS_VERSION_1_3;
    o.max_version = KITE_TLS_VERSION_1_2;
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_INVALID);
    o.min_version = (enum kite_tls_version)0x0301; /* TLS 1.0 */
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_INVALID);
    server_opts(&o);
    o.ciphers = "NO-SUCH-CIPHER";
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "NO-SUCH-CIPHER");
    server_opts(&o);
    static const char *bad[] = {"*", "*.", "a.*.b", "**.x", "", "x*"};
    for (size_t i = 0; i < KITE_ARRAY_LEN(bad); i++) {
        struct kite_tls_sni_cert e = {bad[i], P("wild.crt"), P("wild.key")};
        o.sni = &e;
        o.sni_count = 1;
        ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_INVALID);
        ASSERT_CONTAINS(msg, "bad SNI server name");
    }
    struct kite_tls_sni_cert e = {"*.example.test", P("wild.crt"), P("api.key")};
    o.sni = &e;
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "does not match");
    o.sni = NULL;
    ASSERT_EQ(server_err(&o, msg, sizeof msg), KITE_ERR_INVALID);
    ASSERT_EQ(server_err(&o, NULL, 0), KITE_ERR_INVALID); /* no message buffer: fine */
    ASSERT_EQ(kite_live, 0);
    tc_cleanup(&certs);
}

TEST(tls_client_ctx_errors)
{
    setup();
    struct kite_tls_client_options o;
    struct kite_tls_client_ctx *ctx = NULL;
    char msg[KITE__TLS_ERRLEN], want[KITE__TLS_ERRLEN * 2];
    kite_tls_client_options_init(&o);
    o.ca_file = P("nope.pem");
    ASSERT_EQ(kite__tls_client_ctx_new(&o, NULL, &ctx, msg, sizeof msg), KITE_ERR_TLS);
    snprintf(want, sizeof want, "cannot read CA file %s: No such file or directory", P("nope.pem"));
    ASSERT_STREQ(msg, want);
    ASSERT(ctx == NULL);
    kite_tls_client_options_init(&o);
    o.ca_dir = P("nodir");
    ASSERT_EQ(kite__tls_client_ctx_new(&o, NULL, &ctx, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "cannot read CA directory");
    kite_tls_client_options_init(&o);
    o.ca_file = P("server.key");
    ASSERT_EQ(kite__tls_client_ctx_new(&o, NULL, &ctx, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "cannot load CA certificates from");
    kite_tls_client_options_init(&o);
    o.ciphersuites = "TLS_NOPE";
    ASSERT_EQ(kite__tls_client_ctx_new(&o, NULL, &ctx, msg, sizeof msg), KITE_ERR_TLS);
    ASSERT_CONTAINS(msg, "TLS_NOPE");
    kite_tls_client_options_init(&o);
    o.max_version = (enum kite_tls_version)7;
    ASSERT_EQ(kite__tls_client_ctx_new(&o, NULL, &ctx, msg, sizeof msg), KITE_ERR_INVALID);
    /* an insecure client loads no trust store, so a bad CA file does not matter */
    kite_tls_client_options_init(&o);
    o.insecure = true;
    o.ca_file = P("nope.pem");
    ASSERT_EQ(kite__tls_client_ctx_new(&o, NULL, &ctx, msg, sizeof msg), KITE_OK);
    ASSERT_STREQ(msg, "");
    kite__tls_client_ctx_free(ctx);
    kite__tls_client_ctx_free(NULL);
    kite__tls_server_ctx_free(NULL);
    tc_cleanup(&certs);
}

/* Out of memory in kite's own allocations is KITE_ERR_NOMEM at every step, with nothing
 * left allocated; a transport that cannot be made leaves the fd to the caller. */
TEST(tls_out_of_memory)
{
    setup();
    struct kite_tls_sni_cert sni[] = {{"*.example.test", P("wild.crt"), P("wild.key")},
                                      {"api.other.test", P("api.crt"), P("api.key")}};
    struct kite_tls_server_options so;
    server_opts(&so);
    so.sni = sni;
    so.sni_count = 2;
    struct kite_tls_server_ctx *s = NULL;
    int rc = KITE_ERR_NOMEM;
    long step;
    for (step = 1; rc == KITE_ERR_NOMEM && step < 50; step++) {
        struct kite_test_alloc st = {.fail_at = step};
        rc = kite__tls_server_ctx_new(&so, kite_test_allocator(&st), &s, NULL, 0);
        ASSERT(rc == KITE_OK || rc == KITE_ERR_NOMEM);
        if (rc == KITE_ERR_NOMEM) {
            ASSERT(s == NULL);
            ASSERT_EQ(st.live, 0);
        } else {
            kite__tls_server_ctx_free(s);
            ASSERT_EQ(st.live, 0);
        }
    }
    ASSERT(step > 4); /* ctx, sni table, two names */
    struct kite_test_alloc st = {0};
    ASSERT_EQ(kite__tls_server_ctx_new(&so, kite_test_allocator(&st), &s, NULL, 0), KITE_OK);
    int fds[2];
    nb_socketpair(fds);
    struct kite__transport t;
    memset(&t, 0, sizeof t);
    st.fail_at = st.count + 1;
    ASSERT_EQ(kite__tls_transport_init_server(&t, s, fds[0]), KITE_ERR_NOMEM);
    ASSERT(t.vt == NULL);
    ASSERT(fcntl(fds[0], F_GETFD) >= 0);
    st.fail_at = 0;
    ASSERT_EQ(kite__tls_transport_init_server(&t, s, fds[0]), KITE_OK);
    kite__tp_close(&t);
    close(fds[1]);
    kite__tls_server_ctx_free(s);
    ASSERT_EQ(st.live, 0);
    tc_cleanup(&certs);
}

/* ---- memory ------------------------------------------------------------------------------- */

/* What an idle, established connection keeps on the heap (OpenSSL's SSL object and
 * kite's state; the socket buffers are the kernel's). SSL_MODE_RELEASE_BUFFERS means
 * no 16 KiB record buffers stay behind once the data has been read and written. */
TEST(tls_idle_connection_memory)
{
    ASSERT(ossl_counted);
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct pair p;
    connect_ok(&p, s, c, "localhost"); /* warm-up: lazily made global state */
    exchange(&p, 100, 0);
    pair_close(&p);
    size_t o0 = ossl_live, k0 = kite_live;
    connect_ok(&p, s, c, "localhost");
    exchange(&p, 100000, 0);
    exchange(&p, 100, 0);
    size_t both = ossl_live - o0 + kite_live - k0;
    kite__tp_close(&p.cli);
    size_t srv = ossl_live - o0 + kite_live - k0;
    printf("# idle TLS 1.3 connection: server %zu bytes, client %zu bytes\n", srv, both - srv);
    ASSERT(srv < 16 * 1024);        /* measured: ~13.9 KB, 7.6 KB of it OpenSSL's SSL */
    ASSERT(both - srv < 24 * 1024); /* measured: ~17.9 KB (peer certificate, ticket) */
    kite__tp_close(&p.srv);
    ASSERT_EQ(ossl_live, o0);
    ASSERT_EQ(kite_live, k0);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

/* ---- on the real loop ----------------------------------------------------------------------- */

/* One side of a connection on a kite loop: the way a server or client connection drives
 * the transport (handshake steps on readiness, want_events for the interest, reads into
 * the loop's shared buffer, pending() before sleeping, writes retried with the same
 * bytes). The server echoes; the client sends `out` and collects the echo. */
struct lpeer {
    struct kite__io io;
    struct kite__transport tp;
    bool client, hs_done;
    int err;
    const uint8_t *out; /* client: what to send */
    size_t out_len, sent;
    uint8_t *in; /* client: the echo */
    size_t got;
    struct kite_buf q; /* server: bytes to echo */
    bool *done;
};

static void lp_update(struct kite_loop *loop, struct lpeer *p)
{
    uint32_t want = KITE__IO_READ;
    if (p->q.len || p->sent < p->out_len)
        want |= KITE__IO_WRITE;
    ASSERT_EQ(kite__io_start(loop, &p->io, kite__tp_want_events(&p->tp, want)), KITE_OK);
}

static void lp_input(struct lpeer *p, const uint8_t *b, size_t n)
{
    if (p->client) {
        ASSERT(p->got + n <= p->out_len);
        memcpy(p->in + p->got, b, n);
        p->got += n;
        if (p->got == p->out_len)
            *p->done = true;
    } else {
        ASSERT_EQ(kite__buf_append(&p->q, NULL, b, n), KITE_OK);
    }
}

static void lp_write(struct lpeer *p)
{
    const uint8_t *b = p->client ? p->out + p->sent : kite__buf_head(&p->q);
    size_t n = p->client ? p->out_len - p->sent : p->q.len;
    if (n == 0)
        return;
    ssize_t w = kite__tp_write(&p->tp, b, KITE_MIN(n, (size_t)100000));
    if (w == KITE_AGAIN)
        return;
    ASSERT(w > 0);
    if (p->client)
        p->sent += (size_t)w;
    else
        kite__buf_consume(&p->q, (size_t)w);
}

static void lp_io(struct kite_loop *loop, struct kite__io *io, uint32_t ev)
{
    struct lpeer *p = kite__container_of(io, struct lpeer, io);
    if (!p->hs_done) {
        int rc = kite__tp_handshake(&p->tp);
        if (rc != KITE_OK && rc != KITE_AGAIN) {
            p->err = rc;
            *p->done = true;
            return;
        }
        if (rc == KITE_AGAIN) {
            lp_update(loop, p);
            return;
        }
        p->hs_done = true;
        ev |= KITE__IO_READ | KITE__IO_WRITE;
    }
    if (ev & (KITE__IO_READ | KITE__IO_HUP | KITE__IO_ERROR)) {
        do {
            size_t cap;
            uint8_t *buf = kite__loop_rxbuf(loop, &cap);
            ssize_t n = kite__tp_read(&p->tp, buf, cap);
            if (n == KITE_AGAIN)
                break;
            ASSERT(n > 0);
            lp_input(p, buf, (size_t)n);
        } while (kite__tp_pending(&p->tp) > 0);
    }
    lp_write(p);
    lp_update(loop, p);
}

TEST(tls_echo_on_the_loop)
{
    setup();
    struct kite_tls_server_ctx *s = default_server();
    struct kite_tls_client_ctx *c = trusting_client();
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    int fds[2];
    nb_socketpair(fds);
    bool done = false;
    size_t len = 300000;
    uint8_t *data = pattern(len, 9);
    struct lpeer srv = {.done = &done},
                 cli = {
                     .client = true, .out = data, .out_len = len, .in = malloc(len), .done = &done};
    ASSERT_EQ(kite__tls_transport_init_server(&srv.tp, s, fds[0]), KITE_OK);
    ASSERT_EQ(kite__tls_transport_init_client(&cli.tp, c, fds[1], "localhost"), KITE_OK);
    kite__io_init(&srv.io, fds[0], lp_io);
    kite__io_init(&cli.io, fds[1], lp_io);
    lp_update(loop, &srv);
    lp_io(loop, &cli.io, 0); /* the client speaks first */
    for (int i = 0; i < 10000 && !done; i++)
        ASSERT_EQ(kite_loop_run_once(loop, 1000), KITE_OK);
    ASSERT_EQ(srv.err, 0);
    ASSERT_EQ(cli.err, 0);
    ASSERT_EQ(cli.got, len);
    ASSERT_MEMEQ(cli.in, data, len);
    kite__io_stop(loop, &srv.io);
    kite__io_stop(loop, &cli.io);
    kite__tp_close(&srv.tp);
    kite__tp_close(&cli.tp);
    kite__buf_free(&srv.q, NULL);
    kite_loop_free(loop);
    free(cli.in);
    free(data);
    kite__tls_client_ctx_free(c);
    kite__tls_server_ctx_free(s);
    tc_cleanup(&certs);
}

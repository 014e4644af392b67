/*
 * The TLS transport: OpenSSL behind the transport vtable (net/tls.h, net/transport.h).
 *
 * I/O goes through a tiny custom BIO over the socket rather than OpenSSL's socket BIO,
 * for one reason: writes must use send(MSG_NOSIGNAL), so a write to a reset connection
 * returns EPIPE instead of raising SIGPIPE (the transport contract), without touching
 * the process's signal dispositions. The BIO also records errno where it happens, so
 * the mapping of SSL_get_error() (done in exactly one place, tls_result) sees the real
 * cause.
 *
 * Efficiency choices, measured in docs/tls.md:
 *   - read_ahead with a 64 KiB read buffer: one read(2) takes up to ~4 records, and
 *     read() decrypts record after record straight into the caller's buffer (the
 *     loop's shared receive buffer) until it is full or nothing complete is left;
 *   - writev coalesces small buffers into one record-sized chunk (a per-thread 16 KiB
 *     staging area) instead of one SSL_write (one record, one send) per buffer; a large
 *     buffer is handed to OpenSSL as is, a record at a time (partial-write mode);
 *   - an idle connection holds no read or write buffer, yet one in the middle of a
 *     large message keeps them (kite__tls_quiet): SSL_MODE_RELEASE_BUFFERS would free
 *     and allocate the 64 KiB read buffer again for every read(2) that empties it,
 *     some 38 times per 1 MiB message echoed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/proverr.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

/* OpenSSL's read buffer: with read_ahead, one read(2) fills up to this much. */
#define TLS_READ_BUF (64u * 1024u)

/* ALPN wire form of our one protocol (RFC 7301 §3.1: length-prefixed names). */
static const unsigned char alpn_http11[] = "\x08http/1.1";
#define ALPN_HTTP11_LEN 9u

/* ---- contexts -------------------------------------------------------------------- */

/* What server and client contexts share. */
struct tls_ctx {
    SSL_CTX *ssl;                       /* the (default) OpenSSL context */
    const struct kite_allocator *alloc; /* borrowed; NULL = libc */
    atomic_uint refs;                   /* creator + one per open transport */
    bool server;
};

/* One SNI certificate: a name pattern and the context presenting its certificate. */
struct sni_entry {
    char *name; /* lower-case; for a wildcard, the suffix after "*" (".example.com") */
    bool wildcard;
    SSL_CTX *ssl;
};

struct kite_tls_server_ctx {
    struct tls_ctx c; /* first: a struct tls_ctx * is also the server ctx */
    struct sni_entry *sni;
    size_t nsni;
};

struct kite_tls_client_ctx {
    struct tls_ctx c;
    char *server_name; /* override for SNI and the name check; NULL: the URL's host */
    bool verify;
};

/* Per connection (t->conn). Small: OpenSSL's SSL object is the bulk. The fd and the
 * flags live here, not in the transport, which keeps that at 16 bytes for TCP. */
struct tls_conn {
    struct kite__tp_conn base; /* first: the fd, read by kite__tp_fd() */
    uint8_t flags;             /* F_* below */
    uint8_t why;               /* enum why */
    bool busy;                 /* more input is due soon: keep the buffers (kite__tls_quiet) */
    SSL *ssl;
    struct tls_ctx *ctx;   /* holds a reference */
    int err;               /* sticky failure: a kite code or -errno; 0 = none */
    int sys_err;           /* errno behind a failure */
    unsigned long ssl_err; /* OpenSSL error code behind a failure */
};

/* The transport's block; NULL once closed. `base` is its first member. */
static struct tls_conn *conn_of(const struct kite__transport *t)
{
    return (struct tls_conn *)(void *)t->conn;
}

/* What kind of failure c->err is, for kite__tls_last_error(). */
enum why { WHY_NONE, WHY_VERIFY, WHY_SSL, WHY_EOF, WHY_SYS };

/* tls_conn.flags (8 bits) */
enum {
    F_HS_DONE = 1u << 0,   /* handshake complete */
    F_HS_READ = 1u << 1,   /* the handshake waits for readable */
    F_HS_WRITE = 1u << 2,  /* the handshake waits for writable */
    F_RD_WRITE = 1u << 3,  /* a read waits for writable (a post-handshake message) */
    F_WR_READ = 1u << 4,   /* a write waits for readable */
    F_READ_MORE = 1u << 5, /* the last read filled the buffer; more may be buffered */
    F_SHUT_SENT = 1u << 6, /* close_notify sent (or given up on) */
};

/* What a failed SSL_* call was doing. A failed close_notify is not sticky: the
 * connection is being shut down anyway, and its reads should still see what is left. */
enum tls_op { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

static void ctx_ref(struct tls_ctx *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

static void server_ctx_destroy(struct kite_tls_server_ctx *s)
{
    for (size_t i = 0; i < s->nsni; i++) {
        SSL_CTX_free(s->sni[i].ssl);
        kite__free(s->c.alloc, s->sni[i].name);
    }
    kite__free(s->c.alloc, s->sni);
}

static void ctx_unref(struct tls_ctx *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->server)
        server_ctx_destroy((struct kite_tls_server_ctx *)c);
    else
        kite__free(c->alloc, ((struct kite_tls_client_ctx *)c)->server_name);
    SSL_CTX_free(c->ssl);
    kite__free(c->alloc, c);
}

void kite__tls_server_ctx_free(struct kite_tls_server_ctx *ctx)
{
    if (ctx)
        ctx_unref(&ctx->c);
}

void kite__tls_client_ctx_free(struct kite_tls_client_ctx *ctx)
{
    if (ctx)
        ctx_unref(&ctx->c);
}

/* ---- the socket BIO ---------------------------------------------------------------- */

/* errno of the BIO's last failed read or write on this thread (0: none since cleared). */
static _Thread_local int bio_errno;

static int fd_of(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int bio_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = read(fd_of(b), buf, (size_t)len);
        if (n > 0)
            return (int)n;
        if (n == 0) {
            BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* OpenSSL asks BIO_eof() to tell EOF */
            return 0;
        }
        if (errno == EINTR)
            continue;
        bio_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(b);
        return -1;
    }
}

static int bio_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t n = send(fd_of(b), buf, (size_t)len, MSG_NOSIGNAL);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        bio_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(b);
        return -1;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    KITE_UNUSED(num);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing is buffered here */
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = fd_of(b);
        return fd_of(b);
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 0);
    return 1;
}

static int bio_destroy(BIO *b)
{
    KITE_UNUSED(b); /* the fd belongs to the transport */
    return 1;
}

static _Atomic(BIO_METHOD *) fd_method;

/* The BIO method, made once per process (a race makes two; the loser frees its own).
 * It is never freed: it stays reachable from fd_method until exit. */
static BIO_METHOD *get_fd_method(void)
{
    BIO_METHOD *m = atomic_load_explicit(&fd_method, memory_order_acquire);
    if (m)
        return m;
    int idx = BIO_get_new_index();
    if (idx < 0 ||
        !(m = BIO_meth_new(idx | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "kite socket")))
        return NULL;
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    BIO_meth_set_destroy(m, bio_destroy);
    BIO_METHOD *expected = NULL;
    if (!atomic_compare_exchange_strong(&fd_method, &expected, m)) {
        BIO_meth_free(m);
        m = expected;
    }
    return m;
}

/* ---- messages -------------------------------------------------------------------- */

static void set_msg(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* OpenSSL's words for an error code. */
static const char *reason_of(unsigned long e)
{
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown OpenSSL error";
}

/* What the error queue says about a key that failed to load. */
enum { Q_MISMATCH = 1, Q_PASSWORD = 2 };

static unsigned queue_kind(unsigned long e)
{
    int lib = ERR_GET_LIB(e), r = ERR_GET_REASON(e);
    if (lib == ERR_LIB_X509 && (r == X509_R_KEY_VALUES_MISMATCH || r == X509_R_KEY_TYPE_MISMATCH))
        return Q_MISMATCH;
    if ((lib == ERR_LIB_PROV && r == PROV_R_BAD_DECRYPT) || /* OpenSSL 3's decoders */
        (lib == ERR_LIB_EVP && r == EVP_R_BAD_DECRYPT) ||
        (lib == ERR_LIB_PEM && (r == PEM_R_BAD_DECRYPT || r == PEM_R_BAD_PASSWORD_READ ||
                                r == PEM_R_PROBLEMS_GETTING_PASSWORD)))
        return Q_PASSWORD;
    return 0;
}

/* The first error on the queue (usually the root cause when loading files), and the
 * Q_* kinds found anywhere in it. Empties the queue. */
static unsigned long drain_errors(unsigned *kinds)
{
    unsigned long first = ERR_peek_error(), e;
    *kinds = 0;
    while ((e = ERR_get_error()) != 0)
        *kinds |= queue_kind(e);
    return first;
}

/* Is `path` an encrypted PEM key (PKCS#8 "ENCRYPTED PRIVATE KEY", or a traditional key
 * with "Proc-Type: 4,ENCRYPTED")? A wrong password does not always make OpenSSL say
 * "bad decrypt": about one time in 256 the garbage it decrypts ends in valid padding and
 * the decoder fails later ("unsupported"), so the hint cannot rest on the error alone. */
static bool pem_is_encrypted(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[256];
    bool enc = false;
    for (int i = 0; i < 64 && !enc && fgets(line, sizeof line, f); i++)
        enc = strstr(line, "-----BEGIN ENCRYPTED PRIVATE KEY-----") != NULL ||
              strstr(line, "Proc-Type: 4,ENCRYPTED") != NULL;
    fclose(f);
    return enc;
}

/* fopen() the file once so a missing or unreadable file is reported with errno's words
 * rather than OpenSSL's "system lib". */
static int check_readable(const char *path, const char *what, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        set_msg(err, errlen, "cannot read %s file %s: %s", what, path, strerror(errno));
        return KITE_ERR_TLS;
    }
    fclose(f);
    return KITE_OK;
}

/* ---- context setup ------------------------------------------------------------------- */

static bool version_ok(enum kite_tls_version v)
{
    return v == KITE_TLS_VERSION_DEFAULT || v == KITE_TLS_VERSION_1_2 || v == KITE_TLS_VERSION_1_3;
}

static int check_versions(enum kite_tls_version lo, enum kite_tls_version hi, char *err,
                          size_t errlen)
{
    if (!version_ok(lo) || !version_ok(hi) ||
        (lo != KITE_TLS_VERSION_DEFAULT && hi != KITE_TLS_VERSION_DEFAULT && lo > hi)) {
        set_msg(err, errlen, "bad TLS version range (kite supports TLS 1.2 and 1.3)");
        return KITE_ERR_INVALID;
    }
    return KITE_OK;
}

/* A key's passphrase comes from the options, never from a terminal prompt (OpenSSL's
 * default callback would block on the tty). */
static int password_cb(char *buf, int size, int rwflag, void *ud)
{
    KITE_UNUSED(rwflag);
    const char *pw = ud;
    if (!pw || size <= 0)
        return 0;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        n = (size_t)size;
    memcpy(buf, pw, n);
    return (int)n;
}

/*
 * Settings both roles share. TLS 1.2 is the floor (RFC 8996 retires 1.0 and 1.1); no
 * renegotiation; a bare EOF reads as end of stream, because WebSocket's own close
 * handshake (RFC 6455 §7.1.1) is what detects a truncated connection.
 */
static int setup_common(SSL_CTX *s, enum kite_tls_version lo, enum kite_tls_version hi,
                        const char *ciphers, const char *suites, char *err, size_t errlen)
{
    SSL_CTX_set_min_proto_version(s, lo ? (int)lo : TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(s, (int)hi); /* 0: the newest supported */
    SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(s, 1);
    SSL_CTX_set_default_read_buffer_len(s, TLS_READ_BUF);
    SSL_CTX_set_default_passwd_cb(s, password_cb);
    if (ciphers && SSL_CTX_set_cipher_list(s, ciphers) != 1) {
        set_msg(err, errlen, "invalid TLS 1.2 cipher list \"%s\"", ciphers);
        ERR_clear_error();
        return KITE_ERR_TLS;
    }
    if (suites && SSL_CTX_set_ciphersuites(s, suites) != 1) {
        set_msg(err, errlen, "invalid TLS 1.3 cipher suites \"%s\"", suites);
        ERR_clear_error();
        return KITE_ERR_TLS;
    }
    return KITE_OK;
}

/* RFC 7301 §3.2: select "http/1.1" when offered; if the client offers protocols but not
 * that one, refuse with no_application_protocol. A client offering none never gets
 * here. */
static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    KITE_UNUSED(ssl);
    KITE_UNUSED(arg);
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n == 0 || i + 1 + n > inlen)
            break; /* malformed list: OpenSSL checked it; be safe anyway */
        if (n == ALPN_HTTP11_LEN - 1 && memcmp(in + i + 1, alpn_http11 + 1, n) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Load one certificate chain and its key into `s`, with messages that name the file. */
static int load_pair(SSL_CTX *s, const char *cert, const char *key, const char *pw, char *err,
                     size_t errlen)
{
    if (!cert || !*cert || !key || !*key) {
        set_msg(err, errlen,
                "a TLS certificate needs both a certificate file and a key "
                "file");
        return KITE_ERR_INVALID;
    }
    int rc = check_readable(cert, "certificate", err, errlen);
    if (rc == KITE_OK)
        rc = check_readable(key, "private key", err, errlen);
    if (rc != KITE_OK)
        return rc;
    unsigned kinds;
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(s, cert) != 1) {
        unsigned long e = drain_errors(&kinds);
        set_msg(err, errlen, "cannot load certificate file %s: %s", cert, reason_of(e));
        return KITE_ERR_TLS;
    }
    /* 1: the key did not load (or did not match: OpenSSL checks while loading);
     * 2: it loaded into another slot (a key of another type) and does not match. */
    int failed = 0;
    SSL_CTX_set_default_passwd_cb_userdata(s, (void *)pw);
    if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1)
        failed = 1;
    else if (SSL_CTX_check_private_key(s) != 1)
        failed = 2;
    SSL_CTX_set_default_passwd_cb_userdata(s, NULL);
    if (!failed)
        return KITE_OK;
    unsigned long e = drain_errors(&kinds);
    if (failed == 1 && pem_is_encrypted(key))
        kinds |= Q_PASSWORD;
    if ((kinds & Q_MISMATCH) || failed == 2)
        set_msg(err, errlen, "private key %s does not match certificate %s", key, cert);
    else
        set_msg(err, errlen, "cannot load private key file %s: %s%s", key, reason_of(e),
                !(kinds & Q_PASSWORD) ? ""
                : pw                  ? " (wrong key_password?)"
                                      : " (an encrypted key needs key_password)");
    return KITE_ERR_TLS;
}

/* A server SSL_CTX presenting one certificate. */
static int new_server_ssl_ctx(const struct kite_tls_server_options *o, const char *cert,
                              const char *key, SSL_CTX **out, char *err, size_t errlen)
{
    SSL_CTX *s = SSL_CTX_new(TLS_server_method());
    *out = NULL;
    if (!s) {
        ERR_clear_error();
        set_msg(err, errlen, "out of memory");
        return KITE_ERR_NOMEM;
    }
    int rc =
        setup_common(s, o->min_version, o->max_version, o->ciphers, o->ciphersuites, err, errlen);
    /* Tickets give stateless resumption; the session cache would keep a session per
     * recent handshake in server memory, so it stays off. */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    if (o->no_session_tickets) {
        SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(s, 0);
    } else {
        SSL_CTX_set_num_tickets(s, 1);
    }
    SSL_CTX_set_alpn_select_cb(s, alpn_select_cb, NULL);
    if (rc == KITE_OK)
        rc = load_pair(s, cert, key, o->key_password, err, errlen);
    if (rc != KITE_OK) {
        SSL_CTX_free(s);
        return rc;
    }
    *out = s;
    return KITE_OK;
}

/* ---- SNI ------------------------------------------------------------------------------- */

/* A pattern is a host name, or "*." and a host name (one wildcard label, leftmost). */
static int sni_entry_init(struct sni_entry *e, const char *pat, const struct kite_allocator *a,
                          char *err, size_t errlen)
{
    bool wild = pat && pat[0] == '*';
    const char *name = wild ? pat + 1 : pat;
    if (!pat || !*name || (wild && (name[0] != '.' || !name[1])) || strchr(name, '*')) {
        set_msg(err, errlen, "bad SNI server name \"%s\" (want a host name or *.domain)",
                pat ? pat : "(null)");
        return KITE_ERR_INVALID;
    }
    size_t n = strlen(name);
    if (!(e->name = kite__malloc(a, n + 1))) {
        set_msg(err, errlen, "out of memory");
        return KITE_ERR_NOMEM;
    }
    for (size_t i = 0; i <= n; i++)
        e->name[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    e->wildcard = wild;
    return KITE_OK;
}

/* The context for `name`: an exact entry first, then the first wildcard whose suffix is
 * everything after the name's first label. NULL: keep the default. */
static SSL_CTX *sni_find(const struct kite_tls_server_ctx *s, const char *name)
{
    for (size_t i = 0; i < s->nsni; i++)
        if (!s->sni[i].wildcard && strcasecmp(s->sni[i].name, name) == 0)
            return s->sni[i].ssl;
    const char *dot = strchr(name, '.');
    if (!dot || dot == name)
        return NULL;
    for (size_t i = 0; i < s->nsni; i++)
        if (s->sni[i].wildcard && strcasecmp(s->sni[i].name, dot) == 0)
            return s->sni[i].ssl;
    return NULL;
}

/* RFC 6066 §3: pick the certificate by the name the client asked for. An unknown name
 * gets the default certificate (the client's own check then decides). */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_CTX *m = sni_find(arg, name);
    if (m && SSL_set_SSL_CTX(ssl, m) != m) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

static int server_add_sni(struct kite_tls_server_ctx *s, const struct kite_tls_server_options *o,
                          char *err, size_t errlen)
{
    if (o->sni_count == 0)
        return KITE_OK;
    if (!o->sni) {
        set_msg(err, errlen, "sni_count is set but sni is NULL");
        return KITE_ERR_INVALID;
    }
    s->sni = kite__calloc(s->c.alloc, o->sni_count * sizeof *s->sni);
    if (!s->sni) {
        set_msg(err, errlen, "out of memory");
        return KITE_ERR_NOMEM;
    }
    for (size_t i = 0; i < o->sni_count; i++) {
        const struct kite_tls_sni_cert *sc = &o->sni[i];
        s->nsni = i + 1;
        int rc = sni_entry_init(&s->sni[i], sc->server_name, s->c.alloc, err, errlen);
        if (rc == KITE_OK)
            rc = new_server_ssl_ctx(o, sc->cert_file, sc->key_file, &s->sni[i].ssl, err, errlen);
        if (rc != KITE_OK)
            return rc;
    }
    SSL_CTX_set_tlsext_servername_callback(s->c.ssl, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(s->c.ssl, s);
    return KITE_OK;
}

int kite__tls_server_ctx_new(const struct kite_tls_server_options *o,
                             const struct kite_allocator *alloc, struct kite_tls_server_ctx **out,
                             char *err, size_t errlen)
{
    *out = NULL;
    set_msg(err, errlen, "%s", "");
    if (!o) {
        set_msg(err, errlen, "no TLS server options");
        return KITE_ERR_INVALID;
    }
    const char *cert = o->cert_file, *key = o->key_file;
    if (!cert && !key && o->sni_count > 0 && o->sni) {
        cert = o->sni[0].cert_file; /* the first SNI certificate is the default */
        key = o->sni[0].key_file;
    }
    if (!cert) {
        set_msg(err, errlen, "no TLS certificate: set cert_file and key_file");
        return KITE_ERR_INVALID;
    }
    int rc = check_versions(o->min_version, o->max_version, err, errlen);
    if (rc != KITE_OK)
        return rc;
    struct kite_tls_server_ctx *s = kite__calloc(alloc, sizeof *s);
    if (!s) {
        set_msg(err, errlen, "out of memory");
        return KITE_ERR_NOMEM;
    }
    s->c.alloc = alloc;
    s->c.server = true;
    atomic_init(&s->c.refs, 1);
    rc = new_server_ssl_ctx(o, cert, key, &s->c.ssl, err, errlen);
    if (rc == KITE_OK)
        rc = server_add_sni(s, o, err, errlen);
    if (rc != KITE_OK) {
        ctx_unref(&s->c);
        return rc;
    }
    *out = s;
    return KITE_OK;
}

/* ---- client context ------------------------------------------------------------------ */

static int load_trust(SSL_CTX *s, const struct kite_tls_client_options *o, char *err, size_t errlen)
{
    if (!o->ca_file && !o->ca_dir) {
        if (SSL_CTX_set_default_verify_paths(s) != 1) {
            set_msg(err, errlen, "cannot load the system's trusted certificates: %s",
                    reason_of(ERR_peek_error()));
            ERR_clear_error();
            return KITE_ERR_TLS;
        }
        return KITE_OK;
    }
    if (o->ca_file && check_readable(o->ca_file, "CA", err, errlen) != KITE_OK)
        return KITE_ERR_TLS;
    struct stat st;
    if (o->ca_dir) {
        int e = stat(o->ca_dir, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
        if (e) {
            set_msg(err, errlen, "cannot read CA directory %s: %s", o->ca_dir, strerror(e));
            return KITE_ERR_TLS;
        }
    }
    if (SSL_CTX_load_verify_locations(s, o->ca_file, o->ca_dir) != 1) {
        unsigned kinds;
        unsigned long e = drain_errors(&kinds);
        set_msg(err, errlen, "cannot load CA certificates from %s: %s",
                o->ca_file ? o->ca_file : o->ca_dir, reason_of(e));
        return KITE_ERR_TLS;
    }
    return KITE_OK;
}

static int client_setup(struct kite_tls_client_ctx *cc, const struct kite_tls_client_options *o,
                        char *err, size_t errlen)
{
    SSL_CTX *s = cc->c.ssl;
    int rc =
        setup_common(s, o->min_version, o->max_version, o->ciphers, o->ciphersuites, err, errlen);
    if (rc != KITE_OK)
        return rc;
    cc->verify = !o->insecure;
    if (cc->verify && (rc = load_trust(s, o, err, errlen)) != KITE_OK)
        return rc;
    SSL_CTX_set_verify(s, cc->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (SSL_CTX_set_alpn_protos(s, alpn_http11, ALPN_HTTP11_LEN) != 0) { /* 0 = success */
        set_msg(err, errlen, "out of memory");
        return KITE_ERR_NOMEM;
    }
    if (o->server_name) {
        size_t n = strlen(o->server_name);
        if (!(cc->server_name = kite__malloc(cc->c.alloc, n + 1))) {
            set_msg(err, errlen, "out of memory");
            return KITE_ERR_NOMEM;
        }
        memcpy(cc->server_name, o->server_name, n + 1);
    }
    return KITE_OK;
}

int kite__tls_client_ctx_new(const struct kite_tls_client_options *o,
                             const struct kite_allocator *alloc, struct kite_tls_client_ctx **out,
                             char *err, size_t errlen)
{
    struct kite_tls_client_options defaults;
    *out = NULL;
    set_msg(err, errlen, "%s", "");
    if (!o) {
        kite_tls_client_options_init(&defaults);
        o = &defaults;
    }
    int rc = check_versions(o->min_version, o->max_version, err, errlen);
    if (rc != KITE_OK)
        return rc;
    struct kite_tls_client_ctx *cc = kite__calloc(alloc, sizeof *cc);
    if (!cc) {
        set_msg(err, errlen, "out of memory");
        return KITE_ERR_NOMEM;
    }
    cc->c.alloc = alloc;
    atomic_init(&cc->c.refs, 1);
    if (!(cc->c.ssl = SSL_CTX_new(TLS_client_method()))) {
        ERR_clear_error();
        kite__free(alloc, cc);
        set_msg(err, errlen, "out of memory");
        return KITE_ERR_NOMEM;
    }
    rc = client_setup(cc, o, err, errlen);
    if (rc != KITE_OK) {
        ctx_unref(&cc->c);
        return rc;
    }
    *out = cc;
    return KITE_OK;
}

/* ---- transports ---------------------------------------------------------------------- */

/* A connection object over fd: SSL + our BIO + the small state block. */
static struct tls_conn *conn_new(struct tls_ctx *x, int fd)
{
    BIO_METHOD *m = get_fd_method();
    struct tls_conn *c = m ? kite__calloc(x->alloc, sizeof *c) : NULL;
    if (!c)
        return NULL;
    BIO *b = BIO_new(m);
    c->ssl = b ? SSL_new(x->ssl) : NULL;
    if (!c->ssl) {
        BIO_free(b);
        kite__free(x->alloc, c);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(b, (void *)(intptr_t)fd);
    BIO_set_init(b, 1);
    SSL_set_bio(c->ssl, b, b); /* one reference, owned by the SSL */
    c->ctx = x;
    return c;
}

static void conn_free(struct tls_conn *c)
{
    SSL_free(c->ssl);
    kite__free(c->ctx->alloc, c);
}

static void attach(struct kite__transport *t, struct tls_conn *c, int fd)
{
    ctx_ref(c->ctx);
    c->base.fd = fd;
    t->vt = &kite__tls_vt;
    t->conn = &c->base;
}

int kite__tls_transport_init_server(struct kite__transport *t, struct kite_tls_server_ctx *ctx,
                                    int fd)
{
    struct tls_conn *c = conn_new(&ctx->c, fd);
    if (!c)
        return KITE_ERR_NOMEM;
    SSL_set_accept_state(c->ssl);
    attach(t, c, fd);
    return KITE_OK;
}

/*
 * Copy the host to be sent and checked into out[cap]: brackets of an IPv6 literal and a
 * DNS name's trailing dot removed. *is_ip tells a literal (which gets no SNI, RFC 6066
 * §3, and is checked against the certificate's IP addresses, RFC 6125 §3.1.3.2; an
 * IPv6 zone is dropped for that check).
 */
static int parse_host(const char *host, char *out, size_t cap, bool *is_ip)
{
    size_t n = strlen(host);
    if (host[0] == '[') {
        if (n < 3 || host[n - 1] != ']')
            return KITE_ERR_INVALID;
        host++;
        n -= 2;
    }
    if (n == 0 || n >= cap)
        return KITE_ERR_INVALID;
    memcpy(out, host, n);
    out[n] = '\0';
    char *zone = strchr(out, '%');
    if (zone)
        *zone = '\0';
    unsigned char a[16];
    *is_ip = inet_pton(AF_INET, out, a) == 1 || inet_pton(AF_INET6, out, a) == 1;
    if (zone && !*is_ip)
        return KITE_ERR_INVALID;
    if (!*is_ip && out[n - 1] == '.')
        out[n - 1] = '\0';
    return out[0] ? KITE_OK : KITE_ERR_INVALID;
}

static int client_set_host(SSL *ssl, const struct kite_tls_client_ctx *cc, const char *host)
{
    const char *name = cc->server_name ? cc->server_name : host;
    char buf[256];
    bool is_ip = false;
    if (!name || !*name)
        return cc->verify ? KITE_ERR_INVALID : KITE_OK; /* nothing to check against */
    if (parse_host(name, buf, sizeof buf, &is_ip) != KITE_OK)
        return KITE_ERR_INVALID;
    if (!is_ip && SSL_set_tlsext_host_name(ssl, buf) != 1)
        return KITE_ERR_INVALID;
    if (!cc->verify)
        return KITE_OK;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), buf) == 1 ? KITE_OK
                                                                            : KITE_ERR_NOMEM;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, buf) == 1 ? KITE_OK : KITE_ERR_NOMEM;
}

int kite__tls_transport_init_client(struct kite__transport *t, struct kite_tls_client_ctx *ctx,
                                    int fd, const char *host)
{
    struct tls_conn *c = conn_new(&ctx->c, fd);
    if (!c)
        return KITE_ERR_NOMEM;
    int rc = client_set_host(c->ssl, ctx, host);
    if (rc != KITE_OK) {
        ERR_clear_error();
        conn_free(c);
        return rc;
    }
    SSL_set_connect_state(c->ssl);
    attach(t, c, fd);
    return KITE_OK;
}

bool kite__tls_is(const struct kite__transport *t)
{
    return t->vt == &kite__tls_vt;
}

/*
 * Free OpenSSL's read and write buffers unless the owner said more input is due or
 * OpenSSL still needs them: a record, or part of one, in the read buffer, or output
 * not yet sent (SSL_free_buffers refuses then). SSL_has_pending() also sees a record
 * partly handed out by SSL_read, which SSL_free_buffers() before OpenSSL 3.0.14 failed
 * to check (CVE-2024-4741), so this is safe with every 3.0.
 */
static void release_if_quiet(struct tls_conn *c)
{
    if (!c->busy && !SSL_has_pending(c->ssl))
        (void)SSL_free_buffers(c->ssl);
}

void kite__tls_quiet(struct kite__transport *t, bool quiet)
{
    struct tls_conn *c = conn_of(t);
    if (!c || !(c->flags & F_HS_DONE))
        return;
    c->busy = !quiet;
    release_if_quiet(c);
}

/* ---- the one place SSL_get_error() is read ------------------------------------------ */

/* Before each SSL_* call: a stale error left on this thread's queue (by any libcrypto
 * user) would make SSL_get_error() report SSL_ERROR_SSL for a mere WANT_READ. Peeking
 * first is cheaper than clearing an already empty queue, and it is empty almost
 * always, since every failure path here clears it. */
static void clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
    bio_errno = 0;
}

static int fail(struct tls_conn *c, int code, enum why why, unsigned long e, int sys)
{
    c->err = code;
    c->why = (uint8_t)why;
    c->ssl_err = e;
    c->sys_err = sys;
    return code;
}

/* Remember which fd event the operation waits for (see want_events). */
static void set_want(struct tls_conn *c, enum tls_op op, uint32_t ev)
{
    if (op == OP_HANDSHAKE) {
        c->flags &= (uint8_t)~(F_HS_READ | F_HS_WRITE);
        c->flags |= ev == KITE__IO_READ ? F_HS_READ : F_HS_WRITE;
    } else if (op == OP_READ) {
        if (ev == KITE__IO_WRITE)
            c->flags |= F_RD_WRITE;
    } else if (ev == KITE__IO_READ) {
        c->flags |= F_WR_READ; /* a write or a close_notify */
    }
}

/* The end of the stream: a normal EOF for a read; a failure anywhere else. */
static int peer_eof(struct tls_conn *c, enum tls_op op)
{
    if (op == OP_READ)
        return 0;
    if (op == OP_HANDSHAKE)
        return fail(c, KITE_ERR_TLS, WHY_EOF, 0, 0);
    return fail(c, -EPIPE, WHY_SYS, 0, EPIPE);
}

static int ssl_failure(struct tls_conn *c, enum tls_op op)
{
    unsigned long e = ERR_peek_last_error();
    ERR_clear_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return peer_eof(c, op);
    if (!c->ctx->server && (SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER) &&
        SSL_get_verify_result(c->ssl) != X509_V_OK)
        return fail(c, KITE_ERR_TLS_VERIFY, WHY_VERIFY, e, 0);
    return fail(c, KITE_ERR_TLS, WHY_SSL, e, 0);
}

/*
 * Map a failed SSL_* call: KITE_AGAIN with the wanted fd event recorded, 0 for the end
 * of the stream on a read, or a sticky failure (kite code or -errno) kept in c->err.
 */
static int tls_result(struct tls_conn *c, int ret, enum tls_op op)
{
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        set_want(c, op, e == SSL_ERROR_WANT_READ ? KITE__IO_READ : KITE__IO_WRITE);
        return KITE_AGAIN;
    }
    if (op == OP_SHUTDOWN) {
        ERR_clear_error();
        return KITE_ERR_TLS;
    }
    switch (e) {
    case SSL_ERROR_ZERO_RETURN: /* close_notify, or a bare EOF (IGNORE_UNEXPECTED_EOF) */
        return peer_eof(c, op);
    case SSL_ERROR_SYSCALL: {
        int sys = bio_errno;
        ERR_clear_error();
        if (sys == 0)
            return peer_eof(c, op);
        return fail(c, -sys, WHY_SYS, 0, sys);
    }
    case SSL_ERROR_SSL:
        return ssl_failure(c, op);
    default: /* WANT_X509_LOOKUP and the like: nothing we asked for */
        ERR_clear_error();
        return fail(c, KITE_ERR_TLS, WHY_SSL, 0, 0);
    }
}

/* ---- the vtable ------------------------------------------------------------------------ */

static int tls_handshake(struct kite__transport *t)
{
    struct tls_conn *c = conn_of(t);
    if (!c)
        return -EBADF;
    if (c->flags & F_HS_DONE)
        return KITE_OK;
    if (c->err)
        return c->err;
    clear_errors();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->flags &= (uint8_t)~(F_HS_READ | F_HS_WRITE);
        c->flags |= F_HS_DONE;
        if (SSL_has_pending(c->ssl))
            c->flags |= F_READ_MORE; /* data came with the last flight */
        release_if_quiet(c);
        return KITE_OK;
    }
    return tls_result(c, r, OP_HANDSHAKE);
}

/*
 * Decrypt into buf until it is full or no complete record is left. Another SSL_read is
 * tried only while OpenSSL still holds bytes (SSL_has_pending), so a read that drains
 * everything costs one read(2), like TCP's, not a second one that says EAGAIN.
 */
static ssize_t tls_read(struct kite__transport *t, void *buf, size_t len)
{
    struct tls_conn *c = conn_of(t);
    if (!c)
        return -EBADF;
    if (c->err)
        return c->err;
    if (!(c->flags & F_HS_DONE))
        return KITE_ERR_STATE;
    if (len == 0)
        return KITE_ERR_INVALID;
    c->flags &= (uint8_t)~(F_RD_WRITE | F_READ_MORE);
    size_t got = 0;
    while (got < len) {
        size_t n = 0;
        clear_errors();
        if (SSL_read_ex(c->ssl, (char *)buf + got, len - got, &n) == 1) {
            got += n;
            if (!SSL_has_pending(c->ssl))
                break;
            continue;
        }
        int rc = tls_result(c, 0, OP_READ);
        if (got == 0)
            return rc;
        break; /* return the bytes; an error is sticky and an EOF repeats next time */
    }
    if (got == len && SSL_has_pending(c->ssl))
        c->flags |= F_READ_MORE;
    else
        release_if_quiet(c);
    return (ssize_t)got;
}

/* Per-thread staging for coalesced writes. Sharing it between connections is safe:
 * once SSL_write has taken a chunk, the record is encrypted into the connection's own
 * buffer, and a retry only has to offer as many bytes (ACCEPT_MOVING_WRITE_BUFFER). */
static _Thread_local unsigned char stage[KITE__TLS_RECORD_MAX];

/* The next chunk to hand to SSL_write, starting at iov[i] + off: that buffer itself when
 * it is at least a record long or the last one; otherwise up to a record's worth of the
 * following buffers, copied into the staging area. The same bytes give the same or a
 * longer chunk, which is what OpenSSL's retry rule needs. */
static size_t next_chunk(const struct iovec *iov, int cnt, int i, size_t off, const void **p)
{
    size_t rem = iov[i].iov_len - off;
    if (rem >= KITE__TLS_RECORD_MAX || i + 1 == cnt) {
        *p = (const char *)iov[i].iov_base + off;
        return rem;
    }
    size_t n = 0;
    for (; i < cnt && n < KITE__TLS_RECORD_MAX; i++, off = 0) {
        size_t take = KITE_MIN(iov[i].iov_len - off, KITE__TLS_RECORD_MAX - n);
        memcpy(stage + n, (const char *)iov[i].iov_base + off, take);
        n += take;
    }
    *p = stage;
    return n;
}

static void advance(const struct iovec *iov, int cnt, int *i, size_t *off, size_t n)
{
    while (*i < cnt && n > 0) {
        size_t rem = iov[*i].iov_len - *off;
        if (n < rem) {
            *off += n;
            return;
        }
        n -= rem;
        (*i)++;
        *off = 0;
    }
}

static ssize_t tls_writev(struct kite__transport *t, const struct iovec *iov, int iovcnt)
{
    struct tls_conn *c = conn_of(t);
    if (!c)
        return -EBADF;
    if (c->err)
        return c->err;
    if (!(c->flags & F_HS_DONE))
        return KITE_ERR_STATE;
    c->flags &= (uint8_t)~F_WR_READ;
    size_t total = 0, off = 0;
    int i = 0;
    for (;;) {
        while (i < iovcnt && off == iov[i].iov_len) {
            i++;
            off = 0;
        }
        if (i == iovcnt) {
            release_if_quiet(c); /* all written: the write buffer is free */
            return (ssize_t)total;
        }
        const void *p;
        size_t n = next_chunk(iov, iovcnt, i, off, &p), w = 0;
        clear_errors();
        if (SSL_write_ex(c->ssl, p, n, &w) != 1) {
            int rc = tls_result(c, 0, OP_WRITE);
            return total ? (ssize_t)total : rc;
        }
        total += w;
        advance(iov, iovcnt, &i, &off, w);
    }
}

/* close_notify (RFC 8446 §6.1), then SHUT_WR. Never waits for the peer's close_notify:
 * the owner reads until EOF if it cares. */
static int tls_shutdown(struct kite__transport *t)
{
    struct tls_conn *c = conn_of(t);
    if (!c)
        return -EBADF;
    if ((c->flags & (F_HS_DONE | F_SHUT_SENT)) == F_HS_DONE && !c->err) {
        clear_errors();
        int r = SSL_shutdown(c->ssl); /* 0: sent; the peer's close_notify not seen yet */
        if (r < 0 && tls_result(c, r, OP_SHUTDOWN) == KITE_AGAIN)
            return KITE_AGAIN;
        c->flags |= F_SHUT_SENT; /* sent, or the connection is broken anyway */
    }
    return shutdown(c->base.fd, SHUT_WR) < 0 ? -errno : KITE_OK;
}

static void tls_close(struct kite__transport *t)
{
    struct tls_conn *c = conn_of(t);
    if (c) {
        /* Best effort, one non-blocking attempt: a peer that sees close_notify knows
         * the stream ended on purpose. */
        if ((c->flags & (F_HS_DONE | F_SHUT_SENT)) == F_HS_DONE && !c->err) {
            clear_errors();
            (void)SSL_shutdown(c->ssl);
        }
        ERR_clear_error();
        struct tls_ctx *x = c->ctx;
        int fd = c->base.fd;
        conn_free(c);
        ctx_unref(x);
        t->conn = NULL;
        close(fd);
    }
}

/* During the handshake: whatever OpenSSL waits for (readable before the first step).
 * After it: what the owner wants, plus the other direction when a read needs the fd
 * writable or a write needs it readable. */
static uint32_t tls_want_events(const struct kite__transport *t, uint32_t want)
{
    const struct tls_conn *c = conn_of(t);
    if (!c)
        return want; /* closed: nothing to wait for on its behalf */
    uint32_t other = want & ~(uint32_t)(KITE__IO_READ | KITE__IO_WRITE);
    if (!(c->flags & F_HS_DONE))
        return other | ((c->flags & F_HS_WRITE) ? KITE__IO_WRITE : KITE__IO_READ);
    uint32_t ev = want;
    if ((want & KITE__IO_READ) && (c->flags & F_RD_WRITE))
        ev |= KITE__IO_WRITE;
    if ((want & KITE__IO_WRITE) && (c->flags & F_WR_READ))
        ev |= KITE__IO_READ;
    return ev;
}

/* Decrypted bytes, or whole records that a read would decrypt, without the fd. */
static size_t tls_pending(const struct kite__transport *t)
{
    const struct tls_conn *c = conn_of(t);
    if (!c || !(c->flags & F_READ_MORE) || c->err)
        return 0;
    int n = SSL_pending(c->ssl);
    return n > 0 ? (size_t)n : 1;
}

const struct kite__transport_vt kite__tls_vt = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .handshake = tls_handshake,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .want_events = tls_want_events,
    .pending = tls_pending,
};

/* ---- diagnostics ------------------------------------------------------------------------ */

/* Words for common handshake failures, where OpenSSL's reason alone puzzles users. */
static const char *ssl_hint(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return NULL;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_HTTP_REQUEST:
        return "the peer sent plain HTTP to a TLS port";
    case SSL_R_WRONG_VERSION_NUMBER:
        return "the peer does not speak TLS (wrong version number)";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
        return "no TLS version in common (kite speaks TLS 1.2 and 1.3)";
    case SSL_R_NO_SHARED_CIPHER:
        return "no cipher suite in common";
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return "no application protocol in common (ALPN: kite speaks http/1.1)";
    default:
        return NULL;
    }
}

/* A hint after the verifier's words, for the failures users meet most. */
static void verify_hint(SSL *ssl, long v, char *buf, size_t len)
{
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    buf[0] = '\0';
    if (v == X509_V_ERR_HOSTNAME_MISMATCH) {
        const char *h = X509_VERIFY_PARAM_get0_host(p, 0);
        snprintf(buf, len, " (the certificate is not valid for \"%s\")", h ? h : "?");
    } else if (v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        char *ip = X509_VERIFY_PARAM_get1_ip_asc(p);
        snprintf(buf, len, " (the certificate is not valid for %s)", ip ? ip : "the address");
        OPENSSL_free(ip);
    } else if (v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
               v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
               v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
               v == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE ||
               v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) {
        snprintf(buf, len,
                 " (the issuer is not trusted: give its CA with ca_file or ca_dir, "
                 "or check that the server sends its intermediate certificates)");
    }
}

static void describe_ssl(const struct tls_conn *c, bool in_hs, char *buf, size_t len)
{
    const char *what = in_hs ? "TLS handshake failed" : "TLS error";
    unsigned long e = c->ssl_err;
    const char *hint = ssl_hint(e);
    int reason = ERR_GET_REASON(e);
    if (hint)
        snprintf(buf, len, "%s: %s", what, hint);
    else if (ERR_GET_LIB(e) == ERR_LIB_SSL && reason >= SSL_AD_REASON_OFFSET &&
             reason < SSL_AD_REASON_OFFSET + 256)
        snprintf(buf, len, "%s: the peer sent the alert \"%s\"", what,
                 SSL_alert_desc_string_long(reason - SSL_AD_REASON_OFFSET));
    else
        snprintf(buf, len, "%s: %s", what, reason_of(e));
}

int kite__tls_last_error(const struct kite__transport *t, char *buf, size_t len)
{
    const struct tls_conn *c = kite__tls_is(t) ? conn_of(t) : NULL;
    char hint[160];
    if (!buf || len == 0)
        return c ? c->err : KITE_OK;
    buf[0] = '\0';
    if (!c || !c->err)
        return KITE_OK;
    bool in_hs = !(c->flags & F_HS_DONE);
    switch (c->why) {
    case WHY_VERIFY: {
        long v = SSL_get_verify_result(c->ssl);
        verify_hint(c->ssl, v, hint, sizeof hint);
        snprintf(buf, len, "certificate verification failed: %s%s",
                 X509_verify_cert_error_string(v), hint);
        break;
    }
    case WHY_EOF:
        snprintf(buf, len, "the peer closed the connection during the TLS handshake");
        break;
    case WHY_SYS:
        snprintf(buf, len, "%s: %s", in_hs ? "TLS handshake failed" : "TLS connection failed",
                 strerror(c->sys_err));
        break;
    default:
        describe_ssl(c, in_hs, buf, len);
        break;
    }
    return c->err;
}

const char *kite__tls_version(const struct kite__transport *t)
{
    const struct tls_conn *c = kite__tls_is(t) ? conn_of(t) : NULL;
    return c ? SSL_get_version(c->ssl) : NULL;
}

const uint8_t *kite__tls_alpn(const struct kite__transport *t, size_t *len)
{
    const struct tls_conn *c = kite__tls_is(t) ? conn_of(t) : NULL;
    const unsigned char *p = NULL;
    unsigned int n = 0;
    if (c)
        SSL_get0_alpn_selected(c->ssl, &p, &n);
    *len = n;
    return n ? p : NULL;
}

struct ssl_st *kite__tls_ssl(const struct kite__transport *t)
{
    const struct tls_conn *c = kite__tls_is(t) ? conn_of(t) : NULL;
    return c ? c->ssl : NULL;
}

/* ---- public options ---------------------------------------------------------------------- */

void kite_tls_server_options_init(struct kite_tls_server_options *o)
{
    memset(o, 0, sizeof *o);
    o->min_version = KITE_TLS_VERSION_DEFAULT;
    o->max_version = KITE_TLS_VERSION_DEFAULT;
}

void kite_tls_client_options_init(struct kite_tls_client_options *o)
{
    memset(o, 0, sizeof *o);
    o->min_version = KITE_TLS_VERSION_DEFAULT;
    o->max_version = KITE_TLS_VERSION_DEFAULT;
}

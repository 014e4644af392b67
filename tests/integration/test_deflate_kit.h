/*
 * A kit for the permessage-deflate integration tests (header-only, included by
 * tests/integration/test_deflate*.c), on top of test_server_kit.h:
 *
 *   - dz_*   a raw WebSocket client that speaks RFC 7692 on its own, with plain zlib:
 *            it offers what the test says, reads the 101's agreement, sends messages
 *            compressed (in as many fragments as asked) or as crafted frames, and
 *            receives frames with their RSV bits, inflating compressed messages. It is
 *            independent of kite's own permessage-deflate, so the server is checked
 *            against a second implementation;
 *   - ext_*  parsing Sec-WebSocket-Extensions values (offers and answers) to check an
 *            answer stays within the offer (RFC 7692 §7.1);
 *   - dapp_* a server app: echo plus the commands of the server kit, and
 *            "cmd:pmdmem" / "cmd:pool" answering what the session's permessage-deflate
 *            instance and the loop thread's pool hold.
 */
#ifndef KITE_TEST_DEFLATE_KIT_H
#define KITE_TEST_DEFLATE_KIT_H

#include <zlib.h>

#include "test_server_kit.h"

/* ---- parsing extension header values -------------------------------------------------- */

#define EXT_MAX 8
#define EXT_MAX_PARAMS 8

struct ext_param {
    char name[40];
    char value[16]; /* "" when none */
    bool has_value;
};

struct ext_elem {
    char name[40];
    size_t n;
    struct ext_param p[EXT_MAX_PARAMS];
};

static inline char *ext_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

/* Split a header value (simple tokens, no quoted strings) into elements. Returns the
 * count. */
static inline size_t ext_parse(const char *value, struct ext_elem *out, size_t cap)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", value ? value : "");
    size_t n = 0;
    char *save1 = NULL;
    for (char *e = strtok_r(buf, ",", &save1); e && n < cap; e = strtok_r(NULL, ",", &save1)) {
        struct ext_elem *x = &out[n++];
        memset(x, 0, sizeof(*x));
        char *save2 = NULL;
        char *name = strtok_r(e, ";", &save2);
        snprintf(x->name, sizeof(x->name), "%s", name ? ext_trim(name) : "");
        for (char *p = strtok_r(NULL, ";", &save2); p && x->n < EXT_MAX_PARAMS;
             p = strtok_r(NULL, ";", &save2)) {
            struct ext_param *q = &x->p[x->n++];
            char *eq = strchr(p, '=');
            if (eq)
                *eq = 0;
            snprintf(q->name, sizeof(q->name), "%s", ext_trim(p));
            q->has_value = eq != NULL;
            snprintf(q->value, sizeof(q->value), "%s", eq ? ext_trim(eq + 1) : "");
        }
    }
    return n;
}

static inline const struct ext_param *ext_get(const struct ext_elem *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->p[i].name, name) == 0)
            return &e->p[i];
    return NULL;
}

/*
 * RFC 7692 §7.1: is permessage-deflate answer `a` acceptable for offer `o`?
 * server_max_window_bits at most the offered value (when offered); client_max_window_bits
 * only when offered, with a value, at most the offered one; the two *_no_context_takeover
 * without values; no other parameter, none twice. Returns NULL or what is wrong.
 */
static inline const char *ext_within(const struct ext_elem *o, const struct ext_elem *a)
{
    static const char *const known[] = {"server_no_context_takeover", "client_no_context_takeover",
                                        "server_max_window_bits", "client_max_window_bits"};
    for (size_t i = 0; i < a->n; i++) {
        bool ok = false;
        for (size_t k = 0; k < 4; k++)
            ok |= strcmp(a->p[i].name, known[k]) == 0;
        if (!ok)
            return "unknown parameter";
        for (size_t j = 0; j < i; j++)
            if (strcmp(a->p[i].name, a->p[j].name) == 0)
                return "parameter twice";
    }
    const struct ext_param *p;
    if ((p = ext_get(a, "server_no_context_takeover")) && p->has_value)
        return "server_no_context_takeover with a value";
    if ((p = ext_get(a, "client_no_context_takeover")) && p->has_value)
        return "client_no_context_takeover with a value";
    if ((p = ext_get(a, "server_max_window_bits"))) {
        int v = atoi(p->value);
        const struct ext_param *q = ext_get(o, "server_max_window_bits");
        if (!p->has_value || v < 8 || v > 15)
            return "bad server_max_window_bits";
        if (q && v > atoi(q->value))
            return "server_max_window_bits above the offer";
    }
    if ((p = ext_get(a, "client_max_window_bits"))) {
        int v = atoi(p->value);
        const struct ext_param *q = ext_get(o, "client_max_window_bits");
        if (!q)
            return "client_max_window_bits not offered";
        if (!p->has_value || v < 8 || v > 15)
            return "bad client_max_window_bits";
        if (q->has_value && v > atoi(q->value))
            return "client_max_window_bits above the offer";
    }
    return NULL;
}

/* The value of a header in a response head ("" when absent). */
static inline void head_header(const char *head, const char *name, char *out, size_t cap)
{
    out[0] = 0;
    size_t n = strlen(name);
    for (const char *p = head; (p = strstr(p, "\r\n")) != NULL;) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, "\r");
            snprintf(out, cap, "%.*s", (int)KITE_TEST_MIN(len, cap - 1), p);
            return;
        }
    }
}

/* ---- the raw deflate client ------------------------------------------------------------ */

struct dz_frame {
    uint8_t op, rsv;
    bool fin;
    uint8_t *data; /* malloc'd */
    size_t len;
};

#define DZ_QUEUE 512

struct dz {
    struct tc *t;             /* the connection (fd, status, head) from tc_open */
    struct kite_codec *codec; /* raw client mode, RSV1 allowed */
    struct dz_frame q[DZ_QUEUE];
    size_t qh, qt;
    bool eof;
    /* the agreement read from the 101 */
    bool on;          /* permessage-deflate accepted */
    int sbits, cbits; /* server's and client's window bits */
    bool snct, cnct;  /* no context takeover, server's and client's side */
    char ext[512];    /* the 101's Sec-WebSocket-Extensions */
    z_stream def, inf;
    bool zinit;
    uint64_t wire_in; /* payload bytes of data frames received */
};

static inline int dz_on_frame(struct kite_codec *c, const struct kite_frame *f, void *ud)
{
    struct dz *d = ud;
    (void)c;
    ASSERT(d->qt - d->qh < DZ_QUEUE);
    struct dz_frame *q = &d->q[d->qt++ % DZ_QUEUE];
    q->op = (uint8_t)f->opcode;
    q->rsv = f->rsv;
    q->fin = f->fin;
    q->len = f->len;
    q->data = malloc(f->len + 1);
    ASSERT(q->data != NULL);
    if (f->len)
        memcpy(q->data, f->data, f->len);
    q->data[f->len] = 0;
    return KITE_OK;
}

static const struct kite_codec_callbacks dz_callbacks = {.on_frame = dz_on_frame};

/* Read the agreement out of the 101 (RFC 7692 §7.1: absent window values mean 15). */
static inline void dz_agreement(struct dz *d)
{
    head_header(d->t->head, "Sec-WebSocket-Extensions", d->ext, sizeof(d->ext));
    struct ext_elem e[EXT_MAX];
    size_t n = ext_parse(d->ext, e, EXT_MAX);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].name, "permessage-deflate") != 0)
            continue;
        const struct ext_param *p;
        d->on = true;
        d->sbits = (p = ext_get(&e[i], "server_max_window_bits")) ? atoi(p->value) : 15;
        d->cbits = (p = ext_get(&e[i], "client_max_window_bits")) ? atoi(p->value) : 15;
        d->snct = ext_get(&e[i], "server_no_context_takeover") != NULL;
        d->cnct = ext_get(&e[i], "client_no_context_takeover") != NULL;
    }
    if (!d->on)
        return;
    memset(&d->def, 0, sizeof(d->def));
    memset(&d->inf, 0, sizeof(d->inf));
    /* zlib cannot deflate with 8 bits (it uses 9); the tests never ask for 8 */
    ASSERT(d->cbits >= 9);
    ASSERT_EQ(deflateInit2(&d->def, 6, Z_DEFLATED, -d->cbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    ASSERT_EQ(inflateInit2(&d->inf, -(d->sbits < 9 ? 9 : d->sbits)), Z_OK);
    d->zinit = true;
}

/* Open a WebSocket with `offer` as Sec-WebSocket-Extensions (NULL: none) and extra
 * header lines. t->status is the HTTP status; only a 101 has a codec. */
static inline struct dz *dz_open(uint16_t port, const char *path, const char *offer)
{
    char extra[1024] = "";
    if (offer)
        snprintf(extra, sizeof(extra), "Sec-WebSocket-Extensions: %s\r\n", offer);
    struct dz *d = calloc(1, sizeof(*d));
    ASSERT(d != NULL);
    d->t = tc_open(port, path, extra);
    if (d->t->status != 101)
        return d;
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.role = KITE_ROLE_CLIENT;
    cfg.mode = KITE_MODE_RAW;
    cfg.rsv_allowed = KITE_RSV1;
    cfg.options.max_frame_size = 1ull << 40;
    cfg.options.max_message_size = 1ull << 40;
    d->codec = kite_codec_new(&cfg, &dz_callbacks, d, kit_now_ms());
    ASSERT(d->codec != NULL);
    /* This codec allows RSV1 (RFC 7692 §6). A server that speaks first (kite demo's
     * greeting) may have had a frame read along with the 101 by the kit's own codec:
     * hand those over. They cannot be compressed ones: the kit's codec allows no RSV
     * bit and would have failed the connection. */
    while (d->t->qh < d->t->qt) {
        struct tc_frame *f = &d->t->q[d->t->qh++ % TC_QUEUE];
        ASSERT(d->qt - d->qh < DZ_QUEUE);
        d->q[d->qt++ % DZ_QUEUE] =
            (struct dz_frame){.op = f->op, .rsv = 0, .fin = f->fin, .data = f->data, .len = f->len};
    }
    dz_agreement(d);
    return d;
}

static inline void dz_free(struct dz *d)
{
    if (!d)
        return;
    while (d->qh < d->qt)
        free(d->q[d->qh++ % DZ_QUEUE].data);
    if (d->zinit) {
        deflateEnd(&d->def);
        inflateEnd(&d->inf);
    }
    kite_codec_free(d->codec);
    tc_free(d->t);
    free(d);
}

static inline void dz_flush(struct dz *d)
{
    const uint8_t *p;
    size_t n = kite_codec_pending(d->codec, &p);
    if (n) {
        kit_write_all(d->t->fd, p, n);
        kite_codec_consume(d->codec, n);
    }
}

/* One frame exactly as given (masked by the codec, RFC 6455 §5.3). */
static inline void dz_frame(struct dz *d, enum kite_opcode op, bool fin, uint8_t rsv,
                            const void *data, size_t len)
{
    ASSERT_EQ(kite_codec_send_frame(d->codec, op, fin, rsv, data, len), KITE_OK);
    dz_flush(d);
}

/* Deflate a message as RFC 7692 §7.2.1 says: sync flush, tail removed. Returns a
 * malloc'd payload and its length. */
static inline uint8_t *dz_deflate(struct dz *d, const void *data, size_t len, size_t *out_len)
{
    size_t cap = deflateBound(&d->def, (uLong)len) + 64;
    uint8_t *out = malloc(cap);
    ASSERT(out != NULL);
    d->def.next_in = (Bytef *)(uintptr_t)data;
    d->def.avail_in = (uInt)len;
    d->def.next_out = out;
    d->def.avail_out = (uInt)cap;
    ASSERT_EQ(deflate(&d->def, Z_SYNC_FLUSH), Z_OK);
    ASSERT_EQ(d->def.avail_in, 0);
    size_t n = cap - d->def.avail_out;
    ASSERT(n >= 4 && memcmp(out + n - 4, "\x00\x00\xff\xff", 4) == 0);
    if (d->cnct)
        deflateReset(&d->def);
    *out_len = n - 4;
    return out;
}

/* Send a message compressed, in `nfrag` frames (RSV1 on the first only, §6.1). */
static inline void dz_send_z(struct dz *d, enum kite_opcode op, const void *data, size_t len,
                             unsigned nfrag)
{
    size_t n;
    uint8_t *z = dz_deflate(d, data, len, &n);
    if (nfrag < 1)
        nfrag = 1;
    size_t step = n / nfrag, off = 0;
    for (unsigned i = 0; i < nfrag; i++) {
        size_t k = i + 1 == nfrag ? n - off : step;
        dz_frame(d, i == 0 ? op : KITE_OP_CONTINUATION, i + 1 == nfrag, i == 0 ? KITE_RSV1 : 0,
                 z + off, k);
        off += k;
    }
    free(z);
}

/* Next frame (caller frees f->data): 1, 0 on timeout, -1 at EOF with none left. */
static inline int dz_next_frame(struct dz *d, struct dz_frame *f, unsigned timeout_ms)
{
    uint64_t end = kit_now_ms() + timeout_ms;
    static uint8_t buf[1 << 16];
    while (d->qh == d->qt) {
        if (d->eof)
            return -1;
        uint64_t now = kit_now_ms();
        if (now >= end)
            return 0;
        ssize_t n = kit_read(d->t->fd, buf, sizeof(buf), (unsigned)(end - now));
        if (n == -1)
            return 0;
        if (n <= 0) {
            d->eof = true;
            continue;
        }
        ASSERT(kite_codec_recv(d->codec, buf, (size_t)n, kit_now_ms()) >= 0);
    }
    *f = d->q[d->qh++ % DZ_QUEUE];
    return 1;
}

/* A whole message received (control frames skipped; a close frame ends it). */
struct dz_msg {
    uint8_t op;    /* TEXT/BINARY, or CLOSE (data: the close payload) */
    bool z;        /* it was compressed (RSV1 on its first frame) */
    size_t wire;   /* payload bytes on the wire */
    size_t frames; /* frames it came in */
    uint8_t *data; /* malloc'd, inflated, NUL-terminated (not counted in len) */
    size_t len;
};

static inline void dz_inflate_into(struct dz *d, const uint8_t *in, size_t len, uint8_t **out,
                                   size_t *olen, size_t *cap)
{
    d->inf.next_in = (Bytef *)(uintptr_t)in;
    d->inf.avail_in = (uInt)len;
    while (d->inf.avail_in) {
        if (*cap - *olen < 65536) {
            *cap = *cap * 2 + 65536;
            *out = realloc(*out, *cap);
            ASSERT(*out != NULL);
        }
        d->inf.next_out = *out + *olen;
        d->inf.avail_out = (uInt)(*cap - *olen);
        int rc = inflate(&d->inf, Z_SYNC_FLUSH);
        ASSERT(rc == Z_OK || rc == Z_BUF_ERROR || rc == Z_STREAM_END);
        *olen = *cap - d->inf.avail_out;
        if (rc == Z_STREAM_END)
            break;
    }
}

/* 1 with a message, 0 on timeout, -1 at EOF. */
static inline int dz_next(struct dz *d, struct dz_msg *m, unsigned timeout_ms)
{
    memset(m, 0, sizeof(*m));
    uint8_t *raw = NULL;
    size_t rlen = 0;
    for (;;) {
        struct dz_frame f;
        int r = dz_next_frame(d, &f, timeout_ms);
        if (r != 1) {
            free(raw);
            return r;
        }
        if (f.op == KITE_OP_PING || f.op == KITE_OP_PONG) {
            free(f.data);
            continue;
        }
        if (f.op == KITE_OP_CLOSE) {
            free(raw);
            m->op = f.op;
            m->data = f.data;
            m->len = f.len;
            return 1;
        }
        if (m->frames == 0) {
            m->op = f.op;
            m->z = (f.rsv & KITE_RSV1) != 0;
        }
        m->frames++;
        m->wire += f.len;
        d->wire_in += f.len;
        raw = realloc(raw, rlen + f.len + 4);
        ASSERT(raw != NULL);
        memcpy(raw + rlen, f.data, f.len);
        rlen += f.len;
        bool fin = f.fin;
        free(f.data);
        if (fin)
            break;
    }
    if (!m->z) {
        /* Callers parse replies as strings ("cmd:pmdmem"): terminate them, or strtoull
         * reads on into whatever the heap left after the payload. */
        raw[rlen] = 0;
        m->data = raw;
        m->len = rlen;
        return 1;
    }
    /* §7.2.2: append 00 00 ff ff and inflate. */
    memcpy(raw + rlen, "\x00\x00\xff\xff", 4);
    size_t cap = 0;
    m->data = NULL;
    m->len = 0;
    dz_inflate_into(d, raw, rlen + 4, &m->data, &m->len, &cap);
    /* inflate may have filled the buffer to the last byte: make room for the NUL */
    m->data = realloc(m->data, m->len + 1);
    ASSERT(m->data != NULL);
    m->data[m->len] = 0;
    if (d->snct)
        inflateReset(&d->inf);
    free(raw);
    return 1;
}

/* Expect the next message to be `op` with exactly data[0..len). Returns its wire size
 * and sets *z to whether it came compressed. */
#define DZ_EXPECT(d, opc, ptr, n, zout)                                                            \
    do {                                                                                           \
        struct dz_msg m_;                                                                          \
        int r_ = dz_next((d), &m_, 5000);                                                          \
        if (r_ != 1)                                                                               \
            kite_test_fail(__FILE__, __LINE__, "no message (%s)", r_ ? "eof" : "timeout");         \
        if (m_.op != (opc) || m_.len != (n) || memcmp(m_.data, (ptr), (n)) != 0)                   \
            kite_test_fail(__FILE__, __LINE__, "got op %u, %zu bytes; want op %u, %zu bytes",      \
                           m_.op, m_.len, (unsigned)(opc), (size_t)(n));                           \
        bool *zp_ = (zout);                                                                        \
        if (zp_)                                                                                   \
            *zp_ = m_.z;                                                                           \
        g_dz_last_wire = m_.wire;                                                                  \
        free(m_.data);                                                                             \
    } while (0)

static size_t g_dz_last_wire KIT_UNUSED;

/* Expect a close frame; returns its code (1005 when it has none). */
static inline unsigned dz_expect_close(struct dz *d, char *reason, size_t cap)
{
    struct dz_msg m;
    for (;;) {
        int r = dz_next(d, &m, 5000);
        if (r != 1)
            kite_test_fail(__FILE__, __LINE__, "no close frame (%s)", r ? "eof" : "timeout");
        if (m.op == KITE_OP_CLOSE)
            break;
        free(m.data);
    }
    unsigned code = m.len >= 2 ? (unsigned)(m.data[0] << 8 | m.data[1]) : 1005;
    if (reason && cap) {
        size_t n = m.len > 2 ? KITE_TEST_MIN(m.len - 2, cap - 1) : 0;
        memcpy(reason, m.data + 2, n);
        reason[n] = 0;
    }
    free(m.data);
    return code;
}

/* ---- workloads ------------------------------------------------------------------------- */

/* JSON-like text of about `len` bytes, different for each seed but similar in shape. */
static inline size_t dk_json(char *out, size_t len, unsigned seed)
{
    size_t n = 0;
    out[n++] = '[';
    for (unsigned i = 0; n + 100 < len; i++) {
        unsigned v = (seed * 7919u + i) * 2654435761u;
        n += (size_t)snprintf(
            out + n, len - n, "%s{\"id\":%u,\"user\":\"user%u\",\"score\":%u,\"ok\":%s}",
            i ? "," : "", seed + i, v % 997, v % 100000, (v & 1) ? "true" : "false");
    }
    out[n++] = ']';
    out[n] = 0;
    return n;
}

/* Incompressible bytes. */
static inline void dk_random(uint8_t *out, size_t len, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out[i] = (uint8_t)(s >> 24);
    }
}

/* ---- a server app ------------------------------------------------------------------------ */

/* Log what was negotiated: "open /path pmd s=13 c=13 snct cnct;" or "open /path none;". */
static KIT_UNUSED void dapp_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    struct kite_str path = kite_request_path(req);
    struct kite_pmd_params p;
    void *inst = kite_session_extension(s, &kite_ext_permessage_deflate);
    if (kite_pmd_params(inst, &p) == KITE_OK)
        rec_add("open %.*s pmd s=%u c=%u%s%s;", (int)path.len, path.ptr,
                (unsigned)p.server_max_window_bits, (unsigned)p.client_max_window_bits,
                p.server_no_context_takeover ? " snct" : "",
                p.client_no_context_takeover ? " cnct" : "");
    else
        rec_add("open %.*s none;", (int)path.len, path.ptr);
}

static KIT_UNUSED void dapp_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    char out[64];
    if (m->type == KITE_OP_TEXT && m->len == 10 && memcmp(m->data, "cmd:pmdmem", 10) == 0) {
        void *inst = kite_session_extension(s, &kite_ext_permessage_deflate);
        snprintf(out, sizeof(out), "%zu", inst ? kite_pmd_memory(inst) : (size_t)0);
        kite_session_send_str(s, out);
        return;
    }
    if (m->type == KITE_OP_TEXT && m->len == 8 && memcmp(m->data, "cmd:pool", 8) == 0) {
        size_t bytes;
        size_t n = kite_pmd_pool_size(&bytes);
        snprintf(out, sizeof(out), "%zu %zu", n, bytes);
        kite_session_send_str(s, out);
        return;
    }
    tapp_message(s, m, ud);
}

static const struct kite_ws_callbacks dapp_callbacks KIT_UNUSED = {
    .on_open = dapp_open,
    .on_message = dapp_message,
    .on_error = tapp_error,
    .on_close = tapp_close,
};

#endif

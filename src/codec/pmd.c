/*
 * codec/pmd — permessage-deflate (RFC 7692) on zlib, for both roles.
 *
 * Negotiation (§7.1): offers are validated parameter by parameter; a malformed or
 * duplicated parameter, or an unknown one, makes the server skip that offer (the next
 * one may do; none: the extension is simply not used), and makes a client refuse the
 * response. The server takes the first acceptable offer (the client's preference) and
 * never answers beyond what it allows.
 *
 * Data (§7.2): an outgoing message is deflated with Z_SYNC_FLUSH and its trailing
 * 00 00 ff ff removed (§7.2.1); an incoming one is inflated chunk by chunk as frames
 * arrive, with 00 00 ff ff fed after its last chunk (§7.2.2). Without context takeover
 * the stream is reset after every message.
 *
 * Memory: zlib allocates through the session's allocator (zalloc/zfree), and every
 * block is counted so kite_pmd_memory() can say what an instance holds. Without context
 * takeover, streams are borrowed from a small per-thread pool for one message and given
 * back, so an idle session holds no zlib state at all. With context takeover a
 * direction either keeps its stream for the session's life (sized by the agreed window
 * and memLevel, made on first use), or, with pool_streams, keeps only its history
 * window between messages: the last 2^bits bytes it sent (or received), at most. The
 * stream is then borrowed when a message comes and primed with that window as a preset
 * dictionary, which lets it refer to exactly what a kept stream could (RFC 7692 §7.2.1
 * only requires that references stay within the agreed window). Priming costs a reset
 * (zlib clears its hash table) and hashing the whole window, far more than a small
 * message: so a borrowed stream stays with the session while it is busy, from message
 * to message like a kept stream, and is parked (its window saved, the stream given
 * back) only when the codec says the session is quiet (the extension's idle hook: the
 * end of each read's input, or a send of its own).
 */
#include <zlib.h>

#if ZLIB_VERNUM < 0x1290
#error "permessage-deflate needs zlib 1.2.9 or later (deflateGetDictionary)"
#endif

#include "codec/conn_internal.h"
#include "codec/pmd.h"

#define PMD_NAME "permessage-deflate"
/* RFC 7692 §7.2.1: what a sync flush ends with, removed on the wire. */
static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Output steps when inflating: start near the input size, grow to this. */
#define STEP_MIN 256u
#define STEP_MAX (64u * 1024u)

/* ------------------------------------------------------------------------------------
 * Config
 */

void kite_pmd_config_init(struct kite_pmd_config *c)
{
    kite_pmd_config_preset(c, KITE_PMD_BALANCED);
}

int kite_pmd_config_preset(struct kite_pmd_config *c, enum kite_pmd_preset p)
{
    struct kite_pmd_config d;
    memset(&d, 0, sizeof(d));
    d.offer_fallback = true;
    d.offer_client_max_window_bits = true;
    d.compress_threshold = 64;
    d.large_message_level = 1;
    switch (p) {
    case KITE_PMD_BALANCED:
        d.large_message_size = (size_t)64 << 10;
        d.level = 6, d.mem_level = 8, d.server_max_window_bits = 13;
        d.client_max_window_bits = 13;
        d.pool_streams = true;
        break;
    case KITE_PMD_SPEED:
        d.level = 1, d.mem_level = 8, d.server_max_window_bits = 15;
        d.client_max_window_bits = 15;
        break;
    case KITE_PMD_MEMORY:
        d.large_message_size = (size_t)64 << 10;
        d.level = 6, d.mem_level = 8, d.server_max_window_bits = 15;
        d.client_max_window_bits = 15;
        d.server_no_context_takeover = true;
        d.client_no_context_takeover = true;
        break;
    case KITE_PMD_MAX_RATIO:
        d.level = 9, d.mem_level = 9, d.server_max_window_bits = 15;
        d.client_max_window_bits = 15;
        break;
    default:
        return KITE_ERR_INVALID;
    }
    *c = d;
    return KITE_OK;
}

int kite_pmd_preset_by_name(const char *name, enum kite_pmd_preset *out)
{
    static const struct {
        const char *name;
        enum kite_pmd_preset p;
    } names[] = {{"balanced", KITE_PMD_BALANCED},
                 {"speed", KITE_PMD_SPEED},
                 {"memory", KITE_PMD_MEMORY},
                 {"max-ratio", KITE_PMD_MAX_RATIO}};
    for (size_t i = 0; name && i < KITE_ARRAY_LEN(names); i++) {
        if (kite__ieq(name, strlen(name), names[i].name, strlen(names[i].name))) {
            *out = names[i].p;
            return KITE_OK;
        }
    }
    return KITE_ERR_NOTFOUND;
}

static void config_init(void *cfg)
{
    kite_pmd_config_init(cfg);
}

static bool bits_ok(unsigned b)
{
    return b >= 8 && b <= 15;
}

static int config_check(const void *cfg)
{
    const struct kite_pmd_config *c = cfg;
    bool ok = c->level >= -1 && c->level <= 9 && c->mem_level >= 1 && c->mem_level <= 9 &&
              c->large_message_level >= -1 && c->large_message_level <= 9 &&
              bits_ok(c->server_max_window_bits) && bits_ok(c->client_max_window_bits);
    return ok ? KITE_OK : KITE_ERR_INVALID;
}

/* ------------------------------------------------------------------------------------
 * Parameters (§7.1)
 */

int kite__pmd_window_bits(const char *s, size_t len)
{
    if (len == 1 && s[0] >= '8' && s[0] <= '9')
        return s[0] - '0';
    if (len == 2 && s[0] == '1' && s[1] >= '0' && s[1] <= '5')
        return 10 + (s[1] - '0');
    return -1;
}

enum { P_SNCT, P_CNCT, P_SMWB, P_CMWB, P_COUNT };
static const char *const param_names[P_COUNT] = {
    "server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
    "client_max_window_bits"};

/* The parameters of one offer or response. bits[] is 0 for "present without value". */
struct pmd_params {
    bool has[P_COUNT];
    int bits[P_COUNT];
};

static int param_index(const struct kite_ext_param *p)
{
    for (int i = 0; i < P_COUNT; i++)
        if (p->name_len == strlen(param_names[i]) &&
            memcmp(p->name, param_names[i], p->name_len) == 0)
            return i;
    return -1;
}

/*
 * Validate and read an offer's (response = false) or a response's parameters.
 * §7.1: each parameter at most once, no unknown ones. §7.1.1: the two
 * *_no_context_takeover take no value. §7.1.2.1: server_max_window_bits needs a value.
 * §7.1.2.2: client_max_window_bits may come without one in an offer, never in a
 * response.
 */
static bool parse_params(const struct kite_ext_offer *o, bool response, struct pmd_params *pp)
{
    memset(pp, 0, sizeof(*pp));
    for (size_t i = 0; i < o->num_params; i++) {
        const struct kite_ext_param *p = &o->params[i];
        int k = param_index(p);
        if (k < 0 || pp->has[k])
            return false;
        pp->has[k] = true;
        if (k == P_SNCT || k == P_CNCT) {
            if (p->value)
                return false;
            continue;
        }
        if (!p->value) {
            if (k == P_SMWB || response)
                return false;
            continue;
        }
        pp->bits[k] = kite__pmd_window_bits(p->value, p->value_len);
        if (pp->bits[k] < 0)
            return false;
    }
    return true;
}

static int write_bits(struct kite_ext_writer *w, int k, int bits)
{
    char v[3];
    v[0] = bits >= 10 ? '1' : (char)('0' + bits);
    v[1] = bits >= 10 ? (char)('0' + bits - 10) : '\0';
    v[2] = '\0';
    return kite_ext_write_param(w, param_names[k], v);
}

/* ------------------------------------------------------------------------------------
 * Negotiation
 */

/* Client: our offer, and a plain fallback after a demanding one (a server may decline
 * window limits or no-context-takeover for itself, RFC 7692 §7.1.1.1, §7.1.2.1). */
static int pmd_offer(const void *cfg, struct kite_ext_writer *w)
{
    const struct kite_pmd_config *c = cfg;
    bool demanding = c->server_no_context_takeover || c->server_max_window_bits < 15;
    int rounds = demanding && c->offer_fallback ? 2 : 1;
    int rc = KITE_OK;
    for (int r = 0; r < rounds && rc == KITE_OK; r++) {
        rc = kite_ext_write_offer(w);
        if (rc == KITE_OK && r == 0 && c->server_no_context_takeover)
            rc = kite_ext_write_param(w, param_names[P_SNCT], NULL);
        if (rc == KITE_OK && c->client_no_context_takeover)
            rc = kite_ext_write_param(w, param_names[P_CNCT], NULL);
        if (rc == KITE_OK && r == 0 && c->server_max_window_bits < 15)
            rc = write_bits(w, P_SMWB, c->server_max_window_bits);
        /* §7.1.2.2: say we can limit our window; with a value when we will. */
        if (rc == KITE_OK && c->offer_client_max_window_bits) {
            if (c->client_max_window_bits < 15)
                rc = write_bits(w, P_CMWB, c->client_max_window_bits);
            else
                rc = kite_ext_write_param(w, param_names[P_CMWB], NULL);
        }
    }
    return rc;
}

/* Server: the first acceptable offer wins. Every well-formed offer is acceptable: kite
 * can honour each parameter (window 8 included, see extension.h). */
static int pmd_negotiate(const void *cfg, const struct kite_ext_offer *offers, size_t n,
                         struct kite_ext_writer *w)
{
    const struct kite_pmd_config *c = cfg;
    struct pmd_params pp;
    size_t i = 0;
    while (i < n && !parse_params(&offers[i], false, &pp))
        i++;
    if (i == n)
        return KITE_EXT_DECLINE;
    int rc = KITE_OK;
    /* §7.1.1.1/§7.1.1.2: either may always be put in a response; when offered they must
     * be (server_*), or are worth it (client_*: makes the client's hint binding). */
    if (c->server_no_context_takeover || pp.has[P_SNCT])
        rc = kite_ext_write_param(w, param_names[P_SNCT], NULL);
    if (rc == KITE_OK && (c->client_no_context_takeover || pp.has[P_CNCT]))
        rc = kite_ext_write_param(w, param_names[P_CNCT], NULL);
    /* §7.1.2.1: the same or a smaller value than offered. */
    int sw = c->server_max_window_bits;
    if (pp.has[P_SMWB])
        sw = KITE_MIN(sw, pp.bits[P_SMWB]);
    if (rc == KITE_OK && (pp.has[P_SMWB] || sw < 15))
        rc = write_bits(w, P_SMWB, sw);
    /* §7.1.2.2: only when offered, and not above the offered value. */
    if (rc == KITE_OK && pp.has[P_CMWB]) {
        int cw = KITE_MIN((int)c->client_max_window_bits, pp.bits[P_CMWB] ? pp.bits[P_CMWB] : 15);
        if (cw < 15 || pp.bits[P_CMWB])
            rc = write_bits(w, P_CMWB, cw);
    }
    return rc;
}

/* Client: is the server's answer within what we offered (§7.1)? It answers one of our
 * offers: the demanding first one, or the plain fallback. */
static int pmd_client_accept(const void *cfg, const struct kite_ext_offer *resp)
{
    const struct kite_pmd_config *c = cfg;
    struct pmd_params pp;
    if (!parse_params(resp, true, &pp))
        return KITE_ERR_HANDSHAKE;
    /* §7.1.2.2: only if we offered it, and not above the value we offered. */
    if (pp.has[P_CMWB] &&
        (!c->offer_client_max_window_bits || pp.bits[P_CMWB] > c->client_max_window_bits))
        return KITE_ERR_HANDSHAKE;
    bool demanding = c->server_no_context_takeover || c->server_max_window_bits < 15;
    bool first_ok = (!c->server_no_context_takeover || pp.has[P_SNCT]) &&
                    (c->server_max_window_bits == 15 ||
                     (pp.has[P_SMWB] && pp.bits[P_SMWB] <= c->server_max_window_bits));
    bool fallback_ok = demanding && c->offer_fallback;
    return first_ok || fallback_ok ? KITE_OK : KITE_ERR_HANDSHAKE;
}

/* ------------------------------------------------------------------------------------
 * zlib streams and the per-thread pool
 */

enum { Z_KIND_DEFLATE = 0, Z_KIND_INFLATE = 1 };

struct zs {
    z_stream z;
    const struct kite_allocator *a;
    size_t bytes; /* held by zlib through zalloc */
    uint8_t kind;
    uint8_t wbits;     /* as given to zlib: 9-15 */
    uint8_t mem_level; /* deflate */
    int8_t level;      /* deflate: as made, and as kept in the pool */
    int8_t cur_level;  /* deflate: now (deflate_level() may change it per message) */
    uint8_t strategy;  /* deflate */
    struct zs *next;   /* pool link */
};

/* Each zlib block carries its size in front, so zfree can count it down. */
union zhdr {
    size_t size;
    max_align_t align;
};

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    struct zs *s = opaque;
    size_t n = (size_t)items * size;
    if (size && n / size != items)
        return Z_NULL;
    union zhdr *h = kite__malloc(s->a, sizeof(*h) + n);
    if (!h)
        return Z_NULL;
    h->size = n;
    s->bytes += n;
    return h + 1;
}

static void z_free(voidpf opaque, voidpf p)
{
    struct zs *s = opaque;
    if (!p)
        return;
    union zhdr *h = (union zhdr *)p - 1;
    s->bytes -= h->size;
    kite__free(s->a, h);
}

static void zs_free(struct zs *s)
{
    if (!s)
        return;
    if (s->kind == Z_KIND_DEFLATE)
        deflateEnd(&s->z);
    else
        inflateEnd(&s->z);
    kite__free(s->a, s);
}

/* What a stream is made for: its allocator and zlib parameters. */
struct zkey {
    const struct kite_allocator *a;
    uint8_t kind, wbits, mem_level, strategy;
    int8_t level;
};

static struct zs *zs_new(const struct zkey *k)
{
    struct zs *s = kite__calloc(k->a, sizeof(*s));
    if (!s)
        return NULL;
    s->a = k->a;
    s->kind = k->kind;
    s->wbits = k->wbits;
    s->mem_level = k->mem_level;
    s->level = k->level;
    s->cur_level = k->level;
    s->strategy = k->strategy;
    s->z.zalloc = z_alloc;
    s->z.zfree = z_free;
    s->z.opaque = s;
    int rc = k->kind == Z_KIND_DEFLATE ? deflateInit2(&s->z, k->level, Z_DEFLATED, -(int)k->wbits,
                                                      k->mem_level, k->strategy)
                                       : inflateInit2(&s->z, -(int)k->wbits);
    if (rc != Z_OK) {
        /* zlib frees what it got on a failed init. */
        kite__free(k->a, s);
        return NULL;
    }
    return s;
}

_Thread_local unsigned long kite__pmd_primes;

static _Thread_local struct zs *pool;
static _Thread_local size_t pool_n;

static bool same_alloc(const struct kite_allocator *x, const struct kite_allocator *y)
{
    if (x == NULL || y == NULL)
        return x == y;
    return x->malloc == y->malloc && x->realloc == y->realloc && x->free == y->free &&
           x->ud == y->ud;
}

static bool zs_fits(const struct zs *s, const struct zkey *k)
{
    return same_alloc(s->a, k->a) && s->kind == k->kind && s->wbits == k->wbits &&
           (k->kind == Z_KIND_INFLATE ||
            (s->mem_level == k->mem_level && s->level == k->level && s->strategy == k->strategy));
}

/* A stream for one message: from the pool when one fits, else a new one. */
static struct zs *zs_borrow(const struct zkey *k)
{
    for (struct zs **pp = &pool; *pp; pp = &(*pp)->next) {
        if (zs_fits(*pp, k)) {
            struct zs *s = *pp;
            *pp = s->next;
            s->next = NULL;
            s->a = k->a; /* same behaviour; keep the caller's pointer */
            pool_n--;
            return s;
        }
    }
    return zs_new(k);
}

/* Give a stream back, reset; the pool keeps a few, the rest are freed. */
static int deflate_level(struct zs *s, int level);

static void zs_return(struct zs *s)
{
    int rc = s->kind == Z_KIND_DEFLATE ? deflateReset(&s->z) : inflateReset(&s->z);
    /* Back to the level the pool knows it by (zs_fits); cheap right after a reset. */
    if (rc == Z_OK && s->kind == Z_KIND_DEFLATE && deflate_level(s, s->level) != KITE_OK)
        rc = Z_STREAM_ERROR;
    if (rc != Z_OK || pool_n >= KITE__PMD_POOL_MAX) {
        zs_free(s);
        return;
    }
    s->next = pool;
    pool = s;
    pool_n++;
}

void kite_pmd_pool_trim(void)
{
    while (pool) {
        struct zs *s = pool;
        pool = s->next;
        zs_free(s);
    }
    pool_n = 0;
}

size_t kite_pmd_pool_size(size_t *bytes)
{
    size_t b = 0;
    for (struct zs *s = pool; s; s = s->next)
        b += s->bytes + sizeof(*s);
    if (bytes)
        *bytes = b;
    return pool_n;
}

/* ------------------------------------------------------------------------------------
 * Instances
 */

/* A direction's history while parked (context takeover with pool_streams): the last
 * bytes of the uncompressed stream, at most `max` of them. Stale while the direction
 * holds a borrowed stream (the stream's window is the history then). */
struct win {
    uint8_t *buf;
    uint32_t len, cap, max;
};

struct pmd {
    const struct kite_pmd_config *cfg; /* the registry's copy */
    const struct kite_allocator *a;
    struct kite_pmd_params agreed;
    struct zs *def;     /* our compressor: kept, or borrowed (for a message; def_park:
                         * until the session is idle) */
    struct zs *inf;     /* the peer's decompressor, likewise */
    struct win def_win; /* what we sent last (def_park) */
    struct win inf_win; /* what we received last (inf_park) */
    uint8_t def_bits;   /* the window we may compress with (8-15) */
    uint8_t inf_bits;   /* the window the peer compresses with */
    bool def_reset;     /* no context takeover for what we send */
    bool inf_reset;     /* no context takeover for what we receive */
    bool def_park;      /* takeover, but only the window is kept between messages */
    bool inf_park;      /* likewise for what we receive */
    bool in_on;         /* the incoming message in progress is compressed */
    bool in_ended;      /* its deflate stream has ended (a BFINAL block, §7.2.3.4) */
    uint64_t in_seen;   /* compressed bytes of it so far */
    uint64_t in_total;  /* inflated bytes of it so far */
};

/* Read the agreement from the response element; both roles see the same one. */
static void agree(struct pmd *p, enum kite_role role, const struct kite_ext_offer *resp)
{
    struct pmd_params pp;
    if (!parse_params(resp, true, &pp))
        memset(&pp, 0, sizeof(pp)); /* cannot happen: checked in negotiation */
    struct kite_pmd_params *g = &p->agreed;
    g->server_no_context_takeover = pp.has[P_SNCT];
    g->client_no_context_takeover = pp.has[P_CNCT];
    g->server_max_window_bits = (uint8_t)(pp.has[P_SMWB] ? pp.bits[P_SMWB] : 15);
    g->client_max_window_bits = (uint8_t)(pp.has[P_CMWB] ? pp.bits[P_CMWB] : 15);
    if (role == KITE_ROLE_CLIENT) {
        /* Our offer promised our own window and no-context-takeover hint: keep both. */
        g->client_max_window_bits =
            (uint8_t)KITE_MIN(g->client_max_window_bits, p->cfg->client_max_window_bits);
        g->client_no_context_takeover |= p->cfg->client_no_context_takeover;
    }
    bool server = role == KITE_ROLE_SERVER;
    p->def_bits = server ? g->server_max_window_bits : g->client_max_window_bits;
    p->inf_bits = server ? g->client_max_window_bits : g->server_max_window_bits;
    p->def_reset = server ? g->server_no_context_takeover : g->client_no_context_takeover;
    p->inf_reset = server ? g->client_no_context_takeover : g->server_no_context_takeover;
    p->def_park = !p->def_reset && p->cfg->pool_streams;
    p->inf_park = !p->inf_reset && p->cfg->pool_streams;
    /* The peer never refers further back than the agreed window; zlib's inflater may
     * keep 512 bytes for an 8-bit one (it works with 9), and so does our copy. */
    p->def_win.max = 1u << p->def_bits;
    p->inf_win.max = 1u << KITE_MAX(p->inf_bits, 9);
}

static int pmd_new(const void *cfg, enum kite_role role, const struct kite_ext_offer *agreed,
                   const struct kite_allocator *a, void **inst)
{
    struct pmd *p = kite__calloc(a, sizeof(*p));
    if (!p)
        return KITE_ERR_NOMEM;
    p->cfg = cfg;
    p->a = a;
    agree(p, role, agreed);
    *inst = p;
    return KITE_OK;
}

static void pmd_free(void *inst)
{
    struct pmd *p = inst;
    zs_free(p->def);
    zs_free(p->inf);
    kite__free(p->a, p->def_win.buf);
    kite__free(p->a, p->inf_win.buf);
    kite__free(p->a, p);
}

int kite_pmd_params(const void *inst, struct kite_pmd_params *out)
{
    if (!inst)
        return KITE_ERR_INVALID;
    *out = ((const struct pmd *)inst)->agreed;
    return KITE_OK;
}

size_t kite_pmd_memory(const void *inst)
{
    const struct pmd *p = inst;
    size_t n = 0;
    if (p && p->def)
        n += p->def->bytes + sizeof(*p->def);
    if (p && p->inf)
        n += p->inf->bytes + sizeof(*p->inf);
    if (p)
        n += (size_t)p->def_win.cap + p->inf_win.cap;
    return n;
}

/* ------------------------------------------------------------------------------------
 * History windows (pool_streams)
 */

/* Room for n bytes in w (n <= w->max), growing in 512-byte steps so a window filling
 * up over many small messages is not reallocated each time. */
static int win_reserve(const struct pmd *p, struct win *w, uint32_t n)
{
    if (n <= w->cap)
        return KITE_OK;
    uint32_t cap = KITE_MIN((n + 511u) & ~511u, w->max);
    uint8_t *b = kite__realloc(p->a, w->buf, cap);
    if (!b)
        return KITE_ERR_NOMEM;
    w->buf = b;
    w->cap = cap;
    return KITE_OK;
}

/* Forget the history (the stream then starts afresh: always safe for a compressor). */
static void win_clear(const struct pmd *p, struct win *w)
{
    kite__free(p->a, w->buf);
    memset(w, 0, offsetof(struct win, max));
}

/* ------------------------------------------------------------------------------------
 * Compression (§7.2.1)
 */

static struct zs *get_deflater(struct pmd *p)
{
    if (p->def)
        return p->def;
    /* zlib's deflate cannot keep to a 256-byte window (it turns 8 into 9): with 8 bits
     * agreed, compress with Z_RLE, whose only distance is 1, inside a 9-bit stream. */
    struct zkey k = {p->a,
                     Z_KIND_DEFLATE,
                     (uint8_t)KITE_MAX(p->def_bits, 9),
                     (uint8_t)p->cfg->mem_level,
                     p->def_bits == 8 ? Z_RLE : Z_DEFAULT_STRATEGY,
                     (int8_t)p->cfg->level};
    p->def = p->def_reset || p->def_park ? zs_borrow(&k) : zs_new(&k);
    /* A parked history goes back in as a preset dictionary (allowed for raw deflate
     * right after a reset). deflate never refers further back than its window less 262
     * bytes (zlib's MAX_DIST), so the oldest bytes of a full window are left out: the
     * same references, and zlib does not clear its hash table a second time (it does
     * for a dictionary of a whole window). */
    if (p->def && p->def_park && p->def_win.len) {
        uint32_t n = KITE_MIN(p->def_win.len, (1u << k.wbits) - 262u);
        kite__pmd_primes++;
        if (deflateSetDictionary(&p->def->z, p->def_win.buf + p->def_win.len - n, n) != Z_OK) {
            zs_free(p->def);
            p->def = NULL;
        }
    }
    return p->def;
}

/* The message is sent (or failed). Without context takeover the compressor goes back
 * to the pool. With pool_streams it stays until the session is idle (pmd_idle). */
static void deflate_done(struct pmd *p, bool failed)
{
    if (failed && p->def_park) {
        /* zlib took input the peer will never see: start afresh. Forgetting our
         * history is always safe: the peer keeps its window, we just stop referring
         * to it. */
        win_clear(p, &p->def_win);
    }
    if (p->def_reset || (failed && p->def_park)) {
        zs_return(p->def);
        p->def = NULL;
    } else if (failed) {
        deflateReset(&p->def->z);
    }
}

/*
 * pool_streams: save the compressor's window as the history and give the stream back.
 * After a sync flush zlib's window ends with the last byte we sent; it holds at most
 * 2^wbits bytes and, once it has slid, at least the 2^wbits - 262 that deflate may still
 * refer to (zlib's MAX_DIST), so priming with it later gives the same references. With
 * 8 bits agreed zlib runs with 9: keep the last 256 bytes.
 */
static void park_deflater(struct pmd *p)
{
    z_stream *z = &p->def->z;
    struct win *w = &p->def_win;
    uint8_t small[512];
    uInt n = 0;
    bool ok = deflateGetDictionary(z, Z_NULL, &n) == Z_OK;
    if (ok && n > w->max) {
        ok = n <= sizeof(small) && deflateGetDictionary(z, small, &n) == Z_OK &&
             win_reserve(p, w, w->max) == KITE_OK;
        if (ok)
            memcpy(w->buf, small + n - w->max, w->max);
        n = w->max;
    } else if (ok && n) {
        ok = win_reserve(p, w, n) == KITE_OK && deflateGetDictionary(z, w->buf, &n) == Z_OK;
    }
    if (ok)
        w->len = n;
    else
        win_clear(p, w); /* out of memory: start afresh, as after a failed send */
    zs_return(p->def);
    p->def = NULL;
}

/*
 * Run the compressor at `level` from the next message on. Called between messages
 * only, where the last sync flush left nothing pending, so zlib's deflateParams has no
 * input to compress with the old level and writes nothing (checked: the bytes of the
 * stream must not change). The history stays, so context takeover is unaffected.
 */
static int deflate_level(struct zs *s, int level)
{
    if (s->cur_level == level)
        return KITE_OK;
    uint8_t none[16];
    z_stream *z = &s->z;
    z->next_in = Z_NULL;
    z->avail_in = 0;
    z->next_out = none;
    z->avail_out = sizeof(none);
    int rc = deflateParams(z, level, s->strategy);
    if (rc != Z_OK || z->avail_out != sizeof(none))
        return KITE_ERR_INVALID;
    s->cur_level = (int8_t)level;
    return KITE_OK;
}

/* Deflate all of m's payload with a sync flush into the sink. */
static int deflate_all(struct zs *s, const struct kite_ext_msg *m, struct kite_ext_sink *out)
{
    z_stream *z = &s->z;
    z->next_in = (Bytef *)(uintptr_t)m->data;
    z->avail_in = 0;
    size_t left = m->len;
    size_t step = (size_t)deflateBound(z, (uLong)KITE_MIN(m->len, (size_t)UINT32_MAX >> 1)) + 16;
    for (;;) {
        if (z->avail_in == 0 && left) {
            z->avail_in = (uInt)KITE_MIN(left, (size_t)UINT32_MAX >> 1);
            left -= z->avail_in;
        }
        uint8_t *dst = kite_ext_sink_reserve(out, step);
        if (!dst)
            return KITE_ERR_NOMEM;
        z->next_out = dst;
        z->avail_out = (uInt)step;
        int rc = deflate(z, left ? Z_NO_FLUSH : Z_SYNC_FLUSH);
        kite_ext_sink_commit(out, step - z->avail_out);
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return KITE_ERR_INVALID;
        if (z->avail_out != 0 && z->avail_in == 0 && left == 0)
            return KITE_OK;
        step = KITE_MAX(step, (size_t)4096);
    }
}

static int pmd_outgoing(void *inst, struct kite_ext_msg *m, struct kite_ext_sink *out)
{
    struct pmd *p = inst;
    const struct kite_pmd_config *c = p->cfg;
    if (m->len < c->compress_threshold ||
        (c->compress_if && !c->compress_if(m->opcode, m->data, m->len, c->compress_if_ud)))
        return KITE_EXT_PASS;
    m->rsv |= KITE_RSV1;
    /* An empty message is one byte: an empty stored block's header (§7.2.3.6). zlib
     * would refuse a second sync flush with no input in between. */
    if (m->len == 0)
        return kite_ext_sink_write(out, "", 1);
    struct zs *s = get_deflater(p);
    if (!s)
        return KITE_ERR_NOMEM;
    bool large = c->large_message_size && m->len >= c->large_message_size;
    int rc = deflate_level(s, large ? c->large_message_level : c->level);
    if (rc == KITE_OK)
        rc = deflate_all(s, m, out);
    const uint8_t *o = out->len >= 4 ? kite__ext_sink_data(out) : NULL;
    if (rc == KITE_OK && (!o || memcmp(o + out->len - 4, tail, 4) != 0))
        rc = KITE_ERR_INVALID; /* a sync flush always ends so */
    if (rc == KITE_OK)
        out->len -= 4;
    /* Without context takeover nothing ties the next message to this one, so data
     * that did not shrink can go out as it is. */
    bool as_is = rc == KITE_OK && p->def_reset && out->len >= m->len;
    deflate_done(p, rc != KITE_OK);
    if (as_is) {
        m->rsv &= (uint8_t)~KITE_RSV1;
        return KITE_EXT_PASS;
    }
    return rc;
}

/* ------------------------------------------------------------------------------------
 * Decompression (§7.2.2)
 */

static struct zs *get_inflater(struct pmd *p)
{
    if (p->inf)
        return p->inf;
    /* A 9-bit window accepts every 8-bit stream, and zlib-based peers that were asked
     * for 8 really send 9 (zlib's deflate raises it). */
    struct zkey k = {p->a, Z_KIND_INFLATE, (uint8_t)KITE_MAX(p->inf_bits, 9), 0, 0, 0};
    p->inf = p->inf_reset || p->inf_park ? zs_borrow(&k) : zs_new(&k);
    /* The parked history: raw inflate takes a dictionary at any time. */
    if (p->inf && p->inf_park && p->inf_win.len) {
        kite__pmd_primes++;
        if (inflateSetDictionary(&p->inf->z, p->inf_win.buf, p->inf_win.len) != Z_OK) {
            zs_free(p->inf);
            p->inf = NULL;
        }
    }
    return p->inf;
}

/* Bytes this message may still inflate to: the sink's room and our own limit. */
static size_t inflate_room(const struct pmd *p, const struct kite_ext_sink *out)
{
    size_t room = kite_ext_sink_room(out);
    uint64_t max = p->cfg->max_inflated_size;
    if (max) {
        uint64_t left = p->in_total >= max ? 0 : max - p->in_total;
        if (left < room)
            room = (size_t)left;
    }
    return room;
}

static int zerr(int rc)
{
    return rc == Z_MEM_ERROR ? KITE_ERR_NOMEM : KITE_ERR_PROTOCOL;
}

/*
 * Inflate `len` bytes into the sink, in steps no larger than what the limits still
 * allow plus one byte: a bomb is caught after at most limit + 1 inflated bytes.
 */
static int inflate_some(struct pmd *p, struct zs *s, const uint8_t *in, size_t len,
                        struct kite_ext_sink *out)
{
    z_stream *z = &s->z;
    z->next_in = (Bytef *)(uintptr_t)in;
    z->avail_in = (uInt)len;
    size_t step = KITE_MIN(KITE_MAX(len * 4, (size_t)STEP_MIN), (size_t)STEP_MAX);
    for (;;) {
        size_t room = inflate_room(p, out);
        size_t n = room < step ? room + 1 : step;
        uint8_t *dst = kite_ext_sink_reserve(out, n);
        if (!dst)
            return KITE_ERR_NOMEM;
        z->next_out = dst;
        z->avail_out = (uInt)n;
        int rc = inflate(z, Z_SYNC_FLUSH);
        size_t got = n - z->avail_out;
        p->in_total += got;
        if (kite_ext_sink_commit(out, got) != KITE_OK || got > room)
            return KITE_ERR_TOO_BIG;
        if (rc == Z_STREAM_END) {
            p->in_ended = true; /* what follows a final block means nothing (§7.2.3.4) */
            return KITE_OK;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return zerr(rc);
        if (z->avail_out != 0 && (z->avail_in == 0 || rc == Z_BUF_ERROR))
            return KITE_OK;
        step = KITE_MIN(step * 2, (size_t)STEP_MAX);
    }
}

/*
 * After a stream that ended with a BFINAL block, zlib must be reset to go on; with
 * context takeover the next message may still refer to this one's bytes, so the
 * window is carried over as a dictionary.
 */
static int restart_keeping_window(struct pmd *p)
{
    z_stream *z = &p->inf->z;
    uInt n = 0;
    inflateGetDictionary(z, Z_NULL, &n);
    uint8_t *win = n ? kite__malloc(p->a, n) : NULL;
    if (n && !win)
        return KITE_ERR_NOMEM;
    if (n)
        inflateGetDictionary(z, win, &n);
    int rc = inflateReset(z);
    if (rc == Z_OK && n)
        rc = inflateSetDictionary(z, win, n);
    kite__free(p->a, win);
    return rc == Z_OK ? KITE_OK : zerr(rc);
}

/* pool_streams: keep the inflater's window (what the peer may still refer to) and give
 * the stream back. On failure the stream stays: the window must not be lost. */
static int park_inflater(struct pmd *p)
{
    z_stream *z = &p->inf->z;
    uInt n = 0;
    int rc = inflateGetDictionary(z, Z_NULL, &n) == Z_OK ? KITE_OK : KITE_ERR_PROTOCOL;
    if (rc == KITE_OK && n > p->inf_win.max)
        rc = KITE_ERR_PROTOCOL; /* cannot happen: zlib's window is at most that */
    if (rc == KITE_OK)
        rc = win_reserve(p, &p->inf_win, n);
    if (rc == KITE_OK && n)
        rc = inflateGetDictionary(z, p->inf_win.buf, &n) == Z_OK ? KITE_OK : KITE_ERR_PROTOCOL;
    if (rc != KITE_OK)
        return rc;
    p->inf_win.len = n;
    zs_return(p->inf);
    p->inf = NULL;
    return KITE_OK;
}

static int message_end(struct pmd *p)
{
    p->in_on = false;
    if (!p->inf)
        return KITE_OK;
    /* pool_streams: the stream stays for the next message until the session is idle,
     * unless the message ended the deflate stream (a BFINAL block): parking then keeps
     * the window and spares zlib's restart. */
    if (p->inf_park)
        return p->in_ended ? park_inflater(p) : KITE_OK;
    if (p->inf_reset) {
        zs_return(p->inf);
        p->inf = NULL;
        return KITE_OK;
    }
    return p->in_ended ? restart_keeping_window(p) : KITE_OK;
}

static int pmd_incoming(void *inst, const struct kite_ext_chunk *in, struct kite_ext_sink *out)
{
    struct pmd *p = inst;
    if (in->first) {
        /* §6: RSV1 on the first frame marks a compressed message. */
        p->in_on = (in->rsv & KITE_RSV1) != 0;
        p->in_ended = false;
        p->in_seen = 0;
        p->in_total = 0;
    }
    if (!p->in_on)
        return KITE_EXT_PASS;
    int rc = KITE_OK;
    if (in->len && !p->in_ended) {
        struct zs *s = get_inflater(p);
        rc = s ? inflate_some(p, s, in->data, in->len, out) : KITE_ERR_NOMEM;
    }
    p->in_seen += in->len;
    /* §7.2.2: append 00 00 ff ff. An empty payload inflates to nothing: feeding the
     * tail alone would leave zlib inside a stored block's header. */
    if (rc == KITE_OK && in->last && p->in_seen && !p->in_ended)
        rc = inflate_some(p, p->inf, tail, sizeof(tail), out);
    if (rc == KITE_OK && in->last)
        rc = message_end(p);
    return rc;
}

/* ------------------------------------------------------------------------------------
 * Parking (pool_streams)
 */

/* The session is quiet (struct kite_extension.idle): park the borrowed streams. An
 * incoming message in progress keeps its inflater (its state is more than a window). If
 * the inflater's window cannot be saved (out of memory), the stream stays; the next idle
 * call tries again. */
static void pmd_idle(void *inst)
{
    struct pmd *p = inst;
    if (p->def && p->def_park)
        park_deflater(p);
    if (p->inf && p->inf_park && !p->in_on)
        (void)park_inflater(p);
}

/* ------------------------------------------------------------------------------------
 * The extension
 */

const struct kite_extension kite_ext_permessage_deflate = {
    .name = PMD_NAME,
    .rsv = KITE_RSV1, /* RFC 7692 §6 */
    .config_size = sizeof(struct kite_pmd_config),
    .config_init = config_init,
    .config_check = config_check,
    .offer = pmd_offer,
    .negotiate = pmd_negotiate,
    .client_accept = pmd_client_accept,
    .instance_new = pmd_new,
    .instance_free = pmd_free,
    .process_outgoing = pmd_outgoing,
    .process_incoming = pmd_incoming,
    .idle = pmd_idle,
};

/*
 * codec/ext — the extension machinery (RFC 6455 §9): the registry of installed
 * extensions, negotiation on top of the §9.1 header grammar (http/handshake.h), the
 * per-session chain of instances, and running messages through it. See
 * <kite/extension.h> for the model and conn_internal.h for the codec's side.
 *
 * Negotiation is not on a hot path; it favours clear code and bounded stack use. The
 * chain's processing is: one loop over the instances, with two scratch buffers that
 * only chains of two or more transforming extensions ever touch.
 */
#include "codec/conn_internal.h"
#include "http/handshake.h"

/* Scratch buffers above this size are released after use. */
#define KEEP_CAP 1024u
/* Bytes for unescaped quoted parameter values of one extension's offers. */
#define UNESCAPE_CAP 1024u

/* ------------------------------------------------------------------------------------
 * Sinks
 */

void kite__ext_sink_init(struct kite_ext_sink *s, struct kite_buf *b,
                         const struct kite_allocator *a, size_t pre, uint64_t limit)
{
    s->b = b;
    s->a = a;
    s->pre = pre;
    s->len = 0;
    s->limit = limit;
}

/*
 * Room after the buffer's live bytes, the spare `pre` bytes and the output so far.
 * kite__buf_reserve keeps only the live bytes when it moves them, so the sink grows
 * the buffer itself, keeping everything up to its end.
 */
uint8_t *kite_ext_sink_reserve(struct kite_ext_sink *s, size_t n)
{
    struct kite_buf *b = s->b;
    size_t keep = b->len + s->pre + s->len;
    if (keep < s->len || n > SIZE_MAX - keep)
        return NULL;
    size_t total = keep + n;
    if (b->cap - b->off >= total)
        return b->data + b->off + keep;
    if (b->off > 0 && b->cap >= total) {
        memmove(b->data, b->data + b->off, keep);
        b->off = 0;
        return b->data + keep;
    }
    size_t cap = b->cap ? b->cap : 64;
    while (cap < total) {
        if (cap > SIZE_MAX / 2)
            return NULL;
        cap *= 2;
    }
    uint8_t *p;
    if (b->off == 0) {
        p = kite__realloc(s->a, b->data, cap);
    } else {
        p = kite__malloc(s->a, cap);
        if (p)
            memcpy(p, b->data + b->off, keep);
        if (p)
            kite__free(s->a, b->data);
    }
    if (!p)
        return NULL;
    b->data = p;
    b->off = 0;
    b->cap = cap;
    return p + keep;
}

int kite_ext_sink_commit(struct kite_ext_sink *s, size_t n)
{
    s->len += n;
    return s->len > s->limit ? KITE_ERR_TOO_BIG : KITE_OK;
}

int kite_ext_sink_write(struct kite_ext_sink *s, const void *data, size_t n)
{
    if (n == 0)
        return KITE_OK;
    uint8_t *p = kite_ext_sink_reserve(s, n);
    if (!p)
        return KITE_ERR_NOMEM;
    memcpy(p, data, n);
    return kite_ext_sink_commit(s, n);
}

size_t kite_ext_sink_room(const struct kite_ext_sink *s)
{
    if (s->len >= s->limit)
        return 0;
    uint64_t room = s->limit - s->len;
    return room > SIZE_MAX ? SIZE_MAX : (size_t)room;
}

/* ------------------------------------------------------------------------------------
 * The registry
 */

struct entry {
    const struct kite_extension *ext;
    void *cfg; /* config_size bytes, or NULL */
};

struct kite_ext_list {
    const struct kite_allocator *a;
    struct entry *e;
    size_t n, cap;
    uint8_t rsv;
    bool raw;
};

struct kite_ext_list *kite_ext_list_new(const struct kite_allocator *a)
{
    struct kite_ext_list *l = kite__calloc(a, sizeof(*l));
    if (l)
        l->a = a;
    return l;
}

void kite_ext_list_free(struct kite_ext_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        kite__free(l->a, l->e[i].cfg);
    kite__free(l->a, l->e);
    kite__free(l->a, l);
}

static const struct entry *find_entry(const struct kite_ext_list *l,
                                      const struct kite_extension *ext)
{
    for (size_t i = 0; l && i < l->n; i++)
        if (l->e[i].ext == ext)
            return &l->e[i];
    return NULL;
}

static void *copy_config(const struct kite_ext_list *l, const struct kite_extension *ext,
                         const void *config)
{
    void *cfg = kite__calloc(l->a, ext->config_size);
    if (!cfg)
        return NULL;
    if (config)
        memcpy(cfg, config, ext->config_size);
    else if (ext->config_init)
        ext->config_init(cfg);
    return cfg;
}

int kite_ext_list_install(struct kite_ext_list *l, const struct kite_extension *ext,
                          const void *config)
{
    if (!l || !ext || !ext->name || !kite__http_is_token(ext->name, strlen(ext->name)) ||
        (ext->rsv & ~KITE_RSV_MASK))
        return KITE_ERR_INVALID;
    /* Ktor's rule: an RSV bit belongs to one extension, so two compressors (or two of
     * anything that reinterprets the same bit) cannot both be installed. */
    if (find_entry(l, ext) || (ext->rsv & l->rsv))
        return KITE_ERR_EXISTS;
    for (size_t i = 0; i < l->n; i++)
        if (kite__ieq(l->e[i].ext->name, strlen(l->e[i].ext->name), ext->name, strlen(ext->name)))
            return KITE_ERR_EXISTS;
    void *cfg = NULL;
    if (ext->config_size) {
        cfg = copy_config(l, ext, config);
        if (!cfg)
            return KITE_ERR_NOMEM;
    }
    if (ext->config_check && ext->config_check(cfg) != KITE_OK) {
        kite__free(l->a, cfg);
        return KITE_ERR_INVALID;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct entry *e = kite__realloc(l->a, l->e, cap * sizeof(*e));
        if (!e) {
            kite__free(l->a, cfg);
            return KITE_ERR_NOMEM;
        }
        l->e = e;
        l->cap = cap;
    }
    l->e[l->n].ext = ext;
    l->e[l->n].cfg = cfg;
    l->n++;
    l->rsv |= ext->rsv;
    return KITE_OK;
}

void kite_ext_list_set_raw_negotiation(struct kite_ext_list *l, bool on)
{
    l->raw = on;
}

bool kite_ext_list_raw_negotiation(const struct kite_ext_list *l)
{
    return l->raw;
}

size_t kite_ext_list_count(const struct kite_ext_list *l)
{
    return l ? l->n : 0;
}

uint8_t kite_ext_list_rsv(const struct kite_ext_list *l)
{
    return l ? l->rsv : 0;
}

void *kite_ext_list_config(const struct kite_ext_list *l, const struct kite_extension *ext)
{
    const struct entry *e = find_entry(l, ext);
    return e ? e->cfg : NULL;
}

/* Does this session negotiate at all? Raw ones only when asked (Ktor's
 * negotiateExtensions). */
static bool negotiates(const struct kite_ext_list *l, enum kite_mode mode)
{
    return l && l->n && (mode != KITE_MODE_RAW || l->raw);
}

/* ------------------------------------------------------------------------------------
 * Writers
 */

struct kite_ext_writer {
    struct kite_buf *b;
    const struct kite_allocator *a;
    const char *name; /* the extension's token */
    bool server;      /* negotiate(): the one element is opened by us */
    bool open;        /* an element is open: parameters may follow */
};

static int put(struct kite_ext_writer *w, const char *s)
{
    return kite__buf_append(w->b, w->a, s, strlen(s));
}

static int open_element(struct kite_ext_writer *w)
{
    int rc = w->b->len ? put(w, ", ") : KITE_OK;
    if (rc == KITE_OK)
        rc = put(w, w->name);
    if (rc == KITE_OK)
        w->open = true;
    return rc;
}

int kite_ext_write_offer(struct kite_ext_writer *w)
{
    return w->server ? KITE_ERR_STATE : open_element(w);
}

int kite_ext_write_param(struct kite_ext_writer *w, const char *name, const char *value)
{
    if (!w->open || !name || !kite__http_is_token(name, strlen(name)) ||
        (value && !kite__http_is_token(value, strlen(value))))
        return KITE_ERR_INVALID;
    int rc = put(w, "; ");
    if (rc == KITE_OK)
        rc = put(w, name);
    if (rc == KITE_OK && value) {
        rc = put(w, "=");
        if (rc == KITE_OK)
            rc = put(w, value);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------
 * Header elements as struct kite_ext_offer
 */

/* Where elements come from: one joined value, or the lines of a parsed head. */
struct source {
    const char *value;
    size_t len;
    const struct kite_http_header *h;
    size_t n;
};

static void source_iter(struct kite_ws_ext_iter *it, const struct source *s)
{
    if (s->h)
        kite__ws_ext_iter_headers(it, s->h, s->n);
    else
        kite__ws_ext_iter_value(it, s->value, s->value ? s->len : 0);
}

/* Is the whole source well-formed (§9.1)? */
static bool source_ok(const struct source *s)
{
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    int rc;
    source_iter(&it, s);
    while ((rc = kite__ws_ext_next(&it, &e)) == 1)
        ;
    return rc == 0;
}

/* Offers of one extension, converted, with storage for their parameters. */
struct offers {
    size_t n, np, nu;
    struct kite_ext_offer o[KITE_EXT_MAX_OFFERS];
    struct kite_ext_param p[KITE_EXT_MAX_OFFERS * KITE_EXT_MAX_PARAMS];
    char unesc[UNESCAPE_CAP];
};

/* A parameter's value without quotes and escapes; unescaping only copies when there is
 * a backslash. False when the unescape area is full. */
static bool param_value(struct offers *s, const struct kite_ws_ext_param *wp,
                        struct kite_ext_param *p)
{
    p->value = wp->value.ptr;
    p->value_len = wp->value.len;
    if (!wp->quoted || !memchr(wp->value.ptr, '\\', wp->value.len))
        return true;
    ssize_t n = kite__ws_ext_param_value(wp, s->unesc + s->nu, UNESCAPE_CAP - s->nu);
    if (n < 0)
        return false;
    p->value = s->unesc + s->nu;
    p->value_len = (size_t)n;
    s->nu += (size_t)n + 1;
    return true;
}

/* Append element `e` to `s`. False when it does not fit (it is then left out). */
static bool add_offer(struct offers *s, const struct kite_ws_ext *e)
{
    if (s->n == KITE_EXT_MAX_OFFERS || e->num_params > KITE_EXT_MAX_PARAMS)
        return false;
    size_t np = s->np, nu = s->nu;
    struct kite_ext_param *params = &s->p[np];
    for (size_t i = 0; i < e->num_params; i++) {
        const struct kite_ws_ext_param *wp = &e->params[i];
        struct kite_ext_param *p = &params[i];
        p->name = wp->name.ptr;
        p->name_len = wp->name.len;
        if (!param_value(s, wp, p)) {
            s->nu = nu;
            return false;
        }
    }
    struct kite_ext_offer *o = &s->o[s->n++];
    o->name = e->name.ptr;
    o->name_len = e->name.len;
    o->num_params = e->num_params;
    o->params = params;
    s->np = np + e->num_params;
    return true;
}

static bool name_is(const struct kite_ws_ext *e, const char *name)
{
    return kite__ieq(e->name.ptr, e->name.len, name, strlen(name));
}

/* Gather every offer of `name` in the source, in order (the client's preference). */
static void collect(const struct source *src, const char *name, struct offers *s)
{
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    s->n = s->np = s->nu = 0;
    source_iter(&it, src);
    while (kite__ws_ext_next(&it, &e) == 1)
        if (name_is(&e, name))
            add_offer(s, &e);
}

/* ------------------------------------------------------------------------------------
 * Chains
 */

struct slot {
    const struct kite_extension *ext;
    void *inst;
};

struct kite_ext_chain {
    const struct kite_allocator *a;
    char *header; /* the negotiated value (server: for the 101); NULL once adopted */
    size_t header_len;
    struct kite_buf scratch[2]; /* between transforming extensions */
    uint8_t rsv;                /* bits the extensions claim */
    uint8_t in_rsv;             /* RSV bits of the incoming message in progress */
    bool in_first;              /* its next chunk is its first */
    size_t n, cap;
    struct slot slot[];
};

static struct kite_ext_chain *chain_new(const struct kite_allocator *a, size_t cap)
{
    struct kite_ext_chain *ch = kite__calloc(a, sizeof(*ch) + cap * sizeof(struct slot));
    if (ch) {
        ch->a = a;
        ch->cap = cap;
    }
    return ch;
}

void kite_ext_chain_free(struct kite_ext_chain *ch)
{
    if (!ch)
        return;
    for (size_t i = ch->n; i-- > 0;)
        if (ch->slot[i].ext->instance_new && ch->slot[i].ext->instance_free)
            ch->slot[i].ext->instance_free(ch->slot[i].inst);
    kite__buf_free(&ch->scratch[0], ch->a);
    kite__buf_free(&ch->scratch[1], ch->a);
    kite__free(ch->a, ch->header);
    kite__free(ch->a, ch);
}

/* Create the instance of entry `en` from the agreed element and append it. */
static int chain_add(struct kite_ext_chain *ch, const struct entry *en, enum kite_role role,
                     const struct kite_ext_offer *agreed)
{
    void *inst = en->cfg;
    if (en->ext->instance_new) {
        inst = NULL;
        int rc = en->ext->instance_new(en->cfg, role, agreed, ch->a, &inst);
        if (rc != KITE_OK)
            return rc < 0 ? rc : KITE_ERR_CALLBACK;
    }
    ch->slot[ch->n].ext = en->ext;
    ch->slot[ch->n].inst = inst;
    ch->n++;
    ch->rsv |= en->ext->rsv;
    return KITE_OK;
}

const char *kite_ext_chain_header(const struct kite_ext_chain *ch, size_t *len)
{
    if (len)
        *len = ch && ch->header ? ch->header_len : 0;
    return ch && ch->header ? ch->header : "";
}

void *kite_ext_chain_get(const struct kite_ext_chain *ch, const struct kite_extension *ext)
{
    for (size_t i = 0; ch && i < ch->n; i++)
        if (ch->slot[i].ext == ext)
            return ch->slot[i].inst;
    return NULL;
}

size_t kite_ext_chain_count(const struct kite_ext_chain *ch)
{
    return ch ? ch->n : 0;
}

const struct kite_extension *kite_ext_chain_at(const struct kite_ext_chain *ch, size_t i,
                                               void **inst)
{
    if (!ch || i >= ch->n)
        return NULL;
    if (inst)
        *inst = ch->slot[i].inst;
    return ch->slot[i].ext;
}

uint8_t kite__ext_chain_rsv(const struct kite_ext_chain *ch)
{
    return ch->rsv;
}

void kite__ext_chain_adopt(struct kite_ext_chain *ch)
{
    kite__free(ch->a, ch->header);
    ch->header = NULL;
    ch->header_len = 0;
}

/* ------------------------------------------------------------------------------------
 * Server: negotiate
 */

/* Offer the installed extension `en` whatever the client offered of it. On acceptance
 * its response element stays in `text`; on decline the text is rolled back. Returns
 * KITE_OK (accepted), KITE_EXT_DECLINE, or KITE_ERR_NOMEM. */
static int negotiate_one(const struct entry *en, const struct source *src, struct kite_buf *text,
                         const struct kite_allocator *a, struct offers *set)
{
    collect(src, en->ext->name, set);
    if (set->n == 0)
        return KITE_EXT_DECLINE;
    size_t mark = text->len;
    struct kite_ext_writer w = {text, a, en->ext->name, true, false};
    int rc = open_element(&w);
    if (rc == KITE_OK && en->ext->negotiate)
        rc = en->ext->negotiate(en->cfg, set->o, set->n, &w);
    if (rc == KITE_OK)
        return KITE_OK;
    text->len = mark;
    /* A negotiate() that fails for any reason but memory just declines: the handshake
     * goes on without the extension. */
    return rc == KITE_ERR_NOMEM ? rc : KITE_EXT_DECLINE;
}

/* Build the server's chain from the accepted elements in `text`, which are in the same
 * order as `accepted` (indexes into the registry). */
static int server_chain(const struct kite_ext_list *l, const size_t *accepted, size_t n,
                        struct kite_buf *text, const struct kite_allocator *a,
                        struct kite_ext_chain **out)
{
    struct kite_ext_chain *ch = chain_new(a, n);
    if (!ch)
        return KITE_ERR_NOMEM;
    struct source src = {(const char *)text->data, text->len, NULL, 0};
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    struct offers *set = kite__malloc(a, sizeof(*set));
    int rc = set ? KITE_OK : KITE_ERR_NOMEM;
    source_iter(&it, &src);
    for (size_t i = 0; rc == KITE_OK && i < n; i++) {
        set->n = set->np = set->nu = 0;
        if (kite__ws_ext_next(&it, &e) != 1 || !add_offer(set, &e))
            rc = KITE_ERR_INVALID; /* cannot happen: we wrote this text */
        else
            rc = chain_add(ch, &l->e[accepted[i]], KITE_ROLE_SERVER, &set->o[0]);
    }
    kite__free(a, set);
    if (rc != KITE_OK) {
        kite_ext_chain_free(ch);
        return rc;
    }
    ch->header = (char *)text->data; /* NUL-terminated by the caller */
    ch->header_len = text->len;
    memset(text, 0, sizeof(*text));
    *out = ch;
    return KITE_OK;
}

static int negotiate_source(const struct kite_ext_list *l, enum kite_mode mode,
                            const struct source *src, const struct kite_allocator *a,
                            struct kite_ext_chain **out)
{
    *out = NULL;
    if (!source_ok(src))
        return KITE_ERR_HANDSHAKE;
    if (!negotiates(l, mode))
        return KITE_OK;
    size_t *accepted = kite__malloc(a, l->n * sizeof(size_t));
    struct offers *set = kite__malloc(a, sizeof(*set));
    struct kite_buf text = {0};
    size_t n = 0;
    int rc = accepted && set ? KITE_OK : KITE_ERR_NOMEM;
    /* Install order decides the order of the response, which is the order of
     * application (RFC 6455 §9.1). */
    for (size_t i = 0; rc == KITE_OK && i < l->n; i++) {
        int r = negotiate_one(&l->e[i], src, &text, a, set);
        if (r == KITE_OK)
            accepted[n++] = i;
        else if (r < 0)
            rc = r;
    }
    kite__free(a, set);
    if (rc == KITE_OK && n > 0)
        rc = kite__buf_append(&text, a, "", 1);
    if (rc == KITE_OK && n > 0) {
        text.len--; /* keep the NUL outside the length */
        rc = server_chain(l, accepted, n, &text, a, out);
    }
    kite__buf_free(&text, a);
    kite__free(a, accepted);
    return rc;
}

int kite_ext_negotiate(const struct kite_ext_list *l, enum kite_mode mode, const char *offer,
                       size_t len, const struct kite_allocator *a, struct kite_ext_chain **out)
{
    struct source src = {offer, len, NULL, 0};
    return negotiate_source(l, mode, &src, a, out);
}

int kite__ext_negotiate_headers(const struct kite_ext_list *l, enum kite_mode mode,
                                const struct kite_http_header *h, size_t n,
                                const struct kite_allocator *a, struct kite_ext_chain **out)
{
    struct source src = {NULL, 0, h, n};
    return negotiate_source(l, mode, &src, a, out);
}

/* ------------------------------------------------------------------------------------
 * Client: offer and accept
 */

int kite__ext_offer_buf(const struct kite_ext_list *l, enum kite_mode mode, struct kite_buf *out,
                        const struct kite_allocator *a)
{
    if (!negotiates(l, mode))
        return KITE_OK;
    size_t mark = out->len;
    for (size_t i = 0; i < l->n; i++) {
        const struct kite_extension *ext = l->e[i].ext;
        struct kite_ext_writer w = {out, a, ext->name, false, false};
        int rc = ext->offer ? ext->offer(l->e[i].cfg, &w) : open_element(&w);
        if (rc != KITE_OK) {
            out->len = mark;
            return rc < 0 ? rc : KITE_ERR_CALLBACK;
        }
    }
    return KITE_OK;
}

ssize_t kite_ext_offer(const struct kite_ext_list *l, enum kite_mode mode, char *buf, size_t cap)
{
    const struct kite_allocator *a = l ? l->a : NULL;
    struct kite_buf b = {0};
    int rc = kite__ext_offer_buf(l, mode, &b, a);
    if (rc != KITE_OK) {
        kite__buf_free(&b, a);
        return rc;
    }
    size_t n = b.len;
    if (cap) {
        size_t k = KITE_MIN(n, cap - 1);
        if (k)
            memcpy(buf, b.data, k);
        buf[k] = '\0';
    }
    kite__buf_free(&b, a);
    return (ssize_t)n;
}

static const struct entry *entry_named(const struct kite_ext_list *l, const struct kite_ws_ext *e)
{
    for (size_t i = 0; i < l->n; i++)
        if (name_is(e, l->e[i].ext->name))
            return &l->e[i];
    return NULL;
}

/* Did our offer name this extension? (An offer() may offer nothing.) */
static int was_offered(const struct kite_ext_list *l, enum kite_mode mode,
                       const struct kite_ws_ext *e, const struct kite_allocator *a)
{
    struct kite_buf b = {0};
    int rc = kite__ext_offer_buf(l, mode, &b, a);
    if (rc == KITE_OK) {
        struct source src = {(const char *)b.data, b.len, NULL, 0};
        struct kite_ws_ext_iter it;
        struct kite_ws_ext o;
        rc = KITE_ERR_HANDSHAKE;
        source_iter(&it, &src);
        while (rc != KITE_OK && kite__ws_ext_next(&it, &o) == 1)
            if (kite__ieq(o.name.ptr, o.name.len, e->name.ptr, e->name.len))
                rc = KITE_OK;
    }
    kite__buf_free(&b, a);
    return rc;
}

/* §4.1 item 5 and each extension's own rules: is the response element acceptable? */
static int check_element(const struct kite_ext_list *l, enum kite_mode mode,
                         const struct kite_ws_ext *e, bool *seen, struct offers *set,
                         const struct kite_allocator *a)
{
    const struct entry *en = entry_named(l, e);
    if (!en || seen[en - l->e])
        return KITE_ERR_HANDSHAKE; /* not offered, or accepted twice */
    seen[en - l->e] = true;
    int rc = was_offered(l, mode, e, a);
    if (rc != KITE_OK)
        return rc;
    set->n = set->np = set->nu = 0;
    if (!add_offer(set, e))
        return KITE_ERR_HANDSHAKE;
    if (en->ext->client_accept && en->ext->client_accept(en->cfg, &set->o[0]) != KITE_OK)
        return KITE_ERR_HANDSHAKE;
    return KITE_OK;
}

static int client_chain(const struct kite_ext_list *l, const struct source *src, size_t n,
                        struct offers *set, const struct kite_allocator *a,
                        struct kite_ext_chain **out)
{
    struct kite_ext_chain *ch = chain_new(a, n);
    if (!ch)
        return KITE_ERR_NOMEM;
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    int rc = KITE_OK;
    source_iter(&it, src);
    /* The server's order is the order of application (RFC 6455 §9.1). */
    while (rc == KITE_OK && kite__ws_ext_next(&it, &e) == 1) {
        set->n = set->np = set->nu = 0;
        add_offer(set, &e); /* fitted in check_element */
        rc = chain_add(ch, entry_named(l, &e), KITE_ROLE_CLIENT, &set->o[0]);
    }
    if (rc != KITE_OK) {
        kite_ext_chain_free(ch);
        return rc;
    }
    *out = ch;
    return KITE_OK;
}

static int accept_source(const struct kite_ext_list *l, enum kite_mode mode,
                         const struct source *src, const struct kite_allocator *a,
                         struct kite_ext_chain **out)
{
    *out = NULL;
    struct kite_ws_ext_iter it;
    struct kite_ws_ext e;
    size_t n = 0;
    if (!source_ok(src))
        return KITE_ERR_HANDSHAKE;
    source_iter(&it, src);
    if (kite__ws_ext_next(&it, &e) != 1)
        return KITE_OK; /* nothing accepted */
    if (!negotiates(l, mode))
        return KITE_ERR_HANDSHAKE; /* we offered nothing */
    bool *seen = kite__calloc(a, l->n * sizeof(bool));
    struct offers *set = kite__malloc(a, sizeof(*set));
    int rc = seen && set ? KITE_OK : KITE_ERR_NOMEM;
    source_iter(&it, src);
    while (rc == KITE_OK && kite__ws_ext_next(&it, &e) == 1) {
        rc = check_element(l, mode, &e, seen, set, a);
        n++;
    }
    if (rc == KITE_OK)
        rc = client_chain(l, src, n, set, a, out);
    kite__free(a, set);
    kite__free(a, seen);
    return rc;
}

int kite_ext_accept(const struct kite_ext_list *l, enum kite_mode mode, const char *response,
                    size_t len, const struct kite_allocator *a, struct kite_ext_chain **out)
{
    struct source src = {response, len, NULL, 0};
    return accept_source(l, mode, &src, a, out);
}

int kite__ext_accept_headers(const struct kite_ext_list *l, enum kite_mode mode,
                             const struct kite_http_header *h, size_t n,
                             const struct kite_allocator *a, struct kite_ext_chain **out)
{
    struct source src = {NULL, 0, h, n};
    return accept_source(l, mode, &src, a, out);
}

/* ------------------------------------------------------------------------------------
 * Processing
 */

/* A sink on scratch buffer k, emptied first. */
static struct kite_ext_sink *scratch_sink(struct kite_ext_chain *ch, unsigned k,
                                          struct kite_ext_sink *s, uint64_t limit)
{
    ch->scratch[k].off = 0;
    ch->scratch[k].len = 0;
    kite__ext_sink_init(s, &ch->scratch[k], ch->a, 0, limit);
    return s;
}

static void release_scratch(struct kite_ext_chain *ch)
{
    for (unsigned k = 0; k < 2; k++)
        if (ch->scratch[k].cap > KEEP_CAP)
            kite__buf_free(&ch->scratch[k], ch->a);
}

static const uint8_t *sink_bytes(const struct kite_ext_sink *s)
{
    return s->len ? kite__ext_sink_data(s) : (const uint8_t *)"";
}

/* An extension's result as the chain reports it: positive codes other than PASS are
 * a misbehaving extension. */
static int ext_error(int rc)
{
    return rc < 0 ? rc : KITE_ERR_CALLBACK;
}

int kite__ext_outgoing(struct kite_ext_chain *ch, struct kite_ext_msg *m,
                       struct kite_ext_sink *final, enum kite__ext_where *where)
{
    unsigned k = 0;
    *where = KITE__EXT_PASSED;
    for (size_t i = 0; i < ch->n; i++) {
        const struct kite_extension *ext = ch->slot[i].ext;
        if (!ext->process_outgoing)
            continue;
        bool last = i + 1 == ch->n;
        struct kite_ext_sink tmp;
        struct kite_ext_sink *s = last ? final : scratch_sink(ch, k, &tmp, UINT64_MAX);
        s->len = 0;
        int rc = ext->process_outgoing(ch->slot[i].inst, m, s);
        if (rc == KITE_EXT_PASS) {
            s->len = 0;
            continue;
        }
        if (rc != KITE_OK)
            return ext_error(rc);
        if (last) {
            *where = KITE__EXT_IN_SINK;
        } else {
            m->data = sink_bytes(s);
            m->len = s->len;
            *where = KITE__EXT_SCRATCH;
            k ^= 1u;
        }
    }
    if (*where != KITE__EXT_SCRATCH)
        release_scratch(ch);
    return KITE_OK;
}

void kite__ext_in_start(struct kite_ext_chain *ch, uint8_t rsv)
{
    ch->in_rsv = rsv;
    ch->in_first = true;
}

int kite__ext_incoming(struct kite_ext_chain *ch, const uint8_t *data, size_t len, bool last,
                       enum kite_opcode op, struct kite_ext_sink *final,
                       enum kite__ext_where *where, const uint8_t **out, size_t *out_len)
{
    struct kite_ext_chunk c = {op, ch->in_rsv, ch->in_first, last, data, len};
    unsigned k = 0;
    ch->in_first = false;
    *where = KITE__EXT_PASSED;
    *out = data;
    *out_len = len;
    /* Reverse install order: the first installed is the last to see incoming data. */
    for (size_t i = ch->n; i-- > 0;) {
        const struct kite_extension *ext = ch->slot[i].ext;
        if (!ext->process_incoming)
            continue;
        struct kite_ext_sink tmp;
        struct kite_ext_sink *s = i == 0 ? final : scratch_sink(ch, k, &tmp, final->limit);
        s->len = 0;
        int rc = ext->process_incoming(ch->slot[i].inst, &c, s);
        if (rc == KITE_EXT_PASS) {
            s->len = 0;
            continue;
        }
        if (rc != KITE_OK)
            return ext_error(rc);
        if (i == 0) {
            *where = KITE__EXT_IN_SINK;
        } else {
            c.data = sink_bytes(s);
            c.len = s->len;
            *out = c.data;
            *out_len = c.len;
            *where = KITE__EXT_SCRATCH;
            k ^= 1u;
        }
    }
    if (*where != KITE__EXT_SCRATCH)
        release_scratch(ch);
    return KITE_OK;
}

void kite__ext_release(struct kite_ext_chain *ch)
{
    release_scratch(ch);
}

void kite__ext_idle(struct kite_ext_chain *ch)
{
    for (size_t i = 0; i < ch->n; i++)
        if (ch->slot[i].ext->idle)
            ch->slot[i].ext->idle(ch->slot[i].inst);
}

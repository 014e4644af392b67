/* Route patterns, lookup with precedence, and the 404/405/426 decision (router.h). */
#include "server/router.h"

enum seg_kind {
    SEG_REST = 0,  /* {name...}: lowest precedence */
    SEG_WILD = 1,  /* * */
    SEG_PARAM = 2, /* {name} */
    SEG_LIT = 3,   /* literal: highest */
};

void kite__router_init(struct kite__router *r, const struct kite_allocator *a)
{
    memset(r, 0, sizeof(*r));
    r->alloc = a;
}

void kite__router_free(struct kite__router *r)
{
    for (size_t i = 0; i < r->count; i++) {
        kite__free(r->alloc, r->entries[i].pattern);
        kite__free(r->alloc, r->entries[i].segs);
    }
    kite__free(r->alloc, r->entries);
    r->entries = NULL;
    r->count = r->cap = 0;
}

/* Classify one pattern segment [s, s+len) into *seg; -1 when malformed. */
static int parse_seg(const char *base, size_t s, size_t len, bool last, struct kite__seg *seg)
{
    const char *p = base + s;
    if (len == 1 && p[0] == '*') {
        *seg = (struct kite__seg){.kind = SEG_WILD};
        return 0;
    }
    if (len == 0 || p[0] != '{') {
        for (size_t i = 0; i < len; i++)
            if (p[i] == '{' || p[i] == '}')
                return -1;
        *seg = (struct kite__seg){.kind = SEG_LIT, .off = (uint16_t)s, .len = (uint16_t)len};
        return 0;
    }
    if (len < 3 || p[len - 1] != '}')
        return -1;
    size_t nlen = len - 2;
    uint8_t kind = SEG_PARAM;
    if (nlen > 3 && memcmp(p + 1 + nlen - 3, "...", 3) == 0) {
        if (!last)
            return -1;
        kind = SEG_REST;
        nlen -= 3;
    }
    for (size_t i = 0; i < nlen; i++)
        if (p[1 + i] == '{' || p[1 + i] == '}' || p[1 + i] == '.')
            return -1;
    *seg = (struct kite__seg){.kind = kind, .off = (uint16_t)(s + 1), .len = (uint16_t)nlen};
    return 0;
}

/* Split a pattern into segments. "/" has none; "/a/" has "a" and "". */
static int parse_pattern(const char *pat, size_t plen, struct kite__seg *segs, uint16_t *nsegs)
{
    if (plen == 0 || pat[0] != '/' || plen > UINT16_MAX)
        return KITE_ERR_INVALID;
    size_t n = 0, nparams = 0;
    size_t i = 1;
    if (plen == 1) {
        *nsegs = 0;
        return KITE_OK;
    }
    while (i <= plen) {
        size_t j = i;
        while (j < plen && pat[j] != '/')
            j++;
        if (n == KITE__ROUTE_MAX_SEGS)
            return KITE_ERR_INVALID;
        if (parse_seg(pat, i, j - i, j >= plen, &segs[n]) < 0)
            return KITE_ERR_INVALID;
        if (segs[n].kind == SEG_PARAM || segs[n].kind == SEG_REST)
            nparams++;
        n++;
        i = j + 1;
    }
    if (nparams > KITE__ROUTE_MAX_PARAMS)
        return KITE_ERR_INVALID;
    *nsegs = (uint16_t)n;
    return KITE_OK;
}

/* Same pattern up to parameter names? */
static bool same_shape(const struct kite__route_entry *e, const char *pat,
                       const struct kite__seg *segs, uint16_t n)
{
    if (e->nsegs != n)
        return false;
    for (uint16_t i = 0; i < n; i++) {
        if (e->segs[i].kind != segs[i].kind)
            return false;
        if (segs[i].kind == SEG_LIT &&
            (e->segs[i].len != segs[i].len ||
             memcmp(e->pattern + e->segs[i].off, pat + segs[i].off, segs[i].len) != 0))
            return false;
    }
    return true;
}

int kite__router_add(struct kite__router *r, const char *pattern, enum kite__route_kind kind,
                     void *target)
{
    if (!pattern || (kind != KITE__ROUTE_HTTP && kind != KITE__ROUTE_WS))
        return KITE_ERR_INVALID;
    struct kite__seg segs[KITE__ROUTE_MAX_SEGS];
    uint16_t n = 0;
    size_t plen = strlen(pattern);
    int rc = parse_pattern(pattern, plen, segs, &n);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < r->count; i++)
        if (r->entries[i].kind == kind && same_shape(&r->entries[i], pattern, segs, n))
            return KITE_ERR_EXISTS;
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        void *p = kite__realloc(r->alloc, r->entries, cap * sizeof(*r->entries));
        if (!p)
            return KITE_ERR_NOMEM;
        r->entries = p;
        r->cap = cap;
    }
    struct kite__route_entry *e = &r->entries[r->count];
    e->pattern = kite__malloc(r->alloc, plen + 1);
    e->segs = kite__malloc(r->alloc, (n ? n : 1) * sizeof(*segs));
    if (!e->pattern || !e->segs) {
        kite__free(r->alloc, e->pattern);
        kite__free(r->alloc, e->segs);
        return KITE_ERR_NOMEM;
    }
    memcpy(e->pattern, pattern, plen + 1);
    memcpy(e->segs, segs, n * sizeof(*segs));
    e->nsegs = n;
    e->kind = (uint8_t)kind;
    e->target = target;
    r->count++;
    return KITE_OK;
}

/* A path split into segment views. */
struct path_segs {
    size_t n;
    bool too_many;
    const char *p[KITE__ROUTE_MAX_SEGS + 1];
    size_t len[KITE__ROUTE_MAX_SEGS + 1];
    size_t rest_off[KITE__ROUTE_MAX_SEGS + 1]; /* offset of the segment in the path */
};

static void split_path(const char *path, size_t len, struct path_segs *ps)
{
    ps->n = 0;
    ps->too_many = false;
    if (len <= 1)
        return;
    size_t i = 1;
    while (i <= len) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        if (ps->n == KITE__ROUTE_MAX_SEGS + 1) {
            ps->too_many = true; /* only a {rest...} can still match */
            return;
        }
        ps->p[ps->n] = path + i;
        ps->len[ps->n] = j - i;
        ps->rest_off[ps->n] = i;
        ps->n++;
        i = j + 1;
    }
}

/* Does entry e match? Fills captured params into m when it does. */
static bool entry_matches(const struct kite__route_entry *e, const char *path, size_t plen,
                          const struct path_segs *ps, struct kite__route_match *m)
{
    size_t np = 0;
    for (uint16_t i = 0; i < e->nsegs; i++) {
        const struct kite__seg *s = &e->segs[i];
        if (s->kind == SEG_REST) {
            const char *v = i < ps->n ? ps->p[i] : path + plen;
            size_t vlen = (size_t)(path + plen - v);
            m->params[np++] = (struct kite__param){e->pattern + s->off, s->len, v, vlen};
            m->nparams = np;
            return true;
        }
        if (i >= ps->n)
            return false;
        if (s->kind == SEG_LIT) {
            if (ps->len[i] != s->len || memcmp(ps->p[i], e->pattern + s->off, s->len) != 0)
                return false;
        } else if (ps->len[i] == 0) {
            return false; /* {param} and * need a non-empty segment */
        } else if (s->kind == SEG_PARAM) {
            m->params[np++] =
                (struct kite__param){e->pattern + s->off, s->len, ps->p[i], ps->len[i]};
        }
    }
    if (ps->too_many || e->nsegs != ps->n)
        return false;
    m->nparams = np;
    return true;
}

/* Is a more specific than b (both match the same path)? See router.h. */
static bool more_specific(const struct kite__route_entry *a, const struct kite__route_entry *b)
{
    uint16_t n = KITE_MIN(a->nsegs, b->nsegs);
    for (uint16_t i = 0; i < n; i++)
        if (a->segs[i].kind != b->segs[i].kind)
            return a->segs[i].kind > b->segs[i].kind;
    /* One ends in {rest...} where the other ends: the shorter (exact) one wins. */
    return a->nsegs < b->nsegs;
}

bool kite__router_match(const struct kite__router *r, const char *path, size_t len,
                        enum kite__route_kind kind, struct kite__route_match *m)
{
    struct path_segs ps;
    struct kite__route_match tmp;
    split_path(path, len, &ps);
    m->entry = NULL;
    m->nparams = 0;
    m->allow = NULL;
    for (size_t i = 0; i < r->count; i++) {
        const struct kite__route_entry *e = &r->entries[i];
        if (e->kind != kind)
            continue;
        tmp.nparams = 0;
        if (!entry_matches(e, path, len, &ps, &tmp))
            continue;
        if (m->entry && !more_specific(e, m->entry))
            continue;
        m->entry = e;
        m->nparams = tmp.nparams;
        memcpy(m->params, tmp.params, tmp.nparams * sizeof(tmp.params[0]));
    }
    return m->entry != NULL;
}

static bool method_is(const char *m, size_t mlen, const char *want)
{
    size_t n = strlen(want);
    return mlen == n && memcmp(m, want, n) == 0; /* methods are case-sensitive (RFC 7230 §3.1.1) */
}

int kite__router_resolve(const struct kite__router *r, const char *method, size_t mlen,
                         const char *path, size_t plen, bool upgrade, struct kite__route_match *m)
{
    bool get = method_is(method, mlen, "GET");
    bool head = method_is(method, mlen, "HEAD");
    struct kite__route_match ws;
    bool have_ws = kite__router_match(r, path, plen, KITE__ROUTE_WS, &ws);
    bool have_http = kite__router_match(r, path, plen, KITE__ROUTE_HTTP, m);

    if (upgrade && have_ws) {
        *m = ws;
        if (get)
            return 0;
        m->allow = have_http ? "GET, HEAD" : "GET";
        return 405;
    }
    if (have_http) {
        if (get || head)
            return 0;
        m->allow = "GET, HEAD";
        return 405;
    }
    if (have_ws) {
        *m = ws;
        if (get)
            return 426;
        m->allow = "GET";
        return 405;
    }
    m->entry = NULL;
    return 404;
}

bool kite__route_param(const struct kite__route_match *m, const char *name, size_t nlen,
                       const char **value, size_t *vlen)
{
    for (size_t i = 0; i < m->nparams; i++) {
        if (m->params[i].name_len == nlen && memcmp(m->params[i].name, name, nlen) == 0) {
            *value = m->params[i].value;
            *vlen = m->params[i].value_len;
            return true;
        }
    }
    return false;
}

/*
 * server/router — path patterns, route lookup and the HTTP status a request gets when
 * no route fits. Plain data, no I/O: unit-tested without a loop (tests/unit/test_router.c).
 *
 * Patterns are absolute paths made of '/'-separated segments:
 *   literal     "/chat"          matches exactly that segment (byte-wise, case-sensitive)
 *   {name}      "/chat/{room}"   matches one non-empty segment and captures it
 *   a bare *    matches one non-empty segment, not captured
 *   {name...}   "/static/{path...}" (last segment only) matches the rest of the path,
 *               possibly empty, and captures it without the leading '/'
 * Matching is on the raw (still percent-encoded) path; captured values are raw too.
 *
 * Precedence when several patterns match a path: compare segment by segment, left to
 * right; at the first difference literal > {param} > * > {rest...}. If one pattern is
 * a prefix of the other in that order (only possible with {rest...}), the one that
 * ends without a catch-all wins. So "/chat/lobby" beats "/chat/{room}", which beats
 * "/chat/{rest...}". Two patterns that differ only in parameter names are the same
 * pattern: adding it twice for the same kind fails with KITE_ERR_EXISTS.
 */
#ifndef KITE_SERVER_ROUTER_H
#define KITE_SERVER_ROUTER_H

#include "util/util.h"

#define KITE__ROUTE_MAX_PARAMS 8
#define KITE__ROUTE_MAX_SEGS 32

/* A route's kind. A path may have one route of each kind: an HTTP page and a
 * WebSocket endpoint can share "/". */
enum kite__route_kind {
    KITE__ROUTE_HTTP = 1, /* plain GET/HEAD handler */
    KITE__ROUTE_WS = 2,   /* WebSocket upgrade */
};

/* One parsed pattern segment. */
struct kite__seg {
    uint8_t kind; /* enum in router.c: literal, param, wildcard, rest */
    uint16_t off; /* literal text or parameter name: offset into the pattern copy */
    uint16_t len;
};

struct kite__route_entry {
    char *pattern;          /* owned copy, NUL-terminated */
    struct kite__seg *segs; /* owned */
    uint16_t nsegs;
    uint8_t kind; /* enum kite__route_kind */
    void *target; /* the caller's route object; not owned */
};

struct kite__router {
    const struct kite_allocator *alloc; /* borrowed */
    struct kite__route_entry *entries;  /* owned array */
    size_t count;
    size_t cap;
};

/* One captured path parameter: views into the pattern (name) and the path (value). */
struct kite__param {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct kite__route_match {
    const struct kite__route_entry *entry; /* NULL when nothing matched */
    size_t nparams;
    struct kite__param params[KITE__ROUTE_MAX_PARAMS];
    const char *allow; /* for 405: the value of the Allow header (static string) */
};

void kite__router_init(struct kite__router *r, const struct kite_allocator *a);
void kite__router_free(struct kite__router *r);

/*
 * Add a route. `pattern` is copied; `target` is stored as is. Returns KITE_OK,
 * KITE_ERR_INVALID (not starting with '/', an empty or unterminated {}, a {rest...}
 * that is not last, more than KITE__ROUTE_MAX_SEGS segments or _MAX_PARAMS params),
 * KITE_ERR_EXISTS (same pattern and kind already there) or KITE_ERR_NOMEM.
 */
int kite__router_add(struct kite__router *r, const char *pattern, enum kite__route_kind kind,
                     void *target);

/* Find the best route of `kind` for the raw path (no query). Fills *m and returns true
 * when one matched; false (m->entry NULL) otherwise. */
bool kite__router_match(const struct kite__router *r, const char *path, size_t len,
                        enum kite__route_kind kind, struct kite__route_match *m);

/*
 * Decide what a request gets. `upgrade` says the request asks for a WebSocket upgrade
 * (Upgrade: websocket). Returns 0 with m->entry set (its kind says WS or HTTP), or the
 * HTTP status to answer:
 *   404  no route of either kind matches the path;
 *   405  the path exists but not for this method (m->allow holds the Allow value):
 *        WebSocket routes take GET only (RFC 6455 §4.1), plain routes GET and HEAD;
 *   426  a plain request reached a path that only has a WebSocket route
 *        (RFC 7231 §6.5.15: the client must upgrade).
 * An upgrade request to a path with only a plain route is served by the plain route:
 * a server may ignore Upgrade (RFC 7230 §6.7), and the client's handshake then fails.
 */
int kite__router_resolve(const struct kite__router *r, const char *method, size_t mlen,
                         const char *path, size_t plen, bool upgrade, struct kite__route_match *m);

/* Find a captured parameter by name. */
bool kite__route_param(const struct kite__route_match *m, const char *name, size_t nlen,
                       const char **value, size_t *vlen);

#endif

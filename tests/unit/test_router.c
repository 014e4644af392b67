/* Router: patterns, parameters, precedence, query strings and the 404/405/426 decision. */
#include "server/router.h"
#include "test.h"

static int t1, t2, t3, t4;

static bool match(struct kite__router *r, const char *path, enum kite__route_kind k,
                  struct kite__route_match *m)
{
    return kite__router_match(r, path, strlen(path), k, m);
}

static void expect_param(const struct kite__route_match *m, const char *name, const char *want)
{
    const char *v;
    size_t vlen;
    ASSERT(kite__route_param(m, name, strlen(name), &v, &vlen));
    ASSERT_EQ(vlen, strlen(want));
    ASSERT_MEMEQ(v, want, vlen);
}

TEST(router_literal_and_root)
{
    struct kite__router r;
    struct kite__route_match m;
    kite__router_init(&r, NULL);
    ASSERT_EQ(kite__router_add(&r, "/", KITE__ROUTE_HTTP, &t1), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/echo", KITE__ROUTE_WS, &t2), KITE_OK);
    ASSERT(match(&r, "/", KITE__ROUTE_HTTP, &m));
    ASSERT(m.entry->target == &t1);
    ASSERT(!match(&r, "/", KITE__ROUTE_WS, &m));
    ASSERT(match(&r, "/echo", KITE__ROUTE_WS, &m));
    ASSERT(m.entry->target == &t2);
    ASSERT_EQ(m.nparams, 0);
    ASSERT(!match(&r, "/echo/", KITE__ROUTE_WS, &m)); /* trailing slash is a different path */
    ASSERT(!match(&r, "/Echo", KITE__ROUTE_WS, &m));  /* paths are case-sensitive */
    ASSERT(!match(&r, "/echoes", KITE__ROUTE_WS, &m));
    kite__router_free(&r);
}

TEST(router_params)
{
    struct kite__router r;
    struct kite__route_match m;
    kite__router_init(&r, NULL);
    ASSERT_EQ(kite__router_add(&r, "/chat/{room}", KITE__ROUTE_WS, &t1), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/u/{user}/post/{id}", KITE__ROUTE_HTTP, &t2), KITE_OK);
    ASSERT(match(&r, "/chat/lobby", KITE__ROUTE_WS, &m));
    expect_param(&m, "room", "lobby");
    ASSERT(!match(&r, "/chat/", KITE__ROUTE_WS, &m)); /* a param needs a non-empty segment */
    ASSERT(!match(&r, "/chat", KITE__ROUTE_WS, &m));
    ASSERT(!match(&r, "/chat/a/b", KITE__ROUTE_WS, &m));
    ASSERT(match(&r, "/u/ann/post/42", KITE__ROUTE_HTTP, &m));
    ASSERT_EQ(m.nparams, 2);
    expect_param(&m, "user", "ann");
    expect_param(&m, "id", "42");
    const char *v;
    size_t vlen;
    ASSERT(!kite__route_param(&m, "nope", 4, &v, &vlen));
    /* Values stay percent-encoded; kite__url_decode turns them into bytes. */
    ASSERT(match(&r, "/chat/my%20room", KITE__ROUTE_WS, &m));
    expect_param(&m, "room", "my%20room");
    kite__router_free(&r);
}

TEST(router_rest_and_wildcard)
{
    struct kite__router r;
    struct kite__route_match m;
    kite__router_init(&r, NULL);
    ASSERT_EQ(kite__router_add(&r, "/static/{path...}", KITE__ROUTE_HTTP, &t1), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/a/*/c", KITE__ROUTE_HTTP, &t2), KITE_OK);
    ASSERT(match(&r, "/static/css/site.css", KITE__ROUTE_HTTP, &m));
    expect_param(&m, "path", "css/site.css");
    ASSERT(match(&r, "/static", KITE__ROUTE_HTTP, &m)); /* the rest may be empty */
    expect_param(&m, "path", "");
    ASSERT(match(&r, "/a/b/c", KITE__ROUTE_HTTP, &m));
    ASSERT(m.entry->target == &t2);
    ASSERT_EQ(m.nparams, 0);
    ASSERT(!match(&r, "/a//c", KITE__ROUTE_HTTP, &m));
    kite__router_free(&r);
}

TEST(router_precedence)
{
    struct kite__router r;
    struct kite__route_match m;
    kite__router_init(&r, NULL);
    /* Registered least specific first, so order of registration cannot be what wins. */
    ASSERT_EQ(kite__router_add(&r, "/chat/{rest...}", KITE__ROUTE_WS, &t1), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/chat/*", KITE__ROUTE_WS, &t2), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/chat/{room}", KITE__ROUTE_WS, &t3), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/chat/lobby", KITE__ROUTE_WS, &t4), KITE_OK);
    ASSERT(match(&r, "/chat/lobby", KITE__ROUTE_WS, &m));
    ASSERT(m.entry->target == &t4);
    ASSERT(match(&r, "/chat/other", KITE__ROUTE_WS, &m));
    ASSERT(m.entry->target == &t3);
    expect_param(&m, "room", "other");
    ASSERT(match(&r, "/chat/a/b", KITE__ROUTE_WS, &m));
    ASSERT(m.entry->target == &t1);
    ASSERT(match(&r, "/chat", KITE__ROUTE_WS, &m));
    ASSERT(m.entry->target == &t1);
    /* Left-most difference decides: literal first segment beats a param first segment. */
    ASSERT_EQ(kite__router_add(&r, "/{x}/lobby", KITE__ROUTE_WS, &t1), KITE_OK);
    ASSERT(match(&r, "/chat/lobby", KITE__ROUTE_WS, &m));
    ASSERT(m.entry->target == &t4);
    ASSERT(match(&r, "/room/lobby", KITE__ROUTE_WS, &m));
    expect_param(&m, "x", "room");
    kite__router_free(&r);
}

TEST(router_rejects_bad_and_duplicate_patterns)
{
    struct kite__router r;
    kite__router_init(&r, NULL);
    ASSERT_EQ(kite__router_add(&r, "", KITE__ROUTE_WS, &t1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__router_add(&r, "chat", KITE__ROUTE_WS, &t1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__router_add(&r, "/{}", KITE__ROUTE_WS, &t1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__router_add(&r, "/{room", KITE__ROUTE_WS, &t1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__router_add(&r, "/a{b}", KITE__ROUTE_WS, &t1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__router_add(&r, "/{rest...}/x", KITE__ROUTE_WS, &t1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__router_add(&r, "/x", 7, &t1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__router_add(&r, "/chat/{room}", KITE__ROUTE_WS, &t1), KITE_OK);
    /* Same shape, other parameter name: the same pattern. */
    ASSERT_EQ(kite__router_add(&r, "/chat/{name}", KITE__ROUTE_WS, &t2), KITE_ERR_EXISTS);
    /* The same pattern may have one route of each kind. */
    ASSERT_EQ(kite__router_add(&r, "/chat/{room}", KITE__ROUTE_HTTP, &t2), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", KITE__ROUTE_WS, &t1),
              KITE_ERR_INVALID);
    ASSERT_EQ(r.count, 2);
    kite__router_free(&r);
}

static int resolve(struct kite__router *r, const char *method, const char *path, bool up,
                   struct kite__route_match *m)
{
    return kite__router_resolve(r, method, strlen(method), path, strlen(path), up, m);
}

TEST(router_resolve_statuses)
{
    struct kite__router r;
    struct kite__route_match m;
    kite__router_init(&r, NULL);
    ASSERT_EQ(kite__router_add(&r, "/", KITE__ROUTE_HTTP, &t1), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/echo", KITE__ROUTE_WS, &t2), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/both", KITE__ROUTE_WS, &t3), KITE_OK);
    ASSERT_EQ(kite__router_add(&r, "/both", KITE__ROUTE_HTTP, &t4), KITE_OK);

    ASSERT_EQ(resolve(&r, "GET", "/echo", true, &m), 0);
    ASSERT(m.entry->target == &t2);
    ASSERT_EQ(resolve(&r, "GET", "/", false, &m), 0);
    ASSERT(m.entry->target == &t1);
    ASSERT_EQ(resolve(&r, "HEAD", "/", false, &m), 0);
    ASSERT_EQ(resolve(&r, "GET", "/nope", true, &m), 404);
    ASSERT_EQ(resolve(&r, "GET", "/nope", false, &m), 404);
    ASSERT(m.entry == NULL);
    /* RFC 6455 §4.1: the opening handshake is a GET. */
    ASSERT_EQ(resolve(&r, "POST", "/echo", true, &m), 405);
    ASSERT_STREQ(m.allow, "GET");
    ASSERT_EQ(resolve(&r, "POST", "/", false, &m), 405);
    ASSERT_STREQ(m.allow, "GET, HEAD");
    ASSERT_EQ(resolve(&r, "get", "/", false, &m), 405); /* methods are case-sensitive */
    /* RFC 7231 §6.5.15: a plain GET to a WebSocket-only path needs an upgrade. */
    ASSERT_EQ(resolve(&r, "GET", "/echo", false, &m), 426);
    ASSERT(m.entry->target == &t2);
    ASSERT_EQ(resolve(&r, "DELETE", "/echo", false, &m), 405);
    /* A shared path: the upgrade goes to the WebSocket route, a plain GET to the page. */
    ASSERT_EQ(resolve(&r, "GET", "/both", true, &m), 0);
    ASSERT(m.entry->target == &t3);
    ASSERT_EQ(resolve(&r, "GET", "/both", false, &m), 0);
    ASSERT(m.entry->target == &t4);
    /* RFC 7230 §6.7: an upgrade to a page-only path is served as a plain request. */
    ASSERT_EQ(resolve(&r, "GET", "/", true, &m), 0);
    ASSERT(m.entry->target == &t1);
    kite__router_free(&r);
}

TEST(router_oom_leaves_router_usable)
{
    struct kite_test_alloc st;
    memset(&st, 0, sizeof(st));
    const struct kite_allocator *a = kite_test_allocator(&st);
    struct kite__router r;
    for (long fail = 1; fail <= 3; fail++) {
        memset(&st, 0, sizeof(st));
        st.fail_at = fail;
        kite__router_init(&r, a);
        ASSERT_EQ(kite__router_add(&r, "/a/{b}", KITE__ROUTE_WS, &t1), KITE_ERR_NOMEM);
        ASSERT_EQ(r.count, 0);
        ASSERT_EQ(kite__router_add(&r, "/a/{b}", KITE__ROUTE_WS, &t1), KITE_OK);
        kite__router_free(&r);
        ASSERT_EQ(st.live, 0);
    }
}

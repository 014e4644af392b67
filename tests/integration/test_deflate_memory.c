/*
 * permessage-deflate memory on a running server (DESIGN §5: "compression memory is a
 * choice"): what a session holds between messages for each way of keeping context,
 * that the per-thread pool stays small, and that everything the app allocated,
 * zlib's pooled streams included, is given back when it stops.
 */
#include <stdatomic.h>

#include "codec/pmd.h" /* KITE__PMD_POOL_MAX */
#include "test_deflate_kit.h"

#define PMD "permessage-deflate"

/* A thread-safe counting allocator (the loop thread allocates, the test thread frees
 * the app). */
static atomic_long g_live, g_calls;

union hdr {
    size_t n;
    max_align_t align;
};

static void *m_malloc(size_t n, void *ud)
{
    (void)ud;
    union hdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->n = n;
    atomic_fetch_add(&g_live, (long)n);
    atomic_fetch_add(&g_calls, 1);
    return h + 1;
}

static void m_free(void *p, void *ud)
{
    (void)ud;
    if (!p)
        return;
    union hdr *h = (union hdr *)p - 1;
    atomic_fetch_sub(&g_live, (long)h->n);
    free(h);
}

static void *m_realloc(void *p, size_t n, void *ud)
{
    void *q = m_malloc(n, ud);
    if (q && p) {
        union hdr *h = (union hdr *)p - 1;
        memcpy(q, p, h->n < n ? h->n : n);
        m_free(p, ud);
    }
    return q;
}

static const struct kite_allocator counting = {m_malloc, m_realloc, m_free, NULL};

/* A server with one route per preset: /balanced, /speed, /memory. */
static void start(struct ts *t, const struct kite_allocator *a, struct kite_ext_list *lists[3])
{
    struct kite_app_options o;
    ts_options(&o);
    o.allocator = a;
    t->app = kite_app_new(&o);
    ASSERT(t->app != NULL);
    static const char *const paths[3] = {"/balanced", "/speed", "/memory"};
    static const enum kite_pmd_preset pre[3] = {KITE_PMD_BALANCED, KITE_PMD_SPEED, KITE_PMD_MEMORY};
    for (int i = 0; i < 3; i++) {
        struct kite_pmd_config cfg;
        kite_pmd_config_preset(&cfg, pre[i]);
        lists[i] = kite_ext_list_new(a);
        ASSERT(lists[i] != NULL);
        ASSERT_EQ(kite_ext_list_install(lists[i], &kite_ext_permessage_deflate, &cfg), KITE_OK);
        struct kite_route *r = kite_route_ws_callbacks(t->app, paths[i], &dapp_callbacks, NULL);
        ASSERT(r != NULL);
        ASSERT_EQ(kite_route_set_extensions(r, lists[i]), KITE_OK);
    }
    ts_start(t);
}

/* Ask the server what this session's permessage-deflate instance holds. */
static size_t pmd_mem(struct dz *d)
{
    dz_frame(d, KITE_OP_TEXT, true, 0, "cmd:pmdmem", 10);
    struct dz_msg m;
    ASSERT_EQ(dz_next(d, &m, 3000), 1);
    size_t v = (size_t)strtoull((const char *)m.data, NULL, 10);
    free(m.data);
    return v;
}

static size_t pool_count(struct dz *d)
{
    dz_frame(d, KITE_OP_TEXT, true, 0, "cmd:pool", 8);
    struct dz_msg m;
    ASSERT_EQ(dz_next(d, &m, 3000), 1);
    size_t v = (size_t)strtoull((const char *)m.data, NULL, 10);
    free(m.data);
    return v;
}

static size_t round512(size_t n)
{
    return (n + 511) & ~(size_t)511;
}

/*
 * Between messages (the memory a session keeps for its life):
 *   balanced (context takeover, pooled streams): no zlib state, only each direction's
 *     history: after one message of n bytes each way, n bytes per direction (in 512-byte
 *     steps); after many, at most the 13-bit window, 8 KiB per direction;
 *   speed (kept streams): zlib's state, sized by its 15-bit windows and memLevel 8;
 *   memory (no context takeover): nothing at all.
 * The loop thread's pool holds at most KITE__PMD_POOL_MAX idle streams, whatever the
 * number of sessions.
 */
TEST(what_a_session_holds_between_messages)
{
    struct ts t = {0};
    struct kite_ext_list *lists[3];
    start(&t, NULL, lists);
    enum { N = 12 };
    struct dz *d[3][N];
    static char msg[12000];
    size_t n = dk_json(msg, 1000, 1);
    static const char *const paths[3] = {"/balanced", "/speed", "/memory"};
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < N; i++) {
            d[p][i] = dz_open(t.port, paths[p], PMD "; client_max_window_bits");
            ASSERT(d[p][i]->on);
            ASSERT_EQ(pmd_mem(d[p][i]), 0); /* nothing before the first message */
            dz_send_z(d[p][i], KITE_OP_TEXT, msg, n, 1);
            DZ_EXPECT(d[p][i], KITE_OP_TEXT, msg, n, NULL);
        }
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(pmd_mem(d[0][i]), 2 * round512(n));
        size_t kept = pmd_mem(d[1][i]);
        ASSERT(kept > (1u << 15) + (1u << 17)); /* inflate 32K + deflate 128K and more */
        ASSERT_EQ(pmd_mem(d[2][i]), 0);
    }
    size_t pooled = pool_count(d[0][0]);
    ASSERT(pooled >= 1 && pooled <= KITE__PMD_POOL_MAX);
    /* Many more messages: the history is capped by the window. */
    for (unsigned k = 0; k < 30; k++) {
        size_t len = dk_json(msg, 1000 + k * 300, k);
        dz_send_z(d[0][0], KITE_OP_BINARY, msg, len, 2);
        DZ_EXPECT(d[0][0], KITE_OP_BINARY, msg, len, NULL);
    }
    ASSERT_EQ(pmd_mem(d[0][0]), 2 * 8192);
    printf("# balanced: %zu bytes after one message of %zu; speed: %zu; pool: %zu streams\n",
           2 * round512(n), n, pmd_mem(d[1][0]), pooled);
    for (int p = 0; p < 3; p++)
        for (int i = 0; i < N; i++)
            dz_free(d[p][i]);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
    for (int i = 0; i < 3; i++)
        kite_ext_list_free(lists[i]);
}

/*
 * Teardown: after compressed traffic on every kind of route, stopping and freeing the
 * app gives back every byte it allocated through its allocator: sessions, instances,
 * histories, and the zlib streams the loop thread kept in its pool (kite_app_run()
 * trims it before returning, on the loop's thread).
 */
TEST(everything_is_given_back_at_teardown)
{
    atomic_store(&g_live, 0);
    struct ts t = {0};
    struct kite_ext_list *lists[3];
    start(&t, &counting, lists);
    static const char *const paths[3] = {"/balanced", "/speed", "/memory"};
    static char msg[8000];
    for (int p = 0; p < 3; p++) {
        for (int i = 0; i < 4; i++) {
            struct dz *d = dz_open(t.port, paths[p], PMD "; client_max_window_bits");
            ASSERT(d->on);
            size_t n = dk_json(msg, 2000 + (size_t)i * 1500, (unsigned)i);
            dz_send_z(d, KITE_OP_TEXT, msg, n, 1 + (unsigned)i);
            DZ_EXPECT(d, KITE_OP_TEXT, msg, n, NULL);
            if (i % 2)
                dz_free(d); /* dropped without a close */
            else {
                ASSERT(pool_count(d) <= KITE__PMD_POOL_MAX);
                dz_free(d);
            }
        }
    }
    ASSERT(atomic_load(&g_calls) > 0);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
    for (int i = 0; i < 3; i++)
        kite_ext_list_free(lists[i]);
    ASSERT_EQ(atomic_load(&g_live), 0);
}

/*
 * permessage-deflate (RFC 7692) on the server, end to end over loopback:
 *   - negotiation outcomes in the 101, always within what the client offered (§7.1);
 *   - the server API: app and route registries, install order, raw routes;
 *   - kite client <-> kite server with every preset: text, binary, empty, incompressible,
 *     many messages with context takeover;
 *   - against an independent zlib client (test_deflate_kit.h): fragmented compressed
 *     messages, empty compressed payloads, context takeover on the wire, the
 *     decompression-bomb limit (1009), RSV1 where it is not allowed (1002).
 */
#include "test_client_kit.h"
#include "test_deflate_kit.h"

#define PMD "permessage-deflate"

/* A server with permessage-deflate installed app-wide (`cfg` NULL: balanced) on "/z",
 * a route with the app's registry, and the server kit's echo on "/plain" with none. */
static struct kite_route *g_plain;

static void start_server(struct ts *t, const struct kite_pmd_config *cfg, uint64_t max_msg)
{
    struct kite_app_options o;
    ts_options(&o);
    if (max_msg)
        o.ws.max_message_size = max_msg;
    t->app = kite_app_new(&o);
    ASSERT(t->app != NULL);
    ASSERT_EQ(kite_app_install_extension(t->app, &kite_ext_permessage_deflate, cfg), KITE_OK);
    ASSERT(kite_route_ws_callbacks(t->app, "/z", &dapp_callbacks, NULL) != NULL);
    g_plain = kite_route_ws_callbacks(t->app, "/plain", &dapp_callbacks, NULL);
    ASSERT(g_plain != NULL);
    ASSERT_EQ(kite_route_set_extensions(g_plain, NULL), KITE_OK);
    ts_start(t);
}

/* ---- negotiation ------------------------------------------------------------------------- */

/* Open with `offer`; return the 101's Sec-WebSocket-Extensions in out (the connection is
 * closed again). Checks the answer is within the offer (RFC 7692 §7.1). */
static void answer_for(uint16_t port, const char *path, const char *offer, char *out, size_t cap)
{
    struct dz *d = dz_open(port, path, offer);
    if (d->t->status != 101)
        kite_test_fail(__FILE__, __LINE__, "offer '%s': status %d", offer, d->t->status);
    snprintf(out, cap, "%s", d->ext);
    struct ext_elem o[EXT_MAX], a[EXT_MAX];
    size_t no = ext_parse(offer, o, EXT_MAX), na = ext_parse(out, a, EXT_MAX);
    for (size_t k = 0; k < na; k++) {
        /* every extension in the answer was offered (RFC 6455 §9.1), once */
        const char *why = "not offered";
        for (size_t i = 0; i < no && why; i++)
            if (strcmp(o[i].name, a[k].name) == 0)
                why = NULL;
        for (size_t j = 0; j < k && !why; j++)
            if (strcmp(a[j].name, a[k].name) == 0)
                why = "answered twice";
        /* permessage-deflate answers one of its offers within its limits */
        if (!why && strcmp(a[k].name, PMD) == 0) {
            why = "no offer it fits";
            for (size_t i = 0; i < no && why; i++)
                if (strcmp(o[i].name, PMD) == 0)
                    why = ext_within(&o[i], &a[k]);
        }
        if (why)
            kite_test_fail(__FILE__, __LINE__, "offer '%s', answer '%s': %s", offer, out, why);
    }
    dz_free(d);
}

/* RFC 7692 §7.1: the server's answer for the balanced preset (13-bit windows, context
 * takeover), offer by offer. */
TEST(negotiation_outcomes_in_the_101)
{
    struct ts t = {0};
    start_server(&t, NULL, 0);
    static const struct {
        const char *offer, *answer;
    } cases[] = {
        /* §7.1.2.1: a server may announce a smaller window than the client's 15 */
        {PMD, PMD "; server_max_window_bits=13"},
        /* §7.1.2.2: client_max_window_bits only when offered */
        {PMD "; client_max_window_bits",
         PMD "; server_max_window_bits=13; client_max_window_bits=13"},
        {PMD "; client_max_window_bits=10",
         PMD "; server_max_window_bits=13; client_max_window_bits=10"},
        {PMD "; server_max_window_bits=10", PMD "; server_max_window_bits=10"},
        {PMD "; server_max_window_bits=15; client_max_window_bits=15",
         PMD "; server_max_window_bits=13; client_max_window_bits=13"},
        /* §7.1.1.1: asked for, so given */
        {PMD "; server_no_context_takeover",
         PMD "; server_no_context_takeover; server_max_window_bits=13"},
        /* §7.1.1.2: a hint the server echoes (binding the client) */
        {PMD "; client_no_context_takeover",
         PMD "; client_no_context_takeover; server_max_window_bits=13"},
        /* §7.1: an unacceptable offer is skipped, the next one taken */
        {PMD "; server_max_window_bits=16, " PMD, PMD "; server_max_window_bits=13"},
        {PMD "; x=1, " PMD "; client_max_window_bits",
         PMD "; server_max_window_bits=13; client_max_window_bits=13"},
        {PMD "; server_max_window_bits=08, " PMD "; server_max_window_bits=9",
         PMD "; server_max_window_bits=9"},
        /* none acceptable: no extension, still a 101 */
        {PMD "; server_max_window_bits", ""},
        {PMD "; client_no_context_takeover=1", ""},
        {PMD "; server_max_window_bits=12; server_max_window_bits=12", ""},
        /* unknown extensions are ignored */
        {"x-webkit-deflate-frame, " PMD, PMD "; server_max_window_bits=13"},
        {"x-unknown", ""},
    };
    char got[512];
    for (size_t i = 0; i < KIT_LEN(cases); i++) {
        answer_for(t.port, "/z", cases[i].offer, got, sizeof(got));
        if (strcmp(got, cases[i].answer) != 0)
            kite_test_fail(__FILE__, __LINE__, "offer '%s': answer '%s', want '%s'", cases[i].offer,
                           got, cases[i].answer);
    }
    /* No offer: no header. A route without extensions answers none whatever is
     * offered. */
    answer_for(t.port, "/z", NULL, got, sizeof(got));
    ASSERT_STREQ(got, "");
    answer_for(t.port, "/plain", PMD, got, sizeof(got));
    ASSERT_STREQ(got, "");
    /* The server's view of the agreement (kite_session_extension + kite_pmd_params). */
    ASSERT_REC("open /z pmd s=13 c=10;", 2000);
    ASSERT_REC("open /z pmd s=10 c=15;", 2000);
    ASSERT_REC("open /z pmd s=13 c=15 snct;", 2000);
    ASSERT_REC("open /z pmd s=13 c=15 cnct;", 2000);
    ASSERT_REC("open /z none;", 2000);
    ASSERT_REC("open /plain none;", 2000);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* §7.1: whatever the server's settings, every answer stays within the offer it
 * answers. Each preset against a set of offers. */
TEST(answers_stay_within_the_offer_for_every_preset)
{
    static const char *const offers[] = {
        PMD,
        PMD "; client_max_window_bits",
        PMD "; client_max_window_bits=9",
        PMD "; server_max_window_bits=9; client_max_window_bits=9",
        PMD "; server_max_window_bits=11; server_no_context_takeover",
        PMD "; client_no_context_takeover; client_max_window_bits=12",
        PMD "; server_max_window_bits=14, " PMD,
    };
    for (int pre = KITE_PMD_BALANCED; pre <= KITE_PMD_MAX_RATIO; pre++) {
        struct kite_pmd_config cfg;
        ASSERT_EQ(kite_pmd_config_preset(&cfg, (enum kite_pmd_preset)pre), KITE_OK);
        struct ts t = {0};
        start_server(&t, &cfg, 0);
        char got[512];
        for (size_t i = 0; i < KIT_LEN(offers); i++) {
            answer_for(t.port, "/z", offers[i], got, sizeof(got));
            ASSERT(strncmp(got, PMD, strlen(PMD)) == 0); /* always accepted */
            /* memory: no context takeover either way, in every answer (§7.1.1) */
            if (pre == KITE_PMD_MEMORY)
                ASSERT(strstr(got, "server_no_context_takeover") &&
                       strstr(got, "client_no_context_takeover"));
        }
        ASSERT_EQ(ts_stop(&t), KITE_OK);
    }
}

/* RFC 6455 §9.1: a Sec-WebSocket-Extensions value that breaks the grammar is a bad
 * request, with or without extensions installed. */
TEST(malformed_extension_header_is_400)
{
    struct ts t = {0};
    start_server(&t, NULL, 0);
    static const char *const bad[] = {PMD ";;", PMD "; a=\"unterminated", PMD "; =1", PMD "; a b"};
    for (size_t i = 0; i < KIT_LEN(bad); i++) {
        struct dz *d = dz_open(t.port, "/z", bad[i]);
        if (d->t->status != 400)
            kite_test_fail(__FILE__, __LINE__, "'%s': status %d", bad[i], d->t->status);
        dz_free(d);
        d = dz_open(t.port, "/plain", bad[i]);
        ASSERT_EQ(d->t->status, 400);
        dz_free(d);
    }
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* ---- the server API ---------------------------------------------------------------------- */

/* Two stand-in extensions: all defaults (accept the first offer, no parameters, pass
 * data through). x-second claims RSV2, x-rsv1 claims RSV1 like permessage-deflate. */
static const struct kite_extension x_first = {.name = "x-first"};
static const struct kite_extension x_second = {.name = "x-second", .rsv = KITE_RSV2};
static const struct kite_extension x_rsv1 = {.name = "x-rsv1", .rsv = KITE_RSV1};

static void on_raw_frame_echo(struct kite_session *s, const struct kite_frame *f, void *ud)
{
    (void)ud;
    if (f->opcode == KITE_OP_CLOSE)
        kite_session_close(s, KITE_CLOSE_NORMAL, NULL);
    else if (f->opcode == KITE_OP_TEXT || f->opcode == KITE_OP_BINARY)
        kite_session_send_frame(s, f->opcode, f->fin, f->rsv, f->data, f->len, NULL);
}

static void raw_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)ud;
    (void)req;
    struct kite_pmd_params p;
    bool on = kite_pmd_params(kite_session_extension(s, &kite_ext_permessage_deflate), &p) == 0;
    rec_add("raw open %s;", on ? "pmd" : "none");
}

static const struct kite_ws_callbacks raw_cb = {.on_open = raw_open, .on_frame = on_raw_frame_echo};

static void page_handler(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)req;
    (void)res;
    (void)ud;
}

/* RFC 6455 §9.1: the answer lists accepted extensions in the server's (install) order,
 * whatever order the client offered them in; registries follow the documented rules. */
TEST(install_order_and_registry_rules)
{
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {0};
    t.app = kite_app_new(&o);
    ASSERT(t.app != NULL);
    /* errors first */
    ASSERT_EQ(kite_app_install_extension(NULL, &x_first, NULL), KITE_ERR_INVALID);
    ASSERT_EQ(kite_app_install_extension(t.app, NULL, NULL), KITE_ERR_INVALID);
    ASSERT_EQ(kite_app_install_extension(t.app, &x_first, NULL), KITE_OK);
    ASSERT_EQ(kite_app_install_extension(t.app, &x_first, NULL), KITE_ERR_EXISTS);
    ASSERT_EQ(kite_app_install_extension(t.app, &kite_ext_permessage_deflate, NULL), KITE_OK);
    /* RSV1 is permessage-deflate's now (Ktor: one extension per RSV bit) */
    ASSERT_EQ(kite_app_install_extension(t.app, &x_rsv1, NULL), KITE_ERR_EXISTS);
    struct kite_pmd_config bad;
    kite_pmd_config_init(&bad);
    bad.server_max_window_bits = 16;
    ASSERT_EQ(kite_app_install_extension(t.app, &x_second, NULL), KITE_OK);
    struct kite_route *z = kite_route_ws_callbacks(t.app, "/z", &dapp_callbacks, NULL);
    struct kite_route *own = kite_route_ws_callbacks(t.app, "/own", &dapp_callbacks, NULL);
    struct kite_route *raw = kite_route_ws_raw_callbacks(t.app, "/raw", &raw_cb, NULL);
    struct kite_route *page = kite_route_get(t.app, "/page", page_handler, NULL);
    ASSERT(z && own && raw && page);
    ASSERT_EQ(kite_route_set_extensions(page, NULL), KITE_ERR_INVALID); /* not a WebSocket route */
    /* a route's own registry: only permessage-deflate, with a config it checks */
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT(l != NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &bad), KITE_ERR_INVALID);
    struct kite_pmd_config speed;
    kite_pmd_config_preset(&speed, KITE_PMD_SPEED);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &speed), KITE_OK);
    ASSERT_EQ(kite_route_set_extensions(own, l), KITE_OK);
    ASSERT_EQ(kite_route_set_extensions(NULL, l), KITE_ERR_INVALID);
    ts_start(&t);

    char got[512];
    answer_for(t.port, "/z", "x-second, " PMD ", x-first", got, sizeof(got));
    ASSERT_STREQ(got, "x-first, " PMD "; server_max_window_bits=13, x-second");
    answer_for(t.port, "/z", "x-second", got, sizeof(got));
    ASSERT_STREQ(got, "x-second");
    answer_for(t.port, "/own", "x-first, " PMD, got, sizeof(got));
    ASSERT_STREQ(got, PMD); /* speed: 15-bit windows, nothing to announce */
    /* raw routes: not without raw negotiation (Ktor's negotiateExtensions) */
    answer_for(t.port, "/raw", PMD, got, sizeof(got));
    ASSERT_STREQ(got, "");
    ASSERT_REC("raw open none;", 2000);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
    kite_ext_list_free(l);
}

/* A registry given with kite_app_set_extensions; installing into the app is then
 * refused (KITE_ERR_STATE). Raw routes negotiate when the registry asks, and then see
 * compressed frames as they are (RSV1 set), echoing them untouched. */
TEST(app_registry_and_raw_negotiation)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT(l != NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_OK);
    kite_ext_list_set_raw_negotiation(l, true);
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {0};
    t.app = kite_app_new(&o);
    ASSERT(t.app != NULL);
    ASSERT_EQ(kite_app_set_extensions(NULL, l), KITE_ERR_INVALID);
    ASSERT_EQ(kite_app_set_extensions(t.app, l), KITE_OK);
    ASSERT_EQ(kite_app_install_extension(t.app, &x_first, NULL), KITE_ERR_STATE);
    ASSERT(kite_route_ws_raw_callbacks(t.app, "/raw", &raw_cb, NULL) != NULL);
    ts_start(&t);
    struct dz *d = dz_open(t.port, "/raw", PMD "; client_max_window_bits");
    ASSERT_EQ(d->t->status, 101);
    ASSERT(d->on);
    ASSERT_REC("raw open pmd;", 2000);
    /* The raw route echoes the frame as it came: still compressed, RSV1 set; our own
     * inflater (the client's stream, same window) reads it. */
    char msg[2000];
    size_t n = dk_json(msg, sizeof(msg), 3);
    size_t zn;
    uint8_t *z = dz_deflate(d, msg, n, &zn);
    dz_frame(d, KITE_OP_TEXT, true, KITE_RSV1, z, zn);
    struct dz_frame f;
    ASSERT_EQ(dz_next_frame(d, &f, 3000), 1);
    ASSERT_EQ(f.rsv, KITE_RSV1);
    ASSERT_EQ(f.len, zn);
    ASSERT_MEMEQ(f.data, z, zn);
    free(f.data);
    free(z);
    dz_free(d);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
    kite_ext_list_free(l);
}

/* ---- kite client <-> kite server ----------------------------------------------------------- */

struct kc {
    struct kite_session *s;
    bool opened, closed, failed;
    struct kite_close_info ci;
    unsigned got, bad; /* echoes received; echoes that differed */
    unsigned next;     /* index of the next expected echo */
    struct kite_pmd_params params;
    bool has_params;
};

static struct kc g_kc;

/* The messages of the exchange: index i says type, size and content. */
static size_t kc_message(unsigned i, uint8_t *buf, size_t cap, enum kite_opcode *op)
{
    switch (i % 5) {
    case 0: /* JSON-like text, similar from one to the next */
        *op = KITE_OP_TEXT;
        return dk_json((char *)buf, 200 + (size_t)(i * 37) % 3000, i);
    case 1: /* an empty message, of either type */
        *op = (i / 5) % 2 ? KITE_OP_TEXT : KITE_OP_BINARY;
        return 0;
    case 2: /* incompressible binary */
        *op = KITE_OP_BINARY;
        dk_random(buf, 100 + (size_t)(i * 113) % 20000, i);
        return 100 + (size_t)(i * 113) % 20000;
    case 3: /* a short text, under the compression threshold */
        *op = KITE_OP_TEXT;
        return (size_t)snprintf((char *)buf, cap, "hello %u", i);
    default: /* large and very compressible binary */
        *op = KITE_OP_BINARY;
        memset(buf, (int)(i & 0xff), 60000);
        return 60000;
    }
}

static uint8_t g_kc_buf[70000];

static void kc_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    (void)req;
    (void)ud;
    g_kc.s = s;
    g_kc.opened = true;
    g_kc.has_params = kite_pmd_params(kite_session_extension(s, &kite_ext_permessage_deflate),
                                      &g_kc.params) == KITE_OK;
}

static void kc_message_cb(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)s;
    (void)ud;
    enum kite_opcode op;
    size_t n = kc_message(g_kc.next++, g_kc_buf, sizeof(g_kc_buf), &op);
    if (m->type != op || m->len != n || (n && memcmp(m->data, g_kc_buf, n) != 0))
        g_kc.bad++;
    g_kc.got++;
}

static void kc_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    (void)s;
    (void)ud;
    g_kc.ci = *ci;
    g_kc.closed = true;
    g_kc.s = NULL;
}

static void kc_failed(struct kite_client *c, const struct kite_connect_error *e, void *ud)
{
    (void)c;
    (void)ud;
    printf("# connect error: %s\n", e->message);
    g_kc.failed = true;
}

static const struct kite_ws_callbacks kc_callbacks = {
    .on_open = kc_open, .on_message = kc_message_cb, .on_close = kc_close};

/* Connect the kite client to port/path offering permessage-deflate with `cfg`. */
static struct kite_loop *kc_connect(uint16_t port, const char *path,
                                    const struct kite_ext_list *exts)
{
    memset(&g_kc, 0, sizeof(g_kc));
    struct kite_loop *loop;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    struct kite_client_options o;
    kite_client_options_init(&o);
    o.extensions = exts;
    o.on_connect_error = kc_failed;
    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u%s", (unsigned)port, path);
    ASSERT_EQ(kite_connect(loop, url, &o, &kc_callbacks, NULL, NULL), KITE_OK);
    ASSERT(CO_RUN_UNTIL(loop, g_kc.opened || g_kc.failed, 5000));
    ASSERT(g_kc.opened);
    return loop;
}

static void kc_finish(struct kite_loop *loop)
{
    if (g_kc.s)
        kite_session_close(g_kc.s, KITE_CLOSE_NORMAL, "done");
    ASSERT(CO_RUN_UNTIL(loop, g_kc.closed, 5000));
    co_settle(loop, 20);
    kite_loop_free(loop);
    kite_pmd_pool_trim(); /* this thread's pool: the client's streams */
}

/* Send messages [0, n) from the kite client, pipelined in windows of 8, and wait for
 * every echo. */
static void kc_exchange(struct kite_loop *loop, unsigned n)
{
    unsigned sent = 0;
    while (g_kc.got < n && !g_kc.closed) {
        while (sent < n && sent < g_kc.got + 8) {
            enum kite_opcode op;
            size_t len = kc_message(sent++, g_kc_buf, sizeof(g_kc_buf), &op);
            int rc = kite_session_send(g_kc.s, op, g_kc_buf, len, NULL);
            ASSERT(rc == KITE_SEND_OK || rc == KITE_SEND_QUEUED);
        }
        unsigned before = g_kc.got;
        ASSERT(CO_RUN_UNTIL(loop, g_kc.got > before || g_kc.closed, 5000));
    }
    ASSERT(!g_kc.closed);
    ASSERT_EQ(g_kc.got, n);
    ASSERT_EQ(g_kc.bad, 0);
}

/* The kite client and the kite server, both with the same preset: text and binary,
 * empty messages, incompressible data, messages under the threshold, and 150 messages
 * through the same compression contexts (context takeover, RFC 7692 §7.2.3.3). Both
 * ends see the same agreement. */
TEST(kite_client_and_server_every_preset)
{
    for (int pre = KITE_PMD_BALANCED; pre <= KITE_PMD_MAX_RATIO; pre++) {
        struct kite_pmd_config cfg;
        ASSERT_EQ(kite_pmd_config_preset(&cfg, (enum kite_pmd_preset)pre), KITE_OK);
        struct ts t = {0};
        start_server(&t, &cfg, 0);
        struct kite_ext_list *l = kite_ext_list_new(NULL);
        ASSERT(l != NULL);
        ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &cfg), KITE_OK);
        struct kite_loop *loop = kc_connect(t.port, "/z", l);
        ASSERT(g_kc.has_params);
        char want[64];
        snprintf(want, sizeof(want), "open /z pmd s=%u c=%u%s%s;",
                 (unsigned)g_kc.params.server_max_window_bits,
                 (unsigned)g_kc.params.client_max_window_bits,
                 g_kc.params.server_no_context_takeover ? " snct" : "",
                 g_kc.params.client_no_context_takeover ? " cnct" : "");
        ASSERT_REC(want, 2000);
        ASSERT_EQ(g_kc.params.server_max_window_bits, cfg.server_max_window_bits);
        ASSERT_EQ(g_kc.params.server_no_context_takeover, pre == KITE_PMD_MEMORY);
        kc_exchange(loop, 150);
        kc_finish(loop);
        ASSERT_EQ(g_kc.ci.code, KITE_CLOSE_NORMAL);
        ASSERT(g_kc.ci.clean);
        ASSERT_EQ(ts_stop(&t), KITE_OK);
        kite_ext_list_free(l);
    }
}

/* A client that offers nothing, against a server with permessage-deflate: no
 * extension, plain frames; and a client that offers it to a route without any. */
TEST(kite_client_without_agreement)
{
    struct ts t = {0};
    start_server(&t, NULL, 0);
    struct kite_loop *loop = kc_connect(t.port, "/z", NULL);
    ASSERT(!g_kc.has_params);
    kc_exchange(loop, 10);
    kc_finish(loop);
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_OK);
    loop = kc_connect(t.port, "/plain", l);
    ASSERT(!g_kc.has_params);
    kc_exchange(loop, 10);
    kc_finish(loop);
    ASSERT_REC("open /plain none;", 2000);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
    kite_ext_list_free(l);
}

/* ---- on the wire, against an independent zlib client --------------------------------------- */

/* RFC 7692 §6.1 and §7.2.1: a compressed message may be fragmented, RSV1 on its first
 * frame only; the server inflates it whole and answers compressed. 1 to 7 fragments,
 * text and binary, and a compressed payload split before its first byte (an empty
 * first fragment). */
TEST(fragmented_compressed_messages)
{
    struct ts t = {0};
    start_server(&t, NULL, 0);
    struct dz *d = dz_open(t.port, "/z", PMD "; client_max_window_bits");
    ASSERT_EQ(d->t->status, 101);
    ASSERT(d->on);
    static char msg[20000];
    for (unsigned nfrag = 1; nfrag <= 7; nfrag++) {
        size_t n = dk_json(msg, 1000 + nfrag * 2000, nfrag);
        enum kite_opcode op = nfrag % 2 ? KITE_OP_TEXT : KITE_OP_BINARY;
        dz_send_z(d, op, msg, n, nfrag);
        bool z = false;
        DZ_EXPECT(d, op, msg, n, &z);
        ASSERT(z);                      /* the echo is compressed (RSV1) */
        ASSERT(g_dz_last_wire < n / 3); /* and much smaller */
    }
    /* an empty first fragment, RSV1 on it (§6.1), the compressed bytes after */
    size_t n = dk_json(msg, 5000, 99), zn;
    uint8_t *z = dz_deflate(d, msg, n, &zn);
    dz_frame(d, KITE_OP_TEXT, false, KITE_RSV1, NULL, 0);
    dz_frame(d, KITE_OP_CONTINUATION, false, 0, z, zn / 2);
    dz_frame(d, KITE_OP_CONTINUATION, true, 0, z + zn / 2, zn - zn / 2);
    free(z);
    DZ_EXPECT(d, KITE_OP_TEXT, msg, n, NULL);
    /* interleaved control frames do not disturb the stream (RFC 6455 §5.4) */
    n = dk_json(msg, 4000, 100);
    z = dz_deflate(d, msg, n, &zn);
    dz_frame(d, KITE_OP_BINARY, false, KITE_RSV1, z, zn / 2);
    dz_frame(d, KITE_OP_PING, true, 0, "p", 1);
    dz_frame(d, KITE_OP_CONTINUATION, true, 0, z + zn / 2, zn - zn / 2);
    free(z);
    DZ_EXPECT(d, KITE_OP_BINARY, msg, n, NULL);
    dz_free(d);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* RFC 7692 §7.2.3.6: an empty message compressed is the one byte 0x00 (an empty stored
 * block) or an empty payload; both arrive as empty messages, of either type. */
TEST(empty_compressed_messages)
{
    struct ts t = {0};
    start_server(&t, NULL, 0);
    struct dz *d = dz_open(t.port, "/z", PMD);
    ASSERT(d->on);
    dz_frame(d, KITE_OP_TEXT, true, KITE_RSV1, "\x00", 1);
    DZ_EXPECT(d, KITE_OP_TEXT, "", 0, NULL);
    dz_frame(d, KITE_OP_BINARY, true, KITE_RSV1, NULL, 0);
    DZ_EXPECT(d, KITE_OP_BINARY, "", 0, NULL);
    /* zlib's own empty sync flush (a stored block with no data) */
    dz_send_z(d, KITE_OP_TEXT, "", 0, 1);
    DZ_EXPECT(d, KITE_OP_TEXT, "", 0, NULL);
    /* the stream goes on afterwards (context takeover intact) */
    char msg[3000];
    size_t n = dk_json(msg, sizeof(msg), 5);
    dz_send_z(d, KITE_OP_TEXT, msg, n, 2);
    DZ_EXPECT(d, KITE_OP_TEXT, msg, n, NULL);
    ASSERT_REC("msg T 0;msg B 0;msg T 0;", 2000);
    dz_free(d);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* RFC 7692 §7.2.3.3: with context takeover the server's compressor remembers earlier
 * messages, so a repeated message costs a few bytes; without it (the memory preset,
 * server_no_context_takeover) each message stands alone. Our client also keeps its
 * context over 100 messages, which the server must follow. */
TEST(context_takeover_on_the_wire)
{
    static char msg[3000];
    size_t n = dk_json(msg, sizeof(msg), 42);
    for (int pre = 0; pre < 2; pre++) {
        struct kite_pmd_config cfg;
        kite_pmd_config_preset(&cfg, pre ? KITE_PMD_MEMORY : KITE_PMD_BALANCED);
        struct ts t = {0};
        start_server(&t, &cfg, 0);
        struct dz *d = dz_open(t.port, "/z", PMD "; client_max_window_bits");
        ASSERT(d->on);
        ASSERT_EQ(d->snct, pre == 1);
        dz_send_z(d, KITE_OP_TEXT, msg, n, 1);
        DZ_EXPECT(d, KITE_OP_TEXT, msg, n, NULL);
        size_t first = g_dz_last_wire;
        dz_send_z(d, KITE_OP_TEXT, msg, n, 1);
        DZ_EXPECT(d, KITE_OP_TEXT, msg, n, NULL);
        size_t second = g_dz_last_wire;
        printf("# %s: first %zu bytes, repeat %zu bytes (of %zu)\n", pre ? "memory" : "balanced",
               first, second, n);
        if (pre == 0)
            ASSERT(second * 10 < first); /* a back-reference to the previous message */
        else
            ASSERT_EQ(second, first); /* no memory of it */
        char m2[3000];
        for (unsigned i = 0; i < 100; i++) {
            size_t k = dk_json(m2, 300 + i * 20, i);
            dz_send_z(d, i % 2 ? KITE_OP_BINARY : KITE_OP_TEXT, m2, k, 1 + i % 3);
            DZ_EXPECT(d, i % 2 ? KITE_OP_BINARY : KITE_OP_TEXT, m2, k, NULL);
        }
        dz_free(d);
        ASSERT_EQ(ts_stop(&t), KITE_OK);
    }
}

/* Incompressible data round-trips. Without context takeover a message that would grow
 * goes out uncompressed (RSV1 clear); with it, it must go compressed (the history
 * includes it). */
TEST(incompressible_data)
{
    static uint8_t buf[200000];
    dk_random(buf, sizeof(buf), 7);
    for (int pre = 0; pre < 2; pre++) {
        struct kite_pmd_config cfg;
        kite_pmd_config_preset(&cfg, pre ? KITE_PMD_MEMORY : KITE_PMD_BALANCED);
        struct ts t = {0};
        start_server(&t, &cfg, 0);
        struct dz *d = dz_open(t.port, "/z", PMD "; client_max_window_bits");
        ASSERT(d->on);
        size_t sizes[] = {100, 5000, sizeof(buf)};
        for (size_t i = 0; i < KIT_LEN(sizes); i++) {
            dz_send_z(d, KITE_OP_BINARY, buf, sizes[i], 1 + (unsigned)i);
            bool z = true;
            DZ_EXPECT(d, KITE_OP_BINARY, buf, sizes[i], &z);
            ASSERT_EQ(z, pre == 0);
            if (pre == 1)
                ASSERT_EQ(g_dz_last_wire, sizes[i]);
        }
        dz_free(d);
        ASSERT_EQ(ts_stop(&t), KITE_OK);
    }
}

/* A decompression bomb (DESIGN §6, RFC 7692 §8.1 "limit the memory"): 16 MiB of zeros
 * deflate to about 16 KiB; a server whose max_message_size is 64 KiB fails the
 * connection with 1009 once the inflated bytes pass it, long before inflating it all. */
TEST(decompression_bomb_is_1009)
{
    struct ts t = {0};
    start_server(&t, NULL, 64 * 1024);
    struct dz *d = dz_open(t.port, "/z", PMD);
    ASSERT(d->on);
    size_t big = 16u << 20;
    uint8_t *zeros = calloc(1, big);
    ASSERT(zeros != NULL);
    size_t zn;
    uint8_t *z = dz_deflate(d, zeros, big, &zn);
    printf("# %zu bytes deflate to %zu\n", big, zn);
    ASSERT(zn < 64 * 1024); /* the frame itself is within every limit */
    dz_frame(d, KITE_OP_BINARY, true, KITE_RSV1, z, zn);
    free(z);
    free(zeros);
    char reason[128];
    ASSERT_EQ(dz_expect_close(d, reason, sizeof(reason)), KITE_CLOSE_TOO_BIG);
    ASSERT_REC("close 1009 local unclean err=KITE_ERR_TOO_BIG", 3000);
    dz_free(d);
    /* The same through the kite client: a 1 MiB message of one byte repeated is sent
     * as a few KiB; the server closes with 1009 and the client is told so. */
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_OK);
    struct kite_loop *loop = kc_connect(t.port, "/z", l);
    ASSERT(g_kc.has_params);
    uint8_t *m = malloc(1u << 20);
    memset(m, 'a', 1u << 20);
    ASSERT_EQ(kite_session_send_text(g_kc.s, (const char *)m, 1u << 20, NULL), KITE_SEND_OK);
    free(m);
    ASSERT(CO_RUN_UNTIL(loop, g_kc.closed, 5000));
    ASSERT_EQ(g_kc.ci.code, KITE_CLOSE_TOO_BIG);
    ASSERT_EQ(g_kc.ci.initiator, KITE_CLOSED_BY_PEER);
    kc_finish(loop);
    kite_ext_list_free(l);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* max_inflated_size in the extension's config is a second, lower limit. */
TEST(max_inflated_size_is_1009)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    cfg.max_inflated_size = 10000;
    struct ts t = {0};
    start_server(&t, &cfg, 0);
    struct dz *d = dz_open(t.port, "/z", PMD);
    static char msg[20000];
    size_t n = dk_json(msg, 9000, 1);
    dz_send_z(d, KITE_OP_TEXT, msg, n, 1);
    DZ_EXPECT(d, KITE_OP_TEXT, msg, n, NULL); /* under the limit: fine */
    n = dk_json(msg, sizeof(msg), 2);
    dz_send_z(d, KITE_OP_TEXT, msg, n, 3);
    ASSERT_EQ(dz_expect_close(d, NULL, 0), KITE_CLOSE_TOO_BIG);
    dz_free(d);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only. On a
 * continuation frame or a control frame (RFC 6455 §5.2: an RSV bit whose meaning was
 * not negotiated for it) it fails the connection with 1002. So does RSV1 when
 * permessage-deflate was not agreed, and invalid compressed data (§7.2.2). */
TEST(rsv1_where_not_allowed_is_1002)
{
    struct ts t = {0};
    start_server(&t, NULL, 0);
    char msg[3000];
    size_t n = dk_json(msg, sizeof(msg), 9), zn;
    enum { CONT, PING, CLOSE, NOT_AGREED, GARBAGE, COUNT };
    for (int c = 0; c < COUNT; c++) {
        struct dz *d = dz_open(t.port, "/z", c == NOT_AGREED ? NULL : PMD);
        ASSERT_EQ(d->on, c != NOT_AGREED);
        if (d->zinit || c == NOT_AGREED) {
            uint8_t *z = NULL;
            if (c == CONT) {
                z = dz_deflate(d, msg, n, &zn);
                dz_frame(d, KITE_OP_TEXT, false, KITE_RSV1, z, zn / 2);
                dz_frame(d, KITE_OP_CONTINUATION, true, KITE_RSV1, z + zn / 2, zn - zn / 2);
            } else if (c == PING) {
                dz_frame(d, KITE_OP_PING, true, KITE_RSV1, "x", 1);
            } else if (c == CLOSE) {
                dz_frame(d, KITE_OP_CLOSE, true, KITE_RSV1, "\x03\xe8", 2);
            } else if (c == NOT_AGREED) {
                dz_frame(d, KITE_OP_TEXT, true, KITE_RSV1, "\x00", 1);
            } else {
                dz_frame(d, KITE_OP_BINARY, true, KITE_RSV1, "\xff\xff\xff\xff", 4);
            }
            free(z);
        }
        char reason[128];
        unsigned code = dz_expect_close(d, reason, sizeof(reason));
        if (code != KITE_CLOSE_PROTOCOL_ERROR)
            kite_test_fail(__FILE__, __LINE__, "case %d: close %u \"%s\"", c, code, reason);
        dz_free(d);
    }
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

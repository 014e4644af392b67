/*
 * Unit tests for the extension API (RFC 6455 §9; Ktor's WebSocketExtension model): the
 * registry and its RSV-bit claims, negotiation through custom extensions, the order in
 * which a chain applies, lookup, error mapping, the zero-copy path with pass-through
 * extensions, and out-of-memory during negotiation.
 */
#include "codec/conn_internal.h"
#include "http/http.h"
#include "test.h"

/* ------------------------------------------------------------------------------------
 * Test extensions
 */

static char trace[512]; /* which extension saw what, in order */
static void note(const char *s)
{
    strncat(trace, s, sizeof(trace) - strlen(trace) - 1);
}

/* x-xor: XORs every byte with its config's key; claims RSV2. */
struct xor_cfg {
    uint8_t key;
    bool decline;       /* negotiate: decline every offer */
    bool fail_instance; /* instance_new fails */
    int in_error;       /* process_incoming returns this (0: works) */
};

static void xor_default(void *cfg)
{
    ((struct xor_cfg *)cfg)->key = 0x55;
}

static int xor_check(const void *cfg)
{
    return ((const struct xor_cfg *)cfg)->key ? KITE_OK : KITE_ERR_INVALID;
}

static int xor_offer(const void *cfg, struct kite_ext_writer *w)
{
    (void)cfg;
    int rc = kite_ext_write_offer(w);
    if (rc == KITE_OK)
        rc = kite_ext_write_param(w, "key", "yes");
    if (rc == KITE_OK)
        rc = kite_ext_write_offer(w); /* a bare alternative */
    return rc;
}

static int xor_negotiate(const void *cfg, const struct kite_ext_offer *o, size_t n,
                         struct kite_ext_writer *w)
{
    const struct xor_cfg *c = cfg;
    if (c->decline)
        return KITE_EXT_DECLINE;
    /* Prefer an offer with the "key" parameter, wherever it is. */
    for (size_t i = 0; i < n; i++)
        if (o[i].num_params == 1 && o[i].params[0].name_len == 3)
            return kite_ext_write_param(w, "key", "1");
    return KITE_OK;
}

static int xor_accept(const void *cfg, const struct kite_ext_offer *r)
{
    (void)cfg;
    return r->num_params <= 1 ? KITE_OK : KITE_ERR_HANDSHAKE;
}

struct xor_inst {
    const struct xor_cfg *cfg;
    const struct kite_allocator *a;
    bool keyed; /* the agreement had key=1 */
};

static int xor_new(const void *cfg, enum kite_role role, const struct kite_ext_offer *agreed,
                   const struct kite_allocator *a, void **inst)
{
    (void)role;
    if (((const struct xor_cfg *)cfg)->fail_instance)
        return KITE_ERR_INVALID;
    struct xor_inst *x = kite__calloc(a, sizeof(*x));
    if (!x)
        return KITE_ERR_NOMEM;
    x->cfg = cfg;
    x->a = a;
    x->keyed = agreed->num_params == 1 && agreed->params[0].value_len == 1 &&
               agreed->params[0].value[0] == '1';
    *inst = x;
    return KITE_OK;
}

static void xor_free(void *inst)
{
    struct xor_inst *x = inst;
    kite__free(x->a, x);
}

static int xor_data(const struct xor_inst *x, const uint8_t *d, size_t n, struct kite_ext_sink *out)
{
    uint8_t *p = kite_ext_sink_reserve(out, n ? n : 1);
    if (!p)
        return KITE_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        p[i] = d[i] ^ x->cfg->key;
    return kite_ext_sink_commit(out, n);
}

static int xor_out(void *inst, struct kite_ext_msg *m, struct kite_ext_sink *out)
{
    note("xo ");
    m->rsv |= KITE_RSV2;
    return xor_data(inst, m->data, m->len, out);
}

static int xor_in(void *inst, const struct kite_ext_chunk *in, struct kite_ext_sink *out)
{
    struct xor_inst *x = inst;
    note("xi ");
    if (x->cfg->in_error)
        return x->cfg->in_error;
    if (!(in->rsv & KITE_RSV2))
        return KITE_EXT_PASS;
    return xor_data(inst, in->data, in->len, out);
}

static const struct kite_extension ext_xor = {
    .name = "x-xor",
    .rsv = KITE_RSV2,
    .config_size = sizeof(struct xor_cfg),
    .config_init = xor_default,
    .config_check = xor_check,
    .offer = xor_offer,
    .negotiate = xor_negotiate,
    .client_accept = xor_accept,
    .instance_new = xor_new,
    .instance_free = xor_free,
    .process_outgoing = xor_out,
    .process_incoming = xor_in,
};

/* x-add: adds 1 to every byte on the way out, subtracts on the way in; RSV3; no config,
 * no instance state, every default method. */
static int add_out(void *inst, struct kite_ext_msg *m, struct kite_ext_sink *out)
{
    (void)inst;
    note("ao ");
    m->rsv |= KITE_RSV3;
    for (size_t i = 0; i < m->len; i++) {
        uint8_t b = (uint8_t)(m->data[i] + 1);
        int rc = kite_ext_sink_write(out, &b, 1);
        if (rc != KITE_OK)
            return rc;
    }
    return KITE_OK;
}

static int add_in(void *inst, const struct kite_ext_chunk *in, struct kite_ext_sink *out)
{
    (void)inst;
    note("ai ");
    if (!(in->rsv & KITE_RSV3))
        return KITE_EXT_PASS;
    for (size_t i = 0; i < in->len; i++) {
        uint8_t b = (uint8_t)(in->data[i] - 1);
        int rc = kite_ext_sink_write(out, &b, 1);
        if (rc != KITE_OK)
            return rc;
    }
    return KITE_OK;
}

static const struct kite_extension ext_add = {
    .name = "x-add",
    .rsv = KITE_RSV3,
    .process_outgoing = add_out,
    .process_incoming = add_in,
};

/* x-log: watches, claims nothing, always passes (the seed's frame logger). */
static int log_calls;
static int log_out(void *inst, struct kite_ext_msg *m, struct kite_ext_sink *out)
{
    (void)inst, (void)m, (void)out;
    log_calls++;
    note("lo ");
    return KITE_EXT_PASS;
}

static int log_in(void *inst, const struct kite_ext_chunk *in, struct kite_ext_sink *out)
{
    (void)inst, (void)in, (void)out;
    log_calls++;
    note("li ");
    return KITE_EXT_PASS;
}

static const struct kite_extension ext_log = {
    .name = "x-log",
    .process_outgoing = log_out,
    .process_incoming = log_in,
};

/* Another extension that wants RSV1, like a second compressor would. */
static const struct kite_extension ext_rsv1 = {.name = "x-other-deflate", .rsv = KITE_RSV1};

/* ------------------------------------------------------------------------------------
 * Registry
 */

/* Ktor: an RSV bit belongs to one installed extension; the clash shows at install. */
TEST(install_refuses_rsv_conflicts_and_duplicates)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT(l);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_OK);
    ASSERT_EQ(kite_ext_list_install(l, &ext_rsv1, NULL), KITE_ERR_EXISTS);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_ERR_EXISTS);
    ASSERT_EQ(kite_ext_list_install(l, &ext_xor, NULL), KITE_OK);
    ASSERT_EQ(kite_ext_list_install(l, &ext_add, NULL), KITE_OK);
    ASSERT_EQ(kite_ext_list_install(l, &ext_log, NULL), KITE_OK); /* claims nothing */
    ASSERT_EQ(kite_ext_list_count(l), 4);
    ASSERT_EQ(kite_ext_list_rsv(l), KITE_RSV_MASK);
    /* A different vtable with an installed name. */
    struct kite_extension same_name = {.name = "X-LOG"};
    ASSERT_EQ(kite_ext_list_install(l, &same_name, NULL), KITE_ERR_EXISTS);
    struct kite_extension bad = {.name = "bad name"};
    ASSERT_EQ(kite_ext_list_install(l, &bad, NULL), KITE_ERR_INVALID);
    struct kite_extension bad_rsv = {.name = "x-r", .rsv = 0x80};
    ASSERT_EQ(kite_ext_list_install(l, &bad_rsv, NULL), KITE_ERR_INVALID);
    ASSERT_EQ(kite_ext_list_count(l), 4);
    kite_ext_list_free(l);
    kite_ext_list_free(NULL);

    /* Config: defaults for NULL, copied otherwise, checked. */
    l = kite_ext_list_new(NULL);
    struct xor_cfg zero = {0};
    ASSERT_EQ(kite_ext_list_install(l, &ext_xor, &zero), KITE_ERR_INVALID);
    ASSERT_EQ(kite_ext_list_install(l, &ext_xor, NULL), KITE_OK);
    ASSERT_EQ(((struct xor_cfg *)kite_ext_list_config(l, &ext_xor))->key, 0x55);
    ASSERT(kite_ext_list_config(l, &ext_add) == NULL);
    kite_ext_list_free(l);
}

/* ------------------------------------------------------------------------------------
 * Negotiation through custom extensions
 */

static struct kite_ext_list *list3(const struct xor_cfg *xc)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &ext_xor, xc), KITE_OK);
    ASSERT_EQ(kite_ext_list_install(l, &ext_add, NULL), KITE_OK);
    ASSERT_EQ(kite_ext_list_install(l, &ext_log, NULL), KITE_OK);
    return l;
}

TEST(negotiation_with_custom_extensions)
{
    struct kite_ext_list *l = list3(NULL);
    char offer[256];
    ssize_t n = kite_ext_offer(l, KITE_MODE_DEFAULT, offer, sizeof(offer));
    ASSERT_STREQ(offer, "x-xor; key=yes, x-xor, x-add, x-log");
    ASSERT_EQ(n, (ssize_t)strlen(offer));
    /* The server answers in install order, whatever the client's order. */
    struct kite_ext_chain *ch;
    const char *req = "x-log, x-add, x-xor, x-xor; key=yes";
    ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_DEFAULT, req, strlen(req), NULL, &ch), KITE_OK);
    size_t hl;
    ASSERT_STREQ(kite_ext_chain_header(ch, &hl), "x-xor; key=1, x-add, x-log");
    ASSERT_EQ(hl, strlen("x-xor; key=1, x-add, x-log"));
    ASSERT_EQ(kite_ext_chain_count(ch), 3);
    void *inst;
    ASSERT(kite_ext_chain_at(ch, 0, &inst) == &ext_xor);
    ASSERT(((struct xor_inst *)inst)->keyed);
    ASSERT(kite_ext_chain_at(ch, 1, NULL) == &ext_add);
    ASSERT(kite_ext_chain_at(ch, 3, NULL) == NULL);
    /* An extension without instance_new: its instance is its config. */
    ASSERT(kite_ext_chain_get(ch, &ext_add) == kite_ext_list_config(l, &ext_add));
    ASSERT(kite_ext_chain_get(ch, &kite_ext_permessage_deflate) == NULL);
    kite_ext_chain_free(ch);

    /* The client builds its chain in the server's order. */
    const char *resp = "x-log, x-xor";
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, resp, strlen(resp), NULL, &ch), KITE_OK);
    ASSERT_EQ(kite_ext_chain_count(ch), 2);
    ASSERT(kite_ext_chain_at(ch, 0, NULL) == &ext_log);
    ASSERT(!((struct xor_inst *)kite_ext_chain_get(ch, &ext_xor))->keyed);
    kite_ext_chain_free(ch);
    /* client_accept refuses; an unknown extension; one twice: fail the handshake. */
    static const char *bad[] = {"x-xor; a; b", "x-zzz", "x-add, x-add", "x-add;"};
    for (size_t i = 0; i < KITE_ARRAY_LEN(bad); i++) {
        ch = (struct kite_ext_chain *)1;
        ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, bad[i], strlen(bad[i]), NULL, &ch),
                  KITE_ERR_HANDSHAKE);
        ASSERT(ch == NULL);
    }
    kite_ext_list_free(l);

    /* A declining extension is left out; the others go on. */
    struct xor_cfg xc = {.key = 7, .decline = true};
    l = list3(&xc);
    ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_DEFAULT, req, strlen(req), NULL, &ch), KITE_OK);
    ASSERT_STREQ(kite_ext_chain_header(ch, NULL), "x-add, x-log");
    kite_ext_chain_free(ch);
    /* An instance that cannot be made fails the negotiation with its code. */
    xc.decline = false;
    xc.fail_instance = true;
    ((struct xor_cfg *)kite_ext_list_config(l, &ext_xor))->fail_instance = true;
    ((struct xor_cfg *)kite_ext_list_config(l, &ext_xor))->decline = false;
    ch = (struct kite_ext_chain *)1;
    ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_DEFAULT, req, strlen(req), NULL, &ch),
              KITE_ERR_INVALID);
    ASSERT(ch == NULL);
    kite_ext_list_free(l);

    /* Nothing installed: nothing offered, nothing accepted, answers refused. */
    l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_offer(l, KITE_MODE_DEFAULT, offer, sizeof(offer)), 0);
    ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_DEFAULT, req, strlen(req), NULL, &ch), KITE_OK);
    ASSERT(ch == NULL);
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "x-add", 5, NULL, &ch), KITE_ERR_HANDSHAKE);
    kite_ext_list_free(l);
}

/* The internal entry points read every Sec-WebSocket-Extensions line of a head. */
TEST(negotiation_over_header_lines)
{
    struct kite_ext_list *l = list3(NULL);
    struct kite_http_header h[] = {
        {"Host", 4, "x", 1},
        {"Sec-WebSocket-Extensions", 24, "x-add", 5},
        {"sec-websocket-extensions", 24, "x-xor; key=yes", 14},
    };
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite__ext_negotiate_headers(l, KITE_MODE_DEFAULT, h, 3, NULL, &ch), KITE_OK);
    ASSERT_STREQ(kite_ext_chain_header(ch, NULL), "x-xor; key=1, x-add");
    kite_ext_chain_free(ch);
    h[2].value = "x-xor; key=1";
    h[2].value_len = 12;
    ASSERT_EQ(kite__ext_accept_headers(l, KITE_MODE_DEFAULT, h, 3, NULL, &ch), KITE_OK);
    ASSERT_EQ(kite_ext_chain_count(ch), 2);
    kite_ext_chain_free(ch);
    struct kite_buf b = {0};
    ASSERT_EQ(kite__ext_offer_buf(l, KITE_MODE_DEFAULT, &b, NULL), KITE_OK);
    ASSERT_EQ(b.len, strlen("x-xor; key=yes, x-xor, x-add, x-log"));
    kite__buf_free(&b, NULL);
    kite_ext_list_free(l);
}

/* ------------------------------------------------------------------------------------
 * Processing through codecs
 */

struct got {
    int n;
    char last[256];
    size_t len;
    const uint8_t *ptr;
    int close;
};

static int got_msg(struct kite_codec *c, enum kite_opcode t, const uint8_t *d, size_t n, void *ud)
{
    struct got *g = ud;
    (void)c, (void)t;
    g->n++;
    g->len = KITE_MIN(n, sizeof(g->last));
    memcpy(g->last, d, g->len);
    g->ptr = d;
    return KITE_OK;
}

static void got_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    (void)c;
    ((struct got *)ud)->close = ci->code;
}

static const struct kite_codec_callbacks got_cb = {.on_message = got_msg, .on_close = got_close};

static struct kite_codec *codec(enum kite_role role, struct kite_ext_chain *ch, struct got *g)
{
    struct kite_codec_config cc;
    kite_codec_config_init(&cc);
    cc.role = role;
    cc.extensions = ch;
    memset(g, 0, sizeof(*g));
    struct kite_codec *c = kite_codec_new(&cc, &got_cb, g, 0);
    ASSERT(c);
    return c;
}

static size_t move(struct kite_codec *from, struct kite_codec *to, size_t split)
{
    static uint8_t buf[4096];
    const uint8_t *o;
    size_t n = kite_codec_pending(from, &o);
    ASSERT(n <= sizeof(buf));
    memcpy(buf, o, n);
    kite_codec_consume(from, n);
    uint8_t first = buf[0];
    for (size_t off = 0; off < n;) {
        size_t k = split ? KITE_MIN(split, n - off) : n - off;
        ASSERT(kite_codec_recv(to, buf + off, k, 0) >= 0);
        off += k;
    }
    return first;
}

/*
 * Outgoing: install order (x-xor, x-add, x-log); incoming: the reverse, so x-add undoes
 * its step before x-xor does. Both transforming extensions mark their RSV bits; the
 * message arrives intact, at any split.
 */
TEST(chain_applies_in_install_order_out_and_reverse_in)
{
    struct kite_ext_list *l = list3(NULL);
    for (size_t split = 0; split < 6; split++) {
        char offer[256];
        kite_ext_offer(l, KITE_MODE_DEFAULT, offer, sizeof(offer));
        struct kite_ext_chain *sch, *cch;
        ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_DEFAULT, offer, strlen(offer), NULL, &sch),
                  KITE_OK);
        const char *resp = kite_ext_chain_header(sch, NULL);
        ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, resp, strlen(resp), NULL, &cch), KITE_OK);
        struct got gs, gc;
        struct kite_codec *s = codec(KITE_ROLE_SERVER, sch, &gs);
        struct kite_codec *c = codec(KITE_ROLE_CLIENT, cch, &gc);
        ASSERT(kite_codec_extension(s, &ext_xor) != NULL);
        ASSERT(kite_codec_extension(s, &kite_ext_permessage_deflate) == NULL);
        trace[0] = '\0';
        ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, "hello", 5), KITE_OK);
        ASSERT_EQ(move(c, s, split), 0x80 | KITE_RSV2 | KITE_RSV3 | KITE_OP_TEXT);
        ASSERT_EQ(gs.n, 1);
        ASSERT_EQ(gs.len, 5);
        ASSERT_MEMEQ(gs.last, "hello", 5);
        if (split == 0)
            ASSERT_STREQ(trace, "xo ao lo li ai xi ");
        /* The other way, and an empty message. */
        ASSERT_EQ(kite_codec_send(s, KITE_OP_BINARY, "", 0), KITE_OK);
        ASSERT_EQ(kite_codec_send(s, KITE_OP_BINARY, "\x01\x02", 2), KITE_OK);
        move(s, c, split);
        ASSERT_EQ(gc.n, 2);
        ASSERT_EQ(gc.len, 2);
        ASSERT_MEMEQ(gc.last, "\x01\x02", 2);
        /* A message without the RSV bits passes x-add and x-xor untouched. */
        ASSERT_EQ(kite_codec_send_frame(s, KITE_OP_TEXT, true, 0, "plain", 5), KITE_OK);
        move(s, c, split);
        ASSERT_EQ(gc.n, 3);
        ASSERT_MEMEQ(gc.last, "plain", 5);
        ASSERT_EQ(gs.close + gc.close, 0);
        kite_codec_free(s);
        kite_codec_free(c);
    }
    kite_ext_list_free(l);
}

/* With extensions that only watch (the seed's frame logger), a whole frame is still
 * handed over as a view of the input: the hot path stays zero-copy. */
TEST(pass_through_keeps_zero_copy)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &ext_log, NULL), KITE_OK);
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "x-log", 5, NULL, &ch), KITE_OK);
    struct got g;
    struct kite_codec *c = codec(KITE_ROLE_CLIENT, ch, &g);
    uint8_t in[] = {0x81, 0x03, 'a', 'b', 'c'};
    log_calls = 0;
    ASSERT_EQ(kite_codec_recv(c, in, sizeof(in), 0), 5);
    ASSERT_EQ(g.n, 1);
    ASSERT(g.ptr == in + 2);
    ASSERT_EQ(log_calls, 1);
    /* aux holds the chain; no message buffer was allocated for it: a view, not a copy */
    ASSERT(c->aux != NULL && c->aux->msg.data == NULL);
    uint8_t frag[] = {0x01, 0x01, 'a', 0x80, 0x02, 'b', 'c'};
    ASSERT_EQ(kite_codec_recv(c, frag, sizeof(frag), 0), 7);
    ASSERT_EQ(g.n, 2);
    ASSERT_MEMEQ(g.last, "abc", 3);
    ASSERT_EQ(log_calls, 3);
    ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, "x", 1), KITE_OK);
    ASSERT_EQ(log_calls, 4);
    kite_codec_free(c);
    kite_ext_list_free(l);
}

/* An extension's incoming error fails the connection with the matching close code;
 * the limit on what extensions produce is max_message_size (1009). */
TEST(incoming_errors_map_to_close_codes)
{
    static const int errs[][2] = {{KITE_ERR_PROTOCOL, 1002},
                                  {KITE_ERR_UTF8, 1007},
                                  {KITE_ERR_TOO_BIG, 1009},
                                  {KITE_ERR_CALLBACK, 1011}};
    for (size_t i = 0; i < KITE_ARRAY_LEN(errs); i++) {
        struct xor_cfg xc = {.key = 1, .in_error = errs[i][0]};
        struct kite_ext_list *l = kite_ext_list_new(NULL);
        ASSERT_EQ(kite_ext_list_install(l, &ext_xor, &xc), KITE_OK);
        struct kite_ext_chain *ch;
        ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "x-xor", 5, NULL, &ch), KITE_OK);
        struct got g;
        struct kite_codec *c = codec(KITE_ROLE_CLIENT, ch, &g);
        uint8_t in[] = {0xa1, 0x01, 'a'};
        ASSERT(kite_codec_recv(c, in, sizeof(in), 0) >= 0);
        ASSERT_EQ(g.n, 0);
        ASSERT_EQ(g.close, errs[i][1]);
        ASSERT_EQ(kite_codec_close_info(c)->error, errs[i][0]);
        kite_codec_free(c);
        kite_ext_list_free(l);
    }
    /* Output over max_message_size. */
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &ext_xor, NULL), KITE_OK);
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "x-xor", 5, NULL, &ch), KITE_OK);
    struct kite_codec_config cc;
    kite_codec_config_init(&cc);
    cc.role = KITE_ROLE_CLIENT;
    cc.extensions = ch;
    cc.options.max_message_size = 3;
    struct got g = {0};
    struct kite_codec *c = kite_codec_new(&cc, &got_cb, &g, 0);
    uint8_t in[] = {0x21, 0x02, 'a', 'b', 0x80, 0x02, 'c', 'd'};
    ASSERT(kite_codec_recv(c, in, sizeof(in), 0) >= 0);
    ASSERT_EQ(g.n, 0);
    ASSERT_EQ(g.close, 1009);
    kite_codec_free(c);
    kite_ext_list_free(l);
}

/* A chain given to a codec that cannot be made stays the caller's. */
TEST(codec_new_failure_leaves_the_chain_to_the_caller)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL), KITE_OK);
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "permessage-deflate", 18, NULL, &ch), KITE_OK);
    struct kite_codec_config cc;
    kite_codec_config_init(&cc);
    cc.options.timeout_ms = 0;
    cc.extensions = ch;
    ASSERT(kite_codec_new(&cc, NULL, NULL, 0) == NULL);
    size_t n;
    kite_ext_chain_header(ch, &n); /* still alive */
    kite_ext_chain_free(ch);
    kite_ext_list_free(l);
}

/* Out of memory at every allocation of both negotiations and a codec round: no crash,
 * no leak, KITE_ERR_NOMEM where it happened. */
TEST(oom_during_negotiation)
{
    long n;
    for (n = 1;; n++) {
        struct kite_test_alloc st = {.fail_at = n};
        const struct kite_allocator *a = kite_test_allocator(&st);
        struct kite_ext_list *l = kite_ext_list_new(a);
        int rc = l ? KITE_OK : KITE_ERR_NOMEM;
        if (rc == KITE_OK)
            rc = kite_ext_list_install(l, &ext_xor, NULL);
        if (rc == KITE_OK)
            rc = kite_ext_list_install(l, &kite_ext_permessage_deflate, NULL);
        char offer[256];
        ssize_t k = rc == KITE_OK ? kite_ext_offer(l, KITE_MODE_DEFAULT, offer, sizeof(offer)) : 0;
        if (k < 0)
            rc = (int)k;
        struct kite_ext_chain *sch = NULL, *cch = NULL;
        if (rc == KITE_OK)
            rc = kite_ext_negotiate(l, KITE_MODE_DEFAULT, offer, (size_t)k, a, &sch);
        if (rc == KITE_OK) {
            const char *r = kite_ext_chain_header(sch, NULL);
            rc = kite_ext_accept(l, KITE_MODE_DEFAULT, r, strlen(r), a, &cch);
        }
        if (rc == KITE_OK) {
            ASSERT_EQ(kite_ext_chain_count(sch), 2);
            ASSERT_EQ(kite_ext_chain_count(cch), 2);
        } else {
            ASSERT_EQ(rc, KITE_ERR_NOMEM);
        }
        kite_ext_chain_free(sch);
        kite_ext_chain_free(cch);
        kite_ext_list_free(l);
        ASSERT_EQ(st.live, 0);
        if (!st.failed)
            break;
        ASSERT(n < 500);
    }
    ASSERT(n > 10);
}

/*
 * frame_logger — Ktor's frame-logger extension (the WebSocket extensions API page), in
 * C, installed next to permessage-deflate.
 *
 * It shows the whole extension life cycle with two in-memory codecs, a client and a
 * server, and no sockets: install (with an RSV-bit clash refused), the client's offer,
 * the server's negotiation, the client's check of the answer, per-session instances,
 * and messages going both ways through the chain. The logger claims no RSV bit and
 * passes every message on unchanged; as it is installed first, it sees outgoing
 * messages before they are compressed and incoming ones after they are inflated.
 *
 *   ./example_frame_logger
 */
#include <stdio.h>
#include <string.h>

#include <kite/kite.h>

/* The logger's config (Ktor: FrameLogger.Config { logger }). */
struct logger_config {
    const char *prefix;
    FILE *out;
};

/* Per-session instance: its config and which side it is on. */
struct logger {
    const struct logger_config *cfg;
    const char *side;
};

static void logger_defaults(void *cfg)
{
    struct logger_config *c = cfg;
    c->prefix = "frame-logger";
    c->out = stdout;
}

/* Client: one offer, no parameters (Ktor: protocols). */
static int logger_offer(const void *cfg, struct kite_ext_writer *w)
{
    (void)cfg;
    return kite_ext_write_offer(w);
}

/* Server: accept the first offer as it is (Ktor: serverNegotiation). */
static int logger_negotiate(const void *cfg, const struct kite_ext_offer *offers, size_t n,
                            struct kite_ext_writer *w)
{
    const struct logger_config *c = cfg;
    (void)offers, (void)w;
    fprintf(c->out, "%s: server negotiation (%zu offer(s))\n", c->prefix, n);
    return KITE_OK;
}

/* Client: agree with whatever the server answered (Ktor: clientNegotiation). */
static int logger_accept(const void *cfg, const struct kite_ext_offer *resp)
{
    const struct logger_config *c = cfg;
    fprintf(c->out, "%s: client negotiation (%zu parameter(s))\n", c->prefix, resp->num_params);
    return KITE_OK;
}

static int logger_new(const void *cfg, enum kite_role role, const struct kite_ext_offer *agreed,
                      const struct kite_allocator *a, void **inst)
{
    (void)agreed, (void)a;
    static struct logger sides[2];
    struct logger *l = &sides[role == KITE_ROLE_CLIENT];
    l->cfg = cfg;
    l->side = role == KITE_ROLE_CLIENT ? "client" : "server";
    *inst = l;
    return KITE_OK;
}

/* Ktor: processOutgoingFrame / processIncomingFrame; both pass the data on unchanged. */
static int logger_out(void *inst, struct kite_ext_msg *m, struct kite_ext_sink *out)
{
    struct logger *l = inst;
    (void)out;
    fprintf(l->cfg->out, "%s: %s sends %s message, %zu bytes\n", l->cfg->prefix, l->side,
            m->opcode == KITE_OP_TEXT ? "a text" : "a binary", m->len);
    return KITE_EXT_PASS;
}

static int logger_in(void *inst, const struct kite_ext_chunk *in, struct kite_ext_sink *out)
{
    struct logger *l = inst;
    (void)out;
    fprintf(l->cfg->out, "%s: %s receives %zu bytes%s%s\n", l->cfg->prefix, l->side, in->len,
            in->first ? " (first chunk)" : "", in->last ? " (last chunk)" : "");
    return KITE_EXT_PASS;
}

static const struct kite_extension frame_logger = {
    .name = "x-frame-logger",
    .rsv = 0, /* claims no RSV bit */
    .config_size = sizeof(struct logger_config),
    .config_init = logger_defaults,
    .offer = logger_offer,
    .negotiate = logger_negotiate,
    .client_accept = logger_accept,
    .instance_new = logger_new,
    .process_outgoing = logger_out,
    .process_incoming = logger_in,
};

/* A compressor of our own would want RSV1 too: refused at install. */
static const struct kite_extension other_deflate = {.name = "x-other-deflate", .rsv = KITE_RSV1};

static int on_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data, size_t len,
                      void *ud)
{
    (void)c, (void)type;
    printf("%s got: %.*s\n", (const char *)ud, (int)len, (const char *)data);
    return KITE_OK;
}

static const struct kite_codec_callbacks callbacks = {.on_message = on_message};

/* Carry what `from` wrote to `to`, as a socket would. */
static void carry(struct kite_codec *from, struct kite_codec *to, const char *what)
{
    const uint8_t *p;
    size_t n = kite_codec_pending(from, &p);
    uint8_t buf[4096];
    if (n > sizeof(buf))
        n = sizeof(buf);
    memcpy(buf, p, n);
    kite_codec_consume(from, n);
    printf("wire: %s %zu bytes, first byte 0x%02x (RSV1 %s)\n", what, n, buf[0],
           (buf[0] & KITE_RSV1) ? "set: compressed" : "clear");
    kite_codec_recv(to, buf, n, 0);
}

static struct kite_ext_list *registry(void)
{
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    struct kite_pmd_config pmd;
    kite_pmd_config_preset(&pmd, KITE_PMD_BALANCED);
    pmd.compress_threshold = 16;
    if (!l || kite_ext_list_install(l, &frame_logger, NULL) != KITE_OK ||
        kite_ext_list_install(l, &kite_ext_permessage_deflate, &pmd) != KITE_OK) {
        kite_ext_list_free(l);
        return NULL;
    }
    int rc = kite_ext_list_install(l, &other_deflate, NULL);
    printf("installing a second RSV1 extension: %s\n", kite_err_name(rc));
    return l;
}

int main(void)
{
    struct kite_ext_list *server_exts = registry(), *client_exts = registry();
    if (!server_exts || !client_exts)
        return 1;

    char offer[256];
    kite_ext_offer(client_exts, KITE_MODE_DEFAULT, offer, sizeof(offer));
    printf("client offers:   Sec-WebSocket-Extensions: %s\n", offer);

    struct kite_ext_chain *sch, *cch;
    if (kite_ext_negotiate(server_exts, KITE_MODE_DEFAULT, offer, strlen(offer), NULL, &sch) !=
            KITE_OK ||
        !sch)
        return 1;
    size_t len;
    const char *answer = kite_ext_chain_header(sch, &len);
    printf("server answers:  Sec-WebSocket-Extensions: %s\n", answer);
    if (kite_ext_accept(client_exts, KITE_MODE_DEFAULT, answer, len, NULL, &cch) != KITE_OK)
        return 1;

    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.extensions = sch;
    struct kite_codec *server = kite_codec_new(&cfg, &callbacks, "server", 0);
    cfg.role = KITE_ROLE_CLIENT;
    cfg.extensions = cch;
    struct kite_codec *client = kite_codec_new(&cfg, &callbacks, "client", 0);
    if (!server || !client)
        return 1;

    /* Ktor's extensionOrNull(): what did this session agree to? */
    struct kite_pmd_params pp;
    if (kite_pmd_params(kite_codec_extension(server, &kite_ext_permessage_deflate), &pp) == KITE_OK)
        printf("agreed: server window %u bits, client window %u bits, no context takeover: "
               "server %s, client %s\n",
               pp.server_max_window_bits, pp.client_max_window_bits,
               pp.server_no_context_takeover ? "yes" : "no",
               pp.client_no_context_takeover ? "yes" : "no");

    const char *hello = "Hello from the client, Hello from the client, Hello!";
    kite_codec_send(client, KITE_OP_TEXT, hello, strlen(hello));
    carry(client, server, "client -> server");
    kite_codec_send(server, KITE_OP_TEXT, "Hi", 2);
    carry(server, client, "server -> client");

    kite_codec_free(client);
    kite_codec_free(server);
    kite_ext_list_free(client_exts);
    kite_ext_list_free(server_exts);
    kite_pmd_pool_trim();
    return 0;
}

/*
 * Unit tests for permessage-deflate (RFC 7692) in the codec: the worked examples of
 * §7.2.3 as byte vectors, compression output, round trips between a client and a server
 * codec for every parameter combination, limits (decompression bombs), RSV1 rules,
 * out-of-memory at every allocation, and the memory each preset holds.
 */
#include <zlib.h>

#include "codec/conn_internal.h"
#include "codec/pmd.h"
#include "test.h"

/* ------------------------------------------------------------------------------------
 * A counting allocator: live and peak bytes (to measure memory per connection)
 */

struct counter {
    size_t live, peak, calls;
};

union chdr {
    size_t n;
    max_align_t align;
};

static void *c_malloc(size_t n, void *ud)
{
    struct counter *k = ud;
    union chdr *h = malloc(sizeof(*h) + n);
    if (!h)
        return NULL;
    h->n = n;
    k->live += n;
    k->calls++;
    if (k->live > k->peak)
        k->peak = k->live;
    return h + 1;
}

static void c_free(void *p, void *ud)
{
    struct counter *k = ud;
    if (!p)
        return;
    union chdr *h = (union chdr *)p - 1;
    k->live -= h->n;
    free(h);
}

static void *c_realloc(void *p, size_t n, void *ud)
{
    struct counter *k = ud;
    void *q = c_malloc(n, ud);
    if (!q)
        return NULL;
    if (p) {
        union chdr *h = (union chdr *)p - 1;
        memcpy(q, p, KITE_MIN(h->n, n));
        c_free(p, k);
    }
    return q;
}

static struct kite_allocator counting(struct counter *k)
{
    struct kite_allocator a = {c_malloc, c_realloc, c_free, k};
    return a;
}

/* ------------------------------------------------------------------------------------
 * Peers: a codec that records what it receives
 */

struct peer {
    struct kite_codec *c;
    int msgs;
    enum kite_opcode last_op;
    uint8_t *last; /* copy of the last message */
    size_t last_len;
    uint64_t total; /* bytes of every message received */
    uint32_t hash;  /* FNV-1a over every message received, in order */
    int close_code; /* 0 until on_close */
    int close_err;
    uint64_t wire; /* bytes this peer has written */
};

static uint32_t fnv(uint32_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static int on_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data, size_t len,
                      void *ud)
{
    struct peer *p = ud;
    (void)c;
    p->msgs++;
    p->last_op = type;
    free(p->last);
    p->last = malloc(len + 1);
    if (len)
        memcpy(p->last, data, len);
    p->last_len = len;
    p->total += len;
    p->hash = fnv(p->hash, data, len);
    return KITE_OK;
}

static void on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    struct peer *p = ud;
    (void)c;
    p->close_code = ci->code;
    p->close_err = ci->error;
}

static const struct kite_codec_callbacks cbs = {
    .on_message = on_message,
    .on_close = on_close,
};

static void peer_free(struct peer *p)
{
    kite_codec_free(p->c);
    free(p->last);
    memset(p, 0, sizeof(*p));
}

/* A codec of `role` with the chain from negotiating `offer` against `cfg`. The server
 * negotiates; a client accepts `resp` (the server's answer) against `cfg`. */
static struct kite_ext_list *list_with(const struct kite_pmd_config *cfg,
                                       const struct kite_allocator *a)
{
    struct kite_ext_list *l = kite_ext_list_new(a);
    ASSERT(l);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, cfg), KITE_OK);
    return l;
}

static struct kite_codec *codec_with(enum kite_role role, struct kite_ext_chain *ch,
                                     const struct kite_allocator *a, struct peer *p,
                                     uint64_t max_msg)
{
    struct kite_codec_config cc;
    kite_codec_config_init(&cc);
    cc.role = role;
    cc.allocator = a;
    cc.extensions = ch;
    cc.options.max_message_size = max_msg;
    cc.options.max_frame_size = max_msg + 1024;
    memset(p, 0, sizeof(*p));
    p->hash = 2166136261u;
    p->c = kite_codec_new(&cc, &cbs, p, 0);
    return p->c;
}

/* A client codec that agreed to `resp`, for feeding it frames from a "server". */
static struct kite_ext_list *g_list;
static void client_agreeing(struct peer *p, const char *resp, size_t threshold)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_preset(&cfg, KITE_PMD_SPEED);
    cfg.compress_threshold = threshold;
    g_list = list_with(&cfg, NULL);
    struct kite_ext_chain *ch = NULL;
    ASSERT_EQ(kite_ext_accept(g_list, KITE_MODE_DEFAULT, resp, strlen(resp), NULL, &ch), KITE_OK);
    ASSERT(ch);
    ASSERT(codec_with(KITE_ROLE_CLIENT, ch, NULL, p, 16u << 20));
}

/* A server codec that answered `offer`. */
static void server_answering(struct peer *p, const struct kite_pmd_config *cfg, const char *offer)
{
    g_list = list_with(cfg, NULL);
    struct kite_ext_chain *ch = NULL;
    ASSERT_EQ(kite_ext_negotiate(g_list, KITE_MODE_DEFAULT, offer, strlen(offer), NULL, &ch),
              KITE_OK);
    ASSERT(ch);
    ASSERT(codec_with(KITE_ROLE_SERVER, ch, NULL, p, 16u << 20));
}

/* Feed bytes; all are taken unless the session ends on the way. */
static void feed(struct peer *p, const uint8_t *in, size_t n)
{
    static uint8_t buf[1 << 16];
    ASSERT(n <= sizeof(buf));
    memcpy(buf, in, n);
    ssize_t r = kite_codec_recv(p->c, buf, n, 0);
    ASSERT(r >= 0);
    if (!kite_codec_is_closed(p->c))
        ASSERT_EQ(r, (ssize_t)n);
}

/* Feed in pieces split at `split` (0: whole). */
static void feed_split(struct peer *p, const uint8_t *in, size_t n, size_t split)
{
    if (!split || split >= n) {
        feed(p, in, n);
        return;
    }
    feed(p, in, split);
    feed(p, in + split, n - split);
}

static size_t take_out(struct peer *p, uint8_t *out, size_t cap)
{
    const uint8_t *o;
    size_t n = kite_codec_pending(p->c, &o);
    ASSERT(n <= cap);
    memcpy(out, o, n);
    kite_codec_consume(p->c, n);
    return n;
}

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static void expect_last(const struct peer *p, const char *s)
{
    ASSERT_EQ(p->last_len, strlen(s));
    ASSERT_MEMEQ(p->last, s, p->last_len);
}

static void done(struct peer *p)
{
    peer_free(p);
    kite_ext_list_free(g_list);
    g_list = NULL;
    kite_pmd_pool_trim();
}

/* ------------------------------------------------------------------------------------
 * RFC 7692 §7.2.3 worked examples, received
 */

/* §7.2.3.1: "Hello" in one compressed DEFLATE block, in one frame, split anywhere. */
TEST(rfc_hello_one_block)
{
    static const uint8_t f[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    for (size_t split = 0; split < sizeof(f); split++) {
        struct peer p;
        client_agreeing(&p, "permessage-deflate", 0);
        feed_split(&p, f, sizeof(f), split);
        ASSERT_EQ(p.msgs, 1);
        ASSERT_EQ(p.last_op, KITE_OP_TEXT);
        expect_last(&p, "Hello");
        ASSERT_EQ(p.close_code, 0);
        done(&p);
    }
}

/* §7.2.3.1: the same message fragmented; RSV1 on the first frame only (§6.1). */
TEST(rfc_hello_fragmented)
{
    static const uint8_t f[] = {0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00};
    for (size_t split = 0; split < sizeof(f); split++) {
        struct peer p;
        client_agreeing(&p, "permessage-deflate", 0);
        feed_split(&p, f, sizeof(f), split);
        ASSERT_EQ(p.msgs, 1);
        expect_last(&p, "Hello");
        done(&p);
    }
}

/* §7.2.3.2: with context takeover the second "Hello" refers back to the first. */
TEST(rfc_hello_twice_sliding_window)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
    feed(&p, BYTES(0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00));
    ASSERT_EQ(p.msgs, 2);
    expect_last(&p, "Hello");
    ASSERT_EQ(p.close_code, 0);
    done(&p);
}

/* §7.2.3.2: without context takeover both messages are compressed alike; a reference
 * into the previous message is then invalid data (close 1002). */
TEST(rfc_hello_twice_no_context_takeover)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate; server_no_context_takeover", 0);
    feed(&p, BYTES(0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
    feed(&p, BYTES(0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
    ASSERT_EQ(p.msgs, 2);
    expect_last(&p, "Hello");
    uint8_t back[] = {0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
    ASSERT_EQ(kite_codec_recv(p.c, back, sizeof(back), 0), (ssize_t)sizeof(back));
    ASSERT_EQ(p.msgs, 2);
    ASSERT_EQ(p.close_code, KITE_CLOSE_PROTOCOL_ERROR);
    ASSERT_EQ(p.close_err, KITE_ERR_PROTOCOL);
    done(&p);
}

/* §7.2.3.3: "Hello" in a DEFLATE block with no compression. */
TEST(rfc_hello_stored_block)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00));
    ASSERT_EQ(p.msgs, 1);
    expect_last(&p, "Hello");
    done(&p);
}

/* §7.2.3.4: "Hello" in a block with BFINAL set, then a byte the receiver ignores. With
 * context takeover the next message may still refer to it (§7.2.3.2's second frame). */
TEST(rfc_hello_bfinal_block)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00));
    ASSERT_EQ(p.msgs, 1);
    expect_last(&p, "Hello");
    feed(&p, BYTES(0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00));
    ASSERT_EQ(p.msgs, 2);
    expect_last(&p, "Hello");
    ASSERT_EQ(p.close_code, 0);
    done(&p);
}

/* §7.2.3.5: two DEFLATE blocks ("He", then "llo") in one message. */
TEST(rfc_hello_two_blocks)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9,
                   0x07, 0x00));
    ASSERT_EQ(p.msgs, 1);
    expect_last(&p, "Hello");
    done(&p);
}

/* §7.2.3.6: an empty fragment is the single byte 0x00; a message ending with one, and
 * an empty message (payload 0x00), decompress fine. An empty compressed payload is
 * taken as an empty message too (libwebsockets once crashed on it), and leaves the
 * stream usable. */
TEST(rfc_empty_fragment_and_empty_messages)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x01, 0x00));
    ASSERT_EQ(p.msgs, 1);
    ASSERT_EQ(p.last_len, 0);
    feed(&p, BYTES(0xc1, 0x00));
    ASSERT_EQ(p.msgs, 2);
    ASSERT_EQ(p.last_len, 0);
    feed(&p, BYTES(0x41, 0x00, 0x00, 0x00, 0x80, 0x00));
    ASSERT_EQ(p.msgs, 3);
    ASSERT_EQ(p.last_len, 0);
    /* "Hello" whose data is flushed in one fragment, then an empty fragment 0x00. */
    feed(&p, BYTES(0x41, 0x0b, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff,
                   0x80, 0x01, 0x00));
    ASSERT_EQ(p.msgs, 4);
    expect_last(&p, "Hello");
    feed(&p, BYTES(0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
    ASSERT_EQ(p.msgs, 5);
    expect_last(&p, "Hello");
    ASSERT_EQ(p.close_code, 0);
    done(&p);
}

/* ------------------------------------------------------------------------------------
 * Compression output
 */

/* §7.2.1 and §7.2.3.1/§7.2.3.2: what kite sends for "Hello", once and twice. Without
 * context takeover every message is compressed alone, so the same message compresses
 * the same way each time; "Hello" itself does not shrink, so it then goes plain. */
TEST(compress_hello_with_and_without_context_takeover)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_preset(&cfg, KITE_PMD_SPEED);
    cfg.level = 6;
    cfg.compress_threshold = 0;
    uint8_t out[64];
    struct peer p;
    server_answering(&p, &cfg, "permessage-deflate");
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, "Hello", 5), KITE_OK);
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, "Hello", 5), KITE_OK);
    size_t n = take_out(&p, out, sizeof(out));
    static const uint8_t two[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07,
                                  0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
    ASSERT_EQ(n, sizeof(two));
    ASSERT_MEMEQ(out, two, n);
    done(&p);

    server_answering(&p, &cfg, "permessage-deflate; server_no_context_takeover");
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, "Hello", 5), KITE_OK);
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, "Hello", 5), KITE_OK);
    n = take_out(&p, out, sizeof(out));
    ASSERT_EQ(n, 14);
    ASSERT_MEMEQ(out, "\x81\x05Hello\x81\x05Hello", 14);
    static const char hh[] = "Hello Hello Hello Hello";
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, hh, 23), KITE_OK);
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, hh, 23), KITE_OK);
    n = take_out(&p, out, sizeof(out));
    ASSERT_EQ(n % 2, 0);
    ASSERT_EQ(out[0], 0xc1);
    ASSERT(out[1] < 23);
    ASSERT_MEMEQ(out, out + n / 2, n / 2);
    done(&p);
}

/* §7.2.3.6: an empty message goes out as the one byte 0x00, also after other messages
 * (zlib refuses a second flush with nothing in between). */
TEST(compress_empty_message)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    cfg.compress_threshold = 0;
    struct peer p;
    server_answering(&p, &cfg, "permessage-deflate");
    uint8_t out[64];
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_BINARY, "", 0), KITE_OK);
    ASSERT_EQ(take_out(&p, out, sizeof(out)), 3);
    ASSERT_MEMEQ(out, "\xc2\x01\x00", 3);
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, "Hello", 5), KITE_OK);
    take_out(&p, out, sizeof(out));
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, "", 0), KITE_OK);
    ASSERT_EQ(take_out(&p, out, sizeof(out)), 3);
    ASSERT_MEMEQ(out, "\xc1\x01\x00", 3);
    done(&p);
}

/* Ktor's compressIfBiggerThan and compressIf: short or refused messages go out plain
 * (RSV1 clear, §6: a message may be sent uncompressed). */
static bool only_binary(enum kite_opcode t, const uint8_t *d, size_t n, void *ud)
{
    (void)d, (void)n;
    ++*(int *)ud;
    return t == KITE_OP_BINARY;
}

TEST(compress_threshold_and_predicate)
{
    static char big[500];
    memset(big, 'a', sizeof(big));
    int calls = 0;
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    cfg.compress_threshold = 100;
    cfg.compress_if = only_binary;
    cfg.compress_if_ud = &calls;
    struct peer p;
    server_answering(&p, &cfg, "permessage-deflate");
    static uint8_t out[2048];
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_BINARY, big, 99), KITE_OK);
    ASSERT_EQ(take_out(&p, out, sizeof(out)), 2 + 99);
    ASSERT_EQ(out[0], 0x82);
    ASSERT_EQ(calls, 0);
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_TEXT, big, 500), KITE_OK);
    ASSERT_EQ(take_out(&p, out, sizeof(out)), 4 + 500);
    ASSERT_EQ(out[0], 0x81);
    ASSERT_EQ(calls, 1);
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_BINARY, big, 500), KITE_OK);
    size_t n = take_out(&p, out, sizeof(out));
    ASSERT(n < 40);
    ASSERT_EQ(out[0], 0xc2);
    ASSERT_EQ(calls, 2);
    done(&p);
}

/* Without context takeover, data that does not shrink is sent as it is. */
TEST(incompressible_goes_plain_without_context_takeover)
{
    static uint8_t rnd[4000], out[8192];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 23);
    struct kite_pmd_config cfg;
    kite_pmd_config_preset(&cfg, KITE_PMD_MEMORY);
    struct peer p;
    server_answering(&p, &cfg, "permessage-deflate");
    ASSERT_EQ(kite_codec_send(p.c, KITE_OP_BINARY, rnd, sizeof(rnd)), KITE_OK);
    ASSERT_EQ(take_out(&p, out, sizeof(out)), 4 + sizeof(rnd));
    ASSERT_EQ(out[0], 0x82);
    ASSERT_MEMEQ(out + 4, rnd, sizeof(rnd));
    done(&p);
}

/* ------------------------------------------------------------------------------------
 * Client <-> server round trips
 */

struct pair {
    struct peer s, c;
    struct kite_ext_list *ls, *lc;
};

/* Negotiate as the real handshake does: the client's offer, the server's answer, the
 * client's check, then both codecs. */
static void pair_new(struct pair *pr, const struct kite_pmd_config *scfg,
                     const struct kite_pmd_config *ccfg, const struct kite_allocator *sa,
                     const struct kite_allocator *ca, uint64_t max_msg)
{
    memset(pr, 0, sizeof(*pr));
    pr->ls = list_with(scfg, NULL);
    pr->lc = list_with(ccfg, NULL);
    char offer[512], *resp;
    ssize_t n = kite_ext_offer(pr->lc, KITE_MODE_DEFAULT, offer, sizeof(offer));
    ASSERT(n > 0 && (size_t)n < sizeof(offer));
    struct kite_ext_chain *sch = NULL, *cch = NULL;
    ASSERT_EQ(kite_ext_negotiate(pr->ls, KITE_MODE_DEFAULT, offer, (size_t)n, sa, &sch), KITE_OK);
    ASSERT(sch);
    size_t rlen;
    resp = strdup(kite_ext_chain_header(sch, &rlen));
    ASSERT_EQ(kite_ext_accept(pr->lc, KITE_MODE_DEFAULT, resp, rlen, ca, &cch), KITE_OK);
    ASSERT(cch);
    free(resp);
    ASSERT(codec_with(KITE_ROLE_SERVER, sch, sa, &pr->s, max_msg));
    ASSERT(codec_with(KITE_ROLE_CLIENT, cch, ca, &pr->c, max_msg));
}

static void pair_free(struct pair *pr)
{
    peer_free(&pr->s);
    peer_free(&pr->c);
    kite_ext_list_free(pr->ls);
    kite_ext_list_free(pr->lc);
}

/* Move what `from` wrote into `to`, in pieces of `chunk` bytes (0: all at once). */
static void pump(struct peer *from, struct peer *to, size_t chunk)
{
    const uint8_t *o;
    size_t n = kite_codec_pending(from->c, &o);
    if (!n)
        return;
    uint8_t *buf = malloc(n);
    ASSERT(buf);
    memcpy(buf, o, n);
    kite_codec_consume(from->c, n);
    from->wire += n;
    for (size_t off = 0; off < n;) {
        size_t k = chunk ? KITE_MIN(chunk, n - off) : n - off;
        ssize_t r = kite_codec_recv(to->c, buf + off, k, 0);
        ASSERT(r >= 0);
        if (r == 0)
            break;
        off += (size_t)r;
    }
    free(buf);
}

/* JSON-like text: similar records with varying numbers. */
static size_t json_like(char *out, size_t cap, unsigned seed)
{
    size_t n = 0;
    out[n++] = '[';
    for (unsigned i = 0; n + 120 < cap; i++) {
        unsigned v = (seed + i) * 2654435761u;
        n += (size_t)snprintf(
            out + n, cap - n, "%s{\"id\":%u,\"user\":\"user%u\",\"score\":%u,\"active\":%s}",
            i ? "," : "", seed + i, v % 1000, v % 100000, (v & 1) ? "true" : "false");
    }
    out[n++] = ']';
    return n;
}

/* Send msgs both ways and check each side received exactly what was sent. */
static void exchange(struct pair *pr, int rounds, size_t chunk)
{
    static char buf[20000];
    uint32_t hs = 2166136261u, hc = 2166136261u;
    uint64_t ts = 0, tc = 0;
    for (int i = 0; i < rounds; i++) {
        size_t n = json_like(buf, 200 + (size_t)(i * 977) % sizeof(buf), (unsigned)i);
        ASSERT_EQ(kite_codec_send(pr->c.c, KITE_OP_TEXT, buf, n), KITE_OK);
        hs = fnv(hs, (const uint8_t *)buf, n), ts += n;
        pump(&pr->c, &pr->s, chunk);
        buf[0] = (char)i;
        ASSERT_EQ(kite_codec_send(pr->s.c, KITE_OP_BINARY, buf, n / 2), KITE_OK);
        hc = fnv(hc, (const uint8_t *)buf, n / 2), tc += n / 2;
        pump(&pr->s, &pr->c, chunk);
    }
    ASSERT_EQ(pr->s.msgs, rounds);
    ASSERT_EQ(pr->c.msgs, rounds);
    ASSERT_UEQ(pr->s.hash, hs);
    ASSERT_UEQ(pr->c.hash, hc);
    ASSERT_UEQ(pr->s.total, ts);
    ASSERT_UEQ(pr->c.total, tc);
    ASSERT_EQ(pr->s.close_code, 0);
    ASSERT_EQ(pr->c.close_code, 0);
}

/* Every parameter combination a client can ask for, against servers with and without
 * their own limits: messages go both ways over many rounds (context takeover builds
 * up), in one piece and in 7-byte pieces. Compression really happens: fewer bytes go
 * over the wire than were sent. */
TEST(round_trips_every_parameter_combination)
{
    static const uint8_t windows[] = {8, 9, 12, 15};
    int combos = 0;
    for (unsigned mask = 0; mask < 4; mask++) {
        for (size_t sw = 0; sw < sizeof(windows); sw++) {
            for (size_t cw = 0; cw < sizeof(windows); cw++) {
                struct kite_pmd_config cc, sc;
                kite_pmd_config_preset(&cc, KITE_PMD_SPEED);
                kite_pmd_config_preset(&sc, KITE_PMD_SPEED);
                cc.server_no_context_takeover = mask & 1;
                cc.client_no_context_takeover = (mask >> 1) & 1;
                cc.server_max_window_bits = windows[sw];
                cc.client_max_window_bits = windows[cw];
                sc.server_max_window_bits = windows[(sw + 1) % sizeof(windows)];
                sc.client_max_window_bits = windows[(cw + 2) % sizeof(windows)];
                cc.compress_threshold = sc.compress_threshold = 0;
                struct pair pr;
                pair_new(&pr, &sc, &cc, NULL, NULL, 1u << 20);
                struct kite_pmd_params ps, pc;
                ASSERT_EQ(kite_pmd_params(
                              kite_codec_extension(pr.s.c, &kite_ext_permessage_deflate), &ps),
                          KITE_OK);
                ASSERT_EQ(kite_pmd_params(
                              kite_codec_extension(pr.c.c, &kite_ext_permessage_deflate), &pc),
                          KITE_OK);
                /* Both sides agree; each limit is within what was asked. */
                ASSERT_EQ(ps.server_max_window_bits, pc.server_max_window_bits);
                ASSERT(ps.client_max_window_bits >= pc.client_max_window_bits);
                ASSERT(ps.server_max_window_bits <=
                       KITE_MIN(windows[sw], sc.server_max_window_bits));
                ASSERT(pc.client_max_window_bits <= windows[cw]);
                ASSERT_EQ(ps.server_no_context_takeover, (bool)(mask & 1));
                ASSERT_EQ(pc.client_no_context_takeover, (bool)((mask >> 1) & 1));
                exchange(&pr, 12, combos % 2 ? 7 : 0);
                ASSERT(pr.c.wire < pr.s.total);
                ASSERT(pr.s.wire < pr.c.total);
                pair_free(&pr);
                combos++;
            }
        }
    }
    ASSERT_EQ(combos, 64);
    kite_pmd_pool_trim();
}

/* Context takeover over many messages, and big messages: 1 MiB of random bytes (does
 * not compress; with takeover it must still go compressed) and 1 MiB of JSON-like text,
 * fed in odd pieces. */
TEST(round_trip_large_messages)
{
    size_t big = 1u << 20;
    uint8_t *rnd = malloc(big);
    char *json = malloc(big);
    ASSERT(rnd && json);
    uint32_t x = 99;
    for (size_t i = 0; i < big; i++)
        rnd[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 23);
    size_t jn = json_like(json, big, 7);
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    struct pair pr;
    pair_new(&pr, &cfg, &cfg, NULL, NULL, 2u << 20);
    exchange(&pr, 100, 0);
    ASSERT_EQ(kite_codec_send(pr.s.c, KITE_OP_BINARY, rnd, big), KITE_OK);
    pump(&pr.s, &pr.c, 65521);
    ASSERT_EQ(pr.c.last_len, big);
    ASSERT_MEMEQ(pr.c.last, rnd, big);
    uint64_t before = pr.c.wire;
    ASSERT_EQ(kite_codec_send(pr.c.c, KITE_OP_TEXT, json, jn), KITE_OK);
    pump(&pr.c, &pr.s, 4099);
    ASSERT_EQ(pr.s.last_len, jn);
    ASSERT_MEMEQ(pr.s.last, json, jn);
    ASSERT(pr.c.wire - before < jn / 4); /* JSON compresses well */
    ASSERT_EQ(pr.s.close_code, 0);
    ASSERT_EQ(pr.c.close_code, 0);
    pair_free(&pr);
    free(rnd);
    free(json);
}

/* Window 8 (§7.1.2): zlib cannot deflate into a 256-byte window, so kite uses Z_RLE in a
 * 9-bit stream. Check against a real 8-bit inflater: every distance fits in 256. */
TEST(window_8_stays_within_256_bytes)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_preset(&cfg, KITE_PMD_SPEED);
    cfg.compress_threshold = 0;
    struct peer p;
    server_answering(&p, &cfg, "permessage-deflate; server_max_window_bits=8");
    struct kite_pmd_params pp;
    kite_pmd_params(kite_codec_extension(p.c, &kite_ext_permessage_deflate), &pp);
    ASSERT_EQ(pp.server_max_window_bits, 8);
    static char msg[5000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = "abcdefghij0123456789"[(i * 7 + i / 300) % 20];
    static uint8_t out[16384], plain[8192];
    z_stream z;
    memset(&z, 0, sizeof(z));
    ASSERT_EQ(inflateInit2(&z, -8), Z_OK);
    for (int round = 0; round < 3; round++) {
        ASSERT_EQ(kite_codec_send(p.c, KITE_OP_BINARY, msg, sizeof(msg)), KITE_OK);
        size_t n = take_out(&p, out, sizeof(out) - 4);
        ASSERT_EQ(out[0], 0xc2);
        size_t hl = out[1] == 126 ? 4 : 2;
        memcpy(out + n, "\x00\x00\xff\xff", 4);
        z.next_in = out + hl;
        z.avail_in = (uInt)(n - hl + 4);
        z.next_out = plain;
        z.avail_out = sizeof(plain);
        int rc = inflate(&z, Z_SYNC_FLUSH);
        ASSERT(rc == Z_OK || rc == Z_BUF_ERROR);
        ASSERT_EQ(sizeof(plain) - z.avail_out, sizeof(msg));
        ASSERT_MEMEQ(plain, msg, sizeof(msg));
        ASSERT(n < sizeof(msg)); /* still compresses */
    }
    inflateEnd(&z);
    done(&p);
}

/* ------------------------------------------------------------------------------------
 * Limits and errors
 */

/* A compressed frame of `n` zero bytes (the sender's view: deflate + strip tail). */
static size_t bomb_frame(uint8_t *out, size_t cap, size_t n)
{
    uint8_t *zeros = calloc(1, n);
    z_stream z;
    memset(&z, 0, sizeof(z));
    ASSERT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = zeros;
    z.avail_in = (uInt)n;
    z.next_out = out + 4;
    z.avail_out = (uInt)(cap - 4);
    ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    size_t len = cap - 4 - z.avail_out - 4;
    deflateEnd(&z);
    free(zeros);
    ASSERT(len < 65536);
    out[0] = 0xc2;
    if (len < 126) {
        out[1] = (uint8_t)len;
        memmove(out + 2, out + 4, len);
        return len + 2;
    }
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return len + 4;
}

/* A small payload that inflates past max_message_size: close 1009, and no more than
 * the limit (plus one byte) was ever inflated: the peak of all memory (the message
 * buffer doubles, and a realloc briefly holds old and new) stays within a few times
 * the limit, far below the 50 MiB the bomb inflates to. */
TEST(decompression_bomb_stops_at_the_limit)
{
    static uint8_t frame[65536];
    size_t n = bomb_frame(frame, sizeof(frame), 50u << 20); /* 50 MiB of zeros */
    struct counter k = {0};
    struct kite_allocator a = counting(&k);
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    struct kite_ext_list *l = list_with(&cfg, NULL);
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "permessage-deflate", 18, &a, &ch), KITE_OK);
    struct peer p;
    uint64_t limit = 1u << 20;
    ASSERT(codec_with(KITE_ROLE_CLIENT, ch, &a, &p, limit));
    for (size_t off = 0; off < n; off += 1000)
        ASSERT(kite_codec_recv(p.c, frame + off, KITE_MIN((size_t)1000, n - off), 0) >= 0);
    ASSERT_EQ(p.msgs, 0);
    ASSERT_EQ(p.close_code, KITE_CLOSE_TOO_BIG);
    ASSERT_EQ(p.close_err, KITE_ERR_TOO_BIG);
    fprintf(stderr, "# bomb: %zu compressed bytes, peak memory %zu for a %llu limit\n", n, k.peak,
            (unsigned long long)limit);
    ASSERT(k.peak < 3 * limit + (512u << 10));
    peer_free(&p);
    ASSERT_EQ(k.live, 0);
    kite_ext_list_free(l);
}

/* The extension's own max_inflated_size, below max_message_size. */
TEST(max_inflated_size_option)
{
    static uint8_t frame[65536];
    size_t n = bomb_frame(frame, sizeof(frame), 200000);
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    cfg.max_inflated_size = 100000;
    struct kite_ext_list *l = list_with(&cfg, NULL);
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "permessage-deflate", 18, NULL, &ch), KITE_OK);
    struct peer p;
    ASSERT(codec_with(KITE_ROLE_CLIENT, ch, NULL, &p, 16u << 20));
    ASSERT(kite_codec_recv(p.c, frame, n, 0) >= 0);
    ASSERT_EQ(p.msgs, 0);
    ASSERT_EQ(p.close_code, KITE_CLOSE_TOO_BIG);
    peer_free(&p);
    /* Exactly at the limit is fine. */
    n = bomb_frame(frame, sizeof(frame), 100000);
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_DEFAULT, "permessage-deflate", 18, NULL, &ch), KITE_OK);
    ASSERT(codec_with(KITE_ROLE_CLIENT, ch, NULL, &p, 16u << 20));
    ASSERT(kite_codec_recv(p.c, frame, n, 0) >= 0);
    ASSERT_EQ(p.msgs, 1);
    ASSERT_EQ(p.last_len, 100000);
    ASSERT_EQ(p.close_code, 0);
    peer_free(&p);
    kite_ext_list_free(l);
}

/* RFC 7692 §6.1: RSV1 only on the first frame of a message; RSV1 on a continuation or
 * a control frame is a protocol error (1002). Without the extension RSV1 is one too
 * (RFC 6455 §5.2). */
TEST(rsv1_rules)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0x41, 0x03, 0xf2, 0x48, 0xcd, 0xc0, 0x04, 0xc9, 0xc9, 0x07, 0x00));
    ASSERT_EQ(p.msgs, 0);
    ASSERT_EQ(p.close_code, KITE_CLOSE_PROTOCOL_ERROR);
    done(&p);
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc9, 0x00));
    ASSERT_EQ(p.close_code, KITE_CLOSE_PROTOCOL_ERROR);
    done(&p);
    ASSERT(codec_with(KITE_ROLE_CLIENT, NULL, NULL, &p, 1000));
    feed(&p, BYTES(0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00));
    ASSERT_EQ(p.close_code, KITE_CLOSE_PROTOCOL_ERROR);
    peer_free(&p);
    /* An uncompressed message (RSV1 clear) is fine with the extension. */
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0x81, 0x05, 'H', 'e', 'l', 'l', 'o'));
    expect_last(&p, "Hello");
    done(&p);
}

/* Invalid compressed data: 1002. Inflated text that is not UTF-8: 1007 (RFC 6455 §8.1),
 * found as it is inflated. */
TEST(bad_compressed_data_and_bad_utf8)
{
    struct peer p;
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x03, 0xff, 0xff, 0xff));
    ASSERT_EQ(p.msgs, 0);
    ASSERT_EQ(p.close_code, KITE_CLOSE_PROTOCOL_ERROR);
    ASSERT_EQ(p.close_err, KITE_ERR_PROTOCOL);
    done(&p);
    /* "\xff" in a stored block, as text. */
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x07, 0x00, 0x01, 0x00, 0xfe, 0xff, 0xff, 0x00));
    ASSERT_EQ(p.msgs, 0);
    ASSERT_EQ(p.close_code, KITE_CLOSE_NOT_CONSISTENT);
    done(&p);
    /* Truncated UTF-8 at the end of the inflated message: "\xc3". */
    client_agreeing(&p, "permessage-deflate", 0);
    feed(&p, BYTES(0xc1, 0x07, 0x00, 0x01, 0x00, 0xfe, 0xff, 0xc3, 0x00));
    ASSERT_EQ(p.close_code, KITE_CLOSE_NOT_CONSISTENT);
    done(&p);
}

/* Raw mode: frames come as they are (compressed, RSV1 set); sends are not compressed. */
TEST(raw_mode_hands_frames_as_they_are)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    struct kite_ext_list *l = list_with(&cfg, NULL);
    kite_ext_list_set_raw_negotiation(l, true);
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite_ext_accept(l, KITE_MODE_RAW, "permessage-deflate", 18, NULL, &ch), KITE_OK);
    ASSERT(ch);
    struct kite_codec_config cc;
    kite_codec_config_init(&cc);
    cc.role = KITE_ROLE_CLIENT;
    cc.mode = KITE_MODE_RAW;
    cc.extensions = ch;
    struct kite_codec *c = kite_codec_new(&cc, NULL, NULL, 0);
    ASSERT(c);
    ASSERT(kite_codec_extension(c, &kite_ext_permessage_deflate) != NULL);
    uint8_t f[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    ASSERT_EQ(kite_codec_recv(c, f, sizeof(f), 0), (ssize_t)sizeof(f));
    ASSERT(!kite_codec_is_closed(c));
    static char big[300];
    memset(big, 'z', sizeof(big));
    ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, big, sizeof(big)), KITE_OK);
    const uint8_t *o;
    ASSERT_EQ(kite_codec_pending(c, &o), 8 + sizeof(big));
    ASSERT_EQ(o[0], 0x81);
    kite_codec_free(c);
    kite_ext_list_free(l);
}

/* ------------------------------------------------------------------------------------
 * Memory: pooling, out of memory, presets
 */

/* Without context takeover nothing stays with the session between messages: the
 * streams go back to the thread's pool. With it, they stay, sized by the window. */
TEST(no_context_takeover_holds_nothing_between_messages)
{
    kite_pmd_pool_trim();
    struct kite_pmd_config cfg;
    kite_pmd_config_preset(&cfg, KITE_PMD_MEMORY);
    cfg.compress_threshold = 0;
    struct pair pr;
    pair_new(&pr, &cfg, &cfg, NULL, NULL, 1u << 20);
    exchange(&pr, 5, 0);
    void *si = kite_codec_extension(pr.s.c, &kite_ext_permessage_deflate);
    void *ci = kite_codec_extension(pr.c.c, &kite_ext_permessage_deflate);
    ASSERT_EQ(kite_pmd_memory(si), 0);
    ASSERT_EQ(kite_pmd_memory(ci), 0);
    size_t bytes;
    ASSERT(kite_pmd_pool_size(&bytes) >= 2);
    ASSERT(kite_pmd_pool_size(NULL) <= KITE__PMD_POOL_MAX);
    ASSERT(bytes > 0);
    pair_free(&pr);
    kite_pmd_pool_trim();
    ASSERT_EQ(kite_pmd_pool_size(&bytes), 0);
    ASSERT_EQ(bytes, 0);

    kite_pmd_config_preset(&cfg, KITE_PMD_SPEED);
    pair_new(&pr, &cfg, &cfg, NULL, NULL, 1u << 20);
    exchange(&pr, 5, 0);
    si = kite_codec_extension(pr.s.c, &kite_ext_permessage_deflate);
    ASSERT(kite_pmd_memory(si) > (1u << 15) + (1u << 17)); /* inflate 32K + deflate 128K+ */
    ASSERT_EQ(kite_pmd_pool_size(NULL), 0);
    pair_free(&pr);
}

/*
 * Out of memory at every allocation of a compressed exchange (negotiation, instances,
 * zlib's own state, buffers), for both roles, with and without context takeover: no
 * crash, no leak, and a clean error where it happens.
 */
static ssize_t oom_move(struct peer *from, struct peer *to)
{
    static uint8_t wire[8192];
    const uint8_t *o;
    size_t k = kite_codec_pending(from->c, &o);
    ASSERT(k <= sizeof(wire));
    if (k)
        memcpy(wire, o, k);
    kite_codec_consume(from->c, k);
    return kite_codec_recv(to->c, wire, k, 0);
}

static void oom_run(const struct kite_pmd_config *cfg, long fail_at, bool *failed)
{
    struct kite_test_alloc st = {.fail_at = fail_at};
    const struct kite_allocator *a = kite_test_allocator(&st);
    struct kite_ext_list *ls = list_with(cfg, NULL), *lc = list_with(cfg, NULL);
    char offer[256];
    ssize_t n = kite_ext_offer(lc, KITE_MODE_DEFAULT, offer, sizeof(offer));
    struct kite_ext_chain *sch = NULL, *cch = NULL;
    struct peer s, c;
    memset(&s, 0, sizeof(s));
    memset(&c, 0, sizeof(c));
    int rc = kite_ext_negotiate(ls, KITE_MODE_DEFAULT, offer, (size_t)n, a, &sch);
    if (rc == KITE_OK) {
        size_t rl;
        const char *r = kite_ext_chain_header(sch, &rl);
        rc = kite_ext_accept(lc, KITE_MODE_DEFAULT, r, rl, a, &cch);
    }
    if (rc == KITE_OK && !codec_with(KITE_ROLE_SERVER, sch, a, &s, 1u << 20))
        rc = KITE_ERR_NOMEM;
    else if (rc == KITE_OK)
        sch = NULL;
    if (rc == KITE_OK && !codec_with(KITE_ROLE_CLIENT, cch, a, &c, 1u << 20))
        rc = KITE_ERR_NOMEM;
    else if (rc == KITE_OK)
        cch = NULL;
    if (rc != KITE_OK)
        ASSERT_EQ(rc, KITE_ERR_NOMEM);
    static char buf[3000];
    for (int i = 0; rc == KITE_OK && i < 4 && !s.close_code && !c.close_code; i++) {
        size_t len = json_like(buf, sizeof(buf) - (size_t)i * 500, (unsigned)i);
        int r1 = kite_codec_send(c.c, KITE_OP_TEXT, buf, len);
        ASSERT(r1 == KITE_OK || r1 == KITE_ERR_NOMEM || r1 == KITE_ERR_CLOSED);
        int msgs = s.msgs;
        ssize_t r2 = oom_move(&c, &s);
        ASSERT(r2 >= 0 || r2 == KITE_ERR_NOMEM);
        if (r1 == KITE_OK && !s.close_code) {
            ASSERT_EQ(s.msgs, msgs + 1);
            ASSERT_EQ(s.last_len, len);
            ASSERT_MEMEQ(s.last, buf, len);
        }
        if (r2 == KITE_ERR_NOMEM)
            ASSERT_EQ(s.close_code, KITE_CLOSE_INTERNAL_ERROR);
        int r3 = kite_codec_send(s.c, KITE_OP_BINARY, buf, len);
        ASSERT(r3 == KITE_OK || r3 == KITE_ERR_NOMEM || r3 == KITE_ERR_CLOSED);
        ASSERT(oom_move(&s, &c) >= 0 || c.close_code == KITE_CLOSE_INTERNAL_ERROR);
    }
    kite_ext_chain_free(sch);
    kite_ext_chain_free(cch);
    peer_free(&s);
    peer_free(&c);
    kite_pmd_pool_trim();
    ASSERT_EQ(st.live, 0);
    *failed = st.failed;
    kite_ext_list_free(ls);
    kite_ext_list_free(lc);
}

TEST(oom_every_allocation_of_a_compressed_exchange)
{
    long total = 0;
    for (int variant = 0; variant < 2; variant++) {
        struct kite_pmd_config cfg;
        kite_pmd_config_preset(&cfg, variant ? KITE_PMD_MEMORY : KITE_PMD_BALANCED);
        cfg.compress_threshold = 0;
        long n;
        for (n = 1;; n++) {
            bool failed;
            oom_run(&cfg, n, &failed);
            if (!failed)
                break;
            ASSERT(n < 2000);
        }
        ASSERT(n > 10);
        total += n - 1;
    }
    fprintf(stderr, "# %ld allocation failures injected\n", total);
}

/*
 * What each preset costs and gives, measured: a server and a client exchange 200
 * JSON-like messages of 200-2000 bytes each way; then, idle, the bytes the server's
 * session holds (codec, chain, zlib), and the compression ratio (wire bytes / message
 * bytes). docs/extensions.md quotes these figures.
 */
TEST(preset_memory_and_ratio)
{
    static const char *names[] = {"balanced", "speed", "memory", "max-ratio"};
    size_t held[4];
    for (int i = 0; i < 4; i++) {
        enum kite_pmd_preset pre;
        ASSERT_EQ(kite_pmd_preset_by_name(names[i], &pre), KITE_OK);
        struct kite_pmd_config cfg;
        kite_pmd_config_preset(&cfg, pre);
        struct counter k = {0};
        struct kite_allocator a = counting(&k);
        struct pair pr;
        pair_new(&pr, &cfg, &cfg, &a, NULL, 1u << 20);
        static char buf[2100];
        uint64_t raw = 0;
        size_t peak_before = k.live;
        for (int m = 0; m < 200; m++) {
            size_t len = json_like(buf, 200 + (size_t)(m * 131) % 1900, (unsigned)m);
            ASSERT_EQ(kite_codec_send(pr.c.c, KITE_OP_TEXT, buf, len), KITE_OK);
            pump(&pr.c, &pr.s, 0);
            ASSERT_EQ(kite_codec_send(pr.s.c, KITE_OP_TEXT, buf, len), KITE_OK);
            pump(&pr.s, &pr.c, 0);
            raw += len;
        }
        ASSERT_EQ(pr.s.msgs, 200);
        ASSERT_EQ(pr.c.msgs, 200);
        kite_pmd_pool_trim(); /* pooled streams belong to the thread, not the session */
        held[i] = k.live;
        double ratio = (double)pr.s.wire / (double)raw;
        fprintf(stderr,
                "# preset %-9s: %6zu bytes held by an idle server session "
                "(%zu zlib), peak %zu; ratio %.3f\n",
                names[i], k.live,
                kite_pmd_memory(kite_codec_extension(pr.s.c, &kite_ext_permessage_deflate)),
                k.peak - peak_before, ratio);
        ASSERT(ratio < 0.5);
        pair_free(&pr);
        kite_pmd_pool_trim();
        ASSERT_EQ(k.live, 0);
    }
    /* memory < balanced < speed <= max-ratio */
    ASSERT(held[2] < 1024);
    ASSERT(held[2] < held[0] && held[0] < held[1] && held[1] <= held[3]);
}

/* ------------------------------------------------------------------------------------
 * Parking (pool_streams): a busy session keeps its borrowed streams from message to
 * message; the idle hook parks them (history window saved, stream pooled)
 */

/* The server instance of the balanced preset, as negotiated with a client that offered
 * client_max_window_bits: 13-bit windows both ways, context takeover, pool_streams. */
static void *balanced_server(struct kite_ext_list **l, struct kite_ext_chain **ch)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    cfg.compress_threshold = 0;
    *l = list_with(&cfg, NULL);
    static const char offer[] = "permessage-deflate; client_max_window_bits";
    ASSERT_EQ(kite_ext_negotiate(*l, KITE_MODE_DEFAULT, offer, sizeof(offer) - 1, NULL, ch),
              KITE_OK);
    void *inst = kite_ext_chain_get(*ch, &kite_ext_permessage_deflate);
    ASSERT(inst);
    struct kite_pmd_params pp;
    ASSERT_EQ(kite_pmd_params(inst, &pp), KITE_OK);
    ASSERT_EQ(pp.server_max_window_bits, 13);
    ASSERT_EQ(pp.client_max_window_bits, 13);
    return inst;
}

/* Message i of a stream of similar ~300-byte JSON texts. */
static size_t park_msg(char *buf, size_t cap, unsigned i)
{
    return json_like(buf, KITE_MIN(cap, 200 + (size_t)(i * 37) % 300), i);
}

/*
 * What goes on the wire is exactly what plain zlib makes with RFC 7692 context takeover
 * when the compressor is restarted at each park with the last 2^13 bytes sent as its
 * preset dictionary, and runs on between parks: messages of a burst (no idle between
 * them) compress like a kept stream, and the first message after a park like the
 * per-message priming it replaces. Bursts of 1 (an idle after every message: what a
 * send outside a callback gets) through 40, more than a window's worth.
 */
TEST(parked_and_held_compressor_match_zlib_with_the_history)
{
    struct kite_ext_list *l;
    struct kite_ext_chain *ch;
    void *inst = balanced_server(&l, &ch);
    const struct kite_extension *x = &kite_ext_permessage_deflate;
    static const unsigned bursts[] = {1, 1, 3, 16, 1, 40, 2, 1, 25};
    static uint8_t sent[1 << 16], ref[4096];
    static char msg[600];
    size_t nsent = 0;
    z_stream z;
    unsigned k = 0;
    unsigned long primes = kite__pmd_primes;
    struct kite_buf b = {0};
    for (size_t bi = 0; bi < KITE_ARRAY_LEN(bursts); bi++) {
        memset(&z, 0, sizeof(z));
        ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -13, 8, Z_DEFAULT_STRATEGY), Z_OK);
        size_t h = KITE_MIN(nsent, (size_t)8192);
        if (h)
            ASSERT_EQ(deflateSetDictionary(&z, sent + nsent - h, (uInt)h), Z_OK);
        for (unsigned j = 0; j < bursts[bi]; j++, k++) {
            size_t n = park_msg(msg, sizeof(msg), k);
            z.next_in = (Bytef *)msg;
            z.avail_in = (uInt)n;
            z.next_out = ref;
            z.avail_out = sizeof(ref);
            ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
            ASSERT(z.avail_in == 0 && z.avail_out > 0);
            size_t rn = sizeof(ref) - z.avail_out - 4;

            struct kite_ext_msg m = {KITE_OP_TEXT, 0, (const uint8_t *)msg, n};
            struct kite_ext_sink s;
            b.off = b.len = 0;
            kite__ext_sink_init(&s, &b, NULL, 0, UINT64_MAX);
            ASSERT_EQ(x->process_outgoing(inst, &m, &s), KITE_OK);
            ASSERT_EQ(m.rsv, KITE_RSV1);
            ASSERT_EQ(s.len, rn);
            ASSERT_MEMEQ(kite__ext_sink_data(&s), ref, rn);
            /* Busy: the stream stays, far more than the window. */
            ASSERT(kite_pmd_memory(inst) > 64 * 1024);
            ASSERT(nsent + n <= sizeof(sent));
            memcpy(sent + nsent, msg, n);
            nsent += n;
        }
        deflateEnd(&z);
        x->idle(inst);
        /* Parked: only the history is left, at most the window. */
        size_t held = kite_pmd_memory(inst);
        ASSERT(held > 0 && held <= 8192);
        ASSERT_EQ(held, (KITE_MIN(nsent, (size_t)8192) + 511) & ~(size_t)511);
        x->idle(inst); /* again: nothing to do */
        ASSERT_EQ(kite_pmd_memory(inst), held);
    }
    ASSERT(nsent > 2 * 8192 + 1024); /* zlib's window slid (at 2 * 2^13 - 262 bytes) */
    /* One priming per burst after the first (which starts with no history). */
    ASSERT_UEQ(kite__pmd_primes - primes, KITE_ARRAY_LEN(bursts) - 1);
    kite__buf_free(&b, NULL);
    kite_ext_chain_free(ch);
    kite_ext_list_free(l);
    kite_pmd_pool_trim();
}

/*
 * large_message_size: a message of at least that many bytes is compressed at
 * large_message_level, the others at level, in one stream whose history runs on (context
 * takeover): the wire bytes are exactly zlib's with deflateParams switching the level
 * between messages, parks included (a pooled stream goes back at `level`).
 */
TEST(large_messages_compress_at_their_own_level)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    ASSERT_UEQ(cfg.large_message_size, (size_t)64 << 10); /* the balanced preset's */
    ASSERT_EQ(cfg.large_message_level, 1);
    cfg.compress_threshold = 0;
    cfg.large_message_size = 300;
    struct kite_ext_list *l = list_with(&cfg, NULL);
    static const char offer[] = "permessage-deflate; client_max_window_bits";
    struct kite_ext_chain *ch;
    ASSERT_EQ(kite_ext_negotiate(l, KITE_MODE_DEFAULT, offer, sizeof(offer) - 1, NULL, &ch),
              KITE_OK);
    void *inst = kite_ext_chain_get(ch, &kite_ext_permessage_deflate);
    ASSERT(inst);
    const struct kite_extension *x = &kite_ext_permessage_deflate;
    static const unsigned bursts[] = {5, 1, 12, 3};
    static uint8_t sent[1 << 15], ref[4096];
    static char msg[600];
    size_t nsent = 0;
    unsigned k = 0, large = 0, small = 0;
    struct kite_buf b = {0};
    for (size_t bi = 0; bi < KITE_ARRAY_LEN(bursts); bi++) {
        z_stream z;
        memset(&z, 0, sizeof(z));
        ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -13, 8, Z_DEFAULT_STRATEGY), Z_OK);
        size_t h = KITE_MIN(nsent, (size_t)8192);
        if (h)
            ASSERT_EQ(deflateSetDictionary(&z, sent + nsent - h, (uInt)h), Z_OK);
        for (unsigned j = 0; j < bursts[bi]; j++, k++) {
            size_t n = park_msg(msg, sizeof(msg), k);
            bool big = n >= 300;
            big ? large++ : small++;
            uint8_t none[16];
            z.next_out = none;
            z.avail_out = sizeof(none);
            ASSERT_EQ(deflateParams(&z, big ? 1 : 6, Z_DEFAULT_STRATEGY), Z_OK);
            z.next_in = (Bytef *)msg;
            z.avail_in = (uInt)n;
            z.next_out = ref;
            z.avail_out = sizeof(ref);
            ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
            size_t rn = sizeof(ref) - z.avail_out - 4;

            struct kite_ext_msg m = {KITE_OP_TEXT, 0, (const uint8_t *)msg, n};
            struct kite_ext_sink sk;
            b.off = b.len = 0;
            kite__ext_sink_init(&sk, &b, NULL, 0, UINT64_MAX);
            ASSERT_EQ(x->process_outgoing(inst, &m, &sk), KITE_OK);
            ASSERT_EQ(sk.len, rn);
            ASSERT_MEMEQ(kite__ext_sink_data(&sk), ref, rn);
            memcpy(sent + nsent, msg, n);
            nsent += n;
        }
        deflateEnd(&z);
        x->idle(inst);
    }
    ASSERT(large >= 5 && small >= 5); /* both levels were used, in both orders */
    kite__buf_free(&b, NULL);
    kite_ext_chain_free(ch);
    kite_ext_list_free(l);
    kite_pmd_pool_trim();
}

/* The level for large messages is checked like the other one. */
TEST(large_message_level_is_validated)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    cfg.large_message_level = 10;
    struct kite_ext_list *l = kite_ext_list_new(NULL);
    ASSERT(l);
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &cfg), KITE_ERR_INVALID);
    cfg.large_message_level = 9;
    ASSERT_EQ(kite_ext_list_install(l, &kite_ext_permessage_deflate, &cfg), KITE_OK);
    kite_ext_list_free(l);
}

/* Inflate one message given in `pieces` chunks through the instance, calling idle
 * between chunks when idle_inside; returns the inflated length in b. */
static void park_inflate(const struct kite_extension *x, void *inst, const uint8_t *in,
                         size_t n, unsigned pieces, bool idle_inside, struct kite_buf *b)
{
    b->off = b->len = 0;
    size_t step = (n + pieces - 1) / pieces;
    for (size_t off = 0; off < n || off == 0;) {
        size_t len = KITE_MIN(step, n - off);
        struct kite_ext_chunk c = {KITE_OP_TEXT, KITE_RSV1, off == 0, off + len == n,
                                   in + off, len};
        struct kite_ext_sink s;
        kite__ext_sink_init(&s, b, NULL, 0, UINT64_MAX);
        ASSERT_EQ(x->process_incoming(inst, &c, &s), KITE_OK);
        b->len += s.len;
        off += len;
        if (off == n)
            break;
        if (idle_inside) {
            x->idle(inst); /* between two chunks: the stream must stay */
            ASSERT(kite_pmd_memory(inst) > 8192 + 1024);
        }
    }
}

/*
 * The decompressor: a client compressing with one kept stream (context takeover, so
 * every message may refer to any earlier one within the window) is understood whatever
 * the server's parking pattern: idle after every message, after bursts, and between
 * the chunks of a message (which must not park: the stream is mid-message).
 */
TEST(parked_and_held_decompressor_follow_a_kept_stream)
{
    struct kite_ext_list *l;
    struct kite_ext_chain *ch;
    void *inst = balanced_server(&l, &ch);
    const struct kite_extension *x = &kite_ext_permessage_deflate;
    z_stream z;
    memset(&z, 0, sizeof(z));
    ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -13, 8, Z_DEFAULT_STRATEGY), Z_OK);
    static char msg[600];
    static uint8_t wire[4096];
    struct kite_buf b = {0};
    unsigned long primes = kite__pmd_primes;
    unsigned parks = 0;
    for (unsigned k = 0; k < 200; k++) {
        size_t n = park_msg(msg, sizeof(msg), k);
        z.next_in = (Bytef *)msg;
        z.avail_in = (uInt)n;
        z.next_out = wire;
        z.avail_out = sizeof(wire);
        ASSERT_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
        size_t wn = sizeof(wire) - z.avail_out - 4;
        park_inflate(x, inst, wire, wn, 1 + k % 3, k % 5 == 2, &b);
        ASSERT_EQ(b.len, n);
        ASSERT_MEMEQ(b.data + b.off, msg, n);
        if (k % 7 == 0 || k % 7 == 3) {
            x->idle(inst);
            parks++;
            ASSERT(kite_pmd_memory(inst) <= 8192);
        } else {
            ASSERT(kite_pmd_memory(inst) > 8192 + 1024); /* held: window + inflate state */
        }
    }
    deflateEnd(&z);
    /* Primed only after a park (and not after the first one, if nothing came yet). */
    ASSERT(kite__pmd_primes - primes <= parks);
    ASSERT(kite__pmd_primes - primes >= parks - 1);
    kite__buf_free(&b, NULL);
    kite_ext_chain_free(ch);
    kite_ext_list_free(l);
    kite_pmd_pool_trim();
}

/* A server codec that echoes every message from its callback, and notes what its
 * instance held then. */
struct echo_peer {
    struct peer p; /* first: the shared callbacks see a struct peer */
    size_t max_held_in_cb;
};

static int echo_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                        size_t len, void *ud)
{
    struct echo_peer *e = ud;
    on_message(c, type, data, len, &e->p);
    ASSERT_EQ(kite_codec_send(c, type, data, len), KITE_OK);
    size_t held = kite_pmd_memory(kite_codec_extension(c, &kite_ext_permessage_deflate));
    e->max_held_in_cb = KITE_MAX(e->max_held_in_cb, held);
    return KITE_OK;
}

static const struct kite_codec_callbacks echo_cbs = {
    .on_message = echo_message,
    .on_close = on_close,
};

/*
 * Through the codec: a read of 16 messages that the server echoes from on_message
 * primes each direction once (not 32 times), holds the streams while it runs and
 * parks them when kite_codec_recv() returns; sends outside a callback park at once.
 * The client gets back exactly what it sent.
 */
TEST(codec_parks_at_the_end_of_each_read_and_of_lone_sends)
{
    struct kite_pmd_config cfg;
    kite_pmd_config_init(&cfg);
    cfg.compress_threshold = 0;
    struct pair pr;
    pair_new(&pr, &cfg, &cfg, NULL, NULL, 1u << 20);
    struct echo_peer e;
    memset(&e, 0, sizeof(e));
    e.p = pr.s;
    kite_codec_set_user_data(pr.s.c, &e);
    /* kite_codec_new copied the callbacks pointer: swap in the echoing ones. */
    pr.s.c->cb = &echo_cbs;
    void *si = kite_codec_extension(pr.s.c, &kite_ext_permessage_deflate);
    static char msg[600];
    uint32_t h = 2166136261u;
    for (int round = 0; round < 3; round++) {
        for (unsigned i = 0; i < 16; i++) {
            size_t n = park_msg(msg, sizeof(msg), (unsigned)round * 16 + i);
            ASSERT_EQ(kite_codec_send(pr.c.c, KITE_OP_TEXT, msg, n), KITE_OK);
            h = fnv(h, (const uint8_t *)msg, n);
        }
        unsigned long primes = kite__pmd_primes;
        e.max_held_in_cb = 0;
        pump(&pr.c, &e.p, 0); /* one kite_codec_recv() with 16 messages */
        ASSERT_EQ(e.p.msgs, 16 * (round + 1));
        ASSERT_UEQ(kite__pmd_primes - primes, round ? 2u : 0u); /* no history at first */
        ASSERT(e.max_held_in_cb > 64 * 1024);                    /* held while busy */
        ASSERT(kite_pmd_memory(si) <= 2 * 8192);                 /* parked after */
        pump(&e.p, &pr.c, 0);
        ASSERT_EQ(pr.c.msgs, 16 * (round + 1));
        ASSERT_UEQ(pr.c.hash, h);
        ASSERT_UEQ(e.p.hash, h);
    }
    /* Lone sends: parked after each, primed before each. */
    unsigned long primes = kite__pmd_primes;
    for (unsigned i = 0; i < 4; i++) {
        size_t n = park_msg(msg, sizeof(msg), 100 + i);
        ASSERT_EQ(kite_codec_send(e.p.c, KITE_OP_BINARY, msg, n), KITE_OK);
        ASSERT(kite_pmd_memory(si) <= 2 * 8192);
        h = fnv(h, (const uint8_t *)msg, n);
    }
    ASSERT_UEQ(kite__pmd_primes - primes, 4u);
    pump(&e.p, &pr.c, 0);
    ASSERT_EQ(pr.c.msgs, 52);
    ASSERT_UEQ(pr.c.hash, h);
    ASSERT_EQ(pr.c.close_code, 0);
    pr.s = e.p;
    pair_free(&pr);
    kite_pmd_pool_trim();
}

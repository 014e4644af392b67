/*
 * Unit tests for the codec's fast paths and the APIs for large messages, each checked
 * against the general path it stands for:
 *   - kite__frame_parse_whole() against kite__frame_parse()'s HEADER and DATA events
 *     (RFC 6455 §5.2), on random frames, valid and not;
 *   - the short-input ASCII test of kite__utf8_feed() against a byte-by-byte reference
 *     (RFC 3629 §4);
 *   - kite_codec_recv_space() (reading into the codec's buffer) and
 *     kite_codec_send_direct() (writing before queueing) against plain recv and send;
 *   - kite_codec_new_in(), shared_options, and the per-thread cache of large buffers;
 *   - the hot loop of kite_codec_recv() (whole small masked messages handed over without
 *     the parser's events) and the inline small send, against feeding the same bytes
 *     one at a time, which never takes them; and their unmasking and copying helpers.
 */
#include "codec/conn_internal.h"
#include "codec/utf8.h"
#include "test.h"

/* A small deterministic generator (xorshift64*). */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* A frame built here, independently of the codec's writer (RFC 6455 §5.2): `len7` picks
 * the length encoding (0-125 literal, 126 or 127 extended with value `len`), so
 * non-minimal encodings can be made on purpose. */
static size_t put_frame(uint8_t *o, uint8_t b0, bool masked, unsigned len7, uint64_t len,
                        const uint8_t key[4], const uint8_t *payload, size_t plen)
{
    size_t n = 0;
    o[n++] = b0;
    o[n++] = (uint8_t)((masked ? 0x80 : 0) | len7);
    if (len7 == 126) {
        o[n++] = (uint8_t)(len >> 8);
        o[n++] = (uint8_t)len;
    } else if (len7 == 127) {
        for (int i = 7; i >= 0; i--)
            o[n++] = (uint8_t)(len >> (8 * i));
    }
    if (masked) {
        memcpy(o + n, key, 4);
        n += 4;
    }
    for (size_t i = 0; i < plen; i++)
        o[n + i] = (uint8_t)(masked ? payload[i] ^ key[i % 4] : payload[i]);
    return n + plen;
}

/* The parser state that the events leave behind and that callers read. */
static void same_parser(const struct kite__frame_parser *a, const struct kite__frame_parser *b)
{
    ASSERT_EQ(a->hdr.opcode, b->hdr.opcode);
    ASSERT_EQ(a->hdr.fin, b->hdr.fin);
    ASSERT_EQ(a->hdr.rsv, b->hdr.rsv);
    ASSERT_EQ(a->hdr.masked, b->hdr.masked);
    ASSERT_UEQ(a->hdr.payload_len, b->hdr.payload_len);
    if (a->hdr.masked)
        ASSERT(memcmp(a->hdr.mask, b->hdr.mask, 4) == 0);
    ASSERT_EQ(a->in_message, b->in_message);
    ASSERT_EQ(a->msg_opcode, b->msg_opcode);
    ASSERT_EQ(a->state, b->state);
    ASSERT(kite__frame_idle(a) && kite__frame_idle(b));
}

/*
 * RFC 6455 §5.2: the one-call parse of a whole frame must agree with the event parser
 * on every frame: the same header, the same unmasked payload and the same state after
 * it, or, when it declines, no change at all (the event parser then reports the error,
 * or waits for more input).
 */
TEST(parse_whole_agrees_with_events)
{
    static const uint8_t firsts[] = {0x81, 0x82, 0x01, 0x02, 0x80, 0x00, 0x88, 0x89, 0x8A,
                                     0x09, 0x83, 0x8B, 0xC1, 0xA2, 0x91, 0xC0, 0x0F};
    long whole = 0, declined = 0;
    for (int iter = 0; iter < 40000; iter++) {
        struct kite__frame_parser p0;
        enum kite_role role = (rnd() & 1) ? KITE_ROLE_CLIENT : KITE_ROLE_SERVER;
        kite__frame_parser_init(&p0, role, (rnd() & 3) ? 1000 : 100, (uint8_t)(rnd() & 0x70),
                                (rnd() & 3) != 0);
        if (rnd() & 1) { /* sometimes inside a fragmented message (§5.4) */
            p0.in_message = true;
            p0.msg_opcode = (rnd() & 1) ? KITE_OP_TEXT : KITE_OP_BINARY;
        }
        uint8_t payload[400], key[4], buf[512];
        size_t plen = (size_t)(rnd() % 300);
        for (size_t i = 0; i < plen; i++)
            payload[i] = (uint8_t)rnd();
        for (int i = 0; i < 4; i++)
            key[i] = (uint8_t)rnd();
        bool masked = (rnd() % 8) ? role == KITE_ROLE_SERVER : role != KITE_ROLE_SERVER;
        unsigned len7 = plen < 126 ? (unsigned)plen : 126;
        if ((rnd() % 8) == 0)
            len7 = (rnd() & 1) ? 126 : 127; /* possibly non-minimal (§5.2) */
        uint8_t b0 = firsts[rnd() % sizeof(firsts)];
        size_t n = put_frame(buf, b0, masked, len7, plen, key, payload, plen);
        size_t avail = (rnd() % 4) ? n : (size_t)(rnd() % (n + 1)); /* sometimes cut */

        uint8_t a[512], b[512];
        memcpy(a, buf, n);
        memcpy(b, buf, n);
        struct kite__frame_parser pw, pe;
        memcpy(&pw, &p0, sizeof(pw));
        memcpy(&pe, &p0, sizeof(pe));
        struct kite__frame_event ew, ee;
        size_t cw = 0;
        bool ok = kite__frame_parse_whole(&pw, a, avail, &cw, &ew);

        size_t c1 = 0, c2 = 0;
        enum kite__fev e1 = kite__frame_parse(&pe, b, avail, &c1, &ee);
        if (!ok) {
            declined++;
            ASSERT(memcmp(&pw, &p0, sizeof(pw)) == 0); /* untouched */
            ASSERT(memcmp(a, buf, n) == 0);
            /* Declined: the event parser does not get a whole frame out of it either. */
            if (e1 == KITE__FEV_HEADER) {
                enum kite__fev e2 = kite__frame_parse(&pe, b + c1, avail - c1, &c2, &ee);
                ASSERT(e2 != KITE__FEV_DATA || !ee.frame_end || ee.len != pe.hdr.payload_len);
            }
            continue;
        }
        whole++;
        ASSERT_EQ(e1, KITE__FEV_HEADER);
        enum kite__fev e2 = kite__frame_parse(&pe, b + c1, avail - c1, &c2, &ee);
        ASSERT_EQ(e2, KITE__FEV_DATA);
        ASSERT(ee.frame_end);
        ASSERT_EQ(cw, c1 + c2);
        ASSERT_EQ(ew.len, ee.len);
        ASSERT(ew.frame_end);
        ASSERT_EQ(ew.len, plen);
        ASSERT(memcmp(ew.data, payload, plen) == 0); /* unmasked in place (§5.3) */
        ASSERT(memcmp(ee.data, payload, plen) == 0);
        same_parser(&pw, &pe);
    }
    fprintf(stderr, "# %ld whole, %ld declined\n", whole, declined);
    ASSERT(whole > 5000);
    ASSERT(declined > 5000);
}

/* Byte-at-a-time UTF-8 check (RFC 3629 §4), written for this test. */
static bool ref_utf8(const uint8_t *s, size_t n, bool *open)
{
    size_t i = 0;
    *open = false;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return false;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n) {
                *open = true;
                return true;
            }
            uint8_t d = s[i + j];
            if (j == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF))
                return false;
        }
        i += k + 1;
    }
    return true;
}

/* RFC 3629 §4 (RFC 6455 §8.1): short inputs, which take the ASCII word test first,
 * give the validator's answer for every length up to past the short limit, with one
 * byte of every kind (ASCII, continuation, lead, invalid) at every position. */
TEST(utf8_short_inputs_match_reference)
{
    static const uint8_t odd[] = {0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED,
                                  0xEF, 0xF0, 0xF4, 0xF5, 0xFF};
    uint8_t s[80];
    for (size_t len = 0; len <= 72; len++) {
        for (size_t pos = 0; pos < len || (len == 0 && pos == 0); pos++) {
            for (size_t k = 0; k < sizeof(odd); k++) {
                for (size_t i = 0; i < len; i++)
                    s[i] = (uint8_t)('a' + i % 26);
                if (len)
                    s[pos] = odd[k];
                bool open;
                bool ok = ref_utf8(s, len, &open);
                uint32_t st = KITE__UTF8_ACCEPT;
                int rc = kite__utf8_feed(&st, s, len);
                ASSERT_EQ(rc == 0, ok);
                if (ok)
                    ASSERT_EQ(st != KITE__UTF8_ACCEPT, open);
                ASSERT_EQ(kite_utf8_valid(s, len), ok && !open);
            }
            if (len == 0)
                break;
        }
    }
}

/* ------------------------------------------------------------------------------------
 * Large messages through the codec's buffers
 */

struct got {
    int messages;
    enum kite_opcode type;
    size_t len;
    uint32_t hash;
    bool closed;
    struct kite_close_info ci;
    int frames;
};

static uint32_t fnv(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static int on_msg(struct kite_codec *c, enum kite_opcode type, const uint8_t *data, size_t len,
                  void *ud)
{
    struct got *g = ud;
    uint8_t *buf;
    ASSERT_EQ(kite_codec_recv_space(c, &buf), 0); /* never from a callback */
    g->messages++;
    g->type = type;
    g->len = len;
    g->hash = fnv(data, len);
    return KITE_OK;
}

static int on_frame(struct kite_codec *c, const struct kite_frame *f, void *ud)
{
    struct got *g = ud;
    KITE_UNUSED(c);
    g->frames++;
    g->type = f->opcode;
    g->len = f->len;
    g->hash = fnv(f->data, f->len);
    return KITE_OK;
}

static void on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    struct got *g = ud;
    KITE_UNUSED(c);
    g->closed = true;
    g->ci = *ci;
}

static const struct kite_codec_callbacks got_cb = {
    .on_message = on_msg, .on_frame = on_frame, .on_close = on_close};

/*
 * Feed `in` to a codec the way a session that reads straight into the codec's buffer
 * does: whenever kite_codec_recv_space() offers room, the next bytes are "read" there
 * (at most `chunk` at a time); otherwise into a buffer of our own. Returns how many
 * bytes went in through the codec's own buffer.
 */
static size_t feed_direct(struct kite_codec *c, const uint8_t *in, size_t len, size_t chunk)
{
    static uint8_t mine[4096];
    size_t off = 0, direct = 0;
    while (off < len && !kite_codec_is_closed(c)) {
        uint8_t *buf;
        size_t room = kite_codec_recv_space(c, &buf);
        size_t n;
        if (room) {
            ASSERT(buf != NULL);
            n = KITE_MIN(KITE_MIN(room, chunk), len - off);
            direct += n;
        } else {
            ASSERT(buf == NULL);
            buf = mine;
            n = KITE_MIN(sizeof(mine), len - off);
        }
        memcpy(buf, in + off, n);
        ssize_t r = kite_codec_recv(c, buf, n, 0);
        ASSERT_EQ(r, (ssize_t)n);
        off += n;
    }
    return direct;
}

static struct kite_codec *server(struct got *g, enum kite_mode mode)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.mode = mode;
    memset(g, 0, sizeof(*g));
    struct kite_codec *c = kite_codec_new(&cfg, &got_cb, g, 0);
    ASSERT(c);
    return c;
}

/* RFC 6455 §5.3, §5.4: a large message, in one frame or in fragments, read partly
 * into the codec's buffer, arrives unmasked and whole, the same as without. */
TEST(recv_space_reassembles_large_messages)
{
    static uint8_t payload[300000], wire[310000];
    static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)('a' + (i * 7) % 26);
    size_t chunks[] = {1, 777, 4096, 65536, 1 << 20};
    for (size_t ci = 0; ci < KITE_ARRAY_LEN(chunks); ci++) {
        /* One frame. */
        struct got g;
        struct kite_codec *c = server(&g, KITE_MODE_DEFAULT);
        size_t n = put_frame(wire, 0x81, true, 127, sizeof(payload), key, payload,
                             sizeof(payload));
        size_t direct = feed_direct(c, wire, n, chunks[ci]);
        ASSERT(direct > sizeof(payload) / 2);
        ASSERT_EQ(g.messages, 1);
        ASSERT_EQ(g.type, KITE_OP_TEXT);
        ASSERT_EQ(g.len, sizeof(payload));
        ASSERT_EQ(g.hash, fnv(payload, sizeof(payload)));
        ASSERT(!g.closed);
        kite_codec_free(c);

        /* Three fragments of 100000 bytes (§5.4), a ping between two of them (§5.5). */
        c = server(&g, KITE_MODE_DEFAULT);
        size_t w = put_frame(wire, 0x02, true, 127, 100000, key, payload, 100000);
        w += put_frame(wire + w, 0x89, true, 3, 3, key, (const uint8_t *)"abc", 3);
        w += put_frame(wire + w, 0x00, true, 127, 100000, key, payload + 100000, 100000);
        w += put_frame(wire + w, 0x80, true, 127, 100000, key, payload + 200000, 100000);
        direct = feed_direct(c, wire, w, chunks[ci]);
        ASSERT(direct > 0);
        ASSERT_EQ(g.messages, 1);
        ASSERT_EQ(g.type, KITE_OP_BINARY);
        ASSERT_EQ(g.hash, fnv(payload, sizeof(payload)));
        const uint8_t *out;
        ASSERT(kite_codec_pending(c, &out) == 5); /* the pong */
        kite_codec_free(c);
    }
}

/* RFC 6455 §8.1: text read into the codec's buffer is still checked as it arrives: an
 * invalid byte fails the connection with 1007. */
TEST(recv_space_still_checks_utf8)
{
    static uint8_t payload[100000], wire[100100];
    static const uint8_t key[4] = {1, 2, 3, 4};
    memset(payload, 'x', sizeof(payload));
    payload[70000] = 0xFF;
    struct got g;
    struct kite_codec *c = server(&g, KITE_MODE_DEFAULT);
    size_t n = put_frame(wire, 0x81, true, 127, sizeof(payload), key, payload, sizeof(payload));
    feed_direct(c, wire, n, 8192);
    ASSERT(g.closed);
    ASSERT_EQ(g.ci.code, KITE_CLOSE_NOT_CONSISTENT);
    ASSERT_EQ(g.messages, 0);
    kite_codec_free(c);
}

/* Raw mode gathers a frame that spans reads and hands it over whole (§5.2). */
TEST(recv_space_raw_mode_frames)
{
    static uint8_t payload[50000], wire[50100];
    static const uint8_t key[4] = {9, 8, 7, 6};
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)rnd();
    struct got g;
    struct kite_codec *c = server(&g, KITE_MODE_RAW);
    size_t n = put_frame(wire, 0x02, true, 126, sizeof(payload), key, payload,
                         sizeof(payload));
    ASSERT(feed_direct(c, wire, n, 3000) > 0);
    ASSERT_EQ(g.frames, 1);
    ASSERT_EQ(g.len, sizeof(payload));
    ASSERT_EQ(g.hash, fnv(payload, sizeof(payload)));
    kite_codec_free(c);
}

/* No room is offered between frames or for small frames. */
TEST(recv_space_only_inside_large_frames)
{
    struct got g;
    struct kite_codec *c = server(&g, KITE_MODE_DEFAULT);
    uint8_t *buf = (uint8_t *)&g;
    ASSERT_EQ(kite_codec_recv_space(c, &buf), 0);
    ASSERT(buf == NULL);
    static uint8_t payload[2000], wire[2100];
    static const uint8_t key[4] = {5, 5, 5, 5};
    size_t n = put_frame(wire, 0x82, true, 126, sizeof(payload), key, payload, sizeof(payload));
    ASSERT_EQ(kite_codec_recv(c, wire, 100, 0), 100);
    ASSERT_EQ(kite_codec_recv_space(c, &buf), 0); /* 1,908 bytes left: too few */
    ASSERT_EQ(kite_codec_recv(c, wire + 100, n - 100, 0), (ssize_t)(n - 100));
    ASSERT_EQ(g.messages, 1);
    kite_codec_free(c);
}

struct sink {
    uint8_t data[400000];
    size_t len;
    long take; /* bytes to take per call; -1 = fail */
    int calls;
};

static ssize_t sink_write(void *arg, const uint8_t *head, size_t hlen, const uint8_t *data,
                          size_t len)
{
    struct sink *s = arg;
    s->calls++;
    if (s->take < 0)
        return KITE_ERR_CLOSED;
    size_t want = KITE_MIN((size_t)s->take, hlen + len);
    for (size_t i = 0; i < want; i++)
        s->data[s->len++] = i < hlen ? head[i] : data[i - hlen];
    return (ssize_t)want;
}

/* What went to the sink followed by what is queued is the frame kite_codec_send()
 * makes (RFC 6455 §5.2), whatever the write took. */
TEST(send_direct_writes_then_queues_the_rest)
{
    static uint8_t payload[200000];
    static struct sink s;
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 13);
    long takes[] = {0, 1, 9, 10, 11, 5000, 200010, 300000, -1};
    for (size_t t = 0; t < KITE_ARRAY_LEN(takes); t++) {
        struct got g;
        struct kite_codec *ref = server(&g, KITE_MODE_DEFAULT);
        struct kite_codec *c = server(&g, KITE_MODE_DEFAULT);
        ASSERT_EQ(kite_codec_send(ref, KITE_OP_BINARY, payload, sizeof(payload)), KITE_OK);
        memset(&s, 0, sizeof(s));
        s.take = takes[t];
        ASSERT_EQ(kite_codec_send_direct(c, KITE_OP_BINARY, payload, sizeof(payload),
                                         sink_write, &s),
                  KITE_OK);
        ASSERT_EQ(s.calls, 1);
        const uint8_t *want, *rest;
        size_t wn = kite_codec_pending(ref, &want), rn = kite_codec_pending(c, &rest);
        ASSERT_EQ(s.len + rn, wn);
        ASSERT(memcmp(s.data, want, s.len) == 0);
        ASSERT(rn == 0 || memcmp(rest, want + s.len, rn) == 0);
        /* Something is queued now: the next one waits its turn (no write). */
        if (rn) {
            ASSERT_EQ(kite_codec_send_direct(c, KITE_OP_TEXT, "hi", 2, sink_write, &s), KITE_OK);
            ASSERT_EQ(s.calls, 1);
            ASSERT_EQ(kite_codec_pending(c, &rest), rn + 4);
        }
        kite_codec_free(ref);
        kite_codec_free(c);
    }
}

/* A client masks every frame (§5.3), so it never writes directly; errors as send. */
TEST(send_direct_falls_back_and_checks)
{
    static struct sink s;
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.role = KITE_ROLE_CLIENT;
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    memset(&s, 0, sizeof(s));
    s.take = 1000;
    ASSERT_EQ(kite_codec_send_direct(c, KITE_OP_TEXT, "hello", 5, sink_write, &s), KITE_OK);
    ASSERT_EQ(s.calls, 0);
    const uint8_t *p;
    ASSERT_EQ(kite_codec_pending(c, &p), 2 + 4 + 5);
    ASSERT(p[1] & 0x80);
    kite_codec_free(c);

    struct got g;
    c = server(&g, KITE_MODE_DEFAULT);
    ASSERT_EQ(kite_codec_send_direct(c, KITE_OP_PING, "x", 1, sink_write, &s),
              KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_send_direct(c, KITE_OP_TEXT, "x", 1, NULL, NULL), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_close(c, 1000, NULL, 0), KITE_OK);
    ASSERT_EQ(kite_codec_send_direct(c, KITE_OP_TEXT, "x", 1, sink_write, &s),
              KITE_ERR_CLOSED);
    ASSERT_EQ(s.calls, 0);
    kite_codec_free(c);
}

/* Part of a frame on the wire and no memory for the rest: the session cannot go on
 * (not even a close frame could follow), so it ends with KITE_ERR_NOMEM. */
TEST(send_direct_nomem_after_partial_write_ends_the_session)
{
    static uint8_t payload[100000];
    static struct sink s;
    struct kite_test_alloc st = {.fail_at = 0};
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.allocator = kite_test_allocator(&st);
    struct got g;
    memset(&g, 0, sizeof(g));
    struct kite_codec *c = kite_codec_new(&cfg, &got_cb, &g, 0);
    ASSERT(c);
    st.fail_at = st.count + 1; /* the next allocation: the queue for the rest */
    memset(&s, 0, sizeof(s));
    s.take = 50;
    ASSERT_EQ(kite_codec_send_direct(c, KITE_OP_BINARY, payload, sizeof(payload), sink_write,
                                     &s),
              KITE_ERR_NOMEM);
    ASSERT(g.closed);
    ASSERT_EQ(g.ci.error, KITE_ERR_NOMEM);
    ASSERT(kite_codec_close_sent(c));
    ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, "x", 1), KITE_ERR_CLOSED);
    kite_codec_free(c);
    ASSERT_EQ(st.live, 0);
}

/* ------------------------------------------------------------------------------------
 * Memory
 */

TEST(codec_new_in_caller_memory)
{
    _Alignas(max_align_t) static uint8_t mem[512];
    ASSERT(kite_codec_size() <= sizeof(mem));
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    struct got g;
    memset(&g, 0, sizeof(g));
    struct kite_codec *c = kite_codec_new_in(mem, &cfg, &got_cb, &g, 0);
    ASSERT(c == (struct kite_codec *)(void *)mem);
    static const uint8_t key[4] = {1, 2, 3, 4};
    uint8_t wire[64];
    size_t n = put_frame(wire, 0x81, true, 2, 2, key, (const uint8_t *)"ok", 2);
    ASSERT_EQ(kite_codec_recv(c, wire, n, 0), (ssize_t)n);
    ASSERT_EQ(g.messages, 1);
    ASSERT_EQ(kite_codec_close(c, 1000, "bye", 0), KITE_OK); /* aux and output allocated */
    kite_codec_free(c); /* frees what it holds, not mem (ASan would see a bad free) */
    cfg.options.timeout_ms = 0;
    ASSERT(kite_codec_new_in(mem, &cfg, NULL, NULL, 0) == NULL);
    ASSERT(kite_codec_new_in(NULL, &cfg, NULL, NULL, 0) == NULL);
}

TEST(shared_options_are_pointed_to_and_copied_on_write)
{
    struct kite_ws_options shared;
    kite_ws_options_init(&shared);
    shared.max_message_size = 10;
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.shared_options = &shared;
    struct got g;
    memset(&g, 0, sizeof(g));
    struct kite_codec *c = kite_codec_new(&cfg, &got_cb, &g, 0);
    ASSERT(c);
    ASSERT(kite_codec_options(c) == &shared);
    /* §7.4.1: the shared limit applies (1009 for an 11-byte message). */
    static const uint8_t key[4] = {1, 2, 3, 4};
    uint8_t wire[64];
    size_t n = put_frame(wire, 0x82, true, 11, 11, key, (const uint8_t *)"0123456789a", 11);
    kite_codec_recv(c, wire, n, 0);
    ASSERT(g.closed);
    ASSERT_EQ(g.ci.code, KITE_CLOSE_TOO_BIG);
    kite_codec_free(c);

    c = kite_codec_new(&cfg, &got_cb, &g, 0);
    struct kite_ws_options mine = shared;
    mine.max_message_size = 100;
    ASSERT_EQ(kite_codec_set_options(c, &mine, 0), KITE_OK);
    ASSERT(kite_codec_options(c) != &shared);
    ASSERT_UEQ(kite_codec_options(c)->max_message_size, 100);
    ASSERT_UEQ(shared.max_message_size, 10); /* never written */
    kite_codec_free(c);

    /* Non-default options without sharing are the codec's own copy. */
    cfg.shared_options = NULL;
    cfg.options.timeout_ms = 1234;
    c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    ASSERT(kite_codec_options(c) != &cfg.options);
    ASSERT_EQ(kite_codec_options(c)->timeout_ms, 1234);
    kite_codec_free(c);
}

/* A large drained buffer is reused by the next large buffer of the thread, and given
 * back once unused for KITE__BUF_CACHE_MS; custom allocators are never cached. */
TEST(large_buffer_cache_reuses_and_trims)
{
    kite__buf_cache_trim(0);
    kite__buf_cache_trim(UINT64_MAX / 2); /* start empty */
    ASSERT_EQ(kite__buf_cache_bytes(), 0);
    struct kite_buf b = {0};
    ASSERT(kite__buf_reserve(&b, NULL, 1 << 20));
    uint8_t *first = b.data;
    size_t cap = b.cap;
    kite__buf_free(&b, NULL);
    ASSERT_EQ(kite__buf_cache_bytes(), cap);
    ASSERT(kite__buf_reserve(&b, NULL, 1 << 20));
    ASSERT(b.data == first);
    ASSERT_EQ(kite__buf_cache_bytes(), 0);
    kite__buf_free(&b, NULL);
    ASSERT_UEQ(kite__buf_cache_trim(5000), 5000 + KITE__BUF_CACHE_MS);
    ASSERT_EQ(kite__buf_cache_bytes(), cap);
    ASSERT_UEQ(kite__buf_cache_trim(5000 + KITE__BUF_CACHE_MS), UINT64_MAX);
    ASSERT_EQ(kite__buf_cache_bytes(), 0);

    struct kite_test_alloc st = {0};
    const struct kite_allocator *a = kite_test_allocator(&st);
    ASSERT(kite__buf_reserve(&b, a, 1 << 20));
    kite__buf_free(&b, a);
    ASSERT_EQ(st.live, 0);
    ASSERT_EQ(kite__buf_cache_bytes(), 0);
    /* Small buffers are not kept. */
    ASSERT(kite__buf_reserve(&b, NULL, 1000));
    kite__buf_free(&b, NULL);
    ASSERT_EQ(kite__buf_cache_bytes(), 0);
}

/* RFC 6455 §5.3: the hot loop's unmasking of a short payload matches kite_mask(), says
 * "all ASCII" exactly when no byte has its top bit set, and touches nothing outside. */
TEST(unmask_short_matches_kite_mask)
{
    for (int iter = 0; iter < 4000; iter++) {
        size_t n = (size_t)(rnd() % 126), at = 8 + (size_t)(rnd() % 8);
        uint8_t key[4], a[160], ref[160];
        for (int i = 0; i < 4; i++)
            key[i] = (uint8_t)rnd();
        bool high = (rnd() & 1) != 0;
        for (size_t i = 0; i < sizeof(a); i++)
            a[i] = (uint8_t)rnd();
        /* Plain text that is sometimes ASCII, masked as a client would. */
        for (size_t i = 0; i < n; i++) {
            uint8_t plain = (uint8_t)(high ? rnd() : rnd() & 0x7F);
            a[at + i] = plain ^ key[i & 3];
        }
        memcpy(ref, a, sizeof(a));
        kite_mask(ref + at, n, key, 0);
        bool ascii = true;
        for (size_t i = 0; i < n; i++)
            ascii = ascii && ref[at + i] < 0x80;
        uint32_t k;
        memcpy(&k, key, 4);
        ASSERT_EQ(kite__unmask_short(a + at, n, k), ascii);
        ASSERT(memcmp(a, ref, sizeof(a)) == 0);
    }
}

/* The inline copy of the small send copies exactly n bytes, whatever n (0-125). */
TEST(copy_small_copies_exactly)
{
    for (size_t n = 0; n < 126; n++) {
        uint8_t src[160], dst[160], ref[160];
        for (size_t i = 0; i < sizeof(src); i++) {
            src[i] = (uint8_t)rnd();
            dst[i] = ref[i] = (uint8_t)rnd();
        }
        memcpy(ref + 3, src + 5, n);
        kite__copy_small(dst + 3, src + 5, n);
        ASSERT(memcmp(dst, ref, sizeof(dst)) == 0);
    }
}

/* What a codec did, as one running hash per kind of event, and what a test callback
 * should do at the k-th message (the same in both runs being compared). */
struct trace {
    uint32_t msgs;   /* hash of every message: type, length, bytes */
    int count;       /* messages delivered */
    int pause_every; /* return KITE_PAUSE from every pause_every-th message (0: never) */
    int limit_at;    /* at this message, lower max_message_size to 20 */
    int close_at;    /* at this message, start the close handshake (1000) */
    bool echo;       /* send every message back */
    bool closed;
    struct kite_close_info ci;
};

static int trace_msg(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                     size_t len, void *ud)
{
    struct trace *t = ud;
    t->count++;
    uint8_t head[9] = {(uint8_t)type};
    for (int i = 0; i < 8; i++)
        head[1 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    t->msgs = (t->msgs ^ fnv(head, sizeof(head))) * 16777619u ^ fnv(data, len);
    ASSERT_EQ(kite_codec_recv(c, NULL, 0, 0), KITE_ERR_STATE); /* not re-entrant */
    if (t->echo)
        (void)kite_codec_send(c, type, data, len);
    if (t->count == t->limit_at) {
        struct kite_ws_options o = *kite_codec_options(c);
        o.max_message_size = 20;
        ASSERT_EQ(kite_codec_set_options(c, &o, 0), KITE_OK);
    }
    if (t->count == t->close_at)
        ASSERT_EQ(kite_codec_close(c, 1000, "bye", 0), KITE_OK);
    return t->pause_every && t->count % t->pause_every == 0 ? KITE_PAUSE : KITE_OK;
}

static void trace_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    struct trace *t = ud;
    KITE_UNUSED(c);
    t->closed = true;
    t->ci = *ci;
}

static const struct kite_codec_callbacks trace_cb = {.on_message = trace_msg,
                                                     .on_close = trace_close};

/* One frame of a random stream, masked as a client's unless `unmasked`. */
static size_t random_frame(uint8_t *o, uint8_t b0, size_t plen, bool unmasked)
{
    static const uint8_t texts[][4] = {{'a', 'b', 'c', 'd'},  {0xC3, 0xA9, 'x', 'y'},
                                       {0xE2, 0x82, 0xAC, 'z'}, {0xF0, 0x9F, 0x98, 0x80},
                                       {0xED, 0xA0, 0x80, 'q'}, {0xC0, 0xAF, 'o', 'k'}};
    uint8_t payload[300], key[4];
    unsigned kind = (unsigned)(rnd() % 32); /* 0-5: those texts; 7: any bytes; else ASCII */
    if (kind > 7)
        kind = 6;
    for (size_t i = 0; i < plen; i++) {
        if (kind < 6)
            payload[i] = texts[kind][i % 4];
        else
            payload[i] = (uint8_t)(kind == 6 ? rnd() & 0x7F : rnd());
    }
    if (kind < 6 && (rnd() & 7) == 0 && plen)
        payload[plen - 1] = 'e'; /* sometimes cut a character short */
    for (int i = 0; i < 4; i++)
        key[i] = (uint8_t)rnd();
    unsigned len7 = plen < 126 ? (unsigned)plen : 126;
    return put_frame(o, b0, !unmasked, len7, plen, key, payload, plen);
}

/* A stream of frames: mostly the hot loop's (0x81/0x82, masked, up to 125 bytes), with
 * everything it must leave to the general path mixed in (§5.2, §5.4, §5.5). */
static size_t random_stream(uint8_t *o, size_t cap)
{
    size_t n = 0;
    int frames = 1 + (int)(rnd() % 24);
    for (int f = 0; f < frames && n + 400 < cap; f++) {
        unsigned r = (unsigned)(rnd() % 64);
        size_t small = (size_t)(rnd() % 126);
        if (r >= 32 || r < 20) {
            n += random_frame(o + n, (r & 1) ? 0x82 : 0x81, small, false);
        } else if (r < 22) {
            n += random_frame(o + n, 0x89, small, false); /* ping: a pong goes out */
        } else if (r < 23) {
            n += random_frame(o + n, 0x8A, small % 10, false);
        } else if (r < 24) {
            n += random_frame(o + n, 0x81, small, true); /* unmasked */
        } else if (r < 26) {
            n += random_frame(o + n, 0x01, small, false); /* fragmented */
            n += random_frame(o + n, 0x80, (size_t)(rnd() % 126), false);
        } else if (r < 28) {
            n += random_frame(o + n, (r & 1) ? 0x82 : 0x81, 126 + (size_t)(rnd() % 150), false);
        } else if (r < 29) {
            n += random_frame(o + n, (rnd() & 1) ? 0xC1 : 0x83, small, false); /* bad */
        } else if (r < 30) {
            n += random_frame(o + n, 0x80, small, false); /* continuation of nothing */
        } else if (r < 31 && f == frames - 1) {
            uint8_t close[2] = {0x03, 0xE8};
            uint8_t key[4] = {1, 2, 3, 4};
            n += put_frame(o + n, 0x88, true, 2, 2, key, close, 2);
        } else {
            n += random_frame(o + n, 0x82, 0, false);
        }
    }
    return n;
}

struct run {
    struct trace t;
    uint32_t out; /* hash of everything the codec queued to send */
    size_t out_len;
    struct kite__frame_parser p; /* the parser state left behind */
};

/* Feed `in` to a fresh server codec, whole (`step` 0) or `step` bytes per call, calling
 * again after each KITE_PAUSE; stop when the codec takes no more. */
static void run_codec(struct run *r, const struct kite_ws_options *o, const uint8_t *in,
                      size_t len, size_t step)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.options = *o;
    struct kite_codec *c = kite_codec_new(&cfg, &trace_cb, &r->t, 0);
    ASSERT(c);
    static uint8_t buf[8192];
    memcpy(buf, in, len);
    size_t off = 0;
    while (off < len) {
        size_t n = step ? KITE_MIN(step, len - off) : len - off;
        ssize_t got = kite_codec_recv(c, buf + off, n, 0);
        ASSERT(got >= 0);
        if (got == 0 && (kite_codec_is_closed(c) || kite_codec_close_sent(c)))
            break; /* the codec stopped reading */
        if (got == 0) {
            /* Paused or waiting: only waiting for more is allowed with input left. */
            ASSERT(step != 0);
            break;
        }
        off += (size_t)got;
    }
    const uint8_t *out;
    r->out_len = kite_codec_pending(c, &out);
    r->out = fnv(out ? out : (const uint8_t *)"", r->out_len);
    r->p = c->p;
    kite_codec_free(c);
}

/*
 * The hot loop must decide exactly what the general path decides: the same messages
 * (§5.6), the same failures and close codes (§5.1, §5.2, §5.4, §7.4, §8.1), the same
 * output (echoes through the inline small send, pongs, close frames), with callbacks
 * that pause delivery, change the size limit or start the close handshake mid-batch.
 * Fed one byte at a time, a codec never has a whole frame in its input, so that run
 * is the general path's answer.
 */
TEST(hot_loop_agrees_with_general_path)
{
    static uint8_t in[8192];
    long hot_msgs = 0;
    for (int iter = 0; iter < 4000; iter++) {
        size_t len = random_stream(in, sizeof(in));
        struct kite_ws_options o;
        kite_ws_options_init(&o);
        unsigned lim = (unsigned)(rnd() % 4);
        if (lim == 1)
            o.max_message_size = 40;
        else if (lim == 2)
            o.max_frame_size = 60;
        o.masking = (rnd() % 4) != 0;
        struct trace t = {.pause_every = (int)(rnd() % 4),
                          .limit_at = (rnd() % 4) ? 0 : (int)(rnd() % 16),
                          .close_at = (rnd() % 4) ? 0 : (int)(rnd() % 12),
                          .echo = (rnd() % 3) != 0};
        struct run whole = {.t = t}, bytes = {.t = t};
        run_codec(&whole, &o, in, len, 0);
        run_codec(&bytes, &o, in, len, 1);
        ASSERT_EQ(whole.t.count, bytes.t.count);
        ASSERT_UEQ(whole.t.msgs, bytes.t.msgs);
        ASSERT_EQ(whole.t.closed, bytes.t.closed);
        if (whole.t.closed) {
            ASSERT_EQ(whole.t.ci.code, bytes.t.ci.code);
            ASSERT_EQ(whole.t.ci.error, bytes.t.ci.error);
            ASSERT_EQ(whole.t.ci.clean, bytes.t.ci.clean);
            ASSERT_EQ(whole.t.ci.initiator, bytes.t.ci.initiator);
            ASSERT_STREQ(whole.t.ci.reason, bytes.t.ci.reason);
        }
        ASSERT_UEQ(whole.out_len, bytes.out_len);
        ASSERT_UEQ(whole.out, bytes.out);
        /* The last frame's header, as the events leave it. */
        ASSERT_EQ(whole.p.hdr.opcode, bytes.p.hdr.opcode);
        ASSERT_EQ(whole.p.hdr.fin, bytes.p.hdr.fin);
        ASSERT_EQ(whole.p.hdr.rsv, bytes.p.hdr.rsv);
        ASSERT_EQ(whole.p.hdr.masked, bytes.p.hdr.masked);
        ASSERT(memcmp(whole.p.hdr.mask, bytes.p.hdr.mask, 4) == 0);
        ASSERT_UEQ(whole.p.hdr.payload_len, bytes.p.hdr.payload_len);
        ASSERT_EQ(whole.p.in_message, bytes.p.in_message);
        ASSERT_EQ(whole.p.msg_opcode, bytes.p.msg_opcode);
        hot_msgs += whole.t.count;
    }
    fprintf(stderr, "# %ld messages\n", hot_msgs);
    ASSERT(hot_msgs > 8000);
}

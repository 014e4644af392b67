/*
 * Unit tests for messages in parts (kite_ws_options.part_threshold, on_message_part):
 * a large message is handed over piece by piece as its bytes arrive, never gathered,
 * with the same checks as a whole message (RFC 6455 §5.4 fragmentation, §8.1 UTF-8,
 * the size limits), and small messages still arrive whole.
 *
 * Every scenario is fed in reads of several sizes, one byte at a time included: the
 * parts differ, what they add up to must not.
 */
#include "kite/kite.h"
#include "test.h"

static const uint8_t KEY[4] = {0x5a, 0x13, 0xc4, 0x7e};

/* A masked client frame (§5.2, §5.3), built here independently of the codec. */
static size_t mkframe(uint8_t *o, unsigned first, const uint8_t *data, size_t len)
{
    size_t n = 0;
    o[n++] = (uint8_t)first;
    if (len < 126) {
        o[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        o[n++] = 0x80 | 126;
        o[n++] = (uint8_t)(len >> 8);
        o[n++] = (uint8_t)len;
    } else {
        o[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            o[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(o + n, KEY, 4);
    n += 4;
    for (size_t i = 0; i < len; i++)
        o[n + i] = data[i] ^ KEY[i % 4];
    return n + len;
}

/* What the callbacks saw. */
struct seen {
    uint8_t *msg;         /* the parts, concatenated */
    size_t msg_len, cap;
    unsigned parts;       /* on_message_part calls */
    unsigned lasts;       /* parts with `last` */
    unsigned wholes;      /* on_message calls */
    size_t whole_len;     /* the last whole message's length */
    enum kite_opcode type;
    bool offsets_ok;      /* every part started where the previous one ended */
    bool empty_not_last;  /* an empty part that was not the last */
    bool pause_each;      /* return KITE_PAUSE from every part */
    unsigned close_code;  /* 0 until on_close */
    int close_err;
    unsigned controls;    /* pings and pongs seen */
};

static int on_part(struct kite_codec *c, const struct kite_msg_part *p, void *ud)
{
    (void)c;
    struct seen *s = ud;
    if (p->offset != s->msg_len)
        s->offsets_ok = false;
    if (p->len == 0 && !p->last)
        s->empty_not_last = true;
    if (s->msg_len + p->len > s->cap) {
        s->cap = (s->msg_len + p->len) * 2;
        s->msg = realloc(s->msg, s->cap);
        ASSERT(s->msg);
    }
    if (p->len)
        memcpy(s->msg + s->msg_len, p->data, p->len);
    s->msg_len += p->len;
    s->parts++;
    s->lasts += p->last;
    s->type = p->type;
    return s->pause_each ? KITE_PAUSE : KITE_OK;
}

static int on_msg(struct kite_codec *c, enum kite_opcode type, const uint8_t *data, size_t len,
                  void *ud)
{
    (void)c;
    (void)data;
    struct seen *s = ud;
    s->wholes++;
    s->whole_len = len;
    s->type = type;
    return KITE_OK;
}

static void on_ctl(struct kite_codec *c, enum kite_opcode op, const uint8_t *data, size_t len,
                   void *ud)
{
    (void)c, (void)op, (void)data, (void)len;
    ((struct seen *)ud)->controls++;
}

static void on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    (void)c;
    struct seen *s = ud;
    s->close_code = ci->code;
    s->close_err = ci->error;
}

static const struct kite_codec_callbacks with_parts = {
    .on_message = on_msg,
    .on_control = on_ctl,
    .on_close = on_close,
    .on_message_part = on_part,
};
static const struct kite_codec_callbacks without_parts = {
    .on_message = on_msg,
    .on_control = on_ctl,
    .on_close = on_close,
};

static struct kite_codec *codec(const struct kite_codec_callbacks *cb, struct seen *s,
                                uint64_t threshold, uint64_t max_message)
{
    memset(s, 0, sizeof(*s));
    s->offsets_ok = true;
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.options.part_threshold = threshold;
    if (max_message)
        cfg.options.max_message_size = max_message;
    struct kite_codec *c = kite_codec_new(&cfg, cb, s, 0);
    ASSERT(c);
    return c;
}

/* Feed `in` in reads of `step` bytes, as a session would (the input is modified: the
 * codec unmasks in place); a pause is resumed by feeding the rest. */
static void feed(struct kite_codec *c, uint8_t *in, size_t len, size_t step)
{
    size_t off = 0;
    while (off < len && !kite_codec_is_closed(c)) {
        size_t n = step < len - off ? step : len - off;
        size_t used = 0;
        while (used < n && !kite_codec_is_closed(c)) {
            ssize_t r = kite_codec_recv(c, in + off + used, n - used, 0);
            ASSERT(r >= 0);
            if (r == 0)
                break;
            used += (size_t)r;
        }
        off += used;
        if (used < n)
            break; /* closed */
    }
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    ASSERT(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
    return p;
}

static const size_t steps[] = {1, 7, 1000, 65536, 1 << 22};
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

/* One frame of 200,000 bytes, threshold 64 KiB: parts, adding up to the message. */
TEST(parts_large_binary_frame_in_parts)
{
    size_t n = 200000;
    uint8_t *msg = pattern(n, 1), *wire = malloc(n + 14);
    for (size_t k = 0; k < NSTEPS; k++) {
        size_t w = mkframe(wire, 0x82, msg, n);
        struct seen s;
        struct kite_codec *c = codec(&with_parts, &s, 0, 0);
        feed(c, wire, w, steps[k]);
        ASSERT_EQ(s.wholes, 0);
        ASSERT_EQ(s.lasts, 1);
        ASSERT(s.offsets_ok);
        ASSERT(!s.empty_not_last);
        ASSERT_UEQ(s.msg_len, n);
        ASSERT_MEMEQ(s.msg, msg, n);
        ASSERT_EQ(s.type, KITE_OP_BINARY);
        if (steps[k] < n)
            ASSERT(s.parts > 1); /* handed over as it came, not at the end */
        ASSERT_EQ(s.close_code, 0);
        kite_codec_free(c);
        free(s.msg);
    }
    free(msg);
    free(wire);
}

/* Below the threshold a message arrives whole, in one piece or fragmented. */
TEST(parts_small_messages_stay_whole)
{
    uint8_t msg[3000], wire[4000];
    memset(msg, 'a', sizeof(msg));
    for (size_t k = 0; k < NSTEPS; k++) {
        struct seen s;
        struct kite_codec *c = codec(&with_parts, &s, 4096, 0);
        size_t w = mkframe(wire, 0x81, msg, sizeof(msg));
        feed(c, wire, w, steps[k]);
        /* Two fragments, 1000 + 2000 bytes: 3000 < 4096 in all. */
        w = mkframe(wire, 0x02, msg, 1000);
        w += mkframe(wire + w, 0x80, msg, 2000);
        feed(c, wire, w, steps[k]);
        ASSERT_EQ(s.wholes, 2);
        ASSERT_EQ(s.parts, 0);
        ASSERT_UEQ(s.whole_len, 3000);
        kite_codec_free(c);
    }
}

/* Without on_message_part every message is whole, however large. */
TEST(parts_need_the_callback)
{
    size_t n = 300000;
    uint8_t *msg = pattern(n, 2), *wire = malloc(n + 14);
    size_t w = mkframe(wire, 0x82, msg, n);
    struct seen s;
    struct kite_codec *c = codec(&without_parts, &s, 0, 0);
    feed(c, wire, w, 65536);
    ASSERT_EQ(s.wholes, 1);
    ASSERT_UEQ(s.whole_len, n);
    kite_codec_free(c);
    free(msg);
    free(wire);
}

/*
 * A fragmented message that reaches the threshold only with a later fragment: the
 * fragments before it are gathered and come as the first part; a ping between the
 * fragments is answered as usual (§5.4, §5.5.2).
 */
TEST(parts_fragments_reach_the_threshold)
{
    size_t sizes[] = {1000, 2000, 150000, 0, 70000};
    size_t total = 0;
    for (size_t i = 0; i < 5; i++)
        total += sizes[i];
    uint8_t *msg = pattern(total, 3), *wire = malloc(total + 200);
    for (size_t k = 0; k < NSTEPS; k++) {
        size_t w = 0, at = 0;
        for (size_t i = 0; i < 5; i++) {
            unsigned first = (i == 0 ? 0x02 : 0x00) | (i == 4 ? 0x80 : 0);
            w += mkframe(wire + w, first, msg + at, sizes[i]);
            at += sizes[i];
            if (i == 1)
                w += mkframe(wire + w, 0x89, (const uint8_t *)"hi", 2);
        }
        struct seen s;
        struct kite_codec *c = codec(&with_parts, &s, 0, 0);
        feed(c, wire, w, steps[k]);
        ASSERT_EQ(s.wholes, 0);
        ASSERT_EQ(s.lasts, 1);
        ASSERT_EQ(s.controls, 1);
        ASSERT(s.offsets_ok);
        ASSERT(!s.empty_not_last);
        ASSERT_UEQ(s.msg_len, total);
        ASSERT_MEMEQ(s.msg, msg, total);
        /* The pong went out. */
        const uint8_t *out;
        size_t olen = kite_codec_pending(c, &out);
        ASSERT(olen >= 4);
        ASSERT_EQ(out[0], 0x8A);
        kite_codec_free(c);
        free(s.msg);
    }
    free(msg);
    free(wire);
}

/* A message that ends with an empty final fragment: the last part is empty. */
TEST(parts_empty_final_fragment)
{
    size_t n = 100000;
    uint8_t *msg = pattern(n, 4), *wire = malloc(n + 40);
    size_t w = mkframe(wire, 0x02, msg, n);
    w += mkframe(wire + w, 0x80, msg, 0);
    struct seen s;
    struct kite_codec *c = codec(&with_parts, &s, 0, 0);
    feed(c, wire, w, 4096);
    ASSERT_EQ(s.lasts, 1);
    ASSERT_UEQ(s.msg_len, n);
    ASSERT_MEMEQ(s.msg, msg, n);
    kite_codec_free(c);
    free(s.msg);
    free(msg);
    free(wire);
}

/* Text in parts: a part may end inside a character, the whole is valid UTF-8. */
TEST(parts_text_split_inside_characters)
{
    /* "é" (2 bytes), "€" (3), "😀" (4), repeated: any split cuts characters. */
    static const char unit[] = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    size_t ul = sizeof(unit) - 1, reps = 20000, n = ul * reps;
    uint8_t *msg = malloc(n), *wire = malloc(n + 14);
    for (size_t i = 0; i < reps; i++)
        memcpy(msg + i * ul, unit, ul);
    for (size_t k = 0; k < NSTEPS; k++) {
        size_t w = mkframe(wire, 0x81, msg, n);
        struct seen s;
        struct kite_codec *c = codec(&with_parts, &s, 1000, 0);
        feed(c, wire, w, steps[k]);
        ASSERT_EQ(s.close_code, 0);
        ASSERT_EQ(s.lasts, 1);
        ASSERT_EQ(s.type, KITE_OP_TEXT);
        ASSERT_UEQ(s.msg_len, n);
        ASSERT_MEMEQ(s.msg, msg, n);
        kite_codec_free(c);
        free(s.msg);
    }
    free(msg);
    free(wire);
}

/* Bad UTF-8 late in a message in parts: the earlier parts were delivered, the bad byte
 * never is, the connection fails with 1007 (§8.1) and no last part comes. */
TEST(parts_invalid_utf8_fails_1007_without_last)
{
    size_t n = 200000, bad = 150000;
    uint8_t *msg = malloc(n), *wire = malloc(n + 14);
    memset(msg, 'x', n);
    msg[bad] = 0xff;
    for (size_t k = 1; k < NSTEPS; k++) {
        size_t w = mkframe(wire, 0x81, msg, n);
        struct seen s;
        struct kite_codec *c = codec(&with_parts, &s, 0, 0);
        feed(c, wire, w, steps[k]);
        ASSERT_EQ(s.close_code, KITE_CLOSE_NOT_CONSISTENT);
        ASSERT_EQ(s.close_err, KITE_ERR_UTF8);
        ASSERT_EQ(s.lasts, 0);
        ASSERT(s.msg_len <= bad);
        if (steps[k] < bad)
            ASSERT(s.parts > 0);
        kite_codec_free(c);
        free(s.msg);
    }
    free(msg);
    free(wire);
}

/* A text message in parts that ends inside a character: 1007 at its end. */
TEST(parts_truncated_utf8_fails_1007)
{
    size_t n = 100000;
    uint8_t *msg = malloc(n), *wire = malloc(n + 14);
    memset(msg, 'x', n);
    msg[n - 1] = 0xe2; /* the start of a 3-byte character */
    size_t w = mkframe(wire, 0x81, msg, n);
    struct seen s;
    struct kite_codec *c = codec(&with_parts, &s, 0, 0);
    feed(c, wire, w, 4096);
    ASSERT_EQ(s.close_code, KITE_CLOSE_NOT_CONSISTENT);
    ASSERT_EQ(s.lasts, 0);
    kite_codec_free(c);
    free(s.msg);
    free(msg);
    free(wire);
}

/* max_message_size counts over the parts: the fragment that passes it fails 1009 at its
 * header, before any of its bytes are handed over. */
TEST(parts_message_limit_counts_parts)
{
    size_t n = 150000;
    uint8_t *msg = pattern(n, 5), *wire = malloc(2 * n + 40);
    size_t w = mkframe(wire, 0x02, msg, n);
    w += mkframe(wire + w, 0x80, msg, n); /* 300,000 in all, limit 200,000 */
    struct seen s;
    struct kite_codec *c = codec(&with_parts, &s, 0, 200000);
    feed(c, wire, w, 65536);
    ASSERT_EQ(s.close_code, KITE_CLOSE_TOO_BIG);
    ASSERT_EQ(s.close_err, KITE_ERR_TOO_BIG);
    ASSERT_UEQ(s.msg_len, n);
    ASSERT_EQ(s.lasts, 0);
    kite_codec_free(c);
    free(s.msg);
    free(msg);
    free(wire);
}

/* KITE_PAUSE from a part stops the codec right after it; the rest, fed again, goes on. */
TEST(parts_pause_stops_after_the_part)
{
    size_t n = 200000;
    uint8_t *msg = pattern(n, 6), *wire = malloc(n + 14);
    size_t w = mkframe(wire, 0x82, msg, n);
    struct seen s;
    struct kite_codec *c = codec(&with_parts, &s, 0, 0);
    s.pause_each = true;
    /* The first read holds the header and part of the payload, the second the rest:
     * each recv() hands over one part and stops. */
    ssize_t r = kite_codec_recv(c, wire, 50000, 0);
    ASSERT_EQ(r, 50000);
    ASSERT_EQ(s.parts, 1);
    size_t off = (size_t)r;
    while (off < w) {
        r = kite_codec_recv(c, wire + off, w - off, 0);
        ASSERT(r > 0);
        off += (size_t)r;
    }
    ASSERT_EQ(s.lasts, 1);
    ASSERT_UEQ(s.msg_len, n);
    ASSERT_MEMEQ(s.msg, msg, n);
    kite_codec_free(c);
    free(s.msg);
    free(msg);
    free(wire);
}

/* Inside a message in parts the codec offers no room to read into (nothing is gathered:
 * the caller reads into its own buffer); for a whole large message it does. */
TEST(parts_no_recv_space_while_streaming)
{
    size_t n = 200000;
    uint8_t *msg = pattern(n, 7), *wire = malloc(n + 14);
    mkframe(wire, 0x82, msg, n);
    struct seen s;
    struct kite_codec *c = codec(&with_parts, &s, 0, 0);
    ASSERT_EQ(kite_codec_recv(c, wire, 14, 0), 14); /* header and 4 payload bytes */
    uint8_t *buf;
    ASSERT_UEQ(kite_codec_recv_space(c, &buf), 0);
    kite_codec_free(c);
    free(s.msg);

    mkframe(wire, 0x82, msg, n);
    c = codec(&without_parts, &s, 0, 0);
    ASSERT_EQ(kite_codec_recv(c, wire, 14, 0), 14);
    ASSERT(kite_codec_recv_space(c, &buf) > 0);
    kite_codec_free(c);
    free(msg);
    free(wire);
}

/* Messages in parts and whole ones alternate on one connection without mixing. */
TEST(parts_alternate_with_whole_messages)
{
    size_t big = 90000;
    uint8_t *msg = pattern(big, 8), *wire = malloc(3 * big + 200);
    size_t w = 0;
    w += mkframe(wire + w, 0x81, (const uint8_t *)"small", 5);
    w += mkframe(wire + w, 0x82, msg, big);
    w += mkframe(wire + w, 0x82, msg, 100);
    w += mkframe(wire + w, 0x82, msg, big);
    for (size_t k = 0; k < NSTEPS; k++) {
        uint8_t *copy = malloc(w);
        memcpy(copy, wire, w);
        struct seen s;
        struct kite_codec *c = codec(&with_parts, &s, 0, 0);
        feed(c, copy, w, steps[k]);
        ASSERT_EQ(s.wholes, 2);
        ASSERT_EQ(s.lasts, 2);
        ASSERT_UEQ(s.msg_len, 2 * big);
        ASSERT_MEMEQ(s.msg, msg, big);
        ASSERT_MEMEQ(s.msg + big, msg, big);
        kite_codec_free(c);
        free(s.msg);
        free(copy);
    }
    free(msg);
    free(wire);
}

/*
 * Unit tests for the frame parser and writer (src/codec/frame.c): RFC 6455 §5.
 *
 * Every input is parsed whole and then again split at every offset (and one byte at a
 * time, and for short inputs at every pair of offsets), each piece copied into its own
 * exactly-sized heap block so ASan catches a read past it; all runs must report the same
 * frames, payloads and errors.
 */
#include "codec/frame.h"
#include "test.h"

#define MAX_FRAMES 16

struct rec_frame {
    struct kite__frame_hdr hdr;
    uint8_t *data; /* the payload as delivered, concatenated */
    size_t got;
};

struct run {
    struct rec_frame f[MAX_FRAMES];
    int nframes;   /* frames whose last DATA event arrived */
    bool open;     /* a header came, its frame_end not yet */
    int err_code;  /* 0 or the close code of the error */
    const char *err_reason;
};

struct cfg {
    enum kite_role role;
    uint64_t max;
    uint8_t rsv;
    bool require_mask;
};

static const struct cfg SERVER = {KITE_ROLE_SERVER, 1u << 24, 0, true};
static const struct cfg CLIENT = {KITE_ROLE_CLIENT, 1u << 24, 0, false};
static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

static void run_free(struct run *r)
{
    for (int i = 0; i <= r->nframes && i < MAX_FRAMES; i++)
        free(r->f[i].data);
    memset(r, 0, sizeof(*r));
}

static void on_header(struct run *r, const struct kite__frame_parser *p)
{
    ASSERT(!r->open);
    ASSERT(r->nframes < MAX_FRAMES);
    struct rec_frame *f = &r->f[r->nframes];
    f->hdr = p->hdr;
    f->data = malloc(p->hdr.payload_len ? (size_t)p->hdr.payload_len : 1);
    ASSERT(f->data);
    f->got = 0;
    r->open = true;
}

static void on_data(struct run *r, const struct kite__frame_event *ev)
{
    ASSERT(r->open);
    struct rec_frame *f = &r->f[r->nframes];
    ASSERT(f->got + ev->len <= f->hdr.payload_len);
    memcpy(f->data + f->got, ev->data, ev->len);
    f->got += ev->len;
    if (ev->frame_end) {
        ASSERT_UEQ(f->got, f->hdr.payload_len);
        r->open = false;
        r->nframes++;
    }
}

/* Drive the parser over one chunk until it wants more, checking the event contract. */
static void feed_chunk(struct kite__frame_parser *p, uint8_t *chunk, size_t len, struct run *r)
{
    size_t off = 0;
    for (;;) {
        size_t n = 0xdead;
        struct kite__frame_event ev;
        enum kite__fev e = kite__frame_parse(p, chunk + off, len - off, &n, &ev);
        ASSERT(n <= len - off);
        switch (e) {
        case KITE__FEV_NEED_MORE:
            ASSERT_EQ(n, len - off);
            return;
        case KITE__FEV_HEADER:
            on_header(r, p);
            break;
        case KITE__FEV_DATA:
            ASSERT(ev.data == chunk + off); /* a view into the input, no copy */
            ASSERT_EQ(ev.len, n);
            on_data(r, &ev);
            break;
        case KITE__FEV_ERROR:
            ASSERT_EQ(n, 0);
            ASSERT(ev.reason != NULL);
            if (r->err_code) { /* sticky: the same error again */
                ASSERT_EQ(ev.close_code, r->err_code);
                ASSERT(ev.reason == r->err_reason);
            }
            r->err_code = ev.close_code;
            r->err_reason = ev.reason;
            return;
        default:
            ASSERT(!"unknown event");
        }
        off += n;
    }
}

/* Parse `in` cut at the sorted positions cuts[0..ncuts), each piece in its own block. */
static void run_cuts(const struct cfg *c, const uint8_t *in, size_t len, const size_t *cuts,
                     size_t ncuts, struct run *r)
{
    struct kite__frame_parser p;
    kite__frame_parser_init(&p, c->role, c->max, c->rsv, c->require_mask);
    memset(r, 0, sizeof(*r));
    size_t start = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        uint8_t *chunk = malloc(end - start ? end - start : 1);
        ASSERT(chunk);
        memcpy(chunk, in + start, end - start);
        feed_chunk(&p, chunk, end - start, r);
        free(chunk);
        start = end;
    }
    if (r->err_code) { /* still stuck after the input ends */
        struct run again = *r;
        uint8_t none;
        feed_chunk(&p, &none, 0, &again);
    }
}

static void run_whole(const struct cfg *c, const uint8_t *in, size_t len, struct run *r)
{
    run_cuts(c, in, len, NULL, 0, r);
}

static void assert_same_run(const struct run *a, const struct run *b)
{
    ASSERT_EQ(a->nframes, b->nframes);
    ASSERT_EQ(a->open, b->open);
    ASSERT_EQ(a->err_code, b->err_code);
    ASSERT(a->err_reason == b->err_reason);
    for (int i = 0; i < a->nframes; i++) {
        const struct kite__frame_hdr *x = &a->f[i].hdr, *y = &b->f[i].hdr;
        ASSERT_EQ(x->opcode, y->opcode);
        ASSERT_EQ(x->fin, y->fin);
        ASSERT_EQ(x->rsv, y->rsv);
        ASSERT_EQ(x->masked, y->masked);
        ASSERT_MEMEQ(x->mask, y->mask, 4);
        ASSERT_UEQ(x->payload_len, y->payload_len);
        ASSERT_MEMEQ(a->f[i].data, b->f[i].data, (size_t)x->payload_len);
    }
}

/*
 * The input split anywhere gives the same result as whole: at every single offset
 * (every `step`-th one inside long payloads), at every pair of offsets for short
 * inputs, and one byte at a time.
 */
static void check_splits(const struct cfg *c, const uint8_t *in, size_t len)
{
    struct run whole, r;
    run_whole(c, in, len, &whole);
    for (size_t k = 0; k <= len; k += (k < 20 || len - k < 20 || len < 600) ? 1 : 997) {
        run_cuts(c, in, len, &k, 1, &r);
        assert_same_run(&whole, &r);
        run_free(&r);
    }
    if (len <= 48)
        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b++) {
                size_t cuts[2] = {a, b};
                run_cuts(c, in, len, cuts, 2, &r);
                assert_same_run(&whole, &r);
                run_free(&r);
            }
    size_t *cuts = malloc((len + 1) * sizeof(size_t));
    ASSERT(cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    run_cuts(c, in, len, cuts, len ? len - 1 : 0, &r);
    assert_same_run(&whole, &r);
    run_free(&r);
    free(cuts);
    run_free(&whole);
}

/* Parse whole, check splits, return the whole-run result for the caller to inspect. */
static void parse_all(const struct cfg *c, const uint8_t *in, size_t len, struct run *r)
{
    check_splits(c, in, len);
    run_whole(c, in, len, r);
}

#define BYTES(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static void expect_error(const struct cfg *c, const uint8_t *in, size_t len, int code)
{
    struct run r;
    parse_all(c, in, len, &r);
    if (r.err_code != code)
        kite_test_fail(__FILE__, __LINE__, "want error %d, got %d (%s)", code, r.err_code,
                       r.err_reason ? r.err_reason : "none");
    run_free(&r);
}

static void expect_ok(const struct cfg *c, const uint8_t *in, size_t len, int frames)
{
    struct run r;
    parse_all(c, in, len, &r);
    if (r.err_code)
        kite_test_fail(__FILE__, __LINE__, "unexpected error %d (%s)", r.err_code,
                       r.err_reason);
    ASSERT_EQ(r.nframes, frames);
    ASSERT(!r.open);
    run_free(&r);
}

/* ---- RFC 6455 §5.7 examples ---- */

/* §5.7: "A single-frame unmasked text message": 0x81 0x05 "Hello" (server to client). */
TEST(frame_rfc_single_unmasked_text)
{
    struct run r;
    parse_all(&CLIENT, BYTES(0x81, 0x05, 'H', 'e', 'l', 'l', 'o'), &r);
    ASSERT_EQ(r.err_code, 0);
    ASSERT_EQ(r.nframes, 1);
    ASSERT_EQ(r.f[0].hdr.opcode, KITE_OP_TEXT);
    ASSERT(r.f[0].hdr.fin);
    ASSERT(!r.f[0].hdr.masked);
    ASSERT_EQ(r.f[0].hdr.rsv, 0);
    ASSERT_UEQ(r.f[0].hdr.payload_len, 5);
    ASSERT_MEMEQ(r.f[0].data, "Hello", 5);
    run_free(&r);
}

/* §5.7: "A single-frame masked text message" with key 37 fa 21 3d (client to server). */
TEST(frame_rfc_single_masked_text)
{
    struct run r;
    parse_all(&SERVER,
              BYTES(0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58), &r);
    ASSERT_EQ(r.err_code, 0);
    ASSERT_EQ(r.nframes, 1);
    ASSERT(r.f[0].hdr.masked);
    ASSERT_MEMEQ(r.f[0].hdr.mask, KEY, 4);
    ASSERT_MEMEQ(r.f[0].data, "Hello", 5);
    run_free(&r);
}

/* §5.7: "A fragmented unmasked text message": 0x01 0x03 "Hel", 0x80 0x02 "lo" (§5.4). */
TEST(frame_rfc_fragmented_text)
{
    struct run r;
    parse_all(&CLIENT, BYTES(0x01, 0x03, 'H', 'e', 'l', 0x80, 0x02, 'l', 'o'), &r);
    ASSERT_EQ(r.err_code, 0);
    ASSERT_EQ(r.nframes, 2);
    ASSERT_EQ(r.f[0].hdr.opcode, KITE_OP_TEXT);
    ASSERT(!r.f[0].hdr.fin);
    ASSERT_MEMEQ(r.f[0].data, "Hel", 3);
    ASSERT_EQ(r.f[1].hdr.opcode, KITE_OP_CONTINUATION);
    ASSERT(r.f[1].hdr.fin);
    ASSERT_MEMEQ(r.f[1].data, "lo", 2);
    run_free(&r);
}

/* §5.7: "Unmasked Ping request and masked Ping response" (the response is a pong). */
TEST(frame_rfc_ping_pong)
{
    struct run r;
    parse_all(&CLIENT, BYTES(0x89, 0x05, 'H', 'e', 'l', 'l', 'o'), &r);
    ASSERT_EQ(r.nframes, 1);
    ASSERT_EQ(r.f[0].hdr.opcode, KITE_OP_PING);
    ASSERT_MEMEQ(r.f[0].data, "Hello", 5);
    run_free(&r);
    parse_all(&SERVER,
              BYTES(0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58), &r);
    ASSERT_EQ(r.nframes, 1);
    ASSERT_EQ(r.f[0].hdr.opcode, KITE_OP_PONG);
    ASSERT_MEMEQ(r.f[0].data, "Hello", 5);
    run_free(&r);
}

/* Build a binary frame with the writer: payload byte i = i * 7, masked with KEY. */
static uint8_t *binary_frame(size_t len, bool masked, size_t *out_len, uint8_t **plain)
{
    size_t hl = kite__frame_header_size(len, masked);
    uint8_t *buf = malloc(hl + len), *pl = malloc(len ? len : 1);
    ASSERT(buf && pl);
    for (size_t i = 0; i < len; i++)
        pl[i] = (uint8_t)(i * 7);
    ASSERT_EQ(kite__frame_write_header(buf, 0x80 | KITE_OP_BINARY, len, masked ? KEY : NULL),
              hl);
    if (masked)
        kite__mask_copy(buf + hl, pl, len, KEY, 0);
    else
        memcpy(buf + hl, pl, len);
    *out_len = hl + len;
    *plain = pl;
    return buf;
}

/* §5.7: "256 bytes binary message in a single unmasked frame": 0x82 0x7E 0x0100. */
TEST(frame_rfc_256_byte_binary)
{
    for (int masked = 0; masked < 2; masked++) {
        size_t n;
        uint8_t *plain, *f = binary_frame(256, masked, &n, &plain);
        ASSERT_MEMEQ(f, masked ? "\x82\xfe\x01\x00" : "\x82\x7e\x01\x00", 4);
        struct run r;
        parse_all(masked ? &SERVER : &CLIENT, f, n, &r);
        ASSERT_EQ(r.nframes, 1);
        ASSERT_UEQ(r.f[0].hdr.payload_len, 256);
        ASSERT_MEMEQ(r.f[0].data, plain, 256);
        run_free(&r);
        free(f);
        free(plain);
    }
}

/* §5.7: "64KiB binary message in a single unmasked frame": 0x82 0x7F 0x0000000000010000. */
TEST(frame_rfc_64k_binary)
{
    for (int masked = 0; masked < 2; masked++) {
        size_t n;
        uint8_t *plain, *f = binary_frame(65536, masked, &n, &plain);
        ASSERT_MEMEQ(f, masked ? "\x82\xff\0\0\0\0\0\x01\0\0" : "\x82\x7f\0\0\0\0\0\x01\0\0",
                     10);
        struct run r;
        parse_all(masked ? &SERVER : &CLIENT, f, n, &r);
        ASSERT_EQ(r.nframes, 1);
        ASSERT_UEQ(r.f[0].hdr.payload_len, 65536);
        ASSERT_MEMEQ(r.f[0].data, plain, 65536);
        run_free(&r);
        free(f);
        free(plain);
    }
}

/* ---- §5.2 framing rules ---- */

/* §5.2: opcodes 0x3-0x7 and 0xB-0xF are reserved; receiving one fails with 1002. */
TEST(frame_reserved_opcodes)
{
    for (unsigned op = 0; op < 16; op++) {
        bool known = op <= 2 || (op >= 8 && op <= 10);
        uint8_t f[2] = {(uint8_t)(0x80 | op), 0x00};
        struct run r;
        parse_all(&CLIENT, f, 2, &r);
        ASSERT_EQ(r.err_code, known && op != 0 ? 0 : 1002); /* op 0: nothing to continue */
        run_free(&r);
    }
}

/* §5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings". */
TEST(frame_rsv_bits_without_extension)
{
    expect_error(&CLIENT, BYTES(0xC1, 0x00), 1002);
    expect_error(&CLIENT, BYTES(0xA1, 0x00), 1002);
    expect_error(&CLIENT, BYTES(0x91, 0x00), 1002);
    expect_ok(&CLIENT, BYTES(0x81, 0x00), 1);
}

/* §5.2 + RFC 7692 §6.1: with RSV1 claimed, it may be set on the first frame of a message
 * only; never on a continuation or control frame; RSV2 stays forbidden. */
TEST(frame_rsv_bits_with_extension)
{
    struct cfg c = CLIENT;
    c.rsv = KITE_RSV1;
    struct run r;
    parse_all(&c, BYTES(0xC1, 0x01, 'x'), &r);
    ASSERT_EQ(r.err_code, 0);
    ASSERT_EQ(r.f[0].hdr.rsv, KITE_RSV1);
    run_free(&r);
    expect_ok(&c, BYTES(0x42, 0x00, 0x80, 0x00), 2);   /* binary+RSV1, then continuation */
    expect_error(&c, BYTES(0x42, 0x00, 0xC0, 0x00), 1002); /* RSV1 on continuation */
    expect_error(&c, BYTES(0xC9, 0x00), 1002);             /* RSV1 on ping */
    expect_error(&c, BYTES(0xA1, 0x00), 1002);             /* RSV2 not claimed */
    c.rsv = KITE_RSV_MASK;
    expect_ok(&c, BYTES(0xF1, 0x00), 1);
}

/* §5.5: control frames "MUST NOT be fragmented" and carry at most 125 bytes. */
TEST(frame_control_frame_rules)
{
    expect_error(&CLIENT, BYTES(0x09, 0x00), 1002); /* ping without fin */
    expect_error(&CLIENT, BYTES(0x08, 0x00), 1002);
    expect_error(&CLIENT, BYTES(0x8A, 0x7E, 0x00, 0x7E), 1002); /* pong of 126 */
    expect_error(&CLIENT, BYTES(0x88, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0), 1002);
    uint8_t f[127] = {0x89, 125};
    expect_ok(&CLIENT, f, sizeof(f), 1); /* 125 is allowed */
}

/* §5.2: "the most significant bit MUST be 0" in a 64-bit length. */
TEST(frame_64bit_length_top_bit)
{
    struct cfg c = CLIENT;
    c.max = UINT64_MAX; /* so the size limit cannot be what fails */
    expect_error(&c, BYTES(0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0), 1002);
    expect_error(&c, BYTES(0x82, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF), 1002);
}

/* §5.2: "the minimal number of bytes MUST be used to encode the length". */
TEST(frame_minimal_length_encoding)
{
    expect_error(&CLIENT, BYTES(0x82, 0x7E, 0x00, 0x00), 1002);
    expect_error(&CLIENT, BYTES(0x82, 0x7E, 0x00, 0x7D), 1002); /* 125 in 16 bits */
    expect_error(&CLIENT, BYTES(0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF), 1002);
    expect_error(&CLIENT, BYTES(0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x7E), 1002);
    uint8_t *f = calloc(1, 4 + 126);
    ASSERT(f);
    memcpy(f, "\x82\x7e\x00\x7e", 4); /* 126: the smallest 16-bit length */
    expect_ok(&CLIENT, f, 4 + 126, 1);
    free(f);
    size_t n;
    uint8_t *plain, *g = binary_frame(65536, false, &n, &plain); /* smallest 64-bit */
    struct run r;
    run_whole(&CLIENT, g, n, &r);
    ASSERT_EQ(r.err_code, 0);
    ASSERT_EQ(r.nframes, 1);
    run_free(&r);
    free(g);
    free(plain);
}

/* §5.1: a server MUST close on an unmasked client frame; a client MUST close on a
 * masked server frame. require_mask=false (kite_ws_options.masking) tolerates the former. */
TEST(frame_masking_rules)
{
    expect_error(&SERVER, BYTES(0x81, 0x02, 'h', 'i'), 1002);
    expect_error(&CLIENT, BYTES(0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2), 1002);
    expect_error(&SERVER, BYTES(0x89, 0x00), 1002); /* control frames too */
    struct cfg lax = SERVER;
    lax.require_mask = false;
    struct run r;
    parse_all(&lax, BYTES(0x81, 0x02, 'h', 'i'), &r);
    ASSERT_EQ(r.err_code, 0);
    ASSERT(!r.f[0].hdr.masked);
    ASSERT_MEMEQ(r.f[0].data, "hi", 2);
    run_free(&r);
    parse_all(&lax, BYTES(0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2), &r);
    ASSERT_MEMEQ(r.f[0].data, "hi", 2);
    run_free(&r);
}

/* §5.4: a continuation needs a message in progress; a new data frame must wait for
 * the current message to end; control frames may be injected in between. */
TEST(frame_fragmentation_sequence)
{
    expect_error(&CLIENT, BYTES(0x80, 0x00), 1002);             /* nothing to continue */
    expect_error(&CLIENT, BYTES(0x00, 0x00), 1002);
    expect_error(&CLIENT, BYTES(0x01, 0x00, 0x81, 0x00), 1002); /* text inside text */
    expect_error(&CLIENT, BYTES(0x01, 0x00, 0x02, 0x00), 1002); /* binary inside text */
    expect_error(&CLIENT, BYTES(0x01, 0x00, 0x80, 0x00, 0x80, 0x00), 1002); /* after fin */
    /* text, ping, cont, pong, close, cont(fin), then a new binary message */
    expect_ok(&CLIENT,
              BYTES(0x01, 0x01, 'a', 0x89, 0x01, 'p', 0x00, 0x01, 'b', 0x8A, 0x00, 0x88, 0x02,
                    0x03, 0xe8, 0x80, 0x01, 'c', 0x82, 0x01, 'd'),
              7);
}

/* The parser remembers the message's opcode for the caller (§5.4). */
TEST(frame_message_opcode_tracked)
{
    struct kite__frame_parser p;
    kite__frame_parser_init(&p, KITE_ROLE_CLIENT, 100, 0, false);
    uint8_t in[] = {0x02, 0x00, 0x89, 0x00, 0x80, 0x00};
    size_t off = 0, n;
    struct kite__frame_event ev;
    ASSERT_EQ(kite__frame_parse(&p, in, sizeof(in), &n, &ev), KITE__FEV_HEADER);
    off += n;
    ASSERT(p.in_message);
    ASSERT_EQ(p.msg_opcode, KITE_OP_BINARY);
    ASSERT_EQ(kite__frame_parse(&p, in + off, sizeof(in) - off, &n, &ev), KITE__FEV_DATA);
    ASSERT_EQ(kite__frame_parse(&p, in + off, sizeof(in) - off, &n, &ev), KITE__FEV_HEADER);
    off += n;
    ASSERT(p.in_message); /* the ping does not end it */
    ASSERT_EQ(kite__frame_parse(&p, in + off, sizeof(in) - off, &n, &ev), KITE__FEV_DATA);
    ASSERT_EQ(kite__frame_parse(&p, in + off, sizeof(in) - off, &n, &ev), KITE__FEV_HEADER);
    ASSERT(!p.in_message);
}

/* §10.4 (limits) and §7.4.1: a frame over the limit fails with 1009, control frames too;
 * exactly the limit passes. */
TEST(frame_size_limit)
{
    struct cfg c = CLIENT;
    c.max = 100;
    uint8_t f[2 + 101] = {0x82, 100};
    expect_ok(&c, f, 102, 1);
    f[1] = 101;
    expect_error(&c, f, 103, 1009);
    c.max = 10;
    expect_error(&c, BYTES(0x89, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), 1009);
    c.max = 1u << 20;
    expect_error(&c, BYTES(0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0), 1009); /* 2^62 */
    expect_error(&c, BYTES(0x82, 0x7F, 0, 0, 0, 0, 0, 0x10, 0, 1), 1009);
    c.max = 0;
    expect_ok(&c, BYTES(0x81, 0x00, 0x89, 0x00), 2);
    expect_error(&c, BYTES(0x81, 0x01, 'x'), 1009);
}

/* Errors are sticky: after one, every call reports it again, consumes nothing, and the
 * next bytes (even a valid frame) are never looked at. */
TEST(frame_errors_are_sticky)
{
    struct kite__frame_parser p;
    kite__frame_parser_init(&p, KITE_ROLE_SERVER, 1000, 0, true);
    uint8_t bad[] = {0x83, 0x80, 1, 2, 3, 4};
    uint8_t good[] = {0x81, 0x80, 1, 2, 3, 4};
    size_t n = 99;
    struct kite__frame_event ev;
    ASSERT_EQ(kite__frame_parse(&p, bad, sizeof(bad), &n, &ev), KITE__FEV_ERROR);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(ev.close_code, 1002);
    ASSERT_STREQ(ev.reason, "reserved opcode");
    for (int i = 0; i < 3; i++) {
        n = 99;
        ASSERT_EQ(kite__frame_parse(&p, good, sizeof(good), &n, &ev), KITE__FEV_ERROR);
        ASSERT_EQ(n, 0);
        ASSERT_EQ(ev.close_code, 1002);
        ASSERT_STREQ(ev.reason, "reserved opcode");
    }
    ASSERT_EQ(kite__frame_parse(&p, NULL, 0, &n, &ev), KITE__FEV_ERROR);
}

/* The first two bytes decide most rules: an error shows as soon as they are in, before
 * the rest of the header (§5.2, the 64-bit length with its mask is 14 bytes). */
TEST(frame_fails_on_second_byte)
{
    struct kite__frame_parser p;
    kite__frame_parser_init(&p, KITE_ROLE_SERVER, 1000, 0, true);
    uint8_t b0 = 0x82, b1 = 0x7F; /* unmasked, header would be 10 bytes */
    size_t n;
    struct kite__frame_event ev;
    ASSERT_EQ(kite__frame_parse(&p, &b0, 1, &n, &ev), KITE__FEV_NEED_MORE);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(kite__frame_parse(&p, &b1, 1, &n, &ev), KITE__FEV_ERROR);
    ASSERT_EQ(ev.close_code, 1002);
    ASSERT_STREQ(ev.reason, "unmasked frame from a client");
}

/* An empty payload still produces one DATA event (len 0, frame_end), also when the
 * header was the last byte of the input: a call with no input delivers it. */
TEST(frame_empty_payload_events)
{
    struct kite__frame_parser p;
    kite__frame_parser_init(&p, KITE_ROLE_SERVER, 1000, 0, true);
    uint8_t in[] = {0x89, 0x80, 9, 9, 9, 9};
    size_t n;
    struct kite__frame_event ev;
    ASSERT_EQ(kite__frame_parse(&p, in, sizeof(in), &n, &ev), KITE__FEV_HEADER);
    ASSERT_EQ(n, 6);
    ASSERT_EQ(kite__frame_parse(&p, in + 6, 0, &n, &ev), KITE__FEV_DATA);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(ev.len, 0);
    ASSERT(ev.frame_end);
    ASSERT_EQ(kite__frame_parse(&p, in + 6, 0, &n, &ev), KITE__FEV_NEED_MORE);
    expect_ok(&SERVER, BYTES(0x81, 0x80, 1, 2, 3, 4, 0x82, 0x80, 5, 6, 7, 8), 2);
}

/* §5.3: the payload is unmasked in place in the caller's buffer: the DATA event points
 * at the input right after the header, and the buffer now holds the plain text. */
TEST(frame_unmasks_in_place)
{
    uint8_t in[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, 0xEE};
    struct kite__frame_parser p;
    kite__frame_parser_init(&p, KITE_ROLE_SERVER, 1000, 0, true);
    size_t n;
    struct kite__frame_event ev;
    ASSERT_EQ(kite__frame_parse(&p, in, 11, &n, &ev), KITE__FEV_HEADER);
    ASSERT_EQ(n, 6);
    ASSERT_EQ(kite__frame_parse(&p, in + 6, 5, &n, &ev), KITE__FEV_DATA);
    ASSERT(ev.data == in + 6);
    ASSERT(ev.frame_end);
    ASSERT_MEMEQ(in + 6, "Hello", 5);
    ASSERT_EQ(in[11], 0xEE); /* nothing past the frame touched */
    ASSERT_MEMEQ(in, "\x81\x85\x37\xfa\x21\x3d", 6);
}

/*
 * §5.2, §5.1, §5.4, §5.5: every value of the first two bytes, for both roles, with and
 * without a message in progress, with and without extensions, checked against the
 * rules written out again here, fed whole (fast path) and byte by byte (slow path).
 */
static bool ref_bytes_ok(const struct cfg *c, bool in_message, uint8_t b0, uint8_t b1)
{
    unsigned op = b0 & 0xF, rsv = b0 & 0x70, len7 = b1 & 0x7F;
    bool fin = b0 & 0x80, masked = b1 & 0x80, control = op >= 8;
    if (!(op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10))
        return false;
    if ((rsv | c->rsv) != c->rsv)
        return false;
    if (rsv && (op == 0 || control))
        return false;
    if (control && (!fin || len7 > 125))
        return false;
    if (c->role == KITE_ROLE_CLIENT && masked)
        return false;
    if (c->role == KITE_ROLE_SERVER && c->require_mask && !masked)
        return false;
    if (op == 0 && !in_message)
        return false;
    if ((op == 1 || op == 2) && in_message)
        return false;
    return true;
}

TEST(frame_first_two_bytes_exhaustive)
{
    static const struct cfg cfgs[] = {
        {KITE_ROLE_SERVER, 1u << 20, 0, true},
        {KITE_ROLE_SERVER, 1u << 20, KITE_RSV1, false},
        {KITE_ROLE_CLIENT, 1u << 20, 0, false},
        {KITE_ROLE_CLIENT, 1u << 20, KITE_RSV_MASK, false},
    };
    for (size_t ci = 0; ci < KITE_ARRAY_LEN(cfgs); ci++)
        for (int inm = 0; inm < 2; inm++)
            for (unsigned v = 0; v < 65536; v++) {
                const struct cfg *c = &cfgs[ci];
                uint8_t in[32];
                size_t n = 0;
                bool mask_prefix = c->role == KITE_ROLE_SERVER;
                if (inm) { /* an empty non-final text frame opens a message */
                    in[n++] = 0x01;
                    in[n++] = mask_prefix ? 0x80 : 0x00;
                    if (mask_prefix)
                        for (int i = 0; i < 4; i++)
                            in[n++] = 0;
                }
                uint8_t b0 = (uint8_t)(v >> 8), b1 = (uint8_t)v;
                in[n++] = b0;
                in[n++] = b1;
                unsigned len7 = b1 & 0x7F;
                if (len7 == 126) {
                    in[n++] = 0;
                    in[n++] = 126;
                } else if (len7 == 127) {
                    static const uint8_t l64[8] = {0, 0, 0, 0, 0, 1, 0, 0};
                    memcpy(in + n, l64, 8);
                    n += 8;
                }
                if (b1 & 0x80)
                    for (int i = 0; i < 4; i++)
                        in[n++] = (uint8_t)i;
                bool ok = ref_bytes_ok(c, inm, b0, b1);
                for (int bytewise = 0; bytewise < 2; bytewise++) {
                    struct kite__frame_parser p;
                    kite__frame_parser_init(&p, c->role, c->max, c->rsv, c->require_mask);
                    enum kite__fev last = KITE__FEV_NEED_MORE;
                    size_t off = 0, step = bytewise ? 1 : n;
                    int headers = 0;
                    while (off < n && last != KITE__FEV_ERROR) {
                        size_t m;
                        struct kite__frame_event ev;
                        last = kite__frame_parse(&p, in + off, KITE_MIN(step, n - off), &m, &ev);
                        off += m;
                        headers += last == KITE__FEV_HEADER;
                        if (last == KITE__FEV_ERROR) { /* a specific reason, not the fallback */
                            ASSERT_EQ(ev.close_code, 1002);
                            ASSERT(strcmp(ev.reason, "invalid frame header") != 0);
                        }
                    }
                    if ((last != KITE__FEV_ERROR) != ok || (ok && headers != 1 + inm))
                        kite_test_fail(__FILE__, __LINE__,
                                       "cfg %zu inm %d bytes %02x %02x bytewise %d: got %d",
                                       ci, inm, b0, b1, bytewise, (int)last);
                }
            }
}

/* ---- the writer ---- */

/* §5.2: 7-bit lengths up to 125, 16-bit up to 65535, 64-bit beyond, plus the key. */
TEST(frame_header_size)
{
    ASSERT_EQ(kite__frame_header_size(0, false), 2);
    ASSERT_EQ(kite__frame_header_size(125, false), 2);
    ASSERT_EQ(kite__frame_header_size(126, false), 4);
    ASSERT_EQ(kite__frame_header_size(65535, false), 4);
    ASSERT_EQ(kite__frame_header_size(65536, false), 10);
    ASSERT_EQ(kite__frame_header_size(UINT64_MAX >> 1, false), 10);
    ASSERT_EQ(kite__frame_header_size(0, true), 6);
    ASSERT_EQ(kite__frame_header_size(126, true), 8);
    ASSERT_EQ(kite__frame_header_size(65536, true), 14);
}

/* §5.7: the writer reproduces the RFC's example headers byte for byte. */
TEST(frame_writer_rfc_bytes)
{
    uint8_t h[14];
    ASSERT_EQ(kite__frame_write_header(h, 0x81, 5, NULL), 2);
    ASSERT_MEMEQ(h, "\x81\x05", 2);
    ASSERT_EQ(kite__frame_write_header(h, 0x81, 5, KEY), 6);
    ASSERT_MEMEQ(h, "\x81\x85\x37\xfa\x21\x3d", 6);
    ASSERT_EQ(kite__frame_write_header(h, 0x01, 3, NULL), 2);
    ASSERT_MEMEQ(h, "\x01\x03", 2);
    ASSERT_EQ(kite__frame_write_header(h, 0x80, 2, NULL), 2);
    ASSERT_MEMEQ(h, "\x80\x02", 2);
    ASSERT_EQ(kite__frame_write_header(h, 0x82, 256, NULL), 4);
    ASSERT_MEMEQ(h, "\x82\x7e\x01\x00", 4);
    ASSERT_EQ(kite__frame_write_header(h, 0x82, 65536, NULL), 10);
    ASSERT_MEMEQ(h, "\x82\x7f\0\0\0\0\0\x01\0\0", 10);
    ASSERT_EQ(kite__frame_write_header(h, 0x82, UINT64_MAX >> 1, KEY), 14);
    ASSERT_MEMEQ(h, "\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x37\xfa\x21\x3d", 14);
    uint8_t masked[5];
    kite__mask_copy(masked, (const uint8_t *)"Hello", 5, KEY, 0);
    ASSERT_MEMEQ(masked, "\x7f\x9f\x4d\x51\x58", 5);
}

/* Writer -> parser round trips at every length class, both roles, with rsv bits and
 * fragmentation (§5.2, §5.3, §5.4). */
TEST(frame_writer_round_trip)
{
    static const size_t lens[] = {0, 1, 3, 125, 126, 127, 1000, 65535, 65536, 70001};
    struct cfg srv = SERVER, cli = CLIENT;
    srv.rsv = cli.rsv = KITE_RSV1;
    for (size_t li = 0; li < KITE_ARRAY_LEN(lens); li++)
        for (int role = 0; role < 2; role++) {
            size_t len = lens[li];
            bool masked = role == KITE_ROLE_SERVER; /* what a server receives */
            uint8_t key[4] = {(uint8_t)len, 0x5a, (uint8_t)(len >> 8), 0xc3};
            uint8_t *plain = malloc(len + 1), *buf = malloc(2 * (14 + len) + 20);
            ASSERT(plain && buf);
            for (size_t i = 0; i < len; i++)
                plain[i] = (uint8_t)(i ^ (i >> 8));
            /* A message in two fragments with a ping in between. */
            size_t half = len / 2, n = 0;
            n += kite__frame_write_header(buf + n, KITE_RSV1 | KITE_OP_BINARY, half,
                                          masked ? key : NULL);
            if (masked)
                kite__mask_copy(buf + n, plain, half, key, 0);
            else
                memcpy(buf + n, plain, half);
            n += half;
            n += kite__frame_write_header(buf + n, 0x80 | KITE_OP_PING, 0, masked ? key : NULL);
            n += kite__frame_write_header(buf + n, 0x80, len - half, masked ? key : NULL);
            if (masked)
                kite__mask_copy(buf + n, plain + half, len - half, key, 0);
            else
                memcpy(buf + n, plain + half, len - half);
            n += len - half;
            struct run r;
            const struct cfg *c = role == KITE_ROLE_SERVER ? &srv : &cli;
            if (len <= 1000)
                check_splits(c, buf, n);
            run_whole(c, buf, n, &r);
            ASSERT_EQ(r.err_code, 0);
            ASSERT_EQ(r.nframes, 3);
            ASSERT_EQ(r.f[0].hdr.opcode, KITE_OP_BINARY);
            ASSERT_EQ(r.f[0].hdr.rsv, KITE_RSV1);
            ASSERT(!r.f[0].hdr.fin);
            ASSERT_EQ(r.f[1].hdr.opcode, KITE_OP_PING);
            ASSERT_EQ(r.f[2].hdr.opcode, KITE_OP_CONTINUATION);
            ASSERT(r.f[2].hdr.fin);
            ASSERT_EQ(r.f[0].hdr.masked, masked);
            ASSERT_MEMEQ(r.f[0].data, plain, half);
            ASSERT_MEMEQ(r.f[2].data, plain + half, len - half);
            run_free(&r);
            free(plain);
            free(buf);
        }
}

/* Many frames back to back in one buffer (the benchmark's shape), split at every offset:
 * the mask rotation restarts at each frame and carries across chunks within one. */
TEST(frame_back_to_back_masked)
{
    uint8_t buf[10 * (14 + 40)];
    uint8_t plain[40];
    size_t n = 0;
    for (int i = 0; i < 10; i++) {
        size_t len = (size_t)(i * 4 + 3);
        uint8_t key[4] = {(uint8_t)i, (uint8_t)(i * 3), 0xff, 0x10};
        for (size_t j = 0; j < len; j++)
            plain[j] = (uint8_t)(i + j);
        n += kite__frame_write_header(buf + n, 0x80 | KITE_OP_BINARY, len, key);
        kite__mask_copy(buf + n, plain, len, key, 0);
        n += len;
    }
    struct run r;
    parse_all(&SERVER, buf, n, &r);
    ASSERT_EQ(r.nframes, 10);
    for (int i = 0; i < 10; i++)
        for (size_t j = 0; j < r.f[i].got; j++)
            ASSERT_EQ(r.f[i].data[j], (uint8_t)(i + j));
    run_free(&r);
}

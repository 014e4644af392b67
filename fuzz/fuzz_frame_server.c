/*
 * Fuzz target: the frame parser (src/codec/frame.c) in the server role, reading what a
 * client sends. fuzz_frame_client.c includes this file with FUZZ_FRAME_ROLE set to the
 * client role.
 *
 * Input layout:
 *   byte 0      parser config: bits 0-2 the RSV bits extensions claimed, bit 3 require
 *               masking (server role), bits 4-6 pick the frame size limit
 *   bytes 1-4   seed for the chunk sizes; byte 1 mod 3 also picks the vector width
 *               used for unmasking large chunks (kite__simd_cap)
 *   the rest    the byte stream
 *
 * The stream is parsed twice, whole and cut into chunks of sizes drawn from the seed
 * (each chunk in its own exactly-sized heap block). Both runs must agree on every
 * header, every payload byte and the error. Along the way we check the event contract:
 * consumed <= len, NEED_MORE consumes everything, DATA points at the next input byte
 * and is the unmasked input, payload totals equal the header's length, headers obey
 * the rules the parser claims to enforce, errors are 1002/1009 and sticky.
 */
#include <stdio.h>
#include <stdlib.h>

#include "codec/frame.h"

#ifndef FUZZ_FRAME_ROLE
#define FUZZ_FRAME_ROLE KITE_ROLE_SERVER
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks stay on in release builds (NDEBUG would disable assert). */
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);       \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static const uint64_t size_limits[8] = {1u << 24, 0, 125, 65535, 65536, 1u << 20, 200,
                                        UINT64_MAX};

struct fconfig {
    enum kite_role role;
    uint8_t rsv;
    bool require_mask;
    uint64_t max;
};

/* What one run saw, reduced to a hash plus counters, and where it stands. */
struct fstate {
    struct kite__frame_parser p;
    const uint8_t *orig;  /* the untouched input, for the unmasking check */
    size_t pos;           /* stream offset of the next unconsumed byte */
    bool open;            /* header seen, frame_end not yet */
    uint64_t got;         /* payload bytes of the open frame so far */
    uint64_t hash;        /* FNV-1a over the canonical event stream */
    unsigned frames;
    uint16_t err;
};

static void mix(struct fstate *s, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        s->hash ^= b[i];
        s->hash *= 0x100000001b3ull;
    }
}

static void on_header(struct fstate *s, const struct fconfig *c)
{
    const struct kite__frame_hdr *h = &s->p.hdr;
    CHECK(!s->open);
    CHECK(h->payload_len <= c->max);
    CHECK(h->payload_len >> 63 == 0);
    CHECK((h->rsv & ~c->rsv) == 0);
    CHECK(h->opcode <= 2 || (h->opcode >= 8 && h->opcode <= 10));
    if (h->opcode >= 8)
        CHECK(h->fin && h->payload_len <= 125 && h->rsv == 0);
    if (h->opcode == KITE_OP_CONTINUATION)
        CHECK(h->rsv == 0);
    if (c->role == KITE_ROLE_CLIENT)
        CHECK(!h->masked);
    else if (c->require_mask)
        CHECK(h->masked);
    uint8_t rec[17] = {'H', h->opcode, h->fin, h->rsv, h->masked, h->mask[0], h->mask[1],
                       h->mask[2], h->mask[3]};
    memcpy(rec + 9, &h->payload_len, 8);
    mix(s, rec, sizeof(rec));
    s->open = true;
    s->got = 0;
}

static void on_data(struct fstate *s, const struct kite__frame_event *ev)
{
    const struct kite__frame_hdr *h = &s->p.hdr;
    CHECK(s->open);
    CHECK(s->got + ev->len <= h->payload_len);
    for (size_t i = 0; i < ev->len; i++) { /* §5.3, continuing the rotation */
        uint8_t want = s->orig[s->pos + i] ^ (h->masked ? h->mask[(s->got + i) & 3] : 0);
        CHECK(ev->data[i] == want);
    }
    mix(s, ev->data, ev->len);
    s->got += ev->len;
    CHECK(ev->frame_end == (s->got == h->payload_len));
    if (ev->frame_end) {
        mix(s, "E", 1);
        s->open = false;
        s->frames++;
    }
}

static void on_error(struct fstate *s, const struct kite__frame_event *ev)
{
    CHECK(ev->close_code == 1002 || ev->close_code == 1009);
    CHECK(ev->reason != NULL);
    if (s->err)
        CHECK(ev->close_code == s->err);
    s->err = ev->close_code;
    mix(s, "X", 1);
    mix(s, ev->reason, strlen(ev->reason));
}

/* Drive the parser over one chunk until it asks for more or fails. */
static void feed(struct fstate *s, const struct fconfig *c, uint8_t *chunk, size_t len)
{
    size_t off = 0;
    for (;;) {
        size_t n = (size_t)-1;
        struct kite__frame_event ev;
        enum kite__fev e = kite__frame_parse(&s->p, chunk + off, len - off, &n, &ev);
        CHECK(n <= len - off);
        switch (e) {
        case KITE__FEV_NEED_MORE:
            CHECK(n == len - off);
            s->pos += n;
            return;
        case KITE__FEV_HEADER:
            on_header(s, c);
            break;
        case KITE__FEV_DATA:
            CHECK(ev.data == chunk + off && ev.len == n);
            on_data(s, &ev);
            break;
        case KITE__FEV_ERROR:
            CHECK(n == 0);
            on_error(s, &ev);
            /* Sticky: a second call, even with nothing, reports the same. */
            CHECK(kite__frame_parse(&s->p, chunk + off, len - off, &n, &ev) ==
                      KITE__FEV_ERROR &&
                  n == 0 && ev.close_code == s->err);
            return;
        default:
            CHECK(!"unknown event");
        }
        off += n;
        s->pos += n;
    }
}

static uint32_t next_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* Chunk sizes: mostly tiny (headers split everywhere), sometimes medium or large. */
static size_t chunk_size(uint32_t *x)
{
    uint32_t r = next_rand(x);
    switch (r & 3) {
    case 0:
        return 1;
    case 1:
        return 1 + (r >> 8) % 4;
    case 2:
        return 1 + (r >> 8) % 32;
    default:
        return 1 + (r >> 8) % 4096;
    }
}

static void run(struct fstate *s, const struct fconfig *c, const uint8_t *in, size_t len,
                uint32_t seed)
{
    memset(s, 0, sizeof(*s));
    kite__frame_parser_init(&s->p, c->role, c->max, c->rsv, c->require_mask);
    s->orig = in;
    s->hash = 0xcbf29ce484222325ull;
    size_t off = 0;
    do {
        size_t n = len - off;
        if (seed) {
            size_t want = chunk_size(&seed);
            n = KITE_MIN(want, n);
        }
        uint8_t *chunk = malloc(n ? n : 1);
        CHECK(chunk != NULL);
        memcpy(chunk, in + off, n);
        feed(s, c, chunk, n);
        free(chunk);
        off += n;
    } while (off < len && !s->err);
    if (!s->err) {
        uint8_t none;
        feed(s, c, &none, 0); /* no input left: an empty frame's DATA may still come */
        CHECK(s->pos == len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    struct fconfig c = {
        .role = FUZZ_FRAME_ROLE,
        .rsv = (uint8_t)((data[0] & 7u) << 4),
        .require_mask = (data[0] & 8u) != 0,
        .max = size_limits[(data[0] >> 4) & 7u],
    };
    kite__simd_cap = 2 - data[1] % 3;
    uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 |
                    (uint32_t)data[4] << 24;
    const uint8_t *in = data + 5;
    size_t len = size - 5;
    struct fstate whole, chunked;
    run(&whole, &c, in, len, 0);
    run(&chunked, &c, in, len, seed | 1u);
    CHECK(whole.hash == chunked.hash);
    CHECK(whole.frames == chunked.frames && whole.err == chunked.err);
    CHECK(whole.open == chunked.open && whole.got == chunked.got);
    return 0;
}

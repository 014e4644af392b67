/*
 * codec/frame — RFC 6455 §5.2 framing: an incremental, pull-style frame parser for
 * both roles, the frame-header writer, and masking. Sans-I/O.
 *
 * The parser is driven in a loop. Each call looks at in[0..len), consumes some bytes
 * (*consumed) and reports one event:
 *
 *   KITE__FEV_NEED_MORE  all input consumed, nothing to report (call again with more)
 *   KITE__FEV_HEADER     a frame header was parsed: p->hdr describes the frame
 *   KITE__FEV_DATA       a chunk of the current frame's payload, already unmasked in
 *                        place: ev->data/ev->len point into `in`. ev->frame_end is true
 *                        on the last chunk. Every frame produces at least one DATA event
 *                        (a zero-length one for an empty payload), so frame_end always
 *                        fires once per frame.
 *   KITE__FEV_ERROR      the input breaks a rule; ev->close_code (1002 or 1009) and
 *                        ev->reason (static string) say which. *consumed is 0. The
 *                        parser is then stuck: every later call returns the same error.
 *
 * Each call reports at most one event, so call it in a loop, advancing by *consumed,
 * until it returns NEED_MORE (or ERROR). Keep calling even when no input is left: a
 * call with len == 0 is valid and still reports the zero-length DATA event of an empty
 * frame whose header was the last thing consumed. NEED_MORE always means *consumed ==
 * len. DATA has ev->data == in and ev->len == *consumed.
 *
 *   size_t off = 0, n;
 *   for (;;) {
 *       enum kite__fev e = kite__frame_parse(&p, buf + off, len - off, &n, &ev);
 *       off += n;
 *       if (e == KITE__FEV_NEED_MORE || e == KITE__FEV_ERROR) break;
 *       ...
 *   }
 *
 * Input may be split anywhere, one byte at a time included, with the same events (the
 * DATA chunks follow the splits); the parser buffers at most the 14 header bytes itself
 * and never copies payload. The rules on the first two header bytes are checked as soon
 * as both have arrived; the length rules once the whole header has.
 *
 * Rules enforced (RFC 6455 §5): known opcodes only (§5.2); RSV bits only those in
 * rsv_allowed (claimed by negotiated extensions), and only on the first frame of a
 * data message: continuation and control frames with any RSV bit are refused (the
 * rule RFC 7692 §6.1 sets for RSV1, applied to every bit); control frames have fin
 * set and payload <= 125 (§5.5); a 64-bit length has its top bit clear (§5.2); the
 * length uses the minimal encoding (§5.2); a server requires masked frames when
 * require_mask is set, a client refuses masked frames (§5.1); a continuation frame
 * needs a message in progress and a new data frame needs none (§5.4); payload length
 * over max_frame_size -> 1009.
 */
#ifndef KITE_CODEC_FRAME_H
#define KITE_CODEC_FRAME_H

#include "util/util.h"
#include "kite/codec.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum kite__fev {
    KITE__FEV_NEED_MORE = 0,
    KITE__FEV_HEADER = 1,
    KITE__FEV_DATA = 2,
    KITE__FEV_ERROR = 3,
};

struct kite__frame_hdr {
    uint8_t opcode;       /* enum kite_opcode */
    bool fin;
    uint8_t rsv;          /* KITE_RSV* bits */
    bool masked;
    uint8_t mask[4];
    uint64_t payload_len;
};

/* 48 bytes on x86-64: it is a third of an idle connection's codec, so it is tight. */
struct kite__frame_parser {
    struct kite__frame_hdr hdr; /* the current frame (valid after HEADER) */
    /* Gathering a header, reading a payload and being stuck after an error never
     * overlap in time, so their state shares these bytes. */
    union {
        struct {
            uint64_t remaining; /* payload: bytes still to come */
            uint8_t mask_pos;   /* payload: running offset into the mask key (0-3) */
        };
        uint8_t hbuf[14]; /* header: bytes seen so far (hlen of them) */
        struct {
            uint16_t err_code;  /* error: the sticky close code */
            uint8_t err_reason; /* error: index of its reason (frame.c) */
        };
    };
    uint64_t max_frame_size;
    uint8_t role;        /* enum kite_role */
    uint8_t rsv_allowed;
    bool require_mask;   /* server: refuse unmasked frames */
    uint8_t state;       /* internal */
    uint8_t hlen;        /* bytes in hbuf */
    bool in_message;     /* a fragmented data message is in progress (§5.4) */
    uint8_t msg_opcode;  /* its opcode (TEXT or BINARY) */
    uint8_t small_max;   /* not the parser's: the codec's hot-loop size limit (conn.c) */
};

struct kite__frame_event {
    const uint8_t *data; /* DATA: payload chunk (unmasked, points into the input) */
    size_t len;
    bool frame_end;      /* DATA: this chunk ends the frame */
    uint16_t close_code; /* ERROR: 1002 or 1009 */
    const char *reason;  /* ERROR: short human-readable reason (static) */
};

/* Start a parser for `role` (the side we are: a server parses client frames). Frames
 * whose payload is longer than max_frame_size fail with 1009 (control frames included;
 * 0 allows only empty frames). rsv_allowed: KITE_RSV* bits claimed by extensions.
 * require_mask: server role only, refuse unmasked frames (§5.1). */
void kite__frame_parser_init(struct kite__frame_parser *p, enum kite_role role,
                             uint64_t max_frame_size, uint8_t rsv_allowed, bool require_mask);

/* Parse from in[0..len); see the module comment. `in` is modified (unmasking). */
enum kite__fev kite__frame_parse(struct kite__frame_parser *p, uint8_t *in, size_t len,
                                 size_t *consumed, struct kite__frame_event *ev);

/*
 * The common case in one call: when the parser is between frames and in[0..len) starts
 * with a whole frame (header and payload) that breaks no rule, parse it, unmask its
 * payload in place and return true. The result is what kite__frame_parse's HEADER and
 * DATA events would give: p->hdr describes the frame, ev->data/ev->len is the whole
 * payload with ev->frame_end set, *consumed is header plus payload, and the parser is
 * between frames again. Otherwise return false with nothing consumed and the parser
 * untouched: kite__frame_parse takes it from there (and reports any broken rule).
 */
bool kite__frame_parse_whole(struct kite__frame_parser *p, uint8_t *in, size_t len,
                             size_t *consumed, struct kite__frame_event *ev);

/* Payload bytes of the current frame still to come; 0 between frames. */
static inline uint64_t kite__frame_payload_left(const struct kite__frame_parser *p)
{
    return p->state == 1 ? p->remaining : 0;
}

/* True between frames (no header bytes or payload pending): with no input left, a call
 * to kite__frame_parse could only return NEED_MORE. */
static inline bool kite__frame_idle(const struct kite__frame_parser *p)
{
    return p->state == 0 && p->hlen == 0;
}

/* Bytes a frame header needs for `payload_len` (2, 4 or 10, plus 4 when masked). */
size_t kite__frame_header_size(uint64_t payload_len, bool masked);

/*
 * Write a frame header into out (room for kite__frame_header_size()). `first` is
 * fin|rsv|opcode as in byte 0: (fin ? 0x80 : 0) | rsv | opcode. `mask` is NULL for an
 * unmasked frame. payload_len must be below 2^63 (§5.2). Uses the minimal length
 * encoding. Returns the bytes written.
 */
size_t kite__frame_write_header(uint8_t *out, uint8_t first, uint64_t payload_len,
                                const uint8_t *mask);

/*
 * The masking key rotated to start at key position `offset` and repeated twice, as the
 * 64-bit word whose bytes, in memory order, mask eight consecutive payload bytes
 * (§5.3). Computed in registers: building it byte by byte in memory and loading it
 * back as a word would stall store forwarding, which costs more than a small payload.
 */
static inline uint64_t kite__mask_word32(uint32_t k, size_t offset)
{
    unsigned sh = (unsigned)(offset & 3) * 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    k = (k << sh) | (k >> ((32 - sh) & 31));
#else
    k = (k >> sh) | (k << ((32 - sh) & 31));
#endif
    return (uint64_t)k << 32 | k;
}
/* The same from the key's four bytes. */
static inline uint64_t kite__mask_word(const uint8_t key[4], size_t offset)
{
    uint32_t k;
    memcpy(&k, key, 4);
    return kite__mask_word32(k, offset);
}

/*
 * Unmask a short payload p[0..n) (n <= 125, a 7-bit length) in place with the key
 * whose bytes, in memory order, are those of `key` (§5.3, from key position 0), and
 * tell whether the result is all ASCII (then also valid UTF-8, §8.1). Each width does
 * the head in whole blocks and the tail as one block that ends at n, overlapping the
 * one before it: the tail is loaded before anything is stored, so the bytes both cover
 * get the same value twice, and no byte outside the payload is read or written. A
 * message of 16 to 32 bytes takes two 16-byte steps and no loop. Inline: it is the hot
 * loop's whole work.
 */
static inline bool kite__unmask_short(uint8_t *p, size_t n, uint32_t key)
{
#if defined(__SSE2__)
    if (n >= 16) {
        /* The head block, the blocks between (none up to 32 bytes), the tail block;
         * (n - 16) % 4 == n % 4 picks the tail's key rotation. */
        __m128i *hp = (__m128i *)(void *)p, *tp = (__m128i *)(void *)(p + n - 16);
        __m128i k = _mm_set1_epi32((int)key);
        __m128i kt = _mm_set1_epi32((int)(uint32_t)kite__mask_word32(key, n));
        __m128i head = _mm_xor_si128(_mm_loadu_si128(hp), k);
        __m128i tail = _mm_xor_si128(_mm_loadu_si128(tp), kt);
        __m128i acc = _mm_or_si128(head, tail);
        _mm_storeu_si128(hp, head);
        for (size_t i = 16; i + 16 < n; i += 16) {
            __m128i *q = (__m128i *)(void *)(p + i);
            __m128i v = _mm_xor_si128(_mm_loadu_si128(q), k);
            _mm_storeu_si128(q, v);
            acc = _mm_or_si128(acc, v);
        }
        _mm_storeu_si128(tp, tail);
        return _mm_movemask_epi8(acc) == 0;
    }
#endif
    uint64_t acc = 0;
    if (n >= 8) {
        size_t t = n - 8;
        uint64_t kw = kite__mask_word32(key, 0), tail;
        memcpy(&tail, p + t, 8);
        tail ^= kite__mask_word32(key, t);
        acc = tail;
        for (size_t i = 0; i < t; i += 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            w ^= kw;
            memcpy(p + i, &w, 8);
            acc |= w;
        }
        memcpy(p + t, &tail, 8);
    } else if (n >= 4) {
        uint32_t head, tail;
        memcpy(&head, p, 4);
        memcpy(&tail, p + n - 4, 4);
        head ^= key;
        tail ^= (uint32_t)kite__mask_word32(key, n - 4);
        memcpy(p, &head, 4);
        memcpy(p + n - 4, &tail, 4);
        acc = head | tail;
    } else {
        uint8_t kb[4];
        memcpy(kb, &key, 4);
        for (size_t i = 0; i < n; i++) {
            p[i] ^= kb[i];
            acc |= p[i];
        }
    }
    return (acc & 0x8080808080808080ull) == 0;
}

/* Copy `len` bytes from src to dst masking them with key from position `offset` (any
 * value; only offset % 4 matters, as for kite_mask). dst == src works (in place);
 * otherwise the two must not overlap. */
void kite__mask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4],
                     size_t offset);

/* Vector width cap for masking and UTF-8 validation (see codec/utf8.h). */
extern int kite__simd_cap;

/* RFC 6455 §5.5.1, §7.4: check a close frame payload. Returns 0 if valid and fills
 * *code (1005 when the payload is empty), *reason and *reason_len (a view into payload).
 * Otherwise returns the close code to fail with: 1002 (1-byte payload, invalid code,
 * payload over 125 bytes) or 1007 (reason not UTF-8); the outputs then read as for an
 * empty payload (1005, no reason). */
uint16_t kite__close_parse(const uint8_t *payload, size_t len, uint16_t *code,
                           const uint8_t **reason, size_t *reason_len);

#endif

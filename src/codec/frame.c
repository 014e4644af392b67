/*
 * codec/frame — the RFC 6455 §5.2 frame parser and header writer. See frame.h for the
 * event protocol and the list of rules.
 *
 * Speed comes from the common case: when the header of the next frame lies whole in
 * the input (nearly always), it is checked in place with one combined test and no
 * copying; hbuf is used only when a header is split across reads. The first two bytes
 * carry every rule except the extended-length ones, so they are checked as soon as
 * both have arrived, even when the rest of the header has not.
 */
#include "codec/frame.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum parser_state {
    ST_HEADER = 0,  /* expecting (more of) a frame header */
    ST_PAYLOAD = 1, /* inside a frame's payload (possibly an empty one) */
    ST_ERROR = 2,   /* stuck after an error */
};
_Static_assert(ST_HEADER == 0 && ST_PAYLOAD == 1, "the inline tests in frame.h use them");

/* Opcodes RFC 6455 §5.2 defines: 0-2 and 8-A, as a bit set. */
#define KNOWN_OPCODES 0x0707u

/* Error paths stay out of line so the hot path saves few registers. */
#if defined(__GNUC__)
#define COLD __attribute__((cold, noinline))
#define NOINLINE __attribute__((noinline))
#define ALWAYS_INLINE __attribute__((always_inline))
#else
#define COLD
#define NOINLINE
#define ALWAYS_INLINE
#endif

void kite__frame_parser_init(struct kite__frame_parser *p, enum kite_role role,
                             uint64_t max_frame_size, uint8_t rsv_allowed, bool require_mask)
{
    memset(p, 0, sizeof(*p));
    p->role = (uint8_t)role;
    p->max_frame_size = max_frame_size;
    p->rsv_allowed = rsv_allowed & KITE_RSV_MASK;
    p->require_mask = require_mask;
    p->state = ST_HEADER;
}

static inline bool is_control(unsigned opcode)
{
    return (opcode & 0x8) != 0;
}

/* Header length (2, 4 or 10, plus 4 for the key) announced by the second byte. */
static inline size_t header_len(uint8_t b1)
{
    unsigned len7 = b1 & 0x7Fu;
    size_t n = 2 + (len7 < 126 ? 0 : len7 == 126 ? 2 : 8);
    return n + ((b1 & 0x80u) ? 4 : 0);
}

/* What each opcode is (§5.2) and when it may come (§5.4): bit 0 "allowed between
 * messages", bit 1 "allowed inside a fragmented message", then its kind. */
enum {
    OK_IDLE = 1,
    OK_IN_MESSAGE = 2,
    IS_CONTROL = 4,
    MAY_HAVE_RSV = 8, /* first frame of a data message: extensions may set RSV bits */
};
static const uint8_t opcode_class[16] = {
    [KITE_OP_CONTINUATION] = OK_IN_MESSAGE,
    [KITE_OP_TEXT] = OK_IDLE | MAY_HAVE_RSV,
    [KITE_OP_BINARY] = OK_IDLE | MAY_HAVE_RSV,
    [KITE_OP_CLOSE] = OK_IDLE | OK_IN_MESSAGE | IS_CONTROL,
    [KITE_OP_PING] = OK_IDLE | OK_IN_MESSAGE | IS_CONTROL,
    [KITE_OP_PONG] = OK_IDLE | OK_IN_MESSAGE | IS_CONTROL,
};

/*
 * Every rule that the first two bytes decide, folded into one answer with integer
 * arithmetic rather than short-circuit logic, so the fast path takes a single,
 * well-predicted branch. byte_rule_reason() spells out which rule broke.
 */
static inline bool header_bad(const struct kite__frame_parser *p, uint8_t b0, uint8_t b1)
{
    unsigned cls = opcode_class[b0 & 0x0Fu];
    unsigned rsv = b0 & KITE_RSV_MASK, masked = b1 >> 7, len7 = b1 & 0x7Fu;
    unsigned bad = ((cls >> p->in_message) & 1u) ^ 1u; /* unknown, or out of sequence */
    unsigned rsv_ok = (cls & MAY_HAVE_RSV) ? p->rsv_allowed : 0u;
    bad |= rsv & ~rsv_ok;
    unsigned control_bad = ((b0 >> 7) ^ 1u) | (len7 > 125);
    bad |= ((cls >> 2) & 1u) & control_bad;
    /* §5.1: a client refuses masked frames, a server (if strict) unmasked ones. */
    unsigned client = p->role == KITE_ROLE_CLIENT;
    bad |= (masked ^ client ^ 1u) & (client | p->require_mask);
    return bad != 0;
}

/* The first rule the two bytes break, in a fixed order; NULL if none. */
static const char *byte_rule_reason(const struct kite__frame_parser *p, uint8_t b0,
                                    uint8_t b1)
{
    unsigned op = b0 & 0x0Fu, rsv = b0 & KITE_RSV_MASK;
    bool masked = (b1 & 0x80u) != 0;
    if (((KNOWN_OPCODES >> op) & 1u) == 0)
        return "reserved opcode"; /* §5.2 */
    if (rsv & ~(unsigned)p->rsv_allowed)
        return "RSV bit not negotiated"; /* §5.2 */
    if (rsv != 0 && op == KITE_OP_CONTINUATION)
        return "RSV bit on a continuation frame"; /* RFC 7692 §6.1, for every bit */
    if (rsv != 0 && is_control(op))
        return "RSV bit on a control frame";
    if (is_control(op) && !(b0 & 0x80u))
        return "fragmented control frame"; /* §5.5 */
    if (is_control(op) && (b1 & 0x7Fu) > 125)
        return "control frame payload over 125 bytes"; /* §5.5 */
    if (p->role == KITE_ROLE_CLIENT && masked)
        return "masked frame from a server"; /* §5.1 */
    if (p->role != KITE_ROLE_CLIENT && p->require_mask && !masked)
        return "unmasked frame from a client"; /* §5.1 */
    if (op == KITE_OP_CONTINUATION && !p->in_message)
        return "continuation frame without a message to continue"; /* §5.4 */
    if (op != KITE_OP_CONTINUATION && !is_control(op) && p->in_message)
        return "new data frame inside a fragmented message"; /* §5.4 */
    return NULL;
}

/* Every reason an error can give, so the sticky error keeps a byte, not a pointer. */
static const char *const reasons[] = {
    "invalid frame header",
    "reserved opcode",
    "RSV bit not negotiated",
    "RSV bit on a continuation frame",
    "RSV bit on a control frame",
    "fragmented control frame",
    "control frame payload over 125 bytes",
    "masked frame from a server",
    "unmasked frame from a client",
    "continuation frame without a message to continue",
    "new data frame inside a fragmented message",
    "non-minimal 16-bit length",
    "64-bit length with the top bit set",
    "non-minimal 64-bit length",
    "frame over the size limit",
};

COLD static uint8_t reason_index(const char *reason)
{
    for (size_t i = 0; i < KITE_ARRAY_LEN(reasons); i++)
        if (strcmp(reasons[i], reason) == 0)
            return (uint8_t)i;
    return 0;
}

COLD static enum kite__fev report_error(const struct kite__frame_parser *p, size_t *consumed,
                                        struct kite__frame_event *ev)
{
    *consumed = 0;
    ev->close_code = p->err_code;
    ev->reason = reasons[p->err_reason];
    return KITE__FEV_ERROR;
}

COLD static enum kite__fev fail(struct kite__frame_parser *p, uint16_t code,
                                const char *reason, size_t *consumed,
                                struct kite__frame_event *ev)
{
    p->state = ST_ERROR;
    p->err_code = code;
    p->err_reason = reason_index(reason);
    return report_error(p, consumed, ev);
}

COLD static enum kite__fev fail_bytes(struct kite__frame_parser *p, uint8_t b0, uint8_t b1,
                                      size_t *consumed, struct kite__frame_event *ev)
{
    const char *reason = byte_rule_reason(p, b0, b1);
    return fail(p, KITE_CLOSE_PROTOCOL_ERROR, reason ? reason : "invalid frame header",
                consumed, ev);
}

static inline uint64_t read_be16(const uint8_t *q)
{
    return (uint64_t)q[0] << 8 | q[1];
}

static inline uint64_t read_be64(const uint8_t *q)
{
    return read_be16(q) << 48 | read_be16(q + 2) << 32 | read_be16(q + 4) << 16 |
           read_be16(q + 6);
}

/*
 * The 16- or 64-bit length that follows a 7-bit length of 126 or 127 (§5.2), at ext.
 * Returns NULL and sets *len, or the rule it breaks. Out of line: frames over 125 bytes
 * are the less common case, and cost enough that one call is noise.
 */
NOINLINE static const char *extended_length(uint8_t len7, const uint8_t *ext, uint64_t *len)
{
    if (len7 == 126) {
        *len = read_be16(ext);
        if (*len < 126) /* §5.2: "the minimal number of bytes MUST be used" */
            return "non-minimal 16-bit length";
        return NULL;
    }
    *len = read_be64(ext);
    if (*len >> 63) /* §5.2: "the most significant bit MUST be 0" */
        return "64-bit length with the top bit set";
    if (*len <= 0xFFFF)
        return "non-minimal 64-bit length";
    return NULL;
}

/*
 * The rest of a header whose first two bytes b0, b1 passed header_bad(); `ext` holds
 * the header bytes after them. Checks the length rules, then starts the payload.
 * *consumed must already be set by the caller. The bytes come by value: every store
 * into *p could alias the input as far as the compiler knows, forcing reloads.
 */
ALWAYS_INLINE static inline enum kite__fev finish_header(struct kite__frame_parser *p,
                                                         uint8_t b0, uint8_t b1,
                                                         const uint8_t *ext, size_t *consumed,
                                                         struct kite__frame_event *ev)
{
    uint8_t len7 = b1 & 0x7Fu;
    uint64_t len = len7;
    const uint8_t *key = ext;
    if (KITE_UNLIKELY(len7 >= 126)) {
        const char *why = extended_length(len7, ext, &len);
        if (why)
            return fail(p, KITE_CLOSE_PROTOCOL_ERROR, why, consumed, ev);
        key += len7 == 126 ? 2 : 8;
    }
    if (KITE_UNLIKELY(len > p->max_frame_size))
        return fail(p, KITE_CLOSE_TOO_BIG, "frame over the size limit", consumed, ev);

    uint8_t op = b0 & 0x0Fu, msg_op = p->msg_opcode;
    bool fin = (b0 & 0x80u) != 0, control = is_control(op), in_msg = p->in_message;
    bool masked = (b1 & 0x80u) != 0;
    uint32_t mask = 0;
    if (masked)
        memcpy(&mask, key, 4);
    struct kite__frame_hdr *hdr = &p->hdr;
    hdr->opcode = op;
    hdr->fin = fin;
    hdr->rsv = b0 & KITE_RSV_MASK;
    hdr->masked = masked;
    memcpy(hdr->mask, &mask, 4);
    hdr->payload_len = len;
    p->remaining = len;
    p->mask_pos = 0;
    p->state = ST_PAYLOAD;
    /* §5.4: track the fragmented message; control frames may sit inside one. Written
     * as selects, not branches: the opcode mix is up to the peer. */
    p->msg_opcode = (control || op == KITE_OP_CONTINUATION) ? msg_op : op;
    p->in_message = control ? in_msg : !fin;
    return KITE__FEV_HEADER;
}

/* A header that is split across calls: gather it in hbuf. */
NOINLINE static enum kite__fev parse_header_slow(struct kite__frame_parser *p, const uint8_t *in,
                                        size_t len, size_t *consumed,
                                        struct kite__frame_event *ev)
{
    size_t used = 0;
    if (p->hlen < 2) {
        size_t take = KITE_MIN((size_t)(2 - p->hlen), len);
        memcpy(p->hbuf + p->hlen, in, take);
        p->hlen += (uint8_t)take;
        used = take;
        if (p->hlen < 2) {
            *consumed = used;
            return KITE__FEV_NEED_MORE;
        }
        if (header_bad(p, p->hbuf[0], p->hbuf[1]))
            return fail_bytes(p, p->hbuf[0], p->hbuf[1], consumed, ev);
    }
    size_t need = header_len(p->hbuf[1]);
    size_t take = KITE_MIN(need - p->hlen, len - used);
    memcpy(p->hbuf + p->hlen, in + used, take);
    p->hlen += (uint8_t)take;
    *consumed = used + take;
    if (p->hlen < need)
        return KITE__FEV_NEED_MORE;
    p->hlen = 0;
    /* hbuf shares its bytes with the payload state that finish_header() sets. */
    uint8_t h[sizeof(p->hbuf)];
    memcpy(h, p->hbuf, sizeof(h));
    return finish_header(p, h[0], h[1], h + 2, consumed, ev);
}

/* Report a payload chunk of n bytes (already unmasked) and advance. */
ALWAYS_INLINE static inline enum kite__fev deliver(struct kite__frame_parser *p, uint8_t *in,
                                                   size_t n, size_t *consumed,
                                                   struct kite__frame_event *ev)
{
    p->remaining -= n;
    ev->data = in;
    ev->len = n;
    ev->frame_end = p->remaining == 0;
    if (ev->frame_end)
        p->state = ST_HEADER;
    *consumed = n;
    return KITE__FEV_DATA;
}

/* A large masked chunk: the vector loops of kite_mask(). Out of line, so the parser's
 * hot path makes no calls that would need saved registers. */
NOINLINE static enum kite__fev deliver_large(struct kite__frame_parser *p, uint8_t *in,
                                             size_t n, size_t *consumed,
                                             struct kite__frame_event *ev)
{
    kite_mask(in, n, p->hdr.mask, p->mask_pos);
    p->mask_pos = (uint8_t)((p->mask_pos + n) & 3u);
    return deliver(p, in, n, consumed, ev);
}

/* Unmask a small chunk (at most 64 bytes) in place, a word at a time, from key position
 * `pos` (§5.3): calling out to the vector loops would cost as much. */
ALWAYS_INLINE static inline void unmask_small(uint8_t *in, size_t n, const uint8_t key[4],
                                              size_t pos)
{
    uint64_t kw = kite__mask_word(key, pos);
    size_t i = 0;
#if defined(__SSE2__)
    /* Sixteen bytes a step where SSE2 is always there (x86-64): a 32-byte message
     * takes two. */
    __m128i kv = _mm_set1_epi64x((long long)kw);
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        _mm_storeu_si128((__m128i *)(void *)(in + i), _mm_xor_si128(v, kv));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, in + i, 8);
        w ^= kw;
        memcpy(in + i, &w, 8);
    }
    for (; i < n; i++)
        in[i] ^= key[(pos + i) & 3];
}

/* The next chunk of the current payload, unmasked in place (§5.3). */
ALWAYS_INLINE static inline enum kite__fev parse_payload(struct kite__frame_parser *p,
                                                         uint8_t *in, size_t len,
                                                         size_t *consumed,
                                                         struct kite__frame_event *ev)
{
    size_t n = p->remaining < len ? (size_t)p->remaining : len;
    if (n == 0 && p->remaining != 0) {
        *consumed = 0;
        return KITE__FEV_NEED_MORE;
    }
    if (p->hdr.masked && n != 0) {
        if (n > 64)
            return deliver_large(p, in, n, consumed, ev);
        unmask_small(in, n, p->hdr.mask, p->mask_pos);
        p->mask_pos = (uint8_t)((p->mask_pos + n) & 3u);
    }
    return deliver(p, in, n, consumed, ev);
}

enum kite__fev kite__frame_parse(struct kite__frame_parser *p, uint8_t *in, size_t len,
                                 size_t *consumed, struct kite__frame_event *ev)
{
    ev->data = NULL;
    ev->len = 0;
    ev->frame_end = false;
    ev->close_code = 0;
    ev->reason = NULL;
    if (p->state == ST_PAYLOAD)
        return parse_payload(p, in, len, consumed, ev);
    if (KITE_UNLIKELY(p->state != ST_HEADER))
        return report_error(p, consumed, ev);
    if (KITE_LIKELY(p->hlen == 0 && len >= 2)) {
        uint8_t b0 = in[0], b1 = in[1];
        size_t need = header_len(b1);
        if (KITE_LIKELY(len >= need)) {
            if (KITE_UNLIKELY(header_bad(p, b0, b1)))
                return fail_bytes(p, b0, b1, consumed, ev);
            *consumed = need;
            return finish_header(p, b0, b1, in + 2, consumed, ev);
        }
    }
    return parse_header_slow(p, in, len, consumed, ev);
}

/*
 * The usual frame passes a shorter test than header_bad(): FIN set, no RSV bit, text or
 * binary (0x81, 0x82), no fragmented message in progress, and masked exactly when the
 * peer is a client (§5.1). Anything else takes the full test.
 */
static inline bool header_usual(const struct kite__frame_parser *p, uint8_t b0, uint8_t b1)
{
    unsigned from_client = p->role != KITE_ROLE_CLIENT;
    return (uint8_t)(b0 - 0x81u) < 2u && !p->in_message && (unsigned)(b1 >> 7) == from_client;
}

bool kite__frame_parse_whole(struct kite__frame_parser *p, uint8_t *in, size_t len,
                             size_t *consumed, struct kite__frame_event *ev)
{
    if (p->state != ST_HEADER || p->hlen != 0 || len < 2)
        return false;
    uint8_t b0 = in[0], b1 = in[1];
    if (!header_usual(p, b0, b1) && header_bad(p, b0, b1))
        return false;
    size_t need = header_len(b1);
    uint64_t plen = b1 & 0x7Fu;
    const uint8_t *key = in + 2;
    if (KITE_UNLIKELY(plen >= 126)) {
        if (len < need || extended_length((uint8_t)plen, in + 2, &plen) != NULL)
            return false;
        key += plen <= 0xFFFF ? 2 : 8;
    }
    if (len < need || plen > len - need || plen > p->max_frame_size)
        return false;
    size_t n = (size_t)plen;
    uint8_t op = b0 & 0x0Fu;
    bool fin = (b0 & 0x80u) != 0, masked = (b1 & 0x80u) != 0, control = is_control(op);
    struct kite__frame_hdr *hdr = &p->hdr;
    hdr->opcode = op;
    hdr->fin = fin;
    hdr->rsv = b0 & KITE_RSV_MASK;
    hdr->masked = masked;
    hdr->payload_len = plen;
    /* §5.4, as in finish_header(). */
    p->msg_opcode = (control || op == KITE_OP_CONTINUATION) ? p->msg_opcode : op;
    p->in_message = control ? p->in_message : !fin;
    uint8_t *payload = in + need;
    if (masked) {
        memcpy(hdr->mask, key, 4);
        if (n > 64)
            kite_mask(payload, n, hdr->mask, 0);
        else
            unmask_small(payload, n, hdr->mask, 0);
    } else {
        memset(hdr->mask, 0, 4);
    }
    ev->data = payload;
    ev->len = n;
    ev->frame_end = true;
    *consumed = need + n;
    return true;
}

size_t kite__frame_header_size(uint64_t payload_len, bool masked)
{
    size_t n = payload_len < 126 ? 2 : payload_len <= 0xFFFF ? 4 : 10;
    return n + (masked ? 4 : 0);
}

size_t kite__frame_write_header(uint8_t *out, uint8_t first, uint64_t payload_len,
                                const uint8_t *mask)
{
    uint8_t mask_bit = mask ? 0x80 : 0;
    size_t n;
    out[0] = first;
    if (payload_len < 126) {
        out[1] = mask_bit | (uint8_t)payload_len;
        n = 2;
    } else if (payload_len <= 0xFFFF) {
        out[1] = mask_bit | 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        n = 4;
    } else {
        out[1] = mask_bit | 127;
        for (size_t i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

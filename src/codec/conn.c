/*
 * codec/conn — the per-connection protocol state machine (RFC 6455 §5-§7), sans-I/O.
 *
 * Input runs through the frame parser (frame.h), which unmasks payload in place and
 * reports HEADER / DATA / ERROR events. This file turns those events into messages
 * (default mode) or frames (raw mode), answers pings, runs the close handshake and the
 * ping/close timers, and queues everything it sends in one output buffer.
 *
 * Memory: struct kite_codec is kept small (an idle connection is mostly this struct).
 * Everything a quiet connection does not need lives in a lazily allocated `aux` block:
 * the buffer for payload that spans reads and the close record. The hot path (a whole
 * unfragmented frame in the caller's buffer) hands the caller a view of the input and
 * allocates nothing; the commonest case of it, a run of small masked messages as a
 * server receives them, does not even go through the frame parser (hot_messages()).
 *
 * Extensions (ext.c, pmd.c): with a negotiated chain, default-mode data messages pass
 * through it chunk by chunk on the way in (inflated output is checked for UTF-8 and
 * max_message_size as it is produced) and whole on the way out. Without one, F_EXT is
 * clear and the only cost is that test. Raw mode never runs the chain.
 *
 * Re-entrancy: callbacks may call the send/close functions. Those only touch the output
 * buffer and the close record, never the buffer a callback's `data` may point into.
 * on_close never runs nested inside another callback: an end decided during a callback
 * (a raw close reply, kite_codec_transport_closed) fires right after that callback
 * returns.
 */
#include <limits.h>

#include "codec/conn_internal.h"
#include "codec/utf8.h"

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* Buffers larger than this are released when they drain, so a burst of big messages
 * does not pin memory on a connection that goes quiet afterwards. */
#define KEEP_CAP 1024u

/* Ping payload: 8 bytes (the send time), so a pong can be told apart in a capture. */
#define PING_LEN 8u

/* The most a frame's first chunk reserves for the rest of its payload. A peer that
 * announces a large frame and sends little makes us commit no more than this ahead. */
#define RESERVE_AHEAD ((size_t)4 << 20)

/* kite_codec_recv_space offers its buffer only for at least this much payload: below,
 * reading into the caller's buffer (which may catch the next frames in the same read)
 * costs a copy too small to matter. */
#define DIRECT_MIN ((size_t)16 << 10)

/* The codec's allocator: NULL (libc) unless it was given one, which then sits in aux. */
static inline const struct kite_allocator *alloc_of(const struct kite_codec *c)
{
    return c->aux ? c->aux->alloc : NULL;
}

enum {
    F_RAW = 1u << 0,         /* KITE_MODE_RAW */
    F_CLIENT = KITE__CODEC_CLIENT, /* KITE_ROLE_CLIENT: mask what we send */
    F_CLOSE_SENT = KITE__CODEC_CLOSE_SENT, /* a close frame is queued: no more data */
    F_CLOSE_RCVD = 1u << 3,  /* the peer's close frame arrived */
    F_STOP = 1u << 4,        /* look at no more input */
    F_DONE = KITE__CODEC_DONE, /* the outcome is decided (on_close fired or about to) */
    F_FIRED = KITE__CODEC_FIRED, /* on_close has fired */
    F_PENDING = 1u << 7,     /* on_close must fire when the current callback returns */
    F_IN_CB = 1u << 8,       /* a user callback is running */
    F_AWAIT_PONG = 1u << 9,  /* a ping is out; `timer` is its deadline */
    F_ARM = 1u << 10,        /* close sent without a clock: arm the timer at next time input */
    F_CI = 1u << 11,         /* aux->ci holds the first close frame (ours or the peer's) */
    F_CI_NOMEM = 1u << 12,   /* no memory for the close record: report nomem_ci */
    F_EXT = KITE__CODEC_EXT, /* aux->ext is set: tested with the other flags on hot paths */
    F_EMBED = 1u << 14,      /* built in the caller's memory (kite_codec_new_in) */
    F_ABORT = 1u << 15,      /* kite__codec_abort(): the close is reported as ours */
};

/* kite_ws_options_init()'s values: codecs created with them point here. */
static const struct kite_ws_options default_options = {
    .ping_period_ms = 0,
    .timeout_ms = 15000,
    .max_frame_size = 16u << 20,
    .max_message_size = 16u << 20,
    .masking = true,
    .part_threshold = KITE_PART_THRESHOLD_DEFAULT,
};

static const struct kite_codec_callbacks no_callbacks;

/* Reported when the close record itself could not be allocated. */
static const struct kite_close_info nomem_ci = {
    .initiator = KITE_CLOSED_BY_LOCAL,
    .code = KITE_CLOSE_INTERNAL_ERROR,
    .clean = false,
    .error = KITE_ERR_NOMEM,
    .reason_len = 13,
    .reason = "out of memory",
};

static uint64_t add_ms(uint64_t now, uint64_t ms)
{
    return now > UINT64_MAX - ms ? UINT64_MAX : now + ms;
}

void kite_ws_options_init(struct kite_ws_options *o)
{
    memset(o, 0, sizeof(*o));
    o->ping_period_ms = default_options.ping_period_ms;
    o->timeout_ms = default_options.timeout_ms;
    o->max_frame_size = default_options.max_frame_size;
    o->max_message_size = default_options.max_message_size;
    o->masking = default_options.masking;
    o->part_threshold = default_options.part_threshold;
}

/* The largest payload the hot loop may take under `o`: a 7-bit length (§5.2) that
 * neither size limit refuses. Kept in c->p.small_max, where the loop tests it once. */
static uint8_t small_max(const struct kite_ws_options *o)
{
    return (uint8_t)KITE_MIN(KITE_MIN(o->max_frame_size, o->max_message_size), 125u);
}

static bool same_options(const struct kite_ws_options *a, const struct kite_ws_options *b)
{
    return a->ping_period_ms == b->ping_period_ms && a->timeout_ms == b->timeout_ms &&
           a->max_frame_size == b->max_frame_size &&
           a->max_message_size == b->max_message_size && a->masking == b->masking &&
           a->part_threshold == b->part_threshold;
}

void kite_codec_config_init(struct kite_codec_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->role = KITE_ROLE_SERVER;
    cfg->mode = KITE_MODE_DEFAULT;
    kite_ws_options_init(&cfg->options);
    cfg->rsv_allowed = 0;
    cfg->allocator = NULL;
}

/* ------------------------------------------------------------------------------------
 * Output
 */

/*
 * Append one frame to the output. A client masks every frame with a fresh key
 * (RFC 6455 §5.3); a server never masks (§5.1). `data` must not point into c->out.
 */
/* The common case, a small server frame (§5.2: 7-bit length, no mask): one
 * reservation, the two header bytes, the payload. len < 126. */
static inline int put_small(struct kite_codec *c, uint8_t first, const void *data, size_t len)
{
    uint8_t *dst = kite__buf_reserve(&c->out, alloc_of(c), len + 2);
    if (!dst)
        return KITE_ERR_NOMEM;
    dst[0] = first;
    dst[1] = (uint8_t)len;
    kite__copy_small(dst + 2, data, len);
    c->out.len += len + 2;
    return KITE_OK;
}

static int put_frame(struct kite_codec *c, uint8_t first, const void *data, size_t len)
{
    if (KITE_LIKELY(!(c->flags & F_CLIENT) && len < 126))
        return put_small(c, first, data, len);
    bool masked = (c->flags & F_CLIENT) != 0;
    uint8_t key[4];
    if (masked && kite__random_mask(key) != KITE_OK)
        return KITE_ERR_CRYPTO;
    size_t hlen = kite__frame_header_size(len, masked);
    if (len > SIZE_MAX - hlen)
        return KITE_ERR_NOMEM;
    uint8_t *dst = kite__buf_reserve(&c->out, alloc_of(c), hlen + len);
    if (!dst)
        return KITE_ERR_NOMEM;
    hlen = kite__frame_write_header(dst, first, len, masked ? key : NULL);
    if (masked)
        kite__mask_copy(dst + hlen, data, len, key, 0);
    else if (len)
        memcpy(dst + hlen, data, len);
    c->out.len += hlen + len;
    return KITE_OK;
}

/* RFC 6455 §5.5.1: a close payload is a 2-byte big-endian code and a UTF-8 reason;
 * code 0 means a close frame with no payload at all. */
static int put_close(struct kite_codec *c, unsigned code, const void *reason, size_t rlen)
{
    uint8_t payload[2 + KITE_CLOSE_REASON_MAX];
    size_t n = 0;
    if (code) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        rlen = KITE_MIN(rlen, (size_t)KITE_CLOSE_REASON_MAX);
        if (rlen)
            memcpy(payload + 2, reason, rlen);
        n = 2 + rlen;
    }
    return put_frame(c, 0x80 | KITE_OP_CLOSE, payload, n);
}

/* ------------------------------------------------------------------------------------
 * The close record and on_close
 */

/* A codec without aux uses libc: one given an allocator made its aux at creation. */
static int ensure_aux(struct kite_codec *c)
{
    if (c->aux)
        return KITE_OK;
    c->aux = kite__calloc(NULL, sizeof(*c->aux));
    return c->aux ? KITE_OK : KITE_ERR_NOMEM;
}

/* Remember the first close frame of the session (§7.1.5, §7.1.6): who sent it, its code
 * (1005 for none) and reason. Later close frames do not change it. aux must exist. */
static void record_close(struct kite_codec *c, enum kite_close_initiator who, uint16_t code,
                         const void *reason, size_t rlen)
{
    if (c->flags & F_CI)
        return;
    struct kite_close_info *ci = &c->aux->ci;
    rlen = KITE_MIN(rlen, (size_t)KITE_CLOSE_REASON_MAX);
    ci->initiator = who;
    ci->code = code;
    ci->clean = false;
    ci->error = 0;
    ci->reason_len = (uint8_t)rlen;
    if (rlen)
        memcpy(ci->reason, reason, rlen);
    ci->reason[rlen] = '\0';
    c->flags |= F_CI;
}

/* Record a close payload we do not judge (raw mode, kite_codec_send_frame): the code if
 * there is one, the reason only when it is UTF-8 (the record promises UTF-8). */
static void record_close_payload(struct kite_codec *c, enum kite_close_initiator who,
                                 const uint8_t *p, size_t len)
{
    uint16_t code = KITE_CLOSE_NO_STATUS;
    size_t rlen = 0;
    if (len >= 2) {
        code = (uint16_t)(p[0] << 8 | p[1]);
        rlen = len - 2;
        if (rlen > KITE_CLOSE_REASON_MAX || !kite_utf8_valid(p + 2, rlen))
            rlen = 0;
    }
    record_close(c, who, code, len >= 2 ? p + 2 : NULL, rlen);
}

static const struct kite_close_info *close_record(const struct kite_codec *c)
{
    return (c->flags & F_CI_NOMEM) ? &nomem_ci : &c->aux->ci;
}

static void fire(struct kite_codec *c)
{
    c->flags = (uint16_t)((c->flags & ~F_PENDING) | F_FIRED);
    if (!c->cb->on_close)
        return;
    c->flags |= F_IN_CB;
    c->cb->on_close(c, close_record(c), c->ud);
    c->flags &= (uint16_t)~F_IN_CB;
}

/*
 * Decide how the session ended and fire on_close, now or (inside a callback) as soon
 * as the callback returns. Without a recorded close frame the session ended without
 * one: 1006 (§7.1.5). Only the first call counts.
 */
static void finish(struct kite_codec *c, bool clean, int error)
{
    if (c->flags & F_DONE)
        return;
    c->flags |= F_DONE | F_STOP;
    if (!(c->flags & F_CI_NOMEM) && ensure_aux(c) != KITE_OK)
        c->flags |= F_CI_NOMEM;
    if (!(c->flags & F_CI_NOMEM)) {
        record_close(c, KITE_CLOSED_BY_NONE, KITE_CLOSE_ABNORMAL, NULL, 0);
        c->aux->ci.clean = clean;
        c->aux->ci.error = error;
        if (c->flags & F_ABORT)
            c->aux->ci.initiator = KITE_CLOSED_BY_LOCAL; /* nomem_ci says LOCAL too */
    }
    if (c->flags & F_IN_CB)
        c->flags |= F_PENDING;
    else
        fire(c);
}

/* After a user callback: fire an on_close it provoked. */
static void after_cb(struct kite_codec *c)
{
    c->flags &= (uint16_t)~F_IN_CB;
    if (c->flags & F_PENDING)
        fire(c);
}

/*
 * "Fail the WebSocket Connection" (§7.1.7): send a close frame with `code` unless one
 * was sent already, look at no more input, and end the session unclean with `error`.
 * If even the close record cannot be allocated, fail with 1011 instead, so that what
 * goes on the wire matches what on_close reports; if the close frame cannot be queued,
 * the error becomes that of the allocation.
 */
static void fail(struct kite_codec *c, uint16_t code, const char *reason, int error)
{
    if (c->flags & F_DONE)
        return;
    if (ensure_aux(c) != KITE_OK) {
        c->flags |= F_CI_NOMEM;
        code = nomem_ci.code;
        reason = nomem_ci.reason;
    }
    if (!(c->flags & F_CLOSE_SENT)) {
        size_t rlen = strlen(reason);
        int rc = put_close(c, code, reason, rlen);
        if (rc != KITE_OK)
            error = rc; /* the record keeps the code we meant to send */
        c->flags |= F_CLOSE_SENT;
        if (c->aux)
            record_close(c, KITE_CLOSED_BY_LOCAL, code, reason, rlen);
    }
    finish(c, false, error);
}

/* Fail after a local resource error (KITE_ERR_NOMEM, KITE_ERR_CRYPTO) with 1011, and
 * hand the error back for kite_codec_recv() to return. */
static int fail_internal(struct kite_codec *c, int err)
{
    fail(c, KITE_CLOSE_INTERNAL_ERROR, err == KITE_ERR_NOMEM ? "out of memory" : "internal error",
         err);
    return err;
}

/* ------------------------------------------------------------------------------------
 * Input: buffering, messages, control frames
 */

/* Drop the buffered payload; release a big buffer so a quiet connection stays small. */
static void msg_reset(struct kite_codec *c)
{
    if (!c->aux)
        return;
    struct kite_buf *b = &c->aux->msg;
    if (b->cap > KEEP_CAP)
        kite__buf_free(b, alloc_of(c));
    b->off = 0;
    b->len = 0;
}

/* The buffered bytes (never NULL, even before the buffer has memory). */
static const uint8_t *buffered(const struct kite_codec *c)
{
    const struct kite_buf *b = &c->aux->msg;
    return b->data ? kite__buf_head(b) : (const uint8_t *)"";
}

static int buffer(struct kite_codec *c, const uint8_t *data, size_t len)
{
    if (ensure_aux(c) != KITE_OK)
        return KITE_ERR_NOMEM;
    return kite__buf_append(&c->aux->msg, alloc_of(c), data, len);
}

/*
 * Buffer a chunk of the current frame's payload. The room for the rest of the frame is
 * reserved with the first chunk (up to RESERVE_AHEAD at a time), so a large message is
 * not copied again by reallocations as it grows. A chunk that the caller read straight
 * into that room (kite_codec_recv_space) is already in place: it is only counted.
 */
static int buffer_payload(struct kite_codec *c, const uint8_t *data, size_t len)
{
    if (ensure_aux(c) != KITE_OK)
        return KITE_ERR_NOMEM;
    struct kite_buf *b = &c->aux->msg;
    if (b->data && data == kite__buf_head(b) + b->len && len <= b->cap - b->off - b->len) {
        b->len += len;
        return KITE_OK;
    }
    uint64_t rest = c->p.remaining;
    if (rest > 0 && !kite__buf_reserve(b, alloc_of(c), len + (size_t)KITE_MIN(rest, RESERVE_AHEAD)))
        return KITE_ERR_NOMEM;
    return kite__buf_append(b, alloc_of(c), data, len);
}

static int deliver_message(struct kite_codec *c, const uint8_t *data, size_t len)
{
    enum kite_opcode type = (enum kite_opcode)c->msg_op;
    int rc = KITE_OK;
    c->msg_op = 0;
    if (c->cb->on_message) {
        c->flags |= F_IN_CB;
        rc = c->cb->on_message(c, type, data, len, c->ud);
    }
    msg_reset(c);
    after_cb(c);
    return rc == KITE_PAUSE ? KITE_PAUSE : KITE_OK;
}

/* Does a message whose first frame declares `len` payload bytes go out in parts? Only
 * without extensions (their output is gathered) and to a codec that takes parts. */
static inline bool in_parts(const struct kite_codec *c, uint64_t len)
{
    uint64_t min = c->opt->part_threshold ? c->opt->part_threshold : KITE_PART_THRESHOLD_DEFAULT;
    return c->cb->on_message_part && len >= KITE_MAX(min, 126u) && !(c->flags & F_EXT);
}

/* Mark the message in progress as one delivered in parts. Without memory for the mark
 * it is gathered whole as usual. */
static void start_parts(struct kite_codec *c)
{
    if (ensure_aux(c) != KITE_OK)
        return;
    c->aux->parts = true;
    c->aux->part_off = 0;
}

/* Hand over one part of a message (struct kite_msg_part); the message ends with `last`. */
static int deliver_part(struct kite_codec *c, const uint8_t *data, size_t len, bool last)
{
    struct kite_msg_part part = {(enum kite_opcode)c->msg_op, data, len, c->aux->part_off, last};
    c->aux->part_off += len;
    if (last) {
        c->aux->parts = false;
        c->aux->part_off = 0;
        c->msg_op = 0;
    }
    if (len == 0 && !last)
        return KITE_OK;
    c->flags |= F_IN_CB;
    int rc = c->cb->on_message_part(c, &part, c->ud);
    after_cb(c);
    return rc == KITE_PAUSE ? KITE_PAUSE : KITE_OK;
}

/* The first part of a message that was gathered until it reached the threshold: the
 * gathered bytes and this chunk, in one part. */
static int deliver_gathered(struct kite_codec *c, const uint8_t *data, size_t len, bool last)
{
    if (buffer(c, data, len) != KITE_OK)
        return fail_internal(c, KITE_ERR_NOMEM);
    int rc = deliver_part(c, buffered(c), c->aux->msg.len, last);
    msg_reset(c);
    return rc;
}

/* A data frame's header (default mode): start a message, enforce the message limit
 * before any payload is buffered. With extensions the limit applies to what they
 * produce (an inflated message), so it is checked as that arrives instead. */
static void data_header(struct kite_codec *c)
{
    const struct kite__frame_hdr *h = &c->p.hdr;
    uint64_t have = 0;
    if (h->opcode == KITE_OP_CONTINUATION) {
        /* part_off is 0 unless parts were handed over; msg holds what is gathered. */
        have = c->aux ? c->aux->part_off + c->aux->msg.len : 0;
    } else {
        c->msg_op = h->opcode;
        c->utf8 = KITE__UTF8_ACCEPT;
        if (c->flags & F_EXT)
            kite__ext_in_start(c->aux->ext, h->rsv);
    }
    if (c->flags & F_EXT)
        return;
    if (have > c->opt->max_message_size || h->payload_len > c->opt->max_message_size - have) {
        fail(c, KITE_CLOSE_TOO_BIG, "message too big", KITE_ERR_TOO_BIG);
        return;
    }
    /* The message reaches the threshold with this frame: parts from here on (what was
     * gathered before goes with this frame's first chunk, message_bytes()). */
    if (!(c->aux && c->aux->parts) && in_parts(c, have + h->payload_len))
        start_parts(c);
}

/*
 * Message bytes as the application will see them (default mode). Text is checked as
 * it arrives, so bad UTF-8 fails the connection at the first impossible byte, not at
 * the end of the message (§8.1, §5.6). A whole unfragmented frame (`whole`) goes to
 * the caller as a view of the input; anything else is reassembled (§5.4).
 */
static int message_bytes(struct kite_codec *c, const uint8_t *data, size_t len, bool last,
                         bool whole)
{
    bool text = c->msg_op == KITE_OP_TEXT;
    if (text && kite__utf8_feed(&c->utf8, data, len) != 0) {
        fail(c, KITE_CLOSE_NOT_CONSISTENT, "invalid UTF-8", KITE_ERR_UTF8);
        return KITE_OK;
    }
    if (last && text && c->utf8 != KITE__UTF8_ACCEPT) {
        fail(c, KITE_CLOSE_NOT_CONSISTENT, "truncated UTF-8", KITE_ERR_UTF8);
        return KITE_OK;
    }
    if (c->aux && c->aux->parts)
        return c->aux->msg.len ? deliver_gathered(c, data, len, last)
                               : deliver_part(c, data, len, last);
    if (last && whole)
        return deliver_message(c, data, len);
    if (buffer_payload(c, data, len) != KITE_OK)
        return fail_internal(c, KITE_ERR_NOMEM);
    if (!last)
        return KITE_OK;
    return deliver_message(c, buffered(c), c->aux->msg.len);
}

/* An extension failed on incoming data: fail the connection with the matching code. */
static int ext_fail(struct kite_codec *c, int rc)
{
    switch (rc) {
    case KITE_ERR_PROTOCOL:
        fail(c, KITE_CLOSE_PROTOCOL_ERROR, "invalid extension data", rc);
        return KITE_OK;
    case KITE_ERR_UTF8:
        fail(c, KITE_CLOSE_NOT_CONSISTENT, "invalid UTF-8", rc);
        return KITE_OK;
    case KITE_ERR_TOO_BIG:
        fail(c, KITE_CLOSE_TOO_BIG, "message too big", rc);
        return KITE_OK;
    case KITE_ERR_NOMEM:
        return fail_internal(c, rc);
    default:
        fail(c, KITE_CLOSE_INTERNAL_ERROR, "extension error", rc);
        return KITE_OK;
    }
}

/*
 * Extension output appended to the message buffer: n bytes from `start`. Checked like
 * any message bytes, and handed over at the end of the message.
 */
static int message_appended(struct kite_codec *c, size_t start, size_t n, bool last)
{
    struct kite_buf *b = &c->aux->msg;
    if (b->len > c->opt->max_message_size)
        return ext_fail(c, KITE_ERR_TOO_BIG);
    bool text = c->msg_op == KITE_OP_TEXT;
    if (text && n && kite__utf8_feed(&c->utf8, kite__buf_head(b) + start, n) != 0) {
        fail(c, KITE_CLOSE_NOT_CONSISTENT, "invalid UTF-8", KITE_ERR_UTF8);
        return KITE_OK;
    }
    if (!last)
        return KITE_OK;
    if (text && c->utf8 != KITE__UTF8_ACCEPT) {
        fail(c, KITE_CLOSE_NOT_CONSISTENT, "truncated UTF-8", KITE_ERR_UTF8);
        return KITE_OK;
    }
    return deliver_message(c, buffered(c), b->len);
}

/*
 * Where extension output lands: the message buffer. A session that has not needed the
 * aux block yet gets a buffer of its own for the call, adopted only if output was
 * written, so messages the extensions pass through cost nothing extra.
 */
static int adopt_output(struct kite_codec *c, struct kite_buf *local, size_t n)
{
    if (c->aux)
        return KITE_OK;
    if (ensure_aux(c) != KITE_OK) {
        kite__buf_free(local, alloc_of(c));
        return KITE_ERR_NOMEM;
    }
    c->aux->msg = *local;
    c->aux->msg.len += n;
    return KITE_OK;
}

/* A chunk of a data frame with extensions: through the chain (reverse install order),
 * then on as message bytes. */
static int ext_message_data(struct kite_codec *c, const struct kite__frame_event *ev)
{
    const struct kite__frame_hdr *h = &c->p.hdr;
    bool last = ev->frame_end && h->fin;
    struct kite_buf local = {0};
    struct kite_buf *b = c->aux ? &c->aux->msg : &local;
    uint64_t have = b->len, max = c->opt->max_message_size;
    struct kite_ext_sink sink;
    kite__ext_sink_init(&sink, b, alloc_of(c), 0, have > max ? 0 : max - have);
    enum kite__ext_where where;
    const uint8_t *out;
    size_t n;
    int rc = kite__ext_incoming(c->aux->ext, ev->data, ev->len, last, (enum kite_opcode)c->msg_op,
                                &sink, &where, &out, &n);
    if (rc != KITE_OK || where != KITE__EXT_IN_SINK)
        kite__buf_free(&local, alloc_of(c));
    if (rc != KITE_OK)
        return ext_fail(c, rc);
    if (where == KITE__EXT_PASSED) {
        if (have > max || ev->len > max - have)
            return ext_fail(c, KITE_ERR_TOO_BIG);
        bool whole = h->opcode != KITE_OP_CONTINUATION && ev->len == h->payload_len;
        return message_bytes(c, ev->data, ev->len, last, whole);
    }
    if (where == KITE__EXT_SCRATCH) {
        rc = buffer(c, out, n);
        kite__ext_release(c->aux->ext);
        if (rc != KITE_OK)
            return fail_internal(c, rc);
        return message_appended(c, (size_t)have, n, last);
    }
    if (b == &local) {
        if (adopt_output(c, &local, sink.len) != KITE_OK)
            return fail_internal(c, KITE_ERR_NOMEM);
    } else {
        b->len += sink.len;
    }
    return message_appended(c, (size_t)have, sink.len, last);
}

/* A chunk of a data frame (default mode). */
static int message_data(struct kite_codec *c, const struct kite__frame_event *ev)
{
    if (c->flags & F_EXT)
        return ext_message_data(c, ev);
    const struct kite__frame_hdr *h = &c->p.hdr;
    bool whole = h->opcode != KITE_OP_CONTINUATION && ev->len == h->payload_len;
    return message_bytes(c, ev->data, ev->len, ev->frame_end && h->fin, whole);
}

/* §5.5.2/§5.5.3: answer a ping with a pong carrying the same payload; any pong shows the
 * peer is alive (an unsolicited one included) and restarts the ping period. */
static int ping_pong(struct kite_codec *c, uint8_t op, const uint8_t *data, size_t len,
                     uint64_t now)
{
    if (op == KITE_OP_PING && !(c->flags & F_CLOSE_SENT)) {
        int rc = put_frame(c, 0x80 | KITE_OP_PONG, data, len);
        if (rc != KITE_OK)
            return fail_internal(c, rc);
    }
    if (op == KITE_OP_PONG && (c->flags & F_AWAIT_PONG)) {
        c->flags &= (uint16_t)~F_AWAIT_PONG;
        if (!(c->flags & F_CLOSE_SENT))
            c->timer = add_ms(now, c->opt->ping_period_ms);
    }
    if (c->cb->on_control) {
        c->flags |= F_IN_CB;
        c->cb->on_control(c, (enum kite_opcode)op, data, len, c->ud);
        after_cb(c);
    }
    return KITE_OK;
}

/*
 * The peer's close frame (default mode). §5.5.1: validate it, answer with a close that
 * echoes its code (1000 when it had none), and the session is over; if we had sent the
 * first close, this is the reply that completes the handshake (§7.1.2).
 */
static int peer_close(struct kite_codec *c, const uint8_t *data, size_t len)
{
    uint16_t code;
    const uint8_t *reason;
    size_t rlen;
    uint16_t bad = kite__close_parse(data, len, &code, &reason, &rlen);
    if (bad == KITE_CLOSE_NOT_CONSISTENT) {
        fail(c, bad, "invalid UTF-8 in close reason", KITE_ERR_UTF8);
        return KITE_OK;
    }
    if (bad) {
        fail(c, KITE_CLOSE_PROTOCOL_ERROR, "invalid close frame", KITE_ERR_PROTOCOL);
        return KITE_OK;
    }
    c->flags |= F_CLOSE_RCVD | F_STOP;
    if (c->flags & F_CLOSE_SENT) {
        finish(c, true, 0);
        return KITE_OK;
    }
    if (ensure_aux(c) != KITE_OK)
        return fail_internal(c, KITE_ERR_NOMEM);
    record_close(c, KITE_CLOSED_BY_PEER, code, reason, rlen);
    int rc = put_close(c, code == KITE_CLOSE_NO_STATUS ? 0 : code, NULL, 0);
    c->flags |= F_CLOSE_SENT;
    finish(c, rc == KITE_OK, rc);
    return rc;
}

/* Raw mode: hand over the frame. A close frame is recorded first, so that a reply sent
 * from inside on_frame completes the sequence (on_close then fires after on_frame). */
static int raw_frame(struct kite_codec *c, const uint8_t *data, size_t len)
{
    const struct kite__frame_hdr *h = &c->p.hdr;
    if (h->opcode == KITE_OP_CLOSE) {
        if (ensure_aux(c) != KITE_OK)
            return fail_internal(c, KITE_ERR_NOMEM);
        record_close_payload(c, KITE_CLOSED_BY_PEER, data, len);
        c->flags |= F_CLOSE_RCVD | F_STOP;
    }
    int rc = KITE_OK;
    if (c->cb->on_frame) {
        struct kite_frame f = {(enum kite_opcode)h->opcode, h->fin, h->rsv, data, len};
        c->flags |= F_IN_CB;
        rc = c->cb->on_frame(c, &f, c->ud);
        c->flags &= (uint16_t)~F_IN_CB;
    }
    if (h->opcode == KITE_OP_CLOSE && (c->flags & F_CLOSE_SENT))
        finish(c, true, 0);
    after_cb(c);
    return rc == KITE_PAUSE ? KITE_PAUSE : KITE_OK;
}

/* A whole frame that is not a default-mode data frame. */
static int frame_done(struct kite_codec *c, const uint8_t *data, size_t len, uint64_t now)
{
    uint8_t op = c->p.hdr.opcode;
    if (c->flags & F_RAW)
        return raw_frame(c, data, len);
    if (op == KITE_OP_CLOSE)
        return peer_close(c, data, len);
    return ping_pong(c, op, data, len, now);
}

/*
 * A chunk of a frame that is handled whole: raw-mode frames and control frames. A frame
 * that lies whole in the input is handled in place; otherwise its chunks are gathered
 * in aux->msg (after any message bytes) until it ends.
 */
static int whole_frame_data(struct kite_codec *c, const struct kite__frame_event *ev,
                            uint64_t now)
{
    if (ev->frame_end && ev->len == c->p.hdr.payload_len)
        return frame_done(c, ev->data, ev->len, now);
    if (buffer_payload(c, ev->data, ev->len) != KITE_OK)
        return fail_internal(c, KITE_ERR_NOMEM);
    bool raw = (c->flags & F_RAW) != 0;
    if (!raw)
        c->ctl_len = (uint8_t)(c->ctl_len + ev->len); /* control payload <= 125 */
    if (!ev->frame_end)
        return KITE_OK;
    struct kite_buf *b = &c->aux->msg;
    size_t n = raw ? b->len : c->ctl_len;
    int rc = frame_done(c, buffered(c) + b->len - n, n, now);
    b->len -= n;
    c->ctl_len = 0;
    if (b->len == 0)
        msg_reset(c);
    return rc;
}

static int on_event(struct kite_codec *c, enum kite__fev e, const struct kite__frame_event *ev,
                    uint64_t now)
{
    bool data_frame = c->p.hdr.opcode < 0x8 && !(c->flags & F_RAW);
    switch (e) {
    case KITE__FEV_HEADER:
        if (data_frame)
            data_header(c);
        return KITE_OK;
    case KITE__FEV_DATA:
        return data_frame ? message_data(c, ev) : whole_frame_data(c, ev, now);
    case KITE__FEV_ERROR:
        fail(c, ev->close_code, ev->reason ? ev->reason : "protocol error",
             ev->close_code == KITE_CLOSE_TOO_BIG ? KITE_ERR_TOO_BIG : KITE_ERR_PROTOCOL);
        return KITE_OK;
    default:
        return KITE_OK;
    }
}

/*
 * A whole unfragmented text or binary message that lies in the input (default mode, no
 * extensions): the common case, handed over as a view of the input without going
 * through the event machinery. The same checks as data_header() and message_bytes():
 * the message limit, then UTF-8 for text (§8.1).
 */
static int whole_message(struct kite_codec *c, uint8_t opcode, const uint8_t *data, size_t len)
{
    c->msg_op = opcode;
    if (opcode == KITE_OP_TEXT &&
        !(len <= KITE__UTF8_SHORT_MAX && kite__utf8_short_ascii(data, len))) {
        c->utf8 = KITE__UTF8_ACCEPT;
        if (kite__utf8_feed(&c->utf8, data, len) != 0) {
            fail(c, KITE_CLOSE_NOT_CONSISTENT, "invalid UTF-8", KITE_ERR_UTF8);
            return KITE_OK;
        }
        if (c->utf8 != KITE__UTF8_ACCEPT) {
            fail(c, KITE_CLOSE_NOT_CONSISTENT, "truncated UTF-8", KITE_ERR_UTF8);
            return KITE_OK;
        }
    }
    return deliver_message(c, data, len);
}

/*
 * A frame that kite__frame_parse_whole() found whole in the input: the HEADER and DATA
 * events in one. *used is the frame's size; when the header alone fails the connection
 * (a message over the limit), it becomes the header's, as with separate events.
 */
static int whole_frame(struct kite_codec *c, const struct kite__frame_event *ev, size_t *used,
                       uint64_t now)
{
    const struct kite__frame_hdr *h = &c->p.hdr;
    if (h->opcode >= 0x8 || (c->flags & F_RAW))
        return frame_done(c, ev->data, ev->len, now);
    if (KITE_LIKELY(h->fin && h->opcode != KITE_OP_CONTINUATION && !(c->flags & F_EXT) &&
                    h->payload_len <= c->opt->max_message_size) &&
        !in_parts(c, h->payload_len))
        return whole_message(c, h->opcode, ev->data, ev->len);
    data_header(c);
    if (c->flags & F_STOP) {
        *used -= ev->len;
        return KITE_OK;
    }
    return message_data(c, ev);
}

/*
 * May the hot loop below run? Default mode, server role, no extensions, a callback for
 * messages, and the parser between messages: no header bytes or payload pending and no
 * fragmented message in progress (§5.4).
 */
static inline bool hot_ok(const struct kite_codec *c)
{
    return !(c->flags & (F_RAW | F_CLIENT | F_EXT)) && kite__frame_idle(&c->p) &&
           !c->p.in_message && c->cb->on_message;
}

/*
 * The hot loop: the usual traffic of a server, message after message each in one small
 * frame. While the input starts with a whole masked, unfragmented text or binary frame
 * with no RSV bit and a 7-bit length (0x81 or 0x82, then 0x80 | len, §5.2) within the
 * size limits, unmask it in place (§5.3), check it (all ASCII, or the full UTF-8 test
 * for text, §8.1) and hand it to on_message right here: what whole_frame() and
 * whole_message() decide for such a frame, without the parser's events. Any other
 * frame, a partial one included, is left to the general path. The size limit is read
 * for every frame: a callback may change it (kite_codec_set_options).
 *
 * Returns the bytes consumed and sets *stop when delivery must stop (KITE_PAUSE, or
 * the session ended). Afterwards p->hdr describes the last frame, as after the events.
 */
static size_t hot_messages(struct kite_codec *c, uint8_t *in, size_t len, bool *stop)
{
    int (*on_message)(struct kite_codec *, enum kite_opcode, const uint8_t *, size_t, void *) =
        c->cb->on_message;
    uint8_t *f = in, *end = in + len;
    const uint8_t *last = NULL;
    /* F_IN_CB stays set from one callback to the next: between them only this loop runs,
     * which fails nothing (whole_message() below may: it runs with the flag clear). */
    c->flags |= F_IN_CB;
    while (end - f >= 6) {
        unsigned b0 = f[0], n = f[1] ^ 0x80u; /* over 125 unless masked and 7-bit */
        if ((uint8_t)(b0 - 0x81u) > 1u || n > c->p.small_max || (ptrdiff_t)n > end - f - 6)
            break;
        uint32_t key;
        memcpy(&key, f + 2, 4);
        uint8_t *data = f + 6;
        bool ascii = kite__unmask_short(data, n, key);
        enum kite_opcode op = (enum kite_opcode)(b0 & 0x0Fu);
        last = f;
        f = data + n;
        int rc;
        if (KITE_UNLIKELY(!ascii) && KITE_UNLIKELY(op == KITE_OP_TEXT)) {
            c->flags &= (uint16_t)~F_IN_CB;
            rc = whole_message(c, (uint8_t)op, data, n); /* the full UTF-8 test (§8.1) */
            c->flags |= F_IN_CB;
        } else {
            /* deliver_message(), with msg_op left at 0 (no one reads it meanwhile) and
             * without msg_reset(): between messages with the parser idle, aux->msg is
             * already empty and small (whatever gathered a message, a frame or a control
             * frame in it was reset when that ended). */
            rc = on_message(c, op, data, n, c->ud);
        }
        if (KITE_UNLIKELY(rc == KITE_PAUSE || (c->flags & F_STOP))) {
            *stop = true;
            break;
        }
    }
    after_cb(c); /* an on_close that a callback provoked fires now */
    if (last) {
        struct kite__frame_hdr *h = &c->p.hdr;
        h->opcode = last[0] & 0x0Fu;
        h->fin = true;
        h->rsv = 0;
        h->masked = true;
        memcpy(h->mask, last + 2, 4);
        h->payload_len = last[1] & 0x7Fu;
        c->p.msg_opcode = h->opcode;
    }
    return (size_t)(f - in);
}

static ssize_t recv_input(struct kite_codec *c, uint8_t *in, size_t len, uint64_t now_ms)
{
    if (c->flags & (F_IN_CB | F_STOP | F_ARM)) {
        if (c->flags & F_IN_CB)
            return KITE_ERR_STATE;
        if (c->flags & F_STOP)
            return 0;
        c->flags &= (uint16_t)~F_ARM;
        c->timer = add_ms(now_ms, c->opt->timeout_ms);
    }
    uint8_t none = 0;
    if (!in)
        in = &none, len = 0;
    if (len > (size_t)SSIZE_MAX)
        len = (size_t)SSIZE_MAX;
    size_t off = 0;
    /* With the input used up, go on only to finish a frame whose last event is still
     * owed (the zero-length DATA of an empty frame whose header ended the input). */
    while (off < len || !kite__frame_idle(&c->p)) {
        if (hot_ok(c)) {
            bool stop = false;
            off += hot_messages(c, in + off, len - off, &stop);
            if (stop || off == len)
                break; /* off == len: the parser is between frames */
        }
        size_t n = 0;
        struct kite__frame_event ev;
        int rc;
        if (kite__frame_parse_whole(&c->p, in + off, len - off, &n, &ev)) {
            rc = whole_frame(c, &ev, &n, now_ms);
            off += n;
        } else {
            enum kite__fev e = kite__frame_parse(&c->p, in + off, len - off, &n, &ev);
            off += n;
            if (e == KITE__FEV_NEED_MORE)
                break;
            rc = on_event(c, e, &ev, now_ms);
        }
        if (rc < 0)
            return rc;
        if (rc == KITE_PAUSE || (c->flags & F_STOP))
            break;
    }
    return (ssize_t)off;
}

ssize_t kite_codec_recv(struct kite_codec *c, uint8_t *in, size_t len, uint64_t now_ms)
{
    ssize_t r = recv_input(c, in, len, now_ms);
    /* The input is processed and no callback runs (a nested call is refused): the
     * session is quiet until the application's next call. */
    if ((c->flags & (F_EXT | F_IN_CB)) == F_EXT)
        kite__ext_idle(c->aux->ext);
    return r;
}

/* ------------------------------------------------------------------------------------
 * Sending
 */

static int can_send(const struct kite_codec *c)
{
    return (c->flags & (F_DONE | F_CLOSE_SENT)) ? KITE_ERR_CLOSED : KITE_OK;
}

/*
 * Frame the payload an extension wrote into the output buffer after `pre` spare bytes:
 * slide it down behind its header (whose size is known only now), mask it in place.
 */
static void frame_in_place(struct kite_codec *c, uint8_t first, const struct kite_ext_sink *s,
                           const uint8_t *key)
{
    uint8_t *base = kite__buf_head(&c->out) + c->out.len;
    size_t hlen = kite__frame_header_size(s->len, key != NULL);
    memmove(base + hlen, base + s->pre, s->len);
    kite__frame_write_header(base, first, s->len, key);
    if (key)
        kite__mask_copy(base + hlen, base + hlen, s->len, key, 0);
    c->out.len += hlen + s->len;
}

/* A message through the extensions (install order), then framed. The masking key is
 * drawn first: once a compressor has taken the message, the frame must go out. */
static int ext_send(struct kite_codec *c, enum kite_opcode type, const void *data, size_t len)
{
    uint8_t key[4];
    bool masked = (c->flags & F_CLIENT) != 0;
    if (masked && kite__random_mask(key) != KITE_OK)
        return KITE_ERR_CRYPTO;
    struct kite_ext_msg m = {type, 0, data, len};
    struct kite_ext_sink sink;
    kite__ext_sink_init(&sink, &c->out, alloc_of(c), masked ? 14 : 10, UINT64_MAX);
    enum kite__ext_where where;
    int rc = kite__ext_outgoing(c->aux->ext, &m, &sink, &where);
    if (rc != KITE_OK)
        return rc;
    uint8_t first = (uint8_t)(0x80 | (m.rsv & KITE_RSV_MASK) | type);
    if (where == KITE__EXT_IN_SINK && sink.len) {
        frame_in_place(c, first, &sink, masked ? key : NULL);
        return KITE_OK;
    }
    if (where == KITE__EXT_IN_SINK)
        m.data = NULL, m.len = 0;
    rc = put_frame(c, first, m.data, m.len);
    if (where == KITE__EXT_SCRATCH)
        kite__ext_release(c->aux->ext);
    return rc;
}

/* kite_codec_send() past its fast path. Out of line, so that the fast path saves no
 * registers. */
NOINLINE static int send_general(struct kite_codec *c, enum kite_opcode type, const void *data,
                                 size_t len)
{
    if ((type != KITE_OP_TEXT && type != KITE_OP_BINARY) || (!data && len))
        return KITE_ERR_INVALID;
    int rc = can_send(c);
    if (rc != KITE_OK)
        return rc;
    if ((c->flags & (F_EXT | F_RAW)) == F_EXT) {
        rc = ext_send(c, type, data, len);
        if (!(c->flags & F_IN_CB))
            kite__ext_idle(c->aux->ext); /* a send on its own: nothing follows it */
        return rc;
    }
    return put_frame(c, (uint8_t)(0x80 | type), data, len);
}

int kite_codec_send(struct kite_codec *c, enum kite_opcode type, const void *data, size_t len)
{
    /* A small message from a server that may send and has no extensions: the usual
     * echo or chat reply, without the general checks. */
    if (KITE_LIKELY((type == KITE_OP_TEXT || type == KITE_OP_BINARY) && data &&
                    kite__codec_put_small(c, (uint8_t)(0x80 | type), data, len)))
        return KITE_OK;
    return send_general(c, type, data, len);
}

/* Queue n1 bytes from p1 and then n2 from p2 in one reservation. */
static int queue2(struct kite_codec *c, const void *p1, size_t n1, const void *p2, size_t n2)
{
    if (n1 + n2 == 0)
        return KITE_OK;
    uint8_t *dst = kite__buf_reserve(&c->out, alloc_of(c), n1 + n2);
    if (!dst)
        return KITE_ERR_NOMEM;
    if (n1)
        memcpy(dst, p1, n1);
    if (n2)
        memcpy(dst + n1, p2, n2);
    c->out.len += n1 + n2;
    return KITE_OK;
}

/* kite_codec_send_direct() and its fragment form, once the frame is known to go out
 * as given: `first` is the header's first byte (FIN and opcode, RSV clear). */
static int send_direct(struct kite_codec *c, uint8_t first, const void *data, size_t len,
                       kite_codec_write_cb *write, void *arg)
{
    int rc = can_send(c);
    if (rc != KITE_OK)
        return rc;
    uint8_t head[10];
    size_t hlen = kite__frame_write_header(head, first, len, NULL);
    ssize_t w = write(arg, head, hlen, (const uint8_t *)data, len);
    size_t took = w > 0 ? KITE_MIN((size_t)w, hlen + len) : 0;
    if (took < hlen)
        rc = queue2(c, head + took, hlen - took, data, len);
    else
        rc = queue2(c, NULL, 0, (const uint8_t *)data + (took - hlen), len - (took - hlen));
    if (rc == KITE_OK || took == 0)
        return rc;
    /* Part of the frame is on the wire and the rest cannot be kept: the stream can
     * carry nothing more, not even a close frame. End the session. */
    c->flags |= F_CLOSE_SENT;
    finish(c, false, KITE_ERR_NOMEM);
    return rc;
}

/* Only a frame that goes out as given and would be first in line: anything queued must
 * go first, a client masks (a copy anyway), extensions may rewrite it. */
static bool direct_ok(const struct kite_codec *c)
{
    return !c->out.len && !(c->flags & F_CLIENT) && (c->flags & (F_EXT | F_RAW)) != F_EXT;
}

int kite_codec_send_direct(struct kite_codec *c, enum kite_opcode type, const void *data,
                           size_t len, kite_codec_write_cb *write, void *arg)
{
    if (!write)
        return KITE_ERR_INVALID;
    if (!direct_ok(c))
        return kite_codec_send(c, type, data, len);
    if ((type != KITE_OP_TEXT && type != KITE_OP_BINARY) || (!data && len))
        return KITE_ERR_INVALID;
    return send_direct(c, (uint8_t)(0x80 | type), data, len, write, arg);
}

int kite__codec_send_direct_frame(struct kite_codec *c, enum kite_opcode op, bool fin,
                                  const void *data, size_t len, kite_codec_write_cb *write,
                                  void *arg)
{
    if (op > KITE_OP_BINARY || !write || (!data && len))
        return KITE_ERR_INVALID;
    if (!direct_ok(c))
        return kite_codec_send_frame(c, op, fin, 0, data, len);
    return send_direct(c, (uint8_t)((fin ? 0x80 : 0) | op), data, len, write, arg);
}

size_t kite_codec_recv_space(struct kite_codec *c, uint8_t **buf)
{
    *buf = NULL;
    uint64_t left = kite__frame_payload_left(&c->p);
    /* Payload that this codec gathers itself: any frame in raw mode, a data frame
     * without extensions in default mode, unless its message goes out in parts (control
     * frames are too short to get here). */
    bool gathered = (c->flags & F_RAW) ||
                    (c->p.hdr.opcode < 0x8 && !(c->flags & F_EXT) && !(c->aux && c->aux->parts));
    if (left < DIRECT_MIN || !gathered || (c->flags & (F_STOP | F_IN_CB)) ||
        ensure_aux(c) != KITE_OK)
        return 0;
    size_t want = (size_t)KITE_MIN(left, RESERVE_AHEAD);
    uint8_t *dst = kite__buf_reserve(&c->aux->msg, alloc_of(c), want);
    if (!dst)
        return 0;
    *buf = dst;
    return want;
}

/* A close frame has been queued (§7.1.2): start the wait for the peer's. In raw mode the
 * peer's close may already be in, which completes the sequence. */
static void close_queued(struct kite_codec *c)
{
    c->flags |= F_CLOSE_SENT;
    c->flags &= (uint16_t)~F_AWAIT_PONG;
    if (c->flags & F_CLOSE_RCVD)
        finish(c, true, 0);
}

static bool known_opcode(unsigned op)
{
    return op <= KITE_OP_BINARY || (op >= KITE_OP_CLOSE && op <= KITE_OP_PONG);
}

int kite_codec_send_frame(struct kite_codec *c, enum kite_opcode op, bool fin, uint8_t rsv,
                          const void *data, size_t len)
{
    bool control = (op & 0x8) != 0;
    if (!known_opcode(op) || (rsv & ~KITE_RSV_MASK) || (!data && len) ||
        (control && (!fin || len > 125)))
        return KITE_ERR_INVALID;
    int rc = can_send(c);
    if (rc != KITE_OK)
        return rc;
    uint8_t first = (uint8_t)((fin ? 0x80 : 0) | rsv | op);
    if (op != KITE_OP_CLOSE)
        return put_frame(c, first, data, len);
    if (ensure_aux(c) != KITE_OK)
        return KITE_ERR_NOMEM;
    rc = put_frame(c, first, data, len);
    if (rc != KITE_OK)
        return rc;
    record_close_payload(c, KITE_CLOSED_BY_LOCAL, data, len);
    /* No clock here: the close timer starts at the next recv() or tick(). */
    c->flags |= F_ARM;
    c->timer = 0;
    close_queued(c);
    return KITE_OK;
}

int kite_codec_ping(struct kite_codec *c, const void *data, size_t len)
{
    return kite_codec_send_frame(c, KITE_OP_PING, true, 0, data, len);
}

/* Cut a reason to at most KITE_CLOSE_REASON_MAX bytes without splitting a character. */
static size_t reason_cut(const char *reason)
{
    size_t n = strlen(reason);
    if (n <= KITE_CLOSE_REASON_MAX)
        return n;
    n = KITE_CLOSE_REASON_MAX;
    while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
        n--;
    return n;
}

int kite_codec_close(struct kite_codec *c, unsigned code, const char *reason, uint64_t now_ms)
{
    int rc = can_send(c);
    if (rc != KITE_OK)
        return rc;
    if (code && !kite_close_code_is_valid(code))
        return KITE_ERR_INVALID;
    size_t rlen = code && reason ? reason_cut(reason) : 0;
    if (rlen && !kite_utf8_valid((const uint8_t *)reason, rlen))
        return KITE_ERR_INVALID;
    if (ensure_aux(c) != KITE_OK)
        return KITE_ERR_NOMEM;
    rc = put_close(c, code, reason, rlen);
    if (rc != KITE_OK)
        return rc;
    record_close(c, KITE_CLOSED_BY_LOCAL, code ? (uint16_t)code : KITE_CLOSE_NO_STATUS, reason,
                 rlen);
    c->flags &= (uint16_t)~F_ARM;
    c->timer = add_ms(now_ms, c->opt->timeout_ms);
    close_queued(c);
    return KITE_OK;
}

size_t kite_codec_pending(const struct kite_codec *c, const uint8_t **out)
{
    *out = c->out.len ? kite__buf_head(&c->out) : NULL;
    return c->out.len;
}

void kite_codec_consume(struct kite_codec *c, size_t n)
{
    kite__buf_consume(&c->out, n);
    if (c->out.len == 0 && c->out.cap > KEEP_CAP)
        kite__buf_free(&c->out, alloc_of(c));
}

/* ------------------------------------------------------------------------------------
 * Time
 */

/* Default mode with a ping period: ping, or give up on a ping that got no pong. */
static void ping_timer(struct kite_codec *c, uint64_t now)
{
    if (c->flags & F_AWAIT_PONG) {
        fail(c, KITE_CLOSE_INTERNAL_ERROR, "ping timeout", KITE_ERR_TIMEOUT);
        return;
    }
    uint8_t payload[PING_LEN];
    for (unsigned i = 0; i < PING_LEN; i++)
        payload[i] = (uint8_t)(now >> (8 * (PING_LEN - 1 - i)));
    if (put_frame(c, 0x80 | KITE_OP_PING, payload, sizeof(payload)) != KITE_OK) {
        /* Out of memory: try again next period rather than kill a quiet session. */
        c->timer = add_ms(now, c->opt->ping_period_ms);
        return;
    }
    c->flags |= F_AWAIT_PONG;
    c->timer = add_ms(now, c->opt->timeout_ms);
}

void kite_codec_tick(struct kite_codec *c, uint64_t now_ms)
{
    if (c->flags & (F_DONE | F_IN_CB))
        return;
    if (c->flags & F_ARM) {
        c->flags &= (uint16_t)~F_ARM;
        c->timer = add_ms(now_ms, c->opt->timeout_ms);
        return;
    }
    if (now_ms < c->timer)
        return;
    if (c->flags & F_CLOSE_SENT) {
        /* §7.1.1: the peer did not answer our close in time. */
        finish(c, false, KITE_ERR_TIMEOUT);
        return;
    }
    if (!(c->flags & F_RAW) && c->opt->ping_period_ms)
        ping_timer(c, now_ms);
}

uint64_t kite_codec_next_timer(const struct kite_codec *c)
{
    if (c->flags & F_DONE)
        return UINT64_MAX;
    if (c->flags & F_CLOSE_SENT)
        return c->timer;
    if (!(c->flags & F_RAW) && c->opt->ping_period_ms)
        return c->timer;
    return UINT64_MAX;
}

/* ------------------------------------------------------------------------------------
 * Life cycle and state
 */

static bool options_ok(const struct kite_ws_options *o)
{
    return o->timeout_ms != 0;
}

static bool config_ok(const struct kite_codec_config *cfg)
{
    const struct kite_ws_options *o = cfg->shared_options ? cfg->shared_options : &cfg->options;
    return (cfg->role == KITE_ROLE_SERVER || cfg->role == KITE_ROLE_CLIENT) &&
           (cfg->mode == KITE_MODE_DEFAULT || cfg->mode == KITE_MODE_RAW) && options_ok(o) &&
           !(cfg->rsv_allowed & ~KITE_RSV_MASK);
}

/*
 * Set up a codec in zeroed memory `c`. The options are pointed to when they can be
 * shared (the caller's shared_options, or the defaults); otherwise they are copied into
 * the aux block, which is also where the extension chain lives. Returns false when that
 * block cannot be allocated (nothing is kept then).
 */
static bool codec_init(struct kite_codec *c, const struct kite_codec_config *cfg,
                       const struct kite_codec_callbacks *cb, void *ud, uint64_t now_ms)
{
    if (cfg->allocator) {
        /* The allocator is kept in aux (see struct kite__codec_aux). */
        c->aux = kite__calloc(cfg->allocator, sizeof(*c->aux));
        if (!c->aux)
            return false;
        c->aux->alloc = cfg->allocator;
    }
    if (cfg->shared_options) {
        c->opt = cfg->shared_options;
    } else if (same_options(&cfg->options, &default_options)) {
        c->opt = &default_options;
    } else {
        if (ensure_aux(c) != KITE_OK)
            return false;
        c->aux->own = cfg->options;
        c->opt = &c->aux->own;
    }
    uint8_t rsv = cfg->rsv_allowed;
    if (cfg->extensions) {
        /* The chain lives in aux: few connections have one, and those also carry the
         * extensions' own (much larger) state. */
        if (ensure_aux(c) != KITE_OK)
            return false;
        /* Negotiated extensions own their RSV bits (RFC 6455 §5.2). */
        rsv |= kite__ext_chain_rsv(cfg->extensions);
        kite__ext_chain_adopt(cfg->extensions);
        c->aux->ext = cfg->extensions;
        c->flags |= F_EXT;
    }
    c->cb = cb ? cb : &no_callbacks;
    c->ud = ud;
    if (cfg->role == KITE_ROLE_CLIENT)
        c->flags |= F_CLIENT;
    if (cfg->mode == KITE_MODE_RAW)
        c->flags |= F_RAW;
    kite__frame_parser_init(&c->p, cfg->role, c->opt->max_frame_size, rsv,
                            cfg->role == KITE_ROLE_SERVER && c->opt->masking);
    c->p.small_max = small_max(c->opt);
    c->timer = add_ms(now_ms, c->opt->ping_period_ms);
    return true;
}

struct kite_codec *kite_codec_new(const struct kite_codec_config *cfg,
                                  const struct kite_codec_callbacks *cb, void *ud,
                                  uint64_t now_ms)
{
    if (!cfg || !config_ok(cfg))
        return NULL;
    struct kite_codec *c = kite__calloc(cfg->allocator, sizeof(*c));
    if (!c)
        return NULL;
    if (!codec_init(c, cfg, cb, ud, now_ms)) {
        kite__free(cfg->allocator, c->aux);
        kite__free(cfg->allocator, c);
        return NULL;
    }
    return c;
}

size_t kite_codec_size(void)
{
    return sizeof(struct kite_codec);
}

struct kite_codec *kite_codec_new_in(void *mem, const struct kite_codec_config *cfg,
                                     const struct kite_codec_callbacks *cb, void *ud,
                                     uint64_t now_ms)
{
    if (!mem || !cfg || !config_ok(cfg))
        return NULL;
    struct kite_codec *c = mem;
    memset(c, 0, sizeof(*c));
    if (!codec_init(c, cfg, cb, ud, now_ms)) {
        kite__free(cfg->allocator, c->aux);
        return NULL;
    }
    c->flags |= F_EMBED;
    return c;
}

void kite_codec_free(struct kite_codec *c)
{
    if (!c)
        return;
    const struct kite_allocator *a = alloc_of(c);
    kite__buf_free(&c->out, a);
    if (c->aux) {
        kite__buf_free(&c->aux->msg, a);
        kite_ext_chain_free(c->aux->ext);
        kite__free(a, c->aux);
    }
    if (!(c->flags & F_EMBED))
        kite__free(a, c);
}

void kite_codec_transport_closed(struct kite_codec *c, int err)
{
    /* With a close frame already sent or received, the record keeps it (and says who
     * started); otherwise finish() records 1006 (§7.1.5: closed without a close frame). */
    finish(c, false, err);
}

void kite__codec_abort(struct kite_codec *c)
{
    if (!(c->flags & F_DONE))
        c->flags |= F_ABORT;
    finish(c, false, 0);
}

bool kite_codec_is_closed(const struct kite_codec *c)
{
    return (c->flags & F_FIRED) != 0;
}

bool kite_codec_close_sent(const struct kite_codec *c)
{
    return (c->flags & F_CLOSE_SENT) != 0;
}

const struct kite_close_info *kite_codec_close_info(const struct kite_codec *c)
{
    return (c->flags & F_FIRED) ? close_record(c) : NULL;
}

int kite_codec_set_options(struct kite_codec *c, const struct kite_ws_options *o,
                           uint64_t now_ms)
{
    if (!o || !options_ok(o))
        return KITE_ERR_INVALID;
    /* Shared options are never written: the codec gets a copy of its own. */
    if (ensure_aux(c) != KITE_OK)
        return KITE_ERR_NOMEM;
    c->aux->own = *o;
    c->opt = &c->aux->own;
    c->p.max_frame_size = o->max_frame_size;
    c->p.small_max = small_max(o);
    if (!(c->flags & F_CLIENT))
        c->p.require_mask = o->masking;
    if (c->flags & F_DONE)
        return KITE_OK;
    if (c->flags & F_CLOSE_SENT) {
        c->flags &= (uint16_t)~F_ARM;
        c->timer = add_ms(now_ms, o->timeout_ms);
    } else if (!o->ping_period_ms) {
        c->flags &= (uint16_t)~F_AWAIT_PONG;
    } else {
        bool waiting = (c->flags & F_AWAIT_PONG) != 0;
        c->timer = add_ms(now_ms, waiting ? o->timeout_ms : o->ping_period_ms);
    }
    return KITE_OK;
}

const struct kite_ws_options *kite_codec_options(const struct kite_codec *c)
{
    return c->opt;
}

void kite_codec_set_user_data(struct kite_codec *c, void *ud)
{
    c->ud = ud;
}

void *kite_codec_extension(const struct kite_codec *c, const struct kite_extension *ext)
{
    return c && c->aux ? kite_ext_chain_get(c->aux->ext, ext) : NULL;
}

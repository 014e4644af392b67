/*
 * codec/conn_internal — the layout of struct kite_codec, shared by conn.c and its unit
 * tests (which measure its size: an idle connection is mostly this struct), and the
 * internal side of the extension machinery (ext.c) that conn.c and the server and
 * client layers use.
 */
#ifndef KITE_CODEC_CONN_INTERNAL_H
#define KITE_CODEC_CONN_INTERNAL_H

#include "codec/frame.h"
#include "kite/codec.h"
#include "kite/extension.h"
#include "util/util.h"

/* State that only a busy or closing connection needs; allocated on first use (at
 * creation when the codec has extensions or options of its own). */
struct kite__codec_aux {
    /* The allocator, when the codec was given one (cfg.allocator): such a codec has its
     * aux from the start, so an idle connection on libc's allocator does not carry the
     * pointer (alloc_of() in conn.c). Borrowed. */
    const struct kite_allocator *alloc;
    struct kite_ext_chain *ext; /* negotiated extensions (owned; F_EXT in conn.c), or NULL */
    /* Payload that spans reads: the message being reassembled (default mode), or the
     * current frame (raw mode). A default-mode control frame that spans reads is
     * appended after the message bytes (ctl_len of them) and cut off once handled. */
    struct kite_buf msg;
    /* A message delivered in parts (on_message_part) is in progress, and how many of
     * its bytes were handed over: such a message is never gathered in `msg`. */
    uint64_t part_off;
    bool parts;
    struct kite_close_info ci;  /* the close record (see F_CI) */
    struct kite_ws_options own; /* the options, when they are this codec's own */
};

/*
 * 128 bytes on x86-64: an idle connection is mostly this (with struct kite_session
 * after it). What only some connections need lives in `aux`, the extension chain
 * included; options shared by many codecs (the defaults, a route's) are pointed to,
 * not copied.
 */
struct kite_codec {
    struct kite__frame_parser p;           /* framing state of the input */
    struct kite_buf out;                   /* queued output, not yet consumed */
    const struct kite_ws_options *opt;     /* current options: shared, or &aux->own */
    const struct kite_codec_callbacks *cb; /* borrowed */
    void *ud;                              /* passed to callbacks */
    struct kite__codec_aux *aux; /* lazily allocated (at once with an allocator); freed with the codec */
    /* The one timer. Its meaning follows the state: close-reply deadline once a close
     * was sent, else the pong deadline while a ping is out (F_AWAIT_PONG), else the time
     * of the next ping. Ktor's pinger works the same way: wait a period, ping, wait for
     * the pong, repeat. */
    uint64_t timer;
    uint32_t utf8;  /* incremental UTF-8 state of the text message in progress */
    uint16_t flags; /* F_* in conn.c */
    uint8_t ctl_len; /* default mode: bytes of a partial control frame in aux->msg */
    uint8_t msg_op; /* default mode: KITE_OP_TEXT/BINARY of the message in progress, or 0 */
};

/* Some of struct kite_codec's flags (F_* in conn.c), for the inline functions below. */
#define KITE__CODEC_CLIENT (1u << 1)
#define KITE__CODEC_CLOSE_SENT (1u << 2)
#define KITE__CODEC_DONE (1u << 5)
#define KITE__CODEC_FIRED (1u << 6)
#define KITE__CODEC_EXT (1u << 13)

/*
 * Inline forms of the public getters for the layers built on the codec (session,
 * client), which ask them several times per message: the same answers without a call.
 */
static inline bool kite__codec_is_closed(const struct kite_codec *c)
{
    return (c->flags & KITE__CODEC_FIRED) != 0; /* = kite_codec_is_closed() */
}
static inline bool kite__codec_close_sent(const struct kite_codec *c)
{
    return (c->flags & KITE__CODEC_CLOSE_SENT) != 0; /* = kite_codec_close_sent() */
}
static inline size_t kite__codec_pending_len(const struct kite_codec *c)
{
    return c->out.len; /* = kite_codec_pending() without the pointer */
}

/* kite_codec_transport_closed(c, 0) for a connection the owner drops on purpose
 * (kite_session_terminate): the close record, whatever frame it holds, says LOCAL. */
void kite__codec_abort(struct kite_codec *c);

/* Copy n <= 125 bytes (dst and src apart) without a call: whole 16-, 8- or 4-byte
 * words, the last one ending at n and overlapping the one before it. */
static inline void kite__copy_small(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (n >= 16) {
        uint8_t head[16], tail[16];
        memcpy(head, src, 16);
        memcpy(tail, src + n - 16, 16);
        memcpy(dst, head, 16);
        for (size_t i = 16; i + 16 < n; i += 16)
            memcpy(dst + i, src + i, 16);
        memcpy(dst + n - 16, tail, 16);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, src, 8);
        memcpy(&b, src + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else {
        for (size_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

/*
 * kite_codec_send() of a small message, inline for the layer that sends most messages
 * (the session): a server frame with a 7-bit length and no mask (§5.1, §5.2), queued
 * with one reservation. `first` is 0x81 or 0x82, data is not NULL. Only when no flag
 * stands in the way (client role, extensions, closing), len < 126 and the output buffer
 * has room already; returns false otherwise, with nothing done: kite_codec_send() then
 * takes it (and grows the buffer). No calls, so the callers' fast paths save no registers.
 */
static inline bool kite__codec_put_small(struct kite_codec *c, uint8_t first, const void *data,
                                         size_t len)
{
    struct kite_buf *b = &c->out;
    if (KITE_UNLIKELY((c->flags & (KITE__CODEC_CLIENT | KITE__CODEC_EXT | KITE__CODEC_DONE |
                                   KITE__CODEC_CLOSE_SENT)) ||
                      len >= 126 || b->cap - b->off - b->len < len + 2))
        return false;
    uint8_t *dst = b->data + b->off + b->len;
    dst[0] = first;
    dst[1] = (uint8_t)len;
    kite__copy_small(dst + 2, data, len);
    b->len += len + 2;
    return true;
}

/* ------------------------------------------------------------------------------------
 * Extensions (ext.c)
 */

/* Output of a transform: bytes appended to a kite_buf after `pre` free bytes (room for
 * a frame header), not counted in the buffer's len until the owner takes them. */
struct kite_ext_sink {
    struct kite_buf *b;
    const struct kite_allocator *a;
    size_t pre;     /* bytes left free before the output */
    size_t len;     /* output committed so far */
    uint64_t limit; /* most output accepted before KITE_ERR_TOO_BIG (UINT64_MAX: none) */
};

void kite__ext_sink_init(struct kite_ext_sink *s, struct kite_buf *b,
                         const struct kite_allocator *a, size_t pre, uint64_t limit);
/* The committed output. Only valid when len > 0 (the buffer has memory). */
static inline uint8_t *kite__ext_sink_data(const struct kite_ext_sink *s)
{
    return s->b->data + s->b->off + s->b->len + s->pre;
}

/* Where a chain put its output. */
enum kite__ext_where {
    KITE__EXT_PASSED = 0, /* every extension passed: the input is the output */
    KITE__EXT_IN_SINK = 1, /* in the sink given by the caller (sink->len bytes) */
    KITE__EXT_SCRATCH = 2, /* in the chain's scratch memory: valid until its next use */
};

/* The RSV bits the chain's extensions claim. */
uint8_t kite__ext_chain_rsv(const struct kite_ext_chain *ch);
/* The codec takes the chain: drop what only the handshake needed (the header text). */
void kite__ext_chain_adopt(struct kite_ext_chain *ch);
/* A new incoming data message starts (its first frame's header): remember its RSV bits
 * for every chunk of it. */
void kite__ext_in_start(struct kite_ext_chain *ch, uint8_t rsv);
/*
 * Run an outgoing message through the chain, in install order. The last extension
 * writes into `final`; earlier ones into scratch. On return *where says where the
 * output is: PASSED (m unchanged), IN_SINK, or SCRATCH (m->data/len point there).
 * m->rsv collects the extensions' RSV bits. Returns KITE_OK or the failing extension's
 * code (nothing to send then).
 */
int kite__ext_outgoing(struct kite_ext_chain *ch, struct kite_ext_msg *m,
                       struct kite_ext_sink *final, enum kite__ext_where *where);
/*
 * Run a chunk of an incoming message through the chain, in reverse install order. The
 * first installed extension writes into `final`. *where: PASSED (the chunk itself),
 * IN_SINK (final->len new bytes), or SCRATCH (at *out, *out_len bytes; valid until the next call).
 * The chunk is the first of its message right after kite__ext_in_start(). Returns KITE_OK
 * or the failing code.
 */
int kite__ext_incoming(struct kite_ext_chain *ch, const uint8_t *data, size_t len, bool last,
                       enum kite_opcode op, struct kite_ext_sink *final,
                       enum kite__ext_where *where, const uint8_t **out, size_t *out_len);

/* Release the chain's scratch memory (once a SCRATCH result has been copied). */
void kite__ext_release(struct kite_ext_chain *ch);
/* The session is quiet for now (struct kite_extension.idle says when): every
 * extension's idle hook, in install order. */
void kite__ext_idle(struct kite_ext_chain *ch);

/*
 * Negotiation over the header lines of a parsed head (see kite_ext_negotiate and
 * kite_ext_accept in <kite/extension.h>, which take one joined value): every
 * Sec-WebSocket-Extensions line of `h`, in order. For the server and client layers.
 */
struct kite_http_header;
int kite__ext_negotiate_headers(const struct kite_ext_list *l, enum kite_mode mode,
                                const struct kite_http_header *h, size_t n,
                                const struct kite_allocator *a, struct kite_ext_chain **out);
int kite__ext_accept_headers(const struct kite_ext_list *l, enum kite_mode mode,
                             const struct kite_http_header *h, size_t n,
                             const struct kite_allocator *a, struct kite_ext_chain **out);
/* The client's offer appended to `out` (nothing when there is nothing to offer).
 * KITE_OK, KITE_ERR_NOMEM, or an offer() error (out unchanged then). */
int kite__ext_offer_buf(const struct kite_ext_list *l, enum kite_mode mode, struct kite_buf *out,
                        const struct kite_allocator *a);

/* kite_codec_send_direct() for one data frame of any kind: a fragment (fin false, or a
 * KITE_OP_CONTINUATION), or a whole message. RSV bits clear. Falls back to
 * kite_codec_send_frame() where the frame cannot go out as given. Same returns. */
int kite__codec_send_direct_frame(struct kite_codec *c, enum kite_opcode op, bool fin,
                                  const void *data, size_t len, kite_codec_write_cb *write,
                                  void *arg);

#endif

/*
 * kite — the sans-I/O protocol core (RFC 6455). Included by <kite/kite.h>.
 *
 * A struct kite_codec is one WebSocket connection's protocol state after the opening
 * handshake. It never touches a socket, a clock or a thread:
 *
 *   - bytes in:   kite_codec_recv(c, buf, len, now_ms) parses, unmasks in place,
 *                 validates, reassembles, and calls the callbacks;
 *   - bytes out:  kite_codec_pending() borrows the bytes to write, kite_codec_consume()
 *                 says how many were written;
 *   - time in:    kite_codec_tick(c, now_ms) runs the ping and close timers;
 *                 kite_codec_next_timer(c) says when it next wants to be ticked.
 *
 * The server, the client, the test kit and the fuzzers all drive it the same way.
 * A codec is not thread-safe: use it from one thread at a time.
 *
 * Two modes, as in Ktor:
 *   KITE_MODE_DEFAULT  reassembles fragments and hands whole messages to on_message;
 *                      answers pings; sends a ping every ping_period_ms and fails the
 *                      connection when no pong comes within timeout_ms; runs the close
 *                      handshake (replies to the peer's close, waits timeout_ms for the
 *                      peer's reply to ours); validates UTF-8 of text messages and close
 *                      reasons; enforces the limits with close codes 1002/1007/1009.
 *   KITE_MODE_RAW      hands every frame (control frames and fragments included) to
 *                      on_frame; answers nothing and sends no close by itself: the caller
 *                      owns pings and the close sequence. Framing rules (§5) and the
 *                      frame-size limit are still enforced with 1002/1009.
 *
 * Default mode in detail:
 *   - Messages: a whole unfragmented frame in the input is handed over as a view of the
 *     input (no copy); anything else is gathered in a per-connection buffer. Text is
 *     checked as it arrives, so invalid UTF-8 fails the connection (1007) at the first
 *     impossible byte, even before the message's last fragment. A frame over
 *     max_frame_size, or a message whose fragments would exceed max_message_size, fails
 *     with 1009 as soon as its header arrives.
 *   - Pings (Ktor's pinger): ping_period_ms after the session starts (or after the last
 *     pong), a ping with an 8-byte payload is sent; then any pong (§5.5.3: unsolicited
 *     ones count too) within timeout_ms restarts the period. Without one, the codec
 *     fails the connection with close 1011 "ping timeout" and on_close reports
 *     (LOCAL, 1011, clean=false, KITE_ERR_TIMEOUT). ping_period_ms 0 sends no pings.
 *   - The peer's close (§5.5.1): validated (1002 for a 1-byte body or a code that may
 *     not be on the wire, 1007 for a reason that is not UTF-8); answered with a close
 *     that echoes its code (without a body when it had none; no reason); then on_close(PEER,
 *     clean=true, code 1005 if it had none). Input after it is not looked at.
 *   - Our close (kite_codec_close, or a close frame sent with kite_codec_send_frame):
 *     data frames and pings still arriving are delivered (pings get no pong: nothing is
 *     sent after a close); the peer's close then ends it: on_close(LOCAL, clean=true).
 *     No close within timeout_ms: on_close(LOCAL, clean=false, KITE_ERR_TIMEOUT).
 *   - Failing the connection (§7.1.7), for a protocol error, bad UTF-8 or a size limit:
 *     a close frame with 1002/1007/1009 and a short reason is queued, input stops, and
 *     on_close reports (LOCAL, that code, clean=false, KITE_ERR_PROTOCOL/_UTF8/_TOO_BIG).
 *     Running out of memory (or randomness, for a client's masks) while handling input
 *     fails it the same way with 1011 and KITE_ERR_NOMEM (KITE_ERR_CRYPTO).
 *
 * Raw mode in detail: ping_period_ms is ignored. Frames that span reads are gathered
 * (bounded by max_frame_size) and handed over whole. Close frames are not judged. The
 * close sequence is tracked: a close sent (kite_codec_send_frame with KITE_OP_CLOSE, or
 * kite_codec_close) and a close received; when both have happened on_close fires
 * (clean=true, initiator = whoever sent first). After the peer's close, input stops:
 * reply with a close (from on_frame or later). After our close, frames are still handed
 * over until the peer's close, and timeout_ms applies as in default mode.
 *
 * Callbacks may call kite_codec_send, kite_codec_send_frame, kite_codec_ping,
 * kite_codec_close, kite_codec_pending/consume, kite_codec_set_options, the getters and
 * kite_codec_transport_closed on the same codec. Data handed to a callback stays valid
 * for the whole callback, whatever it sends. on_close never runs nested inside another
 * callback: an end caused from inside one (a raw close reply, transport_closed) fires
 * on_close right after that callback returns. kite_codec_recv() from a callback returns
 * KITE_ERR_STATE, kite_codec_tick() from a callback does nothing, and kite_codec_free()
 * must not be called from a callback.
 *
 * Extensions (<kite/extension.h>): give the negotiated chain in the config. In default
 * mode each incoming data message then runs through it as its frames arrive: with
 * permessage-deflate an RSV1 message is inflated chunk by chunk, its inflated bytes are
 * checked for UTF-8 as they come and count against max_message_size (1009 beyond it, so
 * a decompression bomb stops there); invalid compressed data fails with 1002. Each
 * kite_codec_send() message runs through it whole (compressed per the extension's
 * options). kite_codec_send_frame() and raw mode bypass extensions: frames go out and
 * come in exactly as given (a raw session that negotiated permessage-deflate sees
 * compressed payloads with RSV1 set).
 *
 * Memory: struct kite_codec is small (128 bytes on x86-64; kite_codec_new_in() puts it
 * inside the caller's own allocation); options equal to the defaults, or given as
 * shared_options, are pointed to rather than copied. The buffer for payload that spans
 * reads and the close record are allocated on first use, and buffers over 1 KiB are
 * released when they drain (large ones to a small per-thread cache that the event loop
 * empties within about two seconds of disuse). Small echo traffic allocates nothing per
 * message. Large messages: kite_codec_recv_space() and kite_codec_send_direct() let the
 * caller read and write them without a copy through the codec's buffers.
 */
#ifndef KITE_CODEC_H
#define KITE_CODEC_H

#include "kite/common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum kite_role {
    KITE_ROLE_SERVER = 0, /* expects masked frames, sends unmasked ones (§5.1) */
    KITE_ROLE_CLIENT = 1, /* expects unmasked frames, masks what it sends (§5.3) */
};

enum kite_mode {
    KITE_MODE_DEFAULT = 0,
    KITE_MODE_RAW = 1,
};

/*
 * Session options: Ktor's pingPeriod, timeout, maxFrameSize, masking, plus a message
 * size limit. Fill with kite_ws_options_init() and change what you need.
 */
struct kite_ws_options {
    uint32_t ping_period_ms;   /* send a ping this often; 0 = never (Ktor: null). Default 0 */
    uint32_t timeout_ms;       /* wait this long for a pong or a close reply. Default 15000 */
    uint64_t max_frame_size;   /* larger incoming frame -> close 1009. Default 16 MiB */
    uint64_t max_message_size; /* larger reassembled message -> close 1009. Default 16 MiB */
    /*
     * Masking (RFC 6455 §5.1, §5.3). A client always masks what it sends, with keys
     * from a CSPRNG, whatever this says. On a server, true (the default) requires
     * every client frame to be masked and fails the connection with 1002 otherwise;
     * false tolerates unmasked client frames (for tests against broken peers).
     */
    bool masking;
    /*
     * Messages in parts. Where the callbacks have on_message_part (default mode, no
     * extension negotiated), a text or binary message of at least this many bytes is
     * handed over in parts as its bytes arrive, instead of whole to on_message, so it is
     * never gathered in memory, however large. kite knows a message reaches the size
     * from a frame header: its first frame's, or the one with which its fragments add up
     * to it (the bytes gathered until then come as the first part). 0 means the default,
     * 64 KiB; values under 126 count as 126. max_message_size still applies, counted
     * over the parts.
     */
    uint64_t part_threshold;
};

/* The part_threshold that 0 stands for. */
#define KITE_PART_THRESHOLD_DEFAULT ((uint64_t)64 << 10)

/*
 * A piece of a message delivered in parts (see kite_ws_options.part_threshold), in
 * order; each byte of the message comes in exactly one part. `data` is unmasked and
 * valid only during the callback. Text is checked as UTF-8 before it is handed over,
 * but a part may end inside a character that the next part completes; the message as
 * a whole is valid once the part with `last` has come. A message can still fail after
 * some of its parts were delivered (bad UTF-8 further on, a protocol error, over
 * max_message_size): the session then closes (1007, 1002, 1009) and no `last` part
 * comes. Parts follow the frames and the reads: a new part starts with every frame of
 * the message and every read; only the last one may be empty (a final empty frame).
 */
struct kite_msg_part {
    enum kite_opcode type; /* the message's: KITE_OP_TEXT or KITE_OP_BINARY */
    const uint8_t *data;
    size_t len;
    uint64_t offset; /* where `data` starts in the message: 0 for its first part */
    bool last;       /* the message ends with this part */
};

/* Fill `o` with kite's defaults (documented on each field). */
KITE_EXTERN void kite_ws_options_init(struct kite_ws_options *o);

/* A frame as the raw mode hands it over. `data` is unmasked and valid only during the
 * callback. For a close frame, data is the raw payload (code + reason). */
struct kite_frame {
    enum kite_opcode opcode;
    bool fin;
    uint8_t rsv; /* KITE_RSV1/2/3 bits */
    const uint8_t *data;
    size_t len;
};

struct kite_codec;

/*
 * Callback results: KITE_OK to go on; KITE_PAUSE (from on_message or on_frame) to make
 * kite_codec_recv() return right after this message, with the bytes consumed so far,
 * so the caller can hold back the rest of the input (a sequential handler that is busy).
 */
#define KITE_PAUSE 1

struct kite_codec_callbacks {
    /* Default mode: one whole message, KITE_OP_TEXT (valid UTF-8) or KITE_OP_BINARY.
     * `data` is valid only during the call. May send, close, or pause. */
    int (*on_message)(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                      size_t len, void *ud);
    /* Raw mode: every frame, in order. May send, close, or pause. */
    int (*on_frame)(struct kite_codec *c, const struct kite_frame *f, void *ud);
    /* Default mode, optional: a ping or pong arrived (the pong reply is already queued). */
    void (*on_control)(struct kite_codec *c, enum kite_opcode op, const uint8_t *data,
                       size_t len, void *ud);
    /* The session ended at the protocol level; fires exactly once. After it the codec
     * sends nothing more; write out what is pending, then close the transport.
     * `ci` is valid during the call; kite_codec_close_info() keeps a copy. */
    void (*on_close)(struct kite_codec *c, const struct kite_close_info *ci, void *ud);
    /* Default mode, optional: one part of a message at least options.part_threshold
     * long (struct kite_msg_part); such messages then never reach on_message. May send,
     * close, or pause. */
    int (*on_message_part)(struct kite_codec *c, const struct kite_msg_part *p, void *ud);
};

struct kite_ext_chain; /* <kite/extension.h> */

struct kite_codec_config {
    enum kite_role role;
    enum kite_mode mode;
    struct kite_ws_options options;
    /* RSV bits that negotiated extensions claimed; any other set bit fails with 1002.
     * The bits of `extensions` are added to these. */
    uint8_t rsv_allowed;
    /* Optional; NULL = libc. Borrowed: must outlive the codec. */
    const struct kite_allocator *allocator;
    /* Negotiated extensions (kite_ext_negotiate / kite_ext_accept), or NULL (default).
     * Transferred to the codec when kite_codec_new() succeeds (freed with the codec);
     * still the caller's when it returns NULL. */
    struct kite_ext_chain *extensions;
    /* Optional (default NULL): options shared by many codecs, e.g. a route's. When set,
     * `options` is ignored and the codec keeps a pointer instead of a copy, which keeps
     * idle connections small. Borrowed: must outlive the codec and not change while it
     * lives. kite_codec_set_options() gives that one codec a copy of its own. */
    const struct kite_ws_options *shared_options;
};

/* Fill `cfg` with defaults: server role, default mode, kite_ws_options_init(). */
KITE_EXTERN void kite_codec_config_init(struct kite_codec_config *cfg);

/*
 * Create a codec. `cfg` is copied; `cb` is borrowed (must outlive the codec; usually a
 * static const struct; NULL or NULL members: those events are dropped). `now_ms` is the
 * current time on any monotonic clock in ms, used to schedule the first ping. Returns
 * NULL when out of memory or when cfg is invalid (unknown role or mode, timeout_ms of
 * 0, rsv_allowed with bits other than KITE_RSV_MASK).
 */
KITE_EXTERN struct kite_codec *kite_codec_new(const struct kite_codec_config *cfg,
                                              const struct kite_codec_callbacks *cb, void *ud,
                                              uint64_t now_ms);
/* Free a codec and everything it holds. NULL is a no-op. Must not be called from one
 * of its own callbacks. For a codec from kite_codec_new_in(), everything but its memory,
 * which stays the caller's. */
KITE_EXTERN void kite_codec_free(struct kite_codec *c);

/* Bytes of memory a codec takes, for kite_codec_new_in(). */
KITE_EXTERN size_t kite_codec_size(void);
/*
 * kite_codec_new() in memory the caller provides, so that a connection can hold its
 * codec in the same allocation as its own state (one heap block instead of two). `mem`
 * must have kite_codec_size() bytes, aligned for any type (as malloc's, or a member
 * declared with _Alignas(max_align_t)), and stay valid until kite_codec_free(), which
 * then releases what the codec holds but not `mem`. Returns the codec (at `mem`), or
 * NULL as kite_codec_new() (nothing to free then).
 */
KITE_EXTERN struct kite_codec *kite_codec_new_in(void *mem, const struct kite_codec_config *cfg,
                                                 const struct kite_codec_callbacks *cb,
                                                 void *ud, uint64_t now_ms);

/*
 * Feed received bytes. The buffer is modified: payloads are unmasked in place.
 * Returns the number of bytes consumed (all of them, unless a callback returned
 * KITE_PAUSE, or the session closed: bytes after a close frame or a protocol error are
 * not looked at), or KITE_ERR_NOMEM if buffering a partial message or queueing a reply
 * failed (KITE_ERR_CRYPTO: a client could not draw a masking key); the connection has
 * then been failed with 1011 and on_close has fired. KITE_ERR_STATE from a callback.
 * After a pause, feed the unconsumed bytes again later. After on_close (and in raw mode
 * after the peer's close frame) it returns 0.
 * Protocol errors are not return values: the codec queues the close frame (1002, 1007,
 * 1009), fires on_close, and from then on kite_codec_is_closed() is true.
 */
KITE_EXTERN ssize_t kite_codec_recv(struct kite_codec *c, uint8_t *in, size_t len,
                                    uint64_t now_ms);

/*
 * Send one whole message (KITE_OP_TEXT or KITE_OP_BINARY) as one frame; `data` is
 * copied (it must not point into the codec's pending output). Text is not validated
 * here. A client masks it with a fresh key (§5.3). Returns KITE_OK, KITE_ERR_CLOSED
 * after a close frame was sent or on_close fired, KITE_ERR_INVALID for another opcode
 * (or data NULL with len > 0), KITE_ERR_NOMEM, or KITE_ERR_CRYPTO (client: no
 * randomness for the mask). Nothing is queued on error.
 */
KITE_EXTERN int kite_codec_send(struct kite_codec *c, enum kite_opcode type, const void *data,
                                size_t len);
/*
 * Send one frame as given (fragments, control frames, rsv bits); `data` is copied.
 * Control frames must have fin set and at most 125 bytes, the opcode must be one of
 * RFC 6455's and rsv only KITE_RSV* bits (KITE_ERR_INVALID otherwise). The order of
 * fragments is the caller's business: it is not checked. A close frame sent here, in
 * either mode, starts the close sequence like kite_codec_close (its payload is recorded
 * as is: code, or 1005 without one); as there is no clock argument, its timeout starts
 * at the next kite_codec_recv() or kite_codec_tick(), and kite_codec_next_timer()
 * returns 0 ("now") until then. Returns as kite_codec_send().
 */
KITE_EXTERN int kite_codec_send_frame(struct kite_codec *c, enum kite_opcode op, bool fin,
                                      uint8_t rsv, const void *data, size_t len);
/* Send a ping with up to 125 bytes of payload. Same returns as kite_codec_send_frame. */
KITE_EXTERN int kite_codec_ping(struct kite_codec *c, const void *data, size_t len);
/*
 * Start the close handshake: queue a close frame with `code` (must satisfy
 * kite_close_code_is_valid(), or be 0 for a close frame without a code; the reason is
 * then ignored) and `reason` (NUL-terminated UTF-8, copied; at most 123 bytes, cut at a
 * character boundary if longer; may be NULL). Then wait up to timeout_ms (from now_ms)
 * for the peer's close. Returns KITE_OK, KITE_ERR_CLOSED if a close was already sent or
 * on_close fired, KITE_ERR_INVALID for a bad code or a reason that is not UTF-8,
 * KITE_ERR_NOMEM or KITE_ERR_CRYPTO (nothing queued then).
 */
KITE_EXTERN int kite_codec_close(struct kite_codec *c, unsigned code, const char *reason,
                                 uint64_t now_ms);

/*
 * The write kite_codec_send_direct() may call: hand the frame header `head` and then the
 * payload `data` to the transport without blocking, as one write (writev). Return how
 * many bytes were taken, counted from the start of head (0 if none), or a negative code
 * if the write failed; the codec then queues whatever was not taken. It must not call
 * the codec. Errors are not reported back: the caller meets them on its next write.
 */
typedef ssize_t kite_codec_write_cb(void *arg, const uint8_t *head, size_t head_len,
                                    const uint8_t *data, size_t len);

/*
 * Send one whole message like kite_codec_send(), without copying what the transport
 * takes at once. When nothing is pending and the frame goes out as given (server role:
 * no mask; no extension negotiated, or raw mode), calls write(arg, header, data) once and
 * queues only the bytes it did not take; otherwise it is kite_codec_send() and `write` is
 * not called. Meant for large messages (tens of KiB and up): for small ones the usual
 * send, with one write per loop iteration for everything queued, makes fewer system
 * calls. `data` is borrowed for the call. Returns as kite_codec_send(), plus
 * KITE_ERR_INVALID when write is NULL. If part of the frame went out and the rest cannot
 * be queued (KITE_ERR_NOMEM), the stream cannot go on: the session ends (on_close with
 * KITE_ERR_NOMEM, after the current callback if inside one) and nothing more is sent.
 * May be called from callbacks (write then runs inside them).
 */
KITE_EXTERN int kite_codec_send_direct(struct kite_codec *c, enum kite_opcode type,
                                       const void *data, size_t len,
                                       kite_codec_write_cb *write, void *arg);

/*
 * Where to read the next bytes so that a large message is not copied: while the codec is
 * inside the payload of a large frame that it gathers in its own buffer (a data frame
 * that spans reads; in raw mode any frame that does), returns how many bytes may be read
 * into *buf (at most the rest of that frame's payload) and points *buf into that buffer.
 * Read at most that many bytes there, then pass exactly that pointer and the count read
 * to kite_codec_recv() before any other call on the codec: the bytes are taken where they
 * lie (unmasked in place) instead of being copied. Returns 0 with *buf NULL when there is
 * no such place (between frames, small or extension-processed frames, after the end,
 * from a callback, or out of memory): read into a buffer of your own as usual.
 */
KITE_EXTERN size_t kite_codec_recv_space(struct kite_codec *c, uint8_t **buf);

/* Borrow the bytes waiting to be written; returns their count (0 if none). The pointer
 * is valid until the next call on the codec. */
KITE_EXTERN size_t kite_codec_pending(const struct kite_codec *c, const uint8_t **out);
/* Mark `n` bytes of the pending output as written (n <= kite_codec_pending()). When the
 * output drains, a buffer grown over 1 KiB is released. */
KITE_EXTERN void kite_codec_consume(struct kite_codec *c, size_t n);

/* Run timers: pings, pong timeout, close-handshake timeout. Call when
 * kite_codec_next_timer() has passed (calling earlier or more often is harmless). */
KITE_EXTERN void kite_codec_tick(struct kite_codec *c, uint64_t now_ms);
/* The time (same clock as now_ms) when the codec next wants tick(); UINT64_MAX if none,
 * 0 when it wants a tick right away (a close timer to start, see send_frame). */
KITE_EXTERN uint64_t kite_codec_next_timer(const struct kite_codec *c);

/*
 * The transport ended (EOF or error `err`, a -errno or kite code, 0 for a clean EOF).
 * Fires on_close if it has not fired, with clean=false and error `err`: code 1006 and
 * initiator NONE when no close frame had been sent or received; otherwise the record
 * keeps that first close frame (its code, reason and who sent it). If on_close already
 * fired, nothing changes. May be called from a callback (on_close then fires when the
 * callback returns).
 */
KITE_EXTERN void kite_codec_transport_closed(struct kite_codec *c, int err);

/* True once on_close has fired: write out what is pending, then close the transport. */
KITE_EXTERN bool kite_codec_is_closed(const struct kite_codec *c);
/* True once a close frame has been queued (no data can be sent any more). */
KITE_EXTERN bool kite_codec_close_sent(const struct kite_codec *c);
/* The close info, once on_close has fired; NULL before. Owned by the codec, valid until
 * kite_codec_free(). If memory for it could not be allocated, it is a shared static
 * record: (LOCAL, 1011, clean=false, KITE_ERR_NOMEM, "out of memory"). */
KITE_EXTERN const struct kite_close_info *kite_codec_close_info(const struct kite_codec *c);

/* Change options on a live session (Ktor's per-session setters); `o` is copied. Timers
 * restart from now_ms (the ping period, or the pending pong or close deadline); size
 * limits apply to frames whose header arrives later. Returns KITE_OK, KITE_ERR_INVALID
 * (timeout_ms of 0) or KITE_ERR_NOMEM (the copy could not be allocated); the options are
 * unchanged on error. */
KITE_EXTERN int kite_codec_set_options(struct kite_codec *c, const struct kite_ws_options *o,
                                       uint64_t now_ms);
/* The current options. Owned by the codec (or the shared_options given at creation);
 * valid until the next kite_codec_set_options() or kite_codec_free(). */
KITE_EXTERN const struct kite_ws_options *kite_codec_options(const struct kite_codec *c);
/* Change the user data passed to callbacks. */
KITE_EXTERN void kite_codec_set_user_data(struct kite_codec *c, void *ud);

struct kite_extension;
/* The session's instance of a negotiated extension (Ktor's extensionOrNull), e.g.
 * kite_codec_extension(c, &kite_ext_permessage_deflate); NULL when it was not
 * negotiated. Owned by the codec. May be called from callbacks. */
KITE_EXTERN void *kite_codec_extension(const struct kite_codec *c,
                                       const struct kite_extension *ext);

/*
 * Stand-alone helpers from the protocol core.
 */

/* Mask or unmask `len` bytes in place with `key`, starting at key position `offset`
 * (0-3; pass the running payload offset for chunked data). RFC 6455 §5.3. */
KITE_EXTERN void kite_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset);

/* Is `data` valid UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF)? */
KITE_EXTERN bool kite_utf8_valid(const uint8_t *data, size_t len);

#ifdef __cplusplus
}
#endif

/* The extension API belongs with the codec: whoever includes one gets both. */
#include "kite/extension.h"
#endif

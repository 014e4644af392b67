/*
 * kite — WebSocket sessions and the event-callback API. Included by <kite/kite.h>.
 *
 * A struct kite_session is one open WebSocket connection: the protocol state machine
 * (struct kite_codec), the transport, its timers and its outgoing queue, plus your
 * callbacks. The server creates one per accepted upgrade; the client will create one
 * per connection, with the same type and the same functions.
 *
 * Ktor's standard events map like this (seed FAQ: onConnect, onMessage, onClose,
 * onError):
 *   on_open     the session is open (Ktor: the start of the webSocket block). You can
 *               send from here. `req` describes the upgrade request (server).
 *   on_message  one whole message, text or binary (default routes; Ktor: a frame read
 *               from `incoming`, which never holds control frames or fragments).
 *   on_frame    every frame as it arrives, control frames and fragments included (raw
 *               routes; Ktor's webSocketRaw). You own pings and the close sequence.
 *   on_error    the session is failing because of an error (Ktor: "other exceptions").
 *               Fires at most once, immediately before on_close, exactly when the close
 *               info's `error` is not 0: a protocol error from the peer (KITE_ERR_PROTOCOL
 *               1002, KITE_ERR_UTF8 1007, KITE_ERR_TOO_BIG 1009), a ping or close
 *               timeout (KITE_ERR_TIMEOUT), a transport error (-ECONNRESET, ...), or a
 *               local failure (KITE_ERR_NOMEM). A peer that just drops the TCP
 *               connection is not an error: on_close alone reports code 1006.
 *   on_close    the session ended (Ktor: `incoming` closed; `closeReason`). Fires
 *               exactly once for every session that got on_open, with who closed, the
 *               code and reason, whether the close handshake completed, and the error.
 *               After on_close returns the session pointer is dead: drop every
 *               reference to it there.
 *   on_drain    the outgoing queue fell below the high-water mark after a send
 *               returned KITE_SEND_QUEUED: you may send more.
 *
 * Every callback gets the session's user data as `ud`. It starts as the `ud` given
 * when the route was added; kite_session_set_user_data() replaces it (typically in
 * on_open with your per-connection state, freed in on_close).
 *
 * THREADS. A session lives on one loop. Every function in this file must be called on
 * that loop's thread (from a callback, or from other code that runs on the loop: a
 * function given to kite_loop_post() or kite_app_post(), a timer), except the four
 * marked "any thread": kite_session_ref() (loop thread to take the first), and
 * kite_session_unref(), kite_session_post(), kite_session_send_async(). The pattern for
 * other threads: take a reference in on_open, hand the pointer to the other thread,
 * post or send_async from there, and unref when done (e.g. after on_close told you the
 * session is over). A reference keeps only a small shell alive after on_close; a
 * posted function must check kite_session_is_open() before acting.
 *
 * REENTRANCY. From inside any callback you may call every function here on the same
 * or another session, including close and terminate. Closing never frees memory under
 * your feet: a session is freed at the end of the loop iteration, after on_close.
 */
#ifndef KITE_SESSION_H
#define KITE_SESSION_H

#include "kite/codec.h"
#include "kite/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kite_session;
struct kite_loop;
/* The HTTP upgrade request that opened a server session (see <kite/server.h>). */
struct kite_request;
struct kite_extension; /* <kite/extension.h> */

/* A borrowed byte range (not NUL-terminated). `ptr` is NULL for "absent". */
struct kite_str {
    const char *ptr;
    size_t len;
};

/* One whole message, as on_message gets it. `data` is valid only during the callback
 * (it points into the loop's receive buffer or the session's reassembly buffer): copy
 * what you keep. A text message is valid UTF-8 (checked by kite, RFC 6455 §8.1). */
struct kite_msg {
    enum kite_opcode type; /* KITE_OP_TEXT or KITE_OP_BINARY */
    const uint8_t *data;
    size_t len;
};

/*
 * The result of a send: >= 0 is one of these, < 0 is an error (see each function).
 *
 * Sends never block. A frame is appended to the session's outgoing queue, and one write
 * takes every frame queued: for the replies a session makes while it handles its own
 * input, right after that read is handled (in on_message and the like, before the next
 * connection's events); for sends from anywhere else, before the loop next sleeps. So
 * many small sends cost one syscall. One exception, so large messages are not
 * copied: a whole message (kite_session_send/_text/_binary/_str), or a text, binary or
 * continuation frame without RSV bits (kite_session_send_frame), of 16 KiB or more, on
 * a server session without extensions (no permessage-deflate), with nothing queued
 * ahead of it, is written to the socket (or TLS) during the call, straight from `data`;
 * only what the kernel does not take is copied into the queue. Order is kept either
 * way: a message is written at once only when nothing queued could go before it. The
 * queue only holds data across iterations when the kernel's socket buffer is full, i.e.
 * when the peer reads slower than you send; the limits count only what is queued, never
 * what was written. Two marks bound it (struct kite_send_limits):
 *   KITE_SEND_OK       accepted; the queue is below the high-water mark.
 *   KITE_SEND_QUEUED   accepted, but the queue (this message included) is at or above
 *                      the high-water mark: slow down. on_drain fires once it falls
 *                      below the mark again. *buffered says how much is queued.
 *   KITE_SEND_DROPPED  not accepted: queueing it would pass the hard limit and the
 *                      policy is KITE_SEND_POLICY_DROP. The session goes on.
 *   KITE_SEND_CLOSED   not accepted: the session is closing or closed (a close frame
 *                      was sent or received, or it was terminated), or this send passed
 *                      the hard limit under KITE_SEND_POLICY_CLOSE, which has just
 *                      started closing the session with 1008, or the write during the
 *                      call failed (the peer reset the connection, or part of the frame
 *                      went out and the rest could not be queued for lack of memory).
 *                      After such a failure the session is closed at once for every
 *                      function here (sends say CLOSED, kite_session_is_open() is false),
 *                      but it stays valid: on_error and on_close follow after the current
 *                      callback returns (before the loop sleeps when sent from outside
 *                      one), never inside the send.
 * There is deliberately no "written": a message written during the call and one queued
 * both return OK (or QUEUED if the part left over reaches the mark). Sends may be
 * called from every callback, on the same or another session, as before.
 */
enum kite_send_status {
    KITE_SEND_OK = 0,
    KITE_SEND_QUEUED = 1,
    KITE_SEND_DROPPED = 2,
    KITE_SEND_CLOSED = 3,
};

/* What to do with a send that would take the queue past the hard limit. */
enum kite_send_policy {
    KITE_SEND_POLICY_CLOSE = 0, /* refuse it and close the session with 1008 (default) */
    KITE_SEND_POLICY_DROP = 1,  /* refuse it (KITE_SEND_DROPPED), keep the session */
};

/* Bounds on a session's outgoing queue. Control frames (ping, pong, close) are never
 * refused for being over a limit: they are small and the protocol needs them. */
struct kite_send_limits {
    /* KITE_SEND_QUEUED at or above this. Default 64 KiB. */
    size_t high_water;
    /* Never queue more than this. Default 64 MiB: room for an echo of a maximum-size
     * (16 MiB) message several times over. */
    size_t hard_limit;
    /* What a send that would pass hard_limit gets. Default KITE_SEND_POLICY_CLOSE. */
    enum kite_send_policy policy;
};

/* Fill `l` with the defaults documented on each field. */
KITE_EXTERN void kite_send_limits_init(struct kite_send_limits *l);

/*
 * The callbacks of a WebSocket route. Every member may be NULL (the event is then
 * ignored), except that a raw route needs on_frame. The struct is copied when the route
 * is added. What each one means is in the file comment above.
 */
struct kite_ws_callbacks {
    /* `req` is valid only during the call (copy what you need); NULL for a client
     * session. */
    void (*on_open)(struct kite_session *s, const struct kite_request *req, void *ud);
    /* Default routes: one whole message. `m` and its data are valid during the call. */
    void (*on_message)(struct kite_session *s, const struct kite_msg *m, void *ud);
    /* Raw routes: every frame in order, unmasked; `f` is valid during the call. A close
     * frame's data is its raw payload (code + reason). */
    void (*on_frame)(struct kite_session *s, const struct kite_frame *f, void *ud);
    void (*on_drain)(struct kite_session *s, void *ud);
    /* `err`: a kite code or -errno (kite_strerror() describes it). on_close follows. */
    void (*on_error)(struct kite_session *s, int err, void *ud);
    /* `ci` is valid during the call; kite_session_close_info() returns the same data. */
    void (*on_close)(struct kite_session *s, const struct kite_close_info *ci, void *ud);
    /* Optional: the bytes of one read have all been handed over (every on_message or
     * on_frame they held has run). Lets a consumer that queues messages act once per
     * read instead of once per message; data handed earlier in the read is still valid
     * here. Not called once the session is closing. May send, close or pause. */
    void (*on_input_done)(struct kite_session *s, void *ud);
    /* Optional, default routes: large messages in parts as they arrive, instead of whole
     * to on_message. A message of at least the options' part_threshold bytes (64 KiB
     * unless set; <kite/codec.h> says how kite knows) comes here, in order, in as many
     * calls as its frames and the reads make (struct kite_msg_part: type, data, offset,
     * last); kite never holds the whole of it, so memory stays bounded whatever its
     * size. Sessions with a negotiated extension
     * (permessage-deflate) get every message whole. `p` and its data are valid during
     * the call. May send, close or pause (kite_session_pause()); to pass a message on as
     * it comes, send each part with kite_session_send_frame() (the first with the
     * message's type, the next ones KITE_OP_CONTINUATION, fin on the last). */
    void (*on_message_part)(struct kite_session *s, const struct kite_msg_part *p, void *ud);
};
/* Compile-time test for on_message_part. */
#define KITE_HAVE_ON_MESSAGE_PART 1
/* Compile-time test for on_input_done (added after the first callbacks). */
#define KITE_HAVE_ON_INPUT_DONE 1

/*
 * Send one whole message as one frame: text (must be valid UTF-8: kite does not check
 * what you send, and a peer fails the connection with 1007 on invalid text), binary,
 * or either by opcode (KITE_OP_TEXT / KITE_OP_BINARY). `data` is borrowed for the call
 * only: a large message may be written from it during the call (see enum
 * kite_send_status); what is not written is copied.
 * `buffered` (may be NULL) receives the bytes queued for this session after the call.
 * Returns an enum kite_send_status, or KITE_ERR_INVALID (a NULL session, NULL data with
 * len > 0, another opcode), or KITE_ERR_NOMEM (nothing queued; the session goes on).
 */
KITE_EXTERN int kite_session_send_text(struct kite_session *s, const char *text, size_t len,
                                       size_t *buffered);
KITE_EXTERN int kite_session_send_binary(struct kite_session *s, const void *data, size_t len,
                                         size_t *buffered);
KITE_EXTERN int kite_session_send(struct kite_session *s, enum kite_opcode type, const void *data,
                                  size_t len, size_t *buffered);
/* kite_session_send_text() of a NUL-terminated string. */
KITE_EXTERN int kite_session_send_str(struct kite_session *s, const char *text);

/*
 * Send one frame exactly as given: fragments (fin false, then KITE_OP_CONTINUATION
 * frames), control frames, rsv bits. For raw routes mostly; in a default session you
 * must not interleave your own fragments with whole-message sends. Control frames need
 * fin and at most 125 bytes. A close frame sent here starts the close sequence (in raw
 * mode you then wait for the peer's close in on_frame and call kite_session_terminate()
 * or let the peer close TCP). Same returns as kite_session_send().
 */
KITE_EXTERN int kite_session_send_frame(struct kite_session *s, enum kite_opcode op, bool fin,
                                        uint8_t rsv, const void *data, size_t len,
                                        size_t *buffered);

/* Send a ping with up to 125 bytes of payload (copied). Default sessions also ping by
 * themselves every ping_period_ms. KITE_SEND_OK, KITE_SEND_CLOSED, KITE_ERR_INVALID
 * (payload too long) or KITE_ERR_NOMEM. */
KITE_EXTERN int kite_session_ping(struct kite_session *s, const void *data, size_t len);

/*
 * Start the close handshake (RFC 6455 §7.1.2; Ktor's close(CloseReason)): queue a close
 * frame with `code` and `reason` (NUL-terminated, may be NULL; at most 123 bytes of
 * UTF-8, longer is cut at a character boundary), stop accepting sends, and wait up to
 * timeout_ms for the peer's close; then close TCP. on_close fires when that is done.
 * `code` must pass kite_close_code_is_valid() (e.g. KITE_CLOSE_NORMAL), or be 0 for a
 * close frame without a code.
 * Returns KITE_OK, KITE_ERR_CLOSED (a close was already sent or the session is gone),
 * KITE_ERR_INVALID (bad code), or KITE_ERR_NOMEM.
 */
KITE_EXTERN int kite_session_close(struct kite_session *s, unsigned code, const char *reason);

/*
 * Drop the connection now, without a close frame (Ktor's terminate()): queued output is
 * discarded and TCP is closed. on_close fires (code 1006, initiator LOCAL, not clean,
 * error 0) right away, or when the current callback returns if called from one.
 * No-op on a session that is already closed.
 */
KITE_EXTERN void kite_session_terminate(struct kite_session *s);

/*
 * Flow control on input. kite_session_pause() holds back delivery: called from inside
 * on_message, on_message_part or on_frame, nothing more is delivered after the current
 * call; the session stops reading from its socket, so a peer that keeps sending fills
 * the kernel's buffers and is slowed down by TCP (what is already read is kept, not
 * dropped). kite_session_resume() delivers again: held-back input first, before the
 * loop next sleeps, then reading resumes. Both are idempotent and may be called from
 * any callback of the session or from code on its loop; the usual pairing is pause when
 * a send returns KITE_SEND_QUEUED, resume in on_drain. Timers keep running while
 * paused, but a paused session reads nothing, so it sees neither pongs nor the peer's
 * close reply: do not stay paused longer than timeout_ms while pinging or after
 * closing. Not for the sessions of sequential handlers (<kite/handler.h>), whose reads
 * follow kite_receive(). NULL is a no-op.
 */
KITE_EXTERN void kite_session_pause(struct kite_session *s);
KITE_EXTERN void kite_session_resume(struct kite_session *s);
/* Paused by kite_session_pause() (or by kite's own flow control). False for NULL. */
KITE_EXTERN bool kite_session_is_paused(const struct kite_session *s);

/* The user data passed to callbacks (see the file comment). */
KITE_EXTERN void *kite_session_user_data(const struct kite_session *s);
KITE_EXTERN void kite_session_set_user_data(struct kite_session *s, void *ud);

/* Bytes in the outgoing queue (sent but not yet taken by the kernel). */
KITE_EXTERN size_t kite_session_buffered(const struct kite_session *s);

/* The session's current limits: the route's, or this session's own once set. */
KITE_EXTERN void kite_session_send_limits(const struct kite_session *s,
                                          struct kite_send_limits *out);
/* Per-session override of the route's send limits (copied). Allocates a small
 * per-session block the first time. KITE_OK, KITE_ERR_INVALID (high_water >
 * hard_limit), or KITE_ERR_NOMEM. */
KITE_EXTERN int kite_session_set_send_limits(struct kite_session *s,
                                             const struct kite_send_limits *l);

/* The session's protocol options (Ktor's per-session pingInterval, timeout,
 * maxFrameSize, masking, plus max_message_size). Owned by the session; valid until the
 * next set or until on_close returns. */
KITE_EXTERN const struct kite_ws_options *kite_session_options(const struct kite_session *s);
/* Change them for this session only (copied); timers restart from now. KITE_OK,
 * KITE_ERR_INVALID (timeout_ms of 0) or KITE_ERR_CLOSED. */
KITE_EXTERN int kite_session_set_options(struct kite_session *s, const struct kite_ws_options *o);

/* The negotiated subprotocol (Sec-WebSocket-Protocol), or NULL. Valid for the
 * session's life. */
KITE_EXTERN const char *kite_session_subprotocol(const struct kite_session *s);

/* The session's instance of a negotiated extension (Ktor's extensionOrNull), e.g.
 * kite_session_extension(s, &kite_ext_permessage_deflate) for kite_pmd_params(); NULL
 * when it was not negotiated or the session has ended. Server sessions: what the
 * upgrade agreed with the route's registry (<kite/server.h>, "extensions"); client
 * sessions: what the 101 accepted of the offer. Owned by the session (valid until
 * on_close returns). Loop thread; may be called from callbacks, on_open included. */
KITE_EXTERN void *kite_session_extension(const struct kite_session *s,
                                         const struct kite_extension *ext);
/* Is the session's connection TLS (wss://)? */
KITE_EXTERN bool kite_session_is_tls(const struct kite_session *s);


/* The peer's address as text, "192.0.2.1:5555" or "[2001:db8::1]:5555", into
 * buf[0..cap) with a NUL (getpeername(2), so it costs the session no memory). Returns
 * the length, or -errno (e.g. -ENOTCONN once the socket is closed) with buf "-". */
KITE_EXTERN int kite_session_remote_addr(const struct kite_session *s, char *buf, size_t cap);

/* How the session ended: valid from on_close on (NULL before). Owned by the session. */
KITE_EXTERN const struct kite_close_info *kite_session_close_info(const struct kite_session *s);

/* True from on_open until a close frame is sent or received or the session fails: the
 * state in which data sends are accepted. */
KITE_EXTERN bool kite_session_is_open(const struct kite_session *s);

/* The loop the session lives on (for kite_loop_post() and timers). */
KITE_EXTERN struct kite_loop *kite_session_loop(const struct kite_session *s);

/* ---- references and other threads ---------------------------------------------- */

/*
 * Take a reference: the session pointer stays valid (as a closed shell, once on_close
 * has run) until the matching kite_session_unref(). Take the first one on the loop
 * thread while the session is valid (on_open is the usual place); with one in hand, any
 * thread may take more. On a shell only kite_session_is_open() (false),
 * kite_session_user_data(), kite_session_post(), kite_session_send_async() and
 * kite_session_unref() may be called.
 */
KITE_EXTERN void kite_session_ref(struct kite_session *s);
/* Drop a reference. Any thread. The last one frees the shell with the route's
 * allocator, which must then be thread-safe (libc's is). NULL is a no-op. */
KITE_EXTERN void kite_session_unref(struct kite_session *s);

typedef void kite_session_fn(struct kite_session *s, void *arg);
/*
 * Run fn(s, arg) on the session's loop thread, soon. Any thread, holding a reference
 * (or on the loop thread while the session is valid); the post holds its own reference
 * until fn has run. fn runs even if the session closed in the meantime: check
 * kite_session_is_open(s) first. `arg` is passed through untouched. The loop must still
 * exist (see kite_loop_post()). Returns KITE_OK, KITE_ERR_NOMEM or KITE_ERR_CLOSED (the
 * loop is being freed; fn will not run).
 */
KITE_EXTERN int kite_session_post(struct kite_session *s, kite_session_fn *fn, void *arg);
/*
 * Send one message from any thread (same rules as kite_session_post): `data` is copied
 * now, and sent on the loop thread with kite_session_send() if the session is still
 * open then; otherwise it is dropped. The send status is not reported back (post a
 * function instead if you need it). KITE_OK, KITE_ERR_INVALID, KITE_ERR_NOMEM or
 * KITE_ERR_CLOSED.
 */
KITE_EXTERN int kite_session_send_async(struct kite_session *s, enum kite_opcode type,
                                        const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif

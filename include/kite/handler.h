/*
 * kite — sequential handlers: Ktor's `webSocket { ... }` block as plain C on coroutines.
 * Included by <kite/kite.h>.
 *
 *   static void echo(struct kite_session *s, void *ud)
 *   {
 *       kite_send_str(s, "Please enter your name");
 *       struct kite_msg m;
 *       while (kite_receive(s, &m) == KITE_OK) {      // suspends until a message arrives
 *           if (m.type != KITE_OP_TEXT)
 *               continue;                              // frame as? Frame.Text ?: continue
 *           if (kite_msg_equals_ci(&m, "bye"))
 *               kite_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
 *           else
 *               kite_send_textf(s, "Hi, %.*s!", (int)m.len, (const char *)m.data);
 *       }
 *   }
 *   ...
 *   kite_route_ws(app, "/echo", echo, NULL);
 *
 * MODEL. Each session of a handler route runs its own handler: a stackful coroutine on
 * the session's loop thread, started when the session opens (Ktor: the start of the
 * block, onConnect). The handler reads top to bottom; every wait is a suspension, not a
 * callback. While one handler is suspended the loop runs everything else, so thousands
 * of handlers share one thread. Handlers on one loop never run at the same time, so
 * they may share plain data without locks (not across loops or worker threads).
 *
 * WHICH CALLS SUSPEND, AND FROM WHERE. The functions marked "Suspends" below may park
 * the handler until something happens on the session. They may be called only from the
 * handler of session `s` itself (the function given to kite_route_ws and whatever it
 * calls, on the handler's own stack). Called anywhere else (a callback, another
 * thread, another session's handler, a worker function) they do nothing and return
 * KITE_ERR_STATE. The other functions here never suspend. A handler may also call
 * every kite_session_* function (<kite/session.h>) on its own session or on others,
 * except kite_session_set_user_data(): a handler session's user data is kite's (the
 * handler's state), and no code may change it; keep per-session data in the handler's
 * locals instead. Never block the loop thread inside a handler (sleep, blocking I/O,
 * long computations, locks held by other threads): use kite_handler_run_blocking().
 *
 * MESSAGES. A default route (kite_route_ws; Ktor's webSocket) hands whole messages to
 * kite_receive(): text (valid UTF-8) or binary, never control frames or fragments; kite
 * answers pings, reassembles and runs the close handshake. A raw route
 * (kite_route_ws_raw; Ktor's webSocketRaw) hands every frame to kite_receive_frame(),
 * control frames and fragments included, and leaves pings and the close sequence to you.
 * Received bytes remain valid until the handler's next kite_receive() /
 * kite_receive_frame() or until it returns, across any suspension in between. A message
 * that arrived in one read is not copied: it stays in the loop's shared receive buffer,
 * and while its handler is suspended elsewhere (a full send, a flush, a blocking call)
 * still holding it, kite hands the loop another receive buffer and keeps that one
 * (64 KiB) for the handler until its next receive. A message reassembled from several
 * reads is copied once when delivered, as the buffer it was gathered in is released.
 * While the handler is not receiving, kite reads nothing more from its socket, so a
 * busy handler slows its peer down instead of buffering it.
 *
 * SENDING. Sends copy the data and are written out before the loop next sleeps (a
 * large message with nothing queued ahead is written during the send, from your
 * buffer, and only the rest is copied: see enum kite_send_status in session.h). When
 * the session's outgoing queue is at or above its high-water mark (struct
 * kite_send_limits, default 64 KiB) after a send, the send suspends until the queue
 * falls below it again (Ktor's bounded `outgoing` channel), so a peer that does not read
 * parks its handler instead of growing the server's memory.
 *
 * THE END. When the incoming side ends, kite_receive() returns KITE_ERR_CLOSED if it
 * ended normally (a close frame, or the peer dropped TCP: Ktor's onClose,
 * ClosedReceiveChannelException) or the error that failed the session (Ktor's onError:
 * KITE_ERR_PROTOCOL, KITE_ERR_UTF8, KITE_ERR_TOO_BIG, KITE_ERR_TIMEOUT, KITE_ERR_NOMEM,
 * -ECONNRESET, ...); in both cases kite_close_reason() then returns how it ended (Ktor's
 * closeReason). From then on every call here returns at once (receive the same code,
 * sends KITE_ERR_CLOSED): return from the handler. After the end `s` stays valid for the
 * functions in this file until the handler returns, but no kite_session_* function may be
 * called on it any more except kite_session_is_open() (false).
 * When the handler returns, the session closes as Ktor's does: a default session that is
 * still open sends close 1000 and completes the close handshake without the handler
 * (messages still arriving are dropped); a raw session that has not sent a close frame
 * is terminated at once (queued output dropped), one that has finishes its close
 * sequence.
 *
 * MEMORY. A handler suspended in kite_receive() costs its stack's touched pages (one
 * page for a handler that keeps to small locals: stacks are committed lazily by the
 * kernel, see docs/coroutines.md) plus about 270 bytes. The stack size is virtual
 * (default 256 KiB; kite_route_set_stack_size). A handler that runs off its stack hits a
 * guard page and the process stops with "kite: coroutine stack overflow (stack size N
 * bytes); raise the route's stack size".
 */
#ifndef KITE_HANDLER_H
#define KITE_HANDLER_H

#include <stdarg.h>

#include "kite/common.h"
#include "kite/server.h"
#include "kite/session.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A sequential handler: the body of Ktor's webSocket { } block. `s` is its session;
 * `ud` the pointer given with the route. It runs on the session's loop thread; see the
 * file comment for what it may call. Returning ends the session (see THE END).
 */
typedef void kite_handler_fn(struct kite_session *s, void *ud);

/* ---- routes -------------------------------------------------------------------------- */

/*
 * Add a WebSocket route whose sessions each run `fn(s, ud)` (Ktor's webSocket(path)),
 * in default mode: whole messages, pings answered, close handshake run for you. Path
 * patterns, options and limits are those of kite_route_ws_callbacks() (<kite/server.h>):
 * kite_route_set_ws_options(), kite_route_set_send_limits(), kite_route_set_protocol()
 * apply to the returned route. Returns the route, or NULL (bad pattern, pattern taken,
 * NULL fn, or out of memory).
 */
KITE_EXTERN struct kite_route *kite_route_ws(struct kite_app *app, const char *path,
                                             kite_handler_fn *fn, void *ud);
/* The same in raw mode (Ktor's webSocketRaw): kite_receive_frame() gets every frame,
 * nothing is answered for you, and you own the close sequence. */
KITE_EXTERN struct kite_route *kite_route_ws_raw(struct kite_app *app, const char *path,
                                                 kite_handler_fn *fn, void *ud);

/*
 * The stack size of the route's handlers, in bytes (rounded up to the page size), for
 * sessions opened from now on. Default 256 KiB. It is address space, not memory: pages
 * are committed only when touched. Raise it for deep recursion or large locals.
 * KITE_OK, or KITE_ERR_INVALID (not a handler route, or outside 16 KiB .. 1 GiB).
 */
KITE_EXTERN int kite_route_set_stack_size(struct kite_route *r, size_t bytes);

/*
 * Threads of the worker pool that runs kite_handler_run_blocking() calls for the app's
 * loop. The pool is started by the first such call (default 4 threads) and stopped when
 * the loop has no handler left. Takes effect for a pool started after the call.
 * KITE_OK, KITE_ERR_INVALID (0 or more than 1024) or KITE_ERR_NOMEM.
 */
KITE_EXTERN int kite_app_set_handler_threads(struct kite_app *app, unsigned threads);

/*
 * For APIs that take callbacks (kite_route_ws_callbacks(), a client connection):
 * callbacks that run a handler on every session they are given to. Pass a pointer to a
 * struct kite_handler_spec as the user data; it is borrowed and must outlive every
 * session it starts (e.g. static). kite_route_ws() is this with a spec kite allocates.
 * In raw mode (kite_route_ws_raw_callbacks(), a raw client) the handler reads frames.
 */
struct kite_handler_spec {
    kite_handler_fn *fn; /* required */
    void *ud;            /* passed to fn */
    size_t stack_size;   /* 0: 256 KiB */
};
KITE_EXTERN const struct kite_ws_callbacks *kite_handler_callbacks(void);

/* ---- receiving (suspends) ---------------------------------------------------------------- */

/*
 * Suspends. The next whole message into *m (Ktor: incoming.receive(), or one turn of
 * `for (frame in incoming)`): m->type is KITE_OP_TEXT (valid UTF-8) or KITE_OP_BINARY;
 * m->data (m->len bytes, not NUL-terminated, never NULL) stays valid until the next
 * receive or the handler's return (see MESSAGES). Default routes only.
 * Returns
 *   KITE_OK          a message;
 *   KITE_ERR_CLOSED  the incoming side ended normally (Ktor's onClose);
 *   another < 0      the session failed with that error (Ktor's onError; see THE END);
 *   KITE_ERR_STATE   not called from the handler of `s`;
 *   KITE_ERR_INVALID m is NULL, or `s` is a raw session.
 */
KITE_EXTERN int kite_receive(struct kite_session *s, struct kite_msg *m);

/*
 * Suspends. The next frame into *f, raw routes only (Ktor's webSocketRaw incoming):
 * data frames and fragments as they arrive (fin false, then KITE_OP_CONTINUATION; a
 * fragment boundary may split a UTF-8 character), pings, pongs and close frames (the
 * raw payload: kite_frame_read_reason() decodes it). f->data stays valid as m->data does
 * above. Answering pings and closes is your job: after the peer's close frame, reply
 * with kite_close() or kite_send_frame(KITE_OP_CLOSE, ...) and the session ends (the
 * next receive returns KITE_ERR_CLOSED). Returns as kite_receive(); KITE_ERR_INVALID on a
 * default session.
 */
KITE_EXTERN int kite_receive_frame(struct kite_session *s, struct kite_frame *f);

/* ---- sending (suspends) ---------------------------------------------------------------------- */

/*
 * Suspends while the outgoing queue is at or above its high-water mark after the send
 * (see SENDING). Send one whole message (data not kept after the call): text (must be valid UTF-8; not
 * checked) or binary, or either by opcode. Returns
 *   KITE_OK          queued, and the queue is below the high-water mark;
 *   KITE_ERR_CLOSED  the session is closing or closed (a close frame was sent or
 *                    received, or it ended while this send waited), or this send passed
 *                    the hard limit under KITE_SEND_POLICY_CLOSE (closed with 1008);
 *   KITE_ERR_LIMIT   dropped: it would pass the hard limit under KITE_SEND_POLICY_DROP;
 *   KITE_ERR_INVALID a bad opcode, or NULL data with len > 0;
 *   KITE_ERR_NOMEM   nothing queued; the session goes on;
 *   KITE_ERR_STATE   not called from the handler of `s`.
 */
KITE_EXTERN int kite_send(struct kite_session *s, enum kite_opcode type, const void *data,
                          size_t len);
KITE_EXTERN int kite_send_text(struct kite_session *s, const char *text, size_t len);
KITE_EXTERN int kite_send_binary(struct kite_session *s, const void *data, size_t len);
/* A NUL-terminated string as text (Ktor's send(String)). */
KITE_EXTERN int kite_send_str(struct kite_session *s, const char *text);
/* printf-formatted text (the result must be UTF-8). Also KITE_ERR_INVALID for a format
 * error. */
KITE_EXTERN int kite_send_textf(struct kite_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
KITE_EXTERN int kite_send_vtextf(struct kite_session *s, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/*
 * Suspends like kite_send(). One frame exactly as given (kite_session_send_frame()):
 * fragments, control frames (fin set, at most 125 bytes; never counted against the
 * limits, so they do not wait), rsv bits. For raw routes mostly; a close frame starts
 * the close sequence. Returns as kite_send().
 */
KITE_EXTERN int kite_send_frame(struct kite_session *s, enum kite_opcode op, bool fin, uint8_t rsv,
                                const void *data, size_t len);

/*
 * Suspends until everything queued so far has been handed to the kernel (Ktor's
 * flush(); like Ktor's, it says nothing about delivery). KITE_OK; KITE_ERR_CLOSED if the
 * session ended first (at once if it had already ended); KITE_ERR_STATE; KITE_ERR_NOMEM.
 */
KITE_EXTERN int kite_flush(struct kite_session *s);

/*
 * Suspends until the close frame is written. Ktor's close(CloseReason): send a close
 * frame with `code` (KITE_CLOSE_NORMAL, ...; must pass kite_close_code_is_valid(), or 0
 * for a close frame without a code) and `reason` (NUL-terminated UTF-8, may be NULL, at
 * most 123 bytes: longer is cut at a character boundary), then flush. Data sends fail
 * from then on; messages the peer sends before its close reply are still received
 * (default mode), and the next receives return them, then KITE_ERR_CLOSED when the
 * handshake completes (or the error KITE_ERR_TIMEOUT when the peer does not answer
 * within timeout_ms). Returns KITE_OK (the close frame was queued, even if the session
 * ended during the flush), KITE_ERR_CLOSED (a close was already sent or received, or the
 * session ended), KITE_ERR_INVALID (bad code), KITE_ERR_NOMEM or KITE_ERR_STATE.
 */
KITE_EXTERN int kite_close(struct kite_session *s, unsigned code, const char *reason);

/*
 * Suspends until the session has ended, unless it already has; then returns how it
 * ended (Ktor's closeReason.await()): who closed, the code and reason, whether the
 * handshake completed, the error. Owned by kite, valid until the handler returns.
 * While it waits, messages that still arrive are dropped (in raw mode too: finish the
 * close sequence before waiting). NULL (KITE_ERR_STATE) when not called from the
 * handler of `s`.
 */
KITE_EXTERN const struct kite_close_info *kite_close_reason(struct kite_session *s);

/*
 * Drop the connection now without a close frame (Ktor's terminate()). Never suspends:
 * the next receive returns KITE_ERR_CLOSED (close info: 1006, initiator LOCAL). From the
 * handler of `s` it is safe even after the end (a no-op then); elsewhere it is
 * kite_session_terminate().
 */
KITE_EXTERN void kite_terminate(struct kite_session *s);

/* ---- blocking work (suspends) --------------------------------------------------------------- */

typedef void *kite_blocking_fn(void *arg);

/*
 * Suspends. Run fn(arg) on a worker thread of the loop's pool (kite_app_set_handler_threads)
 * and resume the handler with its return value in *result (if not NULL): the way to call
 * blocking code (files, DNS, databases, sleep) from a handler without stopping the loop.
 * fn runs on another thread: it must not call kite functions other than the "any
 * thread" ones, and what it shares with the loop thread needs the usual
 * synchronisation. The handler waits for fn even if its session ends meanwhile (a
 * running fn cannot be cancelled), so `arg` may point into the handler's stack. Returns
 * KITE_OK, KITE_ERR_LIMIT (1024 calls are already queued on this loop; fn not run; try
 * later), KITE_ERR_CLOSED (the pool stopped before fn started), KITE_ERR_NOMEM or -errno
 * (the pool could not start), KITE_ERR_INVALID (fn NULL) or KITE_ERR_STATE (not in a
 * handler).
 */
KITE_EXTERN int kite_handler_run_blocking(kite_blocking_fn *fn, void *arg, void **result);

/* ---- other information (never suspends) ------------------------------------------------------ */

/*
 * The upgrade request (Ktor's call.request: path, path parameters, query, headers; see
 * <kite/server.h>), while the handler runs for the first time (from its start to its
 * first suspension); NULL after that, for a client session, or outside the handler of
 * `s`. Copy what you need at the start. The peer's address is available at any time
 * while the session is open through kite_session_remote_addr() (Ktor's
 * call.request.origin). The session's options are kite_session_options() and
 * kite_session_set_options() (Ktor's per-session pingInterval, timeout, maxFrameSize,
 * masking), its limits kite_session_send_limits() and kite_session_set_send_limits().
 */
KITE_EXTERN const struct kite_request *kite_handler_request(struct kite_session *s);

/* The session whose handler is running on this thread now, or NULL (not in a handler). */
KITE_EXTERN struct kite_session *kite_handler_session(void);

/* Is `m` a text message equal to `ascii` compared ASCII case-insensitively (Ktor's
 * equals(..., ignoreCase = true) for ASCII)? */
KITE_EXTERN bool kite_msg_equals_ci(const struct kite_msg *m, const char *ascii);

/*
 * Decode a close frame's payload (Ktor's Frame.Close.readReason()): *code and a view of
 * the reason into the frame's data. An empty payload gives code 1005 (no status) and an
 * empty reason. Returns KITE_OK, KITE_ERR_PROTOCOL (a 1-byte payload, RFC 6455 §5.5.1),
 * or KITE_ERR_INVALID (not a close frame, or NULL arguments).
 */
KITE_EXTERN int kite_frame_read_reason(const struct kite_frame *f, uint16_t *code,
                                       struct kite_str *reason);

/* The name of an RFC 6455 close code as Ktor spells it ("NORMAL", "GOING_AWAY",
 * "PROTOCOL_ERROR", ... "TRY_AGAIN_LATER"; "NO_STATUS", "CLOSED_ABNORMALLY" for 1005 and
 * 1006), or NULL for other codes. Static storage. */
KITE_EXTERN const char *kite_close_code_name(unsigned code);

#ifdef __cplusplus
}
#endif
#endif

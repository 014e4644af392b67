/*
 * session — one WebSocket connection on a loop: codec + transport + timer + output
 * queue + callbacks (include/kite/session.h is the public side). Used by the server for
 * each upgrade and by the client for each connection, so nothing here knows which: the
 * owner hands over a connected transport and a struct kite__session_cfg.
 *
 * Life of a session:
 *   kite__session_new()     allocate, make the codec in the same block (nothing
 *                           registered yet)
 *   kite__session_start()   register the fd, call on_open, feed the bytes that came
 *                           with the handshake
 *   ... reads feed the codec; sends append to the codec's output; one before-sleep
 *   flush per iteration writes everything with one writev (a large message with
 *   nothing queued is written during its send instead; only its tail is queued) ...
 *   the codec fires on_close (close handshake done, error, timeout, EOF)
 *   -> the rest of the output is written, TCP is half-closed (server) and we wait up
 *      to KITE__SESSION_LINGER_MS for the peer's EOF, so the close frame is not lost
 *      to a reset; then the fd is closed, cfg->on_destroy runs, and the memory is
 *      freed at the end of the loop iteration.
 *
 * Reentrancy: `depth` counts the dispatches in progress (codec calls and user
 * callbacks). Actions that would tear the session down (terminate, the final close)
 * are only flagged while depth > 0 and carried out by finish() when the outermost
 * dispatch returns.
 *
 * Hooks for the sequential-handler (coroutine) layer, which runs on this engine
 * unchanged: kite__session_pause()/resume() hold back message delivery (input left
 * in the loop's shared buffer is copied into the session's stash and fed again on
 * resume); kite__session_buffered() and the send limits tell a suspended send whether
 * to wait; kite__session_on_flushed() resumes a flush() once everything is written.
 */
#ifndef KITE_SESSION_SESSION_H
#define KITE_SESSION_SESSION_H

#include <stdatomic.h>

#include "kite/session.h"
#include "loop/loop.h"
#include "net/transport.h"
#include "util/util.h"

/* How long a closed session waits for the peer's EOF before closing the fd anyway. */
#define KITE__SESSION_LINGER_MS 2000

/*
 * What a group of sessions shares (one server route, one client): callbacks, options
 * and the owner's hooks. Sessions point at it, so it must outlive them.
 */
struct kite__session_cfg {
    struct kite_ws_callbacks cb;         /* copied from the user */
    void *ud;                            /* each session's initial user data */
    /* Pointed to by each session's codec for the session's life (shared_options), so
     * it must outlive the sessions and never change while they use it: publish a new
     * one for later sessions instead (server.c: struct kite__ws_block). */
    const struct kite_ws_options *ws;
    const struct kite_send_limits *send; /* read on every send (unless overridden) */
    const struct kite_allocator *alloc;  /* NULL = libc */
    uint8_t mode;                        /* enum kite_mode */
    uint8_t role;                        /* enum kite_role */
    /* The session is going away: its fd is closed, on_close has run; the memory is
     * freed at the end of this iteration. The owner unlinks it here. May be NULL. */
    void (*on_destroy)(struct kite_session *s, void *owner);
    void *owner;
    /* The session's deferred free is done with this cfg (it reads nothing of it any
     * more): an owner that made the cfg for this one session (a client connection) may
     * free it here. Runs at the end of the iteration, after on_destroy. May be NULL. */
    void (*on_free)(void *owner);
};

typedef void kite__session_flushed_cb(struct kite_session *s, void *arg);

/* Rarely needed per-session state, allocated on first use. */
struct kite__session_ext {
    struct kite_buf stash;        /* input held back while paused */
    struct kite_buf pre;          /* bytes to write before the codec's output */
    struct kite_send_limits send; /* per-session limits when has_send */
    bool has_send;
    int write_err;                     /* why a direct write failed (session.c send_large) */
    char *subprotocol;                 /* owned copy, or NULL */
    kite__session_flushed_cb *flushed; /* one-shot: the output queue became empty */
    void *flushed_arg;
};

/* The session's wheel timer, allocated the first time it needs one (the codec has a
 * deadline: pings, a close reply; or the linger after the close), so the many idle
 * sessions that have none (pings are off by default) do not carry it. */
struct kite__session_timer {
    struct kite__timer t;
    uint64_t key;           /* the codec's timer state update_timer last saw */
    struct kite_session *s; /* the owner */
};

/*
 * 104 bytes on 64-bit targets, in one block after the codec's 128 (see session.c):
 * an idle connection is this 232-byte block (a 240-byte glibc chunk). The codec is
 * found by its fixed offset and keeps the user data (its ud), so neither is stored
 * here. What only some
 * sessions need is in `ext` and `tm`.
 */
struct kite_session {
    struct kite__transport tp; /* owns the fd */
    /* Once the session is torn down (destroy() in session.c), the watcher is closed and
     * its flush unqueued for good (the loop never touches it again), so the deferred
     * free reuses its bytes. */
    union {
        struct kite__io io; /* fd watcher, and the before-sleep write (and stash feeding) */
        struct kite_loop_task free_task;          /* dead: the deferred free */
        const struct kite_allocator *shell_alloc; /* freed inside, kept by a reference */
    };
    struct kite_loop *loop;
    const struct kite__session_cfg *cfg;
    struct kite__session_ext *ext;    /* NULL until needed */
    struct kite__session_timer *tm;   /* NULL until a deadline is first needed */
    struct kite_session *prev, *next; /* the owner's list */
    uint16_t flags;                   /* S_* in session.c */
    uint16_t depth;                   /* dispatches in progress */
    /* References: 1 held by the loop until the deferred free, plus one per
     * kite_session_ref() and per post in flight. Any thread. */
    atomic_uint refs;
};

/*
 * Make a session on `loop` over a connected transport (copied: the session now owns
 * the fd). Nothing is registered with the loop yet. Returns KITE_OK and *out, or
 * KITE_ERR_NOMEM / KITE_ERR_INVALID (bad options) with the transport still the
 * caller's.
 */
int kite__session_new(struct kite_loop *loop, const struct kite__session_cfg *cfg,
                      const struct kite__transport *tp, struct kite_session **out);
/* The same with the negotiated extensions (may be NULL): on KITE_OK the chain belongs
 * to the session's codec; on failure it is still the caller's. */
int kite__session_new_ext(struct kite_loop *loop, const struct kite__session_cfg *cfg,
                          const struct kite__transport *tp, struct kite_ext_chain *ext,
                          struct kite_session **out);

/*
 * A session's memory reserved ahead of the session, so that its fd watcher (s->io) is
 * in place from the start: an HTTP connection watches its fd through the watcher of
 * the session it may become, and kite__session_new_in() then makes the session around
 * it without telling epoll anything (the registration's data pointer stays valid; an
 * EPOLL_CTL_MOD per upgraded connection saved). Until then only s->io is the caller's
 * (kite__io_init, start, flush, stop as for any watcher) and the block holds `owner`
 * for kite__session_reserved_owner(). NULL when out of memory. Free it with
 * kite__session_unreserve() unless a session was made in it (stop the watcher first).
 */
struct kite_session *kite__session_reserve(const struct kite_allocator *a, void *owner);
void *kite__session_reserved_owner(const struct kite_session *s);
void kite__session_unreserve(struct kite_session *s, const struct kite_allocator *a);
/*
 * kite__session_new_ext() in a reserved block (allocated with cfg->alloc) whose
 * watcher watches the transport's fd: its registration, interest and any queued flush
 * stay as they are, only its callback becomes the session's (kite__session_start()
 * then finds it registered). On failure the block is still reserved and the chain and
 * the transport still the caller's. KITE_OK, KITE_ERR_NOMEM or KITE_ERR_INVALID.
 */
int kite__session_new_in(struct kite_session *s, struct kite_loop *loop,
                         const struct kite__session_cfg *cfg, const struct kite__transport *tp,
                         struct kite_ext_chain *ext);

/* The session's codec (at the start of the session's block). Valid until the deferred
 * free; the session's callbacks and the layers above reach it through this. */
struct kite_codec *kite__session_codec(const struct kite_session *s);

/* Free a session that was never started (the transport is NOT closed: the caller
 * still owns it after a failed start-up). */
void kite__session_discard(struct kite_session *s);

/* Bytes to write before any frame (the tail of a 101 response the kernel did not take).
 * The buffer's memory moves into the session; *b is emptied. KITE_OK or NOMEM. */
int kite__session_set_prefix(struct kite_session *s, struct kite_buf *b);

/* The negotiated subprotocol (copied). KITE_OK or KITE_ERR_NOMEM. */
int kite__session_set_subprotocol(struct kite_session *s, const char *p, size_t len);

/*
 * Register with the loop for KITE__IO_READ (no system call when s->io is registered so
 * already: made by kite__session_new_in, or moved there by kite__io_transfer), call
 * on_open(req), then feed in[0..len) (bytes received after the handshake; modified in
 * place: unmasked). The session may be closed (and its free deferred) when this
 * returns; the caller must not touch it afterwards except through its own list hooks.
 * Returns KITE_OK, or the -errno of registering the fd (the session is then already
 * torn down, with on_close reported).
 */
int kite__session_start(struct kite_session *s, const struct kite_request *req, uint8_t *in,
                        size_t len);

/* Hold back message delivery: from inside on_message/on_frame, the codec stops after
 * the current message; reading from the socket stops. Idempotent. Timers keep running,
 * but a paused session reads nothing, so it sees neither pongs nor the peer's close
 * reply: do not stay paused longer than timeout_ms after closing or while pinging. */
void kite__session_pause(struct kite_session *s);
/* Deliver again: held-back input is fed before the loop next sleeps, then reading
 * resumes. Idempotent. */
void kite__session_resume(struct kite_session *s);
bool kite__session_paused(const struct kite_session *s);

/* Bytes queued for writing (the 101 prefix included). */
size_t kite__session_buffered(const struct kite_session *s);

/* Call cb(s, arg) once, when the output queue is next found empty after a write (or at
 * once if it is empty now and the session is open). Replaces a previous hook; cb NULL
 * clears it. Fires before on_close too (with the queue possibly not empty) so a waiter
 * is never stranded. KITE_OK or KITE_ERR_NOMEM. */
int kite__session_on_flushed(struct kite_session *s, kite__session_flushed_cb *cb, void *arg);

#endif

/*
 * Sequential handlers: one coroutine per session, driven by the session's callbacks
 * (handler.h, include/kite/handler.h).
 *
 * Every wait is the same shape: set h->wait, yield, and on resumption re-check the
 * condition, so a wake-up is only a hint and a lost or early one cannot strand a
 * handler. Resumptions always go through run(), which afterwards pauses the session
 * when the handler waits for anything but input and resumes it when it waits for input.
 *
 * Messages reach a receiving handler in one of two ways. Delivered directly, a message
 * resumes the handler at once: two context switches per message. Queued (when the
 * session layer reports the end of each read, KITE_HAVE_ON_INPUT_DONE), the views of
 * all the messages of one read that lie in the loop's shared buffer are queued, and the
 * handler is resumed once, at the end of the read, to take them all: two switches per
 * read. Either way nothing is copied unless it must be (see hold() and pin()).
 */
#include <stdio.h>

#include "coro/handler.h"
#include "server/server.h"
#include "session/session.h"

#define H_MAGIC 0x6b68646cu /* "khdl": tells a handler's coroutine data from others' */

#ifdef KITE_HAVE_ON_INPUT_DONE
#define BATCH 1
#define QCAP 16u /* messages queued per handler; a power of two */
#else
#define BATCH 0
#define QCAP 1u
#endif

/* What a handler is suspended in (W_RUN: not suspended). */
enum wait {
    W_RUN = 0,
    W_RECV,  /* kite_receive / kite_receive_frame: the only wait that takes input */
    W_DRAIN, /* a send above the high-water mark: on_drain */
    W_FLUSH, /* kite_flush / kite_close: the flushed hook */
    W_END,   /* kite_close_reason: on_close; input is dropped meanwhile */
    W_JOB,   /* kite_handler_run_blocking: the job's completion */
};

enum {
    H_ENDED = 1u << 0,  /* on_close was seen; h->ci is set; the session is a shell */
    H_DONE = 1u << 1,   /* the handler function returned; its coroutine is freed */
    H_RAW = 1u << 2,    /* raw session: frames, not messages */
    H_GOT = 1u << 3,    /* a receive was handed its message directly */
    H_IN_RX = 1u << 4,  /* the held message lies in the loop's shared receive buffer */
    H_PAUSED = 1u << 5, /* we paused the session (kite__session_pause) */
};

/* A message delivered to the session but not yet to the handler. */
struct queued {
    const uint8_t *data;
    uint32_t len;
    uint8_t op;
    uint8_t rsv;
    bool fin;
    bool in_rx; /* data lies in the shared receive buffer (else in h->copy, or empty) */
};

struct handler {
    uint32_t magic;
    uint8_t wait;  /* enum wait */
    uint8_t flags; /* H_* */
    uint8_t qhead, qlen; /* the queue: q[qhead], q[qhead+1], ... (mod QCAP) */
    struct kite_session *s; /* referenced until the handler is freed */
    struct kite__coro *co;  /* NULL once done */
    struct kite__hloop *hl;             /* NULL once done: it may be freed after that */
    const struct kite_allocator *alloc; /* the loop's */
    const struct kite_handler_spec *spec;
    const struct kite_request *req; /* during the first run only */
    void *want;                     /* the kite_msg / kite_frame a pending receive fills */
    uint8_t *pinned;                /* a receive buffer kept for the held messages */
    struct kite_buf copy;           /* the held message when it came from elsewhere */
    struct kite_close_info ci;      /* how the session ended (H_ENDED) */
    struct queued q[QCAP];
};

static bool run(struct handler *h);

/* ---- finding the running handler -------------------------------------------------------- */

/* The handler whose coroutine runs on this thread now. Handlers are only ever resumed
 * by run(), which sets this around the resume (and restores the outer one, as handlers
 * may resume others from inside their calls), so it costs one thread-local read where
 * asking the coroutine layer would cost two calls on every receive and send. */
#if defined(__GNUC__)
static _Thread_local struct handler *tls_running __attribute__((tls_model("initial-exec")));
#else
static _Thread_local struct handler *tls_running;
#endif

static struct handler *running(void)
{
    return tls_running;
}

/* The handler of `s` if it is the one running; NULL otherwise (KITE_ERR_STATE). */
static struct handler *self(const struct kite_session *s)
{
    struct handler *h = running();
    return h && h->s == s ? h : NULL;
}

static bool ended(const struct handler *h)
{
    return (h->flags & H_ENDED) != 0;
}

/* What a receive returns once the session has ended: onClose or onError. */
static int end_code(const struct handler *h)
{
    return h->ci.error ? h->ci.error : KITE_ERR_CLOSED;
}

static void suspend(struct handler *h, enum wait w)
{
    h->wait = (uint8_t)w;
    kite__coro_yield();
    h->wait = W_RUN;
}

/* ---- the held messages --------------------------------------------------------------------- */

/* Give the pinned receive buffer back and forget the held message: called when the
 * handler asks for the next message and none is queued, or returns. */
static void release_held(struct handler *h)
{
    h->flags &= (uint8_t)~H_IN_RX;
    if (!h->pinned && !h->copy.len)
        return; /* the common case: a view, nothing to give back */
    struct kite__hloop *hl = h->hl;
    if (h->pinned) {
        if (hl->nspare < KITE__HLOOP_SPARES)
            hl->spare[hl->nspare++] = h->pinned;
        else
            kite__free(hl->alloc, h->pinned);
        h->pinned = NULL;
        hl->pinned--;
    }
    if (h->copy.cap > 1024)
        kite__buf_free(&h->copy, hl->alloc); /* keep idle handlers small */
    h->copy.off = h->copy.len = 0;
}

/* Does [p, p+len) lie in the loop's shared receive buffer? */
static bool in_rxbuf(struct kite_loop *loop, const uint8_t *p, size_t len)
{
    size_t cap;
    uintptr_t b = (uintptr_t)kite__loop_rxbuf(loop, &cap), a = (uintptr_t)p;
    return a >= b && a - b < cap && len <= cap - (a - b);
}

/* Does the handler hold views into the shared buffer (its current message, or queued
 * ones) that the loop would overwrite? */
static bool holds_rx(const struct handler *h)
{
    if (h->flags & H_IN_RX)
        return true;
    for (unsigned i = 0; i < h->qlen; i++)
        if (h->q[(h->qhead + i) & (QCAP - 1)].in_rx)
            return true;
    return false;
}

/*
 * Swap the loop's receive buffer for another one of the same size and allocator, and
 * return the old one. Views into the old buffer stay valid; the loop reads into the new
 * one from now on. (A candidate for src/loop: kite__loop_swap_rxbuf.)
 */
static uint8_t *swap_rxbuf(struct kite_loop *loop, uint8_t *fresh)
{
    uint8_t *old = loop->rxbuf;
    loop->rxbuf = fresh;
    return old;
}

/*
 * The handler suspended (not in receive) while messages it holds or has queued still
 * lie in the shared receive buffer, which the loop is about to reuse: keep that buffer
 * for the handler and give the loop a spare, so the messages stay where the handler's
 * pointers say, without a copy. Called before the callback that delivered them
 * returns; released by the receive that finds nothing queued.
 */
static void pin(struct handler *h)
{
    struct kite__hloop *hl = h->hl;
    uint8_t *fresh = hl->nspare ? hl->spare[--hl->nspare]
                                : kite__malloc(hl->alloc, KITE__LOOP_RXBUF_SIZE);
    if (!fresh) {
        /* The views would go stale: fail the session rather than hand out wrong bytes.
         * (A session that has ended cannot be closed; out of memory then, the bytes its
         * handler still reads may be overwritten.) */
        if (!ended(h))
            kite_session_close(h->s, KITE_CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    h->pinned = swap_rxbuf(hl->loop, fresh);
    hl->pinned++;
}

/* After a callback that delivered input resumed the handler: unless it is back in
 * receive with nothing queued, keep what it holds of the shared buffer. */
static void keep_views(struct handler *h)
{
    if ((h->flags & H_DONE) || h->pinned || (h->wait == W_RECV && h->qlen == 0))
        return;
    if (holds_rx(h))
        pin(h);
}

/*
 * Where the handler reads a message delivered directly. Bytes in the loop's shared
 * buffer are used in place (pinned later only if the handler suspends while holding
 * them). Bytes anywhere else (the codec's reassembly buffer, the session's stash of
 * held-back input) are released by their owners as soon as the callback returns, and a
 * view of them could not be kept without moving it, so they are copied now. NULL when
 * out of memory.
 */
static const uint8_t *hold(struct handler *h, const uint8_t *data, size_t len, bool *rx)
{
    *rx = false;
    if (len == 0)
        return (const uint8_t *)"";
    if (in_rxbuf(h->hl->loop, data, len)) {
        *rx = true;
        return data;
    }
    if (kite__buf_append(&h->copy, h->hl->alloc, data, len) != KITE_OK)
        return NULL;
    return kite__buf_head(&h->copy);
}

static void push(struct handler *h, const struct kite_frame *in, const uint8_t *data, bool rx)
{
    struct queued *e = &h->q[(h->qhead + h->qlen) & (QCAP - 1)];
    *e = (struct queued){.data = data, .len = (uint32_t)in->len, .op = (uint8_t)in->opcode,
                         .rsv = in->rsv, .fin = in->fin, .in_rx = rx};
    h->qlen++;
}

/* Hand the oldest queued message to the receive that asked (into *out). */
static void pop(struct handler *h, void *out)
{
    struct queued *e = &h->q[h->qhead];
    h->qhead = (uint8_t)((h->qhead + 1) & (QCAP - 1));
    h->qlen--;
    if (e->in_rx)
        h->flags |= H_IN_RX;
    else
        h->flags &= (uint8_t)~H_IN_RX;
    if (h->flags & H_RAW) {
        struct kite_frame *f = out;
        *f = (struct kite_frame){.opcode = (enum kite_opcode)e->op, .fin = e->fin,
                                 .rsv = e->rsv, .data = e->data, .len = e->len};
    } else {
        struct kite_msg *m = out;
        *m = (struct kite_msg){.type = (enum kite_opcode)e->op, .data = e->data, .len = e->len};
    }
}

/* ---- life and death ------------------------------------------------------------------------- */

static void handler_free(struct handler *h)
{
    struct kite_session *s = h->s;
    kite__buf_free(&h->copy, h->alloc);
    h->magic = 0;
    kite__free(h->alloc, h);
    kite_session_unref(s);
}

static void handler_main(void *arg)
{
    struct handler *h = arg;
    h->spec->fn(h->s, h->spec->ud);
}

/*
 * The handler function returned. Close the way Ktor does: a default session that has
 * not sent a close frame sends close 1000 and finishes the handshake on its own; a raw
 * one that has not is terminated (Ktor: "the connection will be terminated immediately").
 * Input is let through again so the peer's close reply is read (and other messages
 * dropped, queued ones included). Returns false when h was freed.
 */
static bool finished(struct handler *h)
{
    struct kite__hloop *hl = h->hl;
    h->flags |= H_DONE;
    h->req = NULL;
    h->qlen = 0;
    release_held(h);
    kite__coro_free(h->co);
    h->co = NULL;
    h->hl = NULL;
    kite__hloop_unuse(hl);
    if (ended(h)) {
        handler_free(h);
        return false;
    }
    struct kite_session *s = h->s;
    if (!kite_codec_close_sent(kite__session_codec(s))) {
        if (h->flags & H_RAW)
            kite_session_terminate(s);
        else
            kite_session_close(s, KITE_CLOSE_NORMAL, NULL);
    }
    kite__session_resume(s);
    return true;
}

/* After a resume returned: the handler finished, or the session's pause state follows
 * what it waits for. Returns false when h was freed. */
static bool settle_slow(struct handler *h, int rc)
{
    if (rc == KITE__CORO_FINISHED)
        return finished(h);
    h->req = NULL; /* the request lives only as long as on_open */
    if (ended(h))
        return true;
    bool input = h->wait == W_RECV || h->wait == W_END;
    if (input && (h->flags & H_PAUSED)) {
        h->flags &= (uint8_t)~H_PAUSED;
        kite__session_resume(h->s);
    } else if (!input && !(h->flags & H_PAUSED)) {
        h->flags |= H_PAUSED;
        kite__session_pause(h->s);
    }
    return true;
}

/* Resume the handler if it can be (it may be running: a wake-up from its own calls is
 * dropped, and it re-checks what it waits for anyway). Returns false when h was freed
 * (it finished after its session had ended). The common case, back in receive with
 * input flowing, costs a few compares after the switch. */
static bool run(struct handler *h)
{
    struct handler *outer = tls_running;
    tls_running = h;
    h->hl->resumes++;
    int rc = kite__coro_resume(h->co);
    tls_running = outer;
    if (KITE_LIKELY(rc == KITE_OK && h->wait == W_RECV &&
                    !(h->flags & (H_PAUSED | H_ENDED)) && !h->req))
        return true;
    return rc >= 0 ? settle_slow(h, rc) : true;
}

/* ---- session callbacks ---------------------------------------------------------------------- */

static struct handler *handler_of(void *ud)
{
    struct handler *h = ud;
    return h && h->magic == H_MAGIC ? h : NULL;
}

static int start(struct kite_session *s, const struct kite_handler_spec *spec, struct handler **out)
{
    struct kite__hloop *hl = kite__hloop_get(kite_session_loop(s));
    if (!hl)
        return KITE_ERR_NOMEM;
    kite__hloop_use(hl); /* from here a failure must unuse it: it may be brand new */
    struct handler *h = kite__calloc(hl->alloc, sizeof(*h));
    int rc = h ? kite__coro_new(hl->sched, handler_main, h, spec->stack_size, &h->co)
               : KITE_ERR_NOMEM;
    if (rc != KITE_OK) {
        kite__free(hl->alloc, h);
        kite__hloop_unuse(hl);
        return rc;
    }
    h->magic = H_MAGIC;
    h->s = s;
    h->hl = hl;
    h->alloc = hl->alloc;
    h->spec = spec;
    if (s->cfg->mode == KITE_MODE_RAW)
        h->flags |= H_RAW;
    kite__coro_set_data(h->co, h);
    kite_session_ref(s); /* the handler may outlive the session (a blocking call) */
    kite_session_set_user_data(s, h);
    *out = h;
    return KITE_OK;
}

/* Ktor's onConnect: the handler starts at once and runs to its first suspension. */
static void h_open(struct kite_session *s, const struct kite_request *req, void *ud)
{
    const struct kite_handler_spec *spec = ud;
    struct handler *h = NULL;
    int rc = spec && spec->fn ? start(s, spec, &h) : KITE_ERR_INVALID;
    if (rc != KITE_OK) {
        kite_session_set_user_data(s, NULL);
        /* RFC 6455 §7.4.1: 1013 for a temporary condition (no stack to be had now),
         * 1011 for anything else. */
        if (rc == KITE_ERR_NOMEM)
            kite_session_close(s, KITE_CLOSE_TRY_AGAIN_LATER, "server busy");
        else
            kite_session_close(s, KITE_CLOSE_INTERNAL_ERROR, "no handler");
        return;
    }
    h->req = req;
    run(h);
}

/* Resume a receiving handler so that it takes what is queued (or was handed), then keep
 * what it still holds. Returns false when h was freed: outside the codec's callbacks
 * (at the end of a read) the handler's own calls can end its session at once, e.g. the
 * close reply that completes a raw close sequence. */
static bool drain(struct handler *h)
{
    if (!run(h))
        return false;
    keep_views(h);
    return true;
}

/*
 * The handler stopped receiving while draining the queue, so a message that lies
 * outside the shared buffer and arrived behind the queued ones cannot be handed over
 * now: keep a copy at the end of the queue (the session is paused, so it is the last).
 */
static void queue_copy(struct kite_session *s, struct handler *h, const struct kite_frame *in)
{
    if (h->copy.len != 0 || h->qlen == QCAP ||
        kite__buf_append(&h->copy, h->hl->alloc, in->data, in->len) != KITE_OK) {
        kite_session_close(s, KITE_CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    push(h, in, kite__buf_head(&h->copy), false);
}

/* A message (default) or frame (raw) for the handler, which must be receiving. */
static void deliver(struct kite_session *s, struct handler *h, const struct kite_frame *in)
{
    if (h->wait != W_RECV) {
        /* W_END and finished handlers drop input. Anything else cannot happen while the
         * session is paused; if it does, failing loudly beats losing a message. */
        if (h->wait != W_END && !(h->flags & H_DONE))
            kite_session_close(s, KITE_CLOSE_INTERNAL_ERROR, "handler not receiving");
        return;
    }
    if (BATCH && in->len && in_rxbuf(h->hl->loop, in->data, in->len)) {
        push(h, in, in->data, true); /* taken at the end of the read (h_input_done) */
        if (h->qlen == QCAP)
            drain(h);
        return;
    }
    if (h->qlen) { /* keep the order: what is queued goes first */
        if (!drain(h) || (h->flags & H_DONE))
            return;
        if (h->wait != W_RECV || h->qlen) {
            if (in->len)
                queue_copy(s, h, in);
            else
                push(h, in, (const uint8_t *)"", false);
            return;
        }
    }
    bool rx;
    const uint8_t *d = hold(h, in->data, in->len, &rx);
    if (!d) {
        kite_session_close(s, KITE_CLOSE_INTERNAL_ERROR, "out of memory");
        return;
    }
    if (h->flags & H_RAW) {
        struct kite_frame *f = h->want;
        *f = *in;
        f->data = d;
    } else {
        struct kite_msg *m = h->want;
        *m = (struct kite_msg){.type = in->opcode, .data = d, .len = in->len};
    }
    if (rx)
        h->flags |= H_IN_RX;
    h->flags |= H_GOT;
    drain(h);
}

static void h_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    struct handler *h = ud;
    if (!h || h->magic != H_MAGIC)
        return;
    /* The common case inline: a receive waits, the bytes are in the shared buffer. */
    if (KITE_LIKELY(h->wait == W_RECV && m->len && in_rxbuf(h->hl->loop, m->data, m->len))) {
        if (BATCH && h->qlen + 1u < QCAP) {
            push(h, &(struct kite_frame){.opcode = m->type, .fin = true, .len = m->len},
                 m->data, true);
            return;
        }
        if (!BATCH) {
            struct kite_msg *out = h->want;
            *out = *m;
            h->flags |= H_GOT | H_IN_RX;
            if (run(h) && KITE_UNLIKELY(h->wait != W_RECV))
                keep_views(h);
            return;
        }
    }
    struct kite_frame f = {.opcode = m->type, .fin = true, .data = m->data, .len = m->len};
    deliver(s, h, &f);
}

static void h_frame(struct kite_session *s, const struct kite_frame *f, void *ud)
{
    struct handler *h = handler_of(ud);
    if (h)
        deliver(s, h, f);
}

#if BATCH
/* The end of a read: hand the handler everything queued during it, while the shared
 * buffer still holds it. */
static void h_input_done(struct kite_session *s, void *ud)
{
    struct handler *h = handler_of(ud);
    KITE_UNUSED(s);
    if (h && h->qlen && h->wait == W_RECV)
        drain(h);
}
#endif

static void h_drain(struct kite_session *s, void *ud)
{
    struct handler *h = handler_of(ud);
    KITE_UNUSED(s);
    if (h && h->wait == W_DRAIN)
        run(h);
}

static void h_flushed(struct kite_session *s, void *arg)
{
    struct handler *h = arg;
    KITE_UNUSED(s);
    if (h->wait == W_FLUSH)
        run(h);
}

/* Ktor: `incoming` closes (onClose) or fails (onError); closeReason is set. A handler
 * in a blocking call learns it when the call returns. Messages still queued are
 * received first. */
static void h_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    struct handler *h = handler_of(ud);
    KITE_UNUSED(s);
    if (!h)
        return;
    h->ci = *ci;
    h->flags |= H_ENDED;
    if (h->flags & H_DONE) {
        handler_free(h);
        return;
    }
    if (h->wait != W_RUN && h->wait != W_JOB && run(h))
        keep_views(h);
}

static const struct kite_ws_callbacks handler_callbacks = {
    .on_open = h_open,
    .on_message = h_message,
    .on_frame = h_frame,
    .on_drain = h_drain,
    .on_close = h_close,
#if BATCH
    .on_input_done = h_input_done,
#endif
};

const struct kite_ws_callbacks *kite_handler_callbacks(void)
{
    return &handler_callbacks;
}

bool kite__route_handler_spec(struct kite_route *r, struct kite_handler_spec **spec)
{
    if (!r || r->kind != KITE__ROUTE_WS || r->scfg.cb.on_open != h_open || !r->scfg.ud)
        return false;
    *spec = r->scfg.ud;
    return true;
}

/* ---- receiving -------------------------------------------------------------------------------- */

static int receive(struct kite_session *s, void *out, bool raw)
{
    struct handler *h = self(s);
    if (!h)
        return KITE_ERR_STATE;
    if (!out || raw != ((h->flags & H_RAW) != 0))
        return KITE_ERR_INVALID;
    if (h->qlen) {
        pop(h, out);
        return KITE_OK;
    }
    release_held(h);
    h->want = out;
    h->flags &= (uint8_t)~H_GOT;
    while (!(h->flags & H_GOT) && !h->qlen && !ended(h))
        suspend(h, W_RECV);
    h->want = NULL;
    if (h->flags & H_GOT) {
        h->flags &= (uint8_t)~H_GOT;
        return KITE_OK;
    }
    if (h->qlen) {
        pop(h, out);
        return KITE_OK;
    }
    return end_code(h);
}

int kite_receive(struct kite_session *s, struct kite_msg *m)
{
    struct handler *h = tls_running;
    /* The common cases inline: our own default session, and a message queued, or
     * nothing held but a view. */
    if (KITE_LIKELY(h && h->s == s && m && !(h->flags & H_RAW))) {
        if (h->qlen) {
            pop(h, m);
            return KITE_OK;
        }
        if (KITE_LIKELY(!ended(h) && !h->pinned && !h->copy.len)) {
            h->flags &= (uint8_t)~(H_IN_RX | H_GOT);
            h->want = m;
            do
                suspend(h, W_RECV);
            while (!(h->flags & H_GOT) && !h->qlen && !ended(h));
            h->want = NULL;
            if (h->flags & H_GOT) {
                h->flags &= (uint8_t)~H_GOT;
                return KITE_OK;
            }
            if (KITE_LIKELY(h->qlen)) {
                pop(h, m);
                return KITE_OK;
            }
            return end_code(h);
        }
    }
    return receive(s, m, false);
}

int kite_receive_frame(struct kite_session *s, struct kite_frame *f)
{
    return receive(s, f, true);
}

/* ---- sending ------------------------------------------------------------------------------------ */

/* After a send returned QUEUED: wait until the queue is below the high-water mark. */
static int wait_drain(struct handler *h)
{
    struct kite_send_limits l;
    for (;;) {
        if (ended(h))
            return KITE_ERR_CLOSED;
        kite_session_send_limits(h->s, &l);
        if (kite__session_buffered(h->s) < l.high_water)
            return KITE_OK;
        suspend(h, W_DRAIN);
    }
}

/* A session send's status as a handler send's result, waiting for the drain if the
 * queue is over the high-water mark. */
static int send_result(struct handler *h, int rc)
{
    switch (rc) {
    case KITE_SEND_OK:
        return KITE_OK;
    case KITE_SEND_QUEUED:
        return wait_drain(h);
    case KITE_SEND_DROPPED:
        return KITE_ERR_LIMIT;
    case KITE_SEND_CLOSED:
        return KITE_ERR_CLOSED;
    default:
        return rc;
    }
}

static int send_common(struct kite_session *s, enum kite_opcode op, bool fin, uint8_t rsv,
                       const void *data, size_t len, bool whole)
{
    struct handler *h = self(s);
    if (!h)
        return KITE_ERR_STATE;
    if (ended(h))
        return KITE_ERR_CLOSED;
    return send_result(h, whole ? kite_session_send(s, op, data, len, NULL)
                                : kite_session_send_frame(s, op, fin, rsv, data, len, NULL));
}

int kite_send(struct kite_session *s, enum kite_opcode type, const void *data, size_t len)
{
    struct handler *h = self(s);
    if (!h)
        return KITE_ERR_STATE;
    if (ended(h))
        return KITE_ERR_CLOSED;
    int rc = kite_session_send(s, type, data, len, NULL); /* it checks the opcode */
    return KITE_LIKELY(rc == KITE_SEND_OK) ? KITE_OK : send_result(h, rc);
}

int kite_send_text(struct kite_session *s, const char *text, size_t len)
{
    return send_common(s, KITE_OP_TEXT, true, 0, text, len, true);
}

int kite_send_binary(struct kite_session *s, const void *data, size_t len)
{
    return send_common(s, KITE_OP_BINARY, true, 0, data, len, true);
}

int kite_send_str(struct kite_session *s, const char *text)
{
    if (!text)
        return self(s) ? KITE_ERR_INVALID : KITE_ERR_STATE;
    return send_common(s, KITE_OP_TEXT, true, 0, text, strlen(text), true);
}

int kite_send_vtextf(struct kite_session *s, const char *fmt, va_list ap)
{
    struct handler *h = self(s);
    if (!h)
        return KITE_ERR_STATE;
    if (!fmt)
        return KITE_ERR_INVALID;
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return KITE_ERR_INVALID;
    if ((size_t)n < sizeof(small))
        return send_common(s, KITE_OP_TEXT, true, 0, small, (size_t)n, true);
    char *big = kite__malloc(h->alloc, (size_t)n + 1);
    if (!big)
        return KITE_ERR_NOMEM;
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    int rc = send_common(s, KITE_OP_TEXT, true, 0, big, (size_t)n, true);
    kite__free(h->alloc, big);
    return rc;
}

int kite_send_textf(struct kite_session *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = kite_send_vtextf(s, fmt, ap);
    va_end(ap);
    return rc;
}

int kite_send_frame(struct kite_session *s, enum kite_opcode op, bool fin, uint8_t rsv,
                    const void *data, size_t len)
{
    return send_common(s, op, fin, rsv, data, len, false);
}

/* ---- flush, close, terminate ----------------------------------------------------------------------- */

static int flush(struct handler *h)
{
    while (!ended(h) && kite__session_buffered(h->s) > 0) {
        int rc = kite__session_on_flushed(h->s, h_flushed, h);
        if (rc != KITE_OK)
            return rc;
        /* The hook fires at once on a session that is closing (our on_close follows,
         * and resumes us); otherwise it fires after the write that empties the queue. */
        suspend(h, W_FLUSH);
    }
    return ended(h) ? KITE_ERR_CLOSED : KITE_OK;
}

int kite_flush(struct kite_session *s)
{
    struct handler *h = self(s);
    return h ? flush(h) : KITE_ERR_STATE;
}

int kite_close(struct kite_session *s, unsigned code, const char *reason)
{
    struct handler *h = self(s);
    if (!h)
        return KITE_ERR_STATE;
    if (ended(h))
        return KITE_ERR_CLOSED;
    int rc = kite_session_close(s, code, reason);
    if (rc != KITE_OK)
        return rc;
    rc = flush(h);
    return rc == KITE_ERR_NOMEM ? rc : KITE_OK; /* Ktor's close swallows the rest */
}

const struct kite_close_info *kite_close_reason(struct kite_session *s)
{
    struct handler *h = self(s);
    if (!h)
        return NULL;
    while (!ended(h))
        suspend(h, W_END);
    return &h->ci;
}

void kite_terminate(struct kite_session *s)
{
    struct handler *h = self(s);
    if (h && ended(h))
        return;
    kite_session_terminate(s);
}

/* ---- blocking calls ---------------------------------------------------------------------------- */

/* A blocking call in flight: on the waiting handler's stack, which cannot go away
 * before the completion has run (the handler waits for it, whatever happens). */
struct job {
    struct kite__work work; /* first: the pool hands this pointer back */
    struct handler *h;
    bool done;
};

/* On the loop thread, via the post in handler_reg.c. */
static void job_done(struct kite__work *w)
{
    struct job *j = (struct job *)(void *)w;
    struct kite_loop *loop = w->owner;
    j->done = true;
    if (j->h->wait == W_JOB)
        run(j->h); /* j and the handler may be gone after this */
    kite__loop_unref(loop);
}

int kite_handler_run_blocking(kite_blocking_fn *fn, void *arg, void **result)
{
    struct handler *h = running();
    if (!h)
        return KITE_ERR_STATE;
    if (!fn)
        return KITE_ERR_INVALID;
    struct kite__workers *w;
    int rc = kite__hloop_workers(h->hl, &w);
    if (rc != KITE_OK)
        return rc;
    struct kite_loop *loop = h->hl->loop;
    struct job j = {
        .work = {.fn = fn, .arg = arg, .done = job_done, .owner = loop},
        .h = h,
        .done = false,
    };
    /* The loop must outlive the completion's post even if it is freed meanwhile. */
    kite__loop_ref(loop);
    rc = kite__workers_submit(w, &j.work);
    if (rc != KITE_OK) {
        kite__loop_unref(loop);
        return rc;
    }
    while (!j.done)
        suspend(h, W_JOB);
    if (j.work.status == KITE_OK && result)
        *result = j.work.result;
    return j.work.status;
}

/* ---- information --------------------------------------------------------------------------------- */

const struct kite_request *kite_handler_request(struct kite_session *s)
{
    struct handler *h = self(s);
    return h ? h->req : NULL;
}

struct kite_session *kite_handler_session(void)
{
    struct handler *h = running();
    return h ? h->s : NULL;
}

bool kite_msg_equals_ci(const struct kite_msg *m, const char *ascii)
{
    if (!m || !ascii || m->type != KITE_OP_TEXT)
        return false;
    return kite__ieq((const char *)m->data, m->len, ascii, strlen(ascii));
}

int kite_frame_read_reason(const struct kite_frame *f, uint16_t *code, struct kite_str *reason)
{
    if (!f || !code || !reason || f->opcode != KITE_OP_CLOSE)
        return KITE_ERR_INVALID;
    if (f->len == 1)
        return KITE_ERR_PROTOCOL; /* RFC 6455 §5.5.1: a body starts with a 2-byte code */
    if (f->len == 0) {
        *code = KITE_CLOSE_NO_STATUS; /* RFC 6455 §7.1.5 */
        *reason = (struct kite_str){"", 0};
        return KITE_OK;
    }
    *code = (uint16_t)(f->data[0] << 8 | f->data[1]);
    *reason = (struct kite_str){(const char *)f->data + 2, f->len - 2};
    return KITE_OK;
}

const char *kite_close_code_name(unsigned code)
{
    /* Ktor's CloseReason.Codes, RFC 6455 §7.4.1 and the IANA registry. */
    static const char *const names[] = {
        "NORMAL",         "GOING_AWAY",    "PROTOCOL_ERROR",    "CANNOT_ACCEPT",
        NULL,             "NO_STATUS",     "CLOSED_ABNORMALLY", "NOT_CONSISTENT",
        "VIOLATED_POLICY", "TOO_BIG",      "NO_EXTENSION",      "INTERNAL_ERROR",
        "SERVICE_RESTART", "TRY_AGAIN_LATER", "BAD_GATEWAY",    "TLS_HANDSHAKE",
    };
    if (code < 1000 || code >= 1000 + KITE_ARRAY_LEN(names))
        return NULL;
    return names[code - 1000];
}

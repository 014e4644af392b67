/* A WebSocket session on a loop: codec + transport + timer + output queue (session.h). */
#include <errno.h>
#include <stdio.h>

#include "codec/conn_internal.h" /* the inline codec getters */
#include "kite/kite.h" /* kite_session_extension, kite_session_is_tls */
#include "net/sockutil.h"
#include "net/tls.h"
#include "session/session.h"

enum {
    S_OPENED = 1u << 0,       /* on_open was called: on_close is owed */
    S_CLOSED = 1u << 1,       /* the codec fired on_close (user's on_close delivered) */
    S_TERMINATE = 1u << 2,    /* terminate requested, carried out by finish() */
    S_WANT_DRAIN = 1u << 3,   /* a send returned QUEUED: on_drain when below high water */
    S_PAUSED = 1u << 4,       /* delivery held back */
    S_RESUME = 1u << 5,       /* feed the stash at the next flush */
    S_WRITE_WAIT = 1u << 6,   /* the kernel is full: waiting for KITE__IO_WRITE */
    S_LINGER = 1u << 7,       /* output done, waiting for the peer's EOF */
    S_DEAD = 1u << 8,         /* torn down; memory freed at the end of the iteration */
    S_TP_DONE = 1u << 9,      /* EOF or transport error seen: no more I/O */
    S_FREED = 1u << 10,       /* the deferred free ran: the codec is released */
    S_IO_PARKED = 1u << 11,   /* paused with a hang-up pending: watcher stopped */
    S_TIMER_STALE = 1u << 12, /* timer_key says nothing: update_timer must look */
    S_WRITE_ERR = 1u << 13,   /* a direct write failed: torn down by the next write_out */
    S_IN_READ = 1u << 14,     /* io_cb is reading: it writes the replies itself after */
};

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

static int cc_on_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                         size_t len, void *ud);
static int cc_on_frame(struct kite_codec *c, const struct kite_frame *f, void *ud);
static void cc_on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud);
static int cc_on_message_part(struct kite_codec *c, const struct kite_msg_part *p, void *ud);

static const struct kite_codec_callbacks codec_cb = {
    .on_message = cc_on_message,
    .on_frame = cc_on_frame,
    .on_close = cc_on_close,
};
/* For routes with on_message_part: the codec hands large messages over in parts only
 * when its callbacks take them. */
static const struct kite_codec_callbacks codec_cb_parts = {
    .on_message = cc_on_message,
    .on_frame = cc_on_frame,
    .on_close = cc_on_close,
    .on_message_part = cc_on_message_part,
};

static void io_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events);
static void timer_cb(struct kite_loop *loop, struct kite__timer *t);
static void flush_out(struct kite_session *s);
static void finish(struct kite_session *s);

void kite_send_limits_init(struct kite_send_limits *l)
{
    l->high_water = 64u * 1024u;
    l->hard_limit = 64u * 1024u * 1024u;
    l->policy = KITE_SEND_POLICY_CLOSE;
}

static const struct kite_allocator *alloc_of(const struct kite_session *s)
{
    return s->cfg->alloc;
}

static struct kite__session_ext *ext_get(struct kite_session *s)
{
    if (!s->ext)
        s->ext = kite__calloc(alloc_of(s), sizeof(*s->ext));
    return s->ext;
}

/* ---- creation and teardown -------------------------------------------------------- */

/*
 * A session and its codec are one heap block (kite_codec_new_in): the codec first, at
 * the block's start (malloc's alignment, which it needs), then the session. In this
 * order the block has no padding between the two, which keeps an idle connection one
 * malloc size class smaller than with the session first.
 */
/* An idle connection is this block: keep it from growing unnoticed (session.h). */
_Static_assert(sizeof(void *) != 8 || sizeof(struct kite_session) <= 104,
               "struct kite_session grew past 104 bytes");

/* The codec's share of the block: the session starts this far in. A constant, so the
 * codec and the session are found from each other by an offset, not a stored pointer. */
#define CODEC_ROOM                                                                         \
    ((sizeof(struct kite_codec) + _Alignof(struct kite_session) - 1) &                     \
     ~(_Alignof(struct kite_session) - 1))

static inline struct kite_codec *codec_of(const struct kite_session *s)
{
    return (struct kite_codec *)(void *)((char *)(uintptr_t)s - CODEC_ROOM);
}

static inline struct kite_session *session_of(const struct kite_codec *c)
{
    return (struct kite_session *)(void *)((char *)(uintptr_t)c + CODEC_ROOM);
}

/* The user data: kept in the codec's ud (the codec callbacks find the session by
 * session_of), so the session stores no copy. */
static inline void *ud_of(const struct kite_session *s)
{
    return codec_of(s)->ud;
}

/* The codec while the session holds one (until the deferred free), else NULL. */
static const struct kite_codec *live_codec(const struct kite_session *s)
{
    return (s->flags & S_FREED) ? NULL : codec_of(s);
}

struct kite_codec *kite__session_codec(const struct kite_session *s)
{
    return codec_of(s);
}

static void *block_of(struct kite_session *s)
{
    return codec_of(s);
}

int kite__session_new(struct kite_loop *loop, const struct kite__session_cfg *cfg,
                      const struct kite__transport *tp, struct kite_session **out)
{
    return kite__session_new_ext(loop, cfg, tp, NULL, out);
}

struct kite_session *kite__session_reserve(const struct kite_allocator *a, void *owner)
{
    char *block = kite__calloc(a, CODEC_ROOM + sizeof(struct kite_session));
    if (!block)
        return NULL;
    /* The codec's room is unused until the session is made: it holds the owner. */
    memcpy(block, &owner, sizeof(owner));
    return (struct kite_session *)(void *)(block + CODEC_ROOM);
}

void *kite__session_reserved_owner(const struct kite_session *s)
{
    void *owner;
    memcpy(&owner, (const void *)codec_of(s), sizeof(owner));
    return owner;
}

void kite__session_unreserve(struct kite_session *s, const struct kite_allocator *a)
{
    if (s)
        kite__free(a, block_of(s));
}

/* Make the codec and the session in a zeroed (but for the codec's room) block whose
 * watcher is set up. On failure only the codec's room has changed. */
static int session_init(struct kite_session *s, struct kite_loop *loop,
                        const struct kite__session_cfg *cfg, const struct kite__transport *tp,
                        struct kite_ext_chain *ext)
{
    struct kite_codec_config cc;
    kite_codec_config_init(&cc);
    cc.role = (enum kite_role)cfg->role;
    cc.mode = (enum kite_mode)cfg->mode;
    cc.shared_options = cfg->ws; /* pointed to, not copied: see struct kite__session_cfg */
    cc.allocator = cfg->alloc;
    cc.extensions = ext;
    /* The codec carries the user data; its callbacks find s by session_of. */
    const struct kite_codec_callbacks *ccb = cfg->cb.on_message_part ? &codec_cb_parts : &codec_cb;
    if (!kite_codec_new_in(block_of(s), &cc, ccb, cfg->ud, kite__loop_now(loop)))
        return cfg->ws->timeout_ms == 0 ? KITE_ERR_INVALID : KITE_ERR_NOMEM;
    s->tp = *tp;
    s->loop = loop;
    s->cfg = cfg;
    atomic_init(&s->refs, 1u);
    s->flags = S_TIMER_STALE;
    return KITE_OK;
}

int kite__session_new_ext(struct kite_loop *loop, const struct kite__session_cfg *cfg,
                          const struct kite__transport *tp, struct kite_ext_chain *ext,
                          struct kite_session **out)
{
    *out = NULL;
    struct kite_session *s = kite__session_reserve(cfg->alloc, NULL);
    if (!s)
        return KITE_ERR_NOMEM;
    kite__io_init(&s->io, kite__tp_fd(tp), io_cb);
    int rc = session_init(s, loop, cfg, tp, ext);
    if (rc < 0) {
        kite__session_unreserve(s, cfg->alloc);
        return rc;
    }
    *out = s;
    return KITE_OK;
}

int kite__session_new_in(struct kite_session *s, struct kite_loop *loop,
                         const struct kite__session_cfg *cfg, const struct kite__transport *tp,
                         struct kite_ext_chain *ext)
{
    if (s->io.fd != kite__tp_fd(tp))
        return KITE_ERR_INVALID;
    void *owner = kite__session_reserved_owner(s);
    int rc = session_init(s, loop, cfg, tp, ext);
    if (rc == KITE_OK)
        s->io.cb = io_cb;
    else
        memcpy(block_of(s), &owner, sizeof(owner)); /* still reserved: still the owner's */
    return rc;
}

static void ext_free(struct kite_session *s)
{
    struct kite__session_ext *e = s->ext;
    if (!e)
        return;
    kite__buf_free(&e->stash, alloc_of(s));
    kite__buf_free(&e->pre, alloc_of(s));
    kite__free(alloc_of(s), e->subprotocol);
    kite__free(alloc_of(s), e);
    s->ext = NULL;
}

/* The timer block, made on first use (NULL when out of memory). */
static struct kite__session_timer *timer_get(struct kite_session *s)
{
    if (!s->tm) {
        s->tm = kite__calloc(alloc_of(s), sizeof(*s->tm));
        if (s->tm) {
            kite__timer_init(&s->tm->t, timer_cb);
            s->tm->s = s;
        }
    }
    return s->tm;
}

/* Free the timer block (its timer stopped first). */
static void timer_free(struct kite_session *s)
{
    if (!s->tm)
        return;
    kite__timer_stop(s->loop, &s->tm->t);
    kite__free(alloc_of(s), s->tm);
    s->tm = NULL;
}

void kite__session_discard(struct kite_session *s)
{
    if (!s)
        return;
    const struct kite_allocator *a = alloc_of(s);
    kite_codec_free(codec_of(s)); /* what it holds; its memory is the block's */
    ext_free(s);
    timer_free(s);
    kite__free(a, block_of(s));
}

/* What is left of a closed session that kite_session_ref() keeps: flags say S_DEAD,
 * the codec and the extras are gone, and the union holds the allocator to free it
 * with (the route that had it may be gone by then). */
static void shell_free(struct kite_session *s)
{
    kite__free(s->shell_alloc, block_of(s));
}

/* The deferred free: release everything but the struct itself while references remain
 * (posts in flight, kite_session_ref), the struct too with the last one. */
static void session_free(struct kite_loop *loop, void *arg)
{
    struct kite_session *s = arg;
    KITE_UNUSED(loop);
    const struct kite_allocator *a = alloc_of(s);
    void (*on_free)(void *) = s->cfg->on_free;
    void *owner = s->cfg->owner;
    kite_codec_free(codec_of(s));
    s->flags |= S_FREED;
    ext_free(s);
    s->cfg = NULL;
    if (on_free)
        on_free(owner);
    /* The task has started running: its bytes may be reused (loop.h). */
    s->shell_alloc = a;
    if (atomic_fetch_sub(&s->refs, 1u) == 1u)
        shell_free(s);
}

/* Detach from the loop, close the fd, tell the owner, free at the end of the
 * iteration. The codec must have fired on_close already (callers make sure). */
static void destroy(struct kite_session *s)
{
    if (s->flags & S_DEAD)
        return;
    s->flags |= S_DEAD;
    /* The fd is closed just below, which takes it out of epoll: no EPOLL_CTL_DEL. */
    kite__io_close(s->loop, &s->io);
    timer_free(s);
    kite__io_flush_cancel(s->loop, &s->io);
    kite__tp_close(&s->tp);
    if (s->cfg->on_destroy)
        s->cfg->on_destroy(s, s->cfg->owner);
    /* The dead watcher's bytes become a fresh task (its flags must start at 0). */
    memset(&s->free_task, 0, sizeof(s->free_task));
    kite__loop_defer(s->loop, &s->free_task, session_free, s);
}

/* The transport ended (EOF: err 0, or an error): let the codec report the close (it
 * fires on_close unless that already happened), then tear down. */
static void transport_ended(struct kite_session *s, int err)
{
    s->flags |= S_TP_DONE;
    s->depth++;
    kite_codec_transport_closed(codec_of(s), err);
    s->depth--;
    destroy(s);
}

/* ---- output ---------------------------------------------------------------------- */

size_t kite__session_buffered(const struct kite_session *s)
{
    if (s->flags & S_FREED)
        return 0; /* a closed session kept by a reference */
    size_t n = kite__codec_pending_len(codec_of(s));
    if (s->ext)
        n += s->ext->pre.len;
    return n;
}

static void want_flush(struct kite_session *s)
{
    if (!(s->flags & (S_WRITE_WAIT | S_DEAD)))
        kite__io_flush(s->loop, &s->io);
}

static const struct kite_send_limits *limits_of(const struct kite_session *s)
{
    return (s->ext && s->ext->has_send) ? &s->ext->send : s->cfg->send;
}

static void fire_flushed(struct kite_session *s)
{
    struct kite__session_ext *e = s->ext;
    if (!e || !e->flushed)
        return;
    kite__session_flushed_cb *cb = e->flushed;
    e->flushed = NULL;
    s->depth++;
    cb(s, e->flushed_arg);
    s->depth--;
}

/* After a write: on_drain once the queue is below the high-water mark, and the
 * one-shot flushed hook once it is empty. */
static void after_write(struct kite_session *s)
{
    size_t q = kite__session_buffered(s);
    if (q == 0)
        fire_flushed(s);
    if (!(s->flags & S_WANT_DRAIN) || (s->flags & (S_CLOSED | S_DEAD)))
        return;
    if (q >= limits_of(s)->high_water)
        return;
    s->flags &= (uint16_t)~S_WANT_DRAIN;
    if (s->cfg->cb.on_drain) {
        s->depth++;
        s->cfg->cb.on_drain(s, ud_of(s));
        s->depth--;
    }
}

/*
 * One writev of everything queued: the prefix (rest of a 101) and the codec's output.
 * A partial write waits for KITE__IO_WRITE. On a transport error the session is torn
 * down (S_DEAD set when this returns).
 */
static void write_out(struct kite_session *s)
{
    if (s->flags & (S_DEAD | S_TP_DONE))
        return;
    if (s->flags & S_WRITE_ERR) {
        /* A send's direct write failed (send_large): end the session here, outside
         * the caller's dispatch. */
        transport_ended(s, s->ext ? s->ext->write_err : -EPIPE);
        return;
    }
    struct iovec iov[2];
    int cnt = 0;
    size_t pre = s->ext ? s->ext->pre.len : 0;
    if (pre)
        iov[cnt++] = (struct iovec){kite__buf_head(&s->ext->pre), pre};
    size_t n = kite__codec_pending_len(codec_of(s));
    if (n) {
        const uint8_t *p;
        kite_codec_pending(codec_of(s), &p);
        iov[cnt++] = (struct iovec){(void *)p, n};
    }
    if (cnt == 0) {
        s->flags &= (uint16_t)~S_WRITE_WAIT;
        return;
    }
    ssize_t w = kite__tp_writev(&s->tp, iov, cnt);
    if (w == KITE_AGAIN) {
        s->flags |= S_WRITE_WAIT;
        return;
    }
    if (w < 0) {
        transport_ended(s, (int)w);
        return;
    }
    size_t done = (size_t)w, from_pre = KITE_MIN(done, pre);
    if (from_pre) {
        kite__buf_consume(&s->ext->pre, from_pre);
        if (s->ext->pre.len == 0)
            kite__buf_free(&s->ext->pre, alloc_of(s));
    }
    if (done > from_pre)
        kite_codec_consume(codec_of(s), done - from_pre);
    if (done < pre + n)
        s->flags |= S_WRITE_WAIT;
    else
        s->flags &= (uint16_t)~S_WRITE_WAIT;
    after_write(s);
}

/* ---- input ------------------------------------------------------------------------ */

/* Keep in[0..len) for later (paused). A failure to keep it fails the session. */
static void stash(struct kite_session *s, const uint8_t *in, size_t len)
{
    struct kite__session_ext *e = ext_get(s);
    if (!e || kite__buf_append(&e->stash, alloc_of(s), in, len) < 0)
        transport_ended(s, KITE_ERR_NOMEM); /* losing input would corrupt the stream */
}

/* The end of one read's worth of input (struct kite_ws_callbacks.on_input_done). */
static void input_done(struct kite_session *s)
{
    if (!s->cfg->cb.on_input_done || (s->flags & (S_DEAD | S_CLOSED | S_TERMINATE)))
        return;
    s->depth++;
    s->cfg->cb.on_input_done(s, ud_of(s));
    s->depth--;
}

/* Feed bytes to the codec; whatever a pause leaves unread is stashed unless it already
 * lives in the stash (from_stash). Returns the bytes consumed. */
static size_t feed(struct kite_session *s, uint8_t *in, size_t len, bool from_stash)
{
    if (len == 0 || kite__codec_is_closed(codec_of(s)))
        return len;
    if (s->flags & S_PAUSED) {
        /* Paused before this input came in: deliver none of it. */
        if (from_stash)
            return 0;
        stash(s, in, len);
        return len;
    }
    s->depth++;
    ssize_t r = kite_codec_recv(codec_of(s), in, len, kite__loop_now(s->loop));
    s->depth--;
    if (r < 0)
        return len; /* out of memory: the codec failed the connection (1011) */
    size_t used = (size_t)r;
    if (used < len && (s->flags & S_PAUSED) && !kite__codec_is_closed(codec_of(s)) &&
        !(s->flags & S_TERMINATE) && !from_stash)
        stash(s, in + used, len - used);
    input_done(s);
    return used;
}

static void feed_stash(struct kite_session *s)
{
    struct kite__session_ext *e = s->ext;
    if (!e)
        return;
    while (e->stash.len && !(s->flags & (S_PAUSED | S_DEAD | S_TERMINATE))) {
        size_t used = feed(s, kite__buf_head(&e->stash), e->stash.len, true);
        if (used == 0 && !(s->flags & S_PAUSED))
            break;
        kite__buf_consume(&e->stash, used);
        if (kite__codec_is_closed(codec_of(s)))
            e->stash.len = 0;
    }
    if (e->stash.len == 0)
        kite__buf_free(&e->stash, alloc_of(s));
}

static void do_read(struct kite_session *s)
{
    size_t cap = 0;
    uint8_t *buf = NULL;
    /* Inside the payload of a large frame: read straight into the codec's message
     * buffer, where it is taken without a copy. Between frames (every small message)
     * the inline test spares the call. */
    uint64_t left = kite__frame_payload_left(&codec_of(s)->p);
    if (left > 0)
        cap = kite_codec_recv_space(codec_of(s), &buf);
    /* A large payload that the codec does not gather (a message in parts) streams
     * through the loop's bulk buffer. */
    if (cap == 0)
        buf = left >= KITE__LOOP_RXBUF_SIZE ? kite__loop_bulkbuf(s->loop, &cap)
                                            : kite__loop_rxbuf(s->loop, &cap);
    ssize_t n = kite__tp_read(&s->tp, buf, cap);
    if (n == KITE_AGAIN)
        return;
    if (n <= 0) {
        /* EOF after our close frame is the expected end; otherwise the codec reports
         * 1006. One last write gives a half-closed peer our close reply. */
        if (n == 0 && !(s->flags & S_LINGER))
            write_out(s);
        if (!(s->flags & S_DEAD))
            transport_ended(s, (int)n);
        return;
    }
    if (s->flags & S_LINGER)
        return; /* after the close handshake input is discarded */
    feed(s, buf, (size_t)n, false);
    /* TLS keeps its buffers while a frame's payload is still coming, frees them when
     * one ends: a large message does not cost an allocation per read. */
    if (s->tp.vt != &kite__tcp_vt && !(s->flags & S_DEAD))
        kite__tls_quiet(&s->tp, kite__frame_payload_left(&codec_of(s)->p) == 0);
}

static void io_cb(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    struct kite_session *s = kite__container_of(io, struct kite_session, io);
    KITE_UNUSED(loop);
    if (events & KITE__IO_FLUSH) {
        flush_out(s);
        return;
    }
    if (events & KITE__IO_WRITE) {
        s->flags &= (uint16_t)~S_WRITE_WAIT;
        write_out(s);
    }
    if (s->flags & S_DEAD)
        return;
    if ((s->flags & S_PAUSED) && !(s->flags & S_LINGER)) {
        /* Not reading now; a hang-up would be reported on every iteration, so park
         * the watcher until resume. */
        if (events & (KITE__IO_HUP | KITE__IO_ERROR)) {
            kite__io_stop(s->loop, &s->io);
            s->flags |= S_IO_PARKED;
        }
    } else if ((events & (KITE__IO_READ | KITE__IO_HUP | KITE__IO_ERROR)) ||
               ((events & KITE__IO_WRITE) &&
                (kite__tp_want_events(&s->tp, KITE__IO_READ) & KITE__IO_WRITE))) {
        /* The second case: a TLS read that needs the socket writable (its reply to a
         * key update could not be sent) resumes when it is. */
        s->flags |= S_IN_READ;
        do_read(s);
        /* A TLS transport may hold decrypted bytes the fd will not signal again. */
        for (int i = 0; i < 16 && !(s->flags & (S_DEAD | S_PAUSED | S_TP_DONE)) &&
                        kite__tp_pending(&s->tp) > 0;
             i++)
            do_read(s);
        s->flags &= (uint16_t)~S_IN_READ;
        /* The replies to this read go out now, in one write, rather than at the loop's
         * before-sleep flush: the same one write per read, but the connections later
         * in this wake-up's batch no longer hold back the answers of the earlier ones
         * (ping-pong tail latency). Sends to other sessions stay corked until then. */
        if (!(s->flags & (S_DEAD | S_WRITE_WAIT | S_TP_DONE | S_TERMINATE)) && s->depth == 0 &&
            kite__session_buffered(s) > 0)
            write_out(s);
    }
    finish(s);
}

/* ---- timers, linger, the end of every dispatch ------------------------------------ */

static void timer_cb(struct kite_loop *loop, struct kite__timer *t)
{
    struct kite_session *s = kite__container_of(t, struct kite__session_timer, t)->s;
    if (s->flags & S_LINGER) {
        destroy(s); /* the peer never closed its side */
        return;
    }
    s->flags |= S_TIMER_STALE; /* the loop disarmed it by firing it */
    s->depth++;
    kite_codec_tick(codec_of(s), kite__loop_now(loop));
    s->depth--;
    finish(s);
}

/* The before-sleep write (KITE__IO_FLUSH), which also feeds the stash after a resume. */
static void flush_out(struct kite_session *s)
{
    if (s->flags & S_RESUME) {
        s->flags &= (uint16_t)~S_RESUME;
        feed_stash(s);
    }
    if (!(s->flags & (S_DEAD | S_TERMINATE)))
        write_out(s);
    finish(s);
}

/* All output is out and the codec is closed: half-close (the server closes TCP first,
 * RFC 6455 §7.1.1) and wait for the peer's EOF, so nothing we wrote is lost to a reset
 * caused by unread input. A client just waits for the server to close. */
static void start_linger(struct kite_session *s)
{
    struct kite__session_timer *tm = timer_get(s);
    if (!tm) {
        destroy(s); /* no memory for the deadline: close now rather than maybe never */
        return;
    }
    s->flags |= S_LINGER;
    if (s->cfg->role == KITE_ROLE_SERVER)
        (void)kite__tp_shutdown(&s->tp);
    kite__timer_start(s->loop, &tm->t, KITE__SESSION_LINGER_MS);
}

static void do_terminate(struct kite_session *s)
{
    s->flags &= (uint16_t)~S_TERMINATE;
    if (!kite__codec_is_closed(codec_of(s))) {
        s->depth++;
        kite__codec_abort(codec_of(s)); /* reported as closed by us */
        s->depth--;
    }
    destroy(s);
}

static void update_io(struct kite_session *s)
{
    uint32_t ev = 0;
    if (!(s->flags & S_PAUSED) || (s->flags & S_LINGER))
        ev |= KITE__IO_READ;
    else if (s->flags & S_IO_PARKED)
        return;
    if (s->flags & S_WRITE_WAIT)
        ev |= KITE__IO_WRITE;
    /* Plain TCP wants what it is asked for; TLS may need the other direction. */
    if (s->tp.vt != &kite__tcp_vt)
        ev = kite__tp_want_events(&s->tp, ev);
    int rc = kite__io_start(s->loop, &s->io, ev); /* the usual case: nothing changed */
    if (rc < 0)
        transport_ended(s, rc);
}

/*
 * What kite_codec_next_timer() depends on, read inline: the codec's deadline and its
 * state bits (deadlines are milliseconds, far below 2^48, so the two do not mix). The
 * options, the third input, change only through kite_session_set_options(), which
 * marks the key stale, as does the timer firing.
 */
static uint64_t timer_key(const struct kite_codec *c)
{
    return c->timer ^ ((uint64_t)c->flags << 48);
}

static void update_timer(struct kite_session *s)
{
    if (s->flags & (S_LINGER | S_DEAD))
        return; /* the linger deadline is set once */
    const struct kite_codec *c = codec_of(s);
    struct kite__session_timer *tm = s->tm;
    uint64_t key = timer_key(c);
    if (!(s->flags & S_TIMER_STALE)) {
        /* Most dispatches: the codec's timer did not move. Without a timer block the
         * codec had no deadline at the last look, and only sending a close or new
         * options (which mark the key stale) can give it one (kite_codec_next_timer). */
        if (tm ? key == tm->key : !kite__codec_close_sent(c))
            return;
    }
    s->flags &= (uint16_t)~S_TIMER_STALE;
    uint64_t next = kite_codec_next_timer(c);
    if (next == UINT64_MAX) {
        if (tm) {
            kite__timer_stop(s->loop, &tm->t);
            tm->key = key;
        }
        return;
    }
    if (!tm && !(tm = timer_get(s))) {
        transport_ended(s, KITE_ERR_NOMEM); /* a deadline we cannot keep */
        return;
    }
    tm->key = key;
    kite__timer_start_at(s->loop, &tm->t, next);
}

/* Run when the outermost dispatch returns: carry out deferred teardown, schedule the
 * flush, arm the timer and the fd interest. */
static void finish(struct kite_session *s)
{
    if ((s->flags & S_DEAD) || s->depth > 0)
        return;
    if (s->flags & S_TERMINATE) {
        do_terminate(s);
        return;
    }
    bool closed = kite__codec_is_closed(codec_of(s));
    if (closed && (s->flags & S_TP_DONE)) {
        destroy(s);
        return;
    }
    size_t q = kite__session_buffered(s);
    if (q > 0 || (s->flags & S_RESUME))
        want_flush(s);
    else if (closed && !(s->flags & S_LINGER))
        start_linger(s);
    update_timer(s);
    if (!(s->flags & S_DEAD))
        update_io(s);
}

/* ---- codec callbacks ---------------------------------------------------------------- */

static int cc_on_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                         size_t len, void *ud)
{
    struct kite_session *s = session_of(c);
    KITE_UNUSED(ud); /* the user's: s is found from c */
    if (s->cfg->cb.on_message && !(s->flags & S_TERMINATE)) {
        struct kite_msg m = {type, data, len};
        s->cfg->cb.on_message(s, &m, ud_of(s));
    }
    return (s->flags & (S_PAUSED | S_TERMINATE)) ? KITE_PAUSE : KITE_OK;
}

static int cc_on_message_part(struct kite_codec *c, const struct kite_msg_part *p, void *ud)
{
    struct kite_session *s = session_of(c);
    KITE_UNUSED(ud); /* the user's: s is found from c */
    if (!(s->flags & S_TERMINATE))
        s->cfg->cb.on_message_part(s, p, ud_of(s));
    return (s->flags & (S_PAUSED | S_TERMINATE)) ? KITE_PAUSE : KITE_OK;
}

static int cc_on_frame(struct kite_codec *c, const struct kite_frame *f, void *ud)
{
    struct kite_session *s = session_of(c);
    KITE_UNUSED(ud); /* the user's: s is found from c */
    if (s->cfg->cb.on_frame && !(s->flags & S_TERMINATE))
        s->cfg->cb.on_frame(s, f, ud_of(s));
    return (s->flags & (S_PAUSED | S_TERMINATE)) ? KITE_PAUSE : KITE_OK;
}

static void cc_on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    struct kite_session *s = session_of(c);
    KITE_UNUSED(ud); /* the user's: s is found from c */
    s->flags |= S_CLOSED;
    s->flags &= (uint16_t)~S_WANT_DRAIN;
    if (!(s->flags & S_OPENED))
        return;
    fire_flushed(s); /* nobody waits for a flush that will never come */
    s->depth++;
    if (ci->error && s->cfg->cb.on_error)
        s->cfg->cb.on_error(s, ci->error, ud_of(s));
    if (s->cfg->cb.on_close)
        s->cfg->cb.on_close(s, ci, ud_of(s));
    s->depth--;
}

/* ---- start -------------------------------------------------------------------------- */

int kite__session_set_prefix(struct kite_session *s, struct kite_buf *b)
{
    if (b->len == 0) {
        kite__buf_free(b, alloc_of(s));
        return KITE_OK;
    }
    struct kite__session_ext *e = ext_get(s);
    if (!e)
        return KITE_ERR_NOMEM;
    kite__buf_free(&e->pre, alloc_of(s));
    e->pre = *b;
    memset(b, 0, sizeof(*b));
    return KITE_OK;
}

int kite__session_set_subprotocol(struct kite_session *s, const char *p, size_t len)
{
    struct kite__session_ext *e = ext_get(s);
    if (!e)
        return KITE_ERR_NOMEM;
    char *d = kite__malloc(alloc_of(s), len + 1);
    if (!d)
        return KITE_ERR_NOMEM;
    memcpy(d, p, len);
    d[len] = '\0';
    kite__free(alloc_of(s), e->subprotocol);
    e->subprotocol = d;
    return KITE_OK;
}

int kite__session_start(struct kite_session *s, const struct kite_request *req, uint8_t *in,
                        size_t len)
{
    /* No system call when the watcher is registered already (kite__session_new_in). */
    int rc = kite__io_start(s->loop, &s->io, KITE__IO_READ);
    if (rc < 0) {
        transport_ended(s, rc); /* never opened: no callbacks */
        return rc;
    }
    s->flags |= S_OPENED;
    s->depth++;
    if (s->cfg->cb.on_open)
        s->cfg->cb.on_open(s, req, ud_of(s));
    s->depth--;
    if (!(s->flags & (S_DEAD | S_TERMINATE)) && len > 0) {
        s->depth++;
        feed(s, in, len, false);
        s->depth--;
    }
    finish(s);
    return KITE_OK;
}

/* ---- pause / resume / flushed hook ------------------------------------------------ */

void kite__session_pause(struct kite_session *s)
{
    s->flags |= S_PAUSED;
    if (s->depth == 0)
        finish(s);
}

void kite__session_resume(struct kite_session *s)
{
    if (!(s->flags & S_PAUSED))
        return;
    s->flags &= (uint16_t)~S_PAUSED;
    s->flags &= (uint16_t)~S_IO_PARKED;
    if (s->ext && s->ext->stash.len && !(s->flags & S_DEAD)) {
        s->flags |= S_RESUME;
        kite__io_flush(s->loop, &s->io); /* fed before the loop sleeps, not here */
    }
    if (s->depth == 0)
        finish(s);
}

bool kite__session_paused(const struct kite_session *s)
{
    return (s->flags & S_PAUSED) != 0;
}

void kite_session_pause(struct kite_session *s)
{
    if (s && !(s->flags & S_DEAD))
        kite__session_pause(s);
}

void kite_session_resume(struct kite_session *s)
{
    if (s && !(s->flags & S_DEAD))
        kite__session_resume(s);
}

bool kite_session_is_paused(const struct kite_session *s)
{
    return s && kite__session_paused(s);
}

int kite__session_on_flushed(struct kite_session *s, kite__session_flushed_cb *cb, void *arg)
{
    if (!cb) {
        if (s->ext)
            s->ext->flushed = NULL;
        return KITE_OK;
    }
    struct kite__session_ext *e = ext_get(s);
    if (!e)
        return KITE_ERR_NOMEM;
    e->flushed = cb;
    e->flushed_arg = arg;
    if (kite__session_buffered(s) == 0 || (s->flags & (S_CLOSED | S_DEAD)))
        fire_flushed(s);
    return KITE_OK;
}

/* ---- public API ----------------------------------------------------------------------- */

static bool gone(const struct kite_session *s)
{
    return (s->flags & (S_DEAD | S_CLOSED | S_TERMINATE | S_WRITE_ERR)) != 0;
}

/* The hard limit was hit under the CLOSE policy: close with 1008 (RFC 6455 §7.4.1). */
static void fail_limit(struct kite_session *s)
{
    kite_codec_close(codec_of(s), KITE_CLOSE_POLICY, "send queue full", kite__loop_now(s->loop));
    want_flush(s);
    finish(s);
}

/* ---- large messages: written from the caller's buffer ------------------------------- */

/*
 * From this size a whole message with nothing queued ahead of it is written from the
 * caller's buffer during the send (send_large). Below it corking wins: sends in one
 * iteration share one writev, and copying a few KiB costs less than a system call. At
 * 16 KiB the copy costs about what the call does, and the frame fills a TLS record,
 * which the TLS transport hands to SSL_write as it is (shorter buffers are copied into
 * its staging area anyway). The codec reads large payloads in place from the same size
 * (DIRECT_MIN in codec/conn.c).
 */
#define DIRECT_SEND_MIN ((size_t)16 << 10)

struct direct {
    struct kite_session *s;
    int err;          /* the transport failed (negative), or 0 */
    bool short_write; /* the kernel did not take the whole frame */
};

/* kite_codec_write_cb: the frame header and the caller's payload in one writev. */
static ssize_t direct_write(void *arg, const uint8_t *head, size_t hlen, const uint8_t *data,
                            size_t len)
{
    struct direct *d = arg;
    struct iovec iov[2] = {{(void *)head, hlen}, {(void *)data, len}};
    ssize_t w = kite__tp_writev(&d->s->tp, iov, 2);
    if (w == KITE_AGAIN)
        w = 0;
    if (w < 0) {
        d->err = (int)w;
        return w;
    }
    d->short_write = (size_t)w < hlen + len;
    return w;
}

/*
 * The transport failed during a send, or part of a frame is out and the rest could not
 * be queued: the session cannot go on. Tearing it down here would run on_close inside
 * the caller's send (perhaps while it walks a list of sessions), so keep the error and
 * let the flush before the loop sleeps end the session (write_out). Nothing queued
 * would ever be written: drop it, so the queue counts only what may still go out.
 */
static void direct_failed(struct kite_session *s, int err)
{
    struct kite__session_ext *e = ext_get(s);
    if (e)
        e->write_err = err;
    s->flags |= S_WRITE_ERR;
    kite_codec_consume(codec_of(s), kite__codec_pending_len(codec_of(s)));
    kite__io_flush(s->loop, &s->io);
}

/*
 * A large whole message, nothing queued before it (not even the rest of a 101): the
 * codec frames it and, when it goes out as given (server role, no extension),
 * direct_write hands header and payload to the transport at once. Only what the kernel
 * does not take is copied into the queue (RFC 6455 §5.2 framing is the codec's). A
 * short write means the kernel is full: wait for writability instead of trying again
 * at the flush. Returns as kite_codec_send(), KITE_ERR_CLOSED after a transport
 * failure.
 */
static int send_large(struct kite_session *s, enum kite_opcode op, bool fin, const void *data,
                      size_t len, bool whole)
{
    struct direct d = {.s = s};
    /* A whole message goes through the extensions where it cannot go out as given; a
     * frame of kite_session_send_frame() never does. */
    int rc = whole ? kite_codec_send_direct(codec_of(s), op, data, len, direct_write, &d)
                   : kite__codec_send_direct_frame(codec_of(s), op, fin, data, len,
                                                   direct_write, &d);
    if (d.err || (rc == KITE_ERR_NOMEM && kite__codec_close_sent(codec_of(s)))) {
        direct_failed(s, d.err ? d.err : rc);
        return KITE_ERR_CLOSED;
    }
    if (rc == KITE_OK && d.short_write) {
        s->flags |= S_WRITE_WAIT;
        if (s->depth == 0)
            finish(s); /* watch for writability now: no dispatch will end to do it */
    }
    return rc;
}

NOINLINE static int do_send(struct kite_session *s, enum kite_opcode op, bool fin, uint8_t rsv,
                   const void *data, size_t len, size_t *buffered, bool whole)
{
    if (!s || (!data && len))
        return KITE_ERR_INVALID;
    size_t q = kite__session_buffered(s);
    if (buffered)
        *buffered = q;
    if (gone(s) || !(s->flags & S_OPENED) || kite__codec_close_sent(codec_of(s)))
        return KITE_SEND_CLOSED;
    bool control = (op & 0x8) != 0;
    const struct kite_send_limits *l = limits_of(s); /* fetched once per send */
    /* 14 bytes: the largest frame header (RFC 6455 §5.2). */
    if (!control && (len > l->hard_limit || q + len + 14 > l->hard_limit)) {
        if (l->policy == KITE_SEND_POLICY_DROP)
            return KITE_SEND_DROPPED;
        fail_limit(s);
        return KITE_SEND_CLOSED;
    }
    int rc;
    if (len >= DIRECT_SEND_MIN && !control && rsv == 0 && q == 0 &&
        !(s->flags & (S_WRITE_WAIT | S_TP_DONE)))
        rc = send_large(s, op, fin, data, len, whole);
    else
        rc = whole ? kite_codec_send(codec_of(s), op, data, len)
                   : kite_codec_send_frame(codec_of(s), op, fin, rsv, data, len);
    if (rc == KITE_ERR_CLOSED)
        return KITE_SEND_CLOSED;
    if (rc < 0)
        return rc;
    q = kite__session_buffered(s);
    if (buffered)
        *buffered = q;
    want_flush(s);
    if (op == KITE_OP_CLOSE && s->depth == 0)
        finish(s); /* a raw close starts the codec's close timer */
    if (!control && q >= l->high_water) {
        s->flags |= S_WANT_DRAIN;
        return KITE_SEND_QUEUED;
    }
    return KITE_SEND_OK;
}

/* send_small() leaves the message to do_send(). Not a value kite_session_send returns. */
#define SEND_GENERAL 100

/*
 * do_send() for the usual message: small (len < 126), whole, on an open session with
 * nothing of its own in the way (no prefix still to write, no limits of its own: no
 * `ext`), that leaves the queue below the high-water mark. One test of the state, one
 * of the limit, the codec's inline queueing; the answer is then KITE_SEND_OK, as
 * do_send() would give: below high_water is below hard_limit too (every setter of
 * limits refuses high_water > hard_limit), and within 14 bytes of the mark is left to
 * do_send() as well. want_flush() is the caller's. Anything else (a closing codec, an
 * output buffer that must grow, a queue near the mark) returns SEND_GENERAL with
 * nothing done. Makes no calls.
 */
static inline int send_small(struct kite_session *s, enum kite_opcode type, const void *data,
                             size_t len, size_t *buffered)
{
    if ((s->flags & (S_OPENED | S_DEAD | S_CLOSED | S_TERMINATE)) != S_OPENED || s->ext)
        return SEND_GENERAL;
    struct kite_codec *c = codec_of(s);
    /* len < 126 is the codec's test: a larger len only makes this sum wrap or pass. */
    if (kite__codec_pending_len(c) + len + 14 >= s->cfg->send->high_water ||
        !kite__codec_put_small(c, (uint8_t)(0x80 | type), data, len))
        return SEND_GENERAL;
    if (buffered)
        *buffered = kite__codec_pending_len(c);
    return KITE_SEND_OK;
}

/* want_flush() after send_small(), for the first message of a batch; passes rc on. */
NOINLINE static int flush_after(struct kite_session *s, int rc)
{
    want_flush(s);
    return rc;
}

/* A whole text or binary message: send_small(), else do_send(). */
static inline int send_whole(struct kite_session *s, enum kite_opcode type, const void *data,
                             size_t len, size_t *buffered)
{
    if (KITE_LIKELY(s && data)) {
        int rc = send_small(s, type, data, len, buffered);
        if (KITE_LIKELY(rc != SEND_GENERAL)) {
            /* want_flush() without a call when the flush is queued already. */
            if (!kite__io_flush_queued(&s->io) &&
                !(s->flags & (S_WRITE_WAIT | S_DEAD | S_IN_READ)))
                return flush_after(s, rc);
            return rc;
        }
    }
    return do_send(s, type, true, 0, data, len, buffered, true);
}

int kite_session_send(struct kite_session *s, enum kite_opcode type, const void *data, size_t len,
                      size_t *buffered)
{
    if (type != KITE_OP_TEXT && type != KITE_OP_BINARY)
        return KITE_ERR_INVALID;
    return send_whole(s, type, data, len, buffered);
}

int kite_session_send_text(struct kite_session *s, const char *text, size_t len, size_t *buffered)
{
    return send_whole(s, KITE_OP_TEXT, text, len, buffered);
}

int kite_session_send_binary(struct kite_session *s, const void *data, size_t len, size_t *buffered)
{
    return send_whole(s, KITE_OP_BINARY, data, len, buffered);
}

int kite_session_send_str(struct kite_session *s, const char *text)
{
    if (!text)
        return KITE_ERR_INVALID;
    return do_send(s, KITE_OP_TEXT, true, 0, text, strlen(text), NULL, true);
}

int kite_session_send_frame(struct kite_session *s, enum kite_opcode op, bool fin, uint8_t rsv,
                            const void *data, size_t len, size_t *buffered)
{
    return do_send(s, op, fin, rsv, data, len, buffered, false);
}

int kite_session_ping(struct kite_session *s, const void *data, size_t len)
{
    if (!s || (!data && len))
        return KITE_ERR_INVALID;
    if (gone(s))
        return KITE_SEND_CLOSED;
    int rc = kite_codec_ping(codec_of(s), data, len);
    if (rc == KITE_ERR_CLOSED)
        return KITE_SEND_CLOSED;
    if (rc < 0)
        return rc;
    want_flush(s);
    return KITE_SEND_OK;
}

int kite_session_close(struct kite_session *s, unsigned code, const char *reason)
{
    if (!s)
        return KITE_ERR_INVALID;
    if (gone(s))
        return KITE_ERR_CLOSED;
    int rc = kite_codec_close(codec_of(s), code, reason, kite__loop_now(s->loop));
    if (rc < 0)
        return rc;
    want_flush(s);
    if (s->depth == 0)
        finish(s);
    return KITE_OK;
}

void kite_session_terminate(struct kite_session *s)
{
    if (!s || (s->flags & S_DEAD))
        return;
    s->flags |= S_TERMINATE;
    if (s->depth == 0)
        finish(s);
}

void *kite_session_user_data(const struct kite_session *s)
{
    return ud_of(s);
}

void kite_session_set_user_data(struct kite_session *s, void *ud)
{
    kite_codec_set_user_data(codec_of(s), ud);
}

size_t kite_session_buffered(const struct kite_session *s)
{
    return kite__session_buffered(s);
}

void kite_session_send_limits(const struct kite_session *s, struct kite_send_limits *out)
{
    *out = *limits_of(s);
}

int kite_session_set_send_limits(struct kite_session *s, const struct kite_send_limits *l)
{
    if (!s || !l || l->high_water > l->hard_limit)
        return KITE_ERR_INVALID;
    struct kite__session_ext *e = ext_get(s);
    if (!e)
        return KITE_ERR_NOMEM;
    e->send = *l;
    e->has_send = true;
    return KITE_OK;
}

const struct kite_ws_options *kite_session_options(const struct kite_session *s)
{
    const struct kite_codec *c = live_codec(s);
    return c ? kite_codec_options(c) : NULL;
}

int kite_session_set_options(struct kite_session *s, const struct kite_ws_options *o)
{
    if (!s || !o)
        return KITE_ERR_INVALID;
    if (gone(s))
        return KITE_ERR_CLOSED;
    int rc = kite_codec_set_options(codec_of(s), o, kite__loop_now(s->loop));
    s->flags |= S_TIMER_STALE; /* the ping period is not in timer_key */
    if (rc == KITE_OK && s->depth == 0)
        finish(s);
    return rc;
}

const char *kite_session_subprotocol(const struct kite_session *s)
{
    return s->ext ? s->ext->subprotocol : NULL;
}

int kite_session_remote_addr(const struct kite_session *s, char *buf, size_t cap)
{
    struct kite__addr a;
    int fd = kite__tp_fd(&s->tp);
    int rc = fd >= 0 ? kite__sock_peer_addr(fd, &a) : -ENOTCONN;
    if (rc < 0) {
        if (cap > 0)
            snprintf(buf, cap, "-");
        return rc;
    }
    return (int)kite__addr_format(&a, buf, cap);
}

const struct kite_close_info *kite_session_close_info(const struct kite_session *s)
{
    /* The codec's record: on_error/on_close are given the same one. */
    const struct kite_codec *c = live_codec(s);
    return c ? kite_codec_close_info(c) : NULL;
}

bool kite_session_is_open(const struct kite_session *s)
{
    return (s->flags & S_OPENED) && !gone(s) && !kite__codec_close_sent(codec_of(s)) &&
           !kite__codec_is_closed(codec_of(s));
}

struct kite_loop *kite_session_loop(const struct kite_session *s)
{
    return s->loop;
}

void *kite_session_extension(const struct kite_session *s, const struct kite_extension *ext)
{
    const struct kite_codec *c = live_codec(s);
    return c ? kite_codec_extension(c, ext) : NULL;
}

bool kite_session_is_tls(const struct kite_session *s)
{
    return kite__tls_is(&s->tp);
}

/* ---- references and other threads ------------------------------------------------- */

void kite_session_ref(struct kite_session *s)
{
    atomic_fetch_add(&s->refs, 1u);
}

void kite_session_unref(struct kite_session *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1u) == 1u)
        shell_free(s); /* only reachable after the deferred free has run */
}

/* A post in flight: one allocation, the loop task embedded, the data after it. */
struct post {
    struct kite_loop_task task;
    struct kite_session *s;
    kite_session_fn *fn;
    void *arg;
    const struct kite_allocator *alloc;
    enum kite_opcode type; /* send_async */
    size_t len;
    uint8_t data[];
};

static void post_run(struct kite_loop *loop, void *arg)
{
    struct post *p = arg;
    KITE_UNUSED(loop);
    struct kite_session *s = p->s;
    if (p->fn)
        p->fn(s, p->arg);
    else if (kite_session_is_open(s))
        (void)kite_session_send(s, p->type, p->data, p->len, NULL);
    kite__free(p->alloc, p);
    kite_session_unref(s);
}

static int post_new(struct kite_session *s, kite_session_fn *fn, void *arg, enum kite_opcode type,
                    const void *data, size_t len)
{
    if (!s || len > SIZE_MAX - sizeof(struct post))
        return KITE_ERR_INVALID;
    /* The loop's allocator is documented thread-safe (loop.h). */
    const struct kite_allocator *a = kite__loop_allocator(s->loop);
    struct post *p = kite__malloc(a, sizeof(*p) + len);
    if (!p)
        return KITE_ERR_NOMEM;
    memset(p, 0, sizeof(*p));
    p->s = s;
    p->fn = fn;
    p->arg = arg;
    p->alloc = a;
    p->type = type;
    p->len = len;
    if (len)
        memcpy(p->data, data, len);
    kite_session_ref(s); /* dropped by post_run */
    int rc = kite_loop_post_task(s->loop, &p->task, post_run, p);
    if (rc != KITE_OK) {
        atomic_fetch_sub(&s->refs, 1u); /* the caller still holds one: never the last */
        kite__free(a, p);
    }
    return rc;
}

int kite_session_post(struct kite_session *s, kite_session_fn *fn, void *arg)
{
    if (!fn)
        return KITE_ERR_INVALID;
    return post_new(s, fn, arg, KITE_OP_TEXT, NULL, 0);
}

int kite_session_send_async(struct kite_session *s, enum kite_opcode type, const void *data,
                            size_t len)
{
    if ((type != KITE_OP_TEXT && type != KITE_OP_BINARY) || (!data && len))
        return KITE_ERR_INVALID;
    return post_new(s, NULL, NULL, type, data, len);
}

/*
 * Fuzz target: the per-connection state machine (src/codec/conn.c) driven by arbitrary
 * byte streams, time steps, sends and closes.
 *
 * Input layout:
 *   byte 0   role (bit 0), mode (bit 1), masking (bit 2), rsv_allowed (bits 3-5),
 *            callbacks echo messages (bit 6), callbacks pause (bit 7)
 *   byte 1   max_frame_size (bits 0-2), max_message_size (bits 3-5) from a table,
 *            pings on (bit 6), callbacks close/answer closes (bit 7)
 *   byte 2   ping period (low nibble) and timeout (high nibble), in 10 ms steps
 *   byte 3   the Nth allocation fails (low 7 bits; 0 = none); bit 7: messages of 126
 *            bytes or more in parts (on_message_part, part_threshold 126)
 *   then commands, one byte each (low 3 bits: what, high 5 bits: argument):
 *     0-1  feed the next arg+1 (0) or (arg+1)*37 (1) input bytes as they are
 *     2    feed one frame built here: next byte = fin|rsv|opcode, next byte = length
 *          (0-255), then that many payload bytes; masked as the role requires
 *     3    tick, time += arg * 13 ms
 *     4    consume arg/31 of the pending output (checked as the peer would parse it)
 *     5    send: a message, a ping, a fragment, or a close, chosen by arg
 *     6    kite_codec_close with a code chosen by arg
 *     7    transport closed (arg 31), new options from the next byte (arg 30: limits as
 *          in byte 1, pings on with bit 6), else feed arg bytes
 *
 * Invariants checked: on_close fires at most once and nothing is called after it;
 * messages respect the limits and text is UTF-8; parts come in order, each message's
 * parts add up to at most the limit, whole messages in parts mode are under 126 bytes,
 * and a text message in parts is UTF-8 once whole; recv never consumes more than given
 * and stops early only when paused or closed; every byte of output parses, with a
 * parser of the opposite role, as well-formed frames, no frame after a close frame,
 * and our own close payloads valid; nothing leaks.
 */
#include <stdio.h>
#include <stdlib.h>

#include "codec/frame.h"
#include "codec/utf8.h"
#include "kite/codec.h"

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__);          \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

struct alloc_state {
    long count, fail_at, live;
};

static void *f_malloc(size_t n, void *ud)
{
    struct alloc_state *a = ud;
    if (++a->count == a->fail_at)
        return NULL;
    void *p = malloc(n);
    a->live += p != NULL;
    return p;
}

static void *f_realloc(void *p, size_t n, void *ud)
{
    struct alloc_state *a = ud;
    if (++a->count == a->fail_at)
        return NULL;
    void *q = realloc(p, n);
    a->live += q && !p;
    return q;
}

static void f_free(void *p, void *ud)
{
    struct alloc_state *a = ud;
    a->live -= p != NULL;
    free(p);
}

struct fz {
    const uint8_t *p; /* remaining input */
    size_t n;
    uint64_t now;
    struct kite_codec_config cfg;
    uint64_t max_frame, max_message; /* the largest limits ever set */
    bool echo, pause, close_cb;
    /* callback observations */
    int closes;
    bool paused;
    bool in_cb;
    /* the peer's view of our output */
    struct kite__frame_parser peer;
    bool peer_mid_frame;
    bool peer_saw_close;
    uint8_t close_payload[125];
    size_t close_len;
    /* our outgoing fragment sequence, so sends stay well-formed */
    bool frag_open;
    /* parts mode: the message being handed over in parts, gathered here to check it */
    bool parts;
    uint8_t *part_msg;
    uint64_t part_len;
    enum kite_opcode part_type;
};

static const uint64_t limits[8] = {0, 1, 125, 126, 1000, 65535, 65536, 1u << 20};

static bool take(struct fz *z, uint8_t *b)
{
    if (!z->n)
        return false;
    *b = *z->p++;
    z->n--;
    return true;
}

static int on_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                      size_t len, void *ud)
{
    struct fz *z = ud;
    CHECK(!z->closes && !z->in_cb);
    CHECK(type == KITE_OP_TEXT || type == KITE_OP_BINARY);
    CHECK(len <= z->max_message);
    CHECK(!z->parts || len < 126 || z->cfg.mode == KITE_MODE_RAW || z->cfg.extensions);
    if (type == KITE_OP_TEXT)
        CHECK(kite_utf8_valid(data, len));
    z->in_cb = true;
    if (z->echo && !z->frag_open) { /* no new message inside our fragmented one (§5.4) */
        int rc = kite_codec_send(c, type, data, len);
        CHECK(rc == KITE_OK || rc == KITE_ERR_CLOSED || rc == KITE_ERR_NOMEM ||
              rc == KITE_ERR_CRYPTO);
    }
    if (z->close_cb && len && data[0] == 'q')
        kite_codec_close(c, 1000, "q", z->now);
    z->in_cb = false;
    if (z->pause)
        z->paused = true;
    return z->pause ? KITE_PAUSE : KITE_OK;
}

static int on_message_part(struct kite_codec *c, const struct kite_msg_part *p, void *ud)
{
    struct fz *z = ud;
    (void)c;
    CHECK(z->parts && !z->closes && !z->in_cb);
    CHECK(p->type == KITE_OP_TEXT || p->type == KITE_OP_BINARY);
    CHECK(p->offset == z->part_len);
    CHECK(p->len > 0 || p->last);
    if (p->offset == 0)
        z->part_type = p->type;
    CHECK(p->type == z->part_type);
    CHECK(z->part_len + p->len <= z->max_message);
    /* Limits are at most 1 MiB (limits[]): the whole message fits in part_msg. */
    if (p->len)
        memcpy(z->part_msg + z->part_len, p->data, p->len);
    z->part_len += p->len;
    if (p->last) {
        CHECK(z->part_len >= 126);
        if (p->type == KITE_OP_TEXT)
            CHECK(kite_utf8_valid(z->part_msg, (size_t)z->part_len));
        z->part_len = 0;
    }
    if (z->pause)
        z->paused = true;
    return z->pause ? KITE_PAUSE : KITE_OK;
}

static int on_frame(struct kite_codec *c, const struct kite_frame *f, void *ud)
{
    struct fz *z = ud;
    CHECK(!z->closes && !z->in_cb);
    CHECK(f->len <= z->max_frame);
    CHECK(!(f->rsv & ~z->cfg.rsv_allowed));
    z->in_cb = true;
    if (z->close_cb && f->opcode == KITE_OP_CLOSE)
        kite_codec_send_frame(c, KITE_OP_CLOSE, true, 0, f->data, f->len);
    z->in_cb = false;
    if (z->pause)
        z->paused = true;
    return z->pause ? KITE_PAUSE : KITE_OK;
}

static void on_control(struct kite_codec *c, enum kite_opcode op, const uint8_t *data,
                       size_t len, void *ud)
{
    struct fz *z = ud;
    CHECK(!z->closes && !z->in_cb);
    CHECK(op == KITE_OP_PING || op == KITE_OP_PONG);
    CHECK(len <= 125);
}

static void on_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    struct fz *z = ud;
    CHECK(!z->closes && !z->in_cb);
    z->closes++;
    CHECK(kite_codec_is_closed(c));
    CHECK(kite_codec_close_info(c) != NULL);
    CHECK(ci->reason_len <= KITE_CLOSE_REASON_MAX && ci->reason[ci->reason_len] == '\0');
    CHECK(kite_utf8_valid((const uint8_t *)ci->reason, ci->reason_len));
    CHECK(ci->initiator <= KITE_CLOSED_BY_PEER);
    if (ci->initiator == KITE_CLOSED_BY_NONE)
        CHECK(ci->code == KITE_CLOSE_ABNORMAL && !ci->clean);
    CHECK(kite_codec_send(c, KITE_OP_TEXT, "x", 1) == KITE_ERR_CLOSED);
}

static const struct kite_codec_callbacks callbacks = {
    .on_message = on_message,
    .on_frame = on_frame,
    .on_control = on_control,
    .on_close = on_close,
};
static const struct kite_codec_callbacks parts_callbacks = {
    .on_message = on_message,
    .on_frame = on_frame,
    .on_control = on_control,
    .on_close = on_close,
    .on_message_part = on_message_part,
};

/* Parse `n` bytes of our output as the peer does. */
static void peer_parse(struct fz *z, const uint8_t *out, size_t n)
{
    if (!n)
        return;
    uint8_t *copy = malloc(n);
    CHECK(copy);
    memcpy(copy, out, n);
    size_t off = 0;
    for (;;) {
        size_t used = 0;
        struct kite__frame_event ev;
        enum kite__fev e = kite__frame_parse(&z->peer, copy + off, n - off, &used, &ev);
        off += used;
        CHECK(e != KITE__FEV_ERROR);
        if (e == KITE__FEV_NEED_MORE)
            break;
        if (e == KITE__FEV_HEADER) {
            CHECK(!z->peer_saw_close); /* §5.5.1: nothing after a close frame */
            z->peer_mid_frame = true;
            z->close_len = 0;
            continue;
        }
        if (z->peer.hdr.opcode == KITE_OP_CLOSE) {
            memcpy(z->close_payload + z->close_len, ev.data, ev.len);
            z->close_len += ev.len;
        }
        if (ev.frame_end) {
            z->peer_mid_frame = false;
            if (z->peer.hdr.opcode == KITE_OP_CLOSE) {
                z->peer_saw_close = true;
                /* Our own closes carry a valid payload (raw mode may echo anything). */
                uint16_t code;
                const uint8_t *r;
                size_t rl;
                if (z->cfg.mode == KITE_MODE_DEFAULT)
                    CHECK(kite__close_parse(z->close_payload, z->close_len, &code, &r, &rl) ==
                          0);
            }
        }
    }
    CHECK(off == n);
    free(copy);
}

static void consume(struct fz *z, struct kite_codec *c, unsigned frac)
{
    const uint8_t *out;
    size_t n = kite_codec_pending(c, &out);
    size_t k = frac >= 31 ? n : n * frac / 31;
    peer_parse(z, out, k);
    kite_codec_consume(c, k);
}

static void feed(struct fz *z, struct kite_codec *c, const uint8_t *bytes, size_t len)
{
    uint8_t *in = malloc(len ? len : 1);
    CHECK(in);
    memcpy(in, bytes, len);
    size_t pos = 0;
    while (pos < len) {
        z->paused = false;
        ssize_t r = kite_codec_recv(c, in + pos, len - pos, z->now);
        if (r < 0) {
            CHECK(r == KITE_ERR_NOMEM || r == KITE_ERR_CRYPTO);
            CHECK(kite_codec_is_closed(c));
            break;
        }
        CHECK((size_t)r <= len - pos);
        pos += (size_t)r;
        if (pos < len && !z->paused) {
            /* Stopped: closed, or (raw) the peer's close arrived. */
            CHECK(kite_codec_recv(c, in + pos, len - pos, z->now) == 0);
            break;
        }
    }
    free(in);
}

static void feed_raw(struct fz *z, struct kite_codec *c, size_t want)
{
    size_t len = want < z->n ? want : z->n;
    feed(z, c, z->p, len);
    z->p += len;
    z->n -= len;
}

/* A well-formed frame from the fuzzer's bytes: it picks the header, we do the masking. */
static void feed_frame(struct fz *z, struct kite_codec *c)
{
    uint8_t first, len8, frame[14 + 255];
    if (!take(z, &first) || !take(z, &len8))
        return;
    size_t len = KITE_MIN((size_t)len8, z->n);
    bool mask = z->cfg.role == KITE_ROLE_SERVER;
    uint8_t key[4] = {0x12, 0x34, 0x56, (uint8_t)len};
    size_t h = kite__frame_write_header(frame, first, len, mask ? key : NULL);
    if (mask)
        kite__mask_copy(frame + h, z->p, len, key, 0);
    else
        memcpy(frame + h, z->p, len);
    z->p += len;
    z->n -= len;
    feed(z, c, frame, h + len);
}

static void send_something(struct fz *z, struct kite_codec *c, unsigned arg)
{
    static const char text[] = "kite fuzz payload \xce\xba\xe2\x82\xac";
    size_t len = arg % sizeof(text);
    bool closed = kite_codec_close_sent(c) || kite_codec_is_closed(c);
    int rc;
    switch (arg & 7) {
    case 0:
    case 1:
        if (z->frag_open)
            return;
        rc = kite_codec_send(c, arg & 1 ? KITE_OP_BINARY : KITE_OP_TEXT, text, len);
        break;
    case 2:
        rc = kite_codec_ping(c, text, len);
        break;
    case 3: /* a fragment: first, middle or last as our sequence requires */
        rc = kite_codec_send_frame(c, z->frag_open ? KITE_OP_CONTINUATION : KITE_OP_BINARY,
                                   arg & 8, 0, text, len);
        if (rc == KITE_OK)
            z->frag_open = !(arg & 8);
        break;
    case 4:
        rc = kite_codec_send_frame(c, KITE_OP_CLOSE, true, 0, "\x03\xe8ok", arg & 8 ? 4 : 0);
        break;
    default:
        rc = kite_codec_send_frame(c, KITE_OP_PONG, true, 0, text, len);
        break;
    }
    if (closed)
        CHECK(rc == KITE_ERR_CLOSED);
    else
        CHECK(rc == KITE_OK || rc == KITE_ERR_NOMEM || rc == KITE_ERR_CRYPTO);
}

static void close_with(struct fz *z, struct kite_codec *c, unsigned arg)
{
    static const unsigned codes[8] = {1000, 1001, 0, 4000, 1011, 1005, 3000, 999};
    unsigned code = codes[arg & 7];
    bool closed = kite_codec_close_sent(c) || kite_codec_is_closed(c);
    int rc = kite_codec_close(c, code, arg & 8 ? "going away, with a reason" : NULL, z->now);
    if (closed)
        CHECK(rc == KITE_ERR_CLOSED);
    else if (code == 1005 || code == 999)
        CHECK(rc == KITE_ERR_INVALID);
    else
        CHECK(rc == KITE_OK || rc == KITE_ERR_NOMEM || rc == KITE_ERR_CRYPTO);
}

static void setup(struct fz *z, const uint8_t hdr[4], struct kite_allocator *a)
{
    kite_codec_config_init(&z->cfg);
    z->cfg.role = hdr[0] & 1 ? KITE_ROLE_CLIENT : KITE_ROLE_SERVER;
    z->cfg.mode = hdr[0] & 2 ? KITE_MODE_RAW : KITE_MODE_DEFAULT;
    z->cfg.options.masking = (hdr[0] & 4) == 0;
    z->cfg.rsv_allowed = (uint8_t)(((hdr[0] >> 3) & 7) << 4);
    z->echo = (hdr[0] & 0x40) != 0;
    z->pause = (hdr[0] & 0x80) != 0;
    z->cfg.options.max_frame_size = limits[hdr[1] & 7];
    z->cfg.options.max_message_size = limits[(hdr[1] >> 3) & 7];
    if (hdr[1] & 0x40)
        z->cfg.options.ping_period_ms = 1 + (hdr[2] & 15) * 10u;
    z->cfg.options.timeout_ms = 1 + (hdr[2] >> 4) * 10u;
    z->close_cb = (hdr[1] & 0x80) != 0;
    z->max_frame = z->cfg.options.max_frame_size;
    z->max_message = z->cfg.options.max_message_size;
    z->cfg.allocator = a;
    /* The peer's parser: the opposite role, any rsv bit, no size limit. */
    enum kite_role peer_role =
        z->cfg.role == KITE_ROLE_SERVER ? KITE_ROLE_CLIENT : KITE_ROLE_SERVER;
    kite__frame_parser_init(&z->peer, peer_role, UINT64_MAX, KITE_RSV_MASK, true);
}

/* Limits already promised to a frame or message in progress may be larger than new ones:
 * the checks use the largest limits ever set. */
static void new_options(struct fz *z, struct kite_codec *c)
{
    uint8_t b;
    if (!take(z, &b))
        return;
    struct kite_ws_options o = *kite_codec_options(c);
    o.max_frame_size = limits[b & 7];
    o.max_message_size = limits[(b >> 3) & 7];
    o.ping_period_ms = b & 0x40 ? 5 : 0;
    o.timeout_ms = b & 0x80 ? 0 : 20;
    int rc = kite_codec_set_options(c, &o, z->now);
    CHECK(rc == (o.timeout_ms ? KITE_OK : KITE_ERR_INVALID));
    if (rc != KITE_OK)
        return;
    z->cfg.options = o;
    z->max_frame = KITE_MAX(z->max_frame, o.max_frame_size);
    z->max_message = KITE_MAX(z->max_message, o.max_message_size);
    CHECK(kite_codec_options(c)->max_frame_size == o.max_frame_size);
}

static void step(struct fz *z, struct kite_codec *c, uint8_t cmd)
{
    unsigned arg = cmd >> 3;
    switch (cmd & 7) {
    case 0: feed_raw(z, c, arg + 1); break;
    case 1: feed_raw(z, c, (arg + 1) * 37u); break;
    case 2: feed_frame(z, c); break;
    case 3:
        z->now += arg * 13u;
        kite_codec_tick(c, z->now);
        break;
    case 4: consume(z, c, arg); break;
    case 5: send_something(z, c, arg); break;
    case 6: close_with(z, c, arg); break;
    default:
        if (arg == 31)
            kite_codec_transport_closed(c, -104);
        else if (arg == 30)
            new_options(z, c);
        else
            feed_raw(z, c, arg);
        break;
    }
    uint64_t t = kite_codec_next_timer(c);
    if (kite_codec_is_closed(c))
        CHECK(t == UINT64_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    static struct fz zs;
    struct fz *z = &zs;
    memset(z, 0, sizeof(*z));
    struct alloc_state as = {.fail_at = data[3] & 0x7f};
    struct kite_allocator a = {f_malloc, f_realloc, f_free, &as};
    setup(z, data, &a);
    z->p = data + 4;
    z->n = size - 4;
    z->now = 1000;
    z->parts = (data[3] & 0x80) != 0;
    static uint8_t part_msg[1u << 20];
    z->part_msg = part_msg;
    z->cfg.options.part_threshold = 126;
    struct kite_codec *c =
        kite_codec_new(&z->cfg, z->parts ? &parts_callbacks : &callbacks, z, z->now);
    if (!c) {
        CHECK(as.live == 0);
        return 0;
    }
    uint8_t cmd;
    while (take(z, &cmd))
        step(z, c, cmd);
    /* Everything we queued is whole frames. */
    consume(z, c, 31);
    CHECK(!z->peer_mid_frame);
    kite_codec_transport_closed(c, 0);
    CHECK(z->closes == 1);
    kite_codec_free(c);
    CHECK(as.live == 0);
    return 0;
}

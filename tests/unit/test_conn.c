/*
 * Unit tests for the per-connection protocol state machine (src/codec/conn.c):
 * RFC 6455 §5 (framing, fragmentation, control frames), §7 (closing), §8 (errors).
 *
 * Most tests are scripted scenarios: a list of steps (bytes in, ticks, sends, closes,
 * transport end) run against a codec while every callback and every result goes into a
 * text log, and the output is decoded frame by frame into the same kind of log. Each
 * scenario is then replayed with every FEED step split at every offset, and one byte
 * at a time: the log and the decoded output must not change (input may be split
 * anywhere, §5.4 / TCP).
 */
#include <stdarg.h>

#include "codec/conn_internal.h"
#include "test.h"

#define KEY_A 0x37, 0xfa, 0x21, 0x3d
static const uint8_t KEY[4] = {KEY_A};

/* ------------------------------------------------------------------------------------
 * Frames, built here independently of the codec's writer
 */

static size_t mkframe(uint8_t *o, unsigned first, const void *data, size_t len,
                      const uint8_t *key)
{
    size_t n = 0;
    uint8_t mbit = key ? 0x80 : 0;
    o[n++] = (uint8_t)first;
    if (len < 126) {
        o[n++] = (uint8_t)(mbit | len);
    } else if (len <= 0xFFFF) {
        o[n++] = mbit | 126;
        o[n++] = (uint8_t)(len >> 8);
        o[n++] = (uint8_t)len;
    } else {
        o[n++] = mbit | 127;
        for (int i = 7; i >= 0; i--)
            o[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (key) {
        memcpy(o + n, key, 4);
        n += 4;
    }
    const uint8_t *d = data;
    for (size_t i = 0; i < len; i++)
        o[n + i] = key ? d[i] ^ key[i % 4] : d[i];
    return n + len;
}

/* ------------------------------------------------------------------------------------
 * The log
 */

struct log {
    char s[16384];
    size_t n;
};

__attribute__((format(printf, 2, 3))) static void logf_(struct log *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(l->s + l->n, sizeof(l->s) - l->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        l->n = KITE_MIN(l->n + (size_t)k, sizeof(l->s) - 1);
}

/* Payload as hex (short ones) or length and FNV-1a hash (long ones). */
static void log_bytes(struct log *l, const uint8_t *p, size_t n)
{
    if (n > 40) {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < n; i++)
            h = (h ^ p[i]) * 16777619u;
        logf_(l, "#%08x", h);
        return;
    }
    for (size_t i = 0; i < n; i++)
        logf_(l, "%02x", p[i]);
}

/* ------------------------------------------------------------------------------------
 * Scenarios
 */

enum step_kind { S_FEED, S_TICK, S_CLOSE, S_SEND, S_FRAME, S_EOF, S_CONSUME };

struct step {
    enum step_kind kind;
    uint64_t t;
    size_t off, len;   /* FEED, SEND, FRAME: bytes in scen.buf */
    unsigned a, b;     /* CLOSE: code; SEND: opcode; FRAME: opcode, fin; EOF: err */
    const char *reason; /* CLOSE */
};

struct scen {
    struct kite_codec_config cfg;
    struct step steps[64];
    int nsteps;
    uint8_t buf[1 << 17];
    size_t used;
    uint64_t t; /* time of the next step */
    /* what the callbacks do */
    bool echo;             /* send every message back */
    const char *close_on;  /* close(1000, "bye") when a text message equals this */
    bool pause;            /* return KITE_PAUSE from on_message / on_frame */
    bool raw_reply_close;  /* raw: answer a close frame with the same payload */
    bool close_in_control; /* close(1001) from on_control */
    const uint8_t *input_base; /* set by the runner: the current feed buffer */
    size_t input_len;
};

static void scen_init(struct scen *s, enum kite_role role, enum kite_mode mode)
{
    memset(s, 0, sizeof(*s));
    kite_codec_config_init(&s->cfg);
    s->cfg.role = role;
    s->cfg.mode = mode;
    s->t = 1000;
}

static struct step *add_step(struct scen *s, enum step_kind k)
{
    ASSERT(s->nsteps < (int)KITE_ARRAY_LEN(s->steps));
    struct step *st = &s->steps[s->nsteps++];
    memset(st, 0, sizeof(*st));
    st->kind = k;
    st->t = s->t;
    st->off = s->used;
    return st;
}

/* Append a frame from the peer to the current FEED step (masked when we are a server). */
static void in_frame_k(struct scen *s, unsigned first, const void *data, size_t len,
                       const uint8_t *key)
{
    struct step *st = s->nsteps ? &s->steps[s->nsteps - 1] : NULL;
    if (!st || st->kind != S_FEED || st->t != s->t)
        st = add_step(s, S_FEED);
    ASSERT(s->used + len + 14 <= sizeof(s->buf));
    size_t n = mkframe(s->buf + s->used, first, data, len, key);
    s->used += n;
    st->len += n;
}

static void in_frame(struct scen *s, unsigned first, const void *data, size_t len)
{
    in_frame_k(s, first, data, len, s->cfg.role == KITE_ROLE_SERVER ? KEY : NULL);
}

static void in_text(struct scen *s, const char *txt)
{
    in_frame(s, 0x81, txt, strlen(txt));
}

/* Raw bytes from the peer. */
static void in_bytes(struct scen *s, const void *p, size_t n)
{
    struct step *st = s->nsteps ? &s->steps[s->nsteps - 1] : NULL;
    if (!st || st->kind != S_FEED || st->t != s->t)
        st = add_step(s, S_FEED);
    memcpy(s->buf + s->used, p, n);
    s->used += n;
    st->len += n;
}

static void in_close(struct scen *s, unsigned code, const char *reason)
{
    uint8_t p[130] = {0};
    size_t n = 0;
    if (code) {
        p[0] = (uint8_t)(code >> 8);
        p[1] = (uint8_t)code;
        n = 2 + strlen(reason);
        memcpy(p + 2, reason, n - 2);
    }
    in_frame(s, 0x88, p, n);
}

static void do_tick(struct scen *s, uint64_t t)
{
    s->t = t;
    add_step(s, S_TICK);
}

static void do_close(struct scen *s, unsigned code, const char *reason)
{
    struct step *st = add_step(s, S_CLOSE);
    st->a = code;
    st->reason = reason;
}

static void do_send(struct scen *s, unsigned op, const void *p, size_t n)
{
    struct step *st = add_step(s, S_SEND);
    st->a = op;
    memcpy(s->buf + s->used, p, n);
    st->len = n;
    s->used += n;
}

static void do_frame(struct scen *s, unsigned op, bool fin, const void *p, size_t n)
{
    do_send(s, op, p, n);
    s->steps[s->nsteps - 1].kind = S_FRAME;
    s->steps[s->nsteps - 1].b = fin;
}

static void do_eof(struct scen *s, int err)
{
    struct step *st = add_step(s, S_EOF);
    st->a = (unsigned)err;
}

/* Consume (and decode into the log) the output so far. */
static void do_consume(struct scen *s)
{
    add_step(s, S_CONSUME);
}

/* ------------------------------------------------------------------------------------
 * The runner
 */

struct ctx {
    struct scen *s;
    struct log *log;
    int closes;       /* on_close calls */
    int after_close;  /* callbacks after on_close (must stay 0) */
    bool zero_copy;   /* last message's data pointed into the input */
};

static const char *opname(unsigned op)
{
    switch (op) {
    case KITE_OP_CONTINUATION: return "CONT";
    case KITE_OP_TEXT: return "TEXT";
    case KITE_OP_BINARY: return "BIN";
    case KITE_OP_CLOSE: return "CLOSE";
    case KITE_OP_PING: return "PING";
    case KITE_OP_PONG: return "PONG";
    default: return "?";
    }
}

static int cb_message(struct kite_codec *c, enum kite_opcode type, const uint8_t *data,
                      size_t len, void *ud)
{
    struct ctx *x = ud;
    if (x->closes)
        x->after_close++;
    x->zero_copy = len && data >= x->s->input_base && data < x->s->input_base + x->s->input_len;
    logf_(x->log, "msg %s ", opname(type));
    log_bytes(x->log, data, len);
    logf_(x->log, "\n");
    if (x->s->echo) {
        int rc = kite_codec_send(c, type, data, len);
        if (rc)
            logf_(x->log, "echo rc=%d\n", rc);
    }
    if (x->s->close_on && type == KITE_OP_TEXT && len == strlen(x->s->close_on) &&
        memcmp(data, x->s->close_on, len) == 0)
        logf_(x->log, "close rc=%d\n", kite_codec_close(c, 1000, "bye", x->s->t));
    return x->s->pause ? KITE_PAUSE : KITE_OK;
}

static int cb_frame(struct kite_codec *c, const struct kite_frame *f, void *ud)
{
    struct ctx *x = ud;
    if (x->closes)
        x->after_close++;
    logf_(x->log, "frame %s fin=%d rsv=%x ", opname(f->opcode), f->fin, f->rsv);
    log_bytes(x->log, f->data, f->len);
    logf_(x->log, "\n");
    if (x->s->raw_reply_close && f->opcode == KITE_OP_CLOSE) {
        int rc = kite_codec_send_frame(c, KITE_OP_CLOSE, true, 0, f->data, f->len);
        logf_(x->log, "reply rc=%d closed=%d\n", rc, kite_codec_is_closed(c));
        /* The frame's data must still be readable after the reply (re-entrancy). */
        log_bytes(x->log, f->data, f->len);
        logf_(x->log, "\n");
    }
    return x->s->pause ? KITE_PAUSE : KITE_OK;
}

static void cb_control(struct kite_codec *c, enum kite_opcode op, const uint8_t *data,
                       size_t len, void *ud)
{
    struct ctx *x = ud;
    if (x->closes)
        x->after_close++;
    logf_(x->log, "ctl %s ", opname(op));
    log_bytes(x->log, data, len);
    logf_(x->log, "\n");
    if (x->s->close_in_control)
        logf_(x->log, "close rc=%d\n", kite_codec_close(c, 1001, "away", x->s->t));
}

static void cb_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    struct ctx *x = ud;
    x->closes++;
    ASSERT(kite_codec_is_closed(c));
    const struct kite_close_info *kept = kite_codec_close_info(c);
    ASSERT(kept != NULL);
    ASSERT_EQ(kept->code, ci->code);
    ASSERT_EQ(strlen(ci->reason), ci->reason_len);
    ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, "x", 1), KITE_ERR_CLOSED);
    logf_(x->log, "on_close by=%d code=%u clean=%d err=%d reason=%s\n", ci->initiator,
          ci->code, ci->clean, ci->error, ci->reason);
}

static const struct kite_codec_callbacks cbs = {
    .on_message = cb_message,
    .on_frame = cb_frame,
    .on_control = cb_control,
    .on_close = cb_close,
};

/* Decode our output as the peer would; log each frame. A server never masks (§5.1), a
 * client always does (§5.3): check the mask bit here. */
static void decode_output(struct kite_codec *c, bool client, struct log *l)
{
    const uint8_t *p;
    size_t n = kite_codec_pending(c, &p);
    size_t i = 0;
    while (i < n) {
        ASSERT(n - i >= 2);
        uint8_t b0 = p[i], b1 = p[i + 1];
        uint64_t len = b1 & 0x7F;
        size_t h = 2;
        if (len == 126) {
            len = (uint64_t)p[i + 2] << 8 | p[i + 3];
            h = 4;
            ASSERT(len >= 126);
        } else if (len == 127) {
            len = 0;
            for (int k = 0; k < 8; k++)
                len = len << 8 | p[i + 2 + k];
            h = 10;
            ASSERT(len > 0xFFFF);
        }
        bool masked = (b1 & 0x80) != 0;
        ASSERT_EQ(masked, client);
        const uint8_t *key = masked ? p + i + h : NULL;
        if (masked)
            h += 4;
        ASSERT(n - i - h >= len);
        uint8_t *pl = malloc(len ? len : 1);
        ASSERT(pl);
        for (size_t k = 0; k < len; k++)
            pl[k] = key ? p[i + h + k] ^ key[k % 4] : p[i + h + k];
        logf_(l, "out %s fin=%d rsv=%x ", opname(b0 & 0xF), b0 >> 7, b0 & 0x70);
        log_bytes(l, pl, len);
        logf_(l, "\n");
        free(pl);
        i += h + len;
    }
    kite_codec_consume(c, n);
}

/* How FEED steps are cut: 0 = whole, k > 0 = at offset k, -1 = byte by byte. */
static bool next_cut(int split, size_t pos, size_t len, size_t *end)
{
    if (pos >= len)
        return false;
    if (split == 0)
        *end = len;
    else if (split < 0)
        *end = pos + 1;
    else
        *end = pos < (size_t)split && (size_t)split < len ? (size_t)split : len;
    return true;
}

static void feed(struct kite_codec *c, struct ctx *x, const struct step *st, int split)
{
    uint8_t *in = malloc(st->len ? st->len : 1);
    ASSERT(in);
    memcpy(in, x->s->buf + st->off, st->len);
    x->s->input_base = in;
    x->s->input_len = st->len;
    size_t pos = 0, end;
    while (next_cut(split, pos, st->len, &end)) {
        while (pos < end) {
            ssize_t r = kite_codec_recv(c, in + pos, end - pos, st->t);
            if (r < 0)
                logf_(x->log, "recv rc=%zd\n", r);
            if (r <= 0)
                goto out;
            ASSERT((size_t)r <= end - pos);
            pos += (size_t)r;
        }
    }
out:
    free(in);
}

static void run_step(struct kite_codec *c, struct ctx *x, const struct step *st, int split)
{
    struct scen *s = x->s;
    x->s->t = st->t;
    switch (st->kind) {
    case S_FEED:
        feed(c, x, st, split);
        break;
    case S_TICK:
        kite_codec_tick(c, st->t);
        break;
    case S_CLOSE:
        logf_(x->log, "close rc=%d\n", kite_codec_close(c, st->a, st->reason, st->t));
        break;
    case S_SEND:
        logf_(x->log, "send rc=%d\n",
              kite_codec_send(c, (enum kite_opcode)st->a, s->buf + st->off, st->len));
        break;
    case S_FRAME:
        logf_(x->log, "send rc=%d\n",
              kite_codec_send_frame(c, (enum kite_opcode)st->a, st->b, 0, s->buf + st->off,
                                    st->len));
        break;
    case S_EOF:
        kite_codec_transport_closed(c, (int)st->a);
        break;
    case S_CONSUME:
        decode_output(c, s->cfg.role == KITE_ROLE_CLIENT, x->log);
        break;
    }
}

/* Run the scenario; returns false if the codec could not be created (OOM runs). */
static bool run(struct scen *s, int split, const struct kite_allocator *a, struct log *l)
{
    struct ctx x = {.s = s, .log = l};
    l->n = 0;
    l->s[0] = '\0';
    s->cfg.allocator = a;
    struct kite_codec *c = kite_codec_new(&s->cfg, &cbs, &x, 0);
    if (!c)
        return false;
    for (int i = 0; i < s->nsteps; i++)
        run_step(c, &x, &s->steps[i], split);
    decode_output(c, s->cfg.role == KITE_ROLE_CLIENT, l);
    ASSERT(x.closes <= 1);
    ASSERT_EQ(x.after_close, 0);
    if (x.closes)
        ASSERT(kite_codec_close_info(c) != NULL);
    else
        ASSERT(kite_codec_close_info(c) == NULL);
    kite_codec_free(c);
    return true;
}

static size_t total_feed(const struct scen *s)
{
    size_t n = 0;
    for (int i = 0; i < s->nsteps; i++)
        if (s->steps[i].kind == S_FEED)
            n = KITE_MAX(n, s->steps[i].len);
    return n;
}

/*
 * Run whole, then split at every offset and byte by byte: the same callbacks, results
 * and output every time. Returns the reference log (static storage).
 */
static const char *check(struct scen *s)
{
    static struct log ref, got;
    ASSERT(run(s, 0, NULL, &ref));
    size_t longest = total_feed(s);
    for (int split = -1; split <= (int)longest; split++) {
        if (split == 0)
            continue;
        ASSERT(run(s, split, NULL, &got));
        if (strcmp(ref.s, got.s) != 0) {
            fprintf(stderr, "# split %d differs\n# whole:\n%s# split:\n%s", split, ref.s, got.s);
            ASSERT(0);
        }
    }
    return ref.s;
}

#define CHECK(s, want)                                                                     \
    do {                                                                                   \
        const char *got_ = check(s);                                                       \
        ASSERT_STREQ(got_, want);                                                          \
    } while (0)

static struct scen *new_scen(enum kite_role role, enum kite_mode mode)
{
    static struct scen s;
    scen_init(&s, role, mode);
    return &s;
}


/*
 * A failed connection (§7.1.7): the log is `before`, then on_close (ours, unclean, with
 * `code` and `err`), then exactly one close frame out, last, carrying the same code and
 * the reason on_close reported. The reason text itself is the parser's business.
 */
static void check_fail(struct scen *s, const char *before, unsigned code, int err)
{
    const char *log = check(s);
    char want[160];
    size_t bl = strlen(before);
    if (strncmp(log, before, bl) != 0)
        kite_test_fail(__FILE__, __LINE__, "log does not start with:\n%s\ngot:\n%s", before, log);
    snprintf(want, sizeof(want), "on_close by=1 code=%u clean=0 err=%d reason=", code, err);
    if (strncmp(log + bl, want, strlen(want)) != 0)
        kite_test_fail(__FILE__, __LINE__, "want %s...\ngot:\n%s", want, log);
    const char *r = log + bl + strlen(want);
    const char *eol = strchr(r, '\n');
    ASSERT(eol != NULL);
    uint8_t payload[2 + KITE_CLOSE_REASON_MAX];
    size_t rlen = (size_t)(eol - r);
    ASSERT(rlen <= KITE_CLOSE_REASON_MAX);
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, r, rlen);
    struct log w = {.n = 0};
    logf_(&w, "out CLOSE fin=1 rsv=0 ");
    log_bytes(&w, payload, 2 + rlen);
    logf_(&w, "\n");
    const char *o = strstr(log, "out CLOSE");
    ASSERT(o != NULL);
    ASSERT_STREQ(o, w.s);
}

/* ------------------------------------------------------------------------------------
 * Default mode: messages
 */

/* §5.6: text and binary data frames are delivered whole, as sent. */
TEST(default_delivers_text_and_binary)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_text(s, "Hello");
    in_frame(s, 0x82, "\x00\x01\xff", 3);
    CHECK(s, "msg TEXT 48656c6c6f\n"
             "msg BIN 0001ff\n");
}

/* §5.2 length encodings: 7-bit, 16-bit and 64-bit lengths all deliver. */
TEST(default_delivers_all_length_encodings)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    in_frame(s, 0x82, big, 125);
    in_frame(s, 0x82, big, 126);
    in_frame(s, 0x82, big, 70000);
    struct log l;
    ASSERT(run(s, 0, NULL, &l));
    struct log want = {.n = 0};
    logf_(&want, "msg BIN ");
    log_bytes(&want, big, 125);
    logf_(&want, "\nmsg BIN ");
    log_bytes(&want, big, 126);
    logf_(&want, "\nmsg BIN ");
    log_bytes(&want, big, 70000);
    logf_(&want, "\n");
    ASSERT_STREQ(l.s, want.s);
    ASSERT(run(s, 1000, NULL, &l)); /* across reads: reassembled */
    ASSERT_STREQ(l.s, want.s);
}

static int zc_seen;
static int zc_message(struct kite_codec *c, enum kite_opcode t, const uint8_t *d, size_t n,
                      void *ud)
{
    const uint8_t *in = ud;
    zc_seen = (d >= in && d < in + 64) ? 1 : -1;
    ASSERT_EQ(n, 5);
    ASSERT_MEMEQ(d, "Hello", 5);
    return KITE_OK;
}

/* The fast path (DESIGN §3): a whole unfragmented frame in the input is handed over as a
 * view of the input, unmasked in place (§5.3), with nothing allocated. */
TEST(default_whole_frame_is_zero_copy)
{
    struct kite_test_alloc st = {0};
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.allocator = kite_test_allocator(&st);
    static const struct kite_codec_callbacks zc = {.on_message = zc_message};
    uint8_t in[64];
    size_t n = mkframe(in, 0x81, "Hello", 5, KEY);
    struct kite_codec *c = kite_codec_new(&cfg, &zc, in, 0);
    ASSERT(c);
    long after_new = st.count;
    for (int i = 0; i < 100; i++) {
        n = mkframe(in, 0x81, "Hello", 5, KEY);
        zc_seen = 0;
        ASSERT_EQ(kite_codec_recv(c, in, n, 0), n);
        ASSERT_EQ(zc_seen, 1);
    }
    ASSERT_EQ(st.count, after_new); /* no allocation at all on this path */
    /* Echo traffic: the output buffer is allocated once and then reused. */
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, "Hello", 5), KITE_OK);
        const uint8_t *p;
        ASSERT_EQ(kite_codec_pending(c, &p), 7);
        kite_codec_consume(c, 7);
    }
    ASSERT_EQ(st.count, after_new + 1);
    kite_codec_free(c);
    ASSERT_EQ(st.live, 0);
}

/* §5.4: fragments are reassembled into one message; control frames may be injected in
 * the middle of a fragmented message and are answered at once (§5.5.2: pong with the
 * ping's payload). */
TEST(default_reassembles_fragments_with_interleaved_ping)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x01, "Hel", 3);
    in_frame(s, 0x89, "ping!", 5);
    in_frame(s, 0x00, "lo ", 3);
    in_frame(s, 0x8A, "unsolicited", 11); /* §5.5.3: a pong may come unsolicited */
    in_frame(s, 0x80, "world", 5);
    in_frame(s, 0x02, "\x01", 1);
    in_frame(s, 0x80, "\x02", 1);
    CHECK(s, "ctl PING 70696e6721\n"
             "ctl PONG 756e736f6c696369746564\n"
             "msg TEXT 48656c6c6f20776f726c64\n"
             "msg BIN 0102\n"
             "out PONG fin=1 rsv=0 70696e6721\n");
}

/* A control frame split across reads while a fragmented message is being reassembled
 * keeps both intact (§5.4, §5.5). */
TEST(default_partial_control_inside_partial_message)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    static char big[300];
    memset(big, 'x', sizeof(big));
    in_frame(s, 0x01, big, 300);
    in_frame(s, 0x89, big, 125);
    in_frame(s, 0x80, "end", 3);
    struct log ref;
    ASSERT(run(s, 0, NULL, &ref));
    struct log l;
    ASSERT(run(s, 310, NULL, &l)); /* cut inside the first fragment */
    ASSERT_STREQ(l.s, ref.s);
    ASSERT(run(s, 350, NULL, &l)); /* cut inside the ping */
    ASSERT_STREQ(l.s, ref.s);
    ASSERT(strstr(ref.s, "ctl PING ") == ref.s);
    ASSERT(strstr(ref.s, "msg TEXT #") != NULL);
    ASSERT(strstr(ref.s, "out PONG fin=1 rsv=0 #") != NULL);
    check(s);
}

/* §5.6/§5.4: empty messages, and empty fragments, are messages like any other. */
TEST(default_zero_length_messages)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x81, "", 0);
    in_frame(s, 0x82, "", 0);
    in_frame(s, 0x01, "", 0);
    in_frame(s, 0x00, "", 0);
    in_frame(s, 0x80, "", 0);
    in_frame(s, 0x89, "", 0);
    CHECK(s, "msg TEXT \n"
             "msg BIN \n"
             "msg TEXT \n"
             "ctl PING \n"
             "out PONG fin=1 rsv=0 \n");
}

/* ------------------------------------------------------------------------------------
 * Default mode: failing the connection (§7.1.7)
 */

/* §8.1, §5.6: text must be UTF-8; otherwise fail with 1007. */
TEST(default_invalid_utf8_fails_1007)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_text(s, "ok");
    in_frame(s, 0x81, "a\xc0\xaf", 3); /* overlong '/' */
    in_text(s, "never seen");
    CHECK(s, "msg TEXT 6f6b\n"
             "on_close by=1 code=1007 clean=0 err=-5101 reason=invalid UTF-8\n"
             "out CLOSE fin=1 rsv=0 03ef696e76616c6964205554462d38\n");
}

/* §8.1 with §5.4: validation is incremental. A bad byte in a middle fragment fails the
 * connection as soon as it arrives, before the final fragment exists. */
TEST(default_utf8_fails_fast_across_fragments)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x01, "a\xce", 2);  /* first half of U+03BA, valid so far */
    in_frame(s, 0x00, "\xba\xf4", 2); /* completes it; F4 starts a 4-byte sequence */
    s->t++;
    in_frame(s, 0x00, "\x90", 1); /* F4 90: above U+10FFFF, impossible */
    const char *want = "on_close by=1 code=1007 clean=0 err=-5101 reason=invalid UTF-8\n"
                       "out CLOSE fin=1 rsv=0 03ef696e76616c6964205554462d38\n";
    CHECK(s, want);
    /* The close is queued after the bad byte, with no final fragment fed at all. */
    struct scen *t = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(t, 0x01, "a\xce", 2);
    in_frame(t, 0x00, "\xce\x41", 2); /* CE followed by an ASCII byte */
    CHECK(t, want);
}

/* §8.1, fail-fast inside one frame: the close is queued when the bad byte arrives, while
 * the rest of the frame's payload is still to come. */
TEST(default_utf8_fails_fast_inside_a_frame)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    uint8_t in[64];
    size_t n = mkframe(in, 0x81, "ab\xff" "cdefghij", 11, KEY);
    ASSERT_EQ(kite_codec_recv(c, in, 6 + 2, 0), 8);
    ASSERT(!kite_codec_is_closed(c));
    ASSERT_EQ(kite_codec_recv(c, in + 8, 1, 0), 1);
    ASSERT(kite_codec_is_closed(c));
    const uint8_t *p;
    ASSERT(kite_codec_pending(c, &p) >= 4);
    ASSERT_EQ(p[0], 0x88);
    ASSERT_EQ(p[2] << 8 | p[3], 1007);
    ASSERT_EQ(kite_codec_recv(c, in + 9, n - 9, 0), 0);
    kite_codec_free(c);
}

/* §8.1: a text message that ends inside a character is invalid too. */
TEST(default_utf8_truncated_at_message_end_fails_1007)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x01, "\xe2\x82", 2);
    in_frame(s, 0x80, "", 0);
    CHECK(s, "on_close by=1 code=1007 clean=0 err=-5101 reason=truncated UTF-8\n"
             "out CLOSE fin=1 rsv=0 03ef7472756e636174656420555446"
             "2d38\n");
}

/* §10.4 / §7.4.1: a frame over max_frame_size fails with 1009 before its payload. */
TEST(default_frame_too_big_fails_1009)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->cfg.options.max_frame_size = 10;
    in_frame(s, 0x82, "0123456789", 10);
    in_frame(s, 0x82, "0123456789A", 11);
    check_fail(s, "msg BIN 30313233343536373839\n", 1009, KITE_ERR_TOO_BIG);
}

/* §10.4: a reassembled message over max_message_size fails with 1009 as soon as a
 * fragment header announces too much. */
TEST(default_message_too_big_fails_1009)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->cfg.options.max_message_size = 8;
    in_frame(s, 0x02, "1234", 4);
    in_frame(s, 0x00, "5678", 4);
    in_frame(s, 0x80, "", 0);
    in_frame(s, 0x02, "1234", 4);
    in_frame(s, 0x00, "5678", 4);
    in_frame(s, 0x00, "9", 1);
    CHECK(s, "msg BIN 3132333435363738\n"
             "on_close by=1 code=1009 clean=0 err=-5102 reason=message too big\n"
             "out CLOSE fin=1 rsv=0 03f16d65737361676520746f6f20626967\n");
}

/* §5.1: a server must fail on an unmasked client frame with 1002... */
TEST(server_refuses_unmasked_frame_1002)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame_k(s, 0x81, "hi", 2, NULL);
    check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
}

/* ...unless masking was turned off for a broken peer (kite_ws_options.masking). */
TEST(server_tolerates_unmasked_when_masking_off)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->cfg.options.masking = false;
    in_frame_k(s, 0x81, "hi", 2, NULL);
    in_frame_k(s, 0x81, "yo", 2, KEY);
    CHECK(s, "msg TEXT 6869\nmsg TEXT 796f\n");
}

/* §5.1: a client must fail on a masked server frame with 1002. */
TEST(client_refuses_masked_frame_1002)
{
    struct scen *s = new_scen(KITE_ROLE_CLIENT, KITE_MODE_DEFAULT);
    in_frame_k(s, 0x81, "hi", 2, KEY);
    check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
}

/* §5.2: reserved opcodes (3-7 data, B-F control) fail with 1002. */
TEST(reserved_opcodes_fail_1002)
{
    static const unsigned ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < KITE_ARRAY_LEN(ops); i++) {
        struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
        in_frame(s, 0x80 | ops[i], "", 0);
        check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
    }
}

/* §5.2: RSV bits without a negotiated extension fail with 1002, in both modes. */
TEST(rsv_bits_fail_1002)
{
    static const unsigned bits[] = {0x40, 0x20, 0x10};
    for (int raw = 0; raw <= 1; raw++) {
        for (size_t i = 0; i < 3; i++) {
            struct scen *s = new_scen(KITE_ROLE_SERVER, raw ? KITE_MODE_RAW : KITE_MODE_DEFAULT);
            in_frame(s, 0x81 | bits[i], "x", 1);
            check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
        }
    }
    /* A claimed bit is allowed on a message's first frame (RFC 7692 §6). */
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_RAW);
    s->cfg.rsv_allowed = KITE_RSV1;
    in_frame(s, 0xC1, "x", 1);
    CHECK(s, "frame TEXT fin=1 rsv=40 78\n");
}

/* §5.4: a continuation with no message in progress, or a new message inside one, 1002. */
TEST(unexpected_continuation_fails_1002)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x80, "x", 1);
    check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
    s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x01, "x", 1);
    in_frame(s, 0x81, "y", 1);
    check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
}

/* §5.2: a 64-bit length with the top bit set, or a non-minimal length, is malformed. */
TEST(bad_lengths_fail_1002)
{
    static const uint8_t top[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, KEY_A};
    static const uint8_t small16[] = {0x82, 0xFE, 0x00, 0x05, KEY_A, 1, 2, 3, 4, 5};
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->cfg.options.max_frame_size = UINT64_MAX;
    in_bytes(s, top, sizeof(top));
    check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
    s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_text(s, "ok");
    in_bytes(s, small16, sizeof(small16));
    check_fail(s, "msg TEXT 6f6b\n", 1002, KITE_ERR_PROTOCOL);
}

/* §5.5: control frames are never fragmented and carry at most 125 bytes. */
TEST(bad_control_frames_fail_1002)
{
    static char big[126];
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x09, "x", 1);
    check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
    s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x89, big, 126);
    check_fail(s, "", 1002, KITE_ERR_PROTOCOL);
}

/* ------------------------------------------------------------------------------------
 * Default mode: the close handshake
 */

/* §5.5.1, §7.4: the peer closes with each code that may be on the wire; we answer with a
 * close echoing the code and the session ends cleanly, the peer having started. Bytes
 * after the close frame are not looked at (§5.5.1: no data after a close). */
TEST(peer_close_each_valid_code_is_echoed)
{
    static const unsigned codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                     1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < KITE_ARRAY_LEN(codes); i++) {
        struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
        in_close(s, codes[i], "bye");
        in_text(s, "after");
        char want[256];
        snprintf(want, sizeof(want),
                 "on_close by=2 code=%u clean=1 err=0 reason=bye\n"
                 "out CLOSE fin=1 rsv=0 %04x\n",
                 codes[i], codes[i]);
        CHECK(s, want);
    }
}

/* §5.5.1: a close without a body; the record says 1005 (§7.1.5) and we echo it: a
 * close frame without a body either. */
TEST(peer_close_without_code)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_close(s, 0, NULL);
    CHECK(s, "on_close by=2 code=1005 clean=1 err=0 reason=\n"
             "out CLOSE fin=1 rsv=0 \n");
}

/* §7.4.1/§7.4.2: codes that must not be on the wire, and a 1-byte body (§5.5.1), are a
 * protocol error: 1002. */
TEST(peer_close_invalid_code_fails_1002)
{
    static const unsigned codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
                                     2999, 5000, 65535};
    const char *want = "on_close by=1 code=1002 clean=0 err=-5100 reason=invalid close frame\n"
                       "out CLOSE fin=1 rsv=0 03ea696e76616c696420636c6f7365206672616d65\n";
    for (size_t i = 0; i < KITE_ARRAY_LEN(codes); i++) {
        struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
        uint8_t p[2] = {(uint8_t)(codes[i] >> 8), (uint8_t)codes[i]};
        in_frame(s, 0x88, p, 2);
        CHECK(s, want);
    }
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_frame(s, 0x88, "\x03", 1);
    CHECK(s, want);
}

/* §5.5.1/§8.1: the close reason is UTF-8; otherwise 1007. */
TEST(peer_close_reason_invalid_utf8_fails_1007)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_close(s, 1000, "ok\xff");
    CHECK(s, "on_close by=1 code=1007 clean=0 err=-5101 reason=invalid UTF-8 in close "
             "reason\n"
             "out CLOSE fin=1 rsv=0 03ef696e76616c6964205554462d3820696e20636c6f736520726561"
             "736f6e\n");
}

/* §7.1.2: we close first; data the peer sends meanwhile is still delivered (§5.5.1: the
 * peer may still be sending); its close completes the handshake cleanly. Nothing can be
 * sent after our close. */
TEST(local_close_handshake_is_clean)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    do_close(s, 1000, "done");
    do_send(s, KITE_OP_TEXT, "late", 4);
    in_text(s, "in flight");
    in_frame(s, 0x89, "p", 1); /* answered? no: nothing is sent after a close */
    in_close(s, 1000, "");
    CHECK(s, "close rc=0\n"
             "send rc=-5103\n"
             "msg TEXT 696e20666c69676874\n"
             "ctl PING 70\n"
             "on_close by=1 code=1000 clean=1 err=0 reason=done\n"
             "out CLOSE fin=1 rsv=0 03e8646f6e65\n");
}

/* §7.1.2 / kite_codec_close rules: invalid codes, a second close, a long reason. */
TEST(local_close_arguments)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    ASSERT_EQ(kite_codec_close(c, 1005, NULL, 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_close(c, 999, NULL, 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_close(c, 1000, "\xff", 0), KITE_ERR_INVALID);
    ASSERT(!kite_codec_close_sent(c));
    /* 200 bytes of 2-byte characters: cut to 122 bytes, not in the middle of one. */
    char reason[201];
    for (int i = 0; i < 200; i += 2)
        memcpy(reason + i, "\xc3\xa9", 2);
    reason[200] = '\0';
    ASSERT_EQ(kite_codec_close(c, 4000, reason, 0), KITE_OK);
    ASSERT(kite_codec_close_sent(c));
    ASSERT_EQ(kite_codec_close(c, 1000, NULL, 0), KITE_ERR_CLOSED);
    const uint8_t *p;
    size_t n = kite_codec_pending(c, &p);
    ASSERT_EQ(n, 2 + 2 + 122);
    ASSERT_EQ(p[1], 124);
    ASSERT(kite_utf8_valid(p + 4, 122));
    kite_codec_transport_closed(c, 0);
    const struct kite_close_info *ci = kite_codec_close_info(c);
    ASSERT(ci);
    ASSERT_EQ(ci->code, 4000);
    ASSERT_EQ(ci->reason_len, 122);
    ASSERT_EQ(ci->initiator, KITE_CLOSED_BY_LOCAL);
    ASSERT(!ci->clean);
    kite_codec_free(c);
}

/* §7.1.1: the peer does not answer our close in time: the session ends unclean with
 * KITE_ERR_TIMEOUT. */
TEST(local_close_timeout)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->cfg.options.timeout_ms = 500;
    do_close(s, 1001, "going");
    do_tick(s, 1499);
    in_text(s, "still");
    do_tick(s, 1500);
    in_close(s, 1000, "too late");
    CHECK(s, "close rc=0\n"
             "msg TEXT 7374696c6c\n"
             "on_close by=1 code=1001 clean=0 err=-5104 reason=going\n"
             "out CLOSE fin=1 rsv=0 03e9676f696e67\n");
}

TEST(local_close_timer_is_reported)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.options.timeout_ms = 700;
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 100);
    ASSERT(c);
    ASSERT_UEQ(kite_codec_next_timer(c), UINT64_MAX);
    ASSERT_EQ(kite_codec_close(c, 1000, NULL, 200), KITE_OK);
    ASSERT_UEQ(kite_codec_next_timer(c), 900);
    kite_codec_tick(c, 899);
    ASSERT(!kite_codec_is_closed(c));
    kite_codec_tick(c, 900);
    ASSERT(kite_codec_is_closed(c));
    ASSERT_UEQ(kite_codec_next_timer(c), UINT64_MAX);
    ASSERT_EQ(kite_codec_close_info(c)->error, KITE_ERR_TIMEOUT);
    kite_codec_free(c);
}

/* ------------------------------------------------------------------------------------
 * Default mode: pings (Ktor's pingPeriod/timeout; §5.5.2, §5.5.3)
 */

/* A ping every period; a pong (any pong, §5.5.3) keeps the session and restarts the
 * period; no pong within timeout_ms fails the session with 1011 "ping timeout". */
TEST(ping_period_and_pong_timeout)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->cfg.options.ping_period_ms = 1000;
    s->cfg.options.timeout_ms = 300;
    do_tick(s, 999); /* created at 0: nothing yet */
    do_tick(s, 1000); /* ping */
    do_consume(s);
    s->t = 1200;
    in_frame(s, 0x8A, "whatever", 8); /* pong: next ping at 2200 */
    do_tick(s, 1300);
    do_tick(s, 2199);
    do_tick(s, 2200); /* ping */
    do_tick(s, 2499);
    do_tick(s, 2500); /* no pong: fail */
    CHECK(s, "out PING fin=1 rsv=0 00000000000003e8\n"
             "ctl PONG 7768617465766572\n"
             "on_close by=1 code=1011 clean=0 err=-5104 reason=ping timeout\n"
             "out PING fin=1 rsv=0 0000000000000898\n"
             "out CLOSE fin=1 rsv=0 03f370696e672074696d656f7574\n");
}

TEST(ping_timers_are_reported)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.options.ping_period_ms = 1000;
    cfg.options.timeout_ms = 300;
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 50);
    ASSERT(c);
    ASSERT_UEQ(kite_codec_next_timer(c), 1050);
    kite_codec_tick(c, 1050);
    ASSERT_UEQ(kite_codec_next_timer(c), 1350);
    uint8_t in[32];
    size_t n = mkframe(in, 0x8A, "", 0, KEY);
    ASSERT_EQ(kite_codec_recv(c, in, n, 1100), n);
    ASSERT_UEQ(kite_codec_next_timer(c), 2100);
    /* Options changed on a live session take effect from now. */
    struct kite_ws_options o = *kite_codec_options(c);
    o.ping_period_ms = 0;
    ASSERT_EQ(kite_codec_set_options(c, &o, 1200), KITE_OK);
    ASSERT_UEQ(kite_codec_next_timer(c), UINT64_MAX);
    o.ping_period_ms = 10;
    ASSERT_EQ(kite_codec_set_options(c, &o, 1200), KITE_OK);
    ASSERT_UEQ(kite_codec_next_timer(c), 1210);
    o.timeout_ms = 0;
    ASSERT_EQ(kite_codec_set_options(c, &o, 1200), KITE_ERR_INVALID);
    kite_codec_free(c);
}

/* A connection with no ping period sends nothing by itself and wants no timer. */
TEST(no_ping_period_no_timer)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    do_tick(s, 1000000);
    CHECK(s, "");
}

/* ------------------------------------------------------------------------------------
 * Raw mode (Ktor's webSocketRaw)
 */

/* Every frame, control frames and fragments included, goes to on_frame as it is; the
 * codec answers nothing (no pong, no close reply) and never pings. */
TEST(raw_hands_over_every_frame_and_sends_nothing)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_RAW);
    s->cfg.options.ping_period_ms = 100;
    in_frame(s, 0x01, "He", 2);
    in_frame(s, 0x89, "p", 1);
    in_frame(s, 0x80, "llo", 3);
    in_frame(s, 0x8A, "q", 1);
    in_frame(s, 0x82, "", 0);
    in_frame(s, 0x81, "\xff", 1); /* raw mode does not judge text */
    do_tick(s, 5000);
    in_close(s, 1000, "x");
    in_text(s, "not looked at");
    CHECK(s, "frame TEXT fin=0 rsv=0 4865\n"
             "frame PING fin=1 rsv=0 70\n"
             "frame CONT fin=1 rsv=0 6c6c6f\n"
             "frame PONG fin=1 rsv=0 71\n"
             "frame BIN fin=1 rsv=0 \n"
             "frame TEXT fin=1 rsv=0 ff\n"
             "frame CLOSE fin=1 rsv=0 03e878\n");
}

/* Raw mode still enforces the frame-size limit (1009). */
TEST(raw_frame_too_big_fails_1009)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_RAW);
    s->cfg.options.max_frame_size = 4;
    in_frame(s, 0x82, "1234", 4);
    in_frame(s, 0x82, "12345", 5);
    check_fail(s, "frame BIN fin=1 rsv=0 31323334\n", 1009, KITE_ERR_TOO_BIG);
}

/* The raw close sequence, peer first: the caller answers from on_frame; on_close fires
 * after on_frame returns, clean, started by the peer. */
TEST(raw_close_sequence_peer_first)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_RAW);
    s->raw_reply_close = true;
    in_close(s, 4321, "raw");
    CHECK(s, "frame CLOSE fin=1 rsv=0 10e1726177\n"
             "reply rc=0 closed=0\n"
             "10e1726177\n"
             "on_close by=2 code=4321 clean=1 err=0 reason=raw\n"
             "out CLOSE fin=1 rsv=0 10e1726177\n");
}

/* The raw close sequence, peer first, answered later (outside the callback). */
TEST(raw_close_sequence_answered_later)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_RAW);
    in_close(s, 1000, "");
    do_frame(s, KITE_OP_CLOSE, true, "\x03\xe8", 2);
    CHECK(s, "frame CLOSE fin=1 rsv=0 03e8\n"
             "on_close by=2 code=1000 clean=1 err=0 reason=\n"
             "send rc=0\n"
             "out CLOSE fin=1 rsv=0 03e8\n");
}

/* The raw close sequence, us first: frames keep coming until the peer's close; then the
 * session is clean. A close timeout still applies (next test). */
TEST(raw_close_sequence_local_first)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_RAW);
    do_frame(s, KITE_OP_CLOSE, true, "\x03\xe9gone", 6);
    do_frame(s, KITE_OP_PING, true, "", 0);
    in_text(s, "x");
    in_close(s, 1001, "");
    CHECK(s, "send rc=0\n"
             "send rc=-5103\n"
             "frame TEXT fin=1 rsv=0 78\n"
             "frame CLOSE fin=1 rsv=0 03e9\n"
             "on_close by=1 code=1001 clean=1 err=0 reason=gone\n"
             "out CLOSE fin=1 rsv=0 03e9676f6e65\n");
}

/* The close timer of a close sent with kite_codec_send_frame (which has no clock) starts
 * at the next time input: next_timer() says "now" until then. */
TEST(raw_close_timeout)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.mode = KITE_MODE_RAW;
    cfg.options.timeout_ms = 100;
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    ASSERT_UEQ(kite_codec_next_timer(c), UINT64_MAX);
    ASSERT_EQ(kite_codec_send_frame(c, KITE_OP_CLOSE, true, 0, NULL, 0), KITE_OK);
    ASSERT_UEQ(kite_codec_next_timer(c), 0);
    kite_codec_tick(c, 5000);
    ASSERT_UEQ(kite_codec_next_timer(c), 5100);
    kite_codec_tick(c, 5099);
    ASSERT(!kite_codec_is_closed(c));
    kite_codec_tick(c, 5100);
    ASSERT(kite_codec_is_closed(c));
    const struct kite_close_info *ci = kite_codec_close_info(c);
    ASSERT_EQ(ci->code, 1005);
    ASSERT_EQ(ci->initiator, KITE_CLOSED_BY_LOCAL);
    ASSERT_EQ(ci->error, KITE_ERR_TIMEOUT);
    ASSERT(!ci->clean);
    kite_codec_free(c);
}

/* ------------------------------------------------------------------------------------
 * Client role
 */

/* §5.3: a client masks every frame with a fresh key; the peer unmasks it right. */
TEST(client_masks_its_frames)
{
    struct scen *s = new_scen(KITE_ROLE_CLIENT, KITE_MODE_DEFAULT);
    static uint8_t big[300];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)i;
    do_send(s, KITE_OP_TEXT, "Hello", 5);
    do_send(s, KITE_OP_BINARY, big, 300);
    do_frame(s, KITE_OP_PING, true, "p", 1);
    in_frame(s, 0x81, "from server", 11);
    in_frame(s, 0x89, "sp", 2);
    do_close(s, 1000, "");
    in_close(s, 1000, "");
    struct log want = {.n = 0};
    logf_(&want, "send rc=0\nsend rc=0\nsend rc=0\nmsg TEXT 66726f6d20736572766572\n"
                 "ctl PING 7370\nclose rc=0\n"
                 "on_close by=1 code=1000 clean=1 err=0 reason=\n"
                 "out TEXT fin=1 rsv=0 48656c6c6f\nout BIN fin=1 rsv=0 ");
    log_bytes(&want, big, 300);
    logf_(&want, "\nout PING fin=1 rsv=0 70\nout PONG fin=1 rsv=0 7370\n"
                 "out CLOSE fin=1 rsv=0 03e8\n");
    CHECK(s, want.s); /* decode_output asserts the mask bit of every frame */

    /* Fresh keys: two identical frames do not come out identical. */
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.role = KITE_ROLE_CLIENT;
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    int same = 0;
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(kite_codec_send(c, KITE_OP_BINARY, "abcd", 4), KITE_OK);
        ASSERT_EQ(kite_codec_send(c, KITE_OP_BINARY, "abcd", 4), KITE_OK);
        const uint8_t *p;
        ASSERT_EQ(kite_codec_pending(c, &p), 20);
        ASSERT_EQ(p[1], 0x84);
        same += memcmp(p + 2, p + 12, 8) == 0;
        kite_codec_consume(c, 20);
    }
    ASSERT(same < 2);
    kite_codec_free(c);
}

/* ------------------------------------------------------------------------------------
 * Transport end, callbacks, API rules
 */

/* §7.1.5: the transport ended with no close frame: 1006, unclean, nobody closed. */
TEST(transport_closed_is_1006)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_text(s, "hi");
    do_eof(s, -104);
    do_eof(s, 0); /* a second end changes nothing */
    CHECK(s, "msg TEXT 6869\non_close by=0 code=1006 clean=0 err=-104 reason=\n");
}

/* After on_close the earlier result stands; after our close, an EOF keeps our code. */
TEST(transport_closed_keeps_earlier_result)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    in_close(s, 1000, "a");
    do_eof(s, 0);
    CHECK(s, "on_close by=2 code=1000 clean=1 err=0 reason=a\nout CLOSE fin=1 rsv=0 03e8\n");
    s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    do_close(s, 3001, "mine");
    do_eof(s, 0);
    CHECK(s, "close rc=0\non_close by=1 code=3001 clean=0 err=0 reason=mine\n"
             "out CLOSE fin=1 rsv=0 0bb96d696e65\n");
}

/* Callbacks may send and close re-entrantly: an echo server that closes on "bye". The
 * messages after our close are still delivered (§7.1.2: the peer may still send). */
TEST(callbacks_send_and_close)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->echo = true;
    s->close_on = "bye";
    in_text(s, "one");
    in_frame(s, 0x01, "tw", 2); /* reassembled: data points into the codec's buffer */
    in_frame(s, 0x80, "o", 1);
    in_text(s, "bye");
    in_text(s, "late");
    in_close(s, 1000, "");
    CHECK(s, "msg TEXT 6f6e65\n"
             "msg TEXT 74776f\n"
             "msg TEXT 627965\n"
             "close rc=0\n"
             "msg TEXT 6c617465\n"
             "echo rc=-5103\n"
             "on_close by=1 code=1000 clean=1 err=0 reason=bye\n"
             "out TEXT fin=1 rsv=0 6f6e65\n"
             "out TEXT fin=1 rsv=0 74776f\n"
             "out TEXT fin=1 rsv=0 627965\n"
             "out CLOSE fin=1 rsv=0 03e8627965\n");
}

/* A close from on_control (after the pong is queued, as documented). */
TEST(callbacks_close_from_on_control)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->close_in_control = true;
    in_frame(s, 0x89, "x", 1);
    in_close(s, 1001, "");
    CHECK(s, "ctl PING 78\nclose rc=0\n"
             "on_close by=1 code=1001 clean=1 err=0 reason=away\n"
             "out PONG fin=1 rsv=0 78\nout CLOSE fin=1 rsv=0 03e961776179\n");
}

/* KITE_PAUSE stops recv() right after the message, returning the bytes consumed so far;
 * feeding the rest later continues where it stopped. */
TEST(callbacks_pause)
{
    struct scen *s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
    s->pause = true;
    in_text(s, "a");
    in_frame(s, 0x89, "", 0);
    in_text(s, "b");
    CHECK(s, "msg TEXT 61\nctl PING \nmsg TEXT 62\nout PONG fin=1 rsv=0 \n");

    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    struct ctx x = {.s = s, .log = &(struct log){.n = 0}};
    s->input_base = NULL;
    struct kite_codec *c = kite_codec_new(&cfg, &cbs, &x, 0);
    ASSERT(c);
    uint8_t in[64];
    size_t n1 = mkframe(in, 0x81, "a", 1, KEY);
    size_t n2 = mkframe(in + n1, 0x81, "b", 1, KEY);
    ASSERT_EQ(kite_codec_recv(c, in, n1 + n2, 0), n1);
    ASSERT_EQ(kite_codec_recv(c, in + n1, n2, 0), n2);
    ASSERT_STREQ(x.log->s, "msg TEXT 61\nmsg TEXT 62\n");
    kite_codec_free(c);
}

static int recv_in_cb_rc;
static int recursive_message(struct kite_codec *c, enum kite_opcode t, const uint8_t *d,
                             size_t n, void *ud)
{
    uint8_t b[2] = {0x81, 0x80};
    recv_in_cb_rc = (int)kite_codec_recv(c, b, 2, 0);
    kite_codec_transport_closed(c, -32); /* deferred until we return */
    ASSERT(!kite_codec_is_closed(c));
    ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, "x", 1), KITE_ERR_CLOSED);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(d[0], 'a'); /* still readable */
    return KITE_OK;
}

static int close_calls;
static void count_close(struct kite_codec *c, const struct kite_close_info *ci, void *ud)
{
    close_calls++;
    ASSERT_EQ(ci->code, 1006);
    ASSERT_EQ(ci->error, -32);
}

/* recv() from a callback is refused; a transport end reported from a callback fires
 * on_close after the callback returns, never nested in it. */
TEST(callbacks_recv_refused_and_close_deferred)
{
    static const struct kite_codec_callbacks cb = {.on_message = recursive_message,
                                                   .on_close = count_close};
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    struct kite_codec *c = kite_codec_new(&cfg, &cb, NULL, 0);
    ASSERT(c);
    uint8_t in[64];
    size_t n = mkframe(in, 0x01, "a", 1, KEY);
    n += mkframe(in + n, 0x80, "", 0, KEY);
    n += mkframe(in + n, 0x81, "never", 5, KEY);
    close_calls = 0;
    ssize_t r = kite_codec_recv(c, in, n, 0);
    ASSERT_EQ(r, n - 11);
    ASSERT_EQ(recv_in_cb_rc, KITE_ERR_STATE);
    ASSERT_EQ(close_calls, 1);
    ASSERT(kite_codec_is_closed(c));
    ASSERT_EQ(kite_codec_recv(c, in + r, 11, 0), 0);
    kite_codec_free(c);
}

/* Argument checks of the send functions (§5.5: control frames are final and short). */
TEST(send_argument_checks)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    static char big[126];
    ASSERT_EQ(kite_codec_send(c, KITE_OP_PING, "", 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_send(c, KITE_OP_TEXT, NULL, 1), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_send_frame(c, KITE_OP_PING, false, 0, "", 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_send_frame(c, KITE_OP_PONG, true, 0, big, 126), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_send_frame(c, (enum kite_opcode)3, true, 0, "", 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_send_frame(c, KITE_OP_TEXT, true, 0x80, "", 0), KITE_ERR_INVALID);
    ASSERT_EQ(kite_codec_ping(c, big, 125), KITE_OK);
    ASSERT_EQ(kite_codec_send_frame(c, KITE_OP_TEXT, false, KITE_RSV1, "a", 1), KITE_OK);
    ASSERT_EQ(kite_codec_send_frame(c, KITE_OP_CONTINUATION, true, 0, "b", 1), KITE_OK);
    const uint8_t *p;
    ASSERT_EQ(kite_codec_pending(c, &p), 127 + 3 + 3);
    ASSERT_EQ(p[0], 0x89);
    ASSERT_EQ(p[127], 0x41);
    ASSERT_EQ(p[130], 0x80);
    kite_codec_consume(c, 100);
    ASSERT_EQ(kite_codec_pending(c, &p), 33);
    kite_codec_consume(c, 33);
    ASSERT_EQ(kite_codec_pending(c, &p), 0);
    kite_codec_free(c);
    kite_codec_free(NULL);
}

TEST(config_defaults_and_validation)
{
    struct kite_codec_config cfg;
    memset(&cfg, 0xA5, sizeof(cfg));
    kite_codec_config_init(&cfg);
    ASSERT_EQ(cfg.role, KITE_ROLE_SERVER);
    ASSERT_EQ(cfg.mode, KITE_MODE_DEFAULT);
    ASSERT_EQ(cfg.options.ping_period_ms, 0);
    ASSERT_EQ(cfg.options.timeout_ms, 15000);
    ASSERT_UEQ(cfg.options.max_frame_size, 16u << 20);
    ASSERT_UEQ(cfg.options.max_message_size, 16u << 20);
    ASSERT(cfg.options.masking);
    ASSERT_EQ(cfg.rsv_allowed, 0);
    ASSERT(cfg.allocator == NULL);
    cfg.options.timeout_ms = 0;
    ASSERT(kite_codec_new(&cfg, NULL, NULL, 0) == NULL);
    kite_codec_config_init(&cfg);
    cfg.role = (enum kite_role)7;
    ASSERT(kite_codec_new(&cfg, NULL, NULL, 0) == NULL);
    kite_codec_config_init(&cfg);
    cfg.mode = (enum kite_mode)7;
    ASSERT(kite_codec_new(&cfg, NULL, NULL, 0) == NULL);
}

/*
 * Memory: an idle connection is this struct (plus the output buffer once something was
 * sent). sizeof(struct kite_codec) is 128 bytes on 64-bit targets (48 of them the frame
 * parser); the close record, the reassembly buffer and the extension chain live in a
 * block allocated on first use (at creation for a codec given an allocator, which is
 * kept there too).
 */
TEST(codec_struct_is_small)
{
    fprintf(stderr, "# sizeof(struct kite_codec) = %zu, aux block = %zu\n",
            sizeof(struct kite_codec), sizeof(struct kite__codec_aux));
    if (sizeof(void *) == 8)
        ASSERT(sizeof(struct kite_codec) <= 128);
    ASSERT(sizeof(struct kite_codec) <= 192);
}

/* After a large message the reassembly buffer and the output buffer are released, so a
 * quiet connection goes back to a small footprint. */
TEST(large_buffers_are_released)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    struct kite_codec *c = kite_codec_new(&cfg, NULL, NULL, 0);
    ASSERT(c);
    static uint8_t in[70000];
    static char payload[60000];
    size_t n = mkframe(in, 0x82, payload, sizeof(payload), KEY);
    ASSERT_EQ(kite_codec_recv(c, in, 1000, 0), 1000);
    ASSERT(c->aux && c->aux->msg.cap >= 1000);
    ASSERT_EQ(kite_codec_recv(c, in + 1000, n - 1000, 0), n - 1000);
    ASSERT(c->aux->msg.cap == 0);
    ASSERT_EQ(kite_codec_send(c, KITE_OP_BINARY, payload, sizeof(payload)), KITE_OK);
    ASSERT(c->out.cap >= sizeof(payload));
    const uint8_t *p;
    kite_codec_consume(c, kite_codec_pending(c, &p));
    ASSERT(c->out.cap == 0);
    kite_codec_free(c);
}

/* ------------------------------------------------------------------------------------
 * Out of memory
 */

/*
 * Fail the Nth allocation for every N over scenarios that allocate (reassembly, partial
 * control frames, output, the close record): no crash, nothing leaked, and a clear
 * result: either the same log as without failure, or KITE_ERR_NOMEM (-5400) visible in
 * it (a return code, or on_close with 1011/KITE_ERR_NOMEM).
 */
static long oom_points;
static void oom_sweep(struct scen *s, int split)
{
    static struct log ref, got;
    ASSERT(run(s, split, NULL, &ref));
    long n;
    for (n = 1;; n++) {
        struct kite_test_alloc st = {.fail_at = n};
        bool made = run(s, split, kite_test_allocator(&st), &got);
        ASSERT_EQ(st.live, 0);
        if (!st.failed)
            break;
        if (!made)
            continue;
        if (strcmp(got.s, ref.s) != 0 && !strstr(got.s, "-5400")) {
            fprintf(stderr, "# fail_at %ld, split %d:\n%s# reference:\n%s", n, split, got.s,
                    ref.s);
            ASSERT(0);
        }
        ASSERT(n < 1000);
    }
    ASSERT(n > 2); /* the scenario does allocate: codec, aux block, buffers */
    oom_points += n - 1;
}

TEST(oom_every_allocation)
{
    static char big[2000];
    memset(big, 'b', sizeof(big));
    for (int variant = 0; variant < 3; variant++) {
        struct scen *s = new_scen(variant == 2 ? KITE_ROLE_CLIENT : KITE_ROLE_SERVER,
                                  variant == 1 ? KITE_MODE_RAW : KITE_MODE_DEFAULT);
        s->echo = true;
        s->cfg.options.ping_period_ms = 10;
        in_frame(s, 0x01, "frag", 4);
        in_frame(s, 0x89, "ping", 4);
        in_frame(s, 0x00, big, 200);
        in_frame(s, 0x80, "end", 3);
        in_frame(s, 0x82, big, 2000);
        do_tick(s, 2000);
        do_send(s, KITE_OP_TEXT, big, 1500);
        in_close(s, 1000, "bye");
        oom_sweep(s, 0);
        oom_sweep(s, -1);
        oom_sweep(s, 7);

        s = new_scen(KITE_ROLE_SERVER, variant == 1 ? KITE_MODE_RAW : KITE_MODE_DEFAULT);
        do_close(s, 1000, "local");
        in_text(s, "x");
        in_close(s, 1000, "");
        oom_sweep(s, 0);
        oom_sweep(s, -1);

        s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
        in_frame(s, 0x81, "\xff", 1);
        do_eof(s, 0);
        oom_sweep(s, 0);
        s = new_scen(KITE_ROLE_SERVER, KITE_MODE_DEFAULT);
        in_text(s, "x");
        do_eof(s, 0);
        oom_sweep(s, -1);
    }
    fprintf(stderr, "# %ld allocation failures injected\n", oom_points);
}

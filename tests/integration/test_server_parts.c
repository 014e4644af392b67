/*
 * Messages in parts over loopback (on_message_part, kite_ws_options.part_threshold):
 * a route that passes each part of a large message back as a fragment (RFC 6455 §5.4)
 * as it arrives, with flow control through kite_session_pause()/kite_session_resume(),
 * so a message many times the size of the send queue's high-water mark crosses the
 * server without the server ever holding more than a part and a queue of it.
 */
#include "test_server_kit.h"

/* The server's view, read by the test once the session has closed. */
static struct {
    pthread_mutex_t mu;
    unsigned parts, lasts, wholes;
    uint64_t bytes;
    size_t max_queued;  /* the most kite_session_buffered() seen after a part's send */
    unsigned pauses;
    bool offsets_ok;
} g = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, 0, true};

static void parts_reset(void)
{
    pthread_mutex_lock(&g.mu);
    g.parts = g.lasts = g.wholes = g.pauses = 0;
    g.bytes = 0;
    g.max_queued = 0;
    g.offsets_ok = true;
    pthread_mutex_unlock(&g.mu);
}

static void on_part(struct kite_session *s, const struct kite_msg_part *p, void *ud)
{
    (void)ud;
    enum kite_opcode op = p->offset == 0 ? p->type : KITE_OP_CONTINUATION;
    size_t q = 0;
    int rc = kite_session_send_frame(s, op, p->last, 0, p->data, p->len, &q);
    pthread_mutex_lock(&g.mu);
    if (p->offset != g.bytes)
        g.offsets_ok = false;
    g.parts++;
    g.lasts += p->last;
    g.bytes += p->len;
    if (q > g.max_queued)
        g.max_queued = q;
    if (rc == KITE_SEND_QUEUED) {
        g.pauses++;
        kite_session_pause(s); /* resumed by on_drain */
    }
    if (p->last)
        g.bytes = 0;
    pthread_mutex_unlock(&g.mu);
    if (rc != KITE_SEND_OK && rc != KITE_SEND_QUEUED)
        rec_add("send failed %d;", rc);
}

static void on_msg(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    pthread_mutex_lock(&g.mu);
    g.wholes++;
    pthread_mutex_unlock(&g.mu);
    kite_session_send(s, m->type, m->data, m->len, NULL);
}

static void on_drain(struct kite_session *s, void *ud)
{
    (void)ud;
    ASSERT(kite_session_is_paused(s));
    kite_session_resume(s);
    ASSERT(!kite_session_is_paused(s));
}

static void on_close(struct kite_session *s, const struct kite_close_info *ci, void *ud)
{
    (void)s;
    (void)ud;
    rec_add("close %u;", ci->code);
}

static const struct kite_ws_callbacks parts_callbacks = {
    .on_message = on_msg,
    .on_message_part = on_part,
    .on_drain = on_drain,
    .on_close = on_close,
};

static void start_app(struct ts *t)
{
    struct kite_app_options o;
    ts_options(&o);
    t->app = kite_app_new(&o);
    struct kite_route *r = kite_route_ws_callbacks(t->app, "/parts", &parts_callbacks, NULL);
    ASSERT(r != NULL);
    struct kite_ws_options wo;
    kite_ws_options_init(&wo);
    ASSERT_UEQ(wo.part_threshold, KITE_PART_THRESHOLD_DEFAULT);
    wo.max_frame_size = wo.max_message_size = 64u << 20;
    ASSERT_EQ(kite_route_set_ws_options(r, &wo), KITE_OK);
    ts_start(t);
}

/* Writes one big masked frame from another thread while the test reads the echo. */
struct writer {
    struct tc *t;
    const uint8_t *wire;
    size_t len;
    pthread_t th;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    kit_write_all(w->t->fd, w->wire, w->len);
    return NULL;
}

/* Read the echo of one message: fragments, the first with `type`, FIN on the last.
 * Returns its length; checks the bytes against pattern message `i`. */
static size_t read_echo(struct tc *t, enum kite_opcode type, unsigned i, size_t size,
                        unsigned *frames)
{
    size_t got = 0;
    *frames = 0;
    for (;;) {
        struct tc_frame f;
        ASSERT_EQ(tc_next(t, &f, 10000), 1);
        ASSERT_EQ(f.op, *frames == 0 ? type : KITE_OP_CONTINUATION);
        ASSERT(got + f.len <= size);
        for (size_t j = 0; j < f.len; j++)
            if (f.data[j] != kit_pattern(i, got + j))
                kite_test_fail(__FILE__, __LINE__, "byte %zu differs", got + j);
        got += f.len;
        (*frames)++;
        bool fin = f.fin;
        free(f.data);
        if (fin)
            return got;
    }
}

/* One masked client frame carrying msg[0..len), built with the codec (it does not
 * check what it sends, so text may be invalid UTF-8). The caller frees it. */
static uint8_t *client_wire(enum kite_opcode op, const uint8_t *msg, size_t len,
                            size_t *wire_len)
{
    struct kite_codec_config cfg;
    kite_codec_config_init(&cfg);
    cfg.role = KITE_ROLE_CLIENT;
    static const struct kite_codec_callbacks none;
    struct kite_codec *c = kite_codec_new(&cfg, &none, NULL, 0);
    ASSERT(c != NULL);
    ASSERT_EQ(kite_codec_send_frame(c, op, true, 0, msg, len), KITE_OK);
    const uint8_t *p;
    *wire_len = kite_codec_pending(c, &p);
    uint8_t *copy = malloc(*wire_len);
    ASSERT(copy != NULL);
    memcpy(copy, p, *wire_len);
    kite_codec_free(c);
    return copy;
}

/* client_wire() of `len` pattern bytes (message i). */
static uint8_t *client_frame(enum kite_opcode op, unsigned i, size_t len, size_t *wire_len)
{
    uint8_t *msg = malloc(len);
    ASSERT(msg != NULL);
    kit_fill(msg, i, len);
    uint8_t *wire = client_wire(op, msg, len, wire_len);
    free(msg);
    return wire;
}

/* 1 MiB, then 8 MiB: handed over in many parts, echoed as fragments as they came, byte
 * for byte; the server's queue stays near its high-water mark (64 KiB) plus one part,
 * far below the message, because it pauses reading while the queue is full. */
TEST(parts_large_messages_stream_through_with_bounded_queue)
{
    struct ts t = {0};
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/parts", NULL);
    size_t sizes[] = {1u << 20, 8u << 20};
    for (unsigned i = 0; i < KIT_LEN(sizes); i++) {
        parts_reset();
        struct writer w = {.t = c};
        w.wire = client_frame(KITE_OP_BINARY, i, sizes[i], &w.len);
        ASSERT_EQ(pthread_create(&w.th, NULL, writer_main, &w), 0);
        /* Let the server fill its queue and pause before the echo is read. */
        kit_sleep_ms(100);
        unsigned frames = 0;
        ASSERT_UEQ(read_echo(c, KITE_OP_BINARY, i, sizes[i], &frames), sizes[i]);
        pthread_join(w.th, NULL);
        free((void *)w.wire);
        pthread_mutex_lock(&g.mu);
        printf("# %zu bytes: %u parts, %u frames back, %u pauses, queue at most %zu\n",
               sizes[i], g.parts, frames, g.pauses, g.max_queued);
        ASSERT_EQ(g.wholes, 0);
        ASSERT_EQ(g.lasts, 1);
        ASSERT(g.offsets_ok);
        ASSERT(g.parts > 1);
        ASSERT_EQ(frames, g.parts);
        ASSERT(g.max_queued < (1u << 20));
        if (i == 1)
            ASSERT(g.pauses > 0);
        pthread_mutex_unlock(&g.mu);
    }
    /* A small message on the same session still arrives whole. */
    parts_reset();
    tc_text(c, "small");
    TC_EXPECT(c, KITE_OP_TEXT, "small");
    ASSERT_EQ(g.wholes, 1);
    tc_close(c, 1000, "");
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1000);
    tc_free(c);
    ASSERT_REC("close 1000;", 3000);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

/* Invalid UTF-8 deep in a large text message: the parts before it went back already,
 * then the server fails the connection with 1007 between fragments (§8.1, §5.4). */
TEST(parts_bad_utf8_late_in_text_fails_1007)
{
    struct ts t = {0};
    start_app(&t);
    struct tc *c = tc_open_ok(t.port, "/parts", NULL);
    size_t n = 2u << 20;
    uint8_t *msg = malloc(n);
    ASSERT(msg != NULL);
    memset(msg, 'x', n);
    msg[n - 1000] = 0xff;
    struct writer w = {.t = c};
    w.wire = client_wire(KITE_OP_TEXT, msg, n, &w.len);
    ASSERT_EQ(pthread_create(&w.th, NULL, writer_main, &w), 0);
    size_t echoed = 0;
    unsigned code = 0;
    for (;;) {
        struct tc_frame f;
        int r = tc_next(c, &f, 10000);
        ASSERT_EQ(r, 1);
        if (f.op == KITE_OP_CLOSE) {
            code = f.len >= 2 ? (unsigned)(f.data[0] << 8 | f.data[1]) : 1005;
            free(f.data);
            break;
        }
        ASSERT(!f.fin);
        echoed += f.len;
        free(f.data);
    }
    pthread_join(w.th, NULL);
    ASSERT_EQ(code, KITE_CLOSE_NOT_CONSISTENT);
    ASSERT(echoed > 0 && echoed <= n - 1000);
    free((void *)w.wire);
    free(msg);
    tc_free(c);
    ASSERT_REC("close 1007;", 3000);
    ASSERT_EQ(ts_stop(&t), KITE_OK);
}

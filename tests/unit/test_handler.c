/*
 * Sequential handlers without a network: the helpers (close payloads, code names,
 * case-insensitive text), the calls that must refuse to run outside a handler, and the
 * life of a loop's handler state. The behaviour over sockets is in
 * tests/integration/test_handler*.c.
 */
#include "coro/handler.h"
#include "test.h"

static struct kite_frame close_frame(const char *payload, size_t len)
{
    return (struct kite_frame){
        .opcode = KITE_OP_CLOSE, .fin = true, .data = (const uint8_t *)payload, .len = len};
}

/* RFC 6455 §5.5.1: a close body is a 2-byte code, then a UTF-8 reason. */
TEST(handler_read_reason_code_and_text)
{
    uint16_t code = 0;
    struct kite_str why;
    struct kite_frame f = close_frame("\x03\xe8" "Client said BYE", 17);
    ASSERT_EQ(kite_frame_read_reason(&f, &code, &why), KITE_OK);
    ASSERT_EQ(code, 1000);
    ASSERT_EQ(why.len, 15);
    ASSERT_MEMEQ(why.ptr, "Client said BYE", 15);
    f = close_frame("\x0f\xa0", 2);
    ASSERT_EQ(kite_frame_read_reason(&f, &code, &why), KITE_OK);
    ASSERT_EQ(code, 4000);
    ASSERT_EQ(why.len, 0);
}

/* RFC 6455 §7.1.5: no code in the frame is reported as 1005; §5.5.1: one byte is not a
 * valid body. */
TEST(handler_read_reason_empty_and_malformed)
{
    uint16_t code = 0;
    struct kite_str why;
    struct kite_frame f = close_frame("", 0);
    ASSERT_EQ(kite_frame_read_reason(&f, &code, &why), KITE_OK);
    ASSERT_EQ(code, KITE_CLOSE_NO_STATUS);
    ASSERT_EQ(why.len, 0);
    f = close_frame("\x03", 1);
    ASSERT_EQ(kite_frame_read_reason(&f, &code, &why), KITE_ERR_PROTOCOL);
    f.opcode = KITE_OP_TEXT;
    ASSERT_EQ(kite_frame_read_reason(&f, &code, &why), KITE_ERR_INVALID);
    ASSERT_EQ(kite_frame_read_reason(NULL, &code, &why), KITE_ERR_INVALID);
}

/* Ktor's CloseReason.Codes names, RFC 6455 §7.4.1. */
TEST(handler_close_code_names)
{
    ASSERT_STREQ(kite_close_code_name(1000), "NORMAL");
    ASSERT_STREQ(kite_close_code_name(1001), "GOING_AWAY");
    ASSERT_STREQ(kite_close_code_name(1002), "PROTOCOL_ERROR");
    ASSERT_STREQ(kite_close_code_name(1003), "CANNOT_ACCEPT");
    ASSERT_STREQ(kite_close_code_name(1006), "CLOSED_ABNORMALLY");
    ASSERT_STREQ(kite_close_code_name(1007), "NOT_CONSISTENT");
    ASSERT_STREQ(kite_close_code_name(1008), "VIOLATED_POLICY");
    ASSERT_STREQ(kite_close_code_name(1009), "TOO_BIG");
    ASSERT_STREQ(kite_close_code_name(1010), "NO_EXTENSION");
    ASSERT_STREQ(kite_close_code_name(1011), "INTERNAL_ERROR");
    ASSERT_STREQ(kite_close_code_name(1012), "SERVICE_RESTART");
    ASSERT_STREQ(kite_close_code_name(1013), "TRY_AGAIN_LATER");
    ASSERT(kite_close_code_name(1004) == NULL);
    ASSERT(kite_close_code_name(999) == NULL);
    ASSERT(kite_close_code_name(1016) == NULL);
    ASSERT(kite_close_code_name(4000) == NULL);
}

TEST(handler_msg_equals_ci)
{
    struct kite_msg m = {KITE_OP_TEXT, (const uint8_t *)"ByE", 3};
    ASSERT(kite_msg_equals_ci(&m, "bye"));
    ASSERT(kite_msg_equals_ci(&m, "BYE"));
    ASSERT(!kite_msg_equals_ci(&m, "by"));
    ASSERT(!kite_msg_equals_ci(&m, "byes"));
    m.type = KITE_OP_BINARY; /* only text is text */
    ASSERT(!kite_msg_equals_ci(&m, "bye"));
    ASSERT(!kite_msg_equals_ci(NULL, "bye"));
}

/* Outside a handler nothing suspends: every such call says KITE_ERR_STATE. */
static void not_a_handler(void *arg)
{
    int *rc = arg;
    struct kite_msg m;
    struct kite_session *s = (struct kite_session *)&m; /* never dereferenced */
    rc[0] = kite_receive(s, &m);
    rc[1] = kite_send_str(s, "x");
    rc[2] = kite_flush(s);
    rc[3] = kite_handler_run_blocking((kite_blocking_fn *)(void *)not_a_handler, NULL, NULL);
    rc[4] = kite_handler_session() == NULL ? KITE_ERR_STATE : 0;
}

TEST(handler_calls_refused_outside_handlers)
{
    int rc[5] = {0};
    not_a_handler(rc); /* on the thread's own stack */
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(rc[i], KITE_ERR_STATE);
    /* ...and inside a coroutine that is not a handler. */
    struct kite__coro_sched *sched = kite__coro_sched_new(NULL);
    ASSERT(sched != NULL);
    struct kite__coro *co;
    ASSERT_EQ(kite__coro_new(sched, not_a_handler, rc, 0, &co), KITE_OK);
    memset(rc, 0, sizeof(rc));
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(rc[i], KITE_ERR_STATE);
    kite__coro_free(co);
    kite__coro_sched_free(sched);
}

/* A loop's handler state is made on first use and freed at the end of the iteration in
 * which its last handler went away, unless another one came first. */
TEST(handler_loop_state_lives_while_used)
{
    struct kite_loop *loop;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    struct kite__handler_stats st;
    ASSERT(!kite__handler_stats(loop, &st));
    struct kite__hloop *hl = kite__hloop_get(loop);
    ASSERT(hl != NULL);
    ASSERT(kite__hloop_get(loop) == hl);
    kite__hloop_use(hl);
    kite__hloop_unuse(hl);
    kite__hloop_use(hl); /* back before the iteration ended: kept */
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT(kite__handler_stats(loop, &st));
    ASSERT_EQ(st.live, 1);
    ASSERT(!st.workers);
    kite__hloop_unuse(hl);
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT(!kite__handler_stats(loop, &st));
    kite_loop_free(loop);
}

/* The worker-pool size an app asks for is found from its loop. */
TEST(handler_threads_setting_follows_the_app_loop)
{
    struct kite_app_options o;
    kite_app_options_init(&o);
    o.handle_signals = false;
    struct kite_app *app = kite_app_new(&o);
    ASSERT(app != NULL);
    ASSERT_EQ(kite__handler_threads_for(kite_app_loop(app)), 0);
    ASSERT_EQ(kite_app_set_handler_threads(app, 3), KITE_OK);
    ASSERT_EQ(kite__handler_threads_for(kite_app_loop(app)), 3);
    ASSERT_EQ(kite_app_set_handler_threads(app, 1025), KITE_ERR_INVALID);
    ASSERT_EQ(kite_app_set_handler_threads(NULL, 2), KITE_ERR_INVALID);
    kite__handler_app_free(app);
    ASSERT_EQ(kite__handler_threads_for(kite_app_loop(app)), 0);
    kite_app_free(app);
}

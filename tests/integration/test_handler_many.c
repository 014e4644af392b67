/*
 * Sequential handlers at scale: 2,000 concurrent sessions, each in its own handler on
 * one loop, in four kinds: echo, return at once, never read, park in a full send. Then
 * every kind of end (close frame, FIN, reset, the handler's own return), and nothing
 * may be left: no live handler, no pinned buffer, no leak.
 */
#include <sys/resource.h>

#include "test_server_kit.h"

#include "coro/handler.h"
#include "session/session.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#define SESSIONS 2000

static atomic_int started, finished, parked_ends;

struct stats_req {
    struct kite__handler_stats st;
    bool found;
    atomic_bool done;
};

static void stats_on_loop(struct kite_loop *loop, void *arg)
{
    struct stats_req *r = arg;
    r->found = kite__handler_stats(loop, &r->st);
    atomic_store(&r->done, true);
}

static struct stats_req loop_stats(struct ts *t)
{
    struct stats_req r;
    memset(&r, 0, sizeof(r));
    ASSERT_EQ(kite_app_post(t->app, stats_on_loop, &r), KITE_OK);
    uint64_t end = kit_now_ms() + 5000;
    while (!atomic_load(&r.done) && kit_now_ms() < end)
        kit_sleep_ms(1);
    ASSERT(atomic_load(&r.done));
    return r;
}

static void echo(struct kite_session *s)
{
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK)
        kite_send(s, m.type, m.data, m.len);
}

static uint8_t blob[64 * 1024];

/* Send until the queue is full and the send parks; a reset peer ends it. */
static void park_in_send(struct kite_session *s)
{
    /* Keep the kernel's share small so 500 parked sessions do not need gigabytes of
     * socket buffers: the queue in user space is what parks the send. */
    int small = 16 * 1024;
    setsockopt(kite__tp_fd(&s->tp), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    int rc;
    do
        rc = kite_send_binary(s, blob, sizeof(blob));
    while (rc == KITE_OK);
    if (rc == KITE_ERR_CLOSED)
        atomic_fetch_add(&parked_ends, 1);
}

/* The kind comes from the path: /k/0 echo, /k/1 return, /k/2 never read, /k/3 park. */
static void mixed(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_str kind;
    ASSERT(kite_request_param(kite_handler_request(s), "kind", &kind));
    atomic_fetch_add(&started, 1);
    switch (kind.ptr[0]) {
    case '0':
        echo(s);
        break;
    case '1':
        break;
    case '2':
        kite_close_reason(s); /* waits for the end without reading */
        break;
    default:
        park_in_send(s);
        break;
    }
    atomic_fetch_add(&finished, 1);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max < 2 * SESSIONS + 200) {
        printf("# fd hard limit %lu is too low: skipping\n", (unsigned long)rl.rlim_max);
        _exit(0);
    }
    rl.rlim_cur = rl.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

TEST(handler_two_thousand_sessions_of_every_kind)
{
    raise_fd_limit();
    struct kite_app_options o;
    ts_options(&o);
    struct ts t = {.app = kite_app_new(&o)};
    ASSERT(kite_route_ws(t.app, "/k/{kind}", mixed, NULL) != NULL);
    ts_start(&t);
    static struct tc *c[SESSIONS];
    for (int i = 0; i < SESSIONS; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/k/%d", i % 4);
        c[i] = tc_open_ok(t.port, path, NULL);
    }
    uint64_t end = kit_now_ms() + 10000;
    while (atomic_load(&started) < SESSIONS && kit_now_ms() < end)
        kit_sleep_ms(5);
    ASSERT_EQ(atomic_load(&started), SESSIONS);
    /* Kind 1 returned (close 1000); the others are suspended at the same time. */
    for (int i = 1; i < SESSIONS; i += 4)
        ASSERT_EQ(tc_expect_close(c[i], NULL, 0), 1000);
    struct stats_req r = loop_stats(&t);
    ASSERT(r.found);
    ASSERT_EQ(r.st.live, SESSIONS - SESSIONS / 4);
    ASSERT_EQ(r.st.coro.live, SESSIONS - SESSIONS / 4);
    /* Every echo handler answers its own message. */
    for (int i = 0; i < SESSIONS; i += 4) {
        char msg[32];
        snprintf(msg, sizeof(msg), "hello %d", i);
        tc_text(c[i], msg);
    }
    for (int i = 0; i < SESSIONS; i += 4) {
        char msg[32];
        snprintf(msg, sizeof(msg), "hello %d", i);
        TC_EXPECT(c[i], KITE_OP_TEXT, msg);
    }
    /* Never-reading handlers keep their sessions paused... until they end. */
    for (int i = 2; i < SESSIONS; i += 4)
        tc_text(c[i], "ignored");
    /* Ends of every kind: close frames, FINs, resets. */
    for (int i = 0; i < SESSIONS; i++) {
        switch (i % 4) {
        case 0:
        case 1:
            tc_close(c[i], 1000, "");
            break;
        case 2:
            close(c[i]->fd); /* FIN (or a reset with unread data) */
            c[i]->fd = -1;
            break;
        default: {
            struct linger lg = {1, 0}; /* a reset while the handler is parked in send */
            setsockopt(c[i]->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(c[i]->fd);
            c[i]->fd = -1;
            break;
        }
        }
    }
    end = kit_now_ms() + 15000;
    while (atomic_load(&finished) < SESSIONS && kit_now_ms() < end)
        kit_sleep_ms(5);
    ASSERT_EQ(atomic_load(&finished), SESSIONS);
    ASSERT_EQ(atomic_load(&parked_ends), SESSIONS / 4);
    for (int i = 0; i < SESSIONS; i++)
        tc_free(c[i]);
    end = kit_now_ms() + 5000;
    for (;;) {
        r = loop_stats(&t);
        if (!r.found)
            break; /* the loop's handler state went with the last handler */
        ASSERT(kit_now_ms() < end);
        kit_sleep_ms(5);
    }
    ASSERT_EQ(ts_stop(&t), KITE_OK);
#ifdef UNDER_ASAN
    ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
#endif
}

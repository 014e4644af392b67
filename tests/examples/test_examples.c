/*
 * Runs the sequential-handler examples (examples/handler_*.c) and checks that each one
 * behaves exactly as the Ktor code it transcribes: the same replies, the same close
 * codes and reasons, the same event lines. Servers are spawned with --port 0; the first
 * stdout line gives the port; SIGTERM must end them with status 0.
 */
#include <signal.h>
#include <sys/wait.h>

#include "test_server_kit.h"

struct proc {
    pid_t pid;
    int out;        /* stdout pipe */
    char buf[8192]; /* stdout so far */
    size_t len;
    uint16_t port;
};

static const char *examples_dir(void)
{
    const char *d = getenv("KITE_EXAMPLES_DIR");
    if (!d || !*d) {
        printf("# KITE_EXAMPLES_DIR not set: skipping\n");
        exit(0);
    }
    return d;
}

/* Read stdout until `needle` appears (true) or timeout. */
static bool out_wait(struct proc *p, const char *needle, unsigned timeout_ms)
{
    uint64_t end = kit_now_ms() + timeout_ms;
    while (!strstr(p->buf, needle)) {
        uint64_t now = kit_now_ms();
        if (now >= end || p->len + 1 >= sizeof(p->buf))
            return false;
        ssize_t n = kit_read(p->out, p->buf + p->len, sizeof(p->buf) - 1 - p->len,
                             (unsigned)(end - now));
        if (n <= 0)
            return false;
        p->len += (size_t)n;
        p->buf[p->len] = 0;
    }
    return true;
}

#define ASSERT_OUT(p, needle)                                                                      \
    do {                                                                                           \
        if (!out_wait((p), (needle), 5000))                                                        \
            kite_test_fail(__FILE__, __LINE__, "\"%s\" not printed; stdout: %s", (needle),         \
                           (p)->buf);                                                              \
    } while (0)

static void spawn(struct proc *p, const char *name, bool server)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/example_%s", examples_dir(), name);
    int o[2];
    ASSERT_EQ(pipe(o), 0);
    fflush(NULL);
    p->pid = fork();
    ASSERT(p->pid >= 0);
    if (p->pid == 0) {
        dup2(o[1], 1);
        close(o[0]);
        if (server)
            execl(path, path, "--port", "0", (char *)NULL);
        else
            execl(path, path, (char *)NULL);
        _exit(127);
    }
    close(o[1]);
    p->out = o[0];
    p->len = 0;
    p->buf[0] = 0;
    p->port = 0;
    if (!server)
        return;
    ASSERT_OUT(p, "\n");
    ASSERT(strncmp(p->buf, "listening on ws://127.0.0.1:", 28) == 0);
    p->port = (uint16_t)atoi(p->buf + 28);
    ASSERT(p->port != 0);
}

/* Wait for exit; returns the exit status, or -signal. */
static int reap(struct proc *p, unsigned timeout_ms)
{
    int st = 0;
    uint64_t end = kit_now_ms() + timeout_ms;
    while (waitpid(p->pid, &st, WNOHANG) != p->pid) {
        if (kit_now_ms() >= end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            break;
        }
        kit_sleep_ms(5);
    }
    close(p->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

/* SIGTERM: the app's graceful shutdown, then exit 0. */
static void stop(struct proc *p)
{
    kill(p->pid, SIGTERM);
    ASSERT_EQ(reap(p, 8000), 0);
}

/* The peer's close frame with `code` and `reason`, our reply, then the server's EOF
 * (RFC 6455 §7.1.1, §7.1.2). */
static void expect_close(struct tc *c, unsigned code, const char *reason)
{
    char got[128];
    ASSERT_EQ(tc_expect_close(c, got, sizeof(got)), code);
    ASSERT_STREQ(got, reason);
    tc_close(c, code, "");
    ASSERT(tc_wait_eof(c, 3000));
}

TEST(example_echo_seed_conversation)
{
    struct proc p;
    spawn(&p, "handler_echo", true);
    struct tc *c = tc_open_ok(p.port, "/echo", NULL);
    TC_EXPECT(c, KITE_OP_TEXT, "Please enter your name");
    tc_text(c, "Kite");
    TC_EXPECT(c, KITE_OP_TEXT, "Hi, Kite!");
    tc_send(c, KITE_OP_BINARY, true, "bin", 3); /* frame as? Frame.Text ?: continue */
    tc_text(c, "Ktor");
    TC_EXPECT(c, KITE_OP_TEXT, "Hi, Ktor!");
    tc_text(c, "BYE"); /* equals("bye", ignoreCase = true) */
    expect_close(c, 1000, "Client said BYE");
    tc_free(c);
    stop(&p);
}

/* Actor and channel differ in the reply's colon; both answer "bye" before closing. */
static void you_said(const char *name, const char *prefix)
{
    struct proc p;
    spawn(&p, name, true);
    struct tc *c = tc_open_ok(p.port, "/", NULL);
    char want[64];
    tc_text(c, "hello");
    snprintf(want, sizeof(want), "%shello", prefix);
    TC_EXPECT(c, KITE_OP_TEXT, want);
    tc_send(c, KITE_OP_BINARY, true, "bin", 3); /* not a Frame.Text: no answer */
    tc_text(c, "Bye");
    snprintf(want, sizeof(want), "%sBye", prefix);
    TC_EXPECT(c, KITE_OP_TEXT, want);
    expect_close(c, 1000, "Client said BYE");
    tc_free(c);
    stop(&p);
}

TEST(example_actor_you_said)
{
    you_said("handler_actor", "YOU SAID: ");
}

TEST(example_channel_you_said)
{
    you_said("handler_channel", "YOU SAID ");
}

TEST(example_events_on_connect_message_close_error)
{
    struct proc p;
    spawn(&p, "handler_events", true);
    /* onConnect, onMessage, then the client closes: onClose. */
    struct tc *c = tc_open_ok(p.port, "/echo", NULL);
    ASSERT_OUT(&p, "onConnect\n");
    tc_text(c, "one");
    TC_EXPECT(c, KITE_OP_TEXT, "one");
    ASSERT_OUT(&p, "onConnect\nonMessage\n");
    tc_close(c, 1000, "done");
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1000);
    ASSERT_OUT(&p, "onMessage\nonClose CloseReason(reason=NORMAL, message=done)\n");
    tc_free(c);
    /* Invalid UTF-8 (RFC 6455 §8.1): onError with 1007. */
    c = tc_open_ok(p.port, "/echo", NULL);
    tc_send(c, KITE_OP_TEXT, true, "\xff", 1);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1007);
    ASSERT_OUT(&p, "onError CloseReason(reason=NOT_CONSISTENT, message=invalid UTF-8)\n");
    tc_free(c);
    /* A binary frame fails `frame as Frame.Text`: close 1003, onError. */
    c = tc_open_ok(p.port, "/echo", NULL);
    tc_send(c, KITE_OP_BINARY, true, "\x01", 1);
    expect_close(c, 1003, "text frames only");
    ASSERT_OUT(&p, "onError CloseReason(reason=CANNOT_ACCEPT, message=text frames only)\n");
    tc_free(c);
    stop(&p);
}

TEST(example_broadcast_reaches_every_session)
{
    struct proc p;
    spawn(&p, "handler_broadcast", true);
    struct tc *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = tc_open_ok(p.port, "/ws", NULL);
    kit_sleep_ms(100); /* every handler has subscribed */
    tc_text(c[0], "hi all");
    for (int i = 0; i < 3; i++)
        TC_EXPECT(c[i], KITE_OP_TEXT, "hi all"); /* the sender's collector too */
    tc_send(c[1], KITE_OP_BINARY, true, "b", 1); /* only text is emitted */
    tc_text(c[1], "second");
    for (int i = 0; i < 3; i++)
        TC_EXPECT(c[i], KITE_OP_TEXT, "second");
    tc_close(c[2], 1000, "");
    ASSERT_EQ(tc_expect_close(c[2], NULL, 0), 1000);
    tc_free(c[2]);
    kit_sleep_ms(100);
    tc_text(c[0], "after");
    TC_EXPECT(c[0], KITE_OP_TEXT, "after");
    TC_EXPECT(c[1], KITE_OP_TEXT, "after");
    tc_free(c[0]);
    tc_free(c[1]);
    stop(&p);
}

TEST(example_test_conversation_passes)
{
    struct proc p;
    spawn(&p, "handler_test_conversation", false);
    ASSERT_OUT(&p, "PASS testConversation\n");
    ASSERT_EQ(reap(&p, 5000), 0);
}

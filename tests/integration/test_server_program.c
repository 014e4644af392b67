/*
 * The `kite` program (KITE_BIN): `kite demo` speaks the seed's conversation and serves
 * its page, `kite echo` echoes, both print "listening on ws://HOST:PORT/" first and
 * exit 0 after a graceful shutdown on SIGTERM/SIGINT; bad options and busy ports give
 * clear errors.
 */
#include <signal.h>
#include <sys/wait.h>

#include "test_server_kit.h"

struct proc {
    pid_t pid;
    int out; /* stdout pipe */
    int err; /* stderr pipe */
    char line[256];
    uint16_t port;
};

static const char *kite_bin(void)
{
    const char *b = getenv("KITE_BIN");
    if (!b || !*b) {
        printf("# KITE_BIN not set: skipping\n");
        exit(0);
    }
    return b;
}

/* Start `kite args...`; read the first stdout line (when wait_line). */
static void spawn(struct proc *p, const char *const *args, bool wait_line)
{
    int o[2], e[2];
    ASSERT_EQ(pipe(o), 0);
    ASSERT_EQ(pipe(e), 0);
    p->pid = fork();
    ASSERT(p->pid >= 0);
    if (p->pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        close(o[0]);
        close(e[0]);
        const char *argv[16] = {kite_bin()};
        for (int i = 0; args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    p->out = o[0];
    p->err = e[0];
    p->line[0] = 0;
    p->port = 0;
    if (!wait_line)
        return;
    size_t len = 0;
    while (len + 1 < sizeof(p->line) && !strchr(p->line, '\n')) {
        ssize_t n = kit_read(p->out, p->line + len, sizeof(p->line) - 1 - len, 5000);
        if (n <= 0)
            break;
        len += (size_t)n;
        p->line[len] = 0;
    }
    char *colon = strrchr(p->line, ':');
    if (colon)
        p->port = (uint16_t)atoi(colon + 1);
}

/* Wait for exit; returns the exit status, or -signal. */
static int reap(struct proc *p, unsigned timeout_ms)
{
    int st = 0;
    uint64_t end = kit_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid)
            break;
        if (kit_now_ms() >= end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            kite_test_fail(__FILE__, __LINE__, "kite did not exit in time");
        }
        kit_sleep_ms(5);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static void read_all(int fd, char *buf, size_t cap)
{
    bool eof;
    kit_read_until_eof(fd, buf, cap, 3000, &eof);
}

static void cleanup(struct proc *p)
{
    close(p->out);
    close(p->err);
}

/* The seed, against the real program: exact lines, exact close. */
TEST(program_demo_seed_conversation)
{
    struct proc p;
    const char *args[] = {"demo", "--port", "0", NULL};
    spawn(&p, args, true);
    char want[64];
    snprintf(want, sizeof(want), "listening on ws://127.0.0.1:%u/\n", (unsigned)p.port);
    ASSERT(p.port != 0);
    ASSERT_STREQ(p.line, want);
    struct tc *c = tc_open_ok(p.port, "/echo", NULL);
    TC_EXPECT(c, KITE_OP_TEXT, "Please enter your name");
    tc_text(c, "Ann");
    TC_EXPECT(c, KITE_OP_TEXT, "Hi, Ann!");
    tc_text(c, "bYe");
    char reason[128];
    ASSERT_EQ(tc_expect_close(c, reason, sizeof(reason)), 1000);
    ASSERT_STREQ(reason, "Client said BYE");
    tc_close(c, 1000, NULL);
    ASSERT(tc_wait_eof(c, 3000));
    tc_free(c);
    /* The page and the health check. */
    char resp[8192];
    ASSERT_EQ(http_exchange(p.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 200);
    ASSERT(strstr(resp, "text/html") != NULL);
    ASSERT(strstr(resp, "'/echo'") != NULL);
    ASSERT_EQ(http_exchange(p.port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 0), 200);
    kill(p.pid, SIGINT);
    ASSERT_EQ(reap(&p, 5000), 0);
    char err[4096];
    read_all(p.err, err, sizeof(err));
    ASSERT(strstr(err, "open /echo from 127.0.0.1:") != NULL);
    ASSERT(strstr(err, "close 1000 \"Client said BYE\" by server, clean") != NULL);
    cleanup(&p);
}

TEST(program_echo_and_sigterm_1001)
{
    struct proc p;
    const char *args[] = {"echo", "--port=0", "--max-message", "1k", "-q", NULL};
    spawn(&p, args, true);
    ASSERT(p.port != 0);
    struct tc *c = tc_open_ok(p.port, "/any/path?x=1", NULL);
    tc_text(c, "text");
    TC_EXPECT(c, KITE_OP_TEXT, "text");
    tc_send(c, KITE_OP_BINARY, true, "\xff\x00", 2);
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), 1);
    ASSERT(f.op == KITE_OP_BINARY && f.len == 2 && f.data[0] == 0xff);
    free(f.data);
    struct tc *big = tc_open_ok(p.port, "/", NULL);
    static char k[1025];
    memset(k, 'k', sizeof(k));
    tc_send(big, KITE_OP_TEXT, true, k, 1025); /* over --max-message 1k */
    ASSERT_EQ(tc_expect_close(big, NULL, 0), 1009);
    tc_free(big);
    /* SIGTERM: the client gets 1001 going away, answers, and kite exits 0. */
    kill(p.pid, SIGTERM);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1001);
    tc_close(c, 1001, NULL);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_EQ(reap(&p, 6000), 0);
    char err[4096];
    read_all(p.err, err, sizeof(err));
    ASSERT(strstr(err, "open") == NULL); /* -q */
    tc_free(c);
    cleanup(&p);
}

TEST(program_errors_help_version)
{
    struct proc p;
    char out[4096], err[4096];
    const char *bad_port[] = {"demo", "--port", "70000", NULL};
    spawn(&p, bad_port, false);
    ASSERT_EQ(reap(&p, 3000), 2);
    read_all(p.err, err, sizeof(err));
    ASSERT(strstr(err, "--port") != NULL && strstr(err, "70000") != NULL);
    cleanup(&p);

    const char *unknown[] = {"echo", "--frobnicate", NULL};
    spawn(&p, unknown, false);
    ASSERT_EQ(reap(&p, 3000), 2);
    read_all(p.err, err, sizeof(err));
    ASSERT(strstr(err, "unknown option '--frobnicate'") != NULL);
    cleanup(&p);

    const char *nocmd[] = {"fly", NULL};
    spawn(&p, nocmd, false);
    ASSERT_EQ(reap(&p, 3000), 2);
    cleanup(&p);

    const char *help[] = {"--help", NULL};
    spawn(&p, help, false);
    ASSERT_EQ(reap(&p, 3000), 0);
    read_all(p.out, out, sizeof(out));
    ASSERT(strstr(out, "demo") && strstr(out, "echo"));
    cleanup(&p);

    const char *subhelp[] = {"help", "echo", NULL};
    spawn(&p, subhelp, false);
    ASSERT_EQ(reap(&p, 3000), 0);
    read_all(p.out, out, sizeof(out));
    ASSERT(strstr(out, "--max-message") != NULL);
    cleanup(&p);

    const char *version[] = {"--version", NULL};
    spawn(&p, version, false);
    ASSERT_EQ(reap(&p, 3000), 0);
    read_all(p.out, out, sizeof(out));
    ASSERT_EQ(strncmp(out, "kite ", 5), 0);
    cleanup(&p);
}

TEST(program_port_in_use)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ASSERT_EQ(listen(fd, 1), 0);
    socklen_t alen = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &alen);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(a.sin_port));
    struct proc p;
    const char *args[] = {"demo", "--port", port, NULL};
    spawn(&p, args, false);
    ASSERT_EQ(reap(&p, 3000), 1);
    char err[1024], want[128];
    read_all(p.err, err, sizeof(err));
    snprintf(want, sizeof(want), "port %s is in use; try --port 0 or another port", port);
    ASSERT(strstr(err, want) != NULL);
    cleanup(&p);
    close(fd);
}

TEST(program_ipv6_listening_line)
{
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    a.sin6_addr = in6addr_loopback;
    bool have6 = probe >= 0 && bind(probe, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (probe >= 0)
        close(probe);
    if (!have6) {
        printf("# no IPv6 loopback: skipping\n");
        return;
    }
    struct proc p;
    const char *args[] = {"echo", "--host", "::1", "--port", "0", NULL};
    spawn(&p, args, true);
    char want[64];
    snprintf(want, sizeof(want), "listening on ws://[::1]:%u/\n", (unsigned)p.port);
    ASSERT(p.port != 0);
    ASSERT_STREQ(p.line, want);
    kill(p.pid, SIGTERM);
    ASSERT_EQ(reap(&p, 5000), 0);
    cleanup(&p);
}

/* `kite echo --handler`: the sequential-handler echo behaves as the callback one (types
 * kept, pipelined messages in order, 1009 over --max-message, 1001 on SIGTERM) and logs
 * the session's open and close. */
TEST(program_echo_handler)
{
    struct proc p;
    const char *args[] = {"echo", "--handler", "--port", "0", "--max-message", "1k", NULL};
    spawn(&p, args, true);
    ASSERT(p.port != 0);
    struct tc *c = tc_open_ok(p.port, "/h", NULL);
    char msg[32];
    for (int i = 0; i < 50; i++) { /* all sent before any echo is read */
        snprintf(msg, sizeof(msg), "message %d", i);
        tc_text(c, msg);
    }
    for (int i = 0; i < 50; i++) {
        snprintf(msg, sizeof(msg), "message %d", i);
        TC_EXPECT(c, KITE_OP_TEXT, msg);
    }
    tc_send(c, KITE_OP_BINARY, true, "\x01\xfe", 2);
    struct tc_frame f;
    ASSERT_EQ(tc_next(c, &f, 3000), 1);
    ASSERT(f.op == KITE_OP_BINARY && f.len == 2 && f.data[1] == 0xfe);
    free(f.data);
    struct tc *big = tc_open_ok(p.port, "/", NULL);
    static char k[1025];
    memset(k, 'k', sizeof(k));
    tc_send(big, KITE_OP_TEXT, true, k, sizeof(k)); /* over --max-message 1k */
    ASSERT_EQ(tc_expect_close(big, NULL, 0), 1009);
    tc_free(big);
    kill(p.pid, SIGTERM);
    ASSERT_EQ(tc_expect_close(c, NULL, 0), 1001);
    tc_close(c, 1001, NULL);
    ASSERT(tc_wait_eof(c, 3000));
    ASSERT_EQ(reap(&p, 6000), 0);
    char err[4096];
    read_all(p.err, err, sizeof(err));
    ASSERT(strstr(err, "open /h from 127.0.0.1:") != NULL);
    ASSERT(strstr(err, "close 1001") != NULL);
    tc_free(c);
    cleanup(&p);
}

/* Transports and socket helpers: addresses, listen/accept/connect on loopback (port 0),
 * byte exchange through the transport vtable, EOF and errors, the accept pause on
 * EMFILE, and background name resolution. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop/loop.h"
#include "net/listener.h"
#include "net/resolve.h"
#include "net/sockutil.h"
#include "net/transport.h"
#include "test.h"

static struct kite_loop *new_loop(void)
{
    struct kite_loop *loop = NULL;
    ASSERT_EQ(kite_loop_new(NULL, &loop), KITE_OK);
    return loop;
}

static const char *fmt(const struct kite__addr *a)
{
    static char buf[KITE__ADDRSTRLEN];
    kite__addr_format(a, buf, sizeof buf);
    return buf;
}

/* ---- addresses ------------------------------------------------------------------ */

TEST(net_addr_parse_and_format)
{
    struct kite__addr a;
    ASSERT_EQ(kite__addr_parse(&a, "127.0.0.1", 5555), KITE_OK);
    ASSERT_STREQ(fmt(&a), "127.0.0.1:5555");
    ASSERT_EQ(kite__addr_port(&a), 5555);
    ASSERT_EQ(kite__addr_parse(&a, "::1", 5555), KITE_OK);
    ASSERT_STREQ(fmt(&a), "[::1]:5555");
    ASSERT_EQ(kite__addr_parse(&a, "[::1]", 80), KITE_OK);
    ASSERT_STREQ(fmt(&a), "[::1]:80");
    ASSERT_EQ(kite__addr_parse(&a, "::", 0), KITE_OK);
    ASSERT_STREQ(fmt(&a), "[::]:0");
    ASSERT_EQ(kite__addr_parse(&a, "0.0.0.0", 1), KITE_OK);
    ASSERT_STREQ(fmt(&a), "0.0.0.0:1");
    /* what a dual-stack listener reports for an IPv4 peer prints as IPv4 */
    ASSERT_EQ(kite__addr_parse(&a, "::ffff:10.1.2.3", 443), KITE_OK);
    ASSERT_STREQ(fmt(&a), "10.1.2.3:443");
    ASSERT_EQ(kite__addr_parse(&a, "fe80::1%7", 9), KITE_OK);
    ASSERT_STREQ(fmt(&a), "[fe80::1%7]:9");
    ASSERT_EQ(kite__addr_parse(&a, "2001:db8::10", 65535), KITE_OK);
    ASSERT_STREQ(fmt(&a), "[2001:db8::10]:65535");
}

TEST(net_addr_parse_rejects_names_and_garbage)
{
    static const char *bad[] = {"localhost", "", "1.2.3", "1.2.3.4.5", "256.0.0.1", "[::1",
                                "::1]", "[]", "[1.2.3.4]", "::g", "fe80::1%nosuchif0", "1.2.3.4 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct kite__addr a;
        ASSERT_EQ(kite__addr_parse(&a, bad[i], 1), KITE_ERR_INVALID);
        ASSERT_EQ(a.len, 0);
    }
    struct kite__addr a;
    ASSERT_EQ(kite__addr_parse(&a, NULL, 1), KITE_ERR_INVALID);
}

TEST(net_addr_format_truncates_safely)
{
    struct kite__addr a;
    ASSERT_EQ(kite__addr_parse(&a, "127.0.0.1", 5555), KITE_OK);
    char small[6];
    ASSERT_EQ(kite__addr_format(&a, small, sizeof small), strlen("127.0.0.1:5555"));
    ASSERT_STREQ(small, "127.0");
    struct kite__addr none = {0};
    char buf[8];
    kite__addr_format(&none, buf, sizeof buf);
    ASSERT_STREQ(buf, "-");
    ASSERT_EQ(kite__addr_port(&none), 0);
}

/* ---- a loopback connection through the loop ---------------------------------- */

struct server {
    struct kite__listener l;
    int fd;  /* accepted */
    struct kite__addr peer;
};

static void on_accept(struct kite_loop *loop, struct kite__listener *l, int fd,
                      const struct kite__addr *peer)
{
    KITE_UNUSED(loop);
    struct server *s = kite__container_of(l, struct server, l);
    ASSERT_EQ(s->fd, -1);
    s->fd = fd;
    s->peer = *peer;
}

struct client {
    struct kite__io io;
    int fd;
    int state; /* 0 connecting, 1 connected, <0 error */
};

static void on_connect(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    struct client *c = kite__container_of(io, struct client, io);
    int rc = kite__tcp_connect_result(c->fd);
    c->state = rc == KITE_OK ? 1 : rc;
    kite__io_stop(loop, io);
}

static void run_until(struct kite_loop *loop, bool (*done)(void *), void *arg, int max_ms)
{
    uint64_t end = kite__clock_ms() + (uint64_t)max_ms;
    while (!done(arg) && kite__clock_ms() < end)
        ASSERT_EQ(kite_loop_run_once(loop, 10), KITE_OK);
    ASSERT(done(arg));
}

static bool accepted_and_connected(void *p)
{
    void **pp = p;
    struct server *s = pp[0];
    struct client *c = pp[1];
    return s->fd >= 0 && c->state != 0;
}

/* Listen on host:0, connect to the bound address, accept; returns both transports. */
static void make_pair(struct kite_loop *loop, const char *host, struct kite__transport *st,
                      struct kite__transport *ct, struct kite__addr *bound_out)
{
    struct kite__addr bound;
    int lfd = kite__tcp_listen(host, 0, NULL, &bound);
    ASSERT(lfd >= 0);
    ASSERT_NE(kite__addr_port(&bound), 0);
    struct server s = {.fd = -1};
    ASSERT_EQ(kite__listener_start(loop, &s.l, lfd, on_accept, NULL), KITE_OK);
    struct client c = {0};
    int rc = kite__tcp_connect(&bound, &c.fd);
    ASSERT(rc == KITE_OK || rc == KITE_AGAIN);
    if (rc == KITE_OK) {
        c.state = 1;
    } else {
        kite__io_init(&c.io, c.fd, on_connect);
        ASSERT_EQ(kite__io_start(loop, &c.io, KITE__IO_WRITE), KITE_OK);
    }
    void *both[2] = {&s, &c};
    run_until(loop, accepted_and_connected, both, 3000);
    ASSERT_EQ(c.state, 1);
    ASSERT_EQ(s.l.accepted, 1);
    /* the accepted peer is the client's local address */
    struct kite__addr local;
    ASSERT_EQ(kite__sock_local_addr(c.fd, &local), KITE_OK);
    char want[KITE__ADDRSTRLEN], got[KITE__ADDRSTRLEN];
    kite__addr_format(&local, want, sizeof want);
    kite__addr_format(&s.peer, got, sizeof got);
    ASSERT_STREQ(got, want);
    kite__listener_stop(loop, &s.l);
    close(lfd);
    kite__tcp_transport_init(st, s.fd);
    kite__tcp_transport_init(ct, c.fd);
    if (bound_out)
        *bound_out = bound;
}

struct reader {
    struct kite__io io;
    struct kite__transport *t;
    uint8_t got[256 * 1024];
    size_t n;
    ssize_t last; /* last read result */
};

static void on_readable(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    struct reader *r = kite__container_of(io, struct reader, io);
    size_t cap;
    uint8_t *buf = kite__loop_rxbuf(loop, &cap);
    ssize_t n = kite__tp_read(r->t, buf, cap);
    r->last = n;
    if (n > 0) {
        ASSERT(r->n + (size_t)n <= sizeof r->got);
        memcpy(r->got + r->n, buf, (size_t)n);
        r->n += (size_t)n;
    } else if (n != KITE_AGAIN) {
        kite__io_stop(loop, io); /* EOF or error: done */
    }
}

static bool reader_has(void *p)
{
    struct reader *r = p;
    return r->n >= 11 || (r->last <= 0 && r->last != KITE_AGAIN && r->last != 1);
}

static void exchange(const char *host)
{
    struct kite_loop *loop = new_loop();
    struct kite__transport st, ct;
    make_pair(loop, host, &st, &ct, NULL);
    ASSERT_STREQ(st.vt->name, "tcp");
    ASSERT(kite__tp_fd(&st) >= 0 && kite__tp_fd(&st) == st.tcp_fd); /* plain TCP: the fd inline */
    ASSERT_EQ(kite__tp_handshake(&ct), KITE_OK);
    ASSERT_EQ(kite__tp_pending(&ct), 0);
    ASSERT_EQ(kite__tp_want_events(&ct, KITE__IO_READ), KITE__IO_READ);

    /* client -> server with writev of several pieces */
    struct iovec iov[3] = {{"hel", 3}, {"lo ", 3}, {"world", 5}};
    ASSERT_EQ(kite__tp_writev(&ct, iov, 3), 11);
    struct reader *r = calloc(1, sizeof *r);
    r->t = &st;
    r->last = 1;
    kite__io_init(&r->io, kite__tp_fd(&st), on_readable);
    ASSERT_EQ(kite__io_start(loop, &r->io, KITE__IO_READ), KITE_OK);
    run_until(loop, reader_has, r, 3000);
    ASSERT_EQ(r->n, 11);
    ASSERT_MEMEQ(r->got, "hello world", 11);

    /* server -> client */
    uint8_t buf[64];
    ASSERT_EQ(kite__tp_write(&st, "pong", 4), 4);
    ssize_t n;
    uint64_t end = kite__clock_ms() + 2000;
    while ((n = kite__tp_read(&ct, buf, sizeof buf)) == KITE_AGAIN && kite__clock_ms() < end)
        usleep(1000);
    ASSERT_EQ(n, 4);
    ASSERT_MEMEQ(buf, "pong", 4);
    ASSERT_EQ(kite__tp_read(&ct, buf, sizeof buf), KITE_AGAIN); /* nothing more */

    /* the client half-closes: the server reads EOF (0) */
    ASSERT_EQ(kite__tp_shutdown(&ct), KITE_OK);
    r->n = 0;
    r->last = 1;
    run_until(loop, reader_has, r, 3000);
    ASSERT_EQ(r->last, 0);
    ASSERT(!kite__io_active(&r->io));
    /* the server can still write to a half-closed peer */
    ASSERT_EQ(kite__tp_write(&st, "bye", 3), 3);

    kite__tp_close(&st);
    kite__tp_close(&st); /* idempotent */
    ASSERT_EQ(kite__tp_fd(&st), -1);
    kite__tp_close(&ct);
    free(r);
    kite_loop_free(loop);
}

TEST(net_tcp_exchange_over_ipv4_loopback)
{
    exchange("127.0.0.1");
}

static bool have_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

TEST(net_tcp_exchange_over_ipv6_loopback)
{
    if (!have_ipv6()) {
        printf("# skipped: the kernel has no IPv6 loopback\n");
        return;
    }
    exchange("::1");
}

TEST(net_tcp_exchange_via_localhost_name)
{
    exchange("localhost");
}

TEST(net_dual_stack_wildcard_accepts_ipv4_and_reports_it_as_ipv4)
{
    if (!have_ipv6()) {
        printf("# skipped: the kernel has no IPv6\n");
        return;
    }
    struct kite_loop *loop = new_loop();
    struct kite__addr bound, to;
    int lfd = kite__tcp_listen(NULL, 0, NULL, &bound);
    ASSERT(lfd >= 0);
    ASSERT_EQ(bound.u.sa.sa_family, AF_INET6); /* "::" */
    ASSERT_EQ(kite__addr_parse(&to, "127.0.0.1", kite__addr_port(&bound)), KITE_OK);
    int cfd;
    int rc = kite__tcp_connect(&to, &cfd);
    ASSERT(rc == KITE_OK || rc == KITE_AGAIN);
    struct kite__addr peer;
    int fd = KITE_AGAIN;
    uint64_t end = kite__clock_ms() + 2000;
    while ((fd = kite__tcp_accept(lfd, &peer)) == KITE_AGAIN && kite__clock_ms() < end)
        usleep(1000);
    ASSERT(fd >= 0);
    char want[KITE__ADDRSTRLEN];
    struct kite__addr local;
    ASSERT_EQ(kite__sock_local_addr(cfd, &local), KITE_OK);
    kite__addr_format(&local, want, sizeof want);
    ASSERT_STREQ(fmt(&peer), want);
    ASSERT(strncmp(want, "127.0.0.1:", 10) == 0);
    close(fd);
    close(cfd);
    close(lfd);
    kite_loop_free(loop);
}

TEST(net_tcp_reset_and_write_to_closed_peer_are_errors_not_signals)
{
    struct kite_loop *loop = new_loop();
    struct kite__transport st, ct;
    make_pair(loop, "127.0.0.1", &st, &ct, NULL);
    /* the server aborts: SO_LINGER 0 sends RST */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    ASSERT_EQ(setsockopt(kite__tp_fd(&st), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    kite__tp_close(&st);
    uint8_t buf[16];
    ssize_t n;
    uint64_t end = kite__clock_ms() + 2000;
    while ((n = kite__tp_read(&ct, buf, sizeof buf)) == KITE_AGAIN && kite__clock_ms() < end)
        usleep(1000);
    ASSERT_EQ(n, -ECONNRESET);
    /* writing to the dead connection: -EPIPE (or a reset), never SIGPIPE */
    n = kite__tp_write(&ct, "x", 1);
    ASSERT(n == -EPIPE || n == -ECONNRESET);
    kite__tp_close(&ct);
    kite_loop_free(loop);
}

TEST(net_tcp_partial_write_returns_count_then_again)
{
    struct kite_loop *loop = new_loop();
    struct kite__transport st, ct;
    make_pair(loop, "127.0.0.1", &st, &ct, NULL);
    int small = 4096;
    ASSERT_EQ(setsockopt(kite__tp_fd(&ct), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    static uint8_t chunk[1 << 20];
    ssize_t total = 0, n;
    /* nobody reads: the kernel takes some, then nothing */
    while ((n = kite__tp_write(&ct, chunk, sizeof chunk)) > 0)
        total += n;
    ASSERT_EQ(n, KITE_AGAIN);
    ASSERT(total > 0 && total < (ssize_t)sizeof chunk * 8);
    kite__tp_close(&st);
    kite__tp_close(&ct);
    kite_loop_free(loop);
}

TEST(net_connect_refused_is_reported)
{
    struct kite_loop *loop = new_loop();
    struct kite__addr bound;
    int lfd = kite__tcp_listen("127.0.0.1", 0, NULL, &bound);
    ASSERT(lfd >= 0);
    close(lfd); /* nobody listens on that port now */
    struct client c = {0};
    int rc = kite__tcp_connect(&bound, &c.fd);
    if (rc == KITE_AGAIN) {
        kite__io_init(&c.io, c.fd, on_connect);
        ASSERT_EQ(kite__io_start(loop, &c.io, KITE__IO_WRITE), KITE_OK);
        uint64_t end = kite__clock_ms() + 2000;
        while (c.state == 0 && kite__clock_ms() < end)
            ASSERT_EQ(kite_loop_run_once(loop, 10), KITE_OK);
        ASSERT_EQ(c.state, -ECONNREFUSED);
        close(c.fd);
    } else {
        ASSERT_EQ(rc, -ECONNREFUSED);
    }
    struct kite__addr none = {0};
    int fd;
    ASSERT_EQ(kite__tcp_connect(&none, &fd), KITE_ERR_INVALID);
    kite_loop_free(loop);
}

TEST(net_listen_reuseport_shares_a_port_and_reuseaddr_alone_does_not)
{
    struct kite__listen_opts o = {.reuseport = true};
    struct kite__addr b1, b2;
    int fd1 = kite__tcp_listen("127.0.0.1", 0, &o, &b1);
    ASSERT(fd1 >= 0);
    int fd2 = kite__tcp_listen("127.0.0.1", kite__addr_port(&b1), &o, &b2);
    ASSERT(fd2 >= 0);
    ASSERT_EQ(kite__addr_port(&b2), kite__addr_port(&b1));
    ASSERT_EQ(kite__tcp_listen("127.0.0.1", kite__addr_port(&b1), NULL, NULL), -EADDRINUSE);
    close(fd1);
    close(fd2);
    ASSERT_EQ(kite__tcp_listen("256.1.1.1", 0, NULL, NULL) < 0, 1);
}

TEST(net_accept_with_nothing_waiting_is_again)
{
    int lfd = kite__tcp_listen("127.0.0.1", 0, NULL, NULL);
    ASSERT(lfd >= 0);
    struct kite__addr peer;
    ASSERT_EQ(kite__tcp_accept(lfd, &peer), KITE_AGAIN);
    ASSERT_EQ(peer.len, 0);
    close(lfd);
}

/* ---- accept pauses when out of descriptors ---------------------------------------- */

struct emfile_srv {
    struct kite__listener l;
    int fds[4];
    int naccepted;
    int errors;
    int last_err;
};

static void emfile_accept(struct kite_loop *loop, struct kite__listener *l, int fd,
                          const struct kite__addr *peer)
{
    KITE_UNUSED(loop);
    KITE_UNUSED(peer);
    struct emfile_srv *s = kite__container_of(l, struct emfile_srv, l);
    s->fds[s->naccepted++] = fd;
}

static void emfile_error(struct kite_loop *loop, struct kite__listener *l, int err)
{
    KITE_UNUSED(loop);
    struct emfile_srv *s = kite__container_of(l, struct emfile_srv, l);
    s->errors++;
    s->last_err = err;
}

TEST(net_listener_pauses_on_emfile_instead_of_spinning)
{
    struct kite_loop *loop = new_loop();
    struct kite__addr bound;
    int lfd = kite__tcp_listen("127.0.0.1", 0, NULL, &bound);
    ASSERT(lfd >= 0);
    struct emfile_srv s = {0};
    ASSERT_EQ(kite__listener_start(loop, &s.l, lfd, emfile_accept, emfile_error), KITE_OK);
    int cfd;
    int rc = kite__tcp_connect(&bound, &cfd);
    ASSERT(rc == KITE_OK || rc == KITE_AGAIN);
    /* Lower the descriptor limit so that the next accept fails with EMFILE. */
    int probe = dup(0);
    ASSERT(probe >= 0);
    close(probe);
    struct rlimit old, lim;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)probe; /* every number below probe is taken; probe is the next */
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
    uint64_t end = kite__clock_ms() + 2000;
    while (!s.errors && kite__clock_ms() < end)
        ASSERT_EQ(kite_loop_run_once(loop, 10), KITE_OK);
    ASSERT_EQ(s.errors, 1);
    ASSERT_EQ(s.last_err, -EMFILE);
    ASSERT_EQ(s.naccepted, 0);
    ASSERT(!kite__io_active(&s.l.io)); /* paused: not watching, so no spin */
    /* a few iterations during the pause: no new error, nothing accepted */
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(kite_loop_run_once(loop, 10), KITE_OK);
    ASSERT_EQ(s.errors, 1);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
    end = kite__clock_ms() + 3000;
    while (!s.naccepted && kite__clock_ms() < end)
        ASSERT_EQ(kite_loop_run_once(loop, 50), KITE_OK);
    ASSERT_EQ(s.naccepted, 1); /* resumed after the pause; the client waited in the backlog */
    ASSERT(kite__io_active(&s.l.io));
    kite__listener_stop(loop, &s.l);
    close(s.fds[0]);
    close(cfd);
    close(lfd);
    kite_loop_free(loop);
}

/* ---- name resolution ------------------------------------------------------------ */

struct res {
    int calls;
    int status;
    size_t n;
    struct kite__addr first;
    bool loopback;
    bool on_loop;
};

static void on_resolved(struct kite_loop *loop, int status, const struct kite__addr *addrs,
                        size_t n, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->status = status;
    r->n = n;
    r->on_loop = kite_loop_is_current(loop);
    r->loopback = n > 0;
    for (size_t i = 0; i < n; i++) {
        const struct kite__addr *a = &addrs[i];
        bool lo = (a->u.sa.sa_family == AF_INET &&
                   (ntohl(a->u.in.sin_addr.s_addr) >> 24) == 127) ||
                  (a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->u.in6.sin6_addr));
        r->loopback = r->loopback && lo && kite__addr_port(a) == 8080;
    }
    if (n)
        r->first = addrs[0];
}

static bool res_done(void *p)
{
    return ((struct res *)p)->calls > 0;
}

TEST(net_resolve_async_localhost)
{
    struct kite_loop *loop = new_loop();
    struct res r = {0};
    struct kite__resolve *req = NULL;
    ASSERT_EQ(kite__resolve_async(loop, "localhost", 8080, on_resolved, &r, &req), KITE_OK);
    ASSERT(req != NULL);
    ASSERT_EQ(r.calls, 0); /* never answered from inside the call */
    run_until(loop, res_done, &r, 10000);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(r.status, KITE_OK);
    ASSERT(r.n >= 1);
    ASSERT(r.loopback);
    ASSERT(r.on_loop);
    kite_loop_free(loop);
}

TEST(net_resolve_async_numeric_needs_no_thread_and_is_still_async)
{
    struct kite_loop *loop = new_loop();
    struct res r = {0};
    ASSERT_EQ(kite__resolve_async(loop, "[::1]", 8080, on_resolved, &r, NULL), KITE_OK);
    ASSERT_EQ(r.calls, 0);
    ASSERT_EQ(kite_loop_run_once(loop, 0), KITE_OK);
    ASSERT_EQ(r.calls, 1);
    ASSERT_EQ(r.n, 1);
    ASSERT_STREQ(fmt(&r.first), "[::1]:8080");
    ASSERT_EQ(kite__resolve_async(loop, "", 1, on_resolved, &r, NULL), KITE_ERR_INVALID);
    kite_loop_free(loop);
}

TEST(net_resolve_cancel_and_loop_free_with_requests_in_flight)
{
    struct kite_loop *loop = new_loop();
    struct res r1 = {0}, r2 = {0}, r3 = {0};
    struct kite__resolve *q1, *q2;
    ASSERT_EQ(kite__resolve_async(loop, "localhost", 1, on_resolved, &r1, &q1), KITE_OK);
    ASSERT_EQ(kite__resolve_async(loop, "127.0.0.1", 1, on_resolved, &r2, &q2), KITE_OK);
    kite__resolve_cancel(q1);
    kite__resolve_cancel(q2);
    /* a third is left running when the loop is freed: its callback must never run,
     * and the helper must not touch freed memory (ASan) */
    ASSERT_EQ(kite__resolve_async(loop, "localhost", 1, on_resolved, &r3, NULL), KITE_OK);
    uint64_t end = kite__clock_ms() + 300;
    while (kite__clock_ms() < end)
        ASSERT_EQ(kite_loop_run_once(loop, 10), KITE_OK);
    ASSERT_EQ(r1.calls, 0);
    ASSERT_EQ(r2.calls, 0);
    r3.calls = 0;
    ASSERT_EQ(kite__resolve_async(loop, "localhost", 1, on_resolved, &r3, NULL), KITE_OK);
    kite_loop_free(loop);
    usleep(200000); /* let the helper finish against the freed loop */
    ASSERT_EQ(r3.calls, 0);
}

TEST(net_resolve_many_concurrent_requests)
{
    struct kite_loop *loop = new_loop();
    enum { N = 40 };
    struct res r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(kite__resolve_async(loop, "localhost", 8080, on_resolved, &r[i], NULL),
                  KITE_OK);
    uint64_t end = kite__clock_ms() + 10000;
    int done = 0;
    while (done < N && kite__clock_ms() < end) {
        ASSERT_EQ(kite_loop_run_once(loop, 10), KITE_OK);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].calls;
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(r[i].calls, 1);
        ASSERT_EQ(r[i].status, KITE_OK);
    }
    kite_loop_free(loop);
}

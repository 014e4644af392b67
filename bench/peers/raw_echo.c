/*
 * peer_raw_echo — the raw TCP ceiling for `kite bench`.
 *
 * A single-threaded epoll server that does no WebSocket work: it reads into one
 * buffer and writes the bytes back. To be drivable by `kite bench` (a WebSocket
 * client) it answers the opening handshake with a fixed, valid 101 response
 * (RFC 6455 §4.2.2), then echoes every byte verbatim. The client's frames are masked
 * (§5.3), so they come back masked: the 101 carries "X-Kite-Peer: raw-echo" so the
 * bench knows to unmask what it receives. No frame is ever parsed here, so this is
 * the cheapest server a WebSocket client can talk to: the ceiling the kite server is
 * measured against.
 *
 * Usage: peer_raw_echo [--host ADDR] [--port N] [-q]
 * Prints "listening on ws://ADDR:PORT/" as its first stdout line (port 0 picks a free
 * port) and runs until SIGTERM or SIGINT.
 *
 * Debugging aid: KITE_RAW_ECHO_CORRUPT=N flips the low bit of the N-th echoed byte
 * (0-based, counted over every connection's echoed bytes, handshakes excluded), so a
 * test can check that the load generator notices a corrupted echo.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "util/util.h"

#define RBUF_SIZE (256 * 1024)

/* RFC 6455 §1.3: the GUID appended to the client's key before hashing. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct rconn {
    struct rconn *prev, *next; /* every open connection, so exit can free them */
    int fd;
    bool upgraded;        /* the 101 has been queued; everything after is echoed */
    bool want_out;        /* EPOLLOUT is registered (and EPOLLIN is not) */
    struct kite_buf head; /* request head while the handshake is in progress */
    struct kite_buf pend; /* bytes the kernel did not take yet */
};

struct server {
    struct rconn *conns; /* list head */
    int ep;
    int lfd;
    uint8_t *rbuf;
    uint64_t echoed;      /* bytes echoed so far, for the corruption hook */
    uint64_t corrupt_at;  /* UINT64_MAX when the hook is off */
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    KITE_UNUSED(sig);
    g_stop = 1;
}

static void rconn_free(struct server *s, struct rconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->fd); /* also removes it from the epoll set */
    kite__buf_free(&c->head, NULL);
    kite__buf_free(&c->pend, NULL);
    kite__free(NULL, c);
}

/* Read interest while nothing is pending; write interest only while output waits, so
 * a slow reader is never sent more than one buffer ahead (backpressure). */
static int rconn_set_out(struct server *s, struct rconn *c, bool want_out)
{
    if (c->want_out == want_out)
        return 0;
    struct epoll_event ev = {.events = want_out ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        return -errno;
    c->want_out = want_out;
    return 0;
}

/* Write what is pending; returns 0, or -errno when the connection must go. */
static int rconn_flush(struct server *s, struct rconn *c)
{
    while (c->pend.len > 0) {
        ssize_t n = send(c->fd, kite__buf_head(&c->pend), c->pend.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return rconn_set_out(s, c, true);
            return -errno;
        }
        kite__buf_consume(&c->pend, (size_t)n);
    }
    return rconn_set_out(s, c, false);
}

/* Write `len` bytes, queueing whatever the kernel does not take at once. */
static int rconn_write(struct server *s, struct rconn *c, const uint8_t *p, size_t len)
{
    if (c->pend.len == 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        }
    }
    if (len == 0)
        return 0;
    if (kite__buf_append(&c->pend, NULL, p, len) != KITE_OK)
        return KITE_ERR_NOMEM;
    return rconn_set_out(s, c, true);
}

/* The corruption hook: flip one bit of one echoed byte, once. */
static void maybe_corrupt(struct server *s, uint8_t *p, size_t len)
{
    if (s->corrupt_at >= s->echoed && s->corrupt_at - s->echoed < len)
        p[s->corrupt_at - s->echoed] ^= 0x01;
    s->echoed += len;
}

static int echo_bytes(struct server *s, struct rconn *c, uint8_t *p, size_t len)
{
    maybe_corrupt(s, p, len);
    return rconn_write(s, c, p, len);
}

/* Queue the 101 for the request in c->head (head_len bytes), then echo the rest. */
static int answer_upgrade(struct server *s, struct rconn *c, size_t head_len,
                          const struct kite_http_header *hdrs, size_t n_hdrs)
{
    const struct kite_http_header *key = kite__http_header_next(hdrs, n_hdrs,
                                                                "Sec-WebSocket-Key", NULL);
    if (!key || key->value_len == 0 || key->value_len > 64)
        return KITE_ERR_HANDSHAKE;
    /* RFC 6455 §4.2.2 item 5.4: accept = base64(SHA-1(key + GUID)). */
    char cat[64 + sizeof(ws_guid)];
    memcpy(cat, key->value, key->value_len);
    memcpy(cat + key->value_len, ws_guid, sizeof(ws_guid) - 1);
    uint8_t digest[20];
    if (kite__sha1(cat, key->value_len + sizeof(ws_guid) - 1, digest) != KITE_OK)
        return KITE_ERR_CRYPTO;
    char accept[32];
    kite__base64_encode(digest, sizeof(digest), accept);
    char resp[256];
    int n = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                     "X-Kite-Peer: raw-echo\r\n\r\n",
                     accept);
    int rc = rconn_write(s, c, (const uint8_t *)resp, (size_t)n);
    c->upgraded = true;
    size_t rest = c->head.len - head_len;
    if (rc == 0 && rest > 0)
        rc = echo_bytes(s, c, kite__buf_head(&c->head) + head_len, rest);
    kite__buf_free(&c->head, NULL);
    return rc;
}

/* Gather the request head; answer it once whole. */
static int on_head_bytes(struct server *s, struct rconn *c)
{
    uint8_t *dst = kite__buf_reserve(&c->head, NULL, 1024);
    if (!dst)
        return KITE_ERR_NOMEM;
    ssize_t got = recv(c->fd, dst, 1024, 0);
    if (got == 0)
        return -ECONNRESET;
    if (got < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
    size_t last = c->head.len;
    c->head.len += (size_t)got;
    struct kite_http_header hdrs[KITE_HTTP_DEFAULT_MAX_HEADERS];
    struct kite_http_request req;
    ssize_t n = kite__http_parse_request((const char *)kite__buf_head(&c->head), c->head.len,
                                         last, NULL, &req, hdrs);
    if (n == KITE_INCOMPLETE)
        return 0;
    if (n < 0)
        return (int)n;
    return answer_upgrade(s, c, (size_t)n, hdrs, req.num_headers);
}

static int on_readable(struct server *s, struct rconn *c)
{
    if (!c->upgraded)
        return on_head_bytes(s, c);
    ssize_t got = recv(c->fd, s->rbuf, RBUF_SIZE, 0);
    if (got == 0)
        return -ECONNRESET;
    if (got < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
    return echo_bytes(s, c, s->rbuf, (size_t)got);
}

static void on_conn_event(struct server *s, struct rconn *c, uint32_t events)
{
    int rc = 0;
    if (c->want_out && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        rc = rconn_flush(s, c);
    else if (!c->want_out && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        rc = on_readable(s, c);
    if (rc < 0)
        rconn_free(s, c);
}

static void accept_all(struct server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE and friends: try again on the next wake-up */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct rconn *c = kite__calloc(NULL, sizeof(*c));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (!c || epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            kite__free(NULL, c);
            continue;
        }
        c->fd = fd;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
    }
}

static int listen_on(const char *host, unsigned port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "peer_raw_echo: bad IPv4 address %s\n", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
        perror("peer_raw_echo: listen");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    printf("listening on ws://%s:%u/\n", host, (unsigned)ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

/* Block the stop signals except inside epoll_pwait, so a signal can never slip in
 * between the check of g_stop and the wait. */
static void setup_signals(sigset_t *wait_mask)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, wait_mask);
    sigdelset(wait_mask, SIGTERM);
    sigdelset(wait_mask, SIGINT);
}

static int run(struct server *s)
{
    sigset_t wait_mask;
    setup_signals(&wait_mask);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev) < 0)
        return 1;
    struct epoll_event evs[256];
    while (!g_stop) {
        int n = epoll_pwait(s->ep, evs, 256, -1, &wait_mask);
        if (n < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                accept_all(s);
            else
                on_conn_event(s, evs[i].data.ptr, evs[i].events);
        }
    }
    return 0;
}

static int parse_args(int argc, char **argv, const char **host, unsigned *port)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-q") == 0)
            continue; /* accepted for symmetry with `kite echo`; nothing is logged anyway */
        if (i + 1 < argc && strcmp(argv[i], "--host") == 0) {
            *host = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--port") == 0) {
            char *end;
            unsigned long p = strtoul(argv[++i], &end, 10);
            if (*end || p > 65535)
                return -1;
            *port = (unsigned)p;
        } else {
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    unsigned port = 0;
    if (parse_args(argc, argv, &host, &port) < 0) {
        fprintf(stderr, "usage: peer_raw_echo [--host IPV4] [--port N] [-q]\n");
        return 2;
    }
    struct server s = {.corrupt_at = UINT64_MAX};
    const char *corrupt = getenv("KITE_RAW_ECHO_CORRUPT");
    if (corrupt && *corrupt)
        s.corrupt_at = strtoull(corrupt, NULL, 10);
    s.rbuf = kite__malloc(NULL, RBUF_SIZE);
    s.ep = epoll_create1(EPOLL_CLOEXEC);
    s.lfd = listen_on(host, port);
    if (!s.rbuf || s.ep < 0 || s.lfd < 0)
        return 1;
    int rc = run(&s);
    while (s.conns)
        rconn_free(&s, s.conns);
    close(s.lfd);
    close(s.ep);
    kite__free(NULL, s.rbuf);
    return rc;
}

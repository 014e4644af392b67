/* The plain TCP transport: the vtable over a non-blocking socket (net/transport.h). */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/transport.h"

static ssize_t tcp_read(struct kite__transport *t, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(t->tcp_fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return KITE_AGAIN;
        return -errno;
    }
}

/* sendmsg rather than writev: MSG_NOSIGNAL keeps a write to a reset connection from
 * raising SIGPIPE, without touching the process's signal dispositions. One buffer (the
 * usual case: a session's queued output) goes through send(), which the kernel serves
 * without building an iovec iterator from user memory. */
static ssize_t tcp_sendmsg(int fd, const struct iovec *iov, int iovcnt)
{
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)(iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
    return sendmsg(fd, &m, MSG_NOSIGNAL);
}

static ssize_t tcp_writev(struct kite__transport *t, const struct iovec *iov, int iovcnt)
{
    for (;;) {
        ssize_t n = iovcnt == 1 ? send(t->tcp_fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                                : tcp_sendmsg(t->tcp_fd, iov, iovcnt);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return KITE_AGAIN;
        return -errno;
    }
}

static int tcp_handshake(struct kite__transport *t)
{
    KITE_UNUSED(t);
    return KITE_OK;
}

static int tcp_shutdown(struct kite__transport *t)
{
    return shutdown(t->tcp_fd, SHUT_WR) < 0 ? -errno : KITE_OK;
}

static void tcp_close(struct kite__transport *t)
{
    if (t->tcp_fd >= 0)
        close(t->tcp_fd);
    t->tcp_fd = -1;
}

static uint32_t tcp_want_events(const struct kite__transport *t, uint32_t want)
{
    KITE_UNUSED(t);
    return want;
}

static size_t tcp_pending(const struct kite__transport *t)
{
    KITE_UNUSED(t);
    return 0;
}

const struct kite__transport_vt kite__tcp_vt = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .handshake = tcp_handshake,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .want_events = tcp_want_events,
    .pending = tcp_pending,
};

void kite__tcp_transport_init(struct kite__transport *t, int fd)
{
    t->vt = &kite__tcp_vt;
    t->tcp_fd = fd;
}

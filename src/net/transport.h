/*
 * net/transport — the byte pipe under a connection (DESIGN §2 layer 5, STYLE §2.6): a
 * small vtable with a plain TCP implementation here and TLS (OpenSSL) beside it.
 *
 * A struct kite__transport is embedded in the connection (16 bytes on 64-bit targets:
 * it is part of every idle session, issue 7). Plain TCP needs nothing else: vt + fd,
 * no allocation. A TLS transport keeps its fd and all its per-connection state (the
 * SSL object, its BIOs, its flags) in a heap block behind `conn`, which starts with a
 * struct kite__tp_conn so that kite__tp_fd() finds the fd of either kind inline.
 *
 * The owner (server or client connection) keeps the fd watcher; the transport never
 * touches the loop. After each read/write/handshake step the owner asks
 * kite__tp_want_events(t, what_i_want) which KITE__IO_* interest to register, because
 * TLS may need the fd readable to finish a write (renegotiation, post-handshake
 * messages) or writable to finish a read, and the handshake wants either.
 *
 * Return conventions (all functions are non-blocking):
 *   read     > 0 bytes read; 0 end of stream (the peer closed cleanly); KITE_AGAIN
 *            nothing to read now (for TLS this can happen even when the fd polled
 *            readable: an incomplete record); -errno (e.g. -ECONNRESET) or KITE_ERR_TLS
 *            on failure: the connection is dead, close it.
 *   writev   > 0 bytes taken (may be fewer than offered: queue the rest and wait for
 *            KITE__IO_WRITE); KITE_AGAIN if nothing could be taken; -errno (-EPIPE,
 *            -ECONNRESET) or KITE_ERR_TLS. Never raises SIGPIPE. A TLS transport that
 *            returned a partial count or KITE_AGAIN must be offered the same bytes again
 *            (OpenSSL's retry rule); a TCP transport does not care.
 *   handshake KITE_OK once the transport is ready for data (TCP: at once); KITE_AGAIN
 *            when it needs I/O (register want_events and call again on readiness);
 *            KITE_ERR_TLS / KITE_ERR_TLS_VERIFY / -errno on failure.
 *   shutdown sends end-of-stream after the queued data (TLS: close_notify, then
 *            SHUT_WR): KITE_OK, KITE_AGAIN (call again when writable), or -errno.
 *   close    releases everything, closes the fd. The struct may be freed afterwards.
 *   pending  bytes already buffered inside the transport (decrypted TLS data) that a
 *            read would return without the fd becoming readable; the owner must read
 *            them before waiting for the fd again. Always 0 for TCP.
 */
#ifndef KITE_NET_TRANSPORT_H
#define KITE_NET_TRANSPORT_H

#include <sys/types.h>
#include <sys/uio.h>

#include "loop/loop.h"
#include "util/util.h"

struct kite__transport;

struct kite__transport_vt {
    const char *name; /* "tcp", "tls": for logs */
    ssize_t (*read)(struct kite__transport *t, void *buf, size_t len);
    ssize_t (*writev)(struct kite__transport *t, const struct iovec *iov, int iovcnt);
    int (*handshake)(struct kite__transport *t);
    int (*shutdown)(struct kite__transport *t);
    void (*close)(struct kite__transport *t);
    /* KITE__IO_READ/WRITE to register, given what the owner wants (READ/WRITE). */
    uint32_t (*want_events)(const struct kite__transport *t, uint32_t want);
    size_t (*pending)(const struct kite__transport *t);
};

/* The head of a heap-backed transport's private block (TLS: its struct tls_conn). */
struct kite__tp_conn {
    int fd; /* the socket */
};

/* Which union member is live is told by vt: kite__tcp_vt has tcp_fd, any other conn. */
struct kite__transport {
    const struct kite__transport_vt *vt;
    union {
        int tcp_fd;                 /* TCP: the socket; -1 once closed */
        struct kite__tp_conn *conn; /* others (TLS): the private block; NULL once closed */
    };
};
_Static_assert(sizeof(void *) != 8 || sizeof(struct kite__transport) == 16,
               "struct kite__transport is not 16 bytes");

/* Make `t` a plain TCP transport over `fd` (a connected non-blocking socket, now owned
 * by the transport: close() closes it). No allocation, cannot fail. */
void kite__tcp_transport_init(struct kite__transport *t, int fd);
extern const struct kite__transport_vt kite__tcp_vt;

static inline ssize_t kite__tp_read(struct kite__transport *t, void *buf, size_t len)
{
    return t->vt->read(t, buf, len);
}
static inline ssize_t kite__tp_writev(struct kite__transport *t, const struct iovec *iov,
                                      int iovcnt)
{
    return t->vt->writev(t, iov, iovcnt);
}
static inline ssize_t kite__tp_write(struct kite__transport *t, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return t->vt->writev(t, &iov, 1);
}
static inline int kite__tp_handshake(struct kite__transport *t)
{
    return t->vt->handshake(t);
}
static inline int kite__tp_shutdown(struct kite__transport *t)
{
    return t->vt->shutdown(t);
}
/* The socket under any transport; -1 once it is closed. */
static inline int kite__tp_fd(const struct kite__transport *t)
{
    if (t->vt == &kite__tcp_vt)
        return t->tcp_fd;
    return t->conn ? t->conn->fd : -1;
}
/* Close and release; idempotent (a closed transport has fd -1 and vt kept). */
static inline void kite__tp_close(struct kite__transport *t)
{
    if (kite__tp_fd(t) >= 0)
        t->vt->close(t);
}
static inline uint32_t kite__tp_want_events(const struct kite__transport *t, uint32_t want)
{
    return t->vt->want_events(t, want);
}
static inline size_t kite__tp_pending(const struct kite__transport *t)
{
    return t->vt->pending(t);
}

#endif

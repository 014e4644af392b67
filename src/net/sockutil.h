/*
 * net/sockutil — socket helpers: addresses, listening, accepting, connecting.
 *
 * Every socket made here is non-blocking and close-on-exec. Accepted and connected
 * sockets get TCP_NODELAY: a WebSocket frame should leave at once, and kite corks small
 * writes itself (one writev per iteration), so Nagle would only add latency.
 * Functions return KITE_OK / an fd (>= 0), or a negative code: -errno from the failed
 * system call, or a kite code where said.
 */
#ifndef KITE_NET_SOCKUTIL_H
#define KITE_NET_SOCKUTIL_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "util/util.h"

/* A socket address, IPv4 or IPv6, small enough to embed or copy by value. */
struct kite__addr {
    socklen_t len; /* 0 = no address */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } u;
};

/* Room for the longest formatted address: "[" v6 "%" scope "]:" port, plus NUL. */
#define KITE__ADDRSTRLEN 72

/*
 * Parse a numeric host ("127.0.0.1", "::1", "[::1]", "fe80::1%eth0") and port into
 * `out`. No name lookup. KITE_OK or KITE_ERR_INVALID.
 */
int kite__addr_parse(struct kite__addr *out, const char *host, uint16_t port);
/*
 * Format for logs: "127.0.0.1:5555", "[::1]:5555". IPv4-mapped IPv6 addresses (what a
 * dual-stack listener reports for IPv4 peers) print as plain IPv4. Always NUL-terminates
 * (when cap > 0); returns the length it wanted, snprintf-style. An empty address prints
 * as "-".
 */
size_t kite__addr_format(const struct kite__addr *a, char *buf, size_t cap);
/* The port in host order; 0 for no address. */
uint16_t kite__addr_port(const struct kite__addr *a);
/* Fill from a sockaddr of `len` bytes (AF_INET or AF_INET6). KITE_OK or KITE_ERR_INVALID. */
int kite__addr_from_sockaddr(struct kite__addr *out, const struct sockaddr *sa, socklen_t len);
/* getsockname / getpeername into a kite__addr. KITE_OK or -errno. */
int kite__sock_local_addr(int fd, struct kite__addr *out);
int kite__sock_peer_addr(int fd, struct kite__addr *out);

struct kite__listen_opts {
    int backlog;    /* listen(2) backlog; <= 0 means 1024 (the kernel caps it at somaxconn) */
    bool reuseport; /* SO_REUSEPORT: several sockets (one per loop) share the port and the
                     * kernel spreads new connections between them. With port 0, bind
                     * the first, read its port, and pass that port to the others. */
    bool v6only;    /* for "::" only: IPv6 alone instead of dual-stack */
};

/*
 * Create a listening TCP socket bound to `host`:`port` (port 0 = any free port).
 *   host: a numeric IPv4/IPv6 address ("0.0.0.0", "127.0.0.1", "::", "::1", "[::1]"),
 *         a name ("localhost": resolved synchronously with getaddrinfo, which is fine
 *         at startup; the addresses are tried in the resolver's order and the first that
 *         binds is used), or NULL / "" / "*" for every address: "::" dual-stack,
 *         falling back to "0.0.0.0" when the kernel has no IPv6.
 *   IPV6_V6ONLY: "::" (or the NULL/"*" wildcard) is made dual-stack (V6ONLY=0, IPv4
 *         clients appear as ::ffff:a.b.c.d) unless opts->v6only; a specific IPv6
 *         address gets V6ONLY=1, so it never conflicts with an IPv4 listener on the
 *         same port.
 *   SO_REUSEADDR is always set (restart without waiting for TIME_WAIT).
 * `opts` may be NULL (defaults). On success returns the fd and, if `bound` is not NULL,
 * stores the bound address (getsockname: the real port when port was 0). On failure
 * returns -errno (-EADDRINUSE, -EADDRNOTAVAIL, -EAFNOSUPPORT, ...) or KITE_ERR_RESOLVE.
 */
int kite__tcp_listen(const char *host, uint16_t port, const struct kite__listen_opts *opts,
                     struct kite__addr *bound);

/*
 * Accept one connection from listening socket `lfd`: accept4 with SOCK_NONBLOCK |
 * SOCK_CLOEXEC, then TCP_NODELAY. Returns the new fd (peer address in *peer if not
 * NULL), KITE_AGAIN when none is waiting, or -errno. EINTR and the errors that only
 * concern the aborted connection (ECONNABORTED, EPROTO, EPERM) are returned as is; the
 * caller should just try again. -EMFILE/-ENFILE/-ENOBUFS/-ENOMEM mean the process is
 * out of resources: see struct kite__listener, which pauses accepting.
 */
int kite__tcp_accept(int lfd, struct kite__addr *peer);

/*
 * Start a non-blocking connect to `to`. On KITE_OK (connected at once) or KITE_AGAIN
 * (in progress: wait for KITE__IO_WRITE, then call kite__tcp_connect_result()) stores
 * the new socket in *fd. Returns -errno on failure (no fd is left open).
 */
int kite__tcp_connect(const struct kite__addr *to, int *fd);
/* The outcome of an in-progress connect once the fd is writable: KITE_OK or -errno
 * (SO_ERROR, e.g. -ECONNREFUSED). */
int kite__tcp_connect_result(int fd);

/* Set TCP_NODELAY. KITE_OK or -errno. */
int kite__sock_nodelay(int fd, bool on);

#endif

/* Socket helpers: addresses, listen, accept, connect (net/sockutil.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "net/sockutil.h"

/* ---- addresses ------------------------------------------------------------------ */

int kite__addr_from_sockaddr(struct kite__addr *out, const struct sockaddr *sa, socklen_t len)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in))
        len = sizeof(struct sockaddr_in);
    else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6))
        len = sizeof(struct sockaddr_in6);
    else
        return KITE_ERR_INVALID;
    memcpy(&out->u, sa, len);
    out->len = len;
    return KITE_OK;
}

/* The scope of "fe80::1%eth0" or "fe80::1%2": an interface name or index. */
static int parse_scope(const char *s, uint32_t *scope)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s && !*end && v <= UINT32_MAX) {
        *scope = (uint32_t)v;
        return KITE_OK;
    }
    *scope = if_nametoindex(s);
    return *scope ? KITE_OK : KITE_ERR_INVALID;
}

static int parse_v6(struct kite__addr *out, const char *host, size_t n, uint16_t port)
{
    char buf[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (n >= sizeof buf)
        return KITE_ERR_INVALID;
    memcpy(buf, host, n);
    buf[n] = '\0';
    uint32_t scope = 0;
    char *pct = strchr(buf, '%');
    if (pct) {
        *pct = '\0';
        if (parse_scope(pct + 1, &scope) < 0)
            return KITE_ERR_INVALID;
    }
    struct sockaddr_in6 *in6 = &out->u.in6;
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
        return KITE_ERR_INVALID;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_scope_id = scope;
    out->len = sizeof *in6;
    return KITE_OK;
}

int kite__addr_parse(struct kite__addr *out, const char *host, uint16_t port)
{
    memset(out, 0, sizeof *out);
    if (!host || !*host)
        return KITE_ERR_INVALID;
    size_t n = strlen(host);
    if (host[0] == '[') {
        if (n < 3 || host[n - 1] != ']')
            return KITE_ERR_INVALID;
        return parse_v6(out, host + 1, n - 2, port);
    }
    if (inet_pton(AF_INET, host, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons(port);
        out->len = sizeof out->u.in;
        return KITE_OK;
    }
    if (!strchr(host, ':'))
        return KITE_ERR_INVALID;
    int rc = parse_v6(out, host, n, port);
    if (rc < 0)
        memset(out, 0, sizeof *out);
    return rc;
}

uint16_t kite__addr_port(const struct kite__addr *a)
{
    if (a->len && a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in.sin_port);
    if (a->len && a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    return 0;
}

size_t kite__addr_format(const struct kite__addr *a, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    int n;
    if (a->len && a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in.sin_addr, ip, sizeof ip);
        n = snprintf(buf, cap, "%s:%u", ip, ntohs(a->u.in.sin_port));
    } else if (a->len && a->u.sa.sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = &a->u.in6;
        unsigned port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], ip, sizeof ip);
            n = snprintf(buf, cap, "%s:%u", ip, port);
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
            if (in6->sin6_scope_id)
                n = snprintf(buf, cap, "[%s%%%u]:%u", ip, (unsigned)in6->sin6_scope_id, port);
            else
                n = snprintf(buf, cap, "[%s]:%u", ip, port);
        }
    } else {
        n = snprintf(buf, cap, "-");
    }
    return n < 0 ? 0 : (size_t)n;
}

static int sock_name(int fd, struct kite__addr *out, bool peer)
{
    memset(out, 0, sizeof *out);
    socklen_t len = sizeof out->u;
    int rc = peer ? getpeername(fd, &out->u.sa, &len) : getsockname(fd, &out->u.sa, &len);
    if (rc < 0)
        return -errno;
    if (len > sizeof out->u)
        return KITE_ERR_INVALID;
    out->len = len;
    return KITE_OK;
}

int kite__sock_local_addr(int fd, struct kite__addr *out)
{
    return sock_name(fd, out, false);
}

int kite__sock_peer_addr(int fd, struct kite__addr *out)
{
    return sock_name(fd, out, true);
}

int kite__sock_nodelay(int fd, bool on)
{
    int v = on;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) < 0 ? -errno : KITE_OK;
}

/* ---- listening ------------------------------------------------------------------ */

static int set_int(int fd, int level, int opt, int v)
{
    return setsockopt(fd, level, opt, &v, sizeof v) < 0 ? -errno : KITE_OK;
}

static bool is_v6_any(const struct kite__addr *a)
{
    return a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a->u.in6.sin6_addr);
}

static int listen_opts(int fd, const struct kite__addr *a, const struct kite__listen_opts *o)
{
    int rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rc == KITE_OK && o->reuseport)
        rc = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (rc == KITE_OK && a->u.sa.sa_family == AF_INET6)
        rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, is_v6_any(a) ? o->v6only : 1);
    return rc;
}

static int listen_one(const struct kite__addr *a, const struct kite__listen_opts *o,
                      struct kite__addr *bound)
{
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = listen_opts(fd, a, o);
    if (rc == KITE_OK && bind(fd, &a->u.sa, a->len) < 0)
        rc = -errno;
    if (rc == KITE_OK && listen(fd, o->backlog > 0 ? o->backlog : 1024) < 0)
        rc = -errno;
    if (rc == KITE_OK && bound)
        rc = kite__sock_local_addr(fd, bound);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* A host name: try each address getaddrinfo gives, in its order, until one binds. */
static int listen_name(const char *host, uint16_t port, const struct kite__listen_opts *o,
                       struct kite__addr *bound)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    if (getaddrinfo(host, service, &hints, &res) != 0 || !res)
        return KITE_ERR_RESOLVE;
    int rc = KITE_ERR_RESOLVE;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        struct kite__addr a;
        if (kite__addr_from_sockaddr(&a, ai->ai_addr, ai->ai_addrlen) < 0)
            continue;
        rc = listen_one(&a, o, bound);
        if (rc >= 0)
            break;
    }
    freeaddrinfo(res);
    return rc;
}

int kite__tcp_listen(const char *host, uint16_t port, const struct kite__listen_opts *opts,
                     struct kite__addr *bound)
{
    static const struct kite__listen_opts defaults = {0};
    const struct kite__listen_opts *o = opts ? opts : &defaults;
    struct kite__addr a;
    if (!host || !*host || strcmp(host, "*") == 0) {
        kite__addr_parse(&a, "::", port);
        int fd = listen_one(&a, o, bound);
        if (fd != -EAFNOSUPPORT && fd != -EADDRNOTAVAIL)
            return fd;
        kite__addr_parse(&a, "0.0.0.0", port); /* a kernel without IPv6 */
        return listen_one(&a, o, bound);
    }
    if (kite__addr_parse(&a, host, port) == KITE_OK)
        return listen_one(&a, o, bound);
    return listen_name(host, port, o, bound);
}

/* ---- accept and connect --------------------------------------------------------- */

int kite__tcp_accept(int lfd, struct kite__addr *peer)
{
    struct kite__addr tmp;
    struct kite__addr *p = peer ? peer : &tmp;
    socklen_t len = sizeof p->u;
    int fd = accept4(lfd, &p->u.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
        p->len = 0;
        return errno == EAGAIN || errno == EWOULDBLOCK ? KITE_AGAIN : -errno;
    }
    p->len = len <= sizeof p->u ? len : 0;
    (void)kite__sock_nodelay(fd, true); /* only latency is at stake if this fails */
    return fd;
}

int kite__tcp_connect(const struct kite__addr *to, int *fdp)
{
    if (!to->len)
        return KITE_ERR_INVALID;
    int fd = socket(to->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    (void)kite__sock_nodelay(fd, true);
    if (connect(fd, &to->u.sa, to->len) == 0) {
        *fdp = fd;
        return KITE_OK;
    }
    /* EINTR: a non-blocking connect carries on asynchronously, as with EINPROGRESS. */
    if (errno == EINPROGRESS || errno == EINTR) {
        *fdp = fd;
        return KITE_AGAIN;
    }
    int err = -errno;
    close(fd);
    return err;
}

int kite__tcp_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return err ? -err : KITE_OK;
}

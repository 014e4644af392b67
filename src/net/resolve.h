/*
 * net/resolve — name resolution that never stalls a loop.
 *
 * getaddrinfo() blocks (DNS, /etc/hosts, NSS modules), so kite__resolve_async() runs it
 * on a small process-wide pool of helper threads (at most KITE__RESOLVE_THREADS,
 * started on demand, exiting after a few idle seconds) and posts the result back to
 * the loop, where the callback runs. Numeric addresses ("127.0.0.1", "::1") are parsed
 * without a thread; their callback still runs later (at the end of the current
 * iteration), never from inside kite__resolve_async().
 */
#ifndef KITE_NET_RESOLVE_H
#define KITE_NET_RESOLVE_H

#include "loop/loop.h"
#include "net/sockutil.h"

#define KITE__RESOLVE_THREADS 4
#define KITE__RESOLVE_MAX 16 /* addresses delivered at most */

struct kite__resolve;

/*
 * The result, on the loop's thread. status: KITE_OK with n >= 1 addresses (TCP, in the
 * resolver's preference order, RFC 6724 as applied by getaddrinfo; try them in order),
 * or KITE_ERR_RESOLVE (no such name, or no address) / KITE_ERR_NOMEM with n == 0.
 * `addrs` is valid during the call only; copy what you keep. The request is freed right
 * after the callback returns.
 */
typedef void kite__resolve_cb(struct kite_loop *loop, int status, const struct kite__addr *addrs,
                              size_t n, void *arg);

/*
 * Resolve `host` (copied) for TCP port `port`, any address family. `host` may be a
 * bracketed IPv6 literal ("[::1]"). On KITE_OK, *req (if not NULL) receives a handle
 * usable with kite__resolve_cancel() until the callback has run. Returns KITE_OK,
 * KITE_ERR_INVALID (empty host), KITE_ERR_NOMEM, or -errno when no helper thread could
 * be started. The callback is called exactly once unless the request is cancelled or
 * the loop is freed first.
 */
int kite__resolve_async(struct kite_loop *loop, const char *host, uint16_t port,
                        kite__resolve_cb *cb, void *arg, struct kite__resolve **req);

/* Cancel on the loop's thread: the callback will not run. The request's memory is
 * released by kite (when its helper thread is done). `req` must not be used after. */
void kite__resolve_cancel(struct kite__resolve *req);

#endif

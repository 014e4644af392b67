/*
 * net/tls — TLS (OpenSSL) as a transport behind the vtable of net/transport.h. The
 * codec never sees TLS: it gets the same plaintext bytes a TCP transport would give it.
 *
 * Two kinds of context, each made once (per app, listener or client) from the public
 * options of <kite/tls.h> and shared by every connection made from it, on any loop or
 * thread (an SSL_CTX is safe to share):
 *
 *   struct kite_tls_server_ctx   certificate(s) + key(s), SNI table, ALPN "http/1.1"
 *   struct kite_tls_client_ctx   trust store, verification on by default, ALPN offered
 *
 * Contexts are reference counted: every transport made from a context holds a
 * reference, so kite__tls_*_ctx_free() may be called while connections are still open;
 * the memory goes when the last of them closes. Free and transport-init may run on
 * different threads.
 *
 * A TLS transport is a struct kite__transport like the TCP one (vt + one word): `conn`
 * points at a small heap block holding the fd, the SSL object and the transport's
 * flags, so the struct may be copied (the session layer copies it) as long as only one
 * copy is used afterwards.
 *
 * Life of a transport, for its owner (server or client connection):
 *   1. kite__tls_transport_init_server/_client over a connected non-blocking fd;
 *   2. call kite__tp_handshake() until it returns KITE_OK, registering
 *      kite__tp_want_events(t, 0) with the loop after every KITE_AGAIN (READ or WRITE,
 *      whichever OpenSSL is waiting for). The handshake is not bounded in time here:
 *      the owner's handshake timer covers it;
 *   3. once it returns KITE_OK, read at once (or check kite__tp_pending()): bytes that
 *      came with the last handshake flight (e.g. the HTTP request) may already be
 *      buffered, and the fd will not signal them again;
 *   4. read/writev as with TCP, with two TLS rules: a writev that returned a partial
 *      count or KITE_AGAIN must be offered the same bytes again (more may follow them),
 *      and when kite__tp_want_events(t, KITE__IO_READ) includes KITE__IO_WRITE, a read
 *      is waiting for the fd to become writable (OpenSSL must send a post-handshake
 *      message first): call read again on KITE__IO_WRITE;
 *   5. kite__tp_shutdown() sends close_notify then SHUT_WR; kite__tp_close() frees
 *      everything (sending close_notify first, best effort, if shutdown did not).
 * On KITE_ERR_TLS / KITE_ERR_TLS_VERIFY (or -errno), kite__tls_last_error() describes
 * what happened in words meant for a user or a log.
 */
#ifndef KITE_NET_TLS_H
#define KITE_NET_TLS_H

#include "kite/tls.h"
#include "net/transport.h"

struct ssl_st; /* OpenSSL's SSL */

/* The largest TLS record payload (RFC 8446 §5.1: 2^14 bytes). writev coalesces small
 * buffers into chunks of up to this size, one record each. */
#define KITE__TLS_RECORD_MAX 16384u

/* Buffer sizes for kite__tls_*_ctx_new()'s error message. */
#define KITE__TLS_ERRLEN 256

/*
 * Make a server context from `o` (borrowed; every string is read during the call and
 * copied where needed). `alloc` (NULL = libc) is borrowed, must outlive the context, and
 * serves kite's own blocks; OpenSSL allocates through its own hooks
 * (CRYPTO_set_mem_functions), which are process-wide.
 * Returns KITE_OK and stores the context in *out, or:
 *   KITE_ERR_INVALID  bad options (no certificate, bad version range, bad SNI pattern);
 *   KITE_ERR_TLS      a file cannot be read or parsed, the key does not match the
 *                     certificate, the cipher list is invalid;
 *   KITE_ERR_NOMEM    out of memory.
 * On failure *out is NULL and, if `err` is not NULL, err[0..errlen) holds a
 * NUL-terminated message such as "cannot read certificate file x.pem: No such file or
 * directory" or "private key k.pem does not match certificate c.pem".
 */
int kite__tls_server_ctx_new(const struct kite_tls_server_options *o,
                             const struct kite_allocator *alloc, struct kite_tls_server_ctx **out,
                             char *err, size_t errlen);
/* Drop the creator's reference (NULL is a no-op). Transports still open keep it alive. */
void kite__tls_server_ctx_free(struct kite_tls_server_ctx *ctx);

/*
 * Make a client context from `o` (NULL: defaults, i.e. verify against the system trust
 * store). Same conventions as kite__tls_server_ctx_new(); failures: KITE_ERR_INVALID,
 * KITE_ERR_TLS ("cannot read CA file ca.pem: No such file or directory"),
 * KITE_ERR_NOMEM.
 */
int kite__tls_client_ctx_new(const struct kite_tls_client_options *o,
                             const struct kite_allocator *alloc, struct kite_tls_client_ctx **out,
                             char *err, size_t errlen);
void kite__tls_client_ctx_free(struct kite_tls_client_ctx *ctx);

/*
 * Make `t` the server side of a TLS connection over `fd` (accepted, non-blocking). On
 * KITE_OK the transport owns fd (close() closes it) and holds a reference on `ctx`.
 * On KITE_ERR_NOMEM nothing changed: `t` is untouched and the caller still owns fd.
 */
int kite__tls_transport_init_server(struct kite__transport *t, struct kite_tls_server_ctx *ctx,
                                    int fd);

/*
 * Make `t` the client side over `fd` (connected or connecting, non-blocking). `host` is
 * the host from the URL (borrowed for the call): a DNS name, an IPv4 literal or an
 * IPv6 literal, with or without brackets. Unless the context's options set
 * server_name, it is sent as SNI (names only: RFC 6066 §3 forbids IP literals) and the
 * certificate must be valid for it (RFC 6125 name check, or an IP SAN for a literal).
 * Returns KITE_OK (the transport owns fd and holds a reference on ctx), KITE_ERR_INVALID
 * (no host while verification is on, or a host that is not a name), or KITE_ERR_NOMEM;
 * on failure `t` is untouched and the caller still owns fd.
 */
int kite__tls_transport_init_client(struct kite__transport *t, struct kite_tls_client_ctx *ctx,
                                    int fd, const char *host);

/* True when `t` is a TLS transport. */
bool kite__tls_is(const struct kite__transport *t);

/*
 * Tell a TLS transport whether more input is due soon (quiet false: in the middle of a
 * large message). While not quiet OpenSSL keeps its read and write buffers between
 * reads; once quiet (the default) they are freed whenever OpenSSL holds nothing in them,
 * at once and after every read or write, so an idle connection holds none. No-op for
 * another transport or before the handshake is done.
 */
void kite__tls_quiet(struct kite__transport *t, bool quiet);

/*
 * Describe the last failure of a TLS transport in words: "certificate verification
 * failed: hostname mismatch (the certificate is not valid for \"x.test\")", "TLS
 * handshake failed: the peer sent plain HTTP to a TLS port", "the peer closed the
 * connection during the TLS handshake". Writes a NUL-terminated message (truncated to
 * `len`) and returns the failure's code (KITE_ERR_TLS, KITE_ERR_TLS_VERIFY, -errno), or
 * KITE_OK with an empty message when nothing failed. Works until close().
 */
int kite__tls_last_error(const struct kite__transport *t, char *buf, size_t len);

/* After the handshake: the protocol version ("TLSv1.3") and the ALPN protocol chosen
 * (NULL and *len 0 when none). NULL for a closed transport. */
const char *kite__tls_version(const struct kite__transport *t);
const uint8_t *kite__tls_alpn(const struct kite__transport *t, size_t *len);

/* The OpenSSL connection, for tests and diagnostics (NULL once closed). */
struct ssl_st *kite__tls_ssl(const struct kite__transport *t);

extern const struct kite__transport_vt kite__tls_vt;

#endif

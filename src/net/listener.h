/*
 * net/listener — accepting connections on a loop.
 *
 * A struct kite__listener watches a listening socket (from kite__tcp_listen) and hands
 * each accepted fd to on_accept. Per readiness it accepts at most
 * KITE__LISTENER_BATCH connections, so a connection storm cannot starve the loop's
 * established connections (level-triggered epoll reports the socket again).
 *
 * Running out of file descriptors (EMFILE/ENFILE) or kernel memory (ENOBUFS/ENOMEM) on
 * accept would make a level-triggered loop spin: the socket stays readable and every
 * accept fails. The listener instead stops watching the socket for
 * KITE__LISTENER_PAUSE_MS and calls on_error once (for a log line); clients keep waiting
 * in the kernel's backlog and are accepted when descriptors free up. (The alternative,
 * a reserve fd closed to accept-and-drop, races with other threads taking the freed fd,
 * and drops clients that might have been served a moment later.)
 */
#ifndef KITE_NET_LISTENER_H
#define KITE_NET_LISTENER_H

#include "loop/loop.h"
#include "net/sockutil.h"

#define KITE__LISTENER_BATCH 64
#define KITE__LISTENER_PAUSE_MS 100

struct kite__listener;
/* A new connection: `fd` is non-blocking, has TCP_NODELAY, and now belongs to the
 * callee. `peer` is valid during the call. The callback may stop the listener, but
 * must then free it only through a deferred task (kite__loop_defer): the accept loop
 * looks at the listener after the callback returns. */
typedef void kite__accept_cb(struct kite_loop *loop, struct kite__listener *l, int fd,
                             const struct kite__addr *peer);
/* Accepting failed with `err` (-EMFILE, -ENFILE, -ENOBUFS, -ENOMEM, or an error of the
 * listening socket itself) and is paused for KITE__LISTENER_PAUSE_MS. Errors that
 * concern only the connection being accepted (ECONNABORTED, EPERM, ...) are skipped
 * silently. May stop the listener. */
typedef void kite__accept_error_cb(struct kite_loop *loop, struct kite__listener *l, int err);

struct kite__listener {
    struct kite__io io;
    struct kite__timer pause; /* resumes accepting after a resource error */
    kite__accept_cb *on_accept;
    kite__accept_error_cb *on_error; /* optional */
    void *data;                      /* for the owner */
    unsigned long accepted;          /* connections accepted so far */
};

/*
 * Start accepting on listening socket `fd` (borrowed: the listener never closes it).
 * `on_error` may be NULL. Returns KITE_OK or -errno (epoll_ctl).
 */
int kite__listener_start(struct kite_loop *loop, struct kite__listener *l, int fd,
                         kite__accept_cb *on_accept, kite__accept_error_cb *on_error);
/* Stop accepting (idempotent). The owner may then close the fd and free `l`. */
void kite__listener_stop(struct kite_loop *loop, struct kite__listener *l);

#endif

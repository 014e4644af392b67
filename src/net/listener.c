/* Accepting connections on a loop, with a pause on resource exhaustion (net/listener.h). */
#include <errno.h>

#include "net/listener.h"

/* Errors that concern only the connection being accepted: skip it and go on. */
static bool transient(int err)
{
    return err == -EINTR || err == -ECONNABORTED || err == -EPROTO || err == -EPERM ||
           err == -ENETDOWN || err == -ENOPROTOOPT || err == -EHOSTDOWN || err == -ENONET ||
           err == -EHOSTUNREACH || err == -EOPNOTSUPP || err == -ENETUNREACH;
}

static void pause_accepting(struct kite_loop *loop, struct kite__listener *l, int err)
{
    kite__io_stop(loop, &l->io);
    kite__timer_start(loop, &l->pause, KITE__LISTENER_PAUSE_MS);
    if (l->on_error)
        l->on_error(loop, l, err);
}

static void on_resume(struct kite_loop *loop, struct kite__timer *t)
{
    struct kite__listener *l = kite__container_of(t, struct kite__listener, pause);
    if (kite__io_start(loop, &l->io, KITE__IO_READ) < 0)
        kite__timer_start(loop, &l->pause, KITE__LISTENER_PAUSE_MS);
}

static void on_ready(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    struct kite__listener *l = kite__container_of(io, struct kite__listener, io);
    for (int i = 0; i < KITE__LISTENER_BATCH; i++) {
        struct kite__addr peer;
        int fd = kite__tcp_accept(io->fd, &peer);
        if (fd >= 0) {
            l->accepted++;
            l->on_accept(loop, l, fd, &peer);
            if (!l->io.active) /* the callback stopped us */
                return;
        } else if (fd == KITE_AGAIN) {
            return;
        } else if (!transient(fd)) {
            /* Out of descriptors or memory (or a broken socket): a level-triggered loop
             * would spin on it, so wait a little and try again. */
            pause_accepting(loop, l, fd);
            return;
        }
    }
}

int kite__listener_start(struct kite_loop *loop, struct kite__listener *l, int fd,
                         kite__accept_cb *on_accept, kite__accept_error_cb *on_error)
{
    kite__io_init(&l->io, fd, on_ready);
    kite__timer_init(&l->pause, on_resume);
    l->on_accept = on_accept;
    l->on_error = on_error;
    l->accepted = 0;
    return kite__io_start(loop, &l->io, KITE__IO_READ);
}

void kite__listener_stop(struct kite_loop *loop, struct kite__listener *l)
{
    kite__io_stop(loop, &l->io);
    kite__timer_stop(loop, &l->pause);
}

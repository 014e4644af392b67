/* The epoll backend (loop/backend.h). */
#include <errno.h>
#include <unistd.h>

#include "loop/backend.h"
#include "loop/loop.h"

/* The loop's event bits are epoll's, so events pass through untranslated, except the
 * edge-trigger flag: the watcher keeps its interest in a byte, so KITE__IO_EDGE is a low
 * bit (EPOLLRDBAND's, which kite never asks for) and becomes EPOLLET here. */
_Static_assert(KITE__IO_READ == EPOLLIN, "KITE__IO_READ must equal EPOLLIN");
_Static_assert(KITE__IO_WRITE == EPOLLOUT, "KITE__IO_WRITE must equal EPOLLOUT");
_Static_assert(KITE__IO_ERROR == EPOLLERR, "KITE__IO_ERROR must equal EPOLLERR");
_Static_assert(KITE__IO_HUP == EPOLLHUP, "KITE__IO_HUP must equal EPOLLHUP");
_Static_assert(KITE__IO_EDGE == EPOLLRDBAND, "KITE__IO_EDGE must stand in for EPOLLRDBAND");
_Static_assert((KITE__IO_FLUSH & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0,
               "KITE__IO_FLUSH must not be an event epoll reports");

int kite__poll_create(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int kite__poll_ctl(int pfd, enum kite__poll_op op, int fd, uint32_t events, void *ptr)
{
    static const int ops[] = {0, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL};
    uint32_t e = events & ~(uint32_t)KITE__IO_EDGE;
    if (events & KITE__IO_EDGE)
        e |= (uint32_t)EPOLLET;
    struct epoll_event ev = {.events = e, .data.ptr = ptr};
    return epoll_ctl(pfd, ops[op], fd, &ev) < 0 ? -errno : KITE_OK;
}

int kite__poll_wait(int pfd, kite__poll_event *ev, int max, int timeout_ms)
{
    int n = epoll_wait(pfd, ev, max, timeout_ms);
    if (n >= 0)
        return n;
    return errno == EINTR ? 0 : -errno;
}

void kite__poll_free(int pfd)
{
    if (pfd >= 0)
        close(pfd);
}

/*
 * loop/backend — the poller behind the loop: four calls (create, ctl, wait, free), so
 * another backend (kqueue, io_uring) can replace loop_epoll.c without touching loop.c.
 * Event bits are KITE__IO_* (loop.h); the epoll backend uses them unchanged but for
 * KITE__IO_EDGE, which it turns into EPOLLET.
 */
#ifndef KITE_LOOP_BACKEND_H
#define KITE_LOOP_BACKEND_H

#include <stdint.h>

#include <sys/epoll.h>

enum kite__poll_op {
    KITE__POLL_ADD = 1,
    KITE__POLL_MOD = 2,
    KITE__POLL_DEL = 3,
};

/* One ready event as the backend returns it. */
typedef struct epoll_event kite__poll_event;

static inline uint32_t kite__pev_events(const kite__poll_event *ev)
{
    return ev->events;
}
static inline void *kite__pev_ptr(const kite__poll_event *ev)
{
    return ev->data.ptr;
}
static inline void kite__pev_clear(kite__poll_event *ev)
{
    ev->data.ptr = NULL;
}

/* A new poller; returns its fd or -errno. */
int kite__poll_create(void);
/* Add, modify or delete interest in `fd` (events: KITE__IO_*; ptr comes back in
 * events). KITE_OK or -errno. */
int kite__poll_ctl(int pfd, enum kite__poll_op op, int fd, uint32_t events, void *ptr);
/* Wait up to timeout_ms (-1 = forever) for at most `max` events. Returns the count,
 * 0 on timeout or EINTR, or -errno. */
int kite__poll_wait(int pfd, kite__poll_event *ev, int max, int timeout_ms);
void kite__poll_free(int pfd);

#endif

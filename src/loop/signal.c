/*
 * SIGINT/SIGTERM delivered to a loop (kite_loop_watch_signals).
 *
 * The handler only records the signal in an atomic bit set and writes an eventfd; the
 * loop reads both on its own thread and calls the user's callback there. Unlike
 * signalfd this needs no signal mask in any thread: whichever thread the kernel picks
 * runs the handler, and the handler touches only async-signal-safe state.
 *
 * The eventfd is process-wide and never closed: a handler running on another thread
 * might still be about to write it while the loop stops watching, and a closed (then
 * reused) descriptor number would be written to. One descriptor for the life of the
 * process is the price of having no such race.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "loop/loop.h"

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kite_loop *sig_loop;        /* the watching loop, under sig_lock */
static struct sigaction old_int, old_term; /* dispositions to restore */
static atomic_int sig_fd = -1;             /* the eventfd, created once */
static atomic_uint sig_pending;            /* bit per signal number received */

static void on_signal(int signo)
{
    int saved = errno;
    if (signo > 0 && signo < 32)
        atomic_fetch_or(&sig_pending, 1u << signo);
    int fd = atomic_load(&sig_fd);
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(fd, &one, sizeof one);
        (void)r;
    }
    errno = saved;
}

static void on_sigio(struct kite_loop *loop, struct kite__io *io, uint32_t events)
{
    KITE_UNUSED(events);
    uint64_t v;
    ssize_t r = read(io->fd, &v, sizeof v);
    KITE_UNUSED(r);
    unsigned mask = atomic_exchange(&sig_pending, 0u);
    for (int s = 1; s < 32; s++)
        if ((mask & (1u << s)) && loop->sig_cb) /* the callback may unwatch */
            loop->sig_cb(loop, s, loop->sig_arg);
}

static int signal_fd(void)
{
    int fd = atomic_load(&sig_fd);
    if (fd >= 0)
        return fd;
    fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    atomic_store(&sig_fd, fd);
    return fd;
}

static int install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, &old_int) < 0)
        return -errno;
    if (sigaction(SIGTERM, &sa, &old_term) < 0) {
        int err = -errno;
        sigaction(SIGINT, &old_int, NULL);
        return err;
    }
    return KITE_OK;
}

static int watch_locked(struct kite_loop *loop, kite_loop_signal_cb *cb, void *arg)
{
    if (sig_loop)
        return KITE_ERR_EXISTS;
    int fd = signal_fd();
    if (fd < 0)
        return fd;
    kite__io_init(&loop->sigio, fd, on_sigio);
    int rc = kite__io_start(loop, &loop->sigio, KITE__IO_READ);
    if (rc < 0)
        return rc;
    atomic_store(&sig_pending, 0u);
    rc = install();
    if (rc < 0) {
        kite__io_stop(loop, &loop->sigio);
        return rc;
    }
    loop->sig_cb = cb;
    loop->sig_arg = arg;
    sig_loop = loop;
    return KITE_OK;
}

int kite_loop_watch_signals(struct kite_loop *loop, kite_loop_signal_cb *cb, void *arg)
{
    if (!loop || !cb)
        return KITE_ERR_INVALID;
    pthread_mutex_lock(&sig_lock);
    int rc = watch_locked(loop, cb, arg);
    pthread_mutex_unlock(&sig_lock);
    return rc;
}

void kite_loop_unwatch_signals(struct kite_loop *loop)
{
    pthread_mutex_lock(&sig_lock);
    if (loop && sig_loop == loop) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        kite__io_stop(loop, &loop->sigio);
        loop->sig_cb = NULL;
        loop->sig_arg = NULL;
        sig_loop = NULL;
    }
    pthread_mutex_unlock(&sig_lock);
}

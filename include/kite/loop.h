/*
 * kite — the event loop. Include <kite/kite.h>, which includes this file.
 *
 * A struct kite_loop is one epoll loop, run by one thread. A program may create as many
 * loops as it likes (typically one per core, sharing a listening port through
 * SO_REUSEPORT); nothing in kite assumes a single loop or a single thread. Servers and
 * clients are attached to a loop when created and live on it for their whole life.
 *
 * Threads: every function here must be called on the thread that runs the loop, except
 * the ones marked "any thread": kite_loop_post(), kite_loop_post_task() and
 * kite_loop_stop(). Those are the only way for other threads to reach a loop: they
 * enqueue a function on a lock-free queue and wake the loop through an eventfd; the
 * function then runs on the loop's thread.
 *
 * One iteration of the loop, in order:
 *   1. before-sleep work: pending writes queued during the last iteration are flushed;
 *   2. wait for I/O (epoll_wait) until the next timer, or not at all when work is left;
 *   3. the clock is read once and cached (kite_loop_now());
 *   4. I/O callbacks, posted functions (in posting order per thread), signal callbacks;
 *   5. timers that are due, in deadline order;
 *   6. deferred frees: objects closed during this iteration are released last, so a
 *      callback may close its own object (or another one) safely.
 */
#ifndef KITE_LOOP_H
#define KITE_LOOP_H

#include "kite/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct kite_loop;

/* A function run on a loop's thread: by kite_loop_post(), or as a deferred task. */
typedef void kite_loop_fn(struct kite_loop *loop, void *arg);

/*
 * A unit of work for kite_loop_post_task(), meant to be embedded in the caller's own
 * object so posting allocates nothing. Fields are private to the loop once posted; the
 * task may be reused (posted again) once its function has started running.
 */
struct kite_loop_task {
    struct kite_loop_task *next; /* private: queue link */
    kite_loop_fn *fn;            /* private: set by kite_loop_post_task() */
    void *arg;                   /* private: set by kite_loop_post_task() */
    unsigned flags;              /* private */
};

/*
 * Create a loop: an epoll instance, an eventfd for wake-ups, a timer wheel and one
 * receive buffer shared by every connection on the loop.
 *
 * `alloc` (may be NULL = libc) is borrowed and must outlive the loop. It is used from
 * the loop's thread, and also from other threads by kite_loop_post() (the node it
 * allocates) and by background name resolution, so it must be thread-safe; libc's is.
 *
 * On success stores the loop in *out and returns KITE_OK. Otherwise returns
 * KITE_ERR_NOMEM or the -errno of a failed epoll_create1/eventfd (e.g. -EMFILE),
 * and *out is set to NULL.
 */
KITE_EXTERN int kite_loop_new(const struct kite_allocator *alloc, struct kite_loop **out);

/*
 * Destroy a loop. Call it on the thread that ran the loop (or any thread once no thread
 * runs it), never from inside one of its callbacks, and only after every server, client
 * and watcher on it has been freed: the loop does not own them and does not touch them.
 *
 * Posting while the loop is freed: functions already queued by kite_loop_post() or
 * kite_loop_post_task() are run, on the calling thread, before this returns (so an
 * argument that carries ownership is not leaked); kite_loop_post() returns
 * KITE_ERR_CLOSED from the moment the loop starts closing. The caller must still make
 * sure no other thread calls kite_loop_post() after this function has *returned* (the
 * loop's memory is gone then): join or stop the posting threads first. Background name
 * resolutions still in flight are cancelled (their callbacks never run) and do not need
 * the loop to outlive them. Deferred tasks are run. NULL is a no-op.
 */
KITE_EXTERN void kite_loop_free(struct kite_loop *loop);

/*
 * Run the loop on the calling thread until kite_loop_stop() is called. The loop does
 * not return by itself when it has "no more work": a server waits for connections and
 * other threads may post at any time, so only an explicit stop ends it.
 *
 * Returns KITE_OK after a stop (the iteration in which stop was seen, deferred frees
 * included, is completed first; the stop request is then consumed, so the loop can be
 * run again), KITE_ERR_STATE if the loop is already running (a nested call), or the
 * -errno of a failed epoll_wait (other than EINTR, which is retried).
 */
KITE_EXTERN int kite_loop_run(struct kite_loop *loop);

/*
 * Run one iteration, waiting at most `timeout_ms` for I/O (-1: until something
 * happens; 0: do not block). Useful in tests and to drive kite from another loop.
 * Returns KITE_OK, KITE_ERR_STATE when called from inside this loop's callbacks, or the
 * -errno of a failed epoll_wait. Does not consume a stop request.
 */
KITE_EXTERN int kite_loop_run_once(struct kite_loop *loop, int timeout_ms);

/*
 * Ask kite_loop_run() to return. Any thread, and also async-signal-safe (it is an
 * atomic store and a write(2) to the eventfd). If the loop is not running, the next
 * kite_loop_run() returns after one iteration.
 */
KITE_EXTERN void kite_loop_stop(struct kite_loop *loop);

/*
 * Run fn(loop, arg) on the loop's thread, soon. Any thread, including the loop's own
 * (the function then runs in a later step, never re-entrantly). Functions posted from
 * one thread run in the order they were posted; each runs exactly once.
 *
 * Allocates a small node with the loop's allocator (freed before fn runs). `arg` is
 * passed through untouched; if it carries ownership, fn is responsible for it.
 *
 * Returns KITE_OK, KITE_ERR_NOMEM (nothing queued), or KITE_ERR_CLOSED when the loop is
 * being freed (nothing queued; see kite_loop_free() for the rule on posting then).
 */
KITE_EXTERN int kite_loop_post(struct kite_loop *loop, kite_loop_fn *fn, void *arg);

/*
 * Like kite_loop_post(), but with a task the caller owns (usually embedded in the object
 * being handed over), so it cannot fail for lack of memory. `task` is borrowed until fn
 * starts running; fn may free it. Any thread. Returns KITE_OK, KITE_ERR_CLOSED (the loop
 * is being freed; the task was not queued and the caller still owns it) or
 * KITE_ERR_INVALID (NULL task or fn).
 */
KITE_EXTERN int kite_loop_post_task(struct kite_loop *loop, struct kite_loop_task *task,
                                    kite_loop_fn *fn, void *arg);

/*
 * True when called on the thread that is currently running `loop` (inside
 * kite_loop_run() or kite_loop_run_once(), i.e. from one of its callbacks). Any thread.
 * Use it to choose between acting directly and kite_loop_post().
 */
KITE_EXTERN bool kite_loop_is_current(const struct kite_loop *loop);

/*
 * The loop's cached monotonic clock in milliseconds (CLOCK_MONOTONIC), read once per
 * iteration right after waiting for I/O. Loop thread only.
 */
KITE_EXTERN uint64_t kite_loop_now(const struct kite_loop *loop);

/* Called on the loop's thread for each SIGINT or SIGTERM received by the process. */
typedef void kite_loop_signal_cb(struct kite_loop *loop, int signo, void *arg);

/*
 * Deliver SIGINT and SIGTERM to `cb` on this loop's thread (typically: start a graceful
 * shutdown, then kite_loop_stop()). Installs process-wide handlers (sigaction, with
 * SA_RESTART) that only record the signal and wake the loop, so it works whatever the
 * signal masks of the process's threads are. Only one loop in the process can watch at
 * a time. The previous dispositions are restored by kite_loop_unwatch_signals() or
 * kite_loop_free(); a program that wants a second Ctrl-C to kill it calls
 * kite_loop_unwatch_signals() from `cb`.
 *
 * Returns KITE_OK, KITE_ERR_EXISTS if a loop (this one included) already watches, or
 * the -errno of a failed eventfd/sigaction.
 */
KITE_EXTERN int kite_loop_watch_signals(struct kite_loop *loop, kite_loop_signal_cb *cb,
                                        void *arg);

/* Stop watching signals and restore the previous dispositions. No-op if this loop does
 * not watch. May be called from the signal callback. */
KITE_EXTERN void kite_loop_unwatch_signals(struct kite_loop *loop);

#ifdef __cplusplus
}
#endif
#endif

/*
 * coro — stackful coroutines for sequential handlers, and a worker pool for the
 * blocking work they do (DESIGN.md §4, docs/coroutines.md).
 *
 * A scheduler (struct kite__coro_sched) belongs to one thread: the thread that created
 * it, normally a loop thread. It owns a pool of stacks. Coroutines made from it run only
 * on that thread; nothing here is global except the SIGSEGV handler that reports stack
 * overflows, and per-thread state lives in _Thread_local variables.
 *
 * Resume and yield are symmetric to the resumer: kite__coro_resume() runs a coroutine
 * until it yields or returns, and kite__coro_yield() goes back to whoever resumed it.
 * A coroutine may resume another one (nested resume): the inner one's yield returns to
 * the outer one. A coroutine that is running, or is waiting in a nested resume, cannot
 * be resumed again (KITE_ERR_STATE), so the chain of resumers never loops.
 *
 * Stacks are mmap'd with MAP_NORESERVE, committed lazily by the kernel as they are
 * touched, and sit above a PROT_NONE guard region; a fault in the running coroutine's
 * guard prints "kite: coroutine stack overflow (stack size N bytes); raise the route's
 * stack size" and aborts the process. The coroutine's own struct lives at the top of its
 * stack, so a coroutine costs no heap allocation.
 *
 * Nothing here may be called from a signal handler.
 */
#ifndef KITE_CORO_H
#define KITE_CORO_H

#include <stdbool.h>
#include <stddef.h>

#include "kite/common.h"

struct kite__coro_sched;
struct kite__coro;

/* A coroutine's body. It runs on the coroutine's stack; returning finishes it. */
typedef void kite__coro_fn(void *arg);

/* Default usable stack size (virtual; pages are committed only when touched). */
#define KITE__CORO_STACK_DEFAULT ((size_t)256 * 1024)
/* Smallest and largest stack size kite__coro_new() accepts. */
#define KITE__CORO_STACK_MIN ((size_t)16 * 1024)
#define KITE__CORO_STACK_MAX ((size_t)1024 * 1024 * 1024)
/* Default number of free stacks a scheduler keeps for reuse. */
#define KITE__CORO_POOL_CAP_DEFAULT 64u
/* kite__coro_resume(): the coroutine returned from its function (it is now done). */
#define KITE__CORO_FINISHED 1

/* Counters of one scheduler, for tests and stats. */
struct kite__coro_stats {
    size_t live;   /* coroutines created and not yet released (zombies included) */
    size_t pooled; /* free stacks kept for reuse */
    size_t mapped; /* stacks currently mapped: live + pooled */
};

/*
 * Make a scheduler for the calling thread. `a` (borrowed; must outlive the scheduler;
 * NULL = libc) allocates the scheduler itself; stacks are mmap'd. Installs, once per
 * process, the SIGSEGV handler that reports stack overflows, and on this thread an
 * alternate signal stack if it has none. Returns NULL when out of memory.
 */
struct kite__coro_sched *kite__coro_sched_new(const struct kite_allocator *a);

/*
 * Free a scheduler on its own thread, with every coroutine it still has (their stacks
 * are unmapped without unwinding them) and every pooled stack. Must not be called from
 * one of its coroutines, nor while a worker job of one of its coroutines is pending
 * (shut the worker pool down and deliver its completions first). NULL is a no-op.
 */
void kite__coro_sched_free(struct kite__coro_sched *s);

/* Stack size used when kite__coro_new() is given 0. KITE_OK or KITE_ERR_INVALID
 * (outside [KITE__CORO_STACK_MIN, KITE__CORO_STACK_MAX]). */
int kite__coro_sched_set_stack_size(struct kite__coro_sched *s, size_t size);
/* How many free stacks to keep for reuse (0: unmap every stack when freed). Stacks
 * over the new cap are unmapped now. */
void kite__coro_sched_set_pool_cap(struct kite__coro_sched *s, unsigned cap);
/* An opaque owner (the loop) that worker completions are posted to; see workers. */
void kite__coro_sched_set_owner(struct kite__coro_sched *s, void *owner);
void *kite__coro_sched_owner(const struct kite__coro_sched *s);
void kite__coro_sched_stats(const struct kite__coro_sched *s, struct kite__coro_stats *st);

/*
 * Make a coroutine that will run fn(arg) when first resumed. `stack_size` is the usable
 * stack in bytes, rounded up to the page size; 0 means the scheduler's default. The
 * stack comes from the scheduler's pool when one of that size is free. Must be called
 * on the scheduler's thread (inside a coroutine is fine).
 * Returns KITE_OK and sets *out, KITE_ERR_INVALID (bad size or argument),
 * KITE_ERR_STATE (called on another thread), or KITE_ERR_NOMEM (mmap or mprotect
 * failed: out of address space, or over vm.max_map_count, since each stack is two
 * mappings).
 */
int kite__coro_new(struct kite__coro_sched *s, kite__coro_fn *fn, void *arg, size_t stack_size,
                   struct kite__coro **out);

/*
 * Run `co` until it yields or finishes, from the scheduler's thread: from plain code or
 * from inside another coroutine (which then waits in this call). Returns KITE_OK when it
 * yielded, KITE__CORO_FINISHED when its function returned, or KITE_ERR_STATE when it
 * cannot be resumed: it is finished, running, waiting in a nested resume, released, or
 * belongs to another thread's scheduler.
 */
int kite__coro_resume(struct kite__coro *co);

/*
 * From inside a coroutine: suspend it and return to whoever resumed it; returns
 * KITE_OK when it is resumed again. Outside a coroutine it does nothing and returns
 * KITE_ERR_STATE.
 */
int kite__coro_yield(void);

/* The coroutine running on this thread, or NULL on the thread's own stack. */
struct kite__coro *kite__coro_current(void);

/* Has the coroutine's function returned? `co` must not be NULL. */
bool kite__coro_is_done(const struct kite__coro *co);

/*
 * Release a coroutine that is not running: its stack goes back to the pool (trimmed
 * with madvise so its RSS returns to a page or two) or is unmapped. A suspended
 * coroutine is dropped without unwinding: whatever its function holds is leaked, so
 * the session layer should make it finish first (e.g. receive returns an error). While
 * the coroutine is held (kite__coro_hold) the release is deferred to the last
 * kite__coro_release(); it can no longer be resumed meanwhile. NULL is a no-op.
 * Returns KITE_OK, or KITE_ERR_STATE if it is running, waiting in a nested resume,
 * already released, or belongs to another thread (nothing is done).
 */
int kite__coro_free(struct kite__coro *co);

/*
 * Keep a coroutine's memory alive while something outside it (a worker job, a timer)
 * still points into it. kite__coro_release() drops one hold and returns true if that
 * completed a deferred kite__coro_free(): the coroutine is gone and must not be touched.
 */
void kite__coro_hold(struct kite__coro *co);
bool kite__coro_release(struct kite__coro *co);

/* One pointer of user data per coroutine (NULL initially). */
void kite__coro_set_data(struct kite__coro *co, void *data);
void *kite__coro_data(const struct kite__coro *co);
/* The usable stack size in bytes, and the scheduler the coroutine belongs to. */
size_t kite__coro_stack_size(const struct kite__coro *co);
struct kite__coro_sched *kite__coro_sched_of(const struct kite__coro *co);

/* Which context switch was compiled in: "x86_64-asm", "aarch64-asm" or "ucontext". */
const char *kite__coro_backend(void);

/* ---- Worker pool: blocking work from coroutines ------------------------------------ */

struct kite__workers;
struct kite__work;

/* The blocking function run on a worker thread; its return value is the result. */
typedef void *kite__work_fn(void *arg);
/* Called on the owner's thread (via the post callback) when a job is done or cancelled. */
typedef void kite__work_done_fn(struct kite__work *work);

/*
 * "Have kite__work_complete(work) called soon on the thread that owns work->owner": the
 * pool's only way back to a loop, given at pool creation. Called from worker threads
 * and from kite__workers_shutdown(), so it must be thread-safe and publish the job's
 * memory to the owner's thread (a mutex or a release/acquire queue does). It may use
 * work->post_space as it likes until kite__work_complete() starts (room for a
 * struct kite_loop_task, so kite_loop_post_task() needs no allocation):
 *
 *   static void run_work(struct kite_loop *loop, void *arg) { kite__work_complete(arg); }
 *   static int post_work(void *ud, struct kite__work *w)
 *   {
 *       return kite_loop_post_task(w->owner, (struct kite_loop_task *)w->post_space,
 *                                  run_work, w);
 *   }
 *
 * Returns 0, or a negative code if the completion could not be queued (the loop is
 * closing): it is then dropped and counted in kite__workers_post_failures(), and the
 * submitter's done never runs.
 */
typedef int kite__workers_post_fn(void *post_ud, struct kite__work *work);

/*
 * A job, owned by the submitter, who must keep it alive until `done` has run. Fill fn,
 * arg, done, owner (and ud if wanted); the pool fills result and status: status is
 * KITE_OK when fn ran, or KITE_ERR_CLOSED when the pool shut down before it started
 * (result then NULL). Each queued job gets exactly one completion.
 */
struct kite__work {
    kite__work_fn *fn;        /* run on a worker thread */
    void *arg;                /* passed to fn */
    kite__work_done_fn *done; /* run by kite__work_complete() on the owner's thread */
    void *owner;              /* for the post callback: whose thread runs done */
    void *ud;                 /* free for the submitter */
    void *result;             /* fn's return value */
    int status;               /* KITE_OK or KITE_ERR_CLOSED */
    struct kite__work *next;  /* queue link (pool-owned) */
    void *post_space[6];      /* scratch for the post callback */
};

/* Run a posted job's completion (work->done); on the owner's thread, once per post. */
void kite__work_complete(struct kite__work *work);

/* Defaults for kite__workers_new() arguments given as 0. */
#define KITE__WORKERS_THREADS_DEFAULT 4u
#define KITE__WORKERS_QUEUE_DEFAULT 1024u

/*
 * Start a pool of `nthreads` threads (0: default) with room for `queue_cap` waiting
 * jobs (0: default). `post` (required) and `post_ud` deliver completions; `a` (borrowed,
 * NULL = libc) allocates the pool. Worker threads block all signals.
 * Returns KITE_OK and sets *out, KITE_ERR_INVALID, KITE_ERR_NOMEM, or -errno from
 * pthread_create (the pool is not created).
 */
int kite__workers_new(const struct kite_allocator *a, unsigned nthreads, unsigned queue_cap,
                      kite__workers_post_fn *post, void *post_ud, struct kite__workers **out);

/*
 * Queue a job; from any thread. Returns KITE_OK (its done will run exactly once),
 * KITE_ERR_LIMIT (queue full: try later), KITE_ERR_CLOSED (the pool is shutting down)
 * or KITE_ERR_INVALID. Nothing is queued on error and done will not run.
 */
int kite__workers_submit(struct kite__workers *w, struct kite__work *work);

/*
 * Stop the pool: jobs still queued are cancelled (status KITE_ERR_CLOSED) and their
 * completions posted; jobs already running finish and post theirs (status KITE_OK);
 * the threads are joined. When it returns, every completion has been posted (not
 * necessarily run: the owners' loops must still run them). Later submits return
 * KITE_ERR_CLOSED. Idempotent, but not to be called concurrently with itself, nor from
 * a worker job.
 */
void kite__workers_shutdown(struct kite__workers *w);

/* Shut down (if not done) and free the pool. NULL is a no-op. */
void kite__workers_free(struct kite__workers *w);

/* Completions the post callback failed to deliver (and so were dropped). */
unsigned long kite__workers_post_failures(const struct kite__workers *w);

/*
 * From inside a coroutine: run fn(arg) on a worker thread and suspend until it is done;
 * the completion is posted to the owner of the coroutine's scheduler
 * (kite__coro_sched_set_owner), whose thread resumes the coroutine, so the call returns
 * on the coroutine's own thread. Other resumes of the coroutine meanwhile are absorbed
 * (it yields again). If the coroutine is freed meanwhile, its stack is kept until the
 * job is done. Returns KITE_OK and sets *result (if not NULL) to fn's return value,
 * KITE_ERR_CLOSED (pool shut down before fn started; *result untouched),
 * KITE_ERR_LIMIT (queue full; fn not run), or KITE_ERR_STATE (not in a coroutine).
 */
int kite__coro_run_blocking(struct kite__workers *w, kite__work_fn *fn, void *arg, void **result);

#endif

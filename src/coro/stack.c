/*
 * Coroutine stacks: lazily committed mappings above a PROT_NONE guard, and the SIGSEGV
 * handler that turns a guard hit into a clear message instead of silent corruption.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coro/stack.h"
#include "util/util.h"

#ifndef MAP_NORESERVE
#define MAP_NORESERVE 0
#endif
#ifndef MAP_STACK
#define MAP_STACK 0
#endif

/* Guard below each stack. One page would do for small frames; 16 KiB also catches a
 * frame of up to ~16 KiB of locals that jumps over the guard's first page. It costs
 * address space only: the guard is never committed. */
#define GUARD_MIN ((size_t)16 * 1024)
/* Stacks this large could be backed by transparent huge pages, which would commit
 * 2 MiB at the first touch; lazy commit matters more to us. */
#define NO_THP_FROM ((size_t)2 * 1024 * 1024)
/* The alternate signal stack: the overflow report needs little, but a chained handler
 * (ASan's) symbolises on it. Committed lazily like any mapping. */
#define ALTSTACK_MIN ((size_t)64 * 1024)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static size_t page_size;  /* written once under init_once; read-only after */
static size_t guard_size;
static int handler_err;            /* -errno if sigaction failed */
static struct sigaction old_segv; /* the handler we chain to for other faults */

static void on_segv(int sig, siginfo_t *info, void *uctx);

static void init_process(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps > 0 ? (size_t)ps : 4096;
    guard_size = KITE_MAX(GUARD_MIN, page_size);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0)
        handler_err = -errno;
}

size_t kite__page_size(void)
{
    pthread_once(&init_once, init_process);
    return page_size;
}

size_t kite__stack_guard_size(void)
{
    pthread_once(&init_once, init_process);
    return guard_size;
}

int kite__stack_fault_handler_init(void)
{
    pthread_once(&init_once, init_process);
    return handler_err;
}

int kite__stack_map(size_t size, uint8_t **lo)
{
    size_t guard = kite__stack_guard_size();
    /* MAP_NORESERVE: no commit charge up front; pages come only when touched. */
    void *p = mmap(NULL, guard + size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return KITE_ERR_NOMEM;
    if (mprotect(p, guard, PROT_NONE) != 0) {
        int e = errno;
        munmap(p, guard + size);
        errno = e;
        return KITE_ERR_NOMEM;
    }
#ifdef MADV_NOHUGEPAGE
    if (size >= NO_THP_FROM)
        (void)madvise((uint8_t *)p + guard, size, MADV_NOHUGEPAGE);
#endif
    *lo = (uint8_t *)p + guard;
    return KITE_OK;
}

void kite__stack_unmap(uint8_t *lo, size_t size)
{
    size_t guard = kite__stack_guard_size();
    munmap(lo - guard, guard + size);
}

void kite__stack_trim(uint8_t *lo, size_t size, size_t keep)
{
    /* The stack grows down from lo + size: the pages worth keeping are at the top. */
    if (size > keep)
        (void)madvise(lo, size - keep, MADV_DONTNEED);
}

/* ---- overflow report -------------------------------------------------------------- */

static size_t append(char *buf, size_t n, size_t cap, const char *s)
{
    while (*s && n < cap)
        buf[n++] = *s++;
    return n;
}

static size_t append_size(char *buf, size_t n, size_t cap, size_t v)
{
    char digits[24];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && k < sizeof digits);
    while (k && n < cap)
        buf[n++] = digits[--k];
    return n;
}

/* Continuing is not safe: the frame that overflowed may have half-written its locals
 * over nothing, and unwinding a C stack is not possible. Say why, then abort. */
__attribute__((noreturn)) static void report_overflow(size_t stack_size)
{
    char msg[160];
    size_t n = append(msg, 0, sizeof msg, "kite: coroutine stack overflow (stack size ");
    n = append_size(msg, n, sizeof msg, stack_size);
    n = append(msg, n, sizeof msg, " bytes); raise the route's stack size\n");
    ssize_t r = write(STDERR_FILENO, msg, n);
    (void)r;
    abort();
}

/* Not ours: behave as if we had never been installed. */
static void chain(int sig, siginfo_t *info, void *uctx)
{
    if ((old_segv.sa_flags & SA_SIGINFO) && old_segv.sa_sigaction) {
        old_segv.sa_sigaction(sig, info, uctx);
        return;
    }
    if (!(old_segv.sa_flags & SA_SIGINFO) && old_segv.sa_handler != SIG_DFL &&
        old_segv.sa_handler != SIG_IGN) {
        old_segv.sa_handler(sig);
        return;
    }
    /* Default action: reinstate it; a real fault re-executes and kills the process,
     * a signal sent with kill(2) must be raised again. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (!info || info->si_code <= 0)
        raise(sig);
}

static void on_segv(int sig, siginfo_t *info, void *uctx)
{
    int saved = errno;
    uintptr_t lo, addr = info ? (uintptr_t)info->si_addr : 0;
    size_t size;
    /* guard_size is set before any coroutine exists, so reading it here is safe. */
    if (info && kite__coro_current_stack(&lo, &size) && addr < lo && addr >= lo - guard_size)
        report_overflow(size);
    errno = saved;
    chain(sig, info, uctx);
}

/* ---- per-thread alternate signal stack ---------------------------------------------- */

/* A thread whose coroutine overflowed has no stack left to run a handler on, so every
 * thread that runs coroutines needs an alternate one. Another library (ASan) or the
 * application may already have installed one; then we keep it. */
static _Thread_local struct {
    unsigned refs; /* schedulers on this thread */
    void *mem;     /* our alternate stack, or NULL if we did not install one */
    size_t size;
} alt;

int kite__altstack_acquire(void)
{
    if (alt.refs++ > 0)
        return KITE_OK;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return KITE_OK;
    size_t size = KITE_MAX(ALTSTACK_MIN, (size_t)SIGSTKSZ * 4);
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED) {
        alt.refs--;
        return KITE_ERR_NOMEM;
    }
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(mem, size);
        alt.refs--;
        return KITE_ERR_NOMEM;
    }
    alt.mem = mem;
    alt.size = size;
    return KITE_OK;
}

void kite__altstack_release(void)
{
    if (alt.refs == 0 || --alt.refs > 0 || !alt.mem)
        return;
    stack_t cur;
    bool unmap = true;
    /* If it is still installed, uninstall it first; if someone replaced it since, it
     * is no longer in use and can simply go. */
    if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == alt.mem) {
        stack_t off = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
        unmap = !(cur.ss_flags & SS_ONSTACK) && sigaltstack(&off, NULL) == 0;
    }
    if (unmap)
        munmap(alt.mem, alt.size);
    alt.mem = NULL;
    alt.size = 0;
}

/*
 * Stackful coroutines: scheduler, stack pool, resume/yield (docs/coroutines.md).
 *
 * Each coroutine's struct sits at the top of its own stack, so creating one costs no
 * heap allocation and its first frames share the struct's page. The context switch is
 * hand-written assembly on x86-64 and AArch64 (switch_*.S) and ucontext elsewhere.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coro/coro.h"
#include "coro/stack.h"
#include "util/util.h"

#if !defined(KITE_CORO_FORCE_UCONTEXT) && defined(__x86_64__) && !defined(__ILP32__) &&      \
    defined(__ELF__)
#define CORO_X86_64 1
#elif !defined(KITE_CORO_FORCE_UCONTEXT) && defined(__aarch64__) && !defined(__ILP32__) &&   \
    defined(__ELF__)
#define CORO_AARCH64 1
#else
#define CORO_UCONTEXT 1
#include <ucontext.h>
#endif

/* AddressSanitizer must be told about every stack switch, or it takes the coroutine's
 * frames for a corrupted thread stack. */
#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif
#ifdef CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* Initial-exec TLS: one instruction to reach, and safe to read in a signal handler. */
#if defined(__GNUC__)
#define TLS_IE __attribute__((tls_model("initial-exec")))
#else
#define TLS_IE
#endif

/* The coroutine running on this thread (NULL: the thread's own stack). Its address also
 * tells threads apart: a scheduler records the one of the thread that made it. */
static _Thread_local struct kite__coro *tls_current TLS_IE;

enum coro_state {
    CO_CREATED,   /* made, never resumed */
    CO_SUSPENDED, /* yielded */
    CO_RUNNING,   /* running, or waiting in a nested resume */
    CO_DONE,      /* its function returned */
    CO_POOLED,    /* released: the stack is in the pool */
};

struct kite__coro {
#ifdef CORO_UCONTEXT
    ucontext_t uc;        /* this coroutine's context while it is not running */
    ucontext_t caller_uc; /* the resumer's context while this one runs */
#else
    void *sp;        /* this coroutine's saved stack pointer while it is not running */
    void *caller_sp; /* the resumer's saved stack pointer while this one runs */
#endif
    struct kite__coro *resumer;     /* who resumed it: a coroutine, or NULL (thread stack) */
    struct kite__coro_sched *sched; /* owner of the stack pool it returns to */
    kite__coro_fn *fn;              /* body and its argument */
    void *arg;
    void *data;                      /* user pointer */
    uint8_t *stack_lo;               /* lowest usable byte; the guard lies below */
    size_t stack_size;               /* usable bytes, this struct included */
    struct kite__coro *prev, *next;  /* live list; `next` also links the pool */
    unsigned holds;                  /* kite__coro_hold() count */
    uint8_t state;                   /* enum coro_state */
    bool free_pending;               /* kite__coro_free() waits for the last release */
#ifdef CORO_ASAN
    void *asan_fake;                 /* ASan's fake stack while suspended */
    const void *asan_caller_bottom;  /* the resumer's stack, to switch back to */
    size_t asan_caller_size;
#endif
};

/* Free stacks are kept by size; routes use few distinct sizes. */
#define POOL_BUCKETS 4

struct pool_bucket {
    size_t size;             /* stack size of the stacks in this bucket */
    struct kite__coro *head; /* released coroutines, linked by next */
    unsigned count;
};

struct kite__coro_sched {
    const struct kite_allocator *alloc; /* allocated this struct */
    const void *thread;                 /* &tls_current of the owning thread */
    void *owner;                        /* the loop, for worker completions */
    size_t default_size;                /* stack size when 0 is asked for */
    unsigned pool_cap;                  /* most free stacks kept */
    size_t pooled;                      /* free stacks kept now */
    size_t live;                        /* coroutines not yet released */
    struct kite__coro *live_head;       /* so that sched_free can release them */
    struct pool_bucket buckets[POOL_BUCKETS];
};

/* The struct's share of the stack top, kept cache-line aligned; frames start below. */
#define CORO_HDR ((sizeof(struct kite__coro) + 63) & ~(size_t)63)

static inline uint8_t *stack_top(const struct kite__coro *co)
{
    return (uint8_t *)co;
}

#if defined(CORO_ASAN) || defined(CORO_UCONTEXT)
/* Bytes below the struct: what frames may use. */
static size_t stack_usable(const struct kite__coro *co)
{
    return (size_t)(stack_top(co) - co->stack_lo);
}
#endif

/* Pages kept committed when a stack goes back to the pool: the struct and the first
 * frames, which the next coroutine touches anyway. */
static size_t keep_bytes(void)
{
    size_t ps = kite__page_size();
    return (CORO_HDR + ps + ps - 1) / ps * ps;
}

/* ---- context switch ------------------------------------------------------------------ */

static void coro_entry(struct kite__coro *co);

#ifdef CORO_UCONTEXT

static void uc_entry(unsigned hi, unsigned lo)
{
    uintptr_t p = (uintptr_t)(((uint64_t)hi << 32) | lo);
    coro_entry((struct kite__coro *)p);
}

static void ctx_init(struct kite__coro *co)
{
    uint64_t p = (uint64_t)(uintptr_t)co;
    getcontext(&co->uc);
    co->uc.uc_stack.ss_sp = co->stack_lo;
    co->uc.uc_stack.ss_size = stack_usable(co);
    co->uc.uc_link = NULL;
    /* makecontext passes int arguments only: the pointer travels in two halves. */
    makecontext(&co->uc, (void (*)(void))uc_entry, 2, (unsigned)(p >> 32), (unsigned)p);
}

static inline void switch_in(struct kite__coro *co)
{
    swapcontext(&co->caller_uc, &co->uc);
}

static inline void switch_out(struct kite__coro *co)
{
    swapcontext(&co->uc, &co->caller_uc);
}

#else /* assembly switch */

void kite__coro_switch(void **save_sp, void *load_sp);
void kite__coro_trampoline(void);

#ifdef CORO_X86_64
/* The MXCSR control bits and the x87 control word are callee-saved (SysV ABI §3.2.1); a
 * new coroutine starts with those of the thread that made it, status flags cleared. */
static uint64_t fp_control(void)
{
    uint32_t mxcsr;
    uint16_t cw;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return (uint64_t)(mxcsr & ~0x3Fu) | ((uint64_t)cw << 32);
}

/* Lay out the frame kite__coro_switch pops: control words, r15, r14, r13 (entry),
 * r12 (its argument), rbx, rbp, then the return address (the trampoline). The two
 * words above make rsp 16-byte aligned when the trampoline calls the entry. */
static void ctx_init(struct kite__coro *co)
{
    uint64_t *sp = (uint64_t *)(void *)stack_top(co);
    *--sp = 0;
    *--sp = 0;
    *--sp = (uint64_t)(uintptr_t)kite__coro_trampoline;
    *--sp = 0;                                /* rbp: ends frame-pointer walks */
    *--sp = 0;                                /* rbx */
    *--sp = (uint64_t)(uintptr_t)co;          /* r12 */
    *--sp = (uint64_t)(uintptr_t)coro_entry;  /* r13 */
    *--sp = 0;                                /* r14 */
    *--sp = 0;                                /* r15 */
    *--sp = fp_control();
    co->sp = sp;
}
#else
/* The 160-byte frame kite__coro_switch restores: x19 (argument), x20 (entry), x21-x28,
 * x29 = 0 (ends frame-pointer walks), x30 = trampoline, d8-d15. */
static void ctx_init(struct kite__coro *co)
{
    uint64_t *sp = (uint64_t *)(void *)stack_top(co) - 20;
    memset(sp, 0, 20 * sizeof *sp);
    sp[0] = (uint64_t)(uintptr_t)co;
    sp[1] = (uint64_t)(uintptr_t)coro_entry;
    sp[11] = (uint64_t)(uintptr_t)kite__coro_trampoline;
    co->sp = sp;
}
#endif

static inline void switch_in(struct kite__coro *co)
{
    kite__coro_switch(&co->caller_sp, co->sp);
}

static inline void switch_out(struct kite__coro *co)
{
    kite__coro_switch(&co->sp, co->caller_sp);
}

#endif

const char *kite__coro_backend(void)
{
#if defined(CORO_X86_64)
    return "x86_64-asm";
#elif defined(CORO_AARCH64)
    return "aarch64-asm";
#else
    return "ucontext";
#endif
}

/* ---- ASan fiber hooks ------------------------------------------------------------------ */

/* Going into `co` from its resumer. */
static inline void asan_enter(void **fake, const struct kite__coro *co)
{
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(fake, co->stack_lo, stack_usable(co));
#else
    KITE_UNUSED(fake);
    KITE_UNUSED(co);
#endif
}

/* Back on the resumer's stack. */
static inline void asan_back(void *fake)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#else
    KITE_UNUSED(fake);
#endif
}

/* Leaving `co` for its resumer; `dying` lets ASan drop the fake stack. */
static inline void asan_leave(struct kite__coro *co, bool dying)
{
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &co->asan_fake, co->asan_caller_bottom,
                                   co->asan_caller_size);
#else
    KITE_UNUSED(co);
    KITE_UNUSED(dying);
#endif
}

/* Running on `co`'s stack again; learn where the resumer's stack is. */
static inline void asan_arrived(struct kite__coro *co, bool first)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(first ? NULL : co->asan_fake, &co->asan_caller_bottom,
                                    &co->asan_caller_size);
#else
    KITE_UNUSED(co);
    KITE_UNUSED(first);
#endif
}

/* Before a stack is reused or unmapped, clear ASan's poison left by frames that never
 * returned (a coroutine released while suspended). Live frames lie between the saved
 * stack pointer and the top, so only that much shadow is touched. */
static void asan_clean(struct kite__coro *co)
{
#ifdef CORO_ASAN
    uint8_t *from = co->stack_lo;
#ifndef CORO_UCONTEXT
    if (co->state == CO_DONE || co->state == CO_CREATED)
        from = stack_top(co) - KITE_MIN(keep_bytes() - CORO_HDR, stack_usable(co));
    else if ((uintptr_t)co->sp - (uintptr_t)co->stack_lo > 256)
        from = (uint8_t *)co->sp - 256; /* the x86-64 red zone is 128 bytes */
#endif
    __asan_unpoison_memory_region(from, (size_t)(stack_top(co) + CORO_HDR - from));
#else
    KITE_UNUSED(co);
#endif
}

/* ---- run ------------------------------------------------------------------------------ */

/* Entered once on the coroutine's fresh stack; never returns. */
static void coro_entry(struct kite__coro *co)
{
    asan_arrived(co, true);
    co->fn(co->arg);
    co->state = CO_DONE;
    tls_current = co->resumer;
    asan_leave(co, true);
    switch_out(co);
    abort(); /* a finished coroutine is never switched to again */
}

int kite__coro_resume(struct kite__coro *co)
{
    if (!co || (co->state != CO_CREATED && co->state != CO_SUSPENDED) || co->free_pending ||
        co->sched->thread != (const void *)&tls_current)
        return KITE_ERR_STATE;
    co->resumer = tls_current;
    co->state = CO_RUNNING;
    tls_current = co;
    void *fake = NULL;
    asan_enter(&fake, co);
    switch_in(co);
    asan_back(fake);
    return co->state == CO_DONE ? KITE__CORO_FINISHED : KITE_OK;
}

int kite__coro_yield(void)
{
    struct kite__coro *co = tls_current;
    if (!co)
        return KITE_ERR_STATE;
    co->state = CO_SUSPENDED;
    tls_current = co->resumer;
    asan_leave(co, false);
    switch_out(co);
    asan_arrived(co, false);
    return KITE_OK;
}

struct kite__coro *kite__coro_current(void)
{
    return tls_current;
}

bool kite__coro_is_done(const struct kite__coro *co)
{
    return co->state == CO_DONE;
}

/* ---- stack pool -------------------------------------------------------------------------- */

static struct pool_bucket *bucket_for(struct kite__coro_sched *s, size_t size, bool claim)
{
    struct pool_bucket *empty = NULL;
    for (size_t i = 0; i < POOL_BUCKETS; i++) {
        struct pool_bucket *b = &s->buckets[i];
        if (b->size == size)
            return b;
        if (!empty && b->count == 0)
            empty = b;
    }
    if (claim && empty)
        empty->size = size;
    return claim ? empty : NULL;
}

static struct kite__coro *pool_take(struct kite__coro_sched *s, size_t size)
{
    struct pool_bucket *b = bucket_for(s, size, false);
    if (!b || !b->head)
        return NULL;
    struct kite__coro *co = b->head;
    b->head = co->next;
    b->count--;
    s->pooled--;
    return co;
}

static void stack_unmap(struct kite__coro *co)
{
    kite__stack_unmap(co->stack_lo, co->stack_size);
}

/* A released coroutine's stack goes back to the pool, trimmed, or is unmapped. */
static void pool_put(struct kite__coro_sched *s, struct kite__coro *co)
{
    asan_clean(co);
    struct pool_bucket *b = s->pooled < s->pool_cap ? bucket_for(s, co->stack_size, true) : NULL;
    if (!b) {
        stack_unmap(co);
        return;
    }
    kite__stack_trim(co->stack_lo, co->stack_size, keep_bytes());
    co->state = CO_POOLED;
    co->next = b->head;
    b->head = co;
    b->count++;
    s->pooled++;
}

static void pool_shrink(struct kite__coro_sched *s, size_t cap)
{
    for (size_t i = 0; i < POOL_BUCKETS && s->pooled > cap; i++) {
        struct pool_bucket *b = &s->buckets[i];
        while (b->head && s->pooled > cap) {
            struct kite__coro *co = b->head;
            b->head = co->next;
            b->count--;
            s->pooled--;
            stack_unmap(co);
        }
    }
}

/* ---- scheduler ---------------------------------------------------------------------------- */

struct kite__coro_sched *kite__coro_sched_new(const struct kite_allocator *a)
{
    if (kite__stack_fault_handler_init() != 0)
        return NULL;
    struct kite__coro_sched *s = kite__calloc(a, sizeof *s);
    if (!s)
        return NULL;
    if (kite__altstack_acquire() != KITE_OK) {
        kite__free(a, s);
        return NULL;
    }
    s->alloc = a;
    s->thread = &tls_current;
    s->default_size = KITE__CORO_STACK_DEFAULT;
    s->pool_cap = KITE__CORO_POOL_CAP_DEFAULT;
    return s;
}

static bool chain_uses(const struct kite__coro_sched *s)
{
    for (const struct kite__coro *c = tls_current; c; c = c->resumer)
        if (c->sched == s)
            return true;
    return false;
}

static void live_unlink(struct kite__coro_sched *s, struct kite__coro *co)
{
    if (co->prev)
        co->prev->next = co->next;
    else
        s->live_head = co->next;
    if (co->next)
        co->next->prev = co->prev;
    co->prev = co->next = NULL;
    s->live--;
}

void kite__coro_sched_free(struct kite__coro_sched *s)
{
    if (!s)
        return;
    if (chain_uses(s))
        return; /* freeing the stack we run on: refuse (documented as not allowed) */
    while (s->live_head) {
        struct kite__coro *co = s->live_head;
        live_unlink(s, co);
        asan_clean(co);
        stack_unmap(co);
    }
    pool_shrink(s, 0);
    if (s->thread == (const void *)&tls_current)
        kite__altstack_release();
    kite__free(s->alloc, s);
}

static int norm_size(size_t want, size_t *out)
{
    size_t ps = kite__page_size();
    if (want < KITE__CORO_STACK_MIN || want > KITE__CORO_STACK_MAX)
        return KITE_ERR_INVALID;
    *out = (want + ps - 1) / ps * ps;
    return KITE_OK;
}

int kite__coro_sched_set_stack_size(struct kite__coro_sched *s, size_t size)
{
    return norm_size(size, &s->default_size);
}

void kite__coro_sched_set_pool_cap(struct kite__coro_sched *s, unsigned cap)
{
    s->pool_cap = cap;
    pool_shrink(s, cap);
}

void kite__coro_sched_set_owner(struct kite__coro_sched *s, void *owner)
{
    s->owner = owner;
}

void *kite__coro_sched_owner(const struct kite__coro_sched *s)
{
    return s->owner;
}

void kite__coro_sched_stats(const struct kite__coro_sched *s, struct kite__coro_stats *st)
{
    st->live = s->live;
    st->pooled = s->pooled;
    st->mapped = s->live + s->pooled;
}

/* ---- coroutines ------------------------------------------------------------------------------ */

int kite__coro_new(struct kite__coro_sched *s, kite__coro_fn *fn, void *arg, size_t stack_size,
                   struct kite__coro **out)
{
    if (!s || !fn || !out)
        return KITE_ERR_INVALID;
    size_t size;
    if (norm_size(stack_size ? stack_size : s->default_size, &size) != KITE_OK)
        return KITE_ERR_INVALID;
    if (s->thread != (const void *)&tls_current)
        return KITE_ERR_STATE;
    struct kite__coro *co = pool_take(s, size);
    uint8_t *lo = co ? co->stack_lo : NULL;
    if (!co) {
        int rc = kite__stack_map(size, &lo);
        if (rc != KITE_OK)
            return rc;
        co = (struct kite__coro *)(void *)(lo + size - CORO_HDR);
    }
    memset(co, 0, sizeof *co);
    co->stack_lo = lo;
    co->stack_size = size;
    co->sched = s;
    co->fn = fn;
    co->arg = arg;
    co->state = CO_CREATED;
    ctx_init(co);
    co->next = s->live_head;
    if (co->next)
        co->next->prev = co;
    s->live_head = co;
    s->live++;
    *out = co;
    return KITE_OK;
}

static void release_now(struct kite__coro *co)
{
    struct kite__coro_sched *s = co->sched;
    live_unlink(s, co);
    pool_put(s, co);
}

int kite__coro_free(struct kite__coro *co)
{
    if (!co)
        return KITE_OK;
    if (co->state == CO_RUNNING || co->state == CO_POOLED ||
        co->sched->thread != (const void *)&tls_current)
        return KITE_ERR_STATE;
    if (co->holds > 0) {
        co->free_pending = true;
        return KITE_OK;
    }
    release_now(co);
    return KITE_OK;
}

void kite__coro_hold(struct kite__coro *co)
{
    co->holds++;
}

bool kite__coro_release(struct kite__coro *co)
{
    assert(co->holds > 0);
    if (--co->holds > 0 || !co->free_pending)
        return false;
    release_now(co);
    return true;
}

void kite__coro_set_data(struct kite__coro *co, void *data)
{
    co->data = data;
}

void *kite__coro_data(const struct kite__coro *co)
{
    return co->data;
}

size_t kite__coro_stack_size(const struct kite__coro *co)
{
    return co->stack_size;
}

struct kite__coro_sched *kite__coro_sched_of(const struct kite__coro *co)
{
    return co->sched;
}

/* Called by the SIGSEGV handler on the faulting thread (stack.h). */
bool kite__coro_current_stack(uintptr_t *lo, size_t *size)
{
    const struct kite__coro *co = tls_current;
    if (!co)
        return false;
    *lo = (uintptr_t)co->stack_lo;
    *size = co->stack_size;
    return true;
}

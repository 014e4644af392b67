/* Coroutines: resume/yield, nesting, the stack pool, lazy commit, overflow reporting. */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coro/coro.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifdef UNDER_ASAN
#include <sanitizer/asan_interface.h>
#endif

#if !defined(KITE_CORO_FORCE_UCONTEXT) && (defined(__x86_64__) || defined(__aarch64__))
#define ASM_SWITCH 1
#endif

#define KIB ((size_t)1024)

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    ASSERT(f != NULL);
    unsigned long size = 0, resident = 0;
    ASSERT_EQ(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static int count_mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    ASSERT(f != NULL);
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static struct kite__coro_sched *new_sched(void)
{
    struct kite__coro_sched *s = kite__coro_sched_new(NULL);
    ASSERT(s != NULL);
    return s;
}

static struct kite__coro *new_coro(struct kite__coro_sched *s, kite__coro_fn *fn, void *arg,
                                   size_t stack)
{
    struct kite__coro *co = NULL;
    ASSERT_EQ(kite__coro_new(s, fn, arg, stack, &co), KITE_OK);
    ASSERT(co != NULL);
    return co;
}

/* ---- resume and yield ---------------------------------------------------------------- */

struct trace {
    int log[32];
    int n;
};

static void ping_body(void *arg)
{
    struct trace *t = arg;
    for (int i = 0; i < 5; i++) {
        t->log[t->n++] = 100 + i;
        ASSERT_EQ(kite__coro_yield(), KITE_OK);
    }
    t->log[t->n++] = 999;
}

TEST(coro_ping_pong)
{
    struct kite__coro_sched *s = new_sched();
    struct trace t = {.n = 0};
    struct kite__coro *co = new_coro(s, ping_body, &t, 0);
    for (int i = 0; i < 5; i++) {
        t.log[t.n++] = i;
        ASSERT_EQ(kite__coro_resume(co), KITE_OK);
        ASSERT(!kite__coro_is_done(co));
    }
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    ASSERT(kite__coro_is_done(co));
    ASSERT_EQ(kite__coro_resume(co), KITE_ERR_STATE); /* finished: cannot run again */
    static const int want[] = {0, 100, 1, 101, 2, 102, 3, 103, 4, 104, 999};
    ASSERT_EQ(t.n, 11);
    for (int i = 0; i < 11; i++)
        ASSERT_EQ(t.log[i], want[i]);
    ASSERT_EQ(kite__coro_free(co), KITE_OK);
    struct kite__coro_stats st;
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.live, 0);
    ASSERT_EQ(st.pooled, 1);
    kite__coro_sched_free(s);
}

struct whoami {
    struct kite__coro *seen;
    void *data;
    int yield_rc;
};

static void whoami_body(void *arg)
{
    struct whoami *w = arg;
    w->seen = kite__coro_current();
    w->data = kite__coro_data(w->seen);
    w->yield_rc = kite__coro_yield();
}

TEST(coro_current_data_and_yield_outside)
{
    struct kite__coro_sched *s = new_sched();
    ASSERT(kite__coro_current() == NULL);
    ASSERT_EQ(kite__coro_yield(), KITE_ERR_STATE); /* not in a coroutine */
    struct whoami w = {0};
    struct kite__coro *co = new_coro(s, whoami_body, &w, 0);
    int tag;
    kite__coro_set_data(co, &tag);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    ASSERT(w.seen == co);
    ASSERT(w.data == &tag);
    ASSERT(kite__coro_current() == NULL);
    ASSERT(kite__coro_sched_of(co) == s);
    ASSERT_UEQ(kite__coro_stack_size(co), KITE__CORO_STACK_DEFAULT);
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    ASSERT_EQ(w.yield_rc, KITE_OK);
    kite__coro_free(co);
    kite__coro_sched_free(s);
}

struct nest {
    struct kite__coro *a, *b;
    char log[16];
    int n;
    int b_resumes_a, a_resumes_self, a_frees_self;
    struct kite__coro *cur_in_a_after_b;
};

static void nest_b(void *arg)
{
    struct nest *n = arg;
    n->log[n->n++] = 'b';
    n->b_resumes_a = kite__coro_resume(n->a); /* a waits in its resume of b */
    kite__coro_yield();                       /* back to a, not to the thread */
    n->log[n->n++] = 'B';
}

static void nest_a(void *arg)
{
    struct nest *n = arg;
    n->log[n->n++] = 'a';
    ASSERT_EQ(kite__coro_resume(n->b), KITE_OK);
    n->cur_in_a_after_b = kite__coro_current();
    n->log[n->n++] = 'x';
    n->a_resumes_self = kite__coro_resume(n->a);
    n->a_frees_self = kite__coro_free(n->a);
    kite__coro_yield();
    n->log[n->n++] = 'A';
    ASSERT_EQ(kite__coro_resume(n->b), KITE__CORO_FINISHED);
    n->log[n->n++] = 'z';
}

TEST(coro_nested_resume_returns_to_resumer)
{
    struct kite__coro_sched *s = new_sched();
    struct nest n = {.n = 0};
    n.a = new_coro(s, nest_a, &n, 0);
    n.b = new_coro(s, nest_b, &n, 0);
    ASSERT_EQ(kite__coro_resume(n.a), KITE_OK);
    n.log[n.n] = 0;
    ASSERT_STREQ(n.log, "abx");
    ASSERT_EQ(n.b_resumes_a, KITE_ERR_STATE);   /* a is waiting in a nested resume */
    ASSERT_EQ(n.a_resumes_self, KITE_ERR_STATE); /* running */
    ASSERT_EQ(n.a_frees_self, KITE_ERR_STATE);   /* cannot free the stack it runs on */
    ASSERT(n.cur_in_a_after_b == n.a);
    ASSERT(kite__coro_current() == NULL);
    ASSERT_EQ(kite__coro_resume(n.a), KITE__CORO_FINISHED);
    n.log[n.n] = 0;
    ASSERT_STREQ(n.log, "abxABz");
    ASSERT(kite__coro_is_done(n.b));
    kite__coro_free(n.a);
    kite__coro_free(n.b);
    kite__coro_sched_free(s);
}

/* ---- many coroutines and the pool ----------------------------------------------------- */

#define MANY 10000

static void wait_once(void *arg)
{
    int *count = arg;
    (*count)++;
    kite__coro_yield();
    (*count)++;
}

TEST(coro_ten_thousand_suspended_then_finished)
{
    struct kite__coro_sched *s = new_sched();
    struct kite__coro **cos = calloc(MANY, sizeof *cos);
    int *counts = calloc(MANY, sizeof *counts);
    ASSERT(cos && counts);
    for (int i = 0; i < MANY; i++) {
        cos[i] = new_coro(s, wait_once, &counts[i], 0);
        ASSERT_EQ(kite__coro_resume(cos[i]), KITE_OK);
    }
    struct kite__coro_stats st;
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.live, MANY);
    ASSERT_EQ(st.mapped, MANY);
    for (int i = 0; i < MANY; i++)
        ASSERT_EQ(counts[i], 1);
    for (int i = MANY - 1; i >= 0; i--)
        ASSERT_EQ(kite__coro_resume(cos[i]), KITE__CORO_FINISHED);
    for (int i = 0; i < MANY; i++) {
        ASSERT_EQ(counts[i], 2);
        ASSERT_EQ(kite__coro_free(cos[i]), KITE_OK);
    }
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.live, 0);
    ASSERT_EQ(st.pooled, KITE__CORO_POOL_CAP_DEFAULT); /* the rest were unmapped */
    ASSERT_EQ(st.mapped, KITE__CORO_POOL_CAP_DEFAULT);
    kite__coro_sched_set_pool_cap(s, 3);
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.pooled, 3);
    free(cos);
    free(counts);
    kite__coro_sched_free(s);
}

static void nothing(void *arg)
{
    (void)arg;
}

TEST(coro_pool_reuses_stacks_by_size)
{
    struct kite__coro_sched *s = new_sched();
    struct kite__coro *a = new_coro(s, nothing, NULL, 64 * KIB);
    ASSERT_EQ(kite__coro_resume(a), KITE__CORO_FINISHED);
    kite__coro_free(a);
    struct kite__coro *b = new_coro(s, nothing, NULL, 64 * KIB);
    ASSERT(b == a); /* same stack, same top-of-stack struct */
    struct kite__coro *c = new_coro(s, nothing, NULL, 128 * KIB);
    ASSERT(c != a);
    kite__coro_free(b);
    kite__coro_free(c);
    struct kite__coro_stats st;
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.pooled, 2);
    /* Only a few distinct sizes are pooled; the others are unmapped. */
    struct kite__coro *d[6];
    for (int i = 0; i < 6; i++)
        d[i] = new_coro(s, nothing, NULL, (size_t)(200 + 16 * i) * KIB);
    for (int i = 0; i < 6; i++)
        kite__coro_free(d[i]);
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.pooled, 4);
    kite__coro_sched_set_pool_cap(s, 0);
    struct kite__coro *e = new_coro(s, nothing, NULL, 64 * KIB);
    kite__coro_free(e);
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.pooled, 0);
    ASSERT_EQ(st.mapped, 0);
    kite__coro_sched_free(s);
}

TEST(coro_stack_size_rules)
{
    struct kite__coro_sched *s = new_sched();
    struct kite__coro *co = NULL;
    ASSERT_EQ(kite__coro_new(s, nothing, NULL, 1000, &co), KITE_ERR_INVALID);
    ASSERT_EQ(kite__coro_new(s, NULL, NULL, 0, &co), KITE_ERR_INVALID);
    ASSERT_EQ(kite__coro_new(s, nothing, NULL, KITE__CORO_STACK_MAX + 1, &co), KITE_ERR_INVALID);
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    co = new_coro(s, nothing, NULL, 64 * KIB + 1);
    ASSERT_UEQ(kite__coro_stack_size(co), 64 * KIB + ps); /* rounded up to a page */
    kite__coro_free(co);
    ASSERT_EQ(kite__coro_sched_set_stack_size(s, 1), KITE_ERR_INVALID);
    ASSERT_EQ(kite__coro_sched_set_stack_size(s, 96 * KIB), KITE_OK);
    co = new_coro(s, nothing, NULL, 0);
    ASSERT_UEQ(kite__coro_stack_size(co), 96 * KIB);
    kite__coro_free(co);
    kite__coro_sched_free(s);
}

/* ---- stack depth ------------------------------------------------------------------------ */

struct deep {
    uintptr_t top;        /* an address near the top of the coroutine's stack */
    size_t target;        /* recurse until this many bytes are in use */
    bool yield_at_bottom; /* suspend in the deepest frame */
    size_t reached;       /* bytes in use at the deepest frame */
    unsigned depth;       /* depth of the deepest frame */
    unsigned long sum;
};

__attribute__((noinline)) static unsigned long recurse(struct deep *d, unsigned depth)
{
    volatile unsigned char buf[480];
    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = (unsigned char)depth;
    size_t used = (size_t)(d->top - (uintptr_t)buf);
    unsigned long below = 0;
    if (used < d->target) {
        below = recurse(d, depth + 1);
    } else {
        d->reached = used;
        d->depth = depth;
        if (d->yield_at_bottom)
            kite__coro_yield();
    }
    return below + buf[0];
}

static void deep_body(void *arg)
{
    struct deep *d = arg;
    volatile char marker = 0;
    d->top = (uintptr_t)&marker;
    d->sum = recurse(d, 0);
}

static void run_deep(size_t stack, size_t target)
{
    struct kite__coro_sched *s = new_sched();
    struct deep d = {.target = target};
    struct kite__coro *co = new_coro(s, deep_body, &d, stack);
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    ASSERT(d.reached >= target);
    unsigned long want = 0; /* frame k added k & 0xff */
    for (unsigned k = 0; k <= d.depth; k++)
        want += k & 0xff;
    ASSERT_UEQ(d.sum, want);
    printf("# %zu KiB stack: %u frames, %zu KiB in use\n", stack / KIB, d.depth + 1,
           d.reached / KIB);
    kite__coro_free(co);
    kite__coro_sched_free(s);
}

TEST(coro_deep_recursion_within_stack_size)
{
    run_deep(256 * KIB, 200 * KIB); /* 78% of the default stack */
    run_deep(1024 * KIB, 900 * KIB);
}

/* ---- overflow and other faults ---------------------------------------------------------- */

static volatile unsigned long never = ~0ul;

__attribute__((noinline)) static unsigned long runaway(unsigned long n)
{
    volatile char buf[256];
    buf[0] = (char)n;
    if (n == never)
        return 0;
    return runaway(n + 1) + (unsigned long)buf[0];
}

static void overflow_body(void *arg)
{
    *(unsigned long *)arg = runaway(0);
}

static volatile uintptr_t bad_address = 16;

static void null_write_body(void *arg)
{
    (void)arg;
    volatile int *p = (volatile int *)bad_address;
    *p = 1;
}

/* Run fn(stack) in a child with stderr captured; return its wait status. */
static int in_child(void (*fn)(size_t), size_t arg, char *err, size_t cap)
{
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], err + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    err[n] = 0;
    close(fds[0]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    return status;
}

static void child_overflow(size_t stack)
{
    struct kite__coro_sched *s = kite__coro_sched_new(NULL);
    struct kite__coro *co = NULL;
    unsigned long out = 0;
    if (!s || kite__coro_new(s, overflow_body, &out, stack, &co) != KITE_OK)
        _exit(3);
    kite__coro_resume(co);
    _exit(4); /* not reached: the overflow aborts */
}

TEST(coro_stack_overflow_reported_and_aborts)
{
    char err[8192];
    int st = in_child(child_overflow, 64 * KIB, err, sizeof err);
    if (!strstr(err, "coroutine stack overflow"))
        fprintf(stderr, "# child stderr: %s\n", err);
    ASSERT(WIFSIGNALED(st));
    ASSERT_EQ(WTERMSIG(st), SIGABRT);
    ASSERT(strstr(err, "kite: coroutine stack overflow (stack size 65536 bytes); "
                       "raise the route's stack size\n") != NULL);
}

static void child_null_write(size_t in_coroutine)
{
    struct kite__coro_sched *s = kite__coro_sched_new(NULL);
    struct kite__coro *co = NULL;
    if (!s || kite__coro_new(s, null_write_body, NULL, 0, &co) != KITE_OK)
        _exit(3);
    if (in_coroutine)
        kite__coro_resume(co);
    else
        null_write_body(NULL);
    _exit(4);
}

#ifndef UNDER_ASAN
static void child_kill_segv(size_t unused)
{
    (void)unused;
    if (!kite__coro_sched_new(NULL))
        _exit(3);
    kill(getpid(), SIGSEGV);
    _exit(4);
}
#endif

/* Faults that are not a guard hit must not be reported as overflows, and must end the
 * process as they would without kite (ASan's report under ASan, else SIGSEGV). */
TEST(coro_other_faults_fall_through)
{
    char err[8192];
    for (size_t in_co = 0; in_co < 2; in_co++) {
        int st = in_child(child_null_write, in_co, err, sizeof err);
        ASSERT(strstr(err, "coroutine stack overflow") == NULL);
        ASSERT(!(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 4)));
#ifndef UNDER_ASAN
        ASSERT(WIFSIGNALED(st));
        ASSERT_EQ(WTERMSIG(st), SIGSEGV);
#endif
    }
#ifndef UNDER_ASAN
    int st = in_child(child_kill_segv, 0, err, sizeof err);
    ASSERT(WIFSIGNALED(st));
    ASSERT_EQ(WTERMSIG(st), SIGSEGV);
#endif
}

/* ---- memory: lazy commit and trimming ----------------------------------------------------- */

static void touch_2k_and_wait(void *arg)
{
    (void)arg;
    volatile char buf[2048];
    memset((char *)buf, 1, sizeof buf);
    kite__coro_yield();
    ASSERT_EQ(buf[100], 1);
}

TEST(coro_lazy_commit_rss_per_suspended_coroutine)
{
    struct kite__coro_sched *s = new_sched();
    struct kite__coro **cos = calloc(MANY, sizeof *cos);
    ASSERT(cos != NULL);
    memset(cos, 0, MANY * sizeof *cos); /* commit the array before measuring */
    size_t before = rss_bytes();
    for (int i = 0; i < MANY; i++) {
        cos[i] = new_coro(s, touch_2k_and_wait, NULL, 0);
        ASSERT_EQ(kite__coro_resume(cos[i]), KITE_OK);
    }
    size_t after = rss_bytes();
    size_t per = after > before ? (after - before) / MANY : 0;
    printf("# RSS per suspended coroutine (256 KiB stack, 2 KiB touched): %zu bytes\n", per);
#if defined(UNDER_ASAN)
    if (__asan_get_current_fake_stack() != NULL) {
        /* detect_stack_use_after_return=1 gives every coroutine a fake stack of its own;
         * lazy commit is then ASan's business, not ours. */
        printf("# (not checked: ASan fake stacks are on)\n");
        per = 0;
    }
#endif
#if defined(UNDER_ASAN) && !defined(ASM_SWITCH)
    /* ASan's swapcontext interceptor clears the shadow of the whole target stack. */
    ASSERT(per < 64 * KIB);
#else
    ASSERT(per < 16 * KIB);
#endif
    for (int i = 0; i < MANY; i++) {
        ASSERT_EQ(kite__coro_resume(cos[i]), KITE__CORO_FINISHED);
        kite__coro_free(cos[i]);
    }
    free(cos);
    kite__coro_sched_free(s);
}

static void touch_192k_and_wait(void *arg)
{
    (void)arg;
    volatile char big[192 * 1024];
    memset((char *)big, 1, sizeof big);
    kite__coro_yield();
    ASSERT_EQ(big[1000], 1);
}

/* Returns the RSS growth while suspended and after the stack went back to the pool. */
static void trim_cycle(struct kite__coro_sched *s, size_t *mid, size_t *after)
{
    size_t base = rss_bytes();
    struct kite__coro *co = new_coro(s, touch_192k_and_wait, NULL, 256 * KIB);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    size_t m = rss_bytes();
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    kite__coro_free(co);
    size_t a = rss_bytes();
    *mid = m > base ? m - base : 0;
    *after = a > base ? a - base : 0;
}

TEST(coro_stack_trimmed_when_pooled)
{
    struct kite__coro_sched *s = new_sched();
    size_t mid, after;
    trim_cycle(s, &mid, &after); /* warm-up: pages in code and runtime state */
    trim_cycle(s, &mid, &after);
    struct kite__coro_stats st;
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.pooled, 1); /* kept mapped, but its pages were given back */
    printf("# RSS with 192 KiB touched: +%zu KiB; after pooling: +%zu KiB\n", mid / KIB,
           after / KIB);
    ASSERT(mid > 150 * KIB);
    ASSERT(after < 32 * KIB);
    kite__coro_sched_free(s);
}

/* ---- registers ------------------------------------------------------------------------------ */

static volatile uint64_t seed = 0x9e3779b97f4a7c15ull;

static void regs_body(void *arg)
{
    uint64_t *out = arg;
    uint64_t a = seed, b = a * 3, c = b ^ 7, d = c + a, e = d * 5, f = e ^ b, g = f + c,
             h = g * 9, i = h ^ d, j = i + e;
    double x = (double)(a & 0xffff) * 0.5, y = x * 1.25, z = y + x;
    kite__coro_yield();
    kite__coro_yield();
    *out = a + b + c + d + e + f + g + h + i + j + (uint64_t)(x + y + z);
}

/* Callee-saved registers (general and, on AArch64, d8-d15) survive the switch: many
 * live values on both sides of each yield. */
TEST(coro_callee_saved_registers_survive_switches)
{
    struct kite__coro_sched *s = new_sched();
    uint64_t got = 0;
    struct kite__coro *co = new_coro(s, regs_body, &got, 0);
    uint64_t a = seed, b = a * 3, c = b ^ 7, d = c + a, e = d * 5, f = e ^ b, g = f + c,
             h = g * 9, i = h ^ d, j = i + e;
    double x = (double)(a & 0xffff) * 0.5, y = x * 1.25, z = y + x;
    uint64_t want = a + b + c + d + e + f + g + h + i + j + (uint64_t)(x + y + z);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    ASSERT_UEQ(a + b + c + d + e + f + g + h + i + j + (uint64_t)(x + y + z), want);
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    ASSERT_UEQ(got, want);
    kite__coro_free(co);
    kite__coro_sched_free(s);
}

#if defined(__x86_64__)
static uint32_t get_mxcsr(void)
{
    uint32_t v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}

static void set_mxcsr(uint32_t v)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static uint16_t get_x87cw(void)
{
    uint16_t v;
    __asm__ volatile("fnstcw %0" : "=m"(v));
    return v;
}

static void set_x87cw(uint16_t v)
{
    __asm__ volatile("fldcw %0" : : "m"(v));
}

struct fpctl {
    uint32_t mxcsr_after;
    uint16_t cw_after;
};

static void fp_body(void *arg)
{
    struct fpctl *f = arg;
    set_mxcsr((get_mxcsr() & ~0x6000u) | 0x4000u); /* round up */
    set_x87cw((uint16_t)((get_x87cw() & ~0x0C00u) | 0x0800u));
    kite__coro_yield();
    f->mxcsr_after = get_mxcsr() & 0x6000u;
    f->cw_after = get_x87cw() & 0x0C00u;
}

/* SysV ABI §3.2.1: the MXCSR control bits and x87 control word are callee-saved, so a
 * coroutine's rounding mode must neither leak to its resumer nor be lost. */
TEST(coro_fp_control_words_are_per_coroutine)
{
    struct kite__coro_sched *s = new_sched();
    struct fpctl f = {0};
    uint32_t mx = get_mxcsr() & 0x6000u;
    uint16_t cw = get_x87cw() & 0x0C00u;
    struct kite__coro *co = new_coro(s, fp_body, &f, 0);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    ASSERT_EQ(get_mxcsr() & 0x6000u, mx);
    ASSERT_EQ(get_x87cw() & 0x0C00u, cw);
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    ASSERT_EQ(f.mxcsr_after, 0x4000u);
    ASSERT_EQ(f.cw_after, 0x0800u);
    kite__coro_free(co);
    kite__coro_sched_free(s);
}
#endif

/* ---- lifetimes --------------------------------------------------------------------------- */

static volatile size_t fill_len = 400;

/* Frames of uninstrumented code (as in a library built without ASan) write no shadow
 * of their own; memset is intercepted and checks the buffer against whatever shadow
 * the stack's previous user left. */
__attribute__((noinline, no_sanitize_address)) static size_t plain_recurse(uintptr_t top,
                                                                            size_t target)
{
    char buf[480];
    memset(buf, 3, fill_len);
    size_t used = (size_t)(top - (uintptr_t)buf);
    size_t r = used < target ? plain_recurse(top, target) : used;
    return r + (size_t)(buf[7] - 3);
}

static void plain_body(void *arg)
{
    volatile char marker = 0;
    *(size_t *)arg = plain_recurse((uintptr_t)&marker, 100 * KIB);
}

/* A suspended coroutine can be released; its stack is then reused cleanly: the old
 * body never runs again, and under ASan no poison of its abandoned frames is left. */
TEST(coro_free_suspended_then_reuse_stack)
{
    struct kite__coro_sched *s = new_sched();
    struct deep d = {.target = 110 * KIB, .yield_at_bottom = true};
    struct kite__coro *co = new_coro(s, deep_body, &d, 128 * KIB);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK); /* suspended ~110 KiB deep */
    ASSERT_EQ(kite__coro_free(co), KITE_OK);
    ASSERT_EQ(kite__coro_resume(co), KITE_ERR_STATE); /* released */
    size_t reached = 0;
    struct kite__coro *again = new_coro(s, plain_body, &reached, 128 * KIB);
    ASSERT(again == co);
    ASSERT_EQ(kite__coro_resume(again), KITE__CORO_FINISHED);
    ASSERT(reached >= 100 * KIB);
    ASSERT_EQ(d.sum, 0); /* the abandoned body never finished */
    kite__coro_free(again);
    kite__coro_sched_free(s);
}

TEST(coro_hold_defers_free)
{
    struct kite__coro_sched *s = new_sched();
    struct trace t = {.n = 0};
    struct kite__coro *co = new_coro(s, ping_body, &t, 0);
    ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    kite__coro_hold(co);
    kite__coro_hold(co);
    ASSERT_EQ(kite__coro_free(co), KITE_OK);
    struct kite__coro_stats st;
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.live, 1);                            /* still mapped */
    ASSERT_EQ(kite__coro_resume(co), KITE_ERR_STATE); /* but no longer runnable */
    ASSERT(!kite__coro_release(co));
    ASSERT(kite__coro_release(co)); /* the last release frees it */
    kite__coro_sched_stats(s, &st);
    ASSERT_EQ(st.live, 0);
    ASSERT_EQ(st.pooled, 1);
    /* Without a pending free, releasing just drops the hold. */
    co = new_coro(s, nothing, NULL, 0);
    kite__coro_hold(co);
    ASSERT(!kite__coro_release(co));
    ASSERT_EQ(kite__coro_resume(co), KITE__CORO_FINISHED);
    kite__coro_free(co);
    kite__coro_sched_free(s);
}

static void sched_with_leftovers(int *maps_before, int *maps_during, int *maps_after)
{
    *maps_before = count_mappings();
    struct kite__coro_sched *s = new_sched();
    struct trace t[3] = {{.n = 0}};
    for (int i = 0; i < 3; i++) {
        struct kite__coro *co = new_coro(s, ping_body, &t[i], 0);
        ASSERT_EQ(kite__coro_resume(co), KITE_OK);
    }
    new_coro(s, nothing, NULL, 0); /* never resumed */
    struct kite__coro *pooled = new_coro(s, nothing, NULL, 0);
    kite__coro_free(pooled);
    *maps_during = count_mappings();
    kite__coro_sched_free(s);
    *maps_after = count_mappings();
}

TEST(coro_sched_free_releases_live_coroutines)
{
    int before, during, after;
    sched_with_leftovers(&before, &during, &after); /* warm-up: runtime mappings */
    sched_with_leftovers(&before, &during, &after);
    printf("# mappings: %d before, %d with 5 stacks, %d after\n", before, during, after);
    ASSERT(during >= before + 10); /* two mappings per stack */
    ASSERT(after <= before);
}

TEST(coro_sched_new_out_of_memory)
{
    struct kite_test_alloc st = {.fail_at = 1};
    ASSERT(kite__coro_sched_new(kite_test_allocator(&st)) == NULL);
    ASSERT(st.failed);
    ASSERT_EQ(st.live, 0);
    struct kite_test_alloc ok = {0};
    struct kite__coro_sched *s = kite__coro_sched_new(kite_test_allocator(&ok));
    ASSERT(s != NULL);
    struct kite__coro *co = new_coro(s, nothing, NULL, 0);
    ASSERT_EQ(ok.live, 1); /* the scheduler only: coroutines live on their stacks */
    kite__coro_free(co);
    kite__coro_sched_free(s);
    ASSERT_EQ(ok.live, 0);
}

/* ---- threads ------------------------------------------------------------------------------- */

struct foreign {
    struct kite__coro *co;
    struct kite__coro_sched *s;
    int resume_rc, new_rc, free_rc;
    long switches;
};

static void *foreign_thread(void *arg)
{
    struct foreign *f = arg;
    f->resume_rc = kite__coro_resume(f->co);
    struct kite__coro *co = NULL;
    f->new_rc = kite__coro_new(f->s, nothing, NULL, 0, &co);
    f->free_rc = kite__coro_free(f->co);
    return NULL;
}

static void spin_body(void *arg)
{
    long *n = arg;
    for (;;) {
        (*n)++;
        kite__coro_yield();
    }
}

static void *own_sched_thread(void *arg)
{
    struct foreign *f = arg;
    struct kite__coro_sched *s = kite__coro_sched_new(NULL);
    if (!s)
        return NULL;
    long count[50] = {0};
    struct kite__coro *cos[50];
    for (int i = 0; i < 50; i++)
        if (kite__coro_new(s, spin_body, &count[i], 0, &cos[i]) != KITE_OK)
            return NULL;
    for (int round = 0; round < 2000; round++)
        for (int i = 0; i < 50; i++)
            if (kite__coro_resume(cos[i]) == KITE_OK && kite__coro_current() == NULL)
                f->switches++;
    for (int i = 0; i < 50; i++)
        if (count[i] != 2000)
            f->switches = -1;
    kite__coro_sched_free(s); /* releases the suspended spinners */
    return NULL;
}

/* One scheduler per thread: coroutines of one thread cannot be run, made or freed from
 * another, and schedulers on different threads run at the same time. */
TEST(coro_schedulers_are_per_thread)
{
    struct kite__coro_sched *s = new_sched();
    struct trace t = {.n = 0};
    struct foreign f = {.s = s};
    f.co = new_coro(s, ping_body, &t, 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, foreign_thread, &f), 0);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    ASSERT_EQ(f.resume_rc, KITE_ERR_STATE);
    ASSERT_EQ(f.new_rc, KITE_ERR_STATE);
    ASSERT_EQ(f.free_rc, KITE_ERR_STATE);
    ASSERT_EQ(t.n, 0);

    struct foreign a = {0}, b = {0};
    pthread_t ta, tb;
    ASSERT_EQ(pthread_create(&ta, NULL, own_sched_thread, &a), 0);
    ASSERT_EQ(pthread_create(&tb, NULL, own_sched_thread, &b), 0);
    ASSERT_EQ(pthread_join(ta, NULL), 0);
    ASSERT_EQ(pthread_join(tb, NULL), 0);
    ASSERT_EQ(a.switches, 100000);
    ASSERT_EQ(b.switches, 100000);
    kite__coro_free(f.co);
    kite__coro_sched_free(s);
}

TEST(coro_backend_is_chosen_at_compile_time)
{
    const char *b = kite__coro_backend();
    printf("# coroutine backend: %s\n", b);
#if defined(KITE_CORO_FORCE_UCONTEXT)
    ASSERT_STREQ(b, "ucontext");
#elif defined(__x86_64__)
    ASSERT_STREQ(b, "x86_64-asm");
#elif defined(__aarch64__)
    ASSERT_STREQ(b, "aarch64-asm");
#else
    ASSERT_STREQ(b, "ucontext");
#endif
}

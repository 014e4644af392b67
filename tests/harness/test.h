/*
 * kite's test harness: TAP output, assertions that print both values, tests that
 * register themselves. One executable per test file; ctest runs each.
 *
 *   TEST(frame_parses_rfc_example) { ASSERT_EQ(1, 1); }
 *
 * Each test runs in a forked child (a crash fails that test only) with a timeout.
 * Run one test: ./test_frame frame_parses_rfc_example
 */
#ifndef KITE_TEST_H
#define KITE_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void kite_test_fn(void);
void kite_test_register(const char *name, kite_test_fn *fn);
void kite_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#define TEST(name)                                                                         \
    static void test_##name(void);                                                         \
    __attribute__((constructor)) static void register_##name(void)                         \
    {                                                                                      \
        kite_test_register(#name, test_##name);                                            \
    }                                                                                      \
    static void test_##name(void)

#define ASSERT(cond)                                                                       \
    do {                                                                                   \
        if (!(cond))                                                                       \
            kite_test_fail(__FILE__, __LINE__, "assertion failed: %s", #cond);             \
    } while (0)

#define ASSERT_EQ(a, b)                                                                    \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ != b_)                                                                      \
            kite_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, a_, b_);  \
    } while (0)

#define ASSERT_NE(a, b)                                                                    \
    do {                                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                                \
        if (a_ == b_)                                                                      \
            kite_test_fail(__FILE__, __LINE__, "%s != %s: both %lld", #a, #b, a_);         \
    } while (0)

#define ASSERT_UEQ(a, b)                                                                   \
    do {                                                                                   \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);     \
        if (a_ != b_)                                                                      \
            kite_test_fail(__FILE__, __LINE__, "%s == %s: %llu != %llu", #a, #b, a_, b_);  \
    } while (0)

#define ASSERT_STREQ(a, b)                                                                 \
    do {                                                                                   \
        const char *a_ = (a), *b_ = (b);                                                   \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                             \
            kite_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b,       \
                           a_ ? a_ : "(null)", b_ ? b_ : "(null)");                        \
    } while (0)

#define ASSERT_MEMEQ(a, b, n)                                                              \
    do {                                                                                   \
        size_t n_ = (n);                                                                   \
        if (memcmp((a), (b), n_) != 0)                                                     \
            kite_test_fail(__FILE__, __LINE__, "%s and %s differ in %zu bytes", #a, #b,    \
                           n_);                                                            \
    } while (0)

/*
 * A failing allocator for OOM tests: fails the Nth allocation (1-based; 0 = never)
 * and counts live blocks so a test can assert nothing leaked.
 */
struct kite_allocator;
struct kite_test_alloc {
    long fail_at;   /* fail this allocation (1-based), 0 = never */
    long count;     /* allocations attempted so far */
    long live;      /* blocks currently allocated */
    bool failed;    /* did any allocation fail? */
};
/* Returns an allocator bound to `st`; zero `st` before use. */
const struct kite_allocator *kite_test_allocator(struct kite_test_alloc *st);

#endif

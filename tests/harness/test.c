/* The test runner: TAP output, one forked child per test with a timeout. */
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/kite.h"
#include "test.h"

#define MAX_TESTS 1024

static struct {
    const char *name;
    kite_test_fn *fn;
} tests[MAX_TESTS];
static int ntests;

void kite_test_register(const char *name, kite_test_fn *fn)
{
    if (ntests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        exit(2);
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void kite_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "# %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    exit(1);
}

static void *t_malloc(size_t n, void *ud)
{
    struct kite_test_alloc *st = ud;
    st->count++;
    if (st->fail_at && st->count == st->fail_at) {
        st->failed = true;
        return NULL;
    }
    void *p = malloc(n);
    if (p)
        st->live++;
    return p;
}

static void *t_realloc(void *p, size_t n, void *ud)
{
    struct kite_test_alloc *st = ud;
    st->count++;
    if (st->fail_at && st->count == st->fail_at) {
        st->failed = true;
        return NULL;
    }
    void *q = realloc(p, n);
    if (q && !p)
        st->live++;
    return q;
}

static void t_free(void *p, void *ud)
{
    struct kite_test_alloc *st = ud;
    if (p)
        st->live--;
    free(p);
}

const struct kite_allocator *kite_test_allocator(struct kite_test_alloc *st)
{
    static __thread struct kite_allocator a;
    a.malloc = t_malloc;
    a.realloc = t_realloc;
    a.free = t_free;
    a.ud = st;
    return &a;
}

static int run_one(int i, unsigned timeout_s)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        alarm(timeout_s);
        tests[i].fn();
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        fprintf(stderr, "# %s: killed by signal %d%s\n", tests[i].name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
    return 1;
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    const char *t = getenv("KITE_TEST_TIMEOUT");
    unsigned timeout_s = t ? (unsigned)atoi(t) : 120;
    bool nofork = getenv("KITE_TEST_NOFORK") != NULL;
    int planned = 0;
    for (int i = 0; i < ntests; i++)
        if (!only || strcmp(only, tests[i].name) == 0)
            planned++;
    printf("1..%d\n", planned);
    int failed = 0, n = 0;
    for (int i = 0; i < ntests; i++) {
        if (only && strcmp(only, tests[i].name) != 0)
            continue;
        n++;
        int rc;
        if (nofork) {
            tests[i].fn();
            rc = 0;
        } else {
            rc = run_one(i, timeout_s);
        }
        printf("%s %d - %s\n", rc ? "not ok" : "ok", n, tests[i].name);
        failed += rc != 0;
    }
    printf("# %d passed, %d failed\n", planned - failed, failed);
    return failed ? 1 : 0;
}

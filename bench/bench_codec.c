/*
 * Codec micro-benchmarks (DESIGN.md §5): unmasking and UTF-8 validation throughput
 * against memcpy of the same 1 MiB buffer measured in the same run, and the frame
 * parser's cost per 32-byte frame.
 *
 *   bench_codec [samples]     (default 9; pin it: taskset -c 1 bench_codec)
 *
 * Each figure is the best of `samples` timed samples of about 20 ms each (the least
 * disturbed one: on a shared machine the others measure the neighbours); memcpy and
 * the code under test alternate sample by sample so that both see the same machine.
 * Time is the thread's CPU time, so being descheduled does not count either.
 * The goals from the issue are printed beside the ratios. A second table repeats the
 * throughput figures for each vector width (kite__simd_cap: AVX2, SSE2, portable C).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "codec/frame.h"
#include "codec/utf8.h"

#define BUF_SIZE (1u << 20)
#define FRAME_BUF_SIZE (64u << 10) /* one typical read's worth of frames */
#define FRAME_PAYLOAD 32
#define MAX_SAMPLES 51

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Through a volatile pointer so the compiler cannot drop or shrink the copies. */
static void *(*volatile memcpy_fn)(void *, const void *, size_t) = memcpy;
static volatile size_t sink;

struct job {
    void (*fn)(struct job *j);
    uint8_t *a, *b; /* buffers (do_parse: b != NULL means masked frames) */
    size_t len;
    size_t out;     /* something the work produced, fed to `sink` */
};

static void do_memcpy(struct job *j)
{
    memcpy_fn(j->b, j->a, j->len);
}

static void do_mask(struct job *j)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    kite_mask(j->a, j->len, key, 0);
}

static void do_utf8(struct job *j)
{
    j->out += kite_utf8_valid(j->a, j->len);
}

/* Parse every frame in the buffer (the payloads get unmasked in place; re-parsing the
 * changed bytes costs the same, since payload content does not matter). */
static void do_parse(struct job *j)
{
    struct kite__frame_parser p;
    enum kite_role role = j->b ? KITE_ROLE_SERVER : KITE_ROLE_CLIENT; /* b: masked */
    kite__frame_parser_init(&p, role, 1u << 24, 0, role == KITE_ROLE_SERVER);
    size_t off = 0, n, frames = 0;
    struct kite__frame_event ev;
    for (;;) {
        enum kite__fev e = kite__frame_parse(&p, j->a + off, j->len - off, &n, &ev);
        off += n;
        if (e == KITE__FEV_DATA)
            frames += ev.frame_end;
        else if (e != KITE__FEV_HEADER)
            break;
    }
    j->out = frames;
}

/* Repetitions of `j` that take about 20 ms. */
static unsigned calibrate(struct job *j)
{
    unsigned reps = 1;
    for (;;) {
        double t = now_ns();
        for (unsigned i = 0; i < reps; i++)
            j->fn(j);
        double dt = now_ns() - t;
        if (dt > 5e6 || reps > (1u << 24))
            return (unsigned)((double)reps * 2e7 / (dt > 1 ? dt : 1)) + 1;
        reps *= 2;
    }
}

static double sample(struct job *j, unsigned reps)
{
    double t = now_ns();
    for (unsigned i = 0; i < reps; i++)
        j->fn(j);
    sink += j->out;
    return (now_ns() - t) / reps;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The fastest sample. */
static double best(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[0];
}

/* Best ns per run of `j` and of `base`, sampled alternately. */
static void measure_pair(struct job *j, struct job *base, int samples, double *t_j,
                         double *t_base)
{
    double sj[MAX_SAMPLES], sb[MAX_SAMPLES];
    unsigned rj = calibrate(j), rb = calibrate(base);
    for (int i = 0; i < samples; i++) {
        sb[i] = sample(base, rb);
        sj[i] = sample(j, rj);
    }
    *t_j = best(sj, samples);
    *t_base = best(sb, samples);
}

static void report_ratio(const char *name, struct job *j, struct job *base, int samples,
                         double goal)
{
    double tj, tb;
    measure_pair(j, base, samples, &tj, &tb);
    double gbj = (double)j->len / tj, gbb = (double)base->len / tb, ratio = tb / tj;
    printf("| %-34s | %7.2f | %7.2f | %5.2fx | >= %.2fx %-6s |\n", name, gbj, gbb, ratio, goal,
           ratio >= goal ? "ok" : "MISSED");
}

/* Append the UTF-8 encoding of cp. */
static size_t put_utf8(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Random code points: 40% ASCII, 20% 2-byte, 25% 3-byte, 15% 4-byte, shuffled so the
 * sequence lengths are unpredictable; ASCII padding at the end. */
static void fill_mixed(uint8_t *buf, size_t len)
{
    uint32_t x = 2463534242u;
    size_t n = 0;
    while (n + 4 <= len) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        uint32_t kind = x % 100, r = x >> 8, cp;
        if (kind < 40)
            cp = 0x20 + r % 0x5F;
        else if (kind < 60)
            cp = 0x80 + r % (0x800 - 0x80);
        else if (kind < 85) {
            cp = 0x800 + r % (0x10000 - 0x800 - 0x800);
            if (cp >= 0xD800)
                cp += 0x800; /* skip the surrogates */
        } else
            cp = 0x10000 + r % 0x100000;
        n += put_utf8(buf + n, cp);
    }
    memset(buf + n, 'a', len - n);
}

/* Back-to-back masked binary frames with 32-byte payloads, filling `len` bytes. */
static size_t fill_frames(uint8_t *buf, size_t len, bool masked, size_t *frames)
{
    uint8_t payload[FRAME_PAYLOAD];
    for (size_t i = 0; i < FRAME_PAYLOAD; i++)
        payload[i] = (uint8_t)('a' + i % 26);
    size_t per = kite__frame_header_size(FRAME_PAYLOAD, masked) + FRAME_PAYLOAD, n = 0;
    *frames = 0;
    for (uint32_t i = 0; n + per <= len; i++, (*frames)++) {
        uint8_t key[4] = {(uint8_t)i, (uint8_t)(i >> 8), 0x5a, 0xa5};
        n += kite__frame_write_header(buf + n, 0x80 | KITE_OP_BINARY, FRAME_PAYLOAD,
                                      masked ? key : NULL);
        if (masked)
            kite__mask_copy(buf + n, payload, FRAME_PAYLOAD, key, 0);
        else
            memcpy(buf + n, payload, FRAME_PAYLOAD);
        n += FRAME_PAYLOAD;
    }
    return n;
}

static void report_frames(const char *name, uint8_t *buf, bool masked, int samples)
{
    size_t frames;
    struct job j = {.fn = do_parse, .a = buf, .b = masked ? buf : NULL};
    j.len = fill_frames(buf, FRAME_BUF_SIZE, masked, &frames);
    do_parse(&j);
    if (j.out != frames) {
        fprintf(stderr, "parser saw %zu of %zu frames\n", j.out, frames);
        exit(1);
    }
    double s[MAX_SAMPLES];
    unsigned reps = calibrate(&j);
    for (int i = 0; i < samples; i++)
        s[i] = sample(&j, reps);
    double ns = best(s, samples) / (double)frames;
    printf("| %-34s | %7.1f ns/frame | %6.1f M frames/s | %6.2f GB/s |\n", name, ns,
           1e3 / ns, (double)j.len / (ns * (double)frames));
}

int main(int argc, char **argv)
{
    int samples = argc > 1 ? atoi(argv[1]) : 9;
    if (samples < 1 || samples > MAX_SAMPLES)
        samples = 9;
    uint8_t *a = malloc(BUF_SIZE), *b = malloc(BUF_SIZE), *m = malloc(BUF_SIZE);
    uint8_t *text = malloc(BUF_SIZE);
    if (!a || !b || !m || !text)
        return 1;
    memset(a, 0x41, BUF_SIZE);
    memset(b, 0x42, BUF_SIZE);
    memset(m, 0x43, BUF_SIZE);
    fill_mixed(text, BUF_SIZE);
    for (int cap = 2; cap >= 0; cap--) { /* the timed validations must run to the end */
        kite__simd_cap = cap;
        if (!kite_utf8_valid(text, BUF_SIZE) || !kite_utf8_valid(a, BUF_SIZE)) {
            fprintf(stderr, "test text is not valid UTF-8\n");
            return 1;
        }
    }
    kite__simd_cap = 2;

    printf("kite codec micro-benchmarks: 1 MiB buffers, best of %d samples\n\n", samples);
    printf("| %-34s | %7s | %7s | %6s | %-16s |\n", "operation", "GB/s", "memcpy", "ratio",
           "goal");
    printf("|%s|---------|---------|--------|------------------|\n",
           "------------------------------------");
    struct job base = {.fn = do_memcpy, .a = a, .b = b, .len = BUF_SIZE};
    struct job mask = {.fn = do_mask, .a = m, .len = BUF_SIZE};
    report_ratio("unmask in place (kite_mask)", &mask, &base, samples, 0.5);
    struct job ascii = {.fn = do_utf8, .a = a, .len = BUF_SIZE};
    report_ratio("UTF-8 validation, ASCII", &ascii, &base, samples, 0.5);
    struct job mixed = {.fn = do_utf8, .a = text, .len = BUF_SIZE};
    report_ratio("UTF-8 validation, mixed 1-4 bytes", &mixed, &base, samples, 0.1);

    printf("\nby vector width (kite__simd_cap), GB/s:\n\n");
    printf("| %-34s | %7s | %7s | %7s |\n", "operation", "AVX2", "SSE2", "C");
    printf("|%s|---------|---------|---------|\n", "------------------------------------");
    struct job *jobs[3] = {&mask, &ascii, &mixed};
    const char *names[3] = {"unmask in place", "UTF-8 validation, ASCII",
                            "UTF-8 validation, mixed 1-4 bytes"};
    for (int k = 0; k < 3; k++) {
        printf("| %-34s |", names[k]);
        for (int cap = 2; cap >= 0; cap--) {
            kite__simd_cap = cap;
            double s[MAX_SAMPLES];
            unsigned reps = calibrate(jobs[k]);
            for (int i = 0; i < samples; i++)
                s[i] = sample(jobs[k], reps);
            printf(" %7.2f |", (double)jobs[k]->len / best(s, samples));
        }
        printf("\n");
    }
    kite__simd_cap = 2;

    printf("\nframe parser: %u KiB of back-to-back frames with %d-byte payloads\n\n",
           FRAME_BUF_SIZE >> 10, FRAME_PAYLOAD);
    printf("| %-34s | %16s | %17s | %11s |\n", "operation", "per frame", "rate", "input");
    printf("|%s|------------------|-------------------|-------------|\n",
           "------------------------------------");
    report_frames("parse + unmask, masked (server)", b, true, samples);
    report_frames("parse, unmasked (client)", b, false, samples);

    free(a);
    free(b);
    free(m);
    free(text);
    return 0;
}

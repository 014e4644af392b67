/*
 * The `kite` program with permessage-deflate (KITE_BIN):
 *   kite echo --deflate[=PRESET]   accepts it (off without the flag);
 *   kite demo                      accepts it by default (balanced), --no-deflate not;
 *   kite cat --deflate             offers it: end to end against kite echo --deflate.
 * Each server logs the agreement on its "open" line, and compressed messages round-trip.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "test_deflate_kit.h"

#define PMD "permessage-deflate"

struct proc {
    pid_t pid;
    int in, out, err; /* our ends of its stdin, stdout, stderr */
    uint16_t port;    /* from "listening on ws://127.0.0.1:PORT/" */
    char url[256];
};

static const char *kite_bin(void)
{
    const char *b = getenv("KITE_BIN");
    if (!b || !*b) {
        printf("# KITE_BIN not set: skipping\n");
        exit(0);
    }
    return b;
}

/* Run `kite args...`; for a server (wait_line), read its listening line. */
static void run(struct proc *p, const char *const *args, bool wait_line)
{
    int i[2], o[2], e[2];
    ASSERT_EQ(pipe(i), 0);
    ASSERT_EQ(pipe(o), 0);
    ASSERT_EQ(pipe(e), 0);
    p->pid = fork();
    ASSERT(p->pid >= 0);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failing test takes its servers along */
        dup2(i[0], 0);
        dup2(o[1], 1);
        dup2(e[1], 2);
        close(i[1]);
        close(o[0]);
        close(e[0]);
        const char *argv[16] = {kite_bin()};
        for (int k = 0; args[k] && k < 14; k++)
            argv[k + 1] = args[k];
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(i[0]);
    close(o[1]);
    close(e[1]);
    p->in = i[1];
    p->out = o[0];
    p->err = e[0];
    p->port = 0;
    p->url[0] = 0;
    if (!wait_line)
        return;
    char line[256] = "";
    size_t len = 0;
    while (len + 1 < sizeof(line) && !strchr(line, '\n')) {
        ssize_t n = kit_read(p->out, line + len, sizeof(line) - 1 - len, 5000);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = 0;
    }
    ASSERT(strncmp(line, "listening on ws://", 18) == 0);
    line[strcspn(line, "\n")] = 0;
    snprintf(p->url, sizeof(p->url), "%s", line + 13);
    char *colon = strrchr(line, ':');
    p->port = colon ? (uint16_t)atoi(colon + 1) : 0;
    ASSERT(p->port != 0);
}

static int reap(struct proc *p, unsigned timeout_ms)
{
    int st = 0;
    uint64_t end = kit_now_ms() + timeout_ms;
    while (waitpid(p->pid, &st, WNOHANG) != p->pid) {
        if (kit_now_ms() >= end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            kite_test_fail(__FILE__, __LINE__, "kite did not exit in time");
        }
        kit_sleep_ms(5);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

/* Stop a server (SIGTERM: graceful, exit 0) and collect its stderr. */
static void stop(struct proc *p, char *err, size_t cap)
{
    kill(p->pid, SIGTERM);
    ASSERT_EQ(reap(p, 8000), 0);
    bool eof;
    kit_read_until_eof(p->err, err, cap, 3000, &eof);
    close(p->in);
    close(p->out);
    close(p->err);
}

/* Connect with `offer`, exchange compressed JSON-like messages both ways (when it was
 * agreed), and return the 101's Sec-WebSocket-Extensions in ext. */
static void talk(uint16_t port, const char *path, const char *offer, char *ext, size_t cap)
{
    struct dz *d = dz_open(port, path, offer);
    ASSERT_EQ(d->t->status, 101);
    snprintf(ext, cap, "%s", d->ext);
    static char msg[40000];
    for (unsigned i = 0; d->on && i < 20; i++) {
        size_t n = dk_json(msg, 500 + i * 1500, i);
        dz_send_z(d, i % 2 ? KITE_OP_BINARY : KITE_OP_TEXT, msg, n, 1 + i % 3);
        bool z = false;
        DZ_EXPECT(d, i % 2 ? KITE_OP_BINARY : KITE_OP_TEXT, msg, n, &z);
        ASSERT(z);
    }
    dz_frame(d, KITE_OP_CLOSE, true, 0, "\x03\xe8", 2);
    ASSERT_EQ(dz_expect_close(d, NULL, 0), 1000);
    dz_free(d);
}

/* kite echo: off by default; --deflate accepts with the balanced preset;
 * --deflate=PRESET picks another; a bad preset is a usage error (exit 2). */
TEST(echo_deflate_flag_and_presets)
{
    char ext[512], err[16384];
    struct proc p;
    const char *plain[] = {"echo", "--port", "0", NULL};
    run(&p, plain, true);
    talk(p.port, "/x", PMD "; client_max_window_bits", ext, sizeof(ext));
    ASSERT_STREQ(ext, "");
    stop(&p, err, sizeof(err));
    ASSERT(strstr(err, "extensions") == NULL);

    static const struct {
        const char *flag, *answer, *log;
    } cases[] = {
        {"--deflate", PMD "; server_max_window_bits=13; client_max_window_bits=13",
         "extensions " PMD "; server_max_window_bits=13; client_max_window_bits=13"},
        {"--deflate=balanced", PMD "; server_max_window_bits=13; client_max_window_bits=13",
         "extensions " PMD "; server_max_window_bits=13; client_max_window_bits=13"},
        {"--deflate=speed", PMD,
         "extensions " PMD "; server_max_window_bits=15; client_max_window_bits=15"},
        {"--deflate=MEMORY", PMD "; server_no_context_takeover; client_no_context_takeover",
         "client_max_window_bits=15; server_no_context_takeover; client_no_context_takeover"},
        {"--deflate=max-ratio", PMD,
         "extensions " PMD "; server_max_window_bits=15; client_max_window_bits=15"},
    };
    for (size_t i = 0; i < KIT_LEN(cases); i++) {
        const char *args[] = {"echo", "--port", "0", cases[i].flag, NULL};
        run(&p, args, true);
        talk(p.port, "/x", PMD "; client_max_window_bits", ext, sizeof(ext));
        if (strcmp(ext, cases[i].answer) != 0)
            kite_test_fail(__FILE__, __LINE__, "%s: answer '%s', want '%s'", cases[i].flag, ext,
                           cases[i].answer);
        /* a client that offers nothing gets nothing */
        talk(p.port, "/x", NULL, ext, sizeof(ext));
        ASSERT_STREQ(ext, "");
        stop(&p, err, sizeof(err));
        if (!strstr(err, cases[i].log))
            kite_test_fail(__FILE__, __LINE__, "%s: log lacks '%s': %s", cases[i].flag,
                           cases[i].log, err);
    }

    const char *bad[] = {"echo", "--port", "0", "--deflate=fast", NULL};
    run(&p, bad, false);
    ASSERT_EQ(reap(&p, 5000), 2);
    bool eof;
    kit_read_until_eof(p.err, err, sizeof(err), 2000, &eof);
    ASSERT(strstr(err, "--deflate") && strstr(err, "balanced, speed, memory or max-ratio"));
    close(p.in);
    close(p.out);
    close(p.err);
}

/* kite demo: compression on by default (balanced); --no-deflate turns it off. The
 * seed's conversation still works compressed (replies under 64 bytes go out plain). */
TEST(demo_deflates_by_default)
{
    char ext[512], err[16384];
    struct proc p;
    const char *args[] = {"demo", "--port", "0", NULL};
    run(&p, args, true);
    struct dz *d = dz_open(p.port, "/echo", PMD "; client_max_window_bits");
    ASSERT_EQ(d->t->status, 101);
    ASSERT_STREQ(d->ext, PMD "; server_max_window_bits=13; client_max_window_bits=13");
    DZ_EXPECT(d, KITE_OP_TEXT, "Please enter your name", 22, NULL);
    static char name[3000], want[3100];
    size_t n = dk_json(name, 2000, 1);
    dz_send_z(d, KITE_OP_TEXT, name, n, 2);
    int w = snprintf(want, sizeof(want), "Hi, %s!", name);
    bool z = false;
    DZ_EXPECT(d, KITE_OP_TEXT, want, (size_t)w, &z);
    ASSERT(z); /* a long reply goes out compressed */
    dz_send_z(d, KITE_OP_TEXT, "bye", 3, 1);
    ASSERT_EQ(dz_expect_close(d, NULL, 0), 1000);
    dz_free(d);
    stop(&p, err, sizeof(err));
    ASSERT(strstr(err, "open /echo from 127.0.0.1:") &&
           strstr(err, "extensions " PMD "; server_max_window_bits=13"));

    const char *off[] = {"demo", "--port", "0", "--no-deflate", NULL};
    run(&p, off, true);
    d = dz_open(p.port, "/echo", PMD);
    ASSERT_EQ(d->t->status, 101);
    ASSERT(!d->on);
    dz_free(d);
    stop(&p, err, sizeof(err));
    ASSERT(strstr(err, "extensions") == NULL);
    (void)ext;
}

/* kite cat --deflate against kite echo --deflate: lines come back intact, both ends
 * report the agreement, and the big line really went compressed (the server's log
 * shows the extension; cat's stderr names it). */
TEST(cat_deflate_end_to_end)
{
    char err[16384];
    struct proc srv, cat;
    const char *sargs[] = {"echo", "--port", "0", "--deflate", "-v", NULL};
    run(&srv, sargs, true);
    char url[300];
    snprintf(url, sizeof(url), "%sz", srv.url);
    const char *cargs[] = {"cat", "--deflate", url, NULL};
    run(&cat, cargs, false);
    static char input[70000], out[80000], cerr[4096];
    size_t len = 0;
    for (unsigned i = 0; len + 2000 < 60000; i++) {
        char line[1600];
        size_t k = dk_json(line, 200 + i * 97 % 1400, i);
        memcpy(input + len, line, k);
        len += k;
        input[len++] = '\n';
    }
    memcpy(input + len, "small\n", 6);
    len += 6;
    input[len] = 0;
    /* write everything, then read until cat exits (the input fits the pipe buffers
     * only in part: write and read in turns) */
    fcntl(cat.in, F_SETFL, O_NONBLOCK);
    size_t off = 0, olen = 0, elen = 0;
    bool in_open = true, out_open = true, err_open = true;
    uint64_t end = kit_now_ms() + 15000;
    while ((out_open || err_open) && kit_now_ms() < end) {
        if (in_open && off < len) {
            ssize_t w = write(cat.in, input + off, len - off);
            if (w > 0)
                off += (size_t)w;
        }
        if (in_open && off == len) {
            close(cat.in);
            in_open = false;
        }
        struct pollfd pf[2] = {{out_open ? cat.out : -1, POLLIN, 0},
                               {err_open ? cat.err : -1, POLLIN, 0}};
        poll(pf, 2, 20);
        if (pf[0].revents) {
            ssize_t r = read(cat.out, out + olen, sizeof(out) - 1 - olen);
            if (r <= 0)
                out_open = false;
            else
                olen += (size_t)r;
        }
        if (pf[1].revents) {
            ssize_t r = read(cat.err, cerr + elen, sizeof(cerr) - 1 - elen);
            if (r <= 0)
                err_open = false;
            else
                elen += (size_t)r;
        }
    }
    out[olen] = 0;
    cerr[elen] = 0;
    if (in_open)
        close(cat.in);
    close(cat.out);
    close(cat.err);
    ASSERT_EQ(reap(&cat, 5000), 0);
    ASSERT_EQ(olen, len);
    ASSERT(memcmp(out, input, len) == 0);
    ASSERT(strstr(cerr, PMD) != NULL);
    stop(&srv, err, sizeof(err));
    ASSERT(strstr(err, "open /z from 127.0.0.1:") &&
           strstr(err, "extensions " PMD "; server_max_window_bits=13; client_max_window_bits=13"));
}

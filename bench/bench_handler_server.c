/*
 * An echo server in two styles on the same engine, for `kite bench` (docs/benchmarks.md,
 * "Sequential handlers"):
 *
 *   --mode callback   on_message sends the echo; a send that returns QUEUED pauses the
 *                     session until on_drain (what `kite echo` does);
 *   --mode handler    a sequential handler: while (kite_receive()) kite_send(); the send
 *                     itself parks the handler while the queue is over its high-water
 *                     mark (the default).
 *
 * Every message on any path comes back as one message of the same type. Options:
 * --host H (127.0.0.1), --port N (9001; 0 = any), --stack BYTES (handler stack size).
 * The first stdout line is "listening on ws://HOST:PORT/"; SIGINT/SIGTERM shut down
 * gracefully. The open-file limit is raised to its hard limit, so 10,000 sessions fit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "kite/kite.h"
#include "session/session.h"

static void cb_message(struct kite_session *s, const struct kite_msg *m, void *ud)
{
    (void)ud;
    int rc = kite_session_send(s, m->type, m->data, m->len, NULL);
    if (rc == KITE_SEND_QUEUED)
        kite__session_pause(s); /* resumed by on_drain */
    else if (rc == KITE_ERR_NOMEM)
        kite_session_close(s, KITE_CLOSE_INTERNAL_ERROR, "out of memory");
}

static void cb_drain(struct kite_session *s, void *ud)
{
    (void)ud;
    kite__session_resume(s);
}

static const struct kite_ws_callbacks callbacks = {
    .on_message = cb_message,
    .on_drain = cb_drain,
};

static void echo(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK)
        kite_send(s, m.type, m.data, m.len);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_handler_server [--mode callback|handler] [--host H] "
                    "[--port N] [--stack BYTES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *mode = "handler";
    long port = 9001, stack = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--mode") == 0)
            mode = argv[++i];
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            port = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--stack") == 0)
            stack = strtol(argv[++i], NULL, 10);
        else
            return usage();
    }
    bool handler = strcmp(mode, "handler") == 0;
    if (!handler && strcmp(mode, "callback") != 0)
        return usage();
    raise_fd_limit();
    struct kite_app *app = kite_app_new(NULL);
    if (!app)
        return 1;
    struct kite_route *r = handler ? kite_route_ws(app, "/{path...}", echo, NULL)
                                   : kite_route_ws_callbacks(app, "/{path...}", &callbacks, NULL);
    if (!r || (handler && stack && kite_route_set_stack_size(r, (size_t)stack) != KITE_OK)) {
        fprintf(stderr, "bench_handler_server: cannot add the route\n");
        kite_app_free(app);
        return 1;
    }
    int rc = kite_app_listen(app, host, (uint16_t)port);
    if (rc != KITE_OK) {
        fprintf(stderr, "bench_handler_server: cannot listen: %s\n", kite_strerror(rc));
        kite_app_free(app);
        return 1;
    }
    char url[128];
    kite_app_listener_url(app, 0, url, sizeof(url));
    printf("listening on %s\n", url);
    fflush(stdout);
    rc = kite_app_run(app, NULL, 0);
    kite_app_free(app);
    return rc == KITE_OK ? 0 : 1;
}

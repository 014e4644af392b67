/*
 * programs — the `kite` command: shared option parsing, logging and serving for its
 * subcommands (main.c dispatches; demo.c and echo.c are servers).
 */
#ifndef KITE_PROGRAMS_H
#define KITE_PROGRAMS_H

#include <stdint.h>

#include "kite/kite.h"

/* Verbosity: -q, default, -v. */
enum prog_verbosity {
    PROG_QUIET = 0,   /* errors only */
    PROG_NORMAL = 1,  /* one line per connection event (open, close, error), limits */
    PROG_VERBOSE = 2, /* plus every request and message */
};

/* Options shared by the server subcommands. */
struct prog_opts {
    const char *name; /* subcommand name, for messages */
    const char *host; /* default 127.0.0.1 */
    uint16_t port;
    int verbosity; /* enum prog_verbosity */
    struct kite_ws_options ws;
    const char *tls_cert; /* --tls-cert: serve wss:// with this certificate chain */
    const char *tls_key;  /* --tls-key: its private key */
    /* --deflate[=PRESET] / --no-deflate: offer permessage-deflate (RFC 7692) with a
     * preset (kite_pmd_preset_by_name). Set the subcommand's default before parsing. */
    bool deflate;
    enum kite_pmd_preset deflate_preset;
};

/*
 * Parse argv[1..argc) (argv[0] is the subcommand name) into `o`, which holds the
 * defaults on entry. Accepts --opt VALUE and --opt=VALUE. Returns 0 to go on, 1 when
 * help was printed (exit 0), or 2 after printing an error (exit 2).
 */
int prog_parse(int argc, char **argv, struct prog_opts *o, const char *usage);

/* A kite_app with the program's options, log hook and the given routes added by the
 * caller afterwards. NULL after printing an error. */
struct kite_app *prog_app_new(const struct prog_opts *o);

/*
 * Listen (with TLS when --tls-cert/--tls-key were given), print "listening on
 * ws://HOST:PORT/" (or wss://) as the first line of stdout (flushed),
 * run until SIGINT/SIGTERM, free the app. Returns the process exit status: 0 after a
 * graceful shutdown, 1 when listening failed (with a clear message on stderr).
 */
int prog_serve(struct kite_app *app, const struct prog_opts *o);

/* One log line on stderr: "kite <name>: <text>", when verbosity >= level. */
void prog_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The verbosity prog_log compares against (set by prog_app_new). */
extern int prog_verbosity;

/* Connection-event logging shared by the servers: a session number is kept in the
 * session's user data. The open line names the negotiated extensions, e.g.
 * "extensions permessage-deflate; server_max_window_bits=13; client_max_window_bits=13". */
/* Connection-event log lines. The plain forms keep the session's id in its user data
 * (callback sessions); the _as forms take the id, for sequential handlers, whose user
 * data belongs to kite. */
/* GET /health route handler shared by demo and echo: answers "ok". */
void prog_health(const struct kite_request *req, struct kite_response *res, void *ud);
unsigned long prog_new_session_id(void);
void prog_log_open_as(unsigned long id, struct kite_session *s, const struct kite_request *req);
void prog_log_close_as(unsigned long id, const struct kite_close_info *ci);
void prog_log_error_as(unsigned long id, int err);
void prog_log_open(struct kite_session *s, const struct kite_request *req);
void prog_log_close(struct kite_session *s, const struct kite_close_info *ci);
void prog_log_error(struct kite_session *s, int err);
unsigned long prog_session_id(struct kite_session *s);
/* The session's negotiated extensions as text (what was agreed, in the header's
 * notation) into buf[0..cap), "" when none. */
void prog_extensions(struct kite_session *s, char *buf, size_t cap);

/* echo_handler.c: add `kite echo`'s sequential-handler echo (--handler) on `path`.
 * The route, or NULL when out of memory. */
struct kite_route *prog_echo_handler_route(struct kite_app *app, const char *path);

/* Subcommands. argv[0] is the subcommand name. Return the exit status. */
int prog_demo(int argc, char **argv);
int prog_echo(int argc, char **argv);
int prog_cat(int argc, char **argv);

/* The demo page (demo_page.c). */
extern const char prog_demo_page[];

#endif

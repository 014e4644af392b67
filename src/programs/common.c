/* Option parsing, logging and serving shared by the kite subcommands (programs.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "programs/programs.h"

int prog_verbosity = PROG_NORMAL;
static const char *prog_name = "kite";

void prog_log(int level, const char *fmt, ...)
{
    if (level > prog_verbosity)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "kite %s: %s\n", prog_name, line);
}

/* Parse an unsigned decimal with an optional binary suffix (k, m, g). */
static int parse_u64(const char *s, uint64_t max, bool suffix, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t mul = 1;
    if (suffix && *end) {
        switch (*end) {
        case 'k':
        case 'K':
            mul = 1ull << 10;
            break;
        case 'm':
        case 'M':
            mul = 1ull << 20;
            break;
        case 'g':
        case 'G':
            mul = 1ull << 30;
            break;
        default:
            return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I')
            end++;
        if (*end == 'b' || *end == 'B')
            end++;
    }
    if (*end || v > max / mul)
        return -1;
    *out = v * mul;
    return 0;
}

static int bad_value(const char *opt, const char *val, const char *expect)
{
    fprintf(stderr, "kite %s: invalid value for %s: '%s' (expected %s)\n", prog_name, opt,
            val ? val : "", expect);
    return 2;
}

/* Apply one option with its value. Returns 0, or 2 after printing an error. */
static int apply(struct prog_opts *o, const char *opt, const char *val)
{
    uint64_t v;
    if (strcmp(opt, "--host") == 0) {
        if (!*val)
            return bad_value(opt, val, "a host name or address");
        o->host = val;
    } else if (strcmp(opt, "--port") == 0) {
        if (parse_u64(val, 65535, false, &v) < 0)
            return bad_value(opt, val, "a port number 0-65535");
        o->port = (uint16_t)v;
    } else if (strcmp(opt, "--max-message") == 0) {
        if (parse_u64(val, UINT64_MAX, true, &v) < 0 || v == 0)
            return bad_value(opt, val, "a size in bytes > 0, e.g. 16777216 or 16M");
        o->ws.max_message_size = v;
    } else if (strcmp(opt, "--max-frame") == 0) {
        if (parse_u64(val, UINT64_MAX, true, &v) < 0 || v == 0)
            return bad_value(opt, val, "a size in bytes > 0, e.g. 1048576 or 1M");
        o->ws.max_frame_size = v;
    } else if (strcmp(opt, "--ping-period") == 0) {
        if (parse_u64(val, UINT32_MAX, false, &v) < 0)
            return bad_value(opt, val, "milliseconds, 0 for none");
        o->ws.ping_period_ms = (uint32_t)v;
    } else if (strcmp(opt, "--tls-cert") == 0) {
        if (!*val)
            return bad_value(opt, val, "a PEM certificate chain file");
        o->tls_cert = val;
    } else if (strcmp(opt, "--tls-key") == 0) {
        if (!*val)
            return bad_value(opt, val, "a PEM private key file");
        o->tls_key = val;
    } else if (strcmp(opt, "--timeout") == 0) {
        if (parse_u64(val, UINT32_MAX, false, &v) < 0 || v == 0)
            return bad_value(opt, val, "milliseconds > 0");
        o->ws.timeout_ms = (uint32_t)v;
    } else {
        fprintf(stderr, "kite %s: unknown option '%s' (try 'kite %s --help')\n", prog_name, opt,
                prog_name);
        return 2;
    }
    return 0;
}

static bool takes_value(const char *opt)
{
    static const char *const with[] = {"--host",      "--port",        "--max-message",
                                       "--max-frame", "--ping-period", "--timeout",
                                       "--tls-cert",  "--tls-key"};
    for (size_t i = 0; i < sizeof(with) / sizeof(with[0]); i++)
        if (strcmp(opt, with[i]) == 0)
            return true;
    return false;
}

/* --deflate, --deflate=PRESET, --no-deflate. Returns 0 (handled), 2 after printing an
 * error, or -1 when `a` is none of them. */
static int parse_deflate(struct prog_opts *o, const char *a)
{
    if (strcmp(a, "--no-deflate") == 0) {
        o->deflate = false;
        return 0;
    }
    if (strncmp(a, "--deflate", 9) != 0 || (a[9] != '\0' && a[9] != '='))
        return -1;
    o->deflate = true;
    if (a[9] == '=' && kite_pmd_preset_by_name(a + 10, &o->deflate_preset) != KITE_OK)
        return bad_value("--deflate", a + 10, "balanced, speed, memory or max-ratio");
    return 0;
}

int prog_parse(int argc, char **argv, struct prog_opts *o, const char *usage)
{
    prog_name = o->name;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        int drc = parse_deflate(o, a);
        if (drc >= 0) {
            if (drc)
                return drc;
            continue;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o->verbosity = PROG_QUIET;
            continue;
        }
        if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbosity = PROG_VERBOSE;
            continue;
        }
        char opt[32];
        const char *eq = strchr(a, '=');
        const char *val;
        if (eq && (size_t)(eq - a) < sizeof(opt)) {
            memcpy(opt, a, (size_t)(eq - a));
            opt[eq - a] = '\0';
            val = eq + 1;
        } else {
            snprintf(opt, sizeof(opt), "%s", a);
            if (!takes_value(a)) {
                val = NULL;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                fprintf(stderr, "kite %s: option %s needs a value\n", prog_name, a);
                return 2;
            }
        }
        if (!takes_value(opt)) {
            fprintf(stderr, "kite %s: unknown option '%s' (try 'kite %s --help')\n", prog_name, a,
                    prog_name);
            return 2;
        }
        int rc = apply(o, opt, val);
        if (rc)
            return rc;
    }
    if (!o->tls_cert != !o->tls_key) {
        fprintf(stderr, "kite %s: --tls-cert and --tls-key go together\n", prog_name);
        return 2;
    }
    return 0;
}

static void app_log(enum kite_log_level level, const char *line, void *ud)
{
    (void)ud;
    prog_log(level <= KITE_LOG_INFO ? PROG_NORMAL : PROG_VERBOSE, "%s", line);
}

struct kite_app *prog_app_new(const struct prog_opts *o)
{
    prog_verbosity = o->verbosity;
    struct kite_app_options ao;
    kite_app_options_init(&ao);
    ao.ws = o->ws;
    /* An echo must be able to queue a maximum-size message several times over. */
    uint64_t want =
        o->ws.max_message_size > SIZE_MAX / 8 ? SIZE_MAX / 2 : 4 * o->ws.max_message_size;
    if (ao.send.hard_limit < want)
        ao.send.hard_limit = (size_t)want;
    ao.log = app_log;
    ao.log_level = o->verbosity >= PROG_VERBOSE ? KITE_LOG_DEBUG : KITE_LOG_INFO;
    struct kite_app *app = kite_app_new(&ao);
    if (!app) {
        fprintf(stderr, "kite %s: cannot create the server (out of memory?)\n", o->name);
        return NULL;
    }
    if (o->deflate) {
        struct kite_pmd_config pc;
        int rc = kite_pmd_config_preset(&pc, o->deflate_preset);
        if (rc == KITE_OK)
            rc = kite_app_install_extension(app, &kite_ext_permessage_deflate, &pc);
        if (rc < 0) {
            fprintf(stderr, "kite %s: cannot set up permessage-deflate: %s\n", o->name,
                    kite_strerror(rc));
            kite_app_free(app);
            return NULL;
        }
    }
    return app;
}

/* Listen with TLS: the certificate is loaded now, so a bad file is reported before the
 * listening line. */
static int listen_tls(struct kite_app *app, const struct prog_opts *o)
{
    struct kite_tls_server_options tls;
    kite_tls_server_options_init(&tls);
    tls.cert_file = o->tls_cert;
    tls.key_file = o->tls_key;
    char err[512];
    int rc = kite_app_listen_tls(app, o->host, o->port, &tls, err, sizeof(err));
    if (rc < 0 && err[0] && rc != -EADDRINUSE && rc != -EACCES)
        fprintf(stderr, "kite %s: TLS: %s\n", o->name, err);
    return rc;
}

int prog_serve(struct kite_app *app, const struct prog_opts *o)
{
    int rc = o->tls_cert ? listen_tls(app, o) : kite_app_listen(app, o->host, o->port);
    if (o->tls_cert && (rc == KITE_ERR_TLS || rc == KITE_ERR_INVALID)) {
        /* the message is out already */
    } else if (rc == -EADDRINUSE) {
        fprintf(stderr, "kite %s: port %u is in use; try --port 0 or another port\n", o->name,
                (unsigned)o->port);
    } else if (rc == -EACCES) {
        fprintf(stderr, "kite %s: no permission to listen on port %u; try a port above 1023\n",
                o->name, (unsigned)o->port);
    } else if (rc == -EADDRNOTAVAIL || rc == KITE_ERR_RESOLVE || rc == KITE_ERR_INVALID) {
        fprintf(stderr, "kite %s: cannot listen on host '%s': %s\n", o->name, o->host,
                kite_strerror(rc));
    } else if (rc < 0) {
        fprintf(stderr, "kite %s: cannot listen on %s:%u: %s\n", o->name, o->host,
                (unsigned)o->port, kite_strerror(rc));
    }
    if (rc < 0) {
        kite_app_free(app);
        return 1;
    }
    char url[128];
    kite_app_listener_url(app, 0, url, sizeof(url));
    printf("listening on %s\n", url);
    fflush(stdout);
    rc = kite_app_run(app, NULL, 0);
    kite_app_free(app);
    if (rc < 0) {
        fprintf(stderr, "kite %s: %s\n", o->name, kite_strerror(rc));
        return 1;
    }
    return 0;
}

/* ---- connection events ------------------------------------------------------------- */

static unsigned long next_id = 1;

void prog_extensions(struct kite_session *s, char *buf, size_t cap)
{
    struct kite_pmd_params p;
    buf[0] = '\0';
    if (kite_pmd_params(kite_session_extension(s, &kite_ext_permessage_deflate), &p) != KITE_OK)
        return;
    snprintf(buf, cap,
             "permessage-deflate; server_max_window_bits=%u; client_max_window_bits=%u%s%s",
             (unsigned)p.server_max_window_bits, (unsigned)p.client_max_window_bits,
             p.server_no_context_takeover ? "; server_no_context_takeover" : "",
             p.client_no_context_takeover ? "; client_no_context_takeover" : "");
}

unsigned long prog_session_id(struct kite_session *s)
{
    return (unsigned long)(uintptr_t)kite_session_user_data(s);
}

unsigned long prog_new_session_id(void)
{
    return next_id++;
}

void prog_log_open_as(unsigned long id, struct kite_session *s, const struct kite_request *req)
{
    if (prog_verbosity < PROG_NORMAL)
        return;
    char addr[80], exts[192];
    kite_request_remote_addr(req, addr, sizeof(addr));
    struct kite_str path = kite_request_path(req);
    const char *proto = kite_request_subprotocol(req);
    prog_extensions(s, exts, sizeof(exts));
    prog_log(PROG_NORMAL, "#%lu open %.*s from %s%s%s%s%s", id, (int)path.len, path.ptr, addr,
             proto ? " subprotocol " : "", proto ? proto : "", exts[0] ? " extensions " : "",
             exts);
}

void prog_log_open(struct kite_session *s, const struct kite_request *req)
{
    unsigned long id = prog_new_session_id();
    kite_session_set_user_data(s, (void *)(uintptr_t)id);
    prog_log_open_as(id, s, req);
}

static const char *initiator_name(enum kite_close_initiator i)
{
    switch (i) {
    case KITE_CLOSED_BY_LOCAL:
        return "by server";
    case KITE_CLOSED_BY_PEER:
        return "by client";
    default:
        return "without close frame";
    }
}

void prog_log_close_as(unsigned long id, const struct kite_close_info *ci)
{
    prog_log(PROG_NORMAL, "#%lu close %u \"%.*s\" %s, %s", id, (unsigned)ci->code,
             (int)ci->reason_len, ci->reason, initiator_name(ci->initiator),
             ci->clean ? "clean" : "not clean");
}

void prog_log_close(struct kite_session *s, const struct kite_close_info *ci)
{
    prog_log_close_as(prog_session_id(s), ci);
}

void prog_log_error_as(unsigned long id, int err)
{
    prog_log(PROG_NORMAL, "#%lu error %s: %s", id, kite_err_name(err), kite_strerror(err));
}

void prog_log_error(struct kite_session *s, int err)
{
    prog_log_error_as(prog_session_id(s), err);
}

/* GET /health for demo and echo: "ok". */
void prog_health(const struct kite_request *req, struct kite_response *res, void *ud)
{
    (void)req;
    (void)ud;
    res->body = "ok\n";
    res->body_len = 3;
}

/*
 * `kite echo --handler`: the same echo as echo.c's callbacks, written as a sequential
 * handler (include/kite/handler.h): one coroutine per session loops over
 * kite_receive() and kite_send(). bench/run.sh measures it against the callback echo
 * and the peers (the S1-HANDLER and S2-HANDLER scenarios).
 *
 * Flow control needs no code here: kite_send() parks the handler while the session's
 * outgoing queue is over its high-water mark, and a parked handler reads nothing, so a
 * client that sends without reading slows itself down as it does with the callbacks.
 */
#include "programs/programs.h"

/* Returns when the incoming side ends (KITE_ERR_CLOSED) or the session fails. */
static void echo_loop(struct kite_session *s, unsigned long id)
{
    struct kite_msg m;
    int rc;
    while ((rc = kite_receive(s, &m)) == KITE_OK) {
        /* Tested here: the call would cost its argument set-up on every message. */
        if (prog_verbosity >= PROG_VERBOSE)
            prog_log(PROG_VERBOSE, "#%lu %s %zu bytes", id,
                     m.type == KITE_OP_TEXT ? "text" : "binary", m.len);
        int sent = kite_send(s, m.type, m.data, m.len);
        if (sent == KITE_ERR_NOMEM)
            kite_close(s, KITE_CLOSE_INTERNAL_ERROR, "out of memory");
        /* KITE_ERR_CLOSED: the next receive ends the loop; nothing else can fail for
         * a message kite_receive() handed over. */
    }
    if (rc != KITE_ERR_CLOSED)
        prog_log_error_as(id, rc);
}

static void echo_handler(struct kite_session *s, void *ud)
{
    (void)ud;
    unsigned long id = prog_new_session_id();
    prog_log_open_as(id, s, kite_handler_request(s));
    echo_loop(s, id);
    const struct kite_close_info *ci = kite_close_reason(s);
    if (ci)
        prog_log_close_as(id, ci);
}

struct kite_route *prog_echo_handler_route(struct kite_app *app, const char *path)
{
    return kite_route_ws(app, path, echo_handler, NULL);
}

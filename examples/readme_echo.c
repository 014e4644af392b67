/*
 * The program on README.md's first screen, kept here so CI compiles it exactly as
 * shown: the seed's echo as a sequential handler on 127.0.0.1:8080.
 * examples/handler_echo.c is the same with --host/--port and is run by the tests.
 */
#include <kite/kite.h>

static void echo(struct kite_session *s, void *ud)   /* runs as a coroutine */
{
    (void)ud;
    kite_send_str(s, "Please enter your name");
    struct kite_msg m;
    while (kite_receive(s, &m) == KITE_OK) {          /* suspends until a message arrives */
        if (m.type != KITE_OP_TEXT)
            continue;
        if (kite_msg_equals_ci(&m, "bye"))
            kite_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
        else
            kite_send_textf(s, "Hi, %.*s!", (int)m.len, (const char *)m.data);
    }
}

int main(void)
{
    struct kite_app *app = kite_app_new(NULL);        /* NULL: safe defaults */
    kite_route_ws(app, "/echo", echo, NULL);
    return kite_app_run(app, "127.0.0.1", 8080);      /* until Ctrl-C, then 1001 to all */
}

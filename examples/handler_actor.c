/*
 * Seed 001, "Usage as an suspend actor": every text frame is answered "YOU SAID: ...";
 * "bye" (any case) is answered too, then the session is closed. The Ktor original:
 *
 *   webSocket("/") { // websocketSession
 *       for (frame in incoming) {
 *           when (frame) {
 *               is Frame.Text -> {
 *                   val text = frame.readText()
 *                   outgoing.send(Frame.Text("YOU SAID: $text"))
 *                   if (text.equals("bye", ignoreCase = true)) {
 *                       close(CloseReason(CloseReason.Codes.NORMAL, "Client said BYE"))
 *                   }
 *               }
 *           }
 *       }
 *   }
 *
 * Run: example_handler_actor [--host H] [--port N]   (default 127.0.0.1:8080; 0 = any)
 * The first line on stdout is "listening on ws://HOST:PORT/". Ctrl-C closes every
 * session with 1001 and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kite/kite.h>

static void actor(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg frame;
    while (kite_receive(s, &frame) == KITE_OK) {
        switch (frame.type) {
        case KITE_OP_TEXT:
            kite_send_textf(s, "YOU SAID: %.*s", (int)frame.len, (const char *)frame.data);
            if (kite_msg_equals_ci(&frame, "bye"))
                kite_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
            break;
        default:
            break;
        }
    }
    /* "An exception will be thrown while receiving a Frame if the client closes the
     * connection": here kite_receive() returns KITE_ERR_CLOSED (or the error), and the
     * loop ends. */
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = 8080;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--host") == 0)
            host = argv[i + 1];
        else if (strcmp(argv[i], "--port") == 0)
            port = strtol(argv[i + 1], NULL, 10);
    }
    struct kite_app *app = kite_app_new(NULL);
    if (!app || !kite_route_ws(app, "/", actor, NULL))
        return 1;
    int rc = kite_app_listen(app, host, (uint16_t)port);
    if (rc != KITE_OK) {
        fprintf(stderr, "cannot listen on %s:%ld: %s\n", host, port, kite_strerror(rc));
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

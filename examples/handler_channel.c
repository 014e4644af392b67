/*
 * Seed 001, "Usage as a Channel": the incoming stream filtered to text frames
 * (incoming.mapNotNull { it as? Frame.Text }), each answered "YOU SAID ..."; "bye" is
 * answered, then the session is closed. The Ktor original:
 *
 *   webSocket("/") { // websocketSession
 *       for (frame in incoming.mapNotNull { it as? Frame.Text }) {
 *           val text = frame.readText()
 *           outgoing.send(Frame.Text("YOU SAID $text"))
 *           if (text.equals("bye", ignoreCase = true)) {
 *               close(CloseReason(CloseReason.Codes.NORMAL, "Client said BYE"))
 *           }
 *       }
 *   }
 *
 * Run: example_handler_channel [--host H] [--port N]   (default 127.0.0.1:8080; 0 = any)
 * The first line on stdout is "listening on ws://HOST:PORT/". Ctrl-C closes every
 * session with 1001 and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kite/kite.h>

/* incoming.mapNotNull { it as? Frame.Text }: the next text message, skipping others.
 * Like kite_receive(), it returns KITE_OK or how the stream ended. */
static int receive_text(struct kite_session *s, struct kite_msg *m)
{
    int rc;
    while ((rc = kite_receive(s, m)) == KITE_OK && m->type != KITE_OP_TEXT)
        ;
    return rc;
}

static void channel(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg frame;
    while (receive_text(s, &frame) == KITE_OK) {
        kite_send_textf(s, "YOU SAID %.*s", (int)frame.len, (const char *)frame.data);
        if (kite_msg_equals_ci(&frame, "bye"))
            kite_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
    }
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
    if (!app || !kite_route_ws(app, "/", channel, NULL))
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

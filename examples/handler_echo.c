/*
 * The seed's echo conversation as a sequential handler. The Ktor original:
 *
 *   routing {
 *       webSocket("/echo") {
 *           send("Please enter your name")
 *           for (frame in incoming) {
 *               frame as? Frame.Text ?: continue
 *               val receivedText = frame.readText()
 *               if (receivedText.equals("bye", ignoreCase = true)) {
 *                   close(CloseReason(CloseReason.Codes.NORMAL, "Client said BYE"))
 *               } else {
 *                   send(Frame.Text("Hi, $receivedText!"))
 *               }
 *           }
 *       }
 *   }
 *
 * Run: example_handler_echo [--host H] [--port N]   (default 127.0.0.1:8080; 0 = any)
 * The first line on stdout is "listening on ws://HOST:PORT/". Ctrl-C closes every
 * session with 1001 and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kite/kite.h>

static void echo(struct kite_session *s, void *ud)
{
    (void)ud;
    kite_send_str(s, "Please enter your name");
    struct kite_msg frame;
    while (kite_receive(s, &frame) == KITE_OK) {
        if (frame.type != KITE_OP_TEXT)
            continue;
        if (kite_msg_equals_ci(&frame, "bye"))
            kite_close(s, KITE_CLOSE_NORMAL, "Client said BYE");
        else
            kite_send_textf(s, "Hi, %.*s!", (int)frame.len, (const char *)frame.data);
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
    if (!app || !kite_route_ws(app, "/echo", echo, NULL))
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

/*
 * Seed 001's FAQ: the WebSocket API's standard events (onConnect, onMessage, onClose,
 * onError) in a sequential handler. The Ktor original:
 *
 *   webSocket("/echo") {
 *       println("onConnect")
 *       try {
 *           for (frame in incoming){
 *               val text = (frame as Frame.Text).readText()
 *               println("onMessage")
 *               received += text
 *               outgoing.send(Frame.Text(text))
 *           }
 *       } catch (e: ClosedReceiveChannelException) {
 *           println("onClose ${closeReason.await()}")
 *       } catch (e: Throwable) {
 *           println("onError ${closeReason.await()}")
 *           e.printStackTrace()
 *       }
 *   }
 *
 * The mapping: onConnect is the start of the handler; onMessage a successful
 * kite_receive(); onClose kite_receive() returning KITE_ERR_CLOSED (the incoming side
 * ended); onError any other result; in both, kite_close_reason() is set. Where Ktor's
 * cast `frame as Frame.Text` throws on a binary frame, this handler closes with 1003
 * (CANNOT_ACCEPT, RFC 6455 §7.4.1) and reports onError.
 *
 * Run: example_handler_events [--host H] [--port N]   (default 127.0.0.1:8080; 0 = any)
 * The first line on stdout is "listening on ws://HOST:PORT/". Ctrl-C closes every
 * session with 1001 and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kite/kite.h>

/* received += text: every handler runs on the loop's thread, so plain data is shared
 * without locks. */
static struct {
    unsigned long count;
    unsigned long long bytes;
} received;

/* Ktor's CloseReason.toString(): "CloseReason(reason=NORMAL, message=Client said BYE)". */
static void print_reason(const char *event, const struct kite_close_info *ci)
{
    const char *name = kite_close_code_name(ci->code);
    if (name)
        printf("%s CloseReason(reason=%s, message=%.*s)\n", event, name, (int)ci->reason_len,
               ci->reason);
    else
        printf("%s CloseReason(reason=%u, message=%.*s)\n", event, (unsigned)ci->code,
               (int)ci->reason_len, ci->reason);
    fflush(stdout);
}

static void events(struct kite_session *s, void *ud)
{
    (void)ud;
    printf("onConnect\n");
    fflush(stdout);
    struct kite_msg frame;
    int rc;
    while ((rc = kite_receive(s, &frame)) == KITE_OK) {
        if (frame.type != KITE_OP_TEXT)
            break; /* (frame as Frame.Text) fails: an error */
        printf("onMessage\n");
        fflush(stdout);
        received.count++;
        received.bytes += frame.len;
        kite_send_text(s, (const char *)frame.data, frame.len);
    }
    if (rc == KITE_ERR_CLOSED) {
        print_reason("onClose", kite_close_reason(s));
        return;
    }
    if (rc == KITE_OK) /* the failed cast */
        kite_close(s, KITE_CLOSE_CANNOT_ACCEPT, "text frames only");
    print_reason("onError", kite_close_reason(s));
    fprintf(stderr, "error: %s\n",
            rc == KITE_OK ? "a binary frame is not a Frame.Text" : kite_strerror(rc));
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
    if (!app || !kite_route_ws(app, "/echo", events, NULL))
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

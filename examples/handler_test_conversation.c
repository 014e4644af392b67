/*
 * Seed 001's "Testing" section with kite's own client: a server whose /echo handler
 * records what it receives, and a conversation from a client handler that checks every
 * echo and then the record. The Ktor original:
 *
 *   withTestApplication {
 *       application.install(WebSockets)
 *       val received = arrayListOf<String>()
 *       application.routing {
 *           webSocket("/echo") {
 *               try {
 *                   while (true) {
 *                       val text = (incoming.receive() as Frame.Text).readText()
 *                       received += text
 *                       outgoing.send(Frame.Text(text))
 *                   }
 *               } catch (e: ClosedReceiveChannelException) {
 *                   // Do nothing!
 *               } catch (e: Throwable) {
 *                   e.printStackTrace()
 *               }
 *           }
 *       }
 *       handleWebSocketConversation("/echo") { incoming, outgoing ->
 *           val textMessages = listOf("HELLO", "WORLD")
 *           for (msg in textMessages) {
 *               outgoing.send(Frame.Text(msg))
 *               assertEquals(msg, (incoming.receive() as Frame.Text).readText())
 *           }
 *           assertEquals(textMessages, received)
 *       }
 *   }
 *
 * Here the test application is a kite app on 127.0.0.1, port 0, run by a thread, and
 * the conversation is a handler on a client session (kite_client_run with
 * kite_handler_callbacks()): the same handler API on both sides.
 *
 * Run: example_handler_test_conversation. Prints "PASS testConversation" and exits 0,
 * or prints what failed and exits 1.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kite/kite.h>

#define MAX_RECEIVED 16

/* val received = arrayListOf<String>(): written by the server's loop thread, read by
 * the client's, hence the lock. */
static struct {
    pthread_mutex_t mu;
    char items[MAX_RECEIVED][64];
    int n;
} received = {PTHREAD_MUTEX_INITIALIZER, {{0}}, 0};

static const char *const text_messages[] = {"HELLO", "WORLD"};
#define N_MESSAGES 2

static int failures;

static void fail(const char *what)
{
    fprintf(stderr, "FAIL testConversation: %s\n", what);
    failures++;
}

/* The route's handler, as in the test. */
static void echo(struct kite_session *s, void *ud)
{
    (void)ud;
    struct kite_msg frame;
    int rc;
    while ((rc = kite_receive(s, &frame)) == KITE_OK) {
        if (frame.type != KITE_OP_TEXT) { /* (incoming.receive() as Frame.Text) */
            rc = KITE_ERR_INVALID;
            break;
        }
        pthread_mutex_lock(&received.mu);
        if (received.n < MAX_RECEIVED && frame.len < sizeof(received.items[0])) {
            memcpy(received.items[received.n], frame.data, frame.len);
            received.items[received.n][frame.len] = '\0';
            received.n++;
        }
        pthread_mutex_unlock(&received.mu);
        kite_send_text(s, (const char *)frame.data, frame.len);
    }
    if (rc != KITE_ERR_CLOSED) /* ClosedReceiveChannelException: do nothing */
        fprintf(stderr, "server handler: %s\n", kite_strerror(rc));
}

/* handleWebSocketConversation("/echo") { incoming, outgoing -> ... } */
static void conversation(struct kite_session *s, void *ud)
{
    (void)ud;
    for (int i = 0; i < N_MESSAGES; i++) {
        const char *msg = text_messages[i];
        if (kite_send_str(s, msg) != KITE_OK) {
            fail("send");
            return;
        }
        struct kite_msg frame;
        if (kite_receive(s, &frame) != KITE_OK || frame.type != KITE_OP_TEXT) {
            fail("no text echo");
            return;
        }
        if (frame.len != strlen(msg) || memcmp(frame.data, msg, frame.len) != 0)
            fail("echo differs from what was sent");
    }
    pthread_mutex_lock(&received.mu);
    if (received.n != N_MESSAGES)
        fail("the server received a different number of messages");
    for (int i = 0; i < received.n && i < N_MESSAGES; i++)
        if (strcmp(received.items[i], text_messages[i]) != 0)
            fail("the server received different messages");
    pthread_mutex_unlock(&received.mu);
    /* Returning closes the session with 1000, as the end of Ktor's block does. */
}

static void *serve(void *arg)
{
    kite_app_run(arg, NULL, 0);
    return NULL;
}

int main(void)
{
    /* withTestApplication { install(WebSockets); routing { webSocket("/echo") ... } } */
    struct kite_app_options o;
    kite_app_options_init(&o);
    o.handle_signals = false;
    struct kite_app *app = kite_app_new(&o);
    if (!app || !kite_route_ws(app, "/echo", echo, NULL) ||
        kite_app_listen(app, "127.0.0.1", 0) != KITE_OK) {
        fprintf(stderr, "cannot start the test application\n");
        return 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, serve, app) != 0)
        return 1;

    char url[128];
    snprintf(url, sizeof(url), "ws://127.0.0.1:%u/echo", (unsigned)kite_app_listener_port(app, 0));
    static const struct kite_handler_spec client = {.fn = conversation};
    char err[256];
    int rc = kite_client_run(url, NULL, kite_handler_callbacks(), (void *)&client, err,
                             sizeof(err));
    if (rc != KITE_OK) {
        fprintf(stderr, "FAIL testConversation: cannot connect: %s\n", err);
        failures++;
    }

    kite_app_stop(app);
    pthread_join(th, NULL);
    kite_app_free(app);
    if (failures)
        return 1;
    printf("PASS testConversation\n");
    return 0;
}

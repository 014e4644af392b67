/*
 * The SharedFlow broadcast recipe (seed 002, "handling multiple sessions"): every
 * text message any session sends goes to every session of the route, the sender
 * included. In Ktor, a MutableSharedFlow is shared by all sessions; each session
 * launches a collector that sends what the flow emits, and its main loop emits what it
 * receives (the seed describes the recipe; in outline):
 *
 *   val messageResponseFlow = MutableSharedFlow<MessageResponse>()
 *   val sharedFlow = messageResponseFlow.asSharedFlow()
 *   webSocket("/ws") {
 *       val job = launch { sharedFlow.collect { message -> send(message.message) } }
 *       runCatching {
 *           incoming.consumeEach { frame ->
 *               if (frame is Frame.Text) messageResponseFlow.emit(MessageResponse(frame.readText()))
 *           }
 *       }.onFailure { exception -> println("WebSocket exception: ${exception.localizedMessage}") }
 *        .also { job.cancel() }
 *   }
 *
 * In C the "flow" is a list of the route's sessions, and emitting is one non-blocking
 * send to each: every handler of an app runs on its loop's thread, so the list needs no
 * lock, and a session that cannot keep up is closed by its queue's hard limit (1008)
 * instead of slowing the others down. (kite's topics will do this across loops and
 * machines.)
 *
 * Run: example_handler_broadcast [--host H] [--port N]   (default 127.0.0.1:8080; 0 = any)
 * The first line on stdout is "listening on ws://HOST:PORT/". Ctrl-C closes every
 * session with 1001 and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kite/kite.h>

/* One collector: a session subscribed to the flow. It lives on its handler's stack, so
 * subscribing allocates nothing. */
struct collector {
    struct kite_session *s;
    struct collector *prev, *next;
};

static struct collector *collectors; /* the shared flow's subscribers */

static void subscribe(struct collector *c)
{
    c->prev = NULL;
    c->next = collectors;
    if (collectors)
        collectors->prev = c;
    collectors = c;
}

static void unsubscribe(struct collector *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        collectors = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* messageResponseFlow.emit(...): hand the message to every collector. */
static void emit(const struct kite_msg *m)
{
    for (struct collector *c = collectors; c; c = c->next)
        if (kite_session_is_open(c->s))
            kite_session_send_text(c->s, (const char *)m->data, m->len, NULL);
}

static void chat(struct kite_session *s, void *ud)
{
    (void)ud;
    struct collector me = {.s = s};
    subscribe(&me); /* val job = launch { sharedFlow.collect { send(it) } } */
    struct kite_msg frame;
    int rc;
    while ((rc = kite_receive(s, &frame)) == KITE_OK) /* incoming.consumeEach */
        if (frame.type == KITE_OP_TEXT)
            emit(&frame);
    if (rc != KITE_ERR_CLOSED) { /* .onFailure */
        printf("WebSocket exception: %s\n", kite_strerror(rc));
        fflush(stdout);
    }
    unsubscribe(&me); /* job.cancel() */
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
    if (!app || !kite_route_ws(app, "/ws", chat, NULL))
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

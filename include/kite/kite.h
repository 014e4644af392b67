/*
 * kite — WebSocket server and client library. The one header to include.
 *
 * Conventions for the whole API:
 *   - 0 (KITE_OK) is success, negative is failure: a kite code (enum kite_err) or a
 *     -errno from a system call. kite_strerror() describes either.
 *   - Pointer arguments are borrowed for the duration of the call unless the comment
 *     says "copied" or "transferred". Data handed to callbacks is valid only during the
 *     callback unless said otherwise.
 *   - Objects are opaque; *_free() functions accept NULL.
 *   - Nothing aborts on out-of-memory: it is KITE_ERR_NOMEM.
 */
#ifndef KITE_KITE_H
#define KITE_KITE_H

#include "kite/common.h"
#include "kite/codec.h"
#include "kite/loop.h"
#include "kite/session.h"
#include "kite/server.h"
#include "kite/handler.h"
#include "kite/tls.h"
#include "kite/client.h"

#endif

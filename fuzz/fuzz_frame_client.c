/*
 * Fuzz target: the frame parser (src/codec/frame.c) in the client role, reading what a
 * server sends (masked frames are errors, RFC 6455 §5.1). The driver, input layout and
 * checks are those of fuzz_frame_server.c, built here with the other role.
 */
#define FUZZ_FRAME_ROLE KITE_ROLE_CLIENT
#include "fuzz_frame_server.c"

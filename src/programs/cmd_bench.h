/*
 * programs/cmd_bench — `kite bench`, the load generator (docs/bench-tool.md).
 */
#ifndef KITE_PROGRAMS_CMD_BENCH_H
#define KITE_PROGRAMS_CMD_BENCH_H

/*
 * Run `kite bench MODE [options]`. argv[0] is the command's own name ("bench", not
 * looked at), argv[1] the mode (echo, connect or broadcast), the rest options; the
 * strings are borrowed for the call. Human-readable results go to stderr, one JSON
 * line to stdout. Returns the process exit status: 0 when the run completed without
 * errors, 1 when any error was counted (lost, corrupted or reordered messages, failed
 * or dropped connections, the hard deadline reached), 2 for a usage error.
 * Installs a SIGINT handler for the duration of the call (the first Ctrl-C ends the
 * measurement early, a second one kills) and restores the previous one.
 */
int kite__cmd_bench(int argc, char **argv);

#endif

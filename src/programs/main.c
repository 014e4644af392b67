/* kite — the command: `kite demo`, `kite echo`, `kite cat`, `kite bench`, help, version. */
#include <stdio.h>
#include <string.h>

#include "programs/cmd_bench.h"
#include "programs/programs.h"

static const char usage[] =
    "usage: kite <command> [options]\n"
    "\n"
    "commands:\n"
    "  demo     the demo page and the seed's echo conversation (ws://127.0.0.1:8080/echo)\n"
    "  echo     echo every message on any path (ws://127.0.0.1:9001/), for tests and benchmarks\n"
    "  cat      a client: stdin lines out as messages, messages in as stdout lines\n"
    "  bench    load generator: 'kite bench echo|connect|broadcast --help'\n"
    "  help     show this help, or 'kite help <command>' for a command's options\n"
    "  version  show the version (also --version)\n";

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"demo", prog_demo},
    {"echo", prog_echo},
    {"cat", prog_cat},
    {"bench", kite__cmd_bench},
};

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        if (argc > 2 && find(argv[2])) {
            static char help_opt[] = "--help";
            char *sub[] = {argv[2], help_opt, NULL};
            return find(argv[2])->run(2, sub);
        }
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("kite %s\n", kite_version_string());
        return 0;
    }
    const struct command *c = find(cmd);
    if (!c) {
        fprintf(stderr, "kite: unknown command '%s'\n\n%s", cmd, usage);
        return 2;
    }
    return c->run(argc - 1, argv + 1);
}

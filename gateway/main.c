/* main.c — the `tollgate` command: serve (default), check, simulate,
 * --version and help. Only main exits; each command returns its code
 * (0 ok, 1 invalid input/config, 2 usage error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/config.h"
#include "gateway/server.h"
#include "gateway/simulate.h"

#define TG_VERSION "0.1.0"
#define DEFAULT_CONFIG "config/tollgate.yaml"

static void usage(FILE *f) {
    fprintf(f, "usage: tollgate [serve] [-c FILE] [--listen HOST:PORT] [--redis URL] [--workers N]\n"
               "       tollgate check [-c FILE]\n"
               "       tollgate simulate [--host H] [--port N] [--ttft-ms N] [--tps N] [--fault PROVIDER:STATUS[:PCT]]\n"
               "       tollgate --version | help\n"
               "\n"
               "  serve     run the gateway (default config %s)\n"
               "  check     validate the config, routes and prices; FILE:LINE:COL: message per problem\n"
               "  simulate  run the simulated providers (OpenAI, DeepSeek, Qwen dialects)\n",
            DEFAULT_CONFIG);
}

static int cmd_serve(int argc, char **argv) {
    tg_server_opts_t o = {.config_path = DEFAULT_CONFIG};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && v) o.config_path = argv[++i];
        else if (strcmp(a, "--listen") == 0 && v) o.listen = argv[++i];
        else if (strcmp(a, "--redis") == 0 && v) o.redis = argv[++i];
        else if (strcmp(a, "--workers") == 0 && v) o.workers = atoi(argv[++i]);
        else {
            fprintf(stderr, "tollgate serve: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return tg_server_run(&o);
}

static int cmd_check(int argc, char **argv) {
    const char *path = DEFAULT_CONFIG;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) path = argv[++i];
        else {
            fprintf(stderr, "tollgate check: unknown or incomplete option '%s'\n", argv[i]);
            return 2;
        }
    }
    return tg_config_check_main(path);
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
            printf("tollgate %s\n", TG_VERSION);
            return 0;
        }
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            usage(stdout);
            return 0;
        }
        return cmd_serve(argc - 1, argv + 1);
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0) return cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "simulate") == 0) return tg_simulate_main(argc - 1, argv + 1);
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0) {
        printf("tollgate %s\n", TG_VERSION);
        return 0;
    }
    fprintf(stderr, "tollgate: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}

/* main.c — the `tollgate` command: serve (default), check, simulate,
 * report, --version and help. Only main exits; each command returns its code
 * (0 ok, 1 invalid input/config, 2 usage error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/pool.h"
#include "gateway/report.h"
#include "core/scan.h"
#include "policy/route.h"
#include "gateway/server.h"
#include "sim/simulate.h"

#define TG_VERSION "0.1.0"
#define DEFAULT_CONFIG "config/tollgate.yaml"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tollgate [serve] [-c FILE] [--listen HOST:PORT] [--redis URL] [--workers N]\n"
            "       tollgate check [-c FILE]\n"
            "       tollgate explain [-c FILE] [--key NAME] REQUEST.json\n"
            "       tollgate report [-c FILE] [--redis URL] [--from YYYY-MM-DD] [--to YYYY-MM-DD]\n"
            "                       [--by provider|model|key|day] [--format table|csv|json]\n"
            "       tollgate simulate [--host H] [--port N] [--ttft-ms N] [--tps N] [--fault "
            "PROVIDER:STATUS[:PCT]]\n"
            "       tollgate --version | help\n"
            "\n"
            "  serve     run the gateway (default config %s)\n"
            "  check     validate the config, routes and prices; FILE:LINE:COL: message per problem\n"
            "  explain   print the routing decision for a request, without calling any provider\n"
            "  report    spend per provider, model, key or day from Redis, with a totals row\n"
            "            (exit 3 when Redis cannot be reached)\n"
            "  simulate  run the simulated providers (OpenAI, DeepSeek, Qwen and Anthropic dialects; default "
            "port 8090)\n",
            DEFAULT_CONFIG);
}

static int cmd_serve(int argc, char **argv) {
    tg_server_opts_t o = {.config_path = DEFAULT_CONFIG};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && v)
            o.config_path = argv[++i];
        else if (strcmp(a, "--listen") == 0 && v)
            o.listen = argv[++i];
        else if (strcmp(a, "--redis") == 0 && v)
            o.redis = argv[++i];
        else if (strcmp(a, "--workers") == 0 && v)
            o.workers = atoi(argv[++i]);
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
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else {
            fprintf(stderr, "tollgate check: unknown or incomplete option '%s'\n", argv[i]);
            return 2;
        }
    }
    return tg_config_check_main(path);
}

/* `tollgate explain [-c FILE] [--key NAME] REQUEST.json`: the routing
 * decision for a request body, without calling any provider. */
static int cmd_explain(int argc, char **argv) {
    const char *path = DEFAULT_CONFIG, *req = NULL, *keyname = NULL;
    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            keyname = argv[++i];
        else if (argv[i][0] != '-' && req == NULL)
            req = argv[i];
        else {
            fprintf(stderr, "tollgate explain: unknown or incomplete option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (req == NULL) {
        fprintf(stderr, "usage: tollgate explain [-c FILE] [--key NAME] REQUEST.json\n");
        return 2;
    }
    FILE *f = strcmp(req, "-") == 0 ? stdin : fopen(req, "rb");
    if (f == NULL) {
        fprintf(stderr, "tollgate explain: cannot open %s\n", req);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    char *body = malloc(cap + 1);
    size_t n;
    while (body && (n = fread(body + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) body = realloc(body, (cap *= 2) + 1);
    }
    if (f != stdin) fclose(f);
    if (body == NULL) return 1;
    body[len] = '\0';
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(path, &d);
    for (size_t i = 0; i < d.n; i++)
        if (c == NULL) fprintf(stderr, "%s\n", d.msgs[i]);
    tg_diag_free(&d);
    int rc = 1;
    if (c) {
        tg_pool_t *pool = tg_pool_create(1 << 16);
        tg_scan_req_t scan;
        char err[256];
        const tg_key_t *key = NULL;
        for (size_t i = 0; keyname && i < c->n_keys; i++)
            if (strcmp(c->keys[i].name, keyname) == 0) key = &c->keys[i];
        if (keyname && key == NULL) {
            fprintf(stderr, "tollgate explain: no key named '%s' in %s\n", keyname, path);
        } else if (tg_scan_request(body, len, pool, &scan, err, sizeof(err)) != 0 || !scan.has_model) {
            fprintf(stderr, "%s: %s\n", req, scan.has_model ? err : "'model' is required");
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            tg_route_ctx_t ctx = {scan.model_str, key, &scan, {NULL, NULL}, (int64_t)ts.tv_sec * 1000,
                                  TG_KIND_CHAT};
            char *json = NULL;
            tg_route_explain(c, &ctx, NULL, pool, &json);
            if (json) {
                printf("%s\n", json);
                free(json);
                rc = 0;
            }
        }
        tg_pool_destroy(pool);
        tg_config_unref(c);
    }
    free(body);
    return rc;
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
    if (strcmp(cmd, "explain") == 0) return cmd_explain(argc - 2, argv + 2);
    if (strcmp(cmd, "report") == 0) return tg_report_main(argc - 1, argv + 1, DEFAULT_CONFIG);
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

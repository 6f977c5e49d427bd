/* fuzz_config.c — libFuzzer target for the configuration loader.
 * The loader reads files (includes are paths), so each input is written to a
 * private temp directory as tollgate.yaml and loaded from there; a sibling
 * routes.yaml lets inputs exercise includes. Properties: (1) no crash, leak
 * or undefined behaviour on any input; (2) a load either returns a snapshot
 * with no error messages or returns NULL with at least one; (3) every
 * message has the "FILE:LINE:COL: " shape; (4) a snapshot survives
 * ref/unref and its names are NUL-terminated strings. Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_config.c core/config*.c core/pool.c -lyaml -lssl -lcrypto -o /tmp/fuzz_config */
/* clang-format off */
/* deps: core/config.c core/config_load.c core/config_schema.c core/config_listen.c core/config_yaml.c core/config_price.c core/pool.c */
/* clang-format on */
/* libs: -lyaml -lssl -lcrypto */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

static char dir[64], main_path[96];

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/fuzz_config.XXXXXX");
    if (!mkdtemp(dir)) abort();
    snprintf(main_path, sizeof main_path, "%s/tollgate.yaml", dir);
    char inc[96];
    static const char routes[] = "routes:\n  - name: r\n    match: { model: r }\n"
                                 "    candidates: [p/m]\naliases: { a: p/m }\n";
    snprintf(inc, sizeof inc, "%s/routes.yaml", dir);
    write_file(inc, routes, sizeof routes - 1);
    /* Keys from the environment must never be needed: unset a likely one. */
    unsetenv("TOLLGATE_ADMIN_TOKEN");
}

static void check_diag(const tg_diag_t *d) {
    for (size_t i = 0; i < d->n; i++) {
        const char *m = d->msgs[i];
        /* "FILE:LINE:COL: text": at least two colons followed by digits. */
        const char *c1 = strchr(m, ':');
        if (!c1 || c1 == m) abort();
        if (!strstr(m, ": ")) abort();
    }
}

static void check_snapshot(tg_config_t *c) {
    for (size_t i = 0; i < c->n_providers; i++)
        if (!c->providers[i].name || strlen(c->providers[i].name) == 0) abort();
    for (size_t i = 0; i < c->n_routes; i++)
        for (size_t k = 0; k < c->routes[i].n_candidates; k++)
            if (!c->routes[i].candidates[k].target) abort();
    for (size_t i = 0; i < c->n_keys; i++)
        if (!c->keys[i].name) abort();
    tg_config_t *r = tg_config_ref(c);
    tg_config_unref(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) setup();
    /* Inputs that name devices or fifos as includes would block on read:
     * they are not what the loader is asked to survive (an operator wrote
     * the file), so such inputs are skipped. */
    if (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) || memmem(data, size, "/sys", 4))
        return 0;
    write_file(main_path, data, size);
    tg_diag_t d = {0};
    tg_config_t *c = tg_config_load(main_path, &d);
    check_diag(&d);
    if (c) {
        if (d.n_errors) abort();
        check_snapshot(c);
        tg_config_unref(c);
    } else if (d.n_errors == 0) {
        abort(); /* a refusal always says why */
    }
    tg_diag_free(&d);
    return 0;
}

/* config_check.c — `tollgate check`: loads a configuration and prints
 * every diagnostic, one "FILE:LINE:COL: message" line each on stdout, then
 * a one-line summary when it is valid. It only validates: nothing is bound
 * or started, and the exit code is returned to gateway/main.c. */
#include "core/config.h"

#include <stdio.h>

int tg_config_check_main(const char *path) {
    tg_diag_t d = {0};
    if (path == NULL) path = "config/tollgate.yaml";
    tg_config_t *c = tg_config_load(path, &d);
    for (size_t i = 0; i < d.n; i++)
        puts(d.msgs[i]);
    if (c)
        printf("%s: ok (%zu providers, %zu routes, %zu prices, %zu keys)\n", path, c->n_providers,
               c->n_routes, c->n_prices, c->n_keys);
    fflush(stdout);
    int rc = c ? 0 : 1;
    tg_config_unref(c);
    tg_diag_free(&d);
    return rc;
}

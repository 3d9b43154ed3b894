/*
 * ferry_brokers: splitting endpoint and key lists (ferry_brokers.h).
 */
#include "ferry_brokers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ferry_list_fini(ferry_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->item[i]);
    l->n = 0;
}

ferry_err ferry_list_split(const char *s, const char *what, ferry_list *out, char *err,
                           size_t errlen)
{
    out->n = 0;
    if (!s)
        s = "";
    const char *p = s;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *b = p;
        while (len && (*b == ' ' || *b == '\t')) {
            b++;
            len--;
        }
        while (len && (b[len - 1] == ' ' || b[len - 1] == '\t'))
            len--;
        if (len == 0) {
            snprintf(err, errlen, "%s: empty item in the list \"%s\"", what, s);
            ferry_list_fini(out);
            return FERRY_EUSAGE;
        }
        if (out->n == FERRY_BROKERS_MAX) {
            snprintf(err, errlen, "%s: more than %d items in the list", what, FERRY_BROKERS_MAX);
            ferry_list_fini(out);
            return FERRY_EUSAGE;
        }
        char *item = malloc(len + 1);
        if (!item) {
            snprintf(err, errlen, "out of memory");
            ferry_list_fini(out);
            return FERRY_ENOMEM;
        }
        memcpy(item, b, len);
        item[len] = '\0';
        out->item[out->n++] = item;
        if (!end)
            return FERRY_OK;
        p = end + 1;
    }
}

ferry_err ferry_curve_clients(ferry_curve *out, size_t n, const char *own_path,
                              const char *server_paths, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        memset(&out[i], 0, sizeof out[i]);
    if (n == 0)
        return FERRY_OK;
    if (!server_paths || !*server_paths) {
        /* No broker key: no CURVE, or the usage error of a --curve-key alone. */
        ferry_err e = ferry_curve_client(&out[0], own_path, server_paths, err, errlen);
        for (size_t i = 1; i < n; i++)
            out[i] = out[0];
        return e;
    }
    ferry_list keys;
    ferry_err e = ferry_list_split(server_paths, "--broker-key", &keys, err, errlen);
    if (e != FERRY_OK)
        return e;
    if (keys.n != 1 && keys.n != n) {
        snprintf(err, errlen, "--broker-key: %zu keys for %zu brokers (give one for all, or one "
                 "per broker in the order of the endpoints)", keys.n, n);
        ferry_list_fini(&keys);
        return FERRY_EUSAGE;
    }
    for (size_t i = 0; i < n && e == FERRY_OK; i++)
        e = ferry_curve_client(&out[i], own_path, keys.item[keys.n == 1 ? 0 : i], err, errlen);
    ferry_list_fini(&keys);
    return e;
}

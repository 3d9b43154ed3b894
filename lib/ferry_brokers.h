/*
 * ferry_brokers: the lists of broker endpoints and keys a connecting process
 * takes (several brokers at once, docs/protocol.md#several-brokers).
 *
 * An endpoint flag holds one endpoint or a comma-separated list of them;
 * position i of each list is broker i. --broker-key holds one public
 * certificate for every broker, or one per broker in the same order.
 */
#ifndef FERRY_BROKERS_H
#define FERRY_BROKERS_H

#include "ferry_cert.h"
#include "ferry_err.h"

#include <stddef.h>

/* Most brokers one process serves at once. */
#define FERRY_BROKERS_MAX 16

typedef struct {
    size_t n;
    char *item[FERRY_BROKERS_MAX]; /* owned, each non-empty */
} ferry_list;

/*
 * Splits a comma-separated list (spaces around items are dropped). An empty
 * item, or more than FERRY_BROKERS_MAX: FERRY_EUSAGE with a message naming
 * what (for the flag what) in err. FERRY_ENOMEM. On error out is empty.
 */
ferry_err ferry_list_split(const char *s, const char *what, ferry_list *out, char *err,
                           size_t errlen);

void ferry_list_fini(ferry_list *l);

/*
 * The CURVE settings towards n brokers from --curve-key FILE and
 * --broker-key FILE[,FILE...]: one broker key serves every broker, else
 * there must be exactly n. Both unset: every out[i].on = 0. Errors as
 * ferry_curve_client, and FERRY_EUSAGE when the count of keys is wrong.
 */
ferry_err ferry_curve_clients(ferry_curve *out, size_t n, const char *own_path,
                              const char *server_paths, char *err, size_t errlen);

#endif

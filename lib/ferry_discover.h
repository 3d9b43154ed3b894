/*
 * ferry_discover: the brokers behind one name (--discover NAME).
 *
 * libzmq connects only to the first address a name resolves to, so a name
 * that stands for several brokers (Docker Swarm's tasks.broker, a
 * Kubernetes headless service) is resolved here, to every address, and
 * again every few seconds by the processes that follow it: each address is
 * one broker, on the ports of the process's endpoint flags.
 *
 * Tests replace DNS: when FERRY_DISCOVER_HOSTS names a file, its lines
 * "NAME ADDRESS" (# comments) are the only answers, read again at every
 * resolve, so a test changes what a name resolves to by rewriting the file.
 */
#ifndef FERRY_DISCOVER_H
#define FERRY_DISCOVER_H

#include "ferry_brokers.h"
#include "ferry_err.h"

#include <stddef.h>

#define FERRY_DISCOVER_ADDR_MAX 64       /* an address as text, IPv6 in [] */
#define FERRY_DISCOVER_INTERVAL_MS 3000  /* how often the processes resolve again */

typedef struct {
    size_t n;
    char addr[FERRY_BROKERS_MAX][FERRY_DISCOVER_ADDR_MAX]; /* sorted, no duplicates */
} ferry_addrs;

/*
 * Every address name resolves to (getaddrinfo, IPv4 and IPv6), at most
 * FERRY_BROKERS_MAX. A name that does not resolve gives none: FERRY_OK with
 * n = 0 (the brokers may not be up yet); FERRY_EUSAGE only for an empty
 * name.
 */
ferry_err ferry_discover_resolve(const char *name, ferry_addrs *out);

/*
 * "tcp://ADDR:PORT" into out, PORT being the one of endpoint (what follows
 * its last ':'). FERRY_EUSAGE when endpoint has no port or out is too small.
 */
ferry_err ferry_discover_endpoint(const char *addr, const char *endpoint, char *out,
                                  size_t len);

/* How often to resolve again: FERRY_DISCOVER_INTERVAL_MS, or $FERRY_DISCOVER_MS
 * (10 to 3600000; for tests, which cannot wait seconds per change). */
int ferry_discover_interval_ms(void);

/* 1 when a holds addr. */
int ferry_addrs_has(const ferry_addrs *a, const char *addr);

#endif

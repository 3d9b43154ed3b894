/*
 * ferry_discover: getaddrinfo for every address of a name, or the test
 * double's file (ferry_discover.h).
 */
#include "ferry_discover.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static int by_text(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void add(ferry_addrs *out, const char *addr)
{
    if (out->n == FERRY_BROKERS_MAX || ferry_addrs_has(out, addr) || !*addr ||
        strlen(addr) >= FERRY_DISCOVER_ADDR_MAX)
        return;
    snprintf(out->addr[out->n++], FERRY_DISCOVER_ADDR_MAX, "%s", addr);
}

int ferry_discover_interval_ms(void)
{
    const char *v = getenv("FERRY_DISCOVER_MS");
    long ms = v && *v ? strtol(v, NULL, 10) : 0;
    return ms >= 10 && ms <= 3600000 ? (int)ms : FERRY_DISCOVER_INTERVAL_MS;
}

int ferry_addrs_has(const ferry_addrs *a, const char *addr)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->addr[i], addr) == 0)
            return 1;
    return 0;
}

/* The test double: lines "NAME ADDRESS" of the file at path. */
static void from_file(const char *path, const char *name, ferry_addrs *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[256], n[128], a[FERRY_DISCOVER_ADDR_MAX];
    while (fgets(line, sizeof line, f))
        if (line[0] != '#' && sscanf(line, "%127s %63s", n, a) == 2 && strcmp(n, name) == 0)
            add(out, a);
    fclose(f);
}

ferry_err ferry_discover_resolve(const char *name, ferry_addrs *out)
{
    out->n = 0;
    if (!name || !*name)
        return FERRY_EUSAGE;
    const char *hosts = getenv("FERRY_DISCOVER_HOSTS");
    if (hosts && *hosts) {
        from_file(hosts, name, out);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *res = NULL;
        if (getaddrinfo(name, NULL, &hints, &res) != 0)
            return FERRY_OK; /* not there (yet): no brokers */
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            char text[INET6_ADDRSTRLEN], addr[FERRY_DISCOVER_ADDR_MAX];
            if (ai->ai_family == AF_INET &&
                inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, text,
                          sizeof text))
                add(out, text);
            else if (ai->ai_family == AF_INET6 &&
                     inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, text,
                               sizeof text)) {
                snprintf(addr, sizeof addr, "[%s]", text);
                add(out, addr);
            }
        }
        freeaddrinfo(res);
    }
    qsort(out->addr, out->n, sizeof out->addr[0], by_text);
    return FERRY_OK;
}

ferry_err ferry_discover_endpoint(const char *addr, const char *endpoint, char *out, size_t len)
{
    const char *colon = endpoint ? strrchr(endpoint, ':') : NULL;
    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return FERRY_EUSAGE;
    int n = snprintf(out, len, "tcp://%s:%s", addr, colon + 1);
    return n > 0 && (size_t)n < len ? FERRY_OK : FERRY_EUSAGE;
}

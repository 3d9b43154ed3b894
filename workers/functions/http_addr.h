/*
 * http_addr: which addresses http.get and http.request may connect to.
 *
 * A script must not reach the worker's own host or its internal network
 * through the worker (SSRF): by default loopback, private, link-local (cloud
 * metadata included), unique-local, shared (carrier-grade NAT), multicast,
 * broadcast and the other special-purpose ranges are refused. An allow list
 * of CIDR ranges (--http-allow) opens some of them again.
 *
 * The judgement is on the address a socket is about to connect to (http.c
 * calls it from curl's CURLOPT_OPENSOCKETFUNCTION), never on the URL's text:
 * names that resolve to internal addresses, DNS rebinding, redirects and
 * every address of a name tried in turn are all judged the same way.
 *
 * Addresses are handled as 16 bytes: IPv6 as is, IPv4 as the IPv4-mapped
 * IPv6 address ::ffff:a.b.c.d, so that both spellings of one IPv4 address
 * are judged alike (and an IPv6 range holding ::ffff:0:0/96, such as ::/0,
 * allows IPv4 addresses too). Addresses that carry an IPv4 address a gateway would
 * connect to (NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that IPv4
 * address.
 */
#ifndef WORKER_HTTP_ADDR_H
#define WORKER_HTTP_ADDR_H

#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct {
    uint8_t addr[16]; /* IPv6, or IPv4 as ::ffff:a.b.c.d; no bits set past `bits` */
    unsigned bits;    /* prefix length, 0..128 (an IPv4 /n is 96 + n) */
} http_addr_range;

/* The ranges --http-allow opens. Zero-initialised: nothing allowed. */
typedef struct {
    http_addr_range *allow; /* owned */
    size_t nallow;
} http_addr_policy;

/*
 * Parses one range: "a.b.c.d/n" (n 0..32), "x:y::z/n" (n 0..128), or a bare
 * address (a /32 or /128). Bits set past the prefix are an error (a typo
 * such as 10.1.0.0/8 would open more than meant). FERRY_OK, or FERRY_EUSAGE
 * with a short static reason in *why.
 */
ferry_err http_addr_range_parse(const char *s, size_t len, http_addr_range *out, const char **why);

/*
 * Parses a comma-separated list of ranges into p (zeroed first; spaces
 * around entries are ignored; "" allows nothing). On a bad entry returns
 * FERRY_EUSAGE with a message naming it in err, and p stays empty.
 */
ferry_err http_addr_policy_parse(http_addr_policy *p, const char *list, char *err, size_t errlen);

/* Frees p's list; p is empty afterwards. */
void http_addr_policy_fini(http_addr_policy *p);

/* Why addr (16 bytes, as above) is special ("loopback", "private", ...), or NULL for a
 * public address. Static strings. */
const char *http_addr_class(const uint8_t addr[16]);

/*
 * Why a connection to sa (len bytes) is refused under p, or NULL when it may
 * go ahead. Anything but AF_INET and AF_INET6 is refused. Static strings.
 */
const char *http_addr_refused(const http_addr_policy *p, const struct sockaddr *sa, size_t len);

#endif

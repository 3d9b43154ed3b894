/*
 * http_addr: the address policy of the http functions (see http_addr.h).
 *
 * The special-purpose ranges come from the IANA IPv4 and IPv6
 * special-purpose address registries (RFC 6890 and its updates), as bytes so
 * that nothing is parsed at run time. The first matching range names the
 * reason, so a narrower range goes before a wider one it lies in.
 */
#include "http_addr.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first 12 bytes of an IPv4-mapped IPv6 address, ::ffff:0:0/96. */
static const uint8_t v4_mapped[12] = {[10] = 0xff, [11] = 0xff};

/* An IPv4 range as its IPv4-mapped IPv6 range. */
#define V4(a, b, c, d, n)                                                                          \
    {                                                                                              \
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d}, 96 + (n)                           \
    }

static const struct {
    http_addr_range range;
    const char *why;
} special[] = {
    {V4(0, 0, 0, 0, 8), "unspecified"}, /* "this network": 0.0.0.0 reaches the local host */
    {V4(10, 0, 0, 0, 8), "private"},
    {V4(100, 64, 0, 0, 10), "shared address space, carrier-grade NAT"},
    {V4(127, 0, 0, 0, 8), "loopback"},
    {V4(169, 254, 0, 0, 16), "link-local"}, /* cloud metadata: 169.254.169.254 */
    {V4(172, 16, 0, 0, 12), "private"},
    {V4(192, 0, 0, 0, 24), "IETF protocol assignments"},
    {V4(192, 0, 2, 0, 24), "documentation"},
    {V4(192, 88, 99, 0, 24), "6to4 relay anycast"},
    {V4(192, 168, 0, 0, 16), "private"},
    {V4(198, 18, 0, 0, 15), "benchmarking"},
    {V4(198, 51, 100, 0, 24), "documentation"},
    {V4(203, 0, 113, 0, 24), "documentation"},
    {V4(224, 0, 0, 0, 4), "multicast"},
    {V4(255, 255, 255, 255, 32), "broadcast"},
    {V4(240, 0, 0, 0, 4), "reserved"},
    {{{0}, 128}, "unspecified"},                            /* :: */
    {{{[15] = 1}, 128}, "loopback"},                        /* ::1 */
    {{{0}, 96}, "IPv4-compatible"},                         /* ::a.b.c.d */
    {{{0, 0x64, 0xff, 0x9b, 0, 1}, 48}, "local-use NAT64"}, /* 64:ff9b:1::/48 */
    {{{0x01, 0x00}, 64}, "discard-only"},                   /* 100::/64 */
    {{{0x20, 0x01, 0x0d, 0xb8}, 32}, "documentation"},      /* 2001:db8::/32 */
    {{{0xfc}, 7}, "unique-local"},                          /* fc00::/7 */
    {{{0xfe, 0x80}, 10}, "link-local"},                     /* fe80::/10 */
    {{{0xfe, 0xc0}, 10}, "site-local"},                     /* fec0::/10, deprecated */
    {{{0xff}, 8}, "multicast"},                             /* ff00::/8 */
};

/* IPv6 ranges whose addresses carry the IPv4 address a gateway connects to. */
static const struct {
    http_addr_range range;
    size_t at; /* offset of the IPv4 address */
} embedding[] = {
    {{{0, 0x64, 0xff, 0x9b}, 96}, 12}, /* NAT64 well-known prefix 64:ff9b::/96 */
    {{{0x20, 0x02}, 16}, 2},           /* 6to4 2002:a.b.c.d::/48 */
};

static int in_range(const http_addr_range *r, const uint8_t addr[16])
{
    assert(r->bits <= 128);
    unsigned full = r->bits / 8, rest = r->bits % 8;
    if (memcmp(r->addr, addr, full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (r->addr[full] & mask) == (addr[full] & mask);
}

/* The address a connection to addr ends up at: the embedded IPv4 address, or addr. */
static void effective(const uint8_t addr[16], uint8_t out[16])
{
    memcpy(out, addr, 16);
    for (size_t i = 0; i < sizeof embedding / sizeof embedding[0]; i++)
        if (in_range(&embedding[i].range, addr)) {
            memcpy(out, v4_mapped, 12);
            memcpy(out + 12, addr + embedding[i].at, 4);
            return;
        }
}

const char *http_addr_class(const uint8_t addr[16])
{
    uint8_t eff[16];
    effective(addr, eff);
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (in_range(&special[i].range, eff))
            return special[i].why;
    return NULL;
}

static int allowed(const http_addr_policy *p, const uint8_t addr[16])
{
    for (size_t i = 0; i < p->nallow; i++)
        if (in_range(&p->allow[i], addr))
            return 1;
    return 0;
}

const char *http_addr_refused(const http_addr_policy *p, const struct sockaddr *sa, size_t len)
{
    assert(p && sa);
    uint8_t addr[16];
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof in);
        memcpy(addr, v4_mapped, 12);
        memcpy(addr + 12, &in.sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof in6);
        memcpy(addr, &in6.sin6_addr, 16);
    } else {
        return "not an IP address";
    }
    uint8_t eff[16];
    effective(addr, eff);
    if (allowed(p, addr) || allowed(p, eff))
        return NULL;
    return http_addr_class(addr);
}

/* ---- parsing ---------------------------------------------------------------- */

ferry_err http_addr_range_parse(const char *s, size_t len, http_addr_range *out, const char **why)
{
    char text[64]; /* an IPv6 address is at most 45 characters */
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    if (alen == 0) {
        *why = "no address";
        return FERRY_EUSAGE;
    }
    if (alen >= sizeof text || memchr(s, '\0', len)) {
        *why = "not an IPv4 or IPv6 address";
        return FERRY_EUSAGE;
    }
    memcpy(text, s, alen);
    text[alen] = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (memchr(text, ':', alen)) {
        if (inet_pton(AF_INET6, text, out->addr) != 1) {
            *why = "not an IPv6 address";
            return FERRY_EUSAGE;
        }
        max = 128;
    } else {
        /* inet_pton takes only four decimal parts: no "10.1" or octal "010.0.0.1". */
        memcpy(out->addr, v4_mapped, 12);
        if (inet_pton(AF_INET, text, out->addr + 12) != 1) {
            *why = "not an IPv4 address";
            return FERRY_EUSAGE;
        }
        max = 32;
    }
    unsigned bits = max;
    if (slash) {
        const char *d = slash + 1, *end = s + len;
        if (d == end || end - d > 3) {
            *why = "prefix length expected after '/'";
            return FERRY_EUSAGE;
        }
        bits = 0;
        for (; d < end; d++) {
            if (*d < '0' || *d > '9') {
                *why = "prefix length expected after '/'";
                return FERRY_EUSAGE;
            }
            bits = bits * 10 + (unsigned)(*d - '0');
        }
        if (bits > max) {
            *why = max == 32 ? "prefix length over 32" : "prefix length over 128";
            return FERRY_EUSAGE;
        }
    }
    out->bits = bits + (128 - max);
    for (unsigned i = out->bits; i < 128; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8))) {
            *why = "address has bits set past the prefix length";
            return FERRY_EUSAGE;
        }
    return FERRY_OK;
}

ferry_err http_addr_policy_parse(http_addr_policy *p, const char *list, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (list[strspn(list, " \t")] == '\0')
        return FERRY_OK; /* "" or blanks: nothing allowed */
    size_t n = 1;
    for (const char *c = list; *c; c++)
        n += *c == ',';
    for (const char *s = list;;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *e = s;
        while (len && (*e == ' ' || *e == '\t')) {
            e++;
            len--;
        }
        while (len && (e[len - 1] == ' ' || e[len - 1] == '\t'))
            len--;
        const char *why = "empty entry";
        http_addr_range r;
        if (len == 0 || http_addr_range_parse(e, len, &r, &why) != FERRY_OK) {
            snprintf(err, errlen, "bad entry '%.*s' (%s)", (int)(len > 64 ? 64 : len), e, why);
            http_addr_policy_fini(p);
            return FERRY_EUSAGE;
        }
        if (!p->allow) {
            p->allow = calloc(n, sizeof *p->allow);
            if (!p->allow) {
                snprintf(err, errlen, "out of memory");
                return FERRY_ENOMEM;
            }
        }
        assert(p->nallow < n);
        p->allow[p->nallow++] = r;
        if (!end)
            return FERRY_OK;
        s = end + 1;
    }
}

void http_addr_policy_fini(http_addr_policy *p)
{
    free(p->allow);
    p->allow = NULL;
    p->nallow = 0;
}

/*
 * worker_http_addr_test: the address policy of http.get and http.request
 * (workers/functions/http_addr.c): which addresses are refused by default and
 * why, what an allow list opens, and the --http-allow parser's errors.
 */
#include "functions/http_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

/* Why a connection to text (an IPv4 or IPv6 address) is refused under p, or NULL. */
static const char *refused(const http_addr_policy *p, const char *text)
{
    if (strchr(text, ':')) {
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
        if (inet_pton(AF_INET6, text, &a.sin6_addr) != 1)
            fail_msg("bad test address %s", text);
        return http_addr_refused(p, (struct sockaddr *)&a, sizeof a);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};
    if (inet_pton(AF_INET, text, &a.sin_addr) != 1)
        fail_msg("bad test address %s", text);
    return http_addr_refused(p, (struct sockaddr *)&a, sizeof a);
}

static void test_refused_by_default(void **state)
{
    (void)state;
    static const struct {
        const char *addr, *why;
    } cases[] = {
        {"127.0.0.1", "loopback"},
        {"127.255.255.254", "loopback"},
        {"0.0.0.0", "unspecified"},
        {"0.1.2.3", "unspecified"},
        {"10.0.0.1", "private"},
        {"10.255.255.255", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"192.168.1.1", "private"},
        {"169.254.169.254", "link-local"},
        {"100.64.0.1", "shared address space, carrier-grade NAT"},
        {"100.127.255.255", "shared address space, carrier-grade NAT"},
        {"192.0.0.170", "IETF protocol assignments"},
        {"198.18.0.1", "benchmarking"},
        {"198.19.255.255", "benchmarking"},
        {"192.0.2.1", "documentation"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"255.255.255.255", "broadcast"},
        {"240.0.0.1", "reserved"},
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"fe80::1", "link-local"},
        {"febf:ffff::1", "link-local"},
        {"fec0::1", "site-local"},
        {"fc00::1", "unique-local"},
        {"fd12:3456::1", "unique-local"},
        {"ff02::1", "multicast"},
        {"2001:db8::1", "documentation"},
        {"100::1", "discard-only"},
        {"64:ff9b:1::a00:1", "local-use NAT64"},
        /* IPv4-mapped: the IPv4 address inside is what the socket reaches. */
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.0.0.1", "private"},
        {"::ffff:169.254.169.254", "link-local"},
        {"::ffff:0.0.0.0", "unspecified"},
        /* IPv4-compatible (deprecated): refused whatever the IPv4 part. */
        {"::127.0.0.1", "IPv4-compatible"},
        {"::8.8.8.8", "IPv4-compatible"},
        /* NAT64 and 6to4 gateways connect to the IPv4 address inside. */
        {"64:ff9b::7f00:1", "loopback"},
        {"64:ff9b::a9fe:a9fe", "link-local"},
        {"2002:7f00:1::1", "loopback"},
        {"2002:c0a8:101::1", "private"},
    };
    http_addr_policy none = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = refused(&none, cases[i].addr);
        if (!why || strcmp(why, cases[i].why) != 0)
            fail_msg("%s: want refused as %s, got %s", cases[i].addr, cases[i].why,
                     why ? why : "allowed");
    }
}

static void test_public_addresses_pass(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "8.8.8.8",         "1.1.1.1",          "9.255.255.255",   "11.0.0.0",
        "126.255.255.255", "128.0.0.0",        "172.15.255.255",  "172.32.0.0",
        "100.63.255.255",  "100.128.0.0",      "169.253.255.255", "169.255.0.0",
        "192.167.255.255", "192.169.0.0",      "198.17.255.255",  "198.20.0.0",
        "223.255.255.255", "1.0.0.0",          "2606:4700::1111", "2001:4860:4860::8888",
        "::ffff:8.8.8.8",  "64:ff9b::808:808", "2002:808:808::1", "::2:0:0:1",
    };
    http_addr_policy none = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = refused(&none, cases[i]);
        if (why)
            fail_msg("%s: want allowed, got refused as %s", cases[i], why);
    }
}

static void test_not_ip_is_refused(void **state)
{
    (void)state;
    http_addr_policy all;
    char err[128];
    assert_int_equal(http_addr_policy_parse(&all, "0.0.0.0/0,::/0", err, sizeof err), FERRY_OK);
    struct sockaddr_un un = {.sun_family = AF_UNIX, .sun_path = "/tmp/x"};
    assert_string_equal(http_addr_refused(&all, (struct sockaddr *)&un, sizeof un),
                        "not an IP address");
    /* A length too short for its family is not read past. */
    struct sockaddr_in in = {.sin_family = AF_INET};
    assert_string_equal(http_addr_refused(&all, (struct sockaddr *)&in, 4), "not an IP address");
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    assert_string_equal(http_addr_refused(&all, (struct sockaddr *)&in6, sizeof in),
                        "not an IP address");
    http_addr_policy_fini(&all);
}

static void test_allow_list_opens_ranges(void **state)
{
    (void)state;
    http_addr_policy p;
    char err[128];
    assert_int_equal(http_addr_policy_parse(&p, "127.0.0.1/32", err, sizeof err), FERRY_OK);
    assert_null(refused(&p, "127.0.0.1"));
    assert_null(refused(&p, "::ffff:127.0.0.1")); /* the same address, spelled as IPv6 */
    assert_string_equal(refused(&p, "127.0.0.2"), "loopback");
    assert_string_equal(refused(&p, "::1"), "loopback");
    assert_null(refused(&p, "8.8.8.8"));
    http_addr_policy_fini(&p);
    assert_int_equal(p.nallow, 0);

    assert_int_equal(http_addr_policy_parse(&p, " 10.0.0.0/8 , fd00::/8,::1", err, sizeof err),
                     FERRY_OK);
    assert_int_equal(p.nallow, 3);
    assert_null(refused(&p, "10.255.0.1"));
    assert_null(refused(&p, "fd00::5"));
    assert_null(refused(&p, "::1"));
    assert_string_equal(refused(&p, "fc00::1"), "unique-local");
    assert_null(refused(&p, "11.0.0.0"));
    assert_string_equal(refused(&p, "192.168.0.1"), "private");
    http_addr_policy_fini(&p);

    /* The IPv4 range also opens the NAT64 spelling of its addresses. */
    assert_int_equal(http_addr_policy_parse(&p, "127.0.0.0/8", err, sizeof err), FERRY_OK);
    assert_null(refused(&p, "64:ff9b::7f00:1"));
    assert_null(refused(&p, "127.1.2.3"));
    http_addr_policy_fini(&p);

    /* Everything IPv4, nothing IPv6 but what maps to IPv4. */
    assert_int_equal(http_addr_policy_parse(&p, "0.0.0.0/0", err, sizeof err), FERRY_OK);
    assert_null(refused(&p, "0.0.0.0"));
    assert_null(refused(&p, "255.255.255.255"));
    assert_string_equal(refused(&p, "::1"), "loopback");
    http_addr_policy_fini(&p);

    /* ::/0 holds the IPv4-mapped addresses: everything. */
    assert_int_equal(http_addr_policy_parse(&p, "::/0", err, sizeof err), FERRY_OK);
    assert_null(refused(&p, "::1"));
    assert_null(refused(&p, "127.0.0.1"));
    http_addr_policy_fini(&p);
}

static void test_parse_ranges(void **state)
{
    (void)state;
    http_addr_range r;
    const char *why = NULL;
    assert_int_equal(http_addr_range_parse("10.0.0.0/8", 10, &r, &why), FERRY_OK);
    assert_int_equal(r.bits, 104);
    assert_int_equal(r.addr[10], 0xff);
    assert_int_equal(r.addr[12], 10);
    assert_int_equal(http_addr_range_parse("192.168.1.7", 11, &r, &why), FERRY_OK);
    assert_int_equal(r.bits, 128);
    assert_int_equal(http_addr_range_parse("fe80::/10", 9, &r, &why), FERRY_OK);
    assert_int_equal(r.bits, 10);
    assert_int_equal(r.addr[0], 0xfe);
    assert_int_equal(r.addr[1], 0x80);
    assert_int_equal(http_addr_range_parse("::/0", 4, &r, &why), FERRY_OK);
    assert_int_equal(r.bits, 0);
    /* Only len bytes count. */
    assert_int_equal(http_addr_range_parse("10.0.0.0/8,junk", 10, &r, &why), FERRY_OK);

    http_addr_policy p;
    char err[128];
    assert_int_equal(http_addr_policy_parse(&p, "", err, sizeof err), FERRY_OK);
    assert_int_equal(p.nallow, 0);
    assert_int_equal(http_addr_policy_parse(&p, "  ", err, sizeof err), FERRY_OK);
    assert_int_equal(p.nallow, 0);
}

static void test_parse_errors_name_the_entry(void **state)
{
    (void)state;
    static const struct {
        const char *list, *message;
    } cases[] = {
        {"10.0.0.0/33", "bad entry '10.0.0.0/33' (prefix length over 32)"},
        {"::/129", "bad entry '::/129' (prefix length over 128)"},
        {"10.1.0.0/8", "bad entry '10.1.0.0/8' (address has bits set past the prefix length)"},
        {"127.0.0.1/32,fe80::1/10", "bad entry 'fe80::1/10' (address has bits"},
        {"10.0.0", "bad entry '10.0.0' (not an IPv4 address)"},
        {"010.0.0.1", "bad entry '010.0.0.1' (not an IPv4 address)"},
        {"localhost", "bad entry 'localhost' (not an IPv4 address)"},
        {"fe80::1%eth0", "bad entry 'fe80::1%eth0' (not an IPv6 address)"},
        {"10.0.0.0/", "bad entry '10.0.0.0/' (prefix length expected after '/')"},
        {"10.0.0.0/-1", "bad entry '10.0.0.0/-1' (prefix length expected after '/')"},
        {"10.0.0.0/8a", "bad entry '10.0.0.0/8a' (prefix length expected after '/')"},
        {"10.0.0.0/0008", "bad entry '10.0.0.0/0008' (prefix length expected after '/')"},
        {"/8", "bad entry '/8' (no address)"},
        {"10.0.0.0/8,,::1", "bad entry '' (empty entry)"},
        {"10.0.0.0/8,", "bad entry '' (empty entry)"},
        {"10.0.0.0/8 192.168.0.0/16", "bad entry '10.0.0.0/8 192.168.0.0/16' (prefix length"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http_addr_policy p;
        char err[128] = "";
        assert_int_equal(http_addr_policy_parse(&p, cases[i].list, err, sizeof err), FERRY_EUSAGE);
        if (strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
            fail_msg("'%s': want '%s', got '%s'", cases[i].list, cases[i].message, err);
        /* Nothing is half-allowed after a bad entry. */
        assert_null(p.allow);
        assert_int_equal(p.nallow, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_by_default),
        cmocka_unit_test(test_public_addresses_pass),
        cmocka_unit_test(test_not_ip_is_refused),
        cmocka_unit_test(test_allow_list_opens_ranges),
        cmocka_unit_test(test_parse_ranges),
        cmocka_unit_test(test_parse_errors_name_the_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * lib_brokers_test: endpoint lists and per-broker keys (lib/ferry_brokers.h).
 */
#include "ferry_brokers.h"
#include "ferry_discover.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_one_and_several(void **state)
{
    (void)state;
    char err[256];
    ferry_list l;
    assert_int_equal(ferry_list_split("tcp://a:1", "x", &l, err, sizeof err), FERRY_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.item[0], "tcp://a:1");
    ferry_list_fini(&l);
    assert_int_equal(ferry_list_split("ipc:///t/a, ipc:///t/b ,tcp://c:3", "x", &l, err,
                                      sizeof err),
                     FERRY_OK);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.item[0], "ipc:///t/a");
    assert_string_equal(l.item[1], "ipc:///t/b");
    assert_string_equal(l.item[2], "tcp://c:3");
    ferry_list_fini(&l);
    assert_int_equal(l.n, 0);
}

static void test_bad_lists(void **state)
{
    (void)state;
    char err[256];
    ferry_list l;
    assert_int_equal(ferry_list_split("", "--commands", &l, err, sizeof err), FERRY_EUSAGE);
    assert_non_null(strstr(err, "--commands"));
    assert_int_equal(ferry_list_split("a,,b", "x", &l, err, sizeof err), FERRY_EUSAGE);
    assert_int_equal(ferry_list_split("a,", "x", &l, err, sizeof err), FERRY_EUSAGE);
    assert_int_equal(l.n, 0);
    char many[256] = "";
    for (int i = 0; i <= FERRY_BROKERS_MAX; i++)
        strcat(many, i ? ",e" : "e");
    assert_int_equal(ferry_list_split(many, "x", &l, err, sizeof err), FERRY_EUSAGE);
}

static void test_keys(void **state)
{
    (void)state;
    char err[256];
    ferry_curve c[3];
    /* No keys: no CURVE towards any broker. */
    assert_int_equal(ferry_curve_clients(c, 3, NULL, NULL, err, sizeof err), FERRY_OK);
    assert_int_equal(c[0].on + c[1].on + c[2].on, 0);
    /* Two keys for three brokers: refused before any file is read. */
    assert_int_equal(ferry_curve_clients(c, 3, "/nonexistent/me", "/x/a,/x/b", err, sizeof err),
                     FERRY_EUSAGE);
    assert_non_null(strstr(err, "2 keys for 3 brokers"));
    /* A key of our own without the broker's is the usage error it always was. */
    assert_int_equal(ferry_curve_clients(c, 2, "/nonexistent/me", NULL, err, sizeof err),
                     FERRY_EUSAGE);
}

static void test_discover(void **state)
{
    (void)state;
    ferry_addrs a;
    /* The real resolver: localhost is loopback, sorted and without duplicates. */
    unsetenv("FERRY_DISCOVER_HOSTS");
    assert_int_equal(ferry_discover_resolve("localhost", &a), FERRY_OK);
    assert_true(a.n >= 1);
    assert_true(ferry_addrs_has(&a, "127.0.0.1") || ferry_addrs_has(&a, "[::1]"));
    assert_int_equal(ferry_discover_resolve("no-such-host.invalid", &a), FERRY_OK);
    assert_int_equal(a.n, 0);
    assert_int_equal(ferry_discover_resolve("", &a), FERRY_EUSAGE);
    /* The test double answers instead, re-read each time. */
    char path[] = "/tmp/ferry-discover-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("# comment\nsvc 10.0.0.2\nother 10.9.9.9\nsvc 10.0.0.1\nsvc 10.0.0.2\n", f);
    fclose(f);
    setenv("FERRY_DISCOVER_HOSTS", path, 1);
    assert_int_equal(ferry_discover_resolve("svc", &a), FERRY_OK);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.addr[0], "10.0.0.1");
    assert_string_equal(a.addr[1], "10.0.0.2");
    unlink(path);
    assert_int_equal(ferry_discover_resolve("svc", &a), FERRY_OK);
    assert_int_equal(a.n, 0);
    unsetenv("FERRY_DISCOVER_HOSTS");
    char ep[64];
    assert_int_equal(ferry_discover_endpoint("10.0.0.1", "tcp://localhost:5555", ep, sizeof ep),
                     FERRY_OK);
    assert_string_equal(ep, "tcp://10.0.0.1:5555");
    assert_int_equal(ferry_discover_endpoint("[::1]", "tcp://x:7", ep, sizeof ep), FERRY_OK);
    assert_string_equal(ep, "tcp://[::1]:7");
    assert_int_equal(ferry_discover_endpoint("10.0.0.1", "ipc:///tmp/x", ep, sizeof ep),
                     FERRY_EUSAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_and_several),
        cmocka_unit_test(test_bad_lists),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_discover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

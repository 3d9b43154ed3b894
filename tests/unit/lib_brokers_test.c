/*
 * lib_brokers_test: endpoint lists and per-broker keys (lib/ferry_brokers.h).
 */
#include "ferry_brokers.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_and_several),
        cmocka_unit_test(test_bad_lists),
        cmocka_unit_test(test_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

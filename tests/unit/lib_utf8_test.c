/* lib_utf8_test: strict UTF-8 validation and scrubbing. */
#include "ferry_utf8.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_strict_utf8(void **state)
{
    (void)state;
    assert_true(ferry_utf8_valid("", 0));
    assert_true(ferry_utf8_valid("echo", 4));
    assert_true(ferry_utf8_valid("caf\xc3\xa9 \xf0\x9f\x98\x80", 10));
    assert_false(ferry_utf8_valid("\xff", 1));
    assert_false(ferry_utf8_valid("\xc3", 1));             /* cut short */
    assert_false(ferry_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(ferry_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(ferry_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    char s[] = "a\xff"
               "b\xc3\xa9\xc3";
    ferry_utf8_scrub(s, strlen(s));
    assert_string_equal(s, "a?b\xc3\xa9?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

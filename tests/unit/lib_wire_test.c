/*
 * lib_wire_test: the wire rules of lib/ferry_wire that are not the codec's
 * (the codec has lib_codec_*_test): one rule for function names, which the
 * broker, the engine and the worker API all apply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_wire.h"

#include <string.h>

/* One rule for function names: 1 to 255 bytes of UTF-8 without zero bytes. */
static void test_function_name_rule(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'n', sizeof name);
    assert_true(ferry_wire_function_name_ok("http.get", 8));
    assert_true(ferry_wire_function_name_ok(name, 1));
    assert_true(ferry_wire_function_name_ok(name, FERRY_FUNCTION_NAME_MAX));
    assert_false(ferry_wire_function_name_ok(name, FERRY_FUNCTION_NAME_MAX + 1));
    assert_false(ferry_wire_function_name_ok(name, 0));
    assert_false(ferry_wire_function_name_ok(NULL, 0));
    assert_false(ferry_wire_function_name_ok("a\0b", 3));
    assert_false(ferry_wire_function_name_ok("bad\xff", 4));
    assert_false(ferry_wire_function_name_ok("\xc0\xaf", 2)); /* overlong */
    assert_true(ferry_wire_function_name_ok("caf\xc3\xa9", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_function_name_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

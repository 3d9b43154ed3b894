/*
 * lib_value_read_test: the value readers and the result builder of
 * ferry/value.h (ferry_value_get_*, ferry_table_*), on trees built as a
 * decoder would and on hand-built ones.
 */
#include "ferry_value.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* {10, 20, name = "n\0m", [5] = true, [2.0 float key] = "two", deep = {x = 1.0}} */
static Ferry__Value *sample(void)
{
    Ferry__Value *t = ferry_value_table();
    assert_int_equal(ferry_table_append(t, ferry_value_int(10)), FERRY_OK);
    assert_int_equal(ferry_table_append(t, ferry_value_int(20)), FERRY_OK);
    assert_int_equal(ferry_table_set_field(t, "name", ferry_value_string("n\0m", 3)), FERRY_OK);
    assert_int_equal(ferry_table_set(t, ferry_value_int(5), ferry_value_bool(1)), FERRY_OK);
    assert_int_equal(ferry_table_set(t, ferry_value_float(7.0), ferry_value_cstring("seven")),
                     FERRY_OK);
    Ferry__Value *deep = ferry_value_table();
    assert_int_equal(ferry_table_set_field(deep, "x", ferry_value_float(1.0)), FERRY_OK);
    assert_int_equal(ferry_table_set_field(t, "deep", deep), FERRY_OK);
    return t;
}

static void test_typed_reads(void **state)
{
    (void)state;
    int64_t i = 99;
    double d = 0;
    const char *s;
    size_t len;
    int b;
    Ferry__Value *v = ferry_value_float(3.0);
    assert_int_equal(ferry_value_get_int(v, &i), FERRY_OK);
    assert_int_equal(i, 3);
    ferry_value_free(v);
    v = ferry_value_float(3.5);
    i = 99;
    assert_int_equal(ferry_value_get_int(v, &i), FERRY_EBADARG);
    assert_int_equal(i, 99); /* untouched */
    assert_int_equal(ferry_value_get_number(v, &d), FERRY_OK);
    assert_true(d == 3.5);
    ferry_value_free(v);
    v = ferry_value_float(NAN);
    assert_int_equal(ferry_value_get_int(v, &i), FERRY_EBADARG);
    ferry_value_free(v);
    v = ferry_value_float(1e300);
    assert_int_equal(ferry_value_get_int(v, &i), FERRY_EBADARG);
    ferry_value_free(v);
    v = ferry_value_string("", 0);
    assert_int_equal(ferry_value_get_string(v, &s, &len), FERRY_OK);
    assert_int_equal(len, 0);
    assert_non_null(s);
    assert_int_equal(ferry_value_get_bool(v, &b), FERRY_EBADARG);
    assert_false(ferry_value_is_nil(v));
    ferry_value_free(v);
    v = ferry_value_nil();
    assert_true(ferry_value_is_nil(v));
    assert_int_equal(ferry_value_get_number(v, &d), FERRY_EBADARG);
    ferry_value_free(v);
    assert_true(ferry_value_is_nil(NULL));
    assert_int_equal(ferry_value_get_string(NULL, &s, &len), FERRY_EBADARG);
    Ferry__Value unset = FERRY__VALUE__INIT;
    assert_true(ferry_value_is_nil(&unset));
}

static void test_table_reads(void **state)
{
    (void)state;
    Ferry__Value *t = sample();
    /* Through the wire and back, as a handler sees it. */
    size_t n = ferry__value__get_packed_size(t);
    uint8_t *buf = malloc(n);
    ferry__value__pack(t, buf);
    Ferry__Value *d = ferry__value__unpack(NULL, n, buf);
    free(buf);
    assert_non_null(d);
    Ferry__Value *trees[2] = {t, d};
    for (int k = 0; k < 2; k++) {
        Ferry__Value *v = trees[k];
        const char *s;
        size_t len;
        int64_t i;
        assert_int_equal(ferry_table_len(v), 2);
        assert_int_equal(ferry_value_get_int(ferry_table_geti(v, 1), &i), FERRY_OK);
        assert_int_equal(i, 10);
        assert_int_equal(ferry_value_get_int(ferry_table_geti(v, 2), &i), FERRY_OK);
        assert_int_equal(i, 20);
        assert_null(ferry_table_geti(v, 3));
        assert_null(ferry_table_geti(v, 0));
        assert_true(ferry_table_geti(v, 5)->boolean);
        /* A float key with an integer value is that integer, as in Lua. */
        assert_non_null(ferry_table_geti(v, 7));
        assert_int_equal(ferry_value_get_string(ferry_table_get(v, "name"), &s, &len), FERRY_OK);
        assert_int_equal(len, 3);
        assert_memory_equal(s, "n\0m", 3);
        assert_null(ferry_table_get(v, "nam"));
        assert_null(ferry_table_get(v, "missing"));
        double x;
        assert_int_equal(
            ferry_value_get_number(ferry_table_get(ferry_table_get(v, "deep"), "x"), &x), FERRY_OK);
        assert_true(x == 1.0);
        /* The walk sees the hash part only, each field once. */
        size_t pos = 0, count = 0;
        const Ferry__Value *key, *val;
        while (ferry_table_next(v, &pos, &key, &val))
            count++;
        assert_int_equal(count, 4);
    }
    /* Not tables. */
    Ferry__Value *num = ferry_value_int(1);
    size_t pos = 0;
    const Ferry__Value *key, *val;
    assert_null(ferry_table_get(num, "x"));
    assert_null(ferry_table_geti(num, 1));
    assert_int_equal(ferry_table_len(num), 0);
    assert_int_equal(ferry_table_next(num, &pos, &key, &val), 0);
    assert_null(ferry_table_get(NULL, "x"));
    ferry_value_free(num);
    ferry_value_free(t);
    ferry__value__free_unpacked(d, NULL);
}

static void test_set_field_takes_ownership(void **state)
{
    (void)state;
    Ferry__Value *t = ferry_value_table();
    /* A failed constructor (NULL) is out_of_memory, and nothing leaks. */
    assert_int_equal(ferry_table_set_field(t, "x", NULL), FERRY_ENOMEM);
    assert_int_equal(ferry_table_set_field(t, "x", ferry_value_cstring("y")), FERRY_OK);
    const char *s;
    size_t len;
    assert_int_equal(ferry_value_get_string(ferry_table_get(t, "x"), &s, &len), FERRY_OK);
    assert_memory_equal(s, "y", 1);
    ferry_value_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_reads),
        cmocka_unit_test(test_table_reads),
        cmocka_unit_test(test_set_field_takes_ownership),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

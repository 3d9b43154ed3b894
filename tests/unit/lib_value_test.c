/* lib_value_test: value constructors, deep copy, equality, JSON, and protobuf round trips. */
#include "ferry_value.h"
#include "ferry_wire.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static Ferry__Value *sample(void)
{
    Ferry__Value *t = ferry_value_table();
    ferry_table_append(t, ferry_value_int(1));
    ferry_table_append(t, ferry_value_float(1.0));
    ferry_table_append(t, ferry_value_nil());
    ferry_table_append(t, ferry_value_string("z\0z", 3));
    Ferry__Value *inner = ferry_value_table();
    ferry_table_set(inner, ferry_value_cstring("k"), ferry_value_float(NAN));
    ferry_table_set(t, ferry_value_cstring("inner"), inner);
    ferry_table_set(t, ferry_value_bool(1), ferry_value_float(-INFINITY));
    return t;
}

static void test_integer_and_float_differ(void **state)
{
    (void)state;
    Ferry__Value *i = ferry_value_int(3), *f = ferry_value_float(3.0);
    assert_false(ferry_value_equal(i, f));
    assert_string_equal(ferry_value_kind(i), "integer");
    assert_string_equal(ferry_value_kind(f), "float");
    ferry_value_free(i);
    ferry_value_free(f);
}

static void test_copy_is_equal_and_independent(void **state)
{
    (void)state;
    Ferry__Value *a = sample();
    Ferry__Value *b = ferry_value_copy(a);
    assert_true(ferry_value_equal(a, b));
    b->table->array[0]->integer = 2;
    assert_false(ferry_value_equal(a, b));
    ferry_value_free(a);
    ferry_value_free(b);
}

static void test_protobuf_round_trip_is_lossless(void **state)
{
    (void)state;
    Ferry__Value *a = sample();
    size_t len = ferry__value__get_packed_size(a);
    uint8_t *buf = malloc(len);
    ferry__value__pack(a, buf);
    Ferry__Value *b = ferry__value__unpack(NULL, len, buf);
    assert_non_null(b);
    assert_true(ferry_value_equal(a, b));
    ferry_value_free(b);
    free(buf);
    ferry_value_free(a);
}

static void test_hash_order_does_not_matter(void **state)
{
    (void)state;
    Ferry__Value *a = ferry_value_table(), *b = ferry_value_table();
    ferry_table_set(a, ferry_value_cstring("x"), ferry_value_int(1));
    ferry_table_set(a, ferry_value_cstring("y"), ferry_value_int(2));
    ferry_table_set(b, ferry_value_cstring("y"), ferry_value_int(2));
    ferry_table_set(b, ferry_value_cstring("x"), ferry_value_int(1));
    assert_true(ferry_value_equal(a, b));
    ferry_value_free(b->table->hash[0]->value);
    b->table->hash[0]->value = ferry_value_int(3);
    assert_false(ferry_value_equal(a, b));
    ferry_value_free(a);
    ferry_value_free(b);
}

static void test_json(void **state)
{
    (void)state;
    ferry_buf out = FERRY_BUF_INIT;
    Ferry__Value *t = ferry_value_table();
    ferry_table_append(t, ferry_value_int(3));
    ferry_table_append(t, ferry_value_float(3.0));
    ferry_table_append(t, ferry_value_float(NAN));
    ferry_table_append(t, ferry_value_string("a\"\n\x01\xff\xc3\xa9", 7));
    ferry_table_append(t, ferry_value_nil());
    ferry_table_append(t, ferry_value_bool(0));
    assert_int_equal(ferry_value_to_json(t, &out), FERRY_OK);
    assert_string_equal(out.data, "[3,3.0,\"nan\",\"a\\\"\\n\\u0001\\u00ff\xc3\xa9\",null,false]");
    ferry_table_set(t, ferry_value_cstring("k"), ferry_value_int(1));
    ferry_buf_reset(&out);
    ferry_value_to_json(t, &out);
    assert_non_null(strstr(out.data, "\"1\":3,"));
    assert_non_null(strstr(out.data, ",\"k\":1}"));
    ferry_buf_fini(&out);
    ferry_value_free(t);
}

static void test_envelope_decode_rejects_bad_input(void **state)
{
    (void)state;
    Ferry__Envelope *env;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(ferry_envelope_decode(garbage, sizeof garbage, &env), FERRY_EPROTO);
    assert_null(env);

    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope e;
    ferry_envelope_init(&e);
    e.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    uint8_t buf[64];
    size_t len = ferry__envelope__pack(&e, buf);
    assert_int_equal(ferry_envelope_decode(buf, len, &env), FERRY_OK);
    assert_int_equal(env->body_case, FERRY__ENVELOPE__BODY_HEARTBEAT);
    ferry_envelope_free(env);

    e.version = 99;
    len = ferry__envelope__pack(&e, buf);
    assert_int_equal(ferry_envelope_decode(buf, len, &env), FERRY_EVERSION);

    ferry_envelope_init(&e); /* no body */
    len = ferry__envelope__pack(&e, buf);
    assert_int_equal(ferry_envelope_decode(buf, len, &env), FERRY_EPROTO);

    /* Every truncation of a valid message is refused or decodes; none crashes. */
    Ferry__Value *v = sample();
    Ferry__Reply r = FERRY__REPLY__INIT;
    r.values = &v;
    r.n_values = 1;
    ferry_envelope_init(&e);
    e.body_case = FERRY__ENVELOPE__BODY_REPLY;
    e.reply = &r;
    size_t full = ferry__envelope__get_packed_size(&e);
    uint8_t *big = malloc(full);
    ferry__envelope__pack(&e, big);
    for (size_t cut = 0; cut < full; cut++) {
        if (ferry_envelope_decode(big, cut, &env) == FERRY_OK)
            ferry_envelope_free(env);
    }
    free(big);
    ferry_value_free(v);
}

/* A chain of tables nested depth deep, packed as a Submit's argument. */
static uint8_t *deep_submit(int depth, size_t *len)
{
    Ferry__Value *v = ferry_value_int(1);
    for (int i = 0; i < depth; i++) {
        Ferry__Value *t = ferry_value_table();
        ferry_table_append(t, v);
        v = t;
    }
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.args = &v;
    sub.n_args = 1;
    Ferry__Envelope e;
    ferry_envelope_init(&e);
    e.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    e.submit = &sub;
    *len = ferry__envelope__get_packed_size(&e);
    uint8_t *buf = malloc(*len);
    ferry__envelope__pack(&e, buf);
    ferry_value_free(v);
    return buf;
}

static void test_envelope_decode_bounds_nesting(void **state)
{
    (void)state;
    Ferry__Envelope *env;
    size_t len;
    uint8_t *ok = deep_submit(60, &len); /* 2 levels per table: 122 deep */
    assert_int_equal(ferry_envelope_decode(ok, len, &env), FERRY_OK);
    ferry_envelope_free(env);
    free(ok);
    uint8_t *bad = deep_submit(FERRY_MAX_NESTING, &len);
    assert_int_equal(ferry_envelope_decode(bad, len, &env), FERRY_EPROTO);
    assert_null(env);
    free(bad);
}

/* ferry/value.h's one rule: a function that takes a value takes it whatever it
 * returns; a NULL value (a failed constructor) is FERRY_ENOMEM and the other
 * arguments are freed. Under AddressSanitizer a leak or a double free fails. */
static void test_builders_take_values_over(void **state)
{
    (void)state;
    Ferry__Value *t = ferry_value_table();
    assert_int_equal(ferry_table_append(t, NULL), FERRY_ENOMEM);
    assert_int_equal(ferry_table_set(t, ferry_value_cstring("k"), NULL), FERRY_ENOMEM);
    assert_int_equal(ferry_table_set(t, NULL, ferry_value_int(1)), FERRY_ENOMEM);
    assert_int_equal(ferry_table_set_field(t, "k", NULL), FERRY_ENOMEM);
    Ferry__Value **arr = NULL;
    size_t n = 0;
    assert_int_equal(ferry_values_push(&arr, &n, NULL), FERRY_ENOMEM);
    assert_int_equal(ferry_values_push(&arr, &n, ferry_value_int(2)), FERRY_OK);
    ferry_values_free(arr, n);
    assert_int_equal(ferry_table_len(t), 0);
    assert_int_equal(ferry_table_append(t, ferry_value_int(1)), FERRY_OK);
    assert_int_equal(ferry_table_set_field(t, "k", ferry_value_bool(1)), FERRY_OK);
    assert_int_equal(ferry_table_len(t), 1);
    int b = 0;
    assert_int_equal(ferry_value_get_bool(ferry_table_get(t, "k"), &b), FERRY_OK);
    assert_true(b);
    ferry_value_free(t);
}

static void test_error_codes(void **state)
{
    (void)state;
    assert_string_equal(ferry_err_code(FERRY_ETIMEOUT), "timeout");
    assert_int_equal(ferry_err_from_code("worker_lost"), FERRY_EWORKER_LOST);
    assert_int_equal(ferry_err_from_code("nonsense"), FERRY_EPROTO);
    assert_string_equal(ferry_err_code((ferry_err)999), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integer_and_float_differ),
        cmocka_unit_test(test_copy_is_equal_and_independent),
        cmocka_unit_test(test_protobuf_round_trip_is_lossless),
        cmocka_unit_test(test_hash_order_does_not_matter),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_envelope_decode_rejects_bad_input),
        cmocka_unit_test(test_envelope_decode_bounds_nesting),
        cmocka_unit_test(test_builders_take_values_over),
        cmocka_unit_test(test_error_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

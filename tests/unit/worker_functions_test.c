/*
 * worker_functions_test: the built-in functions (echo, sleep) on an offline
 * worker, through the same dispatch path a Command from the broker takes.
 */
#include "functions/functions.h"
#include "worker_fixture.h"

#include "ferry_clock.h"
#include "ferry_wire.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define GUARD_MS 10000

static ferry_err sink(ferry_worker *w, const Ferry__Envelope *env, size_t size, void *arg)
{
    assert_true(size == 0 || size == ferry__envelope__get_packed_size(env));
    capture *c = arg;
    if (env->body_case != FERRY__ENVELOPE__BODY_REPLY)
        return FERRY_OK;
    const Ferry__Reply *r = env->reply;
    if (r->error || r->n_values != 1 || r->values[0]->kind_case != FERRY__VALUE__KIND_BOOLEAN)
        c->bad++;
    if (c->keep)
        capture_push(c, env);
    if (++c->replies == c->stop_at)
        ferry_worker_stop(w);
    return FERRY_OK;
}

static const Ferry__Reply *reply_for(capture *c, uint64_t call_id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->msgs[i]->reply->call_id == call_id)
            return c->msgs[i]->reply;
    fail_msg("no reply for call %llu", (unsigned long long)call_id);
    return NULL;
}

static ferry_worker *make(capture *c, unsigned concurrency)
{
    ferry_worker_config cfg = {.id = "w-fn", .concurrency = concurrency};
    ferry_worker *w = worker_new_offline(&cfg, sink, c);
    assert_non_null(w);
    ferry_function_opts idem = {.idempotent = 1};
    assert_int_equal(ferry_worker_register(w, "echo", worker_fn_echo, NULL, &idem), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "sleep", worker_fn_sleep, NULL, &idem), FERRY_OK);
    return w;
}

static void test_echo_every_kind(void **state)
{
    (void)state;
    capture c = {.keep = 1};
    ferry_worker *w = make(&c, 0);
    Ferry__Value *t = ferry_value_table();
    ferry_table_append(t, ferry_value_int(1));
    ferry_table_append(t, ferry_value_nil());
    ferry_table_set(t, ferry_value_cstring("k"), ferry_value_float(-0.5));
    Ferry__Value *inner = ferry_value_table();
    ferry_table_append(inner, ferry_value_string("\0\x01", 2));
    ferry_table_set(t, ferry_value_bool(1), inner);
    Ferry__Value *args[] = {
        ferry_value_nil(),
        ferry_value_bool(0),
        ferry_value_bool(1),
        ferry_value_int(INT64_MIN),
        ferry_value_int(3),
        ferry_value_float(3.0),
        ferry_value_float(NAN),
        ferry_value_float(INFINITY),
        ferry_value_string("a\0b", 3),
        ferry_value_string("", 0),
        t,
        ferry_value_table(),
    };
    size_t n = sizeof args / sizeof args[0];
    feed(w, "engine", 1, "echo", args, n, 0);
    feed(w, "engine", 2, "echo", NULL, 0, 0);
    assert_int_equal(c.n, 2);
    const Ferry__Reply *r = reply_for(&c, 1);
    assert_null(r->error);
    assert_int_equal(r->n_values, n);
    for (size_t i = 0; i < n; i++)
        assert_true(ferry_value_equal(r->values[i], args[i]));
    /* Kinds survive exactly: 3 is not 3.0. */
    assert_int_equal(r->values[4]->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_int_equal(r->values[5]->kind_case, FERRY__VALUE__KIND_NUMBER);
    r = reply_for(&c, 2);
    assert_null(r->error);
    assert_int_equal(r->n_values, 0);
    for (size_t i = 0; i < n; i++)
        ferry_value_free(args[i]);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_sleep_bad_arguments(void **state)
{
    (void)state;
    capture c = {.keep = 1};
    ferry_worker *w = make(&c, 0);
    Ferry__Value *bad[] = {
        ferry_value_cstring("10"), ferry_value_int(-1),         ferry_value_float(-0.5),
        ferry_value_float(NAN),    ferry_value_float(INFINITY), ferry_value_float(1e13),
        ferry_value_table(),       ferry_value_nil(),
    };
    size_t n = sizeof bad / sizeof bad[0];
    for (size_t i = 0; i < n; i++)
        feed(w, "engine", i + 1, "sleep", &bad[i], 1, 0);
    feed(w, "engine", 100, "sleep", NULL, 0, 0);
    assert_int_equal(c.n, n + 1);
    for (size_t i = 0; i < c.n; i++) {
        const Ferry__Reply *r = c.msgs[i]->reply;
        assert_non_null(r->error);
        assert_string_equal(r->error->code, "bad_argument");
        assert_non_null(strstr(r->error->message, "bad argument #1 to 'sleep'"));
    }
    assert_non_null(strstr(reply_for(&c, 1)->error->message, "number expected, got string"));
    assert_non_null(strstr(reply_for(&c, 100)->error->message, "got no value"));
    for (size_t i = 0; i < n; i++)
        ferry_value_free(bad[i]);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_sleep_waits(void **state)
{
    (void)state;
    capture c = {.keep = 1};
    ferry_worker *w = make(&c, 0);
    Ferry__Value *a = ferry_value_int(30);
    Ferry__Value *b = ferry_value_float(0.2); /* rounds up to 1 ms */
    Ferry__Value *z = ferry_value_int(0);
    int64_t t0 = ferry_now_ms();
    feed(w, "engine", 1, "sleep", &a, 1, 0);
    feed(w, "engine", 2, "sleep", &b, 1, 0);
    feed(w, "engine", 3, "sleep", &z, 1, 0);
    assert_int_equal(c.n, 0); /* even sleep(0) answers from the loop */
    run_until(w, &c, 3, GUARD_MS);
    assert_true(ferry_now_ms() - t0 >= 30);
    assert_int_equal(c.msgs[2]->reply->call_id, 1); /* the long one last */
    for (size_t i = 0; i < 3; i++) {
        const Ferry__Reply *r = c.msgs[i]->reply;
        assert_null(r->error);
        assert_int_equal(r->n_values, 1);
        assert_int_equal(r->values[0]->kind_case, FERRY__VALUE__KIND_BOOLEAN);
        assert_true(r->values[0]->boolean);
    }
    ferry_value_free(a);
    ferry_value_free(b);
    ferry_value_free(z);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_sleep_timeout(void **state)
{
    (void)state;
    capture c = {.keep = 1};
    ferry_worker *w = make(&c, 0);
    Ferry__Value *a = ferry_value_int(3600 * 1000);
    feed(w, "engine", 1, "sleep", &a, 1, 20);
    run_until(w, &c, 1, GUARD_MS);
    const Ferry__Reply *r = c.msgs[0]->reply;
    assert_non_null(r->error);
    assert_string_equal(r->error->code, "timeout");
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    /* The cancel callback answered at once: nothing waits for the hour to pass. */
    assert_int_equal(st.zombies, 0);
    assert_int_equal(ferry_timers_count(&ferry_worker_loop(w)->timers), 0);
    ferry_value_free(a);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

/* Ten thousand sleeps side by side in one thread: all back in about one sleep. */
static void test_many_sleeps(void **state)
{
    (void)state;
    enum { N = 10000, MS = 100 };
    capture c = {0};
    ferry_worker *w = make(&c, N);
    Ferry__Value *a = ferry_value_int(MS);
    int64_t t0 = ferry_now_ms();
    for (uint64_t i = 0; i < N; i++)
        feed(w, "engine", i + 1, "sleep", &a, 1, 5000);
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.in_flight, N);
    run_until(w, &c, N, GUARD_MS);
    int64_t took = ferry_now_ms() - t0;
    print_message("%d sleeps of %d ms took %lld ms\n", N, MS, (long long)took);
    assert_true(took >= MS);
    assert_true(took < MS + 3000);
    assert_int_equal(c.bad, 0);
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.completed, N);
    ferry_value_free(a);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_every_kind), cmocka_unit_test(test_sleep_bad_arguments),
        cmocka_unit_test(test_sleep_waits),     cmocka_unit_test(test_sleep_timeout),
        cmocka_unit_test(test_many_sleeps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* lib_timer_test: the timer heap fires in order, stops, re-arms, and survives churn. */
#include "ferry_timer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

static int fired[1000];
static int nfired;

static void record(ferry_timer *t, void *arg)
{
    (void)t;
    fired[nfired++] = (int)(intptr_t)arg;
}

static void test_fires_in_order_of_expiry(void **state)
{
    (void)state;
    ferry_timers ts;
    ferry_timers_init(&ts);
    ferry_timer t[5];
    int64_t when[5] = {50, 10, 30, 10, 20};
    for (int i = 0; i < 5; i++) {
        ferry_timer_init(&t[i], record, (void *)(intptr_t)i);
        assert_int_equal(ferry_timer_start(&ts, &t[i], when[i]), FERRY_OK);
    }
    assert_int_equal(ferry_timers_timeout(&ts, 0), 10);
    nfired = 0;
    assert_int_equal(ferry_timers_run(&ts, 25), 3);
    /* Equal expiries fire in start order. */
    assert_int_equal(fired[0], 1);
    assert_int_equal(fired[1], 3);
    assert_int_equal(fired[2], 4);
    assert_false(ferry_timer_active(&t[1]));
    assert_int_equal(ferry_timers_run(&ts, 100), 2);
    assert_int_equal(ferry_timers_timeout(&ts, 0), -1);
    ferry_timers_fini(&ts);
}

static void test_stop_and_rearm(void **state)
{
    (void)state;
    ferry_timers ts;
    ferry_timers_init(&ts);
    ferry_timer a, b;
    ferry_timer_init(&a, record, (void *)1);
    ferry_timer_init(&b, record, (void *)2);
    ferry_timer_start(&ts, &a, 10);
    ferry_timer_start(&ts, &b, 20);
    ferry_timer_stop(&ts, &a);
    ferry_timer_stop(&ts, &a); /* idempotent */
    ferry_timer_start(&ts, &b, 5); /* re-arm earlier */
    nfired = 0;
    assert_int_equal(ferry_timers_run(&ts, 6), 1);
    assert_int_equal(fired[0], 2);
    assert_int_equal(ferry_timers_count(&ts), 0);
    ferry_timers_fini(&ts);
}

static void test_random_churn_keeps_heap_order(void **state)
{
    (void)state;
    ferry_timers ts;
    ferry_timers_init(&ts);
    enum { N = 1000 };
    ferry_timer *t = calloc(N, sizeof *t);
    srand(7);
    for (int i = 0; i < N; i++) {
        ferry_timer_init(&t[i], record, (void *)(intptr_t)i);
        ferry_timer_start(&ts, &t[i], rand() % 10000);
    }
    for (int i = 0; i < N; i += 3)
        ferry_timer_stop(&ts, &t[i]);
    for (int i = 0; i < N; i += 7)
        ferry_timer_start(&ts, &t[i], rand() % 10000);
    nfired = 0;
    size_t expect = ferry_timers_count(&ts);
    assert_int_equal(ferry_timers_run(&ts, 10000), expect);
    for (int i = 1; i < nfired; i++)
        assert_true(t[fired[i - 1]].when_ms <= t[fired[i]].when_ms);
    free(t);
    ferry_timers_fini(&ts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fires_in_order_of_expiry),
        cmocka_unit_test(test_stop_and_rearm),
        cmocka_unit_test(test_random_churn_keeps_heap_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * top_test: `ferry top --once` against a loaded stack. A known load first
 * (N scripts, each M echo calls and K calls to http.get that fail with
 * bad_argument), then two scripts calling sleep(10 ms) in a loop while top
 * watches: its --json numbers must be exactly the counts sent, a sleep rate
 * no higher than two sleepers can make (2 x 100/s) and not near zero, and a
 * p50 for sleep inside its histogram bucket above 10 ms; the text screen
 * names the functions and the worker.
 */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define N 10
#define M 3
#define K 1

typedef struct {
    unsigned workers;
    double calls_per_s;
    unsigned long long completed, failed;
    double failed_per_s;
    unsigned long long queued, in_flight;
    double p50_ms, p99_ms;
} fn_numbers;

/* The numbers of function name in top's JSON (its members come in a fixed order). */
static int function_numbers(const char *json, const char *name, fn_numbers *f)
{
    char key[128];
    snprintf(key, sizeof key, "{\"name\": \"%s\", ", name);
    const char *p = strstr(json, key);
    if (!p)
        return -1;
    int n = sscanf(p + strlen(key),
                   "\"workers\": %u, \"calls_per_s\": %lf, \"completed\": %llu, \"failed\": %llu, "
                   "\"failed_per_s\": %lf, \"queued\": %llu, \"in_flight\": %llu, "
                   "\"p50_ms\": %lf, \"p99_ms\": %lf",
                   &f->workers, &f->calls_per_s, &f->completed, &f->failed, &f->failed_per_s,
                   &f->queued, &f->in_flight, &f->p50_ms, &f->p99_ms);
    return n == 9 ? 0 : -1;
}

static double number(const char *json, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(json, k);
    return p ? strtod(p + strlen(k), NULL) : -1;
}

/* Every test's stack lives in the fixture, so that teardown stops it even when an
 * assertion ends the test early (no process outlives a failed test). */
static int setup(void **state)
{
    ferry_stack *s = calloc(1, sizeof *s);
    assert_non_null(s);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    ferry_stack *s = *state;
    int rc = s->dir[0] ? stack_stop(s) : 0;
    free(s);
    return rc;
}

static void test_top_once_json_matches_the_load(void **state)
{
    const char *const bargs[] = {"--metrics", "127.0.0.1:0", NULL};
    ferry_stack *s = *state;
    assert_int_equal(stack_start_one_each(s, bargs, NULL, NULL, NULL), 0);
    const char *load = "for i = 1, 3 do ferry.call('echo', i) end\n"
                       "local ok, e = pcall(ferry.call, 'http.get', 42)\n"
                       "assert(not ok and e.code == 'bad_argument', tostring(e))\n"
                       "return true";
    for (int i = 0; i < N; i++) {
        ferry_result r;
        assert_int_equal(stack_run(s, load, NULL, 0, 10000, &r), FERRY_OK);
        assert_true(r.result->ok);
        ferry_result_fini(&r);
    }
    /* Two sleepers, each at most 100 calls a second, running while top looks. */
    const char *sleeper = "for i = 1, 150 do ferry.call('sleep', 10) end return true";
    for (int i = 0; i < 2; i++) {
        uint64_t id;
        assert_int_equal(ferry_client_submit(s->client, sleeper, strlen(sleeper), "sleeper", NULL,
                                             0, 30000, &id),
                         FERRY_OK);
    }
    const char *const top[] = {"top", "--once", "--json", "--interval", "0.5", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(stack_cli(s, top, &out, &err, 15000), 0);
    fprintf(stderr, "# %s", out);
    fn_numbers echo, get, sl;
    assert_int_equal(function_numbers(out, "echo", &echo), 0);
    assert_int_equal(function_numbers(out, "http.get", &get), 0);
    assert_int_equal(function_numbers(out, "sleep", &sl), 0);
    assert_int_equal(echo.completed, N * M);
    assert_int_equal(echo.failed, 0);
    assert_int_equal(echo.workers, 1);
    assert_int_equal(get.failed, N * K);
    assert_int_equal(get.completed, 0);
    assert_true(sl.calls_per_s > 5 && sl.calls_per_s <= 200 * 1.05);
    /* 10 ms sleeps land in the (8.192, 16.384] ms bucket, or later ones when slow. */
    assert_true(sl.p50_ms > 8.192 && sl.p50_ms <= 32.768);
    assert_true(sl.p99_ms >= sl.p50_ms);
    assert_true(echo.p50_ms > 0 && echo.p50_ms < 100);
    assert_true(number(out, "engines") == 1 && number(out, "workers") == 1);
    assert_true(number(out, "metrics") != 0 || strstr(out, "\"metrics\": true"));
    assert_true(number(out, "scripts_running") <= 2);
    assert_true(number(out, "slots") > 0);
    /* The engine runs the two sleepers: its line says so, with its load. */
    const char *eng = strstr(out, "\"engine_list\": [{\"id\": \"");
    assert_non_null(eng);
    unsigned slots = 0, running = 0;
    const char *f = strstr(eng, "\"slots\": ");
    assert_non_null(f);
    assert_int_equal(sscanf(f, "\"slots\": %u, \"running\": %u", &slots, &running), 2);
    assert_int_equal(slots, 256);
    assert_int_equal(running, 2);
    free(out);
    free(err);

    const char *const text[] = {"top", "--once", "--interval", "0.1", NULL};
    assert_int_equal(stack_cli(s, text, &out, &err, 15000), 0);
    assert_non_null(strstr(out, "FUNCTION"));
    assert_non_null(strstr(out, "\necho "));
    assert_non_null(strstr(out, "\nsleep "));
    assert_non_null(strstr(out, "\nworker-"));
    assert_non_null(strstr(out, "\nENGINE "));
    free(out);
    free(err);
    for (int i = 0; i < 2; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(s->client, 30000, &r), FERRY_OK);
        assert_true(r.result->ok);
        ferry_result_fini(&r);
    }
    stack_passed(s);
}

static void test_top_without_a_broker(void **state)
{
    ferry_stack *s = *state;
    assert_int_equal(stack_init(s), 0);
    const char *const top[] = {"top", "--once", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(stack_cli(s, top, &out, &err, 20000), 3);
    assert_non_null(strstr(err, "no stats from the broker"));
    free(out);
    free(err);
    stack_passed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_top_once_json_matches_the_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_top_without_a_broker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

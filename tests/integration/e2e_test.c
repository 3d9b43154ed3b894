/*
 * e2e_test: the whole path of DESIGN.md through real processes: client →
 * broker → engine (Lua coroutine) → broker → worker → broker → engine →
 * broker → client.
 */
#include "harness.h"

#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int setup_one(void **state)
{
    static ferry_stack s;
    assert_int_equal(stack_init(&s), 0);
    assert_true(stack_start_broker(&s, NULL) >= 0);
    const char *engine_args[] = {"--slots", "1000", NULL};
    assert_true(stack_start_engine(&s, engine_args) >= 0);
    assert_true(stack_start_worker(&s, NULL) >= 0);
    if (stack_wait_ready(&s, 1, 1, 10000) != 0) {
        stack_stop(&s);
        return -1;
    }
    *state = &s;
    return 0;
}

static int setup_two(void **state)
{
    static ferry_stack s;
    assert_int_equal(stack_init(&s), 0);
    assert_true(stack_start_broker(&s, NULL) >= 0);
    assert_true(stack_start_engine(&s, NULL) >= 0);
    assert_true(stack_start_engine(&s, NULL) >= 0);
    assert_true(stack_start_worker(&s, NULL) >= 0);
    assert_true(stack_start_worker(&s, NULL) >= 0);
    if (stack_wait_ready(&s, 2, 2, 10000) != 0) {
        stack_stop(&s);
        return -1;
    }
    *state = &s;
    return 0;
}

static int teardown(void **state)
{
    ferry_stack *s = *state;
    /* Every child must exit cleanly on SIGTERM (under ASan: with no leak). */
    return stack_stop(s);
}

/* Every value kind, including the ones that break naive encodings. */
static Ferry__Value *all_kinds(size_t *n)
{
    Ferry__Value **v = calloc(16, sizeof *v);
    size_t i = 0;
    v[i++] = ferry_value_int(3);
    v[i++] = ferry_value_float(3.0);
    v[i++] = ferry_value_float(-0.5);
    v[i++] = ferry_value_float(NAN);
    v[i++] = ferry_value_float(INFINITY);
    v[i++] = ferry_value_float(-INFINITY);
    v[i++] = ferry_value_int(INT64_MAX);
    v[i++] = ferry_value_int(INT64_MIN);
    v[i++] = ferry_value_string("a\0b\xff", 4);
    v[i++] = ferry_value_string("", 0);
    v[i++] = ferry_value_bool(1);
    v[i++] = ferry_value_bool(0);
    Ferry__Value *t = ferry_value_table();
    ferry_table_append(t, ferry_value_int(1));
    ferry_table_append(t, ferry_value_float(2.5));
    ferry_table_append(t, ferry_value_cstring("x"));
    Ferry__Value *inner = ferry_value_table();
    Ferry__Value *deep = ferry_value_table();
    ferry_table_set(deep, ferry_value_cstring("deep"), ferry_value_bool(1));
    ferry_table_set(inner, ferry_value_cstring("nested"), deep);
    ferry_table_append(t, inner);
    ferry_table_set(t, ferry_value_cstring("name"), ferry_value_string("n\0m", 3));
    ferry_table_set(t, ferry_value_int(10), ferry_value_int(7));
    ferry_table_set(t, ferry_value_float(1.5), ferry_value_cstring("float key"));
    v[i++] = t;
    v[i++] = ferry_value_table(); /* empty table */
    *n = i;
    /* Hand back as a table so the caller frees one thing. */
    Ferry__Value *holder = ferry_value_table();
    for (size_t k = 0; k < i; k++)
        ferry_table_append(holder, v[k]);
    free(v);
    return holder;
}

static void test_echo_returns_every_value_unchanged(void **state)
{
    ferry_stack *s = *state;
    size_t n;
    Ferry__Value *holder = all_kinds(&n);
    ferry_result r;
    assert_int_equal(stack_run(s, "return ferry.call('echo', ...)", holder->table->array, n, 10000,
                               &r),
                     FERRY_OK);
    if (!r.result->ok)
        fail_msg("script failed: %s: %s", r.result->error ? r.result->error->code : "?",
                 r.result->error ? r.result->error->message : "?");
    assert_int_equal(r.result->n_values, n);
    for (size_t i = 0; i < n; i++) {
        if (!ferry_value_equal(holder->table->array[i], r.result->values[i])) {
            ferry_buf a = FERRY_BUF_INIT, b = FERRY_BUF_INIT;
            ferry_value_to_json(holder->table->array[i], &a);
            ferry_value_to_json(r.result->values[i], &b);
            fail_msg("value %zu: sent %s (%s), got %s (%s)", i, a.data,
                     ferry_value_kind(holder->table->array[i]), b.data,
                     ferry_value_kind(r.result->values[i]));
        }
    }
    ferry_result_fini(&r);
    ferry_value_free(holder);

    /* nil in the middle of the arguments and of the results. */
    assert_int_equal(stack_run(s, "local a, b, c = ferry.call('echo', 1, nil, 3)\n"
                                  "return a, b, c, select('#', ferry.call('echo', nil, nil))",
                               NULL, 0, 10000, &r),
                     FERRY_OK);
    assert_true(r.result->ok);
    assert_int_equal(r.result->n_values, 4);
    assert_string_equal(ferry_value_kind(r.result->values[1]), "nil");
    assert_int_equal(r.result->values[2]->integer, 3);
    assert_int_equal(r.result->values[3]->integer, 2);
    ferry_result_fini(&r);
    stack_passed(s);
}

static void test_500_sleeping_scripts_wait_together(void **state)
{
    ferry_stack *s = *state;
    const char *src = "return ferry.call('sleep', 200)";
    enum { N = 500 };
    int64_t start = ferry_now_ms();
    for (int i = 0; i < N; i++)
        assert_int_equal(ferry_client_submit(s->client, src, strlen(src), "sleep.lua", NULL, 0,
                                             20000, NULL),
                         FERRY_OK);
    for (int i = 0; i < N; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(s->client, 20000, &r), FERRY_OK);
        if (!r.result->ok)
            fail_msg("script %d failed: %s: %s", i, r.result->error->code,
                     r.result->error->message);
        assert_int_equal(r.result->n_values, 1);
        assert_true(r.result->values[0]->boolean);
        ferry_result_fini(&r);
    }
    int64_t took = ferry_now_ms() - start;
    printf("# 500 scripts x sleep(200 ms) on one engine: %lld ms\n", (long long)took);
    /* One after another would take 100 s; together it is one sleep plus overhead. */
    assert_true(took < 5000);
    stack_passed(s);
}

static void test_each_script_gets_its_own_replies(void **state)
{
    ferry_stack *s = *state;
    const char *src = "local id = ...\n"
                      "for i = 1, 5 do\n"
                      "  local a, b = ferry.call('echo', id, i)\n"
                      "  if a ~= id or b ~= i then error('crossed reply: ' .. tostring(a)) end\n"
                      "end\n"
                      "return id, ferry.call('echo', id .. '!')";
    enum { N = 400 };
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof text, "script-%d", i);
        Ferry__Value *arg = ferry_value_cstring(text);
        assert_int_equal(ferry_client_submit(s->client, src, strlen(src), "own.lua", &arg, 1,
                                             20000, &ids[i]),
                         FERRY_OK);
        ferry_value_free(arg);
    }
    int seen[N] = {0};
    for (int i = 0; i < N; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(s->client, 20000, &r), FERRY_OK);
        const Ferry__Result *res = r.result;
        if (!res->ok)
            fail_msg("script failed: %s: %s", res->error->code, res->error->message);
        int k = -1;
        for (int j = 0; j < N; j++)
            if (ids[j] == res->request_id)
                k = j;
        assert_true(k >= 0);
        assert_false(seen[k]);
        seen[k] = 1;
        char want[32], want2[40];
        snprintf(want, sizeof want, "script-%d", k);
        snprintf(want2, sizeof want2, "script-%d!", k);
        assert_int_equal(res->n_values, 2);
        assert_int_equal(res->values[0]->string.len, strlen(want));
        assert_memory_equal(res->values[0]->string.data, want, strlen(want));
        assert_memory_equal(res->values[1]->string.data, want2, strlen(want2));
        ferry_result_fini(&r);
    }
    /* Both engines took part. */
    Ferry__Envelope *env;
    assert_int_equal(ferry_client_stats(s->client, 5000, &env), FERRY_OK);
    assert_int_equal(env->stats->engines, 2);
    assert_true(env->stats->scripts_completed >= N);
    ferry_envelope_free(env);
    stack_passed(s);
}

static void expect_error(ferry_stack *s, const char *src, const char *code, const char *in_msg)
{
    ferry_result r;
    int64_t start = ferry_now_ms();
    assert_int_equal(stack_run(s, src, NULL, 0, 10000, &r), FERRY_OK);
    assert_false(r.result->ok);
    assert_non_null(r.result->error);
    if (strcmp(r.result->error->code, code) != 0 || !strstr(r.result->error->message, in_msg))
        fail_msg("want %s containing '%s', got %s: %s", code, in_msg, r.result->error->code,
                 r.result->error->message);
    assert_true(ferry_now_ms() - start < 8000);
    ferry_result_fini(&r);
}

static void test_errors_are_clear(void **state)
{
    ferry_stack *s = *state;
    expect_error(s, "error('boom')", "script_error", "boom");
    expect_error(s, "return ferry.call('no_such_function', 1)", "no_worker", "no_such_function");
    expect_error(s, "return 1 +", "syntax_error", "test.lua");
    expect_error(s, "return ferry.call('sleep', 'soon')", "bad_argument", "sleep");
    expect_error(s, "return ferry.call('echo', print)", "bad_value", "function");

    /* Error objects are catchable, with code and message fields and tostring. */
    ferry_result r;
    assert_int_equal(stack_run(s,
                               "local ok, e = pcall(ferry.call, 'nope')\n"
                               "return ok, e.code, tostring(e):find('no_worker') ~= nil,"
                               " ferry.call('echo', 'after')",
                               NULL, 0, 10000, &r),
                     FERRY_OK);
    assert_true(r.result->ok);
    assert_int_equal(r.result->n_values, 4);
    assert_false(r.result->values[0]->boolean);
    assert_memory_equal(r.result->values[1]->string.data, "no_worker", 9);
    assert_true(r.result->values[2]->boolean);
    ferry_result_fini(&r);

    /* print is captured and returned with the result. */
    assert_int_equal(stack_run(s, "print('hello', 42, 1.5) print() return true", NULL, 0, 10000,
                               &r),
                     FERRY_OK);
    assert_true(r.result->ok);
    assert_int_equal(r.result->output.len, strlen("hello\t42\t1.5\n\n"));
    assert_memory_equal(r.result->output.data, "hello\t42\t1.5\n\n", r.result->output.len);
    ferry_result_fini(&r);
    stack_passed(s);
}

static void test_all_runs_calls_together(void **state)
{
    ferry_stack *s = *state;
    ferry_result r;
    int64_t start = ferry_now_ms();
    assert_int_equal(stack_run(s,
                               "local calls = {}\n"
                               "for i = 1, 10 do calls[i] = {'sleep', 300} end\n"
                               "calls[11] = {'echo', 1, nil, 'x', n = 4}\n"
                               "local r = ferry.all(table.unpack(calls))\n"
                               "return #r, r[10][1], r[11].n, r[11][1], r[11][2], r[11][3]",
                               NULL, 0, 10000, &r),
                     FERRY_OK);
    int64_t took = ferry_now_ms() - start;
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_int_equal(r.result->n_values, 6);
    assert_int_equal(r.result->values[0]->integer, 11);
    assert_true(r.result->values[1]->boolean);
    assert_int_equal(r.result->values[2]->integer, 3);
    assert_int_equal(r.result->values[3]->integer, 1);
    assert_string_equal(ferry_value_kind(r.result->values[4]), "nil");
    assert_memory_equal(r.result->values[5]->string.data, "x", 1);
    /* Ten sleeps of 300 ms one after another would take 3 s. */
    assert_true(took < 2500);
    ferry_result_fini(&r);

    /* The first failure by position is raised, after every call answered. */
    assert_int_equal(stack_run(s,
                               "local ok, e = pcall(ferry.all, {'sleep', 100}, {'sleep', 'x'},"
                               " {'echo', print})\n"
                               "local ok2, e2 = pcall(ferry.all, {'echo', 1}, {'missing'},"
                               " {'sleep', 'x'})\n"
                               "return ok, e.code, ok2, e2.code, e2.index, ferry.call('echo', 'on')",
                               NULL, 0, 10000, &r),
                     FERRY_OK);
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_false(r.result->values[0]->boolean);
    /* A value that cannot be sent stops the whole ferry.all before anything is sent. */
    assert_memory_equal(r.result->values[1]->string.data, "bad_value", 9);
    assert_false(r.result->values[2]->boolean);
    assert_memory_equal(r.result->values[3]->string.data, "no_worker", 9);
    assert_int_equal(r.result->values[4]->integer, 2);
    assert_memory_equal(r.result->values[5]->string.data, "on", 2);
    ferry_result_fini(&r);
    stack_passed(s);
}

static void test_cli_exit_codes_and_json(void **state)
{
    ferry_stack *s = *state;
    char *out, *err;
    const char *ok = stack_write_file(s, "ok.lua", "print('hi') return ferry.call('echo', ...)");
    const char *a1[] = {"run", ok, "x", "y", NULL};
    assert_int_equal(stack_cli(s, a1, &out, &err, 20000), 0);
    assert_string_equal(out, "hi\nx\ty\n");
    free(out);
    free(err);

    const char *a2[] = {"run", "--json", ok, "x", NULL};
    assert_int_equal(stack_cli(s, a2, &out, &err, 20000), 0);
    assert_string_equal(out, "{\"ok\": true, \"values\": [\"x\"], \"output\": \"hi\\n\", "
                             "\"error\": null}\n");
    free(out);
    free(err);

    /* A code of the script's own passes through; one of Ferry's does not. */
    const char *bad = stack_write_file(s, "bad.lua", "error({code='mine', message='why'})");
    const char *a3[] = {"run", "--json", bad, NULL};
    assert_int_equal(stack_cli(s, a3, &out, &err, 20000), 1);
    assert_non_null(strstr(out, "\"ok\": false"));
    assert_non_null(strstr(out, "{\"code\": \"mine\", \"message\": \"why\"}"));
    assert_non_null(strstr(err, "mine: why"));
    free(out);
    free(err);
    const char *forged =
        stack_write_file(s, "forged.lua", "error({code='engine_lost', message='why'})");
    const char *a3b[] = {"run", "--json", forged, NULL};
    assert_int_equal(stack_cli(s, a3b, &out, &err, 20000), 1);
    assert_non_null(strstr(out, "\"code\": \"script_error\""));
    assert_non_null(strstr(err, "error code 'engine_lost' is not the script's to raise: why"));
    free(out);
    free(err);

    const char *fn = stack_write_file(s, "fn.lua", "return ferry.call('missing')");
    const char *a4[] = {"run", fn, NULL};
    assert_int_equal(stack_cli(s, a4, &out, &err, 20000), 1);
    assert_non_null(strstr(err, "no_worker"));
    free(out);
    free(err);

    const char *slow = stack_write_file(s, "slow.lua", "return ferry.call('sleep', 5000)");
    const char *a5[] = {"run", "--timeout", "0.5", slow, NULL};
    assert_int_equal(stack_cli(s, a5, &out, &err, 20000), 3);
    assert_non_null(strstr(err, "timeout"));
    free(out);
    free(err);

    const char *a6[] = {"run", "--frobnicate", ok, NULL};
    assert_int_equal(stack_cli(s, a6, &out, &err, 20000), 2);
    assert_non_null(strstr(err, "--frobnicate"));
    free(out);
    free(err);

    const char *a7[] = {"run", "--broker", "ipc:///nonexistent/ferry", ok, NULL};
    assert_int_equal(stack_cli(s, a7, &out, &err, 20000), 3);
    assert_non_null(strstr(err, "cannot reach"));
    free(out);
    free(err);

    /* --max-msg: a Submit over it is refused by the client, nothing sent. */
    char big[4096];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "return 1", 8);
    const char *large = stack_write_file(s, "large.lua", big);
    const char *a9[] = {"run", "--max-msg", "2000", large, NULL};
    assert_int_equal(stack_cli(s, a9, &out, &err, 20000), 1);
    assert_non_null(strstr(err, "limit: the script and its arguments make a Submit over the "
                                "2000-byte message limit (--max-msg)"));
    free(out);
    free(err);
    const char *a10[] = {"run", "--max-msg", "8000", large, NULL};
    assert_int_equal(stack_cli(s, a10, &out, &err, 20000), 0);
    assert_string_equal(out, "1\n");
    free(out);
    free(err);
    const char *a11[] = {"stats", "--max-msg", "100000", NULL};
    assert_int_equal(stack_cli(s, a11, &out, &err, 20000), 0);
    free(out);
    free(err);

    const char *a8[] = {"stats", NULL};
    assert_int_equal(stack_cli(s, a8, &out, &err, 20000), 0);
    assert_non_null(strstr(out, "engines"));
    assert_non_null(strstr(out, "echo"));
    free(out);
    free(err);
    stack_passed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_returns_every_value_unchanged, setup_one,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_500_sleeping_scripts_wait_together, setup_one,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_each_script_gets_its_own_replies, setup_two,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_errors_are_clear, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_all_runs_calls_together, setup_one, teardown),
        cmocka_unit_test_setup_teardown(test_cli_exit_codes_and_json, setup_one, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

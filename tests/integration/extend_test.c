/*
 * extend_test: workers with different function sets side by side, and Ferry
 * spoken from another language.
 *
 * One stack: the C broker and engine, ferry-worker (echo, sleep, http.*),
 * the example C worker (examples/custom-worker: kv.*) and the Python worker
 * (examples/python/ferry_worker.py: py.*). Lua scripts call all three by
 * name through the broker; the Python client (examples/python/
 * ferry_client.py) submits a script and prints its result; the broker's
 * stats say which worker serves what and count calls per function.
 *
 * Python: Debian's python3 with python3-zmq and python3-protobuf; both
 * examples run on the ferry package of python/ (FERRY_PB_DIR is a leftover
 * of when they ran protoc themselves: ignored now).
 */
#include "harness.h"

#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static const char *const python_modules[] = {"zmq", "google.protobuf", NULL};

typedef struct {
    ferry_stack stack;
    const char *python;
    char pbdir[200]; /* FERRY_PB_DIR=<stack dir> */
} extend_env;

/* Python's own byte-code caches would land in the source tree. */
#define NO_PYCACHE "PYTHONDONTWRITEBYTECODE=1"

static int setup(void **state)
{
    static extend_env env;
    ferry_stack *s = &env.stack;
    assert_int_equal(stack_init(s), 0);
    env.python = stack_python(python_modules);
    if (!env.python) {
        fprintf(stderr, "extend_test: no python3 with zmq and google.protobuf "
                        "(Debian: python3-zmq python3-protobuf)\n");
        return -1;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/ferry-example-worker", FERRY_BIN_DIR);
    if (access(path, X_OK) != 0) {
        fprintf(stderr,
                "extend_test: %s is missing: add_subdirectory(examples/custom-worker) "
                "to the root CMakeLists.txt\n",
                path);
        return -1;
    }
    snprintf(env.pbdir, sizeof env.pbdir, "FERRY_PB_DIR=%s", s->dir);

    assert_true(stack_start_broker(s, NULL) >= 0);
    const char *engine_args[] = {"--slots", "100", NULL};
    assert_true(stack_start_engine(s, engine_args) >= 0);
    assert_true(stack_start_worker(s, NULL) >= 0);
    assert_true(stack_spawn(s, "ferry-example-worker", NULL) >= 0);
    char script[600];
    snprintf(script, sizeof script, "%s/examples/python/ferry_worker.py", stack_source_dir());
    const char *argv[] = {env.python, script, NULL};
    const char *penv[] = {env.pbdir, NO_PYCACHE, NULL};
    assert_true(stack_spawn_cmd(s, "py-worker", argv, penv) >= 0);
    /* Python starts and generates its protobuf module first: a generous bound. */
    if (stack_wait_ready(s, 1, 3, 30000) != 0) {
        stack_stop(s);
        return -1;
    }
    *state = &env;
    return 0;
}

static int teardown(void **state)
{
    extend_env *env = *state;
    return stack_stop(&env->stack);
}

/* Reads <source>/<rel> into a malloc'd string. */
static char *read_source(const char *rel)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", stack_source_dir(), rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *text = strdup(buf);
    assert_non_null(text);
    return text;
}

static void run_ok(ferry_stack *s, const char *src, const char *arg, ferry_result *r)
{
    Ferry__Value *a = arg ? ferry_value_cstring(arg) : NULL;
    assert_int_equal(stack_run(s, src, a ? &a : NULL, a ? 1 : 0, 20000, r), FERRY_OK);
    ferry_value_free(a);
    if (!r->result->ok)
        fail_msg("script failed: %s: %s", r->result->error ? r->result->error->code : "?",
                 r->result->error ? r->result->error->message : "?");
}

static void assert_output(const ferry_result *r, const char *want)
{
    if (r->result->output.len != strlen(want) ||
        memcmp(r->result->output.data, want, r->result->output.len) != 0)
        fail_msg("output:\n%.*s\nwanted:\n%s", (int)r->result->output.len,
                 (const char *)r->result->output.data, want);
}

static void test_custom_c_worker_serves_lua(void **state)
{
    extend_env *env = *state;
    char *src = read_source("examples/custom-worker/use.lua");
    ferry_result r;
    run_ok(&env->stack, src, "Ferry", &r);
    free(src);
    assert_output(&r, "kv.get greeting:\thello, Ferry\tinteger\n"
                      "kv.wait answer:\t42\n"
                      "kv.get short:\tlived\n"
                      "kv.get short after 100 ms:\tnil\n"
                      "kv.get 42:\tfalse\tbad_argument\n");
    /* kv.keys: the expired key is gone. */
    assert_int_equal(r.result->n_values, 1);
    const Ferry__Table *keys = r.result->values[0]->table;
    assert_non_null(keys);
    assert_int_equal(keys->n_array, 2);
    assert_memory_equal(keys->array[0]->string.data, "answer", 6);
    assert_memory_equal(keys->array[1]->string.data, "greeting", 8);
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

static void test_python_worker_serves_lua(void **state)
{
    extend_env *env = *state;
    char *src = read_source("examples/python/use.lua");
    ferry_result r;
    run_ok(&env->stack, src, "Ferry", &r);
    free(src);
    assert_output(&r, "HELLO, FERRY\n"
                      "42\t2.5\n"
                      "late\tearly\tNOW\n"
                      "py.add('x', 1):\tfalse\tbad_argument\n");
    assert_int_equal(r.result->n_values, 1);
    assert_int_equal(r.result->values[0]->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_int_equal(r.result->values[0]->integer, 3);
    ferry_result_fini(&r);

    /* Values cross to Python and back unchanged: binary strings, integers vs floats,
     * nested tables. */
    run_ok(&env->stack,
           "local s = ferry.call('py.upper', 'a\\0b\\255c')\n"
           "local t = ferry.call('py.after', 0, {1, 2.5, 'x', {deep = true}, n = 3})\n"
           "return s, math.type(t[1]), math.type(t[2]), t[3], t[4].deep, t.n\n",
           NULL, &r);
    assert_int_equal(r.result->values[0]->string.len, 5);
    assert_memory_equal(r.result->values[0]->string.data,
                        "A\0B\xff"
                        "C",
                        5);
    assert_memory_equal(r.result->values[1]->string.data, "integer", 7);
    assert_memory_equal(r.result->values[2]->string.data, "float", 5);
    assert_memory_equal(r.result->values[3]->string.data, "x", 1);
    assert_true(r.result->values[4]->boolean);
    assert_int_equal(r.result->values[5]->integer, 3);
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

static void test_python_worker_keeps_deadlines(void **state)
{
    extend_env *env = *state;
    ferry_result r;
    int64_t start = ferry_now_ms();
    /* The script has 600 ms; py.after would take 5 s. */
    assert_int_equal(stack_run(&env->stack,
                               "local ok, e = pcall(ferry.call, 'py.after', 5000, 'late')\n"
                               "return ok, e.code",
                               NULL, 0, 600, &r),
                     FERRY_OK);
    int64_t took = ferry_now_ms() - start;
    if (r.result->ok) {
        assert_false(r.result->values[0]->boolean);
        assert_memory_equal(r.result->values[1]->string.data, "timeout", 7);
    } else {
        /* The script's own deadline may come first. */
        assert_string_equal(r.result->error->code, "timeout");
    }
    assert_true(took < 4000);
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

static void test_one_script_calls_three_workers(void **state)
{
    extend_env *env = *state;
    ferry_result r;
    run_ok(&env->stack,
           "local r = ferry.all({'kv.set', 'k', 'v'}, {'py.upper', 'py'}, {'echo', 'c'},\n"
           "                    {'kv.get', 'k'})\n"
           "return r[1][1], r[2][1], r[3][1], ferry.call('kv.get', 'k')",
           NULL, &r);
    assert_int_equal(r.result->n_values, 4);
    assert_true(r.result->values[0]->boolean);
    assert_memory_equal(r.result->values[1]->string.data, "PY", 2);
    assert_memory_equal(r.result->values[2]->string.data, "c", 1);
    assert_memory_equal(r.result->values[3]->string.data, "v", 1);
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

static void test_python_client_runs_a_script(void **state)
{
    extend_env *env = *state;
    ferry_stack *s = &env->stack;
    const char *script = stack_write_file(s, "mixed.lua",
                                          "print('from python:', ...)\n"
                                          "ferry.call('kv.set', 'who', ...)\n"
                                          "return ferry.call('py.upper', ferry.call('kv.get', "
                                          "'who')), 7, {1, 2}");
    char path[700], script_copy[300];
    snprintf(script_copy, sizeof script_copy, "%s", script);
    snprintf(path, sizeof path, "%s/examples/python/ferry_client.py", stack_source_dir());
    const char *penv[] = {env->pbdir, NO_PYCACHE, NULL};
    char *out = NULL, *err = NULL;

    const char *a1[] = {env->python, path, script_copy, "ferry", NULL};
    int rc = stack_exec(s, a1, penv, &out, &err, 30000);
    if (rc != 0 || !out || strcmp(out, "from python:\tferry\nFERRY\t7\t[1, 2]\n") != 0)
        fail_msg("rc=%d out=[%s] err=[%s]", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);

    const char *a2[] = {env->python, path, "--json", script_copy, "x", NULL};
    rc = stack_exec(s, a2, penv, &out, &err, 30000);
    if (rc != 0 || !out ||
        strcmp(out, "{\"ok\": true, \"values\": [\"X\", 7, [1, 2]], \"output\": "
                    "\"from python:\\tx\\n\", \"error\": null}\n") != 0)
        fail_msg("rc=%d out=[%s] err=[%s]", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);

    /* A failing script: exit 1 and the error on stderr. */
    const char *bad = stack_write_file(s, "bad.lua", "return ferry.call('py.add', {}, 1)");
    char bad_copy[300];
    snprintf(bad_copy, sizeof bad_copy, "%s", bad);
    const char *a3[] = {env->python, path, bad_copy, NULL};
    rc = stack_exec(s, a3, penv, &out, &err, 30000);
    if (rc != 1 || !err || !strstr(err, "bad_argument"))
        fail_msg("rc=%d out=[%s] err=[%s]", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);

    /* Stats through Python too. */
    const char *a4[] = {env->python, path, "--stats", NULL};
    rc = stack_exec(s, a4, penv, &out, &err, 30000);
    if (rc != 0 || !out || !strstr(out, "\"workerList\"") || !strstr(out, "py.upper"))
        fail_msg("rc=%d out=[%s] err=[%s]", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    stack_passed(s);
}

static const Ferry__FunctionStats *function_stats(const Ferry__Stats *st, const char *name)
{
    for (size_t i = 0; i < st->n_functions; i++)
        if (strcmp(st->functions[i]->name, name) == 0)
            return st->functions[i];
    fail_msg("no stats for function %s", name);
    return NULL;
}

/* The worker that serves name, or fails. */
static const Ferry__WorkerStats *worker_serving(const Ferry__Stats *st, const char *name)
{
    for (size_t i = 0; i < st->n_worker_list; i++)
        for (size_t k = 0; k < st->worker_list[i]->n_functions; k++)
            if (strcmp(st->worker_list[i]->functions[k], name) == 0)
                return st->worker_list[i];
    fail_msg("no worker serves %s", name);
    return NULL;
}

static void test_stats_show_who_serves_what(void **state)
{
    extend_env *env = *state;
    ferry_stack *s = &env->stack;
    ferry_result r;
    run_ok(s,
           "for i = 1, 3 do ferry.call('py.upper', 'x') end\n"
           "ferry.call('kv.set', 'a', 1)\n"
           "pcall(ferry.call, 'py.add', 'not a number', 1)\n"
           "return ferry.call('echo', 1)",
           NULL, &r);
    ferry_result_fini(&r);

    Ferry__Envelope *e = NULL;
    assert_int_equal(ferry_client_stats(s->client, 5000, &e), FERRY_OK);
    const Ferry__Stats *st = e->stats;
    assert_int_equal(st->workers, 3);
    assert_int_equal(st->n_worker_list, 3);
    const Ferry__WorkerStats *py = worker_serving(st, "py.upper");
    const Ferry__WorkerStats *kv = worker_serving(st, "kv.set");
    const Ferry__WorkerStats *c = worker_serving(st, "echo");
    assert_true(py != kv && kv != c && py != c);
    assert_int_equal(py->n_functions, 3);
    assert_string_equal(py->functions[0], "py.add"); /* sorted */
    assert_int_equal(kv->n_functions, 4);
    assert_true(c->n_functions >= 4); /* echo, http.get, http.request, sleep */
    assert_true(py->id.len >= 8 && memcmp(py->id.data, "pyworker", 8) == 0);
    assert_int_equal(py->completed, 3);
    assert_int_equal(py->failed, 1);
    assert_int_equal(py->in_flight, 0);
    assert_int_equal(py->credit, 1000);
    assert_false(py->leaving);

    const Ferry__FunctionStats *up = function_stats(st, "py.upper");
    assert_int_equal(up->workers, 1);
    assert_int_equal(up->completed, 3);
    assert_int_equal(up->failed, 0);
    assert_int_equal(up->in_flight, 0);
    assert_int_equal(function_stats(st, "py.add")->failed, 1);
    assert_int_equal(function_stats(st, "kv.set")->completed, 1);
    ferry_envelope_free(e);

    /* Calls in flight show per function and per worker while they run. */
    const char *src = "return ferry.call('py.after', 2000, 'done')";
    assert_int_equal(
        ferry_client_submit(s->client, src, strlen(src), "slow.lua", NULL, 0, 20000, NULL),
        FERRY_OK);
    int64_t until = ferry_now_ms() + 10000;
    for (;;) {
        assert_int_equal(ferry_client_stats(s->client, 5000, &e), FERRY_OK);
        int seen = function_stats(e->stats, "py.after")->in_flight == 1 &&
                   worker_serving(e->stats, "py.after")->in_flight == 1;
        ferry_envelope_free(e);
        if (seen)
            break;
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10); /* stats are an event in another process: look again */
    }

    /* And on the command line, human and JSON. */
    char *out = NULL, *err = NULL;
    const char *a1[] = {"stats", NULL};
    assert_int_equal(stack_cli(s, a1, &out, &err, 20000), 0);
    if (!strstr(out, "functions") || !strstr(out, "py.add, py.after, py.upper") ||
        !strstr(out, "kv.get, kv.keys, kv.set, kv.wait"))
        fail_msg("ferry stats:\n%s", out);
    free(out);
    free(err);
    const char *a2[] = {"stats", "--json", NULL};
    assert_int_equal(stack_cli(s, a2, &out, &err, 20000), 0);
    if (!strstr(out, "\"worker_list\": [{\"id\": ") ||
        !strstr(out, "\"functions\": [\"py.add\", \"py.after\", \"py.upper\"], \"credit\": 1000, "
                     "\"in_flight\": 1"))
        fail_msg("ferry stats --json:\n%s", out);
    free(out);
    free(err);

    ferry_result done;
    assert_int_equal(ferry_client_wait(s->client, 10000, &done), FERRY_OK);
    assert_true(done.result->ok);
    ferry_result_fini(&done);
    stack_passed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_custom_c_worker_serves_lua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_worker_serves_lua, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_worker_keeps_deadlines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_script_calls_three_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_client_runs_a_script, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_show_who_serves_what, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * sandbox_test: escapes and limits through the real processes (client ->
 * broker -> engine -> worker). Every hostile script must end with an error
 * that says what stopped it, and the same engine must then run the next
 * script normally. Also: async calls from inside pcall, user coroutines and
 * ferry.all, and the engine serving its other scripts while one is stopped.
 */
#include "harness.h"

#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static ferry_stack stack;
static int engine_idx;

static int setup(void **state)
{
    const char *engine_args[] = {"--slots", "100", NULL};
    if (stack_start_one_each(&stack, NULL, engine_args, NULL, &engine_idx) != 0)
        return -1;
    *state = &stack;
    return 0;
}

static int teardown(void **state)
{
    return stack_stop(*state);
}

/* Runs src with a deadline of timeout_ms (and args) and returns the result. */
static void run(ferry_stack *s, const char *src, Ferry__Value *const *args, size_t nargs,
                uint32_t timeout_ms, ferry_result *r)
{
    assert_int_equal(stack_run(s, src, args, nargs, timeout_ms, r), FERRY_OK);
}

/* The engine runs an ordinary script normally. */
static void next_script_is_fine(ferry_stack *s)
{
    ferry_result r;
    run(s,
        "local t = {} for i = 1, 1000 do t[i] = ('%d'):format(i) end\n"
        "return ferry.call('echo', #t, ('x'):upper(), t[1000])",
        NULL, 0, 10000, &r);
    if (!r.result->ok)
        fail_msg("the next script failed: %s: %s", r.result->error->code, r.result->error->message);
    assert_int_equal(r.result->n_values, 3);
    assert_int_equal(r.result->values[0]->integer, 1000);
    assert_memory_equal(r.result->values[1]->string.data, "X", 1);
    assert_memory_equal(r.result->values[2]->string.data, "1000", 4);
    ferry_result_fini(&r);
}

/* src must end with code and a message containing part, then the engine serves on. */
static void expect_stopped(ferry_stack *s, const char *src, uint32_t timeout_ms, const char *code,
                           const char *part)
{
    ferry_result r;
    int64_t start = ferry_now_ms();
    run(s, src, NULL, 0, timeout_ms, &r);
    int64_t took = ferry_now_ms() - start;
    if (r.result->ok)
        fail_msg("%s\nsucceeded, want %s", src, code);
    const Ferry__Error *e = r.result->error;
    assert_non_null(e);
    if (strcmp(e->code, code) != 0 || !strstr(e->message, part))
        fail_msg("%s\ngot %s: %s\nwant %s: ...%s...", src, e->code, e->message, code, part);
    char shown[61];
    snprintf(shown, sizeof shown, "%s", src);
    for (char *c = shown; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    printf("# %-60s -> %s: %s (%lld ms)\n", shown, e->code, e->message, (long long)took);
    ferry_result_fini(&r);
    next_script_is_fine(s);
}

static void test_cpu_bombs(void **state)
{
    ferry_stack *s = *state;
    const char *deadline = "script deadline of 1000 ms passed";
    expect_stopped(s, "while true do end", 1000, "timeout", deadline);
    expect_stopped(s, "while true do pcall(function() while true do end end) end", 1000, "timeout",
                   deadline);
    expect_stopped(s,
                   "while true do xpcall(function() while true do end end,\n"
                   "  function() while true do end end) end",
                   1000, "timeout", deadline);
    expect_stopped(s, "while true do pcall(coroutine.wrap(function() while true do end end)) end",
                   1000, "timeout", deadline);
    /* Inside C functions: pattern matching and loops a __len makes endless. */
    expect_stopped(s, "return ('a'):rep(40):match(('a*'):rep(40) .. 'b')", 1000, "timeout",
                   deadline);
    expect_stopped(s,
                   "return table.insert(setmetatable({}, {__len = function() return 2^62 end}),\n"
                   "  1, 'x')",
                   1000, "timeout", deadline);
    stack_passed(s);
}

static void test_memory_bombs(void **state)
{
    ferry_stack *s = *state;
    const char *limit = "memory limit of 67108864 bytes exceeded";
    expect_stopped(s, "local t = {} while true do t[#t + 1] = ('x'):rep(64) .. #t end", 10000,
                   "limit", limit);
    expect_stopped(s, "return ('x'):rep(1e9)", 10000, "limit", limit);
    expect_stopped(s, "local s = 'x' while true do s = s .. s end", 10000, "limit", limit);
    expect_stopped(s,
                   "local t = {} while true do pcall(function()\n"
                   "  for i = 1, 1e6 do t[#t + 1] = {i} end end) end",
                   10000, "limit", limit);
    /* The stack is bounded too. */
    expect_stopped(s, "local function f(n) return 1 + f(n + 1) end return f(1)", 10000,
                   "script_error", "stack overflow");
    expect_stopped(s,
                   "local t = setmetatable({}, {__index = function(t, k) return t[k] end})\n"
                   "return t.x",
                   10000, "script_error", "stack overflow");
#if !defined(__SANITIZE_ADDRESS__)
    /* Each state's memory went back: the engine did not keep the bombs. */
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)s->procs[engine_idx].pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long rss_kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &rss_kb) == 1)
            break;
    fclose(f);
    printf("# engine RSS after the memory bombs: %ld kB\n", rss_kb);
    assert_true(rss_kb > 0 && rss_kb < 3 * 65536);
#endif
    stack_passed(s);
}

static void test_output_flood(void **state)
{
    ferry_stack *s = *state;
    ferry_result r;
    run(s, "while true do pcall(print, ('x'):rep(100)) end", NULL, 0, 10000, &r);
    assert_false(r.result->ok);
    assert_string_equal(r.result->error->code, "limit");
    assert_string_equal(r.result->error->message, "output limit of 1048576 bytes exceeded");
    assert_int_equal(r.result->output.len, 1048576); /* what fitted is returned */
    ferry_result_fini(&r);
    next_script_is_fine(s);
    stack_passed(s);
}

/* A submission may ask for lower limits than the engine's flags, never higher. */
static void test_submission_asks_for_less(void **state)
{
    ferry_stack *s = *state;
    ferry_client_set_limits(s->client, &(ferry_limits){.max_output = 10});
    expect_stopped(s, "print(('x'):rep(50))", 10000, "limit", "output limit of 10 bytes");
    ferry_client_set_limits(s->client, &(ferry_limits){.max_instructions = 100000});
    expect_stopped(s, "local i = 0 while true do i = i + 1 end", 10000, "limit",
                   "instruction limit of 100000");
    ferry_client_set_limits(s->client, &(ferry_limits){.max_memory = 200000});
    expect_stopped(s, "local t = {} for i = 1, 1e7 do t[i] = i end", 10000, "limit",
                   "memory limit of 200000 bytes");
    /* Asking for more than the engine allows gets the engine's limit. */
    ferry_client_set_limits(s->client, &(ferry_limits){.max_output = 1000000000});
    expect_stopped(s, "while true do print(('x'):rep(100)) end", 10000, "limit",
                   "output limit of 1048576 bytes");
    ferry_client_set_limits(s->client, NULL);

    char *out, *err;
    const char *flood = stack_write_file(s, "flood.lua", "print(('y'):rep(50))");
    const char *argv[] = {"run", "--max-output", "10", flood, NULL};
    assert_int_equal(stack_cli(s, argv, &out, &err, 20000), 1);
    assert_non_null(strstr(err, "output limit of 10 bytes"));
    free(out);
    free(err);
    stack_passed(s);
}

static void test_escapes(void **state)
{
    ferry_stack *s = *state;
    static const struct {
        const char *src, *part;
    } tries[] = {
        {"return io.open('/etc/passwd')", "attempt to index a nil value (global 'io')"},
        {"return io.popen('id')", "attempt to index a nil value (global 'io')"},
        {"return os.execute('id')", "attempt to call a nil value (field 'execute')"},
        {"return os.getenv('HOME')", "attempt to call a nil value (field 'getenv')"},
        {"return os.remove('/tmp/x')", "attempt to call a nil value (field 'remove')"},
        {"return os.exit(1)", "attempt to call a nil value (field 'exit')"},
        {"return debug.getregistry()", "attempt to index a nil value (global 'debug')"},
        {"return require('io')", "attempt to call a nil value (global 'require')"},
        {"return package.loaded", "attempt to index a nil value (global 'package')"},
        {"return dofile('/etc/passwd')", "attempt to call a nil value (global 'dofile')"},
        {"return loadfile('/etc/passwd')", "attempt to call a nil value (global 'loadfile')"},
        {"return string.dump(print)", "attempt to call a nil value (field 'dump')"},
        {"return ('').dump(print)", "attempt to call a nil value (field 'dump')"},
        {"return collectgarbage('collect')", "only \"count\" is allowed"},
        {"return collectgarbage('stop')", "only \"count\" is allowed"},
        {"setmetatable({}, {__gc = function() end})", "__gc metamethods are not allowed"},
    };
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++)
        expect_stopped(s, tries[i].src, 10000, "script_error", tries[i].part);

    /* Binary chunks: neither through load, whatever the mode, nor as the source. */
    Ferry__Value *bin = ferry_value_string("\x1bLua\x54\x00\x19\x93\r\n\x1a\n", 12);
    static const char *const loads[] = {
        "local f, e = load(...) if f then return 'loaded' end error(e, 0)",
        "local f, e = load(..., 'x', 'b') if f then return 'loaded' end error(e, 0)",
        "local f, e = load(..., 'x', 'bt', {}) if f then return 'loaded' end error(e, 0)",
    };
    for (size_t i = 0; i < sizeof loads / sizeof loads[0]; i++) {
        ferry_result r;
        run(s, loads[i], &bin, 1, 10000, &r);
        assert_false(r.result->ok);
        assert_string_equal(r.result->error->code, "script_error");
        assert_non_null(strstr(r.result->error->message, "attempt to load a binary chunk"));
        ferry_result_fini(&r);
        next_script_is_fine(s);
    }
    ferry_value_free(bin);
    expect_stopped(s, "\x1bLuaT", 10000, "syntax_error", "attempt to load a binary chunk");

    /* What remains of os is the harmless part. */
    ferry_result r;
    run(s, "return type(os.time()), type(os.clock()), type(os.date('%Y')), os.difftime(3, 1)", NULL,
        0, 10000, &r);
    assert_true(r.result->ok);
    assert_memory_equal(r.result->values[0]->string.data, "number", 6);
    assert_int_equal(r.result->values[3]->kind_case, FERRY__VALUE__KIND_NUMBER);
    ferry_result_fini(&r);
    stack_passed(s);
}

static void test_string_metatable_is_per_script(void **state)
{
    ferry_stack *s = *state;
    ferry_result r;
    run(s,
        "getmetatable('').__index.upper = nil\n"
        "string.rep = nil\n"
        "getmetatable('').__index = {}\n"
        "table.insert = nil\n"
        "_G.print = nil\n"
        "return pcall(function() return ('x'):upper() end)",
        NULL, 0, 10000, &r);
    assert_true(r.result->ok);
    assert_false(r.result->values[0]->boolean); /* broken for this script */
    ferry_result_fini(&r);
    run(s,
        "local t = {} table.insert(t, ('ab'):rep(2)) print('fine')\n"
        "return ('x'):upper(), t[1], getmetatable('').__index == string",
        NULL, 0, 10000, &r);
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_memory_equal(r.result->values[0]->string.data, "X", 1);
    assert_memory_equal(r.result->values[1]->string.data, "abab", 4);
    assert_true(r.result->values[2]->boolean);
    assert_memory_equal(r.result->output.data, "fine\n", 5);
    ferry_result_fini(&r);
    stack_passed(s);
}

static void test_async_calls_everywhere(void **state)
{
    ferry_stack *s = *state;
    ferry_result r;
    /* Inside pcall and xpcall, failures included. */
    run(s,
        "local ok, v = pcall(ferry.call, 'echo', 'in pcall')\n"
        "local ok2, e = pcall(ferry.call, 'no_such_function')\n"
        "local ok3, h = xpcall(function() return ferry.call('sleep', 'bad') end,\n"
        "  function(err) return 'handled ' .. err.code end)\n"
        "return v, ok2, e.code, h",
        NULL, 0, 10000, &r);
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_memory_equal(r.result->values[0]->string.data, "in pcall", 8);
    assert_false(r.result->values[1]->boolean);
    assert_memory_equal(r.result->values[2]->string.data, "no_worker", 9);
    assert_memory_equal(r.result->values[3]->string.data, "handled bad_argument", 20);
    ferry_result_fini(&r);

    /* A generator of the script's own, and a coroutine inside it. */
    run(s,
        "local gen = coroutine.wrap(function()\n"
        "  for i = 1, 3 do coroutine.yield(ferry.call('echo', i)) end\n"
        "  local inner = coroutine.create(function(x) return ferry.call('echo', x * 10) end)\n"
        "  local ok, v = coroutine.resume(inner, 4)\n"
        "  coroutine.yield(v)\n"
        "end)\n"
        "local sum = 0 for v in gen do sum = sum + v end\n"
        "return sum",
        NULL, 0, 10000, &r);
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_int_equal(r.result->values[0]->integer, 1 + 2 + 3 + 40);
    ferry_result_fini(&r);

    /* ferry.all: every call in flight at once, also from a coroutine. */
    int64_t start = ferry_now_ms();
    run(s,
        "local r = ferry.all({'sleep', 300}, {'sleep', 300}, {'sleep', 300}, {'echo', 1, 2})\n"
        "local r2 = coroutine.wrap(function()\n"
        "  return ferry.all({'sleep', 300}, {'echo', 'co'})\n"
        "end)()\n"
        "return #r, r[4][2], r2[2][1]",
        NULL, 0, 10000, &r);
    int64_t took = ferry_now_ms() - start;
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_int_equal(r.result->values[0]->integer, 4);
    assert_int_equal(r.result->values[1]->integer, 2);
    assert_memory_equal(r.result->values[2]->string.data, "co", 2);
    printf("# ferry.all of 3 x sleep(300) then 1 x sleep(300) in a coroutine: %lld ms\n",
           (long long)took);
    assert_true(took < 1100); /* one after another would take 1200 ms plus */
    ferry_result_fini(&r);

    /* A failed call is raised once all have answered, with its position. */
    run(s,
        "local ok, e = pcall(ferry.all, {'echo', 1}, {'no_such_function'}, {'sleep', 'x'})\n"
        "return ok, e.index, e.code",
        NULL, 0, 10000, &r);
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_false(r.result->values[0]->boolean);
    assert_int_equal(r.result->values[1]->integer, 2);
    assert_memory_equal(r.result->values[2]->string.data, "no_worker", 9);
    ferry_result_fini(&r);

    /* Where Lua cannot yield, the error says why. */
    expect_stopped(s, "table.sort({3, 2, 1}, function(a, b) ferry.call('echo') return a < b end)",
                   10000, "bad_argument", "cannot yield here: a C function is in the way");
    stack_passed(s);
}

static void test_others_served_while_one_is_stopped(void **state)
{
    ferry_stack *s = *state;
    enum { N = 30 };
    const char *sleeper = "return ferry.call('sleep', 200)";
    const char *bomb = "while true do end";
    for (int i = 0; i < N; i++)
        assert_int_equal(ferry_client_submit(s->client, sleeper, strlen(sleeper), "sleep.lua", NULL,
                                             0, 20000, NULL),
                         FERRY_OK);
    uint64_t bomb_id;
    assert_int_equal(
        ferry_client_submit(s->client, bomb, strlen(bomb), "bomb.lua", NULL, 0, 500, &bomb_id),
        FERRY_OK);
    int ok = 0, stopped = 0;
    for (int i = 0; i < N + 1; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(s->client, 20000, &r), FERRY_OK);
        if (r.result->request_id == bomb_id) {
            assert_false(r.result->ok);
            assert_string_equal(r.result->error->code, "timeout");
            stopped++;
        } else {
            if (!r.result->ok)
                fail_msg("a sleeper failed: %s: %s", r.result->error->code,
                         r.result->error->message);
            ok++;
        }
        ferry_result_fini(&r);
    }
    assert_int_equal(ok, N);
    assert_int_equal(stopped, 1);
    next_script_is_fine(s);
    stack_passed(s);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_cpu_bombs),
        T(test_memory_bombs),
        T(test_output_flood),
        T(test_submission_asks_for_less),
        T(test_escapes),
        T(test_string_metatable_is_per_script),
        T(test_async_calls_everywhere),
        T(test_others_served_while_one_is_stopped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * engine_script_test: one script's life (engine-host/script.c, ferry_lib.c)
 * with a fake host in place of the engine: ferry.call is recorded, answered
 * by the test, and the result checked. No sockets, no event loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_value.h"
#include "script.h"
#include "watchdog.h"

#include <lua.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int calls;           /* calls accepted */
    char function[64];   /* of the last call */
    Ferry__Value **args; /* of the last call (owned) */
    size_t nargs;
    ferry_err refuse; /* refuse calls with this error when set */
    int ticks;        /* calls of the host's tick */
} fake_host;

static void fake_tick(void *ctx)
{
    fake_host *f = ctx;
    f->ticks++;
}

static ferry_err fake_call(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                           size_t nargs, uint32_t tag, char *why, size_t whylen)
{
    (void)s;
    (void)tag;
    fake_host *f = ctx;
    if (f->refuse) {
        ferry_values_free(args, nargs);
        snprintf(why, whylen, "fake host refuses");
        return f->refuse;
    }
    f->calls++;
    snprintf(f->function, sizeof f->function, "%s", function);
    ferry_values_free(f->args, f->nargs);
    f->args = args;
    f->nargs = nargs;
    return FERRY_OK;
}

typedef struct {
    fake_host fake;
    engine_script_host host;
    engine_script *s;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->host = (engine_script_host){.call = fake_call, .tick = fake_tick, .ctx = &fx->fake};
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    engine_script_destroy(&fx->s);
    ferry_values_free(fx->fake.args, fx->fake.nargs);
    free(fx);
    return 0;
}

static const engine_script_limits default_limits = {
    .timeout_ms = 10000, .max_output = 1 << 20, .max_memory = 16 << 20};

static engine_script_state start_with(fixture *fx, const engine_script_limits *limits,
                                      const char *src, const char *name, Ferry__Value *const *args,
                                      size_t nargs)
{
    fx->s = engine_script_new(&fx->host, limits, 7);
    assert_non_null(fx->s);
    return engine_script_start(fx->s, src, strlen(src), name, args, nargs);
}

static engine_script_state start(fixture *fx, const char *src)
{
    return start_with(fx, &default_limits, src, NULL, NULL, 0);
}

static void expect_error(fixture *fx, const char *code, const char *message_part)
{
    assert_true(fx->s->done);
    Ferry__Result res = FERRY__RESULT__INIT;
    Ferry__Error err = FERRY__ERROR__INIT;
    engine_script_result(fx->s, &res, &err);
    if (res.ok)
        fail_msg("script succeeded, expected %s", code);
    assert_non_null(res.error);
    if (strcmp(res.error->code, code) != 0 || !strstr(res.error->message, message_part))
        fail_msg("got %s \"%s\", want %s \"...%s...\"", res.error->code, res.error->message, code,
                 message_part);
    assert_int_equal(res.script_id, 7);
}

static void expect_ok(fixture *fx, size_t nvalues)
{
    assert_true(fx->s->done);
    if (!fx->s->ok)
        fail_msg("script failed: %s: %s", fx->s->err_code, fx->s->err_message);
    assert_int_equal(fx->s->n_values, nvalues);
}

static const Ferry__Value *value(fixture *fx, size_t i)
{
    assert_true(i < fx->s->n_values);
    return fx->s->values[i];
}

static void want_string(fixture *fx, size_t i, const char *want)
{
    const Ferry__Value *v = value(fx, i);
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    if (v->string.len != strlen(want) || memcmp(v->string.data, want, v->string.len) != 0)
        fail_msg("value %zu: got \"%.*s\", want \"%s\"", i + 1, (int)v->string.len,
                 (const char *)v->string.data, want);
}

static engine_script_state answer_values(fixture *fx, Ferry__Value **values, size_t n)
{
    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.values = values;
    reply.n_values = n;
    engine_script_answer a = {.reply = &reply};
    return engine_script_resume(fx->s, &a);
}

static engine_script_state answer_error(fixture *fx, const char *code, const char *message)
{
    Ferry__Reply reply = FERRY__REPLY__INIT;
    Ferry__Error error = FERRY__ERROR__INIT;
    error.code = (char *)code;
    error.message = (char *)message;
    reply.error = &error;
    engine_script_answer a = {.reply = &reply};
    return engine_script_resume(fx->s, &a);
}

static void test_return_values(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "return 1, 2.5, 'x\\0y', {a = {1, 2}}, nil"), ENGINE_SCRIPT_DONE);
    expect_ok(fx, 5);
    assert_int_equal(value(fx, 0)->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_int_equal(value(fx, 1)->kind_case, FERRY__VALUE__KIND_NUMBER);
    assert_int_equal(value(fx, 2)->string.len, 3);
    assert_int_equal(value(fx, 3)->kind_case, FERRY__VALUE__KIND_TABLE);
    assert_int_equal(value(fx, 4)->kind_case, FERRY__VALUE__KIND_NIL);
}

static void test_print(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "print('a', 1, nil, true, 2.5) print() "
                               "print(setmetatable({}, {__tostring = function() return 'T' end}))"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 0);
    assert_string_equal(fx->s->output.data, "a\t1\tnil\ttrue\t2.5\n\nT\n");
}

static void test_output_limit(void **state)
{
    fixture *fx = *state;
    engine_script_limits lim = default_limits;
    lim.max_output = 10;
    assert_int_equal(
        start_with(fx, &lim, "print('12345') print('67890') print('x')", NULL, NULL, 0),
        ENGINE_SCRIPT_DONE);
    expect_error(fx, "limit", "output limit of 10 bytes exceeded");
    assert_int_equal(fx->s->output.len, 10);
    assert_memory_equal(fx->s->output.data, "12345\n6789", 10);
    /* Caught or not, the script ends there. */
    engine_script_destroy(&fx->s);
    assert_int_equal(start_with(fx, &lim,
                                "for i = 1, 100 do pcall(print, 'xxxx') end\n"
                                "local ok, e = pcall(print, 'again') return 'survived'",
                                NULL, NULL, 0),
                     ENGINE_SCRIPT_DONE);
    expect_error(fx, "limit", "output limit of 10 bytes exceeded");
}

static void test_syntax_error(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "return +"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "syntax_error", "script:1:");
    engine_script_destroy(&fx->s);
    assert_int_equal(start_with(fx, &default_limits, "x = = 1", "job.lua", NULL, 0),
                     ENGINE_SCRIPT_DONE);
    expect_error(fx, "syntax_error", "job.lua:1:");
    /* A binary chunk is not source. */
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "\x1bLua"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "syntax_error", "binary chunk");
}

static void test_runtime_errors(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "local x = 1\nerror('boom')"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "script:2: boom");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "error({})"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "(error object is a table value)");
    engine_script_destroy(&fx->s);
    assert_int_equal(
        start(fx, "error(setmetatable({}, {__tostring = function() return 'mine' end}))"),
        ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "mine");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "local t = nil; return t.x"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "attempt to index a nil value");
}

static void test_error_text_is_utf8(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "error('caf\\xc3\\xa9 \\xff\\xc3 ok', 0)"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "caf\xc3\xa9 ?? ok");
}

static void test_call_echo(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx,
                           "local a, b, c, d = ferry.call('echo', 1, 2.5, 'x\\0y', {a = {1, 2}})\n"
                           "return a, b, c, d"),
                     ENGINE_SCRIPT_WAITING);
    assert_int_equal(fx->fake.calls, 1);
    assert_string_equal(fx->fake.function, "echo");
    assert_int_equal(fx->fake.nargs, 4);
    assert_int_equal(fx->s->pending, 1);
    assert_int_equal(answer_values(fx, fx->fake.args, fx->fake.nargs), ENGINE_SCRIPT_DONE);
    expect_ok(fx, 4);
    for (size_t i = 0; i < 4; i++)
        assert_true(ferry_value_equal(value(fx, i), fx->fake.args[i]));
}

static void test_many_calls(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "local sum = 0\n"
                               "for i = 1, 5 do sum = sum + ferry.call('inc', i) end\n"
                               "return sum"),
                     ENGINE_SCRIPT_WAITING);
    engine_script_state st = ENGINE_SCRIPT_WAITING;
    for (int i = 1; st == ENGINE_SCRIPT_WAITING; i++) {
        assert_true(i <= 5);
        assert_int_equal(fx->fake.args[0]->integer, i);
        Ferry__Value *v = ferry_value_int(i + 1);
        st = answer_values(fx, &v, 1);
        ferry_value_free(v);
    }
    expect_ok(fx, 1);
    assert_int_equal(value(fx, 0)->integer, 2 + 3 + 4 + 5 + 6);
}

static void test_call_error_object(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "local ok, e = pcall(ferry.call, 'f')\n"
                               "return ok, e.code, e.message, tostring(e), getmetatable(e)"),
                     ENGINE_SCRIPT_WAITING);
    assert_int_equal(answer_error(fx, "call_error", "nope"), ENGINE_SCRIPT_DONE);
    expect_ok(fx, 5);
    assert_int_equal(value(fx, 0)->kind_case, FERRY__VALUE__KIND_BOOLEAN);
    assert_false(value(fx, 0)->boolean);
    want_string(fx, 1, "call_error");
    want_string(fx, 2, "nope");
    want_string(fx, 3, "call_error: nope");
    want_string(fx, 4, "ferry.error");
}

static void test_uncaught_call_errors(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "ferry.call('f')"), ENGINE_SCRIPT_WAITING);
    assert_int_equal(answer_error(fx, "no_worker", "nobody serves f"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "no_worker", "nobody serves f");
    engine_script_destroy(&fx->s);

    /* An empty code from a peer reads as call_error. */
    assert_int_equal(start(fx, "ferry.call('f')"), ENGINE_SCRIPT_WAITING);
    assert_int_equal(answer_error(fx, "", "?"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "call_error", "?");
    engine_script_destroy(&fx->s);

    /* A local answer (the engine's call timer). */
    assert_int_equal(start(fx, "ferry.call('f')"), ENGINE_SCRIPT_WAITING);
    engine_script_answer a = {.code = "timeout", .message = "call to 'f' timed out after 5 ms"};
    assert_int_equal(engine_script_resume(fx->s, &a), ENGINE_SCRIPT_DONE);
    expect_error(fx, "timeout", "timed out after 5 ms");
}

static void test_bad_reply_value(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "local ok, e = pcall(ferry.call, 'f') return e.code, e.message"),
                     ENGINE_SCRIPT_WAITING);
    Ferry__Value *t = ferry_value_table();
    assert_int_equal(ferry_table_set(t, ferry_value_nil(), ferry_value_int(1)), FERRY_OK);
    assert_int_equal(answer_values(fx, &t, 1), ENGINE_SCRIPT_DONE);
    ferry_value_free(t);
    expect_ok(fx, 2);
    want_string(fx, 0, "bad_value");
    want_string(fx, 1, "reply value 1: table key is nil");
}

static void test_cannot_yield(void **state)
{
    fixture *fx = *state;
    assert_int_equal(
        start(fx, "table.sort({3, 2, 1}, function(a, b) ferry.call('x') return a < b end)"),
        ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "ferry.call cannot yield here");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "string.gsub('abc', '%w', function(c) return ferry.call('x') end)"),
                     ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "ferry.call cannot yield here");
    engine_script_destroy(&fx->s);
    assert_int_equal(fx->fake.calls, 0);
    /* A coroutine of the script's own is no obstacle (engine_coroutines_test). */
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "coroutine.wrap(function() ferry.call('x') end)()"),
                     ENGINE_SCRIPT_WAITING);
}

static void test_yield_through_pcall_and_metamethod(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "local t = setmetatable({}, {__index = function(_, k) "
                               "return ferry.call('get', k) end})\n"
                               "local ok, v = pcall(function() return t.key end)\n"
                               "return ok, v"),
                     ENGINE_SCRIPT_WAITING);
    assert_string_equal(fx->fake.function, "get");
    Ferry__Value *v = ferry_value_cstring("got");
    assert_int_equal(answer_values(fx, &v, 1), ENGINE_SCRIPT_DONE);
    ferry_value_free(v);
    expect_ok(fx, 2);
    assert_true(value(fx, 0)->boolean);
    want_string(fx, 1, "got");
}

static void test_bad_arguments(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "ferry.call('x', 1, {x = print})"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_value", "args[2].x: cannot send a function");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "local ok, e = pcall(ferry.call, 'x', 1, {x = print}) "
                               "return tostring(e)"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    want_string(fx, 0, "bad_value: args[2].x: cannot send a function");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "ferry.call(42)"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "string expected, got number");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "ferry.call('a\\0b')"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "zero bytes");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "ferry.call('a\\255b')"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "UTF-8");
    engine_script_destroy(&fx->s);
    /* Names are 1 to 255 bytes, in ferry.all too (checked before anything is sent). */
    assert_int_equal(start(fx, "ferry.call(('x'):rep(256))"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "function name of 256 bytes: 1 to 255 allowed");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "ferry.call('')"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "function name of 0 bytes");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "ferry.all({'echo'}, {('x'):rep(256)})"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "#2 to 'ferry.all' (function name of 256 bytes");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "ferry.all({'echo'}, {'a\\0b'})"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_argument", "zero bytes");
    assert_int_equal(fx->fake.calls, 0);
}

static void test_bad_return(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "return 1, {f = print}"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "bad_value", "return[2].f: cannot send a function");
}

static void test_host_refuses(void **state)
{
    fixture *fx = *state;
    fx->fake.refuse = FERRY_EOVERLOADED;
    assert_int_equal(start(fx, "local ok, e = pcall(ferry.call, 'x') return e.code, e.message"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 2);
    want_string(fx, 0, "overloaded");
    want_string(fx, 1, "fake host refuses");
    assert_int_equal(fx->s->pending, 0);
}

static void test_args(void **state)
{
    fixture *fx = *state;
    Ferry__Value *args[3] = {ferry_value_int(1), ferry_value_cstring("two"), ferry_value_nil()};
    assert_int_equal(start_with(fx, &default_limits,
                                "local a, b = ...\n"
                                "return ferry.args[1], ferry.args[2], a, b, select('#', ...)",
                                NULL, args, 3),
                     ENGINE_SCRIPT_DONE);
    for (int i = 0; i < 3; i++)
        ferry_value_free(args[i]);
    expect_ok(fx, 5);
    assert_int_equal(value(fx, 0)->integer, 1);
    want_string(fx, 1, "two");
    assert_int_equal(value(fx, 2)->integer, 1);
    want_string(fx, 3, "two");
    assert_int_equal(value(fx, 4)->integer, 3);
}

static void test_memory_limit(void **state)
{
    fixture *fx = *state;
    engine_script_limits lim = default_limits;
    lim.max_memory = 1 << 20;
    assert_int_equal(
        start_with(fx, &lim, "local t = {} for i = 1, 1e7 do t[i] = i end", NULL, NULL, 0),
        ENGINE_SCRIPT_DONE);
    expect_error(fx, "limit", "memory limit of 1048576 bytes exceeded");
    engine_script_destroy(&fx->s);
    assert_int_equal(start_with(fx, &lim, "return #string.rep('x', 1e8)", NULL, NULL, 0),
                     ENGINE_SCRIPT_DONE);
    expect_error(fx, "limit", "memory limit");
    engine_script_destroy(&fx->s);
    /* pcall cannot swallow it, however often it tries. */
    static const char *const caught[] = {
        "local ok = pcall(string.rep, 'x', 1e8) return ok",
        "for i = 1, 10 do pcall(function() local t = {} for i = 1, 1e7 do t[i] = i end end) end "
        "return 'survived'",
        "local ok, e = xpcall(function() return ('x'):rep(1e8) end, function(m) return m end) "
        "return 'survived'",
        "return pcall(table.concat, {('x'):rep(1e5), ('y'):rep(1e5)}, ('z'):rep(1e6))",
        "local ok = load(function() return ('x'):rep(1e8) end) return 'survived'",
    };
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++) {
        engine_script_destroy(&fx->s);
        assert_int_equal(start_with(fx, &lim, caught[i], NULL, NULL, 0), ENGINE_SCRIPT_DONE);
        expect_error(fx, "limit", "memory limit of 1048576 bytes exceeded");
    }
    /* A request Lua refuses before asking (string.rep's own size check) is
     * an ordinary error. */
    engine_script_destroy(&fx->s);
    assert_int_equal(
        start_with(fx, &lim, "return pcall(string.rep, 'x', 1e10)", NULL, NULL, 0),
        ENGINE_SCRIPT_DONE);
    expect_ok(fx, 2);
    want_string(fx, 1, "resulting string too large");
    /* The limit is on live data: garbage is collected when the cap is hit. */
    engine_script_destroy(&fx->s);
    assert_int_equal(start_with(fx, &lim,
                                "local keep = {}\n"
                                "for i = 1, 2000 do local t = {} for k = 1, 100 do t[k] = k end\n"
                                "  keep[i % 10] = ('x'):rep(20000) .. i end\n"
                                "return collectgarbage('count') < 1024",
                                NULL, NULL, 0),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    assert_true(value(fx, 0)->boolean);
    /* A state too small to be built at all. */
    engine_script_destroy(&fx->s);
    lim.max_memory = 4096;
    assert_int_equal(start_with(fx, &lim, "return 1", NULL, NULL, 0), ENGINE_SCRIPT_DONE);
    expect_error(fx, "limit", "memory limit of 4096 bytes exceeded");
}

static void test_instruction_limit(void **state)
{
    fixture *fx = *state;
    engine_script_limits lim = default_limits;
    lim.max_instructions = 200000;
    static const char *const bombs[] = {
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "local ok, e = pcall(function() while true do end end) return tostring(e)",
        "return ('a'):rep(40):match(('a*'):rep(40) .. 'b')",
        "return table.insert(setmetatable({}, {__len = function() return 2^62 end}), 1, 'x')",
        "return table.remove(setmetatable({}, {__len = function() return 2^62 end}), 1)",
        "return table.move({}, 1, 2^62, 2)",
        "local t = {} for i = 1, 1e6 do t[i] = i end return #t",
    };
    for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
        assert_int_equal(start_with(fx, &lim, bombs[i], NULL, NULL, 0), ENGINE_SCRIPT_DONE);
        expect_error(fx, "limit", "instruction limit of 200000 exceeded");
        engine_script_destroy(&fx->s);
    }
    assert_int_equal(start_with(fx, &lim, "local n = 0 for i = 1, 10000 do n = n + i end return n",
                                NULL, NULL, 0),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    assert_true(fx->s->instructions <= 200000);
}

static void test_host_ticks_during_long_runs(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "local n = 0 for i = 1, 1000 do n = n + i end return n"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    assert_int_equal(fx->fake.ticks, 0);
    engine_script_destroy(&fx->s);
    /* About every ENGINE_SCRIPT_TICK_MS while a script keeps the thread. */
    assert_int_equal(start(fx, "local t = os.clock() while os.clock() - t < 0.35 do end\n"
                               "return true"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    if (fx->fake.ticks < 2 || fx->fake.ticks > 20)
        fail_msg("%d ticks", fx->fake.ticks);
}

/* With the watchdog and no instruction limit, a script runs without the
 * count hook, and the watchdog's tick still reaches the host and the
 * deadline; with a limit, the count hook stays. */
static void test_no_count_hook_without_limit(void **state)
{
    fixture *fx = *state;
    char err[128];
    assert_int_equal(engine_watchdog_init(0, err, sizeof err), FERRY_OK);
    static const char busy[] = "local t = os.clock() while os.clock() - t < 0.35 do end\n"
                               "return coroutine.wrap(function() return 7 end)()";
    assert_int_equal(start(fx, busy), ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    assert_int_equal(value(fx, 0)->integer, 7);
    assert_int_equal(lua_gethookmask(fx->s->L), 0);
    assert_int_equal(lua_gethookmask(fx->s->co), 0);
    if (fx->fake.ticks < 2 || fx->fake.ticks > 20)
        fail_msg("%d ticks", fx->fake.ticks);
    engine_script_destroy(&fx->s);

    engine_script_limits lim = default_limits;
    lim.timeout_ms = 200;
    assert_int_equal(start_with(fx, &lim, "local n = 0 while true do n = n + 1 end", NULL, NULL, 0),
                     ENGINE_SCRIPT_DONE);
    expect_error(fx, "timeout", "script deadline of 200 ms passed");
    engine_script_destroy(&fx->s);

    lim = default_limits;
    lim.max_instructions = 1000000000;
    assert_int_equal(start_with(fx, &lim, "return 1", NULL, NULL, 0), ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    assert_int_equal(lua_gethookmask(fx->s->co), LUA_MASKCOUNT);
    engine_watchdog_fini();
}

static void test_limits_clamp(void **state)
{
    (void)state;
    engine_script_limits engine = {
        .timeout_ms = 1000, .max_output = 100, .max_memory = 1 << 20, .max_instructions = 0};
    engine_script_limits asked = {0};
    engine_script_limits l = engine_script_limits_clamp(&engine, &asked);
    assert_int_equal(l.timeout_ms, 1000);
    assert_int_equal(l.max_output, 100);
    assert_int_equal(l.max_memory, 1 << 20);
    assert_int_equal(l.max_instructions, 0);
    asked = (engine_script_limits){
        .timeout_ms = 5000, .max_output = 50, .max_memory = 1 << 30, .max_instructions = 7};
    l = engine_script_limits_clamp(&engine, &asked);
    assert_int_equal(l.timeout_ms, 1000); /* never more */
    assert_int_equal(l.max_output, 50);   /* less is fine */
    assert_int_equal(l.max_memory, 1 << 20);
    assert_int_equal(l.max_instructions, 7); /* under no ceiling */
    engine.max_instructions = 5;
    l = engine_script_limits_clamp(&engine, &asked);
    assert_int_equal(l.max_instructions, 5);
}

static void test_deadline(void **state)
{
    fixture *fx = *state;
    engine_script_limits lim = default_limits;
    lim.timeout_ms = 50;
    static const char *const bombs[] = {
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "return pcall(function() while true do end end)",
        "local ok, e = pcall(function() while true do end end) return tostring(e)",
        "while true do xpcall(function() while true do end end, function(m) while true do end end) "
        "end",
        /* C functions the count hook cannot see into: metered */
        "return ('a'):rep(40):match(('a*'):rep(40) .. 'b')",
        "return (('a'):rep(2^16)):find(('a*'):rep(20) .. 'b')",
        "while true do pcall(string.gsub, ('a'):rep(30), ('a?'):rep(30) .. ('a'):rep(30), '') end",
        "return table.move({}, 1, 2^62, 2)",
        "return table.insert(setmetatable({}, {__len = function() return 2^62 end}), 1, 'x')",
        "while true do local ok = pcall(load, function() while true do end end) end",
        "local t = setmetatable({}, {__close = function() while true do end end})\n"
        "do local x <close> = t end",
        "while true do pcall(error, setmetatable({}, {__tostring = function() "
        "while true do end end})) end",
        "error(setmetatable({}, {__tostring = function() while true do end end}))",
    };
    for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
        assert_int_equal(start_with(fx, &lim, bombs[i], NULL, NULL, 0), ENGINE_SCRIPT_DONE);
        expect_error(fx, "timeout", "script deadline of 50 ms passed");
        engine_script_destroy(&fx->s);
    }
}

static void test_toplevel_yield(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "coroutine.yield(1)"), ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "attempt to yield from outside a coroutine");
}

static void test_fail_while_waiting(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "local x <close> = setmetatable({}, {__close = function() end})\n"
                               "ferry.call('x')"),
                     ENGINE_SCRIPT_WAITING);
    engine_script_fail(fx->s, FERRY_ETIMEOUT, "script deadline of 5 ms passed");
    expect_error(fx, "timeout", "script deadline of 5 ms passed");
    assert_int_equal(fx->s->pending, 0);
}

static void test_no_finalizers(void **state)
{
    fixture *fx = *state;
    /* Finalizers run with hooks off, beyond the deadline: refused. */
    assert_int_equal(
        start(fx, "keep = setmetatable({}, {__gc = function() while true do end end})"),
        ENGINE_SCRIPT_DONE);
    expect_error(fx, "script_error", "__gc metamethods are not allowed");
    engine_script_destroy(&fx->s);
    /* A __gc added later does not mark the table, so nothing runs at close. */
    assert_int_equal(start(fx, "local mt = {} keep = setmetatable({}, mt)\n"
                               "mt.__gc = function() while true do end end\n"
                               "for i = 1, 1e5 do local t = {} end\n"
                               "return getmetatable(keep) == mt"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 1);
    assert_true(value(fx, 0)->boolean);
    engine_script_destroy(&fx->s);
}

static void test_xpcall(void **state)
{
    fixture *fx = *state;
    /* Ordinary use: the handler sees the error, ferry.call yields inside. */
    assert_int_equal(start(fx, "return xpcall(function(x) return ferry.call('f', x) end, "
                               "function(m) return 'handled ' .. tostring(m) end, 5)"),
                     ENGINE_SCRIPT_WAITING);
    assert_int_equal(fx->fake.args[0]->integer, 5);
    assert_int_equal(answer_error(fx, "call_error", "bad"), ENGINE_SCRIPT_DONE);
    expect_ok(fx, 2);
    assert_false(value(fx, 0)->boolean);
    want_string(fx, 1, "handled call_error: bad");
    engine_script_destroy(&fx->s);
    assert_int_equal(start(fx, "return xpcall(function(a, b) return a + b end, print, 1, 2)"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 2);
    assert_int_equal(value(fx, 1)->integer, 3);
}

static void test_sandboxed(void **state)
{
    fixture *fx = *state;
    assert_int_equal(start(fx, "return io == nil, os.execute == nil, require == nil, "
                               "debug == nil, type(os.time())"),
                     ENGINE_SCRIPT_DONE);
    expect_ok(fx, 5);
    for (int i = 0; i < 4; i++)
        assert_true(value(fx, (size_t)i)->boolean);
    want_string(fx, 4, "number");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_return_values),
        T(test_print),
        T(test_output_limit),
        T(test_syntax_error),
        T(test_runtime_errors),
        T(test_error_text_is_utf8),
        T(test_call_echo),
        T(test_many_calls),
        T(test_call_error_object),
        T(test_uncaught_call_errors),
        T(test_bad_reply_value),
        T(test_cannot_yield),
        T(test_yield_through_pcall_and_metamethod),
        T(test_bad_arguments),
        T(test_bad_return),
        T(test_host_refuses),
        T(test_args),
        T(test_memory_limit),
        T(test_instruction_limit),
        T(test_limits_clamp),
        T(test_host_ticks_during_long_runs),
        T(test_no_count_hook_without_limit),
        T(test_deadline),
        T(test_toplevel_yield),
        T(test_fail_while_waiting),
        T(test_no_finalizers),
        T(test_xpcall),
        T(test_sandboxed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

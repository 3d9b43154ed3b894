/*
 * engine_state_pool_test: a state reused for the next script shows it
 * nothing of the last one (state_pool.h), and a state whose script broke a
 * limit is never reused.
 *
 * Each test runs a script that changes everything a script can reach, then
 * a second script that the pool must give the very same state (the pool is
 * cleared first, so the second script can only get the first one's state),
 * and looks at all of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_value.h"
#include "script.h"
#include "state_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ferry_err refuse_call(void *ctx, engine_script *s, const char *function,
                             Ferry__Value **args, size_t nargs, uint32_t tag, char *why,
                             size_t whylen)
{
    (void)ctx;
    (void)s;
    (void)function;
    (void)tag;
    ferry_values_free(args, nargs);
    snprintf(why, whylen, "no calls here");
    return FERRY_ECALL;
}

static const engine_script_host host = {.call = refuse_call};
static const engine_script_limits limits = {
    .timeout_ms = 10000, .max_output = 1 << 20, .max_memory = 16 << 20};

/* Runs src to its end on the next state; returns the script (caller destroys). */
static engine_script *run(const char *src, const engine_script_limits *lim)
{
    engine_script *s = engine_script_new(&host, lim, 1);
    assert_non_null(s);
    assert_int_equal(engine_script_start(s, src, strlen(src), "pool.lua", NULL, 0),
                     ENGINE_SCRIPT_DONE);
    return s;
}

static void want_result(engine_script *s, const char *want)
{
    if (!s->ok)
        fail_msg("script failed: %s: %s", s->err_code, s->err_message);
    assert_int_equal(s->n_values, 1);
    const Ferry__Value *v = s->values[0];
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    if (v->string.len != strlen(want) || memcmp(v->string.data, want, v->string.len) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)v->string.len, (const char *)v->string.data,
                 want);
}

static double count_kb(engine_script *s)
{
    assert_true(s->ok);
    assert_int_equal(s->n_values, 1);
    return s->values[0]->kind_case == FERRY__VALUE__KIND_INTEGER ? (double)s->values[0]->integer
                                                                   : s->values[0]->number;
}

/* Everything the first script changes, the second must find as new. */
static const char vandal[] =
    "x = 1; _G.y = {} ; print = nil\n"
    "string.foo = 1; string.format = nil; string.upper = string.lower\n"
    "getmetatable('').__index = {len = function() return -1 end}\n"
    "getmetatable('').__add = function() return 'added' end\n"
    "setmetatable(string, {__index = function() return 'meta' end})\n"
    "setmetatable(_G, {__index = function() return 42 end, __newindex = rawset})\n"
    "table.insert = tostring; math.pi = 3; math.randomseed(42)\n"
    "os.time = nil; utf8.char = nil; coroutine.wrap = nil; ferry.call = nil\n"
    "ferry.args.leak = 'secret'; ferry.extra = 'leak'\n"
    "local co = coroutine.create(function()\n"
    "  local x <close> = setmetatable({}, {__close = function() SEEN = true end})\n"
    "  coroutine.yield()\n"
    "end)\n"
    "coroutine.resume(co); KEEP = co\n"
    "local big = {} for i = 1, 2000 do big[i] = string.rep(tostring(i), 3) end; BIG = big\n"
    "return 'done'";

static const char inspect[] =
    "local bad = {}\n"
    "local function check(ok, what) if not ok then bad[#bad + 1] = what end end\n"
    "check(x == nil and y == nil and KEEP == nil and BIG == nil and SEEN == nil, 'globals')\n"
    "check(print ~= nil, 'print')\n"
    "check(string.foo == nil and string.format ~= nil, 'string table')\n"
    "check(('a'):upper() == 'A' and ('abc'):len() == 3, 'string methods')\n"
    "check(('1' + 1) == 2 and getmetatable('').__index == string, 'string metatable')\n"
    "check(getmetatable(string) == nil and getmetatable(_G) == nil, 'metatables')\n"
    "check(rawget(_G, 'nothing') == nil and nothing == nil, '_G __index')\n"
    "check(table.insert ~= tostring and table.insert ~= table.remove, 'table.insert')\n"
    "check(math.pi > 3.14 and math.pi < 3.15 and math.huge > 0, 'math values')\n"
    "check(math.type(math.maxinteger) == 'integer', 'math.maxinteger')\n"
    "check(utf8.charpattern ~= 'x' and _VERSION == 'Lua 5.4', 'strings')\n"
    "check(_G._G == _G and type(string.format) == 'function' and rawget(_G, 1) == nil, '_G')\n"
    "check(rawget(string, 1) == nil and getmetatable(math) == nil, 'string, math')\n"
    "check(getmetatable(getmetatable('')) == nil and getmetatable('').__index == string, 'strmt')\n"
    "check(coroutine.wrap ~= coroutine.create and ferry.call ~= ferry.all, 'functions')\n"
    "check(print ~= tostring and string.upper ~= string.lower and string.upper ~= load, 'fns')\n"
    "check(os.time and utf8.char and coroutine.wrap and ferry.call, 'library functions')\n"
    "check(ferry.args.leak == nil and ferry.extra == nil, 'ferry table')\n"
    "return #bad == 0 and 'clean' or table.concat(bad, ', ')";

static void test_reused_state_is_pristine(void **state)
{
    (void)state;
    engine_pool_clear();
    /* The baseline: what a fresh state counts. */
    engine_script *s = run("return collectgarbage('count')", &limits);
    assert_false(s->warm);
    double fresh_kb = count_kb(s);
    engine_script_destroy(&s);
    engine_pool_clear();

    s = run(vandal, &limits);
    want_result(s, "done");
    engine_script_destroy(&s);
    assert_int_equal(engine_pool_idle(), 1);

    s = run(inspect, &limits);
    assert_true(s->warm); /* the vandal's state, reset */
    want_result(s, "clean");
    engine_script_destroy(&s);

    /* The heap is back at the fresh state's baseline, but for the string
     * table Lua never shrinks below four times its strings in use
     * (ENGINE_POOL_SLACK_BYTES). */
    s = run("return collectgarbage('count')", &limits);
    assert_true(s->warm);
    double reused_kb = count_kb(s);
    if (reused_kb > fresh_kb + ENGINE_POOL_SLACK_BYTES / 1024.0 || reused_kb < fresh_kb - 2.0)
        fail_msg("heap of a reused state %.1f KB, of a fresh one %.1f KB", reused_kb, fresh_kb);
    engine_script_destroy(&s);
    engine_pool_clear();
}

/* Each change alone, however small, is found and undone: a reset that leaves
 * a table it thinks untouched must not be fooled by one changed entry. */
static void test_each_change_alone(void **state)
{
    (void)state;
    static const char *const changes[] = {
        "x = 1",
        "print = nil",
        "_G.print = tostring",
        "string.upper = string.lower",
        "string.upper = load",
        "string.foo = 1",
        "string.format = nil",
        "math.pi = 3",
        "math.pi = 0/0",
        "math.maxinteger = 1.0 * math.maxinteger",
        "math.huge = -math.huge",
        "table.insert = tostring",
        "table.insert = table.remove",
        "utf8.charpattern = 'x'",
        "os.time = nil",
        "coroutine.wrap = coroutine.create",
        "ferry.call = ferry.all",
        "ferry.args.leak = 1",
        "_G._G = string",
        "_G.string = {}",
        "getmetatable('').__add = tostring",
        "getmetatable('').__index = table",
        "setmetatable(math, {})",
        "setmetatable(_G, {})",
        "setmetatable(getmetatable(''), {__index = {}})",
        "_VERSION = 'Lua 9'",
        "rawset(_G, 1, true)",
        "string[1] = 'x'",
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        engine_pool_clear();
        engine_script *s = run(changes[i], &limits);
        if (!s->ok)
            fail_msg("%s: %s", changes[i], s->err_message);
        engine_script_destroy(&s);
        assert_int_equal(engine_pool_idle(), 1);
        s = run(inspect, &limits);
        assert_true(s->warm);
        if (!s->ok || s->values[0]->string.len != 5 ||
            memcmp(s->values[0]->string.data, "clean", 5) != 0)
            fail_msg("after `%s` the next script found: %.*s%s", changes[i],
                     s->ok ? (int)s->values[0]->string.len : 0,
                     s->ok ? (const char *)s->values[0]->string.data : "",
                     s->ok ? "" : s->err_message);
        engine_script_destroy(&s);
    }
    engine_pool_clear();
}

/* math.random does not continue the last script's sequence. */
static void test_random_seed_is_fresh(void **state)
{
    (void)state;
    engine_pool_clear();
    /* The next script on the same state: were the seed kept, math.random
     * would give the second number of seed 7's sequence. */
    engine_script *want = run("math.randomseed(7) math.random(1 << 40) "
                              "return tostring(math.random(1 << 40))",
                              &limits);
    char second[64];
    snprintf(second, sizeof second, "%.*s", (int)want->values[0]->string.len,
             (const char *)want->values[0]->string.data);
    engine_script_destroy(&want);
    engine_script *s = run("math.randomseed(7) math.random(1 << 40) return 'x'", &limits);
    engine_script_destroy(&s);
    s = run("return tostring(math.random(1 << 40))", &limits);
    assert_true(s->warm);
    if (s->values[0]->string.len == strlen(second) &&
        memcmp(s->values[0]->string.data, second, strlen(second)) == 0)
        fail_msg("the reused state continued the last script's random sequence");
    engine_script_destroy(&s);
    engine_pool_clear();
}

/* A script that broke a limit, or was stopped waiting, leaves no state behind. */
static void test_broken_states_are_closed(void **state)
{
    (void)state;
    engine_pool_clear();
    engine_script_limits few = limits;
    few.max_instructions = 100000;
    engine_script *s = run("while true do end", &few);
    assert_string_equal(s->err_code, "limit");
    engine_script_destroy(&s);
    assert_int_equal(engine_pool_idle(), 0);

    engine_script_limits small = limits;
    small.max_memory = 200 * 1024;
    s = run("local t = {} for i = 1, 1e6 do t[i] = i end", &small);
    assert_string_equal(s->err_code, "limit");
    engine_script_destroy(&s);
    assert_int_equal(engine_pool_idle(), 0);

    /* A script error leaves a sound state: it is reused. */
    s = run("error('plain')", &limits);
    assert_string_equal(s->err_code, "script_error");
    engine_script_destroy(&s);
    assert_int_equal(engine_pool_idle(), 1);
    engine_pool_clear();
}

/* The instruction and memory counters are the script's own: a script that
 * used most of a limit leaves the next one on the same state all of it. */
static void test_counters_start_afresh(void **state)
{
    (void)state;
    engine_script_limits lim = limits;
    lim.max_instructions = 400000;
    lim.max_memory = 400 * 1024;
    /* About 300,000 instructions and 300 KB of strings and tables, within
     * both limits; run twice on one state it would break both. */
    const char *heavy = "local t = {} for i = 1, 3000 do t[i] = ('x'):rep(64) .. i end\n"
                        "local n = 0 for i = 1, 110000 do n = n + i end\n"
                        "return 'heavy'";
    engine_pool_clear();
    for (int i = 0; i < 3; i++) {
        engine_script *s = run(heavy, &lim);
        want_result(s, "heavy");
        if (i > 0)
            assert_true(s->warm); /* the last one's state */
        engine_script_destroy(&s);
        assert_int_equal(engine_pool_idle(), 1);
    }
    engine_pool_clear();
}

/* Globals and strings come back to the baseline; a grown library table does not. */
static void test_grown_states(void **state)
{
    (void)state;
    engine_pool_clear();
    engine_script *s = run("for i = 1, 500 do _G['g' .. i] = ('%d'):format(i) end", &limits);
    engine_script_destroy(&s);
    assert_int_equal(engine_pool_idle(), 1);
    s = run("for i = 1, 500 do string['g' .. i] = i end", &limits);
    engine_script_destroy(&s);
    assert_int_equal(engine_pool_idle(), 0);
    engine_pool_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reused_state_is_pristine),
        cmocka_unit_test(test_each_change_alone),
        cmocka_unit_test(test_random_seed_is_fresh),
        cmocka_unit_test(test_broken_states_are_closed),
        cmocka_unit_test(test_grown_states),
        cmocka_unit_test(test_counters_start_afresh),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    engine_pool_clear();
    return rc;
}

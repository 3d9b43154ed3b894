/*
 * attack_test: what an outside review did to crash or hang an engine, and
 * the Lua 5.4.4 bugs a script can reach, each through the real processes
 * while an innocent script runs on the same engine (stack_attack): the
 * attacker gets a clear error naming the cause, the innocent script finishes,
 * the engine process stays up and serves the next script.
 */
#include "harness.h"

#include "ferry_value.h"

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

/* The attack must succeed and return one string containing part. */
static void expect_returns(ferry_stack *s, const char *attack, const char *part)
{
    ferry_result r;
    stack_attack(s, engine_idx, attack, 20000, NULL, NULL, &r);
    assert_int_equal(r.result->n_values, 1);
    const Ferry__Value *v = r.result->values[0];
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    char got[512];
    snprintf(got, sizeof got, "%.*s", (int)v->string.len, (const char *)v->string.data);
    if (!strstr(got, part))
        fail_msg("%s\nreturned \"%s\", want ...%s...", attack, got, part);
    ferry_result_fini(&r);
}

/* Item 1: each coroutine's to-be-closed variable closes the previous one. */
static void test_nested_close(void **state)
{
    ferry_stack *s = *state;
    expect_returns(s,
                   "local co\n"
                   "for i = 1, 20000 do\n"
                   "  local prev = co\n"
                   "  co = coroutine.create(function()\n"
                   "    local x <close> = setmetatable({}, {__close = function()\n"
                   "      if prev then assert(coroutine.close(prev)) end end})\n"
                   "    coroutine.yield()\n"
                   "  end)\n"
                   "  coroutine.resume(co)\n"
                   "end\n"
                   "local ok, err = coroutine.close(co)\n"
                   "return tostring(ok) .. ' ' ..\n"
                   "  (err:find('C stack overflow$') and 'C stack overflow' or err)",
                   "false C stack overflow");
    /* coroutine.wrap's error path closes too (the same root). */
    expect_returns(s,
                   "local function f(n)\n"
                   "  local x <close> = setmetatable({}, {__close = function()\n"
                   "    if n > 0 then pcall(coroutine.wrap(f), n - 1) end end})\n"
                   "  error('x')\n"
                   "end\n"
                   "return tostring(select(2, pcall(coroutine.wrap(f), 20000)))",
                   "x");
    /* Closing and resuming in turn: each resume starts Lua's count afresh. */
    expect_returns(s,
                   "local co\n"
                   "for i = 1, 20000 do\n"
                   "  local prev = co\n"
                   "  co = coroutine.create(function()\n"
                   "    local x <close> = setmetatable({}, {__close = function()\n"
                   "      if prev then coroutine.resume(coroutine.create(function()\n"
                   "        coroutine.close(prev) end)) end end})\n"
                   "    coroutine.yield()\n"
                   "  end)\n"
                   "  coroutine.resume(co)\n"
                   "end\n"
                   "return tostring(coroutine.close(co))",
                   "true");
    stack_passed(s);
}

/* Item 2: a caught "pattern too complex" left gmatch's iterator unsound. */
static void test_gmatch_after_error(void **state)
{
    ferry_stack *s = *state;
    const char *attack = "local it = string.gmatch(('a'):rep(300000), ('a?'):rep(300000))\n"
                         "local ok, err = pcall(it)\n"
                         "local ok2, err2 = pcall(it)\n"
                         "return tostring(err) .. ' / ' .. tostring(err2)";
    /* The second call errs as the first did, instead of recursing. */
    expect_returns(s, attack, "pattern too complex / pattern too complex");
    stack_passed(s);
}

/* Item 3: a finalizer through the error object's metatable. */
static void test_error_metatable_is_protected(void **state)
{
    ferry_stack *s = *state;
    stack_attack(s, engine_idx,
                 "local ok, e = pcall(ferry.call, 'no.such.function')\n"
                 "getmetatable(e).__gc = function() while true do end end\n"
                 "local ok2, e2 = pcall(ferry.call, 'no.such.function')\n"
                 "return 1",
                 20000, "script_error", "attempt to index a string value", NULL);
    expect_returns(s,
                   "local ok, e = pcall(ferry.call, 'no.such.function')\n"
                   "local r = {getmetatable(e), tostring(pcall(setmetatable, e, nil))}\n"
                   "r[3] = tostring(pcall(setmetatable, {}, getmetatable(e)))\n"
                   "return table.concat(r, ' ')",
                   "ferry.error false false");
    stack_passed(s);
}

/* Item 4: compiling is metered and the source is bounded. */
static void test_compiling_is_bounded(void **state)
{
    ferry_stack *s = *state;
    /* 32000 gotos to a far label per piece (the most Lua allows in one
     * function): compiled again and again until the deadline. */
    stack_attack(s, engine_idx,
                 "local t = {}\n"
                 "for i = 1, 32000 do t[i] = 'goto far' end\n"
                 "local piece = 'do ' .. table.concat(t, '\\n') .. '\\n end ::far::\\n'\n"
                 "while true do load(piece) end",
                 1500, "timeout", "script deadline of 1500 ms passed", NULL);
    /* The same in one submitted source, three functions' worth of gotos. */
    char *src = malloc(1 << 20);
    assert_non_null(src);
    size_t n = 0;
    for (int f = 0; f < 3; f++) {
        n += (size_t)sprintf(src + n, "do\n");
        for (int i = 0; i < 32000; i++)
            n += (size_t)sprintf(src + n, "goto far%d\n", f);
        n += (size_t)sprintf(src + n, "end ::far%d::\n", f);
    }
    assert_true(n < (1 << 20));
    stack_attack(s, engine_idx, src, 300, "timeout", "script deadline of 300 ms passed", NULL);
    free(src);
    /* Over --max-source: refused before compiling, and inside load too. */
    size_t big = (1 << 20) + 100;
    char *huge = malloc(big + 1);
    assert_non_null(huge);
    memset(huge, ' ', big);
    memcpy(huge, "return 1", 8);
    huge[big] = '\0';
    stack_attack(s, engine_idx, huge, 20000, "limit",
                 "source of 1048676 bytes is over the limit of 1048576 bytes (--max-source)",
                 NULL);
    free(huge);
    expect_returns(s, "return select(2, load(('x = 1\\n'):rep(200000)))",
                   "chunk too large: over the limit of 1048576 bytes (--max-source)");
    expect_returns(s,
                   "local n = 0\n"
                   "return select(2, load(function() n = n + 1\n"
                   "  if n < 1000 then return ('y = 2\\n'):rep(1000) end end))",
                   "chunk too large");
    /* The instruction limit counts compiling too. */
    ferry_limits few = {.max_instructions = 5000000};
    ferry_client_set_limits(s->client, &few);
    stack_attack(s, engine_idx,
                 "local src = ('local x = 1\\n'):rep(50000)\n"
                 "while true do load(src) end",
                 20000, "limit", "instruction limit of 5000000 exceeded", NULL);
    ferry_client_set_limits(s->client, NULL);
    stack_passed(s);
}

/* Item 8: only Ferry raises Ferry's codes; a script's own codes pass. */
static void test_forged_errors(void **state)
{
    ferry_stack *s = *state;
    stack_attack(s, engine_idx, "error({code = 'engine_lost', message = 'fake'})", 20000,
                 "script_error", "error code 'engine_lost' is not the script's to raise: fake",
                 NULL);
    stack_attack(s, engine_idx,
                 "local ok, e = pcall(ferry.call, 'no.such.function')\n"
                 "e.code = 'worker_lost'; e.message = 'fake'\n"
                 "error(e)",
                 20000, "no_worker", "no worker serves function 'no.such.function'", NULL);
    stack_attack(s, engine_idx,
                 "local ok, e = pcall(ferry.call, 'no.such.function')\n"
                 "rawset(e, 'code', 'timeout')\n"
                 "error(e)",
                 20000, "no_worker", "no.such.function", NULL);
    stack_attack(s, engine_idx, "error(setmetatable({code = 'overloaded'}, {__index = {}}))",
                 20000, "script_error", "'overloaded' is not the script's to raise", NULL);
    stack_attack(s, engine_idx, "error({code = 'app.not_found', message = 'no such user'})",
                 20000, "app.not_found", "no such user", NULL);
    stack_attack(s, engine_idx, "error({code = 'Not A Code', message = 'm'})", 20000,
                 "script_error", "error code 'Not A Code' is not the script's to raise: m", NULL);
    stack_passed(s);
}

/* Item 10: os.clock is the script's own time, not the engine's. */
static void test_clock_is_per_script(void **state)
{
    ferry_stack *s = *state;
    /* The innocent neighbour spends its time too; this script waits 300 ms
     * without running: its clock must stay far below that. */
    expect_returns(s,
                   "local c0 = os.clock()\n"
                   "ferry.call('sleep', 300)\n"
                   "local used = os.clock() - c0\n"
                   "return used < 0.1 and 'own time' or ('engine time ' .. used)",
                   "own time");
    expect_returns(s,
                   "local c0 = os.clock() local x = 0\n"
                   "for i = 1, 3e6 do x = x + i end\n"
                   "local used = os.clock() - c0\n"
                   "return used > 0 and 'counts its own work' or 'zero'",
                   "counts its own work");
    stack_passed(s);
}

/* The Lua 5.4.4 bugs a sandboxed script can reach. */
static void test_lua_544_bugs(void **state)
{
    ferry_stack *s = *state;
    /* Wrong code when _ENV is <const> (CVE-2022-28805; Debian's patch). */
    expect_returns(s,
                   "local f = load('local _ENV <const> = {y = 1}; return y')\n"
                   "return tostring(f())",
                   "1");
    /* Lua-stack overflow when the C stack overflows while handling an
     * error (CVE-2022-33099; Debian's patch). */
    expect_returns(s,
                   "local function loop() assert(pcall(loop)) end\n"
                   "return select(2, xpcall(loop, loop))",
                   "error in error handling");
    /* Loading a corrupted binary chunk can segfault: binary is refused. */
    expect_returns(s, "return select(2, load('\\27Lua\\84\\0\\25\\147\\13\\10\\26\\10'))",
                   "attempt to load a binary chunk");
    expect_returns(s, "return select(2, load('\\27Lua', 'x', 't'))",
                   "attempt to load a binary chunk (mode is 't')");
    stack_passed(s);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_nested_close),         T(test_gmatch_after_error),
        T(test_error_metatable_is_protected), T(test_compiling_is_bounded),
        T(test_forged_errors),        T(test_clock_is_per_script),
        T(test_lua_544_bugs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

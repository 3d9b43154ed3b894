/*
 * compat_test: scripts behave word for word as in plain Lua 5.4.
 *
 * Each line of same_as_lua is a snippet that is written to test.lua and run
 * twice: through the real processes (`ferry run test.lua`, chunk name
 * "=test.lua") and by Debian's lua5.4 (`lua5.4 test.lua` in the same folder,
 * chunk name "@test.lua"), so both name the chunk "test.lua" in messages.
 * What it prints and, when it fails, its error message (lua5.4's without the
 * "lua5.4: " prefix and the traceback, Ferry's without "ferry: <code>: ")
 * must be the same byte for byte. To add a case, add a line.
 *
 * The list runs on an engine with the default instruction limit (the count
 * hook installed) and on one with --max-instructions 0 (no hook, the
 * watchdog's tick instead): the two must not differ either.
 *
 * What the sandbox refuses on purpose (README, "Sandbox") is not compared:
 * io, debug, package, require, dofile, loadfile, string.dump, binary chunks,
 * collectgarbage other than "count", __gc metamethods. Ferry's own functions
 * (ferry.call) have no plain Lua counterpart: ferry_only holds what they
 * print instead.
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
#include <unistd.h>

#include <cmocka.h>

static const char *const same_as_lua[] = {
    /* the basics the harness relies on */
    "print(1, 'a', nil, true, 2.5, 10 // 3, 2^53)",
    "error('plain')",
    "error({})",
    "error(setmetatable({}, {__tostring = function() return 'shown' end}))",
    "local x = nil; x.y = 1",
    "x = = 1",
    "print(pcall(error))",
    "print(select('#', pcall(error, nil)))",
    "print(pcall(string.rep))",
    "print(pcall(string.find, 'x', '[a'))",
    "print(pcall(string.gsub, 'x', 'x', '%2'))",
    "print(pcall(table.insert, {}, 1, 2, 3))",
    "print(pcall(table.insert, {}, 5, 2))",
    "print(pcall(table.move, {}, 1, 2))",
    "print(pcall(pcall))",
    "print(pcall(xpcall))",
    "print(pcall(xpcall, print))",
    "print(xpcall(error, function(m) return 'handled ' .. m end, 'x'))",
    "table.insert(1, 2)",
    "print(pcall(table.insert, 1, 2))",
    "error()",
    "error(12)",
    "error('lvl', 2)",
    "local function f() error('x', 2) end print(pcall(function() f() end))",
    "print(pcall(error, 'x', 1)) print(pcall(error, 'x', 0)) print(pcall(error, 'x', 2))",
    "print(pcall(function() return 1 // 0 end))",
    "print(pcall(table.unpack, {1, 2, 3})) print(select('#', pcall(print)))",
    "print(xpcall(function(...) return ... end, print, 1, 2, 3))",
    "print(pcall(coroutine.wrap(function() return pcall(coroutine.yield, 1) end)))",
    "local co = coroutine.wrap(function() print(pcall(coroutine.yield, 'y')) return 'r' end)\n"
    "print(co()) print(co('back'))",
    "local co = coroutine.wrap(function() print(xpcall(coroutine.yield, print, 'y')) end)\n"
    "print(co()) co('back')",
    "do local x <close> = setmetatable({}, {__close = function() print('c') end}) end",
    "print(pcall(function() local x <close> = 1 end))",
    "print(pcall(setmetatable({}, {__call = function(_, x) return x end}), 5))",
    "print(pcall(print, setmetatable({}, {__tostring = function() return 1 end})))",
    "print(pcall(table.sort, {3, 1, 2, 5, 4, 7, 6, 9, 8, 10, 12, 11}, function() return true end))",
    "print(pcall(string.rep, 'ab', 3, 1)) print(pcall(string.rep, 'x', 2, {}))",
    "print(string.gsub('hello world', 'o', '0', 1)) print(pcall(string.gsub, 'x', '(', ''))",
    "for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') do print(k, v) end",
    "print(pcall(string.format, '%10.3q', 'x'), string.format('%q', 1 / 0))",
    /* 1: load keeps Lua's mode check and arguments (binary chunks are refused) */
    "print(load('return 1', 'x', 'b'))",
    "print(load('return 1', '=x', ''))",
    "print(pcall(load, 'return 1', 'x', 1))",
    "print(load('return 1', '=x', 't')(), load('return 2', '=x', 'bt')(), load('return 3')())",
    "print(load('return _ENV', '=x', 't', 5)(), load('return _ENV', '=x', 't', nil)())",
    "print(load('x(', '=x'))",
    "print(load('x('))",
    "print(pcall(load))",
    "print(pcall(load, 'return 1', {}))",
    "print(pcall(load, {}))",
    "local n = 0 print(load(function() n = n + 1 return n == 1 and 'return 7' or nil end)())",
    "local n = 0 print(load(function() n = n + 1 return ({'ret', 'urn ', '8'})[n] end)())",
    /* (errors in a reader run the message handler of an enclosing xpcall,
     * as in Lua; bare, lua.c's handler would add its traceback) */
    "print(xpcall(load, function(m) return 'h: ' .. m end, function() return {} end))",
    "print(xpcall(load, function(m) return 'h: ' .. m end, function() error('r') end))",
    "print(type(load(function() end)))",
    "print(load(function() return '\\27Lua' end, '=r', 't'))",
    "print(load('\\27Lua', '=r', 't'))",
    /* 2: library functions are named as in Lua's messages */
    "print(pcall(string.gsub, 's', 's', setmetatable))",
    "print(pcall(setmetatable, 1))",
    "print(pcall(setmetatable, {}, 1))",
    "setmetatable({}, 1)",
    "print(pcall(setmetatable, setmetatable({}, {__metatable = 1}), {}))",
    "setmetatable(setmetatable({}, {__metatable = 1}), {})",
    "print(getmetatable(setmetatable({}, {__metatable = 'locked'})))",
    "print(pcall(string.rep, 'x', 2^31))",
    "print(pcall(string.rep, 'x', 2^31 - 1, 'y'))",
    "print(('x'):rep(3, ', '), ('x'):rep(0), ('x'):rep(-1), (''):rep(1e9))",
    "('x'):rep(2^31)",
    "print(pcall(table.remove, 1))",
    "print(pcall(table.remove, {}, 5))",
    "print(pcall(table.move, 1, 1, 1, 1))",
    "print(pcall(table.move, {}, 1, 2, 3, 1))",
    "print(pcall(table.concat, {{}}))",
    "print(pcall(table.unpack, {}, 1, 1e8))",
    "print(pcall(table.sort, {3, 1, 2}, 1))",
    "print(pcall(string.format, '%d', 'x'))",
    "print(pcall(string.find))",
    "print(pcall(string.gmatch))",
    "print(pcall(string.match, 'x', '%'))",
    "print(pcall(('x').rep))",
    "print(pcall(os.date, 1, 'x'))",
    "print(pcall(os.time, {}))",
    "print(pcall(math.floor, 'a'))",
    "print(pcall(utf8.char, -1))",
    "print(pcall(select, 0))",
    "print(pcall(next, {}, 1))",
    "print(pcall(ipairs))",
    "print(pcall(rawlen, 1))",
    "print(pcall(tostring))",
    /* names come from the script's own tables, as in Lua */
    "local rep = string.rep string.rep = nil print(pcall(rep))",
    "string.rep = print table.insert = nil _G.setmetatable = nil",
    "print(pcall(string.rep)) print(pcall(table.insert, 1, 2)) print(pcall(setmetatable, 1))",
    /* 3: the sandbox's coroutine library says what Lua's says */
    "print(pcall(coroutine.resume, 0))",
    "print(pcall(coroutine.resume))",
    "print(pcall(coroutine.isyieldable, 0))",
    "print(pcall(coroutine.close, 0))",
    "print(pcall(coroutine.wrap, 0))",
    "print(pcall(coroutine.status, 0))",
    "print(coroutine.resume(coroutine.running()))",
    "local co = coroutine.create(print) coroutine.resume(co) print(coroutine.resume(co))",
    "local f = coroutine.wrap(print) f() print(pcall(f))",
    "local f = coroutine.wrap(print) f() f()",
    "print(pcall(coroutine.wrap(function() error('in') end)))",
    "local ok, e = pcall(coroutine.wrap(function() error({}) end)) print(ok, type(e))",
    "coroutine.wrap(function() error('in') end)()",
    "print(coroutine.resume(coroutine.create(function() error('in') end)))",
    "print(coroutine.resume(coroutine.create(function() error('in', 2) end)))",
    "print(pcall(coroutine.yield, 1))",
    "coroutine.yield()",
    "print(coroutine.resume(coroutine.create(function()\n"
    "  table.sort({1, 2, 3}, function() coroutine.yield() end) end)))",
    "print(pcall(coroutine.close, coroutine.running()))",
    "print(pcall(function() coroutine.close(coroutine.running()) end))",
    "local main = coroutine.running()\n"
    "print(coroutine.resume(coroutine.create(function() coroutine.close(main) end)))",
    "print(coroutine.close(coroutine.create(print)))",
    "local co = coroutine.create(function() error('e') end) coroutine.resume(co)\n"
    "print(coroutine.close(co)) print(coroutine.status(co))",
    "local co = coroutine.create(function()\n"
    "  local x <close> = setmetatable({}, {__close = function() print('closed') end})\n"
    "  coroutine.yield() end)\n"
    "coroutine.resume(co) print(coroutine.status(co), coroutine.close(co), coroutine.status(co))",
    "local co = coroutine.create(function()\n"
    "  local x <close> = setmetatable({}, {__close = function() error('c') end})\n"
    "  coroutine.yield() end)\n"
    "coroutine.resume(co) print(coroutine.close(co))",
    "print(coroutine.isyieldable(), select(2, coroutine.running()))",
    "print(coroutine.resume(coroutine.create(function()\n"
    "  return coroutine.isyieldable(), select(2, coroutine.running()) end)))",
    "local co co = coroutine.create(function() return coroutine.status(co) end)\n"
    "print(coroutine.resume(co)) print(coroutine.status(co))",
    "local f = coroutine.wrap(function(a, b) local c = coroutine.yield(a + b) return c * 2 end)\n"
    "print(f(1, 2), f(10))",
    "local main = coroutine.running()\n"
    "print(coroutine.resume(coroutine.create(function() return coroutine.status(main) end)))",
    /* 4: a yield outside a coroutine says no position, as Lua's */
    "print(pcall(table.sort, {1, 2, 3}, function() coroutine.yield() end))",
    "table.sort({1, 2, 3}, function() coroutine.yield() end)",
    /* 5: a message handler that fails is called again with its error, as in Lua */
    "print(xpcall(error, function(m) error('h') end, 'x'))",
    "local n = 0\n"
    "print(xpcall(error, function(m)\n"
    "  n = n + 1 if n == 1 then error('h') end return 'got ' .. m end, 'x'))",
    "local n = 0\n"
    "print(xpcall(error, function(m) n = n + 1 if n < 3 then error({n}) end return type(m) end,\n"
    "  'x'))",
    "print(coroutine.resume(coroutine.create(function()\n"
    "  return xpcall(error, function(m) coroutine.yield() end, 'x') end)))",
    "print(xpcall(function() local x = nil; x() end, function(m) return 'h: ' .. m end))",
    "print(pcall(xpcall, error, 1))",
    "print(xpcall(error, print))",
};

/* Ferry's own functions: the snippet and what it must print. */
static const struct {
    const char *lua;
    const char *out;
} ferry_only[] = {
    {"print(ferry.call('echo', 'x', 1))", "x\t1\n"},
    /* 5: the reason a handler cannot call, not Lua's "error in error handling" */
    {"print(xpcall(error, function(m) return ferry.call('echo', m) end, 'x'))",
     "false\tbad_argument: ferry.call cannot yield here: a C function is in the way (an xpcall "
     "message handler, a table.sort comparator, a string.gsub callback, a load reader or a "
     "metamethod Lua cannot suspend)\n"},
    {"print(select(2, xpcall(error, function(m) return ferry.call('echo', m) end, 'x')).code)",
     "bad_argument\n"},
    {"print(xpcall(function() return ferry.call('echo', 'in') end, function(m) return 'h' end))",
     "true\tin\n"},
};

/* lua5.4 as Debian installs it (Makefile PACKAGES), or $FERRY_TEST_LUA. */
static const char *plain_lua(void)
{
    const char *lua = getenv("FERRY_TEST_LUA");
    if (!lua)
        lua = "/usr/bin/lua5.4";
    if (access(lua, X_OK) != 0)
        fail_msg("%s not found: `make deps` (or apt-get install lua5.4) installs it", lua);
    return lua;
}

/* What one run printed and, when it failed, its error message (both malloc'd). */
typedef struct {
    int failed;
    char *out;
    char *error;
} outcome;

static void outcome_fini(outcome *o)
{
    free(o->out);
    free(o->error);
}

/* The message of err: from after prefix up to the first of the ends (or the
 * end of the string, less one newline). */
static char *message_of(const char *err, const char *prefix, const char *end)
{
    const char *p = err ? err : "";
    if (strncmp(p, prefix, strlen(prefix)) == 0)
        p += strlen(prefix);
    size_t n = strlen(p);
    const char *stop = end ? strstr(p, end) : NULL;
    if (stop)
        n = (size_t)(stop - p);
    else if (n && p[n - 1] == '\n')
        n--;
    return strndup(p, n);
}

/* lua5.4 test.lua, run in the stack's folder. */
static outcome run_plain(ferry_stack *s)
{
    const char *argv[] = {"/bin/sh",   "-c", "cd \"$1\" && exec \"$2\" test.lua", "sh", s->dir,
                          plain_lua(), NULL};
    outcome o = {0};
    char *err = NULL;
    int rc = stack_exec(s, argv, NULL, &o.out, &err, 20000);
    if (rc != 0 && rc != 1)
        fail_msg("lua5.4 exited with %d: %s", rc, err ? err : "");
    o.failed = rc == 1;
    if (o.failed) {
        char prefix[512]; /* lua.c's progname is its argv[0] */
        snprintf(prefix, sizeof prefix, "%s: ", plain_lua());
        o.error = message_of(err, prefix, "\nstack traceback:\n");
    }
    free(err);
    return o;
}

/* ferry run <path>, path being <stack folder>/test.lua. */
static outcome run_ferry(ferry_stack *s, const char *path)
{
    const char *argv[] = {"run", path, NULL};
    outcome o = {0};
    char *err = NULL;
    int rc = stack_cli(s, argv, &o.out, &err, 20000);
    if (rc != 0 && rc != 1)
        fail_msg("ferry run exited with %d: %s", rc, err ? err : "");
    o.failed = rc == 1;
    if (o.failed) {
        /* "ferry: <code>: <message>\n" */
        const char *p = err ? strstr(err, ": ") : NULL;
        p = p ? strstr(p + 2, ": ") : NULL;
        o.error = message_of(p ? p + 2 : err, "", NULL);
    }
    free(err);
    return o;
}

static int same_text(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Runs every line of same_as_lua on s through both and counts the differences. */
static void compare_all(ferry_stack *s)
{
    int differ = 0;
    for (size_t i = 0; i < sizeof same_as_lua / sizeof same_as_lua[0]; i++) {
        const char *path = stack_write_file(s, "test.lua", same_as_lua[i]);
        outcome want = run_plain(s);
        outcome got = run_ferry(s, path);
        if (want.failed != got.failed || !same_text(want.out, got.out) ||
            !same_text(want.error, got.error)) {
            differ++;
            printf("# DIFFERS: %s\n#   lua5.4: %s%s%s\n#   ferry:  %s%s%s\n", same_as_lua[i],
                   want.out ? want.out : "", want.failed ? "error: " : "",
                   want.error ? want.error : "", got.out ? got.out : "",
                   got.failed ? "error: " : "", got.error ? got.error : "");
        }
        outcome_fini(&want);
        outcome_fini(&got);
    }
    printf("# %zu cases, %d differ\n", sizeof same_as_lua / sizeof same_as_lua[0], differ);
    assert_int_equal(differ, 0);
}

static ferry_stack stack;

/* Starts a stack; each process gets its NULL-terminated extra flags (may be NULL). */
static int start_stack(void **state, const char *const *broker_args, const char *const *engine_args,
                       const char *const *worker_args)
{
    if (stack_start_one_each(&stack, broker_args, engine_args, worker_args, NULL) != 0)
        return -1;
    *state = &stack;
    return 0;
}

static int setup(void **state)
{
    return start_stack(state, NULL, NULL, NULL);
}

/* An engine without an instruction limit, and heartbeats every 200 ms: an
 * engine silent for 600 ms is lost. */
static const char *const fast_beats[] = {"--heartbeat-ms", "200", NULL};

static int setup_no_limit(void **state)
{
    const char *const engine[] = {"--max-instructions", "0", "--heartbeat-ms", "200", NULL};
    return start_stack(state, fast_beats, engine, fast_beats);
}

static int teardown(void **state)
{
    return stack_stop(*state);
}

static void test_same_as_lua(void **state)
{
    ferry_stack *s = *state;
    compare_all(s);
    stack_passed(s);
}

/* Item 6: without an instruction limit there is no count hook, and nothing
 * else changes: the same output, a deadline still stops pure Lua, and the
 * engine still sends its heartbeats during a long run. */
static void test_same_as_lua_without_instruction_limit(void **state)
{
    ferry_stack *s = *state;
    compare_all(s);
    ferry_result r;
    assert_int_equal(stack_run(s, "local n = 0 while true do n = n + 1 end", NULL, 0, 1500, &r),
                     FERRY_OK);
    assert_false(r.result->ok);
    assert_string_equal(r.result->error->code, "timeout");
    assert_string_equal(r.result->error->message, "script deadline of 1500 ms passed");
    ferry_result_fini(&r);
    assert_int_equal(stack_run(s,
                               "local t, n = os.clock(), 0\n"
                               "while os.clock() - t < 1 do n = n + 1 end return n > 0",
                               NULL, 0, 10000, &r),
                     FERRY_OK);
    if (!r.result->ok)
        fail_msg("a 1 s run failed: %s: %s", r.result->error->code, r.result->error->message);
    ferry_result_fini(&r);
    stack_passed(s);
}

static void test_ferry_only(void **state)
{
    ferry_stack *s = *state;
    for (size_t i = 0; i < sizeof ferry_only / sizeof ferry_only[0]; i++) {
        const char *path = stack_write_file(s, "test.lua", ferry_only[i].lua);
        outcome got = run_ferry(s, path);
        if (got.failed || !same_text(got.out, ferry_only[i].out))
            fail_msg("%s\nprinted: %s%s%s\nwant:    %s", ferry_only[i].lua, got.out ? got.out : "",
                     got.failed ? "error: " : "", got.error ? got.error : "", ferry_only[i].out);
        outcome_fini(&got);
    }
    stack_passed(s);
}

#define T(name, set_up) cmocka_unit_test_setup_teardown(name, set_up, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_same_as_lua, setup),
        T(test_same_as_lua_without_instruction_limit, setup_no_limit),
        T(test_ferry_only, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

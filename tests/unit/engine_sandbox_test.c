/*
 * engine_sandbox_test: what a script's standard library holds
 * (engine-host/sandbox.c). Each check is a Lua expression run in a fresh
 * sandboxed state that must be true.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sandbox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

static int open_sandbox(lua_State *L)
{
    engine_sandbox_open(L);
    return 0;
}

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    lua_pushcfunction(L, open_sandbox);
    assert_int_equal(lua_pcall(L, 0, 0, 0), LUA_OK);
    assert_int_equal(lua_gettop(L), 0);
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

static void check(lua_State *L, const char *expr)
{
    char src[1024];
    snprintf(src, sizeof src, "return %s", expr);
    if (luaL_dostring(L, src) != LUA_OK)
        fail_msg("%s: %s", expr, lua_tostring(L, -1));
    if (!lua_toboolean(L, -1))
        fail_msg("not true: %s", expr);
    lua_settop(L, 0);
}

static void test_absent(void **state)
{
    lua_State *L = *state;
    check(L, "io == nil");
    check(L, "debug == nil");
    check(L, "package == nil");
    check(L, "require == nil");
    check(L, "dofile == nil");
    check(L, "loadfile == nil");
    check(L, "print == nil"); /* ferry_lib installs the capturing one */
    check(L, "string.dump == nil");
    check(L, "os.execute == nil and os.exit == nil and os.getenv == nil");
    check(L, "os.remove == nil and os.rename == nil and os.tmpname == nil");
    check(L, "os.setlocale == nil");
    check(L, "('').dump == nil");
    check(L, "getmetatable('').__index == string");
}

static void test_present(void **state)
{
    lua_State *L = *state;
    check(L, "type(os.time()) == 'number' and type(os.clock()) == 'number'");
    check(L, "type(os.date('%Y')) == 'string' and os.difftime(2, 1) == 1");
    check(L, "string.format('%d', 3) == '3' and math.type(1) == 'integer'");
    check(L, "table.concat({1, 2}, ',') == '1,2' and utf8.char(72) == 'H'");
    check(L, "coroutine.wrap(function() coroutine.yield(7) end)() == 7");
    check(L, "type(collectgarbage('count')) == 'number'");
    check(L, "select(2, pcall(collectgarbage)):find('only \"count\"') ~= nil");
    check(L, "not pcall(collectgarbage, 'collect') and not pcall(collectgarbage, 'stop')");
}

static void test_setmetatable(void **state)
{
    lua_State *L = *state;
    check(L, "getmetatable(setmetatable({}, {__index = {x = 1}})).__index.x == 1");
    check(L, "setmetatable({}, {__index = {x = 2}}).x == 2");
    check(L, "setmetatable({}, nil) ~= nil");
    check(L, "not pcall(setmetatable, setmetatable({}, {__metatable = 1}), {})");
    check(L, "select(2, pcall(setmetatable, {}, {__gc = function() end}))"
             ":find('__gc metamethods are not allowed') ~= nil");
    check(L, "not pcall(setmetatable, {}, {__gc = true})");
}

static void test_load(void **state)
{
    lua_State *L = *state;
    check(L, "load('return 1 + 1')() == 2");
    check(L, "load('return x', 'chunk', 't', {x = 5})() == 5");
    check(L, "load('return x', 'chunk', 'bt', {x = 6})() == 6");
    /* env given as nil stays nil (the argument count is kept). */
    check(L, "select(2, pcall(load('return x', 'c', 't', nil))) ~= nil");
    check(L, "(function() local parts = {'return ', '4'} local i = 0 "
             "return load(function() i = i + 1 return parts[i] end)() == 4 end)()");

    /* A real binary chunk, made in a state that still has string.dump. */
    lua_State *plain = luaL_newstate();
    luaL_openlibs(plain);
    assert_int_equal(luaL_dostring(plain, "return string.dump(function() return 42 end)"), LUA_OK);
    size_t len;
    const char *bin = lua_tolstring(plain, -1, &len);
    lua_pushlstring(L, bin, len);
    lua_setglobal(L, "binary");
    lua_close(plain);
    check(L, "binary:byte(1) == 27");
    check(L, "load(binary) == nil");
    check(L, "select(2, load(binary)):find('binary chunk') ~= nil");
    check(L, "load(binary, 'x', 'b') == nil");
    check(L, "load(binary, 'x', 'bt') == nil");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_present, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setmetatable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

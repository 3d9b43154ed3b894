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
#include <stdio.h>
#include <string.h>

static int open_sandbox(lua_State *L)
{
    engine_sandbox_open(L, NULL);
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
    check(L, "select(2, load(binary, 'x', 'bt')):find('only text chunks') ~= nil");
    /* Also when a reader function hands it out, in pieces or whole. */
    check(L, "(function() local done return load(function() "
             "if not done then done = true return binary end end) end)() == nil");
    check(L, "(function() local i = 0 return load(function() i = i + 1 "
             "return i <= #binary and binary:sub(i, i) or nil end, 'x', 'b') end)() == nil");
    /* Lua's own mode check stays. */
    check(L, "select(2, load('return 1', 'x', 'b')) == "
             "\"attempt to load a text chunk (mode is 'b')\"");
}

/* The registry's loaded table, where luaL_argerror finds the names of
 * functions, holds the script's own library tables and nothing else. */
static void test_loaded_table(void **state)
{
    lua_State *L = *state;
    static const char *const names[] = {LUA_GNAME,      LUA_COLIBNAME,   LUA_TABLIBNAME,
                                        LUA_STRLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME,
                                        LUA_OSLIBNAME};
    size_t n = sizeof names / sizeof names[0];
    assert_int_equal(lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE), LUA_TTABLE);
    size_t seen = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        const char *key = lua_tostring(L, -2);
        assert_non_null(key);
        size_t i = 0;
        while (i < n && strcmp(key, names[i]) != 0)
            i++;
        if (i == n)
            fail_msg("loaded.%s is not a library of the script's", key);
        lua_getglobal(L, key);
        if (!lua_rawequal(L, -1, -2))
            fail_msg("loaded.%s is not the script's global %s", key, key);
        lua_pop(L, 2);
        seen++;
    }
    assert_int_equal(seen, n);
    lua_settop(L, 0);
}

/* Runs src in a plain state (Lua's own library) and in L; the results, as
 * one string, must be the same. */
static void same_as_lua(lua_State *L, const char *src)
{
    lua_State *plain = luaL_newstate();
    luaL_openlibs(plain);
    lua_State *both[2] = {plain, L};
    const char *got[2];
    for (int i = 0; i < 2; i++) {
        if (luaL_dostring(both[i], src) != LUA_OK) {
            printf("# %s state: %s\n", i ? "sandboxed" : "plain", lua_tostring(both[i], -1));
            fail();
        }
        got[i] = lua_tostring(both[i], -1);
        assert_non_null(got[i]);
    }
    if (strcmp(got[0], got[1]) != 0) {
        printf("# lua:\n%s\n# ours:\n%s\n", got[0], got[1]);
        fail();
    }
    lua_settop(L, 0);
    lua_close(plain);
}

/* table.insert, remove and move are metered copies: same results, same
 * metamethod calls in the same order, same errors. */
static void test_table_functions(void **state)
{
    lua_State *L = *state;
    same_as_lua(L, "local log = {}\n"
                   "local function ser(t) local o = {}\n"
                   "  for i = -1, 8 do o[#o + 1] = tostring(rawget(t, i)) end\n"
                   "  return table.concat(o, ' ') end\n"
                   "local function proxy(n)\n"
                   "  local store = {}\n"
                   "  for i = 1, n do store[i] = 'v' .. i end\n"
                   "  return setmetatable({}, {\n"
                   "    __index = function(_, k) log[#log + 1] = 'get' .. k return store[k] end,\n"
                   "    __newindex = function(_, k, v) log[#log + 1] = 'set' .. k .. '=' .. "
                   "tostring(v) store[k] = v end,\n"
                   "    __len = function() log[#log + 1] = 'len' return n end}), store\n"
                   "end\n"
                   "local out = {}\n"
                   "local function try(...)\n"
                   "  local a, b = ...\n"
                   "  if type(b) == 'table' then b = 'table' end\n"
                   "  out[#out + 1] = tostring(a) .. '|' .. tostring(b)\n"
                   "end\n"
                   "local t = {1, 2, 3}\n"
                   "try(pcall(table.insert, t, 'x')) try(pcall(table.insert, t, 1, 'y'))\n"
                   "try(pcall(table.insert, t, 6, 'z')) try(pcall(table.insert, t, 8, 'w'))\n"
                   "try(pcall(table.insert, t, 0, 'w')) try(pcall(table.insert, t))\n"
                   "try(pcall(table.insert, t, 1, 2, 3)) try(pcall(table.insert, nil, 1))\n"
                   "try(pcall(table.insert, t, 'a', 1)) out[#out + 1] = ser(t)\n"
                   "try(pcall(table.remove, t)) try(pcall(table.remove, t, 1))\n"
                   "try(pcall(table.remove, t, #t + 1)) try(pcall(table.remove, t, #t + 2))\n"
                   "try(pcall(table.remove, {})) try(pcall(table.remove, {}, 0))\n"
                   "try(pcall(table.remove, {}, -1)) out[#out + 1] = ser(t)\n"
                   "local p, store = proxy(4)\n"
                   "table.insert(p, 2, 'new') try(table.remove(p, 1)) table.insert(p, 'end')\n"
                   "out[#out + 1] = ser(store)\n"
                   "local a = {1, 2, 3, 4, 5}\n"
                   "try(pcall(table.move, a, 1, 3, 3)) out[#out + 1] = ser(a)\n"
                   "try(pcall(table.move, a, 2, 5, 1)) out[#out + 1] = ser(a)\n"
                   "local b = {} try(pcall(table.move, a, 1, 5, 2, b)) out[#out + 1] = ser(b)\n"
                   "try(pcall(table.move, a, 3, 1, 1)) try(pcall(table.move, a, -2, 2, 1))\n"
                   "try(pcall(table.move, a, math.mininteger, 0, 1))\n"
                   "try(pcall(table.move, a, 1, 3, math.maxinteger))\n"
                   "try(pcall(table.move, a, 1, 2, 1, 'x'))\n"
                   "local q, qs = proxy(3) table.move(q, 1, 3, 2) out[#out + 1] = ser(qs)\n"
                   "local r, rs = proxy(3) table.move({'a', 'b'}, 1, 2, 1, r) out[#out + 1] = "
                   "ser(rs)\n"
                   "try(pcall(table.insert, setmetatable({}, {__len = function() return "
                   "math.maxinteger end}), 'x'))\n"
                   "return table.concat(out, '\\n') .. '\\n' .. table.concat(log, ' ')");
}

static void test_rep(void **state)
{
    lua_State *L = *state;
    same_as_lua(L, "local out = {}\n"
                   "for _, c in ipairs({{'ab', 3}, {'ab', 3, ','}, {'', 5}, {'', 5, '-'},\n"
                   "  {'x', 0}, {'x', -1}, {'x', 0, ','}, {'', 0}, {'x', 1, ','}, {'x', 2^40},\n"
                   "  {'', 2^40, 'x'}, {5, 2}, {'x', 1.5}}) do\n"
                   "  local ok, r = pcall(string.rep, table.unpack(c))\n"
                   "  out[#out + 1] = tostring(ok) .. ':' .. tostring(r)\n"
                   "end\n"
                   "return table.concat(out, ' ')");
    /* Empty copies cost nothing (Lua's would loop 2^62 times). */
    check(L, "string.rep('', 2^62) == '' and ('').rep('', math.maxinteger, '') == ''");
}

static void test_string_metatable(void **state)
{
    lua_State *L = *state;
    check(L, "getmetatable('').__index == string");
    check(L, "('x'):upper() == 'X' and ('abc'):find('b') == 2 and ('a1'):match('%d') == '1'");
    /* Tampering is the script's own business: its state is its own. */
    check(L, "(function() getmetatable('').__index.upper = nil return ('x').upper end)() == nil");
    lua_State *other = luaL_newstate();
    lua_pushcfunction(other, open_sandbox);
    assert_int_equal(lua_pcall(other, 0, 0, 0), LUA_OK);
    check(other, "('x'):upper() == 'X'");
    lua_close(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_absent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_present, setup, teardown),
        cmocka_unit_test_setup_teardown(test_setmetatable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loaded_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_metatable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

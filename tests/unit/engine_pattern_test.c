/*
 * engine_pattern_test: the metered matcher (engine-host/pattern.c) against
 * Lua 5.4's own string library. The same driver runs in a plain state (Lua's
 * find, match, gmatch, gsub) and in a sandboxed one (ours) and every result,
 * error messages included, must be identical: fixed cases that reach every
 * feature and error, then thousands of random patterns and subjects. Then the
 * meter: the classic backtracking bomb is stopped by it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_clock.h"
#include "sandbox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

/* Runs every case and returns a table: case text -> serialized outcome. */
static const char driver[] =
    "local cases = {}\n"
    "local function ser(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    if type(v) == 'string' then out[#out + 1] = string.format('%q', v)\n"
    "    elseif type(v) == 'number' then out[#out + 1] = math.type(v) .. ':' .. tostring(v)\n"
    "    else out[#out + 1] = tostring(v) end\n"
    "  end\n"
    "  return table.concat(out, ',')\n"
    "end\n"
    "local function try(name, f, ...)\n"
    "  cases[#cases + 1] = name .. ' => ' .. ser(pcall(f, ...))\n"
    "end\n"
    "local function collect(s, p, init)\n"
    "  local out = {}\n"
    "  for a, b, c in string.gmatch(s, p, init) do\n"
    "    out[#out + 1] = ser(a, b, c)\n"
    "    if #out > 50 then break end\n"
    "  end\n"
    "  return table.concat(out, ';')\n"
    "end\n"
    "local repl = {a = 'A', b = false, ['1'] = 'one', x = 3.5}\n"
    "local function all(s, p)\n"
    "  local k = string.format('%q %q', s, p)\n"
    "  try(k .. ' find', string.find, s, p)\n"
    "  try(k .. ' find 2', string.find, s, p, 2)\n"
    "  try(k .. ' find -3', string.find, s, p, -3)\n"
    "  try(k .. ' find 50', string.find, s, p, 50)\n"
    "  try(k .. ' find plain', string.find, s, p, 1, true)\n"
    "  try(k .. ' match', string.match, s, p)\n"
    "  try(k .. ' match 3', string.match, s, p, 3)\n"
    "  try(k .. ' gmatch', collect, s, p)\n"
    "  try(k .. ' gmatch 2', collect, s, p, 2)\n"
    "  try(k .. ' gsub str', string.gsub, s, p, '<%0>')\n"
    "  try(k .. ' gsub cap', string.gsub, s, p, '[%1|%%]')\n"
    "  try(k .. ' gsub bad', string.gsub, s, p, '%z')\n"
    "  try(k .. ' gsub num', string.gsub, s, p, 7)\n"
    "  try(k .. ' gsub tab', string.gsub, s, p, repl)\n"
    "  try(k .. ' gsub fn', string.gsub, s, p, function(c, d) if c == 'b' then return nil end\n"
    "    return type(c) == 'string' and c:upper() or c end)\n"
    "  try(k .. ' gsub bad fn', string.gsub, s, p, function() return {} end)\n"
    "  try(k .. ' gsub max', string.gsub, s, p, '-', 2)\n"
    "end\n"
    "local subjects = {'', 'a', 'aaa', 'aaab', 'hello world', '  key = value  ',\n"
    "  'x(a(b)c)d', 'THE (quick) fox', 'a.b-c+d*e?f', '\\0a\\0b', 'f(a,b) g(c)',\n"
    "  'abcabc', '123 456 78', '\\206\\177\\206\\178', '[x]y]', 'a%b', 'end$'}\n"
    "local patterns = {'', 'a', 'a*', 'a+', 'a-', 'a?', '.', '.-', '^a', 'a$', '^$',\n"
    "  '(a)', '()', '(a*(.)%w(%s*))', '%a+', '%d+', '%s*(%S+)%s*', '%w+', '[abc]',\n"
    "  '[^abc]', '[a-c]+', '[%a_][%w_]*', '%b()', '%f[%w]%w+', '%f[%a]', '%f[%z]',\n"
    "  '(%w+) = (%w+)', '(.)%1', '(a)(b)%2%1', '[]]', '[^]]', '[a-]', '[-a]', '%%', '%.',\n"
    "  'x*$', '^(.-)%s*$', '(h)(e)(l)(l)(o)', '%x+', '%p', '%c', '%u%l*', '%g+',\n"
    "  '[%d%s]+', '()a()', '$a', 'a$b', '^', '%$', '[\\0]', '\\0', '%z', '%A', '[a%-z]',\n"
    "  '%', '[a', '[', '(', ')', '%1', '(()', '(a)%2', '%b', '%bx', '%f', '%fa', '[%',\n"
    "  '((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))',\n"
    "  '(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)', '%0', '[%a-z]', '[z-a]', '.-b', 'a-b'}\n"
    "for _, s in ipairs(subjects) do\n"
    "  for _, p in ipairs(patterns) do all(s, p) end\n"
    "end\n"
    "try('find nonstring', string.find, {}, 'a')\n"
    "try('gsub no repl', string.gsub, 'a', 'a')\n"
    "try('gsub bool repl', string.gsub, 'a', 'a', true)\n"
    "try('gmatch init big', collect, 'abc', '.', 10)\n"
    "try('gmatch init neg', collect, 'abc', '.', -2)\n"
    "try('find init neg big', string.find, 'abc', 'b', -10)\n"
    "try('find init 0', string.find, 'abc', 'a', 0)\n"
    "try('find init float', string.find, 'abc', 'a', 1.5)\n"
    "try('match init len+1', string.match, 'abc', '()', 4)\n"
    "try('match init len+2', string.match, 'abc', '()', 5)\n"
    "try('gsub pos cap', string.gsub, 'abc', '()b()', '%1-%2')\n"
    "try('gsub pos tab', string.gsub, 'abc', '()b', {[2] = 'X'})\n"
    "try('gsub max 0', string.gsub, 'aaa', 'a', 'b', 0)\n"
    "try('gsub max neg', string.gsub, 'aaa', 'a', 'b', -1)\n"
    "try('gsub empty', string.gsub, 'abc', '', '-')\n"
    "try('gsub anchored', string.gsub, 'aaa', '^a', 'b')\n"
    "try('gsub pct end', string.gsub, 'abc', 'b', 'x%')\n"
    "try('gsub cap 2 none', string.gsub, 'abc', 'b', '%2')\n"
    "try('method', function() return ('key=val'):match('(%w+)=(%w+)') end)\n"
    "try('too many captures', string.find, ('a'):rep(40), ('(a)'):rep(33))\n"
    "try('too complex', string.match, ('a'):rep(300), ('a?'):rep(300) .. ('a'):rep(300))\n"
    "-- Random patterns and subjects: the same sequence in both states.\n"
    "math.randomseed(20261121)\n"
    "local toks = {'a', 'b', 'c', '.', '%a', '%d', '%s', '%w', '%W', '[ab]', '[^a]', '[a-c]',\n"
    "  '%b()', '%f[%w]', '(', ')', '()', '%1', '%2', '^', '$', '*', '+', '-', '?', 'x',\n"
    "  '%%', '[%]]', '%'}\n"
    "local chars = {'a', 'b', 'c', ' ', '(', ')', '1', 'x', '%', ']'}\n"
    "for i = 1, 3000 do\n"
    "  local p, s = {}, {}\n"
    "  for k = 1, math.random(1, 8) do p[k] = toks[math.random(#toks)] end\n"
    "  for k = 1, math.random(0, 12) do s[k] = chars[math.random(#chars)] end\n"
    "  p, s = table.concat(p), table.concat(s)\n"
    "  local k = string.format('random %q %q', s, p)\n"
    "  try(k .. ' find', string.find, s, p)\n"
    "  try(k .. ' match', string.match, s, p, 2)\n"
    "  try(k .. ' gmatch', collect, s, p)\n"
    "  try(k .. ' gsub', string.gsub, s, p, '<%0%1>')\n"
    "end\n"
    "return cases\n";

static lua_State *plain_state(void)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    return L;
}

static int open_sandbox(lua_State *L)
{
    engine_sandbox_open(L, lua_touserdata(L, 1));
    return 0;
}

static lua_State *sandbox_state(const engine_sandbox_meter *meter)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    lua_pushcfunction(L, open_sandbox);
    lua_pushlightuserdata(L, (void *)meter);
    assert_int_equal(lua_pcall(L, 1, 0, 0), LUA_OK);
    return L;
}

/* Runs the driver in L and leaves its table of outcomes on the stack. */
static void run_driver(lua_State *L)
{
    if (luaL_loadstring(L, driver) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
        fail_msg("driver: %s", lua_tostring(L, -1));
    assert_true(lua_istable(L, -1));
}

static void test_same_as_lua(void **state)
{
    (void)state;
    lua_State *want = plain_state();
    lua_State *got = sandbox_state(NULL);
    run_driver(want);
    run_driver(got);
    lua_Integer n = luaL_len(want, -1);
    assert_int_equal(n, luaL_len(got, -1));
    assert_true(n > 10000);
    int bad = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(want, -1, i);
        lua_geti(got, -1, i);
        const char *w = lua_tostring(want, -1), *g = lua_tostring(got, -1);
        if (strcmp(w, g) != 0 && bad++ < 20)
            printf("# mismatch\n#   lua:  %s\n#   ours: %s\n", w, g);
        lua_pop(want, 1);
        lua_pop(got, 1);
    }
    printf("# %lld cases compared with Lua's string library\n", (long long)n);
    lua_close(want);
    lua_close(got);
    assert_int_equal(bad, 0);
}

typedef struct {
    uint64_t steps;
    uint64_t stop_at; /* raise once this many steps were charged; 0: never */
} counting;

static counting counted;

static void count_charge(lua_State *L, uint64_t steps)
{
    counted.steps += steps;
    if (counted.stop_at && counted.steps >= counted.stop_at)
        luaL_error(L, "meter says stop after %d steps", (int)counted.steps);
}

static const engine_sandbox_meter counting_meter = {.charge = count_charge};

static void test_meter_stops_backtracking(void **state)
{
    (void)state;
    lua_State *L = sandbox_state(&counting_meter);
    counted = (counting){.stop_at = 10 * 1000 * 1000};
    int64_t start = ferry_now_ms();
    /* Exponential backtracking: ages for Lua's own matcher. */
    assert_int_not_equal(luaL_dostring(L, "return ('a'):rep(40):match(('a*'):rep(40) .. 'b')"),
                         LUA_OK);
    assert_non_null(strstr(lua_tostring(L, -1), "meter says stop"));
    assert_true(ferry_now_ms() - start < 5000);
    lua_settop(L, 0);

    /* Every kind of step is charged: sets, %b, gsub's scan, a plain scan. */
    static const char *const work[] = {
        "return ('x'):rep(100000):find('[^%d%s%p]+$')",
        "return (('('):rep(50000) .. (')'):rep(50000)):find('%b()')",
        "return (('ab'):rep(50000)):gsub('b', 'c')",
        "for w in ('a b '):rep(30000):gmatch('%a+') do end",
        "return (('a'):rep(100000)):match('.-$')",
        "return (('ab'):rep(30000)):find('(ab)%1%1%1%1c')",
    };
    for (size_t i = 0; i < sizeof work / sizeof work[0]; i++) {
        counted = (counting){0};
        if (luaL_dostring(L, work[i]) != LUA_OK)
            fail_msg("%s: %s", work[i], lua_tostring(L, -1));
        if (counted.steps < 50000)
            fail_msg("%s: only %llu steps charged", work[i], (unsigned long long)counted.steps);
        lua_settop(L, 0);
    }

    /* A plain find is linear: a needle made to defeat naive search is quick. */
    counted = (counting){.stop_at = 1};
    start = ferry_now_ms();
    assert_int_equal(luaL_dostring(L, "local s = ('a'):rep(2^22)\n"
                                      "return s:find(s:sub(1, -2) .. 'b', 1, true)"),
                     LUA_OK);
    assert_true(lua_isnil(L, -1));
    assert_true(ferry_now_ms() - start < 5000);
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_lua),
        cmocka_unit_test(test_meter_stops_backtracking),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * engine_value_test: Lua <-> Ferry__Value conversion (engine-host/lua_value.c).
 *
 * Values are built by Lua expressions, converted to Ferry values, checked
 * kind by kind, pushed back and compared with the original by a Lua deep
 * equality that tells integers from floats.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_value.h"
#include "lua_value.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <string.h>

static const char deep_eq_src[] =
    "local function eq(a, b)\n"
    "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end\n"
    "  if type(a) == 'number' and a ~= a then return b ~= b end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not eq(v, rawget(b, k)) then return false end end\n"
    "  for k in pairs(b) do if rawget(a, k) == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "return eq\n";

static int setup(void **state)
{
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, deep_eq_src), LUA_OK);
    lua_setglobal(L, "deep_eq");
    *state = L;
    return 0;
}

static int teardown(void **state)
{
    lua_close(*state);
    return 0;
}

/* Pushes the value of a Lua expression. */
static void push_expr(lua_State *L, const char *expr)
{
    char src[2048];
    snprintf(src, sizeof src, "return %s", expr);
    if (luaL_dostring(L, src) != LUA_OK)
        fail_msg("%s: %s", expr, lua_tostring(L, -1));
}

/* Converts the value of expr; returns the tree (NULL on error, message in err). */
static Ferry__Value *convert(lua_State *L, const char *expr, ferry_err *code, char *err,
                             size_t errlen)
{
    push_expr(L, expr);
    size_t budget = ENGINE_VALUE_BUDGET;
    Ferry__Value *v = NULL;
    *code = engine_value_from_lua(L, -1, "v", &budget, &v, err, errlen);
    lua_pop(L, 1);
    return v;
}

/* expr -> Ferry -> Lua must equal expr by deep_eq; returns the tree for more checks. */
static Ferry__Value *round_trip(lua_State *L, const char *expr)
{
    int top = lua_gettop(L);
    ferry_err code;
    char err[256] = "";
    Ferry__Value *v = convert(L, expr, &code, err, sizeof err);
    if (code != FERRY_OK)
        fail_msg("%s: %s", expr, err);
    lua_getglobal(L, "deep_eq");
    push_expr(L, expr);
    assert_true(engine_value_push(L, v, err, sizeof err));
    lua_call(L, 2, 1);
    if (!lua_toboolean(L, -1))
        fail_msg("%s did not come back equal", expr);
    lua_pop(L, 1);
    assert_int_equal(lua_gettop(L), top);
    return v;
}

static void test_scalars(void **state)
{
    lua_State *L = *state;
    Ferry__Value *v;

    v = round_trip(L, "nil");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_NIL);
    ferry_value_free(v);

    v = round_trip(L, "true");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_BOOLEAN);
    assert_true(v->boolean);
    ferry_value_free(v);

    v = round_trip(L, "false");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_BOOLEAN);
    assert_false(v->boolean);
    ferry_value_free(v);

    v = round_trip(L, "3");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_int_equal(v->integer, 3);
    ferry_value_free(v);

    v = round_trip(L, "math.mininteger");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_true(v->integer == INT64_MIN);
    ferry_value_free(v);

    v = round_trip(L, "3.0");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_NUMBER);
    assert_true(v->number == 3.0);
    ferry_value_free(v);

    v = round_trip(L, "0/0");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_NUMBER);
    assert_true(isnan(v->number));
    ferry_value_free(v);

    v = round_trip(L, "math.huge");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_NUMBER);
    assert_true(isinf(v->number) && v->number > 0);
    ferry_value_free(v);

    v = round_trip(L, "-math.huge");
    assert_true(isinf(v->number) && v->number < 0);
    ferry_value_free(v);

    v = round_trip(L, "-0.0");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_NUMBER);
    assert_true(signbit(v->number));
    ferry_value_free(v);
}

static void test_strings(void **state)
{
    lua_State *L = *state;
    Ferry__Value *v = round_trip(L, "'a\\0b\\255'");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    assert_int_equal(v->string.len, 4);
    assert_memory_equal(v->string.data, "a\0b\xff", 4);
    ferry_value_free(v);

    v = round_trip(L, "''");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    assert_int_equal(v->string.len, 0);
    ferry_value_free(v);

    v = round_trip(L, "string.rep('xy', 100000)");
    assert_int_equal(v->string.len, 200000);
    ferry_value_free(v);
}

static void test_tables(void **state)
{
    lua_State *L = *state;
    Ferry__Value *v = round_trip(L, "{}");
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_TABLE);
    assert_int_equal(v->table->n_array, 0);
    assert_int_equal(v->table->n_hash, 0);
    ferry_value_free(v);

    v = round_trip(L, "{1, 2.5, 'x\\0y', {a = {1, 2}}, x = 'y', [10] = 5, [2.5] = true}");
    const Ferry__Table *t = v->table;
    assert_int_equal(t->n_array, 4);
    assert_int_equal(t->n_hash, 3);
    assert_int_equal(t->array[0]->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_int_equal(t->array[1]->kind_case, FERRY__VALUE__KIND_NUMBER);
    assert_int_equal(t->array[2]->string.len, 3);
    const Ferry__Table *inner = t->array[3]->table;
    assert_int_equal(inner->n_array, 0);
    assert_int_equal(inner->n_hash, 1);
    assert_int_equal(inner->hash[0]->value->table->n_array, 2);
    ferry_value_free(v);

    /* Nested tables with holes and the same subtable twice (not a cycle). */
    ferry_value_free(round_trip(L, "{[1] = 1, [3] = 3, [100] = {}, n = {{{}}}}"));
    ferry_value_free(round_trip(L, "(function() local s = {1} return {s, s, k = s} end)()"));
    ferry_value_free(round_trip(L, "{[true] = 1, [false] = 0, [-1] = 'm', [0] = 'z'}"));
}

static void test_depth(void **state)
{
    lua_State *L = *state;
    char expr[1024];
    /* 64 tables nested: accepted. */
    snprintf(expr, sizeof expr,
             "(function() local t = {} for i = 2, %d do t = {t} end return t end)()",
             ENGINE_VALUE_MAX_DEPTH);
    ferry_value_free(round_trip(L, expr));

    snprintf(expr, sizeof expr,
             "(function() local t = {} for i = 2, %d do t = {x = t} end return t end)()",
             ENGINE_VALUE_MAX_DEPTH + 1);
    ferry_err code;
    char err[1024] = "";
    Ferry__Value *v = convert(L, expr, &code, err, sizeof err);
    assert_null(v);
    assert_int_equal(code, FERRY_EBADVALUE);
    assert_non_null(strstr(err, "nested deeper than 64"));
    assert_int_equal(strncmp(err, "v.x.x.x", 7), 0);

    /* Pushing a tree too deep is refused without raising. */
    Ferry__Value *root = ferry_value_table(), *cur = root;
    for (int i = 0; i < ENGINE_VALUE_MAX_DEPTH; i++) {
        Ferry__Value *child = ferry_value_table();
        assert_int_equal(ferry_table_append(cur, child), FERRY_OK);
        cur = child;
    }
    int top = lua_gettop(L);
    assert_false(engine_value_push(L, root, err, sizeof err));
    assert_int_equal(lua_gettop(L), top);
    assert_non_null(strstr(err, "deeper"));
    ferry_value_free(root);
}

static void expect_refused(lua_State *L, const char *expr, const char *message)
{
    ferry_err code;
    char err[512] = "";
    Ferry__Value *v = convert(L, expr, &code, err, sizeof err);
    assert_null(v);
    assert_int_equal(code, FERRY_EBADVALUE);
    if (strcmp(err, message) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", expr, err, message);
}

static void test_refused(void **state)
{
    lua_State *L = *state;
    expect_refused(L, "print", "v: cannot send a function");
    expect_refused(L, "{1, {x = print}}", "v[2].x: cannot send a function");
    expect_refused(L, "{['a b'] = {print}}", "v[\"a b\"][1]: cannot send a function");
    expect_refused(L, "{[print] = 1}", "v{key}: cannot send a function");
    expect_refused(L, "coroutine.create(print)", "v: cannot send a thread");
    expect_refused(L, "io.stdout", "v: cannot send a userdata");
    expect_refused(L, "(function() local t = {a = {}} t.a.b = t return t end)()",
                   "v.a.b: cannot send a table that contains itself (cycle)");
    expect_refused(L, "(function() local t = {} t[1] = t return t end)()",
                   "v[1]: cannot send a table that contains itself (cycle)");
    /* Shared subtables flattened exponentially blow the size budget, not memory. */
    ferry_err code;
    char err[512] = "";
    const char *dag = "(function() local t = {'xxxxxxxxxxxxxxxx'}\n"
                      "for i = 1, 40 do t = {t, t} end return t end)()";
    Ferry__Value *v = convert(L, dag, &code, err, sizeof err);
    assert_null(v);
    assert_int_equal(code, FERRY_EBADVALUE);
    assert_non_null(strstr(err, "too large"));
}

static void test_pack(void **state)
{
    lua_State *L = *state;
    push_expr(L, "1");
    push_expr(L, "2.5");
    push_expr(L, "{x = print}");
    Ferry__Value **arr;
    size_t n;
    char err[256] = "";
    assert_int_equal(
        engine_value_pack(L, -3, 3, "args", ENGINE_VALUE_BUDGET, NULL, &arr, &n, err, sizeof err),
        FERRY_EBADVALUE);
    assert_string_equal(err, "args[3].x: cannot send a function");
    assert_null(arr);
    lua_pop(L, 1);
    assert_int_equal(
        engine_value_pack(L, -2, 2, "args", ENGINE_VALUE_BUDGET, NULL, &arr, &n, err, sizeof err),
        FERRY_OK);
    assert_int_equal(n, 2);
    assert_int_equal(arr[0]->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_int_equal(arr[1]->kind_case, FERRY__VALUE__KIND_NUMBER);
    ferry_values_free(arr, n);
    assert_int_equal(
        engine_value_pack(L, 1, 0, "args", ENGINE_VALUE_BUDGET, NULL, &arr, &n, err, sizeof err),
        FERRY_OK);
    assert_int_equal(n, 0);
    ferry_values_free(arr, n);
    lua_pop(L, 2);

    /* One room across packs (the calls of a ferry.all), in heap bytes: a
     * string takes its bytes and a little more, a table of small values
     * many times its wire size. */
    push_expr(L, "('x'):rep(1000)");
    size_t room = 2000;
    assert_int_equal(engine_value_pack(L, -1, 1, "calls[1]", ENGINE_VALUE_BUDGET, &room, &arr, &n,
                                       err, sizeof err),
                     FERRY_OK);
    assert_true(room < 1000 && room > 800);
    ferry_values_free(arr, n);
    size_t left = room;
    assert_int_equal(engine_value_pack(L, -1, 1, "calls[2]", ENGINE_VALUE_BUDGET, &room, &arr, &n,
                                       err, sizeof err),
                     FERRY_ELIMIT);
    char want[64];
    snprintf(want, sizeof want, "calls[2][1]: more than %zu bytes once packed", left);
    assert_string_equal(err, want);
    assert_null(arr);
    lua_pop(L, 1);
    push_expr(L, "(function() local t = {} for i = 1, 100 do t[i] = true end return t end)()");
    room = 100 * 50; /* the wire size is 200 */
    assert_int_equal(
        engine_value_pack(L, -1, 1, "args", ENGINE_VALUE_BUDGET, &room, &arr, &n, err, sizeof err),
        FERRY_ELIMIT);
    lua_pop(L, 1);
}

static void test_bad_peer_values(void **state)
{
    lua_State *L = *state;
    char err[256];
    int top = lua_gettop(L);

    Ferry__Value *t = ferry_value_table();
    assert_int_equal(ferry_table_set(t, ferry_value_nil(), ferry_value_int(1)), FERRY_OK);
    assert_false(engine_value_push(L, t, err, sizeof err));
    assert_string_equal(err, "table key is nil");
    assert_int_equal(lua_gettop(L), top);
    ferry_value_free(t);

    t = ferry_value_table();
    assert_int_equal(ferry_table_set(t, ferry_value_float(NAN), ferry_value_int(1)), FERRY_OK);
    assert_false(engine_value_push(L, t, err, sizeof err));
    assert_string_equal(err, "table key is NaN");
    ferry_value_free(t);

    /* A value with nothing set and a NULL pair value are nil. */
    Ferry__Value unset = FERRY__VALUE__INIT;
    assert_true(engine_value_push(L, &unset, err, sizeof err));
    assert_true(lua_isnil(L, -1));
    lua_pop(L, 1);
    t = ferry_value_table();
    /* A pair without its value, as a peer may send it (the builder refuses one). */
    assert_int_equal(ferry_table_set(t, ferry_value_cstring("k"), ferry_value_nil()), FERRY_OK);
    ferry_value_free(t->table->hash[0]->value);
    t->table->hash[0]->value = NULL;
    assert_true(engine_value_push(L, t, err, sizeof err));
    assert_int_equal(lua_getfield(L, -1, "k"), LUA_TNIL);
    lua_pop(L, 2);
    ferry_value_free(t);

    /* A float key with an integral value becomes an integer key, as in Lua. */
    t = ferry_value_table();
    assert_int_equal(ferry_table_set(t, ferry_value_float(2.0), ferry_value_cstring("two")),
                     FERRY_OK);
    assert_true(engine_value_push(L, t, err, sizeof err));
    assert_int_equal(lua_rawgeti(L, -1, 2), LUA_TSTRING);
    lua_pop(L, 2);
    ferry_value_free(t);

    /* A key in both parts takes the hash part's value; of a key repeated in
     * the hash part, the last (protocol.md, Values). */
    t = ferry_value_table();
    assert_int_equal(ferry_table_append(t, ferry_value_cstring("array")), FERRY_OK);
    assert_int_equal(ferry_table_set(t, ferry_value_int(1), ferry_value_cstring("hash")), FERRY_OK);
    assert_int_equal(ferry_table_set(t, ferry_value_cstring("k"), ferry_value_int(1)), FERRY_OK);
    assert_int_equal(ferry_table_set(t, ferry_value_cstring("k"), ferry_value_int(2)), FERRY_OK);
    assert_true(engine_value_push(L, t, err, sizeof err));
    assert_int_equal(lua_rawgeti(L, -1, 1), LUA_TSTRING);
    assert_string_equal(lua_tostring(L, -1), "hash");
    assert_int_equal(lua_getfield(L, -2, "k"), LUA_TNUMBER);
    assert_int_equal(lua_tointeger(L, -1), 2);
    lua_pop(L, 3);
    ferry_value_free(t);
    assert_int_equal(lua_gettop(L), top);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scalars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_peer_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

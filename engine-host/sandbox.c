/*
 * sandbox: opens the safe subset of Lua's standard library.
 *
 * Opening only what is safe (instead of luaL_openlibs and deleting) keeps
 * io, debug and package out of the registry's loaded table too, and makes a
 * fresh state cheaper, which matters with thousands of scripts per engine.
 *
 * The table functions below behave as Lua 5.4's (same checks, same
 * metamethods, same messages); they only count their loop steps.
 */
#include "sandbox.h"

#include "pattern.h"

#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <string.h>

static const luaL_Reg safe_libs[] = {
    {LUA_GNAME, luaopen_base},       {LUA_COLIBNAME, luaopen_coroutine},
    {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
    {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
    {LUA_OSLIBNAME, luaopen_os},
};

static const char *const os_kept[] = {"time", "clock", "date", "difftime"};

static const char *const base_removed[] = {"dofile", "loadfile", "print"};

/*
 * Compiling, in pieces. Lua's parser asks its reader for more source as it
 * goes, so a reader that hands out ENGINE_SANDBOX_LOAD_PIECE bytes at a time
 * and charges the meter for each piece keeps compilation under the script's
 * deadline and instruction limit (the charge raises when one is broken, and
 * lua_load turns that into its error) and lets the host's tick run during a
 * long compile. The reader also refuses chunks over max_source, wherever the
 * bytes come from (a string or a reader function), and binary chunks where
 * the mode would let Lua load them (otherwise Lua's own check says no).
 */
typedef struct {
    const engine_sandbox_meter *meter;
    const char *s; /* a string chunk: what is left of it */
    size_t left;
    int reader;    /* stack index of a reader function (the next slot keeps its piece), or 0 */
    size_t total;  /* bytes handed to the parser so far */
    size_t max;    /* 0: any */
    int text_only; /* the mode allows binary chunks: refuse them here instead */
} loader;

static const char *load_piece(lua_State *L, void *ud, size_t *size)
{
    loader *ld = ud;
    const char *p;
    if (ld->reader) { /* as Lua's generic_reader */
        luaL_checkstack(L, 2, "too many nested functions");
        lua_pushvalue(L, ld->reader);
        lua_call(L, 0, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            *size = 0;
            return NULL;
        }
        if (!lua_isstring(L, -1))
            luaL_error(L, "reader function must return a string");
        lua_replace(L, ld->reader + 1);
        p = lua_tolstring(L, ld->reader + 1, size);
    } else {
        *size = ld->left < ENGINE_SANDBOX_LOAD_PIECE ? ld->left : ENGINE_SANDBOX_LOAD_PIECE;
        p = ld->s;
        ld->s += *size;
        ld->left -= *size;
    }
    if (*size == 0)
        return NULL;
    if (ld->total == 0 && ld->text_only && p[0] == LUA_SIGNATURE[0]) {
        /* As Lua's own mode check words it: no position. */
        lua_pushliteral(L, "attempt to load a binary chunk (only text chunks are allowed here)");
        lua_error(L);
    }
    ld->total += *size;
    if (ld->max && ld->total > ld->max)
        luaL_error(L, "chunk too large: over the limit of %d bytes (--max-source)", (int)ld->max);
    if (ld->meter)
        ld->meter->charge(L, *size);
    return p;
}

static size_t max_source(lua_State *L, const engine_sandbox_meter *meter)
{
    return meter && meter->max_source ? meter->max_source(L) : 0;
}

int engine_sandbox_load(lua_State *L, const char *source, size_t len, const char *chunkname,
                        const engine_sandbox_meter *meter)
{
    loader ld = {.meter = meter, .s = source, .left = len, .max = max_source(L, meter)};
    return lua_load(L, load_piece, &ld, chunkname, "t");
}

#define LOAD_RESERVED 5 /* the slot that keeps a reader function's last piece */

/* load(chunk [, chunkname [, mode [, env]]]) as Lua's, compiled by load_piece. */
static int safe_load(lua_State *L)
{
    const engine_sandbox_meter *meter = lua_touserdata(L, lua_upvalueindex(1));
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    const char *mode = luaL_optstring(L, 3, "bt");
    int env = !lua_isnone(L, 4) ? 4 : 0;
    loader ld = {.meter = meter, .max = max_source(L, meter), .text_only = !!strchr(mode, 'b')};
    int status;
    if (s) {
        const char *chunkname = luaL_optstring(L, 2, s);
        ld.s = s;
        ld.left = len;
        status = lua_load(L, load_piece, &ld, chunkname, mode);
    } else {
        const char *chunkname = luaL_optstring(L, 2, "=(load)");
        luaL_checktype(L, 1, LUA_TFUNCTION);
        lua_settop(L, LOAD_RESERVED);
        ld.reader = 1;
        status = lua_load(L, load_piece, &ld, chunkname, mode);
    }
    if (status != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1))
            lua_pop(L, 1);
    }
    return 1;
}

/* os.clock: the script's own time, not the engine's (its other scripts'). */
static int safe_clock(lua_State *L)
{
    const engine_sandbox_meter *meter = lua_touserdata(L, lua_upvalueindex(1));
    lua_pushnumber(L, meter->clock(L));
    return 1;
}

static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is allowed here, not \"%s\"", opt);
    int kb = lua_gc(L, LUA_GCCOUNT, 0);
    int b = lua_gc(L, LUA_GCCOUNTB, 0);
    lua_pushnumber(L, (lua_Number)kb + ((lua_Number)b / 1024));
    return 1;
}

/* setmetatable refusing a metatable with __gc. Lua runs finalizers with
 * hooks off, so a looping __gc would escape the script's deadline and hold
 * the engine's only thread; marking happens at setmetatable time only (a
 * __gc added later is ignored), so checking here is enough. Otherwise Lua's
 * (luaB_setmetatable), written out so that its messages name it. */
static int safe_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* string.rep, except that copies of nothing cost nothing: Lua's would loop
 * n times (up to 2^63) doing empty copies. */
static int safe_rep(lua_State *L)
{
    size_t len, seplen;
    luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &seplen);
    if (len == 0 && seplen == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    /* Lua's own limit (lstrlib's MAXSIZE), raised here so that the message
     * says where rep was called, as Lua's does; Lua's rep cannot fail then. */
    if (n > 0 && (len + seplen < len || len + seplen > (size_t)INT_MAX / (lua_Unsigned)n))
        return luaL_error(L, "resulting string too large");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* Counts loop steps and hands them to the meter every so many. */
typedef struct {
    lua_State *L;
    const engine_sandbox_meter *meter;
    uint64_t steps;
} counter;

static void count_step(counter *c)
{
    if (++c->steps == ENGINE_SANDBOX_METER_STEPS) {
        if (c->meter)
            c->meter->charge(c->L, c->steps);
        c->steps = 0;
    }
}

static counter new_counter(lua_State *L)
{
    return (counter){.L = L, .meter = lua_touserdata(L, lua_upvalueindex(1))};
}

enum { TAB_R = 1, TAB_W = 2, TAB_L = 4 };

/* Lua 5.4.4's table.remove blames argument 1 for a bad position; later ones 2. */
#if LUA_VERSION_RELEASE_NUM <= 50404
#define REMOVE_POS_ARG 1
#else
#define REMOVE_POS_ARG 2
#endif

/* As Lua's: a table, or a value whose metatable gives what the caller needs. */
static void check_table(lua_State *L, int arg, int what)
{
    if (lua_type(L, arg) == LUA_TTABLE)
        return;
    int n = 1;
    if (lua_getmetatable(L, arg)) {
        static const char *const fields[] = {"__index", "__newindex", "__len"};
        int ok = 1;
        for (int i = 0; i < 3 && ok; i++) {
            if (!(what & (1 << i)))
                continue;
            lua_pushstring(L, fields[i]);
            ok = lua_rawget(L, -++n) != LUA_TNIL;
        }
        if (ok) {
            lua_pop(L, n);
            return;
        }
    }
    luaL_checktype(L, arg, LUA_TTABLE); /* raises */
}

static lua_Integer length_of(lua_State *L, int arg, int what)
{
    check_table(L, arg, what | TAB_L);
    return luaL_len(L, arg);
}

static int safe_insert(lua_State *L)
{
    counter c = new_counter(L);
    lua_Integer e = (lua_Integer)((lua_Unsigned)length_of(L, 1, TAB_R | TAB_W) + 1u);
    lua_Integer pos;
    switch (lua_gettop(L)) {
    case 2:
        pos = e;
        break;
    case 3:
        pos = luaL_checkinteger(L, 2);
        /* pos in [1, e], with the unsigned trick for the lower bound */
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
        for (lua_Integer i = e; i > pos; i--) {
            count_step(&c);
            lua_geti(L, 1, i - 1);
            lua_seti(L, 1, i);
        }
        break;
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    lua_seti(L, 1, pos);
    return 0;
}

static int safe_remove(lua_State *L)
{
    counter c = new_counter(L);
    lua_Integer size = length_of(L, 1, TAB_R | TAB_W);
    lua_Integer pos = luaL_optinteger(L, 2, size);
    if (pos != size) /* pos in [1, size + 1] */
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, REMOVE_POS_ARG,
                      "position out of bounds");
    lua_geti(L, 1, pos);
    for (; pos < size; pos++) {
        count_step(&c);
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

static int safe_move(lua_State *L)
{
    counter c = new_counter(L);
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int tt = !lua_isnoneornil(L, 5) ? 5 : 1; /* the destination table */
    check_table(L, 1, TAB_R);
    check_table(L, tt, TAB_W);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        lua_Integer n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
        if (t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ))) {
            for (lua_Integer i = 0; i < n; i++) {
                count_step(&c);
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
            }
        } else { /* overlapping, moving up: from the end */
            for (lua_Integer i = n - 1; i >= 0; i--) {
                count_step(&c);
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
            }
        }
    }
    lua_pushvalue(L, tt);
    return 1;
}

static void trim_os(lua_State *L, const engine_sandbox_meter *meter)
{
    lua_getglobal(L, LUA_OSLIBNAME);
    lua_createtable(L, 0, (int)(sizeof os_kept / sizeof os_kept[0]));
    for (size_t i = 0; i < sizeof os_kept / sizeof os_kept[0]; i++) {
        lua_getfield(L, -2, os_kept[i]);
        lua_setfield(L, -2, os_kept[i]);
    }
    if (meter && meter->clock) {
        lua_pushlightuserdata(L, (void *)meter);
        lua_pushcclosure(L, safe_clock, 1);
        lua_setfield(L, -2, "clock");
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, LUA_OSLIBNAME);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_insert(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 2);
}

/* Replaces name in the table on top with f, given the meter as upvalue. */
static void set_metered(lua_State *L, const char *name, lua_CFunction f,
                        const engine_sandbox_meter *meter)
{
    lua_pushlightuserdata(L, (void *)meter);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, name);
}

void engine_sandbox_open(lua_State *L, const engine_sandbox_meter *meter)
{
    for (size_t i = 0; i < sizeof safe_libs / sizeof safe_libs[0]; i++) {
        luaL_requiref(L, safe_libs[i].name, safe_libs[i].func, 1);
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < sizeof base_removed / sizeof base_removed[0]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, base_removed[i]);
    }
    lua_pushlightuserdata(L, (void *)meter);
    lua_pushcclosure(L, safe_load, 1);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, safe_setmetatable);
    lua_setglobal(L, "setmetatable");
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setglobal(L, "collectgarbage");

    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, safe_rep, 1);
    lua_setfield(L, -2, "rep");
    engine_pattern_open(L, lua_gettop(L), meter);
    lua_pop(L, 1);

    lua_getglobal(L, LUA_TABLIBNAME);
    set_metered(L, "insert", safe_insert, meter);
    set_metered(L, "remove", safe_remove, meter);
    set_metered(L, "move", safe_move, meter);
    lua_pop(L, 1);

    trim_os(L, meter);
}

/*
 * sandbox: opens the safe subset of Lua's standard library.
 *
 * Opening only what is safe (instead of luaL_openlibs and deleting) keeps
 * io, debug and package out of the registry's loaded table too, and makes a
 * fresh state cheaper, which matters with thousands of scripts per engine.
 */
#include "sandbox.h"

#include <lauxlib.h>
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

/* load(chunk [, chunkname [, mode [, env]]]) with mode forced to "t". The
 * number of arguments is kept: load tells an absent env from a nil one. */
static int safe_load(lua_State *L)
{
    int n = lua_gettop(L);
    if (n < 3)
        lua_settop(L, 3);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n < 3 ? 3 : n, LUA_MULTRET);
    return lua_gettop(L);
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
 * __gc added later is ignored), so checking here is enough. */
static int safe_setmetatable(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

static void trim_os(lua_State *L)
{
    lua_getglobal(L, LUA_OSLIBNAME);
    lua_createtable(L, 0, (int)(sizeof os_kept / sizeof os_kept[0]));
    for (size_t i = 0; i < sizeof os_kept / sizeof os_kept[0]; i++) {
        lua_getfield(L, -2, os_kept[i]);
        lua_setfield(L, -2, os_kept[i]);
    }
    lua_pushvalue(L, -1);
    lua_setglobal(L, LUA_OSLIBNAME);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_insert(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 2);
}

void engine_sandbox_open(lua_State *L)
{
    for (size_t i = 0; i < sizeof safe_libs / sizeof safe_libs[0]; i++) {
        luaL_requiref(L, safe_libs[i].name, safe_libs[i].func, 1);
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < sizeof base_removed / sizeof base_removed[0]; i++) {
        lua_pushnil(L);
        lua_setglobal(L, base_removed[i]);
    }
    lua_getglobal(L, "load");
    lua_pushcclosure(L, safe_load, 1);
    lua_setglobal(L, "load");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setglobal(L, "setmetatable");
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setglobal(L, "collectgarbage");

    lua_getglobal(L, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    trim_os(L);
}

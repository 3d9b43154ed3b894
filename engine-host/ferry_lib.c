/*
 * ferry_lib: ferry.call, ferry.args, print capture, pcall, xpcall and error
 * objects.
 *
 * ferry.call yields with lua_yieldk, marked as a Ferry yield so that the
 * script's own coroutines pass it up to the engine (coroutines.c); the engine
 * resumes the script once the call is answered, and the continuation turns
 * the answer (engine_script.answer) into return values or raises it as an
 * error object. Everything a script passes in is checked here, at the
 * boundary.
 */
#include "ferry_lib.h"

#include "coroutines.h"
#include "ferry_value.h"
#include "ferry_utf8.h"
#include "lua_value.h"
#include "script.h"

#include <assert.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static engine_script *script_of(lua_State *L)
{
    engine_script *s = engine_script_of(L);
    assert(s);
    return s;
}

void engine_lib_push_error(lua_State *L, const char *code, const char *message)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, ENGINE_LIB_ERROR_TYPE);
}

int engine_lib_error(lua_State *L, const char *code, const char *fmt, ...)
{
    /* Formatted in C: Lua's own formatter knows no %zu or %lld. */
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    engine_lib_push_error(L, code, msg);
    return lua_error(L);
}

int engine_lib_is_error(lua_State *L, int idx, const char **code, const char **message)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, ENGINE_LIB_ERROR_TYPE);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!same)
        return 0;
    lua_pushliteral(L, "code");
    lua_rawget(L, idx);
    lua_pushliteral(L, "message");
    lua_rawget(L, idx);
    int ok = lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING;
    if (ok) {
        /* Both strings are still referenced by the table at idx. */
        *code = lua_tostring(L, -2);
        *message = lua_tostring(L, -1);
    }
    lua_pop(L, 2);
    return ok;
}

static int error_tostring(lua_State *L)
{
    const char *code, *message;
    if (!engine_lib_is_error(L, 1, &code, &message)) {
        lua_pushliteral(L, ENGINE_LIB_ERROR_TYPE);
        return 1;
    }
    lua_pushstring(L, code);
    lua_pushliteral(L, ": ");
    lua_pushstring(L, message);
    lua_concat(L, 3);
    return 1;
}

/* Continuation of ferry.call: runs inside lua_resume when the answer came. */
static int call_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    engine_script *s = script_of(L);
    const engine_script_answer *a = s->answer;
    assert(a);
    lua_settop(L, 0); /* ferry.call's own arguments */
    if (!a->reply)
        return engine_lib_error(L, a->code, "%s", a->message ? a->message : "");
    const Ferry__Reply *r = a->reply;
    if (r->error) {
        const char *code = r->error->code && *r->error->code ? r->error->code : "call_error";
        return engine_lib_error(L, code, "%s", r->error->message ? r->error->message : "");
    }
    if (r->n_values >= INT_MAX / 2 || !lua_checkstack(L, (int)r->n_values + 1))
        return engine_lib_error(L, "bad_value", "reply carries too many values (%zu)", r->n_values);
    char why[256];
    for (size_t i = 0; i < r->n_values; i++)
        if (!engine_value_push(L, r->values[i], why, sizeof why))
            return engine_lib_error(L, "bad_value", "reply value %zu: %s", i + 1, why);
    return (int)r->n_values;
}

/* Raises a clear error when the script cannot be suspended where it stands. */
static void check_yieldable(lua_State *L, const char *what)
{
    const char *why = engine_coroutines_cannot_yield(L);
    if (why)
        engine_lib_error(L, "bad_argument", "%s cannot yield here: %s", what, why);
}

/* Suspends the whole script until the engine resumes it with an answer,
 * through any coroutines of the script's own (coroutines.c). */
static int yield_to_engine(lua_State *L, engine_script *s, lua_KContext ctx, lua_KFunction k)
{
    s->ferry_yield = 1;
    return lua_yieldk(L, 0, ctx, k);
}

static int l_call(lua_State *L)
{
    engine_script *s = script_of(L);
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_typeerror(L, 1, "string");
    size_t len;
    const char *name = lua_tolstring(L, 1, &len);
    if (len == 0 || strlen(name) != len || !ferry_utf8_valid(name, len))
        return luaL_argerror(L, 1, "function name must be non-empty UTF-8 without zero bytes");
    check_yieldable(L, "ferry.call");
    Ferry__Value **args;
    size_t nargs;
    char why[512];
    ferry_err err = engine_value_pack(L, 2, lua_gettop(L) - 1, "args", ENGINE_VALUE_BUDGET, &args,
                                      &nargs, why, sizeof why);
    if (err)
        return engine_lib_error(L, ferry_err_code(err), "%s", why);
    why[0] = '\0';
    err = s->host->call(s->host->ctx, s, name, args, nargs, 0, why, sizeof why);
    if (err)
        return engine_lib_error(L, ferry_err_code(err), "%s", why[0] ? why : ferry_err_desc(err));
    s->pending++;
    return yield_to_engine(L, s, 0, call_done);
}

/*
 * ferry.all: every call goes out before any answer is awaited. Stack while
 * waiting: [1] the results table, [2] the first failure so far (or nil).
 * Each answer resumes the coroutine into all_done, which files it under its
 * tag (the call's position) and yields again until none is pending. Only
 * then is a failure raised, so no answer is left to arrive later.
 */
static void all_file_error(lua_State *L, int slot, uint32_t index, const char *code,
                           const char *message)
{
    if (!lua_isnil(L, slot)) {
        lua_getfield(L, slot, "index");
        lua_Integer first = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (first <= (lua_Integer)index)
            return;
    }
    engine_lib_push_error(L, code, message);
    lua_pushinteger(L, (lua_Integer)index);
    lua_setfield(L, -2, "index");
    lua_replace(L, slot);
}

static int all_done(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    engine_script *s = script_of(L);
    const engine_script_answer *a = s->answer;
    assert(a && a->tag >= 1 && a->tag <= (uint32_t)ctx);
    lua_settop(L, 2);
    const Ferry__Reply *r = a->reply;
    if (!r) {
        all_file_error(L, 2, a->tag, a->code, a->message ? a->message : "");
    } else if (r->error) {
        const char *code = r->error->code && *r->error->code ? r->error->code : "call_error";
        all_file_error(L, 2, a->tag, code, r->error->message ? r->error->message : "");
    } else {
        char why[256];
        int ok = r->n_values < INT_MAX;
        lua_createtable(L, ok ? (int)r->n_values : 0, 1);
        for (size_t i = 0; ok && i < r->n_values; i++) {
            ok = engine_value_push(L, r->values[i], why, sizeof why);
            if (ok)
                lua_rawseti(L, -2, (lua_Integer)i + 1);
            else
                all_file_error(L, 2, a->tag, "bad_value", why);
        }
        lua_pushinteger(L, (lua_Integer)r->n_values);
        lua_setfield(L, -2, "n");
        lua_rawseti(L, 1, (lua_Integer)a->tag);
    }
    if (s->pending > 0)
        return yield_to_engine(L, s, ctx, all_done);
    if (!lua_isnil(L, 2)) {
        lua_pushvalue(L, 2);
        return lua_error(L);
    }
    lua_settop(L, 1);
    return 1;
}

/* The number of values in call table i: its n field when an integer, else its length. */
static lua_Integer call_len(lua_State *L, int i)
{
    lua_pushliteral(L, "n");
    lua_rawget(L, i);
    lua_Integer len = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (lua_Integer)lua_rawlen(L, i);
    lua_pop(L, 1);
    return len;
}

static int l_all(lua_State *L)
{
    engine_script *s = script_of(L);
    int n = lua_gettop(L);
    if (n > ENGINE_LIB_ALL_MAX)
        return engine_lib_error(L, "bad_argument", "ferry.all: at most %d calls at once, not %d",
                                ENGINE_LIB_ALL_MAX, n);
    lua_Integer widest = 1;
    for (int i = 1; i <= n; i++) {
        luaL_checktype(L, i, LUA_TTABLE);
        if (lua_rawgeti(L, i, 1) != LUA_TSTRING)
            return luaL_argerror(L, i, "{name, args...} expected (name is a string)");
        lua_pop(L, 1);
        lua_Integer len = call_len(L, i);
        if (len < 1 || len > ENGINE_LIB_ALL_MAX_ARGS)
            return luaL_argerror(L, i, "a call holds a name and at most 250 arguments");
        widest = len > widest ? len : widest;
    }
    check_yieldable(L, "ferry.all");

    /* Scratch space lives on the stack (n+1 .. n+4) so it stays alive. */
    size_t cnt = n > 0 ? (size_t)n : 1;
    Ferry__Value ***args = lua_newuserdatauv(L, cnt * sizeof *args, 0);
    size_t *nargs = lua_newuserdatauv(L, cnt * sizeof *nargs, 0);
    ferry_err *errs = lua_newuserdatauv(L, cnt * sizeof *errs, 0);
    char(*whys)[256] = lua_newuserdatauv(L, cnt * sizeof *whys, 0);
    lua_createtable(L, n, 0); /* n+5: results */
    lua_pushnil(L);           /* n+6: first failure */
    luaL_checkstack(L, (int)widest, "ferry.all: too many arguments");

    /* Pack every call before sending any, so a bad value sends nothing.
     * Nothing in this loop or the next raises, so no packed value leaks. */
    for (int i = 1; i <= n; i++) {
        int len = (int)call_len(L, i);
        for (int k = 2; k <= len; k++)
            lua_rawgeti(L, i, k);
        char path[48];
        snprintf(path, sizeof path, "calls[%d]", i);
        char why[512];
        ferry_err err = engine_value_pack(L, lua_gettop(L) - len + 2, len - 1, path,
                                          ENGINE_VALUE_BUDGET, &args[i - 1], &nargs[i - 1], why,
                                          sizeof why);
        lua_pop(L, len - 1);
        if (err) {
            for (int k = 1; k < i; k++)
                ferry_values_free(args[k - 1], nargs[k - 1]);
            return engine_lib_error(L, ferry_err_code(err), "%s", why);
        }
    }
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, i, 1); /* the name stays referenced by its call table */
        const char *name = lua_tostring(L, -1);
        lua_pop(L, 1);
        whys[i - 1][0] = '\0';
        errs[i - 1] = s->host->call(s->host->ctx, s, name, args[i - 1], nargs[i - 1],
                                    (uint32_t)i, whys[i - 1], sizeof whys[i - 1]);
        if (errs[i - 1] == FERRY_OK)
            s->pending++;
    }
    /* A call that could not be sent counts as answered with its error. */
    for (int i = 1; i <= n; i++)
        if (errs[i - 1] != FERRY_OK)
            all_file_error(L, n + 6, (uint32_t)i, ferry_err_code(errs[i - 1]),
                           whys[i - 1][0] ? whys[i - 1] : ferry_err_desc(errs[i - 1]));
    lua_copy(L, n + 5, 1);
    lua_copy(L, n + 6, 2);
    lua_settop(L, 2);
    if (s->pending > 0)
        return yield_to_engine(L, s, n, all_done);
    if (!lua_isnil(L, 2))
        return lua_error(L);
    lua_settop(L, 1);
    return 1;
}

/* Appends to the script's output; at the limit keeps what fits and raises. */
static void put(lua_State *L, engine_script *s, const char *p, size_t n)
{
    size_t room = s->limits.max_output - s->output.len;
    int over = n > room;
    if (over)
        n = room;
    if (n && ferry_buf_append(&s->output, p, n) != FERRY_OK)
        engine_lib_error(L, "out_of_memory", "print: out of memory");
    if (over) {
        engine_script_trip(s, ENGINE_LIMIT_OUTPUT);
        engine_script_raise_limit(L);
    }
}

/* print as Lua's, but into the script's output. */
static int l_print(lua_State *L)
{
    engine_script *s = script_of(L);
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *str = luaL_tolstring(L, i, &len);
        if (i > 1)
            put(L, s, "\t", 1);
        put(L, s, str, len);
        lua_pop(L, 1);
    }
    put(L, s, "\n", 1);
    return 0;
}

/*
 * pcall and xpcall as Lua's, except that an error of a broken limit is raised
 * again instead of being returned (engine_script_rethrow_limit).
 */
static int pcall_done(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        engine_script_rethrow_limit(L);
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

static int l_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1); /* the first result when nothing fails */
    lua_insert(L, 1);
    /* With a continuation, so that ferry.call inside pcall can still yield. */
    int status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, pcall_done);
    return pcall_done(L, status, 0);
}

/*
 * A limit raises its error from inside the hook, where Lua runs the message
 * handler of an enclosing xpcall with hooks off: a looping handler would
 * never be stopped. So xpcall wraps the script's handler in one that hands
 * the error back untouched once a limit is broken.
 *
 * An error raised by the script's handler goes to the handler again, as in
 * Lua, until Lua gives up with "error in error handling" (a handler that
 * fails every time). Except a Ferry error object (ferry.call cannot yield in
 * a handler): it becomes xpcall's error, since feeding it to a handler that
 * calls ferry.call again would only lose the message that says why.
 */
static int guarded_handler(lua_State *L)
{
    engine_script *s = script_of(L);
    if (s->tripped || s->interrupted)
        return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    if (lua_pcall(L, lua_gettop(L) - 1, 1, 0) == LUA_OK)
        return 1;
    engine_script_rethrow_limit(L);
    const char *code, *message;
    if (engine_lib_is_error(L, -1, &code, &message))
        return 1;
    return lua_error(L);
}

static int l_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1); /* the first result when nothing fails */
    lua_pushvalue(L, 1);   /* the function */
    lua_rotate(L, 3, 2);   /* both below the function's arguments */
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, pcall_done);
    return pcall_done(L, status, 2);
}

void engine_lib_open(lua_State *L)
{
    assert(engine_script_of(L));
    luaL_newmetatable(L, ENGINE_LIB_ERROR_TYPE); /* sets __name */
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_call);
    lua_setfield(L, -2, "call");
    lua_pushcfunction(L, l_all);
    lua_setfield(L, -2, "all");
    lua_newtable(L);
    lua_setfield(L, -2, "args");
    lua_setglobal(L, "ferry");

    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");

    lua_pushcfunction(L, l_pcall);
    lua_setglobal(L, "pcall");
    lua_pushcfunction(L, l_xpcall);
    lua_setglobal(L, "xpcall");
}

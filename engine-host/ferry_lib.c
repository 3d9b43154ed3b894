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
#include "ferry_codec.h"
#include "ferry_value.h"
#include "ferry_wire.h"
#include "lua_value.h"
#include "script.h"

#include <assert.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static engine_script *script_of(lua_State *L)
{
    engine_script *s = engine_script_of(L);
    assert(s);
    return s;
}

static const char errors_key = 'e'; /* registry: error object -> {code, message} (weak keys) */

void engine_lib_push_error(lua_State *L, const char *code, const char *message)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, ENGINE_LIB_ERROR_TYPE);
    /* The record of what Ferry raised, which the script cannot reach. */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &errors_key);
    lua_pushvalue(L, -2);
    lua_createtable(L, 2, 0); /* object, record table, object, record */
    lua_getfield(L, -4, "code");
    lua_rawseti(L, -2, 1);
    lua_getfield(L, -4, "message");
    lua_rawseti(L, -2, 2);
    lua_rawset(L, -3);
    lua_pop(L, 1);
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
    if (lua_type(L, idx) != LUA_TTABLE || !lua_checkstack(L, 4))
        return 0;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &errors_key);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 2);
        return 0;
    }
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    /* Both strings stay referenced by the record, which the weak table keeps
     * as long as the object at idx lives. */
    *code = lua_tostring(L, -2);
    *message = lua_tostring(L, -1);
    lua_pop(L, 4);
    return *code && *message;
}

/* Whether code is one a script may end with: see engine_lib_error_code. */
static int script_may_use(const char *code, size_t len)
{
    if (len == 0 || len > ENGINE_SCRIPT_CODE_MAX || !(code[0] >= 'a' && code[0] <= 'z'))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = code[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return 0;
    }
    for (int e = 0; e < FERRY_ERR_COUNT; e++)
        if (strcmp(code, ferry_err_code((ferry_err)e)) == 0)
            return e == FERRY_ESCRIPT; /* script_error is the script's anyway */
    return 1;
}

int engine_lib_error_code(lua_State *L, int idx, const char **code, const char **message)
{
    idx = lua_absindex(L, idx);
    if (engine_lib_is_error(L, idx, code, message))
        return 1;
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    luaL_checkstack(L, 3, NULL);
    if (lua_getfield(L, idx, "code") != LUA_TSTRING) {
        lua_pop(L, 1);
        return 0;
    }
    size_t len;
    const char *c = lua_tolstring(L, -1, &len);
    int t = lua_getfield(L, idx, "message");
    const char *m = t == LUA_TSTRING || t == LUA_TNUMBER ? lua_tostring(L, -1) : "";
    if (script_may_use(c, len) && strlen(c) == len) {
        *code = c;
        *message = m;
        return 1;
    }
    lua_pushlstring(L, c, len < ENGINE_SCRIPT_CODE_MAX ? len : ENGINE_SCRIPT_CODE_MAX);
    *code = ferry_err_code(FERRY_ESCRIPT);
    *message = lua_pushfstring(L, "error code '%s' is not the script's to raise: %s",
                               lua_tostring(L, -1), m);
    return 1;
}

static int error_tostring(lua_State *L)
{
    /* What the fields say now: this is only what the script reads. */
    lua_settop(L, 1);
    lua_pushliteral(L, "code");
    lua_rawget(L, 1);
    lua_pushliteral(L, "message");
    lua_rawget(L, 1);
    if (lua_type(L, 2) != LUA_TSTRING || lua_type(L, 3) != LUA_TSTRING) {
        lua_pushliteral(L, ENGINE_LIB_ERROR_TYPE);
        return 1;
    }
    lua_pushliteral(L, ": ");
    lua_insert(L, 3);
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

/*
 * Raises bad_argument unless name (argument arg of fn; in ferry.all the name
 * of call arg) is what the protocol allows: 1 to FERRY_FUNCTION_NAME_MAX
 * bytes of UTF-8 without zero bytes. A longer one makes a Command the broker
 * does not route, or one over its message limit.
 */
static void check_name(lua_State *L, int arg, const char *fn, const char *name, size_t len)
{
    if (len == 0 || len > FERRY_FUNCTION_NAME_MAX)
        engine_lib_error(L, "bad_argument",
                         "bad argument #%d to '%s' (function name of %zu bytes: 1 to %d allowed)",
                         arg, fn, len, FERRY_FUNCTION_NAME_MAX);
    if (!ferry_wire_function_name_ok(name, len))
        engine_lib_error(L, "bad_argument",
                         "bad argument #%d to '%s' (function name must be UTF-8 without zero "
                         "bytes)",
                         arg, fn);
}

/*
 * Where the packed arguments of new calls must fit: they are held from
 * packing until the call is answered, so they count against the script's
 * memory limit (engine_script_room) and the host's bound of bytes in
 * flight; packed they take more than on the wire (engine_value_pack).
 * Each call's values also take at most ENGINE_VALUE_BUDGET on the wire.
 */
typedef struct {
    size_t mem;  /* left under the script's memory limit */
    size_t host; /* left under the host's bound of calls in flight */
} call_room;

static call_room room_of(engine_script *s)
{
    call_room r = {.mem = engine_script_room(s), .host = SIZE_MAX};
    if (s->host->room)
        r.host = s->host->room(s->host->ctx);
    return r;
}

/* The heap the next call's packed arguments may take. */
static size_t room_left(const call_room *r)
{
    return r->mem < r->host ? r->mem : r->host;
}

/* What a Command takes beside its arguments: engine id, call id, timeout,
 * framing (its function name is added to it). */
#define COMMAND_OVERHEAD 128

/* Takes what a call's arguments used off both rooms. */
static void room_take(call_room *r, size_t used)
{
    r->mem -= used < r->mem ? used : r->mem;
    r->host -= used < r->host ? used : r->host;
}

/* Past its memory limit, the script broke that limit. Never returns. */
static int raise_memory_limit(lua_State *L, engine_script *s)
{
    s->mem_by_calls = 1;
    engine_script_trip(s, ENGINE_LIMIT_MEMORY);
    return engine_script_raise_limit(L);
}

/* True when err says the memory room (not the host's) was too small. */
static int out_of_mem_room(const call_room *r, ferry_err err)
{
    return err == FERRY_ELIMIT && r->mem <= r->host;
}

/*
 * Packs the n arguments at first of a call to a function with a name of
 * name_len bytes into *args, *nargs within *room, and takes what they and
 * the Command take off it. Errors as engine_value_pack's (room unchanged);
 * never raises.
 */
static ferry_err pack_one(lua_State *L, int first, int n, const char *what, size_t name_len,
                          call_room *room, Ferry__Value ***args, size_t *nargs, char *why,
                          size_t whylen)
{
    call_room r = *room;
    room_take(&r, COMMAND_OVERHEAD + name_len);
    size_t given = room_left(&r), left = given;
    ferry_err err =
        engine_value_pack(L, first, n, what, ENGINE_VALUE_BUDGET, &left, args, nargs, why, whylen);
    if (err)
        return err;
    room_take(&r, given - left);
    *room = r;
    return FERRY_OK;
}

/*
 * Garbage counts in the Lua state's bytes: when the memory room was too
 * small for a pack that failed with err, collects it, as Lua does before
 * it refuses memory, and gives the new room for one more try (returns 1).
 */
static int collect_for_room(lua_State *L, engine_script *s, call_room *room, ferry_err err)
{
    if (!out_of_mem_room(room, err))
        return 0;
    lua_gc(L, LUA_GCCOLLECT, 0);
    *room = room_of(s);
    return 1;
}

/*
 * Raises the error of a pack under room r that failed with err (why says
 * how): out of room is the memory limit or, when the host's bound was the
 * lower, overloaded. Never returns.
 */
static int raise_pack_error(lua_State *L, engine_script *s, const call_room *r, ferry_err err,
                            const char *why)
{
    if (err != FERRY_ELIMIT)
        return engine_lib_error(L, ferry_err_code(err), "%s", why);
    if (out_of_mem_room(r, err))
        return raise_memory_limit(L, s);
    return engine_lib_error(L, ferry_err_code(FERRY_EOVERLOADED),
                            "the engine has %zu bytes left for calls in flight "
                            "(--inflight-bytes): %s",
                            r->host, why);
}

static int l_call(lua_State *L)
{
    engine_script *s = script_of(L);
    if (lua_type(L, 1) != LUA_TSTRING)
        return luaL_typeerror(L, 1, "string");
    size_t len;
    const char *name = lua_tolstring(L, 1, &len);
    check_name(L, 1, "ferry.call", name, len);
    check_yieldable(L, "ferry.call");
    Ferry__Value **args;
    size_t nargs;
    char why[512];
    call_room room = room_of(s);
    int n = lua_gettop(L) - 1;
    ferry_err err = pack_one(L, 2, n, "args", len, &room, &args, &nargs, why, sizeof why);
    if (err && collect_for_room(L, s, &room, err))
        err = pack_one(L, 2, n, "args", len, &room, &args, &nargs, why, sizeof why);
    if (err)
        return raise_pack_error(L, s, &room, err, why);
    why[0] = '\0';
    err = s->host->call(s->host->ctx, s, name, args, nargs, 0, why, sizeof why);
    if (err == FERRY_ELIMIT)
        return raise_memory_limit(L, s);
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
        size_t name_len;
        const char *name = lua_tolstring(L, -1, &name_len);
        check_name(L, i, "ferry.all", name, name_len);
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
     * Nothing in this loop or the next raises, so no packed value leaks.
     * They are all held at once, so they share one room; when it is too
     * small, everything is packed once more after a collection. */
    call_room room = room_of(s);
    for (int attempt = 0;; attempt++) {
        ferry_err err = FERRY_OK;
        char why[512];
        int i;
        for (i = 1; i <= n && !err; i++) {
            int len = (int)call_len(L, i);
            for (int k = 2; k <= len; k++)
                lua_rawgeti(L, i, k);
            char path[48];
            snprintf(path, sizeof path, "calls[%d]", i);
            lua_rawgeti(L, i, 1);
            size_t name_len = lua_rawlen(L, -1);
            lua_pop(L, 1);
            err = pack_one(L, lua_gettop(L) - len + 2, len - 1, path, name_len, &room, &args[i - 1],
                           &nargs[i - 1], why, sizeof why);
            lua_pop(L, len - 1);
        }
        if (!err)
            break;
        for (int k = 1; k < i - 1; k++) /* call i - 1 failed */
            ferry_values_free(args[k - 1], nargs[k - 1]);
        if (attempt > 0 || !collect_for_room(L, s, &room, err))
            return raise_pack_error(L, s, &room, err, why);
    }
    int over = 0; /* a call did not fit the memory room: the rest are not sent */
    for (int i = 1; i <= n; i++) {
        if (over) {
            ferry_values_free(args[i - 1], nargs[i - 1]);
            errs[i - 1] = FERRY_ELIMIT;
            continue;
        }
        lua_rawgeti(L, i, 1); /* the name stays referenced by its call table */
        const char *name = lua_tostring(L, -1);
        lua_pop(L, 1);
        whys[i - 1][0] = '\0';
        errs[i - 1] = s->host->call(s->host->ctx, s, name, args[i - 1], nargs[i - 1],
                                    (uint32_t)i, whys[i - 1], sizeof whys[i - 1]);
        if (errs[i - 1] == FERRY_OK)
            s->pending++;
        over = errs[i - 1] == FERRY_ELIMIT;
    }
    /* The calls sent are forgotten when the script ends, as it does now. */
    if (over)
        return raise_memory_limit(L, s);
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
    lua_pushliteral(L, ENGINE_LIB_ERROR_TYPE);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    lua_createtable(L, 0, 0); /* the record of error objects */
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &errors_key);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_call);
    lua_setfield(L, -2, "call");
    lua_pushcfunction(L, l_all);
    lua_setfield(L, -2, "all");
    lua_setglobal(L, "ferry"); /* ferry.args: each script's own, set by script.c */

    lua_pushcfunction(L, l_print);
    lua_setglobal(L, "print");

    lua_pushcfunction(L, l_pcall);
    lua_setglobal(L, "pcall");
    lua_pushcfunction(L, l_xpcall);
    lua_setglobal(L, "xpcall");
}

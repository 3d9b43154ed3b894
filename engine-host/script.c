/*
 * script: one script's lua_State, its coroutine, limits and result.
 *
 * Every Lua call that may raise (state setup, describing an error value) runs
 * under lua_pcall on the script's main thread; the chunk itself runs in a
 * coroutine under lua_resume, which is protected too, so a script can never
 * make Lua panic. Limits:
 *   memory   a capping lua_Alloc counts the state's bytes and refuses past
 *            the cap; Lua then raises a memory error (code "limit").
 *   time     a count hook looks at the clock every ENGINE_SCRIPT_HOOK_COUNT
 *            instructions; past the deadline it raises, and from then on
 *            raises on every instruction so that pcall cannot keep the script
 *            alive (code "timeout" in the result). While the script waits on a
 *            call the host's deadline timer ends it with engine_script_fail.
 *   output   print stops at limits.max_output (ferry_lib).
 */
#include "script.h"

#include "ferry_clock.h"
#include "ferry_lib.h"
#include "ferry_log.h"
#include "ferry_value.h"
#include "lua_value.h"
#include "sandbox.h"

#include <assert.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char co_key = 'c'; /* registry key (light userdata) anchoring the coroutine */

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    engine_script *s = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        s->mem_used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > s->limits.max_memory - s->mem_used) {
        s->mem_refused = 1;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    s->mem_used = s->mem_used - old + nsize;
    return p;
}

static int panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    ferry_error("lua_panic", "error=\"%s\"", msg);
    abort();
    return 0;
}

static void deadline_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    engine_script *s = engine_script_of(L);
    if (!s->deadline_hit && ferry_now_ms() < s->deadline_ms)
        return;
    /* From now on this thread raises on every instruction: whatever pcall
     * catches, the next instruction raises again until the script is out.
     * (A message handler runs with hooks off here; ferry_lib's xpcall skips
     * the script's handler once the deadline is hit.) */
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT, 1);
    s->deadline_hit = 1;
    engine_lib_error(L, "limit", "script deadline passed");
}

/* Records the result as the error code/message (copied, made valid UTF-8:
 * they travel in proto3 string fields). */
static void set_error(engine_script *s, const char *code, const char *message)
{
    free(s->err_code);
    free(s->err_message);
    s->err_code = strdup(code);
    s->err_message = strdup(message ? message : "");
    if (s->err_code)
        engine_value_utf8_scrub(s->err_code, strlen(s->err_code));
    if (s->err_message)
        engine_value_utf8_scrub(s->err_message, strlen(s->err_message));
    s->ok = 0;
    s->done = 1;
}

static void set_ferry_error(engine_script *s, ferry_err err, const char *message)
{
    set_error(s, ferry_err_code(err), message);
}

static void set_timeout(engine_script *s)
{
    char msg[96];
    snprintf(msg, sizeof msg, "script deadline of %lld ms passed", (long long)s->limits.timeout_ms);
    set_ferry_error(s, FERRY_ETIMEOUT, msg);
}

static void set_memory_error(engine_script *s)
{
    char msg[96];
    if (!s->mem_refused) {
        set_ferry_error(s, FERRY_ENOMEM, "the engine ran out of memory");
        return;
    }
    snprintf(msg, sizeof msg, "memory limit of %zu bytes exceeded", s->limits.max_memory);
    set_ferry_error(s, FERRY_ELIMIT, msg);
}

engine_script *engine_script_new(const engine_script_host *host, const engine_script_limits *limits,
                                 uint64_t script_id)
{
    assert(host && host->call && limits);
    engine_script *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->host = host;
    s->limits = *limits;
    s->script_id = script_id;
    return s;
}

typedef struct {
    engine_script *s;
    const char *source;
    size_t len;
    const char *chunkname;
    Ferry__Value *const *args;
    size_t nargs;
    int load_status; /* luaL_loadbufferx status */
    ferry_err err;   /* a bad argument */
    char message[1024];
} setup_ctx;

/* Protected: builds the script's environment, compiles the chunk and puts it
 * with its arguments on a fresh coroutine. */
static int setup(lua_State *L)
{
    setup_ctx *c = lua_touserdata(L, 1);
    engine_script *s = c->s;
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT, ENGINE_SCRIPT_HOOK_COUNT);
    engine_sandbox_open(L);
    engine_lib_open(L);

    if (c->nargs > LUAI_MAXSTACK / 2) {
        c->err = FERRY_EBADVALUE;
        snprintf(c->message, sizeof c->message, "args: too many arguments (%zu)", c->nargs);
        return 0;
    }
    lua_createtable(L, (int)c->nargs, 0);
    int args = lua_gettop(L);
    char why[256];
    for (size_t i = 0; i < c->nargs; i++) {
        if (!engine_value_push(L, c->args[i], why, sizeof why)) {
            c->err = FERRY_EBADVALUE;
            snprintf(c->message, sizeof c->message, "args[%zu]: %s", i + 1, why);
            return 0;
        }
        lua_rawseti(L, args, (lua_Integer)i + 1);
    }
    lua_getglobal(L, "ferry");
    lua_pushvalue(L, args);
    lua_setfield(L, -2, "args");
    lua_pop(L, 1);

    c->load_status = luaL_loadbufferx(L, c->source, c->len, c->chunkname, "t");
    if (c->load_status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        snprintf(c->message, sizeof c->message, "%s", msg ? msg : "cannot compile");
        return 0;
    }

    lua_State *co = lua_newthread(L); /* inherits the hook and the extra space */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &co_key);
    luaL_checkstack(L, (int)c->nargs + 1, "too many arguments");
    if (!lua_checkstack(co, (int)c->nargs + 1))
        return luaL_error(L, "too many arguments");
    for (size_t i = 0; i < c->nargs; i++)
        lua_rawgeti(L, args, (lua_Integer)i + 1);
    lua_xmove(L, co, (int)c->nargs + 1); /* the chunk, then its arguments */
    s->co = co;
    return 0;
}

/* Protected, on the main thread: turns an error value into code and message,
 * as lua.c's message handler would for anything but an error object. */
static int describe(lua_State *L)
{
    engine_script *s = lua_touserdata(L, 2);
    const char *code, *message;
    if (engine_lib_is_error(L, 1, &code, &message)) {
        set_error(s, *code ? code : ferry_err_code(FERRY_ESCRIPT), message);
        return 0;
    }
    const char *msg = lua_tostring(L, 1); /* strings and numbers */
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    set_error(s, ferry_err_code(FERRY_ESCRIPT), msg);
    return 0;
}

static void finish_error(engine_script *s, int status)
{
    if (s->deadline_hit) {
        set_timeout(s);
        return;
    }
    if (status == LUA_ERRMEM) {
        set_memory_error(s);
        return;
    }
    lua_State *L = s->L;
    if (!lua_checkstack(L, 3)) {
        set_ferry_error(s, FERRY_ESCRIPT, "(the error value was lost: Lua stack full)");
        return;
    }
    lua_pushcfunction(L, describe);
    lua_xmove(s->co, L, 1);
    lua_pushlightuserdata(L, s);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        lua_pop(L, 1);
        if (s->deadline_hit)
            set_timeout(s);
        else
            set_ferry_error(s, FERRY_ESCRIPT, "(the error value could not be turned into text)");
    }
}

static void finish_ok(engine_script *s, int nres)
{
    if (s->deadline_hit) { /* returned past the deadline, e.g. straight out of a pcall */
        set_timeout(s);
        return;
    }
    char why[512];
    int first = lua_gettop(s->co) - nres + 1;
    ferry_err err = engine_value_pack(s->co, first, nres, "return", ENGINE_VALUE_BUDGET, &s->values,
                                      &s->n_values, why, sizeof why);
    if (err) {
        set_ferry_error(s, err, why);
        return;
    }
    s->ok = 1;
    s->done = 1;
}

static engine_script_state after_resume(engine_script *s, int status, int nres)
{
    switch (status) {
    case LUA_YIELD:
        if (s->pending > 0)
            return ENGINE_SCRIPT_WAITING;
        /* A bare coroutine.yield in the chunk: nobody outside would answer it. */
        set_ferry_error(s, FERRY_ESCRIPT, "attempt to yield from outside a coroutine");
        break;
    case LUA_OK:
        finish_ok(s, nres);
        break;
    default:
        finish_error(s, status);
        break;
    }
    return ENGINE_SCRIPT_DONE;
}

engine_script_state engine_script_start(engine_script *s, const void *source, size_t len,
                                        const char *name, Ferry__Value *const *args, size_t nargs)
{
    assert(!s->L && !s->done);
    s->deadline_ms = ferry_now_ms() + s->limits.timeout_ms;
    s->L = lua_newstate(capped_alloc, s);
    if (!s->L) {
        set_memory_error(s);
        return ENGINE_SCRIPT_DONE;
    }
    lua_atpanic(s->L, panic);
    *(engine_script **)lua_getextraspace(s->L) = s;

    char chunkname[256];
    snprintf(chunkname, sizeof chunkname, "=%s", name && *name ? name : "script");
    setup_ctx c = {.s = s,
                   .source = source ? source : "",
                   .len = source ? len : 0,
                   .chunkname = chunkname,
                   .args = args,
                   .nargs = nargs};
    lua_State *L = s->L;
    lua_pushcfunction(L, setup);
    lua_pushlightuserdata(L, &c);
    int status = lua_pcall(L, 1, 0, 0);
    if (status != LUA_OK) {
        if (status == LUA_ERRMEM) {
            set_memory_error(s);
        } else {
            const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            set_ferry_error(s, FERRY_ESCRIPT, msg ? msg : "cannot set up the script");
        }
        lua_pop(L, 1);
        return ENGINE_SCRIPT_DONE;
    }
    if (c.err) {
        set_ferry_error(s, c.err, c.message);
        return ENGINE_SCRIPT_DONE;
    }
    if (c.load_status == LUA_ERRMEM) {
        set_memory_error(s);
        return ENGINE_SCRIPT_DONE;
    }
    if (c.load_status != LUA_OK) {
        set_ferry_error(s, FERRY_ESYNTAX, c.message);
        return ENGINE_SCRIPT_DONE;
    }
    int nres = 0;
    status = lua_resume(s->co, L, (int)nargs, &nres);
    return after_resume(s, status, nres);
}

engine_script_state engine_script_resume(engine_script *s, const engine_script_answer *a)
{
    assert(!s->done && s->pending > 0 && a);
    s->pending--;
    s->answer = a;
    int nres = 0;
    int status = lua_resume(s->co, s->L, 0, &nres);
    s->answer = NULL;
    return after_resume(s, status, nres);
}

void engine_script_fail(engine_script *s, ferry_err err, const char *message)
{
    assert(!s->done);
    s->pending = 0;
    set_ferry_error(s, err, message);
}

void engine_script_result(const engine_script *s, Ferry__Result *out, Ferry__Error *error)
{
    assert(s->done);
    out->script_id = s->script_id;
    out->ok = s->ok;
    out->values = s->values;
    out->n_values = s->n_values;
    out->output.data = (uint8_t *)s->output.data;
    out->output.len = s->output.len;
    out->error = NULL;
    if (!s->ok) {
        error->code = s->err_code ? s->err_code : (char *)ferry_err_code(FERRY_ESCRIPT);
        error->message = s->err_message ? s->err_message : (char *)"";
        out->error = error;
    }
}

void engine_script_destroy(engine_script **sp)
{
    engine_script *s = *sp;
    if (!s)
        return;
    if (s->L)
        lua_close(s->L); /* no script finalizers: the sandbox refuses __gc */
    ferry_values_free(s->values, s->n_values);
    free(s->err_code);
    free(s->err_message);
    ferry_buf_fini(&s->output);
    free(s);
    *sp = NULL;
}

/*
 * coroutines: resume and wrap that pass Ferry's yields through to the engine.
 *
 * A Ferry yield is told apart from a user yield by engine_script.ferry_yield,
 * which ferry.call and ferry.all set just before they yield and the engine
 * clears when the yield reaches it. A resume that sees its coroutine stop
 * with the flag set yields its own thread with no values and the
 * continuation resume_k; resume_k resumes the same coroutine again (with no
 * values: the answer is read by the continuation of the ferry.call below).
 *
 * While a resume runs its coroutine, an engine_script_link on the C stack
 * records parent and child, so that ferry.call can check before it sends
 * anything that every thread on the way to the engine can yield: a
 * coroutine resumed from a table.sort comparator is itself yieldable, but the
 * comparator's thread is not, and the call would be stranded.
 */
#include "coroutines.h"

#include "script.h"

#include <assert.h>
#include <lauxlib.h>
#include <lualib.h>

enum { KIND_RESUME, KIND_WRAP };

#define MAX_NEST 200 /* resumes and resets nested on the C stack (LUAI_MAXCCALLS) */

static const char origin_key = 'o'; /* registry: Lua's own coroutine.close */

/* Runs co with narg values already moved onto it, with the link recorded. */
static int step(lua_State *L, lua_State *co, int narg, int *nres)
{
    engine_script *s = engine_script_of(L);
    /* A script past a limit stops here rather than in the coroutine. */
    engine_script_rethrow_limit(L);
    engine_script_link link = {.parent = L, .child = co, .up = s->links};
    s->links = &link;
    s->running = co;
    s->c_depth++;
    int status = lua_resume(co, L, narg, nres);
    s->c_depth--;
    s->running = L;
    s->links = link.up;
    return status;
}

static int resume_k(lua_State *L, int status, lua_KContext ctx);

/* What a resume returns when it failed, with the error value on top of L. */
static int fail(lua_State *L, lua_State *co, int kind)
{
    if (kind == KIND_RESUME) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    /* wrap, as Lua's: close a coroutine that died (its pending to-be-closed
     * variables), then raise its error, with the caller's position for a
     * string. */
    int st = lua_status(co);
    if (st != LUA_OK && st != LUA_YIELD) {
        engine_script *s = engine_script_of(L);
        if (s->c_depth >= MAX_NEST) {
            /* Too deep to run its __close handlers: they stay pending. */
            lua_pop(L, 1);
            lua_pushliteral(L, "C stack overflow");
        } else {
            s->c_depth++;
#if LUA_VERSION_RELEASE_NUM >= 50406
            st = lua_closethread(co, L);
#else
            st = lua_resetthread(co);
#endif
            s->c_depth--;
            lua_pop(L, 1); /* the error, also left on co by the reset */
            lua_xmove(co, L, 1);
            engine_script_rethrow_limit(L);
        }
    }
    if (st != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
    }
    return lua_error(L);
}

/* What a resume returns once its coroutine stopped with status. */
static int finish(lua_State *L, lua_State *co, int status, int nres, int kind)
{
    engine_script *s = engine_script_of(L);
    if (status == LUA_YIELD && s->ferry_yield) {
        /* Checked before the call was sent (engine_coroutines_cannot_yield). */
        assert(lua_isyieldable(L) && nres == 0);
        return lua_yieldk(L, 0, kind, resume_k);
    }
    engine_script_rethrow_limit(L);
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_xmove(co, L, 1); /* the error */
        return fail(L, co, kind);
    }
    if (!lua_checkstack(L, nres + 1)) {
        lua_pop(co, nres);
        lua_pushliteral(L, "too many results to resume");
        return fail(L, co, kind);
    }
    lua_xmove(co, L, nres);
    if (kind == KIND_WRAP)
        return nres;
    lua_pushboolean(L, 1);
    lua_insert(L, -(nres + 1));
    return nres + 1;
}

/* Resumes co with the narg values on top of L. */
static int resume_with(lua_State *L, lua_State *co, int narg, int kind)
{
    if (engine_script_of(L)->c_depth >= MAX_NEST) {
        lua_pop(L, narg);
        lua_pushliteral(L, "C stack overflow");
        return fail(L, co, kind);
    }
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return fail(L, co, kind);
    }
    lua_xmove(L, co, narg);
    int nres = 0;
    int status = step(L, co, narg, &nres);
    return finish(L, co, status, nres, kind);
}

/* The engine resumed the script with an answer for a ferry.call below co. */
static int resume_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int kind = (int)ctx;
    lua_State *co = lua_tothread(L, kind == KIND_RESUME ? 1 : lua_upvalueindex(1));
    assert(co);
    int nres = 0;
    int st = step(L, co, 0, &nres);
    return finish(L, co, st, nres, kind);
}

/* As Lua's getco: its message says "thread", the type's name. */
static lua_State *check_co(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "thread");
    return co;
}

static int l_resume(lua_State *L)
{
    lua_State *co = check_co(L);
    return resume_with(L, co, lua_gettop(L) - 1, KIND_RESUME);
}

static int wrapped(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    return resume_with(L, co, lua_gettop(L), KIND_WRAP);
}

static int l_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, wrapped, 1);
    return 1;
}

static int l_yield(lua_State *L)
{
    /* Lua's message, which says no position (lua_yield's luaG_runerror is
     * raised in this C frame). */
    if (L == engine_script_of(L)->co) {
        lua_pushliteral(L, "attempt to yield from outside a coroutine");
        return lua_error(L);
    }
    return lua_yield(L, lua_gettop(L));
}

static int l_running(lua_State *L)
{
    int main = lua_pushthread(L);
    lua_pushboolean(L, main || L == engine_script_of(L)->co);
    return 2;
}

static int l_isyieldable(lua_State *L)
{
    lua_State *co = lua_isnone(L, 1) ? L : check_co(L);
    lua_pushboolean(L, co != engine_script_of(L)->co && lua_isyieldable(co));
    return 1;
}

/* What coroutine.status says of co, seen from L (Lua's auxstatus). */
enum { CO_RUNNING, CO_SUSPENDED, CO_NORMAL, CO_DEAD };

static const char *const status_names[] = {
    [CO_RUNNING] = "running",
    [CO_SUSPENDED] = "suspended",
    [CO_NORMAL] = "normal",
    [CO_DEAD] = "dead",
};

static int status_of(lua_State *L, lua_State *co)
{
    if (L == co)
        return CO_RUNNING;
    switch (lua_status(co)) {
    case LUA_YIELD:
        return CO_SUSPENDED;
    case LUA_OK: {
        lua_Debug ar;
        if (lua_getstack(co, 0, &ar)) /* it has frames: it resumed another */
            return CO_NORMAL;
        return lua_gettop(co) == 0 ? CO_DEAD : CO_SUSPENDED; /* or not started yet */
    }
    default: /* it died of an error */
        return CO_DEAD;
    }
}

/* Lua's close, counted in c_depth; a broken limit is not returned as an
 * error. The checks that can fail are made here, in this frame, so that the
 * messages name it and say where it was called, as Lua's do. */
static int l_close(lua_State *L)
{
    int status = status_of(L, check_co(L));
    if (status == CO_RUNNING || status == CO_NORMAL)
        return luaL_error(L, "cannot close a %s coroutine", status_names[status]);
    engine_script *s = engine_script_of(L);
    if (s->c_depth >= MAX_NEST)
        return luaL_error(L, "C stack overflow");
    int n = lua_gettop(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &origin_key);
    lua_insert(L, 1);
    s->c_depth++;
    int called = lua_pcall(L, n, LUA_MULTRET, 0);
    s->c_depth--;
    if (called != LUA_OK)
        return lua_error(L); /* Lua's own error (or memory), unchanged */
    if (!lua_toboolean(L, 1))
        engine_script_rethrow_limit(L);
    return lua_gettop(L);
}

const char *engine_coroutines_cannot_yield(lua_State *L)
{
    engine_script *s = engine_script_of(L);
    if (L != s->running)
        return "it runs in a __close handler of a coroutine being closed";
    if (!lua_isyieldable(L))
        return "a C function is in the way (an xpcall message handler, a table.sort "
               "comparator, a string.gsub callback, a load reader or a metamethod Lua cannot "
               "suspend)";
    for (const engine_script_link *k = s->links; k; k = k->up)
        if (!lua_isyieldable(k->parent))
            return "the coroutine it runs in was resumed where Lua cannot suspend (from a "
                   "table.sort comparator, a string.gsub callback or a metamethod Lua cannot "
                   "suspend)";
    return NULL;
}

void engine_coroutines_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"resume", l_resume},
        {"wrap", l_wrap},
        {"yield", l_yield},
        {"running", l_running},
        {"isyieldable", l_isyieldable},
        {"close", l_close},
    };
    lua_getglobal(L, LUA_COLIBNAME);
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_getfield(L, -1, "close");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &origin_key);
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++) {
        lua_pushcfunction(L, funcs[i].func);
        lua_setfield(L, -2, funcs[i].name);
    }
    lua_pop(L, 1);
}

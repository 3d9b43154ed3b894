/*
 * script: one script's lua_State, its coroutine, limits and result.
 *
 * Every Lua call that may raise (state setup, describing an error value) runs
 * under lua_pcall on the script's main thread; the chunk itself runs in a
 * coroutine under lua_resume, which is protected too, so a script can never
 * make Lua panic.
 *
 * Limits. The first one broken is recorded (tripped) and decides the result;
 * from then on the script cannot go on: the hook raises the limit's error on
 * every instruction, and the catch points of the script's library (pcall,
 * xpcall, coroutine.resume/wrap/close) raise it again instead of catching it.
 *   memory        a capping lua_Alloc counts the state's bytes. A request
 *                 past the cap is refused. Lua then collects garbage and
 *                 asks again for the same block: refused again, the limit is
 *                 broken. A refusal Lua does not retry (lauxlib's string
 *                 buffers raise a plain "not enough memory" at once) breaks it
 *                 as soon as the script's code or a catch point runs again.
 *                 Past that point ENGINE_SCRIPT_MEM_RESERVE more is allowed
 *                 so the error can be built and the stack unwound.
 *   instructions  the count hook adds ENGINE_SCRIPT_HOOK_COUNT per run;
 *                 metered C functions (pattern matching, table shifts) add
 *                 their steps through engine_script_charge. Without a limit
 *                 there is no count hook (engine_watchdog_ticks): the
 *                 watchdog's timer sets a one-shot hook every
 *                 ENGINE_SCRIPT_TICK_MS instead (engine_script_poke).
 *   deadline      the same hooks and engine_script_charge look at the clock;
 *                 the watchdog (watchdog.c) interrupts a run stuck in C; while
 *                 the script waits on a call, the host's deadline timer ends it
 *                 with engine_script_fail.
 *   output        print stops at limits.max_output (ferry_lib).
 */
#include "script.h"

#include "chunk_cache.h"
#include "coroutines.h"
#include "ferry_clock.h"
#include "ferry_lib.h"
#include "ferry_log.h"
#include "ferry_value.h"
#include "ferry_utf8.h"
#include "lua_value.h"
#include "sandbox.h"
#include "state_pool.h"
#include "watchdog.h"

#include <assert.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char co_key = 'c'; /* registry key (light userdata) anchoring the coroutine */

engine_script_limits engine_script_limits_clamp(const engine_script_limits *engine,
                                                const engine_script_limits *asked)
{
    engine_script_limits l = *engine;
    if (asked->timeout_ms > 0 && asked->timeout_ms < l.timeout_ms)
        l.timeout_ms = asked->timeout_ms;
    if (asked->max_output > 0 && asked->max_output < l.max_output)
        l.max_output = asked->max_output;
    if (asked->max_memory > 0 && asked->max_memory < l.max_memory)
        l.max_memory = asked->max_memory;
    if (asked->max_instructions > 0 &&
        (l.max_instructions == 0 || asked->max_instructions < l.max_instructions))
        l.max_instructions = asked->max_instructions;
    return l;
}

size_t engine_script_room(const engine_script *s)
{
    size_t held = s->mem_used + s->inflight_bytes;
    return held < s->limits.max_memory ? s->limits.max_memory - held : 0;
}

void engine_script_trip(engine_script *s, engine_limit limit)
{
    if (!s->tripped)
        s->tripped = limit;
}

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    engine_script *s = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        s->mem_used -= old;
        return NULL;
    }
    size_t cap = s->limits.max_memory;
    if (s->tripped)
        cap += ENGINE_SCRIPT_MEM_RESERVE;
    /* The calls in flight hold part of the limit (never more than the cap). */
    size_t used = s->mem_used + s->inflight_bytes;
    if (nsize > old && (used > cap || nsize - old > cap - used)) {
        /* Lua answers a refusal with an emergency collection and asks again
         * for the same block: refused again, the script really wants more. */
        if (s->mem_refused && s->refused_ptr == ptr && s->refused_size == nsize)
            engine_script_trip(s, ENGINE_LIMIT_MEMORY);
        s->mem_refused = 1;
        s->refused_ptr = ptr;
        s->refused_size = nsize;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p) {
        s->mem_refused = 0; /* this failure is the system's, not the cap's */
        return NULL;
    }
    if (s->mem_refused && ptr == s->refused_ptr && nsize == s->refused_size)
        s->mem_refused = 0; /* Lua's retry after its collection went through */
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

/* The error code and message of the limit s broke. */
static const char *limit_text(const engine_script *s, char *msg, size_t len)
{
    switch (s->tripped) {
    case ENGINE_LIMIT_DEADLINE:
        snprintf(msg, len, "script deadline of %lld ms passed", (long long)s->limits.timeout_ms);
        return ferry_err_code(FERRY_ETIMEOUT);
    case ENGINE_LIMIT_INSTRUCTIONS:
        snprintf(msg, len, "instruction limit of %llu exceeded",
                 (unsigned long long)s->limits.max_instructions);
        break;
    case ENGINE_LIMIT_MEMORY:
        snprintf(msg, len, "memory limit of %zu bytes exceeded%s", s->limits.max_memory,
                 s->mem_by_calls ? " (the arguments of its calls in flight count against it)" : "");
        break;
    case ENGINE_LIMIT_OUTPUT:
        snprintf(msg, len, "output limit of %zu bytes exceeded", s->limits.max_output);
        break;
    case ENGINE_LIMIT_NONE:
        assert(0);
        snprintf(msg, len, "no limit");
        break;
    }
    return ferry_err_code(FERRY_ELIMIT);
}

static void limit_hook(lua_State *L, lua_Debug *ar);

int engine_script_raise_limit(lua_State *L)
{
    engine_script *s = engine_script_of(L);
    assert(s->tripped);
    /* From now on this thread raises on every instruction: whatever catches
     * the error, the next instruction raises it again. (A message handler
     * runs with hooks off when the error comes from the hook; ferry_lib's
     * xpcall skips the script's handler once a limit is broken.) */
    lua_sethook(L, limit_hook, LUA_MASKCOUNT, 1);
    char msg[128];
    const char *code = limit_text(s, msg, sizeof msg);
    return engine_lib_error(L, code, "%s", msg);
}

/*
 * Records the limits broken by events that cannot raise themselves: the
 * watchdog's tick, and a refusal at the cap that was never granted since.
 * Lua retries its own refused requests (after a collection) at once, so one
 * still refused when Lua code runs again was answered with an error:
 * lauxlib's string buffers raise a plain "not enough memory" without a
 * retry, which the script may have caught (pcall, or load's reader).
 */
static void note_limits(engine_script *s)
{
    if (s->mem_refused)
        engine_script_trip(s, ENGINE_LIMIT_MEMORY);
    if (s->interrupted)
        engine_script_trip(s, ENGINE_LIMIT_DEADLINE);
}

/* Raises when a limit is broken, or breaks one now if its time has come. */
static void check_limits(lua_State *L, engine_script *s)
{
    note_limits(s);
    if (!s->tripped) {
        int64_t now = ferry_now_ms();
        if (s->limits.max_instructions && s->instructions > s->limits.max_instructions) {
            engine_script_trip(s, ENGINE_LIMIT_INSTRUCTIONS);
        } else if (now >= s->deadline_ms) {
            engine_script_trip(s, ENGINE_LIMIT_DEADLINE);
        } else {
            if (s->host->tick && now >= s->tick_ms) {
                s->tick_ms = now + ENGINE_SCRIPT_TICK_MS;
                s->host->tick(s->host->ctx);
            }
            return;
        }
    }
    engine_script_raise_limit(L);
}

static void limit_hook(lua_State *L, lua_Debug *ar)
{
    engine_script *s = engine_script_of(L);
    /* Only the regular count hook stands for ENGINE_SCRIPT_HOOK_COUNT
     * instructions; the one-instruction hooks come after a limit or the
     * watchdog, when counting no longer matters. */
    if (ar->event == LUA_HOOKCOUNT && !s->tripped && !s->interrupted)
        s->instructions += ENGINE_SCRIPT_HOOK_COUNT;
    check_limits(L, s);
}

/* The one-shot hook of engine_script_poke. */
static void poke_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    engine_script *s = engine_script_of(L);
    lua_sethook(L, NULL, 0, 0); /* until the next tick; a limit sets its own */
    s->tick_ms = 0;             /* the timer says the host's tick is due */
    check_limits(L, s);
}

void engine_script_charge(lua_State *L, uint64_t steps)
{
    engine_script *s = engine_script_of(L);
    s->instructions += steps;
    check_limits(L, s);
}

void engine_script_rethrow_limit(lua_State *L)
{
    engine_script *s = engine_script_of(L);
    note_limits(s);
    if (s->tripped)
        engine_script_raise_limit(L);
}

void engine_script_interrupt(engine_script *s)
{
    s->interrupted = 1;
    lua_State *L = s->running;
    /* lua_sethook only stores a few fields: safe from a signal handler (lua.c
     * does the same on SIGINT). The call and return events also catch a C
     * function that returns into, or calls, another C function. */
    if (L)
        lua_sethook(L, limit_hook, LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET, 1);
}

void engine_script_poke(engine_script *s)
{
    lua_State *L = s->running;
    if (L) /* as engine_script_interrupt: only a few stores */
        lua_sethook(L, poke_hook, LUA_MASKCOUNT, 1);
}

/* The per-script meter of the sandbox's C functions. */
static void meter_charge(lua_State *L, uint64_t steps)
{
    engine_script_charge(L, steps);
}

/* os.clock: the time the engine spent running this script's code, in runs
 * so far and in this one. The engine runs one script at a time on one
 * thread, so this is the script's CPU time, give or take the moments the
 * kernel ran something else (the thread's own CPU clock costs a system call
 * per read, too much for every run). */
static double meter_clock(lua_State *L)
{
    engine_script *s = engine_script_of(L);
    return (double)(s->run_us + (ferry_now_us() - s->run_start_us)) / 1e6;
}

static size_t meter_max_source(lua_State *L)
{
    return engine_script_of(L)->limits.max_source;
}

static const engine_sandbox_meter meter = {
    .charge = meter_charge, .clock = meter_clock, .max_source = meter_max_source};

/* A stretch of Lua code running on thread L, under the watchdog. */
static void run_begin(engine_script *s, lua_State *L)
{
    s->running = L;
    s->run_start_us = ferry_now_us();
    s->tick_ms = s->run_start_us / 1000 + ENGINE_SCRIPT_TICK_MS;
    engine_watchdog_enter(s);
}

static void run_end(engine_script *s)
{
    engine_watchdog_leave(s);
    s->run_us += ferry_now_us() - s->run_start_us;
    s->running = NULL;
}

/*
 * A copy of text cut to at most max bytes, made valid UTF-8; NULL when
 * malloc fails. When cut, at a character boundary, and with mark set, it
 * ends with a marker saying how long the text was (within the max).
 */
static char *copy_bounded(const char *text, size_t max, int mark)
{
    size_t len = strlen(text);
    char tail[64] = "";
    size_t keep = len;
    if (len > max) {
        if (mark)
            snprintf(tail, sizeof tail, "... [cut: %zu bytes in all]", len);
        keep = max - strlen(tail);
        while (keep > 0 && ((unsigned char)text[keep] & 0xc0) == 0x80)
            keep--; /* not inside a character */
    }
    size_t tail_len = strlen(tail);
    char *out = malloc(keep + tail_len + 1);
    if (!out)
        return NULL;
    memcpy(out, text, keep);
    memcpy(out + keep, tail, tail_len + 1);
    ferry_utf8_scrub(out, keep);
    return out;
}

/* Records the result as the error code/message (copied, bounded by
 * ENGINE_SCRIPT_CODE_MAX and ENGINE_SCRIPT_ERROR_MAX, made valid UTF-8:
 * they travel in proto3 string fields of a Result that must stay under the
 * message limit). */
static void set_error(engine_script *s, const char *code, const char *message)
{
    free(s->err_code);
    free(s->err_message);
    s->err_code = copy_bounded(code, ENGINE_SCRIPT_CODE_MAX, 0);
    s->err_message = copy_bounded(message ? message : "", ENGINE_SCRIPT_ERROR_MAX, 1);
    s->ok = 0;
    s->done = 1;
}

static void set_ferry_error(engine_script *s, ferry_err err, const char *message)
{
    set_error(s, ferry_err_code(err), message);
}

/* Ends s with the error of the limit it broke, if it broke one. */
static int set_limit_error(engine_script *s)
{
    if (!s->tripped)
        return 0;
    char msg[128];
    const char *code = limit_text(s, msg, sizeof msg);
    set_error(s, code, msg);
    return 1;
}

static void set_memory_error(engine_script *s)
{
    note_limits(s);
    if (!set_limit_error(s))
        set_ferry_error(s, FERRY_ENOMEM, "the engine ran out of memory");
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
    /* Without an instruction limit the watchdog's tick runs the checks, and
     * the script runs at the speed of plain Lua. */
    if (!engine_watchdog_ticks(s))
        lua_sethook(L, limit_hook, LUA_MASKCOUNT, ENGINE_SCRIPT_HOOK_COUNT);
    if (!s->warm) { /* a warm state from the pool has all this already */
        /* Nothing made while opening is garbage but for what the collection
         * below frees: collecting before would only cost time. */
        lua_gc(L, LUA_GCSTOP);
        engine_sandbox_open(L, &meter);
        engine_coroutines_open(L);
        engine_lib_open(L);
        engine_pool_snapshot(L);
        lua_gc(L, LUA_GCRESTART);
        /* What opening left behind (the os table before its trim, the
         * loaded table's growth): about 1 KB of every blocked script. */
        lua_gc(L, LUA_GCCOLLECT);
    }
    /* A warm state comes from the reset's full collection, a fresh one from
     * the one above: either way the collector waits for the heap to grow by
     * its pause before its next step. (LUA_GCRESTART would set its debt to
     * zero: a step, most of a whole cycle, at the script's first allocation.) */

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

    c->load_status = engine_chunk_load(L, c->source, c->len, c->chunkname, &meter);
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
    if (engine_lib_error_code(L, 1, &code, &message)) {
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
    note_limits(s);
    if (set_limit_error(s))
        return;
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
    /* A __tostring of the script's may run here: still under its limits. */
    s->running = L;
    int st = lua_pcall(L, 2, 0, 0);
    s->running = s->co;
    if (st != LUA_OK) {
        lua_pop(L, 1);
        note_limits(s);
        if (!set_limit_error(s))
            set_ferry_error(s, FERRY_ESCRIPT, "(the error value could not be turned into text)");
    }
}

static void finish_ok(engine_script *s, int nres)
{
    note_limits(s);
    if (set_limit_error(s)) /* returned past a limit, e.g. straight out of a C function */
        return;
    char why[512];
    int first = lua_gettop(s->co) - nres + 1;
    ferry_err err = engine_value_pack(s->co, first, nres, "return", ENGINE_VALUE_BUDGET, NULL,
                                      &s->values, &s->n_values, why, sizeof why);
    if (err) {
        set_ferry_error(s, err, why);
        return;
    }
    s->ok = 1;
    s->done = 1;
}

static engine_script_state after_resume(engine_script *s, int status, int nres)
{
    assert(!s->links);
    switch (status) {
    case LUA_YIELD:
        if (s->ferry_yield) {
            s->ferry_yield = 0;
            assert(s->pending > 0);
            return ENGINE_SCRIPT_WAITING;
        }
        /* Cannot happen (coroutine.yield refuses to yield the chunk), but
         * nobody outside would answer such a yield. */
        set_ferry_error(s, FERRY_ESCRIPT, "attempt to yield from outside a coroutine");
        break;
    case LUA_OK:
        finish_ok(s, nres);
        s->clean = 1;
        break;
    default:
        finish_error(s, status);
        s->clean = status == LUA_ERRRUN;
        break;
    }
    return ENGINE_SCRIPT_DONE;
}

engine_script_state engine_script_start(engine_script *s, const void *source, size_t len,
                                        const char *name, Ferry__Value *const *args, size_t nargs)
{
    assert(!s->L && !s->done);
    s->deadline_ms = ferry_now_ms() + s->limits.timeout_ms;
    if (s->limits.max_source && len > s->limits.max_source) {
        char msg[128];
        snprintf(msg, sizeof msg, "source of %zu bytes is over the limit of %zu bytes (--max-source)",
                 len, s->limits.max_source);
        set_ferry_error(s, FERRY_ELIMIT, msg);
        return ENGINE_SCRIPT_DONE;
    }
    size_t warm_bytes;
    s->L = engine_pool_take(&warm_bytes);
    if (s->L && warm_bytes < s->limits.max_memory) {
        s->warm = 1;
        s->mem_used = warm_bytes;
        lua_setallocf(s->L, capped_alloc, s);
    } else {
        if (s->L)
            lua_close(s->L); /* larger than this script may have */
        s->L = lua_newstate(capped_alloc, s);
    }
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
    engine_script_state state = ENGINE_SCRIPT_DONE;
    run_begin(s, L);
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
    } else if (c.err) {
        set_ferry_error(s, c.err, c.message);
    } else if (c.load_status == LUA_ERRMEM) {
        set_memory_error(s);
    } else if (c.load_status != LUA_OK && (note_limits(s), set_limit_error(s))) {
        /* compiling took past the deadline or the instruction limit */
    } else if (c.load_status != LUA_OK) {
        set_ferry_error(s, FERRY_ESYNTAX, c.message);
        s->clean = 1;
    } else {
        int nres = 0;
        s->running = s->co;
        s->run_start_us = ferry_now_us(); /* os.clock counts from here */
        status = lua_resume(s->co, L, (int)nargs, &nres);
        state = after_resume(s, status, nres);
    }
    run_end(s);
    return state;
}

engine_script_state engine_script_resume(engine_script *s, const engine_script_answer *a)
{
    assert(!s->done && s->pending > 0 && a);
    s->pending--;
    s->answer = a;
    int nres = 0;
    run_begin(s, s->co);
    int status = lua_resume(s->co, s->L, 0, &nres);
    s->answer = NULL;
    engine_script_state state = after_resume(s, status, nres);
    run_end(s);
    return state;
}

void engine_script_fail(engine_script *s, ferry_err err, const char *message)
{
    assert(!s->done);
    s->pending = 0;
    s->ferry_yield = 0;
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
    if (s->L) {
        /* A state whose script ran to its end within its limits is reset for
         * the next script; any other is closed. Either way bounded, even if
         * a finalizer ever ran script code (hooks are off there). */
        note_limits(s);
        int reuse = s->clean && !s->tripped && !s->interrupted && s->c_depth == 0 &&
                    s->mem_used <= ENGINE_SCRIPT_REUSE_BYTES;
        s->deadline_ms = ferry_now_ms() + ENGINE_SCRIPT_CLOSE_MS;
        s->running = NULL; /* the first tick has no hook to set in a closing state */
        engine_watchdog_enter(s);
        if (reuse) {
            lua_pushnil(s->L);
            lua_rawsetp(s->L, LUA_REGISTRYINDEX, &co_key);
            engine_pool_put(s->L);
        } else {
            lua_close(s->L);
        }
        engine_watchdog_leave(s);
    }
    ferry_values_free(s->values, s->n_values);
    free(s->err_code);
    free(s->err_message);
    ferry_buf_fini(&s->output);
    free(s);
    *sp = NULL;
}

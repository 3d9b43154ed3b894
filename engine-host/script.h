/*
 * script: one submitted script, in its own lua_State, run as a coroutine.
 *
 * The script module knows Lua and nothing of sockets: it creates the state
 * (capped allocator, sandbox, ferry library), runs the chunk until it either
 * finishes or waits for async calls, resumes it with each answer, and builds
 * the result. Sending a call is delegated to a host (the engine, or a test),
 * which promises exactly one answer per call it accepted.
 *
 * Life of a script:
 *   engine_script_new -> engine_script_start -> WAITING
 *       -> engine_script_resume (once per answered call) -> ... -> DONE
 *   or, while WAITING, engine_script_fail (deadline, shutdown) -> DONE
 *   then read the result (engine_script_result) and engine_script_destroy.
 *
 * Limits (engine_script_limits) end the script with an error naming the
 * limit. The memory limit holds the Lua state and the packed arguments of
 * the script's calls in flight together (inflight_bytes, which the host
 * keeps from the send of a call until it is answered or forgotten).
 * Once one is broken it stays broken: pcall, xpcall, coroutine.resume
 * and friends hand the error back up instead of catching it, and the hook
 * raises it again on every instruction, so the script cannot go on.
 */
#ifndef ENGINE_SCRIPT_H
#define ENGINE_SCRIPT_H

#include "ferry.pb-c.h"
#include "ferry_buf.h"
#include "ferry_err.h"

#include <lua.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Instructions between two runs of the limit hook (instruction count, clock),
 * installed only when the script has an instruction limit: a script may
 * overshoot its limit by up to this many instructions. The count hardly
 * matters for speed: once any count hook is set, Lua checks it at every
 * instruction (about 2x on CPU-bound code), however rarely the hook runs.
 */
#define ENGINE_SCRIPT_HOOK_COUNT 10000

/* Least time between two calls of engine_script_host.tick during one run. */
#define ENGINE_SCRIPT_TICK_MS 100

/* Bytes a state may take beyond max_memory once it broke it, so that the
 * error can still be built and the stack unwound. */
#define ENGINE_SCRIPT_MEM_RESERVE (64 * 1024)

/* Longest error message and error code of a script's Result, in bytes. A
 * longer message is cut, ending with "... [cut: <n> bytes in all]" (within
 * the bound); a longer code is cut. */
#define ENGINE_SCRIPT_ERROR_MAX (64 * 1024)
#define ENGINE_SCRIPT_CODE_MAX 64

typedef struct engine_script engine_script;

typedef struct {
    /*
     * Sends one ferry.call of s: function with args (takes ownership of args
     * on every path). FERRY_OK means the call is on its way and the host will
     * answer it exactly once through engine_script_resume, never from inside
     * this function, with tag copied into the answer (ferry.all numbers its
     * calls with it). FERRY_ELIMIT means the call does not fit the script's
     * memory room (engine_script_room): the script breaks its memory limit.
     * Anything else is raised in the script at once as an error object with
     * that code and the reason written into why. The host adds the bytes it
     * holds for an accepted call to inflight_bytes and takes them off when the
     * call is answered or forgotten.
     */
    ferry_err (*call)(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                      size_t nargs, uint32_t tag, char *why, size_t whylen);
    /*
     * Optional (NULL: none). Called from inside a script's run, at most every
     * ENGINE_SCRIPT_TICK_MS, while the script keeps the thread (a long stretch
     * of Lua code), so that the host can do what cannot wait for the run to
     * end, such as sending a heartbeat. It must neither touch a script nor run
     * one, nor raise.
     */
    void (*tick)(void *ctx);
    /*
     * Optional (NULL: no bound). Bytes of calls the host may still take in
     * flight, all its scripts together: the packed arguments of new calls
     * must fit, or the call is refused overloaded before it is packed whole.
     */
    size_t (*room)(void *ctx);
    void *ctx;
} engine_script_host;

typedef struct {
    int64_t timeout_ms;        /* wall-clock deadline, from engine_script_start */
    size_t max_output;         /* bytes print may capture */
    size_t max_memory;         /* bytes the lua_State may hold */
    uint64_t max_instructions; /* VM instructions plus metered C steps; 0: no limit */
    size_t max_source;         /* bytes of a chunk: the script's, and each load; 0: any */
} engine_script_limits;

/*
 * The limits a script runs with: each of asked's fields that is set (> 0)
 * and lower than the engine's wins, so a submission may ask for less, never
 * more. A zero max_instructions in engine means no ceiling.
 */
engine_script_limits engine_script_limits_clamp(const engine_script_limits *engine,
                                                const engine_script_limits *asked);

typedef enum {
    ENGINE_SCRIPT_WAITING, /* yielded in ferry.call; pending > 0 */
    ENGINE_SCRIPT_DONE,    /* finished; the result is ready */
} engine_script_state;

/* The limit a script broke first. */
typedef enum {
    ENGINE_LIMIT_NONE,
    ENGINE_LIMIT_DEADLINE,     /* "timeout" */
    ENGINE_LIMIT_INSTRUCTIONS, /* "limit" */
    ENGINE_LIMIT_MEMORY,       /* "limit" */
    ENGINE_LIMIT_OUTPUT,       /* "limit" */
} engine_limit;

/* One answer to a call: a peer's Reply, or a local error when reply is NULL. */
typedef struct {
    const Ferry__Reply *reply; /* borrowed for the duration of engine_script_resume */
    const char *code;          /* local error code ("timeout") when reply is NULL */
    const char *message;
    uint32_t tag;              /* the tag the call was sent with */
} engine_script_answer;

/*
 * A user coroutine resumed by the script's coroutine library (coroutines.c),
 * on the C stack of that resume: the chain of them, innermost first, says
 * through which threads a ferry.call must yield to reach the engine.
 */
typedef struct engine_script_link {
    lua_State *parent; /* the thread that called resume */
    lua_State *child;  /* the coroutine it resumed */
    struct engine_script_link *up;
} engine_script_link;

struct engine_script {
    uint64_t script_id;
    const engine_script_host *host;
    engine_script_limits limits;
    void *user; /* the host's own data about this script */

    lua_State *L;  /* the script's own state; NULL when it could not be made */
    lua_State *co; /* the chunk's coroutine, anchored in L's registry */
    int64_t deadline_ms;
    int64_t tick_ms; /* when the host's tick is due in this run */
    int64_t run_us;       /* time spent running the script's code, before this run (os.clock) */
    int64_t run_start_us; /* when this run began */
    size_t mem_used;
    size_t inflight_bytes;   /* wire bytes of its calls in flight, kept by the host; they
                              * count against limits.max_memory with mem_used */
    int mem_by_calls;        /* the memory limit broke on the arguments of a call */
    int mem_refused;         /* a request was refused at the cap and not granted since */
    const void *refused_ptr; /* that request, to recognise Lua's retry after a GC */
    size_t refused_size;
    uint64_t instructions;              /* VM instructions and metered C steps so far */
    engine_limit tripped;               /* the first limit broken; ends the script */
    volatile sig_atomic_t interrupted;  /* the watchdog saw the deadline pass in a run */
    lua_State *volatile running;        /* the thread running now, NULL between runs */
    engine_script_link *links;          /* innermost user coroutine being resumed */
    int c_depth;                        /* resumes and closes nested on the C stack */
    int ferry_yield;                    /* a ferry.call yield is on its way to the engine */
    int pending;                        /* calls sent and not answered yet */
    const engine_script_answer *answer; /* only while engine_script_resume runs */
    ferry_buf output;                   /* captured print output */

    int warm;  /* the state came from the pool (state_pool.h) */
    int clean; /* the chunk ran to its end (returned or raised): the state may be reused */

    /* The result, valid once DONE. */
    int done;
    int ok;
    Ferry__Value **values; /* owned */
    size_t n_values;
    char *err_code; /* owned; NULL when ok */
    char *err_message;
};

/* The script a Lua state (or any of its threads) belongs to. */
static inline engine_script *engine_script_of(lua_State *L)
{
    return *(engine_script **)lua_getextraspace(L);
}

/* A new script, not started; NULL when malloc fails. */
engine_script *engine_script_new(const engine_script_host *host, const engine_script_limits *limits,
                                 uint64_t script_id);

/*
 * Makes the state, compiles source (text only; chunk name "=" name, or
 * "=script" when name is NULL or empty), sets ferry.args and runs the chunk
 * with args as "..." until it waits or ends. args are borrowed. A compile
 * error ends the script with syntax_error.
 */
engine_script_state engine_script_start(engine_script *s, const void *source, size_t len,
                                        const char *name, Ferry__Value *const *args, size_t nargs);

/* Answers one of the script's pending calls and runs it until it waits or ends. */
engine_script_state engine_script_resume(engine_script *s, const engine_script_answer *a);

/*
 * Ends a script that is not running (deadline, shutdown) with the error err
 * and message; its pending calls are forgotten (the host drops their answers).
 */
void engine_script_fail(engine_script *s, ferry_err err, const char *message);

/*
 * Points out's fields at the script's result (borrowed until destroy) and, on
 * failure, out->error at error. out and error must be initialised.
 */
void engine_script_result(const engine_script *s, Ferry__Result *out, Ferry__Error *error);

/* Bound on closing a state (engine_script_destroy), under the watchdog. */
#define ENGINE_SCRIPT_CLOSE_MS 100

/* A state that held more than this at the end is closed, not reset. */
#define ENGINE_SCRIPT_REUSE_BYTES (1024 * 1024)

/*
 * Frees everything (NULL-safe) and nulls *sp. A state whose script ran to
 * its end within its limits goes back to the pool (state_pool.h), reset;
 * any other is closed. Both run under the watchdog: no script code should run there (the sandbox leaves no
 * way to a finalizer), and if any ever did past ENGINE_SCRIPT_CLOSE_MS and
 * the grace, the watchdog would end the engine rather than let it hang.
 */
void engine_script_destroy(engine_script **sp);

/*
 * For the script's own libraries (ferry_lib, coroutines, sandbox), with L
 * any thread of a script's state:
 */

/*
 * Bytes the script may still take under limits.max_memory: what its Lua
 * state and its calls in flight do not hold. The arguments of a new call
 * must fit in it.
 */
size_t engine_script_room(const engine_script *s);

/* Records that the script broke limit (the first one broken is kept). */
void engine_script_trip(engine_script *s, engine_limit limit);

/*
 * Adds steps of C work (pattern matching, table shifts) to the instruction
 * count, then raises the limit error if any limit is broken: instructions,
 * the deadline, or one tripped before. Returns normally otherwise.
 */
void engine_script_charge(lua_State *L, uint64_t steps);

/*
 * Raises the error of the limit the script broke (it must have broken one)
 * and makes L raise it again on every instruction. Never returns.
 */
int engine_script_raise_limit(lua_State *L);

/*
 * Called at a point that caught an error (pcall, coroutine.resume): when the
 * script broke a limit, raises the limit's error in L instead of letting the
 * script catch it. Returns normally otherwise.
 */
void engine_script_rethrow_limit(lua_State *L);

/*
 * The watchdog's first tick, from a signal handler: the script ran past its
 * deadline without giving the thread back. Makes the running thread stop at
 * its next instruction or call. Async-signal-safe.
 */
void engine_script_interrupt(engine_script *s);

/*
 * The watchdog's periodic tick, from a signal handler, for a script that runs
 * without a count hook (engine_watchdog_ticks): the running thread checks the
 * limits and calls the host's tick at its next instruction, once.
 * Async-signal-safe.
 */
void engine_script_poke(engine_script *s);

#endif

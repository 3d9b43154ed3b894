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
 */
#ifndef ENGINE_SCRIPT_H
#define ENGINE_SCRIPT_H

#include "ferry.pb-c.h"
#include "ferry_buf.h"
#include "ferry_err.h"

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* Instructions between two looks at the clock by the deadline hook. */
#define ENGINE_SCRIPT_HOOK_COUNT 1000

typedef struct engine_script engine_script;

typedef struct {
    /*
     * Sends one ferry.call of s: function with args (takes ownership of args
     * on every path). FERRY_OK means the call is on its way and the host will
     * answer it exactly once through engine_script_resume, never from inside
     * this function, with tag copied into the answer (ferry.all numbers its
     * calls with it). Anything else is raised in the script at once as an error
     * object with that code and the reason written into why.
     */
    ferry_err (*call)(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                      size_t nargs, uint32_t tag, char *why, size_t whylen);
    void *ctx;
} engine_script_host;

typedef struct {
    int64_t timeout_ms; /* deadline, from engine_script_start */
    size_t max_output;  /* bytes print may capture */
    size_t max_memory;  /* bytes the lua_State may hold */
} engine_script_limits;

typedef enum {
    ENGINE_SCRIPT_WAITING, /* yielded in ferry.call; pending > 0 */
    ENGINE_SCRIPT_DONE,    /* finished; the result is ready */
} engine_script_state;

/* One answer to a call: a peer's Reply, or a local error when reply is NULL. */
typedef struct {
    const Ferry__Reply *reply; /* borrowed for the duration of engine_script_resume */
    const char *code;          /* local error code ("timeout") when reply is NULL */
    const char *message;
    uint32_t tag;              /* the tag the call was sent with */
} engine_script_answer;

struct engine_script {
    uint64_t script_id;
    const engine_script_host *host;
    engine_script_limits limits;
    void *user; /* the host's own data about this script */

    lua_State *L;  /* the script's own state; NULL when it could not be made */
    lua_State *co; /* the chunk's coroutine, anchored in L's registry */
    int64_t deadline_ms;
    size_t mem_used;
    int mem_refused;                    /* the allocator refused a request at the cap */
    int deadline_hit;                   /* the hook saw the deadline pass */
    int pending;                        /* calls sent and not answered yet */
    const engine_script_answer *answer; /* only while engine_script_resume runs */
    ferry_buf output;                   /* captured print output */

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

/* Closes the state and frees everything (NULL-safe); nulls *sp. */
void engine_script_destroy(engine_script **sp);

#endif

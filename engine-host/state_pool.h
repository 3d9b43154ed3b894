/*
 * state_pool: warm sandboxed lua_States, brought back to their pristine
 * contents between scripts instead of made anew.
 *
 * Making a sandboxed state (lua_newstate, the libraries, the ferry module)
 * and closing it again is most of what a short script costs the engine: a
 * few hundred small allocations each way. A state whose script ended
 * normally is instead reset and kept for the next script:
 *   - the globals table, every library table (string, table, math, utf8,
 *     coroutine, os, ferry) and the string metatable get back exactly the
 *     keys and values they had when the state was made, and no metatable;
 *   - the main thread's stack is emptied, math.random is seeded afresh
 *     from the kernel's entropy (nothing of the last script's seed);
 *   - full collections free everything the script made, so the heap
 *     returns to its baseline (collectgarbage("count") sees it); a state
 *     that stays above it (a library table the script grew keeps its size)
 *     is closed instead.
 * Nothing else a script can reach holds its data: it has no debug library,
 * so the registry, other types' metatables and the upvalues of library
 * functions are out of its reach. A script that broke a limit, ran out of
 * memory, was stopped while waiting or was interrupted is never reset: its
 * state is closed (script.c decides).
 *
 * While idle a state has a plain allocator (no script's cap) and no script
 * in its extra space. The pool is process-wide (one engine per process, as
 * the watchdog) and single-threaded. It holds at most ENGINE_POOL_MAX_IDLE
 * states.
 */
#ifndef ENGINE_STATE_POOL_H
#define ENGINE_STATE_POOL_H

#include <lua.h>
#include <stddef.h>

#define ENGINE_POOL_MAX_IDLE 64

/*
 * A reset state more than this above the smallest reset state is closed.
 * Lua's string table never shrinks below four times the strings in use, so
 * one that a script doubled (more than about 60 new strings) stays 2 KB
 * larger: that is all a reused state may show of its last script's size.
 */
#define ENGINE_POOL_SLACK_BYTES 2560

/*
 * Records the current contents of L's globals, library tables and string
 * metatable as what a reset brings back. Call once, on a fresh state whose
 * libraries are all open. Raises memory errors: call it protected.
 */
void engine_pool_snapshot(lua_State *L);

/*
 * Takes an idle state: its heap size in bytes goes to *bytes; NULL when
 * none is idle. The caller sets its allocator and extra space.
 */
lua_State *engine_pool_take(size_t *bytes);

/*
 * Resets L (snapshot taken, no script running on it, its script done) and
 * keeps it idle, or closes it: when the reset fails, when it is too large or
 * when the pool is full. Takes ownership of L. The allocator L had is not
 * called again.
 */
void engine_pool_put(lua_State *L);

/* Closes every idle state (engine shutdown, tests). */
void engine_pool_clear(void);

/* Idle states now (tests). */
size_t engine_pool_idle(void);

#endif

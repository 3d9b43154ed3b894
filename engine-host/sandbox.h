/*
 * sandbox: the standard library a Ferry script gets.
 *
 * Scripts come from clients over the network, so the state they run in must
 * not reach the engine's files, environment, process or memory layout. Only
 * the base, coroutine, table, string, math, utf8 libraries and a trimmed os
 * (time, clock, date, difftime) are opened; io, debug and package are never
 * loaded. From the base library dofile, loadfile and print are removed
 * (ferry_lib installs a capturing print), load accepts text chunks only and
 * compiles them metered (engine_sandbox_load), os.clock reports the
 * script's own time (the host's clock), and
 * collectgarbage answers "count" alone, setmetatable refuses metatables with
 * __gc (finalizers run with hooks off, beyond any time limit). string.dump is
 * removed.
 *
 * The C functions that can run for long without allocating, out of reach of
 * the count hook, are replaced by metered ones that report their steps to a
 * meter (which may raise to stop the script): string.find, match, gmatch and
 * gsub (pattern.c), table.insert, remove and move (whose loops a __len or a
 * range can make as long as 2^63), and string.rep of empty strings.
 */
#ifndef ENGINE_SANDBOX_H
#define ENGINE_SANDBOX_H

#include <lua.h>
#include <stdint.h>

/* Steps of C work between two calls of the meter. */
#define ENGINE_SANDBOX_METER_STEPS 4096

/* Bytes of source compiled between two calls of the meter. */
#define ENGINE_SANDBOX_LOAD_PIECE (16 * 1024)

/* What the sandbox asks of its host (the script module). */
typedef struct {
    /* Called on the thread doing the work with the steps done since the last
     * call; may raise a Lua error to stop it. */
    void (*charge)(lua_State *L, uint64_t steps);
    /* os.clock: the seconds the script itself has run. NULL: Lua's own. */
    double (*clock)(lua_State *L);
    /* The most bytes a chunk may have (load, and the script's own); 0: any. */
    size_t (*max_source)(lua_State *L);
} engine_sandbox_meter;

/*
 * Compiles the text chunk source (len bytes) as lua_load does with mode
 * "t", pushing the function or the error message, and returns lua_load's
 * status. Compiling is metered: every ENGINE_SANDBOX_LOAD_PIECE bytes one
 * step per byte is charged to meter (NULL: none), which may stop it with
 * its error (a broken limit, the deadline), and a source longer than
 * meter->max_source is refused (LUA_ERRSYNTAX, with a message naming the
 * bound). Lua's parser does the rest of its work between two pieces:
 * at most one function's goto and label resolution, a fraction of a second.
 */
int engine_sandbox_load(lua_State *L, const char *source, size_t len, const char *chunkname,
                        const engine_sandbox_meter *meter);

/*
 * Opens the sandboxed library into L's globals. meter (NULL: none) must
 * outlive L. Raises Lua memory errors: call it inside a protected call.
 * Leaves the stack as it found it.
 */
void engine_sandbox_open(lua_State *L, const engine_sandbox_meter *meter);

#endif

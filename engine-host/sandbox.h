/*
 * sandbox: the standard library a Ferry script gets.
 *
 * Scripts come from clients over the network, so the state they run in must
 * not reach the engine's files, environment, process or memory layout. Only
 * the base, coroutine, table, string, math, utf8 libraries and a trimmed os
 * (time, clock, date, difftime) are opened; io, debug and package are never
 * loaded. From the base library dofile, loadfile and print are removed
 * (ferry_lib installs a capturing print), load accepts text chunks only, and
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

typedef struct {
    /* Called on the thread doing the work with the steps done since the last
     * call; may raise a Lua error to stop it. */
    void (*charge)(lua_State *L, uint64_t steps);
} engine_sandbox_meter;

/*
 * Opens the sandboxed library into L's globals. meter (NULL: none) must
 * outlive L. Raises Lua memory errors: call it inside a protected call.
 * Leaves the stack as it found it.
 */
void engine_sandbox_open(lua_State *L, const engine_sandbox_meter *meter);

#endif

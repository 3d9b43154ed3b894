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
 */
#ifndef ENGINE_SANDBOX_H
#define ENGINE_SANDBOX_H

#include <lua.h>

/*
 * Opens the sandboxed library into L's globals. Raises Lua memory errors:
 * call it inside a protected call. Leaves the stack as it found it.
 */
void engine_sandbox_open(lua_State *L);

#endif

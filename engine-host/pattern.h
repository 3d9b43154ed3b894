/*
 * pattern: Lua 5.4's pattern matching, with a step count.
 *
 * Lua's own matcher backtracks inside one C call, beyond the reach of the
 * count hook: ("a"):rep(40):match(("a*"):rep(40) .. "b") would hold the
 * engine's only thread for ages. This is the same algorithm with the same
 * semantics and messages (string.find, match, gmatch, gsub behave exactly as
 * Lua 5.4's), written to report every step of the match to the sandbox's
 * meter, which stops the script when a limit is broken. Plain searches use
 * memmem, which is linear.
 */
#ifndef ENGINE_PATTERN_H
#define ENGINE_PATTERN_H

#include "sandbox.h"

#include <lua.h>

/*
 * Sets find, match, gmatch and gsub in the table at index strtab (the string
 * library) to the metered versions. meter may be NULL. Raises memory errors.
 */
void engine_pattern_open(lua_State *L, int strtab, const engine_sandbox_meter *meter);

#endif

/*
 * lua_value: Lua values <-> Ferry__Value, losslessly.
 *
 * nil, booleans, integers and floats kept apart (lua_isinteger), binary-safe
 * strings, and tables split into an array part (t[1]..t[#t], raw) and a hash
 * part (every other key, raw). Metatables are not sent. Cycles, functions,
 * userdata, threads and tables nested deeper than ENGINE_VALUE_MAX_DEPTH are
 * refused with a message naming where the bad value sits ("args[2].x: cannot
 * send a function").
 *
 * Lua -> Ferry never raises a Lua error (it only reads the stack and calls
 * lua_checkstack), so callers may use it outside a protected call and free
 * what it built on every path. Ferry -> Lua allocates in the Lua state and so
 * may raise memory errors: call it where Lua errors are caught.
 */
#ifndef ENGINE_LUA_VALUE_H
#define ENGINE_LUA_VALUE_H

#include "ferry.pb-c.h"
#include "ferry_err.h"

#include <lua.h>
#include <stddef.h>

#define ENGINE_VALUE_MAX_DEPTH 64

/*
 * Rough wire size the values of one call or one result may take. Kept under
 * FERRY_DEFAULT_MAX_MSG so that a Command or Result usually fits a frame the
 * broker accepts (the engine checks the exact size before sending); it also
 * stops a table that refers many times to the same subtable (no cycle, but
 * exponential when flattened) from eating memory.
 */
#define ENGINE_VALUE_BUDGET (8u * 1024 * 1024)

/*
 * Converts the value at idx of L into a new tree, stored in *out (the caller
 * owns it: ferry_value_free). path names the value in messages ("args[2]").
 * *budget is the wire size still allowed; it is decreased by what was built.
 * Returns FERRY_OK, FERRY_EBADVALUE with "path: reason" in err, or
 * FERRY_ENOMEM (malloc failed or the Lua stack cannot grow). On failure *out
 * is NULL. Never raises a Lua error.
 */
ferry_err engine_value_from_lua(lua_State *L, int idx, const char *path, size_t *budget,
                                Ferry__Value **out, char *err, size_t errlen);

/*
 * Converts the n values at L[first..first+n-1] into a new array (*out, *nout;
 * the caller owns it: ferry_values_free), naming them what[1], what[2]...
 * budget is the wire size they may take together. room, unless NULL, is
 * the heap the new tree may take (about 80 bytes per value and per hash
 * pair, plus the strings' bytes: many times the wire size for a table of
 * small values); it is decreased by what was built (on failure, by part of
 * it), so that one room can bound several packs. Same errors as
 * engine_value_from_lua, and FERRY_ELIMIT with "what[i]...: more than <n>
 * bytes once packed" in err when the room is too small (the caller says
 * which bound that was). On failure *out is NULL. A NULL what names them
 * by number alone.
 */
ferry_err engine_value_pack(lua_State *L, int first, int n, const char *what, size_t budget,
                            size_t *room, Ferry__Value ***out, size_t *nout, char *err,
                            size_t errlen);

/*
 * Pushes v (NULL is nil) onto L and returns 1. Returns 0 with the stack as it
 * was and a reason in err when v cannot become a Lua value (a nil or NaN table
 * key, nesting deeper than ENGINE_VALUE_MAX_DEPTH). Raises Lua memory errors.
 */
int engine_value_push(lua_State *L, const Ferry__Value *v, char *err, size_t errlen);

#endif

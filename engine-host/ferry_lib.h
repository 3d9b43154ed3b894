/*
 * ferry_lib: the `ferry` Lua module a script sees, and its error objects.
 *
 *   ferry.call(name, ...)  sends an async call and returns what it returned;
 *                          on failure raises an error object
 *   ferry.all({name, ...}, ...)
 *                          sends every call at once, waits for all, returns a
 *                          table whose i-th entry packs call i's return values
 *                          ({v1, v2, n = 2}); when any failed, raises the error
 *                          object of the first failed call (by position, with
 *                          field index) once every call has answered
 *   ferry.args             the arguments the client submitted (a table)
 *   print(...)             captured into the script's output, up to a limit
 *   pcall, xpcall          Lua's, except that the error of a broken limit is
 *                          raised again instead of being caught, and that
 *                          xpcall's handler is skipped for it
 *
 * An error object is a table {code = "timeout", message = "..."} whose
 * metatable (registry name "ferry.error") has __name "ferry.error" and a
 * __tostring giving "code: message", so pcall sees a structured value and an
 * uncaught one still reads well.
 */
#ifndef ENGINE_FERRY_LIB_H
#define ENGINE_FERRY_LIB_H

#include <lua.h>
#include <stddef.h>

#define ENGINE_LIB_ERROR_TYPE "ferry.error"
#define ENGINE_LIB_ALL_MAX 10000    /* calls in one ferry.all */
#define ENGINE_LIB_ALL_MAX_ARGS 250 /* name + arguments in one call table */

/*
 * Installs the ferry table (ferry.args an empty table), the capturing print,
 * pcall, xpcall and the error metatable into L (after the sandbox). L
 * must belong to a script (engine_script_of(L) set). Raises memory errors:
 * call it protected.
 */
void engine_lib_open(lua_State *L);

/* Pushes a new error object. Raises memory errors. */
void engine_lib_push_error(lua_State *L, const char *code, const char *message);

/* Raises a new error object with code and a formatted message. Never returns. */
int engine_lib_error(lua_State *L, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * True when the value at idx is an error object with string code and
 * message; then *code and *message point at them (valid while the value
 * stays on the stack). Never raises (reads raw fields only).
 */
int engine_lib_is_error(lua_State *L, int idx, const char **code, const char **message);

#endif

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
 * uncaught one still reads well. The metatable is protected (getmetatable
 * gives the string "ferry.error"), so a script can neither change it (a
 * __gc there would run at lua_close) nor give it to tables of its own; and
 * what Ferry raised is recorded out of the script's reach (a weak table in
 * the registry), so changing an object's fields cannot turn it into another
 * error either.
 */
#ifndef ENGINE_FERRY_LIB_H
#define ENGINE_FERRY_LIB_H

#include <lua.h>
#include <stddef.h>

#define ENGINE_LIB_ERROR_TYPE "ferry.error"
#define ENGINE_LIB_ALL_MAX 10000    /* calls in one ferry.all */
#define ENGINE_LIB_ALL_MAX_ARGS 250 /* name + arguments in one call table */

/*
 * Installs the ferry table (without ferry.args: the caller sets it), the capturing print,
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
 * True when the value at idx is an error object Ferry made (one the script
 * changed since is still one); then *code and *message point at the code and
 * message it was made with, whatever its fields say now (valid while the
 * value stays on the stack). Never raises.
 */
int engine_lib_is_error(lua_State *L, int idx, const char **code, const char **message);

/*
 * The code and message that the uncaught error value at idx ends a script
 * with, when the value decides them: an error object Ferry made (its own
 * code), or a table of the script's own with a string field code. Such a
 * code passes through when it is the script's to use: 1 to
 * ENGINE_SCRIPT_CODE_MAX bytes (script.h: the longest code a result
 * carries) of [a-z0-9_.-] starting with a letter, and none of Ferry's own
 * codes (lib/ferry_err.h), which only Ferry may raise; any
 * other code makes the result script_error, the message naming the code.
 * The message is the table's message field when it is a string or a number,
 * else empty. Returns 0 (nothing pushed) when the value is no such table,
 * else 1 with the strings valid while the values pushed meanwhile stay on
 * the stack. Raises memory errors: call it protected.
 */
int engine_lib_error_code(lua_State *L, int idx, const char **code, const char **message);

#endif

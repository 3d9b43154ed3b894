/*
 * coroutines: the script's `coroutine` library, aware of Ferry's yields.
 *
 * In Lua 5.4 a C function that yields returns control to whoever resumed the
 * running coroutine. The chunk runs in a coroutine the engine resumes, so a
 * ferry.call in the chunk reaches the engine; but inside coroutine.wrap(f)()
 * it would reach the script's own resume instead. This library's resume and
 * wrap recognise a Ferry yield coming up from the coroutine they resumed,
 * pass it on up (yielding their own thread, with a continuation) until it
 * reaches the engine, and when the engine resumes the script with the answer
 * they resume the coroutine below, so the answer travels back down to the
 * ferry.call that waits for it. Yields of the script's own keep their
 * meaning: they stop at the nearest resume, as in plain Lua.
 *
 * The chunk's coroutine plays the main thread: coroutine.running() says it is
 * the main one, isyieldable() is false there and coroutine.yield() raises
 * "attempt to yield from outside a coroutine", as a top-level yield does in
 * plain Lua. create and status are Lua's own.
 */
#ifndef ENGINE_COROUTINES_H
#define ENGINE_COROUTINES_H

#include <lua.h>

/*
 * Replaces the functions of the coroutine library already opened in L
 * (engine_sandbox_open). L must belong to a script. Raises memory errors:
 * call it protected.
 */
void engine_coroutines_open(lua_State *L);

/*
 * NULL when a ferry.call made on thread L can suspend the script until its
 * answer comes; otherwise the reason it cannot, for the error message.
 */
const char *engine_coroutines_cannot_yield(lua_State *L);

#endif

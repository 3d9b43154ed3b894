/*
 * chunk_cache: a script's chunk compiled once, loaded again from its
 * binary form when the same source comes back.
 *
 * Clients submit the same script over and over; compiling it again is
 * most of what a short script costs but for the state's reset. The cache
 * keeps, in the engine's C heap (no lua_State's: collectgarbage("count")
 * does not see it), the lua_dump of chunks compiled here, keyed by their
 * chunk name and every byte of their source (a hash finds the entry, the
 * bytes decide). A hit loads that dump with lua_load: a new closure, new
 * prototypes, its first upvalue (_ENV) the loading state's globals, as
 * compiling the text would give. No Lua object is ever shared between two
 * scripts or two states: only bytes Ferry itself dumped, never a client's
 * (binary chunks stay refused everywhere else).
 *
 * A source is dumped the second time it is compiled (the first only leaves
 * its hash), so a stream of sources that never repeat costs one hash each.
 * At most ENGINE_CHUNK_CACHE_SLOTS entries and ENGINE_CHUNK_CACHE_BYTES
 * bytes (sources and dumps) are kept, the least recently used go first.
 * Process-wide and single-threaded, as the state pool.
 */
#ifndef ENGINE_CHUNK_CACHE_H
#define ENGINE_CHUNK_CACHE_H

#include "sandbox.h"

#include <lua.h>
#include <stddef.h>

#define ENGINE_CHUNK_CACHE_SLOTS 64
#define ENGINE_CHUNK_CACHE_BYTES (4u << 20)
#define ENGINE_CHUNK_CACHE_MAX_SOURCE (256u << 10) /* larger sources are not kept */

/*
 * As engine_sandbox_load (same status, same function or message on the
 * stack, the same meter charge of one step per source byte, which may stop
 * it with the meter's error), from the cache when it holds this chunk.
 */
int engine_chunk_load(lua_State *L, const char *source, size_t len, const char *chunkname,
                      const engine_sandbox_meter *meter);

/* Forgets every entry (tests, shutdown). */
void engine_chunk_cache_clear(void);

/* Loads served from the cache since the process started (tests, bench). */
unsigned long engine_chunk_cache_hits(void);

#endif

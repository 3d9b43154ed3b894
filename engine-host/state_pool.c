/*
 * state_pool: warm sandboxed lua_States, reset between scripts (see the
 * header for what a reset restores and why that is all a script can reach).
 *
 * What a fresh state holds is the same in every state, but for the objects
 * each state makes of its own (the library tables, closures with
 * upvalues). So the pristine contents are kept once per process, in C, as a
 * template: for each reachable table, its keys (all strings) with values
 * that are light C functions, numbers, booleans or strings, or else an
 * index into a small per-state array of anchors (the registry keeps the
 * reachable tables and those closures there). A reset clears each table,
 * refills it from the template and removes any metatable, with raw accesses
 * only: no script code runs. Keeping a copy of every table in each state
 * instead would cost about 5 KB per state, a quarter of a blocked script.
 */
#include "state_pool.h"

#include <assert.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char anchors_key = 'p'; /* registry: this state's anchors (NREACH tables first) */

/* The tables a script can reach and change, by global name ("" for _G); the
 * string metatable comes last. */
static const char *const reachable[] = {"",          LUA_STRLIBNAME,  LUA_TABLIBNAME,
                                        LUA_MATHLIBNAME, LUA_UTF8LIBNAME, LUA_COLIBNAME,
                                        LUA_OSLIBNAME, "ferry"};
#define NREACH (sizeof reachable / sizeof reachable[0] + 1)
#define REACH_FERRY 7 /* reachable[REACH_FERRY] is "ferry" */

typedef enum { V_LIGHT, V_INT, V_FLOAT, V_BOOL, V_STRING, V_ANCHOR } value_kind;

typedef struct {
    char *key;
    size_t keylen;
    value_kind kind;
    union {
        lua_CFunction f;
        lua_Integer i;
        lua_Number n;
        int b;
        int anchor; /* index in the state's anchors */
        struct {
            char *s;
            size_t len;
        } str;
    } v;
} entry;

static struct {
    int ready;  /* the template is built */
    int broken; /* it could not be: no state is ever reset */
    entry *e[NREACH];
    size_t n[NREACH];
    uint16_t *slots[NREACH]; /* open addressing by key: index + 1 into e[t], 0 empty */
    uint32_t mask[NREACH];
    int nanchors;
    size_t baseline; /* the smallest heap of a reset state so far */
    lua_State *idle[ENGINE_POOL_MAX_IDLE];
    size_t nidle;
} pool;

/* splitmix64 over a process seed from the kernel: unpredictable seeds for
 * math.random without a system call per reset. */
static uint64_t next_seed(void)
{
    static uint64_t state;
    static int seeded;
    if (!seeded) {
        if (getentropy(&state, sizeof state) != 0)
            state = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&state;
        seeded = 1;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* While idle, and while being reset: no script's cap, no script to count for. */
static void *plain_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}

/* For the lookup only (matches compare the bytes): the length and the end
 * bytes tell Ferry's library keys apart well enough, at a few instructions
 * per key instead of one per byte. */
static uint32_t key_hash(const char *key, size_t len)
{
    if (len == 0)
        return 0;
    return (uint32_t)len * 2654435761u ^ (uint32_t)(unsigned char)key[0] * 40503u ^
           (uint32_t)(unsigned char)key[len - 1] * 97u ^ (uint32_t)(unsigned char)key[len / 2];
}

/* The slots of table t's entries, for find_entry. 0, or -1 when out of memory. */
static int index_entries(size_t t)
{
    uint32_t size = 8;
    while (size < 4 * pool.n[t]) /* short probes */
        size *= 2;
    pool.slots[t] = calloc(size, sizeof *pool.slots[t]);
    if (!pool.slots[t])
        return -1;
    pool.mask[t] = size - 1;
    for (size_t k = 0; k < pool.n[t]; k++) {
        uint32_t i = key_hash(pool.e[t][k].key, pool.e[t][k].keylen) & pool.mask[t];
        while (pool.slots[t][i])
            i = (i + 1) & pool.mask[t];
        pool.slots[t][i] = (uint16_t)(k + 1);
    }
    return 0;
}

/* The template's entry of table t with this key, or NULL. */
static const entry *find_entry(size_t t, const char *key, size_t len)
{
    for (uint32_t i = key_hash(key, len) & pool.mask[t];; i = (i + 1) & pool.mask[t]) {
        uint16_t v = pool.slots[t][i];
        if (!v)
            return NULL;
        const entry *e = &pool.e[t][v - 1];
        if (e->keylen == len && memcmp(e->key, key, len) == 0)
            return e;
    }
}

/* Pushes the reachable tables of L, in order. */
static void push_reachable(lua_State *L)
{
    for (size_t i = 0; i + 1 < NREACH; i++) {
        if (reachable[i][0])
            lua_getglobal(L, reachable[i]);
        else
            lua_pushglobaltable(L);
        luaL_checktype(L, -1, LUA_TTABLE);
    }
    lua_pushliteral(L, "");
    if (!lua_getmetatable(L, -1))
        luaL_error(L, "no string metatable");
    lua_remove(L, -2);
}

/* Index of the reachable table equal to the value at idx, or -1 (tables at base+1..). */
static int reachable_index(lua_State *L, int base, int idx)
{
    for (int i = 0; i < (int)NREACH; i++)
        if (lua_rawequal(L, base + 1 + i, idx))
            return i;
    return -1;
}

static void free_template(void)
{
    for (size_t t = 0; t < NREACH; t++) {
        for (size_t k = 0; k < pool.n[t]; k++) {
            free(pool.e[t][k].key);
            if (pool.e[t][k].kind == V_STRING)
                free(pool.e[t][k].v.str.s);
        }
        free(pool.e[t]);
        free(pool.slots[t]);
        pool.e[t] = NULL;
        pool.slots[t] = NULL;
        pool.n[t] = 0;
    }
}

/* Builds the template from L's tables (at base+1..base+NREACH). 0, or -1 when out of memory. */
static int build_template(lua_State *L, int base)
{
    int nanchors = (int)NREACH;
    assert(strcmp(reachable[REACH_FERRY], "ferry") == 0);
    for (size_t t = 0; t < NREACH; t++) {
        int tab = base + 1 + (int)t;
        size_t n = 0;
        lua_pushnil(L);
        while (lua_next(L, tab)) {
            lua_pop(L, 1);
            n++;
        }
        pool.e[t] = calloc(n ? n : 1, sizeof(entry));
        if (!pool.e[t])
            return -1;
        lua_pushnil(L);
        while (lua_next(L, tab)) {
            entry *e = &pool.e[t][pool.n[t]];
            if (lua_type(L, -2) != LUA_TSTRING)
                return -1; /* a key Ferry's libraries never have */
            e->key = strdup(lua_tostring(L, -2));
            if (!e->key)
                return -1;
            e->keylen = strlen(e->key);
            pool.n[t]++;
            switch (lua_type(L, -1)) {
            case LUA_TNUMBER:
                if (lua_isinteger(L, -1)) {
                    e->kind = V_INT;
                    e->v.i = lua_tointeger(L, -1);
                } else {
                    e->kind = V_FLOAT;
                    e->v.n = lua_tonumber(L, -1);
                }
                break;
            case LUA_TBOOLEAN:
                e->kind = V_BOOL;
                e->v.b = lua_toboolean(L, -1);
                break;
            case LUA_TSTRING: {
                size_t len;
                const char *s = lua_tolstring(L, -1, &len);
                e->kind = V_STRING;
                e->v.str.s = malloc(len + 1);
                if (!e->v.str.s)
                    return -1;
                memcpy(e->v.str.s, s, len + 1);
                e->v.str.len = len;
                break;
            }
            default: {
                int light = 0;
                if (lua_iscfunction(L, -1)) {
                    light = lua_getupvalue(L, -1, 1) == NULL;
                    if (!light)
                        lua_pop(L, 1); /* the upvalue lua_getupvalue pushed */
                }
                if (light) {
                    e->kind = V_LIGHT;
                    e->v.f = lua_tocfunction(L, -1);
                } else {
                    int r = reachable_index(L, base, lua_gettop(L));
                    e->kind = V_ANCHOR;
                    e->v.anchor = r >= 0 ? r : nanchors++;
                }
                break;
            }
            }
            lua_pop(L, 1);
        }
        if (pool.n[t] > UINT16_MAX - 1 || index_entries(t) != 0)
            return -1;
    }
    pool.nanchors = nanchors;
    return 0;
}

/*
 * Anchors L's own objects (tables at base+1..) in the template's order, in a
 * registry array. Raises when L does not have the template's layout.
 */
static void anchor_objects(lua_State *L, int base)
{
    lua_createtable(L, pool.nanchors, 0);
    int arr = lua_gettop(L);
    for (int t = 0; t < (int)NREACH; t++) {
        lua_pushvalue(L, base + 1 + t);
        lua_rawseti(L, arr, t + 1);
    }
    for (size_t t = 0; t < NREACH; t++)
        for (size_t k = 0; k < pool.n[t]; k++) {
            const entry *e = &pool.e[t][k];
            if (e->kind != V_ANCHOR || e->v.anchor < (int)NREACH)
                continue; /* the reachable tables are anchored above */
            lua_pushstring(L, e->key);
            lua_rawget(L, base + 1 + (int)t);
            lua_rawseti(L, arr, e->v.anchor + 1);
        }
    lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
}

void engine_pool_snapshot(lua_State *L)
{
    if (pool.broken)
        return;
    int base = lua_gettop(L);
    luaL_checkstack(L, (int)NREACH + 8, NULL);
    push_reachable(L);
    if (!pool.ready) {
        if (build_template(L, base) != 0) {
            free_template();
            pool.broken = 1;
            lua_settop(L, base);
            return;
        }
        pool.ready = 1;
        pool.baseline = SIZE_MAX;
    }
    anchor_objects(L, base);
    lua_settop(L, base);
}

/* Pushes the template's value e for the state whose anchors are at arr. */
static void push_value(lua_State *L, const entry *e, int arr)
{
    switch (e->kind) {
    case V_LIGHT:
        lua_pushcfunction(L, e->v.f);
        break;
    case V_INT:
        lua_pushinteger(L, e->v.i);
        break;
    case V_FLOAT:
        lua_pushnumber(L, e->v.n);
        break;
    case V_BOOL:
        lua_pushboolean(L, e->v.b);
        break;
    case V_STRING:
        lua_pushlstring(L, e->v.str.s, e->v.str.len);
        break;
    case V_ANCHOR:
        lua_rawgeti(L, arr, e->v.anchor + 1);
        break;
    }
}

static size_t heap_bytes(lua_State *L)
{
    return (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
}

/* Whether the value at idx (negative: from the top) is the template's value e. */
static int value_is(lua_State *L, int idx, const entry *e, int arr)
{
    switch (e->kind) {
    case V_LIGHT:
        /* lua_topointer gives a light C function's address; a closure of the
         * same function (with upvalues) is an object on the heap. */
        return lua_type(L, idx) == LUA_TFUNCTION &&
               (uintptr_t)lua_topointer(L, idx) == (uintptr_t)e->v.f;
    case V_INT:
        return lua_isinteger(L, idx) && lua_tointeger(L, idx) == e->v.i;
    case V_FLOAT: {
        if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx))
            return 0;
        lua_Number n = lua_tonumber(L, idx);
        return memcmp(&n, &e->v.n, sizeof n) == 0; /* NaN and -0.0 too */
    }
    case V_BOOL:
        return lua_type(L, idx) == LUA_TBOOLEAN && lua_toboolean(L, idx) == e->v.b;
    case V_STRING: {
        if (lua_type(L, idx) != LUA_TSTRING)
            return 0;
        size_t len;
        const char *str = lua_tolstring(L, idx, &len);
        return len == e->v.str.len && memcmp(str, e->v.str.s, len) == 0;
    }
    case V_ANCHOR: {
        int at = lua_absindex(L, idx);
        lua_rawgeti(L, arr, e->v.anchor + 1);
        int same = lua_rawequal(L, at, -1);
        lua_pop(L, 1);
        return same;
    }
    }
    return 0;
}

/*
 * Whether table t holds exactly the template's entries of reachable table k
 * (every key, every value, nothing more) and has no metatable: then the
 * script left it alone and there is nothing to restore. Raw reads only.
 */
static int pristine(lua_State *L, int t, size_t k, int arr)
{
    if (lua_getmetatable(L, t)) {
        lua_pop(L, 1);
        return 0;
    }
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const entry *e = NULL;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t len;
            const char *key = lua_tolstring(L, -2, &len);
            e = find_entry(k, key, len);
            if (!e && k == REACH_FERRY && len == 4 && memcmp(key, "args", 4) == 0) {
                /* ferry.args is each script's own, set after the snapshot
                 * (script.c): removed here, without allocating. Clearing a
                 * field while traversing is allowed. */
                lua_pop(L, 1);
                lua_pushvalue(L, -1);
                lua_pushnil(L);
                lua_rawset(L, t);
                continue;
            }
        }
        if (!e || !value_is(L, -1, e, arr)) {
            lua_pop(L, 2);
            return 0;
        }
        lua_pop(L, 1);
        n++;
    }
    return n == pool.n[k];
}

/* Clears table t and fills it with the template's entries of reachable table k. */
static void refill(lua_State *L, int t, size_t k, int arr)
{
    lua_pushnil(L);
    while (lua_next(L, t)) { /* clearing existing fields while traversing is allowed */
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, t);
    }
    for (size_t i = 0; i < pool.n[k]; i++) {
        const entry *e = &pool.e[k][i];
        lua_pushlstring(L, e->key, e->keylen); /* no strlen, no cache by address */
        push_value(L, e, arr);
        lua_rawset(L, t);
    }
}

/*
 * Protected, on the main thread with an empty stack: restores the template.
 * A table that still holds exactly its template (most scripts change no
 * library table, many no global) is left as it is. Otherwise the globals
 * table, which scripts grow most, is made anew at its pristine size (a
 * table keeps its size once grown), and a library table is cleared and
 * refilled in place.
 */
static int reset(lua_State *L)
{
    if (!pool.ready || lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key) != LUA_TTABLE)
        return luaL_error(L, "no snapshot");
    luaL_checkstack(L, 8, NULL);
    lua_rawgeti(L, 1, 1); /* 2: the old globals */
    if (!pristine(L, 2, 0, 1)) {
        lua_createtable(L, 0, (int)pool.n[0]);
        lua_pushvalue(L, -1);
        lua_rawseti(L, 1, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
        if (lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE) == LUA_TTABLE) {
            lua_pushvalue(L, -2);
            lua_setfield(L, -2, LUA_GNAME); /* for the names in error messages */
        }
        lua_pop(L, 1);
        refill(L, 3, 0, 1);
    }
    lua_settop(L, 1);
    for (size_t k = 1; k < NREACH; k++) {
        lua_rawgeti(L, 1, (lua_Integer)k + 1);
        if (!pristine(L, 2, k, 1)) {
            refill(L, 2, k, 1);
            lua_pushnil(L);
            lua_setmetatable(L, 2);
        }
        lua_settop(L, 1);
    }
    /* A fresh seed that owes nothing to the last script's (Lua's own
     * randomseed() would mix in the generator's current state). */
    lua_getglobal(L, LUA_MATHLIBNAME);
    lua_getfield(L, -1, "randomseed");
    lua_pushinteger(L, (lua_Integer)next_seed());
    lua_pushinteger(L, (lua_Integer)next_seed());
    lua_call(L, 2, 0);
    lua_settop(L, 0);
    /* Collect until the heap is back at the pristine size: each cycle halves
     * a string table the script grew. */
    size_t before = SIZE_MAX;
    for (int cycle = 0; cycle < 8; cycle++) {
        lua_gc(L, LUA_GCCOLLECT);
        size_t now = heap_bytes(L);
        if ((pool.baseline != SIZE_MAX && now <= pool.baseline + ENGINE_POOL_SLACK_BYTES) ||
            now >= before)
            break;
        before = now;
    }
    return 0;
}

void engine_pool_put(lua_State *L)
{
    lua_setallocf(L, plain_alloc, NULL);
    *(void **)lua_getextraspace(L) = NULL;
    lua_sethook(L, NULL, 0, 0);
    lua_settop(L, 0);
    if (!pool.ready || pool.nidle == ENGINE_POOL_MAX_IDLE || !lua_checkstack(L, 8)) {
        lua_close(L);
        return;
    }
    lua_pushcfunction(L, reset);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        lua_close(L);
        return;
    }
    /* Back at the pristine size, or it keeps something of its last script's
     * (a grown library table): then it is not reused. */
    size_t bytes = heap_bytes(L);
    if (bytes < pool.baseline)
        pool.baseline = bytes;
    if (bytes > pool.baseline + ENGINE_POOL_SLACK_BYTES) {
        lua_close(L);
        return;
    }
    pool.idle[pool.nidle++] = L;
}

lua_State *engine_pool_take(size_t *bytes)
{
    if (pool.nidle == 0)
        return NULL;
    lua_State *L = pool.idle[--pool.nidle];
    *bytes = heap_bytes(L);
    return L;
}

void engine_pool_clear(void)
{
    while (pool.nidle > 0)
        lua_close(pool.idle[--pool.nidle]);
}

size_t engine_pool_idle(void)
{
    return pool.nidle;
}

/*
 * chunk_cache: compiled chunks kept as their lua_dump, loaded again for the
 * same source (see the header for why nothing of a script is shared).
 */
#include "chunk_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SEEN_SLOTS 256 /* hashes of sources compiled once */

typedef struct {
    uint64_t hash; /* of name and source; 0: empty slot */
    char *name;    /* the chunk name, NUL-terminated */
    char *source;  /* a copy of the source */
    size_t len;    /* its bytes */
    char *dump;    /* lua_dump of the compiled chunk, debug information kept */
    size_t dump_len;
    uint64_t used; /* the clock at its last use: the least recent goes first */
    int busy;      /* a lua_load is reading dump: not to be evicted */
} entry;

static struct {
    entry e[ENGINE_CHUNK_CACHE_SLOTS];
    size_t bytes; /* sources, names and dumps held */
    uint64_t clock;
    uint64_t seen[SEEN_SLOTS];
    unsigned long hits;
} cache;

/* FNV-1a over the name, a separator and the source: to find, never to decide. */
static uint64_t chunk_hash(const char *name, const char *source, size_t len)
{
    uint64_t h = 14695981039346656037u;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    h = (h ^ 0xffu) * 1099511628211u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)source[i]) * 1099511628211u;
    return h ? h : 1;
}

static entry *find(uint64_t h, const char *name, const char *source, size_t len)
{
    for (size_t i = 0; i < ENGINE_CHUNK_CACHE_SLOTS; i++) {
        entry *e = &cache.e[i];
        if (e->hash == h && e->len == len && strcmp(e->name, name) == 0 &&
            memcmp(e->source, source, len) == 0)
            return e;
    }
    return NULL;
}

static size_t entry_bytes(const entry *e)
{
    return strlen(e->name) + 1 + e->len + e->dump_len;
}

static void drop(entry *e)
{
    cache.bytes -= entry_bytes(e);
    free(e->name);
    free(e->source);
    free(e->dump);
    memset(e, 0, sizeof *e);
}

/* A free slot, after evicting the least recently used entries until need
 * more bytes fit; NULL when that cannot be (every entry busy). */
static entry *make_room(size_t need)
{
    for (;;) {
        entry *free_slot = NULL, *oldest = NULL;
        for (size_t i = 0; i < ENGINE_CHUNK_CACHE_SLOTS; i++) {
            entry *e = &cache.e[i];
            if (!e->hash)
                free_slot = free_slot ? free_slot : e;
            else if (!e->busy && (!oldest || e->used < oldest->used))
                oldest = e;
        }
        if (free_slot && cache.bytes + need <= ENGINE_CHUNK_CACHE_BYTES)
            return free_slot;
        if (!oldest)
            return NULL;
        drop(oldest);
    }
}

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} dump_buf;

static int write_dump(lua_State *L, const void *p, size_t size, void *ud)
{
    (void)L;
    dump_buf *b = ud;
    if (b->failed)
        return 1;
    if (b->len + size > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + size)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return 1;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, size);
    b->len += size;
    return 0;
}

/* Keeps the dump of the function on top of L's stack for this chunk. Out
 * of memory only means it is not kept. */
static void store(lua_State *L, uint64_t h, const char *name, const char *source, size_t len)
{
    dump_buf b = {0};
    if (lua_dump(L, write_dump, &b, 0) != 0 || b.failed) {
        free(b.p);
        return;
    }
    size_t name_len = strlen(name);
    size_t need = name_len + 1 + len + b.len;
    entry *e = need <= ENGINE_CHUNK_CACHE_BYTES ? make_room(need) : NULL;
    char *name_copy = e ? malloc(name_len + 1) : NULL;
    char *source_copy = name_copy ? malloc(len ? len : 1) : NULL;
    if (!source_copy) {
        free(name_copy);
        free(b.p);
        return;
    }
    memcpy(name_copy, name, name_len + 1);
    memcpy(source_copy, source, len);
    *e = (entry){.hash = h,
                 .name = name_copy,
                 .source = source_copy,
                 .len = len,
                 .dump = b.p,
                 .dump_len = b.len,
                 .used = ++cache.clock};
    cache.bytes += need;
}

/* Whether this hash was compiled once before; records it if not. */
static int seen_before(uint64_t h)
{
    size_t i = (size_t)(h % SEEN_SLOTS);
    if (cache.seen[i] == h)
        return 1;
    cache.seen[i] = h;
    return 0;
}

typedef struct {
    const entry *e;
    const engine_sandbox_meter *meter;
    size_t charge; /* the source's bytes, charged before the first piece */
    int given;
} dump_reader;

static const char *read_dump(lua_State *L, void *ud, size_t *size)
{
    dump_reader *r = ud;
    if (r->given) {
        *size = 0;
        return NULL;
    }
    if (r->meter && r->charge)
        r->meter->charge(L, r->charge); /* may raise: lua_load returns its error */
    r->given = 1;
    *size = r->e->dump_len;
    return r->e->dump;
}

int engine_chunk_load(lua_State *L, const char *source, size_t len, const char *chunkname,
                      const engine_sandbox_meter *meter)
{
    size_t max = meter && meter->max_source ? meter->max_source(L) : 0;
    if (len > ENGINE_CHUNK_CACHE_MAX_SOURCE || (max && len > max) || len == 0)
        return engine_sandbox_load(L, source, len, chunkname, meter); /* its messages */
    uint64_t h = chunk_hash(chunkname, source, len);
    entry *e = find(h, chunkname, source, len);
    if (e) {
        dump_reader r = {.e = e, .meter = meter, .charge = len};
        e->busy++;
        e->used = ++cache.clock;
        int status = lua_load(L, read_dump, &r, chunkname, "b");
        e->busy--;
        if (status == LUA_OK)
            cache.hits++;
        return status;
    }
    int status = engine_sandbox_load(L, source, len, chunkname, meter);
    if (status == LUA_OK && seen_before(h))
        store(L, h, chunkname, source, len);
    return status;
}

void engine_chunk_cache_clear(void)
{
    for (size_t i = 0; i < ENGINE_CHUNK_CACHE_SLOTS; i++)
        if (cache.e[i].hash) {
            cache.e[i].busy = 0;
            drop(&cache.e[i]);
        }
    memset(cache.seen, 0, sizeof cache.seen);
}

unsigned long engine_chunk_cache_hits(void)
{
    return cache.hits;
}

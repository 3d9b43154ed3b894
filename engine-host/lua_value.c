/*
 * lua_value: Lua values <-> Ferry__Value.
 *
 * Lua -> Ferry walks the value recursively (at most ENGINE_VALUE_MAX_DEPTH
 * tables deep) keeping, per table entered, where it stands: the array index
 * or the stack slot of the hash key. That is enough to detect cycles (a table
 * that is its own ancestor) and to name the path of a bad value without
 * building any string until something is wrong. Only raise-free Lua calls are
 * used, so what was malloc'd is always freed here.
 */
#include "lua_value.h"

#include "ferry_value.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const void *table; /* the table entered at this depth (cycle detection) */
    int key_idx;       /* stack slot of the hash key being converted under, or 0 */
    lua_Integer index; /* array index when key_idx is 0 */
    int in_key;        /* converting the hash key itself */
} frame;

typedef struct {
    lua_State *L;
    const char *root; /* path of the value converted ("args[2]") */
    int root_index;   /* > 0: the path is "<root>[<root_index>]", written only for an
                       * error message (engine_value_pack converts every argument) */
    size_t *budget;   /* wire bytes still allowed */
    size_t *room;     /* heap bytes the tree may still take; NULL: no bound */
    size_t room_at;   /* *room when the pack began, for messages */
    int depth;        /* tables entered */
    frame frames[ENGINE_VALUE_MAX_DEPTH];
    char *err;
    size_t errlen;
} conv;

static int is_alpha(char ch)
{
    return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int is_identifier(const char *s, size_t len)
{
    if (len == 0 || len > 64 || !is_alpha(s[0]))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!is_alpha(s[i]) && !(s[i] >= '0' && s[i] <= '9'))
            return 0;
    return 1;
}

/* Appends a printable, quoted, possibly shortened form of a string key. */
static size_t quote_key(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    if (cap < 8)
        return 0;
    out[n++] = '[';
    out[n++] = '"';
    for (size_t i = 0; i < len && n + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (i == 32) {
            n += (size_t)snprintf(out + n, cap - n, "...");
            break;
        }
        if (ch == '"' || ch == '\\')
            n += (size_t)snprintf(out + n, cap - n, "\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
        else
            out[n++] = (char)ch;
    }
    n += (size_t)snprintf(out + n, cap - n, "\"]");
    return n < cap ? n : cap - 1;
}

/* Writes "path: reason" into c->err and returns FERRY_EBADVALUE. */
static ferry_err fail(conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ferry_err fail(conv *c, const char *fmt, ...)
{
    if (!c->err || c->errlen == 0)
        return FERRY_EBADVALUE;
    lua_State *L = c->L;
    char path[512];
    size_t n = c->root_index > 0
                   ? (size_t)snprintf(path, sizeof path, "%s[%d]", c->root, c->root_index)
                   : (size_t)snprintf(path, sizeof path, "%s", c->root);
    for (int d = 0; d < c->depth && n < sizeof path - 1; d++) {
        const frame *f = &c->frames[d];
        char seg[128];
        if (f->in_key) {
            snprintf(seg, sizeof seg, "{key}");
        } else if (f->key_idx == 0) {
            snprintf(seg, sizeof seg, "[%lld]", (long long)f->index);
        } else {
            int k = f->key_idx;
            switch (lua_type(L, k)) {
            case LUA_TSTRING: {
                size_t len;
                const char *s = lua_tolstring(L, k, &len);
                if (is_identifier(s, len))
                    snprintf(seg, sizeof seg, ".%.*s", (int)len, s);
                else
                    quote_key(seg, sizeof seg, s, len);
                break;
            }
            case LUA_TNUMBER:
                if (lua_isinteger(L, k))
                    snprintf(seg, sizeof seg, "[%lld]", (long long)lua_tointeger(L, k));
                else
                    snprintf(seg, sizeof seg, "[%.14g]", (double)lua_tonumber(L, k));
                break;
            case LUA_TBOOLEAN:
                snprintf(seg, sizeof seg, "[%s]", lua_toboolean(L, k) ? "true" : "false");
                break;
            default:
                snprintf(seg, sizeof seg, "[%s]", lua_typename(L, lua_type(L, k)));
                break;
            }
        }
        n += (size_t)snprintf(path + n, sizeof path - n, "%s", seg);
    }
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s: %s", path, reason);
    return FERRY_EBADVALUE;
}

static ferry_err no_memory(conv *c)
{
    if (c->err && c->errlen && c->root_index > 0)
        snprintf(c->err, c->errlen, "%s[%d]: out of memory", c->root, c->root_index);
    else if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "%s: out of memory", c->root);
    return FERRY_ENOMEM;
}

/*
 * What a tree takes on the heap beyond its strings' bytes, per value and
 * per hash pair: the malloc'd struct with malloc's own overhead, and the
 * pointer to it in its parent's array (grown by doubling). A table of
 * small values is many times its wire size there.
 */
#define HEAP_OVERHEAD 16
#define VALUE_HEAP (sizeof(Ferry__Value) + HEAP_OVERHEAD + 2 * sizeof(void *))
#define TABLE_HEAP (VALUE_HEAP + sizeof(Ferry__Table) + HEAP_OVERHEAD)
#define PAIR_HEAP (sizeof(Ferry__Pair) + HEAP_OVERHEAD + 2 * sizeof(void *))

/* Charges wire bytes to the budget and heap bytes to the room. */
static ferry_err charge(conv *c, size_t wire, size_t heap)
{
    if (*c->budget < wire)
        return fail(c, "value too large (more than %u bytes)", ENGINE_VALUE_BUDGET);
    if (c->room && *c->room < heap) {
        fail(c, "more than %zu bytes once packed", c->room_at);
        return FERRY_ELIMIT;
    }
    *c->budget -= wire;
    if (c->room)
        *c->room -= heap;
    return FERRY_OK;
}

/* Stores v (NULL when malloc failed) into *out. */
static ferry_err made(conv *c, Ferry__Value *v, Ferry__Value **out)
{
    if (!v)
        return no_memory(c);
    *out = v;
    return FERRY_OK;
}

static ferry_err convert(conv *c, int idx, Ferry__Value **out);

static ferry_err convert_table(conv *c, int idx, Ferry__Value **out)
{
    lua_State *L = c->L;
    const void *p = lua_topointer(L, idx);
    for (int d = 0; d < c->depth; d++)
        if (c->frames[d].table == p)
            return fail(c, "cannot send a table that contains itself (cycle)");
    if (c->depth == ENGINE_VALUE_MAX_DEPTH)
        return fail(c, "cannot send tables nested deeper than %d", ENGINE_VALUE_MAX_DEPTH);
    if (!lua_checkstack(L, 4))
        return no_memory(c);
    ferry_err err = charge(c, 4, TABLE_HEAP);
    if (err)
        return err;
    Ferry__Value *t = ferry_value_table();
    if (!t)
        return no_memory(c);

    frame *f = &c->frames[c->depth++];
    *f = (frame){.table = p};
    lua_Unsigned n = lua_rawlen(L, idx);
    for (lua_Unsigned i = 1; i <= n && !err; i++) {
        f->key_idx = 0;
        f->index = (lua_Integer)i;
        lua_rawgeti(L, idx, (lua_Integer)i);
        Ferry__Value *v = NULL;
        err = convert(c, lua_gettop(L), &v);
        lua_pop(L, 1);
        if (!err && ferry_table_append(t, v) != FERRY_OK) /* v freed */
            err = no_memory(c);
    }
    if (!err) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            int vi = lua_gettop(L), ki = vi - 1;
            if (lua_isinteger(L, ki)) {
                lua_Integer k = lua_tointeger(L, ki);
                if (k >= 1 && (lua_Unsigned)k <= n) { /* sent in the array part */
                    lua_pop(L, 1);
                    continue;
                }
            }
            Ferry__Value *k = NULL, *v = NULL;
            f->key_idx = ki;
            f->in_key = 1;
            err = charge(c, 0, PAIR_HEAP);
            if (!err)
                err = convert(c, ki, &k);
            f->in_key = 0;
            if (!err)
                err = convert(c, vi, &v);
            if (!err) {
                err = ferry_table_set(t, k, v) == FERRY_OK ? FERRY_OK : no_memory(c);
                k = v = NULL; /* taken over, freed on failure */
            }
            if (err) {
                ferry_value_free(k);
                ferry_value_free(v);
                lua_pop(L, 2);
                break;
            }
            lua_pop(L, 1);
        }
    }
    c->depth--;
    if (err) {
        ferry_value_free(t);
        return err;
    }
    *out = t;
    return FERRY_OK;
}

static ferry_err convert(conv *c, int idx, Ferry__Value **out)
{
    lua_State *L = c->L;
    ferry_err err;
    *out = NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return (err = charge(c, 2, VALUE_HEAP)) ? err : made(c, ferry_value_nil(), out);
    case LUA_TBOOLEAN:
        return (err = charge(c, 2, VALUE_HEAP))
                   ? err
                   : made(c, ferry_value_bool(lua_toboolean(L, idx)), out);
    case LUA_TNUMBER:
        if ((err = charge(c, 11, VALUE_HEAP)))
            return err;
        if (lua_isinteger(L, idx))
            return made(c, ferry_value_int((int64_t)lua_tointeger(L, idx)), out);
        return made(c, ferry_value_float((double)lua_tonumber(L, idx)), out);
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len); /* a string already: no conversion */
        if ((err = charge(c, len > ENGINE_VALUE_BUDGET ? len : len + 6,
                          len > SIZE_MAX / 2 ? len : len + VALUE_HEAP + HEAP_OVERHEAD)))
            return err;
        return made(c, ferry_value_string(s, len), out);
    }
    case LUA_TTABLE:
        return convert_table(c, idx, out);
    case LUA_TFUNCTION:
        return fail(c, "cannot send a function");
    case LUA_TUSERDATA:
    case LUA_TLIGHTUSERDATA:
        return fail(c, "cannot send a userdata");
    case LUA_TTHREAD:
        return fail(c, "cannot send a thread");
    default:
        return fail(c, "cannot send a %s", lua_typename(L, lua_type(L, idx)));
    }
}

ferry_err engine_value_from_lua(lua_State *L, int idx, const char *path, size_t *budget,
                                Ferry__Value **out, char *err, size_t errlen)
{
    conv c = {.L = L, .root = path, .budget = budget, .err = err, .errlen = errlen};
    *out = NULL;
    return convert(&c, lua_absindex(L, idx), out);
}

ferry_err engine_value_pack(lua_State *L, int first, int n, const char *what, size_t budget,
                            size_t *room, Ferry__Value ***out, size_t *nout, char *err,
                            size_t errlen)
{
    Ferry__Value **arr = NULL;
    size_t len = 0;
    size_t room_at = room ? *room : 0;
    ferry_err e = FERRY_OK;
    first = lua_absindex(L, first);
    *out = NULL;
    *nout = 0;
    for (int i = 0; i < n && !e; i++) {
        conv c = {.L = L,
                  .root = what ? what : "",
                  .root_index = i + 1,
                  .budget = &budget,
                  .room = room,
                  .room_at = room_at,
                  .err = err,
                  .errlen = errlen};
        Ferry__Value *v = NULL;
        e = convert(&c, first + i, &v);
        if (!e && ferry_values_push(&arr, &len, v) != FERRY_OK) /* v freed */
            e = no_memory(&c);
    }
    if (e) {
        ferry_values_free(arr, len);
        return e;
    }
    *out = arr;
    *nout = len;
    return FERRY_OK;
}

static int push(lua_State *L, const Ferry__Value *v, int depth, char *err, size_t errlen);

static int push_table(lua_State *L, const Ferry__Table *t, int depth, char *err, size_t errlen)
{
    if (depth >= ENGINE_VALUE_MAX_DEPTH) {
        snprintf(err, errlen, "tables nested deeper than %d", ENGINE_VALUE_MAX_DEPTH);
        return 0;
    }
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "Lua stack overflow");
        return 0;
    }
    size_t na = t ? t->n_array : 0, nh = t ? t->n_hash : 0;
    lua_createtable(L, na > INT_MAX ? INT_MAX : (int)na, nh > INT_MAX ? INT_MAX : (int)nh);
    for (size_t i = 0; i < na; i++) {
        if (!push(L, t->array[i], depth + 1, err, errlen))
            goto fail;
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    for (size_t i = 0; i < nh; i++) {
        const Ferry__Pair *p = t->hash[i];
        if (!p)
            continue;
        if (!push(L, p->key, depth + 1, err, errlen))
            goto fail;
        if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
                                 isnan((double)lua_tonumber(L, -1)))) {
            snprintf(err, errlen, "table key is %s", lua_isnil(L, -1) ? "nil" : "NaN");
            lua_pop(L, 1);
            goto fail;
        }
        if (!push(L, p->value, depth + 1, err, errlen)) {
            lua_pop(L, 1);
            goto fail;
        }
        lua_rawset(L, -3);
    }
    return 1;
fail:
    lua_pop(L, 1);
    return 0;
}

static int push(lua_State *L, const Ferry__Value *v, int depth, char *err, size_t errlen)
{
    if (!v) {
        lua_pushnil(L);
        return 1;
    }
    switch (v->kind_case) {
    case FERRY__VALUE__KIND_BOOLEAN:
        lua_pushboolean(L, v->boolean);
        return 1;
    case FERRY__VALUE__KIND_INTEGER:
        lua_pushinteger(L, (lua_Integer)v->integer);
        return 1;
    case FERRY__VALUE__KIND_NUMBER:
        lua_pushnumber(L, (lua_Number)v->number);
        return 1;
    case FERRY__VALUE__KIND_STRING:
        lua_pushlstring(L, (const char *)v->string.data, v->string.len);
        return 1;
    case FERRY__VALUE__KIND_TABLE:
        return push_table(L, v->table, depth, err, errlen);
    default: /* nil, or nothing set */
        lua_pushnil(L);
        return 1;
    }
}

int engine_value_push(lua_State *L, const Ferry__Value *v, char *err, size_t errlen)
{
    if (!lua_checkstack(L, 1)) {
        snprintf(err, errlen, "Lua stack overflow");
        return 0;
    }
    return push(L, v, 0, err, errlen);
}


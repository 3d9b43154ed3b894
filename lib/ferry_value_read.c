/*
 * ferry_value_read: reading Ferry values (include/ferry/value.h), for
 * handlers and clients alike, and ferry_table_set_field for building results.
 *
 * A handler's arguments are often tables of named options, which arrive as
 * the hash part of a Ferry__Table (pairs in no particular order). These
 * reads follow the rules of ferry_call_arg_* so that a field and an
 * argument of the same kind read alike: an integer also from a float with an
 * exact integer value, a number from either, strings binary-safe.
 */
#include "ferry_value.h"

#include <math.h>
#include <string.h>

static Ferry__Value__KindCase kind_of(const Ferry__Value *v)
{
    return v ? v->kind_case : FERRY__VALUE__KIND__NOT_SET;
}

ferry_err ferry_value_get_int(const Ferry__Value *v, int64_t *out)
{
    switch (kind_of(v)) {
    case FERRY__VALUE__KIND_INTEGER:
        *out = v->integer;
        return FERRY_OK;
    case FERRY__VALUE__KIND_NUMBER:
        /* As lua_tointegerx: a float converts only when it is a whole number in range. */
        if (v->number >= -9223372036854775808.0 && v->number < 9223372036854775808.0 &&
            v->number == floor(v->number)) {
            *out = (int64_t)v->number;
            return FERRY_OK;
        }
        return FERRY_EBADARG;
    default:
        return FERRY_EBADARG;
    }
}

ferry_err ferry_value_get_number(const Ferry__Value *v, double *out)
{
    switch (kind_of(v)) {
    case FERRY__VALUE__KIND_INTEGER:
        *out = (double)v->integer;
        return FERRY_OK;
    case FERRY__VALUE__KIND_NUMBER:
        *out = v->number;
        return FERRY_OK;
    default:
        return FERRY_EBADARG;
    }
}

ferry_err ferry_value_get_string(const Ferry__Value *v, const char **data, size_t *len)
{
    if (kind_of(v) != FERRY__VALUE__KIND_STRING)
        return FERRY_EBADARG;
    *data = v->string.len ? (const char *)v->string.data : "";
    *len = v->string.len;
    return FERRY_OK;
}

ferry_err ferry_value_get_bool(const Ferry__Value *v, int *out)
{
    if (kind_of(v) != FERRY__VALUE__KIND_BOOLEAN)
        return FERRY_EBADARG;
    *out = v->boolean != 0;
    return FERRY_OK;
}

int ferry_value_is_nil(const Ferry__Value *v)
{
    Ferry__Value__KindCase k = kind_of(v);
    return k == FERRY__VALUE__KIND__NOT_SET || k == FERRY__VALUE__KIND_NIL;
}

static const Ferry__Table *table_of(const Ferry__Value *t)
{
    return kind_of(t) == FERRY__VALUE__KIND_TABLE ? t->table : NULL;
}

const Ferry__Value *ferry_table_get(const Ferry__Value *t, const char *key)
{
    const Ferry__Table *tab = table_of(t);
    if (!tab)
        return NULL;
    size_t len = strlen(key);
    for (size_t i = 0; i < tab->n_hash; i++) {
        const Ferry__Pair *p = tab->hash[i];
        const Ferry__Value *k = p ? p->key : NULL;
        if (kind_of(k) == FERRY__VALUE__KIND_STRING && k->string.len == len &&
            (len == 0 || memcmp(k->string.data, key, len) == 0))
            return p->value;
    }
    return NULL;
}

const Ferry__Value *ferry_table_geti(const Ferry__Value *t, int64_t i)
{
    const Ferry__Table *tab = table_of(t);
    if (!tab)
        return NULL;
    if (i >= 1 && (uint64_t)i <= tab->n_array)
        return tab->array[i - 1];
    for (size_t j = 0; j < tab->n_hash; j++) {
        const Ferry__Pair *p = tab->hash[j];
        int64_t k;
        if (p && kind_of(p->key) != FERRY__VALUE__KIND_STRING &&
            ferry_value_get_int(p->key, &k) == FERRY_OK && k == i)
            return p->value;
    }
    return NULL;
}

size_t ferry_table_len(const Ferry__Value *t)
{
    const Ferry__Table *tab = table_of(t);
    return tab ? tab->n_array : 0;
}

int ferry_table_next(const Ferry__Value *t, size_t *pos, const Ferry__Value **key,
                     const Ferry__Value **value)
{
    const Ferry__Table *tab = table_of(t);
    while (tab && *pos < tab->n_hash) {
        const Ferry__Pair *p = tab->hash[(*pos)++];
        if (!p) /* a decoder never leaves holes; a hand-built table might */
            continue;
        *key = p->key;
        *value = p->value;
        return 1;
    }
    return 0;
}

ferry_err ferry_table_set_field(Ferry__Value *t, const char *key, Ferry__Value *v)
{
    return ferry_table_set(t, ferry_value_cstring(key), v); /* frees both on failure */
}

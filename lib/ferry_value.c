/* ferry_value: constructors, deep copy, equality and JSON for Ferry values. */
#include "ferry_value.h"

#include "ferry_utf8.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Ferry__Value *value_new(Ferry__Value__KindCase kind)
{
    Ferry__Value *v = malloc(sizeof *v);
    if (!v)
        return NULL;
    ferry__value__init(v);
    v->kind_case = kind;
    return v;
}

Ferry__Value *ferry_value_nil(void)
{
    Ferry__Value *v = value_new(FERRY__VALUE__KIND_NIL);
    if (v)
        v->nil = 1;
    return v;
}

Ferry__Value *ferry_value_bool(int b)
{
    Ferry__Value *v = value_new(FERRY__VALUE__KIND_BOOLEAN);
    if (v)
        v->boolean = b != 0;
    return v;
}

Ferry__Value *ferry_value_int(int64_t i)
{
    Ferry__Value *v = value_new(FERRY__VALUE__KIND_INTEGER);
    if (v)
        v->integer = i;
    return v;
}

Ferry__Value *ferry_value_float(double d)
{
    Ferry__Value *v = value_new(FERRY__VALUE__KIND_NUMBER);
    if (v)
        v->number = d;
    return v;
}

Ferry__Value *ferry_value_string(const void *data, size_t len)
{
    Ferry__Value *v = value_new(FERRY__VALUE__KIND_STRING);
    if (!v)
        return NULL;
    v->string.data = malloc(len ? len : 1);
    if (!v->string.data) {
        free(v);
        return NULL;
    }
    if (len)
        memcpy(v->string.data, data, len);
    v->string.len = len;
    return v;
}

Ferry__Value *ferry_value_cstring(const char *s)
{
    return ferry_value_string(s, strlen(s));
}

Ferry__Value *ferry_value_table(void)
{
    Ferry__Value *v = value_new(FERRY__VALUE__KIND_TABLE);
    if (!v)
        return NULL;
    v->table = malloc(sizeof *v->table);
    if (!v->table) {
        free(v);
        return NULL;
    }
    ferry__table__init(v->table);
    return v;
}

void ferry_value_free(Ferry__Value *v)
{
    if (v)
        ferry__value__free_unpacked(v, NULL);
}

void ferry_values_free(Ferry__Value **values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ferry_value_free(values[i]);
    free(values);
}

/* Grows a repeated field geometrically: capacity is the next power of two. */
static int grow(void **arr, size_t n, size_t elem)
{
    if (n & (n - 1)) /* not a power of two: room is left */
        return 1;
    size_t cap = n ? n * 2 : 4;
    if (n && n < 4)
        return 1;
    void *p = realloc(*arr, cap * elem);
    if (!p)
        return 0;
    *arr = p;
    return 1;
}

ferry_err ferry_values_push(Ferry__Value ***arr, size_t *n, Ferry__Value *v)
{
    if (!v)
        return FERRY_ENOMEM;
    if (!grow((void **)arr, *n, sizeof **arr)) {
        ferry_value_free(v);
        return FERRY_ENOMEM;
    }
    (*arr)[(*n)++] = v;
    return FERRY_OK;
}

ferry_err ferry_table_append(Ferry__Value *t, Ferry__Value *v)
{
    assert(t->kind_case == FERRY__VALUE__KIND_TABLE);
    return ferry_values_push(&t->table->array, &t->table->n_array, v);
}

ferry_err ferry_table_set(Ferry__Value *t, Ferry__Value *k, Ferry__Value *v)
{
    assert(t->kind_case == FERRY__VALUE__KIND_TABLE);
    Ferry__Table *tab = t->table;
    Ferry__Pair *p = k && v ? malloc(sizeof *p) : NULL;
    if (!p || !grow((void **)&tab->hash, tab->n_hash, sizeof *tab->hash)) {
        free(p);
        ferry_value_free(k);
        ferry_value_free(v);
        return FERRY_ENOMEM;
    }
    ferry__pair__init(p);
    p->key = k;
    p->value = v;
    tab->hash[tab->n_hash++] = p;
    return FERRY_OK;
}

Ferry__Value *ferry_value_copy(const Ferry__Value *v)
{
    if (!v)
        return ferry_value_nil();
    switch (v->kind_case) {
    case FERRY__VALUE__KIND_BOOLEAN:
        return ferry_value_bool(v->boolean);
    case FERRY__VALUE__KIND_INTEGER:
        return ferry_value_int(v->integer);
    case FERRY__VALUE__KIND_NUMBER:
        return ferry_value_float(v->number);
    case FERRY__VALUE__KIND_STRING:
        return ferry_value_string(v->string.data, v->string.len);
    case FERRY__VALUE__KIND_TABLE: {
        Ferry__Value *t = ferry_value_table();
        if (!t)
            return NULL;
        for (size_t i = 0; i < v->table->n_array; i++) {
            Ferry__Value *c = ferry_value_copy(v->table->array[i]);
            if (!c || ferry_table_append(t, c) != FERRY_OK) {
                ferry_value_free(c);
                goto fail;
            }
        }
        for (size_t i = 0; i < v->table->n_hash; i++) {
            const Ferry__Pair *p = v->table->hash[i];
            Ferry__Value *k = ferry_value_copy(p->key);
            Ferry__Value *val = ferry_value_copy(p->value);
            if (!k || !val || ferry_table_set(t, k, val) != FERRY_OK) {
                ferry_value_free(k);
                ferry_value_free(val);
                goto fail;
            }
        }
        return t;
    fail:
        ferry_value_free(t);
        return NULL;
    }
    default:
        return ferry_value_nil();
    }
}

static int is_nil(const Ferry__Value *v)
{
    return !v || v->kind_case == FERRY__VALUE__KIND__NOT_SET ||
           v->kind_case == FERRY__VALUE__KIND_NIL;
}

int ferry_value_equal(const Ferry__Value *a, const Ferry__Value *b)
{
    if (is_nil(a) || is_nil(b))
        return is_nil(a) && is_nil(b);
    if (a->kind_case != b->kind_case)
        return 0;
    switch (a->kind_case) {
    case FERRY__VALUE__KIND_BOOLEAN:
        return a->boolean == b->boolean;
    case FERRY__VALUE__KIND_INTEGER:
        return a->integer == b->integer;
    case FERRY__VALUE__KIND_NUMBER:
        return (isnan(a->number) && isnan(b->number)) ||
               memcmp(&a->number, &b->number, sizeof a->number) == 0;
    case FERRY__VALUE__KIND_STRING:
        return a->string.len == b->string.len &&
               (a->string.len == 0 || memcmp(a->string.data, b->string.data, a->string.len) == 0);
    case FERRY__VALUE__KIND_TABLE: {
        const Ferry__Table *x = a->table, *y = b->table;
        if (x->n_array != y->n_array || x->n_hash != y->n_hash)
            return 0;
        for (size_t i = 0; i < x->n_array; i++)
            if (!ferry_value_equal(x->array[i], y->array[i]))
                return 0;
        /* Hash parts are sets: Lua's traversal order is not the sender's. */
        for (size_t i = 0; i < x->n_hash; i++) {
            size_t j = 0;
            while (j < y->n_hash && !ferry_value_equal(x->hash[i]->key, y->hash[j]->key))
                j++;
            if (j == y->n_hash || !ferry_value_equal(x->hash[i]->value, y->hash[j]->value))
                return 0;
        }
        return 1;
    }
    default:
        return 0;
    }
}

const char *ferry_value_kind(const Ferry__Value *v)
{
    if (is_nil(v))
        return "nil";
    switch (v->kind_case) {
    case FERRY__VALUE__KIND_BOOLEAN:
        return "boolean";
    case FERRY__VALUE__KIND_INTEGER:
        return "integer";
    case FERRY__VALUE__KIND_NUMBER:
        return "float";
    case FERRY__VALUE__KIND_STRING:
        return "string";
    case FERRY__VALUE__KIND_TABLE:
        return "table";
    default:
        return "nil";
    }
}

ferry_err ferry_json_string(ferry_buf *out, const void *data, size_t len)
{
    const unsigned char *s = data;
    ferry_err err = ferry_buf_append(out, "\"", 1);
    for (size_t i = 0; i < len && !err;) {
        unsigned char c = s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) {
            err = ferry_buf_puts(out, esc);
            i++;
            continue;
        }
        size_t n = c < 0x20 || c == 0x7F ? 0 : ferry_utf8_seq(s + i, len - i);
        if (n == 0) {
            err = ferry_buf_printf(out, "\\u%04x", c);
            i++;
        } else {
            err = ferry_buf_append(out, s + i, n);
            i += n;
        }
    }
    if (!err)
        err = ferry_buf_append(out, "\"", 1);
    return err;
}

static ferry_err json_float(ferry_buf *out, double d)
{
    if (isnan(d))
        return ferry_buf_puts(out, "\"nan\"");
    if (isinf(d))
        return ferry_buf_puts(out, d > 0 ? "\"inf\"" : "\"-inf\"");
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.17g", d);
    if (!strpbrk(tmp, ".eE"))
        strcat(tmp, ".0");
    return ferry_buf_puts(out, tmp);
}

static ferry_err json_key(ferry_buf *out, const Ferry__Value *k)
{
    if (k && k->kind_case == FERRY__VALUE__KIND_STRING)
        return ferry_json_string(out, k->string.data, k->string.len);
    ferry_buf tmp = FERRY_BUF_INIT;
    ferry_err err = ferry_value_to_json(k, &tmp);
    if (!err && tmp.len && tmp.data[0] == '"')
        err = ferry_buf_append(out, tmp.data, tmp.len);
    else if (!err)
        err = ferry_json_string(out, tmp.data, tmp.len);
    ferry_buf_fini(&tmp);
    return err;
}

ferry_err ferry_value_to_json(const Ferry__Value *v, ferry_buf *out)
{
    if (is_nil(v))
        return ferry_buf_puts(out, "null");
    switch (v->kind_case) {
    case FERRY__VALUE__KIND_BOOLEAN:
        return ferry_buf_puts(out, v->boolean ? "true" : "false");
    case FERRY__VALUE__KIND_INTEGER:
        return ferry_buf_printf(out, "%lld", (long long)v->integer);
    case FERRY__VALUE__KIND_NUMBER:
        return json_float(out, v->number);
    case FERRY__VALUE__KIND_STRING:
        return ferry_json_string(out, v->string.data, v->string.len);
    case FERRY__VALUE__KIND_TABLE:
        break;
    default:
        return ferry_buf_puts(out, "null");
    }
    const Ferry__Table *t = v->table;
    ferry_err err;
    if (t->n_hash == 0) {
        err = ferry_buf_puts(out, "[");
        for (size_t i = 0; i < t->n_array && !err; i++) {
            if (i)
                err = ferry_buf_puts(out, ",");
            if (!err)
                err = ferry_value_to_json(t->array[i], out);
        }
        return err ? err : ferry_buf_puts(out, "]");
    }
    err = ferry_buf_puts(out, "{");
    int first = 1;
    for (size_t i = 0; i < t->n_array && !err; i++, first = 0) {
        err = ferry_buf_printf(out, "%s\"%zu\":", first ? "" : ",", i + 1);
        if (!err)
            err = ferry_value_to_json(t->array[i], out);
    }
    for (size_t i = 0; i < t->n_hash && !err; i++, first = 0) {
        if (!first)
            err = ferry_buf_puts(out, ",");
        if (!err)
            err = json_key(out, t->hash[i]->key);
        if (!err)
            err = ferry_buf_puts(out, ":");
        if (!err)
            err = ferry_value_to_json(t->hash[i]->value, out);
    }
    return err ? err : ferry_buf_puts(out, "}");
}

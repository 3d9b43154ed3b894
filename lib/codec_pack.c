/*
 * codec_pack: ferry_envelope_packed_size and ferry_envelope_pack, byte for
 * byte what protobuf-c writes (lib_codec_pack_test), faster for Commands,
 * Replies and the Values in them, which are written by hand with the keys
 * of the table (codec_fields.h). Anything the table does not cover goes to
 * protobuf-c: a message with unknown fields, a Value of a kind the table
 * lacks, every message while the table and the schema disagree.
 */
#include "codec_fields.h"
#include "codec_internal.h"

#include <assert.h>
#include <string.h>

/* The sizes below count one byte per key. */
#define ONE_BYTE_KEY(msg, member, number, kind, flags, sub)                                        \
    _Static_assert((number) < 16, #msg "." #member ": the packer writes one-byte keys");
CODEC_FIELDS(ONE_BYTE_KEY)
#undef ONE_BYTE_KEY

void ferry_envelope_init(Ferry__Envelope *env)
{
    ferry__envelope__init(env);
    env->version = FERRY_PROTOCOL_VERSION;
}

/*
 * Commands and Replies are most of the traffic. protobuf-c packs a message by
 * walking its descriptor, and computes each submessage's size again for its
 * length prefix, so the envelope and call levels cost more than the values
 * in them. Those two levels are written here by hand, byte for byte as
 * protobuf-c writes them (fields in number order, proto3 defaults left out),
 * and only the values go through protobuf-c. Anything else, or anything
 * carrying unknown fields, goes to protobuf-c whole.
 */

static size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Key + length prefix + n bytes of a length-delimited field (fields 1..15). */
static size_t delimited_size(size_t n)
{
    return 1 + varint_size(n) + n;
}

static uint8_t *put_delimited(uint8_t *p, unsigned field, const void *data, size_t n)
{
    *p++ = (uint8_t)(field << 3 | 2);
    p = put_varint(p, n);
    if (n)
        memcpy(p, data, n);
    return p + n;
}

static uint8_t *put_uint(uint8_t *p, unsigned field, uint64_t v)
{
    *p++ = (uint8_t)(field << 3);
    return put_varint(p, v);
}

/* True when env is a Command or a Reply this file packs by hand. */
static int hand_packed(const Ferry__Envelope *env)
{
    if (env->base.n_unknown_fields || !codec_fast())
        return 0;
    /* protobuf-c versions disagree on whether empty bytes with a pointer are
     * left out: an empty engine_id (never valid) goes the generic way. */
    if (env->body_case == FERRY__ENVELOPE__BODY_COMMAND)
        return env->command && !env->command->base.n_unknown_fields &&
               env->command->engine_id.len > 0;
    if (env->body_case == FERRY__ENVELOPE__BODY_REPLY)
        return env->reply && !env->reply->base.n_unknown_fields && env->reply->engine_id.len > 0;
    return 0;
}

/* Values by hand too, when they and everything in them carry no unknown
 * fields (then protobuf-c packs that value). Oneof members are written even
 * when zero, as protobuf-c does; only a NULL table is left out. */
static size_t value_size(const Ferry__Value *v);

static size_t table_size(const Ferry__Table *t)
{
    size_t size = 0;
    for (size_t i = 0; i < t->n_array; i++)
        size += delimited_size(value_size(t->array[i]));
    for (size_t i = 0; i < t->n_hash; i++) {
        const Ferry__Pair *pair = t->hash[i];
        size_t n = 0;
        if (pair->key)
            n += delimited_size(value_size(pair->key));
        if (pair->value)
            n += delimited_size(value_size(pair->value));
        size += delimited_size(n);
    }
    return size;
}

/* 1 when v is a scalar of a kind the table has (or of no kind) and carries
 * no unknown fields: written here in one go, the common case. 0 for a table
 * (value_plain looks into it) and for anything else, which protobuf-c packs. */
_Static_assert(FERRY__VALUE__KIND__NOT_SET == 0 &&
                   (int)FERRY__VALUE__KIND_NIL == CODEC_NUM_value_nil &&
                   (int)FERRY__VALUE__KIND_BOOLEAN == CODEC_NUM_value_boolean &&
                   (int)FERRY__VALUE__KIND_INTEGER == CODEC_NUM_value_integer &&
                   (int)FERRY__VALUE__KIND_NUMBER == CODEC_NUM_value_number &&
                   (int)FERRY__VALUE__KIND_STRING == CODEC_NUM_value_string &&
                   CODEC_NUM_value_string == 5,
               "scalar_plain: the scalar kinds are 0 (none) to 5");

static inline int scalar_plain(const Ferry__Value *v)
{
    return (unsigned)v->kind_case <= FERRY__VALUE__KIND_STRING && !v->base.n_unknown_fields;
}

/* 1 when v and everything in it can be packed by hand. */
static int value_plain(const Ferry__Value *v)
{
    if (scalar_plain(v))
        return 1;
    if (v->kind_case != FERRY__VALUE__KIND_TABLE || v->base.n_unknown_fields)
        return 0;
    if (!v->table)
        return 1;
    const Ferry__Table *t = v->table;
    if (t->base.n_unknown_fields)
        return 0;
    for (size_t i = 0; i < t->n_array; i++)
        if (!value_plain(t->array[i]))
            return 0;
    for (size_t i = 0; i < t->n_hash; i++) {
        const Ferry__Pair *pair = t->hash[i];
        if (pair->base.n_unknown_fields || (pair->key && !value_plain(pair->key)) ||
            (pair->value && !value_plain(pair->value)))
            return 0;
    }
    return 1;
}

static size_t value_size(const Ferry__Value *v)
{
    switch (v->kind_case) {
    case FERRY__VALUE__KIND_NIL:
    case FERRY__VALUE__KIND_BOOLEAN:
        return 2;
    case FERRY__VALUE__KIND_INTEGER:
        return 1 + varint_size(((uint64_t)v->integer << 1) ^ (uint64_t)(v->integer >> 63));
    case FERRY__VALUE__KIND_NUMBER:
        return 9;
    case FERRY__VALUE__KIND_STRING:
        return delimited_size(v->string.len);
    case FERRY__VALUE__KIND_TABLE:
        return v->table ? delimited_size(table_size(v->table)) : 0;
    default:
        return 0;
    }
}

static uint8_t *put_value(uint8_t *p, const Ferry__Value *v);

static uint8_t *put_value_field(uint8_t *p, unsigned field, const Ferry__Value *v)
{
    *p++ = (uint8_t)(field << 3 | 2);
    p = put_varint(p, value_size(v));
    return put_value(p, v);
}

static uint8_t *put_value(uint8_t *p, const Ferry__Value *v)
{
    switch (v->kind_case) {
    case FERRY__VALUE__KIND_NIL:
        *p++ = CODEC_KEY_value_nil;
        *p++ = v->nil ? 1 : 0;
        return p;
    case FERRY__VALUE__KIND_BOOLEAN:
        *p++ = CODEC_KEY_value_boolean;
        *p++ = v->boolean ? 1 : 0;
        return p;
    case FERRY__VALUE__KIND_INTEGER:
        return put_uint(p, CODEC_NUM_value_integer,
                        ((uint64_t)v->integer << 1) ^ (uint64_t)(v->integer >> 63));
    case FERRY__VALUE__KIND_NUMBER:
        *p++ = CODEC_KEY_value_number;
        memcpy(p, &v->number, 8);
        return p + 8;
    case FERRY__VALUE__KIND_STRING:
        return put_delimited(p, CODEC_NUM_value_string, v->string.data, v->string.len);
    case FERRY__VALUE__KIND_TABLE: {
        const Ferry__Table *t = v->table;
        if (!t)
            return p;
        *p++ = CODEC_KEY_value_table;
        p = put_varint(p, table_size(t));
        for (size_t i = 0; i < t->n_array; i++)
            p = put_value_field(p, CODEC_NUM_table_array, t->array[i]);
        for (size_t i = 0; i < t->n_hash; i++) {
            const Ferry__Pair *pair = t->hash[i];
            size_t n = 0;
            if (pair->key)
                n += delimited_size(value_size(pair->key));
            if (pair->value)
                n += delimited_size(value_size(pair->value));
            *p++ = CODEC_KEY_table_hash;
            p = put_varint(p, n);
            if (pair->key)
                p = put_value_field(p, CODEC_NUM_pair_key, pair->key);
            if (pair->value)
                p = put_value_field(p, CODEC_NUM_pair_value, pair->value);
        }
        return p;
    }
    default:
        return p;
    }
}

static size_t any_value_size(const Ferry__Value *v)
{
    return value_plain(v) ? value_size(v) : ferry__value__get_packed_size(v);
}

static size_t values_size(Ferry__Value *const *v, size_t n)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += scalar_plain(v[i]) ? delimited_size(value_size(v[i]))
                                   : delimited_size(any_value_size(v[i]));
    return size;
}

/* The body's size (without its own key and length). */
static size_t call_body_size(const Ferry__Envelope *env)
{
    size_t size = 0;
    if (env->body_case == FERRY__ENVELOPE__BODY_COMMAND) {
        const Ferry__Command *c = env->command;
        if (c->engine_id.len)
            size += delimited_size(c->engine_id.len);
        if (c->call_id)
            size += 1 + varint_size(c->call_id);
        if (c->function && c->function[0])
            size += delimited_size(strlen(c->function));
        size += values_size(c->args, c->n_args);
        if (c->timeout_ms)
            size += 1 + varint_size(c->timeout_ms);
    } else {
        const Ferry__Reply *r = env->reply;
        if (r->engine_id.len)
            size += delimited_size(r->engine_id.len);
        if (r->call_id)
            size += 1 + varint_size(r->call_id);
        size += values_size(r->values, r->n_values);
        if (r->error)
            size += delimited_size(ferry__error__get_packed_size(r->error));
    }
    return size;
}

size_t ferry_envelope_packed_size(const Ferry__Envelope *env)
{
    if (!hand_packed(env))
        return ferry__envelope__get_packed_size(env);
    size_t size = env->version ? 1 + varint_size(env->version) : 0;
    return size + delimited_size(call_body_size(env));
}

static uint8_t *put_values(uint8_t *p, unsigned field, Ferry__Value *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (scalar_plain(v[i]) && v[i]->kind_case != FERRY__VALUE__KIND_STRING) {
            /* nil, boolean, integer, number: under 128 bytes, a one-byte length */
            *p++ = (uint8_t)(field << 3 | 2);
            uint8_t *len = p++;
            uint8_t *start = p;
            p = put_value(p, v[i]);
            *len = (uint8_t)(p - start);
        } else if (value_plain(v[i])) {
            p = put_value_field(p, field, v[i]);
        } else {
            *p++ = (uint8_t)(field << 3 | 2);
            p = put_varint(p, ferry__value__get_packed_size(v[i]));
            p += ferry__value__pack(v[i], p);
        }
    }
    return p;
}

size_t ferry_envelope_pack(const Ferry__Envelope *env, uint8_t *out)
{
    return ferry_envelope_pack_sized(env, ferry_envelope_packed_size(env), out);
}

size_t ferry_envelope_pack_sized(const Ferry__Envelope *env, size_t size, uint8_t *out)
{
    if (!hand_packed(env))
        return ferry__envelope__pack(env, out);
    uint8_t *p = out;
    size_t rest = size - 1; /* the body's key, its length prefix, the body */
    if (env->version) {
        p = put_uint(p, CODEC_NUM_envelope_version, env->version);
        rest -= (size_t)(p - out);
    }
    /* The body's length from the size given: the one whose prefix fits. */
    size_t body = 0;
    for (size_t k = 1; k <= 10 && k <= rest; k++) {
        if (varint_size(rest - k) == k) {
            body = rest - k;
            break;
        }
    }
    assert(body == call_body_size(env));
    *p++ = (uint8_t)((unsigned)env->body_case << 3 | 2);
    p = put_varint(p, body);
    if (env->body_case == FERRY__ENVELOPE__BODY_COMMAND) {
        const Ferry__Command *c = env->command;
        if (c->engine_id.len)
            p = put_delimited(p, CODEC_NUM_command_engine_id, c->engine_id.data, c->engine_id.len);
        if (c->call_id)
            p = put_uint(p, CODEC_NUM_command_call_id, c->call_id);
        if (c->function && c->function[0])
            p = put_delimited(p, CODEC_NUM_command_function, c->function, strlen(c->function));
        p = put_values(p, CODEC_NUM_command_args, c->args, c->n_args);
        if (c->timeout_ms)
            p = put_uint(p, CODEC_NUM_command_timeout_ms, c->timeout_ms);
    } else {
        const Ferry__Reply *r = env->reply;
        if (r->engine_id.len)
            p = put_delimited(p, CODEC_NUM_reply_engine_id, r->engine_id.data, r->engine_id.len);
        if (r->call_id)
            p = put_uint(p, CODEC_NUM_reply_call_id, r->call_id);
        p = put_values(p, CODEC_NUM_reply_values, r->values, r->n_values);
        if (r->error) {
            *p++ = CODEC_KEY_reply_error;
            p = put_varint(p, ferry__error__get_packed_size(r->error));
            p += ferry__error__pack(r->error, p);
        }
    }
    return (size_t)(p - out);
}

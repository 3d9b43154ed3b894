/*
 * ferry_codec: envelopes to bytes and back.
 *
 * Decoding checks the whole message first (framing, nesting depth, field
 * numbers) in one allocation-free walk, then builds Commands, Replies and
 * their Values straight into one arena block; anything unusual goes through
 * protobuf-c. The same walk is the broker's peek: it reads what the broker
 * routes on without decoding. Packing writes Commands, Replies and Values by
 * hand, byte for byte what protobuf-c writes (tests/unit/lib_wire_test.c).
 */
#include "ferry_codec.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ferry_envelope_init(Ferry__Envelope *env)
{
    ferry__envelope__init(env);
    env->version = FERRY_PROTOCOL_VERSION;
}

/* The descriptor of field number tag in desc, or NULL. Ferry's messages number
 * their fields 1..n in order (Stats then 20..), so the index is tried first. */
static inline const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *desc,
                                                       uint32_t tag)
{
    if (tag - 1 < desc->n_fields && desc->fields[tag - 1].id == tag)
        return &desc->fields[tag - 1];
    return protobuf_c_message_descriptor_get_field(desc, tag);
}

/*
 * Decoding arena. protobuf-c allocates every submessage, array and string
 * of a decoded envelope separately (about ten malloc/free pairs for a small
 * Command) and frees them by walking the message again. An envelope is
 * always freed whole, so its parts come from one block instead, sized from
 * the input (a small message fits in it), with more blocks chained when it
 * does not; freeing is one free() per block. protobuf-c's own frees of
 * temporaries are ignored: they stay in the arena until it goes.
 */
#define ARENA_MAGIC 0x46455252u /* "FERR" */
#define ARENA_ALIGN 16
#define ARENA_FIRST_MAX 2048    /* largest first block, past the header */
#define ARENA_BLOCK 2048        /* size of a further block */
#define ARENA_OWN 512           /* an allocation this large gets a block of its own */

typedef struct arena_block {
    struct arena_block *next;
    max_align_t pad[]; /* data follows, aligned */
} arena_block;

typedef struct {
    unsigned magic;
    arena_block *blocks; /* further blocks, freed with the arena */
    uint8_t *cur, *end;  /* free space in the current block */
    ProtobufCAllocator allocator;
} decode_arena;

/* The first allocation (the Envelope itself) starts here, right after the header. */
#define ARENA_HEADER ((sizeof(decode_arena) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

static size_t round_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static void *arena_block_new(decode_arena *a, size_t size)
{
    arena_block *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->next = a->blocks;
    a->blocks = b;
    return b + 1;
}

static void *arena_alloc(void *data, size_t size)
{
    decode_arena *a = data;
    size_t n = round_up(size ? size : 1);
    if (n < size) /* overflow */
        return NULL;
    if ((size_t)(a->end - a->cur) >= n) {
        void *p = a->cur;
        a->cur += n;
        return p;
    }
    if (n >= ARENA_OWN)
        return arena_block_new(a, n);
    uint8_t *p = arena_block_new(a, ARENA_BLOCK);
    if (!p)
        return NULL;
    a->cur = p + n;
    a->end = p + ARENA_BLOCK;
    return p;
}

static void arena_free_one(void *data, void *ptr)
{
    /* Everything goes with the arena. */
    (void)data;
    (void)ptr;
}

static decode_arena *arena_new(size_t input_len)
{
    /* A decoded message takes a few times its wire size (a 2-byte Value is
     * a 48-byte struct plus its pointer). */
    size_t first = input_len < (ARENA_FIRST_MAX - 256) / 4 ? 256 + 4 * input_len : ARENA_FIRST_MAX;
    decode_arena *a = malloc(ARENA_HEADER + first);
    if (!a)
        return NULL;
    a->magic = ARENA_MAGIC;
    a->blocks = NULL;
    a->cur = (uint8_t *)a + ARENA_HEADER;
    a->end = a->cur + first;
    a->allocator.alloc = arena_alloc;
    a->allocator.free = arena_free_one;
    a->allocator.allocator_data = a;
    return a;
}

static void arena_free(decode_arena *a)
{
    assert(a->magic == ARENA_MAGIC);
    a->magic = 0;
    while (a->blocks) {
        arena_block *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    free(a);
}

void ferry_envelope_free(Ferry__Envelope *env)
{
    if (env)
        arena_free((decode_arena *)((uint8_t *)env - ARENA_HEADER));
}

/* ---- peeking ---- */

/* One field as it is on the wire. */
typedef struct {
    uint32_t tag;
    int wire;
    uint64_t value;      /* wire type 0 */
    const uint8_t *data; /* the payload (after the length for wire type 2; the varint's
                          * bytes for 0) */
    size_t len;
} wire_field;

/* Reads a varint of at most max bytes; 0 when it is malformed or runs past end. */
static inline __attribute__((always_inline)) int read_varint_max(const uint8_t **p,
                                                                  const uint8_t *end, int max,
                                                                  uint64_t *out)
{
    if (*p < end && !(**p & 0x80)) {
        *out = *(*p)++;
        return 1;
    }
    uint64_t v = 0;
    for (int i = 0; i < max && *p < end; i++) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/*
 * Reads the field at *p with the limits of protobuf-c's unpack (keys and
 * length prefixes of at most 5 bytes, varints of at most 10, lengths within
 * the data) and one of Ferry's own: no field number 0 (protobuf-c takes it
 * when its key is not minimally encoded, then packs a key it refuses to read
 * back). 0 when malformed.
 */
static inline __attribute__((always_inline)) int next_field(const uint8_t **p, const uint8_t *end,
                                                            wire_field *f)
{
    uint64_t key, n;
    f->value = 0;
    if (!read_varint_max(p, end, 5, &key) || key >> 3 == 0)
        return 0;
    f->tag = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0:
        f->data = *p;
        if (!read_varint_max(p, end, 10, &f->value))
            return 0;
        f->len = (size_t)(*p - f->data);
        return 1;
    case 1:
    case 5:
        n = f->wire == 1 ? 8 : 4;
        if ((uint64_t)(end - *p) < n)
            return 0;
        break;
    case 2:
        if (!read_varint_max(p, end, 5, &n) || n > (uint64_t)(end - *p))
            return 0;
        break;
    default:
        return 0;
    }
    f->data = *p;
    f->len = (size_t)n;
    *p += n;
    return 1;
}

/* True when a field of type t (repeated or not) may arrive with wire type
 * wire: what protobuf-c's unpack takes, less packed repeated scalars, which
 * no Ferry message has. */
static inline int wire_fits(const ProtobufCFieldDescriptor *fd, int wire)
{
    switch (fd->type) {
    case PROTOBUF_C_TYPE_BOOL:
        /* protobuf-c reads a bool from any wire type (but checks packed ones) */
        return fd->label != PROTOBUF_C_LABEL_REPEATED || wire != 2;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_ENUM:
        return wire == 0;
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
        return wire == 5;
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return wire == 1;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return wire == 2;
    }
    return 0;
}

/* Keeps what routing needs of one field of a Command or Reply body (rec->body).
 * Later occurrences of a field replace earlier ones, as in protobuf-c. */
static inline void record(ferry_wire_call *rec, const wire_field *f)
{
    switch (f->tag) {
    case 1: /* engine_id, both */
        rec->engine_id = f->len ? f->data : NULL;
        rec->engine_id_len = f->len;
        break;
    case 2: /* call_id, both */
        rec->call_id = f->value;
        break;
    case 3:
        if (rec->body == FERRY__ENVELOPE__BODY_COMMAND) { /* function */
            const uint8_t *nul = memchr(f->data, 0, f->len);
            rec->function_len = nul ? (size_t)(nul - f->data) : f->len;
            rec->function = rec->function_len ? (const char *)f->data : NULL;
        }
        break;
    case 4:
        if (rec->body == FERRY__ENVELOPE__BODY_REPLY) /* error: merged when repeated */
            rec->has_error = 1;
        break;
    case 5:
        if (rec->body == FERRY__ENVELOPE__BODY_COMMAND) /* timeout_ms */
            rec->timeout_ms = (uint32_t)f->value;
        break;
    default:
        break;
    }
}

/*
 * The whole message (of type desc) at p decodes: every field well framed,
 * every known field of a wire type its type takes, submessages likewise down
 * to FERRY_MAX_NESTING (protobuf-c unpacks by recursion with no bound: a
 * message nested a hundred thousand deep would overflow the stack). Unknown
 * fields are skipped, as protobuf-c keeps them. With rec (a Command or Reply
 * body), its routing fields are read on the way. *plain is cleared when the
 * message holds anything decode_call does not build the way protobuf-c would:
 * unknown fields, a bool not sent as a varint, a singular submessage given
 * twice (protobuf-c merges those).
 */
static int message_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                      int depth, ferry_wire_call *rec, int *plain);

/* message_ok for a Value, the message most often checked, with its fields'
 * rules written out (what wire_fits and the descriptor say of them). */
static int value_ok(const uint8_t *p, size_t len, int depth, int *plain)
{
    if (depth > FERRY_MAX_NESTING)
        return 0;
    const uint8_t *end = p + len;
    while (p < end) {
        wire_field f;
        if (!next_field(&p, end, &f))
            return 0;
        switch (f.tag) {
        case FERRY__VALUE__KIND_NIL: /* bools: any wire type */
        case FERRY__VALUE__KIND_BOOLEAN:
            if (f.wire != 0)
                *plain = 0;
            break;
        case FERRY__VALUE__KIND_INTEGER:
            if (f.wire != 0)
                return 0;
            break;
        case FERRY__VALUE__KIND_NUMBER:
            if (f.wire != 1)
                return 0;
            break;
        case FERRY__VALUE__KIND_STRING:
            if (f.wire != 2)
                return 0;
            break;
        case FERRY__VALUE__KIND_TABLE: /* a oneof member: never merged */
            if (f.wire != 2 ||
                !message_ok(&ferry__table__descriptor, f.data, f.len, depth + 1, NULL, plain))
                return 0;
            break;
        default:
            *plain = 0;
            break;
        }
    }
    return 1;
}

static int message_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                      int depth, ferry_wire_call *rec, int *plain)
{
    if (desc == &ferry__value__descriptor)
        return value_ok(p, len, depth, plain);
    if (depth > FERRY_MAX_NESTING)
        return 0;
    const uint8_t *end = p + len;
    unsigned seen = 0; /* singular submessages met, by field index */
    while (p < end) {
        wire_field f;
        if (!next_field(&p, end, &f))
            return 0;
        const ProtobufCFieldDescriptor *fd = field_of(desc, f.tag);
        if (!fd) {
            *plain = 0;
            continue;
        }
        if (!wire_fits(fd, f.wire))
            return 0;
        if (fd->type == PROTOBUF_C_TYPE_MESSAGE) {
            if (!message_ok(fd->descriptor, f.data, f.len, depth + 1, NULL, plain))
                return 0;
            if (fd->label != PROTOBUF_C_LABEL_REPEATED &&
                !(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) {
                unsigned bit = 1u << ((unsigned)(fd - desc->fields) & 31);
                if (seen & bit)
                    *plain = 0;
                seen |= bit;
            }
        } else if (fd->type == PROTOBUF_C_TYPE_BOOL && f.wire != 0) {
            *plain = 0;
        }
        if (rec)
            record(rec, &f);
    }
    return 1;
}

ferry_err ferry_wire_peek_call(const void *data, size_t len, ferry_wire_call *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *p = data, *end = p + len;
    uint32_t version = 0;
    while (p < end) {
        wire_field f;
        if (!next_field(&p, end, &f))
            return FERRY_EPROTO;
        const ProtobufCFieldDescriptor *fd = field_of(&ferry__envelope__descriptor, f.tag);
        if (!fd)
            continue;
        if (!wire_fits(fd, f.wire))
            return FERRY_EPROTO;
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) { /* version, the only scalar */
            version = (uint32_t)f.value;
            continue;
        }
        /* A oneof member replaces whichever was set before, whole. */
        ferry_wire_call body = {.body = (Ferry__Envelope__BodyCase)f.tag};
        int routed = f.tag == FERRY__ENVELOPE__BODY_COMMAND || f.tag == FERRY__ENVELOPE__BODY_REPLY;
        int plain = 1;
        if (!message_ok(fd->descriptor, f.data, f.len, 1, routed ? &body : NULL, &plain))
            return FERRY_EPROTO;
        *out = body;
    }
    if (version != FERRY_PROTOCOL_VERSION) {
        memset(out, 0, sizeof *out);
        return FERRY_EVERSION;
    }
    if (out->body == FERRY__ENVELOPE__BODY__NOT_SET)
        return FERRY_EPROTO;
    return FERRY_OK;
}

/* ---- decoding ---- */

/*
 * Commands and Replies (and the Values in them) are built here straight from
 * bytes that message_ok passed, into the arena: protobuf-c's generic unpack
 * scans every message twice and looks each field up in its descriptor. The
 * result is what protobuf-c builds (initialised by the generated _init, so
 * absent strings are "" and absent bytes empty; later scalars replace
 * earlier ones; a later oneof member replaces the earlier one). Whatever
 * message_ok found not plain goes to protobuf-c instead.
 */

static void *build_alloc(decode_arena *a, size_t size)
{
    return arena_alloc(a, size);
}

/* A bool as protobuf-c reads it: any payload bit set among the varint's bytes. */
static protobuf_c_boolean varint_bool(const wire_field *f)
{
    for (size_t i = 0; i < f->len; i++)
        if (f->data[i] & 0x7f)
            return 1;
    return 0;
}

static int build_bytes(decode_arena *a, const wire_field *f, ProtobufCBinaryData *out)
{
    out->len = f->len;
    out->data = NULL;
    if (f->len) {
        if (!(out->data = build_alloc(a, f->len)))
            return 0;
        memcpy(out->data, f->data, f->len);
    }
    return 1;
}

static int build_string(decode_arena *a, const wire_field *f, char **out)
{
    char *s = build_alloc(a, f->len + 1);
    if (!s)
        return 0;
    memcpy(s, f->data, f->len);
    s[f->len] = '\0';
    *out = s;
    return 1;
}

static Ferry__Value *build_value(decode_arena *a, const uint8_t *p, size_t len);

/* Counts the fields numbered tag in the message at p. */
static size_t count_field(const uint8_t *p, size_t len, uint32_t tag)
{
    const uint8_t *end = p + len;
    size_t n = 0;
    wire_field f;
    while (p < end && next_field(&p, end, &f))
        n += f.tag == tag;
    return n;
}

/* Allocates the array of a repeated message field of n elements (NULL for none). */
static int build_array(decode_arena *a, size_t n, void ***out)
{
    *out = NULL;
    if (n == 0)
        return 1;
    *out = build_alloc(a, n * sizeof(void *));
    return *out != NULL;
}

static Ferry__Pair *build_pair(decode_arena *a, const uint8_t *p, size_t len)
{
    Ferry__Pair *pair = build_alloc(a, sizeof *pair);
    if (!pair)
        return NULL;
    ferry__pair__init(pair);
    const uint8_t *end = p + len;
    wire_field f;
    while (p < end && next_field(&p, end, &f)) {
        Ferry__Value *v = f.tag == 1 || f.tag == 2 ? build_value(a, f.data, f.len) : NULL;
        if ((f.tag == 1 || f.tag == 2) && !v)
            return NULL;
        if (f.tag == 1)
            pair->key = v;
        else if (f.tag == 2)
            pair->value = v;
    }
    return pair;
}

static Ferry__Table *build_table(decode_arena *a, const uint8_t *p, size_t len)
{
    Ferry__Table *t = build_alloc(a, sizeof *t);
    if (!t)
        return NULL;
    ferry__table__init(t);
    if (!build_array(a, count_field(p, len, 1), (void ***)&t->array) ||
        !build_array(a, count_field(p, len, 2), (void ***)&t->hash))
        return NULL;
    const uint8_t *end = p + len;
    wire_field f;
    while (p < end && next_field(&p, end, &f)) {
        if (f.tag == 1) {
            if (!(t->array[t->n_array++] = build_value(a, f.data, f.len)))
                return NULL;
        } else if (f.tag == 2) {
            if (!(t->hash[t->n_hash++] = build_pair(a, f.data, f.len)))
                return NULL;
        }
    }
    return t;
}

static Ferry__Value *build_value(decode_arena *a, const uint8_t *p, size_t len)
{
    Ferry__Value *v = build_alloc(a, sizeof *v);
    if (!v)
        return NULL;
    ferry__value__init(v);
    const uint8_t *end = p + len;
    wire_field f;
    while (p < end && next_field(&p, end, &f)) {
        switch (f.tag) {
        case FERRY__VALUE__KIND_NIL:
            v->nil = varint_bool(&f);
            break;
        case FERRY__VALUE__KIND_BOOLEAN:
            v->boolean = varint_bool(&f);
            break;
        case FERRY__VALUE__KIND_INTEGER:
            v->integer = (int64_t)(f.value >> 1) ^ -(int64_t)(f.value & 1);
            break;
        case FERRY__VALUE__KIND_NUMBER:
            memcpy(&v->number, f.data, sizeof v->number);
            break;
        case FERRY__VALUE__KIND_STRING:
            if (!build_bytes(a, &f, &v->string))
                return NULL;
            break;
        case FERRY__VALUE__KIND_TABLE:
            if (!(v->table = build_table(a, f.data, f.len)))
                return NULL;
            break;
        default:
            continue;
        }
        v->kind_case = (Ferry__Value__KindCase)f.tag;
    }
    return v;
}

static Ferry__Command *build_command(decode_arena *a, const uint8_t *p, size_t len)
{
    Ferry__Command *c = build_alloc(a, sizeof *c);
    if (!c)
        return NULL;
    ferry__command__init(c);
    if (!build_array(a, count_field(p, len, 4), (void ***)&c->args))
        return NULL;
    const uint8_t *end = p + len;
    wire_field f;
    while (p < end && next_field(&p, end, &f)) {
        int ok = 1;
        switch (f.tag) {
        case 1:
            ok = build_bytes(a, &f, &c->engine_id);
            break;
        case 2:
            c->call_id = f.value;
            break;
        case 3:
            ok = build_string(a, &f, &c->function);
            break;
        case 4:
            ok = (c->args[c->n_args++] = build_value(a, f.data, f.len)) != NULL;
            break;
        case 5:
            c->timeout_ms = (uint32_t)f.value;
            break;
        default:
            break;
        }
        if (!ok)
            return NULL;
    }
    return c;
}

static Ferry__Error *build_error(decode_arena *a, const uint8_t *p, size_t len)
{
    Ferry__Error *e = build_alloc(a, sizeof *e);
    if (!e)
        return NULL;
    ferry__error__init(e);
    const uint8_t *end = p + len;
    wire_field f;
    while (p < end && next_field(&p, end, &f)) {
        if ((f.tag == 1 && !build_string(a, &f, &e->code)) ||
            (f.tag == 2 && !build_string(a, &f, &e->message)))
            return NULL;
    }
    return e;
}

static Ferry__Reply *build_reply(decode_arena *a, const uint8_t *p, size_t len)
{
    Ferry__Reply *r = build_alloc(a, sizeof *r);
    if (!r)
        return NULL;
    ferry__reply__init(r);
    if (!build_array(a, count_field(p, len, 3), (void ***)&r->values))
        return NULL;
    const uint8_t *end = p + len;
    wire_field f;
    while (p < end && next_field(&p, end, &f)) {
        int ok = 1;
        switch (f.tag) {
        case 1:
            ok = build_bytes(a, &f, &r->engine_id);
            break;
        case 2:
            r->call_id = f.value;
            break;
        case 3:
            ok = (r->values[r->n_values++] = build_value(a, f.data, f.len)) != NULL;
            break;
        case 4:
            ok = (r->error = build_error(a, f.data, f.len)) != NULL;
            break;
        default:
            break;
        }
        if (!ok)
            return NULL;
    }
    return r;
}

ferry_err ferry_envelope_decode(const void *data, size_t len, Ferry__Envelope **out)
{
    *out = NULL;
    /* The check first: it refuses what protobuf-c would, and too deep nesting. */
    const uint8_t *p = data, *end = p + len;
    uint32_t version = 0, body = FERRY__ENVELOPE__BODY__NOT_SET;
    const uint8_t *body_data = NULL;
    size_t body_len = 0;
    int plain = 1;
    while (p < end) {
        wire_field f;
        if (!next_field(&p, end, &f))
            return FERRY_EPROTO;
        const ProtobufCFieldDescriptor *fd = field_of(&ferry__envelope__descriptor, f.tag);
        if (!fd) {
            plain = 0;
            continue;
        }
        if (!wire_fits(fd, f.wire))
            return FERRY_EPROTO;
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) {
            version = (uint32_t)f.value;
            continue;
        }
        if (!message_ok(fd->descriptor, f.data, f.len, 1, NULL, &plain))
            return FERRY_EPROTO;
        body = f.tag;
        body_data = f.data;
        body_len = f.len;
    }
    if (version != FERRY_PROTOCOL_VERSION)
        return FERRY_EVERSION;
    if (body == FERRY__ENVELOPE__BODY__NOT_SET)
        return FERRY_EPROTO;
    decode_arena *a = arena_new(len);
    if (!a)
        return FERRY_ENOMEM;
    Ferry__Envelope *env;
    if (plain && (body == FERRY__ENVELOPE__BODY_COMMAND || body == FERRY__ENVELOPE__BODY_REPLY)) {
        env = build_alloc(a, sizeof *env);
        if (env) {
            ferry__envelope__init(env);
            env->version = version;
            env->body_case = (Ferry__Envelope__BodyCase)body;
            if (body == FERRY__ENVELOPE__BODY_COMMAND) {
                if (!(env->command = build_command(a, body_data, body_len)))
                    env = NULL;
            } else if (!(env->reply = build_reply(a, body_data, body_len))) {
                env = NULL;
            }
        }
    } else {
        env = ferry__envelope__unpack(&a->allocator, len, data);
    }
    if (!env) { /* checked already: only memory can be missing */
        arena_free(a);
        return FERRY_ENOMEM;
    }
    /* The envelope is the arena's first allocation: ferry_envelope_free finds
     * the arena from it. */
    assert((uint8_t *)env == (uint8_t *)a + ARENA_HEADER);
    *out = env;
    return FERRY_OK;
}

/* ---- packing ---- */

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
    if (env->base.n_unknown_fields)
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

/* 1 when v and everything in it can be packed by hand. */
static int value_plain(const Ferry__Value *v)
{
    if (v->base.n_unknown_fields)
        return 0;
    if (v->kind_case != FERRY__VALUE__KIND_TABLE || !v->table)
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
        *p++ = 1 << 3;
        *p++ = v->nil ? 1 : 0;
        return p;
    case FERRY__VALUE__KIND_BOOLEAN:
        *p++ = 2 << 3;
        *p++ = v->boolean ? 1 : 0;
        return p;
    case FERRY__VALUE__KIND_INTEGER:
        return put_uint(p, 3, ((uint64_t)v->integer << 1) ^ (uint64_t)(v->integer >> 63));
    case FERRY__VALUE__KIND_NUMBER:
        *p++ = 4 << 3 | 1;
        memcpy(p, &v->number, 8);
        return p + 8;
    case FERRY__VALUE__KIND_STRING:
        return put_delimited(p, 5, v->string.data, v->string.len);
    case FERRY__VALUE__KIND_TABLE: {
        const Ferry__Table *t = v->table;
        if (!t)
            return p;
        *p++ = 6 << 3 | 2;
        p = put_varint(p, table_size(t));
        for (size_t i = 0; i < t->n_array; i++)
            p = put_value_field(p, 1, t->array[i]);
        for (size_t i = 0; i < t->n_hash; i++) {
            const Ferry__Pair *pair = t->hash[i];
            size_t n = 0;
            if (pair->key)
                n += delimited_size(value_size(pair->key));
            if (pair->value)
                n += delimited_size(value_size(pair->value));
            *p++ = 2 << 3 | 2;
            p = put_varint(p, n);
            if (pair->key)
                p = put_value_field(p, 1, pair->key);
            if (pair->value)
                p = put_value_field(p, 2, pair->value);
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
        size += delimited_size(any_value_size(v[i]));
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
        if (value_plain(v[i])) {
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
    if (!hand_packed(env))
        return ferry__envelope__pack(env, out);
    uint8_t *p = out;
    if (env->version)
        p = put_uint(p, 1, env->version);
    *p++ = (uint8_t)((unsigned)env->body_case << 3 | 2);
    p = put_varint(p, call_body_size(env));
    if (env->body_case == FERRY__ENVELOPE__BODY_COMMAND) {
        const Ferry__Command *c = env->command;
        if (c->engine_id.len)
            p = put_delimited(p, 1, c->engine_id.data, c->engine_id.len);
        if (c->call_id)
            p = put_uint(p, 2, c->call_id);
        if (c->function && c->function[0])
            p = put_delimited(p, 3, c->function, strlen(c->function));
        p = put_values(p, 4, c->args, c->n_args);
        if (c->timeout_ms)
            p = put_uint(p, 5, c->timeout_ms);
    } else {
        const Ferry__Reply *r = env->reply;
        if (r->engine_id.len)
            p = put_delimited(p, 1, r->engine_id.data, r->engine_id.len);
        if (r->call_id)
            p = put_uint(p, 2, r->call_id);
        p = put_values(p, 3, r->values, r->n_values);
        if (r->error) {
            *p++ = 4 << 3 | 2;
            p = put_varint(p, ferry__error__get_packed_size(r->error));
            p += ferry__error__pack(r->error, p);
        }
    }
    return (size_t)(p - out);
}

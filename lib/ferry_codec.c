/*
 * ferry_codec: envelopes to bytes and back.
 *
 * Decoding builds Commands, Replies and their Values straight into one arena
 * block, checking them on the way in one pass; anything unusual or
 * malformed takes the checked path (a full walk for framing, nesting depth
 * and field numbers, then the same build or protobuf-c). The broker's peek
 * reads what it routes on from the top level of a Command or Reply alone,
 * leaving the values to the endpoints' decode. Packing writes Commands,
 * Replies and Values by hand, byte for byte what protobuf-c writes
 * (tests/unit/lib_wire_test.c).
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
    size_t first;        /* size of the first block, after the header */
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

/* The common case of arena_alloc, inline for the builder: size bytes from
 * the current block, or NULL when they do not fit there (or size is 0, or
 * rounding it up overflows). */
static inline void *arena_take(decode_arena *a, size_t size)
{
    size_t n = round_up(size);
    if (size && n >= size && (size_t)(a->end - a->cur) >= n) {
        void *p = a->cur;
        a->cur += n;
        return p;
    }
    return NULL;
}

static void *arena_alloc(void *data, size_t size)
{
    decode_arena *a = data;
    void *fits = arena_take(a, size);
    if (fits)
        return fits;
    size_t n = round_up(size ? size : 1);
    if (n < size) /* overflow */
        return NULL;
    if ((size_t)(a->end - a->cur) >= n) { /* size 0 */
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

/* Arenas of small messages (most Commands and Replies) have one size and are
 * kept for reuse when freed: a malloc/free pair per message less. Per thread,
 * as the library may be. */
#define ARENA_SMALL 640 /* first block of a message up to (640 - 256) / 4 = 96 bytes */
#define ARENA_CACHE 8
static _Thread_local decode_arena *arena_cache[ARENA_CACHE];
static _Thread_local int arena_cached;

static decode_arena *arena_new(size_t input_len)
{
    /* A decoded message takes a few times its wire size (a 2-byte Value is
     * a 48-byte struct plus its pointer). */
    size_t first = input_len < (ARENA_FIRST_MAX - 256) / 4 ? 256 + 4 * input_len : ARENA_FIRST_MAX;
    decode_arena *a;
    if (first <= ARENA_SMALL) {
        first = ARENA_SMALL;
        a = arena_cached ? arena_cache[--arena_cached] : malloc(ARENA_HEADER + first);
    } else {
        a = malloc(ARENA_HEADER + first);
    }
    if (!a)
        return NULL;
    a->magic = ARENA_MAGIC;
    a->blocks = NULL;
    a->cur = (uint8_t *)a + ARENA_HEADER;
    a->end = a->cur + first;
    a->first = first;
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
    if (a->first == ARENA_SMALL && arena_cached < ARENA_CACHE)
        arena_cache[arena_cached++] = a;
    else
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
    const uint8_t *q = *p;
    if (q < end && q[0] < 0x80) {
        *out = q[0];
        *p = q + 1;
        return 1;
    }
    /* Two and three bytes (call ids, lengths past 127) without the loop. */
    if (end - q >= 2 && q[1] < 0x80) {
        *out = (uint64_t)(q[0] & 0x7F) | (uint64_t)q[1] << 7;
        *p = q + 2;
        return 1;
    }
    if (end - q >= 3 && q[2] < 0x80) {
        *out = (uint64_t)(q[0] & 0x7F) | (uint64_t)(q[1] & 0x7F) << 7 | (uint64_t)q[2] << 14;
        *p = q + 3;
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

/* The length of a function name up to its first zero byte (what a decoder's
 * C string holds). Names are short: a loop, no call to memchr. */
static inline size_t name_len(const uint8_t *p, size_t n)
{
    size_t k = 0;
    while (k < n && p[k])
        k++;
    return k;
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
            rec->function_len = name_len(f->data, f->len);
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
 * fields are skipped, as protobuf-c keeps them. *plain is cleared when the
 * message holds anything decode_call does not build the way protobuf-c would:
 * unknown fields, a bool not sent as a varint, a singular submessage given
 * twice (protobuf-c merges those).
 */
static int message_ok(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                      int depth, int *plain);

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
                !message_ok(&ferry__table__descriptor, f.data, f.len, depth + 1, plain))
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
                      int depth, int *plain)
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
            if (!message_ok(fd->descriptor, f.data, f.len, depth + 1, plain))
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
    }
    return 1;
}

/* The wire type of each field of a Command and of a Reply by number, -1 for
 * none: what wire_fits says of their descriptors, as a table because the peek
 * runs for every call twice (lib_wire_test holds it to protobuf-c). */
static const int8_t command_wires[] = {-1, 2, 0, 2, 2, 0};
static const int8_t reply_wires[] = {-1, 2, 0, 2, 2};

/* A length prefix at *p (at most 5 bytes) that fits before end: the payload's
 * start in *p and its length in *n. 0 when malformed. */
static inline __attribute__((always_inline)) int read_length(const uint8_t **p,
                                                             const uint8_t *end, uint64_t *n)
{
    return read_varint_max(p, end, 5, n) && *n <= (uint64_t)(end - *p);
}

/*
 * Reads the routing fields of a Command or Reply body (rec->body), its top
 * level only: framing and the wire types of its known fields are checked,
 * submessages (args, values, error) are skipped unread. 0 when malformed.
 * The one-byte keys Ferry's fields have are read directly (the peek runs
 * twice per call in the broker); any other key takes next_field.
 */
static int peek_body(const uint8_t *p, size_t len, ferry_wire_call *rec)
{
    int command = rec->body == FERRY__ENVELOPE__BODY_COMMAND;
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t n;
        switch (*p) {
        case 1 << 3 | 2: /* engine_id */
            p++;
            if (!read_length(&p, end, &n))
                return 0;
            rec->engine_id = n ? p : NULL;
            rec->engine_id_len = (size_t)n;
            p += n;
            continue;
        case 2 << 3 | 0: /* call_id */
            p++;
            if (!read_varint_max(&p, end, 10, &rec->call_id))
                return 0;
            continue;
        case 3 << 3 | 2: /* Command.function, Reply.values */
        case 4 << 3 | 2: /* Command.args, Reply.error */
            if (*p++ == (3 << 3 | 2)) {
                if (!read_length(&p, end, &n))
                    return 0;
                if (command) {
                    rec->function_len = name_len(p, (size_t)n);
                    rec->function = rec->function_len ? (const char *)p : NULL;
                }
            } else {
                if (!read_length(&p, end, &n))
                    return 0;
                if (!command)
                    rec->has_error = 1; /* present; protobuf-c merges repeats */
            }
            p += n;
            continue;
        case 5 << 3 | 0: /* Command.timeout_ms */
            if (!command)
                break;
            p++;
            if (!read_varint_max(&p, end, 10, &n))
                return 0;
            rec->timeout_ms = (uint32_t)n;
            continue;
        default:
            break;
        }
        wire_field f;
        if (!next_field(&p, end, &f))
            return 0;
        const int8_t *wires = command ? command_wires : reply_wires;
        uint32_t nwires = command ? sizeof command_wires : sizeof reply_wires;
        if (f.tag >= nwires) /* unknown: skipped, as protobuf-c keeps it */
            continue;
        if (f.wire != wires[f.tag])
            return 0;
        record(rec, &f);
    }
    return 1;
}

ferry_err ferry_wire_peek_call(const void *data, size_t len, ferry_wire_call *out)
{
    memset(out, 0, sizeof *out);
    const uint8_t *p = data, *end = p + len;
    uint64_t version = 0;
    const uint8_t *body_data = NULL;
    uint64_t body_len = 0;
    while (p < end) {
        if (*p == (1 << 3 | 0)) { /* version, the only scalar */
            p++;
            if (!read_varint_max(&p, end, 10, &version))
                return FERRY_EPROTO;
            continue;
        }
        if ((*p & 7) == 2 && (*p >> 3) >= FERRY__ENVELOPE__BODY_HELLO &&
            (*p >> 3) <= FERRY__ENVELOPE__BODY_GOODBYE) {
            /* A oneof member replaces whichever was set before, whole. */
            out->body = (Ferry__Envelope__BodyCase)(*p++ >> 3);
            if (!read_length(&p, end, &body_len))
                return FERRY_EPROTO;
            body_data = p;
            p += body_len;
            continue;
        }
        wire_field f;
        if (!next_field(&p, end, &f))
            return FERRY_EPROTO;
        const ProtobufCFieldDescriptor *fd = field_of(&ferry__envelope__descriptor, f.tag);
        if (!fd)
            continue;
        if (!wire_fits(fd, f.wire))
            return FERRY_EPROTO;
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) {
            version = f.value;
            continue;
        }
        out->body = (Ferry__Envelope__BodyCase)f.tag;
        body_data = f.data;
        body_len = f.len;
    }
    if ((uint32_t)version != FERRY_PROTOCOL_VERSION) {
        memset(out, 0, sizeof *out);
        return FERRY_EVERSION;
    }
    if (out->body == FERRY__ENVELOPE__BODY_COMMAND || out->body == FERRY__ENVELOPE__BODY_REPLY) {
        if (!peek_body(body_data, (size_t)body_len, out)) {
            memset(out, 0, sizeof *out);
            return FERRY_EPROTO;
        }
    }
    if (out->body == FERRY__ENVELOPE__BODY__NOT_SET)
        return FERRY_EPROTO;
    return FERRY_OK;
}

/* ---- decoding ---- */

/*
 * Commands and Replies (and the Values in them) are built here straight from
 * the bytes into the arena, checked on the way in one pass: protobuf-c's
 * generic unpack scans every message twice and looks each field up in its
 * descriptor. The result is what protobuf-c builds (initialised by the
 * generated _init, so absent strings are "" and absent bytes empty; later
 * scalars replace earlier ones; a later oneof member replaces the earlier
 * one). The build gives up (b->unusual) on anything it does not build the
 * way protobuf-c would, and on anything malformed: unknown fields, a bool
 * not sent as a varint, a singular submessage given twice (protobuf-c merges
 * those), a wrong wire type, bad framing, nesting past FERRY_MAX_NESTING.
 * ferry_envelope_decode then starts again on the checked path (message_ok,
 * then this build or protobuf-c), which gives the precise verdict.
 */

typedef struct {
    decode_arena *a;
    int unusual; /* gave up: not built the way protobuf-c would, or malformed */
} builder;

static inline void *build_alloc(builder *b, size_t size)
{
    void *p = arena_take(b->a, size); /* inline: the builder allocates a lot */
    return p ? p : arena_alloc(b->a, size);
}

static void *give_up(builder *b)
{
    b->unusual = 1;
    return NULL;
}

/* A bool as protobuf-c reads it: any payload bit set among the varint's bytes. */
static protobuf_c_boolean varint_bool(const wire_field *f)
{
    for (size_t i = 0; i < f->len; i++)
        if (f->data[i] & 0x7f)
            return 1;
    return 0;
}

static inline int copy_bytes(builder *b, const uint8_t *data, size_t len,
                             ProtobufCBinaryData *out)
{
    out->len = len;
    out->data = NULL;
    if (len) {
        if (!(out->data = build_alloc(b, len)))
            return 0;
        memcpy(out->data, data, len);
    }
    return 1;
}

static inline int copy_string(builder *b, const uint8_t *data, size_t len, char **out)
{
    char *s = build_alloc(b, len + 1);
    if (!s)
        return 0;
    memcpy(s, data, len);
    s[len] = '\0';
    *out = s;
    return 1;
}

static int build_bytes(builder *b, const wire_field *f, ProtobufCBinaryData *out)
{
    if (f->wire != 2)
        return give_up(b), 0;
    return copy_bytes(b, f->data, f->len, out);
}

static int build_string(builder *b, const wire_field *f, char **out)
{
    if (f->wire != 2)
        return give_up(b), 0;
    return copy_string(b, f->data, f->len, out);
}

static Ferry__Value *build_value(builder *b, const wire_field *at, int depth);

/* Counts the fields numbered 1 and 2 in the message at p (framing is checked
 * by the build that follows). */
static void count_fields(const uint8_t *p, size_t len, size_t *n1, size_t *n2)
{
    const uint8_t *end = p + len;
    wire_field f;
    *n1 = *n2 = 0;
    while (p < end && next_field(&p, end, &f)) {
        *n1 += f.tag == 1;
        *n2 += f.tag == 2;
    }
}

/* Allocates the array of a repeated message field of n elements (NULL for none). */
static int build_array(builder *b, size_t n, void ***out)
{
    *out = NULL;
    if (n == 0)
        return 1;
    *out = build_alloc(b, n * sizeof(void *));
    return *out != NULL;
}

/* The message of field at: wire type 2, within the nesting limit. */
static int nested_ok(builder *b, const wire_field *at, int depth)
{
    if (at->wire != 2 || depth > FERRY_MAX_NESTING)
        return give_up(b), 0;
    return 1;
}

static Ferry__Pair *build_pair(builder *b, const wire_field *at, int depth)
{
    if (!nested_ok(b, at, depth))
        return NULL;
    Ferry__Pair *pair = build_alloc(b, sizeof *pair);
    if (!pair)
        return NULL;
    ferry__pair__init(pair);
    const uint8_t *p = at->data, *end = p + at->len;
    wire_field f;
    while (p < end) {
        if (!next_field(&p, end, &f))
            return give_up(b);
        Ferry__Value **slot = f.tag == 1 ? &pair->key : f.tag == 2 ? &pair->value : NULL;
        if (!slot || *slot) /* unknown, or given twice (merged by protobuf-c) */
            return give_up(b);
        if (!(*slot = build_value(b, &f, depth + 1)))
            return NULL;
    }
    return pair;
}

static Ferry__Table *build_table(builder *b, const wire_field *at, int depth)
{
    if (!nested_ok(b, at, depth))
        return NULL;
    Ferry__Table *t = build_alloc(b, sizeof *t);
    if (!t)
        return NULL;
    ferry__table__init(t);
    const uint8_t *p = at->data, *end = p + at->len;
    size_t narray, nhash;
    count_fields(p, at->len, &narray, &nhash);
    if (!build_array(b, narray, (void ***)&t->array) || !build_array(b, nhash, (void ***)&t->hash))
        return NULL;
    wire_field f;
    while (p < end) {
        if (!next_field(&p, end, &f))
            return give_up(b);
        if (f.tag == 1) {
            if (!(t->array[t->n_array++] = build_value(b, &f, depth + 1)))
                return NULL;
        } else if (f.tag == 2) {
            if (!(t->hash[t->n_hash++] = build_pair(b, &f, depth + 1)))
                return NULL;
        } else {
            return give_up(b);
        }
    }
    return t;
}

static Ferry__Value *build_value(builder *b, const wire_field *at, int depth)
{
    if (!nested_ok(b, at, depth))
        return NULL;
    Ferry__Value *v = build_alloc(b, sizeof *v);
    if (!v)
        return NULL;
    *v = (Ferry__Value)FERRY__VALUE__INIT;
    const uint8_t *p = at->data, *end = p + at->len;
    wire_field f;
    while (p < end) {
        /* The keys values are written with, read directly; the rest below. */
        uint64_t n;
        switch (*p) {
        case FERRY__VALUE__KIND_INTEGER << 3 | 0:
            p++;
            if (!read_varint_max(&p, end, 10, &n))
                return give_up(b);
            v->integer = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
            v->kind_case = FERRY__VALUE__KIND_INTEGER;
            continue;
        case FERRY__VALUE__KIND_NUMBER << 3 | 1:
            if (end - p < 9)
                return give_up(b);
            memcpy(&v->number, p + 1, sizeof v->number);
            p += 9;
            v->kind_case = FERRY__VALUE__KIND_NUMBER;
            continue;
        case FERRY__VALUE__KIND_STRING << 3 | 2:
            p++;
            if (!read_length(&p, end, &n))
                return give_up(b);
            if (!copy_bytes(b, p, (size_t)n, &v->string))
                return NULL;
            p += n;
            v->kind_case = FERRY__VALUE__KIND_STRING;
            continue;
        default:
            break;
        }
        if (!next_field(&p, end, &f))
            return give_up(b);
        switch (f.tag) {
        case FERRY__VALUE__KIND_NIL:
            if (f.wire != 0)
                return give_up(b);
            v->nil = varint_bool(&f);
            break;
        case FERRY__VALUE__KIND_BOOLEAN:
            if (f.wire != 0)
                return give_up(b);
            v->boolean = varint_bool(&f);
            break;
        case FERRY__VALUE__KIND_INTEGER:
            if (f.wire != 0)
                return give_up(b);
            v->integer = (int64_t)(f.value >> 1) ^ -(int64_t)(f.value & 1);
            break;
        case FERRY__VALUE__KIND_NUMBER:
            if (f.wire != 1)
                return give_up(b);
            memcpy(&v->number, f.data, sizeof v->number);
            break;
        case FERRY__VALUE__KIND_STRING:
            if (!build_bytes(b, &f, &v->string))
                return NULL;
            break;
        case FERRY__VALUE__KIND_TABLE:
            if (!(v->table = build_table(b, &f, depth + 1)))
                return NULL;
            break;
        default:
            return give_up(b);
        }
        v->kind_case = (Ferry__Value__KindCase)f.tag;
    }
    return v;
}

/* A scalar varint field (call_id, timeout_ms). */
static int varint_ok(builder *b, const wire_field *f)
{
    return f->wire == 0 ? 1 : (give_up(b), 0);
}

/*
 * The Values of a Command's args or a Reply's values (field tag) go into an
 * array of the right length. The fields met on the first pass are kept
 * (up to STASH of them) so that the values are built without reading the
 * message again; past STASH the message is read once more.
 */
#define STASH 16

typedef struct {
    wire_field at[STASH];
    size_t n;     /* fields kept */
    size_t total; /* fields met */
} stash;

static int build_values(builder *b, const stash *st, const uint8_t *p, size_t len, uint32_t tag,
                        Ferry__Value ***out, size_t *n)
{
    if (!build_array(b, st->total, (void ***)out))
        return 0;
    if (st->total <= STASH) {
        for (size_t i = 0; i < st->n; i++)
            if (!((*out)[(*n)++] = build_value(b, &st->at[i], 2)))
                return 0;
        return 1;
    }
    const uint8_t *end = p + len;
    wire_field f;
    while (p < end && next_field(&p, end, &f)) /* framed: the first pass checked it */
        if (f.tag == tag && !((*out)[(*n)++] = build_value(b, &f, 2)))
            return 0;
    return 1;
}

static void keep(stash *st, const wire_field *f)
{
    if (st->n < STASH)
        st->at[st->n++] = *f;
    st->total++;
}

/*
 * The fields a Command and a Reply share, when their one-byte key is at *q:
 * engine_id (1) and call_id (2). 1 when read (q moves past it), 0 when the
 * key is another, -1 when it does not decode (the build gave up) or memory
 * ran out.
 */
static inline __attribute__((always_inline)) int
routing_field(builder *b, const uint8_t **q, const uint8_t *end, ProtobufCBinaryData *engine_id,
              uint64_t *call_id)
{
    uint64_t n;
    switch (**q) {
    case 1 << 3 | 2:
        (*q)++;
        if (!read_length(q, end, &n))
            return give_up(b), -1;
        if (!copy_bytes(b, *q, (size_t)n, engine_id))
            return -1;
        *q += n;
        return 1;
    case 2 << 3 | 0:
        (*q)++;
        if (!read_varint_max(q, end, 10, call_id))
            return give_up(b), -1;
        return 1;
    default:
        return 0;
    }
}

/* routing_field for a field next_field read (any key): 1 when f is
 * engine_id or call_id and was read, 0 when it is another, -1 as there. */
static int routing_wire_field(builder *b, const wire_field *f, ProtobufCBinaryData *engine_id,
                              uint64_t *call_id)
{
    if (f->tag == 1)
        return build_bytes(b, f, engine_id) ? 1 : -1;
    if (f->tag != 2)
        return 0;
    if (!varint_ok(b, f))
        return -1;
    *call_id = f->value;
    return 1;
}

/* Keeps the Value field (number tag) whose one-byte key is at *q for
 * build_values; q moves past it. 0 when it does not decode. */
static inline __attribute__((always_inline)) int
keep_value(builder *b, stash *st, uint32_t tag, const uint8_t **q, const uint8_t *end)
{
    uint64_t n;
    (*q)++;
    if (!read_length(q, end, &n))
        return give_up(b), 0;
    wire_field f = {.tag = tag, .wire = 2, .data = *q, .len = (size_t)n};
    keep(st, &f);
    *q += n;
    return 1;
}

static Ferry__Command *build_command(builder *b, const uint8_t *p, size_t len)
{
    Ferry__Command *c = build_alloc(b, sizeof *c);
    if (!c)
        return NULL;
    *c = (Ferry__Command)FERRY__COMMAND__INIT;
    stash args; /* not zeroed: 500 bytes, of which n and total count */
    args.n = args.total = 0;
    const uint8_t *q = p, *end = p + len;
    wire_field f;
    while (q < end) {
        /* The keys Ferry writes, read directly; anything else below. */
        int routing = routing_field(b, &q, end, &c->engine_id, &c->call_id);
        if (routing < 0)
            return NULL;
        if (routing)
            continue;
        uint64_t n;
        switch (*q) {
        case 3 << 3 | 2: /* function */
            q++;
            if (!read_length(&q, end, &n))
                return give_up(b);
            if (!copy_string(b, q, (size_t)n, &c->function))
                return NULL;
            q += n;
            continue;
        case 4 << 3 | 2: /* args */
            if (!keep_value(b, &args, 4, &q, end))
                return NULL;
            continue;
        case 5 << 3 | 0: /* timeout_ms */
            q++;
            if (!read_varint_max(&q, end, 10, &n))
                return give_up(b);
            c->timeout_ms = (uint32_t)n;
            continue;
        default:
            break;
        }
        if (!next_field(&q, end, &f))
            return give_up(b);
        if ((routing = routing_wire_field(b, &f, &c->engine_id, &c->call_id)) != 0) {
            if (routing < 0)
                return NULL;
            continue;
        }
        int ok = 1;
        switch (f.tag) {
        case 3:
            ok = build_string(b, &f, &c->function);
            break;
        case 4:
            keep(&args, &f);
            break;
        case 5:
            if ((ok = varint_ok(b, &f)))
                c->timeout_ms = (uint32_t)f.value;
            break;
        default:
            return give_up(b);
        }
        if (!ok)
            return NULL;
    }
    if (!build_values(b, &args, p, len, 4, &c->args, &c->n_args))
        return NULL;
    return c;
}

static Ferry__Error *build_error(builder *b, const wire_field *at)
{
    if (!nested_ok(b, at, 2))
        return NULL;
    Ferry__Error *e = build_alloc(b, sizeof *e);
    if (!e)
        return NULL;
    ferry__error__init(e);
    const uint8_t *p = at->data, *end = p + at->len;
    wire_field f;
    while (p < end) {
        if (!next_field(&p, end, &f))
            return give_up(b);
        if (f.tag == 1) {
            if (!build_string(b, &f, &e->code))
                return NULL;
        } else if (f.tag == 2) {
            if (!build_string(b, &f, &e->message))
                return NULL;
        } else {
            return give_up(b);
        }
    }
    return e;
}

static Ferry__Reply *build_reply(builder *b, const uint8_t *p, size_t len)
{
    Ferry__Reply *r = build_alloc(b, sizeof *r);
    if (!r)
        return NULL;
    *r = (Ferry__Reply)FERRY__REPLY__INIT;
    stash values;
    values.n = values.total = 0;
    const uint8_t *q = p, *end = p + len;
    wire_field f;
    while (q < end) {
        /* The keys Ferry writes, read directly; anything else below. */
        int routing = routing_field(b, &q, end, &r->engine_id, &r->call_id);
        if (routing < 0)
            return NULL;
        if (routing)
            continue;
        switch (*q) {
        case 3 << 3 | 2: /* values */
            if (!keep_value(b, &values, 3, &q, end))
                return NULL;
            continue;
        default:
            break;
        }
        if (!next_field(&q, end, &f))
            return give_up(b);
        if ((routing = routing_wire_field(b, &f, &r->engine_id, &r->call_id)) != 0) {
            if (routing < 0)
                return NULL;
            continue;
        }
        int ok = 1;
        switch (f.tag) {
        case 3:
            keep(&values, &f);
            break;
        case 4:
            if (r->error) /* given twice: protobuf-c merges the two */
                return give_up(b);
            ok = (r->error = build_error(b, &f)) != NULL;
            break;
        default:
            return give_up(b);
        }
        if (!ok)
            return NULL;
    }
    if (!build_values(b, &values, p, len, 3, &r->values, &r->n_values))
        return NULL;
    return r;
}

/* Builds the Command or Reply body (of kind body) of an envelope into a new
 * arena: FERRY_OK with *out; FERRY_EPROTO with *unusual set when the build
 * gave up (the arena is freed: the caller takes the checked path);
 * FERRY_ENOMEM. */
static ferry_err build_envelope(size_t len, uint32_t version, uint32_t body,
                                const uint8_t *body_data, size_t body_len, int *unusual,
                                Ferry__Envelope **out)
{
    builder b = {.a = arena_new(len)};
    if (!b.a)
        return FERRY_ENOMEM;
    Ferry__Envelope *env = build_alloc(&b, sizeof *env);
    if (env) {
        *env = (Ferry__Envelope)FERRY__ENVELOPE__INIT;
        env->version = version;
        env->body_case = (Ferry__Envelope__BodyCase)body;
        if (body == FERRY__ENVELOPE__BODY_COMMAND) {
            if (!(env->command = build_command(&b, body_data, body_len)))
                env = NULL;
        } else if (!(env->reply = build_reply(&b, body_data, body_len))) {
            env = NULL;
        }
    }
    if (!env) {
        arena_free(b.a);
        *unusual = b.unusual;
        return b.unusual ? FERRY_EPROTO : FERRY_ENOMEM;
    }
    /* The envelope is the arena's first allocation: ferry_envelope_free finds
     * the arena from it. */
    assert((uint8_t *)env == (uint8_t *)b.a + ARENA_HEADER);
    *out = env;
    return FERRY_OK;
}

/* The checked path: message_ok on every body, then the build or protobuf-c. */
static ferry_err decode_checked(const void *data, size_t len, Ferry__Envelope **out)
{
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
        if (!message_ok(fd->descriptor, f.data, f.len, 1, &plain))
            return FERRY_EPROTO;
        body = f.tag;
        body_data = f.data;
        body_len = f.len;
    }
    if (version != FERRY_PROTOCOL_VERSION)
        return FERRY_EVERSION;
    if (body == FERRY__ENVELOPE__BODY__NOT_SET)
        return FERRY_EPROTO;
    if (plain && (body == FERRY__ENVELOPE__BODY_COMMAND || body == FERRY__ENVELOPE__BODY_REPLY)) {
        /* Checked and plain: the build cannot give up, only run out of memory. */
        int unusual = 0;
        ferry_err err = build_envelope(len, version, body, body_data, body_len, &unusual, out);
        assert(!unusual);
        return err == FERRY_OK ? FERRY_OK : FERRY_ENOMEM;
    }
    decode_arena *a = arena_new(len);
    if (!a)
        return FERRY_ENOMEM;
    Ferry__Envelope *env = ferry__envelope__unpack(&a->allocator, len, data);
    if (!env) { /* checked already: only memory can be missing */
        arena_free(a);
        return FERRY_ENOMEM;
    }
    assert((uint8_t *)env == (uint8_t *)a + ARENA_HEADER);
    *out = env;
    return FERRY_OK;
}

ferry_err ferry_envelope_decode(const void *data, size_t len, Ferry__Envelope **out)
{
    *out = NULL;
    /* The usual envelope: version 1 and one Command or Reply, nothing else.
     * Built in one pass; anything else takes the checked path. */
    const uint8_t *p = data, *end = p + len;
    uint32_t version = 0, body = FERRY__ENVELOPE__BODY__NOT_SET;
    const uint8_t *body_data = NULL;
    size_t body_len = 0;
    int usual = 1, bodies = 0;
    while (p < end && usual) {
        uint64_t n = 0;
        if (*p == (1 << 3 | 0)) { /* version */
            p++;
            usual = read_varint_max(&p, end, 10, &n);
            version = (uint32_t)n;
        } else if (*p == (FERRY__ENVELOPE__BODY_COMMAND << 3 | 2) ||
                   *p == (FERRY__ENVELOPE__BODY_REPLY << 3 | 2)) {
            body = *p++ >> 3;
            usual = read_length(&p, end, &n);
            body_data = p;
            body_len = (size_t)n;
            p += usual ? n : 0;
            bodies++;
        } else {
            usual = 0;
        }
    }
    if (usual && bodies == 1 && version == FERRY_PROTOCOL_VERSION) {
        int unusual = 0;
        ferry_err err = build_envelope(len, version, body, body_data, body_len, &unusual, out);
        if (!unusual)
            return err;
    }
    return decode_checked(data, len, out);
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

/* A scalar value with no unknown fields: written here in one go, the common case. */
static inline int scalar_plain(const Ferry__Value *v)
{
    return v->kind_case != FERRY__VALUE__KIND_TABLE && !v->base.n_unknown_fields;
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
        p = put_uint(p, 1, env->version);
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

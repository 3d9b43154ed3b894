/*
 * codec_internal: what the files of the codec (ferry_codec.h) share, and
 * nothing else includes: the decoding arena and the reader of wire-format
 * fields.
 *
 * The readers check what protobuf-c's unpack checks (key and length prefixes
 * of at most 5 bytes, varints of at most 10, lengths within the data), so
 * that every path of the codec refuses what protobuf-c refuses.
 */
#ifndef CODEC_INTERNAL_H
#define CODEC_INTERNAL_H

#include "ferry_codec.h"

#include <stddef.h>
#include <stdint.h>

/* The descriptor of field number tag in desc, or NULL. Ferry's messages number
 * their fields 1..n in order (Stats then 20..), so the index is tried first. */
static inline const ProtobufCFieldDescriptor *codec_field_of(const ProtobufCMessageDescriptor *desc,
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
#define ARENA_FIRST_MAX 2048 /* largest first block, past the header */
#define ARENA_BLOCK 2048     /* size of a further block */
#define ARENA_OWN 512        /* an allocation this large gets a block of its own */

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
} codec_arena;

/* The first allocation (the Envelope itself) starts here, right after the header. */
#define ARENA_HEADER ((sizeof(codec_arena) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1))

static inline size_t codec_round_up(size_t n)
{
    return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

/* The common case of codec_arena_alloc, inline for the builder: size bytes from
 * the current block, or NULL when they do not fit there (or size is 0, or
 * rounding it up overflows). */
static inline void *codec_arena_take(codec_arena *a, size_t size)
{
    size_t n = codec_round_up(size);
    if (size && n >= size && (size_t)(a->end - a->cur) >= n) {
        void *p = a->cur;
        a->cur += n;
        return p;
    }
    return NULL;
}

/* codec_arena_take, or a new block when the current one is full (a
 * ProtobufCAllocator's alloc: data is the arena). NULL when out of memory. */
void *codec_arena_alloc(void *data, size_t size);

/* A new arena for a message of input_len wire bytes; NULL when out of memory.
 * Its first allocation must be the Envelope: ferry_envelope_free finds the
 * arena from it (at ARENA_HEADER before). */
codec_arena *codec_arena_new(size_t input_len);

/* Frees a (everything allocated from it goes too). */
void codec_arena_free(codec_arena *a);

/* ---- reading the wire format ---- */

/* One field as it is on the wire. */
typedef struct {
    uint32_t tag;
    int wire;
    uint64_t value;      /* wire type 0 */
    const uint8_t *data; /* the payload (after the length for wire type 2; the varint's
                          * bytes for 0) */
    size_t len;
} codec_wire_field;

/* Reads a varint of at most max bytes; 0 when it is malformed or runs past end. */
static inline __attribute__((always_inline)) int
codec_read_varint(const uint8_t **p, const uint8_t *end, int max, uint64_t *out)
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
static inline __attribute__((always_inline)) int
codec_next_field(const uint8_t **p, const uint8_t *end, codec_wire_field *f)
{
    uint64_t key, n;
    f->value = 0;
    if (!codec_read_varint(p, end, 5, &key) || key >> 3 == 0)
        return 0;
    f->tag = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0:
        f->data = *p;
        if (!codec_read_varint(p, end, 10, &f->value))
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
        if (!codec_read_varint(p, end, 5, &n) || n > (uint64_t)(end - *p))
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
static inline int codec_wire_fits(const ProtobufCFieldDescriptor *fd, int wire)
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

/* A length prefix at *p (at most 5 bytes) that fits before end: the payload's
 * start in *p and its length in *n. 0 when malformed. */
static inline __attribute__((always_inline)) int codec_read_length(const uint8_t **p,
                                                                   const uint8_t *end, uint64_t *n)
{
    return codec_read_varint(p, end, 5, n) && *n <= (uint64_t)(end - *p);
}

#endif

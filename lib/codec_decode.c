/*
 * codec_decode: ferry_envelope_decode.
 *
 * Commands, Replies and their Values are built straight into one arena
 * block (codec_arena.c), checked on the way in one pass; anything unusual
 * or malformed takes the checked path (a full walk for framing, nesting
 * depth and field numbers, then the same build or protobuf-c's unpack).
 * The build knows the fields of the table (codec_fields.h) and nothing else:
 * whatever else arrives (a field number or Value kind the table lacks, a
 * wire type it does not expect) is unpacked by protobuf-c into the same
 * arena, so it is never dropped nor refused where protobuf-c takes it; while
 * the table and the schema disagree (codec_fast) protobuf-c unpacks every
 * message. lib_codec_decode_test holds the result to protobuf-c's.
 */
#include "codec_fields.h"
#include "codec_internal.h"

#include <assert.h>
#include <string.h>

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
 * rules written out (what codec_wire_fits and the descriptor say of them). */
static int value_ok(const uint8_t *p, size_t len, int depth, int *plain)
{
    if (depth > FERRY_MAX_NESTING)
        return 0;
    const uint8_t *end = p + len;
    while (p < end) {
        codec_wire_field f;
        if (!codec_next_field(&p, end, &f))
            return 0;
        switch (f.tag) {
        case CODEC_NUM_value_nil: /* bools: any wire type */
        case CODEC_NUM_value_boolean:
            if (f.wire != CODEC_WIRE_BOOL)
                *plain = 0;
            break;
        case CODEC_NUM_value_integer:
            if (f.wire != CODEC_WIRE_SINT64)
                return 0;
            break;
        case CODEC_NUM_value_number:
            if (f.wire != CODEC_WIRE_DOUBLE)
                return 0;
            break;
        case CODEC_NUM_value_string:
            if (f.wire != CODEC_WIRE_BYTES)
                return 0;
            break;
        case CODEC_NUM_value_table: /* a oneof member: never merged */
            if (f.wire != CODEC_WIRE_MESSAGE ||
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
    /* value_ok writes out the Value rows of the table: only while they
     * agree with the schema. */
    if (desc == &ferry__value__descriptor && codec_fast())
        return value_ok(p, len, depth, plain);
    if (depth > FERRY_MAX_NESTING)
        return 0;
    const uint8_t *end = p + len;
    unsigned seen = 0; /* singular submessages met, by field index */
    while (p < end) {
        codec_wire_field f;
        if (!codec_next_field(&p, end, &f))
            return 0;
        const ProtobufCFieldDescriptor *fd = codec_field_of(desc, f.tag);
        if (!fd) {
            *plain = 0;
            continue;
        }
        if (!codec_wire_fits(fd, f.wire))
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
    codec_arena *a;
    int unusual; /* gave up: not built the way protobuf-c would, or malformed */
} builder;

static inline void *build_alloc(builder *b, size_t size)
{
    void *p = codec_arena_take(b->a, size); /* inline: the builder allocates a lot */
    return p ? p : codec_arena_alloc(b->a, size);
}

static void *give_up(builder *b)
{
    b->unusual = 1;
    return NULL;
}

/* A bool as protobuf-c reads it: any payload bit set among the varint's bytes. */
static protobuf_c_boolean varint_bool(const codec_wire_field *f)
{
    for (size_t i = 0; i < f->len; i++)
        if (f->data[i] & 0x7f)
            return 1;
    return 0;
}

static inline int copy_bytes(builder *b, const uint8_t *data, size_t len, ProtobufCBinaryData *out)
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

static int build_bytes(builder *b, const codec_wire_field *f, ProtobufCBinaryData *out)
{
    if (f->wire != 2)
        return give_up(b), 0;
    return copy_bytes(b, f->data, f->len, out);
}

static int build_string(builder *b, const codec_wire_field *f, char **out)
{
    if (f->wire != 2)
        return give_up(b), 0;
    return copy_string(b, f->data, f->len, out);
}

static Ferry__Value *build_value(builder *b, const codec_wire_field *at, int depth);

/* Counts the fields numbered 1 and 2 in the message at p (framing is checked
 * by the build that follows). */
static void count_fields(const uint8_t *p, size_t len, size_t *n1, size_t *n2)
{
    const uint8_t *end = p + len;
    codec_wire_field f;
    *n1 = *n2 = 0;
    while (p < end && codec_next_field(&p, end, &f)) {
        *n1 += f.tag == CODEC_NUM_table_array;
        *n2 += f.tag == CODEC_NUM_table_hash;
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
static int nested_ok(builder *b, const codec_wire_field *at, int depth)
{
    if (at->wire != 2 || depth > FERRY_MAX_NESTING)
        return give_up(b), 0;
    return 1;
}

static Ferry__Pair *build_pair(builder *b, const codec_wire_field *at, int depth)
{
    if (!nested_ok(b, at, depth))
        return NULL;
    Ferry__Pair *pair = build_alloc(b, sizeof *pair);
    if (!pair)
        return NULL;
    ferry__pair__init(pair);
    const uint8_t *p = at->data, *end = p + at->len;
    codec_wire_field f;
    while (p < end) {
        if (!codec_next_field(&p, end, &f))
            return give_up(b);
        Ferry__Value **slot = f.tag == CODEC_NUM_pair_key     ? &pair->key
                              : f.tag == CODEC_NUM_pair_value ? &pair->value
                                                              : NULL;
        if (!slot || *slot) /* unknown, or given twice (merged by protobuf-c) */
            return give_up(b);
        if (!(*slot = build_value(b, &f, depth + 1)))
            return NULL;
    }
    return pair;
}

static Ferry__Table *build_table(builder *b, const codec_wire_field *at, int depth)
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
    codec_wire_field f;
    while (p < end) {
        if (!codec_next_field(&p, end, &f))
            return give_up(b);
        if (f.tag == CODEC_NUM_table_array) {
            if (!(t->array[t->n_array++] = build_value(b, &f, depth + 1)))
                return NULL;
        } else if (f.tag == CODEC_NUM_table_hash) {
            if (!(t->hash[t->n_hash++] = build_pair(b, &f, depth + 1)))
                return NULL;
        } else {
            return give_up(b);
        }
    }
    return t;
}

static Ferry__Value *build_value(builder *b, const codec_wire_field *at, int depth)
{
    if (!nested_ok(b, at, depth))
        return NULL;
    Ferry__Value *v = build_alloc(b, sizeof *v);
    if (!v)
        return NULL;
    *v = (Ferry__Value)FERRY__VALUE__INIT;
    const uint8_t *p = at->data, *end = p + at->len;
    codec_wire_field f;
    while (p < end) {
        /* The keys values are written with, read directly; the rest below. */
        uint64_t n;
        switch (*p) {
        case CODEC_KEY_value_integer:
            p++;
            if (!codec_read_varint(&p, end, 10, &n))
                return give_up(b);
            v->integer = (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
            v->kind_case = FERRY__VALUE__KIND_INTEGER;
            continue;
        case CODEC_KEY_value_number:
            if (end - p < 9)
                return give_up(b);
            memcpy(&v->number, p + 1, sizeof v->number);
            p += 9;
            v->kind_case = FERRY__VALUE__KIND_NUMBER;
            continue;
        case CODEC_KEY_value_string:
            p++;
            if (!codec_read_length(&p, end, &n))
                return give_up(b);
            if (!copy_bytes(b, p, (size_t)n, &v->string))
                return NULL;
            p += n;
            v->kind_case = FERRY__VALUE__KIND_STRING;
            continue;
        default:
            break;
        }
        if (!codec_next_field(&p, end, &f))
            return give_up(b);
        switch (f.tag) {
        case CODEC_NUM_value_nil:
            if (f.wire != CODEC_WIRE_BOOL)
                return give_up(b);
            v->nil = varint_bool(&f);
            break;
        case CODEC_NUM_value_boolean:
            if (f.wire != CODEC_WIRE_BOOL)
                return give_up(b);
            v->boolean = varint_bool(&f);
            break;
        case CODEC_NUM_value_integer:
            if (f.wire != CODEC_WIRE_SINT64)
                return give_up(b);
            v->integer = (int64_t)(f.value >> 1) ^ -(int64_t)(f.value & 1);
            break;
        case CODEC_NUM_value_number:
            if (f.wire != CODEC_WIRE_DOUBLE)
                return give_up(b);
            memcpy(&v->number, f.data, sizeof v->number);
            break;
        case CODEC_NUM_value_string:
            if (!build_bytes(b, &f, &v->string))
                return NULL;
            break;
        case CODEC_NUM_value_table:
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
static int varint_ok(builder *b, const codec_wire_field *f)
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
    codec_wire_field at[STASH];
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
    codec_wire_field f;
    while (p < end && codec_next_field(&p, end, &f)) /* framed: the first pass checked it */
        if (f.tag == tag && !((*out)[(*n)++] = build_value(b, &f, 2)))
            return 0;
    return 1;
}

static void keep(stash *st, const codec_wire_field *f)
{
    if (st->n < STASH)
        st->at[st->n++] = *f;
    st->total++;
}

/* Commands and Replies number their routing fields alike (the table says so). */
_Static_assert(CODEC_KEY_command_engine_id == CODEC_KEY_reply_engine_id &&
                   CODEC_KEY_command_call_id == CODEC_KEY_reply_call_id,
               "Command and Reply share routing_field");

/*
 * The fields a Command and a Reply share, when their one-byte key is at *q:
 * engine_id (1) and call_id (2). 1 when read (q moves past it), 0 when the
 * key is another, -1 when it does not decode (the build gave up) or memory
 * ran out.
 */
static inline __attribute__((always_inline)) int routing_field(builder *b, const uint8_t **q,
                                                               const uint8_t *end,
                                                               ProtobufCBinaryData *engine_id,
                                                               uint64_t *call_id)
{
    uint64_t n;
    switch (**q) {
    case CODEC_KEY_command_engine_id:
        (*q)++;
        if (!codec_read_length(q, end, &n))
            return give_up(b), -1;
        if (!copy_bytes(b, *q, (size_t)n, engine_id))
            return -1;
        *q += n;
        return 1;
    case CODEC_KEY_command_call_id:
        (*q)++;
        if (!codec_read_varint(q, end, 10, call_id))
            return give_up(b), -1;
        return 1;
    default:
        return 0;
    }
}

/* routing_field for a field codec_next_field read (any key): 1 when f is
 * engine_id or call_id and was read, 0 when it is another, -1 as there. */
static int routing_wire_field(builder *b, const codec_wire_field *f, ProtobufCBinaryData *engine_id,
                              uint64_t *call_id)
{
    if (f->tag == CODEC_NUM_command_engine_id)
        return build_bytes(b, f, engine_id) ? 1 : -1;
    if (f->tag != CODEC_NUM_command_call_id)
        return 0;
    if (!varint_ok(b, f))
        return -1;
    *call_id = f->value;
    return 1;
}

/* Keeps the Value field (number tag) whose one-byte key is at *q for
 * build_values; q moves past it. 0 when it does not decode. */
static inline __attribute__((always_inline)) int keep_value(builder *b, stash *st, uint32_t tag,
                                                            const uint8_t **q, const uint8_t *end)
{
    uint64_t n;
    (*q)++;
    if (!codec_read_length(q, end, &n))
        return give_up(b), 0;
    codec_wire_field f = {.tag = tag, .wire = 2, .data = *q, .len = (size_t)n};
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
    codec_wire_field f;
    while (q < end) {
        /* The keys Ferry writes, read directly; anything else below. */
        int routing = routing_field(b, &q, end, &c->engine_id, &c->call_id);
        if (routing < 0)
            return NULL;
        if (routing)
            continue;
        uint64_t n;
        switch (*q) {
        case CODEC_KEY_command_function:
            q++;
            if (!codec_read_length(&q, end, &n))
                return give_up(b);
            if (!copy_string(b, q, (size_t)n, &c->function))
                return NULL;
            q += n;
            continue;
        case CODEC_KEY_command_args:
            if (!keep_value(b, &args, CODEC_NUM_command_args, &q, end))
                return NULL;
            continue;
        case CODEC_KEY_command_timeout_ms:
            q++;
            if (!codec_read_varint(&q, end, 10, &n))
                return give_up(b);
            c->timeout_ms = (uint32_t)n;
            continue;
        default:
            break;
        }
        if (!codec_next_field(&q, end, &f))
            return give_up(b);
        if ((routing = routing_wire_field(b, &f, &c->engine_id, &c->call_id)) != 0) {
            if (routing < 0)
                return NULL;
            continue;
        }
        int ok = 1;
        switch (f.tag) {
        case CODEC_NUM_command_function:
            ok = build_string(b, &f, &c->function);
            break;
        case CODEC_NUM_command_args:
            keep(&args, &f);
            break;
        case CODEC_NUM_command_timeout_ms:
            if ((ok = varint_ok(b, &f)))
                c->timeout_ms = (uint32_t)f.value;
            break;
        default:
            return give_up(b);
        }
        if (!ok)
            return NULL;
    }
    if (!build_values(b, &args, p, len, CODEC_NUM_command_args, &c->args, &c->n_args))
        return NULL;
    return c;
}

static Ferry__Error *build_error(builder *b, const codec_wire_field *at)
{
    if (!nested_ok(b, at, 2))
        return NULL;
    Ferry__Error *e = build_alloc(b, sizeof *e);
    if (!e)
        return NULL;
    ferry__error__init(e);
    const uint8_t *p = at->data, *end = p + at->len;
    codec_wire_field f;
    while (p < end) {
        if (!codec_next_field(&p, end, &f))
            return give_up(b);
        if (f.tag == CODEC_NUM_error_code) {
            if (!build_string(b, &f, &e->code))
                return NULL;
        } else if (f.tag == CODEC_NUM_error_message) {
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
    codec_wire_field f;
    while (q < end) {
        /* The keys Ferry writes, read directly; anything else below. */
        int routing = routing_field(b, &q, end, &r->engine_id, &r->call_id);
        if (routing < 0)
            return NULL;
        if (routing)
            continue;
        switch (*q) {
        case CODEC_KEY_reply_values:
            if (!keep_value(b, &values, CODEC_NUM_reply_values, &q, end))
                return NULL;
            continue;
        default:
            break;
        }
        if (!codec_next_field(&q, end, &f))
            return give_up(b);
        if ((routing = routing_wire_field(b, &f, &r->engine_id, &r->call_id)) != 0) {
            if (routing < 0)
                return NULL;
            continue;
        }
        int ok = 1;
        switch (f.tag) {
        case CODEC_NUM_reply_values:
            keep(&values, &f);
            break;
        case CODEC_NUM_reply_error:
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
    if (!build_values(b, &values, p, len, CODEC_NUM_reply_values, &r->values, &r->n_values))
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
    builder b = {.a = codec_arena_new(len)};
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
        codec_arena_free(b.a);
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
        codec_wire_field f;
        if (!codec_next_field(&p, end, &f))
            return FERRY_EPROTO;
        const ProtobufCFieldDescriptor *fd = codec_field_of(&ferry__envelope__descriptor, f.tag);
        if (!fd) {
            plain = 0;
            continue;
        }
        if (!codec_wire_fits(fd, f.wire))
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
    if (plain && (body == FERRY__ENVELOPE__BODY_COMMAND || body == FERRY__ENVELOPE__BODY_REPLY) &&
        codec_fast()) {
        /* Checked and plain: the build gives up only on what the checks,
         * which follow the descriptors, pass and the table does not know.
         * That goes to protobuf-c below, never fails. */
        int unusual = 0;
        ferry_err err = build_envelope(len, version, body, body_data, body_len, &unusual, out);
        if (!unusual)
            return err;
    }
    codec_arena *a = codec_arena_new(len);
    if (!a)
        return FERRY_ENOMEM;
    Ferry__Envelope *env = ferry__envelope__unpack(&a->allocator, len, data);
    if (!env) { /* checked already: only memory can be missing */
        codec_arena_free(a);
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
    int usual = codec_fast(), bodies = 0;
    while (p < end && usual) {
        uint64_t n = 0;
        if (*p == CODEC_KEY_envelope_version) {
            p++;
            usual = codec_read_varint(&p, end, 10, &n);
            version = (uint32_t)n;
        } else if (*p == CODEC_KEY_envelope_command || *p == CODEC_KEY_envelope_reply) {
            body = *p++ >> 3;
            usual = codec_read_length(&p, end, &n);
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

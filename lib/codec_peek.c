/*
 * codec_peek: ferry_wire_peek_call, what the broker routes a Command or a
 * Reply on, read from the top level of the bytes with no allocation. The
 * submessages in the body (args, values, error) are skipped unread: the
 * endpoints decode them.
 *
 * The keys and wire types are the table's (codec_fields.h). While the table
 * agrees with the schema, the one-byte keys Ferry writes are read directly;
 * when it does not (codec_fast), every field is read as the descriptors say
 * and only the routing fields the table and the schema agree on are kept.
 */
#include "codec_fields.h"
#include "codec_internal.h"

#include <string.h>

/* The length of a function name up to its first zero byte (what a decoder's
 * C string holds). Names are short: a loop, no call to memchr. */
static inline size_t name_len(const uint8_t *p, size_t n)
{
    size_t k = 0;
    while (k < n && p[k])
        k++;
    return k;
}

/* The peek reads a Command and a Reply with one switch on the key: where
 * their numbers coincide, the case serves both. */
_Static_assert(CODEC_KEY_command_engine_id == CODEC_KEY_reply_engine_id &&
                   CODEC_KEY_command_call_id == CODEC_KEY_reply_call_id &&
                   CODEC_KEY_command_function == CODEC_KEY_reply_values &&
                   CODEC_KEY_command_args == CODEC_KEY_reply_error,
               "the peek's switch serves Command and Reply keys alike");

/* Keeps what routing needs of one field of a Command or Reply body (rec->body).
 * Later occurrences of a field replace earlier ones, as in protobuf-c. */
static inline void record(ferry_wire_call *rec, const codec_wire_field *f)
{
    int command = rec->body == FERRY__ENVELOPE__BODY_COMMAND;
    switch (f->tag) {
    case CODEC_NUM_command_engine_id: /* both */
        rec->engine_id = f->len ? f->data : NULL;
        rec->engine_id_len = f->len;
        break;
    case CODEC_NUM_command_call_id: /* both */
        rec->call_id = f->value;
        break;
    case CODEC_NUM_command_function: /* Reply.values: not read */
        if (command) {
            rec->function_len = name_len(f->data, f->len);
            rec->function = rec->function_len ? (const char *)f->data : NULL;
        }
        break;
    case CODEC_NUM_reply_error: /* Command.args: not read */
        if (!command)
            rec->has_error = 1; /* present; protobuf-c merges repeats */
        break;
    case CODEC_NUM_command_timeout_ms:
        if (command)
            rec->timeout_ms = (uint32_t)f->value;
        break;
    default:
        break;
    }
}

/* The wire type + 1 of each field of a Command and of a Reply by number, 0
 * for none, from the table. */
#define WIRE_ENTRY(msg, member, number, kind, flags, sub) [number] = CODEC_WIRE_##kind + 1,
static const int8_t command_wires[] = {CODEC_FIELDS_COMMAND(WIRE_ENTRY)};
static const int8_t reply_wires[] = {CODEC_FIELDS_REPLY(WIRE_ENTRY)};
#undef WIRE_ENTRY

/* The table's wire type + 1 for field tag of a Command (or a Reply), 0 when
 * the table does not have it. */
static inline int table_wire(int command, uint32_t tag)
{
    if (command)
        return tag < sizeof command_wires ? command_wires[tag] : 0;
    return tag < sizeof reply_wires ? reply_wires[tag] : 0;
}

/* peek_body when the table and the schema disagree: the descriptors say what
 * each field is (framing and wire types checked as protobuf-c checks them);
 * a routing field is kept only when the table's wire type is the same. */
static int peek_body_schema(const uint8_t *p, size_t len, ferry_wire_call *rec)
{
    int command = rec->body == FERRY__ENVELOPE__BODY_COMMAND;
    const ProtobufCMessageDescriptor *desc =
        command ? &ferry__command__descriptor : &ferry__reply__descriptor;
    const uint8_t *end = p + len;
    while (p < end) {
        codec_wire_field f;
        if (!codec_next_field(&p, end, &f))
            return 0;
        const ProtobufCFieldDescriptor *fd = codec_field_of(desc, f.tag);
        if (!fd) /* unknown: skipped, as protobuf-c keeps it */
            continue;
        if (!codec_wire_fits(fd, f.wire))
            return 0;
        if (table_wire(command, f.tag) == f.wire + 1)
            record(rec, &f);
    }
    return 1;
}

/*
 * Reads the routing fields of a Command or Reply body (rec->body), its top
 * level only: framing and the wire types of its known fields are checked,
 * submessages (args, values, error) are skipped unread. 0 when malformed.
 * The one-byte keys Ferry's fields have are read directly (the peek runs
 * twice per call in the broker); any other key takes codec_next_field.
 */
static int peek_body(const uint8_t *p, size_t len, ferry_wire_call *rec)
{
    int command = rec->body == FERRY__ENVELOPE__BODY_COMMAND;
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t n;
        switch (*p) {
        case CODEC_KEY_command_engine_id: /* both */
            p++;
            if (!codec_read_length(&p, end, &n))
                return 0;
            rec->engine_id = n ? p : NULL;
            rec->engine_id_len = (size_t)n;
            p += n;
            continue;
        case CODEC_KEY_command_call_id: /* both */
            p++;
            if (!codec_read_varint(&p, end, 10, &rec->call_id))
                return 0;
            continue;
        case CODEC_KEY_command_function: /* Reply.values */
        case CODEC_KEY_command_args:     /* Reply.error */
            if (*p++ == CODEC_KEY_command_function) {
                if (!codec_read_length(&p, end, &n))
                    return 0;
                if (command) {
                    rec->function_len = name_len(p, (size_t)n);
                    rec->function = rec->function_len ? (const char *)p : NULL;
                }
            } else {
                if (!codec_read_length(&p, end, &n))
                    return 0;
                if (!command)
                    rec->has_error = 1; /* present; protobuf-c merges repeats */
            }
            p += n;
            continue;
        case CODEC_KEY_command_timeout_ms:
            if (!command)
                break;
            p++;
            if (!codec_read_varint(&p, end, 10, &n))
                return 0;
            rec->timeout_ms = (uint32_t)n;
            continue;
        default:
            break;
        }
        codec_wire_field f;
        if (!codec_next_field(&p, end, &f))
            return 0;
        int wire = table_wire(command, f.tag);
        if (!wire) /* unknown: skipped, as protobuf-c keeps it */
            continue;
        if (f.wire != wire - 1)
            return 0;
        record(rec, &f);
    }
    return 1;
}

/*
 * ferry_wire_peek_call, in two copies: fast (1) while the table and the
 * schema agree, with the shortcuts for the keys Ferry writes, and 0 when
 * they do not, reading every field as the descriptors say. fast is a
 * constant at each call, so the fast copy pays nothing for the other.
 */
static inline __attribute__((always_inline)) ferry_err peek_call(const void *data, size_t len,
                                                                 ferry_wire_call *out, int fast)
{
    memset(out, 0, sizeof *out);
    const uint8_t *p = data, *end = p + len;
    uint64_t version = 0;
    const uint8_t *body_data = NULL;
    uint64_t body_len = 0;
    /* Without fast no key matches the shortcuts below (a byte is never -1;
     * no body number is at most 0). */
    int version_key = fast ? CODEC_KEY_envelope_version : -1;
    int last_body = fast ? FERRY__ENVELOPE__BODY_GOODBYE : 0;
    while (p < end) {
        if (*p == version_key) {
            p++;
            if (!codec_read_varint(&p, end, 10, &version))
                return FERRY_EPROTO;
            continue;
        }
        if ((*p & 7) == 2 && (*p >> 3) >= FERRY__ENVELOPE__BODY_HELLO && (*p >> 3) <= last_body) {
            /* A oneof member replaces whichever was set before, whole. */
            out->body = (Ferry__Envelope__BodyCase)(*p++ >> 3);
            if (!codec_read_length(&p, end, &body_len))
                return FERRY_EPROTO;
            body_data = p;
            p += body_len;
            continue;
        }
        codec_wire_field f;
        if (!codec_next_field(&p, end, &f))
            return FERRY_EPROTO;
        const ProtobufCFieldDescriptor *fd = codec_field_of(&ferry__envelope__descriptor, f.tag);
        if (!fd)
            continue;
        if (!codec_wire_fits(fd, f.wire))
            return FERRY_EPROTO;
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) {
            if (f.tag == CODEC_NUM_envelope_version)
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
        int ok = fast ? peek_body(body_data, (size_t)body_len, out)
                      : peek_body_schema(body_data, (size_t)body_len, out);
        if (!ok) {
            memset(out, 0, sizeof *out);
            return FERRY_EPROTO;
        }
    }
    if (out->body == FERRY__ENVELOPE__BODY__NOT_SET)
        return FERRY_EPROTO;
    if (out->body == FERRY__ENVELOPE__BODY_BATCH) {
        out->batch = body_data;
        out->batch_len = (size_t)body_len;
    }
    return FERRY_OK;
}

ferry_err ferry_wire_peek_call(const void *data, size_t len, ferry_wire_call *out)
{
    return codec_fast() ? peek_call(data, len, out, 1) : peek_call(data, len, out, 0);
}

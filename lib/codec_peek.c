/*
 * codec_peek: ferry_wire_peek_call, what the broker routes a Command or a
 * Reply on, read from the top level of the bytes with no allocation. The
 * submessages in the body (args, values, error) are skipped unread: the
 * endpoints decode them.
 */
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

/* Keeps what routing needs of one field of a Command or Reply body (rec->body).
 * Later occurrences of a field replace earlier ones, as in protobuf-c. */
static inline void record(ferry_wire_call *rec, const codec_wire_field *f)
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

/* The wire type of each field of a Command and of a Reply by number, -1 for
 * none: what codec_wire_fits says of their descriptors, as a table because the peek
 * runs for every call twice (lib_wire_test holds it to protobuf-c). */
static const int8_t command_wires[] = {-1, 2, 0, 2, 2, 0};
static const int8_t reply_wires[] = {-1, 2, 0, 2, 2};

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
        case 1 << 3 | 2: /* engine_id */
            p++;
            if (!codec_read_length(&p, end, &n))
                return 0;
            rec->engine_id = n ? p : NULL;
            rec->engine_id_len = (size_t)n;
            p += n;
            continue;
        case 2 << 3 | 0: /* call_id */
            p++;
            if (!codec_read_varint(&p, end, 10, &rec->call_id))
                return 0;
            continue;
        case 3 << 3 | 2: /* Command.function, Reply.values */
        case 4 << 3 | 2: /* Command.args, Reply.error */
            if (*p++ == (3 << 3 | 2)) {
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
        case 5 << 3 | 0: /* Command.timeout_ms */
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
            if (!codec_read_varint(&p, end, 10, &version))
                return FERRY_EPROTO;
            continue;
        }
        if ((*p & 7) == 2 && (*p >> 3) >= FERRY__ENVELOPE__BODY_HELLO &&
            (*p >> 3) <= FERRY__ENVELOPE__BODY_GOODBYE) {
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

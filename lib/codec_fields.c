/*
 * codec_fields: the table of codec_fields.h, and its comparison with the
 * descriptors protoc-c generates from proto/ferry.proto.
 */
#include "codec_fields.h"

#include "ferry_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CODEC_FIELD_ROW(msg, member, number_, kind_, flags_, sub_)                                 \
    {.message = &ferry__##msg##__descriptor,                                                       \
     .name = #member,                                                                              \
     .number = (number_),                                                                          \
     .kind = CODEC_##kind_,                                                                        \
     .flags = (flags_),                                                                            \
     .offset = offsetof(codec_msg_##msg, member),                                                  \
     .sub = (sub_)},

const codec_field codec_fields[] = {CODEC_FIELDS(CODEC_FIELD_ROW)};
const size_t codec_fields_count = sizeof codec_fields / sizeof codec_fields[0];

#undef CODEC_FIELD_ROW

/* What protobuf-c's descriptor says of a field of each kind. */
static const struct {
    const char *name;
    ProtobufCType type;
    ProtobufCLabel label;
    int wire;
} kinds[CODEC_KINDS] = {
    [CODEC_UINT32] = {"uint32", PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_LABEL_NONE, CODEC_WIRE_UINT32},
    [CODEC_UINT64] = {"uint64", PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_LABEL_NONE, CODEC_WIRE_UINT64},
    [CODEC_SINT64] = {"sint64", PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_LABEL_NONE, CODEC_WIRE_SINT64},
    [CODEC_BOOL] = {"bool", PROTOBUF_C_TYPE_BOOL, PROTOBUF_C_LABEL_NONE, CODEC_WIRE_BOOL},
    [CODEC_DOUBLE] = {"double", PROTOBUF_C_TYPE_DOUBLE, PROTOBUF_C_LABEL_NONE, CODEC_WIRE_DOUBLE},
    [CODEC_BYTES] = {"bytes", PROTOBUF_C_TYPE_BYTES, PROTOBUF_C_LABEL_NONE, CODEC_WIRE_BYTES},
    [CODEC_STRING] = {"string", PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_NONE, CODEC_WIRE_STRING},
    [CODEC_MESSAGE] = {"message", PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_NONE,
                       CODEC_WIRE_MESSAGE},
    [CODEC_MESSAGES] = {"repeated message", PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_REPEATED,
                        CODEC_WIRE_MESSAGES},
};

/* protobuf-c's types by name, for the report. */
static const char *const type_names[] = {
    [PROTOBUF_C_TYPE_INT32] = "int32",       [PROTOBUF_C_TYPE_SINT32] = "sint32",
    [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
    [PROTOBUF_C_TYPE_SINT64] = "sint64",     [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
    [PROTOBUF_C_TYPE_UINT32] = "uint32",     [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
    [PROTOBUF_C_TYPE_UINT64] = "uint64",     [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
    [PROTOBUF_C_TYPE_FLOAT] = "float",       [PROTOBUF_C_TYPE_DOUBLE] = "double",
    [PROTOBUF_C_TYPE_BOOL] = "bool",         [PROTOBUF_C_TYPE_ENUM] = "enum",
    [PROTOBUF_C_TYPE_STRING] = "string",     [PROTOBUF_C_TYPE_BYTES] = "bytes",
    [PROTOBUF_C_TYPE_MESSAGE] = "message",
};

static const char *const label_names[] = {
    [PROTOBUF_C_LABEL_REQUIRED] = "required",
    [PROTOBUF_C_LABEL_OPTIONAL] = "optional",
    [PROTOBUF_C_LABEL_REPEATED] = "repeated",
    [PROTOBUF_C_LABEL_NONE] = "singular",
};

int codec_kind_wire(codec_kind k)
{
    return kinds[k].wire;
}

static const char *type_name(ProtobufCType t)
{
    return (unsigned)t < sizeof type_names / sizeof type_names[0] && type_names[t] ? type_names[t]
                                                                                   : "?";
}

static const char *label_name(ProtobufCLabel l)
{
    return (unsigned)l < sizeof label_names / sizeof label_names[0] ? label_names[l] : "?";
}

typedef struct {
    codec_schema_report report;
    void *arg;
    size_t count;
} tally;

static void __attribute__((format(printf, 2, 3))) disagree(tally *t, const char *fmt, ...)
{
    t->count++;
    if (!t->report)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    t->report(t->arg, line);
}

static const codec_field *row_of(const codec_field *rows, size_t n,
                                 const ProtobufCMessageDescriptor *msg, uint32_t number)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].message == msg && rows[i].number == number)
            return &rows[i];
    return NULL;
}

static int has_rows(const codec_field *rows, size_t n, const ProtobufCMessageDescriptor *msg)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].message == msg)
            return 1;
    return 0;
}

/* A field both sides have: every property the hand paths rely on. */
static void compare_field(tally *t, const codec_field *r, const ProtobufCFieldDescriptor *fd)
{
    const char *msg = r->message->short_name;
    const char *what = kinds[r->kind].name;
    if (fd->type != kinds[r->kind].type || fd->label != kinds[r->kind].label)
        disagree(t, "%s.%s (%u): the schema says %s %s, the codec's table %s", msg, fd->name,
                 fd->id, label_name(fd->label), type_name(fd->type), what);
    if (strcmp(fd->name, r->name) != 0)
        disagree(t, "%s field %u: the schema names it %s, the codec's table %s", msg, fd->id,
                 fd->name, r->name);
    if (fd->offset != r->offset)
        disagree(t, "%s.%s (%u): at offset %u in the generated struct, %zu in the codec's table",
                 msg, fd->name, fd->id, fd->offset, r->offset);
    int oneof = (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
    if (oneof != ((r->flags & CODEC_ONEOF) != 0))
        disagree(t, "%s.%s (%u): %s a oneof member in the schema, %s in the codec's table", msg,
                 fd->name, fd->id, oneof ? "is" : "is not", oneof ? "not" : "is");
    const ProtobufCMessageDescriptor *sub =
        fd->type == PROTOBUF_C_TYPE_MESSAGE ? fd->descriptor : NULL;
    if (sub != r->sub)
        disagree(t, "%s.%s (%u): of type %s in the schema, %s in the codec's table", msg, fd->name,
                 fd->id, sub ? sub->short_name : "(scalar)",
                 r->sub ? r->sub->short_name : "(scalar)");
}

size_t codec_schema_compare(const codec_field *rows, size_t n, codec_schema_report report,
                            void *arg)
{
    tally t = {.report = report, .arg = arg};
    for (size_t i = 0; i < n; i++) {
        const ProtobufCMessageDescriptor *msg = rows[i].message;
        /* Each message once, at its first row. */
        int first = 1;
        for (size_t j = 0; j < i && first; j++)
            first = rows[j].message != msg;
        if (!first)
            continue;
        /* Schema -> table. */
        for (unsigned f = 0; f < msg->n_fields; f++) {
            const ProtobufCFieldDescriptor *fd = &msg->fields[f];
            const codec_field *r = row_of(rows, n, msg, fd->id);
            if (!r)
                disagree(&t,
                         "%s.%s (%u, %s %s): in the schema, not in the codec's table "
                         "(lib/codec_fields.h)",
                         msg->short_name, fd->name, fd->id, label_name(fd->label),
                         type_name(fd->type));
            else
                compare_field(&t, r, fd);
        }
    }
    /* Table -> schema. */
    for (size_t i = 0; i < n; i++) {
        const codec_field *r = &rows[i];
        if (!protobuf_c_message_descriptor_get_field(r->message, r->number))
            disagree(&t, "%s.%s (%u): in the codec's table, not in the schema",
                     r->message->short_name, r->name, r->number);
        if ((r->flags & CODEC_HAND) && r->sub && !has_rows(rows, n, r->sub))
            disagree(&t, "%s.%s (%u): its type %s has no rows in the codec's table",
                     r->message->short_name, r->name, r->number, r->sub->short_name);
        if (row_of(rows, n, r->message, r->number) != r)
            disagree(&t, "%s.%s (%u): twice in the codec's table", r->message->short_name, r->name,
                     r->number);
    }
    return t.count;
}

atomic_int codec_schema_state = CODEC_SCHEMA_UNKNOWN;

static void log_drift(void *arg, const char *line)
{
    (void)arg;
    ferry_warn("codec_schema_drift", "fallback=protobuf-c disagreement=\"%s\"", line);
}

int codec_schema_settle(void)
{
    int s = atomic_load_explicit(&codec_schema_state, memory_order_relaxed);
    if (s != CODEC_SCHEMA_UNKNOWN)
        return s;
    s = CODEC_SCHEMA_AGREES;
    if (codec_schema_compare(codec_fields, codec_fields_count, NULL, NULL) != 0) {
        s = CODEC_SCHEMA_DRIFTED;
        /* Logged by whichever thread settles first; the rest see the state. */
        int expected = CODEC_SCHEMA_UNKNOWN;
        if (atomic_compare_exchange_strong(&codec_schema_state, &expected, s))
            codec_schema_compare(codec_fields, codec_fields_count, log_drift, NULL);
        return s;
    }
    atomic_store_explicit(&codec_schema_state, s, memory_order_relaxed);
    return s;
}

void codec_schema_force(int state)
{
    atomic_store(&codec_schema_state, state);
}

/*
 * codec_fields: the one table of the fields the hand-written codec knows.
 *
 * The decoder, the peek and the packer (codec_decode.c, codec_peek.c,
 * codec_pack.c) read and write Commands, Replies and their Values by hand,
 * with the keys and field numbers named here (CODEC_KEY_*, CODEC_NUM_*). Each
 * row says what the hand paths take a field to be: its message, member,
 * number, kind (which fixes its wire type and protobuf-c's type and label)
 * and whether the hand paths handle it at all (CODEC_HAND; without it the
 * message holding it goes to protobuf-c whole, as every Envelope body but
 * Command and Reply does).
 *
 * The schema can change under the table: codec_schema_compare holds the rows
 * against protobuf-c's generated descriptors, both ways (lib_codec_fields_test
 * fails on any disagreement, naming message and field), and the codec checks
 * the same once at run time (codec_fast): when they disagree, every decode,
 * peek and pack goes to protobuf-c, slower but never wrong, and the process
 * logs codec_schema_drift once.
 *
 * To change the schema of one of these messages: change its rows here, the
 * hand paths that read and write the field, and the test's samples.
 */
#ifndef CODEC_FIELDS_H
#define CODEC_FIELDS_H

#include "ferry.pb-c.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* What the hand paths take a field to be. */
typedef enum {
    CODEC_UINT32,   /* uint32, varint */
    CODEC_UINT64,   /* uint64, varint */
    CODEC_SINT64,   /* sint64, zigzag varint */
    CODEC_BOOL,     /* bool, varint (protobuf-c reads any wire type) */
    CODEC_DOUBLE,   /* double, 64-bit */
    CODEC_BYTES,    /* bytes, length-delimited */
    CODEC_STRING,   /* string, length-delimited */
    CODEC_MESSAGE,  /* one submessage, length-delimited */
    CODEC_MESSAGES, /* repeated submessage, length-delimited each */
    CODEC_KINDS
} codec_kind;

/* The wire type of each kind, for the keys below. */
#define CODEC_WIRE_UINT32 0
#define CODEC_WIRE_UINT64 0
#define CODEC_WIRE_SINT64 0
#define CODEC_WIRE_BOOL 0
#define CODEC_WIRE_DOUBLE 1
#define CODEC_WIRE_BYTES 2
#define CODEC_WIRE_STRING 2
#define CODEC_WIRE_MESSAGE 2
#define CODEC_WIRE_MESSAGES 2

#define CODEC_HAND 1u  /* read and written by the hand paths */
#define CODEC_ONEOF 2u /* a member of its message's oneof */

/* The C type of each message named in the rows (for offsetof). */
typedef Ferry__Envelope codec_msg_envelope;
typedef Ferry__Command codec_msg_command;
typedef Ferry__Reply codec_msg_reply;
typedef Ferry__Error codec_msg_error;
typedef Ferry__Value codec_msg_value;
typedef Ferry__Table codec_msg_table;
typedef Ferry__Pair codec_msg_pair;

/* X(message, member, number, kind, flags, submessage descriptor or NULL) */
#define CODEC_FIELDS_ENVELOPE(X)                                                                   \
    X(envelope, version, 1, UINT32, CODEC_HAND, NULL)                                              \
    X(envelope, hello, 2, MESSAGE, CODEC_ONEOF, &ferry__hello__descriptor)                         \
    X(envelope, ready, 3, MESSAGE, CODEC_ONEOF, &ferry__ready__descriptor)                         \
    X(envelope, heartbeat, 4, MESSAGE, CODEC_ONEOF, &ferry__heartbeat__descriptor)                 \
    X(envelope, command, 5, MESSAGE, CODEC_HAND | CODEC_ONEOF, &ferry__command__descriptor)        \
    X(envelope, reply, 6, MESSAGE, CODEC_HAND | CODEC_ONEOF, &ferry__reply__descriptor)            \
    X(envelope, submit, 7, MESSAGE, CODEC_ONEOF, &ferry__submit__descriptor)                       \
    X(envelope, result, 8, MESSAGE, CODEC_ONEOF, &ferry__result__descriptor)                       \
    X(envelope, stats_request, 9, MESSAGE, CODEC_ONEOF, &ferry__stats_request__descriptor)         \
    X(envelope, stats, 10, MESSAGE, CODEC_ONEOF, &ferry__stats__descriptor)                        \
    X(envelope, goodbye, 11, MESSAGE, CODEC_ONEOF, &ferry__goodbye__descriptor)                    \
    X(envelope, batch, 12, MESSAGE, CODEC_ONEOF, &ferry__batch__descriptor)

#define CODEC_FIELDS_COMMAND(X)                                                                    \
    X(command, engine_id, 1, BYTES, CODEC_HAND, NULL)                                              \
    X(command, call_id, 2, UINT64, CODEC_HAND, NULL)                                               \
    X(command, function, 3, STRING, CODEC_HAND, NULL)                                              \
    X(command, args, 4, MESSAGES, CODEC_HAND, &ferry__value__descriptor)                           \
    X(command, timeout_ms, 5, UINT32, CODEC_HAND, NULL)

#define CODEC_FIELDS_REPLY(X)                                                                      \
    X(reply, engine_id, 1, BYTES, CODEC_HAND, NULL)                                                \
    X(reply, call_id, 2, UINT64, CODEC_HAND, NULL)                                                 \
    X(reply, values, 3, MESSAGES, CODEC_HAND, &ferry__value__descriptor)                           \
    X(reply, error, 4, MESSAGE, CODEC_HAND, &ferry__error__descriptor)

/* Decoded by hand; packed by protobuf-c (it is rare). */
#define CODEC_FIELDS_ERROR(X)                                                                      \
    X(error, code, 1, STRING, CODEC_HAND, NULL)                                                    \
    X(error, message, 2, STRING, CODEC_HAND, NULL)

#define CODEC_FIELDS_VALUE(X)                                                                      \
    X(value, nil, 1, BOOL, CODEC_HAND | CODEC_ONEOF, NULL)                                         \
    X(value, boolean, 2, BOOL, CODEC_HAND | CODEC_ONEOF, NULL)                                     \
    X(value, integer, 3, SINT64, CODEC_HAND | CODEC_ONEOF, NULL)                                   \
    X(value, number, 4, DOUBLE, CODEC_HAND | CODEC_ONEOF, NULL)                                    \
    X(value, string, 5, BYTES, CODEC_HAND | CODEC_ONEOF, NULL)                                     \
    X(value, table, 6, MESSAGE, CODEC_HAND | CODEC_ONEOF, &ferry__table__descriptor)

#define CODEC_FIELDS_TABLE(X)                                                                      \
    X(table, array, 1, MESSAGES, CODEC_HAND, &ferry__value__descriptor)                            \
    X(table, hash, 2, MESSAGES, CODEC_HAND, &ferry__pair__descriptor)

#define CODEC_FIELDS_PAIR(X)                                                                       \
    X(pair, key, 1, MESSAGE, CODEC_HAND, &ferry__value__descriptor)                                \
    X(pair, value, 2, MESSAGE, CODEC_HAND, &ferry__value__descriptor)

#define CODEC_FIELDS(X)                                                                            \
    CODEC_FIELDS_ENVELOPE(X)                                                                       \
    CODEC_FIELDS_COMMAND(X)                                                                        \
    CODEC_FIELDS_REPLY(X)                                                                          \
    CODEC_FIELDS_ERROR(X)                                                                          \
    CODEC_FIELDS_VALUE(X)                                                                          \
    CODEC_FIELDS_TABLE(X)                                                                          \
    CODEC_FIELDS_PAIR(X)

/* CODEC_NUM_command_function (3) and CODEC_KEY_command_function (its
 * one-byte key, 3 << 3 | 2): what the hand paths switch on. */
#define CODEC_FIELD_ENUM(msg, member, number, kind, flags, sub)                                    \
    CODEC_NUM_##msg##_##member = (number),                                                         \
    CODEC_KEY_##msg##_##member = (number) << 3 | CODEC_WIRE_##kind,
enum { CODEC_FIELDS(CODEC_FIELD_ENUM) };
#undef CODEC_FIELD_ENUM

/* One row of the table. */
typedef struct {
    const ProtobufCMessageDescriptor *message; /* the message holding the field */
    const char *name;                          /* its member in the C struct (= the field name) */
    uint32_t number;
    codec_kind kind;
    unsigned flags;                        /* CODEC_HAND, CODEC_ONEOF */
    size_t offset;                         /* offsetof the member */
    const ProtobufCMessageDescriptor *sub; /* the submessage's type, NULL for scalars */
} codec_field;

extern const codec_field codec_fields[];
extern const size_t codec_fields_count;

/* The wire type a field of kind k is written with. */
int codec_kind_wire(codec_kind k);

/* Called once per disagreement with a line naming message and field. */
typedef void (*codec_schema_report)(void *arg, const char *line);

/*
 * Holds rows[0..n) against the descriptors of the messages they name, both
 * ways: every field of those messages must have a row of the same number,
 * name, kind (protobuf-c type and label), offset, oneof membership and
 * submessage type; every row must have its field; and every submessage a
 * CODEC_HAND row leads to must have rows of its own. Calls report (when not
 * NULL) for each disagreement; returns how many there were.
 */
size_t codec_schema_compare(const codec_field *rows, size_t n, codec_schema_report report,
                            void *arg);

/* codec_fast's state: not compared yet, the table agrees, it does not. */
enum { CODEC_SCHEMA_UNKNOWN, CODEC_SCHEMA_AGREES, CODEC_SCHEMA_DRIFTED };
extern atomic_int codec_schema_state;

/* The state once settled; else compares codec_fields with the descriptors,
 * logs codec_schema_drift (once) when they disagree, and stores and returns
 * the state. */
int codec_schema_settle(void);

/*
 * True when the hand paths may run: the table agrees with the descriptors
 * the program was built with. One relaxed load per call once settled (the
 * comparison is idempotent: threads racing to settle store the same state).
 */
static inline int codec_fast(void)
{
    int s = atomic_load_explicit(&codec_schema_state, memory_order_relaxed);
    if (__builtin_expect(s == CODEC_SCHEMA_AGREES, 1))
        return 1;
    return codec_schema_settle() == CODEC_SCHEMA_AGREES;
}

/* For tests: sets the state (CODEC_SCHEMA_DRIFTED forces the protobuf-c paths;
 * CODEC_SCHEMA_UNKNOWN compares again at the next call). */
void codec_schema_force(int state);

#endif

/*
 * ferry_codec: envelopes to bytes and back (lib/codec_*.c: arena, decode, peek,
 * pack).
 *
 * Ownership: decoded envelopes belong to the caller (ferry_envelope_free);
 * packing never takes ownership of what it packs.
 */
#ifndef FERRY_CODEC_H
#define FERRY_CODEC_H

#include "ferry.pb-c.h"
#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>

#define FERRY_PROTOCOL_VERSION 1
/* Deepest message nesting a decoder accepts (a Lua table level is up to 3). */
#define FERRY_MAX_NESTING 256
/* Longest function name (FunctionSpec.name, Command.function), in bytes; at least 1. */
#define FERRY_FUNCTION_NAME_MAX 255

/* Zeroes env, initialises it and stamps the protocol version. */
void ferry_envelope_init(Ferry__Envelope *env);

/*
 * Decodes one envelope. FERRY_EPROTO when it does not decode, nests deeper
 * than FERRY_MAX_NESTING or has no body,
 * FERRY_EVERSION when its version is not FERRY_PROTOCOL_VERSION, FERRY_ENOMEM.
 * The result is what protobuf-c's unpack gives (Commands and Replies are
 * built without it, everything else goes through it), in one arena.
 */
ferry_err ferry_envelope_decode(const void *data, size_t len, Ferry__Envelope **out);

/* Frees a decoded envelope and everything in it (NULL-safe). Only for envelopes
 * that ferry_envelope_decode made. */
void ferry_envelope_free(Ferry__Envelope *env);

/*
 * What a router needs of a Command or a Reply, read straight from the wire
 * bytes: no allocation, no copy. Pointers point into the data given to
 * ferry_wire_peek_call and live as long as it does.
 */
typedef struct {
    Ferry__Envelope__BodyCase body; /* the body's kind; the fields below only for
                                     * COMMAND and REPLY, zero otherwise */
    const uint8_t *engine_id;       /* Command/Reply engine_id; NULL when empty */
    size_t engine_id_len;
    uint64_t call_id;
    const char *function;           /* Command.function up to its first zero byte
                                     * (what a decoder's C string holds); not
                                     * NUL-terminated; NULL when empty */
    size_t function_len;
    uint32_t timeout_ms;            /* Command.timeout_ms */
    int has_error;                  /* Reply.error is present */
    const uint8_t *batch;           /* BATCH: the Batch body (its items unread; see
                                     * ferry_batch_next), batch_len bytes */
    size_t batch_len;
} ferry_wire_call;

/*
 * Reads what routing a Command or a Reply needs into out, from the top
 * level of the envelope and of its body only: framing and the wire types of
 * those fields are checked as protobuf-c's unpack checks them, but the
 * submessages in the body (args, values, error) are skipped unread. So the
 * peek refuses less than ferry_envelope_decode: what it refuses, the decode
 * refuses too (FERRY_EPROTO: malformed at the top level, no body;
 * FERRY_EVERSION), and where the decode succeeds the peek reads the same
 * routing fields. Whoever decodes the body (worker, engine) must answer a
 * body that peeks but does not decode; the broker forwards it unchanged.
 * Any other body is only framed: decode it to use it. O(top-level fields),
 * bounded by len; no recursion.
 */
ferry_err ferry_wire_peek_call(const void *data, size_t len, ferry_wire_call *out);

/*
 * ferry__envelope__get_packed_size and ferry__envelope__pack, the same bytes,
 * faster for Commands and Replies (written by hand, their Values included;
 * protobuf-c for anything carrying unknown fields). out must hold
 * ferry_envelope_packed_size bytes; returns the bytes written.
 */
size_t ferry_envelope_packed_size(const Ferry__Envelope *env);
size_t ferry_envelope_pack(const Ferry__Envelope *env, uint8_t *out);

/* ferry_envelope_pack for a caller that has size = ferry_envelope_packed_size(env)
 * already: the sizes of the body are not computed a second time. */
size_t ferry_envelope_pack_sized(const Ferry__Envelope *env, size_t size, uint8_t *out);

/*
 * Batches (protocol.md, Batches): several whole envelopes, Commands or
 * Replies, as the items of one Batch envelope, written and read as bytes.
 *
 * A sender puts in a batch only envelopes of at most FERRY_BATCH_ITEM_MAX
 * bytes and keeps the whole under FERRY_BATCH_BYTES_MAX (and under the
 * peer's --max-msg); a receiver takes any batch its --max-msg lets in.
 */
#define FERRY_BATCH_ITEM_MAX (16 * 1024)
#define FERRY_BATCH_BYTES_MAX (64 * 1024)

/* Bytes an item of len bytes takes in a Batch body (its key and length too). */
size_t ferry_batch_item_size(size_t len);
/* Writes the key and length of an item of len bytes at out; returns where
 * the item's bytes go. */
uint8_t *ferry_batch_put_item_head(uint8_t *out, size_t len);
/* Bytes before a Batch body of body_len bytes: the version and the body's key
 * and length. */
size_t ferry_batch_header_size(size_t body_len);
/* Writes them at out; returns ferry_batch_header_size(body_len). */
size_t ferry_batch_put_header(uint8_t *out, size_t body_len);
/*
 * The next item of a Batch body: *p walks from the body's start to end.
 * 1 with *item and *len (pointing into the body), 0 at the end, -1 when the
 * body is malformed from *p on. Unknown fields are skipped.
 */
int ferry_batch_next(const uint8_t **p, const uint8_t *end, const uint8_t **item, size_t *len);
/* Whether a Batch body frames (FERRY_OK with its item count) or not (FERRY_EPROTO). */
ferry_err ferry_batch_check(const void *body, size_t len, size_t *count);

#endif

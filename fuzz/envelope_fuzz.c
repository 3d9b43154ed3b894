/*
 * envelope_fuzz: libFuzzer target for what every Ferry process does with the
 * bytes a peer sends: ferry_envelope_decode (the nesting walk, protobuf-c's
 * unpack, version and body checks), then, for an envelope that decodes, the
 * value functions a process applies to what it carries: JSON (the client),
 * deep copy and equality, and packing it again (the broker re-encodes
 * Submits and Results).
 *
 * Properties checked beyond "no crash, no leak, no undefined behaviour": the
 * broker's peek (ferry_wire_peek_call) passes every envelope that decodes,
 * and finds its body; a decoded envelope packs into bytes that decode again
 * and pack into the same bytes. (A copy is compared with its original too,
 * for the walk; the answer is not checked: a peer may send tables with
 * duplicate or nil keys, for which equality of hash parts as sets is not
 * defined.)
 *
 * A Batch: the broker's item walk (ferry_batch_check, ferry_batch_next)
 * finds exactly the items protobuf-c decodes, and each item goes through
 * all of the above as a message of its own.
 *
 * And the hand codec against protobuf-c, both ways, on every input
 * protobuf-c's unpack accepts: ferry_envelope_decode gives the same message
 * (or refuses it for one of Ferry's own reasons: version, no body, a field
 * numbered 0, nesting past FERRY_MAX_NESTING); ferry_envelope_pack of that
 * message writes exactly protobuf-c's bytes, which protobuf-c decodes to the
 * same message; and protobuf-c's packing of its own result decodes through
 * ferry_envelope_decode to the same message again. "The same message" is
 * "protobuf-c packs it into the same bytes".
 */
#include "ferry_buf.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const Ferry__Value *v)
{
    ferry_buf json = FERRY_BUF_INIT;
    (void)ferry_value_to_json(v, &json);
    ferry_buf_fini(&json);
    (void)ferry_value_kind(v);
    Ferry__Value *copy = ferry_value_copy(v);
    (void)ferry_value_equal(v, copy);
    ferry_value_free(copy);
}

static void check_values(Ferry__Value *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check_value(values[i]);
}

/* The values an envelope carries, as (array, count); 0 when it carries none. */
static size_t values_of(const Ferry__Envelope *env, Ferry__Value *const **out)
{
    switch (env->body_case) {
    case FERRY__ENVELOPE__BODY_COMMAND:
        if (!env->command)
            return 0;
        *out = env->command->args;
        return env->command->n_args;
    case FERRY__ENVELOPE__BODY_REPLY:
        if (!env->reply)
            return 0;
        *out = env->reply->values;
        return env->reply->n_values;
    case FERRY__ENVELOPE__BODY_SUBMIT:
        if (!env->submit)
            return 0;
        *out = env->submit->args;
        return env->submit->n_args;
    case FERRY__ENVELOPE__BODY_RESULT:
        if (!env->result)
            return 0;
        *out = env->result->values;
        return env->result->n_values;
    default:
        return 0;
    }
}

/* protobuf-c's packing of env, in a malloc'd buffer (*len bytes); aborts
 * when memory runs out (the fuzzer's RSS limit is far below). */
static uint8_t *pbc_pack(const Ferry__Envelope *env, size_t *len)
{
    *len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf || ferry__envelope__pack(env, buf) != *len)
        abort();
    return buf;
}

/* True when env packs (by protobuf-c) into exactly want[0..len). */
static int packs_into(const Ferry__Envelope *env, const uint8_t *want, size_t len)
{
    size_t n;
    uint8_t *got = pbc_pack(env, &n);
    int same = n == len && memcmp(got, want, len) == 0;
    free(got);
    return same;
}

/* Reads a varint of at most max bytes at *p; 0 when it runs past end or on. */
static int varint(const uint8_t **p, const uint8_t *end, int max, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < max && *p < end; i++) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/*
 * True when the bytes of a message of type desc (at level) hold one of
 * Ferry's own reasons to refuse what protobuf-c takes: a field numbered 0,
 * or a submessage nested past FERRY_MAX_NESTING. Read from the bytes, not
 * from protobuf-c's result: a oneof member given twice leaves only the last
 * in the result, and the codec refuses the first too. Called only on bytes
 * protobuf-c accepted, so their framing holds.
 */
static int refused_by_ferry(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                            int level)
{
    if (level > FERRY_MAX_NESTING)
        return 1;
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t key, n = 0;
        if (!varint(&p, end, 5, &key))
            return 0;
        if (key >> 3 == 0)
            return 1;
        switch (key & 7) {
        case 0:
            if (!varint(&p, end, 10, &n))
                return 0;
            continue;
        case 1:
            n = 8;
            break;
        case 5:
            n = 4;
            break;
        case 2:
            if (!varint(&p, end, 5, &n))
                return 0;
            break;
        default:
            return 0;
        }
        if (n > (uint64_t)(end - p))
            return 0;
        const ProtobufCFieldDescriptor *fd =
            protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
        if ((key & 7) == 2 && fd && fd->type == PROTOBUF_C_TYPE_MESSAGE &&
            refused_by_ferry(fd->descriptor, p, (size_t)n, level + 1))
            return 1;
        p += n;
    }
    return 0;
}

/* The hand codec against protobuf-c on data, both ways (see the top). */
static void against_protobuf_c(const uint8_t *data, size_t size, const Ferry__Envelope *env,
                               ferry_err err)
{
    Ferry__Envelope *ref = ferry__envelope__unpack(NULL, size, data);
    if (!ref) {
        if (err == FERRY_OK) /* the codec took what protobuf-c refuses */
            abort();
        return;
    }
    size_t ref_len;
    uint8_t *ref_bytes = pbc_pack(ref, &ref_len);
    if (err != FERRY_OK) {
        int why = (err == FERRY_EVERSION && ref->version != FERRY_PROTOCOL_VERSION) ||
                  (err == FERRY_EPROTO &&
                   (ref->body_case == FERRY__ENVELOPE__BODY__NOT_SET ||
                    refused_by_ferry(&ferry__envelope__descriptor, data, size, 0)));
        if (!why && err != FERRY_ENOMEM)
            abort();
    } else {
        /* 1. The same message. */
        if (!packs_into(env, ref_bytes, ref_len))
            abort();
        /* 2. The hand packer writes protobuf-c's bytes, and they decode
         * (by protobuf-c) to the same message. */
        size_t len = ferry_envelope_packed_size(env);
        uint8_t *mine = malloc(len ? len : 1);
        if (!mine || ferry_envelope_pack(env, mine) != len || len != ref_len ||
            memcmp(mine, ref_bytes, len) != 0)
            abort();
        Ferry__Envelope *back = ferry__envelope__unpack(NULL, len, mine);
        if (!back || !packs_into(back, ref_bytes, ref_len))
            abort();
        ferry__envelope__free_unpacked(back, NULL);
        free(mine);
        /* 3. protobuf-c's bytes decode by hand to the same message. */
        Ferry__Envelope *again = NULL;
        if (ferry_envelope_decode(ref_bytes, ref_len, &again) != FERRY_OK ||
            !packs_into(again, ref_bytes, ref_len))
            abort();
        ferry_envelope_free(again);
    }
    free(ref_bytes);
    ferry__envelope__free_unpacked(ref, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The broker's peek reads the top level only: it may pass what the
     * decode refuses, never refuse what the decode passes. */
    ferry_wire_call call;
    ferry_err peeked = ferry_wire_peek_call(data, size, &call);
    Ferry__Envelope *env = NULL;
    ferry_err err = ferry_envelope_decode(data, size, &env);
    against_protobuf_c(data, size, env, err);
    if (err != FERRY_OK)
        return 0;
    if (peeked != FERRY_OK || call.body != env->body_case)
        abort();
    Ferry__Value *const *values = NULL;
    size_t n = values_of(env, &values);
    check_values(values, n);
    if (env->body_case == FERRY__ENVELOPE__BODY_BATCH && env->batch) {
        size_t count;
        if (ferry_batch_check(call.batch, call.batch_len, &count) != FERRY_OK ||
            count != env->batch->n_items)
            abort();
        const uint8_t *p = call.batch, *end = p + call.batch_len, *item;
        size_t item_len;
        for (size_t i = 0; ferry_batch_next(&p, end, &item, &item_len) == 1; i++) {
            if (item_len != env->batch->items[i].len ||
                (item_len && memcmp(item, env->batch->items[i].data, item_len) != 0))
                abort();
            (void)LLVMFuzzerTestOneInput(item, item_len); /* items as messages of their own */
        }
    }

    /* What decoded packs, decodes again, and packs into the same bytes. */
    size_t len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    uint8_t *buf2 = malloc(len ? len : 1);
    if (buf && buf2) {
        if (ferry__envelope__pack(env, buf) != len)
            abort();
        Ferry__Envelope *again = NULL;
        if (ferry_envelope_decode(buf, len, &again) != FERRY_OK)
            abort();
        if (again->body_case != env->body_case || ferry__envelope__get_packed_size(again) != len ||
            ferry__envelope__pack(again, buf2) != len || memcmp(buf, buf2, len) != 0)
            abort();
        ferry_envelope_free(again);
    }
    free(buf);
    free(buf2);
    ferry_envelope_free(env);
    return 0;
}

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

/* The deepest nesting level in m (m at level), and whether a field numbered
 * 0 sits anywhere in it: what ferry_envelope_decode refuses and protobuf-c
 * takes. Recursion as deep as protobuf-c's own unpack went. */
static int deepest(const ProtobufCMessage *m, int level, int *field_zero)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        *field_zero |= m->unknown_fields[i].tag == 0;
    int max = level;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *at = (const char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        size_t n = 1;
        ProtobufCMessage *const *subs = (ProtobufCMessage *const *)at;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            n = *(const size_t *)((const char *)m + f->quantifier_offset);
            subs = *(ProtobufCMessage *const *const *)at;
        }
        for (size_t k = 0; k < n; k++) {
            if (!subs[k])
                continue;
            int d2 = deepest(subs[k], level + 1, field_zero);
            max = d2 > max ? d2 : max;
        }
    }
    return max;
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
        int field_zero = 0;
        int too_deep = deepest(&ref->base, 0, &field_zero) > FERRY_MAX_NESTING;
        int why = (err == FERRY_EVERSION && ref->version != FERRY_PROTOCOL_VERSION) ||
                  (err == FERRY_EPROTO &&
                   (ref->body_case == FERRY__ENVELOPE__BODY__NOT_SET || field_zero || too_deep));
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

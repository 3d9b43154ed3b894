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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The broker's peek reads the top level only: it may pass what the
     * decode refuses, never refuse what the decode passes. */
    ferry_wire_call call;
    ferry_err peeked = ferry_wire_peek_call(data, size, &call);
    Ferry__Envelope *env = NULL;
    if (ferry_envelope_decode(data, size, &env) != FERRY_OK)
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

/*
 * codec_agree: what the codec tests (tests/unit/lib_codec_*_test.c) share.
 * agree() runs protobuf-c's unpack (the reference), ferry_envelope_decode and
 * ferry_wire_peek_call on the same bytes and asserts they agree: the same
 * verdict, the same message (both pack to the same bytes, and
 * ferry_envelope_pack writes them too), the same routing fields. samples()
 * packs one envelope of every body the broker sees, for the tests to cut,
 * mutate and splice.
 */
#ifndef CODEC_AGREE_H
#define CODEC_AGREE_H

#include "ferry_value.h"
#include "ferry_wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Inputs compared, and of them the cases the peek passed and the decode
 * refused (each test executable has its own). */
static size_t codec_checked;
static size_t codec_peek_only;

#define NSAMPLES 8

/* True when m or a message in it holds a field numbered 0: protobuf-c takes
 * one whose key is not minimally encoded, as an unknown field, but Ferry
 * refuses it (protobuf-c would pack a key it refuses to read back). */
static inline int has_field_zero(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *at = (const char *)m + f->offset;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)at;
            for (size_t k = 0; k < n; k++)
                if (has_field_zero(arr[k]))
                    return 1;
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)at;
            if (sub && has_field_zero(sub))
                return 1;
        }
    }
    return 0;
}

/* What protobuf-c's own unpack says of data (the reference): FERRY_OK with
 * *out, or the error ferry_envelope_decode must give. too_deep: nested past
 * FERRY_MAX_NESTING, which protobuf-c takes and Ferry refuses. */
static inline ferry_err codec_reference(const uint8_t *data, size_t len, int too_deep,
                                        Ferry__Envelope **out)
{
    *out = ferry__envelope__unpack(NULL, len, data);
    ferry_err err = FERRY_OK;
    if (!*out || has_field_zero(&(*out)->base))
        err = FERRY_EPROTO;
    else if ((*out)->version != FERRY_PROTOCOL_VERSION)
        err = FERRY_EVERSION;
    else if ((*out)->body_case == FERRY__ENVELOPE__BODY__NOT_SET)
        err = FERRY_EPROTO;
    if (too_deep && err == FERRY_OK)
        err = FERRY_EPROTO;
    if (err != FERRY_OK && *out) {
        ferry__envelope__free_unpacked(*out, NULL);
        *out = NULL;
    }
    return err;
}

static inline uint8_t *repack(const Ferry__Envelope *env, size_t *len)
{
    *len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    ferry__envelope__pack(env, buf);
    return buf;
}

/* Runs protobuf-c, ferry_envelope_decode and ferry_wire_peek_call on data
 * and asserts they agree: same verdict, same message, same routing fields. */
static inline void agree_depth(const uint8_t *data, size_t len, int too_deep)
{
    Ferry__Envelope *ref = NULL, *env = NULL;
    ferry_err rerr = codec_reference(data, len, too_deep, &ref);
    ferry_err derr = ferry_envelope_decode(data, len, &env);
    ferry_wire_call c;
    ferry_err perr = ferry_wire_peek_call(data, len, &c);
    /* The peek reads the top level only: it may pass what the decode refuses
     * (a Command or Reply with bad values), never the other way round, and
     * what it refuses the decode refuses too (a top-level error with a wrong
     * version may say bad_version where the decode says bad_message). */
    int routed = c.body == FERRY__ENVELOPE__BODY_COMMAND || c.body == FERRY__ENVELOPE__BODY_REPLY;
    int peek_ok = perr == rerr || (rerr != FERRY_OK && perr == FERRY_OK) ||
                  (rerr == FERRY_EPROTO && perr == FERRY_EVERSION);
    if (derr != rerr || !peek_ok) {
        fprintf(stderr, "protobuf-c %s, decode %s, peek %s on %zu bytes:", ferry_err_code(rerr),
                ferry_err_code(derr), ferry_err_code(perr), len);
        for (size_t i = 0; i < len; i++)
            fprintf(stderr, " %02x", data[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(derr, rerr);
    assert_true(peek_ok);
    assert_true(perr != FERRY_OK || c.body != FERRY__ENVELOPE__BODY__NOT_SET);
    assert_true(routed || (c.engine_id == NULL && c.call_id == 0));
    codec_checked++;
    if (rerr != FERRY_OK) {
        codec_peek_only += perr == FERRY_OK;
        return;
    }
    /* The same message: both pack to the same bytes. */
    size_t rlen, dlen;
    uint8_t *rbytes = repack(ref, &rlen), *dbytes = repack(env, &dlen);
    assert_int_equal(rlen, dlen);
    assert_memory_equal(rbytes, dbytes, rlen);
    /* And ferry_envelope_pack writes those bytes too, whatever it was given. */
    assert_int_equal(ferry_envelope_packed_size(ref), rlen);
    assert_int_equal(ferry_envelope_pack(ref, dbytes), rlen);
    assert_memory_equal(rbytes, dbytes, rlen);
    free(rbytes);
    free(dbytes);
    assert_int_equal(c.body, ref->body_case);
    if (ref->body_case == FERRY__ENVELOPE__BODY_COMMAND) {
        const Ferry__Command *cmd = ref->command;
        assert_int_equal(c.engine_id_len, cmd->engine_id.len);
        if (cmd->engine_id.len)
            assert_memory_equal(c.engine_id, cmd->engine_id.data, cmd->engine_id.len);
        else
            assert_null(c.engine_id);
        assert_true(c.call_id == cmd->call_id);
        assert_int_equal(c.function_len, strlen(cmd->function));
        if (c.function_len)
            assert_memory_equal(c.function, cmd->function, c.function_len);
        else
            assert_null(c.function);
        assert_int_equal(c.timeout_ms, cmd->timeout_ms);
        assert_int_equal(c.has_error, 0);
        assert_string_equal(env->command->function, cmd->function);
    } else if (ref->body_case == FERRY__ENVELOPE__BODY_REPLY) {
        const Ferry__Reply *r = ref->reply;
        assert_int_equal(c.engine_id_len, r->engine_id.len);
        if (r->engine_id.len)
            assert_memory_equal(c.engine_id, r->engine_id.data, r->engine_id.len);
        assert_true(c.call_id == r->call_id);
        assert_int_equal(c.has_error, r->error != NULL);
        assert_int_equal(env->reply->error != NULL, r->error != NULL);
        assert_null(c.function);
    } else {
        assert_null(c.engine_id);
        assert_true(c.call_id == 0);
    }
    ferry__envelope__free_unpacked(ref, NULL);
    ferry_envelope_free(env);
}

static inline void agree(const uint8_t *data, size_t len)
{
    agree_depth(data, len, 0);
}

static inline uint8_t *pack(const Ferry__Envelope *env, size_t *len)
{
    *len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    ferry__envelope__pack(env, buf);
    return buf;
}

static inline Ferry__Value *nested(void)
{
    Ferry__Value *t = ferry_value_table();
    ferry_table_append(t, ferry_value_int(-7));
    ferry_table_append(t, ferry_value_nil());
    ferry_table_append(t, ferry_value_string("a\0b", 3));
    Ferry__Value *inner = ferry_value_table();
    ferry_table_set(inner, ferry_value_cstring("x"), ferry_value_float(2.5));
    ferry_table_set(inner, ferry_value_bool(1), ferry_value_bool(0));
    ferry_table_set(t, ferry_value_cstring("inner"), inner);
    return t;
}

/* Packed samples of every body the broker sees, into bufs/lens (returns how many). */
static inline size_t samples(uint8_t **bufs, size_t *lens)
{
    size_t n = 0;
    Ferry__Envelope env;

    /* Commands: small, with nested args, with an odd function name. */
    Ferry__Value *args[3] = {ferry_value_int(1), nested(), ferry_value_cstring("hi")};
    const char *functions[] = {"echo", "http.get", "a"};
    for (int i = 0; i < 3; i++) {
        Ferry__Command cmd = FERRY__COMMAND__INIT;
        cmd.engine_id.data = (uint8_t *)"engine-host-123-0badf00d";
        cmd.engine_id.len = 24;
        cmd.call_id = i == 2 ? UINT64_MAX : (uint64_t)i * 1000003u;
        cmd.function = (char *)functions[i];
        cmd.args = args;
        cmd.n_args = (size_t)i + 1;
        cmd.timeout_ms = i == 1 ? UINT32_MAX : 30000;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
        env.command = &cmd;
        bufs[n] = pack(&env, &lens[n]);
        n++;
    }
    /* Replies: values, an error. */
    Ferry__Error error = FERRY__ERROR__INIT;
    error.code = "timeout";
    error.message = "too slow";
    for (int i = 0; i < 2; i++) {
        Ferry__Reply r = FERRY__REPLY__INIT;
        r.engine_id.data = (uint8_t *)"e1";
        r.engine_id.len = 2;
        r.call_id = 42;
        if (i == 0) {
            r.values = args;
            r.n_values = 3;
        } else {
            r.error = &error;
        }
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_REPLY;
        env.reply = &r;
        bufs[n] = pack(&env, &lens[n]);
        n++;
    }
    for (int i = 0; i < 3; i++)
        ferry_value_free(args[i]);
    /* Other bodies: a Ready, a Heartbeat, a Submit. */
    Ferry__FunctionSpec spec = FERRY__FUNCTION_SPEC__INIT;
    spec.name = "echo";
    Ferry__FunctionSpec *specs[] = {&spec};
    Ferry__Ready ready = FERRY__READY__INIT;
    ready.functions = specs;
    ready.n_functions = 1;
    ready.credit = 1024;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    bufs[n] = pack(&env, &lens[n]);
    n++;
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    bufs[n] = pack(&env, &lens[n]);
    n++;
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.request_id = 9;
    sub.source.data = (uint8_t *)"return 1";
    sub.source.len = 8;
    sub.name = "x.lua";
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    bufs[n] = pack(&env, &lens[n]);
    n++;
    return n;
}

#endif

/*
 * lib_wire_test: ferry_wire_peek_call and ferry_envelope_decode against
 * protobuf-c's own unpack, and ferry_envelope_pack against its pack.
 *
 * The broker routes Commands and Replies on what the peek reads and never
 * decodes them, and the decoder builds Commands and Replies itself: both must
 * refuse exactly what protobuf-c refuses (plus nesting past
 * FERRY_MAX_NESTING), the decoder must build the same message, and the peek
 * read the same routing fields. Each case runs all three on the same bytes:
 * valid envelopes of every body, every truncation of them, single-byte
 * mutations, splices, and random bytes.
 */
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

static size_t checked;
static size_t peek_only; /* cases the peek passed and the decode refused */

/* True when m or a message in it holds a field numbered 0: protobuf-c takes
 * one whose key is not minimally encoded, as an unknown field, but Ferry
 * refuses it (protobuf-c would pack a key it refuses to read back). */
static int has_field_zero(const ProtobufCMessage *m)
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
static ferry_err reference(const uint8_t *data, size_t len, int too_deep, Ferry__Envelope **out)
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

static uint8_t *repack(const Ferry__Envelope *env, size_t *len)
{
    *len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    ferry__envelope__pack(env, buf);
    return buf;
}

/* Runs protobuf-c, ferry_envelope_decode and ferry_wire_peek_call on data
 * and asserts they agree: same verdict, same message, same routing fields. */
static void agree_depth(const uint8_t *data, size_t len, int too_deep)
{
    Ferry__Envelope *ref = NULL, *env = NULL;
    ferry_err rerr = reference(data, len, too_deep, &ref);
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
    checked++;
    if (rerr != FERRY_OK) {
        peek_only += perr == FERRY_OK;
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

static void agree(const uint8_t *data, size_t len)
{
    agree_depth(data, len, 0);
}

static uint8_t *pack(const Ferry__Envelope *env, size_t *len)
{
    *len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    ferry__envelope__pack(env, buf);
    return buf;
}

static Ferry__Value *nested(void)
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
static size_t samples(uint8_t **bufs, size_t *lens)
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

#define NSAMPLES 8

static void test_valid_envelopes_agree(void **state)
{
    (void)state;
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    assert_int_equal(n, NSAMPLES);
    for (size_t i = 0; i < n; i++) {
        ferry_wire_call c;
        assert_int_equal(ferry_wire_peek_call(bufs[i], lens[i], &c), FERRY_OK);
        agree(bufs[i], lens[i]);
        free(bufs[i]);
    }
}

/* ferry_envelope_pack writes what protobuf-c writes, for every sample. */
static void test_pack_matches_protobuf_c(void **state)
{
    (void)state;
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    for (size_t i = 0; i < n; i++) {
        Ferry__Envelope *env = NULL;
        assert_int_equal(ferry_envelope_decode(bufs[i], lens[i], &env), FERRY_OK);
        size_t size = ferry_envelope_packed_size(env);
        assert_int_equal(size, ferry__envelope__get_packed_size(env));
        uint8_t *mine = malloc(size), *theirs = malloc(size);
        assert_int_equal(ferry_envelope_pack(env, mine), size);
        assert_int_equal(ferry__envelope__pack(env, theirs), size);
        assert_memory_equal(mine, theirs, size);
        free(mine);
        free(theirs);
        ferry_envelope_free(env);
        free(bufs[i]);
    }
    /* Zero call_id and timeout, no args, an error with empty fields. */
    Ferry__Error error = FERRY__ERROR__INIT;
    Ferry__Reply r = FERRY__REPLY__INIT;
    r.engine_id.data = (uint8_t *)"e";
    r.engine_id.len = 1;
    r.error = &error;
    Ferry__Command c = FERRY__COMMAND__INIT;
    c.engine_id.data = (uint8_t *)"engine";
    c.engine_id.len = 6;
    c.function = "";
    Ferry__Envelope envs[3];
    for (int i = 0; i < 3; i++)
        ferry_envelope_init(&envs[i]);
    envs[0].body_case = FERRY__ENVELOPE__BODY_REPLY;
    envs[0].reply = &r;
    envs[1].body_case = FERRY__ENVELOPE__BODY_COMMAND;
    envs[1].command = &c;
    envs[2].version = 0;
    envs[2].body_case = FERRY__ENVELOPE__BODY_COMMAND;
    envs[2].command = &c;
    for (int i = 0; i < 3; i++) {
        size_t size = ferry_envelope_packed_size(&envs[i]);
        assert_int_equal(size, ferry__envelope__get_packed_size(&envs[i]));
        uint8_t mine[64], theirs[64];
        assert_true(size <= sizeof mine);
        assert_int_equal(ferry_envelope_pack(&envs[i], mine), size);
        ferry__envelope__pack(&envs[i], theirs);
        assert_memory_equal(mine, theirs, size);
    }
}

static void test_every_truncation_agrees(void **state)
{
    (void)state;
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    for (size_t i = 0; i < n; i++) {
        for (size_t cut = 0; cut < lens[i]; cut++)
            agree(bufs[i], cut);
        free(bufs[i]);
    }
}

static void test_byte_mutations_agree(void **state)
{
    (void)state;
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    static const uint8_t values[] = {0x00, 0x01, 0x02, 0x05, 0x07, 0x08, 0x0a, 0x12,
                                     0x2a, 0x7f, 0x80, 0xff};
    for (size_t i = 0; i < n; i++) {
        uint8_t *copy = malloc(lens[i]);
        for (size_t at = 0; at < lens[i]; at++) {
            for (size_t v = 0; v < sizeof values; v++) {
                memcpy(copy, bufs[i], lens[i]);
                copy[at] = values[v];
                agree(copy, lens[i]);
                memcpy(copy, bufs[i], lens[i]);
                copy[at] ^= (uint8_t)(1u << (v % 8));
                agree(copy, lens[i]);
            }
        }
        free(copy);
        free(bufs[i]);
    }
}

/* Two envelopes' bytes end to end, and one body repeated: protobuf-c merges or
 * replaces fields given twice; the peek must read what it keeps. */
static void test_splices_agree(void **state)
{
    (void)state;
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            uint8_t *both = malloc(lens[i] + lens[j]);
            memcpy(both, bufs[i], lens[i]);
            memcpy(both + lens[i], bufs[j], lens[j]);
            agree(both, lens[i] + lens[j]);
            /* Every split point: the head of one and the tail of the other. */
            for (size_t cut = 0; cut <= lens[i]; cut += 3) {
                memcpy(both, bufs[i], cut);
                memcpy(both + cut, bufs[j], lens[j]);
                agree(both, cut + lens[j]);
            }
            free(both);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
}

/* Hand-made corner cases of the framing. */
static void test_framing_corners_agree(void **state)
{
    (void)state;
    static const uint8_t cases[][16] = {
        /* version 1, Heartbeat with a non-minimal key (field 4 as 0xa2 0x80 0x00) */
        {0x08, 0x01, 0xa2, 0x80, 0x00, 0x00},
        /* a key of 6 bytes */
        {0x08, 0x01, 0xa2, 0x80, 0x80, 0x80, 0x80, 0x00, 0x00},
        /* a length prefix of 6 bytes */
        {0x08, 0x01, 0x22, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
        /* a non-minimal field number 0 */
        {0x08, 0x01, 0x82, 0x00, 0x00, 0x22, 0x00},
        /* version as 10-byte varint (low 32 bits = 1) */
        {0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x22, 0x00},
        /* version as 11-byte varint */
        {0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x22, 0x00},
        /* version 2^32 + 1 */
        {0x08, 0x81, 0x80, 0x80, 0x80, 0x10, 0x22, 0x00},
        /* version as a 64-bit field */
        {0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x22, 0x00},
        /* a group wire type */
        {0x08, 0x01, 0x23, 0x24, 0x22, 0x00},
        /* unknown fields of every wire type */
        {0x08, 0x01, 0x60, 0x05, 0x69, 1, 2, 3, 4, 5, 6, 7, 8, 0x22, 0x00},
        {0x08, 0x01, 0x6d, 1, 2, 3, 4, 0x72, 0x01, 0x00, 0x22, 0x00},
        /* a Command whose call_id is length-delimited */
        {0x08, 0x01, 0x2a, 0x04, 0x12, 0x02, 0x01, 0x02},
        /* a Command whose function holds a zero byte, engine id set */
        {0x08, 0x01, 0x2a, 0x09, 0x0a, 0x01, 0x65, 0x1a, 0x04, 0x65, 0x00, 0x68, 0x6f},
        /* a Reply whose error is a varint */
        {0x08, 0x01, 0x32, 0x05, 0x0a, 0x01, 0x65, 0x20, 0x01},
        /* an empty Reply twice, then a Command */
        {0x08, 0x01, 0x32, 0x00, 0x32, 0x00, 0x2a, 0x03, 0x0a, 0x01, 0x65},
        /* a Value nil as a 32-bit field (bools take any wire type) */
        {0x08, 0x01, 0x2a, 0x07, 0x22, 0x05, 0x0d, 0x01, 0x00, 0x00, 0x00},
    };
    static const size_t lens[] = {6, 9, 9, 7, 13, 14, 8, 11, 6, 15, 12, 8, 13, 9, 11, 11};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (size_t cut = 0; cut <= lens[i]; cut++)
            agree(cases[i], cut);
    }
}

static void test_deep_nesting_agrees(void **state)
{
    (void)state;
    /* Value{table{array[Value{table{...}}]}}: 2 levels per step, around the limit. */
    for (int depth = FERRY_MAX_NESTING / 2 - 3; depth <= FERRY_MAX_NESTING / 2 + 3; depth++) {
        Ferry__Value *v = ferry_value_int(1);
        for (int i = 0; i < depth; i++) {
            Ferry__Value *t = ferry_value_table();
            ferry_table_append(t, v);
            v = t;
        }
        Ferry__Value *args[] = {v};
        Ferry__Command cmd = FERRY__COMMAND__INIT;
        cmd.engine_id.data = (uint8_t *)"e";
        cmd.engine_id.len = 1;
        cmd.function = "echo";
        cmd.args = args;
        cmd.n_args = 1;
        Ferry__Envelope env;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
        env.command = &cmd;
        size_t len;
        uint8_t *buf = pack(&env, &len);
        /* Envelope 0, Command 1, Value 2, then Table and Value per step. */
        agree_depth(buf, len, 2 + 2 * depth > FERRY_MAX_NESTING);
        free(buf);
        ferry_value_free(v);
    }
}

static void test_random_bytes_agree(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    uint8_t buf[64];
    for (int round = 0; round < 200000; round++) {
        size_t len = (size_t)(round % 64);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        /* Start most of them like an envelope so that they get somewhere. */
        if (len >= 4 && round % 4 != 0) {
            buf[0] = 0x08;
            buf[1] = 0x01;
            buf[2] = round % 3 == 0 ? 0x32 : 0x2a;
            buf[3] = (uint8_t)(len - 4 - (size_t)(round % 5 == 0));
        }
        agree(buf, len);
    }
}

/* A Command whose argument does not decode (an integer sent as bytes): the
 * peek reads its routing fields all the same, so the broker forwards it and
 * the worker can answer it; the decode refuses it. */
static void test_peek_reads_routing_of_bad_values(void **state)
{
    (void)state;
    static const uint8_t bad[] = {
        0x08, 0x01,                   /* version 1 */
        0x2a, 0x14,                   /* field 5: Command, 20 bytes */
        0x0a, 0x02, 'e', '1',         /* engine_id "e1" */
        0x10, 0x2a,                   /* call_id 42 */
        0x1a, 0x04, 'e', 'c', 'h', 'o', /* function "echo" */
        0x22, 0x03, 0x1a, 0x01, 0x02, /* args: a Value whose integer (3) is length-delimited */
        0x28, 0xe8, 0x07,             /* timeout_ms 1000 */
    };
    Ferry__Envelope *env = NULL;
    assert_int_equal(ferry_envelope_decode(bad, sizeof bad, &env), FERRY_EPROTO);
    ferry_wire_call c;
    assert_int_equal(ferry_wire_peek_call(bad, sizeof bad, &c), FERRY_OK);
    assert_int_equal(c.body, FERRY__ENVELOPE__BODY_COMMAND);
    assert_int_equal(c.engine_id_len, 2);
    assert_memory_equal(c.engine_id, "e1", 2);
    assert_true(c.call_id == 42);
    assert_int_equal(c.function_len, 4);
    assert_memory_equal(c.function, "echo", 4);
    assert_int_equal(c.timeout_ms, 1000);
    agree(bad, sizeof bad);
}

/* More values than the decoder keeps from its first pass (16): the rest are
 * read in a second one, in order. */
static void test_many_values_agree(void **state)
{
    (void)state;
    enum { N = 40 };
    Ferry__Value *values[N];
    for (int i = 0; i < N; i++)
        values[i] = i % 7 == 3 ? nested() : ferry_value_int(i * 1000);
    for (int reply = 0; reply < 2; reply++) {
        for (size_t n = 15; n <= N; n += n < 18 ? 1 : 11) {
            Ferry__Command cmd = FERRY__COMMAND__INIT;
            Ferry__Reply r = FERRY__REPLY__INIT;
            Ferry__Envelope env;
            ferry_envelope_init(&env);
            if (reply) {
                r.engine_id.data = (uint8_t *)"e1";
                r.engine_id.len = 2;
                r.call_id = 7;
                r.values = values;
                r.n_values = n;
                env.body_case = FERRY__ENVELOPE__BODY_REPLY;
                env.reply = &r;
            } else {
                cmd.engine_id.data = (uint8_t *)"e1";
                cmd.engine_id.len = 2;
                cmd.call_id = 7;
                cmd.function = "f";
                cmd.args = values;
                cmd.n_args = n;
                cmd.timeout_ms = 5;
                env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
                env.command = &cmd;
            }
            size_t len;
            uint8_t *buf = pack(&env, &len);
            agree(buf, len);
            Ferry__Envelope *got = NULL;
            assert_int_equal(ferry_envelope_decode(buf, len, &got), FERRY_OK);
            Ferry__Value **v = reply ? got->reply->values : got->command->args;
            assert_int_equal(reply ? got->reply->n_values : got->command->n_args, n);
            for (size_t i = 0; i < n; i++)
                assert_true(ferry_value_equal(v[i], values[i]));
            ferry_envelope_free(got);
            free(buf);
        }
    }
    for (int i = 0; i < N; i++)
        ferry_value_free(values[i]);
}

/* One rule for function names: 1 to 255 bytes of UTF-8 without zero bytes. */
static void test_function_name_rule(void **state)
{
    (void)state;
    char name[300];
    memset(name, 'n', sizeof name);
    assert_true(ferry_wire_function_name_ok("http.get", 8));
    assert_true(ferry_wire_function_name_ok(name, 1));
    assert_true(ferry_wire_function_name_ok(name, FERRY_FUNCTION_NAME_MAX));
    assert_false(ferry_wire_function_name_ok(name, FERRY_FUNCTION_NAME_MAX + 1));
    assert_false(ferry_wire_function_name_ok(name, 0));
    assert_false(ferry_wire_function_name_ok(NULL, 0));
    assert_false(ferry_wire_function_name_ok("a\0b", 3));
    assert_false(ferry_wire_function_name_ok("bad\xff", 4));
    assert_false(ferry_wire_function_name_ok("\xc0\xaf", 2)); /* overlong */
    assert_true(ferry_wire_function_name_ok("caf\xc3\xa9", 5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_envelopes_agree),
        cmocka_unit_test(test_function_name_rule),
        cmocka_unit_test(test_pack_matches_protobuf_c),
        cmocka_unit_test(test_every_truncation_agrees),
        cmocka_unit_test(test_byte_mutations_agree),
        cmocka_unit_test(test_splices_agree),
        cmocka_unit_test(test_framing_corners_agree),
        cmocka_unit_test(test_deep_nesting_agrees),
        cmocka_unit_test(test_random_bytes_agree),
        cmocka_unit_test(test_peek_reads_routing_of_bad_values),
        cmocka_unit_test(test_many_values_agree),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr, "lib_wire_test: %zu inputs compared, %zu of them passed by the peek alone\n",
            checked, peek_only);
    return rc;
}

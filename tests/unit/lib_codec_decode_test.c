/*
 * lib_codec_decode_test: ferry_envelope_decode (lib/codec_decode.c) against
 * protobuf-c's own unpack.
 *
 * The decoder builds Commands and Replies itself: it must refuse exactly
 * what protobuf-c refuses (plus nesting past FERRY_MAX_NESTING) and build
 * the same message. Each case also runs the peek and the packer on the same
 * bytes (codec_agree.h): valid envelopes of every body, every truncation of
 * them, single-byte mutations, splices, framing corners and random bytes.
 * What the hand paths do not know (fields the table lacks, wire types it
 * does not expect, every field while the table and the schema disagree)
 * decodes as protobuf-c decodes it.
 */
#include "codec_agree.h"
#include "codec_fields.h"

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
    static const uint8_t values[] = {0x00, 0x01, 0x02, 0x05, 0x07, 0x08,
                                     0x0a, 0x12, 0x2a, 0x7f, 0x80, 0xff};
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

/* Envelopes built by hand with what the codec's table lacks. */
static const struct {
    const char *what;
    uint8_t bytes[32];
    size_t len;
} unknowns[] = {
    {"Command.6 (a varint, as `uint32 priority = 6` would send)",
     {0x08, 0x01, 0x2a, 0x0d, 0x0a, 0x01, 'e', 0x10, 0x07, 0x1a, 0x04, 'e', 'c', 'h', 'o', 0x30,
      0x05},
     17},
    {"Command.9 as a 32-bit field",
     {0x08, 0x01, 0x2a, 0x08, 0x0a, 0x01, 'e', 0x4d, 1, 2, 3, 4},
     12},
    {"Reply.values[0] of kind 7 (a varint)",
     {0x08, 0x01, 0x32, 0x09, 0x0a, 0x01, 'e', 0x10, 0x01, 0x1a, 0x02, 0x38, 0x01},
     13},
    {"a Value of kind 7 (bytes) inside a table",
     {0x08, 0x01, 0x32, 0x0e, 0x0a, 0x01, 'e', 0x1a, 0x09, 0x32, 0x07, 0x0a, 0x05, 0x3a, 0x03, 'a',
      'b', 'c'},
     18},
    {"Error.3",
     {0x08, 0x01, 0x32, 0x0a, 0x0a, 0x01, 'e', 0x22, 0x05, 0x0a, 0x01, 'x', 0x18, 0x01},
     14},
    {"Envelope.13 before a Command", {0x08, 0x01, 0x68, 0x2a, 0x2a, 0x03, 0x0a, 0x01, 'e'}, 9},
    {"Value.boolean as a 64-bit field (protobuf-c reads bools from any wire type)",
     {0x08, 0x01, 0x2a, 0x0e, 0x0a, 0x01, 'e', 0x22, 0x09, 0x11, 1, 0, 0, 0, 0, 0, 0, 0},
     18},
    {"Command.timeout_ms length-delimited (protobuf-c refuses it)",
     {0x08, 0x01, 0x2a, 0x05, 0x0a, 0x01, 'e', 0x2a, 0x00},
     9},
};

/* Each decodes exactly as protobuf-c decodes it (agree: same verdict, same
 * message, unknown fields kept), every truncation too. */
static void test_unknowns_decode_as_protobuf_c(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof unknowns / sizeof unknowns[0]; i++) {
        print_message("%s\n", unknowns[i].what);
        for (size_t cut = 0; cut <= unknowns[i].len; cut++)
            agree(unknowns[i].bytes, cut);
        /* All whole ones decode but the last, which protobuf-c refuses. */
        Ferry__Envelope *env = NULL;
        int last = i + 1 == sizeof unknowns / sizeof unknowns[0];
        assert_int_equal(ferry_envelope_decode(unknowns[i].bytes, unknowns[i].len, &env),
                         last ? FERRY_EPROTO : FERRY_OK);
        ferry_envelope_free(env);
    }
    /* The priority a newer engine sends is kept, not dropped: the decoded
     * Command packs into the bytes it came from. */
    Ferry__Envelope *env = NULL;
    assert_int_equal(ferry_envelope_decode(unknowns[0].bytes, unknowns[0].len, &env), FERRY_OK);
    assert_string_equal(env->command->function, "echo");
    uint8_t again[32];
    assert_int_equal(ferry_envelope_packed_size(env), unknowns[0].len);
    assert_int_equal(ferry_envelope_pack(env, again), unknowns[0].len);
    assert_memory_equal(again, unknowns[0].bytes, unknowns[0].len);
    ferry_envelope_free(env);
}

/* While the table and the schema disagree, everything goes to protobuf-c and
 * still agrees with it. */
static void test_drift_decodes_with_protobuf_c(void **state)
{
    (void)state;
    codec_schema_force(CODEC_SCHEMA_DRIFTED);
    assert_false(codec_fast());
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    for (size_t i = 0; i < n; i++) {
        for (size_t cut = 0; cut <= lens[i]; cut++)
            agree(bufs[i], cut);
        free(bufs[i]);
    }
    for (size_t i = 0; i < sizeof unknowns / sizeof unknowns[0]; i++)
        agree(unknowns[i].bytes, unknowns[i].len);
    codec_schema_force(CODEC_SCHEMA_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_envelopes_agree),
        cmocka_unit_test(test_every_truncation_agrees),
        cmocka_unit_test(test_byte_mutations_agree),
        cmocka_unit_test(test_splices_agree),
        cmocka_unit_test(test_framing_corners_agree),
        cmocka_unit_test(test_deep_nesting_agrees),
        cmocka_unit_test(test_random_bytes_agree),
        cmocka_unit_test(test_many_values_agree),
        cmocka_unit_test(test_unknowns_decode_as_protobuf_c),
        cmocka_unit_test(test_drift_decodes_with_protobuf_c),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr,
            "lib_codec_decode_test: %zu inputs compared, %zu of them passed by the peek alone\n",
            codec_checked, codec_peek_only);
    return rc;
}

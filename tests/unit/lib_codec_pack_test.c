/*
 * lib_codec_pack_test: ferry_envelope_packed_size and ferry_envelope_pack
 * (lib/codec_pack.c) write byte for byte what protobuf-c's pack writes,
 * through the hand packer or, for what it does not know (unknown fields at
 * any level, every message while the table and the schema disagree),
 * through protobuf-c.
 */
#include "codec_agree.h"
#include "codec_fields.h"

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

/* Decodes data (it must decode) and asserts that ferry_envelope_pack writes
 * what protobuf-c writes for the result. */
static void packs_as_protobuf_c(const uint8_t *data, size_t len)
{
    Ferry__Envelope *env = NULL;
    assert_int_equal(ferry_envelope_decode(data, len, &env), FERRY_OK);
    size_t size = ferry_envelope_packed_size(env);
    assert_int_equal(size, ferry__envelope__get_packed_size(env));
    uint8_t *mine = malloc(size + 1), *theirs = malloc(size + 1);
    assert_int_equal(ferry_envelope_pack(env, mine), size);
    assert_int_equal(ferry_envelope_pack_sized(env, size, theirs), size);
    assert_memory_equal(mine, theirs, size);
    assert_int_equal(ferry__envelope__pack(env, theirs), size);
    assert_memory_equal(mine, theirs, size);
    free(mine);
    free(theirs);
    ferry_envelope_free(env);
}

/* Fields the table lacks, at each level the hand packer writes: they are
 * packed (by protobuf-c), not dropped. */
static void test_unknown_fields_pack_as_protobuf_c(void **state)
{
    (void)state;
    static const struct {
        uint8_t bytes[32];
        size_t len;
    } cases[] = {
        /* Command.6 = 5 (`uint32 priority = 6` from a newer peer) */
        {{0x08, 0x01, 0x2a, 0x0d, 0x0a, 0x01, 'e', 0x10, 0x07, 0x1a, 0x04, 'e', 'c', 'h', 'o', 0x30,
          0x05},
         17},
        /* a Command argument of Value kind 7 */
        {{0x08, 0x01, 0x2a, 0x0b, 0x0a, 0x01, 'e', 0x22, 0x02, 0x38, 0x01, 0x22, 0x02, 0x18, 0x02},
         15},
        /* a Reply value: a table holding a Value of kind 7 */
        {{0x08, 0x01, 0x32, 0x0e, 0x0a, 0x01, 'e', 0x1a, 0x09, 0x32, 0x07, 0x0a, 0x05, 0x3a, 0x03,
          'a', 'b', 'c'},
         18},
        /* a Pair with a field 3 */
        {{0x08, 0x01, 0x32, 0x0f, 0x0a, 0x01, 'e', 0x1a, 0x0a, 0x32, 0x08, 0x12, 0x06, 0x18, 0x01,
          0x0a, 0x02, 0x08, 0x01},
         19},
        /* Envelope.13 (12 is Batch) */
        {{0x08, 0x01, 0x68, 0x2a, 0x2a, 0x03, 0x0a, 0x01, 'e'}, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        packs_as_protobuf_c(cases[i].bytes, cases[i].len);
}

/* While the table and the schema disagree, protobuf-c packs everything. */
static void test_drift_packs_with_protobuf_c(void **state)
{
    (void)state;
    codec_schema_force(CODEC_SCHEMA_DRIFTED);
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    for (size_t i = 0; i < n; i++) {
        packs_as_protobuf_c(bufs[i], lens[i]);
        free(bufs[i]);
    }
    codec_schema_force(CODEC_SCHEMA_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_matches_protobuf_c),
        cmocka_unit_test(test_unknown_fields_pack_as_protobuf_c),
        cmocka_unit_test(test_drift_packs_with_protobuf_c),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr,
            "lib_codec_pack_test: %zu inputs compared, %zu of them passed by the peek alone\n",
            codec_checked, codec_peek_only);
    return rc;
}

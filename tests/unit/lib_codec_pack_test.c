/*
 * lib_codec_pack_test: ferry_envelope_packed_size and ferry_envelope_pack
 * (lib/codec_pack.c) write byte for byte what protobuf-c's pack writes.
 */
#include "codec_agree.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_matches_protobuf_c),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr,
            "lib_codec_pack_test: %zu inputs compared, %zu of them passed by the peek alone\n",
            codec_checked, codec_peek_only);
    return rc;
}

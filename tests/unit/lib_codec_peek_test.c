/*
 * lib_codec_peek_test: ferry_wire_peek_call (lib/codec_peek.c).
 *
 * The broker routes Commands and Replies on what the peek reads and never
 * decodes them: the peek must never refuse what the decode passes, must read
 * the routing fields protobuf-c reads, and reads them even where the values
 * below the top level do not decode (lib_codec_decode_test runs the peek on
 * every input it compares too).
 */
#include "codec_agree.h"
#include "codec_fields.h"

/* A Command whose argument does not decode (an integer sent as bytes): the
 * peek reads its routing fields all the same, so the broker forwards it and
 * the worker can answer it; the decode refuses it. */
static void test_peek_reads_routing_of_bad_values(void **state)
{
    (void)state;
    static const uint8_t bad[] = {
        0x08, 0x01,                        /* version 1 */
        0x2a, 0x14,                        /* field 5: Command, 20 bytes */
        0x0a, 0x02, 'e',  '1',             /* engine_id "e1" */
        0x10, 0x2a,                        /* call_id 42 */
        0x1a, 0x04, 'e',  'c',  'h',  'o', /* function "echo" */
        0x22, 0x03, 0x1a, 0x01, 0x02,      /* args: a Value whose integer (3) is length-delimited */
        0x28, 0xe8, 0x07,                  /* timeout_ms 1000 */
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

/* Fields the table lacks are skipped: the routing fields around them are
 * read all the same. */
static void test_unknown_fields_are_skipped(void **state)
{
    (void)state;
    static const uint8_t cmd[] = {
        0x08, 0x01,                     /* version 1 */
        0x2a, 0x15,                     /* Command, 21 bytes */
        0x30, 0x05,                     /* field 6: a varint */
        0x0a, 0x02, 'e', '1',           /* engine_id "e1" */
        0x4d, 1,    2,   3,   4,        /* field 9: 32 bits */
        0x10, 0x2a,                     /* call_id 42 */
        0x1a, 0x04, 'e', 'c', 'h', 'o', /* function "echo" */
        0x28, 0x07,                     /* timeout_ms 7 */
    };
    ferry_wire_call c;
    assert_int_equal(ferry_wire_peek_call(cmd, sizeof cmd, &c), FERRY_OK);
    assert_int_equal(c.body, FERRY__ENVELOPE__BODY_COMMAND);
    assert_int_equal(c.engine_id_len, 2);
    assert_memory_equal(c.engine_id, "e1", 2);
    assert_true(c.call_id == 42);
    assert_int_equal(c.function_len, 4);
    assert_int_equal(c.timeout_ms, 7);
    for (size_t cut = 0; cut <= sizeof cmd; cut++)
        agree(cmd, cut);
}

/* While the table and the schema disagree the peek reads by the descriptors,
 * and still reads what protobuf-c reads. */
static void test_drift_peeks_by_the_descriptors(void **state)
{
    (void)state;
    codec_schema_force(CODEC_SCHEMA_DRIFTED);
    uint8_t *bufs[NSAMPLES];
    size_t lens[NSAMPLES];
    size_t n = samples(bufs, lens);
    for (size_t i = 0; i < n; i++) {
        for (size_t cut = 0; cut <= lens[i]; cut++)
            agree(bufs[i], cut);
        free(bufs[i]);
    }
    codec_schema_force(CODEC_SCHEMA_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peek_reads_routing_of_bad_values),
        cmocka_unit_test(test_unknown_fields_are_skipped),
        cmocka_unit_test(test_drift_peeks_by_the_descriptors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    fprintf(stderr,
            "lib_codec_peek_test: %zu inputs compared, %zu of them passed by the peek alone\n",
            codec_checked, codec_peek_only);
    return rc;
}

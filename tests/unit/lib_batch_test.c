/*
 * lib_batch_test: Batches as bytes (lib/codec_batch.c, ferry_batch in
 * lib/ferry_wire): what ferry_batch_send writes is the Batch protobuf-c
 * reads (or the lone item itself), the item walk finds what protobuf-c
 * finds, a malformed body is refused, and a batch stays within its bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_wire.h"

#include <string.h>

/* Sends b on a PAIR and returns the message the other end received (caller closes). */
static void send_and_take(ferry_batch *b, zmq_msg_t *got)
{
    void *ctx = zmq_ctx_new();
    void *out = zmq_socket(ctx, ZMQ_PAIR), *in = zmq_socket(ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(in, "inproc://lib-batch-test"), 0);
    assert_int_equal(zmq_connect(out, "inproc://lib-batch-test"), 0);
    assert_int_equal(ferry_batch_send(b, out, NULL, 0), FERRY_OK);
    zmq_msg_t m;
    zmq_msg_init(&m);
    assert_true(zmq_msg_recv(&m, in, 0) >= 0);
    zmq_msg_init(got);
    zmq_msg_copy(got, &m);
    zmq_msg_close(&m);
    zmq_close(out);
    zmq_close(in);
    zmq_ctx_term(ctx);
}

static void add(ferry_batch *b, const char *bytes)
{
    ferry_err err;
    size_t n = strlen(bytes);
    uint8_t *at = ferry_batch_add(b, n, &err);
    assert_non_null(at);
    memcpy(at, bytes, n);
}

static void test_several_items_make_a_batch(void **state)
{
    (void)state;
    ferry_batch b;
    ferry_batch_init(&b, 0);
    const char *items[] = {"first", "", "third item, longer than the others"};
    for (int i = 0; i < 3; i++)
        add(&b, items[i]);
    assert_int_equal(b.count, 3);
    zmq_msg_t m;
    send_and_take(&b, &m);
    /* protobuf-c reads it as Envelope{version 1, batch{items}}. */
    Ferry__Envelope *env = ferry__envelope__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    assert_non_null(env);
    assert_int_equal(env->version, FERRY_PROTOCOL_VERSION);
    assert_int_equal(env->body_case, FERRY__ENVELOPE__BODY_BATCH);
    assert_int_equal(env->batch->n_items, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(env->batch->items[i].len, strlen(items[i]));
        if (*items[i]) /* an empty one may have no data at all */
            assert_memory_equal(env->batch->items[i].data, items[i], strlen(items[i]));
    }
    ferry__envelope__free_unpacked(env, NULL);
    /* The peek finds the body, the walk the same items. */
    ferry_wire_call c;
    assert_int_equal(ferry_wire_peek_call(zmq_msg_data(&m), zmq_msg_size(&m), &c), FERRY_OK);
    assert_int_equal(c.body, FERRY__ENVELOPE__BODY_BATCH);
    size_t count;
    assert_int_equal(ferry_batch_check(c.batch, c.batch_len, &count), FERRY_OK);
    assert_int_equal(count, 3);
    const uint8_t *p = c.batch, *end = p + c.batch_len, *item;
    size_t len;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ferry_batch_next(&p, end, &item, &len), 1);
        assert_int_equal(len, strlen(items[i]));
        if (len)
            assert_memory_equal(item, items[i], len);
    }
    assert_int_equal(ferry_batch_next(&p, end, &item, &len), 0);
    zmq_msg_close(&m);
    ferry_batch_fini(&b);
}

static void test_a_lone_item_goes_as_itself(void **state)
{
    (void)state;
    ferry_batch b;
    ferry_batch_init(&b, 0);
    add(&b, "just me");
    zmq_msg_t m;
    send_and_take(&b, &m);
    assert_int_equal(zmq_msg_size(&m), 7);
    assert_memory_equal(zmq_msg_data(&m), "just me", 7);
    zmq_msg_close(&m);
    ferry_batch_fini(&b);
}

static void test_malformed_bodies_refused(void **state)
{
    (void)state;
    size_t count;
    static const uint8_t runs_past[] = {0x0a, 0x05, 'a', 'b'};         /* item longer than the body */
    static const uint8_t wrong_wire[] = {0x08, 0x01};                  /* items as a varint */
    static const uint8_t unknown_ok[] = {0x10, 0x01, 0x0a, 0x01, 'x'}; /* field 2 skipped */
    assert_int_equal(ferry_batch_check(runs_past, sizeof runs_past, &count), FERRY_EPROTO);
    assert_int_equal(ferry_batch_check(wrong_wire, sizeof wrong_wire, &count), FERRY_EPROTO);
    assert_int_equal(ferry_batch_check(unknown_ok, sizeof unknown_ok, &count), FERRY_OK);
    assert_int_equal(count, 1);
}

static void test_a_batch_keeps_its_bound(void **state)
{
    (void)state;
    ferry_batch b;
    ferry_batch_init(&b, 1000); /* --max-msg under FERRY_BATCH_BYTES_MAX */
    assert_int_equal(b.max, 1000);
    assert_false(ferry_batch_fits(&b, 1000));
    assert_false(ferry_batch_fits(&b, FERRY_BATCH_ITEM_MAX + 1));
    char item[100];
    memset(item, 'i', sizeof item);
    ferry_err err;
    int n = 0;
    uint8_t *at;
    while ((at = ferry_batch_add(&b, sizeof item, &err)))
        n++;
    assert_int_equal(err, FERRY_OK); /* full, not out of memory */
    assert_true(n >= 9);
    assert_true(b.len + ferry_batch_header_size(b.len) <= 1000);
    ferry_batch_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_several_items_make_a_batch),
        cmocka_unit_test(test_a_lone_item_goes_as_itself),
        cmocka_unit_test(test_malformed_bodies_refused),
        cmocka_unit_test(test_a_batch_keeps_its_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

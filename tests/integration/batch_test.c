/*
 * batch_test: Batches (docs/protocol.md, Batches) through a real broker.
 * Raw libzmq peers play an engine and a worker that take batches: a Batch
 * of Commands with bad items among good ones routes the good ones (to the
 * worker, in one Batch) and drops and counts each bad one; the same for a
 * Batch of Replies; a Batch over --max-msg is refused whole. Then a real
 * stack: many calls at once from one script (ferry.all) and many scripts at
 * once, every result right. And a real engine against a raw broker batches
 * its Commands only once that broker sent it a Batch.
 */
#include "harness.h"

#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    ferry_stack s;
    void *ctx;
    void *raw[8];
    int nraw;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(stack_init(&fx->s), 0);
    fx->ctx = zmq_ctx_new();
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    int rc = stack_stop(&fx->s);
    for (int i = 0; i < fx->nraw; i++)
        ferry_socket_close(&fx->raw[i]);
    zmq_ctx_term(fx->ctx);
    free(fx);
    return rc;
}

static void *raw_open(fixture *fx, int type, const char *endpoint, const char *rid)
{
    char err[256];
    ferry_socket_opts o = {.type = type, .endpoint = endpoint, .routing_id = rid};
    void *sock = ferry_socket_open(fx->ctx, &o, err, sizeof err);
    assert_non_null(sock);
    assert_true(fx->nraw < 8);
    fx->raw[fx->nraw++] = sock;
    return sock;
}

/* env packed into a malloc'd buffer of *len bytes. */
static uint8_t *pack(const Ferry__Envelope *env, size_t *len)
{
    *len = ferry__envelope__get_packed_size(env);
    uint8_t *out = malloc(*len ? *len : 1);
    assert_non_null(out);
    ferry__envelope__pack(env, out);
    return out;
}

static uint8_t *command_bytes(const char *engine, uint64_t call_id, const char *pad, size_t *len)
{
    Ferry__Value v = FERRY__VALUE__INIT;
    v.kind_case = FERRY__VALUE__KIND_STRING;
    v.string.data = (uint8_t *)pad;
    v.string.len = strlen(pad);
    Ferry__Value *args[] = {&v};
    Ferry__Command c = FERRY__COMMAND__INIT;
    c.engine_id.data = (uint8_t *)engine;
    c.engine_id.len = strlen(engine);
    c.call_id = call_id;
    c.function = "echo";
    c.args = args;
    c.n_args = 1;
    c.timeout_ms = 60000;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
    env.command = &c;
    return pack(&env, len);
}

static uint8_t *reply_bytes(const char *engine, uint64_t call_id, size_t *len)
{
    Ferry__Reply r = FERRY__REPLY__INIT;
    r.engine_id.data = (uint8_t *)engine;
    r.engine_id.len = strlen(engine);
    r.call_id = call_id;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &r;
    return pack(&env, len);
}

/* Sends a Batch of the n items on sock. */
static void send_batch(void *sock, uint8_t **items, size_t *lens, size_t n)
{
    ProtobufCBinaryData *bins = calloc(n, sizeof *bins);
    assert_non_null(bins);
    for (size_t i = 0; i < n; i++) {
        bins[i].data = items[i];
        bins[i].len = lens[i];
    }
    Ferry__Batch batch = FERRY__BATCH__INIT;
    batch.items = bins;
    batch.n_items = n;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_BATCH;
    env.batch = &batch;
    stack_raw_send(sock, &env, 20000);
    free(bins);
}

/*
 * Receives bodies of kind on sock, alone or as items of Batches, until want
 * of them came or timeout_ms passed; their call ids go to ids. Returns how
 * many came; *batches counts the Batch messages among them.
 */
static size_t recv_calls(void *sock, Ferry__Envelope__BodyCase kind, size_t want, int timeout_ms,
                         uint64_t *ids, int *batches)
{
    size_t got = 0;
    *batches = 0;
    int64_t until = ferry_now_ms() + timeout_ms;
    while (got < want && ferry_now_ms() < until) {
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        zmq_poll(&item, 1, 50);
        ferry_frames f;
        while (got < want && ferry_frames_recv(sock, &f) == FERRY_OK) {
            Ferry__Envelope *env = NULL;
            if (f.count == 1 &&
                ferry_envelope_decode(ferry_frame_data(&f, 0), ferry_frame_size(&f, 0), &env) ==
                    FERRY_OK) {
                size_t n = 1;
                const ProtobufCBinaryData *items = NULL;
                if (env->body_case == FERRY__ENVELOPE__BODY_BATCH) {
                    (*batches)++;
                    n = env->batch->n_items;
                    items = env->batch->items;
                }
                for (size_t i = 0; i < n; i++) {
                    Ferry__Envelope *one = env;
                    if (items)
                        assert_int_equal(
                            ferry_envelope_decode(items[i].data, items[i].len, &one), FERRY_OK);
                    if (one->body_case == kind && got < want)
                        ids[got++] = kind == FERRY__ENVELOPE__BODY_COMMAND ? one->command->call_id
                                                                           : one->reply->call_id;
                    if (one != env)
                        ferry_envelope_free(one);
                }
                ferry_envelope_free(env);
            }
            ferry_frames_close(&f);
        }
    }
    return got;
}

static uint64_t dropped(fixture *fx)
{
    Ferry__Envelope *env;
    assert_int_equal(ferry_client_stats(fx->s.client, 5000, &env), FERRY_OK);
    uint64_t n = env->stats->dropped;
    ferry_envelope_free(env);
    return n;
}

static void wait_peers(fixture *fx, unsigned engines, unsigned workers)
{
    int64_t until = ferry_now_ms() + 10000;
    for (;;) {
        Ferry__Envelope *env;
        assert_int_equal(ferry_client_stats(fx->s.client, 5000, &env), FERRY_OK);
        int ok = env->stats->engines == engines && env->stats->workers == workers;
        ferry_envelope_free(env);
        if (ok)
            return;
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
}

static void wait_dropped(fixture *fx, uint64_t at_least)
{
    int64_t until = ferry_now_ms() + 10000;
    while (dropped(fx) < at_least) {
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
}

/* A raw worker for echo and a raw engine, both saying they take batches. */
static void raw_peers(fixture *fx, void **worker, void **engine)
{
    *worker = raw_open(fx, ZMQ_DEALER, fx->s.workers, "batch-worker");
    Ferry__FunctionSpec spec = FERRY__FUNCTION_SPEC__INIT;
    spec.name = "echo";
    Ferry__FunctionSpec *ptr = &spec;
    Ferry__Ready ready = FERRY__READY__INIT;
    ready.functions = &ptr;
    ready.n_functions = 1;
    ready.credit = 100;
    ready.batches = 1;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    stack_raw_send(*worker, &env, 20000);
    *engine = raw_open(fx, ZMQ_DEALER, fx->s.engines, "batch-engine");
    Ferry__Hello hello = FERRY__HELLO__INIT;
    hello.slots = 1;
    hello.batches = 1;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    stack_raw_send(*engine, &env, 20000);
    wait_peers(fx, 1, 1);
}

/* Bad items among good ones, both ways: only the bad ones are dropped, each counted. */
static void test_bad_items_dropped_alone(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"--heartbeat-ms", "60000", NULL};
    assert_true(stack_start_broker(&fx->s, args) >= 0);
    void *worker, *engine;
    raw_peers(fx, &worker, &engine);
    void *push = raw_open(fx, ZMQ_PUSH, fx->s.commands, NULL);
    uint64_t before = dropped(fx);

    /* Commands 1, 2, 3 with a non-envelope and a Heartbeat between them. */
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope henv;
    ferry_envelope_init(&henv);
    henv.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    henv.heartbeat = &hb;
    uint8_t *items[5];
    size_t lens[5];
    items[0] = command_bytes("batch-engine", 1, "a", &lens[0]);
    items[1] = (uint8_t *)strdup("\xff\xff\xff");
    lens[1] = 3;
    items[2] = command_bytes("batch-engine", 2, "b", &lens[2]);
    items[3] = pack(&henv, &lens[3]);
    items[4] = command_bytes("batch-engine", 3, "c", &lens[4]);
    send_batch(push, items, lens, 5);
    for (int i = 0; i < 5; i++)
        free(items[i]);
    uint64_t ids[8];
    int batches;
    assert_int_equal(recv_calls(worker, FERRY__ENVELOPE__BODY_COMMAND, 3, 10000, ids, &batches),
                     3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 3);
    assert_int_equal(batches, 1); /* the worker said it takes them: one message */
    wait_dropped(fx, before + 2);

    /* Replies 1, 2, 3 with a non-envelope and a Reply for a call never given. */
    items[0] = reply_bytes("batch-engine", 1, &lens[0]);
    items[1] = (uint8_t *)strdup("\x0a");
    lens[1] = 1;
    items[2] = reply_bytes("batch-engine", 2, &lens[2]);
    items[3] = reply_bytes("batch-engine", 99, &lens[3]);
    items[4] = reply_bytes("batch-engine", 3, &lens[4]);
    send_batch(worker, items, lens, 5);
    for (int i = 0; i < 5; i++)
        free(items[i]);
    assert_int_equal(recv_calls(engine, FERRY__ENVELOPE__BODY_REPLY, 3, 10000, ids, &batches), 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);
    assert_int_equal(ids[2], 3);
    assert_int_equal(batches, 1);
    wait_dropped(fx, before + 4);
    assert_int_equal(dropped(fx), before + 4);
    stack_passed(&fx->s);
}

/* A Batch over --max-msg goes nowhere; the next Command, alone, goes. */
static void test_batch_over_max_msg_refused(void **state)
{
    fixture *fx = *state;
    const char *args[] = {"--heartbeat-ms", "60000", "--max-msg", "4096", NULL};
    assert_true(stack_start_broker(&fx->s, args) >= 0);
    void *worker, *engine;
    raw_peers(fx, &worker, &engine);
    void *push = raw_open(fx, ZMQ_PUSH, fx->s.commands, NULL);
    uint8_t *items[50];
    size_t lens[50];
    for (int i = 0; i < 50; i++)
        items[i] = command_bytes("batch-engine", (uint64_t)i + 1,
                                 "padding padding padding padding padding padding padding", &lens[i]);
    send_batch(push, items, lens, 50); /* about 5 KB */
    for (int i = 0; i < 50; i++)
        free(items[i]);
    void *push2 = raw_open(fx, ZMQ_PUSH, fx->s.commands, NULL);
    size_t len;
    uint8_t *one = command_bytes("batch-engine", 1000, "x", &len);
    zmq_msg_t m;
    zmq_msg_init_size(&m, len);
    memcpy(zmq_msg_data(&m), one, len);
    free(one);
    assert_int_equal(ferry_wire_forward(push2, NULL, 0, &m) == FERRY_OK ||
                         (poll(NULL, 0, 100), ferry_wire_forward(push2, NULL, 0, &m)) == FERRY_OK,
                     1);
    uint64_t ids[4];
    int batches;
    assert_int_equal(recv_calls(worker, FERRY__ENVELOPE__BODY_COMMAND, 1, 10000, ids, &batches), 1);
    assert_int_equal(ids[0], 1000);
    /* Nothing of the batch follows. */
    assert_int_equal(recv_calls(worker, FERRY__ENVELOPE__BODY_COMMAND, 1, 500, ids, &batches), 0);
    stack_passed(&fx->s);
}

/* The real stack: 300 calls at once from one script, and 20 such scripts at once. */
static void test_many_calls_at_once(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    assert_true(stack_start_broker(s, NULL) >= 0);
    assert_true(stack_start_engine(s, NULL) >= 0);
    assert_true(stack_start_worker(s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(s, 1, 1, 10000), 0);
    const char *src = "local calls = {}\n"
                      "for i = 1, 300 do calls[i] = {'echo', i, ferry.args[1]} end\n"
                      "local r = ferry.all(table.unpack(calls))\n"
                      "local sum = 0\n"
                      "for i = 1, 300 do\n"
                      "  assert(r[i][1] == i and r[i][2] == ferry.args[1], 'wrong answer')\n"
                      "  sum = sum + r[i][1]\n"
                      "end\n"
                      "return sum, ferry.args[1]";
    enum { SCRIPTS = 20 };
    for (int k = 0; k < SCRIPTS; k++) {
        Ferry__Value *arg = ferry_value_int(k);
        uint64_t rid;
        assert_int_equal(ferry_client_submit(s->client, src, strlen(src), "many.lua", &arg, 1,
                                             30000, &rid),
                         FERRY_OK);
        ferry_value_free(arg);
    }
    int seen[SCRIPTS] = {0};
    for (int k = 0; k < SCRIPTS; k++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(s->client, 40000, &r), FERRY_OK);
        if (!r.result->ok)
            fail_msg("%s: %s", r.result->error->code, r.result->error->message);
        assert_int_equal(r.result->n_values, 2);
        assert_int_equal(r.result->values[0]->integer, 300 * 301 / 2);
        int64_t which = r.result->values[1]->integer;
        assert_true(which >= 0 && which < SCRIPTS && !seen[which]);
        seen[which] = 1;
        ferry_result_fini(&r);
    }
    assert_int_equal(dropped(fx), 0);
    stack_passed(s);
}

/* The next message on the raw broker's sock (frames into f) within 10 s; 0 or -1. */
static int next_message(void *sock, ferry_frames *f)
{
    int64_t until = ferry_now_ms() + 10000;
    while (ferry_now_ms() < until) {
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        zmq_poll(&item, 1, 50);
        if (ferry_frames_recv(sock, f) == FERRY_OK)
            return 0;
    }
    return -1;
}

/*
 * A real ferry-engine against a raw broker: the Commands of a ferry.all come
 * one per message until the broker has sent a Batch, then in one Batch (the
 * Replies of the first ferry.all came as one, and the script's next ferry.all
 * runs in the same turn of the engine's loop).
 */
static void test_engine_batches_after_the_broker_did(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    char err[256];
    ferry_socket_opts ro = {.type = ZMQ_ROUTER, .endpoint = s->engines, .bind = 1};
    void *router = ferry_socket_open(fx->ctx, &ro, err, sizeof err);
    assert_non_null(router);
    fx->raw[fx->nraw++] = router;
    ferry_socket_opts po = {.type = ZMQ_PULL, .endpoint = s->commands, .bind = 1};
    void *pull = ferry_socket_open(fx->ctx, &po, err, sizeof err);
    assert_non_null(pull);
    fx->raw[fx->nraw++] = pull;
    const char *args[] = {"--heartbeat-ms", "60000", NULL};
    assert_true(stack_start_engine(s, args) >= 0);

    /* Hello, with batches. */
    ferry_frames f;
    Ferry__Envelope *env = NULL;
    char eid[FERRY_ROUTING_ID_MAX + 1];
    for (;;) {
        assert_int_equal(next_message(router, &f), 0);
        assert_int_equal(f.count, 2);
        assert_int_equal(
            ferry_envelope_decode(ferry_frame_data(&f, 1), ferry_frame_size(&f, 1), &env),
            FERRY_OK);
        if (env->body_case == FERRY__ENVELOPE__BODY_HELLO)
            break;
        ferry_envelope_free(env);
        ferry_frames_close(&f);
    }
    assert_true(env->hello->batches);
    size_t eid_len = ferry_frame_size(&f, 0);
    memcpy(eid, ferry_frame_data(&f, 0), eid_len);
    eid[eid_len] = '\0';
    ferry_envelope_free(env);
    ferry_frames_close(&f);

    const char *src = "local a = ferry.all({'echo', 1}, {'echo', 2}, {'echo', 3}, {'echo', 4})\n"
                      "local b = ferry.all({'echo', 5}, {'echo', 6}, {'echo', 7}, {'echo', 8})\n"
                      "return #a + #b";
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.source.data = (uint8_t *)src;
    sub.source.len = strlen(src);
    sub.script_id = 1;
    sub.timeout_ms = 20000;
    Ferry__Envelope senv;
    ferry_envelope_init(&senv);
    senv.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    senv.submit = &sub;
    assert_int_equal(ferry_wire_send(router, eid, eid_len, &senv), FERRY_OK);

    /* Four Commands, one message each: this broker has not shown it takes batches. */
    uint64_t ids[8];
    int batches;
    assert_int_equal(recv_calls(pull, FERRY__ENVELOPE__BODY_COMMAND, 4, 10000, ids, &batches), 4);
    assert_int_equal(batches, 0);
    uint8_t *items[4];
    size_t lens[4];
    for (int i = 0; i < 4; i++)
        items[i] = reply_bytes(eid, ids[i], &lens[i]);
    /* A Batch of the four Replies, on the ROUTER: routing frame, then the body. */
    ProtobufCBinaryData bins[4];
    for (int i = 0; i < 4; i++) {
        bins[i].data = items[i];
        bins[i].len = lens[i];
    }
    Ferry__Batch batch = FERRY__BATCH__INIT;
    batch.items = bins;
    batch.n_items = 4;
    Ferry__Envelope benv;
    ferry_envelope_init(&benv);
    benv.body_case = FERRY__ENVELOPE__BODY_BATCH;
    benv.batch = &batch;
    assert_int_equal(ferry_wire_send(router, eid, eid_len, &benv), FERRY_OK);
    for (int i = 0; i < 4; i++)
        free(items[i]);

    /* The next four come together. */
    assert_int_equal(recv_calls(pull, FERRY__ENVELOPE__BODY_COMMAND, 4, 10000, ids, &batches), 4);
    assert_int_equal(batches, 1);
    for (int i = 0; i < 4; i++) {
        size_t len;
        uint8_t *r = reply_bytes(eid, ids[i], &len);
        zmq_msg_t m;
        zmq_msg_init_size(&m, len);
        memcpy(zmq_msg_data(&m), r, len);
        free(r);
        assert_int_equal(ferry_wire_forward(router, eid, eid_len, &m), FERRY_OK);
    }
    /* The script ends with 8 (each echo with no value answered returns a table of none). */
    for (;;) {
        assert_int_equal(next_message(router, &f), 0);
        assert_int_equal(
            ferry_envelope_decode(ferry_frame_data(&f, 1), ferry_frame_size(&f, 1), &env),
            FERRY_OK);
        ferry_frames_close(&f);
        if (env->body_case == FERRY__ENVELOPE__BODY_RESULT)
            break;
        ferry_envelope_free(env);
    }
    if (!env->result->ok)
        fail_msg("%s: %s", env->result->error->code, env->result->error->message);
    assert_int_equal(env->result->values[0]->integer, 8);
    ferry_envelope_free(env);
    stack_passed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_items_dropped_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_over_max_msg_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_calls_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_batches_after_the_broker_did, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

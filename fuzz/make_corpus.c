/*
 * make_corpus: writes the fuzzers' seed corpus into the folder given: one
 * valid envelope of every kind, with values of every kind inside (nested
 * tables, binary strings, NaN), so that mutation starts from messages the
 * decoders really see. Generated rather than committed: the seeds follow
 * proto/ferry.proto as it changes.
 */
#include "ferry_value.h"
#include "ferry_wire.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int written;

static int write_seed(const char *dir, const Ferry__Envelope *env)
{
    size_t len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    ferry__envelope__pack(env, buf);
    char path[512];
    snprintf(path, sizeof path, "%s/seed-%02d", dir, written++);
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(buf, 1, len, f) == len ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    free(buf);
    if (rc != 0)
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
    return rc;
}

/* Arguments with every kind of value, as a script would send them. */
static Ferry__Value *sample_values(void)
{
    Ferry__Value *holder = ferry_value_table();
    Ferry__Value *t = ferry_value_table();
    Ferry__Value *inner = ferry_value_table();
    ferry_table_append(inner, ferry_value_bool(1));
    ferry_table_append(inner, ferry_value_nil());
    ferry_table_append(inner, ferry_value_float(-0.0));
    ferry_table_append(t, ferry_value_int(1));
    ferry_table_append(t, ferry_value_float(2.5));
    ferry_table_append(t, inner);
    ferry_table_set(t, ferry_value_cstring("name"), ferry_value_string("a\0b\xff", 4));
    ferry_table_set(t, ferry_value_float(1.5), ferry_value_float(NAN));
    ferry_table_set(t, ferry_value_int(-7), ferry_value_float(INFINITY));
    ferry_table_append(holder, ferry_value_int(INT64_MIN));
    ferry_table_append(holder, ferry_value_cstring("text"));
    ferry_table_append(holder, t);
    ferry_table_append(holder, ferry_value_table());
    return holder;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    Ferry__Value *vals = sample_values();
    Ferry__Value **v = vals->table->array;
    size_t nv = vals->table->n_array;
    int rc = 0;
    Ferry__Envelope env;

    Ferry__Hello hello = FERRY__HELLO__INIT;
    hello.slots = 256;
    hello.running = 3;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    rc |= write_seed(dir, &env);

    Ferry__FunctionSpec fs[2];
    Ferry__FunctionSpec *fsp[2] = {&fs[0], &fs[1]};
    ferry__function_spec__init(&fs[0]);
    ferry__function_spec__init(&fs[1]);
    fs[0].name = "echo";
    fs[0].idempotent = 1;
    fs[1].name = "http.get";
    Ferry__Ready ready = FERRY__READY__INIT;
    ready.functions = fsp;
    ready.n_functions = 2;
    ready.credit = 1024;
    ready.running = 2;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    rc |= write_seed(dir, &env);

    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    rc |= write_seed(dir, &env);

    Ferry__Goodbye bye = FERRY__GOODBYE__INIT;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &bye;
    rc |= write_seed(dir, &env);

    Ferry__Command cmd = FERRY__COMMAND__INIT;
    cmd.engine_id.data = (uint8_t *)"engine-host-1-0badf00d";
    cmd.engine_id.len = strlen("engine-host-1-0badf00d");
    cmd.call_id = 42;
    cmd.function = "echo";
    cmd.args = v;
    cmd.n_args = nv;
    cmd.timeout_ms = 30000;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
    env.command = &cmd;
    rc |= write_seed(dir, &env);

    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.engine_id = cmd.engine_id;
    reply.call_id = 42;
    reply.values = v;
    reply.n_values = nv;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    rc |= write_seed(dir, &env);

    Ferry__Error error = FERRY__ERROR__INIT;
    error.code = "worker_lost";
    error.message = "the worker running 'sleep' was lost";
    Ferry__Reply failed = FERRY__REPLY__INIT;
    failed.engine_id = cmd.engine_id;
    failed.call_id = 43;
    failed.error = &error;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &failed;
    rc |= write_seed(dir, &env);

    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.request_id = 7;
    sub.source.data = (uint8_t *)"return ferry.call('echo', ...)";
    sub.source.len = strlen((const char *)sub.source.data);
    sub.args = v;
    sub.n_args = nv;
    sub.timeout_ms = 5000;
    sub.name = "seed.lua";
    sub.script_id = 9;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    rc |= write_seed(dir, &env);

    Ferry__Result res = FERRY__RESULT__INIT;
    res.request_id = 7;
    res.ok = 1;
    res.values = v;
    res.n_values = nv;
    res.output.data = (uint8_t *)"printed\n";
    res.output.len = 8;
    res.script_id = 9;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_RESULT;
    env.result = &res;
    rc |= write_seed(dir, &env);

    Ferry__StatsRequest sreq = FERRY__STATS_REQUEST__INIT;
    sreq.request_id = 11;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_STATS_REQUEST;
    env.stats_request = &sreq;
    rc |= write_seed(dir, &env);

    Ferry__FunctionStats fst = FERRY__FUNCTION_STATS__INIT;
    Ferry__FunctionStats *fstp = &fst;
    fst.name = "sleep";
    fst.workers = 2;
    fst.completed = 100;
    Ferry__Stats st = FERRY__STATS__INIT;
    st.request_id = 11;
    st.engines = 1;
    st.workers = 2;
    st.functions = &fstp;
    st.n_functions = 1;
    st.dropped = 3;
    st.workers_lost = 1;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_STATS;
    env.stats = &st;
    rc |= write_seed(dir, &env);

    /* A Batch of two Replies (a Heartbeat stands in for a bad item). */
    static const uint8_t reply_item[] = {0x08, 0x01, 0x32, 0x05, 0x0a, 0x01, 'e', 0x10, 0x07};
    static const uint8_t other_item[] = {0x08, 0x01, 0x22, 0x00};
    ProtobufCBinaryData items[] = {{sizeof reply_item, (uint8_t *)reply_item},
                                   {sizeof other_item, (uint8_t *)other_item},
                                   {sizeof reply_item, (uint8_t *)reply_item}};
    Ferry__Batch batch = FERRY__BATCH__INIT;
    batch.items = items;
    batch.n_items = 3;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_BATCH;
    env.batch = &batch;
    rc |= write_seed(dir, &env);

    ferry_value_free(vals);
    printf("make_corpus: %d seeds in %s\n", written, dir);
    return rc == 0 ? 0 : 1;
}

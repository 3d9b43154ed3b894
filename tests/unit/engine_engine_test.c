/*
 * engine_engine_test: the engine's message handling (engine-host/engine.c)
 * against a fake broker on inproc:// sockets in the same event loop.
 *
 * The fake broker (engine_fixture.h) sits in the engine's own ferry_loop;
 * the callbacks here queue what arrives, and each wait runs the loop until
 * enough has, under a guard timer.
 */
#include "engine_fixture.h"
#include "ferry_value.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_QUEUED 64

typedef struct {
    fake_broker broker;
    engine *e;
    Ferry__Envelope *from_engine[MAX_QUEUED]; /* on the engines socket */
    int n_from_engine;
    Ferry__Envelope *commands[MAX_QUEUED];
    int n_commands;
} fixture;

static void on_router(void *arg, Ferry__Envelope *env)
{
    fixture *fx = arg;
    assert_true(fx->n_from_engine < MAX_QUEUED);
    fx->from_engine[fx->n_from_engine++] = env;
}

static void on_pull(void *arg, Ferry__Envelope *env)
{
    fixture *fx = arg;
    assert_true(fx->n_commands < MAX_QUEUED);
    fx->commands[fx->n_commands++] = env;
}

static void clear(fixture *fx)
{
    for (int i = 0; i < fx->n_from_engine; i++)
        ferry_envelope_free(fx->from_engine[i]);
    for (int i = 0; i < fx->n_commands; i++)
        ferry_envelope_free(fx->commands[i]);
    fx->n_from_engine = fx->n_commands = 0;
}

static int setup(void **state)
{
    static int instance;
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    char engines[64], commands[64], err[256];
    snprintf(engines, sizeof engines, "inproc://engines-%d", instance);
    snprintf(commands, sizeof commands, "inproc://commands-%d", instance++);
    fake_broker_init(&fx->broker, engines, commands, on_router, on_pull, fx);
    engine_config cfg = {.commands = commands,
                         .engines = engines,
                         .slots = 2,
                         .script_timeout_ms = 5000,
                         .call_timeout_ms = 100,
                         .max_output = 1024,
                         .max_memory = 8 << 20,
                         .hwm = 1000};
    assert_int_equal(engine_new(&cfg, fx->broker.zctx, &fx->broker.loop, &fx->e, err, sizeof err),
                     FERRY_OK);
    run_until(&fx->broker, &fx->n_from_engine, 1, 5000);
    const Ferry__Envelope *hello = fx->from_engine[0];
    assert_int_equal(hello->body_case, FERRY__ENVELOPE__BODY_HELLO);
    assert_int_equal(hello->hello->slots, 2);
    assert_int_equal(hello->hello->running, 0);
    assert_int_equal(fx->broker.rid_len, strlen(engine_id(fx->e)));
    assert_memory_equal(fx->broker.rid, engine_id(fx->e), fx->broker.rid_len);
    clear(fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    engine_destroy(&fx->e);
    clear(fx);
    fake_broker_fini(&fx->broker);
    free(fx);
    return 0;
}

static void reply(fixture *fx, const Ferry__Command *cmd, Ferry__Value **values, size_t n)
{
    Ferry__Reply r = FERRY__REPLY__INIT;
    r.engine_id = cmd->engine_id;
    r.call_id = cmd->call_id;
    r.values = values;
    r.n_values = n;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &r;
    fake_broker_send(&fx->broker, &env);
}

static const Ferry__Result *result(fixture *fx, int i, uint64_t script_id)
{
    assert_true(i < fx->n_from_engine);
    const Ferry__Envelope *env = fx->from_engine[i];
    assert_int_equal(env->body_case, FERRY__ENVELOPE__BODY_RESULT);
    assert_int_equal(env->result->script_id, script_id);
    return env->result;
}

static void expect_failed(const Ferry__Result *r, const char *code)
{
    assert_false(r->ok);
    assert_non_null(r->error);
    if (strcmp(r->error->code, code) != 0)
        fail_msg("got %s (%s), want %s", r->error->code, r->error->message, code);
}

static void test_echo(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 1, "print('x') return ferry.call('echo', 1, 2.5, 'x\\0y', {a = {1, 2}})",
           0);
    run_until(&fx->broker, &fx->n_commands, 1, 2000);
    const Ferry__Command *cmd = fx->commands[0]->command;
    assert_string_equal(cmd->function, "echo");
    assert_int_equal(cmd->n_args, 4);
    assert_int_equal(cmd->timeout_ms, 100);
    assert_int_equal(cmd->engine_id.len, strlen(engine_id(fx->e)));
    assert_int_equal(engine_running(fx->e), 1);
    reply(fx, cmd, cmd->args, cmd->n_args);
    run_until(&fx->broker, &fx->n_from_engine, 1, 2000);
    const Ferry__Result *r = result(fx, 0, 1);
    assert_true(r->ok);
    assert_int_equal(r->n_values, 4);
    for (size_t i = 0; i < 4; i++)
        assert_true(ferry_value_equal(r->values[i], cmd->args[i]));
    assert_int_equal(r->output.len, 2);
    assert_int_equal(engine_running(fx->e), 0);
    assert_int_equal(engine_get_stats(fx->e)->calls_answered, 1);
}

static void reply_error(fixture *fx, const Ferry__Command *cmd, Ferry__Value **values, size_t n,
                        const char *code, const char *message)
{
    Ferry__Error e = FERRY__ERROR__INIT;
    e.code = (char *)code;
    e.message = (char *)message;
    Ferry__Reply r = FERRY__REPLY__INIT;
    r.engine_id = cmd->engine_id;
    r.call_id = cmd->call_id;
    r.values = values;
    r.n_values = n;
    r.error = &e;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &r;
    fake_broker_send(&fx->broker, &env);
}

/* protocol.md: a Reply with values and an error fails (the error wins); an
 * error with an empty code reaches the script as call_error. */
static void test_reply_error_rules(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 1,
           "local ok, e = pcall(ferry.call, 'f', 1) "
           "local ok2, e2 = pcall(ferry.call, 'g') "
           "return ok, e.code, e.message, ok2, e2.code, e2.message",
           0);
    run_until(&fx->broker, &fx->n_commands, 1, 2000);
    const Ferry__Command *cmd = fx->commands[0]->command;
    reply_error(fx, cmd, cmd->args, cmd->n_args, "mine", "both");
    run_until(&fx->broker, &fx->n_commands, 2, 2000);
    reply_error(fx, fx->commands[1]->command, NULL, 0, "", "no code");
    run_until(&fx->broker, &fx->n_from_engine, 1, 2000);
    const Ferry__Result *r = result(fx, 0, 1);
    assert_true(r->ok);
    assert_int_equal(r->n_values, 6);
    Ferry__Value *want[6] = {
        ferry_value_bool(0), ferry_value_cstring("mine"),       ferry_value_cstring("both"),
        ferry_value_bool(0), ferry_value_cstring("call_error"), ferry_value_cstring("no code")};
    for (size_t i = 0; i < 6; i++) {
        assert_true(ferry_value_equal(r->values[i], want[i]));
        ferry_value_free(want[i]);
    }
}

static void test_call_timeout_and_late_reply(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 2, "local ok, e = pcall(ferry.call, 'slow') return e.code", 0);
    run_until(&fx->broker, &fx->n_from_engine, 1, 2000); /* the call timer (100 ms) answers */
    const Ferry__Result *r = result(fx, 0, 2);
    assert_true(r->ok);
    assert_int_equal(r->values[0]->string.len, strlen("timeout"));
    assert_int_equal(fx->n_commands, 1);
    reply(fx, fx->commands[0]->command, NULL, 0); /* too late */
    submit(&fx->broker, 3, "return 1", 0);        /* processed after the late reply */
    run_until(&fx->broker, &fx->n_from_engine, 2, 2000);
    assert_true(result(fx, 1, 3)->ok);
    const engine_stats *st = engine_get_stats(fx->e);
    assert_int_equal(st->calls_timed_out, 1);
    assert_int_equal(st->late_replies, 1);
    assert_int_equal(st->calls_answered, 0);
}

static void test_deadline_while_blocked(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 4, "ferry.call('slow')", 50); /* deadline before the call's 100 ms */
    run_until(&fx->broker, &fx->n_from_engine, 1, 2000);
    expect_failed(result(fx, 0, 4), "timeout");
    assert_int_equal(engine_running(fx->e), 0);
    assert_int_equal(fx->n_commands, 1);
    reply(fx, fx->commands[0]->command, NULL, 0); /* the forgotten call */
    submit(&fx->broker, 5, "while true do pcall(function() while true do end end) end", 50);
    run_until(&fx->broker, &fx->n_from_engine, 2, 2000);
    expect_failed(result(fx, 1, 5), "timeout");
    assert_int_equal(engine_get_stats(fx->e)->late_replies, 1);
}

static void test_overloaded(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 6, "ferry.call('slow')", 0);
    submit(&fx->broker, 7, "ferry.call('slow')", 0);
    submit(&fx->broker, 8, "return 1", 0);
    run_until(&fx->broker, &fx->n_from_engine, 1, 2000);
    expect_failed(result(fx, 0, 8), "overloaded");
    assert_int_equal(engine_get_stats(fx->e)->scripts_refused, 1);
    /* The two blocked ones end with their uncaught call timeouts. */
    run_until(&fx->broker, &fx->n_from_engine, 3, 2000);
    expect_failed(result(fx, 1, 6), "timeout");
    expect_failed(result(fx, 2, 7), "timeout");
    assert_int_equal(engine_running(fx->e), 0);
}

static void test_junk_is_dropped(void **state)
{
    fixture *fx = *state;
    zmq_send(fx->broker.router, fx->broker.rid, fx->broker.rid_len, ZMQ_SNDMORE);
    zmq_send(fx->broker.router, "\xff\xff\xff", 3, 0);
    zmq_send(fx->broker.router, fx->broker.rid, fx->broker.rid_len, ZMQ_SNDMORE);
    zmq_send(fx->broker.router, "", 0, ZMQ_SNDMORE);
    zmq_send(fx->broker.router, "", 0, 0);
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    Ferry__Hello hello = FERRY__HELLO__INIT;
    env.body_case = FERRY__ENVELOPE__BODY_HELLO; /* not something a broker sends */
    env.hello = &hello;
    fake_broker_send(&fx->broker, &env);
    ferry_envelope_init(&env);
    env.version = 2;
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    fake_broker_send(&fx->broker, &env);
    Ferry__Reply r = FERRY__REPLY__INIT; /* for another engine */
    r.engine_id.data = (uint8_t *)"someone-else";
    r.engine_id.len = 12;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &r;
    fake_broker_send(&fx->broker, &env);
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    fake_broker_send(&fx->broker, &env); /* fine, ignored */
    submit(&fx->broker, 9, "return 'alive'", 0);
    run_until(&fx->broker, &fx->n_from_engine, 1, 2000);
    assert_true(result(fx, 0, 9)->ok);
    assert_int_equal(engine_get_stats(fx->e)->dropped, 5);
}

static void test_shutdown_fails_running(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 10, "ferry.call('slow')", 0);
    run_until(&fx->broker, &fx->n_commands, 1, 2000);
    engine_destroy(&fx->e);
    zmq_pollitem_t it = {.socket = fx->broker.router, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&it, 1, 2000), 1);
    Ferry__Envelope *env = fake_broker_take(&fx->broker, fx->broker.router);
    assert_non_null(env);
    fx->from_engine[fx->n_from_engine++] = env;
    expect_failed(result(fx, 0, 10), "engine_lost");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_echo),
        T(test_reply_error_rules),
        T(test_call_timeout_and_late_reply),
        T(test_deadline_while_blocked),
        T(test_overloaded),
        T(test_junk_is_dropped),
        T(test_shutdown_fails_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

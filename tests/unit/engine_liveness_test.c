/*
 * engine_liveness_test: how the engine (engine-host/engine.c) watches the
 * broker: heartbeats out, broker_lost for calls in flight when the broker
 * falls silent or its connection drops, and Hello again afterwards.
 *
 * The fake broker (engine_fixture.h: ROUTER + PULL) sits in the engine's
 * own loop, on ipc:// endpoints in a temporary folder (inproc connections
 * send no connection events). A guard timer bounds every wait.
 */
#include "engine_fixture.h"
#include "ferry_clock.h"
#include "ferry_value.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define HEARTBEAT_MS 200
#define LIVENESS 3

typedef struct {
    fake_broker broker;
    char dir[64], engines[128], commands[128];
    engine *e;
    int hellos, heartbeats, results, commands_in;
    Ferry__Envelope *last_result;
    Ferry__Envelope *last_hello;
} fixture;

static void on_router(void *arg, Ferry__Envelope *env)
{
    fixture *fx = arg;
    switch (env->body_case) {
    case FERRY__ENVELOPE__BODY_HELLO:
        fx->hellos++;
        ferry_envelope_free(fx->last_hello);
        fx->last_hello = env;
        break;
    case FERRY__ENVELOPE__BODY_HEARTBEAT:
        fx->heartbeats++;
        ferry_envelope_free(env);
        break;
    case FERRY__ENVELOPE__BODY_RESULT:
        fx->results++;
        ferry_envelope_free(fx->last_result);
        fx->last_result = env;
        break;
    default:
        fail_msg("unexpected body %d from the engine", (int)env->body_case);
    }
}

static void on_pull(void *arg, Ferry__Envelope *env)
{
    fixture *fx = arg;
    fx->commands_in++;
    ferry_envelope_free(env);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/ferry-liveness-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->engines, sizeof fx->engines, "ipc://%s/engines", fx->dir);
    snprintf(fx->commands, sizeof fx->commands, "ipc://%s/commands", fx->dir);
    fake_broker_init(&fx->broker, fx->engines, fx->commands, on_router, on_pull, fx);
    engine_config cfg = {.commands = fx->commands,
                         .engines = fx->engines,
                         .slots = 4,
                         .script_timeout_ms = 10000,
                         .call_timeout_ms = 10000,
                         .max_output = 1024,
                         .max_memory = 8 << 20,
                         .hwm = 1000,
                         .heartbeat_ms = HEARTBEAT_MS,
                         .liveness = LIVENESS,
                         .calls_max = 2};
    char err[256];
    assert_int_equal(engine_new(&cfg, fx->broker.zctx, &fx->broker.loop, &fx->e, err, sizeof err),
                     FERRY_OK);
    run_until(&fx->broker, &fx->hellos, 1, 5000);
    assert_int_equal(fx->last_hello->hello->running, 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    engine_destroy(&fx->e);
    ferry_envelope_free(fx->last_result);
    ferry_envelope_free(fx->last_hello);
    fake_broker_fini(&fx->broker);
    char path[160];
    snprintf(path, sizeof path, "%s/engines", fx->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/commands", fx->dir);
    unlink(path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void send_heartbeat(fixture *fx)
{
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    fake_broker_send(&fx->broker, &env);
}

static void expect_strings(fixture *fx, const char *a, const char *b)
{
    const Ferry__Result *r = fx->last_result->result;
    if (!r->ok)
        fail_msg("script failed: %s: %s", r->error->code, r->error->message);
    assert_int_equal(r->n_values, 2);
    assert_int_equal(r->values[0]->string.len, strlen(a));
    assert_memory_equal(r->values[0]->string.data, a, strlen(a));
    assert_int_equal(r->values[1]->string.len, strlen(b));
    assert_memory_equal(r->values[1]->string.data, b, strlen(b));
}

static void test_heartbeats_while_idle(void **state)
{
    fixture *fx = *state;
    /* Heartbeats keep coming, at least every 1.5 intervals, and the broker's
     * answers in kind keep it alive well past liveness intervals. */
    int64_t start = ferry_now_ms();
    for (int i = 0; i < 2 * LIVENESS; i++) {
        int64_t t0 = ferry_now_ms();
        run_until(&fx->broker, &fx->heartbeats, 1, 2000);
        assert_true(ferry_now_ms() - t0 <= HEARTBEAT_MS * 3 / 2 + 150);
        fx->heartbeats = 0;
        send_heartbeat(fx);
    }
    assert_true(ferry_now_ms() - start > HEARTBEAT_MS * LIVENESS);
    assert_int_equal(fx->hellos, 1);
    assert_int_equal(engine_get_stats(fx->e)->broker_losses, 0);
}

static void test_silent_broker_is_lost(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 1,
           "local ok, e = pcall(ferry.call, 'never_answered')\n"
           "local ok2, e2 = pcall(ferry.call, 'right_after')\n"
           "return e.code, e2.code",
           0);
    run_until(&fx->broker, &fx->commands_in, 1, 2000);
    int64_t t0 = ferry_now_ms();
    /* The broker says nothing more: past liveness, the call ends broker_lost,
     * and so does a call made while the broker is gone. */
    run_until(&fx->broker, &fx->results, 1, 5000);
    int64_t took = ferry_now_ms() - t0;
    expect_strings(fx, "broker_lost", "broker_lost");
    assert_true(took >= HEARTBEAT_MS * LIVENESS - 50);
    assert_true(took <= HEARTBEAT_MS * LIVENESS + HEARTBEAT_MS / 2 + 500);
    const engine_stats *st = engine_get_stats(fx->e);
    assert_int_equal(st->broker_losses, 1);
    assert_int_equal(st->calls_broker_lost, 1);
    assert_int_equal(st->calls_refused, 1);
    /* The connection is up: Hello goes again at once. */
    run_until(&fx->broker, &fx->hellos, 2, 2000);
    assert_int_equal(fx->last_hello->hello->running, 0);
}

static void test_dropped_connection_loses_broker_and_hello_follows(void **state)
{
    fixture *fx = *state;
    submit(&fx->broker, 2, "local ok, e = pcall(ferry.call, 'x') return e.code, 'after'", 0);
    run_until(&fx->broker, &fx->commands_in, 1, 2000);
    fake_broker_close(&fx->broker);
    /* A restarted broker on the same endpoints gets Hello again. */
    fake_broker_open(&fx->broker, fx->engines, fx->commands);
    run_until(&fx->broker, &fx->hellos, 2, 5000);
    const engine_stats *st = engine_get_stats(fx->e);
    assert_int_equal(st->broker_losses, 1);
    assert_int_equal(st->calls_broker_lost, 1);
    assert_int_equal(st->scripts_completed, 1);
    assert_int_equal(fx->last_hello->hello->running, 0);
}

static void test_calls_max(void **state)
{
    fixture *fx = *state;
    /* Two calls in flight (calls_max): a third is refused at once. */
    submit(&fx->broker, 3, "ferry.call('slow')", 0);
    submit(&fx->broker, 4, "ferry.call('slow')", 0);
    run_until(&fx->broker, &fx->commands_in, 2, 2000);
    submit(&fx->broker, 5, "local ok, e = pcall(ferry.call, 'x') return e.code, 'x'", 0);
    run_until(&fx->broker, &fx->results, 1, 2000);
    assert_int_equal(fx->last_result->result->script_id, 5);
    expect_strings(fx, "overloaded", "x");
    assert_int_equal(engine_get_stats(fx->e)->calls_refused, 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_heartbeats_while_idle),
        T(test_silent_broker_is_lost),
        T(test_dropped_connection_loses_broker_and_hello_follows),
        T(test_calls_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

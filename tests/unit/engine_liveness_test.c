/*
 * engine_liveness_test: how the engine (engine-host/engine.c) watches the
 * broker: heartbeats out, broker_lost for calls in flight when the broker
 * falls silent or its connection drops, and Hello again afterwards.
 *
 * A fake broker (ROUTER + PULL) sits in the engine's own loop, on ipc://
 * endpoints in a temporary folder (inproc connections send no connection
 * events). A guard timer bounds every wait.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine.h"
#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_QUEUED 256
#define HEARTBEAT_MS 200
#define LIVENESS 3

typedef struct fixture fixture;
typedef int (*condition)(fixture *fx);

struct fixture {
    void *zctx;
    ferry_loop loop;
    char dir[64], engines[128], commands[128];
    void *router, *pull; /* the fake broker */
    engine *e;
    char rid[FERRY_ROUTING_ID_MAX + 1];
    size_t rid_len;
    int hellos, heartbeats, results, commands_in;
    Ferry__Envelope *last_result;
    Ferry__Envelope *last_hello;
    condition until;
    ferry_timer guard;
    int timed_out;
};

static void check_done(fixture *fx)
{
    if (fx->until && fx->until(fx))
        ferry_loop_stop(&fx->loop);
}

static void on_router(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    fixture *fx = arg;
    ferry_frames f;
    while (fx->router && ferry_frames_recv(fx->router, &f) == FERRY_OK) {
        fx->rid_len = ferry_frame_size(&f, 0);
        memcpy(fx->rid, ferry_frame_data(&f, 0), fx->rid_len);
        Ferry__Envelope *env = NULL;
        assert_int_equal(
            ferry_envelope_decode(ferry_frame_data(&f, 1), ferry_frame_size(&f, 1), &env),
            FERRY_OK);
        ferry_frames_close(&f);
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
    check_done(fx);
}

static void on_pull(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    fixture *fx = arg;
    ferry_frames f;
    while (fx->pull && ferry_frames_recv(fx->pull, &f) == FERRY_OK) {
        fx->commands_in++;
        ferry_frames_close(&f);
    }
    check_done(fx);
}

static void on_guard(ferry_timer *t, void *arg)
{
    (void)t;
    fixture *fx = arg;
    fx->timed_out = 1;
    ferry_loop_stop(&fx->loop);
}

/* Runs the loop until cond holds, at most timeout_ms. */
static void run_until(fixture *fx, condition cond, int timeout_ms)
{
    fx->until = cond;
    fx->timed_out = 0;
    if (!cond(fx)) {
        ferry_loop_timer(&fx->loop, &fx->guard, timeout_ms);
        ferry_loop_run(&fx->loop);
        ferry_timer_stop(&fx->loop.timers, &fx->guard);
    }
    fx->until = NULL;
    if (fx->timed_out)
        fail_msg("condition not met within %d ms", timeout_ms);
}

static void open_broker(fixture *fx)
{
    char err[256];
    ferry_socket_opts ro = {.type = ZMQ_ROUTER, .endpoint = fx->engines, .bind = 1};
    ferry_socket_opts po = {.type = ZMQ_PULL, .endpoint = fx->commands, .bind = 1};
    fx->router = ferry_socket_open(fx->zctx, &ro, err, sizeof err);
    fx->pull = ferry_socket_open(fx->zctx, &po, err, sizeof err);
    assert_non_null(fx->router);
    assert_non_null(fx->pull);
    assert_int_equal(ferry_loop_add_socket(&fx->loop, fx->router, ZMQ_POLLIN, on_router, fx),
                     FERRY_OK);
    assert_int_equal(ferry_loop_add_socket(&fx->loop, fx->pull, ZMQ_POLLIN, on_pull, fx), FERRY_OK);
}

/* The broker dies: its sockets close, the engine's connections drop. */
static void close_broker(fixture *fx)
{
    ferry_loop_remove_socket(&fx->loop, fx->router);
    ferry_loop_remove_socket(&fx->loop, fx->pull);
    ferry_socket_close(&fx->router);
    ferry_socket_close(&fx->pull);
}

static int has_hello(fixture *fx)
{
    return fx->hellos >= 1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->zctx = zmq_ctx_new();
    ferry_loop_init(&fx->loop);
    ferry_timer_init(&fx->guard, on_guard, fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/ferry-liveness-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->engines, sizeof fx->engines, "ipc://%s/engines", fx->dir);
    snprintf(fx->commands, sizeof fx->commands, "ipc://%s/commands", fx->dir);
    open_broker(fx);
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
    assert_int_equal(engine_new(&cfg, fx->zctx, &fx->loop, &fx->e, err, sizeof err), FERRY_OK);
    run_until(fx, has_hello, 5000);
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
    close_broker(fx);
    ferry_loop_fini(&fx->loop);
    zmq_ctx_term(fx->zctx);
    char path[160];
    snprintf(path, sizeof path, "%s/engines", fx->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/commands", fx->dir);
    unlink(path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void submit(fixture *fx, uint64_t script_id, const char *src)
{
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.script_id = script_id;
    sub.source.data = (uint8_t *)src;
    sub.source.len = strlen(src);
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    assert_int_equal(ferry_wire_send(fx->router, fx->rid, fx->rid_len, &env), FERRY_OK);
}

static void send_heartbeat(fixture *fx)
{
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    assert_int_equal(ferry_wire_send(fx->router, fx->rid, fx->rid_len, &env), FERRY_OK);
}

static int one_heartbeat(fixture *fx)
{
    return fx->heartbeats >= 1;
}

static int one_command(fixture *fx)
{
    return fx->commands_in >= 1;
}

static int one_result(fixture *fx)
{
    return fx->results >= 1;
}

static int two_hellos(fixture *fx)
{
    return fx->hellos >= 2;
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
        run_until(fx, one_heartbeat, 2000);
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
    submit(fx, 1,
           "local ok, e = pcall(ferry.call, 'never_answered')\n"
           "local ok2, e2 = pcall(ferry.call, 'right_after')\n"
           "return e.code, e2.code");
    run_until(fx, one_command, 2000);
    int64_t t0 = ferry_now_ms();
    /* The broker says nothing more: past liveness, the call ends broker_lost,
     * and so does a call made while the broker is gone. */
    run_until(fx, one_result, 5000);
    int64_t took = ferry_now_ms() - t0;
    expect_strings(fx, "broker_lost", "broker_lost");
    assert_true(took >= HEARTBEAT_MS * LIVENESS - 50);
    assert_true(took <= HEARTBEAT_MS * LIVENESS + HEARTBEAT_MS / 2 + 500);
    const engine_stats *st = engine_get_stats(fx->e);
    assert_int_equal(st->broker_losses, 1);
    assert_int_equal(st->calls_broker_lost, 1);
    assert_int_equal(st->calls_refused, 1);
    /* The connection is up: Hello goes again at once. */
    run_until(fx, two_hellos, 2000);
    assert_int_equal(fx->last_hello->hello->running, 0);
}

static void test_dropped_connection_loses_broker_and_hello_follows(void **state)
{
    fixture *fx = *state;
    submit(fx, 2, "local ok, e = pcall(ferry.call, 'x') return e.code, 'after'");
    run_until(fx, one_command, 2000);
    close_broker(fx);
    /* A restarted broker on the same endpoints gets Hello again. */
    open_broker(fx);
    run_until(fx, two_hellos, 5000);
    const engine_stats *st = engine_get_stats(fx->e);
    assert_int_equal(st->broker_losses, 1);
    assert_int_equal(st->calls_broker_lost, 1);
    assert_int_equal(st->scripts_completed, 1);
    assert_int_equal(fx->last_hello->hello->running, 0);
}

static int two_commands(fixture *fx)
{
    return fx->commands_in >= 2;
}

static void test_calls_max(void **state)
{
    fixture *fx = *state;
    /* Two calls in flight (calls_max): a third is refused at once. */
    submit(fx, 3, "ferry.call('slow')");
    submit(fx, 4, "ferry.call('slow')");
    run_until(fx, two_commands, 2000);
    submit(fx, 5, "local ok, e = pcall(ferry.call, 'x') return e.code, 'x'");
    run_until(fx, one_result, 2000);
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

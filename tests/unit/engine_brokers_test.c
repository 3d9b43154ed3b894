/*
 * engine_brokers_test: one engine, two brokers (engine-host/engine.c,
 * docs/protocol.md#several-brokers), both fake, on ipc:// sockets in a
 * temporary folder (inproc connections report no disconnection) in the
 * engine's loop.
 *
 * The slots are split between the brokers and given back when one goes; a
 * script's calls go through both brokers in turn, each under that broker's
 * routing id, and its Result returns through the broker that sent it; a
 * broker that is lost fails only the calls through it.
 */
#include "engine_fixture.h"
#include "ferry_clock.h"
#include "ferry_value.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_QUEUED 64

/* What arrived from the engine at broker b (0: the fixture's, 1: the second). */
typedef struct {
    Ferry__Envelope *env[MAX_QUEUED];
    int n;
    Ferry__Envelope *commands[MAX_QUEUED];
    int ncommands;
    uint32_t slots; /* of the latest Hello */
    int hellos;
    char rid[FERRY_ROUTING_ID_MAX + 1];
    size_t rid_len;
} seen;

typedef struct {
    fake_broker a;          /* broker 0, and the loop */
    void *router_b, *pull_b; /* broker 1, in the same loop */
    engine *e;
    seen at[2];
    int events; /* everything that arrived, for run_until */
    char dir[64];
    char eps[4][128]; /* engines-0, commands-0, engines-1, commands-1 */
} fixture;

static void record(fixture *fx, int b, Ferry__Envelope *env, int command)
{
    seen *s = &fx->at[b];
    fx->events++;
    if (command) {
        assert_true(s->ncommands < MAX_QUEUED);
        s->commands[s->ncommands++] = env;
        return;
    }
    if (env->body_case == FERRY__ENVELOPE__BODY_HELLO) {
        s->slots = env->hello->slots;
        s->hellos++;
    }
    assert_true(s->n < MAX_QUEUED);
    s->env[s->n++] = env;
}

static void on_router_a(void *arg, Ferry__Envelope *env)
{
    fixture *fx = arg;
    memcpy(fx->at[0].rid, fx->a.rid, fx->a.rid_len);
    fx->at[0].rid_len = fx->a.rid_len;
    record(fx, 0, env, 0);
}

static void on_pull_a(void *arg, Ferry__Envelope *env)
{
    record(arg, 0, env, 1);
}

/* Broker 1's sockets: the same decoding as the fixture's. */
static void on_b(ferry_loop *loop, short revents, void *arg)
{
    (void)revents;
    fixture *fx = arg;
    for (int k = 0; k < 2; k++) {
        void *sock = k == 0 ? fx->router_b : fx->pull_b;
        ferry_frames f;
        while (ferry_frames_recv(sock, &f) == FERRY_OK) {
            int body = f.count - 1;
            if (sock == fx->router_b) {
                fx->at[1].rid_len = ferry_frame_size(&f, 0);
                memcpy(fx->at[1].rid, ferry_frame_data(&f, 0), fx->at[1].rid_len);
            }
            Ferry__Envelope *env = NULL;
            assert_int_equal(ferry_envelope_decode(ferry_frame_data(&f, body),
                                                   ferry_frame_size(&f, body), &env),
                             FERRY_OK);
            ferry_frames_close(&f);
            record(fx, 1, env, sock == fx->pull_b);
        }
    }
    if (fx->a.count && *fx->a.count >= fx->a.want)
        ferry_loop_stop(loop);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/ferry-engine-brokers-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    static const char *const names[4] = {"engines-0", "commands-0", "engines-1", "commands-1"};
    for (int i = 0; i < 4; i++)
        snprintf(fx->eps[i], sizeof fx->eps[i], "ipc://%s/%s", fx->dir, names[i]);
    fake_broker_init(&fx->a, fx->eps[0], fx->eps[1], on_router_a, on_pull_a, fx);
    char err[256];
    ferry_socket_opts ro = {.type = ZMQ_ROUTER, .endpoint = fx->eps[2], .bind = 1};
    ferry_socket_opts po = {.type = ZMQ_PULL, .endpoint = fx->eps[3], .bind = 1};
    fx->router_b = ferry_socket_open(fx->a.zctx, &ro, err, sizeof err);
    fx->pull_b = ferry_socket_open(fx->a.zctx, &po, err, sizeof err);
    assert_non_null(fx->router_b);
    assert_non_null(fx->pull_b);
    assert_int_equal(ferry_loop_add_socket(&fx->a.loop, fx->router_b, ZMQ_POLLIN, on_b, fx),
                     FERRY_OK);
    assert_int_equal(ferry_loop_add_socket(&fx->a.loop, fx->pull_b, ZMQ_POLLIN, on_b, fx),
                     FERRY_OK);
    char commands[300], engines[300];
    snprintf(commands, sizeof commands, "%s,%s", fx->eps[1], fx->eps[3]);
    snprintf(engines, sizeof engines, "%s, %s", fx->eps[0], fx->eps[2]);
    engine_config cfg = {.commands = commands,
                         .engines = engines,
                         .slots = 5,
                         .script_timeout_ms = 5000,
                         .call_timeout_ms = 2000,
                         .max_output = 1024,
                         .max_memory = 8 << 20,
                         .hwm = 1000};
    assert_int_equal(engine_new(&cfg, fx->a.zctx, &fx->a.loop, &fx->e, err, sizeof err),
                     FERRY_OK);
    assert_int_equal(engine_brokers(fx->e), 2);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    engine_destroy(&fx->e);
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < fx->at[b].n; i++)
            ferry_envelope_free(fx->at[b].env[i]);
        for (int i = 0; i < fx->at[b].ncommands; i++)
            ferry_envelope_free(fx->at[b].commands[i]);
    }
    ferry_loop_remove_socket(&fx->a.loop, fx->router_b);
    ferry_loop_remove_socket(&fx->a.loop, fx->pull_b);
    ferry_socket_close(&fx->router_b);
    ferry_socket_close(&fx->pull_b);
    fake_broker_fini(&fx->a);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

/* Runs the loop until cond holds, looking after each arrival; fails past 3 s. */
#define RUN_UNTIL(fx, cond)                                                                        \
    do {                                                                                           \
        int64_t until_ = ferry_now_ms() + 3000;                                                     \
        while (!(cond)) {                                                                          \
            assert_true(ferry_now_ms() < until_);                                                   \
            int want_ = (fx)->events + 1;                                                          \
            run_until(&(fx)->a, &(fx)->events, want_, 3000);                                        \
        }                                                                                          \
    } while (0)

/* A Reply to cmd through broker b (to the engine's routing id there). */
static void reply_to(fixture *fx, int b, const Ferry__Command *cmd, int64_t v)
{
    Ferry__Value *val = ferry_value_int(v);
    Ferry__Reply r = FERRY__REPLY__INIT;
    r.engine_id = cmd->engine_id;
    r.call_id = cmd->call_id;
    r.values = &val;
    r.n_values = 1;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &r;
    void *router = b == 0 ? fx->a.router : fx->router_b;
    assert_int_equal(ferry_wire_send(router, fx->at[b].rid, fx->at[b].rid_len, &env), FERRY_OK);
    ferry_value_free(val);
}

static void submit_to(fixture *fx, int b, uint64_t script_id, const char *src)
{
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.script_id = script_id;
    sub.source.data = (uint8_t *)src;
    sub.source.len = strlen(src);
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    void *router = b == 0 ? fx->a.router : fx->router_b;
    assert_int_equal(ferry_wire_send(router, fx->at[b].rid, fx->at[b].rid_len, &env), FERRY_OK);
}

/* The last Result broker b got, or NULL. */
static const Ferry__Result *last_result(fixture *fx, int b)
{
    for (int i = fx->at[b].n - 1; i >= 0; i--)
        if (fx->at[b].env[i]->body_case == FERRY__ENVELOPE__BODY_RESULT)
            return fx->at[b].env[i]->result;
    return NULL;
}

static void test_slots_split_and_given_back(void **state)
{
    fixture *fx = *state;
    /* Both registered: 3 + 2, the remainder to broker 0. */
    RUN_UNTIL(fx, fx->at[0].hellos && fx->at[1].hellos &&
                      fx->at[0].slots + fx->at[1].slots == 5);
    assert_int_equal(fx->at[0].slots, 3);
    assert_int_equal(fx->at[1].slots, 2);
    assert_int_equal(engine_brokers_live(fx->e), 2);
    assert_memory_not_equal(fx->at[0].rid, fx->at[1].rid, fx->at[0].rid_len);
    /* Broker 0 dies: broker 1 gets every slot. */
    fake_broker_close(&fx->a);
    RUN_UNTIL(fx, fx->at[1].slots == 5);
    assert_int_equal(engine_brokers_live(fx->e), 1);
}

static void test_calls_alternate_and_results_return(void **state)
{
    fixture *fx = *state;
    RUN_UNTIL(fx, fx->at[0].slots + fx->at[1].slots == 5 && fx->at[0].hellos &&
                      fx->at[1].hellos);
    /* A script from broker 1 making two calls at once: one through each broker,
     * each under that broker's routing id. */
    submit_to(fx, 1, 7, "local r = ferry.all({'echo', 1}, {'echo', 2}) return r[1][1] + r[2][1]");
    RUN_UNTIL(fx, fx->at[0].ncommands == 1 && fx->at[1].ncommands == 1);
    for (int b = 0; b < 2; b++) {
        const Ferry__Command *cmd = fx->at[b].commands[0]->command;
        assert_int_equal(cmd->engine_id.len, fx->at[b].rid_len);
        assert_memory_equal(cmd->engine_id.data, fx->at[b].rid, fx->at[b].rid_len);
    }
    /* A Reply through the wrong broker (under the other broker's engine id) does not count. */
    reply_to(fx, 1, fx->at[0].commands[0]->command, 10);
    reply_to(fx, 0, fx->at[0].commands[0]->command, 10);
    reply_to(fx, 1, fx->at[1].commands[0]->command, 20);
    RUN_UNTIL(fx, last_result(fx, 1) != NULL);
    const Ferry__Result *r = last_result(fx, 1);
    assert_int_equal(r->script_id, 7);
    assert_true(r->ok);
    assert_int_equal(r->values[0]->integer, 30);
    assert_null(last_result(fx, 0));
    assert_int_equal(engine_get_stats(fx->e)->dropped, 1);
}

static void test_lost_broker_fails_only_its_calls(void **state)
{
    fixture *fx = *state;
    RUN_UNTIL(fx, fx->at[0].slots + fx->at[1].slots == 5 && fx->at[0].hellos &&
                      fx->at[1].hellos);
    submit_to(fx, 1, 8,
              "local ok, e = pcall(ferry.all, {'echo', 1}, {'echo', 2}) "
              "local again = ferry.call('echo', 3) "
              "return ok and 'ok' or e.code, again");
    RUN_UNTIL(fx, fx->at[0].ncommands == 1 && fx->at[1].ncommands == 1);
    /* Broker 0 dies with one call: that call ends broker_lost, and the next
     * call goes through broker 1 at once. */
    fake_broker_close(&fx->a);
    RUN_UNTIL(fx, fx->at[1].ncommands == 2);
    reply_to(fx, 1, fx->at[1].commands[0]->command, 2);
    reply_to(fx, 1, fx->at[1].commands[1]->command, 3);
    RUN_UNTIL(fx, last_result(fx, 1) != NULL);
    const Ferry__Result *r = last_result(fx, 1);
    assert_true(r->ok);
    assert_int_equal(r->n_values, 2);
    assert_memory_equal(r->values[0]->string.data, "broker_lost", 11);
    assert_int_equal(r->values[1]->integer, 3);
    assert_int_equal(engine_get_stats(fx->e)->calls_broker_lost, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slots_split_and_given_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_calls_alternate_and_results_return, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_broker_fails_only_its_calls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * broker_scripts_test: the broker's engine and script tables without
 * sockets: slot accounting, round robin between engines, the bounded
 * script queue, script timers and losing an engine.
 */
#include "scripts.h"

#include "ferry_wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000

typedef struct {
    ferry_timers timers;
    broker_scripts s;
    int expired;
    ferry_err last_reason;
    uint64_t last_request;
} fixture;

static void on_expired(broker_script *script, ferry_err reason, void *arg)
{
    fixture *fx = arg;
    fx->expired++;
    fx->last_reason = reason;
    fx->last_request = script->request_id;
    assert_int_equal(script->state, BROKER_SCRIPT_NEW);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    ferry_timers_init(&fx->timers);
    broker_scripts_limits lim = {.queue_max = 2, .timeout_ms = 30000, .grace_ms = 5000};
    broker_scripts_init(&fx->s, &fx->timers, &lim, on_expired, fx);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    broker_scripts_fini(&fx->s);
    assert_int_equal(ferry_timers_count(&fx->timers), 0);
    ferry_timers_fini(&fx->timers);
    free(fx);
    return 0;
}

/* A decoded envelope holding a Submit, as the broker gets it from a client. */
static Ferry__Envelope *submit_env(uint64_t request_id, uint32_t timeout_ms)
{
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.request_id = request_id;
    sub.source.data = (uint8_t *)"return 1";
    sub.source.len = 8;
    sub.timeout_ms = timeout_ms;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    uint8_t buf[256];
    size_t len = ferry__envelope__pack(&env, buf);
    Ferry__Envelope *out = NULL;
    assert_int_equal(ferry_envelope_decode(buf, len, &out), FERRY_OK);
    return out;
}

static broker_script *new_script(fixture *fx, uint64_t request_id, uint32_t timeout_ms,
                                 int64_t now)
{
    broker_script *script = NULL;
    assert_int_equal(broker_scripts_new(&fx->s, "client", 6, request_id, timeout_ms,
                                        submit_env(request_id, timeout_ms), now, &script),
                     FERRY_OK);
    assert_non_null(script);
    return script;
}

static broker_engine *hello(fixture *fx, const char *id, uint32_t slots, uint32_t running)
{
    broker_engine *e = NULL;
    assert_int_equal(broker_scripts_hello(&fx->s, id, strlen(id), slots, running, T0, &e),
                     FERRY_OK);
    assert_non_null(e);
    return e;
}

static void start(fixture *fx, broker_script *script, broker_engine *e)
{
    broker_scripts_started(&fx->s, script, e);
    assert_null(script->submit);
    assert_int_equal(script->state, BROKER_SCRIPT_RUNNING);
}

static void test_slot_accounting(void **state)
{
    fixture *fx = *state;
    broker_engine *e = hello(fx, "engine-1", 2, 0);
    assert_int_equal(fx->s.nengines, 1);
    assert_int_equal(broker_scripts_engine_room(e), 2);
    broker_script *a = new_script(fx, 1, 0, T0);
    broker_script *b = new_script(fx, 2, 0, T0);
    assert_ptr_equal(broker_scripts_pick(&fx->s), e);
    start(fx, a, e);
    assert_ptr_equal(broker_scripts_pick(&fx->s), e);
    start(fx, b, e);
    assert_null(broker_scripts_pick(&fx->s));
    assert_int_equal(fx->s.running, 2);
    assert_int_equal(e->running, 2);

    assert_ptr_equal(broker_scripts_find(&fx->s, a->script_id), a);
    broker_scripts_finish(&fx->s, a);
    broker_scripts_free(&fx->s, a);
    assert_int_equal(broker_scripts_engine_room(e), 1);
    assert_ptr_equal(broker_scripts_pick(&fx->s), e);
    assert_int_equal(fx->s.running, 1);
    assert_ptr_equal(broker_scripts_engine(&fx->s, "engine-1", 8), e);
    assert_null(broker_scripts_engine(&fx->s, "engine-2", 8));
}

static void test_ids_unique(void **state)
{
    fixture *fx = *state;
    broker_script *a = new_script(fx, 7, 0, T0);
    broker_script *b = new_script(fx, 7, 0, T0);
    assert_int_not_equal(a->script_id, 0);
    assert_int_not_equal(a->script_id, b->script_id);
    assert_null(broker_scripts_find(&fx->s, 0));
    assert_null(broker_scripts_find(&fx->s, 9999));
}

static void test_hello_running_and_stray_results(void **state)
{
    fixture *fx = *state;
    /* After a broker restart an engine still runs 2 scripts we know nothing of. */
    broker_engine *e = hello(fx, "engine-1", 3, 2);
    assert_int_equal(broker_scripts_engine_room(e), 1);
    broker_script *a = new_script(fx, 1, 0, T0);
    start(fx, a, broker_scripts_pick(&fx->s));
    assert_null(broker_scripts_pick(&fx->s));
    /* Their Results come back unknown, and each frees a slot. */
    assert_int_equal(broker_scripts_stray_result(&fx->s, e), 1);
    assert_ptr_equal(broker_scripts_pick(&fx->s), e);
    assert_int_equal(broker_scripts_stray_result(&fx->s, e), 1);
    assert_int_equal(broker_scripts_stray_result(&fx->s, e), 0);
    assert_int_equal(broker_scripts_engine_room(e), 2);

    /* A second Hello counts our own script as one of those it runs. */
    hello(fx, "engine-1", 3, 1);
    assert_int_equal(e->untracked, 0);
    assert_int_equal(broker_scripts_engine_room(e), 2);
    hello(fx, "engine-1", 1, 1);
    assert_null(broker_scripts_pick(&fx->s));
    assert_int_equal(fx->s.nengines, 1);
}

static void test_round_robin(void **state)
{
    fixture *fx = *state;
    broker_engine *e[3] = {hello(fx, "e0", 10, 0), hello(fx, "e1", 10, 0), hello(fx, "e2", 10, 0)};
    int count[3] = {0};
    for (int i = 0; i < 9; i++) {
        broker_engine *got = broker_scripts_pick(&fx->s);
        broker_script *script = new_script(fx, (uint64_t)i, 0, T0);
        start(fx, script, got);
        for (int k = 0; k < 3; k++)
            if (got == e[k])
                count[k]++;
    }
    assert_int_equal(count[0], 3);
    assert_int_equal(count[1], 3);
    assert_int_equal(count[2], 3);
}

static void test_queue_bound_and_order(void **state)
{
    fixture *fx = *state; /* queue_max 2 */
    broker_script *a = new_script(fx, 1, 0, T0);
    broker_script *b = new_script(fx, 2, 0, T0);
    broker_script *c = new_script(fx, 3, 0, T0);
    assert_int_equal(broker_scripts_enqueue(&fx->s, a, 0), FERRY_OK);
    assert_int_equal(broker_scripts_enqueue(&fx->s, b, 0), FERRY_OK);
    assert_int_equal(broker_scripts_enqueue(&fx->s, c, 0), FERRY_EOVERLOADED);
    assert_int_equal(c->state, BROKER_SCRIPT_NEW);
    broker_scripts_free(&fx->s, c);
    assert_int_equal(fx->s.queued, 2);

    broker_script *head = broker_scripts_pop(&fx->s);
    assert_ptr_equal(head, a);
    assert_int_equal(head->state, BROKER_SCRIPT_NEW);
    assert_non_null(head->submit);
    /* Put back at the head even though a new one fills the queue. */
    broker_script *d = new_script(fx, 4, 0, T0);
    assert_int_equal(broker_scripts_enqueue(&fx->s, d, 0), FERRY_OK);
    assert_int_equal(broker_scripts_enqueue(&fx->s, head, 1), FERRY_OK);
    assert_ptr_equal(broker_scripts_pop(&fx->s), a);
    assert_ptr_equal(broker_scripts_pop(&fx->s), b);
    assert_ptr_equal(broker_scripts_pop(&fx->s), d);
    assert_null(broker_scripts_pop(&fx->s));
    assert_int_equal(fx->s.queued, 0);
}

static void test_queued_expiry(void **state)
{
    fixture *fx = *state;
    /* No engine at all: no_engine at the deadline. */
    broker_script *a = new_script(fx, 11, 2000, T0);
    assert_int_equal(a->timeout_ms, 2000);
    assert_int_equal(broker_scripts_enqueue(&fx->s, a, 0), FERRY_OK);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 1999), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 2000), 1);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_ENO_ENGINE);
    assert_int_equal(fx->last_request, 11);
    assert_int_equal(fx->s.queued, 0);

    /* An engine with no free slot: timeout. Default and cap apply. */
    hello(fx, "engine-1", 0, 0);
    broker_script *b = new_script(fx, 12, 0, T0);
    assert_int_equal(b->timeout_ms, 30000);
    broker_script *c = new_script(fx, 13, 60000, T0);
    assert_int_equal(c->timeout_ms, 30000);
    broker_scripts_free(&fx->s, c);
    uint64_t bid = b->script_id;
    assert_int_equal(broker_scripts_enqueue(&fx->s, b, 0), FERRY_OK);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 30000), 1);
    assert_int_equal(fx->expired, 2);
    assert_int_equal(fx->last_reason, FERRY_ETIMEOUT);
    assert_null(broker_scripts_find(&fx->s, bid));
}

static void test_running_backstop(void **state)
{
    fixture *fx = *state;
    broker_engine *e = hello(fx, "engine-1", 1, 0);
    broker_script *a = new_script(fx, 21, 1000, T0);
    start(fx, a, broker_scripts_pick(&fx->s));
    uint64_t id = a->script_id;
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 5999), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 6000), 1);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_ETIMEOUT);
    assert_null(broker_scripts_find(&fx->s, id));
    assert_int_equal(fx->s.running, 0);
    /* The slot stays taken (the engine may still run it) until a stray Result. */
    assert_null(broker_scripts_pick(&fx->s));
    assert_int_equal(broker_scripts_stray_result(&fx->s, e), 1);
    assert_ptr_equal(broker_scripts_pick(&fx->s), e);
}

static void test_engine_lost(void **state)
{
    fixture *fx = *state;
    broker_engine *e = hello(fx, "engine-1", 5, 0);
    broker_engine *other = hello(fx, "engine-2", 5, 0);
    broker_script *a = new_script(fx, 31, 0, T0);
    broker_script *b = new_script(fx, 32, 0, T0);
    broker_script *c = new_script(fx, 33, 0, T0);
    start(fx, a, e);
    start(fx, b, e);
    start(fx, c, other);
    assert_int_equal(e->last_seen_ms, T0);
    broker_scripts_engine_lost(&fx->s, e);
    assert_int_equal(fx->expired, 2);
    assert_int_equal(fx->last_reason, FERRY_EENGINE_LOST);
    assert_int_equal(fx->s.engines_lost, 1);
    assert_int_equal(fx->s.nengines, 1);
    assert_int_equal(fx->s.running, 1);
    assert_null(broker_scripts_engine(&fx->s, "engine-1", 8));
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(broker_scripts_pick(&fx->s), other);
}

static void test_block(void **state)
{
    fixture *fx = *state;
    broker_engine *a = hello(fx, "a", 5, 0);
    broker_engine *b = hello(fx, "b", 5, 0);
    broker_scripts_block(&fx->s, a);
    assert_ptr_equal(broker_scripts_pick(&fx->s), b);
    assert_ptr_equal(broker_scripts_pick(&fx->s), b);
    broker_scripts_unblock(&fx->s, a);
    broker_engine *p1 = broker_scripts_pick(&fx->s);
    broker_engine *p2 = broker_scripts_pick(&fx->s);
    assert_true(p1 != p2);
    /* A Result unblocks too. */
    broker_scripts_block(&fx->s, a);
    broker_script *s1 = new_script(fx, 1, 0, T0);
    broker_scripts_unblock(&fx->s, a);
    start(fx, s1, a);
    broker_scripts_block(&fx->s, a);
    broker_scripts_finish(&fx->s, s1);
    broker_scripts_free(&fx->s, s1);
    assert_int_equal(a->blocked, 0);
    assert_int_equal(broker_scripts_engine_room(a), 5);
}

static void test_bad_ids(void **state)
{
    fixture *fx = *state;
    broker_engine *e;
    assert_int_equal(broker_scripts_hello(&fx->s, "", 0, 1, 0, T0, &e), FERRY_EPROTO);
    broker_script *script;
    Ferry__Envelope *env = submit_env(1, 0);
    assert_int_equal(broker_scripts_new(&fx->s, "", 0, 1, 0, env, T0, &script), FERRY_EPROTO);
    ferry_envelope_free(env); /* not taken on failure */
}

static void test_engine_table_bounded(void **state)
{
    fixture *fx = *state;
    fx->s.lim.engines_max = 2;
    hello(fx, "a", 1, 0);
    hello(fx, "b", 1, 0);
    broker_engine *e = NULL;
    assert_int_equal(broker_scripts_hello(&fx->s, "c", 1, 1, 0, T0, &e), FERRY_EOVERLOADED);
    assert_null(e);
    assert_int_equal(fx->s.nengines, 2);
    /* A known engine may always say Hello again. */
    assert_int_equal(broker_scripts_hello(&fx->s, "a", 1, 3, 0, T0 + 5, &e), FERRY_OK);
    assert_int_equal(e->slots, 3);
    assert_int_equal(e->last_seen_ms, T0 + 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slot_accounting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_unique, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hello_running_and_stray_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound_and_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_running_backstop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_table_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * identity_test: no peer can act under another's identity (issue 12), with
 * real processes over tcp on loopback, keys on and keys off.
 *
 * The attacks of the outside review, each by a raw libzmq peer: a second
 * connection under a live worker's or engine's routing id (learnt from
 * `ferry stats` or from a Command); Commands pushed under another engine's
 * id with its next call ids; Replies to calls another worker was given.
 * Each must take nothing over while the real peers keep serving (and the
 * forged Command as an item of a Batch too). And a
 * peer whose route is lost (the broker gave it up) registers again within
 * liveness by itself.
 *
 * Heartbeats every 100 ms, liveness 3: a peer is lost after 300 ms of
 * silence, so "the real peer is still there" is checked over 1 s. Every
 * wait is for an event with a bound.
 */
#define _GNU_SOURCE /* memmem */
#include "harness.h"

#include "ferry_cert.h"
#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define HB "100"
#define WATCH_MS 1000 /* ten heartbeat intervals: three liveness periods */

static const char *const hb_args[] = {"--heartbeat-ms", HB, NULL};

typedef struct {
    ferry_stack s;
    int broker, engine, worker;
    int keyed;
    void *ctx;     /* for the raw peers */
    void *raw[16]; /* every raw socket opened: closed at teardown (a failed test leaves some) */
    int nraw;
} fixture;

static int setup_common(void **state, int keyed)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(stack_init_tcp(&fx->s), 0);
    fx->keyed = keyed;
    if (keyed) {
        /* A second key in the worker and engine roles: the attackers' own. */
        assert_int_equal(stack_use_keys(&fx->s), 0);
        const char *extra[] = {"worker2", "engine2"};
        for (int i = 0; i < 2; i++) {
            assert_int_equal(stack_make_key(&fx->s, extra[i]), 0);
            char cmd[900];
            snprintf(cmd, sizeof cmd, "cp '%s' '%s/allow-%ss/'", stack_key(&fx->s, extra[i]),
                     fx->s.dir, i ? "engine" : "worker");
            assert_int_equal(system(cmd), 0);
        }
    }
    fx->ctx = zmq_ctx_new();
    assert_non_null(fx->ctx);
    *state = fx;
    return 0;
}

static int setup_keys(void **state)
{
    return setup_common(state, 1);
}

static int setup_plain(void **state)
{
    return setup_common(state, 0);
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

static void start_stack(fixture *fx)
{
    fx->broker = stack_start_broker(&fx->s, hb_args);
    assert_true(fx->broker >= 0);
    assert_non_null(fx->s.client);
    fx->engine = stack_start_engine(&fx->s, hb_args);
    fx->worker = stack_start_worker(&fx->s, hb_args);
    assert_true(fx->engine >= 0 && fx->worker >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 1, 10000), 0);
}

static Ferry__Stats *stats(fixture *fx, Ferry__Envelope **env)
{
    assert_int_equal(ferry_client_stats(fx->s.client, 5000, env), FERRY_OK);
    return (*env)->stats;
}

/* ---- raw peers ---- */

/* A raw socket of type connected to endpoint, with the key pair <key> (keyed
 * stacks; NULL: none) and routing id rid (NULL: libzmq's). */
static void *raw_open(fixture *fx, int type, const char *endpoint, const char *key, const char *rid)
{
    ferry_curve curve = {0};
    char err[512];
    if (fx->keyed && key) {
        char secret[300];
        snprintf(secret, sizeof secret, "%s_secret", stack_key(&fx->s, key));
        assert_int_equal(
            ferry_curve_client(&curve, secret, stack_key(&fx->s, "broker"), err, sizeof err),
            FERRY_OK);
    }
    ferry_socket_opts o = {.type = type, .endpoint = endpoint, .routing_id = rid, .curve = &curve};
    void *sock = ferry_socket_open(fx->ctx, &o, err, sizeof err);
    assert_non_null(sock);
    assert_true(fx->nraw < 16);
    fx->raw[fx->nraw++] = sock;
    return sock;
}

/* Sends env once the connection is up (bounded). */
/* Closes a raw socket before teardown does. */
static void raw_close(fixture *fx, void **sock)
{
    for (int i = 0; i < fx->nraw; i++)
        if (fx->raw[i] == *sock)
            fx->raw[i] = NULL;
    ferry_socket_close(sock);
}

static void send_ready(void *sock, const char *fn, uint32_t credit)
{
    Ferry__FunctionSpec spec = FERRY__FUNCTION_SPEC__INIT;
    spec.name = (char *)fn;
    Ferry__FunctionSpec *specs[] = {&spec};
    Ferry__Ready ready = FERRY__READY__INIT;
    ready.functions = specs;
    ready.n_functions = 1;
    ready.credit = credit;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    stack_raw_send(sock, &env, 5000);
}

static void send_reply(void *sock, ProtobufCBinaryData engine_id, uint64_t call_id,
                       const char *value)
{
    Ferry__Value *v = ferry_value_cstring(value);
    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.engine_id = engine_id;
    reply.call_id = call_id;
    reply.values = &v;
    reply.n_values = 1;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    stack_raw_send(sock, &env, 5000);
    ferry_value_free(v);
}

/* A raw worker serving 'spy', registered (the broker counts workers + 1). */
static void *spy_worker(fixture *fx, const char *key, unsigned workers)
{
    void *spy = raw_open(fx, ZMQ_DEALER, fx->s.workers, key, NULL);
    send_ready(spy, "spy", 10);
    assert_int_equal(stack_wait_ready(&fx->s, 1, workers, 5000), 0);
    return spy;
}

/* ---- checks ---- */

static void expect_str(const Ferry__Value *v, const char *want)
{
    if (v->kind_case != FERRY__VALUE__KIND_STRING || v->string.len != strlen(want) ||
        memcmp(v->string.data, want, v->string.len) != 0)
        fail_msg("want the string '%s'", want);
}

/* n echo scripts, each answered by the real peers. */
static void expect_echoes(fixture *fx, int n)
{
    for (int i = 0; i < n; i++) {
        char src[64], want[16];
        snprintf(src, sizeof src, "return ferry.call('echo', 'e%d')", i);
        snprintf(want, sizeof want, "e%d", i);
        ferry_result r;
        assert_int_equal(stack_run(&fx->s, src, NULL, 0, 10000, &r), FERRY_OK);
        if (!r.result->ok)
            fail_msg("echo %d failed: %s: %s", i, r.result->error->code, r.result->error->message);
        assert_int_equal(r.result->n_values, 1);
        expect_str(r.result->values[0], want);
        ferry_result_fini(&r);
    }
}

/* For WATCH_MS, the broker keeps exactly engines and workers and loses no more. */
static void expect_peers_kept(fixture *fx, unsigned engines, unsigned workers)
{
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    uint64_t engines_lost = st->engines_lost, workers_lost = st->workers_lost;
    ferry_envelope_free(env);
    int64_t until = ferry_now_ms() + WATCH_MS;
    while (ferry_now_ms() < until) {
        st = stats(fx, &env);
        if (st->engines != engines || st->workers != workers || st->workers_lost != workers_lost ||
            st->engines_lost != engines_lost)
            fail_msg("engines=%u workers=%u engines_lost=%llu workers_lost=%llu", st->engines,
                     st->workers, (unsigned long long)st->engines_lost,
                     (unsigned long long)st->workers_lost);
        ferry_envelope_free(env);
        poll(NULL, 0, 50); /* sampling the counters over the watch */
    }
}

static int64_t wait_counts(fixture *fx, unsigned engines, unsigned workers, int timeout_ms);

/* ---- the attacks ---- */

/* A second connection under the live worker's routing id (from ferry stats). */
static void test_worker_id_takeover(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    assert_int_equal(st->n_worker_list, 1);
    char rid[256];
    snprintf(rid, sizeof rid, "%.*s", (int)st->worker_list[0]->id.len,
             (const char *)st->worker_list[0]->id.data);
    uint32_t credit = st->worker_list[0]->credit;
    ferry_envelope_free(env);

    void *thief = raw_open(fx, ZMQ_DEALER, fx->s.workers, "worker2", rid);
    send_ready(thief, "echo", 100000);
    expect_echoes(fx, 20);
    Ferry__Envelope *got = stack_raw_recv(thief, 200, FERRY__ENVELOPE__BODY_COMMAND);
    assert_null(got);
    st = stats(fx, &env);
    assert_int_equal(st->workers, 1);
    assert_int_equal(st->worker_list[0]->credit, credit);
    ferry_envelope_free(env);
    expect_peers_kept(fx, 1, 1);
    raw_close(fx, &thief);
    expect_echoes(fx, 3);
    printf("# %s: a second connection under worker %s took nothing; the worker kept serving\n",
           fx->keyed ? "keys" : "no keys", rid);
    stack_passed(&fx->s);
}

/* Runs `return ferry.call('spy')` and answers it from spy: the engine's id. */
static void learn_engine_id(fixture *fx, void *spy, char *eid, size_t eidlen)
{
    const char *src = "return ferry.call('spy')";
    uint64_t id;
    assert_int_equal(
        ferry_client_submit(fx->s.client, src, strlen(src), "spy.lua", NULL, 0, 10000, &id),
        FERRY_OK);
    Ferry__Envelope *cmd = stack_raw_recv(spy, 5000, FERRY__ENVELOPE__BODY_COMMAND);
    assert_non_null(cmd);
    snprintf(eid, eidlen, "%.*s", (int)cmd->command->engine_id.len,
             (const char *)cmd->command->engine_id.data);
    send_reply(spy, cmd->command->engine_id, cmd->command->call_id, "seen");
    ferry_envelope_free(cmd);
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
    assert_true(r.result->ok);
    ferry_result_fini(&r);
}

/* A second connection under the live engine's routing id (from a Command it sent). */
static void test_engine_id_takeover(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    void *spy = spy_worker(fx, "worker2", 2);
    char eid[256];
    learn_engine_id(fx, spy, eid, sizeof eid);
    raw_close(fx, &spy); /* it answers no heartbeat: let it go before the watch */
    wait_counts(fx, 1, 1, 5000);

    void *thief = raw_open(fx, ZMQ_DEALER, fx->s.engines, "engine2", eid);
    Ferry__Hello hello = FERRY__HELLO__INIT;
    hello.slots = 1000000;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    stack_raw_send(thief, &env, 5000);
    expect_echoes(fx, 20);
    assert_null(stack_raw_recv(thief, 200, FERRY__ENVELOPE__BODY_SUBMIT));
    expect_peers_kept(fx, 1, 1);
    raw_close(fx, &thief);
    expect_echoes(fx, 3);
    printf("# %s: a second connection under engine %s took nothing; the engine kept serving\n",
           fx->keyed ? "keys" : "no keys", eid);
    stack_passed(&fx->s);
}

/*
 * A worker answers calls it was not given: it sees one call id, so it
 * knows the next ones (here the engine's very next call, a sleep that the
 * real worker holds for 300 ms) and sends Replies for them at once.
 */
static void test_worker_cannot_answer_others_calls(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    void *spy = spy_worker(fx, "worker2", 2);
    const char *src = "local a = ferry.call('spy') return a, ferry.call('sleep', 300)";
    uint64_t id;
    assert_int_equal(
        ferry_client_submit(fx->s.client, src, strlen(src), "t.lua", NULL, 0, 10000, &id),
        FERRY_OK);
    Ferry__Envelope *cmd = stack_raw_recv(spy, 5000, FERRY__ENVELOPE__BODY_COMMAND);
    assert_non_null(cmd);
    ProtobufCBinaryData eid = cmd->command->engine_id;
    uint64_t c1 = cmd->command->call_id;
    send_reply(spy, eid, c1, "seen");
    for (uint64_t k = 1; k <= 50; k++) /* wherever the next ids are, about now */
        send_reply(spy, eid, c1 + k, "forged");
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
    assert_true(r.result->ok);
    assert_int_equal(r.result->n_values, 2);
    expect_str(r.result->values[0], "seen");
    assert_int_equal(r.result->values[1]->kind_case, FERRY__VALUE__KIND_BOOLEAN);
    ferry_result_fini(&r);
    ferry_envelope_free(cmd);
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    printf("# %s: 50 forged replies dropped (dropped=%llu)\n", fx->keyed ? "keys" : "no keys",
           (unsigned long long)st->dropped);
    assert_true(st->dropped >= 50);
    ferry_envelope_free(env);
    raw_close(fx, &spy);
    stack_passed(&fx->s);
}

/*
 * An engine (with an engine key of its own) pushes Commands under another
 * engine's id and its next call ids to its own worker, so that the real
 * Commands would be dropped as duplicates and its Replies taken as theirs.
 */
static void test_engine_cannot_push_under_another_id(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    void *spy = spy_worker(fx, "worker2", 2);
    const char *src = "local a = ferry.call('spy') return a, ferry.call('spy')";
    uint64_t id;
    assert_int_equal(
        ferry_client_submit(fx->s.client, src, strlen(src), "t.lua", NULL, 0, 10000, &id),
        FERRY_OK);
    Ferry__Envelope *first = stack_raw_recv(spy, 5000, FERRY__ENVELOPE__BODY_COMMAND);
    assert_non_null(first);
    void *push = raw_open(fx, ZMQ_PUSH, fx->s.commands, "engine2", NULL);
    Ferry__Value *mark = ferry_value_cstring("forged");
    for (uint64_t k = 1; k <= 20; k++) {
        Ferry__Command c = FERRY__COMMAND__INIT;
        c.engine_id = first->command->engine_id;
        c.call_id = first->command->call_id + k;
        c.function = "spy";
        c.args = &mark;
        c.n_args = 1;
        Ferry__Envelope env;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
        env.command = &c;
        stack_raw_send(push, &env, 5000);
    }
    ferry_value_free(mark);
    /* The forged Commands had their chance to arrive first: answer the real one. */
    Ferry__Stats *st;
    Ferry__Envelope *senv;
    int64_t until = ferry_now_ms() + 5000;
    do {
        st = stats(fx, &senv);
        int done = st->dropped >= 20;
        ferry_envelope_free(senv);
        if (done)
            break;
        poll(NULL, 0, 10);
    } while (ferry_now_ms() < until);
    send_reply(spy, first->command->engine_id, first->command->call_id, "one");
    Ferry__Envelope *second = stack_raw_recv(spy, 5000, FERRY__ENVELOPE__BODY_COMMAND);
    assert_non_null(second);
    assert_int_equal(second->command->n_args, 0); /* the engine's own, not a forged one */
    send_reply(spy, second->command->engine_id, second->command->call_id, "two");
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
    assert_true(r.result->ok);
    assert_int_equal(r.result->n_values, 2);
    expect_str(r.result->values[0], "one");
    expect_str(r.result->values[1], "two");
    ferry_result_fini(&r);
    assert_null(stack_raw_recv(spy, 100, FERRY__ENVELOPE__BODY_COMMAND));
    st = stats(fx, &senv);
    printf("# keys: 20 Commands under another engine's id dropped (dropped=%llu)\n",
           (unsigned long long)st->dropped);
    assert_true(st->dropped >= 20);
    ferry_envelope_free(senv);
    ferry_envelope_free(first);
    ferry_envelope_free(second);
    raw_close(fx, &push);
    raw_close(fx, &spy);
    stack_passed(&fx->s);
}

/* cmd packed into a malloc'd buffer (*len bytes): an item for a Batch. */
static uint8_t *command_item(ProtobufCBinaryData engine_id, uint64_t call_id, size_t *len)
{
    Ferry__Command c = FERRY__COMMAND__INIT;
    c.engine_id = engine_id;
    c.call_id = call_id;
    c.function = "spy";
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
    env.command = &c;
    *len = ferry__envelope__get_packed_size(&env);
    uint8_t *out = malloc(*len);
    assert_non_null(out);
    ferry__envelope__pack(&env, out);
    return out;
}

/*
 * The same inside a Batch (docs/protocol.md, Batches): an engine key pushes
 * one Batch holding a Command under another engine's id between two under
 * an id of its own. Only the forged item is dropped (forged_command); its
 * own two are routed.
 */
static void test_forged_item_in_a_batch_dropped(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    void *spy = spy_worker(fx, "worker2", 2);
    const char *src = "return ferry.call('spy')";
    uint64_t id;
    assert_int_equal(
        ferry_client_submit(fx->s.client, src, strlen(src), "t.lua", NULL, 0, 10000, &id),
        FERRY_OK);
    Ferry__Envelope *first = stack_raw_recv(spy, 5000, FERRY__ENVELOPE__BODY_COMMAND);
    assert_non_null(first);
    Ferry__Envelope *senv;
    uint64_t before = stats(fx, &senv)->dropped;
    ferry_envelope_free(senv);

    void *push = raw_open(fx, ZMQ_PUSH, fx->s.commands, "engine2", NULL);
    ProtobufCBinaryData own = {.len = strlen("engine2-own"), .data = (uint8_t *)"engine2-own"};
    ProtobufCBinaryData items[3];
    items[0].data = command_item(own, 1, &items[0].len);
    items[1].data = command_item(first->command->engine_id, first->command->call_id + 1,
                                 &items[1].len);
    items[2].data = command_item(own, 2, &items[2].len);
    Ferry__Batch batch = FERRY__BATCH__INIT;
    batch.items = items;
    batch.n_items = 3;
    Ferry__Envelope benv;
    ferry_envelope_init(&benv);
    benv.body_case = FERRY__ENVELOPE__BODY_BATCH;
    benv.batch = &batch;
    stack_raw_send(push, &benv, 5000);
    for (int i = 0; i < 3; i++)
        free(items[i].data);

    /* Its own two arrive (the spy takes no batches: one message each), the forged one never. */
    for (uint64_t k = 1; k <= 2; k++) {
        Ferry__Envelope *got = stack_raw_recv(spy, 5000, FERRY__ENVELOPE__BODY_COMMAND);
        assert_non_null(got);
        assert_int_equal(got->command->engine_id.len, own.len);
        assert_memory_equal(got->command->engine_id.data, own.data, own.len);
        assert_int_equal(got->command->call_id, k);
        ferry_envelope_free(got);
    }
    int64_t until = ferry_now_ms() + 5000;
    Ferry__Stats *st;
    while (st = stats(fx, &senv), st->dropped < before + 1) {
        ferry_envelope_free(senv);
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
    printf("# %s: a forged Command in a Batch dropped, its two neighbours routed (dropped=%llu)\n",
           fx->keyed ? "keys" : "no keys", (unsigned long long)st->dropped);
    ferry_envelope_free(senv);
    assert_null(stack_raw_recv(spy, 100, FERRY__ENVELOPE__BODY_COMMAND));
    /* The real engine's call is untouched. */
    send_reply(spy, first->command->engine_id, first->command->call_id, "one");
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
    assert_true(r.result->ok);
    expect_str(r.result->values[0], "one");
    ferry_result_fini(&r);
    ferry_envelope_free(first);
    raw_close(fx, &push);
    raw_close(fx, &spy);
    stack_passed(&fx->s);
}

/* Waits until the broker counts engines and workers exactly; the ms it took. */
static int64_t wait_counts(fixture *fx, unsigned engines, unsigned workers, int timeout_ms)
{
    int64_t t0 = ferry_now_ms(), until = t0 + timeout_ms;
    for (;;) {
        Ferry__Envelope *env;
        Ferry__Stats *st = stats(fx, &env);
        int ok = st->engines == engines && st->workers == workers;
        ferry_envelope_free(env);
        if (ok)
            return ferry_now_ms() - t0;
        if (ferry_now_ms() > until)
            fail_msg("broker never counted %u engines and %u workers", engines, workers);
        poll(NULL, 0, 10);
    }
}

/*
 * The broker gives up a peer that was stopped past liveness while its
 * connection stays open: once the peer runs again, its heartbeats go
 * unanswered, and it registers again (under a new id) by itself.
 */
static void test_peers_whose_route_is_lost_register_again(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    stack_signal(&fx->s, fx->worker, SIGSTOP);
    stack_signal(&fx->s, fx->engine, SIGSTOP);
    wait_counts(fx, 0, 0, 5000);
    stack_signal(&fx->s, fx->worker, SIGCONT);
    stack_signal(&fx->s, fx->engine, SIGCONT);
    int64_t took = wait_counts(fx, 1, 1, 5000);
    printf("# %s: engine and worker registered again %lld ms after they ran again "
           "(liveness 300 ms)\n",
           fx->keyed ? "keys" : "no keys", (long long)took);
    expect_echoes(fx, 3);
    stack_passed(&fx->s);
}

/*
 * The variant: connect under the victim's routing id, wait for the victim's
 * connection to go (kill -9), and keep talking as the victim (sending its
 * id as a frame too, in case the ROUTER takes the next frame as the id),
 * hoping to be sent the calls the broker still routes to it. It must see
 * none: the ROUTER does not hand it the route, and with keys a message
 * under a registered id from another key makes the broker give that peer
 * up at once (identity_taken).
 */
static void test_worker_id_taken_after_its_connection_died(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    int other = stack_start_worker(&fx->s, hb_args);
    assert_true(other >= 0);
    wait_counts(fx, 1, 2, 10000);
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    char rid[256] = "", pid[32];
    snprintf(pid, sizeof pid, "-%d-", (int)fx->s.procs[fx->worker].pid);
    for (size_t i = 0; i < st->n_worker_list; i++)
        if (memmem(st->worker_list[i]->id.data, st->worker_list[i]->id.len, pid, strlen(pid)))
            snprintf(rid, sizeof rid, "%.*s", (int)st->worker_list[i]->id.len,
                     (const char *)st->worker_list[i]->id.data);
    ferry_envelope_free(env);
    assert_true(rid[0]);

    void *thief = raw_open(fx, ZMQ_DEALER, fx->s.workers, "worker2", rid);
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope hbenv;
    ferry_envelope_init(&hbenv);
    hbenv.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    hbenv.heartbeat = &hb;
    stack_raw_send(thief, &hbenv, 5000);
    stack_signal(&fx->s, fx->worker, SIGKILL);
    assert_true(stack_wait_exit(&fx->s, fx->worker, 5000) != -1);
    int commands = 0, scripts = 0;
    int64_t until = ferry_now_ms() + WATCH_MS;
    while (ferry_now_ms() < until) {
        assert_true(zmq_send(thief, rid, strlen(rid), ZMQ_DONTWAIT) >= 0 || zmq_errno() == EAGAIN);
        (void)ferry_wire_send(thief, NULL, 0, &hbenv);
        expect_echoes(fx, 1);
        scripts++;
        Ferry__Envelope *cmd;
        while ((cmd = stack_raw_recv(thief, 0, FERRY__ENVELOPE__BODY_COMMAND))) {
            commands++;
            ferry_envelope_free(cmd);
        }
    }
    st = stats(fx, &env);
    printf("# %s: thief under a dead worker's id: %d commands seen in %d scripts, "
           "workers=%u dropped=%llu\n",
           fx->keyed ? "keys" : "no keys", commands, scripts, st->workers,
           (unsigned long long)st->dropped);
    assert_int_equal(commands, 0);
    assert_int_equal(st->workers, 1);
    ferry_envelope_free(env);
    raw_close(fx, &thief);
    stack_passed(&fx->s);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_worker_id_takeover, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(test_worker_id_takeover, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_engine_id_takeover, setup_keys, teardown),
        cmocka_unit_test_setup_teardown(test_engine_id_takeover, setup_plain, teardown),
        cmocka_unit_test_setup_teardown(test_worker_cannot_answer_others_calls, setup_keys,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_worker_cannot_answer_others_calls, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_forged_item_in_a_batch_dropped, setup_keys,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_engine_cannot_push_under_another_id, setup_keys,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_worker_id_taken_after_its_connection_died, setup_keys,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_worker_id_taken_after_its_connection_died, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peers_whose_route_is_lost_register_again, setup_keys,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peers_whose_route_is_lost_register_again, setup_plain,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

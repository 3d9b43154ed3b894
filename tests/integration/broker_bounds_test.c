/*
 * broker_bounds_test: no peer can exhaust the broker (issue 12): its queues are
 * bounded in bytes (--queue-bytes), a Ready's credit and function list are
 * capped, and a stats reply stays small whatever peers registered. Real
 * processes over tcp on loopback; raw libzmq peers play the attackers; the
 * broker's peak RSS is read from /proc (VmHWM).
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

/* docs/protocol.md#security: the broker's RSS stays under --queue-bytes plus this
 * (measured: 158 MB peak with the default 128 MiB, no sanitizers). */
#define RSS_MARGIN_MB 256
#define QUEUE_MB 128 /* the default --queue-bytes, in MiB */

/* Under AddressSanitizer freed memory stays resident in its quarantine (256 MB by
 * default): the bounds hold for the program, not for the quarantine. */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_SLACK_MB 512
#else
#define SANITIZER_SLACK_MB 0
#endif

typedef struct {
    ferry_stack s;
    int broker;
    void *ctx;
    void *raw[16]; /* every raw socket opened: closed at teardown (a failed test leaves some) */
    int nraw;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(stack_init_tcp(&fx->s), 0);
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

/* The broker's peak resident set, in MB (VmHWM). */
static long broker_peak_mb(fixture *fx)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)fx->s.procs[fx->broker].pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    assert_true(kb > 0);
    return kb / 1024;
}

static void *raw_open(fixture *fx, int type, const char *endpoint, const char *rid)
{
    char err[256];
    ferry_socket_opts o = {.type = type, .endpoint = endpoint, .routing_id = rid};
    void *sock = ferry_socket_open(fx->ctx, &o, err, sizeof err);
    assert_non_null(sock);
    assert_true(fx->nraw < 16);
    fx->raw[fx->nraw++] = sock;
    return sock;
}

/* A raw engine with routing id rid that says Hello with one slot. */
static void *raw_engine(fixture *fx, const char *rid)
{
    void *engine = raw_open(fx, ZMQ_DEALER, fx->s.engines, rid);
    Ferry__Hello hello = FERRY__HELLO__INIT;
    hello.slots = 1;
    Ferry__Envelope henv;
    ferry_envelope_init(&henv);
    henv.body_case = FERRY__ENVELOPE__BODY_HELLO;
    henv.hello = &hello;
    stack_raw_send(engine, &henv, 20000);
    return engine;
}

/* Closes a raw socket before teardown does. */
static void raw_close(fixture *fx, void **sock)
{
    for (int i = 0; i < fx->nraw; i++)
        if (fx->raw[i] == *sock)
            fx->raw[i] = NULL;
    ferry_socket_close(sock);
}

/* A Ready for n functions named <prefix><i> padded to name_len bytes. */
static void send_ready(void *sock, size_t n, size_t name_len, uint32_t credit)
{
    Ferry__FunctionSpec *specs = calloc(n, sizeof *specs);
    Ferry__FunctionSpec **ptrs = calloc(n, sizeof *ptrs);
    char *names = calloc(n, name_len + 1);
    assert_true(specs && ptrs && names);
    for (size_t i = 0; i < n; i++) {
        char *name = names + i * (name_len + 1);
        memset(name, 'f', name_len);
        char num[32];
        int k = snprintf(num, sizeof num, "%zu", i);
        memcpy(name + name_len - (size_t)k, num, (size_t)k);
        ferry__function_spec__init(&specs[i]);
        specs[i].name = name;
        ptrs[i] = &specs[i];
    }
    Ferry__Ready ready = FERRY__READY__INIT;
    ready.functions = ptrs;
    ready.n_functions = n;
    ready.credit = credit;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    stack_raw_send(sock, &env, 20000);
    free(specs);
    free(ptrs);
    free(names);
}

static Ferry__Stats *stats(fixture *fx, Ferry__Envelope **env)
{
    assert_int_equal(ferry_client_stats(fx->s.client, 5000, env), FERRY_OK);
    return (*env)->stats;
}

static void wait_workers(fixture *fx, unsigned workers)
{
    int64_t until = ferry_now_ms() + 10000;
    for (;;) {
        Ferry__Envelope *env;
        unsigned n = stats(fx, &env)->workers;
        ferry_envelope_free(env);
        if (n == workers)
            return;
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
}

/* 200 Commands of 10 MB for a worker without credit: overloaded past --queue-bytes. */
static void test_queue_bounded_in_bytes(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    /* The raw peers send no heartbeats: give them a long liveness. */
    const char *args[] = {"--heartbeat-ms", "60000", NULL};
    fx->broker = stack_start_broker(s, args);
    assert_true(fx->broker >= 0);
    void *engine = raw_engine(fx, "flood-engine");
    void *worker = raw_open(fx, ZMQ_DEALER, s->workers, "stingy-worker");
    send_ready(worker, 1, 3, 0); /* serves "ff0", with no credit */
    wait_workers(fx, 1);
    long before = broker_peak_mb(fx);

    void *push = raw_open(fx, ZMQ_PUSH, s->commands, NULL);
    size_t big = 10 * 1000 * 1000;
    char *payload = malloc(big);
    assert_non_null(payload);
    memset(payload, 'x', big);
    Ferry__Value *arg = ferry_value_string(payload, big);
    free(payload);
    int64_t t0 = ferry_now_ms();
    const int n = 200;
    for (int i = 0; i < n; i++) {
        Ferry__Command c = FERRY__COMMAND__INIT;
        c.engine_id.data = (uint8_t *)"flood-engine";
        c.engine_id.len = strlen("flood-engine");
        c.call_id = (uint64_t)i + 1;
        c.function = "ff0";
        c.args = &arg;
        c.n_args = 1;
        c.timeout_ms = 60000;
        Ferry__Envelope env;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
        env.command = &c;
        stack_raw_send(push, &env, 20000);
    }
    ferry_value_free(arg);
    /* Those past the bound are answered overloaded at once; the rest wait. */
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    uint64_t queued = st->queued;
    ferry_envelope_free(env);
    int overloaded = 0;
    while ((uint64_t)overloaded + queued < (uint64_t)n) {
        Ferry__Envelope *r = stack_raw_recv(engine, 10000, FERRY__ENVELOPE__BODY_REPLY);
        if (!r)
            fail_msg("only %d overloaded answers, %llu queued", overloaded,
                     (unsigned long long)queued);
        assert_non_null(r->reply->error);
        assert_string_equal(r->reply->error->code, "overloaded");
        overloaded++;
        ferry_envelope_free(r);
    }
    int64_t took = ferry_now_ms() - t0;
    st = stats(fx, &env);
    long peak = broker_peak_mb(fx);
    printf("# 200 x 10 MB Commands, no credit: %llu queued, %d overloaded in %lld ms; "
           "broker peak RSS %ld MB (before %ld MB, bound %d + %d MB)\n",
           (unsigned long long)st->queued, overloaded, (long long)took, peak, before, QUEUE_MB,
           RSS_MARGIN_MB);
    assert_true(st->queued * big <= (uint64_t)QUEUE_MB * 1024 * 1024);
    assert_int_equal(st->queued + (uint64_t)overloaded, (uint64_t)n);
    assert_true(peak < QUEUE_MB + RSS_MARGIN_MB + SANITIZER_SLACK_MB);
    ferry_envelope_free(env);
    raw_close(fx, &push);
    raw_close(fx, &worker);
    raw_close(fx, &engine);
    stack_passed(s);
}

/* The variant: the same flood as scripts (no engine to take them) shares the bound. */
static void test_script_queue_bounded_in_bytes(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    fx->broker = stack_start_broker(s, NULL);
    assert_true(fx->broker >= 0);
    size_t big = 10 * 1000 * 1000;
    char *src = malloc(big);
    assert_non_null(src);
    memset(src, ' ', big);
    memcpy(src, "return 1", 8);
    const int n = 20;
    for (int i = 0; i < n; i++) {
        uint64_t id;
        assert_int_equal(ferry_client_submit(s->client, src, big, "big.lua", NULL, 0, 60000, &id),
                         FERRY_OK);
    }
    free(src);
    /* Stats asked on a connection of its own: a stats wait skips the results before it.
     * Every Submit is either queued or answered overloaded: wait until they add up. */
    ferry_client *asker = stack_client(s, NULL, NULL);
    assert_non_null(asker);
    uint64_t queued = 0;
    int overloaded = 0;
    int64_t until = ferry_now_ms() + 15000;
    while ((uint64_t)overloaded + queued < (uint64_t)n) {
        assert_true(ferry_now_ms() < until);
        ferry_result r;
        ferry_err err = ferry_client_wait(s->client, 100, &r);
        if (err == FERRY_OK) {
            assert_string_equal(r.result->error->code, "overloaded");
            overloaded++;
            ferry_result_fini(&r);
            continue;
        }
        assert_int_equal(err, FERRY_ETIMEOUT);
        Ferry__Envelope *env;
        assert_int_equal(ferry_client_stats(asker, 5000, &env), FERRY_OK);
        queued = env->stats->scripts_queued;
        ferry_envelope_free(env);
    }
    ferry_client_destroy(&asker);
    long peak = broker_peak_mb(fx);
    printf("# 20 scripts of 10 MB, no engine: %llu queued, %d overloaded; broker peak RSS %ld MB\n",
           (unsigned long long)queued, overloaded, peak);
    assert_true(queued * big <= (uint64_t)QUEUE_MB * 1024 * 1024);
    assert_true(overloaded > 0);
    assert_true(peak < QUEUE_MB + RSS_MARGIN_MB + SANITIZER_SLACK_MB);
    stack_passed(s);
}

/* A worker registers thousands of long names; stats stays small, and so does the broker. */
static void test_stats_reply_stays_small(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    const char *args[] = {"--ready-functions-max", "10000", "--heartbeat-ms", "60000", NULL};
    fx->broker = stack_start_broker(s, args);
    assert_true(fx->broker >= 0);
    void *worker = raw_open(fx, ZMQ_DEALER, s->workers, "wordy-worker");
    send_ready(worker, 9990, 250, 4000000000u);
    wait_workers(fx, 1);
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    size_t bytes = ferry__envelope__get_packed_size(env);
    printf("# stats after a Ready of 9,990 names of 250 bytes: %zu bytes, %zu functions and "
           "%zu names listed, truncated=%d, credit %u (asked 4000000000)\n",
           bytes, st->n_functions, st->n_worker_list ? st->worker_list[0]->n_functions : 0,
           st->truncated, st->n_worker_list ? st->worker_list[0]->credit : 0);
    assert_true(bytes < 80 * 1024);
    assert_true(st->truncated);
    assert_int_equal(st->n_worker_list, 1);
    assert_int_equal(st->worker_list[0]->credit, 100000); /* --credit-max */
    ferry_envelope_free(env);

    /* 600 stats requests nobody reads: the broker holds 600 small replies. */
    void *client = raw_open(fx, ZMQ_DEALER, s->clients, NULL);
    long before = broker_peak_mb(fx);
    for (int i = 0; i < 600; i++) {
        Ferry__StatsRequest req = FERRY__STATS_REQUEST__INIT;
        req.request_id = (uint64_t)i + 1;
        Ferry__Envelope renv;
        ferry_envelope_init(&renv);
        renv.body_case = FERRY__ENVELOPE__BODY_STATS_REQUEST;
        renv.stats_request = &req;
        stack_raw_send(client, &renv, 20000);
    }
    Ferry__Envelope *last = NULL;
    for (int i = 0; i < 600; i++) {
        ferry_envelope_free(last);
        last = stack_raw_recv(client, 10000, FERRY__ENVELOPE__BODY_STATS);
        assert_non_null(last);
    }
    ferry_envelope_free(last);
    long peak = broker_peak_mb(fx);
    printf("# 600 stats requests: broker peak RSS %ld MB (before %ld MB)\n", peak, before);
    assert_true(peak < before + 64 + SANITIZER_SLACK_MB);
    raw_close(fx, &worker);
    raw_close(fx, &client);
    stack_passed(s);
}

/* The default caps: more than 1000 functions, or a name over 255 bytes, and the Ready is refused.
 */
static void test_ready_over_the_function_cap_is_refused(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    const char *args[] = {"--heartbeat-ms", "60000", NULL};
    fx->broker = stack_start_broker(s, args);
    assert_true(fx->broker >= 0);
    void *greedy = raw_open(fx, ZMQ_DEALER, s->workers, "greedy-worker");
    send_ready(greedy, 1001, 8, 10);
    void *longname = raw_open(fx, ZMQ_DEALER, s->workers, "long-name-worker");
    send_ready(longname, 1, 256, 10);
    void *fair = raw_open(fx, ZMQ_DEALER, s->workers, "fair-worker");
    send_ready(fair, 1000, 8, 10);
    Ferry__Envelope *env;
    Ferry__Stats *st;
    int64_t until = ferry_now_ms() + 10000;
    for (;;) { /* the three Readys handled: two refused, one registered */
        st = stats(fx, &env);
        if (st->dropped >= 2 && st->workers >= 1)
            break;
        ferry_envelope_free(env);
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
    assert_int_equal(st->n_worker_list, 1);
    assert_memory_equal(st->worker_list[0]->id.data, "fair-worker", 11);
    assert_true(st->dropped >= 2);
    ferry_envelope_free(env);
    raw_close(fx, &greedy);
    raw_close(fx, &longname);
    raw_close(fx, &fair);
    stack_passed(s);
}

/* A Ready naming one function by these bytes. */
static void send_ready_named(void *sock, const char *name)
{
    Ferry__FunctionSpec spec = FERRY__FUNCTION_SPEC__INIT;
    spec.name = (char *)name;
    Ferry__FunctionSpec *ptr = &spec;
    Ferry__Ready ready = FERRY__READY__INIT;
    ready.functions = &ptr;
    ready.n_functions = 1;
    ready.credit = 1;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    stack_raw_send(sock, &env, 20000);
}

/* A Command for function from engine raw-engine; returns the code of its Reply's error. */
static char *command_answer(void *push, void *engine, uint64_t call_id, const char *function)
{
    Ferry__Command c = FERRY__COMMAND__INIT;
    c.engine_id.data = (uint8_t *)"raw-engine";
    c.engine_id.len = strlen("raw-engine");
    c.call_id = call_id;
    c.function = (char *)function;
    c.timeout_ms = 60000;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
    env.command = &c;
    stack_raw_send(push, &env, 20000);
    Ferry__Envelope *got = stack_raw_recv(engine, 5000, FERRY__ENVELOPE__BODY_REPLY);
    assert_non_null(got);
    assert_int_equal(got->reply->call_id, call_id);
    assert_non_null(got->reply->error);
    char *code = strdup(got->reply->error->code);
    ferry_envelope_free(got);
    return code;
}

/* The one rule for function names (1 to 255 bytes of UTF-8) holds at the broker too: a Ready
 * naming another is refused, a Command for another answered bad_message at once. */
static void test_function_names_one_rule(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    const char *args[] = {"--heartbeat-ms", "60000", NULL};
    fx->broker = stack_start_broker(s, args);
    assert_true(fx->broker >= 0);
    void *bad = raw_open(fx, ZMQ_DEALER, s->workers, "latin1-worker");
    send_ready_named(bad, "caf\xe9");
    void *good = raw_open(fx, ZMQ_DEALER, s->workers, "utf8-worker");
    send_ready_named(good, "caf\xc3\xa9");
    wait_workers(fx, 1);
    Ferry__Envelope *env;
    Ferry__Stats *st;
    int64_t until = ferry_now_ms() + 10000;
    while (st = stats(fx, &env), st->dropped < 1) {
        ferry_envelope_free(env);
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
    assert_int_equal(st->n_worker_list, 1);
    assert_memory_equal(st->worker_list[0]->id.data, "utf8-worker", 11);
    ferry_envelope_free(env);

    void *engine = raw_engine(fx, "raw-engine");
    until = ferry_now_ms() + 10000;
    while (st = stats(fx, &env), st->engines < 1) {
        ferry_envelope_free(env);
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
    ferry_envelope_free(env);
    void *push = raw_open(fx, ZMQ_PUSH, s->commands, NULL);
    size_t big = 70000;
    char *name = malloc(big + 1);
    assert_non_null(name);
    memset(name, 'n', big);
    name[big] = '\0';
    const char *lens[] = {"256", "70000"};
    for (int i = 0; i < 2; i++) {
        name[atoi(lens[i])] = '\0';
        char *code = command_answer(push, engine, (uint64_t)i + 1, name);
        assert_string_equal(code, "bad_message");
        free(code);
        name[atoi(lens[i])] = 'n';
    }
    free(name);
    char *code = command_answer(push, engine, 3, "caf\xe9");
    assert_string_equal(code, "bad_message");
    free(code);
    /* A valid name is routed: the worker gets the Command. */
    Ferry__Command c = FERRY__COMMAND__INIT;
    c.engine_id.data = (uint8_t *)"raw-engine";
    c.engine_id.len = strlen("raw-engine");
    c.call_id = 4;
    c.function = "caf\xc3\xa9";
    c.timeout_ms = 60000;
    Ferry__Envelope cenv;
    ferry_envelope_init(&cenv);
    cenv.body_case = FERRY__ENVELOPE__BODY_COMMAND;
    cenv.command = &c;
    stack_raw_send(push, &cenv, 20000);
    Ferry__Envelope *got = stack_raw_recv(good, 5000, FERRY__ENVELOPE__BODY_COMMAND);
    assert_non_null(got);
    assert_int_equal(got->command->call_id, 4);
    ferry_envelope_free(got);
    raw_close(fx, &push);
    raw_close(fx, &engine);
    raw_close(fx, &bad);
    raw_close(fx, &good);
    stack_passed(s);
}

/* An engine that takes a script and never answers (alive, just hung): the broker answers
 * timeout 5 s past the deadline, and ferry_client_run is still waiting for it then. */
static void test_broker_answers_a_hung_script_before_the_client_gives_up(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    const char *args[] = {"--heartbeat-ms", "60000", NULL};
    fx->broker = stack_start_broker(s, args);
    assert_true(fx->broker >= 0);
    void *engine = raw_engine(fx, "hung-engine");
    Ferry__Envelope *env;
    int64_t until = ferry_now_ms() + 10000;
    while (stats(fx, &env)->engines < 1) {
        ferry_envelope_free(env);
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
    ferry_envelope_free(env);
    int64_t t0 = ferry_now_ms();
    ferry_result r;
    assert_int_equal(ferry_client_run(s->client, "return 1", 8, "hung.lua", NULL, 0, 1000, &r),
                     FERRY_OK);
    int64_t took = ferry_now_ms() - t0;
    printf("# hung engine: the broker answered %s after %lld ms\n", r.result->error->code,
           (long long)took);
    assert_false(r.result->ok);
    assert_string_equal(r.result->error->code, "timeout");
    assert_true(took >= 1000 + 5000 - 100 && took < 1000 + FERRY_CLIENT_GRACE_MS);
    ferry_result_fini(&r);
    raw_close(fx, &engine);
    stack_passed(s);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_bounded_in_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_queue_bounded_in_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats_reply_stays_small, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_over_the_function_cap_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_function_names_one_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_broker_answers_a_hung_script_before_the_client_gives_up, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

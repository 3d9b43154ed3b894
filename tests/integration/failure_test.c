/*
 * failure_test: whatever dies or misbehaves, no script hangs and no process
 * crashes (DESIGN.md, Invariants and Failure). Real processes, killed for
 * real: kill -9 and SIGSTOP of workers, engines and the broker, SIGTERM
 * drains, and a flood of bad frames on every broker socket.
 *
 * Every wait is for an event (a result, a count in the broker's stats, a
 * child's exit) with a bound. The times printed with '#' are the measured
 * numbers the failure handling promises, with the default heartbeat (1 s)
 * and liveness (3).
 */
#include "harness.h"

#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

/* The defaults of --heartbeat-ms and --liveness: a peer is lost after this much silence. */
#define LIVENESS_MS 3000

typedef struct {
    ferry_stack s;
    int broker;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(stack_init(&fx->s), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    /* Every child still running must exit cleanly on SIGTERM (under ASan: with no leak). */
    int rc = stack_stop(&fx->s);
    free(fx);
    return rc;
}

static void start_broker(fixture *fx, const char *const *extra)
{
    fx->broker = stack_start_broker(&fx->s, extra);
    assert_true(fx->broker >= 0);
    assert_non_null(fx->s.client);
}

/* A broker, one engine (eargs) and one worker (wargs), both registered. The worker's index. */
static int start_one_each(fixture *fx, const char *const *eargs, const char *const *wargs)
{
    start_broker(fx, NULL);
    assert_true(stack_start_engine(&fx->s, eargs) >= 0);
    int worker = stack_start_worker(&fx->s, wargs);
    assert_true(worker >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 1, 10000), 0);
    return worker;
}

static Ferry__Stats *stats(fixture *fx, Ferry__Envelope **env)
{
    assert_int_equal(ferry_client_stats(fx->s.client, 5000, env), FERRY_OK);
    assert_non_null((*env)->stats);
    return (*env)->stats;
}

typedef int (*stats_cond)(const Ferry__Stats *st, uint64_t want);

static int in_flight_at_least(const Ferry__Stats *st, uint64_t want)
{
    return st->in_flight >= want;
}

static int running_at_least(const Ferry__Stats *st, uint64_t want)
{
    return st->scripts_running >= want;
}

static int completed_at_least(const Ferry__Stats *st, uint64_t want)
{
    return st->completed >= want;
}

/* Asks the broker until cond holds, within timeout_ms; fails the test otherwise. */
static void wait_stats(fixture *fx, stats_cond cond, uint64_t want, int timeout_ms)
{
    int64_t until = ferry_now_ms() + timeout_ms;
    while (ferry_now_ms() < until) {
        Ferry__Envelope *env = NULL;
        if (ferry_client_stats(fx->s.client, 1000, &env) == FERRY_OK) {
            int ok = cond(env->stats, want);
            ferry_envelope_free(env);
            if (ok)
                return;
        }
        /* A count in another process: look again shortly. */
        poll(NULL, 0, 5);
    }
    fail_msg("broker stats did not reach %llu within %d ms", (unsigned long long)want, timeout_ms);
}

static void submit(fixture *fx, const char *src, uint32_t timeout_ms, uint64_t *id)
{
    assert_int_equal(
        ferry_client_submit(fx->s.client, src, strlen(src), "failure.lua", NULL, 0, timeout_ms, id),
        FERRY_OK);
}

static void expect_code(const ferry_result *r, const char *code)
{
    assert_false(r->result->ok);
    assert_non_null(r->result->error);
    if (strcmp(r->result->error->code, code) != 0)
        fail_msg("want %s, got %s: %s", code, r->result->error->code, r->result->error->message);
}

static void expect_ok(const ferry_result *r)
{
    if (!r->result->ok)
        fail_msg("script failed: %s: %s", r->result->error ? r->result->error->code : "?",
                 r->result->error ? r->result->error->message : "?");
}

static void kill9(fixture *fx, int idx)
{
    stack_signal(&fx->s, idx, SIGKILL);
    assert_true(stack_wait_exit(&fx->s, idx, 5000) != -1);
}

/* ---- workers ---- */

static void test_kill9_worker_mid_call_not_idempotent(void **state)
{
    fixture *fx = *state;
    const char *wargs[] = {"--not-idempotent", "sleep", NULL};
    int worker = start_one_each(fx, NULL, wargs);

    submit(fx, "return ferry.call('sleep', 20000)", 30000, NULL);
    wait_stats(fx, in_flight_at_least, 1, 10000);
    int64_t t0 = ferry_now_ms();
    kill9(fx, worker);
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
    int64_t took = ferry_now_ms() - t0;
    expect_code(&r, "worker_lost");
    printf("# kill -9 worker mid non-idempotent call: worker_lost after %lld ms\n",
           (long long)took);
    assert_true(took < LIVENESS_MS + 1000);
    ferry_result_fini(&r);

    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    assert_int_equal(st->workers, 0);
    assert_int_equal(st->in_flight, 0);
    assert_true(st->workers_lost >= 1);
    ferry_envelope_free(env);
    stack_passed(&fx->s);
}

static void test_silent_worker_is_lost_past_liveness(void **state)
{
    fixture *fx = *state;
    const char *wargs[] = {"--not-idempotent", "sleep", NULL};
    int worker = start_one_each(fx, NULL, wargs);

    submit(fx, "local ok, e = pcall(ferry.call, 'sleep', 20000) return e.code", 30000, NULL);
    wait_stats(fx, in_flight_at_least, 1, 10000);
    /* Stopped, not dead: its connection stays up, only heartbeats tell. */
    int64_t t0 = ferry_now_ms();
    stack_signal(&fx->s, worker, SIGSTOP);
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
    int64_t took = ferry_now_ms() - t0;
    expect_ok(&r);
    assert_int_equal(r.result->n_values, 1);
    assert_memory_equal(r.result->values[0]->string.data, "worker_lost", 11);
    printf("# SIGSTOP worker mid non-idempotent call: worker_lost after %lld ms\n",
           (long long)took);
    assert_true(took >= LIVENESS_MS - 1000 && took < LIVENESS_MS + 1000);
    ferry_result_fini(&r);
    kill9(fx, worker);
    stack_passed(&fx->s);
}

static void test_kill9_worker_echo_calls_all_succeed(void **state)
{
    fixture *fx = *state;
    start_broker(fx, NULL);
    const char *eargs[] = {"--slots", "1000", NULL};
    assert_true(stack_start_engine(&fx->s, eargs) >= 0);
    int victim = stack_start_worker(&fx->s, NULL);
    assert_true(stack_start_worker(&fx->s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 2, 10000), 0);

    enum { N = 40, CALLS = 300 };
    const char *src = "local n = 0\n"
                      "for i = 1, 300 do\n"
                      "  local a, b = ferry.call('echo', i, 'x')\n"
                      "  if a ~= i or b ~= 'x' then error('wrong answer') end\n"
                      "  n = n + 1\n"
                      "end\n"
                      "return n";
    for (int i = 0; i < N; i++)
        submit(fx, src, 60000, NULL);
    /* Both workers busy with calls in flight when one dies. */
    wait_stats(fx, completed_at_least, N * CALLS / 4, 30000);
    kill9(fx, victim);
    for (int i = 0; i < N; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(fx->s.client, 60000, &r), FERRY_OK);
        expect_ok(&r);
        assert_int_equal(r.result->values[0]->integer, CALLS);
        ferry_result_fini(&r);
    }
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    printf("# kill -9 one of two workers under %d echo scripts: all %d calls succeeded, "
           "%llu re-sent\n",
           N, N * CALLS, (unsigned long long)st->calls_retried);
    assert_int_equal(st->workers_lost, 1);
    assert_int_equal(st->workers, 1);
    ferry_envelope_free(env);
    stack_passed(&fx->s);
}

static void test_sigterm_worker_drains_100_sleeps(void **state)
{
    fixture *fx = *state;
    const char *eargs[] = {"--slots", "1000", NULL};
    int leaving = start_one_each(fx, eargs, NULL);

    enum { N = 100 };
    for (int i = 0; i < N; i++)
        submit(fx, "return ferry.call('sleep', 1500)", 20000, NULL);
    wait_stats(fx, in_flight_at_least, N, 10000);
    int64_t t0 = ferry_now_ms();
    stack_signal(&fx->s, leaving, SIGTERM);

    /* New calls go to a worker that stays; none to the one leaving. */
    assert_true(stack_start_worker(&fx->s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 1, 10000), 0);
    ferry_client *other = ferry_client_new(fx->s.clients, (char[256]){0}, 256);
    assert_non_null(other);
    ferry_result r;
    const char *echo = "return ferry.call('echo', 'still served')";
    assert_int_equal(ferry_client_run(other, echo, strlen(echo), "echo.lua", NULL, 0, 10000, &r),
                     FERRY_OK);
    expect_ok(&r);
    ferry_result_fini(&r);
    ferry_client_destroy(&other);

    for (int i = 0; i < N; i++) {
        assert_int_equal(ferry_client_wait(fx->s.client, 20000, &r), FERRY_OK);
        expect_ok(&r);
        assert_true(r.result->values[0]->boolean);
        ferry_result_fini(&r);
    }
    int status = stack_wait_exit(&fx->s, leaving, 10000);
    int64_t took = ferry_now_ms() - t0;
    assert_true(status != -1);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("# SIGTERM worker holding %d sleeps of 1500 ms: all succeeded, exit 0 after %lld ms\n",
           N, (long long)took);
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    assert_int_equal(st->workers_lost, 0);
    ferry_envelope_free(env);
    stack_passed(&fx->s);
}

static int workers_at_most(const Ferry__Stats *st, uint64_t want)
{
    return st->workers <= want;
}

static void test_second_sigterm_stops_a_draining_worker(void **state)
{
    fixture *fx = *state;
    const char *wargs[] = {"--not-idempotent", "sleep", NULL};
    int worker = start_one_each(fx, NULL, wargs);

    enum { N = 5 };
    for (int i = 0; i < N; i++)
        submit(fx, "local ok, e = pcall(ferry.call, 'sleep', 20000) return e.code", 30000, NULL);
    wait_stats(fx, in_flight_at_least, N, 10000);
    stack_signal(&fx->s, worker, SIGTERM);
    /* Draining: it said Goodbye, so the broker counts it no more. */
    wait_stats(fx, workers_at_most, 0, 10000);
    int64_t t0 = ferry_now_ms();
    stack_signal(&fx->s, worker, SIGTERM);
    int status = stack_wait_exit(&fx->s, worker, 5000);
    assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* What it dropped ends as for a lost worker. */
    for (int i = 0; i < N; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
        expect_ok(&r);
        assert_memory_equal(r.result->values[0]->string.data, "worker_lost", 11);
        ferry_result_fini(&r);
    }
    printf("# second SIGTERM to a draining worker: exit 0, its %d calls worker_lost after "
           "%lld ms\n",
           N, (long long)(ferry_now_ms() - t0));
    stack_passed(&fx->s);
}

/* ---- engines ---- */

/*
 * A broker, two engines and a worker; n scripts running src, all blocked in
 * their call (round robin gives each engine half). Returns the first engine.
 */
static int two_engines_running(fixture *fx, int n, const char *src)
{
    start_broker(fx, NULL);
    const char *eargs[] = {"--slots", "100", NULL};
    int first = stack_start_engine(&fx->s, eargs);
    assert_true(first >= 0);
    assert_true(stack_start_engine(&fx->s, eargs) >= 0);
    assert_true(stack_start_worker(&fx->s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 2, 1, 10000), 0);
    for (int i = 0; i < n; i++)
        submit(fx, src, 20000, NULL);
    wait_stats(fx, in_flight_at_least, (uint64_t)n, 10000);
    return first;
}

static void test_kill9_engine_fails_its_scripts(void **state)
{
    fixture *fx = *state;
    enum { N = 20 };
    int victim = two_engines_running(fx, N, "return ferry.call('sleep', 4000)");
    int64_t t0 = ferry_now_ms();
    kill9(fx, victim);

    /* Round robin gave each engine half: those of the dead one end first. */
    int lost = 0, ok = 0;
    int64_t lost_ms = 0;
    while (lost < N / 2) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
        expect_code(&r, "engine_lost");
        lost++;
        lost_ms = ferry_now_ms() - t0;
        ferry_result_fini(&r);
    }
    printf("# kill -9 engine running %d scripts: all engine_lost after %lld ms\n", N / 2,
           (long long)lost_ms);
    assert_true(lost_ms < LIVENESS_MS + 1000);

    /* The other engine keeps serving, new scripts included. */
    ferry_client *other = ferry_client_new(fx->s.clients, (char[256]){0}, 256);
    assert_non_null(other);
    ferry_result r;
    const char *echo = "return ferry.call('echo', 'alive')";
    assert_int_equal(ferry_client_run(other, echo, strlen(echo), "echo.lua", NULL, 0, 10000, &r),
                     FERRY_OK);
    expect_ok(&r);
    ferry_result_fini(&r);
    ferry_client_destroy(&other);
    while (ok < N / 2) {
        assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
        expect_ok(&r);
        ok++;
        ferry_result_fini(&r);
    }
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    assert_int_equal(st->engines, 1);
    assert_int_equal(st->engines_lost, 1);
    assert_int_equal(st->scripts_running, 0);
    ferry_envelope_free(env);
    stack_passed(&fx->s);
}

static void test_sigterm_engine_drains_its_scripts(void **state)
{
    fixture *fx = *state;
    enum { N = 20 };
    int leaving = two_engines_running(fx, N, "return ferry.call('sleep', 1500)");
    int64_t t0 = ferry_now_ms();
    stack_signal(&fx->s, leaving, SIGTERM);

    /* Scripts submitted while it drains go to the other engine only. */
    ferry_client *other = ferry_client_new(fx->s.clients, (char[256]){0}, 256);
    assert_non_null(other);
    const char *echo = "return ferry.call('echo', 'elsewhere')";
    for (int i = 0; i < 10; i++) {
        ferry_result r;
        assert_int_equal(
            ferry_client_run(other, echo, strlen(echo), "echo.lua", NULL, 0, 10000, &r), FERRY_OK);
        expect_ok(&r);
        ferry_result_fini(&r);
    }
    ferry_client_destroy(&other);

    /* Every script it held finishes; then it exits 0. */
    for (int i = 0; i < N; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(fx->s.client, 10000, &r), FERRY_OK);
        expect_ok(&r);
        ferry_result_fini(&r);
    }
    int st = stack_wait_exit(&fx->s, leaving, 10000);
    int64_t took = ferry_now_ms() - t0;
    printf("# SIGTERM engine running %d of %d sleeps of 1500 ms: all succeeded, exit %d after "
           "%lld ms\n",
           N / 2, N, WIFEXITED(st) ? WEXITSTATUS(st) : -1, (long long)took);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    stack_passed(&fx->s);
}

/* ---- the broker ---- */

static int alive(fixture *fx, int idx)
{
    ferry_proc *p = &fx->s.procs[idx];
    if (p->pid == 0)
        return 0;
    return waitpid(p->pid, &p->status, WNOHANG) == 0;
}

static void test_kill9_broker_and_restart(void **state)
{
    fixture *fx = *state;
    start_broker(fx, NULL);
    const char *eargs[] = {"--slots", "1000", NULL};
    int peers[4];
    peers[0] = stack_start_engine(&fx->s, eargs);
    peers[1] = stack_start_engine(&fx->s, eargs);
    peers[2] = stack_start_worker(&fx->s, NULL);
    peers[3] = stack_start_worker(&fx->s, NULL);
    assert_int_equal(stack_wait_ready(&fx->s, 2, 2, 10000), 0);

    enum { N = 200, DEADLINE_MS = 4000 };
    const char *src = "for i = 1, 30 do ferry.call('sleep', 50) end return 'done'";
    int64_t submitted = ferry_now_ms();
    for (int i = 0; i < N; i++)
        submit(fx, src, DEADLINE_MS, NULL);
    wait_stats(fx, running_at_least, N / 2, 10000);
    kill9(fx, fx->broker);
    int64_t t0 = ferry_now_ms();
    start_broker(fx, NULL); /* same endpoints; the client reconnects by itself */

    /* New scripts succeed within a few seconds of the restart. */
    ferry_client *other = ferry_client_new(fx->s.clients, (char[256]){0}, 256);
    assert_non_null(other);
    const char *echo = "return ferry.call('echo', 'back')";
    int64_t back_ms = -1;
    for (int tries = 0; back_ms < 0 && ferry_now_ms() - t0 < 10000; tries++) {
        ferry_result r;
        if (ferry_client_run(other, echo, strlen(echo), "echo.lua", NULL, 0, 1000, &r) ==
            FERRY_OK) {
            if (r.result->ok)
                back_ms = ferry_now_ms() - t0;
            ferry_result_fini(&r);
        }
    }
    ferry_client_destroy(&other);
    printf("# kill -9 broker under %d scripts, restart: new scripts succeed after %lld ms\n", N,
           (long long)back_ms);
    assert_true(back_ms >= 0 && back_ms < 5000);

    /* Every script ends: the results that came before the kill, then the
     * client's wait reports the lost connection at once (the new broker
     * knows nothing of the old submissions), well before their deadline. */
    int results = 0, failed = 0;
    int64_t until = submitted + DEADLINE_MS + FERRY_CLIENT_GRACE_MS;
    ferry_err ended;
    for (;;) {
        int64_t left = until - ferry_now_ms();
        ferry_result r;
        ended = left > 0 ? ferry_client_wait(fx->s.client, (int)left, &r) : FERRY_ETIMEOUT;
        if (ended != FERRY_OK)
            break;
        results++;
        if (!r.result->ok)
            failed++;
        ferry_result_fini(&r);
    }
    printf("# old scripts: %d results (%d errors), the rest: %s after %lld ms\n", results, failed,
           ferry_err_code(ended), (long long)(ferry_now_ms() - t0));
    assert_int_equal(ended, FERRY_EBROKER_LOST);
    assert_true(ferry_now_ms() < submitted + DEADLINE_MS);

    /* Nobody hung or died; everyone registered again. */
    for (int i = 0; i < 4; i++)
        assert_true(alive(fx, peers[i]));
    assert_int_equal(stack_wait_ready(&fx->s, 2, 2, 10000), 0);
    ferry_result r;
    assert_int_equal(stack_run(&fx->s, "return ferry.call('sleep', 10)", NULL, 0, 5000, &r),
                     FERRY_OK);
    expect_ok(&r);
    ferry_result_fini(&r);
    stack_passed(&fx->s);
}

static void test_client_times_out_when_broker_vanishes(void **state)
{
    fixture *fx = *state;
    start_one_each(fx, NULL, NULL);

    /* Gone after the submission: the wait ends at the deadline plus the grace. */
    submit(fx, "return ferry.call('sleep', 10000)", 1000, NULL);
    wait_stats(fx, in_flight_at_least, 1, 10000);
    stack_signal(&fx->s, fx->broker, SIGSTOP);
    int64_t t0 = ferry_now_ms();
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 1000 + FERRY_CLIENT_GRACE_MS, &r),
                     FERRY_ETIMEOUT);
    assert_true(ferry_now_ms() - t0 < 1000 + FERRY_CLIENT_GRACE_MS + 1000);

    /* Gone before: the command-line client exits 3. */
    char *out, *err;
    const char *path = stack_write_file(&fx->s, "slow.lua", "return ferry.call('sleep', 100)");
    const char *argv[] = {"run", "--timeout", "1", path, NULL};
    t0 = ferry_now_ms();
    assert_int_equal(stack_cli(&fx->s, argv, &out, &err, 20000), 3);
    err[strcspn(err, "\n")] = '\0';
    printf("# ferry run against a stopped broker: exit 3 after %lld ms (%s)\n",
           (long long)(ferry_now_ms() - t0), err);
    free(out);
    free(err);
    stack_signal(&fx->s, fx->broker, SIGCONT);

    /* Stopped past liveness, the broker gives up its peers before it reads
     * anything, as they gave it up: the heartbeats they sent before do not
     * make their old identities look alive, and nothing is handed to them. */
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    printf("# broker back after SIGSTOP: engines=%u workers=%u engines_lost=%llu "
           "workers_lost=%llu\n",
           st->engines, st->workers, (unsigned long long)st->engines_lost,
           (unsigned long long)st->workers_lost);
    assert_true(st->engines_lost >= 1);
    assert_true(st->workers_lost >= 1);
    ferry_envelope_free(env);

    /* Back: everyone is served again, under their new identities. */
    assert_int_equal(stack_run(&fx->s, "return ferry.call('echo', 1)", NULL, 0, 10000, &r),
                     FERRY_OK);
    expect_ok(&r);
    ferry_result_fini(&r);
    stack_passed(&fx->s);
}

/*
 * A broker stopped past liveness gives up its peers before it reads anything:
 * a raw engine keeps sending heartbeats the whole time (a real one would have
 * given the broker up and come back under a new identity), so its traffic
 * waits in the broker's socket and would make it look alive. Nothing is
 * handed to it: the script waits for an engine that says Hello after the
 * stall, and ends no_engine, not engine_lost.
 */
static void test_stalled_broker_gives_up_its_peers(void **state)
{
    fixture *fx = *state;
    const char *bargs[] = {"--heartbeat-ms", "500", NULL};
    start_broker(fx, bargs);
    void *ctx = zmq_ctx_new();
    char why[256];
    ferry_socket_opts o = {.type = ZMQ_DEALER, .endpoint = fx->s.engines, .routing_id = "stale"};
    void *engine = ferry_socket_open(ctx, &o, why, sizeof why);
    assert_non_null(engine);
    Ferry__Hello hello = FERRY__HELLO__INIT;
    hello.slots = 1;
    Ferry__Envelope henv;
    ferry_envelope_init(&henv);
    henv.body_case = FERRY__ENVELOPE__BODY_HELLO;
    henv.hello = &hello;
    stack_raw_send(engine, &henv, 5000);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 0, 10000), 0);

    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope hbenv;
    ferry_envelope_init(&hbenv);
    hbenv.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    hbenv.heartbeat = &hb;
    /* Alive up to the stop (a loaded machine may take a while to get here). */
    stack_raw_send(engine, &hbenv, 5000);
    stack_signal(&fx->s, fx->broker, SIGSTOP);
    /* 30 heartbeats 100 ms apart: 3 s stopped, past 3 x 500 ms. */
    for (int i = 0; i < 30; i++) {
        stack_raw_send(engine, &hbenv, 5000);
        poll(NULL, 0, 100); /* the pace of the heartbeats, not a wait for an event */
    }
    stack_signal(&fx->s, fx->broker, SIGCONT);
    ferry_result r;
    assert_int_equal(stack_run(&fx->s, "return 1", NULL, 0, 1000, &r), FERRY_OK);
    expect_code(&r, "no_engine");
    ferry_result_fini(&r);
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    printf("# broker stopped 3 s: engines=%u engines_lost=%llu\n", st->engines,
           (unsigned long long)st->engines_lost);
    assert_true(st->engines_lost >= 1);
    ferry_envelope_free(env);
    /* Lost for the stall, not by a sweep that happened to run first. */
    FILE *log = fopen(fx->s.procs[fx->broker].log, "r");
    assert_non_null(log);
    char line[512];
    int stalled = 0;
    while (!stalled && fgets(line, sizeof line, log))
        stalled = strstr(line, "engine_lost engine=stale reason=broker_stalled") != NULL;
    fclose(log);
    assert_true(stalled);
    ferry_socket_close(&engine);
    zmq_ctx_term(ctx);
    stack_passed(&fx->s);
}

/* ---- deadlines ---- */

static void test_unserved_function_ends_by_its_deadline(void **state)
{
    fixture *fx = *state;
    start_one_each(fx, NULL, NULL);

    ferry_result r;
    int64_t t0 = ferry_now_ms();
    assert_int_equal(
        stack_run(&fx->s, "return ferry.call('nobody_serves_this', 1)", NULL, 0, 5000, &r),
        FERRY_OK);
    int64_t took = ferry_now_ms() - t0;
    expect_code(&r, "no_worker");
    assert_non_null(strstr(r.result->error->message, "nobody_serves_this"));
    printf("# call to a function nobody serves: no_worker after %lld ms\n", (long long)took);
    assert_true(took < 5000);
    ferry_result_fini(&r);

    /* A deadline shorter than the broker's wait for a worker: it ends on time,
     * `timeout` from the engine or `no_worker` from the broker, whichever is first. */
    t0 = ferry_now_ms();
    assert_int_equal(
        stack_run(&fx->s, "return ferry.call('nobody_serves_this', 1)", NULL, 0, 300, &r),
        FERRY_OK);
    took = ferry_now_ms() - t0;
    assert_false(r.result->ok);
    if (strcmp(r.result->error->code, "timeout") != 0)
        expect_code(&r, "no_worker");
    assert_true(took < 300 + 1000);
    ferry_result_fini(&r);

    /* SIGINT ends a process as cleanly as SIGTERM. */
    stack_signal(&fx->s, 1, SIGINT);
    int status = stack_wait_exit(&fx->s, 1, 10000);
    assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    stack_passed(&fx->s);
}

/* ---- bad input ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    /* xorshift64*: fixed seed, so that a failure can be replayed. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

/* One valid envelope of some kind (packed into buf); what a bad frame starts from. */
static size_t valid_envelope(uint8_t *buf, size_t cap)
{
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    Ferry__Command cmd = FERRY__COMMAND__INIT;
    Ferry__Reply reply = FERRY__REPLY__INIT;
    Ferry__Result result = FERRY__RESULT__INIT;
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__StatsRequest sr = FERRY__STATS_REQUEST__INIT;
    Ferry__Goodbye bye = FERRY__GOODBYE__INIT;
    Ferry__Value v = FERRY__VALUE__INIT;
    Ferry__Value *vs[1] = {&v};
    v.kind_case = FERRY__VALUE__KIND_STRING;
    v.string.data = (uint8_t *)"payload";
    v.string.len = 7;
    char eid[32];
    snprintf(eid, sizeof eid, "fuzz-engine-%u", (unsigned)(rnd() % 4));
    switch (rnd() % 7) {
    case 0:
        cmd.engine_id.data = (uint8_t *)eid;
        cmd.engine_id.len = strlen(eid);
        cmd.call_id = rnd();
        cmd.function = "echo";
        cmd.args = vs;
        cmd.n_args = 1;
        cmd.timeout_ms = 500;
        env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
        env.command = &cmd;
        break;
    case 1:
        reply.engine_id.data = (uint8_t *)eid;
        reply.engine_id.len = strlen(eid);
        reply.call_id = rnd() % 1000;
        reply.values = vs;
        reply.n_values = 1;
        env.body_case = FERRY__ENVELOPE__BODY_REPLY;
        env.reply = &reply;
        break;
    case 2:
        result.script_id = rnd() % 1000;
        result.ok = 1;
        result.values = vs;
        result.n_values = 1;
        env.body_case = FERRY__ENVELOPE__BODY_RESULT;
        env.result = &result;
        break;
    case 3:
        env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        break;
    case 4:
        env.body_case = FERRY__ENVELOPE__BODY_STATS_REQUEST;
        env.stats_request = &sr;
        break;
    case 5:
        env.body_case = FERRY__ENVELOPE__BODY_GOODBYE;
        env.goodbye = &bye;
        break;
    default:
        env.version = 2; /* a version nobody speaks */
        env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        break;
    }
    size_t n = ferry__envelope__get_packed_size(&env);
    assert_true(n <= cap);
    return ferry__envelope__pack(&env, buf);
}

/* A frame that is no valid registration: random bytes, or a valid envelope
 * truncated or with a byte changed. A Hello or Ready that happens to decode
 * would register a peer that never answers: that is not bad input, so it is
 * made again. */
static size_t bad_frame(uint8_t *buf, size_t cap)
{
    for (;;) {
        size_t n;
        if (rnd() % 2) {
            n = (size_t)(rnd() % 200);
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)rnd();
        } else {
            n = valid_envelope(buf, cap);
            if (rnd() % 2 && n > 0)
                n = (size_t)(rnd() % n); /* truncated */
            else if (n > 0)
                buf[rnd() % n] ^= (uint8_t)(1 + rnd() % 255);
        }
        Ferry__Envelope *env = NULL;
        if (ferry_envelope_decode(buf, n, &env) == FERRY_OK) {
            int registers = env->body_case == FERRY__ENVELOPE__BODY_HELLO ||
                            env->body_case == FERRY__ENVELOPE__BODY_READY ||
                            env->body_case == FERRY__ENVELOPE__BODY_SUBMIT;
            ferry_envelope_free(env);
            if (registers)
                continue;
        }
        return n;
    }
}

/* Sends one message of 1 to 4 frames without blocking for long. */
static void send_frames(void *sock, int nframes, size_t max_len)
{
    for (int i = 0; i < nframes; i++) {
        uint8_t buf[1024];
        size_t n = bad_frame(buf, sizeof buf);
        if (n > max_len)
            n = max_len;
        int flags = ZMQ_DONTWAIT | (i + 1 < nframes ? ZMQ_SNDMORE : 0);
        while (zmq_send(sock, buf, n, flags) < 0) {
            assert_int_equal(zmq_errno(), EAGAIN);
            zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLOUT};
            assert_int_equal(zmq_poll(&it, 1, 5000), 1);
        }
    }
}

static void test_bad_frames_on_every_socket(void **state)
{
    fixture *fx = *state;
    const char *bargs[] = {"--max-msg", "65536", NULL};
    start_broker(fx, bargs);
    const char *eargs[] = {"--slots", "1000", NULL};
    assert_true(stack_start_engine(&fx->s, eargs) >= 0);
    assert_true(stack_start_worker(&fx->s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 1, 10000), 0);
    Ferry__Envelope *env;
    uint64_t dropped0 = stats(fx, &env)->dropped;
    ferry_envelope_free(env);

    void *zctx = zmq_ctx_new();
    struct {
        int type;
        const char *endpoint;
        void *sock;
    } raw[] = {
        {ZMQ_DEALER, fx->s.clients, NULL},
        {ZMQ_PUSH, fx->s.commands, NULL},
        {ZMQ_DEALER, fx->s.engines, NULL},
        {ZMQ_DEALER, fx->s.workers, NULL},
    };
    enum { NRAW = 4, FRAMES = 10000, SCRIPTS = 50 };
    for (int i = 0; i < NRAW; i++) {
        char err[256];
        ferry_socket_opts o = {.type = raw[i].type, .endpoint = raw[i].endpoint};
        raw[i].sock = ferry_socket_open(zctx, &o, err, sizeof err);
        assert_non_null(raw[i].sock);
    }

    const char *src = "local t = 0\n"
                      "for i = 1, 20 do t = t + ferry.call('echo', i) end\n"
                      "return t";
    for (int i = 0; i < SCRIPTS; i++)
        submit(fx, src, 30000, NULL);
    int sent = 0;
    for (int i = 0; i < FRAMES; i++) {
        int nframes = rnd() % 4 == 0 ? 1 + (int)(rnd() % 4) : 1;
        send_frames(raw[i % NRAW].sock, nframes, 1024);
        sent++;
    }
    /* One message over --max-msg on each socket: the broker drops that connection. */
    static uint8_t big[100000];
    for (int i = 0; i < NRAW; i++)
        assert_true(zmq_send(raw[i].sock, big, sizeof big, ZMQ_DONTWAIT) >= 0 ||
                    zmq_errno() == EAGAIN);

    for (int i = 0; i < SCRIPTS; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(fx->s.client, 30000, &r), FERRY_OK);
        expect_ok(&r);
        assert_int_equal(r.result->values[0]->integer, 210);
        ferry_result_fini(&r);
    }
    for (int i = 0; i < NRAW; i++)
        ferry_socket_close(&raw[i].sock);
    zmq_ctx_term(zctx);

    Ferry__Stats *st = stats(fx, &env);
    uint64_t dropped = st->dropped - dropped0;
    printf("# %d bad messages on the four broker sockets during %d scripts: all succeeded, "
           "%llu dropped and counted\n",
           sent, SCRIPTS, (unsigned long long)dropped);
    /* Most are dropped at once; the rest (heartbeats, stats requests, commands that
     * decode) are answered or dropped later, all without disturbing the scripts. */
    assert_true(dropped >= (uint64_t)sent / 2);
    assert_int_equal(st->engines, 1);
    assert_int_equal(st->workers, 1);
    ferry_envelope_free(env);
    stack_passed(&fx->s);
}

/* Waits up to timeout_ms for a message on sock; FERRY_OK with f filled. */
static ferry_err recv_within(void *sock, int timeout_ms, ferry_frames *f)
{
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) != 1)
        return FERRY_ETIMEOUT;
    return ferry_frames_recv(sock, f);
}

/*
 * The broker routes a Reply on its top level only (engine_id, call_id), so
 * a worker's Reply whose values do not decode reaches the engine: the engine
 * answers that call `bad_message` at once instead of letting it wait for its
 * deadline. The worker here is the test itself on a raw DEALER.
 */
static void test_undecodable_reply_fails_its_call(void **state)
{
    fixture *fx = *state;
    start_broker(fx, NULL);
    assert_true(stack_start_engine(&fx->s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 0, 10000), 0);

    void *zctx = zmq_ctx_new();
    char err[256];
    ferry_socket_opts o = {.type = ZMQ_DEALER, .endpoint = fx->s.workers};
    void *dealer = ferry_socket_open(zctx, &o, err, sizeof err);
    assert_non_null(dealer);
    Ferry__FunctionSpec spec = FERRY__FUNCTION_SPEC__INIT;
    spec.name = "garbled";
    Ferry__FunctionSpec *specs[] = {&spec};
    Ferry__Ready ready = FERRY__READY__INIT;
    ready.functions = specs;
    ready.n_functions = 1;
    ready.credit = 10;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    zmq_pollitem_t out = {.socket = dealer, .events = ZMQ_POLLOUT}; /* connected */
    assert_int_equal(zmq_poll(&out, 1, 10000), 1);
    assert_int_equal(ferry_wire_send(dealer, NULL, 0, &env), FERRY_OK);

    /* Ready may reach the broker after the call: the broker queues it meanwhile. */
    uint64_t id;
    submit(fx, "return ferry.call('garbled', 1)", 60000, &id);
    ferry_frames f;
    Ferry__Envelope *cmd = NULL;
    int64_t until = ferry_now_ms() + 10000;
    while (!cmd && ferry_now_ms() < until) {
        assert_int_equal(recv_within(dealer, 10000, &f), FERRY_OK);
        Ferry__Envelope *got = NULL;
        if (ferry_envelope_decode(ferry_frame_data(&f, 0), ferry_frame_size(&f, 0), &got) ==
                FERRY_OK &&
            got->body_case == FERRY__ENVELOPE__BODY_COMMAND)
            cmd = got;
        else
            ferry_envelope_free(got); /* a heartbeat */
        ferry_frames_close(&f);
    }
    assert_non_null(cmd);
    const Ferry__Command *c = cmd->command;
    assert_true(c->engine_id.len > 0 && c->engine_id.len < 100);

    /* The Reply the worker owes, Reply{engine_id, call_id, values: [1]}, packed
     * as usual, then its Value spoiled: the integer's key (field 3, varint:
     * 0x18), the last field of the last value, becomes length-delimited (0x1a),
     * a length running past the Value. The Reply's own framing stays good. */
    Ferry__Value *one = ferry_value_int(1);
    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.engine_id = c->engine_id;
    reply.call_id = c->call_id;
    reply.values = &one;
    reply.n_values = 1;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    uint8_t msg[256];
    size_t len = ferry_envelope_packed_size(&env);
    assert_true(len <= sizeof msg);
    assert_int_equal(ferry_envelope_pack(&env, msg), len);
    ferry_value_free(one);
    assert_int_equal(msg[len - 2], 0x18); /* Value{integer: 1} is 0x18 0x02 */
    msg[len - 2] = 0x1a;
    Ferry__Envelope *check = NULL;
    assert_int_equal(ferry_envelope_decode(msg, len, &check), FERRY_EPROTO);
    assert_true(zmq_send(dealer, msg, len, ZMQ_DONTWAIT) >= 0);
    ferry_envelope_free(cmd);

    int64_t t0 = ferry_now_ms();
    ferry_result r;
    assert_int_equal(ferry_client_wait(fx->s.client, 30000, &r), FERRY_OK);
    printf("# a reply that does not decode: bad_message after %lld ms (deadline 60 s)\n",
           (long long)(ferry_now_ms() - t0));
    expect_code(&r, "bad_message");
    assert_non_null(strstr(r.result->error->message, "does not decode"));
    ferry_result_fini(&r);
    ferry_socket_close(&dealer);
    zmq_ctx_term(zctx);
    stack_passed(&fx->s);
}

int main(int argc, char **argv)
{
    if (argc > 1) /* failure_test 'test_kill9_*': the tests matching a pattern */
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_worker_mid_call_not_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_worker_is_lost_past_liveness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_worker_echo_calls_all_succeed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_worker_drains_100_sleeps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_sigterm_stops_a_draining_worker, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kill9_engine_fails_its_scripts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_engine_drains_its_scripts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_broker_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_times_out_when_broker_vanishes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stalled_broker_gives_up_its_peers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unserved_function_ends_by_its_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames_on_every_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable_reply_fails_its_call, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

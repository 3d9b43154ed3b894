/*
 * trust_test: CURVE keys and allow-lists (issue 12), with real processes
 * over tcp on loopback. Only listed keys get in, each on the sockets of its
 * own role; a refused client hears so at once; SIGHUP revokes a key.
 *
 * A role is checked at the handshake: a raw libzmq socket with a key tries
 * each broker socket, and its monitor tells whether the broker's ZAP
 * handler admitted it. Every wait is for an event with a bound.
 */
#include "harness.h"

#include "ferry_cert.h"
#include "ferry_clock.h"
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
#include <unistd.h>

#include <cmocka.h>

/* A refusal must come well before the client's 3 s connect timeout. */
/* "Fast" means long before the script's deadline (SUBMIT_TIMEOUT_MS): a
 * refusal takes milliseconds, seconds under the sanitizers on a busy machine. */
#define REFUSED_WITHIN_MS 10000
#define SUBMIT_TIMEOUT_MS 60000

static const char echo_src[] = "return ferry.call('echo', 'through')";

typedef struct {
    ferry_stack s;
    int broker;
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(stack_init_tcp(&fx->s), 0);
    assert_int_equal(stack_use_keys(&fx->s), 0);
    assert_int_equal(stack_make_key(&fx->s, "stranger"), 0);
    *state = fx;
    return 0;
}

/* A stack over tcp on loopback without keys. */
static int setup_plain(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(stack_init_tcp(&fx->s), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    int rc = stack_stop(&fx->s);
    free(fx);
    return rc;
}

/* A keyed broker, one engine and one worker, registered. */
static void start_stack(fixture *fx)
{
    fx->broker = stack_start_broker(&fx->s, NULL);
    assert_true(fx->broker >= 0);
    assert_non_null(fx->s.client);
    assert_true(stack_start_engine(&fx->s, NULL) >= 0);
    assert_true(stack_start_worker(&fx->s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(&fx->s, 1, 1, 10000), 0);
}

static void expect_echo(ferry_client *c)
{
    ferry_result r;
    assert_int_equal(ferry_client_run(c, echo_src, strlen(echo_src), "t.lua", NULL, 0, 10000, &r),
                     FERRY_OK);
    assert_true(r.result->ok);
    assert_int_equal(r.result->n_values, 1);
    assert_memory_equal(r.result->values[0]->string.data, "through", 7);
    ferry_result_fini(&r);
}

static Ferry__Stats *stats(fixture *fx, Ferry__Envelope **env)
{
    assert_int_equal(ferry_client_stats(fx->s.client, 5000, env), FERRY_OK);
    return (*env)->stats;
}

/* Submits with c and expects FERRY_EAUTH within REFUSED_WITHIN_MS. */
static void expect_refused(ferry_client *c, const char *who)
{
    int64_t t0 = ferry_now_ms();
    uint64_t id;
    ferry_err err = ferry_client_submit(c, echo_src, strlen(echo_src), "t.lua", NULL, 0,
                                        SUBMIT_TIMEOUT_MS, &id);
    if (err == FERRY_OK) { /* queued before the refusal was seen: the wait hears of it */
        ferry_result r;
        err = ferry_client_wait(c, SUBMIT_TIMEOUT_MS, &r);
        if (err == FERRY_OK)
            ferry_result_fini(&r);
    }
    int64_t took = ferry_now_ms() - t0;
    printf("# %-40s -> %s after %lld ms\n", who, ferry_err_code(err), (long long)took);
    assert_int_equal(err, FERRY_EAUTH);
    assert_true(took < REFUSED_WITHIN_MS);
}

static void test_listed_client_runs_scripts(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    for (int i = 0; i < 3; i++)
        expect_echo(fx->s.client);
    stack_passed(&fx->s);
}

static void test_refused_clients_fail_fast_and_run_nothing(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    ferry_stack *s = &fx->s;
    const struct {
        const char *who, *key, *broker;
    } cases[] = {
        {"no key", NULL, NULL},
        {"a key on no allow-list", "stranger_secret", "broker"},
        {"the wrong broker key", "client_secret", "stranger"},
        {"a worker's key", "worker_secret", "broker"},
        {"an engine's key", "engine_secret", "broker"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char key[300] = "", broker[300] = "";
        if (cases[i].key) {
            snprintf(key, sizeof key, "%s", stack_key(s, cases[i].key));
            snprintf(broker, sizeof broker, "%s", stack_key(s, cases[i].broker));
        }
        ferry_client *c = stack_client(s, cases[i].key ? key : NULL, cases[i].key ? broker : NULL);
        assert_non_null(c);
        expect_refused(c, cases[i].who);
        ferry_client_destroy(&c);
    }
    /* Nothing of theirs ran: no script, no call. */
    Ferry__Envelope *env;
    Ferry__Stats *st = stats(fx, &env);
    assert_int_equal(st->scripts_completed + st->scripts_running + st->scripts_queued, 0);
    assert_int_equal(st->completed, 0);
    ferry_envelope_free(env);

    /* ferry run says so and exits 3, at once. */
    const char *path = stack_write_file(s, "t.lua", echo_src);
    char *out = NULL, *err = NULL;
    int64_t t0 = ferry_now_ms();
    const char *argv[] = {"run",
                          "--curve-key",
                          stack_key(s, "stranger_secret"),
                          "--broker-key",
                          stack_key(s, "broker"),
                          path,
                          NULL};
    int rc = stack_cli(s, argv, &out, &err, 30000);
    int64_t took = ferry_now_ms() - t0;
    printf("# ferry run with a stranger's key: exit %d after %lld ms: %s", rc, (long long)took,
           err);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(err, "not authorized by the broker at tcp://127.0.0.1:"));
    assert_true(took < REFUSED_WITHIN_MS + 1000);
    free(out);
    free(err);
    expect_echo(s->client);
    stack_passed(s);
}

/*
 * Connects a raw socket of type to endpoint with the key pair <name> and
 * the broker's public key, and waits for the end of its first handshake:
 * 1 admitted, 0 refused.
 */
static int handshake(ferry_stack *s, int type, const char *endpoint, const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s_secret", stack_key(s, name));
    ferry_curve curve;
    char err[512];
    assert_int_equal(ferry_curve_client(&curve, path, stack_key(s, "broker"), err, sizeof err),
                     FERRY_OK);
    void *ctx = zmq_ctx_new();
    ferry_socket_opts o = {.type = type, .endpoint = endpoint, .curve = &curve};
    void *sock = ferry_socket_open(ctx, &o, err, sizeof err);
    assert_non_null(sock);
    void *mon = ferry_monitor_open(ctx, sock,
                                   ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH,
                                   err, sizeof err);
    assert_non_null(mon);
    int admitted = -1;
    int64_t until = ferry_now_ms() + 5000;
    while (admitted < 0 && ferry_now_ms() < until) {
        zmq_pollitem_t item = {.socket = mon, .events = ZMQ_POLLIN};
        zmq_poll(&item, 1, 100);
        uint16_t event;
        while (ferry_monitor_recv(mon, &event) == FERRY_OK)
            admitted = event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    }
    ferry_monitor_close(sock, &mon);
    ferry_socket_close(&sock);
    zmq_ctx_term(ctx);
    assert_true(admitted >= 0);
    return admitted;
}

/* Each key is admitted exactly on the sockets of its role. */
static void test_each_key_only_in_its_role(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    fx->broker = stack_start_broker(s, NULL);
    assert_true(fx->broker >= 0);
    const struct {
        const char *socket;
        const char *endpoint;
        int type;
        const char *admits;
    } sockets[] = {
        {"clients", s->clients, ZMQ_DEALER, "client"},
        {"engines", s->engines, ZMQ_DEALER, "engine"},
        {"commands", s->commands, ZMQ_PUSH, "engine"},
        {"workers", s->workers, ZMQ_DEALER, "worker"},
    };
    const char *keys[] = {"client", "engine", "worker", "stranger"};
    for (size_t i = 0; i < sizeof sockets / sizeof sockets[0]; i++) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            int want = strcmp(keys[k], sockets[i].admits) == 0;
            int got = handshake(s, sockets[i].type, sockets[i].endpoint, keys[k]);
            printf("# %-8s key on %-8s -> %s\n", keys[k], sockets[i].socket,
                   got ? "admitted" : "refused");
            assert_int_equal(got, want);
        }
    }
    stack_passed(s);
}

/* A worker or an engine started with another role's key never registers. */
static void test_wrong_role_processes_do_not_register(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    start_stack(fx);
    char client_key[300], broker_key[300];
    snprintf(client_key, sizeof client_key, "--curve-key=%s", stack_key(s, "client_secret"));
    snprintf(broker_key, sizeof broker_key, "--broker-key=%s", stack_key(s, "broker"));
    const char *client_keys[] = {client_key, broker_key, NULL};
    const char *no_keys[] = {"--curve-key", "", "--broker-key", "", NULL};
    assert_true(stack_start_worker(s, client_keys) >= 0);
    assert_true(stack_start_engine(s, client_keys) >= 0);
    assert_true(stack_start_worker(s, no_keys) >= 0);
    assert_true(stack_start_engine(s, no_keys) >= 0);
    /* They retry their handshakes all along: give them a few of them. */
    assert_int_not_equal(stack_wait_ready(s, 2, 1, 1500), 0);
    assert_int_not_equal(stack_wait_ready(s, 1, 2, 500), 0);
    expect_echo(s->client);
    stack_passed(s);
}

/* Waits until a new client with the client key is refused (want_refused) or admitted. */
static void wait_client_key(ferry_stack *s, int want_refused)
{
    int64_t until = ferry_now_ms() + 5000;
    for (;;) {
        ferry_client *c = stack_client(s, stack_key(s, "client_secret"), stack_key(s, "broker"));
        assert_non_null(c);
        ferry_client_set_connect_timeout(c, 1000);
        ferry_result r;
        ferry_err err = ferry_client_run(c, echo_src, strlen(echo_src), "t.lua", NULL, 0, 5000, &r);
        if (err == FERRY_OK)
            ferry_result_fini(&r);
        ferry_client_destroy(&c);
        if ((err == FERRY_EAUTH) == want_refused && (want_refused || err == FERRY_OK))
            return;
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 20); /* SIGHUP is handled in another process: look again */
    }
}

static void test_sighup_revokes_and_readmits_a_key(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    start_stack(fx);
    expect_echo(s->client);
    char listed[300];
    snprintf(listed, sizeof listed, "%s/allow-clients/client", s->dir);
    assert_int_equal(unlink(listed), 0);
    stack_signal(s, fx->broker, SIGHUP);
    wait_client_key(s, 1);
    /* The client connected before: its next script is refused too, with an answer. */
    ferry_result r;
    assert_int_equal(
        ferry_client_run(s->client, echo_src, strlen(echo_src), "t.lua", NULL, 0, 5000, &r),
        FERRY_OK);
    assert_false(r.result->ok);
    assert_string_equal(r.result->error->code, "not_authorized");
    ferry_result_fini(&r);
    /* Listed again, let in again. */
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", stack_key(s, "client"), listed);
    assert_int_equal(system(cmd), 0);
    stack_signal(s, fx->broker, SIGHUP);
    wait_client_key(s, 0);
    expect_echo(s->client);
    stack_passed(s);
}

/* A worker of its own built on the C API (examples/custom-worker) takes the keys too. */
static void test_custom_c_worker_with_keys(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    start_stack(fx);
    assert_true(stack_spawn(s, "ferry-example-worker", NULL) >= 0);
    assert_int_equal(stack_wait_ready(s, 1, 2, 10000), 0);
    const char *src = "ferry.call('kv.set', 'k', 'keyed') return ferry.call('kv.get', 'k')";
    ferry_result r;
    assert_int_equal(stack_run(s, src, NULL, 0, 10000, &r), FERRY_OK);
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_memory_equal(r.result->values[0]->string.data, "keyed", 5);
    ferry_result_fini(&r);
    stack_passed(s);
}

/* The Python examples take the same two settings (here through FERRY_CURVE_KEY and
 * FERRY_BROKER_KEY), and the ferry package reads the certificates ferry keygen writes. */
static void test_python_worker_and_client_with_keys(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    const char *const modules[] = {"zmq", "zmq.auth", "google.protobuf", NULL};
    const char *python = stack_python(modules);
    if (!python) {
        printf("# skipped: no python3 with zmq and google.protobuf\n");
        stack_passed(s);
        return;
    }
    start_stack(fx);
    char pbdir[300], ckey[300], bkey[300], wkey[300], script[600];
    snprintf(pbdir, sizeof pbdir, "FERRY_PB_DIR=%s", s->dir);
    snprintf(wkey, sizeof wkey, "FERRY_CURVE_KEY=%s", stack_key(s, "worker_secret"));
    snprintf(ckey, sizeof ckey, "FERRY_CURVE_KEY=%s", stack_key(s, "client_secret"));
    snprintf(bkey, sizeof bkey, "FERRY_BROKER_KEY=%s", stack_key(s, "broker"));
    snprintf(script, sizeof script, "%s/examples/python/ferry_worker.py", stack_source_dir());
    const char *wargv[] = {python, script, NULL};
    const char *wenv[] = {pbdir, wkey, bkey, "PYTHONDONTWRITEBYTECODE=1", NULL};
    assert_true(stack_spawn_cmd(s, "py-worker", wargv, wenv) >= 0);
    assert_int_equal(stack_wait_ready(s, 1, 2, 30000), 0);

    snprintf(script, sizeof script, "%s/examples/python/ferry_client.py", stack_source_dir());
    const char *lua = stack_write_file(s, "up.lua", "return ferry.call('py.upper', 'keyed')");
    char lua_copy[300];
    snprintf(lua_copy, sizeof lua_copy, "%s", lua);
    const char *cargv[] = {python, script, lua_copy, NULL};
    const char *cenv[] = {pbdir, ckey, bkey, "PYTHONDONTWRITEBYTECODE=1", NULL};
    char *out = NULL, *err = NULL;
    int rc = stack_exec(s, cargv, cenv, &out, &err, 30000);
    if (rc != 0 || !out || strcmp(out, "KEYED\n") != 0)
        fail_msg("rc=%d out=[%s] err=[%s]", rc, out ? out : "", err ? err : "");
    free(out);
    free(err);
    stack_passed(s);
}

/* The port of a tcp:// endpoint. */
static const char *port_of(const char *endpoint)
{
    return strrchr(endpoint, ':') + 1;
}

/* Protected mode: without keys, only loopback and ipc:// are bound. */
static void test_keyless_broker_binds_only_loopback(void **state)
{
    fixture *fx = *state;
    ferry_stack *s = &fx->s;
    char path[300];
    snprintf(path, sizeof path, "%s/ferry-broker", FERRY_BIN_DIR);
    const char *port = port_of(s->clients);
    const char *refused[] = {"tcp://*:%s", "tcp://0.0.0.0:%s", "tcp://127.0.0.1.nip.io:%s",
                             "tcp://lo0:%s", "ws://127.0.0.1:%s"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char ep[128];
        snprintf(ep, sizeof ep, refused[i], port);
        const char *argv[] = {path, "--clients", ep, NULL};
        char *out = NULL, *err = NULL;
        int64_t t0 = ferry_now_ms();
        int rc = stack_exec(s, argv, NULL, &out, &err, 10000);
        printf("# no keys, --clients %-28s -> exit %d after %lld ms\n", ep, rc,
               (long long)(ferry_now_ms() - t0));
        assert_int_equal(rc, 1);
        assert_non_null(strstr(err, "refusing to bind"));
        assert_non_null(strstr(err, "ferry keygen"));
        assert_non_null(strstr(err, "--insecure"));
        free(out);
        free(err);
    }
    /* With --insecure it starts, and answers on loopback. */
    char any[128];
    snprintf(any, sizeof any, "tcp://*:%s", port);
    const char *insecure[] = {"--clients", any, "--insecure", NULL};
    fx->broker = stack_start_broker(s, insecure);
    assert_true(fx->broker >= 0);
    Ferry__Envelope *env;
    assert_int_equal(ferry_client_stats(s->client, 5000, &env), FERRY_OK);
    ferry_envelope_free(env);
    stack_passed(s);
}

/* Loopback binds need no keys: a whole stack runs. */
static void test_keyless_stack_runs_on_loopback(void **state)
{
    fixture *fx = *state;
    start_stack(fx);
    expect_echo(fx->s.client);
    stack_passed(&fx->s);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_listed_client_runs_scripts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_clients_fail_fast_and_run_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_each_key_only_in_its_role, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_role_processes_do_not_register, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sighup_revokes_and_readmits_a_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_c_worker_with_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_worker_and_client_with_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyless_broker_binds_only_loopback, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_keyless_stack_runs_on_loopback, setup_plain, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

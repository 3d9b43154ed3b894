/*
 * discover_test: --discover NAME follows every address a name resolves to.
 *
 * Two real brokers on two loopback addresses (127.0.0.1 and 127.0.0.2, the
 * same ports); an engine, a worker and a client that know only the name.
 * The resolver's test double (FERRY_DISCOVER_HOSTS, lib/ferry_discover.h)
 * makes the name resolve to both, then to one, then to both again, and the
 * brokers' stats show the engine and the worker registered with every
 * broker the name stands for, and only those.
 */
#include "harness.h"

#include "ferry_clock.h"
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

#define NAME "brokers.ferry.test"
#define DISCOVER_MS "100"

typedef struct {
    ferry_stack s;
    char hosts[300];    /* the test double's file */
    char ports[4][16];  /* clients, commands, engines, workers */
    char eps[2][4][64]; /* broker i's endpoints */
} fixture;

static void write_hosts(fixture *fx, int both)
{
    char text[200];
    snprintf(text, sizeof text, "# the test double of DNS\n" NAME " 127.0.0.1\n%s",
             both ? NAME " 127.0.0.2\n" : "");
    char tmp[320];
    snprintf(tmp, sizeof tmp, "%s.new", fx->hosts);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, fx->hosts), 0); /* readers see the old file or the new */
}

/* Broker i's counts of engines and workers; -1 when it does not answer. */
static int counts(fixture *fx, int i, unsigned *engines, unsigned *workers)
{
    char err[256];
    ferry_client *c = ferry_client_new(fx->eps[i][0], err, sizeof err);
    assert_non_null(c);
    ferry_client_set_connect_timeout(c, 500);
    Ferry__Envelope *env = NULL;
    int rc = -1;
    if (ferry_client_stats(c, 500, &env) == FERRY_OK) {
        *engines = env->stats->engines;
        *workers = env->stats->workers;
        rc = 0;
    }
    ferry_envelope_free(env);
    ferry_client_destroy(&c);
    return rc;
}

/* Waits until broker i counts exactly engines and workers; the time it took, or -1. */
static int64_t wait_counts(fixture *fx, int i, unsigned engines, unsigned workers, int timeout_ms)
{
    int64_t t0 = ferry_now_ms();
    while (ferry_now_ms() - t0 < timeout_ms) {
        unsigned e, w;
        if (counts(fx, i, &e, &w) == 0 && e == engines && w == workers)
            return ferry_now_ms() - t0;
        poll(NULL, 0, 20); /* registration happens in other processes */
    }
    return -1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    assert_int_equal(stack_init_tcp(&fx->s), 0);
    const char *eps[4] = {fx->s.clients, fx->s.commands, fx->s.engines, fx->s.workers};
    for (int k = 0; k < 4; k++) {
        snprintf(fx->ports[k], sizeof fx->ports[k], "%s", strrchr(eps[k], ':') + 1);
        for (int i = 0; i < 2; i++)
            snprintf(fx->eps[i][k], sizeof fx->eps[i][k], "tcp://127.0.0.%d:%s", i + 1,
                     fx->ports[k]);
    }
    snprintf(fx->hosts, sizeof fx->hosts, "%s/hosts", fx->s.dir);
    write_hosts(fx, 1);
    setenv("FERRY_DISCOVER_HOSTS", fx->hosts, 1);
    setenv("FERRY_DISCOVER_MS", DISCOVER_MS, 1);
    char env_hosts[340];
    snprintf(env_hosts, sizeof env_hosts, "FERRY_DISCOVER_HOSTS=%s", fx->hosts);
    const char *env[] = {env_hosts, "FERRY_DISCOVER_MS=" DISCOVER_MS, NULL};
    char bin[3][300];
    snprintf(bin[0], sizeof bin[0], "%s/ferry-broker", FERRY_BIN_DIR);
    snprintf(bin[1], sizeof bin[1], "%s/ferry-engine", FERRY_BIN_DIR);
    snprintf(bin[2], sizeof bin[2], "%s/ferry-worker", FERRY_BIN_DIR);
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {bin[0],         "--clients", fx->eps[i][0], "--commands",
                              fx->eps[i][1],  "--engines", fx->eps[i][2], "--workers",
                              fx->eps[i][3],  NULL};
        assert_true(stack_spawn_cmd(&fx->s, i ? "ferry-broker-b" : "ferry-broker-a", argv,
                                    env) >= 0);
    }
    char commands[64], engines[64], workers[64];
    snprintf(commands, sizeof commands, "tcp://unused:%s", fx->ports[1]);
    snprintf(engines, sizeof engines, "tcp://unused:%s", fx->ports[2]);
    snprintf(workers, sizeof workers, "tcp://unused:%s", fx->ports[3]);
    const char *eargv[] = {bin[1], "--discover", NAME, "--commands", commands, "--engines",
                           engines, NULL};
    const char *wargv[] = {bin[2], "--discover", NAME, "--workers", workers, NULL};
    assert_true(stack_spawn_cmd(&fx->s, "engine", eargv, env) >= 0);
    assert_true(stack_spawn_cmd(&fx->s, "worker", wargv, env) >= 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    stack_stop(&fx->s);
    unsetenv("FERRY_DISCOVER_HOSTS");
    unsetenv("FERRY_DISCOVER_MS");
    free(fx);
    return 0;
}

/* n scripts through a client that knows only the name: all succeed. */
static void run_scripts(fixture *fx, int n)
{
    char err[256], ep[64];
    snprintf(ep, sizeof ep, "tcp://unused:%s", fx->ports[0]);
    ferry_client *c = ferry_client_new_discover(NAME, ep, NULL, NULL, err, sizeof err);
    assert_non_null(c);
    const char *src = "return ferry.call('echo', 'through the name')";
    for (int i = 0; i < n; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_run(c, src, strlen(src), "d.lua", NULL, 0, 5000, &r),
                         FERRY_OK);
        if (!r.result->ok)
            fail_msg("script failed: %s", r.result->error ? r.result->error->message : "?");
        ferry_result_fini(&r);
    }
    ferry_client_destroy(&c);
}

static void test_discover_follows_the_name(void **state)
{
    fixture *fx = *state;
    /* The name stands for both: the engine and the worker serve both. */
    for (int i = 0; i < 2; i++)
        assert_true(wait_counts(fx, i, 1, 1, 10000) >= 0);
    run_scripts(fx, 20);

    /* 127.0.0.2 leaves the name: they leave broker b, and stay with a. */
    write_hosts(fx, 0);
    int64_t gone = wait_counts(fx, 1, 0, 0, 10000);
    printf("# an address gone from the name: dropped by the engine and the worker after %lld "
           "ms (resolved every %s ms)\n",
           (long long)gone, DISCOVER_MS);
    assert_true(gone >= 0);
    unsigned e, w;
    assert_int_equal(counts(fx, 0, &e, &w), 0);
    assert_int_equal(e, 1);
    assert_int_equal(w, 1);
    run_scripts(fx, 20);

    /* It comes back: served again. */
    write_hosts(fx, 1);
    int64_t back = wait_counts(fx, 1, 1, 1, 10000);
    printf("# the address back in the name: registered again after %lld ms\n", (long long)back);
    assert_true(back >= 0);
    run_scripts(fx, 20);
    stack_passed(&fx->s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_discover_follows_the_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

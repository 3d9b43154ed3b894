/*
 * metrics_test: --metrics on a real stack. After a known load (N scripts,
 * each making M echo calls and K calls that fail with bad_argument), the
 * GET /metrics of the broker, the engine and the worker show exactly those
 * counts, their latency histograms count every answer, a call in flight
 * shows as in flight at each, and each exposition passes `promtool check
 * metrics` (skipped, saying so, when promtool is missing). Bad HTTP does not hurt the broker; other
 * paths get 404; without --metrics nothing listens.
 */
#include "harness.h"
#include "scrape.h"

#include "ferry_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define N 20 /* scripts */
#define M 5  /* echo calls each */
#define K 2  /* failing calls each */

static const char load_script[] = "for i = 1, 5 do assert(ferry.call('echo', i) == i) end\n"
                                  "for i = 1, 2 do\n"
                                  "  local ok, e = pcall(ferry.call, 'sleep', -1)\n"
                                  "  assert(not ok and e.code == 'bad_argument')\n"
                                  "end\n"
                                  "return 'done'";

/* Submits N load scripts at once and waits for all their results: every one ok. */
static void run_load(ferry_stack *s)
{
    for (int i = 0; i < N; i++) {
        uint64_t id;
        assert_int_equal(ferry_client_submit(s->client, load_script, strlen(load_script), "load",
                                             NULL, 0, 20000, &id),
                         FERRY_OK);
    }
    for (int i = 0; i < N; i++) {
        ferry_result r;
        assert_int_equal(ferry_client_wait(s->client, 20000, &r), FERRY_OK);
        if (!r.result->ok)
            fprintf(stderr, "load script failed: %s\n", r.result->error->message);
        assert_true(r.result->ok);
        ferry_result_fini(&r);
    }
}

/* promtool's verdict on text, or a line saying it was skipped. */
static void promtool_accepts(const char *text)
{
    int verdict = scrape_promtool(text);
    if (verdict < 0)
        fprintf(stderr, "# SKIP promtool check metrics: /usr/bin/promtool missing "
                        "(Debian package prometheus)\n");
    else
        assert_int_equal(verdict, 1);
}

/* Every test's stack lives in the fixture, so that teardown stops it even when an
 * assertion ends the test early (no process outlives a failed test). */
static int setup(void **state)
{
    ferry_stack *s = calloc(1, sizeof *s);
    assert_non_null(s);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    ferry_stack *s = *state;
    int rc = s->dir[0] ? stack_stop(s) : 0;
    free(s);
    return rc;
}

static void test_broker_series_after_known_load(void **state)
{
    int port = scrape_free_port(), eport = scrape_free_port(), wport = scrape_free_port();
    assert_true(port > 0 && eport > 0 && wport > 0);
    char addr[64], eaddr[64], waddr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    snprintf(eaddr, sizeof eaddr, "127.0.0.1:%d", eport);
    snprintf(waddr, sizeof waddr, "127.0.0.1:%d", wport);
    const char *const bargs[] = {"--metrics", addr, NULL};
    const char *const eargs[] = {"--metrics", eaddr, NULL};
    const char *const wargs[] = {"--metrics", waddr, NULL};
    ferry_stack *s = *state;
    assert_int_equal(stack_start_one_each(s, bargs, eargs, wargs, NULL), 0);
    run_load(s);

    /* The engine: calls as its scripts saw them. */
    char *body = NULL;
    assert_int_equal(scrape_get(eport, "/metrics", &body, 5000), 200);
    assert_true(scrape_value(body, "ferry_engine_calls_total{outcome=\"ok\"}") == N * M);
    assert_true(scrape_value(body, "ferry_engine_calls_total{outcome=\"bad_argument\"}") == N * K);
    assert_true(scrape_value(body, "ferry_engine_call_duration_seconds_count") == N * (M + K));
    assert_true(scrape_value(body, "ferry_engine_scripts_total{outcome=\"ok\"}") == N);
    assert_true(scrape_value(body, "ferry_engine_instructions_total") > N * 10);
    assert_true(scrape_value(body, "ferry_engine_connected") == 1);
    assert_true(scrape_value(body, "process_open_fds") > 0);
    promtool_accepts(body);
    free(body);
    /* The worker: per function, handler latency. */
    assert_int_equal(scrape_get(wport, "/metrics", &body, 5000), 200);
    assert_true(scrape_value(body, "ferry_worker_calls_total{function=\"echo\",outcome=\"ok\"}") ==
                N * M);
    assert_true(scrape_value(body, "ferry_worker_calls_total{function=\"sleep\","
                                   "outcome=\"bad_argument\"}") == N * K);
    assert_true(scrape_value(body, "ferry_worker_handler_duration_seconds_count{function="
                                   "\"echo\"}") == N * M);
    assert_true(scrape_value(body, "ferry_worker_calls_in_flight") == 0);
    assert_true(scrape_value(body, "ferry_worker_connected") == 1);
    promtool_accepts(body);
    free(body);

    assert_int_equal(scrape_get(port, "/metrics", &body, 5000), 200);
    assert_non_null(body);
    assert_true(scrape_value(body, "ferry_calls_total{function=\"echo\",outcome=\"ok\"}") == N * M);
    assert_true(
        scrape_value(body, "ferry_calls_total{function=\"sleep\",outcome=\"bad_argument\"}") ==
        N * K);
    assert_true(scrape_value(body, "ferry_call_duration_seconds_count{function=\"echo\"}") ==
                N * M);
    assert_true(
        scrape_value(body, "ferry_call_duration_seconds_bucket{function=\"echo\",le=\"+Inf\"}") ==
        N * M);
    assert_true(scrape_value(body, "ferry_scripts_total{outcome=\"ok\"}") == N);
    assert_true(scrape_value(body, "ferry_script_duration_seconds_count") == N);
    assert_true(scrape_value(body, "ferry_script_queue_wait_seconds_count") == N);
    assert_true(scrape_value(body, "ferry_engines") == 1);
    assert_true(scrape_value(body, "ferry_workers") == 1);
    assert_true(scrape_value(body, "ferry_engine_slots_free") ==
                scrape_value(body, "ferry_engine_slots"));
    assert_true(scrape_value(body, "ferry_messages_dropped_total{reason=\"bad_frames\"}") == 0);
    assert_true(scrape_value(body, "process_resident_memory_bytes") > 0);
    assert_true(scrape_value(body, "process_open_fds") > 0);
    assert_true(scrape_value(body, "process_start_time_seconds") > 1e9);
    assert_null(strstr(body, "ferry_peer_")); /* per-peer series only with --metrics-peers */
    promtool_accepts(body);
    free(body);

    /* A call in flight, and a script running, show while they are. */
    uint64_t id;
    const char *slow = "return ferry.call('sleep', 3000)";
    assert_int_equal(
        ferry_client_submit(s->client, slow, strlen(slow), "slow", NULL, 0, 20000, &id), FERRY_OK);
    assert_true(scrape_wait(port, "ferry_calls_in_flight{function=\"sleep\"}", 1, 10000) == 1);
    assert_true(scrape_wait(port, "ferry_scripts_running", 1, 10000) == 1);
    assert_true(scrape_wait(wport, "ferry_worker_calls_running{function=\"sleep\"}", 1, 10000) ==
                1);
    assert_true(scrape_wait(eport, "ferry_engine_calls_in_flight", 1, 10000) == 1);
    assert_true(scrape_wait(eport, "ferry_engine_lua_memory_bytes", 1, 10000) > 1000);

    /* Bad requests: answered or closed, and the broker serves on. */
    assert_int_equal(scrape_get(port, "/nothing", NULL, 5000), 404);
    scrape_raw(port, "GARBAGE\r\n\r\n", 2000);
    scrape_raw(port, "GET /metrics HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 2000);
    scrape_raw(port, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 2000);
    ferry_result r;
    assert_int_equal(ferry_client_wait(s->client, 20000, &r), FERRY_OK);
    assert_true(r.result->ok);
    ferry_result_fini(&r);
    /* More idle connections than the server takes: the message path does not notice. */
    int idle[24];
    for (int i = 0; i < 24; i++) {
        idle[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_true(idle[i] >= 0);
        connect(idle[i], (struct sockaddr *)&a, sizeof a); /* refused past the cap: fine */
    }
    assert_int_equal(stack_run(s, "return ferry.call('echo', 7)", NULL, 0, 10000, &r), FERRY_OK);
    assert_true(r.result->ok);
    ferry_result_fini(&r);
    for (int i = 0; i < 24; i++)
        close(idle[i]);
    /* Closed, their slots come free: scrapes go through again (a bounded poll). */
    assert_true(scrape_wait(port, "ferry_scripts_total{outcome=\"ok\"}", N + 2, 15000) == N + 2);
    assert_int_equal(scrape_get(port, "/metrics", &body, 5000), 200);
    assert_true(scrape_value(body, "ferry_scripts_total{outcome=\"ok\"}") == N + 2);
    free(body);
    stack_passed(s);
}

/* Lines of text that start with prefix. */
static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, len) == 0;
    return n;
}

static void test_peer_series_are_bounded(void **state)
{
    int port = scrape_free_port();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *const bargs[] = {"--metrics", addr, "--metrics-peers", "1", NULL};
    ferry_stack *s = *state;
    assert_int_equal(stack_init(s), 0);
    assert_true(stack_start_broker(s, bargs) >= 0);
    assert_true(stack_start_engine(s, NULL) >= 0);
    assert_true(stack_start_worker(s, NULL) >= 0);
    assert_true(stack_start_worker(s, NULL) >= 0);
    assert_int_equal(stack_wait_ready(s, 1, 2, 10000), 0);
    char *body = NULL;
    assert_int_equal(scrape_get(port, "/metrics", &body, 5000), 200);
    /* Two workers, one series (the first by routing id). */
    assert_int_equal(count_lines(body, "ferry_peer_worker_credit{"), 1);
    assert_int_equal(count_lines(body, "ferry_peer_worker_credit{worker=\"worker-"), 1);
    assert_int_equal(count_lines(body, "ferry_workers 2"), 1);
    assert_int_equal(count_lines(body, "ferry_peer_worker_replies_total{"), 2);
    assert_int_equal(count_lines(body, "ferry_peer_engine_slots{"), 1);
    promtool_accepts(body);
    free(body);
    stack_passed(s);
}

static void test_off_unless_asked(void **state)
{
    ferry_stack *s = *state;
    assert_int_equal(stack_start_one_each(s, NULL, NULL, NULL, NULL), 0);
    Ferry__Envelope *env = NULL;
    assert_int_equal(ferry_client_stats(s->client, 5000, &env), FERRY_OK);
    assert_false(env->stats->metrics);
    assert_true(env->stats->slots > 0);
    assert_int_equal(env->stats->n_engine_list, 1);
    ferry_envelope_free(env);
    /* ferry stats prints the capacity and the engine list too. */
    const char *const args[] = {"stats", "--json", NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(stack_cli(s, args, &out, &err, 20000), 0);
    assert_non_null(strstr(out, "\"slots\": 256, \"free_slots\": 256, \"credit\": 1024"));
    assert_non_null(strstr(out, "\"engine_list\": [{\"id\": \"engine-"));
    free(out);
    free(err);
    stack_passed(s);
}

static void test_bad_address_is_refused(void **state)
{
    ferry_stack *s = *state;
    assert_int_equal(stack_init(s), 0);
    const char *const bargs[] = {"--metrics", "nonsense", NULL};
    int idx = stack_spawn(s, "ferry-broker", bargs);
    assert_true(idx >= 0);
    int status = stack_wait_exit(s, idx, 10000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    stack_passed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_broker_series_after_known_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_series_are_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_unless_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_address_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

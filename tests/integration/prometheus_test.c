/*
 * prometheus_test: a real Prometheus server (Debian's /usr/bin/prometheus,
 * on a free loopback port with a generated config scraping every 200 ms)
 * scrapes a running stack's broker, engine and worker. After a known load
 * (N scripts, each M sleep(20 ms) calls and K http.get calls failing with
 * bad_argument), PromQL through its HTTP API returns exactly those counts,
 * and histogram_quantile over the broker's call latency of sleep lies in
 * the range the test measured itself (at least the 20 ms slept, at most the
 * slowest script's wall time), widened to the bounds of the histogram
 * buckets those two fall in (the resolution a histogram has).
 *
 * Skipped, saying so, when /usr/bin/prometheus is missing. Every wait is a
 * bounded poll of the query API.
 */
#include "harness.h"
#include "scrape.h"

#include "ferry_clock.h"
#include "ferry_metrics.h"

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define PROMETHEUS "/usr/bin/prometheus"
#define N 10
#define M 3
#define K 1
#define SLEEP_MS 20

static void url_encode(const char *in, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *in && n + 4 < len; in++) {
        unsigned char c = (unsigned char)*in;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

/* The value of the first sample of an instant query, or -1 (no answer, empty result). */
static double query(int port, const char *promql)
{
    char enc[1024], path[1100];
    url_encode(promql, enc, sizeof enc);
    snprintf(path, sizeof path, "/api/v1/query?query=%s", enc);
    char *body = NULL;
    double v = -1;
    if (scrape_get(port, path, &body, 5000) == 200 && body) {
        const char *p = strstr(body, "\"value\":[");
        if (p && (p = strchr(p + 9, ',')) && p[1] == '"')
            v = strtod(p + 2, NULL);
    }
    free(body);
    return v;
}

/* Polls promql until it returns want, within timeout_ms; returns the last value. */
static double query_until(int port, const char *promql, double want, int timeout_ms)
{
    int64_t until = ferry_now_ms() + timeout_ms;
    double v;
    while ((v = query(port, promql)) != want && ferry_now_ms() < until)
        poll(NULL, 0, 100); /* the next scrape is Prometheus's: look again shortly */
    return v;
}

/* The bounds (seconds) of the histogram bucket that holds us microseconds. */
static double bucket_lower(int64_t us)
{
    unsigned i = ferry_metrics_bucket((uint64_t)us);
    return i == 0 ? 0 : (double)ferry_metrics_bound_us(i - 1) / 1e6;
}

static double bucket_upper(int64_t us)
{
    unsigned i = ferry_metrics_bucket((uint64_t)us);
    return i < FERRY_METRICS_BUCKETS ? (double)ferry_metrics_bound_us(i) / 1e6 : 1e9;
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

static void test_prometheus_scrapes_the_known_load(void **state)
{
    if (access(PROMETHEUS, X_OK) != 0) {
        fprintf(stderr, "# SKIP: %s missing (Debian package prometheus)\n", PROMETHEUS);
        skip();
    }
    int bport = scrape_free_port(), eport = scrape_free_port(), wport = scrape_free_port();
    int pport = scrape_free_port();
    assert_true(bport > 0 && eport > 0 && wport > 0 && pport > 0);
    char baddr[64], eaddr[64], waddr[64];
    snprintf(baddr, sizeof baddr, "127.0.0.1:%d", bport);
    snprintf(eaddr, sizeof eaddr, "127.0.0.1:%d", eport);
    snprintf(waddr, sizeof waddr, "127.0.0.1:%d", wport);
    const char *const bargs[] = {"--metrics", baddr, NULL};
    const char *const eargs[] = {"--metrics", eaddr, NULL};
    const char *const wargs[] = {"--metrics", waddr, NULL};
    ferry_stack *s = *state;
    assert_int_equal(stack_start_one_each(s, bargs, eargs, wargs, NULL), 0);

    char config[1024];
    snprintf(config, sizeof config,
             "global:\n"
             "  scrape_interval: 200ms\n"
             "  scrape_timeout: 150ms\n"
             "scrape_configs:\n"
             "  - job_name: ferry\n"
             "    static_configs:\n"
             "      - targets: ['127.0.0.1:%d', '127.0.0.1:%d', '127.0.0.1:%d']\n",
             bport, eport, wport);
    char cfg_path[300], data[300], listen[64], cfg_flag[320], data_flag[320];
    snprintf(cfg_path, sizeof cfg_path, "%s", stack_write_file(s, "prometheus.yml", config));
    snprintf(data, sizeof data, "%s/prometheus-data", s->dir);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", pport);
    snprintf(cfg_flag, sizeof cfg_flag, "--config.file=%s", cfg_path);
    snprintf(data_flag, sizeof data_flag, "--storage.tsdb.path=%s", data);
    const char *const argv[] = {PROMETHEUS, cfg_flag, data_flag, listen, "--log.level=warn", NULL};
    assert_true(stack_spawn_cmd(s, "prometheus", argv, NULL) >= 0);
    /* Up once every target was scraped at least once. */
    assert_true(query_until(pport, "count(up == 1)", 3, 30000) == 3);

    char script[256];
    snprintf(script, sizeof script,
             "for i = 1, %d do ferry.call('sleep', %d) end\n"
             "for i = 1, %d do\n"
             "  local ok, e = pcall(ferry.call, 'http.get', 42)\n"
             "  assert(not ok and e.code == 'bad_argument')\n"
             "end\n"
             "return true",
             M, SLEEP_MS, K);
    int64_t slowest_us = 0;
    for (int i = 0; i < N; i++) {
        int64_t t0 = ferry_now_us();
        ferry_result r;
        assert_int_equal(stack_run(s, script, NULL, 0, 10000, &r), FERRY_OK);
        int64_t took = ferry_now_us() - t0;
        assert_true(r.result->ok);
        ferry_result_fini(&r);
        if (took > slowest_us)
            slowest_us = took;
    }

    /* Counts, from the broker, the engine and the worker, exactly. */
    assert_true(query_until(pport, "ferry_calls_total{function=\"sleep\",outcome=\"ok\"}", N * M,
                            30000) == N * M);
    assert_true(query_until(pport,
                            "ferry_calls_total{function=\"http.get\",outcome=\"bad_argument\"}",
                            N * K, 30000) == N * K);
    assert_true(query_until(pport, "ferry_scripts_total{outcome=\"ok\"}", N, 30000) == N);
    assert_true(query_until(pport, "ferry_engine_calls_total{outcome=\"ok\"}", N * M, 30000) ==
                N * M);
    assert_true(query_until(pport, "sum(ferry_worker_calls_total{outcome=\"bad_argument\"})", N * K,
                            30000) == N * K);
    assert_true(query_until(pport, "ferry_call_duration_seconds_count{function=\"sleep\"}", N * M,
                            30000) == N * M);

    const char *const quantiles[] = {
        "histogram_quantile(0.5, sum by (le) "
        "(ferry_call_duration_seconds_bucket{function=\"sleep\"}))",
        "histogram_quantile(0.99, sum by (le) "
        "(ferry_call_duration_seconds_bucket{function=\"sleep\"}))",
        "histogram_quantile(0.5, sum by (le) "
        "(ferry_worker_handler_duration_seconds_bucket{function=\"sleep\"}))",
    };
    double lo = bucket_lower(SLEEP_MS * 1000), hi = bucket_upper(slowest_us);
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0]; i++) {
        double q = query(pport, quantiles[i]);
        fprintf(stderr, "# %s = %.6f s (measured %.3f to %.3f ms; buckets %.6f to %.6f)\n",
                quantiles[i], q, SLEEP_MS * 1.0, slowest_us / 1000.0, lo, hi);
        assert_true(q >= lo && q <= hi);
    }
    stack_passed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prometheus_scrapes_the_known_load, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* lib_metrics_test: histogram buckets and quantiles, and the exposition text, byte for byte
 * and through promtool when it is installed. */
#include "ferry_metrics.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static void test_bucket_bounds(void **state)
{
    (void)state;
    assert_int_equal(ferry_metrics_bucket(0), 0);
    assert_int_equal(ferry_metrics_bucket(64), 0);
    assert_int_equal(ferry_metrics_bucket(65), 1);
    assert_int_equal(ferry_metrics_bucket(128), 1);
    assert_int_equal(ferry_metrics_bucket(129), 2);
    /* Every value lands in the first bucket whose bound holds it. */
    for (uint64_t us = 1; us < 50000000; us = us * 3 / 2 + 1) {
        unsigned i = ferry_metrics_bucket(us);
        if (i < FERRY_METRICS_BUCKETS)
            assert_true(us <= ferry_metrics_bound_us(i));
        else
            assert_true(us > ferry_metrics_bound_us(FERRY_METRICS_BUCKETS - 1));
        if (i > 0 && i < FERRY_METRICS_BUCKETS)
            assert_true(us > ferry_metrics_bound_us(i - 1));
    }
    assert_int_equal(ferry_metrics_bucket(UINT64_MAX), FERRY_METRICS_BUCKETS);
}

static void test_quantile(void **state)
{
    (void)state;
    ferry_metrics_hist h;
    memset(&h, 0, sizeof h);
    assert_int_equal(ferry_metrics_hist_quantile_us(&h, 0.5), 0);
    /* 100 values of 1000 us: bucket (512, 1024]. */
    for (int i = 0; i < 100; i++)
        ferry_metrics_hist_observe(&h, 1000);
    assert_int_equal(h.count, 100);
    assert_int_equal(h.sum_us, 100000);
    uint64_t p50 = ferry_metrics_hist_quantile_us(&h, 0.5);
    assert_true(p50 > 512 && p50 <= 1024);
    assert_int_equal(p50, 768); /* linear inside the bucket, as histogram_quantile */
    assert_int_equal(ferry_metrics_hist_quantile_us(&h, 1.0), 1024);
    /* One slow value moves p99 only when it is more than 1 %. */
    ferry_metrics_hist_observe(&h, 3000000);
    assert_true(ferry_metrics_hist_quantile_us(&h, 0.99) <= 1024);
    ferry_metrics_hist_observe(&h, -5); /* counts as 0 */
    assert_int_equal(h.buckets[0], 1);
    ferry_metrics_hist over;
    memset(&over, 0, sizeof over);
    ferry_metrics_hist_observe(&over, 100000000); /* past the last bound */
    assert_int_equal(over.buckets[FERRY_METRICS_BUCKETS], 1);
    assert_int_equal(ferry_metrics_hist_quantile_us(&over, 0.5),
                     ferry_metrics_bound_us(FERRY_METRICS_BUCKETS - 1));
    ferry_metrics_hist_add(&over, &h);
    assert_int_equal(over.count, 103);
}

static void test_exposition_text(void **state)
{
    (void)state;
    ferry_buf out = FERRY_BUF_INIT;
    ferry_metrics_writer w;
    ferry_metrics_writer_init(&w, &out);
    ferry_metrics_family(&w, "ferry_x_total", FERRY_METRICS_COUNTER, "Help with \\ and\nline");
    ferry_metrics_label l[2] = {{"function", "a\"b\\c\nd"}, {"outcome", "ok"}};
    ferry_metrics_u64(&w, "ferry_x_total", l, 2, 18446744073709551615ull);
    ferry_metrics_family(&w, "ferry_g", FERRY_METRICS_GAUGE, "A gauge.");
    ferry_metrics_f64(&w, "ferry_g", NULL, 0, 0.5);
    assert_int_equal(ferry_metrics_writer_err(&w), FERRY_OK);
    const char *want = "# HELP ferry_x_total Help with \\\\ and\\nline\n"
                       "# TYPE ferry_x_total counter\n"
                       "ferry_x_total{function=\"a\\\"b\\\\c\\nd\",outcome=\"ok\"} "
                       "18446744073709551615\n"
                       "# HELP ferry_g A gauge.\n"
                       "# TYPE ferry_g gauge\n"
                       "ferry_g 0.5\n";
    assert_string_equal(out.data, want);
    ferry_buf_fini(&out);
}

static void test_histogram_text(void **state)
{
    (void)state;
    ferry_metrics_hist h;
    memset(&h, 0, sizeof h);
    ferry_metrics_hist_observe(&h, 50);
    ferry_metrics_hist_observe(&h, 100);
    ferry_metrics_hist_observe(&h, 100000000);
    ferry_buf out = FERRY_BUF_INIT;
    ferry_metrics_writer w;
    ferry_metrics_writer_init(&w, &out);
    ferry_metrics_family(&w, "ferry_d_seconds", FERRY_METRICS_HISTOGRAM, "D.");
    ferry_metrics_label l = {"function", "echo"};
    ferry_metrics_hist_write(&w, "ferry_d_seconds", &l, 1, &h);
    assert_int_equal(ferry_metrics_writer_err(&w), FERRY_OK);
    assert_non_null(
        strstr(out.data, "ferry_d_seconds_bucket{function=\"echo\",le=\"0.000064\"} 1\n"));
    assert_non_null(
        strstr(out.data, "ferry_d_seconds_bucket{function=\"echo\",le=\"0.000128\"} 2\n"));
    assert_non_null(
        strstr(out.data, "ferry_d_seconds_bucket{function=\"echo\",le=\"33.554432\"} 2\n"));
    assert_non_null(strstr(out.data, "ferry_d_seconds_bucket{function=\"echo\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(out.data, "ferry_d_seconds_sum{function=\"echo\"} 100.000150\n"));
    assert_non_null(strstr(out.data, "ferry_d_seconds_count{function=\"echo\"} 3\n"));
    ferry_buf_fini(&out);
}

static void test_process_and_promtool(void **state)
{
    (void)state;
    ferry_buf out = FERRY_BUF_INIT;
    ferry_metrics_writer w;
    ferry_metrics_writer_init(&w, &out);
    ferry_metrics_hist h;
    memset(&h, 0, sizeof h);
    ferry_metrics_hist_observe(&h, 2000);
    ferry_metrics_family(&w, "ferry_calls_total", FERRY_METRICS_COUNTER, "Calls \"quoted\".");
    ferry_metrics_label l[2] = {{"function", "we\"ird\\name\n"}, {"outcome", "ok"}};
    ferry_metrics_u64(&w, "ferry_calls_total", l, 2, 3);
    ferry_metrics_family(&w, "ferry_call_duration_seconds", FERRY_METRICS_HISTOGRAM, "D.");
    ferry_metrics_hist_write(&w, "ferry_call_duration_seconds", l, 1, &h);
    ferry_metrics_process(&w, ferry_metrics_wall_now());
    assert_int_equal(ferry_metrics_writer_err(&w), FERRY_OK);
    assert_non_null(strstr(out.data, "\nprocess_cpu_seconds_total "));
    assert_non_null(strstr(out.data, "\nprocess_resident_memory_bytes "));
    assert_non_null(strstr(out.data, "\nprocess_open_fds "));
    assert_non_null(strstr(out.data, "\nprocess_start_time_seconds "));
    if (access("/usr/bin/promtool", X_OK) != 0) {
        fprintf(stderr, "SKIP promtool check: /usr/bin/promtool missing (Debian package "
                        "prometheus)\n");
        ferry_buf_fini(&out);
        return;
    }
    char path[] = "/tmp/lib_metrics_test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, out.data, out.len), (ssize_t)out.len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    if (rc != 0)
        fprintf(stderr, "%s", out.data);
    assert_int_equal(rc, 0);
    ferry_buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_bounds),        cmocka_unit_test(test_quantile),
        cmocka_unit_test(test_exposition_text),      cmocka_unit_test(test_histogram_text),
        cmocka_unit_test(test_process_and_promtool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

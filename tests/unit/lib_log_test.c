/* lib_log_test: FERRY_LOG_FORMAT=json lines, byte for byte: fields as members, escaping,
 * bytes that are not UTF-8, text that is not key=value, and a line cut at its bound. */
#include "ferry_log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* What the logging calls of fn wrote to stderr (malloc'd). */
static char *captured(void (*fn)(void))
{
    char path[] = "/tmp/lib_log_test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fd, buf, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return buf;
}

static void lines(void)
{
    ferry_info("worker_ready", "worker=w-1 functions=2 credit=-3 big=12345678901234567890");
    ferry_warn("bad_frames", "peer=\"a\"b\\c\" reason=\"two words\" ctl=%s", "x\ty\x01");
    ferry_error("odd", "%s", "not key value \xff\xfe");
    ferry_info("plain", NULL);
    static char big[3000];
    memset(big, '"', sizeof big - 1);
    ferry_info("long", "v=%s", big);
}

static void test_json_lines(void **state)
{
    (void)state;
    setenv("FERRY_LOG_FORMAT", "json", 1);
    ferry_log_init("broker");
    char *out = captured(lines);
    char *line[5];
    char *p = out;
    for (int i = 0; i < 5; i++) {
        line[i] = p;
        p = strchr(p, '\n');
        assert_non_null(p);
        *p++ = '\0';
        assert_true(strncmp(line[i], "{\"time\":\"", 9) == 0);
        assert_true(line[i][strlen(line[i]) - 1] == '}');
    }
    assert_string_equal(*p ? "more" : "", "");
    /* After the time: the same members each time. */
    assert_non_null(strstr(line[0], "\",\"level\":\"INFO\",\"role\":\"broker\",\"event\":"
                                    "\"worker_ready\",\"worker\":\"w-1\",\"functions\":2,"
                                    "\"credit\":-3,\"big\":\"12345678901234567890\"}"));
    assert_non_null(strstr(line[1], "\"event\":\"bad_frames\",\"peer\":\"a\\\"b\\\\c\","
                                    "\"reason\":\"two words\",\"ctl\":\"x\\u0009y\\u0001\"}"));
    assert_non_null(strstr(line[2], "\"event\":\"odd\",\"text\":\"not key value "
                                    "\\ufffd\\ufffd\"}"));
    assert_non_null(strstr(line[3], "\"event\":\"plain\"}"));
    assert_non_null(strstr(line[4], ",\"truncated\":true}"));
    assert_true(strlen(line[4]) <= 4096);
    free(out);
    unsetenv("FERRY_LOG_FORMAT");
    ferry_log_init("broker");
}

static void test_text_stays_the_default(void **state)
{
    (void)state;
    ferry_log_init("broker");
    char *out = captured(lines);
    assert_non_null(strstr(out, " INFO broker worker_ready worker=w-1 functions=2"));
    assert_null(strstr(out, "{\"time\""));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_lines),
        cmocka_unit_test(test_text_stays_the_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

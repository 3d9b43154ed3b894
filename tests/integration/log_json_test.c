/*
 * log_json_test: FERRY_LOG_FORMAT=json makes every line a real broker,
 * engine and worker write (at debug level, through scripts that succeed and
 * fail, bad frames under a routing id full of quotes, backslashes and bytes
 * that are not UTF-8, and a clean stop) one JSON object with time, level,
 * role and event, as Python's json module reads it.
 */
#include "harness.h"

#include "ferry_wire.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#include <cmocka.h>

static const char check_py[] =
    "import json, sys\n"
    "n = 0\n"
    "roles = set()\n"
    "for path in sys.argv[1:]:\n"
    "    for i, line in enumerate(open(path, 'rb').read().split(b'\\n')[:-1]):\n"
    "        try:\n"
    "            o = json.loads(line.decode('utf-8'))\n"
    "        except Exception as e:\n"
    "            sys.exit('%s:%d: not JSON (%s): %r' % (path, i + 1, e, line))\n"
    "        for k in ('time', 'level', 'role', 'event'):\n"
    "            if not isinstance(o.get(k), str):\n"
    "                sys.exit('%s:%d: no %s: %r' % (path, i + 1, k, line))\n"
    "        roles.add(o['role'])\n"
    "        n += 1\n"
    "want = {'broker', 'engine', 'worker'}\n"
    "if not want <= roles or n < 10:\n"
    "    sys.exit('only %d lines, roles %s' % (n, sorted(roles)))\n"
    "print('# %d JSON log lines from %s' % (n, ', '.join(sorted(roles))))\n";

static int spawn(ferry_stack *s, const char *binary)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FERRY_BIN_DIR, binary);
    const char *const argv[] = {path, NULL};
    const char *const env[] = {"FERRY_LOG_FORMAT=json", "FERRY_LOG_LEVEL=debug", NULL};
    return stack_spawn_cmd(s, binary, argv, env);
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

static void test_every_line_is_json(void **state)
{
    const char *python = stack_python(NULL);
    if (!python) {
        fprintf(stderr, "# SKIP: no python3\n");
        skip();
    }
    ferry_stack *s = *state;
    assert_int_equal(stack_init(s), 0);
    int procs[3] = {spawn(s, "ferry-broker"), spawn(s, "ferry-engine"), spawn(s, "ferry-worker")};
    for (int i = 0; i < 3; i++)
        assert_true(procs[i] >= 0);
    s->client = stack_client(s, NULL, NULL);
    assert_non_null(s->client);
    assert_int_equal(stack_wait_ready(s, 1, 1, 10000), 0);

    const char *scripts[] = {
        "return ferry.call('echo', 'quote \" backslash \\\\ newline \\n')",
        "error('a \"quoted\" \\\\ error\\n\\1')",
        "return pcall(ferry.call, 'sleep', -1)",
        "return ferry.call('no-such-function')",
        "print('x\\0y') return 1",
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        ferry_result r;
        assert_int_equal(stack_run(s, scripts[i], NULL, 0, 10000, &r), FERRY_OK);
        ferry_result_fini(&r);
    }
    /* Bad frames from a peer whose routing id is hostile to a log line. */
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    static const char rid[] = "\"\\\n\xff\xfe{}";
    zmq_setsockopt(dealer, ZMQ_ROUTING_ID, rid, sizeof rid - 1);
    int linger = 0;
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(dealer, s->workers), 0);
    assert_true(zmq_send(dealer, "\xff\xff garbage", 10, 0) == 10);
    /* The broker logs it (rate-limited) and counts it: wait for the count. */
    int dropped = 0;
    for (int i = 0; i < 500 && !dropped; i++) {
        Ferry__Envelope *env = NULL;
        if (ferry_client_stats(s->client, 1000, &env) == FERRY_OK) {
            dropped = env->stats->dropped > 0;
            ferry_envelope_free(env);
        }
    }
    assert_true(dropped);
    zmq_close(dealer);
    zmq_ctx_term(ctx);

    /* Stop them (their last lines too), then read every log. */
    for (int i = 2; i >= 0; i--) {
        stack_signal(s, procs[i], SIGTERM);
        int st = stack_wait_exit(s, procs[i], 15000);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    char cmd[2048];
    int n = snprintf(cmd, sizeof cmd, "%s -c \"$FERRY_CHECK_PY\"", python);
    for (int i = 0; i < 3; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " '%s'", s->procs[procs[i]].log);
    setenv("FERRY_CHECK_PY", check_py, 1);
    int rc = system(cmd);
    assert_int_equal(rc, 0);
    stack_passed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_line_is_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

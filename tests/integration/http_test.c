/*
 * http_test: http.get and http.request of ferry-worker, from Lua scripts
 * through the real broker and engine, against an HTTP server on loopback.
 *
 * The server (http_server.py, Python's standard library) serves on a
 * listening socket this test makes and hands over, so its port is known
 * before it starts and no test waits for it to come up: connections wait in
 * the backlog until it accepts. Status, headers, binary bodies, a 404, a
 * refused connection, a timeout, redirects, body bounds, bad arguments, and
 * 200 slow requests in flight at once through one worker.
 *
 * The worker refuses internal addresses unless --http-allow opens them
 * (SSRF): most tests allow 127.0.0.1/32 for the server; the attack tests
 * start a worker with the default policy, or one that allows the server
 * but is asked to go elsewhere (redirects, an http_proxy in its environment).
 */
#include "harness.h"

#include "ferry_clock.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
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

typedef struct {
    ferry_stack stack;
    char base[64]; /* http://127.0.0.1:<port> */
    int port;      /* the server's */
    int engine;    /* process index of ferry-engine */
    int worker;    /* process index of ferry-worker */
} http_env;

/* A listening socket on 127.0.0.1:<ephemeral>, inheritable (no CLOEXEC). */
static int listen_loopback(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, backlog) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* How the stack's worker is started. */
typedef enum {
    WORKER_ALLOW_SERVER,  /* --http-allow 127.0.0.1/32 */
    WORKER_DEFAULT,       /* no allow list */
    WORKER_ALLOW_PROXIED, /* FERRY_HTTP_ALLOW=127.0.0.1/32 and the server as http_proxy */
} worker_kind;

static int start(void **state, worker_kind kind)
{
    static http_env env;
    memset(&env, 0, sizeof env);
    ferry_stack *s = &env.stack;
    assert_int_equal(stack_init(s), 0);
    const char *py = stack_python(NULL);
    if (!py) {
        fprintf(stderr, "http_test: no python3 to run the test's HTTP server\n");
        return -1;
    }
    int port;
    int fd = listen_loopback(1024, &port);
    assert_true(fd >= 0);
    env.port = port;
    snprintf(env.base, sizeof env.base, "http://127.0.0.1:%d", port);
    /* The server writes to this pipe once its SIGTERM handler is in place, so that
     * stack_stop finds it ready to exit cleanly however short the test. */
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(fcntl(ready[0], F_SETFD, FD_CLOEXEC), 0);
    char script[600], fdarg[16], readyarg[16];
    snprintf(script, sizeof script, "%s/tests/integration/http_server.py", stack_source_dir());
    snprintf(fdarg, sizeof fdarg, "%d", fd);
    snprintf(readyarg, sizeof readyarg, "%d", ready[1]);
    const char *argv[] = {py, script, "--fd", fdarg, "--ready-fd", readyarg, NULL};
    assert_true(stack_spawn_cmd(s, "http-server", argv, NULL) >= 0);
    /* The server holds them now; later children must not. */
    close(fd);
    close(ready[1]);
    struct pollfd pfd = {.fd = ready[0], .events = POLLIN};
    char byte;
    int up = poll(&pfd, 1, 10000) == 1 && read(ready[0], &byte, 1) == 1;
    close(ready[0]);
    if (!up) {
        fprintf(stderr, "http_test: the HTTP server did not come up within 10 s\n");
        stack_stop(s);
        return -1;
    }

    assert_true(stack_start_broker(s, NULL) >= 0);
    const char *engine_args[] = {"--slots", "1000", NULL};
    env.engine = stack_start_engine(s, engine_args);
    assert_true(env.engine >= 0);
    const char *allow_args[] = {"--http-allow", "127.0.0.1/32", NULL};
    if (kind == WORKER_ALLOW_PROXIED) {
        /* Every proxy variable curl reads; a no_proxy of the machine must not hide them. */
        static const char *const names[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                            "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
        enum { NPROXY = sizeof names / sizeof names[0] };
        char proxy[NPROXY][96];
        const char *wenv[NPROXY + 2];
        for (int i = 0; i < NPROXY; i++) {
            snprintf(proxy[i], sizeof proxy[i], "%s=%s", names[i], env.base);
            wenv[i] = proxy[i];
        }
        wenv[NPROXY] = "FERRY_HTTP_ALLOW=127.0.0.1/32";
        wenv[NPROXY + 1] = NULL;
        unsetenv("no_proxy");
        unsetenv("NO_PROXY");
        const char *argv[] = {FERRY_BIN_DIR "/ferry-worker", NULL};
        env.worker = stack_spawn_cmd(s, "worker", argv, wenv);
    } else {
        env.worker = stack_start_worker(s, kind == WORKER_ALLOW_SERVER ? allow_args : NULL);
    }
    assert_true(env.worker >= 0);
    if (stack_wait_ready(s, 1, 1, 10000) != 0) {
        stack_stop(s);
        return -1;
    }
    *state = &env;
    return 0;
}

static int setup(void **state)
{
    return start(state, WORKER_ALLOW_SERVER);
}

static int setup_default(void **state)
{
    return start(state, WORKER_DEFAULT);
}

static int setup_proxied(void **state)
{
    return start(state, WORKER_ALLOW_PROXIED);
}

static int teardown(void **state)
{
    http_env *env = *state;
    return stack_stop(&env->stack);
}

/* Runs src with the server's base URL as its argument; the script must succeed. */
static void run_ok(http_env *env, const char *src, ferry_result *r)
{
    Ferry__Value *arg = ferry_value_cstring(env->base);
    assert_int_equal(stack_run(&env->stack, src, &arg, 1, 20000, r), FERRY_OK);
    ferry_value_free(arg);
    if (!r->result->ok)
        fail_msg("script failed: %s: %s", r->result->error ? r->result->error->code : "?",
                 r->result->error ? r->result->error->message : "?");
}

/* Runs src, which must fail with code and a message holding in_msg, within max_ms. */
static void run_fails(http_env *env, const char *src, const char *code, const char *in_msg,
                      int64_t max_ms)
{
    Ferry__Value *arg = ferry_value_cstring(env->base);
    ferry_result r;
    int64_t start = ferry_now_ms();
    assert_int_equal(stack_run(&env->stack, src, &arg, 1, 20000, &r), FERRY_OK);
    int64_t took = ferry_now_ms() - start;
    ferry_value_free(arg);
    if (r.result->ok || !r.result->error)
        fail_msg("script '%s' succeeded, want %s", src, code);
    if (strcmp(r.result->error->code, code) != 0 || !strstr(r.result->error->message, in_msg))
        fail_msg("want %s containing '%s', got %s: %s", code, in_msg, r.result->error->code,
                 r.result->error->message);
    if (took > max_ms)
        fail_msg("'%s' took %lld ms, want at most %lld", src, (long long)took, (long long)max_ms);
    ferry_result_fini(&r);
}

static void assert_string_value(const Ferry__Value *v, const void *want, size_t len)
{
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    assert_int_equal(v->string.len, len);
    if (len)
        assert_memory_equal(v->string.data, want, len);
}

static void assert_cstring_value(const Ferry__Value *v, const char *want)
{
    assert_string_value(v, want, strlen(want));
}

static void test_get_status_headers_body(void **state)
{
    http_env *env = *state;
    ferry_result r;
    run_ok(env,
           "local base = ...\n"
           "local r = ferry.call('http.get', base .. '/ok')\n"
           "return r.status, r.headers['content-type'], r.headers['x-test'], r.body, r.url,\n"
           "       math.type(r.status), r.headers['content-length']",
           &r);
    assert_int_equal(r.result->n_values, 7);
    assert_int_equal(r.result->values[0]->integer, 200);
    assert_cstring_value(r.result->values[1], "text/plain");
    /* Repeated headers are joined, names lower-cased. */
    assert_cstring_value(r.result->values[2], "a, b");
    assert_cstring_value(r.result->values[3], "hello");
    char url[96];
    snprintf(url, sizeof url, "%s/ok", env->base);
    assert_cstring_value(r.result->values[4], url);
    assert_cstring_value(r.result->values[5], "integer");
    assert_cstring_value(r.result->values[6], "5");
    ferry_result_fini(&r);

    /* A 404 is a result like any other status. */
    run_ok(env,
           "local r = ferry.call('http.get', ... .. '/nothing/here')\n"
           "return r.status, r.body",
           &r);
    assert_int_equal(r.result->values[0]->integer, 404);
    assert_cstring_value(r.result->values[1], "not found");
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

static void test_binary_bodies_both_ways(void **state)
{
    http_env *env = *state;
    ferry_result r;
    run_ok(env, "local r = ferry.call('http.get', ... .. '/binary') return r.status, r.body", &r);
    assert_int_equal(r.result->values[0]->integer, 200);
    unsigned char want[1024];
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = (unsigned char)(i % 256);
    assert_string_value(r.result->values[1], want, sizeof want);
    ferry_result_fini(&r);

    /* A binary request body, a method, headers, and the echo of all three. */
    run_ok(env,
           "local base = ...\n"
           "local body = 'a\\0b\\255\\r\\n' .. string.rep('z', 5000)\n"
           "local r = ferry.call('http.request', {method = 'put', url = base .. '/echo',\n"
           "  headers = {['X-Foo'] = 'bar', ['X-Num'] = 7, ['X-Empty'] = ''}, body = body})\n"
           "return r.status, r.body == body, #r.body, r.headers['x-method'],\n"
           "  r.headers['x-echo-x-foo'], r.headers['x-echo-x-num'], r.headers['x-echo-x-empty']",
           &r);
    assert_int_equal(r.result->values[0]->integer, 200);
    assert_true(r.result->values[1]->boolean);
    assert_int_equal(r.result->values[2]->integer, 5006);
    assert_cstring_value(r.result->values[3], "PUT");
    assert_cstring_value(r.result->values[4], "bar");
    assert_cstring_value(r.result->values[5], "7");
    assert_cstring_value(r.result->values[6], "");
    ferry_result_fini(&r);

    /* POST without a body, DELETE, HEAD (no body comes back). */
    run_ok(env,
           "local base = ...\n"
           "local p = ferry.call('http.request', {method = 'POST', url = base .. '/echo'})\n"
           "local d = ferry.call('http.request', {method = 'DELETE', url = base .. '/echo'})\n"
           "local h = ferry.call('http.request', {method = 'HEAD', url = base .. '/ok'})\n"
           "return p.headers['x-method'], p.body, d.headers['x-method'], h.status, h.body,\n"
           "  h.headers['content-length']",
           &r);
    assert_cstring_value(r.result->values[0], "POST");
    assert_cstring_value(r.result->values[1], "");
    assert_cstring_value(r.result->values[2], "DELETE");
    assert_int_equal(r.result->values[3]->integer, 200);
    assert_cstring_value(r.result->values[4], "");
    assert_cstring_value(r.result->values[5], "5");
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

static void test_redirects_and_bounds(void **state)
{
    http_env *env = *state;
    ferry_result r;
    run_ok(env,
           "local base = ...\n"
           "local r = ferry.call('http.get', base .. '/redirect?n=3')\n"
           "local raw = ferry.call('http.get', base .. '/redirect?n=3', {max_redirects = 0})\n"
           "local big = ferry.call('http.get', base .. '/big?n=100000')\n"
           "local st = ferry.call('http.get', base .. '/status?code=503')\n"
           "return r.status, r.body, r.url:sub(-3), raw.status, raw.headers.location, #big.body,\n"
           "  st.status",
           &r);
    assert_int_equal(r.result->values[0]->integer, 200);
    assert_cstring_value(r.result->values[1], "hello");
    assert_cstring_value(r.result->values[2], "/ok");
    assert_int_equal(r.result->values[3]->integer, 302);
    assert_cstring_value(r.result->values[4], "/redirect?n=2");
    assert_int_equal(r.result->values[5]->integer, 100000);
    assert_int_equal(r.result->values[6]->integer, 503);
    ferry_result_fini(&r);

    run_fails(env, "return ferry.call('http.get', ... .. '/redirect?n=3', {max_redirects = 2})",
              "call_error", "max_redirects", 5000);
    run_fails(env, "return ferry.call('http.get', ... .. '/big?n=2000', {max_body = 1000})",
              "call_error", "max_body", 5000);
    /* Over the default of 8 MiB. */
    run_fails(env, "return ferry.call('http.get', ... .. '/big?n=9000000')", "call_error",
              "max_body", 10000);
    stack_passed(&env->stack);
}

static void test_transport_failures(void **state)
{
    http_env *env = *state;
    /* A port nobody listens on: take one, close it. */
    int port;
    int fd = listen_loopback(1, &port);
    assert_true(fd >= 0);
    close(fd);
    char src[256];
    snprintf(src, sizeof src, "return ferry.call('http.get', 'http://127.0.0.1:%d/')", port);
    run_fails(env, src, "call_error", "onnect", 5000);

    /* The server takes 3 s; the call allows 200 ms. */
    int64_t start = ferry_now_ms();
    run_fails(env, "return ferry.call('http.get', ... .. '/slow?ms=3000', {timeout_ms = 200})",
              "timeout", "200 ms", 2500);
    assert_true(ferry_now_ms() - start >= 190);

    /* A failure is catchable, and the worker goes on serving. */
    ferry_result r;
    run_ok(env,
           "local base = ...\n"
           "local ok, e = pcall(ferry.call, 'http.request',\n"
           "  {url = base .. '/slow?ms=3000', timeout_ms = 100})\n"
           "return ok, e.code, ferry.call('http.get', base .. '/ok').status",
           &r);
    assert_false(r.result->values[0]->boolean);
    assert_cstring_value(r.result->values[1], "timeout");
    assert_int_equal(r.result->values[2]->integer, 200);
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

static void test_bad_arguments(void **state)
{
    http_env *env = *state;
    run_fails(env, "return ferry.call('http.get', 42)", "bad_argument", "string expected", 5000);
    run_fails(env, "return ferry.call('http.get', 'ftp://127.0.0.1/x')", "bad_argument",
              "http:// or https://", 5000);
    run_fails(env, "return ferry.call('http.get', 'file:///etc/passwd')", "bad_argument",
              "http:// or https://", 5000);
    run_fails(env, "return ferry.call('http.get', ... .. '/ok', {timout_ms = 5})", "bad_argument",
              "unknown field 'timout_ms'", 5000);
    run_fails(env, "return ferry.call('http.get', ... .. '/ok', {timeout_ms = -1})", "bad_argument",
              "timeout_ms", 5000);
    run_fails(env, "return ferry.call('http.get', ... .. '/ok', 'fast')", "bad_argument",
              "table expected", 5000);
    run_fails(env, "return ferry.call('http.request', {url = ... .. '/ok', method = 'GE T'})",
              "bad_argument", "method", 5000);
    run_fails(env, "return ferry.call('http.request', {method = 'GET'})", "bad_argument",
              "'url' missing", 5000);
    run_fails(env,
              "return ferry.call('http.request', {url = ... .. '/ok',\n"
              "  headers = {['X-Bad'] = 'a\\r\\nInjected: 1'}})",
              "bad_argument", "CR, LF", 5000);
    /* A redirect to another protocol is refused by curl itself. */
    stack_passed(&env->stack);
}

static void test_200_slow_requests_in_flight_at_once(void **state)
{
    http_env *env = *state;
    const char *src = "local base, n, ms = ...\n"
                      "local calls = {}\n"
                      "for i = 1, n do calls[i] = {'http.get', base .. '/slow?ms=' .. ms} end\n"
                      "local rs = ferry.all(table.unpack(calls))\n"
                      "local ok = 0\n"
                      "for _, r in ipairs(rs) do\n"
                      "  if r[1].status == 200 and r[1].body == 'slow' then ok = ok + 1 end\n"
                      "end\n"
                      "return ok";
    enum { SLOW_MS = 500, N = 200 };
    int64_t took[2];
    int counts[2] = {1, N};
    for (int k = 0; k < 2; k++) {
        Ferry__Value *args[3] = {ferry_value_cstring(env->base), ferry_value_int(counts[k]),
                                 ferry_value_int(SLOW_MS)};
        ferry_result r;
        int64_t start = ferry_now_ms();
        assert_int_equal(stack_run(&env->stack, src, args, 3, 30000, &r), FERRY_OK);
        took[k] = ferry_now_ms() - start;
        for (int i = 0; i < 3; i++)
            ferry_value_free(args[i]);
        if (!r.result->ok)
            fail_msg("%s: %s", r.result->error->code, r.result->error->message);
        assert_int_equal(r.result->values[0]->integer, counts[k]);
        ferry_result_fini(&r);
    }
    printf("# http.get of a %d ms endpoint through one worker: 1 request %lld ms, "
           "%d at once %lld ms\n",
           SLOW_MS, (long long)took[0], N, (long long)took[1]);
    /* One after another would take N * 500 ms = 100 s. */
    assert_true(took[1] < took[0] + 1500);
    stack_passed(&env->stack);
}

/* The in-flight count of function name in the broker's stats, or -1. */
static long long function_in_flight(ferry_stack *s, const char *name)
{
    Ferry__Envelope *env = NULL;
    if (ferry_client_stats(s->client, 2000, &env) != FERRY_OK)
        return -1;
    long long n = -1;
    for (size_t i = 0; i < env->stats->n_functions; i++)
        if (strcmp(env->stats->functions[i]->name, name) == 0)
            n = (long long)env->stats->functions[i]->in_flight;
    ferry_envelope_free(env);
    return n;
}

/* Submits a script with two transfers of a slow endpoint and waits until both run. */
static void two_slow_transfers(http_env *env, int ms)
{
    ferry_stack *s = &env->stack;
    const char *src = "local base, ms = ...\n"
                      "local r = ferry.all({'http.get', base .. '/slow?ms=' .. ms},\n"
                      "  {'http.request', {url = base .. '/slow?ms=' .. ms}})\n"
                      "return r[1][1].status, r[2][1].status";
    Ferry__Value *args[2] = {ferry_value_cstring(env->base), ferry_value_int(ms)};
    assert_int_equal(
        ferry_client_submit(s->client, src, strlen(src), "inflight.lua", args, 2, 20000, NULL),
        FERRY_OK);
    ferry_value_free(args[0]);
    ferry_value_free(args[1]);
    /* In flight at the broker is not yet at the worker: wait until the server has both
     * requests, asking it through the same worker. */
    int64_t until = ferry_now_ms() + 10000;
    for (;;) {
        ferry_result r;
        run_ok(env, "return ferry.call('http.get', ... .. '/inflight').body", &r);
        int both =
            r.result->values[0]->string.len == 1 && r.result->values[0]->string.data[0] == '2';
        ferry_result_fini(&r);
        if (both)
            break;
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10); /* the server is another process: ask again shortly */
    }
    /* The two calls' own results are still to come; run_ok consumed only its own. */
    assert_int_equal(function_in_flight(s, "http.get"), 1);
    assert_int_equal(function_in_flight(s, "http.request"), 1);
}

static void test_sigterm_lets_transfers_finish(void **state)
{
    http_env *env = *state;
    ferry_stack *s = &env->stack;
    two_slow_transfers(env, 1000);
    stack_signal(s, env->worker, SIGTERM);
    ferry_result r;
    assert_int_equal(ferry_client_wait(s->client, 10000, &r), FERRY_OK);
    if (!r.result->ok)
        fail_msg("%s: %s", r.result->error->code, r.result->error->message);
    assert_int_equal(r.result->values[0]->integer, 200);
    assert_int_equal(r.result->values[1]->integer, 200);
    ferry_result_fini(&r);
    int st = stack_wait_exit(s, env->worker, 5000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    stack_passed(s);
}

static void test_second_sigterm_cancels_transfers(void **state)
{
    http_env *env = *state;
    ferry_stack *s = &env->stack;
    two_slow_transfers(env, 5000);
    /* The first signal drains: the worker says Goodbye and the broker counts it out. */
    stack_signal(s, env->worker, SIGTERM);
    int64_t until = ferry_now_ms() + 5000;
    for (;;) {
        Ferry__Envelope *e = NULL;
        assert_int_equal(ferry_client_stats(s->client, 2000, &e), FERRY_OK);
        int gone = e->stats->workers == 0;
        ferry_envelope_free(e);
        if (gone)
            break;
        assert_true(ferry_now_ms() < until);
        poll(NULL, 0, 10);
    }
    /* The second stops at once: both transfers are cancelled, curl and every call
     * freed (the ASan build checks), long before the 5 s endpoint answers. */
    int64_t start = ferry_now_ms();
    stack_signal(s, env->worker, SIGTERM);
    int st = stack_wait_exit(s, env->worker, 4000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(ferry_now_ms() - start < 4000);
    stack_passed(s);
}

/* text with each "PORT" replaced by port, into out. */
static void with_port(char *out, size_t size, const char *text, int port)
{
    size_t n = 0;
    for (const char *t = text; *t && n + 8 < size;) {
        if (strncmp(t, "PORT", 4) == 0) {
            n += (size_t)snprintf(out + n, size - n, "%d", port);
            t += 4;
        } else {
            out[n++] = *t++;
        }
    }
    out[n] = '\0';
}

/* Runs the script src as an attack beside an innocent script (stack_attack); in src
 * and part, PORT stands for the server's port. code NULL: the attack must succeed. */
static void attack(http_env *env, const char *src, const char *code, const char *part,
                   ferry_result *out)
{
    char s[4096], p[512];
    with_port(s, sizeof s, src, env->port);
    with_port(p, sizeof p, part ? part : "", env->port);
    stack_attack(&env->stack, env->engine, s, 10000, code, p, out);
}

/* True when v is the string "call_error: ..." holding part (the attack scripts' own
 * summary of a failed call). */
static int is_call_error_with(const Ferry__Value *v, const char *part)
{
    char text[1024];
    if (v->kind_case != FERRY__VALUE__KIND_STRING || v->string.len >= sizeof text)
        return 0;
    memcpy(text, v->string.data, v->string.len);
    text[v->string.len] = '\0';
    return strncmp(text, "call_error: ", 12) == 0 && strstr(text, part) != NULL;
}

/* The review's repro and its variants: every spelling of an internal address, names
 * that resolve to loopback, and the internal ranges, with the default policy. */
static void test_internal_addresses_refused(void **state)
{
    http_env *env = *state;
    static const struct {
        const char *url, *part;
    } cases[] = {
        {"http://127.0.0.1:PORT/ok", "address 127.0.0.1 refused (loopback; see --http-allow)"},
        {"http://localhost:PORT/ok", "refused (loopback; see --http-allow)"},
        {"http://[::ffff:127.0.0.1]:PORT/ok", "address ::ffff:127.0.0.1 refused (loopback"},
        {"http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 refused (link-local"},
        {"http://ferry.localhost:PORT/ok", "refused (loopback; see --http-allow)"},
        {"http://[::1]:PORT/ok", "address ::1 refused (loopback"},
        {"http://0.0.0.0:PORT/ok", "address 0.0.0.0 refused (unspecified"},
        {"http://[::]:PORT/ok", "address :: refused (unspecified"},
        {"http://[::ffff:7f00:2]:PORT/ok", "address ::ffff:127.0.0.2 refused (loopback"},
        {"http://[64:ff9b::7f00:1]:PORT/ok", "address 64:ff9b::7f00:1 refused (loopback"},
        {"http://2130706433:PORT/ok", "address 127.0.0.1 refused (loopback"},
        {"http://0x7f.1:PORT/ok", "address 127.0.0.1 refused (loopback"},
        {"HTTP://127.1:PORT/ok", "address 127.0.0.1 refused (loopback"},
        {"http://127.0.0.1:PORT@127.0.0.1:PORT/ok", "address 127.0.0.1 refused (loopback"},
        {"http://10.0.0.1/", "address 10.0.0.1 refused (private"},
        {"http://172.16.0.1/", "address 172.16.0.1 refused (private"},
        {"http://192.168.1.1/", "address 192.168.1.1 refused (private"},
        {"http://100.64.0.1/", "address 100.64.0.1 refused (shared address space"},
        {"http://[fe80::1]/", "address fe80::1 refused (link-local"},
        {"http://[fd00::1]/", "address fd00::1 refused (unique-local"},
        {"http://224.0.0.1/", "address 224.0.0.1 refused (multicast"},
        {"http://255.255.255.255/", "address 255.255.255.255 refused (broadcast"},
    };
    /* The first four alone: the review's repro, a name, a spelling, cloud metadata. */
    enum { NCASES = sizeof cases / sizeof cases[0], ALONE = 4 };
    for (size_t i = 0; i < ALONE; i++) {
        char src[512];
        snprintf(src, sizeof src, "return ferry.call('http.get', '%s').body", cases[i].url);
        attack(env, src, "call_error", cases[i].part, NULL);
    }
    /* All of them from one attack script, which returns what each call gave it. */
    char src[4096];
    int n = snprintf(src, sizeof src, "local urls = {");
    for (size_t i = 0; i < NCASES; i++)
        n += snprintf(src + n, sizeof src - (size_t)n, "'%s', ", cases[i].url);
    snprintf(src + n, sizeof src - (size_t)n,
             "}\nlocal out = {}\n"
             "for i, url in ipairs(urls) do\n"
             "  local ok, e = pcall(ferry.call, 'http.get', url)\n"
             "  out[i] = ok and ('reached: ' .. e.body) or (e.code .. ': ' .. e.message)\n"
             "end\n"
             "return table.unpack(out)");
    ferry_result r;
    attack(env, src, NULL, NULL, &r);
    assert_int_equal(r.result->n_values, NCASES);
    for (size_t i = 0; i < NCASES; i++) {
        char part[256];
        with_port(part, sizeof part, cases[i].part, env->port);
        const Ferry__Value *v = r.result->values[i];
        if (!is_call_error_with(v, part))
            fail_msg("%s: want call_error with '%s', got '%.*s'", cases[i].url, part,
                     (int)v->string.len, (const char *)v->string.data);
    }
    ferry_result_fini(&r);
    /* http.request too, and a caught refusal leaves the script nothing to read. */
    attack(env,
           "return ferry.call('http.request', {method = 'POST', url = 'http://127.0.0.1:PORT/echo',"
           " body = 'x'}).body",
           "call_error", "http.request: POST http://127.0.0.1:PORT/echo: address 127.0.0.1 refused",
           NULL);
    attack(env,
           "local ok, e = pcall(ferry.call, 'http.get', 'http://localhost:PORT/ok')\n"
           "return ok, e.code",
           NULL, NULL, &r);
    assert_false(r.result->values[0]->boolean);
    assert_cstring_value(r.result->values[1], "call_error");
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

/* The worker allows the server (127.0.0.1/32) only: a redirect from it elsewhere. */
static void test_redirect_to_refused_address(void **state)
{
    http_env *env = *state;
    ferry_result r;
    attack(env, "return ferry.call('http.get', 'http://127.0.0.1:PORT/redirect?n=1').body", NULL,
           NULL, &r);
    assert_cstring_value(r.result->values[0], "hello");
    ferry_result_fini(&r);
    /* 127.0.0.2 is loopback too on Linux, and not in the allowed 127.0.0.1/32. */
    attack(env,
           "return ferry.call('http.get', "
           "'http://127.0.0.1:PORT/to?url=http://127.0.0.2:PORT/ok').body",
           "call_error",
           "address 127.0.0.2 refused (loopback; see --http-allow) after a redirect to "
           "http://127.0.0.2:PORT/ok",
           NULL);
    attack(
        env,
        "return ferry.call('http.get', 'http://127.0.0.1:PORT/to?url=http://[::1]:PORT/ok').body",
        "call_error", "address ::1 refused (loopback", NULL);
    attack(env,
           "return ferry.call('http.get', 'http://127.0.0.1:PORT/to?url="
           "http://169.254.169.254/latest/meta-data/').body",
           "call_error", "address 169.254.169.254 refused (link-local", NULL);
    /* Two hops: allowed, allowed, then refused. */
    attack(env,
           "return ferry.call('http.get', 'http://127.0.0.1:PORT/to?url="
           "/to%3Furl%3Dhttp://10.0.0.1/').body",
           "call_error", "address 10.0.0.1 refused (private", NULL);
    attack(env,
           "return ferry.call('http.request', {method = 'POST', body = 'x',\n"
           "  url = 'http://127.0.0.1:PORT/to?url=http://192.168.0.1/'}).body",
           "call_error", "address 192.168.0.1 refused (private", NULL);
    /* Redirects to anything but http and https stay refused. */
    static const char *const schemes[] = {"file:///etc/passwd", "ftp://127.0.0.1:PORT/",
                                          "gopher://127.0.0.1:PORT/", "dict://127.0.0.1:PORT/",
                                          "telnet://127.0.0.1:PORT/"};
    enum { NSCHEMES = sizeof schemes / sizeof schemes[0] };
    char src[2048];
    int n = snprintf(src, sizeof src, "local to = {");
    for (size_t i = 0; i < NSCHEMES; i++)
        n += snprintf(src + n, sizeof src - (size_t)n, "'%s', ", schemes[i]);
    snprintf(
        src + n, sizeof src - (size_t)n,
        "}\nlocal out = {}\n"
        "for i, url in ipairs(to) do\n"
        "  local ok, e = pcall(ferry.call, 'http.get', 'http://127.0.0.1:PORT/to?url=' .. url)\n"
        "  out[i] = ok and ('reached: ' .. e.body) or (e.code .. ': ' .. e.message)\n"
        "end\n"
        "return table.unpack(out)");
    attack(env, src, NULL, NULL, &r);
    assert_int_equal(r.result->n_values, NSCHEMES);
    for (size_t i = 0; i < NSCHEMES; i++) {
        const Ferry__Value *v = r.result->values[i];
        char want[64];
        snprintf(want, sizeof want, "Protocol \"%.*s\" not supported",
                 (int)(strchr(schemes[i], ':') - schemes[i]), schemes[i]);
        if (!is_call_error_with(v, want))
            fail_msg("redirect to %s: want call_error with '%s', got '%.*s'", schemes[i], want,
                     (int)v->string.len, (const char *)v->string.data);
    }
    ferry_result_fini(&r);
    stack_passed(&env->stack);
}

/* The worker's environment names the server as its proxy for everything: a proxy
 * would connect on the script's behalf, so the worker must not use it. */
static void test_proxy_from_the_environment_is_not_used(void **state)
{
    http_env *env = *state;
    ferry_result r;
    /* FERRY_HTTP_ALLOW allows the server, reached directly. */
    attack(env, "return ferry.call('http.get', 'http://127.0.0.1:PORT/ok').body", NULL, NULL, &r);
    assert_cstring_value(r.result->values[0], "hello");
    ferry_result_fini(&r);
    /* Through the proxy these would come back as the server's "hello". */
    attack(env, "return ferry.call('http.get', 'http://10.1.2.3/ok').body", "call_error",
           "address 10.1.2.3 refused (private", NULL);
    attack(env, "return ferry.call('http.get', 'http://[::1]:PORT/ok').body", "call_error",
           "address ::1 refused (loopback", NULL);
    stack_passed(&env->stack);
}

/* A bad --http-allow entry (flag or environment) stops the worker at start, naming it. */
static void test_bad_allow_list_stops_the_worker(void **state)
{
    http_env *env = *state;
    static const struct {
        const char *flag, *envvar, *message;
    } cases[] = {
        {"127.0.0.1/32,10.0.0.0/33", NULL,
         "ferry-worker: --http-allow: bad entry '10.0.0.0/33' (prefix length over 32)"},
        {"10.1.0.0/8", NULL, "bad entry '10.1.0.0/8' (address has bits set past the prefix"},
        {NULL, "FERRY_HTTP_ALLOW=localhost",
         "ferry-worker: --http-allow: bad entry 'localhost' (not an IPv4 address)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[] = {FERRY_BIN_DIR "/ferry-worker", cases[i].flag ? "--http-allow" : NULL,
                              cases[i].flag, NULL};
        const char *wenv[] = {cases[i].envvar, NULL};
        char *out = NULL, *err = NULL;
        int64_t start = ferry_now_ms();
        int rc = stack_exec(&env->stack, argv, wenv, &out, &err, 5000);
        if (rc != 2 || !err || !strstr(err, cases[i].message))
            fail_msg("want exit 2 and '%s', got %d and '%s'", cases[i].message, rc, err ? err : "");
        assert_true(ferry_now_ms() - start < 5000);
        free(out);
        free(err);
    }
    stack_passed(&env->stack);
}

int main(void)
{
    /* No no_proxy here: the worker uses no proxy whatever its environment says
     * (test_proxy_from_the_environment_is_not_used). */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_status_headers_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_bodies_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirects_and_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_200_slow_requests_in_flight_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_lets_transfers_finish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_sigterm_cancels_transfers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_internal_addresses_refused, setup_default, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_to_refused_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_from_the_environment_is_not_used, setup_proxied,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bad_allow_list_stops_the_worker, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * broker_oom_test: the broker's tables when memory runs out. Every
 * allocation of registering a worker (and its functions), an engine, a call
 * and a script is made to fail in turn, the uthash tables' own included
 * (lib/ferry_hash.h: HASH_NONFATAL_OOM), for 300 entries each so that the
 * tables' bucket expansions fail too: the operation answers FERRY_ENOMEM,
 * the tables stay as they were, and the process lives on. Linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (tests/CMakeLists.txt);
 * under AddressSanitizer a leak or a double free on any failure path fails.
 */
#include "dispatch.h"
#include "scripts.h"

#include "ferry_codec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000
#define ENTRIES 300

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);

static long fail_in = -1; /* allocations left before one fails; -1: none fails */
static long failed;       /* allocations refused so far */

static int refuse(void)
{
    if (fail_in < 0)
        return 0;
    if (fail_in-- > 0)
        return 0;
    failed++;
    return 1;
}

void *__wrap_malloc(size_t n)
{
    return refuse() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    return refuse() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    return refuse() ? NULL : __real_realloc(p, n);
}

static void on_call_expired(broker_call *call, ferry_err reason, void *arg)
{
    (void)call, (void)reason, (void)arg;
}

static void on_script_expired(broker_script *script, ferry_err reason, void *arg)
{
    (void)script, (void)reason, (void)arg;
}

/*
 * Runs op with the 0th, 1st, 2nd... allocation failing until one run needs
 * no failure. Each failing run must return FERRY_ENOMEM and leave count()
 * as it was. Returns how many allocation points were tried.
 */
typedef ferry_err (*op_fn)(void *ctx, int i);
typedef size_t (*count_fn)(void *ctx);

static long every_failure(op_fn op, count_fn count, void *ctx, int i)
{
    for (long k = 0;; k++) {
        size_t before = count(ctx);
        failed = 0;
        fail_in = k;
        ferry_err err = op(ctx, i);
        fail_in = -1;
        if (!failed) {
            assert_int_equal(err, FERRY_OK);
            assert_int_equal(count(ctx), before + 1);
            return k;
        }
        if (err == FERRY_OK) /* the failure was absorbed (a cache that could not grow) */
            return k;
        assert_int_equal(err, FERRY_ENOMEM);
        assert_int_equal(count(ctx), before);
    }
}

/* ---- workers and calls ---- */

typedef struct {
    ferry_timers timers;
    broker_dispatch d;
} dispatch_fx;

static ferry_err add_worker(void *ctx, int i)
{
    dispatch_fx *fx = ctx;
    char rid[32], fn[32];
    snprintf(rid, sizeof rid, "worker-%d", i);
    snprintf(fn, sizeof fn, "fn-%d", i);
    Ferry__FunctionSpec spec = FERRY__FUNCTION_SPEC__INIT;
    spec.name = fn;
    Ferry__FunctionSpec *specs[] = {&spec};
    Ferry__Ready r = FERRY__READY__INIT;
    r.functions = specs;
    r.n_functions = 1;
    r.credit = 1;
    broker_worker *w = NULL;
    return broker_dispatch_ready(&fx->d, rid, strlen(rid), &r, T0, &w);
}

static size_t workers(void *ctx)
{
    return ((dispatch_fx *)ctx)->d.nworkers;
}

static ferry_err add_call(void *ctx, int i)
{
    dispatch_fx *fx = ctx;
    char eid[32];
    snprintf(eid, sizeof eid, "engine-%d", i); /* a new engine id each time: interned */
    broker_call *call = NULL;
    ferry_err err = broker_dispatch_call_new(&fx->d, eid, strlen(eid), (uint64_t)i + 1, "fn-0", 4,
                                             1000, T0, &call);
    if (err)
        return err;
    err = broker_dispatch_enqueue(&fx->d, call, NULL, 0);
    if (err)
        broker_dispatch_call_free(&fx->d, call);
    return err;
}

static size_t calls_queued(void *ctx)
{
    return ((dispatch_fx *)ctx)->d.queued;
}

static void test_dispatch_tables_survive_every_failure(void **state)
{
    (void)state;
    dispatch_fx fx;
    ferry_timers_init(&fx.timers);
    broker_dispatch_limits lim = {.queue_max = 100000,
                                  .call_timeout_ms = 30000,
                                  .unserved_wait_ms = 1000,
                                  .grace_ms = 5000};
    broker_dispatch_init(&fx.d, &fx.timers, &lim, on_call_expired, NULL);
    long points = 0;
    for (int i = 0; i < ENTRIES; i++)
        points += every_failure(add_worker, workers, &fx, i);
    assert_int_equal(fx.d.nworkers, ENTRIES);
    for (int i = 0; i < ENTRIES; i++)
        points += every_failure(add_call, calls_queued, &fx, i);
    assert_int_equal(fx.d.queued, ENTRIES);
    printf("# %d workers and %d calls: %ld allocation failures answered ENOMEM\n", ENTRIES,
           ENTRIES, points);
    broker_dispatch_fini(&fx.d);
    ferry_timers_fini(&fx.timers);
}

/* ---- engines and scripts ---- */

typedef struct {
    ferry_timers timers;
    broker_scripts s;
    Ferry__Envelope *env; /* the next script's Submit */
} scripts_fx;

static ferry_err add_engine(void *ctx, int i)
{
    scripts_fx *fx = ctx;
    char rid[32];
    snprintf(rid, sizeof rid, "engine-%d", i);
    broker_engine *e = NULL;
    return broker_scripts_hello(&fx->s, rid, strlen(rid), 4, 0, T0, &e);
}

static size_t engines(void *ctx)
{
    return ((scripts_fx *)ctx)->s.nengines;
}

/* A decoded envelope holding a Submit, as the broker gets it from a client. */
static Ferry__Envelope *submit_env(uint64_t request_id)
{
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.request_id = request_id;
    sub.source.data = (uint8_t *)"return 1";
    sub.source.len = 8;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    uint8_t buf[256];
    size_t len = ferry__envelope__pack(&env, buf);
    Ferry__Envelope *out = NULL;
    assert_int_equal(ferry_envelope_decode(buf, len, &out), FERRY_OK);
    return out;
}

static ferry_err add_script(void *ctx, int i)
{
    scripts_fx *fx = ctx;
    broker_script *script = NULL;
    /* The Submit's envelope was made before the failures began: taken over
     * on FERRY_OK only, it is used again by the next try. */
    ferry_err err =
        broker_scripts_new(&fx->s, "client", 6, (uint64_t)i, 1000, fx->env, T0, &script);
    if (err)
        return err;
    fx->env = NULL;
    err = broker_scripts_enqueue(&fx->s, script, 0);
    if (err) {
        fx->env = script->submit; /* handed back, for the next try */
        script->submit = NULL;
        broker_scripts_free(&fx->s, script);
    }
    return err;
}

static size_t scripts_queued(void *ctx)
{
    return ((scripts_fx *)ctx)->s.queued;
}

static void test_script_tables_survive_every_failure(void **state)
{
    (void)state;
    scripts_fx fx;
    ferry_timers_init(&fx.timers);
    broker_scripts_limits lim = {.queue_max = 100000, .timeout_ms = 30000, .grace_ms = 5000};
    broker_scripts_init(&fx.s, &fx.timers, &lim, on_script_expired, NULL);
    long points = 0;
    for (int i = 0; i < ENTRIES; i++)
        points += every_failure(add_engine, engines, &fx, i);
    assert_int_equal(fx.s.nengines, ENTRIES);
    for (int i = 0; i < ENTRIES; i++) {
        fx.env = submit_env((uint64_t)i);
        points += every_failure(add_script, scripts_queued, &fx, i);
        assert_null(fx.env);
    }
    assert_int_equal(fx.s.queued, ENTRIES);
    printf("# %d engines and %d scripts: %ld allocation failures answered ENOMEM\n", ENTRIES,
           ENTRIES, points);
    broker_scripts_fini(&fx.s);
    ferry_timers_fini(&fx.timers);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_tables_survive_every_failure),
        cmocka_unit_test(test_script_tables_survive_every_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

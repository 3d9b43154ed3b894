/*
 * worker_fixture: what the worker unit tests share. An offline worker
 * (worker_new_offline) takes Command frames through worker_dispatch_frame
 * (feed) and hands what it sends to the test's sink, which keeps decoded
 * copies in a capture (capture_push); run_until runs the worker's real loop
 * until enough replies came, under a guard timer.
 */
#ifndef WORKER_FIXTURE_H
#define WORKER_FIXTURE_H

#include "worker_internal.h"

#include "ferry_wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    Ferry__Envelope **msgs; /* decoded copies of what the worker sent */
    size_t n, cap;
    size_t replies; /* replies seen by the sink */
    size_t stop_at; /* stop the loop once this many replies arrived (0: never) */
    int keep;       /* for sinks that keep copies only when asked */
    size_t bad;     /* for sinks that count unexpected replies */
} capture;

/* Appends a decoded copy of env (packed and decoded again, as the broker would). */
static inline void capture_push(capture *c, const Ferry__Envelope *env)
{
    size_t len = ferry__envelope__get_packed_size(env);
    uint8_t *buf = malloc(len ? len : 1);
    assert_non_null(buf);
    ferry__envelope__pack(env, buf);
    Ferry__Envelope *copy = NULL;
    assert_int_equal(ferry_envelope_decode(buf, len, &copy), FERRY_OK);
    free(buf);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->msgs = realloc(c->msgs, c->cap * sizeof *c->msgs);
        assert_non_null(c->msgs);
    }
    c->msgs[c->n++] = copy;
}

static inline void capture_fini(capture *c)
{
    for (size_t i = 0; i < c->n; i++)
        ferry_envelope_free(c->msgs[i]);
    free(c->msgs);
    memset(c, 0, sizeof *c);
}

/* Hands w a Command frame as the broker would send it. */
static inline void feed(ferry_worker *w, const char *engine, uint64_t call_id, const char *fn,
                        Ferry__Value **args, size_t n, uint32_t timeout_ms)
{
    Ferry__Command cmd = FERRY__COMMAND__INIT;
    cmd.engine_id.data = (uint8_t *)engine;
    cmd.engine_id.len = strlen(engine);
    cmd.call_id = call_id;
    cmd.function = (char *)fn;
    cmd.args = args;
    cmd.n_args = n;
    cmd.timeout_ms = timeout_ms;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
    env.command = &cmd;
    size_t len = ferry__envelope__get_packed_size(&env);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    ferry__envelope__pack(&env, buf);
    worker_dispatch_frame(w, buf, len);
    free(buf);
}

static int fixture_guard_fired;

static inline void fixture_on_guard(ferry_timer *t, void *arg)
{
    (void)t;
    fixture_guard_fired = 1;
    ferry_worker_stop(arg);
}

/* Runs w until c has seen at least want replies (the sink stops the loop at
 * stop_at; timers due in the same turn of a late-woken loop may add more);
 * fails after guard_ms. */
static inline void run_until(ferry_worker *w, capture *c, size_t want, int guard_ms)
{
    if (c->replies >= want)
        return;
    ferry_timer guard;
    ferry_timer_init(&guard, fixture_on_guard, w);
    fixture_guard_fired = 0;
    c->stop_at = want;
    assert_int_equal(ferry_worker_timer_start(w, &guard, guard_ms), FERRY_OK);
    assert_int_equal(ferry_worker_run(w), FERRY_OK);
    ferry_worker_timer_stop(w, &guard);
    assert_false(fixture_guard_fired);
    assert_true(c->replies >= want);
}

#endif

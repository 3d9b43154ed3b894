/*
 * worker_call: one call, from its Command to its one Reply.
 *
 * A call lives from its Command until it is answered and no library callback
 * of it is on the stack. A call its handler answers at once costs a reused
 * record, the handler and the Reply: nothing else. One that outlives its
 * handler's first run (or is queued) joins the worker's list of live calls
 * (for shutdown) and gets its deadline then, in a lane (worker_internal.h):
 * calls with the same timeout share one timer, so starting and answering a
 * call costs no timer heap operation. Its ferry_call_after timer, and the
 * deadline of a call no lane takes, are embedded in it (no allocation per
 * timer, no scan of calls).
 *
 * The states (worker_internal.h) keep the "exactly one Reply" promise:
 * QUEUED and RUNNING calls owe the engine a Reply; the deadline sends
 * `timeout` and moves a running call to TIMED_OUT, where the handler's
 * answer still frees the call but sends nothing. The free waits while a
 * handler, continuation or cancel callback of the call runs (depth), so those
 * may answer and still look at the call, and a second answer is caught.
 */
#include "worker_internal.h"
#include "worker_metrics.h"

#include "ferry_clock.h"
#include "ferry_log.h"
#include "ferry_utf8.h"
#include "ferry_wire.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

static void on_after(ferry_timer *timer, void *arg);

#define SPARE_CALLS_MAX 1024 /* freed call records kept for reuse */

/* A call record as a spare one is (worker_internal.h): a spare one, else a new one
 * (NULL when memory runs out). */
static ferry_call *call_alloc(ferry_worker *w)
{
    ferry_call *call = w->spare_calls;
    if (call) {
        w->spare_calls = call->next;
        w->nspare_calls--;
        return call;
    }
    call = malloc(sizeof *call);
    if (!call)
        return NULL;
    call->worker = w;
    call->depth = 0;
    call->listed = 0;
    call->lane = NULL;
    call->deadline.index = FERRY_TIMER_IDLE;
    call->after.index = FERRY_TIMER_IDLE;
    return call;
}

/* Frees a record call_alloc gave, left as a spare one is. */
static void call_release(ferry_worker *w, ferry_call *call)
{
    assert(call->depth == 0 && !call->listed && !call->lane);
    assert(!ferry_timer_active(&call->deadline) && !ferry_timer_active(&call->after));
    if (w->nspare_calls < SPARE_CALLS_MAX) {
        call->next = w->spare_calls;
        w->spare_calls = call;
        w->nspare_calls++;
    } else {
        free(call);
    }
}

void worker_call_free_spares(ferry_worker *w)
{
    while (w->spare_calls) {
        ferry_call *call = w->spare_calls;
        w->spare_calls = call->next;
        free(call);
    }
    w->nspare_calls = 0;
}

/* ---- deadlines ------------------------------------------------------------------ */

static void expire(ferry_call *call);

static void on_deadline(ferry_timer *timer, void *arg)
{
    (void)timer;
    expire(arg);
}

/* The lane's timer: times out the calls at its head that are due by the time it was
 * armed for (the loop's clock reached it), then re-arms at the next head. */
static void on_lane(ferry_timer *timer, void *arg)
{
    worker_lane *lane = arg;
    ferry_timers *timers = &lane->worker->loop.timers;
    int64_t due = timer->when_ms;
    /* Parked first, while the heap still has the slot this timer just left: then
     * no start below can fail for want of memory (a re-arm frees its slot first). */
    (void)ferry_timer_start(timers, timer, INT64_MAX);
    ferry_call *call;
    while ((call = lane->head) && call->deadline_ms <= due) {
        DL_DELETE2(lane->head, call, dprev, dnext);
        call->lane = NULL;
        expire(call); /* may answer or free other calls of the lane: the head is read again */
    }
    if (lane->head)
        (void)ferry_timer_start(timers, timer, lane->head->deadline_ms);
    else
        ferry_timer_stop(timers, timer);
}

void worker_call_lanes_init(ferry_worker *w)
{
    for (int i = 0; i < WORKER_LANES; i++) {
        w->lanes[i].head = NULL;
        w->lanes[i].last_ms = 0;
        w->lanes[i].last_timeout_ms = 0;
        w->lanes[i].worker = w;
        ferry_timer_init(&w->lanes[i].timer, on_lane, &w->lanes[i]);
    }
}

void worker_call_lanes_fini(ferry_worker *w)
{
    for (int i = 0; i < WORKER_LANES; i++) {
        assert(!w->lanes[i].head);
        ferry_timer_stop(&w->loop.timers, &w->lanes[i].timer);
    }
}

/* The lane for a deadline: the one whose last deadline is the latest not after it
 * (calls of one timeout keep to one lane), else an empty one; NULL when none fits. */
static worker_lane *lane_for(ferry_worker *w, int64_t deadline_ms, uint32_t timeout_ms)
{
    /* The usual case, answered without a search: the same timeout as the last call. */
    worker_lane *last = w->last_lane;
    if (last && last->last_timeout_ms == timeout_ms && last->last_ms <= deadline_ms)
        return last;
    worker_lane *fit = NULL, *empty = NULL;
    for (int i = 0; i < WORKER_LANES; i++) {
        worker_lane *lane = &w->lanes[i];
        if (!lane->head) {
            if (!empty)
                empty = lane;
        } else if (lane->last_ms <= deadline_ms && (!fit || lane->last_ms > fit->last_ms)) {
            fit = lane;
        }
    }
    return fit ? fit : empty;
}

/* Arms the deadline of call (deadline_ms set). FERRY_ENOMEM when the timer heap
 * cannot grow. */
static ferry_err deadline_start(ferry_worker *w, ferry_call *call)
{
    if (w->fail_arms) {
        w->fail_arms--;
        return FERRY_ENOMEM;
    }
    worker_lane *lane = lane_for(w, call->deadline_ms, call->cmd->timeout_ms);
    if (!lane) {
        ferry_timer_init(&call->deadline, on_deadline, call);
        return ferry_timer_start(&w->loop.timers, &call->deadline, call->deadline_ms);
    }
    /* A non-empty lane's timer is due no later than its head, hence than this call;
     * an empty one's may be idle, or left armed later than this call. */
    if (!ferry_timer_active(&lane->timer) || lane->timer.when_ms > call->deadline_ms) {
        ferry_err err = ferry_timer_start(&w->loop.timers, &lane->timer, call->deadline_ms);
        if (err != FERRY_OK)
            return err;
    }
    DL_APPEND2(lane->head, call, dprev, dnext);
    lane->last_ms = call->deadline_ms;
    lane->last_timeout_ms = call->cmd->timeout_ms;
    w->last_lane = lane;
    call->lane = lane;
    return FERRY_OK;
}

/* Disarms the deadline of call; a no-op when it has none (or none yet). */
static inline void deadline_stop(ferry_call *call)
{
    if (call->lane) {
        /* The lane's timer stays: it fires early once, or serves the calls behind. */
        DL_DELETE2(call->lane->head, call, dprev, dnext);
        call->lane = NULL;
    } else if (ferry_timer_active(&call->deadline)) {
        ferry_timer_stop(&call->worker->loop.timers, &call->deadline);
    }
}

static inline void after_stop(ferry_call *call)
{
    if (ferry_timer_active(&call->after))
        ferry_timer_stop(&call->worker->loop.timers, &call->after);
}

/* ---- lifecycle ------------------------------------------------------------------ */

/* Frees call; whoever ended it disarmed its deadline (answer, expiry, cancel). */
static void call_free(ferry_call *call)
{
    ferry_worker *w = call->worker;
    after_stop(call); /* a cancel callback may have armed it */
    if (call->listed) {
        DL_DELETE(w->calls, call);
        call->listed = 0;
    }
    ferry_envelope_free(call->env);
    call_release(w, call);
}

static void enter(ferry_call *call)
{
    call->depth++;
}

/* Ends a library callback of call; frees it when that was the last one and it was answered. */
static void leave(ferry_call *call)
{
    assert(call->depth > 0);
    if (--call->depth == 0 && call->answered)
        call_free(call);
}

/* A slot of fn came free: start queued calls from the loop, not from this stack
 * (an answer inside a handler would otherwise start the next handler in it). */
static void slot_freed(worker_function *fn)
{
    assert(fn->running > 0);
    fn->running--;
    if (fn->waiting && !ferry_timer_active(&fn->pump) &&
        ferry_loop_timer(&fn->worker->loop, &fn->pump, 0) != FERRY_OK)
        ferry_error("pump_failed", "function=%s error=out_of_memory", fn->name);
}

/* The deadline_ms of call, set now unless it was already (timeout_ms > 0). */
static int64_t deadline_of(ferry_call *call)
{
    if (!call->deadline_ms)
        call->deadline_ms = ferry_now_ms() + call->cmd->timeout_ms;
    return call->deadline_ms;
}

static void cut_short(ferry_call *call, ferry_err reason);

/* Lists call, which outlived its handler's first run, and arms its deadline. Should
 * the timer heap not grow, the call is answered `out_of_memory` at once, as on a
 * timeout (its handler's answer will be discarded): a call without a deadline could
 * keep a slot for ever. */
static void settle(ferry_worker *w, ferry_call *call)
{
    DL_APPEND(w->calls, call);
    call->listed = 1;
    if (call->cmd->timeout_ms == 0)
        return;
    deadline_of(call);
    if (deadline_start(w, call) != FERRY_OK)
        cut_short(call, FERRY_ENOMEM);
}

static void run(ferry_worker *w, ferry_call *call)
{
    worker_function *fn = call->fn;
    call->state = CALL_RUNNING;
    fn->running++;
    worker_metrics_started(w, call);
    enter(call);
    if (call->listed) {
        fn->handler(call, fn->udata);
        leave(call);
        return;
    }
    ferry_call *outer = w->starting; /* NULL but for a handler that runs the loop */
    w->starting = call;
    fn->handler(call, fn->udata);
    w->starting = outer;
    /* As leave(), and what a call that outlives its handler needs. */
    assert(call->depth == 1);
    call->depth = 0;
    if (call->answered)
        call_free(call);
    else
        settle(w, call);
}

void worker_call_start(ferry_worker *w, worker_function *fn, Ferry__Envelope *env)
{
    const Ferry__Command *cmd = env->command;
    ferry_call *call = call_alloc(w);
    if (!call) {
        worker_send_error(w, cmd->engine_id, cmd->call_id, ferry_err_code(FERRY_ENOMEM),
                          "worker %s is out of memory", w->id);
        ferry_envelope_free(env);
        return;
    }
    /* A reused record is not zeroed: these are the fields something may read before
     * anything else sets them (links, after_fn, cancel_arg are set with what reads
     * them); the rest are as every call leaves them (worker_internal.h). */
    call->fn = fn;
    call->env = env;
    call->cmd = cmd;
    call->answered = 0;
    call->deadline_ms = 0;
    call->cancel_fn = NULL;
    call->data = NULL;
    call->link = w->in;
    if (fn->max_concurrency && fn->running >= fn->max_concurrency) {
        /* Its deadline runs while it waits. */
        call->state = CALL_QUEUED;
        if (cmd->timeout_ms > 0) {
            deadline_of(call);
            if (deadline_start(w, call) != FERRY_OK) {
                worker_send_error(w, cmd->engine_id, cmd->call_id, ferry_err_code(FERRY_ENOMEM),
                                  "worker %s is out of memory", w->id);
                ferry_envelope_free(env);
                call_release(w, call);
                return;
            }
        }
        DL_APPEND(w->calls, call);
        call->listed = 1;
        w->stats.received++;
        worker_in_flight(w, call, 1);
        DL_APPEND2(fn->waiting, call, qprev, qnext);
        w->stats.queued++;
        return;
    }
    w->stats.received++;
    worker_in_flight(w, call, 1);
    run(w, call);
}

void worker_call_pump(ferry_timer *timer, void *arg)
{
    (void)timer;
    worker_function *fn = arg;
    ferry_worker *w = fn->worker;
    while (fn->waiting && (!fn->max_concurrency || fn->running < fn->max_concurrency)) {
        ferry_call *call = fn->waiting;
        DL_DELETE2(fn->waiting, call, qprev, qnext);
        w->stats.queued--;
        run(w, call);
    }
}

/* The worker answers call itself, for its handler: `timeout` when its deadline passed
 * (it was disarmed), `out_of_memory` when it could not be armed. A running call
 * then waits for its handler's answer, which is discarded. */
static void cut_short(ferry_call *call, ferry_err reason)
{
    ferry_worker *w = call->worker;
    assert(call->state == CALL_QUEUED || call->state == CALL_RUNNING);
    assert(!call->lane && !ferry_timer_active(&call->deadline));
    worker_in_flight(w, call, -1);
    worker_metrics_cut_short(w, call, reason);
    if (reason == FERRY_ETIMEOUT) {
        w->stats.timed_out++;
        w->out = call->link;
        worker_send_error(w, call->cmd->engine_id, call->cmd->call_id, ferry_err_code(reason),
                          call->state == CALL_QUEUED
                              ? "'%s' did not get a slot within %u ms at %s (max_concurrency)"
                              : "'%s' did not answer within %u ms at %s",
                          call->fn->name, call->cmd->timeout_ms, w->id);
        ferry_debug("call_timeout", "function=%s call_id=%llu queued=%d", call->fn->name,
                    (unsigned long long)call->cmd->call_id, call->state == CALL_QUEUED);
    } else {
        w->out = call->link;
        worker_send_error(w, call->cmd->engine_id, call->cmd->call_id, ferry_err_code(reason),
                          "worker %s is out of memory (the deadline of '%s')", w->id,
                          call->fn->name);
        ferry_error("deadline_failed", "function=%s call_id=%llu error=%s", call->fn->name,
                    (unsigned long long)call->cmd->call_id, ferry_err_code(reason));
    }
    worker_call_done(w);
    if (call->state == CALL_QUEUED) {
        /* The handler never saw it: nobody else holds the pointer. */
        DL_DELETE2(call->fn->waiting, call, qprev, qnext);
        w->stats.queued--;
        call_free(call);
        return;
    }
    call->state = CALL_TIMED_OUT;
    w->stats.zombies++;
    if (call->cancel_fn) {
        enter(call);
        call->cancel_fn(call, reason, call->cancel_arg);
        leave(call); /* may free call: nothing after this */
    }
}

static void expire(ferry_call *call)
{
    cut_short(call, FERRY_ETIMEOUT);
}

static void on_after(ferry_timer *timer, void *arg)
{
    (void)timer;
    ferry_call *call = arg;
    assert(!call->answered);
    enter(call);
    call->after_fn(call, call->after_arg);
    leave(call);
}

void worker_call_cancel_all(ferry_worker *w)
{
    assert(!w->starting && "ferry_worker_destroy called from a handler");
    /* Each round removes the head at least; a cancel callback may answer others. */
    while (w->calls) {
        ferry_call *call = w->calls;
        assert(call->depth == 0 && "ferry_worker_destroy called from a callback of a call");
        if (call->state == CALL_QUEUED) {
            DL_DELETE2(call->fn->waiting, call, qprev, qnext);
            w->stats.queued--;
            worker_in_flight(w, call, -1);
            deadline_stop(call);
            call_free(call);
            continue;
        }
        if (call->state == CALL_RUNNING)
            worker_in_flight(w, call, -1);
        else if (call->state == CALL_TIMED_OUT)
            w->stats.zombies--;
        call->state = CALL_CANCELLED;
        deadline_stop(call);
        after_stop(call);
        enter(call);
        if (call->cancel_fn)
            call->cancel_fn(call, FERRY_EWORKER_LOST, call->cancel_arg);
        if (!call->answered) {
            /* Freed unanswered: the function slot goes with it. */
            call->answered = 1;
            call->fn->running--;
        }
        leave(call);
    }
}

/* ---- answers ------------------------------------------------------------------ */

/* The one answer: error_code NULL for values. Takes ownership of values when
 * owned is set; otherwise they are borrowed (from the call's own Command). */
static ferry_err answer_values(ferry_call *call, Ferry__Value **values, size_t n,
                               const char *error_code, const char *message, int owned)
{
    ferry_worker *w = call->worker;
    if (call->answered) {
        ferry_error("double_answer", "function=%s call_id=%llu", call->fn->name,
                    (unsigned long long)call->cmd->call_id);
        if (owned)
            ferry_values_free(values, n);
        return FERRY_EUSAGE;
    }
    assert(call->state != CALL_QUEUED);
    call->answered = 1;
    deadline_stop(call);
    after_stop(call);
    ferry_err err;
    switch (call->state) {
    case CALL_RUNNING: {
        char oom[128];
        /* Borrowed values come from a decoded Command: never NULL. */
        for (size_t i = 0; owned && i < n && !error_code; i++) {
            if (!values[i]) {
                snprintf(oom, sizeof oom, "'%s' ran out of memory building its result",
                         call->fn->name);
                error_code = ferry_err_code(FERRY_ENOMEM);
                message = oom;
            }
        }
        worker_in_flight(w, call, -1);
        worker_metrics_answered(w, call, error_code);
        w->out = call->link;
        err = worker_send_reply(w, call->cmd->engine_id, call->cmd->call_id, values, n, error_code,
                                message);
        worker_call_done(w);
        break;
    }
    case CALL_TIMED_OUT:
        w->stats.zombies--;
        w->stats.late++;
        err = FERRY_ETIMEOUT;
        break;
    default:
        err = FERRY_EWORKER_LOST;
        break;
    }
    if (owned)
        ferry_values_free(values, n);
    if (call->state != CALL_CANCELLED)
        slot_freed(call->fn);
    else
        call->fn->running--;
    if (call->depth == 0)
        call_free(call);
    return err;
}

static ferry_err answer(ferry_call *call, Ferry__Value **values, size_t n, const char *error_code,
                        const char *message)
{
    return answer_values(call, values, n, error_code, message, 1);
}

ferry_err worker_call_return_args(ferry_call *call)
{
    assert(call);
    /* The Command (call->env) is freed with the call, after answer_values sent
     * the Reply: the borrowed values outlive their use. */
    return answer_values(call, call->cmd->args, call->cmd->n_args, NULL, NULL, 0);
}

ferry_err ferry_call_return(ferry_call *call, Ferry__Value **values, size_t n)
{
    assert(call && (values || n == 0));
    return answer(call, values, n, NULL, NULL);
}

ferry_err ferry_call_return_values(ferry_call *call, size_t n, ...)
{
    assert(call);
    Ferry__Value **values = n ? malloc(n * sizeof *values) : NULL;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        Ferry__Value *v = va_arg(ap, Ferry__Value *);
        if (values)
            values[i] = v;
        else
            ferry_value_free(v);
    }
    va_end(ap);
    if (n && !values)
        return ferry_call_fail(call, FERRY_ENOMEM, "'%s' ran out of memory building its result",
                               call->fn->name);
    return answer(call, values, n, NULL, NULL);
}

static ferry_err vfail(ferry_call *call, const char *code, const char *fmt, va_list ap)
{
    char message[1024];
    vsnprintf(message, sizeof message, fmt, ap);
    ferry_utf8_scrub(message, strlen(message));
    return answer(call, NULL, 0, code, message);
}

ferry_err ferry_call_fail(ferry_call *call, ferry_err code, const char *fmt, ...)
{
    assert(call && code != FERRY_OK);
    va_list ap;
    va_start(ap, fmt);
    ferry_err err = vfail(call, ferry_err_code(code), fmt, ap);
    va_end(ap);
    return err;
}

ferry_err ferry_call_fail_code(ferry_call *call, const char *code, const char *fmt, ...)
{
    assert(call && code && *code);
    va_list ap;
    va_start(ap, fmt);
    ferry_err err = vfail(call, code, fmt, ap);
    va_end(ap);
    return err;
}

ferry_err ferry_call_fail_arg(ferry_call *call, size_t i, const char *expected)
{
    const Ferry__Value *v = ferry_call_arg(call, i);
    return ferry_call_fail(call, FERRY_EBADARG, "bad argument #%zu to '%s' (%s expected, got %s)",
                           i + 1, call->fn->name, expected, v ? ferry_value_kind(v) : "no value");
}

/* ---- continuation and cancellation ------------------------------------------------ */

ferry_err ferry_call_after(ferry_call *call, int64_t ms, ferry_handler fn, void *arg)
{
    assert(call && fn);
    if (call->answered)
        return FERRY_EUSAGE;
    call->after_fn = fn;
    call->after_arg = arg;
    if (!ferry_timer_active(&call->after))
        ferry_timer_init(&call->after, on_after, call);
    return ferry_loop_timer(&call->worker->loop, &call->after, ms < 0 ? 0 : ms);
}

void ferry_call_after_stop(ferry_call *call)
{
    ferry_timer_stop(&call->worker->loop.timers, &call->after);
}

void ferry_call_on_cancel(ferry_call *call, ferry_cancel_fn fn, void *arg)
{
    call->cancel_fn = fn;
    call->cancel_arg = arg;
}

/* ---- accessors ------------------------------------------------------------------ */

const char *ferry_call_function(const ferry_call *call)
{
    return call->fn->name;
}

uint64_t ferry_call_id(const ferry_call *call)
{
    return call->cmd->call_id;
}

ferry_worker *ferry_call_worker(const ferry_call *call)
{
    return call->worker;
}

int64_t ferry_call_remaining_ms(const ferry_call *call)
{
    if (call->cmd->timeout_ms == 0)
        return -1;
    int64_t now = ferry_now_ms();
    /* Set on first use while the handler runs (worker_internal.h): call is one of ours,
     * not a const object, and the deadline armed later is this one. */
    if (!call->deadline_ms)
        ((ferry_call *)call)->deadline_ms = now + call->cmd->timeout_ms;
    int64_t left = call->deadline_ms - now;
    return left > 0 ? left : 0;
}

int ferry_call_timed_out(const ferry_call *call)
{
    return call->state == CALL_TIMED_OUT;
}

void ferry_call_set_data(ferry_call *call, void *data)
{
    call->data = data;
}

void *ferry_call_data(const ferry_call *call)
{
    return call->data;
}

size_t ferry_call_nargs(const ferry_call *call)
{
    return call->cmd->n_args;
}

const Ferry__Value *ferry_call_arg(const ferry_call *call, size_t i)
{
    return i < call->cmd->n_args ? call->cmd->args[i] : NULL;
}

static Ferry__Value__KindCase kind_of(const Ferry__Value *v)
{
    return v ? v->kind_case : FERRY__VALUE__KIND__NOT_SET;
}

ferry_err ferry_call_arg_int(const ferry_call *call, size_t i, int64_t *out)
{
    const Ferry__Value *v = ferry_call_arg(call, i);
    switch (kind_of(v)) {
    case FERRY__VALUE__KIND_INTEGER:
        *out = v->integer;
        return FERRY_OK;
    case FERRY__VALUE__KIND_NUMBER:
        /* As lua_tointegerx: a float converts only when it is a whole number in range. */
        if (v->number >= -9223372036854775808.0 && v->number < 9223372036854775808.0 &&
            v->number == floor(v->number)) {
            *out = (int64_t)v->number;
            return FERRY_OK;
        }
        return FERRY_EBADARG;
    default:
        return FERRY_EBADARG;
    }
}

ferry_err ferry_call_arg_number(const ferry_call *call, size_t i, double *out)
{
    const Ferry__Value *v = ferry_call_arg(call, i);
    switch (kind_of(v)) {
    case FERRY__VALUE__KIND_INTEGER:
        *out = (double)v->integer;
        return FERRY_OK;
    case FERRY__VALUE__KIND_NUMBER:
        *out = v->number;
        return FERRY_OK;
    default:
        return FERRY_EBADARG;
    }
}

ferry_err ferry_call_arg_string(const ferry_call *call, size_t i, const char **data, size_t *len)
{
    const Ferry__Value *v = ferry_call_arg(call, i);
    if (kind_of(v) != FERRY__VALUE__KIND_STRING)
        return FERRY_EBADARG;
    *data = v->string.len ? (const char *)v->string.data : "";
    *len = v->string.len;
    return FERRY_OK;
}

ferry_err ferry_call_arg_bool(const ferry_call *call, size_t i, int *out)
{
    const Ferry__Value *v = ferry_call_arg(call, i);
    if (kind_of(v) != FERRY__VALUE__KIND_BOOLEAN)
        return FERRY_EBADARG;
    *out = v->boolean != 0;
    return FERRY_OK;
}

ferry_err ferry_call_arg_table(const ferry_call *call, size_t i, const Ferry__Value **out)
{
    const Ferry__Value *v = ferry_call_arg(call, i);
    /* A decoded table without its Table submessage is malformed: treat it as no table. */
    if (!v || v->kind_case != FERRY__VALUE__KIND_TABLE || !v->table)
        return FERRY_EBADARG;
    *out = v;
    return FERRY_OK;
}

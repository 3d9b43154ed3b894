/*
 * broker_dispatch_test: the broker's call routing tables without sockets:
 * picking workers by credit, round robin, queue bounds and order, worker
 * replacement and departure, call lookup, reply matching, and call timers
 * (queued calls' own, in-flight calls' per-worker backstop) driven by a
 * private timer heap with a made-up clock.
 */
#include "dispatch.h"

#include "utlist.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define T0 1000000

typedef struct {
    ferry_timers timers;
    broker_dispatch d;
    int expired;
    ferry_err last_reason;
    uint64_t last_call_id;
    uint64_t order[16]; /* call ids in the order they expired (the first 16) */
} fixture;

static void on_expired(broker_call *call, ferry_err reason, void *arg)
{
    fixture *fx = arg;
    if (fx->expired < 16)
        fx->order[fx->expired] = call->call_id;
    fx->expired++;
    fx->last_reason = reason;
    fx->last_call_id = call->call_id;
    assert_int_equal(call->state, BROKER_CALL_NEW);
}

static int setup_with(void **state, size_t queue_max)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    ferry_timers_init(&fx->timers);
    broker_dispatch_limits lim = {
        .queue_max = queue_max,
        .call_timeout_ms = 30000,
        .unserved_wait_ms = 1000,
        .grace_ms = 5000,
    };
    broker_dispatch_init(&fx->d, &fx->timers, &lim, on_expired, fx);
    *state = fx;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 100);
}

static int setup_small(void **state)
{
    return setup_with(state, 2);
}

static int teardown(void **state)
{
    fixture *fx = *state;
    broker_dispatch_fini(&fx->d);
    assert_int_equal(ferry_timers_count(&fx->timers), 0);
    ferry_timers_fini(&fx->timers);
    free(fx);
    return 0;
}

/* Registers worker id serving the NULL-terminated function list. */
static broker_worker *ready(fixture *fx, const char *id, uint32_t credit, const char *const *fns)
{
    Ferry__FunctionSpec specs[8];
    Ferry__FunctionSpec *ptrs[8];
    size_t n = 0;
    for (; fns && fns[n]; n++) {
        ferry__function_spec__init(&specs[n]);
        specs[n].name = (char *)fns[n];
        specs[n].idempotent = 1;
        ptrs[n] = &specs[n];
    }
    Ferry__Ready r = FERRY__READY__INIT;
    r.functions = ptrs;
    r.n_functions = n;
    r.credit = credit;
    broker_worker *w = NULL;
    assert_int_equal(broker_dispatch_ready(&fx->d, id, strlen(id), &r, T0, &w), FERRY_OK);
    assert_non_null(w);
    return w;
}

static broker_call *new_call(fixture *fx, const char *engine, uint64_t id, const char *fn,
                             uint32_t timeout_ms, int64_t now)
{
    broker_call *call = NULL;
    assert_int_equal(broker_dispatch_call_new(&fx->d, engine, strlen(engine), id, fn, strlen(fn),
                                              timeout_ms, now, &call),
                     FERRY_OK);
    assert_non_null(call);
    return call;
}

/* Picks a worker for call and marks it sent there, as the broker does. */
static broker_worker *dispatch(fixture *fx, broker_call *call)
{
    broker_worker *w = broker_dispatch_pick(&fx->d, call->fn);
    if (w)
        broker_dispatch_sent(&fx->d, call, w);
    return w;
}

static void test_pick_by_credit(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready(fx, "w-a", 2, fns);
    broker_worker *b = ready(fx, "w-b", 1, fns);
    assert_int_equal(fx->d.nworkers, 2);

    broker_worker *got[3];
    for (int i = 0; i < 3; i++)
        got[i] = dispatch(fx, new_call(fx, "e1", (uint64_t)i + 1, "echo", 0, T0));
    /* Round robin while both have credit, then whoever has some left. */
    assert_ptr_equal(got[0], a);
    assert_ptr_equal(got[1], b);
    assert_ptr_equal(got[2], a);
    assert_int_equal(broker_dispatch_worker_room(a), 0);
    assert_int_equal(broker_dispatch_worker_room(b), 0);

    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    assert_non_null(fn);
    assert_null(broker_dispatch_pick(&fx->d, fn));
    assert_int_equal(fn->in_flight, 3);
    assert_int_equal(fx->d.in_flight, 3);

    /* A reply returns one credit to its own worker only. */
    broker_call *call = broker_dispatch_find(&fx->d, "e1", 2, 2);
    assert_non_null(call);
    assert_ptr_equal(call->worker, b);
    broker_dispatch_complete(&fx->d, call, 0);
    broker_dispatch_call_free(&fx->d, call);
    assert_int_equal(broker_dispatch_worker_room(b), 1);
    assert_ptr_equal(broker_dispatch_pick(&fx->d, fn), b);
    assert_int_equal(fn->completed, 1);

    /* A worker that serves something else is never picked. */
    const char *other[] = {"sleep", NULL};
    ready(fx, "w-c", 10, other);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(broker_dispatch_pick(&fx->d, fn), b);
}

static void test_zero_credit_never_picked(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 0, fns);
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    assert_int_equal(fn->workers, 1);
    assert_null(broker_dispatch_pick(&fx->d, fn));
    assert_int_equal(broker_dispatch_worker_room(w), 0);
}

static void test_fairness(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w[3] = {ready(fx, "w-0", 100, fns), ready(fx, "w-1", 100, fns),
                           ready(fx, "w-2", 100, fns)};
    int count[3] = {0};
    for (uint64_t i = 0; i < 90; i++) {
        broker_worker *got = dispatch(fx, new_call(fx, "e1", i, "echo", 0, T0));
        for (int k = 0; k < 3; k++)
            if (got == w[k])
                count[k]++;
    }
    assert_int_equal(count[0], 30);
    assert_int_equal(count[1], 30);
    assert_int_equal(count[2], 30);

    /* One worker out of credit: the others share what comes next. */
    const char *busy_fns[] = {"echo", NULL};
    broker_worker *busy = ready(fx, "w-0", 30, busy_fns); /* 30 in flight: no room */
    assert_ptr_equal(busy, w[0]);
    assert_int_equal(broker_dispatch_worker_room(busy), 0);
    for (uint64_t i = 100; i < 110; i++)
        assert_ptr_not_equal(dispatch(fx, new_call(fx, "e1", i, "echo", 0, T0)), busy);
}

static void test_queue_bound_and_order(void **state)
{
    fixture *fx = *state; /* queue_max 2 */
    broker_call *c1 = new_call(fx, "e1", 1, "echo", 0, T0);
    broker_call *c2 = new_call(fx, "e1", 2, "echo", 0, T0);
    broker_call *c3 = new_call(fx, "e1", 3, "echo", 0, T0);
    assert_null(broker_dispatch_pick(&fx->d, c1->fn));
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c1, NULL, 0), FERRY_OK);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c2, NULL, 0), FERRY_OK);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c3, NULL, 0), FERRY_EOVERLOADED);
    assert_int_equal(c3->state, BROKER_CALL_NEW);
    broker_dispatch_count_failed(&fx->d, c3);
    broker_dispatch_call_free(&fx->d, c3);
    assert_int_equal(fx->d.queued, 2);
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    assert_int_equal(fn->queued, 2);
    assert_int_equal(fn->failed, 1);

    /* A worker appears: it takes the queue in arrival order, up to its credit. */
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 1, fns);
    broker_call *got = broker_dispatch_take(&fx->d, w);
    assert_ptr_equal(got, c1);
    assert_int_equal(got->state, BROKER_CALL_NEW);
    broker_dispatch_sent(&fx->d, got, w);
    assert_null(broker_dispatch_take(&fx->d, w)); /* no credit left */

    /* Put back at the head (a send that failed) even when the queue is full. */
    broker_call *c4 = new_call(fx, "e1", 4, "echo", 0, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c4, NULL, 0), FERRY_OK);
    broker_call *head = broker_dispatch_pop(&fx->d, fn);
    assert_ptr_equal(head, c2);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, head, NULL, 1), FERRY_OK);
    assert_ptr_equal(fn->queue, c2);
    assert_int_equal(fx->d.queued, 2);
}

/* Frames of size bytes filled with 'x'. */
static void frame_of(zmq_msg_t *m, size_t size)
{
    assert_int_equal(zmq_msg_init_size(m, size), 0);
    memset(zmq_msg_data(m), 'x', size);
}

/* --queue-bytes: queued Commands take their bytes from the budget and give them back. */
static void test_queue_bound_in_bytes(void **state)
{
    fixture *fx = *state;
    broker_budget budget = {.max = 10};
    fx->d.lim.bytes = &budget;
    zmq_msg_t f1, f2, f3;
    frame_of(&f1, 6);
    frame_of(&f2, 6);
    frame_of(&f3, 4);
    broker_call *c1 = new_call(fx, "e1", 1, "echo", 0, T0);
    broker_call *c2 = new_call(fx, "e1", 2, "echo", 0, T0);
    broker_call *c3 = new_call(fx, "e1", 3, "echo", 0, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c1, &f1, 0), FERRY_OK);
    assert_int_equal(budget.used, 6);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c2, &f2, 0), FERRY_EOVERLOADED);
    assert_int_equal(zmq_msg_size(&f2), 6); /* refused: still the caller's */
    assert_int_equal(budget.used, 6);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c3, &f3, 0), FERRY_OK);
    assert_int_equal(budget.used, 10);
    /* Taken off the queue: the bytes go back; put back at the head: taken again, even
     * past the bound. */
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    broker_call *head = broker_dispatch_pop(&fx->d, fn);
    assert_ptr_equal(head, c1);
    assert_int_equal(budget.used, 4);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c2, &f2, 0), FERRY_OK);
    assert_int_equal(budget.used, 10);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, head, &head->frame, 1), FERRY_OK);
    assert_int_equal(budget.used, 16);
    /* A queued call that expires gives its bytes back too. */
    ferry_timers_run(&fx->timers, T0 + 30000);
    assert_int_equal(fx->expired, 3);
    assert_int_equal(budget.used, 0);
    zmq_msg_close(&f1);
    zmq_msg_close(&f2);
    zmq_msg_close(&f3);
    fx->d.lim.bytes = NULL;
}

static void test_frame_moves_into_queue(void **state)
{
    fixture *fx = *state;
    broker_call *c = new_call(fx, "e1", 1, "echo", 0, T0);
    zmq_msg_t frame;
    assert_int_equal(zmq_msg_init_size(&frame, 5), 0);
    memcpy(zmq_msg_data(&frame), "hello", 5);
    assert_int_equal(c->held, BROKER_HELD_NONE);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c, &frame, 0), FERRY_OK);
    assert_int_equal(zmq_msg_size(&frame), 0);
    assert_int_equal(c->held, BROKER_HELD_FRAME);
    assert_int_equal(zmq_msg_size(&c->frame), 5);
    assert_memory_equal(zmq_msg_data(&c->frame), "hello", 5);
    zmq_msg_close(&frame);
    /* fini frees the queued call and its frame (ASan checks). */
}

static void test_worker_replace(void **state)
{
    fixture *fx = *state;
    const char *ab[] = {"a", "b", NULL};
    broker_worker *w = ready(fx, "w-1", 2, ab);
    broker_call *c = new_call(fx, "e1", 1, "a", 0, T0);
    assert_ptr_equal(dispatch(fx, c), w);
    assert_int_equal(broker_dispatch_worker_room(w), 1);

    /* The second Ready replaces the first; the call in flight still counts. */
    const char *bc[] = {"b", "c", NULL};
    broker_worker *again = ready(fx, "w-1", 3, bc);
    assert_ptr_equal(again, w);
    assert_int_equal(fx->d.nworkers, 1);
    assert_int_equal(w->nmembers, 2);
    assert_int_equal(broker_dispatch_worker_room(w), 2);
    broker_function *fa = broker_dispatch_function(&fx->d, "a");
    broker_function *fb = broker_dispatch_function(&fx->d, "b");
    broker_function *fc = broker_dispatch_function(&fx->d, "c");
    assert_int_equal(fa->workers, 0);
    assert_int_equal(fb->workers, 1);
    assert_int_equal(fc->workers, 1);
    assert_null(broker_dispatch_pick(&fx->d, fa));
    assert_ptr_equal(broker_dispatch_pick(&fx->d, fc), w);

    /* The old call is still in flight there and completes normally. */
    assert_ptr_equal(broker_dispatch_find(&fx->d, "e1", 2, 1), c);
    broker_dispatch_complete(&fx->d, c, 1);
    broker_dispatch_call_free(&fx->d, c);
    assert_int_equal(fa->failed, 1);
    assert_int_equal(broker_dispatch_worker_room(w), 3);
    assert_int_equal(fx->d.in_flight, 0);
}

static void test_ready_validation(void **state)
{
    fixture *fx = *state;
    Ferry__FunctionSpec s1 = FERRY__FUNCTION_SPEC__INIT, s2 = FERRY__FUNCTION_SPEC__INIT;
    s1.name = "echo";
    s2.name = "";
    Ferry__FunctionSpec *ptrs[3] = {&s1, &s2, NULL};
    Ferry__Ready r = FERRY__READY__INIT;
    r.functions = ptrs;
    r.n_functions = 2;
    r.credit = 1;
    broker_worker *w;
    assert_int_equal(broker_dispatch_ready(&fx->d, "w", 1, &r, T0, &w), FERRY_EPROTO);
    ptrs[1] = NULL;
    assert_int_equal(broker_dispatch_ready(&fx->d, "w", 1, &r, T0, &w), FERRY_EPROTO);
    assert_int_equal(broker_dispatch_ready(&fx->d, "w", 1, NULL, T0, &w), FERRY_EPROTO);
    assert_int_equal(broker_dispatch_ready(&fx->d, "", 0, &r, T0, &w), FERRY_EPROTO);
    assert_int_equal(fx->d.nworkers, 0);

    /* The same function listed twice gives one place in its ring. */
    ptrs[1] = &s1;
    assert_int_equal(broker_dispatch_ready(&fx->d, "w", 1, &r, T0, &w), FERRY_OK);
    assert_int_equal(w->nmembers, 1);
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    assert_int_equal(fn->workers, 1);
    assert_ptr_equal(fn->ring, fn->ring->next);

    /* No functions at all is a worker that serves nothing. */
    Ferry__Ready empty = FERRY__READY__INIT;
    assert_int_equal(broker_dispatch_ready(&fx->d, "w2", 2, &empty, T0, &w), FERRY_OK);
    assert_int_equal(w->nmembers, 0);
    assert_int_equal(fx->d.nworkers, 2);
}

static void test_call_lookup_and_duplicates(void **state)
{
    fixture *fx = *state;
    broker_call *c = new_call(fx, "engine-1", 42, "echo", 0, T0);
    broker_call *dup = NULL;
    assert_int_equal(broker_dispatch_call_new(&fx->d, "engine-1", 8, 42, "echo", 4, 0, T0, &dup),
                     FERRY_EPROTO);
    assert_null(dup);
    /* Same call id from another engine, and another id: distinct calls. */
    broker_call *other = new_call(fx, "engine-2", 42, "echo", 0, T0);
    broker_call *next = new_call(fx, "engine-1", 43, "echo", 0, T0);
    assert_ptr_equal(broker_dispatch_find(&fx->d, "engine-1", 8, 42), c);
    assert_ptr_equal(broker_dispatch_find(&fx->d, "engine-2", 8, 42), other);
    assert_ptr_equal(broker_dispatch_find(&fx->d, "engine-1", 8, 43), next);
    /* A prefix of an engine id is another engine. */
    assert_null(broker_dispatch_find(&fx->d, "engine-", 7, 42));
    assert_null(broker_dispatch_find(&fx->d, "", 0, 42));

    size_t len;
    const uint8_t *eid = broker_call_engine(c, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(eid, "engine-1", 8);

    broker_dispatch_call_free(&fx->d, c);
    assert_null(broker_dispatch_find(&fx->d, "engine-1", 8, 42));
    /* Once answered, the same id may come again. */
    broker_call *again = new_call(fx, "engine-1", 42, "echo", 0, T0);
    assert_non_null(again);

    /* Calls name functions in any order: each finds its own. */
    broker_call *x = new_call(fx, "engine-3", 1, "x", 0, T0);
    broker_call *e = new_call(fx, "engine-3", 2, "echo", 0, T0);
    broker_call *ex = new_call(fx, "engine-3", 3, "ech", 0, T0);
    assert_ptr_equal(x->fn, broker_dispatch_function(&fx->d, "x"));
    assert_ptr_equal(e->fn, again->fn);
    assert_ptr_equal(ex->fn, broker_dispatch_function(&fx->d, "ech"));
    assert_ptr_not_equal(ex->fn, e->fn);
    /* A function forgotten with its last call is made anew for the next one. */
    broker_dispatch_call_free(&fx->d, ex);
    assert_null(broker_dispatch_function(&fx->d, "ech"));
    ex = new_call(fx, "engine-3", 3, "ech", 0, T0);
    assert_ptr_equal(ex->fn, broker_dispatch_function(&fx->d, "ech"));
    assert_string_equal(ex->fn->name, "ech");

    /* Bad input is refused, not asserted. */
    broker_call *bad;
    assert_int_equal(broker_dispatch_call_new(&fx->d, "e", 1, 1, "", 0, 0, T0, &bad), FERRY_EPROTO);
    assert_int_equal(broker_dispatch_call_new(&fx->d, "", 0, 1, "echo", 4, 0, T0, &bad),
                     FERRY_EPROTO);
}

/* Many calls in and out of the call table, in an order that leaves holes
 * everywhere: each one is found while it is there, and only then. */
static void test_call_table_many(void **state)
{
    fixture *fx = *state;
    enum { N = 3000 };
    static broker_call *calls[N];
    char eid[16];
    for (int i = 0; i < N; i++) {
        snprintf(eid, sizeof eid, "engine-%d", i % 7);
        calls[i] = new_call(fx, eid, (uint64_t)i, "echo", 0, T0);
    }
    assert_int_equal(fx->d.ncalls, N);
    /* Out go every third, then every fifth of those left, from the end. */
    for (int i = N - 1; i >= 0; i--) {
        if (i % 3 == 0 || (i % 5 == 0 && calls[i])) {
            broker_dispatch_call_free(&fx->d, calls[i]);
            calls[i] = NULL;
        }
    }
    for (int i = 0; i < N; i++) {
        snprintf(eid, sizeof eid, "engine-%d", i % 7);
        assert_ptr_equal(broker_dispatch_find(&fx->d, eid, strlen(eid), (uint64_t)i), calls[i]);
        broker_call *dup = NULL;
        assert_int_equal(
            broker_dispatch_call_new(&fx->d, eid, strlen(eid), (uint64_t)i, "echo", 4, 0, T0, &dup),
            calls[i] ? FERRY_EPROTO : FERRY_OK);
        if (!calls[i])
            calls[i] = dup;
    }
    assert_int_equal(fx->d.ncalls, N);
    for (int i = 0; i < N; i++) {
        snprintf(eid, sizeof eid, "engine-%d", i % 7);
        assert_ptr_equal(broker_dispatch_find(&fx->d, eid, strlen(eid), (uint64_t)i), calls[i]);
        broker_dispatch_call_free(&fx->d, calls[i]);
        assert_null(broker_dispatch_find(&fx->d, eid, strlen(eid), (uint64_t)i));
    }
    assert_int_equal(fx->d.ncalls, 0);
}

/* Engine ids are interned: calls naming one share a record, which goes
 * with its last call (or, when it is the last seen, when another is seen). */
static void test_engine_ids_interned(void **state)
{
    fixture *fx = *state;
    broker_call *a1 = new_call(fx, "engine-a", 1, "echo", 0, T0);
    broker_call *a2 = new_call(fx, "engine-a", 2, "echo", 0, T0);
    broker_engine_id *a = broker_dispatch_engine_id(&fx->d, "engine-a", 8);
    assert_non_null(a);
    assert_ptr_equal(a1->engine, a);
    assert_ptr_equal(a2->engine, a);
    assert_ptr_equal(fx->d.last_engine, a);
    assert_int_equal(a->refs, 3); /* two calls and the last-seen cache */
    assert_int_equal(fx->d.nengine_ids, 1);

    /* Another engine: a miss of the cache, which moves there. */
    broker_call *b1 = new_call(fx, "engine-b", 1, "echo", 0, T0);
    broker_engine_id *b = broker_dispatch_engine_id(&fx->d, "engine-b", 8);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(fx->d.last_engine, b);
    assert_int_equal(a->refs, 2);
    assert_int_equal(b->refs, 2);
    assert_int_equal(fx->d.nengine_ids, 2);

    /* Duplicates show through the cache (b) and past it (a). */
    broker_call *dup = NULL;
    assert_int_equal(broker_dispatch_call_new(&fx->d, "engine-b", 8, 1, "echo", 4, 0, T0, &dup),
                     FERRY_EPROTO);
    assert_ptr_equal(fx->d.last_engine, b);
    assert_int_equal(broker_dispatch_call_new(&fx->d, "engine-a", 8, 2, "echo", 4, 0, T0, &dup),
                     FERRY_EPROTO);
    assert_null(dup);
    assert_ptr_equal(fx->d.last_engine, a);
    assert_int_equal(a->refs, 3);
    assert_int_equal(b->refs, 1);

    /* A lookup (the Reply's) moves the cache to a known engine, never to an
     * unknown one, and interns nothing. */
    assert_ptr_equal(broker_dispatch_find(&fx->d, "engine-b", 8, 1), b1);
    assert_ptr_equal(fx->d.last_engine, b);
    assert_null(broker_dispatch_find(&fx->d, "engine-c", 8, 1));
    assert_ptr_equal(fx->d.last_engine, b);
    assert_null(broker_dispatch_engine_id(&fx->d, "engine-c", 8));
    assert_int_equal(fx->d.nengine_ids, 2);
    assert_int_equal(a->refs, 2);

    /* a goes with its last call. */
    broker_dispatch_call_free(&fx->d, a1);
    assert_int_equal(a->refs, 1);
    broker_dispatch_call_free(&fx->d, a2);
    assert_null(broker_dispatch_engine_id(&fx->d, "engine-a", 8));
    assert_int_equal(fx->d.nengine_ids, 1);
    /* b is the last seen: it outlives its last call until another is seen. */
    broker_dispatch_call_free(&fx->d, b1);
    assert_ptr_equal(broker_dispatch_engine_id(&fx->d, "engine-b", 8), b);
    assert_int_equal(b->refs, 1);
    broker_call *c1 = new_call(fx, "engine-c", 1, "echo", 0, T0);
    assert_null(broker_dispatch_engine_id(&fx->d, "engine-b", 8));
    assert_int_equal(fx->d.nengine_ids, 1);
    size_t len;
    const uint8_t *eid = broker_call_engine(c1, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(eid, "engine-c", 8);
    /* A refused call holds no reference. */
    assert_int_equal(broker_dispatch_call_new(&fx->d, "engine-d", 8, 1, "", 0, 0, T0, &dup),
                     FERRY_EPROTO);
    assert_int_equal(broker_dispatch_call_new(&fx->d, "engine-c", 8, 1, "echo", 4, 0, T0, &dup),
                     FERRY_EPROTO);
    assert_int_equal(broker_dispatch_engine_id(&fx->d, "engine-c", 8)->refs, 2);
}

/* Many engines, their calls interleaved so that the cache mostly misses. */
static void test_engine_ids_many(void **state)
{
    fixture *fx = *state;
    enum { ENGINES = 300, PER = 3 };
    static broker_call *calls[ENGINES * PER];
    char eid[32];
    for (int k = 0; k < PER; k++) {
        for (int e = 0; e < ENGINES; e++) {
            snprintf(eid, sizeof eid, "engine-%d", e);
            calls[e * PER + k] = new_call(fx, eid, (uint64_t)k, "echo", 0, T0);
        }
    }
    assert_int_equal(fx->d.nengine_ids, ENGINES);
    for (int e = 0; e < ENGINES; e++) {
        snprintf(eid, sizeof eid, "engine-%d", e);
        broker_engine_id *rec = broker_dispatch_engine_id(&fx->d, eid, strlen(eid));
        assert_non_null(rec);
        for (int k = 0; k < PER; k++) {
            assert_ptr_equal(calls[e * PER + k]->engine, rec);
            assert_ptr_equal(broker_dispatch_find(&fx->d, eid, strlen(eid), (uint64_t)k),
                             calls[e * PER + k]);
        }
        assert_null(broker_dispatch_find(&fx->d, eid, strlen(eid), PER));
    }
    /* Out go the calls, engine by engine: each id with its last call. */
    for (int e = 0; e < ENGINES; e++) {
        snprintf(eid, sizeof eid, "engine-%d", e);
        for (int k = 0; k < PER; k++)
            broker_dispatch_call_free(&fx->d, calls[e * PER + k]);
        broker_engine_id *rec = broker_dispatch_engine_id(&fx->d, eid, strlen(eid));
        if (rec) /* only the last seen stays */
            assert_ptr_equal(rec, fx->d.last_engine);
    }
    assert_int_equal(fx->d.ncalls, 0);
    assert_true(fx->d.nengine_ids <= 1);
}

/* Ids are compared a word at a time with overlapping loads: ids of every
 * length that differ in one byte, wherever it is, are different ids, and
 * so are function names. */
static void test_ids_differ_anywhere(void **state)
{
    fixture *fx = *state;
    uint8_t base[FERRY_ROUTING_ID_MAX], other[FERRY_ROUTING_ID_MAX];
    for (size_t i = 0; i < sizeof base; i++)
        base[i] = (uint8_t)('a' + i % 26);
    for (size_t len = 1; len <= FERRY_ROUTING_ID_MAX; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            memcpy(other, base, len);
            other[pos] ^= 0x20;
            broker_call *x = NULL, *y = NULL;
            assert_int_equal(broker_dispatch_call_new(&fx->d, base, len, 7, "echo", 4, 0, T0, &x),
                             FERRY_OK);
            /* The cache holds base now: other must miss it. */
            assert_int_equal(broker_dispatch_call_new(&fx->d, other, len, 7, "echo", 4, 0, T0, &y),
                             FERRY_OK);
            assert_ptr_not_equal(x->engine, y->engine);
            assert_ptr_equal(broker_dispatch_find(&fx->d, base, len, 7), x);
            assert_ptr_equal(broker_dispatch_find(&fx->d, other, len, 7), y);
            broker_dispatch_call_free(&fx->d, x);
            broker_dispatch_call_free(&fx->d, y);
        }
    }
    char name[41], alt[41];
    for (size_t len = 1; len < sizeof name; len++) {
        memcpy(name, base, len);
        name[len] = '\0';
        for (size_t pos = 0; pos < len; pos++) {
            memcpy(alt, name, len + 1);
            alt[pos] ^= 0x20;
            broker_call *x = new_call(fx, "e1", 1, name, 0, T0);
            broker_call *y = new_call(fx, "e1", 2, alt, 0, T0);
            assert_ptr_not_equal(x->fn, y->fn);
            assert_string_equal(y->fn->name, alt);
            broker_dispatch_call_free(&fx->d, x);
            broker_dispatch_call_free(&fx->d, y);
        }
    }
    assert_int_equal(fx->d.ncalls, 0);
}

static void test_timeout_default_and_cap(void **state)
{
    fixture *fx = *state;
    broker_call *a = new_call(fx, "e", 1, "echo", 0, T0);
    broker_call *b = new_call(fx, "e", 2, "echo", 500, T0);
    broker_call *c = new_call(fx, "e", 3, "echo", 99999999, T0);
    assert_int_equal(a->timeout_ms, 30000);
    assert_int_equal(b->timeout_ms, 500);
    assert_int_equal(c->timeout_ms, 30000);
    assert_int_equal(b->deadline_ms, T0 + 500);
}

static void test_unserved_gives_no_worker(void **state)
{
    fixture *fx = *state;
    broker_call *c = new_call(fx, "e1", 7, "nobody", 0, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c, NULL, 0), FERRY_OK);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 999), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 1000), 1);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_ENO_WORKER);
    assert_int_equal(fx->last_call_id, 7);
    assert_int_equal(fx->d.queued, 0);
    /* Nobody ever served it: the function is forgotten with its last call. */
    assert_null(broker_dispatch_function(&fx->d, "nobody"));
    assert_int_equal(fx->d.nfunctions, 0);
}

static void test_short_deadline_unserved(void **state)
{
    fixture *fx = *state;
    broker_call *c = new_call(fx, "e1", 1, "nobody", 200, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c, NULL, 0), FERRY_OK);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 200), 1);
    assert_int_equal(fx->last_reason, FERRY_ENO_WORKER);
}

static void test_busy_worker_gives_timeout(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 1, fns);
    broker_call *first = new_call(fx, "e1", 1, "echo", 0, T0);
    assert_ptr_equal(dispatch(fx, first), w);
    broker_call *c = new_call(fx, "e1", 2, "echo", 5000, T0);
    broker_function *fn = c->fn;
    assert_null(broker_dispatch_pick(&fx->d, fn));
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c, NULL, 0), FERRY_OK);
    /* Someone serves it: no `no_worker` at the unserved wait, `timeout` at the deadline. */
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 4999), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 5000), 1);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_ETIMEOUT);
    assert_int_equal(fx->last_call_id, 2);
    assert_int_equal(fn->failed, 1);
    assert_int_equal(fn->queued, 0);
    assert_int_equal(fn->in_flight, 1);
}

static void test_worker_appears_during_unserved_wait(void **state)
{
    fixture *fx = *state;
    broker_call *c = new_call(fx, "e1", 1, "echo", 3000, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c, NULL, 0), FERRY_OK);
    const char *fns[] = {"echo", NULL};
    ready(fx, "w-a", 0, fns); /* serves it, but no credit */
    /* The unserved-wait timer fires, finds a worker, and waits on to the deadline. */
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 1000), 1);
    assert_int_equal(fx->expired, 0);
    assert_int_equal(c->state, BROKER_CALL_QUEUED);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 3000), 1);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_ETIMEOUT);
}

static void test_last_worker_leaving_starts_unserved_wait(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 0, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 20000, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c, NULL, 0), FERRY_OK);
    assert_int_equal(c->timer.when_ms, T0 + 20000);
    /* Its only worker leaves at T0+5000: the call waits 1000 ms more, not 15000. */
    assert_int_equal(broker_dispatch_leave(&fx->d, w, T0 + 5000), 1);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 5999), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 6000), 1);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_ENO_WORKER);
}

static void test_replace_dropping_function_starts_unserved_wait(void **state)
{
    fixture *fx = *state;
    const char *ab[] = {"a", "b", NULL};
    const char *b_only[] = {"b", NULL};
    ready(fx, "w-a", 0, ab);
    broker_call *ca = new_call(fx, "e1", 1, "a", 20000, T0);
    broker_call *cb = new_call(fx, "e1", 2, "b", 20000, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, ca, NULL, 0), FERRY_OK);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, cb, NULL, 0), FERRY_OK);
    Ferry__FunctionSpec spec = FERRY__FUNCTION_SPEC__INIT;
    spec.name = (char *)b_only[0];
    Ferry__FunctionSpec *ptrs[] = {&spec};
    Ferry__Ready r = FERRY__READY__INIT;
    r.functions = ptrs;
    r.n_functions = 1;
    broker_worker *w;
    assert_int_equal(broker_dispatch_ready(&fx->d, "w-a", 3, &r, T0 + 100, &w), FERRY_OK);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 1100), 1);
    assert_int_equal(fx->last_call_id, 1);
    assert_int_equal(fx->last_reason, FERRY_ENO_WORKER);
    assert_int_equal(cb->state, BROKER_CALL_QUEUED);
}

static void test_in_flight_backstop(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 2, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 1000, T0);
    assert_ptr_equal(dispatch(fx, c), w);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 5999), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 6000), 1);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_ETIMEOUT);
    assert_null(broker_dispatch_find(&fx->d, "e1", 2, 1));
    assert_int_equal(fx->d.in_flight, 0);
    /* The credit stays consumed until a stray reply comes back. */
    assert_int_equal(w->lost, 1);
    assert_int_equal(broker_dispatch_worker_room(w), 1);
    assert_int_equal(broker_dispatch_stray_reply(&fx->d, w), 1);
    assert_int_equal(broker_dispatch_worker_room(w), 2);
    assert_int_equal(broker_dispatch_stray_reply(&fx->d, w), 0);
}

static void test_backstops_expire_in_order(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 10, fns);
    /* Sent in this order, due (deadline + 5000 grace) at +8000, +6000, +7000, +6000, +9000. */
    const uint32_t timeouts[] = {3000, 1000, 2000, 1000, 4000};
    for (uint64_t id = 1; id <= 5; id++)
        assert_ptr_equal(dispatch(fx, new_call(fx, "e1", id, "echo", timeouts[id - 1], T0)), w);
    /* One timer for the worker, not one per call. */
    assert_int_equal(ferry_timers_count(&fx->timers), 1);
    assert_int_equal(w->backstop.when_ms, T0 + 6000);

    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 5999), 0);
    assert_int_equal(fx->expired, 0);
    /* The two due together go in the order they were sent. */
    ferry_timers_run(&fx->timers, T0 + 6000);
    assert_int_equal(fx->expired, 2);
    assert_int_equal(fx->order[0], 2);
    assert_int_equal(fx->order[1], 4);
    assert_int_equal(fx->last_reason, FERRY_ETIMEOUT);
    assert_int_equal(w->in_flight, 3);
    assert_int_equal(w->lost, 2);
    assert_int_equal(w->backstop.when_ms, T0 + 7000);
    ferry_timers_run(&fx->timers, T0 + 6999);
    assert_int_equal(fx->expired, 2);
    /* Late: the three left expire in one run, each in its turn. */
    ferry_timers_run(&fx->timers, T0 + 9500);
    assert_int_equal(fx->expired, 5);
    assert_int_equal(fx->order[2], 3);
    assert_int_equal(fx->order[3], 1);
    assert_int_equal(fx->order[4], 5);
    assert_int_equal(w->in_flight, 0);
    assert_int_equal(fx->d.in_flight, 0);
    assert_int_equal(w->lost, 5);
    assert_int_equal(broker_dispatch_worker_room(w), 5);
    assert_int_equal(broker_dispatch_function(&fx->d, "echo")->failed, 5);
    assert_false(ferry_timer_active(&w->backstop));
}

static void test_completed_call_never_expires(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 4, fns);
    broker_call *c2 = new_call(fx, "e1", 2, "echo", 3000, T0);
    broker_call *c1 = new_call(fx, "e1", 1, "echo", 1000, T0 + 10);
    assert_ptr_equal(dispatch(fx, c2), w);
    assert_int_equal(w->backstop.when_ms, T0 + 8000);
    /* Sent later but due earlier: it brings the worker's timer forward. */
    assert_ptr_equal(dispatch(fx, c1), w);
    assert_int_equal(w->backstop.when_ms, T0 + 6010);
    broker_dispatch_complete(&fx->d, c1, 0);
    broker_dispatch_call_free(&fx->d, c1);
    /* The timer still fires at c1's backstop, finds nothing due and moves on to c2's. */
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 6010), 1);
    assert_int_equal(fx->expired, 0);
    assert_int_equal(w->lost, 0);
    assert_int_equal(c2->state, BROKER_CALL_IN_FLIGHT);
    assert_int_equal(w->backstop.when_ms, T0 + 8000);
    broker_call *c3 = new_call(fx, "e1", 3, "echo", 500, T0 + 7000);
    assert_ptr_equal(dispatch(fx, c3), w);
    broker_dispatch_complete(&fx->d, c2, 1);
    broker_dispatch_call_free(&fx->d, c2);
    broker_dispatch_complete(&fx->d, c3, 0);
    broker_dispatch_call_free(&fx->d, c3);
    ferry_timers_run(&fx->timers, T0 + 100000);
    assert_int_equal(fx->expired, 0);
    assert_int_equal(w->lost, 0);
    assert_int_equal(broker_dispatch_worker_room(w), 4);
    assert_false(ferry_timer_active(&w->backstop));
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    assert_int_equal(fn->completed, 2);
    assert_int_equal(fn->failed, 1);
}

static void test_match_reply(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready(fx, "w-a", 1, fns);
    broker_worker *b = ready(fx, "w-b", 1, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 0, T0);
    broker_worker *at = dispatch(fx, c);
    broker_worker *other = at == a ? b : a;
    broker_worker *w = NULL;
    assert_ptr_equal(broker_dispatch_match_reply(&fx->d, at->rid, at->rid_len, "e1", 2, 1, &w), c);
    assert_ptr_equal(w, at);
    /* From the other worker, or a worker we do not know: stray. */
    assert_null(broker_dispatch_match_reply(&fx->d, other->rid, 3, "e1", 2, 1, &w));
    assert_ptr_equal(w, other);
    assert_null(broker_dispatch_match_reply(&fx->d, "w-c", 3, "e1", 2, 1, &w));
    assert_null(w);
    /* A prefix of the worker's id is another worker. */
    assert_null(broker_dispatch_match_reply(&fx->d, at->rid, 2, "e1", 2, 1, &w));
    assert_null(w);
    /* So is an id of the same length that differs in one byte. */
    char near[3] = {(char)at->rid[0], (char)at->rid[1], (char)(at->rid[2] ^ 1)};
    assert_null(broker_dispatch_match_reply(&fx->d, near, 3, "e1", 2, 1, &w));
    assert_null(w);
    /* Unknown calls, and a call that is only queued, match nothing. */
    assert_null(broker_dispatch_match_reply(&fx->d, at->rid, 3, "e1", 2, 2, &w));
    assert_ptr_equal(w, at);
    assert_null(broker_dispatch_match_reply(&fx->d, at->rid, 3, "e2", 2, 1, &w));
    assert_null(broker_dispatch_match_reply(&fx->d, at->rid, 3, "", 0, 1, &w));
    assert_ptr_equal(w, at);
    broker_call *q = new_call(fx, "e1", 2, "echo", 0, T0);
    assert_ptr_equal(dispatch(fx, q), other);
    broker_call *queued = new_call(fx, "e1", 3, "echo", 0, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, queued, NULL, 0), FERRY_OK);
    assert_null(broker_dispatch_match_reply(&fx->d, at->rid, 3, "e1", 2, 3, &w));
    assert_ptr_equal(w, at);
}

static void test_lost_credit_reset_by_ready(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *w = ready(fx, "w-a", 1, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 100, T0);
    assert_ptr_equal(dispatch(fx, c), w);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 5100), 1);
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    assert_null(broker_dispatch_pick(&fx->d, fn));
    ready(fx, "w-a", 1, fns);
    assert_ptr_equal(broker_dispatch_pick(&fx->d, fn), w);
}

static void test_goodbye(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready(fx, "w-a", 5, fns);
    broker_worker *b = ready(fx, "w-b", 5, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 0, T0);
    assert_ptr_equal(dispatch(fx, c), a);

    /* a says goodbye: no more calls go there, its call in flight stays. */
    assert_int_equal(broker_dispatch_leave(&fx->d, a, T0), 0);
    assert_int_equal(fx->d.nworkers, 1);
    broker_function *fn = c->fn;
    assert_int_equal(fn->workers, 1);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(broker_dispatch_pick(&fx->d, fn), b);
    assert_ptr_equal(broker_dispatch_worker(&fx->d, "w-a", 3), a);

    /* Its last reply arrives: then it is gone. */
    broker_dispatch_complete(&fx->d, c, 0);
    broker_dispatch_call_free(&fx->d, c);
    assert_int_equal(broker_dispatch_reap(&fx->d, a), 1);
    assert_null(broker_dispatch_worker(&fx->d, "w-a", 3));

    /* Goodbye with nothing in flight frees at once; so does the last server leaving. */
    assert_int_equal(broker_dispatch_leave(&fx->d, b, T0), 1);
    assert_int_equal(fx->d.nworkers, 0);
    assert_int_equal(fn->workers, 0);
    assert_null(fn->ring);
    /* The function stays, with its stats, because workers served it. */
    assert_ptr_equal(broker_dispatch_function(&fx->d, "echo"), fn);
    assert_int_equal(fn->completed, 1);
}

static void test_ready_after_goodbye(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready(fx, "w-a", 2, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 0, T0);
    assert_ptr_equal(dispatch(fx, c), a);
    assert_int_equal(broker_dispatch_leave(&fx->d, a, T0), 0);
    assert_int_equal(fx->d.nworkers, 0);
    assert_ptr_equal(ready(fx, "w-a", 2, fns), a);
    assert_int_equal(fx->d.nworkers, 1);
    assert_int_equal(a->leaving, 0);
    assert_int_equal(broker_dispatch_worker_room(a), 1);
    assert_int_equal(c->fn->workers, 1);
}

static void test_backstop_reaps_leaving_worker(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready(fx, "w-a", 2, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 100, T0);
    assert_ptr_equal(dispatch(fx, c), a);
    assert_int_equal(broker_dispatch_leave(&fx->d, a, T0), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 5100), 1);
    assert_int_equal(fx->expired, 1);
    assert_null(broker_dispatch_worker(&fx->d, "w-a", 3));
}

static void test_block_and_unblock(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready(fx, "w-a", 5, fns);
    broker_worker *b = ready(fx, "w-b", 5, fns);
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    broker_dispatch_block(&fx->d, a);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(broker_dispatch_pick(&fx->d, fn), b);
    broker_dispatch_unblock(&fx->d, a);
    broker_worker *p1 = broker_dispatch_pick(&fx->d, fn);
    broker_worker *p2 = broker_dispatch_pick(&fx->d, fn);
    assert_true((p1 == a && p2 == b) || (p1 == b && p2 == a));
}

static void test_take_rotates_functions(void **state)
{
    fixture *fx = *state;
    /* Calls for two functions queue while nobody serves them. */
    for (uint64_t i = 0; i < 3; i++) {
        broker_call *x = new_call(fx, "e1", i, "x", 0, T0);
        assert_int_equal(broker_dispatch_enqueue(&fx->d, x, NULL, 0), FERRY_OK);
        broker_call *y = new_call(fx, "e1", 100 + i, "y", 0, T0);
        assert_int_equal(broker_dispatch_enqueue(&fx->d, y, NULL, 0), FERRY_OK);
    }
    const char *fns[] = {"x", "y", NULL};
    broker_worker *w = ready(fx, "w", 4, fns);
    const char *order[4];
    for (int i = 0; i < 4; i++) {
        broker_call *c = broker_dispatch_take(&fx->d, w);
        assert_non_null(c);
        order[i] = c->fn->name;
        broker_dispatch_sent(&fx->d, c, w);
    }
    assert_null(broker_dispatch_take(&fx->d, w));
    /* Both functions get their turn. */
    assert_string_not_equal(order[0], order[1]);
    assert_string_not_equal(order[2], order[3]);
    assert_int_equal(fx->d.queued, 2);
    assert_int_equal(fx->d.in_flight, 4);
}

/* Registers worker id: functions named "name" are idempotent, "name!" not. */
static broker_worker *ready_running(fixture *fx, const char *id, uint32_t credit,
                                    uint32_t running, const char *const *fns)
{
    Ferry__FunctionSpec specs[8];
    Ferry__FunctionSpec *ptrs[8];
    char names[8][32];
    size_t n = 0;
    for (; fns && fns[n]; n++) {
        ferry__function_spec__init(&specs[n]);
        size_t len = strlen(fns[n]);
        int bang = len > 0 && fns[n][len - 1] == '!';
        snprintf(names[n], sizeof names[n], "%.*s", (int)(len - (size_t)bang), fns[n]);
        specs[n].name = names[n];
        specs[n].idempotent = !bang;
        ptrs[n] = &specs[n];
    }
    Ferry__Ready r = FERRY__READY__INIT;
    r.functions = ptrs;
    r.n_functions = n;
    r.credit = credit;
    r.running = running;
    broker_worker *w = NULL;
    assert_int_equal(broker_dispatch_ready(&fx->d, id, strlen(id), &r, T0, &w), FERRY_OK);
    return w;
}

/* A Command frame of len bytes, each (i * 7 + seed) & 0xff. */
static void make_frame(zmq_msg_t *m, size_t len, int seed)
{
    assert_int_equal(zmq_msg_init_size(m, len), 0);
    uint8_t *p = zmq_msg_data(m);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + (size_t)seed);
}

static void assert_frame(zmq_msg_t *m, size_t len, int seed)
{
    assert_int_equal(zmq_msg_size(m), len);
    const uint8_t *p = zmq_msg_data(m);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(p[i], (uint8_t)(i * 7 + (size_t)seed));
}

/* What the broker's send does with the frame a Command arrived in (len
 * bytes, see make_frame): keep a copy for a call that may be re-sent, send
 * it (closed here). */
static broker_worker *dispatch_keeping_len(fixture *fx, broker_call *call, size_t len, int seed)
{
    broker_worker *w = broker_dispatch_pick(&fx->d, call->fn);
    assert_non_null(w);
    if (broker_dispatch_may_retry(call, w)) {
        zmq_msg_t frame;
        make_frame(&frame, len, seed);
        assert_int_equal(broker_dispatch_keep(call, &frame, zmq_msg_data(&frame), len),
                         FERRY_OK);
        /* The sent frame is gone from the broker once the socket wrote it. */
        zmq_msg_close(&frame);
    }
    broker_dispatch_sent(&fx->d, call, w);
    return w;
}

static broker_worker *dispatch_keeping(fixture *fx, broker_call *call)
{
    return dispatch_keeping_len(fx, call, 3, 0);
}

static void test_worker_lost_retries_idempotent_once(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", "charge!", NULL};
    broker_worker *a = ready_running(fx, "w-a", 4, 0, fns);
    broker_call *c1 = new_call(fx, "e1", 1, "echo", 0, T0);
    broker_call *c2 = new_call(fx, "e1", 2, "charge", 0, T0);
    assert_true(broker_dispatch_may_retry(c1, a));
    assert_false(broker_dispatch_may_retry(c2, a));
    assert_ptr_equal(dispatch_keeping(fx, c1), a);
    assert_ptr_equal(dispatch_keeping(fx, c2), a);

    broker_call *retry = NULL;
    broker_dispatch_worker_lost(&fx->d, a, T0 + 10, &retry);
    assert_null(broker_dispatch_worker(&fx->d, "w-a", 3));
    assert_int_equal(fx->d.workers_lost, 1);
    assert_int_equal(fx->d.nworkers, 0);
    assert_int_equal(fx->d.in_flight, 0);
    /* The non-idempotent one is answered worker_lost and gone. */
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_EWORKER_LOST);
    assert_int_equal(fx->last_call_id, 2);
    assert_null(broker_dispatch_find(&fx->d, "e1", 2, 2));
    /* The idempotent one comes back to be placed again, frame and all. */
    assert_ptr_equal(retry, c1);
    assert_null(c1->next);
    assert_int_equal(c1->state, BROKER_CALL_NEW);
    assert_true(c1->retried);
    assert_int_equal(fx->d.calls_retried, 1);
    assert_int_equal(c1->held, BROKER_HELD_FRAME);
    assert_frame(&c1->frame, 3, 0);
    retry = NULL;
    c1->prev = c1->next = NULL;

    /* Once only: lost again at its next worker, it is answered worker_lost. */
    broker_worker *b = ready_running(fx, "w-b", 4, 0, fns);
    assert_false(broker_dispatch_may_retry(c1, b));
    /* The broker sends call->frame itself then, which leaves it empty. */
    broker_dispatch_unkeep(c1);
    assert_int_equal(c1->held, BROKER_HELD_NONE);
    assert_ptr_equal(dispatch_keeping(fx, c1), b);
    broker_dispatch_worker_lost(&fx->d, b, T0 + 20, &retry);
    assert_null(retry);
    assert_int_equal(fx->expired, 2);
    assert_int_equal(fx->last_reason, FERRY_EWORKER_LOST);
    assert_int_equal(fx->last_call_id, 1);
    assert_int_equal(fx->d.workers_lost, 2);
    assert_int_equal(broker_dispatch_function(&fx->d, "echo")->failed, 1);
    assert_int_equal(broker_dispatch_function(&fx->d, "charge")->failed, 1);
}

/* Small Commands are kept as bytes in the record, larger ones as a
 * reference to their frame; either way a lost worker's call comes back with
 * the same bytes in call->frame. */
static void test_kept_command_sizes(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready_running(fx, "w-a", 8, 0, fns);
    const size_t lens[] = {1, 47, BROKER_CALL_COPY_MAX, BROKER_CALL_COPY_MAX + 1, 5000};
    const broker_held how[] = {BROKER_HELD_BYTES, BROKER_HELD_BYTES, BROKER_HELD_BYTES,
                               BROKER_HELD_FRAME, BROKER_HELD_FRAME};
    broker_call *calls[5];
    for (int i = 0; i < 5; i++) {
        calls[i] = new_call(fx, "e1", (uint64_t)i + 1, "echo", 0, T0);
        assert_ptr_equal(dispatch_keeping_len(fx, calls[i], lens[i], i), a);
        assert_int_equal(calls[i]->held, how[i]);
    }
    broker_call *retry = NULL;
    broker_dispatch_worker_lost(&fx->d, a, T0 + 10, &retry);
    assert_int_equal(fx->expired, 0);
    assert_int_equal(fx->d.calls_retried, 5);
    for (int i = 0; i < 5; i++) {
        assert_ptr_equal(retry, calls[i]);
        DL_DELETE(retry, calls[i]);
        assert_int_equal(calls[i]->held, BROKER_HELD_FRAME);
        assert_frame(&calls[i]->frame, lens[i], i);
    }
    /* fini frees them with their frames (ASan checks). */
}

/* A kept copy is dropped when its send fails, and a record frees what it
 * holds whatever that is (ASan checks). */
static void test_unkeep_and_free(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready_running(fx, "w-a", 8, 0, fns);
    for (int big = 0; big < 2; big++) {
        broker_call *c = new_call(fx, "e1", (uint64_t)big + 1, "echo", 0, T0);
        size_t len = big ? BROKER_CALL_COPY_MAX * 4 : 10;
        zmq_msg_t frame;
        make_frame(&frame, len, 3);
        assert_int_equal(broker_dispatch_keep(c, &frame, zmq_msg_data(&frame), len), FERRY_OK);
        assert_int_equal(c->held, big ? BROKER_HELD_FRAME : BROKER_HELD_BYTES);
        /* The send failed: the frame is as it was, the copy goes. */
        assert_frame(&frame, len, 3);
        broker_dispatch_unkeep(c);
        assert_int_equal(c->held, BROKER_HELD_NONE);
        /* Then it is queued, frame and all. */
        assert_int_equal(broker_dispatch_enqueue(&fx->d, c, &frame, 0), FERRY_OK);
        assert_int_equal(c->held, BROKER_HELD_FRAME);
        zmq_msg_close(&frame);
        assert_ptr_equal(broker_dispatch_pop(&fx->d, c->fn), c);
        assert_frame(&c->frame, len, 3);
        broker_dispatch_call_free(&fx->d, c);
    }
    /* In flight with a copy kept, answered, freed. */
    broker_call *c = new_call(fx, "e1", 9, "echo", 0, T0);
    assert_ptr_equal(dispatch_keeping_len(fx, c, 20, 1), a);
    assert_int_equal(c->held, BROKER_HELD_BYTES);
    broker_dispatch_complete(&fx->d, c, 0);
    broker_dispatch_call_free(&fx->d, c);
    c = new_call(fx, "e1", 10, "echo", 0, T0);
    assert_ptr_equal(dispatch_keeping_len(fx, c, 1000, 1), a);
    assert_int_equal(c->held, BROKER_HELD_FRAME);
    broker_dispatch_complete(&fx->d, c, 0);
    broker_dispatch_call_free(&fx->d, c);
    /* A record reused from the spare ones starts holding nothing. */
    c = new_call(fx, "e1", 11, "echo", 0, T0);
    assert_int_equal(c->held, BROKER_HELD_NONE);
    broker_dispatch_call_free(&fx->d, c);
    assert_int_equal(fx->d.ncalls, 0);
}

static void test_worker_lost_while_leaving(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo!", NULL};
    broker_worker *a = ready_running(fx, "w-a", 4, 0, fns);
    broker_call *c = new_call(fx, "e1", 1, "echo", 0, T0);
    assert_ptr_equal(dispatch_keeping(fx, c), a);
    assert_int_equal(broker_dispatch_leave(&fx->d, a, T0), 0);
    broker_call *retry = NULL;
    broker_dispatch_worker_lost(&fx->d, a, T0 + 10, &retry);
    assert_null(retry);
    assert_int_equal(fx->expired, 1);
    assert_int_equal(fx->last_reason, FERRY_EWORKER_LOST);
    assert_null(broker_dispatch_worker(&fx->d, "w-a", 3));
    assert_int_equal(fx->d.nworkers, 0);
}

static void test_lost_worker_queued_calls_wait_unserved(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    broker_worker *a = ready_running(fx, "w-a", 1, 0, fns);
    broker_call *c1 = new_call(fx, "e1", 1, "echo", 0, T0);
    assert_ptr_equal(dispatch_keeping(fx, c1), a);
    broker_call *c2 = new_call(fx, "e1", 2, "echo", 0, T0);
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c2, NULL, 0), FERRY_OK);
    broker_call *retry = NULL;
    broker_dispatch_worker_lost(&fx->d, a, T0 + 100, &retry);
    assert_ptr_equal(retry, c1);
    /* As the broker does: nobody to send it to, so it queues in front. */
    c1->prev = c1->next = NULL;
    assert_int_equal(broker_dispatch_enqueue(&fx->d, c1, NULL, 1), FERRY_OK);
    broker_function *fn = broker_dispatch_function(&fx->d, "echo");
    assert_ptr_equal(fn->queue, c1);
    /* Both wait --unserved-wait (1000 ms) for another worker, then no_worker. */
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 1099), 0);
    assert_int_equal(ferry_timers_run(&fx->timers, T0 + 1100), 2);
    assert_int_equal(fx->expired, 2);
    assert_int_equal(fx->last_reason, FERRY_ENO_WORKER);
}

static void test_ready_running_holds_credit(void **state)
{
    fixture *fx = *state;
    const char *fns[] = {"echo", NULL};
    /* After a broker restart: 3 calls of the old broker still run there. */
    broker_worker *w = ready_running(fx, "w-a", 5, 3, fns);
    assert_int_equal(w->lost, 3);
    assert_int_equal(w->last_seen_ms, T0);
    assert_int_equal(broker_dispatch_worker_room(w), 2);
    assert_int_equal(broker_dispatch_stray_reply(&fx->d, w), 1);
    assert_int_equal(broker_dispatch_worker_room(w), 3);
    /* Our own calls there are not counted twice when it says Ready again. */
    broker_call *c = new_call(fx, "e1", 1, "echo", 0, T0);
    assert_ptr_equal(dispatch(fx, c), w);
    assert_ptr_equal(ready_running(fx, "w-a", 5, 3, fns), w);
    assert_int_equal(w->lost, 2);
    assert_int_equal(broker_dispatch_worker_room(w), 2);
}

static int setup_tables(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    ferry_timers_init(&fx->timers);
    broker_dispatch_limits lim = {
        .queue_max = 100,
        .call_timeout_ms = 30000,
        .unserved_wait_ms = 1000,
        .grace_ms = 5000,
        .workers_max = 2,
        .functions_max = 3,
    };
    broker_dispatch_init(&fx->d, &fx->timers, &lim, on_expired, fx);
    *state = fx;
    return 0;
}

static void test_tables_are_bounded(void **state)
{
    fixture *fx = *state;
    const char *two[] = {"a", "b", NULL};
    const char *more[] = {"c", "d", NULL};
    ready_running(fx, "w-1", 1, 0, two);
    /* A third and fourth function do not fit: the Ready is refused whole. */
    Ferry__FunctionSpec specs[2], *ptrs[2] = {&specs[0], &specs[1]};
    for (int i = 0; i < 2; i++) {
        ferry__function_spec__init(&specs[i]);
        specs[i].name = (char *)more[i];
    }
    Ferry__Ready r = FERRY__READY__INIT;
    r.functions = ptrs;
    r.n_functions = 2;
    r.credit = 1;
    broker_worker *w = NULL;
    assert_int_equal(broker_dispatch_ready(&fx->d, "w-2", 3, &r, T0, &w), FERRY_EOVERLOADED);
    assert_null(w);
    assert_null(broker_dispatch_worker(&fx->d, "w-2", 3));
    assert_null(broker_dispatch_function(&fx->d, "c"));
    assert_int_equal(fx->d.nfunctions, 2);
    /* Calls to new names fill the table up to its bound, then are refused. */
    broker_call *c = new_call(fx, "e1", 1, "x", 0, T0);
    broker_call *refused = NULL;
    assert_int_equal(broker_dispatch_call_new(&fx->d, "e1", 2, 2, "y", 1, 0, T0, &refused),
                     FERRY_EOVERLOADED);
    assert_null(refused);
    broker_dispatch_call_free(&fx->d, c);
    assert_int_equal(fx->d.nfunctions, 2);
    /* Workers: two at most; a known one may always say Ready again. */
    ready_running(fx, "w-2", 1, 0, two);
    r.n_functions = 0;
    assert_int_equal(broker_dispatch_ready(&fx->d, "w-3", 3, &r, T0, &w), FERRY_EOVERLOADED);
    assert_non_null(ready_running(fx, "w-1", 2, 0, two));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pick_by_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_credit_never_picked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fairness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound_and_order, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_frame_moves_into_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound_in_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_lookup_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_call_table_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_ids_interned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_ids_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_differ_anywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_default_and_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unserved_gives_no_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_deadline_unserved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_worker_gives_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_appears_during_unserved_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_last_worker_leaving_starts_unserved_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_replace_dropping_function_starts_unserved_wait, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_backstop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backstops_expire_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completed_call_never_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_credit_reset_by_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_goodbye, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ready_after_goodbye, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backstop_reaps_leaving_worker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_block_and_unblock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_rotates_functions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_lost_retries_idempotent_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kept_command_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unkeep_and_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_worker_lost_while_leaving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_worker_queued_calls_wait_unserved, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ready_running_holds_credit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tables_are_bounded, setup_tables, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

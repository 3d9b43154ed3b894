/* ferry_timer: binary min-heap of embedded timers. */
#include "ferry_timer.h"

#include <assert.h>
#include <stdlib.h>

static int before(const ferry_timer *a, const ferry_timer *b)
{
    return a->when_ms < b->when_ms || (a->when_ms == b->when_ms && a->seq < b->seq);
}

static void place(ferry_timers *ts, size_t i, ferry_timer *t)
{
    ts->heap[i] = t;
    t->index = i;
}

static void sift_up(ferry_timers *ts, size_t i)
{
    ferry_timer *t = ts->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(t, ts->heap[parent]))
            break;
        place(ts, i, ts->heap[parent]);
        i = parent;
    }
    place(ts, i, t);
}

static void sift_down(ferry_timers *ts, size_t i)
{
    ferry_timer *t = ts->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= ts->len)
            break;
        if (child + 1 < ts->len && before(ts->heap[child + 1], ts->heap[child]))
            child++;
        if (!before(ts->heap[child], t))
            break;
        place(ts, i, ts->heap[child]);
        i = child;
    }
    place(ts, i, t);
}

void ferry_timers_init(ferry_timers *ts)
{
    ts->heap = NULL;
    ts->len = ts->cap = 0;
    ts->seq = 0;
}

void ferry_timers_fini(ferry_timers *ts)
{
    for (size_t i = 0; i < ts->len; i++)
        ts->heap[i]->index = FERRY_TIMER_IDLE;
    free(ts->heap);
    ferry_timers_init(ts);
}

void ferry_timer_init(ferry_timer *t, ferry_timer_fn fn, void *arg)
{
    t->when_ms = 0;
    t->seq = 0;
    t->index = FERRY_TIMER_IDLE;
    t->fn = fn;
    t->arg = arg;
}

ferry_err ferry_timer_start(ferry_timers *ts, ferry_timer *t, int64_t when_ms)
{
    if (ferry_timer_active(t))
        ferry_timer_stop(ts, t);
    if (ts->len == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 64;
        ferry_timer **heap = realloc(ts->heap, cap * sizeof *heap);
        if (!heap)
            return FERRY_ENOMEM;
        ts->heap = heap;
        ts->cap = cap;
    }
    t->when_ms = when_ms;
    t->seq = ts->seq++;
    ts->heap[ts->len] = t;
    t->index = ts->len++;
    sift_up(ts, t->index);
    return FERRY_OK;
}

void ferry_timer_stop(ferry_timers *ts, ferry_timer *t)
{
    if (!ferry_timer_active(t))
        return;
    size_t i = t->index;
    assert(i < ts->len && ts->heap[i] == t);
    t->index = FERRY_TIMER_IDLE;
    ts->len--;
    if (i == ts->len)
        return;
    ferry_timer *moved = ts->heap[ts->len];
    place(ts, i, moved);
    sift_up(ts, i);
    sift_down(ts, moved->index);
}

long ferry_timers_timeout(const ferry_timers *ts, int64_t now_ms)
{
    if (ts->len == 0)
        return -1;
    int64_t d = ts->heap[0]->when_ms - now_ms;
    if (d < 0)
        return 0;
    return d > 1000000000 ? 1000000000L : (long)d;
}

size_t ferry_timers_run(ferry_timers *ts, int64_t now_ms)
{
    size_t ran = 0;
    while (ts->len > 0 && ts->heap[0]->when_ms <= now_ms) {
        ferry_timer *t = ts->heap[0];
        ferry_timer_stop(ts, t);
        t->fn(t, t->arg);
        ran++;
    }
    return ran;
}

/*
 * ferry/timer.h: a timer you embed in your own struct (no allocation per
 * timer) and arm on a worker's loop with ferry_worker_timer_start. The
 * fields are the loop's: set them only through ferry_timer_init.
 */
#ifndef FERRY_TIMER_H_PUBLIC
#define FERRY_TIMER_H_PUBLIC

#include <stddef.h>
#include <stdint.h>

typedef struct ferry_timer ferry_timer;

/* Runs from the loop when the timer is due (it is disarmed first); may start
 * or stop any timer, its own too. */
typedef void (*ferry_timer_fn)(ferry_timer *timer, void *arg);

struct ferry_timer {
    int64_t when_ms; /* expiry on the monotonic millisecond clock */
    uint64_t seq;    /* tie-breaker: equal expiries fire in start order */
    size_t index;    /* position in the loop's heap; FERRY_TIMER_IDLE when not armed */
    ferry_timer_fn fn;
    void *arg;
};

#define FERRY_TIMER_IDLE ((size_t)-1)

/* Sets fn and arg, not armed. */
void ferry_timer_init(ferry_timer *timer, ferry_timer_fn fn, void *arg);

/* True while the timer is armed. */
static inline int ferry_timer_active(const ferry_timer *timer)
{
    return timer->index != FERRY_TIMER_IDLE;
}

#endif

/*
 * ferry_timer: a binary min-heap of timers keyed on monotonic milliseconds.
 *
 * Timers (include/ferry/timer.h) are embedded in their owner's struct (no
 * allocation per timer); the heap holds pointers to them. Start, stop and re-arm are O(log n). Callbacks
 * run from ferry_timers_run and may start or stop any timer, their own too.
 */
#ifndef FERRY_TIMER_H
#define FERRY_TIMER_H

#include "ferry/timer.h"
#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    ferry_timer **heap;
    size_t len, cap;
    uint64_t seq;
} ferry_timers;

void ferry_timers_init(ferry_timers *timers);
/* Frees the heap; the timers themselves belong to their owners. */
void ferry_timers_fini(ferry_timers *timers);

/* Arms timer to fire at when_ms (re-arms it if armed). FERRY_ENOMEM when the heap cannot grow. */
ferry_err ferry_timer_start(ferry_timers *timers, ferry_timer *timer, int64_t when_ms);

/* Disarms timer; a no-op when it is not armed. */
void ferry_timer_stop(ferry_timers *timers, ferry_timer *timer);

/* Milliseconds from now until the earliest timer (0 if due), or -1 when none is armed. */
long ferry_timers_timeout(const ferry_timers *timers, int64_t now_ms);

/* Runs (and disarms) every timer due at now_ms; returns how many ran. */
size_t ferry_timers_run(ferry_timers *timers, int64_t now_ms);

static inline size_t ferry_timers_count(const ferry_timers *timers)
{
    return timers->len;
}

#endif

/*
 * worker_metrics: what a worker records for --metrics (metrics.c renders
 * it), kept in the library's own records: per function, calls by outcome
 * and the handler latency (the handler's start to its answer), as a
 * histogram. Off (w->metrics_on 0) every hook is one branch; on, a call
 * costs two clock reads and a few increments on the worker's thread.
 */
#ifndef WORKER_METRICS_H
#define WORKER_METRICS_H

#include "ferry_clock.h"
#include "ferry_metrics.h"
#include "worker_internal.h"

/* A handler starts on call. */
static inline void worker_metrics_started(ferry_worker *w, ferry_call *call)
{
    if (w->metrics_on)
        call->started_us = ferry_now_us();
}

/* The handler of call answered: values (code NULL) or an error code. */
static inline void worker_metrics_answered(ferry_worker *w, ferry_call *call, const char *code)
{
    if (!w->metrics_on)
        return;
    worker_function *fn = call->fn;
    fn->outcomes[code ? ferry_metrics_outcome(code) : FERRY_OK]++;
    ferry_metrics_hist_observe(&fn->latency, ferry_now_us() - call->started_us);
}

/* The worker answered call itself (its deadline passed, or no memory), started or queued. */
static inline void worker_metrics_cut_short(ferry_worker *w, ferry_call *call, ferry_err reason)
{
    if (w->metrics_on)
        call->fn->outcomes[(unsigned)reason < FERRY_ERR_COUNT ? (unsigned)reason
                                                              : FERRY_METRICS_OTHER]++;
}

#endif

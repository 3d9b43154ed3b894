/*
 * metrics: ferry-engine --metrics HOST:PORT, GET /metrics for an engine
 * (docs/metrics.md): calls by outcome and their latency as the scripts see
 * it (the Command sent -> the answer that resumes the script), scripts by
 * outcome and run time, VM instructions run, Lua memory in use, slots and
 * calls in flight, the engine's counters and process_*. Served by
 * libmicrohttpd from the engine's loop (ferry_metrics_http.h).
 *
 * Off unless asked: the hooks are one branch then. No function label:
 * function names come from scripts, so they are not a bounded set here
 * (the broker has them per function, bounded by its --functions-max).
 *
 * Who may call: the engine loop's thread.
 */
#ifndef ENGINE_METRICS_H
#define ENGINE_METRICS_H

#include "engine.h"
#include "ferry.pb-c.h"
#include "ferry_clock.h"
#include "ferry_metrics.h"
#include "ferry_metrics_http.h"

/* The engine's state at a scrape, read by its owner (engine.c). */
typedef struct {
    const engine_stats *stats;
    size_t running, slots;
    size_t calls_in_flight, inflight_bytes;
    size_t lua_bytes; /* Lua memory of the running scripts' states */
    int connected;    /* brokers registered with (Hello sent, not lost since) */
} engine_metrics_view;

typedef void (*engine_metrics_view_fn)(void *arg, engine_metrics_view *v);

typedef struct {
    int on;
    uint64_t calls[FERRY_METRICS_OUTCOMES];
    ferry_metrics_hist call_latency;
    uint64_t scripts[FERRY_METRICS_OUTCOMES];
    ferry_metrics_hist script_duration;
    uint64_t instructions; /* of finished scripts (counted when they have a limit) */
    double start_time;
    engine_metrics_view_fn view;
    void *view_arg;
    ferry_metrics_http *http; /* owned */
} engine_metrics;

/* Turns recording on and serves on hostport from loop; view reads the engine at a scrape. */
ferry_err engine_metrics_open(engine_metrics *m, ferry_loop *loop, const char *hostport,
                              engine_metrics_view_fn view, void *arg, char *err, size_t errlen);

/* Stops serving (NULL-safe as to what was opened). */
void engine_metrics_fini(engine_metrics *m);

/* Appends the exposition to out. */
ferry_err engine_metrics_render(engine_metrics *m, ferry_buf *out);

/* A timestamp for a call or script when on, else 0 (no clock read). */
static inline int64_t engine_metrics_now(const engine_metrics *m)
{
    return m->on ? ferry_now_us() : 0;
}

/* A call sent at sent_us got its answer now, with outcome (a ferry_metrics_outcome). */
static inline void engine_metrics_call_done(engine_metrics *m, int64_t sent_us, unsigned outcome)
{
    if (!m->on)
        return;
    m->calls[outcome < FERRY_METRICS_OUTCOMES ? outcome : FERRY_METRICS_OTHER]++;
    ferry_metrics_hist_observe(&m->call_latency, ferry_now_us() - sent_us);
}

/* A ferry.call was refused at once with err (nothing was sent). */
static inline void engine_metrics_call_refused(engine_metrics *m, ferry_err err)
{
    if (m->on)
        m->calls[(unsigned)err < FERRY_ERR_COUNT ? (unsigned)err : FERRY_METRICS_OTHER]++;
}

/* A script started at started_us ended with res after instructions. */
void engine_metrics_script_done(engine_metrics *m, int64_t started_us, uint64_t instructions,
                                const Ferry__Result *res);

#endif

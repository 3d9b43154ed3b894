/*
 * metrics: the broker's Prometheus series (--metrics HOST:PORT).
 *
 * Off unless --metrics is given: then every hook below is a branch on
 * m->on and returns. On, the hooks run on the broker's loop, inside the
 * handlers, and cost a few increments and no clock read: times are the
 * loop's (ferry_loop.now_us, read once per wakeup). The time a call went
 * to its worker is stamped in its record (broker_call.sent_us), and its
 * reply files the difference in its function's histogram. So a latency is
 * measured from the wakeup that sent the call to the wakeup that read its
 * reply: exact at light load, and under load off by at most the time one
 * wakeup's batch takes (a few hundred microseconds at saturation). Reading
 * the clock per message instead cost about 0.1 us (8 %) of the broker's CPU
 * per call in ferry-bench (--only metrics). A scrape (ferry_metrics_http,
 * on the same loop) renders the counters and reads the gauges (queued, in
 * flight, slots, credit) from the routing tables as they are: no copy, no
 * lock.
 *
 * Label sets are bounded: one series set per function name, at most
 * functions_max of them (the broker's --functions-max; a function forgotten
 * by the tables keeps its series); calls to functions past that bound are
 * counted in ferry_calls_unlabelled_total. Outcomes are "ok", Ferry's error
 * codes and "other" (a code Ferry does not define). Per-peer series (a
 * label per engine or worker routing id) only with --metrics-peers N, for
 * the first N engines and N workers by routing id.
 *
 * Who may call: the broker loop's thread.
 */
#ifndef BROKER_METRICS_H
#define BROKER_METRICS_H

#include "ferry.pb-c.h"
#include "ferry_err.h"
#include "ferry_loop.h"
#include "ferry_metrics.h"
#include "ferry_metrics_http.h"
#include "ferry_wire.h"
#include "ferry_hash.h"

#include <stddef.h>
#include <stdint.h>

#define BROKER_METRICS_OUTCOMES FERRY_METRICS_OUTCOMES /* ok, each error code, other */
#define BROKER_METRICS_OTHER FERRY_METRICS_OTHER
#define BROKER_METRICS_DROPS 16  /* room for every broker_drop */
#define BROKER_STATS_ENGINES 256 /* engines listed in a Stats reply at most */

struct broker;
struct broker_call;
struct broker_function;
struct broker_script;

/* One function's series. */
typedef struct broker_fn_metrics {
    UT_hash_handle hh; /* broker_metrics.fns, keyed by name */
    char *name;        /* owned */
    uint64_t outcomes[BROKER_METRICS_OUTCOMES];
    uint64_t retried;           /* sent once more after their worker was lost */
    ferry_metrics_hist latency; /* sent to a worker -> its reply back */
} broker_fn_metrics;

typedef struct {
    int on;                 /* --metrics given: the hooks count */
    size_t peers;           /* --metrics-peers: per-peer series for this many of each */
    const ferry_loop *loop; /* borrowed: its now_us is the time of every stamp */
    size_t max;             /* function series at most */
    double start_time;      /* for process_start_time_seconds */
    broker_fn_metrics *fns; /* owned */
    size_t nfns;
    uint64_t unlabelled; /* calls of functions past max */
    uint64_t scripts[BROKER_METRICS_OUTCOMES];
    ferry_metrics_hist script_duration;     /* Submit in -> Result out, engines' Results */
    ferry_metrics_hist script_wait;         /* Submit in -> sent to an engine */
    uint64_t dropped[BROKER_METRICS_DROPS]; /* by broker_drop; counted whether on or not */
    ferry_metrics_http *http;               /* owned; NULL when off */
    Ferry__EngineStats *engine_stats;       /* owned: the memory behind Stats.engine_list, reused */
    Ferry__EngineStats **engine_ptrs;
    size_t engine_cap;
} broker_metrics;

/* Off, empty; max bounds the function series; loop's clock (borrowed) stamps everything. */
void broker_metrics_init(broker_metrics *m, size_t max, const ferry_loop *loop);

/*
 * Turns the series on and serves them on hostport from b's loop. On failure
 * writes a line into err and returns what ferry_metrics_http_open returned.
 */
ferry_err broker_metrics_open(broker_metrics *m, struct broker *b, const char *hostport, char *err,
                              size_t errlen);

/* Stops serving and frees every series. */
void broker_metrics_fini(broker_metrics *m);

/* Appends the exposition of b (its series, gauges and process_*) to out. */
ferry_err broker_metrics_render(struct broker *b, ferry_buf *out);

/* ---- hooks, one line each in the handlers ---- */

/* The call went to its worker now. */
void broker_metrics_call_sent(broker_metrics *m, struct broker_call *call);

/* Its worker's Reply (the encoded Reply envelope, alone or a Batch's item; has_error
 * as peeked) came back for call. */
void broker_metrics_call_replied(broker_metrics *m, struct broker_call *call, const void *reply,
                                 size_t len, int has_error);

/* The broker answered call itself with code (timeout, worker_lost, overloaded...). */
void broker_metrics_call_failed(broker_metrics *m, struct broker_call *call, ferry_err code);

/* call goes to another worker after its own was lost. */
void broker_metrics_call_retried(broker_metrics *m, struct broker_call *call);

/* A Submit arrived for script now. */
void broker_metrics_script_new(broker_metrics *m, struct broker_script *script);

/* script went to an engine now. */
void broker_metrics_script_started(broker_metrics *m, struct broker_script *script);

/* A script's Result went to its client: from an engine (script set, with
 * its duration) or made by the broker (script may be NULL). */
void broker_metrics_script_done(broker_metrics *m, struct broker_script *script, unsigned outcome);

/* A message was dropped, of kind (a broker_drop). */
static inline void broker_metrics_dropped(broker_metrics *m, unsigned kind)
{
    if (kind < BROKER_METRICS_DROPS)
        m->dropped[kind]++;
}

/* An engine's Result r for script goes to its client. */
void broker_metrics_script_result(broker_metrics *m, struct broker_script *script,
                                  const Ferry__Result *r);

/* Fills the latency quantiles of fs, the Stats entry of fn. */
void broker_metrics_function_stats(broker_metrics *m, struct broker_function *fn,
                                   Ferry__FunctionStats *fs);

/*
 * Fills the totals of Stats that the tables do not hold (slots, credit) and
 * its engine list (by routing id, at most BROKER_STATS_ENGINES and about
 * BROKER_STATS_BYTES / 4 of them; truncated set past that). The list points
 * into memory of b->metrics and into the engine table: valid until the next
 * call or a change of the table. Call it after the other lists are filled.
 */
void broker_metrics_stats(struct broker *b, Ferry__Stats *st);

#endif

/* metrics: the engine's Prometheus series (metrics.h). */
#include "metrics.h"

#include <string.h>

static ferry_err render(ferry_buf *out, void *arg)
{
    return engine_metrics_render(arg, out);
}

ferry_err engine_metrics_open(engine_metrics *m, ferry_loop *loop, const char *hostport,
                              engine_metrics_view_fn view, void *arg, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    m->start_time = ferry_metrics_wall_now();
    m->view = view;
    m->view_arg = arg;
    ferry_err e = ferry_metrics_http_open(&m->http, loop, hostport, render, m, err, errlen);
    if (e == FERRY_OK)
        m->on = 1;
    return e;
}

void engine_metrics_fini(engine_metrics *m)
{
    ferry_metrics_http_destroy(&m->http);
    m->on = 0;
}

void engine_metrics_script_done(engine_metrics *m, int64_t started_us, uint64_t instructions,
                                const Ferry__Result *res)
{
    if (!m->on)
        return;
    unsigned o =
        res->ok ? FERRY_OK : ferry_metrics_outcome(res->error ? res->error->code : "script_error");
    m->scripts[o]++;
    m->instructions += instructions;
    ferry_metrics_hist_observe(&m->script_duration, ferry_now_us() - started_us);
}

static void scalar(ferry_metrics_writer *w, const char *name, ferry_metrics_type t,
                   const char *help, uint64_t v)
{
    ferry_metrics_family(w, name, t, help);
    ferry_metrics_u64(w, name, NULL, 0, v);
}

static void by_outcome(ferry_metrics_writer *w, const char *name, const char *help,
                       const uint64_t *counts)
{
    ferry_metrics_family(w, name, FERRY_METRICS_COUNTER, help);
    for (unsigned o = 0; o < FERRY_METRICS_OUTCOMES; o++) {
        if (o != FERRY_OK && counts[o] == 0)
            continue;
        ferry_metrics_label l = {"outcome", ferry_metrics_outcome_name(o)};
        ferry_metrics_u64(w, name, &l, 1, counts[o]);
    }
}

ferry_err engine_metrics_render(engine_metrics *m, ferry_buf *out)
{
    engine_metrics_view v;
    memset(&v, 0, sizeof v);
    m->view(m->view_arg, &v);
    ferry_metrics_writer w;
    ferry_metrics_writer_init(&w, out);
    by_outcome(&w, "ferry_engine_calls_total",
               "ferry.calls answered as the scripts see them, by outcome (ok, or the error "
               "code; refusals before sending included).",
               m->calls);
    ferry_metrics_family(&w, "ferry_engine_call_duration_seconds", FERRY_METRICS_HISTOGRAM,
                         "Time from a call's Command sent to the answer that resumes its "
                         "script.");
    ferry_metrics_hist_write(&w, "ferry_engine_call_duration_seconds", NULL, 0, &m->call_latency);
    by_outcome(&w, "ferry_engine_scripts_total", "Scripts run to their end, by outcome.",
               m->scripts);
    ferry_metrics_family(&w, "ferry_engine_script_duration_seconds", FERRY_METRICS_HISTOGRAM,
                         "Time from a script's arrival at the engine to its Result.");
    ferry_metrics_hist_write(&w, "ferry_engine_script_duration_seconds", NULL, 0,
                             &m->script_duration);
    scalar(&w, "ferry_engine_instructions_total", FERRY_METRICS_COUNTER,
           "Lua VM instructions and metered C steps of finished scripts (counted under an "
           "instruction limit).",
           m->instructions);
    scalar(&w, "ferry_engine_lua_memory_bytes", FERRY_METRICS_GAUGE,
           "Lua memory held by the states of the running scripts.", v.lua_bytes);
    scalar(&w, "ferry_engine_scripts_running", FERRY_METRICS_GAUGE, "Scripts running now.",
           v.running);
    scalar(&w, "ferry_engine_slots", FERRY_METRICS_GAUGE, "Scripts this engine runs at once.",
           v.slots);
    scalar(&w, "ferry_engine_calls_in_flight", FERRY_METRICS_GAUGE,
           "Calls sent and not answered yet.", v.calls_in_flight);
    scalar(&w, "ferry_engine_inflight_bytes", FERRY_METRICS_GAUGE,
           "Bytes of the Commands of the calls in flight (--inflight-bytes).", v.inflight_bytes);
    scalar(&w, "ferry_engine_connected", FERRY_METRICS_GAUGE,
           "Brokers this engine is registered with.", (uint64_t)v.connected);
    if (v.stats) {
        scalar(&w, "ferry_engine_scripts_refused_total", FERRY_METRICS_COUNTER,
               "Scripts answered overloaded: no free slot.", v.stats->scripts_refused);
        scalar(&w, "ferry_engine_late_replies_total", FERRY_METRICS_COUNTER,
               "Replies for calls no longer waited for.", v.stats->late_replies);
        scalar(&w, "ferry_engine_messages_dropped_total", FERRY_METRICS_COUNTER,
               "Bad messages from the broker.", v.stats->dropped);
        scalar(&w, "ferry_engine_results_lost_total", FERRY_METRICS_COUNTER,
               "Results the socket would not take.", v.stats->results_lost);
        scalar(&w, "ferry_engine_broker_losses_total", FERRY_METRICS_COUNTER,
               "Times the broker was declared lost.", v.stats->broker_losses);
    }
    ferry_metrics_process(&w, m->start_time);
    return ferry_metrics_writer_err(&w);
}

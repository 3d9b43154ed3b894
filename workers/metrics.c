/* metrics: the worker's Prometheus series (metrics.h). */
#include "metrics.h"

#include "ferry_metrics.h"
#include "worker_internal.h"

#include <string.h>
#include <utlist.h>

static double start_time;

static void scalar(ferry_metrics_writer *wr, const char *name, ferry_metrics_type t,
                   const char *help, uint64_t v)
{
    ferry_metrics_family(wr, name, t, help);
    ferry_metrics_u64(wr, name, NULL, 0, v);
}

static int by_name(const worker_function *a, const worker_function *b)
{
    return strcmp(a->name, b->name);
}

ferry_err worker_metrics_render(ferry_worker *w, ferry_buf *out)
{
    ferry_metrics_writer wr;
    ferry_metrics_writer_init(&wr, out);
    HASH_SORT(w->functions, by_name);
    ferry_metrics_family(&wr, "ferry_worker_calls_total", FERRY_METRICS_COUNTER,
                         "Calls answered by this worker, by function and outcome (ok, or the "
                         "error code).");
    for (worker_function *f = w->functions; f; f = f->hh.next)
        for (unsigned o = 0; o < FERRY_METRICS_OUTCOMES; o++) {
            if (o != FERRY_OK && f->outcomes[o] == 0)
                continue;
            ferry_metrics_label l[2] = {{"function", f->name},
                                        {"outcome", ferry_metrics_outcome_name(o)}};
            ferry_metrics_u64(&wr, "ferry_worker_calls_total", l, 2, f->outcomes[o]);
        }
    ferry_metrics_family(&wr, "ferry_worker_handler_duration_seconds", FERRY_METRICS_HISTOGRAM,
                         "Time from a handler's start to its answer, by function.");
    for (worker_function *f = w->functions; f; f = f->hh.next) {
        ferry_metrics_label l = {"function", f->name};
        ferry_metrics_hist_write(&wr, "ferry_worker_handler_duration_seconds", &l, 1, &f->latency);
    }
    ferry_metrics_family(&wr, "ferry_worker_calls_running", FERRY_METRICS_GAUGE,
                         "Handlers started and not answered yet, by function.");
    for (worker_function *f = w->functions; f; f = f->hh.next) {
        ferry_metrics_label l = {"function", f->name};
        ferry_metrics_u64(&wr, "ferry_worker_calls_running", &l, 1, f->running);
    }
    ferry_metrics_family(&wr, "ferry_worker_calls_waiting", FERRY_METRICS_GAUGE,
                         "Calls waiting for a slot of their function (max_concurrency).");
    for (worker_function *f = w->functions; f; f = f->hh.next) {
        ferry_metrics_label l = {"function", f->name};
        ferry_call *c;
        uint64_t n = 0;
        DL_FOREACH2(f->waiting, c, qnext)
        n++;
        ferry_metrics_u64(&wr, "ferry_worker_calls_waiting", &l, 1, n);
    }
    const ferry_worker_stats *st = &w->stats;
    scalar(&wr, "ferry_worker_calls_in_flight", FERRY_METRICS_GAUGE,
           "Calls awaiting their reply here: running and waiting.", st->in_flight);
    scalar(&wr, "ferry_worker_concurrency", FERRY_METRICS_GAUGE,
           "Calls this worker takes at once (its credit).", w->concurrency);
    scalar(&wr, "ferry_worker_zombies", FERRY_METRICS_GAUGE,
           "Calls answered timeout whose handler still owes its answer.", st->zombies);
    unsigned connected = 0;
    for (size_t i = 0; i < FERRY_BROKERS_MAX; i++)
        connected += w->links[i].connected != 0;
    scalar(&wr, "ferry_worker_connected", FERRY_METRICS_GAUGE,
           "Brokers with which a session is up.", connected);
    scalar(&wr, "ferry_worker_commands_received_total", FERRY_METRICS_COUNTER,
           "Commands accepted for a registered function.", st->received);
    scalar(&wr, "ferry_worker_late_answers_total", FERRY_METRICS_COUNTER,
           "Answers that came after their call's timeout, discarded.", st->late);
    scalar(&wr, "ferry_worker_messages_dropped_total", FERRY_METRICS_COUNTER,
           "Undecodable or unexpected messages.", st->dropped);
    scalar(&wr, "ferry_worker_replies_lost_total", FERRY_METRICS_COUNTER,
           "Replies the socket refused (no broker, queue full).", st->reply_lost);
    ferry_metrics_process(&wr, start_time);
    return ferry_metrics_writer_err(&wr);
}

static ferry_err render(ferry_buf *out, void *arg)
{
    return worker_metrics_render(arg, out);
}

ferry_err worker_metrics_serve(ferry_worker *w, const char *hostport, ferry_metrics_http **out,
                               char *err, size_t errlen)
{
    start_time = ferry_metrics_wall_now();
    ferry_err e = ferry_metrics_http_open(out, &w->loop, hostport, render, w, err, errlen);
    if (e == FERRY_OK)
        w->metrics_on = 1;
    return e;
}

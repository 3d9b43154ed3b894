/*
 * metrics: ferry-worker --metrics HOST:PORT, GET /metrics for a worker
 * (docs/metrics.md): per function its calls by outcome, handler latency
 * histogram, calls running and waiting for a slot; the worker's totals and
 * process_*. Served by libmicrohttpd from the worker's own loop
 * (ferry_metrics_http.h), recorded by the library (worker_metrics.h).
 *
 * Who may call: the worker loop's thread, outside handlers.
 */
#ifndef WORKER_METRICS_SERVE_H
#define WORKER_METRICS_SERVE_H

#include "ferry/worker.h"
#include "ferry_metrics_http.h"

/*
 * Turns recording on and serves w's series on hostport until
 * ferry_metrics_http_destroy(out), which must come before
 * ferry_worker_destroy(w). On failure writes a line into err.
 */
ferry_err worker_metrics_serve(ferry_worker *w, const char *hostport, ferry_metrics_http **out,
                               char *err, size_t errlen);

/* Appends w's exposition to out. */
ferry_err worker_metrics_render(ferry_worker *w, ferry_buf *out);

#endif

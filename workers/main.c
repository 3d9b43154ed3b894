/*
 * ferry-worker: serves the built-in functions to a Ferry broker.
 *
 * Everything but the flags and the table of functions is the worker library
 * (ferry/worker.h), which any program can use to serve functions of its own.
 */
#include "ferry/worker.h"
#include "ferry_wire.h"
#include "ferry_log.h"
#include "ferry_opts.h"
#include "functions/functions.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

static const struct builtin {
    const char *name;
    ferry_handler fn;
    ferry_function_opts opts;
} builtins[] = {
    {.name = "echo", .fn = worker_fn_echo, .opts = {.idempotent = 1}},
    {.name = "sleep", .fn = worker_fn_sleep, .opts = {.idempotent = 1}},
};

/* True when name is one of the comma-separated names in list. */
static int listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && memcmp(p, name, n) == 0)
            return 1;
        p += n + (end ? 1 : 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *endpoint = FERRY_WORKER_DEFAULT_ENDPOINT;
    long concurrency = FERRY_WORKER_DEFAULT_CONCURRENCY;
    long max_msg = FERRY_DEFAULT_MAX_MSG;
    long heartbeat_ms = FERRY_WORKER_DEFAULT_HEARTBEAT_MS;
    long liveness = FERRY_WORKER_DEFAULT_LIVENESS;
    long drain_ms = FERRY_WORKER_DEFAULT_DRAIN_MS;
    const char *not_idempotent = "";
    const char *http_allow = "";
    const char *curve_key = NULL, *broker_key = NULL, *discover = NULL;
    const char *metrics = NULL;
    const ferry_opt opts[] = {
        {"workers", "FERRY_WORKERS", FERRY_OPT_STRING, &endpoint,
         "broker workers endpoint to connect to; several brokers: a comma-separated list "
         "(the worker serves each, its --concurrency split among those connected, a call's "
         "reply going back to the broker it came from)",
         0, 0},
        {"concurrency", "FERRY_CONCURRENCY", FERRY_OPT_INT, &concurrency,
         "calls in flight at once (the credit announced to the broker)", 1,
         FERRY_WORKER_MAX_CONCURRENCY},
        {"max-msg", "FERRY_MAX_MSG", FERRY_OPT_INT, &max_msg, "largest command or reply in bytes",
         1024, 1L << 30},
        {"heartbeat-ms", "FERRY_HEARTBEAT_MS", FERRY_OPT_INT, &heartbeat_ms,
         "heartbeat period towards the broker, in ms (use the broker's)", 10, 3600000},
        {"liveness", "FERRY_LIVENESS", FERRY_OPT_INT, &liveness,
         "heartbeat periods of broker silence before registering again", 2, 1000},
        {"drain-timeout", "FERRY_DRAIN_TIMEOUT", FERRY_OPT_INT, &drain_ms,
         "ms that calls in flight get to finish after SIGTERM (a second signal: at once)", 0,
         86400000},
        {"not-idempotent", "FERRY_NOT_IDEMPOTENT", FERRY_OPT_STRING, &not_idempotent,
         "comma-separated built-in functions to declare not idempotent: their calls end "
         "worker_lost instead of running again elsewhere when this worker is lost",
         0, 0},
        {"http-allow", "FERRY_HTTP_ALLOW", FERRY_OPT_STRING, &http_allow,
         "comma-separated CIDR ranges http.get and http.request may connect to although they "
         "are internal (loopback, private, link-local, unique-local, ...: refused by default), "
         "e.g. 127.0.0.1/32,10.1.0.0/16,fd00::/8",
         0, 0},
        {"discover", "FERRY_DISCOVER", FERRY_OPT_STRING, &discover,
         "a name whose every address is a broker (e.g. tasks.broker in Docker Swarm): "
         "resolved now and every 3 s, each address served on the port of --workers (its "
         "host unused), addresses that are gone dropped; one --broker-key for all",
         0, 0},
        {"curve-key", "FERRY_CURVE_KEY", FERRY_OPT_STRING, &curve_key,
         "this worker's secret certificate (ferry keygen): CURVE towards the broker", 0, 0},
        {"broker-key", "FERRY_BROKER_KEY", FERRY_OPT_STRING, &broker_key,
         "the broker's public certificate (with --curve-key); several brokers: one for all, "
         "or a comma-separated list in the order of --workers",
         0, 0},
        {"metrics", "FERRY_METRICS", FERRY_OPT_STRING, &metrics,
         "HOST:PORT to serve Prometheus metrics on (GET /metrics, plain HTTP, no auth); off "
         "when not given",
         0, 0},
    };
    const ferry_cli cli = {
        .program = "ferry-worker",
        .synopsis = "[options]",
        .summary = "Runs Ferry's built-in functions (echo, sleep, http.get, http.request) for a "
                   "broker, many calls at once in one event loop.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 1, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;

    /* Before anything starts: a bad range must not leave the worker up with another policy. */
    char err[512];
    http_addr_policy allow;
    if (http_addr_policy_parse(&allow, http_allow, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-worker: --http-allow: %s\n", err);
        return 2;
    }

    ferry_log_init("worker");
    ferry_worker_config cfg = {.endpoint = endpoint,
                               .concurrency = (unsigned)concurrency,
                               .max_msg = max_msg,
                               .heartbeat_ms = (int)heartbeat_ms,
                               .liveness = (int)liveness,
                               .drain_ms = drain_ms > 0 ? (int)drain_ms : -1,
                               .curve_key = curve_key,
                               .broker_key = broker_key,
                               .discover = discover && *discover ? discover : NULL};
    ferry_worker *w = ferry_worker_new(&cfg, err, sizeof err);
    if (!w) {
        fprintf(stderr, "ferry-worker: %s\n", err);
        http_addr_policy_fini(&allow);
        return 1;
    }
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        const struct builtin *b = &builtins[i];
        ferry_function_opts fopts = b->opts;
        if (listed(not_idempotent, b->name))
            fopts.idempotent = 0;
        if (ferry_worker_register(w, b->name, b->fn, NULL, &fopts) != FERRY_OK) {
            fprintf(stderr, "ferry-worker: cannot register '%s'\n", b->name);
            ferry_worker_destroy(&w);
            http_addr_policy_fini(&allow);
            return 1;
        }
    }
    /* http.get and http.request share one curl multi handle driven by w's loop. */
    worker_http *http = worker_http_new(w, &allow, err, sizeof err); /* takes allow's list */
    if (!http || worker_http_register(http, !listed(not_idempotent, "http.get")) != FERRY_OK) {
        fprintf(stderr, "ferry-worker: %s\n", http ? "cannot register the http functions" : err);
        ferry_worker_destroy(&w);
        worker_http_destroy(&http);
        return 1;
    }
    ferry_info("worker_config", "endpoint=%s id=%s concurrency=%ld max_msg=%ld http_allow=\"%s\"",
               endpoint, ferry_worker_id(w), concurrency, max_msg, http_allow);
    ferry_metrics_http *mhttp = NULL;
    if (metrics && *metrics &&
        worker_metrics_serve(w, metrics, &mhttp, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-worker: %s\n", err);
        ferry_worker_destroy(&w);
        worker_http_destroy(&http);
        return 1;
    }
    ferry_err run = ferry_worker_run(w);
    ferry_metrics_http_destroy(&mhttp); /* before the worker: it runs on the worker's loop */
    ferry_worker_destroy(&w);
    worker_http_destroy(&http); /* after the worker: its destroy cancels the transfers */
    return run == FERRY_OK ? 0 : 1;
}

/*
 * ferry-worker: serves the built-in functions to a Ferry broker.
 *
 * Everything but the flags and the table of functions is the worker library
 * (ferry/worker.h), which any program can use to serve functions of its own.
 */
#include "ferry/worker.h"
#include "ferry_log.h"
#include "ferry_opts.h"
#include "functions/functions.h"

#include <stdio.h>

static const struct builtin {
    const char *name;
    ferry_handler fn;
    ferry_function_opts opts;
} builtins[] = {
    {.name = "echo", .fn = worker_fn_echo, .opts = {.idempotent = 1}},
    {.name = "sleep", .fn = worker_fn_sleep, .opts = {.idempotent = 1}},
};

int main(int argc, char **argv)
{
    const char *endpoint = FERRY_WORKER_DEFAULT_ENDPOINT;
    long concurrency = FERRY_WORKER_DEFAULT_CONCURRENCY;
    long max_msg = FERRY_DEFAULT_MAX_MSG;
    long heartbeat_ms = FERRY_WORKER_DEFAULT_HEARTBEAT_MS;
    const ferry_opt opts[] = {
        {"workers", "FERRY_WORKERS", FERRY_OPT_STRING, &endpoint,
         "broker workers endpoint to connect to", 0, 0},
        {"concurrency", "FERRY_CONCURRENCY", FERRY_OPT_INT, &concurrency,
         "calls in flight at once (the credit announced to the broker)", 1,
         FERRY_WORKER_MAX_CONCURRENCY},
        {"max-msg", "FERRY_MAX_MSG", FERRY_OPT_INT, &max_msg, "largest command or reply in bytes",
         1024, 1L << 30},
        {"heartbeat-ms", "FERRY_HEARTBEAT_MS", FERRY_OPT_INT, &heartbeat_ms,
         "heartbeat period towards the broker", 10, 3600000},
    };
    const ferry_cli cli = {
        .program = "ferry-worker",
        .synopsis = "[options]",
        .summary = "Runs Ferry's built-in functions (echo, sleep) for a broker, many calls at "
                   "once in one event loop.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 1, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;

    ferry_log_init("worker");
    ferry_worker_config cfg = {.endpoint = endpoint,
                               .concurrency = (unsigned)concurrency,
                               .max_msg = max_msg,
                               .heartbeat_ms = (int)heartbeat_ms};
    char err[256];
    ferry_worker *w = ferry_worker_new(&cfg, err, sizeof err);
    if (!w) {
        fprintf(stderr, "ferry-worker: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        const struct builtin *b = &builtins[i];
        if (ferry_worker_register(w, b->name, b->fn, NULL, &b->opts) != FERRY_OK) {
            fprintf(stderr, "ferry-worker: cannot register '%s'\n", b->name);
            ferry_worker_destroy(&w);
            return 1;
        }
    }
    ferry_info("worker_config", "endpoint=%s id=%s concurrency=%ld max_msg=%ld", endpoint,
               ferry_worker_id(w), concurrency, max_msg);
    ferry_err run = ferry_worker_run(w);
    ferry_worker_destroy(&w);
    return run == FERRY_OK ? 0 : 1;
}

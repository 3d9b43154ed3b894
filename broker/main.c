/*
 * ferry-broker: the rendezvous point of a Ferry deployment.
 *
 * Parses flags (each with an environment variable), binds the four sockets
 * and runs the loop until SIGINT or SIGTERM, draining first (SIGHUP re-reads the allow-lists
 * of --allow-clients, --allow-engines and --allow-workers). Exit status: 0 after a clean
 * stop, 1 when a socket cannot be set up, 2 for bad usage.
 */
#include "broker.h"

#include "ferry_log.h"
#include "ferry_opts.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    broker_config cfg;
    broker_config_defaults(&cfg);
    static const char local_clients[] = BROKER_LOCAL_CLIENTS,
                      local_commands[] = BROKER_LOCAL_COMMANDS,
                      local_engines[] = BROKER_LOCAL_ENGINES,
                      local_workers[] = BROKER_LOCAL_WORKERS;
    const struct {
        const char **ep;
        const char *local, *any;
    } defaults[] = {
        {&cfg.clients, local_clients, BROKER_ANY_CLIENTS},
        {&cfg.commands, local_commands, BROKER_ANY_COMMANDS},
        {&cfg.engines, local_engines, BROKER_ANY_ENGINES},
        {&cfg.workers, local_workers, BROKER_ANY_WORKERS},
    };
    for (size_t i = 0; i < 4; i++)
        *defaults[i].ep = defaults[i].local;
    const ferry_opt opts[] = {
        {"clients", "FERRY_CLIENTS", FERRY_OPT_STRING, &cfg.clients,
         "ROUTER endpoint for clients (Submit, StatsRequest); tcp://*:5558 with --curve-key",
         0, 0},
        {"commands", "FERRY_COMMANDS", FERRY_OPT_STRING, &cfg.commands,
         "PULL endpoint for engines' Commands; tcp://*:5555 with --curve-key", 0, 0},
        {"engines", "FERRY_ENGINES", FERRY_OPT_STRING, &cfg.engines,
         "ROUTER endpoint for engines (Hello, Result; Submit and Reply out); tcp://*:5556 "
         "with --curve-key",
         0, 0},
        {"workers", "FERRY_WORKERS", FERRY_OPT_STRING, &cfg.workers,
         "ROUTER endpoint for workers (Ready, Reply, Goodbye; Command out); tcp://*:5557 "
         "with --curve-key",
         0, 0},
        {"queue-max", "FERRY_QUEUE_MAX", FERRY_OPT_INT, &cfg.queue_max,
         "calls waiting for a worker, all functions together", 0, 100000000},
        {"scripts-max", "FERRY_SCRIPTS_MAX", FERRY_OPT_INT, &cfg.scripts_max,
         "scripts waiting for an engine slot", 0, 100000000},
        {"call-timeout", "FERRY_CALL_TIMEOUT", FERRY_OPT_INT, &cfg.call_timeout_ms,
         "call timeout in ms when a Command gives none, and the most it may give", 1,
         86400000},
        {"script-timeout", "FERRY_SCRIPT_TIMEOUT", FERRY_OPT_INT, &cfg.script_timeout_ms,
         "script timeout in ms when a Submit gives none, and the most it may give", 1,
         86400000},
        {"unserved-wait", "FERRY_UNSERVED_WAIT", FERRY_OPT_INT, &cfg.unserved_wait_ms,
         "ms a call waits for a worker serving its function before 'no_worker'", 0, 86400000},
        {"max-msg", "FERRY_MAX_MSG", FERRY_OPT_INT, &cfg.max_msg,
         "largest message accepted, in bytes", 1024, 1073741824},
        {"hwm", "FERRY_HWM", FERRY_OPT_INT, &cfg.hwm,
         "messages queued per peer and direction before sends report overloaded", 1,
         10000000},
        {"heartbeat-ms", "FERRY_HEARTBEAT_MS", FERRY_OPT_INT, &cfg.heartbeat_ms,
         "heartbeat interval towards engines and workers, in ms (use the same everywhere)", 10,
         3600000},
        {"liveness", "FERRY_LIVENESS", FERRY_OPT_INT, &cfg.liveness,
         "heartbeat intervals of silence before an engine or worker is declared lost", 2, 1000},
        {"workers-max", "FERRY_WORKERS_MAX", FERRY_OPT_INT, &cfg.workers_max,
         "workers registered at once; more are refused", 1, 10000000},
        {"engines-max", "FERRY_ENGINES_MAX", FERRY_OPT_INT, &cfg.engines_max,
         "engines registered at once; more are refused", 1, 10000000},
        {"functions-max", "FERRY_FUNCTIONS_MAX", FERRY_OPT_INT, &cfg.functions_max,
         "function names known at once; calls to more are answered overloaded", 1, 10000000},
        {"queue-bytes", "FERRY_QUEUE_BYTES", FERRY_OPT_INT, &cfg.queue_bytes,
         "bytes of Commands and scripts waiting, together; past it callers get overloaded "
         "(0: no bound)",
         0, 1e15},
        {"slots-max", "FERRY_SLOTS_MAX", FERRY_OPT_INT, &cfg.slots_max,
         "most slots taken from an engine's Hello (more are cut to this)", 1, 100000000},
        {"credit-max", "FERRY_CREDIT_MAX", FERRY_OPT_INT, &cfg.credit_max,
         "most credit taken from a worker's Ready (more is cut to this)", 1, 100000000},
        {"ready-functions-max", "FERRY_READY_FUNCTIONS_MAX", FERRY_OPT_INT,
         &cfg.ready_functions_max, "functions one worker may serve; a Ready with more is refused",
         1, 10000000},
        {"drain-timeout", "FERRY_DRAIN_TIMEOUT", FERRY_OPT_INT, &cfg.drain_ms,
         "on SIGTERM, ms the scripts and calls held here get to finish: Goodbye tells engines "
         "and clients to send new ones to their other brokers; 0: stop at once; a second "
         "signal stops it too",
         0, 86400000},
        {"curve-key", "FERRY_CURVE_KEY", FERRY_OPT_STRING, &cfg.curve_key,
         "the broker's secret certificate (ferry keygen): CURVE on every socket", 0, 0},
        {"allow-clients", "FERRY_ALLOW_CLIENTS", FERRY_OPT_STRING, &cfg.allow[BROKER_ROLE_CLIENT],
         "folder of the public certificates of clients let in (re-read on SIGHUP)", 0, 0},
        {"allow-engines", "FERRY_ALLOW_ENGINES", FERRY_OPT_STRING, &cfg.allow[BROKER_ROLE_ENGINE],
         "folder of the public certificates of engines let in (re-read on SIGHUP)", 0, 0},
        {"allow-workers", "FERRY_ALLOW_WORKERS", FERRY_OPT_STRING, &cfg.allow[BROKER_ROLE_WORKER],
         "folder of the public certificates of workers let in (re-read on SIGHUP)", 0, 0},
        {"metrics", "FERRY_METRICS", FERRY_OPT_STRING, &cfg.metrics,
         "HOST:PORT to serve Prometheus metrics on (GET /metrics, plain HTTP, no auth); off "
         "when not given",
         0, 0},
        {"metrics-peers", "FERRY_METRICS_PEERS", FERRY_OPT_INT, &cfg.metrics_peers,
         "with --metrics, series per engine and per worker for at most this many of each "
         "(by routing id); 0: none",
         0, 10000},
        {"insecure", "FERRY_INSECURE", FERRY_OPT_FLAG, &cfg.insecure,
         "without --curve-key, bind non-loopback endpoints anyway (anyone who reaches them "
         "owns the stack)",
         0, 0},
    };
    const ferry_cli cli = {
        .program = "ferry-broker",
        .synopsis = "[options]",
        .summary = "Routes Ferry calls from engines to workers and back, and scripts from "
                   "clients to engines. Binds every endpoint; engines, workers and clients "
                   "connect (to several brokers at once, if they are given lists). SIGTERM "
                   "drains (see --drain-timeout), a second one stops at once.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 1, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;
    /* With keys, the defaults listen on every interface: other hosts may come in.
     * (An endpoint still pointing at its default array was not given.) */
    for (size_t i = 0; cfg.curve_key && *cfg.curve_key && i < 4; i++)
        if (*defaults[i].ep == defaults[i].local)
            *defaults[i].ep = defaults[i].any;

    ferry_log_init("broker");
    broker b;
    char err[512];
    if (broker_open(&b, &cfg, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-broker: %s\n", err);
        return 1; /* protected mode's refusal included: a setup that cannot run */
    }
    ferry_err e = broker_run(&b);
    broker_close(&b);
    return e == FERRY_OK ? 0 : 1;
}

/*
 * ferry-broker: the rendezvous point of a Ferry deployment.
 *
 * Parses flags (each with an environment variable), binds the four sockets
 * and runs the loop until SIGINT or SIGTERM (SIGHUP re-reads the allow-lists
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
    const ferry_opt opts[] = {
        {"clients", "FERRY_CLIENTS", FERRY_OPT_STRING, &cfg.clients,
         "ROUTER endpoint for clients (Submit, StatsRequest)", 0, 0},
        {"commands", "FERRY_COMMANDS", FERRY_OPT_STRING, &cfg.commands,
         "PULL endpoint for engines' Commands", 0, 0},
        {"engines", "FERRY_ENGINES", FERRY_OPT_STRING, &cfg.engines,
         "ROUTER endpoint for engines (Hello, Result; Submit and Reply out)", 0, 0},
        {"workers", "FERRY_WORKERS", FERRY_OPT_STRING, &cfg.workers,
         "ROUTER endpoint for workers (Ready, Reply, Goodbye; Command out)", 0, 0},
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
        {"curve-key", "FERRY_CURVE_KEY", FERRY_OPT_STRING, &cfg.curve_key,
         "the broker's secret certificate (ferry keygen): CURVE on every socket", 0, 0},
        {"allow-clients", "FERRY_ALLOW_CLIENTS", FERRY_OPT_STRING, &cfg.allow[BROKER_ROLE_CLIENT],
         "folder of the public certificates of clients let in (re-read on SIGHUP)", 0, 0},
        {"allow-engines", "FERRY_ALLOW_ENGINES", FERRY_OPT_STRING, &cfg.allow[BROKER_ROLE_ENGINE],
         "folder of the public certificates of engines let in (re-read on SIGHUP)", 0, 0},
        {"allow-workers", "FERRY_ALLOW_WORKERS", FERRY_OPT_STRING, &cfg.allow[BROKER_ROLE_WORKER],
         "folder of the public certificates of workers let in (re-read on SIGHUP)", 0, 0},
    };
    const ferry_cli cli = {
        .program = "ferry-broker",
        .synopsis = "[options]",
        .summary = "Routes Ferry calls from engines to workers and back, and scripts from "
                   "clients to engines. Binds every endpoint; engines, workers and clients "
                   "connect.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 1, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;

    ferry_log_init("broker");
    broker b;
    char err[512];
    if (broker_open(&b, &cfg, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-broker: %s\n", err);
        return 1;
    }
    ferry_err e = broker_run(&b);
    broker_close(&b);
    return e == FERRY_OK ? 0 : 1;
}

/*
 * ferry-engine: hosts Lua scripts for the broker.
 *
 * Parses flags, opens the engine (engine.h) on one ZeroMQ context and runs
 * the event loop until SIGINT or SIGTERM; then fails what still runs, closes
 * everything and exits 0.
 */
#include "engine.h"

#include "ferry_log.h"
#include "ferry_loop.h"
#include "ferry_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

int main(int argc, char **argv)
{
    engine_config cfg = {
        .commands = "tcp://localhost:5555",
        .engines = "tcp://localhost:5556",
        .slots = 256,
        .script_timeout_ms = 30000,
        .call_timeout_ms = 30000,
        .max_output = 1024 * 1024,
        .max_memory = 64L * 1024 * 1024,
        .hwm = 10000,
    };
    const ferry_opt opts[] = {
        {"commands", "FERRY_COMMANDS", FERRY_OPT_STRING, &cfg.commands,
         "broker endpoint for commands (PUSH connects)", 0, 0},
        {"engines", "FERRY_ENGINES", FERRY_OPT_STRING, &cfg.engines,
         "broker endpoint for engines (DEALER connects)", 0, 0},
        {"slots", "FERRY_SLOTS", FERRY_OPT_INT, &cfg.slots, "scripts run at once", 1, 1000000},
        {"script-timeout", "FERRY_SCRIPT_TIMEOUT", FERRY_OPT_INT, &cfg.script_timeout_ms,
         "default and largest script deadline in ms", 1, 86400000},
        {"call-timeout", "FERRY_CALL_TIMEOUT", FERRY_OPT_INT, &cfg.call_timeout_ms,
         "largest timeout of one call in ms", 1, 86400000},
        {"max-output", "FERRY_MAX_OUTPUT", FERRY_OPT_INT, &cfg.max_output,
         "bytes of print output kept per script", 0, 1 << 30},
        {"max-memory", "FERRY_MAX_MEMORY", FERRY_OPT_INT, &cfg.max_memory,
         "bytes of memory per script's Lua state", 65536, 1099511627776.0},
        {"hwm", NULL, FERRY_OPT_INT, &cfg.hwm, "high-water mark of the broker sockets", 1,
         10000000},
    };
    const ferry_cli cli = {
        .program = "ferry-engine",
        .synopsis = "[options]",
        .summary = "Runs Lua scripts handed out by the Ferry broker, each in its own Lua "
                   "state; their ferry.call()s go to the broker's workers.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 1, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;

    ferry_log_init("engine");
    void *zctx = zmq_ctx_new();
    if (!zctx) {
        fprintf(stderr, "ferry-engine: cannot create a ZeroMQ context: %s\n",
                zmq_strerror(zmq_errno()));
        return 1;
    }
    ferry_loop loop;
    ferry_loop_init(&loop);
    engine *e = NULL;
    char err[256];
    if (engine_new(&cfg, zctx, &loop, &e, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-engine: %s\n", err);
        rc = 1;
        goto out;
    }
    rc = ferry_loop_run(&loop) == FERRY_OK ? 0 : 1;
out:
    engine_destroy(&e);
    ferry_loop_fini(&loop);
    zmq_ctx_term(zctx);
    return rc;
}

/*
 * ferry-engine: hosts Lua scripts for the broker.
 *
 * Parses flags, opens the engine (engine.h) on one ZeroMQ context and runs
 * the event loop until SIGINT or SIGTERM; then fails what still runs, closes
 * everything and exits 0.
 */
#include "engine.h"
#include "state_pool.h"
#include "watchdog.h"

#include "ferry_brokers.h"
#include "ferry_log.h"
#include "ferry_loop.h"
#include "ferry_opts.h"
#include "ferry_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

static int64_t drain_timeout_ms;

/* SIGTERM or SIGINT: drain (the first), stop (the second). */
static void on_signal(ferry_loop *loop, int signo, void *arg)
{
    (void)loop;
    ferry_info("signal", "signo=%d", signo);
    engine_drain(arg, drain_timeout_ms);
}

int main(int argc, char **argv)
{
    long watchdog_grace_ms = 2000;
    const char *curve_key = NULL, *broker_key = NULL, *metrics = NULL;
    long drain_ms = 10000;
    engine_config cfg = {
        .commands = "tcp://localhost:5555",
        .engines = "tcp://localhost:5556",
        .slots = 256,
        .script_timeout_ms = 30000,
        .call_timeout_ms = 30000,
        .max_output = 1024 * 1024,
        .max_memory = 64L * 1024 * 1024,
        .max_instructions = 1000000000,
        .max_source = 1024 * 1024,
        .hwm = 10000,
        .heartbeat_ms = 1000,
        .liveness = 3,
        .calls_max = 100000,
        .max_msg = FERRY_DEFAULT_MAX_MSG,
        .inflight_bytes = ENGINE_DEFAULT_INFLIGHT_BYTES,
    };
    const ferry_opt opts[] = {
        {"commands", "FERRY_COMMANDS", FERRY_OPT_STRING, &cfg.commands,
         "broker endpoint for commands (PUSH connects); several brokers: a comma-separated "
         "list, broker i at position i of this list and of --engines",
         0, 0},
        {"engines", "FERRY_ENGINES", FERRY_OPT_STRING, &cfg.engines,
         "broker endpoint for engines (DEALER connects); a list as --commands, in the same "
         "order. The slots are split among the brokers connected; a call goes through each "
         "in turn; a broker lost fails only the calls through it (broker_lost)",
         0, 0},
        {"discover", "FERRY_DISCOVER", FERRY_OPT_STRING, &cfg.discover,
         "a name whose every address is a broker (e.g. tasks.broker in Docker Swarm): "
         "resolved now and every 3 s, each address connected to on the ports of --commands "
         "and --engines (their hosts unused), addresses that are gone dropped; one "
         "--broker-key for all",
         0, 0},
        {"slots", "FERRY_SLOTS", FERRY_OPT_INT, &cfg.slots, "scripts run at once", 1, 1000000},
        {"script-timeout", "FERRY_SCRIPT_TIMEOUT", FERRY_OPT_INT, &cfg.script_timeout_ms,
         "default and largest script deadline in ms", 1, 86400000},
        {"call-timeout", "FERRY_CALL_TIMEOUT", FERRY_OPT_INT, &cfg.call_timeout_ms,
         "largest timeout of one call in ms", 1, 86400000},
        {"max-output", "FERRY_MAX_OUTPUT", FERRY_OPT_INT, &cfg.max_output,
         "bytes of print output kept per script", 0, 1 << 30},
        {"max-memory", "FERRY_MAX_MEMORY", FERRY_OPT_INT, &cfg.max_memory,
         "bytes of memory per script: its Lua state plus the arguments of its calls in flight",
         65536, 1099511627776.0},
        {"max-instructions", "FERRY_MAX_INSTRUCTIONS", FERRY_OPT_INT, &cfg.max_instructions,
         "VM instructions plus metered C steps per script (about 4 s of pure Lua by "
         "default); 0: no limit",
         0, 1e15},
        {"max-source", "FERRY_MAX_SOURCE", FERRY_OPT_INT, &cfg.max_source,
         "bytes of a script's source, and of each chunk it compiles with load", 1, 1 << 30},
        {"hwm", NULL, FERRY_OPT_INT, &cfg.hwm, "high-water mark of the broker sockets", 1,
         10000000},
        {"heartbeat-ms", "FERRY_HEARTBEAT_MS", FERRY_OPT_INT, &cfg.heartbeat_ms,
         "heartbeat interval towards the broker, in ms (use the broker's)", 10, 3600000},
        {"liveness", "FERRY_LIVENESS", FERRY_OPT_INT, &cfg.liveness,
         "heartbeat intervals of broker silence before calls in flight end broker_lost", 2,
         1000},
        {"calls-max", "FERRY_CALLS_MAX", FERRY_OPT_INT, &cfg.calls_max,
         "calls in flight at once, all scripts together; more are answered overloaded", 1,
         100000000},
        {"max-msg", "FERRY_MAX_MSG", FERRY_OPT_INT, &cfg.max_msg,
         "largest message sent or accepted, in bytes (use the broker's): a call or result "
         "that would be larger fails alone",
         ENGINE_MIN_MAX_MSG, 1073741824},
        {"inflight-bytes", "FERRY_INFLIGHT_BYTES", FERRY_OPT_INT, &cfg.inflight_bytes,
         "bytes of calls in flight at once, all scripts together (each script's count against "
         "its --max-memory too); more are answered overloaded",
         65536, 1099511627776.0},
        {"drain-timeout", "FERRY_DRAIN_TIMEOUT", FERRY_OPT_INT, &drain_ms,
         "on SIGTERM, ms the running scripts get to finish (no new ones come) before "
         "the rest end engine_lost; 0: end them at once; a second signal ends them too",
         0, 86400000},
        {"watchdog-grace", "FERRY_WATCHDOG_GRACE", FERRY_OPT_INT, &watchdog_grace_ms,
         "ms a script may stay inside one C function past its deadline before the engine "
         "exits (status 70) to be restarted; 0: never exit",
         0, 3600000},
        {"curve-key", "FERRY_CURVE_KEY", FERRY_OPT_STRING, &curve_key,
         "this engine's secret certificate (ferry keygen): CURVE towards the broker", 0, 0},
        {"broker-key", "FERRY_BROKER_KEY", FERRY_OPT_STRING, &broker_key,
         "the broker's public certificate (with --curve-key); several brokers: one for all, "
         "or a comma-separated list in the order of --commands",
         0, 0},
        {"metrics", "FERRY_METRICS", FERRY_OPT_STRING, &metrics,
         "HOST:PORT to serve Prometheus metrics on (GET /metrics, plain HTTP, no auth); off "
         "when not given",
         0, 0},
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
    char err[512];
    /* One CURVE setting per broker: count them as engine_new will. */
    ferry_list brokers;
    ferry_err ce = FERRY_OK;
    static ferry_curve curves[FERRY_BROKERS_MAX];
    if (cfg.discover && *cfg.discover) {
        ce = ferry_curve_client(&cfg.curve, curve_key, broker_key, err, sizeof err);
    } else {
        cfg.discover = NULL;
        ce = ferry_list_split(cfg.commands, "--commands", &brokers, err, sizeof err);
        size_t nbrokers = brokers.n;
        ferry_list_fini(&brokers);
        if (ce == FERRY_OK)
            ce = ferry_curve_clients(curves, nbrokers, curve_key, broker_key, err, sizeof err);
        cfg.curves = curves;
    }
    if (ce != FERRY_OK) {
        fprintf(stderr, "ferry-engine: %s\n", err);
        return ce == FERRY_EUSAGE ? 2 : 1;
    }
    if (engine_watchdog_init(watchdog_grace_ms, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-engine: %s\n", err);
        return 1;
    }
    void *zctx = zmq_ctx_new();
    if (!zctx) {
        fprintf(stderr, "ferry-engine: cannot create a ZeroMQ context: %s\n",
                zmq_strerror(zmq_errno()));
        return 1;
    }
    ferry_loop loop;
    ferry_loop_init(&loop);
    engine *e = NULL;
    if (engine_new(&cfg, zctx, &loop, &e, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-engine: %s\n", err);
        rc = 1;
        goto out;
    }
    if (metrics && *metrics && engine_serve_metrics(e, metrics, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-engine: %s\n", err);
        rc = 1;
        goto out;
    }
    drain_timeout_ms = drain_ms;
    loop.on_signal = on_signal;
    loop.signal_arg = e;
    rc = ferry_loop_run(&loop) == FERRY_OK ? 0 : 1;
out:
    engine_destroy(&e);
    engine_pool_clear();
    ferry_loop_fini(&loop);
    zmq_ctx_term(zctx);
    engine_watchdog_fini();
    return rc;
}

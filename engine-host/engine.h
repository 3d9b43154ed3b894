/*
 * engine: one engine host process's state, sockets and message handlers.
 *
 * The engine connects a PUSH socket (Commands out) and a DEALER socket whose
 * routing id is its engine id (Hello and Results out; Submits, Replies and
 * Heartbeats in) to the broker, runs each submitted script in its own
 * lua_State (script.h) and matches every Reply to the waiting script by
 * call_id in O(1). Every call and every script has a timer, so each call gets
 * exactly one answer and no script waits forever.
 *
 * Several brokers: position i of the commands and engines lists is broker
 * i. The engine holds one PUSH and one DEALER (with its own routing id) per
 * broker, and everything below holds per broker: its liveness, its Hello,
 * its calls in flight. A script's Result goes back through the broker that
 * sent it; each call goes through the next live broker in turn. The slots
 * are split among the live brokers (Hello again whenever that set changes),
 * so that together they never hand out more than --slots; one that does gets
 * the script refused `overloaded` as before.
 *
 * Liveness of the broker: the engine sends a Heartbeat on the DEALER when it
 * sent nothing else for an interval (looking twice per interval) and treats
 * any message from the broker as one. When the DEALER's connection drops, or the broker is silent
 * for liveness intervals, the broker is lost: every call in flight is
 * answered `broker_lost` (the scripts go on and may catch it), new calls
 * fail the same way at once, and Hello goes out again (with the scripts
 * still running) as soon as both connections are up.
 *
 * Sizes: no message leaves larger than max_msg, the broker's limit (past it
 * libzmq drops the connection, and every call or script of this engine in
 * flight over it). A Command that would be larger fails its call alone
 * (bad_value); a Result that would be is replaced by a `limit` error for its
 * script alone.
 *
 * Memory of calls: a Command is held (in the PUSH queue, at the broker, at
 * the worker) until its call is answered. Its bytes count against its
 * script's memory limit with the Lua state (engine_script_room), and all
 * scripts' together against inflight_bytes: past it a call is refused
 * `overloaded` at once.
 */
#ifndef ENGINE_ENGINE_H
#define ENGINE_ENGINE_H

#include "ferry_cert.h"
#include "ferry_err.h"
#include "ferry_loop.h"

#include <stddef.h>
#include <stdint.h>

/* Smallest max_msg: a Result that replaces an oversize one must fit. */
#define ENGINE_MIN_MAX_MSG 1024

/* Default bound of the bytes of Commands in flight, all scripts together. */
#define ENGINE_DEFAULT_INFLIGHT_BYTES (256L * 1024 * 1024)

typedef struct {
    const char *commands;   /* brokers' commands endpoints, comma-separated: broker i at
                             * position i (a PUSH connects to each) */
    const char *engines;    /* brokers' engines endpoints, as many in the same order (a
                             * DEALER connects to each) */
    long slots;             /* scripts run at once */
    long script_timeout_ms; /* default and largest script deadline */
    long call_timeout_ms;   /* largest timeout of one call */
    long max_output;        /* bytes of print output per script */
    long max_memory;        /* bytes per lua_State */
    long max_instructions;  /* VM instructions plus metered C steps per script; 0: no limit */
    long max_source;        /* bytes of a script's source, and of each chunk it loads */
    long hwm;               /* send/receive high-water marks */
    long heartbeat_ms;      /* heartbeat interval towards the broker; 0: no heartbeats and
                             * no liveness check (the connection monitor still works) */
    long liveness;          /* intervals of broker silence before it is declared lost */
    long calls_max;         /* calls in flight at once, all scripts; 0: no bound */
    long max_msg;           /* largest message sent or received, bytes (the broker's --max-msg);
                             * 0: FERRY_DEFAULT_MAX_MSG; else at least ENGINE_MIN_MAX_MSG */
    long inflight_bytes;    /* bytes of Commands in flight at once, all scripts together;
                             * 0: ENGINE_DEFAULT_INFLIGHT_BYTES */
    ferry_curve curve;      /* CURVE towards every broker (on == 0: none), unless curves */
    const ferry_curve *curves; /* borrowed for engine_new: one per broker, in list order;
                                * NULL: curve for all */
    const char *discover;   /* NULL, or a name whose every address is a broker, on the ports
                             * of commands and engines (their hosts are not used); resolved
                             * again every discover_ms: new addresses are connected to, gone
                             * ones dropped. All take curve. */
    long discover_ms;       /* 0: FERRY_DISCOVER_INTERVAL_MS */
} engine_config;

typedef struct {
    uint64_t scripts_started;
    uint64_t scripts_completed; /* results sent or lost, ok or not */
    uint64_t scripts_failed;    /* completed with ok = false */
    uint64_t scripts_refused;   /* answered overloaded: no free slot */
    uint64_t calls_sent;
    uint64_t calls_answered;  /* replies matched to a waiting call */
    uint64_t calls_timed_out; /* answered timeout by the engine's own timer */
    uint64_t late_replies;    /* replies for calls no longer waited for */
    uint64_t dropped;         /* bad messages */
    uint64_t results_lost;    /* results the DEALER would not take */
    uint64_t calls_refused;   /* ferry.calls refused at once: calls_max, or no broker */
    uint64_t calls_broker_lost; /* calls in flight answered broker_lost */
    uint64_t broker_losses;   /* times the broker was declared lost */
    uint64_t oversize;        /* messages not sent for being over max_msg (calls failed,
                               * results replaced by a limit error) */
} engine_stats;

typedef struct engine engine;

/*
 * Opens the sockets on zctx, registers them with loop and arranges for Hello
 * to be sent once the broker connection is up. On failure returns an error
 * and a message naming what failed in err.
 */
ferry_err engine_new(const engine_config *cfg, void *zctx, ferry_loop *loop, engine **out,
                     char *err, size_t errlen);

/*
 * Fails the scripts still running (engine_lost) towards the broker, frees
 * them, closes the sockets and frees the engine. NULL-safe; nulls *ep. The
 * loop must not run any more.
 */
void engine_destroy(engine **ep);

/*
 * Serves the engine's Prometheus series on hostport (--metrics, metrics.h)
 * from its loop until engine_destroy. On failure writes a line into err.
 */
ferry_err engine_serve_metrics(engine *e, const char *hostport, char *err, size_t errlen);

const char *engine_id(const engine *e);
const engine_stats *engine_get_stats(const engine *e);

/* Brokers in the lists, and how many are registered (Hello sent) now. */
size_t engine_brokers(const engine *e);
size_t engine_brokers_live(const engine *e);

/* Scripts running now. */
size_t engine_running(const engine *e);

/*
 * Leaving (the first SIGTERM): tells the broker Goodbye so that no new
 * script comes, lets the running ones finish, and stops the loop when none
 * is left or drain_ms passed (engine_destroy then fails the rest with
 * engine_lost). Called again (a second signal), stops the loop at once.
 */
void engine_drain(engine *e, int64_t drain_ms);

#endif

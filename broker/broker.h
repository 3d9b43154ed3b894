/*
 * broker: the context of one ferry-broker process and its socket handlers.
 *
 * Four bound sockets (clients ROUTER, commands PULL, engines ROUTER,
 * workers ROUTER) on one ferry_loop. Each handler drains up to
 * BROKER_BATCH messages per wakeup, validates each one at this boundary and
 * hands it to the routing tables (dispatch.h for calls, scripts.h for
 * scripts), which do O(1) work per message. Commands and Replies are
 * checked at their top level only (ferry_wire_peek_call) and forwarded
 * unchanged; their values are checked where they are decoded.
 *
 * Anything a peer sends that does not fit (frame count, undecodable,
 * version, a body this socket does not carry, missing fields, unknown ids)
 * is dropped, counted in `dropped` and logged at most once a second per
 * kind. Peers (engines, workers) are declared lost after --liveness
 * heartbeat intervals of silence, or as soon as a send finds them gone.
 * Out of memory: the message at hand is answered `overloaded` where the
 * protocol has an answer for it, else dropped and counted; the broker keeps
 * running.
 */
#ifndef BROKER_BROKER_H
#define BROKER_BROKER_H

#include "dispatch.h"
#include "ferry_err.h"
#include "ferry_loop.h"
#include "metrics.h"
#include "scripts.h"
#include "trust.h"

#include <stddef.h>
#include <stdint.h>

#define BROKER_BATCH 256       /* messages per socket per wakeup, for fairness */
#define BROKER_GRACE_MS 5000   /* backstop past a deadline for in-flight calls and scripts */
#define BROKER_PROBE_MS 10     /* from a peer's disconnection to the probe that finds who */
#define BROKER_STATS_BYTES 65536     /* a Stats reply's function and worker lists stay near this */

/* Default endpoints: loopback without keys (protected mode), every interface with them. */
#define BROKER_LOCAL_CLIENTS "tcp://127.0.0.1:5558"
#define BROKER_LOCAL_COMMANDS "tcp://127.0.0.1:5555"
#define BROKER_LOCAL_ENGINES "tcp://127.0.0.1:5556"
#define BROKER_LOCAL_WORKERS "tcp://127.0.0.1:5557"
#define BROKER_ANY_CLIENTS "tcp://*:5558"
#define BROKER_ANY_COMMANDS "tcp://*:5555"
#define BROKER_ANY_ENGINES "tcp://*:5556"
#define BROKER_ANY_WORKERS "tcp://*:5557"

typedef struct {
    const char *clients;  /* ROUTER endpoints to bind, and the PULL one */
    const char *commands;
    const char *engines;
    const char *workers;
    long queue_max;         /* calls waiting for a worker */
    long scripts_max;       /* scripts waiting for an engine slot */
    long call_timeout_ms;   /* default and cap of a call's timeout */
    long script_timeout_ms; /* default and cap of a script's timeout */
    long unserved_wait_ms;  /* how long a call waits for a worker serving its function */
    long max_msg;           /* ZMQ_MAXMSGSIZE on every socket */
    long hwm;               /* send and receive high-water mark on every socket */
    long heartbeat_ms;      /* heartbeat interval towards engines and workers; 0: none */
    long liveness;          /* intervals of silence before a peer is declared lost */
    long workers_max;       /* registered workers */
    long engines_max;       /* registered engines */
    long functions_max;     /* known function names */
    const char *curve_key;  /* the broker's secret certificate; NULL: no CURVE */
    const char *allow[BROKER_ROLE_COUNT]; /* allow-list folder per role (trust.h) */
    int insecure;           /* without curve_key, bind non-loopback endpoints all the same */
    long queue_bytes;       /* bytes of queued Commands and Submits together; 0: no bound */
    long slots_max;         /* a Hello's slots are cut to this */
    long credit_max;        /* a Ready's credit is cut to this */
    long ready_functions_max; /* a Ready with more functions is refused */
    const char *metrics;    /* HOST:PORT serving GET /metrics (metrics.h); NULL or "": off */
    long metrics_peers;     /* per-peer series for at most this many engines and workers */
    long drain_ms;          /* on SIGTERM, how long the scripts and calls it holds may take to
                             * finish; 0: stop at once */
} broker_config;

/* Kinds of dropped messages, each with its own rate-limited log line. */
typedef enum {
    BROKER_DROP_FRAMES,       /* wrong number of frames */
    BROKER_DROP_DECODE,       /* does not decode, no body, or wrong version */
    BROKER_DROP_UNEXPECTED,   /* a body this socket does not carry */
    BROKER_DROP_INVALID,      /* decoded but a field is missing or out of range */
    BROKER_DROP_DUPLICATE,    /* a Command whose (engine_id, call_id) is already known */
    BROKER_DROP_UNKNOWN,      /* a Reply or Result that matches nothing */
    BROKER_DROP_UNDELIVERABLE, /* the engine or client it is for cannot be reached */
    BROKER_DROP_REVOKED,      /* from a key taken off its role's allow-list since it connected */
    BROKER_DROP_IMPOSTOR,     /* under a registered peer's routing id, from another key */
    BROKER_DROP_FORGED,       /* a Command under an engine id that another key registered */
    BROKER_DROP_COUNT
} broker_drop;

/* The event name a drop of kind is logged under, and its metrics label. */
const char *broker_drop_name(broker_drop kind);

typedef struct {
    int64_t last_ms;
    uint64_t suppressed;
} broker_log_site;

/* Peers one drain gathers batches for at once (more: the gathered go first). */
#define BROKER_OUTS 16

/* Envelopes for one peer gathered during one drain of a socket, sent as one
 * message when the drain ends (protocol.md, Batches). */
typedef struct {
    int worker;                       /* to a worker (Commands) or an engine (Replies) */
    uint8_t rid[FERRY_ROUTING_ID_MAX]; /* the peer's routing id */
    size_t rid_len;
    ferry_batch batch;
} broker_out;
/* A draining broker looks this often whether it holds nothing (twice in a
 * row: it stops), and stops when nothing it held completed for the stall time. */
#define BROKER_DRAIN_QUIET_MS 100
#define BROKER_DRAIN_STALL_MS 1000

typedef struct broker {
    broker_config cfg;
    void *zctx;
    void *clients;  /* ROUTER */
    void *commands; /* PULL */
    void *engines;  /* ROUTER */
    void *workers;  /* ROUTER */
    ferry_loop loop;
    broker_dispatch dispatch;
    broker_scripts scripts;
    uint64_t dropped;           /* every message dropped, whatever the kind */
    uint64_t completed;         /* worker replies delivered to engines */
    uint64_t scripts_completed; /* engine results delivered to clients */
    broker_log_site drops[BROKER_DROP_COUNT];
    broker_log_site io_log;
    broker_log_site unknown_log; /* heartbeats from peers we do not know */
    ferry_timer sweep;           /* heartbeats out, liveness of peers; twice per heartbeat_ms */
    int64_t swept_ms;            /* when the sweep last ran: a gap past liveness is a stall */
    ferry_timer probe;           /* a heartbeat to every peer, soon after a disconnection */
    void *workers_mon;           /* PAIRs with the disconnections of the workers and */
    void *engines_mon;           /* engines sockets */
    ferry_curve curve;           /* the broker's key pair, when cfg.curve_key */
    broker_trust trust;          /* allow-lists and ZAP handler, when curve.on */
    broker_budget budget;        /* bytes queued, calls and scripts together (--queue-bytes) */
    broker_out outs[BROKER_OUTS]; /* batches being gathered, nouts of them in use */
    size_t nouts;
    int gathering;               /* in drain_socket: Commands and Replies may wait in outs */
    uint64_t seq;                /* counts received Batches; 0: none */
    struct {                     /* what the items of Batch seq passed already (keys on):
                                  * the same connection and key sent them all */
        uint64_t seq;            /* 0 once a peer was lost since */
        int worker;              /* its sender is no impostor of its worker id */
        int engine;              /* a Command under engine id eid is no forgery */
        uint8_t eid[FERRY_ROUTING_ID_MAX];
        size_t eid_len;
    } checked;
    broker_metrics metrics;      /* --metrics: series and their HTTP server */
    int draining;                /* SIGTERM: said Goodbye; stops once it holds nothing */
    ferry_timer drain;           /* the drain's time limit */
    ferry_timer quiet;           /* draining: looks every BROKER_DRAIN_QUIET_MS whether to stop */
    int drain_empty;             /* nothing was held at the last look */
    uint64_t drain_progress;     /* completed + scripts_completed at the last change */
    int64_t drain_progress_ms;   /* when that changed */
} broker;

/* The defaults of every flag (endpoints included). */
void broker_config_defaults(broker_config *cfg);

/*
 * Sets up b and binds the four sockets. On failure writes one line naming
 * the endpoint and the reason into err, releases what was set up, and
 * returns FERRY_EIO (or FERRY_ENOMEM). cfg's strings are borrowed for b's
 * lifetime.
 *
 * Protected mode: without cfg->curve_key every endpoint must be loopback
 * (tcp:// on localhost, 127.0.0.0/8 or ::1), ipc:// or inproc://, unless
 * cfg->insecure; else FERRY_EUSAGE with a message saying how to make keys.
 */
ferry_err broker_open(broker *b, const broker_config *cfg, char *err, size_t errlen);

/*
 * Runs the loop until SIGINT/SIGTERM. The first signal drains (several
 * brokers, docs/protocol.md): Goodbye to every engine and to every client it
 * holds scripts of (and to each that submits later), so that new calls and
 * scripts go to the other brokers; the loop stops once no script and no call
 * is left here, or after drain_ms. A second signal stops it at once.
 */
ferry_err broker_run(broker *b);

/* Frees every record, closes the sockets and terminates the ZeroMQ context. */
void broker_close(broker *b);

#endif

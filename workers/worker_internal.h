/*
 * worker_internal.h: what the files of the worker library share.
 *
 * worker.c owns the process side (sockets, loop, function table, Ready,
 * heartbeats), worker_dispatch.c turns received frames into calls, and
 * worker_call.c runs one call from its Command to its Reply. Tests include
 * this header to drive a worker without sockets (worker_new_offline).
 */
#ifndef WORKER_INTERNAL_H
#define WORKER_INTERNAL_H

#include "ferry.pb-c.h"
#include "ferry/worker.h"
#include "ferry_brokers.h"
#include "ferry_cert.h"
#include "ferry_err.h"
#include "ferry_loop.h"
#include "ferry_timer.h"
#include "ferry_value.h"
#include "ferry_wire.h"
#include "ferry_metrics.h"
#include "ferry_discover.h"

#include <string.h>
#include "ferry_hash.h"

typedef enum {
    WORKER_RUNNING,  /* takes calls */
    WORKER_DRAINING, /* said Goodbye: finishes its calls (and those still on their way), then
                      * stops the loop */
    WORKER_STOPPING, /* destroy is cancelling calls: answers send nothing */
} worker_state;

typedef enum {
    CALL_QUEUED,    /* waiting for a slot of its function; handler not run yet */
    CALL_RUNNING,   /* handler started, answer owed and expected by the engine */
    CALL_TIMED_OUT, /* `timeout` replied; handler still owes an answer, which is discarded */
    CALL_CANCELLED, /* worker shutting down; an answer is discarded */
} call_state;

typedef struct worker_function {
    char *name; /* owned; the hash key */
    ferry_handler handler;
    void *udata;
    int idempotent;
    unsigned max_concurrency; /* 0: no limit of its own */
    unsigned running;         /* handlers started and not answered (timed out ones too) */
    ferry_call *waiting;      /* FIFO (utlist DL through qprev/qnext) of CALL_QUEUED calls */
    ferry_timer pump;         /* starts waiting calls outside any handler's stack */
    ferry_worker *worker;
    UT_hash_handle hh;
    uint64_t outcomes[FERRY_METRICS_OUTCOMES]; /* answers by outcome (worker_metrics.h) */
    ferry_metrics_hist latency;                /* handler start -> answer (worker_metrics.h) */
} worker_function;

/*
 * Deadlines without a timer per call: calls whose deadlines come in
 * non-decreasing order (all those with the same timeout, as they arrive) share
 * a lane, a FIFO with one timer. Appending and removing are O(1); the timer is
 * left armed when its head goes (it fires early, at most once a timeout
 * period, and is re-armed at the new head), so answering a call touches no
 * heap. A call no lane can take keeps a timer of its own (call->deadline).
 * Deadlines stay exact: a call times out when the loop's clock reaches its
 * deadline_ms (calls of one lane with the same deadline in arrival order).
 *
 * A call its handler answers before returning needs no deadline at all, so
 * the deadline is set only once the handler returned without answering
 * (timeout_ms from then: a handler does not block the loop, so that is
 * when the Command came, give or take the handler's own run), when the call
 * is queued instead, or when ferry_call_remaining_ms first asks for it: no
 * clock read and no lane for the calls answered at once.
 */
#define WORKER_LANES 4

typedef struct {
    ferry_call *head;         /* DL list through dprev/dnext; deadlines non-decreasing */
    int64_t last_ms;          /* deadline of the last call appended (kept while empty) */
    uint32_t last_timeout_ms; /* and its timeout */
    ferry_timer timer;        /* while head: armed at or before head->deadline_ms */
    ferry_worker *worker;
} worker_lane;

typedef struct {
    int64_t last_ms;
    uint64_t suppressed;
} worker_limit;

/*
 * One broker of the endpoint list and everything the worker holds towards
 * it. Offline (tests) there is one, without sockets. The credit is split
 * among the connected brokers (worker.c), so that together they never send
 * more than the concurrency.
 */
typedef struct worker_link {
    ferry_worker *w;
    unsigned index;    /* position in the list */
    void *dealer;
    void *monitor;     /* PAIR receiving the DEALER's connection events */
    char *endpoint;    /* owned: the broker's workers endpoint (NULL offline) */
    ferry_curve curve; /* CURVE towards it (on == 0: none) */
    char id[FERRY_ROUTING_ID_MAX + 1]; /* the DEALER's routing id */
    int connected;     /* a session with this broker is up: Ready can go */
    int ready_pending; /* Ready must be (re)sent */
    int ready_backoff_ms;
    ferry_timer ready_retry;
    int64_t last_heard_ms; /* last message from the broker */
    int64_t last_sent_ms;  /* last message to it */
    unsigned credit;       /* announced in the last Ready */
    size_t in_flight;      /* calls it gave us that await their reply */
    worker_limit lim_auth;
    char addr[FERRY_DISCOVER_ADDR_MAX]; /* --discover: where it was found; "" else */
    int retired;           /* --discover: its address is gone; disconnected, its slot reused
                            * once its calls are answered */
    ferry_batch batch;     /* Replies of this turn of on_dealer, sent as one message at its end */
    int broker_batches;    /* this session's broker sent a Batch: it takes ours (protocol.md) */
} worker_link;

/*
 * A call record. Records are reused (worker->spare_calls); a spare one keeps
 * worker and holds depth 0, listed 0, lane NULL and both timers idle, which
 * is how every record is left when its call ends, so starting a call sets
 * only the first group of fields (fn to data).
 */
struct ferry_call {
    worker_function *fn;       /* borrowed from the function table, which outlives calls */
    Ferry__Envelope *env;      /* owned: the decoded Command; args point into it */
    const Ferry__Command *cmd; /* env->command */
    call_state state;
    int answered;              /* the one answer was given */
    int64_t deadline_ms;       /* ferry_now_ms() clock; 0: none, or not set yet (above) */
    ferry_cancel_fn cancel_fn; /* ferry_call_on_cancel; NULL: none */
    void *data;                /* ferry_call_set_data */

    ferry_worker *worker;
    worker_link *link;         /* the broker it came from: its Reply goes back there */
    int depth;                 /* library callbacks of this call on the stack; free waits */
    int listed;                /* in worker->calls: from when it is queued or its handler
                                * returned without answering, until it is freed */
    worker_lane *lane;         /* the lane holding the deadline; NULL: none, or in deadline */
    ferry_call *dprev, *dnext; /* the lane's FIFO */
    ferry_timer deadline;      /* the deadline when no lane took it */
    ferry_timer after;         /* ferry_call_after */
    ferry_handler after_fn;
    void *after_arg;
    void *cancel_arg;
    ferry_call *prev, *next;   /* worker->calls while listed; next links spare records */
    ferry_call *qprev, *qnext; /* the function's waiting queue while CALL_QUEUED */
    int64_t started_us;        /* its handler's start (worker_metrics.h; set only when on) */
};

/* One watched fd. The loop calls through the slot (owned by the worker, never
 * freed while it lives), so an unwatch inside the same iteration is safe. */
typedef struct {
    ferry_worker *worker;
    int fd; /* -1: free slot */
    ferry_fd_fn fn;
    void *arg;
} worker_watch;

/* Where replies and Ready go: the DEALER, or a test's capture. size is
 * ferry__envelope__get_packed_size(env) when the caller computed it, else 0. */
typedef ferry_err (*worker_send_fn)(ferry_worker *w, const Ferry__Envelope *env, size_t size,
                                    void *arg);

struct ferry_worker {
    ferry_loop loop;
    worker_state state;
    char id[FERRY_ROUTING_ID_MAX + 1];
    unsigned concurrency;
    int64_t max_msg;
    int heartbeat_ms;
    int liveness;
    int drain_ms;
    ferry_timer drain;     /* the drain's time limit */
    void *ctx;             /* NULL when offline */
    worker_link links[FERRY_BROKERS_MAX];
    size_t nlinks;         /* at least 1 */
    worker_link *in;       /* the link whose message is being handled */
    worker_link *out;      /* where the next w->send goes (send_dealer) */
    worker_send_fn send;
    void *send_arg;
    int in_turn;        /* on_dealer is running: Replies may wait in their link's batch */
    worker_function *functions;  /* uthash by name */
    worker_function *last_found; /* worker_function_find's last hit: calls come in runs */
    worker_lane lanes[WORKER_LANES];
    worker_lane *last_lane;  /* where the last deadline went: the next of its timeout goes too */
    ferry_call *calls;       /* every live call but one whose handler is still in its first
                              * run (it cannot be cancelled from there) */
    ferry_call *starting;    /* that call, while its handler runs: destroy must not run */
    ferry_call *spare_calls; /* freed call records kept for reuse (through next) */
    unsigned fail_arms;      /* tests: the next this many deadlines fail to arm (ENOMEM) */
    size_t nspare_calls;
    ferry_timer heartbeat;
    worker_watch watches[FERRY_LOOP_MAX_ITEMS];
    ferry_worker_stats stats;
    worker_limit lim_frames; /* ferry_log_limited states for peer-triggered noise */
    worker_limit lim_message;
    worker_limit lim_command;
    worker_limit lim_lost;
    int metrics_on;    /* record per-function series (worker_metrics.h; ferry-worker --metrics) */
    size_t base_id_len; /* a given id's length (new identities add to it); 0: generated */
    char *discover;        /* owned: the --discover name, NULL: none */
    char *discover_port;   /* owned: the endpoint's port for it */
    int discover_ms;
    ferry_timer discover_timer; /* resolves the name again */
};

/*
 * A worker without sockets: everything it would send goes to send(w, env,
 * arg) instead, and frames come in through worker_dispatch_frame. For tests
 * and embedding. cfg may be NULL. NULL when memory runs out.
 */
ferry_worker *worker_new_offline(const ferry_worker_config *cfg, worker_send_fn send, void *arg);

/* A call's share of the calls in flight, of the worker and of its broker. */
static inline void worker_in_flight(ferry_worker *w, ferry_call *call, int delta)
{
    w->stats.in_flight = (size_t)((long)w->stats.in_flight + delta);
    call->link->in_flight = (size_t)((long)call->link->in_flight + delta);
}

/* worker_function_find past its one-entry cache. */
worker_function *worker_function_lookup(ferry_worker *w, const char *name);

/* Looks a function up by name (NULL when not served). Hashing the name costs more than
 * the rest of the lookup: a run of calls of one function pays one comparison instead.
 * Functions are never removed while w lives. */
static inline worker_function *worker_function_find(ferry_worker *w, const char *name)
{
    worker_function *f = w->last_found;
    if (f && strcmp(f->name, name) == 0)
        return f;
    return worker_function_lookup(w, name);
}

/*
 * Sends Reply{engine_id, call_id, values | error}. error_code NULL means a
 * result. Does not take ownership of anything. Turns a Reply larger than
 * max_msg into a `call_error` Reply. Counts it (completed or failed); logs
 * and counts a refused send.
 */
ferry_err worker_send_reply(ferry_worker *w, ProtobufCBinaryData engine_id, uint64_t call_id,
                            Ferry__Value **values, size_t n, const char *error_code,
                            const char *message);

/*
 * Answers call with its own arguments, as they came in the Command (echo):
 * no copy. They are borrowed from the decoded Command, which the call owns
 * and frees only after the Reply went out. Same rules as ferry_call_return.
 */
ferry_err worker_call_return_args(ferry_call *call);

/* worker_send_reply for an error with a printf-formatted message. */
ferry_err worker_send_error(ferry_worker *w, ProtobufCBinaryData engine_id, uint64_t call_id,
                            const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Handles one received frame: decode, validate, run or refuse the Command. */
void worker_dispatch_frame(ferry_worker *w, const void *data, size_t len);

/* Starts a call of fn for the decoded Command in env. Takes ownership of env. */
void worker_call_start(ferry_worker *w, worker_function *fn, Ferry__Envelope *env);

/* Moves queued calls of fn into free slots (the pump timer's callback). */
void worker_call_pump(ferry_timer *timer, void *arg);

/* Frees the call records kept for reuse. */
void worker_call_free_spares(ferry_worker *w);

/* Sets up w->lanes (worker creation); worker_call_lanes_fini disarms their timers (destroy,
 * after worker_call_cancel_all). */
void worker_call_lanes_init(ferry_worker *w);
void worker_call_lanes_fini(ferry_worker *w);

/* Cancels every live call (FERRY_EWORKER_LOST) and frees them all. */
void worker_call_cancel_all(ferry_worker *w);

/* Stops the loop of a draining worker: its last call ended. */
void worker_drained(ferry_worker *w);

/* A call stopped being in flight: a draining worker whose last one it was stops. */
static inline void worker_call_done(ferry_worker *w)
{
    if (w->state == WORKER_DRAINING && w->stats.in_flight == 0)
        worker_drained(w);
}

/* What the first SIGINT/SIGTERM does (and tests call): Goodbye, then stop once no call is
 * in flight, or after drain_ms. A second call, or drain_ms < 0, stops at once. */
void worker_drain(ferry_worker *w);

/* The worker's loop; borrowed from w. For Ferry's own code and tests: a worker
 * of your own uses ferry_worker_timer_* and ferry_worker_watch_fd. */
ferry_loop *ferry_worker_loop(ferry_worker *w);

#endif

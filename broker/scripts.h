/*
 * scripts: the broker's engine table, script table and script queue, with
 * no sockets in them.
 *
 * Engines by routing id, each with its slots (from Hello) and the scripts
 * the broker gave it; a ring of engines with a free slot, rotated on every
 * pick so that scripts go round robin. Scripts by broker-unique script_id,
 * each remembering the client (routing id and request_id) that waits for
 * its Result. Scripts no engine can take wait in one bounded FIFO.
 *
 * Timers are embedded in each script: a queued script waits until its
 * deadline; a running one has a backstop at deadline + grace in case the
 * engine never answers (it hung or vanished). When one fires the script
 * leaves every table, the owner's expire callback answers the client, and
 * the script is freed.
 *
 * Who may call: one thread (the broker loop). Sockets live in broker.c.
 */
#ifndef BROKER_SCRIPTS_H
#define BROKER_SCRIPTS_H

#include "ferry.pb-c.h"
#include "ferry_err.h"
#include "ferry_timer.h"
#include "ferry_wire.h"
#include "budget.h"
#include "ferry_hash.h"

#include <stddef.h>
#include <stdint.h>

typedef struct broker_scripts broker_scripts;
typedef struct broker_engine broker_engine;
typedef struct broker_script broker_script;

typedef enum {
    BROKER_SCRIPT_NEW,     /* in the script table only: being placed by its owner */
    BROKER_SCRIPT_QUEUED,  /* in the script queue */
    BROKER_SCRIPT_RUNNING, /* handed to script->engine */
} broker_script_state;

struct broker_script {
    UT_hash_handle hh;          /* s->table, keyed by script_id */
    uint64_t script_id;         /* never 0 */
    broker_script_state state;
    broker_engine *engine;      /* set while running */
    broker_script *prev, *next; /* s->queue while queued, engine->scripts while running */
    Ferry__Envelope *submit;    /* owned: the client's Submit until an engine has it */
    ferry_timer timer;          /* queued: deadline; running: backstop */
    int64_t deadline_ms;
    uint32_t timeout_ms;        /* effective timeout (after default and cap) */
    uint64_t request_id;        /* the client's, echoed in the Result */
    size_t client_len;
    uint8_t client[FERRY_ROUTING_ID_MAX]; /* routing id of the client on the clients ROUTER */
    size_t bytes;               /* its Submit's size, taken from lim.bytes while queued */
    int64_t submitted_us;       /* when its Submit came (metrics.h; set only when on) */
};

struct broker_engine {
    UT_hash_handle hh;          /* s->engines, keyed by rid */
    uint8_t rid[FERRY_ROUTING_ID_MAX];
    size_t rid_len;
    uint32_t slots;             /* announced in Hello */
    uint32_t running;           /* scripts of ours running there */
    uint32_t untracked;         /* scripts it runs that we hold no record of: announced in
                                 * Hello, or past their backstop; each stray Result frees one */
    int blocked;                /* a send would block: no scripts until its next Result */
    int leaving;                /* said Goodbye: no new scripts; its running ones finish */
    int in_ring;
    int batches;                /* said in Hello that it takes Replies in a Batch */
    int64_t last_seen_ms;       /* last message from it: liveness */
    int64_t last_sent_ms;       /* last message to it: a heartbeat goes when this is old */
    broker_engine *prev, *next; /* s->ring while it has a free slot */
    broker_script *scripts;     /* running there (utlist DL) */
    char key[41];               /* CURVE public key (Z85) that registered it; "" without keys */
};

typedef void (*broker_script_expired_fn)(broker_script *script, ferry_err reason, void *arg);

typedef struct {
    size_t queue_max;     /* scripts waiting for an engine slot */
    uint32_t timeout_ms;  /* default when a Submit says 0, cap otherwise */
    uint32_t grace_ms;    /* running backstop past the deadline */
    size_t engines_max;   /* registered engines; 0: no bound */
    broker_budget *bytes; /* borrowed: queued scripts take their bytes here; NULL: none */
} broker_scripts_limits;

struct broker_scripts {
    ferry_timers *timers; /* borrowed: the loop's heap */
    broker_scripts_limits lim;
    broker_script_expired_fn on_expired;
    void *arg;
    broker_engine *engines;
    broker_engine *ring;  /* engines with a free slot; the head is picked next */
    broker_script *table;
    broker_script *queue; /* oldest first (utlist DL) */
    size_t nengines;
    size_t queued;
    size_t running;
    uint64_t engines_lost; /* engines declared lost (broker_scripts_engine_lost) */
    uint64_t next_id;
};

void broker_scripts_init(broker_scripts *s, ferry_timers *timers,
                         const broker_scripts_limits *lim, broker_script_expired_fn on_expired,
                         void *arg);

/* Frees every script and engine without answering anybody (shutdown). */
void broker_scripts_fini(broker_scripts *s);

/* ---- engines ---- */

/*
 * Registers the engine rid, or updates it: slots, and how many scripts it
 * runs (those the broker has no record of keep their slots until their
 * Results come back). FERRY_EPROTO for a bad rid, FERRY_EOVERLOADED when
 * the engine is new and the table is at engines_max, FERRY_ENOMEM. Sets
 * last_seen_ms of the engine to now_ms.
 */
ferry_err broker_scripts_hello(broker_scripts *s, const void *rid, size_t rid_len,
                               uint32_t slots, uint32_t running, int64_t now_ms,
                               broker_engine **out);

/* The engine with routing id rid, or NULL. */
broker_engine *broker_scripts_engine(broker_scripts *s, const void *rid, size_t rid_len);

/* Scripts the engine can take now. */
uint32_t broker_scripts_engine_room(const broker_engine *e);

/* An engine with a free slot, rotating the ring; NULL when none. */
broker_engine *broker_scripts_pick(broker_scripts *s);

/* A send to e would block: keep it out of the ring until its next Result. */
void broker_scripts_block(broker_scripts *s, broker_engine *e);

/* e said Goodbye (it drains): no new scripts for it, ever; its running ones finish. */
void broker_scripts_leave(broker_scripts *s, broker_engine *e);

/* e talked to us, so it reads its socket again: back into the ring if it has room. */
void broker_scripts_unblock(broker_scripts *s, broker_engine *e);

/*
 * e is gone (silent past its liveness, unreachable): each script running
 * there leaves the tables, goes to the expire callback with
 * FERRY_EENGINE_LOST and is freed; then e is freed.
 */
void broker_scripts_engine_lost(broker_scripts *s, broker_engine *e);

/* ---- scripts ---- */

/*
 * Records a new script (state NEW) with a fresh script_id. Takes ownership
 * of submit (the decoded envelope holding the Submit) on FERRY_OK only.
 * timeout_ms 0 means the default; more than the cap is capped.
 */
ferry_err broker_scripts_new(broker_scripts *s, const void *client, size_t client_len,
                             uint64_t request_id, uint32_t timeout_ms, Ferry__Envelope *submit,
                             int64_t now_ms, broker_script **out);

/* The script script_id, or NULL. */
broker_script *broker_scripts_find(broker_scripts *s, uint64_t script_id);

/*
 * Marks a NEW script running at e (which must have room): the engine has
 * its Submit, so script->submit is freed; arms the backstop.
 */
void broker_scripts_started(broker_scripts *s, broker_script *script, broker_engine *e);

/*
 * Queues a NEW script: at the tail, or at the head when front is set (a
 * script taken from the queue that could not be sent). FERRY_EOVERLOADED
 * when the queue is full (never for front), FERRY_ENOMEM.
 */
ferry_err broker_scripts_enqueue(broker_scripts *s, broker_script *script, int front);

/* Takes the oldest queued script (NULL when none) and makes it NEW again. */
broker_script *broker_scripts_pop(broker_scripts *s);

/* The Result for a running script arrived: it leaves its engine, whose slot is free again. */
void broker_scripts_finish(broker_scripts *s, broker_script *script);

/* A Result from e matched no script running there; frees an untracked slot if any.
 * Returns 1 when it did. */
int broker_scripts_stray_result(broker_scripts *s, broker_engine *e);

/* Removes a NEW script from the table and frees it. */
void broker_scripts_free(broker_scripts *s, broker_script *script);

#endif

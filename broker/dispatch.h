/*
 * dispatch: the broker's call routing tables, with no sockets in them.
 *
 * Functions by name, workers by routing id, calls by (engine, call_id),
 * where engine is the call's engine id interned: one broker_engine_id per
 * distinct id, shared by the calls that name it, so that a call's key is
 * two words (no bytes to copy, hash or compare per call) and its record
 * does not carry room for a 255-byte id. Commands and Replies find the
 * interned id through a one-entry cache of the last one seen (one engine
 * host sends most of the traffic in a row), else through a hash table.
 * Each function keeps a FIFO of calls waiting for a worker and a ring of the
 * workers that serve it and have credit left, so picking a worker is O(1):
 * take the ring's head and rotate it (round robin between workers). A worker
 * serving k functions sits in k rings through k "members"; it leaves all of
 * them when its credit runs out and comes back when a reply returns one.
 *
 * Invariant (kept by the broker's handlers, which drain a worker whenever it
 * gains credit): a function with queued calls has an empty credit ring.
 *
 * Timers: a queued call has its own, embedded in it: it waits until its
 * deadline, or until --unserved-wait while no live worker serves its
 * function. An in-flight call has a backstop at deadline + grace in case the
 * worker never answers, kept by one timer per worker rather than one per
 * call: it is armed at or before the earliest backstop of the worker's
 * calls, so sending a call arms it only when that call's backstop is the
 * earliest (and with one timeout for all, never after the first), and a
 * reply does no timer work at all. When it fires it walks the worker's calls
 * (O(in flight there)), expires the due ones and re-arms at the earliest
 * left. An expired call leaves every table and the owner's expire callback
 * answers the engine; then the call is freed.
 *
 * A worker that is lost (silent past its liveness, or unreachable) takes its
 * in-flight calls with it: each one whose function it declared idempotent,
 * and that was not re-sent before, goes back to its owner to be placed once
 * more (the broker keeps a copy of the Command of such calls while they are
 * in flight: the bytes of a small one in its record, a reference to the
 * frame of a larger one); the others are answered `worker_lost`.
 *
 * Who may call: one thread (the broker loop). Sockets live in broker.c.
 */
#ifndef BROKER_DISPATCH_H
#define BROKER_DISPATCH_H

#include "ferry.pb-c.h"
#include "ferry_err.h"
#include "ferry_timer.h"
#include "ferry_wire.h"
#include "budget.h"
#include "ferry_hash.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef struct broker_dispatch broker_dispatch;
typedef struct broker_function broker_function;
typedef struct broker_worker broker_worker;
typedef struct broker_member broker_member;
typedef struct broker_call broker_call;
typedef struct broker_call_slot broker_call_slot;
typedef struct broker_engine_id broker_engine_id;

typedef enum {
    BROKER_CALL_NEW,       /* in the call table only: being placed by its owner */
    BROKER_CALL_QUEUED,    /* in its function's queue */
    BROKER_CALL_IN_FLIGHT, /* sent to call->worker */
} broker_call_state;

/*
 * An engine id, interned. Each call naming it holds a reference, and so
 * does d->last_engine while it points here: it is freed when its last call
 * goes, unless it is the last engine id seen (then when another one is
 * seen, or at fini), so that an engine sending one call at a time does not
 * make and free a record per call. A peer naming ever new engine ids grows
 * this table no more than it grows the call table.
 */
struct broker_engine_id {
    uint64_t salt;         /* from the id's hash: mixed with a call_id into the call's hash */
    uint32_t refs;         /* calls naming it, plus one while it is d->last_engine */
    uint8_t len;           /* 1..FERRY_ROUTING_ID_MAX */
    uint8_t id[FERRY_ROUTING_ID_MAX];
    UT_hash_handle hh;     /* d->engine_ids, keyed by id */
};

/* Commands up to this size are kept for a re-send as bytes in their record:
 * a copy of a few dozen bytes costs less than a reference to the frame
 * (zmq_msg_copy, then zmq_msg_close when the call ends). */
#define BROKER_CALL_COPY_MAX 128

/* What a record holds of its Command. */
typedef enum {
    BROKER_HELD_NONE,  /* nothing */
    BROKER_HELD_FRAME, /* call->frame: while queued (and once taken off the queue or back
                        * from a lost worker, to be placed again), or in flight when it may
                        * be re-sent and is larger than BROKER_CALL_COPY_MAX (a reference
                        * to the received frame: no bytes copied) */
    BROKER_HELD_BYTES, /* call->bytes (copy_len of them): in flight, may be re-sent, small */
} broker_held;

/* The fields every Command and Reply touches come first: 64 bytes, a cache line's worth. */
struct broker_call {
    broker_engine_id *engine;  /* holds a reference; engine->id is where replies go */
    uint64_t call_id;
    uint32_t hash;             /* of (engine, call_id): its place in d->slots */
    uint8_t state;             /* a broker_call_state */
    uint8_t held;              /* a broker_held: what frame/bytes below hold */
    uint16_t copy_len;         /* bytes used in bytes[] while held is BROKER_HELD_BYTES */
    broker_function *fn;       /* borrowed; a function outlives its calls */
    broker_worker *worker;     /* set while in flight */
    broker_call *prev, *next;  /* fn->queue while queued, worker->calls while in flight */
    int64_t deadline_ms;
    union {                    /* the Command, as held says (see broker_dispatch_keep) */
        zmq_msg_t frame;
        uint8_t bytes[BROKER_CALL_COPY_MAX];
    };
    int64_t queued_ms;         /* when it arrived (or came back from a lost worker) */
    uint32_t timeout_ms;       /* effective timeout (after default and cap) */
    int retried;               /* re-sent once after its worker was lost: never again */
    ferry_timer timer;         /* armed while queued only: deadline or unserved wait (the
                                * backstop in flight is the worker's) */
    int64_t sent_us;           /* when it went to its worker (metrics.h; set only when on) */
};

/* One (worker, function) pair: the worker's place in the function's credit ring. */
struct broker_member {
    broker_worker *worker;
    broker_function *fn;
    broker_member *prev, *next; /* fn->ring while the worker can take a call */
    int in_ring;
    int idempotent;             /* the worker may re-run this function elsewhere */
};

struct broker_worker {
    UT_hash_handle hh;          /* d->workers, keyed by rid */
    uint8_t rid[FERRY_ROUTING_ID_MAX];
    size_t rid_len;
    broker_member *members;     /* owned; one per function served */
    size_t nmembers;
    size_t next_member;         /* where the next drain starts, for fairness between functions */
    int ringed;                 /* every member is in its ring (else none is) */
    uint32_t credit;            /* announced in Ready */
    uint32_t in_flight;         /* calls in flight at this worker (in calls below) */
    uint32_t lost;              /* calls it runs that we hold no record of (past their
                                 * backstop, or announced in Ready.running): their credit
                                 * stays consumed until a stray reply or the next Ready */
    int leaving;                /* Goodbye: no new calls; freed when idle */
    int blocked;                /* a send would block: no new calls until its next reply */
    int batches;                /* said in Ready that it takes Commands in a Batch */
    int64_t last_seen_ms;       /* last message from it: liveness */
    int64_t last_sent_ms;       /* last message to it: a heartbeat goes when this is old */
    broker_call *calls;         /* in-flight calls (utlist DL), in the order they were sent */
    ferry_timer backstop;       /* armed at or before the earliest deadline + grace of calls;
                                 * idle or early (the call completed) otherwise */
    uint64_t completed, failed; /* its replies, for stats */
    char key[41];               /* CURVE public key (Z85) that registered it; "" without keys */
};

struct broker_function {
    UT_hash_handle hh;          /* d->functions, keyed by name */
    char *name;                 /* owned */
    size_t name_len;
    broker_member *ring;        /* members with credit; the head is picked next */
    broker_call *queue;         /* waiting calls, oldest first (utlist DL) */
    uint32_t workers;           /* live (not leaving) workers serving it */
    uint64_t queued, in_flight, completed, failed;
    uint64_t stamp;             /* de-duplicates a Ready's function list */
    int served;                 /* some worker served it once: keep it (and its stats) */
    struct broker_fn_metrics *metrics; /* its series (metrics.h, which owns them); NULL
                                        * until counted */
};

/* Answers an expired call. It must not change the dispatch tables: the
 * caller goes on walking them and frees call after it. */
typedef void (*broker_call_expired_fn)(broker_call *call, ferry_err reason, void *arg);

typedef struct {
    size_t queue_max;          /* calls waiting for a worker, all functions together */
    uint32_t call_timeout_ms;  /* default when a Command says 0, cap otherwise */
    uint32_t unserved_wait_ms; /* wait for a worker serving the function to appear */
    uint32_t grace_ms;         /* in-flight backstop past the deadline */
    size_t workers_max;        /* registered workers; 0: no bound */
    size_t functions_max;      /* known function names; 0: no bound */
    broker_budget *bytes;      /* borrowed: queued Commands take their bytes here; NULL: none */
} broker_dispatch_limits;

struct broker_dispatch {
    ferry_timers *timers;       /* borrowed: the loop's heap */
    broker_dispatch_limits lim;
    broker_call_expired_fn on_expired;
    void *arg;
    broker_function *functions;
    broker_worker *workers;
    broker_call_slot *slots;    /* the call table (dispatch.c); NULL until the first call */
    size_t slot_mask;           /* the number of slots (a power of two) less one */
    size_t ncalls;              /* calls in the table: NEW, queued and in flight */
    broker_engine_id *engine_ids; /* interned engine ids (uthash) */
    broker_engine_id *last_engine; /* the last one a Command or Reply named (holds a
                                    * reference): most name it again */
    size_t nengine_ids;
    broker_call **spare;        /* freed records kept for reuse, nspare of them: a stack of
                                 * pointers, so that taking one reads no cold record */
    broker_function *last_fn;   /* the function of the last new call: most calls name it
                                 * again, and a comparison is cheaper than a hash */
    size_t nspare;
    size_t nfunctions;
    size_t nworkers;            /* live (not leaving) workers */
    size_t queued;              /* calls waiting, all functions */
    size_t in_flight;           /* calls at workers */
    uint64_t workers_lost;      /* workers declared lost (broker_dispatch_worker_lost) */
    uint64_t calls_retried;     /* in-flight calls of lost workers sent once more */
    uint64_t stamp;
};

/* Sets up empty tables. on_expired answers expired calls (see the top of this file). */
void broker_dispatch_init(broker_dispatch *d, ferry_timers *timers,
                          const broker_dispatch_limits *lim, broker_call_expired_fn on_expired,
                          void *arg);

/* Frees every call, worker and function without answering anybody (shutdown). */
void broker_dispatch_fini(broker_dispatch *d);

/* ---- workers ---- */

/*
 * Registers the worker rid, or replaces what an earlier Ready said: its
 * functions, idempotent flags and credit. Calls already in flight there
 * count against the new credit, and so do the calls it says it still runs
 * beyond those (ready->running: calls of a broker before a restart), until a
 * stray reply returns each. FERRY_EPROTO when ready is malformed (a
 * function without a name); FERRY_EOVERLOADED when the worker or function
 * table is full; FERRY_ENOMEM. Either way nothing changed. Calls queued for
 * a function nobody serves any more (the replacement dropped it) wait
 * --unserved-wait from now_ms. Sets last_seen_ms of the worker to now_ms.
 */
ferry_err broker_dispatch_ready(broker_dispatch *d, const void *rid, size_t rid_len,
                                const Ferry__Ready *ready, int64_t now_ms, broker_worker **out);

/* The worker with routing id rid, or NULL. */
broker_worker *broker_dispatch_worker(broker_dispatch *d, const void *rid, size_t rid_len);

/* Calls the worker can take now. */
uint32_t broker_dispatch_worker_room(const broker_worker *w);

/*
 * Stops dispatching to w (it said Goodbye); it keeps its in-flight calls.
 * Frees w (and returns 1) when nothing is in flight there; w must not be
 * used then. Calls queued for a function w was the last to
 * serve wait --unserved-wait from now_ms for another worker.
 */
int broker_dispatch_leave(broker_dispatch *d, broker_worker *w, int64_t now_ms);

/*
 * w is gone: silent past its liveness, or unreachable. w leaves every table
 * and is freed. Each call in flight there that may be re-sent (its Command
 * was kept by broker_dispatch_keep when it was sent) is marked retried, made
 * NEW with its Command in call->frame (kept bytes become a message again)
 * and chained through prev/next onto *retry (utlist DL) for the caller to
 * place again, in the order they were sent. The others, and one whose bytes
 * find no memory for a message, are counted failed, go to the expire
 * callback with FERRY_EWORKER_LOST and are freed. Calls queued for a
 * function w was the last to serve wait --unserved-wait from now_ms.
 */
void broker_dispatch_worker_lost(broker_dispatch *d, broker_worker *w, int64_t now_ms,
                                 broker_call **retry);

/*
 * True when call, about to be sent to w, may be sent once more should w be
 * lost: w declared its function idempotent and the call was not re-sent
 * before. The caller then keeps a copy of the Command (broker_dispatch_keep,
 * or a call that waited keeps call->frame and sends a copy). O(functions of
 * w).
 */
int broker_dispatch_may_retry(const broker_call *call, const broker_worker *w);

/*
 * Keeps a copy of the Command of call, about to be sent from frame (not
 * call->frame; data and len are its bytes), for a re-send should its worker
 * be lost: the bytes in the record when there are at most
 * BROKER_CALL_COPY_MAX of them, else a reference to frame's (zmq_msg_copy).
 * The record must hold nothing. FERRY_ENOMEM when no reference could be
 * made: nothing is kept then (the call goes without).
 */
ferry_err broker_dispatch_keep(broker_call *call, zmq_msg_t *frame, const void *data, size_t len);

/*
 * Drops what the record holds of its Command: the copy kept for a send that
 * failed, or call->frame once it was itself sent (an empty message then).
 */
void broker_dispatch_unkeep(broker_call *call);

/* A send to w would block: keep it out of the rings until its next reply. */
void broker_dispatch_block(broker_dispatch *d, broker_worker *w);

/* w talked to us, so it reads its socket again: back into the rings if it has room. */
void broker_dispatch_unblock(broker_dispatch *d, broker_worker *w);

/* ---- calls ---- */

/*
 * Records a new call (state NEW, in the call table so duplicates show).
 * function is fn_len bytes, not NUL-terminated. timeout_ms 0 means the
 * default; more than the cap is capped. Returns FERRY_EPROTO when
 * (engine_id, call_id) is already queued or in flight, or an id or the
 * function is empty, FERRY_EOVERLOADED when its function is new and the
 * function table is full, FERRY_ENOMEM. The caller places the call:
 * broker_dispatch_sent, broker_dispatch_enqueue, or
 * broker_dispatch_call_free.
 */
ferry_err broker_dispatch_call_new(broker_dispatch *d, const void *engine_id, size_t eid_len,
                                   uint64_t call_id, const char *function, size_t fn_len,
                                   uint32_t timeout_ms, int64_t now_ms, broker_call **out);

/* The engine id of call (points into its interned record, which lives as long as the call). */
static inline const uint8_t *broker_call_engine(const broker_call *call, size_t *len)
{
    *len = call->engine->len;
    return call->engine->id;
}

/*
 * The interned engine id equal to id, or NULL (no call names it, and it is
 * not the last seen). For tests: it leaves the last-seen cache alone.
 */
broker_engine_id *broker_dispatch_engine_id(broker_dispatch *d, const void *id, size_t len);

/* The queued or in-flight call (engine_id, call_id), or NULL. */
broker_call *broker_dispatch_find(broker_dispatch *d, const void *engine_id, size_t eid_len,
                                  uint64_t call_id);

/*
 * The call a Reply from the worker with routing id rid answers: (engine_id,
 * call_id) in flight at that worker; NULL when there is none (unknown,
 * answered already, queued, or at another worker). *w is the worker rid
 * either way, NULL when it is not registered. The worker table is only
 * searched when the call is not in flight at rid: a call's worker is the
 * one registered under its rid.
 */
broker_call *broker_dispatch_match_reply(broker_dispatch *d, const void *rid, size_t rid_len,
                                         const void *engine_id, size_t eid_len, uint64_t call_id,
                                         broker_worker **w);

/* A worker that serves fn and can take a call, rotating the ring; NULL when none.
 * Inline: once per Command. */
static inline broker_worker *broker_dispatch_pick(broker_dispatch *d, broker_function *fn)
{
    (void)d;
    broker_member *m = fn->ring;
    if (!m)
        return NULL;
    assert(broker_dispatch_worker_room(m->worker) > 0);
    fn->ring = m->next; /* round robin: the next pick starts after this worker */
    return m->worker;
}

/*
 * Marks a NEW call in flight at w (which must have room): takes one credit
 * and sees that w's backstop timer fires no later than this call's
 * deadline + grace. The caller has sent the Command; the record holds a
 * copy of it when the call may be re-sent (broker_dispatch_may_retry), else
 * nothing.
 */
void broker_dispatch_sent(broker_dispatch *d, broker_call *call, broker_worker *w);

/*
 * Queues a NEW call on its function: at the tail (arrival order), or at the
 * head when front is set (a call taken from the queue that could not be
 * sent). Takes ownership of *frame (moved into call->frame) on FERRY_OK,
 * unless frame is call->frame already (a call that waited, or came back
 * from a lost worker) or NULL; the record must hold nothing else.
 * FERRY_EOVERLOADED when the queue is full (never for front).
 */
ferry_err broker_dispatch_enqueue(broker_dispatch *d, broker_call *call, zmq_msg_t *frame,
                                  int front);

/*
 * Takes the oldest queued call of fn (NULL when none) and makes it NEW
 * again; its frame stays in call->frame for the caller to send.
 */
broker_call *broker_dispatch_pop(broker_dispatch *d, broker_function *fn);

/*
 * Takes the next queued call w can run (NEW again, frame in call->frame),
 * going round w's functions so that none starves; NULL when w has no room
 * or nothing it serves is queued. O(1) while nothing is queued anywhere,
 * else at most O(functions of w).
 */
broker_call *broker_dispatch_take(broker_dispatch *d, broker_worker *w);

/*
 * A reply for call arrived from its worker: the call leaves the worker,
 * which gets its credit back; counts completed or failed for the function.
 * The call is NEW afterwards; the caller forwards the reply, then frees it.
 */
void broker_dispatch_complete(broker_dispatch *d, broker_call *call, int failed);

/*
 * A reply from w matched no call in flight there. When w has lost calls
 * (past their backstop) this is most likely one of them: its credit
 * returns. Unblocks w. Returns 1 when a credit returned.
 */
int broker_dispatch_stray_reply(broker_dispatch *d, broker_worker *w);

/* Counts a call the broker answered itself with an error (for the function's stats). */
void broker_dispatch_count_failed(broker_dispatch *d, broker_call *call);

/*
 * Removes a NEW call from the call table and frees it, with what it holds
 * of its Command.
 * Forgets its function when nobody ever served it and nothing else uses it.
 */
void broker_dispatch_call_free(broker_dispatch *d, broker_call *call);

/* Frees w if it is leaving and has nothing in flight; returns 1 when it did. */
int broker_dispatch_reap(broker_dispatch *d, broker_worker *w);

/* The function called name, or NULL. */
broker_function *broker_dispatch_function(broker_dispatch *d, const char *name);

#endif

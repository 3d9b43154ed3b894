/*
 * dispatch: function, worker and call tables; credit rings; per-function
 * queues; call timers. See dispatch.h for the model and its invariants.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* uthash's default (Jenkins, byte by byte) costs ~250 instructions on a
 * 45-byte key. This one reads 8 bytes at a time. The worker, function and
 * engine id tables use it through uthash. */
static inline unsigned dispatch_hash(const void *key, size_t len);
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = dispatch_hash((keyptr), (keylen)))

#include "dispatch.h"

#include "utlist.h"

#include <assert.h>
#include <stdlib.h>

#define SPARE_MAX 1024 /* freed call records kept for reuse */
#define SLOTS_MIN 256  /* the call table's first size */

/*
 * The call table, by (engine, call_id). Each Command inserts (after a
 * check for a duplicate, in the same probe) and each Reply finds and
 * removes, so it is made for that: open addressing with linear probing, a
 * power-of-two size, at most half full; a slot keeps the call's hash beside
 * it, so that a probe seldom reads a call that is not the one sought, and a
 * removal shifts back the entries after it instead of leaving tombstones.
 * That is ~40 instructions per call fewer than uthash's chained buckets,
 * whose handles must be linked and unlinked. It grows, never shrinks (like
 * uthash's buckets): its size follows the most calls ever held.
 */
struct broker_call_slot {
    broker_call *call; /* NULL: empty */
    uint32_t hash;
};

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static inline unsigned dispatch_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
    uint64_t w = 0;
    if (len < 8) {
        for (size_t i = 0; i < len; i++)
            w |= (uint64_t)p[i] << (8 * i);
        return (unsigned)mix64(h ^ w);
    }
    /* The last word is the key's last 8 bytes, overlapping the one before
     * when len is not a multiple of 8: no tail of variable length to copy. */
    const uint8_t *last = p + len - 8;
    for (; p < last; p += 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    memcpy(&w, last, 8);
    return (unsigned)mix64(h ^ w);
}

/* A call's key is two words: its interned engine and its call_id. */
static inline uint32_t call_hash(const broker_engine_id *e, uint64_t call_id)
{
    return (uint32_t)mix64(call_id ^ e->salt);
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint32_t load32(const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* Whether two ids of len bytes are equal: inline, without a loop up to 32
 * bytes, for the short ids compared on every call (engine and worker
 * routing ids, function names), where calling memcmp costs more than
 * comparing. Loads overlap rather than handle a tail byte by byte. */
static inline int same_bytes(const void *a, const void *b, size_t len)
{
    const uint8_t *p = a, *q = b;
    if (len >= 8) {
        uint64_t diff = (load64(p) ^ load64(q)) | (load64(p + len - 8) ^ load64(q + len - 8));
        if (len > 16) {
            diff |= (load64(p + 8) ^ load64(q + 8)) | (load64(p + len - 16) ^ load64(q + len - 16));
            for (size_t i = 16; i + 16 < len; i += 8)
                diff |= load64(p + i) ^ load64(q + i);
        }
        return diff == 0;
    }
    if (len >= 4)
        return ((load32(p) ^ load32(q)) | (load32(p + len - 4) ^ load32(q + len - 4))) == 0;
    /* 0 to 3 bytes: the first, middle and last cover them all. */
    return len == 0 || (p[0] == q[0] && p[len / 2] == q[len / 2] && p[len - 1] == q[len - 1]);
}

/* Function records also count the calls pointing at them, so that one no
 * worker ever served can be forgotten once its last call is answered: a
 * peer sending commands for ever new names must not grow the table. */
typedef struct {
    broker_function fn;
    size_t ncalls;
} function_rec;

/* ---- interned engine ids ---- */

/* Drops a reference to e; frees it with the last one. */
static void engine_id_release(broker_dispatch *d, broker_engine_id *e)
{
    assert(e->refs > 0);
    if (--e->refs > 0)
        return;
    assert(d->last_engine != e);
    HASH_DEL(d->engine_ids, e);
    d->nengine_ids--;
    free(e);
}

/* Makes e the last engine id seen, which holds a reference to it. */
static void engine_id_remember(broker_dispatch *d, broker_engine_id *e)
{
    broker_engine_id *old = d->last_engine;
    e->refs++;
    d->last_engine = e;
    if (old)
        engine_id_release(d, old);
}

/*
 * The interned engine id equal to id (1..FERRY_ROUTING_ID_MAX bytes), made
 * when missing with create (NULL when memory runs out, or when missing
 * without create). It becomes the last seen. The caller takes no reference.
 */
static inline broker_engine_id *engine_id_get(broker_dispatch *d, const void *id, size_t len,
                                              int create)
{
    broker_engine_id *e = d->last_engine;
    if (e && e->len == len && same_bytes(e->id, id, len))
        return e;
    HASH_FIND(hh, d->engine_ids, id, len, e);
    if (!e) {
        if (!create || !(e = malloc(sizeof *e)))
            return NULL;
        e->refs = 0;
        e->len = (uint8_t)len;
        memcpy(e->id, id, len);
        HASH_ADD(hh, d->engine_ids, id, len, e);
        if (!FERRY_HASH_ADDED(e)) {
            free(e);
            return NULL;
        }
        e->salt = mix64(e->hh.hashv ^ 0x9e3779b97f4a7c15ull);
        d->nengine_ids++;
    }
    engine_id_remember(d, e);
    return e;
}

broker_engine_id *broker_dispatch_engine_id(broker_dispatch *d, const void *id, size_t len)
{
    broker_engine_id *e = NULL;
    if (len > 0 && len <= FERRY_ROUTING_ID_MAX)
        HASH_FIND(hh, d->engine_ids, id, len, e);
    return e;
}

static function_rec *rec_of(broker_function *fn)
{
    return (function_rec *)fn;
}

/* The function called name; with create, made when missing (NULL when memory
 * runs out or, with *full set, when the table is at --functions-max). */
static broker_function *get_function(broker_dispatch *d, const char *name, size_t len,
                                     int create, int *full)
{
    broker_function *fn = NULL;
    HASH_FIND(hh, d->functions, name, len, fn);
    if (fn || !create)
        return fn;
    if (d->lim.functions_max && d->nfunctions >= d->lim.functions_max) {
        *full = 1;
        return NULL;
    }
    function_rec *rec = calloc(1, sizeof *rec);
    if (!rec)
        return NULL;
    rec->fn.name = strndup(name, len);
    if (!rec->fn.name) {
        free(rec);
        return NULL;
    }
    fn = &rec->fn;
    fn->name_len = len;
    HASH_ADD_KEYPTR(hh, d->functions, fn->name, len, fn);
    if (!FERRY_HASH_ADDED(fn)) {
        free(rec->fn.name);
        free(rec);
        return NULL;
    }
    d->nfunctions++;
    return fn;
}

static void forget_if_unused(broker_dispatch *d, broker_function *fn)
{
    if (fn->served || rec_of(fn)->ncalls > 0)
        return;
    assert(!fn->ring && !fn->queue && fn->workers == 0);
    if (d->last_fn == fn)
        d->last_fn = NULL;
    HASH_DEL(d->functions, fn);
    d->nfunctions--;
    free(fn->name);
    free(rec_of(fn));
}

uint32_t broker_dispatch_worker_room(const broker_worker *w)
{
    if (w->leaving || w->blocked)
        return 0;
    uint64_t used = (uint64_t)w->in_flight + w->lost;
    return w->credit > used ? (uint32_t)(w->credit - used) : 0;
}

static void set_rings(broker_worker *w, int want)
{
    for (size_t i = 0; i < w->nmembers; i++) {
        broker_member *m = &w->members[i];
        if (want && !m->in_ring) {
            CDL_APPEND(m->fn->ring, m);
            m->in_ring = 1;
        } else if (!want && m->in_ring) {
            CDL_DELETE(m->fn->ring, m);
            m->in_ring = 0;
        }
    }
    w->ringed = want;
}

/* Puts w's members into their functions' rings when it has room, takes them
 * out when not. Called on every send and reply: O(1) unless the room crosses
 * zero, then O(functions of w). */
static inline void update_rings(broker_worker *w)
{
    int want = broker_dispatch_worker_room(w) > 0;
    if (want != w->ringed)
        set_rings(w, want);
}

static void call_timer(ferry_timer *t, void *arg);
static void backstop_timer(ferry_timer *t, void *arg);

void broker_dispatch_init(broker_dispatch *d, ferry_timers *timers,
                          const broker_dispatch_limits *lim, broker_call_expired_fn on_expired,
                          void *arg)
{
    assert(d && timers && lim && on_expired);
    memset(d, 0, sizeof *d);
    d->timers = timers;
    d->lim = *lim;
    d->on_expired = on_expired;
    d->arg = arg;
}

static void free_worker(broker_dispatch *d, broker_worker *w)
{
    ferry_timer_stop(d->timers, &w->backstop);
    free(w->members);
    free(w);
}

void broker_dispatch_fini(broker_dispatch *d)
{
    for (size_t i = 0; d->slots && i <= d->slot_mask; i++) {
        broker_call *call = d->slots[i].call;
        if (!call)
            continue;
        ferry_timer_stop(d->timers, &call->timer);
        broker_dispatch_unkeep(call);
        free(call);
    }
    free(d->slots);
    for (size_t i = 0; i < d->nspare; i++)
        free(d->spare[i]);
    free(d->spare);
    broker_engine_id *e, *etmp;
    HASH_ITER(hh, d->engine_ids, e, etmp)
    {
        HASH_DEL(d->engine_ids, e);
        free(e);
    }
    broker_worker *w, *wtmp;
    HASH_ITER(hh, d->workers, w, wtmp)
    {
        HASH_DEL(d->workers, w);
        free_worker(d, w);
    }
    broker_function *fn, *ftmp;
    HASH_ITER(hh, d->functions, fn, ftmp)
    {
        HASH_DEL(d->functions, fn);
        free(fn->name);
        free(rec_of(fn));
    }
    memset(d, 0, sizeof *d);
}

/* ---- workers ---- */

broker_worker *broker_dispatch_worker(broker_dispatch *d, const void *rid, size_t rid_len)
{
    broker_worker *w = NULL;
    HASH_FIND(hh, d->workers, rid, rid_len, w);
    return w;
}

/* Takes w out of every ring and every function's count of live workers. */
static void detach_members(broker_dispatch *d, broker_worker *w)
{
    for (size_t i = 0; i < w->nmembers; i++) {
        broker_member *m = &w->members[i];
        if (m->in_ring) {
            CDL_DELETE(m->fn->ring, m);
            m->in_ring = 0;
        }
        if (!w->leaving) {
            assert(m->fn->workers > 0);
            m->fn->workers--;
        }
    }
    w->ringed = 0;
    (void)d;
}

/*
 * The last worker serving one of these functions went away: its queued
 * calls wait --unserved-wait from now for another one, not their whole
 * deadline. O(queued calls of the function), on that rare transition only.
 */
static void start_unserved_waits(broker_dispatch *d, const broker_member *members, size_t n,
                                 int64_t now_ms)
{
    for (size_t i = 0; i < n; i++) {
        broker_function *fn = members[i].fn;
        if (fn->workers > 0)
            continue;
        broker_call *call;
        DL_FOREACH(fn->queue, call)
        {
            int64_t when = now_ms + d->lim.unserved_wait_ms;
            if (when > call->deadline_ms)
                when = call->deadline_ms;
            if (when < call->timer.when_ms)
                (void)ferry_timer_start(d->timers, &call->timer, when);
        }
    }
}

ferry_err broker_dispatch_ready(broker_dispatch *d, const void *rid, size_t rid_len,
                                const Ferry__Ready *ready, int64_t now_ms, broker_worker **out)
{
    *out = NULL;
    if (!ready || rid_len == 0 || rid_len > FERRY_ROUTING_ID_MAX)
        return FERRY_EPROTO;
    for (size_t i = 0; i < ready->n_functions; i++) {
        const Ferry__FunctionSpec *spec = ready->functions[i];
        if (!spec || !spec->name || !spec->name[0])
            return FERRY_EPROTO;
    }

    broker_member *members = NULL;
    size_t n = 0;
    if (ready->n_functions > 0) {
        members = calloc(ready->n_functions, sizeof *members);
        if (!members)
            return FERRY_ENOMEM;
    }
    broker_worker *w = broker_dispatch_worker(d, rid, rid_len);
    int full = !w && d->lim.workers_max && HASH_COUNT(d->workers) >= d->lim.workers_max;
    if (full)
        goto nomem;
    uint64_t stamp = ++d->stamp;
    for (size_t i = 0; i < ready->n_functions; i++) {
        broker_function *fn = get_function(d, ready->functions[i]->name,
                                           strlen(ready->functions[i]->name), 1, &full);
        if (!fn)
            goto nomem;
        if (fn->stamp == stamp) /* listed twice: one member is enough */
            continue;
        fn->stamp = stamp;
        members[n].fn = fn;
        members[n].idempotent = ready->functions[i]->idempotent;
        n++;
    }

    broker_member *old = NULL;
    size_t nold = 0;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            goto nomem;
        memcpy(w->rid, rid, rid_len);
        w->rid_len = rid_len;
        ferry_timer_init(&w->backstop, backstop_timer, d);
        HASH_ADD(hh, d->workers, rid, rid_len, w);
        if (!FERRY_HASH_ADDED(w)) {
            free(w);
            goto nomem;
        }
        d->nworkers++;
    } else {
        detach_members(d, w);
        old = w->members;
        nold = w->nmembers;
        if (w->leaving) {
            w->leaving = 0;
            d->nworkers++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        members[i].worker = w;
        members[i].fn->workers++;
        members[i].fn->served = 1;
    }
    w->members = members;
    w->nmembers = n;
    w->next_member = 0;
    w->credit = ready->credit;
    /* A fresh announcement: what it no longer runs is forgotten; what it
     * runs beyond our calls there (a broker before a restart gave it those)
     * keeps its credit until their stray replies come back. */
    w->lost = ready->running > w->in_flight ? ready->running - w->in_flight : 0;
    w->blocked = 0;
    w->last_seen_ms = now_ms;
    update_rings(w);
    start_unserved_waits(d, old, nold, now_ms);
    free(old);
    *out = w;
    return FERRY_OK;

nomem:
    for (size_t i = 0; i < n; i++)
        forget_if_unused(d, members[i].fn);
    free(members);
    return full ? FERRY_EOVERLOADED : FERRY_ENOMEM;
}

int broker_dispatch_reap(broker_dispatch *d, broker_worker *w)
{
    if (!w->leaving || w->in_flight > 0)
        return 0;
    assert(!w->calls);
    HASH_DEL(d->workers, w);
    free_worker(d, w);
    return 1;
}

int broker_dispatch_leave(broker_dispatch *d, broker_worker *w, int64_t now_ms)
{
    if (!w->leaving) {
        detach_members(d, w);
        w->leaving = 1;
        assert(d->nworkers > 0);
        d->nworkers--;
        start_unserved_waits(d, w->members, w->nmembers, now_ms);
    }
    return broker_dispatch_reap(d, w);
}

void broker_dispatch_block(broker_dispatch *d, broker_worker *w)
{
    (void)d;
    w->blocked = 1;
    update_rings(w);
}

void broker_dispatch_unblock(broker_dispatch *d, broker_worker *w)
{
    (void)d;
    w->blocked = 0;
    update_rings(w);
}

int broker_dispatch_may_retry(const broker_call *call, const broker_worker *w)
{
    if (call->retried)
        return 0;
    for (size_t i = 0; i < w->nmembers; i++)
        if (w->members[i].fn == call->fn)
            return w->members[i].idempotent;
    return 0;
}

ferry_err broker_dispatch_keep(broker_call *call, zmq_msg_t *frame, const void *data, size_t len)
{
    assert(call->held == BROKER_HELD_NONE && frame != &call->frame);
    if (len <= BROKER_CALL_COPY_MAX) {
        memcpy(call->bytes, data, len);
        call->copy_len = (uint16_t)len;
        call->held = BROKER_HELD_BYTES;
        return FERRY_OK;
    }
    zmq_msg_init(&call->frame);
    if (zmq_msg_copy(&call->frame, frame) != 0) {
        zmq_msg_close(&call->frame);
        return FERRY_ENOMEM;
    }
    call->held = BROKER_HELD_FRAME;
    return FERRY_OK;
}

void broker_dispatch_unkeep(broker_call *call)
{
    if (call->held == BROKER_HELD_FRAME)
        zmq_msg_close(&call->frame);
    call->held = BROKER_HELD_NONE;
}

/* Whether call holds its Command, then in call->frame: kept bytes become a
 * message again (0 when there is no memory for it: the call is not re-sent). */
static int held_as_frame(broker_call *call)
{
    if (call->held != BROKER_HELD_BYTES)
        return call->held == BROKER_HELD_FRAME;
    /* The bytes share their room with call->frame: copied out first. */
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, call->copy_len) != 0) {
        call->held = BROKER_HELD_NONE;
        return 0;
    }
    memcpy(zmq_msg_data(&m), call->bytes, call->copy_len);
    zmq_msg_init(&call->frame);
    zmq_msg_move(&call->frame, &m);
    zmq_msg_close(&m);
    call->held = BROKER_HELD_FRAME;
    return 1;
}

static inline broker_worker *unflight(broker_dispatch *d, broker_call *call);

void broker_dispatch_worker_lost(broker_dispatch *d, broker_worker *w, int64_t now_ms,
                                 broker_call **retry)
{
    /* Out of the rings first, so that nothing placed from here on picks w. */
    if (!w->leaving) {
        detach_members(d, w);
        w->leaving = 1;
        assert(d->nworkers > 0);
        d->nworkers--;
        start_unserved_waits(d, w->members, w->nmembers, now_ms);
    }
    d->workers_lost++;
    while (w->calls) {
        broker_call *call = w->calls;
        unflight(d, call);
        if (!call->retried && held_as_frame(call)) {
            call->retried = 1;
            /* Should nobody else serve it, the wait for a worker starts now. */
            call->queued_ms = now_ms;
            d->calls_retried++;
            DL_APPEND(*retry, call);
            continue;
        }
        call->fn->failed++;
        d->on_expired(call, FERRY_EWORKER_LOST, d->arg);
        broker_dispatch_call_free(d, call);
    }
    int reaped = broker_dispatch_reap(d, w);
    assert(reaped);
    (void)reaped;
}

/* ---- the call table ---- */

/* The slot holding the call (e, call_id), or the empty one where it would go. */
static inline size_t slot_of(const broker_dispatch *d, const broker_engine_id *e,
                             uint64_t call_id, uint32_t hash)
{
    size_t mask = d->slot_mask;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const broker_call_slot *s = &d->slots[i];
        if (!s->call || (s->hash == hash && s->call->call_id == call_id && s->call->engine == e))
            return i;
    }
}

/* Room for one more call at most half full: FERRY_ENOMEM when it cannot grow. */
static ferry_err reserve_slot(broker_dispatch *d)
{
    size_t n = d->slots ? d->slot_mask + 1 : 0;
    if (2 * (d->ncalls + 1) <= n)
        return FERRY_OK;
    size_t grown = n ? 2 * n : SLOTS_MIN;
    broker_call_slot *slots = calloc(grown, sizeof *slots);
    if (!slots)
        return FERRY_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!d->slots[i].call)
            continue;
        size_t j = d->slots[i].hash & (grown - 1);
        while (slots[j].call)
            j = (j + 1) & (grown - 1);
        slots[j] = d->slots[i];
    }
    free(d->slots);
    d->slots = slots;
    d->slot_mask = grown - 1;
    return FERRY_OK;
}

static void remove_slot(broker_dispatch *d, const broker_call *call)
{
    size_t mask = d->slot_mask;
    size_t hole = call->hash & mask;
    while (d->slots[hole].call != call)
        hole = (hole + 1) & mask;
    /* Each entry after the hole, up to the next empty slot, moves into it
     * unless its home slot lies after the hole (it would be found no more). */
    for (size_t j = (hole + 1) & mask; d->slots[j].call; j = (j + 1) & mask) {
        size_t home = d->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            d->slots[hole] = d->slots[j];
            hole = j;
        }
    }
    d->slots[hole].call = NULL;
    d->ncalls--;
}

/* ---- calls ---- */

/* Keeps a record that is in no table for the next call, up to SPARE_MAX. */
static void release_record(broker_dispatch *d, broker_call *call)
{
    if (!d->spare && !(d->spare = malloc(SPARE_MAX * sizeof *d->spare))) {
        free(call);
        return;
    }
    if (d->nspare < SPARE_MAX)
        d->spare[d->nspare++] = call;
    else
        free(call);
}

ferry_err broker_dispatch_call_new(broker_dispatch *d, const void *engine_id, size_t eid_len,
                                   uint64_t call_id, const char *function, size_t fn_len,
                                   uint32_t timeout_ms, int64_t now_ms, broker_call **out)
{
    *out = NULL;
    if (eid_len == 0 || eid_len > FERRY_ROUTING_ID_MAX || !function || fn_len == 0)
        return FERRY_EPROTO;
    if (reserve_slot(d) != FERRY_OK)
        return FERRY_ENOMEM;
    broker_engine_id *e = engine_id_get(d, engine_id, eid_len, 1);
    if (!e)
        return FERRY_ENOMEM;
    /* One probe for the duplicate check and the insert. */
    uint32_t hash = call_hash(e, call_id);
    size_t slot = slot_of(d, e, call_id, hash);
    if (d->slots[slot].call)
        return FERRY_EPROTO;
    broker_function *fn = d->last_fn;
    if (!fn || fn->name_len != fn_len || !same_bytes(fn->name, function, fn_len)) {
        int full = 0;
        fn = get_function(d, function, fn_len, 1, &full);
        if (!fn)
            return full ? FERRY_EOVERLOADED : FERRY_ENOMEM;
        d->last_fn = fn;
    }
    /* Freed records serve again; their timer was set up when they were
     * made and is idle. */
    broker_call *call;
    if (d->nspare > 0) {
        call = d->spare[--d->nspare];
    } else if ((call = malloc(sizeof *call))) {
        ferry_timer_init(&call->timer, call_timer, d);
    } else {
        forget_if_unused(d, fn);
        return FERRY_ENOMEM;
    }
    /* Each field is set here: a record is not cleared as a whole. */
    assert(!ferry_timer_active(&call->timer));
    call->engine = e;
    e->refs++;
    call->call_id = call_id;
    call->hash = hash;
    call->state = BROKER_CALL_NEW;
    call->fn = fn;
    rec_of(fn)->ncalls++;
    call->worker = NULL;
    call->prev = call->next = NULL;
    uint32_t cap = d->lim.call_timeout_ms;
    call->timeout_ms = timeout_ms == 0 || timeout_ms > cap ? cap : timeout_ms;
    call->queued_ms = now_ms;
    call->deadline_ms = now_ms + call->timeout_ms;
    call->held = BROKER_HELD_NONE;
    call->retried = 0;
    d->slots[slot].call = call;
    d->slots[slot].hash = hash;
    d->ncalls++;
    *out = call;
    return FERRY_OK;
}

/* The call (engine_id, call_id), or NULL; engine_id becomes the last seen when it is known. */
static inline broker_call *find_call(broker_dispatch *d, const void *engine_id, size_t eid_len,
                                     uint64_t call_id)
{
    if (eid_len == 0 || eid_len > FERRY_ROUTING_ID_MAX || !d->slots)
        return NULL;
    broker_engine_id *e = engine_id_get(d, engine_id, eid_len, 0);
    if (!e)
        return NULL;
    return d->slots[slot_of(d, e, call_id, call_hash(e, call_id))].call;
}

broker_call *broker_dispatch_find(broker_dispatch *d, const void *engine_id, size_t eid_len,
                                  uint64_t call_id)
{
    return find_call(d, engine_id, eid_len, call_id);
}

broker_call *broker_dispatch_match_reply(broker_dispatch *d, const void *rid, size_t rid_len,
                                         const void *engine_id, size_t eid_len, uint64_t call_id,
                                         broker_worker **w)
{
    broker_call *call = find_call(d, engine_id, eid_len, call_id);
    if (call && call->state == BROKER_CALL_IN_FLIGHT && call->worker->rid_len == rid_len &&
        same_bytes(call->worker->rid, rid, rid_len)) {
        *w = call->worker;
        return call;
    }
    *w = broker_dispatch_worker(d, rid, rid_len);
    return NULL;
}

void broker_dispatch_sent(broker_dispatch *d, broker_call *call, broker_worker *w)
{
    assert(call->state == BROKER_CALL_NEW);
    assert(broker_dispatch_worker_room(w) > 0);
    call->state = BROKER_CALL_IN_FLIGHT;
    call->worker = w;
    assert(!ferry_timer_active(&call->timer));
    DL_APPEND(w->calls, call);
    w->in_flight++;
    d->in_flight++;
    call->fn->in_flight++;
    /* Without the backstop the call still completes by its reply; only a
     * worker that never answers would then keep the record. */
    int64_t backstop = call->deadline_ms + d->lim.grace_ms;
    if (!ferry_timer_active(&w->backstop) || backstop < w->backstop.when_ms)
        (void)ferry_timer_start(d->timers, &w->backstop, backstop);
    update_rings(w);
}

/* When a queued call must be looked at again: its deadline, or earlier the
 * end of the unserved wait while nobody serves its function. */
static int64_t queued_expiry(const broker_dispatch *d, const broker_call *call)
{
    int64_t when = call->deadline_ms;
    if (call->fn->workers == 0 && call->queued_ms + d->lim.unserved_wait_ms < when)
        when = call->queued_ms + d->lim.unserved_wait_ms;
    return when;
}

ferry_err broker_dispatch_enqueue(broker_dispatch *d, broker_call *call, zmq_msg_t *frame,
                                  int front)
{
    assert(call->state == BROKER_CALL_NEW);
    if (!front && d->queued >= d->lim.queue_max)
        return FERRY_EOVERLOADED;
    size_t bytes = frame ? zmq_msg_size(frame) : 0; /* given back in unqueue */
    if (!broker_budget_take(d->lim.bytes, bytes, front))
        return FERRY_EOVERLOADED;
    ferry_err err = ferry_timer_start(d->timers, &call->timer, queued_expiry(d, call));
    if (err) {
        broker_budget_give(d->lim.bytes, bytes);
        return err;
    }
    assert(frame != &call->frame || call->held == BROKER_HELD_FRAME);
    if (frame && frame != &call->frame) {
        assert(call->held == BROKER_HELD_NONE);
        zmq_msg_init(&call->frame);
        zmq_msg_move(&call->frame, frame);
        call->held = BROKER_HELD_FRAME;
    }
    if (front)
        DL_PREPEND(call->fn->queue, call);
    else
        DL_APPEND(call->fn->queue, call);
    call->state = BROKER_CALL_QUEUED;
    call->fn->queued++;
    d->queued++;
    return FERRY_OK;
}

static void unqueue(broker_dispatch *d, broker_call *call)
{
    assert(call->state == BROKER_CALL_QUEUED);
    DL_DELETE(call->fn->queue, call);
    call->prev = call->next = NULL;
    ferry_timer_stop(d->timers, &call->timer);
    call->fn->queued--;
    d->queued--;
    broker_budget_give(d->lim.bytes,
                       call->held == BROKER_HELD_FRAME ? zmq_msg_size(&call->frame) : 0);
    call->state = BROKER_CALL_NEW;
}

broker_call *broker_dispatch_pop(broker_dispatch *d, broker_function *fn)
{
    broker_call *call = fn->queue;
    if (call)
        unqueue(d, call);
    return call;
}

broker_call *broker_dispatch_take(broker_dispatch *d, broker_worker *w)
{
    if (d->queued == 0 || broker_dispatch_worker_room(w) == 0)
        return NULL;
    for (size_t i = 0; i < w->nmembers; i++) {
        size_t idx = (w->next_member + i) % w->nmembers;
        broker_function *fn = w->members[idx].fn;
        if (fn->queue) {
            w->next_member = (idx + 1) % w->nmembers;
            return broker_dispatch_pop(d, fn);
        }
    }
    return NULL;
}

/* Takes an in-flight call off its worker, without giving the credit back yet. */
static inline broker_worker *unflight(broker_dispatch *d, broker_call *call)
{
    assert(call->state == BROKER_CALL_IN_FLIGHT);
    broker_worker *w = call->worker;
    DL_DELETE(w->calls, call);
    call->prev = call->next = NULL;
    /* w's backstop may now fire early: it finds nothing due then. */
    assert(w->in_flight > 0 && d->in_flight > 0 && call->fn->in_flight > 0);
    w->in_flight--;
    d->in_flight--;
    call->fn->in_flight--;
    call->worker = NULL;
    call->state = BROKER_CALL_NEW;
    return w;
}

void broker_dispatch_complete(broker_dispatch *d, broker_call *call, int failed)
{
    broker_worker *w = unflight(d, call);
    if (failed) {
        call->fn->failed++;
        w->failed++;
    } else {
        call->fn->completed++;
        w->completed++;
    }
    /* It answers, so it reads: unblocked. Stored only when set, because
     * update_rings reads blocked at once (with leaving, in one load), and a
     * load over a store still in flight waits for it to reach the cache,
     * and so for every store before it (unflight's, to a cold record). */
    if (w->blocked)
        w->blocked = 0;
    update_rings(w);
    /* A worker answers mostly in the order it was sent calls, so its oldest
     * call is most likely the next Reply's: fetch that call's slot now, a
     * message ahead, rather than miss it then. */
    if (w->calls)
        __builtin_prefetch(&d->slots[w->calls->hash & d->slot_mask]);
}

int broker_dispatch_stray_reply(broker_dispatch *d, broker_worker *w)
{
    (void)d;
    w->blocked = 0;
    if (w->lost == 0) {
        update_rings(w);
        return 0;
    }
    w->lost--;
    update_rings(w);
    return 1;
}

void broker_dispatch_count_failed(broker_dispatch *d, broker_call *call)
{
    (void)d;
    call->fn->failed++;
}

void broker_dispatch_call_free(broker_dispatch *d, broker_call *call)
{
    if (!call)
        return;
    assert(call->state == BROKER_CALL_NEW && !ferry_timer_active(&call->timer));
    remove_slot(d, call);
    if (call->held != BROKER_HELD_NONE)
        broker_dispatch_unkeep(call);
    broker_function *fn = call->fn;
    engine_id_release(d, call->engine);
    release_record(d, call);
    assert(rec_of(fn)->ncalls > 0);
    rec_of(fn)->ncalls--;
    forget_if_unused(d, fn);
}

broker_function *broker_dispatch_function(broker_dispatch *d, const char *name)
{
    return get_function(d, name, strlen(name), 0, NULL);
}

static void call_timer(ferry_timer *t, void *arg)
{
    broker_dispatch *d = arg;
    broker_call *call = (broker_call *)((char *)t - offsetof(broker_call, timer));
    int64_t now = t->when_ms;
    ferry_err reason;

    assert(call->state == BROKER_CALL_QUEUED);
    if (call->fn->workers == 0) {
        reason = FERRY_ENO_WORKER;
    } else if (now >= call->deadline_ms) {
        reason = FERRY_ETIMEOUT;
    } else {
        /* A worker appeared during the unserved wait but has no credit yet:
         * the call waits for one up to its deadline. */
        if (ferry_timer_start(d->timers, &call->timer, call->deadline_ms) == FERRY_OK)
            return;
        reason = FERRY_ETIMEOUT;
    }
    unqueue(d, call);
    call->fn->failed++;
    d->on_expired(call, reason, d->arg);
    broker_dispatch_call_free(d, call);
}

/*
 * w's backstop: its calls in flight past deadline + grace are expired. The
 * worker would have answered a timeout long ago, so it is stuck or gone.
 * Their credit stays consumed, which keeps a black-hole worker from
 * swallowing more than its credit. The timer may fire before any call is
 * due (the earliest one completed since): then it only moves on. Calls due
 * at different times each wait for their own (the timer re-arms at the next
 * one, which runs in the same ferry_timers_run when that is due too), and
 * those due together expire in the order they were sent.
 */
static void backstop_timer(ferry_timer *t, void *arg)
{
    broker_dispatch *d = arg;
    broker_worker *w = (broker_worker *)((char *)t - offsetof(broker_worker, backstop));
    int64_t now = t->when_ms;
    int64_t next = INT64_MAX;
    int expired = 0;
    broker_call *call, *tmp;
    DL_FOREACH_SAFE(w->calls, call, tmp)
    {
        int64_t backstop = call->deadline_ms + d->lim.grace_ms;
        if (backstop > now) {
            if (backstop < next)
                next = backstop;
            continue;
        }
        unflight(d, call);
        if (!w->leaving)
            w->lost++;
        call->fn->failed++;
        d->on_expired(call, FERRY_ETIMEOUT, d->arg);
        broker_dispatch_call_free(d, call);
        expired = 1;
    }
    if (w->calls)
        (void)ferry_timer_start(d->timers, &w->backstop, next);
    if (expired && !broker_dispatch_reap(d, w))
        update_rings(w);
}

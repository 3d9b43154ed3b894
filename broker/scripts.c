/*
 * scripts: engine table with a ring of free slots, script table, script
 * queue, script timers. See scripts.h for the model.
 */
#include "scripts.h"

#include "utlist.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static void script_timer(ferry_timer *t, void *arg);

void broker_scripts_init(broker_scripts *s, ferry_timers *timers,
                         const broker_scripts_limits *lim, broker_script_expired_fn on_expired,
                         void *arg)
{
    assert(s && timers && lim && on_expired);
    memset(s, 0, sizeof *s);
    s->timers = timers;
    s->lim = *lim;
    s->on_expired = on_expired;
    s->arg = arg;
    s->next_id = 1;
}

void broker_scripts_fini(broker_scripts *s)
{
    broker_script *script, *stmp;
    HASH_ITER(hh, s->table, script, stmp)
    {
        HASH_DEL(s->table, script);
        ferry_timer_stop(s->timers, &script->timer);
        ferry_envelope_free(script->submit);
        free(script);
    }
    broker_engine *e, *etmp;
    HASH_ITER(hh, s->engines, e, etmp)
    {
        HASH_DEL(s->engines, e);
        free(e);
    }
    memset(s, 0, sizeof *s);
}

/* ---- engines ---- */

uint32_t broker_scripts_engine_room(const broker_engine *e)
{
    if (e->blocked || e->leaving)
        return 0;
    uint64_t used = (uint64_t)e->running + e->untracked;
    return e->slots > used ? (uint32_t)(e->slots - used) : 0;
}

static void update_ring(broker_scripts *s, broker_engine *e)
{
    int want = broker_scripts_engine_room(e) > 0;
    if (want && !e->in_ring) {
        CDL_APPEND(s->ring, e);
        e->in_ring = 1;
    } else if (!want && e->in_ring) {
        CDL_DELETE(s->ring, e);
        e->in_ring = 0;
    }
}

broker_engine *broker_scripts_engine(broker_scripts *s, const void *rid, size_t rid_len)
{
    broker_engine *e = NULL;
    HASH_FIND(hh, s->engines, rid, rid_len, e);
    return e;
}

ferry_err broker_scripts_hello(broker_scripts *s, const void *rid, size_t rid_len,
                               uint32_t slots, uint32_t running, int64_t now_ms,
                               broker_engine **out)
{
    *out = NULL;
    if (rid_len == 0 || rid_len > FERRY_ROUTING_ID_MAX)
        return FERRY_EPROTO;
    broker_engine *e = broker_scripts_engine(s, rid, rid_len);
    if (!e) {
        if (s->lim.engines_max && s->nengines >= s->lim.engines_max)
            return FERRY_EOVERLOADED;
        e = calloc(1, sizeof *e);
        if (!e)
            return FERRY_ENOMEM;
        memcpy(e->rid, rid, rid_len);
        e->rid_len = rid_len;
        HASH_ADD(hh, s->engines, rid, rid_len, e);
        if (!FERRY_HASH_ADDED(e)) {
            free(e);
            return FERRY_ENOMEM;
        }
        s->nengines++;
    }
    e->slots = slots;
    /* What it runs beyond our own scripts there started before we knew it
     * (a broker restart): those slots stay taken until their Results. */
    e->untracked = running > e->running ? running - e->running : 0;
    e->blocked = 0;
    e->last_seen_ms = now_ms;
    update_ring(s, e);
    *out = e;
    return FERRY_OK;
}

broker_engine *broker_scripts_pick(broker_scripts *s)
{
    broker_engine *e = s->ring;
    if (!e)
        return NULL;
    assert(broker_scripts_engine_room(e) > 0);
    s->ring = e->next; /* round robin: the next pick starts after this engine */
    return e;
}

void broker_scripts_block(broker_scripts *s, broker_engine *e)
{
    e->blocked = 1;
    update_ring(s, e);
}

void broker_scripts_leave(broker_scripts *s, broker_engine *e)
{
    e->leaving = 1;
    update_ring(s, e);
}

void broker_scripts_unblock(broker_scripts *s, broker_engine *e)
{
    e->blocked = 0;
    update_ring(s, e);
}

/* Takes a running script off its engine, without touching the ring. */
static broker_engine *unrun(broker_scripts *s, broker_script *script)
{
    assert(script->state == BROKER_SCRIPT_RUNNING);
    broker_engine *e = script->engine;
    DL_DELETE(e->scripts, script);
    script->prev = script->next = NULL;
    ferry_timer_stop(s->timers, &script->timer);
    assert(e->running > 0 && s->running > 0);
    e->running--;
    s->running--;
    script->engine = NULL;
    script->state = BROKER_SCRIPT_NEW;
    return e;
}

void broker_scripts_engine_lost(broker_scripts *s, broker_engine *e)
{
    while (e->scripts) {
        broker_script *script = e->scripts;
        unrun(s, script);
        s->on_expired(script, FERRY_EENGINE_LOST, s->arg);
        broker_scripts_free(s, script);
    }
    if (e->in_ring)
        CDL_DELETE(s->ring, e);
    HASH_DEL(s->engines, e);
    s->nengines--;
    s->engines_lost++;
    free(e);
}

/* ---- scripts ---- */

ferry_err broker_scripts_new(broker_scripts *s, const void *client, size_t client_len,
                             uint64_t request_id, uint32_t timeout_ms, Ferry__Envelope *submit,
                             int64_t now_ms, broker_script **out)
{
    *out = NULL;
    if (client_len == 0 || client_len > FERRY_ROUTING_ID_MAX)
        return FERRY_EPROTO;
    broker_script *script = calloc(1, sizeof *script);
    if (!script)
        return FERRY_ENOMEM;
    script->script_id = s->next_id++;
    script->state = BROKER_SCRIPT_NEW;
    script->submit = submit;
    uint32_t cap = s->lim.timeout_ms;
    script->timeout_ms = timeout_ms == 0 || timeout_ms > cap ? cap : timeout_ms;
    script->deadline_ms = now_ms + script->timeout_ms;
    script->request_id = request_id;
    memcpy(script->client, client, client_len);
    script->client_len = client_len;
    ferry_timer_init(&script->timer, script_timer, s);
    HASH_ADD(hh, s->table, script_id, sizeof script->script_id, script);
    if (!FERRY_HASH_ADDED(script)) {
        free(script);
        return FERRY_ENOMEM;
    }
    *out = script;
    return FERRY_OK;
}

broker_script *broker_scripts_find(broker_scripts *s, uint64_t script_id)
{
    broker_script *script = NULL;
    HASH_FIND(hh, s->table, &script_id, sizeof script_id, script);
    return script;
}

void broker_scripts_started(broker_scripts *s, broker_script *script, broker_engine *e)
{
    assert(script->state == BROKER_SCRIPT_NEW);
    assert(broker_scripts_engine_room(e) > 0);
    ferry_envelope_free(script->submit);
    script->submit = NULL;
    script->state = BROKER_SCRIPT_RUNNING;
    script->engine = e;
    DL_APPEND(e->scripts, script);
    e->running++;
    s->running++;
    /* Without the backstop the script still ends by its Result; only an
     * engine that never answers would then keep the record. */
    (void)ferry_timer_start(s->timers, &script->timer, script->deadline_ms + s->lim.grace_ms);
    update_ring(s, e);
}

ferry_err broker_scripts_enqueue(broker_scripts *s, broker_script *script, int front)
{
    assert(script->state == BROKER_SCRIPT_NEW);
    if (!front && s->queued >= s->lim.queue_max)
        return FERRY_EOVERLOADED;
    if (!broker_budget_take(s->lim.bytes, script->bytes, front))
        return FERRY_EOVERLOADED;
    ferry_err err = ferry_timer_start(s->timers, &script->timer, script->deadline_ms);
    if (err) {
        broker_budget_give(s->lim.bytes, script->bytes);
        return err;
    }
    if (front)
        DL_PREPEND(s->queue, script);
    else
        DL_APPEND(s->queue, script);
    script->state = BROKER_SCRIPT_QUEUED;
    s->queued++;
    return FERRY_OK;
}

static void unqueue(broker_scripts *s, broker_script *script)
{
    assert(script->state == BROKER_SCRIPT_QUEUED);
    DL_DELETE(s->queue, script);
    script->prev = script->next = NULL;
    ferry_timer_stop(s->timers, &script->timer);
    s->queued--;
    broker_budget_give(s->lim.bytes, script->bytes);
    script->state = BROKER_SCRIPT_NEW;
}

broker_script *broker_scripts_pop(broker_scripts *s)
{
    broker_script *script = s->queue;
    if (script)
        unqueue(s, script);
    return script;
}

void broker_scripts_finish(broker_scripts *s, broker_script *script)
{
    broker_engine *e = unrun(s, script);
    e->blocked = 0; /* it answers, so it reads */
    update_ring(s, e);
}

int broker_scripts_stray_result(broker_scripts *s, broker_engine *e)
{
    e->blocked = 0;
    int freed = 0;
    if (e->untracked > 0) {
        e->untracked--;
        freed = 1;
    }
    update_ring(s, e);
    return freed;
}

void broker_scripts_free(broker_scripts *s, broker_script *script)
{
    if (!script)
        return;
    assert(script->state == BROKER_SCRIPT_NEW);
    HASH_DEL(s->table, script);
    ferry_timer_stop(s->timers, &script->timer);
    ferry_envelope_free(script->submit);
    free(script);
}

static void script_timer(ferry_timer *t, void *arg)
{
    broker_scripts *s = arg;
    broker_script *script = (broker_script *)((char *)t - offsetof(broker_script, timer));

    if (script->state == BROKER_SCRIPT_QUEUED) {
        unqueue(s, script);
        s->on_expired(script, s->nengines == 0 ? FERRY_ENO_ENGINE : FERRY_ETIMEOUT, s->arg);
        broker_scripts_free(s, script);
        return;
    }

    /* Running past deadline + grace: the engine would have answered a
     * timeout long ago, so it hung or vanished. Its slot stays taken until a
     * stray Result or its next Hello, so a hung engine gets no new work. */
    assert(script->state == BROKER_SCRIPT_RUNNING);
    broker_engine *e = unrun(s, script);
    e->untracked++;
    s->on_expired(script, FERRY_ETIMEOUT, s->arg);
    broker_scripts_free(s, script);
    update_ring(s, e);
}

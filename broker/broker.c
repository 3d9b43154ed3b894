/*
 * broker: socket handlers of ferry-broker, the glue between the wire and the
 * routing tables. The contract is docs/protocol.md; broker.h says what
 * happens to bad input.
 *
 * Calls: a Command frame is forwarded unchanged to a worker (or queued with
 * the frame held, not copied), and the worker's Reply frame unchanged to
 * the engine whose routing id is the Reply's engine_id. Scripts: the Submit
 * and the Result are re-encoded, because the broker sets script_id and
 * request_id in them.
 *
 * Liveness: every message from a worker or engine stamps its last_seen_ms.
 * One sweep timer, twice per heartbeat interval, sends a Heartbeat to each
 * peer that was sent nothing for an interval and declares lost each peer
 * silent for more than liveness intervals: O(peers) per sweep, nothing per
 * message. So a peer hears from us at least every 1.5 intervals, and a
 * silent one is found within half an interval of its limit.
 * A send that finds a peer's connection gone (EHOSTUNREACH, thanks to
 * ZMQ_ROUTER_MANDATORY) declares it lost at once. A monitor on the engines
 * and workers ROUTERs makes that quick for a peer that dies: the event does
 * not say which peer went, so a probe shortly after it sends a Heartbeat to
 * every peer of that socket (O(peers), on a disconnection only), and the
 * one whose connection is gone fails.
 */
#include "broker.h"

#include "ferry_clock.h"
#include "ferry_log.h"
#include "ferry_wire.h"
#include "utlist.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

typedef void (*msg_fn)(broker *b, ferry_frames *f, Ferry__Envelope **env);

static const char *const drop_names[BROKER_DROP_COUNT] = {
    [BROKER_DROP_FRAMES] = "bad_frames",
    [BROKER_DROP_DECODE] = "bad_message",
    [BROKER_DROP_UNEXPECTED] = "unexpected_message",
    [BROKER_DROP_INVALID] = "invalid_message",
    [BROKER_DROP_DUPLICATE] = "duplicate_call",
    [BROKER_DROP_UNKNOWN] = "unknown_answer",
    [BROKER_DROP_UNDELIVERABLE] = "undeliverable",
    [BROKER_DROP_REVOKED] = "revoked_key",
    [BROKER_DROP_IMPOSTOR] = "identity_taken",
    [BROKER_DROP_FORGED] = "forged_command",
};

const char *broker_drop_name(broker_drop kind)
{
    return drop_names[kind];
}

/* Writes a routing id for a log line: printable bytes as they are, the
 * rest (ZeroMQ's generated ids start with a zero byte) as \xNN. */
static const char *id_text(const void *id, size_t len, char *buf, size_t buflen)
{
    const unsigned char *p = id;
    size_t n = 0;
    for (size_t i = 0; i < len && n + 5 < buflen; i++) {
        if (p[i] > 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\')
            buf[n++] = (char)p[i];
        else
            n += (size_t)snprintf(buf + n, buflen - n, "\\x%02x", p[i]);
    }
    buf[n] = '\0';
    return buf;
}

static void drop(broker *b, broker_drop kind, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

static void drop(broker *b, broker_drop kind, const char *fields, ...)
{
    b->dropped++;
    broker_metrics_dropped(&b->metrics, kind);
    char line[512];
    va_list ap;
    va_start(ap, fields);
    vsnprintf(line, sizeof line, fields, ap);
    va_end(ap);
    broker_log_site *site = &b->drops[kind];
    ferry_log_limited(&site->last_ms, &site->suppressed, FERRY_LOG_WARN, drop_names[kind], "%s",
                      line);
}

/* ---- answers the broker makes itself ---- */

static void lose_engine(broker *b, broker_engine *e, const char *why);
static int revoked(broker *b, ferry_frames *f, broker_role role);
static const char *sender_key(broker *b, ferry_frames *f);
static int worker_impostor(broker *b, ferry_frames *f, broker_worker *w, const char *what);
static int engine_impostor(broker *b, ferry_frames *f, broker_engine *e, const char *what);

/* A send to the engine eid failed: when it is unreachable and registered, it is gone. */
static void engine_unreachable(broker *b, const void *eid, size_t eid_len, ferry_err err)
{
    if (err != FERRY_EUNREACHABLE)
        return;
    broker_engine *e = broker_scripts_engine(&b->scripts, eid, eid_len);
    if (e)
        lose_engine(b, e, "unreachable");
}

static ferry_err send_call_error(broker *b, const void *eid, size_t eid_len, uint64_t call_id,
                                 ferry_err code, const char *message)
{
    Ferry__Error error = FERRY__ERROR__INIT;
    error.code = (char *)ferry_err_code(code);
    error.message = (char *)message;
    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.engine_id.data = (uint8_t *)eid;
    reply.engine_id.len = eid_len;
    reply.call_id = call_id;
    reply.error = &error;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    ferry_err err = ferry_wire_send(b->engines, eid, eid_len, &env);
    if (err) {
        char id[64];
        drop(b, BROKER_DROP_UNDELIVERABLE, "what=reply engine=%s call_id=%llu error=%s",
             id_text(eid, eid_len, id, sizeof id), (unsigned long long)call_id,
             ferry_err_code(err));
        engine_unreachable(b, eid, eid_len, err);
    }
    return err;
}

static void answer_call(broker *b, broker_call *call, ferry_err code, const char *message)
{
    size_t eid_len;
    const uint8_t *eid = broker_call_engine(call, &eid_len);
    broker_metrics_call_failed(&b->metrics, call, code);
    send_call_error(b, eid, eid_len, call->call_id, code, message);
}

static void send_result_error(broker *b, const void *client, size_t client_len,
                              uint64_t request_id, uint64_t script_id, ferry_err code,
                              const char *message)
{
    Ferry__Error error = FERRY__ERROR__INIT;
    error.code = (char *)ferry_err_code(code);
    error.message = (char *)message;
    Ferry__Result result = FERRY__RESULT__INIT;
    result.request_id = request_id;
    result.ok = 0;
    result.error = &error;
    result.script_id = script_id;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_RESULT;
    env.result = &result;
    broker_metrics_script_done(&b->metrics, NULL, code);
    ferry_err err = ferry_wire_send(b->clients, client, client_len, &env);
    if (err) {
        char id[64];
        drop(b, BROKER_DROP_UNDELIVERABLE, "what=result client=%s request_id=%llu error=%s",
             id_text(client, client_len, id, sizeof id), (unsigned long long)request_id,
             ferry_err_code(err));
    }
}

static void answer_script(broker *b, broker_script *script, ferry_err code, const char *message)
{
    send_result_error(b, script->client, script->client_len, script->request_id,
                      script->script_id, code, message);
}

/* ---- calls ---- */

/*
 * A Command or a Reply being routed: a whole received message (f and index:
 * its frame, which a send moves out of f), or an item of a received Batch
 * (f NULL: only its bytes, inside the batch's frame; a message is made of
 * them in own when one is needed, see item_msg).
 */
typedef struct {
    const uint8_t *data;
    size_t len;
    ferry_frames *f;
    int index;
    zmq_msg_t own;
    int owned; /* own holds a message still to be closed */
} broker_item;

/* The message holding the item's bytes: its frame, or a copy made now.
 * NULL when there is no memory for the copy. */
static zmq_msg_t *item_msg(broker_item *it)
{
    if (it->f)
        return &it->f->frames[it->index];
    if (!it->owned) {
        if (zmq_msg_init_size(&it->own, it->len) != 0)
            return NULL;
        memcpy(zmq_msg_data(&it->own), it->data, it->len);
        it->owned = 1;
    }
    return &it->own;
}

/* item_msg(it) was sent or moved away. */
static void item_moved(broker_item *it)
{
    if (it->f)
        ferry_frame_moved(it->f, it->index);
    else
        it->owned = 0;
}

/* Closes what the item still holds. */
static void item_done(broker_item *it)
{
    if (it->owned)
        zmq_msg_close(&it->own);
    it->owned = 0;
}

/* Whether the engine eid took Replies in a Batch in its Hello. */
static int engine_batches(broker *b, const void *eid, size_t eid_len)
{
    broker_engine *e = broker_scripts_engine(&b->scripts, eid, eid_len);
    return e && e->batches;
}

/*
 * Room for len more bytes in the batch this drain gathers for the peer rid
 * (a worker's Commands, or an engine's Replies): where to write them, or
 * NULL when they cannot go in one (too large, no slot, no memory): the
 * caller sends them alone, as it does outside a drain (timers, signals).
 * Only for peers that said they take batches: a worker's caller knows; for
 * an engine (worker 0) its record is asked when it has no batch yet.
 */
static uint8_t *batch_room(broker *b, int worker, const void *rid, size_t rid_len, size_t len)
{
    ferry_err err;
    broker_out *o;
    if (!b->gathering || !ferry_batch_fits(&b->outs[0].batch, len))
        return NULL;
    int known = worker;
    for (size_t i = 0; i < b->nouts; i++) {
        o = &b->outs[i];
        if (o->worker == worker && o->rid_len == rid_len && memcmp(o->rid, rid, rid_len) == 0) {
            uint8_t *at = ferry_batch_add(&o->batch, len, &err);
            if (at || err)
                return at;
            known = 1; /* full: a later slot for the same peer follows it out, in order */
        }
    }
    if (b->nouts == BROKER_OUTS || (!known && !engine_batches(b, rid, rid_len)))
        return NULL;
    o = &b->outs[b->nouts];
    uint8_t *at = ferry_batch_add(&o->batch, len, &err);
    if (!at)
        return NULL;
    o->worker = worker;
    memcpy(o->rid, rid, rid_len);
    o->rid_len = rid_len;
    b->nouts++;
    return at;
}

/*
 * The peer rid is lost: what this drain gathered for it is not sent (its
 * route may belong to another connection by the time the drain ends). A
 * worker's Commands are its calls in flight, which losing it re-places or
 * answers; an engine's Replies are counted undeliverable.
 */
static void purge_outs(broker *b, int worker, const void *rid, size_t rid_len)
{
    b->checked.seq = 0; /* what was checked against its record holds no more */
    for (size_t i = 0; i < b->nouts; i++) {
        broker_out *o = &b->outs[i];
        if (o->worker != worker || o->rid_len != rid_len || memcmp(o->rid, rid, rid_len) != 0)
            continue;
        char id[64];
        for (size_t n = 0; !worker && n < o->batch.count; n++)
            drop(b, BROKER_DROP_UNDELIVERABLE, "what=reply engine=%s error=engine_lost",
                 id_text(rid, rid_len, id, sizeof id));
        o->rid_len = 0; /* matches nobody: flush_outs passes it */
        ferry_batch_clear(&o->batch);
    }
}

static void place_call(broker *b, broker_call *call, broker_item *it, int front);

/* w is gone: its in-flight calls are sent once more elsewhere when they may
 * be, else answered `worker_lost` (dispatch.h); w is freed. */
static void lose_worker(broker *b, broker_worker *w, const char *why)
{
    purge_outs(b, 1, w->rid, w->rid_len);
    char id[64];
    id_text(w->rid, w->rid_len, id, sizeof id);
    int64_t now = ferry_now_ms();
    ferry_warn("worker_lost", "worker=%s reason=%s in_flight=%u silent_ms=%lld", id, why,
               w->in_flight, (long long)(now - w->last_seen_ms));
    broker_call *retry = NULL;
    broker_dispatch_worker_lost(&b->dispatch, w, now, &retry);
    while (retry) {
        broker_call *call = retry;
        DL_DELETE(retry, call);
        call->prev = call->next = NULL;
        broker_metrics_call_retried(&b->metrics, call);
        place_call(b, call, NULL, 1);
    }
}

/*
 * Forwards the call's Command to w: the item it just arrived as (a call
 * placed as it arrives is not moved into its record first), or call->frame
 * when it is NULL (a call that waited, or came back from a lost worker). 1
 * when it went (the call is in flight; the item's frame is marked moved,
 * unless its bytes went into w's batch of this drain); 0 when w cannot take
 * it, after taking w out of the rotation: an unreachable worker is lost (and
 * freed), a full one is blocked until it answers. The Command is where it
 * was then: a send that fails leaves its message as it was. A call that may
 * be re-sent should w be lost keeps a copy of its Command
 * (broker_dispatch_keep); one that holds call->frame keeps it and sends a
 * copy (a reference to its bytes). A worker that takes batches gets the
 * Command's bytes in its batch, sent when the drain ends (flush_outs).
 */
static int send_call(broker *b, broker_call *call, broker_worker *w, broker_item *it)
{
    assert(it || call->held == BROKER_HELD_FRAME);
    int retry = broker_dispatch_may_retry(call, w);
    if (w->batches) {
        const void *data = it ? it->data : zmq_msg_data(&call->frame);
        size_t len = it ? it->len : zmq_msg_size(&call->frame);
        zmq_msg_t *frame = it && retry && len > BROKER_CALL_COPY_MAX ? item_msg(it) : NULL;
        uint8_t *at = !it || !retry || len <= BROKER_CALL_COPY_MAX || frame
                          ? batch_room(b, 1, w->rid, w->rid_len, len)
                          : NULL;
        if (at) {
            memcpy(at, data, len);
            if (it && retry)
                (void)broker_dispatch_keep(call, frame, data, len); /* else sent without */
            else if (!it && !retry)
                broker_dispatch_unkeep(call); /* its bytes went: nothing is kept */
            w->last_sent_ms = b->loop.now_ms;
            broker_dispatch_sent(&b->dispatch, call, w);
            broker_metrics_call_sent(&b->metrics, call);
            return 1;
        }
    }
    zmq_msg_t copy;
    zmq_msg_t *out = it ? item_msg(it) : &call->frame; /* what is sent */
    if (!out)
        return 0; /* no memory for a copy of a batch's item: left to the caller's queue */
    int kept = 0; /* a copy was kept for a retry: dropped if the send fails */
    if (retry) {
        if (it) {
            kept = broker_dispatch_keep(call, out, it->data, it->len) == FERRY_OK;
        } else {
            zmq_msg_init(&copy);
            if (zmq_msg_copy(&copy, out) == 0)
                out = &copy;
            else
                zmq_msg_close(&copy); /* sent without a retry then */
        }
    }
    ferry_err err = ferry_wire_forward(b->workers, w->rid, w->rid_len, out);
    if (err == FERRY_OK) {
        if (it)
            item_moved(it);
        else if (out == &call->frame)
            broker_dispatch_unkeep(call); /* it went itself: nothing is kept */
        w->last_sent_ms = b->loop.now_ms;
        broker_dispatch_sent(&b->dispatch, call, w);
        broker_metrics_call_sent(&b->metrics, call);
        return 1;
    }
    if (out == &copy)
        zmq_msg_close(&copy);
    if (kept)
        broker_dispatch_unkeep(call);
    char id[64];
    id_text(w->rid, w->rid_len, id, sizeof id);
    if (err == FERRY_EUNREACHABLE) {
        lose_worker(b, w, "unreachable");
    } else {
        ferry_log_limited(&b->io_log.last_ms, &b->io_log.suppressed, FERRY_LOG_WARN,
                          "worker_blocked", "worker=%s error=%s", id, ferry_err_code(err));
        broker_dispatch_block(&b->dispatch, w);
    }
    return 0;
}

/* Sends a NEW call to a worker that can take it, or queues it (at the head
 * when it came from the queue). Answers `overloaded` when it cannot queue.
 * it is where the call's Command is, as for send_call; it ends up sent or in
 * call->frame (the item's message is marked moved then). */
static void place_call(broker *b, broker_call *call, broker_item *it, int front)
{
    broker_worker *w;
    while ((w = broker_dispatch_pick(&b->dispatch, call->fn)))
        if (send_call(b, call, w, it))
            return;
    zmq_msg_t *frame = it ? item_msg(it) : &call->frame;
    ferry_err err = frame ? broker_dispatch_enqueue(&b->dispatch, call, frame, front) : FERRY_ENOMEM;
    if (err == FERRY_OK) {
        if (it)
            item_moved(it);
        return;
    }
    char msg[128];
    if (err == FERRY_EOVERLOADED)
        snprintf(msg, sizeof msg,
                 "broker call queue is full (%zu calls, %zu of %zu bytes waiting)",
                 b->dispatch.queued, b->budget.used, b->budget.max);
    else
        snprintf(msg, sizeof msg, "broker out of memory queueing the call");
    answer_call(b, call, err, msg);
    broker_dispatch_count_failed(&b->dispatch, call);
    broker_dispatch_call_free(&b->dispatch, call);
}

/* Gives w queued calls while it has credit. w may be freed on return. */
static void drain_worker(broker *b, broker_worker *w)
{
    broker_call *call;
    while ((call = broker_dispatch_take(&b->dispatch, w))) {
        if (!send_call(b, call, w, NULL)) {
            place_call(b, call, NULL, 1);
            return;
        }
    }
}

static void on_call_expired(broker_call *call, ferry_err reason, void *arg)
{
    broker *b = arg;
    char msg[300];
    if (reason == FERRY_ENO_WORKER)
        snprintf(msg, sizeof msg, "no worker serves function '%.200s'", call->fn->name);
    else if (reason == FERRY_EWORKER_LOST)
        snprintf(msg, sizeof msg, "the worker running '%.200s' was lost%s", call->fn->name,
                 call->retried ? " (the second one to run this call)" : "");
    else
        snprintf(msg, sizeof msg, "call to '%.200s' got no answer within %u ms", call->fn->name,
                 call->timeout_ms);
    answer_call(b, call, reason, msg);
}

/* A Command, routed on what ferry_wire_peek_call read: its frame goes on unchanged. */
static void on_command(broker *b, ferry_frames *f, const ferry_wire_call *cmd, broker_item *it)
{
    if (cmd->engine_id_len == 0 || cmd->engine_id_len > FERRY_ROUTING_ID_MAX ||
        cmd->function_len == 0) {
        drop(b, BROKER_DROP_INVALID, "what=command reason=\"engine_id or function missing\"");
        return;
    }
    if (b->curve.on && !(it->f == NULL && b->checked.seq == b->seq && b->checked.engine &&
                         b->checked.eid_len == cmd->engine_id_len &&
                         memcmp(b->checked.eid, cmd->engine_id, cmd->engine_id_len) == 0)) {
        /* Only the key that registered an engine id may make calls under it. */
        broker_engine *e = broker_scripts_engine(&b->scripts, cmd->engine_id, cmd->engine_id_len);
        const char *key = sender_key(b, f);
        if (!e || strcmp(e->key, key) == 0) {
            /* The next items of this Batch (same connection, same key) under this id pass. */
            b->checked.seq = b->seq;
            b->checked.engine = 1;
            b->checked.eid_len = cmd->engine_id_len;
            memcpy(b->checked.eid, cmd->engine_id, cmd->engine_id_len);
        } else {
            char id[64];
            drop(b, BROKER_DROP_FORGED, "engine=%s call_id=%llu key=%s registered_key=%s",
                 id_text(cmd->engine_id, cmd->engine_id_len, id, sizeof id),
                 (unsigned long long)cmd->call_id, key[0] ? key : "-", e->key);
            return;
        }
    }
    if (!ferry_wire_function_name_ok(cmd->function, cmd->function_len)) {
        /* Every Command gets its one Reply, this one too, at once. */
        char why[96];
        snprintf(why, sizeof why, "function name of %zu bytes: 1 to %d bytes of UTF-8 allowed",
                 cmd->function_len, FERRY_FUNCTION_NAME_MAX);
        send_call_error(b, cmd->engine_id, cmd->engine_id_len, cmd->call_id, FERRY_EPROTO, why);
        return;
    }
    broker_call *call;
    ferry_err err = broker_dispatch_call_new(&b->dispatch, cmd->engine_id, cmd->engine_id_len,
                                             cmd->call_id, cmd->function, cmd->function_len,
                                             cmd->timeout_ms, b->loop.now_ms, &call);
    if (err == FERRY_EPROTO) {
        char id[64];
        drop(b, BROKER_DROP_DUPLICATE, "engine=%s call_id=%llu",
             id_text(cmd->engine_id, cmd->engine_id_len, id, sizeof id),
             (unsigned long long)cmd->call_id);
        return;
    }
    if (err) {
        /* A bound is `overloaded`; the broker's own allocation failing is
         * `out_of_memory` (docs/protocol.md#errors). */
        send_call_error(b, cmd->engine_id, cmd->engine_id_len, cmd->call_id, err,
                        err == FERRY_EOVERLOADED ? "broker function table is full"
                                                 : "broker out of memory");
        return;
    }
    place_call(b, call, it, 0);
}

/* ---- workers ---- */

static void on_ready(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    const void *rid = ferry_frame_data(f, 0);
    size_t rid_len = ferry_frame_size(f, 0);
    char id[64];
    id_text(rid, rid_len, id, sizeof id);
    if (revoked(b, f, BROKER_ROLE_WORKER))
        return;
    broker_worker *w = broker_dispatch_worker(&b->dispatch, rid, rid_len);
    if (w && worker_impostor(b, f, w, "ready"))
        return;
    Ferry__Ready *ready = (*envp)->ready;
    if (ready && ready->n_functions > (size_t)b->cfg.ready_functions_max) {
        drop(b, BROKER_DROP_INVALID, "what=ready worker=%s reason=\"%zu functions, more than "
             "--ready-functions-max %ld\"", id, ready->n_functions, b->cfg.ready_functions_max);
        return;
    }
    for (size_t i = 0; ready && i < ready->n_functions; i++) {
        const char *name = ready->functions[i] ? ready->functions[i]->name : NULL;
        if (name && *name && !ferry_wire_function_name_ok(name, strlen(name))) {
            drop(b, BROKER_DROP_INVALID, "what=ready worker=%s reason=\"function name not 1 "
                 "to %d bytes of UTF-8\"", id, FERRY_FUNCTION_NAME_MAX);
            return;
        }
    }
    if (ready && ready->credit > (uint32_t)b->cfg.credit_max)
        ready->credit = (uint32_t)b->cfg.credit_max; /* --credit-max */
    ferry_err err = broker_dispatch_ready(&b->dispatch, rid, rid_len, (*envp)->ready,
                                          b->loop.now_ms, &w);
    if (err == FERRY_EPROTO) {
        drop(b, BROKER_DROP_INVALID, "what=ready worker=%s reason=\"function without a name\"",
             id);
        return;
    }
    if (err == FERRY_EOVERLOADED) {
        drop(b, BROKER_DROP_INVALID, "what=ready worker=%s reason=\"worker or function table "
             "full\"", id);
        return;
    }
    if (err) {
        ferry_error("worker_ready_failed", "worker=%s error=%s", id, ferry_err_code(err));
        return;
    }
    snprintf(w->key, sizeof w->key, "%s", sender_key(b, f));
    w->batches = ready && ready->batches;
    ferry_info("worker_ready", "worker=%s functions=%zu credit=%u in_flight=%u", id,
               w->nmembers, w->credit, w->in_flight);
    drain_worker(b, w);
}

/* A Reply, routed on what ferry_wire_peek_call read: its frame goes on unchanged. */
static void on_reply(broker *b, ferry_frames *f, const ferry_wire_call *r, broker_item *it)
{
    const void *rid = ferry_frame_data(f, 0);
    size_t rid_len = ferry_frame_size(f, 0);
    char id[64], eid[64];
    if (r->engine_id_len == 0 || r->engine_id_len > FERRY_ROUTING_ID_MAX) {
        drop(b, BROKER_DROP_INVALID, "what=reply worker=%s reason=\"engine_id missing\"",
             id_text(rid, rid_len, id, sizeof id));
        return;
    }
    if (b->curve.on && !(it->f == NULL && b->checked.seq == b->seq && b->checked.worker)) {
        broker_worker *by_rid = broker_dispatch_worker(&b->dispatch, rid, rid_len);
        if (by_rid && worker_impostor(b, f, by_rid, "reply"))
            return;
        /* The next items of this Batch come from the same connection and key. */
        b->checked.seq = b->seq;
        b->checked.worker = 1;
    }
    broker_worker *w;
    broker_call *call = broker_dispatch_match_reply(&b->dispatch, rid, rid_len, r->engine_id,
                                                    r->engine_id_len, r->call_id, &w);
    if (w)
        w->last_seen_ms = b->loop.now_ms;
    if (!call) {
        drop(b, BROKER_DROP_UNKNOWN, "what=reply worker=%s engine=%s call_id=%llu%s",
             id_text(rid, rid_len, id, sizeof id),
             id_text(r->engine_id, r->engine_id_len, eid, sizeof eid),
             (unsigned long long)r->call_id, w ? "" : " reason=\"unregistered worker\"");
        if (w) {
            broker_dispatch_stray_reply(&b->dispatch, w);
            drain_worker(b, w);
        }
        return;
    }
    broker_dispatch_complete(&b->dispatch, call, r->has_error);
    broker_metrics_call_replied(&b->metrics, call, it->data, it->len, r->has_error);
    /* The engine id lives in the frame being sent: use the call's copy after. */
    size_t eid_len;
    const uint8_t *eid_bytes = broker_call_engine(call, &eid_len);
    ferry_err err = FERRY_OK;
    uint8_t *at = batch_room(b, 0, eid_bytes, eid_len, it->len);
    if (at) {
        memcpy(at, it->data, it->len); /* counted completed when it goes (flush_outs) */
    } else {
        zmq_msg_t *m = item_msg(it);
        err = m ? ferry_wire_forward(b->engines, eid_bytes, eid_len, m) : FERRY_ENOMEM;
        if (err == FERRY_OK) {
            item_moved(it);
            b->completed++;
        }
    }
    if (err != FERRY_OK) {
        drop(b, BROKER_DROP_UNDELIVERABLE, "what=reply engine=%s call_id=%llu error=%s",
             id_text(eid_bytes, eid_len, eid, sizeof eid), (unsigned long long)r->call_id,
             ferry_err_code(err));
        engine_unreachable(b, eid_bytes, eid_len, err);
    }
    broker_dispatch_call_free(&b->dispatch, call);
    /* w goes when it was leaving and this was its last call; else it may
     * take a queued call (there are none, mostly: no call made then). */
    if (w->leaving)
        broker_dispatch_reap(&b->dispatch, w);
    else if (b->dispatch.queued > 0)
        drain_worker(b, w);
}

static void on_worker_heartbeat(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    (void)envp;
    broker_worker *w =
        broker_dispatch_worker(&b->dispatch, ferry_frame_data(f, 0), ferry_frame_size(f, 0));
    if (!w) {
        /* Lost here, or registered with a broker before a restart: it sends
         * Ready again once it misses our heartbeats. */
        char id[64];
        ferry_log_limited(&b->unknown_log.last_ms, &b->unknown_log.suppressed, FERRY_LOG_DEBUG,
                          "unknown_heartbeat", "socket=workers peer=%s",
                          id_text(ferry_frame_data(f, 0), ferry_frame_size(f, 0), id,
                                  sizeof id));
        return;
    }
    if (worker_impostor(b, f, w, "heartbeat"))
        return;
    w->last_seen_ms = b->loop.now_ms;
    /* A worker that talks reads its socket, so one blocked by a full pipe
     * may take calls again. */
    if (w->blocked && !w->leaving) {
        broker_dispatch_unblock(&b->dispatch, w);
        drain_worker(b, w);
    }
}

static void on_goodbye(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    (void)envp;
    const void *rid = ferry_frame_data(f, 0);
    size_t rid_len = ferry_frame_size(f, 0);
    char id[64];
    id_text(rid, rid_len, id, sizeof id);
    broker_worker *w = broker_dispatch_worker(&b->dispatch, rid, rid_len);
    if (!w) { /* gone already, or from before a broker restart: nothing to stop */
        ferry_debug("worker_goodbye", "worker=%s registered=false", id);
        return;
    }
    if (worker_impostor(b, f, w, "goodbye"))
        return;
    ferry_info("worker_goodbye", "worker=%s in_flight=%u", id, w->in_flight);
    w->last_seen_ms = b->loop.now_ms;
    broker_dispatch_leave(&b->dispatch, w, b->loop.now_ms);
}

/* ---- scripts ---- */

static void send_goodbye(broker *b, void *socket, const void *rid, size_t rid_len);

/*
 * Re-encodes the script's Submit with its script_id and the time it has
 * left, and sends it to e. 1 when it went; 0 when e cannot take it, after
 * taking e out of the rotation: an unreachable engine is lost (its scripts
 * are answered `engine_lost` and e is freed), a full one is blocked until it
 * answers.
 */
static int send_script(broker *b, broker_script *script, broker_engine *e)
{
    Ferry__Submit *sub = script->submit->submit;
    int64_t left = script->deadline_ms - b->loop.now_ms;
    sub->script_id = script->script_id;
    sub->timeout_ms = left < 1 ? 1 : (uint32_t)left;
    ferry_err err = ferry_wire_send(b->engines, e->rid, e->rid_len, script->submit);
    if (err == FERRY_OK) {
        e->last_sent_ms = b->loop.now_ms;
        broker_scripts_started(&b->scripts, script, e);
        broker_metrics_script_started(&b->metrics, script);
        return 1;
    }
    char id[64];
    id_text(e->rid, e->rid_len, id, sizeof id);
    if (err == FERRY_EUNREACHABLE) {
        lose_engine(b, e, "unreachable");
    } else {
        ferry_log_limited(&b->io_log.last_ms, &b->io_log.suppressed, FERRY_LOG_WARN,
                          "engine_blocked", "engine=%s error=%s", id, ferry_err_code(err));
        broker_scripts_block(&b->scripts, e);
    }
    return 0;
}

/* e is gone: the clients of its running scripts get `engine_lost`; e is freed. */
static void lose_engine(broker *b, broker_engine *e, const char *why)
{
    purge_outs(b, 0, e->rid, e->rid_len);
    char id[64];
    id_text(e->rid, e->rid_len, id, sizeof id);
    ferry_warn("engine_lost", "engine=%s reason=%s running=%u silent_ms=%lld", id, why,
               e->running, (long long)(ferry_now_ms() - e->last_seen_ms));
    broker_scripts_engine_lost(&b->scripts, e);
}

static void place_script(broker *b, broker_script *script, int front)
{
    broker_engine *e;
    while ((e = broker_scripts_pick(&b->scripts)))
        if (send_script(b, script, e))
            return;
    ferry_err err = broker_scripts_enqueue(&b->scripts, script, front);
    if (err == FERRY_OK)
        return;
    char msg[128];
    if (err == FERRY_EOVERLOADED)
        snprintf(msg, sizeof msg,
                 "broker script queue is full (%zu scripts, %zu of %zu bytes waiting)",
                 b->scripts.queued, b->budget.used, b->budget.max);
    else
        snprintf(msg, sizeof msg, "broker out of memory queueing the script");
    answer_script(b, script, err, msg);
    broker_scripts_free(&b->scripts, script);
}

/* Hands queued scripts to engines while one has a free slot. */
static void drain_scripts(broker *b)
{
    while (b->scripts.queue && b->scripts.ring)
        place_script(b, broker_scripts_pop(&b->scripts), 1);
}

static void on_script_expired(broker_script *script, ferry_err reason, void *arg)
{
    broker *b = arg;
    char msg[128];
    if (reason == FERRY_ENO_ENGINE)
        snprintf(msg, sizeof msg, "no engine registered within %u ms", script->timeout_ms);
    else if (reason == FERRY_EENGINE_LOST)
        snprintf(msg, sizeof msg, "the engine running the script was lost");
    else
        snprintf(msg, sizeof msg, "script did not finish within %u ms", script->timeout_ms);
    answer_script(b, script, reason, msg);
}

static void on_hello(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    const void *rid = ferry_frame_data(f, 0);
    size_t rid_len = ferry_frame_size(f, 0);
    const Ferry__Hello *h = (*envp)->hello;
    char id[64];
    id_text(rid, rid_len, id, sizeof id);
    if (!h) {
        drop(b, BROKER_DROP_INVALID, "what=hello engine=%s", id);
        return;
    }
    if (revoked(b, f, BROKER_ROLE_ENGINE))
        return;
    broker_engine *e = broker_scripts_engine(&b->scripts, rid, rid_len);
    if (e && engine_impostor(b, f, e, "hello"))
        return;
    uint32_t slots = h->slots > (uint32_t)b->cfg.slots_max ? (uint32_t)b->cfg.slots_max : h->slots;
    ferry_err err = broker_scripts_hello(&b->scripts, rid, rid_len, slots, h->running,
                                         b->loop.now_ms, &e);
    if (err == FERRY_EOVERLOADED) {
        drop(b, BROKER_DROP_INVALID, "what=hello engine=%s reason=\"engine table full\"", id);
        return;
    }
    if (err) {
        ferry_error("engine_hello_failed", "engine=%s error=%s", id, ferry_err_code(err));
        return;
    }
    snprintf(e->key, sizeof e->key, "%s", sender_key(b, f));
    e->batches = h->batches;
    ferry_info("engine_ready", "engine=%s slots=%u running=%u", id, slots, h->running);
    if (b->draining) /* leaving: it sends its next calls to another broker */
        send_goodbye(b, b->engines, rid, rid_len);
    drain_scripts(b);
}

/* An engine draining on SIGTERM: it gets no new scripts; those it runs finish. */
static void on_engine_goodbye(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    (void)envp;
    broker_engine *e =
        broker_scripts_engine(&b->scripts, ferry_frame_data(f, 0), ferry_frame_size(f, 0));
    char id[64];
    id_text(ferry_frame_data(f, 0), ferry_frame_size(f, 0), id, sizeof id);
    if (!e) {
        ferry_debug("engine_goodbye", "engine=%s registered=false", id);
        return;
    }
    if (engine_impostor(b, f, e, "goodbye"))
        return;
    e->last_seen_ms = b->loop.now_ms;
    broker_scripts_leave(&b->scripts, e);
    ferry_info("engine_goodbye", "engine=%s running=%u", id, e->running);
}

static void on_engine_heartbeat(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    (void)envp;
    broker_engine *e =
        broker_scripts_engine(&b->scripts, ferry_frame_data(f, 0), ferry_frame_size(f, 0));
    if (!e) {
        /* Lost here, or registered with a broker before a restart: it says
         * Hello again once it misses our heartbeats. */
        char id[64];
        ferry_log_limited(&b->unknown_log.last_ms, &b->unknown_log.suppressed, FERRY_LOG_DEBUG,
                          "unknown_heartbeat", "socket=engines peer=%s",
                          id_text(ferry_frame_data(f, 0), ferry_frame_size(f, 0), id,
                                  sizeof id));
        return;
    }
    if (engine_impostor(b, f, e, "heartbeat"))
        return;
    e->last_seen_ms = b->loop.now_ms;
    /* A blocked engine that talks reads again. */
    if (e->blocked) {
        broker_scripts_unblock(&b->scripts, e);
        drain_scripts(b);
    }
}

static void on_result(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    const void *rid = ferry_frame_data(f, 0);
    size_t rid_len = ferry_frame_size(f, 0);
    Ferry__Result *r = (*envp)->result;
    char id[64];
    if (!r) {
        drop(b, BROKER_DROP_INVALID, "what=result engine=%s", id_text(rid, rid_len, id, sizeof id));
        return;
    }
    broker_engine *e = broker_scripts_engine(&b->scripts, rid, rid_len);
    if (e && engine_impostor(b, f, e, "result"))
        return;
    if (e)
        e->last_seen_ms = b->loop.now_ms;
    broker_script *script = broker_scripts_find(&b->scripts, r->script_id);
    if (!e || !script || script->state != BROKER_SCRIPT_RUNNING || script->engine != e) {
        drop(b, BROKER_DROP_UNKNOWN, "what=result engine=%s script_id=%llu%s",
             id_text(rid, rid_len, id, sizeof id), (unsigned long long)r->script_id,
             e ? "" : " reason=\"unregistered engine\"");
        if (e) {
            broker_scripts_stray_result(&b->scripts, e);
            drain_scripts(b);
        }
        return;
    }
    broker_scripts_finish(&b->scripts, script);
    broker_metrics_script_result(&b->metrics, script, r);
    r->request_id = script->request_id;
    ferry_err err = ferry_wire_send(b->clients, script->client, script->client_len, *envp);
    if (err == FERRY_OK)
        b->scripts_completed++;
    else
        drop(b, BROKER_DROP_UNDELIVERABLE, "what=result client=%s request_id=%llu error=%s",
             id_text(script->client, script->client_len, id, sizeof id),
             (unsigned long long)script->request_id, ferry_err_code(err));
    broker_scripts_free(&b->scripts, script);
    drain_scripts(b);
}

/* ---- leaving (SIGTERM) ---- */

/* Goodbye to the peer rid on socket: "send me nothing new". */
static void send_goodbye(broker *b, void *socket, const void *rid, size_t rid_len)
{
    Ferry__Goodbye bye = FERRY__GOODBYE__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &bye;
    (void)ferry_wire_send(socket, rid, rid_len, &env); /* one that is gone needs none */
    (void)b;
}

static int has_input(void *socket)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(socket, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/* Nothing held here, and no Submit or Command waiting to be read. */
static int holds_nothing(broker *b)
{
    return b->scripts.queued + b->scripts.running + b->dispatch.queued + b->dispatch.in_flight ==
               0 &&
           !has_input(b->clients) && !has_input(b->commands);
}

/*
 * Draining, every BROKER_DRAIN_QUIET_MS: the loop stops once nothing was held
 * here at two looks in a row (a Submit sent before its client read our
 * Goodbye may still be on its way), or when what is held made no progress
 * (nothing completed) for BROKER_DRAIN_STALL_MS: calls or scripts queued for
 * a worker or an engine that is not there would only wait for drain_ms.
 */
static void on_quiet(ferry_timer *timer, void *arg)
{
    broker *b = arg;
    int64_t now = ferry_now_ms();
    uint64_t progress = b->completed + b->scripts_completed;
    if (holds_nothing(b)) {
        if (b->drain_empty) {
            ferry_info("drained", "scripts_completed=%llu completed=%llu",
                       (unsigned long long)b->scripts_completed, (unsigned long long)b->completed);
            ferry_loop_stop(&b->loop);
            return;
        }
        b->drain_empty = 1;
    } else {
        b->drain_empty = 0;
        if (progress != b->drain_progress) {
            b->drain_progress = progress;
            b->drain_progress_ms = now;
        } else if (now - b->drain_progress_ms >= BROKER_DRAIN_STALL_MS) {
            ferry_warn("drain_stalled",
                       "scripts_queued=%zu scripts_running=%zu queued=%zu in_flight=%zu",
                       b->scripts.queued, b->scripts.running, b->dispatch.queued,
                       b->dispatch.in_flight);
            ferry_loop_stop(&b->loop);
            return;
        }
    }
    if (ferry_loop_timer(&b->loop, timer, BROKER_DRAIN_QUIET_MS) != FERRY_OK)
        ferry_loop_stop(&b->loop);
}

static void on_drain_timeout(ferry_timer *timer, void *arg)
{
    (void)timer;
    broker *b = arg;
    ferry_warn("drain_timeout", "scripts_queued=%zu scripts_running=%zu queued=%zu in_flight=%zu",
               b->scripts.queued, b->scripts.running, b->dispatch.queued, b->dispatch.in_flight);
    ferry_loop_stop(&b->loop);
}

/* The first SIGTERM: Goodbye to every engine and to the clients of the
 * scripts held here; what is held finishes, then the loop stops. */
static void start_drain(broker *b)
{
    b->draining = 1;
    size_t engines = 0, clients = 0;
    for (broker_engine *e = b->scripts.engines; e; e = e->hh.next, engines++)
        send_goodbye(b, b->engines, e->rid, e->rid_len);
    for (broker_script *s = b->scripts.table; s; s = s->hh.next, clients++)
        send_goodbye(b, b->clients, s->client, s->client_len);
    ferry_info("draining", "engines=%zu clients=%zu scripts_queued=%zu scripts_running=%zu "
               "queued=%zu in_flight=%zu drain_ms=%ld",
               engines, clients, b->scripts.queued, b->scripts.running, b->dispatch.queued,
               b->dispatch.in_flight, b->cfg.drain_ms);
    b->drain_progress = b->completed + b->scripts_completed;
    b->drain_progress_ms = ferry_now_ms();
    if (b->cfg.drain_ms <= 0 ||
        ferry_loop_timer(&b->loop, &b->drain, b->cfg.drain_ms) != FERRY_OK ||
        ferry_loop_timer(&b->loop, &b->quiet, BROKER_DRAIN_QUIET_MS) != FERRY_OK)
        ferry_loop_stop(&b->loop);
}

/* ---- clients ---- */

static void on_submit(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    const void *rid = ferry_frame_data(f, 0);
    size_t rid_len = ferry_frame_size(f, 0);
    const Ferry__Submit *sub = (*envp)->submit;
    if (!sub) {
        char id[64];
        drop(b, BROKER_DROP_INVALID, "what=submit client=%s", id_text(rid, rid_len, id, sizeof id));
        return;
    }
    if (revoked(b, f, BROKER_ROLE_CLIENT)) {
        send_result_error(b, rid, rid_len, sub->request_id, 0, FERRY_EAUTH,
                          "this client's key is no longer on the broker's allow-list");
        return;
    }
    broker_script *script;
    ferry_err err = broker_scripts_new(&b->scripts, rid, rid_len, sub->request_id,
                                       sub->timeout_ms, *envp, b->loop.now_ms, &script);
    if (err) {
        send_result_error(b, rid, rid_len, sub->request_id, 0, err, "broker out of memory");
        return;
    }
    *envp = NULL; /* the script owns it now */
    broker_metrics_script_new(&b->metrics, script);
    script->bytes = ferry_frame_size(f, 1);
    /* Leaving: it was on its way, so it runs; the client sends the next elsewhere. */
    if (b->draining)
        send_goodbye(b, b->clients, rid, rid_len);
    place_script(b, script, 0);
}

static int by_name(const void *a, const void *b)
{
    const Ferry__FunctionStats *x = *(Ferry__FunctionStats *const *)a;
    const Ferry__FunctionStats *y = *(Ferry__FunctionStats *const *)b;
    return strcmp(x->name, y->name);
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_worker_id(const void *a, const void *b)
{
    const Ferry__WorkerStats *x = *(Ferry__WorkerStats *const *)a;
    const Ferry__WorkerStats *y = *(Ferry__WorkerStats *const *)b;
    size_t n = x->id.len < y->id.len ? x->id.len : y->id.len;
    int c = n ? memcmp(x->id.data, y->id.data, n) : 0;
    return c ? c : (x->id.len > y->id.len) - (x->id.len < y->id.len);
}

/* Memory behind Stats.worker_list: the messages point into d's tables and into these. */
typedef struct {
    Ferry__WorkerStats *ws;
    Ferry__WorkerStats **ptrs;
    char **names; /* every worker's function names, one run per worker */
} worker_list;

/* Fills st->worker_list (by id, each with its functions sorted); leaves it empty when
 * memory runs out. Free wl's arrays after the send. The list is cut (and
 * st->truncated set) where its encoding would pass about budget bytes. */
static void fill_worker_list(broker_dispatch *d, Ferry__Stats *st, worker_list *wl, size_t budget)
{
    size_t n = HASH_COUNT(d->workers), nnames = 0;
    for (broker_worker *w = d->workers; w; w = w->hh.next)
        nnames += w->nmembers;
    memset(wl, 0, sizeof *wl);
    if (n == 0)
        return;
    wl->ws = malloc(n * sizeof *wl->ws);
    wl->ptrs = malloc(n * sizeof *wl->ptrs);
    wl->names = malloc((nnames ? nnames : 1) * sizeof *wl->names);
    if (!wl->ws || !wl->ptrs || !wl->names)
        return;
    size_t i = 0, k = 0;
    for (broker_worker *w = d->workers; w; w = w->hh.next, i++) {
        Ferry__WorkerStats *x = &wl->ws[i];
        ferry__worker_stats__init(x);
        x->id.data = w->rid;
        x->id.len = w->rid_len;
        x->functions = &wl->names[k];
        for (size_t m = 0; m < w->nmembers; m++)
            wl->names[k++] = w->members[m].fn->name;
        x->n_functions = w->nmembers;
        qsort(x->functions, x->n_functions, sizeof *x->functions, by_string);
        x->credit = w->credit;
        x->in_flight = w->in_flight;
        x->completed = w->completed;
        x->failed = w->failed;
        x->leaving = w->leaving != 0;
        wl->ptrs[i] = x;
    }
    qsort(wl->ptrs, n, sizeof *wl->ptrs, by_worker_id);
    size_t used = 0, keep = 0;
    for (; keep < n; keep++) {
        Ferry__WorkerStats *x = wl->ptrs[keep];
        size_t cost = x->id.len + 48; /* the id and the counters, encoded */
        if (used + cost > budget)
            break;
        used += cost;
        size_t names = 0;
        while (names < x->n_functions && used + strlen(x->functions[names]) + 3 <= budget)
            used += strlen(x->functions[names++]) + 3;
        if (names < x->n_functions) {
            x->n_functions = names;
            st->truncated = 1;
        }
    }
    if (keep < n)
        st->truncated = 1;
    st->worker_list = wl->ptrs;
    st->n_worker_list = keep;
}

static void on_stats_request(broker *b, ferry_frames *f, Ferry__Envelope **envp)
{
    const void *rid = ferry_frame_data(f, 0);
    size_t rid_len = ferry_frame_size(f, 0);
    const Ferry__StatsRequest *req = (*envp)->stats_request;
    broker_dispatch *d = &b->dispatch;
    Ferry__Stats st = FERRY__STATS__INIT;
    st.request_id = req ? req->request_id : 0;
    st.engines = (uint32_t)b->scripts.nengines;
    st.workers = (uint32_t)d->nworkers;
    st.queued = d->queued;
    st.in_flight = d->in_flight;
    st.completed = b->completed;
    st.scripts_queued = b->scripts.queued;
    st.scripts_running = b->scripts.running;
    st.scripts_completed = b->scripts_completed;
    st.dropped = b->dropped;
    st.workers_lost = d->workers_lost;
    st.engines_lost = b->scripts.engines_lost;
    st.calls_retried = d->calls_retried;

    size_t n = d->nfunctions, used = 0;
    Ferry__FunctionStats *fs = n ? malloc(n * sizeof *fs) : NULL;
    Ferry__FunctionStats **ptrs = n ? malloc(n * sizeof *ptrs) : NULL;
    if (fs && ptrs) {
        size_t i = 0;
        for (broker_function *fn = d->functions; fn; fn = fn->hh.next, i++) {
            ferry__function_stats__init(&fs[i]);
            fs[i].name = fn->name;
            fs[i].workers = fn->workers;
            fs[i].queued = fn->queued;
            fs[i].in_flight = fn->in_flight;
            fs[i].completed = fn->completed;
            fs[i].failed = fn->failed;
            broker_metrics_function_stats(&b->metrics, fn, &fs[i]);
            ptrs[i] = &fs[i];
        }
        assert(i == n);
        qsort(ptrs, n, sizeof *ptrs, by_name);
        /* Half the reply's budget for functions, the rest for workers: a
         * reply stays small whatever peers registered. */
        size_t keep = 0;
        for (; keep < n; keep++) {
            size_t cost = strlen(ptrs[keep]->name) + 40;
            if (used + cost > BROKER_STATS_BYTES / 2)
                break;
            used += cost;
        }
        st.truncated = keep < n;
        st.functions = ptrs;
        st.n_functions = keep;
    } /* else out of memory: the totals still go out */
    worker_list wl;
    fill_worker_list(d, &st, &wl, BROKER_STATS_BYTES - used);
    broker_metrics_stats(b, &st);

    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_STATS;
    env.stats = &st;
    ferry_err err = ferry_wire_send(b->clients, rid, rid_len, &env);
    if (err) {
        char id[64];
        drop(b, BROKER_DROP_UNDELIVERABLE, "what=stats client=%s error=%s",
             id_text(rid, rid_len, id, sizeof id), ferry_err_code(err));
    }
    free(fs);
    free(ptrs);
    free(wl.ws);
    free(wl.ptrs);
    free(wl.names);
}

/* ---- receiving ---- */

#define BODY_SLOTS (FERRY__ENVELOPE__BODY_GOODBYE + 1)

/* A Command or a Reply, handled on what ferry_wire_peek_call read, undecoded. */
typedef void (*call_fn)(broker *b, ferry_frames *f, const ferry_wire_call *c, broker_item *it);

typedef struct {
    const char *name; /* for log lines */
    int frames;       /* 1 on the PULL socket, 2 (routing id + body) on ROUTERs */
    call_fn command;  /* Commands and Replies (the traffic) are routed undecoded */
    call_fn reply;
    int batches;                 /* takes a Batch of the above (protocol.md, Batches) */
    msg_fn handlers[BODY_SLOTS]; /* the other bodies, decoded */
} socket_kind;

static const socket_kind commands_kind = {
    .name = "commands",
    .frames = 1,
    .command = on_command,
    .batches = 1,
};

static const socket_kind workers_kind = {
    .name = "workers",
    .frames = 2,
    .handlers =
        {
            [FERRY__ENVELOPE__BODY_READY] = on_ready,
            [FERRY__ENVELOPE__BODY_HEARTBEAT] = on_worker_heartbeat,
            [FERRY__ENVELOPE__BODY_GOODBYE] = on_goodbye,
        },
    .reply = on_reply,
    .batches = 1,
};

static const socket_kind engines_kind = {
    .name = "engines",
    .frames = 2,
    .handlers =
        {
            [FERRY__ENVELOPE__BODY_HELLO] = on_hello,
            [FERRY__ENVELOPE__BODY_HEARTBEAT] = on_engine_heartbeat,
            [FERRY__ENVELOPE__BODY_RESULT] = on_result,
            [FERRY__ENVELOPE__BODY_GOODBYE] = on_engine_goodbye,
        },
};

static const socket_kind clients_kind = {
    .name = "clients",
    .frames = 2,
    .handlers =
        {
            [FERRY__ENVELOPE__BODY_SUBMIT] = on_submit,
            [FERRY__ENVELOPE__BODY_STATS_REQUEST] = on_stats_request,
        },
};

static const char *peer_text(ferry_frames *f, const socket_kind *k, char *buf, size_t buflen)
{
    if (k->frames < 2 || f->count < 2)
        return "-";
    return id_text(ferry_frame_data(f, 0), ferry_frame_size(f, 0), buf, buflen);
}

static void check_stall(broker *b);

/*
 * A Batch: each item is routed as a message of its own would be, with the
 * same checks (a bad item is dropped and counted, the others go on). Only
 * Commands (commands socket) and Replies (workers socket) may be items; a
 * body whose items do not frame is dropped whole.
 */
static void on_batch(broker *b, ferry_frames *f, const socket_kind *k, const ferry_wire_call *c)
{
    char peer[64];
    size_t n;
    if (ferry_batch_check(c->batch, c->batch_len, &n) != FERRY_OK) {
        drop(b, BROKER_DROP_DECODE, "socket=%s peer=%s what=batch bytes=%zu error=bad_message",
             k->name, peer_text(f, k, peer, sizeof peer), c->batch_len);
        return;
    }
    const uint8_t *p = c->batch, *end = p + c->batch_len, *data;
    size_t len;
    while (ferry_batch_next(&p, end, &data, &len) == 1) {
        ferry_wire_call ic;
        ferry_err err = ferry_wire_peek_call(data, len, &ic);
        call_fn fast = ic.body == FERRY__ENVELOPE__BODY_COMMAND ? k->command
                       : ic.body == FERRY__ENVELOPE__BODY_REPLY ? k->reply
                                                                : NULL;
        if (err) {
            drop(b, BROKER_DROP_DECODE, "socket=%s peer=%s what=batch_item bytes=%zu error=%s",
                 k->name, peer_text(f, k, peer, sizeof peer), len, ferry_err_code(err));
        } else if (!fast) {
            drop(b, BROKER_DROP_UNEXPECTED, "socket=%s peer=%s what=batch_item body=%d", k->name,
                 peer_text(f, k, peer, sizeof peer), (int)ic.body);
        } else {
            broker_item it = {.data = data, .len = len};
            fast(b, f, &ic, &it);
            item_done(&it);
        }
    }
}

/* What a failed send of a worker's batch of Commands leaves: an unreachable
 * worker is lost (its calls re-sent or answered as for any lost worker); one
 * whose queue is full is blocked and each call of the batch still in flight
 * there answered `overloaded`, as a single Command's failed send would have
 * left it to another worker or the queue. */
static void out_failed_worker(broker *b, const uint8_t *rid, size_t rid_len, ferry_batch *batch,
                              ferry_err err)
{
    broker_worker *w = broker_dispatch_worker(&b->dispatch, rid, rid_len);
    if (!w)
        return; /* lost meanwhile: its calls went with it */
    if (err == FERRY_EUNREACHABLE) {
        lose_worker(b, w, "unreachable");
        return;
    }
    char id[64];
    ferry_log_limited(&b->io_log.last_ms, &b->io_log.suppressed, FERRY_LOG_WARN,
                      "worker_blocked", "worker=%s error=%s calls=%zu",
                      id_text(rid, rid_len, id, sizeof id), ferry_err_code(err), batch->count);
    broker_dispatch_block(&b->dispatch, w);
    const uint8_t *p = batch->body, *end = p + batch->len, *data;
    size_t len;
    while (ferry_batch_next(&p, end, &data, &len) == 1) {
        ferry_wire_call c;
        broker_worker *at;
        if (ferry_wire_peek_call(data, len, &c) != FERRY_OK)
            continue;
        broker_call *call = broker_dispatch_match_reply(&b->dispatch, rid, rid_len, c.engine_id,
                                                        c.engine_id_len, c.call_id, &at);
        if (!call)
            continue;
        broker_dispatch_complete(&b->dispatch, call, 1);
        answer_call(b, call, FERRY_EOVERLOADED, "the worker's queue is full");
        broker_dispatch_call_free(&b->dispatch, call);
    }
    if (w->leaving)
        broker_dispatch_reap(&b->dispatch, w);
}

/* Sends the batches gathered during a drain, in the order they were begun.
 * A failure may place calls again: those go alone (gathering is over). */
static void flush_outs(broker *b)
{
    b->gathering = 0;
    for (size_t i = 0; i < b->nouts; i++) {
        broker_out *o = &b->outs[i];
        uint8_t rid[FERRY_ROUTING_ID_MAX];
        size_t rid_len = o->rid_len;
        if (rid_len == 0)
            continue; /* purged: its peer was lost */
        memcpy(rid, o->rid, rid_len);
        o->rid_len = 0;
        ferry_batch *batch = &o->batch;
        void *socket = o->worker ? b->workers : b->engines;
        ferry_err err = ferry_batch_send(batch, socket, rid, rid_len);
        if (err == FERRY_OK) {
            if (!o->worker)
                b->completed += batch->count;
        } else if (o->worker) {
            out_failed_worker(b, rid, rid_len, batch, err);
        } else {
            char eid[64];
            id_text(rid, rid_len, eid, sizeof eid);
            for (size_t n = 0; n < batch->count; n++)
                drop(b, BROKER_DROP_UNDELIVERABLE, "what=reply engine=%s replies=%zu error=%s",
                     eid, batch->count, ferry_err_code(err));
            engine_unreachable(b, rid, rid_len, err);
        }
        ferry_batch_clear(&b->outs[i].batch);
    }
    b->nouts = 0;
}

/* Receives up to BROKER_BATCH messages from socket and hands each valid one
 * to its handler; then sends what the handlers gathered in batches. */
static void drain_socket(broker *b, void *socket, const socket_kind *k)
{
    check_stall(b);
    b->gathering = 1;
    for (int i = 0; i < BROKER_BATCH; i++) {
        ferry_frames f;
        ferry_err err = ferry_frames_recv(socket, &f);
        if (err == FERRY_ETIMEOUT)
            break;
        if (err) {
            ferry_log_limited(&b->io_log.last_ms, &b->io_log.suppressed, FERRY_LOG_ERROR,
                              "recv_failed", "socket=%s error=\"%s\"", k->name,
                              zmq_strerror(zmq_errno()));
            break;
        }
        char peer[64];
        if (f.truncated || f.count != k->frames) {
            drop(b, BROKER_DROP_FRAMES, "socket=%s peer=%s frames=%d%s", k->name,
                 peer_text(&f, k, peer, sizeof peer), f.count, f.truncated ? "+" : "");
            ferry_frames_close(&f);
            continue;
        }
        /* Checked as a full decode would, but only Commands and Replies are
         * routed on what the check read: the rest is decoded. */
        int body = k->frames - 1;
        const void *data = ferry_frame_data(&f, body);
        size_t len = ferry_frame_size(&f, body);
        ferry_wire_call c;
        Ferry__Envelope *env = NULL;
        err = ferry_wire_peek_call(data, len, &c);
        call_fn fast = c.body == FERRY__ENVELOPE__BODY_COMMAND ? k->command
                       : c.body == FERRY__ENVELOPE__BODY_REPLY ? k->reply
                                                               : NULL;
        int batch = c.body == FERRY__ENVELOPE__BODY_BATCH && k->batches;
        if (err == FERRY_OK && !fast && !batch && (unsigned)c.body < BODY_SLOTS &&
            k->handlers[c.body])
            err = ferry_envelope_decode(data, len, &env);
        if (err) {
            drop(b, BROKER_DROP_DECODE, "socket=%s peer=%s bytes=%zu error=%s", k->name,
                 peer_text(&f, k, peer, sizeof peer), len, ferry_err_code(err));
        } else if (fast) {
            broker_item it = {.data = data, .len = len, .f = &f, .index = body};
            fast(b, &f, &c, &it);
        } else if (batch) {
            b->seq++; /* a new message: nothing of it checked yet */
            b->checked.worker = b->checked.engine = 0;
            on_batch(b, &f, k, &c);
        } else if (!env) {
            drop(b, BROKER_DROP_UNEXPECTED, "socket=%s peer=%s body=%d", k->name,
                 peer_text(&f, k, peer, sizeof peer), (int)c.body);
        } else {
            k->handlers[env->body_case](b, &f, &env);
        }
        if (env) /* Commands and Replies, the traffic, have none */
            ferry_envelope_free(env);
        ferry_frames_close(&f);
    }
    flush_outs(b);
}

static void on_commands_ready(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    broker *b = arg;
    drain_socket(b, b->commands, &commands_kind);
}

static void on_workers_ready(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    broker *b = arg;
    drain_socket(b, b->workers, &workers_kind);
}

static void on_engines_ready(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    broker *b = arg;
    drain_socket(b, b->engines, &engines_kind);
}

static void on_clients_ready(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    broker *b = arg;
    drain_socket(b, b->clients, &clients_kind);
}

/* ---- liveness ---- */

static ferry_err send_heartbeat(void *socket, const void *rid, size_t rid_len)
{
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    return ferry_wire_send(socket, rid, rid_len, &env);
}

/*
 * Heartbeats to the peers that were sent nothing for an interval (to all of
 * them with probe set), and the end of those silent past liveness intervals
 * or found unreachable. Losing a worker re-places its calls, which may find
 * another worker unreachable and free it too: the walk over workers starts
 * again after each loss (peers already seen to were stamped, so they are
 * passed).
 */
static void sweep(broker *b, int probe)
{
    int64_t now = ferry_now_ms();
    int64_t interval = b->cfg.heartbeat_ms > 0 ? b->cfg.heartbeat_ms : 1000;
    int64_t silence = b->cfg.heartbeat_ms > 0 ? interval * b->cfg.liveness : INT64_MAX;
    int64_t quiet = probe ? 0 : interval; /* heartbeat whoever was sent nothing this long */
    int again = 1;
    while (again) {
        again = 0;
        for (broker_worker *w = b->dispatch.workers; w; w = w->hh.next) {
            if (now - w->last_seen_ms > silence) {
                lose_worker(b, w, "silent");
                again = 1;
                break;
            }
            if (now - w->last_sent_ms < quiet || (probe && w->last_sent_ms == now))
                continue;
            ferry_err err = send_heartbeat(b->workers, w->rid, w->rid_len);
            if (err == FERRY_OK) {
                w->last_sent_ms = now;
            } else if (err == FERRY_EUNREACHABLE) {
                lose_worker(b, w, "unreachable");
                again = 1;
                break;
            }
            /* else its pipe is full: it has plenty to read already. */
        }
    }
    broker_engine *e, *etmp;
    HASH_ITER(hh, b->scripts.engines, e, etmp)
    {
        /* Losing an engine answers clients only: no other engine is freed. */
        if (now - e->last_seen_ms > silence) {
            lose_engine(b, e, "silent");
            continue;
        }
        if (now - e->last_sent_ms < quiet)
            continue;
        ferry_err err = send_heartbeat(b->engines, e->rid, e->rid_len);
        if (err == FERRY_OK)
            e->last_sent_ms = now;
        else if (err == FERRY_EUNREACHABLE)
            lose_engine(b, e, "unreachable");
    }
}

/*
 * The broker itself was stopped (SIGSTOP, a paused VM, a host swapping) for
 * longer than liveness: every engine and worker has heard nothing from it
 * for that long, has given it up and comes back under a new identity, while
 * what they sent before waits in our sockets and would make the old
 * identities look alive. So the broker gives them up too, before it reads
 * any of that: a script or call handed to an old identity would go to a
 * connection that is closing. Checked before each socket is read, as the
 * sweep timer runs only after the turn's messages.
 */
static void check_stall(broker *b)
{
    if (b->cfg.heartbeat_ms <= 0)
        return;
    int64_t gap = b->loop.now_ms - b->swept_ms;
    if (gap <= b->cfg.heartbeat_ms * b->cfg.liveness)
        return;
    ferry_warn("broker_stalled", "gap_ms=%lld engines=%u workers=%u", (long long)gap,
               HASH_COUNT(b->scripts.engines), HASH_COUNT(b->dispatch.workers));
    b->swept_ms = b->loop.now_ms;
    broker_worker *w;
    while ((w = b->dispatch.workers))
        lose_worker(b, w, "broker_stalled");
    broker_engine *e, *etmp;
    HASH_ITER(hh, b->scripts.engines, e, etmp)
    lose_engine(b, e, "broker_stalled");
}

/* Twice per heartbeat interval. */
static void on_sweep(ferry_timer *timer, void *arg)
{
    broker *b = arg;
    b->loop.now_ms = ferry_now_ms();
    check_stall(b);
    b->swept_ms = b->loop.now_ms;
    sweep(b, 0);
    int64_t half = b->cfg.heartbeat_ms / 2;
    (void)ferry_loop_timer(&b->loop, timer, half > 0 ? half : 1);
}

static void on_probe(ferry_timer *timer, void *arg)
{
    (void)timer;
    sweep(arg, 1);
}

/* A connection to an engine or worker dropped. The socket drops the peer's
 * route a moment later (the pipe's termination travels between threads):
 * the probe waits BROKER_PROBE_MS for it. */
static void on_peer_monitor(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    broker *b = arg;
    uint16_t event;
    int dropped = 0;
    while (ferry_monitor_recv(b->workers_mon, &event) == FERRY_OK)
        dropped |= event == ZMQ_EVENT_DISCONNECTED;
    while (ferry_monitor_recv(b->engines_mon, &event) == FERRY_OK)
        dropped |= event == ZMQ_EVENT_DISCONNECTED;
    if (dropped && !ferry_timer_active(&b->probe))
        (void)ferry_loop_timer(&b->loop, &b->probe, BROKER_PROBE_MS);
}

/* ---- trust ---- */

static int impostor(broker *b, ferry_frames *f, const char *record_key, const char *what);

/* impostor() for a registered worker: w is lost (and freed) when it is one. */
static int worker_impostor(broker *b, ferry_frames *f, broker_worker *w, const char *what)
{
    if (!impostor(b, f, w->key, what))
        return 0;
    lose_worker(b, w, "identity_taken");
    return 1;
}

/* impostor() for a registered engine: e is lost (and freed) when it is one. */
static int engine_impostor(broker *b, ferry_frames *f, broker_engine *e, const char *what)
{
    if (!impostor(b, f, e->key, what))
        return 0;
    lose_engine(b, e, "identity_taken");
    return 1;
}

/* The CURVE key of the peer that sent f ("" without keys). */
static const char *sender_key(broker *b, ferry_frames *f)
{
    const char *key = b->curve.on ? broker_trust_key(&f->frames[f->count - 1]) : NULL;
    return key ? key : "";
}

/* Whether f comes from another key than the one that registered record_key's
 * peer: a second connection under its routing id. Such a message is dropped
 * and counted. A ROUTER gives a second connection a live peer's id only
 * once the first one's connection is gone, so the peer it names is
 * unreachable: the caller loses it (worker_impostor, engine_impostor). */
static int impostor(broker *b, ferry_frames *f, const char *record_key, const char *what)
{
    const char *key = sender_key(b, f);
    if (strcmp(key, record_key) == 0)
        return 0;
    char id[64];
    drop(b, BROKER_DROP_IMPOSTOR, "what=%s peer=%s key=%s registered_key=%s", what,
         id_text(ferry_frame_data(f, 0), ferry_frame_size(f, 0), id, sizeof id),
         key[0] ? key : "-", record_key[0] ? record_key : "-");
    return 1;
}

static void on_zap_ready(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    broker *b = arg;
    broker_trust_serve(&b->trust);
}

/* SIGHUP re-reads the allow-lists; SIGINT and SIGTERM stop the broker. */
static void on_signal(ferry_loop *loop, int signo, void *arg)
{
    broker *b = arg;
    if (signo != SIGHUP) {
        if (b->draining)
            ferry_loop_stop(loop);
        else
            start_drain(b);
        return;
    }
    if (!b->curve.on) {
        ferry_info("reload_ignored", "reason=\"no --curve-key: nothing to reload\"");
        return;
    }
    broker_trust_reload(&b->trust);
    /* Registered peers whose key is off the list now are lost at once. Losing
     * a worker re-places its calls, which may free other workers: the walk
     * starts again after each loss. */
    for (int again = 1; again;) {
        again = 0;
        for (broker_worker *w = b->dispatch.workers; w; w = w->hh.next) {
            if (!broker_trust_allows(&b->trust, BROKER_ROLE_WORKER, w->key)) {
                lose_worker(b, w, "revoked");
                again = 1;
                break;
            }
        }
    }
    broker_engine *e, *etmp;
    HASH_ITER(hh, b->scripts.engines, e, etmp)
    {
        if (!broker_trust_allows(&b->trust, BROKER_ROLE_ENGINE, e->key))
            lose_engine(b, e, "revoked");
    }
}

/* A message from a role's socket whose key left the role's allow-list since
 * its connection was admitted (a reload): refused, dropped and counted. */
static int revoked(broker *b, ferry_frames *f, broker_role role)
{
    if (!b->curve.on)
        return 0;
    const char *key = broker_trust_key(&f->frames[f->count - 1]);
    if (broker_trust_allows(&b->trust, role, key))
        return 0;
    drop(b, BROKER_DROP_REVOKED, "socket=%s key=%s", broker_role_domain[role], key ? key : "-");
    return 1;
}

/* ---- lifecycle ---- */

/* Whether binding endpoint lets in only this machine: ipc://, inproc://, or
 * tcp:// on a loopback address. */
static int endpoint_is_local(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0)
        return 1;
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return 0;
    const char *host = endpoint + 6;
    const char *colon = strrchr(host, ':');
    if (!colon)
        return 0;
    char h[64];
    size_t n = (size_t)(colon - host);
    if (n >= sizeof h)
        return 0;
    memcpy(h, host, n);
    h[n] = '\0';
    if (strcmp(h, "localhost") == 0 || strcmp(h, "[::1]") == 0 || strcmp(h, "::1") == 0)
        return 1;
    struct in_addr a;
    return inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Protected mode (broker.h): the first endpoint that would be open to other hosts. */
static const char *exposed_endpoint(const broker_config *cfg)
{
    const char *eps[] = {cfg->clients, cfg->commands, cfg->engines, cfg->workers};
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++)
        if (eps[i] && !endpoint_is_local(eps[i]))
            return eps[i];
    return NULL;
}

void broker_config_defaults(broker_config *cfg)
{
    *cfg = (broker_config){
        .clients = BROKER_LOCAL_CLIENTS,
        .commands = BROKER_LOCAL_COMMANDS,
        .engines = BROKER_LOCAL_ENGINES,
        .workers = BROKER_LOCAL_WORKERS,
        .queue_max = 10000,
        .scripts_max = 10000,
        .call_timeout_ms = 30000,
        .script_timeout_ms = 30000,
        .unserved_wait_ms = 1000,
        .max_msg = FERRY_DEFAULT_MAX_MSG,
        .hwm = 100000,
        .heartbeat_ms = 1000,
        .liveness = 3,
        .workers_max = 10000,
        .engines_max = 10000,
        .functions_max = 10000,
        .queue_bytes = 128L * 1024 * 1024,
        .slots_max = 100000,
        .credit_max = 100000,
        .ready_functions_max = 1000,
        .drain_ms = 10000,
    };
}

ferry_err broker_open(broker *b, const broker_config *cfg, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    b->cfg = *cfg;
    b->budget.max = (size_t)cfg->queue_bytes;
    ferry_loop_init(&b->loop);
    ferry_timer_init(&b->sweep, on_sweep, b);
    ferry_timer_init(&b->probe, on_probe, b);
    for (size_t i = 0; i < BROKER_OUTS; i++)
        ferry_batch_init(&b->outs[i].batch, cfg->max_msg);
    ferry_timer_init(&b->drain, on_drain_timeout, b);
    ferry_timer_init(&b->quiet, on_quiet, b);
    broker_dispatch_limits dl = {
        .queue_max = (size_t)cfg->queue_max,
        .call_timeout_ms = (uint32_t)cfg->call_timeout_ms,
        .unserved_wait_ms = (uint32_t)cfg->unserved_wait_ms,
        .grace_ms = BROKER_GRACE_MS,
        .workers_max = (size_t)cfg->workers_max,
        .functions_max = (size_t)cfg->functions_max,
        .bytes = &b->budget,
    };
    broker_dispatch_init(&b->dispatch, &b->loop.timers, &dl, on_call_expired, b);
    broker_scripts_limits sl = {
        .queue_max = (size_t)cfg->scripts_max,
        .timeout_ms = (uint32_t)cfg->script_timeout_ms,
        .grace_ms = BROKER_GRACE_MS,
        .engines_max = (size_t)cfg->engines_max,
        .bytes = &b->budget,
    };
    broker_scripts_init(&b->scripts, &b->loop.timers, &sl, on_script_expired, b);
    broker_metrics_init(&b->metrics, (size_t)cfg->functions_max, &b->loop);

    ferry_err e;
    b->loop.on_signal = on_signal;
    b->loop.signal_arg = b;
    b->loop.catch_hup = 1;
    b->zctx = zmq_ctx_new();
    if (!b->zctx) {
        snprintf(err, errlen, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        broker_close(b);
        return FERRY_EIO;
    }
    e = ferry_curve_server(&b->curve, cfg->curve_key, err, errlen);
    if (e) {
        broker_close(b);
        return e;
    }
    const char *exposed = b->curve.on || cfg->insecure ? NULL : exposed_endpoint(cfg);
    if (exposed) {
        snprintf(err, errlen,
                 "refusing to bind %s without keys: anyone who reaches it could run scripts "
                 "and answer calls. Make keys (ferry keygen keys/broker; ferry keygen "
                 "allow-clients/me; ...) and pass --curve-key keys/broker_secret with "
                 "--allow-clients, --allow-engines and --allow-workers folders of public "
                 "certificates (docs/protocol.md#security), or bind loopback "
                 "(tcp://127.0.0.1:PORT) or ipc://, or pass --insecure",
                 exposed);
        broker_close(b);
        return FERRY_EUSAGE;
    }
    if (!b->curve.on && (cfg->allow[0] || cfg->allow[1] || cfg->allow[2])) {
        snprintf(err, errlen, "--allow-clients, --allow-engines and --allow-workers need "
                 "--curve-key (the broker's secret certificate)");
        broker_close(b);
        return FERRY_EUSAGE;
    }
    if (b->curve.on) {
        /* Before any CURVE socket binds: libzmq asks it about every peer. */
        e = broker_trust_open(&b->trust, b->zctx, cfg->allow, err, errlen);
        if (e == FERRY_OK)
            e = ferry_loop_add_socket(&b->loop, b->trust.zap, ZMQ_POLLIN, on_zap_ready, b);
        if (e) {
            broker_close(b);
            return e;
        }
    }
    struct {
        const char *name;
        int type;
        const char *endpoint;
        void **socket;
        ferry_loop_fn fn;
    } socks[] = {
        {"clients", ZMQ_ROUTER, cfg->clients, &b->clients, on_clients_ready},
        {"commands", ZMQ_PULL, cfg->commands, &b->commands, on_commands_ready},
        {"engines", ZMQ_ROUTER, cfg->engines, &b->engines, on_engines_ready},
        {"workers", ZMQ_ROUTER, cfg->workers, &b->workers, on_workers_ready},
    };
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++) {
        ferry_socket_opts o = {
            .type = socks[i].type,
            .endpoint = socks[i].endpoint,
            .bind = 1,
            .max_msg = cfg->max_msg,
            .hwm = (int)cfg->hwm,
            .linger_ms = 0,
            .curve = &b->curve,
            .zap_domain = socks[i].name,
        };
        char why[256];
        *socks[i].socket = ferry_socket_open(b->zctx, &o, why, sizeof why);
        if (!*socks[i].socket) {
            snprintf(err, errlen, "%s socket: %s", socks[i].name, why);
            broker_close(b);
            return FERRY_EIO;
        }
        e = ferry_loop_add_socket(&b->loop, *socks[i].socket, ZMQ_POLLIN, socks[i].fn, b);
        if (e) {
            snprintf(err, errlen, "%s socket: %s", socks[i].name, ferry_err_desc(e));
            broker_close(b);
            return e;
        }
    }
    char why[256];
    b->workers_mon = ferry_monitor_open(b->zctx, b->workers, ZMQ_EVENT_DISCONNECTED, why,
                                        sizeof why);
    b->engines_mon = b->workers_mon ? ferry_monitor_open(b->zctx, b->engines,
                                                         ZMQ_EVENT_DISCONNECTED, why, sizeof why)
                                    : NULL;
    if (!b->engines_mon ||
        ferry_loop_add_quiet_socket(&b->loop, b->workers_mon, on_peer_monitor, b) ||
        ferry_loop_add_quiet_socket(&b->loop, b->engines_mon, on_peer_monitor, b)) {
        snprintf(err, errlen, "monitor: %s", b->engines_mon ? "too many sockets" : why);
        broker_close(b);
        return FERRY_EIO;
    }
    if (cfg->metrics && *cfg->metrics &&
        (e = broker_metrics_open(&b->metrics, b, cfg->metrics, err, errlen)) != FERRY_OK) {
        broker_close(b);
        return e;
    }
    return FERRY_OK;
}

ferry_err broker_run(broker *b)
{
    const broker_config *c = &b->cfg;
    ferry_info("broker_started",
               "clients=%s commands=%s engines=%s workers=%s queue_max=%ld scripts_max=%ld "
               "call_timeout_ms=%ld script_timeout_ms=%ld unserved_wait_ms=%ld heartbeat_ms=%ld "
               "liveness=%ld curve=%s",
               c->clients, c->commands, c->engines, c->workers, c->queue_max, c->scripts_max,
               c->call_timeout_ms, c->script_timeout_ms, c->unserved_wait_ms, c->heartbeat_ms,
               c->liveness, b->curve.on ? b->curve.own.public_key : "off");
    b->swept_ms = ferry_now_ms();
    if (c->heartbeat_ms > 0 &&
        ferry_loop_timer(&b->loop, &b->sweep, c->heartbeat_ms / 2 > 0 ? c->heartbeat_ms / 2 : 1) !=
            FERRY_OK)
        return FERRY_ENOMEM;
    ferry_err err = ferry_loop_run(&b->loop);
    ferry_timer_stop(&b->loop.timers, &b->sweep);
    ferry_timer_stop(&b->loop.timers, &b->probe);
    ferry_timer_stop(&b->loop.timers, &b->drain);
    ferry_timer_stop(&b->loop.timers, &b->quiet);
    ferry_info("broker_stopping",
               "queued=%zu in_flight=%zu scripts_queued=%zu scripts_running=%zu completed=%llu "
               "scripts_completed=%llu dropped=%llu workers_lost=%llu engines_lost=%llu "
               "calls_retried=%llu",
               b->dispatch.queued, b->dispatch.in_flight, b->scripts.queued, b->scripts.running,
               (unsigned long long)b->completed, (unsigned long long)b->scripts_completed,
               (unsigned long long)b->dropped, (unsigned long long)b->dispatch.workers_lost,
               (unsigned long long)b->scripts.engines_lost,
               (unsigned long long)b->dispatch.calls_retried);
    return err;
}

void broker_close(broker *b)
{
    /* Records first: their timers live in the loop's heap. */
    broker_metrics_fini(&b->metrics);
    broker_dispatch_fini(&b->dispatch);
    broker_scripts_fini(&b->scripts);
    ferry_loop_fini(&b->loop);
    ferry_monitor_close(b->workers, &b->workers_mon);
    ferry_monitor_close(b->engines, &b->engines_mon);
    ferry_socket_close(&b->clients);
    ferry_socket_close(&b->commands);
    ferry_socket_close(&b->engines);
    ferry_socket_close(&b->workers);
    broker_trust_close(&b->trust);
    for (size_t i = 0; i < BROKER_OUTS; i++)
        ferry_batch_fini(&b->outs[i].batch);
    if (b->zctx) {
        zmq_ctx_term(b->zctx);
        b->zctx = NULL;
    }
}

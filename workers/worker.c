/*
 * worker: the process side of the worker library.
 *
 * One DEALER to the broker's workers socket, its routing id set before it
 * connects; a monitor on it so that every new broker session (first start,
 * broker restart, network break) gets a fresh Ready without waiting for a
 * heartbeat to notice; a heartbeat timer; the table of functions; and the
 * loop that also serves the handlers' own timers and file descriptors.
 *
 * The heartbeat timer also watches the broker: any message from it counts,
 * and after liveness periods of silence (a broker that restarted without the
 * connection dropping, or one that declared us lost and forgot us) Ready goes
 * out again. Calls in flight go on: their Replies reach whoever is there,
 * and Ready.running tells a new broker how much of our credit they hold.
 *
 * Several brokers (a comma-separated endpoint list): one DEALER, monitor,
 * Ready and liveness per broker (worker_link). A call's Reply goes back to
 * the broker it came from. The credit is split among the brokers connected
 * and announced again whenever that set changes, so that together they never
 * send more calls than the concurrency (one that does gets `overloaded`).
 *
 * SIGTERM drains: Goodbye (the broker sends no more calls), the calls in
 * flight finish for up to drain_ms, then the loop stops; heartbeats go on
 * meanwhile so the broker does not take us for lost.
 */
#include "worker_internal.h"

#include "ferry_clock.h"
#include "ferry_log.h"
#include "ferry_utf8.h"
#include "ferry_wire.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

_Static_assert(FERRY_POLLIN == ZMQ_POLLIN && FERRY_POLLOUT == ZMQ_POLLOUT &&
                   FERRY_POLLERR == ZMQ_POLLERR,
               "ferry/worker.h's readiness bits are ZeroMQ's");
_Static_assert(FERRY_WORKER_DEFAULT_MAX_MSG == FERRY_DEFAULT_MAX_MSG,
               "ferry/worker.h's default message limit is the wire's");

#define RECV_BATCH 1024       /* frames per wake-up: timers are not starved */
#define READY_RETRY_MIN_MS 5  /* first retry of a Ready refused in a session, doubling */
#define READY_FALLBACK_MS 200 /* a Ready in case the first session began before the monitor */
#define LINGER_MS 500         /* last replies get this long to leave at exit */
#define HWM_MARGIN 1024       /* Ready and heartbeats on top of one reply per credit */

static void on_heartbeat(ferry_timer *timer, void *arg);
static void on_ready_retry(ferry_timer *timer, void *arg);
static void on_drain_timeout(ferry_timer *timer, void *arg);

static ferry_worker *worker_alloc(const ferry_worker_config *cfg)
{
    ferry_worker_config none = {0};
    if (!cfg)
        cfg = &none;
    ferry_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    ferry_loop_init(&w->loop);
    w->state = WORKER_RUNNING;
    if (cfg->id) {
        snprintf(w->id, sizeof w->id, "%s", cfg->id);
        w->base_id_len = strlen(w->id);
    } else
        ferry_make_id("worker", w->id, sizeof w->id);
    w->concurrency = cfg->concurrency ? cfg->concurrency : FERRY_WORKER_DEFAULT_CONCURRENCY;
    if (w->concurrency > FERRY_WORKER_MAX_CONCURRENCY)
        w->concurrency = FERRY_WORKER_MAX_CONCURRENCY;
    w->max_msg = cfg->max_msg > 0 ? cfg->max_msg : FERRY_DEFAULT_MAX_MSG;
    w->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : FERRY_WORKER_DEFAULT_HEARTBEAT_MS;
    w->liveness = cfg->liveness > 0 ? cfg->liveness : FERRY_WORKER_DEFAULT_LIVENESS;
    w->drain_ms = cfg->drain_ms ? cfg->drain_ms : FERRY_WORKER_DEFAULT_DRAIN_MS;
    ferry_timer_init(&w->drain, on_drain_timeout, w);
    w->nlinks = 1; /* offline: one link without sockets; ferry_worker_new sets the rest */
    for (size_t i = 0; i < FERRY_BROKERS_MAX; i++) {
        worker_link *l = &w->links[i];
        l->w = w;
        l->index = (unsigned)i;
        memcpy(l->id, w->id, sizeof l->id);
        l->ready_pending = 1;
        l->ready_backoff_ms = READY_RETRY_MIN_MS;
        ferry_timer_init(&l->ready_retry, on_ready_retry, l);
    }
    w->in = w->out = &w->links[0];
    ferry_timer_init(&w->heartbeat, on_heartbeat, w);
    worker_call_lanes_init(w);
    for (int i = 0; i < FERRY_LOOP_MAX_ITEMS; i++) {
        w->watches[i].fd = -1;
        w->watches[i].worker = w;
    }
    return w;
}

ferry_worker *worker_new_offline(const ferry_worker_config *cfg, worker_send_fn send, void *arg)
{
    assert(send);
    ferry_worker *w = worker_alloc(cfg);
    if (!w)
        return NULL;
    w->send = send;
    w->send_arg = arg;
    return w;
}

/* ---- sending --------------------------------------------------------------- */

/* Sends the Replies gathered for broker l (one message); those a failed send
 * loses are counted as reply_lost, as a single Reply's would be. */
static void flush_link(ferry_worker *w, worker_link *l)
{
    if (l->batch.count == 0)
        return;
    ferry_err err = ferry_batch_send(&l->batch, l->dealer, NULL, 0);
    if (err == FERRY_OK) {
        l->last_sent_ms = w->loop.now_ms;
    } else {
        w->stats.reply_lost += l->batch.count;
        ferry_log_limited(&w->lim_lost.last_ms, &w->lim_lost.suppressed, FERRY_LOG_WARN,
                          "reply_lost", "broker=%u replies=%zu error=%s", l->index,
                          l->batch.count, ferry_err_code(err));
    }
    ferry_batch_clear(&l->batch);
}

static void flush_replies(ferry_worker *w)
{
    for (size_t i = 0; i < FERRY_BROKERS_MAX; i++)
        if (w->links[i].dealer)
            flush_link(w, &w->links[i]);
}

/* A Reply sent during a turn of on_dealer to a broker that takes batches
 * waits in its link's batch for the turn's end: 1 when it went there. */
static int batch_reply(ferry_worker *w, worker_link *l, const Ferry__Envelope *env, size_t size)
{
    if (!w->in_turn || !l->broker_batches || env->body_case != FERRY__ENVELOPE__BODY_REPLY)
        return 0;
    if (l->batch.max == 0)
        ferry_batch_init(&l->batch, w->max_msg);
    if (!ferry_batch_fits(&l->batch, size))
        return 0;
    ferry_err err;
    uint8_t *at = ferry_batch_add(&l->batch, size, &err);
    if (!at && err == FERRY_OK) { /* full: it goes now, this one starts the next */
        flush_link(w, l);
        at = ferry_batch_add(&l->batch, size, &err);
    }
    if (!at)
        return 0;
    ferry_envelope_pack_sized(env, size, at);
    return 1;
}

/* w->send of a worker with sockets: to the DEALER of w->out. */
static ferry_err send_dealer(ferry_worker *w, const Ferry__Envelope *env, size_t size, void *arg)
{
    (void)arg;
    worker_link *l = w->out;
    if (!size)
        size = ferry_envelope_packed_size(env);
    if (batch_reply(w, l, env, size))
        return FERRY_OK;
    flush_link(w, l); /* in order: what waits goes first */
    ferry_err err = ferry_wire_send_sized(l->dealer, NULL, 0, env, size);
    if (err == FERRY_OK)
        l->last_sent_ms = w->loop.now_ms;
    return err;
}

/* Sends env to broker l. */
static ferry_err send_to(ferry_worker *w, worker_link *l, const Ferry__Envelope *env)
{
    w->out = l;
    return w->send(w, env, 0, w->send_arg);
}

ferry_err worker_send_reply(ferry_worker *w, ProtobufCBinaryData engine_id, uint64_t call_id,
                            Ferry__Value **values, size_t n, const char *error_code,
                            const char *message)
{
    Ferry__Error error; /* initialised when used: most replies carry none */
    Ferry__Reply reply = FERRY__REPLY__INIT;
    /* What ferry_envelope_init does, without the call and the memset: once per reply. */
    Ferry__Envelope env = FERRY__ENVELOPE__INIT;
    env.version = FERRY_PROTOCOL_VERSION;
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    reply.engine_id = engine_id;
    reply.call_id = call_id;
    if (error_code) {
        ferry__error__init(&error);
        error.code = (char *)error_code;
        error.message = (char *)(message ? message : "");
        reply.error = &error;
    } else {
        reply.values = values;
        reply.n_values = n;
    }
    char toobig[160];
    size_t size = ferry_envelope_packed_size(&env);
    if ((int64_t)size > w->max_msg) {
        /* The broker would drop the whole connection over it: answer small. */
        snprintf(toobig, sizeof toobig, "reply of %zu bytes is over the %lld-byte limit", size,
                 (long long)w->max_msg);
        ferry__error__init(&error);
        error.code = (char *)ferry_err_code(FERRY_ECALL);
        error.message = toobig;
        reply.error = &error;
        reply.values = NULL;
        reply.n_values = 0;
        size = ferry_envelope_packed_size(&env);
    }
    if (reply.error)
        w->stats.failed++;
    else
        w->stats.completed++;
    ferry_err err = w->send(w, &env, size, w->send_arg);
    if (err != FERRY_OK) {
        w->stats.reply_lost++;
        ferry_log_limited(&w->lim_lost.last_ms, &w->lim_lost.suppressed, FERRY_LOG_WARN,
                          "reply_lost", "call_id=%llu error=%s", (unsigned long long)call_id,
                          ferry_err_code(err));
    }
    return err;
}

ferry_err worker_send_error(ferry_worker *w, ProtobufCBinaryData engine_id, uint64_t call_id,
                            const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    ferry_utf8_scrub(message, strlen(message));
    return worker_send_reply(w, engine_id, call_id, NULL, 0, code, message);
}

/* Credit for the k-th of n connected brokers: the concurrency split evenly,
 * the remainder to the first ones. */
static unsigned share_of(const ferry_worker *w, size_t k, size_t n)
{
    if (n <= 1)
        return w->concurrency;
    return (unsigned)(w->concurrency / n + (k < w->concurrency % n ? 1 : 0));
}

/* l's share of the credit among the connected brokers (offline: all of it). */
static unsigned credit_of(const ferry_worker *w, const worker_link *l)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < w->nlinks; i++) {
        if (&w->links[i] == l)
            k = n;
        n += w->links[i].connected != 0;
    }
    return share_of(w, k, n);
}

/* Sends Ready{functions, credit} to broker l. Refused inside a session (the
 * DEALER may not have attached the new connection yet), it is retried with a
 * doubling delay capped at the heartbeat period; outside one, the next
 * session sends it. */
static void send_ready(ferry_worker *w, worker_link *l)
{
    if (l->retired)
        return;
    if (w->state != WORKER_RUNNING) {
        /* Leaving: a broker that does not know us yet need not learn of us. */
        l->ready_pending = 0;
        return;
    }
    size_t n = HASH_COUNT(w->functions);
    Ferry__FunctionSpec *specs = calloc(n ? n : 1, sizeof *specs);
    Ferry__FunctionSpec **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    ferry_err err = FERRY_ENOMEM;
    unsigned credit = credit_of(w, l);
    if (specs && ptrs) {
        size_t i = 0;
        for (worker_function *f = w->functions; f; f = f->hh.next, i++) {
            ferry__function_spec__init(&specs[i]);
            specs[i].name = f->name;
            specs[i].idempotent = f->idempotent != 0;
            ptrs[i] = &specs[i];
        }
        Ferry__Ready ready = FERRY__READY__INIT;
        ready.functions = ptrs;
        ready.n_functions = n;
        ready.credit = credit;
        /* After a broker restart, the calls of the old one still hold credit here. */
        ready.running = (uint32_t)l->in_flight;
        ready.batches = 1; /* we take Commands in a Batch */
        Ferry__Envelope env;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_READY;
        env.ready = &ready;
        err = send_to(w, l, &env);
    }
    free(specs);
    free(ptrs);
    if (err == FERRY_OK) {
        l->ready_pending = 0;
        l->credit = credit;
        l->ready_backoff_ms = READY_RETRY_MIN_MS;
        /* The broker gets a whole liveness period to show it is there. */
        l->last_heard_ms = ferry_now_ms();
        ferry_timer_stop(&w->loop.timers, &l->ready_retry);
        ferry_info("ready_sent", "id=%s broker=%u functions=%zu credit=%u running=%zu", l->id,
                   l->index, n, credit, l->in_flight);
        return;
    }
    l->ready_pending = 1;
    ferry_debug("ready_deferred", "broker=%u error=%s connected=%d retry_ms=%d", l->index,
                ferry_err_code(err), l->connected, l->ready_backoff_ms);
    if (!l->connected)
        return;
    if (!ferry_timer_active(&l->ready_retry))
        ferry_loop_timer(&w->loop, &l->ready_retry, l->ready_backoff_ms);
    int cap = w->heartbeat_ms > 0 ? w->heartbeat_ms : FERRY_WORKER_DEFAULT_HEARTBEAT_MS;
    l->ready_backoff_ms = l->ready_backoff_ms * 2 > cap ? cap : l->ready_backoff_ms * 2;
}

/*
 * The set of connected brokers changed: a Ready with its new share of the
 * credit to every registered broker whose share changed, those told less
 * first (so that the brokers' sum never exceeds the concurrency), then to
 * those that still owe one.
 */
static void rebalance(ferry_worker *w)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < w->nlinks; i++) {
            worker_link *l = &w->links[i];
            if (!l->connected)
                continue;
            unsigned want = credit_of(w, l);
            int shrink = !l->ready_pending && want < l->credit;
            if (pass == 0 ? shrink : !shrink && (l->ready_pending || want != l->credit))
                send_ready(w, l);
        }
    }
}

static void on_ready_retry(ferry_timer *timer, void *arg)
{
    (void)timer;
    worker_link *l = arg;
    if (l->ready_pending)
        send_ready(l->w, l);
}

/*
 * Broker l stopped answering: its route to our routing id may be gone, or
 * held by another connection under the same id (a ROUTER without handover
 * keeps the first one). Come back on a new connection under a new id (a
 * given id gets a random suffix): to the broker, a new worker. Ready goes
 * once the monitor reports the connection. Offline (tests), Ready goes again.
 */
static void new_identity(ferry_worker *w, worker_link *l)
{
    if (!l->dealer) {
        send_ready(w, l);
        return;
    }
    char old[sizeof l->id], fresh[64];
    memcpy(old, l->id, sizeof old);
    ferry_make_id("worker", fresh, sizeof fresh);
    if (w->base_id_len) {
        size_t keep = w->base_id_len + 9 <= FERRY_ROUTING_ID_MAX ? w->base_id_len
                                                                 : FERRY_ROUTING_ID_MAX - 9;
        memcpy(l->id, w->id, keep);
        snprintf(l->id + keep, sizeof l->id - keep, "-%s", fresh + strlen(fresh) - 8);
    } else {
        snprintf(l->id, sizeof l->id, "%s", fresh);
    }
    l->connected = 0;
    l->broker_batches = 0;
    ferry_timer_stop(&w->loop.timers, &l->ready_retry);
    if (zmq_disconnect(l->dealer, l->endpoint) != 0 ||
        zmq_setsockopt(l->dealer, ZMQ_ROUTING_ID, l->id, strlen(l->id)) != 0 ||
        zmq_connect(l->dealer, l->endpoint) != 0) {
        ferry_error("new_identity_failed", "broker=%u error=\"%s\"", l->index,
                    zmq_strerror(zmq_errno()));
        return;
    }
    ferry_warn("new_identity", "broker=%u old=%s id=%s", l->index, old, l->id);
    rebalance(w);
}

static void on_heartbeat(ferry_timer *timer, void *arg)
{
    ferry_worker *w = arg;
    int64_t now = ferry_now_ms();
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    for (size_t i = 0; i < w->nlinks; i++) {
        worker_link *l = &w->links[i];
        if (l->retired)
            continue;
        if (!l->ready_pending && now - l->last_heard_ms > (int64_t)w->heartbeat_ms * w->liveness) {
            /* Registered, yet the broker says nothing: it restarted without our
             * connection noticing, or took us for lost. Say who we are again. */
            ferry_warn("broker_lost", "broker=%u silent_ms=%lld in_flight=%zu", l->index,
                       (long long)(now - l->last_heard_ms), l->in_flight);
            l->last_heard_ms = now;
            l->ready_pending = 1;
            new_identity(w, l);
        }
        /* Not before Ready, and refused while no broker is connected: nothing to tell then.
         * Checked every half period: the broker hears from us at least every 1.5. */
        if (!l->ready_pending && now - l->last_sent_ms >= w->heartbeat_ms)
            (void)send_to(w, l, &env);
    }
    ferry_debug("worker_stats",
                "in_flight=%zu queued=%zu zombies=%zu completed=%llu failed=%llu "
                "timed_out=%llu",
                w->stats.in_flight, w->stats.queued, w->stats.zombies,
                (unsigned long long)w->stats.completed, (unsigned long long)w->stats.failed,
                (unsigned long long)w->stats.timed_out);
    ferry_loop_timer(&w->loop, timer, w->heartbeat_ms / 2 > 0 ? w->heartbeat_ms / 2 : 1);
}

/* ---- receiving ------------------------------------------------------------- */

static void on_dealer(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    worker_link *l = arg;
    ferry_worker *w = l->w;
    /* Replies made during this turn go together at its end (batch_reply). */
    w->in_turn = 1;
    for (int i = 0; i < RECV_BATCH; i++) {
        ferry_frames f;
        ferry_err err = ferry_frames_recv(l->dealer, &f);
        if (err == FERRY_ETIMEOUT)
            break;
        if (err != FERRY_OK) {
            ferry_log_limited(&w->lim_frames.last_ms, &w->lim_frames.suppressed, FERRY_LOG_WARN,
                              "recv_failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        size_t size = f.count == 1 ? ferry_frame_size(&f, 0) : 0;
        if (f.count != 1 || f.truncated) {
            w->stats.dropped++;
            ferry_log_limited(&w->lim_frames.last_ms, &w->lim_frames.suppressed, FERRY_LOG_WARN,
                              "bad_frames", "frames=%d truncated=%d", f.count, f.truncated);
        } else if ((int64_t)size > w->max_msg) {
            /* ferry_socket_open sets ZMQ_MAXMSGSIZE on bound sockets only. */
            w->stats.dropped++;
            ferry_log_limited(&w->lim_frames.last_ms, &w->lim_frames.suppressed, FERRY_LOG_WARN,
                              "oversize_message", "bytes=%zu max=%lld", size,
                              (long long)w->max_msg);
        } else {
            w->in = w->out = l; /* calls come from l, and answers at once go back there */
            worker_dispatch_frame(w, ferry_frame_data(&f, 0), size);
        }
        /* Any traffic from the broker shows it is alive. */
        l->last_heard_ms = w->loop.now_ms;
        ferry_frames_close(&f);
    }
    w->in_turn = 0;
    flush_replies(w);
}

/* Connection events of broker l's DEALER: each new session needs a Ready,
 * and the others a new share of the credit. */
static void on_monitor(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    worker_link *l = arg;
    ferry_worker *w = l->w;
    uint16_t event;
    while (ferry_monitor_recv(l->monitor, &event) == FERRY_OK) {
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            l->connected = 1;
            l->broker_batches = 0; /* a new session: its broker has to show it takes them */
            l->ready_pending = 1;
            l->ready_backoff_ms = READY_RETRY_MIN_MS;
            ferry_info("broker_connected", "broker=%u draining=%d", l->index,
                       w->state == WORKER_DRAINING);
            rebalance(w);
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            l->connected = 0;
            l->ready_pending = 1;
            ferry_timer_stop(&w->loop.timers, &l->ready_retry);
            ferry_warn("broker_disconnected", "broker=%u in_flight=%zu", l->index, l->in_flight);
            rebalance(w);
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                   event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                   (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && l->curve.on)) {
            /* libzmq tries again by itself: said once in a while, not each time. */
            ferry_log_limited(&l->lim_auth.last_ms, &l->lim_auth.suppressed, FERRY_LOG_ERROR,
                              "broker_refused", "broker=%u reason=\"%s\"", l->index,
                              event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                                  ? "our key is not on the broker's allow-list"
                                  : "handshake failed: check curve_key and broker_key");
        }
    }
}

/* ---- lifecycle --------------------------------------------------------------- */

/* Opens broker l's DEALER (endpoint and curve set) and its monitor, and watches them. */
static int link_open(ferry_worker *w, worker_link *l, char *err, size_t errlen)
{
    ferry_socket_opts opts = {.type = ZMQ_DEALER,
                              .endpoint = l->endpoint,
                              .routing_id = l->id,
                              .max_msg = w->max_msg,
                              /* Unread replies are bounded by the credit (the broker
                               * returns credit as it reads them): never refuse one.
                               * libzmq tells the sender how far the reader got only
                               * every (hwm+1)/2 messages, so the sender may count up
                               * to credit + hwm/2 unread: twice the credit covers it. */
                              .hwm = 2 * (int)w->concurrency + HWM_MARGIN,
                              .linger_ms = LINGER_MS,
                              .curve = &l->curve};
    l->dealer = ferry_socket_open(w->ctx, &opts, err, errlen);
    if (!l->dealer)
        return -1;
    l->monitor = ferry_monitor_open(w->ctx, l->dealer,
                                    ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                                    err, errlen);
    if (!l->monitor)
        return -1;
    if (ferry_loop_add_socket(&w->loop, l->dealer, ZMQ_POLLIN, on_dealer, l) != FERRY_OK ||
        ferry_loop_add_quiet_socket(&w->loop, l->monitor, on_monitor, l) != FERRY_OK) {
        snprintf(err, errlen, "cannot watch the sockets");
        return -1;
    }
    return 0;
}

/* Closes what link_open opened. */
static void link_close(ferry_worker *w, worker_link *l)
{
    ferry_timer_stop(&w->loop.timers, &l->ready_retry);
    ferry_loop_remove_socket(&w->loop, l->dealer);
    ferry_loop_remove_socket(&w->loop, l->monitor);
    ferry_monitor_close(l->dealer, &l->monitor);
    ferry_socket_close(&l->dealer);
    free(l->endpoint);
    l->endpoint = NULL;
    ferry_batch_fini(&l->batch);
    l->broker_batches = 0;
}

/* --discover found a broker at addr: a link to it, in a free or reusable slot. */
static void discover_add(ferry_worker *w, const char *addr)
{
    worker_link *l = NULL;
    for (size_t i = 0; i < w->nlinks && !l; i++)
        if (w->links[i].retired && w->links[i].in_flight == 0)
            l = &w->links[i];
    if (l)
        link_close(w, l);
    else if (w->nlinks < FERRY_BROKERS_MAX)
        l = &w->links[w->nlinks++];
    else {
        ferry_warn("discover_full", "addr=%s brokers=%d", addr, FERRY_BROKERS_MAX);
        return;
    }
    ferry_curve curve = w->links[0].curve; /* every discovered broker takes the one key */
    unsigned index = (unsigned)(l - w->links);
    memset(l, 0, sizeof *l);
    l->w = w;
    l->index = index;
    l->curve = curve;
    memcpy(l->id, w->id, sizeof l->id);
    l->ready_pending = 1;
    l->ready_backoff_ms = READY_RETRY_MIN_MS;
    ferry_timer_init(&l->ready_retry, on_ready_retry, l);
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    char ep[FERRY_DISCOVER_ADDR_MAX + 32], err[256];
    snprintf(ep, sizeof ep, "tcp://%s:%s", addr, w->discover_port);
    l->endpoint = strdup(ep);
    if (!l->endpoint || link_open(w, l, err, sizeof err) != 0) {
        ferry_error("discover_failed", "addr=%s reason=\"%s\"", addr,
                    l->endpoint ? err : "out of memory");
        link_close(w, l);
        l->retired = 1;
        return;
    }
    ferry_info("broker_discovered", "broker=%u addr=%s endpoint=%s", l->index, addr, ep);
}

/* --discover: the broker at l's address is gone from the name. */
static void discover_drop(ferry_worker *w, worker_link *l)
{
    ferry_info("broker_undiscovered", "broker=%u addr=%s in_flight=%zu", l->index, l->addr,
               l->in_flight);
    l->retired = 1;
    l->connected = 0;
    l->ready_pending = 1; /* no heartbeats, no Goodbye */
    ferry_timer_stop(&w->loop.timers, &l->ready_retry);
    (void)zmq_disconnect(l->dealer, l->endpoint);
    rebalance(w);
}

static void discover_now(ferry_worker *w)
{
    ferry_addrs now;
    (void)ferry_discover_resolve(w->discover, &now);
    for (size_t i = 0; i < w->nlinks; i++) {
        worker_link *l = &w->links[i];
        if (!l->retired && !ferry_addrs_has(&now, l->addr))
            discover_drop(w, l);
    }
    for (size_t k = 0; k < now.n; k++) {
        int known = 0;
        for (size_t i = 0; i < w->nlinks && !known; i++)
            known = !w->links[i].retired && strcmp(w->links[i].addr, now.addr[k]) == 0;
        if (!known)
            discover_add(w, now.addr[k]);
    }
}

static void on_discover(ferry_timer *timer, void *arg)
{
    ferry_worker *w = arg;
    discover_now(w);
    ferry_loop_timer(&w->loop, timer, w->discover_ms);
}

ferry_worker *ferry_worker_new(const ferry_worker_config *cfg, char *err, size_t errlen)
{
    if (cfg && cfg->log_role)
        ferry_log_init(cfg->log_role);
    ferry_worker *w = worker_alloc(cfg);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const char *endpoint = cfg && cfg->endpoint ? cfg->endpoint : FERRY_WORKER_DEFAULT_ENDPOINT;
    ferry_list eps = {0};
    ferry_curve curves[FERRY_BROKERS_MAX];
    if (cfg && cfg->id && (!*cfg->id || strlen(cfg->id) > FERRY_ROUTING_ID_MAX)) {
        snprintf(err, errlen, "worker id must be 1 to %d bytes", FERRY_ROUTING_ID_MAX);
        goto fail;
    }
    if (cfg && cfg->discover && *cfg->discover) {
        const char *colon = strrchr(endpoint, ':');
        if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
            snprintf(err, errlen, "discover: the endpoint must end in a port");
            goto fail;
        }
        w->discover = strdup(cfg->discover);
        w->discover_port = strdup(colon + 1);
        w->discover_ms = cfg->discover_ms > 0 ? cfg->discover_ms : ferry_discover_interval_ms();
        ferry_timer_init(&w->discover_timer, on_discover, w);
        if (!w->discover || !w->discover_port) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (ferry_curve_client(&w->links[0].curve, cfg->curve_key, cfg->broker_key, err,
                               errlen) != FERRY_OK)
            goto fail;
    } else {
        if (ferry_list_split(endpoint, "endpoint", &eps, err, errlen) != FERRY_OK)
            goto fail;
        if (ferry_curve_clients(curves, eps.n, cfg ? cfg->curve_key : NULL,
                                cfg ? cfg->broker_key : NULL, err, errlen) != FERRY_OK)
            goto fail;
    }
    w->send = send_dealer;
    w->ctx = zmq_ctx_new();
    if (!w->ctx) {
        snprintf(err, errlen, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (w->discover) {
        w->nlinks = 0;
        discover_now(w);
        if (ferry_loop_timer(&w->loop, &w->discover_timer, w->discover_ms) != FERRY_OK) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        return w;
    }
    w->nlinks = eps.n;
    for (size_t i = 0; i < eps.n; i++) {
        worker_link *l = &w->links[i];
        l->endpoint = eps.item[i]; /* the link owns it now */
        eps.item[i] = NULL;
        l->curve = curves[i];
        if (link_open(w, l, err, errlen) != 0)
            goto fail;
    }
    eps.n = 0;
    return w;
fail:
    ferry_list_fini(&eps);
    ferry_worker_destroy(&w);
    return NULL;
}

void ferry_worker_destroy(ferry_worker **wp)
{
    ferry_worker *w = *wp;
    if (!w)
        return;
    *wp = NULL;
    /* Cancel callbacks may still use the loop, timers and fd watches. */
    w->state = WORKER_STOPPING;
    worker_call_cancel_all(w);
    worker_call_lanes_fini(w);
    worker_call_free_spares(w);
    w->last_found = NULL;
    worker_function *f, *tmp;
    HASH_ITER(hh, w->functions, f, tmp) {
        HASH_DEL(w->functions, f);
        ferry_timer_stop(&w->loop.timers, &f->pump);
        free(f->name);
        free(f);
    }
    ferry_timer_stop(&w->loop.timers, &w->heartbeat);
    ferry_timer_stop(&w->loop.timers, &w->drain);
    if (w->discover)
        ferry_timer_stop(&w->loop.timers, &w->discover_timer);
    free(w->discover);
    free(w->discover_port);
    for (size_t i = 0; i < FERRY_BROKERS_MAX; i++) {
        worker_link *l = &w->links[i];
        ferry_timer_stop(&w->loop.timers, &l->ready_retry);
        ferry_monitor_close(l->dealer, &l->monitor);
        ferry_socket_close(&l->dealer);
        free(l->endpoint);
        ferry_batch_fini(&l->batch);
    }
    if (w->ctx)
        zmq_ctx_term(w->ctx);
    ferry_loop_fini(&w->loop);
    free(w);
}

ferry_err ferry_worker_register(ferry_worker *w, const char *name, ferry_handler fn, void *udata,
                                const ferry_function_opts *opts)
{
    assert(w && name && fn);
    size_t len = strlen(name);
    if (!ferry_wire_function_name_ok(name, len) || worker_function_find(w, name))
        return FERRY_EUSAGE;
    worker_function *f = calloc(1, sizeof *f);
    if (!f)
        return FERRY_ENOMEM;
    f->name = strdup(name);
    if (!f->name) {
        free(f);
        return FERRY_ENOMEM;
    }
    f->handler = fn;
    f->udata = udata;
    f->idempotent = opts ? opts->idempotent : 0;
    f->max_concurrency = opts ? opts->max_concurrency : 0;
    f->worker = w;
    ferry_timer_init(&f->pump, worker_call_pump, f);
    HASH_ADD_KEYPTR(hh, w->functions, f->name, len, f);
    if (!FERRY_HASH_ADDED(f)) {
        free(f->name);
        free(f);
        return FERRY_ENOMEM;
    }
    /* A second Ready replaces the first at the broker. */
    for (size_t i = 0; i < w->nlinks; i++)
        if (w->links[i].connected)
            send_ready(w, &w->links[i]);
    return FERRY_OK;
}

worker_function *worker_function_lookup(ferry_worker *w, const char *name)
{
    worker_function *f;
    HASH_FIND_STR(w->functions, name, f);
    if (f)
        w->last_found = f;
    return f;
}

static void on_drain_timeout(ferry_timer *timer, void *arg)
{
    (void)timer;
    ferry_worker *w = arg;
    /* What is still in flight ends when the broker finds us gone: re-run
     * elsewhere when idempotent, else answered worker_lost. */
    ferry_warn("drain_timeout", "drain_ms=%d in_flight=%zu", w->drain_ms, w->stats.in_flight);
    ferry_loop_stop(&w->loop);
}

void worker_drained(ferry_worker *w)
{
    ferry_info("drained", "id=%s", w->id);
    ferry_loop_stop(&w->loop);
}

void worker_drain(ferry_worker *w)
{
    if (w->state != WORKER_RUNNING || w->drain_ms < 0) {
        ferry_loop_stop(&w->loop);
        return;
    }
    w->state = WORKER_DRAINING;
    /* The broker stops sending at Goodbye; Commands already on their way still
     * come, and run: refusing them would only turn work into errors. */
    Ferry__Goodbye bye = FERRY__GOODBYE__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &bye;
    ferry_err err = FERRY_OK;
    for (size_t i = 0; i < w->nlinks; i++) {
        worker_link *l = &w->links[i];
        ferry_timer_stop(&w->loop.timers, &l->ready_retry);
        ferry_err one = l->ready_pending ? FERRY_EUNREACHABLE : send_to(w, l, &env);
        if (one != FERRY_OK)
            err = one;
    }
    ferry_info("draining", "id=%s in_flight=%zu drain_ms=%d goodbye=%s", w->id, w->stats.in_flight,
               w->drain_ms, ferry_err_code(err));
    if (w->stats.in_flight == 0) {
        ferry_loop_stop(&w->loop);
        return;
    }
    if (ferry_loop_timer(&w->loop, &w->drain, w->drain_ms) != FERRY_OK)
        ferry_loop_stop(&w->loop);
}

static void on_signal(ferry_loop *loop, int signo, void *arg)
{
    (void)loop;
    ferry_worker *w = arg;
    ferry_info("signal", "signo=%d in_flight=%zu draining=%d", signo, w->stats.in_flight,
               w->state == WORKER_DRAINING);
    worker_drain(w);
}

ferry_err ferry_worker_run(ferry_worker *w)
{
    w->loop.on_signal = on_signal;
    w->loop.signal_arg = w;
    if (w->links[0].dealer || w->discover) {
        /* The monitor announces every session but one that began before it was
         * attached (connect and monitor are two calls): one late try covers that. */
        for (size_t i = 0; i < w->nlinks; i++)
            if (w->links[i].ready_pending)
                ferry_loop_timer(&w->loop, &w->links[i].ready_retry, READY_FALLBACK_MS);
        if (w->heartbeat_ms > 0 && !ferry_timer_active(&w->heartbeat))
            ferry_loop_timer(&w->loop, &w->heartbeat, w->heartbeat_ms);
    }
    ferry_info("worker_started", "id=%s functions=%u concurrency=%u", w->id,
               HASH_COUNT(w->functions), w->concurrency);
    ferry_err err = ferry_loop_run(&w->loop);
    ferry_info("worker_stopped",
               "id=%s in_flight=%zu received=%llu completed=%llu failed=%llu timed_out=%llu "
               "late=%llu dropped=%llu reply_lost=%llu",
               w->id, w->stats.in_flight, (unsigned long long)w->stats.received,
               (unsigned long long)w->stats.completed, (unsigned long long)w->stats.failed,
               (unsigned long long)w->stats.timed_out, (unsigned long long)w->stats.late,
               (unsigned long long)w->stats.dropped, (unsigned long long)w->stats.reply_lost);
    return err;
}

void ferry_worker_stop(ferry_worker *w)
{
    ferry_loop_stop(&w->loop);
}

const char *ferry_worker_id(const ferry_worker *w)
{
    return w->links[0].id;
}

ferry_loop *ferry_worker_loop(ferry_worker *w)
{
    return &w->loop;
}

ferry_err ferry_worker_timer_start(ferry_worker *w, ferry_timer *timer, int64_t after_ms)
{
    return ferry_loop_timer(&w->loop, timer, after_ms < 0 ? 0 : after_ms);
}

void ferry_worker_timer_stop(ferry_worker *w, ferry_timer *timer)
{
    ferry_timer_stop(&w->loop.timers, timer);
}

void ferry_worker_get_stats(const ferry_worker *w, ferry_worker_stats *out)
{
    *out = w->stats;
}

/* ---- file descriptors ------------------------------------------------------ */

static void on_watch(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    worker_watch *wt = arg;
    /* Unwatched earlier in this iteration: the loop still held its snapshot. */
    if (wt->fd < 0)
        return;
    wt->fn(wt->worker, wt->fd, revents, wt->arg);
}

ferry_err ferry_worker_watch_fd(ferry_worker *w, int fd, short events, ferry_fd_fn fn, void *arg)
{
    assert(fd >= 0 && fn);
    worker_watch *slot = NULL;
    for (int i = 0; i < FERRY_LOOP_MAX_ITEMS && !slot; i++)
        if (w->watches[i].fd == fd)
            slot = &w->watches[i];
    for (int i = 0; i < FERRY_LOOP_MAX_ITEMS && !slot; i++)
        if (w->watches[i].fd < 0)
            slot = &w->watches[i];
    if (!slot)
        return FERRY_EOVERLOADED;
    ferry_err err = ferry_loop_set_fd(&w->loop, fd, events, on_watch, slot);
    if (err != FERRY_OK)
        return err;
    slot->fd = fd;
    slot->fn = fn;
    slot->arg = arg;
    return FERRY_OK;
}

void ferry_worker_unwatch_fd(ferry_worker *w, int fd)
{
    for (int i = 0; i < FERRY_LOOP_MAX_ITEMS; i++) {
        if (w->watches[i].fd == fd) {
            w->watches[i].fd = -1;
            ferry_loop_remove_fd(&w->loop, fd);
            return;
        }
    }
}

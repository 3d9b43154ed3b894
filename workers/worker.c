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
    w->ready_pending = 1;
    w->ready_backoff_ms = READY_RETRY_MIN_MS;
    ferry_timer_init(&w->ready_retry, on_ready_retry, w);
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

/* Sends the Replies gathered in w->out (one message); those a failed send
 * loses are counted as reply_lost, as a single Reply's would be. */
static void flush_replies(ferry_worker *w)
{
    if (w->out.count == 0)
        return;
    ferry_err err = ferry_batch_send(&w->out, w->dealer, NULL, 0);
    if (err == FERRY_OK) {
        w->last_sent_ms = w->loop.now_ms;
    } else {
        w->stats.reply_lost += w->out.count;
        ferry_log_limited(&w->lim_lost.last_ms, &w->lim_lost.suppressed, FERRY_LOG_WARN,
                          "reply_lost", "replies=%zu error=%s", w->out.count,
                          ferry_err_code(err));
    }
    ferry_batch_clear(&w->out);
}

/* A Reply sent during a turn of on_dealer to a broker that takes batches
 * waits in w->out for the turn's end: 1 when it went there. */
static int batch_reply(ferry_worker *w, const Ferry__Envelope *env, size_t size)
{
    if (!w->in_turn || !w->broker_batches || env->body_case != FERRY__ENVELOPE__BODY_REPLY)
        return 0;
    if (w->out.max == 0)
        ferry_batch_init(&w->out, w->max_msg);
    if (!ferry_batch_fits(&w->out, size))
        return 0;
    ferry_err err;
    uint8_t *at = ferry_batch_add(&w->out, size, &err);
    if (!at && err == FERRY_OK) { /* full: it goes now, this one starts the next */
        flush_replies(w);
        at = ferry_batch_add(&w->out, size, &err);
    }
    if (!at)
        return 0;
    ferry_envelope_pack_sized(env, size, at);
    return 1;
}

static ferry_err send_dealer(ferry_worker *w, const Ferry__Envelope *env, size_t size, void *arg)
{
    (void)arg;
    if (!size)
        size = ferry_envelope_packed_size(env);
    if (batch_reply(w, env, size))
        return FERRY_OK;
    flush_replies(w); /* in order: what waits goes first */
    ferry_err err = ferry_wire_send_sized(w->dealer, NULL, 0, env, size);
    if (err == FERRY_OK)
        w->last_sent_ms = w->loop.now_ms;
    return err;
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

/* Sends Ready{functions, credit}. Refused inside a session (the DEALER may not
 * have attached the new connection yet), it is retried with a doubling delay
 * capped at the heartbeat period; outside one, the next session sends it. */
static void send_ready(ferry_worker *w)
{
    if (w->state != WORKER_RUNNING) {
        /* Leaving: a broker that does not know us yet need not learn of us. */
        w->ready_pending = 0;
        return;
    }
    size_t n = HASH_COUNT(w->functions);
    Ferry__FunctionSpec *specs = calloc(n ? n : 1, sizeof *specs);
    Ferry__FunctionSpec **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    ferry_err err = FERRY_ENOMEM;
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
        ready.credit = w->concurrency;
        /* After a broker restart, the calls of the old one still hold credit here. */
        ready.running = (uint32_t)w->stats.in_flight;
        ready.batches = 1; /* we take Commands in a Batch */
        Ferry__Envelope env;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_READY;
        env.ready = &ready;
        err = w->send(w, &env, 0, w->send_arg);
    }
    free(specs);
    free(ptrs);
    if (err == FERRY_OK) {
        w->ready_pending = 0;
        w->ready_backoff_ms = READY_RETRY_MIN_MS;
        /* The broker gets a whole liveness period to show it is there. */
        w->last_heard_ms = ferry_now_ms();
        ferry_timer_stop(&w->loop.timers, &w->ready_retry);
        ferry_info("ready_sent", "id=%s functions=%zu credit=%u running=%zu", w->id, n,
                   w->concurrency, w->stats.in_flight);
        return;
    }
    w->ready_pending = 1;
    ferry_debug("ready_deferred", "error=%s connected=%d retry_ms=%d", ferry_err_code(err),
                w->connected, w->ready_backoff_ms);
    if (!w->connected)
        return;
    if (!ferry_timer_active(&w->ready_retry))
        ferry_loop_timer(&w->loop, &w->ready_retry, w->ready_backoff_ms);
    int cap = w->heartbeat_ms > 0 ? w->heartbeat_ms : FERRY_WORKER_DEFAULT_HEARTBEAT_MS;
    w->ready_backoff_ms = w->ready_backoff_ms * 2 > cap ? cap : w->ready_backoff_ms * 2;
}

static void on_ready_retry(ferry_timer *timer, void *arg)
{
    (void)timer;
    ferry_worker *w = arg;
    if (w->ready_pending)
        send_ready(w);
}

/*
 * The broker stopped answering: its route to our routing id may be gone, or
 * held by another connection under the same id (a ROUTER without handover
 * keeps the first one). Come back on a new connection under a new id (a
 * given id gets a random suffix): to the broker, a new worker. Ready goes
 * once the monitor reports the connection. Offline (tests), Ready goes again.
 */
static void new_identity(ferry_worker *w)
{
    if (!w->dealer) {
        send_ready(w);
        return;
    }
    char old[sizeof w->id], fresh[64];
    memcpy(old, w->id, sizeof old);
    ferry_make_id("worker", fresh, sizeof fresh);
    if (w->base_id_len) {
        size_t keep = w->base_id_len + 9 <= FERRY_ROUTING_ID_MAX ? w->base_id_len
                                                                 : FERRY_ROUTING_ID_MAX - 9;
        snprintf(w->id + keep, sizeof w->id - keep, "-%s", fresh + strlen(fresh) - 8);
    } else {
        snprintf(w->id, sizeof w->id, "%s", fresh);
    }
    w->connected = 0;
    w->broker_batches = 0;
    ferry_timer_stop(&w->loop.timers, &w->ready_retry);
    if (zmq_disconnect(w->dealer, w->endpoint) != 0 ||
        zmq_setsockopt(w->dealer, ZMQ_ROUTING_ID, w->id, strlen(w->id)) != 0 ||
        zmq_connect(w->dealer, w->endpoint) != 0) {
        ferry_error("new_identity_failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
        return;
    }
    ferry_warn("new_identity", "old=%s id=%s", old, w->id);
}

static void on_heartbeat(ferry_timer *timer, void *arg)
{
    ferry_worker *w = arg;
    int64_t now = ferry_now_ms();
    if (!w->ready_pending && now - w->last_heard_ms > (int64_t)w->heartbeat_ms * w->liveness) {
        /* Registered, yet the broker says nothing: it restarted without our
         * connection noticing, or took us for lost. Say who we are again. */
        ferry_warn("broker_lost", "silent_ms=%lld in_flight=%zu",
                   (long long)(now - w->last_heard_ms), w->stats.in_flight);
        w->last_heard_ms = now;
        w->ready_pending = 1;
        new_identity(w);
    }
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    /* Not before Ready, and refused while no broker is connected: nothing to tell then.
     * Checked every half period: the broker hears from us at least every 1.5. */
    if (!w->ready_pending && now - w->last_sent_ms >= w->heartbeat_ms)
        (void)w->send(w, &env, 0, w->send_arg);
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
    ferry_worker *w = arg;
    /* Replies made during this turn go together at its end (batch_reply). */
    w->in_turn = 1;
    for (int i = 0; i < RECV_BATCH; i++) {
        ferry_frames f;
        ferry_err err = ferry_frames_recv(w->dealer, &f);
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
            worker_dispatch_frame(w, ferry_frame_data(&f, 0), size);
        }
        /* Any traffic from the broker shows it is alive. */
        w->last_heard_ms = w->loop.now_ms;
        ferry_frames_close(&f);
    }
    w->in_turn = 0;
    flush_replies(w);
}

/* Connection events of the DEALER: each new broker session needs a Ready. */
static void on_monitor(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    ferry_worker *w = arg;
    uint16_t event;
    while (ferry_monitor_recv(w->monitor, &event) == FERRY_OK) {
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            w->connected = 1;
            w->broker_batches = 0; /* a new session: its broker has to show it takes them */
            w->ready_pending = 1;
            w->ready_backoff_ms = READY_RETRY_MIN_MS;
            ferry_info("broker_connected", "draining=%d", w->state == WORKER_DRAINING);
            send_ready(w);
        } else if (event == ZMQ_EVENT_DISCONNECTED) {
            w->connected = 0;
            w->ready_pending = 1;
            ferry_timer_stop(&w->loop.timers, &w->ready_retry);
            ferry_warn("broker_disconnected", "in_flight=%zu", w->stats.in_flight);
        } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                   event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                   (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && w->curve.on)) {
            /* libzmq tries again by itself: said once in a while, not each time. */
            ferry_log_limited(&w->lim_auth.last_ms, &w->lim_auth.suppressed, FERRY_LOG_ERROR,
                              "broker_refused", "reason=\"%s\"",
                              event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                                  ? "our key is not on the broker's allow-list"
                                  : "handshake failed: check curve_key and broker_key");
        }
    }
}

/* ---- lifecycle --------------------------------------------------------------- */

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
    if (cfg && cfg->id && (!*cfg->id || strlen(cfg->id) > FERRY_ROUTING_ID_MAX)) {
        snprintf(err, errlen, "worker id must be 1 to %d bytes", FERRY_ROUTING_ID_MAX);
        goto fail;
    }
    if (cfg && ferry_curve_client(&w->curve, cfg->curve_key, cfg->broker_key, err, errlen) !=
                   FERRY_OK)
        goto fail;
    w->endpoint = strdup(endpoint);
    if (!w->endpoint) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->send = send_dealer;
    w->ctx = zmq_ctx_new();
    if (!w->ctx) {
        snprintf(err, errlen, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    ferry_socket_opts opts = {.type = ZMQ_DEALER,
                              .endpoint = endpoint,
                              .routing_id = w->id,
                              .max_msg = w->max_msg,
                              /* Unread replies are bounded by the credit (the broker
                               * returns credit as it reads them): never refuse one.
                               * libzmq tells the sender how far the reader got only
                               * every (hwm+1)/2 messages, so the sender may count up
                               * to credit + hwm/2 unread: twice the credit covers it. */
                              .hwm = 2 * (int)w->concurrency + HWM_MARGIN,
                              .linger_ms = LINGER_MS,
                              .curve = &w->curve};
    w->dealer = ferry_socket_open(w->ctx, &opts, err, errlen);
    if (!w->dealer)
        goto fail;
    w->monitor = ferry_monitor_open(w->ctx, w->dealer,
                                    ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                        ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                                    err, errlen);
    if (!w->monitor)
        goto fail;
    if (ferry_loop_add_socket(&w->loop, w->dealer, ZMQ_POLLIN, on_dealer, w) != FERRY_OK ||
        ferry_loop_add_quiet_socket(&w->loop, w->monitor, on_monitor, w) != FERRY_OK) {
        snprintf(err, errlen, "cannot watch the sockets");
        goto fail;
    }
    return w;
fail:
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
    ferry_timer_stop(&w->loop.timers, &w->ready_retry);
    ferry_timer_stop(&w->loop.timers, &w->drain);
    ferry_monitor_close(w->dealer, &w->monitor);
    ferry_socket_close(&w->dealer);
    ferry_batch_fini(&w->out);
    free(w->endpoint);
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
    if (w->connected)
        send_ready(w);
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
    ferry_timer_stop(&w->loop.timers, &w->ready_retry);
    /* The broker stops sending at Goodbye; Commands already on their way still
     * come, and run: refusing them would only turn work into errors. */
    Ferry__Goodbye bye = FERRY__GOODBYE__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &bye;
    ferry_err err = w->ready_pending ? FERRY_EUNREACHABLE : w->send(w, &env, 0, w->send_arg);
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
    if (w->dealer) {
        /* The monitor announces every session but one that began before it was
         * attached (connect and monitor are two calls): one late try covers that. */
        if (w->ready_pending)
            ferry_loop_timer(&w->loop, &w->ready_retry, READY_FALLBACK_MS);
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
    return w->id;
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

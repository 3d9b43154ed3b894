/*
 * worker: the process side of the worker library.
 *
 * One DEALER to the broker's workers socket, its routing id set before it
 * connects; a monitor on it so that every new broker session (first start,
 * broker restart, network break) gets a fresh Ready without waiting for a
 * heartbeat to notice; a heartbeat timer; the table of functions; and the
 * loop that also serves the handlers' own timers and file descriptors.
 */
#include "worker_internal.h"

#include "ferry_clock.h"
#include "ferry_log.h"
#include "ferry_wire.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define RECV_BATCH 1024       /* frames per wake-up: timers are not starved */
#define READY_RETRY_MIN_MS 5  /* first retry of a Ready refused in a session, doubling */
#define READY_FALLBACK_MS 200 /* a Ready in case the first session began before the monitor */
#define LINGER_MS 500         /* last replies get this long to leave at exit */
#define HWM_MARGIN 1024       /* Ready and heartbeats on top of one reply per credit */

static void on_heartbeat(ferry_timer *timer, void *arg);
static void on_ready_retry(ferry_timer *timer, void *arg);

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
    if (cfg->id)
        snprintf(w->id, sizeof w->id, "%s", cfg->id);
    else
        ferry_make_id("worker", w->id, sizeof w->id);
    w->concurrency = cfg->concurrency ? cfg->concurrency : FERRY_WORKER_DEFAULT_CONCURRENCY;
    if (w->concurrency > FERRY_WORKER_MAX_CONCURRENCY)
        w->concurrency = FERRY_WORKER_MAX_CONCURRENCY;
    w->max_msg = cfg->max_msg > 0 ? cfg->max_msg : FERRY_DEFAULT_MAX_MSG;
    w->heartbeat_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : FERRY_WORKER_DEFAULT_HEARTBEAT_MS;
    w->ready_pending = 1;
    w->ready_backoff_ms = READY_RETRY_MIN_MS;
    ferry_timer_init(&w->ready_retry, on_ready_retry, w);
    ferry_timer_init(&w->heartbeat, on_heartbeat, w);
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

static ferry_err send_dealer(ferry_worker *w, const Ferry__Envelope *env, void *arg)
{
    (void)arg;
    return ferry_wire_send(w->dealer, NULL, 0, env);
}

ferry_err worker_send_reply(ferry_worker *w, ProtobufCBinaryData engine_id, uint64_t call_id,
                            Ferry__Value **values, size_t n, const char *error_code,
                            const char *message)
{
    Ferry__Error error = FERRY__ERROR__INIT;
    Ferry__Reply reply = FERRY__REPLY__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    reply.engine_id = engine_id;
    reply.call_id = call_id;
    if (error_code) {
        error.code = (char *)error_code;
        error.message = (char *)(message ? message : "");
        reply.error = &error;
    } else {
        reply.values = values;
        reply.n_values = n;
    }
    char toobig[160];
    size_t size = ferry__envelope__get_packed_size(&env);
    if ((int64_t)size > w->max_msg) {
        /* The broker would drop the whole connection over it: answer small. */
        snprintf(toobig, sizeof toobig, "reply of %zu bytes is over the %lld-byte limit", size,
                 (long long)w->max_msg);
        error.code = (char *)ferry_err_code(FERRY_ECALL);
        error.message = toobig;
        reply.error = &error;
        reply.values = NULL;
        reply.n_values = 0;
    }
    if (reply.error)
        w->stats.failed++;
    else
        w->stats.completed++;
    ferry_err err = w->send(w, &env, w->send_arg);
    if (err != FERRY_OK) {
        w->stats.reply_lost++;
        ferry_log_limited(&w->lim_lost.last_ms, &w->lim_lost.suppressed, FERRY_LOG_WARN,
                          "reply_lost", "call_id=%llu error=%s", (unsigned long long)call_id,
                          ferry_err_code(err));
    }
    return err;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates), or 0 when there is none. s is NUL-terminated. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

void worker_utf8_fix(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = utf8_seq(p);
        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
}

ferry_err worker_send_error(ferry_worker *w, ProtobufCBinaryData engine_id, uint64_t call_id,
                            const char *code, const char *fmt, ...)
{
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    worker_utf8_fix(message);
    return worker_send_reply(w, engine_id, call_id, NULL, 0, code, message);
}

/* Sends Ready{functions, credit}. Refused inside a session (the DEALER may not
 * have attached the new connection yet), it is retried with a doubling delay
 * capped at the heartbeat period; outside one, the next session sends it. */
static void send_ready(ferry_worker *w)
{
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
        Ferry__Envelope env;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_READY;
        env.ready = &ready;
        err = w->send(w, &env, w->send_arg);
    }
    free(specs);
    free(ptrs);
    if (err == FERRY_OK) {
        w->ready_pending = 0;
        w->ready_backoff_ms = READY_RETRY_MIN_MS;
        ferry_timer_stop(&w->loop.timers, &w->ready_retry);
        ferry_info("ready_sent", "id=%s functions=%zu credit=%u", w->id, n, w->concurrency);
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

static void on_heartbeat(ferry_timer *timer, void *arg)
{
    ferry_worker *w = arg;
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    /* Not before Ready, and refused while no broker is connected: nothing to tell then. */
    if (!w->ready_pending)
        (void)w->send(w, &env, w->send_arg);
    ferry_debug("worker_stats",
                "in_flight=%zu queued=%zu zombies=%zu completed=%llu failed=%llu "
                "timed_out=%llu",
                w->stats.in_flight, w->stats.queued, w->stats.zombies,
                (unsigned long long)w->stats.completed, (unsigned long long)w->stats.failed,
                (unsigned long long)w->stats.timed_out);
    ferry_loop_timer(&w->loop, timer, w->heartbeat_ms);
}

/* ---- receiving ------------------------------------------------------------- */

static void on_dealer(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    ferry_worker *w = arg;
    for (int i = 0; i < RECV_BATCH; i++) {
        ferry_frames f;
        ferry_err err = ferry_frames_recv(w->dealer, &f);
        if (err == FERRY_ETIMEOUT)
            return;
        if (err != FERRY_OK) {
            ferry_log_limited(&w->lim_frames.last_ms, &w->lim_frames.suppressed, FERRY_LOG_WARN,
                              "recv_failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
            return;
        }
        if (f.count != 1 || f.truncated) {
            w->stats.dropped++;
            ferry_log_limited(&w->lim_frames.last_ms, &w->lim_frames.suppressed, FERRY_LOG_WARN,
                              "bad_frames", "frames=%d truncated=%d", f.count, f.truncated);
        } else if ((int64_t)ferry_frame_size(&f, 0) > w->max_msg) {
            /* ferry_socket_open sets ZMQ_MAXMSGSIZE on bound sockets only. */
            w->stats.dropped++;
            ferry_log_limited(&w->lim_frames.last_ms, &w->lim_frames.suppressed, FERRY_LOG_WARN,
                              "oversize_message", "bytes=%zu max=%lld", ferry_frame_size(&f, 0),
                              (long long)w->max_msg);
        } else {
            worker_dispatch_frame(w, ferry_frame_data(&f, 0), ferry_frame_size(&f, 0));
        }
        ferry_frames_close(&f);
    }
}

/* Connection events of the DEALER: each new broker session needs a Ready. */
static void on_monitor(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    ferry_worker *w = arg;
    for (;;) {
        ferry_frames f;
        if (ferry_frames_recv(w->monitor, &f) != FERRY_OK)
            return;
        if (f.count >= 1 && ferry_frame_size(&f, 0) >= 6) {
            uint16_t event;
            memcpy(&event, ferry_frame_data(&f, 0), sizeof event);
            int have_ep = f.count >= 2;
            int eplen = have_ep ? (int)ferry_frame_size(&f, 1) : 0;
            const char *ep = have_ep ? ferry_frame_data(&f, 1) : "";
            if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
                w->connected = 1;
                w->ready_pending = 1;
                w->ready_backoff_ms = READY_RETRY_MIN_MS;
                ferry_info("broker_connected", "endpoint=%.*s", eplen, ep);
                send_ready(w);
            } else if (event == ZMQ_EVENT_DISCONNECTED) {
                w->connected = 0;
                w->ready_pending = 1;
                ferry_timer_stop(&w->loop.timers, &w->ready_retry);
                ferry_warn("broker_disconnected", "endpoint=%.*s in_flight=%zu", eplen, ep,
                           w->stats.in_flight);
            }
        }
        ferry_frames_close(&f);
    }
}

/* ---- lifecycle --------------------------------------------------------------- */

ferry_worker *ferry_worker_new(const ferry_worker_config *cfg, char *err, size_t errlen)
{
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
                               * returns credit as it reads them): never refuse one. */
                              .hwm = (int)w->concurrency + HWM_MARGIN,
                              .linger_ms = LINGER_MS};
    w->dealer = ferry_socket_open(w->ctx, &opts, err, errlen);
    if (!w->dealer)
        goto fail;
    char monitor_ep[64];
    snprintf(monitor_ep, sizeof monitor_ep, "inproc://ferry-worker-monitor-%p", (void *)w);
    if (zmq_socket_monitor(w->dealer, monitor_ep,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0) {
        snprintf(err, errlen, "cannot monitor the workers socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    ferry_socket_opts mopts = {.type = ZMQ_PAIR, .endpoint = monitor_ep};
    w->monitor = ferry_socket_open(w->ctx, &mopts, err, errlen);
    if (!w->monitor)
        goto fail;
    if (ferry_loop_add_socket(&w->loop, w->dealer, ZMQ_POLLIN, on_dealer, w) != FERRY_OK ||
        ferry_loop_add_socket(&w->loop, w->monitor, ZMQ_POLLIN, on_monitor, w) != FERRY_OK) {
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
    worker_function *f, *tmp;
    HASH_ITER(hh, w->functions, f, tmp) {
        HASH_DEL(w->functions, f);
        ferry_timer_stop(&w->loop.timers, &f->pump);
        free(f->name);
        free(f);
    }
    ferry_timer_stop(&w->loop.timers, &w->heartbeat);
    ferry_timer_stop(&w->loop.timers, &w->ready_retry);
    if (w->dealer && w->monitor)
        zmq_socket_monitor(w->dealer, NULL, 0);
    ferry_socket_close(&w->monitor);
    ferry_socket_close(&w->dealer);
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
    if (len == 0 || len > FERRY_ROUTING_ID_MAX || worker_function_find(w, name))
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
    /* A second Ready replaces the first at the broker. */
    if (w->connected)
        send_ready(w);
    return FERRY_OK;
}

worker_function *worker_function_find(ferry_worker *w, const char *name)
{
    worker_function *f = NULL;
    HASH_FIND_STR(w->functions, name, f);
    return f;
}

static void on_signal(ferry_loop *loop, int signo, void *arg)
{
    ferry_worker *w = arg;
    /* Where a drain will go: Goodbye, refuse new calls, stop once in_flight is 0. */
    ferry_info("signal", "signo=%d in_flight=%zu", signo, w->stats.in_flight);
    ferry_loop_stop(loop);
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

/*
 * engine: sockets, the tables of running scripts and pending calls, timers.
 *
 * A running script is an engine_run (its script, its deadline timer, its
 * pending calls); a pending call is an engine_call in a uthash table keyed by
 * call_id, with its own timer. Whichever comes first, Reply or timer, removes
 * the call from the table, so the other one finds nothing: a Reply after the
 * timer is dropped and counted as late, never delivered twice.
 *
 * Out of memory: a failed allocation for a script or a call (its record, its
 * place in the table: lib/ferry_hash.h) is answered to the script or client
 * as out_of_memory.
 */
#include "engine.h"

#include "ferry_brokers.h"
#include "ferry_clock.h"
#include "ferry_discover.h"
#include "ferry_log.h"
#include "ferry_value.h"
#include "ferry_wire.h"
#include "metrics.h"
#include "script.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ferry_hash.h"
#include <utlist.h>

typedef struct engine_run engine_run;
typedef struct engine_link engine_link;

typedef struct engine_call {
    uint64_t call_id;
    engine_run *run;                 /* the script waiting on it */
    ferry_timer timer;               /* the call's timeout */
    uint32_t timeout_ms;             /* as sent in the Command */
    uint32_t tag;                    /* handed back to the script with the answer */
    char function[64];               /* for messages; may be truncated */
    size_t bytes;                    /* its Command's size, in run->s->inflight_bytes and
                                      * engine.inflight_bytes until it is forgotten */
    struct engine_call *prev, *next; /* in run->calls */
    engine_link *link;               /* the broker its Command went through */
    struct engine_call *lprev, *lnext; /* in link->calls */
    UT_hash_handle hh;               /* in engine.calls by call_id */
    int64_t sent_us;                 /* for metrics.h; 0 when off */
} engine_call;

struct engine_run {
    engine *e;
    engine_script *s;        /* owned */
    ferry_timer deadline;    /* the script's deadline */
    engine_call *calls;      /* pending calls of this script (owned, also in engine.calls) */
    engine_link *link;       /* the broker that sent it: its Result goes back there */
    engine_run *prev, *next; /* in engine.runs */
    int64_t started_us;      /* for metrics.h; 0 when off */
};

/* One broker of the lists and everything the engine holds towards it. */
struct engine_link {
    engine *e;
    unsigned index;   /* position in the lists */
    const char *commands, *engines; /* endpoints, in e->commands / e->engines */
    ferry_curve curve;
    void *push;       /* Commands to the broker */
    void *dealer;     /* Hello, Results, Heartbeats out; Submit, Reply, Heartbeat in */
    void *dealer_mon; /* connection events of the DEALER */
    void *push_mon;   /* and of the PUSH */
    char id[FERRY_ROUTING_ID_MAX + 1]; /* the DEALER's routing id, the Commands' engine_id */
    size_t id_len;
    int hello_sent;        /* registered with the broker of this session: calls may go */
    int leaving;           /* it said Goodbye (it drains): new calls go elsewhere if they can,
                            * and it gets no share of the slots; until its connection drops */
    int dealer_down;       /* its connection dropped and no new one is up yet */
    int push_down;         /* the same for the PUSH */
    int64_t down_ms;       /* when the last connection dropped */
    int64_t last_heard_ms; /* last message from the broker */
    int64_t last_sent_ms;  /* last message to it on the DEALER */
    uint32_t slots;        /* announced in the last Hello */
    size_t running;        /* its scripts running here */
    engine_call *calls;    /* calls in flight through it (DL through lprev/lnext) */
    int64_t auth_log_ms;   /* the broker_refused line's rate limit */
    uint64_t auth_log_n;
    char addr[FERRY_DISCOVER_ADDR_MAX]; /* --discover: the address it was found at; "" else */
    char commands_ep[FERRY_DISCOVER_ADDR_MAX + 32], engines_ep[FERRY_DISCOVER_ADDR_MAX + 32];
    int retired;           /* --discover: its address is gone; disconnected, its slot reused
                            * once its scripts ended */
    ferry_batch out;       /* Commands of this turn of on_dealer, sent as one message at its end */
    int broker_batches;    /* this session's broker sent a Batch: it takes ours (protocol.md) */
};

struct engine {
    engine_config cfg;
    ferry_loop *loop;
    ferry_list commands, engines; /* the endpoint lists, split */
    engine_link links[FERRY_BROKERS_MAX];
    size_t nlinks;
    size_t next_link;      /* where the next call looks for a live broker first */
    engine_link *cur;      /* the link whose message is being handled */
    void *zctx;            /* for the links --discover opens later */
    ferry_timer discover;  /* --discover: resolve the name again */
    char id[FERRY_ROUTING_ID_MAX + 1]; /* links[0].id at start: for logs and engine_id */
    ferry_timer tick;      /* twice per heartbeat_ms: heartbeat out, broker liveness */
    size_t running;
    int draining;          /* said Goodbye: the loop stops when running reaches 0 */
    ferry_timer drain;     /* the drain's time limit */
    size_t ncalls;
    size_t inflight_bytes; /* bytes of the Commands of every call in flight */
    engine_run *runs;   /* every running script */
    engine_call *calls; /* every pending call, by call_id */
    uint64_t next_call_id;
    engine_script_host host;
    engine_stats stats;
    int64_t bad_log_ms, late_log_ms, lost_log_ms, refused_log_ms; /* rate limits for logs */
    uint64_t bad_log_n, late_log_n, lost_log_n, refused_log_n;
    int in_turn;        /* on_dealer is running: Commands may wait in their link's out */
    engine_metrics metrics; /* --metrics (metrics.h) */
};

static void on_drain_timeout(ferry_timer *timer, void *arg);

/* Batch of messages taken from the DEALER per wakeup: the poll is
 * level-triggered, so the rest waits for the next turn of the loop. */
#define RECV_BATCH 256

static void drop(engine *e, const char *why)
{
    e->stats.dropped++;
    ferry_log_limited(&e->bad_log_ms, &e->bad_log_n, FERRY_LOG_WARN, "bad_message", "reason=%s",
                      why);
}

/*
 * Every send of the engine: packs env and sends it on socket, unless it
 * would be larger than max_msg. The broker's ZMQ_MAXMSGSIZE would then drop
 * the whole connection, and every call or script in flight over it, so such
 * a message is refused here with FERRY_ELIMIT (its size in *size) for the
 * caller to fail its own call or script. Otherwise as ferry_wire_send.
 */
static ferry_err send_bounded_sized(engine *e, void *socket, const Ferry__Envelope *env,
                                    size_t size)
{
    if (size > (size_t)e->cfg.max_msg) {
        e->stats.oversize++;
        return FERRY_ELIMIT;
    }
    return ferry_wire_send_sized(socket, NULL, 0, env, size);
}

static ferry_err send_bounded(engine *e, void *socket, const Ferry__Envelope *env, size_t *size)
{
    *size = ferry_envelope_packed_size(env);
    return send_bounded_sized(e, socket, env, *size);
}

/* Room left for the bytes of a field (tag, length, body length growth) in a message. */
#define FIELD_OVERHEAD 32

/* Sends a script's Result to the broker l that sent the script. */
static void send_envelope_result(engine *e, engine_link *l, const Ferry__Result *res)
{
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_RESULT;
    env.result = (Ferry__Result *)res;
    size_t size;
    ferry_err err = send_bounded(e, l->dealer, &env, &size);
    Ferry__Result small;
    Ferry__Error error = FERRY__ERROR__INIT;
    char msg[192];
    if (err == FERRY_ELIMIT) {
        /* Too big to leave: the script fails alone, with what it printed as
         * far as it fits, instead of every script of the engine with it. */
        small = *res;
        snprintf(msg, sizeof msg,
                 "the script's result is %zu bytes, over the %ld-byte message limit (--max-msg)",
                 size, e->cfg.max_msg);
        error.code = (char *)ferry_err_code(FERRY_ELIMIT);
        error.message = msg;
        small.ok = 0;
        small.values = NULL;
        small.n_values = 0;
        small.error = &error;
        size_t output_len = small.output.len;
        small.output.len = 0;
        res = env.result = &small;
        size_t bare = ferry_envelope_packed_size(&env);
        size_t room = bare + FIELD_OVERHEAD < (size_t)e->cfg.max_msg
                          ? (size_t)e->cfg.max_msg - bare - FIELD_OVERHEAD
                          : 0;
        small.output.len = output_len < room ? output_len : room;
        ferry_log_limited(&e->lost_log_ms, &e->lost_log_n, FERRY_LOG_WARN, "result_oversize",
                          "script_id=%llu bytes=%zu max_msg=%ld",
                          (unsigned long long)res->script_id, size, e->cfg.max_msg);
        err = send_bounded(e, l->dealer, &env, &size);
        assert(err != FERRY_ELIMIT); /* max_msg is at least ENGINE_MIN_MAX_MSG */
    }
    e->stats.scripts_completed++;
    if (!res->ok)
        e->stats.scripts_failed++;
    if (err == FERRY_OK)
        l->last_sent_ms = e->loop->now_ms;
    else {
        e->stats.results_lost++;
        ferry_log_limited(&e->lost_log_ms, &e->lost_log_n, FERRY_LOG_WARN, "result_lost",
                          "script_id=%llu error=%s", (unsigned long long)res->script_id,
                          ferry_err_code(err));
    }
}

/* A Result for a script that never ran (no slot, no memory). */
static void send_error_result(engine *e, engine_link *l, uint64_t script_id, ferry_err code,
                              const char *message)
{
    Ferry__Result res = FERRY__RESULT__INIT;
    Ferry__Error error = FERRY__ERROR__INIT;
    error.code = (char *)ferry_err_code(code);
    error.message = (char *)message;
    res.script_id = script_id;
    res.ok = 0;
    res.error = &error;
    send_envelope_result(e, l, &res);
}

static void forget_call(engine *e, engine_call *c)
{
    HASH_DEL(e->calls, c);
    e->ncalls--;
    assert(c->run->s->inflight_bytes >= c->bytes && e->inflight_bytes >= c->bytes);
    c->run->s->inflight_bytes -= c->bytes;
    e->inflight_bytes -= c->bytes;
    DL_DELETE(c->run->calls, c);
    DL_DELETE2(c->link->calls, c, lprev, lnext);
    ferry_timer_stop(&e->loop->timers, &c->timer);
    free(c);
}

static void forget_calls(engine *e, engine_run *run)
{
    engine_call *c, *tmp;
    DL_FOREACH_SAFE(run->calls, c, tmp)
        forget_call(e, c);
}

/* Sends the result of a finished script and frees it and its slot. */
static void finish(engine *e, engine_run *run)
{
    Ferry__Result res = FERRY__RESULT__INIT;
    Ferry__Error error = FERRY__ERROR__INIT;
    forget_calls(e, run);
    ferry_timer_stop(&e->loop->timers, &run->deadline);
    engine_script_result(run->s, &res, &error);
    engine_metrics_script_done(&e->metrics, run->started_us, run->s->instructions, &res);
    send_envelope_result(e, run->link, &res);
    DL_DELETE(e->runs, run);
    e->running--;
    run->link->running--;
    engine_script_destroy(&run->s);
    free(run);
    if (e->draining && e->running == 0)
        ferry_loop_stop(e->loop);
}

static void step(engine *e, engine_run *run, engine_script_state state)
{
    if (state == ENGINE_SCRIPT_DONE)
        finish(e, run);
}

static void on_call_timeout(ferry_timer *timer, void *arg)
{
    (void)timer;
    engine_call *c = arg;
    engine_run *run = c->run;
    engine *e = run->e;
    char msg[160];
    snprintf(msg, sizeof msg, "call to '%s' timed out after %u ms", c->function,
             (unsigned)c->timeout_ms);
    e->stats.calls_timed_out++;
    engine_metrics_call_done(&e->metrics, c->sent_us, FERRY_ETIMEOUT);
    engine_script_answer a = {
        .code = ferry_err_code(FERRY_ETIMEOUT), .message = msg, .tag = c->tag};
    forget_call(e, c);
    step(e, run, engine_script_resume(run->s, &a));
}

static void on_deadline(ferry_timer *timer, void *arg)
{
    (void)timer;
    engine_run *run = arg;
    char msg[96];
    snprintf(msg, sizeof msg, "script deadline of %lld ms passed",
             (long long)run->s->limits.timeout_ms);
    forget_calls(run->e, run);
    engine_script_fail(run->s, FERRY_ETIMEOUT, msg);
    finish(run->e, run);
}

/*
 * A Command of size bytes is held until its call is answered (by the
 * broker, and in the engine's queue until sent): it must fit its script's
 * memory room (FERRY_ELIMIT: the script broke its memory limit) and the
 * engine's --inflight-bytes (FERRY_EOVERLOADED). Writes why on refusal.
 */
static ferry_err check_room(engine *e, engine_script *s, size_t size, char *why, size_t whylen)
{
    size_t room = engine_script_room(s);
    if (size > room) {
        snprintf(why, whylen,
                 "a Command of %zu bytes with %zu bytes of calls in flight does not fit the "
                 "script's memory limit of %zu bytes",
                 size, s->inflight_bytes, s->limits.max_memory);
        return FERRY_ELIMIT;
    }
    size_t bound = (size_t)e->cfg.inflight_bytes;
    if (size > bound || e->inflight_bytes > bound - size) {
        snprintf(why, whylen,
                 "the engine holds %zu bytes of calls in flight: a Command of %zu more would "
                 "pass its bound of %zu (--inflight-bytes)",
                 e->inflight_bytes, size, bound);
        e->stats.calls_refused++;
        ferry_log_limited(&e->refused_log_ms, &e->refused_log_n, FERRY_LOG_WARN,
                          "inflight_bytes_reached", "in_flight_bytes=%zu size=%zu bound=%zu",
                          e->inflight_bytes, size, bound);
        return FERRY_EOVERLOADED;
    }
    return FERRY_OK;
}

/* engine_script_host.room: what --inflight-bytes leaves for new calls. */
static size_t host_room(void *ctx)
{
    engine *e = ctx;
    size_t bound = (size_t)e->cfg.inflight_bytes;
    return e->inflight_bytes < bound ? bound - e->inflight_bytes : 0;
}

/* The next registered broker in turn, from next_link on, one that is not
 * leaving first; NULL when none is registered. */
static engine_link *pick_link(engine *e)
{
    engine_link *leaving = NULL;
    for (size_t k = 0; k < e->nlinks; k++) {
        engine_link *l = &e->links[(e->next_link + k) % e->nlinks];
        if (l->hello_sent && !l->leaving) {
            e->next_link = (l->index + 1) % e->nlinks;
            return l;
        }
        if (l->hello_sent && !leaving)
            leaving = l;
    }
    return leaving; /* its calls still run while it drains */
}

/* engine_script_host.call: one ferry.call becomes one Command, through the
 * next live broker in turn (another one when its queue is full). */
static ferry_err host_call(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                           size_t nargs, uint32_t tag, char *why, size_t whylen)
{
    engine *e = ctx;
    engine_run *run = s->user;
    ferry_err err = FERRY_OK;
    why[0] = '\0';
    int64_t left = s->deadline_ms - ferry_now_ms();
    if (left <= 0) {
        snprintf(why, whylen, "script deadline passed");
        err = FERRY_ETIMEOUT;
        goto out;
    }
    engine_link *l = pick_link(e);
    if (!l) {
        /* Its answer could not come back: fail now rather than at the timeout. */
        snprintf(why, whylen, "the engine is not connected to any broker (reconnecting)");
        err = FERRY_EBROKER_LOST;
        e->stats.calls_refused++;
        goto out;
    }
    if (e->cfg.calls_max > 0 && e->ncalls >= (size_t)e->cfg.calls_max) {
        snprintf(why, whylen, "the engine has %zu calls in flight, its limit", e->ncalls);
        err = FERRY_EOVERLOADED;
        e->stats.calls_refused++;
        ferry_log_limited(&e->refused_log_ms, &e->refused_log_n, FERRY_LOG_WARN,
                          "calls_max_reached", "in_flight=%zu", e->ncalls);
        goto out;
    }
    engine_call *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, whylen, "out of memory");
        err = FERRY_ENOMEM;
        goto out;
    }
    c->call_id = ++e->next_call_id;
    c->run = run;
    c->tag = tag;
    c->timeout_ms = (uint32_t)(left < e->cfg.call_timeout_ms ? left : e->cfg.call_timeout_ms);
    /* For messages only: cut to fit (snprintf would walk all of a long name). */
    size_t fn_len = strnlen(function, sizeof c->function - 1);
    memcpy(c->function, function, fn_len);
    c->function[fn_len] = '\0';
    ferry_timer_init(&c->timer, on_call_timeout, c);
    if (ferry_loop_timer(e->loop, &c->timer, c->timeout_ms) != FERRY_OK) {
        free(c);
        snprintf(why, whylen, "out of memory");
        err = FERRY_ENOMEM;
        goto out;
    }
    /* In the table before the Command goes: its Reply must find it. */
    HASH_ADD(hh, e->calls, call_id, sizeof c->call_id, c);
    if (!FERRY_HASH_ADDED(c)) {
        ferry_timer_stop(&e->loop->timers, &c->timer);
        free(c);
        snprintf(why, whylen, "out of memory");
        err = FERRY_ENOMEM;
        goto out;
    }

    Ferry__Command cmd = FERRY__COMMAND__INIT;
    cmd.engine_id.data = (uint8_t *)l->id;
    cmd.engine_id.len = l->id_len;
    cmd.call_id = c->call_id;
    cmd.function = (char *)function;
    cmd.args = args;
    cmd.n_args = nargs;
    cmd.timeout_ms = c->timeout_ms;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_COMMAND;
    env.command = &cmd;
    size_t size = ferry_envelope_packed_size(&env);
    if (size <= (size_t)e->cfg.max_msg)
        err = check_room(e, s, size, why, whylen);
    uint8_t *at = NULL;
    if (!err && e->in_turn && l->broker_batches && ferry_batch_fits(&l->out, size))
        at = ferry_batch_add(&l->out, size, &err); /* NULL when full: this one goes alone */
    if (at)
        ferry_envelope_pack_sized(&env, size, at); /* sent at the turn's end (flush_commands) */
    /* Else each broker in turn while their queues are full (or their
     * connection just went): the call fails overloaded only when none takes it. */
    for (size_t tries = 0; !at && !err && tries < e->nlinks; tries++) {
        if (e->nlinks > 1) {
            /* A send handles the socket's pending commands only about once a
             * millisecond; ZMQ_EVENTS handles them now, so a connection whose
             * end the I/O thread saw already is not sent to (another broker
             * takes the call). */
            int events;
            size_t elen = sizeof events;
            (void)zmq_getsockopt(l->push, ZMQ_EVENTS, &events, &elen);
        }
        err = send_bounded_sized(e, l->push, &env, size);
        if (err != FERRY_EOVERLOADED)
            break;
        engine_link *next = pick_link(e);
        if (!next || next == l)
            break;
        l = next;
        cmd.engine_id.data = (uint8_t *)l->id;
        cmd.engine_id.len = l->id_len;
        err = FERRY_OK;
        size = ferry_envelope_packed_size(&env); /* another engine_id */
    }
    if (err) {
        HASH_DEL(e->calls, c);
        ferry_timer_stop(&e->loop->timers, &c->timer);
        free(c);
        if (why[0]) /* check_room said why */
            goto out;
        if (err == FERRY_ELIMIT) {
            snprintf(why, whylen,
                     "the call would be a Command of %zu bytes, over the %ld-byte message "
                     "limit (--max-msg)",
                     size, e->cfg.max_msg);
            err = FERRY_EBADVALUE;
        } else if (err == FERRY_EOVERLOADED)
            snprintf(why, whylen,
                     "cannot send the call: the broker is not connected or its "
                     "command queue is full");
        else
            snprintf(why, whylen, "cannot send the call: %s", ferry_err_desc(err));
        goto out;
    }
    c->bytes = size;
    c->link = l;
    DL_APPEND2(l->calls, c, lprev, lnext);
    s->inflight_bytes += size;
    e->inflight_bytes += size;
    DL_APPEND(run->calls, c);
    e->ncalls++;
    e->stats.calls_sent++;
    c->sent_us = engine_metrics_now(&e->metrics);
out:
    if (err)
        engine_metrics_call_refused(&e->metrics, err);
    ferry_values_free(args, nargs);
    return err;
}

static void on_submit(engine *e, const Ferry__Envelope *env)
{
    const Ferry__Submit *sub = env->submit;
    if (!sub) {
        drop(e, "submit_without_body");
        return;
    }
    if (e->running >= (size_t)e->cfg.slots) {
        char msg[96];
        snprintf(msg, sizeof msg, "all %ld script slots of the engine are busy", e->cfg.slots);
        e->stats.scripts_refused++;
        send_error_result(e, e->cur, sub->script_id, FERRY_EOVERLOADED, msg);
        return;
    }
    /* The engine's flags are ceilings: a submission may ask for less, never more. */
    engine_script_limits ceiling = {.timeout_ms = e->cfg.script_timeout_ms,
                                    .max_output = (size_t)e->cfg.max_output,
                                    .max_memory = (size_t)e->cfg.max_memory,
                                    .max_instructions = (uint64_t)e->cfg.max_instructions,
                                    .max_source = (size_t)e->cfg.max_source};
    engine_script_limits asked = {.timeout_ms = sub->timeout_ms,
                                  .max_output = (size_t)sub->max_output,
                                  .max_memory = (size_t)sub->max_memory,
                                  .max_instructions = sub->max_instructions};
    engine_script_limits limits = engine_script_limits_clamp(&ceiling, &asked);
    int64_t timeout = limits.timeout_ms;
    engine_run *run = calloc(1, sizeof *run);
    engine_script *s = engine_script_new(&e->host, &limits, sub->script_id);
    if (!run || !s) {
        free(run);
        engine_script_destroy(&s);
        send_error_result(e, e->cur, sub->script_id, FERRY_ENOMEM, "the engine is out of memory");
        return;
    }
    /* Armed before the script runs: at equal expiry the deadline fires before
     * the call timers armed during the run, so the script ends as a timeout. */
    ferry_timer_init(&run->deadline, on_deadline, run);
    if (ferry_loop_timer(e->loop, &run->deadline, timeout) != FERRY_OK) {
        free(run);
        engine_script_destroy(&s);
        send_error_result(e, e->cur, sub->script_id, FERRY_ENOMEM, "the engine is out of memory");
        return;
    }
    run->e = e;
    run->s = s;
    run->link = e->cur;
    s->user = run;
    DL_APPEND(e->runs, run);
    e->running++;
    run->link->running++;
    e->stats.scripts_started++;
    run->started_us = engine_metrics_now(&e->metrics);
    step(e, run,
         engine_script_start(s, sub->source.data, sub->source.len, sub->name, sub->args,
                             sub->n_args));
}

static void on_reply(engine *e, const Ferry__Envelope *env)
{
    const Ferry__Reply *r = env->reply;
    if (!r) {
        drop(e, "reply_without_body");
        return;
    }
    engine_link *l = e->cur;
    if (r->engine_id.len != l->id_len || memcmp(r->engine_id.data, l->id, l->id_len) != 0) {
        drop(e, "reply_for_another_engine");
        return;
    }
    engine_call *c;
    HASH_FIND(hh, e->calls, &r->call_id, sizeof r->call_id, c);
    if (c && c->link != l) {
        drop(e, "reply_through_another_broker");
        return;
    }
    if (!c) {
        e->stats.late_replies++;
        ferry_log_limited(&e->late_log_ms, &e->late_log_n, FERRY_LOG_INFO, "late_reply",
                          "call_id=%llu", (unsigned long long)r->call_id);
        return;
    }
    engine_run *run = c->run;
    engine_script_answer a = {.reply = r, .tag = c->tag};
    engine_metrics_call_done(&e->metrics, c->sent_us,
                             r->error ? ferry_metrics_outcome(r->error->code) : FERRY_OK);
    forget_call(e, c);
    e->stats.calls_answered++;
    step(e, run, engine_script_resume(run->s, &a));
}

static void rebalance(engine *e, engine_link *fresh);

/* The broker leaves (SIGTERM): the scripts it sent finish through it, the
 * new calls go to the other brokers, which get its share of the slots. */
static void on_broker_goodbye(engine *e, const Ferry__Envelope *env)
{
    (void)env;
    engine_link *l = e->cur;
    if (l->leaving)
        return;
    l->leaving = 1;
    ferry_info("broker_leaving", "broker=%u running=%zu calls=%s", l->index, l->running,
               l->calls ? "some" : "none");
    rebalance(e, NULL);
}

static void on_heartbeat(engine *e, const Ferry__Envelope *env)
{
    /* Any message stamps last_heard_ms (on_dealer): nothing more to do. */
    (void)e;
    (void)env;
}

typedef void (*body_handler)(engine *e, const Ferry__Envelope *env);

/* What the broker may send on the engines socket; anything else is dropped. */
static const body_handler handlers[] = {
    [FERRY__ENVELOPE__BODY_SUBMIT] = on_submit,
    [FERRY__ENVELOPE__BODY_REPLY] = on_reply,
    [FERRY__ENVELOPE__BODY_HEARTBEAT] = on_heartbeat,
    [FERRY__ENVELOPE__BODY_GOODBYE] = on_broker_goodbye,
};

/*
 * A message that does not decode. The broker routes Replies on their top
 * level alone, so a worker's Reply with malformed values reaches us whole:
 * when the peek finds a Reply, its call is answered `bad_message` rather than
 * left waiting for its deadline. Anything else is dropped.
 */
static void undecodable(engine *e, const void *data, size_t len)
{
    ferry_wire_call c;
    if (ferry_wire_peek_call(data, len, &c) != FERRY_OK || c.body != FERRY__ENVELOPE__BODY_REPLY) {
        drop(e, "undecodable");
        return;
    }
    Ferry__Error error = FERRY__ERROR__INIT;
    error.code = (char *)ferry_err_code(FERRY_EPROTO);
    error.message = "the reply to this call does not decode";
    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.engine_id.data = (uint8_t *)c.engine_id;
    reply.engine_id.len = c.engine_id_len;
    reply.call_id = c.call_id;
    reply.error = &error;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_REPLY;
    env.reply = &reply;
    drop(e, "undecodable_reply");
    on_reply(e, &env);
}

/* One envelope; in_batch: an item of a Batch, where only Replies may be
 * (protocol.md, Batches); each item is checked as a message of its own. */
static void handle_envelope(engine *e, const void *data, size_t len, int in_batch)
{
    Ferry__Envelope *env;
    ferry_err err = ferry_envelope_decode(data, len, &env);
    if (err == FERRY_EPROTO) {
        undecodable(e, data, len);
        return;
    }
    if (err) {
        drop(e, err == FERRY_EVERSION ? "bad_version" : "out_of_memory");
        return;
    }
    size_t body = (size_t)env->body_case;
    if (body == FERRY__ENVELOPE__BODY_BATCH && !in_batch) {
        e->cur->broker_batches = 1; /* it takes ours too */
        for (size_t i = 0; env->batch && i < env->batch->n_items; i++)
            handle_envelope(e, env->batch->items[i].data, env->batch->items[i].len, 1);
    } else if (in_batch && body != FERRY__ENVELOPE__BODY_REPLY) {
        drop(e, "unexpected_body");
    } else if (body < sizeof handlers / sizeof handlers[0] && handlers[body]) {
        handlers[body](e, env);
    } else {
        drop(e, "unexpected_body");
    }
    ferry_envelope_free(env);
}

/*
 * Sends the Commands gathered for broker l during a turn of on_dealer as one
 * message.
 * When that fails each of their calls fails as a single Command's failed
 * send would have failed it (overloaded: no connection, or the queue is
 * full), resuming its script.
 */
static void flush_link(engine *e, engine_link *l)
{
    if (l->out.count == 0)
        return;
    ferry_err err = ferry_batch_send(&l->out, l->push, NULL, 0);
    if (err != FERRY_OK) {
        char msg[192];
        snprintf(msg, sizeof msg, "cannot send the call: %s",
                 err == FERRY_EOVERLOADED
                     ? "the broker is not connected or its command queue is full"
                     : ferry_err_desc(err));
        const uint8_t *p = l->out.body, *end = p + l->out.len, *data;
        size_t len;
        /* Nothing joins l->out now (not in a turn): resumed scripts send alone. */
        while (ferry_batch_next(&p, end, &data, &len) == 1) {
            ferry_wire_call w;
            engine_call *c = NULL;
            if (ferry_wire_peek_call(data, len, &w) == FERRY_OK)
                HASH_FIND(hh, e->calls, &w.call_id, sizeof w.call_id, c);
            if (!c)
                continue; /* its script ended meanwhile */
            engine_run *run = c->run;
            e->stats.calls_refused++;
            engine_script_answer a = {
                .code = ferry_err_code(FERRY_EOVERLOADED), .message = msg, .tag = c->tag};
            forget_call(e, c);
            step(e, run, engine_script_resume(run->s, &a));
        }
    }
    ferry_batch_clear(&l->out);
}

static void flush_commands(engine *e)
{
    for (size_t i = 0; i < e->nlinks; i++)
        flush_link(e, &e->links[i]);
}

static void handle(engine *e, ferry_frames *f)
{
    if (f->count != 1 || f->truncated) {
        drop(e, "frame_count");
        return;
    }
    handle_envelope(e, ferry_frame_data(f, 0), ferry_frame_size(f, 0), 0);
}

/* Slots for the k-th of n registered brokers: --slots split evenly, the
 * remainder to the first ones, so that together they never exceed it. */
static uint32_t share_of(const engine *e, size_t k, size_t n)
{
    if (e->draining || n == 0)
        return 0; /* a draining engine that registers again (a new broker) takes no scripts */
    size_t slots = (size_t)e->cfg.slots;
    return (uint32_t)(slots / n + (k < slots % n ? 1 : 0));
}

/* Hello{slots, running} to broker l; slots is its share. */
static ferry_err send_hello(engine *e, engine_link *l, uint32_t slots)
{
    Ferry__Hello hello = FERRY__HELLO__INIT;
    hello.slots = slots;
    hello.running = (uint32_t)l->running;
    hello.batches = 1; /* we take Replies in a Batch */
    l->broker_batches = 0; /* a new session: its broker has to show it takes them */
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    size_t size;
    ferry_err err = send_bounded(e, l->dealer, &env, &size);
    if (err == FERRY_OK) {
        if (!l->hello_sent) {
            /* The broker gets a whole liveness period to show it is there. */
            l->last_heard_ms = ferry_now_ms();
            ferry_loop_set_socket(e->loop, l->dealer, ZMQ_POLLIN);
            ferry_loop_set_socket(e->loop, l->push, 0);
        }
        l->hello_sent = 1;
        l->slots = slots;
        l->last_sent_ms = ferry_now_ms();
        ferry_info("hello_sent", "id=%s broker=%u slots=%u running=%zu", l->id, l->index, slots,
                   l->running);
    } else if (err != FERRY_EOVERLOADED) {
        ferry_warn("hello_failed", "broker=%u error=%s", l->index, ferry_err_code(err));
    }
    return err;
}

/*
 * The set of registered brokers changed (fresh, when set, is ready to
 * register): every one whose share of the slots differs from what it was
 * told, and fresh, gets a Hello with its share. The shares of those told
 * less go out first, so that the brokers' sum never exceeds --slots.
 */
static void rebalance(engine *e, engine_link *fresh)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nlinks; i++)
        n += (e->links[i].hello_sent && !e->links[i].leaving) || &e->links[i] == fresh;
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;
        for (size_t i = 0; i < e->nlinks; i++) {
            engine_link *l = &e->links[i];
            if ((!l->hello_sent || l->leaving) && l != fresh)
                continue;
            uint32_t want = share_of(e, k++, n);
            int shrink = l->hello_sent && want < l->slots;
            if (pass == 0 ? !shrink : shrink || (l->hello_sent && want == l->slots))
                continue;
            if (send_hello(e, l, want) != FERRY_OK && l == fresh) {
                /* Not registered after all (the next POLLOUT or tick tries
                 * again): the others get back what they gave up for it. */
                rebalance(e, NULL);
                return;
            }
        }
    }
}

/*
 * Hello goes out only once both connections are up (with ZMQ_IMMEDIATE,
 * POLLOUT means connected), so the broker never hands this engine a script
 * whose calls cannot leave yet. After a connection dropped, POLLOUT may
 * still hold for a moment on the dying pipe: Hello waits for the monitor to
 * report the new connection.
 */
static void maybe_hello(engine_link *l)
{
    engine *e = l->e;
    zmq_pollitem_t items[2] = {{.socket = l->dealer, .events = ZMQ_POLLOUT},
                               {.socket = l->push, .events = ZMQ_POLLOUT}};
    if (l->retired || l->hello_sent || l->dealer_down || l->push_down ||
        zmq_poll(items, 2, 0) < 0)
        return;
    int dealer_up = (items[0].revents & ZMQ_POLLOUT) != 0;
    int push_up = (items[1].revents & ZMQ_POLLOUT) != 0;
    if (dealer_up && push_up) {
        rebalance(e, l);
        return;
    }
    /* Watch only the connection still missing: the poll is level-triggered,
     * so a POLLOUT that already holds would wake the loop without end. */
    ferry_loop_set_socket(e->loop, l->dealer, ZMQ_POLLIN | (dealer_up ? 0 : ZMQ_POLLOUT));
    ferry_loop_set_socket(e->loop, l->push, push_up ? 0 : ZMQ_POLLOUT);
}

/*
 * Broker l is gone or unresponsive: answer every call in flight through it
 * `broker_lost` (their Replies cannot be relied on any more; one that still
 * comes is dropped as late), send no new calls through it until Hello went
 * out again, and wait for both connections to send it. The other brokers
 * get its share of the slots.
 */
static void broker_lost(engine_link *l, const char *why)
{
    engine *e = l->e;
    l->hello_sent = 0; /* first: scripts resumed below send new calls elsewhere */
    l->leaving = 0;    /* whoever comes next at its endpoints is a new broker */
    e->stats.broker_losses++;
    ferry_loop_set_socket(e->loop, l->dealer, ZMQ_POLLIN | ZMQ_POLLOUT);
    ferry_loop_set_socket(e->loop, l->push, ZMQ_POLLOUT);
    size_t failed = 0;
    int64_t silent = ferry_now_ms() - l->last_heard_ms;
    /* Resuming a script may end it (and forget its other calls) and may add
     * calls, but never through l: the head of its list is always a call
     * still owed. */
    while (l->calls) {
        engine_call *c = l->calls;
        engine_run *run = c->run;
        char msg[192];
        snprintf(msg, sizeof msg, "the broker was lost (%s) while the call to '%s' was in flight",
                 why, c->function);
        engine_script_answer a = {
            .code = ferry_err_code(FERRY_EBROKER_LOST), .message = msg, .tag = c->tag};
        engine_metrics_call_done(&e->metrics, c->sent_us, FERRY_EBROKER_LOST);
        forget_call(e, c);
        e->stats.calls_broker_lost++;
        failed++;
        step(e, run, engine_script_resume(run->s, &a));
    }
    ferry_warn("broker_lost", "broker=%u reason=%s silent_ms=%lld calls_failed=%zu running=%zu",
               l->index, why, (long long)silent, failed, e->running);
    rebalance(e, NULL);
}

static void send_heartbeat(engine *e, engine_link *l)
{
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    size_t size;
    if (send_bounded(e, l->dealer, &env, &size) == FERRY_OK)
        l->last_sent_ms = ferry_now_ms();
}

/*
 * engine_script_host.tick: called by a script that holds the thread for long
 * (at most every 100 ms), so that a long computation does not make the
 * brokers declare this engine lost.
 */
static void host_tick(void *ctx)
{
    engine *e = ctx;
    if (e->cfg.heartbeat_ms <= 0)
        return;
    int64_t now = ferry_now_ms();
    for (size_t i = 0; i < e->nlinks; i++) {
        engine_link *l = &e->links[i];
        if (l->hello_sent && now - l->last_sent_ms >= e->cfg.heartbeat_ms)
            send_heartbeat(e, l);
    }
}

/* True when the broker's messages wait unread (the loop was held up by a script). */
static int dealer_has_input(engine_link *l)
{
    int events = 0;
    size_t len = sizeof events;
    return zmq_getsockopt(l->dealer, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/*
 * The broker stopped answering while our connections looked up: its route
 * to our routing id may be gone, or held by another connection under the
 * same id (a ROUTER without handover keeps the first one). Come back on a
 * new connection under a new id: to the broker, a new engine. Hello goes
 * once the monitor reports the new connection.
 */
static void new_identity(engine_link *l)
{
    char old[sizeof l->id];
    memcpy(old, l->id, sizeof old);
    ferry_make_id("engine", l->id, sizeof l->id);
    l->id_len = strlen(l->id);
    if (zmq_disconnect(l->dealer, l->engines) != 0 ||
        zmq_setsockopt(l->dealer, ZMQ_ROUTING_ID, l->id, l->id_len) != 0 ||
        zmq_connect(l->dealer, l->engines) != 0) {
        ferry_error("new_identity_failed", "broker=%u error=\"%s\"", l->index,
                    zmq_strerror(zmq_errno()));
        return;
    }
    l->dealer_down = 1;
    l->down_ms = ferry_now_ms();
    ferry_warn("new_identity", "broker=%u old=%s id=%s", l->index, old, l->id);
}

/* Twice per heartbeat interval, for each broker: its liveness, our
 * heartbeat, a Hello that is still owed (in case no POLLOUT woke us for it). */
static void on_tick(ferry_timer *timer, void *arg)
{
    engine *e = arg;
    int64_t now = ferry_now_ms();
    int64_t interval = e->cfg.heartbeat_ms;
    for (size_t i = 0; i < e->nlinks; i++) {
        engine_link *l = &e->links[i];
        if (l->retired)
            continue;
        if (l->hello_sent && now - l->last_heard_ms > interval * e->cfg.liveness &&
            !dealer_has_input(l)) {
            broker_lost(l, "silent");
            new_identity(l);
        }
        if ((l->dealer_down || l->push_down) && now - l->down_ms > interval * e->cfg.liveness) {
            /* No word of a new connection: trust POLLOUT alone from now on. */
            ferry_warn("reconnect_unseen", "broker=%u dealer_down=%d push_down=%d", l->index,
                       l->dealer_down, l->push_down);
            l->dealer_down = l->push_down = 0;
        }
        if (!l->hello_sent)
            maybe_hello(l);
        /* Checked every half interval: the broker hears from us at least every 1.5. */
        else if (now - l->last_sent_ms >= interval)
            send_heartbeat(e, l);
    }
    (void)ferry_loop_timer(e->loop, timer, interval / 2 > 0 ? interval / 2 : 1);
}

/* A connection event of one socket of broker l (down points at its flag). A
 * dropped connection loses that broker at once: Replies to our calls cannot
 * come over it, and Commands still queued on it are gone. */
static void connection_event(engine_link *l, uint16_t event, int *down, const char *which)
{
    engine *e = l->e;
    if (event == ZMQ_EVENT_DISCONNECTED) {
        *down = 1;
        l->down_ms = ferry_now_ms();
        ferry_info("broker_disconnected", "broker=%u socket=%s hello_sent=%d", l->index, which,
                   l->hello_sent);
        if (l->hello_sent)
            broker_lost(l, "disconnected");
    } else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        ferry_info("broker_connected", "broker=%u socket=%s hello_sent=%d", l->index, which,
                   l->hello_sent);
        *down = 0;
        maybe_hello(l);
    } else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
               event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
               (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && l->curve.on)) {
        /* libzmq tries again by itself: said once in a while, not each time. */
        ferry_log_limited(&l->auth_log_ms, &l->auth_log_n, FERRY_LOG_ERROR, "broker_refused",
                          "broker=%u socket=%s reason=\"%s\"", l->index, which,
                          event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                              ? "our key is not on the broker's allow-list"
                              : "handshake failed: check --curve-key and --broker-key");
    }
    (void)e;
}

static void on_monitor(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    engine_link *l = arg;
    uint16_t event;
    while (ferry_monitor_recv(l->dealer_mon, &event) == FERRY_OK)
        connection_event(l, event, &l->dealer_down, "engines");
    while (ferry_monitor_recv(l->push_mon, &event) == FERRY_OK)
        connection_event(l, event, &l->push_down, "commands");
}

static void on_push(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    maybe_hello(arg);
}

static void on_dealer(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    engine_link *l = arg;
    engine *e = l->e;
    if ((revents & ZMQ_POLLOUT) && !l->hello_sent)
        maybe_hello(l);
    if (!(revents & ZMQ_POLLIN))
        return;
    /* Commands made during this turn go together at its end (flush_commands). */
    e->in_turn = 1;
    for (int i = 0; i < RECV_BATCH; i++) {
        ferry_frames f;
        ferry_err err = ferry_frames_recv(l->dealer, &f);
        if (err == FERRY_ETIMEOUT)
            break;
        if (err) {
            if (zmq_errno() != EINTR) /* a signal: the loop handles it next */
                ferry_warn("recv_failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        /* Any traffic from the broker shows it is alive. (Not the loop's
         * cached clock: a long script run may have made it stale.) */
        l->last_heard_ms = ferry_now_ms();
        e->cur = l;
        handle(e, &f);
        ferry_frames_close(&f);
    }
    e->in_turn = 0;
    flush_commands(e);
}

/* 62 random bits from the kernel (the clock when it has none): far from 0 and
 * from wrapping. */
static uint64_t random_call_base(void)
{
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r)
        r = (uint64_t)ferry_now_ms() * 0x9E3779B97F4A7C15ull;
    if (fd >= 0)
        close(fd);
    return (r >> 2) | 1;
}

/* Opens the sockets of broker l (its endpoints and curve set) and watches them. */
static ferry_err link_open(engine *e, engine_link *l, void *zctx, char *err, size_t errlen)
{
    ferry_batch_init(&l->out, e->cfg.max_msg);
    l->broker_batches = 0;
    ferry_make_id("engine", l->id, sizeof l->id);
    l->id_len = strlen(l->id);
    /* The Commands queue holds every call the engine lets be in flight
     * (--calls-max; their bytes are bounded by --inflight-bytes): one
     * script's ferry.all of 10,000 calls must not leave another script's
     * next call without room while the broker catches up. */
    long push_hwm = e->cfg.calls_max > e->cfg.hwm ? e->cfg.calls_max : e->cfg.hwm;
    ferry_socket_opts push = {.type = ZMQ_PUSH,
                              .endpoint = l->commands,
                              .max_msg = e->cfg.max_msg,
                              .hwm = push_hwm < INT_MAX ? (int)push_hwm : INT_MAX,
                              .linger_ms = 0,
                              .curve = &l->curve};
    l->push = ferry_socket_open(zctx, &push, err, errlen);
    if (!l->push)
        return FERRY_EIO;
    /* A little linger lets the engine_lost results of a shutdown reach the broker. */
    ferry_socket_opts dealer = {.type = ZMQ_DEALER,
                                .endpoint = l->engines,
                                .routing_id = l->id,
                                .max_msg = e->cfg.max_msg,
                                .hwm = (int)e->cfg.hwm,
                                .linger_ms = 500,
                                .curve = &l->curve};
    l->dealer = ferry_socket_open(zctx, &dealer, err, errlen);
    if (!l->dealer)
        return FERRY_EIO;
    /* The failures: a key the broker refused, a mechanism mismatch, or (no
     * detail) a HELLO the broker could not open: sealed for another key. */
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    l->dealer_mon = ferry_monitor_open(zctx, l->dealer, events, err, errlen);
    if (!l->dealer_mon)
        return FERRY_EIO;
    l->push_mon = ferry_monitor_open(zctx, l->push, events, err, errlen);
    if (!l->push_mon)
        return FERRY_EIO;
    /* POLLOUT tells when the broker connection is up (ZMQ_IMMEDIATE): then Hello. */
    if (ferry_loop_add_socket(e->loop, l->dealer, ZMQ_POLLIN | ZMQ_POLLOUT, on_dealer, l) !=
            FERRY_OK ||
        ferry_loop_add_socket(e->loop, l->push, ZMQ_POLLOUT, on_push, l) != FERRY_OK ||
        ferry_loop_add_quiet_socket(e->loop, l->dealer_mon, on_monitor, l) != FERRY_OK ||
        ferry_loop_add_quiet_socket(e->loop, l->push_mon, on_monitor, l) != FERRY_OK) {
        snprintf(err, errlen, "too many sockets in the loop");
        return FERRY_EIO;
    }
    return FERRY_OK;
}

/* Closes what link_open opened (any part of it). */
static void link_close(engine *e, engine_link *l)
{
    ferry_loop_remove_socket(e->loop, l->dealer);
    ferry_loop_remove_socket(e->loop, l->push);
    ferry_loop_remove_socket(e->loop, l->dealer_mon);
    ferry_loop_remove_socket(e->loop, l->push_mon);
    ferry_monitor_close(l->dealer, &l->dealer_mon);
    ferry_monitor_close(l->push, &l->push_mon);
    ferry_socket_close(&l->dealer);
    ferry_socket_close(&l->push);
    ferry_batch_fini(&l->out);
}

/* --discover found a broker at addr: a link to it, in a free or reusable slot. */
static void discover_add(engine *e, const char *addr)
{
    engine_link *l = NULL;
    for (size_t i = 0; i < e->nlinks && !l; i++)
        if (e->links[i].retired && e->links[i].running == 0 && !e->links[i].calls)
            l = &e->links[i];
    if (l)
        link_close(e, l);
    else if (e->nlinks < FERRY_BROKERS_MAX)
        l = &e->links[e->nlinks++];
    else {
        ferry_warn("discover_full", "addr=%s brokers=%d", addr, FERRY_BROKERS_MAX);
        return;
    }
    unsigned index = (unsigned)(l - e->links);
    memset(l, 0, sizeof *l);
    l->e = e;
    l->index = index;
    l->curve = e->cfg.curve;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    char err[256];
    if (ferry_discover_endpoint(addr, e->cfg.commands, l->commands_ep, sizeof l->commands_ep) !=
            FERRY_OK ||
        ferry_discover_endpoint(addr, e->cfg.engines, l->engines_ep, sizeof l->engines_ep) !=
            FERRY_OK) {
        ferry_error("discover_failed", "addr=%s reason=\"no port in --commands or --engines\"",
                    addr);
        l->retired = 1;
        return;
    }
    l->commands = l->commands_ep;
    l->engines = l->engines_ep;
    if (link_open(e, l, e->zctx, err, sizeof err) != FERRY_OK) {
        ferry_error("discover_failed", "addr=%s reason=\"%s\"", addr, err);
        link_close(e, l);
        l->retired = 1;
        return;
    }
    ferry_info("broker_discovered", "broker=%u addr=%s commands=%s engines=%s", l->index, addr,
               l->commands, l->engines);
}

/* --discover: the broker at l's address is gone from the name. Its calls end
 * broker_lost; its scripts run on (their Results go nowhere). */
static void discover_drop(engine *e, engine_link *l)
{
    ferry_info("broker_undiscovered", "broker=%u addr=%s running=%zu", l->index, l->addr,
               l->running);
    l->retired = 1;
    if (l->hello_sent)
        broker_lost(l, "gone from discovery");
    (void)zmq_disconnect(l->push, l->commands);
    (void)zmq_disconnect(l->dealer, l->engines);
    ferry_loop_set_socket(e->loop, l->dealer, ZMQ_POLLIN);
    ferry_loop_set_socket(e->loop, l->push, 0);
}

static void discover_now(engine *e)
{
    ferry_addrs now;
    (void)ferry_discover_resolve(e->cfg.discover, &now);
    for (size_t i = 0; i < e->nlinks; i++) {
        engine_link *l = &e->links[i];
        if (!l->retired && !ferry_addrs_has(&now, l->addr))
            discover_drop(e, l);
    }
    for (size_t k = 0; k < now.n; k++) {
        int known = 0;
        for (size_t i = 0; i < e->nlinks && !known; i++)
            known = !e->links[i].retired && strcmp(e->links[i].addr, now.addr[k]) == 0;
        if (!known)
            discover_add(e, now.addr[k]);
    }
}

static void on_discover(ferry_timer *timer, void *arg)
{
    engine *e = arg;
    discover_now(e);
    (void)ferry_loop_timer(e->loop, timer, e->cfg.discover_ms);
}

ferry_err engine_new(const engine_config *cfg, void *zctx, ferry_loop *loop, engine **out,
                     char *err, size_t errlen)
{
    assert(cfg && zctx && loop && out);
    *out = NULL;
    engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return FERRY_ENOMEM;
    }
    e->cfg = *cfg;
    e->cfg.curves = NULL;
    if (e->cfg.max_msg <= 0)
        e->cfg.max_msg = FERRY_DEFAULT_MAX_MSG;
    if (e->cfg.inflight_bytes <= 0)
        e->cfg.inflight_bytes = ENGINE_DEFAULT_INFLIGHT_BYTES;
    assert(e->cfg.max_msg >= ENGINE_MIN_MAX_MSG);
    e->loop = loop;
    e->host =
        (engine_script_host){.call = host_call, .tick = host_tick, .room = host_room, .ctx = e};
    e->zctx = zctx;
    if (e->cfg.discover_ms <= 0)
        e->cfg.discover_ms = ferry_discover_interval_ms();
    ferry_timer_init(&e->discover, on_discover, e);
    ferry_err rc = FERRY_OK;
    if (cfg->discover) {
        /* Links come from the name; the endpoint flags give their ports. */
        char probe[FERRY_DISCOVER_ADDR_MAX + 32];
        if (ferry_discover_endpoint("x", cfg->commands, probe, sizeof probe) != FERRY_OK ||
            ferry_discover_endpoint("x", cfg->engines, probe, sizeof probe) != FERRY_OK) {
            snprintf(err, errlen, "--discover: --commands and --engines must end in a port");
            free(e);
            return FERRY_EUSAGE;
        }
        e->next_call_id = random_call_base();
        ferry_make_id("engine", e->id, sizeof e->id);
        discover_now(e);
        rc = ferry_loop_timer(loop, &e->discover, e->cfg.discover_ms);
        if (rc != FERRY_OK) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        goto opened;
    }
    rc = ferry_list_split(cfg->commands, "--commands", &e->commands, err, errlen);
    if (rc == FERRY_OK)
        rc = ferry_list_split(cfg->engines, "--engines", &e->engines, err, errlen);
    if (rc == FERRY_OK && e->commands.n != e->engines.n) {
        snprintf(err, errlen,
                 "--commands lists %zu brokers and --engines %zu: give each broker's two "
                 "endpoints at the same position",
                 e->commands.n, e->engines.n);
        rc = FERRY_EUSAGE;
    }
    if (rc != FERRY_OK)
        goto fail;
    e->nlinks = e->commands.n;
    /* Call ids start where nobody can guess: a Command forged under our id
     * must also guess a call id in flight. */
    e->next_call_id = random_call_base();
    rc = FERRY_EIO;
    for (size_t i = 0; i < e->nlinks; i++) {
        engine_link *l = &e->links[i];
        l->e = e;
        l->index = (unsigned)i;
        l->commands = e->commands.item[i];
        l->engines = e->engines.item[i];
        l->curve = cfg->curves ? cfg->curves[i] : cfg->curve;
        if (link_open(e, l, zctx, err, errlen) != FERRY_OK)
            goto fail;
    }
    memcpy(e->id, e->links[0].id, sizeof e->id);
opened:
    ferry_timer_init(&e->tick, on_tick, e);
    ferry_timer_init(&e->drain, on_drain_timeout, e);
    if (cfg->heartbeat_ms > 0 && ferry_loop_timer(loop, &e->tick, cfg->heartbeat_ms) != FERRY_OK) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    ferry_info("engine_started",
               "id=%s brokers=%zu commands=%s engines=%s discover=%s slots=%ld curve=%s", e->id,
               e->nlinks, cfg->commands, cfg->engines, cfg->discover ? cfg->discover : "",
               cfg->slots, cfg->curve.on ? cfg->curve.own.public_key : "off");
    *out = e;
    return FERRY_OK;
fail:
    ferry_timer_stop(&loop->timers, &e->discover);
    for (size_t i = 0; i < e->nlinks; i++)
        link_close(e, &e->links[i]);
    ferry_list_fini(&e->commands);
    ferry_list_fini(&e->engines);
    free(e);
    return rc;
}

void engine_destroy(engine **ep)
{
    engine *e = *ep;
    if (!e)
        return;
    engine_run *run, *tmp;
    DL_FOREACH_SAFE(e->runs, run, tmp) {
        forget_calls(e, run);
        engine_script_fail(run->s, FERRY_EENGINE_LOST, "the engine is shutting down");
        finish(e, run);
    }
    assert(!e->calls && e->running == 0);
    engine_metrics_fini(&e->metrics);
    ferry_timer_stop(&e->loop->timers, &e->tick);
    ferry_timer_stop(&e->loop->timers, &e->drain);
    ferry_timer_stop(&e->loop->timers, &e->discover);
    const engine_stats *st = &e->stats;
    ferry_info("engine_stopped",
               "id=%s scripts=%llu failed=%llu refused=%llu calls=%llu timed_out=%llu "
               "late_replies=%llu dropped=%llu results_lost=%llu calls_refused=%llu "
               "calls_broker_lost=%llu broker_losses=%llu oversize=%llu",
               e->id, (unsigned long long)st->scripts_completed,
               (unsigned long long)st->scripts_failed, (unsigned long long)st->scripts_refused,
               (unsigned long long)st->calls_sent, (unsigned long long)st->calls_timed_out,
               (unsigned long long)st->late_replies, (unsigned long long)st->dropped,
               (unsigned long long)st->results_lost, (unsigned long long)st->calls_refused,
               (unsigned long long)st->calls_broker_lost, (unsigned long long)st->broker_losses,
               (unsigned long long)st->oversize);
    for (size_t i = 0; i < e->nlinks; i++)
        link_close(e, &e->links[i]);
    ferry_list_fini(&e->commands);
    ferry_list_fini(&e->engines);
    free(e);
    *ep = NULL;
}

static void on_drain_timeout(ferry_timer *timer, void *arg)
{
    (void)timer;
    engine *e = arg;
    ferry_warn("drain_timeout", "id=%s running=%zu", e->id, e->running);
    ferry_loop_stop(e->loop);
}

void engine_drain(engine *e, int64_t drain_ms)
{
    if (e->draining) {
        ferry_info("drain_abandoned", "id=%s running=%zu", e->id, e->running);
        ferry_loop_stop(e->loop);
        return;
    }
    e->draining = 1;
    Ferry__Goodbye bye = FERRY__GOODBYE__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_GOODBYE;
    env.goodbye = &bye;
    ferry_err err = FERRY_OK;
    for (size_t i = 0; i < e->nlinks; i++) {
        size_t size;
        ferry_err one = send_bounded(e, e->links[i].dealer, &env, &size);
        if (one != FERRY_OK)
            err = one;
    }
    ferry_info("draining", "id=%s running=%zu goodbye=%s drain_ms=%lld", e->id, e->running,
               ferry_err_code(err), (long long)drain_ms);
    if (e->running == 0) {
        ferry_loop_stop(e->loop);
        return;
    }
    if (drain_ms <= 0 || ferry_loop_timer(e->loop, &e->drain, drain_ms) != FERRY_OK)
        ferry_loop_stop(e->loop);
}

/* metrics.h's view of e at a scrape. */
static void metrics_view(void *arg, engine_metrics_view *v)
{
    engine *e = arg;
    v->stats = &e->stats;
    v->running = e->running;
    v->slots = (size_t)e->cfg.slots;
    v->calls_in_flight = e->ncalls;
    v->inflight_bytes = e->inflight_bytes;
    v->connected = 0;
    for (size_t i = 0; i < e->nlinks; i++)
        v->connected += e->links[i].hello_sent != 0;
    for (engine_run *run = e->runs; run; run = run->next)
        v->lua_bytes += run->s->mem_used;
}

ferry_err engine_serve_metrics(engine *e, const char *hostport, char *err, size_t errlen)
{
    return engine_metrics_open(&e->metrics, e->loop, hostport, metrics_view, e, err, errlen);
}

const char *engine_id(const engine *e)
{
    return e->id;
}

const engine_stats *engine_get_stats(const engine *e)
{
    return &e->stats;
}

size_t engine_brokers(const engine *e)
{
    return e->nlinks;
}

size_t engine_brokers_live(const engine *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nlinks; i++)
        n += e->links[i].hello_sent != 0;
    return n;
}

size_t engine_running(const engine *e)
{
    return e->running;
}

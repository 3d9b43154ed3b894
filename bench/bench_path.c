/* bench_path: an engine without Lua (or a raw client) driving one socket path. */
#include "bench_path.h"

#include "bench_proc.h"
#include "bench_raw.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define PATH_HWM 100000 /* room for 10,000 calls sent at once, on both paths alike */
#define HEARTBEAT_NS 1000000000LL
#define PROBE_WAIT_MS 100

int bench_path_open(bench_path *p, bench_path_kind kind, const char *commands, const char *replies,
                    int timeout_ms, char *err, size_t errlen)
{
    return bench_path_open_curve(p, kind, commands, replies, NULL, timeout_ms, err, errlen);
}

int bench_path_open_curve(bench_path *p, bench_path_kind kind, const char *commands,
                          const char *replies, const ferry_curve *curve, int timeout_ms, char *err,
                          size_t errlen)
{
    memset(p, 0, sizeof *p);
    ferry_batch_init(&p->out, 0);
    p->kind = kind;
    p->function = "echo";
    p->arg = 1;
    p->timeout_ms = 30000;
    ferry_make_id(kind == BENCH_PATH_RAW_CLIENT ? "bench-client" : "engine", p->id, sizeof p->id);
    p->id_len = strlen(p->id);
    p->ctx = zmq_ctx_new();
    if (!p->ctx) {
        snprintf(err, errlen, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (kind != BENCH_PATH_RAW_CLIENT) {
        ferry_socket_opts o = {
            .type = ZMQ_PUSH, .endpoint = commands, .hwm = PATH_HWM, .linger_ms = 0,
            .curve = curve};
        p->push = ferry_socket_open(p->ctx, &o, err, errlen);
        if (!p->push)
            goto fail;
    }
    ferry_socket_opts d = {.type = ZMQ_DEALER,
                           .endpoint = replies,
                           .routing_id = p->id,
                           .hwm = PATH_HWM,
                           .linger_ms = 0,
                           .curve = curve};
    p->dealer = ferry_socket_open(p->ctx, &d, err, errlen);
    if (!p->dealer)
        goto fail;

    /* ZMQ_IMMEDIATE (set on connecting sockets): POLLOUT means connected. */
    int64_t until = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        zmq_pollitem_t items[2] = {{.socket = p->dealer, .events = ZMQ_POLLOUT},
                                   {.socket = p->push, .events = ZMQ_POLLOUT}};
        int n = p->push ? 2 : 1;
        if (zmq_poll(items, n, 10) < 0 && zmq_errno() != EINTR) {
            snprintf(err, errlen, "poll: %s", zmq_strerror(zmq_errno()));
            goto fail;
        }
        if ((items[0].revents & ZMQ_POLLOUT) && (n == 1 || (items[1].revents & ZMQ_POLLOUT)))
            break;
        if (bench_now_ns() > until) {
            snprintf(err, errlen, "no connection to %s within %d ms", replies, timeout_ms);
            goto fail;
        }
    }
    if (kind == BENCH_PATH_FERRY) {
        /* An engine says Hello; with no slots the broker hands it no script. */
        Ferry__Hello hello = FERRY__HELLO__INIT;
        hello.batches = 1; /* as ferry-engine: Replies may come in a Batch */
        Ferry__Envelope env;
        ferry_envelope_init(&env);
        env.body_case = FERRY__ENVELOPE__BODY_HELLO;
        env.hello = &hello;
        ferry_err e = ferry_wire_send(p->dealer, NULL, 0, &env);
        if (e) {
            snprintf(err, errlen, "hello: %s", ferry_err_desc(e));
            goto fail;
        }
        p->last_heartbeat_ns = bench_now_ns();
    }
    p->raw_size = bench_raw_size(p->id_len, bench_path_command_size(p));
    return 0;
fail:
    bench_path_close(p);
    return -1;
}

void bench_path_close(bench_path *p)
{
    ferry_envelope_free(p->batch);
    p->batch = NULL;
    ferry_batch_fini(&p->out);
    ferry_socket_close(&p->push);
    ferry_socket_close(&p->dealer);
    if (p->ctx) {
        zmq_ctx_term(p->ctx);
        p->ctx = NULL;
    }
}

/* Fills cmd/env/value for call_id (pointers into the caller's structs). */
static void make_command(const bench_path *p, uint64_t call_id, Ferry__Envelope *env,
                         Ferry__Command *cmd, Ferry__Value *v, Ferry__Value **args)
{
    ferry__value__init(v);
    v->kind_case = FERRY__VALUE__KIND_INTEGER;
    v->integer = p->arg;
    args[0] = v;
    ferry__command__init(cmd);
    cmd->engine_id.data = (uint8_t *)p->id;
    cmd->engine_id.len = p->id_len;
    cmd->call_id = call_id;
    cmd->function = (char *)p->function;
    cmd->args = args;
    cmd->n_args = 1;
    cmd->timeout_ms = p->timeout_ms;
    ferry_envelope_init(env);
    env->body_case = FERRY__ENVELOPE__BODY_COMMAND;
    env->command = cmd;
}

size_t bench_path_command_size(const bench_path *p)
{
    Ferry__Envelope env;
    Ferry__Command cmd;
    Ferry__Value v, *args[1];
    /* A call id of the size the measurements use (a few thousand to a million). */
    make_command(p, 100000, &env, &cmd, &v, args);
    return ferry__envelope__get_packed_size(&env);
}

/* Sends the Commands gathered in p->out. FERRY_EOVERLOADED keeps them for
 * the next try. */
static ferry_err flush_commands(bench_path *p)
{
    ferry_err err = ferry_batch_send(&p->out, p->push, NULL, 0);
    if (err != FERRY_EOVERLOADED)
        ferry_batch_clear(&p->out);
    return err;
}

ferry_err bench_path_send(bench_path *p, uint64_t call_id)
{
    if (p->kind == BENCH_PATH_FERRY) {
        Ferry__Envelope env;
        Ferry__Command cmd;
        Ferry__Value v, *args[1];
        make_command(p, call_id, &env, &cmd, &v, args);
        size_t size = ferry_envelope_packed_size(&env);
        ferry_err err;
        if (!p->broker_batches || !ferry_batch_fits(&p->out, size)) {
            if (p->out.count && (err = flush_commands(p)) != FERRY_OK)
                return err; /* in order: what waits goes first */
            return ferry_wire_send_sized(p->push, NULL, 0, &env, size);
        }
        uint8_t *at = ferry_batch_add(&p->out, size, &err);
        if (!at && err == FERRY_OK) {
            if ((err = flush_commands(p)) != FERRY_OK)
                return err;
            at = ferry_batch_add(&p->out, size, &err);
        }
        if (!at)
            return err ? err : FERRY_ENOMEM;
        ferry_envelope_pack_sized(&env, size, at);
        return FERRY_OK;
    }
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, p->raw_size) != 0)
        return FERRY_ENOMEM;
    bench_raw_write(zmq_msg_data(&m), p->raw_size, p->id, p->id_len, call_id);
    void *out = p->kind == BENCH_PATH_RAW ? p->push : p->dealer;
    if (zmq_msg_send(&m, out, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&m);
        return e == EAGAIN ? FERRY_EOVERLOADED : FERRY_EIO;
    }
    return FERRY_OK;
}

static void heartbeat(bench_path *p)
{
    int64_t now = bench_now_ns();
    if (now - p->last_heartbeat_ns < HEARTBEAT_NS)
        return;
    p->last_heartbeat_ns = now;
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    (void)ferry_wire_send(p->dealer, NULL, 0, &env);
}

static void count_error(bench_path *p, const char *code, const char *message)
{
    p->errors++;
    snprintf(p->last_error, sizeof p->last_error, "%s: %s", code, message);
}

/* Decodes a Reply frame: 1 with *call_id (errors counted), 0 when it is not a Reply for us.
 * A Batch (outside one) is kept in p->batch for its items to be read. */
static int check_reply(bench_path *p, const void *data, size_t len, uint64_t *call_id,
                       int in_batch)
{
    Ferry__Envelope *env = NULL;
    if (ferry_envelope_decode(data, len, &env) != FERRY_OK) {
        count_error(p, "bad_message", "reply does not decode");
        return 0;
    }
    if (env->body_case == FERRY__ENVELOPE__BODY_BATCH && !in_batch && env->batch && !p->batch) {
        p->broker_batches = 1;
        p->batch = env;
        p->batch_next = 0;
        return 0;
    }
    if (env->body_case != FERRY__ENVELOPE__BODY_REPLY || !env->reply) {
        ferry_envelope_free(env); /* a Heartbeat from the broker, or a stray Submit */
        return 0;
    }
    const Ferry__Reply *r = env->reply;
    *call_id = r->call_id;
    if (r->error)
        count_error(p, r->error->code ? r->error->code : "?",
                    r->error->message ? r->error->message : "");
    else if (r->engine_id.len != p->id_len || memcmp(r->engine_id.data, p->id, p->id_len) != 0)
        count_error(p, "bad_reply", "engine_id is not ours");
    else if (strcmp(p->function, "echo") == 0 &&
             (r->n_values != 1 || !r->values[0] ||
              r->values[0]->kind_case != FERRY__VALUE__KIND_INTEGER ||
              r->values[0]->integer != p->arg))
        count_error(p, "bad_reply", "echo did not return its argument");
    ferry_envelope_free(env);
    return 1;
}

int bench_path_recv(bench_path *p, int timeout_ms, uint64_t *call_id)
{
    int64_t until = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        if (p->kind == BENCH_PATH_FERRY) {
            /* The calls sent since the last receive go now, together. */
            ferry_err fe = p->out.count ? flush_commands(p) : FERRY_OK;
            if (fe != FERRY_OK && fe != FERRY_EOVERLOADED)
                return -1;
            /* An engine looks at its clock once per wakeup of its loop, not per
             * message: here before each wait, and every 1024 replies in a burst. */
            if ((++p->received & 1023) == 0)
                heartbeat(p);
            if (p->batch) {
                const Ferry__Batch *b = p->batch->batch;
                int got = 0;
                while (!got && p->batch_next < b->n_items) {
                    const ProtobufCBinaryData *item = &b->items[p->batch_next++];
                    got = check_reply(p, item->data, item->len, call_id, 1);
                }
                if (p->batch_next >= b->n_items) {
                    ferry_envelope_free(p->batch);
                    p->batch = NULL;
                }
                if (got)
                    return 1;
                continue;
            }
            ferry_frames f;
            ferry_err e = ferry_frames_recv(p->dealer, &f);
            if (e == FERRY_OK) {
                int got = f.count == 1 && !f.truncated &&
                          check_reply(p, ferry_frame_data(&f, 0), ferry_frame_size(&f, 0), call_id, 0);
                ferry_frames_close(&f);
                if (got)
                    return 1;
                continue;
            }
            if (e != FERRY_ETIMEOUT)
                return -1;
        } else {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, p->dealer, ZMQ_DONTWAIT) >= 0) {
                const uint8_t *id;
                size_t id_len;
                int ok = !zmq_msg_more(&m) &&
                         bench_raw_read(zmq_msg_data(&m), zmq_msg_size(&m), &id, &id_len, call_id);
                zmq_msg_close(&m);
                if (ok)
                    return 1;
                count_error(p, "bad_message", "raw answer does not fit");
                continue;
            }
            zmq_msg_close(&m);
            if (zmq_errno() != EAGAIN)
                return -1;
        }
        int64_t left_ms = (until - bench_now_ns()) / 1000000;
        if (timeout_ms == 0 || left_ms < 0)
            return 0;
        if (p->kind == BENCH_PATH_FERRY)
            heartbeat(p);
        zmq_pollitem_t item = {.socket = p->dealer, .events = ZMQ_POLLIN};
        /* Ferry mode wakes once a second at least, for the heartbeat. */
        long wait = p->kind == BENCH_PATH_FERRY && left_ms > 1000 ? 1000 : (long)left_ms + 1;
        if (zmq_poll(&item, 1, wait) < 0 && zmq_errno() != EINTR)
            return -1;
    }
}

int bench_path_probe(bench_path *p, int timeout_ms)
{
    int64_t until = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    uint64_t errors = p->errors;
    for (uint64_t k = 0; bench_now_ns() < until; k++) {
        uint64_t id = BENCH_PROBE_BIT | k, got;
        if (bench_path_send(p, id) != FERRY_OK)
            return -1;
        int64_t wait_until = bench_now_ns() + PROBE_WAIT_MS * 1000000LL;
        for (;;) {
            int left = (int)((wait_until - bench_now_ns()) / 1000000);
            if (left < 0 || bench_path_recv(p, left, &got) != 1)
                break;
            if (got == id && p->errors == errors)
                return 0;
            errors = p->errors; /* e.g. no_worker before the worker registered */
        }
    }
    return -1;
}

/*
 * worker_dispatch: from a received frame to a running call, or a refusal.
 *
 * This is the boundary: nothing the broker (or anyone who reaches the
 * socket) sends may crash the worker. Frames that do not decode, carry the
 * wrong version or a body the workers socket does not carry are dropped and
 * counted. A Command that can be answered (it names an engine) always is: by
 * its handler, or here with `bad_message`, `no_worker` or `overloaded`.
 *
 * The broker routes Commands on their top-level fields only (ferry_wire_peek_call)
 * and forwards the rest unread, so a Command whose arguments are malformed
 * reaches us. Dropping it would leave the call holding our credit at the broker
 * until its backstop: such a Command is answered `bad_message` instead, from what
 * the same peek reads of it.
 */
#include "worker_internal.h"

#include "ferry_codec.h"
#include "ferry_log.h"
#include "ferry_wire.h"

static void drop(ferry_worker *w, worker_limit *lim, const char *event, const char *why)
{
    w->stats.dropped++;
    ferry_log_limited(&lim->last_ms, &lim->suppressed, FERRY_LOG_WARN, event, "why=\"%s\"", why);
}

/* Takes ownership of env. */
static void on_command(ferry_worker *w, Ferry__Envelope *env)
{
    const Ferry__Command *cmd = env->command;
    if (!cmd) {
        drop(w, &w->lim_command, "bad_command", "command body missing");
        goto refused;
    }
    /* Without an engine there is nobody to answer: the broker could not route it. */
    if (cmd->engine_id.len == 0 || !cmd->engine_id.data) {
        drop(w, &w->lim_command, "bad_command", "empty engine_id");
        goto refused;
    }
    if (cmd->engine_id.len > FERRY_ROUTING_ID_MAX) {
        drop(w, &w->lim_command, "bad_command", "engine_id longer than 255 bytes");
        goto refused;
    }
    if (!cmd->function || !*cmd->function) {
        worker_send_error(w, cmd->engine_id, cmd->call_id, ferry_err_code(FERRY_EPROTO),
                          "command without a function name");
        goto refused;
    }
    worker_function *fn = worker_function_find(w, cmd->function);
    if (!fn) {
        worker_send_error(w, cmd->engine_id, cmd->call_id, ferry_err_code(FERRY_ENO_WORKER),
                          "worker %s does not serve '%s'", w->id, cmd->function);
        goto refused;
    }
    /* The broker keeps within our credit; this guards against one that does not,
     * and against the calls a restarted broker sends on top of ours still running. */
    if (w->stats.in_flight >= w->concurrency) {
        worker_send_error(w, cmd->engine_id, cmd->call_id, ferry_err_code(FERRY_EOVERLOADED),
                          "worker %s runs %u calls, its limit", w->id, w->concurrency);
        goto refused;
    }
    worker_call_start(w, fn, env);
    return;
refused:
    ferry_envelope_free(env);
}

/* A frame that does not decode: answers it when its top level is a Command
 * that names an engine (its nested values are what failed), else drops it. */
static void on_undecodable(ferry_worker *w, const void *data, size_t len, ferry_err err)
{
    ferry_wire_call c;
    if (err == FERRY_EVERSION || ferry_wire_peek_call(data, len, &c) != FERRY_OK ||
        c.body != FERRY__ENVELOPE__BODY_COMMAND || c.engine_id_len == 0 ||
        c.engine_id_len > FERRY_ROUTING_ID_MAX) {
        drop(w, &w->lim_message, err == FERRY_EVERSION ? "bad_version" : "bad_message",
             err == FERRY_EVERSION ? "protocol version mismatch" : "envelope does not decode");
        return;
    }
    ProtobufCBinaryData engine = {.len = c.engine_id_len, .data = (uint8_t *)c.engine_id};
    /* Not NUL-terminated, and only framed: bounded, and scrubbed by worker_send_error. */
    int flen = c.function_len > FERRY_ROUTING_ID_MAX ? FERRY_ROUTING_ID_MAX : (int)c.function_len;
    const char *fn = c.function ? c.function : "";
    if (err == FERRY_ENOMEM) {
        drop(w, &w->lim_message, "out_of_memory", "command not decoded: answered");
        worker_send_error(w, engine, c.call_id, ferry_err_code(FERRY_ENOMEM),
                          "worker %s ran out of memory decoding the command for '%.*s'", w->id,
                          flen, fn);
        return;
    }
    drop(w, &w->lim_message, "bad_message", "command does not decode: answered");
    worker_send_error(w, engine, c.call_id, ferry_err_code(FERRY_EPROTO),
                      "the command for '%.*s' does not decode at worker %s (malformed arguments)",
                      flen, fn, w->id);
}

static void dispatch(ferry_worker *w, const void *data, size_t len, int in_batch);

/* A Batch from the broker: each item is handled as a message of its own
 * (a bad one dropped and counted, the others go on); only Commands may be
 * items. The broker takes our Replies in batches from now on. */
static void on_batch(ferry_worker *w, const Ferry__Batch *batch)
{
    w->in->broker_batches = 1; /* the broker it came from */
    for (size_t i = 0; batch && i < batch->n_items; i++)
        dispatch(w, batch->items[i].data, batch->items[i].len, 1);
}

void worker_dispatch_frame(ferry_worker *w, const void *data, size_t len)
{
    dispatch(w, data, len, 0);
}

static void dispatch(ferry_worker *w, const void *data, size_t len, int in_batch)
{
    Ferry__Envelope *env = NULL;
    ferry_err err = ferry_envelope_decode(data, len, &env);
    if (err != FERRY_OK) {
        on_undecodable(w, data, len, err);
        return;
    }
    if (in_batch && env->body_case != FERRY__ENVELOPE__BODY_COMMAND) {
        drop(w, &w->lim_message, "unexpected_message", "only Commands go in a Batch");
        ferry_envelope_free(env);
        return;
    }
    switch (env->body_case) {
    case FERRY__ENVELOPE__BODY_COMMAND:
        on_command(w, env);
        return;
    case FERRY__ENVELOPE__BODY_BATCH:
        on_batch(w, env->batch);
        break;
    case FERRY__ENVELOPE__BODY_HEARTBEAT:
        /* Liveness of the broker is left to libzmq's reconnection and the monitor. */
        break;
    default:
        drop(w, &w->lim_message, "unexpected_message", "body not carried to workers");
        break;
    }
    ferry_envelope_free(env);
}

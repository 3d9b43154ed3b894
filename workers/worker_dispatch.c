/*
 * worker_dispatch: from a received frame to a running call, or a refusal.
 *
 * This is the boundary: nothing the broker (or anyone who reaches the
 * socket) sends may crash the worker. Frames that do not decode, carry the
 * wrong version or a body the workers socket does not carry are dropped and
 * counted. A Command that can be answered (it names an engine) always is: by
 * its handler, or here with `bad_message`, `no_worker` or `overloaded`.
 */
#include "worker_internal.h"

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

void worker_dispatch_frame(ferry_worker *w, const void *data, size_t len)
{
    Ferry__Envelope *env = NULL;
    ferry_err err = ferry_envelope_decode(data, len, &env);
    if (err != FERRY_OK) {
        drop(w, &w->lim_message, err == FERRY_EVERSION ? "bad_version" : "bad_message",
             err == FERRY_EVERSION ? "protocol version mismatch" : "envelope does not decode");
        return;
    }
    switch (env->body_case) {
    case FERRY__ENVELOPE__BODY_COMMAND:
        on_command(w, env);
        return;
    case FERRY__ENVELOPE__BODY_HEARTBEAT:
        /* Liveness of the broker is left to libzmq's reconnection and the monitor. */
        break;
    default:
        drop(w, &w->lim_message, "unexpected_message", "body not carried to workers");
        break;
    }
    ferry_envelope_free(env);
}

/*
 * client.c: the client library behind include/ferry/client.h.
 *
 * A DEALER socket with ZMQ_IMMEDIATE, so a submission waits (up to the
 * connect timeout) for a live connection to the broker instead of queueing
 * towards nobody; results are matched to submissions by request id.
 *
 * A connection that drops loses every pending result: the DEALER comes back
 * under a new routing id, and a restarted broker knows nothing of what was
 * submitted before. So a monitor watches for disconnection, and a wait
 * fails with FERRY_EBROKER_LOST at once instead of at the deadline.
 *
 * With CURVE keys the monitor also reports a refused handshake (the broker's
 * ZAP handler said no, or the keys do not match): submissions and waits
 * fail with FERRY_EAUTH at once instead of waiting for a connection that
 * will never come.
 */
#include "ferry/client.h"

#include "ferry_cert.h"
#include "ferry_clock.h"
#include "ferry_wire.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct ferry_client {
    void *ctx;
    void *socket;
    void *monitor; /* connection events of socket */
    int refused;   /* the last handshake was refused, none succeeded since */
    ferry_curve curve;
    uint64_t next_request;
    int connect_timeout_ms;
    ferry_limits limits; /* asked for by every submission */
    char *endpoint;      /* the broker's clients endpoint, to open the socket again */
    int64_t max_msg;     /* largest message sent or taken (ZMQ_MAXMSGSIZE) */
};

/* Opens c->socket and c->monitor on c->endpoint with c->max_msg. */
static int open_socket(ferry_client *c, char *err, size_t errlen)
{
    ferry_socket_opts o = {.type = ZMQ_DEALER,
                           .endpoint = c->endpoint,
                           .linger_ms = 0,
                           .curve = &c->curve,
                           .max_msg = c->max_msg};
    int events = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    c->socket = ferry_socket_open(c->ctx, &o, err, errlen);
    if (c->socket)
        c->monitor = ferry_monitor_open(c->ctx, c->socket, events, err, errlen);
    if (!c->monitor) {
        ferry_socket_close(&c->socket);
        return -1;
    }
    return 0;
}

ferry_client *ferry_client_new(const char *endpoint, char *err, size_t errlen)
{
    return ferry_client_new_curve(endpoint, NULL, NULL, err, errlen);
}

ferry_client *ferry_client_new_curve(const char *endpoint, const char *curve_key,
                                     const char *broker_key, char *err, size_t errlen)
{
    ferry_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (ferry_curve_client(&c->curve, curve_key, broker_key, err, errlen) != FERRY_OK) {
        free(c);
        return NULL;
    }
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        snprintf(err, errlen, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        free(c);
        return NULL;
    }
    c->endpoint = strdup(endpoint);
    c->max_msg = FERRY_DEFAULT_MAX_MSG;
    if (!c->endpoint)
        snprintf(err, errlen, "out of memory");
    if (!c->endpoint || open_socket(c, err, errlen) != 0) {
        zmq_ctx_term(c->ctx);
        free(c->endpoint);
        free(c);
        return NULL;
    }
    /* Request ids only need to be unique on this socket; start away from 0. */
    c->next_request = 1;
    c->connect_timeout_ms = 3000;
    return c;
}

void ferry_client_destroy(ferry_client **pc)
{
    ferry_client *c = *pc;
    if (!c)
        return;
    ferry_monitor_close(c->socket, &c->monitor);
    ferry_socket_close(&c->socket);
    zmq_ctx_term(c->ctx);
    free(c->endpoint);
    free(c);
    *pc = NULL;
}

ferry_err ferry_client_set_max_msg(ferry_client *c, int64_t bytes, char *err, size_t errlen)
{
    if (bytes <= 0) {
        snprintf(err, errlen, "the message limit must be positive");
        return FERRY_EUSAGE;
    }
    ferry_monitor_close(c->socket, &c->monitor);
    ferry_socket_close(&c->socket);
    c->max_msg = bytes;
    c->refused = 0;
    return open_socket(c, err, errlen) == 0 ? FERRY_OK : FERRY_EIO;
}

void ferry_client_set_limits(ferry_client *c, const ferry_limits *limits)
{
    c->limits = limits ? *limits : (ferry_limits){0};
}

void ferry_client_set_connect_timeout(ferry_client *c, int ms)
{
    c->connect_timeout_ms = ms;
}

/* Reads the connection events: true when the connection to the broker
 * dropped since the last look. Keeps c->refused up to date: a handshake
 * the broker refused (ZAP), or that failed on a key or mechanism mismatch.
 * A handshake cut short with no detail is a refusal only with CURVE: the
 * broker drops a HELLO sealed for another server key without a word. */
static int disconnected(ferry_client *c)
{
    uint16_t event;
    int seen = 0;
    while (ferry_monitor_recv(c->monitor, &event) == FERRY_OK) {
        seen |= event == ZMQ_EVENT_DISCONNECTED;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            c->refused = 0;
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                 event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                 (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && c->curve.on))
            c->refused = 1;
    }
    return seen;
}

/* Sends env, waiting for a connection up to the connect timeout. A drop
 * noticed before the send is old news: what it lost is reported by the
 * waits that were under way then. A refused handshake ends the wait. */
static ferry_err send_waiting(ferry_client *c, const Ferry__Envelope *env)
{
    (void)disconnected(c);
    int64_t until = ferry_now_ms() + c->connect_timeout_ms;
    for (;;) {
        ferry_err err = ferry_wire_send(c->socket, NULL, 0, env);
        if (err != FERRY_EOVERLOADED)
            return err;
        (void)disconnected(c);
        if (c->refused)
            return FERRY_EAUTH;
        int64_t left = until - ferry_now_ms();
        if (left <= 0)
            return FERRY_EUNREACHABLE;
        zmq_pollitem_t items[2] = {{.socket = c->socket, .events = ZMQ_POLLOUT},
                                   {.socket = c->monitor, .events = ZMQ_POLLIN}};
        if (zmq_poll(items, 2, (long)left) < 0 && zmq_errno() != EINTR)
            return FERRY_EIO;
    }
}

ferry_err ferry_client_submit(ferry_client *c, const void *source, size_t len, const char *name,
                              Ferry__Value *const *args, size_t nargs, uint32_t timeout_ms,
                              uint64_t *request_id)
{
    Ferry__Submit sub;
    ferry__submit__init(&sub);
    sub.request_id = c->next_request++;
    sub.source.data = (uint8_t *)source;
    sub.source.len = len;
    sub.args = (Ferry__Value **)args;
    sub.n_args = nargs;
    sub.timeout_ms = timeout_ms;
    sub.name = (char *)(name ? name : "script");
    sub.max_memory = c->limits.max_memory;
    sub.max_instructions = c->limits.max_instructions;
    sub.max_output = c->limits.max_output;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    /* The broker would drop the connection over a bigger one (and every
     * result pending on it): refuse it here instead. */
    if ((int64_t)ferry_envelope_packed_size(&env) > c->max_msg)
        return FERRY_ELIMIT;
    ferry_err err = send_waiting(c, &env);
    if (err == FERRY_OK && request_id)
        *request_id = sub.request_id;
    return err;
}

/* Receives the next envelope of the given body kind within timeout_ms. */
static ferry_err recv_kind(ferry_client *c, int timeout_ms, Ferry__Envelope__BodyCase kind,
                           Ferry__Envelope **out)
{
    int64_t until = ferry_now_ms() + timeout_ms;
    for (;;) {
        ferry_frames f;
        ferry_err err = ferry_frames_recv(c->socket, &f);
        if (err == FERRY_OK) {
            Ferry__Envelope *env = NULL;
            if (f.count == 1 && !f.truncated)
                err = ferry_envelope_decode(ferry_frame_data(&f, 0), ferry_frame_size(&f, 0), &env);
            ferry_frames_close(&f);
            if (env && env->body_case == kind) {
                *out = env;
                return FERRY_OK;
            }
            ferry_envelope_free(env);
            continue;
        }
        if (err != FERRY_ETIMEOUT)
            return err;
        if (disconnected(c))
            return c->refused ? FERRY_EAUTH : FERRY_EBROKER_LOST;
        int64_t left = until - ferry_now_ms();
        if (left <= 0)
            return FERRY_ETIMEOUT;
        zmq_pollitem_t items[2] = {{.socket = c->socket, .events = ZMQ_POLLIN},
                                   {.socket = c->monitor, .events = ZMQ_POLLIN}};
        if (zmq_poll(items, 2, (long)left) < 0 && zmq_errno() != EINTR)
            return FERRY_EIO;
    }
}

ferry_err ferry_client_wait(ferry_client *c, int timeout_ms, ferry_result *out)
{
    Ferry__Envelope *env;
    ferry_err err = recv_kind(c, timeout_ms, FERRY__ENVELOPE__BODY_RESULT, &env);
    if (err != FERRY_OK)
        return err;
    out->envelope = env;
    out->result = env->result;
    return FERRY_OK;
}

ferry_err ferry_client_run(ferry_client *c, const void *source, size_t len, const char *name,
                           Ferry__Value *const *args, size_t nargs, uint32_t timeout_ms,
                           ferry_result *out)
{
    uint64_t id;
    ferry_err err = ferry_client_submit(c, source, len, name, args, nargs, timeout_ms, &id);
    if (err != FERRY_OK)
        return err;
    int64_t until = ferry_now_ms() + (timeout_ms ? timeout_ms : 30000) + FERRY_CLIENT_GRACE_MS;
    for (;;) {
        int64_t left = until - ferry_now_ms();
        if (left <= 0)
            return FERRY_ETIMEOUT;
        err = ferry_client_wait(c, (int)left, out);
        if (err != FERRY_OK)
            return err;
        if (out->result->request_id == id)
            return FERRY_OK;
        ferry_result_fini(out); /* an earlier submission's late result */
    }
}

ferry_err ferry_client_stats(ferry_client *c, int timeout_ms, Ferry__Envelope **out)
{
    Ferry__StatsRequest req;
    ferry__stats_request__init(&req);
    req.request_id = c->next_request++;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_STATS_REQUEST;
    env.stats_request = &req;
    ferry_err err = send_waiting(c, &env);
    if (err != FERRY_OK)
        return err;
    return recv_kind(c, timeout_ms, FERRY__ENVELOPE__BODY_STATS, out);
}

void ferry_result_fini(ferry_result *r)
{
    ferry_envelope_free(r->envelope);
    r->envelope = NULL;
    r->result = NULL;
}

int ferry_result_ok(const ferry_result *r)
{
    return r->result->ok;
}

uint64_t ferry_result_request_id(const ferry_result *r)
{
    return r->result->request_id;
}

size_t ferry_result_nvalues(const ferry_result *r)
{
    return r->result->n_values;
}

const Ferry__Value *ferry_result_value(const ferry_result *r, size_t i)
{
    return i < r->result->n_values ? r->result->values[i] : NULL;
}

const char *ferry_result_output(const ferry_result *r, size_t *len)
{
    *len = r->result->output.len;
    return (const char *)r->result->output.data;
}

const char *ferry_result_error_code(const ferry_result *r)
{
    return r->result->ok || !r->result->error ? NULL : r->result->error->code;
}

const char *ferry_result_error_message(const ferry_result *r)
{
    return r->result->ok || !r->result->error ? NULL : r->result->error->message;
}

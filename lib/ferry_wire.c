/* ferry_wire: socket setup, whole-message receive, sends, connection monitors. */
#include "ferry_wire.h"
#include "ferry_utf8.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static ferry_err from_zmq_errno(int e)
{
    switch (e) {
    case EAGAIN:
        return FERRY_EOVERLOADED;
    case EHOSTUNREACH:
        return FERRY_EUNREACHABLE;
    case ENOMEM:
        return FERRY_ENOMEM;
    default:
        return FERRY_EIO;
    }
}

/* The CURVE options of o on s: a server (bound) or a client of o->curve->server_key. */
static int set_curve(void *s, const ferry_socket_opts *o)
{
    const ferry_curve *c = o->curve;
    int one = 1, ivl = FERRY_HANDSHAKE_MS;
    if (zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &ivl, sizeof ivl) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->own.secret_key, FERRY_KEY_Z85) != 0)
        return -1;
    if (o->bind) {
        const char *domain = o->zap_domain ? o->zap_domain : "";
        return zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
                       zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0
                   ? -1
                   : 0;
    }
    return zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->own.public_key, FERRY_KEY_Z85) != 0 ||
                   zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->server_key, FERRY_KEY_Z85) != 0
               ? -1
               : 0;
}

void *ferry_socket_open(void *ctx, const ferry_socket_opts *o, char *err, size_t errlen)
{
    void *s = zmq_socket(ctx, o->type);
    if (!s) {
        snprintf(err, errlen, "cannot create socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = o->linger_ms;
    int one = 1;
    const char *what = "setsockopt";
    if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) != 0)
        goto fail;
    if (o->hwm > 0 && (zmq_setsockopt(s, ZMQ_SNDHWM, &o->hwm, sizeof o->hwm) != 0 ||
                       zmq_setsockopt(s, ZMQ_RCVHWM, &o->hwm, sizeof o->hwm) != 0))
        goto fail;
    if (o->type == ZMQ_ROUTER &&
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one) != 0)
        goto fail;
    /* No ZMQ_ROUTER_HANDOVER: a second connection under a live peer's routing
     * id takes nothing over (libzmq ignores it until the first one is gone).
     * A peer whose own route is lost that way notices that its heartbeats go
     * unanswered and comes back under a new id. */
    if (o->routing_id &&
        zmq_setsockopt(s, ZMQ_ROUTING_ID, o->routing_id, strlen(o->routing_id)) != 0)
        goto fail;
    /* Every socket, connecting ones too: nothing a peer sends may be larger. */
    int64_t max = o->max_msg > 0 ? o->max_msg : FERRY_DEFAULT_MAX_MSG;
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0)
        goto fail;
    if (o->curve && o->curve->on && set_curve(s, o) != 0)
        goto fail;
    if (o->bind) {
        what = "bind";
        if (zmq_bind(s, o->endpoint) != 0)
            goto fail;
    } else {
        /* Queue nothing towards a peer that is not connected. */
        if (o->type != ZMQ_PULL && zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof one) != 0)
            goto fail;
        what = "connect";
        if (zmq_connect(s, o->endpoint) != 0)
            goto fail;
    }
    return s;
fail:
    snprintf(err, errlen, "%s %s: %s", what, o->endpoint ? o->endpoint : "(null)",
             zmq_strerror(zmq_errno()));
    zmq_close(s);
    return NULL;
}

void ferry_socket_close(void **socket)
{
    if (*socket) {
        zmq_close(*socket);
        *socket = NULL;
    }
}

ferry_err ferry_frames_recv(void *socket, ferry_frames *f)
{
    f->count = 0;
    f->truncated = 0;
    f->open = 0;
    /* Only the first frame may be missing: ZeroMQ delivers a message whole. */
    int flags = ZMQ_DONTWAIT;
    for (;;) {
        zmq_msg_t scratch;
        int i = f->count;
        zmq_msg_t *m = i < FERRY_MAX_FRAMES ? &f->frames[i] : &scratch;
        zmq_msg_init(m);
        int n;
        do /* a signal (the engine's watchdog) must not lose a message */
            n = zmq_msg_recv(m, socket, flags);
        while (n < 0 && zmq_errno() == EINTR);
        if (n < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            ferry_frames_close(f);
            return e == EAGAIN ? FERRY_ETIMEOUT : FERRY_EIO;
        }
        flags = 0;
        int more = zmq_msg_more(m);
        if (m == &scratch) {
            zmq_msg_close(m);
            f->truncated = 1;
        } else {
            /* The size comes with the message, capped at INT_MAX. */
            f->size[i] = n < INT_MAX ? (size_t)n : zmq_msg_size(m);
            f->data[i] = zmq_msg_data(m);
            f->open |= 1u << i;
            f->count = i + 1;
        }
        if (!more)
            return FERRY_OK;
    }
}

static ferry_err send_rid(void *socket, const void *rid, size_t rid_len)
{
    if (!rid)
        return FERRY_OK;
    int rc;
    do
        rc = zmq_send(socket, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    while (rc < 0 && zmq_errno() == EINTR);
    if (rc < 0)
        return from_zmq_errno(zmq_errno());
    return FERRY_OK;
}

ferry_err ferry_wire_send(void *socket, const void *rid, size_t rid_len,
                          const Ferry__Envelope *env)
{
    return ferry_wire_send_sized(socket, rid, rid_len, env, ferry_envelope_packed_size(env));
}

ferry_err ferry_wire_send_sized(void *socket, const void *rid, size_t rid_len,
                                const Ferry__Envelope *env, size_t len)
{
    assert(len == ferry__envelope__get_packed_size(env));
    zmq_msg_t body;
    if (zmq_msg_init_size(&body, len) != 0)
        return FERRY_ENOMEM;
    size_t packed = ferry_envelope_pack_sized(env, len, zmq_msg_data(&body));
    assert(packed == len);
    (void)packed;
    ferry_err err = ferry_wire_forward(socket, rid, rid_len, &body);
    if (err != FERRY_OK)
        zmq_msg_close(&body);
    return err;
}

ferry_err ferry_wire_forward(void *socket, const void *rid, size_t rid_len, zmq_msg_t *body)
{
    ferry_err err = send_rid(socket, rid, rid_len);
    if (err != FERRY_OK)
        return err;
    /* After the routing frame went out the body cannot fail on EAGAIN or
     * EHOSTUNREACH: ZeroMQ queues multi-frame messages atomically. */
    int rc;
    do /* a signal must not fail a send, nor cut a message after its routing frame */
        rc = zmq_msg_send(body, socket, ZMQ_DONTWAIT);
    while (rc < 0 && zmq_errno() == EINTR);
    if (rc < 0)
        return from_zmq_errno(zmq_errno());
    return FERRY_OK;
}

void ferry_batch_init(ferry_batch *b, int64_t max_msg)
{
    memset(b, 0, sizeof *b);
    size_t max = max_msg > 0 ? (size_t)max_msg : FERRY_DEFAULT_MAX_MSG;
    b->max = max < FERRY_BATCH_BYTES_MAX ? max : FERRY_BATCH_BYTES_MAX;
}

uint8_t *ferry_batch_add(ferry_batch *b, size_t len, ferry_err *err)
{
    assert(ferry_batch_fits(b, len));
    *err = FERRY_OK;
    size_t item = ferry_batch_item_size(len);
    /* The header of the whole message is at most 8 bytes (a body under 2^35). */
    if (b->count > 0 && b->len + item + 8 > b->max)
        return NULL;
    if (!b->body && !(b->body = malloc(FERRY_BATCH_BYTES_MAX))) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    uint8_t *at = ferry_batch_put_item_head(b->body + b->len, len);
    if (b->count == 0) {
        b->first_off = (size_t)(at - b->body);
        b->first_len = len;
    }
    b->len += item;
    b->count++;
    return at;
}

ferry_err ferry_batch_send(ferry_batch *b, void *socket, const void *rid, size_t rid_len)
{
    if (b->count == 0)
        return FERRY_OK;
    size_t head = b->count == 1 ? 0 : ferry_batch_header_size(b->len);
    size_t size = b->count == 1 ? b->first_len : head + b->len;
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, size) != 0)
        return FERRY_ENOMEM;
    uint8_t *out = zmq_msg_data(&m);
    if (b->count == 1) {
        memcpy(out, b->body + b->first_off, b->first_len);
    } else {
        ferry_batch_put_header(out, b->len);
        memcpy(out + head, b->body, b->len);
    }
    ferry_err err = ferry_wire_forward(socket, rid, rid_len, &m);
    if (err != FERRY_OK)
        zmq_msg_close(&m);
    return err;
}

void ferry_batch_fini(ferry_batch *b)
{
    free(b->body);
    b->body = NULL;
    ferry_batch_clear(b);
}

void *ferry_monitor_open(void *ctx, void *socket, int events, char *err, size_t errlen)
{
    /* The socket's address names the endpoint: unique within the context. */
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://ferry-monitor-%p", socket);
    if (zmq_socket_monitor(socket, ep, events) != 0) {
        snprintf(err, errlen, "cannot monitor a socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    ferry_socket_opts o = {.type = ZMQ_PAIR, .endpoint = ep};
    void *m = ferry_socket_open(ctx, &o, err, errlen);
    if (!m)
        zmq_socket_monitor(socket, NULL, 0);
    return m;
}

void ferry_monitor_close(void *socket, void **monitor)
{
    if (!*monitor)
        return;
    if (socket)
        zmq_socket_monitor(socket, NULL, 0);
    ferry_socket_close(monitor);
}

ferry_err ferry_monitor_recv(void *monitor, uint16_t *event)
{
    for (;;) {
        ferry_frames f;
        ferry_err err = ferry_frames_recv(monitor, &f);
        if (err != FERRY_OK)
            return err;
        /* Frame 1: 16-bit event number and 32-bit value; frame 2: the endpoint. */
        int ok = f.count >= 1 && ferry_frame_size(&f, 0) >= 6;
        if (ok)
            memcpy(event, ferry_frame_data(&f, 0), sizeof *event);
        ferry_frames_close(&f);
        if (ok)
            return FERRY_OK;
    }
}

void ferry_make_id(const char *prefix, char *out, size_t outlen)
{
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    unsigned int rnd = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &rnd, sizeof rnd) != (ssize_t)sizeof rnd)
        rnd = (unsigned int)time(NULL) ^ ((unsigned int)getpid() << 16);
    if (fd >= 0)
        close(fd);
    snprintf(out, outlen, "%s-%s-%d-%08x", prefix, host, (int)getpid(), rnd);
}

int ferry_wire_function_name_ok(const char *name, size_t len)
{
    if (!name || len == 0 || len > FERRY_FUNCTION_NAME_MAX)
        return 0;
    return memchr(name, '\0', len) == NULL && ferry_utf8_valid(name, len);
}

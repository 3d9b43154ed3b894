/*
 * client.c: the client library behind include/ferry/client.h.
 *
 * One DEALER socket per broker of the endpoint list, each with ZMQ_IMMEDIATE,
 * so a submission goes to a broker that is connected now (the next one in
 * turn that takes it) and waits, up to the connect timeout, only when none
 * is; results are matched to submissions by request id.
 *
 * A connection that drops loses the pending results of its broker: the
 * DEALER comes back under a new routing id, and a restarted broker knows
 * nothing of what was submitted before. So a monitor watches each socket,
 * and a wait fails with FERRY_EBROKER_LOST at once instead of at the
 * deadline; every submission records its broker, so only the submissions
 * through the broker that dropped are lost (ferry_client_take_lost names
 * them), and the others are still waited for.
 *
 * A broker that leaves (SIGTERM) says Goodbye: the scripts it holds still
 * come back through it, new ones go to the other brokers.
 *
 * With CURVE keys the monitor also reports a refused handshake (the broker's
 * ZAP handler said no, or the keys do not match): a broker that refused is
 * skipped, and submissions and waits fail with FERRY_EAUTH at once when
 * every broker refused, instead of waiting for a connection that will never
 * come.
 */
#include "ferry/client.h"

#include "ferry_brokers.h"
#include "ferry_cert.h"
#include "ferry_clock.h"
#include "ferry_discover.h"
#include "ferry_wire.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <zmq.h>

typedef struct {
    void *socket;
    void *monitor; /* connection events of socket */
    int refused;   /* the last handshake was refused, none succeeded since */
    int leaving;   /* the broker said Goodbye (it drains): submit elsewhere if possible */
    int down;      /* its connection dropped, no new one is up yet: libzmq may still take
                    * a send into the dying pipe for a moment, and lose it unannounced */
    char *endpoint; /* owned: the broker's clients endpoint, to open the socket again */
    ferry_curve curve;
    char addr[FERRY_DISCOVER_ADDR_MAX]; /* discovery: where it was found; "" else */
    int retired;    /* discovery: its address is gone; disconnected, never sent to */
} client_link;

/* A submission whose result has not come yet, and the broker it went to. */
typedef struct {
    uint64_t request_id;
    size_t link;
    UT_hash_handle hh;
} client_pending;

struct ferry_client {
    void *ctx;
    client_link links[FERRY_BROKERS_MAX];
    size_t nlinks;
    size_t next_link;        /* the next submission tries this broker first */
    client_pending *pending; /* by request_id */
    uint64_t *lost;          /* request ids lost with their broker, oldest first */
    size_t nlost, lost_cap, lost_head;
    size_t unreported;       /* lost since a wait last returned FERRY_EBROKER_LOST */
    int unreported_auth;     /* and one of their brokers refused our key */
    uint64_t next_request;
    int connect_timeout_ms;
    ferry_limits limits; /* asked for by every submission */
    int64_t max_msg;     /* largest message sent or taken (ZMQ_MAXMSGSIZE) */
    char *discover;      /* owned: ferry_client_new_discover's name; NULL: a fixed list */
    char *discover_port; /* owned: the port of its endpoint */
    int64_t resolved_ms; /* when the name was last resolved */
};

/* Opens l->socket and l->monitor on l->endpoint with c->max_msg. */
static int open_socket(ferry_client *c, client_link *l, char *err, size_t errlen)
{
    ferry_socket_opts o = {.type = ZMQ_DEALER,
                           .endpoint = l->endpoint,
                           .linger_ms = 0,
                           .curve = &l->curve,
                           .max_msg = c->max_msg};
    int events = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    l->refused = 0;
    l->socket = ferry_socket_open(c->ctx, &o, err, errlen);
    if (l->socket)
        l->monitor = ferry_monitor_open(c->ctx, l->socket, events, err, errlen);
    if (!l->monitor) {
        ferry_socket_close(&l->socket);
        return -1;
    }
    return 0;
}

static size_t lose_link(ferry_client *c, size_t i);

/* Discovery: resolves the name again when it is older than the interval (or
 * force): links to new addresses, gone ones retired (their submissions lost). */
static void refresh(ferry_client *c, int force)
{
    int64_t now = ferry_now_ms();
    if (!c->discover || (!force && now - c->resolved_ms < ferry_discover_interval_ms()))
        return;
    c->resolved_ms = now;
    ferry_addrs found;
    (void)ferry_discover_resolve(c->discover, &found);
    for (size_t i = 0; i < c->nlinks; i++) {
        client_link *l = &c->links[i];
        if (!l->retired && !ferry_addrs_has(&found, l->addr)) {
            l->retired = 1;
            (void)zmq_disconnect(l->socket, l->endpoint);
            (void)lose_link(c, i);
        }
    }
    for (size_t k = 0; k < found.n; k++) {
        size_t free_slot = c->nlinks;
        int known = 0;
        for (size_t i = 0; i < c->nlinks && !known; i++) {
            known = !c->links[i].retired && strcmp(c->links[i].addr, found.addr[k]) == 0;
            if (c->links[i].retired && free_slot == c->nlinks)
                free_slot = i;
        }
        if (known || free_slot == FERRY_BROKERS_MAX)
            continue;
        client_link *l = &c->links[free_slot];
        char ep[FERRY_DISCOVER_ADDR_MAX + 32], err[256];
        snprintf(ep, sizeof ep, "tcp://%s:%s", found.addr[k], c->discover_port);
        char *copy = strdup(ep);
        if (!copy)
            continue;
        if (free_slot < c->nlinks) {
            ferry_monitor_close(l->socket, &l->monitor);
            ferry_socket_close(&l->socket);
            free(l->endpoint);
        }
        ferry_curve curve = c->links[0].curve; /* one key for every discovered broker */
        memset(l, 0, sizeof *l);
        l->curve = curve;
        l->endpoint = copy;
        snprintf(l->addr, sizeof l->addr, "%s", found.addr[k]);
        if (free_slot == c->nlinks)
            c->nlinks++;
        if (open_socket(c, l, err, sizeof err) != 0)
            l->retired = 1; /* tried again at the next resolve */
    }
}

static void close_sockets(ferry_client *c)
{
    for (size_t i = 0; i < c->nlinks; i++) {
        ferry_monitor_close(c->links[i].socket, &c->links[i].monitor);
        ferry_socket_close(&c->links[i].socket);
    }
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
    ferry_list eps;
    if (ferry_list_split(endpoint, "broker endpoint", &eps, err, errlen) != FERRY_OK) {
        free(c);
        return NULL;
    }
    ferry_curve curves[FERRY_BROKERS_MAX];
    if (ferry_curve_clients(curves, eps.n, curve_key, broker_key, err, errlen) != FERRY_OK) {
        ferry_list_fini(&eps);
        free(c);
        return NULL;
    }
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        snprintf(err, errlen, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        ferry_list_fini(&eps);
        free(c);
        return NULL;
    }
    c->max_msg = FERRY_DEFAULT_MAX_MSG;
    c->nlinks = eps.n;
    for (size_t i = 0; i < eps.n; i++) {
        c->links[i].endpoint = eps.item[i]; /* the link owns it now */
        c->links[i].curve = curves[i];
    }
    for (size_t i = 0; i < c->nlinks; i++) {
        if (open_socket(c, &c->links[i], err, errlen) != 0) {
            ferry_client_destroy(&c);
            return NULL;
        }
    }
    /* Request ids only need to be unique on this client; start away from 0. */
    c->next_request = 1;
    c->connect_timeout_ms = 3000;
    return c;
}

ferry_client *ferry_client_new_discover(const char *name, const char *endpoint,
                                       const char *curve_key, const char *broker_key, char *err,
                                       size_t errlen)
{
    const char *ep = endpoint ? endpoint : "tcp://localhost:5558";
    const char *colon = strrchr(ep, ':');
    if (!name || !*name || !colon || !colon[1] ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
        snprintf(err, errlen, "discovery needs a name and an endpoint that ends in a port");
        return NULL;
    }
    ferry_client *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->discover = strdup(name);
    c->discover_port = strdup(colon + 1);
    c->ctx = zmq_ctx_new();
    c->max_msg = FERRY_DEFAULT_MAX_MSG;
    c->next_request = 1;
    c->connect_timeout_ms = 3000;
    if (!c->discover || !c->discover_port || !c->ctx ||
        ferry_curve_client(&c->links[0].curve, curve_key, broker_key, err, errlen) != FERRY_OK) {
        if (!c->ctx || !c->discover || !c->discover_port)
            snprintf(err, errlen, "out of memory");
        ferry_client_destroy(&c);
        return NULL;
    }
    refresh(c, 1);
    return c;
}

void ferry_client_destroy(ferry_client **pc)
{
    ferry_client *c = *pc;
    if (!c)
        return;
    close_sockets(c);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    for (size_t i = 0; i < c->nlinks; i++)
        free(c->links[i].endpoint);
    free(c->discover);
    free(c->discover_port);
    client_pending *p, *tmp;
    HASH_ITER(hh, c->pending, p, tmp) {
        HASH_DEL(c->pending, p);
        free(p);
    }
    free(c->lost);
    free(c);
    *pc = NULL;
}

ferry_err ferry_client_set_max_msg(ferry_client *c, int64_t bytes, char *err, size_t errlen)
{
    if (bytes <= 0) {
        snprintf(err, errlen, "the message limit must be positive");
        return FERRY_EUSAGE;
    }
    close_sockets(c);
    c->max_msg = bytes;
    for (size_t i = 0; i < c->nlinks; i++)
        if (open_socket(c, &c->links[i], err, errlen) != 0)
            return FERRY_EIO;
    return FERRY_OK;
}

void ferry_client_set_limits(ferry_client *c, const ferry_limits *limits)
{
    c->limits = limits ? *limits : (ferry_limits){0};
}

void ferry_client_set_connect_timeout(ferry_client *c, int ms)
{
    c->connect_timeout_ms = ms;
}

size_t ferry_client_brokers(const ferry_client *c)
{
    return c->nlinks;
}

/* Every submission through link i is lost: its request ids move to the lost
 * list. Returns how many there were. */
static size_t lose_link(ferry_client *c, size_t i)
{
    size_t n = 0;
    client_pending *p, *tmp;
    HASH_ITER(hh, c->pending, p, tmp) {
        if (p->link != i)
            continue;
        if (c->lost_head + c->nlost == c->lost_cap) {
            if (c->lost_head > 0) {
                memmove(c->lost, c->lost + c->lost_head, c->nlost * sizeof *c->lost);
                c->lost_head = 0;
            } else {
                size_t cap = c->lost_cap ? 2 * c->lost_cap : 16;
                uint64_t *grown = realloc(c->lost, cap * sizeof *grown);
                if (!grown)
                    continue; /* kept as pending: it ends at its timeout instead */
                c->lost = grown;
                c->lost_cap = cap;
            }
        }
        c->lost[c->lost_head + c->nlost++] = p->request_id;
        c->unreported++;
        if (c->links[i].refused)
            c->unreported_auth = 1;
        HASH_DEL(c->pending, p);
        free(p);
        n++;
    }
    return n;
}

int ferry_client_take_lost(ferry_client *c, uint64_t *request_id)
{
    if (c->nlost == 0)
        return 0;
    *request_id = c->lost[c->lost_head++];
    if (--c->nlost == 0)
        c->lost_head = 0;
    return 1;
}

/* Reads link i's connection events: true when its connection to the broker
 * dropped since the last look. Keeps refused up to date: a handshake the
 * broker refused (ZAP), or that failed on a key or mechanism mismatch. A
 * handshake cut short with no detail is a refusal only with CURVE: the
 * broker drops a HELLO sealed for another server key without a word. */
static int disconnected(client_link *l)
{
    uint16_t event;
    int seen = 0;
    while (ferry_monitor_recv(l->monitor, &event) == FERRY_OK) {
        seen |= event == ZMQ_EVENT_DISCONNECTED;
        if (event == ZMQ_EVENT_DISCONNECTED || event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            l->leaving = 0; /* whoever is there next is a new broker */
        if (event == ZMQ_EVENT_DISCONNECTED)
            l->down = 1;
        else if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            l->down = 0;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            l->refused = 0;
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
                 event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
                 (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && l->curve.on))
            l->refused = 1;
    }
    return seen;
}

/* Looks at every broker's events; the submissions through one that dropped
 * are lost. Returns how many were lost now; sets bit i of *dropped (when
 * given) for each broker i whose connection dropped, and *refused for one
 * among those that refused our key. */
static size_t look(ferry_client *c, unsigned *dropped, int *refused)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nlinks; i++) {
        if (disconnected(&c->links[i])) {
            size_t lost = lose_link(c, i);
            n += lost;
            if (dropped)
                *dropped |= 1u << i;
            if (refused && lost && c->links[i].refused)
                *refused = 1;
        }
    }
    return n;
}

static int all_refused(const ferry_client *c)
{
    size_t live = 0;
    for (size_t i = 0; i < c->nlinks; i++) {
        if (c->links[i].retired)
            continue;
        live++;
        if (!c->links[i].refused)
            return 0;
    }
    return live > 0;
}

/* Sends env to the next broker in turn that takes it now, waiting for a
 * connection to any up to the connect timeout; the broker's index in *link.
 * A drop noticed before the send is old news: what it lost is reported by
 * the waits. A broker that refused our handshake is skipped; when all did,
 * FERRY_EAUTH. */
static ferry_err send_waiting(ferry_client *c, const Ferry__Envelope *env, size_t *link)
{
    refresh(c, 0);
    (void)look(c, NULL, NULL);
    int64_t until = ferry_now_ms() + c->connect_timeout_ms;
    for (;;) {
        /* Brokers that are not leaving first; one that drains still runs what it gets. */
        for (size_t k = 0; k < 2 * c->nlinks; k++) {
            size_t i = (c->next_link + k) % c->nlinks;
            if (c->links[i].refused || c->links[i].down || c->links[i].retired ||
                c->links[i].leaving != (k >= c->nlinks))
                continue;
            /* A send handles the socket's pending commands only about once a
             * millisecond; ZMQ_EVENTS handles them now, so a connection whose
             * end the I/O thread saw already is not sent to. */
            int events;
            size_t elen = sizeof events;
            (void)zmq_getsockopt(c->links[i].socket, ZMQ_EVENTS, &events, &elen);
            ferry_err err = ferry_wire_send(c->links[i].socket, NULL, 0, env);
            if (err == FERRY_EOVERLOADED)
                continue; /* not connected (ZMQ_IMMEDIATE), or its queue is full */
            if (err == FERRY_OK) {
                *link = i;
                c->next_link = (i + 1) % c->nlinks;
            }
            return err;
        }
        (void)look(c, NULL, NULL);
        if (all_refused(c))
            return FERRY_EAUTH;
        int64_t left = until - ferry_now_ms();
        if (left <= 0)
            return FERRY_EUNREACHABLE;
        if (c->discover) {
            /* Brokers may appear under the name meanwhile. */
            refresh(c, 0);
            if (left > 100)
                left = 100;
        }
        zmq_pollitem_t items[2 * FERRY_BROKERS_MAX];
        for (size_t i = 0; i < c->nlinks; i++) {
            /* A broker that is down: its monitor says when it is up again (POLLOUT
             * may hold on the dying pipe, and would spin this loop). */
            short out = c->links[i].down || c->links[i].retired ? 0 : ZMQ_POLLOUT;
            items[2 * i] = (zmq_pollitem_t){.socket = c->links[i].socket, .events = out};
            items[2 * i + 1] =
                (zmq_pollitem_t){.socket = c->links[i].monitor, .events = ZMQ_POLLIN};
        }
        if (zmq_poll(items, (int)(2 * c->nlinks), (long)left) < 0 && zmq_errno() != EINTR)
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
    client_pending *p = calloc(1, sizeof *p);
    if (!p)
        return FERRY_ENOMEM;
    size_t link = 0;
    ferry_err err = send_waiting(c, &env, &link);
    if (err != FERRY_OK) {
        free(p);
        return err;
    }
    p->request_id = sub.request_id;
    p->link = link;
    HASH_ADD(hh, c->pending, request_id, sizeof p->request_id, p);
    if (request_id)
        *request_id = sub.request_id;
    return FERRY_OK;
}

/* The result for id came: it is pending no more. 0 when it was not pending:
 * reported lost already (it was read after its broker's drop was seen), or
 * never ours; such a result is not handed out a second time. */
static int settled(ferry_client *c, uint64_t id)
{
    client_pending *p;
    HASH_FIND(hh, c->pending, &id, sizeof id, p);
    if (!p)
        return 0;
    HASH_DEL(c->pending, p);
    free(p);
    return 1;
}

/*
 * Receives the next envelope of the given body kind from any broker within
 * timeout_ms (only >= 0: from broker only). FERRY_EBROKER_LOST when a
 * broker dropped with submissions pending on it (only >= 0: when broker only
 * dropped), FERRY_EAUTH instead when it refused our key.
 */
static ferry_err recv_kind(ferry_client *c, int timeout_ms, Ferry__Envelope__BodyCase kind,
                           long only, Ferry__Envelope **out)
{
    int64_t until = ferry_now_ms() + timeout_ms;
    for (;;) {
        for (size_t i = 0; i < c->nlinks; i++) {
            if (only >= 0 && (size_t)only != i)
                continue;
            ferry_frames f;
            ferry_err err;
            while ((err = ferry_frames_recv(c->links[i].socket, &f)) == FERRY_OK) {
                Ferry__Envelope *env = NULL;
                if (f.count == 1 && !f.truncated)
                    (void)ferry_envelope_decode(ferry_frame_data(&f, 0), ferry_frame_size(&f, 0),
                                                &env);
                ferry_frames_close(&f);
                if (env && env->body_case == FERRY__ENVELOPE__BODY_GOODBYE)
                    c->links[i].leaving = 1;
                if (env && env->body_case == kind &&
                    (kind != FERRY__ENVELOPE__BODY_RESULT ||
                     (env->result && settled(c, env->result->request_id)))) {
                    *out = env;
                    return FERRY_OK;
                }
                ferry_envelope_free(env);
            }
            if (err != FERRY_ETIMEOUT)
                return err;
        }
        unsigned dropped = 0;
        refresh(c, 0); /* a broker gone from the name loses its submissions */
        (void)look(c, &dropped, NULL);
        if (only >= 0 && (dropped & (1u << only)))
            return c->links[only].refused ? FERRY_EAUTH : FERRY_EBROKER_LOST;
        if (only < 0 && c->unreported) {
            /* Lost now, or noticed by a submission since the last wait. */
            int auth = c->unreported_auth;
            c->unreported = 0;
            c->unreported_auth = 0;
            return auth ? FERRY_EAUTH : FERRY_EBROKER_LOST;
        }
        if (all_refused(c))
            return FERRY_EAUTH;
        int64_t left = until - ferry_now_ms();
        if (left <= 0)
            return FERRY_ETIMEOUT;
        if (c->discover && left > 100)
            left = 100; /* the name is looked at again meanwhile */
        zmq_pollitem_t items[2 * FERRY_BROKERS_MAX];
        for (size_t i = 0; i < c->nlinks; i++) {
            items[2 * i] = (zmq_pollitem_t){.socket = c->links[i].socket, .events = ZMQ_POLLIN};
            items[2 * i + 1] =
                (zmq_pollitem_t){.socket = c->links[i].monitor, .events = ZMQ_POLLIN};
        }
        if (zmq_poll(items, (int)(2 * c->nlinks), (long)left) < 0 && zmq_errno() != EINTR)
            return FERRY_EIO;
    }
}

ferry_err ferry_client_wait(ferry_client *c, int timeout_ms, ferry_result *out)
{
    Ferry__Envelope *env;
    ferry_err err = recv_kind(c, timeout_ms, FERRY__ENVELOPE__BODY_RESULT, -1, &env);
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
        if (err == FERRY_EBROKER_LOST) {
            /* Ours, or only earlier submissions through another broker? */
            client_pending *p;
            HASH_FIND(hh, c->pending, &id, sizeof id, p);
            if (p)
                continue;
            return err;
        }
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
    size_t link = 0;
    ferry_err err = send_waiting(c, &env, &link);
    if (err != FERRY_OK)
        return err;
    return recv_kind(c, timeout_ms, FERRY__ENVELOPE__BODY_STATS, (long)link, out);
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

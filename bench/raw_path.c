/*
 * ferry-bench-raw: the raw baseline that ferry-bench compares Ferry with.
 *
 * The same processes and the same socket path as Ferry, with nothing but
 * libzmq in them: no protobuf, no Lua, no tables, no timers.
 *
 *   ferry-bench-raw broker --commands EP --engines EP --workers EP --clients EP
 *       binds PULL (commands), ROUTER (engines), ROUTER (workers), ROUTER (clients);
 *       a command from the PULL goes to the next worker (round robin) on the
 *       workers ROUTER; a worker's answer goes to the engine named in its
 *       header on the engines ROUTER. A client's message goes to the next raw
 *       engine as [engine][client][body], and the engine's [client][body]
 *       back to the client. Frames are forwarded, never copied.
 *   ferry-bench-raw echo --connect EP [--id ID]
 *       a DEALER that announces itself ("R") and sends every message back
 *       unchanged: the worker (on the workers endpoint) or the engine (on the
 *       engines endpoint) of the baseline.
 *
 * The bench itself plays the engine (PUSH + DEALER) and the client, exactly
 * as it does against the real broker. The message format is bench_raw.h.
 * Sockets come from ferry_socket_open, so they carry the same options as
 * Ferry's (linger, ROUTER_MANDATORY, high-water marks). SIGINT and SIGTERM
 * end the loop (through a self-pipe, as in ferry_loop) and the process exits 0.
 */
#include "bench_raw.h"
#include "ferry_opts.h"
#include "ferry_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define BATCH 256 /* messages per socket per wakeup, as in the broker */
#define MAX_PEERS 64
#define MAX_FRAMES 4

typedef struct {
    uint8_t id[FERRY_ROUTING_ID_MAX];
    size_t len;
} peer;

typedef struct {
    peer peers[MAX_PEERS];
    int n, next;
} ring;

typedef struct {
    zmq_msg_t m[MAX_FRAMES];
    int n;
} frames;

static volatile sig_atomic_t stopping;
static int signal_pipe[2] = {-1, -1};

/* zmq_poll loops inside itself (it drains socket commands between polls), so
 * a signal landing there would leave it asleep: a byte in a pipe it also
 * polls wakes it whenever the signal lands (as ferry_loop does). */
static void on_signal(int signo)
{
    (void)signo;
    stopping = 1;
    char b = 1;
    ssize_t n = write(signal_pipe[1], &b, 1);
    (void)n; /* a full pipe already holds a wake-up */
}

static void add_peer(ring *r, const void *id, size_t len)
{
    if (len == 0 || len > FERRY_ROUTING_ID_MAX)
        return;
    for (int i = 0; i < r->n; i++)
        if (r->peers[i].len == len && memcmp(r->peers[i].id, id, len) == 0)
            return;
    if (r->n == MAX_PEERS)
        return;
    memcpy(r->peers[r->n].id, id, len);
    r->peers[r->n].len = len;
    r->n++;
}

static peer *pick(ring *r)
{
    if (r->n == 0)
        return NULL;
    peer *p = &r->peers[r->next];
    r->next = (r->next + 1) % r->n;
    return p;
}

static void frames_close(frames *f)
{
    for (int i = 0; i < f->n; i++)
        zmq_msg_close(&f->m[i]);
    f->n = 0;
}

/* One whole message without blocking: 1, or 0 when none is waiting. Extra frames are dropped. */
static int recv_frames(void *socket, frames *f)
{
    f->n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t scratch;
        zmq_msg_t *m = f->n < MAX_FRAMES ? &f->m[f->n] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, socket, f->n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            frames_close(f);
            return 0;
        }
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        else
            f->n++;
    }
    return 1;
}

/* Sends an id frame then frames from..n-1 (moved out on success). 0 on success. */
static int send_after(void *socket, const void *id, size_t id_len, frames *f, int from)
{
    if (id && zmq_send(socket, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    for (int i = from; i < f->n; i++)
        if (zmq_msg_send(&f->m[i], socket, (i + 1 < f->n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
            return -1;
    return 0;
}

static int is_ready(zmq_msg_t *m)
{
    return zmq_msg_size(m) == 1 && *(const char *)zmq_msg_data(m) == BENCH_RAW_READY;
}

typedef struct {
    void *commands, *workers, *engines, *clients;
    ring wring, ering;
    unsigned long long dropped, forwarded;
} raw_broker;

static void on_commands(raw_broker *b)
{
    frames f;
    for (int i = 0; i < BATCH && recv_frames(b->commands, &f); i++) {
        peer *w = pick(&b->wring);
        if (f.n != 1 || !w || send_after(b->workers, w->id, w->len, &f, 0) != 0)
            b->dropped++;
        else
            b->forwarded++;
        frames_close(&f);
    }
}

static void on_workers(raw_broker *b)
{
    frames f;
    for (int i = 0; i < BATCH && recv_frames(b->workers, &f); i++) {
        const uint8_t *id;
        size_t id_len;
        uint64_t call_id;
        if (f.n == 2 && is_ready(&f.m[1]))
            add_peer(&b->wring, zmq_msg_data(&f.m[0]), zmq_msg_size(&f.m[0]));
        else if (f.n != 2 ||
                 !bench_raw_read(zmq_msg_data(&f.m[1]), zmq_msg_size(&f.m[1]), &id, &id_len,
                                 &call_id) ||
                 send_after(b->engines, id, id_len, &f, 1) != 0)
            b->dropped++;
        else
            b->forwarded++;
        frames_close(&f);
    }
}

static void on_engines(raw_broker *b)
{
    frames f;
    for (int i = 0; i < BATCH && recv_frames(b->engines, &f); i++) {
        if (f.n == 2 && is_ready(&f.m[1]))
            add_peer(&b->ering, zmq_msg_data(&f.m[0]), zmq_msg_size(&f.m[0]));
        else if (f.n != 3 || send_after(b->clients, NULL, 0, &f, 1) != 0)
            b->dropped++;
        else
            b->forwarded++;
        frames_close(&f);
    }
}

static void on_clients(raw_broker *b)
{
    frames f;
    for (int i = 0; i < BATCH && recv_frames(b->clients, &f); i++) {
        peer *e = pick(&b->ering);
        if (f.n != 2 || !e || send_after(b->engines, e->id, e->len, &f, 0) != 0)
            b->dropped++;
        else
            b->forwarded++;
        frames_close(&f);
    }
}

static int run_broker(void *ctx, const char *eps[4], long hwm)
{
    raw_broker b;
    memset(&b, 0, sizeof b);
    void **socks[4] = {&b.commands, &b.workers, &b.engines, &b.clients};
    const int types[4] = {ZMQ_PULL, ZMQ_ROUTER, ZMQ_ROUTER, ZMQ_ROUTER};
    int rc = 1;
    for (int i = 0; i < 4; i++) {
        ferry_socket_opts o = {
            .type = types[i], .endpoint = eps[i], .bind = 1, .hwm = (int)hwm, .linger_ms = 0};
        char err[256];
        *socks[i] = ferry_socket_open(ctx, &o, err, sizeof err);
        if (!*socks[i]) {
            fprintf(stderr, "ferry-bench-raw: %s\n", err);
            goto out;
        }
    }
    zmq_pollitem_t items[5];
    for (int i = 0; i < 4; i++)
        items[i] = (zmq_pollitem_t){.socket = *socks[i], .events = ZMQ_POLLIN};
    items[4] = (zmq_pollitem_t){.fd = signal_pipe[0], .events = ZMQ_POLLIN};
    while (!stopping) {
        if (zmq_poll(items, 5, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            fprintf(stderr, "ferry-bench-raw: poll: %s\n", zmq_strerror(zmq_errno()));
            goto out;
        }
        if (items[0].revents)
            on_commands(&b);
        if (items[1].revents)
            on_workers(&b);
        if (items[2].revents)
            on_engines(&b);
        if (items[3].revents)
            on_clients(&b);
    }
    rc = 0;
    fprintf(stderr, "raw broker: forwarded=%llu dropped=%llu workers=%d engines=%d\n", b.forwarded,
            b.dropped, b.wring.n, b.ering.n);
out:
    for (int i = 0; i < 4; i++)
        ferry_socket_close(socks[i]);
    return rc;
}

static int run_echo(void *ctx, const char *endpoint, const char *id, long hwm)
{
    ferry_socket_opts o = {.type = ZMQ_DEALER,
                           .endpoint = endpoint,
                           .routing_id = id && *id ? id : NULL,
                           .hwm = (int)hwm,
                           .linger_ms = 0};
    char err[256];
    void *s = ferry_socket_open(ctx, &o, err, sizeof err);
    if (!s) {
        fprintf(stderr, "ferry-bench-raw: %s\n", err);
        return 1;
    }
    /* With ZMQ_IMMEDIATE the announcement waits for the connection. */
    int announced = 0;
    unsigned long long echoed = 0, dropped = 0;
    zmq_pollitem_t items[2] = {{.socket = s, .events = ZMQ_POLLIN | ZMQ_POLLOUT},
                               {.fd = signal_pipe[0], .events = ZMQ_POLLIN}};
    zmq_pollitem_t *item = &items[0];
    while (!stopping) {
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (!announced && (item->revents & ZMQ_POLLOUT)) {
            char r = BENCH_RAW_READY;
            if (zmq_send(s, &r, 1, ZMQ_DONTWAIT) == 1) {
                announced = 1;
                item->events = ZMQ_POLLIN;
            }
        }
        if (!(item->revents & ZMQ_POLLIN))
            continue;
        frames f;
        for (int i = 0; i < BATCH && recv_frames(s, &f); i++) {
            if (send_after(s, NULL, 0, &f, 0) == 0)
                echoed++;
            else
                dropped++;
            frames_close(&f);
        }
    }
    fprintf(stderr, "raw echo: echoed=%llu dropped=%llu\n", echoed, dropped);
    ferry_socket_close(&s);
    return 0;
}

int main(int argc, char **argv)
{
    const char *clients = NULL, *commands = NULL, *engines = NULL, *workers = NULL;
    const char *connect = NULL, *id = NULL;
    long hwm = 100000;
    const ferry_opt opts[] = {
        {"clients", NULL, FERRY_OPT_STRING, &clients, "broker: ROUTER endpoint for clients", 0, 0},
        {"commands", NULL, FERRY_OPT_STRING, &commands, "broker: PULL endpoint for commands", 0, 0},
        {"engines", NULL, FERRY_OPT_STRING, &engines, "broker: ROUTER endpoint for engines", 0, 0},
        {"workers", NULL, FERRY_OPT_STRING, &workers, "broker: ROUTER endpoint for workers", 0, 0},
        {"connect", NULL, FERRY_OPT_STRING, &connect, "echo: endpoint the DEALER connects to", 0,
         0},
        {"id", NULL, FERRY_OPT_STRING, &id, "echo: routing id of the DEALER", 0, 0},
        {"hwm", NULL, FERRY_OPT_INT, &hwm, "send and receive high-water mark", 1, 10000000},
    };
    const ferry_cli cli = {
        .program = "ferry-bench-raw",
        .synopsis = "[options] broker|echo",
        .summary = "The raw libzmq baseline of ferry-bench: a broker forwarding frames "
                   "between PULL and ROUTER sockets, and an echoing DEALER for the worker "
                   "and engine sides. No protobuf, no Lua.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
        .positional = 1,
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 1, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;
    const char *role = next < argc ? argv[next] : NULL;
    int is_broker = role && strcmp(role, "broker") == 0;
    int is_echo = role && strcmp(role, "echo") == 0;
    if (!is_broker && !is_echo) {
        fprintf(stderr, "ferry-bench-raw: give a role: broker or echo\n");
        return 2;
    }
    if (is_broker && (!clients || !commands || !engines || !workers)) {
        fprintf(stderr, "ferry-bench-raw: broker needs --clients --commands --engines --workers\n");
        return 2;
    }
    if (is_echo && !connect) {
        fprintf(stderr, "ferry-bench-raw: echo needs --connect\n");
        return 2;
    }

    if (pipe(signal_pipe) != 0) {
        fprintf(stderr, "ferry-bench-raw: pipe: %s\n", strerror(errno));
        return 1;
    }
    for (int i = 0; i < 2; i++)
        fcntl(signal_pipe[i], F_SETFL, fcntl(signal_pipe[i], F_GETFL) | O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: zmq_poll returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    void *ctx = zmq_ctx_new();
    if (!ctx) {
        fprintf(stderr, "ferry-bench-raw: zmq_ctx_new: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    const char *eps[4] = {commands, workers, engines, clients};
    rc = is_broker ? run_broker(ctx, eps, hwm) : run_echo(ctx, connect, id, hwm);
    zmq_ctx_term(ctx);
    return rc;
}

/*
 * bench_path: the bench playing an engine (or a client) on one socket path.
 *
 * In Ferry mode it is an engine without Lua: a PUSH to the broker's commands
 * endpoint and a DEALER, whose routing id is its engine id, to the engines
 * endpoint; it sends Hello, encodes each call as a protobuf Command exactly
 * as ferry-engine does (lib/ferry_wire.h) and decodes and checks each Reply.
 * That isolates the call path (broker + worker + protobuf) from the script
 * machinery and lets every call be timed on its own.
 *
 * In raw mode it does the same through ferry-bench-raw with the bench_raw.h
 * format: the same sockets and frames, no protobuf.
 *
 * In raw client mode it is a DEALER on the clients endpoint whose messages
 * a raw broker hands to a raw engine and back: the baseline of scripts/s.
 *
 * Call ids with BENCH_PROBE_BIT set are the readiness probes; measurements
 * ignore answers that carry it.
 */
#ifndef BENCH_PATH_H
#define BENCH_PATH_H

#include "ferry_err.h"
#include "ferry_wire.h"

#include <stddef.h>
#include <stdint.h>

#define BENCH_PROBE_BIT ((uint64_t)1 << 62)

typedef enum {
    BENCH_PATH_FERRY,      /* protobuf Commands through ferry-broker */
    BENCH_PATH_RAW,        /* raw frames through ferry-bench-raw broker */
    BENCH_PATH_RAW_CLIENT, /* raw frames on the clients endpoint (scripts baseline) */
} bench_path_kind;

typedef struct {
    bench_path_kind kind;
    void *ctx;
    void *push;   /* commands (NULL for a raw client) */
    void *dealer; /* replies in; for a raw client, messages out too */
    char id[FERRY_ROUTING_ID_MAX + 1];
    size_t id_len;
    const char *function; /* Ferry mode: the function every call names */
    int64_t arg;          /* its one integer argument */
    uint32_t timeout_ms;  /* Command.timeout_ms */
    size_t raw_size;      /* raw modes: bytes per message */
    uint64_t errors;      /* replies that carried an error or did not check out */
    char last_error[128]; /* the code and message of the last one */
    int64_t last_heartbeat_ns;
    uint64_t received;    /* replies received (Ferry mode), for the heartbeat check */
    Ferry__Envelope *batch; /* a Batch of Replies being read (owned), batch_next the next item */
    size_t batch_next;
    int broker_batches;   /* the broker sent a Batch: it takes ours (protocol.md, Batches) */
    ferry_batch out;      /* Commands sent since the last receive: they go as one message
                           * when the bench turns to its answers, as an engine's loop turn */
} bench_path;

/*
 * Connects to the endpoints (commands is NULL for a raw client) and waits up
 * to timeout_ms for both connections. 0, or -1 with a message in err.
 */
int bench_path_open(bench_path *p, bench_path_kind kind, const char *commands, const char *replies,
                    int timeout_ms, char *err, size_t errlen);

/* bench_path_open with CURVE (borrowed until bench_path_close; NULL or off: none). */
int bench_path_open_curve(bench_path *p, bench_path_kind kind, const char *commands,
                          const char *replies, const ferry_curve *curve, int timeout_ms, char *err,
                          size_t errlen);

void bench_path_close(bench_path *p);

/* Sends one call (Ferry: Command{function, [arg]}; raw: a raw_size frame).
 * FERRY_EOVERLOADED when the high-water mark is reached. In Ferry mode, once
 * the broker sent a Batch, the Commands sent before the next bench_path_recv
 * go together in one message when it starts (as ferry-engine gathers those of
 * one loop turn). */
ferry_err bench_path_send(bench_path *p, uint64_t call_id);

/*
 * Receives one answer, waiting up to timeout_ms (0: only what is there
 * already). 1 with *call_id, 0 when none came in time, -1 on a socket error.
 * An answer with an error still returns 1 (and counts in p->errors).
 */
int bench_path_recv(bench_path *p, int timeout_ms, uint64_t *call_id);

/* Sends probes until one comes back, within timeout_ms: the whole path works. 0 or -1. */
int bench_path_probe(bench_path *p, int timeout_ms);

/* The packed size of the Command this path sends (Ferry mode), for the raw baseline. */
size_t bench_path_command_size(const bench_path *p);

#endif

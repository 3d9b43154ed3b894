/*
 * ferry_wire: envelopes on ZeroMQ sockets.
 *
 * Every Ferry message is one Envelope protobuf in one frame; a ROUTER socket
 * adds the peer's routing id as a frame before it. This module opens sockets
 * with the options every Ferry socket needs (linger, router-mandatory,
 * maximum message size), receives whole multi-frame messages without
 * blocking, and packs envelopes straight into ZeroMQ message buffers.
 *
 * Ownership: decoded envelopes belong to the caller (ferry_envelope_free).
 * A decoded envelope lives in one arena: every submessage, string and array
 * in it is freed together with it, never on its own, and must not be kept
 * past ferry_envelope_free (copy what must live longer).
 * Sends never take ownership of an envelope; ferry_wire_forward takes the
 * body message only when the send succeeds (so the caller may answer
 * or retry).
 */
#ifndef FERRY_WIRE_H
#define FERRY_WIRE_H

#include "ferry.pb-c.h"
#include "ferry_cert.h"
#include "ferry_codec.h"
#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define FERRY_MAX_FRAMES 4
#define FERRY_ROUTING_ID_MAX 255
#define FERRY_DEFAULT_MAX_MSG (16 * 1024 * 1024)

/*
 * The one rule for a function name (FunctionSpec.name, Command.function):
 * 1 to FERRY_FUNCTION_NAME_MAX bytes of strict UTF-8 without zero bytes.
 * True when the len bytes at name keep it. The broker (Ready, Command), the
 * engine (ferry.call, ferry.all) and the worker API (registration) all ask
 * this.
 */
int ferry_wire_function_name_ok(const char *name, size_t len);

/*
 * One received message. The data and size of each frame are read once, as
 * it arrives (ferry_frame_data and ferry_frame_size cost no libzmq call),
 * and stay valid until the frame is closed, sent or moved.
 */
typedef struct {
    zmq_msg_t frames[FERRY_MAX_FRAMES];
    const void *data[FERRY_MAX_FRAMES]; /* zmq_msg_data of each frame held */
    size_t size[FERRY_MAX_FRAMES];      /* zmq_msg_size of each frame held */
    int count;                          /* frames received and held (at most FERRY_MAX_FRAMES) */
    int truncated;                      /* more frames arrived than fit; they were discarded */
    unsigned open;                      /* bit i: frames[i] still holds its message, which
                                         * ferry_frames_close closes (see ferry_frame_moved) */
} ferry_frames;

typedef struct {
    int type;           /* ZMQ_ROUTER, ZMQ_DEALER, ZMQ_PUSH, ZMQ_PULL */
    const char *endpoint;
    int bind;           /* bind when true, connect otherwise */
    const char *routing_id; /* DEALER identity, or NULL */
    int64_t max_msg;    /* ZMQ_MAXMSGSIZE (largest inbound message); 0: FERRY_DEFAULT_MAX_MSG */
    int hwm;            /* send and receive high-water mark; 0: libzmq's default */
    int linger_ms;      /* ZMQ_LINGER; 0 drops unsent messages on close */
    const ferry_curve *curve; /* CURVE (borrowed; NULL or off: none): a bound socket is a
                               * CURVE server asking ZAP about each peer in zap_domain,
                               * a connecting one a client of curve->server_key */
    const char *zap_domain;   /* ZMQ_ZAP_DOMAIN of a bound CURVE socket: the peer's role */
} ferry_socket_opts;

/* ZMQ_HANDSHAKE_IVL of every CURVE socket: a handshake that has not finished by
 * then is dropped (and retried by a connecting socket). */
#define FERRY_HANDSHAKE_MS 5000

/*
 * Opens a socket with opts. On failure returns NULL and writes a message
 * naming the endpoint and the reason into err.
 */
void *ferry_socket_open(void *ctx, const ferry_socket_opts *opts, char *err, size_t errlen);

/* Closes socket (NULL-safe) and nulls the pointer. */
void ferry_socket_close(void **socket);

/*
 * Receives one whole message without blocking. FERRY_OK with f filled,
 * FERRY_ETIMEOUT when nothing is waiting, FERRY_EIO on another failure.
 * Always ferry_frames_close(f) after FERRY_OK.
 */
ferry_err ferry_frames_recv(void *socket, ferry_frames *f);

/* Closes the frames of f that are still open (not sent or moved out).
 * Inline: a broker closes two messages per call, mostly with one frame open
 * or none. */
static inline void ferry_frames_close(ferry_frames *f)
{
    for (int i = 0; f->open; i++) {
        if (f->open & (1u << i)) {
            zmq_msg_close(&f->frames[i]);
            f->open &= ~(1u << i);
        }
    }
    f->count = 0;
}

/*
 * frames[i] was sent (zmq_msg_send or ferry_wire_forward succeeded) or moved
 * out (zmq_msg_move): it is an empty message now, which needs no closing, so
 * ferry_frames_close skips it (a libzmq call saved per message routed on).
 * Its data and size are no longer valid.
 */
static inline void ferry_frame_moved(ferry_frames *f, int i)
{
    f->open &= ~(1u << i);
}

static inline const void *ferry_frame_data(const ferry_frames *f, int i)
{
    return f->data[i];
}

static inline size_t ferry_frame_size(const ferry_frames *f, int i)
{
    return f->size[i];
}

/*
 * Packs env and sends it without blocking, after a routing-id frame when rid
 * is not NULL. FERRY_EOVERLOADED when the peer's queue is full,
 * FERRY_EUNREACHABLE when a ROUTER has no such peer, FERRY_ENOMEM, FERRY_EIO.
 */
ferry_err ferry_wire_send(void *socket, const void *rid, size_t rid_len,
                          const Ferry__Envelope *env);

/* ferry_wire_send for a caller that has computed size =
 * ferry_envelope_packed_size(env) already (it walks the whole message). */
ferry_err ferry_wire_send_sized(void *socket, const void *rid, size_t rid_len,
                                const Ferry__Envelope *env, size_t size);

/*
 * Sends body unchanged after a routing-id frame when rid is not NULL. Takes
 * ownership of body only on FERRY_OK; otherwise body is untouched.
 */
ferry_err ferry_wire_forward(void *socket, const void *rid, size_t rid_len, zmq_msg_t *body);

/*
 * An outgoing batch (protocol.md, Batches): envelopes for one peer gathered
 * during one loop turn and sent as one message when the turn ends. A lone
 * envelope goes as itself, so a peer that sees one message at a time sees
 * exactly what it would without batches.
 *
 * Ownership: the batch owns its buffer (allocated on first use, kept for
 * reuse until ferry_batch_fini).
 */
typedef struct {
    uint8_t *body;    /* the Batch body: items, each with its key and length */
    size_t len;       /* bytes of body in use */
    size_t count;     /* items in it */
    size_t first_off; /* where the first item's bytes start, first_len of them */
    size_t first_len;
    size_t max;       /* the most bytes the whole message may take */
} ferry_batch;

/* An empty batch whose messages stay within max_msg (0: FERRY_DEFAULT_MAX_MSG)
 * and FERRY_BATCH_BYTES_MAX. */
void ferry_batch_init(ferry_batch *b, int64_t max_msg);

/* Whether an envelope of len bytes may go in a batch at all. */
static inline int ferry_batch_fits(const ferry_batch *b, size_t len)
{
    return len <= FERRY_BATCH_ITEM_MAX && ferry_batch_item_size(len) + 8 <= b->max;
}

/*
 * Room for one more item of len bytes (ferry_batch_fits): where the caller
 * writes them. NULL when the batch is too full for it (send it first) or
 * there is no memory (FERRY_ENOMEM in *err; else FERRY_OK).
 */
uint8_t *ferry_batch_add(ferry_batch *b, size_t len, ferry_err *err);

/*
 * Sends what b holds, without blocking, after a routing-id frame when rid is
 * not NULL: one item as itself, several as one Batch envelope. FERRY_OK when
 * b is empty. Errors as ferry_wire_send. b keeps its items either way (the
 * caller may walk them with ferry_batch_next on body, len): ferry_batch_clear
 * it after.
 */
ferry_err ferry_batch_send(ferry_batch *b, void *socket, const void *rid, size_t rid_len);

/* Empties b (keeps its buffer). */
static inline void ferry_batch_clear(ferry_batch *b)
{
    b->len = 0;
    b->count = 0;
}

/* Frees b's buffer. */
void ferry_batch_fini(ferry_batch *b);

/*
 * Watches the connections of socket: returns a PAIR socket (to add to the
 * loop) on which each ZMQ_EVENT_* in events arrives; read them with
 * ferry_monitor_recv. NULL with a message in err on failure. Close it with
 * ferry_monitor_close before closing socket.
 */
void *ferry_monitor_open(void *ctx, void *socket, int events, char *err, size_t errlen);

/* Stops monitoring socket and closes *monitor (NULL-safe); nulls the pointer. */
void ferry_monitor_close(void *socket, void **monitor);

/*
 * Receives one connection event without blocking: FERRY_OK with *event set
 * (ZMQ_EVENT_CONNECTED, ZMQ_EVENT_DISCONNECTED, ...), FERRY_ETIMEOUT when
 * none is waiting.
 */
ferry_err ferry_monitor_recv(void *monitor, uint16_t *event);

/* Writes "<prefix>-<hostname>-<pid>-<8 random hex>" into out: unique per process start. */
void ferry_make_id(const char *prefix, char *out, size_t outlen);

#endif

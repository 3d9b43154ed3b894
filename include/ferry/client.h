/*
 * ferry/client.h: submit Lua scripts to a Ferry broker from C.
 *
 *   ferry_client *c = ferry_client_new("tcp://localhost:5558", err, sizeof err);
 *   ferry_result r;
 *   if (ferry_client_run(c, src, len, "hello.lua", NULL, 0, 5000, &r) == FERRY_OK) {
 *       if (ferry_result_ok(&r)) ... ferry_result_value(&r, 0) ...
 *       else ... ferry_result_error_code(&r), ferry_result_error_message(&r) ...
 *       ferry_result_fini(&r);
 *   }
 *   ferry_client_destroy(&c);
 *
 * One client is one DEALER socket per broker; it may have many scripts in
 * flight at once (ferry_client_submit, then ferry_client_wait for each
 * result as it arrives). A client is not thread-safe: use one per thread.
 *
 * Several brokers: the endpoint may be a comma-separated list of the
 * brokers' clients endpoints. Submissions go to each in turn; one that is
 * not connected (down, not there yet) is passed over for the next, so a
 * script goes to a broker that is up without waiting. A broker that drops
 * while scripts submitted through it run loses them: the wait fails
 * FERRY_EBROKER_LOST and ferry_client_take_lost names them; the scripts
 * through the other brokers are not affected.
 */
#ifndef FERRY_CLIENT_H
#define FERRY_CLIENT_H

#include "ferry/value.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ferry_client ferry_client;
typedef struct Ferry__Envelope Ferry__Envelope;
typedef struct Ferry__Result Ferry__Result;

/*
 * A script's result. Owns the decoded message; release with
 * ferry_result_fini. Read it with the ferry_result_* functions below (the
 * fields are the Result message of proto/ferry.proto, for Ferry's own code).
 */
typedef struct {
    Ferry__Envelope *envelope;   /* owned */
    const Ferry__Result *result; /* inside envelope */
} ferry_result;

/* True when the script returned; false when it failed (see the error). */
int ferry_result_ok(const ferry_result *r);

/* The request id of the submission this answers (ferry_client_submit). */
uint64_t ferry_result_request_id(const ferry_result *r);

/* How many values the script returned, and value i of them (NULL when i is past
 * the end); borrowed from r until ferry_result_fini. */
size_t ferry_result_nvalues(const ferry_result *r);
const Ferry__Value *ferry_result_value(const ferry_result *r, size_t i);

/* What the script printed (bytes, not NUL-terminated; *len set), borrowed from r. */
const char *ferry_result_output(const ferry_result *r, size_t *len);

/* A failed script's error code ("script_error", "timeout", a code of the script's
 * own...) and message, borrowed from r; NULL when the script returned. */
const char *ferry_result_error_code(const ferry_result *r);
const char *ferry_result_error_message(const ferry_result *r);

/* Connects to the broker's clients endpoint, or to each of a comma-separated
 * list of them (at most 16). NULL with a message in err on failure. */
ferry_client *ferry_client_new(const char *endpoint, char *err, size_t errlen);

/*
 * ferry_client_new with CURVE: curve_key is this client's secret certificate
 * file, broker_key the broker's public certificate file (czmq zcert files, as
 * `ferry keygen` and zmakecert write them), or, with several brokers, one
 * for all or a comma-separated list in the order of the endpoints; both
 * NULL: no CURVE. A broker that refuses the key is passed over; when every
 * broker refuses it, submissions and waits fail with FERRY_EAUTH at once.
 */
ferry_client *ferry_client_new_curve(const char *endpoint, const char *curve_key,
                                     const char *broker_key, char *err, size_t errlen);

/*
 * A client of every broker that name resolves to (every address; tests:
 * FERRY_DISCOVER_HOSTS, lib/ferry_discover.h), on the port of endpoint (its
 * host unused; NULL: tcp://localhost:5558), one CURVE broker_key for all
 * (both NULL: none). The name is resolved again every 3 s while the client
 * submits or waits: new addresses are used, the submissions through one
 * that is gone are lost (FERRY_EBROKER_LOST). NULL with a message in err.
 */
ferry_client *ferry_client_new_discover(const char *name, const char *endpoint,
                                       const char *curve_key, const char *broker_key, char *err,
                                       size_t errlen);

/*
 * Largest message this client sends or takes, in bytes (default 16 MiB, as
 * the broker's --max-msg; give it the broker's). A bigger Submit fails with
 * FERRY_ELIMIT before anything is sent: the broker would drop the connection
 * over it. Opens the socket again, so call it before the first submission.
 * FERRY_EUSAGE for bytes <= 0, FERRY_EIO (message in err) when the socket
 * cannot be opened again.
 */
ferry_err ferry_client_set_max_msg(ferry_client *c, int64_t bytes, char *err, size_t errlen);

/* Closes the socket and frees the client (NULL-safe); nulls *c. */
void ferry_client_destroy(ferry_client **c);

/*
 * Sends a script without waiting for its result. args are borrowed.
 * timeout_ms is the script's deadline (0: the broker's --script-timeout). Gives
 * the request id that the matching result carries. FERRY_EUNREACHABLE when the
 * broker cannot be reached within the connect timeout, FERRY_EAUTH when it
 * refused this client's handshake, FERRY_ELIMIT (nothing sent) when the Submit
 * would be larger than the message limit (ferry_client_set_max_msg).
 */
ferry_err ferry_client_submit(ferry_client *c, const void *source, size_t len, const char *name,
                              Ferry__Value *const *args, size_t nargs, uint32_t timeout_ms,
                              uint64_t *request_id);

/*
 * Waits up to timeout_ms for the next result of any submitted script.
 * FERRY_ETIMEOUT when none arrives in time; FERRY_EBROKER_LOST at once when
 * the connection to a broker drops while results are pending through it
 * (those are lost then: ferry_client_take_lost gives their request ids; the
 * results through other brokers still come). Messages that are not results
 * are skipped.
 */
ferry_err ferry_client_wait(ferry_client *c, int timeout_ms, ferry_result *out);

/* The next request id lost with its broker (oldest first): 1 and *request_id,
 * or 0 when none is left. */
int ferry_client_take_lost(ferry_client *c, uint64_t *request_id);

/* Brokers in the endpoint list. */
size_t ferry_client_brokers(const ferry_client *c);

/*
 * Submits and waits for that script's result: up to its deadline plus a
 * grace period (or 30 s with timeout_ms 0 plus the grace). FERRY_EBROKER_LOST
 * only when this script's broker dropped while it ran.
 */
ferry_err ferry_client_run(ferry_client *c, const void *source, size_t len, const char *name,
                           Ferry__Value *const *args, size_t nargs, uint32_t timeout_ms,
                           ferry_result *out);

/* Asks a broker (the next in turn that is connected) for its counters; *out
 * is owned by the caller (ferry_envelope_free). Reading the Stats message
 * needs the generated protobuf header: meant for Ferry's own tools (ferry
 * stats); others read `ferry stats --json`. */
ferry_err ferry_client_stats(ferry_client *c, int timeout_ms, Ferry__Envelope **out);

/* Frees an envelope ferry_client_stats gave (NULL-safe). */
void ferry_envelope_free(Ferry__Envelope *env);

void ferry_result_fini(ferry_result *r);

/* Limits later submissions ask for; 0 leaves one to the engine. An engine
 * never grants more than its own flags allow. */
typedef struct {
    uint64_t max_memory;       /* bytes of the script's Lua state */
    uint64_t max_instructions; /* VM instructions plus metered C steps */
    uint64_t max_output;       /* bytes of captured print output */
} ferry_limits;

/* Sets the limits every later ferry_client_submit/run asks for (NULL: none). */
void ferry_client_set_limits(ferry_client *c, const ferry_limits *limits);

/* How long ferry_client_submit waits for a connection to the broker, in ms (default 3000). */
void ferry_client_set_connect_timeout(ferry_client *c, int ms);

/* Milliseconds ferry_client_run waits beyond the script's deadline: past the
 * broker's own 5 s (it answers timeout then for a script whose engine never
 * did), so that a broker that is there always has the last word. */
#define FERRY_CLIENT_GRACE_MS 6000

#endif

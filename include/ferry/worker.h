/*
 * ferry/worker.h: the C API for writing Ferry workers.
 *
 * A worker is one process, one thread, one event loop. It connects a DEALER
 * to the broker's workers socket, announces the functions registered here
 * (Ready: name, idempotent, and its credit), and runs every Command it
 * receives by calling the handler registered under the Command's function
 * name. A handler answers at once, or later from a timer or file-descriptor
 * callback of the same loop: thousands of calls can be in flight and none
 * holds a thread. ferry-worker itself is built on this API.
 *
 *   static void add(ferry_call *call, void *udata)
 *   {
 *       int64_t a, b;
 *       if (ferry_call_arg_int(call, 0, &a) != FERRY_OK) {
 *           ferry_call_fail_arg(call, 0, "integer");
 *           return;
 *       }
 *       if (ferry_call_arg_int(call, 1, &b) != FERRY_OK) {
 *           ferry_call_fail_arg(call, 1, "integer");
 *           return;
 *       }
 *       ferry_call_return_values(call, 1, ferry_value_int(a + b));
 *   }
 *
 *   ferry_worker *w = ferry_worker_new(&cfg, err, sizeof err);
 *   ferry_worker_register(w, "add", add, NULL, &(ferry_function_opts){.idempotent = 1});
 *   ferry_worker_run(w);        // until SIGINT/SIGTERM or ferry_worker_stop
 *   ferry_worker_destroy(&w);
 *
 * The life of a call
 *
 *   The library creates a ferry_call for each Command and hands it to the
 *   handler. The call must be answered exactly once: ferry_call_return*
 *   (values) or ferry_call_fail* (an Error{code, message}). The answer sends
 *   the Reply and the library frees the call: from then on the pointer is
 *   dead. (Inside a handler, ferry_call_after or cancel callback the free
 *   waits until that callback returns, so a second answer there is caught
 *   and refused with FERRY_EUSAGE; anywhere else it is a use after free.)
 *
 * Deadlines
 *
 *   A Command carries timeout_ms (0: none). When it passes before the
 *   handler answered, the worker replies `timeout` itself and then calls
 *   the call's cancel callback (ferry_call_on_cancel) with FERRY_ETIMEOUT.
 *   The call stays allocated, and the handler still owes its one answer:
 *   that answer sends nothing (it returns FERRY_ETIMEOUT) and frees the
 *   call. A handler that holds resources for the call (a timer, a socket)
 *   should set a cancel callback that releases them and answers at once;
 *   ferry_call_after timers keep running after a timeout so that a handler
 *   without a cancel callback still gets to answer. This way no pointer a
 *   handler holds ever dangles.
 *
 *   The time starts when the call gets a deadline: when its handler returns
 *   without having answered, or earlier when the call waits for a slot
 *   (max_concurrency) or the handler asks ferry_call_remaining_ms. A handler
 *   does not block the loop, so that is when the Command came, give or take
 *   the handler's own run; a call answered by its handler never reads the
 *   clock. Should the worker run out of memory arming a deadline, it answers
 *   `out_of_memory` for the handler in the same way (cancel reason
 *   FERRY_ENOMEM).
 *
 * Shutdown
 *
 *   ferry_worker_destroy cancels every call still unanswered (the cancel
 *   callback runs with FERRY_EWORKER_LOST, answers then send nothing) and
 *   then frees it, answered or not: free your own per-call state in the
 *   cancel callback.
 *
 * Values
 *
 *   Arguments and results are Ferry values (ferry/value.h builds, reads,
 *   copies and frees them, with its one ownership rule). Arguments are
 *   borrowed from the call and live until it is answered. Results are
 *   handed over: the answer functions take the values and the malloc'd
 *   array holding them, whatever they return. A NULL among the values (a
 *   constructor that ran out of memory) turns the answer into an
 *   `out_of_memory` error.
 *
 * Threads: none. Every function here must be called from the loop's thread.
 */
#ifndef FERRY_WORKER_H
#define FERRY_WORKER_H

#include "ferry/timer.h"
#include "ferry/value.h"

#include <stddef.h>
#include <stdint.h>

#define FERRY_WORKER_DEFAULT_ENDPOINT "tcp://localhost:5557"
#define FERRY_WORKER_DEFAULT_CONCURRENCY 1024
#define FERRY_WORKER_MAX_CONCURRENCY 1000000
#define FERRY_WORKER_DEFAULT_HEARTBEAT_MS 1000
#define FERRY_WORKER_DEFAULT_LIVENESS 3
#define FERRY_WORKER_DEFAULT_DRAIN_MS 10000
#define FERRY_WORKER_DEFAULT_MAX_MSG (16 * 1024 * 1024)

/* Readiness of a watched file descriptor (ferry_worker_watch_fd); the values of
 * poll's and ZeroMQ's own. */
#define FERRY_POLLIN 1
#define FERRY_POLLOUT 2
#define FERRY_POLLERR 4

typedef struct ferry_worker ferry_worker;
typedef struct ferry_call ferry_call;

/* Runs one call (and any ferry_call_after continuation of it). */
typedef void (*ferry_handler)(ferry_call *call, void *udata);

/* The call will not be answered to the engine any more: reason is FERRY_ETIMEOUT
 * (the worker replied `timeout`), FERRY_ENOMEM (it replied `out_of_memory`: no
 * memory for the call's deadline) or FERRY_EWORKER_LOST (the worker is shutting
 * down). The callback may answer the call (nothing is sent); see the top. */
typedef void (*ferry_cancel_fn)(ferry_call *call, ferry_err reason, void *arg);

/* A watched file descriptor is ready: revents holds FERRY_POLLIN/POLLOUT/POLLERR. */
typedef void (*ferry_fd_fn)(ferry_worker *w, int fd, short revents, void *arg);

typedef struct {
    const char *endpoint; /* broker workers socket, or a comma-separated list of several
                             brokers' (docs/protocol.md#several-brokers); NULL:
                             FERRY_WORKER_DEFAULT_ENDPOINT */
    const char *id;       /* routing id, at most 255 bytes; NULL: ferry_make_id("worker") */
    unsigned concurrency; /* calls at once, announced as credit; 0: default; capped at max */
    int64_t max_msg;      /* largest Command or Reply, bytes; 0: FERRY_WORKER_DEFAULT_MAX_MSG */
    int heartbeat_ms;     /* Heartbeat period; 0: default (1000), < 0: none */
    int liveness;         /* heartbeat periods of broker silence before Ready is sent again;
                             0: default (3) */
    int drain_ms;         /* on SIGTERM, how long calls in flight may take to finish;
                             0: default (10000), < 0: no drain, stop at once */
    const char *curve_key;  /* this worker's secret certificate file (ferry keygen, zmakecert);
                               with broker_key: CURVE towards the broker. NULL: none */
    const char *broker_key; /* the broker's public certificate file; several brokers: one for
                               all, or a comma-separated list in the order of endpoint */
    const char *discover;   /* NULL, or a name whose every address is a broker, connected to
                               on endpoint's port (its host unused), resolved again every
                               discover_ms: new addresses are served, gone ones dropped */
    int discover_ms;        /* 0: every 3000 ms */
    const char *log_role;   /* the role named in the library's log lines (on stderr;
                               FERRY_LOG_LEVEL sets the level); NULL: "ferry" */
} ferry_worker_config;

typedef struct {
    int idempotent;           /* safe to run again elsewhere if this worker is lost */
    unsigned max_concurrency; /* calls of this function running at once; 0: no own limit.
                                 Calls beyond it wait here, in order, deadline running. */
} ferry_function_opts;

typedef struct {
    uint64_t received;   /* Commands accepted for a registered function */
    uint64_t completed;  /* Replies with values */
    uint64_t failed;     /* Replies with an error: timeouts and refusals included */
    uint64_t timed_out;  /* replied `timeout` by the worker */
    uint64_t late;       /* answers that came after the timeout, discarded */
    uint64_t dropped;    /* undecodable or unexpected messages */
    uint64_t reply_lost; /* replies the socket refused (no broker, queue full) */
    size_t in_flight;    /* calls awaiting their reply: running and queued */
    size_t queued;       /* calls waiting for a per-function slot */
    size_t zombies;      /* timed out, the handler still owes its answer */
} ferry_worker_stats;

/* ---- the worker ---------------------------------------------------------- */

/*
 * Makes a worker: its ZeroMQ context, the DEALER connected to cfg->endpoint
 * (cfg may be NULL for all defaults) and its loop. Nothing is sent until the
 * connection to the broker is up; Ready goes out then, and again after every
 * reconnection. Returns NULL and a message in err on failure.
 */
ferry_worker *ferry_worker_new(const ferry_worker_config *cfg, char *err, size_t errlen);

/* Cancels and frees every call, closes the sockets, frees w (NULL-safe) and nulls *w. */
void ferry_worker_destroy(ferry_worker **w);

/*
 * Serves name with fn (udata is passed to every call of it); opts may be
 * NULL. Names are copied. May be called while running: Ready is sent again.
 * FERRY_EUSAGE for a name that is not 1 to 255 bytes of UTF-8, or one already
 * registered, FERRY_ENOMEM.
 */
ferry_err ferry_worker_register(ferry_worker *w, const char *name, ferry_handler fn, void *udata,
                                const ferry_function_opts *opts);

/*
 * Runs the loop until ferry_worker_stop, or a signal: the first SIGINT or
 * SIGTERM drains (Goodbye to the broker, which sends no more calls; the calls
 * in flight finish, for up to drain_ms; then it returns), a second one stops
 * at once. FERRY_EIO when polling fails.
 */
ferry_err ferry_worker_run(ferry_worker *w);

/* Makes ferry_worker_run return after the current loop iteration. */
void ferry_worker_stop(ferry_worker *w);

/* The routing id the worker uses at the broker; borrowed from w. */
const char *ferry_worker_id(const ferry_worker *w);

/* Arms timer (ferry_timer_init'ed, owned by the caller) after_ms from now;
 * re-arms it when armed. FERRY_ENOMEM when the heap cannot grow. */
ferry_err ferry_worker_timer_start(ferry_worker *w, ferry_timer *timer, int64_t after_ms);

/* Disarms timer; a no-op when it is not armed. */
void ferry_worker_timer_stop(ferry_worker *w, ferry_timer *timer);

/*
 * Calls fn whenever fd is ready for events (FERRY_POLLIN | FERRY_POLLOUT), or
 * changes the events and callback of an fd already watched. After
 * ferry_worker_unwatch_fd, fn is never called again for that watch, not even
 * for readiness seen in the same loop iteration, so arg may be freed at once.
 * Readiness can be spurious (as with poll): use non-blocking fds.
 * FERRY_EOVERLOADED when the loop watches all it can (64 items, a few of them the
 * worker's own sockets). A function with many descriptors (one per
 * connection) keeps them in an epoll set of its own and watches that one fd, as
 * http.get does (workers/functions/http.c).
 */
ferry_err ferry_worker_watch_fd(ferry_worker *w, int fd, short events, ferry_fd_fn fn, void *arg);

/* Stops watching fd; a no-op when it is not watched. */
void ferry_worker_unwatch_fd(ferry_worker *w, int fd);

void ferry_worker_get_stats(const ferry_worker *w, ferry_worker_stats *out);

/* ---- one call ------------------------------------------------------------ */

/* The function name, the engine's call id and the worker; borrowed, valid until the answer. */
const char *ferry_call_function(const ferry_call *call);
uint64_t ferry_call_id(const ferry_call *call);
ferry_worker *ferry_call_worker(const ferry_call *call);

/* Milliseconds left before the worker replies `timeout` (0 once past), -1 with no deadline.
 * Asked inside the handler's first run, it starts the deadline (see Deadlines). */
int64_t ferry_call_remaining_ms(const ferry_call *call);

/* True once the worker replied `timeout` for this call (or `out_of_memory` in its place,
 * see Deadlines): an answer now sends nothing. */
int ferry_call_timed_out(const ferry_call *call);

/* A pointer of the handler's own, kept with the call (NULL at first). */
void ferry_call_set_data(ferry_call *call, void *data);
void *ferry_call_data(const ferry_call *call);

/* Arguments, numbered from 0 (error messages number them from 1, as Lua does). */
size_t ferry_call_nargs(const ferry_call *call);

/* Argument i, borrowed until the answer; NULL when i >= nargs (a Lua "no value").
 * A nil argument is a Value with kind NIL or NOT_SET. */
const Ferry__Value *ferry_call_arg(const ferry_call *call, size_t i);

/*
 * Typed reads of argument i. FERRY_OK with *out set, or FERRY_EBADARG (and
 * *out untouched) when the argument is missing or of another kind:
 *   _int:    an integer, or a float with an exact integer value (3.0);
 *   _number: an integer or a float, as a double;
 *   _string: a string, binary-safe: *data is borrowed, not NUL-terminated;
 *   _bool:   a boolean.
 */
ferry_err ferry_call_arg_int(const ferry_call *call, size_t i, int64_t *out);
ferry_err ferry_call_arg_number(const ferry_call *call, size_t i, double *out);
ferry_err ferry_call_arg_string(const ferry_call *call, size_t i, const char **data, size_t *len);
ferry_err ferry_call_arg_bool(const ferry_call *call, size_t i, int *out);

/*
 * Answers with n values (values may be NULL when n is 0). Takes ownership of
 * the values and the array. Returns FERRY_OK when the Reply went out,
 * FERRY_ETIMEOUT when the call had timed out (nothing sent),
 * FERRY_EWORKER_LOST during shutdown (nothing sent), FERRY_EUSAGE when the
 * call was already answered (only detectable inside a handler, see the top),
 * or the send's error (the Reply is lost; the call is answered all the same).
 */
ferry_err ferry_call_return(ferry_call *call, Ferry__Value **values, size_t n);

/* ferry_call_return with n Ferry__Value * arguments, each taken over. */
ferry_err ferry_call_return_values(ferry_call *call, size_t n, ...);

/* Answers with Error{code, message}; code is not FERRY_OK. Returns as ferry_call_return. */
ferry_err ferry_call_fail(ferry_call *call, ferry_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The same with a code of the function's own ("http_status"), non-empty. */
ferry_err ferry_call_fail_code(ferry_call *call, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Answers `bad_argument` in Lua's words:
 * "bad argument #2 to 'sleep' (number expected, got string)". */
ferry_err ferry_call_fail_arg(ferry_call *call, size_t i, const char *expected);

/*
 * Calls fn(call, arg) from the loop after ms milliseconds (< 0 counts as 0),
 * unless the call is answered first. One such timer per call: calling this
 * again re-arms it. FERRY_EUSAGE when the call is answered, FERRY_ENOMEM.
 */
ferry_err ferry_call_after(ferry_call *call, int64_t ms, ferry_handler fn, void *arg);

/* Disarms the ferry_call_after timer; a no-op when it is not armed. */
void ferry_call_after_stop(ferry_call *call);

/* Sets (or with fn NULL clears) the call's cancel callback; see the top. */
void ferry_call_on_cancel(ferry_call *call, ferry_cancel_fn fn, void *arg);

/* Argument i as a table: FERRY_OK with *out set, FERRY_EBADARG otherwise. */
ferry_err ferry_call_arg_table(const ferry_call *call, size_t i, const Ferry__Value **out);

#endif

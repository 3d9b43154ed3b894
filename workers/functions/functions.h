/*
 * functions.h: the functions ferry-worker serves out of the box.
 *
 * Each is an ordinary handler of the worker API (ferry/worker.h), in a file
 * of its own; main.c registers them from its table.
 */
#ifndef WORKER_FUNCTIONS_H
#define WORKER_FUNCTIONS_H

#include "ferry/worker.h"
#include "ferry_value.h"
#include "http_addr.h"

/* echo(...): returns its arguments unchanged (the Command's own, not copied). Idempotent. */
void worker_fn_echo(ferry_call *call, void *udata);

/* sleep(ms): returns true after ms milliseconds (a non-negative integer or
 * float, at most WORKER_SLEEP_MAX_MS), without holding up other calls.
 * Idempotent. */
void worker_fn_sleep(ferry_call *call, void *udata);

#define WORKER_SLEEP_MAX_MS 1e12 /* ~31 years: keeps now + ms far from overflow */

/*
 * http.get(url [, options]) and http.request{method=, url=, headers=, body=,
 * timeout_ms=, max_redirects=, max_body=} (http.c): one libcurl multi handle
 * per worker, driven by the worker's loop. Both return
 * {status=, headers={lower-cased name = value}, body=, url=}.
 *
 *   http_addr_policy allow;              // --http-allow
 *   http_addr_policy_parse(&allow, "127.0.0.1/32", err, sizeof err);
 *   worker_http *http = worker_http_new(w, &allow, err, sizeof err);
 *   worker_http_register(http, 1);       // http.get idempotent, http.request not
 *   ferry_worker_run(w);
 *   ferry_worker_destroy(&w);            // cancels the transfers still running
 *   worker_http_destroy(&http);          // then this: it no longer touches w
 */
typedef struct worker_http worker_http;

/* Sets up curl and watches its sockets in w's loop; connections may reach public
 * addresses and those policy allows. Takes ownership of *policy's list, which is
 * left empty (on failure too). NULL with a message in err. */
worker_http *worker_http_new(ferry_worker *w, http_addr_policy *policy, char *err, size_t errlen);

/* Registers http.get (idempotent unless get_idempotent is 0) and http.request (never:
 * a POST must not run twice) on the worker given to worker_http_new. */
ferry_err worker_http_register(worker_http *h, int get_idempotent);

/* Frees h (NULL-safe) and nulls *h. Only after ferry_worker_destroy of its worker. */
void worker_http_destroy(worker_http **h);

/* The handlers, with a worker_http as udata. */
void worker_fn_http_get(ferry_call *call, void *udata);
void worker_fn_http_request(ferry_call *call, void *udata);

#endif

/*
 * functions.h: the functions ferry-worker serves out of the box.
 *
 * Each is an ordinary handler of the worker API (ferry/worker.h), in a file
 * of its own; main.c registers them from its table.
 */
#ifndef WORKER_FUNCTIONS_H
#define WORKER_FUNCTIONS_H

#include "ferry/worker.h"

/* echo(...): returns its arguments unchanged (deep copies). Idempotent. */
void worker_fn_echo(ferry_call *call, void *udata);

/* sleep(ms): returns true after ms milliseconds (a non-negative integer or
 * float, at most WORKER_SLEEP_MAX_MS), without holding up other calls.
 * Idempotent. */
void worker_fn_sleep(ferry_call *call, void *udata);

#define WORKER_SLEEP_MAX_MS 1e12 /* ~31 years: keeps now + ms far from overflow */

#endif

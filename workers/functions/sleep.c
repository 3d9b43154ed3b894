/*
 * sleep: returns true after ms milliseconds.
 *
 * The wait is the call's own embedded timer in the worker's loop
 * (ferry_call_after), so any number of sleeps run side by side in one thread
 * at the cost of a heap entry each. When the worker times the call out
 * first, the cancel callback answers at once, which frees the call and its
 * timer instead of keeping them until the sleep would have ended.
 */
#include "functions.h"

#include <math.h>

static void wake(ferry_call *call, void *arg)
{
    (void)arg;
    ferry_call_return_values(call, 1, ferry_value_bool(1));
}

static void cancelled(ferry_call *call, ferry_err reason, void *arg)
{
    (void)arg;
    ferry_call_fail(call, reason, "sleep cancelled");
}

void worker_fn_sleep(ferry_call *call, void *udata)
{
    (void)udata;
    double ms;
    if (ferry_call_arg_number(call, 0, &ms) != FERRY_OK) {
        ferry_call_fail_arg(call, 0, "number");
        return;
    }
    /* !(ms >= 0) also catches NaN. */
    if (!(ms >= 0) || ms > WORKER_SLEEP_MAX_MS) {
        ferry_call_fail(call, FERRY_EBADARG,
                        "bad argument #1 to '%s' (milliseconds from 0 to %.0f expected, got %g)",
                        ferry_call_function(call), WORKER_SLEEP_MAX_MS, ms);
        return;
    }
    /* Round up: a sleep never ends early. */
    ferry_err err = ferry_call_after(call, (int64_t)ceil(ms), wake, NULL);
    if (err != FERRY_OK) {
        ferry_call_fail(call, err, "sleep: cannot arm a timer");
        return;
    }
    ferry_call_on_cancel(call, cancelled, NULL);
}

/* echo: returns its arguments unchanged; the simplest round trip through Ferry. */
#include "functions.h"

#include <stdlib.h>

void worker_fn_echo(ferry_call *call, void *udata)
{
    (void)udata;
    size_t n = ferry_call_nargs(call);
    Ferry__Value **values = n ? malloc(n * sizeof *values) : NULL;
    if (n && !values) {
        ferry_call_fail(call, FERRY_ENOMEM, "echo: out of memory");
        return;
    }
    /* The arguments live in the Command, which is freed with the call: copy them.
     * A failed copy is NULL, which ferry_call_return turns into out_of_memory. */
    for (size_t i = 0; i < n; i++)
        values[i] = ferry_value_copy(ferry_call_arg(call, i));
    ferry_call_return(call, values, n);
}

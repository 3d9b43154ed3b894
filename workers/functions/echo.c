/* echo: returns its arguments unchanged; the simplest round trip through Ferry. */
#include "functions.h"

#include "worker_internal.h"

void worker_fn_echo(ferry_call *call, void *udata)
{
    (void)udata;
    /* The Reply is packed from the Command's own values: nothing to copy. */
    worker_call_return_args(call);
}

/*
 * budget: a byte bound shared by the broker's queues (calls waiting for a
 * worker and scripts waiting for an engine), --queue-bytes. A queue takes
 * bytes before it holds a message and gives them back when the message
 * leaves it; what does not fit is answered `overloaded` at once.
 *
 * Who may call: one thread (the broker loop).
 */
#ifndef BROKER_BUDGET_H
#define BROKER_BUDGET_H

#include <assert.h>
#include <stddef.h>

typedef struct {
    size_t used; /* bytes held by the queues now */
    size_t max;  /* 0: no bound */
} broker_budget;

/* Takes n bytes: 1, or 0 when they do not fit (nothing taken). force takes
 * them anyway (a message going back to a queue it was in). NULL: no bound. */
static inline int broker_budget_take(broker_budget *b, size_t n, int force)
{
    if (!b)
        return 1;
    if (!force && b->max && (n > b->max || b->used > b->max - n))
        return 0;
    b->used += n;
    return 1;
}

static inline void broker_budget_give(broker_budget *b, size_t n)
{
    if (!b)
        return;
    assert(b->used >= n);
    b->used -= n;
}

#endif

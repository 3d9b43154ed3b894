/*
 * ferry_hash: uthash as Ferry uses it. Include this instead of <uthash.h>.
 *
 * Policy: running out of memory in a hash table is an error the caller
 * answers, never an exit. uthash's default (uthash_fatal: exit(-1)) would
 * take a whole broker down, with every caller's work, because one table
 * could not grow; with HASH_NONFATAL_OOM a failed add leaves the table as it
 * was, and FERRY_HASH_ADDED says whether the element went in. Every
 * HASH_ADD* in Ferry is followed by that check.
 */
#ifndef FERRY_HASH_H
#define FERRY_HASH_H

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

/* True when the HASH_ADD* just done on elt put it in its table; false when
 * memory ran out (the table is unchanged and elt is still the caller's). */
#define FERRY_HASH_ADDED(elt) ((elt)->hh.tbl != NULL)

#endif

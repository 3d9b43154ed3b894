/*
 * ferry_value: Ferry values inside Ferry: the public API of
 * include/ferry/value.h (building, reading, copying, freeing; its ownership
 * rule holds here too), plus what only Ferry's own code needs: the
 * protobuf-c fields, repeated fields and JSON.
 *
 * Memory: a tree built with the constructors is malloc'd all through, as
 * protobuf-c's own unpack makes it, and ferry_value_free frees it. A tree
 * decoded by ferry_codec lives in its envelope's arena instead: it is freed
 * with the envelope (ferry_envelope_free) and never with ferry_value_free.
 */
#ifndef FERRY_VALUE_H
#define FERRY_VALUE_H

#include "ferry.pb-c.h"
#include "ferry/value.h"
#include "ferry_buf.h"
#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>

/* Appends v to a repeated Value field (*arr, *n) that you own. Takes v over as
 * the rule says (freed on failure); FERRY_ENOMEM when v is NULL or memory runs out. */
ferry_err ferry_values_push(Ferry__Value ***arr, size_t *n, Ferry__Value *v);

/*
 * Appends v as JSON. nil is null; floats keep a decimal point (3.0) so they
 * stay apart from integers; NaN and infinities become the strings "nan",
 * "inf", "-inf"; strings are UTF-8 with invalid bytes as \u00XX; a table
 * with only an array part is a JSON array, otherwise an object whose keys
 * are the Lua keys as text.
 */
ferry_err ferry_value_to_json(const Ferry__Value *v, ferry_buf *out);

/* Appends data as a quoted JSON string (see ferry_value_to_json). */
ferry_err ferry_json_string(ferry_buf *out, const void *data, size_t len);

#endif

/*
 * ferry_value: building, comparing, copying and printing Ferry values.
 *
 * Ownership rule for every value tree in Ferry: all of it (messages, repeated
 * arrays, bytes) comes from malloc, exactly as protobuf-c's unpack makes it,
 * so one function frees both kinds: ferry_value_free (which is
 * ferry__value__free_unpacked with the default allocator). The constructors
 * return NULL when memory runs out.
 */
#ifndef FERRY_VALUE_H
#define FERRY_VALUE_H

#include "ferry.pb-c.h"
#include "ferry_buf.h"
#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>

Ferry__Value *ferry_value_nil(void);
Ferry__Value *ferry_value_bool(int b);
Ferry__Value *ferry_value_int(int64_t i);
Ferry__Value *ferry_value_float(double d);
Ferry__Value *ferry_value_string(const void *data, size_t len);
Ferry__Value *ferry_value_cstring(const char *s);
Ferry__Value *ferry_value_table(void); /* an empty table */

/* Frees v and everything below it (NULL-safe). */
void ferry_value_free(Ferry__Value *v);

/* Frees n values and the array that holds them (NULL-safe). */
void ferry_values_free(Ferry__Value **values, size_t n);

/* Appends v to the array part of table t. Takes ownership of v on FERRY_OK only.
 * The append functions grow arrays they made themselves: never append to a
 * decoded tree (its arrays have no spare room). */
ferry_err ferry_table_append(Ferry__Value *t, Ferry__Value *v);

/* Adds the pair k = v to the hash part of table t. Takes ownership of both on FERRY_OK only. */
ferry_err ferry_table_set(Ferry__Value *t, Ferry__Value *k, Ferry__Value *v);

/* Appends v to a repeated Value field (*arr, *n). Takes ownership on FERRY_OK only. */
ferry_err ferry_values_push(Ferry__Value ***arr, size_t *n, Ferry__Value *v);

/* A deep copy of v, or NULL when memory runs out. */
Ferry__Value *ferry_value_copy(const Ferry__Value *v);

/* True when a and b are the same value: same kinds (integer 3 is not float 3.0),
 * same bytes, same array parts in order and the same hash parts in any order
 * (quadratic: meant for tests and small tables). NaN equals NaN here. */
int ferry_value_equal(const Ferry__Value *a, const Ferry__Value *b);

/* "nil", "boolean", "integer", "float", "string", "table". */
const char *ferry_value_kind(const Ferry__Value *v);

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

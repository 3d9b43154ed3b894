/*
 * ferry/value.h: what the client and the worker APIs share: the error codes
 * and Ferry values (nil, booleans, integers, floats, byte strings, tables
 * with an array part and a hash part), to build, read, copy and free.
 *
 * A value is opaque here: read it with the ferry_value_get_* and ferry_table_*
 * functions. (Ferry's own code sees the fields: the type is the Value message
 * of proto/ferry.proto as protobuf-c generates it.)
 *
 * Ownership, one rule for every value:
 *
 *   - A value you build (the constructors, ferry_value_copy) is yours until
 *     you hand it over; free it with ferry_value_free.
 *   - Every function that takes a value (ferry_table_*, ferry_call_return*)
 *     takes it over whatever it returns: on failure it is freed, so a chain
 *     of calls needs one check at the end. A NULL value (a constructor that
 *     ran out of memory) makes the function fail with FERRY_ENOMEM.
 *   - A value you are given (a call's arguments, a script's results) is
 *     borrowed from the message it came in and lives as long as that
 *     message (until the call is answered, until ferry_result_fini). Never
 *     free it or any part of it; copy it (ferry_value_copy) to keep it.
 */
#ifndef FERRY_VALUE_H_PUBLIC
#define FERRY_VALUE_H_PUBLIC

#include <stddef.h>
#include <stdint.h>

/* ---- errors ---------------------------------------------------------------- */

/* X(ENUM, "wire_code", "description"): the one error list of Ferry. The wire
 * code is what travels in Error.code and what a script sees as e.code. */
#define FERRY_ERR_LIST(X)                                                              \
    X(FERRY_OK, "ok", "success")                                                       \
    X(FERRY_ENOMEM, "out_of_memory", "out of memory")                                  \
    X(FERRY_EPROTO, "bad_message", "malformed or unexpected message")                  \
    X(FERRY_EVERSION, "bad_version", "protocol version mismatch")                      \
    X(FERRY_ETIMEOUT, "timeout", "deadline passed")                                    \
    X(FERRY_EOVERLOADED, "overloaded", "a queue or table is full")                     \
    X(FERRY_EWORKER_LOST, "worker_lost", "the worker running the call was lost")       \
    X(FERRY_EENGINE_LOST, "engine_lost", "the engine running the script was lost")     \
    X(FERRY_EBROKER_LOST, "broker_lost", "the broker was lost")                        \
    X(FERRY_ENO_WORKER, "no_worker", "no worker serves the function")                  \
    X(FERRY_ENO_ENGINE, "no_engine", "no engine is there to run the script")           \
    X(FERRY_ESCRIPT, "script_error", "the script raised an error")                     \
    X(FERRY_ESYNTAX, "syntax_error", "the script does not compile")                    \
    X(FERRY_ECALL, "call_error", "the function raised an error")                       \
    X(FERRY_EBADARG, "bad_argument", "bad argument")                                   \
    X(FERRY_EBADVALUE, "bad_value", "value cannot cross the wire")                     \
    X(FERRY_ELIMIT, "limit", "a script limit was exceeded")                            \
    X(FERRY_EUNREACHABLE, "unreachable", "peer cannot be reached")                     \
    X(FERRY_EIO, "io_error", "system call failed")                                     \
    X(FERRY_EUSAGE, "usage", "bad command-line usage")                                 \
    X(FERRY_EAUTH, "not_authorized", "not authorized by the broker")

/* 0 is success. */
typedef enum {
#define FERRY_ERR_ENUM(e, code, desc) e,
    FERRY_ERR_LIST(FERRY_ERR_ENUM)
#undef FERRY_ERR_ENUM
        FERRY_ERR_COUNT
} ferry_err;

/* The wire code of err ("timeout"); never NULL. */
const char *ferry_err_code(ferry_err err);

/* A short description of err; never NULL. */
const char *ferry_err_desc(ferry_err err);

/* The error whose wire code is code, or FERRY_EPROTO when none matches. */
ferry_err ferry_err_from_code(const char *code);

/* ---- values ---------------------------------------------------------------- */

typedef struct Ferry__Value Ferry__Value;

/* The constructors return NULL when memory runs out. Strings are byte
 * strings: data is copied, any bytes, NUL included. */
Ferry__Value *ferry_value_nil(void);
Ferry__Value *ferry_value_bool(int b);
Ferry__Value *ferry_value_int(int64_t i);
Ferry__Value *ferry_value_float(double d);
Ferry__Value *ferry_value_string(const void *data, size_t len);
Ferry__Value *ferry_value_cstring(const char *s);
Ferry__Value *ferry_value_table(void); /* an empty table */

/* A deep copy of v (nil for NULL), or NULL when memory runs out. */
Ferry__Value *ferry_value_copy(const Ferry__Value *v);

/* Frees a value you own and everything below it (NULL-safe). */
void ferry_value_free(Ferry__Value *v);

/* Frees n values you own and the malloc'd array that holds them (NULL-safe). */
void ferry_values_free(Ferry__Value **values, size_t n);

/* "nil", "boolean", "integer", "float", "string", "table". */
const char *ferry_value_kind(const Ferry__Value *v);

/* True when a and b are the same value: same kinds (integer 3 is not float 3.0),
 * same bytes, same array parts in order and the same hash parts in any order
 * (quadratic: meant for tests and small tables). NaN equals NaN here. */
int ferry_value_equal(const Ferry__Value *a, const Ferry__Value *b);

/*
 * Typed reads: FERRY_OK with *out set, or FERRY_EBADARG (and *out untouched)
 * when v is NULL or of another kind:
 *   _int:    an integer, or a float with an exact integer value (3.0);
 *   _number: an integer or a float, as a double;
 *   _string: a string, binary-safe: *data is borrowed from v, not NUL-terminated;
 *   _bool:   a boolean.
 */
ferry_err ferry_value_get_int(const Ferry__Value *v, int64_t *out);
ferry_err ferry_value_get_number(const Ferry__Value *v, double *out);
ferry_err ferry_value_get_string(const Ferry__Value *v, const char **data, size_t *len);
ferry_err ferry_value_get_bool(const Ferry__Value *v, int *out);

/* True when v is NULL (absent) or nil. */
int ferry_value_is_nil(const Ferry__Value *v);

/* ---- tables ---------------------------------------------------------------- */

/* t[key] for a string key; NULL when t is not a table or has no such field. Linear in
 * the table's hash part (option tables are small). Borrowed from t. */
const Ferry__Value *ferry_table_get(const Ferry__Value *t, const char *key);

/* t[i] for an integer i, as Lua indexes (1 is the first element); NULL when absent. */
const Ferry__Value *ferry_table_geti(const Ferry__Value *t, int64_t i);

/* Elements in t's array part (t[1] .. t[n]); 0 when t is not a table. */
size_t ferry_table_len(const Ferry__Value *t);

/* Walks t's hash part (the fields that are not t[1..n]): start with *pos = 0; each
 * call sets *key and *value (borrowed) and returns 1, or returns 0 at the end. */
int ferry_table_next(const Ferry__Value *t, size_t *pos, const Ferry__Value **key,
                     const Ferry__Value **value);

/*
 * Building tables you own (never one you were given: its arrays have no
 * room to grow). Each takes over its value arguments as the rule at the
 * top says; FERRY_ENOMEM when one is NULL or memory runs out.
 *   _append:    t[#t + 1] = v, in the array part;
 *   _set:       the pair k = v in the hash part (k is not checked against
 *               the keys already there: a later pair wins on the wire);
 *   _set_field: t[key] = v for a string key (copied).
 */
ferry_err ferry_table_append(Ferry__Value *t, Ferry__Value *v);
ferry_err ferry_table_set(Ferry__Value *t, Ferry__Value *k, Ferry__Value *v);
ferry_err ferry_table_set_field(Ferry__Value *t, const char *key, Ferry__Value *v);

#endif

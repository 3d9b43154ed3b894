/*
 * ferry_log: one line per event on stderr.
 *
 *   2026-11-21T21:30:00.123Z INFO broker worker_ready id=w-1 functions=2
 *
 * time (UTC), level, process role, a stable event name operators can grep
 * and count, then key=value fields. FERRY_LOG_LEVEL (debug, info, warn,
 * error) sets the threshold; the default is info.
 *
 * FERRY_LOG_FORMAT=json prints one JSON object per line instead, for log
 * shippers:
 *
 *   {"time":"2026-11-21T21:30:00.123Z","level":"INFO","role":"broker",
 *    "event":"worker_ready","id":"w-1","functions":2}
 *
 * each field a member (integers as numbers, the rest as strings; a value in
 * double quotes loses them), escaped as JSON says, bytes that are not UTF-8
 * as U+FFFD; text that is not key=value goes into "text"; a line cut at its
 * bound (about 4 KiB) ends with "truncated":true and stays valid.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdint.h>

typedef enum { FERRY_LOG_DEBUG, FERRY_LOG_INFO, FERRY_LOG_WARN, FERRY_LOG_ERROR } ferry_log_level;

/* Sets the role printed on every line ("broker") and reads FERRY_LOG_LEVEL. */
void ferry_log_init(const char *role);

/* True when lines at level are printed. */
int ferry_log_enabled(ferry_log_level level);

/* Prints one line: event, then the printf-formatted fields (may be NULL). */
void ferry_log(ferry_log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Rate-limited variant for events a peer can trigger at will (bad frames):
 * at most one line per second per call site through *last_ms, with the
 * number of events suppressed since the last line.
 */
void ferry_log_limited(int64_t *last_ms, uint64_t *suppressed, ferry_log_level level,
                       const char *event, const char *fields, ...)
    __attribute__((format(printf, 5, 6)));

#define ferry_debug(...) ferry_log(FERRY_LOG_DEBUG, __VA_ARGS__)
#define ferry_info(...) ferry_log(FERRY_LOG_INFO, __VA_ARGS__)
#define ferry_warn(...) ferry_log(FERRY_LOG_WARN, __VA_ARGS__)
#define ferry_error(...) ferry_log(FERRY_LOG_ERROR, __VA_ARGS__)

#endif

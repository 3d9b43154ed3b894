/*
 * ferry_metrics: counters, fixed-bucket histograms, and the Prometheus text
 * exposition format (version 0.0.4) they are written in.
 *
 * Recording is meant for the hot path: a counter is a uint64_t the owner
 * increments; a histogram is an array of buckets whose index comes from
 * one count-leading-zeros (ferry_metrics_hist_observe), no search, no
 * floating point, no lock. Every histogram has the same buckets:
 * FERRY_METRICS_BUCKETS upper bounds of FERRY_METRICS_BASE_US << i
 * microseconds (64 us up to about 33.5 s), then +Inf.
 *
 * Writing happens when somebody scrapes: ferry_metrics_family prints the
 * HELP and TYPE lines once per metric, the sample functions one line each,
 * with label values and HELP text escaped as the format says (backslash,
 * double quote in label values, newline). Output goes into a ferry_buf;
 * running out of memory is remembered in the writer and reported once at
 * the end (ferry_metrics_writer_err), so that callers need no check per
 * line.
 *
 * Who may call: the owner's thread. Nothing here locks.
 */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include "ferry_buf.h"
#include "ferry_err.h"

#include <stddef.h>
#include <stdint.h>

#define FERRY_METRICS_BASE_SHIFT 6 /* the first bucket's bound: 1 << 6 = 64 us */
#define FERRY_METRICS_BASE_US (1u << FERRY_METRICS_BASE_SHIFT)
#define FERRY_METRICS_BUCKETS 20 /* finite bounds; one more bucket holds the rest (+Inf) */

typedef struct {
    uint64_t buckets[FERRY_METRICS_BUCKETS + 1]; /* not cumulative; the last is +Inf */
    uint64_t count;
    uint64_t sum_us;
} ferry_metrics_hist;

/* The bucket a value of us microseconds falls in: the first whose bound is >= us. */
static inline unsigned ferry_metrics_bucket(uint64_t us)
{
    if (us <= FERRY_METRICS_BASE_US)
        return 0;
    unsigned i = 64u - (unsigned)__builtin_clzll((us - 1) >> FERRY_METRICS_BASE_SHIFT);
    return i < FERRY_METRICS_BUCKETS ? i : FERRY_METRICS_BUCKETS;
}

/* Records one value, in microseconds (negative values count as 0). */
static inline void ferry_metrics_hist_observe(ferry_metrics_hist *h, int64_t us)
{
    uint64_t v = us > 0 ? (uint64_t)us : 0;
    h->buckets[ferry_metrics_bucket(v)]++;
    h->count++;
    h->sum_us += v;
}

/* The upper bound of bucket i (< FERRY_METRICS_BUCKETS), in microseconds. */
static inline uint64_t ferry_metrics_bound_us(unsigned i)
{
    return (uint64_t)FERRY_METRICS_BASE_US << i;
}

/*
 * The q-quantile (0 < q <= 1) of h in microseconds, interpolated linearly
 * inside its bucket as Prometheus's histogram_quantile does; 0 when h is
 * empty; a value in the +Inf bucket is reported as the last finite bound.
 */
uint64_t ferry_metrics_hist_quantile_us(const ferry_metrics_hist *h, double q);

/* Adds every count of from into into. */
void ferry_metrics_hist_add(ferry_metrics_hist *into, const ferry_metrics_hist *from);

/* Outcome labels: "ok" (FERRY_OK), each error code, then "other" (a code Ferry does not define). */
#define FERRY_METRICS_OUTCOMES (FERRY_ERR_COUNT + 1)
#define FERRY_METRICS_OTHER FERRY_ERR_COUNT

/* The outcome index of an error code as it travels ("timeout"; NULL or "" is call_error,
 * as a script sees it). */
unsigned ferry_metrics_outcome(const char *code);

/* The label of outcome i ("ok", "timeout", ..., "other"). */
const char *ferry_metrics_outcome_name(unsigned i);

typedef enum {
    FERRY_METRICS_COUNTER,
    FERRY_METRICS_GAUGE,
    FERRY_METRICS_HISTOGRAM,
} ferry_metrics_type;

/* A label: name (a valid Prometheus label name, not checked) and any UTF-8 value. */
typedef struct {
    const char *name;
    const char *value;
} ferry_metrics_label;

typedef struct {
    ferry_buf *out; /* borrowed */
    ferry_err err;  /* the first failure to write; FERRY_OK so far */
} ferry_metrics_writer;

/* Writes into out (borrowed for w's lifetime), after what it holds. */
void ferry_metrics_writer_init(ferry_metrics_writer *w, ferry_buf *out);

/* FERRY_OK, or the first error a write met (FERRY_ENOMEM): the output is then incomplete. */
ferry_err ferry_metrics_writer_err(const ferry_metrics_writer *w);

/* The HELP and TYPE lines of the metric name; before its samples, once. */
void ferry_metrics_family(ferry_metrics_writer *w, const char *name, ferry_metrics_type type,
                          const char *help);

/* One sample line: name{labels} value. */
void ferry_metrics_u64(ferry_metrics_writer *w, const char *name, const ferry_metrics_label *labels,
                       size_t nlabels, uint64_t value);
void ferry_metrics_f64(ferry_metrics_writer *w, const char *name, const ferry_metrics_label *labels,
                       size_t nlabels, double value);

/*
 * The samples of one histogram: name_bucket{labels,le="..."} (cumulative,
 * every bound and +Inf), name_sum (seconds) and name_count. The family line
 * is the caller's, once for all label sets.
 */
void ferry_metrics_hist_write(ferry_metrics_writer *w, const char *name,
                              const ferry_metrics_label *labels, size_t nlabels,
                              const ferry_metrics_hist *h);

/*
 * The standard process_* metrics of the calling process, read from /proc:
 * process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and
 * process_start_time_seconds (start_time: seconds since the epoch, which
 * the caller took when it started). A value /proc cannot give is left out.
 */
void ferry_metrics_process(ferry_metrics_writer *w, double start_time);

/* Seconds since the epoch now, for process_start_time_seconds. */
double ferry_metrics_wall_now(void);

#endif

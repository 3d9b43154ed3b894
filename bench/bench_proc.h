/*
 * bench_proc: the processes a benchmark runs against, started and always stopped.
 *
 * A bench_stack is one temporary folder with the four broker endpoints
 * (ipc:// paths inside it, or loopback tcp:// on free ports) and the child
 * processes started on them, each logging to a file of its own there.
 * Children die with the bench (PR_SET_PDEATHSIG) and are also killed from
 * an atexit handler and on SIGINT/SIGTERM, so no run leaves a process behind
 * whatever happens. Waiting is always for an event with a bound.
 */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

#include "ferry_cert.h"
#include "ferry_proc.h"

#include <stdint.h>
#include <sys/types.h>

#define BENCH_MAX_PROCS 16
#define BENCH_MAX_WRAP 16

typedef struct {
    char dir[128];
    char clients[160], commands[160], engines[160], workers[160];
    ferry_proc procs[BENCH_MAX_PROCS]; /* brokers (stop_last) stop after the rest */
    int nprocs;
    int curve; /* keys in <dir>/keys: every Ferry process and the bench's sockets use them */
} bench_stack;

/* Where the binaries are, the transport, the log level and the optional
 * wrappers (e.g. "valgrind --tool=callgrind") of every stack started later. */
typedef struct {
    const char *bin_dir;
    int tcp;               /* loopback tcp on free ports instead of ipc:// */
    const char *log_level; /* FERRY_LOG_LEVEL of the children */
    const char *wrap_broker, *wrap_engine, *wrap_worker; /* NULL or a command prefix */
    int verbose;                                         /* print the children's logs on stop */
    int curve; /* CURVE keys on every Ferry socket (the raw baseline has none) */
} bench_proc_config;

/*
 * The CURVE settings the bench's own sockets use as role ("engine" or
 * "client") on s: off when s has no keys. 0, or -1 with a message on stderr.
 */
int bench_stack_curve(const bench_stack *s, const char *role, ferry_curve *out);

/* Sets the configuration and installs the exit and signal handlers. Once. */
void bench_proc_setup(const bench_proc_config *cfg);

/* Makes the temporary folder and the endpoints. 0, or -1 with a message on stderr. */
int bench_stack_init(bench_stack *s);

/*
 * Starts <bin_dir>/<binary> with the stack's endpoints as flags (the ones the
 * binary takes: see bench_proc.c) and the NULL-terminated extra arguments.
 * role also picks the wrapper: one naming "broker", "engine" or "worker"
 * (the raw stand-ins too) runs under that wrapper. Returns the index of the
 * process, or -1.
 */
int bench_stack_spawn(bench_stack *s, const char *binary, const char *role,
                      const char *const *argv_extra);

/* The pid of process idx (0 when it exited). */
pid_t bench_stack_pid(const bench_stack *s, int idx);

/* True while every child still runs; prints the log of one that exited. */
int bench_stack_alive(bench_stack *s);

/*
 * Stops every child: SIGTERM to all but brokers, then brokers, each with a
 * bound, then SIGKILL. Prints the logs when a child failed or verbose is set
 * (or when print_logs). Removes the folder. 0 when all exited cleanly.
 */
int bench_stack_stop(bench_stack *s, int print_logs);

/* VmRSS (or VmHWM when hwm) of pid in KiB, or -1. */
long bench_rss_kb(pid_t pid, int hwm);

/* CPU time used so far by every thread of pid, in nanoseconds (schedstat), or -1. */
int64_t bench_cpu_ns(pid_t pid);

/* Monotonic clock in nanoseconds. */
int64_t bench_now_ns(void);

#endif

/*
 * ferry_proc: child processes started, signalled and waited for with a bound.
 *
 * What the integration-test harness (tests/integration/harness.c) and
 * ferry-bench (bench/bench_proc.c) share to run Ferry's binaries as real
 * processes; the daemons themselves do not use it (it is its own library,
 * ferry_proc, not part of ferry_common).
 *
 * Both callers have ZeroMQ threads, so everything a child needs (argv, its
 * environment, its log file) is made before fork, and between fork and exec
 * the child makes only async-signal-safe calls. Every wait is for an event
 * with a bound: a pidfd, or a look every 10 ms where the kernel has none.
 *
 * Ownership: every pointer handed in is borrowed for the call; the one thing
 * handed back to free is the array of ferry_proc_env.
 */
#ifndef FERRY_PROC_H
#define FERRY_PROC_H

#include <sys/types.h>

/* One child with a log file of its own. */
typedef struct {
    char name[48]; /* "<role>.<slot>"; its log is "<dir>/<name>.log" */
    pid_t pid;     /* 0 before it starts and once reaped */
    int status;    /* wait status once reaped */
    int stop_last; /* ferry_proc_stop_all stops it after the rest (a broker) */
    char log[300]; /* stdout and stderr go here */
} ferry_proc;

enum {
    FERRY_PROC_DIE_WITH_PARENT = 1 << 0, /* SIGKILL when the parent dies (PR_SET_PDEATHSIG) */
    FERRY_PROC_DEFAULT_SIGNALS = 1 << 1, /* SIGINT, SIGTERM, SIGPIPE back to SIG_DFL */
};

typedef struct {
    const char *path;        /* what execve runs; NULL: argv[0] */
    const char *const *argv; /* NULL-terminated, argv[0] the program's name */
    char *const *envp;       /* the child's whole environment (see ferry_proc_env) */
    int out_fd, err_fd;      /* dup2'd onto the child's stdout and stderr; -1: inherited */
    unsigned flags;          /* FERRY_PROC_* */
} ferry_proc_opts;

/*
 * The caller's environment without its FERRY_* settings, followed by the
 * strings of add and then of more (each NULL-terminated, either may be NULL).
 * A malloc'd array the caller frees (only the array: the strings stay
 * borrowed from environ, add and more), or NULL when out of memory.
 */
char **ferry_proc_env(const char *const *add, const char *const *more);

/* Forks and execs as o says. The pid, or -1 with errno set. */
pid_t ferry_proc_spawn(const ferry_proc_opts *o);

/*
 * Fills p (name "<name>.<slot>", log "<dir>/<name>.<slot>.log", truncated)
 * and starts the child with stdout and stderr into the log (o's out_fd and
 * err_fd are not used). 0, or -1 with errno set (p->pid stays 0).
 */
int ferry_proc_start(ferry_proc *p, const char *dir, const char *name, int slot,
                     const ferry_proc_opts *o);

/* Waits for pid to exit, at most timeout_ms, and reaps it. Its wait status, or -1. */
int ferry_proc_wait(pid_t pid, int timeout_ms);

/* ferry_proc_wait for p, recording the status; a child already reaped gives its status. */
int ferry_proc_reap(ferry_proc *p, int timeout_ms);

/*
 * Starts the child of o and waits for it, at most timeout_ms; past that it is
 * killed (SIGKILL) and reaped. Its wait status, or -1 when it could not start
 * or was killed.
 */
int ferry_proc_run(const ferry_proc_opts *o, int timeout_ms);

/*
 * Stops the n children of procs: SIGTERM to all but the stop_last ones, each
 * waited for within term_ms (SIGKILL past that, then kill_ms more), then the
 * same for the stop_last ones, so that nobody waits on a peer already gone.
 * Names a child that had to be killed or exited other than with status 0 on
 * stderr, after "<who>: ". 0 when every child still running exited with
 * status 0, else -1.
 */
int ferry_proc_stop_all(ferry_proc *procs, int n, int term_ms, int kill_ms, const char *who);

/* Copies the first max_lines lines of p's log to stderr under a header naming p. */
void ferry_proc_dump_log(const ferry_proc *p, int max_lines);

#endif

/*
 * harness: start a real Ferry stack (broker, engines, workers) for a test.
 *
 * Each stack lives in its own temporary folder, with ipc:// endpoints inside
 * it so that tests never collide, and a log file per child process. Waiting
 * is always for an event (a count in the broker's stats, a child's exit)
 * with a bound, never a fixed sleep. When a test did not reach
 * stack_passed(), stack_stop prints every child's log.
 */
#ifndef FERRY_HARNESS_H
#define FERRY_HARNESS_H

#include "ferry.pb-c.h"
#include "ferry/client.h"
#include "ferry_proc.h"

#include <sys/types.h>

#define STACK_MAX_PROCS 16
#define STACK_MAX_BROKERS 4

typedef struct {
    char dir[128];
    /* The endpoints engines, workers and the client connect to: one broker's,
     * or with stack_init_brokers the comma-separated lists of all of them. */
    char clients[200], commands[200], engines[200], workers[200];
    int nbrokers; /* with stack_init_brokers: how many; 0: one broker on the endpoints above */
    char broker_eps[STACK_MAX_BROKERS][4][160]; /* broker i's clients, commands, engines,
                                                * workers */
    ferry_proc procs[STACK_MAX_PROCS]; /* brokers (stop_last) stop after the rest */
    int nprocs;
    int passed;
    ferry_client *client; /* connected to clients once the broker runs */
    char keys[160];       /* with stack_use_keys: the folder of the CURVE keys, else "" */
} ferry_stack;

/* Makes the temporary folder and endpoints. Returns 0 or -1. */
int stack_init(ferry_stack *s);

/*
 * stack_init for n brokers (2 to STACK_MAX_BROKERS) sharing nothing: broker i
 * binds ipc://<dir>/<socket>-<i> (stack_start_broker_at), and the stack's
 * endpoints are the lists of all n, so engines, workers and the stack's
 * client serve every broker. 0 or -1.
 */
int stack_init_brokers(ferry_stack *s, int n);

/* Starts broker i of stack_init_brokers (again, after it stopped: same endpoints).
 * The stack's client is made with the first broker. Index of the process, or -1. */
int stack_start_broker_at(ferry_stack *s, int i, const char *const *extra);

/* A client of broker i of stack_init_brokers alone (no CURVE), for its stats. */
ferry_client *stack_broker_client(ferry_stack *s, int i);

/* stack_init with tcp://127.0.0.1 endpoints on free ports instead of ipc://. */
int stack_init_tcp(ferry_stack *s);

/*
 * Makes CURVE key pairs in <dir>/keys (broker, engine, worker, client, as
 * `ferry keygen` writes them) and the broker's allow-list folders
 * allow-clients, allow-engines, allow-workers, each holding its role's
 * public certificate. From then on stack_spawn gives the broker
 * --curve-key and the --allow-* flags and engines and workers their own
 * --curve-key and --broker-key (extra arguments come after and win: pass
 * "--curve-key", "", "--broker-key", "" for none), and the stack's client
 * uses the client key. Call before stack_start_broker. 0 or -1.
 */
int stack_use_keys(ferry_stack *s);

/* Makes one more key pair <dir>/keys/<name> (and _secret), on no allow-list. 0 or -1. */
int stack_make_key(ferry_stack *s, const char *name);

/* "<dir>/keys/<name>" (a static buffer per call slot: up to 4 at once). */
const char *stack_key(ferry_stack *s, const char *name);

/* A client of the stack's clients endpoint with the given key files (NULL: no CURVE). */
ferry_client *stack_client(ferry_stack *s, const char *curve_key, const char *broker_key);

/*
 * Starts FERRY_BIN_DIR/<binary> with the stack's endpoints as flags plus the
 * NULL-terminated extra arguments; its stdout and stderr go to a log file.
 * Returns the index of the process, or -1.
 */
int stack_spawn(ferry_stack *s, const char *binary, const char *const *extra);

int stack_start_broker(ferry_stack *s, const char *const *extra);
int stack_start_engine(ferry_stack *s, const char *const *extra);
int stack_start_worker(ferry_stack *s, const char *const *extra);

/*
 * stack_init, then one broker, one engine and one worker with the extra
 * arguments given (each may be NULL), and waits until both registered.
 * 0, with the engine's process index in *engine_idx (may be NULL); -1, with
 * everything stopped, when any of it failed.
 */
int stack_start_one_each(ferry_stack *s, const char *const *broker, const char *const *engine,
                         const char *const *worker, int *engine_idx);

/* Waits until the broker counts at least engines and workers, within timeout_ms. 0 or -1. */
int stack_wait_ready(ferry_stack *s, unsigned engines, unsigned workers, int timeout_ms);

/* Sends sig to process idx. */
void stack_signal(ferry_stack *s, int idx, int sig);

/* Waits for process idx to exit within timeout_ms. Returns its wait status, or -1. */
int stack_wait_exit(ferry_stack *s, int idx, int timeout_ms);

/* Marks the test as passed: stack_stop then keeps the logs to itself. */
void stack_passed(ferry_stack *s);

/*
 * Stops every child (SIGTERM, then SIGKILL after a bound), prints the logs if
 * the test did not pass or a child did not exit cleanly, removes the folder.
 * Returns 0 when every child exited with status 0 after SIGTERM.
 */
int stack_stop(ferry_stack *s);

/* Runs a script through s->client: submit and wait. */
ferry_err stack_run(ferry_stack *s, const char *source, Ferry__Value *const *args, size_t nargs,
                    uint32_t timeout_ms, ferry_result *out);

/*
 * Runs one attack on an engine while an innocent script runs beside it: the
 * innocent script (async calls and Lua work, on the same engine when the
 * stack has one) is submitted first, then attack with a deadline of
 * timeout_ms. The attack must end with code and a message that contains part
 * (code NULL: the attack must succeed), the innocent script must finish
 * normally, the engine process idx must still be alive, and a next ordinary
 * script must run. Fails the cmocka test otherwise. When out is not NULL the
 * attack's result is handed back there (the caller finishes it).
 */
void stack_attack(ferry_stack *s, int engine_idx, const char *attack, uint32_t timeout_ms,
                  const char *code, const char *part, ferry_result *out);

/*
 * For tests that play a peer with a raw socket: sends env on sock (no
 * routing frame), waiting up to timeout_ms for the connection to take it;
 * fails the test otherwise.
 */
void stack_raw_send(void *sock, const Ferry__Envelope *env, int timeout_ms);

/* The next message of body kind on sock within timeout_ms (others are skipped), or NULL. */
Ferry__Envelope *stack_raw_recv(void *sock, int timeout_ms, Ferry__Envelope__BodyCase kind);

/*
 * Runs the ferry command-line client with argv (NULL-terminated, without the
 * program name) and the broker flag added; captures stdout and stderr into
 * malloc'd strings (caller frees). Returns the exit status, or -1.
 */
int stack_cli(ferry_stack *s, const char *const *argv, char **out, char **err, int timeout_ms);

/* Writes text to <stack dir>/<name> and returns the path (static buffer). */
const char *stack_write_file(ferry_stack *s, const char *name, const char *text);

/*
 * Starts any program as a process of the stack: argv[0] is its absolute path,
 * name (no "ferry-broker" prefix) names its log. Its environment is the
 * caller's without FERRY_* settings, plus FERRY_CLIENTS, FERRY_COMMANDS,
 * FERRY_ENGINES and FERRY_WORKERS set to the stack's endpoints,
 * FERRY_LOG_LEVEL, and the NULL-terminated "NAME=value" strings of env (may
 * be NULL). File descriptors the caller opened without O_CLOEXEC are
 * inherited. stack_stop sends it SIGTERM like the others and expects exit
 * status 0. Returns the index of the process, or -1.
 */
int stack_spawn_cmd(ferry_stack *s, const char *name, const char *const *argv,
                    const char *const *env);

/*
 * Runs argv[0] (an absolute path) to completion, with the environment of
 * stack_spawn_cmd (the stack's endpoints in FERRY_*, plus env), and captures
 * stdout and stderr into malloc'd strings (caller frees; either may be NULL).
 * Kills it after timeout_ms. Returns the exit status, or -1.
 */
int stack_exec(ferry_stack *s, const char *const *argv, const char *const *env, char **out,
               char **err, int timeout_ms);

/* The source tree the tests were built from (static string, no trailing slash). */
const char *stack_source_dir(void);

/*
 * A python3 interpreter that can import every module named in the
 * NULL-terminated modules (may be NULL): $FERRY_TEST_PYTHON, then
 * /usr/bin/python3 (Debian's, with python3-zmq and python3-protobuf), then
 * /usr/local/bin/python3. NULL when none can.
 */
const char *stack_python(const char *const *modules);

#endif

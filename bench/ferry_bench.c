/*
 * ferry-bench: Ferry's numbers, next to a raw libzmq baseline measured in
 * the same run on the same machine.
 *
 * Every measurement starts the real processes (ferry-broker, ferry-worker,
 * ferry-engine from the build's bin folder) on private endpoints, waits for
 * them with a bound, measures, and stops them; the baseline starts
 * ferry-bench-raw on the same transport and socket types. What is measured,
 * and what limits each number, is in docs/benchmarks.md:
 *
 *   1. latency, one call in flight: the bench plays the engine (bench_path.h)
 *      and times each echo call through broker and worker: p50, p99, with
 *      every process on one CPU (stable) and with free placement (not); plus
 *      a real script doing K sequential calls (end to end, per call);
 *   2. throughput with a window of calls in flight: calls/s, and real
 *      scripts calling at once on one engine;
 *   3. scripts/s for `return 1` submitted by a client with a window;
 *   4. engine memory with 10,000 scripts blocked in `sleep`;
 *   5. one worker holding 10,000 sleeps at once.
 *
 * Timed measures run --runs times, Ferry and the baseline back to back
 * (alternating which goes first); the table shows medians. The ratios with a
 * target (and the free-placement and scripts/s ones) are medians of the
 * per-run ratios, the others ratios of the medians. --json prints one JSON
 * object instead.
 */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include "bench_path.h"
#include "bench_proc.h"
#include "bench_raw.h"
#include "ferry/client.h"
#include "ferry_opts.h"
#include "ferry_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_RUNS 32
#define READY_MS 30000  /* processes up and registered (valgrind-wrapped ones are slow) */
#define ANSWER_MS 30000 /* no answer for this long: the measurement fails */
#define LATENCY_WARMUP 1000
#define TARGET_THROUGHPUT 0.8
#define TARGET_METRICS 0.95 /* throughput with --metrics (and scrapes) over without */
#define SCRAPE_EVERY_MS 100 /* the metrics measure's scraper: 150 times Prometheus's default */
#define TARGET_LATENCY 1.25
#define TARGET_MEMORY_MB 400.0
/* The real engine's (issue "Engine speed"). */
#define TARGET_SCRIPT_CALL 1.10  /* a script's call / the raw latency p50, at most */
#define TARGET_SCRIPT_CALLS 0.60 /* calls/s of scripts calling at once / raw throughput */
#define TARGET_SCRIPTS 0.50      /* scripts/s / raw, at least */
#define TARGET_BLOCKED_KB 22.0   /* RSS per blocked script, at most */

/* ---- options ---- */

typedef struct {
    const char *bin_dir;
    const char *transport;
    const char *only;
    const char *log_level;
    const char *wrap_broker, *wrap_engine, *wrap_worker;
    long runs;
    long calls;            /* latency: sequential calls */
    long tput_calls;       /* throughput: calls */
    long window;           /* throughput: calls in flight */
    long workers;          /* throughput: workers (Ferry and raw alike) */
    long concurrency;      /* throughput: --concurrency of those workers; 0: max(window, 1024) */
    long e2e_calls;        /* latency of a real script: calls in one script */
    long e2e_scripts;      /* real scripts calling at once */
    long e2e_script_calls; /* calls in each of them */
    long scripts;          /* scripts/s: scripts */
    long script_window;    /* scripts/s: scripts in flight */
    long slots;            /* engine slots for the script measures */
    long blocked;          /* memory: blocked scripts */
    long sleeps;           /* sleeps in one worker */
    long sleep_ms;
    long brokers;          /* brokers: scripts/s through this many brokers against one; 0: no */
    long broker_calls;     /* brokers: echo calls in each of those scripts */
    int json;
    int curve; /* --curve: keys on every Ferry socket */
    int verbose;
} options;

static options opt = {
    .transport = "ipc",
    .only = "latency,free,throughput,e2e,scripts,memory,sleeps,metrics",
    .log_level = "info",
    .runs = 3,
    .calls = 20000,
    .tput_calls = 500000,
    .window = 1000,
    .workers = 1,
    .e2e_calls = 2000,
    .e2e_scripts = 100,
    .e2e_script_calls = 1000,
    .scripts = 20000,
    .script_window = 100,
    .slots = 256,
    .blocked = 10000,
    .sleeps = 10000,
    .sleep_ms = 1000,
    .broker_calls = 4,
};

static int wanted(const char *what)
{
    const char *p = opt.only;
    size_t n = strlen(what);
    while (p && *p) {
        if (strncmp(p, what, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return 0;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Progress on stderr, so that stdout holds only the table or the JSON. */
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "ferry-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- series of per-run values ---- */

typedef struct {
    double v[MAX_RUNS];
    int n;
} series;

static void add(series *s, double v)
{
    if (s->n < MAX_RUNS)
        s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const series *s)
{
    if (s->n == 0)
        return 0;
    double tmp[MAX_RUNS];
    memcpy(tmp, s->v, (size_t)s->n * sizeof tmp[0]);
    qsort(tmp, (size_t)s->n, sizeof tmp[0], cmp_double);
    return s->n % 2 ? tmp[s->n / 2] : (tmp[s->n / 2 - 1] + tmp[s->n / 2]) / 2;
}

/* ---- results ---- */

typedef struct {
    series lat_p50, lat_p99, lat_mean, raw_p50, raw_p99, raw_mean, lat_ratio;
    series free_p50, free_p99, raw_free_p50, raw_free_p99, free_ratio;
    series tput, raw_tput, tput_ratio;
    series metrics_on, metrics_off, metrics_ratio; /* throughput with --metrics and without */
    series metrics_cpu_on, metrics_cpu_off;        /* the broker's CPU per call, the same runs */
    series cpu_broker, cpu_worker, cpu_engine, raw_cpu_broker, raw_cpu_worker, raw_cpu_engine;
    series e2e_lat_us, e2e_tput, e2e_tput_ratio;
    series scripts, raw_scripts, scripts_ratio;
    series scripts_cpu_engine, scripts_cpu_broker; /* CPU us per script in the scripts/s run */
    series brokers_one, brokers_many, brokers_ratio; /* --brokers: scripts/s */
    /* memory: one run */
    int mem_done;
    long mem_n;
    long engine_idle_kb, engine_kb, engine_hwm_kb, broker_kb, worker_kb;
    double mem_block_s; /* submit to all blocked */
    /* sleeps: one run */
    int sleeps_done;
    long sleeps_n, sleeps_ms;
    long sleeps_in_flight_max; /* the broker's in_flight seen while they slept */
    double sleeps_first_s, sleeps_last_s, sleeps_send_s;
    long sleep_worker_idle_kb, sleep_worker_kb;
    uint64_t sleeps_errors;
    int failures; /* measurements that could not be taken */
} results;

static results res;
static uint64_t next_call_id = 1;

/* ---- stacks ---- */

/* Waits until the broker counts engines and workers (through its stats), within READY_MS. */
static int wait_ready(bench_stack *s, ferry_client *c, unsigned engines, unsigned workers)
{
    int64_t until = bench_now_ns() + (int64_t)READY_MS * 1000000;
    while (bench_now_ns() < until) {
        if (!bench_stack_alive(s))
            return -1;
        Ferry__Envelope *env = NULL;
        if (ferry_client_stats(c, 1000, &env) == FERRY_OK) {
            int ok = env->stats && env->stats->engines >= engines && env->stats->workers >= workers;
            ferry_envelope_free(env);
            if (ok)
                return 0;
        }
        /* Registration is an event in another process: look again shortly. */
        zmq_poll(NULL, 0, 10);
    }
    note("stack not ready within %d ms (want %u engines, %u workers)", READY_MS, engines, workers);
    return -1;
}

static ferry_client *client_new(const bench_stack *s)
{
    char err[512], own[300], broker[300];
    snprintf(own, sizeof own, "%s/keys/client_secret", s->dir);
    snprintf(broker, sizeof broker, "%s/keys/broker", s->dir);
    ferry_client *c = ferry_client_new_curve(s->clients, s->curve ? own : NULL,
                                             s->curve ? broker : NULL, err, sizeof err);
    if (!c)
        note("client: %s", err);
    return c;
}

/* The broker's stats, or NULL (free with ferry_envelope_free). */
static Ferry__Envelope *stats(ferry_client *c)
{
    Ferry__Envelope *env = NULL;
    if (ferry_client_stats(c, 5000, &env) != FERRY_OK || !env->stats) {
        ferry_envelope_free(env);
        return NULL;
    }
    return env;
}

static const char *fmt_long(long v, char *buf, size_t len)
{
    snprintf(buf, len, "%ld", v);
    return buf;
}

/* Starts a broker and n Ferry workers with the given concurrency, and a client. */
static int ferry_call_stack(bench_stack *s, ferry_client **c, long nworkers, long concurrency,
                            const char *const *broker_extra)
{
    if (bench_stack_init(s) != 0 ||
        bench_stack_spawn(s, "ferry-broker", "broker", broker_extra) < 0)
        return -1;
    char conc[32];
    const char *wargs[] = {"--concurrency", fmt_long(concurrency, conc, sizeof conc), NULL};
    for (long i = 0; i < nworkers; i++)
        if (bench_stack_spawn(s, "ferry-worker", "worker", wargs) < 0)
            return -1;
    *c = client_new(s);
    if (!*c || wait_ready(s, *c, 0, (unsigned)nworkers) != 0)
        return -1;
    return 0;
}

/* Starts the raw broker, n raw echo peers on the workers (or engines) endpoint. */
static int raw_stack(bench_stack *s, long nechoes, int on_engines)
{
    if (bench_stack_init(s) != 0)
        return -1;
    const char *bargs[] = {"--clients", s->clients,  "--commands", s->commands, "--engines",
                           s->engines,  "--workers", s->workers,   "broker",    NULL};
    if (bench_stack_spawn(s, "ferry-bench-raw", "raw-broker", bargs) < 0)
        return -1;
    for (long i = 0; i < nechoes; i++) {
        char id[64];
        snprintf(id, sizeof id, "raw-%s-%ld-%d", on_engines ? "engine" : "worker", i,
                 (int)getpid());
        const char *eargs[] = {
            "--connect", on_engines ? s->engines : s->workers, "--id", id, "echo", NULL};
        if (bench_stack_spawn(s, "ferry-bench-raw", on_engines ? "raw-engine" : "raw-worker",
                              eargs) < 0)
            return -1;
    }
    return 0;
}

static int open_path(bench_path *p, bench_path_kind kind, const bench_stack *s)
{
    char err[256];
    const char *replies = kind == BENCH_PATH_RAW_CLIENT ? s->clients : s->engines;
    static ferry_curve curve; /* borrowed by p until it closes; one path at a time */
    if (bench_stack_curve(s, "engine", &curve) != 0)
        return -1;
    if (bench_path_open_curve(p, kind, kind == BENCH_PATH_RAW_CLIENT ? NULL : s->commands, replies,
                              kind == BENCH_PATH_FERRY ? &curve : NULL, READY_MS, err,
                              sizeof err) != 0) {
        note("path: %s", err);
        return -1;
    }
    if (bench_path_probe(p, READY_MS) != 0) {
        note("no answer to a probe within %d ms%s%s", READY_MS, p->errors ? ": " : "",
             p->last_error);
        bench_path_close(p);
        return -1;
    }
    p->errors = 0;
    return 0;
}

/* ---- the measurement loops ---- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Waits for the answer to id; answers to earlier probes are skipped. */
static int await(bench_path *p, uint64_t id)
{
    for (;;) {
        uint64_t got;
        int r = bench_path_recv(p, ANSWER_MS, &got);
        if (r != 1) {
            note("no answer to call %llu within %d ms", (unsigned long long)id, ANSWER_MS);
            return -1;
        }
        if (got == id)
            return 0;
    }
}

/* One call in flight at a time: per-call round trips in microseconds. */
static int measure_latency(bench_path *p, long n, double *p50, double *p99, double *mean)
{
    int64_t *t = malloc((size_t)n * sizeof *t);
    if (!t)
        return -1;
    int rc = -1;
    int64_t sum = 0;
    for (long i = 0; i < LATENCY_WARMUP + n; i++) {
        uint64_t id = next_call_id++;
        int64_t t0 = bench_now_ns();
        if (bench_path_send(p, id) != FERRY_OK || await(p, id) != 0)
            goto out;
        int64_t dt = bench_now_ns() - t0;
        if (i >= LATENCY_WARMUP) {
            t[i - LATENCY_WARMUP] = dt;
            sum += dt;
        }
    }
    qsort(t, (size_t)n, sizeof *t, cmp_i64);
    *p50 = (double)t[n / 2] / 1000.0;
    *p99 = (double)t[(size_t)((double)n * 0.99)] / 1000.0;
    *mean = (double)sum / (double)n / 1000.0;
    rc = 0;
out:
    free(t);
    return rc;
}

/* n calls with up to window in flight: calls per second. */
static int measure_throughput(bench_path *p, long n, long window, double *rate)
{
    long sent = 0, done = 0;
    uint64_t base = next_call_id;
    next_call_id += (uint64_t)n;
    int64_t t0 = bench_now_ns();
    while (done < n) {
        while (sent < n && sent - done < window) {
            ferry_err e = bench_path_send(p, base + (uint64_t)sent);
            if (e == FERRY_EOVERLOADED)
                break; /* the socket is full: read answers first */
            if (e != FERRY_OK) {
                note("send: %s", ferry_err_desc(e));
                return -1;
            }
            sent++;
        }
        uint64_t got;
        int r = bench_path_recv(p, ANSWER_MS, &got);
        if (r != 1) {
            note("no answer within %d ms (%ld of %ld answered, %ld in flight)", ANSWER_MS, done, n,
                 sent - done);
            return -1;
        }
        /* Take every answer that is there before sending more. */
        for (long k = 0; r == 1 && k < window; k++) {
            if (!(got & BENCH_PROBE_BIT))
                done++;
            r = done < n ? bench_path_recv(p, 0, &got) : 0;
        }
        if (r < 0)
            return -1;
    }
    *rate = (double)n / ((double)(bench_now_ns() - t0) / 1e9);
    return 0;
}

static int check_errors(bench_path *p, const char *what)
{
    if (p->errors == 0)
        return 0;
    note("%s: %llu answers were errors (last: %s)", what, (unsigned long long)p->errors,
         p->last_error);
    return -1;
}

/* ---- 1 and 2: the call path, Ferry and raw ---- */

typedef struct {
    double p50, p99, mean;                     /* latency, us */
    double rate;                               /* throughput, calls/s */
    double cpu_broker, cpu_worker, cpu_engine; /* CPU us per call during the throughput run */
} path_out;

/* CPU time of the broker (process 0), the workers (1..n) and the bench itself. */
static void cpu_sample(const bench_stack *s, long nworkers, int64_t out[3])
{
    out[0] = bench_cpu_ns(bench_stack_pid(s, 0));
    out[1] = 0;
    for (long i = 0; i < nworkers; i++)
        out[1] += bench_cpu_ns(bench_stack_pid(s, (int)(1 + i)));
    out[2] = bench_cpu_ns(getpid());
}

static int call_path_run(int raw, int do_lat, int do_tput, path_out *o)
{
    bench_stack s;
    ferry_client *c = NULL;
    bench_path p = {0};
    int rc = -1;
    long conc = opt.concurrency ? opt.concurrency : opt.window > 1024 ? opt.window : 1024;
    if (raw ? raw_stack(&s, opt.workers, 0) : ferry_call_stack(&s, &c, opt.workers, conc, NULL))
        goto out;
    if (open_path(&p, raw ? BENCH_PATH_RAW : BENCH_PATH_FERRY, &s) != 0)
        goto out;
    const char *name = raw ? "raw" : "ferry";
    if (do_lat) {
        if (measure_latency(&p, opt.calls, &o->p50, &o->p99, &o->mean) != 0 ||
            check_errors(&p, name))
            goto out_path;
        note("%-5s latency: p50 %.1f us, p99 %.1f us, mean %.1f us (%ld calls)", name, o->p50,
             o->p99, o->mean, opt.calls);
    }
    if (do_tput) {
        long warm = opt.tput_calls / 10 < 20000 ? opt.tput_calls / 10 : 20000;
        double ignore;
        int64_t before[3], after[3];
        if (measure_throughput(&p, warm, opt.window, &ignore) != 0)
            goto out_path;
        cpu_sample(&s, opt.workers, before);
        if (measure_throughput(&p, opt.tput_calls, opt.window, &o->rate) != 0 ||
            check_errors(&p, name))
            goto out_path;
        cpu_sample(&s, opt.workers, after);
        double n = (double)opt.tput_calls;
        o->cpu_broker = (double)(after[0] - before[0]) / n / 1000.0;
        o->cpu_worker = (double)(after[1] - before[1]) / n / 1000.0;
        o->cpu_engine = (double)(after[2] - before[2]) / n / 1000.0;
        note("%-5s throughput: %.0f calls/s (%ld calls, window %ld, %ld worker%s); CPU per "
             "call: broker %.2f us, worker %.2f us, engine (bench) %.2f us",
             name, o->rate, opt.tput_calls, opt.window, opt.workers, opt.workers > 1 ? "s" : "",
             o->cpu_broker, o->cpu_worker, o->cpu_engine);
    }
    rc = 0;
out_path:
    bench_path_close(&p);
out:
    ferry_client_destroy(&c);
    if (s.dir[0] && bench_stack_stop(&s, 0) != 0 && rc == 0)
        note("warning: a %s process did not stop cleanly", raw ? "raw" : "ferry");
    return rc;
}

/* Runs Ferry and raw back to back, alternating which goes first, so that
 * drift on the machine hits both alike. 0 when both went. */
static int both(int run, int do_lat, int do_tput, path_out *f, path_out *r)
{
    int ferr, rerr;
    if (run % 2 == 0) {
        ferr = call_path_run(0, do_lat, do_tput, f);
        rerr = call_path_run(1, do_lat, do_tput, r);
    } else {
        rerr = call_path_run(1, do_lat, do_tput, r);
        ferr = call_path_run(0, do_lat, do_tput, f);
    }
    if (ferr || rerr)
        res.failures++;
    return ferr || rerr ? -1 : 0;
}

/*
 * Pins the calling thread, and so every process and ZeroMQ thread started
 * after it, to its first allowed CPU; *old keeps the mask to restore. On a
 * virtual machine a wakeup that crosses CPUs costs more than all the work of
 * a call, and where the scheduler happens to place three processes on two
 * CPUs decides whether a round trip takes 50 or 230 us: on one CPU every
 * wakeup is local, so the figure shows what the software costs, run after run.
 */
static int pin_one_cpu(cpu_set_t *old)
{
    if (sched_getaffinity(0, sizeof *old, old) != 0) {
        note("cannot read the CPU affinity: %s", strerror(errno));
        return -1;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, old)) {
            CPU_SET(cpu, &one);
            break;
        }
    if (sched_setaffinity(0, sizeof one, &one) != 0) {
        note("cannot pin to one CPU: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void unpin(const cpu_set_t *old)
{
    sched_setaffinity(0, sizeof *old, old);
}

static void call_path(int run)
{
    path_out f = {0}, r = {0};
    cpu_set_t old;
    if (wanted("latency") && pin_one_cpu(&old) == 0) {
        if (both(run, 1, 0, &f, &r) == 0) {
            add(&res.lat_p50, f.p50);
            add(&res.lat_p99, f.p99);
            add(&res.lat_mean, f.mean);
            add(&res.raw_p50, r.p50);
            add(&res.raw_p99, r.p99);
            add(&res.raw_mean, r.mean);
            add(&res.lat_ratio, f.p50 / r.p50);
        }
        unpin(&old);
    }
    if (wanted("free") && both(run, 1, 0, &f, &r) == 0) {
        add(&res.free_p50, f.p50);
        add(&res.free_p99, f.p99);
        add(&res.raw_free_p50, r.p50);
        add(&res.raw_free_p99, r.p99);
        add(&res.free_ratio, f.p50 / r.p50);
    }
    if (wanted("throughput") && both(run, 0, 1, &f, &r) == 0) {
        add(&res.tput, f.rate);
        add(&res.raw_tput, r.rate);
        add(&res.tput_ratio, f.rate / r.rate);
        add(&res.cpu_broker, f.cpu_broker);
        add(&res.cpu_worker, f.cpu_worker);
        add(&res.cpu_engine, f.cpu_engine);
        add(&res.raw_cpu_broker, r.cpu_broker);
        add(&res.raw_cpu_worker, r.cpu_worker);
        add(&res.raw_cpu_engine, r.cpu_engine);
    }
}

/* ---- 2 with --metrics on and off ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A child that GETs /metrics from each port every SCRAPE_EVERY_MS until killed: the
 * scrapes run on the broker's and the worker's loops, between their messages. */
static pid_t start_scraper(const int *ports, int n)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the bench */
    static char buf[1 << 16];
    for (;;) {
        for (int i = 0; i < n; i++) {
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[i]),
                                    .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
            if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1))
                while (read(fd, buf, sizeof buf) > 0)
                    ;
            if (fd >= 0)
                close(fd);
        }
        poll(NULL, 0, SCRAPE_EVERY_MS);
    }
}

/* The throughput measure on a broker and workers with --metrics (scraped) or without;
 * also the broker's CPU time per call. */
static int metrics_run(int on, double *rate, double *broker_cpu_us)
{
    bench_stack s;
    ferry_client *c = NULL;
    bench_path p = {0};
    pid_t scraper = -1;
    int rc = -1;
    long conc = opt.concurrency ? opt.concurrency : opt.window > 1024 ? opt.window : 1024;
    int ports[1 + 16];
    char addrs[1 + 16][32], cbuf[32];
    int nports = on ? 1 + (int)(opt.workers < 16 ? opt.workers : 16) : 0;
    for (int i = 0; i < nports; i++) {
        ports[i] = free_port();
        snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", ports[i]);
    }
    const char *bargs[] = {"--metrics", addrs[0], NULL};
    if (bench_stack_init(&s) != 0 ||
        bench_stack_spawn(&s, "ferry-broker", "broker", on ? bargs : NULL) < 0)
        goto out;
    for (long i = 0; i < opt.workers; i++) {
        int scraped = i + 1 < nports; /* the first 16 workers serve metrics */
        const char *wargs[] = {"--concurrency", fmt_long(conc, cbuf, sizeof cbuf),
                               scraped ? "--metrics" : NULL, addrs[scraped ? i + 1 : 0], NULL};
        if (bench_stack_spawn(&s, "ferry-worker", "worker", wargs) < 0)
            goto out;
    }
    c = client_new(&s);
    if (!c || wait_ready(&s, c, 0, (unsigned)opt.workers) != 0 ||
        open_path(&p, BENCH_PATH_FERRY, &s) != 0)
        goto out;
    if (on && (scraper = start_scraper(ports, nports)) < 0)
        goto out_path;
    long warm = opt.tput_calls / 10 < 20000 ? opt.tput_calls / 10 : 20000;
    double ignore;
    int64_t before[3], after[3];
    if (measure_throughput(&p, warm, opt.window, &ignore) != 0)
        goto out_path;
    cpu_sample(&s, opt.workers, before);
    if (measure_throughput(&p, opt.tput_calls, opt.window, rate) != 0 ||
        check_errors(&p, on ? "metrics on" : "metrics off"))
        goto out_path;
    cpu_sample(&s, opt.workers, after);
    *broker_cpu_us = (double)(after[0] - before[0]) / (double)opt.tput_calls / 1000.0;
    note("metrics %-3s throughput: %.0f calls/s (%ld calls, window %ld%s); broker CPU per "
         "call %.2f us",
         on ? "on" : "off", *rate, opt.tput_calls, opt.window,
         on ? ", scraped every 100 ms" : "", *broker_cpu_us);
    rc = 0;
out_path:
    if (scraper > 0) {
        kill(scraper, SIGKILL);
        waitpid(scraper, NULL, 0);
    }
    bench_path_close(&p);
out:
    ferry_client_destroy(&c);
    if (s.dir[0] && bench_stack_stop(&s, 0) != 0 && rc == 0)
        note("warning: a ferry process did not stop cleanly");
    return rc;
}

static void metrics_measure(int run)
{
    double on = 0, off = 0, cpu_on = 0, cpu_off = 0;
    int err = run % 2 == 0 ? metrics_run(0, &off, &cpu_off) || metrics_run(1, &on, &cpu_on)
                           : metrics_run(1, &on, &cpu_on) || metrics_run(0, &off, &cpu_off);
    if (err) {
        res.failures++;
        return;
    }
    add(&res.metrics_on, on);
    add(&res.metrics_off, off);
    add(&res.metrics_ratio, on / off);
    add(&res.metrics_cpu_on, cpu_on);
    add(&res.metrics_cpu_off, cpu_off);
}

/* ---- 1, 2 and 3 with a real engine: scripts ---- */

static const char *script_name = "bench.lua";

/* Submits n copies of src keeping up to window in flight; scripts per second. */
static int run_scripts(ferry_client *c, const char *src, long n, long window, int timeout_ms,
                       double *rate)
{
    long sent = 0, done = 0, failed = 0;
    char last[160] = "";
    size_t len = strlen(src);
    int64_t t0 = bench_now_ns();
    while (done < n) {
        while (sent < n && sent - done < window) {
            ferry_err e =
                ferry_client_submit(c, src, len, script_name, NULL, 0, (uint32_t)timeout_ms, NULL);
            if (e != FERRY_OK) {
                note("submit: %s", ferry_err_desc(e));
                return -1;
            }
            sent++;
        }
        ferry_result r;
        ferry_err e = ferry_client_wait(c, timeout_ms + ANSWER_MS, &r);
        if (e != FERRY_OK) {
            note("no result within %d ms (%ld of %ld done)", timeout_ms + ANSWER_MS, done, n);
            return -1;
        }
        if (!r.result->ok) {
            failed++;
            snprintf(last, sizeof last, "%s: %s",
                     r.result->error && r.result->error->code ? r.result->error->code : "?",
                     r.result->error && r.result->error->message ? r.result->error->message : "");
        }
        ferry_result_fini(&r);
        done++;
    }
    *rate = (double)n / ((double)(bench_now_ns() - t0) / 1e9);
    if (failed) {
        note("%ld of %ld scripts failed (last: %s)", failed, n, last);
        return -1;
    }
    return 0;
}

/* The median wall time of k runs of src, one at a time, in microseconds. */
static int script_time(ferry_client *c, const char *src, int k, double *us)
{
    series t = {0};
    for (int i = 0; i < k && i < MAX_RUNS; i++) {
        int64_t t0 = bench_now_ns();
        double ignore;
        if (run_scripts(c, src, 1, 1, 60000, &ignore) != 0)
            return -1;
        add(&t, (double)(bench_now_ns() - t0) / 1000.0);
    }
    *us = median(&t);
    return 0;
}

/* A broker, a worker and an engine with enough slots, and a client on them. */
static int engine_stack(bench_stack *s, ferry_client **c)
{
    char slots[32];
    long nslots = opt.slots > opt.e2e_scripts ? opt.slots : opt.e2e_scripts;
    const char *eargs[] = {"--slots", fmt_long(nslots, slots, sizeof slots), NULL};
    if (ferry_call_stack(s, c, 1, 1024, NULL) != 0 ||
        bench_stack_spawn(s, "ferry-engine", "engine", eargs) < 0 || wait_ready(s, *c, 1, 1))
        return -1;
    return 0;
}

/* A real script making K sequential calls: per call, (its time - the time of
 * an empty script) / K. */
static int ferry_script_latency_run(double *us)
{
    bench_stack s;
    ferry_client *c = NULL;
    int rc = -1;
    char src[256];
    snprintf(src, sizeof src, "for i = 1, %ld do ferry.call('echo', 1) end return 1",
             opt.e2e_calls);
    double t0, tk, ignore;
    if (engine_stack(&s, &c) != 0 || run_scripts(c, src, 1, 1, 60000, &ignore) != 0 ||
        script_time(c, "return 1", 11, &t0) != 0 || script_time(c, src, 3, &tk) != 0)
        goto out;
    *us = (tk - t0) / (double)opt.e2e_calls;
    note("ferry script latency: %.1f us per call (a script of %ld calls: %.1f ms, an empty one: "
         "%.0f us)",
         *us, opt.e2e_calls, tk / 1000, t0);
    rc = 0;
out:
    ferry_client_destroy(&c);
    if (s.dir[0])
        bench_stack_stop(&s, 0);
    return rc;
}

/* Scripts calling at once (calls/s) and scripts/s of `return 1`, one engine;
 * with the second, the CPU time the engine and the broker used per script
 * (us) in cpu[0] and cpu[1]. */
static int ferry_scripts_run(int do_e2e, int do_scripts, double *e2e_tput, double *scripts,
                             double cpu[2])
{
    bench_stack s;
    ferry_client *c = NULL;
    int rc = -1;
    if (engine_stack(&s, &c) != 0)
        goto out;
    if (do_e2e) {
        char src[256];
        snprintf(src, sizeof src, "for i = 1, %ld do ferry.call('echo', 1) end return 1",
                 opt.e2e_script_calls);
        double srate;
        if (run_scripts(c, src, opt.e2e_scripts, opt.e2e_scripts, 120000, &srate) != 0)
            goto out;
        *e2e_tput = srate * (double)opt.e2e_script_calls;
        note("ferry scripts calling at once: %.0f calls/s (%ld scripts x %ld calls)", *e2e_tput,
             opt.e2e_scripts, opt.e2e_script_calls);
    }
    if (do_scripts) {
        long warm = opt.scripts / 10 < 2000 ? opt.scripts / 10 : 2000;
        double ignore;
        if (run_scripts(c, "return 1", warm, opt.script_window, 30000, &ignore) != 0)
            goto out;
        /* The stack: broker 0, worker 1, engine 2 (engine_stack). */
        int64_t e0 = bench_cpu_ns(bench_stack_pid(&s, 2)),
                b0 = bench_cpu_ns(bench_stack_pid(&s, 0));
        if (run_scripts(c, "return 1", opt.scripts, opt.script_window, 30000, scripts) != 0)
            goto out;
        int64_t e1 = bench_cpu_ns(bench_stack_pid(&s, 2)),
                b1 = bench_cpu_ns(bench_stack_pid(&s, 0));
        cpu[0] = e0 >= 0 && e1 >= 0 ? (double)(e1 - e0) / 1000.0 / (double)opt.scripts : 0;
        cpu[1] = b0 >= 0 && b1 >= 0 ? (double)(b1 - b0) / 1000.0 / (double)opt.scripts : 0;
        note("ferry scripts: %.0f scripts/s (%ld scripts, window %ld); CPU per script: engine "
             "%.2f us, broker %.2f us",
             *scripts, opt.scripts, opt.script_window, cpu[0], cpu[1]);
    }
    rc = 0;
out:
    ferry_client_destroy(&c);
    if (s.dir[0])
        bench_stack_stop(&s, 0);
    return rc;
}

/* ---- several brokers ---- */

/*
 * scripts/s of a script making broker_calls echo calls, through n brokers
 * sharing nothing (two engines and two workers serving every one of them,
 * the client spreading its submissions over all), in *rate. Always on
 * ipc:// paths in the stack's folder.
 */
static int brokers_run(long n, double *rate)
{
    bench_stack s;
    ferry_client *c = NULL;
    int rc = -1;
    char eps[3][4][sizeof s.clients];
    char lists[4][sizeof s.clients] = {"", "", "", ""};
    if (bench_stack_init(&s) != 0)
        return -1;
    char *own[4] = {s.clients, s.commands, s.engines, s.workers};
    static const char *const names[4] = {"clients", "commands", "engines", "workers"};
    for (int k = 0; k < 4; k++) {
        for (long i = 0; i < n; i++) {
            snprintf(eps[i][k], sizeof eps[i][k], "ipc://%s/b%ld-%s", s.dir, i, names[k]);
            size_t len = strlen(lists[k]);
            snprintf(lists[k] + len, sizeof lists[k] - len, "%s%s", i ? "," : "", eps[i][k]);
        }
    }
    for (long i = 0; i < n; i++) {
        for (int k = 0; k < 4; k++)
            memcpy(own[k], eps[i][k], sizeof s.clients); /* the same size */
        if (bench_stack_spawn(&s, "ferry-broker", "broker", NULL) < 0)
            goto out;
    }
    for (int k = 0; k < 4; k++)
        memcpy(own[k], lists[k], sizeof s.clients);
    char slots[32];
    const char *eargs[] = {"--slots", fmt_long(opt.slots, slots, sizeof slots), NULL};
    for (int i = 0; i < 2; i++)
        if (bench_stack_spawn(&s, "ferry-engine", "engine", eargs) < 0 ||
            bench_stack_spawn(&s, "ferry-worker", "worker", NULL) < 0)
            goto out;
    for (long i = 0; i < n; i++) {
        char err[256];
        ferry_client *one = ferry_client_new(eps[i][0], err, sizeof err);
        int ready = one && wait_ready(&s, one, 2, 2) == 0;
        ferry_client_destroy(&one);
        if (!ready)
            goto out;
    }
    char err[256];
    c = ferry_client_new(lists[0], err, sizeof err);
    if (!c) {
        note("client: %s", err);
        goto out;
    }
    char src[160];
    snprintf(src, sizeof src, "for i = 1, %ld do ferry.call('echo', i) end return 1",
             opt.broker_calls);
    long warm = opt.scripts / 10 < 2000 ? opt.scripts / 10 : 2000;
    double ignore;
    if (run_scripts(c, src, warm, opt.script_window, 30000, &ignore) != 0 ||
        run_scripts(c, src, opt.scripts, opt.script_window, 30000, rate) != 0)
        goto out;
    note("%ld broker%s: %.0f scripts/s of %ld echo calls (%ld scripts, window %ld, 2 engines, "
         "2 workers)",
         n, n > 1 ? "s" : "", *rate, opt.broker_calls, opt.scripts, opt.script_window);
    rc = 0;
out:
    ferry_client_destroy(&c);
    if (s.dir[0])
        bench_stack_stop(&s, 0);
    return rc;
}

/* One broker, then opt.brokers, alternating which goes first run by run. */
static void brokers_measure(int run)
{
    double one = 0, many = 0;
    int err = run % 2 == 0 ? brokers_run(1, &one) || brokers_run(opt.brokers, &many)
                           : brokers_run(opt.brokers, &many) || brokers_run(1, &one);
    if (err) {
        res.failures++;
        return;
    }
    add(&res.brokers_one, one);
    add(&res.brokers_many, many);
    add(&res.brokers_ratio, many / one);
}

/* The size of a Submit of src as ferry_client_submit sends it. */
static size_t submit_size(const char *src)
{
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.request_id = 100000;
    sub.source.data = (uint8_t *)src;
    sub.source.len = strlen(src);
    sub.timeout_ms = 30000;
    sub.name = (char *)script_name;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    return ferry__envelope__get_packed_size(&env);
}

/* The baseline of scripts/s: client -> raw broker -> raw engine (echo) -> client. */
static int raw_scripts_run(double *rate)
{
    bench_stack s;
    bench_path p = {0};
    int rc = -1;
    if (raw_stack(&s, 1, 1) != 0 || open_path(&p, BENCH_PATH_RAW_CLIENT, &s) != 0)
        goto out;
    p.raw_size = bench_raw_size(p.id_len, submit_size("return 1"));
    long warm = opt.scripts / 10 < 2000 ? opt.scripts / 10 : 2000;
    double ignore;
    if (measure_throughput(&p, warm, opt.script_window, &ignore) != 0 ||
        measure_throughput(&p, opt.scripts, opt.script_window, rate) != 0 ||
        check_errors(&p, "raw scripts"))
        goto out_path;
    note("raw   scripts: %.0f messages/s (window %ld)", *rate, opt.script_window);
    rc = 0;
out_path:
    bench_path_close(&p);
out:
    if (s.dir[0])
        bench_stack_stop(&s, 0);
    return rc;
}

static void scripts_measure(int run)
{
    int do_e2e = wanted("e2e"), do_scripts = wanted("scripts");
    if (do_e2e) {
        cpu_set_t old;
        double lat;
        if (pin_one_cpu(&old) == 0) {
            if (ferry_script_latency_run(&lat) == 0)
                add(&res.e2e_lat_us, lat);
            else
                res.failures++;
            unpin(&old);
        }
    }
    if (!do_e2e && !do_scripts)
        return;
    double tput = 0, sps = 0, raw = 0, cpu[2] = {0, 0};
    int ferr, rerr = 0;
    if (run % 2 == 0 || !do_scripts) {
        ferr = ferry_scripts_run(do_e2e, do_scripts, &tput, &sps, cpu);
        if (do_scripts)
            rerr = raw_scripts_run(&raw);
    } else {
        rerr = raw_scripts_run(&raw);
        ferr = ferry_scripts_run(do_e2e, do_scripts, &tput, &sps, cpu);
    }
    if (ferr || rerr) {
        res.failures++;
        return;
    }
    if (do_e2e)
        add(&res.e2e_tput, tput);
    if (do_scripts) {
        add(&res.scripts, sps);
        add(&res.raw_scripts, raw);
        add(&res.scripts_ratio, sps / raw);
        add(&res.scripts_cpu_engine, cpu[0]);
        add(&res.scripts_cpu_broker, cpu[1]);
    }
}

/* ---- 4: memory per blocked script ---- */

static void memory_measure(void)
{
    bench_stack s;
    ferry_client *c = NULL;
    long n = opt.blocked;
    char nb[32], n2[32], conc[32];
    fmt_long(n, nb, sizeof nb);
    fmt_long(2 * n, n2, sizeof n2);
    fmt_long(n, conc, sizeof conc);
    /* The scripts sleep far longer than the measure lasts; the timeouts, longer still. */
    long sleep_ms = 600000;
    const char *bargs[] = {
        "--scripts-max",  n2,       "--queue-max", n2, "--script-timeout", "900000",
        "--call-timeout", "900000", NULL};
    const char *eargs[] = {"--slots", nb,  "--script-timeout", "900000", "--call-timeout",
                           "900000",  NULL};
    int eidx = -1;
    if (ferry_call_stack(&s, &c, 1, n, bargs) != 0 ||
        (eidx = bench_stack_spawn(&s, "ferry-engine", "engine", eargs)) < 0 ||
        wait_ready(&s, c, 1, 1) != 0)
        goto fail;
    double ignore;
    /* One script first, so that what every engine loads once is in the idle figure. */
    if (run_scripts(c, "return 1", 10, 10, 30000, &ignore) != 0)
        goto fail;
    pid_t engine = bench_stack_pid(&s, eidx);
    res.engine_idle_kb = bench_rss_kb(engine, 0);
    char src[128];
    snprintf(src, sizeof src, "ferry.call('sleep', %ld) return 1", sleep_ms);
    int64_t t0 = bench_now_ns();
    for (long i = 0; i < n; i++)
        if (ferry_client_submit(c, src, strlen(src), script_name, NULL, 0, 900000, NULL) !=
            FERRY_OK) {
            note("memory: submit %ld failed", i);
            goto fail;
        }
    /* Blocked means: the script's call is at the worker. */
    int64_t until = bench_now_ns() + 180 * 1000000000LL;
    for (;;) {
        Ferry__Envelope *env = stats(c);
        uint64_t in_flight = env ? env->stats->in_flight : 0;
        ferry_envelope_free(env);
        if (in_flight >= (uint64_t)n)
            break;
        if (bench_now_ns() > until || !bench_stack_alive(&s)) {
            note("memory: only %llu of %ld scripts blocked", (unsigned long long)in_flight, n);
            goto fail;
        }
        zmq_poll(NULL, 0, 20);
    }
    res.mem_block_s = (double)(bench_now_ns() - t0) / 1e9;
    res.engine_kb = bench_rss_kb(engine, 0);
    res.engine_hwm_kb = bench_rss_kb(engine, 1);
    res.broker_kb = bench_rss_kb(bench_stack_pid(&s, 0), 0);
    res.worker_kb = bench_rss_kb(bench_stack_pid(&s, 1), 0);
    res.mem_n = n;
    res.mem_done = 1;
    note("memory: %ld blocked scripts in %.2f s; engine RSS %ld KiB idle, %ld KiB with them "
         "(%.1f KiB per script)",
         n, res.mem_block_s, res.engine_idle_kb, res.engine_kb,
         (double)(res.engine_kb - res.engine_idle_kb) / (double)n);
    ferry_client_destroy(&c);
    bench_stack_stop(&s, 0);
    return;
fail:
    res.failures++;
    ferry_client_destroy(&c);
    if (s.dir[0])
        bench_stack_stop(&s, 1);
}

/* ---- 5: sleeps at once in one worker ---- */

static void sleeps_measure(void)
{
    bench_stack s;
    ferry_client *c = NULL;
    bench_path p = {0};
    long n = opt.sleeps;
    char n2[32];
    fmt_long(2 * n, n2, sizeof n2);
    const char *bargs[] = {"--queue-max", n2, NULL};
    if (ferry_call_stack(&s, &c, 1, n, bargs) != 0)
        goto fail;
    char err[256];
    ferry_curve curve;
    if (bench_stack_curve(&s, "engine", &curve) != 0 ||
        bench_path_open_curve(&p, BENCH_PATH_FERRY, s.commands, s.engines, &curve, READY_MS, err,
                              sizeof err) != 0) {
        note("sleeps: %s", err);
        goto fail;
    }
    p.function = "sleep";
    p.arg = 0; /* the probe sleeps 0 ms */
    if (bench_path_probe(&p, READY_MS) != 0) {
        note("sleeps: no answer to a probe");
        goto fail_path;
    }
    p.errors = 0;
    p.arg = opt.sleep_ms;
    pid_t worker = bench_stack_pid(&s, 1);
    res.sleep_worker_idle_kb = bench_rss_kb(worker, 0);

    uint64_t base = next_call_id;
    next_call_id += (uint64_t)n;
    int64_t t0 = bench_now_ns();
    long sent = 0, done = 0;
    int64_t first = 0, last = 0;
    while (sent < n) {
        ferry_err e = bench_path_send(&p, base + (uint64_t)sent);
        if (e == FERRY_OK) {
            sent++;
            continue;
        }
        if (e != FERRY_EOVERLOADED) {
            note("sleeps: send: %s", ferry_err_desc(e));
            goto fail_path;
        }
        zmq_poll(NULL, 0, 1); /* the PUSH is full: let the broker read */
    }
    res.sleeps_send_s = (double)(bench_now_ns() - t0) / 1e9;
    /* While they sleep: how many does the broker see at the worker, and its RSS. */
    int64_t look_until = t0 + opt.sleep_ms * 1000000LL / 2;
    while (bench_now_ns() < look_until) {
        Ferry__Envelope *env = stats(c);
        if (env && (long)env->stats->in_flight > res.sleeps_in_flight_max)
            res.sleeps_in_flight_max = (long)env->stats->in_flight;
        ferry_envelope_free(env);
        long kb = bench_rss_kb(worker, 0);
        if (kb > res.sleep_worker_kb)
            res.sleep_worker_kb = kb;
        if (res.sleeps_in_flight_max >= n)
            break;
        zmq_poll(NULL, 0, 10);
    }
    while (done < n) {
        uint64_t got;
        if (bench_path_recv(&p, (int)opt.sleep_ms + ANSWER_MS, &got) != 1) {
            note("sleeps: %ld of %ld answered", done, n);
            goto fail_path;
        }
        if (got & BENCH_PROBE_BIT)
            continue;
        last = bench_now_ns() - t0;
        if (done++ == 0)
            first = last;
    }
    res.sleeps_first_s = (double)first / 1e9;
    res.sleeps_last_s = (double)last / 1e9;
    res.sleeps_errors = p.errors;
    res.sleeps_n = n;
    res.sleeps_ms = opt.sleep_ms;
    res.sleeps_done = 1;
    note("sleeps: %ld sleeps of %ld ms: sent in %.3f s, broker saw %ld in flight, answers "
         "from %.3f s to %.3f s, worker RSS %ld -> %ld KiB, %llu errors",
         n, opt.sleep_ms, res.sleeps_send_s, res.sleeps_in_flight_max, res.sleeps_first_s,
         res.sleeps_last_s, res.sleep_worker_idle_kb, res.sleep_worker_kb,
         (unsigned long long)p.errors);
    if (p.errors)
        note("sleeps: last error: %s", p.last_error);
    bench_path_close(&p);
    ferry_client_destroy(&c);
    bench_stack_stop(&s, 0);
    return;
fail_path:
    bench_path_close(&p);
fail:
    res.failures++;
    ferry_client_destroy(&c);
    if (s.dir[0])
        bench_stack_stop(&s, 1);
}

/* ---- the machine ---- */

typedef struct {
    long nproc;
    char cpu[128];
    char kernel[128];
    char load_start[64], load_end[64];
    int zmq_major, zmq_minor, zmq_patch;
} machine;

static void read_load(char *out, size_t len)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
            a = b = c = 0;
        fclose(f);
    }
    snprintf(out, len, "%.2f %.2f %.2f", a, b, c);
}

static void read_machine(machine *m)
{
    memset(m, 0, sizeof *m);
    m->nproc = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 1 + (v[1] == ' ');
                v[strcspn(v, "\n")] = '\0';
                snprintf(m->cpu, sizeof m->cpu, "%s", v);
            }
            break;
        }
    }
    if (f)
        fclose(f);
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(m->kernel, sizeof m->kernel, "%.40s %.80s", u.sysname, u.release);
    zmq_version(&m->zmq_major, &m->zmq_minor, &m->zmq_patch);
    read_load(m->load_start, sizeof m->load_start);
}

/* ---- output ---- */

/* All of them at the worker at once (the broker saw them in flight together),
 * none failed, and all done within two sleeps: they ran side by side. */
static int sleeps_pass(void)
{
    return res.sleeps_n >= 10000 && res.sleeps_in_flight_max >= res.sleeps_n &&
           res.sleeps_errors == 0 && res.sleeps_last_s < 2.0 * (double)res.sleeps_ms / 1000.0;
}

static const char *verdict(int pass)
{
    return pass ? "PASS" : "FAIL";
}

static void print_table(const machine *m)
{
    printf("ferry-bench %s: %ld CPUs (%s), %s, libzmq %d.%d.%d, transport %s\n", FERRY_VERSION,
           m->nproc, m->cpu, m->kernel, m->zmq_major, m->zmq_minor, m->zmq_patch, opt.transport);
    printf("load average %s at the start, %s at the end; %ld run%s, medians shown\n\n",
           m->load_start, m->load_end, opt.runs, opt.runs > 1 ? "s" : "");
    printf("%-44s %14s %14s %7s %9s\n", "measure", "ferry", "raw", "ratio", "target");
    printf("%-44s %14s %14s %7s %9s\n", "-------", "-----", "---", "-----", "------");
    if (res.lat_p50.n) {
        double r = median(&res.lat_ratio);
        printf("%-44s %11.1f us %11.1f us %7.2f %9s %s\n", "1. latency p50, one call, one CPU",
               median(&res.lat_p50), median(&res.raw_p50), r, "<= 1.25",
               verdict(r <= TARGET_LATENCY));
        printf("%-44s %11.1f us %11.1f us %7.2f\n", "   latency p99, one CPU", median(&res.lat_p99),
               median(&res.raw_p99), median(&res.lat_p99) / median(&res.raw_p99));
        printf("%-44s %11.1f us %11.1f us %7.2f\n", "   latency mean, one CPU",
               median(&res.lat_mean), median(&res.raw_mean),
               median(&res.lat_mean) / median(&res.raw_mean));
    }
    if (res.e2e_lat_us.n) {
        char what[64];
        snprintf(what, sizeof what, "   script of %ld calls, per call, one CPU", opt.e2e_calls);
        printf("%-44s %11.1f us", what, median(&res.e2e_lat_us));
        if (res.raw_p50.n) {
            double r = median(&res.e2e_lat_us) / median(&res.raw_p50);
            printf(" %11.1f us %7.2f %9s %s", median(&res.raw_p50), r, "<= 1.10",
                   verdict(r <= TARGET_SCRIPT_CALL));
        }
        printf("\n");
    }
    if (res.free_p50.n) {
        printf("%-44s %11.1f us %11.1f us %7.2f\n", "   latency p50, free placement",
               median(&res.free_p50), median(&res.raw_free_p50), median(&res.free_ratio));
        printf("%-44s %11.1f us %11.1f us %7.2f\n", "   latency p99, free placement",
               median(&res.free_p99), median(&res.raw_free_p99),
               median(&res.free_p99) / median(&res.raw_free_p99));
    }
    if (res.tput.n) {
        char what[64];
        double r = median(&res.tput_ratio);
        snprintf(what, sizeof what, "2. throughput, window %ld, %ld worker%s", opt.window,
                 opt.workers, opt.workers > 1 ? "s" : "");
        printf("%-44s %12.0f/s %12.0f/s %7.2f %9s %s\n", what, median(&res.tput),
               median(&res.raw_tput), r, ">= 0.80", verdict(r >= TARGET_THROUGHPUT));
        const struct {
            const char *what;
            const series *f, *r;
        } cpu[] = {
            {"   CPU per call: broker", &res.cpu_broker, &res.raw_cpu_broker},
            {"   CPU per call: worker", &res.cpu_worker, &res.raw_cpu_worker},
            {"   CPU per call: engine (the bench)", &res.cpu_engine, &res.raw_cpu_engine},
        };
        for (size_t i = 0; i < sizeof cpu / sizeof cpu[0]; i++)
            printf("%-44s %11.2f us %11.2f us %7.2f\n", cpu[i].what, median(cpu[i].f),
                   median(cpu[i].r), median(cpu[i].f) / median(cpu[i].r));
    }
    if (res.metrics_ratio.n) {
        double r = median(&res.metrics_ratio);
        printf("%-44s %12.0f/s %12.0f/s %7.2f %9s %s\n",
               "   throughput, --metrics on / off", median(&res.metrics_on),
               median(&res.metrics_off), r, ">= 0.95", verdict(r >= TARGET_METRICS));
        printf("%-44s %11.2f us %11.2f us %7.2f\n", "   CPU per call: broker, --metrics on / off",
               median(&res.metrics_cpu_on), median(&res.metrics_cpu_off),
               median(&res.metrics_cpu_on) / median(&res.metrics_cpu_off));
    }
    if (res.e2e_tput.n) {
        char what[64];
        snprintf(what, sizeof what, "   %ld scripts x %ld calls, one engine", opt.e2e_scripts,
                 opt.e2e_script_calls);
        printf("%-44s %12.0f/s", what, median(&res.e2e_tput));
        if (res.raw_tput.n) {
            double r = median(&res.e2e_tput) / median(&res.raw_tput);
            printf(" %14s %7.2f %9s %s", "(raw calls/s)", r, ">= 0.60",
                   verdict(r >= TARGET_SCRIPT_CALLS));
        }
        printf("\n");
    }
    if (res.scripts.n) {
        char what[64];
        snprintf(what, sizeof what, "3. scripts/s, `return 1`, window %ld", opt.script_window);
        double r = median(&res.scripts_ratio);
        printf("%-44s %12.0f/s %12.0f/s %7.2f %9s %s\n", what, median(&res.scripts),
               median(&res.raw_scripts), r, ">= 0.50", verdict(r >= TARGET_SCRIPTS));
        printf("%-44s %11.2f us\n", "   CPU per script: engine", median(&res.scripts_cpu_engine));
        printf("%-44s %11.2f us\n", "   CPU per script: broker", median(&res.scripts_cpu_broker));
    }
    if (res.brokers_many.n) {
        char what[64];
        snprintf(what, sizeof what, "6. scripts/s, %ld echo calls: %ld brokers / 1",
                 opt.broker_calls, opt.brokers);
        printf("%-44s %12.0f/s %12.0f/s %7.2f\n", what, median(&res.brokers_many),
               median(&res.brokers_one), median(&res.brokers_ratio));
    }
    if (res.mem_done) {
        char what[64];
        double mb = (double)res.engine_kb / 1024.0;
        snprintf(what, sizeof what, "4. engine RSS, %ld blocked scripts", res.mem_n);
        printf("%-44s %11.1f MB %14s %7s %9s %s\n", what, mb, "", "", "< 400 MB",
               verdict(mb < TARGET_MEMORY_MB && res.mem_n >= 10000));
        double kb = (double)(res.engine_kb - res.engine_idle_kb) / (double)res.mem_n;
        printf("%-44s %11.1f KB %14s %7s %9s %s\n", "   per blocked script (RSS delta / n)", kb, "",
               "", "<= 22 KB", verdict(kb <= TARGET_BLOCKED_KB));
    }
    if (res.sleeps_done) {
        char what[64];
        int pass = sleeps_pass();
        snprintf(what, sizeof what, "5. sleeps of %ld ms in one worker", res.sleeps_ms);
        printf("%-44s %8ld at once %14s %7s %9s %s\n", what, res.sleeps_in_flight_max, "", "",
               ">= 10000", verdict(pass));
        printf("%-44s %9.3f s\n", "   all answered after", res.sleeps_last_s);
        printf("%-44s %11.1f MB\n", "   worker RSS with them",
               (double)res.sleep_worker_kb / 1024.0);
    }
    if (res.failures)
        printf("\n%d measurement%s failed: see the messages above\n", res.failures,
               res.failures > 1 ? "s" : "");
}

static void json_series(const char *name, const series *s, int last)
{
    printf("    \"%s\": {\"median\": %.3f, \"runs\": [", name, median(s));
    for (int i = 0; i < s->n; i++)
        printf("%s%.3f", i ? ", " : "", s->v[i]);
    printf("]}%s\n", last ? "" : ",");
}

static void print_json(const machine *m)
{
    printf("{\n  \"version\": \"%s\",\n", FERRY_VERSION);
    printf("  \"machine\": {\"nproc\": %ld, \"cpu\": \"%s\", \"kernel\": \"%s\", "
           "\"libzmq\": \"%d.%d.%d\", \"load_start\": \"%s\", \"load_end\": \"%s\"},\n",
           m->nproc, m->cpu, m->kernel, m->zmq_major, m->zmq_minor, m->zmq_patch, m->load_start,
           m->load_end);
    printf("  \"config\": {\"transport\": \"%s\", \"runs\": %ld, \"calls\": %ld, "
           "\"throughput_calls\": %ld, \"window\": %ld, \"workers\": %ld, \"e2e_calls\": %ld, "
           "\"e2e_scripts\": %ld, \"e2e_script_calls\": %ld, \"scripts\": %ld, "
           "\"script_window\": %ld, \"slots\": %ld, \"blocked\": %ld, \"sleeps\": %ld, "
           "\"sleep_ms\": %ld},\n",
           opt.transport, opt.runs, opt.calls, opt.tput_calls, opt.window, opt.workers,
           opt.e2e_calls, opt.e2e_scripts, opt.e2e_script_calls, opt.scripts, opt.script_window,
           opt.slots, opt.blocked, opt.sleeps, opt.sleep_ms);
    printf("  \"targets\": {\"throughput_ratio_min\": %.2f, \"latency_p50_ratio_max\": %.2f, "
           "\"blocked_engine_mb_max\": %.0f, \"sleeps_at_once_min\": 10000, "
           "\"script_call_ratio_max\": %.2f, \"script_calls_ratio_min\": %.2f, "
           "\"scripts_ratio_min\": %.2f, \"blocked_script_kb_max\": %.0f},\n",
           TARGET_THROUGHPUT, TARGET_LATENCY, TARGET_MEMORY_MB, TARGET_SCRIPT_CALL,
           TARGET_SCRIPT_CALLS, TARGET_SCRIPTS, TARGET_BLOCKED_KB);
    printf("  \"results\": {\n");
    const struct {
        const char *name;
        const series *s;
    } all[] = {
        {"latency_p50_us", &res.lat_p50},
        {"latency_p99_us", &res.lat_p99},
        {"latency_mean_us", &res.lat_mean},
        {"raw_latency_p50_us", &res.raw_p50},
        {"raw_latency_p99_us", &res.raw_p99},
        {"raw_latency_mean_us", &res.raw_mean},
        {"latency_p50_ratio", &res.lat_ratio},
        {"free_latency_p50_us", &res.free_p50},
        {"free_latency_p99_us", &res.free_p99},
        {"raw_free_latency_p50_us", &res.raw_free_p50},
        {"raw_free_latency_p99_us", &res.raw_free_p99},
        {"free_latency_p50_ratio", &res.free_ratio},
        {"throughput_calls_s", &res.tput},
        {"raw_throughput_calls_s", &res.raw_tput},
        {"throughput_ratio", &res.tput_ratio},
        {"metrics_on_calls_s", &res.metrics_on},
        {"metrics_off_calls_s", &res.metrics_off},
        {"metrics_ratio", &res.metrics_ratio},
        {"metrics_on_cpu_us_per_call_broker", &res.metrics_cpu_on},
        {"metrics_off_cpu_us_per_call_broker", &res.metrics_cpu_off},
        {"cpu_us_per_call_broker", &res.cpu_broker},
        {"cpu_us_per_call_worker", &res.cpu_worker},
        {"cpu_us_per_call_engine", &res.cpu_engine},
        {"raw_cpu_us_per_call_broker", &res.raw_cpu_broker},
        {"raw_cpu_us_per_call_worker", &res.raw_cpu_worker},
        {"raw_cpu_us_per_call_engine", &res.raw_cpu_engine},
        {"script_call_latency_us", &res.e2e_lat_us},
        {"script_calls_s", &res.e2e_tput},
        {"scripts_s", &res.scripts},
        {"raw_scripts_s", &res.raw_scripts},
        {"scripts_ratio", &res.scripts_ratio},
        {"scripts_cpu_engine_us", &res.scripts_cpu_engine},
        {"scripts_cpu_broker_us", &res.scripts_cpu_broker},
        {"brokers_one_scripts_s", &res.brokers_one},
        {"brokers_many_scripts_s", &res.brokers_many},
        {"brokers_ratio", &res.brokers_ratio},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i].s->n)
            json_series(all[i].name, all[i].s, 0);
    if (res.mem_done)
        printf("    \"memory\": {\"blocked_scripts\": %ld, \"engine_rss_idle_kb\": %ld, "
               "\"engine_rss_kb\": %ld, \"engine_hwm_kb\": %ld, \"per_script_kb\": %.2f, "
               "\"broker_rss_kb\": %ld, \"worker_rss_kb\": %ld, \"seconds_to_block\": %.3f},\n",
               res.mem_n, res.engine_idle_kb, res.engine_kb, res.engine_hwm_kb,
               (double)(res.engine_kb - res.engine_idle_kb) / (double)res.mem_n, res.broker_kb,
               res.worker_kb, res.mem_block_s);
    if (res.sleeps_done)
        printf("    \"sleeps\": {\"sleeps\": %ld, \"sleep_ms\": %ld, \"in_flight_max\": %ld, "
               "\"sent_s\": %.3f, \"first_answer_s\": %.3f, \"last_answer_s\": %.3f, "
               "\"errors\": %llu, \"worker_rss_idle_kb\": %ld, \"worker_rss_kb\": %ld},\n",
               res.sleeps_n, res.sleeps_ms, res.sleeps_in_flight_max, res.sleeps_send_s,
               res.sleeps_first_s, res.sleeps_last_s, (unsigned long long)res.sleeps_errors,
               res.sleep_worker_idle_kb, res.sleep_worker_kb);
    printf("    \"failures\": %d\n  },\n", res.failures);
    /* null where the measure did not run. */
    const char *v_tput = res.tput_ratio.n
                             ? (median(&res.tput_ratio) >= TARGET_THROUGHPUT ? "true" : "false")
                             : "null";
    const char *v_lat =
        res.lat_ratio.n ? (median(&res.lat_ratio) <= TARGET_LATENCY ? "true" : "false") : "null";
    const char *v_mem =
        res.mem_done
            ? ((double)res.engine_kb / 1024.0 < TARGET_MEMORY_MB && res.mem_n >= 10000 ? "true"
                                                                                       : "false")
            : "null";
    const char *v_sleep = res.sleeps_done ? (sleeps_pass() ? "true" : "false") : "null";
    const char *v_call =
        res.e2e_lat_us.n && res.raw_p50.n
            ? (median(&res.e2e_lat_us) / median(&res.raw_p50) <= TARGET_SCRIPT_CALL ? "true"
                                                                                    : "false")
            : "null";
    const char *v_calls =
        res.e2e_tput.n && res.raw_tput.n
            ? (median(&res.e2e_tput) / median(&res.raw_tput) >= TARGET_SCRIPT_CALLS ? "true"
                                                                                    : "false")
            : "null";
    const char *v_scripts = res.scripts_ratio.n
                                ? (median(&res.scripts_ratio) >= TARGET_SCRIPTS ? "true" : "false")
                                : "null";
    const char *v_blocked =
        res.mem_done
            ? ((double)(res.engine_kb - res.engine_idle_kb) / (double)res.mem_n <= TARGET_BLOCKED_KB
                   ? "true"
                   : "false")
            : "null";
    printf(
        "  \"pass\": {\"throughput\": %s, \"latency\": %s, \"memory\": %s, \"sleeps\": %s, "
        "\"script_call\": %s, \"script_calls\": %s, \"scripts\": %s, \"blocked_script\": %s}\n}\n",
        v_tput, v_lat, v_mem, v_sleep, v_call, v_calls, v_scripts, v_blocked);
}

/* ---- main ---- */

/* The folder this program lives in: the build's bin folder holds the rest. */
static const char *own_dir(void)
{
    static char dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        return ".";
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    return dir;
}

int main(int argc, char **argv)
{
    opt.bin_dir = own_dir();
    const ferry_opt opts[] = {
        {"bin", "FERRY_BENCH_BIN", FERRY_OPT_STRING, &opt.bin_dir,
         "folder with ferry-broker, ferry-engine, ferry-worker, ferry-bench-raw", 0, 0},
        {"transport", NULL, FERRY_OPT_STRING, &opt.transport,
         "ipc (paths in a temporary folder) or tcp (loopback, free ports); the same for the "
         "baseline",
         0, 0},
        {"only", NULL, FERRY_OPT_STRING, &opt.only,
         "comma-separated measures: latency,free,throughput,e2e,scripts,memory,sleeps,metrics",
         0, 0},
        {"runs", NULL, FERRY_OPT_INT, &opt.runs, "runs of each timed measure (medians shown)", 1,
         MAX_RUNS},
        {"calls", NULL, FERRY_OPT_INT, &opt.calls, "latency: calls, one at a time", 100, 100000000},
        {"throughput-calls", NULL, FERRY_OPT_INT, &opt.tput_calls, "throughput: calls", 1000,
         1000000000},
        {"window", NULL, FERRY_OPT_INT, &opt.window, "throughput: calls in flight at once", 1,
         1000000},
        {"workers", NULL, FERRY_OPT_INT, &opt.workers, "throughput: workers (and raw workers)", 1,
         8},
        {"concurrency", NULL, FERRY_OPT_INT, &opt.concurrency,
         "throughput: --concurrency of each worker (0: the window, at least 1024)", 0, 1000000},
        {"e2e-calls", NULL, FERRY_OPT_INT, &opt.e2e_calls,
         "script latency: sequential calls in one script", 10, 10000000},
        {"e2e-scripts", NULL, FERRY_OPT_INT, &opt.e2e_scripts,
         "scripts calling at once on one engine", 1, 100000},
        {"e2e-script-calls", NULL, FERRY_OPT_INT, &opt.e2e_script_calls,
         "calls made by each of those scripts", 1, 10000000},
        {"scripts", NULL, FERRY_OPT_INT, &opt.scripts, "scripts/s: scripts", 100, 100000000},
        {"script-window", NULL, FERRY_OPT_INT, &opt.script_window,
         "scripts/s: scripts in flight at once", 1, 100000},
        {"slots", NULL, FERRY_OPT_INT, &opt.slots, "engine slots for the script measures", 1,
         1000000},
        {"blocked", NULL, FERRY_OPT_INT, &opt.blocked, "memory: scripts blocked in one engine", 1,
         1000000},
        {"sleeps", NULL, FERRY_OPT_INT, &opt.sleeps, "sleeps held at once by one worker", 1,
         1000000},
        {"sleep-ms", NULL, FERRY_OPT_INT, &opt.sleep_ms, "length of each of those sleeps", 100,
         600000},
        {"brokers", NULL, FERRY_OPT_INT, &opt.brokers,
         "also measure scripts/s through this many brokers at once against one (2 or 3; "
         "two engines and two workers serving each, ipc only); 0: not measured",
         0, 3},
        {"broker-calls", NULL, FERRY_OPT_INT, &opt.broker_calls,
         "brokers: echo calls in each script", 0, 100000},
        {"log-level", NULL, FERRY_OPT_STRING, &opt.log_level,
         "FERRY_LOG_LEVEL of the processes started", 0, 0},
        {"wrap-broker", NULL, FERRY_OPT_STRING, &opt.wrap_broker,
         "run the broker under this command, e.g. 'valgrind --tool=callgrind'", 0, 0},
        {"wrap-engine", NULL, FERRY_OPT_STRING, &opt.wrap_engine, "run engines under this command",
         0, 0},
        {"wrap-worker", NULL, FERRY_OPT_STRING, &opt.wrap_worker, "run workers under this command",
         0, 0},
        {"curve", NULL, FERRY_OPT_FLAG, &opt.curve,
         "CURVE keys on every Ferry socket (broker, engines, workers, the bench's own); the "
         "raw baseline stays without",
         0, 0},
        {"json", NULL, FERRY_OPT_FLAG, &opt.json, "print one JSON object instead of the table", 0,
         0},
        {"verbose", NULL, FERRY_OPT_FLAG, &opt.verbose, "print every process's log at its stop", 0,
         0},
    };
    const ferry_cli cli = {
        .program = "ferry-bench",
        .synopsis = "[options]",
        .summary = "Measures Ferry (latency, throughput, scripts/s, memory per blocked script, "
                   "sleeps per worker) against a raw libzmq baseline on the same socket path, "
                   "starting the real processes on private endpoints. See docs/benchmarks.md.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 1, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;
    if (strcmp(opt.transport, "ipc") != 0 && strcmp(opt.transport, "tcp") != 0) {
        fprintf(stderr, "ferry-bench: --transport: '%s' is not ipc or tcp\n", opt.transport);
        return 2;
    }
    const char *known[] = {"latency", "free",   "throughput", "e2e",
                           "scripts", "memory", "sleeps",     "metrics", "brokers"};
    if (opt.brokers == 1) {
        fprintf(stderr, "ferry-bench: --brokers: 2 or 3 (one is always measured beside them)\n");
        return 2;
    }
    for (const char *p = opt.only; p && *p;) {
        size_t len = strcspn(p, ",");
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= strlen(known[i]) == len && strncmp(p, known[i], len) == 0;
        if (!ok) {
            fprintf(stderr, "ferry-bench: --only: unknown measure '%.*s'\n", (int)len, p);
            return 2;
        }
        p += len + (p[len] == ',');
    }

    bench_proc_config pc = {.bin_dir = opt.bin_dir,
                            .tcp = strcmp(opt.transport, "tcp") == 0,
                            .log_level = opt.log_level,
                            .wrap_broker = opt.wrap_broker,
                            .wrap_engine = opt.wrap_engine,
                            .wrap_worker = opt.wrap_worker,
                            .verbose = opt.verbose,
                            .curve = opt.curve};
    bench_proc_setup(&pc);
    machine m;
    read_machine(&m);
    note("%ld CPUs, load average %s; %ld run%s over %s%s", m.nproc, m.load_start, opt.runs,
         opt.runs > 1 ? "s" : "", opt.transport, opt.curve ? " with CURVE keys" : "");

    for (long run = 0; run < opt.runs; run++) {
        note("run %ld of %ld", run + 1, opt.runs);
        call_path((int)run);
        scripts_measure((int)run);
        if (wanted("metrics"))
            metrics_measure((int)run);
        if (opt.brokers >= 2)
            brokers_measure((int)run);
    }
    if (wanted("memory"))
        memory_measure();
    if (wanted("sleeps"))
        sleeps_measure();

    read_load(m.load_end, sizeof m.load_end);
    if (opt.json)
        print_json(&m);
    else
        print_table(&m);
    return res.failures ? 1 : 0;
}

/* bench_proc: child processes on private endpoints, bounded waits, nothing left behind. */
#include "bench_proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP_BOUND_MS 30000 /* a child under valgrind takes a while to write its profile */
#define KILL_BOUND_MS 5000
#define LOG_LINES 200 /* of a child's log, printed on stderr */
#define MAX_STACKS 32

static bench_proc_config config = {.bin_dir = ".", .log_level = "info"};

/* Every stack between init and stop, for the exit and signal handlers. */
static bench_stack *volatile live[MAX_STACKS];

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void track(bench_stack *s, int on)
{
    for (int i = 0; i < MAX_STACKS; i++) {
        if (on && !live[i]) {
            live[i] = s;
            return;
        }
        if (!on && live[i] == s) {
            live[i] = NULL;
            return;
        }
    }
}

/* Async-signal-safe: kills what runs and leaves. The folders stay in /tmp. */
static void on_fatal_signal(int signo)
{
    for (int i = 0; i < MAX_STACKS; i++) {
        bench_stack *s = live[i];
        if (!s)
            continue;
        for (int k = 0; k < s->nprocs; k++)
            if (s->procs[k].pid > 0)
                kill(s->procs[k].pid, SIGKILL);
    }
    _exit(128 + signo);
}

static void on_exit_stop_all(void)
{
    for (int i = 0; i < MAX_STACKS; i++)
        if (live[i])
            bench_stack_stop(live[i], 0);
}

void bench_proc_setup(const bench_proc_config *cfg)
{
    config = *cfg;
    if (!config.log_level)
        config.log_level = "info";
    atexit(on_exit_stop_all);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* A free loopback TCP port (the kernel's pick; released again for the broker to bind). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Key pairs broker, engine, worker, client in <dir>/keys and the broker's allow-lists. */
static int make_keys(bench_stack *s)
{
    static const char *const roles[] = {"broker", "engine", "worker", "client"};
    char path[300], err[512];
    snprintf(path, sizeof path, "%s/keys", s->dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
        ferry_cert cert;
        snprintf(path, sizeof path, "%s/keys/%s", s->dir, roles[i]);
        if (ferry_cert_generate(&cert) != FERRY_OK ||
            ferry_cert_save(path, &cert, err, sizeof err) != FERRY_OK)
            return -1;
        if (i == 0)
            continue;
        snprintf(path, sizeof path, "%s/allow-%ss", s->dir, roles[i]);
        if (mkdir(path, 0700) != 0)
            return -1;
        snprintf(path, sizeof path, "%s/allow-%ss/%s", s->dir, roles[i], roles[i]);
        if (ferry_cert_save(path, &cert, err, sizeof err) != FERRY_OK)
            return -1;
    }
    s->curve = 1;
    return 0;
}

int bench_stack_init(bench_stack *s)
{
    memset(s, 0, sizeof *s);
    char dir[sizeof s->dir] = "/tmp/ferry-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "ferry-bench: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    memcpy(s->dir, dir, sizeof dir);
    char *eps[4] = {s->clients, s->commands, s->engines, s->workers};
    const char *names[4] = {"clients", "commands", "engines", "workers"};
    for (int i = 0; i < 4; i++) {
        if (config.tcp) {
            int port = free_port();
            if (port < 0) {
                fprintf(stderr, "ferry-bench: no free tcp port: %s\n", strerror(errno));
                return -1;
            }
            snprintf(eps[i], sizeof s->clients, "tcp://127.0.0.1:%d", port);
        } else {
            snprintf(eps[i], sizeof s->clients, "ipc://%s/%s", dir, names[i]);
        }
    }
    track(s, 1);
    if (config.curve && make_keys(s) != 0)
        return -1;
    return 0;
}

int bench_stack_curve(const bench_stack *s, const char *role, ferry_curve *out)
{
    memset(out, 0, sizeof *out);
    if (!s->curve)
        return 0;
    char own[300], broker[300], err[512];
    snprintf(own, sizeof own, "%s/keys/%s_secret", s->dir, role);
    snprintf(broker, sizeof broker, "%s/keys/broker", s->dir);
    if (ferry_curve_client(out, own, broker, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "ferry-bench: %s\n", err);
        return -1;
    }
    return 0;
}

/* Resolves a program name through PATH into out (before fork: no malloc after). */
static int find_program(const char *name, char *out, size_t outlen)
{
    if (strchr(name, '/')) {
        snprintf(out, outlen, "%s", name);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(out, outlen, "%.*s/%s", (int)len, path, name);
        if (access(out, X_OK) == 0)
            return 0;
        path += len + (end ? 1 : 0);
    }
    return -1;
}

int bench_stack_spawn(bench_stack *s, const char *binary, const char *role,
                      const char *const *argv_extra)
{
    if (s->nprocs == BENCH_MAX_PROCS)
        return -1;
    int idx = s->nprocs;
    ferry_proc *p = &s->procs[idx];
    char path[512];
    snprintf(path, sizeof path, "%s/%s", config.bin_dir, binary);
    if (access(path, X_OK) != 0) {
        fprintf(stderr, "ferry-bench: %s: %s (is the project built? see --bin)\n", path,
                strerror(errno));
        return -1;
    }

    /* The raw baseline's stand-ins take the same wrappers, for profiles side by side. */
    const char *wrap = NULL;
    if (role && strstr(role, "broker"))
        wrap = config.wrap_broker;
    else if (role && strstr(role, "engine"))
        wrap = config.wrap_engine;
    else if (role && strstr(role, "worker"))
        wrap = config.wrap_worker;

    const char *argv[96];
    char wrapbuf[1024], wrapexe[512];
    int n = 0;
    if (wrap && *wrap) {
        snprintf(wrapbuf, sizeof wrapbuf, "%s", wrap);
        for (char *tok = strtok(wrapbuf, " "); tok && n < BENCH_MAX_WRAP; tok = strtok(NULL, " "))
            argv[n++] = tok;
        if (n == 0 || find_program(argv[0], wrapexe, sizeof wrapexe) != 0) {
            fprintf(stderr, "ferry-bench: wrapper '%s' not found\n", wrap);
            return -1;
        }
    }
    const char *exe = n ? wrapexe : path;
    argv[n++] = path;
    char keyargs[4][320];
    if (s->curve && strcmp(binary, "ferry-broker") == 0) {
        snprintf(keyargs[0], sizeof keyargs[0], "--curve-key=%s/keys/broker_secret", s->dir);
        snprintf(keyargs[1], sizeof keyargs[1], "--allow-clients=%s/allow-clients", s->dir);
        snprintf(keyargs[2], sizeof keyargs[2], "--allow-engines=%s/allow-engines", s->dir);
        snprintf(keyargs[3], sizeof keyargs[3], "--allow-workers=%s/allow-workers", s->dir);
        for (int i = 0; i < 4; i++)
            argv[n++] = keyargs[i];
    } else if (s->curve &&
               (strcmp(binary, "ferry-engine") == 0 || strcmp(binary, "ferry-worker") == 0)) {
        snprintf(keyargs[0], sizeof keyargs[0], "--curve-key=%s/keys/%s_secret", s->dir,
                 binary + 6);
        snprintf(keyargs[1], sizeof keyargs[1], "--broker-key=%s/keys/broker", s->dir);
        argv[n++] = keyargs[0];
        argv[n++] = keyargs[1];
    }
    if (strcmp(binary, "ferry-broker") == 0) {
        const char *f[] = {"--clients", s->clients, "--commands", s->commands,
                           "--engines", s->engines, "--workers",  s->workers};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
            argv[n++] = f[i];
    } else if (strcmp(binary, "ferry-engine") == 0) {
        argv[n++] = "--commands";
        argv[n++] = s->commands;
        argv[n++] = "--engines";
        argv[n++] = s->engines;
    } else if (strcmp(binary, "ferry-worker") == 0) {
        argv[n++] = "--workers";
        argv[n++] = s->workers;
    } /* else: the caller passes every argument */
    for (int i = 0; argv_extra && argv_extra[i] && n < 95; i++)
        argv[n++] = argv_extra[i];
    argv[n] = NULL;

    char level[64];
    snprintf(level, sizeof level, "FERRY_LOG_LEVEL=%s", config.log_level);
    const char *add[] = {level, NULL};
    char **envp = ferry_proc_env(add, NULL);
    /* Die with the bench, whatever kills it; the signals it catches or
     * ignores are the child's own business again. */
    ferry_proc_opts o = {.path = exe,
                         .argv = argv,
                         .envp = envp,
                         .flags = FERRY_PROC_DIE_WITH_PARENT | FERRY_PROC_DEFAULT_SIGNALS};
    int rc = envp ? ferry_proc_start(p, s->dir, role ? role : binary, idx, &o) : -1;
    free(envp);
    if (rc != 0) {
        fprintf(stderr, "ferry-bench: cannot start %s: %s\n", binary, strerror(errno));
        return -1;
    }
    p->stop_last = strstr(p->name, "broker") != NULL;
    s->nprocs++;
    return idx;
}

pid_t bench_stack_pid(const bench_stack *s, int idx)
{
    return idx >= 0 && idx < s->nprocs ? s->procs[idx].pid : 0;
}

int bench_stack_alive(bench_stack *s)
{
    for (int i = 0; i < s->nprocs; i++) {
        ferry_proc *p = &s->procs[i];
        if (p->pid <= 0)
            continue;
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            p->status = status;
            fprintf(stderr, "ferry-bench: %s exited (status %d, signal %d)\n", p->name,
                    WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
            ferry_proc_dump_log(p, LOG_LINES);
            return 0;
        }
    }
    return 1;
}

int bench_stack_stop(bench_stack *s, int print_logs)
{
    int rc = ferry_proc_stop_all(s->procs, s->nprocs, STOP_BOUND_MS, KILL_BOUND_MS, "ferry-bench");
    if (print_logs || rc != 0 || config.verbose)
        for (int i = 0; i < s->nprocs; i++)
            ferry_proc_dump_log(&s->procs[i], LOG_LINES);
    s->nprocs = 0;
    track(s, 0);
    if (s->dir[0] && !getenv("FERRY_BENCH_KEEP")) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "ferry-bench: could not remove %s\n", s->dir);
    }
    s->dir[0] = '\0';
    return rc;
}

int64_t bench_cpu_ns(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char file[128];
        snprintf(file, sizeof file, "/proc/%d/task/%.20s/schedstat", (int)pid, e->d_name);
        FILE *f = fopen(file, "r");
        long long ns;
        if (f && fscanf(f, "%lld", &ns) == 1)
            sum += ns;
        if (f)
            fclose(f);
    }
    closedir(d);
    return sum;
}

long bench_rss_kb(pid_t pid, int hwm)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    const char *key = hwm ? "VmHWM:" : "VmRSS:";
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) {
            kb = strtol(line + strlen(key), NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

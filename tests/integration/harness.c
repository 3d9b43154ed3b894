/* harness: real processes on private ipc:// endpoints, bounded waits, logs on failure. */
#include "harness.h"

#include "ferry_buf.h"
#include "ferry_clock.h"
#include "ferry_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int stack_init(ferry_stack *s)
{
    memset(s, 0, sizeof *s);
    char dir[sizeof s->dir] = "/tmp/ferry-test-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    memcpy(s->dir, dir, sizeof dir);
    snprintf(s->clients, sizeof s->clients, "ipc://%s/clients", dir);
    snprintf(s->commands, sizeof s->commands, "ipc://%s/commands", dir);
    snprintf(s->engines, sizeof s->engines, "ipc://%s/engines", dir);
    snprintf(s->workers, sizeof s->workers, "ipc://%s/workers", dir);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* environ without FERRY_* settings, plus extra: a malloc'd array (free only the array). */
static char **child_env(char *extra)
{
    extern char **environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = malloc((n + 2) * sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FERRY_", 6) != 0)
            envp[k++] = environ[i];
    envp[k++] = extra;
    envp[k] = NULL;
    return envp;
}

/*
 * Starts argv[0] with envp in the next process slot, named "<name>.<slot>",
 * stdout and stderr into its log. Everything the child needs is made before
 * fork: between fork and exec a child of this multi-threaded process may only
 * make async-signal-safe calls (no malloc, so no setenv). Returns the slot or -1.
 */
static int launch(ferry_stack *s, const char *name, const char *const *argv, char **envp)
{
    if (s->nprocs == STACK_MAX_PROCS || !envp || !argv[0])
        return -1;
    int idx = s->nprocs;
    stack_proc *p = &s->procs[idx];
    /* Built locally: gcc -O2 takes p->name and s->dir for one object (-Wrestrict). */
    char pname[sizeof p->name], log[sizeof p->log];
    snprintf(pname, sizeof pname, "%s.%d", name, idx);
    snprintf(log, sizeof log, "%s/%s.log", s->dir, pname);
    memcpy(p->name, pname, sizeof pname);
    memcpy(p->log, log, sizeof log);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    fflush(NULL);
    pid_t pid = fd >= 0 ? fork() : -1;
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    if (fd >= 0)
        close(fd);
    if (pid < 0)
        return -1;
    p->pid = pid;
    s->nprocs++;
    return idx;
}

int stack_spawn(ferry_stack *s, const char *binary, const char *const *extra)
{
    if (s->nprocs == STACK_MAX_PROCS)
        return -1;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FERRY_BIN_DIR, binary);

    const char *argv[64];
    int n = 0;
    argv[n++] = path;
    if (strcmp(binary, "ferry-broker") == 0) {
        argv[n++] = "--clients";
        argv[n++] = s->clients;
        argv[n++] = "--commands";
        argv[n++] = s->commands;
        argv[n++] = "--engines";
        argv[n++] = s->engines;
        argv[n++] = "--workers";
        argv[n++] = s->workers;
    } else if (strcmp(binary, "ferry-engine") == 0) {
        argv[n++] = "--commands";
        argv[n++] = s->commands;
        argv[n++] = "--engines";
        argv[n++] = s->engines;
    } else {
        argv[n++] = "--workers";
        argv[n++] = s->workers;
    }
    for (int i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;

    char level[64];
    snprintf(level, sizeof level, "FERRY_LOG_LEVEL=%s",
             getenv("FERRY_TEST_LOG_LEVEL") ? getenv("FERRY_TEST_LOG_LEVEL") : "info");
    char **envp = child_env(level);
    int idx = launch(s, binary, argv, envp);
    free(envp);
    return idx;
}

int stack_start_broker(ferry_stack *s, const char *const *extra)
{
    int idx = stack_spawn(s, "ferry-broker", extra);
    if (idx >= 0 && !s->client) {
        char err[256];
        s->client = ferry_client_new(s->clients, err, sizeof err);
        if (!s->client)
            fprintf(stderr, "harness: client: %s\n", err);
    }
    return idx;
}

int stack_start_engine(ferry_stack *s, const char *const *extra)
{
    return stack_spawn(s, "ferry-engine", extra);
}

int stack_start_worker(ferry_stack *s, const char *const *extra)
{
    return stack_spawn(s, "ferry-worker", extra);
}

int stack_wait_ready(ferry_stack *s, unsigned engines, unsigned workers, int timeout_ms)
{
    if (!s->client)
        return -1;
    int64_t until = ferry_now_ms() + timeout_ms;
    while (ferry_now_ms() < until) {
        Ferry__Envelope *env = NULL;
        if (ferry_client_stats(s->client, 1000, &env) == FERRY_OK) {
            int ok = env->stats->engines >= engines && env->stats->workers >= workers;
            ferry_envelope_free(env);
            if (ok)
                return 0;
        }
        /* Registration is an event in another process: look again shortly. */
        poll(NULL, 0, 10);
    }
    fprintf(stderr, "harness: stack not ready within %d ms (want %u engines, %u workers)\n",
            timeout_ms, engines, workers);
    return -1;
}

void stack_signal(ferry_stack *s, int idx, int sig)
{
    if (idx >= 0 && idx < s->nprocs && s->procs[idx].pid > 0)
        kill(s->procs[idx].pid, sig);
}

/*
 * Waits for pid to exit within timeout_ms through a pidfd, which becomes
 * readable when the child exits. Returns the wait status, or -1.
 */
static int wait_child(pid_t pid, int timeout_ms)
{
    int status;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t until = ferry_now_ms() + timeout_ms;
        int rc;
        do {
            int64_t left = until - ferry_now_ms();
            rc = poll(&pfd, 1, left > 0 ? (int)left : 0);
        } while (rc < 0 && errno == EINTR);
        close(fd);
        if (rc <= 0)
            return -1;
    }
    /* Without a pidfd (old kernel) this blocks: the ctest timeout bounds it. */
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return status;
}

int stack_wait_exit(ferry_stack *s, int idx, int timeout_ms)
{
    stack_proc *p = &s->procs[idx];
    if (p->pid == 0)
        return p->status;
    int status = wait_child(p->pid, timeout_ms);
    if (status == -1)
        return -1;
    p->pid = 0;
    p->status = status;
    return status;
}

void stack_passed(ferry_stack *s)
{
    s->passed = 1;
}

static void dump_log(const stack_proc *p)
{
    FILE *f = fopen(p->log, "r");
    fprintf(stderr, "----- %s (%s) -----\n", p->name, p->log);
    if (!f)
        return;
    char line[2048];
    int lines = 0;
    while (fgets(line, sizeof line, f) && lines++ < 400)
        fputs(line, stderr);
    fclose(f);
}

int stack_stop(ferry_stack *s)
{
    ferry_client_destroy(&s->client);
    int clean = 1;
    /* Engines and workers first, then the broker, so nobody waits on a gone peer. */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < s->nprocs; i++) {
            int is_broker = strncmp(s->procs[i].name, "ferry-broker", 12) == 0;
            if (is_broker != pass)
                continue;
            if (s->procs[i].pid > 0)
                kill(s->procs[i].pid, SIGTERM);
        }
        for (int i = 0; i < s->nprocs; i++) {
            int is_broker = strncmp(s->procs[i].name, "ferry-broker", 12) == 0;
            if (is_broker != pass)
                continue;
            int was_running = s->procs[i].pid > 0;
            int st = stack_wait_exit(s, i, 10000);
            if (st == -1) {
                fprintf(stderr, "harness: %s did not exit on SIGTERM within 10 s\n",
                        s->procs[i].name);
                kill(s->procs[i].pid, SIGKILL);
                stack_wait_exit(s, i, 5000);
                clean = 0;
            } else if (was_running && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
                fprintf(stderr, "harness: %s exited with status %d (signal %d)\n",
                        s->procs[i].name, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                        WIFSIGNALED(st) ? WTERMSIG(st) : 0);
                clean = 0;
            }
        }
    }
    if (!s->passed || !clean)
        for (int i = 0; i < s->nprocs; i++)
            dump_log(&s->procs[i]);
    if (getenv("FERRY_TEST_KEEP")) {
        fprintf(stderr, "harness: kept %s\n", s->dir);
        return clean ? 0 : -1;
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", s->dir);
    return clean ? 0 : -1;
}

ferry_err stack_run(ferry_stack *s, const char *source, Ferry__Value *const *args, size_t nargs,
                    uint32_t timeout_ms, ferry_result *out)
{
    return ferry_client_run(s->client, source, strlen(source), "test.lua", args, nargs,
                            timeout_ms, out);
}

/* Reads all of fd into a malloc'd string. */
static char *slurp_fd(int fd)
{
    ferry_buf b = FERRY_BUF_INIT;
    char chunk[4096];
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        ferry_buf_append(&b, chunk, (size_t)n);
    ferry_buf_append(&b, "", 0);
    return b.data;
}

int stack_cli(ferry_stack *s, const char *const *argv, char **out, char **err, int timeout_ms)
{
    char path[512], opath[300], epath[300];
    snprintf(path, sizeof path, "%s/ferry", FERRY_BIN_DIR);
    snprintf(opath, sizeof opath, "%s/cli.out", s->dir);
    snprintf(epath, sizeof epath, "%s/cli.err", s->dir);
    int ofd = open(opath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int efd = open(epath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ofd < 0 || efd < 0)
        return -1;
    char clients[256];
    snprintf(clients, sizeof clients, "FERRY_CLIENTS=%s", s->clients);
    char **envp = child_env(clients);
    const char *args[64];
    int n = 0;
    args[n++] = path;
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    fflush(NULL);
    pid_t pid = envp ? fork() : -1;
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execve(path, (char *const *)args, envp);
        _exit(127);
    }
    free(envp);
    int status = pid > 0 ? wait_child(pid, timeout_ms) : -1;
    if (pid > 0 && status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (out)
        *out = slurp_fd(ofd);
    if (err)
        *err = slurp_fd(efd);
    close(ofd);
    close(efd);
    if (status == -1 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

const char *stack_write_file(ferry_stack *s, const char *name, const char *text)
{
    static char path[300];
    snprintf(path, sizeof path, "%s/%s", s->dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

typedef struct {
    char v[5][256];
} stack_vars;

/* environ without FERRY_* settings, plus the stack's endpoints (in *vars) and env: a
 * malloc'd array (free only the array). */
static char **cmd_env(ferry_stack *s, const char *const *env, stack_vars *vars)
{
    extern char **environ;
    snprintf(vars->v[0], sizeof vars->v[0], "FERRY_CLIENTS=%s", s->clients);
    snprintf(vars->v[1], sizeof vars->v[1], "FERRY_COMMANDS=%s", s->commands);
    snprintf(vars->v[2], sizeof vars->v[2], "FERRY_ENGINES=%s", s->engines);
    snprintf(vars->v[3], sizeof vars->v[3], "FERRY_WORKERS=%s", s->workers);
    snprintf(vars->v[4], sizeof vars->v[4], "FERRY_LOG_LEVEL=%s",
             getenv("FERRY_TEST_LOG_LEVEL") ? getenv("FERRY_TEST_LOG_LEVEL") : "info");
    size_t n = 0, extra = 0;
    while (environ[n])
        n++;
    while (env && env[extra])
        extra++;
    char **envp = malloc((n + extra + 6) * sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FERRY_", 6) != 0)
            envp[k++] = environ[i];
    for (size_t i = 0; i < 5; i++)
        envp[k++] = vars->v[i];
    for (size_t i = 0; i < extra; i++)
        envp[k++] = (char *)env[i];
    envp[k] = NULL;
    return envp;
}

int stack_spawn_cmd(ferry_stack *s, const char *name, const char *const *argv,
                    const char *const *env)
{
    if (!argv || !argv[0])
        return -1;
    stack_vars vars;
    char **envp = cmd_env(s, env, &vars);
    int idx = launch(s, name, argv, envp);
    free(envp);
    return idx;
}

int stack_exec(ferry_stack *s, const char *const *argv, const char *const *env, char **out,
               char **err, int timeout_ms)
{
    char opath[300], epath[300];
    snprintf(opath, sizeof opath, "%s/exec.out", s->dir);
    snprintf(epath, sizeof epath, "%s/exec.err", s->dir);
    int ofd = open(opath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int efd = open(epath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    stack_vars vars;
    char **envp = cmd_env(s, env, &vars);
    if (ofd < 0 || efd < 0 || !envp) {
        if (ofd >= 0)
            close(ofd);
        if (efd >= 0)
            close(efd);
        free(envp);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    free(envp);
    int status = pid > 0 ? wait_child(pid, timeout_ms) : -1;
    if (pid > 0 && status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    if (out)
        *out = slurp_fd(ofd);
    if (err)
        *err = slurp_fd(efd);
    close(ofd);
    close(efd);
    if (status == -1 || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

const char *stack_source_dir(void)
{
    /* This file is <source>/tests/integration/harness.c. */
    static char dir[512];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s", __FILE__);
        for (int i = 0; i < 3; i++) {
            char *slash = strrchr(dir, '/');
            if (slash)
                *slash = '\0';
        }
    }
    return dir;
}

const char *stack_python(const char *const *modules)
{
    const char *candidates[] = {getenv("FERRY_TEST_PYTHON"), "/usr/bin/python3",
                                "/usr/local/bin/python3"};
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
        const char *py = candidates[i];
        if (!py || !*py || access(py, X_OK) != 0)
            continue;
        char cmd[1024];
        int len = snprintf(cmd, sizeof cmd, "'%s' -c 'import sys", py);
        for (int m = 0; modules && modules[m] && len < (int)sizeof cmd; m++)
            len += snprintf(cmd + len, sizeof cmd - (size_t)len, ", %s", modules[m]);
        if (len < (int)sizeof cmd)
            snprintf(cmd + len, sizeof cmd - (size_t)len, "' >/dev/null 2>&1");
        if (system(cmd) == 0)
            return py;
    }
    return NULL;
}

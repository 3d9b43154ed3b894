/* harness: real processes on private ipc:// endpoints, bounded waits, logs on failure. */
#include "harness.h"

#include "ferry_buf.h"
#include "ferry_cert.h"
#include "ferry_clock.h"
#include "ferry_codec.h"
#include "ferry_wire.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

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

int stack_init_brokers(ferry_stack *s, int n)
{
    if (n < 2 || n > STACK_MAX_BROKERS || stack_init(s) != 0)
        return -1;
    static const char *const names[4] = {"clients", "commands", "engines", "workers"};
    char *lists[4] = {s->clients, s->commands, s->engines, s->workers};
    for (int k = 0; k < 4; k++) {
        lists[k][0] = '\0';
        for (int i = 0; i < n; i++) {
            snprintf(s->broker_eps[i][k], sizeof s->broker_eps[i][k], "ipc://%s/%s-%d", s->dir,
                     names[k], i);
            size_t len = strlen(lists[k]);
            snprintf(lists[k] + len, sizeof s->clients - len, "%s%s", i ? "," : "",
                     s->broker_eps[i][k]);
        }
    }
    s->nbrokers = n;
    return 0;
}

ferry_client *stack_broker_client(ferry_stack *s, int i)
{
    char err[512];
    ferry_client *c = ferry_client_new(s->broker_eps[i][0], err, sizeof err);
    if (!c)
        fprintf(stderr, "harness: client of broker %d: %s\n", i, err);
    return c;
}

int stack_init_tcp(ferry_stack *s)
{
    if (stack_init(s) != 0)
        return -1;
    /* Ports the kernel hands out, all four held at once so they differ. */
    int fds[4];
    char *eps[4] = {s->clients, s->commands, s->engines, s->workers};
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&a, &len) != 0) {
            rc = -1;
            continue;
        }
        snprintf(eps[i], sizeof s->clients, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    }
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return rc;
}

const char *stack_key(ferry_stack *s, const char *name)
{
    static char paths[4][300];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", s->keys, name);
    return p;
}

int stack_make_key(ferry_stack *s, const char *name)
{
    ferry_cert cert;
    char err[512];
    if (ferry_cert_generate(&cert) != FERRY_OK ||
        ferry_cert_save(stack_key(s, name), &cert, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "harness: key %s: %s\n", name, err);
        return -1;
    }
    return 0;
}

int stack_use_keys(ferry_stack *s)
{
    snprintf(s->keys, sizeof s->keys, "%s/keys", s->dir);
    if (mkdir(s->keys, 0700) != 0)
        return -1;
    static const char *const roles[] = {"client", "engine", "worker"};
    if (stack_make_key(s, "broker") != 0)
        return -1;
    for (int i = 0; i < 3; i++) {
        char dir[300], cmd[800];
        snprintf(dir, sizeof dir, "%s/allow-%ss", s->dir, roles[i]);
        snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", stack_key(s, roles[i]), dir);
        if (stack_make_key(s, roles[i]) != 0 || mkdir(dir, 0700) != 0 || system(cmd) != 0)
            return -1;
    }
    return 0;
}

ferry_client *stack_client(ferry_stack *s, const char *curve_key, const char *broker_key)
{
    char err[512];
    ferry_client *c = ferry_client_new_curve(s->clients, curve_key, broker_key, err, sizeof err);
    if (!c)
        fprintf(stderr, "harness: client: %s\n", err);
    return c;
}

/* FERRY_LOG_LEVEL for the children: $FERRY_TEST_LOG_LEVEL, or info. */
static const char *child_log_level(void)
{
    const char *level = getenv("FERRY_TEST_LOG_LEVEL");
    return level ? level : "info";
}

/*
 * Starts argv[0] with envp (built before fork: see ferry_proc.h) in the next
 * process slot, named "<name>.<slot>", stdout and stderr into its log. A
 * ferry-broker is stopped after the rest. Returns the slot or -1.
 */
static int launch(ferry_stack *s, const char *name, const char *const *argv, char **envp)
{
    if (s->nprocs == STACK_MAX_PROCS || !envp || !argv[0])
        return -1;
    int idx = s->nprocs;
    ferry_proc *p = &s->procs[idx];
    ferry_proc_opts o = {.argv = argv, .envp = envp};
    if (ferry_proc_start(p, s->dir, name, idx, &o) != 0)
        return -1;
    p->stop_last = strncmp(name, "ferry-broker", 12) == 0;
    s->nprocs++;
    return idx;
}

/* stack_spawn; a broker binds eps (its clients, commands, engines, workers). */
static int spawn_at(ferry_stack *s, const char *binary, const char *const *extra,
                    const char *const eps[4]);

int stack_spawn(ferry_stack *s, const char *binary, const char *const *extra)
{
    const char *const eps[4] = {s->clients, s->commands, s->engines, s->workers};
    return spawn_at(s, binary, extra, eps);
}

int stack_start_broker_at(ferry_stack *s, int i, const char *const *extra)
{
    if (i < 0 || i >= s->nbrokers)
        return -1;
    const char *const eps[4] = {s->broker_eps[i][0], s->broker_eps[i][1], s->broker_eps[i][2],
                                s->broker_eps[i][3]};
    int idx = spawn_at(s, "ferry-broker", extra, eps);
    if (idx >= 0 && !s->client)
        s->client = stack_client(s, NULL, NULL);
    return idx;
}

static int spawn_at(ferry_stack *s, const char *binary, const char *const *extra,
                    const char *const eps[4])
{
    if (s->nprocs == STACK_MAX_PROCS)
        return -1;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FERRY_BIN_DIR, binary);

    const char *argv[64];
    char keyargs[5][320];
    int n = 0;
    argv[n++] = path;
    if (s->keys[0] && strcmp(binary, "ferry-broker") == 0) {
        snprintf(keyargs[0], sizeof keyargs[0], "--curve-key=%s/broker_secret", s->keys);
        snprintf(keyargs[1], sizeof keyargs[1], "--allow-clients=%s/allow-clients", s->dir);
        snprintf(keyargs[2], sizeof keyargs[2], "--allow-engines=%s/allow-engines", s->dir);
        snprintf(keyargs[3], sizeof keyargs[3], "--allow-workers=%s/allow-workers", s->dir);
        for (int i = 0; i < 4; i++)
            argv[n++] = keyargs[i];
    } else if (s->keys[0]) {
        const char *role = strcmp(binary, "ferry-engine") == 0 ? "engine" : "worker";
        snprintf(keyargs[0], sizeof keyargs[0], "--curve-key=%s/%s_secret", s->keys, role);
        snprintf(keyargs[1], sizeof keyargs[1], "--broker-key=%s/broker", s->keys);
        argv[n++] = keyargs[0];
        argv[n++] = keyargs[1];
    }
    if (strcmp(binary, "ferry-broker") == 0) {
        argv[n++] = "--clients";
        argv[n++] = eps[0];
        argv[n++] = "--commands";
        argv[n++] = eps[1];
        argv[n++] = "--engines";
        argv[n++] = eps[2];
        argv[n++] = "--workers";
        argv[n++] = eps[3];
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
    snprintf(level, sizeof level, "FERRY_LOG_LEVEL=%s", child_log_level());
    const char *add[] = {level, NULL};
    char **envp = ferry_proc_env(add, NULL);
    int idx = launch(s, binary, argv, envp);
    free(envp);
    return idx;
}

int stack_start_broker(ferry_stack *s, const char *const *extra)
{
    int idx = stack_spawn(s, "ferry-broker", extra);
    if (idx >= 0 && !s->client) {
        if (s->keys[0])
            s->client = stack_client(s, stack_key(s, "client_secret"), stack_key(s, "broker"));
        else
            s->client = stack_client(s, NULL, NULL);
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

int stack_start_one_each(ferry_stack *s, const char *const *broker, const char *const *engine,
                         const char *const *worker, int *engine_idx)
{
    if (stack_init(s) != 0)
        return -1;
    int e = -1;
    if (stack_start_broker(s, broker) < 0 || (e = stack_start_engine(s, engine)) < 0 ||
        stack_start_worker(s, worker) < 0 || stack_wait_ready(s, 1, 1, 10000) != 0) {
        stack_stop(s);
        return -1;
    }
    if (engine_idx)
        *engine_idx = e;
    return 0;
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

int stack_wait_exit(ferry_stack *s, int idx, int timeout_ms)
{
    return ferry_proc_reap(&s->procs[idx], timeout_ms);
}

void stack_passed(ferry_stack *s)
{
    s->passed = 1;
}

int stack_stop(ferry_stack *s)
{
    ferry_client_destroy(&s->client);
    int rc = ferry_proc_stop_all(s->procs, s->nprocs, 10000, 5000, "harness");
    if (!s->passed || rc != 0)
        for (int i = 0; i < s->nprocs; i++)
            ferry_proc_dump_log(&s->procs[i], 400);
    if (getenv("FERRY_TEST_KEEP")) {
        fprintf(stderr, "harness: kept %s\n", s->dir);
        return rc;
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", s->dir);
    return rc;
}

ferry_err stack_run(ferry_stack *s, const char *source, Ferry__Value *const *args, size_t nargs,
                    uint32_t timeout_ms, ferry_result *out)
{
    return ferry_client_run(s->client, source, strlen(source), "test.lua", args, nargs,
                            timeout_ms, out);
}

/* What runs beside every attack: async calls mixed with Lua work. */
static const char innocent_src[] =
    "local n = 0\n"
    "for i = 1, 20 do n = n + ferry.call('echo', i); ferry.call('sleep', 5) end\n"
    "local t = {} for i = 1, 2000 do t[i] = ('%05d'):format(i) end\n"
    "table.sort(t, function(a, b) return a > b end)\n"
    "return n, t[1]";

/* Fails the test unless r is the innocent script's result: 210, "02000". */
static void check_innocent(const ferry_result *r, const char *attack)
{
    const Ferry__Result *res = r->result;
    if (!res->ok)
        fail_msg("the innocent script beside\n%s\nfailed: %s: %s", attack, res->error->code,
                 res->error->message);
    if (res->n_values != 2 || res->values[0]->integer != 210 ||
        res->values[1]->string.len != 5 || memcmp(res->values[1]->string.data, "02000", 5) != 0)
        fail_msg("the innocent script beside\n%s\nreturned the wrong values", attack);
}

void stack_attack(ferry_stack *s, int engine_idx, const char *attack, uint32_t timeout_ms,
                  const char *code, const char *part, ferry_result *out)
{
    uint64_t innocent_id, attack_id;
    assert_int_equal(ferry_client_submit(s->client, innocent_src, strlen(innocent_src),
                                         "innocent.lua", NULL, 0, 60000, &innocent_id),
                     FERRY_OK);
    assert_int_equal(ferry_client_submit(s->client, attack, strlen(attack), "attack.lua", NULL, 0,
                                         timeout_ms, &attack_id),
                     FERRY_OK);
    ferry_result got = {0};
    int64_t start = ferry_now_ms();
    for (int i = 0; i < 2; i++) {
        ferry_result r;
        ferry_err err = ferry_client_wait(s->client, (int)timeout_ms + 60000, &r);
        if (err)
            fail_msg("no result for\n%s\nor its innocent neighbour: %s", attack,
                     ferry_err_code(err));
        if (r.result->request_id == innocent_id) {
            check_innocent(&r, attack);
            ferry_result_fini(&r);
        } else {
            assert_true(r.result->request_id == attack_id);
            got = r;
        }
    }
    int64_t took = ferry_now_ms() - start;
    const Ferry__Result *res = got.result;
    char shown[61];
    snprintf(shown, sizeof shown, "%s", attack);
    for (char *c = shown; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    if (code) {
        if (res->ok)
            fail_msg("%s\nsucceeded, want %s", attack, code);
        const Ferry__Error *e = res->error;
        if (strcmp(e->code, code) != 0 || !strstr(e->message, part))
            fail_msg("%s\ngot %s: %.300s\nwant %s: ...%s...", attack, e->code, e->message, code,
                     part);
        printf("# %-60s -> %s: %.200s (%lld ms)\n", shown, e->code, e->message, (long long)took);
    } else {
        if (!res->ok)
            fail_msg("%s\nfailed: %s: %.300s", attack, res->error->code, res->error->message);
        printf("# %-60s -> ok (%lld ms)\n", shown, (long long)took);
    }
    if (out)
        *out = got;
    else
        ferry_result_fini(&got);
    if (engine_idx >= 0 && ferry_proc_reap(&s->procs[engine_idx], 0) != -1)
        fail_msg("the engine exited after\n%s\n(wait status %d)", attack,
                 s->procs[engine_idx].status);
    /* The same engine serves the next script. */
    ferry_result next;
    assert_int_equal(stack_run(s, innocent_src, NULL, 0, 60000, &next), FERRY_OK);
    check_innocent(&next, attack);
    ferry_result_fini(&next);
}

void stack_raw_send(void *sock, const Ferry__Envelope *env, int timeout_ms)
{
    int64_t until = ferry_now_ms() + timeout_ms;
    ferry_err err;
    while ((err = ferry_wire_send(sock, NULL, 0, env)) == FERRY_EOVERLOADED &&
           ferry_now_ms() < until) {
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLOUT};
        zmq_poll(&item, 1, 50);
    }
    assert_int_equal(err, FERRY_OK);
}

Ferry__Envelope *stack_raw_recv(void *sock, int timeout_ms, Ferry__Envelope__BodyCase kind)
{
    int64_t until = ferry_now_ms() + timeout_ms;
    for (;;) {
        ferry_frames f;
        if (ferry_frames_recv(sock, &f) == FERRY_OK) {
            Ferry__Envelope *env = NULL;
            if (f.count == 1)
                (void)ferry_envelope_decode(ferry_frame_data(&f, 0), ferry_frame_size(&f, 0), &env);
            ferry_frames_close(&f);
            if (env && env->body_case == kind)
                return env;
            ferry_envelope_free(env);
            continue;
        }
        int64_t left = until - ferry_now_ms();
        if (left <= 0)
            return NULL;
        zmq_pollitem_t item = {.socket = sock, .events = ZMQ_POLLIN};
        zmq_poll(&item, 1, (long)left);
    }
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

/*
 * Runs argv[0] with envp (NULL: out of memory, fails) to completion, killed
 * after timeout_ms, with stdout and stderr into <stack dir>/<tag>.out and
 * .err, handed back as malloc'd strings (caller frees; out and err may be
 * NULL). Returns the exit status, or -1.
 */
static int run_captured(ferry_stack *s, const char *tag, const char *const *argv, char **envp,
                        char **out, char **err, int timeout_ms)
{
    char opath[300], epath[300];
    snprintf(opath, sizeof opath, "%s/%s.out", s->dir, tag);
    snprintf(epath, sizeof epath, "%s/%s.err", s->dir, tag);
    int ofd = open(opath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int efd = open(epath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ofd < 0 || efd < 0 || !envp) {
        if (ofd >= 0)
            close(ofd);
        if (efd >= 0)
            close(efd);
        return -1;
    }
    ferry_proc_opts o = {.argv = argv, .envp = envp, .out_fd = ofd, .err_fd = efd};
    int status = ferry_proc_run(&o, timeout_ms);
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

int stack_cli(ferry_stack *s, const char *const *argv, char **out, char **err, int timeout_ms)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ferry", FERRY_BIN_DIR);
    char clients[256];
    snprintf(clients, sizeof clients, "FERRY_CLIENTS=%s", s->clients);
    const char *add[] = {clients, NULL};
    char **envp = ferry_proc_env(add, NULL);
    const char *args[64];
    int n = 0;
    args[n++] = path;
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    int rc = run_captured(s, "cli", args, envp, out, err, timeout_ms);
    free(envp);
    return rc;
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
    snprintf(vars->v[0], sizeof vars->v[0], "FERRY_CLIENTS=%s", s->clients);
    snprintf(vars->v[1], sizeof vars->v[1], "FERRY_COMMANDS=%s", s->commands);
    snprintf(vars->v[2], sizeof vars->v[2], "FERRY_ENGINES=%s", s->engines);
    snprintf(vars->v[3], sizeof vars->v[3], "FERRY_WORKERS=%s", s->workers);
    snprintf(vars->v[4], sizeof vars->v[4], "FERRY_LOG_LEVEL=%s", child_log_level());
    const char *set[] = {vars->v[0], vars->v[1], vars->v[2], vars->v[3], vars->v[4], NULL};
    return ferry_proc_env(set, env);
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
    stack_vars vars;
    char **envp = cmd_env(s, env, &vars);
    int rc = run_captured(s, "exec", argv, envp, out, err, timeout_ms);
    free(envp);
    return rc;
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

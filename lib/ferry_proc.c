/* ferry_proc: fork and exec with everything made before fork, waits with a bound. */
#include "ferry_proc.h"

#include "ferry_clock.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

char **ferry_proc_env(const char *const *add, const char *const *more)
{
    extern char **environ;
    size_t n = 0, nadd = 0, nmore = 0;
    while (environ[n])
        n++;
    while (add && add[nadd])
        nadd++;
    while (more && more[nmore])
        nmore++;
    char **envp = malloc((n + nadd + nmore + 1) * sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "FERRY_", 6) != 0)
            envp[k++] = environ[i];
    for (size_t i = 0; i < nadd; i++)
        envp[k++] = (char *)add[i];
    for (size_t i = 0; i < nmore; i++)
        envp[k++] = (char *)more[i];
    envp[k] = NULL;
    return envp;
}

pid_t ferry_proc_spawn(const ferry_proc_opts *o)
{
    if (!o->argv || !o->argv[0] || !o->envp) {
        errno = EINVAL;
        return -1;
    }
    const char *path = o->path ? o->path : o->argv[0];
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* The child: async-signal-safe calls only. */
    if (o->flags & FERRY_PROC_DIE_WITH_PARENT) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) /* the parent died before prctl */
            _exit(127);
    }
    if (o->out_fd >= 0)
        dup2(o->out_fd, 1);
    if (o->err_fd >= 0)
        dup2(o->err_fd, 2);
    if (o->flags & FERRY_PROC_DEFAULT_SIGNALS) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
    }
    execve(path, (char *const *)o->argv, o->envp);
    _exit(127);
}

int ferry_proc_start(ferry_proc *p, const char *dir, const char *name, int slot,
                     const ferry_proc_opts *o)
{
    /* Built locally: gcc -O2 can take p->name and a dir inside the caller's
     * struct for one object (-Wrestrict). */
    char pname[sizeof p->name], log[sizeof p->log];
    snprintf(pname, sizeof pname, "%s.%d", name, slot);
    snprintf(log, sizeof log, "%s/%s.log", dir, pname);
    memcpy(p->name, pname, sizeof pname);
    memcpy(p->log, log, sizeof log);
    p->pid = 0;
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ferry_proc_opts to_log = *o;
    to_log.out_fd = to_log.err_fd = fd;
    pid_t pid = ferry_proc_spawn(&to_log);
    int saved = errno;
    close(fd);
    if (pid < 0) {
        errno = saved;
        return -1;
    }
    p->pid = pid;
    return 0;
}

int ferry_proc_wait(pid_t pid, int timeout_ms)
{
    int status;
    /* A pidfd becomes readable when the child exits. */
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
    } else {
        /* No pidfd (old kernel): look every 10 ms, within the same bound. */
        for (int waited = 0; waited < timeout_ms; waited += 10) {
            pid_t r = waitpid(pid, &status, WNOHANG);
            if (r == pid)
                return status;
            if (r < 0)
                return -1;
            poll(NULL, 0, 10);
        }
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return status;
}

int ferry_proc_reap(ferry_proc *p, int timeout_ms)
{
    if (p->pid == 0)
        return p->status;
    int status = ferry_proc_wait(p->pid, timeout_ms);
    if (status == -1)
        return -1;
    p->pid = 0;
    p->status = status;
    return status;
}

int ferry_proc_run(const ferry_proc_opts *o, int timeout_ms)
{
    pid_t pid = ferry_proc_spawn(o);
    if (pid < 0)
        return -1;
    int status = ferry_proc_wait(pid, timeout_ms);
    if (status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return status;
}

/* Whether p is stopped in round last (0: the rest, 1: the stop_last ones). */
static int in_round(const ferry_proc *p, int last)
{
    return (p->stop_last != 0) == last;
}

int ferry_proc_stop_all(ferry_proc *procs, int n, int term_ms, int kill_ms, const char *who)
{
    int clean = 1;
    for (int last = 0; last < 2; last++) {
        for (int i = 0; i < n; i++)
            if (in_round(&procs[i], last) && procs[i].pid > 0)
                kill(procs[i].pid, SIGTERM);
        for (int i = 0; i < n; i++) {
            ferry_proc *p = &procs[i];
            if (!in_round(p, last) || p->pid <= 0)
                continue;
            int st = ferry_proc_reap(p, term_ms);
            if (st == -1) {
                fprintf(stderr, "%s: %s did not exit on SIGTERM within %d ms, killing it\n", who,
                        p->name, term_ms);
                kill(p->pid, SIGKILL);
                ferry_proc_reap(p, kill_ms);
                clean = 0;
            } else if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
                fprintf(stderr, "%s: %s exited with status %d (signal %d)\n", who, p->name,
                        WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
                clean = 0;
            }
        }
    }
    return clean ? 0 : -1;
}

void ferry_proc_dump_log(const ferry_proc *p, int max_lines)
{
    FILE *f = fopen(p->log, "r");
    fprintf(stderr, "----- %s (%s) -----\n", p->name, p->log);
    if (!f)
        return;
    char line[2048];
    int lines = 0;
    while (fgets(line, sizeof line, f) && lines++ < max_lines)
        fputs(line, stderr);
    fclose(f);
}

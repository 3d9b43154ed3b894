/*
 * watchdog: a POSIX timer and a SIGALRM handler watching the running script.
 *
 * The timer is armed lazily: an enter arms it only when it is not armed to
 * fire by the time this run needs it (its deadline, or the next periodic
 * tick of a script without a count hook), and a leave leaves it as it is. An
 * alarm for a run that is over finds no script, or a deadline not reached
 * yet, and re-arms for the run it finds, or not at all. So a run costs no
 * system call in the common case (two timer_settime per run used to be a
 * tenth of an engine's time per call); the price is a spare signal now and
 * then between runs, which the engine's ZeroMQ calls take (ferry_wire and
 * ferry_loop retry or ride over EINTR).
 *
 * Everything the handler touches is written by the same thread before it
 * can run (volatile, in that order) and it calls only async-signal-safe
 * functions: clock_gettime, timer_settime, lua_sethook (through
 * engine_script_interrupt and engine_script_poke), write and _exit. The exit
 * line is formatted by hand for that reason, in ferry_log's layout.
 */
#include "watchdog.h"

#include "ferry_clock.h"
#include "ferry_log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static struct {
    int ready;
    timer_t timer;
    int64_t grace_ms;
    engine_script *volatile script; /* the script running, NULL between runs */
    volatile uint64_t script_id;
    volatile int64_t deadline_ms;
    volatile int64_t exit_ms;     /* when the second tick ends the process */
    volatile sig_atomic_t ticked; /* the first tick interrupted this run */
    volatile int64_t poke_ms;     /* the next periodic tick of this run; 0: none */
    volatile int64_t armed_ms;    /* when the timer fires; 0: not armed (or fired) */
} wd;

static void arm_at(int64_t when_ms)
{
    if (when_ms < 1)
        when_ms = 1; /* a zero time would disarm */
    struct itimerspec its = {
        .it_value = {.tv_sec = when_ms / 1000, .tv_nsec = (long)(when_ms % 1000) * 1000000}};
    timer_settime(wd.timer, TIMER_ABSTIME, &its, NULL);
    wd.armed_ms = when_ms;
}

/* The next time the timer must fire before the deadline has passed. */
static int64_t next_alarm(void)
{
    return wd.poke_ms && wd.poke_ms < wd.deadline_ms ? wd.poke_ms : wd.deadline_ms;
}

/* Appends the decimal digits of v to *p (async-signal-safe). */
static void put_uint(char **p, const char *end, uint64_t v, int width)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof digits);
    while (n < width && n < (int)sizeof digits)
        digits[n++] = '0';
    while (n > 0 && *p < end)
        *(*p)++ = digits[--n];
}

static void put_str(char **p, const char *end, const char *s)
{
    while (*s && *p < end)
        *(*p)++ = *s++;
}

/* Writes the watchdog_exit line as ferry_log would, without stdio or locks. */
static void write_exit_line(int64_t now_ms)
{
    char line[512];
    char *p = line;
    const char *end = line + sizeof line - 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm). */
    int64_t secs = ts.tv_sec;
    int64_t days = secs / 86400, rem = secs % 86400;
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    put_uint(&p, end, (uint64_t)year, 4);
    put_str(&p, end, "-");
    put_uint(&p, end, (uint64_t)month, 2);
    put_str(&p, end, "-");
    put_uint(&p, end, (uint64_t)day, 2);
    put_str(&p, end, "T");
    put_uint(&p, end, (uint64_t)(rem / 3600), 2);
    put_str(&p, end, ":");
    put_uint(&p, end, (uint64_t)(rem / 60 % 60), 2);
    put_str(&p, end, ":");
    put_uint(&p, end, (uint64_t)(rem % 60), 2);
    put_str(&p, end, ".");
    put_uint(&p, end, (uint64_t)(ts.tv_nsec / 1000000), 3);
    put_str(&p, end, "Z ERROR engine watchdog_exit script_id=");
    put_uint(&p, end, wd.script_id, 1);
    put_str(&p, end, " past_deadline_ms=");
    put_uint(&p, end, (uint64_t)(now_ms - wd.deadline_ms), 1);
    put_str(&p, end, " status=");
    put_uint(&p, end, ENGINE_WATCHDOG_EXIT_STATUS, 1);
    put_str(&p, end,
            " reason=\"a script stayed inside a C function past its deadline and "
            "grace; ending the engine so that its supervisor starts a fresh one\"\n");
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)(p - line));
    (void)ignored;
}

static void on_alarm(int signo)
{
    (void)signo;
    int saved = errno;
    wd.armed_ms = 0; /* this alarm is spent; what follows may arm the next */
    engine_script *s = wd.script;
    if (s) {
        int64_t now = ferry_now_ms();
        if (!wd.ticked) {
            if (now >= wd.deadline_ms) {
                wd.ticked = 1;
                engine_script_interrupt(s);
                if (wd.grace_ms > 0) {
                    wd.exit_ms = now + wd.grace_ms;
                    arm_at(wd.exit_ms);
                }
            } else {
                if (wd.poke_ms && now >= wd.poke_ms) {
                    engine_script_poke(s);
                    wd.poke_ms = now + ENGINE_SCRIPT_TICK_MS;
                }
                arm_at(next_alarm()); /* or a tick meant for an earlier run */
            }
        } else if (wd.grace_ms > 0) {
            if (now >= wd.exit_ms) {
                write_exit_line(now);
                _exit(ENGINE_WATCHDOG_EXIT_STATUS);
            }
            arm_at(wd.exit_ms);
        }
    }
    errno = saved;
}

ferry_err engine_watchdog_init(int64_t grace_ms, char *err, size_t errlen)
{
    if (wd.ready) {
        wd.grace_ms = grace_ms;
        return FERRY_OK;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGALRM, &sa, NULL) != 0) {
        snprintf(err, errlen, "watchdog: sigaction: %s", strerror(errno));
        return FERRY_EIO;
    }
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID; /* this thread, not ZeroMQ's */
    sev.sigev_signo = SIGALRM;
    sev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &sev, &wd.timer) != 0) {
        snprintf(err, errlen, "watchdog: timer_create: %s", strerror(errno));
        return FERRY_EIO;
    }
    wd.grace_ms = grace_ms;
    wd.ready = 1;
    return FERRY_OK;
}

void engine_watchdog_fini(void)
{
    if (!wd.ready)
        return;
    wd.script = NULL;
    timer_delete(wd.timer);
    wd.armed_ms = 0;
    wd.ready = 0;
}

int engine_watchdog_ticks(const engine_script *s)
{
    return wd.ready && s->limits.max_instructions == 0;
}

void engine_watchdog_enter(engine_script *s)
{
    if (!wd.ready)
        return;
    wd.script = NULL;
    wd.ticked = 0;
    wd.script_id = s->script_id;
    wd.deadline_ms = s->deadline_ms;
    int64_t now = ferry_now_ms();
    wd.poke_ms = engine_watchdog_ticks(s) ? now + ENGINE_SCRIPT_TICK_MS : 0;
    wd.script = s;
    /* An alarm already due by then serves; one in the past is about to be
     * delivered, or was lost to a race with the handler: arm anew. */
    int64_t want = next_alarm(), armed = wd.armed_ms;
    if (armed == 0 || armed > want || armed <= now)
        arm_at(want);
}

void engine_watchdog_leave(engine_script *s)
{
    if (!wd.ready)
        return;
    wd.script = NULL;
    if (wd.ticked)
        ferry_warn("watchdog_interrupt", "script_id=%llu past_deadline_ms=%lld",
                   (unsigned long long)s->script_id, (long long)(ferry_now_ms() - s->deadline_ms));
    wd.ticked = 0;
}

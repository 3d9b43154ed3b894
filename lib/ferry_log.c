/* ferry_log: timestamped key=value event lines on stderr. */
#include "ferry_log.h"

#include "ferry_clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static const char *log_role = "ferry";
static ferry_log_level log_threshold = FERRY_LOG_INFO;
static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void ferry_log_init(const char *role)
{
    log_role = role;
    const char *lvl = getenv("FERRY_LOG_LEVEL");
    if (!lvl)
        return;
    if (strcasecmp(lvl, "debug") == 0)
        log_threshold = FERRY_LOG_DEBUG;
    else if (strcasecmp(lvl, "warn") == 0)
        log_threshold = FERRY_LOG_WARN;
    else if (strcasecmp(lvl, "error") == 0)
        log_threshold = FERRY_LOG_ERROR;
}

int ferry_log_enabled(ferry_log_level level)
{
    return level >= log_threshold;
}

static void vlog(ferry_log_level level, const char *event, const char *suffix, const char *fields,
                 va_list ap)
{
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s %s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level], log_role, event);
    if (fields && *fields && n > 0 && (size_t)n < sizeof line - 1) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fields, ap);
        if (m > 0)
            n += m;
    }
    if (n > (int)sizeof line - 64)
        n = (int)sizeof line - 64;
    if (suffix)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s", suffix);
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr);
}

void ferry_log(ferry_log_level level, const char *event, const char *fields, ...)
{
    if (level < log_threshold)
        return;
    va_list ap;
    va_start(ap, fields);
    vlog(level, event, NULL, fields, ap);
    va_end(ap);
}

void ferry_log_limited(int64_t *last_ms, uint64_t *suppressed, ferry_log_level level,
                       const char *event, const char *fields, ...)
{
    if (level < log_threshold)
        return;
    int64_t now = ferry_now_ms();
    if (*last_ms != 0 && now - *last_ms < 1000) {
        (*suppressed)++;
        return;
    }
    char suffix[48] = "";
    if (*suppressed)
        snprintf(suffix, sizeof suffix, " suppressed=%llu", (unsigned long long)*suppressed);
    *last_ms = now;
    *suppressed = 0;
    va_list ap;
    va_start(ap, fields);
    vlog(level, event, suffix, fields, ap);
    va_end(ap);
}

/* ferry_log: timestamped key=value event lines on stderr, or JSON objects (ferry_log.h). */
#include "ferry_log.h"

#include "ferry_clock.h"
#include "ferry_utf8.h"

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
static int log_json; /* FERRY_LOG_FORMAT=json */

void ferry_log_init(const char *role)
{
    log_role = role;
    const char *format = getenv("FERRY_LOG_FORMAT");
    log_json = format && strcasecmp(format, "json") == 0;
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

/* A bounded JSON writer: stops adding before the end of its buffer, never inside an escape. */
typedef struct {
    char *p;
    size_t len, cap; /* cap leaves room for the closing bytes */
    int cut;         /* something did not fit */
} json_out;

static void json_raw(json_out *o, const char *s, size_t n)
{
    if (o->cut || o->len + n > o->cap) {
        o->cut = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* s[0..n) as the inside of a JSON string: quotes, backslashes and control
 * characters escaped, bytes that are not UTF-8 as U+FFFD. */
static void json_chars(json_out *o, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n && !o->cut;) {
        char esc[8];
        if (u[i] == '"' || u[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)u[i];
            json_raw(o, esc, 2);
            i++;
        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", u[i]);
            json_raw(o, esc, 6);
            i++;
        } else if (u[i] < 0x80) {
            json_raw(o, s + i, 1);
            i++;
        } else {
            size_t k = ferry_utf8_seq(u + i, n - i);
            if (k) {
                json_raw(o, s + i, k);
                i += k;
            } else {
                json_raw(o, "\\ufffd", 6);
                i++;
            }
        }
    }
}

static void json_string(json_out *o, const char *s, size_t n)
{
    json_raw(o, "\"", 1);
    json_chars(o, s, n);
    json_raw(o, "\"", 1);
}

/* A value that is a JSON number as it stands: an optional minus and up to 18 digits. */
static int is_integer(const char *s, size_t n)
{
    size_t i = n > 0 && s[0] == '-';
    if (i == n || n - i > 18 || (s[i] == '0' && n - i > 1))
        return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/*
 * The key=value fields as JSON members. A value in double quotes ends at
 * the first quote followed by a space or the end; integers stay numbers,
 * the rest are strings. Whatever does not parse as key=value goes whole
 * into "text", so nothing is lost.
 */
static void json_fields(json_out *o, const char *f)
{
    while (*f && !o->cut) {
        while (*f == ' ')
            f++;
        if (!*f)
            break;
        size_t k = strspn(f, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-");
        if (k == 0 || f[k] != '=') {
            json_raw(o, ",\"text\":", 8);
            json_string(o, f, strlen(f));
            return;
        }
        const char *v = f + k + 1, *end;
        size_t vn;
        int quoted = *v == '"';
        if (quoted) {
            end = v + 1;
            while (*end && !(*end == '"' && (end[1] == ' ' || end[1] == '\0')))
                end++;
            if (!*end) { /* no closing quote: the rest is the value */
                vn = strlen(v + 1);
                end = v + 1 + vn;
            } else {
                vn = (size_t)(end - v - 1);
                end++;
            }
            v++;
        } else {
            vn = strcspn(v, " ");
            end = v + vn;
        }
        json_raw(o, ",", 1);
        json_string(o, f, k);
        json_raw(o, ":", 1);
        if (!quoted && is_integer(v, vn))
            json_raw(o, v, vn);
        else
            json_string(o, v, vn);
        f = end;
    }
}

static void vlog_json(ferry_log_level level, const char *event, const char *suffix,
                      const char *fields, va_list ap)
{
    char text[4096] = "";
    int cut = 0;
    if (fields && *fields)
        cut = vsnprintf(text, sizeof text, fields, ap) >= (int)sizeof text;
    char line[4096];
    json_out o = {line, 0, sizeof line - 32, 0};
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    char head[64];
    int n = snprintf(head, sizeof head, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000));
    json_raw(&o, head, (size_t)n);
    json_raw(&o, "\"level\":", 8);
    json_string(&o, level_names[level], strlen(level_names[level]));
    json_raw(&o, ",\"role\":", 8);
    json_string(&o, log_role, strlen(log_role));
    json_raw(&o, ",\"event\":", 9);
    json_string(&o, event, strlen(event));
    json_fields(&o, text);
    if (suffix)
        json_fields(&o, suffix);
    if (o.cut || cut) { /* room was kept for this: the line stays one valid object */
        o.cut = 0;
        o.cap = sizeof line;
        json_raw(&o, ",\"truncated\":true", 17);
    }
    o.cap = sizeof line;
    json_raw(&o, "}\n", 2);
    fwrite(line, 1, o.len, stderr);
}

static void vlog(ferry_log_level level, const char *event, const char *suffix, const char *fields,
                 va_list ap)
{
    if (log_json) {
        vlog_json(level, event, suffix, fields, ap);
        return;
    }
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

/* ferry_metrics: histograms and the Prometheus text exposition writer (ferry_metrics.h). */
#include "ferry_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

uint64_t ferry_metrics_hist_quantile_us(const ferry_metrics_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double rank = q * (double)h->count;
    uint64_t below = 0;
    for (unsigned i = 0; i < FERRY_METRICS_BUCKETS; i++) {
        uint64_t n = h->buckets[i];
        if (n > 0 && (double)(below + n) >= rank) {
            double lo = i == 0 ? 0 : (double)ferry_metrics_bound_us(i - 1);
            double hi = (double)ferry_metrics_bound_us(i);
            double v = lo + (hi - lo) * ((rank - (double)below) / (double)n);
            return (uint64_t)(v + 0.5);
        }
        below += n;
    }
    return ferry_metrics_bound_us(FERRY_METRICS_BUCKETS - 1);
}

void ferry_metrics_hist_add(ferry_metrics_hist *into, const ferry_metrics_hist *from)
{
    for (unsigned i = 0; i <= FERRY_METRICS_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum_us += from->sum_us;
}

unsigned ferry_metrics_outcome(const char *code)
{
    if (!code || !*code)
        return FERRY_ECALL;
    for (unsigned i = 0; i < FERRY_ERR_COUNT; i++)
        if (strcmp(code, ferry_err_code((ferry_err)i)) == 0)
            return i;
    return FERRY_METRICS_OTHER;
}

const char *ferry_metrics_outcome_name(unsigned i)
{
    return i < FERRY_ERR_COUNT ? ferry_err_code((ferry_err)i) : "other";
}

void ferry_metrics_writer_init(ferry_metrics_writer *w, ferry_buf *out)
{
    w->out = out;
    w->err = FERRY_OK;
}

ferry_err ferry_metrics_writer_err(const ferry_metrics_writer *w)
{
    return w->err;
}

static void put(ferry_metrics_writer *w, const char *s, size_t len)
{
    if (w->err == FERRY_OK)
        w->err = ferry_buf_append(w->out, s, len);
}

static void puts_(ferry_metrics_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

/* s with backslash and newline escaped, and double quote too when quote is set. */
static void put_escaped(ferry_metrics_writer *w, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (quote && *s == '"')
            esc = "\\\"";
        if (!esc)
            continue;
        put(w, run, (size_t)(s - run));
        puts_(w, esc);
        run = s + 1;
    }
    put(w, run, (size_t)(s - run));
}

void ferry_metrics_family(ferry_metrics_writer *w, const char *name, ferry_metrics_type type,
                          const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    puts_(w, "# HELP ");
    puts_(w, name);
    puts_(w, " ");
    put_escaped(w, help, 0);
    puts_(w, "\n# TYPE ");
    puts_(w, name);
    puts_(w, " ");
    puts_(w, types[type]);
    puts_(w, "\n");
}

static void put_labels(ferry_metrics_writer *w, const ferry_metrics_label *labels, size_t n,
                       const char *le)
{
    if (n == 0 && !le)
        return;
    puts_(w, "{");
    for (size_t i = 0; i < n; i++) {
        if (i)
            puts_(w, ",");
        puts_(w, labels[i].name);
        puts_(w, "=\"");
        put_escaped(w, labels[i].value, 1);
        puts_(w, "\"");
    }
    if (le) {
        puts_(w, n ? ",le=\"" : "le=\"");
        puts_(w, le);
        puts_(w, "\"");
    }
    puts_(w, "}");
}

static void sample_text(ferry_metrics_writer *w, const char *name, const char *suffix,
                        const ferry_metrics_label *labels, size_t n, const char *le,
                        const char *value)
{
    puts_(w, name);
    puts_(w, suffix);
    put_labels(w, labels, n, le);
    puts_(w, " ");
    puts_(w, value);
    puts_(w, "\n");
}

void ferry_metrics_u64(ferry_metrics_writer *w, const char *name, const ferry_metrics_label *labels,
                       size_t nlabels, uint64_t value)
{
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)value);
    sample_text(w, name, "", labels, nlabels, NULL, v);
}

static void format_f64(char *buf, size_t len, double value)
{
    if (value != value)
        snprintf(buf, len, "NaN");
    else if (value > 1.7976931348623157e308)
        snprintf(buf, len, "+Inf");
    else if (value < -1.7976931348623157e308)
        snprintf(buf, len, "-Inf");
    else
        snprintf(buf, len, "%.17g", value);
}

void ferry_metrics_f64(ferry_metrics_writer *w, const char *name, const ferry_metrics_label *labels,
                       size_t nlabels, double value)
{
    char v[40];
    format_f64(v, sizeof v, value);
    sample_text(w, name, "", labels, nlabels, NULL, v);
}

void ferry_metrics_hist_write(ferry_metrics_writer *w, const char *name,
                              const ferry_metrics_label *labels, size_t nlabels,
                              const ferry_metrics_hist *h)
{
    char le[32], v[40];
    uint64_t cum = 0;
    for (unsigned i = 0; i < FERRY_METRICS_BUCKETS; i++) {
        cum += h->buckets[i];
        /* Exact decimal bounds: 64 us << i is a whole number of microseconds. */
        uint64_t us = ferry_metrics_bound_us(i);
        snprintf(le, sizeof le, "%llu.%06llu", (unsigned long long)(us / 1000000),
                 (unsigned long long)(us % 1000000));
        snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
        sample_text(w, name, "_bucket", labels, nlabels, le, v);
    }
    cum += h->buckets[FERRY_METRICS_BUCKETS];
    snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
    sample_text(w, name, "_bucket", labels, nlabels, "+Inf", v);
    snprintf(v, sizeof v, "%llu.%06llu", (unsigned long long)(h->sum_us / 1000000),
             (unsigned long long)(h->sum_us % 1000000)); /* exact: whole microseconds */
    sample_text(w, name, "_sum", labels, nlabels, NULL, v);
    snprintf(v, sizeof v, "%llu", (unsigned long long)h->count);
    sample_text(w, name, "_count", labels, nlabels, NULL, v);
}

double ferry_metrics_wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void gauge(ferry_metrics_writer *w, const char *name, ferry_metrics_type type,
                  const char *help, double value)
{
    ferry_metrics_family(w, name, type, help);
    ferry_metrics_f64(w, name, NULL, 0, value);
}

void ferry_metrics_process(ferry_metrics_writer *w, double start_time)
{
    long tick = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char line[1024];
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = '\0';
        /* Fields after the command name, which may hold spaces and parentheses. */
        char *p = strrchr(line, ')');
        unsigned long long utime, stime, vsize;
        long long rss;
        if (p && tick > 0 &&
            sscanf(p + 2,
                   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                   "%*d %*u %llu %lld",
                   &utime, &stime, &vsize, &rss) == 4) {
            gauge(w, "process_cpu_seconds_total", FERRY_METRICS_COUNTER,
                  "Total user and system CPU time spent in seconds.",
                  (double)(utime + stime) / (double)tick);
            gauge(w, "process_virtual_memory_bytes", FERRY_METRICS_GAUGE,
                  "Virtual memory size in bytes.", (double)vsize);
            gauge(w, "process_resident_memory_bytes", FERRY_METRICS_GAUGE,
                  "Resident memory size in bytes.", (double)rss * (double)page);
        }
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d)))
            n += e->d_name[0] != '.';
        closedir(d);
        gauge(w, "process_open_fds", FERRY_METRICS_GAUGE, "Number of open file descriptors.",
              (double)(n - 1)); /* less the one the listing itself held */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        gauge(w, "process_max_fds", FERRY_METRICS_GAUGE, "Maximum number of open file descriptors.",
              (double)rl.rlim_cur);
    gauge(w, "process_start_time_seconds", FERRY_METRICS_GAUGE,
          "Start time of the process since unix epoch in seconds.", start_time);
}

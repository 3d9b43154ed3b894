/* top: `ferry top`, a live view from the broker's Stats (top.h). */
#include "top.h"

#include "ferry/client.h"
#include "ferry_buf.h"
#include "ferry_clock.h"
#include "ferry_opts.h"
#include "ferry_value.h"
#include "ferry_wire.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

typedef struct {
    const char *broker;
    const char *curve_key, *broker_key;
    long max_msg;
    double interval_s;
    int once, json;
} top_opts;

/* One Stats and when it came. */
typedef struct {
    Ferry__Envelope *env; /* owned */
    const Ferry__Stats *st;
    int64_t at_us;
} sample;

static ferry_err take(ferry_client *c, sample *s)
{
    s->env = NULL;
    ferry_err err = ferry_client_stats(c, 5000, &s->env);
    if (err != FERRY_OK)
        return err;
    s->st = s->env->stats;
    s->at_us = ferry_now_us();
    return FERRY_OK;
}

static int by_name(const void *key, const void *elem)
{
    const Ferry__FunctionStats *f = *(Ferry__FunctionStats *const *)elem;
    return strcmp(key, f->name);
}

/* fn in the earlier Stats (sorted by name, as the broker sends them), or NULL. */
static const Ferry__FunctionStats *before(const Ferry__Stats *st, const char *name)
{
    if (!st || st->n_functions == 0)
        return NULL;
    Ferry__FunctionStats *const *f =
        bsearch(name, st->functions, st->n_functions, sizeof *st->functions, by_name);
    return f ? *f : NULL;
}

static double per_s(uint64_t now, uint64_t then, double dt)
{
    return dt > 0 && now >= then ? (double)(now - then) / dt : 0;
}

/* A routing id as text: printable ASCII kept, anything else as '?'. */
static void id_text(const ProtobufCBinaryData *id, char *out, size_t outlen)
{
    size_t n = id->len < outlen - 1 ? id->len : outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = id->data[i] >= 0x20 && id->data[i] < 0x7f ? (char)id->data[i] : '?';
    out[n] = '\0';
}

static void render_json(ferry_buf *b, const sample *prev, const sample *cur)
{
    const Ferry__Stats *s = cur->st, *p = prev ? prev->st : NULL;
    double dt = prev ? (double)(cur->at_us - prev->at_us) / 1e6 : 0;
    ferry_buf_printf(b,
                     "{\"interval_s\": %.3f, \"metrics\": %s, \"engines\": %u, \"slots\": %llu, "
                     "\"free_slots\": %llu, \"workers\": %u, \"credit\": %llu, "
                     "\"free_credit\": %llu, \"scripts_queued\": %llu, \"scripts_running\": %llu, "
                     "\"scripts_completed\": %llu, \"scripts_per_s\": %.3f, \"queued\": %llu, "
                     "\"in_flight\": %llu, \"calls_per_s\": %.3f, \"dropped\": %llu, "
                     "\"functions\": [",
                     dt, s->metrics ? "true" : "false", s->engines, (unsigned long long)s->slots,
                     (unsigned long long)s->free_slots, s->workers, (unsigned long long)s->credit,
                     (unsigned long long)s->free_credit, (unsigned long long)s->scripts_queued,
                     (unsigned long long)s->scripts_running,
                     (unsigned long long)s->scripts_completed,
                     per_s(s->scripts_completed, p ? p->scripts_completed : 0, dt),
                     (unsigned long long)s->queued, (unsigned long long)s->in_flight,
                     per_s(s->completed, p ? p->completed : 0, dt), (unsigned long long)s->dropped);
    for (size_t i = 0; i < s->n_functions; i++) {
        const Ferry__FunctionStats *f = s->functions[i], *g = before(p, f->name);
        ferry_buf_puts(b, i ? ", {\"name\": " : "{\"name\": ");
        ferry_json_string(b, f->name, strlen(f->name));
        ferry_buf_printf(
            b,
            ", \"workers\": %u, \"calls_per_s\": %.3f, \"completed\": %llu, \"failed\": %llu, "
            "\"failed_per_s\": %.3f, \"queued\": %llu, \"in_flight\": %llu, \"p50_ms\": %.3f, "
            "\"p99_ms\": %.3f, \"retried\": %llu}",
            f->workers, per_s(f->completed + f->failed, g ? g->completed + g->failed : 0, dt),
            (unsigned long long)f->completed, (unsigned long long)f->failed,
            per_s(f->failed, g ? g->failed : 0, dt), (unsigned long long)f->queued,
            (unsigned long long)f->in_flight, (double)f->p50_us / 1000, (double)f->p99_us / 1000,
            (unsigned long long)f->retried);
    }
    ferry_buf_puts(b, "], \"worker_list\": [");
    for (size_t i = 0; i < s->n_worker_list; i++) {
        const Ferry__WorkerStats *w = s->worker_list[i];
        ferry_buf_puts(b, i ? ", {\"id\": " : "{\"id\": ");
        ferry_json_string(b, w->id.data, w->id.len);
        ferry_buf_printf(b,
                         ", \"credit\": %u, \"in_flight\": %u, \"load\": %.3f, "
                         "\"completed\": %llu, \"failed\": %llu, \"leaving\": %s}",
                         w->credit, w->in_flight, w->credit ? (double)w->in_flight / w->credit : 0,
                         (unsigned long long)w->completed, (unsigned long long)w->failed,
                         w->leaving ? "true" : "false");
    }
    ferry_buf_puts(b, "], \"engine_list\": [");
    for (size_t i = 0; i < s->n_engine_list; i++) {
        const Ferry__EngineStats *e = s->engine_list[i];
        ferry_buf_puts(b, i ? ", {\"id\": " : "{\"id\": ");
        ferry_json_string(b, e->id.data, e->id.len);
        ferry_buf_printf(b, ", \"slots\": %u, \"running\": %u, \"load\": %.3f, \"leaving\": %s}",
                         e->slots, e->running, e->slots ? (double)e->running / e->slots : 0,
                         e->leaving ? "true" : "false");
    }
    ferry_buf_printf(b, "], \"truncated\": %s}\n", s->truncated ? "true" : "false");
}

static void latency(char *out, size_t len, uint64_t us, int on)
{
    if (!on)
        snprintf(out, len, "-");
    else
        snprintf(out, len, "%.2f", (double)us / 1000);
}

static void render_text(ferry_buf *b, const top_opts *o, const sample *prev, const sample *cur)
{
    const Ferry__Stats *s = cur->st, *p = prev ? prev->st : NULL;
    double dt = prev ? (double)(cur->at_us - prev->at_us) / 1e6 : 0;
    time_t now = time(NULL);
    struct tm tm;
    char when[32];
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%H:%M:%S UTC", &tm);
    ferry_buf_printf(b, "ferry top - %s - %s - every %.1f s%s\n", o->broker, when, o->interval_s,
                     s->metrics ? "" : " (latency needs the broker's --metrics)");
    ferry_buf_printf(b,
                     "engines %u  slots %llu free of %llu    workers %u  credit %llu free of "
                     "%llu\n",
                     s->engines, (unsigned long long)s->free_slots, (unsigned long long)s->slots,
                     s->workers, (unsigned long long)s->free_credit, (unsigned long long)s->credit);
    ferry_buf_printf(b,
                     "scripts %.1f/s  queued %llu  running %llu    calls %.1f/s  queued %llu  "
                     "in flight %llu    dropped %llu\n\n",
                     per_s(s->scripts_completed, p ? p->scripts_completed : 0, dt),
                     (unsigned long long)s->scripts_queued, (unsigned long long)s->scripts_running,
                     per_s(s->completed, p ? p->completed : 0, dt), (unsigned long long)s->queued,
                     (unsigned long long)s->in_flight, (unsigned long long)s->dropped);
    ferry_buf_printf(b, "%-24s %7s %9s %9s %9s %8s %8s %7s %9s\n", "FUNCTION", "WORKERS", "CALLS/S",
                     "P50 MS", "P99 MS", "FAILED", "FAIL/S", "QUEUED", "IN FLIGHT");
    for (size_t i = 0; i < s->n_functions; i++) {
        const Ferry__FunctionStats *f = s->functions[i], *g = before(p, f->name);
        char p50[24], p99[24];
        latency(p50, sizeof p50, f->p50_us, s->metrics);
        latency(p99, sizeof p99, f->p99_us, s->metrics);
        ferry_buf_printf(
            b, "%-24.64s %7u %9.1f %9s %9s %8llu %8.1f %7llu %9llu\n", f->name, f->workers,
            per_s(f->completed + f->failed, g ? g->completed + g->failed : 0, dt), p50, p99,
            (unsigned long long)f->failed, per_s(f->failed, g ? g->failed : 0, dt),
            (unsigned long long)f->queued, (unsigned long long)f->in_flight);
    }
    if (s->n_worker_list)
        ferry_buf_printf(b, "\n%-32s %7s %9s %6s %10s %8s\n", "WORKER", "CREDIT", "IN FLIGHT",
                         "LOAD", "COMPLETED", "FAILED");
    for (size_t i = 0; i < s->n_worker_list; i++) {
        const Ferry__WorkerStats *w = s->worker_list[i];
        char id[64];
        id_text(&w->id, id, sizeof id);
        ferry_buf_printf(b, "%-32s %7u %9u %5.0f%% %10llu %8llu%s\n", id, w->credit, w->in_flight,
                         w->credit ? 100.0 * w->in_flight / w->credit : 0,
                         (unsigned long long)w->completed, (unsigned long long)w->failed,
                         w->leaving ? " (leaving)" : "");
    }
    if (s->n_engine_list)
        ferry_buf_printf(b, "\n%-32s %7s %9s %6s\n", "ENGINE", "SLOTS", "RUNNING", "LOAD");
    for (size_t i = 0; i < s->n_engine_list; i++) {
        const Ferry__EngineStats *e = s->engine_list[i];
        char id[64];
        id_text(&e->id, id, sizeof id);
        ferry_buf_printf(b, "%-32s %7u %9u %5.0f%%%s\n", id, e->slots, e->running,
                         e->slots ? 100.0 * e->running / e->slots : 0,
                         e->leaving ? " (leaving)" : "");
    }
    if (s->truncated)
        ferry_buf_puts(b, "\n(lists cut to keep the broker's reply small)\n");
}

static int fail(const top_opts *o, ferry_err err)
{
    fprintf(stderr, "ferry: %s: no stats from the broker at %s: %s\n", ferry_err_code(err),
            o->broker, err == FERRY_EAUTH ? "not authorized" : ferry_err_desc(err));
    return EXIT_UNREACHABLE;
}

int client_top_main(int argc, char **argv)
{
    top_opts o = {
        .broker = "tcp://localhost:5558", .max_msg = FERRY_DEFAULT_MAX_MSG, .interval_s = 1};
    const ferry_opt opts[] = {
        {"broker", "FERRY_CLIENTS", FERRY_OPT_STRING, &o.broker, "broker clients endpoint", 0, 0},
        {"interval", NULL, FERRY_OPT_DOUBLE, &o.interval_s, "seconds between refreshes", 0.05,
         3600},
        {"once", NULL, FERRY_OPT_FLAG, &o.once,
         "print one screen (rates over one interval) and exit", 0, 0},
        {"json", NULL, FERRY_OPT_FLAG, &o.json, "one JSON object per screen on stdout", 0, 0},
        {"curve-key", "FERRY_CURVE_KEY", FERRY_OPT_STRING, &o.curve_key,
         "this client's secret certificate (ferry keygen): CURVE towards the broker", 0, 0},
        {"broker-key", "FERRY_BROKER_KEY", FERRY_OPT_STRING, &o.broker_key,
         "the broker's public certificate (with --curve-key)", 0, 0},
        {"max-msg", "FERRY_MAX_MSG", FERRY_OPT_INT, &o.max_msg,
         "largest message taken in bytes (give it the broker's --max-msg)", 1, 1073741824},
    };
    const ferry_cli cli = {
        .program = "ferry top",
        .synopsis = "[--broker EP] [--interval S] [--once] [--json]",
        .summary = "A live view of a Ferry broker, from its stats: per function the call rate,\n"
                   "p50/p99 latency (with the broker's --metrics), failures and queue depth;\n"
                   "engines' slots and workers' credit and load. Refreshed every --interval\n"
                   "seconds until interrupted; --once prints one screen and exits.",
        .opts = opts,
        .nopts = sizeof opts / sizeof opts[0],
    };
    int next;
    int rc = ferry_opts_parse(&cli, argc, argv, 2, &next);
    if (rc != FERRY_OPTS_CONTINUE)
        return rc;
    if (next < argc) {
        fprintf(stderr, "ferry top: unexpected argument '%s' (see --help)\n", argv[next]);
        return EXIT_USAGE;
    }
    char errbuf[512];
    ferry_client *c =
        ferry_client_new_curve(o.broker, o.curve_key, o.broker_key, errbuf, sizeof errbuf);
    if (c && ferry_client_set_max_msg(c, o.max_msg, errbuf, sizeof errbuf) != FERRY_OK)
        ferry_client_destroy(&c);
    if (!c) {
        fprintf(stderr, "ferry: unreachable: %s\n", errbuf);
        return EXIT_UNREACHABLE;
    }
    ferry_client_set_connect_timeout(c, 5000);
    int tty = !o.json && isatty(STDOUT_FILENO);
    sample prev = {0}, cur = {0};
    ferry_err err = take(c, &prev);
    for (int code = 0; err == FERRY_OK;) {
        poll(NULL, 0, (int)(o.interval_s * 1000)); /* the refresh interval itself */
        err = take(c, &cur);
        if (err != FERRY_OK)
            break;
        ferry_buf b = FERRY_BUF_INIT;
        if (tty)
            ferry_buf_puts(&b, "\033[H\033[2J");
        if (o.json)
            render_json(&b, &prev, &cur);
        else
            render_text(&b, &o, &prev, &cur);
        if (!o.once && !tty && !o.json)
            ferry_buf_puts(&b, "\n");
        fwrite(b.data, 1, b.len, stdout);
        fflush(stdout);
        ferry_buf_fini(&b);
        ferry_envelope_free(prev.env);
        prev = cur;
        cur.env = NULL;
        if (o.once) {
            ferry_envelope_free(prev.env);
            ferry_client_destroy(&c);
            return code;
        }
    }
    ferry_envelope_free(prev.env);
    ferry_client_destroy(&c);
    return fail(&o, err);
}

/* metrics: the broker's Prometheus series and its hooks (metrics.h). */
#include "metrics.h"

#include "broker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(BROKER_DROP_COUNT <= BROKER_METRICS_DROPS, "room for every drop kind");

void broker_metrics_init(broker_metrics *m, size_t max, const ferry_loop *loop)
{
    memset(m, 0, sizeof *m);
    m->max = max;
    m->loop = loop;
    m->start_time = ferry_metrics_wall_now();
}

static ferry_err render(ferry_buf *out, void *arg)
{
    return broker_metrics_render(arg, out);
}

ferry_err broker_metrics_open(broker_metrics *m, broker *b, const char *hostport, char *err,
                              size_t errlen)
{
    ferry_err e = ferry_metrics_http_open(&m->http, &b->loop, hostport, render, b, err, errlen);
    if (e == FERRY_OK)
        m->on = 1;
    m->peers = (size_t)b->cfg.metrics_peers;
    return e;
}

void broker_metrics_fini(broker_metrics *m)
{
    ferry_metrics_http_destroy(&m->http);
    broker_fn_metrics *x, *tmp;
    free(m->engine_stats);
    free(m->engine_ptrs);
    m->engine_stats = NULL;
    m->engine_ptrs = NULL;
    m->engine_cap = 0;
    HASH_ITER(hh, m->fns, x, tmp) {
        HASH_DEL(m->fns, x);
        free(x->name);
        free(x);
    }
    m->nfns = 0;
    m->on = 0;
}

/* The series of fn, made on first use; NULL past the bound or out of memory. */
static broker_fn_metrics *series(broker_metrics *m, broker_function *fn)
{
    if (fn->metrics)
        return fn->metrics;
    broker_fn_metrics *x;
    HASH_FIND(hh, m->fns, fn->name, fn->name_len, x);
    if (!x && m->nfns < m->max && (x = calloc(1, sizeof *x))) {
        x->name = malloc(fn->name_len + 1); /* the key is name_len bytes, as in dispatch */
        if (!x->name) {
            free(x);
            return NULL;
        }
        memcpy(x->name, fn->name, fn->name_len);
        x->name[fn->name_len] = '\0';
        HASH_ADD_KEYPTR(hh, m->fns, x->name, fn->name_len, x);
        if (!FERRY_HASH_ADDED(x)) { /* counted unlabelled */
            free(x->name);
            free(x);
            return NULL;
        }
        m->nfns++;
    }
    fn->metrics = x; /* the record outlives fn: a function forgotten keeps its series */
    return x;
}

static void count_call(broker_metrics *m, broker_call *call, unsigned outcome)
{
    broker_fn_metrics *x = series(m, call->fn);
    if (x)
        x->outcomes[outcome]++;
    else
        m->unlabelled++;
}

void broker_metrics_call_sent(broker_metrics *m, broker_call *call)
{
    if (m->on)
        call->sent_us = m->loop->now_us;
}

/* The error code of a Reply with an error (the failure path only: it decodes). */
static unsigned reply_outcome(const void *reply, size_t len)
{
    Ferry__Envelope *env = ferry__envelope__unpack(NULL, len, reply);
    if (!env)
        return FERRY_EPROTO;
    unsigned o = FERRY_ECALL;
    if (env->body_case == FERRY__ENVELOPE__BODY_REPLY && env->reply && env->reply->error)
        o = ferry_metrics_outcome(env->reply->error->code);
    ferry__envelope__free_unpacked(env, NULL);
    return o;
}

void broker_metrics_call_replied(broker_metrics *m, broker_call *call, const void *reply,
                                 size_t len, int has_error)
{
    if (!m->on)
        return;
    unsigned o = has_error ? reply_outcome(reply, len) : FERRY_OK;
    broker_fn_metrics *x = series(m, call->fn);
    if (!x) {
        m->unlabelled++;
        return;
    }
    x->outcomes[o]++;
    ferry_metrics_hist_observe(&x->latency, m->loop->now_us - call->sent_us);
}

void broker_metrics_call_failed(broker_metrics *m, broker_call *call, ferry_err code)
{
    if (m->on)
        count_call(m, call,
                   (unsigned)code < FERRY_ERR_COUNT ? (unsigned)code : BROKER_METRICS_OTHER);
}

void broker_metrics_call_retried(broker_metrics *m, broker_call *call)
{
    if (!m->on)
        return;
    broker_fn_metrics *x = series(m, call->fn);
    if (x)
        x->retried++;
}

void broker_metrics_script_new(broker_metrics *m, broker_script *script)
{
    if (m->on)
        script->submitted_us = m->loop->now_us;
}

void broker_metrics_script_started(broker_metrics *m, broker_script *script)
{
    if (m->on)
        ferry_metrics_hist_observe(&m->script_wait, m->loop->now_us - script->submitted_us);
}

void broker_metrics_script_done(broker_metrics *m, broker_script *script, unsigned outcome)
{
    if (!m->on)
        return;
    m->scripts[outcome < BROKER_METRICS_OUTCOMES ? outcome : BROKER_METRICS_OTHER]++;
    if (script)
        ferry_metrics_hist_observe(&m->script_duration, m->loop->now_us - script->submitted_us);
}

void broker_metrics_script_result(broker_metrics *m, broker_script *script, const Ferry__Result *r)
{
    if (m->on)
        broker_metrics_script_done(
            m, script, r->ok ? FERRY_OK : ferry_metrics_outcome(r->error ? r->error->code : NULL));
}

void broker_metrics_function_stats(broker_metrics *m, broker_function *fn, Ferry__FunctionStats *fs)
{
    broker_fn_metrics *x = m->on ? series(m, fn) : NULL;
    if (!x)
        return;
    fs->p50_us = ferry_metrics_hist_quantile_us(&x->latency, 0.5);
    fs->p99_us = ferry_metrics_hist_quantile_us(&x->latency, 0.99);
    fs->retried = x->retried;
}

/* Slots and credit, in all and free, of the live engines and workers. */
typedef struct {
    uint64_t slots, free_slots, credit, free_credit;
} capacity;

static capacity measure(broker *b)
{
    capacity c = {0, 0, 0, 0};
    for (broker_engine *e = b->scripts.engines; e; e = e->hh.next) {
        if (e->leaving)
            continue;
        c.slots += e->slots;
        c.free_slots += broker_scripts_engine_room(e);
    }
    for (broker_worker *w = b->dispatch.workers; w; w = w->hh.next) {
        if (w->leaving)
            continue;
        c.credit += w->credit;
        c.free_credit += broker_dispatch_worker_room(w);
    }
    return c;
}

static int by_engine_stats_id(const void *a, const void *b)
{
    const Ferry__EngineStats *x = *(Ferry__EngineStats *const *)a;
    const Ferry__EngineStats *y = *(Ferry__EngineStats *const *)b;
    size_t n = x->id.len < y->id.len ? x->id.len : y->id.len;
    int c = n ? memcmp(x->id.data, y->id.data, n) : 0;
    return c ? c : (x->id.len > y->id.len) - (x->id.len < y->id.len);
}

/* Stats.engine_list: engines by id, cut to its bounds; empty without memory. */
static void fill_engine_list(broker *b, Ferry__Stats *st)
{
    broker_metrics *m = &b->metrics;
    size_t n = HASH_COUNT(b->scripts.engines);
    if (n == 0)
        return; /* no list (and no qsort of a NULL array) */
    if (n > m->engine_cap) {
        Ferry__EngineStats *es = realloc(m->engine_stats, n * sizeof *es);
        if (es)
            m->engine_stats = es;
        Ferry__EngineStats **ep = realloc(m->engine_ptrs, n * sizeof *ep);
        if (ep)
            m->engine_ptrs = ep;
        if (!es || !ep)
            return;
        m->engine_cap = n;
    }
    size_t i = 0;
    for (broker_engine *e = b->scripts.engines; e; e = e->hh.next, i++) {
        Ferry__EngineStats *x = &m->engine_stats[i];
        ferry__engine_stats__init(x);
        x->id.data = e->rid;
        x->id.len = e->rid_len;
        x->slots = e->slots;
        x->running = e->running;
        x->leaving = e->leaving != 0;
        m->engine_ptrs[i] = x;
    }
    qsort(m->engine_ptrs, n, sizeof *m->engine_ptrs, by_engine_stats_id);
    size_t keep = 0, used = 0;
    for (; keep < n && keep < BROKER_STATS_ENGINES; keep++) {
        size_t cost = m->engine_ptrs[keep]->id.len + 20; /* the id and three fields, encoded */
        if (used + cost > BROKER_STATS_BYTES / 4)
            break;
        used += cost;
    }
    st->engine_list = m->engine_ptrs;
    st->n_engine_list = keep;
    if (keep < n)
        st->truncated = 1;
}

void broker_metrics_stats(broker *b, Ferry__Stats *st)
{
    fill_engine_list(b, st);
    capacity c = measure(b);
    st->slots = c.slots;
    st->free_slots = c.free_slots;
    st->credit = c.credit;
    st->free_credit = c.free_credit;
    st->metrics = b->metrics.on != 0;
}

/* ---- the exposition ---- */

static void family(ferry_metrics_writer *w, const char *name, ferry_metrics_type t,
                   const char *help)
{
    ferry_metrics_family(w, name, t, help);
}

static void scalar(ferry_metrics_writer *w, const char *name, ferry_metrics_type t,
                   const char *help, uint64_t v)
{
    family(w, name, t, help);
    ferry_metrics_u64(w, name, NULL, 0, v);
}

static int by_series_name(const broker_fn_metrics *a, const broker_fn_metrics *b)
{
    return strcmp(a->name, b->name);
}

static void render_functions(broker *b, ferry_metrics_writer *w)
{
    broker_metrics *m = &b->metrics;
    HASH_SORT(m->fns, by_series_name); /* stable output, for people and diffs */
    family(w, "ferry_calls_total", FERRY_METRICS_COUNTER,
           "Calls answered, by function and outcome (ok, or the error code).");
    for (broker_fn_metrics *x = m->fns; x; x = x->hh.next)
        for (unsigned o = 0; o < BROKER_METRICS_OUTCOMES; o++) {
            /* ok always, the error codes once they happened: a bounded, sparse set. */
            if (o != FERRY_OK && x->outcomes[o] == 0)
                continue;
            ferry_metrics_label l[2] = {{"function", x->name},
                                        {"outcome", ferry_metrics_outcome_name(o)}};
            ferry_metrics_u64(w, "ferry_calls_total", l, 2, x->outcomes[o]);
        }
    family(w, "ferry_call_retries_total", FERRY_METRICS_COUNTER,
           "Calls sent once more to another worker after theirs was lost, by function.");
    for (broker_fn_metrics *x = m->fns; x; x = x->hh.next) {
        ferry_metrics_label l = {"function", x->name};
        ferry_metrics_u64(w, "ferry_call_retries_total", &l, 1, x->retried);
    }
    family(w, "ferry_call_duration_seconds", FERRY_METRICS_HISTOGRAM,
           "Time from a call's dispatch to a worker to its reply at the broker, by function.");
    for (broker_fn_metrics *x = m->fns; x; x = x->hh.next) {
        ferry_metrics_label l = {"function", x->name};
        ferry_metrics_hist_write(w, "ferry_call_duration_seconds", &l, 1, &x->latency);
    }
    scalar(w, "ferry_calls_unlabelled_total", FERRY_METRICS_COUNTER,
           "Calls answered for functions past the --functions-max series bound.", m->unlabelled);

    broker_dispatch *d = &b->dispatch;
    static const struct {
        const char *name, *help;
        size_t field;
    } gauges[] = {
        {"ferry_calls_queued", "Calls waiting for a worker, by function.",
         offsetof(broker_function, queued)},
        {"ferry_calls_in_flight", "Calls at workers, by function.",
         offsetof(broker_function, in_flight)},
    };
    for (size_t g = 0; g < sizeof gauges / sizeof gauges[0]; g++) {
        family(w, gauges[g].name, FERRY_METRICS_GAUGE, gauges[g].help);
        for (broker_function *fn = d->functions; fn; fn = fn->hh.next) {
            ferry_metrics_label l = {"function", fn->name};
            uint64_t v = *(const uint64_t *)((const char *)fn + gauges[g].field);
            ferry_metrics_u64(w, gauges[g].name, &l, 1, v);
        }
    }
    family(w, "ferry_function_workers", FERRY_METRICS_GAUGE, "Live workers serving each function.");
    for (broker_function *fn = d->functions; fn; fn = fn->hh.next) {
        ferry_metrics_label l = {"function", fn->name};
        ferry_metrics_u64(w, "ferry_function_workers", &l, 1, fn->workers);
    }
}

static void render_scripts(broker *b, ferry_metrics_writer *w)
{
    broker_metrics *m = &b->metrics;
    family(w, "ferry_scripts_total", FERRY_METRICS_COUNTER,
           "Scripts whose Result went to their client, by outcome.");
    for (unsigned o = 0; o < BROKER_METRICS_OUTCOMES; o++) {
        if (o != FERRY_OK && m->scripts[o] == 0)
            continue;
        ferry_metrics_label l = {"outcome", ferry_metrics_outcome_name(o)};
        ferry_metrics_u64(w, "ferry_scripts_total", &l, 1, m->scripts[o]);
    }
    family(w, "ferry_script_duration_seconds", FERRY_METRICS_HISTOGRAM,
           "Time from a Submit's arrival to its script's Result from an engine.");
    ferry_metrics_hist_write(w, "ferry_script_duration_seconds", NULL, 0, &m->script_duration);
    family(w, "ferry_script_queue_wait_seconds", FERRY_METRICS_HISTOGRAM,
           "Time from a Submit's arrival to its script's start on an engine.");
    ferry_metrics_hist_write(w, "ferry_script_queue_wait_seconds", NULL, 0, &m->script_wait);
    scalar(w, "ferry_scripts_queued", FERRY_METRICS_GAUGE, "Scripts waiting for an engine slot.",
           b->scripts.queued);
    scalar(w, "ferry_scripts_running", FERRY_METRICS_GAUGE, "Scripts running on engines.",
           b->scripts.running);
}

/* A routing id as a label value: printable ASCII as it is, other bytes as \xNN. */
static const char *peer_label(const uint8_t *id, size_t len, char *buf, size_t buflen)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 5 < buflen; i++) {
        if (id[i] >= 0x20 && id[i] < 0x7f && id[i] != '\\')
            buf[n++] = (char)id[i];
        else
            n += (size_t)snprintf(buf + n, buflen - n, "\\x%02x", id[i]);
    }
    buf[n] = '\0';
    return buf;
}

static int rid_cmp(const uint8_t *x, size_t xl, const uint8_t *y, size_t yl)
{
    int c = memcmp(x, y, xl < yl ? xl : yl);
    return c ? c : (xl > yl) - (xl < yl);
}

static int by_worker_rid(const void *a, const void *b)
{
    const broker_worker *x = *(broker_worker *const *)a, *y = *(broker_worker *const *)b;
    return rid_cmp(x->rid, x->rid_len, y->rid, y->rid_len);
}

static int by_engine_rid(const void *a, const void *b)
{
    const broker_engine *x = *(broker_engine *const *)a, *y = *(broker_engine *const *)b;
    return rid_cmp(x->rid, x->rid_len, y->rid, y->rid_len);
}

static void render_worker_peers(broker *b, ferry_metrics_writer *w)
{
    size_t n = HASH_COUNT(b->dispatch.workers), i = 0;
    broker_worker **v = n ? malloc(n * sizeof *v) : NULL;
    if (!v)
        return; /* none, or out of memory: the rest of the scrape goes out */
    for (broker_worker *x = b->dispatch.workers; x; x = x->hh.next)
        v[i++] = x;
    qsort(v, n, sizeof *v, by_worker_rid);
    size_t keep = n < b->metrics.peers ? n : b->metrics.peers;
    char id[4 * FERRY_ROUTING_ID_MAX + 1];
    ferry_metrics_family(w, "ferry_peer_worker_calls_in_flight", FERRY_METRICS_GAUGE,
                         "Calls at this worker (--metrics-peers).");
    for (i = 0; i < keep; i++) {
        ferry_metrics_label l = {"worker", peer_label(v[i]->rid, v[i]->rid_len, id, sizeof id)};
        ferry_metrics_u64(w, "ferry_peer_worker_calls_in_flight", &l, 1, v[i]->in_flight);
    }
    ferry_metrics_family(w, "ferry_peer_worker_credit", FERRY_METRICS_GAUGE,
                         "Credit this worker announced (--metrics-peers).");
    for (i = 0; i < keep; i++) {
        ferry_metrics_label l = {"worker", peer_label(v[i]->rid, v[i]->rid_len, id, sizeof id)};
        ferry_metrics_u64(w, "ferry_peer_worker_credit", &l, 1, v[i]->credit);
    }
    ferry_metrics_family(w, "ferry_peer_worker_replies_total", FERRY_METRICS_COUNTER,
                         "Replies from this worker, by result (--metrics-peers).");
    for (i = 0; i < keep; i++) {
        peer_label(v[i]->rid, v[i]->rid_len, id, sizeof id);
        ferry_metrics_label ok[2] = {{"worker", id}, {"result", "completed"}};
        ferry_metrics_label bad[2] = {{"worker", id}, {"result", "failed"}};
        ferry_metrics_u64(w, "ferry_peer_worker_replies_total", ok, 2, v[i]->completed);
        ferry_metrics_u64(w, "ferry_peer_worker_replies_total", bad, 2, v[i]->failed);
    }
    free(v);
}

static void render_engine_peers(broker *b, ferry_metrics_writer *w)
{
    size_t n = HASH_COUNT(b->scripts.engines), i = 0;
    broker_engine **v = n ? malloc(n * sizeof *v) : NULL;
    if (!v)
        return;
    for (broker_engine *x = b->scripts.engines; x; x = x->hh.next)
        v[i++] = x;
    qsort(v, n, sizeof *v, by_engine_rid);
    size_t keep = n < b->metrics.peers ? n : b->metrics.peers;
    char id[4 * FERRY_ROUTING_ID_MAX + 1];
    ferry_metrics_family(w, "ferry_peer_engine_scripts_running", FERRY_METRICS_GAUGE,
                         "Scripts of ours running at this engine (--metrics-peers).");
    for (i = 0; i < keep; i++) {
        ferry_metrics_label l = {"engine", peer_label(v[i]->rid, v[i]->rid_len, id, sizeof id)};
        ferry_metrics_u64(w, "ferry_peer_engine_scripts_running", &l, 1, v[i]->running);
    }
    ferry_metrics_family(w, "ferry_peer_engine_slots", FERRY_METRICS_GAUGE,
                         "Slots this engine announced (--metrics-peers).");
    for (i = 0; i < keep; i++) {
        ferry_metrics_label l = {"engine", peer_label(v[i]->rid, v[i]->rid_len, id, sizeof id)};
        ferry_metrics_u64(w, "ferry_peer_engine_slots", &l, 1, v[i]->slots);
    }
    free(v);
}

ferry_err broker_metrics_render(broker *b, ferry_buf *out)
{
    ferry_metrics_writer w;
    ferry_metrics_writer_init(&w, out);
    render_functions(b, &w);
    render_scripts(b, &w);
    capacity c = measure(b);
    scalar(&w, "ferry_engines", FERRY_METRICS_GAUGE, "Engines registered.", b->scripts.nengines);
    scalar(&w, "ferry_workers", FERRY_METRICS_GAUGE, "Live workers registered.",
           b->dispatch.nworkers);
    scalar(&w, "ferry_engine_slots", FERRY_METRICS_GAUGE, "Script slots of live engines, in all.",
           c.slots);
    scalar(&w, "ferry_engine_slots_free", FERRY_METRICS_GAUGE,
           "Script slots free for a new script now.", c.free_slots);
    scalar(&w, "ferry_worker_credit", FERRY_METRICS_GAUGE,
           "Credit (calls at once) of live workers, in all.", c.credit);
    scalar(&w, "ferry_worker_credit_free", FERRY_METRICS_GAUGE, "Credit free for a new call now.",
           c.free_credit);
    scalar(&w, "ferry_queue_bytes", FERRY_METRICS_GAUGE,
           "Bytes of queued Commands and Submits (--queue-bytes).", b->budget.used);
    scalar(&w, "ferry_workers_lost_total", FERRY_METRICS_COUNTER,
           "Workers declared lost: silent past liveness, or unreachable.",
           b->dispatch.workers_lost);
    scalar(&w, "ferry_engines_lost_total", FERRY_METRICS_COUNTER, "Engines declared lost.",
           b->scripts.engines_lost);
    family(&w, "ferry_messages_dropped_total", FERRY_METRICS_COUNTER,
           "Messages dropped, by reason (the event name of their log line).");
    for (unsigned k = 0; k < BROKER_DROP_COUNT; k++) {
        ferry_metrics_label l = {"reason", broker_drop_name((broker_drop)k)};
        ferry_metrics_u64(&w, "ferry_messages_dropped_total", &l, 1, b->metrics.dropped[k]);
    }
    if (b->metrics.peers) {
        render_worker_peers(b, &w);
        render_engine_peers(b, &w);
    }
    ferry_metrics_process(&w, b->metrics.start_time);
    return ferry_metrics_writer_err(&w);
}

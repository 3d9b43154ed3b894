/*
 * ferry-example-worker: a worker of your own, on Ferry's C API
 * (include/ferry/worker.h, library ferry_worker).
 *
 * An in-memory key-value store that Lua scripts call like any other Ferry
 * function:
 *
 *   kv.set(key, value [, ttl_ms])  stores a copy of any value (nil deletes);
 *                                  with ttl_ms the key expires after that long.
 *                                  Returns true.
 *   kv.get(key)                    the value, or nil.
 *   kv.wait(key [, timeout_ms])    the value as soon as some call sets it (at
 *                                  once when it is set already), or nil after
 *                                  timeout_ms.
 *   kv.keys()                      the keys, sorted.
 *
 * What it shows: handlers that answer at once (get, set, keys), and one that
 * answers later (wait) from another call's handler or from a timer of the
 * same loop, with a cancel callback so a timed-out or shut-down wait leaves
 * nothing behind; a timer that belongs to the worker, not to a call (ttl);
 * idempotency and per-function concurrency declared at registration.
 *
 *   ferry-example-worker --workers tcp://localhost:5557
 *   ferry run examples/custom-worker/use.lua
 */
#include <ferry/worker.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#define KV_MAX_KEY 1024
#define KV_MAX_WAITS 10000 /* kv.wait calls parked at once; more wait in line */

typedef struct kv_store kv_store;

typedef struct kv_entry {
    UT_hash_handle hh;
    char *key; /* owned, binary-safe: len bytes */
    size_t len;
    Ferry__Value *value; /* owned */
    ferry_timer expiry;  /* armed while a ttl runs */
    kv_store *store;
} kv_entry;

/* One parked kv.wait. */
typedef struct kv_waiter {
    ferry_call *call;
    const char *key; /* borrowed from the call's argument */
    size_t len;
    kv_store *store;
    struct kv_waiter *prev, *next;
} kv_waiter;

struct kv_store {
    ferry_worker *worker;
    kv_entry *entries;  /* uthash by key */
    kv_waiter *waiters; /* every parked kv.wait; a set scans them (an example, not a database) */
};

static kv_entry *find(kv_store *kv, const char *key, size_t len)
{
    kv_entry *e = NULL;
    HASH_FIND(hh, kv->entries, key, len, e);
    return e;
}

static void entry_free(kv_store *kv, kv_entry *e)
{
    HASH_DEL(kv->entries, e);
    ferry_worker_timer_stop(kv->worker, &e->expiry);
    ferry_value_free(e->value);
    free(e->key);
    free(e);
}

/* Reads argument 0 as a key; fails the call and returns 0 when it is not one. */
static int key_arg(ferry_call *call, const char **key, size_t *len)
{
    if (ferry_call_arg_string(call, 0, key, len) != FERRY_OK) {
        ferry_call_fail_arg(call, 0, "string");
        return 0;
    }
    if (*len == 0 || *len > KV_MAX_KEY) {
        ferry_call_fail(call, FERRY_EBADARG, "bad argument #1 to '%s' (key of 1 to %d bytes)",
                        ferry_call_function(call), KV_MAX_KEY);
        return 0;
    }
    return 1;
}

/* Reads an optional positive millisecond count at argument i (-1 when absent). */
static int ms_arg(ferry_call *call, size_t i, int64_t *ms)
{
    *ms = -1;
    if (ferry_value_is_nil(ferry_call_arg(call, i)))
        return 1;
    if (ferry_call_arg_int(call, i, ms) != FERRY_OK || *ms < 0 || *ms > 86400000) {
        ferry_call_fail(call, FERRY_EBADARG,
                        "bad argument #%zu to '%s' (milliseconds from 0 to 86400000 expected)",
                        i + 1, ferry_call_function(call));
        return 0;
    }
    return 1;
}

/* ---- kv.get, kv.keys: answers at once -------------------------------------- */

static void kv_get(ferry_call *call, void *udata)
{
    kv_store *kv = udata;
    const char *key;
    size_t len;
    if (!key_arg(call, &key, &len))
        return;
    kv_entry *e = find(kv, key, len);
    /* The answer takes ownership: hand over a copy (NULL becomes out_of_memory). */
    ferry_call_return_values(call, 1, e ? ferry_value_copy(e->value) : ferry_value_nil());
}

static int by_key(const void *a, const void *b)
{
    const kv_entry *x = *(kv_entry *const *)a, *y = *(kv_entry *const *)b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static void kv_keys(ferry_call *call, void *udata)
{
    kv_store *kv = udata;
    size_t n = HASH_COUNT(kv->entries);
    kv_entry **sorted = malloc((n ? n : 1) * sizeof *sorted);
    Ferry__Value *list = ferry_value_table();
    if (!sorted || !list) {
        free(sorted);
        ferry_value_free(list);
        ferry_call_fail(call, FERRY_ENOMEM, "kv.keys: out of memory");
        return;
    }
    size_t i = 0;
    for (kv_entry *e = kv->entries; e; e = e->hh.next)
        sorted[i++] = e;
    qsort(sorted, n, sizeof *sorted, by_key);
    ferry_err err = FERRY_OK;
    for (i = 0; i < n && !err; i++) /* the key is taken over, freed on failure */
        err = ferry_table_append(list, ferry_value_string(sorted[i]->key, sorted[i]->len));
    free(sorted);
    if (err) {
        ferry_value_free(list);
        ferry_call_fail(call, FERRY_ENOMEM, "kv.keys: out of memory");
        return;
    }
    ferry_call_return_values(call, 1, list);
}

/* ---- kv.wait: answers later ------------------------------------------------ */

static void waiter_done(kv_waiter *wt)
{
    DL_DELETE(wt->store->waiters, wt);
    free(wt);
}

/* timeout_ms passed before anybody set the key: the answer is nil. */
static void wait_expired(ferry_call *call, void *arg)
{
    waiter_done(arg);
    ferry_call_return_values(call, 1, ferry_value_nil());
}

/* The worker replied `timeout` (the script's deadline) or shuts down: let go. */
static void wait_cancelled(ferry_call *call, ferry_err reason, void *arg)
{
    waiter_done(arg);
    ferry_call_fail(call, reason, "kv.wait cancelled");
}

static void kv_wait(ferry_call *call, void *udata)
{
    kv_store *kv = udata;
    const char *key;
    size_t len;
    int64_t timeout_ms;
    if (!key_arg(call, &key, &len) || !ms_arg(call, 1, &timeout_ms))
        return;
    kv_entry *e = find(kv, key, len);
    if (e) {
        ferry_call_return_values(call, 1, ferry_value_copy(e->value));
        return;
    }
    kv_waiter *wt = calloc(1, sizeof *wt);
    if (!wt) {
        ferry_call_fail(call, FERRY_ENOMEM, "kv.wait: out of memory");
        return;
    }
    *wt = (kv_waiter){.call = call, .key = key, .len = len, .store = kv};
    if (timeout_ms >= 0 && ferry_call_after(call, timeout_ms, wait_expired, wt) != FERRY_OK) {
        free(wt);
        ferry_call_fail(call, FERRY_ENOMEM, "kv.wait: cannot arm a timer");
        return;
    }
    DL_APPEND(kv->waiters, wt);
    ferry_call_on_cancel(call, wait_cancelled, wt);
    /* Returning without an answer is the point: kv_set or a timer answers. */
}

/* ---- kv.set: answers at once, and wakes the waits on its key ----------------- */

static void on_expiry(ferry_timer *timer, void *arg)
{
    (void)timer;
    kv_entry *e = arg;
    entry_free(e->store, e);
}

static void kv_set(ferry_call *call, void *udata)
{
    kv_store *kv = udata;
    const char *key;
    size_t len;
    int64_t ttl_ms;
    if (!key_arg(call, &key, &len) || !ms_arg(call, 2, &ttl_ms))
        return;
    const Ferry__Value *arg = ferry_call_arg(call, 1);
    kv_entry *e = find(kv, key, len);
    if (ferry_value_is_nil(arg)) {
        if (e)
            entry_free(kv, e);
        ferry_call_return_values(call, 1, ferry_value_bool(1));
        return;
    }
    /* Arguments die with the call's answer: the store keeps a copy. */
    Ferry__Value *value = ferry_value_copy(arg);
    if (!value) {
        ferry_call_fail(call, FERRY_ENOMEM, "kv.set: out of memory");
        return;
    }
    if (!e) {
        e = calloc(1, sizeof *e);
        char *k = malloc(len);
        if (!e || !k) {
            free(e);
            free(k);
            ferry_value_free(value);
            ferry_call_fail(call, FERRY_ENOMEM, "kv.set: out of memory");
            return;
        }
        memcpy(k, key, len);
        e->key = k;
        e->len = len;
        e->store = kv;
        ferry_timer_init(&e->expiry, on_expiry, e);
        HASH_ADD_KEYPTR(hh, kv->entries, e->key, e->len, e);
    }
    ferry_value_free(e->value);
    e->value = value;
    if (ttl_ms >= 0)
        ferry_worker_timer_start(kv->worker, &e->expiry, ttl_ms);
    else
        ferry_worker_timer_stop(kv->worker, &e->expiry);

    /* Every wait on this key gets its own copy. A waiter's answer frees only that
     * waiter, so walk with the safe iterator. */
    kv_waiter *wt, *tmp;
    DL_FOREACH_SAFE(kv->waiters, wt, tmp) {
        if (wt->len == len && memcmp(wt->key, key, len) == 0) {
            ferry_call *waiting = wt->call;
            waiter_done(wt);
            ferry_call_return_values(waiting, 1, ferry_value_copy(value));
        }
    }
    ferry_call_return_values(call, 1, ferry_value_bool(1));
}

/* ---- the program ------------------------------------------------------------ */

static const struct {
    const char *name;
    ferry_handler fn;
    ferry_function_opts opts;
} functions[] = {
    {.name = "kv.get", .fn = kv_get, .opts = {.idempotent = 1}},
    {.name = "kv.keys", .fn = kv_keys, .opts = {.idempotent = 1}},
    /* Setting a value twice leaves the same store. */
    {.name = "kv.set", .fn = kv_set, .opts = {.idempotent = 1}},
    /* Parked waits are cheap, but bounded: the rest wait in line at this worker. */
    {.name = "kv.wait", .fn = kv_wait, .opts = {.idempotent = 1, .max_concurrency = KV_MAX_WAITS}},
};

static void usage(FILE *to)
{
    fprintf(to,
            "usage: ferry-example-worker [options]\n"
            "An example worker built on Ferry's C API: an in-memory key-value store\n"
            "(kv.set, kv.get, kv.wait, kv.keys).\n\n"
            "  --workers EP        broker workers endpoint to connect to [$FERRY_WORKERS]\n"
            "  --concurrency N     calls in flight at once, the credit announced to the\n"
            "                      broker [$FERRY_CONCURRENCY]\n"
            "  --curve-key FILE    this worker's secret certificate (ferry keygen): CURVE\n"
            "                      towards the broker [$FERRY_CURVE_KEY]\n"
            "  --broker-key FILE   the broker's public certificate [$FERRY_BROKER_KEY]\n");
}

int main(int argc, char **argv)
{
    /* Flags over environment variables over defaults, as Ferry's own binaries. */
    const char *endpoint = getenv("FERRY_WORKERS");
    const char *concurrency = getenv("FERRY_CONCURRENCY");
    const char *curve_key = getenv("FERRY_CURVE_KEY");
    const char *broker_key = getenv("FERRY_BROKER_KEY");
    static const struct option longopts[] = {
        {"workers", required_argument, NULL, 'w'},    {"concurrency", required_argument, NULL, 'c'},
        {"curve-key", required_argument, NULL, 'k'},  {"broker-key", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},             {NULL, 0, NULL, 0},
    };
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'w': endpoint = optarg; break;
        case 'c': concurrency = optarg; break;
        case 'k': curve_key = optarg; break;
        case 'b': broker_key = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    char *end = NULL;
    unsigned long n = concurrency ? strtoul(concurrency, &end, 10) : 0;
    if (concurrency && (*end || n < 1 || n > FERRY_WORKER_MAX_CONCURRENCY)) {
        fprintf(stderr, "ferry-example-worker: --concurrency: 1 to %d\n",
                FERRY_WORKER_MAX_CONCURRENCY);
        return 2;
    }

    ferry_worker_config cfg = {.endpoint = endpoint, /* NULL: the default */
                               .concurrency = (unsigned)n,
                               .curve_key = curve_key,
                               .broker_key = broker_key,
                               .log_role = "kv-worker"};
    char err[512];
    kv_store kv = {0};
    kv.worker = ferry_worker_new(&cfg, err, sizeof err);
    if (!kv.worker) {
        fprintf(stderr, "ferry-example-worker: %s\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
        if (ferry_worker_register(kv.worker, functions[i].name, functions[i].fn, &kv,
                                  &functions[i].opts) != FERRY_OK) {
            fprintf(stderr, "ferry-example-worker: cannot register '%s'\n", functions[i].name);
            ferry_worker_destroy(&kv.worker);
            return 1;
        }
    }
    ferry_err run = ferry_worker_run(kv.worker); /* until SIGINT or SIGTERM */
    /* Stop the ttl timers while the loop is there, then let destroy cancel the
     * parked waits (their cancel callbacks free the waiters). */
    kv_entry *e, *tmp;
    HASH_ITER(hh, kv.entries, e, tmp)
        entry_free(&kv, e);
    ferry_worker_destroy(&kv.worker);
    return run == FERRY_OK ? 0 : 1;
}

/*
 * engine_state_bench: what one script costs the engine host, in process.
 *
 * Creates N scripts (default 10,000) that each block in ferry.call, exactly
 * as the engine would (engine_script_new + engine_script_start: a fresh
 * lua_State with the sandbox, the coroutine library and the ferry module,
 * the chunk compiled and run up to its call, under the watchdog), with a
 * host that accepts every call and answers none. Then answers them all and
 * destroys them. Prints:
 *   - µs to create one fresh sandboxed state and run it to its call
 *   - its Lua heap (bytes counted by the capped allocator), and the resident
 *     memory the whole process grew by per blocked script (malloc overhead,
 *     the script struct, everything)
 *   - µs to resume one script with its answer to the end, and to destroy it
 *   - µs for one short script after another (new, start, result, destroy),
 *     where each state goes back to the pool reset (state_pool.h), and the
 *     same with the pool kept empty (a fresh state each time)
 * Targets (issue 3): under 100 µs and 40 KB per fresh state; 10,000 scripts
 * blocked in calls at once in one engine host.
 *
 *   ferry-engine-state-bench [scripts]
 */
#include "ferry_clock.h"
#include "ferry_value.h"
#include "script.h"
#include "state_pool.h"
#include "watchdog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ferry_err accept_call(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                             size_t nargs, uint32_t tag, char *why, size_t whylen)
{
    (void)ctx;
    (void)s;
    (void)function;
    (void)tag;
    (void)why;
    (void)whylen;
    ferry_values_free(args, nargs);
    return FERRY_OK;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    if (n < 1) {
        fprintf(stderr, "usage: %s [scripts]\n", argv[0]);
        return 2;
    }
    engine_script_host host = {.call = accept_call};
    engine_script_limits limits = {.timeout_ms = 3600 * 1000,
                                   .max_output = 1 << 20,
                                   .max_memory = 64 << 20,
                                   .max_instructions = 0};
    const char *src = "local who = ...\n"
                      "local r = ferry.call('sleep', 1000)\n"
                      "return who, r";
    char err[256];
    if (engine_watchdog_init(2000, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    engine_script **scripts = calloc((size_t)n, sizeof *scripts);
    Ferry__Value *arg = ferry_value_cstring("bench");
    if (!scripts || !arg)
        return 1;

    /* Warm up the allocator and the caches with a few scripts. */
    for (int i = 0; i < 100; i++) {
        engine_script *s = engine_script_new(&host, &limits, 0);
        engine_script_start(s, src, strlen(src), "bench.lua", &arg, 1);
        engine_script_destroy(&s);
    }

    long rss0 = rss_kb();
    size_t heap = 0;
    int64_t t0 = ferry_now_us();
    for (long i = 0; i < n; i++) {
        scripts[i] = engine_script_new(&host, &limits, (uint64_t)i);
        if (!scripts[i] || engine_script_start(scripts[i], src, strlen(src), "bench.lua", &arg,
                                               1) != ENGINE_SCRIPT_WAITING) {
            fprintf(stderr, "script %ld did not block in its call\n", i);
            return 1;
        }
        heap += scripts[i]->mem_used;
    }
    int64_t t1 = ferry_now_us();
    long rss1 = rss_kb();

    Ferry__Value *yes = ferry_value_bool(1);
    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.values = &yes;
    reply.n_values = 1;
    engine_script_answer answer = {.reply = &reply};
    int64_t t2 = ferry_now_us();
    for (long i = 0; i < n; i++)
        if (engine_script_resume(scripts[i], &answer) != ENGINE_SCRIPT_DONE || !scripts[i]->ok) {
            fprintf(stderr, "script %ld did not finish\n", i);
            return 1;
        }
    int64_t t3 = ferry_now_us();
    for (long i = 0; i < n; i++)
        engine_script_destroy(&scripts[i]);
    int64_t t4 = ferry_now_us();

    /* One short script after another, as an engine with one slot runs them. */
    const char *one = "local t = {} for i = 1, 10 do t[i] = i end return #t";
    int64_t seq[2];
    for (int fresh = 0; fresh < 2; fresh++) {
        int64_t t5 = ferry_now_us();
        for (long i = 0; i < n; i++) {
            if (fresh)
                engine_pool_clear();
            engine_script *s = engine_script_new(&host, &limits, (uint64_t)i);
            if (!s || engine_script_start(s, one, strlen(one), "one.lua", NULL, 0) !=
                          ENGINE_SCRIPT_DONE ||
                !s->ok) {
                fprintf(stderr, "short script %ld failed\n", i);
                return 1;
            }
            engine_script_destroy(&s);
        }
        seq[fresh] = ferry_now_us() - t5;
    }
    /* The reset alone: the same idle state taken and put back. */
    int64_t t6 = ferry_now_us();
    for (long i = 0; i < n; i++) {
        size_t bytes;
        lua_State *L = engine_pool_take(&bytes);
        if (!L)
            break;
        engine_pool_put(L);
    }
    int64_t reset_us = ferry_now_us() - t6;
    engine_pool_clear();

    printf("scripts                          %ld blocked in ferry.call at once\n", n);
    printf("fresh sandboxed state + start    %.1f us per script\n", (double)(t1 - t0) / n);
    printf("Lua heap per blocked script      %.1f KB (capped allocator's count)\n",
           (double)heap / n / 1024);
    printf("resident memory per script      %.1f KB (process RSS growth / scripts)\n",
           (double)(rss1 - rss0) / n);
    printf("resident memory for all          %.1f MB\n", (double)(rss1 - rss0) / 1024);
    printf("resume with the answer to end    %.1f us per script\n", (double)(t3 - t2) / n);
    printf("destroy                          %.1f us per script\n", (double)(t4 - t3) / n);
    printf("short scripts, state reused      %.1f us per script (new, start, result, destroy)\n",
           (double)seq[0] / n);
    printf("short scripts, fresh states      %.1f us per script\n", (double)seq[1] / n);
    printf("reset of an idle state           %.1f us\n", (double)reset_us / n);
    ferry_value_free(yes);
    ferry_value_free(arg);
    free(scripts);
    engine_watchdog_fini();
    return 0;
}

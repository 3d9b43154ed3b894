/*
 * lua_cpu_bench: CPU-bound Lua in the sandbox against a bare lua_State, in
 * the same process, on the same code (issue "Engine speed").
 *
 * Each load runs as a Ferry script (engine_script: the sandbox, its limits
 * and hooks, its metered pattern and table functions) and as a chunk in a
 * plain luaL_newstate with luaL_openlibs, the way `lua5.4` runs it. The
 * ratio sandbox / bare is what the sandbox costs; the target is 1.2 or less.
 * Each load is run `--runs` times on each side and the fastest run is kept
 * (the machine's other work only ever adds time).
 *
 *   ferry-lua-bench [--runs N] [--max-instructions N] [--json]
 *
 * --max-instructions 0 (the default here) runs without an instruction
 * limit, as an engine with --max-instructions 0 does; any other value runs
 * with that limit, to show what counting costs.
 */
#include "ferry_clock.h"
#include "ferry_value.h"
#include "script.h"
#include "state_pool.h"
#include "watchdog.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    const char *src;
} load;

/* The same loads the issue names: string building, sort, patterns,
 * arithmetic, closures, and function calls. Each returns a value so that
 * nothing is optimised away and both sides can be checked to agree. */
static const load loads[] = {
    {"string building",
     "local t = {} for i = 1, 200000 do t[#t + 1] = ('%d:%s'):format(i, 'x') end\n"
     "return #table.concat(t, ',')"},
    {"table sort",
     "local t = {} local x = 42 for i = 1, 200000 do x = (x * 1103515245 + 12345) % 2147483648\n"
     "t[i] = x end table.sort(t) table.sort(t, function(a, b) return a > b end) return t[1]"},
    {"pattern matching",
     "local s = ('the quick brown fox jumps over the lazy dog '):rep(2000) local n = 0\n"
     "for _ = 1, 20 do for w in s:gmatch('%a+') do n = n + #w end\n"
     "n = n + select(2, s:gsub('o', '0')) end return n"},
    {"arithmetic",
     "local x = 0 for i = 1, 10000000 do x = x + i * 2 % 7 - (i // 3) end return x"},
    {"closures",
     "local function mk(i) return function(y) return i + y end end local s = 0\n"
     "for i = 1, 1000000 do s = s + mk(i)(1) end return s"},
    {"function calls",
     "local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end\n"
     "return fib(27)"},
};

static ferry_err no_calls(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                          size_t nargs, uint32_t tag, char *why, size_t whylen)
{
    (void)ctx;
    (void)s;
    (void)function;
    (void)tag;
    ferry_values_free(args, nargs);
    snprintf(why, whylen, "no calls in this bench");
    return FERRY_ECALL;
}

/* Seconds to run src in the sandbox; the result's first value into out. */
static double run_sandbox(const char *src, uint64_t max_instructions, char *out, size_t outlen)
{
    engine_script_host host = {.call = no_calls};
    engine_script_limits limits = {.timeout_ms = 600 * 1000,
                                   .max_output = 1 << 20,
                                   .max_memory = 1u << 30,
                                   .max_instructions = max_instructions};
    engine_script *s = engine_script_new(&host, &limits, 1);
    int64_t t0 = ferry_now_us();
    engine_script_state st = engine_script_start(s, src, strlen(src), "bench.lua", NULL, 0);
    int64_t t1 = ferry_now_us();
    if (st != ENGINE_SCRIPT_DONE || !s->ok || s->n_values < 1) {
        fprintf(stderr, "sandbox: %s: %s\n", s->err_code ? s->err_code : "?",
                s->err_message ? s->err_message : "no value");
        exit(1);
    }
    const Ferry__Value *v = s->values[0];
    if (v->kind_case == FERRY__VALUE__KIND_INTEGER)
        snprintf(out, outlen, "%lld", (long long)v->integer);
    else
        snprintf(out, outlen, "%.17g", v->number);
    engine_script_destroy(&s);
    return (double)(t1 - t0) / 1e6;
}

/* Seconds to run src in a bare state, as lua5.4 would. */
static double run_bare(const char *src, char *out, size_t outlen)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    int64_t t0 = ferry_now_us();
    if (luaL_loadbuffer(L, src, strlen(src), "=bench.lua") != LUA_OK ||
        lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "bare: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    int64_t t1 = ferry_now_us();
    if (lua_isinteger(L, -1))
        snprintf(out, outlen, "%lld", (long long)lua_tointeger(L, -1));
    else
        snprintf(out, outlen, "%.17g", lua_tonumber(L, -1));
    lua_close(L);
    return (double)(t1 - t0) / 1e6;
}

int main(int argc, char **argv)
{
    int runs = 3, json = 0;
    unsigned long long max_instructions = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--max-instructions") == 0 && i + 1 < argc)
            max_instructions = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else {
            fprintf(stderr, "usage: %s [--runs N] [--max-instructions N] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1)
        runs = 1;
    char err[256];
    if (engine_watchdog_init(2000, err, sizeof err) != FERRY_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t n = sizeof loads / sizeof loads[0];
    double worst = 0;
    if (json)
        printf("{\"max_instructions\": %llu, \"loads\": [", max_instructions);
    else
        printf("%-18s %10s %10s %7s   (fastest of %d, --max-instructions %llu)\n", "load",
               "sandbox s", "bare s", "ratio", runs, max_instructions);
    for (size_t i = 0; i < n; i++) {
        double best_s = 1e9, best_b = 1e9;
        char vs[64], vb[64];
        for (int r = 0; r < runs; r++) {
            double ts = run_sandbox(loads[i].src, max_instructions, vs, sizeof vs);
            double tb = run_bare(loads[i].src, vb, sizeof vb);
            best_s = ts < best_s ? ts : best_s;
            best_b = tb < best_b ? tb : best_b;
        }
        if (strcmp(vs, vb) != 0) {
            fprintf(stderr, "%s: the sandbox returned %s, the bare state %s\n", loads[i].name, vs,
                    vb);
            return 1;
        }
        double ratio = best_s / best_b;
        worst = ratio > worst ? ratio : worst;
        if (json)
            printf("%s{\"load\": \"%s\", \"sandbox_s\": %.4f, \"bare_s\": %.4f, \"ratio\": %.3f}",
                   i ? ", " : "", loads[i].name, best_s, best_b, ratio);
        else
            printf("%-18s %10.4f %10.4f %7.2f\n", loads[i].name, best_s, best_b, ratio);
    }
    if (json)
        printf("], \"worst_ratio\": %.3f}\n", worst);
    else
        printf("%-18s %10s %10s %7.2f   (target 1.2 or less)\n", "worst", "", "", worst);
    engine_pool_clear();
    engine_watchdog_fini();
    return 0;
}

/*
 * engine_bounds_test: a script cannot make the engine send a message over the
 * message limit, nor hold more memory in calls than its limit allows,
 * through the real processes. Every attack runs with stack_attack: only the
 * attacker's call or script fails, with an error naming the bound; the
 * innocent script beside it (calls in flight on the same engine) finishes,
 * the engine lives and serves the next script.
 */
#include "harness.h"

#include "ferry_clock.h"
#include "ferry_codec.h"
#include "ferry_value.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

static ferry_stack stack;
static int engine_idx;

/* A broker, one engine and one worker; each given the NULL-terminated extra flags. */
static int start(void **state, const char *const *broker, const char *const *engine,
                 const char *const *worker)
{
    if (stack_start_one_each(&stack, broker, engine, worker, &engine_idx) != 0)
        return -1;
    *state = &stack;
    return 0;
}

/* Every flag at its default. */
static int setup(void **state)
{
    const char *engine[] = {"--slots", "100", NULL};
    return start(state, NULL, engine, NULL);
}

/* Every process with a message limit of 4 MiB, under the 8 MiB value budget,
 * so that a Command or a Result can be packed but not sent. */
#define SMALL_MSG "4194304"

static int setup_small_msg(void **state)
{
    const char *broker[] = {"--max-msg", SMALL_MSG, NULL};
    const char *engine[] = {"--slots", "100", "--max-msg", SMALL_MSG, NULL};
    const char *worker[] = {"--max-msg", SMALL_MSG, NULL};
    return start(state, broker, engine, worker);
}

/* An engine that holds at most 32 MiB of calls in flight, half its scripts' memory limit. */
#define INFLIGHT "33554432"

static int setup_inflight(void **state)
{
    const char *engine[] = {"--slots", "100", "--inflight-bytes", INFLIGHT, NULL};
    return start(state, NULL, engine, NULL);
}

static int teardown(void **state)
{
    return stack_stop(*state);
}

/* A function name is 1 to 255 bytes: a longer one fails its ferry.call or
 * ferry.all at once, before anything is sent. */
static void test_long_function_name(void **state)
{
    ferry_stack *s = *state;
    /* The review's repro: 17 MB, a Command over the broker's limit. */
    stack_attack(s, engine_idx, "return ferry.call(('x'):rep(17 << 20))", 20000, "bad_argument",
                 "bad argument #1 to 'ferry.call' (function name of 17825792 bytes: 1 to 255 "
                 "allowed)",
                 NULL);
    stack_attack(s, engine_idx, "return ferry.call(('x'):rep(256), 1)", 20000, "bad_argument",
                 "function name of 256 bytes", NULL);
    /* Inside ferry.all: none of its calls goes out, the good ones neither. */
    stack_attack(
        s, engine_idx, "return ferry.all({'sleep', 10}, {('x'):rep(17 << 20)}, {'echo', 1})", 20000,
        "bad_argument", "bad argument #2 to 'ferry.all' (function name of 17825792 bytes", NULL);
    stack_attack(s, engine_idx, "return ferry.all({'echo', 1}, {'ec\\0ho'})", 20000, "bad_argument",
                 "#2 to 'ferry.all' (function name must be UTF-8 without zero", NULL);
    /* 255 bytes is a name: it goes out, and nobody serves it. */
    stack_attack(s, engine_idx, "return ferry.call(('x'):rep(255))", 20000, "no_worker", "xxxxxxxx",
                 NULL);
    stack_passed(s);
}

/* The message of a script's error is cut to ENGINE_SCRIPT_ERROR_MAX with a
 * marker, whatever made it; the code to 64 bytes. */
static void check_cut(const ferry_result *r, size_t in_all)
{
    const char *msg = r->result->error->message;
    char mark[64];
    snprintf(mark, sizeof mark, "... [cut: %zu bytes in all]", in_all);
    size_t len = strlen(msg);
    assert_true(len <= 64 * 1024);
    assert_true(len >= 64 * 1024 - 4); /* cut at a character boundary */
    assert_string_equal(msg + len - strlen(mark), mark);
}

static void test_huge_error_message(void **state)
{
    ferry_stack *s = *state;
    ferry_result r;
    /* The review's repro: 20 MB, a Result over the broker's limit. */
    stack_attack(s, engine_idx, "error(('x'):rep(20 << 20), 0)", 20000, "script_error", "xxxx", &r);
    check_cut(&r, 20 << 20);
    ferry_result_fini(&r);
    /* With the position Lua puts in front. */
    stack_attack(s, engine_idx, "error(('x'):rep(20 << 20))", 20000, "script_error",
                 "attack.lua:1: xxxx", &r);
    check_cut(&r, (20 << 20) + strlen("attack.lua:1: "));
    ferry_result_fini(&r);
    /* The message field of an error table of the script's own, made huge. */
    stack_attack(s, engine_idx, "error({code = 'app.big', message = ('m'):rep(20 << 20)})",
                 20000, "app.big", "mmmm", &r);
    check_cut(&r, 20 << 20);
    ferry_result_fini(&r);
    /* A huge code is no code the script may use: script_error, the code cut. */
    char want[128];
    snprintf(want, sizeof want, "error code '%.64s' is not the script's to raise: m",
             "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc");
    stack_attack(s, engine_idx, "error({code = ('c'):rep(20 << 20), message = 'm'})", 20000,
                 "script_error", want, NULL);
    /* Ferry's own error object keeps what Ferry raised, whatever the
     * script writes into its fields. */
    stack_attack(s, engine_idx,
                 "local ok, e = pcall(ferry.call, 'echo', print)\n"
                 "e.message = ('m'):rep(20 << 20); e.code = ('c'):rep(20 << 20) error(e)",
                 20000, "bad_value", "args[1]: cannot send a function", NULL);
    /* A __tostring that returns 20 MB. */
    stack_attack(s, engine_idx,
                 "error(setmetatable({}, {__tostring = function() return ('t'):rep(20 << 20) "
                 "end}))",
                 20000, "script_error", "tttt", &r);
    check_cut(&r, 20 << 20);
    ferry_result_fini(&r);
    /* Multi-byte characters are not cut in the middle. */
    stack_attack(s, engine_idx, "error('a' .. ('\\u{20ac}'):rep(1 << 20), 0)", 20000,
                 "script_error", "\xe2\x82\xac... [cut: 3145729 bytes in all]", &r);
    check_cut(&r, (3 << 20) + 1);
    ferry_result_fini(&r);
    stack_passed(s);
}

/* A Command over --max-msg fails its own call, not the engine's connection. */
static void test_command_over_max_msg(void **state)
{
    ferry_stack *s = *state;
    ferry_result r;
    stack_attack(s, engine_idx, "return ferry.call('echo', ('x'):rep(5 << 20))", 20000, "bad_value",
                 "over the 4194304-byte message limit (--max-msg)", &r);
    assert_non_null(strstr(r.result->error->message, "the call would be a Command of 5242"));
    ferry_result_fini(&r);
    /* Caught, the script goes on and its next calls work. */
    stack_attack(s, engine_idx,
                 "local ok, e = pcall(ferry.call, 'echo', ('x'):rep(5 << 20))\n"
                 "return e.code, ferry.call('echo', 'after')",
                 20000, NULL, NULL, &r);
    assert_int_equal(r.result->n_values, 2);
    assert_memory_equal(r.result->values[0]->string.data, "bad_value", 9);
    assert_memory_equal(r.result->values[1]->string.data, "after", 5);
    ferry_result_fini(&r);
    /* Split over many arguments, and in ferry.all: only that call fails. */
    stack_attack(s, engine_idx,
                 "local x = ('x'):rep(1 << 20)\n"
                 "return ferry.all({'echo', 1}, {'echo', x, x, x, x, x}, {'echo', 3})",
                 20000, "bad_value", "over the 4194304-byte message limit", &r);
    ferry_result_fini(&r);
    stack_passed(s);
}

/* A Result over --max-msg ends its script with a limit error naming the size. */
static void test_result_over_max_msg(void **state)
{
    ferry_stack *s = *state;
    ferry_result r;
    stack_attack(s, engine_idx, "return ('x'):rep(5 << 20)", 20000, "limit",
                 "the script's result is 5242", NULL);
    stack_attack(s, engine_idx, "local x = ('x'):rep(1 << 20) return x, x, x, x, x", 20000, "limit",
                 "over the 4194304-byte message limit (--max-msg)", NULL);
    /* What the script printed comes back with the error. */
    stack_attack(s, engine_idx, "print('before') return ('x'):rep(5 << 20)", 20000, "limit",
                 "bytes, over the 4194304-byte", &r);
    assert_int_equal(r.result->output.len, 7);
    assert_memory_equal(r.result->output.data, "before\n", 7);
    ferry_result_fini(&r);
    /* A worker's reply it returns unchanged: under the limit at the worker,
     * but not with the output beside it. */
    stack_attack(s, engine_idx,
                 "print(('p'):rep(1000000))\n"
                 "return ferry.call('echo', ('x'):rep(3500000))",
                 20000, "limit", "the script's result is 45", &r);
    assert_true(r.result->output.len > 0 && r.result->output.len <= 1000001);
    ferry_result_fini(&r);
    stack_passed(s);
}

/* ferry.all of n calls {'sleep', ms, s} with s a string of kb kilobytes (1000 bytes). */
static const char *all_of(char *buf, size_t len, int n, int ms, int kb)
{
    snprintf(buf, len,
             "local s = ('x'):rep(%d * 1000)\n"
             "local c = {} for i = 1, %d do c[i] = {'sleep', %d, s} end\n"
             "return ferry.all(table.unpack(c))",
             kb, n, ms);
    return buf;
}

/* The calls of one ferry.all share the script's memory limit: packed, they
 * are all held at once, on the engine's heap and then at the broker. */
static void test_all_cannot_multiply_memory(void **state)
{
    ferry_stack *s = *state;
    char src[256];
    /* The review's repro: 200 calls of one 8 MB string (1.6 GB packed) in
     * 64 MiB. Nothing goes out. */
    stack_attack(s, engine_idx, all_of(src, sizeof src, 200, 10, 8000), 20000, "limit",
                 "memory limit of 67108864 bytes exceeded (the arguments of its calls in flight "
                 "count against it)",
                 NULL);
    /* pcall cannot catch it. */
    stack_attack(s, engine_idx,
                 "local s = ('x'):rep(8000000) local c = {}\n"
                 "for i = 1, 200 do c[i] = {'echo', s} end\n"
                 "local ok, e = pcall(ferry.all, table.unpack(c)) return 'caught'",
                 20000, "limit", "memory limit of 67108864 bytes exceeded", NULL);
    /* Many small calls: the same sum. */
    stack_attack(s, engine_idx, all_of(src, sizeof src, 10000, 10, 0), 20000, NULL, NULL, NULL);
    stack_attack(s, engine_idx,
                 "local s = ('x'):rep(10000) local c = {}\n"
                 "for i = 1, 10000 do c[i] = {'echo', s} end\n"
                 "return ferry.all(table.unpack(c))",
                 20000, "limit", "the arguments of its calls in flight count against it", NULL);
    /* Packed, a table of small values takes many times its wire size (about
     * 80 bytes per value): 300,000 booleans are 1.2 MB on the wire but 24 MB
     * on the engine's heap. One call fits, twenty at once do not. */
    const char *bools = "local t = {} for i = 1, 300000 do t[i] = true end\n"
                        "local c = {} for i = 1, %d do c[i] = {'echo', t} end\n"
                        "local r = ferry.all(table.unpack(c)) return #r[1][1]";
    snprintf(src, sizeof src, bools, 20);
    stack_attack(s, engine_idx, src, 20000, "limit",
                 "memory limit of 67108864 bytes exceeded (the arguments", NULL);
    snprintf(src, sizeof src, bools, 1);
    stack_attack(s, engine_idx, src, 20000, NULL, NULL, NULL);
    /* What fits goes out: 5 x 8 MB beside the 8 MB string in 64 MiB. */
    stack_attack(s, engine_idx, all_of(src, sizeof src, 5, 10, 8000), 20000, NULL, NULL, NULL);
    /* One ferry.call counts too: 3 MB in Lua plus 2 MB packed do not fit 4 MiB. */
    ferry_client_set_limits(s->client, &(ferry_limits){.max_memory = 4 << 20});
    stack_attack(s, engine_idx,
                 "local a = ('x'):rep(1000000) local s = a .. a\n"
                 "return #ferry.call('echo', s)",
                 20000, "limit", "memory limit of 4194304 bytes exceeded (the arguments", NULL);
    stack_attack(s, engine_idx, "return #ferry.call('echo', ('x'):rep(1000000))", 20000, NULL, NULL,
                 NULL);
    /* Garbage does not count: it is collected before a call is refused. */
    stack_attack(s, engine_idx,
                 "local g for i = 1, 40 do g = ('y'):rep(100000) .. i end\n"
                 "return #ferry.call('echo', ('x'):rep(1500000))",
                 20000, NULL, NULL, NULL);
    stack_attack(s, engine_idx,
                 "local g for i = 1, 40 do g = ('y'):rep(100000) .. i end\n"
                 "local x = ('x'):rep(700000)\n"
                 "return #ferry.all({'echo', x}, {'echo', x})[2][1]",
                 20000, NULL, NULL, NULL);
    ferry_client_set_limits(s->client, NULL);
    stack_passed(s);
}

/* Calls of "sleep" in flight at the broker's workers, or -1. */
static long long sleeps_in_flight(ferry_stack *s)
{
    Ferry__Envelope *env = NULL;
    if (ferry_client_stats(s->client, 2000, &env) != FERRY_OK)
        return -1;
    long long n = 0;
    for (size_t i = 0; i < env->stats->n_functions; i++)
        if (strcmp(env->stats->functions[i]->name, "sleep") == 0)
            n = (long long)env->stats->functions[i]->in_flight;
    ferry_envelope_free(env);
    return n;
}

/* Waits (within 10 s) until at least n sleeps are in flight at the worker. */
static void wait_sleeps(ferry_stack *s, long long n)
{
    int64_t until = ferry_now_ms() + 10000;
    while (sleeps_in_flight(s) < n) {
        if (ferry_now_ms() > until)
            fail_msg("fewer than %lld sleeps in flight after 10 s", n);
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    }
}

/* --inflight-bytes bounds the calls in flight of all scripts together:
 * past it a call is overloaded at once, and what is answered or forgotten
 * makes room again. */
static void test_engine_bound_of_bytes_in_flight(void **state)
{
    ferry_stack *s = *state;
    char src[256];
    /* One script alone: 6 x 8 MB fit its 64 MiB, not the engine's 32 MiB. */
    stack_attack(s, engine_idx, all_of(src, sizeof src, 6, 10, 8000), 20000, "overloaded",
                 "left for calls in flight (--inflight-bytes)", NULL);
    /* Caught, the script goes on. */
    ferry_result r;
    stack_attack(s, engine_idx,
                 "local s = ('x'):rep(8000000) local c = {}\n"
                 "for i = 1, 6 do c[i] = {'sleep', 10, s} end\n"
                 "local ok, e = pcall(ferry.all, table.unpack(c))\n"
                 "return e.code, ferry.call('echo', 'after')",
                 20000, NULL, NULL, &r);
    assert_memory_equal(r.result->values[0]->string.data, "overloaded", 10);
    ferry_result_fini(&r);

    /* Several scripts: three hold 2 x 4.5 MB each (27 MB) for a while... */
    char err[256];
    ferry_client *other = ferry_client_new(s->clients, err, sizeof err);
    assert_non_null(other);
    uint64_t holders[3];
    all_of(src, sizeof src, 2, 8000, 4500);
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            ferry_client_submit(other, src, strlen(src), "holder.lua", NULL, 0, 20000, &holders[i]),
            FERRY_OK);
    wait_sleeps(s, 6);
    /* ...so 3 x 4 MB more do not fit, while the innocent's small calls do. */
    stack_attack(s, engine_idx, all_of(src, sizeof src, 3, 10, 4000), 20000, "overloaded",
                 "(--inflight-bytes)", NULL);
    stack_attack(s, engine_idx, "return #ferry.call('echo', ('x'):rep(7000000))", 20000,
                 "overloaded", "(--inflight-bytes)", NULL);
    /* The holders were not disturbed, and their answers free the room. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ferry_client_wait(other, 30000, &r), FERRY_OK);
        if (!r.result->ok)
            fail_msg("a holder failed: %s: %s", r.result->error->code, r.result->error->message);
        ferry_result_fini(&r);
    }
    stack_attack(s, engine_idx, all_of(src, sizeof src, 3, 10, 8000), 20000, NULL, NULL, NULL);

    /* Calls forgotten (their script timed out) free their room too. */
    all_of(src, sizeof src, 3, 60000, 8000);
    assert_int_equal(ferry_client_run(other, src, strlen(src), "forgotten.lua", NULL, 0, 1000, &r),
                     FERRY_OK);
    assert_false(r.result->ok);
    assert_string_equal(r.result->error->code, "timeout");
    ferry_result_fini(&r);
    stack_attack(s, engine_idx, all_of(src, sizeof src, 3, 10, 8000), 20000, NULL, NULL, NULL);
    ferry_client_destroy(&other);
    stack_passed(s);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_SMALL(name) cmocka_unit_test_setup_teardown(name, setup_small_msg, teardown)
#define T_INFLIGHT(name) cmocka_unit_test_setup_teardown(name, setup_inflight, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_long_function_name),         T(test_huge_error_message),
        T_SMALL(test_command_over_max_msg), T_SMALL(test_result_over_max_msg),
        T(test_all_cannot_multiply_memory), T_INFLIGHT(test_engine_bound_of_bytes_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

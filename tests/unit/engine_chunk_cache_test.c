/*
 * engine_chunk_cache_test: a chunk loaded from the cache (chunk_cache.h)
 * behaves as one compiled from its text, and shares nothing with the
 * scripts that ran it before: its globals (_ENV), its upvalues and
 * closures are new each time, on a reused state as on a fresh one; its
 * compilation is still charged to the script's limits; its chunk name is
 * part of the key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "chunk_cache.h"
#include "ferry_value.h"
#include "script.h"
#include "state_pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ferry_err refuse_call(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                             size_t nargs, uint32_t tag, char *why, size_t whylen)
{
    (void)ctx;
    (void)s;
    (void)function;
    (void)tag;
    ferry_values_free(args, nargs);
    snprintf(why, whylen, "no calls here");
    return FERRY_ECALL;
}

static const engine_script_host host = {.call = refuse_call};
static const engine_script_limits limits = {
    .timeout_ms = 10000, .max_output = 1 << 20, .max_memory = 16 << 20};

static engine_script *run_named(const char *src, const char *name, const engine_script_limits *lim)
{
    engine_script *s = engine_script_new(&host, lim, 1);
    assert_non_null(s);
    assert_int_equal(engine_script_start(s, src, strlen(src), name, NULL, 0), ENGINE_SCRIPT_DONE);
    return s;
}

static engine_script *run(const char *src)
{
    return run_named(src, "cache.lua", &limits);
}

/* The script's one string result, or its error. */
static void want(engine_script *s, const char *text)
{
    if (!s->ok)
        fail_msg("script failed: %s: %s (want %s)", s->err_code, s->err_message, text);
    assert_int_equal(s->n_values, 1);
    const Ferry__Value *v = s->values[0];
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    if (v->string.len != strlen(text) || memcmp(v->string.data, text, v->string.len) != 0)
        fail_msg("got \"%.*s\", want \"%s\"", (int)v->string.len, (const char *)v->string.data,
                 text);
}

static void run_want(const char *src, const char *text)
{
    engine_script *s = run(src);
    want(s, text);
    engine_script_destroy(&s);
}

/* Counts its own globals, upvalues and closures: the same answer every time. */
static const char counter[] =
    "COUNT = (COUNT or 0) + 1\n"
    "local n = 0\n"
    "local function bump() n = n + 1 return n end\n"
    "bump()\n"
    "local seen = LAST_FN ~= nil and (LAST_FN == bump)\n"
    "LAST_FN = bump\n"
    "string.cached_mark = (string.cached_mark or 0) + 1\n"
    "return ('%d %d %s %d'):format(COUNT, bump(), tostring(seen), string.cached_mark)";

static void test_cached_chunk_starts_afresh(void **state)
{
    (void)state;
    engine_chunk_cache_clear();
    unsigned long hits = engine_chunk_cache_hits();
    for (int i = 0; i < 5; i++) {
        /* A warm state (its last script's), and now and then a fresh one. */
        if (i == 3)
            engine_pool_clear();
        run_want(counter, "1 2 false 1");
    }
    /* The first two compiles, then three loads from the cache. */
    assert_int_equal(engine_chunk_cache_hits() - hits, 3);
    engine_pool_clear();
}

/* A global set by another script is not seen by the cached chunk, and what
 * the cached chunk sets is not seen by the next script. */
static void test_globals_between_scripts(void **state)
{
    (void)state;
    engine_chunk_cache_clear();
    const char *reader = "return tostring(SECRET) .. ' ' .. tostring(rawget(_ENV, 'SECRET'))";
    run_want(reader, "nil nil");
    run_want(reader, "nil nil"); /* now kept */
    unsigned long hits = engine_chunk_cache_hits();
    run_want("SECRET = 'x'; _ENV.OTHER = 1; return 'set'", "set");
    run_want(reader, "nil nil");
    assert_int_equal(engine_chunk_cache_hits() - hits, 1);
    const char *writer = "SECRET = 'from cache'; return 'w'";
    run_want(writer, "w");
    run_want(writer, "w");
    run_want(writer, "w"); /* from the cache */
    run_want("return tostring(SECRET)", "nil");
    engine_pool_clear();
}

/* collectgarbage("count") of a cached chunk is not above a compiled one's:
 * the cache is not in the state's heap. */
static void test_cache_not_counted(void **state)
{
    (void)state;
    engine_chunk_cache_clear();
    /* A chunk with a 2 KB constant, so that a copy in the heap would show. */
    char src[2200];
    memcpy(src, "local pad = [[", 14);
    memset(src + 14, 'p', 2048);
    strcpy(src + 14 + 2048, "]] return tostring(collectgarbage('count'))");
    double kb[3];
    for (int i = 0; i < 3; i++) {
        engine_script *s = run(src);
        assert_true(s->ok);
        kb[i] = strtod((const char *)s->values[0]->string.data, NULL);
        engine_script_destroy(&s);
    }
    /* kb[0] and kb[1] compiled the text, kb[2] loaded the dump. */
    if (kb[2] > kb[1] + 1.0)
        fail_msg("heap with the cached chunk %.2f KB, compiled %.2f KB", kb[2], kb[1]);
    engine_pool_clear();
}

/* The chunk name is part of the key: error positions name the right chunk. */
static void test_names_apart(void **state)
{
    (void)state;
    engine_chunk_cache_clear();
    const char *src = "error('boom')";
    for (int i = 0; i < 3; i++) {
        const char *name = i % 2 ? "b.lua" : "a.lua";
        for (int k = 0; k < 2; k++) {
            engine_script *s = run_named(src, name, &limits);
            assert_false(s->ok);
            char expect[64];
            snprintf(expect, sizeof expect, "%s:1: boom", name);
            assert_string_equal(s->err_message, expect);
            engine_script_destroy(&s);
        }
    }
    engine_pool_clear();
}

/* Loading from the cache charges the source's bytes as compiling does: a
 * limit that compiling breaks, a cached load breaks too. */
static void test_cached_load_is_charged(void **state)
{
    (void)state;
    engine_chunk_cache_clear();
    size_t pad = 200 * 1024;
    char *src = malloc(pad + 64);
    assert_non_null(src);
    memcpy(src, "--", 2);
    memset(src + 2, 'x', pad);
    strcpy(src + 2 + pad, "\nreturn 'ran'");
    /* Kept first under roomy limits (two compiles). */
    run_want(src, "ran");
    run_want(src, "ran");
    unsigned long hits = engine_chunk_cache_hits();
    run_want(src, "ran");
    assert_int_equal(engine_chunk_cache_hits() - hits, 1);
    engine_script_limits few = limits;
    few.max_instructions = 100 * 1024;
    engine_script *s = run_named(src, "cache.lua", &few);
    assert_false(s->ok);
    assert_string_equal(s->err_code, "limit");
    engine_script_destroy(&s);
    free(src);
    engine_pool_clear();
}

/* A syntax error is never kept, and a text that is a binary chunk is still
 * refused even once the cache holds dumps. */
static void test_errors_not_kept(void **state)
{
    (void)state;
    engine_chunk_cache_clear();
    unsigned long hits = engine_chunk_cache_hits();
    for (int i = 0; i < 3; i++) {
        engine_script *s = run("return +");
        assert_false(s->ok);
        assert_string_equal(s->err_code, "syntax_error");
        engine_script_destroy(&s);
    }
    assert_int_equal(engine_chunk_cache_hits(), hits);
    engine_script *s = run("\x1bLua");
    assert_false(s->ok);
    engine_script_destroy(&s);
    engine_chunk_cache_clear();
    engine_pool_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cached_chunk_starts_afresh),
        cmocka_unit_test(test_globals_between_scripts),
        cmocka_unit_test(test_cache_not_counted),
        cmocka_unit_test(test_names_apart),
        cmocka_unit_test(test_cached_load_is_charged),
        cmocka_unit_test(test_errors_not_kept),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    engine_chunk_cache_clear();
    engine_pool_clear();
    return rc;
}

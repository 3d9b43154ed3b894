/*
 * engine_coroutines_test: ferry.call and ferry.all inside the script's own
 * coroutines (engine-host/coroutines.c), with a fake host that answers calls
 * in the order they were sent: echo returns its arguments, inc its argument
 * plus one, fail an error. Generators, nested coroutines, status, close,
 * errors, metamethods and limits, each mixed with async calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_value.h"
#include "script.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CALLS 256

typedef struct {
    char function[32];
    Ferry__Value **args; /* owned */
    size_t nargs;
    uint32_t tag;
} fake_call;

typedef struct {
    fake_call calls[MAX_CALLS]; /* pending, oldest first */
    int n;
    int sent;        /* calls accepted in all */
    int max_pending; /* most calls pending at once */
    engine_script_host host;
    engine_script *s;
} fixture;

static ferry_err fake_send(void *ctx, engine_script *s, const char *function, Ferry__Value **args,
                           size_t nargs, uint32_t tag, char *why, size_t whylen)
{
    (void)s;
    fixture *fx = ctx;
    if (fx->n == MAX_CALLS) {
        ferry_values_free(args, nargs);
        snprintf(why, whylen, "too many");
        return FERRY_EOVERLOADED;
    }
    fake_call *c = &fx->calls[fx->n++];
    snprintf(c->function, sizeof c->function, "%s", function);
    c->args = args;
    c->nargs = nargs;
    c->tag = tag;
    fx->sent++;
    if (fx->n > fx->max_pending)
        fx->max_pending = fx->n;
    return FERRY_OK;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    fx->host = (engine_script_host){.call = fake_send, .ctx = fx};
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    engine_script_destroy(&fx->s);
    for (int i = 0; i < fx->n; i++)
        ferry_values_free(fx->calls[i].args, fx->calls[i].nargs);
    free(fx);
    return 0;
}

static const engine_script_limits limits = {
    .timeout_ms = 10000, .max_output = 1 << 20, .max_memory = 16 << 20};

/* Answers the oldest pending call. */
static engine_script_state answer_one(fixture *fx)
{
    assert_true(fx->n > 0);
    fake_call c = fx->calls[0];
    memmove(&fx->calls[0], &fx->calls[1], (size_t)(fx->n - 1) * sizeof fx->calls[0]);
    fx->n--;
    Ferry__Reply reply = FERRY__REPLY__INIT;
    Ferry__Error error = FERRY__ERROR__INIT;
    Ferry__Value *one = NULL;
    char msg[64];
    if (strcmp(c.function, "inc") == 0) {
        assert_true(c.nargs == 1 && c.args[0]->kind_case == FERRY__VALUE__KIND_INTEGER);
        one = ferry_value_int(c.args[0]->integer + 1);
        reply.values = &one;
        reply.n_values = 1;
    } else if (strcmp(c.function, "fail") == 0) {
        snprintf(msg, sizeof msg, "failed on purpose");
        error.code = "call_error";
        error.message = msg;
        reply.error = &error;
    } else {
        reply.values = c.args;
        reply.n_values = c.nargs;
    }
    engine_script_answer a = {.reply = &reply, .tag = c.tag};
    engine_script_state st = engine_script_resume(fx->s, &a);
    ferry_value_free(one);
    ferry_values_free(c.args, c.nargs);
    return st;
}

/* Starts src and answers every call until the script ends. */
static void run_with(fixture *fx, const engine_script_limits *lim, const char *src)
{
    fx->s = engine_script_new(&fx->host, lim, 1);
    assert_non_null(fx->s);
    engine_script_state st = engine_script_start(fx->s, src, strlen(src), "co.lua", NULL, 0);
    while (st == ENGINE_SCRIPT_WAITING) {
        assert_int_equal(fx->s->pending, fx->n);
        st = answer_one(fx);
    }
    assert_int_equal(fx->n, 0);
}

static void run(fixture *fx, const char *src)
{
    run_with(fx, &limits, src);
}

/* The script's single return value must be the string want. */
static void expect(fixture *fx, const char *want)
{
    engine_script *s = fx->s;
    assert_true(s->done);
    if (!s->ok)
        fail_msg("script failed: %s: %s", s->err_code, s->err_message);
    assert_int_equal(s->n_values, 1);
    const Ferry__Value *v = s->values[0];
    assert_int_equal(v->kind_case, FERRY__VALUE__KIND_STRING);
    if (v->string.len != strlen(want) || memcmp(v->string.data, want, v->string.len) != 0)
        fail_msg("got \"%.*s\"\nwant \"%s\"", (int)v->string.len, (const char *)v->string.data,
                 want);
    engine_script_destroy(&fx->s);
}

static void expect_error(fixture *fx, const char *code, const char *part)
{
    engine_script *s = fx->s;
    assert_true(s->done);
    if (s->ok)
        fail_msg("script succeeded, want %s", code);
    if (strcmp(s->err_code, code) != 0 || !strstr(s->err_message, part))
        fail_msg("got %s \"%s\", want %s \"...%s...\"", s->err_code, s->err_message, code, part);
    engine_script_destroy(&fx->s);
}

/* A helper every script gets: joins its arguments with commas. */
#define J                                                                                          \
    "local function j(...) local t = table.pack(...) for i = 1, t.n do "                           \
    "t[i] = tostring(t[i]) end return table.concat(t, ',') end\n"

static void test_generator(void **state)
{
    fixture *fx = *state;
    run(fx, J "local gen = coroutine.wrap(function(n)\n"
              "  for i = 1, n do coroutine.yield(ferry.call('inc', i * 10)) end\n"
              "  return 'end'\n"
              "end)\n"
              "return j(gen(3), gen(), gen(), gen())");
    expect(fx, "11,21,31,end");
    assert_int_equal(fx->sent, 3);

    /* As the iterator of a for loop, yields and calls interleaved. */
    run(fx, J "local out = {}\n"
              "for i, v in coroutine.wrap(function()\n"
              "  for i = 1, 3 do\n"
              "    local a = ferry.call('echo', 'v' .. i)\n"
              "    coroutine.yield(i, a .. ferry.call('echo', '!'))\n"
              "  end\n"
              "end) do out[#out + 1] = i .. '=' .. v end\n"
              "return table.concat(out, ' ')");
    expect(fx, "1=v1! 2=v2! 3=v3!");
}

static void test_resume_and_status(void **state)
{
    fixture *fx = *state;
    run(fx, J "local co\n"
              "co = coroutine.create(function(a, b)\n"
              "  local x = ferry.call('inc', a + b)\n"
              "  local st = coroutine.status(co)\n"
              "  local y, z = coroutine.yield(x, st)\n"
              "  return ferry.call('echo', y * z, 'done')\n"
              "end)\n"
              "local r1 = j(coroutine.resume(co, 1, 2))\n"
              "local s1 = coroutine.status(co)\n"
              "local r2 = j(coroutine.resume(co, 6, 7))\n"
              "local r3 = j(coroutine.resume(co))\n"
              "return j(r1, s1, r2, coroutine.status(co), r3)");
    expect(fx, "true,4,running,suspended,true,42,done,dead,false,cannot resume dead coroutine");
}

static void test_nested(void **state)
{
    fixture *fx = *state;
    run(fx, J "local log = {}\n"
              "local inner = coroutine.wrap(function()\n"
              "  log[#log + 1] = ferry.call('echo', 'i1')\n"
              "  coroutine.yield('y1')\n"
              "  log[#log + 1] = ferry.call('echo', 'i2')\n"
              "  return 'inner done'\n"
              "end)\n"
              "local outer = coroutine.create(function()\n"
              "  local a = inner()\n"
              "  log[#log + 1] = ferry.call('echo', 'o1')\n"
              "  local me = coroutine.running()\n"
              "  local b = coroutine.wrap(function()\n"
              "    log[#log + 1] = coroutine.status(me)\n"
              "    return inner()\n"
              "  end)()\n"
              "  coroutine.yield(a .. '+' .. b)\n"
              "  return ferry.call('inc', 99)\n"
              "end)\n"
              "local _, first = coroutine.resume(outer)\n"
              "local _, second = coroutine.resume(outer)\n"
              "return j(first, second, table.concat(log, ' '))");
    expect(fx, "y1+inner done,100,i1 o1 normal i2");
}

static void test_errors(void **state)
{
    fixture *fx = *state;
    /* A string error after a call: resume returns it, wrap raises it with
     * the caller's position; an error object passes untouched. */
    run(fx, J "local co = coroutine.create(function() ferry.call('echo', 1) error('boom') end)\n"
              "local ok, e = coroutine.resume(co)\n"
              "local ok2, e2 = pcall(function() return coroutine.wrap(function()\n"
              "  ferry.call('echo', 1) error('bang', 0) end)() end)\n"
              "local ok3, e3 = pcall(coroutine.wrap(function() ferry.call('fail') end))\n"
              "return j(ok, e, coroutine.status(co), ok2, e2, ok3, e3.code, e3.message)");
    expect(fx, "false,co.lua:2: boom,dead,false,co.lua:4: bang,false,call_error,"
               "failed on purpose");

    /* A call error caught inside the coroutine, then more calls. */
    run(fx, J "return coroutine.wrap(function()\n"
              "  local ok, e = pcall(ferry.call, 'fail')\n"
              "  local ok2, e2 = xpcall(ferry.call, function(m) return 'h:' .. m.code end,\n"
              "    'fail')\n"
              "  return j(ok, e.code, ok2, e2, ferry.call('inc', 1))\n"
              "end)()");
    expect(fx, "false,call_error,false,h:call_error,2");

    /* Uncaught inside a wrap: the script fails with the call's code. */
    run(fx, "coroutine.wrap(function() ferry.call('fail') end)()");
    expect_error(fx, "call_error", "failed on purpose");
}

static void test_close(void **state)
{
    fixture *fx = *state;
    run(fx, J "local log = {}\n"
              "local co = coroutine.create(function()\n"
              "  local x <close> = setmetatable({}, {__close = function()\n"
              "    log[#log + 1] = 'closed' end})\n"
              "  log[#log + 1] = ferry.call('echo', 'called')\n"
              "  coroutine.yield()\n"
              "  log[#log + 1] = 'never'\n"
              "end)\n"
              "coroutine.resume(co)\n"
              "local ok = coroutine.close(co)\n"
              "local bad = coroutine.create(function()\n"
              "  local x <close> = setmetatable({}, {__close = function() error('in close', 0) "
              "end})\n"
              "  coroutine.yield()\n"
              "end)\n"
              "coroutine.resume(bad)\n"
              "local ok2, e2 = coroutine.close(bad)\n"
              "local call = coroutine.create(function()\n"
              "  local x <close> = setmetatable({}, {__close = function() ferry.call('echo') "
              "end})\n"
              "  coroutine.yield()\n"
              "end)\n"
              "coroutine.resume(call)\n"
              "local ok3, e3 = coroutine.close(call)\n"
              "local ok4, e4 = pcall(coroutine.close, coroutine.running())\n"
              "return j(table.concat(log, ' '), ok, coroutine.status(co), ok2, e2, ok3, e3.code,\n"
              "  e3.message:find('__close handler') ~= nil, ok4, e4)");
    expect(fx, "called closed,true,dead,false,in close,false,bad_argument,true,false,"
               "cannot close a running coroutine");
}

static void test_main_thread_view(void **state)
{
    fixture *fx = *state;
    run(fx, J "local co, main = coroutine.running()\n"
              "local ok, e = pcall(coroutine.yield, 1)\n"
              "local inside = coroutine.wrap(function()\n"
              "  local c, m = coroutine.running()\n"
              "  return j(coroutine.isyieldable(), m, c ~= co, coroutine.status(co))\n"
              "end)()\n"
              "return j(main, coroutine.isyieldable(), ok, e, coroutine.status(co), inside,\n"
              "  coroutine.isyieldable(co))");
    expect(fx, "true,false,false,attempt to yield from outside a coroutine,running,"
               "true,false,true,normal,false");
    run(fx, "coroutine.yield(1)");
    expect_error(fx, "script_error", "attempt to yield from outside a coroutine");
}

static void test_all_in_coroutines(void **state)
{
    fixture *fx = *state;
    run(fx, J "local r = coroutine.wrap(function()\n"
              "  return coroutine.wrap(function()\n"
              "    return ferry.all({'inc', 1}, {'echo', 'a', 'b'}, {'inc', 3})\n"
              "  end)()\n"
              "end)()\n"
              "return j(r[1][1], r[2][1], r[2][2], r[2].n, r[3][1])");
    expect(fx, "2,a,b,2,4");
    assert_int_equal(fx->max_pending, 3);

    run(fx, J "local co = coroutine.create(function()\n"
              "  local r = ferry.all({'echo', 1}, {'fail'}, {'echo', 3})\n"
              "end)\n"
              "local ok, e = coroutine.resume(co)\n"
              "return j(ok, e.code, e.index, ferry.call('inc', 5))");
    expect(fx, "false,call_error,2,6");
}

static void test_metamethods(void **state)
{
    fixture *fx = *state;
    run(fx, J "local mt = {\n"
              "  __index = function(_, k) return ferry.call('echo', k .. '!') end,\n"
              "  __lt = function(a, b) return ferry.call('echo', a.v < b.v) end,\n"
              "  __concat = function(a, b) return ferry.call('echo', 'cat') end,\n"
              "}\n"
              "local function obj(v) return setmetatable({v = v}, mt) end\n"
              "return coroutine.wrap(function()\n"
              "  local a, b = obj(1), obj(2)\n"
              "  return j(a.key, a < b, b < a, a .. b)\n"
              "end)()");
    expect(fx, "key!,true,false,cat");
    assert_int_equal(fx->sent, 4);
}

static void test_cannot_yield(void **state)
{
    fixture *fx = *state;
    static const char *const where[] = {
        /* inside the coroutine, a C function in the way */
        "coroutine.wrap(function() table.sort({3, 2, 1}, function(a, b)\n"
        "  ferry.call('echo') return a < b end) end)()",
        "coroutine.wrap(function() ('abc'):gsub('%w', function(c) ferry.call('echo') end) end)()",
        /* the coroutine itself resumed where nothing can yield */
        "table.sort({3, 2, 1}, function(a, b)\n"
        "  coroutine.wrap(function() ferry.call('echo') end)() return a < b end)",
        "('abc'):gsub('%w', function(c)\n"
        "  return coroutine.wrap(function() return ferry.all({'echo', c}) end)() end)",
    };
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        run(fx, where[i]);
        expect_error(fx, "bad_argument", "cannot yield here");
    }
    run(fx, "table.sort({3, 2, 1}, function(a, b)\n"
            "  coroutine.wrap(function() ferry.call('echo') end)() return a < b end)");
    expect_error(fx, "bad_argument", "was resumed where Lua cannot suspend");
    assert_int_equal(fx->sent, 0);
}

static void test_deep_nesting(void **state)
{
    fixture *fx = *state;
    run(fx, J "local function nest(n)\n"
              "  if n == 0 then return ferry.call('inc', 0) end\n"
              "  return coroutine.wrap(function() return nest(n - 1) + 1 end)()\n"
              "end\n"
              "return j(nest(100), nest(10))");
    expect(fx, "101,11");
    /* Past Lua's C stack limit: a clean error, not a crash. */
    run(fx, "local function nest(n)\n"
            "  if n == 0 then return ferry.call('inc', 0) end\n"
            "  return coroutine.wrap(function() return nest(n - 1) + 1 end)()\n"
            "end\n"
            "return nest(1000)");
    expect_error(fx, "script_error", "C stack overflow");
}

static void test_limits_inside_coroutines(void **state)
{
    fixture *fx = *state;
    engine_script_limits lim = limits;
    lim.timeout_ms = 50;
    static const char *const loops[] = {
        "coroutine.wrap(function() ferry.call('echo') while true do end end)()",
        "while true do pcall(coroutine.wrap(function() while true do end end)) end",
        "while true do coroutine.resume(coroutine.create(function() ferry.call('echo')\n"
        "  while true do end end)) end",
        "local co = coroutine.wrap(function() while true do pcall(coroutine.yield) end end)\n"
        "while true do pcall(co) end",
        "while true do coroutine.close(coroutine.create(function() end)) end",
    };
    for (size_t i = 0; i < sizeof loops / sizeof loops[0]; i++) {
        run_with(fx, &lim, loops[i]);
        expect_error(fx, "timeout", "script deadline of 50 ms passed");
    }

    lim = limits;
    lim.max_memory = 1 << 20;
    run_with(fx, &lim,
             "local ok, e = coroutine.resume(coroutine.create(function()\n"
             "  local t = {} while true do t[#t + 1] = ('x'):rep(100) .. #t end\n"
             "end)) return 'survived'");
    expect_error(fx, "limit", "memory limit of 1048576 bytes exceeded");

    lim = limits;
    lim.max_output = 100;
    run_with(fx, &lim,
             "for i = 1, 100 do pcall(coroutine.wrap(function()\n"
             "  print(('x'):rep(10)) end)) end return 'survived'");
    expect_error(fx, "limit", "output limit of 100 bytes exceeded");

    lim = limits;
    lim.max_instructions = 100000;
    run_with(fx, &lim, "coroutine.wrap(function() while true do end end)()");
    expect_error(fx, "limit", "instruction limit of 100000 exceeded");
}

static void test_fail_while_nested(void **state)
{
    fixture *fx = *state;
    fx->s = engine_script_new(&fx->host, &limits, 1);
    const char *src = "return coroutine.wrap(function() return coroutine.wrap(function()\n"
                      "  local x <close> = setmetatable({}, {__close = function() end})\n"
                      "  return ferry.call('echo', 1) end)() end)()";
    assert_int_equal(engine_script_start(fx->s, src, strlen(src), NULL, NULL, 0),
                     ENGINE_SCRIPT_WAITING);
    engine_script_fail(fx->s, FERRY_ETIMEOUT, "script deadline of 5 ms passed");
    expect_error(fx, "timeout", "script deadline of 5 ms passed");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_generator),
        T(test_resume_and_status),
        T(test_nested),
        T(test_errors),
        T(test_close),
        T(test_main_thread_view),
        T(test_all_in_coroutines),
        T(test_metamethods),
        T(test_cannot_yield),
        T(test_deep_nesting),
        T(test_limits_inside_coroutines),
        T(test_fail_while_nested),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

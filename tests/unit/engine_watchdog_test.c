/*
 * engine_watchdog_test: the watchdog (engine-host/watchdog.c) against a C
 * function that holds the thread past the script's deadline, where no hook
 * can run. The first tick makes the script stop with its deadline error as
 * soon as the C function returns; the second, in a child process, ends the
 * process with status 70 and one watchdog_exit log line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ferry_clock.h"
#include "ferry_lib.h"
#include "script.h"
#include "watchdog.h"

#include <lauxlib.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Stands for any C function that runs long: holds the thread for ms. */
static int spin(lua_State *L)
{
    int64_t until = ferry_now_ms() + luaL_checkinteger(L, 1);
    while (ferry_now_ms() < until) {
    }
    return 0;
}

/* The wall clock in ms, for Lua loops that run a while. */
static int now_ms(lua_State *L)
{
    lua_pushinteger(L, ferry_now_ms());
    return 1;
}

typedef struct {
    engine_script s; /* only what the watchdog and the hook look at */
    lua_State *L;
    engine_script_host host;
    int ticks; /* calls of the host's tick */
} fake_script;

static void fake_tick(void *ctx)
{
    fake_script *f = ctx;
    f->ticks++;
}

static int open_lib(lua_State *L)
{
    engine_lib_open(L); /* the error objects the limit raises */
    return 0;
}

static void fake_new(fake_script *f, int64_t timeout_ms)
{
    memset(f, 0, sizeof *f);
    f->s.script_id = 5;
    f->s.limits.timeout_ms = timeout_ms;
    f->s.deadline_ms = ferry_now_ms() + timeout_ms;
    f->host.tick = fake_tick;
    f->host.ctx = f;
    f->s.host = &f->host;
    f->L = luaL_newstate();
    assert_non_null(f->L);
    *(engine_script **)lua_getextraspace(f->L) = &f->s;
    lua_register(f->L, "spin", spin);
    lua_register(f->L, "now", now_ms);
    lua_pushcfunction(f->L, open_lib);
    assert_int_equal(lua_pcall(f->L, 0, 0, 0), LUA_OK);
}

/* Runs src on f as one watched run; returns the lua status. */
static int fake_run(fake_script *f, const char *src)
{
    f->s.running = f->L;
    engine_watchdog_enter(&f->s);
    int st = luaL_loadstring(f->L, src);
    if (st == LUA_OK)
        st = lua_pcall(f->L, 0, 1, 0);
    engine_watchdog_leave(&f->s);
    f->s.running = NULL;
    return st;
}

static const char stuck[] =
    "spin(300) local x = 0 for i = 1, 10 do x = x + i end return 'finished'";

static void test_first_tick(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(engine_watchdog_init(0, err, sizeof err), FERRY_OK);
    fake_script f;

    /* Before its deadline nothing happens. */
    fake_new(&f, 10000);
    assert_int_equal(fake_run(&f, stuck), LUA_OK);
    assert_string_equal(lua_tostring(f.L, -1), "finished");
    assert_false(f.s.interrupted);
    lua_close(f.L);

    /* Past it, the script stops at the first instruction after spin. */
    fake_new(&f, 50);
    int64_t start = ferry_now_ms();
    assert_int_equal(fake_run(&f, stuck), LUA_ERRRUN);
    int64_t took = ferry_now_ms() - start;
    const char *code, *message;
    assert_true(engine_lib_is_error(f.L, -1, &code, &message));
    assert_string_equal(code, "timeout");
    assert_string_equal(message, "script deadline of 50 ms passed");
    assert_true(f.s.interrupted);
    assert_int_equal(f.s.tripped, ENGINE_LIMIT_DEADLINE);
    assert_true(took >= 290 && took < 2000);
    lua_close(f.L);

    /* Also when the C function returns into another C function (pcall). */
    fake_new(&f, 50);
    assert_int_equal(fake_run(&f, "return pcall(spin, 300)"), LUA_ERRRUN);
    assert_true(engine_lib_is_error(f.L, -1, &code, &message));
    assert_string_equal(code, "timeout");
    lua_close(f.L);
    engine_watchdog_fini();
}

/* Without an instruction limit there is no count hook (fake_new sets none):
 * the timer's periodic tick checks the deadline and calls the host's tick. */
static void test_ticks_without_count_hook(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(engine_watchdog_init(0, err, sizeof err), FERRY_OK);
    fake_script f;
    fake_new(&f, 10000);
    assert_true(engine_watchdog_ticks(&f.s));
    assert_int_equal(fake_run(&f, "local t = now() while now() - t < 350 do end return 'done'"),
                     LUA_OK);
    assert_string_equal(lua_tostring(f.L, -1), "done");
    if (f.ticks < 2 || f.ticks > 5)
        fail_msg("%d ticks in 350 ms", f.ticks);
    assert_int_equal(lua_gethookmask(f.L), 0); /* each tick's hook went away */
    lua_close(f.L);

    /* A loop of pure Lua stops at its deadline. */
    fake_new(&f, 200);
    int64_t start = ferry_now_ms();
    assert_int_equal(fake_run(&f, "while true do end"), LUA_ERRRUN);
    int64_t took = ferry_now_ms() - start;
    const char *code, *message;
    assert_true(engine_lib_is_error(f.L, -1, &code, &message));
    assert_string_equal(code, "timeout");
    assert_true(took >= 200 && took < 2000);
    lua_close(f.L);

    /* With a limit, the count hook does it and the timer only watches the deadline. */
    fake_new(&f, 10000);
    f.s.limits.max_instructions = 1000000;
    assert_false(engine_watchdog_ticks(&f.s));
    assert_int_equal(fake_run(&f, "local t = now() while now() - t < 250 do end return 'done'"),
                     LUA_OK);
    assert_int_equal(f.ticks, 0);
    lua_close(f.L);
    engine_watchdog_fini();
    fake_new(&f, 10000);
    assert_false(engine_watchdog_ticks(&f.s)); /* no watchdog, nobody to tick */
    lua_close(f.L);
}

static void test_second_tick_exits(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        char err[128];
        engine_watchdog_fini(); /* a timer of the parent's is not the child's */
        if (engine_watchdog_init(100, err, sizeof err) != FERRY_OK)
            _exit(1);
        fake_script f;
        fake_new(&f, 50);
        fake_run(&f, "spin(10000)");
        _exit(2); /* not reached: the watchdog ends the process first */
    }
    close(fds[1]);
    int64_t start = ferry_now_ms();
    char out[2048];
    size_t len = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    while (len < sizeof out - 1 && poll(&pfd, 1, 10000) > 0) {
        ssize_t n = read(fds[0], out + len, sizeof out - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    out[len] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    int64_t took = ferry_now_ms() - start;
    printf("# watchdog ended the child after %lld ms: %s", (long long)took, out);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), ENGINE_WATCHDOG_EXIT_STATUS);
    assert_non_null(strstr(out, "Z ERROR engine watchdog_exit script_id=5 past_deadline_ms="));
    assert_true(out[4] == '-' && out[10] == 'T' && out[len - 1] == '\n');
    assert_true(took >= 100 && took < 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_tick),
        cmocka_unit_test(test_ticks_without_count_hook),
        cmocka_unit_test(test_second_tick_exits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * worker_api_test: the worker C API (ferry/worker.h) without sockets.
 *
 * An offline worker (worker_new_offline) takes Command frames through
 * worker_dispatch_frame and hands everything it sends to a capture; tests
 * that wait (timers, deadlines, fds) run the worker's real loop until the
 * capture has seen what it waits for, under a guard timer.
 */
#include "worker_fixture.h"
#include "ferry_clock.h"
#include "ferry_utf8.h"

#include "ferry_wire.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define GUARD_MS 5000

/* ---- harness -------------------------------------------------------------------- */

static ferry_err sink(ferry_worker *w, const Ferry__Envelope *env, size_t size, void *arg)
{
    assert_true(size == 0 || size == ferry__envelope__get_packed_size(env));
    capture *c = arg;
    capture_push(c, env);
    if (env->body_case == FERRY__ENVELOPE__BODY_REPLY && ++c->replies == c->stop_at)
        ferry_worker_stop(w);
    return FERRY_OK;
}

static const Ferry__Reply *reply_at(capture *c, size_t i)
{
    assert_true(i < c->n);
    assert_int_equal(c->msgs[i]->body_case, FERRY__ENVELOPE__BODY_REPLY);
    return c->msgs[i]->reply;
}

static ferry_worker *offline(capture *c, unsigned concurrency)
{
    ferry_worker_config cfg = {.id = "w-test", .concurrency = concurrency};
    ferry_worker *w = worker_new_offline(&cfg, sink, c);
    assert_non_null(w);
    return w;
}

static void assert_error(const Ferry__Reply *r, const char *code, const char *in_message)
{
    assert_non_null(r->error);
    assert_string_equal(r->error->code, code);
    if (in_message && !strstr(r->error->message, in_message))
        fail_msg("message '%s' lacks '%s'", r->error->message, in_message);
    assert_int_equal(r->n_values, 0);
}

/* ---- argument accessors ------------------------------------------------------------ */

static struct {
    int ran;
    size_t nargs;
    int64_t i0, i1;
    ferry_err e_i2, e_i3, e_i8, e_big, e_nan;
    double d0, d2;
    ferry_err e_d3;
    const char *s;
    size_t slen;
    ferry_err e_s0;
    int b4;
    ferry_err e_b5;
    int arg8_null, arg5_nil, arg6_nil;
    uint64_t id;
    int64_t remaining;
    int timed_out;
    void *data;
    ferry_err answered, again, after_again;
} seen;

static void check_args(ferry_call *call, void *udata)
{
    seen.ran++;
    seen.nargs = ferry_call_nargs(call);
    assert_int_equal(ferry_call_arg_int(call, 0, &seen.i0), FERRY_OK);
    assert_int_equal(ferry_call_arg_int(call, 1, &seen.i1), FERRY_OK);
    int64_t scratch = 99;
    seen.e_i2 = ferry_call_arg_int(call, 2, &scratch);
    seen.e_i3 = ferry_call_arg_int(call, 3, &scratch);
    seen.e_i8 = ferry_call_arg_int(call, 8, &scratch);
    seen.e_big = ferry_call_arg_int(call, 9, &scratch);
    seen.e_nan = ferry_call_arg_int(call, 10, &scratch);
    assert_int_equal(scratch, 99);
    assert_int_equal(ferry_call_arg_number(call, 0, &seen.d0), FERRY_OK);
    assert_int_equal(ferry_call_arg_number(call, 2, &seen.d2), FERRY_OK);
    double dscratch;
    seen.e_d3 = ferry_call_arg_number(call, 3, &dscratch);
    assert_int_equal(ferry_call_arg_string(call, 3, &seen.s, &seen.slen), FERRY_OK);
    const char *sscratch;
    size_t lscratch;
    seen.e_s0 = ferry_call_arg_string(call, 0, &sscratch, &lscratch);
    assert_int_equal(ferry_call_arg_bool(call, 4, &seen.b4), FERRY_OK);
    int bscratch;
    seen.e_b5 = ferry_call_arg_bool(call, 5, &bscratch);
    seen.arg8_null = ferry_call_arg(call, 11) == NULL;
    seen.arg5_nil = ferry_call_arg(call, 5)->kind_case == FERRY__VALUE__KIND_NIL;
    seen.arg6_nil = ferry_call_arg(call, 6)->kind_case == FERRY__VALUE__KIND__NOT_SET;
    assert_string_equal(ferry_call_function(call), "check");
    assert_ptr_equal(udata, &seen);
    seen.id = ferry_call_id(call);
    seen.remaining = ferry_call_remaining_ms(call);
    seen.timed_out = ferry_call_timed_out(call);
    ferry_call_set_data(call, &seen);
    seen.data = ferry_call_data(call);
    int slen = (int)seen.slen;
    /* The string is borrowed from the call: the answer copies what it needs first. */
    seen.answered = ferry_call_return_values(call, 2, ferry_value_int(seen.i0 + seen.i1),
                                             ferry_value_string(seen.s, (size_t)slen));
    /* The call is still alive until this handler returns: a second answer is caught. */
    seen.again = ferry_call_fail(call, FERRY_ECALL, "twice");
    seen.after_again = ferry_call_after(call, 1, check_args, NULL);
}

static void test_arg_accessors(void **state)
{
    (void)state;
    capture c = {0};
    ferry_worker *w = offline(&c, 0);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(ferry_worker_register(w, "check", check_args, &seen, NULL), FERRY_OK);
    Ferry__Value *unset = malloc(sizeof *unset);
    ferry__value__init(unset);
    Ferry__Value *args[] = {
        ferry_value_int(7),
        ferry_value_float(2.0),
        ferry_value_float(2.5),
        ferry_value_string("hi\0", 3),
        ferry_value_bool(1),
        ferry_value_nil(),
        unset,
        ferry_value_table(),
        ferry_value_cstring("8"),
        ferry_value_float(1e19),
        ferry_value_float(NAN),
    };
    size_t n = sizeof args / sizeof args[0];
    feed(w, "engine-1", 42, "check", args, n, 1000);
    assert_int_equal(seen.ran, 1);
    assert_int_equal(seen.nargs, n);
    assert_int_equal(seen.i0, 7);
    assert_int_equal(seen.i1, 2);
    assert_int_equal(seen.e_i2, FERRY_EBADARG);
    assert_int_equal(seen.e_i3, FERRY_EBADARG);
    assert_int_equal(seen.e_i8, FERRY_EBADARG);
    assert_int_equal(seen.e_big, FERRY_EBADARG);
    assert_int_equal(seen.e_nan, FERRY_EBADARG);
    assert_true(seen.d0 == 7.0 && seen.d2 == 2.5);
    assert_int_equal(seen.e_d3, FERRY_EBADARG);
    assert_int_equal(seen.slen, 3);
    assert_int_equal(seen.e_s0, FERRY_EBADARG);
    assert_int_equal(seen.b4, 1);
    assert_int_equal(seen.e_b5, FERRY_EBADARG);
    assert_true(seen.arg8_null && seen.arg5_nil && seen.arg6_nil);
    assert_int_equal(seen.id, 42);
    assert_true(seen.remaining > 0 && seen.remaining <= 1000);
    assert_false(seen.timed_out);
    assert_ptr_equal(seen.data, &seen);
    assert_int_equal(seen.answered, FERRY_OK);
    assert_int_equal(seen.again, FERRY_EUSAGE);
    assert_int_equal(seen.after_again, FERRY_EUSAGE);

    assert_int_equal(c.n, 1);
    const Ferry__Reply *r = reply_at(&c, 0);
    assert_int_equal(r->engine_id.len, 8);
    assert_memory_equal(r->engine_id.data, "engine-1", 8);
    assert_int_equal(r->call_id, 42);
    assert_null(r->error);
    assert_int_equal(r->n_values, 2);
    assert_int_equal(r->values[0]->kind_case, FERRY__VALUE__KIND_INTEGER);
    assert_int_equal(r->values[0]->integer, 9);
    assert_int_equal(r->values[1]->string.len, 3);
    assert_memory_equal(r->values[1]->string.data, "hi\0", 3);

    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.received, 1);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.in_flight, 0);
    for (size_t i = 0; i < n; i++)
        ferry_value_free(args[i]);
    ferry_worker_destroy(&w);
    assert_null(w);
    capture_fini(&c);
}

/* ---- dispatch and refusals ------------------------------------------------------------ */

static void answer_nothing(ferry_call *call, void *udata)
{
    (void)udata;
    ferry_call_return(call, NULL, 0);
}

static void test_unknown_function(void **state)
{
    (void)state;
    capture c = {0};
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "f", answer_nothing, NULL, NULL), FERRY_OK);
    feed(w, "e", 7, "nope", NULL, 0, 0);
    assert_int_equal(c.n, 1);
    const Ferry__Reply *r = reply_at(&c, 0);
    assert_int_equal(r->call_id, 7);
    assert_error(r, "no_worker", "worker w-test does not serve 'nope'");
    feed(w, "e", 8, "f", NULL, 0, 0);
    assert_int_equal(c.n, 2);
    assert_null(reply_at(&c, 1)->error);
    assert_int_equal(reply_at(&c, 1)->n_values, 0);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_bad_input(void **state)
{
    (void)state;
    capture c = {0};
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "f", answer_nothing, NULL, NULL), FERRY_OK);

    worker_dispatch_frame(w, "\xff\xff\xff garbage", 12);
    worker_dispatch_frame(w, "", 0); /* decodes: version 0, no body */

    Ferry__Envelope env;
    ferry_envelope_init(&env);
    Ferry__Ready ready = FERRY__READY__INIT;
    env.body_case = FERRY__ENVELOPE__BODY_READY;
    env.ready = &ready;
    uint8_t buf[64];
    size_t len = ferry__envelope__pack(&env, buf);
    worker_dispatch_frame(w, buf, len); /* a body workers never receive */
    env.version = 2;
    Ferry__Heartbeat hb = FERRY__HEARTBEAT__INIT;
    env.body_case = FERRY__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    len = ferry__envelope__pack(&env, buf);
    worker_dispatch_frame(w, buf, len); /* wrong version */
    env.version = FERRY_PROTOCOL_VERSION;
    len = ferry__envelope__pack(&env, buf);
    worker_dispatch_frame(w, buf, len); /* a heartbeat: fine, no answer */

    feed(w, "", 1, "f", NULL, 0, 0); /* nobody to answer */
    char long_id[300];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    feed(w, long_id, 2, "f", NULL, 0, 0);
    assert_int_equal(c.n, 0);

    feed(w, "e", 3, "", NULL, 0, 0); /* answerable: refused */
    assert_int_equal(c.n, 1);
    assert_error(reply_at(&c, 0), "bad_message", "function");

    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.received, 0);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

/* An envelope {version, Command{engine_id, call_id = 9, function = "f", args = [arg],
 * timeout_ms = 100}} built by hand around arg, the encoded bytes of one Value that may be
 * malformed. Returns its length. */
static size_t command_with_raw_arg(uint8_t *out, uint32_t version, const char *engine,
                                   const uint8_t *arg, size_t arg_len)
{
    uint8_t cmd[128];
    size_t n = 0, elen = strlen(engine);
    assert_true(elen < 100 && arg_len < 100);
    cmd[n++] = 0x0a; /* engine_id: field 1, bytes */
    cmd[n++] = (uint8_t)elen;
    memcpy(cmd + n, engine, elen);
    n += elen;
    cmd[n++] = 0x10; /* call_id: field 2, varint */
    cmd[n++] = 9;
    cmd[n++] = 0x1a; /* function: field 3 */
    cmd[n++] = 1;
    cmd[n++] = 'f';
    cmd[n++] = 0x22; /* args: field 4, one Value */
    cmd[n++] = (uint8_t)arg_len;
    memcpy(cmd + n, arg, arg_len);
    n += arg_len;
    cmd[n++] = 0x28; /* timeout_ms: field 5 */
    cmd[n++] = 100;
    size_t len = 0;
    out[len++] = 0x08; /* version */
    out[len++] = (uint8_t)version;
    out[len++] = 0x2a; /* command: field 5 of Envelope */
    out[len++] = (uint8_t)n;
    memcpy(out + len, cmd, n);
    return len + n;
}

/* The broker reads only a Command's top level: one whose arguments do not decode
 * still reaches the worker, which answers it rather than keep the call (and its
 * credit at the broker) hanging. */
static void test_undecodable_args(void **state)
{
    (void)state;
    static const struct {
        uint8_t bytes[8];
        size_t len;
    } bad[] = {
        {{0x1a, 0x00}, 2},                   /* integer (varint) sent as bytes */
        {{0x32, 0x02, 0x0a, 0x05}, 4},       /* table whose array element overruns it */
        {{0x32, 0x03, 0x12, 0x01, 0x0a}, 5}, /* pair whose key is cut short */
    };
    capture c = {0};
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "f", answer_nothing, NULL, NULL), FERRY_OK);
    uint8_t frame[256];
    Ferry__Envelope *env = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len =
            command_with_raw_arg(frame, FERRY_PROTOCOL_VERSION, "eng", bad[i].bytes, bad[i].len);
        assert_int_equal(ferry_envelope_decode(frame, len, &env), FERRY_EPROTO);
        worker_dispatch_frame(w, frame, len);
        assert_int_equal(c.n, i + 1);
        const Ferry__Reply *r = reply_at(&c, i);
        assert_int_equal(r->call_id, 9);
        assert_int_equal(r->engine_id.len, 3);
        assert_memory_equal(r->engine_id.data, "eng", 3);
        assert_error(r, "bad_message", "the command for 'f' does not decode at worker w-test");
    }
    /* Nobody to answer, or another protocol: dropped as before. */
    size_t len = command_with_raw_arg(frame, FERRY_PROTOCOL_VERSION, "", bad[0].bytes, bad[0].len);
    worker_dispatch_frame(w, frame, len);
    len = command_with_raw_arg(frame, FERRY_PROTOCOL_VERSION + 1, "eng", bad[0].bytes, bad[0].len);
    worker_dispatch_frame(w, frame, len);
    assert_int_equal(c.n, 3);
    /* The same frame with a good argument runs. */
    static const uint8_t good[] = {0x18, 0x02}; /* integer 1 */
    len = command_with_raw_arg(frame, FERRY_PROTOCOL_VERSION, "eng", good, sizeof good);
    worker_dispatch_frame(w, frame, len);
    assert_int_equal(c.n, 4);
    assert_null(reply_at(&c, 3)->error);

    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.dropped, 5);
    assert_int_equal(st.failed, 3);
    assert_int_equal(st.received, 1);
    assert_int_equal(st.in_flight, 0);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_register_errors(void **state)
{
    (void)state;
    capture c = {0};
    ferry_worker *w = offline(&c, 0);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    ferry_function_opts opts = {.idempotent = 1, .max_concurrency = 3};
    assert_int_equal(ferry_worker_register(w, "f", answer_nothing, NULL, &opts), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "f", answer_nothing, NULL, NULL), FERRY_EUSAGE);
    assert_int_equal(ferry_worker_register(w, "", answer_nothing, NULL, NULL), FERRY_EUSAGE);
    assert_int_equal(ferry_worker_register(w, long_name, answer_nothing, NULL, NULL), FERRY_EUSAGE);
    long_name[255] = '\0'; /* 255 bytes: the longest name */
    assert_int_equal(ferry_worker_register(w, long_name, answer_nothing, NULL, NULL), FERRY_OK);
    /* The protocol's rule: UTF-8 only, as the broker and the engine check it. */
    assert_int_equal(ferry_worker_register(w, "bad\xff", answer_nothing, NULL, NULL), FERRY_EUSAGE);
    assert_int_equal(ferry_worker_register(w, "caf\xc3\xa9", answer_nothing, NULL, NULL), FERRY_OK);
    worker_function *f = worker_function_find(w, "f");
    assert_non_null(f);
    assert_true(f->idempotent);
    assert_int_equal(f->max_concurrency, 3);
    assert_string_equal(ferry_worker_id(w), "w-test");
    assert_non_null(ferry_worker_loop(w));
    ferry_worker_destroy(&w);
    ferry_worker_destroy(&w); /* NULL-safe */
    capture_fini(&c);
}

/* ---- answers ---------------------------------------------------------------------- */

static void answer_oom(ferry_call *call, void *udata)
{
    (void)udata;
    ferry_call_return_values(call, 2, ferry_value_int(1), (Ferry__Value *)NULL);
}

static void answer_custom(ferry_call *call, void *udata)
{
    (void)udata;
    ferry_call_fail_code(call, "http_status", "status %d", 404);
}

static void answer_big(ferry_call *call, void *udata)
{
    (void)udata;
    char big[4096];
    memset(big, 'b', sizeof big);
    ferry_call_return_values(call, 1, ferry_value_string(big, sizeof big));
}

static void answer_badarg(ferry_call *call, void *udata)
{
    (void)udata;
    ferry_call_fail_arg(call, 1, "table");
}

static void test_answers(void **state)
{
    (void)state;
    capture c = {0};
    ferry_worker_config cfg = {.id = "w-test", .max_msg = 2048};
    ferry_worker *w = worker_new_offline(&cfg, sink, &c);
    assert_non_null(w);
    assert_int_equal(ferry_worker_register(w, "oom", answer_oom, NULL, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "custom", answer_custom, NULL, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "big", answer_big, NULL, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "badarg", answer_badarg, NULL, NULL), FERRY_OK);
    feed(w, "e", 1, "oom", NULL, 0, 0);
    feed(w, "e", 2, "custom", NULL, 0, 0);
    feed(w, "e", 3, "big", NULL, 0, 0);
    Ferry__Value *arg = ferry_value_int(1);
    feed(w, "e", 4, "badarg", &arg, 1, 0);
    feed(w, "e", 5, "badarg", NULL, 0, 0);
    ferry_value_free(arg);
    assert_int_equal(c.n, 5);
    assert_error(reply_at(&c, 0), "out_of_memory", "oom");
    assert_error(reply_at(&c, 1), "http_status", "status 404");
    assert_error(reply_at(&c, 2), "call_error", "limit");
    assert_error(reply_at(&c, 3), "bad_argument",
                 "bad argument #2 to 'badarg' (table expected, got no value)");
    assert_error(reply_at(&c, 4), "bad_argument", "(table expected, got no value)");
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.failed, 5);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_utf8_messages(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"h\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e", "h\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"},
        {"a\xff"
         "b",
         "a?b"},
        {"cut\xc3", "cut?"},
        {"cut\xe2\x82", "cut??"},
        {"\xc0\xaf", "??"},           /* overlong '/' */
        {"\xed\xa0\x80", "???"},      /* a surrogate */
        {"\xf4\x90\x80\x80", "????"}, /* past U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        ferry_utf8_scrub(buf, strlen(buf));
        assert_string_equal(buf, cases[i].out);
    }
    /* A function name that is not UTF-8 comes back in a message that is. */
    capture c = {0};
    ferry_worker *w = offline(&c, 0);
    feed(w, "e", 1, "bad\xff", NULL, 0, 0);
    assert_error(reply_at(&c, 0), "no_worker", "does not serve 'bad?'");
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

/* ---- later answers: timers, deadlines, cancellation ------------------------------------ */

static void finish(ferry_call *call, void *arg)
{
    ferry_call_return_values(call, 1, ferry_value_int((int64_t)(intptr_t)arg));
}

static void answer_later(ferry_call *call, void *udata)
{
    (void)udata;
    assert_int_equal(ferry_call_after(call, 10, finish, (void *)(intptr_t)5), FERRY_OK);
}

static void test_after(void **state)
{
    (void)state;
    capture c = {0};
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "later", answer_later, NULL, NULL), FERRY_OK);
    feed(w, "e", 1, "later", NULL, 0, 1000);
    assert_int_equal(c.n, 0);
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.in_flight, 1);
    run_until(w, &c, 1, GUARD_MS);
    assert_null(reply_at(&c, 0)->error);
    assert_int_equal(reply_at(&c, 0)->values[0]->integer, 5);
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.completed, 1);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static ferry_call *held[16];
static size_t nheld;

static void hold(ferry_call *call, void *udata)
{
    (void)udata;
    held[nheld++] = call;
}

static void test_timeout_late_answer(void **state)
{
    (void)state;
    capture c = {0};
    nheld = 0;
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "hold", hold, NULL, NULL), FERRY_OK);
    feed(w, "e", 1, "hold", NULL, 0, 20);
    assert_int_equal(nheld, 1);
    run_until(w, &c, 1, GUARD_MS);
    assert_error(reply_at(&c, 0), "timeout", "'hold' did not answer within 20 ms");
    assert_int_equal(reply_at(&c, 0)->call_id, 1);
    /* The call is still there for the handler, which now knows. */
    assert_true(ferry_call_timed_out(held[0]));
    assert_int_equal(ferry_call_remaining_ms(held[0]), 0);
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.zombies, 1);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(ferry_call_return_values(held[0], 1, ferry_value_int(1)), FERRY_ETIMEOUT);
    assert_int_equal(c.n, 1); /* the late answer sent nothing */
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.zombies, 0);
    assert_int_equal(st.late, 1);
    assert_int_equal(st.timed_out, 1);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static int cancels;
static ferry_err cancel_reason;

static void on_cancel_answer(ferry_call *call, ferry_err reason, void *arg)
{
    (void)arg;
    cancels++;
    cancel_reason = reason;
    assert_true(ferry_call_timed_out(call) || reason == FERRY_EWORKER_LOST);
    ferry_call_fail(call, reason, "cancelled");
}

static void on_cancel_keep(ferry_call *call, ferry_err reason, void *arg)
{
    (void)call;
    (void)arg;
    cancels++;
    cancel_reason = reason;
}

static void hold_with_cancel(ferry_call *call, void *udata)
{
    ferry_call_on_cancel(call, udata ? on_cancel_keep : on_cancel_answer, NULL);
    /* A long continuation the cancel must not leave armed behind a freed call. */
    assert_int_equal(ferry_call_after(call, 60000, finish, NULL), FERRY_OK);
}

static void test_timeout_cancel(void **state)
{
    (void)state;
    capture c = {0};
    cancels = 0;
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "h", hold_with_cancel, NULL, NULL), FERRY_OK);
    feed(w, "e", 1, "h", NULL, 0, 15);
    run_until(w, &c, 1, GUARD_MS);
    assert_error(reply_at(&c, 0), "timeout", NULL);
    assert_int_equal(cancels, 1);
    assert_int_equal(cancel_reason, FERRY_ETIMEOUT);
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.zombies, 0);
    assert_int_equal(st.late, 1);
    /* No timer is left behind: the call took its deadline and continuation along. */
    assert_int_equal(ferry_timers_count(&ferry_worker_loop(w)->timers), 0);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

/* A cancel callback that answers another call held by the test (partner). */
static void on_cancel_answer_partner(ferry_call *call, ferry_err reason, void *arg)
{
    assert_int_equal(reason, FERRY_ETIMEOUT);
    assert_int_equal(ferry_call_return(arg, NULL, 0), FERRY_OK);
    ferry_call_on_cancel(call, NULL, NULL); /* the partner is gone */
}

static ferry_call *pair_first;

/* The first of each pair answers the second when it times out. */
static void hold_partner(ferry_call *call, void *udata)
{
    (void)udata;
    held[nheld++] = call;
    if (!pair_first) {
        pair_first = call;
        return;
    }
    ferry_call_on_cancel(pair_first, on_cancel_answer_partner, call);
    pair_first = NULL;
}

/* Deadlines share timers by lane (worker_internal.h): every call still times out at its
 * own deadline, in deadline order, whatever lane or timer it got. */
static void test_deadline_lanes(void **state)
{
    (void)state;
    capture c = {0};
    nheld = 0;
    pair_first = NULL;
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "hold", hold, NULL, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "pair", hold_partner, NULL, NULL), FERRY_OK);
    /* Falling timeouts: each takes a lane of its own until they run out (the
     * 40 ms one gets a timer of its own); the 250 ms one follows the 240 ms one. */
    static const uint32_t timeouts[] = {240, 180, 120, 80, 40, 250};
    for (size_t i = 0; i < 6; i++)
        feed(w, "e", i + 1, "hold", NULL, 0, timeouts[i]);
    assert_int_equal(nheld, 6);
    assert_true(ferry_call_remaining_ms(held[3]) > 40);
    /* Answered: its lane empties, its timer is left armed for 120 ms. */
    assert_int_equal(ferry_call_return(held[2], NULL, 0), FERRY_OK);
    /* That lane takes a 10 ms deadline, which must not wait for the 120 ms timer. */
    feed(w, "e", 7, "hold", NULL, 0, 10);
    /* Two calls in one lane; the first's cancel answers the second as the lane's
     * timer works through its head. */
    feed(w, "e", 8, "pair", NULL, 0, 150);
    feed(w, "e", 9, "pair", NULL, 0, 150);
    assert_int_equal(nheld, 9);
    assert_int_equal(c.n, 1);
    run_until(w, &c, 8, GUARD_MS);
    static const uint64_t order[] = {3, 7, 5, 4, 8, 9, 2, 1};
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(reply_at(&c, i)->call_id, order[i]);
    assert_null(reply_at(&c, 0)->error);
    assert_error(reply_at(&c, 1), "timeout", "within 10 ms");
    assert_error(reply_at(&c, 4), "timeout", "within 150 ms");
    assert_null(reply_at(&c, 5)->error); /* answered by its partner's cancel, in time */
    run_until(w, &c, 9, GUARD_MS);
    assert_int_equal(reply_at(&c, 8)->call_id, 6);
    assert_error(reply_at(&c, 8), "timeout", "within 250 ms");
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.timed_out, 7);
    assert_int_equal(st.in_flight, 0);
    /* Every deadline passed: no lane keeps a timer. */
    assert_int_equal(ferry_timers_count(&ferry_worker_loop(w)->timers), 0);
    ferry_worker_destroy(&w); /* ASan: the timed-out calls still held are freed */
    capture_fini(&c);
}

static void answer_now(ferry_call *call, void *udata)
{
    (void)udata;
    ferry_call_return_values(call, 1, ferry_value_int(7));
}

static void assert_no_deadlines(ferry_worker *w)
{
    assert_int_equal(ferry_timers_count(&ferry_worker_loop(w)->timers), 0);
    for (int i = 0; i < WORKER_LANES; i++)
        assert_null(w->lanes[i].head);
}

/* A call its handler answers never gets a deadline (worker_internal.h): no lane, no
 * timer, not listed. One that outlives its handler gets it when the handler returns. */
static void test_deadline_after_handler(void **state)
{
    (void)state;
    capture c = {0};
    nheld = 0;
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "now", answer_now, NULL, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "hold", hold, NULL, NULL), FERRY_OK);
    feed(w, "e", 1, "now", NULL, 0, 1000);
    assert_int_equal(c.n, 1);
    assert_int_equal(reply_at(&c, 0)->values[0]->integer, 7);
    assert_no_deadlines(w);
    assert_null(w->calls);
    int64_t t0 = ferry_now_ms();
    feed(w, "e", 2, "hold", NULL, 0, 1000);
    int64_t t1 = ferry_now_ms();
    assert_int_equal(nheld, 1);
    assert_true(held[0]->deadline_ms >= t0 + 1000 && held[0]->deadline_ms <= t1 + 1000);
    assert_non_null(held[0]->lane);
    assert_ptr_equal(w->calls, held[0]);
    assert_int_equal(ferry_timers_count(&ferry_worker_loop(w)->timers), 1);
    assert_int_equal(ferry_call_return(held[0], NULL, 0), FERRY_OK);
    assert_null(w->calls);
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.completed, 2);
    assert_int_equal(st.in_flight, 0);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static int64_t peek_left, peek_deadline;

static void peek_and_hold(ferry_call *call, void *udata)
{
    (void)udata;
    peek_left = ferry_call_remaining_ms(call);
    peek_deadline = call->deadline_ms;
    held[nheld++] = call;
}

/* Asked inside the handler, ferry_call_remaining_ms starts the deadline: the one armed
 * when the handler returns is that one, not a later one. */
static void test_remaining_starts_deadline(void **state)
{
    (void)state;
    capture c = {0};
    nheld = 0;
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "peek", peek_and_hold, NULL, NULL), FERRY_OK);
    int64_t t0 = ferry_now_ms();
    feed(w, "e", 1, "peek", NULL, 0, 500);
    assert_true(peek_left > 0 && peek_left <= 500);
    assert_true(peek_deadline >= t0 + 500);
    assert_int_equal(held[0]->deadline_ms, peek_deadline);
    assert_non_null(held[0]->lane);
    assert_true(held[0]->lane->timer.when_ms <= peek_deadline);
    feed(w, "e", 2, "peek", NULL, 0, 0);
    assert_int_equal(peek_left, -1);
    assert_int_equal(held[1]->deadline_ms, 0);
    assert_null(held[1]->lane);
    assert_int_equal(ferry_call_remaining_ms(held[1]), -1);
    assert_int_equal(ferry_call_return(held[0], NULL, 0), FERRY_OK);
    assert_int_equal(ferry_call_return(held[1], NULL, 0), FERRY_OK);
    assert_int_equal(c.n, 2);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

/* No memory for a deadline: the worker answers `out_of_memory` for the handler, as it
 * would `timeout`, and the handler's own answer is discarded. */
static void test_deadline_arm_fails(void **state)
{
    (void)state;
    capture c = {0};
    nheld = 0;
    cancels = 0;
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "h", hold_with_cancel, NULL, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "hold", hold, NULL, NULL), FERRY_OK);
    ferry_function_opts one = {.max_concurrency = 1};
    assert_int_equal(ferry_worker_register(w, "one", hold, NULL, &one), FERRY_OK);
    /* The cancel callback answers, which frees the call and its continuation. */
    w->fail_arms = 1;
    feed(w, "e", 1, "h", NULL, 0, 1000);
    assert_int_equal(c.n, 1);
    assert_error(reply_at(&c, 0), "out_of_memory", "out of memory");
    assert_int_equal(cancels, 1);
    assert_int_equal(cancel_reason, FERRY_ENOMEM);
    assert_no_deadlines(w);
    assert_null(w->calls);
    /* Without one, the call waits for its handler's answer, which sends nothing. */
    w->fail_arms = 1;
    feed(w, "e", 2, "hold", NULL, 0, 1000);
    assert_int_equal(c.n, 2);
    assert_error(reply_at(&c, 1), "out_of_memory", NULL);
    assert_true(ferry_call_timed_out(held[0]));
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.zombies, 1);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(ferry_call_return(held[0], NULL, 0), FERRY_ETIMEOUT);
    assert_int_equal(c.n, 2);
    /* A call that must wait for a slot gets its deadline first, or is refused. */
    feed(w, "e", 3, "one", NULL, 0, 0);
    w->fail_arms = 1;
    feed(w, "e", 4, "one", NULL, 0, 1000);
    assert_int_equal(c.n, 3);
    assert_int_equal(reply_at(&c, 2)->call_id, 4);
    assert_error(reply_at(&c, 2), "out_of_memory", NULL);
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.zombies, 0);
    assert_int_equal(st.late, 2);
    assert_int_equal(st.timed_out, 0);
    assert_int_equal(st.failed, 3);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(st.queued, 0);
    assert_int_equal(nheld, 2);
    assert_int_equal(ferry_call_return(held[1], NULL, 0), FERRY_OK);
    assert_null(w->calls);
    assert_int_equal(w->fail_arms, 0);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_destroy_cancels(void **state)
{
    (void)state;
    capture c = {0};
    cancels = 0;
    nheld = 0;
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "answer", hold_with_cancel, NULL, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "keep", hold_with_cancel, &c, NULL), FERRY_OK);
    assert_int_equal(ferry_worker_register(w, "hold", hold, NULL, NULL), FERRY_OK);
    ferry_function_opts one = {.max_concurrency = 1};
    assert_int_equal(ferry_worker_register(w, "one", hold, NULL, &one), FERRY_OK);
    feed(w, "e", 1, "answer", NULL, 0, 1000);
    feed(w, "e", 2, "keep", NULL, 0, 1000);
    feed(w, "e", 3, "hold", NULL, 0, 0);
    feed(w, "e", 4, "one", NULL, 0, 0);
    feed(w, "e", 5, "one", NULL, 0, 0); /* queued */
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.in_flight, 5);
    assert_int_equal(st.queued, 1);
    ferry_worker_destroy(&w); /* ASan: every call freed */
    assert_int_equal(cancels, 2);
    assert_int_equal(cancel_reason, FERRY_EWORKER_LOST);
    assert_int_equal(c.n, 0); /* nothing is sent for cancelled calls */
    capture_fini(&c);
}

/* ---- limits ------------------------------------------------------------------------ */

static void test_concurrency_limit(void **state)
{
    (void)state;
    capture c = {0};
    nheld = 0;
    ferry_worker *w = offline(&c, 2);
    assert_int_equal(ferry_worker_register(w, "hold", hold, NULL, NULL), FERRY_OK);
    feed(w, "e", 1, "hold", NULL, 0, 0);
    feed(w, "e", 2, "hold", NULL, 0, 0);
    feed(w, "e", 3, "hold", NULL, 0, 0);
    assert_int_equal(nheld, 2);
    assert_int_equal(c.n, 1);
    assert_int_equal(reply_at(&c, 0)->call_id, 3);
    assert_error(reply_at(&c, 0), "overloaded", NULL);
    assert_int_equal(ferry_call_return(held[0], NULL, 0), FERRY_OK);
    feed(w, "e", 4, "hold", NULL, 0, 0); /* a slot is free again */
    assert_int_equal(nheld, 3);
    assert_int_equal(ferry_call_return(held[1], NULL, 0), FERRY_OK);
    assert_int_equal(ferry_call_return(held[2], NULL, 0), FERRY_OK);
    assert_int_equal(c.n, 4);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static int running_now, running_max;

static void slot_done(ferry_call *call, void *arg)
{
    (void)arg;
    running_now--;
    ferry_call_return(call, NULL, 0);
}

static void slot_user(ferry_call *call, void *udata)
{
    (void)udata;
    if (++running_now > running_max)
        running_max = running_now;
    assert_int_equal(ferry_call_after(call, 5, slot_done, NULL), FERRY_OK);
}

static void test_function_max_concurrency(void **state)
{
    (void)state;
    capture c = {0};
    running_now = running_max = 0;
    ferry_worker *w = offline(&c, 0);
    ferry_function_opts two = {.max_concurrency = 2};
    assert_int_equal(ferry_worker_register(w, "two", slot_user, NULL, &two), FERRY_OK);
    for (uint64_t i = 1; i <= 6; i++)
        feed(w, "e", i, "two", NULL, 0, 2000);
    ferry_worker_stats st;
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.queued, 4);
    assert_int_equal(st.in_flight, 6);
    run_until(w, &c, 6, GUARD_MS);
    assert_int_equal(running_max, 2);
    for (size_t i = 0; i < 6; i++) /* in arrival order */
        assert_int_equal(reply_at(&c, i)->call_id, i + 1);
    ferry_worker_get_stats(w, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.completed, 6);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

static void test_queued_timeout(void **state)
{
    (void)state;
    capture c = {0};
    nheld = 0;
    ferry_worker *w = offline(&c, 0);
    ferry_function_opts one = {.max_concurrency = 1};
    assert_int_equal(ferry_worker_register(w, "one", hold, NULL, &one), FERRY_OK);
    feed(w, "e", 1, "one", NULL, 0, 0);
    feed(w, "e", 2, "one", NULL, 0, 20); /* waits for the slot, times out there */
    feed(w, "e", 3, "one", NULL, 0, 0);
    run_until(w, &c, 1, GUARD_MS);
    assert_int_equal(reply_at(&c, 0)->call_id, 2);
    assert_error(reply_at(&c, 0), "timeout", "did not get a slot within 20 ms");
    assert_int_equal(nheld, 1);
    /* Freeing the slot starts call 3 from the loop, not from inside this answer. */
    assert_int_equal(ferry_call_return(held[0], NULL, 0), FERRY_OK);
    assert_int_equal(nheld, 1);
    ferry_loop *loop = ferry_worker_loop(w);
    ferry_timers_run(&loop->timers, loop->now_ms + 1000000);
    assert_int_equal(nheld, 2);
    assert_int_equal(ferry_call_return(held[1], NULL, 0), FERRY_OK);
    assert_int_equal(c.n, 3);
    assert_int_equal(reply_at(&c, 2)->call_id, 3);
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

/* ---- file descriptors ---------------------------------------------------------------- */

typedef struct {
    int pa[2], pb[2];
    int b_calls;
    ferry_call *call;
} fd_ctx;

static void on_b(ferry_worker *w, int fd, short revents, void *arg)
{
    (void)w;
    (void)fd;
    (void)revents;
    fd_ctx *x = arg;
    x->b_calls++;
}

static void on_a(ferry_worker *w, int fd, short revents, void *arg)
{
    fd_ctx *x = arg;
    assert_true(revents & ZMQ_POLLIN);
    char ch;
    assert_int_equal(read(fd, &ch, 1), 1);
    /* b is readable in this same iteration too: after this, its callback must not run. */
    ferry_worker_unwatch_fd(w, x->pb[0]);
    ferry_worker_unwatch_fd(w, fd);
    ferry_call_return_values(x->call, 1, ferry_value_string(&ch, 1));
}

static void watch_pipes(ferry_call *call, void *udata)
{
    fd_ctx *x = udata;
    x->call = call;
    ferry_worker *w = ferry_call_worker(call);
    assert_int_equal(ferry_worker_watch_fd(w, x->pa[0], ZMQ_POLLIN, on_a, x), FERRY_OK);
    assert_int_equal(ferry_worker_watch_fd(w, x->pb[0], ZMQ_POLLIN, on_b, x), FERRY_OK);
    assert_int_equal(write(x->pa[1], "a", 1), 1);
    assert_int_equal(write(x->pb[1], "b", 1), 1);
}

static void test_watch_fd(void **state)
{
    (void)state;
    capture c = {0};
    fd_ctx x = {0};
    assert_int_equal(pipe(x.pa), 0);
    assert_int_equal(pipe(x.pb), 0);
    ferry_worker *w = offline(&c, 0);
    assert_int_equal(ferry_worker_register(w, "fd", watch_pipes, &x, NULL), FERRY_OK);
    feed(w, "e", 1, "fd", NULL, 0, 1000);
    run_until(w, &c, 1, GUARD_MS);
    assert_int_equal(reply_at(&c, 0)->values[0]->string.data[0], 'a');
    assert_int_equal(x.b_calls, 0);
    assert_int_equal(ferry_worker_loop(w)->nitems, 0);
    for (int i = 0; i < 2; i++) {
        close(x.pa[i]);
        close(x.pb[i]);
    }
    ferry_worker_destroy(&w);
    capture_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arg_accessors),
        cmocka_unit_test(test_unknown_function),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_undecodable_args),
        cmocka_unit_test(test_register_errors),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_utf8_messages),
        cmocka_unit_test(test_after),
        cmocka_unit_test(test_timeout_late_answer),
        cmocka_unit_test(test_timeout_cancel),
        cmocka_unit_test(test_deadline_lanes),
        cmocka_unit_test(test_deadline_after_handler),
        cmocka_unit_test(test_remaining_starts_deadline),
        cmocka_unit_test(test_deadline_arm_fails),
        cmocka_unit_test(test_destroy_cancels),
        cmocka_unit_test(test_concurrency_limit),
        cmocka_unit_test(test_function_max_concurrency),
        cmocka_unit_test(test_queued_timeout),
        cmocka_unit_test(test_watch_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

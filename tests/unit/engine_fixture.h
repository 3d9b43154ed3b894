/*
 * engine_fixture: the fake broker the engine unit tests share. A ROUTER on
 * the engines endpoint and a PULL on the commands endpoint sit in the
 * engine's own ferry_loop; every envelope the engine sends there is decoded
 * and handed to the test's callbacks, which count what they see, and
 * run_until runs the loop until one of those counts is reached, under a
 * guard timer.
 */
#ifndef ENGINE_FIXTURE_H
#define ENGINE_FIXTURE_H

#include "engine.h"
#include "ferry_wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* One envelope from the engine, for the test's arg; takes ownership of env. */
typedef void (*fake_broker_recv)(void *arg, Ferry__Envelope *env);

typedef struct {
    void *zctx;
    ferry_loop loop;     /* the engine's loop too */
    void *router, *pull; /* bound on the engines and commands endpoints; NULL while closed */
    char rid[FERRY_ROUTING_ID_MAX + 1]; /* the engine's routing id, from its latest message */
    size_t rid_len;
    fake_broker_recv on_router, on_pull;
    void *arg;        /* the test's, for on_router and on_pull */
    const int *count; /* while run_until runs: the loop stops once *count >= want */
    int want;
    ferry_timer guard;
    int timed_out;
} fake_broker;

/* The next envelope waiting on socket (router or pull), or NULL when none is. */
static inline Ferry__Envelope *fake_broker_take(fake_broker *b, void *socket)
{
    ferry_frames f;
    if (!socket || ferry_frames_recv(socket, &f) != FERRY_OK)
        return NULL;
    int body = f.count - 1;
    if (socket == b->router) {
        b->rid_len = ferry_frame_size(&f, 0);
        memcpy(b->rid, ferry_frame_data(&f, 0), b->rid_len);
    }
    Ferry__Envelope *env = NULL;
    ferry_err rc =
        ferry_envelope_decode(ferry_frame_data(&f, body), ferry_frame_size(&f, body), &env);
    ferry_frames_close(&f);
    assert_int_equal(rc, FERRY_OK);
    return env;
}

/* Hands every envelope waiting on socket to recv, then stops the loop if run_until's
 * count is reached. */
static inline void fake_broker_drain(fake_broker *b, void *socket, fake_broker_recv recv)
{
    Ferry__Envelope *env;
    while ((env = fake_broker_take(b, socket)))
        recv(b->arg, env);
    if (b->count && *b->count >= b->want)
        ferry_loop_stop(&b->loop);
}

static inline void fake_broker_on_router(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    fake_broker *b = arg;
    fake_broker_drain(b, b->router, b->on_router);
}

static inline void fake_broker_on_pull(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    fake_broker *b = arg;
    fake_broker_drain(b, b->pull, b->on_pull);
}

static inline void fake_broker_on_guard(ferry_timer *t, void *arg)
{
    (void)t;
    fake_broker *b = arg;
    b->timed_out = 1;
    ferry_loop_stop(&b->loop);
}

/* Binds the broker's sockets and watches them in the loop. */
static inline void fake_broker_open(fake_broker *b, const char *engines, const char *commands)
{
    char err[256];
    ferry_socket_opts ro = {.type = ZMQ_ROUTER, .endpoint = engines, .bind = 1};
    ferry_socket_opts po = {.type = ZMQ_PULL, .endpoint = commands, .bind = 1};
    b->router = ferry_socket_open(b->zctx, &ro, err, sizeof err);
    b->pull = ferry_socket_open(b->zctx, &po, err, sizeof err);
    assert_non_null(b->router);
    assert_non_null(b->pull);
    assert_int_equal(
        ferry_loop_add_socket(&b->loop, b->router, ZMQ_POLLIN, fake_broker_on_router, b), FERRY_OK);
    assert_int_equal(ferry_loop_add_socket(&b->loop, b->pull, ZMQ_POLLIN, fake_broker_on_pull, b),
                     FERRY_OK);
}

/* The broker dies: its sockets close, the engine's connections drop. */
static inline void fake_broker_close(fake_broker *b)
{
    ferry_loop_remove_socket(&b->loop, b->router);
    ferry_loop_remove_socket(&b->loop, b->pull);
    ferry_socket_close(&b->router);
    ferry_socket_close(&b->pull);
}

/* A context and a loop, with the broker open on engines and commands; what the
 * engine sends goes to on_router and on_pull with arg. */
static inline void fake_broker_init(fake_broker *b, const char *engines, const char *commands,
                                    fake_broker_recv on_router, fake_broker_recv on_pull, void *arg)
{
    b->zctx = zmq_ctx_new();
    assert_non_null(b->zctx);
    ferry_loop_init(&b->loop);
    ferry_timer_init(&b->guard, fake_broker_on_guard, b);
    b->on_router = on_router;
    b->on_pull = on_pull;
    b->arg = arg;
    fake_broker_open(b, engines, commands);
}

/* Closes what fake_broker_init made; the engine must be destroyed first. */
static inline void fake_broker_fini(fake_broker *b)
{
    fake_broker_close(b);
    ferry_loop_fini(&b->loop);
    zmq_ctx_term(b->zctx);
}

/* Runs the loop until *count (a count the test's callbacks keep) reaches want, at most
 * timeout_ms; fails the test past that. */
static inline void run_until(fake_broker *b, const int *count, int want, int timeout_ms)
{
    b->count = count;
    b->want = want;
    b->timed_out = 0;
    if (*count < want) {
        ferry_loop_timer(&b->loop, &b->guard, timeout_ms);
        ferry_loop_run(&b->loop);
        ferry_timer_stop(&b->loop.timers, &b->guard);
    }
    b->count = NULL;
    if (b->timed_out)
        fail_msg("condition not met within %d ms (count %d, want %d)", timeout_ms, *count, want);
}

/* Sends env to the engine, as the broker would. */
static inline void fake_broker_send(fake_broker *b, const Ferry__Envelope *env)
{
    assert_int_equal(ferry_wire_send(b->router, b->rid, b->rid_len, env), FERRY_OK);
}

/* Sends the engine a Submit of src (timeout_ms 0: the engine's default). */
static inline void submit(fake_broker *b, uint64_t script_id, const char *src, uint32_t timeout_ms)
{
    Ferry__Submit sub = FERRY__SUBMIT__INIT;
    sub.script_id = script_id;
    sub.source.data = (uint8_t *)src;
    sub.source.len = strlen(src);
    sub.timeout_ms = timeout_ms;
    Ferry__Envelope env;
    ferry_envelope_init(&env);
    env.body_case = FERRY__ENVELOPE__BODY_SUBMIT;
    env.submit = &sub;
    fake_broker_send(b, &env);
}

#endif

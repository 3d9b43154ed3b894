/*
 * lib_frames_test: ferry_frames_recv and ferry_frames_close over inproc
 * sockets: whole messages, the data and size read once per frame, messages
 * with more frames than fit, nothing waiting, and frames sent on (marked
 * moved) that ferry_frames_close must leave alone while it closes the rest.
 *
 * inproc hands the sent zmq_msg_t itself to the receiver, so a frame made
 * with zmq_msg_init_data comes out with its free function: counting the
 * calls shows exactly which frames were closed, and when.
 */
#include "ferry_wire.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct {
    void *ctx;
    void *in, *out;         /* a PAIR each way: out sends, in receives */
    void *far_in, *far_out; /* where a frame is forwarded to */
} fixture;

static int frees;

static void count_free(void *data, void *hint)
{
    (void)hint;
    free(data);
    frees++;
}

static void *pair(void *ctx, const char *ep, int bind)
{
    char err[256];
    ferry_socket_opts o = {.type = ZMQ_PAIR, .endpoint = ep, .bind = bind};
    void *s = ferry_socket_open(ctx, &o, err, sizeof err);
    assert_non_null(s);
    return s;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    fx->ctx = zmq_ctx_new();
    assert_non_null(fx->ctx);
    fx->in = pair(fx->ctx, "inproc://frames-a", 1);
    fx->out = pair(fx->ctx, "inproc://frames-a", 0);
    fx->far_in = pair(fx->ctx, "inproc://frames-b", 1);
    fx->far_out = pair(fx->ctx, "inproc://frames-b", 0);
    frees = 0;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    ferry_socket_close(&fx->in);
    ferry_socket_close(&fx->out);
    ferry_socket_close(&fx->far_in);
    ferry_socket_close(&fx->far_out);
    zmq_ctx_term(fx->ctx);
    free(fx);
    return 0;
}

/* Sends n frames; frame i holds len(i) = 40 + 10 * i bytes of 'a' + i, made
 * with a counted free function (large enough not to be copied into the
 * message itself). */
static void send_counted(void *socket, int n)
{
    for (int i = 0; i < n; i++) {
        size_t len = 40 + 10 * (size_t)i;
        char *p = malloc(len);
        assert_non_null(p);
        memset(p, 'a' + i, len);
        zmq_msg_t m;
        assert_int_equal(zmq_msg_init_data(&m, p, len, count_free, NULL), 0);
        assert_true(zmq_msg_send(&m, socket, i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
    }
}

static void assert_frame(const ferry_frames *f, int i)
{
    size_t len = 40 + 10 * (size_t)i;
    assert_int_equal(ferry_frame_size(f, i), len);
    assert_int_equal(ferry_frame_size(f, i), zmq_msg_size((zmq_msg_t *)&f->frames[i]));
    assert_ptr_equal(ferry_frame_data(f, i), zmq_msg_data((zmq_msg_t *)&f->frames[i]));
    const char *p = ferry_frame_data(f, i);
    for (size_t k = 0; k < len; k++)
        assert_int_equal(p[k], 'a' + i);
}

static void test_nothing_waiting(void **state)
{
    fixture *fx = *state;
    ferry_frames f;
    assert_int_equal(ferry_frames_recv(fx->in, &f), FERRY_ETIMEOUT);
}

static void test_whole_message(void **state)
{
    fixture *fx = *state;
    for (int n = 1; n <= FERRY_MAX_FRAMES; n++) {
        frees = 0;
        send_counted(fx->out, n);
        ferry_frames f;
        assert_int_equal(ferry_frames_recv(fx->in, &f), FERRY_OK);
        assert_int_equal(f.count, n);
        assert_false(f.truncated);
        for (int i = 0; i < n; i++)
            assert_frame(&f, i);
        assert_int_equal(frees, 0);
        ferry_frames_close(&f);
        assert_int_equal(frees, n);
        assert_int_equal(f.count, 0);
        /* Closing twice closes nothing twice. */
        ferry_frames_close(&f);
        assert_int_equal(frees, n);
    }
}

static void test_truncated(void **state)
{
    fixture *fx = *state;
    send_counted(fx->out, FERRY_MAX_FRAMES + 2);
    ferry_frames f;
    assert_int_equal(ferry_frames_recv(fx->in, &f), FERRY_OK);
    assert_int_equal(f.count, FERRY_MAX_FRAMES);
    assert_true(f.truncated);
    /* The frames past the last that fits were closed as they arrived. */
    assert_int_equal(frees, 2);
    for (int i = 0; i < FERRY_MAX_FRAMES; i++)
        assert_frame(&f, i);
    ferry_frames_close(&f);
    assert_int_equal(frees, FERRY_MAX_FRAMES + 2);
    /* The next message starts clean. */
    frees = 0;
    send_counted(fx->out, 1);
    assert_int_equal(ferry_frames_recv(fx->in, &f), FERRY_OK);
    assert_int_equal(f.count, 1);
    assert_false(f.truncated);
    ferry_frames_close(&f);
    assert_int_equal(frees, 1);
}

/* Frames sent on are not closed again; the others are. */
static void test_moved_frames_are_skipped(void **state)
{
    fixture *fx = *state;
    send_counted(fx->out, 3);
    ferry_frames f;
    assert_int_equal(ferry_frames_recv(fx->in, &f), FERRY_OK);
    assert_int_equal(f.count, 3);
    assert_int_equal(ferry_wire_forward(fx->far_out, NULL, 0, &f.frames[1]), FERRY_OK);
    ferry_frame_moved(&f, 1);
    /* Frame 2 moves into a message of the caller's. */
    zmq_msg_t kept;
    zmq_msg_init(&kept);
    assert_int_equal(zmq_msg_move(&kept, &f.frames[2]), 0);
    ferry_frame_moved(&f, 2);
    ferry_frames_close(&f);
    assert_int_equal(frees, 1); /* frame 0 only */
    zmq_msg_close(&kept);
    assert_int_equal(frees, 2);
    /* The forwarded frame arrives whole, and is freed by its last close. */
    ferry_frames g;
    assert_int_equal(ferry_frames_recv(fx->far_in, &g), FERRY_OK);
    assert_int_equal(g.count, 1);
    assert_int_equal(ferry_frame_size(&g, 0), 50);
    assert_memory_equal(ferry_frame_data(&g, 0),
                        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 50);
    ferry_frames_close(&g);
    assert_int_equal(frees, 3);
}

/* ferry_frames_close leaves a frame marked moved to whoever took it: here
 * the test, which closes it itself. */
static void test_moved_frame_is_not_closed(void **state)
{
    fixture *fx = *state;
    send_counted(fx->out, 3);
    ferry_frames f;
    assert_int_equal(ferry_frames_recv(fx->in, &f), FERRY_OK);
    ferry_frame_moved(&f, 1);
    ferry_frames_close(&f);
    assert_int_equal(frees, 2);
    zmq_msg_close(&f.frames[1]);
    assert_int_equal(frees, 3);
}

/* A frame that failed to go on is still open: ferry_frames_close closes it. */
static void test_failed_forward_stays_open(void **state)
{
    fixture *fx = *state;
    /* A ROUTER with no such peer refuses the send (ROUTER_MANDATORY). */
    char err[256];
    ferry_socket_opts o = {.type = ZMQ_ROUTER, .endpoint = "inproc://frames-r", .bind = 1};
    void *router = ferry_socket_open(fx->ctx, &o, err, sizeof err);
    assert_non_null(router);
    send_counted(fx->out, 1);
    ferry_frames f;
    assert_int_equal(ferry_frames_recv(fx->in, &f), FERRY_OK);
    assert_int_equal(ferry_wire_forward(router, "nobody", 6, &f.frames[0]), FERRY_EUNREACHABLE);
    assert_frame(&f, 0);
    ferry_frames_close(&f);
    assert_int_equal(frees, 1);
    ferry_socket_close(&router);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_waiting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whole_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_frames_are_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_frame_is_not_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_forward_stays_open, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

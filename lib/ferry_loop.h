/*
 * ferry_loop: the one event loop of every Ferry process.
 *
 * One thread, one zmq_poll over ZeroMQ sockets and plain file descriptors,
 * timers from a heap, no polling interval: the poll sleeps exactly until the
 * next timer or the next message. SIGINT and SIGTERM are caught and reported
 * through on_signal (default: stop the loop).
 */
#ifndef FERRY_LOOP_H
#define FERRY_LOOP_H

#include "ferry_err.h"
#include "ferry_timer.h"

#include <stdint.h>

#define FERRY_LOOP_MAX_ITEMS 64

typedef struct ferry_loop ferry_loop;

/* Called when the item is ready; revents holds ZMQ_POLLIN / ZMQ_POLLOUT / ZMQ_POLLERR. */
typedef void (*ferry_loop_fn)(ferry_loop *loop, short revents, void *arg);
typedef void (*ferry_signal_fn)(ferry_loop *loop, int signo, void *arg);

typedef struct {
    void *socket; /* ZeroMQ socket, or NULL for a file descriptor */
    int fd;
    short events;
    ferry_loop_fn fn;
    void *arg;
    int by_fd;    /* a socket polled through its ZMQ_FD (ferry_loop_add_quiet_socket) */
    int kick;     /* call fn at the next turn whatever the poll says */
} ferry_loop_item;

struct ferry_loop {
    ferry_timers timers;
    ferry_loop_item items[FERRY_LOOP_MAX_ITEMS];
    int nitems;
    int stopping;
    unsigned removals; /* bumped by every removal: callbacks of removed items are skipped */
    int64_t now_ms; /* cached clock, refreshed after every poll */
    int64_t now_us; /* the same reading in microseconds (for metrics: no clock read per message) */
    ferry_signal_fn on_signal;
    void *signal_arg;
    int catch_hup; /* set before ferry_loop_run: SIGHUP is caught too, for on_signal */
};

void ferry_loop_init(ferry_loop *loop);
void ferry_loop_fini(ferry_loop *loop);

/* Watches a ZeroMQ socket. FERRY_EOVERLOADED when FERRY_LOOP_MAX_ITEMS are watched. */
ferry_err ferry_loop_add_socket(ferry_loop *loop, void *socket, short events, ferry_loop_fn fn,
                                void *arg);

/*
 * Watches a ZeroMQ socket that rarely has input (a monitor) for ZMQ_POLLIN,
 * through its ZMQ_FD as a plain descriptor. zmq_poll checks every socket
 * item with ZMQ_EVENTS on every turn, two system calls each even when idle;
 * a descriptor costs nothing until it signals. The descriptor is
 * edge-triggered: fn must read until nothing is left (EAGAIN) every time it
 * is called, and is called once at the first turn in case input came before.
 * Removed with ferry_loop_remove_socket.
 */
ferry_err ferry_loop_add_quiet_socket(ferry_loop *loop, void *socket, ferry_loop_fn fn, void *arg);

/* Changes the events watched on a socket already added (0: watch nothing for now). */
void ferry_loop_set_socket(ferry_loop *loop, void *socket, short events);

/* Stops watching a socket; a no-op when it is not watched. */
void ferry_loop_remove_socket(ferry_loop *loop, void *socket);

/* Watches a file descriptor, or changes the events of one already watched. */
ferry_err ferry_loop_set_fd(ferry_loop *loop, int fd, short events, ferry_loop_fn fn, void *arg);
void ferry_loop_remove_fd(ferry_loop *loop, int fd);

/* Installs SIGINT/SIGTERM handling and runs until ferry_loop_stop. */
ferry_err ferry_loop_run(ferry_loop *loop);

/* Makes ferry_loop_run return after the current iteration. */
void ferry_loop_stop(ferry_loop *loop);

/* Arms timer at now + after_ms. */
ferry_err ferry_loop_timer(ferry_loop *loop, ferry_timer *timer, int64_t after_ms);

#endif

/* ferry_loop: zmq_poll + timer heap + signal flag. */
#include "ferry_loop.h"

#include "ferry_clock.h"
#include "ferry_log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static volatile sig_atomic_t pending_signal;
static int signal_pipe[2] = {-1, -1};

/*
 * A flag alone would race: a signal landing between the check of the flag
 * and zmq_poll would sleep until the next event. The byte in the pipe wakes
 * the poll whenever the signal lands (the self-pipe trick).
 */
static void on_os_signal(int signo)
{
    int saved = errno;
    pending_signal = signo;
    if (signal_pipe[1] >= 0) {
        char b = 1;
        ssize_t n = write(signal_pipe[1], &b, 1);
        (void)n; /* a full pipe already holds a wake-up */
    }
    errno = saved;
}

static int open_signal_pipe(void)
{
    if (signal_pipe[0] >= 0)
        return 0;
    if (pipe(signal_pipe) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(signal_pipe[i], F_SETFL, fcntl(signal_pipe[i], F_GETFL) | O_NONBLOCK);
        fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC);
    }
    return 0;
}

static void drain_signal_pipe(void)
{
    char buf[64];
    while (read(signal_pipe[0], buf, sizeof buf) > 0) {
    }
}

void ferry_loop_init(ferry_loop *loop)
{
    memset(loop, 0, sizeof *loop);
    ferry_timers_init(&loop->timers);
    loop->now_us = ferry_now_us();
    loop->now_ms = loop->now_us / 1000;
}

void ferry_loop_fini(ferry_loop *loop)
{
    ferry_timers_fini(&loop->timers);
    loop->nitems = 0;
}

ferry_err ferry_loop_add_socket(ferry_loop *loop, void *socket, short events, ferry_loop_fn fn,
                                void *arg)
{
    assert(socket && fn);
    if (loop->nitems == FERRY_LOOP_MAX_ITEMS)
        return FERRY_EOVERLOADED;
    loop->items[loop->nitems++] =
        (ferry_loop_item){.socket = socket, .fd = -1, .events = events, .fn = fn, .arg = arg};
    return FERRY_OK;
}

ferry_err ferry_loop_set_fd(ferry_loop *loop, int fd, short events, ferry_loop_fn fn, void *arg)
{
    for (int i = 0; i < loop->nitems; i++) {
        ferry_loop_item *it = &loop->items[i];
        if (!it->socket && it->fd == fd) {
            it->events = events;
            it->fn = fn;
            it->arg = arg;
            return FERRY_OK;
        }
    }
    if (loop->nitems == FERRY_LOOP_MAX_ITEMS)
        return FERRY_EOVERLOADED;
    loop->items[loop->nitems++] =
        (ferry_loop_item){.socket = NULL, .fd = fd, .events = events, .fn = fn, .arg = arg};
    return FERRY_OK;
}

ferry_err ferry_loop_add_quiet_socket(ferry_loop *loop, void *socket, ferry_loop_fn fn, void *arg)
{
    assert(socket && fn);
    int fd;
    size_t len = sizeof fd;
    if (zmq_getsockopt(socket, ZMQ_FD, &fd, &len) != 0)
        return FERRY_EIO;
    if (loop->nitems == FERRY_LOOP_MAX_ITEMS)
        return FERRY_EOVERLOADED;
    loop->items[loop->nitems++] = (ferry_loop_item){.socket = socket,
                                                    .fd = fd,
                                                    .events = ZMQ_POLLIN,
                                                    .fn = fn,
                                                    .arg = arg,
                                                    .by_fd = 1,
                                                    .kick = 1};
    return FERRY_OK;
}

void ferry_loop_set_socket(ferry_loop *loop, void *socket, short events)
{
    for (int i = 0; i < loop->nitems; i++)
        if (loop->items[i].socket == socket)
            loop->items[i].events = events;
}

void ferry_loop_remove_socket(ferry_loop *loop, void *socket)
{
    for (int i = 0; i < loop->nitems; i++) {
        if (loop->items[i].socket == socket) {
            loop->items[i] = loop->items[--loop->nitems];
            loop->removals++;
            return;
        }
    }
}

void ferry_loop_remove_fd(ferry_loop *loop, int fd)
{
    for (int i = 0; i < loop->nitems; i++) {
        if (!loop->items[i].socket && loop->items[i].fd == fd) {
            loop->items[i] = loop->items[--loop->nitems];
            loop->removals++;
            return;
        }
    }
}

void ferry_loop_stop(ferry_loop *loop)
{
    loop->stopping = 1;
}

ferry_err ferry_loop_timer(ferry_loop *loop, ferry_timer *timer, int64_t after_ms)
{
    return ferry_timer_start(&loop->timers, timer, ferry_now_ms() + after_ms);
}

static int still_watched(const ferry_loop *loop, const ferry_loop_item *it)
{
    for (int i = 0; i < loop->nitems; i++) {
        const ferry_loop_item *cur = &loop->items[i];
        if (cur->socket == it->socket && cur->fd == it->fd && cur->fn == it->fn &&
            cur->arg == it->arg)
            return 1;
    }
    return 0;
}

ferry_err ferry_loop_run(ferry_loop *loop)
{
    if (open_signal_pipe() != 0) {
        ferry_error("loop_failed", "error=\"pipe: %s\"", strerror(errno));
        return FERRY_EIO;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_os_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (loop->catch_hup)
        sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* One slot more than the items: the signal pipe is polled last. */
    zmq_pollitem_t polls[FERRY_LOOP_MAX_ITEMS + 1];
    ferry_loop_item snapshot[FERRY_LOOP_MAX_ITEMS];
    loop->stopping = 0;
    while (!loop->stopping) {
        if (pending_signal) {
            int signo = pending_signal;
            pending_signal = 0;
            drain_signal_pipe();
            if (loop->on_signal)
                loop->on_signal(loop, signo, loop->signal_arg);
            else
                loop->stopping = 1;
            continue;
        }
        /* Items watching nothing stay out of the poll: zmq_poll checks every
         * socket it is given with ZMQ_EVENTS, two system calls, events or not. */
        int n = 0;
        int kicked = 0;
        for (int i = 0; i < loop->nitems; i++) {
            const ferry_loop_item *it = &loop->items[i];
            if (!it->events && !it->kick)
                continue;
            snapshot[n] = *it;
            polls[n] = (zmq_pollitem_t){.socket = it->by_fd ? NULL : it->socket,
                                        .fd = it->fd,
                                        .events = it->events};
            kicked |= it->kick;
            n++;
        }
        polls[n] = (zmq_pollitem_t){.socket = NULL, .fd = signal_pipe[0], .events = ZMQ_POLLIN};
        loop->now_us = ferry_now_us();
        loop->now_ms = loop->now_us / 1000;
        long timeout = kicked ? 0 : ferry_timers_timeout(&loop->timers, loop->now_ms);
        int rc = zmq_poll(polls, n + 1, timeout);
        loop->now_us = ferry_now_us();
        loop->now_ms = loop->now_us / 1000;
        if (rc < 0) {
            if (zmq_errno() == EINTR)
                continue;
            if (zmq_errno() == ETERM)
                return FERRY_OK;
            ferry_error("poll_failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
            return FERRY_EIO;
        }
        unsigned removals = loop->removals;
        for (int i = 0; i < n && (rc > 0 || kicked); i++) {
            if (!polls[i].revents && !snapshot[i].kick)
                continue;
            if (polls[i].revents)
                rc--;
            /* An earlier callback of this turn may have removed this item
             * (and freed its arg): call only what is still watched. */
            if (loop->removals != removals && !still_watched(loop, &snapshot[i]))
                continue;
            if (snapshot[i].kick) { /* once: cleared where it is kept */
                for (int k = 0; k < loop->nitems; k++) {
                    ferry_loop_item *it = &loop->items[k];
                    if (it->socket == snapshot[i].socket && it->fn == snapshot[i].fn &&
                        it->arg == snapshot[i].arg)
                        it->kick = 0;
                }
            }
            snapshot[i].fn(loop, polls[i].revents ? polls[i].revents : ZMQ_POLLIN,
                           snapshot[i].arg);
        }
        ferry_timers_run(&loop->timers, ferry_now_ms());
    }
    return FERRY_OK;
}

/*
 * ferry_metrics_http: GET /metrics over HTTP, served by libmicrohttpd from
 * the process's own ferry_loop.
 *
 * The daemon runs without a thread of its own (external polling through its
 * one epoll descriptor, which the loop watches, plus a timer for its
 * connection timeouts), so a scrape runs on the loop's thread between two
 * messages: the render callback reads the owner's counters directly, with
 * no lock and no copy on the message path. A scrape costs the owner the
 * time to render; connections are capped (FERRY_METRICS_HTTP_CONNECTIONS)
 * and idle ones closed after FERRY_METRICS_HTTP_IDLE_S.
 *
 * GET or HEAD /metrics answers 200 with the Prometheus text format; any
 * other path 404, any other method 405. No authentication: bind it to
 * loopback or a private network.
 *
 * Who may call: the loop's thread.
 */
#ifndef FERRY_METRICS_HTTP_H
#define FERRY_METRICS_HTTP_H

#include "ferry_buf.h"
#include "ferry_err.h"
#include "ferry_loop.h"

#include <stddef.h>

#define FERRY_METRICS_HTTP_CONNECTIONS 16
#define FERRY_METRICS_HTTP_IDLE_S 10

/* Appends the exposition to out; FERRY_ENOMEM makes the scrape answer 500. */
typedef ferry_err (*ferry_metrics_render_fn)(ferry_buf *out, void *arg);

typedef struct ferry_metrics_http ferry_metrics_http;

/*
 * Listens on hostport ("127.0.0.1:9464", "[::1]:9464", "0.0.0.0:9464",
 * "localhost:9464"; port 0 picks a free one) and serves render's output on
 * loop. On failure writes a line naming the address and the reason into err
 * and returns FERRY_EUSAGE (bad address) or FERRY_EIO (cannot listen).
 */
ferry_err ferry_metrics_http_open(ferry_metrics_http **out, ferry_loop *loop, const char *hostport,
                                  ferry_metrics_render_fn render, void *arg, char *err,
                                  size_t errlen);

/* The port it listens on (the one picked, for port 0). */
int ferry_metrics_http_port(const ferry_metrics_http *h);

/* Stops listening, closes every connection and frees *h; NULL-safe, nulls *h. */
void ferry_metrics_http_destroy(ferry_metrics_http **h);

#endif

/* ferry_metrics_http: libmicrohttpd driven by ferry_loop (ferry_metrics_http.h). */
#include "ferry_metrics_http.h"

#include "ferry_log.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zmq.h>

struct ferry_metrics_http {
    struct MHD_Daemon *daemon;
    ferry_loop *loop;  /* borrowed */
    int epoll_fd;      /* the daemon's: readable when a socket of it is */
    ferry_timer timer; /* the daemon's next timeout (idle connections) */
    ferry_metrics_render_fn render;
    void *arg;
    int port;
};

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                              enum MHD_ResponseMemoryMode mode, const char *type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO; /* the connection is closed */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)con_cls;
    ferry_metrics_http *h = cls;
    static char not_found[] = "not found: try /metrics\n";
    static char not_allowed[] = "only GET and HEAD\n";
    static char failed[] = "out of memory\n";
    const char *text = "text/plain; charset=utf-8";
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        *upload_data_size = 0; /* a body is not read */
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, sizeof not_allowed - 1,
                      MHD_RESPMEM_PERSISTENT, text);
    }
    if (strcmp(url, "/metrics") != 0)
        return answer(c, MHD_HTTP_NOT_FOUND, not_found, sizeof not_found - 1,
                      MHD_RESPMEM_PERSISTENT, text);
    ferry_buf out = FERRY_BUF_INIT;
    if (h->render(&out, h->arg) != FERRY_OK) {
        ferry_buf_fini(&out);
        return answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, failed, sizeof failed - 1,
                      MHD_RESPMEM_PERSISTENT, text);
    }
    if (!out.data) /* nothing at all to say: an empty, valid exposition */
        return answer(c, MHD_HTTP_OK, not_found, 0, MHD_RESPMEM_PERSISTENT,
                      "text/plain; version=0.0.4; charset=utf-8");
    /* The response takes out's bytes and frees them. */
    return answer(c, MHD_HTTP_OK, out.data, out.len, MHD_RESPMEM_MUST_FREE,
                  "text/plain; version=0.0.4; charset=utf-8");
}

static unsigned connections(ferry_metrics_http *h)
{
    const union MHD_DaemonInfo *i =
        MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

/*
 * Runs the daemon, then arms the timer for what it waits for next. At its
 * connection cap libmicrohttpd takes the listening socket out of its epoll
 * set, and puts it back only at the start of a later run: when this run
 * closed connections, run once more, or no new connection would ever wake
 * the loop (seen with libmicrohttpd 0.9.75: scrapes refused for good after
 * 16 idle connections came and went).
 */
static void run(ferry_metrics_http *h)
{
    unsigned before = connections(h);
    MHD_run(h->daemon);
    if (connections(h) < before)
        MHD_run(h->daemon);
    ferry_timer_stop(&h->loop->timers, &h->timer);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->daemon, &ms) == MHD_YES)
        ferry_loop_timer(h->loop, &h->timer, ms > 3600000 ? 3600000 : (int64_t)ms);
}

static void on_ready(ferry_loop *loop, short revents, void *arg)
{
    (void)loop;
    (void)revents;
    run(arg);
}

static void on_timer(ferry_timer *timer, void *arg)
{
    (void)timer;
    run(arg);
}

/* libmicrohttpd's messages (a malformed request, mostly): at most one line a second, as
 * anything a peer can cause at will. */
static void on_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    static int64_t last_ms;
    static uint64_t suppressed;
    char line[256];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    ferry_log_limited(&last_ms, &suppressed, FERRY_LOG_WARN, "metrics_http", "message=\"%s\"",
                      line);
}

/* Splits "host:port" or "[v6]:port" into host and port; 0 when malformed. */
static int split(const char *hostport, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    const char *h = hostport;
    size_t hl;
    if (*hostport == '[') {
        const char *close = strchr(hostport, ']');
        if (!close || close[1] != ':')
            return 0;
        h = hostport + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(hostport, ':');
        if (!colon)
            return 0;
        hl = (size_t)(colon - hostport);
    }
    size_t pl = strlen(colon + 1);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen ||
        strspn(colon + 1, "0123456789") != pl)
        return 0;
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return atoi(port) <= 65535;
}

ferry_err ferry_metrics_http_open(ferry_metrics_http **out, ferry_loop *loop, const char *hostport,
                                  ferry_metrics_render_fn render, void *arg, char *err,
                                  size_t errlen)
{
    *out = NULL;
    char host[256], port[8];
    if (!split(hostport, host, sizeof host, port, sizeof port)) {
        snprintf(err, errlen, "metrics address '%s': want HOST:PORT (127.0.0.1:9464, [::1]:9464)",
                 hostport);
        return FERRY_EUSAGE;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "metrics address '%s': %s", hostport, gai_strerror(gai));
        return FERRY_EUSAGE;
    }
    ferry_metrics_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "metrics address '%s': out of memory", hostport);
        return FERRY_ENOMEM;
    }
    h->loop = loop;
    h->render = render;
    h->arg = arg;
    ferry_timer_init(&h->timer, on_timer, h);
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_log,
                         NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                         (unsigned)FERRY_METRICS_HTTP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                         (unsigned)FERRY_METRICS_HTTP_IDLE_S, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        snprintf(err, errlen,
                 "metrics address '%s': cannot listen (in use, or not an address "
                 "of this host)",
                 hostport);
        free(h);
        return FERRY_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pinfo = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->epoll_fd = info ? info->epoll_fd : -1;
    h->port = pinfo ? pinfo->port : 0;
    if (h->epoll_fd < 0 || ferry_loop_set_fd(loop, h->epoll_fd, ZMQ_POLLIN, on_ready, h)) {
        snprintf(err, errlen, "metrics address '%s': cannot watch its descriptor", hostport);
        MHD_stop_daemon(h->daemon);
        free(h);
        return FERRY_EIO;
    }
    ferry_info("metrics_listening", "address=%s port=%d", hostport, h->port);
    *out = h;
    return FERRY_OK;
}

int ferry_metrics_http_port(const ferry_metrics_http *h)
{
    return h->port;
}

void ferry_metrics_http_destroy(ferry_metrics_http **hp)
{
    ferry_metrics_http *h = *hp;
    if (!h)
        return;
    ferry_loop_remove_fd(h->loop, h->epoll_fd);
    ferry_timer_stop(&h->loop->timers, &h->timer);
    MHD_stop_daemon(h->daemon);
    free(h);
    *hp = NULL;
}

/*
 * http: http.get(url [, options]) and http.request{method=, url=, ...}
 * through libcurl's multi interface, driven by the worker's own loop.
 *
 * No thread per request and nothing blocking: curl says which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION) and when to wake it up
 * (CURLMOPT_TIMERFUNCTION); readiness and timeouts go back to it through
 * curl_multi_socket_action, and finished transfers come out of
 * curl_multi_info_read and answer their calls. The sockets sit in one epoll
 * set whose own fd the worker's loop watches: the loop holds at most
 * FERRY_LOOP_MAX_ITEMS items, far fewer than the connections of a busy
 * worker, while the epoll set holds any number and costs one loop item.
 *
 * Host names are resolved by curl (Debian's libcurl does it on a
 * short-lived thread of its own per lookup); IP literals and "localhost"
 * need no lookup.
 *
 * Where a request may connect (SSRF): every socket curl opens goes through
 * on_open_socket (CURLOPT_OPENSOCKETFUNCTION), which judges the address it
 * is about to connect to by http_addr.h's policy: loopback, private,
 * link-local and the other internal ranges are refused unless --http-allow
 * opens them. That is the resolved address of each attempt, redirects and
 * every address of a name included, so neither a name that resolves inward
 * nor DNS rebinding gets past it. Proxies are never used, whatever
 * http_proxy and friends say: a proxy would connect on the script's behalf
 * to an address this check never sees.
 *
 * Bounds, each an option with a default and a hard cap: timeout_ms (the
 * whole transfer, redirects included; default 30 s, never past the call's
 * own deadline), max_redirects (5), max_body (8 MiB; a larger body is an
 * error, not a truncation). Response headers are capped at
 * HTTP_MAX_HEADER_BYTES and HTTP_MAX_HEADER_LINES per response; only http
 * and https are spoken, redirects included.
 *
 * An HTTP status is a result, whatever it is (404 included). A transfer that
 * fails (refused, reset, bad TLS, too many redirects, body too large) is a
 * `call_error`; one that runs out of time is a `timeout`.
 */
#include "functions.h"

#include "ferry_buf.h"
#include "ferry_log.h"
#include "http_addr.h"

#include <arpa/inet.h>
#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <utlist.h>
#include <zmq.h>

#define HTTP_DEFAULT_TIMEOUT_MS 30000
#define HTTP_MAX_TIMEOUT_MS 86400000
#define HTTP_DEFAULT_REDIRECTS 5
#define HTTP_MAX_REDIRECTS 50
#define HTTP_DEFAULT_MAX_BODY (8 * 1024 * 1024)
#define HTTP_MAX_BODY (1024 * 1024 * 1024)
#define HTTP_MAX_HEADER_BYTES (256 * 1024) /* per response */
#define HTTP_MAX_HEADER_LINES 500          /* per response: joining is linear per line */
#define HTTP_MAX_METHOD 32
#define EPOLL_BATCH 256
#define EPOLL_ROUNDS 4 /* batches per wake-up, so that timers and the broker are not starved */

typedef struct http_req http_req;

struct worker_http {
    ferry_worker *worker; /* borrowed; outlived by this (see worker_http_destroy) */
    CURLM *multi;
    int epfd;          /* the sockets curl asked us to watch */
    int global;        /* curl_global_init succeeded */
    ferry_timer timer; /* curl's timeout (CURLMOPT_TIMERFUNCTION) */
    ferry_timer reap;  /* fails transfers whose socket could not be watched */
    http_req *reqs;    /* transfers in the multi handle (utlist DL) */
    size_t nreqs;
    int64_t last_log_ms;
    uint64_t suppressed;
    http_addr_policy policy; /* owned; what connections may reach */
};

typedef struct {
    char *name;      /* lower-cased; owned */
    ferry_buf value; /* repeated headers joined with ", " */
} http_header;

/* Options of one request, borrowed from the call's arguments. */
typedef struct {
    char method[HTTP_MAX_METHOD + 1];
    const char *url;
    size_t url_len;
    const Ferry__Value *headers; /* a table, or NULL */
    const char *body;            /* NULL: none */
    size_t body_len;
    int64_t timeout_ms;
    int64_t max_redirects;
    int64_t max_body;
} http_opts;

struct http_req {
    worker_http *http;
    ferry_call *call;
    CURL *easy;
    struct curl_slist *headers;
    char *url; /* NUL-terminated copy */
    char method[HTTP_MAX_METHOD + 1];
    int64_t timeout_ms;
    size_t max_body;
    ferry_buf body;
    http_header *hdrs;
    size_t nhdrs, caphdrs;
    size_t hdr_bytes;
    int too_big;      /* the body passed max_body: the transfer was stopped */
    int hdrs_too_big; /* the headers passed their bounds */
    int oom;          /* a buffer could not grow */
    int sock_failed;  /* a socket of it could not be watched: reap it */
    char errbuf[CURL_ERROR_SIZE];
    const char *refused_why;        /* the first refused address's reason (static), or NULL */
    char refused[INET6_ADDRSTRLEN]; /* that address */
    http_req *prev, *next;
};

/* ---- the response ---------------------------------------------------------- */

static void headers_clear(http_req *req)
{
    for (size_t i = 0; i < req->nhdrs; i++) {
        free(req->hdrs[i].name);
        ferry_buf_fini(&req->hdrs[i].value);
    }
    req->nhdrs = 0;
    req->hdr_bytes = 0;
}

static size_t trim(const char **s, size_t len)
{
    while (len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        len--;
    }
    while (len && ((*s)[len - 1] == ' ' || (*s)[len - 1] == '\t' || (*s)[len - 1] == '\r' ||
                   (*s)[len - 1] == '\n'))
        len--;
    return len;
}

/* Adds name: value, joining a repeated name's values with ", ". 0 when out of memory. */
static int header_add(http_req *req, const char *name, size_t nlen, const char *value, size_t vlen)
{
    for (size_t i = 0; i < req->nhdrs; i++) {
        http_header *h = &req->hdrs[i];
        if (strlen(h->name) == nlen && strncasecmp(h->name, name, nlen) == 0)
            return ferry_buf_append(&h->value, ", ", 2) == FERRY_OK &&
                   ferry_buf_append(&h->value, value, vlen) == FERRY_OK;
    }
    if (req->nhdrs == req->caphdrs) {
        size_t cap = req->caphdrs ? req->caphdrs * 2 : 16;
        http_header *p = realloc(req->hdrs, cap * sizeof *p);
        if (!p)
            return 0;
        req->hdrs = p;
        req->caphdrs = cap;
    }
    http_header *h = &req->hdrs[req->nhdrs];
    h->name = malloc(nlen + 1);
    if (!h->name)
        return 0;
    for (size_t i = 0; i < nlen; i++) {
        char c = name[i];
        h->name[i] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    h->name[nlen] = '\0';
    h->value = (ferry_buf)FERRY_BUF_INIT;
    /* An empty value still makes a (NUL-terminated) string. */
    if (ferry_buf_append(&h->value, value, vlen) != FERRY_OK ||
        ferry_buf_append(&h->value, "", 0) != FERRY_OK) {
        free(h->name);
        ferry_buf_fini(&h->value);
        return 0;
    }
    req->nhdrs++;
    return 1;
}

/* One header line of a response (curl hands them over one by one, CRLF included).
 * Returning anything but len stops the transfer (CURLE_WRITE_ERROR). */
static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    http_req *req = arg;
    size_t len = size * nmemb;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        /* A new response (after a redirect or a 1xx): only the last one counts. */
        headers_clear(req);
        ferry_buf_reset(&req->body);
        return len;
    }
    req->hdr_bytes += len;
    if (req->hdr_bytes > HTTP_MAX_HEADER_BYTES || req->nhdrs >= HTTP_MAX_HEADER_LINES) {
        req->hdrs_too_big = 1;
        return 0;
    }
    const char *line = data;
    size_t n = trim(&line, len);
    if (n == 0)
        return len; /* the blank line that ends the headers */
    if ((data[0] == ' ' || data[0] == '\t') && req->nhdrs) {
        /* obs-fold: the previous header's value goes on. */
        ferry_buf *v = &req->hdrs[req->nhdrs - 1].value;
        if (ferry_buf_append(v, " ", 1) != FERRY_OK || ferry_buf_append(v, line, n) != FERRY_OK) {
            req->oom = 1;
            return 0;
        }
        return len;
    }
    const char *colon = memchr(line, ':', n);
    if (!colon || colon == line)
        return len; /* not a header: ignore it as browsers do */
    const char *value = colon + 1;
    size_t vlen = trim(&value, n - (size_t)(value - line));
    if (!header_add(req, line, (size_t)(colon - line), value, vlen)) {
        req->oom = 1;
        return 0;
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    http_req *req = arg;
    size_t len = size * nmemb;
    if (req->body.len + len > req->max_body) {
        req->too_big = 1;
        return 0;
    }
    if (ferry_buf_append(&req->body, data, len) != FERRY_OK) {
        req->oom = 1;
        return 0;
    }
    return len;
}

/* {status=, headers={...}, body=, url=}, or NULL when memory runs out. */
static Ferry__Value *response(http_req *req)
{
    long status = 0;
    char *url = NULL;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(req->easy, CURLINFO_EFFECTIVE_URL, &url);
    Ferry__Value *t = ferry_value_table();
    Ferry__Value *h = ferry_value_table();
    if (!t || !h) {
        ferry_value_free(t);
        ferry_value_free(h);
        return NULL;
    }
    ferry_err err = FERRY_OK;
    for (size_t i = 0; i < req->nhdrs && !err; i++)
        err = ferry_table_set_field(
            h, req->hdrs[i].name,
            ferry_value_string(req->hdrs[i].value.data ? req->hdrs[i].value.data : "",
                               req->hdrs[i].value.len));
    if (err) {
        ferry_value_free(h);
        ferry_value_free(t);
        return NULL;
    }
    if (ferry_table_set_field(t, "status", ferry_value_int(status)) ||
        ferry_table_set_field(t, "headers", h) ||
        ferry_table_set_field(
            t, "body", ferry_value_string(req->body.data ? req->body.data : "", req->body.len)) ||
        ferry_table_set_field(t, "url", ferry_value_cstring(url ? url : req->url))) {
        ferry_value_free(t);
        return NULL;
    }
    return t;
}

/* ---- one transfer -------------------------------------------------------- */

static void req_free(http_req *req)
{
    worker_http *h = req->http;
    if (req->easy) {
        curl_multi_remove_handle(h->multi, req->easy);
        curl_easy_cleanup(req->easy);
    }
    DL_DELETE(h->reqs, req);
    h->nreqs--;
    curl_slist_free_all(req->headers);
    headers_clear(req);
    free(req->hdrs);
    ferry_buf_fini(&req->body);
    free(req->url);
    free(req);
}

/* Answers the call of a finished transfer and frees it. */
static void finish(http_req *req, CURLcode rc)
{
    ferry_call *call = req->call;
    const char *fn = ferry_call_function(call);
    char reason[CURL_ERROR_SIZE + 256];
    ferry_err code = FERRY_ECALL;
    Ferry__Value *result = NULL;
    if (req->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(reason, sizeof reason, "response body over %zu bytes (max_body)", req->max_body);
    } else if (req->hdrs_too_big) {
        snprintf(reason, sizeof reason, "response headers over %d bytes or %d lines",
                 HTTP_MAX_HEADER_BYTES, HTTP_MAX_HEADER_LINES);
    } else if (req->oom) {
        code = FERRY_ENOMEM;
        snprintf(reason, sizeof reason, "out of memory");
    } else if (req->sock_failed) {
        code = FERRY_EIO;
        snprintf(reason, sizeof reason, "cannot watch the connection's socket");
    } else if (req->refused_why && rc == CURLE_COULDNT_CONNECT) {
        /* Every address curl tried was refused (else it would have connected). */
        char *at = NULL;
        long hops = 0;
        curl_easy_getinfo(req->easy, CURLINFO_EFFECTIVE_URL, &at);
        curl_easy_getinfo(req->easy, CURLINFO_REDIRECT_COUNT, &hops);
        if (at && hops > 0)
            snprintf(reason, sizeof reason,
                     "address %s refused (%s; see --http-allow) after a redirect to %.200s",
                     req->refused, req->refused_why, at);
        else
            snprintf(reason, sizeof reason, "address %s refused (%s; see --http-allow)",
                     req->refused, req->refused_why);
        ferry_log_limited(&req->http->last_log_ms, &req->http->suppressed, FERRY_LOG_WARN,
                          "http_refused", "function=%s addr=%s why=\"%s\"", fn, req->refused,
                          req->refused_why);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        code = FERRY_ETIMEOUT;
        snprintf(reason, sizeof reason, "no complete response within %lld ms (%s)",
                 (long long)req->timeout_ms, req->errbuf[0] ? req->errbuf : "timeout_ms");
    } else if (rc != CURLE_OK) {
        snprintf(reason, sizeof reason, "%s%s",
                 req->errbuf[0] ? req->errbuf : curl_easy_strerror(rc),
                 rc == CURLE_TOO_MANY_REDIRECTS ? " (max_redirects)" : "");
    } else {
        code = FERRY_OK;
        result = response(req);
        if (!result) {
            code = FERRY_ENOMEM;
            snprintf(reason, sizeof reason, "out of memory building the result");
        }
    }
    if (code == FERRY_OK) {
        long status = 0;
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
        ferry_debug("http_done", "function=%s method=%s status=%ld bytes=%zu", fn, req->method,
                    status, req->body.len);
    } else {
        ferry_debug("http_failed", "function=%s method=%s error=%s curl=%d", fn, req->method,
                    ferry_err_code(code), (int)rc);
    }
    /* The message needs the URL; the reply needs nothing of req. */
    char message[1024];
    if (code != FERRY_OK)
        snprintf(message, sizeof message, "%s: %s %s: %s", fn, req->method, req->url, reason);
    req_free(req);
    if (code == FERRY_OK)
        ferry_call_return_values(call, 1, result);
    else
        ferry_call_fail(call, code, "%s", message);
}

/* Takes every finished transfer out of the multi handle and answers it. */
static void collect(worker_http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result; /* msg dies with the handle's removal */
        http_req *req = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
        finish(req, rc);
    }
}

/* The call timed out at the worker, or the worker shuts down: drop the transfer. */
static void on_cancel(ferry_call *call, ferry_err reason, void *arg)
{
    http_req *req = arg;
    req_free(req);
    ferry_call_fail(call, reason, "%s cancelled", ferry_call_function(call));
}

/* ---- curl's sockets and timer, in the worker's loop ---------------------- */

static void log_limited(worker_http *h, const char *event, const char *what)
{
    ferry_log_limited(&h->last_log_ms, &h->suppressed, FERRY_LOG_ERROR, event,
                      "what=%s error=\"%s\"", what, strerror(errno));
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    worker_http *h = userp;
    if (what == CURL_POLL_REMOVE) {
        /* curl has not closed it yet; a failure means it was never added. */
        if (socketp)
            epoll_ctl(h->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {
        .events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u),
        .data.fd = s,
    };
    int rc = epoll_ctl(h->epfd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s, &ev);
    /* curl reuses numbers of closed sockets: trust the kernel's view over our marker. */
    if (rc < 0 && errno == EEXIST)
        rc = epoll_ctl(h->epfd, EPOLL_CTL_MOD, s, &ev);
    else if (rc < 0 && errno == ENOENT)
        rc = epoll_ctl(h->epfd, EPOLL_CTL_ADD, s, &ev);
    if (rc < 0) {
        /* Returning an error would make curl fail every transfer; fail this one, later
         * (curl must not be re-entered from its own callback). */
        log_limited(h, "http_watch_failed", "epoll_ctl");
        http_req *req = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
        if (req) {
            req->sock_failed = 1;
            if (ferry_worker_timer_start(h->worker, &h->reap, 0) != FERRY_OK)
                log_limited(h, "http_timer_failed", "reap");
        }
        return 0;
    }
    if (!socketp)
        curl_multi_assign(h->multi, s, h); /* any non-NULL marker: "in the epoll set" */
    return 0;
}

static int on_curl_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    worker_http *h = userp;
    if (timeout_ms < 0) {
        ferry_worker_timer_stop(h->worker, &h->timer);
        return 0;
    }
    /* Even 0 goes through the loop: curl must not be re-entered from here. */
    if (ferry_worker_timer_start(h->worker, &h->timer, timeout_ms) != FERRY_OK)
        log_limited(h, "http_timer_failed", "curl");
    return 0;
}

static void on_curl_timer(ferry_timer *timer, void *arg)
{
    (void)timer;
    worker_http *h = arg;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect(h);
}

static void on_reap(ferry_timer *timer, void *arg)
{
    (void)timer;
    worker_http *h = arg;
    http_req *req, *tmp;
    DL_FOREACH_SAFE(h->reqs, req, tmp)
        if (req->sock_failed)
            finish(req, CURLE_COULDNT_CONNECT);
}

static void on_epoll(ferry_worker *w, int fd, short revents, void *arg)
{
    (void)w;
    (void)fd;
    (void)revents;
    worker_http *h = arg;
    struct epoll_event evs[EPOLL_BATCH];
    for (int round = 0; round < EPOLL_ROUNDS; round++) {
        int n = epoll_wait(h->epfd, evs, EPOLL_BATCH, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_limited(h, "http_poll_failed", "epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            int mask = 0;
            if (evs[i].events & (EPOLLIN | EPOLLHUP))
                mask |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                mask |= CURL_CSELECT_OUT;
            if (evs[i].events & EPOLLERR)
                mask |= CURL_CSELECT_ERR;
            int running;
            curl_multi_socket_action(h->multi, evs[i].data.fd, mask, &running);
        }
        if (n < EPOLL_BATCH)
            break;
    }
    collect(h);
}

/* ---- arguments ------------------------------------------------------------- */

static const char *kind(const Ferry__Value *v)
{
    return v ? ferry_value_kind(v) : "no value";
}

/* An HTTP token (RFC 9110): method and header names. */
static int is_token(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              strchr("!#$%&'*+-.^_`|~", c)) ||
            c == '\0')
            return 0;
    }
    return 1;
}

static int int_field(ferry_call *call, size_t argi, const char *name, const Ferry__Value *v,
                     int64_t min, int64_t max, int64_t *out)
{
    if (ferry_value_get_int(v, out) == FERRY_OK && *out >= min && *out <= max)
        return 1;
    ferry_call_fail(call, FERRY_EBADARG,
                    "bad argument #%zu to '%s' (field '%s': integer from %lld to %lld expected, "
                    "got %s)",
                    argi + 1, ferry_call_function(call), name, (long long)min, (long long)max,
                    kind(v));
    return 0;
}

static int string_field(ferry_call *call, size_t argi, const char *name, const Ferry__Value *v,
                        const char **data, size_t *len)
{
    if (ferry_value_get_string(v, data, len) == FERRY_OK)
        return 1;
    ferry_call_fail(call, FERRY_EBADARG,
                    "bad argument #%zu to '%s' (field '%s': string expected, got %s)", argi + 1,
                    ferry_call_function(call), name, kind(v));
    return 0;
}

/*
 * Reads the fields of the options table t (argument argi) into o. The fields
 * method, url and body are allowed only when full (http.request). Unknown
 * fields are refused: a typo must not silently fall back to a default.
 * Returns 0 after failing the call.
 */
static int read_opts(ferry_call *call, size_t argi, const Ferry__Value *t, int full, http_opts *o)
{
    const char *fn = ferry_call_function(call);
    if (ferry_table_len(t)) {
        ferry_call_fail(call, FERRY_EBADARG,
                        "bad argument #%zu to '%s' (table of named fields expected, got a list)",
                        argi + 1, fn);
        return 0;
    }
    size_t pos = 0;
    const Ferry__Value *k, *v;
    while (ferry_table_next(t, &pos, &k, &v)) {
        const char *key;
        size_t klen;
        if (ferry_value_get_string(k, &key, &klen) != FERRY_OK) {
            ferry_call_fail(call, FERRY_EBADARG,
                            "bad argument #%zu to '%s' (field names must be strings, got %s)",
                            argi + 1, fn, kind(k));
            return 0;
        }
#define IS(name) (klen == sizeof name - 1 && memcmp(key, name, klen) == 0)
        if (ferry_value_is_nil(v))
            continue;
        if (IS("timeout_ms")) {
            if (!int_field(call, argi, "timeout_ms", v, 1, HTTP_MAX_TIMEOUT_MS, &o->timeout_ms))
                return 0;
        } else if (IS("max_redirects")) {
            if (!int_field(call, argi, "max_redirects", v, 0, HTTP_MAX_REDIRECTS,
                           &o->max_redirects))
                return 0;
        } else if (IS("max_body")) {
            if (!int_field(call, argi, "max_body", v, 0, HTTP_MAX_BODY, &o->max_body))
                return 0;
        } else if (IS("headers")) {
            if (v->kind_case != FERRY__VALUE__KIND_TABLE || !v->table) {
                ferry_call_fail(call, FERRY_EBADARG,
                                "bad argument #%zu to '%s' (field 'headers': table expected, "
                                "got %s)",
                                argi + 1, fn, kind(v));
                return 0;
            }
            o->headers = v;
        } else if (full && IS("url")) {
            if (!string_field(call, argi, "url", v, &o->url, &o->url_len))
                return 0;
        } else if (full && IS("body")) {
            if (!string_field(call, argi, "body", v, &o->body, &o->body_len))
                return 0;
        } else if (full && IS("method")) {
            const char *m;
            size_t mlen;
            if (!string_field(call, argi, "method", v, &m, &mlen))
                return 0;
            if (!is_token(m, mlen) || mlen > HTTP_MAX_METHOD) {
                ferry_call_fail(call, FERRY_EBADARG,
                                "bad argument #%zu to '%s' (field 'method': an HTTP method "
                                "expected)",
                                argi + 1, fn);
                return 0;
            }
            /* Methods are case-sensitive on the wire; scripts write "post" too. */
            for (size_t i = 0; i < mlen; i++)
                o->method[i] = m[i] >= 'a' && m[i] <= 'z' ? (char)(m[i] - 'a' + 'A') : m[i];
            o->method[mlen] = '\0';
        } else {
            ferry_call_fail(call, FERRY_EBADARG, "bad argument #%zu to '%s' (unknown field '%.*s')",
                            argi + 1, fn, (int)(klen > 64 ? 64 : klen), key);
            return 0;
        }
#undef IS
    }
    return 1;
}

/* The URL must be http:// or https://, without NUL bytes. Returns 0 after failing the call. */
static int check_url(ferry_call *call, size_t argi, const char *what, const http_opts *o)
{
    const char *fn = ferry_call_function(call);
    if (memchr(o->url, '\0', o->url_len)) {
        ferry_call_fail(call, FERRY_EBADARG, "bad argument #%zu to '%s' (%s holds a zero byte)",
                        argi + 1, fn, what);
        return 0;
    }
    if (!(o->url_len > 7 && strncasecmp(o->url, "http://", 7) == 0) &&
        !(o->url_len > 8 && strncasecmp(o->url, "https://", 8) == 0)) {
        ferry_call_fail(call, FERRY_EBADARG,
                        "bad argument #%zu to '%s' (%s: an http:// or https:// URL expected, got "
                        "'%.*s')",
                        argi + 1, fn, what, (int)(o->url_len > 80 ? 80 : o->url_len), o->url);
        return 0;
    }
    return 1;
}

/* Turns the headers table into curl's list. Returns 0 after failing the call. */
static int build_headers(ferry_call *call, size_t argi, const http_opts *o, struct curl_slist **out)
{
    const char *fn = ferry_call_function(call);
    struct curl_slist *list = NULL;
    ferry_buf line = FERRY_BUF_INIT;
    size_t pos = 0;
    const Ferry__Value *k, *v;
    while (o->headers && ferry_table_next(o->headers, &pos, &k, &v)) {
        const char *name, *value;
        size_t nlen, vlen;
        char num[32];
        int64_t i;
        if (ferry_value_get_string(k, &name, &nlen) != FERRY_OK || !is_token(name, nlen)) {
            ferry_call_fail(call, FERRY_EBADARG,
                            "bad argument #%zu to '%s' (field 'headers': names must be HTTP "
                            "tokens)",
                            argi + 1, fn);
            goto fail;
        }
        if (ferry_value_get_string(v, &value, &vlen) == FERRY_OK) {
            if (memchr(value, '\r', vlen) || memchr(value, '\n', vlen) ||
                memchr(value, '\0', vlen)) {
                ferry_call_fail(call, FERRY_EBADARG,
                                "bad argument #%zu to '%s' (header '%.*s': value holds CR, LF "
                                "or a zero byte)",
                                argi + 1, fn, (int)(nlen > 64 ? 64 : nlen), name);
                goto fail;
            }
        } else if (v->kind_case == FERRY__VALUE__KIND_INTEGER &&
                   ferry_value_get_int(v, &i) == FERRY_OK) {
            snprintf(num, sizeof num, "%lld", (long long)i);
            value = num;
            vlen = strlen(num);
        } else {
            ferry_call_fail(call, FERRY_EBADARG,
                            "bad argument #%zu to '%s' (header '%.*s': string expected, got %s)",
                            argi + 1, fn, (int)(nlen > 64 ? 64 : nlen), name, kind(v));
            goto fail;
        }
        ferry_buf_reset(&line);
        /* "Name:" alone would tell curl to remove its own header; "Name;" sends it empty. */
        if (ferry_buf_append(&line, name, nlen) ||
            ferry_buf_append(&line, vlen ? ": " : ";", vlen ? 2 : 1) ||
            ferry_buf_append(&line, value, vlen) || ferry_buf_append(&line, "", 0))
            goto oom;
        struct curl_slist *l = curl_slist_append(list, line.data);
        if (!l)
            goto oom;
        list = l;
    }
    /* No "Expect: 100-continue" round trip before larger bodies. */
    struct curl_slist *l = curl_slist_append(list, "Expect:");
    if (!l)
        goto oom;
    list = l;
    ferry_buf_fini(&line);
    *out = list;
    return 1;
oom:
    ferry_call_fail(call, FERRY_ENOMEM, "%s: out of memory", fn);
fail:
    ferry_buf_fini(&line);
    curl_slist_free_all(list);
    return 0;
}

/* ---- starting a transfer --------------------------------------------------- */

/*
 * Opens the socket of each connection attempt, or refuses the address it is for
 * (CURL_SOCKET_BAD: curl tries the name's next address, and fails the transfer
 * with CURLE_COULDNT_CONNECT when none is left).
 */
static curl_socket_t on_open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    http_req *req = arg;
    const char *why = purpose == CURLSOCKTYPE_IPCXN
                          ? http_addr_refused(&req->http->policy, &a->addr, a->addrlen)
                          : "not an outgoing connection";
    if (!why)
        return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (!req->refused_why) {
        req->refused_why = why;
        const void *bytes = NULL;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        if (a->family == AF_INET && a->addrlen >= sizeof in) {
            memcpy(&in, &a->addr, sizeof in);
            bytes = &in.sin_addr;
        } else if (a->family == AF_INET6 && a->addrlen >= sizeof in6) {
            memcpy(&in6, &a->addr, sizeof in6);
            bytes = &in6.sin6_addr;
        }
        if (!bytes || !inet_ntop(a->family, bytes, req->refused, sizeof req->refused))
            snprintf(req->refused, sizeof req->refused, "of family %d", a->family);
    }
    return CURL_SOCKET_BAD;
}

/* Every option that can fail (out of memory, an old libcurl) is checked. */
static CURLcode setup(http_req *req, const http_opts *o)
{
    CURL *e = req->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(e, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, (void *)req);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)req);
    SET(CURLOPT_PROXY, ""); /* "": no proxy, not even one from the environment */
    SET(CURLOPT_FOLLOWLOCATION, o->max_redirects > 0 ? 1L : 0L);
    SET(CURLOPT_MAXREDIRS, (long)o->max_redirects);
    SET(CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)req);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)req);
    SET(CURLOPT_ERRORBUFFER, req->errbuf);
    SET(CURLOPT_USERAGENT, "ferry-worker/" FERRY_VERSION);
    SET(CURLOPT_HTTPHEADER, req->headers);
    if (strcmp(req->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(req->method, "POST") == 0) {
        SET(CURLOPT_POST, 1L);
    } else if (strcmp(req->method, "GET") != 0) {
        SET(CURLOPT_CUSTOMREQUEST, req->method);
    } else if (o->body) {
        SET(CURLOPT_CUSTOMREQUEST, "GET"); /* a body would make curl say POST */
    }
    if (o->body || strcmp(req->method, "POST") == 0) {
        /* Borrowed from the call's arguments, which live until the answer; the
         * transfer leaves the multi handle before the call is answered. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(o->body ? o->body_len : 0));
        SET(CURLOPT_POSTFIELDS, o->body ? o->body : "");
    }
#undef SET
    return rc;
}

static void start(worker_http *h, ferry_call *call, size_t argi, const http_opts *o)
{
    const char *fn = ferry_call_function(call);
    struct curl_slist *headers = NULL;
    if (!build_headers(call, argi, o, &headers))
        return;
    http_req *req = calloc(1, sizeof *req);
    if (!req) {
        curl_slist_free_all(headers);
        ferry_call_fail(call, FERRY_ENOMEM, "%s: out of memory", fn);
        return;
    }
    req->http = h;
    req->call = call;
    req->headers = headers;
    req->max_body = (size_t)o->max_body;
    memcpy(req->method, o->method, sizeof req->method);
    DL_APPEND(h->reqs, req);
    h->nreqs++;
    /* The transfer never outlives the call: an own timeout past the call's deadline
     * would only be cut short by the worker's `timeout` reply. */
    int64_t left = ferry_call_remaining_ms(call);
    req->timeout_ms = o->timeout_ms;
    if (left >= 0 && left < req->timeout_ms)
        req->timeout_ms = left > 0 ? left : 1;
    req->url = malloc(o->url_len + 1);
    req->easy = curl_easy_init();
    if (!req->url || !req->easy) {
        req_free(req);
        ferry_call_fail(call, FERRY_ENOMEM, "%s: out of memory", fn);
        return;
    }
    memcpy(req->url, o->url, o->url_len);
    req->url[o->url_len] = '\0';
    CURLcode rc = setup(req, o);
    if (rc != CURLE_OK) {
        req_free(req);
        ferry_call_fail(call, FERRY_ECALL, "%s: cannot set up the transfer: %s", fn,
                        curl_easy_strerror(rc));
        return;
    }
    CURLMcode mc = curl_multi_add_handle(h->multi, req->easy);
    if (mc != CURLM_OK) {
        /* Not in the multi handle: req_free's removal is a harmless no-op. */
        req_free(req);
        ferry_call_fail(call, mc == CURLM_OUT_OF_MEMORY ? FERRY_ENOMEM : FERRY_ECALL,
                        "%s: cannot start the transfer: %s", fn, curl_multi_strerror(mc));
        return;
    }
    ferry_call_on_cancel(call, on_cancel, req);
}

static void opts_init(http_opts *o, const char *method)
{
    memset(o, 0, sizeof *o);
    snprintf(o->method, sizeof o->method, "%s", method);
    o->timeout_ms = HTTP_DEFAULT_TIMEOUT_MS;
    o->max_redirects = HTTP_DEFAULT_REDIRECTS;
    o->max_body = HTTP_DEFAULT_MAX_BODY;
}

void worker_fn_http_get(ferry_call *call, void *udata)
{
    worker_http *h = udata;
    http_opts o;
    opts_init(&o, "GET");
    if (ferry_call_arg_string(call, 0, &o.url, &o.url_len) != FERRY_OK) {
        ferry_call_fail_arg(call, 0, "string");
        return;
    }
    if (!check_url(call, 0, "url", &o))
        return;
    const Ferry__Value *t = ferry_call_arg(call, 1);
    if (!ferry_value_is_nil(t)) {
        if (ferry_call_arg_table(call, 1, &t) != FERRY_OK) {
            ferry_call_fail_arg(call, 1, "table");
            return;
        }
        if (!read_opts(call, 1, t, 0, &o))
            return;
    }
    start(h, call, 1, &o);
}

void worker_fn_http_request(ferry_call *call, void *udata)
{
    worker_http *h = udata;
    http_opts o;
    opts_init(&o, "GET");
    const Ferry__Value *t;
    if (ferry_call_arg_table(call, 0, &t) != FERRY_OK) {
        ferry_call_fail_arg(call, 0, "table");
        return;
    }
    if (!read_opts(call, 0, t, 1, &o))
        return;
    if (!o.url) {
        ferry_call_fail(call, FERRY_EBADARG, "bad argument #1 to '%s' (field 'url' missing)",
                        ferry_call_function(call));
        return;
    }
    if (!check_url(call, 0, "field 'url'", &o))
        return;
    start(h, call, 0, &o);
}

/* ---- lifecycle ------------------------------------------------------------- */

worker_http *worker_http_new(ferry_worker *w, http_addr_policy *policy, char *err, size_t errlen)
{
    worker_http *h = calloc(1, sizeof *h);
    if (!h) {
        http_addr_policy_fini(policy);
        snprintf(err, errlen, "http: out of memory");
        return NULL;
    }
    h->worker = w;
    h->policy = *policy;
    memset(policy, 0, sizeof *policy);
    h->epfd = -1;
    ferry_timer_init(&h->timer, on_curl_timer, h);
    ferry_timer_init(&h->reap, on_reap, h);
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "http: curl_global_init: %s", curl_easy_strerror(rc));
        goto fail;
    }
    h->global = 1;
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (h->epfd < 0) {
        snprintf(err, errlen, "http: epoll_create1: %s", strerror(errno));
        goto fail;
    }
    h->multi = curl_multi_init();
    if (!h->multi) {
        snprintf(err, errlen, "http: curl_multi_init failed");
        goto fail;
    }
    if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, (void *)h) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer_set) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, (void *)h) != CURLM_OK) {
        snprintf(err, errlen, "http: cannot set curl's multi callbacks");
        goto fail;
    }
    ferry_err e = ferry_worker_watch_fd(w, h->epfd, ZMQ_POLLIN, on_epoll, h);
    if (e != FERRY_OK) {
        snprintf(err, errlen, "http: cannot watch the epoll fd: %s", ferry_err_desc(e));
        goto fail;
    }
    /* A peer that closes while we write must not kill the worker; curl avoids SIGPIPE
     * on Linux sockets, TLS writes through OpenSSL may not. */
    signal(SIGPIPE, SIG_IGN);
    return h;
fail:
    worker_http_destroy(&h);
    return NULL;
}

ferry_err worker_http_register(worker_http *h, int get_idempotent)
{
    /* A GET may run twice; any other method may not (registration is per function). */
    const ferry_function_opts get = {.idempotent = get_idempotent != 0};
    const ferry_function_opts request = {.idempotent = 0};
    ferry_err err = ferry_worker_register(h->worker, "http.get", worker_fn_http_get, h, &get);
    if (err == FERRY_OK)
        err = ferry_worker_register(h->worker, "http.request", worker_fn_http_request, h, &request);
    return err;
}

void worker_http_destroy(worker_http **hp)
{
    worker_http *h = *hp;
    if (!h)
        return;
    *hp = NULL;
    /* ferry_worker_destroy cancelled every call, and each cancel freed its transfer. */
    assert(h->nreqs == 0 && "worker_http_destroy before ferry_worker_destroy");
    if (h->multi) {
        /* Closing cached connections calls back; the worker (and its loop) is gone. */
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, NULL);
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, NULL);
        curl_multi_cleanup(h->multi);
    }
    if (h->epfd >= 0)
        close(h->epfd);
    if (h->global)
        curl_global_cleanup();
    http_addr_policy_fini(&h->policy);
    free(h);
}

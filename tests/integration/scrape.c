/* scrape: HTTP GET and Prometheus text helpers of the metrics tests (scrape.h). */
#include "scrape.h"

#include "ferry_clock.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int scrape_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Connects, sends req, reads to EOF within timeout_ms into a malloc'd string (or NULL). */
static char *exchange(int port, const char *req, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    size_t n = strlen(req);
    if (write(fd, req, n) != (ssize_t)n) {
        close(fd);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    int64_t until = ferry_now_ms() + timeout_ms;
    while (buf) {
        int64_t left = until - ferry_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if (len + 4096 + 1 > cap) {
            char *more = realloc(buf, cap * 2);
            if (!more)
                break;
            buf = more;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    if (buf)
        buf[len] = '\0';
    return buf;
}

int scrape_get(int port, const char *path, char **body, int timeout_ms)
{
    char req[512];
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    char *resp = exchange(port, req, timeout_ms);
    if (body)
        *body = NULL;
    int status = 0;
    if (!resp || sscanf(resp, "HTTP/1.%*d %d", &status) != 1) {
        free(resp);
        return 0;
    }
    const char *start = strstr(resp, "\r\n\r\n");
    if (body && start)
        *body = strdup(start + 4);
    free(resp);
    return status;
}

int scrape_raw(int port, const char *bytes, int timeout_ms)
{
    char *resp = exchange(port, bytes, timeout_ms);
    int rc = resp ? 0 : -1;
    free(resp);
    return rc;
}

double scrape_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

int scrape_promtool(const char *text)
{
    if (access("/usr/bin/promtool", X_OK) != 0)
        return -1;
    char path[] = "/tmp/ferry-scrape.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n;
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s", path);
    ok = ok && system(cmd) == 0;
    unlink(path);
    return ok;
}

double scrape_wait(int port, const char *series, double want, int timeout_ms)
{
    int64_t until = ferry_now_ms() + timeout_ms;
    double v = -1;
    for (;;) {
        char *body = NULL;
        if (scrape_get(port, "/metrics", &body, 2000) == 200 && body)
            v = scrape_value(body, series);
        free(body);
        if (v >= want || ferry_now_ms() >= until)
            return v;
        poll(NULL, 0, 20); /* the count is another process's: look again shortly */
    }
}

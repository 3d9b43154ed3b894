/*
 * scrape: what the metrics tests need of HTTP and of the Prometheus text
 * format: a free loopback port, one GET over a plain socket (HTTP/1.0, read
 * to the end, bounded), a sample's value, and promtool's verdict.
 */
#ifndef FERRY_SCRAPE_H
#define FERRY_SCRAPE_H

/* A TCP port on 127.0.0.1 free a moment ago (the kernel's pick), or -1. */
int scrape_free_port(void);

/*
 * GET path from 127.0.0.1:port within timeout_ms. Returns the HTTP status
 * (0 when there was no answer) and, when body is not NULL, the body in a
 * malloc'd string (caller frees; NULL without an answer).
 */
int scrape_get(int port, const char *path, char **body, int timeout_ms);

/* Sends raw bytes to 127.0.0.1:port and reads the answer to its end (or timeout_ms): 0 when
 * it connected. For bad requests. */
int scrape_raw(int port, const char *bytes, int timeout_ms);

/* The value of the sample whose name and labels are exactly series ("a{b=\"c\"}"),
 * or -1 when text has no such line. */
double scrape_value(const char *text, const char *series);

/* 1 when /usr/bin/promtool accepts text (check metrics), 0 when not (its verdict
 * printed), -1 when promtool is missing. */
int scrape_promtool(const char *text);

/* Fetches until the sample series has at least want, within timeout_ms (bounded polls).
 * Returns its last value (-1 when never found). */
double scrape_wait(int port, const char *series, double want, int timeout_ms);

#endif

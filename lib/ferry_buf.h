/* ferry_buf: a growable byte buffer (output capture, JSON, test logs). */
#ifndef FERRY_BUF_H
#define FERRY_BUF_H

#include "ferry_err.h"

#include <stddef.h>

typedef struct {
    char *data; /* NUL-terminated when len > 0; owned */
    size_t len;
    size_t cap;
} ferry_buf;

#define FERRY_BUF_INIT {NULL, 0, 0}

ferry_err ferry_buf_append(ferry_buf *b, const void *data, size_t len);
ferry_err ferry_buf_puts(ferry_buf *b, const char *s);
ferry_err ferry_buf_printf(ferry_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ferry_buf_reset(ferry_buf *b);
void ferry_buf_fini(ferry_buf *b);

#endif

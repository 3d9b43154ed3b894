/* ferry_buf: growable byte buffer, always NUL-terminated after a write. */
#include "ferry_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ferry_err reserve(ferry_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return FERRY_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) {
        if (cap > ((size_t)-1) / 2)
            return FERRY_ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return FERRY_ENOMEM;
    b->data = p;
    b->cap = cap;
    return FERRY_OK;
}

ferry_err ferry_buf_append(ferry_buf *b, const void *data, size_t len)
{
    ferry_err err = reserve(b, len);
    if (err)
        return err;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return FERRY_OK;
}

ferry_err ferry_buf_puts(ferry_buf *b, const char *s)
{
    return ferry_buf_append(b, s, strlen(s));
}

ferry_err ferry_buf_printf(ferry_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return FERRY_EIO;
    ferry_err err = reserve(b, (size_t)n);
    if (err)
        return err;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return FERRY_OK;
}

void ferry_buf_reset(ferry_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void ferry_buf_fini(ferry_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/*
 * codec_batch: the Batch body (several whole envelopes in one message),
 * written and read straight from bytes: its items are encoded envelopes,
 * so a router copies them in and out without decoding them.
 *
 * Wire form (protocol.md, Batches): Envelope{version = 1, batch = Batch{items
 * = [bytes, ...]}}, that is 08 01, then 62 <length>, then for each item
 * 0a <length> <the item's bytes>.
 */
#include "codec_fields.h"
#include "codec_internal.h"

#include <assert.h>
#include <string.h>

/* Batch.items: field 1, length-delimited. */
#define KEY_BATCH_ITEMS 0x0a

static size_t varint_size(uint64_t n)
{
    size_t k = 1;
    while (n >= 0x80) {
        n >>= 7;
        k++;
    }
    return k;
}

static uint8_t *put_varint(uint8_t *out, uint64_t n)
{
    while (n >= 0x80) {
        *out++ = (uint8_t)(n | 0x80);
        n >>= 7;
    }
    *out++ = (uint8_t)n;
    return out;
}

size_t ferry_batch_item_size(size_t len)
{
    return 1 + varint_size(len) + len;
}

uint8_t *ferry_batch_put_item_head(uint8_t *out, size_t len)
{
    *out++ = KEY_BATCH_ITEMS;
    return put_varint(out, len);
}

size_t ferry_batch_header_size(size_t body_len)
{
    return 2 + 1 + varint_size(body_len);
}

size_t ferry_batch_put_header(uint8_t *out, size_t body_len)
{
    uint8_t *p = out;
    *p++ = CODEC_KEY_envelope_version;
    *p++ = FERRY_PROTOCOL_VERSION;
    *p++ = CODEC_KEY_envelope_batch;
    p = put_varint(p, body_len);
    assert((size_t)(p - out) == ferry_batch_header_size(body_len));
    return (size_t)(p - out);
}

int ferry_batch_next(const uint8_t **p, const uint8_t *end, const uint8_t **item, size_t *len)
{
    while (*p < end) {
        codec_wire_field f;
        if (!codec_next_field(p, end, &f))
            return -1;
        if (f.tag != 1) /* unknown: skipped, as protobuf-c keeps it */
            continue;
        if (f.wire != CODEC_WIRE_BYTES)
            return -1;
        *item = f.data;
        *len = f.len;
        return 1;
    }
    return 0;
}

ferry_err ferry_batch_check(const void *body, size_t len, size_t *count)
{
    const uint8_t *p = body, *end = p + len, *item;
    size_t n = 0, item_len;
    int r;
    while ((r = ferry_batch_next(&p, end, &item, &item_len)) == 1)
        n++;
    *count = n;
    return r == 0 ? FERRY_OK : FERRY_EPROTO;
}

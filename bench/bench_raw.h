/*
 * bench_raw: the message format of the raw baseline (ferry-bench-raw).
 *
 * One frame per message, exactly as many frames as Ferry sends on each hop,
 * but no protobuf: a fixed binary header the raw broker reads in O(1)
 *
 *   [u8 id_len][id: id_len bytes][u64 call_id, little endian][padding]
 *
 * where id is the routing id of the engine (or client) that waits for the
 * answer. The padding makes the frame as large as the Ferry message it
 * stands for, so that both paths move the same bytes. Workers and raw
 * engines announce themselves with a one-byte frame "R".
 */
#ifndef BENCH_RAW_H
#define BENCH_RAW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BENCH_RAW_READY 'R'
#define BENCH_RAW_MIN (1 + 8)

/* Bytes of a raw message for id_len and a wanted size: never less than the header. */
static inline size_t bench_raw_size(size_t id_len, size_t want)
{
    size_t min = 1 + id_len + 8;
    return want > min ? want : min;
}

/* Writes the header into buf (at least bench_raw_size bytes); zeroes the padding. */
static inline void bench_raw_write(uint8_t *buf, size_t size, const void *id, size_t id_len,
                                   uint64_t call_id)
{
    buf[0] = (uint8_t)id_len;
    memcpy(buf + 1, id, id_len);
    for (int i = 0; i < 8; i++)
        buf[1 + id_len + i] = (uint8_t)(call_id >> (8 * i));
    memset(buf + 1 + id_len + 8, 0, size - (1 + id_len + 8));
}

/* Reads the header: 1 with id (pointing into buf) and call_id, 0 when it does not fit. */
static inline int bench_raw_read(const uint8_t *buf, size_t size, const uint8_t **id,
                                 size_t *id_len, uint64_t *call_id)
{
    if (size < BENCH_RAW_MIN || size < (size_t)1 + buf[0] + 8)
        return 0;
    *id_len = buf[0];
    *id = buf + 1;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)buf[1 + buf[0] + i] << (8 * i);
    *call_id = v;
    return 1;
}

#endif

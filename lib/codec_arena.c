/*
 * codec_arena: the one block a decoded envelope lives in.
 *
 * protobuf-c allocates every submessage, array and string of a decoded
 * envelope separately and frees them by walking the message again. An
 * envelope is always freed whole (ferry_envelope_free), so the decoder
 * (codec_decode.c) and protobuf-c's unpack, when the decoder hands a message
 * to it, allocate from an arena instead: one block sized from the input,
 * more chained when it does not fit, small ones kept per thread for reuse.
 */
#include "codec_internal.h"

#include <assert.h>
#include <stdlib.h>

static void *arena_block_new(codec_arena *a, size_t size)
{
    arena_block *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->next = a->blocks;
    a->blocks = b;
    return b + 1;
}

void *codec_arena_alloc(void *data, size_t size)
{
    codec_arena *a = data;
    void *fits = codec_arena_take(a, size);
    if (fits)
        return fits;
    size_t n = codec_round_up(size ? size : 1);
    if (n < size) /* overflow */
        return NULL;
    if ((size_t)(a->end - a->cur) >= n) { /* size 0 */
        void *p = a->cur;
        a->cur += n;
        return p;
    }
    if (n >= ARENA_OWN)
        return arena_block_new(a, n);
    uint8_t *p = arena_block_new(a, ARENA_BLOCK);
    if (!p)
        return NULL;
    a->cur = p + n;
    a->end = p + ARENA_BLOCK;
    return p;
}

static void arena_free_one(void *data, void *ptr)
{
    /* Everything goes with the arena. */
    (void)data;
    (void)ptr;
}

/* Arenas of small messages (most Commands and Replies) have one size and are
 * kept for reuse when freed: a malloc/free pair per message less. Per thread,
 * as the library may be. */
#define ARENA_SMALL 640 /* first block of a message up to (640 - 256) / 4 = 96 bytes */
#define ARENA_CACHE 8
static _Thread_local codec_arena *arena_cache[ARENA_CACHE];
static _Thread_local int arena_cached;

codec_arena *codec_arena_new(size_t input_len)
{
    /* A decoded message takes a few times its wire size (a 2-byte Value is
     * a 48-byte struct plus its pointer). */
    size_t first = input_len < (ARENA_FIRST_MAX - 256) / 4 ? 256 + 4 * input_len : ARENA_FIRST_MAX;
    codec_arena *a;
    if (first <= ARENA_SMALL) {
        first = ARENA_SMALL;
        a = arena_cached ? arena_cache[--arena_cached] : malloc(ARENA_HEADER + first);
    } else {
        a = malloc(ARENA_HEADER + first);
    }
    if (!a)
        return NULL;
    a->magic = ARENA_MAGIC;
    a->blocks = NULL;
    a->cur = (uint8_t *)a + ARENA_HEADER;
    a->end = a->cur + first;
    a->first = first;
    a->allocator.alloc = codec_arena_alloc;
    a->allocator.free = arena_free_one;
    a->allocator.allocator_data = a;
    return a;
}

void codec_arena_free(codec_arena *a)
{
    assert(a->magic == ARENA_MAGIC);
    a->magic = 0;
    while (a->blocks) {
        arena_block *b = a->blocks;
        a->blocks = b->next;
        free(b);
    }
    if (a->first == ARENA_SMALL && arena_cached < ARENA_CACHE)
        arena_cache[arena_cached++] = a;
    else
        free(a);
}

void ferry_envelope_free(Ferry__Envelope *env)
{
    if (env)
        codec_arena_free((codec_arena *)((uint8_t *)env - ARENA_HEADER));
}

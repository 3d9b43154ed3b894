/*
 * codec_bench: what the hand-written codec (lib/ferry_codec.h) costs per
 * message, against protobuf-c doing the same, on the two messages of an echo
 * call as ferry-bench sends them: the Command (engine id of 26 bytes, call id
 * 100,000, "echo", one integer argument, timeout 30 s) and its Reply (the
 * integer back).
 *
 * For each: decode (ferry_envelope_decode + ferry_envelope_free, against
 * ferry__envelope__unpack + free_unpacked), peek (ferry_wire_peek_call),
 * pack (ferry_envelope_packed_size + ferry_envelope_pack_sized, against
 * get_packed_size + pack). Each figure is the best of ROUNDS rounds of
 * `iterations` calls (default 2,000,000), in ns per call.
 *
 *   ferry-codec-bench [iterations]
 */
#include "ferry_codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROUNDS 5

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Keeps the compiler from dropping a result. */
static volatile size_t sink;

typedef enum { DECODE, DECODE_PBC, PEEK, PACK, PACK_PBC, MEASURES } measure;

static const char *const measure_names[MEASURES] = {
    [DECODE] = "decode",
    [DECODE_PBC] = "decode (protobuf-c)",
    [PEEK] = "peek",
    [PACK] = "pack",
    [PACK_PBC] = "pack (protobuf-c)",
};

/* One call of measure m on (env, bytes); 0 when it fails. */
static int run_once(measure m, const Ferry__Envelope *env, const uint8_t *bytes, size_t len,
                    uint8_t *out)
{
    switch (m) {
    case DECODE: {
        Ferry__Envelope *got = NULL;
        if (ferry_envelope_decode(bytes, len, &got) != FERRY_OK)
            return 0;
        sink += got->body_case;
        ferry_envelope_free(got);
        return 1;
    }
    case DECODE_PBC: {
        Ferry__Envelope *got = ferry__envelope__unpack(NULL, len, bytes);
        if (!got)
            return 0;
        sink += got->body_case;
        ferry__envelope__free_unpacked(got, NULL);
        return 1;
    }
    case PEEK: {
        ferry_wire_call c;
        if (ferry_wire_peek_call(bytes, len, &c) != FERRY_OK)
            return 0;
        sink += c.call_id;
        return 1;
    }
    case PACK: {
        size_t size = ferry_envelope_packed_size(env);
        sink += ferry_envelope_pack_sized(env, size, out);
        return 1;
    }
    case PACK_PBC: {
        size_t size = ferry__envelope__get_packed_size(env);
        (void)size;
        sink += ferry__envelope__pack(env, out);
        return 1;
    }
    default:
        return 0;
    }
}

static double measure_ns(measure m, const Ferry__Envelope *env, const uint8_t *bytes, size_t len,
                         long iterations, uint8_t *out)
{
    double best = 0;
    for (int r = 0; r < ROUNDS; r++) {
        int64_t t0 = now_ns();
        for (long i = 0; i < iterations; i++) {
            if (!run_once(m, env, bytes, len, out)) {
                fprintf(stderr, "ferry-codec-bench: %s failed\n", measure_names[m]);
                exit(1);
            }
        }
        double ns = (double)(now_ns() - t0) / (double)iterations;
        if (r == 0 || ns < best)
            best = ns;
    }
    return best;
}

int main(int argc, char **argv)
{
    long iterations = argc > 1 ? strtol(argv[1], NULL, 10) : 2000000;
    if (iterations <= 0) {
        fprintf(stderr, "usage: ferry-codec-bench [iterations]\n");
        return 2;
    }
    static const char engine_id[] = "engine-host-12345-0badf00d";
    Ferry__Value one = FERRY__VALUE__INIT;
    one.kind_case = FERRY__VALUE__KIND_INTEGER;
    one.integer = 1;
    Ferry__Value *values[] = {&one};

    Ferry__Command cmd = FERRY__COMMAND__INIT;
    cmd.engine_id.data = (uint8_t *)engine_id;
    cmd.engine_id.len = sizeof engine_id - 1;
    cmd.call_id = 100000;
    cmd.function = "echo";
    cmd.args = values;
    cmd.n_args = 1;
    cmd.timeout_ms = 30000;
    Ferry__Reply reply = FERRY__REPLY__INIT;
    reply.engine_id = cmd.engine_id;
    reply.call_id = cmd.call_id;
    reply.values = values;
    reply.n_values = 1;

    Ferry__Envelope envs[2];
    for (int i = 0; i < 2; i++)
        ferry_envelope_init(&envs[i]);
    envs[0].body_case = FERRY__ENVELOPE__BODY_COMMAND;
    envs[0].command = &cmd;
    envs[1].body_case = FERRY__ENVELOPE__BODY_REPLY;
    envs[1].reply = &reply;
    static const char *const names[] = {"Command", "Reply"};

    printf("%-8s %-20s %8s\n", "message", "measure", "ns/call");
    for (int i = 0; i < 2; i++) {
        uint8_t bytes[256], out[256];
        size_t len = ferry__envelope__get_packed_size(&envs[i]);
        if (len > sizeof bytes)
            return 1;
        ferry__envelope__pack(&envs[i], bytes);
        for (measure m = 0; m < MEASURES; m++)
            printf("%-8s %-20s %8.1f\n", names[i], measure_names[m],
                   measure_ns(m, &envs[i], bytes, len, iterations, out));
        printf("%-8s %-20s %8zu\n", names[i], "bytes", len);
    }
    return 0;
}

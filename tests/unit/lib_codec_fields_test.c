/*
 * lib_codec_fields_test: the codec's table of fields (lib/codec_fields.h)
 * against the descriptors protoc-c generates from proto/ferry.proto.
 *
 * The hand-written decoder, peek and packer know the fields of the table and
 * nothing else. When the schema changes and the table does not, this test
 * fails, naming each message and field on which they disagree, in either
 * direction (a field only in the schema, a row only in the table, a type,
 * offset, oneof or submessage mismatch). The doctored copies of the table
 * below show that each kind of disagreement is caught and named.
 */
#include "codec_fields.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_LINES 16

typedef struct {
    char lines[MAX_LINES][256];
    size_t n;
} report;

static void keep_line(void *arg, const char *line)
{
    report *r = arg;
    if (r->n < MAX_LINES)
        snprintf(r->lines[r->n++], sizeof r->lines[0], "%s", line);
}

static void print_line(void *arg, const char *line)
{
    (void)arg;
    print_error("schema drift: %s\n", line);
}

/* A copy of the table to doctor (the caller frees it); n rows in *n. */
static codec_field *table_copy(size_t extra, size_t *n)
{
    codec_field *rows = calloc(codec_fields_count + extra, sizeof *rows);
    assert_non_null(rows);
    memcpy(rows, codec_fields, codec_fields_count * sizeof *rows);
    *n = codec_fields_count;
    return rows;
}

static codec_field *row(codec_field *rows, size_t n, const ProtobufCMessageDescriptor *msg,
                        const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].message == msg && strcmp(rows[i].name, name) == 0)
            return &rows[i];
    fail_msg("no row %s.%s", msg->short_name, name);
    return NULL;
}

/* Compares rows with the descriptors and asserts one disagreement more than
 * the table itself has (none, unless the schema drifted), named by a line
 * holding want. */
static void expect_one(const codec_field *rows, size_t n, const char *want)
{
    size_t before = codec_schema_compare(codec_fields, codec_fields_count, NULL, NULL);
    report r = {.n = 0};
    size_t count = codec_schema_compare(rows, n, keep_line, &r);
    int found = 0;
    for (size_t i = 0; i < r.n; i++) {
        print_message("reported: %s\n", r.lines[i]);
        found |= strstr(r.lines[i], want) != NULL;
    }
    assert_int_equal(count, before + 1);
    assert_true(found);
}

/* The test that fails on drift: every field of every message the codec
 * handles, both ways. */
static void test_table_agrees_with_descriptors(void **state)
{
    (void)state;
    size_t count = codec_schema_compare(codec_fields, codec_fields_count, print_line, NULL);
    if (count)
        fail_msg("%zu disagreement(s) between lib/codec_fields.h and proto/ferry.proto", count);
    /* And the codec runs its hand paths. */
    codec_schema_force(CODEC_SCHEMA_UNKNOWN);
    assert_int_equal(codec_schema_settle(), CODEC_SCHEMA_AGREES);
    assert_true(codec_fast());
}

/* The messages the hand paths read or write all have rows. */
static void test_table_covers_the_hand_messages(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *hand[] = {
        &ferry__envelope__descriptor, &ferry__command__descriptor, &ferry__reply__descriptor,
        &ferry__error__descriptor,    &ferry__value__descriptor,   &ferry__table__descriptor,
        &ferry__pair__descriptor,
    };
    for (size_t m = 0; m < sizeof hand / sizeof hand[0]; m++) {
        size_t rows = 0;
        for (size_t i = 0; i < codec_fields_count; i++)
            rows += codec_fields[i].message == hand[m];
        if (rows != hand[m]->n_fields)
            fail_msg("%s: %zu rows for %u fields", hand[m]->short_name, rows, hand[m]->n_fields);
    }
}

/* A field the schema has and the table lacks (what adding
 * `uint32 priority = 6;` to Command does). */
static void test_schema_field_missing_from_table_fails(void **state)
{
    (void)state;
    size_t n;
    codec_field *rows = table_copy(0, &n);
    codec_field *t = row(rows, n, &ferry__command__descriptor, "timeout_ms");
    memmove(t, t + 1, (size_t)(rows + n - (t + 1)) * sizeof *rows);
    expect_one(rows, n - 1, "Command.timeout_ms (5, singular uint32): in the schema, not in the");
    free(rows);
}

/* A row the schema does not have. */
static void test_table_row_missing_from_schema_fails(void **state)
{
    (void)state;
    size_t n;
    codec_field *rows = table_copy(1, &n);
    rows[n] = *row(rows, n, &ferry__command__descriptor, "timeout_ms");
    rows[n].name = "urgency";
    rows[n].number = 15;
    expect_one(rows, n + 1, "Command.urgency (15): in the codec's table, not in the schema");
    free(rows);
}

static void test_type_mismatch_fails(void **state)
{
    (void)state;
    size_t n;
    codec_field *rows = table_copy(0, &n);
    row(rows, n, &ferry__command__descriptor, "timeout_ms")->kind = CODEC_UINT64;
    expect_one(rows, n,
               "Command.timeout_ms (5): the schema says singular uint32, the codec's "
               "table uint64");
    row(rows, n, &ferry__command__descriptor, "timeout_ms")->kind = CODEC_UINT32;
    row(rows, n, &ferry__reply__descriptor, "values")->kind = CODEC_MESSAGE;
    expect_one(rows, n,
               "Reply.values (3): the schema says repeated message, the codec's table "
               "message");
    free(rows);
}

static void test_offset_oneof_and_submessage_mismatches_fail(void **state)
{
    (void)state;
    size_t n;
    codec_field *rows = table_copy(0, &n);
    codec_field *r = row(rows, n, &ferry__value__descriptor, "integer");
    r->offset += 8;
    expect_one(rows, n, "Value.integer (3): at offset");
    r->offset -= 8;
    r->flags &= ~CODEC_ONEOF;
    expect_one(rows, n, "Value.integer (3): is a oneof member in the schema, not in the codec's");
    r->flags |= CODEC_ONEOF;
    row(rows, n, &ferry__pair__descriptor, "key")->sub = &ferry__table__descriptor;
    expect_one(rows, n, "Pair.key (1): of type Value in the schema, Table in the codec's table");
    free(rows);
}

/* A CODEC_HAND row leading to a message without rows of its own. */
static void test_submessage_without_rows_fails(void **state)
{
    (void)state;
    size_t n;
    codec_field *rows = table_copy(0, &n);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].message != &ferry__error__descriptor)
            rows[kept++] = rows[i];
    expect_one(rows, kept, "Reply.error (4): its type Error has no rows in the codec's table");
    free(rows);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_agrees_with_descriptors),
        cmocka_unit_test(test_table_covers_the_hand_messages),
        cmocka_unit_test(test_schema_field_missing_from_table_fails),
        cmocka_unit_test(test_table_row_missing_from_schema_fails),
        cmocka_unit_test(test_type_mismatch_fails),
        cmocka_unit_test(test_offset_oneof_and_submessage_mismatches_fail),
        cmocka_unit_test(test_submessage_without_rows_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

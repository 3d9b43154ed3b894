/*
 * ferry_utf8: strict UTF-8 (RFC 3629: no overlongs, no surrogates, nothing
 * past U+10FFFF). Error codes and messages travel in proto3 string fields,
 * which other languages' decoders refuse unless they are valid UTF-8, and
 * JSON output must be valid UTF-8 too.
 */
#ifndef FERRY_UTF8_H
#define FERRY_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes, n >= 1), or 0. */
size_t ferry_utf8_seq(const unsigned char *s, size_t n);

/* True when s[0..len) is valid UTF-8. */
int ferry_utf8_valid(const char *s, size_t len);

/* Replaces every byte that starts no valid sequence with '?'. */
void ferry_utf8_scrub(char *s, size_t len);

#endif

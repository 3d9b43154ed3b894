/* ferry_utf8: validating and scrubbing UTF-8. */
#include "ferry_utf8.h"

size_t ferry_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    /* The second byte's range excludes overlongs (E0, F0) and surrogates (ED)
     * and caps the code point at U+10FFFF (F4). */
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (len > n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

int ferry_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = ferry_utf8_seq(p + i, len - i);
        if (n == 0)
            return 0;
        i += n;
    }
    return 1;
}

void ferry_utf8_scrub(char *s, size_t len)
{
    unsigned char *p = (unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = ferry_utf8_seq(p + i, len - i);
        if (n == 0)
            p[i++] = '?';
        else
            i += n;
    }
}

/*
 * UTF-8 helpers (see utf8.h).
 *
 * Display widths come from wcwidth(3), so they are right only in a UTF-8
 * locale (plexusctl calls setlocale(LC_CTYPE, "")); elsewhere every code
 * point counts as one column, which keeps ASCII tables aligned.
 */

#include <string.h>
#include <wchar.h>

#include "utf8.h"

/**
 * utf8_sequence() - the well-formed UTF-8 sequence at @s
 * @s:          bytes
 * @n:          how many there are
 * @ret_cp:     optional; receives the code point
 *
 * Return: the sequence's length (1..4), or 0 if @s does not start a
 * well-formed sequence (or @n is 0).
 */
size_t utf8_sequence(const void *s, size_t n, uint32_t *ret_cp) {
        const unsigned char *p = s;
        unsigned char lo = 0x80, hi = 0xbf;
        uint32_t cp;
        size_t len;

        if (n == 0)
                return 0;
        if (p[0] < 0x80) {
                if (ret_cp)
                        *ret_cp = p[0];
                return 1;
        }
        if (p[0] >= 0xc2 && p[0] <= 0xdf) {
                len = 2;
                cp = p[0] & 0x1f;
        } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                len = 3;
                cp = p[0] & 0x0f;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                len = 4;
                cp = p[0] & 0x07;
        } else {
                return 0;
        }

        /* The second byte's range rules out overlong forms, surrogates and > U+10FFFF. */
        if (p[0] == 0xe0)
                lo = 0xa0;
        else if (p[0] == 0xed)
                hi = 0x9f;
        else if (p[0] == 0xf0)
                lo = 0x90;
        else if (p[0] == 0xf4)
                hi = 0x8f;
        if (n < len || p[1] < lo || p[1] > hi)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if (p[i] < 0x80 || p[i] > 0xbf)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        if (ret_cp)
                *ret_cp = cp;
        return len;
}

/**
 * utf8_is_valid() - whether @n bytes are well-formed UTF-8 throughout
 *
 * NUL bytes and control characters count as well-formed.
 */
bool utf8_is_valid(const void *s, size_t n) {
        const unsigned char *p = s;

        for (size_t i = 0, l; i < n; i += l) {
                l = utf8_sequence(p + i, n - i, NULL);
                if (l == 0)
                        return false;
        }
        return true;
}

/**
 * utf8_is_text() - whether bytes are fit to print as text
 * @s:          bytes
 * @n:          how many
 *
 * Text is well-formed UTF-8 without control characters other than tab and
 * newline: no NUL, no carriage return or escape (which would act on the
 * terminal), no DEL, no C1 controls (U+0080..U+009F).
 *
 * Return: true for text (including the empty payload).
 */
bool utf8_is_text(const void *s, size_t n) {
        const unsigned char *p = s;
        size_t i = 0;

        while (i < n) {
                uint32_t cp;
                size_t l = utf8_sequence(p + i, n - i, &cp);

                if (l == 0)
                        return false;
                if ((cp < 0x20 && cp != '\t' && cp != '\n') || (cp >= 0x7f && cp <= 0x9f))
                        return false;
                i += l;
        }
        return true;
}

static size_t cp_width(uint32_t cp) {
        int w = wcwidth((wchar_t)cp);

        /* Unknown in this locale, or a control character: one column is the best guess. */
        return w < 0 ? 1 : (size_t)w;
}

/**
 * utf8_width() - columns @s takes on a terminal
 * @s:          a NUL-terminated string; malformed bytes count one column each
 *
 * Return: the width.
 */
size_t utf8_width(const char *s) {
        size_t w = 0;

        while (*s) {
                uint32_t cp;
                size_t l = utf8_sequence(s, 4, &cp);

                /* A NUL inside the 4-byte window ends any sequence early, so this stays in bounds. */
                if (l == 0) {
                        w++;
                        s++;
                        continue;
                }
                w += cp_width(cp);
                s += l;
        }
        return w;
}

/**
 * utf8_prefix() - the longest prefix of @s that fits @columns
 * @s:          a NUL-terminated string
 * @columns:    the room
 * @ret_width:  optional; receives the prefix's width
 *
 * Never splits a sequence.
 *
 * Return: the prefix's length in bytes.
 */
size_t utf8_prefix(const char *s, size_t columns, size_t *ret_width) {
        size_t i = 0, w = 0;

        while (s[i]) {
                uint32_t cp;
                size_t l = utf8_sequence(s + i, 4, &cp), cw = 1;

                if (l == 0)
                        l = 1;
                else
                        cw = cp_width(cp);
                if (w + cw > columns)
                        break;
                w += cw;
                i += l;
        }
        if (ret_width)
                *ret_width = w;
        return i;
}

/**
 * utf8_sanitize() - copy @n bytes of @src to @dst as a valid UTF-8 string
 * @dst:        room for @n + 1 bytes
 * @src:        bytes from anywhere (PR_SET_NAME and argv take any bytes)
 * @n:          how many
 *
 * Bytes that start no well-formed sequence, and control characters, become
 * '?'; the result has the same length and is NUL-terminated.
 */
void utf8_sanitize(char *dst, const char *src, size_t n) {
        const unsigned char *s = (const unsigned char *)src;
        size_t i = 0;

        while (i < n) {
                size_t l = utf8_sequence(s + i, n - i, NULL);

                if (l == 0 || (l == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
                        dst[i++] = '?';
                        continue;
                }
                memcpy(dst + i, s + i, l);
                i += l;
        }
        dst[n] = 0;
}

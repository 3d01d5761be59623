#pragma once

/*
 * UTF-8, for the broker (strings from other processes go into protobuf
 * strings, which must be UTF-8) and for plexusctl's output (what a payload
 * is, and how wide it is on a terminal).
 *
 * Well-formed means RFC 3629: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. Functions take byte counts, not
 * NUL-terminated strings, so payloads with NUL bytes are judged whole.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

size_t utf8_sequence(const void *s, size_t n, uint32_t *ret_cp);
bool utf8_is_valid(const void *s, size_t n);
bool utf8_is_text(const void *s, size_t n);
size_t utf8_width(const char *s);
size_t utf8_prefix(const char *s, size_t columns, size_t *ret_width);
void utf8_sanitize(char *dst, const char *src, size_t n);

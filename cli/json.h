#pragma once

/*
 * JSON output for plexusctl --json: a string escaper and a small writer
 * that keeps track of commas and nesting, so that every verb prints one
 * well-formed document (or one per line, for streams).
 *
 * Strings are written from bytes, which need not be UTF-8 (payloads, and
 * names from a misbehaving broker): json_escape() turns any byte sequence
 * into a valid JSON string literal, see there. Numbers are unsigned 64-bit
 * counters printed exactly; a consumer that reads numbers as doubles sees
 * values above 2^53 rounded.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_DEPTH_MAX 16

typedef struct Json {
        FILE *f;
        unsigned int depth;
        bool has_member[JSON_DEPTH_MAX];        /* a comma is due before the next value */
} Json;

void json_init(Json *j, FILE *f);
void json_escape(FILE *f, const void *s, size_t n);

void json_object_begin(Json *j, const char *key);
void json_object_end(Json *j);
void json_array_begin(Json *j, const char *key);
void json_array_end(Json *j);
void json_string(Json *j, const char *key, const char *s);
void json_bytes(Json *j, const char *key, const void *s, size_t n);
void json_hex(Json *j, const char *key, const void *s, size_t n);
void json_uint(Json *j, const char *key, uint64_t v);
void json_int(Json *j, const char *key, int64_t v);
void json_raw(Json *j, const char *key, const char *text);
void json_bool(Json *j, const char *key, bool v);
void json_null(Json *j, const char *key);
void json_strv(Json *j, const char *key, char *const *v, size_t n);
int json_end(Json *j);

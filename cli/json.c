/*
 * JSON writer (see json.h).
 *
 * The escaper, json_escape(), follows RFC 8259 §7 and is meant to be safe
 * to paste anywhere a JSON string goes:
 *
 *   "  \  ->  \"  \\
 *   U+0008 U+000C U+000A U+000D U+0009  ->  \b \f \n \r \t
 *   other bytes below 0x20, and DEL (0x7f)  ->  \u00XX (lower-case hex)
 *   U+2028, U+2029  ->  \u2028, \u2029 (valid JSON, but line breaks to
 *                       JavaScript before ES2019)
 *   well-formed UTF-8 sequences  ->  copied as they are
 *   any byte that does not start a well-formed UTF-8 sequence  ->  \ufffd
 *
 * The last rule means one U+FFFD REPLACEMENT CHARACTER per offending byte:
 * a lone continuation byte, an overlong form (C0 AF is two of them), a
 * surrogate (ED A0 80 is three), a truncated sequence at the end. Bytes are
 * never mapped to U+00XX, which would pass off Latin-1 as text. Callers
 * that must keep the exact bytes (payloads) also write them in hex.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "json.h"
#include "utf8.h"

/**
 * json_init() - start writing JSON to @f
 * @j:          the writer
 * @f:          the stream; borrowed
 */
void json_init(Json *j, FILE *f) {
        *j = (Json) { .f = f };
}

/**
 * json_escape() - write @n bytes as a JSON string literal, quotes included
 * @f:          the stream
 * @s:          the bytes, any values (NUL included)
 * @n:          how many
 *
 * See the top of this file for the mapping.
 */
void json_escape(FILE *f, const void *s, size_t n) {
        const unsigned char *p = s;
        size_t i = 0;

        fputc('"', f);
        while (i < n) {
                uint32_t cp;
                size_t l = utf8_sequence(p + i, n - i, &cp);

                if (l == 0) {
                        fputs("\\ufffd", f);
                        i++;
                        continue;
                }
                switch (cp) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\b':
                        fputs("\\b", f);
                        break;
                case '\f':
                        fputs("\\f", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                case 0x2028:
                case 0x2029:
                        fprintf(f, "\\u%04" PRIx32, cp);
                        break;
                default:
                        if (cp < 0x20 || cp == 0x7f)
                                fprintf(f, "\\u%04" PRIx32, cp);
                        else
                                fwrite(p + i, 1, l, f);
                        break;
                }
                i += l;
        }
        fputc('"', f);
}

/* Comma and key before a value; @key is NULL inside arrays and at the top. */
static void value_begin(Json *j, const char *key) {
        if (j->depth > 0) {
                if (j->has_member[j->depth])
                        fputc(',', j->f);
                j->has_member[j->depth] = true;
        }
        /* Keys belong in objects only; the writer's callers are all in this program. */
        assert(!key || j->depth > 0);
        if (key) {
                json_escape(j->f, key, strlen(key));
                fputc(':', j->f);
        }
}

static void container_begin(Json *j, const char *key, char c) {
        value_begin(j, key);
        fputc(c, j->f);
        assert(j->depth + 1 < JSON_DEPTH_MAX);
        j->depth++;
        j->has_member[j->depth] = false;
}

static void container_end(Json *j, char c) {
        assert(j->depth > 0);
        j->depth--;
        fputc(c, j->f);
}

/** json_object_begin() - open an object, as member @key or as a value */
void json_object_begin(Json *j, const char *key) {
        container_begin(j, key, '{');
}

/** json_object_end() - close the innermost object */
void json_object_end(Json *j) {
        container_end(j, '}');
}

/** json_array_begin() - open an array, as member @key or as a value */
void json_array_begin(Json *j, const char *key) {
        container_begin(j, key, '[');
}

/** json_array_end() - close the innermost array */
void json_array_end(Json *j) {
        container_end(j, ']');
}

/**
 * json_string() - a string value
 * @j:          the writer
 * @key:        member name, or NULL in an array
 * @s:          NUL-terminated; NULL writes null
 */
void json_string(Json *j, const char *key, const char *s) {
        if (!s) {
                json_null(j, key);
                return;
        }
        json_bytes(j, key, s, strlen(s));
}

/**
 * json_bytes() - a string value made from any bytes, see json_escape()
 */
void json_bytes(Json *j, const char *key, const void *s, size_t n) {
        value_begin(j, key);
        json_escape(j->f, s, n);
}

/**
 * json_hex() - bytes as a string of lower-case hex digits, two per byte
 */
void json_hex(Json *j, const char *key, const void *s, size_t n) {
        const unsigned char *p = s;

        value_begin(j, key);
        fputc('"', j->f);
        for (size_t i = 0; i < n; i++)
                fprintf(j->f, "%02x", p[i]);
        fputc('"', j->f);
}

/** json_uint() - an unsigned number */
void json_uint(Json *j, const char *key, uint64_t v) {
        value_begin(j, key);
        fprintf(j->f, "%" PRIu64, v);
}

/** json_int() - a signed integer */
void json_int(Json *j, const char *key, int64_t v) {
        value_begin(j, key);
        fprintf(j->f, "%" PRId64, v);
}

/**
 * json_raw() - a value that is JSON text already
 * @text:       well-formed JSON (e.g. from json-c), written as it is
 */
void json_raw(Json *j, const char *key, const char *text) {
        value_begin(j, key);
        fputs(text, j->f);
}

/** json_bool() - true or false */
void json_bool(Json *j, const char *key, bool v) {
        value_begin(j, key);
        fputs(v ? "true" : "false", j->f);
}

/** json_null() - null */
void json_null(Json *j, const char *key) {
        value_begin(j, key);
        fputs("null", j->f);
}

/**
 * json_strv() - an array of @n strings
 */
void json_strv(Json *j, const char *key, char *const *v, size_t n) {
        json_array_begin(j, key);
        for (size_t i = 0; i < n; i++)
                json_string(j, NULL, v[i]);
        json_array_end(j);
}

/**
 * json_end() - finish a top-level document: newline and flush
 * @j:          the writer, with everything closed
 *
 * The writer can go on with the next document (JSON lines).
 *
 * Return: 0, or -EIO if the stream failed.
 */
int json_end(Json *j) {
        assert(j->depth == 0);
        fputc('\n', j->f);
        return fflush(j->f) == 0 && !ferror(j->f) ? 0 : -EIO;
}

/*
 * Unit tests of plexusctl's JSON writer (cli/json.c): the string escaper
 * byte by byte against the mapping documented there, a round trip through
 * a strict decoder written here for every kind of input, and the writer's
 * commas and nesting.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "utf8.h"

/* What json_escape() makes of @n bytes, NUL-terminated, to free(). */
static char *escape(const void *s, size_t n) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        assert_non_null(f);
        json_escape(f, s, n);
        assert_int_equal(fclose(f), 0);
        return buf;
}

static void check(const char *in, size_t n, const char *expected) {
        char *out = escape(in, n);

        assert_string_equal(out, expected);
        free(out);
}

#define CHECK(literal, expected) check(literal, sizeof(literal) - 1, expected)

static void test_plain(void **state) {
        CHECK("", "\"\"");
        CHECK("hello, world", "\"hello, world\"");
        CHECK("/{}[]:,'", "\"/{}[]:,'\"");
}

static void test_quote_backslash(void **state) {
        CHECK("\"", "\"\\\"\"");
        CHECK("\\", "\"\\\\\"");
        CHECK("a\"b\\c", "\"a\\\"b\\\\c\"");
}

static void test_control(void **state) {
        CHECK("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
        CHECK("\x01", "\"\\u0001\"");
        CHECK("\x1b[31m", "\"\\u001b[31m\"");
        CHECK("\x1f", "\"\\u001f\"");
        CHECK("\x7f", "\"\\u007f\"");
        CHECK(" ~", "\" ~\"");
}

static void test_nul(void **state) {
        CHECK("a\0b", "\"a\\u0000b\"");
        CHECK("\0", "\"\\u0000\"");
}

static void test_utf8_kept(void **state) {
        CHECK("gr\xc3\xbc\xc3\x9f" "e", "\"gr\xc3\xbc\xc3\x9f" "e\"");     /* 2 bytes */
        CHECK("\xe2\x82\xac", "\"\xe2\x82\xac\"");                        /* U+20AC, 3 bytes */
        CHECK("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");                /* U+1F600, 4 bytes */
        CHECK("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");                /* U+10FFFF, the last */
        CHECK("\xc2\x80", "\"\xc2\x80\"");                                /* U+0080: valid JSON as is */
        CHECK("\xef\xbf\xbd", "\"\xef\xbf\xbd\"");                        /* U+FFFD itself */
}

static void test_line_separators(void **state) {
        CHECK("\xe2\x80\xa8", "\"\\u2028\"");
        CHECK("\xe2\x80\xa9", "\"\\u2029\"");
}

static void test_invalid(void **state) {
        CHECK("\x80", "\"\\ufffd\"");                           /* lone continuation */
        CHECK("\xbf", "\"\\ufffd\"");
        CHECK("\xff", "\"\\ufffd\"");
        CHECK("\xfe\xff", "\"\\ufffd\\ufffd\"");
        CHECK("\xc0\xaf", "\"\\ufffd\\ufffd\"");                /* overlong '/' */
        CHECK("\xc1\xbf", "\"\\ufffd\\ufffd\"");
        CHECK("\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"");     /* overlong, 3 bytes */
        CHECK("\xf0\x80\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
        CHECK("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");     /* surrogate U+D800 */
        CHECK("\xed\xbf\xbf", "\"\\ufffd\\ufffd\\ufffd\"");     /* surrogate U+DFFF */
        CHECK("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  /* U+110000 */
        CHECK("\xf5\x80\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
        CHECK("a\xe2\x82", "\"a\\ufffd\\ufffd\"");              /* cut short at the end */
        CHECK("\xe2\x82" "x", "\"\\ufffd\\ufffdx\"");         /* cut short before a letter */
        CHECK("\xc3", "\"\\ufffd\"");
        CHECK("\xc3\"", "\"\\ufffd\\\"\"");                      /* a quote after a bad lead byte is still escaped */
}

/*
 * A strict decoder of one JSON string literal, for the round trip: only
 * the escapes RFC 8259 allows, no raw control characters, well-formed
 * UTF-8 only, surrogate pairs joined. Returns the length decoded into
 * @out, or -1 if @s is not exactly one valid string literal.
 */
static int put_utf8(uint8_t *out, size_t *o, uint32_t cp) {
        if (cp < 0x80) {
                out[(*o)++] = (uint8_t)cp;
        } else if (cp < 0x800) {
                out[(*o)++] = (uint8_t)(0xc0 | (cp >> 6));
                out[(*o)++] = (uint8_t)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
                if (cp >= 0xd800 && cp <= 0xdfff)
                        return -1;
                out[(*o)++] = (uint8_t)(0xe0 | (cp >> 12));
                out[(*o)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                out[(*o)++] = (uint8_t)(0x80 | (cp & 0x3f));
        } else {
                out[(*o)++] = (uint8_t)(0xf0 | (cp >> 18));
                out[(*o)++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
                out[(*o)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                out[(*o)++] = (uint8_t)(0x80 | (cp & 0x3f));
        }
        return 0;
}

static int hex4(const char *s, uint32_t *ret) {
        uint32_t v = 0;

        for (int i = 0; i < 4; i++) {
                char c = s[i];

                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (uint32_t)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (uint32_t)(c - 'A' + 10);
                else
                        return -1;
        }
        *ret = v;
        return 0;
}

static long decode(const char *s, uint8_t *out) {
        size_t n = strlen(s), i = 1, o = 0;

        if (n < 2 || s[0] != '"')
                return -1;
        while (i < n) {
                unsigned char c = (unsigned char)s[i];
                uint32_t cp;
                size_t l;

                if (c == '"')
                        return i == n - 1 ? (long)o : -1;
                if (c < 0x20)
                        return -1;
                if (c != '\\') {
                        l = utf8_sequence(s + i, n - i, NULL);
                        if (l == 0)
                                return -1;
                        memcpy(out + o, s + i, l);
                        o += l;
                        i += l;
                        continue;
                }
                if (i + 1 >= n)
                        return -1;
                switch (s[i + 1]) {
                case '"': out[o++] = '"'; i += 2; continue;
                case '\\': out[o++] = '\\'; i += 2; continue;
                case '/': out[o++] = '/'; i += 2; continue;
                case 'b': out[o++] = '\b'; i += 2; continue;
                case 'f': out[o++] = '\f'; i += 2; continue;
                case 'n': out[o++] = '\n'; i += 2; continue;
                case 'r': out[o++] = '\r'; i += 2; continue;
                case 't': out[o++] = '\t'; i += 2; continue;
                case 'u': break;
                default: return -1;
                }
                if (i + 6 > n || hex4(s + i + 2, &cp) < 0)
                        return -1;
                i += 6;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                        uint32_t lo;

                        if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || hex4(s + i + 2, &lo) < 0 ||
                            lo < 0xdc00 || lo > 0xdfff)
                                return -1;
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                }
                if (put_utf8(out, &o, cp) < 0)
                        return -1;
        }
        return -1;
}

/* Every input: the result decodes; well-formed UTF-8 comes back exactly. */
static void round_trip(const uint8_t *in, size_t n) {
        char *out = escape(in, n);
        uint8_t *back = malloc(3 * n + 1);
        long m;

        assert_non_null(back);
        m = decode(out, back);
        if (m < 0)
                fail_msg("not a valid JSON string: %s", out);
        if (utf8_is_valid(in, n)) {
                assert_int_equal(m, (long)n);
                assert_memory_equal(back, in, n);
        } else {
                /* Each bad byte became U+FFFD; what was well-formed stays. */
                assert_non_null(strstr(out, "\\ufffd"));
        }
        free(back);
        free(out);
}

static void test_round_trip_bytes(void **state) {
        uint8_t b[2];

        /* Every byte alone, and every pair. */
        for (unsigned int i = 0; i < 256; i++) {
                b[0] = (uint8_t)i;
                round_trip(b, 1);
                for (unsigned int k = 0; k < 256; k++) {
                        b[1] = (uint8_t)k;
                        round_trip(b, 2);
                }
        }
}

static void test_round_trip_code_points(void **state) {
        /* Every code point, as UTF-8. */
        for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
                uint8_t b[4];
                size_t n = 0;

                if (cp >= 0xd800 && cp <= 0xdfff)
                        continue;
                assert_int_equal(put_utf8(b, &n, cp), 0);
                round_trip(b, n);
        }
}

static void test_round_trip_random(void **state) {
        uint8_t buf[64];
        unsigned int seed = 1;

        for (int i = 0; i < 20000; i++) {
                size_t n = (size_t)(rand_r(&seed) % (int)sizeof(buf));

                for (size_t k = 0; k < n; k++)
                        buf[k] = (uint8_t)rand_r(&seed);
                round_trip(buf, n);
        }
}

/* The writer: what a document looks like, commas and nesting included. */
static void test_writer(void **state) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        char *const strv[] = { (char *)"a", (char *)"b\"" };
        Json j;

        assert_non_null(f);
        json_init(&j, f);
        json_object_begin(&j, NULL);
        json_string(&j, "s", "x");
        json_string(&j, "none", NULL);
        json_uint(&j, "n", UINT64_MAX);
        json_bool(&j, "t", true);
        json_bool(&j, "f", false);
        json_null(&j, "z");
        json_strv(&j, "v", strv, 2);
        json_strv(&j, "empty", NULL, 0);
        json_hex(&j, "hex", "\x00\xff\x10", 3);
        json_bytes(&j, "bytes", "\x00\xff", 2);
        json_array_begin(&j, "objects");
        json_object_begin(&j, NULL);
        json_object_end(&j);
        json_object_begin(&j, NULL);
        json_uint(&j, "k", 0);
        json_object_end(&j);
        json_array_end(&j);
        json_object_begin(&j, "nested");
        json_array_begin(&j, "a");
        json_array_end(&j);
        json_object_end(&j);
        json_object_end(&j);
        assert_int_equal(json_end(&j), 0);

        /* JSON lines: the writer goes on with a second document. */
        json_array_begin(&j, NULL);
        json_uint(&j, NULL, 1);
        json_uint(&j, NULL, 2);
        json_array_end(&j);
        assert_int_equal(json_end(&j), 0);
        assert_int_equal(fclose(f), 0);

        assert_string_equal(buf,
                            "{\"s\":\"x\",\"none\":null,\"n\":18446744073709551615,\"t\":true,\"f\":false,"
                            "\"z\":null,\"v\":[\"a\",\"b\\\"\"],\"empty\":[],\"hex\":\"00ff10\","
                            "\"bytes\":\"\\u0000\\ufffd\",\"objects\":[{},{\"k\":0}],\"nested\":{\"a\":[]}}\n"
                            "[1,2]\n");
        free(buf);
}

static void test_is_text(void **state) {
        assert_true(utf8_is_text("", 0));
        assert_true(utf8_is_text("hello\tworld\n", 12));
        assert_true(utf8_is_text("gr\xc3\xbc\xc3\x9f" "e", 7));
        assert_false(utf8_is_text("a\0b", 3));
        assert_false(utf8_is_text("\r", 1));
        assert_false(utf8_is_text("\x1b[2J", 4));
        assert_false(utf8_is_text("\x7f", 1));
        assert_false(utf8_is_text("\xc2\x85", 2));      /* C1 control NEL */
        assert_false(utf8_is_text("\xff", 1));
        assert_true(utf8_is_valid("a\0b", 3));
        assert_false(utf8_is_valid("\xed\xa0\x80", 3));
}

static void test_width(void **state) {
        size_t w;

        assert_int_equal(utf8_width(""), 0);
        assert_int_equal(utf8_width("abc"), 3);
        assert_int_equal(utf8_width("\xff" "a"), 2);
        assert_int_equal(utf8_prefix("abcdef", 3, &w), 3);
        assert_int_equal(w, 3);
        assert_int_equal(utf8_prefix("ab", 5, &w), 2);
        assert_int_equal(w, 2);
        /* Never half a sequence: "é" is one column of two bytes. */
        assert_int_equal(utf8_prefix("a\xc3\xa9z", 2, NULL), 3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plain),
                cmocka_unit_test(test_quote_backslash),
                cmocka_unit_test(test_control),
                cmocka_unit_test(test_nul),
                cmocka_unit_test(test_utf8_kept),
                cmocka_unit_test(test_line_separators),
                cmocka_unit_test(test_invalid),
                cmocka_unit_test(test_round_trip_bytes),
                cmocka_unit_test(test_round_trip_code_points),
                cmocka_unit_test(test_round_trip_random),
                cmocka_unit_test(test_writer),
                cmocka_unit_test(test_is_text),
                cmocka_unit_test(test_width),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

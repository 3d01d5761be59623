/*
 * Unit tests for the bus name grammar (common/bus-name.c).
 *
 * Covers bus_name_is_unique_id() (':' then 1 to 20 decimal digits, no
 * leading zero) and bus_name_is_well_known() (2 or more '.'-separated
 * elements of [A-Za-z0-9_-] not starting with a digit, BUS_NAME_MAX bytes at
 * most, nothing under "plexus.") on every rule: tables of edge cases, both
 * limits (20 vs 21 digits, 240 vs 241 bytes), every byte value in every
 * position of an element, and an exhaustive cross-check of all short
 * strings over a small alphabet against reference checkers written here.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "bus-name.h"

/* Printable form of @s for failure messages: non-printable bytes as \xNN. */
static const char *quote(const char *s, char *buf, size_t size) {
        size_t pos = 0;

        if (!s)
                return "(null)";
        for (const unsigned char *p = (const unsigned char *)s; *p && pos + 5 < size; p++) {
                if (*p >= 0x20 && *p < 0x7f)
                        buf[pos++] = (char)*p;
                else
                        pos += (size_t)snprintf(buf + pos, size - pos, "\\x%02x", *p);
        }
        buf[pos] = 0;
        return buf;
}

static void expect_unique_id(const char *s, bool valid) {
        char q[1024];

        if (bus_name_is_unique_id(s) != valid)
                fail_msg("bus_name_is_unique_id(\"%s\") should be %s", quote(s, q, sizeof(q)),
                         valid ? "true" : "false");
}

static void expect_well_known(const char *s, bool valid) {
        char q[1024];

        if (bus_name_is_well_known(s) != valid)
                fail_msg("bus_name_is_well_known(\"%s\") should be %s", quote(s, q, sizeof(q)),
                         valid ? "true" : "false");
}

static void test_unique_id(void **state) {
        static const char *const good[] = {
                ":1", ":9", ":10", ":42", ":100", ":1000000", ":123456789",
                ":18446744073709551615",        /* UINT64_MAX, 20 digits */
                ":99999999999999999999",        /* 20 digits */
        };
        static const char *const bad[] = {
                "", ":", "::", "::1", ":0", ":00", ":01", ":001", ":010",
                ":1a", ":a", ":a1", ":1.2", ":1:", ":-1", ":+1", ":1 ", ": 1", " :1",
                ":1\n", ":1\t", ":\xb9", ":1\xff", ":\xd9\xa1",  /* superscript one, Arabic-Indic one */
                "1", "10", "a", "a.b", "org.example.Name", "plexus", ";1", "1:",
        };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                expect_unique_id(good[i], true);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_unique_id(bad[i], false);
        expect_unique_id(NULL, false);
}

static void test_unique_id_digit_limit(void **state) {
        char buf[32];

        /* ':' then 1 followed by n - 1 zeros: n digits, valid up to 20. */
        for (size_t n = 1; n <= 25; n++) {
                buf[0] = ':';
                buf[1] = '1';
                memset(buf + 2, '0', n - 1);
                buf[n + 1] = 0;
                assert_int_equal(strlen(buf), n + 1);
                expect_unique_id(buf, n <= 20);
        }

        /* Same with nines, and a non-digit right after the 20th digit. */
        buf[0] = ':';
        memset(buf + 1, '9', 20);
        buf[21] = 0;
        expect_unique_id(buf, true);
        buf[21] = '9';
        buf[22] = 0;
        expect_unique_id(buf, false);
        buf[21] = 'x';
        expect_unique_id(buf, false);
}

static void test_well_known(void **state) {
        static const char *const good[] = {
                "a.b", "a.b.c", "A.B", "org.example.Service", "com.example.x0",
                "a.b1", "a1.b", "a.b.c1d2", "a_.b", "_a._b", "_.a", "a._", "-.-", "-a.-b", "a-b.c_d",
                "a.b-1", "a.b_1", "Z9.z9",
                "plexusd.a", "plexu.a", "plexus_.a", "plexus-a.b", "a.plexus", "a.plexus.b", "x.plexus.y",
        };
        static const char *const bad[] = {
                /* empty, single element */
                "", "a", "abc", "plexus", "_", "-",
                /* leading, trailing, double dots */
                ".", "..", "...", ".a", "a.", ".a.b", "a.b.", "a..b", "a.b..c", "..a.b", "a.b..",
                /* an element starting with a digit */
                "a.1b", "1a.b", "0.a", "a.0", "a.b.2", "a.b.2c", "9z.a",
                /* spaces and control bytes */
                " a.b", "a.b ", "a .b", "a. b", "a b.c", "a.b\t", "a.b\n", "\ta.b", "a.b\x7f", "a.b\x01",
                /* non-ASCII */
                "caf\xc3\xa9.a", "a.caf\xc3\xa9", "a.\x80", "\xff.a", "a.b\xc2\xa0",
                /* other punctuation */
                "a.b/c", "a/b.c", "a.b:c", "a:b.c", "a.b*", "a.b$", "a.b+c", "a.b#", "a,b.c", "a.b~",
                /* the broker's names */
                "plexus.", "plexus.a", "plexus.a.b", "plexus.Names", "plexus..a",
                /* unique ids */
                ":1", ":12", ":1.2", ":a.b", "a.:1",
        };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                expect_well_known(good[i], true);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_well_known(bad[i], false);
        expect_well_known(NULL, false);
}

static void test_well_known_length_limit(void **state) {
        char buf[BUS_NAME_MAX + 16];

        assert_int_equal(BUS_NAME_MAX, 240);

        /* "a." then 238 'b': exactly 240 bytes. */
        memset(buf, 'b', sizeof(buf));
        buf[0] = 'a';
        buf[1] = '.';
        buf[BUS_NAME_MAX] = 0;
        assert_int_equal(strlen(buf), BUS_NAME_MAX);
        expect_well_known(buf, true);

        /* One byte more, every byte still valid: refused for its length alone. */
        buf[BUS_NAME_MAX] = 'b';
        buf[BUS_NAME_MAX + 1] = 0;
        expect_well_known(buf, false);

        /* 241 bytes ending in a new element: still too long. */
        buf[BUS_NAME_MAX - 1] = '.';
        buf[BUS_NAME_MAX] = 'c';
        expect_well_known(buf, false);

        /* Many one-byte elements: "a.a.a...a" of 239 bytes, then 241. */
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = i % 2 ? '.' : 'a';
        buf[BUS_NAME_MAX - 1] = 0;
        expect_well_known(buf, true);
        buf[BUS_NAME_MAX - 1] = '.';
        buf[BUS_NAME_MAX] = 'a';
        buf[BUS_NAME_MAX + 1] = 0;
        assert_int_equal(strlen(buf), BUS_NAME_MAX + 1);
        expect_well_known(buf, false);

        /* 240 bytes: one short element then a long one ending in a digit. */
        memset(buf, 'x', sizeof(buf));
        buf[0] = 'a';
        buf[1] = '.';
        buf[BUS_NAME_MAX - 1] = '7';
        buf[BUS_NAME_MAX] = 0;
        expect_well_known(buf, true);

        /* Much longer names. */
        memset(buf, 'x', sizeof(buf));
        buf[0] = 'a';
        buf[1] = '.';
        buf[sizeof(buf) - 1] = 0;
        expect_well_known(buf, false);
}

static bool is_element_char(unsigned c, bool first) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-')
                return true;
        return !first && c >= '0' && c <= '9';
}

static void test_well_known_every_byte(void **state) {
        char buf[16];

        for (unsigned c = 1; c < 256; c++) {
                /* As the first byte of the second element. */
                snprintf(buf, sizeof(buf), "a.%cb", (char)c);
                expect_well_known(buf, is_element_char(c, true));

                /* As a single-byte second element. */
                snprintf(buf, sizeof(buf), "a.%c", (char)c);
                expect_well_known(buf, is_element_char(c, true));

                /* Inside and at the end of an element. */
                snprintf(buf, sizeof(buf), "a.b%cc", (char)c);
                expect_well_known(buf, c == '.' || is_element_char(c, false));
                snprintf(buf, sizeof(buf), "a.b%c", (char)c);
                expect_well_known(buf, is_element_char(c, false));

                /* As the first byte of the first element. */
                snprintf(buf, sizeof(buf), "%ca.b", (char)c);
                expect_well_known(buf, is_element_char(c, true));

                /* After ':' and after a digit of a unique id. */
                snprintf(buf, sizeof(buf), ":%c", (char)c);
                expect_unique_id(buf, c >= '1' && c <= '9');
                snprintf(buf, sizeof(buf), ":1%c", (char)c);
                expect_unique_id(buf, c >= '0' && c <= '9');
        }
}

/* Reference checkers: split into elements first, then check each. */
static bool ref_well_known(const char *s) {
        size_t len = strlen(s), elements = 0;
        const char *p = s;

        if (len > BUS_NAME_MAX || strncmp(s, "plexus.", 7) == 0)
                return false;
        for (;;) {
                size_t n = strcspn(p, ".");

                if (n == 0)
                        return false;
                for (size_t i = 0; i < n; i++)
                        if (!is_element_char((unsigned char)p[i], i == 0))
                                return false;
                elements++;
                if (!p[n])
                        break;
                p += n + 1;
        }
        return elements >= 2;
}

static bool ref_unique_id(const char *s) {
        size_t n = strlen(s);

        if (n < 2 || n > 21 || s[0] != ':' || s[1] == '0')
                return false;
        for (size_t i = 1; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

static void test_exhaustive(void **state) {
        static const char alphabet[] = { 'a', 'Z', '0', '1', '_', '-', '.', ':', ' ', '\xe9' };
        const size_t n_alpha = sizeof(alphabet);
        unsigned n_well_known = 0, n_unique = 0;
        char buf[8];

        /* Every string of up to 5 bytes over the alphabet. */
        for (size_t len = 0; len <= 5; len++) {
                size_t total = 1;

                for (size_t i = 0; i < len; i++)
                        total *= n_alpha;
                for (size_t k = 0; k < total; k++) {
                        size_t x = k;
                        bool wk, uid;

                        for (size_t i = 0; i < len; i++) {
                                buf[i] = alphabet[x % n_alpha];
                                x /= n_alpha;
                        }
                        buf[len] = 0;

                        wk = bus_name_is_well_known(buf);
                        uid = bus_name_is_unique_id(buf);
                        expect_well_known(buf, ref_well_known(buf));
                        expect_unique_id(buf, ref_unique_id(buf));
                        /* A unique id is never a well-known name. */
                        assert_false(wk && uid);
                        n_well_known += wk;
                        n_unique += uid;
                }
        }
        /* A broken generator would make the cross-check vacuous. */
        assert_true(n_well_known > 1000);
        assert_true(n_unique > 10);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unique_id),
                cmocka_unit_test(test_unique_id_digit_limit),
                cmocka_unit_test(test_well_known),
                cmocka_unit_test(test_well_known_length_limit),
                cmocka_unit_test(test_well_known_every_byte),
                cmocka_unit_test(test_exhaustive),
        };

        return cmocka_run_group_tests_name("Bus name grammar", tests, NULL, NULL);
}

/*
 * Unit tests for the topic grammar and matcher (common/topic.c).
 *
 * Covers topic_is_valid() and topic_pattern_is_valid() on every rule of the
 * grammar and at both limits (255 vs 256 bytes, 32 vs 33 levels),
 * topic_is_reserved(), and topic_match() with MQTT semantics: a table of
 * edge cases ('+' is exactly one level, a final '#' matches its parent level
 * and everything below, prefixes of levels never match) and an exhaustive
 * cross-check against a level-splitting reference matcher written here.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "topic.h"

/* Writes @n levels of @level joined by '/' into @buf, optionally ending in @last. */
static void make_levels(char *buf, size_t size, const char *level, size_t n, const char *last) {
        size_t pos = 0;

        buf[0] = 0;
        for (size_t i = 0; i < n; i++) {
                const char *l = (i + 1 == n && last) ? last : level;
                int r = snprintf(buf + pos, size - pos, "%s%s", i ? "/" : "", l);

                assert_true(r > 0 && (size_t)r < size - pos);
                pos += (size_t)r;
        }
}

static void expect_topic(const char *topic, bool valid) {
        if (topic_is_valid(topic) != valid)
                fail_msg("topic_is_valid(\"%s\") should be %s", topic ? topic : "(null)",
                         valid ? "true" : "false");
}

static void expect_pattern(const char *pattern, bool valid) {
        if (topic_pattern_is_valid(pattern) != valid)
                fail_msg("topic_pattern_is_valid(\"%s\") should be %s",
                         pattern ? pattern : "(null)", valid ? "true" : "false");
}

static void test_topic_valid(void **state) {
        static const char *const good[] = {
                "a", "a/b", "a/b/c", "plexus", "plexus/peers", "Sensors/Kitchen-1/t_0",
                "a.b:c~d!e", "\"quoted\"", "x/y/z/w/v", "0/1/2",
        };
        static const char *const bad[] = {
                "", "/", "//", "/a", "a/", "a//b", "a/b/", "/a/b",
                "+", "#", "a/+", "a/#", "+/a", "a+", "a#", "a/b+c", "a/b#c",
                " ", "a b", "a/ b", "a\tb", "a\nb", "a\x7f", "a\x01", "\x80", "caf\xc3\xa9",
        };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                expect_topic(good[i], true);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_topic(bad[i], false);
        expect_topic(NULL, false);
}

static void test_pattern_valid(void **state) {
        static const char *const good[] = {
                "a", "a/b", "#", "+", "a/#", "a/+", "+/a", "+/+", "+/#", "+/+/#",
                "a/+/c", "a/+/c/#", "plexus/#",
        };
        static const char *const bad[] = {
                "", "/", "//", "/a", "a/", "a//b", "/#", "#/", "+/", "/+",
                "#/a", "a/#/b", "#/#", "+#", "#+", "++", "##",
                "a+", "a#", "+a", "#a", "a/b+", "a/+b", "a/#b", "a/b#",
                " ", "a b", "+ ", "a/\x7f", "\x1f", "a/\xff",
        };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                expect_pattern(good[i], true);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_pattern(bad[i], false);
        expect_pattern(NULL, false);

        /* Every valid topic is a valid pattern. */
        expect_pattern("Sensors/Kitchen-1/t_0", true);
}

static void test_length_limit(void **state) {
        char buf[TOPIC_MAX + 2];

        memset(buf, 'x', TOPIC_MAX);
        buf[TOPIC_MAX] = 0;
        expect_topic(buf, true);
        expect_pattern(buf, true);

        /* 255 bytes ending in a wildcard level. */
        buf[TOPIC_MAX - 2] = '/';
        buf[TOPIC_MAX - 1] = '#';
        expect_pattern(buf, true);
        expect_topic(buf, false);
        buf[TOPIC_MAX - 1] = '+';
        expect_pattern(buf, true);

        memset(buf, 'x', TOPIC_MAX + 1);
        buf[TOPIC_MAX + 1] = 0;
        expect_topic(buf, false);
        expect_pattern(buf, false);
        buf[TOPIC_MAX - 1] = '/';
        buf[TOPIC_MAX] = '#';
        expect_pattern(buf, false);
}

static void test_level_limit(void **state) {
        char buf[4 * TOPIC_LEVELS_MAX + 8];

        make_levels(buf, sizeof(buf), "a", TOPIC_LEVELS_MAX, NULL);
        expect_topic(buf, true);
        expect_pattern(buf, true);
        make_levels(buf, sizeof(buf), "a", TOPIC_LEVELS_MAX + 1, NULL);
        expect_topic(buf, false);
        expect_pattern(buf, false);

        make_levels(buf, sizeof(buf), "+", TOPIC_LEVELS_MAX, NULL);
        expect_pattern(buf, true);
        make_levels(buf, sizeof(buf), "+", TOPIC_LEVELS_MAX + 1, NULL);
        expect_pattern(buf, false);

        /* A final '#' is a level like any other. */
        make_levels(buf, sizeof(buf), "a", TOPIC_LEVELS_MAX, "#");
        expect_pattern(buf, true);
        make_levels(buf, sizeof(buf), "a", TOPIC_LEVELS_MAX + 1, "#");
        expect_pattern(buf, false);

        /* Many short levels hit the level limit long before the byte limit. */
        make_levels(buf, sizeof(buf), "ab", TOPIC_LEVELS_MAX + 1, NULL);
        assert_true(strlen(buf) < TOPIC_MAX);
        expect_topic(buf, false);
}

static void test_reserved(void **state) {
        assert_true(topic_is_reserved("plexus"));
        assert_true(topic_is_reserved("plexus/peers"));
        assert_true(topic_is_reserved("plexus/peers/joined"));
        assert_false(topic_is_reserved("plexusx"));
        assert_false(topic_is_reserved("plexu"));
        assert_false(topic_is_reserved("plexus2/x"));
        assert_false(topic_is_reserved("Plexus/x"));
        assert_false(topic_is_reserved("a/plexus"));
        assert_false(topic_is_reserved("a/plexus/b"));
}

static const struct {
        const char *pattern;
        const char *topic;
        bool match;
} match_cases[] = {
        { "#", "a", true },
        { "#", "a/b/c", true },
        { "#", "plexus/peers", true },
        { "+", "a", true },
        { "+", "abc", true },
        { "+", "a/b", false },
        { "a", "a", true },
        { "a", "b", false },
        { "a", "ab", false },
        { "ab", "a", false },
        { "ab", "ac", false },
        { "a", "a/b", false },
        { "a/b", "a", false },
        { "a/b", "a/b", true },
        { "a/b", "a/bc", false },
        { "a/bc", "a/b", false },
        { "a/+", "a", false },
        { "a/+", "a/b", true },
        { "a/+", "a/bcd", true },
        { "a/+", "a/b/c", false },
        { "a/+", "ab/c", false },
        { "a/+", "b/a", false },
        { "a/#", "a", true },
        { "a/#", "a/b", true },
        { "a/#", "a/b/c/d", true },
        { "a/#", "ab", false },
        { "a/#", "ab/c", false },
        { "a/#", "b", false },
        { "a/#", "b/a", false },
        { "a/+/#", "a", false },
        { "a/+/#", "a/b", true },
        { "a/+/#", "a/b/c/d", true },
        { "a/+/#", "b/c", false },
        { "+/+", "a", false },
        { "+/+", "a/b", true },
        { "+/+", "a/b/c", false },
        { "+/#", "a", true },
        { "+/#", "a/b", true },
        { "+/+/#", "a", false },
        { "+/+/#", "a/b", true },
        { "+/+/+", "a/b/c", true },
        { "+/b", "a/b", true },
        { "+/b", "a/c", false },
        { "+/b", "b", false },
        { "+/b", "a/bc", false },
        { "a/+/c", "a/b/c", true },
        { "a/+/c", "a/b/d", false },
        { "a/+/c", "a/c", false },
        { "a/+/c", "a/b/c/d", false },
        { "a/b/#", "a", false },
        { "a/b/#", "a/b", true },
        { "a/b/#", "a/bc", false },
        { "a/b/#", "a/b/c", true },
        { "foo/bar", "foo/barbaz", false },
        { "foo/barbaz", "foo/bar", false },
        { "foo/+", "foobar", false },
        { "foo/#", "foobar", false },
        { "foo", "foo/bar", false },
        { "sensors/+/temp", "sensors/kitchen/temp", true },
        { "sensors/+/temp", "sensors/kitchen/humidity", false },
        { "sensors/+/temp", "sensors/temp", false },
        { "plexus/#", "plexus", true },
        { "plexus/#", "plexusx", false },
};

static void test_match_table(void **state) {
        for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
                const char *p = match_cases[i].pattern, *t = match_cases[i].topic;

                /* The table itself must be made of valid input. */
                assert_true(topic_pattern_is_valid(p));
                assert_true(topic_is_valid(t));
                if (topic_match(p, t) != match_cases[i].match)
                        fail_msg("topic_match(\"%s\", \"%s\") should be %s", p, t,
                                 match_cases[i].match ? "true" : "false");
        }
}

static void test_match_limits(void **state) {
        char p[4 * TOPIC_LEVELS_MAX + 8], t[4 * TOPIC_LEVELS_MAX + 8];

        make_levels(t, sizeof(t), "a", TOPIC_LEVELS_MAX, NULL);
        make_levels(p, sizeof(p), "+", TOPIC_LEVELS_MAX, NULL);
        assert_true(topic_match(p, t));
        make_levels(p, sizeof(p), "+", TOPIC_LEVELS_MAX - 1, NULL);
        assert_false(topic_match(p, t));
        make_levels(p, sizeof(p), "+", TOPIC_LEVELS_MAX - 1, "#");
        assert_true(topic_match(p, t));
        make_levels(p, sizeof(p), "a", TOPIC_LEVELS_MAX, "b");
        assert_false(topic_match(p, t));
        make_levels(p, sizeof(p), "a", TOPIC_LEVELS_MAX, "#");
        assert_true(topic_match(p, t));
}

/*
 * The reference: split both strings into levels and compare level by level.
 * Only for valid input, where no level is empty.
 */
static size_t split(const char *s, const char *levels[], size_t lens[]) {
        size_t n = 0;

        for (;;) {
                const char *end = strchr(s, '/');

                levels[n] = s;
                lens[n] = end ? (size_t)(end - s) : strlen(s);
                n++;
                if (!end)
                        return n;
                s = end + 1;
        }
}

static bool reference_match(const char *pattern, const char *topic) {
        const char *pl[TOPIC_LEVELS_MAX + 1], *tl[TOPIC_LEVELS_MAX + 1];
        size_t plen[TOPIC_LEVELS_MAX + 1], tlen[TOPIC_LEVELS_MAX + 1];
        size_t np = split(pattern, pl, plen), nt = split(topic, tl, tlen);

        for (size_t i = 0; i < np; i++) {
                if (plen[i] == 1 && pl[i][0] == '#')
                        return true;    /* matches level i - 1 and everything below */
                if (i >= nt)
                        return false;
                if (plen[i] == 1 && pl[i][0] == '+')
                        continue;
                if (plen[i] != tlen[i] || memcmp(pl[i], tl[i], plen[i]) != 0)
                        return false;
        }
        return np == nt;
}

/* Builds the @index-th string of up to @max_levels levels over @alphabet. */
static bool build(char *buf, size_t size, unsigned index, const char *const *alphabet,
                  unsigned n_alphabet, unsigned max_levels) {
        unsigned n_levels = 1, span = n_alphabet;

        /* Strings are numbered by length first: n^1 of one level, n^2 of two... */
        while (index >= span) {
                index -= span;
                if (++n_levels > max_levels)
                        return false;
                span *= n_alphabet;
        }
        buf[0] = 0;
        for (unsigned i = 0; i < n_levels; i++) {
                if (i)
                        strncat(buf, "/", size - strlen(buf) - 1);
                strncat(buf, alphabet[index % n_alphabet], size - strlen(buf) - 1);
                index /= n_alphabet;
        }
        return true;
}

static void test_match_exhaustive(void **state) {
        static const char *const p_alphabet[] = { "a", "b", "ab", "+", "#" };
        static const char *const t_alphabet[] = { "a", "b", "ab" };
        unsigned n_patterns = 0, n_matches = 0;
        char p[64], t[64];

        /* All patterns and topics of up to 4 levels over small alphabets. */
        for (unsigned i = 0; build(p, sizeof(p), i, p_alphabet, 5, 4); i++) {
                if (!topic_pattern_is_valid(p))
                        continue;
                n_patterns++;
                for (unsigned j = 0; build(t, sizeof(t), j, t_alphabet, 3, 4); j++) {
                        bool want = reference_match(p, t);

                        assert_true(topic_is_valid(t));
                        if (topic_match(p, t) != want)
                                fail_msg("topic_match(\"%s\", \"%s\") should be %s", p, t,
                                         want ? "true" : "false");
                        n_matches += want;
                }
        }
        /* Guard against a generator that produces (almost) nothing. */
        assert_true(n_patterns > 300);
        assert_true(n_matches > 1000);
}

static void test_match_self(void **state) {
        static const char *const topics[] = { "a", "a/b", "plexus/peers/joined", "x/y/z" };

        for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
                assert_true(topic_match(topics[i], topics[i]));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_topic_valid),
                cmocka_unit_test(test_pattern_valid),
                cmocka_unit_test(test_length_limit),
                cmocka_unit_test(test_level_limit),
                cmocka_unit_test(test_reserved),
                cmocka_unit_test(test_match_table),
                cmocka_unit_test(test_match_limits),
                cmocka_unit_test(test_match_exhaustive),
                cmocka_unit_test(test_match_self),
        };

        return cmocka_run_group_tests_name("Topic grammar", tests, NULL, NULL);
}

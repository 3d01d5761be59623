/*
 * Topic and pattern grammar (see topic.h) and the reference matcher that
 * libplexus uses to route a received signal to its local callbacks. The
 * broker does not call topic_match() per subscription: it walks a trie
 * (daemon/topic-trie.c) whose results must agree with this function.
 */

#include <string.h>

#include "topic.h"

static bool level_char_ok(char c) {
        return c > 0x20 && c < 0x7f && c != '+' && c != '#' && c != '/';
}

static bool check(const char *s, bool pattern) {
        size_t len, levels = 1;
        const char *level = s;

        if (!s)
                return false;
        len = strlen(s);
        if (len == 0 || len > TOPIC_MAX)
                return false;

        for (const char *p = s;; p++) {
                if (*p == '/' || *p == 0) {
                        size_t n = (size_t)(p - level);

                        if (n == 0)
                                return false;
                        if (pattern && n == 1 && (*level == '+' || *level == '#')) {
                                if (*level == '#' && *p != 0)
                                        return false;   /* '#' only as the last level */
                        } else {
                                for (const char *c = level; c < p; c++)
                                        if (!level_char_ok(*c))
                                                return false;
                        }
                        if (*p == 0)
                                break;
                        if (++levels > TOPIC_LEVELS_MAX)
                                return false;
                        level = p + 1;
                }
        }
        return true;
}

/**
 * topic_is_valid() - check a topic to publish on
 * @topic:      NUL-terminated topic
 *
 * Return: true if @topic follows the grammar; wildcards are refused.
 */
bool topic_is_valid(const char *topic) {
        return check(topic, false);
}

/**
 * topic_pattern_is_valid() - check a subscription pattern
 * @pattern:    NUL-terminated pattern
 *
 * Return: true if @pattern follows the grammar.
 */
bool topic_pattern_is_valid(const char *pattern) {
        return check(pattern, true);
}

/**
 * topic_is_reserved() - whether only the broker may publish on @topic
 * @topic:      a valid topic
 *
 * Return: true for "plexus" itself and everything below "plexus/".
 */
bool topic_is_reserved(const char *topic) {
        return strcmp(topic, "plexus") == 0 ||
               strncmp(topic, TOPIC_RESERVED_PREFIX, strlen(TOPIC_RESERVED_PREFIX)) == 0;
}

/**
 * topic_match() - whether @pattern matches @topic
 * @pattern:    a valid pattern
 * @topic:      a valid topic
 *
 * Return: true on a match. "a/#" matches "a" and everything below it, "#"
 * matches every topic, "+" matches exactly one level.
 */
bool topic_match(const char *pattern, const char *topic) {
        const char *p = pattern, *t = topic;

        for (;;) {
                if (p[0] == '#' && p[1] == 0)
                        return true;
                if (p[0] == '+' && (p[1] == '/' || p[1] == 0)) {
                        while (*t && *t != '/')
                                t++;
                        p++;
                } else {
                        while (*p && *p != '/' && *p == *t) {
                                p++;
                                t++;
                        }
                        if ((*p && *p != '/') || (*t && *t != '/'))
                                return false;
                }
                /* Both at the end of a level. */
                if (*p == 0 && *t == 0)
                        return true;
                if (*p == 0)
                        return false;
                if (*t == 0)
                        /* "a/#" also matches "a". */
                        return strcmp(p, "/#") == 0;
                p++;
                t++;
        }
}

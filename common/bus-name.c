/*
 * Bus name grammar (see bus-name.h), shared by the broker and libplexus so
 * that both refuse the same names.
 */

#include <string.h>

#include "bus-name.h"

/**
 * bus_name_is_unique_id() - whether @s has the form of a unique id
 */
bool bus_name_is_unique_id(const char *s) {
        size_t n;

        if (!s || s[0] != ':' || s[1] < '1' || s[1] > '9')
                return false;
        n = strspn(s + 1, "0123456789");
        return s[1 + n] == 0 && n <= 20;
}

static bool element_char(char c, bool first) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-')
                return true;
        return !first && c >= '0' && c <= '9';
}

/**
 * bus_name_is_well_known() - whether @s is a valid well-known name
 */
bool bus_name_is_well_known(const char *s) {
        size_t len, elements = 1;
        bool first = true;

        if (!s)
                return false;
        len = strlen(s);
        if (len == 0 || len > BUS_NAME_MAX)
                return false;
        if (strncmp(s, "plexus.", 7) == 0)
                return false;

        for (const char *p = s; *p; p++) {
                if (*p == '.') {
                        if (first)
                                return false;   /* empty element */
                        elements++;
                        first = true;
                        continue;
                }
                if (!element_char(*p, first))
                        return false;
                first = false;
        }
        return !first && elements >= 2;
}

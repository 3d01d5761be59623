/*
 * Unit tests of plexusctl's tables (cli/table.c): alignment, sanitized
 * cells, and narrowing to a terminal's width, flexible columns only.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "table.h"

static const char *const headers[] = { "ID", "N", "TEXT" };

static Table *make(void) {
        Table *t = NULL;

        assert_int_equal(table_new(&t, headers, 3), 0);
        table_set_right(t, 1);
        table_set_flexible(t, 2, 4);
        assert_int_equal(table_add_row(t, (const char *[]) { ":1", "5", "short" }), 0);
        assert_int_equal(table_add_row(t, (const char *[]) { ":12", "1234", "a much longer text" }), 0);
        return t;
}

static char *print(Table *t, size_t columns, bool legend) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        assert_non_null(f);
        assert_int_equal(table_print(t, f, columns, legend), 0);
        assert_int_equal(fclose(f), 0);
        return buf;
}

static void test_aligned(void **state) {
        Table *t = make();
        char *out = print(t, 0, true);

        /* Right-aligned numbers; the last column is not padded. */
        assert_string_equal(out,
                            "ID      N  TEXT\n"
                            ":1      5  short\n"
                            ":12  1234  a much longer text\n");
        free(out);
        out = print(t, 0, false);
        assert_string_equal(out,
                            ":1      5  short\n"
                            ":12  1234  a much longer text\n");
        free(out);
        assert_int_equal(table_n_rows(t), 2);
        table_free(t);
}

static void test_narrowed(void **state) {
        Table *t = make();
        char *out = print(t, 20, true);

        /* 3 + 2 + 4 + 2 = 11 columns fixed: TEXT gets 9, cut with "..." (C locale). */
        assert_string_equal(out,
                            "ID      N  TEXT\n"
                            ":1      5  short\n"
                            ":12  1234  a much...\n");
        free(out);

        /* Not below the minimum: the row is then wider than asked, and the terminal wraps. */
        out = print(t, 5, true);
        assert_string_equal(out,
                            "ID      N  TEXT\n"
                            ":1      5  s...\n"
                            ":12  1234  a...\n");
        free(out);

        /* Wide enough: nothing cut. */
        out = print(t, 200, true);
        assert_string_equal(out,
                            "ID      N  TEXT\n"
                            ":1      5  short\n"
                            ":12  1234  a much longer text\n");
        free(out);
        table_free(t);
}

static void test_sanitized(void **state) {
        Table *t = NULL;
        char *out;

        assert_int_equal(table_new(&t, headers, 3), 0);
        assert_int_equal(table_add_row(t, (const char *[]) { "a\nb", "\x1b[1m", "\xff\tx" }), 0);
        assert_int_equal(table_add_row(t, (const char *[]) { NULL, "", "" }), 0);
        out = print(t, 0, false);
        /* The second row's cells are empty: only padding and separators. */
        assert_string_equal(out,
                            "a?b  ?[1m  ??x\n"
                            "           \n");
        free(out);
        table_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_aligned),
                cmocka_unit_test(test_narrowed),
                cmocka_unit_test(test_sanitized),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}

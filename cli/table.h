#pragma once

/*
 * Aligned text tables for plexusctl's human-readable output.
 *
 * A Table holds copies of its cells. Printing sizes every column to its
 * widest cell; given a terminal width, it then narrows the columns marked
 * flexible (free text such as names and descriptions, never ids or
 * numbers), widest first, down to their minimum, and cuts the cells that no
 * longer fit with an ellipsis. Without a width (output is not a terminal)
 * nothing is cut. Cells are sanitized when added: control characters and
 * malformed UTF-8 bytes become '?', so no cell can break a row.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct Table Table;

#define TABLE_SEPARATOR "  "

int table_new(Table **ret, const char *const *headers, size_t n_columns);
Table *table_free(Table *t);
void table_set_flexible(Table *t, size_t column, size_t min_width);
void table_set_right(Table *t, size_t column);
int table_add_row(Table *t, const char *const *cells);
size_t table_n_rows(const Table *t);
int table_print(Table *t, FILE *f, size_t columns, bool legend);

static inline void table_freep(Table **t) {
        if (*t)
                table_free(*t);
}

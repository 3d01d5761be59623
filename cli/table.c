/*
 * Tables (see table.h). Cells are stored row after row in one growing
 * array of strings; widths are display columns (utf8_width()).
 */

#include <assert.h>
#include <errno.h>
#include <langinfo.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"
#include "utf8.h"
#include "util.h"

typedef struct Column {
        char *header;
        bool flexible;
        bool right;
        size_t min_width;
        size_t width;           /* while printing */
} Column;

struct Table {
        Column *columns;
        size_t n_columns;
        char **cells;           /* n_rows * n_columns */
        size_t n_rows;
        size_t n_alloc;         /* rows */
};

/* A copy of @s fit for one cell: control characters and malformed bytes become '?'. */
static char *cell_dup(const char *s) {
        size_t n = strlen(s), i = 0;
        char *d;

        d = malloc(n + 1);
        if (!d)
                return NULL;
        while (i < n) {
                uint32_t cp;
                size_t l = utf8_sequence(s + i, n - i, &cp);

                if (l == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
                        d[i++] = '?';
                        continue;
                }
                memcpy(d + i, s + i, l);
                i += l;
        }
        d[n] = 0;
        return d;
}

/**
 * table_new() - a table with the given column headers
 * @ret:        the table, written on success
 * @headers:    @n_columns header strings; copied
 * @n_columns:  at least 1
 *
 * Return: 0 or -ENOMEM.
 */
int table_new(Table **ret, const char *const *headers, size_t n_columns) {
        _cleanup_(table_freep) Table *t = NULL;

        assert(n_columns > 0);
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->columns = calloc(n_columns, sizeof(*t->columns));
        if (!t->columns)
                return -ENOMEM;
        t->n_columns = n_columns;
        for (size_t i = 0; i < n_columns; i++) {
                t->columns[i].header = cell_dup(headers[i]);
                if (!t->columns[i].header)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

/**
 * table_free() - free @t and its cells
 * @t:          a table or NULL
 *
 * Return: NULL.
 */
Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        for (size_t i = 0; t->columns && i < t->n_columns; i++)
                free(t->columns[i].header);
        free(t->columns);
        free(t);
        return NULL;
}

/**
 * table_set_flexible() - let @column be narrowed to fit a terminal
 * @t:          the table
 * @column:     its index
 * @min_width:  never narrower than this (at least 4, room for "x...")
 */
void table_set_flexible(Table *t, size_t column, size_t min_width) {
        assert(column < t->n_columns);
        t->columns[column].flexible = true;
        t->columns[column].min_width = min_width < 4 ? 4 : min_width;
}

/**
 * table_set_right() - right-align @column, as for numbers
 */
void table_set_right(Table *t, size_t column) {
        assert(column < t->n_columns);
        t->columns[column].right = true;
}

/**
 * table_add_row() - append a row
 * @t:          the table
 * @cells:      one string per column; copied (see table.h)
 *
 * Return: 0 or -ENOMEM (the table is unchanged then).
 */
int table_add_row(Table *t, const char *const *cells) {
        char **row;

        if (t->n_rows == t->n_alloc) {
                size_t n = t->n_alloc ? 2 * t->n_alloc : 16;
                char **c;

                c = reallocarray(t->cells, n * t->n_columns, sizeof(*c));
                if (!c)
                        return -ENOMEM;
                t->cells = c;
                t->n_alloc = n;
        }
        row = t->cells + t->n_rows * t->n_columns;
        for (size_t i = 0; i < t->n_columns; i++) {
                row[i] = cell_dup(cells[i] ? cells[i] : "");
                if (!row[i]) {
                        while (i > 0)
                                free(row[--i]);
                        return -ENOMEM;
                }
        }
        t->n_rows++;
        return 0;
}

/** table_n_rows() - rows added so far */
size_t table_n_rows(const Table *t) {
        return t->n_rows;
}

static const char *ellipsis(size_t *ret_width) {
        /* "…" only where the terminal will show it as one character. */
        if (strcmp(nl_langinfo(CODESET), "UTF-8") == 0) {
                *ret_width = 1;
                return "\u2026";
        }
        *ret_width = 3;
        return "...";
}

/* Narrow the flexible columns, widest first, until the row fits @columns or none can give more. */
static void fit(Table *t, size_t columns) {
        size_t total = (t->n_columns - 1) * strlen(TABLE_SEPARATOR);

        for (size_t i = 0; i < t->n_columns; i++)
                total += t->columns[i].width;

        while (total > columns) {
                Column *widest = NULL;

                for (size_t i = 0; i < t->n_columns; i++) {
                        Column *c = &t->columns[i];

                        if (c->flexible && c->width > c->min_width && (!widest || c->width > widest->width))
                                widest = c;
                }
                if (!widest)
                        break;          /* the fixed columns alone are too wide: let the terminal wrap */
                widest->width--;
                total--;
        }
}

static void print_cell(FILE *f, const Column *c, const char *s, bool last) {
        size_t w = utf8_width(s), pad = 0, ew;
        const char *e = ellipsis(&ew);

        if (w > c->width) {
                size_t room = c->width > ew ? c->width - ew : 0, pw;
                size_t n = utf8_prefix(s, room, &pw);

                fwrite(s, 1, n, f);
                fputs(c->width >= ew ? e : "", f);
                pad = c->width - pw - (c->width >= ew ? ew : 0);
                if (!last)
                        fprintf(f, "%*s", (int)pad, "");
                return;
        }

        pad = c->width - w;
        if (c->right)
                fprintf(f, "%*s%s", (int)pad, "", s);
        else if (last)
                fputs(s, f);
        else
                fprintf(f, "%s%*s", s, (int)pad, "");
}

/* One line: the headers if @cells is NULL, else a row. */
static void print_line(Table *t, FILE *f, char *const *cells) {
        for (size_t i = 0; i < t->n_columns; i++) {
                if (i > 0)
                        fputs(TABLE_SEPARATOR, f);
                print_cell(f, &t->columns[i], cells ? cells[i] : t->columns[i].header, i == t->n_columns - 1);
        }
        fputc('\n', f);
}

/**
 * table_print() - print @t
 * @t:          the table
 * @f:          the stream
 * @columns:    the terminal's width, or 0 to cut nothing
 * @legend:     print the header line
 *
 * Return: 0, or -EIO if the stream failed.
 */
int table_print(Table *t, FILE *f, size_t columns, bool legend) {
        for (size_t i = 0; i < t->n_columns; i++) {
                Column *c = &t->columns[i];

                c->width = legend ? utf8_width(c->header) : 0;
                for (size_t r = 0; r < t->n_rows; r++)
                        c->width = MAX(c->width, utf8_width(t->cells[r * t->n_columns + i]));
                if (c->flexible && c->min_width > c->width)
                        c->min_width = c->width;
        }
        if (columns > 0)
                fit(t, columns);

        if (legend)
                print_line(t, f, NULL);
        for (size_t r = 0; r < t->n_rows; r++)
                print_line(t, f, t->cells + r * t->n_columns);
        return ferror(f) ? -EIO : 0;
}

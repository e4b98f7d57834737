/*
 * table.c - columns aligned for people. Cells are kept until the table is
 * printed, as a column's width is its widest cell. An allocation that
 * fails marks the table, and table_print() reports it: callers add cells
 * without checking each one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsctl.h"

struct table {
	const char *align;	/* 'l' or 'r' per column */
	size_t ncols, ncells, cap;
	char **cells;		/* row after row, headers first */
	bool failed;
};

static void add_cell(struct table *t, char *s)
{
	if (!s || t->failed) {
		t->failed = true;
		free(s);
		return;
	}
	if (t->ncells == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **cells = realloc(t->cells, cap * sizeof(*cells));
		if (!cells) {
			t->failed = true;
			free(s);
			return;
		}
		t->cells = cells;
		t->cap = cap;
	}
	t->cells[t->ncells++] = s;
}

/* A table with a column per character of align ('l': left-aligned, 'r':
 * right-aligned), headed by the strings that follow. */
struct table *table_new(const char *align, ...)
{
	struct table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->align = align;
	t->ncols = strlen(align);
	va_list ap;
	va_start(ap, align);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *h = va_arg(ap, const char *);
		add_cell(t, strdup(h));
	}
	va_end(ap);
	return t;
}

void table_add(struct table *t, const char *fmt, ...)
{
	if (!t)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = n < 0 ? NULL : malloc((size_t)n + 1);
	if (s) {
		va_start(ap, fmt);
		vsnprintf(s, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	add_cell(t, s);
}

/* How a JSON value reads in a table: "-" when absent. Numbers are written
 * into buf; strings are returned as they are. */
const char *hsctl_text(const json_t *v, char *buf, size_t size)
{
	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_STRING:
		return json_string_value(v);
	case JSON_INTEGER:
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	case JSON_REAL:
		/* Only counters past 2^63 come as reals (see conn.c). */
		snprintf(buf, size, "%.0f", json_real_value(v));
		return buf;
	case JSON_TRUE:
		return "yes";
	case JSON_FALSE:
		return "no";
	case JSON_NULL:
		return "-";
	default:
		return "?";
	}
}

void table_json(struct table *t, const json_t *v)
{
	char buf[32];
	table_add(t, "%s", hsctl_text(v, buf, sizeof(buf)));
}

/* A cell made elsewhere (malloc'ed, freed with the table); NULL: making it
 * failed. */
void table_take(struct table *t, char *s)
{
	if (t)
		add_cell(t, s);
	else
		free(s);
}

/* A string written by fn to a memory stream; NULL when memory ran out. */
char *hsctl_memprint(void (*fn)(FILE *f, const json_t *v), const json_t *v)
{
	char *s = NULL;
	size_t len;
	FILE *f = open_memstream(&s, &len);
	if (!f)
		return NULL;
	fn(f, v);
	if (fclose(f)) {
		free(s);
		return NULL;
	}
	return s;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

static void print_row(const struct table *t, char *const *row, const size_t *width)
{
	for (size_t c = 0; c < t->ncols; c++) {
		int w = (int)width[c];
		const char *sep = c + 1 < t->ncols ? "  " : "\n";
		if (t->align[c] == 'r')
			printf("%*s%s", w, row[c], sep);
		else if (c + 1 < t->ncols)
			printf("%-*s%s", w, row[c], sep);
		else	/* no trailing blanks */
			printf("%s%s", row[c], sep);
	}
}

/* Prints the table (a partly filled last row is dropped) and frees it. */
int table_print(struct table *t)
{
	if (!t || t->failed) {
		if (t)
			table_free(t);
		return hsctl_nomem();
	}
	size_t *width = calloc(t->ncols, sizeof(*width));
	if (!width) {
		table_free(t);
		return hsctl_nomem();
	}
	size_t nrows = t->ncells / t->ncols;
	for (size_t i = 0; i < nrows * t->ncols; i++) {
		size_t len = strlen(t->cells[i]);
		if (len > width[i % t->ncols])
			width[i % t->ncols] = len;
	}
	for (size_t r = 0; r < nrows; r++)
		print_row(t, t->cells + r * t->ncols, width);
	free(width);
	table_free(t);
	return HSCTL_OK;
}

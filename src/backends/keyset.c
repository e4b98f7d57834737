/* keyset.c - sorted sets of 64-bit keys (keyset.h). */
#include <errno.h>
#include <stdlib.h>

#include "keyset.h"

int hs_keyset_push(struct hs_keyset *s, uint64_t k)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = k;
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

bool hs_keyset_has(const struct hs_keyset *s, uint64_t k)
{
	size_t lo = 0, hi = s->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->v[mid] == k)
			return true;
		if (s->v[mid] < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

void hs_keyset_sort(struct hs_keyset *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), cmp_key);
	size_t m = 0;
	for (size_t i = 0; i < s->n; i++)
		if (!m || s->v[m - 1] != s->v[i])
			s->v[m++] = s->v[i];
	s->n = m;
}

void hs_keyset_apply(struct hs_keyset *cur, struct hs_keyset *want,
		     bool (*add)(void *arg, uint64_t k), void (*del)(void *arg, uint64_t k),
		     void *arg)
{
	size_t i = 0, j = 0, kept = 0;
	uint64_t *w = want->v;
	while (i < want->n || j < cur->n) {
		if (j == cur->n || (i < want->n && w[i] < cur->v[j])) {
			if (add(arg, w[i]))
				w[kept++] = w[i];
			i++;
		} else if (i == want->n || cur->v[j] < w[i]) {
			del(arg, cur->v[j]);
			j++;
		} else {
			w[kept++] = w[i];
			i++;
			j++;
		}
	}
	free(cur->v);
	*cur = (struct hs_keyset){.v = want->v, .n = kept, .cap = want->cap};
	*want = (struct hs_keyset){0};
}

void hs_keyset_free(struct hs_keyset *s)
{
	free(s->v);
	*s = (struct hs_keyset){0};
}

/*
 * xen_emu.c - the emulated hypervisor (see xen_emu.h for what it
 * enforces). One mutex guards the grant table, the event channels and
 * the xenstore tree; the data path's calls (grant copy, notify) take it
 * once per call, a batch at a time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "xen_emu.h"

#define MAX_DOMS 64
#define GREF_FIRST 8 /* Xen reserves the first references */

struct grant {
	bool used, readonly;
	uint32_t page, to;
	uint32_t maps; /* pages of it mapped now */
};

struct hs__xemu_dom {
	struct hs__xemu *x;
	uint32_t domid;
	int memfd;
	uint8_t *mem;
	uint32_t npages;
	struct grant *grants; /* by reference */
	uint32_t n_grants;
	enum hs__xemu_sched sched; /* what its vCPUs do (domain control) */
	bool privileged;      /* may ask about other domains (dom0) */
};

struct evt_handle;

struct eport {                 /* one end of an event channel */
	bool used;
	uint32_t domid, port;
	struct evt_handle *h;      /* the handle it was made on */
	uint32_t remote_dom;       /* unbound: who may bind; bound: the peer's */
	struct eport *peer;        /* bound: the other end */
	bool masked, pending, queued;
};

/* A FIFO of events behind a pollable fd, readable while it holds any
 * (an eventfd semaphore: one count per entry): the fd of an event
 * channel handle and of a xenstore handle. */
struct semq {
	int efd;
	void **v;
	unsigned head, n, cap;
};

struct evt_handle {
	struct hs__xemu_dom *d;
	struct semq q;             /* fired ports */
};

struct node {
	char *path;
	char *val;
	unsigned len;
};

struct tree {
	struct node *n;
	unsigned count, cap;
};

struct watch {
	char *path, *token;
	struct watch *next;
};

struct xs_handle_e {
	struct hs__xemu_dom *d;
	struct semq q;             /* fired watches: (path, token) blocks */
	struct watch *watches;
	uint32_t txn;              /* the open transaction (one at a time) */
	struct tree snap;          /* its view */
	uint64_t txn_gen;          /* the tree's generation at its start */
	char **changed;            /* paths it changed, fired at commit */
	unsigned n_changed;
	struct xs_handle_e *next;
};

struct mapping {               /* one gnt_map, until its gnt_unmap */
	uint8_t *base;
	uint32_t n, domid;
	struct mapping *next;
	uint32_t refs[];
};

struct hs__xemu {
	pthread_mutex_t lock;
	struct mapping *mappings;
	struct hs__xemu_dom *dom[MAX_DOMS];
	struct eport *ports;
	uint32_t n_ports;
	struct tree tree;
	uint64_t gen;
	uint32_t next_txn;
	unsigned fail_txns;
	unsigned fail_copies;       /* grant-copy calls still to fail whole */
	struct xs_handle_e *xs_handles;
	struct hs__xemu_stats st;
};

static int semq_init(struct semq *q)
{
	memset(q, 0, sizeof(*q));
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
	return q->efd < 0 ? -errno : 0;
}

/* Frees what is left with free_fn (NULL: nothing to free). */
static void semq_fini(struct semq *q, void (*free_fn)(void *))
{
	for (unsigned i = 0; free_fn && i < q->n; i++)
		free_fn(q->v[(q->head + i) % q->cap]);
	free(q->v);
	if (q->efd >= 0)
		close(q->efd);
}

static bool semq_push(struct semq *q, void *e)
{
	if (q->n == q->cap) {
		unsigned cap = q->cap ? 2 * q->cap : 16;
		void **nv = malloc(cap * sizeof(*nv));
		if (!nv)
			return false;
		for (unsigned i = 0; i < q->n; i++)
			nv[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = nv;
		q->cap = cap;
		q->head = 0;
	}
	q->v[(q->head + q->n++) % q->cap] = e;
	uint64_t one = 1;
	if (write(q->efd, &one, 8) != 8) {
		/* the semaphore is at its maximum: the reader is behind anyway */
	}
	return true;
}

/* The oldest entry, or false (errno EAGAIN) when none waits; the fd's
 * count is taken first, outside the caller's lock. */
static bool semq_take(struct semq *q)
{
	uint64_t v;
	if (read(q->efd, &v, 8) != 8) {
		errno = EAGAIN;
		return false;
	}
	return true;
}

static bool semq_pop(struct semq *q, void **e)
{
	if (!q->n) {
		errno = EAGAIN;
		return false;
	}
	*e = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->n--;
	return true;
}

/* ---- domains and grants -------------------------------------------------------- */

int hs__xemu_create(struct hs__xemu **out)
{
	struct hs__xemu *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	pthread_mutex_init(&x->lock, NULL);
	x->next_txn = 1;
	*out = x;
	return 0;
}

static void tree_free(struct tree *t)
{
	for (unsigned i = 0; i < t->count; i++) {
		free(t->n[i].path);
		free(t->n[i].val);
	}
	free(t->n);
	memset(t, 0, sizeof(*t));
}

void hs__xemu_destroy(struct hs__xemu *x)
{
	if (!x)
		return;
	for (unsigned i = 0; i < MAX_DOMS; i++) {
		struct hs__xemu_dom *d = x->dom[i];
		if (!d)
			continue;
		if (d->mem)
			munmap(d->mem, (size_t)d->npages * HS__XEN_PAGE);
		if (d->memfd >= 0)
			close(d->memfd);
		free(d->grants);
		free(d);
	}
	free(x->ports);
	tree_free(&x->tree);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

struct hs__xemu_dom *hs__xemu_domain(struct hs__xemu *x, uint32_t domid, uint32_t npages,
				     uint8_t **mem)
{
	if (domid >= MAX_DOMS) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&x->lock);
	struct hs__xemu_dom *d = x->dom[domid];
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (!d)
			goto fail;
		d->x = x;
		d->domid = domid;
		d->memfd = -1;
		d->sched = HS__XEMU_BLOCKED; /* idle until a test says */
		d->privileged = domid == 0;
		if (npages) {
			d->memfd = memfd_create("xen-domain", MFD_CLOEXEC);
			if (d->memfd < 0 || ftruncate(d->memfd, (off_t)npages * HS__XEN_PAGE))
				goto fail_dom;
			d->mem = mmap(NULL, (size_t)npages * HS__XEN_PAGE, PROT_READ | PROT_WRITE,
				      MAP_SHARED, d->memfd, 0);
			if (d->mem == MAP_FAILED) {
				d->mem = NULL;
				goto fail_dom;
			}
			d->npages = npages;
		}
		x->dom[domid] = d;
	}
	pthread_mutex_unlock(&x->lock);
	if (mem)
		*mem = d->mem;
	return d;
fail_dom:
	if (d->memfd >= 0)
		close(d->memfd);
	free(d);
fail:
	pthread_mutex_unlock(&x->lock);
	errno = ENOMEM;
	return NULL;
}

int hs__xemu_grant(struct hs__xemu_dom *d, uint32_t page, uint32_t to, bool readonly)
{
	if (page >= d->npages || to >= MAX_DOMS)
		return -EINVAL;
	struct hs__xemu *x = d->x;
	pthread_mutex_lock(&x->lock);
	uint32_t ref = GREF_FIRST;
	while (ref < d->n_grants && d->grants[ref].used)
		ref++;
	if (ref >= d->n_grants) {
		uint32_t cap = d->n_grants ? 2 * d->n_grants : 64;
		struct grant *g = realloc(d->grants, cap * sizeof(*g));
		if (!g) {
			pthread_mutex_unlock(&x->lock);
			return -ENOMEM;
		}
		memset(g + d->n_grants, 0, (cap - d->n_grants) * sizeof(*g));
		d->grants = g;
		d->n_grants = cap;
	}
	d->grants[ref] = (struct grant){.used = true, .readonly = readonly, .page = page, .to = to};
	pthread_mutex_unlock(&x->lock);
	return (int)ref;
}

int hs__xemu_ungrant(struct hs__xemu_dom *d, uint32_t ref)
{
	struct hs__xemu *x = d->x;
	int rc = 0;
	pthread_mutex_lock(&x->lock);
	if (ref >= d->n_grants || !d->grants[ref].used)
		rc = -EINVAL;
	else if (d->grants[ref].maps)
		rc = -EBUSY;
	else
		d->grants[ref].used = false;
	pthread_mutex_unlock(&x->lock);
	return rc;
}

/* The page behind (domid, ref) for `user`, or a GNTST_* error. x->lock. */
static int16_t resolve(struct hs__xemu *x, uint32_t user, uint32_t domid, uint32_t ref,
		       bool write, struct hs__xemu_dom **dom, struct grant **gr)
{
	if (domid >= MAX_DOMS || !x->dom[domid] || !x->dom[domid]->mem)
		return HS__GNTST_BAD_DOMAIN;
	struct hs__xemu_dom *d = x->dom[domid];
	if (ref >= d->n_grants || !d->grants[ref].used)
		return HS__GNTST_BAD_GNTREF;
	struct grant *g = &d->grants[ref];
	if (g->to != user || (write && g->readonly))
		return HS__GNTST_PERMISSION_DENIED;
	*dom = d;
	*gr = g;
	return HS__GNTST_OKAY;
}

/* ---- the grant-table handle -------------------------------------------------- */

static void *gnt_open(void *ctx)
{
	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	return ctx; /* the domain is the handle */
}

static void gnt_close(void *g)
{
	(void)g;
}

static uint8_t *seg_ptr(struct hs__xemu *x, uint32_t user, const union hs__xcopy_ptr *p,
			bool gref, bool write, uint16_t len, int16_t *status)
{
	if (!gref)
		return p->virt;
	if ((uint32_t)p->foreign.offset + len > HS__XEN_PAGE) {
		*status = HS__GNTST_BAD_COPY_ARG;
		return NULL;
	}
	struct hs__xemu_dom *d;
	struct grant *g;
	*status = resolve(x, user, p->foreign.domid, p->foreign.ref, write, &d, &g);
	if (*status)
		return NULL;
	return d->mem + (size_t)g->page * HS__XEN_PAGE + p->foreign.offset;
}

static int gnt_copy(void *g, uint32_t n, struct hs__xcopy *segs)
{
	struct hs__xemu_dom *me = g;
	struct hs__xemu *x = me->x;
	uint64_t bytes = 0, errs = 0;
	pthread_mutex_lock(&x->lock);
	/* The whole call fails, the segments' statuses untouched: a failed
	 * ioctl (as injected), or a segment with neither side a grant, which
	 * Linux's gntdev refuses (EINVAL) before copying anything. */
	int why = 0;
	if (x->fail_copies) {
		x->fail_copies--;
		why = EIO;
	}
	for (uint32_t i = 0; i < n && !why; i++)
		if (!(segs[i].flags & (HS__XCOPY_SRC_GREF | HS__XCOPY_DST_GREF)))
			why = EINVAL;
	if (why) {
		x->st.copy_calls_failed++;
		pthread_mutex_unlock(&x->lock);
		errno = why;
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct hs__xcopy *s = &segs[i];
		int16_t st = HS__GNTST_OKAY;
		if (s->flags & ~(uint16_t)(HS__XCOPY_SRC_GREF | HS__XCOPY_DST_GREF)) {
			s->status = HS__GNTST_GENERAL_ERROR;
			errs++;
			continue;
		}
		uint8_t *src = seg_ptr(x, me->domid, &s->source, s->flags & HS__XCOPY_SRC_GREF,
				       false, s->len, &st);
		uint8_t *dst = st ? NULL
				  : seg_ptr(x, me->domid, &s->dest, s->flags & HS__XCOPY_DST_GREF,
					    true, s->len, &st);
		if (st) {
			s->status = st;
			errs++;
			continue;
		}
		memmove(dst, src, s->len);
		bytes += s->len;
		if ((s->flags & HS__XCOPY_SRC_GREF) && (s->flags & HS__XCOPY_DST_GREF))
			x->st.copy_g2g++;
		s->status = HS__GNTST_OKAY;
	}
	x->st.copy_calls++;
	x->st.copy_segs += n;
	x->st.copy_bytes += bytes;
	x->st.copy_errors += errs;
	pthread_mutex_unlock(&x->lock);
	return 0;
}

static void *gnt_map(void *g, uint32_t n, uint32_t domid, const uint32_t *refs, int prot)
{
	struct hs__xemu_dom *me = g;
	struct hs__xemu *x = me->x;
	if (!n || n > 1024 || (prot & ~(HS__XMAP_READ | HS__XMAP_WRITE))) {
		errno = EINVAL;
		return NULL;
	}
	/* n pages and a guard page that nothing maps */
	size_t span = ((size_t)n + 1) * HS__XEN_PAGE;
	struct mapping *m = malloc(sizeof(*m) + n * sizeof(uint32_t));
	if (!m)
		return NULL;
	uint8_t *base = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		free(m);
		return NULL;
	}
	pthread_mutex_lock(&x->lock);
	uint32_t done = 0;
	int err = 0;
	for (; done < n; done++) {
		struct hs__xemu_dom *d;
		struct grant *gr;
		int16_t st = resolve(x, me->domid, domid, refs[done], prot & HS__XMAP_WRITE, &d, &gr);
		if (st) {
			err = st == HS__GNTST_PERMISSION_DENIED ? EPERM : EINVAL;
			break;
		}
		int mprot = (prot & HS__XMAP_READ ? PROT_READ : 0) |
			    (prot & HS__XMAP_WRITE ? PROT_WRITE : 0);
		if (mmap(base + (size_t)done * HS__XEN_PAGE, HS__XEN_PAGE, mprot,
			 MAP_SHARED | MAP_FIXED, d->memfd, (off_t)gr->page * HS__XEN_PAGE) ==
		    MAP_FAILED) {
			err = errno;
			break;
		}
		gr->maps++;
	}
	if (err) {
		for (uint32_t i = 0; i < done; i++) {
			struct hs__xemu_dom *d;
			struct grant *gr;
			if (!resolve(x, me->domid, domid, refs[i], false, &d, &gr))
				gr->maps--;
		}
		pthread_mutex_unlock(&x->lock);
		munmap(base, span);
		free(m);
		errno = err;
		return NULL;
	}
	m->base = base;
	m->n = n;
	m->domid = domid;
	memcpy(m->refs, refs, n * sizeof(*refs));
	m->next = x->mappings;
	x->mappings = m;
	x->st.maps += n;
	pthread_mutex_unlock(&x->lock);
	return base;
}

static int gnt_unmap(void *g, void *addr, uint32_t n)
{
	struct hs__xemu_dom *me = g;
	struct hs__xemu *x = me->x;
	pthread_mutex_lock(&x->lock);
	struct mapping **pp = &x->mappings;
	while (*pp && ((*pp)->base != addr || (*pp)->n != n))
		pp = &(*pp)->next;
	struct mapping *m = *pp;
	if (m) {
		*pp = m->next;
		for (uint32_t i = 0; i < m->n; i++) {
			struct hs__xemu_dom *d;
			struct grant *gr;
			if (!resolve(x, me->domid, m->domid, m->refs[i], false, &d, &gr) && gr->maps)
				gr->maps--;
		}
	}
	pthread_mutex_unlock(&x->lock);
	if (!m) {
		errno = EINVAL;
		return -1;
	}
	free(m);
	return munmap(addr, ((size_t)n + 1) * HS__XEN_PAGE);
}

/* ---- event channels -------------------------------------------------------------- */

static struct eport *port_find(struct hs__xemu *x, uint32_t domid, uint32_t port)
{
	for (uint32_t i = 0; i < x->n_ports; i++)
		if (x->ports[i].used && x->ports[i].domid == domid && x->ports[i].port == port)
			return &x->ports[i];
	return NULL;
}

static struct eport *port_new(struct hs__xemu *x, uint32_t domid, struct evt_handle *h)
{
	uint32_t num = 1;
	while (port_find(x, domid, num))
		num++;
	uint32_t i = 0;
	while (i < x->n_ports && x->ports[i].used)
		i++;
	if (i == x->n_ports) {
		uint32_t cap = x->n_ports ? 2 * x->n_ports : 32;
		/* peers point into the array: fix them up after it moves */
		struct eport *old = x->ports;
		struct eport *np = malloc(cap * sizeof(*np));
		if (!np)
			return NULL;
		if (old)
			memcpy(np, old, x->n_ports * sizeof(*np));
		memset(np + x->n_ports, 0, (cap - x->n_ports) * sizeof(*np));
		for (uint32_t k = 0; k < x->n_ports; k++)
			if (np[k].peer)
				np[k].peer = np + (np[k].peer - old);
		free(old);
		x->ports = np;
		x->n_ports = cap;
	}
	struct eport *p = &x->ports[i];
	*p = (struct eport){.used = true, .domid = domid, .port = num, .h = h};
	return p;
}

/* What both kinds of handle start with: the domain they were opened for
 * (the ctx of *_open) and their event queue. */
static int handle_init(void *ctx, struct hs__xemu_dom **d, struct semq *q)
{
	if (!ctx) {
		errno = EINVAL;
		return -1;
	}
	*d = ctx;
	return semq_init(q) ? -1 : 0;
}

static void *evt_open(void *ctx)
{
	struct evt_handle *h = calloc(1, sizeof(*h));
	if (!h || handle_init(ctx, &h->d, &h->q)) {
		free(h);
		return NULL;
	}
	return h;
}

static void port_close(struct eport *p)
{
	if (p->peer)
		p->peer->peer = NULL;
	p->used = false;
	p->peer = NULL;
}

static void evt_close(void *e)
{
	struct evt_handle *h = e;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	for (uint32_t i = 0; i < x->n_ports; i++)
		if (x->ports[i].used && x->ports[i].h == h)
			port_close(&x->ports[i]);
	pthread_mutex_unlock(&x->lock);
	semq_fini(&h->q, NULL);
	free(h);
}

static int evt_fd(void *e)
{
	return ((struct evt_handle *)e)->q.efd;
}

int hs__xemu_evt_alloc_unbound(void *e, uint32_t remote)
{
	struct evt_handle *h = e;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	struct eport *p = port_new(x, h->d->domid, h);
	int rc = p ? (int)p->port : -ENOMEM;
	if (p)
		p->remote_dom = remote;
	pthread_mutex_unlock(&x->lock);
	return rc;
}

static int evt_bind(void *e, uint32_t domid, uint32_t remote)
{
	struct evt_handle *h = e;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	struct eport *r = port_find(x, domid, remote);
	int rc;
	if (!r || r->peer || r->remote_dom != h->d->domid) {
		rc = -1;
		errno = EINVAL;
	} else {
		ptrdiff_t ri = r - x->ports;
		struct eport *p = port_new(x, h->d->domid, h);
		if (!p) {
			rc = -1;
			errno = ENOMEM;
		} else {
			r = &x->ports[ri]; /* the array may have moved */
			p->remote_dom = domid;
			p->peer = r;
			r->peer = p;
			rc = (int)p->port;
		}
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

/* Port `port` of handle h, or NULL with errno EINVAL (none, or another
 * handle's). x->lock. */
static struct eport *own_port(struct evt_handle *h, uint32_t port)
{
	struct eport *p = port_find(h->d->x, h->d->domid, port);
	if (p && p->h == h)
		return p;
	errno = EINVAL;
	return NULL;
}

static int evt_unbind(void *e, uint32_t port)
{
	struct evt_handle *h = e;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	struct eport *p = own_port(h, port);
	if (p)
		port_close(p);
	pthread_mutex_unlock(&x->lock);
	return p ? 0 : -1;
}

/* The upcall of a port that is not masked: masked, queued on its handle.
 * x->lock. */
static void upcall(struct eport *p)
{
	if (!semq_push(&p->h->q, (void *)(uintptr_t)p->port))
		return; /* stays pending: the next unmask retries */
	p->masked = true;
	p->pending = false;
	p->queued = true;
}

static int evt_notify(void *e, uint32_t port)
{
	struct evt_handle *h = e;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	struct eport *p = own_port(h, port);
	if (p && p->peer) { /* to a closed end: nothing happens */
		struct eport *r = p->peer;
		r->pending = true;
		if (!r->masked)
			upcall(r);
		x->st.notifies++;
	}
	pthread_mutex_unlock(&x->lock);
	return p ? 0 : -1;
}

static int evt_pending(void *e)
{
	struct evt_handle *h = e;
	struct hs__xemu *x = h->d->x;
	if (!semq_take(&h->q))
		return -1;
	pthread_mutex_lock(&x->lock);
	void *v;
	int rc = -1;
	if (semq_pop(&h->q, &v)) {
		uint32_t port = (uint32_t)(uintptr_t)v;
		struct eport *p = port_find(x, h->d->domid, port);
		if (p)
			p->queued = false;
		rc = (int)port;
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

static int evt_unmask(void *e, uint32_t port)
{
	struct evt_handle *h = e;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	struct eport *p = own_port(h, port);
	if (p && p->masked && !p->queued) {
		p->masked = false;
		if (p->pending)
			upcall(p);
	}
	pthread_mutex_unlock(&x->lock);
	return p ? 0 : -1;
}

/* ---- xenstore ------------------------------------------------------------------ */

static int node_find(const struct tree *t, const char *path)
{
	for (unsigned i = 0; i < t->count; i++)
		if (!strcmp(t->n[i].path, path))
			return (int)i;
	return -1;
}

static bool tree_set(struct tree *t, const char *path, const void *val, unsigned len)
{
	int i = node_find(t, path);
	char *v = malloc(len + 1u);
	if (!v)
		return false;
	memcpy(v, val, len);
	v[len] = 0;
	if (i >= 0) {
		free(t->n[i].val);
		t->n[i].val = v;
		t->n[i].len = len;
		return true;
	}
	if (t->count == t->cap) {
		unsigned cap = t->cap ? 2 * t->cap : 32;
		struct node *n = realloc(t->n, cap * sizeof(*n));
		if (!n) {
			free(v);
			return false;
		}
		t->n = n;
		t->cap = cap;
	}
	char *p = strdup(path);
	if (!p) {
		free(v);
		return false;
	}
	t->n[t->count++] = (struct node){.path = p, .val = v, .len = len};
	return true;
}

/* Writes path, creating its missing parents with empty values. */
static bool tree_write(struct tree *t, const char *path, const void *val, unsigned len)
{
	char *tmp = strdup(path);
	if (!tmp)
		return false;
	for (char *s = strchr(tmp + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = 0;
		if (node_find(t, tmp) < 0 && !tree_set(t, tmp, "", 0)) {
			free(tmp);
			return false;
		}
		*s = '/';
	}
	free(tmp);
	return tree_set(t, path, val, len);
}

static bool under(const char *path, const char *top)
{
	size_t n = strlen(top);
	return !strncmp(path, top, n) && (path[n] == 0 || path[n] == '/' || !strcmp(top, "/"));
}

static bool tree_rm(struct tree *t, const char *path)
{
	bool any = false;
	for (unsigned i = 0; i < t->count;) {
		if (under(t->n[i].path, path)) {
			free(t->n[i].path);
			free(t->n[i].val);
			t->n[i] = t->n[--t->count];
			any = true;
		} else {
			i++;
		}
	}
	return any;
}

static bool tree_copy(struct tree *dst, const struct tree *src)
{
	memset(dst, 0, sizeof(*dst));
	for (unsigned i = 0; i < src->count; i++)
		if (!tree_set(dst, src->n[i].path, src->n[i].val, src->n[i].len)) {
			tree_free(dst);
			return false;
		}
	return true;
}

static bool path_ok(const char *path)
{
	size_t n = path ? strlen(path) : 0;
	return n && n < 3072 && path[0] == '/' && (n == 1 || path[n - 1] != '/') &&
	       !strstr(path, "//");
}

/* A (path, token) event, as libxenstore hands it out: one block. */
static char **watch_event(const char *path, const char *token)
{
	size_t lp = strlen(path) + 1, lt = strlen(token) + 1;
	char **v = malloc(2 * sizeof(char *) + lp + lt);
	if (!v)
		return NULL;
	char *s = (char *)(v + 2);
	memcpy(s, path, lp);
	memcpy(s + lp, token, lt);
	v[HS__XS_WATCH_PATH] = s;
	v[HS__XS_WATCH_TOKEN] = s + lp;
	return v;
}

static void queue_event(struct xs_handle_e *h, const char *path, const char *token)
{
	char **ev = watch_event(path, token);
	if (ev && !semq_push(&h->q, ev))
		free(ev);
}

/* A change at `path`: every watch at, below or above it fires. x->lock. */
static void fire(struct hs__xemu *x, const char *path)
{
	for (struct xs_handle_e *h = x->xs_handles; h; h = h->next)
		for (struct watch *w = h->watches; w; w = w->next)
			if (under(path, w->path) || under(w->path, path))
				queue_event(h, path, w->token);
}

static void *xs_open_e(void *ctx)
{
	struct xs_handle_e *h = calloc(1, sizeof(*h));
	if (!h || handle_init(ctx, &h->d, &h->q)) {
		free(h);
		return NULL;
	}
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	h->next = x->xs_handles;
	x->xs_handles = h;
	pthread_mutex_unlock(&x->lock);
	return h;
}

static void txn_drop(struct xs_handle_e *h)
{
	tree_free(&h->snap);
	for (unsigned i = 0; i < h->n_changed; i++)
		free(h->changed[i]);
	free(h->changed);
	h->changed = NULL;
	h->n_changed = 0;
	h->txn = 0;
}

static void xs_close_e(void *v)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	for (struct xs_handle_e **pp = &x->xs_handles; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	pthread_mutex_unlock(&x->lock);
	while (h->watches) {
		struct watch *w = h->watches;
		h->watches = w->next;
		free(w->path);
		free(w->token);
		free(w);
	}
	semq_fini(&h->q, free);
	txn_drop(h);
	free(h);
}

/* The tree a call works on: the transaction's view, or the live tree. */
static struct tree *view(struct xs_handle_e *h, uint32_t t)
{
	if (t == HS__XBT_NULL)
		return &h->d->x->tree;
	if (t != h->txn) {
		errno = ENOENT;
		return NULL;
	}
	return &h->snap;
}

static void *xs_read_e(void *v, uint32_t t, const char *path, unsigned *len)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	if (!path_ok(path)) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&x->lock);
	struct tree *tr = view(h, t);
	char *out = NULL;
	int i = tr ? node_find(tr, path) : -1;
	if (i >= 0) {
		out = malloc(tr->n[i].len + 1u);
		if (out) {
			memcpy(out, tr->n[i].val, tr->n[i].len + 1u);
			if (len)
				*len = tr->n[i].len;
		}
	} else if (tr) {
		errno = ENOENT;
	}
	pthread_mutex_unlock(&x->lock);
	return out;
}

static bool note_change(struct xs_handle_e *h, const char *path)
{
	char **c = realloc(h->changed, (h->n_changed + 1) * sizeof(*c));
	if (!c)
		return false;
	h->changed = c;
	if (!(c[h->n_changed] = strdup(path)))
		return false;
	h->n_changed++;
	return true;
}

static bool change(struct xs_handle_e *h, uint32_t t, const char *path, const void *data,
		   unsigned len, bool rm)
{
	struct hs__xemu *x = h->d->x;
	if (!path_ok(path) || (!rm && len && !data) || len > 4096) {
		errno = EINVAL;
		return false;
	}
	pthread_mutex_lock(&x->lock);
	struct tree *tr = view(h, t);
	bool ok = false;
	if (tr) {
		if (rm) {
			ok = tree_rm(tr, path);
			if (!ok)
				errno = ENOENT;
		} else {
			ok = tree_write(tr, path, data ? data : "", len);
			if (!ok)
				errno = ENOMEM;
		}
	}
	if (ok) {
		if (t == HS__XBT_NULL) {
			x->gen++;
			fire(x, path);
		} else if (!note_change(h, path)) {
			errno = ENOMEM;
			ok = false;
		}
	}
	pthread_mutex_unlock(&x->lock);
	return ok;
}

static bool xs_write_e(void *v, uint32_t t, const char *path, const void *data, unsigned len)
{
	return change(v, t, path, data, len, false);
}

static bool xs_rm_e(void *v, uint32_t t, const char *path)
{
	return change(v, t, path, NULL, 0, true);
}

static char **xs_directory_e(void *v, uint32_t t, const char *path, unsigned *num)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	if (!path_ok(path)) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&x->lock);
	struct tree *tr = view(h, t);
	char **out = NULL;
	if (tr && (node_find(tr, path) >= 0 || !strcmp(path, "/"))) {
		size_t plen = strcmp(path, "/") ? strlen(path) : 0, bytes = 0;
		unsigned n = 0;
		for (unsigned i = 0; i < tr->count; i++) {
			const char *p = tr->n[i].path;
			if (!strncmp(p, path, plen) && p[plen] == '/' && !strchr(p + plen + 1, '/')) {
				n++;
				bytes += strlen(p + plen + 1) + 1;
			}
		}
		out = malloc((n + 1) * sizeof(char *) + bytes);
		if (out) {
			char *s = (char *)(out + n + 1);
			unsigned k = 0;
			for (unsigned i = 0; i < tr->count; i++) {
				const char *p = tr->n[i].path;
				if (!strncmp(p, path, plen) && p[plen] == '/' &&
				    !strchr(p + plen + 1, '/')) {
					size_t l = strlen(p + plen + 1) + 1;
					memcpy(s, p + plen + 1, l);
					out[k++] = s;
					s += l;
				}
			}
			out[k] = NULL;
			*num = n;
		}
	} else if (tr) {
		errno = ENOENT;
	}
	pthread_mutex_unlock(&x->lock);
	return out;
}

static uint32_t xs_transaction_start_e(void *v)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	if (h->txn) {
		errno = EBUSY; /* one at a time per handle here */
		return HS__XBT_NULL;
	}
	pthread_mutex_lock(&x->lock);
	uint32_t id = HS__XBT_NULL;
	if (tree_copy(&h->snap, &x->tree)) {
		id = x->next_txn++;
		if (!x->next_txn)
			x->next_txn = 1;
		h->txn = id;
		h->txn_gen = x->gen;
	} else {
		errno = ENOMEM;
	}
	pthread_mutex_unlock(&x->lock);
	return id;
}

static bool xs_transaction_end_e(void *v, uint32_t t, bool abort)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	if (!t || t != h->txn) {
		errno = ENOENT;
		return false;
	}
	pthread_mutex_lock(&x->lock);
	bool ok = true;
	if (abort) {
		/* nothing applied */
	} else if (x->fail_txns || x->gen != h->txn_gen) {
		if (x->fail_txns)
			x->fail_txns--;
		errno = EAGAIN;
		ok = false;
	} else {
		tree_free(&x->tree);
		x->tree = h->snap;
		memset(&h->snap, 0, sizeof(h->snap));
		if (h->n_changed)
			x->gen++;
		for (unsigned i = 0; i < h->n_changed; i++)
			fire(x, h->changed[i]);
	}
	txn_drop(h);
	pthread_mutex_unlock(&x->lock);
	return ok;
}

static bool xs_watch_e(void *v, const char *path, const char *token)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	if (!path_ok(path) || !token) {
		errno = EINVAL;
		return false;
	}
	struct watch *w = calloc(1, sizeof(*w));
	if (!w || !(w->path = strdup(path)) || !(w->token = strdup(token))) {
		if (w)
			free(w->path);
		free(w);
		errno = ENOMEM;
		return false;
	}
	pthread_mutex_lock(&x->lock);
	w->next = h->watches;
	h->watches = w;
	queue_event(h, path, token); /* a watch fires once when set */
	pthread_mutex_unlock(&x->lock);
	return true;
}

static bool xs_unwatch_e(void *v, const char *path, const char *token)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	pthread_mutex_lock(&x->lock);
	bool found = false;
	for (struct watch **pp = &h->watches; *pp; pp = &(*pp)->next) {
		struct watch *w = *pp;
		if (!strcmp(w->path, path) && !strcmp(w->token, token)) {
			*pp = w->next;
			free(w->path);
			free(w->token);
			free(w);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&x->lock);
	if (!found)
		errno = ENOENT;
	return found;
}

static int xs_fileno_e(void *v)
{
	return ((struct xs_handle_e *)v)->q.efd;
}

static char **xs_check_watch_e(void *v)
{
	struct xs_handle_e *h = v;
	struct hs__xemu *x = h->d->x;
	if (!semq_take(&h->q))
		return NULL;
	pthread_mutex_lock(&x->lock);
	void *ev = NULL;
	semq_pop(&h->q, &ev);
	pthread_mutex_unlock(&x->lock);
	return ev;
}

void hs__xemu_fail_transactions(struct hs__xemu *x, unsigned n)
{
	pthread_mutex_lock(&x->lock);
	x->fail_txns = n;
	pthread_mutex_unlock(&x->lock);
}

void hs__xemu_fail_copies(struct hs__xemu *x, unsigned n)
{
	pthread_mutex_lock(&x->lock);
	x->fail_copies = n;
	pthread_mutex_unlock(&x->lock);
}

void hs__xemu_stats(struct hs__xemu *x, struct hs__xemu_stats *st)
{
	pthread_mutex_lock(&x->lock);
	*st = x->st;
	pthread_mutex_unlock(&x->lock);
}

/* ---- domain control ---------------------------------------------------------------- */

void hs__xemu_sched(struct hs__xemu_dom *d, enum hs__xemu_sched st)
{
	pthread_mutex_lock(&d->x->lock);
	d->sched = st;
	pthread_mutex_unlock(&d->x->lock);
}

void hs__xemu_privileged(struct hs__xemu_dom *d, bool privileged)
{
	pthread_mutex_lock(&d->x->lock);
	d->privileged = privileged;
	pthread_mutex_unlock(&d->x->lock);
}

static void *ctl_open(void *ctx)
{
	if (!ctx) {
		errno = EINVAL;
		return NULL;
	}
	return ctx; /* the domain is the handle; privilege is checked per call */
}

static void ctl_close(void *c)
{
	(void)c;
}

/* As Xen's getdomaininfo: the domains that exist from first_domid on, in
 * order; only a privileged caller may ask (a domU's privcmd hypercall
 * fails with EPERM). */
static int ctl_getinfo(void *c, uint32_t first_domid, unsigned max,
		       struct hs__xdominfo *info)
{
	struct hs__xemu_dom *self = c;
	struct hs__xemu *x = self->x;
	pthread_mutex_lock(&x->lock);
	x->st.ctl_calls++;
	if (!self->privileged) {
		pthread_mutex_unlock(&x->lock);
		errno = EPERM;
		return -1;
	}
	int n = 0;
	for (uint32_t id = first_domid; id < MAX_DOMS && (unsigned)n < max; id++) {
		const struct hs__xemu_dom *d = x->dom[id];
		if (!d)
			continue;
		info[n++] = (struct hs__xdominfo){
			.domid = id,
			.paused = d->sched == HS__XEMU_PAUSED,
			.running = d->sched == HS__XEMU_RUNNING,
			/* as Xen computes it: every online vCPU blocked */
			.blocked = d->sched == HS__XEMU_BLOCKED,
			.nr_online_vcpus = 1};
	}
	pthread_mutex_unlock(&x->lock);
	return n;
}

static const struct hs__xsvc_ops emu_ops = {
	.name = "emulated",
	.gnt_open = gnt_open,
	.gnt_close = gnt_close,
	.gnt_copy = gnt_copy,
	.gnt_map = gnt_map,
	.gnt_unmap = gnt_unmap,
	.evt_open = evt_open,
	.evt_close = evt_close,
	.evt_fd = evt_fd,
	.evt_bind = evt_bind,
	.evt_unbind = evt_unbind,
	.evt_notify = evt_notify,
	.evt_pending = evt_pending,
	.evt_unmask = evt_unmask,
	.xs_open = xs_open_e,
	.xs_close = xs_close_e,
	.xs_read = xs_read_e,
	.xs_write = xs_write_e,
	.xs_rm = xs_rm_e,
	.xs_directory = xs_directory_e,
	.xs_transaction_start = xs_transaction_start_e,
	.xs_transaction_end = xs_transaction_end_e,
	.xs_watch = xs_watch_e,
	.xs_unwatch = xs_unwatch_e,
	.xs_fileno = xs_fileno_e,
	.xs_check_watch = xs_check_watch_e,
	.ctl_open = ctl_open,
	.ctl_close = ctl_close,
	.ctl_getinfo = ctl_getinfo,
};

const struct hs__xsvc_ops *hs__xemu_ops(void)
{
	return &emu_ops;
}

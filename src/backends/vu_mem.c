/*
 * vu_mem.c - guest memory of vhost-user ports: the regions a front-end
 * describes (SET_MEM_TABLE, ADD_MEM_REG), mapped here, and what happens
 * when guest memory stops being there.
 *
 * Security model: a region is accepted only if its file is a regular file
 * on tmpfs, hugetlbfs or ramfs (memfd, /dev/shm, /dev/hugepages: a page
 * fault on FUSE or a network filesystem can wait forever, holding up
 * every quiesce) that holds every byte the region says it does (offset +
 * size within the file's size), its
 * addresses do not overflow and no two regions overlap. Each region is
 * mapped between two guard reservations (PROT_NONE, 1 MiB or one of the
 * file's pages, whichever is larger): an access that ran past a region
 * faults at once instead of touching whatever the process mapped next.
 *
 * A front-end can still shrink an unsealed file after the switch mapped
 * it; the next access past the new end raises SIGBUS, which by default
 * kills the process and every port with it. Policy: the first mapped
 * region installs one process-wide SIGBUS handler, chained to whatever
 * handler was there before for faults that are not in guest memory. A
 * fault inside a guest region replaces the rest of that region's mapping
 * with private zero pages, so the faulting access and any later one
 * complete harmlessly, and signals the port's fault eventfd. The port's
 * control plane then counts it (backend counter memory_faults), logs it
 * and stops every ring of the port (link down) until the front-end starts
 * them again; a new memory table brings real memory back. A file sealed
 * against shrinking (F_SEAL_SHRINK, QEMU's memfd default) never gets here.
 *
 * Threads: mapping, unmapping and the fault watch run on the loop thread
 * (or the hs_port_add/del caller); the handler runs in whichever thread
 * faulted, usually a data-path thread: it reads the slot table without a
 * lock and calls only mmap, write and sigaction.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include "vu_dev.h"

#define VU_GUARD (1u << 20)

/* ---- the SIGBUS handler and its table ------------------------------------------- */

/* One mapped file range, [start, end). The table is process-wide because
 * signal dispositions are; it grows by blocks that are never freed, so
 * the handler can read it at any moment. */
struct fault_slot {
	_Atomic unsigned gen;    /* odd while being written (a seqlock) */
	_Atomic uintptr_t start; /* 0: free */
	_Atomic uintptr_t end, align;
	_Atomic int fd;
};

#define FAULT_BLOCKS 64
#define FAULT_BLOCK_SLOTS 256

static struct fault_slot *_Atomic fault_blocks[FAULT_BLOCKS];
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction fault_prev;
static bool fault_installed;

static void fault_chain(int sig, siginfo_t *si, void *uc)
{
	/* sa_handler and sa_sigaction share storage: SIG_DFL/SIG_IGN read
	 * the same through either. */
	if (fault_prev.sa_handler == SIG_IGN && si->si_code <= 0)
		return; /* a sent SIGBUS the process chose to ignore */
	if (fault_prev.sa_handler != SIG_DFL && fault_prev.sa_handler != SIG_IGN) {
		if (fault_prev.sa_flags & SA_SIGINFO)
			fault_prev.sa_sigaction(sig, si, uc);
		else
			fault_prev.sa_handler(sig);
		return;
	}
	/* The default action: the process dies, as it would have without
	 * this handler. A fault dies by re-running the access, a sent signal
	 * by being raised again (SA_NODEFER: it is not blocked here). */
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigemptyset(&dfl.sa_mask);
	sigaction(SIGBUS, &dfl, NULL);
	if (si->si_code <= 0)
		raise(SIGBUS);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	if (si->si_code <= 0) { /* sent by a process, not a fault */
		fault_chain(sig, si, uc);
		return;
	}
	for (unsigned b = 0; b < FAULT_BLOCKS; b++) {
		struct fault_slot *blk = atomic_load_explicit(&fault_blocks[b],
							      memory_order_acquire);
		if (!blk)
			break;
		for (unsigned i = 0; i < FAULT_BLOCK_SLOTS; i++) {
			struct fault_slot *s = &blk[i];
			unsigned g = atomic_load(&s->gen);
			uintptr_t start = atomic_load(&s->start);
			uintptr_t end = atomic_load(&s->end), align = atomic_load(&s->align);
			int fd = atomic_load(&s->fd);
			/* A slot being written, or written again while we read
			 * it, is not trusted (a torn read could name a wrong
			 * range); its region is being mapped or unmapped. */
			if ((g & 1) || atomic_load(&s->gen) != g || !start || a < start || a >= end)
				continue;
			uintptr_t from = a & ~(align - 1);
			void *m = mmap((void *)from, end - from, PROT_READ | PROT_WRITE,
				       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
				       -1, 0);
			if (m == MAP_FAILED)
				break;
			uint64_t one = 1;
			ssize_t w = write(fd, &one, sizeof(one));
			(void)w;
			return;
		}
	}
	fault_chain(sig, si, uc);
}

/* Registers a file mapping; returns its slot or -ENOSPC. */
static int fault_register(uintptr_t start, uintptr_t end, uintptr_t align, int fd)
{
	int id = -ENOSPC;
	pthread_mutex_lock(&fault_lock);
	if (!fault_installed) {
		struct sigaction sa = {.sa_sigaction = on_sigbus,
				       .sa_flags = SA_SIGINFO | SA_NODEFER};
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &fault_prev) == 0)
			fault_installed = true;
	}
	for (unsigned b = 0; b < FAULT_BLOCKS && id < 0; b++) {
		struct fault_slot *blk = atomic_load(&fault_blocks[b]);
		if (!blk) {
			blk = calloc(FAULT_BLOCK_SLOTS, sizeof(*blk));
			if (!blk)
				break;
			atomic_store_explicit(&fault_blocks[b], blk, memory_order_release);
		}
		for (unsigned i = 0; i < FAULT_BLOCK_SLOTS; i++) {
			struct fault_slot *s = &blk[i];
			if (atomic_load(&s->start))
				continue;
			atomic_fetch_add(&s->gen, 1);
			atomic_store(&s->end, end);
			atomic_store(&s->align, align);
			atomic_store(&s->fd, fd);
			atomic_store(&s->start, start);
			atomic_fetch_add(&s->gen, 1);
			id = (int)(b * FAULT_BLOCK_SLOTS + i);
			break;
		}
	}
	pthread_mutex_unlock(&fault_lock);
	return id;
}

static void fault_unregister(int id)
{
	if (id < 0)
		return;
	pthread_mutex_lock(&fault_lock);
	struct fault_slot *s = &atomic_load(&fault_blocks[id / FAULT_BLOCK_SLOTS])[id % FAULT_BLOCK_SLOTS];
	atomic_fetch_add(&s->gen, 1);
	atomic_store(&s->start, 0);
	atomic_fetch_add(&s->gen, 1);
	pthread_mutex_unlock(&fault_lock);
}

/* The handler found a fault in this port's memory (loop thread). */
static void fault_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct vu_dev *d = arg;
	(void)w;
	(void)events;
	uint64_t n = 0;
	if (read(fd, &n, sizeof(n)) != sizeof(n) || !n)
		return;
	atomic_fetch_add(&d->memory_faults, n);
	hs_port_log(d->port, HS_LOG_ERROR,
		    "guest memory shrank under the switch (its file was truncated): "
		    "every ring stopped until the front-end restarts them");
	vu_quiesce(d);
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		if (d->vr[i].started && !d->vr[i].vq.broken)
			d->vr[i].vq.broken = "guest memory truncated";
	if (d->log.bits) {
		/* The dirty log may be the file that shrank: marks in the zero
		 * pages put over it would reach nobody. Until a new SET_LOG_BASE
		 * they are counted as dirty_log_overflow instead. */
		hs_port_log(d->port, HS_LOG_ERROR, "dirty log dropped with the faulted "
			    "memory: pages written are counted, not marked");
		vu_log_drop(d);
	}
	vu_rings_update(d);
	vu_resume(d);
}

int vu_faults_watch(struct vu_dev *d)
{
	return hs_watch_add(hs_port_switch(d->port), d->fault_fd, HS_WATCH_READ, fault_cb,
			    d, &d->fault_w);
}

/* ---- regions ------------------------------------------------------------------ */

int vu_region_map(struct vu_dev *d, struct vu_region *out,
		  const struct vu_region_desc *rd, int fd)
{
	struct stat st;
	int rc = -EINVAL;
	if (fd < 0 || !rd->size || rd->mmap_off > UINT64_MAX - rd->size ||
	    rd->gpa > UINT64_MAX - rd->size || rd->uva > UINT64_MAX - rd->size ||
	    rd->size > (1ull << 46) || rd->mmap_off > (1ull << 46))
		goto out;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	struct statfs sfs;
	if (fstatfs(fd, &sfs) || (sfs.f_type != TMPFS_MAGIC && sfs.f_type != HUGETLBFS_MAGIC &&
				  sfs.f_type != RAMFS_MAGIC)) {
		/* A page fault on a FUSE or network file can wait forever, and
		 * a data-path thread waiting in one holds up every quiesce. */
		hs_port_log(d->port, HS_LOG_WARN, "memory region refused: its file is not "
			    "on tmpfs, hugetlbfs or ramfs (memfd, /dev/shm, /dev/hugepages)");
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (uint64_t)st.st_size < rd->mmap_off + rd->size) {
		hs_port_log(d->port, HS_LOG_WARN,
			    "memory region of %llu bytes at offset %llu refused: its file "
			    "holds %lld bytes", (unsigned long long)rd->size,
			    (unsigned long long)rd->mmap_off, (long long)st.st_size);
		goto out;
	}
	uint64_t align = st.st_blksize >= 4096 && !(st.st_blksize & (st.st_blksize - 1))
				 ? (uint64_t)st.st_blksize
				 : 4096;
	uint64_t len = (rd->mmap_off + rd->size + align - 1) / align * align;
	uint64_t guard = align > VU_GUARD ? align : VU_GUARD;
	size_t total = (size_t)(len + 2 * guard + align);
	uint8_t *res = mmap(NULL, total, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	uint8_t *start = (uint8_t *)(((uintptr_t)res + guard + align - 1) & ~(uintptr_t)(align - 1));
	if (mmap(start, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE,
		 fd, 0) == MAP_FAILED) {
		rc = -errno;
		hs_port_log(d->port, HS_LOG_ERROR, "mmap of a %llu-byte region: %s",
			    (unsigned long long)len, strerror(errno));
		munmap(res, total);
		goto out;
	}
	int slot = fault_register((uintptr_t)start, (uintptr_t)start + len, align,
				  d->fault_fd);
	if (slot < 0) {
		rc = slot;
		munmap(res, total);
		goto out;
	}
	*out = (struct vu_region){.gpa = rd->gpa, .size = rd->size, .uva = rd->uva,
				  .mmap_off = rd->mmap_off, .hva = start + rd->mmap_off,
				  .map = res, .map_len = total, .fault_slot = slot};
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

void vu_region_unmap(struct vu_region *r)
{
	fault_unregister(r->fault_slot);
	r->fault_slot = -1;
	if (r->map)
		munmap(r->map, r->map_len);
	r->map = NULL;
}

void vu_mem_free(struct vu_mem *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->n; i++)
		vu_region_unmap(&m->r[i]);
	free(m);
}

bool vu_regions_overlap(const struct vu_mem *m)
{
	for (uint32_t i = 0; i < m->n; i++)
		for (uint32_t j = i + 1; j < m->n; j++) {
			const struct vu_region *a = &m->r[i], *b = &m->r[j];
			if (a->gpa < b->gpa + b->size && b->gpa < a->gpa + a->size)
				return true;
			if (a->uva < b->uva + b->size && b->uva < a->uva + a->size)
				return true;
		}
	return false;
}

/* Installs a new memory table and re-translates every ring against it.
 * Returns the old table: the caller unmaps the regions the new one does
 * not share and frees it. */
struct vu_mem *vu_mem_install(struct vu_dev *d, struct vu_mem *m)
{
	vu_quiesce(d);
	struct vu_mem *old = d->mem;
	d->mem = m;
	vu_iotlb_reset(d, true); /* its entries name addresses of the old table */
	vu_rings_update(d);
	vu_resume(d);
	return old;
}

/*
 * vu_iotlb.c - guests behind a virtual IOMMU (VIRTIO_F_IOMMU_PLATFORM,
 * VHOST_USER_PROTOCOL_F_IOTLB, VHOST_USER_PROTOCOL_F_BACKEND_REQ).
 *
 * With an IOMMU in the guest every address the guest hands the device
 * is an I/O virtual address: the ring areas (SET_VRING_ADDR) and every
 * descriptor. The front-end keeps the device's IOTLB: UPDATE says which
 * front-end virtual addresses an IOVA range maps to and whether the
 * device may read, write or both; INVALIDATE withdraws a range (the guest
 * unmapped it: after the reply, no access may use it again). An IOVA the
 * table lacks is a miss: the back-end reports it on its request channel
 * and the front-end answers with an UPDATE.
 *
 * How the switch uses it: ring areas are translated IOVA -> front-end
 * address -> host address when a ring becomes live (vu_rings_update;
 * a ring whose areas miss waits, not live, until they come); descriptors
 * are translated by the data path (virtq.c vq_map) with the permission
 * the direction needs. A chain that misses stays in the ring (vq.miss),
 * the data path reports the miss once and does not spin on it; the
 * UPDATE clears every miss and looks at every ring again.
 *
 * Security model: the table is front-end input: ranges must not wrap,
 * permissions must be read, write or both, and an UPDATE must map into
 * guest memory as the memory table describes it (refused otherwise); a
 * descriptor used against its permission stops the ring like one
 * outside guest memory. The table is bounded (VU_IOTLB_MAX entries): a
 * front-end that fills it gets it emptied (iotlb_flushes) and misses
 * refill it. Changes happen with the port quiesced, so an INVALIDATE
 * is complete, as the protocol requires, when its reply goes out.
 * The request channel must be a unix socket; reports are sent without
 * blocking, once per miss (a full channel drops the report; the next
 * change of the table or of the channel asks again). A new memory table
 * empties the table: its entries name front-end addresses of the old one.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "vu_dev.h"

const char vu_iotlb_wait[] = "waiting for an IOTLB entry";

/* Removes [start, last] from the table, keeping what lies outside it of
 * the entries it overlaps. */
static void iotlb_cut(struct vu_dev *d, uint64_t start, uint64_t last)
{
	struct vu_iotlb *t = d->iotlb, *o = d->iotlb_tmp;
	o->n = 0;
	for (uint32_t i = 0; i < t->n; i++) {
		struct vu_iotlb_entry e = t->e[i];
		uint64_t elast = e.iova + (e.size - 1);
		if (o->n + 2 > VU_IOTLB_MAX) { /* a split would not fit: start over */
			o->n = 0;
			atomic_fetch_add(&d->iotlb_flushes, 1);
			break;
		}
		if (elast < start || e.iova > last) {
			o->e[o->n++] = e;
			continue;
		}
		if (e.iova < start)
			o->e[o->n++] = (struct vu_iotlb_entry){e.iova, start - e.iova, e.uva, e.perm};
		if (elast > last)
			o->e[o->n++] = (struct vu_iotlb_entry){last + 1, elast - last,
								e.uva + (last + 1 - e.iova), e.perm};
	}
	t->n = o->n;
	memcpy(t->e, o->e, o->n * sizeof(o->e[0]));
}

static void iotlb_insert(struct vu_dev *d, const struct vu_iotlb_entry *ne)
{
	struct vu_iotlb *t = d->iotlb;
	if (t->n == VU_IOTLB_MAX) {
		t->n = 0;
		atomic_fetch_add(&d->iotlb_flushes, 1);
	}
	uint32_t i = 0;
	while (i < t->n && t->e[i].iova < ne->iova)
		i++;
	memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof(t->e[0]));
	t->e[i] = *ne;
	t->n++;
}

/* Whether [uva, uva + len) lies in guest memory (across regions). */
static bool in_memory(const struct vu_mem *m, uint64_t uva, uint64_t len)
{
	while (m && len) {
		uint64_t got;
		if (!vu_uva_part(m, uva, len, &got))
			return false;
		uva += got;
		len -= got;
	}
	return m != NULL;
}

/* After an UPDATE every ring is looked at again: a chain that waited for
 * it is retried (vu_rings_update, which every change runs, cleared the
 * misses and re-translated the ring areas). */
static void look_again(struct vu_dev *d)
{
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		if (vu_ring_live(&d->vr[i]))
			vu_ring_look(&d->vr[i]);
}

static int table(struct vu_dev *d)
{
	if (!d->iotlb)
		d->iotlb = calloc(1, sizeof(*d->iotlb));
	if (!d->iotlb_tmp)
		d->iotlb_tmp = calloc(1, sizeof(*d->iotlb_tmp));
	return d->iotlb && d->iotlb_tmp ? 0 : -ENOMEM;
}

int vu_iotlb_msg(struct vu_dev *d, const struct vu_iotlb_msg *m)
{
	if (m->type != VU_IOTLB_UPDATE && m->type != VU_IOTLB_INVALIDATE)
		return -EINVAL;
	/* INVALIDATE of iova 0, size 0: everything (as Linux's vhost reads it) */
	bool all = m->type == VU_IOTLB_INVALIDATE && !m->iova && !m->size;
	if (!all && (!m->size || m->iova + (m->size - 1) < m->iova))
		return -EINVAL;
	if (table(d))
		return -ENOMEM;
	if (m->type == VU_IOTLB_INVALIDATE) {
		vu_quiesce(d);
		iotlb_cut(d, m->iova, all ? UINT64_MAX : m->iova + (m->size - 1));
		atomic_fetch_add(&d->iotlb_invalidates, 1);
		vu_rings_update(d); /* a ring whose areas went waits until they return */
		vu_resume(d);
		return 0;
	}
	if (!m->perm || m->perm > (VU_PERM_RO | VU_PERM_WO) ||
	    m->uaddr + (m->size - 1) < m->uaddr) {
		hs_port_log(d->port, HS_LOG_WARN, "IOTLB update refused: bad range or "
			    "permission");
		return -EINVAL;
	}
	if (!in_memory(d->mem, m->uaddr, m->size)) {
		hs_port_log(d->port, HS_LOG_WARN, "IOTLB update refused: %#llx+%#llx maps "
			    "outside guest memory", (unsigned long long)m->uaddr,
			    (unsigned long long)m->size);
		return -EINVAL;
	}
	struct vu_iotlb_entry e = {m->iova, m->size, m->uaddr, m->perm};
	vu_quiesce(d);
	iotlb_cut(d, m->iova, m->iova + (m->size - 1));
	iotlb_insert(d, &e);
	atomic_fetch_add(&d->iotlb_updates, 1);
	vu_rings_update(d);
	vu_resume(d);
	look_again(d);
	return 0;
}

int vu_iotlb_set_channel(struct vu_dev *d, int fd)
{
	struct stat st;
	if (fd < 0 || fstat(fd, &st) || !S_ISSOCK(st.st_mode)) {
		vu_close_fd(&fd);
		return -EINVAL;
	}
	vu_quiesce(d);
	pthread_mutex_lock(&d->backend_lock);
	vu_close_fd(&d->backend_fd);
	d->backend_fd = fd;
	pthread_mutex_unlock(&d->backend_lock);
	for (unsigned i = 0; i < 2u * d->nqp; i++) {
		d->vr[i].miss_reported = false; /* nobody heard them */
		vu_iotlb_report(d, &d->vr[i]);  /* quiesced: the data path is not */
	}
	vu_resume(d);
	return 0;
}

/* Quiesced (device reset, disconnect, a new memory table). */
void vu_iotlb_reset(struct vu_dev *d, bool keep_channel)
{
	if (d->iotlb)
		d->iotlb->n = 0;
	if (!keep_channel) {
		pthread_mutex_lock(&d->backend_lock);
		vu_close_fd(&d->backend_fd);
		pthread_mutex_unlock(&d->backend_lock);
		free(d->iotlb);
		free(d->iotlb_tmp);
		d->iotlb = d->iotlb_tmp = NULL;
	}
}

void vu_iotlb_report(struct vu_dev *d, struct vu_vring *vr)
{
	if (!vr->vq.miss || vr->miss_reported)
		return;
	/* Once per miss, sent or not: a front-end that does not read its
	 * channel gets no retry storm (the next change of the table or of
	 * the channel asks again). */
	vr->miss_reported = true;
	struct vu_hdr h = {VU_BACKEND_IOTLB_MSG, VU_VERSION, sizeof(struct vu_iotlb_msg)};
	struct vu_iotlb_msg m = {.iova = vr->vq.miss_iova, .perm = vr->vq.miss_perm,
				 .type = VU_IOTLB_MISS};
	uint8_t msg[sizeof(h) + sizeof(m)]; /* the payload follows the 12-byte header */
	memcpy(msg, &h, sizeof(h));
	memcpy(msg + sizeof(h), &m, sizeof(m));
	pthread_mutex_lock(&d->backend_lock);
	if (d->backend_fd >= 0 &&
	    send(d->backend_fd, msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(msg))
		atomic_fetch_add_explicit(&d->iotlb_misses, 1, memory_order_relaxed);
	pthread_mutex_unlock(&d->backend_lock);
}

/* One ring area: [addr, addr + len) with `perm`, as a host address. With
 * the IOMMU, addr is an IOVA whose pieces must be contiguous in the
 * front-end's address space; a piece the table lacks sets vq->miss and
 * returns vu_iotlb_wait. Without, addr is a front-end address. */
const char *vu_ring_area(const struct vu_dev *d, struct vq *vq, uint64_t addr,
			 uint64_t len, uint8_t perm, void **out)
{
	*out = NULL;
	uint64_t uva = addr;
	if (vq->iotlb) {
		uint64_t at = addr, left = len, next = 0;
		while (left) {
			uint64_t u, n;
			int rc = vu_iotlb_lookup(vq->iotlb, at, left, perm, &u, &n);
			if (rc == 0) {
				vq->miss = true;
				vq->miss_iova = at;
				vq->miss_perm = perm;
				return vu_iotlb_wait;
			}
			if (rc < 0)
				return "ring area not allowed by the IOMMU";
			if (at == addr)
				uva = u;
			else if (u != next)
				return "ring area not contiguous behind the IOMMU";
			next = u + n;
			at += n;
			left -= n;
		}
	}
	*out = vu_uva(d->mem, uva, len);
	return *out ? NULL : "ring outside guest memory";
}

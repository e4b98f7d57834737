/*
 * vu_ring.c - the life of a vring, control side, and the one place where
 * a ring becomes live for the data path.
 *
 * A front-end sends a ring's size, position and addresses in any order,
 * before or after the features and the memory table, and may send them
 * again. vu_msg.c stores them as sent; they are interpreted here only:
 *  - vu_ring_start (SET_VRING_KICK) checks the size against the layout
 *    the features chose (split: a power of two up to 32768; packed: up to
 *    32768) and the position against that size (split: a 16-bit index;
 *    packed: the next available slot below the size with its wrap counter
 *    in bit 15, and, as QEMU sends it, the used slot and wrap counter in
 *    the upper half, also below the size), and only then gives the data
 *    path its geometry and position. While a ring
 *    runs, its size, position and layout cannot change: SET_VRING_NUM,
 *    SET_VRING_BASE and feature changes are refused then (as DPDK does),
 *    because they were validated together.
 *  - vu_rings_update, after every change (addresses, memory table, enable,
 *    a fault, a broken ring), translates each started ring's areas
 *    through the memory table in force, with the sizes and alignments its
 *    layout needs, and lets the data path use (live) exactly the rings
 *    for which all of it holds; a ring that goes live for the first time
 *    gets its notifications enabled and one look for work queued before;
 *    a ring in use while dirty logging is on gets the log (vu_log.c).
 * Everything here runs while the port is quiesced.
 */
#include <errno.h>
#include <stdlib.h>

#include "vu_dev.h"

static const char not_started[] = "not started", disabled[] = "disabled";

/* Translates a started ring's areas into vq (pointers only; NULL pointers
 * when it fails). Returns NULL, or why the ring cannot be used
 * (vu_iotlb_wait: an area's IOVA is not in the IOTLB yet, vq->miss). */
static const char *translate(const struct vu_dev *d, const struct vu_vring *vr,
			     struct vq *vq)
{
	vq->desc = NULL;
	vq->log = NULL;
	vq->avail = vq->used = NULL;
	vq->pdesc = NULL;
	vq->drv_evt = vq->dev_evt = NULL;
	vq_set_mem(vq, d->mem);
	vq->iotlb = NULL;
	if (vu_has(d, HS_VIRTIO_F_IOMMU_PLATFORM)) {
		static const struct vu_iotlb empty;
		vq->iotlb = d->iotlb ? d->iotlb : &empty;
	}
	if (!d->mem)
		return "no memory table";
	if (!vr->addr_set)
		return "no ring addresses";
	uint64_t n = vq->size;
	const char *why;
	if (!vq->packed) {
		void *desc, *avail, *used;
		if ((why = vu_ring_area(d, vq, vr->desc_uva, 16 * n, VU_PERM_RO, &desc)) ||
		    (why = vu_ring_area(d, vq, vr->avail_uva, 6 + 2 * n, VU_PERM_RO, &avail)) ||
		    (why = vu_ring_area(d, vq, vr->used_uva, 6 + 8 * n, VU_PERM_WO, &used)))
			return why;
		if (((uintptr_t)desc & 15) || ((uintptr_t)avail & 1) || ((uintptr_t)used & 3))
			return "misaligned ring";
		vq->desc = desc;
		vq->avail = avail;
		vq->used = used;
		vu_log_ring(d, vr, vq);
		return NULL;
	}
	void *pdesc, *drv, *dev;
	if ((why = vu_ring_area(d, vq, vr->desc_uva, 16 * n, VU_PERM_RO | VU_PERM_WO, &pdesc)) ||
	    (why = vu_ring_area(d, vq, vr->avail_uva, 4, VU_PERM_RO, &drv)) ||
	    (why = vu_ring_area(d, vq, vr->used_uva, 4, VU_PERM_WO, &dev)))
		return why;
	if (((uintptr_t)pdesc & 15) || ((uintptr_t)drv & 3) || ((uintptr_t)dev & 3))
		return "misaligned ring";
	vq->pdesc = pdesc;
	vq->drv_evt = drv;
	vq->dev_evt = dev;
	vu_log_ring(d, vr, vq);
	return NULL;
}

/* Whether ring i would translate with these addresses, the size and the
 * layout known now (the answer to SET_VRING_ADDR, before it changes
 * anything); NULL when it would or when that cannot be told yet (no size
 * or no memory table). Reads only what the control plane writes: the
 * data path may be running the ring. */
const char *vu_ring_check_addr(const struct vu_dev *d, unsigned i, uint64_t desc,
			       uint64_t avail, uint64_t used)
{
	const struct vu_vring *vr = &d->vr[i];
	struct vu_vring cand = {.desc_uva = desc, .avail_uva = avail, .used_uva = used,
				.addr_set = true};
	struct vq vq;
	vq_reset(&vq);
	if (vr->started) { /* its geometry, fixed at start */
		vq.size = vr->vq.size;
		vq.packed = vr->vq.packed;
	} else {
		if (!vr->num || vr->num > VQ_MAX_SIZE)
			return NULL;
		vq.size = (uint16_t)vr->num;
		vq.packed = vu_has(d, HS_VIRTIO_F_RING_PACKED);
	}
	if (!d->mem)
		return NULL;
	const char *why = translate(d, &cand, &vq);
	return why == vu_iotlb_wait ? NULL : why; /* behind an IOMMU: told later */
}

/* A transmit ring going live, first or again: its kicks on (a ring may
 * keep a previous owner's "no kicks, I poll" in guest memory, e.g. after
 * the switch restarted), and one look at what the driver queued before
 * (it may have done so without kicking, as it was told, or kicked while
 * the ring was not live). */
static void ring_arm(struct vu_vring *vr)
{
	vr->kicks_off = false;
	vq_set_kicks(&vr->vq, true);
	vu_ring_look(vr);
}

/* A receive ring going live: its "buffers posted" kicks on only while the
 * switch wants them (frames wait in its backlog: vu_set_notify). Left on,
 * a driver without event indexes (DPDK's virtio) kicks after every refill,
 * a system call per burst on the guest's core and an event for the switch
 * to read and re-arm. The look runs the backlog, which asks again if it
 * still waits (a request made while the ring was not live was kept, not
 * applied). */
static void rx_ring_arm(struct vu_vring *vr)
{
	vq_set_kicks(&vr->vq, atomic_load_explicit(&vr->posted_want, memory_order_relaxed));
	vu_ring_look(vr);
}

void vu_rings_update(struct vu_dev *d)
{
	uint16_t active = 0;
	bool prefix = true;
	for (unsigned i = 0; i < 2u * d->nqp; i++) {
		struct vu_vring *vr = &d->vr[i];
		const char *why;
		vr->vq.log = NULL; /* translate() sets it again for a ring in use */
		/* Every miss is looked up again (the areas here, a stalled chain
		 * by the data path): what was missing may be there now. */
		vr->vq.miss = false;
		vr->miss_reported = false;
		if (!vr->started)
			why = not_started;
		else if (vr->vq.broken)
			why = vr->vq.broken;
		else if ((why = translate(d, vr, &vr->vq)) == NULL && !vr->enabled)
			why = disabled;
		bool was = vr->live;
		vr->live = !why;
		if (why == vu_iotlb_wait)
			vu_iotlb_report(d, vr); /* the front-end answers with an UPDATE */
		if (why == vu_iotlb_wait) {
			/* routine behind an IOMMU (the guest remapped a ring's
			 * pages): not logged, not a link event */
		} else if (was && !vr->live) {
			hs_port_log(d->port, HS_LOG_INFO, "vring %u stopped: %s", i, why);
		} else if (vr->started && why && why != vr->why_not && why != disabled) {
			hs_port_log(d->port, HS_LOG_WARN, "vring %u not usable: %s", i, why);
		}
		vr->why_not = why;
		/* A ring that goes live, first or again (enabled, its memory
		 * back, an IOTLB entry come), is looked at: a kick the guest
		 * made meanwhile was taken while it was not live, and with
		 * EVENT_IDX a driver whose avail_event lies behind never kicks
		 * again. (An announce also waits for queue 0's transmit ring.) */
		if (vr->live && (vr->fresh || !was)) {
			if (i & 1)
				ring_arm(vr);
			else
				rx_ring_arm(vr);
			vr->fresh = false;
		}
	}
	bool broken = false; /* down until the front-end starts it again */
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		broken |= d->vr[i].started && d->vr[i].vq.broken;
	for (unsigned q = 0; q < d->nqp; q++) {
		/* A receive ring that waits for an IOTLB entry stays in the
		 * count: frames for it wait in the backlog until the UPDATE
		 * (which looks at every ring again) instead of being dropped
		 * as for a port whose link went down. */
		if (prefix && (d->vr[2 * q].live || d->vr[2 * q].why_not == vu_iotlb_wait))
			active++;
		else
			prefix = false;
	}
	if (active != d->active_qp && active)
		hs_port_log(d->port, HS_LOG_INFO, "%u of %u queue pair(s) active", active,
			    d->nqp);
	d->active_qp = active;
	hs_port_set_active_queues(d->port, active ? active : 1);
	hs_port_set_link(d->port, active > 0 && !broken);
}

/* Receive rings get reservation scratch sized from the ring. */
static int rx_scratch(struct vu_dev *d, unsigned q, uint32_t n)
{
	struct vu_rxq *r = &d->rxq[q];
	if (r->chain_cap >= n)
		return 0;
	free(r->chain);
	free(r->segs);
	r->chain = calloc(n, sizeof(*r->chain));
	r->segs = calloc(4 * (size_t)n + 64, sizeof(*r->segs));
	if (!r->chain || !r->segs) {
		free(r->chain);
		free(r->segs);
		r->chain = NULL;
		r->segs = NULL;
		r->chain_cap = r->seg_cap = 0;
		return -ENOMEM;
	}
	r->chain_cap = n;
	/* a reservation's pieces are counted in 16 bits (vu_resv.nseg,
	 * hs_iobuf.nsegs): rings of 16384 and more would pass that */
	r->seg_cap = 4 * n + 64 < UINT16_MAX ? 4 * n + 64 : UINT16_MAX;
	return 0;
}

int vu_ring_start(struct vu_dev *d, unsigned i, int kickfd)
{
	struct vu_vring *vr = &d->vr[i];
	bool packed = vu_has(d, HS_VIRTIO_F_RING_PACKED);
	uint32_t n = vr->num;
	const char *why = NULL;
	if (!n || n > VQ_MAX_SIZE)
		why = "no valid ring size";
	else if (!packed && (n & (n - 1)))
		why = "split ring size not a power of two";
	else if (!packed && vr->base > 0xffff)
		why = "split ring position wider than 16 bits";
	else if (packed && ((vr->base & 0x7fff) >= n || ((vr->base >> 16) & 0x7fff) >= n))
		why = "packed ring position outside the ring";
	if (why) {
		hs_port_log(d->port, HS_LOG_WARN, "vring %u not started: %s (size %u, "
			    "position %#x, %s)", i, why, n, vr->base,
			    packed ? "packed" : "split");
		return -EINVAL;
	}
	if (!(i & 1) && rx_scratch(d, i / 2, n))
		return -ENOMEM;
	struct vq *vq = &vr->vq;
	vq_reset(vq);
	vq->size = (uint16_t)n;
	vq->packed = packed;
	vq->event_idx = vu_has(d, HS_VIRTIO_F_EVENT_IDX);
	vq->indirect = vu_has(d, HS_VIRTIO_F_INDIRECT_DESC);
	if (packed) {
		uint16_t a = vr->base & 0x7fff, u = (vr->base >> 16) & 0x7fff;
		bool aw = (vr->base >> 15) & 1, uw = (vr->base >> 31) & 1;
		if ((vr->base >> 16) && (u != a || uw != aw)) {
			/* The front-end hands over a used position other than
			 * the available one: the chains between were taken and
			 * never given back (the back-end before stopped midway).
			 * Resume from the used position, where the driver waits:
			 * they are taken again (a frame may go twice, none is
			 * lost), as a split ring resumes from its used index. */
			hs_port_log(d->port, HS_LOG_WARN, "vring %u: used position %u (wrap %d) "
				    "is not the available one, %u (wrap %d): resuming from "
				    "the used one", i, u, uw, a, aw);
			a = u;
			aw = uw;
		}
		vq_set_base(vq, a, aw);
		hs_port_log(d->port, HS_LOG_INFO, "vring %u (packed) starts at %u, wrap %d", i, a,
			    aw);
	} else {
		vq_set_base(vq, (uint16_t)vr->base, true);
	}
	int rc = hs_port_set_queue_fd(d->port, (uint16_t)(i / 2),
				      (i & 1) ? HS_EV_KICK : HS_EV_POSTED, kickfd);
	if (rc)
		return rc;
	vr->kickfd = kickfd;
	vr->started = true;
	vr->fresh = true;
	vr->kicks_off = false;
	vr->miss_reported = false;
	/* Without protocol features a ring is enabled as soon as it starts. */
	if (!vu_has(d, VU_F_PROTOCOL_FEATURES))
		vr->enabled = true;
	vu_rings_update(d);
	return 0;
}

uint32_t vu_ring_stop(struct vu_dev *d, unsigned i)
{
	struct vu_vring *vr = &d->vr[i];
	if (vr->started) {
		hs_port_set_queue_fd(d->port, (uint16_t)(i / 2),
				     (i & 1) ? HS_EV_KICK : HS_EV_POSTED, -1);
		vu_close_fd(&vr->kickfd);
		const struct vq *vq = &vr->vq;
		/* Quiesced: every chain popped was also used, so the next
		 * available one is where the ring resumes. A packed ring's
		 * position carries the used slot and wrap counter in its upper
		 * half, which QEMU reads back. */
		if (vq->packed) {
			vr->base = (uint32_t)(vq->last_avail | (vq->avail_wrap ? 0x8000 : 0)) |
				   (uint32_t)(vq->used_idx | (vq->used_wrap ? 0x8000 : 0)) << 16;
			hs_port_log(d->port,
				    vq->used_idx != vq->last_avail || vq->used_wrap != vq->avail_wrap
					    ? HS_LOG_ERROR : HS_LOG_INFO,
				    "vring %u (packed) stops at %u, wrap %d; used %u, wrap %d", i,
				    vq->last_avail, vq->avail_wrap, vq->used_idx, vq->used_wrap);
		} else {
			vr->base = vq->last_avail;
		}
		vr->started = false;
		vr->fresh = false;
		vr->polled = false;
		vu_poll_update(d);
	}
	vu_rings_update(d);
	return vr->base;
}

/* Polled rings (NOFD): a look every millisecond from the loop, through
 * the ring's own eventfd, as a kick would. While the data path owns the
 * queue in a polling worker the kicks only find it busy. */
static void poll_cb(hs_timer_t *t, void *arg)
{
	struct vu_dev *d = arg;
	(void)t;
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		if (d->vr[i].polled && vu_ring_live(&d->vr[i]))
			vu_ring_look(&d->vr[i]);
}

void vu_poll_update(struct vu_dev *d)
{
	bool any = false;
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		any |= d->vr[i].started && d->vr[i].polled;
	if (any && !d->poll_t) {
		if (hs_timer_add(hs_port_switch(d->port), 1, 1, poll_cb, d, &d->poll_t))
			hs_port_log(d->port, HS_LOG_ERROR, "cannot poll the rings of a "
				    "front-end without kick fds");
	} else if (!any && d->poll_t) {
		hs_timer_del(d->poll_t);
		d->poll_t = NULL;
	}
}

void vu_ring_reset(struct vu_dev *d, unsigned i)
{
	struct vu_vring *vr = &d->vr[i];
	if (vr->started)
		hs_port_set_queue_fd(d->port, (uint16_t)(i / 2),
				     (i & 1) ? HS_EV_KICK : HS_EV_POSTED, -1);
	vu_close_fd(&vr->kickfd);
	vu_close_fd(&vr->callfd);
	vu_close_fd(&vr->errfd);
	vr->num = 0;
	vr->addr_set = vr->log_used = false;
	vr->log_gpa = 0;
	vr->base = 0;
	vr->started = vr->fresh = vr->enabled = vr->live = false;
	vr->kicks_off = false;
	/* The device is reset (or the front-end gone): its link went down and
	 * the backlog was dropped; a kept request would have the next
	 * connection's driver kick after every refill until a frame came. */
	atomic_store_explicit(&vr->posted_want, false, memory_order_relaxed);
	vr->polled = false;
	vr->miss_reported = false;
	vr->why_not = NULL;
	vq_reset(&vr->vq);
	vu_poll_update(d);
}

/* The data path found a ring broken (a guest bug or attack). Called by
 * the ring's data-path user; the control plane's next update keeps it
 * down (vq.broken) until the front-end starts the ring again. */
void vu_ring_broken(struct vu_dev *d, struct vu_vring *vr)
{
	atomic_fetch_add(&d->broken_rings, 1);
	hs_port_log(d->port, HS_LOG_ERROR, "vring %u stopped: %s; link down until reset",
		    (unsigned)(vr - d->vr), vr->vq.broken ? vr->vq.broken : "?");
	__atomic_store_n(&vr->live, false, __ATOMIC_RELAXED); /* see vu_ring_live */
	hs_port_report_broken(d->port, (uint16_t)((vr - d->vr) / 2),
			      vr->vq.broken ? vr->vq.broken : "?");
	hs_port_set_link(d->port, false);
	vu_poke(vr->errfd); /* nobody may listen: the log line stays */
}

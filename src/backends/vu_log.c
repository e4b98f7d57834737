/*
 * vu_log.c - what live migration needs from a vhost-user back-end:
 *
 *  - the dirty page log. The front-end shares a bitmap (SET_LOG_BASE, an
 *    fd with VHOST_USER_PROTOCOL_F_LOG_SHMFD) and, while it migrates the
 *    guest, negotiates VHOST_F_LOG_ALL; the data path then marks every
 *    guest page it writes (virtq.h: received frames and their virtio-net
 *    headers, used-ring entries, indices and flags, notification fields),
 *    so that the front-end copies those pages again.
 *  - the announce (SEND_RARP, VHOST_USER_PROTOCOL_F_RARP): after the
 *    guest moved here, a RARP from its MAC enters the switch as if the
 *    guest had sent it, so the forwarding table points at this port at
 *    once and every other port hears where the guest is. A guest that
 *    negotiated VIRTIO_NET_F_GUEST_ANNOUNCE announces itself instead.
 *
 * Security model: the log is guest-controlled memory like any other: its
 * file must hold it (vu_region_map: tmpfs/hugetlbfs/ramfs, within the
 * file, guard pages, SIGBUS policy), it must cover the memory table in
 * force when it is set, and a page the data path writes beyond it is
 * counted (dirty_log_overflow), never silently left out; so is every
 * page written while LOG_ALL is on without a log (none sent, or the log
 * dropped because guest memory faulted: its file may be the one that
 * shrank, and marks in the zero pages put there would reach nobody). Used-ring writes are logged whenever LOG_ALL is on, whether or not
 * a ring asked with VHOST_VRING_F_LOG: a page marked without need costs
 * a copy, a page left out corrupts the guest.
 *
 * Threads: control plane (loop thread), with the port quiesced where the
 * data path reads what changes.
 */
#include <errno.h>
#include <string.h>

#include "vu_dev.h"

/* Bitmap bytes that cover every page of the memory table. */
static uint64_t log_bytes_needed(const struct vu_mem *m)
{
	uint64_t need = 0;
	for (uint32_t i = 0; m && i < m->n; i++) {
		uint64_t end = m->r[i].gpa + m->r[i].size; /* no overflow: checked at map */
		uint64_t pages = (end >> VU_LOG_PAGE_SHIFT) +
				 !!(end & ((1ull << VU_LOG_PAGE_SHIFT) - 1));
		uint64_t bytes = (pages + 7) / 8;
		if (bytes > need)
			need = bytes;
	}
	return need;
}

int vu_log_set(struct vu_dev *d, const struct vu_log_desc *ld, int fd)
{
	if (fd < 0)
		return -EINVAL;
	if (!ld->mmap_size || ld->mmap_size > (1ull << 40)) {
		vu_close_fd(&fd);
		hs_port_log(d->port, HS_LOG_WARN, "dirty log of %llu bytes refused",
			    (unsigned long long)ld->mmap_size);
		return -EINVAL;
	}
	struct vu_region r;
	struct vu_region_desc rd = {.gpa = 0, .size = ld->mmap_size, .uva = 0,
				    .mmap_off = ld->mmap_offset};
	int rc = vu_region_map(d, &r, &rd, fd); /* takes fd */
	if (rc)
		return rc;
	uint64_t need = log_bytes_needed(d->mem);
	if (need > ld->mmap_size) {
		hs_port_log(d->port, HS_LOG_WARN, "dirty log of %llu bytes refused: guest "
			    "memory needs %llu", (unsigned long long)ld->mmap_size,
			    (unsigned long long)need);
		vu_region_unmap(&r);
		return -EINVAL;
	}
	vu_quiesce(d);
	struct vu_region old = d->log_map;
	d->log_map = r;
	d->log.bits = r.hva;
	d->log.len = ld->mmap_size;
	vu_rings_update(d);
	vu_resume(d);
	if (old.map)
		vu_region_unmap(&old);
	hs_port_log(d->port, HS_LOG_INFO, "dirty log of %llu bytes (guest memory up to "
		    "%llu MiB)", (unsigned long long)ld->mmap_size,
		    (unsigned long long)(ld->mmap_size * 8 * 4096 >> 20));
	return 0;
}

void vu_log_drop(struct vu_dev *d)
{
	d->log.bits = NULL;
	d->log.len = 0;
	if (d->log_map.map)
		vu_region_unmap(&d->log_map);
	d->log_map = (struct vu_region){.fault_slot = -1};
}

void vu_log_reset(struct vu_dev *d)
{
	vu_log_drop(d);
	vu_close_fd(&d->log_fd);
	atomic_store(&d->announce, false);
}

void vu_log_ring(const struct vu_dev *d, const struct vu_vring *vr, struct vq *vq)
{
	vq->log = NULL;
	/* LOG_ALL without a log (never sent, or dropped after a fault): the
	 * empty log counts every page as beyond it (dirty_log_overflow). */
	if (!vu_has(d, VU_F_LOG_ALL) || !d->mem)
		return;
	/* from the host addresses translate() found: with an IOMMU the ring
	 * addresses the front-end gave are IOVAs */
	(void)vr;
	uint64_t used, evt = 0;
	if (!vu_hva_gpa(d->mem, vq->packed ? (void *)vq->pdesc : (void *)vq->used, &used) ||
	    (vq->packed && !vu_hva_gpa(d->mem, vq->dev_evt, &evt)))
		return; /* not translated: not live either */
	vq->log_used = used;
	vq->log_evt = evt;
	vq->log = &d->log;
}

void vu_announce(struct vu_dev *d, const uint8_t mac[6])
{
	/* RARP "reverse request" (RFC 903), as QEMU sends it for a NIC
	 * without a back-end of its own: broadcast, sender and target the
	 * guest's MAC, no addresses, padded to the minimum frame. */
	uint8_t *f = d->announce_frame;
	memset(f, 0, sizeof(d->announce_frame));
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x80, f[13] = 0x35;            /* ETH_P_RARP */
	f[14] = 0, f[15] = 1;                  /* hardware: Ethernet */
	f[16] = 0x08, f[17] = 0;               /* protocol: IPv4 */
	f[18] = 6, f[19] = 4;
	f[20] = 0, f[21] = 3;                  /* reverse request */
	memcpy(f + 22, mac, 6);
	memcpy(f + 32, mac, 6);
	atomic_store_explicit(&d->announce, true, memory_order_release);
	/* The transmit ring of queue 0 takes it on its next burst: look now. */
	vu_ring_look(&d->vr[1]);
}

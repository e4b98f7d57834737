/*
 * vu_msg.c - the vhost-user message handlers, one row each in a const
 * table (DPDK's style) that gives every request its payload size bounds
 * and how many fds it may carry; vu_dispatch checks those before any
 * handler runs.
 *
 * Security model: the front-end is untrusted and chooses the order of its
 * messages. Handlers store what it sends as it sent it; what a ring's
 * fields mean is decided in vu_ring.c, when the ring starts and whenever
 * something it depends on changes, so that any order is either correct or
 * refused. Changes that would alter a running ring's layout under the data
 * path (its size, position, the features) are refused with -EBUSY.
 * Anything the data path reads is changed between hs_port_quiesce and
 * hs_port_resume.
 *
 * Threads: the switch's loop thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "vu_dev.h"

/* ---- small helpers --------------------------------------------------------------------- */

/* Takes fd i of the message (ownership moves to the caller). */
static int take_fd(struct vu_msg *m, unsigned i)
{
	if (i >= m->nfds)
		return -1;
	int fd = m->fds[i];
	m->fds[i] = -1;
	return fd;
}

static uint64_t u64_of(const struct vu_msg *m)
{
	uint64_t v;
	memcpy(&v, m->payload, sizeof(v));
	return v;
}

static void reply_u64(struct vu_msg *m, uint64_t v)
{
	memcpy(m->reply, &v, sizeof(v));
	m->reply_size = sizeof(v);
}

static int vring_index(const struct vu_dev *d, uint32_t idx)
{
	return idx < 2u * d->nqp ? (int)idx : -1;
}

static bool any_started(const struct vu_dev *d)
{
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		if (d->vr[i].started)
			return true;
	return false;
}

/* ---- memory table ------------------------------------------------------------------------ */

static int h_set_mem_table(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_memory mt = {0};
	memcpy(&mt, m->payload, m->hdr.size < sizeof(mt) ? m->hdr.size : sizeof(mt));
	if (mt.nregions < 1 || mt.nregions > 8 || mt.nregions != m->nfds ||
	    m->hdr.size < 8 + mt.nregions * sizeof(struct vu_region_desc))
		return -EINVAL;
	struct vu_mem *nm = calloc(1, sizeof(*nm));
	if (!nm)
		return -ENOMEM;
	for (uint32_t i = 0; i < mt.nregions; i++) {
		int rc = vu_region_map(d, &nm->r[i], &mt.r[i], take_fd(m, i));
		if (rc) {
			vu_mem_free(nm);
			return rc;
		}
		nm->n = i + 1;
	}
	if (vu_regions_overlap(nm)) {
		vu_mem_free(nm);
		return -EINVAL;
	}
	vu_mem_free(vu_mem_install(d, nm));
	return 0;
}

static bool same_region(const struct vu_region *r, const struct vu_region_desc *rd)
{
	return r->gpa == rd->gpa && r->size == rd->size && r->uva == rd->uva;
}

static int h_add_mem_reg(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_region_desc rd;
	memcpy(&rd, m->payload + 8, sizeof(rd));
	int fd = take_fd(m, 0);
	uint32_t n = d->mem ? d->mem->n : 0;
	/* QEMU with several queue pairs sends the same region once per
	 * vhost device (and removes it as many times): count, don't remap. */
	for (uint32_t i = 0; i < n; i++) {
		struct vu_region *r = &d->mem->r[i];
		if (same_region(r, &rd) && r->mmap_off == rd.mmap_off) {
			vu_close_fd(&fd);
			if (r->refs == UINT32_MAX)
				return -EOVERFLOW;
			r->refs++;
			return 0;
		}
	}
	if (n >= VU_MAX_MEM_SLOTS) {
		vu_close_fd(&fd);
		return -ENOSPC;
	}
	struct vu_mem *nm = calloc(1, sizeof(*nm));
	if (!nm) {
		vu_close_fd(&fd);
		return -ENOMEM;
	}
	int rc = vu_region_map(d, &nm->r[n], &rd, fd);
	if (rc) {
		free(nm);
		return rc;
	}
	/* The new table shares the existing mappings. */
	if (d->mem)
		memcpy(nm->r, d->mem->r, n * sizeof(nm->r[0]));
	nm->n = n + 1;
	if (vu_regions_overlap(nm)) {
		vu_region_unmap(&nm->r[n]);
		free(nm);
		return -EINVAL;
	}
	free(vu_mem_install(d, nm));
	return 0;
}

static int h_rem_mem_reg(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_region_desc rd;
	memcpy(&rd, m->payload + 8, sizeof(rd));
	if (!d->mem)
		return -ENOENT;
	for (uint32_t i = 0; i < d->mem->n; i++) {
		struct vu_region *r = &d->mem->r[i];
		if (same_region(r, &rd) && r->refs > 0) {
			r->refs--;
			return 0;
		}
	}
	struct vu_mem *nm = calloc(1, sizeof(*nm));
	if (!nm)
		return -ENOMEM;
	struct vu_region gone = {0};
	bool found = false;
	for (uint32_t i = 0; i < d->mem->n; i++) {
		const struct vu_region *r = &d->mem->r[i];
		if (!found && same_region(r, &rd)) {
			gone = *r;
			found = true;
			continue;
		}
		nm->r[nm->n++] = *r;
	}
	if (!found) {
		free(nm);
		return -ENOENT;
	}
	free(vu_mem_install(d, nm));
	vu_region_unmap(&gone);
	return 0;
}

/* ---- vrings -------------------------------------------------------------------------------- */

static int h_set_vring_num(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0 || !st.num || st.num > VQ_MAX_SIZE)
		return -EINVAL;
	if (d->vr[i].started)
		return -EBUSY; /* its position was validated against the old size */
	/* Split rings have power-of-two sizes (checked again at start, when
	 * the layout is final). */
	if (d->features && !vu_has(d, HS_VIRTIO_F_RING_PACKED) && (st.num & (st.num - 1)))
		return -EINVAL;
	d->vr[i].num = st.num;
	return 0;
}

static int h_set_vring_addr(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_addr a;
	memcpy(&a, m->payload, sizeof(a));
	int i = vring_index(d, a.index);
	if (i < 0 || (a.flags & ~(uint32_t)VU_VRING_F_LOG))
		return -EINVAL;
	/* Checked before anything changes: refused, the ring keeps what it
	 * had (a running ring its old, valid addresses). */
	const char *why = vu_ring_check_addr(d, (unsigned)i, a.desc, a.avail, a.used);
	if (why) {
		hs_port_log(d->port, HS_LOG_WARN, "vring %d: %s", i, why);
		return -EINVAL;
	}
	struct vu_vring *vr = &d->vr[i];
	vu_quiesce(d);
	vr->desc_uva = a.desc;
	vr->used_uva = a.used;
	vr->avail_uva = a.avail;
	vr->addr_set = true;
	vr->log_used = a.flags & VU_VRING_F_LOG;
	vr->log_gpa = a.log;
	vu_rings_update(d);
	vu_resume(d);
	if (vr->log_used && vr->vq.log && vu_ring_live(vr) && !vu_has(d, HS_VIRTIO_F_IOMMU_PLATFORM) &&
	    vr->log_gpa != (vr->vq.packed ? vr->vq.log_evt : vr->vq.log_used))
		hs_port_log(d->port, HS_LOG_WARN, "vring %d: log address %#llx is not the "
			    "used ring's; the pages written are logged", i,
			    (unsigned long long)vr->log_gpa);
	return 0;
}

static int h_set_vring_base(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0)
		return -EINVAL;
	if (d->vr[i].started)
		return -EBUSY; /* a running ring's position is the data path's */
	d->vr[i].base = st.num;
	return 0;
}

static int h_get_vring_base(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0)
		return -EINVAL;
	vu_quiesce(d);
	st.num = vu_ring_stop(d, (unsigned)i); /* GET_VRING_BASE stops the ring */
	vu_resume(d);
	memcpy(m->reply, &st, sizeof(st));
	m->reply_size = sizeof(st);
	return 0;
}

/* Kick, call and error fds must be eventfds, made non-blocking: the data
 * path reads and writes them. A pipe would kill the process with SIGPIPE
 * once its reader went away, a blocking eventfd at its maximum count
 * would stop a worker (and every quiesce behind it), a regular file
 * cannot join the epoll set. (The front-end shares the file description
 * and could clear O_NONBLOCK again; DPDK and libvhost-user share that
 * exposure; see docs/design.md.) */
static bool is_eventfd(int fd)
{
	char via[40], what[32];
	snprintf(via, sizeof(via), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(via, what, sizeof(what) - 1);
	if (n < 0)
		return false;
	what[n] = 0;
	return !strcmp(what, "anon_inode:[eventfd]") &&
	       fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0;
}

static int vring_fd_msg(struct vu_dev *d, struct vu_msg *m, int *idx, int *fd)
{
	uint64_t v = u64_of(m);
	*idx = vring_index(d, (uint32_t)(v & VU_VRING_IDX));
	*fd = (v & VU_VRING_NOFD) ? -1 : take_fd(m, 0);
	if (*idx < 0 || (v & ~(uint64_t)(VU_VRING_IDX | VU_VRING_NOFD)) ||
	    (!(v & VU_VRING_NOFD) && (*fd < 0 || !is_eventfd(*fd)))) {
		vu_close_fd(fd);
		return -EINVAL;
	}
	return 0;
}

static int h_set_vring_kick(struct vu_dev *d, struct vu_msg *m)
{
	int i, fd, rc = 0;
	if (vring_fd_msg(d, m, &i, &fd))
		return -EINVAL;
	bool polled = fd < 0;
	if (polled) {
		/* The front-end polls and never kicks (VHOST_USER_VRING_NOFD_MASK):
		 * the switch looks every millisecond, through an eventfd of its
		 * own that the data path waits on as on a kick fd. */
		fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd < 0)
			return -errno;
	}
	struct vu_vring *vr = &d->vr[i];
	vu_quiesce(d);
	if (vr->started) {
		/* A new fd for a running ring: its position stays; if the new
		 * fd cannot be watched, the old one is watched again. */
		unsigned ev = (i & 1) ? HS_EV_KICK : HS_EV_POSTED;
		rc = hs_port_set_queue_fd(d->port, (uint16_t)(i / 2), ev, fd);
		if (!rc) {
			vu_close_fd(&vr->kickfd);
			vr->kickfd = fd;
			vu_ring_look(vr); /* a kick may have gone to the old fd */
		} else {
			hs_port_set_queue_fd(d->port, (uint16_t)(i / 2), ev, vr->kickfd);
		}
	} else {
		rc = vu_ring_start(d, (unsigned)i, fd);
	}
	if (!rc) {
		if (polled != vr->polled)
			hs_port_log(d->port, HS_LOG_INFO, "vring %d: %s", i, polled ?
				    "no kick fd: polled every millisecond" : "kicked again");
		vr->polled = polled;
		vu_poll_update(d);
	}
	vu_resume(d);
	if (rc)
		vu_close_fd(&fd);
	return rc;
}

/* Replaces a call or error fd: the data path writes to them. */
static int set_vring_fd(struct vu_dev *d, struct vu_msg *m, size_t field)
{
	int i, fd;
	if (vring_fd_msg(d, m, &i, &fd))
		return -EINVAL;
	int *slot = (int *)((uint8_t *)&d->vr[i] + field);
	vu_quiesce(d);
	vu_close_fd(slot);
	*slot = fd;
	vu_resume(d);
	return 0;
}

static int h_set_vring_call(struct vu_dev *d, struct vu_msg *m)
{
	return set_vring_fd(d, m, offsetof(struct vu_vring, callfd));
}

static int h_set_vring_err(struct vu_dev *d, struct vu_msg *m)
{
	return set_vring_fd(d, m, offsetof(struct vu_vring, errfd));
}

static int h_set_vring_enable(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0 || st.num > 1)
		return -EINVAL;
	vu_quiesce(d);
	d->vr[i].enabled = st.num;
	vu_rings_update(d);
	vu_resume(d);
	return 0;
}

/* ---- live migration ---------------------------------------------------------------------- */

/* The dirty page log (VHOST_USER_PROTOCOL_F_LOG_SHMFD): QEMU waits for an
 * empty reply. A log refused ends the connection (the reply cannot say
 * "no", and migrating without it would corrupt the guest). */
static int h_set_log_base(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_log_desc ld;
	memcpy(&ld, m->payload, sizeof(ld));
	m->reply_size = 0;
	return vu_log_set(d, &ld, take_fd(m, 0));
}

/* An eventfd signalled after bursts that marked pages (as the kernel's
 * VHOST_SET_LOG_FD); -1 (no fd) removes it. */
static int h_set_log_fd(struct vu_dev *d, struct vu_msg *m)
{
	int fd = take_fd(m, 0);
	if (fd >= 0 && !is_eventfd(fd)) {
		vu_close_fd(&fd);
		return -EINVAL;
	}
	vu_quiesce(d);
	vu_close_fd(&d->log_fd);
	d->log_fd = fd;
	vu_resume(d);
	return 0;
}

/* The guest arrived here: announce it (vu_log.c). The MAC is the first six
 * bytes of the payload; only a unicast MAC can be a guest's. */
static int h_send_rarp(struct vu_dev *d, struct vu_msg *m)
{
	uint8_t mac[6];
	memcpy(mac, m->payload, 6);
	static const uint8_t zero[6];
	if ((mac[0] & 1) || !memcmp(mac, zero, 6))
		return -EINVAL;
	vu_quiesce(d); /* the frame a burst may still hand out is rewritten */
	vu_announce(d, mac);
	vu_resume(d);
	atomic_fetch_add(&d->announces, 1);
	hs_port_log(d->port, HS_LOG_INFO, "announcing %02x:%02x:%02x:%02x:%02x:%02x (RARP)",
		    mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
	return 0;
}

/* ---- vIOMMU (vu_iotlb.c) ---------------------------------------------------------------- */

static int h_set_backend_req_fd(struct vu_dev *d, struct vu_msg *m)
{
	return vu_iotlb_set_channel(d, take_fd(m, 0));
}

static int h_iotlb_msg(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_iotlb_msg im = {0};
	memcpy(&im, m->payload, m->hdr.size < sizeof(im) ? m->hdr.size : sizeof(im));
	int rc = vu_iotlb_msg(d, &im);
	if (rc)
		hs_port_log(d->port, HS_LOG_WARN, "IOTLB message (type %u, iova %#llx, size "
			    "%#llx) refused", im.type, (unsigned long long)im.iova,
			    (unsigned long long)im.size);
	return rc;
}

/* ---- features ---------------------------------------------------------------------------- */

#define F(bit) (1ull << HS_VIRTIO_NET_F_##bit)

/* Which negotiated features (all of a row's) grant which HS_CAP_*. */
struct feat_cap {
	uint64_t features;
	uint32_t cap;
};

/* What the guest accepts on receive: the port's caps. */
static const struct feat_cap rx_caps[] = {
	{F(GUEST_CSUM), HS_CAP_CSUM},
	{F(GUEST_TSO4), HS_CAP_GSO_TCPV4},
	{F(GUEST_TSO6), HS_CAP_GSO_TCPV6},
	{F(GUEST_ECN), HS_CAP_GSO_ECN},
	{F(GUEST_UFO), HS_CAP_GSO_UDP},
	{F(GUEST_USO4) | F(GUEST_USO6), HS_CAP_GSO_UDP_L4},
};

/* What the guest may use in frames it sends. */
static const struct feat_cap tx_caps[] = {
	{F(CSUM), HS_CAP_CSUM},
	{F(HOST_TSO4), HS_CAP_GSO_TCPV4},
	{F(HOST_TSO6), HS_CAP_GSO_TCPV6},
	{F(HOST_ECN), HS_CAP_GSO_ECN},
	{F(HOST_USO), HS_CAP_GSO_UDP_L4},
};

#undef F

static uint32_t caps_of(const struct vu_dev *d, const struct feat_cap *m, size_t n)
{
	uint32_t c = 0;
	for (size_t i = 0; i < n; i++)
		if ((d->features & m[i].features) == m[i].features)
			c |= m[i].cap;
	return c;
}

static int h_get_features(struct vu_dev *d, struct vu_msg *m)
{
	reply_u64(m, d->offered);
	return 0;
}

static int h_set_features(struct vu_dev *d, struct vu_msg *m)
{
	uint64_t f = u64_of(m);
	if (f & ~d->offered)
		return -EINVAL;
	if ((f >> HS_VIRTIO_F_RING_PACKED & 1) && !(f >> HS_VIRTIO_F_VERSION_1 & 1))
		return -EINVAL; /* packed rings exist only in virtio 1 */
	if ((f >> HS_VIRTIO_F_IOMMU_PLATFORM & 1) &&
	    (!((d->proto >> VU_PF_IOTLB) & 1) || !((d->proto >> VU_PF_BACKEND_REQ) & 1))) {
		/* Addresses would be IOVAs nobody translates: every ring would
		 * wait for ever (QEMU itself insists on both). */
		hs_port_log(d->port, HS_LOG_WARN, "IOMMU_PLATFORM refused: it needs the "
			    "IOTLB and BACKEND_REQ protocol features");
		return -EINVAL;
	}
	if (any_started(d) && ((f ^ d->features) & ~(1ull << VU_F_LOG_ALL))) {
		hs_port_log(d->port, HS_LOG_WARN, "features changed while rings run: "
			    "refused (stop the rings first)");
		return -EBUSY;
	}
	bool log_was = vu_has(d, VU_F_LOG_ALL);
	vu_quiesce(d);
	d->features = f;
	d->mrg = vu_has(d, HS_VIRTIO_NET_F_MRG_RXBUF);
	d->hdr_len = (d->mrg || vu_has(d, HS_VIRTIO_F_VERSION_1)) ? HSB_VNET_HDR_LEN : 10;
	d->tx_caps = caps_of(d, tx_caps, sizeof(tx_caps) / sizeof(tx_caps[0]));
	hs_port_set_caps(d->port, caps_of(d, rx_caps, sizeof(rx_caps) / sizeof(rx_caps[0])));
	atomic_store(&d->acked, f);
	vu_rings_update(d);
	vu_resume(d);
	if (log_was != vu_has(d, VU_F_LOG_ALL))
		hs_port_log(d->port, d->log.bits || log_was ? HS_LOG_INFO : HS_LOG_WARN,
			    "dirty logging %s%s", log_was ? "off" : "on",
			    d->log.bits || log_was ? "" : " without a log (SET_LOG_BASE): "
			    "nothing can be marked");
	return 0;
}

static int h_get_protocol_features(struct vu_dev *d, struct vu_msg *m)
{
	reply_u64(m, d->proto_offered);
	return 0;
}

static int h_set_protocol_features(struct vu_dev *d, struct vu_msg *m)
{
	uint64_t f = u64_of(m);
	if (f & ~d->proto_offered)
		return -EINVAL;
	d->proto = f;
	return 0;
}

static int h_set_owner(struct vu_dev *d, struct vu_msg *m)
{
	(void)m;
	d->owner = true;
	return 0;
}

/* RESET_DEVICE: every ring stopped, memory, log and features gone, the
 * device as nobody configured it; the connection, its owner and the
 * protocol features stay (the front-end configures the device again). */
static int h_reset_device(struct vu_dev *d, struct vu_msg *m)
{
	(void)m;
	hs_port_log(d->port, HS_LOG_INFO, "device reset by the front-end");
	vu_device_reset(d, true);
	return 0;
}

static int h_reset_owner(struct vu_dev *d, struct vu_msg *m)
{
	(void)d, (void)m; /* deprecated: ignored, as the spec recommends */
	return 0;
}

static int h_get_queue_num(struct vu_dev *d, struct vu_msg *m)
{
	reply_u64(m, d->nqp);
	return 0;
}

/* The MTU the front-end configured for the guest (QEMU's host_mtu): the
 * port then refuses larger frames from it (oversize), as the guest's
 * stack would. It may not exceed the MTU offered with VIRTIO_NET_F_MTU. */
static int h_net_set_mtu(struct vu_dev *d, struct vu_msg *m)
{
	uint64_t mtu = u64_of(m);
	if (mtu < 68 || mtu > 65535 || (d->cfg.mtu && mtu > d->cfg.mtu))
		return -EINVAL;
	int rc = hs_port_set_mtu(d->port, (uint32_t)mtu);
	if (rc)
		return rc;
	if (d->mtu != mtu)
		hs_port_log(d->port, HS_LOG_INFO, "guest MTU %u", (unsigned)mtu);
	d->mtu = (uint32_t)mtu;
	return 0;
}

static int h_get_max_mem_slots(struct vu_dev *d, struct vu_msg *m)
{
	(void)d;
	reply_u64(m, VU_MAX_MEM_SLOTS);
	return 0;
}

/* The status is recorded only: QEMU writes 0 when it stops the device and
 * then asks each ring for its base, which a reset here would have lost. */
static int h_set_status(struct vu_dev *d, struct vu_msg *m)
{
	uint64_t s = u64_of(m);
	if (s > 0xff)
		return -EINVAL;
	d->status = (uint8_t)s;
	return 0;
}

static int h_get_status(struct vu_dev *d, struct vu_msg *m)
{
	reply_u64(m, d->status);
	return 0;
}

/* ---- the handler table (DPDK's style: one row per request) -------------------------- */

struct handler {
	uint32_t req;
	const char *name;
	int (*fn)(struct vu_dev *, struct vu_msg *);
	uint8_t max_fds;
	uint32_t min_size, max_size;
	bool reply; /* has its own reply payload */
};

#define U64 sizeof(uint64_t)
#define STATE sizeof(struct vu_state)

static const struct handler handlers[] = {
	{VU_GET_FEATURES, "GET_FEATURES", h_get_features, 0, 0, 0, true},
	{VU_SET_FEATURES, "SET_FEATURES", h_set_features, 0, U64, U64, false},
	{VU_SET_OWNER, "SET_OWNER", h_set_owner, 0, 0, 0, false},
	{VU_RESET_OWNER, "RESET_OWNER", h_reset_owner, 0, 0, 0, false},
	{VU_SET_MEM_TABLE, "SET_MEM_TABLE", h_set_mem_table, 8, 8 + 32,
	 sizeof(struct vu_memory), false},
	{VU_SET_LOG_BASE, "SET_LOG_BASE", h_set_log_base, 1, sizeof(struct vu_log_desc),
	 sizeof(struct vu_log_desc), true},
	{VU_SET_LOG_FD, "SET_LOG_FD", h_set_log_fd, 1, 0, U64, false},
	{VU_SET_VRING_NUM, "SET_VRING_NUM", h_set_vring_num, 0, STATE, STATE, false},
	{VU_SET_VRING_ADDR, "SET_VRING_ADDR", h_set_vring_addr, 0,
	 sizeof(struct vu_addr), sizeof(struct vu_addr), false},
	{VU_SET_VRING_BASE, "SET_VRING_BASE", h_set_vring_base, 0, STATE, STATE, false},
	{VU_GET_VRING_BASE, "GET_VRING_BASE", h_get_vring_base, 0, STATE, STATE, true},
	{VU_SET_VRING_KICK, "SET_VRING_KICK", h_set_vring_kick, 1, U64, U64, false},
	{VU_SET_VRING_CALL, "SET_VRING_CALL", h_set_vring_call, 1, U64, U64, false},
	{VU_SET_VRING_ERR, "SET_VRING_ERR", h_set_vring_err, 1, U64, U64, false},
	{VU_GET_PROTOCOL_FEATURES, "GET_PROTOCOL_FEATURES", h_get_protocol_features, 0,
	 0, 0, true},
	{VU_SET_PROTOCOL_FEATURES, "SET_PROTOCOL_FEATURES", h_set_protocol_features, 0,
	 U64, U64, false},
	{VU_GET_QUEUE_NUM, "GET_QUEUE_NUM", h_get_queue_num, 0, 0, 0, true},
	{VU_SET_VRING_ENABLE, "SET_VRING_ENABLE", h_set_vring_enable, 0, STATE, STATE, false},
	{VU_SEND_RARP, "SEND_RARP", h_send_rarp, 0, U64, U64, false},
	{VU_SET_BACKEND_REQ_FD, "SET_BACKEND_REQ_FD", h_set_backend_req_fd, 1, 0, U64, false},
	{VU_IOTLB_MSG, "IOTLB_MSG", h_iotlb_msg, 0, 26, sizeof(struct vu_iotlb_msg), false},
	{VU_NET_SET_MTU, "NET_SET_MTU", h_net_set_mtu, 0, U64, U64, false},
	{VU_GET_MAX_MEM_SLOTS, "GET_MAX_MEM_SLOTS", h_get_max_mem_slots, 0, 0, 0, true},
	{VU_ADD_MEM_REG, "ADD_MEM_REG", h_add_mem_reg, 1, 8 + 32, 8 + 32, false},
	{VU_REM_MEM_REG, "REM_MEM_REG", h_rem_mem_reg, 1, 8 + 32, 8 + 32, false},
	{VU_RESET_DEVICE, "RESET_DEVICE", h_reset_device, 0, 0, 0, false},
	{VU_SET_STATUS, "SET_STATUS", h_set_status, 0, U64, U64, false},
	{VU_GET_STATUS, "GET_STATUS", h_get_status, 0, 0, 0, true},
};

static const struct handler *handler_of(uint32_t req)
{
	for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (handlers[i].req == req)
			return &handlers[i];
	return NULL;
}

static const char *req_name(uint32_t r)
{
	const struct handler *h = handler_of(r);
	return h ? h->name : "unknown request";
}

/* Requests that need a negotiated protocol feature. */
static bool allowed(const struct vu_dev *d, uint32_t req)
{
	switch (req) {
	case VU_GET_QUEUE_NUM:
		return (d->proto >> VU_PF_MQ) & 1;
	case VU_NET_SET_MTU:
		return (d->proto >> VU_PF_MTU) & 1;
	case VU_SET_BACKEND_REQ_FD:
		return (d->proto >> VU_PF_BACKEND_REQ) & 1;
	case VU_IOTLB_MSG:
		return (d->proto >> VU_PF_IOTLB) & 1;
	case VU_RESET_DEVICE:
		return (d->proto >> VU_PF_RESET_DEVICE) & 1;
	case VU_SET_LOG_BASE:
		return (d->proto >> VU_PF_LOG_SHMFD) & 1;
	case VU_SEND_RARP:
		return (d->proto >> VU_PF_RARP) & 1;
	case VU_GET_MAX_MEM_SLOTS:
	case VU_ADD_MEM_REG:
	case VU_REM_MEM_REG:
		return (d->proto >> VU_PF_MEM_SLOTS) & 1;
	case VU_SET_STATUS:
	case VU_GET_STATUS:
		return (d->proto >> VU_PF_STATUS) & 1;
	default: /* SET_VRING_ENABLE too: QEMU 7.2 sends it without acking
		  * VHOST_USER_F_PROTOCOL_FEATURES in SET_FEATURES */
		return true;
	}
}

static int send_reply(struct vu_dev *d, const struct vu_msg *m, const void *payload,
		      uint32_t size)
{
	uint8_t buf[sizeof(struct vu_hdr) + 64];
	struct vu_hdr h = {.request = m->hdr.request, .flags = VU_VERSION | VU_FLAG_REPLY,
			   .size = size};
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), payload, size);
	ssize_t w = send(d->conn_fd, buf, sizeof(h) + size, MSG_NOSIGNAL);
	return w == (ssize_t)(sizeof(h) + size) ? 0 : -EIO;
}

bool vu_dispatch(struct vu_dev *d, struct vu_msg *m)
{
	atomic_fetch_add(&d->msgs, 1);
	const struct handler *h = handler_of(m->hdr.request);
	int rc;
	if ((m->hdr.flags & 3) != VU_VERSION) {
		atomic_fetch_add(&d->bad_msgs, 1);
		hs_port_log(d->port, HS_LOG_ERROR, "message with protocol version %u",
			    m->hdr.flags & 3);
		return false;
	}
	if (!h || !allowed(d, m->hdr.request))
		rc = -ENOTSUP;
	else if (m->nfds > h->max_fds || m->hdr.size < h->min_size ||
		 m->hdr.size > h->max_size)
		rc = -EINVAL;
	else
		rc = h->fn(d, m);
	if (rc) {
		atomic_fetch_add(&d->bad_msgs, 1);
		hs_port_log(d->port, HS_LOG_WARN, "%s (%u, %u bytes, %u fds): %s",
			    req_name(m->hdr.request), m->hdr.request, m->hdr.size,
			    m->nfds, hs_strerror(rc));
	}
	if (h && h->reply) {
		if (rc) /* a request that needs its answer failed */
			return false;
		return send_reply(d, m, m->reply, m->reply_size) == 0;
	}
	/* IOTLB_MSG is answered whenever asked (QEMU waits for it), REPLY_ACK
	 * negotiated or not. */
	if ((m->hdr.flags & VU_FLAG_NEED_REPLY) &&
	    (((d->proto >> VU_PF_REPLY_ACK) & 1) || m->hdr.request == VU_IOTLB_MSG)) {
		uint64_t v = rc ? 1 : 0;
		return send_reply(d, m, &v, sizeof(v)) == 0;
	}
	return true;
}

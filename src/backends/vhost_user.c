/*
 * vhost_user.c - control plane of the "vhost-user" backend: the unix
 * socket (server, or client that reconnects), the message protocol of
 * QEMU's docs/interop/vhost-user.rst, the guest memory table and the setup
 * of each vring. The data path is in vhost_user_net.c.
 *
 * Security model: the front-end (and through it the guest) is untrusted.
 * Messages are read header first, so file descriptors received belong to
 * exactly one message; every request is checked against a table giving its
 * payload size bounds and how many fds it may carry; payloads larger than
 * the protocol allows end the connection (the stream cannot be trusted any
 * more); other bad requests get an error reply (REPLY_ACK) and a counter.
 * Memory regions must not overflow or overlap; vring addresses must lie
 * in mapped memory with their alignment; ring sizes are bounded.
 *
 * Threads: all of this runs on the switch's loop thread (watch and timer
 * callbacks) except open/start/stop/close (the hs_port_add/del caller).
 * Anything the data path reads is changed between hs_port_quiesce() and
 * hs_port_resume().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vu_dev.h"

/* ---- protocol constants ----------------------------------------------------------- */

enum {
	VU_GET_FEATURES = 1,
	VU_SET_FEATURES = 2,
	VU_SET_OWNER = 3,
	VU_RESET_OWNER = 4,
	VU_SET_MEM_TABLE = 5,
	VU_SET_VRING_NUM = 8,
	VU_SET_VRING_ADDR = 9,
	VU_SET_VRING_BASE = 10,
	VU_GET_VRING_BASE = 11,
	VU_SET_VRING_KICK = 12,
	VU_SET_VRING_CALL = 13,
	VU_SET_VRING_ERR = 14,
	VU_GET_PROTOCOL_FEATURES = 15,
	VU_SET_PROTOCOL_FEATURES = 16,
	VU_GET_QUEUE_NUM = 17,
	VU_SET_VRING_ENABLE = 18,
	VU_NET_SET_MTU = 20,
	VU_GET_MAX_MEM_SLOTS = 36,
	VU_ADD_MEM_REG = 37,
	VU_REM_MEM_REG = 38,
	VU_SET_STATUS = 39,
	VU_GET_STATUS = 40,
};

#define VU_VERSION 0x1
#define VU_FLAG_REPLY 0x4
#define VU_FLAG_NEED_REPLY 0x8
#define VU_F_PROTOCOL_FEATURES 30
#define VU_PF_MQ 0
#define VU_PF_REPLY_ACK 3
#define VU_PF_MTU 4
#define VU_PF_MEM_SLOTS 15
#define VU_PF_STATUS 16
#define VU_VRING_NOFD 0x100
#define VU_VRING_IDX 0xff
#define VU_MAX_PAYLOAD 4096
#define VU_MAX_MEM_SLOTS VU_MAX_REGIONS

struct vu_hdr {
	uint32_t request, flags, size;
};

struct vu_state {
	uint32_t index, num;
};

struct vu_addr {
	uint32_t index, flags;
	uint64_t desc, used, avail, log;
};

struct vu_region_desc {
	uint64_t gpa, size, uva, mmap_off;
};

struct vu_memory {
	uint32_t nregions, padding;
	struct vu_region_desc r[8];
};

struct vu_msg {
	struct vu_hdr hdr;
	uint8_t *payload;
	int *fds;
	unsigned nfds;
	uint8_t reply[64];
	uint32_t reply_size;
};

static const char *req_name(uint32_t r);

/* ---- small helpers --------------------------------------------------------------------- */

static bool has(const struct vu_dev *d, unsigned bit)
{
	return (d->features >> bit) & 1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

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

static void quiesce(struct vu_dev *d)
{
	hs_port_quiesce(d->port);
}

static void resume(struct vu_dev *d)
{
	hs_port_resume(d->port);
}

/* ---- memory table ------------------------------------------------------------------------ */

static void mem_free(struct vu_mem *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->n; i++)
		munmap(m->r[i].map, m->r[i].map_len);
	free(m);
}

/* Maps one region described by the front-end; takes ownership of fd. */
static int region_map(struct vu_dev *d, struct vu_region *out,
		      const struct vu_region_desc *rd, int fd)
{
	struct stat st;
	int rc = -EINVAL;
	if (fd < 0 || !rd->size || rd->mmap_off > UINT64_MAX - rd->size ||
	    rd->gpa > UINT64_MAX - rd->size || rd->uva > UINT64_MAX - rd->size ||
	    rd->size > (1ull << 46))
		goto out;
	if (fstat(fd, &st)) {
		rc = -errno;
		goto out;
	}
	uint64_t align = st.st_blksize > 0 ? (uint64_t)st.st_blksize : 4096;
	uint64_t len = rd->mmap_off + rd->size;
	len = (len + align - 1) / align * align;
	void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			 fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		hs_port_log(d->port, HS_LOG_ERROR, "mmap of a %llu-byte region: %s",
			    (unsigned long long)len, strerror(errno));
		goto out;
	}
	*out = (struct vu_region){.gpa = rd->gpa, .size = rd->size, .uva = rd->uva,
				  .mmap_off = rd->mmap_off,
				  .hva = (uint8_t *)map + rd->mmap_off, .map = map,
				  .map_len = len};
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static bool regions_overlap(const struct vu_mem *m)
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

static void vring_setup(struct vu_dev *d, unsigned i);
static void update_live(struct vu_dev *d);

/* Installs a new memory table: rings are re-translated against it. */
static void mem_install(struct vu_dev *d, struct vu_mem *m)
{
	quiesce(d);
	struct vu_mem *old = d->mem;
	d->mem = m;
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		vring_setup(d, i);
	update_live(d);
	resume(d);
	mem_free(old);
}

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
		int rc = region_map(d, &nm->r[i], &mt.r[i], take_fd(m, i));
		if (rc) {
			mem_free(nm);
			return rc;
		}
		nm->n = i + 1;
	}
	if (regions_overlap(nm)) {
		mem_free(nm);
		return -EINVAL;
	}
	mem_install(d, nm);
	return 0;
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
		if (r->gpa == rd.gpa && r->size == rd.size && r->uva == rd.uva &&
		    r->mmap_off == rd.mmap_off) {
			close_fd(&fd);
			if (r->refs == UINT32_MAX)
				return -EOVERFLOW;
			r->refs++;
			return 0;
		}
	}
	if (n >= VU_MAX_MEM_SLOTS) {
		close_fd(&fd);
		return -ENOSPC;
	}
	struct vu_mem *nm = calloc(1, sizeof(*nm));
	if (!nm) {
		close_fd(&fd);
		return -ENOMEM;
	}
	int rc = region_map(d, &nm->r[n], &rd, fd);
	if (rc) {
		free(nm);
		return rc;
	}
	/* The new table shares the existing mappings; only the old table's
	 * array is freed below. */
	if (d->mem)
		memcpy(nm->r, d->mem->r, n * sizeof(nm->r[0]));
	nm->n = n + 1;
	if (regions_overlap(nm)) {
		munmap(nm->r[n].map, nm->r[n].map_len);
		free(nm);
		return -EINVAL;
	}
	struct vu_mem *old = d->mem;
	quiesce(d);
	d->mem = nm;
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		vring_setup(d, i);
	update_live(d);
	resume(d);
	free(old);
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
		if (r->gpa == rd.gpa && r->uva == rd.uva && r->size == rd.size &&
		    r->refs > 0) {
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
		if (!found && r->gpa == rd.gpa && r->uva == rd.uva && r->size == rd.size) {
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
	struct vu_mem *old = d->mem;
	quiesce(d);
	d->mem = nm;
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		vring_setup(d, i);
	update_live(d);
	resume(d);
	free(old);
	munmap(gone.map, gone.map_len);
	return 0;
}

/* ---- vrings -------------------------------------------------------------------------------- */

/* Translates the vring's addresses and sets up its data-path view; a ring
 * that cannot be set up stays not live. */
static void vring_setup(struct vu_dev *d, unsigned i)
{
	struct vu_vring *vr = &d->vr[i];
	struct vq *vq = &vr->vq;
	vq->mem = d->mem;
	vq->size = (uint16_t)vr->num;
	vq->packed = has(d, HS_VIRTIO_F_RING_PACKED);
	vq->event_idx = has(d, HS_VIRTIO_F_EVENT_IDX);
	vq->indirect = has(d, HS_VIRTIO_F_INDIRECT_DESC);
	vq->desc = NULL;
	vq->pdesc = NULL;
	if (!d->mem || !vr->addr_set || !vr->num)
		return;
	uint64_t n = vr->num;
	if (!vq->packed) {
		vq->desc = (struct vring_desc *)vu_uva(d->mem, vr->desc_uva, 16 * n);
		vq->avail = (uint16_t *)vu_uva(d->mem, vr->avail_uva, 6 + 2 * n);
		vq->used = (uint16_t *)vu_uva(d->mem, vr->used_uva, 6 + 8 * n);
		if (!vq->desc || !vq->avail || !vq->used || ((uintptr_t)vq->desc & 15) ||
		    ((uintptr_t)vq->avail & 1) || ((uintptr_t)vq->used & 3)) {
			vq->desc = NULL;
			hs_port_log(d->port, HS_LOG_WARN,
				    "vring %u: addresses outside guest memory", i);
		}
	} else {
		vq->pdesc = (struct vring_packed_desc *)vu_uva(d->mem, vr->desc_uva, 16 * n);
		vq->drv_evt = (struct vring_packed_event *)vu_uva(d->mem, vr->avail_uva, 4);
		vq->dev_evt = (struct vring_packed_event *)vu_uva(d->mem, vr->used_uva, 4);
		if (!vq->pdesc || !vq->drv_evt || !vq->dev_evt ||
		    ((uintptr_t)vq->pdesc & 15) || ((uintptr_t)vq->drv_evt & 3) ||
		    ((uintptr_t)vq->dev_evt & 3)) {
			vq->pdesc = NULL;
			hs_port_log(d->port, HS_LOG_WARN,
				    "vring %u: addresses outside guest memory", i);
		}
	}
	/* Receive rings get reservation scratch sized from the ring. */
	if (!(i & 1)) {
		struct vu_rxq *r = &d->rxq[i / 2];
		if (r->chain_cap < n) {
			free(r->chain);
			free(r->segs);
			r->chain = calloc(n, sizeof(*r->chain));
			r->segs = calloc(4 * n + 64, sizeof(*r->segs));
			r->chain_cap = r->chain && r->segs ? (uint32_t)n : 0;
			r->seg_cap = r->chain_cap ? (uint32_t)(4 * n + 64) : 0;
		}
	}
}

static bool vring_ready(const struct vu_vring *vr)
{
	const struct vq *vq = &vr->vq;
	return vq->mem && (vq->desc || vq->pdesc) && vr->kick_set && vr->enabled &&
	       !vq->broken;
}

/* Recomputes which rings the data path may use, the link state and the
 * active queue pairs. Called while quiesced. */
static void update_live(struct vu_dev *d)
{
	uint16_t active = 0;
	bool prefix = true;
	for (unsigned q = 0; q < d->nqp; q++) {
		struct vu_vring *rx = &d->vr[2 * q], *tx = &d->vr[2 * q + 1];
		rx->live = vring_ready(rx);
		tx->live = vring_ready(tx);
		if (prefix && rx->live)
			active++;
		else
			prefix = false;
	}
	if (active != d->active_qp && active)
		hs_port_log(d->port, HS_LOG_INFO, "%u of %u queue pair(s) active", active,
			    d->nqp);
	d->active_qp = active;
	hs_port_set_active_queues(d->port, active ? active : 1);
	hs_port_set_link(d->port, active > 0);
}

static void vring_stop(struct vu_dev *d, unsigned i)
{
	struct vu_vring *vr = &d->vr[i];
	hs_port_set_queue_fd(d->port, (uint16_t)(i / 2), (i & 1) ? HS_EV_KICK : HS_EV_POSTED,
			     -1);
	close_fd(&vr->kickfd);
	vr->kick_set = false;
	vr->live = false;
}

static void vring_reset(struct vu_dev *d, unsigned i)
{
	struct vu_vring *vr = &d->vr[i];
	vring_stop(d, i);
	close_fd(&vr->callfd);
	close_fd(&vr->errfd);
	vr->num = 0;
	vr->addr_set = false;
	vr->enabled = false;
	vr->kicks_off = false;
	vr->base = 0;
	vq_reset(&vr->vq);
}

/* The data path found a ring broken (a guest bug or attack). */
void vu_ring_broken(struct vu_dev *d, struct vu_vring *vr)
{
	atomic_fetch_add(&d->broken_rings, 1);
	hs_port_log(d->port, HS_LOG_ERROR, "vring %u stopped: %s; link down until reset",
		    (unsigned)(vr - d->vr), vr->vq.broken ? vr->vq.broken : "?");
	vr->live = false;
	hs_port_set_link(d->port, false);
	if (vr->errfd >= 0) {
		uint64_t one = 1;
		if (write(vr->errfd, &one, sizeof(one)) < 0) {
			/* nobody listens: the log line stays */
		}
	}
}

static int vring_index(const struct vu_dev *d, uint32_t idx)
{
	return idx < 2u * d->nqp ? (int)idx : -1;
}

static int h_set_vring_num(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0 || !st.num || st.num > VQ_MAX_SIZE)
		return -EINVAL;
	if (!has(d, HS_VIRTIO_F_RING_PACKED) && (st.num & (st.num - 1)))
		return -EINVAL; /* split rings have power-of-two sizes */
	quiesce(d);
	d->vr[i].num = st.num;
	vring_setup(d, (unsigned)i);
	update_live(d);
	resume(d);
	return 0;
}

static int h_set_vring_addr(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_addr a;
	memcpy(&a, m->payload, sizeof(a));
	int i = vring_index(d, a.index);
	if (i < 0 || (a.flags & 1)) /* VHOST_VRING_F_LOG: logging not offered */
		return -EINVAL;
	quiesce(d);
	struct vu_vring *vr = &d->vr[i];
	vr->desc_uva = a.desc;
	vr->used_uva = a.used;
	vr->avail_uva = a.avail;
	vr->addr_set = true;
	vring_setup(d, (unsigned)i);
	update_live(d);
	resume(d);
	return (vr->vq.desc || vr->vq.pdesc || !d->mem) ? 0 : -EINVAL;
}

static int h_set_vring_base(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0)
		return -EINVAL;
	struct vu_vring *vr = &d->vr[i];
	quiesce(d);
	vr->base = st.num;
	struct vq *vq = &vr->vq;
	if (has(d, HS_VIRTIO_F_RING_PACKED)) {
		uint16_t slot = (uint16_t)(st.num & 0x7fff);
		vq_set_base(vq, vr->num && slot >= vr->num ? 0 : slot, (st.num >> 15) & 1);
	} else {
		vq_set_base(vq, (uint16_t)st.num, true);
	}
	vq->pending = 0;
	vq->signalled_valid = false;
	vq->broken = NULL;
	update_live(d);
	resume(d);
	return 0;
}

static int h_get_vring_base(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0)
		return -EINVAL;
	struct vu_vring *vr = &d->vr[i];
	quiesce(d);
	vring_stop(d, (unsigned)i); /* GET_VRING_BASE stops the ring */
	struct vq *vq = &vr->vq;
	st.num = has(d, HS_VIRTIO_F_RING_PACKED)
			 ? (uint32_t)(vq->last_avail | (vq->avail_wrap ? 0x8000 : 0))
			 : vq->last_avail;
	vq->broken = NULL;
	update_live(d);
	resume(d);
	memcpy(m->reply, &st, sizeof(st));
	m->reply_size = sizeof(st);
	return 0;
}

static int vring_fd_msg(struct vu_dev *d, struct vu_msg *m, int *idx, int *fd)
{
	uint64_t v = u64_of(m);
	*idx = vring_index(d, (uint32_t)(v & VU_VRING_IDX));
	*fd = (v & VU_VRING_NOFD) ? -1 : take_fd(m, 0);
	if (*idx < 0 || (v & ~(uint64_t)(VU_VRING_IDX | VU_VRING_NOFD)) ||
	    (!(v & VU_VRING_NOFD) && *fd < 0)) {
		close_fd(fd);
		return -EINVAL;
	}
	return 0;
}

static int h_set_vring_kick(struct vu_dev *d, struct vu_msg *m)
{
	int i, fd;
	if (vring_fd_msg(d, m, &i, &fd))
		return -EINVAL;
	if (fd < 0) {
		hs_port_log(d->port, HS_LOG_WARN, "vring %d: polling mode (no kick fd) "
			    "is not supported", i);
		return -ENOTSUP;
	}
	struct vu_vring *vr = &d->vr[i];
	quiesce(d);
	vring_stop(d, (unsigned)i);
	vr->kickfd = fd;
	vr->kick_set = true;
	/* Without protocol features a ring is enabled as soon as it starts. */
	if (!has(d, VU_F_PROTOCOL_FEATURES))
		vr->enabled = true;
	int rc = hs_port_set_queue_fd(d->port, (uint16_t)(i / 2),
				      (i & 1) ? HS_EV_KICK : HS_EV_POSTED, fd);
	update_live(d);
	resume(d);
	/* A kick sent before the fd was watched is not lost: an eventfd that
	 * is already readable is reported as soon as it joins the epoll set. */
	return rc;
}

static int h_set_vring_call(struct vu_dev *d, struct vu_msg *m)
{
	int i, fd;
	if (vring_fd_msg(d, m, &i, &fd))
		return -EINVAL;
	quiesce(d);
	close_fd(&d->vr[i].callfd);
	d->vr[i].callfd = fd;
	resume(d);
	return 0;
}

static int h_set_vring_err(struct vu_dev *d, struct vu_msg *m)
{
	int i, fd;
	if (vring_fd_msg(d, m, &i, &fd))
		return -EINVAL;
	close_fd(&d->vr[i].errfd);
	d->vr[i].errfd = fd;
	return 0;
}

static int h_set_vring_enable(struct vu_dev *d, struct vu_msg *m)
{
	struct vu_state st;
	memcpy(&st, m->payload, sizeof(st));
	int i = vring_index(d, st.index);
	if (i < 0 || st.num > 1)
		return -EINVAL;
	quiesce(d);
	d->vr[i].enabled = st.num;
	update_live(d);
	resume(d);
	return 0;
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
	quiesce(d);
	d->features = f;
	d->mrg = has(d, HS_VIRTIO_NET_F_MRG_RXBUF);
	d->hdr_len = (d->mrg || has(d, HS_VIRTIO_F_VERSION_1)) ? HSB_VNET_HDR_LEN : 10;
	d->tx_caps = caps_of(d, tx_caps, sizeof(tx_caps) / sizeof(tx_caps[0]));
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		vring_setup(d, i);
	update_live(d);
	hs_port_set_caps(d->port, caps_of(d, rx_caps, sizeof(rx_caps) / sizeof(rx_caps[0])));
	atomic_store(&d->acked, f);
	resume(d);
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

static int h_net_set_mtu(struct vu_dev *d, struct vu_msg *m)
{
	uint64_t mtu = u64_of(m);
	(void)d;
	return mtu >= 68 && mtu <= 65535 ? 0 : -EINVAL;
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
	{VU_NET_SET_MTU, "NET_SET_MTU", h_net_set_mtu, 0, U64, U64, false},
	{VU_GET_MAX_MEM_SLOTS, "GET_MAX_MEM_SLOTS", h_get_max_mem_slots, 0, 0, 0, true},
	{VU_ADD_MEM_REG, "ADD_MEM_REG", h_add_mem_reg, 1, 8 + 32, 8 + 32, false},
	{VU_REM_MEM_REG, "REM_MEM_REG", h_rem_mem_reg, 1, 8 + 32, 8 + 32, false},
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

/* ---- connection --------------------------------------------------------------------------- */

static void disconnect(struct vu_dev *d, const char *why);

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

/* Handles one complete message. Returns false if the connection must end. */
static bool dispatch(struct vu_dev *d, struct vu_msg *m)
{
	atomic_fetch_add(&d->msgs, 1);
	const struct handler *h = handler_of(m->hdr.request);
	int rc;
	if ((m->hdr.flags & 3) != VU_VERSION) {
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
	if ((m->hdr.flags & VU_FLAG_NEED_REPLY) && ((d->proto >> VU_PF_REPLY_ACK) & 1)) {
		uint64_t v = rc ? 1 : 0;
		return send_reply(d, m, &v, sizeof(v)) == 0;
	}
	return true;
}

static void drop_fds(struct vu_dev *d)
{
	for (unsigned i = 0; i < d->nrfds; i++)
		if (d->rfds[i] >= 0)
			close(d->rfds[i]);
	d->nrfds = 0;
}

/* Reads what the socket has, one message at a time (header, then exactly
 * its payload), and dispatches every complete one. */
static void conn_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct vu_dev *d = arg;
	(void)w;
	(void)events;
	for (;;) {
		size_t want = sizeof(struct vu_hdr);
		if (d->rlen >= sizeof(struct vu_hdr)) {
			struct vu_hdr h;
			memcpy(&h, d->rbuf, sizeof(h));
			if (h.size > VU_MAX_PAYLOAD) {
				disconnect(d, "oversized message");
				return;
			}
			want += h.size;
		}
		if (d->rlen < want) {
			union {
				char buf[CMSG_SPACE(8 * sizeof(int))];
				struct cmsghdr align;
			} c;
			struct iovec iov = {.iov_base = d->rbuf + d->rlen,
					    .iov_len = want - d->rlen};
			struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
					    .msg_control = c.buf,
					    .msg_controllen = sizeof(c.buf)};
			ssize_t r = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
			if (r == 0) {
				disconnect(d, "front-end closed the connection");
				return;
			}
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return;
				if (errno == EINTR)
					continue;
				disconnect(d, strerror(errno));
				return;
			}
			for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
			     cm = CMSG_NXTHDR(&mh, cm)) {
				if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
					continue;
				unsigned n = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				for (unsigned k = 0; k < n; k++) {
					int nfd;
					memcpy(&nfd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
					if (d->nrfds < 8)
						d->rfds[d->nrfds++] = nfd;
					else
						close(nfd); /* more than any message carries */
				}
			}
			if (mh.msg_flags & MSG_CTRUNC) {
				disconnect(d, "too many file descriptors in one message");
				return;
			}
			d->rlen += (size_t)r;
			continue;
		}
		struct vu_msg m = {.payload = d->rbuf + sizeof(struct vu_hdr),
				   .fds = d->rfds, .nfds = d->nrfds};
		memcpy(&m.hdr, d->rbuf, sizeof(m.hdr));
		bool ok = dispatch(d, &m);
		drop_fds(d); /* whatever the handler did not take */
		d->rlen = 0;
		if (!ok) {
			disconnect(d, "request failed");
			return;
		}
		if (d->conn_fd < 0)
			return;
	}
}

static uint64_t offered_features(const struct vu_dev *d)
{
	uint64_t f = (1ull << HS_VIRTIO_F_VERSION_1) | (1ull << VU_F_PROTOCOL_FEATURES) |
		     (1ull << HS_VIRTIO_F_RING_PACKED) | (1ull << HS_VIRTIO_F_EVENT_IDX) |
		     (1ull << HS_VIRTIO_F_INDIRECT_DESC) |
		     (1ull << HS_VIRTIO_NET_F_MRG_RXBUF) | (1ull << HS_VIRTIO_NET_F_CSUM) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_CSUM) |
		     (1ull << HS_VIRTIO_NET_F_HOST_TSO4) | (1ull << HS_VIRTIO_NET_F_HOST_TSO6) |
		     (1ull << HS_VIRTIO_NET_F_HOST_ECN) | (1ull << HS_VIRTIO_NET_F_HOST_USO) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_TSO4) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_TSO6) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_ECN) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_USO4) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_USO6) |
		     (1ull << HS_VIRTIO_NET_F_STATUS) | (1ull << HS_VIRTIO_NET_F_CTRL_VQ);
	if (d->nqp > 1)
		f |= 1ull << HS_VIRTIO_NET_F_MQ;
	if (d->cfg.mtu)
		f |= 1ull << HS_VIRTIO_NET_F_MTU;
	return f & ~d->cfg.features_off;
}

/* Back to the state of a device nobody configured (keeps the connection). */
static void device_reset(struct vu_dev *d)
{
	quiesce(d);
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		vring_reset(d, i);
	mem_free(d->mem);
	d->mem = NULL;
	d->features = d->proto = 0;
	d->owner = false;
	d->status = 0;
	d->hdr_len = 12;
	d->mrg = false;
	atomic_store(&d->acked, 0);
	hs_port_set_caps(d->port, 0);
	update_live(d);
	resume(d);
}

static void accept_cb(hs_watch_t *w, int fd, unsigned events, void *arg);
static int try_connect(struct vu_dev *d);

static void retry_cb(hs_timer_t *t, void *arg)
{
	struct vu_dev *d = arg;
	(void)t;
	if (d->conn_fd < 0 && try_connect(d) == 0) {
		hs_timer_del(d->retry_t);
		d->retry_t = NULL;
	}
}

static void schedule_retry(struct vu_dev *d)
{
	if (d->retry_t)
		return;
	uint32_t ms = d->cfg.reconnect_ms ? d->cfg.reconnect_ms : 500;
	hs_timer_add(hs_port_switch(d->port), ms, ms, retry_cb, d, &d->retry_t);
}

static void disconnect(struct vu_dev *d, const char *why)
{
	if (d->conn_fd < 0)
		return;
	hs_port_log(d->port, HS_LOG_INFO, "front-end disconnected: %s", why);
	atomic_fetch_add(&d->disconnects, 1);
	hs_watch_del(d->conn_w);
	d->conn_w = NULL;
	close_fd(&d->conn_fd);
	drop_fds(d);
	d->rlen = 0;
	device_reset(d);
	atomic_store(&d->connected, false);
	if (d->cfg.flags & HS_VU_CLIENT)
		schedule_retry(d);
}

static int adopt(struct vu_dev *d, int fd)
{
	int rc = hs_watch_add(hs_port_switch(d->port), fd, HS_WATCH_READ, conn_cb, d,
			      &d->conn_w);
	if (rc) {
		close(fd);
		return rc;
	}
	d->conn_fd = fd;
	atomic_store(&d->connected, true);
	atomic_fetch_add(&d->connects, 1);
	hs_port_log(d->port, HS_LOG_INFO, "front-end connected on %s", d->path);
	return 0;
}

static void accept_cb(hs_watch_t *w, int lfd, unsigned events, void *arg)
{
	struct vu_dev *d = arg;
	(void)w;
	(void)events;
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (d->conn_fd >= 0) {
		hs_port_log(d->port, HS_LOG_WARN,
			    "second front-end on %s refused: one is connected", d->path);
		close(fd);
		return;
	}
	adopt(d, fd);
}

static int try_connect(struct vu_dev *d)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, d->path, strlen(d->path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	return adopt(d, fd);
}

static int start_server(struct vu_dev *d)
{
	struct stat st;
	if (!lstat(d->path, &st)) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST; /* never remove anything but a socket */
		unlink(d->path); /* a stale socket of an earlier run */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, d->path, strlen(d->path));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 4)) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	d->created_socket = true;
	d->listen_fd = fd;
	return hs_watch_add(hs_port_switch(d->port), fd, HS_WATCH_READ, accept_cb, d,
			    &d->listen_w);
}

/* ---- backend lifecycle -------------------------------------------------------------------- */

static void vu_close(void *priv)
{
	struct vu_dev *d = priv;
	if (!d)
		return;
	for (unsigned i = 0; i < 2u * d->nqp; i++) {
		close_fd(&d->vr[i].kickfd);
		close_fd(&d->vr[i].callfd);
		close_fd(&d->vr[i].errfd);
	}
	mem_free(d->mem);
	if (d->rxq)
		for (unsigned q = 0; q < d->nqp; q++) {
			free(d->rxq[q].chain);
			free(d->rxq[q].segs);
		}
	free(d->rxq);
	free(d->txq);
	free(d);
}

static int vu_open(hs_port_t *port, const void *config, size_t size, void **priv,
		   struct hs_port_info *info)
{
	struct hs_vhost_user_config c;
	if (!config || size != sizeof(c))
		return -EINVAL;
	memcpy(&c, config, sizeof(c));
	if (!c.path || !c.path[0] || strlen(c.path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -EINVAL;
	if (!c.queue_pairs)
		c.queue_pairs = 1;
	if (c.queue_pairs > VU_MAX_QP || (c.flags & ~(uint32_t)HS_VU_CLIENT) ||
	    (c.mtu && c.mtu < 68))
		return -EINVAL;
	struct vu_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->port = port;
	d->cfg = c;
	snprintf(d->path, sizeof(d->path), "%s", c.path);
	d->cfg.path = d->path;
	d->nqp = c.queue_pairs;
	d->listen_fd = d->conn_fd = -1;
	d->hdr_len = 12;
	for (unsigned i = 0; i < 2u * VU_MAX_QP; i++) {
		d->vr[i].kickfd = d->vr[i].callfd = d->vr[i].errfd = -1;
		vq_reset(&d->vr[i].vq);
	}
	d->txq = calloc(d->nqp, sizeof(*d->txq));
	d->rxq = calloc(d->nqp, sizeof(*d->rxq));
	if (!d->txq || !d->rxq) {
		vu_close(d);
		return -ENOMEM;
	}
	d->offered = offered_features(d);
	d->proto_offered = (1ull << VU_PF_MQ) | (1ull << VU_PF_REPLY_ACK) |
			   (1ull << VU_PF_MEM_SLOTS) | (1ull << VU_PF_STATUS) |
			   (d->cfg.mtu ? 1ull << VU_PF_MTU : 0);
	*priv = d;
	info->n_queues = d->nqp;
	info->caps = 0;
	info->link_up = false;
	return 0;
}

static int vu_start(void *priv)
{
	struct vu_dev *d = priv;
	if (!(d->cfg.flags & HS_VU_CLIENT)) {
		int rc = start_server(d);
		if (rc)
			hs_port_log(d->port, HS_LOG_ERROR, "cannot listen on %s: %s", d->path,
				    hs_strerror(rc));
		return rc;
	}
	if (try_connect(d))
		schedule_retry(d);
	return 0;
}

static void vu_stop(void *priv)
{
	struct vu_dev *d = priv;
	hs_timer_del(d->retry_t);
	d->retry_t = NULL;
	hs_watch_del(d->listen_w);
	d->listen_w = NULL;
	hs_watch_del(d->conn_w);
	d->conn_w = NULL;
	close_fd(&d->conn_fd);
	close_fd(&d->listen_fd);
	drop_fds(d);
	if (d->created_socket)
		unlink(d->path);
	atomic_store(&d->connected, false);
}

static void vu_counters(void *priv, void (*cb)(void *arg, const char *name, uint64_t v),
			void *arg)
{
	struct vu_dev *d = priv;
	cb(arg, "connected", atomic_load(&d->connected));
	cb(arg, "connects", atomic_load(&d->connects));
	cb(arg, "disconnects", atomic_load(&d->disconnects));
	cb(arg, "messages", atomic_load(&d->msgs));
	cb(arg, "bad_messages", atomic_load(&d->bad_msgs));
	cb(arg, "broken_rings", atomic_load(&d->broken_rings));
}

const struct hs_backend_ops hs__vhost_user_ops = {
	.name = HS_VHOST_USER_BACKEND,
	.abi = HS_BACKEND_ABI,
	.open = vu_open,
	.start = vu_start,
	.stop = vu_stop,
	.close = vu_close,
	.recv_burst = vu_recv_burst,
	.recv_done = vu_recv_done,
	.send_reserve = vu_send_reserve,
	.send_commit = vu_send_commit,
	.notify = vu_notify,
	.set_notify = vu_set_notify,
	.counters = vu_counters,
};

int hs_vhost_user_connected(hs_port_t *port)
{
	struct vu_dev *d = hs_port_backend_priv(port, &hs__vhost_user_ops);
	return d ? atomic_load(&d->connected) : -EINVAL;
}

uint64_t hs_vhost_user_features(hs_port_t *port)
{
	struct vu_dev *d = hs_port_backend_priv(port, &hs__vhost_user_ops);
	return d ? atomic_load(&d->acked) : 0;
}

/*
 * vu_driver.h - an in-test vhost-user front-end and virtio-net driver:
 * what QEMU and a guest's virtio-net driver do together, in one process,
 * against the switch's vhost-user port.
 *
 * It speaks the protocol over the unix socket (features, memory table from
 * a memfd, vring setup with eventfds), drives split or packed rings as a
 * driver (posting receive buffers, sending frames with a virtio-net header,
 * reaping used buffers), and can corrupt rings and messages on purpose.
 */
#ifndef HS_VU_DRIVER_H
#define HS_VU_DRIVER_H


#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define VUD_MEM (16u << 20)
#define VUD_GPA 0x40000000ull
#define VUD_QSIZE 256
#define VUD_BUF 2048

enum {
	VUD_GET_FEATURES = 1, VUD_SET_FEATURES = 2, VUD_SET_OWNER = 3,
	VUD_SET_MEM_TABLE = 5, VUD_SET_VRING_NUM = 8, VUD_SET_VRING_ADDR = 9,
	VUD_SET_VRING_BASE = 10, VUD_GET_VRING_BASE = 11, VUD_SET_VRING_KICK = 12,
	VUD_SET_VRING_CALL = 13, VUD_SET_VRING_ERR = 14,
	VUD_GET_PROTOCOL_FEATURES = 15, VUD_SET_PROTOCOL_FEATURES = 16,
	VUD_GET_QUEUE_NUM = 17, VUD_SET_VRING_ENABLE = 18, VUD_ADD_MEM_REG = 37,
	VUD_REM_MEM_REG = 38,
};

struct vud_net_hdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
};

struct vud_ring {
	bool rx;
	uint16_t size;
	/* split */
	struct { uint64_t addr; uint32_t len; uint16_t flags, next; } *desc;
	uint16_t *avail, *used;
	/* packed */
	struct { uint64_t addr; uint32_t len; uint16_t id, flags; } *pdesc;
	uint16_t *drv_evt, *dev_evt;
	uint16_t avail_idx, used_idx; /* driver side */
	bool avail_wrap, used_wrap;
	uint16_t free_head, nfree;
	uint16_t next_free[VUD_QSIZE];
	uint16_t chain_len[VUD_QSIZE]; /* by head (split) / buffer id (packed) */
	uint64_t buf_gpa[VUD_QSIZE];   /* buffer of each head/id */
	uint16_t id_free[VUD_QSIZE], n_id_free;
	bool out[VUD_QSIZE];           /* head (split) / id (packed) with the device */
	int kick, call;
	unsigned kicks;                /* kicks the driver made */
};

/* A used entry for a buffer the driver does not have out: Linux's
 * virtio_ring calls the ring broken ("id N is not a head!"); so does the
 * test. */
static inline void vud_bad_used(const struct vud_ring *r, unsigned id)
{
	fprintf(stderr, "vu_driver: %s ring: used id %u is not a head!\n",
		r->rx ? "receive" : "transmit", id);
	abort();
}

struct vud {
	int sock, memfd;
	uint8_t *mem;
	size_t used_mem;
	uint64_t features, proto;
	uint64_t proto_extra; /* protocol features to ask for besides MQ,
				 REPLY_ACK and CONFIGURE_MEM_SLOTS */
	bool packed;
	uint16_t hdr_len;
	unsigned nqp;
	unsigned mem_adds; /* >0: memory by ADD_MEM_REG, sent this many times
			    * (as a multiqueue QEMU does, once per device) */
	unsigned mem_split; /* >1: SET_MEM_TABLE gives the memory as that many
			     * regions of equal size (at most 8), the last
			     * first (as DPDK gives one per memory segment) */
	bool iommu;        /* VIRTIO_F_IOMMU_PLATFORM negotiated: ring addresses
			    * are IOVAs (the driver's GPAs, which the test maps
			    * through IOTLB updates) */
	struct vud_ring r[8];
};

static inline uint64_t vud_gpa(const struct vud *v, const void *p)
{
	return VUD_GPA + (uint64_t)((const uint8_t *)p - v->mem);
}

static inline uint8_t *vud_hva(const struct vud *v, uint64_t gpa)
{
	return v->mem + (gpa - VUD_GPA);
}

static inline void *vud_alloc(struct vud *v, size_t n, size_t align)
{
	v->used_mem = (v->used_mem + align - 1) & ~(align - 1);
	void *p = v->mem + v->used_mem;
	v->used_mem += n;
	return v->used_mem <= VUD_MEM ? p : NULL;
}

/* ---- messages ------------------------------------------------------------------- */

static inline int vud_send_msg(struct vud *v, uint32_t req, uint32_t flags,
			       const void *payload, uint32_t size, const int *fds,
			       unsigned nfds)
{
	uint8_t buf[12 + 4096];
	uint32_t h[3] = {req, 0x1 | flags, size};
	memcpy(buf, h, 12);
	if (size)
		memcpy(buf + 12, payload, size);
	struct iovec iov = {.iov_base = buf, .iov_len = 12 + size};
	union {
		char c[CMSG_SPACE(16 * sizeof(int))];
		struct cmsghdr align;
	} cb;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (nfds) {
		mh.msg_control = cb.c;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	return sendmsg(v->sock, &mh, MSG_NOSIGNAL) == (ssize_t)(12 + size) ? 0 : -errno;
}

/* Reads one reply; returns its payload size or a negative errno. */
static inline int vud_recv_reply(struct vud *v, uint32_t req, void *out, uint32_t max)
{
	struct pollfd pf = {.fd = v->sock, .events = POLLIN};
	if (poll(&pf, 1, 5000) != 1)
		return -ETIMEDOUT;
	uint32_t h[3];
	if (recv(v->sock, h, 12, MSG_WAITALL) != 12)
		return -EPIPE;
	if (h[0] != req || !(h[1] & 0x4) || h[2] > max)
		return -EPROTO;
	if (h[2] && recv(v->sock, out, h[2], MSG_WAITALL) != (ssize_t)h[2])
		return -EPIPE;
	return (int)h[2];
}

static inline int vud_get_u64(struct vud *v, uint32_t req, uint64_t *val)
{
	int rc = vud_send_msg(v, req, 0, NULL, 0, NULL, 0);
	if (rc)
		return rc;
	rc = vud_recv_reply(v, req, val, 8);
	return rc == 8 ? 0 : (rc < 0 ? rc : -EPROTO);
}

/* Sends a request that returns nothing, asking for REPLY_ACK; returns the
 * back-end's verdict (0 ok) or a negative errno. */
static inline int vud_call(struct vud *v, uint32_t req, const void *payload,
			   uint32_t size, const int *fds, unsigned nfds)
{
	bool ack = (v->proto >> 3) & 1;
	int rc = vud_send_msg(v, req, ack ? 0x8 : 0, payload, size, fds, nfds);
	if (rc || !ack)
		return rc;
	uint64_t verdict;
	rc = vud_recv_reply(v, req, &verdict, 8);
	if (rc != 8)
		return rc < 0 ? rc : -EPROTO;
	return verdict ? -EIO : 0;
}

static inline int vud_u64(struct vud *v, uint32_t req, uint64_t val)
{
	return vud_call(v, req, &val, 8, NULL, 0);
}

static inline int vud_state(struct vud *v, uint32_t req, uint32_t index, uint32_t num)
{
	uint32_t st[2] = {index, num};
	return vud_call(v, req, st, 8, NULL, 0);
}

/* ---- setup ---------------------------------------------------------------------- */

static inline int vud_connect(struct vud *v, const char *path)
{
	memset(v, 0, sizeof(*v));
	v->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	for (int tries = 0; tries < 200; tries++) {
		if (!connect(v->sock, (struct sockaddr *)&sa, sizeof(sa)))
			break;
		if (tries == 199)
			return -errno;
		usleep(10000);
	}
	v->memfd = memfd_create("vud-guest", MFD_CLOEXEC);
	if (v->memfd < 0 || ftruncate(v->memfd, VUD_MEM))
		return -errno;
	v->mem = mmap(NULL, VUD_MEM, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
	return v->mem == MAP_FAILED ? -errno : 0;
}

/* ADD_MEM_REG / REM_MEM_REG of the driver's one region. */
static inline int vud_mem_reg(struct vud *v, uint32_t req)
{
	uint64_t reg[5] = {0, VUD_GPA, VUD_MEM, (uint64_t)(uintptr_t)v->mem, 0};
	return vud_call(v, req, reg, sizeof(reg), &v->memfd, 1);
}

static inline int vud_mem_table(struct vud *v)
{
	if (v->mem_adds && ((v->proto >> 15) & 1)) {
		for (unsigned i = 0; i < v->mem_adds; i++) {
			int rc = vud_mem_reg(v, VUD_ADD_MEM_REG);
			if (rc)
				return rc;
		}
		return 0;
	}
	uint64_t mt[1 + 4 * 8] = {0};
	int fds[8];
	uint32_t n = v->mem_split > 1 ? (v->mem_split < 8 ? v->mem_split : 8) : 1;
	uint64_t sz = VUD_MEM / n;
	memcpy(mt, &n, 4);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = (n - 1 - i) * sz;
		mt[1 + 4 * i] = VUD_GPA + off;
		mt[2 + 4 * i] = sz;
		mt[3 + 4 * i] = (uint64_t)(uintptr_t)v->mem + off;
		mt[4 + 4 * i] = off;
		fds[i] = v->memfd;
	}
	return vud_call(v, VUD_SET_MEM_TABLE, mt, 8 + 32 * n, fds, n);
}

static inline void vud_ring_alloc(struct vud *v, struct vud_ring *r, bool rx)
{
	r->rx = rx;
	r->size = VUD_QSIZE;
	r->avail_wrap = r->used_wrap = true;
	if (!v->packed) {
		r->desc = vud_alloc(v, 16 * VUD_QSIZE, 16);
		r->avail = vud_alloc(v, 6 + 2 * VUD_QSIZE, 2);
		r->used = vud_alloc(v, 6 + 8 * VUD_QSIZE, 4);
		for (uint16_t i = 0; i < VUD_QSIZE; i++)
			r->next_free[i] = (uint16_t)(i + 1);
		r->free_head = 0;
		r->nfree = VUD_QSIZE;
	} else {
		r->pdesc = vud_alloc(v, 16 * VUD_QSIZE, 16);
		r->drv_evt = vud_alloc(v, 4, 4);
		r->dev_evt = vud_alloc(v, 4, 4);
		for (uint16_t i = 0; i < VUD_QSIZE; i++)
			r->id_free[i] = (uint16_t)(VUD_QSIZE - 1 - i);
		r->n_id_free = VUD_QSIZE;
		r->nfree = VUD_QSIZE;
	}
	r->kick = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

static inline int vud_ring_addr(struct vud *v, unsigned i)
{
	struct vud_ring *r = &v->r[i];
	uint64_t addr[5] = {0};
	uint32_t ix[2] = {i, 0};
	memcpy(addr, ix, 8);
	if (!r->pdesc) {
		addr[1] = (uint64_t)(uintptr_t)r->desc;
		addr[2] = (uint64_t)(uintptr_t)r->used;
		addr[3] = (uint64_t)(uintptr_t)r->avail;
	} else {
		addr[1] = (uint64_t)(uintptr_t)r->pdesc;
		addr[2] = (uint64_t)(uintptr_t)r->dev_evt;
		addr[3] = (uint64_t)(uintptr_t)r->drv_evt;
	}
	if (v->iommu) /* behind the IOMMU the device sees IOVAs: our GPAs */
		for (int k = 1; k <= 3; k++)
			addr[k] = vud_gpa(v, (void *)(uintptr_t)addr[k]);
	return vud_call(v, VUD_SET_VRING_ADDR, addr, 40, NULL, 0);
}

static inline int vud_ring_fd(struct vud *v, uint32_t req, unsigned i, int fd)
{
	uint64_t ki = i;
	return vud_call(v, req, &ki, 8, &fd, 1);
}

static inline int vud_ring_setup(struct vud *v, unsigned i)
{
	struct vud_ring *r = &v->r[i];
	int rc = vud_state(v, VUD_SET_VRING_NUM, i, r->size);
	if (!rc)
		rc = vud_state(v, VUD_SET_VRING_BASE, i, v->packed ? 0x8000 : 0);
	if (!rc)
		rc = vud_ring_addr(v, i);
	if (!rc)
		rc = vud_ring_fd(v, VUD_SET_VRING_KICK, i, r->kick);
	if (!rc)
		rc = vud_ring_fd(v, VUD_SET_VRING_CALL, i, r->call);
	if (!rc && (v->features >> 30) & 1)
		rc = vud_state(v, VUD_SET_VRING_ENABLE, i, 1);
	return rc;
}

/* ---- single setup steps, for tests that choose the order ------------------------- */

/* GET_FEATURES, protocol features (MQ, REPLY_ACK, CONFIGURE_MEM_SLOTS),
 * SET_OWNER; features are only chosen here (v->features), not sent. */
static inline int vud_hello(struct vud *v, uint64_t want)
{
	uint64_t offered;
	int rc = vud_get_u64(v, VUD_GET_FEATURES, &offered);
	if (rc)
		return rc;
	v->features = offered & want;
	v->packed = (v->features >> 34) & 1;
	v->hdr_len = ((v->features >> 32) & 1) || ((v->features >> 15) & 1) ? 12 : 10;
	uint64_t pf;
	if ((rc = vud_get_u64(v, VUD_GET_PROTOCOL_FEATURES, &pf)))
		return rc;
	uint64_t mine = (1ull << 0) | (1ull << 3) | (1ull << 15) | v->proto_extra;
	if ((rc = vud_send_msg(v, VUD_SET_PROTOCOL_FEATURES, 0, &(uint64_t){pf & mine}, 8,
			       NULL, 0)))
		return rc;
	v->proto = pf & mine;
	return vud_call(v, VUD_SET_OWNER, NULL, 0, NULL, 0);
}


/* Negotiates `want` (masked by what the back-end offers), sets up memory
 * and nqp queue pairs. */
static inline int vud_start(struct vud *v, uint64_t want, unsigned nqp)
{
	uint64_t offered;
	int rc = vud_get_u64(v, VUD_GET_FEATURES, &offered);
	if (rc)
		return rc;
	v->features = offered & want;
	v->packed = (v->features >> 34) & 1;
	v->iommu = (v->features >> 33) & 1;
	v->hdr_len = ((v->features >> 32) & 1) || ((v->features >> 15) & 1) ? 12 : 10;
	if ((v->features >> 30) & 1) {
		uint64_t pf;
		if ((rc = vud_get_u64(v, VUD_GET_PROTOCOL_FEATURES, &pf)))
			return rc;
		uint64_t mine = (1ull << 0) | (1ull << 3) | (1ull << 15) | v->proto_extra;
		if ((rc = vud_send_msg(v, VUD_SET_PROTOCOL_FEATURES, 0, &(uint64_t){pf & mine},
				       8, NULL, 0)))
			return rc;
		v->proto = pf & mine;
	}
	if ((rc = vud_call(v, VUD_SET_OWNER, NULL, 0, NULL, 0)) ||
	    (rc = vud_u64(v, VUD_SET_FEATURES, v->features)) || (rc = vud_mem_table(v)))
		return rc;
	v->nqp = nqp;
	for (unsigned i = 0; i < 2 * nqp; i++) {
		vud_ring_alloc(v, &v->r[i], !(i & 1));
		if ((rc = vud_ring_setup(v, i)))
			return rc;
	}
	return 0;
}

/* ---- driver side of the rings ------------------------------------------------------ */

static inline void vud_kick(struct vud_ring *r)
{
	uint64_t one = 1;
	r->kicks++;
	if (write(r->kick, &one, 8) != 8) {
	}
}

/* Kicks only when the device asked, exactly as Linux's virtio driver
 * decides (used->flags / avail_event for split rings, the device event
 * suppression area for packed ones): a device that forgets to ask for
 * kicks stalls here, as it would with a real guest. `old` is the avail
 * index before the buffers just added. */
static inline bool vud_kick_wanted(struct vud *v, struct vud_ring *r, uint16_t old,
				   uint16_t new_idx)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!v->packed) {
		if ((v->features >> 29) & 1) {
			uint16_t ev = __atomic_load_n((uint16_t *)((uint32_t *)(r->used + 2) +
								   2 * r->size),
						      __ATOMIC_RELAXED);
			return (uint16_t)(new_idx - ev - 1) < (uint16_t)(new_idx - old);
		}
		return !(__atomic_load_n(&r->used[0], __ATOMIC_RELAXED) & 1);
	}
	uint16_t flags = __atomic_load_n(&r->dev_evt[1], __ATOMIC_RELAXED);
	return flags != 1; /* not DISABLE (DESC treated as ENABLE: conservative) */
}

static inline void vud_kick_if_needed(struct vud *v, struct vud_ring *r, uint16_t old)
{
	if (vud_kick_wanted(v, r, old, r->avail_idx))
		vud_kick(r);
}

/* Whether the device asks now to be kicked for the next buffer added. */
static inline bool vud_asks_for_kicks(struct vud *v, struct vud_ring *r)
{
	return vud_kick_wanted(v, r, r->avail_idx, (uint16_t)(r->avail_idx + 1));
}

/* Makes one buffer of `n` descriptors (gpa/len pairs) available, each
 * descriptor also carrying `flags` (e.g. INDIRECT) from the start. */
static inline int vud_add_flags(struct vud *v, struct vud_ring *r, const uint64_t *gpa,
				const uint32_t *len, unsigned n, uint64_t tag, uint16_t flags)
{
	uint16_t wflag = (uint16_t)((r->rx ? 2 : 0) | flags);
	if (!v->packed) {
		if (r->nfree < n)
			return -ENOSPC;
		uint16_t head = r->free_head, i = head, last = head;
		for (unsigned k = 0; k < n; k++) {
			r->desc[i].addr = gpa[k];
			r->desc[i].len = len[k];
			r->desc[i].flags = (uint16_t)(wflag | (k + 1 < n ? 1 : 0));
			last = i;
			i = r->next_free[i];
			r->desc[last].next = i;
		}
		r->free_head = i;
		r->nfree = (uint16_t)(r->nfree - n);
		r->chain_len[head] = (uint16_t)n;
		r->buf_gpa[head] = tag;
		r->out[head] = true;
		r->avail[2 + (r->avail_idx & (r->size - 1))] = head;
		r->avail_idx++;
		__atomic_store_n(&r->avail[1], r->avail_idx, __ATOMIC_RELEASE);
		return 0;
	}
	if (r->nfree < n || !r->n_id_free)
		return -ENOSPC;
	uint16_t id = r->id_free[--r->n_id_free];
	r->chain_len[id] = (uint16_t)n;
	r->buf_gpa[id] = tag;
	r->out[id] = true;
	uint16_t first = r->avail_idx, first_flags = 0;
	for (unsigned k = 0; k < n; k++) {
		uint16_t s = r->avail_idx;
		r->pdesc[s].addr = gpa[k];
		r->pdesc[s].len = len[k];
		r->pdesc[s].id = id;
		uint16_t f = (uint16_t)(wflag | (k + 1 < n ? 1 : 0) |
					(r->avail_wrap ? (1 << 7) : (1 << 15)));
		if (k)
			__atomic_store_n(&r->pdesc[s].flags, f, __ATOMIC_RELEASE);
		else
			first_flags = f;
		if (++r->avail_idx == r->size) {
			r->avail_idx = 0;
			r->avail_wrap = !r->avail_wrap;
		}
	}
	r->nfree = (uint16_t)(r->nfree - n);
	/* The first descriptor's flags go last: the chain appears at once. */
	__atomic_store_n(&r->pdesc[first].flags, first_flags, __ATOMIC_RELEASE);
	return 0;
}

/* Makes one buffer of `n` descriptors (gpa/len pairs) available. */
static inline int vud_add(struct vud *v, struct vud_ring *r, const uint64_t *gpa,
			  const uint32_t *len, unsigned n, uint64_t tag)
{
	return vud_add_flags(v, r, gpa, len, n, tag, 0);
}

/* Takes one used buffer; returns 1 with its tag and length, or 0. */
static inline int vud_used(struct vud *v, struct vud_ring *r, uint64_t *tag,
			   uint32_t *len)
{
	if (!v->packed) {
		uint16_t idx = __atomic_load_n(&r->used[1], __ATOMIC_ACQUIRE);
		if (idx == r->used_idx)
			return 0;
		uint32_t *e = (uint32_t *)(r->used + 2) + 2 * (r->used_idx & (r->size - 1));
		uint16_t head = (uint16_t)e[0];
		if (head >= r->size || !r->out[head])
			vud_bad_used(r, head);
		r->out[head] = false;
		*len = e[1];
		*tag = r->buf_gpa[head];
		/* free the chain's descriptors onto the free list */
		uint16_t i = head;
		for (unsigned k = 0; k < r->chain_len[head]; k++) {
			uint16_t nx = r->desc[i].next;
			r->next_free[i] = r->free_head;
			r->free_head = i;
			i = nx;
		}
		r->nfree = (uint16_t)(r->nfree + r->chain_len[head]);
		r->used_idx++;
		return 1;
	}
	uint16_t f = __atomic_load_n(&r->pdesc[r->used_idx].flags, __ATOMIC_ACQUIRE);
	bool avail = f & (1 << 7), used = f & (1 << 15);
	if (avail != used || used != r->used_wrap)
		return 0;
	uint16_t id = r->pdesc[r->used_idx].id;
	if (id >= VUD_QSIZE || !r->out[id])
		vud_bad_used(r, id);
	/* A used descriptor says whether the device wrote the buffer: this
	 * switch writes every receive buffer and no transmit one. */
	if (!!(f & 2 /* VRING_DESC_F_WRITE */) != r->rx) {
		fprintf(stderr, "vu_driver: %s ring: used id %u with WRITE %s\n",
			r->rx ? "receive" : "transmit", id, r->rx ? "clear" : "set");
		abort();
	}
	r->out[id] = false;
	*len = r->pdesc[r->used_idx].len;
	*tag = r->buf_gpa[id];
	uint16_t n = r->chain_len[id];
	r->used_idx = (uint16_t)(r->used_idx + n);
	if (r->used_idx >= r->size) {
		r->used_idx = (uint16_t)(r->used_idx - r->size);
		r->used_wrap = !r->used_wrap;
	}
	r->nfree = (uint16_t)(r->nfree + n);
	r->id_free[r->n_id_free++] = id;
	return 1;
}

/* Posts `n` receive buffers of `size` bytes on queue pair q. */
static inline int vud_post_rx(struct vud *v, unsigned q, unsigned n, uint32_t size)
{
	struct vud_ring *r = &v->r[2 * q];
	uint16_t old = r->avail_idx;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *b = vud_alloc(v, size, 64);
		if (!b)
			return -ENOMEM;
		uint64_t g = vud_gpa(v, b);
		int rc = vud_add(v, r, &g, &size, 1, g);
		if (rc)
			return rc;
	}
	vud_kick_if_needed(v, r, old);
	return 0;
}

/* Sends a frame on queue pair q: header and frame in one buffer, or in
 * `pieces` descriptors (the header always its own then). */
static inline int vud_send(struct vud *v, unsigned q, const void *frame, uint32_t len,
			   const struct vud_net_hdr *hdr, unsigned pieces)
{
	struct vud_ring *r = &v->r[2 * q + 1];
	uint8_t *b = vud_alloc(v, v->hdr_len + len, 64);
	if (!b)
		return -ENOMEM;
	struct vud_net_hdr h = {0};
	if (hdr)
		h = *hdr;
	memcpy(b, &h, v->hdr_len);
	memcpy(b + v->hdr_len, frame, len);
	uint64_t g[16];
	uint32_t l[16];
	unsigned n = 0;
	if (pieces <= 1) {
		g[0] = vud_gpa(v, b);
		l[0] = v->hdr_len + len;
		n = 1;
	} else {
		g[n] = vud_gpa(v, b);
		l[n++] = v->hdr_len;
		uint32_t off = 0, step = (len + pieces - 2) / (pieces - 1);
		while (off < len && n < 16) {
			uint32_t k = len - off < step ? len - off : step;
			g[n] = vud_gpa(v, b + v->hdr_len + off);
			l[n++] = k;
			off += k;
		}
	}
	uint16_t old = r->avail_idx;
	int rc = vud_add(v, r, g, l, n, vud_gpa(v, b));
	if (!rc)
		vud_kick_if_needed(v, r, old);
	return rc;
}

/* Reaps completed transmissions; returns how many. */
static inline int vud_reap_tx(struct vud *v, unsigned q)
{
	uint64_t tag;
	uint32_t len;
	int n = 0;
	while (vud_used(v, &v->r[2 * q + 1], &tag, &len))
		n++;
	return n;
}

/* Receives one frame (possibly merged from several buffers) into buf;
 * returns its length (without the header), 0 if none, or -EMSGSIZE. */
static inline int vud_recv(struct vud *v, unsigned q, void *buf, uint32_t max,
			   struct vud_net_hdr *hdr)
{
	struct vud_ring *r = &v->r[2 * q];
	uint64_t tag;
	uint32_t len;
	if (!vud_used(v, r, &tag, &len))
		return 0;
	struct vud_net_hdr h = {0};
	if (len < v->hdr_len)
		return -EPROTO;
	memcpy(&h, vud_hva(v, tag), v->hdr_len);
	if (hdr)
		*hdr = h;
	uint32_t got = len - v->hdr_len;
	if (got > max)
		return -EMSGSIZE;
	memcpy(buf, vud_hva(v, tag) + v->hdr_len, got);
	unsigned nb = v->hdr_len == 12 && h.num_buffers ? h.num_buffers : 1;
	for (unsigned k = 1; k < nb; k++) {
		uint32_t l2;
		uint64_t t2;
		int tries = 0;
		while (!vud_used(v, r, &t2, &l2))
			if (++tries > 1000000)
				return -EPROTO;
		if (got + l2 > max)
			return -EMSGSIZE;
		memcpy((uint8_t *)buf + got, vud_hva(v, t2), l2);
		got += l2;
	}
	return (int)got;
}

static inline uint64_t vud_calls(struct vud_ring *r)
{
	uint64_t c = 0;
	if (read(r->call, &c, 8) != 8)
		return 0;
	return c;
}

static inline void vud_close(struct vud *v)
{
	if (v->sock >= 0)
		close(v->sock);
	for (unsigned i = 0; i < 8; i++) {
		if (v->r[i].kick > 0)
			close(v->r[i].kick);
		if (v->r[i].call > 0)
			close(v->r[i].call);
	}
	if (v->mem && v->mem != MAP_FAILED)
		munmap(v->mem, VUD_MEM);
	if (v->memfd > 0)
		close(v->memfd);
	v->sock = -1;
}

#endif /* HS_VU_DRIVER_H */

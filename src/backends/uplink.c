/*
 * uplink.c - the "uplink" backend: a host interface as a port, through
 * AF_PACKET sockets with TPACKET_V3 rings (see uplink.h).
 *
 *  kernel -> switch (recv_burst): the receive ring is rx_blocks blocks;
 *    the kernel fills one at a time and hands it over (block_status
 *    TP_STATUS_USER) when full or after block_tov_ms. recv_burst walks
 *    the frames of the oldest blocks it owns and hands them to the switch
 *    where they lie; a frame's token is its block. recv_done counts the
 *    frames of each block back; a block whose frames were all handed out
 *    and all came back is given to the kernel (TP_STATUS_KERNEL), in order.
 *    Each frame sits behind its virtio-net header (PACKET_VNET_HDR), which
 *    becomes offload metadata. A VLAN tag the NIC stripped is written back
 *    into the frame, in place: the header in front of it is read first.
 *  switch -> kernel (send_reserve/send_commit): the send ring is tx_slots
 *    fixed slots, each able to hold the largest frame. send_reserve hands
 *    out the next free slots (TP_STATUS_AVAILABLE) as the frames'
 *    buffers, so the switch copies every frame into the ring, once;
 *    send_commit writes each virtio-net header and length and publishes
 *    the slots (TP_STATUS_SEND_REQUEST) in ring order, then one send()
 *    makes the kernel send them all. A slot whose frame was not written
 *    (copy failure) is published with length 0: PACKET_LOSS makes the
 *    kernel skip it instead of stopping the ring there.
 *
 * The socket is bound only once its rings exist, so no frame is ever
 * received outside them; a classic BPF filter keeps frames to the
 * interface's own MAC address (the host's unicast) out of the switch.
 *
 * The kernel is trusted more than a guest, but the ring is still read
 * defensively: a block's frame count, offsets and lengths are checked
 * against the block before anything is handed to the switch; a block that
 * does not add up is dropped whole (counted: bad_descriptor) and given
 * back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends.h"
#include "vnet_hdr.h"

#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif
#ifndef PACKET_FANOUT_FLAG_UNIQUEID
#define PACKET_FANOUT_FLAG_UNIQUEID 0x2000
#endif

/* PACKET_VNET_HDR: struct virtio_net_hdr, without num_buffers */
#define UL_VNET 10
#define UL_QUEUES_MAX 16
#define UL_TX_BLOCK (1u << 20)
/* A send slot: the tpacket3 header, the virtio-net header placed so that
 * the frame starts on a cache line (PACKET_TX_HAS_OFF), the frame. */
#define UL_TX_MAC 64
#define UL_TX_SLOT ((UL_TX_MAC + HS_FRAME_MAX + 63) & ~63u)
#define UL_TX_PER_BLOCK (UL_TX_BLOCK / UL_TX_SLOT)
/* frames in a receive block start at multiples of this (V3_ALIGNMENT) */
#define UL_V3_ALIGN 8
#define UL_EMPTY_CHECK 64 /* empty rounds between two SO_ERROR checks */

struct ul_port;

struct ul_q {
	int fd;
	struct ul_port *u;
	uint16_t qi;
	uint8_t *map;
	size_t map_len;
	/* kernel -> switch */
	uint8_t *rx;              /* rx_blocks * bsize */
	uint32_t rd_blk;          /* next block to read (counts up; % nblocks);
				     open while rd_left > 0 */
	uint32_t rd_left;         /* its frames not yet read */
	uint32_t rd_off;          /* offset of the next one */
	uint32_t rel_blk;         /* oldest block not yet given back */
	uint32_t *total, *done;   /* per block: its frames, those finished
				     (dropped, or back from the switch) */
	uint32_t empty;           /* empty rounds since the last error check */
	struct hs_seg rx_segs[HS_RESERVE_MAX];
	/* switch -> kernel */
	uint8_t *tx;              /* tx blocks */
	uint32_t tx_head;         /* next slot to reserve (counts up) */
	int16_t slot_of[HS_RESERVE_MAX]; /* reservation i's slot offset, or -1 */
	struct hs_seg tx_segs[HS_RESERVE_MAX];
	unsigned n_resv;
	int kick_errno;           /* the last send() error logged (egress lock) */
	/* Room in the send ring for the switch's backlog: while it waits
	 * (set_notify HS_EV_POSTED), a watch on the socket's writability
	 * (the kernel freed a slot) signals posted_fd. */
	int posted_fd;
	pthread_mutex_t room_lock;
	hs_watch_t *room_w;
	bool room_wanted;
	/* Counters, one writer each (ingress owner or egress lock holder). */
	_Atomic uint64_t rx_truncated, rx_vlan_restored, tx_kick_errors, tx_skipped;
};

struct ul_port {
	hs_port_t *port;
	struct hs_uplink_config cfg;
	char ifname[IFNAMSIZ];
	int ifindex;
	uint8_t own_mac[6];
	uint32_t caps;            /* what the port accepts from the switch */
	uint32_t bsize, nblocks;  /* receive ring */
	uint32_t tx_nslots;
	struct ul_q *q;
	_Atomic bool gone;
	hs_timer_t *gone_t;
	pthread_mutex_t stats_lock; /* PACKET_STATISTICS reads and resets */
	uint64_t kernel_drops;
};

static void ul_close(void *priv);

static void ctr_add(_Atomic uint64_t *c, uint64_t n)
{
	if (n)
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
				      memory_order_relaxed);
}

static uint32_t ld_status(const void *p)
{
	return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

static void st_status(void *p, uint32_t v)
{
	__atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}

/* ---- setup ----------------------------------------------------------------- */

static int sockopt(struct ul_port *u, int fd, int level, int name, const void *v,
		   socklen_t len, const char *what)
{
	if (setsockopt(fd, level, name, v, len) == 0)
		return 0;
	int e = -errno;
	hs_port_log(u->port, HS_LOG_ERROR, "uplink %s: %s: %s", u->ifname, what,
		    hs_strerror(e));
	return e;
}

static int sockopt_int(struct ul_port *u, int fd, int level, int name, int v,
		       const char *what)
{
	return sockopt(u, fd, level, name, &v, sizeof(v), what);
}

/* The filter: frames whose destination is the interface's own unicast
 * address belong to the host, not the switch. */
static int attach_filter(struct ul_port *u, int fd)
{
	const uint8_t *m = u->own_mac;
	uint32_t hi = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
	uint32_t lo = (uint32_t)m[4] << 8 | m[5];
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, hi, 0, 2),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, lo, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	return sockopt(u, fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog),
		       "socket filter");
}

static int open_queue(struct ul_port *u, struct ul_q *q, int *fanout_id)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		int e = -errno;
		hs_port_log(u->port, HS_LOG_ERROR, "uplink %s: AF_PACKET socket: %s%s",
			    u->ifname, hs_strerror(e), e == -EPERM ? " (needs CAP_NET_RAW)" : "");
		return e;
	}
	q->fd = fd;
	int rc = sockopt_int(u, fd, SOL_PACKET, PACKET_VERSION, TPACKET_V3, "TPACKET_V3");
	if (!rc)
		rc = sockopt_int(u, fd, SOL_PACKET, PACKET_VNET_HDR, 1, "PACKET_VNET_HDR");
	if (!rc)
		rc = sockopt_int(u, fd, SOL_PACKET, PACKET_LOSS, 1, "PACKET_LOSS");
	if (!rc)
		rc = sockopt_int(u, fd, SOL_PACKET, PACKET_TX_HAS_OFF, 1, "PACKET_TX_HAS_OFF");
	if (!rc) {
		struct tpacket_req3 r = {.tp_block_size = u->bsize,
					 .tp_block_nr = u->nblocks,
					 .tp_frame_size = TPACKET_ALIGNMENT << 7,
					 .tp_retire_blk_tov = u->cfg.block_tov_ms};
		r.tp_frame_nr = r.tp_block_size / r.tp_frame_size * r.tp_block_nr;
		rc = sockopt(u, fd, SOL_PACKET, PACKET_RX_RING, &r, sizeof(r),
			     "receive ring");
	}
	if (!rc) {
		struct tpacket_req3 r = {.tp_block_size = UL_TX_BLOCK,
					 .tp_block_nr = u->tx_nslots / UL_TX_PER_BLOCK,
					 .tp_frame_size = UL_TX_SLOT,
					 .tp_frame_nr = u->tx_nslots};
		rc = sockopt(u, fd, SOL_PACKET, PACKET_TX_RING, &r, sizeof(r), "send ring");
	}
	if (rc)
		return rc;
	size_t rx_len = (size_t)u->bsize * u->nblocks;
	q->map_len = rx_len + (size_t)UL_TX_BLOCK * (u->tx_nslots / UL_TX_PER_BLOCK);
	void *m = mmap(NULL, q->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       fd, 0);
	if (m == MAP_FAILED) {
		q->map = NULL;
		return -errno;
	}
	q->map = m;
	q->rx = q->map;
	q->tx = q->map + rx_len;
	q->total = calloc(u->nblocks, sizeof(*q->total));
	q->done = calloc(u->nblocks, sizeof(*q->done));
	if (!q->total || !q->done)
		return -ENOMEM;
	rc = attach_filter(u, fd);
	if (!rc)
		rc = sockopt_int(u, fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1,
				 "PACKET_IGNORE_OUTGOING");
	if (!rc && (u->cfg.flags & HS_UPLINK_QDISC_BYPASS))
		rc = sockopt_int(u, fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1,
				 "PACKET_QDISC_BYPASS");
	if (rc)
		return rc;
	/* The send ring bounds what is in flight: with room for all of it in
	 * the send buffer, a send() never stops half-way for lack of memory. */
	int sndbuf = (int)(q->map_len - rx_len) * 2;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)))
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				 .sll_ifindex = u->ifindex};
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		rc = -errno;
		hs_port_log(u->port, HS_LOG_ERROR, "uplink %s: bind: %s", u->ifname,
			    hs_strerror(rc));
		return rc;
	}
	if (!(u->cfg.flags & HS_UPLINK_NO_PROMISC)) {
		struct packet_mreq mr = {.mr_ifindex = u->ifindex, .mr_type = PACKET_MR_PROMISC};
		rc = sockopt(u, fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof(mr),
			     "promiscuous mode");
		if (rc)
			return rc;
	}
	if (u->cfg.queues > 1) {
		/* The first socket makes the group (the kernel picks a free
		 * id), the others join it. */
		int v = *fanout_id < 0 ? (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_UNIQUEID) << 16
				       : (PACKET_FANOUT_HASH << 16) | *fanout_id;
		rc = sockopt_int(u, fd, SOL_PACKET, PACKET_FANOUT, v, "PACKET_FANOUT");
		if (rc)
			return rc;
		if (*fanout_id < 0) {
			socklen_t l = sizeof(v);
			if (getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &v, &l))
				return -errno;
			*fanout_id = v & 0xffff;
		}
	}
	return 0;
}

static int if_info(struct ul_port *u)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, u->ifname, IFNAMSIZ);
	int rc = ioctl(s, SIOCGIFHWADDR, &ifr) < 0 ? -errno : 0;
	if (!rc && ifr.ifr_hwaddr.sa_family != 1 /* ARPHRD_ETHER */)
		rc = -EPROTONOSUPPORT;
	if (!rc)
		memcpy(u->own_mac, ifr.ifr_hwaddr.sa_data, 6);
	close(s);
	return rc;
}

static int ul_open(hs_port_t *port, const void *config, size_t size, void **priv,
		   struct hs_port_info *info)
{
	struct hs_uplink_config c = {0};
	if (!config)
		return -EINVAL;
	int crc = hs_config_copy(&c, sizeof(c), config, size, HS_UPLINK_CONFIG_SIZE_V1);
	if (crc)
		return crc;
	size_t nl = c.ifname ? strlen(c.ifname) : 0;
	if (!c.queues)
		c.queues = 1;
	if (!c.rx_blocks)
		c.rx_blocks = 16;
	if (!c.rx_block_kib)
		c.rx_block_kib = 256;
	if (!c.tx_slots)
		c.tx_slots = 4 * UL_TX_PER_BLOCK;
	if (!c.block_tov_ms)
		c.block_tov_ms = 1;
	if (!nl || nl >= IFNAMSIZ || c.mode > HS_UPLINK_PACKET || c.queues > UL_QUEUES_MAX ||
	    c.rx_blocks < 2 || c.rx_blocks > 256 || c.rx_block_kib < 128 ||
	    c.rx_block_kib > 4096 || (c.rx_block_kib & (c.rx_block_kib - 1)) ||
	    c.tx_slots < UL_TX_PER_BLOCK || c.tx_slots > 68 * UL_TX_PER_BLOCK ||
	    (c.flags & ~(HS_UPLINK_NO_PROMISC | HS_UPLINK_NO_OFFLOAD | HS_UPLINK_QDISC_BYPASS)))
		return -EINVAL;
	struct ul_port *u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->port = port;
	u->cfg = c;
	u->cfg.ifname = NULL;
	memcpy(u->ifname, c.ifname, nl);
	u->bsize = c.rx_block_kib << 10;
	u->nblocks = c.rx_blocks;
	u->tx_nslots = (c.tx_slots + UL_TX_PER_BLOCK - 1) / UL_TX_PER_BLOCK * UL_TX_PER_BLOCK;
	pthread_mutex_init(&u->stats_lock, NULL);
	u->q = calloc(c.queues, sizeof(*u->q));
	if (!u->q) {
		ul_close(u);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < c.queues; i++) {
		u->q[i].fd = -1;
		u->q[i].u = u;
		u->q[i].qi = (uint16_t)i;
		pthread_mutex_init(&u->q[i].room_lock, NULL);
		u->q[i].posted_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (u->q[i].posted_fd < 0) {
			u->q[i].posted_fd = -1; /* closed with the rest below */
		}
	}
	int rc = 0;
	u->ifindex = (int)if_nametoindex(u->ifname);
	if (!u->ifindex) {
		hs_port_log(port, HS_LOG_ERROR, "uplink %s does not exist", u->ifname);
		rc = -ENODEV;
	}
	if (!rc && (rc = if_info(u)))
		hs_port_log(port, HS_LOG_ERROR, "uplink %s: %s", u->ifname,
			    rc == -EPROTONOSUPPORT ? "not an Ethernet interface"
						   : hs_strerror(rc));
	for (unsigned i = 0; !rc && i < c.queues; i++)
		if (u->q[i].posted_fd < 0)
			rc = -ENOMEM;
	int fanout_id = -1;
	for (unsigned i = 0; !rc && i < c.queues; i++)
		rc = open_queue(u, &u->q[i], &fanout_id);
	if (rc) {
		ul_close(u);
		return rc;
	}
	if (!(c.flags & HS_UPLINK_NO_OFFLOAD))
		u->caps = HS_CAP_CSUM | HS_CAP_GSO_TCPV4 | HS_CAP_GSO_TCPV6 | HS_CAP_GSO_ECN |
			  HS_CAP_GSO_UDP_L4;
	info->n_queues = c.queues;
	info->caps = u->caps;
	info->link_up = true;
	*priv = u;
	return 0;
}

static int ul_start(void *priv)
{
	struct ul_port *u = priv;
	for (uint16_t i = 0; i < u->cfg.queues; i++) {
		int rc = hs_port_set_queue_fd(u->port, i, HS_EV_KICK | HS_EV_FD_LEVEL,
					      u->q[i].fd);
		if (!rc)
			rc = hs_port_set_queue_fd(u->port, i, HS_EV_POSTED, u->q[i].posted_fd);
		if (rc)
			return rc;
	}
	hs_port_log(u->port, HS_LOG_INFO,
		    "uplink %s: AF_PACKET, %u queue(s), receive %u x %u KiB, send %u "
		    "slots, offloads %s", u->ifname, u->cfg.queues, u->nblocks, u->bsize >> 10,
		    u->tx_nslots, u->caps ? "on" : "off");
	return 0;
}

static void unwatch(struct ul_port *u)
{
	for (uint16_t i = 0; i < u->cfg.queues; i++) {
		hs_port_set_queue_fd(u->port, i, HS_EV_KICK, -1);
		hs_port_set_queue_fd(u->port, i, HS_EV_POSTED, -1);
	}
}

static void ul_stop(void *priv)
{
	struct ul_port *u = priv;
	hs_timer_del(u->gone_t);
	u->gone_t = NULL;
	unwatch(u);
	for (uint16_t i = 0; i < u->cfg.queues; i++) {
		struct ul_q *q = &u->q[i];
		pthread_mutex_lock(&q->room_lock);
		hs_watch_t *w = q->room_w;
		q->room_w = NULL;
		q->room_wanted = false;
		pthread_mutex_unlock(&q->room_lock);
		hs_watch_del(w);
	}
}

static void ul_close(void *priv)
{
	struct ul_port *u = priv;
	for (unsigned i = 0; u->q && i < u->cfg.queues; i++) {
		struct ul_q *q = &u->q[i];
		if (q->map)
			munmap(q->map, q->map_len);
		if (q->fd >= 0)
			close(q->fd); /* leaves promiscuous mode and the group */
		free(q->total);
		free(q->done);
		if (q->posted_fd >= 0)
			close(q->posted_fd);
		pthread_mutex_destroy(&q->room_lock);
	}
	free(u->q);
	pthread_mutex_destroy(&u->stats_lock);
	free(u);
}

static void gone_cb(hs_timer_t *tm, void *arg)
{
	(void)tm;
	unwatch(arg);
}

/* The socket reported an error: the interface went down (logged; it
 * comes back by itself) or away (the port's link goes down). */
static void sock_error(struct ul_port *u, int err)
{
	char name[IFNAMSIZ];
	if ((err == ENETDOWN || err == ENXIO || err == ENODEV) &&
	    !if_indextoname((unsigned)u->ifindex, name)) {
		if (!atomic_exchange(&u->gone, true)) {
			hs_port_log(u->port, HS_LOG_ERROR, "uplink %s is gone; link down",
				    u->ifname);
			hs_port_set_link(u->port, false);
			hs_timer_add(hs_port_switch(u->port), 0, 0, gone_cb, u, &u->gone_t);
		}
		return;
	}
	hs_port_log(u->port, HS_LOG_WARN, "uplink %s: %s", u->ifname, strerror(err));
}

/* ---- kernel -> switch ------------------------------------------------------ */

static struct tpacket_block_desc *blk(const struct ul_port *u, const struct ul_q *q,
				      uint32_t b)
{
	return (struct tpacket_block_desc *)(q->rx + (size_t)(b % u->nblocks) * u->bsize);
}

/* Gives back, in order, the blocks read to their end whose frames have
 * all come back. */
static void release_blocks(struct ul_port *u, struct ul_q *q)
{
	while (q->rel_blk != q->rd_blk) {
		uint32_t i = q->rel_blk % u->nblocks;
		if (q->done[i] != q->total[i])
			break;
		st_status(&blk(u, q, q->rel_blk)->hdr.bh1.block_status, TP_STATUS_KERNEL);
		q->rel_blk++;
	}
}

/* Opens block rd_blk for reading if the kernel has handed it over and
 * its header adds up (else it is dropped whole); true if it has frames. */
static bool open_block(struct ul_port *u, struct ul_q *q, uint16_t qi)
{
	for (;;) {
		if (q->rd_blk - q->rel_blk >= u->nblocks)
			return false; /* every block is still held by the switch */
		struct tpacket_block_desc *b = blk(u, q, q->rd_blk);
		struct tpacket_hdr_v1 *h = &b->hdr.bh1;
		if (!(ld_status(&h->block_status) & TP_STATUS_USER))
			return false;
		uint32_t i = q->rd_blk % u->nblocks;
		q->done[i] = 0;
		if (h->num_pkts && h->offset_to_first_pkt >= sizeof(*b) &&
		    h->offset_to_first_pkt < u->bsize && h->blk_len <= u->bsize) {
			q->total[i] = h->num_pkts;
			q->rd_left = h->num_pkts;
			q->rd_off = h->offset_to_first_pkt;
			return true;
		}
		if (h->num_pkts)
			hs_port_count_drop(u->port, qi, HS_DROP_BAD_DESC, h->num_pkts);
		q->total[i] = 0;
		q->rd_blk++;
		release_blocks(u, q);
	}
}

static unsigned ul_recv_burst(void *priv, uint16_t qi, struct hs_pkt *pkts, unsigned max)
{
	struct ul_port *u = priv;
	struct ul_q *q = &u->q[qi];
	unsigned n = 0, bad = 0, trunc = 0, bad_off = 0, vlan = 0;
	if (atomic_load_explicit(&u->gone, memory_order_relaxed))
		return 0;
	if (max > HS_RESERVE_MAX)
		max = HS_RESERVE_MAX;
	while (n < max) {
		if (!q->rd_left && !open_block(u, q, qi))
			break;
		uint32_t bi = q->rd_blk % u->nblocks;
		uint8_t *base = (uint8_t *)blk(u, q, q->rd_blk);
		struct tpacket3_hdr *f = (struct tpacket3_hdr *)(base + q->rd_off);
		uint32_t room = u->bsize - q->rd_off;
		bool last = --q->rd_left == 0;
		bool ok = room >= sizeof(*f) && !(q->rd_off % UL_V3_ALIGN) &&
			  f->tp_mac >= UL_VNET + sizeof(*f) && f->tp_mac <= room &&
			  f->tp_snaplen <= room - f->tp_mac &&
			  (last || (f->tp_next_offset >= sizeof(*f) && f->tp_next_offset < room));
		if (!ok) {
			/* The rest of the block cannot be trusted either. */
			bad += 1 + q->rd_left;
			q->done[bi] += 1 + q->rd_left;
			q->rd_left = 0;
			q->rd_blk++;
			continue;
		}
		if (last)
			q->rd_blk++;
		else
			q->rd_off += f->tp_next_offset;
		uint8_t *fr = (uint8_t *)f + f->tp_mac;
		uint32_t len = f->tp_snaplen;
		struct hsb_vnet_hdr vh = {0};
		memcpy(&vh, fr - UL_VNET, UL_VNET);
		struct hs_pkt *p = &pkts[n];
		if (len < f->tp_len || len < HS_ETH_HLEN) {
			if (len < f->tp_len)
				trunc++;
			else
				bad++;
			q->done[bi]++;
			continue;
		}
		if (!hsb_vnet_to_offload(&vh, HS_CAP_ALL & ~HS_CAP_GSO_UDP, &p->off)) {
			bad_off++;
			q->done[bi]++;
			continue;
		}
		if (f->tp_status & TP_STATUS_VLAN_VALID) {
			/* Put back the tag the kernel took off: the MAC
			 * addresses move 4 bytes down, over the header read
			 * above. */
			uint16_t tpid = (f->tp_status & TP_STATUS_VLAN_TPID_VALID) &&
						f->hv1.tp_vlan_tpid
					? f->hv1.tp_vlan_tpid
					: ETH_P_8021Q;
			memmove(fr - 4, fr, 12);
			fr -= 4;
			fr[12] = (uint8_t)(tpid >> 8);
			fr[13] = (uint8_t)tpid;
			fr[14] = (uint8_t)(f->hv1.tp_vlan_tci >> 8);
			fr[15] = (uint8_t)f->hv1.tp_vlan_tci;
			len += 4;
			if (p->off.flags & HS_OFF_NEEDS_CSUM)
				p->off.csum_start += 4;
			if (p->off.hdr_len)
				p->off.hdr_len += 4;
			vlan++;
		}
		struct hs_seg *s = &q->rx_segs[n];
		*s = (struct hs_seg){.base = fr, .len = len};
		p->segs = s;
		p->nsegs = 1;
		p->len = len;
		p->token = bi;
		n++;
	}
	if (bad)
		hs_port_count_drop(u->port, qi, HS_DROP_BAD_DESC, bad);
	if (trunc)
		hs_port_count_drop(u->port, qi, HS_DROP_OVERSIZE, trunc);
	if (bad_off)
		hs_port_count_drop(u->port, qi, HS_DROP_BAD_OFFLOAD, bad_off);
	ctr_add(&q->rx_truncated, trunc);
	ctr_add(&q->rx_vlan_restored, vlan);
	if (bad || trunc || bad_off)
		release_blocks(u, q); /* blocks whose frames were all dropped */
	if (n || bad || trunc || bad_off) {
		q->empty = 0;
	} else if (++q->empty >= UL_EMPTY_CHECK) {
		/* Woken for nothing, again and again: an error (the
		 * interface went down or away) keeps the socket readable. */
		q->empty = 0;
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err)
			sock_error(u, err);
	}
	return n;
}

static unsigned ul_recv_done(void *priv, uint16_t qi, const struct hs_pkt *pkts, unsigned n)
{
	struct ul_port *u = priv;
	struct ul_q *q = &u->q[qi];
	for (unsigned i = 0; i < n; i++)
		q->done[pkts[i].token]++;
	release_blocks(u, q);
	return 0;
}

/* ---- switch -> kernel ------------------------------------------------------ */

static struct tpacket3_hdr *slot(const struct ul_q *q, uint32_t s, uint32_t nslots)
{
	s %= nslots;
	return (struct tpacket3_hdr *)(q->tx + (size_t)(s / UL_TX_PER_BLOCK) * UL_TX_BLOCK +
				       (size_t)(s % UL_TX_PER_BLOCK) * UL_TX_SLOT);
}

static unsigned ul_send_reserve(void *priv, uint16_t qi, const struct hs_out *out,
				unsigned n, struct hs_iobuf *bufs)
{
	struct ul_port *u = priv;
	struct ul_q *q = &u->q[qi];
	if (n > HS_RESERVE_MAX)
		n = HS_RESERVE_MAX;
	uint32_t s = q->tx_head;
	unsigned i;
	for (i = 0; i < n; i++) {
		if (out[i].len > HS_FRAME_MAX) {
			q->slot_of[i] = -1;
			bufs[i].nsegs = 0;
			continue;
		}
		if (s - q->tx_head == u->tx_nslots)
			break; /* the whole ring, in this one reservation */
		struct tpacket3_hdr *h = slot(q, s, u->tx_nslots);
		uint32_t st = ld_status(&h->tp_status);
		if (st != TP_STATUS_AVAILABLE && st != TP_STATUS_WRONG_FORMAT)
			break; /* the kernel still has it */
		q->slot_of[i] = (int16_t)(s - q->tx_head);
		q->tx_segs[i] = (struct hs_seg){.base = (uint8_t *)h + UL_TX_MAC,
						.len = out[i].len};
		bufs[i].segs = &q->tx_segs[i];
		bufs[i].nsegs = 1;
		s++;
	}
	q->n_resv = i;
	return i;
}

static unsigned ul_send_commit(void *priv, uint16_t qi, const struct hs_out *out,
			       unsigned n)
{
	struct ul_port *u = priv;
	struct ul_q *q = &u->q[qi];
	unsigned used = 0, skipped = 0;
	for (unsigned i = 0; i < n && i < q->n_resv; i++) {
		if (q->slot_of[i] < 0)
			continue;
		struct tpacket3_hdr *h = slot(q, q->tx_head + (uint32_t)q->slot_of[i],
					      u->tx_nslots);
		used++;
		h->tp_next_offset = 0;
		h->tp_mac = UL_TX_MAC - UL_VNET;
		if (!out[i].len) {
			h->tp_len = 0; /* skipped by the kernel (PACKET_LOSS) */
			skipped++;
		} else {
			struct hsb_vnet_hdr vh = hsb_vnet_from_offload(&out[i].off, 0);
			memcpy((uint8_t *)h + UL_TX_MAC - UL_VNET, &vh, UL_VNET);
			h->tp_len = UL_VNET + out[i].len;
		}
		st_status(&h->tp_status, TP_STATUS_SEND_REQUEST);
	}
	q->tx_head += used;
	q->n_resv = 0;
	ctr_add(&q->tx_skipped, skipped);
	if (!used)
		return 0;
	ssize_t r;
	do
		r = send(q->fd, NULL, 0, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno != EAGAIN) {
		/* The frames stay published; the next send() retries them
		 * (e.g. once the interface is up again). Meanwhile the ring
		 * fills and the switch counts what does not fit
		 * (rx_no_buffer). */
		ctr_add(&q->tx_kick_errors, 1);
		if (errno != q->kick_errno) {
			q->kick_errno = errno;
			sock_error(u, errno);
		}
	} else {
		q->kick_errno = 0;
	}
	return 0;
}

/* True if the next slot to reserve is free. */
static bool tx_room(const struct ul_port *u, const struct ul_q *q)
{
	uint32_t st = ld_status(&slot(q, q->tx_head, u->tx_nslots)->tp_status);
	return st == TP_STATUS_AVAILABLE || st == TP_STATUS_WRONG_FORMAT;
}

/* On the loop: the kernel freed a send slot (the socket is writable). */
static void room_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct ul_q *q = arg;
	(void)fd;
	(void)events;
	pthread_mutex_lock(&q->room_lock);
	bool wanted = q->room_wanted;
	q->room_wanted = false;
	if (q->room_w == w)
		q->room_w = NULL;
	pthread_mutex_unlock(&q->room_lock);
	hs_watch_del(w); /* on the loop's thread: at once */
	if (wanted) {
		uint64_t one = 1;
		if (write(q->posted_fd, &one, sizeof(one)) < 0) {
			/* the counter is full: already signalled */
		}
	}
}

/* The switch has frames waiting for room in the send ring (enable) or
 * not any more. */
static bool ul_set_notify(void *priv, uint16_t qi, unsigned ev, bool enable)
{
	struct ul_port *u = priv;
	struct ul_q *q = &u->q[qi];
	if (ev != HS_EV_POSTED)
		return false;
	if (!enable) {
		pthread_mutex_lock(&q->room_lock);
		q->room_wanted = false;
		pthread_mutex_unlock(&q->room_lock);
		return false;
	}
	if (tx_room(u, q))
		return true;
	pthread_mutex_lock(&q->room_lock);
	q->room_wanted = true;
	if (!q->room_w && hs_watch_add(hs_port_switch(u->port), q->fd, HS_WATCH_WRITE, room_cb,
				       q, &q->room_w)) {
		q->room_w = NULL;
		q->room_wanted = false;
		pthread_mutex_unlock(&q->room_lock);
		return true; /* cannot wait: let the switch retry */
	}
	pthread_mutex_unlock(&q->room_lock);
	return tx_room(u, q); /* freed before the watch was in place */
}

static void ul_notify(void *priv, uint16_t q, unsigned ev)
{
	(void)priv;
	(void)q;
	(void)ev;
}

static void ul_counters(void *priv, void (*cb)(void *arg, const char *name, uint64_t v),
			void *arg)
{
	struct ul_port *u = priv;
	uint64_t trunc = 0, vlan = 0, kerr = 0, skip = 0;
	pthread_mutex_lock(&u->stats_lock);
	for (unsigned i = 0; i < u->cfg.queues; i++) {
		struct ul_q *q = &u->q[i];
		trunc += atomic_load_explicit(&q->rx_truncated, memory_order_relaxed);
		vlan += atomic_load_explicit(&q->rx_vlan_restored, memory_order_relaxed);
		kerr += atomic_load_explicit(&q->tx_kick_errors, memory_order_relaxed);
		skip += atomic_load_explicit(&q->tx_skipped, memory_order_relaxed);
		struct tpacket_stats_v3 st;
		socklen_t l = sizeof(st);
		/* reading resets the kernel's counters: they add up here */
		if (getsockopt(q->fd, SOL_PACKET, PACKET_STATISTICS, &st, &l) == 0)
			u->kernel_drops += st.tp_drops;
	}
	uint64_t kd = u->kernel_drops;
	pthread_mutex_unlock(&u->stats_lock);
	cb(arg, "rx_kernel_drops", kd);
	cb(arg, "rx_truncated", trunc);
	cb(arg, "rx_vlan_restored", vlan);
	cb(arg, "tx_kick_errors", kerr);
	cb(arg, "tx_skipped", skip);
}

const struct hs_backend_ops hs__uplink_ops = {
	.name = HS_UPLINK_BACKEND,
	.abi = HS_BACKEND_ABI,
	.open = ul_open,
	.start = ul_start,
	.stop = ul_stop,
	.close = ul_close,
	.recv_burst = ul_recv_burst,
	.recv_done = ul_recv_done,
	.send_reserve = ul_send_reserve,
	.send_commit = ul_send_commit,
	.notify = ul_notify,
	.set_notify = ul_set_notify,
	.counters = ul_counters,
};

const char *hs_uplink_mode(hs_port_t *port)
{
	return hs_port_backend_priv(port, &hs__uplink_ops) ? "packet" : NULL;
}

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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include <libmnl/libmnl.h>
#include <linux/ethtool.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>

#include "backends.h"
#include "nl_dump.h"
#include "uplink_xdp.h"
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
/* Retrying the kernel's send of published slots, and waiting for room in
 * the send ring: first after this, then twice as long each time nothing
 * moved, up to the maximum. */
#define UL_RETRY_MIN_NS 100000
#define UL_RETRY_MAX_NS 10000000
/* the XDP program's MAC map follows the switch's table this often */
#define UL_XDP_SYNC_NS 100000000

struct ul_port;

struct ul_q {
	int fd;
	int ep;                   /* AF_XDP mode: epoll of fd and the queue's
				     AF_XDP socket, the queue's kick fd */
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
	/* The kernel has no "slot freed" readiness, and a send() may stop
	 * before the last published slot (a qdisc full, the interface down).
	 * A one-shot timer, watched on the loop from start to stop, retries
	 * the send() while published slots may wait (pending) and, while the
	 * switch's backlog waits for room (want_room, set_notify), signals
	 * posted_fd, the queue's HS_EV_POSTED eventfd, once there is room. */
	int posted_fd, retry_fd;
	hs_watch_t *retry_w;
	_Atomic bool pending, want_room, armed;
	_Atomic uint32_t retry_ns;  /* the next wait */
	_Atomic uint32_t tx_head_pub; /* tx_head, for the loop */
	_Atomic uint32_t seen_down; /* the port's downs this queue has seen
				       (written under the egress lock) */
	/* Counters, one writer each (ingress owner or egress lock holder;
	 * the loop's retries add atomically). */
	_Atomic uint64_t rx_truncated, rx_vlan_restored, tx_kick_errors, tx_skipped,
		tx_retries, tx_stale;
};

struct ul_port {
	hs_port_t *port;
	struct hs_uplink_config cfg;
	char ifname[IFNAMSIZ];
	int ifindex;
	uint32_t caps;            /* what the port accepts from the switch */
	uint32_t bsize, nblocks;  /* receive ring */
	uint32_t tx_nslots;
	struct ul_q *q;
	/* The interface's state, followed over rtnetlink on the loop: the
	 * port's link is up while the interface is up with a carrier; its
	 * deletion (or move to another namespace) ends the port's data path. */
	struct mnl_socket *nl;
	hs_watch_t *nl_w;
	char *nl_buf;
	bool if_up;
	_Atomic uint32_t downs;   /* times the link went down (loop) */
	_Atomic bool gone;
	pthread_mutex_t stats_lock; /* PACKET_STATISTICS reads and resets */
	uint64_t kernel_drops;
	/* AF_XDP mode: the receive fast path, and the timer that keeps its
	 * MAC map in step with the switch's table (on the loop) */
	struct ul_xdp *xdp;
	int sync_fd;
	hs_watch_t *sync_w;
	struct mnl_socket *nlq;   /* dumps of the interface's unicast list */
	char *nlq_buf;
	uint32_t nlq_seq;
	struct hs_keyset host;    /* the interface's own unicast MACs */
	_Atomic uint64_t host_errors;
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

/* The filter: what the host sends out of the interface (a fanout group
 * ignores PACKET_IGNORE_OUTGOING before Linux 6.2's group flag) and what
 * is addressed to the host itself (its unicast, whatever its MAC is now)
 * belong to the host, not the switch. `none` drops everything (while a
 * socket is being set up). */
static int attach_filter(struct ul_port *u, int fd, bool none)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, (uint32_t)SKF_AD_OFF + SKF_AD_PKTTYPE),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_HOST, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PACKET_OUTGOING, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog prog = {.len = none ? 1 : sizeof(code) / sizeof(code[0]),
				  .filter = none ? &drop : code};
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
	/* nothing gets in before the socket has joined its group */
	rc = attach_filter(u, fd, true);
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
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf))) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
		if (q->qi == 0)
			hs_port_log(u->port, HS_LOG_INFO, "uplink %s: send buffer capped by "
				    "net.core.wmem_max (no CAP_NET_ADMIN): a send() may stop "
				    "early and be retried", u->ifname);
	}
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
	/* In its group: the real filter; what the drop-all one let into
	 * the ring meanwhile is nothing. */
	return attach_filter(u, fd, false);
}

/* Whether the interface `name` is up with a carrier. 0 or -errno. */
static int if_running(int s, const char *name, bool *up)
{
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, name, IFNAMSIZ);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	*up = (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
	return 0;
}

/* The interface: Ethernet? up with a carrier? */
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
		rc = if_running(s, u->ifname, &u->if_up);
	close(s);
	return rc;
}

/* ---- the interface's state, on the loop ---------------------------------------- */

static void unwatch(struct ul_port *u)
{
	for (uint16_t i = 0; i < u->cfg.queues; i++) {
		hs_port_set_queue_fd(u->port, i, HS_EV_KICK, -1);
		hs_port_set_queue_fd(u->port, i, HS_EV_POSTED, -1);
	}
}

/* The interface was deleted or left the namespace: the port's link goes
 * down for good, its fds leave the data path (a socket whose device is
 * gone would report an error forever). */
static void gone(struct ul_port *u)
{
	if (atomic_exchange(&u->gone, true))
		return;
	hs_port_log(u->port, HS_LOG_ERROR, "uplink %s is gone; link down", u->ifname);
	/* moved to another namespace, the interface would keep the program,
	 * redirecting to sockets it unbound; detached before the link goes
	 * down, so whoever sees the down sees the program gone */
	ul_xdp_detach(u->xdp);
	atomic_fetch_add(&u->downs, 1);
	hs_port_set_link(u->port, false);
	unwatch(u);
}

static void set_up(struct ul_port *u, bool up)
{
	if (up == u->if_up || atomic_load(&u->gone))
		return;
	u->if_up = up;
	hs_port_log(u->port, up ? HS_LOG_INFO : HS_LOG_WARN, "uplink %s is %s: link %s",
		    u->ifname, up ? "up" : "down or without carrier", up ? "up" : "down");
	/* Frames published before the down are not sent after it: the next
	 * commit skips them (tx_stale). */
	if (!up)
		atomic_fetch_add(&u->downs, 1);
	hs_port_set_link(u->port, up);
}

/* The interface's state by its index (its name may have changed). */
static void resync_state(struct ul_port *u)
{
	char name[IFNAMSIZ];
	if (!if_indextoname((unsigned)u->ifindex, name)) {
		gone(u);
		return;
	}
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool up = false;
	if (s >= 0 && !if_running(s, name, &up))
		set_up(u, up);
	if (s >= 0)
		close(s);
}

static void nl_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct ul_port *u = arg;
	(void)w, (void)events;
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(fd, u->nl_buf, MNL_SOCKET_BUFFER_SIZE, MSG_DONTWAIT);
		if (n < 0 && errno == ENOBUFS) {
			/* Notifications lost, the newest among them: what is still
			 * queued is older than the state now. Drop it, then read
			 * the state. */
			while (recv(fd, u->nl_buf, MNL_SOCKET_BUFFER_SIZE, MSG_DONTWAIT) > 0 ||
			       errno == ENOBUFS) {
			}
			resync_state(u);
			return;
		}
		if (n <= 0)
			return;
		const struct nlmsghdr *h = (const struct nlmsghdr *)u->nl_buf;
		for (int left = (int)n; mnl_nlmsg_ok(h, left); h = mnl_nlmsg_next(h, &left)) {
			if ((h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) ||
			    mnl_nlmsg_get_payload_len(h) < sizeof(struct ifinfomsg))
				continue;
			const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(h);
			/* (a bridge's own messages about its ports are AF_BRIDGE:
			 * a port leaving a bridge is not the device going) */
			if (ifm->ifi_index != u->ifindex || ifm->ifi_family != AF_UNSPEC)
				continue;
			char name[IFNAMSIZ];
			if (h->nlmsg_type == RTM_DELLINK) {
				if (!if_indextoname((unsigned)u->ifindex, name))
					gone(u);
			} else
				set_up(u, (ifm->ifi_flags & IFF_UP) && (ifm->ifi_flags & IFF_RUNNING));
		}
	}
}

/* ---- control ---------------------------------------------------------------------- */

static void retry_cb(hs_watch_t *w, int fd, unsigned events, void *arg);
static void ul_stop(void *priv);

/* AF_XDP on top of the AF_PACKET sockets: a queue with an AF_XDP socket
 * is kicked by an epoll of both. Not getting XDP is not an error: the
 * port stays on AF_PACKET, and says so. */
static void close_xdp(struct ul_port *u)
{
	/* the program first: the host's stack gets every frame back */
	ul_xdp_close(u->xdp);
	u->xdp = NULL;
	if (u->sync_fd >= 0)
		close(u->sync_fd);
	u->sync_fd = -1;
	for (unsigned i = 0; u->q && i < u->cfg.queues; i++) {
		if (u->q[i].ep >= 0)
			close(u->q[i].ep);
		u->q[i].ep = -1;
	}
	if (u->nlq)
		mnl_socket_close(u->nlq);
	u->nlq = NULL;
	free(u->nlq_buf);
	u->nlq_buf = NULL;
	hs_keyset_free(&u->host);
}

static int open_xdp_rest(struct ul_port *u);

static int open_xdp(struct ul_port *u)
{
	struct ul_xdp_params p = {.ifname = u->ifname, .ifindex = u->ifindex,
				  .queues = u->cfg.queues, .frames = u->cfg.xdp_frames,
				  .max_macs = u->cfg.xdp_macs,
				  .generic_only = u->cfg.flags & HS_UPLINK_XDP_GENERIC,
				  .zerocopy = u->cfg.flags & HS_UPLINK_XDP_ZEROCOPY,
				  .port = u->port};
	int rc = ul_xdp_open(&p, &u->xdp);
	if (!rc && (rc = open_xdp_rest(u)))
		close_xdp(u);
	if (rc) {
		u->xdp = NULL;
		hs_port_log(u->port, HS_LOG_WARN, "uplink %s: AF_XDP not available (%s): "
			    "AF_PACKET only", u->ifname,
			    rc == -EOPNOTSUPP ? "not in this build, or refused"
			    : rc == -EBUSY    ? "the interface has another XDP program"
			    : rc == -EADDRINUSE ? "a queue of the interface is bound to "
						  "another AF_XDP socket"
					      : hs_strerror(rc));
	}
	return 0;
}

/* The epolls, the sync timer and the netlink socket of the AF_XDP mode. */
static int open_xdp_rest(struct ul_port *u)
{
	int one = 1;
	u->nlq_buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	if (!u->nlq_buf || !(u->nlq = mnl_socket_open(NETLINK_ROUTE)) ||
	    mnl_socket_bind(u->nlq, 0, MNL_SOCKET_AUTOPID) < 0)
		return u->nlq_buf ? -errno : -ENOMEM;
	/* a dump of this device only (else of every device, filtered here) */
	setsockopt(mnl_socket_get_fd(u->nlq), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one,
		   sizeof(one));
	struct timeval tv = {.tv_sec = 1};
	setsockopt(mnl_socket_get_fd(u->nlq), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (unsigned i = 0; i < u->cfg.queues; i++) {
		struct ul_q *q = &u->q[i];
		int xfd = ul_xdp_fd(u->xdp, i);
		if (xfd < 0)
			continue;
		q->ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event e1 = {.events = EPOLLIN, .data.fd = q->fd};
		struct epoll_event e2 = {.events = EPOLLIN, .data.fd = xfd};
		if (q->ep < 0 || epoll_ctl(q->ep, EPOLL_CTL_ADD, q->fd, &e1) ||
		    epoll_ctl(q->ep, EPOLL_CTL_ADD, xfd, &e2))
			return -errno;
	}
	u->sync_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (u->sync_fd < 0)
		return -errno;
	struct itimerspec its = {.it_interval = {.tv_nsec = UL_XDP_SYNC_NS},
				 .it_value = {.tv_nsec = UL_XDP_SYNC_NS}};
	if (timerfd_settime(u->sync_fd, 0, &its, NULL))
		return -errno;
	return 0;
}

struct uc_walk {
	int ifindex;
	struct hs_keyset *set;
	int rc;
};

static int uc_cb(const struct nlmsghdr *nlh, void *data)
{
	struct uc_walk *w = data;
	if (nlh->nlmsg_type != RTM_NEWNEIGH ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ndmsg))
		return MNL_CB_OK;
	const struct ndmsg *ndm = mnl_nlmsg_get_payload(nlh);
	if (ndm->ndm_ifindex != w->ifindex || !(ndm->ndm_flags & NTF_SELF))
		return MNL_CB_OK;
	const struct nlattr *a;
	mnl_attr_for_each(a, nlh, sizeof(*ndm)) {
		if (mnl_attr_get_type(a) != NDA_LLADDR || mnl_attr_get_payload_len(a) != 6)
			continue;
		const uint8_t *m = mnl_attr_get_payload(a);
		if (!(m[0] & 1) && (w->rc = hs_keyset_push(w->set, hs_mac_key(m))))
			return MNL_CB_ERROR;
	}
	return MNL_CB_OK;
}

/* The interface's own unicast MACs, which the XDP path must never take
 * whatever a VM claims: its address, and the secondary ones its unicast
 * list holds (macvlan and macvtap children, VRRP's virtual MACs), which
 * the kernel lists as the device's "self permanent" FDB entries. */
static int host_macs(struct ul_port *u, const uint8_t own[6], struct hs_keyset *out)
{
	int rc = hs_keyset_push(out, hs_mac_key(own));
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(u->nlq_buf);
	nlh->nlmsg_type = RTM_GETNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	nlh->nlmsg_seq = ++u->nlq_seq;
	struct ndmsg *ndm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ndm));
	ndm->ndm_family = AF_BRIDGE;
	ndm->ndm_ifindex = u->ifindex;
	struct uc_walk w = {.ifindex = u->ifindex, .set = out};
	if (!rc)
		rc = hs_nl_request(u->nlq, u->nlq_buf, uc_cb, &w, &w.rc);
	hs_keyset_sort(out);
	return rc;
}

/* The XDP program's MAC map brought to the switch's table (on the loop). */
static void sync_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct ul_port *u = arg;
	(void)w, (void)events;
	uint64_t ticks;
	if (read(fd, &ticks, sizeof(ticks)) < 0 || atomic_load(&u->gone))
		return;
	char name[IFNAMSIZ];
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	if (s < 0 || !if_indextoname((unsigned)u->ifindex, name)) {
		if (s >= 0)
			close(s);
		return;
	}
	memcpy(ifr.ifr_name, name, IFNAMSIZ);
	uint8_t mac[6] = {0};
	int rc = ioctl(s, SIOCGIFHWADDR, &ifr);
	if (!rc)
		memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	/* the MTU, and whether the NIC keeps VLAN tags out of frames */
	if (!rc && !(rc = ioctl(s, SIOCGIFMTU, &ifr))) {
		uint32_t mtu = (uint32_t)ifr.ifr_mtu;
		struct ethtool_value ev = {.cmd = ETHTOOL_GFLAGS};
		ifr.ifr_data = (void *)&ev;
		bool no_rxvlan = ioctl(s, SIOCETHTOOL, &ifr) == 0 && !(ev.data & ETH_FLAG_RXVLAN);
		ul_xdp_set_dev(u->xdp, mtu, no_rxvlan);
	}
	close(s);
	struct hs_keyset host = {0};
	if (!rc && !(rc = host_macs(u, mac, &host))) {
		hs_keyset_free(&u->host);
		u->host = host;
		ul_xdp_sync_macs(u->xdp, hs_port_switch(u->port), &u->host);
	} else {
		/* without the host's MACs, no new MAC goes in this tick */
		hs_keyset_free(&host);
		atomic_fetch_add(&u->host_errors, 1);
	}
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
	/* xdp_frames sits where V1's tail padding was: a caller built
	 * against V1 passes that padding (sizeof was 32), maybe unset */
	if (size < HS_UPLINK_CONFIG_SIZE_V2)
		c.xdp_frames = c.xdp_macs = 0;
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
	if (!c.xdp_frames)
		c.xdp_frames = 2048;
	if (!c.xdp_macs)
		c.xdp_macs = 8192;
	if (c.xdp_frames < 64 || c.xdp_frames > 32768 || (c.xdp_frames & (c.xdp_frames - 1)) ||
	    c.xdp_macs > (1u << 20))
		return -EINVAL;
	if (!nl || nl >= IFNAMSIZ || c.mode > HS_UPLINK_XDP || c.queues > UL_QUEUES_MAX ||
	    c.rx_blocks < 2 || c.rx_blocks > 256 || c.rx_block_kib < 128 ||
	    c.rx_block_kib > 4096 || (c.rx_block_kib & (c.rx_block_kib - 1)) ||
	    c.tx_slots < UL_TX_PER_BLOCK || c.tx_slots > 68 * UL_TX_PER_BLOCK ||
	    (c.flags & ~(HS_UPLINK_NO_PROMISC | HS_UPLINK_NO_OFFLOAD | HS_UPLINK_QDISC_BYPASS |
			 HS_UPLINK_XDP_GENERIC | HS_UPLINK_XDP_ZEROCOPY)))
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
	u->sync_fd = -1;
	u->q = calloc(c.queues, sizeof(*u->q));
	if (!u->q) {
		ul_close(u);
		return -ENOMEM;
	}
	int rc = 0;
	for (unsigned i = 0; i < c.queues; i++) {
		struct ul_q *q = &u->q[i];
		q->fd = -1;
		q->ep = -1;
		q->u = u;
		q->qi = (uint16_t)i;
		q->posted_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		q->retry_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		atomic_store(&q->retry_ns, UL_RETRY_MIN_NS);
		if (q->posted_fd < 0 || q->retry_fd < 0)
			rc = -errno;
	}
	u->ifindex = (int)if_nametoindex(u->ifname);
	if (!rc && !u->ifindex) {
		hs_port_log(port, HS_LOG_ERROR, "uplink %s does not exist", u->ifname);
		rc = -ENODEV;
	}
	/* subscribed before the state is read: no change is missed between */
	u->nl_buf = malloc(MNL_SOCKET_BUFFER_SIZE);
	if (!rc && (!u->nl_buf || !(u->nl = mnl_socket_open(NETLINK_ROUTE)) ||
		    mnl_socket_bind(u->nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0))
		rc = u->nl_buf ? -errno : -ENOMEM;
	if (!rc && (rc = if_info(u)))
		hs_port_log(port, HS_LOG_ERROR, "uplink %s: %s", u->ifname,
			    rc == -EPROTONOSUPPORT ? "not an Ethernet interface"
						   : hs_strerror(rc));
	int fanout_id = -1;
	for (unsigned i = 0; !rc && i < c.queues; i++)
		rc = open_queue(u, &u->q[i], &fanout_id);
	if (!rc && c.mode == HS_UPLINK_XDP)
		rc = open_xdp(u);
	if (rc) {
		ul_close(u);
		return rc;
	}
	if (!(c.flags & HS_UPLINK_NO_OFFLOAD))
		u->caps = HS_CAP_CSUM | HS_CAP_GSO_TCPV4 | HS_CAP_GSO_TCPV6 | HS_CAP_GSO_ECN |
			  HS_CAP_GSO_UDP_L4;
	info->n_queues = c.queues;
	info->caps = u->caps;
	info->link_up = u->if_up;
	*priv = u;
	return 0;
}

static int ul_start(void *priv)
{
	struct ul_port *u = priv;
	hs_switch_t *sw = hs_port_switch(u->port);
	hs_port_log(u->port, HS_LOG_INFO,
		    "uplink %s: %s, %u queue(s), receive %u x %u KiB, send %u "
		    "slots, offloads %s, link %s", u->ifname,
		    u->xdp ? ul_xdp_mode(u->xdp) : "AF_PACKET", u->cfg.queues, u->nblocks,
		    u->bsize >> 10, u->tx_nslots, u->caps ? "on" : "off", u->if_up ? "up" : "down");
	int rc = 0;
	if (u->xdp)
		rc = hs_watch_add(sw, u->sync_fd, HS_WATCH_READ, sync_cb, u, &u->sync_w);
	for (uint16_t i = 0; !rc && i < u->cfg.queues; i++) {
		struct ul_q *q = &u->q[i];
		rc = hs_watch_add(sw, q->retry_fd, HS_WATCH_READ, retry_cb, q, &q->retry_w);
		if (!rc)
			rc = hs_port_set_queue_fd(u->port, i, HS_EV_KICK | HS_EV_FD_LEVEL,
						  q->ep >= 0 ? q->ep : q->fd);
		if (!rc)
			rc = hs_port_set_queue_fd(u->port, i, HS_EV_POSTED, q->posted_fd);
	}
	/* the interface's state last: its callback may take the fds out */
	if (!rc)
		rc = hs_watch_add(sw, mnl_socket_get_fd(u->nl), HS_WATCH_READ, nl_cb, u, &u->nl_w);
	if (rc)
		ul_stop(u); /* the core calls stop only for a port that started */
	return rc;
}

static void ul_stop(void *priv)
{
	struct ul_port *u = priv;
	/* the only place watches are deleted: each waits for its callback */
	hs_watch_del(u->nl_w);
	u->nl_w = NULL;
	hs_watch_del(u->sync_w);
	u->sync_w = NULL;
	unwatch(u);
	for (uint16_t i = 0; i < u->cfg.queues; i++) {
		hs_watch_del(u->q[i].retry_w);
		u->q[i].retry_w = NULL;
	}
}

static void ul_close(void *priv)
{
	struct ul_port *u = priv;
	close_xdp(u);
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
		if (q->retry_fd >= 0)
			close(q->retry_fd);
	}
	if (u->nl)
		mnl_socket_close(u->nl);
	free(u->nl_buf);
	free(u->q);
	pthread_mutex_destroy(&u->stats_lock);
	free(u);
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
	unsigned n = 0, bad = 0, trunc = 0, bad_off = 0, vlan = 0, runt = 0;
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
				runt++;
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
	/* the AF_XDP socket's after the ring's: a flow whose MAC just came
	 * into the map has its older frames in the ring */
	if (u->xdp && n < max)
		n += ul_xdp_recv(u->xdp, qi, pkts + n, q->rx_segs + n, max - n);
	if (bad)
		hs_port_count_drop(u->port, qi, HS_DROP_BAD_DESC, bad);
	if (trunc)
		hs_port_count_drop(u->port, qi, HS_DROP_OVERSIZE, trunc);
	if (runt)
		hs_port_count_drop(u->port, qi, HS_DROP_RUNT, runt);
	if (bad_off)
		hs_port_count_drop(u->port, qi, HS_DROP_BAD_OFFLOAD, bad_off);
	ctr_add(&q->rx_truncated, trunc);
	ctr_add(&q->rx_vlan_restored, vlan);
	if (bad || trunc || bad_off || runt)
		release_blocks(u, q); /* blocks whose frames were all dropped */
	if (n || bad || trunc || bad_off || runt) {
		q->empty = 0;
	} else if (++q->empty >= UL_EMPTY_CHECK) {
		/* Woken for nothing, again and again: a pending error (the
		 * interface went down) keeps the socket readable. Reading it
		 * clears it; what it means comes from rtnetlink (nl_cb). */
		q->empty = 0;
		int err = 0;
		socklen_t l = sizeof(err);
		getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &err, &l);
	}
	return n;
}

static unsigned ul_recv_done(void *priv, uint16_t qi, const struct hs_pkt *pkts, unsigned n)
{
	struct ul_port *u = priv;
	struct ul_q *q = &u->q[qi];
	uint64_t xt[64];
	unsigned nx = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t t = pkts[i].token;
		if (!(t & UL_XDP_TOKEN)) {
			q->done[t]++;
			continue;
		}
		xt[nx++] = t;
		if (nx == sizeof(xt) / sizeof(xt[0])) {
			ul_xdp_done(u->xdp, qi, xt, nx);
			nx = 0;
		}
	}
	if (nx)
		ul_xdp_done(u->xdp, qi, xt, nx);
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

/* A slot the kernel is done with (the kernel's own test: neither
 * waiting to be sent nor being sent; timestamp bits may be set). */
static bool slot_free(const struct tpacket3_hdr *h)
{
	return !(ld_status(&h->tp_status) & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING));
}

enum kick_result {
	KICK_DONE,  /* every published slot taken */
	KICK_AGAIN, /* some left for lack of room (qdisc, send buffer): retry */
	KICK_DOWN,  /* refused (the interface down or gone): no use retrying */
};

/* Has the kernel send every published slot. Any thread: the kernel
 * serialises sends on a ring, and only takes slots marked for it. A
 * send() that stops early for lack of room may still return a count:
 * the last published slot tells. */
static enum kick_result kick(struct ul_port *u, struct ul_q *q, bool log)
{
	ssize_t r;
	do
		r = send(q->fd, NULL, 0, MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);
	if (r >= 0) {
		uint32_t last = atomic_load_explicit(&q->tx_head_pub, memory_order_relaxed) - 1;
		return ld_status(&slot(q, last, u->tx_nslots)->tp_status) & TP_STATUS_SEND_REQUEST
			       ? KICK_AGAIN
			       : KICK_DONE;
	}
	int e = errno;
	if (e == EAGAIN || e == ENOBUFS)
		return KICK_AGAIN; /* room comes back by itself */
	atomic_fetch_add(&q->tx_kick_errors, 1);
	if (log && e != q->kick_errno) { /* once per kind, not per burst */
		q->kick_errno = e;
		hs_port_log(u->port, HS_LOG_WARN, "uplink %s: the kernel refused to send: %s",
			    u->ifname, hs_strerror(-e));
	}
	return KICK_DOWN;
}

/* Arms the retry timer (once until it fires). */
static void arm_retry(struct ul_q *q)
{
	if (atomic_exchange(&q->armed, true))
		return;
	uint32_t ns = atomic_load_explicit(&q->retry_ns, memory_order_relaxed);
	struct itimerspec it = {.it_value = {.tv_sec = ns / 1000000000u,
					     .tv_nsec = ns % 1000000000u}};
	if (timerfd_settime(q->retry_fd, 0, &it, NULL))
		atomic_store(&q->armed, false);
}

static unsigned ul_send_reserve(void *priv, uint16_t qi, const struct hs_out *out,
				unsigned n, struct hs_iobuf *bufs)
{
	struct ul_port *u = priv;
	struct ul_q *q = &u->q[qi];
	if (n > HS_RESERVE_MAX)
		n = HS_RESERVE_MAX;
	unsigned stale = 0;
	uint32_t downs = atomic_load_explicit(&u->downs, memory_order_relaxed);
	if (HSB_UNLIKELY(downs != atomic_load_explicit(&q->seen_down, memory_order_relaxed))) {
		/* The link went down since the last reservation: frames published
		 * before it and not sent are dropped, not sent late (the kernel
		 * skips a slot of length 0; if it is sending one now, it reads
		 * the length either way). They were counted as transmitted. */
		atomic_store_explicit(&q->seen_down, downs, memory_order_relaxed);
		for (uint32_t k = q->tx_head - u->tx_nslots; k != q->tx_head; k++) {
			struct tpacket3_hdr *h = slot(q, k, u->tx_nslots);
			if (ld_status(&h->tp_status) & TP_STATUS_SEND_REQUEST) {
				h->tp_len = 0;
				stale++;
			}
		}
		ctr_add(&q->tx_stale, stale);
	}
	/* A full ring may only be waiting for a send() that stopped early
	 * (pending; the kernel skips what was just marked stale). One that
	 * the kernel is still sending needs no system call per reservation. */
	if ((stale || (atomic_load_explicit(&q->pending, memory_order_relaxed) &&
		       !slot_free(slot(q, q->tx_head, u->tx_nslots)))) &&
	    kick(u, q, true) == KICK_DONE)
		atomic_store(&q->pending, false);
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
		if (!slot_free(h))
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
	atomic_store_explicit(&q->tx_head_pub, q->tx_head, memory_order_relaxed);
	q->n_resv = 0;
	ctr_add(&q->tx_skipped, skipped);
	if (!used)
		return 0;
	enum kick_result k = kick(u, q, true);
	if (k == KICK_DONE) {
		q->kick_errno = 0;
	} else {
		/* published frames wait (pending first: the timer's callback
		 * clears it before it sends); for lack of room the timer
		 * retries, also if no frame follows these; refused, the next
		 * reservation does */
		atomic_store(&q->pending, true);
		if (k == KICK_AGAIN)
			arm_retry(q);
	}
	return 0;
}

/* True if the next slot to reserve is free (from the loop: as of the
 * last commit, which is enough to wake the switch; it checks again). */
static bool tx_room(const struct ul_port *u, const struct ul_q *q)
{
	uint32_t head = atomic_load_explicit(&q->tx_head_pub, memory_order_relaxed);
	return slot_free(slot(q, head, u->tx_nslots));
}

/* On the loop: the retry timer fired. Sends what waits, tells the switch
 * when its backlog has room, and waits longer each time nothing moved. */
static void retry_cb(hs_watch_t *w, int fd, unsigned events, void *arg)
{
	struct ul_q *q = arg;
	struct ul_port *u = q->u;
	(void)w, (void)events;
	uint64_t x;
	if (read(fd, &x, sizeof(x)) < 0) {
		/* not expired yet (re-armed meanwhile): nothing to do */
	}
	atomic_store(&q->armed, false);
	if (atomic_load(&u->gone))
		return; /* nothing will ever be sent */
	if (atomic_load(&u->downs) != atomic_load(&q->seen_down))
		return; /* stale frames wait: the next reservation drops them
			   first, and sends */
	bool again = false, moved = false;
	bool pend = atomic_exchange(&q->pending, false); /* before the send: see commit */
	if (pend || atomic_load(&q->want_room)) {
		atomic_fetch_add(&q->tx_retries, 1);
		enum kick_result k = kick(u, q, false);
		if (k == KICK_DONE) {
			moved = pend;
		} else {
			atomic_store(&q->pending, true);
			/* down: the next commit, once it is up, sends again */
			again = k == KICK_AGAIN;
		}
	}
	if (atomic_load(&q->want_room) && u->if_up) {
		if (tx_room(u, q) && atomic_exchange(&q->want_room, false)) {
			uint64_t one = 1;
			if (write(q->posted_fd, &one, sizeof(one)) < 0) {
				/* the counter is full: it is signalled already */
			}
			moved = true;
		} else {
			again = true;
		}
	}
	uint32_t ns = atomic_load(&q->retry_ns);
	ns = moved || !again ? UL_RETRY_MIN_NS : ns >= UL_RETRY_MAX_NS / 2 ? UL_RETRY_MAX_NS : ns * 2;
	atomic_store(&q->retry_ns, ns);
	if (again)
		arm_retry(q);
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
		atomic_store(&q->want_room, false);
		return false;
	}
	if (tx_room(u, q))
		return true;
	atomic_store(&q->want_room, true);
	arm_retry(q);
	return tx_room(u, q); /* freed meanwhile */
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
	uint64_t trunc = 0, vlan = 0, kerr = 0, skip = 0, retries = 0, stale = 0;
	pthread_mutex_lock(&u->stats_lock);
	for (unsigned i = 0; i < u->cfg.queues; i++) {
		struct ul_q *q = &u->q[i];
		trunc += atomic_load_explicit(&q->rx_truncated, memory_order_relaxed);
		vlan += atomic_load_explicit(&q->rx_vlan_restored, memory_order_relaxed);
		kerr += atomic_load_explicit(&q->tx_kick_errors, memory_order_relaxed);
		skip += atomic_load_explicit(&q->tx_skipped, memory_order_relaxed);
		retries += atomic_load_explicit(&q->tx_retries, memory_order_relaxed);
		stale += atomic_load_explicit(&q->tx_stale, memory_order_relaxed);
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
	cb(arg, "tx_retries", retries);
	cb(arg, "tx_stale", stale);
	if (u->xdp) {
		ul_xdp_counters(u->xdp, cb, arg);
		cb(arg, "xdp_host_mac_errors", atomic_load(&u->host_errors));
	}
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
	struct ul_port *u = hs_port_backend_priv(port, &hs__uplink_ops);
	if (!u)
		return NULL;
	return u->xdp ? ul_xdp_mode(u->xdp) : "packet";
}

bool hs_uplink_xdp_built(void)
{
#ifdef HS_HAVE_XDP
	return true;
#else
	return false;
#endif
}

/*
 * vhost_user.c - the "vhost-user" backend's lifecycle and connection: the
 * unix socket (server, or client that reconnects), reading messages one
 * at a time with the fds that came with each, and device reset. Handlers
 * are in vu_msg.c, ring state in vu_ring.c, guest memory in vu_mem.c,
 * the data path in vhost_user_net.c.
 *
 * Security model: the front-end (and through it the guest) is untrusted.
 * Messages are read header first, so file descriptors received belong to
 * exactly one message; payloads larger than the protocol allows end the
 * connection (the stream cannot be trusted any more); everything else is
 * checked by vu_dispatch before a handler runs. In server mode the socket
 * gets its owner and mode (default 0600: only the switch's own user may
 * connect) before it listens, so no connection is possible in between.
 *
 * Peer state (the paper's VM-state-aware notification): at a connect the
 * front-end's process (SO_PEERCRED) and its vCPU threads (by name) are
 * found, and their scheduler state is read every millisecond
 * (vu_vcpu.c): a vCPU runnable tells the core the guest runs (its
 * notifications go out once, at the end of the round), all asleep that
 * it is blocked (notified at the end of each batch). An estimate from
 * outside; a VMM that embeds the library says it exactly with
 * hs_port_set_peer_state (and HS_VU_NO_VCPU_STATE). No vCPU threads
 * (DPDK virtio-user, another pid namespace), no front-end, or the flag:
 * the state stays unknown and the ring's event requests alone decide.
 *
 * Threads: all of this runs on the switch's loop thread (watch and timer
 * callbacks) except open/start/stop/close (the hs_port_add/del caller).
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vu_dev.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* Ring fields and virtio-net headers are used in host byte order: right
 * for virtio 1.0 (little endian) on a little-endian host only. Legacy
 * guests use their own byte order; cross-endian legacy guests need
 * VHOST_USER_PROTOCOL_F_CROSS_ENDIAN, which is not offered, so QEMU
 * refuses to start them on this back-end. */
#error "the vhost-user backend supports little-endian hosts only"
#endif

/* ---- connection --------------------------------------------------------------------------- */


static void drop_fds(struct vu_dev *d)
{
	for (unsigned i = 0; i < d->nrfds; i++)
		if (d->rfds[i] >= 0)
			close(d->rfds[i]);
	d->nrfds = 0;
}

/* A message the connection cannot read past: a bad message like any
 * other (counted, said why), and then the end of the connection. */
static void conn_refuse(struct vu_dev *d, const char *what, const char *why)
{
	atomic_fetch_add(&d->msgs, 1);
	atomic_fetch_add(&d->bad_msgs, 1);
	hs_port_log(d->port, HS_LOG_WARN, "%s", what);
	vu_disconnect(d, why);
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
				char what[80];
				snprintf(what, sizeof(what),
					 "request %u with a %u-byte payload (at most %u)",
					 h.request, h.size, VU_MAX_PAYLOAD);
				conn_refuse(d, what, "oversized message");
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
				vu_disconnect(d, "front-end closed the connection");
				return;
			}
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return;
				if (errno == EINTR)
					continue;
				vu_disconnect(d, strerror(errno));
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
				conn_refuse(d, "a message with more file descriptors than any carries",
					    "too many file descriptors in one message");
				return;
			}
			d->rlen += (size_t)r;
			continue;
		}
		struct vu_msg m = {.payload = d->rbuf + sizeof(struct vu_hdr),
				   .fds = d->rfds, .nfds = d->nrfds};
		memcpy(&m.hdr, d->rbuf, sizeof(m.hdr));
		bool ok = vu_dispatch(d, &m);
		drop_fds(d); /* whatever the handler did not take */
		d->rlen = 0;
		if (!ok) {
			vu_disconnect(d, "request failed");
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
		     (1ull << HS_VIRTIO_F_INDIRECT_DESC) | (1ull << HS_VIRTIO_F_IN_ORDER) |
		     (1ull << HS_VIRTIO_NET_F_MRG_RXBUF) | (1ull << HS_VIRTIO_NET_F_CSUM) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_CSUM) |
		     (1ull << HS_VIRTIO_NET_F_HOST_TSO4) | (1ull << HS_VIRTIO_NET_F_HOST_TSO6) |
		     (1ull << HS_VIRTIO_NET_F_HOST_ECN) | (1ull << HS_VIRTIO_NET_F_HOST_USO) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_TSO4) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_TSO6) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_ECN) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_USO4) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_USO6) |
		     (1ull << HS_VIRTIO_NET_F_STATUS) | (1ull << HS_VIRTIO_NET_F_CTRL_VQ) |
		     (1ull << HS_VIRTIO_NET_F_GUEST_ANNOUNCE) | (1ull << VU_F_LOG_ALL) |
		     (1ull << HS_VIRTIO_F_IOMMU_PLATFORM);
	if (d->nqp > 1)
		f |= 1ull << HS_VIRTIO_NET_F_MQ;
	if (d->cfg.mtu)
		f |= 1ull << HS_VIRTIO_NET_F_MTU;
	return f & ~d->cfg.features_off;
}

/* Back to the state of a device nobody configured (keeps the connection). */
void vu_device_reset(struct vu_dev *d, bool keep_session)
{
	vu_quiesce(d);
	for (unsigned i = 0; i < 2u * d->nqp; i++)
		vu_ring_reset(d, i);
	vu_mem_free(d->mem);
	d->mem = NULL;
	vu_log_reset(d);
	vu_iotlb_reset(d, keep_session);
	d->features = 0;
	if (!keep_session) {
		d->proto = 0;
		d->owner = false;
	}
	d->status = 0;
	d->hdr_len = 12;
	d->mrg = false;
	atomic_store(&d->acked, 0);
	d->tx_caps = 0; /* the guest's offload requests this connection allows */
	hs_port_set_caps(d->port, 0);
	d->mtu = 0;
	hs_port_set_mtu(d->port, 0);
	vu_rings_update(d);
	vu_resume(d);
}

static void accept_cb(hs_watch_t *w, int fd, unsigned events, void *arg);
static int try_connect(struct vu_dev *d);

/* Once armed, the retry timer stays for the port's life and only vu_stop
 * deletes it: a callback that deleted its own timer raced vu_stop on the
 * hs_port_del caller's thread, which could then delete a freed timer.
 * While connected a tick costs one compare, every reconnect_ms. */
static void retry_cb(hs_timer_t *t, void *arg)
{
	struct vu_dev *d = arg;
	(void)t;
	if (d->conn_fd < 0)
		try_connect(d);
}

/* A client port's connection attempts: the first on the loop's next
 * turn, so that every try runs on the loop thread (from hs_port_add's
 * caller's thread, adopt raced the loop thread's handling of the new
 * connection), then one every reconnect_ms while disconnected. */
static int start_connecting(struct vu_dev *d)
{
	uint32_t ms = d->cfg.reconnect_ms ? d->cfg.reconnect_ms : 500;
	return hs_timer_add(hs_port_switch(d->port), 0, ms, retry_cb, d, &d->retry_t);
}

void vu_disconnect(struct vu_dev *d, const char *why)
{
	if (d->conn_fd < 0)
		return;
	hs_port_log(d->port, HS_LOG_INFO, "front-end disconnected: %s", why);
	atomic_fetch_add(&d->disconnects, 1);
	hs_watch_del(d->conn_w);
	d->conn_w = NULL;
	vu_vcpu_stop(d);
	vu_close_fd(&d->conn_fd);
	drop_fds(d);
	d->rlen = 0;
	vu_device_reset(d, false);
	atomic_store(&d->connected, false); /* a client's retry timer reconnects */
}

/* On the loop thread. The connection is set up whole before its watch
 * exists: conn_cb may run as soon as it does. */
static int adopt(struct vu_dev *d, int fd)
{
	d->conn_fd = fd;
	vu_vcpu_start(d, fd);
	int rc = hs_watch_add(hs_port_switch(d->port), fd, HS_WATCH_READ, conn_cb, d,
			      &d->conn_w);
	if (rc) {
		vu_vcpu_stop(d);
		vu_close_fd(&d->conn_fd);
		return rc;
	}
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

/* Runs on the loop thread (the retry timer's, first try included), so
 * it must not wait: the socket is non-blocking before the connect. A Unix
 * socket's connect completes at once or fails; with the VMM's listen
 * backlog full it fails with EAGAIN (a blocking one would wait for ever,
 * and every port's control plane, with no workers the switching too,
 * with it), and the next tick tries again. */
static int try_connect(struct vu_dev *d)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, d->path, strlen(d->path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return adopt(d, fd);
}

/* The socket's path with its directory resolved (symlinks, ".", "..",
 * doubled slashes), so that two spellings of one path are one path for
 * socket_in_use, which compares the names the kernel lists. Left as
 * given when the directory does not resolve (bind then reports why). */
static void canonical_path(const char *in, char *out, size_t n)
{
	snprintf(out, n, "%s", in);
	char dir[PATH_MAX];
	const char *slash = strrchr(in, '/');
	if (!slash || !slash[1])
		return;
	size_t dl = slash == in ? 1 : (size_t)(slash - in);
	if (dl >= sizeof(dir))
		return;
	memcpy(dir, in, dl);
	dir[dl] = 0;
	char real[PATH_MAX];
	if (!realpath(dir, real))
		return;
	char buf[PATH_MAX + 2];
	int len = snprintf(buf, sizeof(buf), "%s/%s", strcmp(real, "/") ? real : "", slash + 1);
	if (len > 0 && (size_t)len < n)
		memcpy(out, buf, (size_t)len + 1);
}

/* Whether a socket listens at path: /proc/net/unix lists every bound unix
 * socket of this network namespace with its flags (__SO_ACCEPTCON,
 * 0x10000, once it listens). Read, not probed with a connect, which
 * another server would take for a front-end. */
static bool socket_in_use(const char *path)
{
	FILE *f = fopen("/proc/net/unix", "re");
	if (!f)
		return false;
	char line[512];
	bool used = false;
	size_t plen = strlen(path);
	while (!used && fgets(line, sizeof(line), f)) {
		unsigned long flags;
		int at = 0;
		if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %n", &flags, &at) != 1 || !at)
			continue;
		const char *p = line + at;
		used = (flags & 0x10000) && !strncmp(p, path, plen) &&
		       (p[plen] == '\n' || p[plen] == 0);
	}
	fclose(f);
	return used;
}

/* Gives the socket just bound at d->path its mode and owner without
 * following the path anywhere else: the inode is opened with O_PATH |
 * O_NOFOLLOW and must be a socket (whoever can write the directory could
 * otherwise swap the name for a symlink between bind and chmod, and the
 * switch, often root, would hand that symlink's target to the VMM's
 * user). */
static int socket_perms(struct vu_dev *d)
{
	int pfd = open(d->path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	char via[40];
	snprintf(via, sizeof(via), "/proc/self/fd/%d", pfd);
	mode_t mode = d->cfg.socket_mode ? (mode_t)d->cfg.socket_mode : 0600;
	if (fstat(pfd, &st))
		rc = -errno;
	else if (!S_ISSOCK(st.st_mode))
		rc = -ELOOP; /* not the socket we bound: somebody swapped the name */
	else if (chmod(via, mode)) /* the inode pfd holds, through /proc */
		rc = -errno;
	else if ((d->cfg.flags & HS_VU_SOCKET_OWNER) &&
		 fchownat(pfd, "", (uid_t)d->cfg.socket_uid, (gid_t)d->cfg.socket_gid,
			  AT_EMPTY_PATH))
		rc = -errno;
	close(pfd);
	return rc;
}

/* Listens on the socket path: bound, given its owner and mode, and only
 * then listening (a connect before that is refused by the kernel), so no
 * front-end connects through permissions it was not meant to have. On
 * failure nothing is left behind. */
static int start_server(struct vu_dev *d)
{
	struct stat st;
	if (!lstat(d->path, &st)) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST; /* never remove anything but a socket */
		if (socket_in_use(d->path))
			return -EADDRINUSE; /* another switch (or port) serves it */
		unlink(d->path); /* a stale socket of an earlier run */
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, d->path, strlen(d->path));
	int rc = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = socket_perms(d);
	if (!rc && listen(fd, 4))
		rc = -errno;
	if (!rc)
		rc = hs_watch_add(hs_port_switch(d->port), fd, HS_WATCH_READ, accept_cb, d,
				  &d->listen_w);
	if (rc) {
		hs_port_log(d->port, HS_LOG_ERROR, "socket %s: %s", d->path, hs_strerror(rc));
		if (rc != -ELOOP)
			unlink(d->path);
		close(fd);
		return rc;
	}
	d->created_socket = true;
	d->listen_fd = fd;
	return 0;
}

/* ---- backend lifecycle -------------------------------------------------------------------- */

static void vu_close(void *priv)
{
	struct vu_dev *d = priv;
	if (!d)
		return;
	for (unsigned i = 0; i < 2u * d->nqp; i++) {
		vu_close_fd(&d->vr[i].kickfd);
		vu_close_fd(&d->vr[i].callfd);
		vu_close_fd(&d->vr[i].errfd);
	}
	vu_mem_free(d->mem);
	vu_log_reset(d);
	vu_iotlb_reset(d, false);
	pthread_mutex_destroy(&d->backend_lock);
	vu_close_fd(&d->fault_fd);
	if (d->rxq)
		for (unsigned q = 0; q < d->nqp; q++) {
			free(d->rxq[q].chain);
			free(d->rxq[q].segs);
		}
	free(d->rxq);
	free(d->txq);
	free(d->txlate);
	free(d);
}

static int vu_open(hs_port_t *port, const void *config, size_t size, void **priv,
		   struct hs_port_info *info)
{
	struct hs_vhost_user_config c;
	if (!config)
		return -EINVAL;
	int crc = hs_config_copy(&c, sizeof(c), config, size, HS_VHOST_USER_CONFIG_SIZE_V1);
	if (crc)
		return crc;
	if (!c.path || !c.path[0] || strlen(c.path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -EINVAL;
	if (!c.queue_pairs)
		c.queue_pairs = 1;
	if (c.queue_pairs > VU_MAX_QP ||
	    (c.flags & ~(uint32_t)(HS_VU_CLIENT | HS_VU_SOCKET_OWNER | HS_VU_NO_VCPU_STATE)) ||
	    (c.mtu && c.mtu < 68) || (c.socket_mode & ~0777u))
		return -EINVAL;
	struct vu_dev *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->port = port;
	d->cfg = c;
	if (c.flags & HS_VU_CLIENT)
		snprintf(d->path, sizeof(d->path), "%s", c.path);
	else
		canonical_path(c.path, d->path, sizeof(d->path));
	d->cfg.path = d->path;
	d->nqp = c.queue_pairs;
	d->listen_fd = d->conn_fd = -1;
	d->vcpu.procfd = -1;
	d->hdr_len = 12;
	d->log_fd = -1;
	d->backend_fd = -1;
	pthread_mutex_init(&d->backend_lock, NULL);
	d->log.overflow = &d->log_overflow;
	d->log_map.fault_slot = -1;
	d->fault_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned i = 0; i < 2u * VU_MAX_QP; i++) {
		d->vr[i].kickfd = d->vr[i].callfd = d->vr[i].errfd = -1;
		vq_reset(&d->vr[i].vq);
	}
	d->txq = calloc(d->nqp, sizeof(*d->txq));
	d->txlate = calloc(d->nqp, sizeof(*d->txlate));
	d->rxq = calloc(d->nqp, sizeof(*d->rxq));
	if (!d->txq || !d->txlate || !d->rxq || d->fault_fd < 0) {
		vu_close(d);
		return -ENOMEM;
	}
	d->offered = offered_features(d);
	d->proto_offered = (1ull << VU_PF_MQ) | (1ull << VU_PF_REPLY_ACK) |
			   (1ull << VU_PF_MEM_SLOTS) | (1ull << VU_PF_STATUS) |
			   (1ull << VU_PF_LOG_SHMFD) | (1ull << VU_PF_RARP) |
			   (1ull << VU_PF_RESET_DEVICE) | (1ull << VU_PF_BACKEND_REQ) |
			   (1ull << VU_PF_IOTLB) |
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
	int rc = vu_faults_watch(d);
	if (rc)
		return rc;
	if (!(d->cfg.flags & HS_VU_CLIENT)) {
		rc = start_server(d);
		if (rc) {
			/* A failed start is never stopped: undo it here. */
			hs_port_log(d->port, HS_LOG_ERROR, "cannot listen on %s: %s", d->path,
				    hs_strerror(rc));
			hs_watch_del(d->fault_w);
			d->fault_w = NULL;
		}
		return rc;
	}
	rc = start_connecting(d);
	if (rc) { /* it would never connect: say so, and undo the start */
		hs_port_log(d->port, HS_LOG_ERROR, "cannot start connecting to %s: %s", d->path,
			    hs_strerror(rc));
		hs_watch_del(d->fault_w);
		d->fault_w = NULL;
	}
	return rc;
}

static void vu_stop(void *priv)
{
	struct vu_dev *d = priv;
	hs_watch_del(d->fault_w);
	d->fault_w = NULL;
	hs_timer_del(d->retry_t);
	d->retry_t = NULL;
	hs_timer_del(d->poll_t);
	d->poll_t = NULL;
	hs_watch_del(d->listen_w);
	d->listen_w = NULL;
	hs_watch_del(d->conn_w);
	d->conn_w = NULL;
	vu_vcpu_stop(d); /* no callback can start it again now */
	vu_close_fd(&d->conn_fd);
	vu_close_fd(&d->listen_fd);
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
	cb(arg, "memory_faults", atomic_load(&d->memory_faults));
	uint64_t bad_rx = 0;
	for (unsigned q = 0; q < d->nqp; q++)
		bad_rx += atomic_load_explicit(&d->rxq[q].bad_buffers, memory_order_relaxed);
	cb(arg, "bad_rx_buffers", bad_rx);
	cb(arg, "dirty_log_overflow", atomic_load(&d->log_overflow));
	cb(arg, "announces", atomic_load(&d->announces));
	cb(arg, "iotlb_misses", atomic_load(&d->iotlb_misses));
	cb(arg, "iotlb_updates", atomic_load(&d->iotlb_updates));
	cb(arg, "iotlb_invalidates", atomic_load(&d->iotlb_invalidates));
	cb(arg, "iotlb_flushes", atomic_load(&d->iotlb_flushes));
	cb(arg, "vcpu_state_reads", atomic_load(&d->vcpu_reads));
	cb(arg, "vcpu_scans", atomic_load(&d->vcpu_scans));
	cb(arg, "vcpu_threads", atomic_load(&d->vcpu_threads));
	cb(arg, "peer_running", atomic_load(&d->peer_running));
	cb(arg, "peer_not_running", atomic_load(&d->peer_not_running));
	cb(arg, "vcpu_idle", atomic_load(&d->vcpu_idle));
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

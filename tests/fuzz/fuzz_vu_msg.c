/*
 * fuzz_vu_msg.c - libFuzzer target (a): a vhost-user message stream, with
 * file descriptors (memfds, eventfds, a short file, a non-regular file, a socket),
 * into the backend's connection state machine (vu_dispatch and every
 * handler), then the data path over whatever rings the stream set up:
 * the guest's transmit rings are kicked (sender context) and a broadcast
 * from a mem port is delivered into its receive rings. The guest memory
 * (one memfd) is filled from the input, so ring contents are fuzzed too;
 * the input may shrink it after the switch mapped it (the SIGBUS path).
 *
 * Input: [pages 1][flags 1][fill length 2][fill bytes] then messages
 * [request 1][flags 1][fd count 1][payload size 2][payload][one kind byte
 * per fd]. Multi-byte numbers are little endian. Regions in the seeds use
 * front-end addresses (uva) 0x7f0000000000 + offset and guest addresses
 * (gpa) = offset. tests/fuzz/seeds.py writes the seeds.
 *
 * One switch with one 2-queue-pair vhost-user port and one mem port lives
 * for the whole run; every input ends with the front-end disconnecting,
 * which resets the device.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backends/vu_dev.h"

static hs_switch_t *sw;
static hs_port_t *vport, *mport;

static void quiet(void *opaque, enum hs_log_level lvl, const char *msg)
{
	(void)opaque, (void)lvl, (void)msg;
}

static void setup(void)
{
	struct hs_switch_config sc = {.log_fn = quiet};
	if (hs_switch_create(&sc, &sw))
		abort();
	static char path[64];
	snprintf(path, sizeof(path), "/tmp/hs-fuzz-vu-%d.sock", (int)getpid());
	struct hs_vhost_user_config vc = {.path = path, .queue_pairs = 2, .mtu = 9000};
	struct hs_port_config pc = {.name = "vu", .backend = HS_VHOST_USER_BACKEND,
				    .backend_config = &vc, .backend_config_size = sizeof(vc),
				    .mtu = 9000};
	struct hs_mem_config mc = {.buf_size = 9100};
	struct hs_port_config mp = {.name = "m", .backend = HS_MEM_BACKEND,
				    .backend_config = &mc, .backend_config_size = sizeof(mc),
				    .mtu = 9000};
	if (hs_port_add(sw, &pc, &vport) || hs_port_add(sw, &mp, &mport))
		abort();
}

struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint32_t take(struct cursor *c, unsigned bytes)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < bytes && c->n; i++, c->n--)
		v |= (uint32_t)*c->p++ << (8 * i);
	return v;
}

/* A file descriptor of the kind the input asks for. */
static int make_fd(unsigned kind, int memfd)
{
	switch (kind % 6) {
	case 0:
		return dup(memfd);
	case 1:
		return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	case 2: { /* a file shorter than any region */
		int fd = memfd_create("short", MFD_CLOEXEC);
		if (fd >= 0 && ftruncate(fd, 4096)) {
		}
		return fd;
	}
	case 3:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	case 4: { /* a socket (the back-end request channel): its peer stays
		   * open until the next one, so reports are really sent */
		static int peer = -1;
		int sp[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
			return -1;
		if (peer >= 0)
			close(peer);
		peer = sp[1];
		return sp[0];
	}
	default:
		return -1; /* "no fd" where one was promised */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!sw)
		setup();
	struct vu_dev *d = hs_port_backend_priv(vport, &hs__vhost_user_ops);
	struct cursor c = {data, size};
	size_t pages = take(&c, 1) % 64 + 1;
	uint32_t flags = take(&c, 1);
	int memfd = memfd_create("guest", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, (off_t)(pages * 4096)))
		abort();
	size_t fill = take(&c, 2);
	if (fill > c.n)
		fill = c.n;
	if (fill > pages * 4096)
		fill = pages * 4096;
	if (fill && pwrite(memfd, c.p, fill, 0) != (ssize_t)fill)
		abort();
	c.p += fill;
	c.n -= fill;

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv))
		abort();
	d->conn_fd = sv[0];
	static uint8_t payload[VU_MAX_PAYLOAD], junk[4096];
	for (unsigned k = 0; c.n >= 5 && k < 256; k++) {
		struct vu_msg m = {.payload = payload};
		m.hdr.request = take(&c, 1);
		m.hdr.flags = take(&c, 1);
		unsigned nfds = take(&c, 1) % 9;
		m.hdr.size = take(&c, 2) % (VU_MAX_PAYLOAD + 1);
		size_t got = m.hdr.size < c.n ? m.hdr.size : c.n;
		memset(payload, 0, sizeof(payload));
		memcpy(payload, c.p, got);
		c.p += got;
		c.n -= got;
		int fds[8];
		m.fds = fds;
		m.nfds = 0;
		for (unsigned i = 0; i < nfds && i < 8; i++) {
			int fd = make_fd(take(&c, 1), memfd);
			if (fd >= 0)
				fds[m.nfds++] = fd;
		}
		bool ok = vu_dispatch(d, &m);
		for (unsigned i = 0; i < m.nfds; i++) /* what the handler did not take */
			if (fds[i] >= 0)
				close(fds[i]);
		while (recv(sv[1], junk, sizeof(junk), MSG_DONTWAIT) > 0) {
		}
		if (!ok)
			break;
	}
	/* The data path over whatever is live now. */
	if (flags & 1) /* the front-end shrinks its memory under the switch */
		if (ftruncate(memfd, (off_t)((flags >> 4) * 512))) {
		}
	for (uint16_t q = 0; q < hs_port_n_queues(vport); q++)
		hs_port_kick(vport, q);
	static uint8_t frame[1514] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9,
				      0x88, 0xb5};
	struct hs_mem_frame f = {.data = frame, .len = (flags & 2) ? 1514 : 64, .cookie = 1};
	hs_mem_tx_burst(mport, 0, &f, 1);
	uint64_t ck;
	hs_mem_tx_reap(mport, 0, &ck, 1);
	struct hs_mem_frame rx[64];
	int n = hs_mem_rx_burst(mport, 0, rx, 64);
	if (n > 0)
		hs_mem_rx_release(mport, 0, (unsigned)n);
	hs_switch_dispatch(sw); /* memory faults, timers */
	if (getenv("FUZZ_VERBOSE")) { /* what a seed reaches */
		struct hs_port_stats st;
		hs_port_get_stats(vport, &st);
		fprintf(stderr, "link %d, from the guest %llu frames, to it %llu\n",
			hs_port_link_up(vport), (unsigned long long)st.rx_packets,
			(unsigned long long)st.tx_packets);
	}
	vu_disconnect(d, "end of input");
	close(sv[1]);
	close(memfd);
	return 0;
}

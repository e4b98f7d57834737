/*
 * test_tap.c - the tap backend's write path against the real kernel: a tap
 * device on the switch, a packet socket (AF_PACKET) on the same interface
 * sees every frame the switch writes into it, exactly as the kernel got it.
 *
 * Frames come from a "tbe" test port cut into chosen segment layouts, so
 * every path of the tap's by-reference write is taken: small frames staged,
 * large ones written straight from the sender's segments, frames with more
 * segments than a frame's iovec budget, and a round whose frames together
 * exceed the queue's iovec pool (both fall back to staging). And the other
 * way: a frame sent on the interface reaches the tbe port.
 *
 * The suite runs twice (ctest: tap, tap_syscalls): with the port's
 * default I/O (io_uring batches where the library has liburing and the
 * kernel allows io_uring) and with HS_TAP_NO_URING (TEST_TAP_NO_URING=1):
 * one read or writev per frame. Each run checks which of the two it got.
 * The cases of the device's state (its link in any namespace, its MTU)
 * do not depend on the I/O and run in the first only.
 *
 * Needs root and /dev/net/tun; exits 77 (skipped) without them. The tap is
 * created here and removed by the switch (hs_port_del), also on failure
 * (the device is not persistent: it goes with its file).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef HS_HAVE_URING
#include <liburing.h>
#endif

#include "helpers.h"
#include "testbe.h"

#define ETYPE 0x88b5 /* IEEE local experimental: nothing else sends it */

static uint32_t mode_flags; /* HS_TAP_NO_URING in the tap_syscalls run */
static bool uring_expected; /* the ports of this run batch through io_uring */

struct rig {
	hs_switch_t *sw;
	hs_port_t *src, *tap;
	int ps; /* packet socket on the tap */
	int ifindex;
};

static void rig_up_w(struct rig *r, uint32_t tap_flags, unsigned workers)
{
	struct hs_switch_config c = {.n_workers = workers, .burst = 64};
	r->sw = th_switch(&c);
	struct tbe_config sc = {.rx_posted = 2048}; /* room for a test's bursts */
	r->src = tbe_port(r->sw, "src", &sc, 0);
	ck_assert_ptr_nonnull(r->src);
	char name[IFNAMSIZ];
	snprintf(name, sizeof(name), "hst%d", (int)getpid() % 100000);
	struct hs_tap_config tc = {.ifname = name, .flags = HS_TAP_UP | tap_flags | mode_flags};
	struct hs_port_config pc = {.name = "tap", .backend = HS_TAP_BACKEND,
				    .backend_config = &tc, .backend_config_size = sizeof(tc)};
	ck_assert_int_eq(hs_port_add(r->sw, &pc, &r->tap), 0);
	r->ifindex = (int)if_nametoindex(hs_tap_ifname(r->tap));
	ck_assert_int_gt(r->ifindex, 0);
	r->ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETYPE));
	ck_assert_int_ge(r->ps, 0);
	struct sockaddr_ll sa = {.sll_family = AF_PACKET, .sll_protocol = htons(ETYPE),
				 .sll_ifindex = r->ifindex};
	ck_assert_int_eq(bind(r->ps, (struct sockaddr *)&sa, sizeof(sa)), 0);
	int big = 16 << 20;
	setsockopt(r->ps, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
}

static void rig_up(struct rig *r, uint32_t tap_flags)
{
	rig_up_w(r, tap_flags, 1);
}

static void rig_down(struct rig *r)
{
	close(r->ps);
	hs_switch_destroy(r->sw);
}

/* A broadcast frame of ethertype ETYPE, its payload numbered by `seed`. */
static void frame(uint8_t *f, uint32_t len, unsigned seed)
{
	uint8_t src[6];
	th_mac(src, 7);
	memset(f, 0xff, 6);
	memcpy(f + 6, src, 6);
	f[12] = ETYPE >> 8;
	f[13] = ETYPE & 0xff;
	for (uint32_t i = 14; i < len; i++)
		f[i] = (uint8_t)(i * 7 + seed * 31 + (i >> 8));
}

/* The next ETYPE frame the kernel received on the tap, within 2 s. */
static ssize_t next_frame(struct rig *r, uint8_t *buf, size_t cap)
{
	struct pollfd p = {.fd = r->ps, .events = POLLIN};
	if (poll(&p, 1, 2000) != 1)
		return -1;
	struct sockaddr_ll from;
	socklen_t fl = sizeof(from);
	ssize_t n = recvfrom(r->ps, buf, cap, 0, (struct sockaddr *)&from, &fl);
	if (n >= 0)
		ck_assert_int_ne(from.sll_pkttype, PACKET_OUTGOING);
	return n;
}

struct ctrs {
	uint64_t by_ref, staged, rx_uring, tx_uring, write_errors;
};

static void ctr_cb(void *arg, const char *name, uint64_t v)
{
	struct ctrs *c = arg;
	if (!strcmp(name, "tx_by_reference"))
		c->by_ref = v;
	else if (!strcmp(name, "tx_by_reference_staged"))
		c->staged = v;
	else if (!strcmp(name, "rx_uring_calls"))
		c->rx_uring = v;
	else if (!strcmp(name, "tx_uring_calls"))
		c->tx_uring = v;
	else if (!strcmp(name, "write_errors"))
		c->write_errors = v;
}

static struct ctrs ctrs_of(hs_port_t *p)
{
	struct ctrs c = {0};
	ck_assert_int_eq(hs_port_backend_counters(p, ctr_cb, &c), 0);
	return c;
}

/* Splits of every size: 0-terminated piece sizes, the rest in one piece. */
static void split_even(uint32_t *s, uint32_t piece, uint32_t len)
{
	unsigned k = 0;
	for (uint32_t done = 0; done + piece < len && k < TBE_SEGS - 2; done += piece)
		s[k++] = piece;
	s[k] = 0;
}

START_TEST(frames_reach_the_kernel_intact_in_every_layout)
{
	struct rig r;
	rig_up(&r, 0);
	static const uint32_t lens[] = {60, 100, 511, 512, 1000, 1514};
	static const uint32_t pieces[] = {0, 14, 20, 1, 333};
	static uint8_t f[2048], got[4096];
	uint32_t split[TBE_SEGS];
	unsigned sent = 0, large = 0;
	for (unsigned li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
		for (unsigned pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
			uint32_t len = lens[li];
			frame(f, len, sent);
			if (pieces[pi])
				split_even(split, pieces[pi], len);
			else
				split[0] = 0;
			tbe_queue(r.src, 0, f, len, NULL, split);
			ck_assert_int_ge(tbe_kick(r.src, 0), 0);
			ssize_t n = next_frame(&r, got, sizeof(got));
			ck_assert_msg(n == (ssize_t)len, "len %u pieces %u: got %zd", len,
				      pieces[pi], n);
			ck_assert_msg(!memcmp(got, f, len), "len %u pieces %u: bytes differ",
				      len, pieces[pi]);
			sent++;
			large += len >= 512;
		}
	struct ctrs c = ctrs_of(r.tap);
	/* Every large frame went by reference; those cut into more pieces
	 * than a frame's iovec budget (32) were staged after all. */
	ck_assert_uint_eq(c.by_ref + c.staged, large);
	ck_assert_uint_gt(c.by_ref, 0);
	ck_assert_uint_gt(c.staged, 0);
	struct hs_port_stats st;
	ck_assert_int_eq(hs_port_get_stats(r.tap, &st), 0);
	ck_assert_uint_eq(st.drops[HS_DROP_COPY_ERROR], 0);
	rig_down(&r);
}
END_TEST

START_TEST(a_round_beyond_the_iovec_pool_falls_back_to_staging)
{
	struct rig r;
	rig_up(&r, 0);
	/* One round of 64 frames of 32 segments each (within a frame's
	 * budget): 64 x 33 iovecs with the headers, for a pool of 2048. */
	enum { N = 64, LEN = 1200 };
	static uint8_t f[N][LEN], got[4096];
	uint32_t split[TBE_SEGS];
	split_even(split, 38, LEN);
	for (unsigned i = 0; i < N; i++) {
		frame(f[i], LEN, 1000 + i);
		tbe_queue(r.src, 0, f[i], LEN, NULL, split);
	}
	ck_assert_int_ge(tbe_kick(r.src, 0), 0);
	for (unsigned i = 0; i < N; i++) {
		ssize_t n = next_frame(&r, got, sizeof(got));
		ck_assert_msg(n == LEN, "frame %u: got %zd", i, n);
		ck_assert_msg(!memcmp(got, f[i], LEN), "frame %u: bytes differ", i);
	}
	struct ctrs c = ctrs_of(r.tap);
	ck_assert_uint_eq(c.by_ref + c.staged, N);
	ck_assert_uint_gt(c.by_ref, 0);
	ck_assert_uint_gt(c.staged, 0);
	rig_down(&r);
}
END_TEST

START_TEST(staged_taps_never_write_by_reference)
{
	struct rig r;
	rig_up(&r, HS_TAP_STAGED);
	static uint8_t f[1514], got[4096];
	frame(f, sizeof(f), 5);
	tbe_queue(r.src, 0, f, sizeof(f), NULL, NULL);
	ck_assert_int_ge(tbe_kick(r.src, 0), 0);
	ck_assert_int_eq(next_frame(&r, got, sizeof(got)), (ssize_t)sizeof(f));
	ck_assert_int_eq(memcmp(got, f, sizeof(f)), 0);
	struct ctrs c = ctrs_of(r.tap);
	ck_assert_uint_eq(c.by_ref + c.staged, 0);
	rig_down(&r);
}
END_TEST

/* A frame the kernel refuses (here: the interface is down, EIO) is a
 * drop with a reason, not a transmission: sent = transmitted + dropped
 * (it was counted as both before; found by tests/interop/test_faults.sh). */
START_TEST(frames_the_kernel_refuses_are_drops_not_transmissions)
{
	struct rig r;
	rig_up(&r, 0);
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", hs_tap_ifname(r.tap));
	ck_assert_int_eq(ioctl(s, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags = (short)(ifr.ifr_flags & ~IFF_UP);
	ck_assert_int_eq(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
	close(s);
	struct hs_port_stats before = th_pstats(r.tap);
	static uint8_t f[200];
	for (unsigned i = 0; i < 10; i++) {
		frame(f, sizeof(f), i);
		tbe_queue(r.src, 0, f, sizeof(f), NULL, NULL);
	}
	ck_assert_int_ge(tbe_kick(r.src, 0), 0);
	ck_assert(TH_WAIT(th_pstats(r.tap).drops[HS_DROP_PORT_DOWN] -
				  before.drops[HS_DROP_PORT_DOWN] == 10, 3000));
	struct hs_port_stats after = th_pstats(r.tap);
	ck_assert_uint_eq(after.tx_packets, before.tx_packets);
	rig_down(&r);
}
END_TEST

START_TEST(frames_from_the_kernel_reach_the_switch)
{
	struct rig r;
	rig_up(&r, 0);
	static uint8_t f[1000];
	frame(f, sizeof(f), 9);
	memcpy(f, (uint8_t[]){0x02, 0, 0, 0, 0, 0x99}, 6); /* unknown: flooded */
	struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETYPE),
				 .sll_ifindex = r.ifindex, .sll_halen = 6};
	memcpy(to.sll_addr, f, 6);
	ck_assert_int_eq(sendto(r.ps, f, sizeof(f), 0, (struct sockaddr *)&to, sizeof(to)),
			 (ssize_t)sizeof(f));
	/* The kernel sends its own frames too (IPv6 neighbour discovery):
	 * look for ours among what the tbe port got. */
	bool found = false;
	uint64_t end = th_mono_ms() + 3000;
	while (!found && th_mono_ms() < end) {
		struct tbe_rxf rx;
		if (!tbe_pop(r.src, 0, &rx)) {
			usleep(1000);
			continue;
		}
		found = rx.len == sizeof(f) && !memcmp(rx.data, f, sizeof(f));
		free(rx.data);
	}
	ck_assert_msg(found, "the frame sent on the tap never reached the switch");
	rig_down(&r);
}
END_TEST

/* Many frames from the kernel at once, and many to it: every one arrives,
 * in order, whichever way the port reads and writes; and the port used the
 * I/O this run expects (io_uring batches in both directions, or none). */
START_TEST(bursts_both_ways_keep_every_frame_in_order)
{
	struct rig r;
	rig_up(&r, 0);
	enum { N = 300, LEN = 200 };
	static uint8_t f[LEN], got[4096];
	struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_protocol = htons(ETYPE),
				 .sll_ifindex = r.ifindex, .sll_halen = 6};
	/* kernel -> switch: N frames sent as fast as the socket takes them */
	for (unsigned i = 0; i < N; i++) {
		frame(f, LEN, i);
		memcpy(f, (uint8_t[]){0x02, 0, 0, 0, 0, 0x98}, 6);
		memcpy(to.sll_addr, f, 6);
		ck_assert_int_eq(sendto(r.ps, f, LEN, 0, (struct sockaddr *)&to, sizeof(to)),
				 LEN);
	}
	unsigned next = 0;
	uint64_t end = th_mono_ms() + 5000;
	while (next < N && th_mono_ms() < end) {
		struct tbe_rxf rx;
		if (!tbe_pop(r.src, 0, &rx)) {
			usleep(1000);
			continue;
		}
		if (rx.len == LEN && rx.data[12] == (ETYPE >> 8) && rx.data[13] == (ETYPE & 0xff)) {
			frame(f, LEN, next);
			memcpy(f, (uint8_t[]){0x02, 0, 0, 0, 0, 0x98}, 6);
			ck_assert_msg(!memcmp(rx.data, f, LEN), "frame %u from the kernel: "
				      "other bytes (lost or reordered)", next);
			next++;
		}
		free(rx.data);
	}
	ck_assert_msg(next == N, "%u of %u frames from the kernel reached the switch", next, N);
	/* switch -> kernel: N frames queued at once, sent in bursts */
	for (unsigned i = 0; i < N; i++) {
		frame(f, LEN, 5000 + i);
		tbe_queue(r.src, 0, f, LEN, NULL, NULL);
	}
	ck_assert_int_ge(tbe_kick(r.src, 0), 0);
	for (unsigned i = 0; i < N; i++) {
		ssize_t n = next_frame(&r, got, sizeof(got));
		ck_assert_msg(n == LEN, "frame %u to the kernel: got %zd", i, n);
		frame(f, LEN, 5000 + i);
		ck_assert_msg(!memcmp(got, f, LEN), "frame %u to the kernel: other bytes", i);
	}
	struct ctrs c = ctrs_of(r.tap);
	if (uring_expected) {
		/* batches that ran (not ones io_uring refused): at least one
		 * per 64 frames written, and fewer than the frames */
		ck_assert_uint_gt(c.rx_uring, 0);
		ck_assert_uint_ge(c.tx_uring, (N + 63) / 64);
		ck_assert_uint_lt(c.tx_uring, N);
	} else {
		ck_assert_uint_eq(c.rx_uring + c.tx_uring, 0);
	}
	struct hs_port_stats st = th_pstats(r.tap);
	ck_assert_uint_eq(st.drops[HS_DROP_BAD_DESC] + st.drops[HS_DROP_NO_BUFFER] +
				  st.drops[HS_DROP_PORT_DOWN] + st.drops[HS_DROP_COPY_ERROR], 0);
	rig_down(&r);
}
END_TEST

/* A host thread that switched frames to the tap in its own context (so
 * through its own io_uring), then sleeps in epoll_wait while the main
 * thread deletes the tap port: its sleep must not end early. (Rings that
 * belonged to the port's queues did end it: the kernel's teardown of a
 * ring signals every thread that ever submitted to it.) */
struct sleeper {
	hs_port_t *src;
	pthread_barrier_t sent;
	int rc, err;
	uint64_t slept_ms;
};

static void *sleeper_main(void *arg)
{
	struct sleeper *sl = arg;
	static uint8_t f[200];
	for (unsigned i = 0; i < 64; i++) {
		frame(f, sizeof(f), 7000 + i);
		tbe_queue(sl->src, 0, f, sizeof(f), NULL, NULL);
	}
	tbe_kick(sl->src, 0); /* no workers: the round runs here */
	pthread_barrier_wait(&sl->sent);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev;
	uint64_t t0 = th_mono_ms();
	sl->rc = epoll_wait(ep, &ev, 1, 1500);
	sl->err = errno;
	sl->slept_ms = th_mono_ms() - t0;
	close(ep);
	return NULL;
}

START_TEST(deleting_a_tap_port_interrupts_no_other_thread)
{
	struct rig r;
	rig_up_w(&r, 0, 0);
	struct sleeper sl = {.src = r.src};
	pthread_barrier_init(&sl.sent, NULL, 2);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, sleeper_main, &sl), 0);
	pthread_barrier_wait(&sl.sent);
	struct ctrs c = ctrs_of(r.tap);
	if (uring_expected)
		ck_assert_uint_gt(c.tx_uring, 0); /* the host thread batched */
	usleep(100 * 1000);
	ck_assert_int_eq(hs_port_del(r.tap), 0);
	pthread_join(th, NULL);
	pthread_barrier_destroy(&sl.sent);
	ck_assert_msg(sl.rc == 0 && sl.slept_ms >= 1400,
		      "epoll_wait returned %d (%s) after %llu ms, not 0 after 1500 ms", sl.rc,
		      sl.rc < 0 ? strerror(sl.err) : "-", (unsigned long long)sl.slept_ms);
	close(r.ps);
	hs_switch_destroy(r.sw);
}
END_TEST

/* A host thread's own thread-exit code (a destructor of its own, run
 * after the library's has freed the thread's ring) still sends to the tap:
 * the frames go out with system calls, and nothing touches the freed
 * ring. And a child of fork() (no exec) that switches frames to the tap
 * through the ring it inherited from the forking thread neither crashes
 * nor harms the parent's. (No workers: rounds run in the sending thread.) */
static struct rig *late_rig;
static pthread_key_t late_key;

static void send_burst(hs_port_t *src, unsigned seed)
{
	static uint8_t f[200];
	for (unsigned i = 0; i < 8; i++) {
		frame(f, sizeof(f), seed + i);
		tbe_queue(src, 0, f, sizeof(f), NULL, NULL);
	}
	tbe_kick(src, 0);
}

static void late_dtor(void *arg)
{
	(void)arg;
	send_burst(late_rig->src, 8000);
}

static void *late_main(void *arg)
{
	(void)arg;
	send_burst(late_rig->src, 8100); /* this thread's ring, and the library's key */
	/* a key made after the library's: glibc runs its destructor later */
	ck_assert_int_eq(pthread_key_create(&late_key, late_dtor), 0);
	pthread_setspecific(late_key, late_rig);
	return NULL;
}

/* frames of the ETYPE the packet socket got until it has been quiet 200 ms */
static unsigned count_frames(struct rig *r)
{
	static uint8_t got[4096];
	unsigned n = 0;
	struct pollfd p = {.fd = r->ps, .events = POLLIN};
	while (poll(&p, 1, 200) == 1 && recv(r->ps, got, sizeof(got), 0) >= 0)
		n++;
	return n;
}

START_TEST(thread_exit_and_fork_leave_the_rings_sound)
{
	struct rig r;
	rig_up_w(&r, 0, 0);
	late_rig = &r;
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, late_main, NULL), 0);
	pthread_join(th, NULL);
	pthread_key_delete(late_key);
	ck_assert_uint_eq(count_frames(&r), 16);

	send_burst(r.src, 8200); /* the forking thread has a ring now */
	ck_assert_uint_eq(count_frames(&r), 8);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		send_burst(r.src, 8300);
		_exit(0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child ended with status %#x", st);
	uint64_t batches = ctrs_of(r.tap).tx_uring;
	send_burst(r.src, 8400);
	ck_assert_uint_eq(count_frames(&r), 16); /* the child's 8, then the parent's */
	if (uring_expected) /* the parent's ring still batches */
		ck_assert_uint_gt(ctrs_of(r.tap).tx_uring, batches);
	struct hs_port_stats stp = th_pstats(r.tap);
	ck_assert_uint_eq(stp.drops[HS_DROP_PORT_DOWN] + stp.drops[HS_DROP_COPY_ERROR], 0);
	rig_down(&r);
}
END_TEST

/* Whether the tap ports here batch through io_uring: the kernel lets this
 * process use io_uring and tun does non-blocking io_uring reads (Linux 6.4
 * on; before, io_uring refuses RWF_NOWAIT on a tap with EOPNOTSUPP). The
 * same question the port asks, on a tun file of its own (not attached: the
 * flag is checked before the device is, so EBADFD also means yes). */
static bool kernel_has_uring(void)
{
#ifdef HS_HAVE_URING
	struct io_uring ring;
	if (io_uring_queue_init(4, &ring, 0) < 0)
		return false;
	bool yes = false;
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd >= 0) {
		static uint8_t none;
		struct iovec v = {.iov_base = &none, .iov_len = 0};
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		io_uring_prep_readv(sqe, fd, &v, 1, 0);
		sqe->rw_flags = RWF_NOWAIT;
		struct io_uring_cqe *cqe;
		if (io_uring_submit_and_wait(&ring, 1) == 1 && io_uring_wait_cqe(&ring, &cqe) == 0) {
			yes = cqe->res != -EOPNOTSUPP && cqe->res != -EINVAL;
			io_uring_cqe_seen(&ring, cqe);
		}
		close(fd);
	}
	io_uring_queue_exit(&ring);
	return yes;
#else
	return false;
#endif
}

/* The port's link follows its device, in whatever network namespace the
 * device is: down and up in the switch's namespace; moved into another
 * (the move takes it down), up and down there, its MTU set there
 * (hs_tap_set_mtu); moved back; and when that
 * other namespace ends, the device goes with it (the switch must not hold
 * the namespace alive). While the link is down the switch does not write:
 * frames count as port_down without a write error. The case runs in a
 * namespace of its own, the other one belongs to a child that dies with
 * the case, so nothing is left behind when it fails. */
static void *loop_main(void *arg)
{
	hs_run(arg);
	return NULL;
}

/* A rig in a network namespace of the case's own (it ends with the case),
 * its switch's loop running (the device's messages are read there);
 * false (said) where the case cannot have one. */
static bool looped_rig(struct rig *r, pthread_t *loop)
{
	if (unshare(CLONE_NEWNET)) {
		fprintf(stderr, "skipped: no network namespace of our own\n");
		return false;
	}
	rig_up(r, 0);
	ck_assert_int_eq(pthread_create(loop, NULL, loop_main, r->sw), 0);
	return true;
}

/* A child in a network namespace of its own until it is killed (or this
 * process dies); its pid. */
static pid_t ns_child(void)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		char ok = unshare(CLONE_NEWNET) == 0;
		if (write(p[1], &ok, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	char ok = 0;
	ck_assert_int_eq(read(p[0], &ok, 1), 1);
	close(p[0]);
	ck_assert(ok);
	return pid;
}

/* Runs `cmd` in the network namespace of process `pid`; its exit status. */
static int in_ns(pid_t pid, const char *cmd)
{
	char c[256];
	snprintf(c, sizeof(c), "nsenter -t %d -n sh -c '%s'", (int)pid, cmd);
	return system(c);
}

static uint64_t port_down(hs_port_t *p)
{
	return th_pstats(p).drops[HS_DROP_PORT_DOWN];
}

static uint64_t write_errors(hs_port_t *p)
{
	struct ctrs c = ctrs_of(p);
	return c.write_errors;
}

/* A case about the device's state, which is the same whatever the I/O
 * mode: it runs once (mode 0). With follows_ns, it needs what qemu-user
 * does not carry (TUNGETDEVNETNS, NETLINK_LISTEN_ALL_NSID): skipped there. */
#ifdef HS_TEST_EMULATED
#define HS_TAP_EMULATED 1
#else
#define HS_TAP_EMULATED 0
#endif
#define DEVICE_STATE_CASE(follows_ns)                                             \
	do {                                                                      \
		if (mode_flags)                                                   \
			return;                                                   \
		if ((follows_ns) && HS_TAP_EMULATED) {                            \
			fprintf(stderr, "skipped: qemu-user does not carry "      \
				"TUNGETDEVNETNS or NETLINK_LISTEN_ALL_NSID\n");   \
			return;                                                   \
		}                                                                 \
	} while (0)

/* Sends n frames to the tap; waits until each is either sent or counted
 * as port_down. */
static void send_n(struct rig *r, unsigned n)
{
	struct hs_port_stats b = th_pstats(r->tap);
	static uint8_t f[200];
	for (unsigned i = 0; i < n; i++) {
		frame(f, sizeof(f), i);
		tbe_queue(r->src, 0, f, sizeof(f), NULL, NULL);
	}
	ck_assert_int_ge(tbe_kick(r->src, 0), 0);
	ck_assert(TH_WAIT(th_pstats(r->tap).tx_packets - b.tx_packets +
				  port_down(r->tap) - b.drops[HS_DROP_PORT_DOWN] == n, 3000));
}

START_TEST(the_link_follows_the_device_into_other_namespaces)
{
	DEVICE_STATE_CASE(true);
	struct rig r;
	pthread_t loop;
	if (!looped_rig(&r, &loop))
		return;
	const char *dev = hs_tap_ifname(r.tap);
	char cmd[200];
	ck_assert(hs_port_link_up(r.tap));

	/* here: down, then up */
	snprintf(cmd, sizeof(cmd), "ip link set %s down", dev);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.tap), 3000));
	uint64_t we = write_errors(r.tap), pd = port_down(r.tap);
	send_n(&r, 10);
	ck_assert_uint_eq(port_down(r.tap) - pd, 10);
	ck_assert_uint_eq(write_errors(r.tap), we); /* not even tried */
	snprintf(cmd, sizeof(cmd), "ip link set %s up", dev);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.tap), 3000));

	/* into another namespace: down with the move, up and down there */
	pid_t other = ns_child();
	snprintf(cmd, sizeof(cmd), "ip link set %s netns %d", dev, (int)other);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.tap), 3000));
	snprintf(cmd, sizeof(cmd), "ip link set %s up", dev);
	ck_assert_int_eq(in_ns(other, cmd), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.tap), 3000));
	uint64_t tx = th_pstats(r.tap).tx_packets;
	send_n(&r, 10);
	ck_assert_uint_eq(th_pstats(r.tap).tx_packets - tx, 10);
	/* its MTU set there, in place: the device stays where it is */
	ck_assert_int_eq(hs_tap_set_mtu(r.tap, 1400), 0);
	snprintf(cmd, sizeof(cmd), "ip -o link show %s | grep -q \" mtu 1400 \"", dev);
	ck_assert_int_eq(in_ns(other, cmd), 0);
	ck_assert_int_eq(hs_tap_set_mtu(r.tap, 70000), -EINVAL);
	ck_assert_int_eq(hs_tap_set_mtu(r.src, 1400), -EINVAL); /* not a tap */
	ck_assert(hs_port_link_up(r.tap));
	snprintf(cmd, sizeof(cmd), "ip link set %s down", dev);
	ck_assert_int_eq(in_ns(other, cmd), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.tap), 3000));
	snprintf(cmd, sizeof(cmd), "ip link set %s up", dev);
	ck_assert_int_eq(in_ns(other, cmd), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.tap), 3000));

	/* back here, then up */
	snprintf(cmd, sizeof(cmd), "ip link set %s netns %d", dev, (int)getpid());
	ck_assert_int_eq(in_ns(other, cmd), 0);
	ck_assert(TH_WAIT(!hs_port_link_up(r.tap), 3000));
	snprintf(cmd, sizeof(cmd), "ip link set %s up", dev);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.tap), 3000));
	ck_assert_int_eq(hs_tap_set_mtu(r.tap, 1500), 0); /* here */
	snprintf(cmd, sizeof(cmd), "ip -o link show %s | grep -q \" mtu 1500 \"", dev);
	ck_assert_int_eq(system(cmd), 0);

	/* away again, up there; that namespace ends, the device with it */
	snprintf(cmd, sizeof(cmd), "ip link set %s netns %d", dev, (int)other);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "ip link set %s up", dev);
	ck_assert_int_eq(in_ns(other, cmd), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.tap), 3000));
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	ck_assert_msg(TH_WAIT(!hs_port_link_up(r.tap), 10000),
		      "the device outlived its namespace's last process");
	pd = port_down(r.tap);
	send_n(&r, 10);
	ck_assert_uint_eq(port_down(r.tap) - pd, 10);
	hs_stop(r.sw);
	pthread_join(loop, NULL);
	rig_down(&r);
}
END_TEST

/* Moves device `name` into the namespace of nsfd through rtnetlink socket s. */
static int nl_move(int s, const char *name, int nsfd)
{
	struct {
		struct nlmsghdr h;
		struct ifinfomsg i;
		char attrs[64];
	} req;
	memset(&req, 0, sizeof(req));
	req.h.nlmsg_type = RTM_NEWLINK;
	req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.h.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	req.i.ifi_family = AF_UNSPEC;
	struct rtattr *a = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.h.nlmsg_len));
	a->rta_type = IFLA_IFNAME;
	a->rta_len = (unsigned short)RTA_LENGTH(strlen(name) + 1);
	memcpy(RTA_DATA(a), name, strlen(name) + 1);
	req.h.nlmsg_len = NLMSG_ALIGN(req.h.nlmsg_len) + RTA_ALIGN(a->rta_len);
	a = (struct rtattr *)((char *)&req + req.h.nlmsg_len);
	a->rta_type = IFLA_NET_NS_FD;
	a->rta_len = RTA_LENGTH(4);
	uint32_t fd = (uint32_t)nsfd;
	memcpy(RTA_DATA(a), &fd, 4);
	req.h.nlmsg_len += RTA_ALIGN(a->rta_len);
	if (send(s, &req, req.h.nlmsg_len, 0) < 0)
		return -errno;
	char buf[1024];
	ssize_t n = recv(s, buf, sizeof(buf), 0);
	if (n < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)))
		return -EIO;
	struct nlmsgerr *e = NLMSG_DATA((struct nlmsghdr *)buf);
	return e->error;
}

/* A device moved to and fro quickly (600 moves, as fast as rtnetlink
 * takes them): a look at it while it moves may fail, and is tried again
 * later; once the moves stop and the device is down in the switch's
 * namespace, the port's link follows it down. (Before, the fourth failed
 * try ended the following for good.) */
START_TEST(quick_moves_do_not_end_the_following)
{
	DEVICE_STATE_CASE(true);
	struct rig r;
	pthread_t loop;
	if (!looped_rig(&r, &loop))
		return;
	const char *dev = hs_tap_ifname(r.tap);
	pid_t other = ns_child();
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)other);
	int bfd = open(path, O_RDONLY | O_CLOEXEC), afd = open("/proc/thread-self/ns/net",
							       O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(bfd, 0);
	ck_assert_int_ge(afd, 0);
	int sa = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	ck_assert_int_eq(setns(bfd, CLONE_NEWNET), 0);
	int sb = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	ck_assert_int_eq(setns(afd, CLONE_NEWNET), 0);
	ck_assert_int_ge(sa, 0);
	ck_assert_int_ge(sb, 0);
	unsigned moves = 0;
	const unsigned n = 300;
	for (unsigned i = 0; i < n; i++) {
		ck_assert_int_eq(nl_move(sa, dev, bfd), 0);
		ck_assert_int_eq(nl_move(sb, dev, afd), 0);
		moves += 2;
	}
	close(sb);
	close(sa);
	/* settled in our namespace: up, then down */
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "ip link set %s up", dev);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(TH_WAIT(hs_port_link_up(r.tap), 3000));
	usleep(300000);
	snprintf(cmd, sizeof(cmd), "ip link set %s down", dev);
	ck_assert_int_eq(system(cmd), 0);
	bool down = TH_WAIT(!hs_port_link_up(r.tap), 3000);
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	hs_stop(r.sw);
	pthread_join(loop, NULL);
	rig_down(&r);
	ck_assert_msg(down, "after %u quick moves the port no longer follows its device", moves);
}
END_TEST

/* A switch without CAP_NET_ADMIN attached to a persistent tap of its own
 * user, in its own namespace: tun does not say where the device is
 * (TUNGETDEVNETNS needs the right), and the device is followed in the
 * switch's namespace all the same. */
START_TEST(an_unprivileged_switch_follows_its_tap_here)
{
	DEVICE_STATE_CASE(false);
	if (unshare(CLONE_NEWNET)) {
		fprintf(stderr, "skipped\n");
		return;
	}
	ck_assert_int_eq(system("ip tuntap add hst45u mode tap user 65534 vnet_hdr && "
				"ip link set hst45u up"), 0);
	int go[2], res[2];
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(res), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(2);
		hs_switch_t *sw = th_switch(NULL);
		struct hs_tap_config tc = {.ifname = "hst45u", .flags = HS_TAP_ATTACH | mode_flags};
		struct hs_port_config pc = {.name = "tap", .backend = HS_TAP_BACKEND,
					    .backend_config = &tc, .backend_config_size = sizeof(tc)};
		hs_port_t *p = NULL;
		int rc = hs_port_add(sw, &pc, &p);
		if (rc) {
			fprintf(stderr, "attach as nobody: %d\n", rc);
			_exit(3);
		}
		pthread_t loop;
		pthread_create(&loop, NULL, loop_main, sw);
		char c = hs_port_link_up(p) ? 'u' : 'd';
		if (write(go[1], &c, 1) != 1)
			_exit(4);
		if (read(res[0], &c, 1) != 1) /* parent set it down */
			_exit(4);
		bool down = TH_WAIT(!hs_port_link_up(p), 3000);
		hs_stop(sw);
		pthread_join(loop, NULL);
		hs_switch_destroy(sw);
		_exit(down ? 0 : 1);
	}
	char c;
	ck_assert_int_eq(read(go[0], &c, 1), 1);
	ck_assert_int_eq(system("ip link set hst45u down"), 0);
	ck_assert_int_eq(write(res[1], &c, 1), 1);
	int st;
	waitpid(pid, &st, 0);
	system("ip link del hst45u");
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "unprivileged switch, tap in its own namespace set down: port link "
		      "stayed up (child status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}
END_TEST

/* hs_tap_set_mtu on a device in the caller's own namespace needs no
 * CAP_SYS_ADMIN (no namespace is entered): a child of the case without it
 * sets the MTU; the device in another namespace needs it, and the call
 * says so. */
START_TEST(a_tap_mtu_here_needs_no_namespace_entry)
{
	DEVICE_STATE_CASE(true);
	if (unshare(CLONE_NEWNET)) {
		fprintf(stderr, "skipped: no network namespace of our own\n");
		return;
	}
	struct rig r;
	rig_up(&r, 0);
	const char *dev = hs_tap_ifname(r.tap);
	pid_t other = ns_child();
#ifdef __SANITIZE_THREAD__
	const int cases = 1; /* TSan does not start threads in a child of a threaded fork */
#else
	const int cases = 2;
#endif
	for (int away = 0; away < cases; away++) {
		char cmd[200];
		if (away) {
			snprintf(cmd, sizeof(cmd), "ip link set %s netns %d", dev, (int)other);
			ck_assert_int_eq(system(cmd), 0);
		}
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (!pid) {
			struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
			struct __user_cap_data_struct d[2];
			if (syscall(SYS_capget, &h, d))
				_exit(2);
			d[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
			d[CAP_SYS_ADMIN / 32].permitted &= ~(1u << (CAP_SYS_ADMIN % 32));
			if (syscall(SYS_capset, &h, d))
				_exit(2);
			int rc = hs_tap_set_mtu(r.tap, 1400 - away);
			_exit(rc == 0 ? 0 : rc == -EPERM ? 1 : 3);
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert(WIFEXITED(st));
		if (!away) {
			ck_assert_int_eq(WEXITSTATUS(st), 0);
			snprintf(cmd, sizeof(cmd), "ip -o link show %s | grep -q \" mtu 1400 \"", dev);
			ck_assert_int_eq(system(cmd), 0);
		} else {
			ck_assert_int_eq(WEXITSTATUS(st), 1); /* setns: EPERM, said */
			ck_assert_int_eq(hs_tap_set_mtu(r.tap, 1399), 0);
			snprintf(cmd, sizeof(cmd), "ip -o link show %s | grep -q \" mtu 1399 \"", dev);
			ck_assert_int_eq(in_ns(other, cmd), 0);
		}
	}
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);
	rig_down(&r);
}
END_TEST

int main(void)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (geteuid() != 0 || fd < 0) {
		printf("SKIP: needs root and /dev/net/tun\n");
		return 77;
	}
	close(fd);
	const char *nu = getenv("TEST_TAP_NO_URING");
	if (nu && *nu && strcmp(nu, "0"))
		mode_flags = HS_TAP_NO_URING;
	uring_expected = !mode_flags && kernel_has_uring();
	printf("tap ports: %s\n", uring_expected ? "io_uring batches"
				  : mode_flags	 ? "one system call per frame (HS_TAP_NO_URING)"
						 : "one system call per frame (no io_uring here)");
	Suite *s = suite_create("tap");
	TCase *tc = tcase_create("tap");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, frames_reach_the_kernel_intact_in_every_layout);
	tcase_add_test(tc, a_round_beyond_the_iovec_pool_falls_back_to_staging);
	tcase_add_test(tc, staged_taps_never_write_by_reference);
	tcase_add_test(tc, frames_from_the_kernel_reach_the_switch);
	tcase_add_test(tc, frames_the_kernel_refuses_are_drops_not_transmissions);
	tcase_add_test(tc, bursts_both_ways_keep_every_frame_in_order);
	tcase_add_test(tc, deleting_a_tap_port_interrupts_no_other_thread);
	tcase_add_test(tc, thread_exit_and_fork_leave_the_rings_sound);
	tcase_add_test(tc, the_link_follows_the_device_into_other_namespaces);
	tcase_add_test(tc, quick_moves_do_not_end_the_following);
	tcase_add_test(tc, an_unprivileged_switch_follows_its_tap_here);
	tcase_add_test(tc, a_tap_mtu_here_needs_no_namespace_entry);
	suite_add_tcase(s, tc);
	return th_run(s);
}

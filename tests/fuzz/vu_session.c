/*
 * vu_session.c - a process-level, black-box fuzzer of the vhost-user
 * socket, as a hostile VMM would be.
 *
 *   vu_session --vswitch PATH [--seconds N] [--sessions N] [--from K]
 *              [--seed S] [--workers N] [--dir DIR] [--keep] [--fd-types]
 *              [--verbose]
 *
 * It starts the switch under test (PATH, e.g. build-asan/examples/vswitch)
 * as a child, with --workers N (default 2) and three vhost-user server
 * ports on sockets in DIR (default: a fresh mktemp -d under /tmp): A
 * (fuzzed, two queue pairs), B and C (well-behaved front-ends made with
 * ../vu_driver.h: B split rings, C packed, both EVENT_IDX and MRG_RXBUF,
 * connected for the whole run). Its output goes to DIR/vswitch.log.
 *
 * Session after session, a fresh front-end connects to A and sends a
 * protocol-shaped but hostile session derived from (seed, session number)
 * only: setup messages in random orders with omissions, duplicates and
 * targeted mutations (features, protocol features, owner; memory tables
 * and ADD/REM_MEM_REG from memfds that are shorter than their regions,
 * overlapping, past their end, aliased, truncated after the switch mapped
 * them; ring sizes, positions, addresses inside/outside/straddling memory
 * and misaligned; kick/call/err eventfds, NOFD, bad indexes; enable, get
 * base, queue number, MTU, status; unknown requests, wrong payload sizes,
 * fd counts and version flags, and rarely an oversized payload). Then
 * guest ring contents (split or packed): valid frames (plain, IPv4/IPv6
 * TCP/UDP with checksum and segmentation offloads) mixed with garbage
 * descriptors (outside memory, huge lengths, loops, NEXT chains, indirect
 * tables nested or of bad lengths, wrong directions, ids out of range,
 * wrong wrap bits, pointing into the canary), receive buffers (also in
 * tiny and in thousands of pieces), kicks, frames from B to A, control
 * messages in the middle of the traffic, and a close (sometimes in the
 * middle of a message).
 *
 * After each session it checks, and fails loudly (exit 1) otherwise:
 *  (a) the switch is alive, its log has no sanitizer report, it answers
 *      on its socket (a reply to GET_FEATURES within 10 s; a new front-end
 *      on A accepted within 15 s, which also proves A was reset);
 *  (b) B and C still get service: C announces itself to B, then B sends
 *      C a batch of frames with unique sequence numbers, and every one
 *      arrives intact within 5 s; every 16th session and at the end, a
 *      well-behaved front-end on A itself gets service too;
 *  (c) A's guest memory is intact outside what the switch was given to
 *      write: the fuzzer fills everything with a canary and keeps a
 *      shadow copy of every byte it wrote itself, and compares once the
 *      switch let the memory go (except what truncation took away);
 *  (d) every reply from the switch is well-formed.
 * What the switch was given (used areas and packed descriptor rings at
 * the addresses and with the largest sizes sent, buffers of descriptors
 * with WRITE, canary-pointing ones included) is computed as a superset
 * from the messages as sent, accepted or not, and every descriptor
 * written, through every memory region proposed in the session, so that
 * only a write the switch had no licence for can fail (c). Sessions whose
 * device-written ring areas overlap what the switch reads as descriptors
 * (a used ring put on a descriptor table) are not checked for (c): the
 * switch's own writes make new descriptors there, which may point anywhere.
 *
 * On failure it prints the seed, the session, the last 30 messages and
 * events of that session, the failing check, B's and C's ring state (and
 * whether extra kicks unblock them), the switch's thread stacks (gdb, for
 * hangs) and the tail of vswitch.log, keeps DIR and exits 1. Otherwise
 * one line: "vu_session: seed S, N sessions, M messages, F frames, T s,
 * 0 failures", and DIR is removed (unless --keep).
 *
 * A run is reproducible from --seed and --sessions: each session draws
 * from its own generator seeded by the run seed and its number, and
 * nothing the switch answers changes what is drawn (timing still decides
 * what the switch sees when). --from K starts at session K (a session
 * alone: --from K --sessions 1). With --sessions and no --seconds there is
 * no time limit; the default is --seconds 60, checked between sessions.
 * --fd-types also hands the switch pipes, sockets, /dev/null, memfds and
 * blocking eventfds at their maximum where (non-blocking) eventfds belong
 * (off by default: the switch writes to those fds).
 *
 * Debugging aids (environment): VU_SESSION_MUT=P and VU_SESSION_GARBAGE=P
 * fix the mutation and garbage rates (percent), VU_SESSION_ORDER=0 keeps
 * the setup order, VU_SESSION_PEER_KICK=1 makes B and C kick after every
 * post whether asked or not (hides lost wake-ups of their rings).
 *
 * Plain C11 and libc; builds with
 *   gcc -std=c11 -D_GNU_SOURCE -O1 -g -Wall -Wextra -Werror -Wshadow \
 *       -I tests -o vu_session tests/fuzz/vu_session.c
 */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

#include "../vu_driver.h"

/* ---- protocol constants -------------------------------------------------------- */

#define FB(b) (1ull << (b))
enum {
	VF_CSUM = 0, VF_GUEST_CSUM = 1, VF_MTU = 3, VF_GUEST_TSO4 = 7, VF_GUEST_TSO6 = 8,
	VF_GUEST_ECN = 9, VF_GUEST_UFO = 10, VF_HOST_TSO4 = 11, VF_HOST_TSO6 = 12,
	VF_HOST_ECN = 13, VF_HOST_UFO = 14, VF_MRG = 15, VF_STATUS = 16, VF_CTRL_VQ = 17,
	VF_MQ = 22, VF_LOG_ALL = 26, VF_INDIRECT = 28, VF_EVENT_IDX = 29, VF_PROTO = 30,
	VF_V1 = 32, VF_PACKED = 34, VF_GUEST_USO4 = 54, VF_GUEST_USO6 = 55, VF_HOST_USO = 56,
};
enum { PF_MQ = 0, PF_REPLY_ACK = 3, PF_MTU = 4, PF_SLOTS = 15, PF_STATUS = 16 };
enum {
	RQ_GET_FEATURES = 1, RQ_SET_FEATURES = 2, RQ_SET_OWNER = 3, RQ_RESET_OWNER = 4,
	RQ_SET_MEM_TABLE = 5, RQ_SET_VRING_NUM = 8, RQ_SET_VRING_ADDR = 9,
	RQ_SET_VRING_BASE = 10, RQ_GET_VRING_BASE = 11, RQ_SET_VRING_KICK = 12,
	RQ_SET_VRING_CALL = 13, RQ_SET_VRING_ERR = 14, RQ_GET_PROTOCOL_FEATURES = 15,
	RQ_SET_PROTOCOL_FEATURES = 16, RQ_GET_QUEUE_NUM = 17, RQ_SET_VRING_ENABLE = 18,
	RQ_NET_SET_MTU = 20, RQ_GET_MAX_MEM_SLOTS = 36, RQ_ADD_MEM_REG = 37,
	RQ_REM_MEM_REG = 38, RQ_SET_STATUS = 39, RQ_GET_STATUS = 40,
};
#define NOFD 0x100u
#define MAX_PAYLOAD 4096u

static const char *const rq_names[] = {
	[0] = "NONE", [1] = "GET_FEATURES", [2] = "SET_FEATURES", [3] = "SET_OWNER",
	[4] = "RESET_OWNER", [5] = "SET_MEM_TABLE", [6] = "SET_LOG_BASE", [7] = "SET_LOG_FD",
	[8] = "SET_VRING_NUM", [9] = "SET_VRING_ADDR", [10] = "SET_VRING_BASE",
	[11] = "GET_VRING_BASE", [12] = "SET_VRING_KICK", [13] = "SET_VRING_CALL",
	[14] = "SET_VRING_ERR", [15] = "GET_PROTOCOL_FEATURES",
	[16] = "SET_PROTOCOL_FEATURES", [17] = "GET_QUEUE_NUM", [18] = "SET_VRING_ENABLE",
	[19] = "SEND_RARP", [20] = "NET_SET_MTU", [21] = "SET_BACKEND_REQ_FD",
	[22] = "IOTLB_MSG", [23] = "SET_VRING_ENDIAN", [24] = "GET_CONFIG",
	[25] = "SET_CONFIG", [31] = "GET_INFLIGHT_FD", [32] = "SET_INFLIGHT_FD",
	[34] = "RESET_DEVICE", [35] = "VRING_KICK", [36] = "GET_MAX_MEM_SLOTS",
	[37] = "ADD_MEM_REG", [38] = "REM_MEM_REG", [39] = "SET_STATUS", [40] = "GET_STATUS",
};

static const char *rq_name(uint32_t r)
{
	if (r < sizeof(rq_names) / sizeof(rq_names[0]) && rq_names[r])
		return rq_names[r];
	return "unknown";
}

/* ---- small utilities ----------------------------------------------------------- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ms_ns(uint64_t ms)
{
	return ms * 1000000ull;
}

/* A deterministic generator (splitmix64): one per session, one per check. */
struct rng {
	uint64_t s;
};

static uint64_t rnext(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint32_t rbelow(struct rng *r, uint32_t n)
{
	return n ? (uint32_t)(rnext(r) % n) : 0;
}

/* true with probability pct/100 */
static bool rpct(struct rng *r, unsigned pct)
{
	return rbelow(r, 100) < pct;
}

static uint32_t rrange(struct rng *r, uint32_t lo, uint32_t hi)
{
	return lo + rbelow(r, hi - lo + 1);
}

static struct rng rng_for(uint64_t seed, uint64_t stream, uint64_t n)
{
	struct rng r = {seed ^ (stream * 0xd1b54a32d192ed03ull)};
	r.s ^= rnext(&r) + n * 0x9e3779b97f4a7c15ull;
	rnext(&r);
	return r;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void wait_ms(int ms)
{
	/* a bounded pause inside a loop with a deadline */
	poll(NULL, 0, ms);
}

/* ---- options and run state ----------------------------------------------------- */

static struct {
	const char *vswitch;
	unsigned seconds;
	bool seconds_set;
	uint64_t sessions;
	bool sessions_set;
	uint64_t seed;
	unsigned workers;
	char dir[96]; /* + "/a.sock" within a socket address */
	bool dir_given;
	bool verbose, keep, fd_types;
	uint64_t from;
} opt = {.seconds = 60, .workers = 2};

static int g_force_mut = -1, g_force_garbage = -1, g_force_order = -1; /* debugging */
static bool g_peer_kick; /* debugging: B and C kick after every post (hides lost wake-ups) */
static pid_t sw_pid = -1;
static char sock_a[108], sock_b[108], sock_c[108], log_path[128];
static bool dir_made;
static off_t log_scanned;
static uint64_t offered_feat, offered_proto; /* learned from A */
static uint64_t tot_msgs, tot_frames, tot_chains, tot_sessions, tot_unchecked, tot_oddfd,
	tot_a_checks;
static uint64_t cur_session = UINT64_MAX;
static uint64_t run_start;

/* ---- the switch process ---------------------------------------------------------- */

static void print_log_tail(unsigned lines)
{
	int fd = open(log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	static char buf[16384];
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)sizeof(buf) - 1 ? end - (off_t)sizeof(buf) + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	char *p = buf + n;
	unsigned seen = 0;
	while (p > buf) {
		if (p[-1] == '\n' && p != buf + n && ++seen > lines)
			break;
		p--;
	}
	fprintf(stderr, "vu_session: last lines of %s:\n", log_path);
	for (char *l = p; *l;) {
		char *e = strchr(l, '\n');
		if (e)
			*e = 0;
		fprintf(stderr, "  | %s\n", l);
		if (!e)
			break;
		l = e + 1;
	}
}

/* Returns 1 while the switch runs; 0 with *why set once it ended. */
static int sw_alive(char *why, size_t n)
{
	if (sw_pid < 0) {
		snprintf(why, n, "the switch is not running");
		return 0;
	}
	int st;
	pid_t r = waitpid(sw_pid, &st, WNOHANG);
	if (r == 0)
		return 1;
	if (r < 0) {
		snprintf(why, n, "waitpid: %s", strerror(errno));
		return 0;
	}
	if (WIFSIGNALED(st))
		snprintf(why, n, "the switch died of signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(why, n, "the switch exited with status %d", WEXITSTATUS(st));
	sw_pid = -1;
	return 0;
}

/* Looks for sanitizer reports in what the switch logged since last time. */
static bool log_scan(char *line, size_t n)
{
	int fd = open(log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	static const char *const pat[] = {"AddressSanitizer", "LeakSanitizer", "runtime error:",
					  "ThreadSanitizer", "MemorySanitizer", "SUMMARY: "};
	static char buf[65536 + 1];
	bool found = false;
	for (;;) {
		ssize_t r = pread(fd, buf, sizeof(buf) - 1, log_scanned);
		if (r <= 0)
			break;
		buf[r] = 0;
		/* only whole lines */
		char *last = strrchr(buf, '\n');
		if (!last)
			break;
		last[1] = 0;
		for (size_t i = 0; i < sizeof(pat) / sizeof(pat[0]) && !found; i++) {
			char *h = strstr(buf, pat[i]);
			if (!h)
				continue;
			char *b = h;
			while (b > buf && b[-1] != '\n')
				b--;
			char *e = strchr(h, '\n');
			snprintf(line, n, "%.*s", (int)(e ? e - b : (ptrdiff_t)strlen(b)), b);
			found = true;
		}
		log_scanned += (off_t)(last + 1 - buf);
		if (found)
			break;
	}
	close(fd);
	return found;
}

static void start_switch(void)
{
	int lfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (lfd < 0) {
		fprintf(stderr, "vu_session: %s: %s\n", log_path, strerror(errno));
		exit(2);
	}
	char w[16], a[300];
	snprintf(w, sizeof(w), "%u", opt.workers);
	snprintf(a, sizeof(a), "%s,queues=2", sock_a);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		/* an ignored signal stays ignored across exec: the switch gets
		 * the dispositions it would have had on its own */
		signal(SIGPIPE, SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(lfd, 1);
		dup2(lfd, 2);
		execl(opt.vswitch, opt.vswitch, "--workers", w, "--vhost-user", a,
		      "--vhost-user", sock_b, "--vhost-user", sock_c, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", opt.vswitch, strerror(errno));
		_exit(127);
	}
	close(lfd);
	sw_pid = pid;
	uint64_t deadline = now_ns() + ms_ns(60000);
	char why[200];
	while (now_ns() < deadline) {
		if (!sw_alive(why, sizeof(why))) {
			fprintf(stderr, "vu_session: the switch did not start: %s\n", why);
			print_log_tail(40);
			exit(2);
		}
		int fd = open(log_path, O_RDONLY | O_CLOEXEC);
		char buf[4096];
		ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = 0;
			if (strstr(buf, "running"))
				return;
		}
		wait_ms(10);
	}
	fprintf(stderr, "vu_session: the switch did not say \"running\" within 60 s\n");
	print_log_tail(40);
	kill(sw_pid, SIGKILL);
	waitpid(sw_pid, NULL, 0);
	exit(2);
}

/* Stops the switch; returns its exit status as text in why, and whether it
 * ended well (exit 0 after SIGTERM). */
static bool stop_switch(char *why, size_t n)
{
	if (sw_pid < 0) {
		snprintf(why, n, "not running");
		return false;
	}
	kill(sw_pid, SIGTERM);
	uint64_t deadline = now_ns() + ms_ns(20000);
	int st = 0;
	pid_t r = 0;
	while ((r = waitpid(sw_pid, &st, WNOHANG)) == 0 && now_ns() < deadline)
		wait_ms(10);
	if (r == 0) {
		kill(sw_pid, SIGKILL);
		waitpid(sw_pid, &st, 0);
		sw_pid = -1;
		snprintf(why, n, "the switch did not exit within 20 s of SIGTERM (killed)");
		return false;
	}
	sw_pid = -1;
	if (WIFSIGNALED(st)) {
		snprintf(why, n, "the switch died of signal %d at shutdown", WTERMSIG(st));
		return false;
	}
	snprintf(why, n, "the switch exited with status %d at shutdown", WEXITSTATUS(st));
	return WEXITSTATUS(st) == 0;
}

/* For hangs: every thread's stack, if gdb is there (best effort, bounded). */
static void capture_stacks(void)
{
	if (sw_pid < 0 || access("/usr/bin/gdb", X_OK))
		return;
	char out[300], p[32];
	snprintf(out, sizeof(out), "%s/vswitch-threads.txt", opt.dir);
	snprintf(p, sizeof(p), "%d", (int)sw_pid);
	pid_t g = fork();
	if (g == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl("/usr/bin/gdb", "gdb", "-batch", "-nx", "-p", p, "-ex",
		      "thread apply all bt", (char *)NULL);
		_exit(127);
	}
	if (g < 0)
		return;
	uint64_t deadline = now_ns() + ms_ns(60000);
	while (waitpid(g, NULL, WNOHANG) == 0) {
		if (now_ns() > deadline) {
			kill(g, SIGKILL);
			waitpid(g, NULL, 0);
			break;
		}
		wait_ms(50);
	}
	fprintf(stderr, "vu_session: the switch's thread stacks: %s\n", out);
}

/* ---- well-behaved peers (B, C) ------------------------------------------------------ */

#define PBUF 2048u
#define ETH_CHECK 0x88b5
#define ETH_FLOOD 0x88b6 /* B's frames to A during a session: checked for damage only */

struct peer {
	struct vud v;
	const char *name;
	uint8_t mac[6];
	uint8_t *rxpool, *txpool;
	bool rx_out[VUD_QSIZE], tx_out[VUD_QSIZE];
	bool mrg;
	uint8_t frame[70000];
	uint64_t frames, foreign;
	char err[300];
};

static struct peer pb = {.name = "B", .mac = {0x02, 0, 0, 0, 0, 0x0b}};
static struct peer pc = {.name = "C", .mac = {0x02, 0, 0, 0, 0, 0x0c}};

/* A used element the switch returned: validated before vud_used takes it
 * (a bad one would make vud_used read outside its arrays). Returns 1 with
 * *id and *len, 0 if none, -1 if the switch broke the ring (p->err). */
static int peer_peek(struct peer *p, unsigned ri, const bool *out, uint16_t *id,
		     uint32_t *len)
{
	struct vud *v = &p->v;
	struct vud_ring *r = &v->r[ri];
	if (!v->packed) {
		uint16_t idx = __atomic_load_n(&r->used[1], __ATOMIC_ACQUIRE);
		if (idx == r->used_idx)
			return 0;
		if ((uint16_t)(idx - r->used_idx) > r->size) {
			snprintf(p->err, sizeof(p->err), "%s ring %u: used index %u more than "
				 "the ring size ahead of %u", p->name, ri, idx, r->used_idx);
			return -1;
		}
		uint32_t *e = (uint32_t *)(r->used + 2) + 2 * (r->used_idx & (r->size - 1));
		uint32_t head = __atomic_load_n(&e[0], __ATOMIC_RELAXED);
		*len = __atomic_load_n(&e[1], __ATOMIC_RELAXED);
		if (head >= r->size || !out[head]) {
			snprintf(p->err, sizeof(p->err), "%s ring %u: used element %u names head "
				 "%u, which is not outstanding", p->name, ri, r->used_idx, head);
			return -1;
		}
		*id = (uint16_t)head;
		return 1;
	}
	uint16_t f = __atomic_load_n(&r->pdesc[r->used_idx].flags, __ATOMIC_ACQUIRE);
	bool av = f & (1 << 7), us = f & (1 << 15);
	if (av != us || us != r->used_wrap)
		return 0;
	uint16_t i = r->pdesc[r->used_idx].id;
	*len = r->pdesc[r->used_idx].len;
	if (i >= r->size || !out[i]) {
		snprintf(p->err, sizeof(p->err), "%s ring %u: used descriptor at slot %u names "
			 "buffer id %u, which is not outstanding", p->name, ri, r->used_idx, i);
		return -1;
	}
	*id = i;
	return 1;
}

static void peer_kick(struct vud *v, struct vud_ring *r, uint16_t old)
{
	if (g_peer_kick && r->avail_idx != old)
		vud_kick(r);
	else
		vud_kick_if_needed(v, r, old);
}

static int peer_post(struct peer *p, uint64_t g)
{
	struct vud *v = &p->v;
	struct vud_ring *r = &v->r[0];
	uint16_t slot;
	if (v->packed)
		slot = r->n_id_free ? r->id_free[r->n_id_free - 1] : 0xffff;
	else
		slot = r->nfree ? r->free_head : 0xffff;
	if (slot >= VUD_QSIZE || p->rx_out[slot]) {
		snprintf(p->err, sizeof(p->err), "%s: receive ring bookkeeping (slot %u)",
			 p->name, slot);
		return -1;
	}
	uint32_t len = PBUF;
	if (vud_add(v, r, &g, &len, 1, g)) {
		snprintf(p->err, sizeof(p->err), "%s: receive ring full", p->name);
		return -1;
	}
	p->rx_out[slot] = true;
	return 0;
}

static struct peer pa = {.name = "A", .mac = {0x02, 0, 0, 0, 0, 0x0a}};
static bool pa_up;

static void peer_pools(struct peer *p)
{
	p->mrg = (p->v.features >> VF_MRG) & 1;
	p->rxpool = vud_alloc(&p->v, VUD_QSIZE * PBUF, 4096);
	p->txpool = vud_alloc(&p->v, VUD_QSIZE * PBUF, 4096);
}

/* A well-behaved front-end on A, retrying while the switch still refuses
 * a second one (the previous was not let go yet). */
static int peer_try_up(struct peer *p, const char *path, uint64_t want, uint64_t deadline,
		       char *why, size_t n)
{
	for (;;) {
		memset(p->rx_out, 0, sizeof(p->rx_out));
		memset(p->tx_out, 0, sizeof(p->tx_out));
		p->err[0] = 0;
		int rc = vud_connect(&p->v, path);
		if (!rc)
			rc = vud_start(&p->v, want, 1);
		if (!rc)
			break;
		vud_close(&p->v);
		if (now_ns() > deadline) {
			snprintf(why, n, "a well-behaved front-end could not set up port %s: %s",
				 p->name, strerror(-rc));
			return -1;
		}
		wait_ms(2);
	}
	peer_pools(p);
	struct vud_ring *r = &p->v.r[0];
	uint16_t old = r->avail_idx;
	for (unsigned i = 0; i < VUD_QSIZE; i++)
		if (peer_post(p, vud_gpa(&p->v, p->rxpool + i * PBUF))) {
			snprintf(why, n, "%s", p->err);
			return -1;
		}
	vud_kick_if_needed(&p->v, r, old);
	return 0;
}

static void peer_up(struct peer *p, const char *path, uint64_t want)
{
	int rc = vud_connect(&p->v, path);
	if (!rc)
		rc = vud_start(&p->v, want, 1);
	if (rc) {
		fprintf(stderr, "vu_session: peer %s on %s: %s\n", p->name, path, strerror(-rc));
		print_log_tail(30);
		exit(2);
	}
	peer_pools(p);
	struct vud_ring *r = &p->v.r[0];
	uint16_t old = r->avail_idx;
	for (unsigned i = 0; i < VUD_QSIZE; i++)
		if (peer_post(p, vud_gpa(&p->v, p->rxpool + i * PBUF))) {
			fprintf(stderr, "vu_session: %s\n", p->err);
			exit(2);
		}
	vud_kick_if_needed(&p->v, r, old);
}

static int peer_reap_tx(struct peer *p)
{
	uint16_t id;
	uint32_t len;
	int rc;
	while ((rc = peer_peek(p, 1, p->tx_out, &id, &len)) == 1) {
		uint64_t tag = 0;
		uint32_t l2 = 0;
		vud_used(&p->v, &p->v.r[1], &tag, &l2);
		p->tx_out[id] = false;
	}
	return rc;
}

/* Sends one frame (our header, zeroed, in front); -ENOSPC if the ring is
 * full, -1 if the switch broke it. */
static int peer_send(struct peer *p, const uint8_t *f, uint32_t n)
{
	if (peer_reap_tx(p) < 0)
		return -1;
	struct vud *v = &p->v;
	struct vud_ring *r = &v->r[1];
	uint16_t slot;
	if (v->packed)
		slot = r->n_id_free ? r->id_free[r->n_id_free - 1] : 0xffff;
	else
		slot = r->nfree ? r->free_head : 0xffff;
	if (slot == 0xffff)
		return -ENOSPC;
	if (slot >= VUD_QSIZE || p->tx_out[slot]) {
		snprintf(p->err, sizeof(p->err), "%s: transmit ring bookkeeping", p->name);
		return -1;
	}
	uint8_t *b = p->txpool + slot * PBUF;
	memset(b, 0, v->hdr_len);
	memcpy(b + v->hdr_len, f, n);
	uint64_t g = vud_gpa(v, b);
	uint32_t len = v->hdr_len + n;
	uint16_t old = r->avail_idx;
	if (vud_add(v, r, &g, &len, 1, g))
		return -ENOSPC;
	p->tx_out[slot] = true;
	peer_kick(v, r, old);
	return 0;
}

typedef void (*frame_fn)(struct peer *p, const uint8_t *f, uint32_t n);

/* Takes the next used buffer of the receive ring (validated): copies its
 * bytes out and posts the buffer again. */
static int peer_take_rx(struct peer *p, uint8_t *dst, uint32_t *len)
{
	uint16_t id;
	int rc = peer_peek(p, 0, p->rx_out, &id, len);
	if (rc <= 0)
		return rc;
	if (*len > PBUF) {
		snprintf(p->err, sizeof(p->err), "%s: used length %u is larger than the %u-byte "
			 "receive buffer", p->name, *len, PBUF);
		return -1;
	}
	uint64_t tag = 0;
	uint32_t l2;
	if (!vud_used(&p->v, &p->v.r[0], &tag, &l2)) {
		snprintf(p->err, sizeof(p->err), "%s: receive ring bookkeeping", p->name);
		return -1;
	}
	p->rx_out[id] = false;
	memcpy(dst, vud_hva(&p->v, tag), *len);
	return peer_post(p, tag) ? -1 : 1;
}

/* Drains the receive ring; returns frames seen, or -1 (p->err). */
static int peer_rx(struct peer *p, frame_fn fn)
{
	struct vud *v = &p->v;
	struct vud_ring *r = &v->r[0];
	uint16_t old = r->avail_idx;
	int frames = 0;
	for (unsigned k = 0; k < 512; k++) {
		uint32_t len;
		int rc = peer_take_rx(p, p->frame, &len);
		if (rc < 0)
			return -1;
		if (!rc)
			break;
		if (len < v->hdr_len) {
			snprintf(p->err, sizeof(p->err), "%s: used length %u shorter than the "
				 "virtio-net header", p->name, len);
			return -1;
		}
		struct vud_net_hdr h;
		memcpy(&h, p->frame, sizeof(h) < v->hdr_len ? sizeof(h) : v->hdr_len);
		unsigned nb = p->mrg ? h.num_buffers : 1;
		if (nb == 0 || nb > 64) {
			snprintf(p->err, sizeof(p->err), "%s: num_buffers %u in a received frame",
				 p->name, nb);
			return -1;
		}
		uint32_t got = len - v->hdr_len;
		memmove(p->frame, p->frame + v->hdr_len, got);
		for (unsigned b = 1; b < nb; b++) {
			uint64_t deadline = now_ns() + ms_ns(2000);
			uint32_t l2 = 0;
			while ((rc = peer_take_rx(p, p->frame + got, &l2)) == 0 &&
			       now_ns() < deadline)
				;
			if (rc < 0)
				return -1;
			if (!rc) {
				snprintf(p->err, sizeof(p->err), "%s: buffer %u of %u of a merged "
					 "frame never came", p->name, b + 1, nb);
				return -1;
			}
			got += l2;
		}
		p->frames++;
		frames++;
		fn(p, p->frame, got);
	}
	peer_kick(v, r, old);
	if (peer_reap_tx(p) < 0)
		return -1;
	return frames;
}

/* ---- the check frames -------------------------------------------------------------- */

#define CHECK_MAX 64
static struct {
	uint64_t first;    /* sequence number of the batch's first frame */
	unsigned n;        /* frames in the batch */
	uint32_t len[CHECK_MAX];
	bool got[CHECK_MAX];
	unsigned received, dup;
	uint64_t announce; /* C's announcement B waits for */
	bool announced;
	/* the check of A: A sends C frames, B sends A frames */
	uint64_t a_first, b_first;
	unsigned a_n, b_n, a_got, b_got;
	bool a_seen[8], b_seen[8];
	char bad[300];
} ck;

static uint8_t check_byte(uint64_t seq, uint32_t i)
{
	return (uint8_t)(0x80 | ((seq * 131 + i * 7) & 0x7f));
}

static uint32_t check_frame_type(uint8_t *f, const uint8_t *dst, const uint8_t *src,
				 uint64_t seq, uint32_t len, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = (uint8_t)(type >> 8);
	f[13] = (uint8_t)type;
	memcpy(f + 14, "HSVU", 4);
	memcpy(f + 18, &seq, 8);
	memcpy(f + 26, &len, 4);
	for (uint32_t i = 30; i < len; i++)
		f[i] = check_byte(seq, i);
	return len;
}

static uint32_t check_frame(uint8_t *f, const uint8_t *dst, const uint8_t *src,
			    uint64_t seq, uint32_t len)
{
	return check_frame_type(f, dst, src, seq, len, ETH_CHECK);
}

/* 1: a check frame from src, intact (*seq); 0: not one of ours; -1: one
 * from src but damaged. */
static int check_parse(const uint8_t *f, uint32_t n, const uint8_t *dst, const uint8_t *src,
		       uint64_t *seq)
{
	if (n < 14 || memcmp(f + 6, src, 6))
		return 0;
	bool flood = f[12] == (ETH_FLOOD >> 8) && f[13] == (ETH_FLOOD & 0xff);
	if (n < 30 || (!flood && memcmp(f, dst, 6)) ||
	    (!flood && (f[12] != (ETH_CHECK >> 8) || f[13] != (ETH_CHECK & 0xff))) ||
	    memcmp(f + 14, "HSVU", 4))
		return -1;
	uint32_t len;
	memcpy(seq, f + 18, 8);
	memcpy(&len, f + 26, 4);
	if (len != n)
		return -1;
	for (uint32_t i = 30; i < n; i++)
		if (f[i] != check_byte(*seq, i))
			return -1;
	return flood ? 2 : 1;
}

static void on_b_frame(struct peer *p, const uint8_t *f, uint32_t n)
{
	uint64_t seq;
	int rc = check_parse(f, n, pb.mac, pc.mac, &seq);
	if (rc == 0) {
		p->foreign++;
		return;
	}
	if (rc < 0) {
		snprintf(ck.bad, sizeof(ck.bad), "B received a damaged frame from C (%u bytes)", n);
		return;
	}
	if (rc == 2)
		return;
	if (seq == ck.announce && !ck.announced)
		ck.announced = true;
	else
		snprintf(ck.bad, sizeof(ck.bad), "B received C's frame %" PRIu64 " unexpectedly "
			 "(awaiting %" PRIu64 "%s)", seq, ck.announce,
			 ck.announced ? ", already received" : "");
}

/* A batch of check frames from src (first, n, seen): marks the one in f. */
static void batch_frame(const char *who, const uint8_t *f, uint32_t n, const uint8_t *dst,
			const uint8_t *src, uint64_t first, unsigned cnt, bool *seen, unsigned *got)
{
	uint64_t seq;
	int rc = check_parse(f, n, dst, src, &seq);
	if (rc == 2 || rc == 0)
		return;
	if (rc < 0 || seq < first || seq >= first + cnt) {
		snprintf(ck.bad, sizeof(ck.bad), "%s: a damaged or unexpected frame (%u bytes)",
			 who, n);
		return;
	}
	if (seen[seq - first]) {
		snprintf(ck.bad, sizeof(ck.bad), "%s: frame %" PRIu64 " twice", who, seq);
		return;
	}
	seen[seq - first] = true;
	(*got)++;
}

static void on_a_frame(struct peer *p, const uint8_t *f, uint32_t n)
{
	if (n >= 12 && !memcmp(f + 6, pb.mac, 6))
		batch_frame("A from B", f, n, pa.mac, pb.mac, ck.b_first, ck.b_n, ck.b_seen,
			    &ck.b_got);
	else
		p->foreign++;
}

static void on_c_frame(struct peer *p, const uint8_t *f, uint32_t n)
{
	uint64_t seq;
	if (n >= 12 && !memcmp(f + 6, pa.mac, 6)) {
		batch_frame("C from A", f, n, pc.mac, pa.mac, ck.a_first, ck.a_n, ck.a_seen,
			    &ck.a_got);
		return;
	}
	int rc = check_parse(f, n, pc.mac, pb.mac, &seq);
	if (rc == 0) {
		p->foreign++;
		return;
	}
	if (rc < 0) {
		snprintf(ck.bad, sizeof(ck.bad), "C received a damaged frame from B (%u bytes)", n);
		return;
	}
	if (rc == 2) { /* one of B's floods to A */
		p->foreign++;
		return;
	}
	if (seq < ck.first || seq >= ck.first + ck.n) {
		snprintf(ck.bad, sizeof(ck.bad), "C received B's frame %" PRIu64 " outside the "
			 "batch %" PRIu64 "..%" PRIu64, seq, ck.first, ck.first + ck.n - 1);
		return;
	}
	unsigned i = (unsigned)(seq - ck.first);
	if (ck.len[i] != n) {
		snprintf(ck.bad, sizeof(ck.bad), "C received B's frame %" PRIu64 " with %u bytes "
			 "instead of %u", seq, n, ck.len[i]);
		return;
	}
	if (ck.got[i]) {
		ck.dup++;
		snprintf(ck.bad, sizeof(ck.bad), "C received B's frame %" PRIu64 " twice", seq);
		return;
	}
	ck.got[i] = true;
	ck.received++;
}

/* Serves B and C once (receive, reap); returns frames seen or -1. */
static int pump(char *why, size_t n)
{
	int a = peer_rx(&pb, on_b_frame);
	if (a < 0) {
		snprintf(why, n, "%s", pb.err);
		return -1;
	}
	int b = peer_rx(&pc, on_c_frame);
	if (b < 0) {
		snprintf(why, n, "%s", pc.err);
		return -1;
	}
	int c = pa_up ? peer_rx(&pa, on_a_frame) : 0;
	if (c < 0) {
		snprintf(why, n, "%s", pa.err);
		return -1;
	}
	return a + b + c;
}

/* Waits up to ms for a notification from B's or C's receive ring. */
static void wait_peers(int ms)
{
	struct pollfd pf[3] = {{.fd = pb.v.r[0].call, .events = POLLIN},
			       {.fd = pc.v.r[0].call, .events = POLLIN},
			       {.fd = pa_up ? pa.v.r[0].call : -1, .events = POLLIN}};
	if (poll(pf, 3, ms) > 0) {
		vud_calls(&pb.v.r[0]);
		vud_calls(&pc.v.r[0]);
		if (pa_up)
			vud_calls(&pa.v.r[0]);
	}
}

/* ---- A's session: state --------------------------------------------------------------- */

#define CANARY 0xa5
#define MAX_S (4u << 20)
#define LOGN 64
#define MAX_PREG 256
#define MAX_AREA 128
#define MAX_WD 65536
#define MAX_FDS 512
#define MAX_ALLOC 4096

enum fdkind { FK_NONE, FK_MAIN, FK_EXTRA, FK_EVENT, FK_OTHER };

struct fdspec {
	int fd;
	uint8_t kind;
};

struct logent {
	uint32_t req, flags, size, nfds;
	bool event;
	char note[96];
};

/* One region proposed with the main memfd (accepted or not). */
struct preg {
	uint64_t gpa, uva, size, off;
};

/* One SET_VRING_ADDR sent. */
struct area {
	uint32_t ring;
	uint64_t desc, used, avail;
};

/* One descriptor written (ring slot or indirect table entry). */
struct wdesc {
	uint64_t addr;
	uint32_t len;
	bool w;   /* WRITE in either 16-bit field (split or packed reading) */
	bool ind; /* INDIRECT in either: a table the switch may read */
};

struct alloc_rec {
	uint32_t off, len;
	const char *what;
	uint8_t ring;
};

/* The fuzzer's driver model of one of A's rings. */
struct aring {
	bool on, rx;
	uint16_t n;
	size_t desc, avail, used; /* file offsets; packed: ring, driver area, device area */
	uint16_t avail_idx;       /* split: free running; packed: next slot */
	bool wrap;                /* packed: driver's wrap counter */
	uint16_t dcur;            /* split: next descriptor slot */
	uint16_t next_id;         /* packed: next buffer id */
	uint32_t base;            /* position sent */
	int kick;                 /* the last kick eventfd sent */
	uint32_t slots;           /* descriptors made available so far */
	bool overflow;            /* this session may post more than the ring holds */
};

struct sess {
	uint64_t no;
	struct rng r;
	int sock;
	bool dead, hung;
	char dead_why[96];
	/* guest memory: the main memfd (checked) and extra ones (not) */
	int mfd;
	uint8_t *mem;
	size_t S, lim, alloc_lim, bump;
	uint64_t G0, U0, G1, U1, G2, U2;
	int xfd[8];
	size_t xsize[8];
	uint64_t xgpa[8], xuva[8];
	unsigned nx;
	bool truncated;
	/* what the switch may have been given */
	struct preg preg[MAX_PREG];
	unsigned npreg;
	uint32_t nmax[4];
	struct area area[MAX_AREA];
	unsigned narea;
	unsigned nwd;
	bool ever_packed, packed_then_split;
	/* model */
	uint64_t feat, proto;
	bool packed, indirect, mrg;
	uint16_t hdr_len;
	unsigned nq;
	struct aring ring[4];
	uint8_t amac[4][6];
	unsigned p_mut, p_garbage;
	/* replies */
	uint8_t in[8192];
	size_t inlen;
	unsigned gf_expect, gf_got;
	/* fds to close at the end */
	int fds[MAX_FDS];
	unsigned nfds;
	/* message log */
	struct logent log[LOGN];
	unsigned nlog, msgs, chains, events;
	struct alloc_rec al[MAX_ALLOC];
	unsigned nal;
	/* memory canonical regions sent (for REM_MEM_REG) */
	struct { uint64_t gpa, uva, size, off; } sent_reg[16];
	unsigned nsent_reg;
};

static struct sess S1;
static uint8_t *g_shadow, *g_given, *g_rmap;
static struct wdesc *g_wd;

/* ---- the session's log and failure report ------------------------------------------- */

#define PRINTF(f, a) __attribute__((format(printf, f, a)))

static void slog(struct sess *s, bool event, uint32_t req, uint32_t flags, uint32_t size,
		 uint32_t nfds, const char *fmt, ...) PRINTF(7, 8);
static void slog(struct sess *s, bool event, uint32_t req, uint32_t flags, uint32_t size,
		 uint32_t nfds, const char *fmt, ...)
{
	struct logent *e = &s->log[s->nlog++ % LOGN];
	e->req = req;
	e->flags = flags;
	e->size = size;
	e->nfds = nfds;
	e->event = event;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->note, sizeof(e->note), fmt, ap);
	va_end(ap);
}

static void print_session_log(struct sess *s, unsigned last)
{
	if (!s)
		return;
	unsigned n = s->nlog < last ? s->nlog : last;
	fprintf(stderr, "vu_session: session %" PRIu64 ": features %#" PRIx64 " protocol %#"
		PRIx64 ", %s rings, %u queue pair(s), memory %zu bytes at gpa %#" PRIx64
		" uva %#" PRIx64 "%s; %u messages, %u chains; the last %u entries:\n",
		s->no, s->feat, s->proto, s->packed ? "packed" : "split", s->nq, s->S, s->G0,
		s->U0, s->truncated ? " (truncated)" : "", s->msgs, s->chains, n);
	for (unsigned i = s->nlog - n; i < s->nlog; i++) {
		const struct logent *e = &s->log[i % LOGN];
		if (e->event)
			fprintf(stderr, "  #%-4u -- %s\n", i, e->note);
		else
			fprintf(stderr, "  #%-4u %-22s (%2u) flags %#04x size %4u fds %u  %s\n", i,
				rq_name(e->req), e->req, e->flags, e->size, e->nfds, e->note);
	}
	if (s->dead)
		fprintf(stderr, "  (connection ended: %s)\n", s->dead_why);
}

static void final_summary(const char *failures);

/* B's and C's rings as the driver and the device left them. */
static void dump_peer(struct peer *p)
{
	struct vud *v = &p->v;
	if (!v->mem)
		return;
	fprintf(stderr, "vu_session: peer %s (%s rings): %" PRIu64 " frames received (%" PRIu64
		" not from the check)\n", p->name, v->packed ? "packed" : "split", p->frames,
		p->foreign);
	for (unsigned i = 0; i < 2; i++) {
		struct vud_ring *r = &v->r[i];
		unsigned out = 0;
		for (unsigned k = 0; k < VUD_QSIZE; k++)
			out += i ? p->tx_out[k] : p->rx_out[k];
		if (!v->packed) {
			uint16_t aev = *(uint16_t *)((uint32_t *)(r->used + 2) + 2 * r->size);
			fprintf(stderr, "  %s ring: avail idx %u (in memory %u), used idx seen %u, "
				"device's used idx %u, used flags %#x, avail_event %u, avail flags %#x,"
				" %u outstanding\n", i ? "transmit" : "receive", r->avail_idx,
				r->avail[1], r->used_idx, r->used[1], r->used[0], aev, r->avail[0], out);
		} else {
			fprintf(stderr, "  %s ring: next avail slot %u wrap %u, next used slot %u wrap "
				"%u, device event flags %#x off_wrap %#x, driver event flags %#x, %u "
				"outstanding\n", i ? "transmit" : "receive", r->avail_idx, r->avail_wrap,
				r->used_idx, r->used_wrap, r->dev_evt[1], r->dev_evt[0], r->drv_evt[1], out);
		}
	}
}

/* After a service failure: do kicks on one ring of B or C (kicks the
 * device did not ask for, every 5 ms for 2 s) bring the frames? Tells a
 * lost wake-up from a lost frame; counts every frame that comes. */
static void kick_experiment(void)
{
	static const char *const names[4] = {"B's receive ring", "B's transmit ring",
					     "C's receive ring", "C's transmit ring"};
	for (unsigned k = 0; k < 4; k++) {
		struct peer *p = k < 2 ? &pb : &pc;
		uint64_t fb = pb.frames, fc = pc.frames;
		uint64_t end = now_ns() + ms_ns(2000), next = 0;
		char why[300];
		unsigned before = ck.received, kicks = 0;
		bool ann = ck.announced;
		while (now_ns() < end && (ck.received < ck.n || !ck.announced)) {
			if (now_ns() >= next) {
				vud_kick(&p->v.r[k & 1]);
				kicks++;
				next = now_ns() + ms_ns(5);
			}
			if (pump(why, sizeof(why)) < 0)
				break;
			wait_peers(1);
		}
		bool came = (!ann && ck.announced) || ck.received > before;
		fprintf(stderr, "vu_session: %u extra kick(s) on %s: %s; meanwhile B received %"
			PRIu64 " and C %" PRIu64 " frame(s)\n", kicks, names[k],
			came ? "the missing frames came (a wake-up the switch did not ask for was "
			       "needed)" : "the missing frames did not come",
			pb.frames - fb, pc.frames - fc);
		if (ck.announced && ck.received >= ck.n)
			break;
	}
}

static _Noreturn void fail(struct sess *s, bool hang, const char *check, const char *fmt, ...)
	PRINTF(4, 5);
static _Noreturn void fail(struct sess *s, bool hang, const char *check, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nvu_session: FAILED check %s: %s\n", check, msg);
	fprintf(stderr, "vu_session: seed %" PRIu64 ", session %" PRIu64 " (%" PRIu64
		" sessions done)\n", opt.seed, cur_session, tot_sessions);
	uint64_t upto = cur_session != UINT64_MAX ? cur_session + 1 : opt.from + tot_sessions;
	fprintf(stderr, "vu_session: reproduce: %s --vswitch %s --workers %u%s --seed %" PRIu64
		" --sessions %" PRIu64 "\n", program_invocation_name, opt.vswitch, opt.workers,
		opt.fd_types ? " --fd-types" : "", opt.seed, upto);
	if (cur_session != UINT64_MAX)
		fprintf(stderr, "vu_session:   or this session alone (the switch fresh): --seed %"
			PRIu64 " --from %" PRIu64 " --sessions 1\n", opt.seed, cur_session);
	print_session_log(s, 30);
	if (hang)
		capture_stacks();
	if (hang && !strncmp(check, "(b)", 3)) {
		dump_peer(&pb);
		dump_peer(&pc);
		if (pa_up)
			dump_peer(&pa);
		kick_experiment();
		dump_peer(&pb);
		dump_peer(&pc);
	}
	/* SIGTERM first: the switch prints its counters on the way out */
	char why[200];
	if (sw_pid > 0) {
		stop_switch(why, sizeof(why));
		fprintf(stderr, "vu_session: stopping the switch: %s\n", why);
	}
	print_log_tail(60);
	fprintf(stderr, "vu_session: kept %s\n", opt.dir);
	final_summary("1 failure");
	exit(1);
}

/* ---- guest memory of a session -------------------------------------------------------- */

static bool in_lim(struct sess *s, size_t off, size_t n)
{
	return off <= s->lim && n <= s->lim - off;
}

/* Every write of ours goes through here: memory and shadow agree. */
static bool wr(struct sess *s, size_t off, const void *p, size_t n)
{
	if (!in_lim(s, off, n))
		return false;
	memcpy(s->mem + off, p, n);
	memcpy(g_shadow + off, p, n);
	return true;
}

static void wr16_rel(struct sess *s, size_t off, uint16_t v)
{
	if (!in_lim(s, off, 2))
		return;
	memcpy(g_shadow + off, &v, 2);
	__atomic_store_n((uint16_t *)(s->mem + off), v, __ATOMIC_RELEASE);
}

static void fill(struct sess *s, size_t off, uint8_t byte, size_t n)
{
	if (!in_lim(s, off, n))
		return;
	memset(s->mem + off, byte, n);
	memset(g_shadow + off, byte, n);
}

static uint64_t gpa_of(struct sess *s, size_t off)
{
	return s->G0 + off;
}

static uint64_t uva_of(struct sess *s, size_t off)
{
	return s->U0 + off;
}

/* Takes n bytes of the main memfd at the given alignment, after a canary
 * gap of random size; SIZE_MAX when it does not fit. */
static size_t take(struct sess *s, size_t n, size_t align, const char *what, int ring)
{
	size_t gap;
	unsigned g = rbelow(&s->r, 10);
	gap = g < 3 ? 0 : g < 6 ? rrange(&s->r, 1, 64) : rrange(&s->r, 64, 4096);
	if (rpct(&s->r, 5))
		align = 4096;
	size_t off = (s->bump + gap + align - 1) & ~(align - 1);
	if (off > s->alloc_lim || n > s->alloc_lim - off)
		return SIZE_MAX;
	s->bump = off + n;
	if (s->nal < MAX_ALLOC)
		s->al[s->nal++] = (struct alloc_rec){(uint32_t)off, (uint32_t)n, what,
						     (uint8_t)ring};
	return off;
}

/* An address in the canary beyond every allocation (never written by us). */
static size_t deep_canary(struct sess *s, size_t n, size_t align)
{
	size_t room = s->S - s->alloc_lim;
	if (n >= room)
		return s->alloc_lim;
	size_t off = s->alloc_lim + rbelow(&s->r, (uint32_t)(room - n));
	return off & ~(align - 1);
}

static int keep_fd(struct sess *s, int fd)
{
	if (fd >= 0 && s->nfds < MAX_FDS)
		s->fds[s->nfds++] = fd;
	else if (fd >= 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int new_eventfd(struct sess *s)
{
	return keep_fd(s, eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

/* ---- accounting: what the messages as sent may have given the switch ----------------- */

static void log_desc(struct sess *s, uint64_t addr, uint32_t len, uint16_t f12, uint16_t f14)
{
	if (s->nwd < MAX_WD)
		g_wd[s->nwd++] = (struct wdesc){addr, len, ((f12 | f14) & 2) != 0,
						((f12 | f14) & 4) != 0};
}

static void add_preg(struct sess *s, const uint8_t *rd)
{
	if (s->npreg >= MAX_PREG)
		return;
	struct preg p;
	memcpy(&p.gpa, rd, 8);
	memcpy(&p.size, rd + 8, 8);
	memcpy(&p.uva, rd + 16, 8);
	memcpy(&p.off, rd + 24, 8);
	s->preg[s->npreg++] = p;
}

/* Parses a message as the switch would (superset: whether or not it
 * accepts it). */
static void account(struct sess *s, uint32_t req, const uint8_t *pl, uint32_t size,
		    const struct fdspec *fds, unsigned nfds)
{
	uint32_t a, b;
	uint64_t v;
	switch (req) {
	case RQ_SET_VRING_NUM:
		if (size < 8)
			break;
		memcpy(&a, pl, 4);
		memcpy(&b, pl + 4, 4);
		if (a < 4 && b >= 1 && b <= 32768 && b > s->nmax[a])
			s->nmax[a] = b;
		break;
	case RQ_SET_VRING_ADDR:
		if (size < 40 || s->narea >= MAX_AREA)
			break;
		memcpy(&a, pl, 4);
		if (a >= 4)
			break;
		struct area *ar = &s->area[s->narea++];
		ar->ring = a;
		memcpy(&ar->desc, pl + 8, 8);
		memcpy(&ar->used, pl + 16, 8);
		memcpy(&ar->avail, pl + 24, 8);
		break;
	case RQ_SET_MEM_TABLE:
		if (size < 8)
			break;
		memcpy(&a, pl, 4);
		for (uint32_t i = 0; i < a && i < 8 && 8 + 32 * (i + 1) <= size; i++)
			if (i < nfds && fds[i].kind == FK_MAIN)
				add_preg(s, pl + 8 + 32 * i);
		break;
	case RQ_ADD_MEM_REG:
		if (size >= 40 && nfds >= 1 && fds[0].kind == FK_MAIN)
			add_preg(s, pl + 8);
		break;
	case RQ_SET_FEATURES:
		if (size < 8)
			break;
		memcpy(&v, pl, 8);
		if ((v >> VF_PACKED) & 1)
			s->ever_packed = true;
		else if (s->ever_packed)
			s->packed_then_split = true;
		break;
	default:
		break;
	}
}

/* ---- A's socket ----------------------------------------------------------------------- */

static void set_dead(struct sess *s, const char *why)
{
	if (!s->dead)
		snprintf(s->dead_why, sizeof(s->dead_why), "%s", why);
	s->dead = true;
}

static int a_write(struct sess *s, const uint8_t *buf, size_t len, const int *fds, unsigned nfds)
{
	if (s->dead)
		return -EPIPE;
	size_t done = 0;
	while (done < len) {
		struct iovec iov = {.iov_base = (void *)(buf + done), .iov_len = len - done};
		union {
			char c[CMSG_SPACE(16 * sizeof(int))];
			struct cmsghdr align;
		} cb;
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		if (nfds && !done) {
			memset(&cb, 0, sizeof(cb));
			mh.msg_control = cb.c;
			mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
			struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
			memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
		}
		ssize_t w = sendmsg(s->sock, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				s->hung = true;
				set_dead(s, "sending blocked for 10 s");
				return -ETIMEDOUT;
			}
			char why[96];
			snprintf(why, sizeof(why), "send: %s", strerror(errno));
			set_dead(s, why);
			return -errno;
		}
		done += (size_t)w;
	}
	return 0;
}

/* Reads what the switch sent (waiting up to ms for something); parses
 * replies. Returns -1 on a malformed reply (why). */
static int a_read(struct sess *s, int ms, char *why, size_t wn)
{
	if (s->dead)
		return 0;
	struct pollfd pf = {.fd = s->sock, .events = POLLIN};
	int pr = poll(&pf, 1, ms);
	if (pr <= 0)
		return 0;
	for (;;) {
		ssize_t r = recv(s->sock, s->in + s->inlen, sizeof(s->in) - s->inlen, MSG_DONTWAIT);
		if (r == 0) {
			set_dead(s, "closed by the switch");
			break;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				char w2[96];
				snprintf(w2, sizeof(w2), "recv: %s", strerror(errno));
				set_dead(s, w2);
			}
			break;
		}
		s->inlen += (size_t)r;
		while (s->inlen >= 12) {
			uint32_t h[3];
			memcpy(h, s->in, 12);
			if (!(h[1] & 0x4) || (h[1] & 3) != 1 || h[2] > 64) {
				snprintf(why, wn, "malformed reply from the switch: request %u flags "
					 "%#x size %u", h[0], h[1], h[2]);
				return -1;
			}
			if (s->inlen < 12 + h[2])
				break;
			if (h[0] == RQ_GET_FEATURES && h[2] == 8) {
				s->gf_got++;
				uint64_t f;
				memcpy(&f, s->in + 12, 8);
				if (!offered_feat)
					offered_feat = f;
			} else if (h[0] == RQ_GET_PROTOCOL_FEATURES && h[2] == 8 && !offered_proto) {
				memcpy(&offered_proto, s->in + 12, 8);
			}
			memmove(s->in, s->in + 12 + h[2], s->inlen - 12 - h[2]);
			s->inlen -= 12 + h[2];
		}
		if (s->inlen == sizeof(s->in)) {
			snprintf(why, wn, "the switch sent more than %zu bytes of replies at once",
				 sizeof(s->in));
			return -1;
		}
	}
	return 0;
}

/* Sends one message exactly as given (header size = payload bytes). */
static void a_send(struct sess *s, uint32_t req, uint32_t flags, const uint8_t *pl,
		   uint32_t size, const struct fdspec *fds, unsigned nfds, const char *note)
{
	static uint8_t buf[12 + 65536];
	uint32_t h[3] = {req, flags, size};
	memcpy(buf, h, 12);
	if (size)
		memcpy(buf + 12, pl, size);
	int fdv[16];
	for (unsigned i = 0; i < nfds && i < 16; i++)
		fdv[i] = fds[i].fd;
	slog(s, false, req, flags, size, nfds, "%s", note);
	s->msgs++;
	tot_msgs++;
	account(s, req, pl, size, fds, nfds);
	if (req == RQ_GET_FEATURES && size == 0 && nfds == 0 && (flags & 3) == 1 && !s->dead)
		s->gf_expect++;
	a_write(s, buf, 12 + size, fdv, nfds < 16 ? nfds : 16);
	char why[200];
	if (a_read(s, 0, why, sizeof(why)) < 0)
		fail(s, false, "(d) replies", "%s", why);
}

static const uint32_t unknown_reqs[] = {0, 6, 7, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29,
					30, 31, 32, 33, 34, 35, 41, 42, 43, 44, 45, 99,
					0x7fffffff, 0xffffffff};

/* Sends a message after (maybe) mutating it: the payload size, the fds,
 * the flags, the request, a field. */
static void a_msg(struct sess *s, uint32_t req, const void *payload, uint32_t size,
		  const struct fdspec *fds_in, unsigned nfds, const char *fmt, ...) PRINTF(7, 8);
static void a_msg(struct sess *s, uint32_t req, const void *payload, uint32_t size,
		  const struct fdspec *fds_in, unsigned nfds, const char *fmt, ...)
{
	struct rng *r = &s->r;
	static uint8_t pl[MAX_PAYLOAD + 64];
	memset(pl, 0, sizeof(pl));
	if (size)
		memcpy(pl, payload, size);
	struct fdspec fds[16];
	if (nfds)
		memcpy(fds, fds_in, nfds * sizeof(*fds));
	uint32_t flags = 1 | (rpct(r, 60) ? 0x8 : 0);
	char note[96];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	const char *mut = NULL;
	if (rpct(r, (unsigned)s->p_mut)) {
		switch (rbelow(r, 12)) {
		case 0:
		case 1: { /* payload size */
			static const uint32_t sizes[] = {0, 1, 4, 7, 8, 9, 16, 39, 40, 41, 48, 264,
							 265, 4096};
			uint32_t ns = rpct(r, 70) ? sizes[rbelow(r, 14)] : rbelow(r, MAX_PAYLOAD + 1);
			if (ns > size)
				for (uint32_t i = size; i < ns; i++)
					pl[i] = rpct(r, 50) ? 0 : (uint8_t)rnext(r);
			size = ns;
			mut = "size";
			break;
		}
		case 2: { /* extra fds */
			unsigned k = rpct(r, 5) ? 9 : rrange(r, 1, 3);
			for (unsigned i = 0; i < k && nfds < 16; i++)
				fds[nfds++] = (struct fdspec){new_eventfd(s), FK_EVENT};
			mut = k > 8 ? "nine more fds" : "more fds";
			break;
		}
		case 3: /* no fds */
			if (nfds) {
				nfds = 0;
				mut = "fds dropped";
			} else {
				fds[nfds++] = (struct fdspec){new_eventfd(s), FK_EVENT};
				mut = "an fd added";
			}
			break;
		case 4: /* flags */
			if (rpct(r, 15)) {
				flags = (flags & ~3u) | (rpct(r, 50) ? 0 : rrange(r, 2, 3));
				mut = "version";
			} else {
				flags |= (uint32_t)rnext(r) & 0xfffffff4u;
				mut = "flag bits";
			}
			break;
		case 5: /* the request */
			if (rpct(r, 70)) {
				req = unknown_reqs[rbelow(r, sizeof(unknown_reqs) / 4)];
				mut = "unknown request";
			} else {
				req = rrange(r, 1, 40);
				mut = "other request";
			}
			break;
		case 6:
		case 7:
		case 8: /* one field: a random 32-bit word of the payload */
			if (size >= 4) {
				uint32_t at = rbelow(r, size / 4) * 4;
				static const uint32_t vals[] = {0, 1, 2, 3, 4, 0xff, 0x100, 0x1ff, 0x8000,
								0xffff, 0x10000, 0x7fffffff,
								0x80000000, 0xffffffff};
				uint32_t val = rpct(r, 60) ? vals[rbelow(r, 14)] : (uint32_t)rnext(r);
				memcpy(pl + at, &val, 4);
				mut = "field";
			}
			break;
		case 9: /* a random byte */
			if (size) {
				pl[rbelow(r, size)] ^= (uint8_t)(1 + rbelow(r, 255));
				mut = "byte";
			}
			break;
		case 10: /* the reply bit, from the front-end */
			flags |= 0x4;
			mut = "REPLY flag";
			break;
		default: /* no NEED_REPLY */
			flags &= ~0x8u;
			break;
		}
	}
	if (mut) {
		size_t l = strlen(note);
		snprintf(note + l, sizeof(note) - l, " [mutated: %s]", mut);
	}
	a_send(s, req, flags, pl, size, fds, nfds, note);
}

/* Round trip: GET_FEATURES and every reply before it. Fails on a hang. */
static void a_sync(struct sess *s, const char *when)
{
	if (s->dead)
		return;
	a_send(s, RQ_GET_FEATURES, 1, NULL, 0, NULL, 0, "sync");
	uint64_t deadline = now_ns() + ms_ns(10000);
	char why[200];
	while (!s->dead && s->gf_got < s->gf_expect) {
		if (now_ns() > deadline)
			fail(s, true, "(a) control plane", "no reply to GET_FEATURES within 10 s "
			     "(%s; %u of %u replies)", when, s->gf_got, s->gf_expect);
		if (a_read(s, 20, why, sizeof(why)) < 0)
			fail(s, false, "(d) replies", "%s", why);
	}
	if (s->hung)
		fail(s, true, "(a) control plane", "sending to port A blocked for 10 s (%s)", when);
}

/* Connects a front-end to A and makes sure the switch adopted it (a
 * reply to GET_FEATURES): the previous one was disconnected and its
 * device reset (memory unmapped). Returns the socket. */
static int a_connect(struct sess *prev, const char *when)
{
	uint64_t deadline = now_ns() + ms_ns(15000);
	unsigned tries = 0;
	for (;;) {
		tries++;
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		memcpy(sa.sun_path, sock_a, strlen(sock_a)); /* checked to fit in main */
		if (fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			struct timeval tv = {.tv_sec = 10};
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			uint32_t h[3] = {RQ_GET_FEATURES, 1, 0};
			if (send(fd, h, 12, MSG_NOSIGNAL) == 12) {
				struct pollfd pf = {.fd = fd, .events = POLLIN};
				uint64_t rd = now_ns() + ms_ns(10000);
				int pr = 0;
				while (now_ns() < rd && (pr = poll(&pf, 1, 100)) == 0)
					;
				if (pr > 0) {
					uint8_t rep[20];
					ssize_t n = recv(fd, rep, 20, MSG_WAITALL);
					if (n == 20) {
						uint32_t rh[3];
						memcpy(rh, rep, 12);
						if (rh[0] != RQ_GET_FEATURES || rh[2] != 8 || !(rh[1] & 4))
							fail(prev, false, "(d) replies", "malformed reply to "
							     "GET_FEATURES on a new connection: %u %#x %u",
							     rh[0], rh[1], rh[2]);
						uint64_t f;
						memcpy(&f, rep + 12, 8);
						offered_feat = f;
						return fd;
					}
					/* refused: the old front-end is still connected */
				} else {
					fail(prev, true, "(a) control plane", "a new front-end on port A got "
					     "no answer to GET_FEATURES within 10 s (%s)", when);
				}
			}
		}
		if (fd >= 0)
			close(fd);
		if (now_ns() > deadline)
			fail(prev, true, "(a) control plane", "port A did not accept a new front-end "
			     "within 15 s (%s, %u tries): the previous one was never let go", when,
			     tries);
		char why[200];
		if (!sw_alive(why, sizeof(why)))
			fail(prev, false, "(a) alive", "%s (%s)", why, when);
		wait_ms(tries < 20 ? 1 : 10);
	}
}

/* ---- setup messages -------------------------------------------------------------------- */

static void m_u64(struct sess *s, uint32_t req, uint64_t v, const char *fmt, ...) PRINTF(4, 5);
static void m_u64(struct sess *s, uint32_t req, uint64_t v, const char *fmt, ...)
{
	char note[96];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(note, sizeof(note), fmt, ap);
	va_end(ap);
	a_msg(s, req, &v, 8, NULL, 0, "%s %#" PRIx64, note, v);
}

static void m_state(struct sess *s, uint32_t req, uint32_t idx, uint32_t num, const char *what)
{
	uint32_t st[2] = {idx, num};
	a_msg(s, req, st, 8, NULL, 0, "ring %u %s %u (%#x)", idx, what, num, num);
}

/* A ring index: mostly the one meant, sometimes a bad one. */
static uint32_t ring_index(struct sess *s, unsigned i)
{
	struct rng *r = &s->r;
	if (!rpct(r, s->p_mut / 2 + 2))
		return i;
	static const uint32_t bad[] = {4, 5, 63, 64, 255, 256, 0x80000000, 0xffffffff};
	return rpct(r, 80) ? bad[rbelow(r, 8)] : (uint32_t)rnext(r);
}

static void op_features(struct sess *s)
{
	struct rng *r = &s->r;
	uint64_t f = s->feat;
	const char *what = "";
	if (rpct(r, s->p_mut)) {
		switch (rbelow(r, 7)) {
		case 0: f |= FB(rrange(r, 0, 63)); what = " (one bit more)"; break;
		case 1: f = 0; what = " (none)"; break;
		case 2: f = ~0ull; what = " (all)"; break;
		case 3: f ^= FB(VF_EVENT_IDX); what = " (EVENT_IDX toggled)"; break;
		case 4: f ^= FB(VF_PACKED); what = " (RING_PACKED toggled)"; break;
		case 5: f = (f | FB(VF_PACKED)) & ~FB(VF_V1); what = " (packed, no VERSION_1)"; break;
		default: f |= FB(VF_LOG_ALL); what = " (LOG_ALL)"; break;
		}
	}
	m_u64(s, RQ_SET_FEATURES, f, "features%s", what);
}

static void op_proto(struct sess *s)
{
	struct rng *r = &s->r;
	uint64_t p = s->proto;
	if (rpct(r, s->p_mut))
		p = rpct(r, 50) ? p | FB(rrange(r, 0, 63)) : (uint64_t)rnext(r);
	m_u64(s, RQ_SET_PROTOCOL_FEATURES, p, "protocol features");
}

static uint32_t ring_num(struct sess *s, unsigned i)
{
	struct rng *r = &s->r;
	uint32_t n = s->ring[i].on ? s->ring[i].n : 256;
	if (!rpct(r, s->p_mut + 3))
		return n;
	static const uint32_t v[] = {0, 1, 2, 3, 4, 8, 64, 100, 255, 256, 512, 1024, 4096,
				     32767, 32768, 32769, 65535, 65536, 0xffffffff};
	switch (rbelow(r, 4)) {
	case 0: return n / 2 ? n / 2 : 1;
	case 1: return n * 2;
	case 2: return (uint32_t)rnext(r);
	default: return v[rbelow(r, sizeof(v) / 4)];
	}
}

static uint32_t ring_base(struct sess *s, unsigned i)
{
	struct rng *r = &s->r;
	uint32_t b = s->ring[i].base;
	if (!rpct(r, s->p_mut + 3))
		return b;
	uint32_t n = s->ring[i].n;
	switch (rbelow(r, 9)) {
	case 0: return 0;
	case 1: return 0x8000;
	case 2: return 20000 | 0x8000;
	case 3: return 0x8000 | (uint32_t)(0x8000 | 20000) << 16; /* used slot far outside */
	case 4: return b | (uint32_t)rbelow(r, 0x10000) << 16;    /* upper half */
	case 5: return 0x18000;
	case 6: return n | 0x8000;
	case 7: return (n - 1) | (rpct(r, 50) ? 0x8000 : 0);
	default: return (uint32_t)rnext(r);
	}
}

/* A ring area address: ours, or outside, inside the canary, straddling
 * the end of memory, misaligned, another ring's. */
static uint64_t ring_uva(struct sess *s, size_t off, size_t len, const char **what)
{
	struct rng *r = &s->r;
	if (!rpct(r, s->p_mut + 2))
		return uva_of(s, off);
	switch (rbelow(r, 8)) {
	case 0: *what = "outside"; return rpct(r, 50) ? 0 : uva_of(s, s->S) + rbelow(r, 1 << 20);
	case 1: *what = "in the canary"; return uva_of(s, deep_canary(s, len, 16));
	case 2: *what = "straddling the end"; return uva_of(s, s->S - len / 2 - 8);
	case 3: *what = "misaligned"; return uva_of(s, off) + rrange(r, 1, 15);
	case 4: {
		unsigned j = rbelow(r, 4);
		*what = "another ring's";
		return s->ring[j].on ? uva_of(s, rpct(r, 50) ? s->ring[j].used : s->ring[j].desc)
				     : uva_of(s, off);
	}
	case 5: *what = "extra memory"; return s->nx ? s->xuva[rbelow(r, s->nx)] : s->U1;
	case 6: *what = "random"; return rnext(r);
	default: *what = "just before memory"; return s->U0 - 16;
	}
}

static void op_addr(struct sess *s, unsigned i)
{
	struct aring *a = &s->ring[i];
	uint64_t ad[5] = {0};
	uint32_t ix[2] = {ring_index(s, i), rpct(&s->r, 3) ? 1u : 0u}; /* flags: LOG */
	memcpy(ad, ix, 8);
	const char *w1 = "", *w2 = "", *w3 = "";
	size_t n = a->on ? a->n : 256;
	size_t dl = 16 * n, al = s->packed ? 4 : 6 + 2 * n, ul = s->packed ? 4 : 6 + 8 * n;
	ad[1] = ring_uva(s, a->desc, dl, &w1);
	ad[2] = ring_uva(s, a->used, ul, &w2);
	ad[3] = ring_uva(s, a->avail, al, &w3);
	if (rpct(&s->r, 5))
		ad[4] = rnext(&s->r); /* log address */
	a_msg(s, RQ_SET_VRING_ADDR, ad, 40, NULL, 0, "ring %u desc %#" PRIx64 "%s%s used %#"
	      PRIx64 "%s%s avail %#" PRIx64 "%s%s", ix[0], ad[1], *w1 ? " " : "", w1, ad[2],
	      *w2 ? " " : "", w2, ad[3], *w3 ? " " : "", w3);
}

static int new_extra(struct sess *s, size_t *size);

/* Writes into a pipe or socket until it is full (then blocking again). */
static void fill_up(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	static const uint8_t junk[4096];
	while (write(fd, junk, sizeof(junk)) > 0)
		;
	while (write(fd, junk, 1) > 0)
		;
	fcntl(fd, F_SETFL, fl);
}

/* --fd-types: something else than an eventfd where one is expected (or
 * one that blocks). */
static int odd_fd(struct sess *s, const char **what)
{
	struct rng *r = &s->r;
	int p[2] = {-1, -1}, fd = -1;
	switch (rbelow(r, 7)) {
	case 6: { /* a blocking eventfd at its maximum: the next write blocks */
		fd = eventfd(0, EFD_CLOEXEC);
		uint64_t max = UINT64_MAX - 1;
		if (fd >= 0 && write(fd, &max, sizeof(max)) != sizeof(max)) {
		}
		*what = " (blocking eventfd at its maximum)";
		break;
	}
	case 0: /* a pipe whose reader is gone: a write raises SIGPIPE */
		if (!pipe2(p, O_CLOEXEC)) {
			close(p[0]);
			fd = p[1];
		}
		*what = " (pipe, reader closed)";
		break;
	case 1: /* a full pipe nobody reads: the next write blocks */
		if (!pipe2(p, O_CLOEXEC)) {
			fill_up(p[1]);
			keep_fd(s, p[0]);
			fd = p[1];
		}
		*what = " (full pipe nobody reads)";
		break;
	case 2: /* the read end of a pipe */
		if (!pipe2(p, O_CLOEXEC)) {
			keep_fd(s, p[1]);
			fd = p[0];
		}
		*what = " (read end of a pipe)";
		break;
	case 3:
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		*what = " (/dev/null)";
		break;
	case 4: /* a full socket nobody reads */
		if (!socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p)) {
			fill_up(p[0]);
			keep_fd(s, p[1]);
			fd = p[0];
		}
		*what = " (full socket nobody reads)";
		break;
	default: { /* a regular file (not the guest's memory) */
		size_t xs;
		*what = " (a memfd)";
		return new_extra(s, &xs);
	}
	}
	return keep_fd(s, fd);
}

/* SET_VRING_KICK/CALL/ERR: an eventfd, or NOFD, bad indexes, stray bits. */
static void op_fd(struct sess *s, uint32_t req, unsigned i)
{
	struct rng *r = &s->r;
	uint64_t v = i;
	struct fdspec fd = {-1, FK_NONE};
	unsigned nfd = 0;
	const char *what = "";
	bool nofd = req != RQ_SET_VRING_KICK && rpct(r, 10);
	if (nofd) {
		v |= NOFD;
		what = " NOFD";
	} else {
		fd = (struct fdspec){new_eventfd(s), FK_EVENT};
		if (opt.fd_types && rpct(r, 8)) {
			fd = (struct fdspec){odd_fd(s, &what), FK_OTHER};
			tot_oddfd++;
		}
		nfd = 1;
		if (req == RQ_SET_VRING_KICK) /* kicked by us only if an eventfd */
			s->ring[i].kick = fd.kind == FK_EVENT ? fd.fd : -1;
	}
	if (rpct(r, s->p_mut / 2 + 2)) {
		switch (rbelow(r, 6)) {
		case 0: v = (v & ~0xffull) | rrange(r, 4, 255); what = " (bad index)"; break;
		case 1: v |= NOFD; what = " (NOFD with an fd)"; break;
		case 2: v |= FB(rrange(r, 9, 63)); what = " (stray bit)"; break;
		case 3: nfd = 0; what = " (no fd, no NOFD)"; v &= ~(uint64_t)NOFD; break;
		case 4: v = ((uint64_t)rnext(r)); what = " (random)"; break;
		default:
			if (!nfd) {
				fd = (struct fdspec){new_eventfd(s), FK_EVENT};
				nfd = 1;
			}
			v |= NOFD;
			what = " (NOFD, fd)";
			break;
		}
	}
	a_msg(s, req, &v, 8, &fd, nfd, "ring %" PRIu64 " %#" PRIx64 "%s", v & 0xff, v, what);
}

/* ---- memory tables --------------------------------------------------------------------- */

static int new_extra(struct sess *s, size_t *size)
{
	if (s->nx >= 8)
		return s->xfd[rbelow(&s->r, 8)];
	size_t n;
	switch (rbelow(&s->r, 4)) {
	case 0: n = rrange(&s->r, 1, 4096); break;
	case 1: n = 4096 * rrange(&s->r, 1, 64); break;
	case 2: n = rrange(&s->r, 4097, 1 << 20); break;
	default: n = 1 << 20; break;
	}
	int fd = keep_fd(s, memfd_create("vu-session-extra", MFD_CLOEXEC));
	if (fd < 0 || ftruncate(fd, (off_t)n)) {
		perror("vu_session: memfd");
		exit(2);
	}
	s->xfd[s->nx] = fd;
	s->xsize[s->nx] = n;
	s->xgpa[s->nx] = s->G1 + (uint64_t)s->nx * (2u << 20);
	s->xuva[s->nx] = s->U1 + (uint64_t)s->nx * (2u << 20);
	s->nx++;
	*size = n;
	return fd;
}

struct rd {
	uint64_t gpa, size, uva, off;
};

/* Canonical pieces of the main memfd: gpa = G0 + off, uva = U0 + off. */
static unsigned canon_pieces(struct sess *s, struct rd *out, unsigned max)
{
	struct rng *r = &s->r;
	unsigned k = rpct(r, 60) ? 1 : rrange(r, 2, max);
	size_t cut[9];
	cut[0] = 0;
	cut[k] = s->S;
	for (unsigned i = 1; i < k; i++) {
		size_t c = rbelow(r, (uint32_t)s->S);
		unsigned g = rbelow(r, 3);
		c &= g == 0 ? ~(size_t)4095 : g == 1 ? ~(size_t)15 : ~(size_t)0;
		cut[i] = c;
	}
	/* sort the inner cuts */
	for (unsigned i = 1; i < k; i++)
		for (unsigned j = i + 1; j < k; j++)
			if (cut[j] < cut[i]) {
				size_t t = cut[i];
				cut[i] = cut[j];
				cut[j] = t;
			}
	unsigned n = 0;
	for (unsigned i = 0; i < k; i++)
		if (cut[i + 1] > cut[i])
			out[n++] = (struct rd){s->G0 + cut[i], cut[i + 1] - cut[i], s->U0 + cut[i],
					       cut[i]};
	return n;
}

/* A hostile region: short, past the end, overlapping, aliasing, extra,
 * zero-sized, overflowing, huge, at gpa 0. */
static struct rd hostile_region(struct sess *s, const struct rd *prev, unsigned nprev,
				struct fdspec *fd, const char **what)
{
	struct rng *r = &s->r;
	struct rd d = {s->G0, s->S, s->U0, 0};
	*fd = (struct fdspec){s->mfd, FK_MAIN};
	switch (rbelow(r, 11)) {
	case 0: *what = "longer than its file"; d.size = s->S + 4096 * rrange(r, 1, 16); break;
	case 1: *what = "offset past the end"; d.off = s->S + rbelow(r, 8192); d.size = 4096; break;
	case 2:
		*what = "offset near the end";
		d.off = s->S - 4096;
		d.size = 8192;
		break;
	case 3:
		if (nprev) {
			*what = "overlapping (gpa)";
			d = prev[rbelow(r, nprev)];
			d.uva += 1ull << 40;
			d.gpa += rbelow(r, (uint32_t)(d.size > 1 ? d.size / 2 : 1));
			if (d.off >= s->S)
				d.off = 0;
			break;
		}
		/* fall through */
	case 4:
		if (nprev) {
			*what = "overlapping (uva)";
			d = prev[rbelow(r, nprev)];
			d.gpa += 1ull << 40;
			d.uva += rbelow(r, (uint32_t)(d.size > 1 ? d.size / 2 : 1));
			if (d.off >= s->S)
				d.off = 0;
			break;
		}
		/* fall through */
	case 5: {
		*what = "aliasing the main file";
		size_t off = rbelow(r, (uint32_t)s->S) & ~(size_t)4095;
		d = (struct rd){s->G2 + off, s->S - off, s->U2 + off, off};
		break;
	}
	case 6:
	case 7: {
		size_t xs;
		int xfd = new_extra(s, &xs);
		unsigned xi = s->nx - 1;
		for (unsigned i = 0; i < s->nx; i++)
			if (s->xfd[i] == xfd)
				xi = i;
		xs = s->xsize[xi];
		*fd = (struct fdspec){xfd, FK_EXTRA};
		d.gpa = s->xgpa[xi];
		d.uva = s->xuva[xi];
		d.off = rpct(r, 70) ? 0 : rbelow(r, (uint32_t)xs);
		d.size = rpct(r, 60) && xs > d.off ? xs - d.off : rrange(r, 1, 2u << 20);
		*what = d.off + d.size <= xs ? "extra memfd" : "extra memfd, shorter than the region";
		if (rpct(r, 15)) {
			d.gpa = 0;
			*what = "extra memfd at gpa 0";
		}
		break;
	}
	case 8: *what = "zero size"; d.size = 0; break;
	case 9:
		*what = "overflowing";
		if (rpct(r, 50))
			d.gpa = UINT64_MAX - 4095;
		else
			d.uva = UINT64_MAX - 4095;
		d.size = 8192;
		break;
	default:
		*what = rpct(r, 50) ? "huge" : "non-regular fd";
		if (**what == 'h')
			d.size = 1ull << rrange(r, 40, 63);
		else
			*fd = (struct fdspec){new_eventfd(s), FK_EVENT};
		break;
	}
	return d;
}

static void send_table(struct sess *s, const struct rd *rd, unsigned n, struct fdspec *fds,
		       unsigned nfds, uint32_t nreg, const char *what)
{
	uint8_t pl[8 + 32 * 9] = {0};
	memcpy(pl, &nreg, 4);
	for (unsigned i = 0; i < n && i < 9; i++)
		memcpy(pl + 8 + 32 * i, &rd[i], 32);
	uint32_t size = 8 + 32 * (n < 8 ? (n ? n : 1) : 8);
	a_msg(s, RQ_SET_MEM_TABLE, pl, size, fds, nfds, "%u region(s)%s%s: first gpa %#" PRIx64
	      " size %#" PRIx64 " uva %#" PRIx64 " off %#" PRIx64, nreg, *what ? ", " : "",
	      what, rd[0].gpa, rd[0].size, rd[0].uva, rd[0].off);
}

static void reg_msg(struct sess *s, uint32_t req, const struct rd *d, struct fdspec fd,
		    bool withfd, const char *what)
{
	uint8_t pl[40] = {0};
	memcpy(pl + 8, d, 32);
	a_msg(s, req, pl, 40, &fd, withfd ? 1 : 0, "gpa %#" PRIx64 " size %#" PRIx64 " uva %#"
	      PRIx64 " off %#" PRIx64 "%s%s", d->gpa, d->size, d->uva, d->off, *what ? " " : "",
	      what);
}

/* The memory step: a table, or regions one by one; mostly the canonical
 * layout, sometimes with holes and hostile regions. */
static void op_mem(struct sess *s)
{
	struct rng *r = &s->r;
	struct rd rd[10];
	struct fdspec fds[10];
	unsigned n = canon_pieces(s, rd, 8);
	const char *what = "";
	for (unsigned i = 0; i < n; i++)
		fds[i] = (struct fdspec){s->mfd, FK_MAIN};
	if (n > 1 && rpct(r, 20)) { /* a hole */
		unsigned h = rbelow(r, n);
		memmove(&rd[h], &rd[h + 1], (n - h - 1) * sizeof(rd[0]));
		n--;
		what = "a hole";
	}
	if (rpct(r, s->p_mut + 5) && n < 8) { /* a hostile region among them */
		unsigned at = rbelow(r, n + 1);
		struct fdspec f;
		struct rd h = hostile_region(s, rd, n, &f, &what);
		memmove(&rd[at + 1], &rd[at], (n - at) * sizeof(rd[0]));
		memmove(&fds[at + 1], &fds[at], (n - at) * sizeof(fds[0]));
		rd[at] = h;
		fds[at] = f;
		n++;
	}
	/* shuffle sometimes: the order of regions is the front-end's */
	if (rpct(r, 20))
		for (unsigned i = n; i > 1; i--) {
			unsigned j = rbelow(r, i);
			struct rd t = rd[i - 1];
			struct fdspec tf = fds[i - 1];
			rd[i - 1] = rd[j];
			fds[i - 1] = fds[j];
			rd[j] = t;
			fds[j] = tf;
		}
	for (unsigned i = 0; i < n && s->nsent_reg < 16; i++)
		if (fds[i].kind == FK_MAIN) {
			s->sent_reg[s->nsent_reg].gpa = rd[i].gpa;
			s->sent_reg[s->nsent_reg].uva = rd[i].uva;
			s->sent_reg[s->nsent_reg].size = rd[i].size;
			s->sent_reg[s->nsent_reg++].off = rd[i].off;
		}
	bool slots = (s->proto >> PF_SLOTS) & 1;
	if (slots && rpct(r, 40)) {
		unsigned reps = rpct(r, 80) ? 1 : rrange(r, 2, 3);
		for (unsigned k = 0; k < reps; k++)
			for (unsigned i = 0; i < n; i++)
				reg_msg(s, RQ_ADD_MEM_REG, &rd[i], fds[i], true, what);
		return;
	}
	uint32_t nreg = n;
	unsigned nfds = n;
	if (rpct(r, s->p_mut / 2 + 1)) {
		switch (rbelow(r, 4)) {
		case 0: nreg = rbelow(r, 2) ? 0 : 9; what = "bad region count"; break;
		case 1: nreg = n + 1; what = "count above the regions"; break;
		case 2: nfds = n > 1 ? n - 1 : 0; what = "fewer fds"; break;
		default:
			if (nfds < 9)
				fds[nfds++] = (struct fdspec){s->mfd, FK_MAIN};
			what = "more fds";
			break;
		}
	}
	send_table(s, rd, n, fds, nfds, nreg, what);
}

/* ---- A's rings: layout ------------------------------------------------------------------- */

static void layout_ring(struct sess *s, unsigned i)
{
	struct rng *r = &s->r;
	struct aring *a = &s->ring[i];
	memset(a, 0, sizeof(*a));
	a->kick = -1;
	a->rx = !(i & 1);
	static const uint16_t sp[] = {256, 256, 256, 128, 64, 16, 2, 1024, 1, 512};
	if (!s->packed)
		a->n = sp[rbelow(r, 10)];
	else
		a->n = rpct(r, 60) ? sp[rbelow(r, 10)] : (uint16_t)rrange(r, 1, 600);
	uint16_t n = a->n;
	if (!s->packed) {
		a->desc = take(s, 16u * n, 16, "split descriptor table", (int)i);
		a->avail = take(s, 6u + 2u * n, 2, "split available ring", (int)i);
		a->used = take(s, 6u + 8u * n, 4, "split used ring", (int)i);
	} else {
		/* The event areas get the room of a split ring's: a ring the
		 * switch starts before it knows the ring is packed reads and
		 * writes them as such (and writing used elements over
		 * descriptors would make the canary check meaningless). */
		a->desc = take(s, 16u * n, 16, "packed descriptor ring", (int)i);
		a->avail = take(s, 6u + 2u * n, 4, "packed driver event area", (int)i);
		a->used = take(s, 6u + 8u * n, 4, "packed device event area", (int)i);
	}
	if (a->desc == SIZE_MAX || a->avail == SIZE_MAX || a->used == SIZE_MAX)
		return;
	a->on = true;
	a->overflow = rpct(r, s->p_garbage / 5);
	if (!s->packed) {
		a->avail_idx = rpct(r, 70) ? 0 : (uint16_t)rnext(r);
		a->base = a->avail_idx;
		a->dcur = 0;
		uint16_t av[2] = {0, a->avail_idx};
		if (rpct(r, 10))
			av[0] = 1; /* NO_INTERRUPT */
		wr(s, a->avail, av, 4);
		fill(s, a->desc, 0, 16u * n);
		fill(s, a->used, 0, 6u + 8u * n);
	} else {
		a->avail_idx = rpct(r, 70) ? 0 : (uint16_t)rbelow(r, n);
		a->wrap = rpct(r, 85);
		a->base = a->avail_idx | (a->wrap ? 0x8000u : 0);
		if (rpct(r, 30))
			a->base |= a->base << 16;
		fill(s, a->desc, 0, 16u * n);
		uint32_t ev = rpct(r, 85) ? 0 : (uint32_t)rnext(r); /* driver event area */
		wr(s, a->avail, &ev, 4);
		fill(s, a->used, 0, 4);
	}
}

/* ---- A's rings: descriptors and frames ----------------------------------------------------- */

/* A garbage guest address: outside, canary, straddling, extra, alias.
 * For an indirect table (table): never inside our own structures at a
 * random offset (the alias), whose bytes read at another phase would be
 * descriptors nobody wrote as such. */
static uint64_t bad_gpa_for(struct sess *s, uint32_t *len, const char **what, bool table)
{
	struct rng *r = &s->r;
	unsigned k = rbelow(r, 9);
	if (table && k == 7)
		k = 5;
	switch (k) {
	case 0: *what = "address 0"; return 0;
	case 1: *what = "address ~0"; return UINT64_MAX - rbelow(r, 64);
	case 2: *what = "just past memory"; return gpa_of(s, s->S) + rbelow(r, 64);
	case 3: *what = "just before memory"; return s->G0 - 1 - rbelow(r, 64);
	case 4:
		*what = "straddling the end";
		*len = rrange(r, 2, 4096);
		return gpa_of(s, s->S) - rbelow(r, *len);
	case 5: *what = "in the canary"; return gpa_of(s, deep_canary(s, *len, 1));
	case 6:
		*what = "extra memory";
		return s->nx ? s->xgpa[rbelow(r, s->nx)] + rbelow(r, 8192) : s->G1;
	case 7:
		*what = "alias of memory";
		return s->G2 + rbelow(r, (uint32_t)s->S);
	default: *what = "random"; return rnext(r);
	}
}

static uint64_t bad_gpa(struct sess *s, uint32_t *len, const char **what)
{
	return bad_gpa_for(s, len, what, false);
}

static uint32_t bad_len(struct sess *s)
{
	static const uint32_t v[] = {0, 1, 11, 12, 0x7fffffff, 0x80000000, 0xffffffff, 65550,
				     65551, 1u << 20};
	return v[rbelow(&s->r, 10)];
}

static void put16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, (uint16_t)(v >> 16));
	put_be16(p + 2, (uint16_t)v);
}

static uint16_t ip_csum(const uint8_t *p, size_t n)
{
	uint32_t sum = 0;
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Builds a frame of A's with its virtio-net header (hdr, 12 bytes); both
 * into f (header first, s->hdr_len bytes of it). Returns the total. */
static uint32_t a_frame(struct sess *s, uint8_t *f, uint32_t cap, const char **what)
{
	struct rng *r = &s->r;
	uint8_t hdr[12] = {0};
	uint8_t *e = f + s->hdr_len;
	uint32_t room = cap - s->hdr_len;
	/* destination */
	unsigned d = rbelow(r, 20);
	static const uint8_t bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	if (d < 6)
		memcpy(e, bc, 6);
	else if (d < 10)
		memcpy(e, pb.mac, 6);
	else if (d < 14)
		memcpy(e, pc.mac, 6);
	else if (d < 16) {
		static const uint8_t mc[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
		memcpy(e, mc, 6);
	} else {
		for (int i = 0; i < 6; i++)
			e[i] = (uint8_t)rnext(r);
		e[0] = (uint8_t)((e[0] & 0xfe) | 0x02);
	}
	/* source: one of A's addresses (never B's or C's) */
	memcpy(e + 6, s->amac[rbelow(r, 4)], 6);
	if (rpct(r, 3))
		e[6] |= 1; /* multicast source */
	uint32_t len;
	unsigned kind = rbelow(r, 10);
	*what = "frame";
	if (kind < 3) { /* plain L2 */
		static const uint16_t types[] = {ETH_CHECK, 0x0800, 0x86dd, 0x0806, 0x8100, 0x88a8,
						 0x0000, 0xffff};
		put_be16(e + 12, types[rbelow(r, 8)]);
		len = 14 + (rpct(r, 90) ? rbelow(r, 1500) : rbelow(r, 9100));
		if (len > room)
			len = room;
		for (uint32_t i = 14; i < len; i++)
			e[i] = (uint8_t)(0x80 | rbelow(r, 128));
		if (rpct(r, 10)) { /* offload flags on a frame that has no L4 */
			hdr[0] = (uint8_t)rbelow(r, 4);
			put16(hdr + 6, (uint16_t)rbelow(r, 200));
			put16(hdr + 8, (uint16_t)rbelow(r, 200));
			*what = "frame with stray offload flags";
		}
	} else if (kind < 9) { /* IPv4 or IPv6, TCP or UDP, maybe offloaded */
		bool v6 = kind >= 7, tcp = rpct(r, 65);
		uint32_t l3 = v6 ? 40 : 20, l4 = tcp ? 20 : 8;
		uint32_t pay = rpct(r, 80) ? rbelow(r, 1400) : rbelow(r, 16000);
		if (rpct(r, 3))
			pay = rbelow(r, 65000);
		if (14 + l3 + l4 + pay > room)
			pay = room > 14 + l3 + l4 ? room - 14 - l3 - l4 : 0;
		len = 14 + l3 + l4 + pay;
		uint8_t *ip = e + 14, *l4h = ip + l3;
		put_be16(e + 12, v6 ? 0x86dd : 0x0800);
		memset(ip, 0, l3 + l4);
		if (!v6) {
			ip[0] = 0x45;
			put_be16(ip + 2, (uint16_t)(l3 + l4 + pay));
			put_be16(ip + 4, (uint16_t)rnext(r));
			ip[6] = 0x40;
			ip[8] = 64;
			ip[9] = tcp ? 6 : 17;
			put_be32(ip + 12, 0x0a000001 + rbelow(r, 200));
			put_be32(ip + 16, 0x0a000001 + rbelow(r, 200));
			put_be16(ip + 10, ip_csum(ip, 20));
		} else {
			ip[0] = 0x60;
			put_be16(ip + 4, (uint16_t)(l4 + pay));
			ip[6] = tcp ? 6 : 17;
			ip[7] = 64;
			ip[8] = 0xfd;
			ip[23] = (uint8_t)rnext(r);
			ip[24] = 0xfd;
			ip[39] = (uint8_t)rnext(r);
		}
		put_be16(l4h, (uint16_t)rnext(r));
		put_be16(l4h + 2, (uint16_t)rnext(r));
		if (tcp) {
			put_be32(l4h + 4, (uint32_t)rnext(r));
			l4h[12] = 0x50;
			l4h[13] = (uint8_t)(0x18 | (rpct(r, 10) ? 0x81 : 0));
			put_be16(l4h + 14, 65535);
		} else {
			put_be16(l4h + 4, (uint16_t)(8 + pay));
		}
		for (uint32_t i = 0; i < pay; i++)
			l4h[l4 + i] = (uint8_t)(0x80 | ((i * 13 + l4h[1]) & 0x7f));
		unsigned off = rbelow(r, 10);
		bool csum_ok = (s->feat >> VF_CSUM) & 1;
		bool gso_ok = tcp ? (s->feat >> (v6 ? VF_HOST_TSO6 : VF_HOST_TSO4)) & 1
				  : (s->feat >> VF_HOST_USO) & 1;
		if (rpct(r, 70) && ((off < 3 && !csum_ok) || (off >= 3 && off < 6 && !gso_ok)))
			off = 9; /* mostly what was negotiated */
		if (off < 3) { /* checksum offload */
			hdr[0] = 1;
			put16(hdr + 6, (uint16_t)(14 + l3));
			put16(hdr + 8, tcp ? 16 : 6);
			*what = "frame, checksum offload";
		} else if (off < 6) { /* segmentation offload */
			static const uint16_t mss[] = {0, 1, 8, 100, 536, 1448, 1460, 8000, 65535};
			hdr[0] = 1;
			hdr[1] = tcp ? (v6 ? 4 : 1) : (rpct(r, 80) ? 5 : 3);
			if (rpct(r, 10))
				hdr[1] |= 0x80;
			put16(hdr + 2, (uint16_t)(14 + l3 + l4));
			put16(hdr + 4, mss[rbelow(r, 9)]);
			put16(hdr + 6, (uint16_t)(14 + l3));
			put16(hdr + 8, tcp ? 16 : 6);
			*what = "frame, segmentation offload";
		}
		if (off < 6 && rpct(r, 25)) { /* and a lie in it */
			put16(hdr + 2 * rrange(r, 1, 4), (uint16_t)rnext(r));
			*what = "frame, bad offload metadata";
		}
	} else { /* runts and giants */
		len = rpct(r, 50) ? rbelow(r, 14) : 9000 + rbelow(r, room > 9000 ? room - 9000 : 1);
		if (len > room)
			len = room;
		for (uint32_t i = 12; i < len; i++)
			e[i] = (uint8_t)(0x80 | rbelow(r, 128));
		*what = len < 14 ? "runt" : "giant";
	}
	if (rpct(r, 3)) {
		for (int i = 0; i < 12; i++)
			hdr[i] = (uint8_t)rnext(r);
		*what = "frame, random virtio-net header";
	}
	memcpy(f, hdr, s->hdr_len);
	return s->hdr_len + len;
}

struct piece {
	uint64_t addr;
	uint32_t len;
	uint16_t flags; /* WRITE/NEXT/INDIRECT as wanted (NEXT is set by the writer) */
};

/* Places a buffer of n bytes (content from src, or zeros for receive
 * buffers) in memory and cuts it into pieces. */
static unsigned make_pieces(struct sess *s, bool rx, const uint8_t *src, uint32_t n,
			    struct piece *pc_out, unsigned max)
{
	struct rng *r = &s->r;
	unsigned k = rpct(r, 70) ? 1 : rpct(r, 80) ? rrange(r, 2, 3) : rrange(r, 4, max);
	if (k > n)
		k = n ? n : 1;
	if (rx && !rpct(r, 70))
		k = k < 4 && rpct(r, 30) ? 4 : k;
	unsigned np = 0;
	uint32_t left = n;
	for (unsigned i = 0; i < k && np < max; i++) {
		uint32_t l = i + 1 == k ? left : (left / (k - i) ? rrange(r, 1, left - (k - i - 1)) : 0);
		if (rx && i + 1 < k && rpct(r, 20))
			l = rrange(r, 1, 6); /* header cut into pieces */
		if (l > left)
			l = left;
		size_t off = take(s, l ? l : 1, rpct(r, 50) ? 64 : 1, rx ? "receive buffer" :
				  "transmit buffer", -1);
		if (off == SIZE_MAX)
			break;
		if (!rx && l)
			wr(s, off, src + (n - left), l);
		else if (l)
			fill(s, off, 0, l);
		pc_out[np++] = (struct piece){gpa_of(s, off), l, rx ? 2 : 0};
		left -= l;
		if (!left && i + 1 < k)
			break;
	}
	return np;
}

/* An indirect table holding the pieces; returns its piece (INDIRECT). */
static bool make_table(struct sess *s, const struct piece *p, unsigned n, struct piece *out,
		       const char **what)
{
	struct rng *r = &s->r;
	size_t off = take(s, 16u * n, rpct(r, 90) ? 16 : 8, "indirect table", -1);
	if (off == SIZE_MAX)
		return false;
	for (unsigned i = 0; i < n; i++) {
		uint8_t d[16];
		uint16_t fl = p[i].flags, nx = 0;
		if (!s->packed && i + 1 < n) {
			fl |= 1;
			nx = (uint16_t)(i + 1);
		}
		memcpy(d, &p[i].addr, 8);
		memcpy(d + 8, &p[i].len, 4);
		if (s->packed) {
			put16(d + 12, 0);
			put16(d + 14, fl);
		} else {
			put16(d + 12, fl);
			put16(d + 14, nx);
		}
		wr(s, off + 16u * i, d, 16);
		log_desc(s, p[i].addr, p[i].len, (uint16_t)(d[12] | d[13] << 8),
			 (uint16_t)(d[14] | d[15] << 8));
	}
	*out = (struct piece){gpa_of(s, off), 16u * n, 4};
	*what = "indirect";
	return true;
}

/* Garbage in an indirect table: nested, loops, next out of range, bad
 * length, outside memory. */
static bool bad_table(struct sess *s, bool rx, struct piece *out, const char **what)
{
	struct rng *r = &s->r;
	unsigned n = rrange(r, 1, 8);
	size_t off = take(s, 16u * n, 16, "indirect table (garbage)", -1);
	if (off == SIZE_MAX)
		return false;
	size_t bo = take(s, 256, 64, rx ? "receive buffer" : "transmit buffer", -1);
	if (bo == SIZE_MAX)
		return false;
	fill(s, bo, 0, 256);
	unsigned kind = rbelow(r, 7);
	for (unsigned i = 0; i < n; i++) {
		uint8_t d[16];
		uint64_t ad = gpa_of(s, bo);
		uint32_t l = 32;
		uint16_t fl = rx ? 2 : 0, nx = 0;
		if (!s->packed && i + 1 < n) {
			fl |= 1;
			nx = (uint16_t)(i + 1);
		}
		switch (kind) {
		case 0: if (i == n - 1) fl |= 4; *what = "nested indirect"; break;
		case 1:
			if (!s->packed) {
				fl |= 1;
				nx = (uint16_t)rbelow(r, n);
				*what = "indirect loop";
			}
			break;
		case 2:
			if (!s->packed && i == n - 1) {
				fl |= 1;
				nx = (uint16_t)(n + rbelow(r, 100));
				*what = "indirect next out of range";
			}
			break;
		case 3:
			if (i == rbelow(r, n)) {
				ad = bad_gpa(s, &l, what);
				if (l == 32)
					l = bad_len(s);
			}
			break;
		case 4: fl ^= 2; *what = "indirect, wrong direction"; break;
		default: *what = "indirect, odd table"; break;
		}
		memcpy(d, &ad, 8);
		memcpy(d + 8, &l, 4);
		if (s->packed) {
			put16(d + 12, (uint16_t)(rpct(r, 90) ? 0 : rnext(r)));
			put16(d + 14, fl);
		} else {
			put16(d + 12, fl);
			put16(d + 14, nx);
		}
		wr(s, off + 16u * i, d, 16);
		log_desc(s, ad, l, (uint16_t)(d[12] | d[13] << 8), (uint16_t)(d[14] | d[15] << 8));
	}
	uint32_t tl = 16u * n;
	uint64_t ta = gpa_of(s, off);
	uint16_t tf = 4;
	switch (kind) {
	case 5: {
		static const uint32_t bl[] = {0, 8, 17, 15, 16 * 4097, 0xfffffff0};
		tl = bl[rbelow(r, 6)];
		*what = "indirect, bad table length";
		break;
	}
	case 6:
		if (rpct(r, 50)) {
			tf |= 1;
			*what = "indirect with NEXT";
		} else {
			ta = bad_gpa_for(s, &tl, what, true);
			*what = "indirect table outside";
		}
		break;
	default: break;
	}
	*out = (struct piece){ta, tl, tf};
	return true;
}

/* Writes one chain of pieces into ring a and makes it available.
 * garbage_kind: 0 none, else a ring-level abuse. */
static void ring_put(struct sess *s, struct aring *a, const struct piece *p, unsigned n,
		     unsigned abuse)
{
	struct rng *r = &s->r;
	if (!n)
		return;
	if (!s->packed) {
		uint16_t head = a->dcur % a->n, slot = head;
		for (unsigned i = 0; i < n; i++) {
			uint16_t next = (uint16_t)((slot + 1) % a->n);
			uint16_t fl = p[i].flags | (i + 1 < n ? 1 : 0);
			uint16_t nx = i + 1 < n ? next : (uint16_t)rbelow(r, 4);
			if (abuse == 1 && i + 1 == n) { /* loop back to the head */
				fl |= 1;
				nx = head;
			} else if (abuse == 2 && i + 1 == n) { /* next out of range */
				fl |= 1;
				nx = (uint16_t)(a->n + rbelow(r, 1000));
			}
			uint8_t d[16];
			memcpy(d, &p[i].addr, 8);
			memcpy(d + 8, &p[i].len, 4);
			put16(d + 12, fl);
			put16(d + 14, nx);
			wr(s, a->desc + 16u * slot, d, 16);
			log_desc(s, p[i].addr, p[i].len, fl, nx);
			slot = next;
		}
		a->dcur = slot;
		uint16_t h = head;
		if (abuse == 3)
			h = (uint16_t)(a->n + rbelow(r, 0x10000 - a->n)); /* head out of range */
		uint8_t e[2];
		put16(e, h);
		wr(s, a->avail + 4 + 2u * (a->avail_idx % a->n), e, 2);
		a->avail_idx++;
		return;
	}
	/* packed: the first descriptor's flags go last */
	uint16_t first = a->avail_idx, first_flags = 0;
	uint16_t id = abuse == 4 ? (uint16_t)rnext(r) : (uint16_t)(a->next_id++ % a->n);
	for (unsigned i = 0; i < n; i++) {
		uint16_t slot = a->avail_idx;
		uint16_t fl = p[i].flags | (i + 1 < n ? 1 : 0) |
			      (a->wrap ? (1 << 7) : (1 << 15));
		if (abuse == 5 && i == 0)
			fl ^= (1 << 7) | (1 << 15); /* wrong wrap */
		if (abuse == 6 && i == 0)
			fl = (uint16_t)((fl & ~((1 << 7) | (1 << 15))) |
					(a->wrap ? (1 << 7) | (1 << 15) : 0)); /* looks used */
		uint8_t d[16];
		memcpy(d, &p[i].addr, 8);
		memcpy(d + 8, &p[i].len, 4);
		put16(d + 12, id);
		put16(d + 14, i ? fl : 0);
		if (i)
			wr(s, a->desc + 16u * slot, d, 16);
		else {
			put16(d + 14, 0);
			wr(s, a->desc + 16u * slot, d, 12);
			first_flags = fl;
		}
		log_desc(s, p[i].addr, p[i].len, id, fl);
		if (++a->avail_idx >= a->n) {
			a->avail_idx = 0;
			a->wrap = !a->wrap;
		}
	}
	uint8_t idb[2];
	put16(idb, id);
	wr(s, a->desc + 16u * first + 12, idb, 2);
	wr16_rel(s, a->desc + 16u * first + 14, first_flags);
}

/* Every slot says NEXT: a chain longer than the ring (packed), or a
 * descriptor table where every entry continues (split). */
static void ring_all_next(struct sess *s, struct aring *a)
{
	size_t bo = take(s, 64, 64, "buffer (all-NEXT chain)", -1);
	if (bo == SIZE_MAX)
		return;
	fill(s, bo, 0, 64);
	uint64_t g = gpa_of(s, bo);
	for (uint16_t i = 0; i < a->n; i++) {
		uint8_t d[16];
		uint32_t l = 8;
		uint16_t fl = (uint16_t)((a->rx ? 2 : 0) | 1);
		memcpy(d, &g, 8);
		memcpy(d + 8, &l, 4);
		if (s->packed) {
			fl |= a->wrap ? (1 << 7) : (1 << 15);
			put16(d + 12, 3);
			put16(d + 14, fl);
		} else {
			put16(d + 12, fl);
			put16(d + 14, (uint16_t)((i + 1) % a->n));
		}
		wr(s, a->desc + 16u * i, d, 16);
		log_desc(s, g, l, (uint16_t)(d[12] | d[13] << 8), (uint16_t)(d[14] | d[15] << 8));
	}
	if (!s->packed) {
		uint8_t e[2];
		put16(e, (uint16_t)(a->dcur % a->n));
		wr(s, a->avail + 4 + 2u * (a->avail_idx % a->n), e, 2);
		a->avail_idx++;
	}
}

/* Posts one chain on ring i: a frame (transmit) or a buffer (receive),
 * valid or garbage. */
static void post_one(struct sess *s, unsigned i, char *note, size_t nn)
{
	struct rng *r = &s->r;
	struct aring *a = &s->ring[i];
	struct piece p[40];
	unsigned np = 0, abuse = 0;
	const char *what = a->rx ? "buffer" : "frame";
	static uint8_t fb[12 + 70000];
	bool garbage = rpct(r, s->p_garbage);
	if (!a->rx) {
		uint32_t cap = rpct(r, 95) ? 12 + 16384 : sizeof(fb);
		uint32_t n = a_frame(s, fb, cap, &what);
		np = make_pieces(s, false, fb, n, p, rpct(r, 95) ? 8 : 40);
	} else {
		uint32_t n = rpct(r, 60) ? rrange(r, 1524, 4096) : rrange(r, 1, 1600);
		if (rpct(r, 5))
			n = rrange(r, 4097, 70000);
		np = make_pieces(s, true, NULL, n, p, rpct(r, 95) ? 8 : 40);
	}
	if (!np)
		return;
	if (s->indirect && rpct(r, 20) && !garbage) {
		struct piece t;
		if (make_table(s, p, np, &t, &what)) {
			p[0] = t;
			np = 1;
		}
	}
	if (garbage) {
		switch (rbelow(r, 14)) {
		case 0: {
			uint32_t l = p[0].len;
			p[0].addr = bad_gpa(s, &l, &what);
			p[0].len = l;
			break;
		}
		case 1: p[np - 1].len = bad_len(s); what = "bad length"; break;
		case 2: p[rbelow(r, np)].flags ^= 2; what = "wrong direction"; break;
		case 3: abuse = 1; what = "loop"; break;
		case 4: abuse = 2; what = "next out of range"; break;
		case 5: abuse = s->packed ? 4 : 3; what = s->packed ? "random id" : "head out of range"; break;
		case 6: abuse = s->packed ? 5 : 1; what = s->packed ? "wrong wrap" : "loop"; break;
		case 7: abuse = s->packed ? 6 : 2; what = s->packed ? "looks used" : "next out of range"; break;
		case 8:
		case 9: {
			struct piece t;
			if (bad_table(s, a->rx, &t, &what)) {
				p[0] = t;
				np = 1;
			}
			break;
		}
		case 10: { /* a receive buffer in thousands of pieces, via a table */
			unsigned k = rrange(r, 65, 2100);
			size_t bo = take(s, 2u * k, 64, "buffer (many pieces)", -1);
			size_t to = take(s, 16u * k, 16, "indirect table (many pieces)", -1);
			if (bo == SIZE_MAX || to == SIZE_MAX)
				break;
			fill(s, bo, 0, 2u * k);
			for (unsigned j = 0; j < k; j++) {
				uint8_t d[16];
				uint64_t ad = gpa_of(s, bo + 2u * j);
				uint32_t l = 1;
				uint16_t fl = a->rx ? 2 : 0;
				memcpy(d, &ad, 8);
				memcpy(d + 8, &l, 4);
				if (s->packed) {
					put16(d + 12, 0);
					put16(d + 14, fl);
				} else {
					put16(d + 12, (uint16_t)(fl | (j + 1 < k ? 1 : 0)));
					put16(d + 14, (uint16_t)(j + 1));
				}
				wr(s, to + 16u * j, d, 16);
				log_desc(s, ad, l, (uint16_t)(d[12] | d[13] << 8),
					 (uint16_t)(d[14] | d[15] << 8));
			}
			p[0] = (struct piece){gpa_of(s, to), 16u * k, 4};
			np = 1;
			what = "buffer in thousands of pieces";
			break;
		}
		case 11:
			if (np < 40) { /* a zero-length piece */
				p[np++] = (struct piece){p[0].addr, 0, p[0].flags};
				what = "zero-length piece";
			}
			break;
		case 12: { /* a valid buffer, huge length */
			p[0].len = rpct(r, 50) ? 0xffffffffu : (uint32_t)(s->S * 2);
			what = "huge length";
			break;
		}
		default: { /* canary */
			uint32_t l = rrange(r, 1, 4096);
			p[0].addr = gpa_of(s, deep_canary(s, l, 1));
			p[0].len = l;
			what = "pointing into the canary";
			break;
		}
		}
	}
	/* A driver never has more descriptors out than its ring holds; the
	 * device does not hand them back in this fuzzer (nothing is reaped),
	 * so a session posts at most a ring's worth, unless it overflows on
	 * purpose. */
	if (!a->overflow && a->slots + np > a->n)
		return;
	a->slots += np;
	ring_put(s, a, p, np, abuse);
	s->chains++;
	tot_chains++;
	size_t l = strlen(note);
	if (l + 40 < nn)
		snprintf(note + l, nn - l, "%s%s(%u)", l ? ", " : "", what, np);
}

/* One round of traffic on ring i: chains, maybe odd driver fields, a kick. */
static void traffic(struct sess *s, unsigned i)
{
	struct rng *r = &s->r;
	struct aring *a = &s->ring[i];
	if (!a->on)
		return;
	char note[96] = "";
	unsigned k = rpct(r, 90) ? rrange(r, 1, 12) : rrange(r, 1, a->n + 4);
	if (k > 300)
		k = 300;
	uint16_t idx_before = a->avail_idx;
	bool all_next = rpct(r, s->p_garbage / 10);
	if (all_next) {
		ring_all_next(s, a);
		snprintf(note, sizeof(note), "every slot NEXT");
	} else {
		for (unsigned j = 0; j < k; j++)
			post_one(s, i, note, sizeof(note));
	}
	if (!s->packed) {
		uint16_t idx = a->avail_idx;
		if (rpct(r, s->p_garbage / 4)) {
			idx = (uint16_t)(idx + a->n + 1 + rbelow(r, 1000));
			strncat(note, ", index ahead", sizeof(note) - strlen(note) - 1);
		}
		wr16_rel(s, a->avail + 2, idx);
		if (rpct(r, 10)) {
			uint8_t e[2];
			put16(e, (uint16_t)rnext(r));
			wr(s, a->avail + 4 + 2u * a->n, e, 2); /* used_event */
		}
		if (rpct(r, 5))
			wr16_rel(s, a->avail, (uint16_t)(rpct(r, 50) ? 1 : rnext(r)));
	} else if (rpct(r, 10)) {
		uint32_t ev = (uint32_t)rnext(r) & (rpct(r, 50) ? 0x3ffff : 0xffffffff);
		wr(s, a->avail, &ev, 4);
	}
	bool kick = rpct(r, 85);
	if (kick && a->kick >= 0) {
		uint64_t one = 1;
		if (write(a->kick, &one, 8) != 8) {
		}
	}
	slog(s, true, 0, 0, 0, 0, "ring %u: %u chain(s) at %u: %s%s", i,
	     all_next ? 1 : k, idx_before, note, kick ? " + kick" : "");
	tot_frames += all_next ? 1 : k;
}

/* ---- the session --------------------------------------------------------------------- */

enum op {
	OP_GET_FEATURES, OP_GET_PROTO, OP_SET_PROTO, OP_SET_OWNER, OP_SET_FEATURES, OP_MEM,
	OP_GET_QNUM, OP_GET_SLOTS, OP_MTU, OP_SET_STATUS, OP_GET_STATUS, OP_RESET_OWNER,
	OP_UNKNOWN, OP_NUM, OP_BASE, OP_ADDR, OP_KICK, OP_CALL, OP_ERR, OP_ENABLE,
	OP_GET_BASE, OP_DISABLE, OP__COUNT
};

struct step {
	uint8_t op, ring;
};

static void run_op(struct sess *s, struct step st)
{
	struct rng *r = &s->r;
	unsigned i = st.ring;
	switch (st.op) {
	case OP_GET_FEATURES:
		a_msg(s, RQ_GET_FEATURES, NULL, 0, NULL, 0, "%s", "");
		break;
	case OP_GET_PROTO:
		a_msg(s, RQ_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0, "%s", "");
		break;
	case OP_SET_PROTO:
		op_proto(s);
		break;
	case OP_SET_OWNER:
		a_msg(s, RQ_SET_OWNER, NULL, 0, NULL, 0, "%s", "");
		break;
	case OP_SET_FEATURES:
		op_features(s);
		break;
	case OP_MEM:
		op_mem(s);
		break;
	case OP_GET_QNUM:
		a_msg(s, RQ_GET_QUEUE_NUM, NULL, 0, NULL, 0, "%s", "");
		break;
	case OP_GET_SLOTS:
		a_msg(s, RQ_GET_MAX_MEM_SLOTS, NULL, 0, NULL, 0, "%s", "");
		break;
	case OP_MTU: {
		static const uint64_t v[] = {0, 67, 68, 1500, 9000, 9001, 65535, 65536};
		m_u64(s, RQ_NET_SET_MTU, rpct(r, 80) ? v[rbelow(r, 8)] : rnext(r), "mtu");
		break;
	}
	case OP_SET_STATUS: {
		static const uint64_t v[] = {0, 1, 3, 7, 0xf, 0x8f, 0x40, 0xff, 0x100};
		m_u64(s, RQ_SET_STATUS, rpct(r, 85) ? v[rbelow(r, 9)] : rnext(r), "status");
		break;
	}
	case OP_GET_STATUS:
		a_msg(s, RQ_GET_STATUS, NULL, 0, NULL, 0, "%s", "");
		break;
	case OP_RESET_OWNER:
		a_msg(s, RQ_RESET_OWNER, NULL, 0, NULL, 0, "%s", "");
		break;
	case OP_UNKNOWN: {
		uint8_t pl[64];
		uint32_t n = rbelow(r, 65);
		for (uint32_t k = 0; k < n; k++)
			pl[k] = (uint8_t)rnext(r);
		struct fdspec f = {new_eventfd(s), FK_EVENT};
		uint32_t rq = unknown_reqs[rbelow(r, sizeof(unknown_reqs) / 4)];
		a_msg(s, rq, pl, n, &f, rpct(r, 30) ? 1 : 0, "unknown request");
		break;
	}
	case OP_NUM:
		m_state(s, RQ_SET_VRING_NUM, ring_index(s, i), ring_num(s, i), "num");
		break;
	case OP_BASE:
		m_state(s, RQ_SET_VRING_BASE, ring_index(s, i), ring_base(s, i), "base");
		break;
	case OP_ADDR:
		op_addr(s, i);
		break;
	case OP_KICK:
		op_fd(s, RQ_SET_VRING_KICK, i);
		break;
	case OP_CALL:
		op_fd(s, RQ_SET_VRING_CALL, i);
		break;
	case OP_ERR:
		op_fd(s, RQ_SET_VRING_ERR, i);
		break;
	case OP_ENABLE:
		m_state(s, RQ_SET_VRING_ENABLE, ring_index(s, i),
			rpct(r, s->p_mut / 2 + 1) ? (uint32_t)rnext(r) % 4 : 1, "enable");
		break;
	case OP_DISABLE:
		m_state(s, RQ_SET_VRING_ENABLE, ring_index(s, i), 0, "enable");
		break;
	case OP_GET_BASE:
		m_state(s, RQ_GET_VRING_BASE, ring_index(s, i), 0, "get base");
		break;
	default:
		break;
	}
}

/* The setup: canonical steps, then reordered, dropped, duplicated. */
static unsigned setup_script(struct sess *s, struct step *st, unsigned max)
{
	struct rng *r = &s->r;
	unsigned n = 0;
#define ADD(o, ri) do { if (n < max) st[n++] = (struct step){(o), (uint8_t)(ri)}; } while (0)
	ADD(OP_GET_FEATURES, 0);
	if ((s->feat >> VF_PROTO) & 1 || rpct(r, 20)) {
		ADD(OP_GET_PROTO, 0);
		ADD(OP_SET_PROTO, 0);
	}
	ADD(OP_SET_OWNER, 0);
	ADD(OP_SET_FEATURES, 0);
	if (rpct(r, 15))
		ADD(OP_GET_QNUM, 0);
	if (rpct(r, 10))
		ADD(OP_GET_SLOTS, 0);
	if (rpct(r, 10))
		ADD(OP_MTU, 0);
	ADD(OP_MEM, 0);
	for (unsigned i = 0; i < 2 * s->nq; i++) {
		ADD(OP_NUM, i);
		ADD(OP_BASE, i);
		ADD(OP_ADDR, i);
		ADD(OP_KICK, i);
		ADD(OP_CALL, i);
		if (rpct(r, 20))
			ADD(OP_ERR, i);
		if ((s->feat >> VF_PROTO) & 1 || rpct(r, 30))
			ADD(OP_ENABLE, i);
	}
	if (rpct(r, 30))
		ADD(OP_SET_STATUS, 0);
	if (rpct(r, 10))
		ADD(OP_GET_STATUS, 0);
	unsigned mode = rbelow(r, 10);
	if (!s->p_mut && mode >= 5)
		mode = rbelow(r, 10); /* clean sessions keep their order more often */
	if (g_force_order >= 0)
		mode = (unsigned)g_force_order;
	if (mode >= 5) { /* perturbed: swaps, drops, duplicates, extras */
		unsigned swaps = mode >= 8 ? n * 2 : rbelow(r, 4);
		for (unsigned k = 0; k < swaps && n > 1; k++) {
			unsigned a = rbelow(r, n), b = mode >= 8 ? rbelow(r, n) : (a + 1) % n;
			struct step t = st[a];
			st[a] = st[b];
			st[b] = t;
		}
		for (unsigned k = 0; k < n; k++) {
			if (rpct(r, 4)) { /* drop */
				memmove(&st[k], &st[k + 1], (n - k - 1) * sizeof(*st));
				n--;
			} else if (rpct(r, 5) && n < max) { /* duplicate */
				memmove(&st[k + 1], &st[k], (n - k) * sizeof(*st));
				n++;
				k++;
			}
		}
		unsigned extra = rbelow(r, 3);
		for (unsigned k = 0; k < extra && n < max; k++) {
			unsigned at = rbelow(r, n + 1);
			memmove(&st[at + 1], &st[at], (n - at) * sizeof(*st));
			st[at] = (struct step){(uint8_t)rbelow(r, OP__COUNT),
					       (uint8_t)rbelow(r, 2 * s->nq)};
			n++;
		}
	}
#undef ADD
	return n;
}

/* Control messages in the middle of traffic. */
static void mid_op(struct sess *s)
{
	struct rng *r = &s->r;
	unsigned i = rbelow(r, 2 * s->nq);
	switch (rbelow(r, 17)) {
	case 0: op_fd(s, RQ_SET_VRING_CALL, i); break;
	case 1: op_fd(s, RQ_SET_VRING_ERR, i); break;
	case 2: run_op(s, (struct step){OP_DISABLE, (uint8_t)i}); break;
	case 3: run_op(s, (struct step){OP_ENABLE, (uint8_t)i}); break;
	case 4: /* stop and maybe restart */
		run_op(s, (struct step){OP_GET_BASE, (uint8_t)i});
		if (rpct(r, 60)) {
			if (rpct(r, 50))
				run_op(s, (struct step){OP_BASE, (uint8_t)i});
			op_fd(s, RQ_SET_VRING_KICK, i);
		}
		break;
	case 5: op_fd(s, RQ_SET_VRING_KICK, i); break;
	case 6: op_mem(s); break;
	case 7: { /* remove a region (maybe the rings'), maybe add it back */
		if (!s->nsent_reg)
			break;
		unsigned k = rbelow(r, s->nsent_reg);
		struct rd d = {s->sent_reg[k].gpa, s->sent_reg[k].size, s->sent_reg[k].uva,
			       s->sent_reg[k].off};
		struct fdspec f = {s->mfd, FK_MAIN};
		reg_msg(s, RQ_REM_MEM_REG, &d, f, rpct(r, 50), "");
		if (rpct(r, 50))
			reg_msg(s, RQ_ADD_MEM_REG, &d, f, true, "back");
		break;
	}
	case 8: { /* a hostile region added */
		const char *what = "";
		struct fdspec f;
		struct rd prev = {s->G0, s->S, s->U0, 0};
		struct rd d = hostile_region(s, &prev, 1, &f, &what);
		reg_msg(s, RQ_ADD_MEM_REG, &d, f, true, what);
		break;
	}
	case 9: op_features(s); break;
	case 10: run_op(s, (struct step){OP_NUM, (uint8_t)i}); break;
	case 11: run_op(s, (struct step){OP_BASE, (uint8_t)i}); break;
	case 12: op_addr(s, i); break;
	case 13: { /* the main memory file shrinks under the switch */
		if (!rpct(r, 40))
			break;
		size_t t = rpct(r, 50) ? (size_t)rbelow(r, (uint32_t)s->S) & ~(size_t)4095
				       : rbelow(r, (uint32_t)s->S);
		if (t < s->lim) {
			if (ftruncate(s->mfd, (off_t)t)) {
				perror("vu_session: ftruncate");
				exit(2);
			}
			s->lim = t;
			s->truncated = true;
			slog(s, true, 0, 0, 0, 0, "main memory file truncated to %zu bytes", t);
		}
		break;
	}
	case 14: /* an extra file shrinks */
		if (s->nx) {
			unsigned k = rbelow(r, s->nx);
			size_t t = rbelow(r, (uint32_t)s->xsize[k] + 1);
			if (ftruncate(s->xfd[k], (off_t)t) == 0)
				s->xsize[k] = t;
			slog(s, true, 0, 0, 0, 0, "extra memory file %u truncated to %zu bytes", k, t);
		}
		break;
	case 15: run_op(s, (struct step){(uint8_t)rbelow(r, OP__COUNT), (uint8_t)i}); break;
	default: run_op(s, (struct step){OP_SET_STATUS, 0}); break;
	}
}

/* B sends frames to A (broadcast, or to A's addresses): A's receive rings
 * get used. What is sent is drawn first, so that a full ring (timing)
 * does not change the session's draws. */
static void flood_to_a(struct sess *s)
{
	struct rng *r = &s->r;
	unsigned k = rbelow(r, 9);
	static uint64_t fseq = 1ull << 62; /* read as an address: far outside */
	static uint8_t f[2048];
	static const uint8_t bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	unsigned sent = 0;
	for (unsigned i = 0; i < k; i++) {
		const uint8_t *dst = rpct(r, 50) ? bc : s->amac[rbelow(r, 4)];
		uint32_t len = rpct(r, 80) ? rrange(r, 60, 1514) : rrange(r, 30, 200);
		uint32_t n = check_frame_type(f, dst, pb.mac, fseq++, len, ETH_FLOOD);
		if (peer_send(&pb, f, n) == 0)
			sent++;
		else if (pb.err[0])
			fail(s, false, "(b) service", "%s", pb.err);
	}
	if (k)
		slog(s, true, 0, 0, 0, 0, "B sent %u of %u frames to A", sent, k);
	tot_frames += sent;
}

/* Serves B and C for ms (A's traffic floods to them too). */
static void idle(struct sess *s, unsigned ms)
{
	uint64_t end = now_ns() + ms_ns(ms);
	char why[300];
	do {
		if (pump(why, sizeof(why)) < 0)
			fail(s, false, "(b) service", "%s", why);
		wait_peers(1);
	} while (now_ns() < end);
}

static void session_setup_memory(struct sess *s)
{
	struct rng *r = &s->r;
	static const uint32_t sizes[] = {256u << 10, 512u << 10, 1u << 20, 2u << 20, 4u << 20};
	s->S = rpct(r, 70) ? sizes[rbelow(r, 5)] : 4096u * rrange(r, 32, MAX_S / 4096);
	s->lim = s->S;
	size_t deep = s->S / 8 > (64u << 10) ? s->S / 8 : (64u << 10);
	s->alloc_lim = s->S - deep;
	s->bump = rbelow(r, 4096);
	/* addresses: gpa below 2^47 and above 2^40, far apart */
	/* Guest addresses the switch's own writes cannot spell: the upper 32
	 * bits in [0x40001, 0x7ffff] with a nonzero low half, which no used
	 * length, id, index or flags word (nor a window of the frames B sends
	 * to A) forms; an address made of device-written bits and ours is a
	 * session whose rings overlap descriptors (check_canary skips those). */
	uint32_t x = rrange(r, 0x40001, 0x4ffff);
	if (!(x & 0xffff))
		x++;
	s->G0 = (uint64_t)x << 32;
	s->U0 = 0x7f0000000000ull + ((uint64_t)rbelow(r, 0xfff) << 24);
	s->G1 = s->G0 + (0x20000ull << 32); /* extra memfds */
	s->U1 = s->U0 - (1ull << 36);
	s->G2 = s->G0 + (0x10000ull << 32); /* an alias of the main file */
	s->U2 = s->U0 - (1ull << 37);
	s->mfd = memfd_create("vu-session-guest", MFD_CLOEXEC);
	if (s->mfd < 0 || ftruncate(s->mfd, (off_t)s->S)) {
		perror("vu_session: memfd");
		exit(2);
	}
	s->mem = mmap(NULL, s->S, PROT_READ | PROT_WRITE, MAP_SHARED, s->mfd, 0);
	if (s->mem == MAP_FAILED) {
		perror("vu_session: mmap");
		exit(2);
	}
	memset(s->mem, CANARY, s->S);
	memset(g_shadow, CANARY, s->S);
}

static void session_choose(struct sess *s)
{
	struct rng *r = &s->r;
	static const unsigned pm[] = {0, 0, 2, 5, 10, 30};
	static const unsigned pg[] = {0, 5, 20, 60};
	s->p_mut = pm[rbelow(r, 6)];
	s->p_garbage = pg[rbelow(r, 4)];
	if (g_force_mut >= 0)
		s->p_mut = (unsigned)g_force_mut;
	if (g_force_garbage >= 0)
		s->p_garbage = (unsigned)g_force_garbage;
	uint64_t want = 0;
	if (rpct(r, 90))
		want |= FB(VF_V1);
	if (rpct(r, 85))
		want |= FB(VF_PROTO);
	if (rpct(r, 45))
		want |= FB(VF_PACKED);
	static const unsigned opt_bits[] = {VF_EVENT_IDX, VF_INDIRECT, VF_MRG, VF_CSUM,
					    VF_GUEST_CSUM, VF_HOST_TSO4, VF_HOST_TSO6, VF_HOST_ECN,
					    VF_HOST_USO, VF_GUEST_TSO4, VF_GUEST_TSO6, VF_GUEST_ECN,
					    VF_GUEST_USO4, VF_GUEST_USO6, VF_STATUS, VF_CTRL_VQ,
					    VF_MQ, VF_GUEST_UFO, VF_HOST_UFO, VF_MTU};
	for (unsigned k = 0; k < sizeof(opt_bits) / sizeof(opt_bits[0]); k++)
		if (rpct(r, k < 3 ? 50 : 25))
			want |= FB(opt_bits[k]);
	s->feat = want & (offered_feat ? offered_feat : ~0ull);
	s->packed = (s->feat >> VF_PACKED) & 1;
	s->indirect = (s->feat >> VF_INDIRECT) & 1;
	s->mrg = (s->feat >> VF_MRG) & 1;
	s->hdr_len = ((s->feat >> VF_V1) & 1) || s->mrg ? 12 : 10;
	uint64_t p = 0;
	if (rpct(r, 70))
		p |= FB(PF_MQ);
	if (rpct(r, 80))
		p |= FB(PF_REPLY_ACK);
	if (rpct(r, 60))
		p |= FB(PF_SLOTS);
	if (rpct(r, 40))
		p |= FB(PF_STATUS);
	if (rpct(r, 5))
		p |= FB(PF_MTU);
	s->proto = rpct(r, 95) && offered_proto ? p & offered_proto : p;
	s->nq = rpct(r, 70) ? 1 : 2;
	for (unsigned k = 0; k < 4; k++) {
		for (int b = 0; b < 6; b++)
			s->amac[k][b] = (uint8_t)rnext(r);
		s->amac[k][0] = (uint8_t)((s->amac[k][0] & 0xfc) | 0x02);
		s->amac[k][5] = (uint8_t)(s->amac[k][5] | 0x10); /* never B's or C's */
	}
}

/* The close: plain, in the middle of a message, or an oversized one. */
static void session_close(struct sess *s)
{
	struct rng *r = &s->r;
	unsigned how = rbelow(r, 100);
	size_t n = rrange(r, 1, 30); /* drawn whatever happens: the draws never
				      * depend on what the switch did */
	uint32_t size = rpct(r, 50) ? MAX_PAYLOAD + 1 + rbelow(r, 64) : (uint32_t)rnext(r);
	uint32_t req = rrange(r, 1, 40);
	if (how < 12 && !s->dead) {
		uint8_t part[40] = {0};
		uint32_t h[3] = {RQ_SET_VRING_ADDR, 1, 40};
		memcpy(part, h, 12);
		slog(s, false, RQ_SET_VRING_ADDR, 1, 40, 0, "cut after %zu of 52 bytes, then close", n);
		a_write(s, part, n, NULL, 0);
		s->msgs++;
		tot_msgs++;
	} else if (how < 15 && !s->dead) {
		static uint8_t big[12 + 8192];
		uint32_t h[3] = {req, 1, size};
		memcpy(big, h, 12);
		n = 12 + (size < 8192 ? size : 8192);
		slog(s, false, h[0], 1, size, 0, "oversized: %zu bytes sent, then close", n - 12);
		a_write(s, big, n, NULL, 0);
		s->msgs++;
		tot_msgs++;
	}
	close(s->sock);
	s->sock = -1;
}

/* Calls fn for every file range of the main memfd that [a, a+len) (a guest
 * address if gpa, else a front-end address) may reach through the regions
 * proposed in the session. */
static void each_file_range(struct sess *s, uint64_t a, uint64_t len, bool gpa,
			    void (*fn)(struct sess *, size_t, size_t, size_t), size_t arg)
{
	for (unsigned j = 0; j < s->npreg; j++) {
		const struct preg *p = &s->preg[j];
		uint64_t base = gpa ? p->gpa : p->uva;
		uint64_t lo = a > base ? a : base;
		uint64_t hi = sat_add(a, len), ph = sat_add(base, p->size);
		if (hi > ph)
			hi = ph;
		if (lo >= hi)
			continue;
		uint64_t fo = sat_add(p->off, lo - base), fe = sat_add(fo, hi - lo);
		if (fo >= s->S)
			continue;
		if (fe > s->S)
			fe = s->S;
		/* the phase of the first byte within a 16-byte descriptor at a */
		fn(s, (size_t)fo, (size_t)fe, (size_t)((lo - a) % 16) + arg);
	}
}

static void mark_given(struct sess *s, size_t fo, size_t fe, size_t phase)
{
	(void)phase;
	memset(g_given + fo, 1, fe - fo);
	(void)s;
}

/* g_rmap: where the switch reads descriptors (1 + phase within a 16-byte
 * descriptor, 0xff for several phases). */
static void mark_read(struct sess *s, size_t fo, size_t fe, size_t phase)
{
	(void)s;
	phase %= 16;
	for (size_t i = fo; i < fe; i++, phase = (phase + 1) % 16) {
		uint8_t v = (uint8_t)(1 + phase);
		g_rmap[i] = g_rmap[i] && g_rmap[i] != v ? 0xff : v;
	}
}

static bool g_overlap;

/* A used area (arg 16) written over descriptors: any overlap; a packed
 * descriptor ring (arg = phase) over descriptors read at another phase. */
static void find_overlap(struct sess *s, size_t fo, size_t fe, size_t arg)
{
	(void)s;
	size_t phase = arg % 16;
	bool any = arg >= 16;
	for (size_t i = fo; i < fe && !g_overlap; i++, phase = (phase + 1) % 16)
		if (g_rmap[i] && (any || g_rmap[i] != 1 + phase))
			g_overlap = true;
}

/* (c): A's memory outside what the switch may have been given. */
static void check_canary(struct sess *s)
{
	size_t S = s->S;
	uint8_t *given = g_given;
	memset(given, 0, S);
	/* Rings whose device-written areas overlap what is read as
	 * descriptors (a used ring on a descriptor table, a packed ring
	 * shifted over another): the switch's writes make new descriptors,
	 * which may point anywhere. Nothing can be told about the canary. */
	memset(g_rmap, 0, S);
	for (unsigned k = 0; k < s->narea; k++) {
		uint64_t n = s->nmax[s->area[k].ring];
		if (n)
			each_file_range(s, s->area[k].desc, 16 * n, false, mark_read, 0);
	}
	for (unsigned k = 0; k < s->nwd; k++)
		if (g_wd[k].ind)
			each_file_range(s, g_wd[k].addr, g_wd[k].len < 65536 ? g_wd[k].len : 65536,
					true, mark_read, 0);
	g_overlap = false;
	for (unsigned k = 0; k < s->narea && !g_overlap; k++) {
		uint64_t n = s->nmax[s->area[k].ring];
		if (!n)
			continue;
		each_file_range(s, s->area[k].used, 6 + 8 * n, false, find_overlap, 16);
		if (s->ever_packed)
			each_file_range(s, s->area[k].desc, 16 * n, false, find_overlap, 0);
	}
	if (g_overlap) {
		slog(s, true, 0, 0, 0, 0, "canary not checked: device-written ring areas overlap "
		     "descriptors");
		tot_unchecked++;
		return;
	}
	bool pad_all = s->packed_then_split;
	for (unsigned k = 0; k < s->nwd; k++) {
		const struct wdesc *w = &g_wd[k];
		if (!w->w && !pad_all)
			continue;
		uint64_t len = w->len;
		if ((s->ever_packed || pad_all) && len < 2048)
			len = 2048; /* a used length the switch wrote, read back (header) */
		each_file_range(s, w->addr, len, true, mark_given, 0);
	}
	for (unsigned k = 0; k < s->narea; k++) {
		const struct area *a = &s->area[k];
		uint64_t n = s->nmax[a->ring];
		if (!n)
			continue;
		each_file_range(s, a->used, 6 + 8 * n, false, mark_given, 0);
		if (s->ever_packed)
			each_file_range(s, a->desc, 16 * n, false, mark_given, 0);
	}
	size_t lim = s->lim, bad = 0, first = SIZE_MAX, last = 0;
	for (size_t o = 0; o < lim; o += 4096) {
		size_t n = lim - o < 4096 ? lim - o : 4096;
		if (!memcmp(s->mem + o, g_shadow + o, n))
			continue;
		for (size_t i = o; i < o + n; i++)
			if (!given[i] && s->mem[i] != g_shadow[i]) {
				bad++;
				if (first == SIZE_MAX)
					first = i;
				last = i;
			}
	}
	if (!bad)
		return;
	/* what is there */
	const struct alloc_rec *in = NULL, *before = NULL, *after = NULL;
	for (unsigned k = 0; k < s->nal; k++) {
		const struct alloc_rec *a = &s->al[k];
		if (first >= a->off && first < (size_t)a->off + a->len)
			in = a;
		else if ((size_t)a->off + a->len <= first &&
			 (!before || a->off + a->len > before->off + before->len))
			before = a;
		else if (a->off > first && (!after || a->off < after->off))
			after = a;
	}
	char where[300] = "", ring[16] = "";
	if (in) {
		if (in->ring < 4)
			snprintf(ring, sizeof(ring), " of ring %u", in->ring);
		snprintf(where, sizeof(where), "inside %s%s [%#x, +%u), which the switch was not "
			 "given to write", in->what, ring, in->off, in->len);
	} else {
		size_t l = 0;
		l += (size_t)snprintf(where, sizeof(where), "in canary");
		if (before) {
			if (before->ring < 4)
				snprintf(ring, sizeof(ring), " of ring %u", before->ring);
			l += (size_t)snprintf(where + l, sizeof(where) - l, " %zu byte(s) after %s%s "
					      "[%#x, +%u)", first - before->off - before->len,
					      before->what, ring, before->off, before->len);
		}
		if (after && l < sizeof(where)) {
			ring[0] = 0;
			if (after->ring < 4)
				snprintf(ring, sizeof(ring), " of ring %u", after->ring);
			snprintf(where + l, sizeof(where) - l, "%s %zu byte(s) before %s%s [%#x, +%u)",
				 before ? " and" : "", after->off - first, after->what, ring,
				 after->off, after->len);
		}
	}
	char bytes[100] = "";
	for (size_t i = first, k = 0; i < lim && k < 16; i++, k++)
		snprintf(bytes + strlen(bytes), sizeof(bytes) - strlen(bytes), "%02x/%02x ",
			 s->mem[i], g_shadow[i]);
	fail(s, false, "(c) canary", "%zu byte(s) of A's memory changed outside what the switch "
	     "was given, first at file offset %#zx (gpa %#" PRIx64 ", uva %#" PRIx64 "), last at "
	     "%#zx; %s; bytes found/expected from there: %s", bad, first, gpa_of(s, first),
	     uva_of(s, first), last, where, bytes);
}

static void session_cleanup(struct sess *s)
{
	if (s->mem && s->mem != MAP_FAILED)
		munmap(s->mem, s->S);
	s->mem = NULL;
	if (s->mfd >= 0)
		close(s->mfd);
	s->mfd = -1;
	for (unsigned i = 0; i < s->nfds; i++)
		close(s->fds[i]);
	s->nfds = 0;
}

/* (b): B and C get service. */
static void check_service(struct sess *s, struct rng *cr)
{
	char why[300];
	/* A's leftovers drain first (quiet for 10 ms, at most 3 s) */
	uint64_t end = now_ns() + ms_ns(3000), quiet = now_ns();
	while (now_ns() < end && now_ns() - quiet < ms_ns(10)) {
		int n = pump(why, sizeof(why));
		if (n < 0)
			fail(s, false, "(b) service", "%s", why);
		if (n > 0)
			quiet = now_ns();
		wait_peers(1);
	}
	static uint64_t seq = 1;
	static uint8_t f[2048];
	memset(&ck, 0, sizeof(ck));
	/* C announces itself to B */
	ck.announce = seq++;
	uint32_t n = check_frame(f, pb.mac, pc.mac, ck.announce, rrange(cr, 60, 200));
	end = now_ns() + ms_ns(5000);
	int rc;
	while ((rc = peer_send(&pc, f, n)) == -ENOSPC && now_ns() < end) {
		if (pump(why, sizeof(why)) < 0)
			fail(s, false, "(b) service", "%s", why);
		wait_peers(1);
	}
	if (rc)
		fail(s, true, "(b) service", "C could not send (%s)", rc == -ENOSPC ?
		     "its transmit ring stayed full for 5 s" : pc.err);
	while (!ck.announced && !ck.bad[0] && now_ns() < end) {
		if (pump(why, sizeof(why)) < 0)
			fail(s, false, "(b) service", "%s", why);
		if (!ck.announced)
			wait_peers(1);
	}
	if (ck.bad[0])
		fail(s, false, "(b) service", "%s", ck.bad);
	if (!ck.announced)
		fail(s, true, "(b) service", "B did not receive C's frame %" PRIu64 " within 5 s "
		     "(B: %" PRIu64 " frames, %" PRIu64 " foreign)", ck.announce, pb.frames,
		     pb.foreign);
	/* B sends C a batch */
	ck.n = rrange(cr, 8, CHECK_MAX);
	ck.first = seq;
	seq += ck.n;
	end = now_ns() + ms_ns(5000);
	for (unsigned i = 0; i < ck.n; i++) {
		ck.len[i] = rrange(cr, 60, 1514);
		n = check_frame(f, pc.mac, pb.mac, ck.first + i, ck.len[i]);
		while ((rc = peer_send(&pb, f, n)) == -ENOSPC && now_ns() < end) {
			if (pump(why, sizeof(why)) < 0)
				fail(s, false, "(b) service", "%s", why);
			wait_peers(1);
		}
		if (rc)
			fail(s, true, "(b) service", "B could not send frame %u (%s)", i,
			     rc == -ENOSPC ? "its transmit ring stayed full for 5 s" : pb.err);
	}
	while (ck.received < ck.n && !ck.bad[0] && now_ns() < end) {
		if (pump(why, sizeof(why)) < 0)
			fail(s, false, "(b) service", "%s", why);
		if (ck.received < ck.n)
			wait_peers(1);
	}
	if (ck.bad[0])
		fail(s, false, "(b) service", "%s", ck.bad);
	if (ck.received < ck.n) {
		unsigned miss = 0;
		while (miss < ck.n && ck.got[miss])
			miss++;
		fail(s, true, "(b) service", "C received %u of B's %u frames within 5 s (first "
		     "missing: %" PRIu64 ")", ck.received, ck.n, ck.first + miss);
	}
	tot_frames += ck.n + 1;
}

static int g_next_sock = -1;

/* (b) for A itself, now and then: after the hostile sessions, a
 * well-behaved front-end on A gets service (nothing a session did
 * outlives its connection). A sends C frames, B sends A frames. */
static void check_a_recovers(struct sess *s, struct rng *cr)
{
	char why[300];
	if (g_next_sock >= 0)
		close(g_next_sock);
	g_next_sock = -1;
	uint64_t want = FB(VF_V1) | FB(VF_PROTO) | (rpct(cr, 50) ? FB(VF_PACKED) : 0) |
			(rpct(cr, 50) ? FB(VF_EVENT_IDX) : 0) | (rpct(cr, 50) ? FB(VF_MRG) : 0);
	if (peer_try_up(&pa, sock_a, want, now_ns() + ms_ns(15000), why, sizeof(why)))
		fail(s, true, "(b) service of A", "%s", why);
	pa_up = true;
	static uint8_t f[2048];
	static uint64_t seq = 1ull << 32;
	memset(ck.a_seen, 0, sizeof(ck.a_seen));
	memset(ck.b_seen, 0, sizeof(ck.b_seen));
	ck.bad[0] = 0;
	ck.a_got = ck.b_got = 0;
	ck.a_n = ck.b_n = 4;
	ck.a_first = seq;
	seq += 4;
	ck.b_first = seq;
	seq += 4;
	uint64_t end = now_ns() + ms_ns(5000);
	int rc;
	for (unsigned i = 0; i < ck.a_n; i++) { /* A to C (and A's address learned) */
		uint32_t n = check_frame(f, pc.mac, pa.mac, ck.a_first + i, rrange(cr, 60, 1514));
		while ((rc = peer_send(&pa, f, n)) == -ENOSPC && now_ns() < end)
			if (pump(why, sizeof(why)) < 0)
				fail(s, false, "(b) service of A", "%s", why);
		if (rc)
			fail(s, true, "(b) service of A", "A could not send (%s)", pa.err);
	}
	while (ck.a_got < ck.a_n && !ck.bad[0] && now_ns() < end) {
		if (pump(why, sizeof(why)) < 0)
			fail(s, false, "(b) service of A", "%s", why);
		wait_peers(1);
	}
	if (ck.bad[0] || ck.a_got < ck.a_n)
		fail(s, true, "(b) service of A", "%s", ck.bad[0] ? ck.bad :
		     "C did not receive the frames of a well-behaved front-end on A within 5 s");
	for (unsigned i = 0; i < ck.b_n; i++) { /* B to A */
		uint32_t n = check_frame(f, pa.mac, pb.mac, ck.b_first + i, rrange(cr, 60, 1514));
		while ((rc = peer_send(&pb, f, n)) == -ENOSPC && now_ns() < end)
			if (pump(why, sizeof(why)) < 0)
				fail(s, false, "(b) service of A", "%s", why);
		if (rc)
			fail(s, true, "(b) service of A", "B could not send (%s)", pb.err);
	}
	while (ck.b_got < ck.b_n && !ck.bad[0] && now_ns() < end) {
		if (pump(why, sizeof(why)) < 0)
			fail(s, false, "(b) service of A", "%s", why);
		wait_peers(1);
	}
	if (ck.bad[0] || ck.b_got < ck.b_n)
		fail(s, true, "(b) service of A", "%s", ck.bad[0] ? ck.bad :
		     "a well-behaved front-end on A did not receive B's frames within 5 s");
	pa_up = false;
	vud_close(&pa.v);
	tot_frames += ck.a_n + ck.b_n;
	tot_a_checks++;
	g_next_sock = a_connect(s, "after the check of A");
}

static void run_session(uint64_t no)
{
	struct sess *s = &S1;
	memset(s, 0, sizeof(*s));
	s->no = no;
	s->mfd = -1;
	s->r = rng_for(opt.seed, 1, no);
	s->sock = g_next_sock;
	g_next_sock = -1;
	s->gf_expect = s->gf_got = 0;
	struct timeval tv = {.tv_sec = 10};
	setsockopt(s->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	session_choose(s);
	session_setup_memory(s);
	for (unsigned i = 0; i < 2 * s->nq; i++)
		layout_ring(s, i);
	slog(s, true, 0, 0, 0, 0, "session %" PRIu64 ": mutations %u%%, garbage %u%%, %s, "
	     "%u queue pair(s)", no, s->p_mut, s->p_garbage, s->packed ? "packed" : "split",
	     s->nq);
	/* setup */
	struct step st[160];
	unsigned n = setup_script(s, st, 160);
	for (unsigned k = 0; k < n; k++)
		run_op(s, st[k]);
	a_sync(s, "after setup");
	/* traffic with control messages in the middle */
	unsigned rounds = rrange(&s->r, 1, 5);
	for (unsigned k = 0; k < rounds; k++) {
		for (unsigned i = 0; i < 2 * s->nq; i++)
			if (rpct(&s->r, 80))
				traffic(s, i);
		flood_to_a(s);
		idle(s, rrange(&s->r, 1, 8));
		if (rpct(&s->r, 40)) {
			unsigned m = rrange(&s->r, 1, 3);
			for (unsigned j = 0; j < m; j++)
				mid_op(s);
			if (rpct(&s->r, 50))
				a_sync(s, "after control messages mid-traffic");
		}
	}
	if (rpct(&s->r, 50))
		a_sync(s, "before the close");
	idle(s, rrange(&s->r, 0, 4));
	session_close(s);
	/* the next front-end's acceptance proves A was reset and let go */
	g_next_sock = a_connect(s, "after the session");
	check_canary(s);
	session_cleanup(s);
	char why[300];
	if (!sw_alive(why, sizeof(why)))
		fail(s, false, "(a) alive", "%s", why);
	if (log_scan(why, sizeof(why)))
		fail(s, false, "(a) sanitizer", "the switch reported: %s", why);
	struct rng cr = rng_for(opt.seed, 2, no);
	check_service(s, &cr);
	if (no % 16 == 15)
		check_a_recovers(s, &cr);
	if (!sw_alive(why, sizeof(why)))
		fail(s, false, "(a) alive", "%s", why);
	if (opt.verbose)
		fprintf(stderr, "vu_session: session %" PRIu64 ": %u messages, %u chains, %s, "
			"%s%s\n", no, s->msgs, s->chains, s->packed ? "packed" : "split",
			s->dead ? "closed by the switch: " : "ok", s->dead ? s->dead_why : "");
	tot_sessions++;
}

/* ---- main -------------------------------------------------------------------------------- */

static void final_summary(const char *failures)
{
	double t = (double)(now_ns() - run_start) / 1e9;
	if (opt.verbose)
		fprintf(stderr, "vu_session: %" PRIu64 " chains from A; canary not checkable in %"
			PRIu64 " session(s) (rings over descriptors); %" PRIu64 " fds of other "
			"types; A served a well-behaved front-end %" PRIu64 " time(s)\n", tot_chains,
			tot_unchecked, tot_oddfd, tot_a_checks);
	printf("vu_session: seed %" PRIu64 ", %" PRIu64 " sessions, %" PRIu64 " messages, %"
	       PRIu64 " frames, %.0f s, %s\n", opt.seed, tot_sessions, tot_msgs, tot_frames, t,
	       failures);
	fflush(stdout);
}

static void on_fatal(int sig)
{
	char buf[200];
	int n = snprintf(buf, sizeof(buf), "\nvu_session: internal error: signal %d in session "
			 "%" PRIu64 " (seed %" PRIu64 "); kept %s\n", sig, cur_session,
			 opt.seed, opt.dir);
	if (write(2, buf, (size_t)n) < 0) {
	}
	if (sw_pid > 0)
		kill(sw_pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static volatile sig_atomic_t g_stop;

static void on_stop(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void rm_dir(void)
{
	unlink(log_path);
	char p[300];
	snprintf(p, sizeof(p), "%s/vswitch-threads.txt", opt.dir);
	unlink(p);
	unlink(sock_a);
	unlink(sock_b);
	unlink(sock_c);
	if (dir_made)
		rmdir(opt.dir);
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s --vswitch PATH [--seconds N] [--sessions N] [--from K] "
		"[--seed S] [--workers N] [--dir DIR] [--keep] [--fd-types] [--verbose]\n", argv0);
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"vswitch", required_argument, 0, 'v'},
					   {"seconds", required_argument, 0, 't'},
					   {"sessions", required_argument, 0, 'n'},
					   {"from", required_argument, 0, 'f'},
					   {"seed", required_argument, 0, 's'},
					   {"workers", required_argument, 0, 'w'},
					   {"dir", required_argument, 0, 'd'},
					   {"verbose", no_argument, 0, 'V'},
					   {"keep", no_argument, 0, 'k'},
					   {"fd-types", no_argument, 0, 'F'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	bool seed_set = false;
	int ch;
	while ((ch = getopt_long(argc, argv, "v:t:n:f:s:w:d:VkFh", lo, NULL)) != -1) {
		switch (ch) {
		case 'v': opt.vswitch = optarg; break;
		case 't': opt.seconds = (unsigned)strtoul(optarg, NULL, 0); opt.seconds_set = true; break;
		case 'n': opt.sessions = strtoull(optarg, NULL, 0); opt.sessions_set = true; break;
		case 'f': opt.from = strtoull(optarg, NULL, 0); break;
		case 's': opt.seed = strtoull(optarg, NULL, 0); seed_set = true; break;
		case 'w': opt.workers = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'd':
			if (strlen(optarg) >= sizeof(opt.dir)) {
				fprintf(stderr, "vu_session: --dir: at most %zu characters (socket "
					"paths)\n", sizeof(opt.dir) - 1);
				return 2;
			}
			snprintf(opt.dir, sizeof(opt.dir), "%s", optarg);
			opt.dir_given = true;
			break;
		case 'V': opt.verbose = true; break;
		case 'k': opt.keep = true; break;
		case 'F': opt.fd_types = true; break;
		default: usage(argv[0]);
		}
	}
	if (!opt.vswitch || optind != argc)
		usage(argv[0]);
	if (!seed_set) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		opt.seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec ^
			   ((uint64_t)getpid() << 16);
		opt.seed %= 1000000000000ull;
	}
	if (access(opt.vswitch, X_OK)) {
		fprintf(stderr, "vu_session: %s: %s\n", opt.vswitch, strerror(errno));
		return 2;
	}
	if (opt.dir_given) {
		if (mkdir(opt.dir, 0700) == 0)
			dir_made = true;
		else if (errno != EEXIST) {
			fprintf(stderr, "vu_session: %s: %s\n", opt.dir, strerror(errno));
			return 2;
		}
	} else {
		snprintf(opt.dir, sizeof(opt.dir), "/tmp/vu_session.XXXXXX");
		if (!mkdtemp(opt.dir)) {
			perror("vu_session: mkdtemp");
			return 2;
		}
		dir_made = true;
	}
	snprintf(sock_a, sizeof(sock_a), "%s/a.sock", opt.dir);
	snprintf(sock_b, sizeof(sock_b), "%s/b.sock", opt.dir);
	snprintf(sock_c, sizeof(sock_c), "%s/c.sock", opt.dir);
	snprintf(log_path, sizeof(log_path), "%s/vswitch.log", opt.dir);
	if (strlen(sock_a) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "vu_session: %s: path too long for a socket\n", opt.dir);
		return 2;
	}
	/* debugging aids: fixed mutation and garbage rates, setup order mode */
	if (getenv("VU_SESSION_MUT"))
		g_force_mut = atoi(getenv("VU_SESSION_MUT"));
	if (getenv("VU_SESSION_GARBAGE"))
		g_force_garbage = atoi(getenv("VU_SESSION_GARBAGE"));
	if (getenv("VU_SESSION_ORDER"))
		g_force_order = atoi(getenv("VU_SESSION_ORDER"));
	g_peer_kick = getenv("VU_SESSION_PEER_KICK") && atoi(getenv("VU_SESSION_PEER_KICK"));
	signal(SIGPIPE, SIG_IGN);
	signal(SIGBUS, on_fatal);
	signal(SIGSEGV, on_fatal);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	g_shadow = malloc(MAX_S);
	g_given = malloc(MAX_S);
	g_rmap = malloc(MAX_S);
	g_wd = malloc(MAX_WD * sizeof(*g_wd));
	if (!g_shadow || !g_given || !g_rmap || !g_wd) {
		fprintf(stderr, "vu_session: out of memory\n");
		return 2;
	}
	run_start = now_ns();
	fprintf(stderr, "vu_session: seed %" PRIu64 ", switch %s, %u worker(s), in %s\n",
		opt.seed, opt.vswitch, opt.workers, opt.dir);
	start_switch();
	log_scanned = 0;
	uint64_t base = FB(VF_V1) | FB(VF_PROTO) | FB(VF_EVENT_IDX) | FB(VF_MRG);
	peer_up(&pb, sock_b, base);
	peer_up(&pc, sock_c, base | FB(VF_PACKED));
	if (!pc.v.packed)
		fprintf(stderr, "vu_session: note: C did not get packed rings\n");
	/* the first front-end on A, and the protocol features A offers */
	g_next_sock = a_connect(NULL, "at start");
	{
		uint32_t h[3] = {RQ_GET_PROTOCOL_FEATURES, 1, 0};
		uint8_t rep[20];
		if (send(g_next_sock, h, 12, MSG_NOSIGNAL) == 12 &&
		    recv(g_next_sock, rep, 20, MSG_WAITALL) == 20)
			memcpy(&offered_proto, rep + 12, 8);
	}
	uint64_t deadline = opt.sessions_set && !opt.seconds_set
				    ? UINT64_MAX
				    : run_start + (uint64_t)opt.seconds * 1000000000ull;
	for (uint64_t k = opt.from; !g_stop; k++) {
		if (opt.sessions_set && k - opt.from >= opt.sessions)
			break;
		if (now_ns() >= deadline)
			break;
		cur_session = k;
		run_session(k);
		/* a check of the service every session already; nothing else between */
	}
	if (tot_sessions && !g_stop) { /* the last word: A works for a well-behaved front-end */
		struct rng cr = rng_for(opt.seed, 3, cur_session);
		check_a_recovers(NULL, &cr);
	}
	cur_session = UINT64_MAX;
	if (g_next_sock >= 0)
		close(g_next_sock);
	vud_close(&pb.v);
	vud_close(&pc.v);
	char why[200];
	if (log_scan(why, sizeof(why)))
		fail(NULL, false, "(a) sanitizer", "the switch reported: %s", why);
	bool ok = stop_switch(why, sizeof(why));
	if (log_scan(why + 100, sizeof(why) - 100) || !ok) {
		fprintf(stderr, "\nvu_session: FAILED check (a) shutdown: %s\n", why);
		print_log_tail(40);
		fprintf(stderr, "vu_session: kept %s\n", opt.dir);
		final_summary("1 failure");
		return 1;
	}
	final_summary("0 failures");
	if (!opt.keep)
		rm_dir();
	else
		fprintf(stderr, "vu_session: kept %s\n", opt.dir);
	return 0;
}

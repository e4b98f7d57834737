/*
 * vu_vcpu.c - the front-end's vCPU state, sampled (the paper's
 * VM-state-aware notification for vhost-user guests; xen.c does the same
 * from the hypervisor's domain information).
 *
 * An out-of-process switch is told nothing about the guest's vCPUs. It
 * learns the front-end's process from the socket (SO_PEERCRED) when a
 * front-end connects, finds that process's vCPU threads by their names
 * (QEMU "CPU <n>/KVM", "CPU <n>/TCG", ...; cloud-hypervisor "vcpu<n>";
 * Firecracker "fc_vcpu <n>") and, every millisecond on the switch's loop,
 * reads each one's scheduler state from /proc/<pid>/task/<tid>/stat (fds
 * kept open, read at offset 0). Any vCPU runnable ('R') makes the peer
 * RUNNING for every queue of the port (its notifications wait for the
 * end of the round and go out once); all of them sleeping makes it
 * BLOCKED (notified at the end of each batch); no vCPU thread, a process
 * gone or no front-end leaves it UNKNOWN (the ring's own event requests
 * alone decide). The core is told only on a change.
 *
 * An estimate: 'R' also means "waiting for a CPU", and KVM's halt polling
 * keeps a halted vCPU 'R' for up to its poll window. A VMM that embeds
 * the library knows better and says so with hs_port_set_peer_state (and
 * HS_VU_NO_VCPU_STATE, so that the two do not overwrite each other).
 *
 * QEMU connects its vhost-user netdevs before it creates its vCPUs
 * (qemu_create_late_backends comes before the board's init), and vCPUs
 * can be hot-plugged: the thread list is read again every second
 * (VU_VCPU_RESCAN_MS), and at once when a vCPU thread goes away. While no
 * vCPU is known the timer runs only at the rescan period.
 *
 * Security model: thread names are the front-end's choice (prctl, or a
 * guest owner who controls the VMM process): they are read bounded,
 * matched byte by byte, never used as a format or a path. Thread ids
 * are parsed from the directory as bounded decimals. At most
 * VU_VCPU_MAX vCPU threads are sampled and VU_VCPU_SCAN_MAX directory
 * entries read per scan: threads beyond are not looked at (the sample
 * may then say BLOCKED while an unsampled vCPU runs: more notifications
 * for that guest, never fewer). The /proc/<pid> directory is held open
 * from the connect on, so a pid reused by another process after the
 * front-end died is never read (its lookups fail). The worst a lying
 * front-end achieves is to have its own guest notified later (at round
 * end) or more often.
 *
 * Idle ports cost nothing: a read is ~2 us per vCPU, a millisecond apart
 * that is 0.2% of a core per idle vCPU, which adds up on a host full of
 * quiet guests. The port's frame count (both directions) is read every
 * VU_VCPU_ACT_MS; when it has not moved for VU_VCPU_IDLE_MS (or the
 * port's vcpu_idle_ms) the samples and the thread-list rescans stop, the
 * state goes back to UNKNOWN (a notification for every batch the guest
 * asks for: the latency-safe side) and the timer runs at
 * VU_VCPU_IDLE_TICK_MS, reading only the count (each wakeup of the loop
 * costs more than the read: bench/vcpu_idle.sh). The first tick that
 * sees frames rescans the thread list if a rescan fell due meanwhile and
 * samples again at once, so a burst after a pause is treated as without
 * the mechanism for at most VU_VCPU_IDLE_TICK_MS. A vCPU thread that
 * ends during a pause keeps its fd until then (its read then fails).
 *
 * Threads: everything here runs on the switch's loop (connect, timer),
 * except vu_vcpu_stop from the port's stop (the hs_port_del caller). The
 * timer changes its own period in place (hs_timer_modify) and only
 * vu_vcpu_stop deletes it, so the two never race over which timer is
 * armed.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vu_dev.h"

#define VU_VCPU_PERIOD_MS 1     /* how often the vCPUs' state is read */
#define VU_VCPU_RESCAN_MS 1000  /* how often the thread list is read again */
#define VU_VCPU_SCAN_MAX 4096   /* directory entries read per scan */
#define VU_VCPU_ACT_MS 10       /* how often the port's frame count is read */
#define VU_VCPU_IDLE_MS 100     /* default: no frame for this long: sampling pauses */
#define VU_VCPU_IDLE_TICK_MS 50 /* the timer's period while paused */

/* Whether a thread name (up to 15 bytes, as the kernel keeps them) is a
 * vCPU's: "CPU <digits>/..." (QEMU, any accelerator), "ALL CPUs/TCG"
 * (QEMU's single-threaded TCG: one thread runs every vCPU in turn),
 * "vcpu<digits>" (cloud-hypervisor), "fc_vcpu <digits>" (Firecracker). */
static bool vcpu_name(const char *s, size_t n)
{
	size_t i;
	if (n == 12 && !memcmp(s, "ALL CPUs/TCG", 12))
		return true;
	if (n > 4 && !memcmp(s, "CPU ", 4)) {
		for (i = 4; i < n && isdigit((unsigned char)s[i]); i++)
			;
		return i > 4 && i < n && s[i] == '/';
	}
	size_t p = n > 4 && !memcmp(s, "vcpu", 4) ? 4 :
		   n > 8 && !memcmp(s, "fc_vcpu ", 8) ? 8 : 0;
	if (!p)
		return false;
	for (i = p; i < n && isdigit((unsigned char)s[i]); i++)
		;
	return i == n;
}

/* A directory entry's name as a thread id: 1 to 9 decimal digits. */
static bool tid_name(const char *s, unsigned *tid)
{
	unsigned v = 0, i;
	for (i = 0; s[i] && i < 10; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (!i || i > 9 || s[i] || !v)
		return false;
	*tid = v;
	return true;
}

/* Reads task/<tid>/comm (bounded) and whether it names a vCPU. */
static bool tid_is_vcpu(int taskfd, unsigned tid)
{
	char path[24], name[32];
	snprintf(path, sizeof(path), "%u/comm", tid);
	int fd = openat(taskfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, name, sizeof(name));
	close(fd);
	if (n <= 0)
		return false;
	size_t len = (size_t)n;
	if (name[len - 1] == '\n')
		len--;
	return len <= 15 && vcpu_name(name, len);
}

static void vcpu_drop(struct vu_vcpus *v, unsigned i)
{
	close(v->fd[i]);
	v->n--;
	v->fd[i] = v->fd[v->n];
	v->tid[i] = v->tid[v->n];
	if (v->at >= v->n)
		v->at = 0;
}

static bool tracked(const struct vu_vcpus *v, unsigned tid)
{
	for (unsigned i = 0; i < v->n; i++)
		if (v->tid[i] == tid)
			return true;
	return false;
}

static char vcpu_state(int fd);

/* Reads the front-end's thread list and starts sampling every vCPU
 * thread not sampled yet (up to VU_VCPU_MAX). */
static void vcpu_scan(struct vu_dev *d)
{
	struct vu_vcpus *v = &d->vcpu;
	atomic_fetch_add(&d->vcpu_scans, 1);
	int taskfd = openat(v->procfd, "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (taskfd < 0)
		return; /* the process is gone: what is tracked fails its reads */
	int dfd = dup(taskfd);
	DIR *dir = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!dir) {
		if (dfd >= 0)
			close(dfd);
		close(taskfd);
		return;
	}
	struct dirent *e;
	unsigned seen = 0;
	while (seen++ < VU_VCPU_SCAN_MAX && (e = readdir(dir))) {
		unsigned tid;
		if (!tid_name(e->d_name, &tid) || tracked(v, tid) || !tid_is_vcpu(taskfd, tid))
			continue;
		if (v->n == VU_VCPU_MAX) {
			if (!v->full_logged)
				hs_port_log(d->port, HS_LOG_WARN, "front-end pid %d has more "
					    "than %u vCPU threads: the others are not sampled",
					    (int)v->pid, VU_VCPU_MAX);
			v->full_logged = true;
			break;
		}
		char path[24];
		snprintf(path, sizeof(path), "%u/stat", tid);
		int fd = openat(taskfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue; /* gone already, or out of fds: next scan */
		if (!vcpu_state(fd)) {
			/* a zombie (a leader that called pthread_exit stays
			 * listed): taking it would only drop it again and force
			 * a rescan every other tick */
			close(fd);
			continue;
		}
		v->fd[v->n] = fd;
		v->tid[v->n] = tid;
		v->n++;
	}
	closedir(dir);
	close(taskfd);
	atomic_store_explicit(&d->vcpu_threads, v->n, memory_order_relaxed);
}

/* One vCPU thread's state letter from its stat line, "tid (comm) S ...":
 * the letter after the last ')' (comm may hold any byte, ')' included,
 * but at most 15; what follows is numbers only). 0: gone or unreadable. */
static char vcpu_state(int fd)
{
	char buf[64];
	ssize_t n = pread(fd, buf, sizeof(buf), 0);
	if (n <= 0)
		return 0;
	const char *close_paren = NULL;
	for (ssize_t i = 0; i < n; i++)
		if (buf[i] == ')')
			close_paren = buf + i;
	if (!close_paren || close_paren + 2 >= buf + n || close_paren[1] != ' ')
		return 0;
	char st = close_paren[2];
	return st == 'Z' || st == 'X' || st == 'x' ? 0 : st;
}

static void set_peer(struct vu_dev *d, enum hs_peer_state st)
{
	if (st == d->vcpu.peer)
		return;
	d->vcpu.peer = st;
	for (unsigned q = 0; q < d->nqp; q++)
		hs_port_set_peer_state(d->port, (uint16_t)q, st);
	if (st == HS_PEER_RUNNING)
		atomic_fetch_add(&d->peer_running, 1);
	else if (st == HS_PEER_BLOCKED)
		atomic_fetch_add(&d->peer_not_running, 1);
}

static void vcpu_cb(hs_timer_t *t, void *arg);

/* The timer at `ms` (1 while vCPUs are sampled, the rescan period while
 * none is known), changed in place: the timer is added at the connect
 * and deleted only by vu_vcpu_stop, which may run on the hs_port_del
 * caller's thread. */
static void vcpu_period(struct vu_dev *d, uint32_t ms)
{
	struct vu_vcpus *v = &d->vcpu;
	if (v->timer && v->period_ms != ms && !hs_timer_modify(v->timer, ms, ms))
		v->period_ms = ms;
}

/* Frames the port moved so far, both directions (0 once it is gone). */
static uint64_t port_frames(struct vu_dev *d)
{
	struct hs_port_stats st;
	if (hs_port_get_stats(d->port, &st))
		return 0;
	return st.rx_packets + st.tx_packets;
}

/* Whether the port has been quiet for VU_VCPU_IDLE_MS (see above): its
 * frame count is read every VU_VCPU_ACT_MS of timer time. */
static bool vcpu_quiet(struct vu_dev *d)
{
	struct vu_vcpus *v = &d->vcpu;
	v->act_ms += v->period_ms;
	if (v->act_ms < VU_VCPU_ACT_MS)
		return v->idle;
	uint64_t f = port_frames(d);
	if (f != v->frames) {
		v->frames = f;
		v->quiet_ms = 0;
	} else if (v->quiet_ms < UINT32_MAX - v->act_ms) {
		v->quiet_ms += v->act_ms;
	}
	v->act_ms = 0;
	uint32_t limit = d->cfg.vcpu_idle_ms ? d->cfg.vcpu_idle_ms : VU_VCPU_IDLE_MS;
	bool idle = limit != HS_VU_VCPU_IDLE_NEVER && v->quiet_ms >= limit;
	if (idle && !v->idle)
		atomic_fetch_add_explicit(&d->vcpu_idle, 1, memory_order_relaxed);
	v->idle = idle;
	return idle;
}

static void vcpu_cb(hs_timer_t *t, void *arg)
{
	struct vu_dev *d = arg;
	struct vu_vcpus *v = &d->vcpu;
	(void)t;
	if (v->ms < VU_VCPU_RESCAN_MS)
		v->ms += v->period_ms;
	if (v->n && vcpu_quiet(d)) {
		set_peer(d, HS_PEER_UNKNOWN);
		vcpu_period(d, VU_VCPU_IDLE_TICK_MS);
		return;
	}
	if (v->ms >= VU_VCPU_RESCAN_MS || !v->n) {
		v->ms = 0;
		vcpu_scan(d);
	}
	if (v->n)
		atomic_fetch_add_explicit(&d->vcpu_reads, 1, memory_order_relaxed);
	/* Any runnable vCPU will look at the rings soon: stop at the first,
	 * and start there next time (a busy vCPU tends to stay busy). */
	bool running = false, lost = false;
	for (unsigned k = 0; k < v->n && !running;) {
		unsigned i = (v->at + k) % v->n;
		char st = vcpu_state(v->fd[i]);
		if (!st) {
			vcpu_drop(v, i); /* gone (unplugged, or the process); the
					    last one moved into slot i: read it next */
			lost = true;
			continue;
		}
		if (st == 'R') {
			running = true;
			v->at = i;
		}
		k++;
	}
	if (lost) {
		v->ms = VU_VCPU_RESCAN_MS; /* look for its replacement next tick */
		atomic_store_explicit(&d->vcpu_threads, v->n, memory_order_relaxed);
	}
	set_peer(d, !v->n ? HS_PEER_UNKNOWN : running ? HS_PEER_RUNNING : HS_PEER_BLOCKED);
	vcpu_period(d, v->n ? VU_VCPU_PERIOD_MS : VU_VCPU_RESCAN_MS);
}

void vu_vcpu_start(struct vu_dev *d, int conn_fd)
{
	struct vu_vcpus *v = &d->vcpu;
	if (d->cfg.flags & HS_VU_NO_VCPU_STATE)
		return;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(conn_fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) || len != sizeof(cr) ||
	    cr.pid <= 0) {
		hs_port_log(d->port, HS_LOG_INFO, "the front-end's process is not known "
			    "(another pid namespace?): its vCPU state is not sampled");
		return;
	}
	char path[32];
	snprintf(path, sizeof(path), "/proc/%d", (int)cr.pid);
	v->procfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (v->procfd < 0) {
		hs_port_log(d->port, HS_LOG_INFO, "front-end pid %d: %s: its vCPU state is "
			    "not sampled", (int)cr.pid, hs_strerror(-errno));
		return;
	}
	v->pid = cr.pid;
	v->ms = 0;
	v->idle = false;
	v->quiet_ms = v->act_ms = 0;
	v->frames = port_frames(d);
	vcpu_scan(d);
	v->period_ms = v->n ? VU_VCPU_PERIOD_MS : VU_VCPU_RESCAN_MS;
	if (hs_timer_add(hs_port_switch(d->port), v->period_ms, v->period_ms, vcpu_cb, d,
			 &v->timer))
		v->timer = NULL; /* no sampling: the state stays unknown */
}

void vu_vcpu_stop(struct vu_dev *d)
{
	struct vu_vcpus *v = &d->vcpu;
	/* off the loop thread this waits for a running callback */
	hs_timer_del(v->timer);
	v->timer = NULL;
	v->period_ms = 0;
	while (v->n)
		vcpu_drop(v, v->n - 1);
	vu_close_fd(&v->procfd);
	v->pid = 0;
	v->at = 0;
	v->full_logged = false;
	atomic_store_explicit(&d->vcpu_threads, 0, memory_order_relaxed);
	set_peer(d, HS_PEER_UNKNOWN);
}

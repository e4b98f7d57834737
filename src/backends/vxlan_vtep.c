/*
 * vxlan_vtep.c - VTEPs shared by the vxlan ports of several VNIs (see
 * vxlan_vtep.h).
 *
 * The kernel picks a socket of a reuseport group by the index the BPF
 * program returns: a socket's index is its place in the order of binding,
 * and closing one moves the last into its place. So that the indexes stay
 * the ones the program was built with, a socket is never closed while its
 * group lives: a VNI that leaves leaves its socket behind as a placeholder
 * (a drop-all filter, no VNI), the next VNI to join takes it over, and
 * the last port out closes them all. The program:
 *
 *     A = payload length; shorter than a VXLAN header -> the catch-all
 *     A = the VNI (bytes 4..6 of the VXLAN header)
 *     A == vni_0 -> index_0; A == vni_1 -> index_1; ...
 *     else the catch-all
 *
 * where the catch-all is the first live VNI's socket, whose port counts
 * the datagram (unknown VNI, bad header): nothing is lost unseen. The
 * program is rebuilt and attached (to the group, through any member) at
 * every join and leave, under the registry's lock.
 *
 * Another program of the same user binding the address and port with
 * SO_REUSEPORT would join the kernel's group and shift the indexes: run
 * one switch per VTEP.
 */
#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vxlan_vtep.h"

#define VTEP_MAX_VNIS 1024 /* two instructions each, within BPF_MAXINSNS */

struct member {
	int fd;
	uint32_t vni; /* 0: a placeholder */
};

struct vx_vtep {
	struct vx_vtep *next;
	struct sockaddr_storage sa;
	socklen_t len;
	struct member *m; /* in index order */
	unsigned n, cap, live;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vx_vtep *groups;

/* Reads away what a socket holds. */
static void drain(int fd)
{
	char sink[1];
	while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT | MSG_TRUNC) >= 0) {
	}
}

int vx_sock_deaf(int fd)
{
	struct sock_filter none = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog prog = {.len = 1, .filter = &none};
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
		return -errno;
	drain(fd);
	return 0;
}

/* Builds and attaches the steering program (lock held). A group of one
 * socket needs none unless `force` (one is about to join it). */
static int steer(struct vx_vtep *g, bool force)
{
	unsigned catchall = 0;
	while (catchall < g->n && !g->m[catchall].vni)
		catchall++;
	if (catchall == g->n)
		return 0; /* nobody left: the group is about to close */
	if (g->n == 1 && !force)
		return 0; /* one socket gets everything: no program needed (nor
			     supported everywhere: a user-mode emulator) */
	size_t cap = 6 + 2 * (size_t)g->live;
	struct sock_filter *p = calloc(cap, sizeof(*p));
	if (!p)
		return -ENOMEM;
	unsigned k = 0;
	p[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0);
	p[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 8, 1, 0);
	p[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, catchall);
	p[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4);
	p[k++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 8);
	for (unsigned i = 0; i < g->n; i++) {
		if (!g->m[i].vni)
			continue;
		p[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, g->m[i].vni, 0, 1);
		p[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, i);
	}
	p[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, catchall);
	struct sock_fprog prog = {.len = (unsigned short)k, .filter = p};
	int rc = setsockopt(g->m[catchall].fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog,
			    sizeof(prog)) ? -errno : 0;
	if (rc == -ENOPROTOOPT || rc == -EINVAL)
		rc = -EOPNOTSUPP; /* several VNIs on one VTEP need it */
	free(p);
	return rc;
}

static int new_socket(struct vx_vtep *g)
{
	int fd = socket(g->sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
	if (fd < 0)
		return -errno;
	int one = 1;
	/* Room for bursts while the switch is busy elsewhere, as much as the
	 * host allows a socket (net.core.rmem_max caps it: a VTEP may have a
	 * thousand VNIs, each a socket), and the kernel's count of the
	 * datagrams it dropped for want of it with every datagram
	 * (SO_RXQ_OVFL): counted by the port, never lost silently. */
	int rcvbuf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	/* the outer ECN field of every datagram, from the first one on */
	bool v4 = g->sa.ss_family == AF_INET;
	/* (where it is refused, as by qemu-user, SO_MEMINFO still counts
	 * them, once a second) */
	setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    setsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_RECVTOS : IPV6_RECVTCLASS, &one,
		       sizeof(one)) ||
	    bind(fd, (const struct sockaddr *)&g->sa, g->len)) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static void free_group(struct vx_vtep *g)
{
	for (unsigned i = 0; i < g->n; i++)
		close(g->m[i].fd);
	free(g->m);
	free(g);
}

int vx_vtep_join(const struct sockaddr *sa, socklen_t len, uint32_t vni, int *fd,
		 struct vx_vtep **out)
{
	if (!vni || len > sizeof(struct sockaddr_storage))
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	struct vx_vtep *g = groups;
	while (g && !(g->len == len && !memcmp(&g->sa, sa, len)))
		g = g->next;
	bool fresh = !g;
	int rc = 0;
	if (fresh) {
		g = calloc(1, sizeof(*g));
		if (!g) {
			pthread_mutex_unlock(&reg_lock);
			return -ENOMEM;
		}
		memcpy(&g->sa, sa, len);
		g->len = len;
	}
	for (unsigned i = 0; i < g->n; i++)
		if (g->m[i].vni == vni)
			rc = -EEXIST;
	if (!rc && g->live == VTEP_MAX_VNIS)
		rc = -ENOSPC;
	unsigned at = 0;
	while (!rc && at < g->n && g->m[at].vni)
		at++;
	/* A socket joining a group of one: the group gets its program first,
	 * for the member it has (the kernel would otherwise spread that
	 * member's flows over both by hash until the new program is in). A
	 * kernel without reuseport programs refuses here, before any socket
	 * exists. */
	if (!rc && at == g->n && g->n == 1)
		rc = steer(g, true);
	bool appended = false;
	if (!rc && at == g->n) { /* no placeholder: a new socket at the end */
		if (g->n == g->cap) {
			unsigned cap = g->cap ? 2 * g->cap : 4;
			struct member *m = realloc(g->m, cap * sizeof(*m));
			if (!m)
				rc = -ENOMEM;
			else
				g->m = m, g->cap = cap;
		}
		int s = rc ? -1 : new_socket(g);
		if (!rc && s < 0)
			rc = s;
		if (!rc) {
			g->m[g->n++] = (struct member){.fd = s};
			appended = true;
		}
	} else if (!rc) { /* a placeholder taken over: its filter goes */
		int zero = 0; /* (the kernel wants an int's length, and ignores it) */
		if (setsockopt(g->m[at].fd, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof(zero)))
			rc = -errno;
		else
			drain(g->m[at].fd); /* nothing should be there */
	}
	if (!rc) {
		g->m[at].vni = vni;
		g->live++;
		rc = steer(g, false);
		if (rc) {
			g->m[at].vni = 0;
			g->live--;
			if (appended) {
				/* the last socket goes: no other index moves */
				close(g->m[at].fd);
				g->n--;
			} else { /* back to a placeholder */
				vx_sock_deaf(g->m[at].fd);
			}
			steer(g, false);
		}
	}
	if (!rc) {
		*fd = g->m[at].fd;
		*out = g;
		if (fresh) {
			g->next = groups;
			groups = g;
		}
	} else if (fresh) {
		free_group(g);
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

void vx_vtep_leave(struct vx_vtep *g, uint32_t vni)
{
	if (!g)
		return;
	pthread_mutex_lock(&reg_lock);
	for (unsigned i = 0; i < g->n; i++) {
		if (g->m[i].vni != vni)
			continue;
		g->m[i].vni = 0;
		g->live--;
		vx_sock_deaf(g->m[i].fd); /* what waited in it goes now */
		break;
	}
	if (!g->live) {
		struct vx_vtep **pp = &groups;
		while (*pp != g)
			pp = &(*pp)->next;
		*pp = g->next;
		free_group(g);
	} else {
		steer(g, false);
	}
	pthread_mutex_unlock(&reg_lock);
}

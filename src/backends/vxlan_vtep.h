/*
 * vxlan_vtep.h - several VNIs on one VTEP (local address and UDP port), as
 * EVPN deployments run them: each vxlan port (one VNI) has a UDP socket of
 * its own, all bound to the VTEP in one SO_REUSEPORT group, and a classic
 * BPF program on the group steers each datagram to its VNI's socket.
 */
#ifndef HS_VXLAN_VTEP_H
#define HS_VXLAN_VTEP_H

#include <stdint.h>
#include <sys/socket.h>

struct vx_vtep;

/* Joins the VTEP at sa (bound address and port) for vni: *fd is the
 * socket the VNI's datagrams reach (the group's: not to be closed by the
 * caller), *out the group to leave. -EEXIST: the VNI is on this VTEP
 * already; -EADDRINUSE: another program (or a kernel vxlan device that is
 * up) holds the address and port; other -errno. Any thread. */
int vx_vtep_join(const struct sockaddr *sa, socklen_t len, uint32_t vni, int *fd,
		 struct vx_vtep **out);
/* Makes a socket deaf: a drop-all filter, and what was queued before it
 * read away. 0 or -errno. */
int vx_sock_deaf(int fd);

/* Leaves: the VNI's datagrams go nowhere (counted by the group's other
 * ports as unknown VNIs); the last one out closes the group. */
void vx_vtep_leave(struct vx_vtep *g, uint32_t vni);

#endif

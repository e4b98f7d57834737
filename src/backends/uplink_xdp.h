/*
 * uplink_xdp.h - the uplink's AF_XDP receive path (internal; see
 * uplink.h and uplink_xdp.c). Built with HS_HAVE_XDP (libxdp, libbpf and
 * clang found); without it, attaching fails with -EOPNOTSUPP and the
 * uplink stays on AF_PACKET.
 */
#ifndef HS_UPLINK_XDP_H
#define HS_UPLINK_XDP_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <hyperswitch/backend.h>

#include "keyset.h"

/* A frame's token on the XDP path: this bit, and its UMEM frame's index. */
#define UL_XDP_TOKEN (1ull << 63)

struct ul_xdp;

/* A TCP or UDP frame (len bytes, f, no metadata) whose checksum field
 * holds just the pseudo-header's sum, as a sender that leaves checksums
 * to offloading writes it, and which does not verify whole: marked
 * HS_OFF_NEEDS_CSUM in *off (true). Otherwise *off is left alone. Reads
 * only f[0..len). */
bool ul_partial_csum(const uint8_t *f, uint32_t len, struct hs_offload *off);

struct ul_xdp_params {
	const char *ifname;
	int ifindex;
	unsigned queues;   /* the uplink's queues: sockets for as many of the
			      interface's receive queues */
	uint32_t frames;   /* UMEM frames per socket (a power of two) */
	uint32_t max_macs; /* entries of the program's MAC map */
	bool generic_only; /* generic XDP (not the driver's) */
	bool zerocopy;     /* native XDP: try zero-copy first */
	hs_port_t *port;   /* for the log */
};

#ifdef HS_HAVE_XDP
/* Loads and attaches the program (native with zero-copy, native, then
 * generic) and binds a socket per queue. 0, or a negative errno with
 * nothing left attached. */
int ul_xdp_open(const struct ul_xdp_params *p, struct ul_xdp **out);
void ul_xdp_close(struct ul_xdp *x);
/* Takes the program off the interface now (it left the namespace: the
 * kernel keeps a link's program on a device that moves), before close. */
void ul_xdp_detach(struct ul_xdp *x);
/* "xdp-zerocopy", "xdp-native" or "xdp-generic" */
const char *ul_xdp_mode(const struct ul_xdp *x);
/* Queue qi's socket (to poll for frames), or -1: no socket for it. */
int ul_xdp_fd(const struct ul_xdp *x, unsigned qi);
/* Up to max frames received on queue qi, into pkts (segments in segs),
 * by their ingress owner. */
unsigned ul_xdp_recv(struct ul_xdp *x, unsigned qi, struct hs_pkt *pkts,
		     struct hs_seg *segs, unsigned max);
/* Frames back from the switch (tokens from ul_xdp_recv), by the owner. */
void ul_xdp_done(struct ul_xdp *x, unsigned qi, const uint64_t *tokens, unsigned n);
/* Brings the program's MAC map to the MACs the switch has behind its
 * other ports, except the interface's own unicast MACs (host: sorted).
 * On the loop. */
void ul_xdp_sync_macs(struct ul_xdp *x, hs_switch_t *sw, const struct hs_keyset *host);
/* The interface's MTU (larger frames stay on the AF_PACKET path) and
 * whether it keeps VLAN tags out of frames (rx-vlan-offload). On the
 * loop. */
void ul_xdp_set_dev(struct ul_xdp *x, uint32_t mtu, bool no_rxvlan);
void ul_xdp_counters(struct ul_xdp *x, void (*cb)(void *arg, const char *name, uint64_t v),
		     void *arg);
#else
static inline int ul_xdp_open(const struct ul_xdp_params *p, struct ul_xdp **out)
{
	(void)p, (void)out;
	return -EOPNOTSUPP;
}
static inline void ul_xdp_close(struct ul_xdp *x) { (void)x; }
static inline void ul_xdp_detach(struct ul_xdp *x) { (void)x; }
static inline const char *ul_xdp_mode(const struct ul_xdp *x)
{
	(void)x;
	return "packet";
}
static inline int ul_xdp_fd(const struct ul_xdp *x, unsigned qi)
{
	(void)x, (void)qi;
	return -1;
}
static inline unsigned ul_xdp_recv(struct ul_xdp *x, unsigned qi, struct hs_pkt *pkts,
				   struct hs_seg *segs, unsigned max)
{
	(void)x, (void)qi, (void)pkts, (void)segs, (void)max;
	return 0;
}
static inline void ul_xdp_done(struct ul_xdp *x, unsigned qi, const uint64_t *tokens,
			       unsigned n)
{
	(void)x, (void)qi, (void)tokens, (void)n;
}
static inline void ul_xdp_sync_macs(struct ul_xdp *x, hs_switch_t *sw,
				    const struct hs_keyset *host)
{
	(void)x, (void)sw, (void)host;
}
static inline void ul_xdp_set_dev(struct ul_xdp *x, uint32_t mtu, bool no_rxvlan)
{
	(void)x, (void)mtu, (void)no_rxvlan;
}
static inline void ul_xdp_counters(struct ul_xdp *x,
				   void (*cb)(void *arg, const char *name, uint64_t v), void *arg)
{
	(void)x, (void)cb, (void)arg;
}
#endif

#endif /* HS_UPLINK_XDP_H */

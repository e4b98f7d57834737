/*
 * hyperswitch/fdb.h - the forwarding table: learned and static MACs.
 *
 * Entries are keyed by (VLAN, MAC). Learned entries age out after
 * fdb_aging_s seconds without traffic from that MAC; static entries never
 * age and never move to another port. When the table is full, learning
 * evicts the least recently refreshed entry of the port that holds the
 * most entries, so a port flooding random source MACs only ever evicts
 * its own.
 *
 * Threading: every function may be called from any thread; they take the
 * table's writer lock and are not meant for the data path.
 */
#ifndef HYPERSWITCH_FDB_H
#define HYPERSWITCH_FDB_H

#include <hyperswitch/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Adds or replaces a static entry: frames for (vid, mac) go to `port`.
 * Errors: -EINVAL (bad vid, multicast mac, port of another switch),
 * -EBUSY (the port is a mirror output: it takes mirrored frames only),
 * -ENOSPC (table full of static entries, or the two buckets this key may
 * live in hold static entries only and none of them could move to its
 * other bucket: a static entry is never dropped to make room; a learned
 * one is). */
HS_EXTERN int hs_fdb_add_static(hs_switch_t *sw, uint16_t vid,
				const uint8_t mac[HS_ETH_ALEN], hs_port_t *port);

/* Removes an entry, learned or static. -ENOENT if absent. */
HS_EXTERN int hs_fdb_del(hs_switch_t *sw, uint16_t vid,
			 const uint8_t mac[HS_ETH_ALEN]);

/* Looks an entry up. On success stores its port (may be NULL-checked) and
 * returns 0; -ENOENT if absent. */
HS_EXTERN int hs_fdb_lookup(hs_switch_t *sw, uint16_t vid,
			    const uint8_t mac[HS_ETH_ALEN], hs_port_t **port);

#define HS_FDB_FLUSH_STATIC 0x1 /* also remove static entries */

/* Removes the learned entries of `port` (all ports if NULL). Returns the
 * number removed. */
HS_EXTERN int hs_fdb_flush(hs_switch_t *sw, hs_port_t *port, unsigned flags);

/* Runs an aging pass now (the loop also runs one every second). Returns
 * the number of entries removed. */
HS_EXTERN int hs_fdb_age(hs_switch_t *sw);

struct hs_fdb_info {
	uint8_t mac[HS_ETH_ALEN];
	uint16_t vid;
	hs_port_t *port;
	uint32_t idle_s;   /* seconds since last refreshed */
	bool is_static;
};

/* Looks an entry up, as hs_fdb_lookup, and stores all it says in *info
 * (may be NULL): its port, whether it is static, its idle time. 0, or
 * -ENOENT if absent, -EINVAL for a bad vid or a NULL mac. */
HS_EXTERN int hs_fdb_get(hs_switch_t *sw, uint16_t vid,
			 const uint8_t mac[HS_ETH_ALEN], struct hs_fdb_info *info);

/* Calls cb for every entry, in no particular order, with the table's
 * writer lock held (cb must not call other hs_fdb_* functions, nor
 * hs_port_set_link, which forgets a port's entries when its link goes
 * down). A non-zero return from cb stops the walk and is returned. */
HS_EXTERN int hs_fdb_dump(hs_switch_t *sw,
			  int (*cb)(const struct hs_fdb_info *e, void *arg),
			  void *arg);

/* Calls cb for the MAC, VLAN and idle time (seconds since last
 * refreshed) of every entry that is not on port `except` (NULL: every
 * entry), for a backend that mirrors the table (the uplink's XDP map, the
 * vxlan port's export). Unlike hs_fdb_dump it takes only the table's lock,
 * not the switch's control lock, so a loop callback (hs_watch_add) may
 * call it while ports are added and deleted; cb must not call hs_*
 * functions. A non-zero return from cb stops the walk and is returned. */
HS_EXTERN int hs_fdb_walk_macs(hs_switch_t *sw, const hs_port_t *except,
			       int (*cb)(const uint8_t mac[6], uint16_t vid, uint32_t idle_s,
					 void *arg),
			       void *arg);

#ifdef __cplusplus
}
#endif

#endif /* HYPERSWITCH_FDB_H */

/*
 * keyset.h - sorted sets of 64-bit keys (MAC addresses) that a backend
 * keeps in step with the switch's table: the uplink's XDP map, the vxlan
 * port's MACs exported to a bridge port.
 */
#ifndef HS_KEYSET_H
#define HS_KEYSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct hs_keyset {
	uint64_t *v;
	size_t n, cap;
};

/* A MAC address as a key: its 6 bytes, zero above. */
static inline uint64_t hs_mac_key(const uint8_t mac[6])
{
	uint64_t k = 0;
	memcpy(&k, mac, 6);
	return k;
}

/* Appends k (unsorted until hs_keyset_sort). 0 or -ENOMEM. */
int hs_keyset_push(struct hs_keyset *s, uint64_t k);
/* Whether sorted s holds k. */
bool hs_keyset_has(const struct hs_keyset *s, uint64_t k);
/* Sorts and drops duplicates. */
void hs_keyset_sort(struct hs_keyset *s);
/* Brings cur (sorted) to want (sorted): add(arg, k) for each key only in
 * want (kept in cur only if it returns true: a failed add is tried again
 * next time), del(arg, k) for each key only in cur. want's memory becomes
 * cur's; want is left empty. */
void hs_keyset_apply(struct hs_keyset *cur, struct hs_keyset *want,
		     bool (*add)(void *arg, uint64_t k), void (*del)(void *arg, uint64_t k),
		     void *arg);
void hs_keyset_free(struct hs_keyset *s);

#endif

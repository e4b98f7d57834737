/*
 * backends.h - the built-in backends' ops tables, for the registry, and
 * small helpers every backend may use. Backends include only the public
 * headers and this file, never the core's internals.
 */
#ifndef HS_BACKENDS_H
#define HS_BACKENDS_H

#include "hyperswitch/hyperswitch.h"

#define HSB_CACHELINE 64
#define HSB_ALIGNED __attribute__((aligned(HSB_CACHELINE)))
#define HSB_LIKELY(x) __builtin_expect(!!(x), 1)
#define HSB_UNLIKELY(x) __builtin_expect(!!(x), 0)

#include <stdint.h>
#include <time.h>

/* Milliseconds of the coarse monotonic clock (a vDSO read, no system
 * call): for timeouts and retry times, not for measuring. */
static inline uint64_t hsb_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

extern const struct hs_backend_ops hs__mem_ops;
extern const struct hs_backend_ops hs__vhost_user_ops;
extern const struct hs_backend_ops hs__tap_ops;
extern const struct hs_backend_ops hs__uplink_ops;
extern const struct hs_backend_ops hs__vxlan_ops;
#ifdef HS_HAVE_XEN_NETIF
extern const struct hs_backend_ops hs__xen_ops;
#endif

#endif /* HS_BACKENDS_H */

/*
 * beops.h - the core's only way into a backend's data-path ops.
 *
 * Every data-path call (recv_burst, recv_done, send_reserve, send_commit,
 * notify, copy, set_notify) goes through one of these wrappers, so that
 * hs_port_quiesce's contract is checked at every call site by one rule:
 * from the moment quiesce returns until resume, no data-path op runs for
 * the port (the control plane may be unmapping the memory those ops
 * touch). Debug builds check it before and after each call, so that a
 * call that was already running when quiesce returned is caught as well
 * as one that starts afterwards; release builds compile the checks away.
 */
#ifndef HS_CORE_BEOPS_H
#define HS_CORE_BEOPS_H

#include <errno.h>

#include "internal.h"

#ifndef NDEBUG
void hs__be_violation(const struct hs_port *p, const char *op);
#define HS__BE_CHECK(p, op)                                                      \
	do {                                                                     \
		if (HS__UNLIKELY(atomic_load_explicit(&(p)->quiesced,            \
						      memory_order_acquire)))    \
			hs__be_violation((p), (op));                             \
	} while (0)
#else
#define HS__BE_CHECK(p, op) ((void)0)
#endif

static inline unsigned hs__be_recv_burst(struct hs_port *p, uint16_t q,
					 struct hs_pkt *pkts, unsigned max)
{
	HS__BE_CHECK(p, "recv_burst");
	unsigned n = p->ops->recv_burst(p->priv, q, pkts, max);
	HS__BE_CHECK(p, "recv_burst");
	return n;
}

static inline unsigned hs__be_recv_done(struct hs_port *p, uint16_t q,
					const struct hs_pkt *pkts, unsigned n)
{
	HS__BE_CHECK(p, "recv_done");
	unsigned ev = p->ops->recv_done(p->priv, q, pkts, n);
	HS__BE_CHECK(p, "recv_done");
	return ev;
}

static inline unsigned hs__be_send_reserve(struct hs_port *p, uint16_t q,
					   const struct hs_out *out, unsigned n,
					   struct hs_iobuf *bufs)
{
	HS__BE_CHECK(p, "send_reserve");
	unsigned k = p->ops->send_reserve(p->priv, q, out, n, bufs);
	HS__BE_CHECK(p, "send_reserve");
	return k;
}

static inline unsigned hs__be_send_commit(struct hs_port *p, uint16_t q,
					  const struct hs_out *out, unsigned n)
{
	HS__BE_CHECK(p, "send_commit");
	unsigned ev = p->ops->send_commit(p->priv, q, out, n);
	HS__BE_CHECK(p, "send_commit");
	return ev;
}

static inline void hs__be_notify(struct hs_port *p, uint16_t q, unsigned ev)
{
	HS__BE_CHECK(p, "notify");
	p->ops->notify(p->priv, q, ev);
	HS__BE_CHECK(p, "notify");
}

static inline int hs__be_copy(struct hs_port *p, const struct hs_copy_op *ops,
			      unsigned n)
{
	if (!p || !p->ops->copy)
		return -ENOTSUP; /* foreign memory and nobody to copy it */
	HS__BE_CHECK(p, "copy");
	int rc = p->ops->copy(p->priv, ops, n);
	HS__BE_CHECK(p, "copy");
	return rc;
}

/* Returns set_notify's answer; false for backends without it. */
static inline bool hs__be_set_notify(struct hs_port *p, uint16_t q, unsigned ev,
				     bool enable)
{
	if (!p->ops->set_notify)
		return false;
	HS__BE_CHECK(p, "set_notify");
	bool pending = p->ops->set_notify(p->priv, q, ev, enable);
	HS__BE_CHECK(p, "set_notify");
	return pending;
}

#endif /* HS_CORE_BEOPS_H */

/*
 * bench_xen.c - `hs-bench xen`: Xen vifs through the emulated hypervisor
 * (no hypervisor runs here), with the paper's copy accounting.
 *
 * A guest (the front-end of tests/xen_front.h) sends 64- and 1518-byte
 * frames to another guest (xen-xen) or to a mem port (xen-mem); the
 * switch's loop thread runs the vifs. Reported: frames per second, and
 * per frame the grant-copy calls and segments, the segments that went
 * straight from one guest's grant into the other's, and the bytes moved
 * by grant copy per byte of frame (granted/B: 1.0 is one copy; the
 * header bytes the switch fetches to classify show above it, so a
 * 64-byte frame guest to guest is 2.0: fetched whole, then written;
 * copies between local buffers, e.g. into a mem port, are memcpy and
 * not counted here).
 *
 * The rate is the emulation's: its grant copy is a mutex and a memcpy
 * where Xen's is a hypercall, so it says how the backend's own work
 * compares across frame sizes and to the mem ports of `hs-bench single`
 * on this machine, not what a hypervisor would do. The copy accounting
 * is the backend's, whatever runs it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hyperswitch/hyperswitch.h>

#include "bench.h"
#include "xen_front.h"

struct xb_case {
	const char *name;
	bool to_mem;
	size_t frame;
};

struct xb_result {
	double mpps, gbps, calls_pf, segs_pf, g2g_pf, bytes_pb;
	uint64_t frames;
};

static void *xb_loop(void *arg)
{
	hs_run(arg);
	return NULL;
}

static void xb_mac(uint8_t m[6], unsigned id)
{
	m[0] = 0x02, m[1] = 0x42, m[2] = 0, m[3] = 0, m[4] = 0, m[5] = (uint8_t)id;
}

static size_t xb_frame(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], size_t len)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x88, f[13] = 0xb5;
	for (size_t i = 14; i < len; i++)
		f[i] = (uint8_t)i;
	return len;
}

static hs_port_t *xb_vif(hs_switch_t *sw, struct hs__xemu_dom *d0, const char *name,
			 uint32_t domid)
{
	struct hs_xen_config xc = {.frontend_domid = domid, .hypervisor = d0};
	struct hs_port_config pc = {.name = name, .backend = HS_XEN_BACKEND,
				    .backend_config = &xc, .backend_config_size = sizeof(xc),
				    .mtu = 9000};
	hs_port_t *p = NULL;
	if (hs_port_add(sw, &pc, &p))
		return NULL;
	return p;
}

static int xb_run(const struct xb_case *c, double seconds, struct xb_result *r)
{
	hs_switch_t *sw;
	struct hs_switch_config sc = {0};
	if (hs_switch_create(&sc, &sw))
		return -1;
	struct hs__xemu *emu;
	if (hs__xemu_create(&emu))
		return -1;
	struct hs__xemu_dom *d0 = hs__xemu_domain(emu, 0, 0, NULL);
	struct hs_mem_config mc = {.ring_size = 1024, .buf_size = 2048};
	struct hs_port_config mp = {.name = "m", .backend_config = &mc,
				    .backend_config_size = sizeof(mc)};
	hs_port_t *m;
	if (hs_port_add(sw, &mp, &m))
		return -1;
	static struct xfront a, b;
	xf_create(&a, emu, 1, 0, 0);
	xf_create(&b, emu, 2, 0, 0);
	hs_port_t *xa = xb_vif(sw, d0, "xa", 1), *xbp = c->to_mem ? NULL : xb_vif(sw, d0, "xb", 2);
	pthread_t loop;
	pthread_create(&loop, NULL, xb_loop, sw);
	xf_connect(&a);
	if (!c->to_mem)
		xf_connect(&b);
	uint8_t ma[6], mb[6], f[2048], got[70000];
	xb_mac(ma, 1);
	xb_mac(mb, 2);
	/* the destination announces itself */
	static const uint8_t bc[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
	if (c->to_mem) {
		struct hs_mem_frame hf = {.data = f, .len = (uint32_t)xb_frame(f, bc, mb, 64)};
		hs_mem_tx_burst(m, 0, &hf, 1);
	} else {
		xf_send(&b, f, (uint32_t)xb_frame(f, bc, mb, 64), 1, 0, 0, 0, 0);
	}
	struct xf_rx ri;
	TH_WAIT((xf_events(&a), xf_recv(&a, got, sizeof(got), &ri)) != 0, 3000);
	size_t len = xb_frame(f, mb, ma, c->frame);
	struct hs__xemu_stats s0, s1;
	hs__xemu_stats(emu, &s0);
	uint64_t sent = 0, rcvd = 0;
	double t0 = bench_now(), t = t0;
	while (t - t0 < seconds) {
		/* keep a's transmit ring half full, take what arrived */
		xf_reap_tx(&a);
		while (a.tx_out < 128) {
			xf_send(&a, f, (uint32_t)len, 1, 0, 0, 0, 0);
			sent++;
		}
		if (c->to_mem) {
			struct hs_mem_frame mf[64];
			int n;
			while ((n = hs_mem_rx_burst(m, 0, mf, 64)) > 0) {
				hs_mem_rx_release(m, 0, (unsigned)n);
				rcvd += (uint64_t)n;
			}
		} else {
			xf_events(&b);
			while (xf_recv(&b, got, sizeof(got), &ri))
				rcvd++;
		}
		xf_events(&a);
		t = bench_now();
	}
	hs__xemu_stats(emu, &s1);
	double dt = t - t0;
	r->frames = rcvd;
	r->mpps = (double)rcvd / dt / 1e6;
	r->gbps = (double)rcvd * (double)len * 8 / dt / 1e9;
	double fr = rcvd ? (double)rcvd : 1;
	r->calls_pf = (double)(s1.copy_calls - s0.copy_calls) / fr;
	r->segs_pf = (double)(s1.copy_segs - s0.copy_segs) / fr;
	r->g2g_pf = (double)(s1.copy_g2g - s0.copy_g2g) / fr;
	r->bytes_pb = (double)(s1.copy_bytes - s0.copy_bytes) / (fr * (double)len);
	(void)sent;
	hs_stop(sw);
	pthread_join(loop, NULL);
	hs_port_del(xa);
	if (xbp)
		hs_port_del(xbp);
	xf_destroy(&a);
	xf_destroy(&b);
	hs_switch_destroy(sw);
	hs__xemu_destroy(emu);
	return 0;
}

int cmd_xen(struct bench_opts *o)
{
	static const struct xb_case cases[] = {
		{"xen-xen", false, 64}, {"xen-xen", false, 1518},
		{"xen-mem", true, 64},  {"xen-mem", true, 1518},
	};
	double secs = o->seconds > 0 ? o->seconds : (o->quick ? 0.3 : 1.5);
	unsigned reps = o->repeat ? o->repeat : 1;
	bench_json_begin(o, "xen");
	printf("Xen vifs through the emulated hypervisor (the switch on its loop thread)\n\n");
	printf("%-8s %6s %8s %8s %11s %10s %10s %11s\n", "case", "frame", "Mpps", "Gbit/s",
	       "calls/frame", "segs/frame", "g2g/frame", "granted/B");
	double first = 0;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct xb_case *c = &cases[i];
		if (o->only_frame && o->only_frame != c->frame)
			continue;
		double v[32];
		struct xb_result r = {0};
		for (unsigned k = 0; k < reps && k < 32; k++) {
			if (xb_run(c, secs, &r))
				return 1;
			v[k] = r.mpps;
		}
		r.mpps = bench_median(v, reps < 32 ? reps : 32);
		if (!first)
			first = r.mpps;
		printf("%-8s %6zu %8.3f %8.2f %11.3f %10.3f %10.3f %11.3f\n", c->name, c->frame,
		       r.mpps, r.gbps, r.calls_pf, r.segs_pf, r.g2g_pf, r.bytes_pb);
		bench_json_item(o,
				"{\"case\":\"%s\",\"frame\":%zu,\"mpps\":%.4f,\"gbps\":%.3f,"
				"\"grant_copy_calls_per_frame\":%.4f,\"segments_per_frame\":%.4f,"
				"\"guest_to_guest_segments_per_frame\":%.4f,"
				"\"granted_bytes_per_frame_byte\":%.4f,\"frames\":%llu}",
				c->name, c->frame, r.mpps, r.gbps, r.calls_pf, r.segs_pf, r.g2g_pf,
				r.bytes_pb, (unsigned long long)r.frames);
	}
	bench_json_end(o);
	printf("summary: xen-xen %.2f Mpps at 64 B through the emulation\n", first);
	return 0;
}

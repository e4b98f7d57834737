/*
 * fuzz_virtq.c - libFuzzer target (b): ring configuration and
 * guest-written ring contents into the device side of split and packed
 * virtqueues (src/backends/virtq.c): pop, push, unpop, flush, kick
 * suppression, as the vhost-user data path uses them.
 *
 * Input: a header (1 byte layout, 2 size, 2 position, 3 byte limit), the
 * ring block's first bytes (2-byte length, then the bytes), the data
 * region's first bytes (likewise), then a script of operations, which may
 * also rewrite guest memory between them (a guest writing while the device
 * reads). tests/fuzz/seeds.py writes seed inputs in this format.
 * The rings live at the very end of their own heap block (ASan's redzone
 * follows), buffers in a second region: any access outside the ring the
 * control plane validated, or outside guest memory, is reported.
 *
 * Oracle: besides the sanitizers, every segment a pop returns must lie
 * inside a region of the memory table in force, chains never exceed their
 * limits, and the used ring is written only inside the ring. One step
 * changes the table (as SET_MEM_TABLE does, the rings staying where they
 * are): the data region shrinks to its first half, or comes back, so that
 * a translation through the region the ring kept from the table before
 * (vq_gpa) is caught.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/virtq.h"

#define DATA_LEN (64u << 10)
#define MAX_SIZE 1024u
#define MAX_HELD 256

struct cursor {
	const uint8_t *p;
	size_t n;
};

static uint32_t take(struct cursor *c, unsigned bytes)
{
	uint32_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v <<= 8;
		if (c->n) {
			v |= *c->p++;
			c->n--;
		}
	}
	return v;
}

static bool inside(const struct vu_mem *m, const uint8_t *p, uint32_t len)
{
	for (uint32_t i = 0; i < m->n; i++) {
		const struct vu_region *r = &m->r[i];
		if (p >= r->hva && len <= r->size && p - r->hva <= (ptrdiff_t)(r->size - len))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = {data, size};
	uint32_t hdr = take(&c, 1);
	bool packed = hdr & 1, event_idx = hdr & 2, indirect = hdr & 4;
	uint32_t n = take(&c, 2) % MAX_SIZE + 1;
	if (!packed) /* the control plane accepts powers of two only */
		n = 1u << (31 - __builtin_clz(n));
	uint32_t base = take(&c, 2);
	if (packed)
		base = (base & 0x8000) | ((base & 0x7fff) % n); /* as validated */
	uint32_t limit = take(&c, 3) % (70u << 10) + 1;

	/* Ring areas: split desc | avail | used, packed desc | drv | dev, each
	 * exactly as large as the size requires, ending the block. */
	size_t ring_len = packed ? 16 * n + 8 : 16 * n + (6 + 2 * n + 2) + 4 + (6 + 8 * n);
	ring_len = (ring_len + 15) & ~(size_t)15;
	uint8_t *ring = malloc(ring_len);
	uint8_t *buf = malloc(DATA_LEN);
	if (!ring || !buf)
		abort();
	struct vu_mem mem = {.n = 2};
	mem.r[0] = (struct vu_region){.gpa = 0x100000, .size = DATA_LEN, .uva = 0x100000,
				      .hva = buf};
	mem.r[1] = (struct vu_region){.gpa = 0x900000, .size = ring_len, .uva = 0x900000,
				      .hva = ring};
	/* the other table: the data region's first half only */
	struct vu_mem half = mem;
	half.r[0].size = DATA_LEN / 2;
	const struct vu_mem *cur = &mem;
	/* Guest memory from the input (ring block, then data), the rest zero. */
	memset(ring, 0, ring_len);
	memset(buf, 0, DATA_LEN);
	for (int area = 0; area < 2; area++) {
		size_t want = take(&c, 2), cap = area ? DATA_LEN : ring_len;
		if (want > c.n)
			want = c.n;
		memcpy(area ? buf : ring, c.p, want < cap ? want : cap);
		c.p += want;
		c.n -= want;
	}

	struct vq vq;
	vq_reset(&vq);
	vq.size = (uint16_t)n;
	vq.packed = packed;
	vq.event_idx = event_idx;
	vq.indirect = indirect;
	vq_set_mem(&vq, &mem);
	uint8_t *end = ring + ring_len;
	if (packed) {
		vq.pdesc = (void *)(end - 16 * n);
		vq.drv_evt = (void *)(ring);
		vq.dev_evt = (void *)(ring + 4);
		vq_set_base(&vq, (uint16_t)(base & 0x7fff), base >> 15);
	} else {
		vq.used = (void *)(end - (6 + 8 * n));
		vq.used = (void *)((uintptr_t)vq.used & ~(uintptr_t)3);
		vq.avail = (void *)(ring + 16 * n);
		vq.desc = (void *)ring;
		vq_set_base(&vq, (uint16_t)base, true);
	}

	static struct vq_chain held[MAX_HELD];
	static struct hs_seg segs[64];
	unsigned nheld = 0;
	for (unsigned steps = 0; c.n && steps < 4096; steps++) {
		uint32_t op = take(&c, 1);
		switch (op % 8) {
		case 0: /* pop, transmit or receive direction */
		case 1: {
			if (nheld == MAX_HELD)
				break;
			bool writable = op & 1, bad;
			unsigned seg_max = take(&c, 1) % 64 + 1;
			struct vq_chain ch;
			int rc = vq_pop(&vq, writable, &ch, segs, seg_max, limit, &bad);
			if (rc < 0 && !vq.broken)
				abort(); /* -1 means broken, with a reason */
			if (rc <= 0)
				break;
			if (!bad) {
				uint32_t total = 0;
				if (ch.nseg > seg_max)
					abort();
				for (unsigned k = 0; k < ch.nseg; k++) {
					if (!inside(cur, segs[k].base, segs[k].len))
						abort(); /* a segment outside guest memory */
					total += segs[k].len;
				}
				if (total != ch.len || ch.len > limit)
					abort();
			}
			held[nheld++] = ch;
			break;
		}
		case 2: /* push the oldest held chain */
			if (nheld) {
				vq_push(&vq, &held[0], take(&c, 2));
				memmove(held, held + 1, --nheld * sizeof(held[0]));
			}
			break;
		case 3: { /* give back the newest k */
			unsigned k = nheld ? take(&c, 1) % nheld + 1 : 0;
			vq_unpop(&vq, held + nheld - k, k);
			nheld -= k;
			break;
		}
		case 4:
			vq_flush(&vq);
			break;
		case 5:
			vq_set_kicks(&vq, op & 8);
			break;
		case 6:
			vq_has_avail(&vq);
			vq_prefetch_used(&vq, take(&c, 1) % 64 + 1);
			break;
		case 7: { /* the guest writes its memory meanwhile */
			if ((op & 0x30) == 0x30) { /* or the table changes */
				cur = cur == &mem ? &half : &mem;
				vq_set_mem(&vq, cur);
				break;
			}
			uint8_t *area = (op & 8) ? ring : buf;
			size_t len = (op & 8) ? ring_len : DATA_LEN;
			size_t at = take(&c, 3) % len;
			size_t k = take(&c, 1);
			for (size_t i = 0; i < k && at + i < len && c.n; i++)
				area[at + i] = (uint8_t)take(&c, 1);
			break;
		}
		}
	}
	/* The data path completes what it took before the ring stops. */
	for (unsigned i = 0; i < nheld && !vq.broken; i++)
		vq_push(&vq, &held[i], 0);
	vq_flush(&vq);
	free(ring);
	free(buf);
	return 0;
}

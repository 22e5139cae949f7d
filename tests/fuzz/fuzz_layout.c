/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: hugering_ring_layout() against an independent
 * re-computation of the kernel's rings_size() and io_uring_fill_params()
 * (../shared/kernel-facts.md section 2.1).  Pure: no ring is created.
 * Input: entries, flags, cq_entries (4 bytes each, little endian), then the
 * rest of struct io_uring_params (which the layout must ignore).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hugering.h>

#define PAGE 4096u
#define MAX_SQ 32768u
#define MAX_CQ 65536u
#define KNOWN_FLAGS ((1u << 19) - 1)	/* up to CQE_MIXED (6.18) */
#define CQE_MIXED (1u << 18)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define require(cond)                                                            \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "fuzz_layout: %s failed (entries %u flags %#x cq %u)\n", \
				#cond, entries, p.flags, p.cq_entries);          \
			abort();                                                 \
		}                                                                \
	} while (0)

static unsigned take32(const uint8_t **d, size_t *n)
{
	unsigned v = 0;

	for (int i = 0; i < 4 && *n; i++, (*d)++, (*n)--)
		v |= (unsigned)**d << (8 * i);
	return v;
}

/* Smallest power of two >= v (v >= 1, v <= 2^31), by walking. */
static uint64_t pow2_at_least(uint64_t v)
{
	uint64_t r = 1;

	while (r < v)
		r <<= 1;
	return r;
}

static uint64_t page_up(uint64_t v)
{
	return (v + PAGE - 1) / PAGE * PAGE;
}

/* The kernel's entry counts; 0 or -EINVAL. */
static int model_entries(unsigned entries, const struct io_uring_params *p, uint64_t *sq,
			 uint64_t *cq)
{
	uint64_t e = entries, c;

	if (p->flags & ~KNOWN_FLAGS)
		return -EINVAL;
	if (e == 0)
		return -EINVAL;
	if (e > MAX_SQ) {
		if (!(p->flags & IORING_SETUP_CLAMP))
			return -EINVAL;
		e = MAX_SQ;
	}
	*sq = pow2_at_least(e);
	if (!(p->flags & IORING_SETUP_CQSIZE)) {
		*cq = 2 * *sq;
		return 0;
	}
	c = p->cq_entries;
	if (c == 0)
		return -EINVAL;
	if (c > MAX_CQ) {
		if (!(p->flags & IORING_SETUP_CLAMP))
			return -EINVAL;
		c = MAX_CQ;
	}
	c = pow2_at_least(c);
	if (c < *sq)
		return -EINVAL;
	*cq = c;
	return 0;
}

/* What the kernel refuses beyond the entry counts (6.18). */
static int model_flags(const struct io_uring_params *p, uint64_t cq)
{
	if ((p->flags & CQE_MIXED) && (p->flags & IORING_SETUP_CQE32))
		return -EINVAL;
	if ((p->flags & CQE_MIXED) && cq < 2)
		return -EOVERFLOW;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct io_uring_params p;
	struct hugering_layout out;
	uint64_t sq = 0, cq = 0, r, line, sqe_raw, sqes;
	unsigned entries;
	int ret, want;

	memset(&p, 0, sizeof(p));
	entries = take32(&data, &size);
	p.flags = take32(&data, &size);
	p.cq_entries = take32(&data, &size);
	/* The rest of the params: noise the layout must not read. */
	memcpy((char *)&p + 12, data, size < sizeof(p) - 12 ? size : sizeof(p) - 12);

	/* Misuse first: NULLs are -EINVAL with a reason. */
	if (entries == 7) {
		require(hugering_ring_layout(entries, NULL, &out) == -EINVAL);
		require(hugering_last_error()[0]);
		require(hugering_ring_layout(entries, &p, NULL) == -EINVAL);
	}
	memset(&out, 0xa5, sizeof(out));
	ret = hugering_ring_layout(entries, &p, &out);
	want = model_entries(entries, &p, &sq, &cq);
	if (!want)
		want = model_flags(&p, cq);
	require(ret == want);
	if (ret) {
		require(hugering_last_error()[0]);
		return 0;
	}
	require(out.sq_entries == sq && out.cq_entries == cq);
	require(out.flags == p.flags);
	for (int i = 0; i < 8; i++)
		require(out.resv[i] == 0);
	/* The header is the running kernel's sizeof(struct io_rings). */
	require(out.header >= 64 && out.header <= 1024 && out.header % 64 == 0);
	line = out.header & -out.header;
	if (line > 128)
		line = 128;
	r = (out.header + 16 * cq) * (p.flags & IORING_SETUP_CQE32 ? 2 : 1);
	r = (r + line - 1) / line * line;
	if (p.flags & IORING_SETUP_NO_SQARRAY) {
		require(out.sq_array_off == 0);
	} else {
		require(out.sq_array_off == r);
		require(out.sq_array_off % 4 == 0);
		r += 4 * sq;
	}
	sqe_raw = sq * (p.flags & IORING_SETUP_SQE128 ? 128 : 64);
	sqes = page_up(sqe_raw);
	require(out.rings_raw == r);
	require(out.rings_bytes == page_up(r));
	require(out.sqes_bytes == sqes);
	/* hugering's buffer: SQEs first, page-aligned rings after them. */
	require(out.rings_offset % PAGE == 0);
	require(out.rings_offset >= out.sqes_bytes);
	require(out.rings_offset - out.sqes_bytes <= page_up(4 * sq));
	require(out.total_bytes == out.rings_offset + out.rings_bytes);
	require(out.total_bytes >= out.sqes_bytes + out.rings_bytes);
	require(out.total_bytes % PAGE == 0);
	require(out.liburing_ok == 0 || out.liburing_ok == 1);
	/* Largest shape: 32768 SQE128 + 65536 CQE32 fits in 10 MiB. */
	require(out.total_bytes <= (10u << 20));
	return 0;
}

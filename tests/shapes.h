/* SPDX-License-Identifier: MIT */
/* The ring shapes every factory test runs (issue #3, acceptance 1). */
#ifndef HUGERING_TEST_SHAPES_H
#define HUGERING_TEST_SHAPES_H

#include <liburing.h>

struct shape {
	unsigned entries;
	unsigned cq;		/* 0: default (2 x SQ) */
	unsigned flags;
};

#define SHAPE_LIST(X) \
	X(s8,           8,     0,         0) \
	X(s64,          64,    0,         0) \
	X(s256_512,     256,   512,       0) \
	X(s256_16k,     256,   16384,     0) \
	X(s4k_64k,      4096,  65536,     0) \
	X(s1k_4k_cqe32, 1024,  4096,      IORING_SETUP_CQE32) \
	X(s512_1k_sqe128, 512, 1024,      IORING_SETUP_SQE128) \
	X(s16k_64k_cqe32, 16384, 65536,   IORING_SETUP_CQE32) \
	X(s32k_64k_sqe128, 32768, 65536,  IORING_SETUP_SQE128) \
	X(s100_3000,    100,   3000,      0) \
	X(s32k_1m_clamp, 32768, 1u << 20, IORING_SETUP_CLAMP) \
	X(s128_256_defer, 128, 256,       IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)

static inline struct io_uring_params shape_params(const struct shape *s)
{
	struct io_uring_params p = { .flags = s->flags };

	if (s->cq) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = s->cq;
	}
	return p;
}

#endif

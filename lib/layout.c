/* SPDX-License-Identifier: MIT */
/*
 * Ring memory layout: the exact bytes the kernel pins for a NO_MMAP ring,
 * and where hugering puts them in one buffer.
 *
 * The kernel is never told the buffer size: it pins what its formula
 * implies.  A formula that is too small lets the kernel write past the
 * buffer, so this one follows the kernel's rings_size():
 *
 *   R = H + cqe_size * cq       (CQE32: 2 * (H + 16 * cq), header included)
 *   R = ALIGN(R, cache line)
 *   R += 4 * sq                 unless IORING_SETUP_NO_SQARRAY
 *   rings region = PAGE_ALIGN(R), SQE region = PAGE_ALIGN(sqe_size * sq)
 *
 * H (sizeof(struct io_rings)) shrank from 320 to 64 bytes in 6.6 on x86-64,
 * so it is read from the running kernel (cq_off.cqes of a throw-away ring),
 * never hard-coded.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define KERN_MAX_SQ 32768u
#define KERN_MAX_CQ 65536u

/* Flags this library understands (up to CQE_MIXED, Linux 6.18). */
#define HR_SETUP_KNOWN ((1u << 19) - 1)
#define HR_SETUP_CQE_MIXED (1u << 18)

static unsigned ring_header = 64;	/* 6.6+ x86-64 until read */
static pthread_once_t header_once = PTHREAD_ONCE_INIT;

static void read_ring_header_here(void *unused)
{
	struct io_uring_params p;
	int fd;

	(void)unused;

	memset(&p, 0, sizeof(p));
	fd = hr_sys_io_uring_setup(1, &p);
	if (fd < 0)
		return;	/* io_uring unusable: keep the 6.6+ value */
	ring_header = p.cq_off.cqes;
	close(fd);
}

/* A scratch ring: made and closed off the caller's thread (hr_run_on_helper). */
static void read_ring_header(void)
{
	hr_run_on_helper(read_ring_header_here, NULL);
}

unsigned hr_ring_header(void)
{
	pthread_once(&header_once, read_ring_header);
	return ring_header;
}

static unsigned roundup_pow2(unsigned v)
{
	return v <= 1 ? 1 : 1u << (32 - __builtin_clz(v - 1));
}

/* Entry counts exactly as the kernel's io_uring_fill_params() makes them. */
int hr_ring_entries(unsigned entries, const struct io_uring_params *p,
		    unsigned *sq, unsigned *cq)
{
	unsigned c;

	if (!entries)
		return -EINVAL;
	if (entries > KERN_MAX_SQ) {
		if (!(p->flags & IORING_SETUP_CLAMP))
			return -EINVAL;
		entries = KERN_MAX_SQ;
	}
	*sq = roundup_pow2(entries);
	if (p->flags & IORING_SETUP_CQSIZE) {
		c = p->cq_entries;
		if (!c)
			return -EINVAL;
		if (c > KERN_MAX_CQ) {
			if (!(p->flags & IORING_SETUP_CLAMP))
				return -EINVAL;
			c = KERN_MAX_CQ;
		}
		c = roundup_pow2(c);
		if (c < *sq)
			return -EINVAL;
		*cq = c;
	} else {
		*cq = 2 * *sq;
	}
	return 0;
}

/*
 * Where liburing's io_uring_queue_init_mem() puts the rings in the buffer
 * (it always puts the SQEs first).  Versions disagree (kernel-facts §2.2,
 * liburing src/setup.c io_uring_alloc_huge at each tag): 2.5 and 2.6 put
 * them at the page-rounded end of the SQEs, 2.7 four bytes per entry later
 * (not page-aligned: the kernel refuses), 2.8 to 2.14 count the SQ index
 * array with the SQEs before rounding.  -ENOTSUP where the running liburing
 * cannot place this shape safely.
 */
static int liburing_rings_offset(unsigned flags, size_t sqe_raw, unsigned sq,
				 size_t *off)
{
	bool sqarray = !(flags & IORING_SETUP_NO_SQARRAY);

	if (!hr_liburing_at_least(2, 9) && (flags & IORING_SETUP_SQE128))
		return -ENOTSUP;	/* ignores SQE128: SQEs overlap the rings */
	if (!sqarray && !hr_liburing_at_least(2, 6))
		return -ENOTSUP;	/* fills an SQ array at sq_off.array 0: the header */
	if (sqarray && hr_liburing_at_least(2, 7) && !hr_liburing_at_least(2, 8))
		return -ENOTSUP;	/* rings after the SQ array: misaligned */
	if (sqarray && hr_liburing_at_least(2, 8) && !hr_liburing_at_least(2, 15))
		sqe_raw += 4 * (size_t)sq;
	*off = HR_ALIGN_UP(sqe_raw, HR_BASE_PAGE);
	return 0;
}

int hr_ring_layout(unsigned entries, const struct io_uring_params *p,
		   struct hugering_layout *out)
{
	unsigned sq, cq, h, line;
	size_t r, sqe_raw;
	int ret;

	if (!p || !out)
		return -EINVAL;
	if (p->flags & ~HR_SETUP_KNOWN)
		return -EINVAL;
	ret = hr_ring_entries(entries, p, &sq, &cq);
	if (ret)
		return ret;
	/* The kernel's own refusals of CQE_MIXED (6.18; kernel-facts 2.1). */
	if ((p->flags & HR_SETUP_CQE_MIXED) && (p->flags & IORING_SETUP_CQE32))
		return -EINVAL;
	if ((p->flags & HR_SETUP_CQE_MIXED) && cq < 2)
		return -EOVERFLOW;
	memset(out, 0, sizeof(*out));
	h = hr_ring_header();
	/* struct io_rings is cache-line aligned: its size is a multiple of the line. */
	line = h & -h;
	if (line > 128)
		line = 128;
	r = h + 16 * (size_t)cq;
	if (p->flags & IORING_SETUP_CQE32)
		r *= 2;
	r = HR_ALIGN_UP(r, line);
	if (!(p->flags & IORING_SETUP_NO_SQARRAY)) {
		out->sq_array_off = (unsigned)r;
		r += 4 * (size_t)sq;
	}
	sqe_raw = (size_t)sq * ((p->flags & IORING_SETUP_SQE128) ? 128 : 64);
	out->sq_entries = sq;
	out->cq_entries = cq;
	out->flags = p->flags;
	out->header = h;
	out->rings_raw = r;
	out->sqes_bytes = HR_ALIGN_UP(sqe_raw, HR_BASE_PAGE);
	out->rings_bytes = HR_ALIGN_UP(r, HR_BASE_PAGE);
	ret = liburing_rings_offset(p->flags, sqe_raw, sq, &out->rings_offset);
	if (ret)
		out->rings_offset = out->sqes_bytes;
	out->total_bytes = out->rings_offset + out->rings_bytes;
	out->liburing_ok = !ret;
	return 0;
}

int hugering_ring_layout(unsigned entries, const struct io_uring_params *p,
			 struct hugering_layout *out)
{
	return HR_PUBLIC(hr_ring_layout(entries, p, out));
}

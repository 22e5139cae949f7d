/* SPDX-License-Identifier: MIT */
/*
 * A ring placed in memory hugering chose: liburing's
 * io_uring_queue_init_mem() sets it up (so struct io_uring stays liburing's
 * to interpret; its private flags differ between versions) in a buffer laid
 * out for the running liburing (layout.c), and the regions are checked to
 * be where the layout said.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* The rings' header, and the SQ index array when there is one. */
static size_t ring_header_bytes(const struct hugering_layout *lay)
{
	return lay->sq_array_off ? lay->rings_raw : lay->header;
}

/*
 * The kernel sets the masks and sizes of user ring memory but not the
 * heads, tails and flags: a recycled slot gets a zeroed header.  Its
 * SQE and CQE slots keep an earlier ring's bytes, as any ring's slots
 * do after the first lap: SQEs are written whole before submission,
 * CQEs before the tail moves past them.  The arena may ask for all.
 */
void hr_slot_prepare(const struct hugering_layout *lay, const struct hr_slot *s)
{
	if (s->reused && hr_arena_zero_recycled(s->arena))
		memset(s->addr, 0, lay->total_bytes);
	else if (s->reused)
		memset(s->addr + lay->rings_offset, 0, ring_header_bytes(lay));
}

/*
 * Set the ring up in @r.  liburing places SQEs at the buffer start and the
 * rings at rings_offset; a liburing that placed them elsewhere would have
 * the kernel pin memory the layout did not account for, so that is an error.
 */
int hr_setup_in(unsigned entries, struct io_uring *ring, const struct io_uring_params *in,
		struct io_uring_params *q, const struct hugering_layout *lay,
		const struct hr_slot *s)
{
	char *buf = s->addr;
	int ret;

	hr_slot_prepare(lay, s);
	*q = *in;
	ret = io_uring_queue_init_mem(entries, ring, q, buf, lay->total_bytes);
	if (ret < 0)
		return ret;
	if (q->sq_off.user_addr != (uintptr_t)buf ||
	    q->cq_off.user_addr != (uintptr_t)(buf + lay->rings_offset)) {
		hr_queue_exit_app_mem(ring);	/* compat.h: liburing < 2.8 */
		hr_set_error("liburing %d.%d placed ring memory where hugering's layout "
			     "did not expect it", io_uring_major_version(),
			     io_uring_minor_version());
		return -EPROTO;
	}
	return 0;
}

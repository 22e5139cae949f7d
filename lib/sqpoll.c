/* SPDX-License-Identifier: MIT */
/*
 * Rings sharing one SQPOLL kernel thread: the first made with
 * IORING_SETUP_SQPOLL, the others attached to it (IORING_SETUP_ATTACH_WQ),
 * all through the ring factory; on failure no ring is left.
 */
#include <errno.h>

#include "internal.h"

static int sqpoll_group(struct io_uring *rings, unsigned n, unsigned entries,
			const struct io_uring_params *p, const struct hugering_init_opts *o)
{
	int ret = 0;

	if (!rings || !n || !p) {
		hr_set_error("sqpoll group: NULL rings/params or n = 0");
		return -EINVAL;
	}
	/*
	 * ATTACH_WQ names the first ring by a file descriptor (the kernel
	 * fdget()s wq_fd; a registered ring index is not looked up there), and
	 * a REGISTERED_FD_ONLY ring has none: refuse before any ring exists.
	 */
	if (n > 1 && (p->flags & IORING_SETUP_REGISTERED_FD_ONLY)) {
		hr_set_error("sqpoll group: IORING_SETUP_REGISTERED_FD_ONLY leaves the first ring "
			     "no file descriptor for IORING_SETUP_ATTACH_WQ's wq_fd (the kernel takes "
			     "an fd, not a registered index): drop the flag, or register each ring "
			     "with io_uring_register_ring_fd() after the group is made");
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_params q = *p;

		q.flags |= IORING_SETUP_SQPOLL;
		if (i) {
			/* ATTACH_WQ shares the first ring's SQ thread. */
			q.flags |= IORING_SETUP_ATTACH_WQ;
			q.wq_fd = (unsigned)rings[0].ring_fd;
		}
		ret = hr_queue_init_opts(entries, &rings[i], &q, o);
		if (ret) {
			while (i--)
				hr_queue_exit(&rings[i]);
			return ret;
		}
	}
	return 0;
}

int hugering_sqpoll_group(struct io_uring *rings, unsigned n, unsigned entries,
			  const struct io_uring_params *p, const struct hugering_init_opts *o)
{
	return HR_PUBLIC(sqpoll_group(rings, n, entries, p, o));
}

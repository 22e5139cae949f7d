/* SPDX-License-Identifier: MIT */
/*
 * RLIMIT_MEMLOCK, which Linux 6.14+ charges per user for ring memory: does
 * it explain an -ENOMEM, and the setup retried while a ring just destroyed
 * still holds its charge.
 */
#include <errno.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Would RLIMIT_MEMLOCK explain an -ENOMEM from io_uring_setup (6.14+)? */
bool hr_memlock_explains(struct rlimit *rl)
{
	if (hr_cap_effective("", HR_CAP_IPC_LOCK) || getrlimit(RLIMIT_MEMLOCK, rl))
		return false;
	return rl->rlim_cur != RLIM_INFINITY;
}

/*
 * Set up in @s.  Unprivileged on 6.14+, a ring just destroyed still holds
 * its RLIMIT_MEMLOCK charge for a few ms: wait for it like for the pool.
 * Retrying in the same memory is safe: the charge is taken while the
 * regions are created (io_allocate_scq_urings), which frees the rings before
 * it returns the error, so no half-made ring is left to write them.
 */
int hr_setup_waiting(unsigned entries, struct io_uring *ring, const struct io_uring_params *in,
		     struct io_uring_params *q, const struct hugering_layout *lay,
		     struct hr_slot *s, int wait_ms)
{
	struct timespec t0, t;
	struct rlimit rl;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		ret = hr_setup_in(entries, ring, in, q, lay, s);
		if (ret != -ENOMEM || !hr_memlock_explains(&rl))
			return ret;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= wait_ms)
			break;
		s->reused = true;	/* the kernel may have touched it: zero again */
		usleep(1000);
	}
	/* A kernel-mapped ring is charged the same: no fallback. */
	hr_set_error("RLIMIT_MEMLOCK: the ring needs %zu bytes locked (charged per user, "
		     "shared by all this user's rings; Linux 6.14+), limit is %llu: raise "
		     "ulimit -l or grant CAP_IPC_LOCK", lay->sqes_bytes + lay->rings_bytes,
		     (unsigned long long)rl.rlim_cur);
	return -ENOMEM;
}

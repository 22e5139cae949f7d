/* SPDX-License-Identifier: MIT */
/*
 * RLIMIT_MEMLOCK, which Linux 6.14+ charges per user for ring memory (and
 * buffer rings): does it explain an -ENOMEM, and a setup or registration
 * retried while a ring just destroyed still holds its charge.
 */
#include <errno.h>
#include <stdbool.h>
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
 * Run @try until it stops failing with an -ENOMEM that RLIMIT_MEMLOCK may
 * explain, or @wait_ms pass.  Unprivileged on 6.14+, rings this user just
 * closed hold their charge until the kernel's asynchronous teardown ends
 * (12-19 ms measured): anything else charged (ring memory, buffer rings)
 * is refused meanwhile.  Returns try's last result; *@explained says
 * whether the limit explains a final -ENOMEM (then @rl holds it).
 */
int hr_memlock_retry(int (*try)(void *), void *arg, int wait_ms, struct rlimit *rl,
		     bool *explained)
{
	struct timespec t0, t;
	int ret;

	*explained = false;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		ret = try(arg);
		if (ret != -ENOMEM || !hr_memlock_explains(rl))
			return ret;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= wait_ms)
			break;
		usleep(1000);
	}
	*explained = true;
	return ret;
}

struct setup_try {
	unsigned entries;
	struct io_uring *ring;
	const struct io_uring_params *in;
	struct io_uring_params *q;
	const struct hugering_layout *lay;
	struct hr_slot *s;
};

static int setup_once(void *arg)
{
	struct setup_try *t = arg;
	int ret = hr_setup_in(t->entries, t->ring, t->in, t->q, t->lay, t->s);

	if (ret == -ENOMEM)
		t->s->reused = true;	/* the kernel may have touched it: zero again */
	return ret;
}

/*
 * Set up in @s, waiting out a dying ring's memlock charge (above).
 * Retrying in the same memory is safe: the charge is taken while the
 * regions are created (io_allocate_scq_urings), which frees the rings before
 * it returns the error, so no half-made ring is left to write them.
 */
int hr_setup_waiting(unsigned entries, struct io_uring *ring, const struct io_uring_params *in,
		     struct io_uring_params *q, const struct hugering_layout *lay,
		     struct hr_slot *s, int wait_ms)
{
	struct setup_try t = { entries, ring, in, q, lay, s };
	struct rlimit rl;
	bool explained;
	int ret = hr_memlock_retry(setup_once, &t, wait_ms, &rl, &explained);

	if (!explained)
		return ret;
	/* A kernel-mapped ring is charged the same: no fallback. */
	hr_set_error("RLIMIT_MEMLOCK: the ring needs %zu bytes locked (charged per user, "
		     "shared by all this user's rings; Linux 6.14+), limit is %llu: raise "
		     "ulimit -l or grant CAP_IPC_LOCK", lay->sqes_bytes + lay->rings_bytes,
		     (unsigned long long)rl.rlim_cur);
	return -ENOMEM;
}

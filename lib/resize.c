/* SPDX-License-Identifier: MIT */
/*
 * Recycling by resize (Linux 6.13+, DEFER_TASKRUN rings): which rings are
 * worth it, and the resize into a throw-away region just before close that
 * lets the ring's own memory be reused at once.
 */
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

/*
 * Resize-to-throw-away costs a fixed ~13 us per ring (one shared throw-away
 * region; ~30 us when each ring mapped its own).  Quarantine costs the
 * ring's share of a fresh page, which the kernel zeroes: about 175 us per
 * MiB of ring, whatever the page size (350 us per 2 MiB page; a 1 GiB page
 * stalls ~0.2 s once per page), paid by a few cycles in the tail.  Measured
 * with bench/recycle on 2 MiB pages, mean per cycle, quarantine vs resize:
 * 49 KiB rings 23-26 vs 21-25 us (even), 100 KiB rings 33-39 vs 24 us.
 * Resize has the higher median (21 vs 8 us) but a p99 ten times lower: from
 * 64 KiB up it wins on mean and tail.  An arena's dedicated region (a ring
 * larger than a page) is always worth it: it is kept as a spare instead of
 * being faulted in again.
 */
#define RESIZE_MIN_BYTES (64u << 10)

bool hr_resize_recycles(const struct io_uring_params *q, const struct hr_slot *s)
{
	if (!s->arena || !hr_caps()->resize || !(q->flags & IORING_SETUP_DEFER_TASKRUN) ||
	    !hr_arena_may_resize(s->arena))
		return false;
	return !s->page || s->len >= RESIZE_MIN_BYTES;
}

/*
 * The throw-away region every resize_away shares, mapped once per process
 * and never unmapped.  A fresh mapping per ring cost more than half of a
 * large ring's create+destroy (perf: shmem fault and page zeroing inside
 * the resize's pin, then munmap and inode eviction).  Sharing is safe: only
 * dying rings ever use it, nobody reads it, and the kernel treats ring
 * memory as untrusted user memory whatever other rings write there.  Each
 * dying ring holds one pin until its teardown; pins are counted per page
 * with a bias of 1024, so about two million rings would have to be dying at
 * the same moment to matter.
 */
#define THROWAWAY_LEN (2 * HR_BASE_PAGE)

static char *throwaway_region(void)
{
	static char *shared;
	char *t = __atomic_load_n(&shared, __ATOMIC_ACQUIRE), *expected = NULL;
	void *v;

	if (t)
		return t;
	/* MAP_SHARED: a fork copies no pinned page, the child shares the junk */
	if (hr_sys_mmap(NULL, THROWAWAY_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			-1, 0, &v))
		return NULL;	/* not remembered: the next ring tries again */
	memset(v, 0, THROWAWAY_LEN);	/* fault it in once, outside any pin */
	if (__atomic_compare_exchange_n(&shared, &expected, v, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return v;
	hr_sys_munmap(v, THROWAWAY_LEN);	/* another thread won the race */
	return expected;
}

/*
 * Move a DEFER_TASKRUN ring into the tiny throw-away region (Linux 6.13+):
 * the kernel unpins the old memory before returning, so the slot can take
 * a new ring at once.  @fd is hugering's own reference (hold_ring), or -1
 * for a ring that only has a registered index.
 */
bool hr_resize_away(const struct io_uring *ring, int fd)
{
	unsigned op = IORING_REGISTER_RESIZE_RINGS;
	struct io_uring_params p;
	char *t = throwaway_region();

	if (!t)
		return false;
	memset(&p, 0, sizeof(p));
	p.sq_entries = 1;
	p.cq_entries = 2;
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_off.user_addr = (uintptr_t)t;
	p.sq_off.user_addr = (uintptr_t)(t + HR_BASE_PAGE);
	if (fd < 0) {
		fd = ring->enter_ring_fd;
		op |= IORING_REGISTER_USE_REGISTERED_RING;
	}
	/* -EOVERFLOW (completions pending) or -EEXIST (not the submitter): quarantine */
	return hr_sys_io_uring_register(fd, op, &p, 1) == 0;
}

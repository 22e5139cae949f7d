/* SPDX-License-Identifier: MIT */
/*
 * Kernel-mapped rings: by policy, or the fallback when user memory cannot
 * be had, always with the reason recorded (and logged), never silent.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "internal.h"

static void fill_kernel_info(const struct io_uring *ring, const struct io_uring_params *p,
			     struct hugering_ring_info *info)
{
	size_t sqe = (p->flags & IORING_SETUP_SQE128) ? 128 : 64;

	info->mode = HUGERING_MODE_KERNEL;
	info->page_size = HR_BASE_PAGE;
	info->mem_bytes = ring->sq.ring_sz + sqe * p->sq_entries;
	info->sq_entries = p->sq_entries;
	info->cq_entries = p->cq_entries;
	info->setup_flags = p->flags;
	info->mem = ring->sq.sqes;
	info->numa_node = -1;
}

/* Why a kernel-mapped setup failed: the parameters, the memlock limit, or as is. */
static void kernel_ring_error(int ret, int err, const char *reason)
{
	struct rlimit rl;

	if (err && ret == -err)
		/* The same failure without user memory: not the memory's. */
		hr_set_error("io_uring_setup failed: %s (the same with and without user "
			     "memory: the kernel refuses these parameters)", strerror(-ret));
	else if (ret == -ENOMEM && hr_memlock_explains(&rl))
		hr_set_error("io_uring_setup failed: %s: RLIMIT_MEMLOCK (%llu bytes) is charged "
			     "for ring memory (Linux 6.14+: per user, shared by all this user's "
			     "rings): raise ulimit -l or grant CAP_IPC_LOCK%s%s", strerror(-ret),
			     (unsigned long long)rl.rlim_cur,
			     *reason ? "; user memory was not used: " : "", reason);
	else
		hr_set_error("io_uring_setup failed: %s%s%s", strerror(-ret),
			     *reason ? "; user memory was not used: " : "", reason);
}

/*
 * A kernel-mapped ring from the caller's original parameters.  @err and
 * @reason say why user memory was not used (0/"" when by policy).
 */
int hr_kernel_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		   const struct io_uring_params *orig, int err, const char *reason)
{
	struct io_uring_params q = *orig;
	struct hr_ring_rec *rec;
	int ret;

	if (orig->flags & IORING_SETUP_REGISTERED_FD_ONLY) {
		/* The kernel's -EINVAL, with the kernel's reason. */
		hr_set_error("IORING_SETUP_REGISTERED_FD_ONLY needs the ring in user memory "
			     "(the kernel requires IORING_SETUP_NO_MMAP with it): no kernel-mapped "
			     "ring can have it%s%s", *reason ? "; user memory was not used: " : "",
			     reason);
		return -EINVAL;
	}
	rec = hr_ring_rec_new();
	if (!rec)
		return -ENOMEM;
	q.flags &= ~IORING_SETUP_NO_MMAP;
	ret = io_uring_queue_init_params(entries, ring, &q);
	if (ret) {
		kernel_ring_error(ret, err, reason);
		hr_ring_rec_free(rec);
		return ret;
	}
	rec->key = ring->sq.sqes;
	fill_kernel_info(ring, &q, &rec->info);
	if (*reason)
		hr_log(HUGERING_LOG_WARN, "ring of %u entries fell back to kernel-mapped memory: %s",
		       entries, reason);
	rec->info.fallback_errno = err;
	rec->info.fallback_reason = hr_reason_dup(reason);
	hr_registry_add(rec);
	*p = q;
	return 0;
}

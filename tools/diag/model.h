/* SPDX-License-Identifier: MIT */
/*
 * hugering-diag's model: everything the report says, and the checks with
 * their fixes.  Tool-internal (tools/diag/collect.c fills it), not part of
 * libhugering, so a new check or field changes no ABI.  Nothing in it has a
 * fixed cap: each list holds every item found and each text is whole, on
 * the heap; diag_free() releases it all.
 */
#ifndef HUGERING_DIAG_MODEL_H
#define HUGERING_DIAG_MODEL_H

#include <stddef.h>

#include <hugering.h>

#define DIAG_TRIAL	(1u << 0)	/* also allocate and create rings for real */

enum diag_status {
	DIAG_OK = 0,
	DIAG_WARN,
	DIAG_FAIL,
};

struct diag_size {
	struct hugering_pool pool;
	int nnodes;
	struct hugering_pool *nodes;	/* one per NUMA node whose pool could be read */
	int nmounts;
	char **mounts;			/* every hugetlbfs mount of this size */
	long long cgroup_max;		/* bytes; -1: no limit, or no hugetlb controller */
	long long cgroup_rsvd_max;	/* bytes; reservation limit, -1 likewise */
	long reservable;		/* pages buddyinfo says could still be reserved; -1 unknown */
	int pool_err;			/* 0, or -errno: the pool's counters could not be read,
					 * so pool and nodes are unknown (not zero) */
};

struct diag_ring {
	unsigned sq, cq;
	int err;			/* 0, or -errno from hugering_queue_init_opts */
	int mode;			/* enum hugering_mode */
	int fallback_errno;
	char *reason;			/* "" if none */
};

struct diag_trial {
	size_t page_size;
	int region_err;			/* 0: a contiguous region of one page was allocated */
	int contiguous;			/* enum hugering_contig */
	int proof;			/* enum hugering_proof */
	struct diag_ring rings[2];	/* the two shapes tried: 256/512 and 4096/65536 */
};

struct diag_block {
	char *name;
	int io_poll;			/* queue/io_poll: 1, 0, -1 unknown */
	int poll_queues;		/* NVMe: nvme.poll_queues; -1 not NVMe or unknown */
};

struct diag_check {
	char *id;
	int status;			/* enum diag_status */
	char *message;
	char *fix;			/* a command or action to copy; "" if none */
};

struct diag {
	struct hugering_kernel_caps caps;
	char *release;
	int io_uring_disabled;		/* kernel.io_uring_disabled; -1 unknown */
	int sqpoll;			/* this user can create SQPOLL rings */
	int iopoll;			/* IOPOLL rings can be created (per file: see README) */
	int preemptible;		/* 1 yes, 0 PREEMPT_NONE/VOLUNTARY, -1 unknown */
	int busy_poll;			/* net.core.busy_poll (us); -1 unknown */
	char *thp_enabled;		/* always / madvise / never, unknown, unavailable */
	unsigned long long memlock_soft, memlock_hard;	/* bytes; ~0ULL = unlimited */
	int memlock_err;		/* 0, or -errno: the limits could not be read (unknown) */
	int cap_ipc_lock;
	int pfn_visible;
	int nnodes;
	int *nodes;
	int nsizes;
	struct diag_size *sizes;
	int ntrials;
	struct diag_trial *trials;
	int nblocks;			/* disks (loop, ram and zram devices left out) */
	struct diag_block *blocks;
	int nchecks;
	struct diag_check *checks;
	int nomem;			/* collect.c's: an allocation failed on the way */
};

/*
 * Fill @d (its previous contents are not freed: diag_free() them first).
 * Files are read below HUGERING_SYSROOT when it is set; the kernel probe
 * and the trial (DIAG_TRIAL) are always live.  0, -EINVAL for bad
 * arguments, or -ENOMEM (then @d holds nothing to free).
 */
int diag_collect(struct diag *d, unsigned flags);
/* Release what diag_collect() allocated; @d is left zeroed.  NULL is fine. */
void diag_free(struct diag *d);
/* Does any check fail?  1 yes, 0 no, -EINVAL for NULL. */
int diag_failed(const struct diag *d);
/* "ok", "warn", "fail" (a static string). */
const char *diag_status_name(int status);

#endif

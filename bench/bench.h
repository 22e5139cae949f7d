/* SPDX-License-Identifier: MIT */
/*
 * hugering-bench: what one measurement cell is, shared by the runner
 * (hugering-bench.c) and the reports (report.h).
 */
#ifndef HUGERING_BENCH_H
#define HUGERING_BENCH_H

#include <stdbool.h>
#include <stddef.h>

enum mode_kind {
	KIND_KERNEL,		/* io_uring_queue_init_params, kernel-mapped */
	KIND_LIBURING_NOMMAP,	/* NO_MMAP, liburing allocates */
	KIND_USER_4K,		/* io_uring_queue_init_mem on fresh base pages */
	KIND_HUGERING,		/* the factory, default arena */
	KIND_HUGERING_1G,	/* the factory, an arena of 1 GiB pages */
	KIND_FLOOR,		/* io_uring_setup(1) + close */
	KIND_HUGERING_AUTO,	/* the factory, auto policy, default arena (empty-pool phase) */
	KIND_HUGERING_PREP,	/* the factory, an arena with HUGERING_ARENA_PREPARE */
	KIND_HUGERING_POOL,	/* the factory with HUGERING_INIT_POOLED: live rings reused */
};

struct mode_def {
	const char *name;
	enum mode_kind kind;
	bool sqpoll;		/* add IORING_SETUP_SQPOLL (drops DEFER_TASKRUN) */
	bool by_default;
};

/* The kernel-mapped mode that @m is compared with (SQPOLL with SQPOLL). */
static inline bool is_peer_of(const struct mode_def *k, const struct mode_def *m)
{
	return k->kind == KIND_KERNEL && k->sqpoll == m->sqpoll;
}

struct shape_def {
	const char *name;
	unsigned sq, cq;
	unsigned flags;		/* SQE128 / CQE32 on top of the run's flags */
};

#define NBATCH 3
/* NOPs: warm rings per mode used in turn, and rounds of slices (--quick: fewer). */
#define NOP_COPIES 3
static inline int nop_rounds(bool quick)
{
	return quick ? 9 : 30;
}
#define MAX_ROUNDS 32
static const unsigned batches[NBATCH] = { 1, 32, 256 };

/* One mode on one shape.  Plain data: it crosses a pipe from the child. */
struct cell {
	int mode, shape;	/* indexes into the tables */
	unsigned sq, cq, flags;	/* as set up */
	long cycles;		/* create+destroy cycles that completed */
	long cap;		/* cycles asked for (churn cap) */
	double cd_median_us, cd_p99_us, cycles_per_s;
	double cpu_us;		/* process CPU (all threads) per cycle; < 0: not measured */
	double nop_mops[NBATCH];	/* < 0: not measured */
	double sweep_mops;		/* < 0: not measured */
	/*
	 * Against the kernel-mapped ring: median over rounds of this ring's
	 * slice / the kernel ring's slice of the same round; [NBATCH] = sweep.
	 */
	double nop_x[NBATCH + 1];
	/*
	 * create+destroy runs in rounds that take turns with the other modes;
	 * the median of each round, and kernel's / this mode's over rounds.
	 */
	double cd_rounds[MAX_ROUNDS];
	int nrounds;
	double cd_x;		/* < 0: not paired (run alone) */
	double dtlb_per_op;		/* < 0: no PMU */
	size_t ring_bytes;
	long hugepages_used;	/* pool pages taken during the churn, still held after it */
	char error[200];	/* empty: none */
	/*
	 * KIND_HUGERING_AUTO: the mode and fallback errno of its rings (of the
	 * first ring that was not kernel-mapped for ENOMEM, if any), how many
	 * were not, and the default arena's allocations that waited for the
	 * pool (-1: not known).
	 */
	int ring_mode, fallback_errno;
	long rings_unexpected;
	long long pool_waits;
	char fallback_reason[192];
};

/*
 * The empty-pool phase, one shape: while another process holds every
 * usable page of the default size, the drop-in (auto policy) falls back to
 * a kernel-mapped ring; its create+destroy takes turns with liburing's.
 */
struct empty_row {
	struct cell kernel, hugering;
	double cost_x;		/* median over rounds of hugering's / kernel's; < 0: none */
	long pages_held;	/* pool pages the other process held */
	long usable_left;	/* usable pages left in the pool meanwhile (0: empty) */
	bool ok;		/* every ring kernel-mapped for ENOMEM, no wait, no error */
	char error[200];	/* empty: none */
};

/*
 * The big-map phase (--big-map, bigmap.c): creation in this process as it
 * is, then with a 6 GiB heap of many VMAs mapped; median ms of each.
 */
struct bigmap_row {
	char what[32];
	double small_ms, big_ms;
	double ratio;		/* big / small; < 0: not measured */
};

struct bigmap {
	bool ran;
	struct bigmap_row rows[2];	/* a 2 MiB region, a 32768/65536 ring */
	size_t heap_bytes;
	bool heap_low;		/* below the library's mappings, as intended */
	long vmas_small, vmas_big;
	int ring_mode;		/* enum hugering_mode of the rings */
	char error[200];	/* empty: none */
};

void bench_bigmap(struct bigmap *b);

#endif

/* SPDX-License-Identifier: MIT */
/*
 * The arena: dense packing, safe recycling (the kernel writes a closed
 * ring's memory once more 12-19 ms after close), churn on a small pool,
 * threads, fork, destroy.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(arena, .init = th_init, .fini = th_fini, .timeout = 300);

static int ring_in(struct hugering_arena *a, unsigned entries, unsigned cq, unsigned flags,
		   struct io_uring *ring)
{
	struct io_uring_params p = { .flags = flags };
	struct hugering_init_opts o = { .arena = a, .numa_node = -1,
					.policy = HUGERING_POLICY_NOMMAP };

	if (cq) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
	}
	return hugering_queue_init_opts(entries, ring, &p, &o);
}

/*
 * Create, use, destroy, create the same shape at once, wait 40 ms (past the
 * kernel's late write), then 3 x SQ-size NOPs must complete exactly.
 */
static void reuse_right_after_destroy(unsigned entries, unsigned cq, unsigned flags,
				      bool neighbour)
{
	struct hugering_arena *a = th_new_arena();
	struct io_uring ring, keep;
	int ret;

	th_need_pool(SZ_2M, 8);
	if (neighbour)
		cr_assert_eq(ring_in(a, 64, 0, 0, &keep), 0);
	for (int i = 0; i < 15; i++) {
		cr_assert_eq(ring_in(a, entries, cq, flags, &ring), 0, "%s", hugering_last_error());
		th_nops(&ring, ring.sq.ring_entries);
		hugering_queue_exit(&ring);
		ret = ring_in(a, entries, cq, flags, &ring);
		cr_assert_eq(ret, 0, "round %d: %s", i, hugering_last_error());
		th_sleep_ms(40);
		th_nops(&ring, 3 * ring.sq.ring_entries);
		if (neighbour)
			th_nops(&keep, 64);
		hugering_queue_exit(&ring);
	}
	if (neighbour)
		hugering_queue_exit(&keep);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

Test(arena, reuse_after_destroy_64)          { reuse_right_after_destroy(64, 0, 0, false); }
Test(arena, reuse_after_destroy_256_512)     { reuse_right_after_destroy(256, 512, 0, false); }
Test(arena, reuse_after_destroy_4096_65536)  { reuse_right_after_destroy(4096, 65536, 0, false); }
Test(arena, reuse_after_destroy_next_to_live_ring_64)
{
	reuse_right_after_destroy(64, 0, 0, true);
}
Test(arena, reuse_after_destroy_next_to_live_ring_256_512)
{
	reuse_right_after_destroy(256, 512, 0, true);
}
Test(arena, reuse_after_destroy_defer_taskrun_resized)
{
	reuse_right_after_destroy(2048, 8192,
				  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, true);
}

/* Resized away (6.13+, DEFER_TASKRUN): the very same slot is reused at once. */
Test(arena, resize_recycles_the_same_slot)
{
	unsigned flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	struct hugering_arena *a = th_new_arena();
	struct hugering_ring_info i1, i2;
	struct hugering_arena_stats st;
	struct io_uring ring;
	size_t waiting;

	th_need_pool(SZ_2M, 2);
	/* small rings: quarantine is cheaper (README), resize from 64 KiB up */
	cr_assert_eq(ring_in(a, 64, 128, flags, &ring), 0);
	cr_assert_eq(hugering_ring_info(&ring, &i1), 0);
	cr_assert_eq(i1.recycle, HUGERING_RECYCLE_QUARANTINE);
	hugering_queue_exit(&ring);
	cr_assert_eq(ring_in(a, 2048, 8192, flags, &ring), 0);
	cr_assert_eq(hugering_ring_info(&ring, &i1), 0);
	cr_assert_eq(i1.recycle, HUGERING_RECYCLE_RESIZE);
	th_nops(&ring, 4096);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	waiting = st.bytes_waiting;	/* the small ring's quarantined slot */
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.resize_recycled, 1);
	cr_assert_eq(st.bytes_waiting, waiting, "a resized ring leaves nothing for the kernel to write");
	cr_assert_eq(ring_in(a, 2048, 8192, flags, &ring), 0);
	cr_assert_eq(hugering_ring_info(&ring, &i2), 0);
	cr_assert_eq(i2.mem, i1.mem, "the clean slot is reused");
	th_sleep_ms(40);
	th_nops(&ring, 3 * 2048);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

static struct hugering_arena *arena_with(unsigned flags)
{
	struct hugering_arena_opts o = { .numa_node = -1, .flags = flags };
	struct hugering_arena *a;

	cr_assert_eq(hugering_arena_create(&o, &a), 0);
	return a;
}

/*
 * A ring reused in clean memory (resize-recycled) starts with a zeroed
 * header: heads, tails and flags of the earlier ring are gone.  With
 * HUGERING_ARENA_ZERO_RECYCLED its SQEs are zero too.  Returns whether the
 * reused SQEs were all zero.
 */
static bool reuse_clean(unsigned entries, unsigned cq, unsigned arena_flags)
{
	unsigned flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	struct hugering_arena *a = arena_with(arena_flags);
	struct hugering_ring_info i1, i2;
	struct io_uring ring;
	bool zero;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(ring_in(a, entries, cq, flags, &ring), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &i1), 0);
	cr_assert_eq(i1.recycle, HUGERING_RECYCLE_RESIZE);
	th_nops(&ring, cq + entries / 2);	/* tails well past zero, wrapped */
	hugering_queue_exit(&ring);
	cr_assert_eq(ring_in(a, entries, cq, flags, &ring), 0);
	cr_assert_eq(hugering_ring_info(&ring, &i2), 0);
	cr_assert_eq(i2.mem, i1.mem, "the clean memory is reused");
	cr_assert_eq(*ring.sq.khead, 0);
	cr_assert_eq(*ring.sq.ktail, 0);
	cr_assert_eq(*ring.cq.khead, 0);
	cr_assert_eq(*ring.cq.ktail, 0);
	cr_assert_eq(*ring.sq.kflags, 0);
	cr_assert_eq(*ring.cq.koverflow, 0);
	zero = th_all_zero(ring.sq.sqes, (size_t)ring.sq.ring_entries * 64);
	th_nops(&ring, 3 * entries);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
	return zero;
}

Test(arena, clean_reuse_zeroes_the_header)
{
	cr_assert_not(reuse_clean(2048, 8192, 0),
		      "SQEs of the earlier ring were expected to stay (no full memset)");
}

Test(arena, clean_reuse_zero_recycled_zeroes_everything)
{
	cr_assert(reuse_clean(2048, 8192, HUGERING_ARENA_ZERO_RECYCLED), "stale SQE bytes");
}

/* A ring larger than a page, resized away: its region is kept and reused. */
Test(arena, clean_dedicated_region_is_a_spare)
{
	unsigned flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	struct hugering_arena *a = th_new_arena();
	struct hugering_arena_stats st;
	struct io_uring ring;

	cr_assert_not(reuse_clean(32768, 65536, 0));
	th_need_pool(SZ_2M, 6);
	cr_assert_eq(ring_in(a, 32768, 65536, flags, &ring), 0);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.resize_recycled, 1);
	cr_assert_eq(st.rings_live, 0);
	cr_assert_eq(st.bytes_in_use, 0);
	cr_assert_gt(st.pages_held, 1, "the spare region is held");
	cr_assert_eq(st.bytes_free, (size_t)st.pages_held * SZ_2M);
	/* A different shape cannot use the spare: a new region. */
	cr_assert_eq(ring_in(a, 16384, 65536, flags, &ring), 0);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_gt(st.bytes_in_use, 0);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* A setup the kernel refused after pinning: that slot is never reused either. */
Test(arena, failed_setup_slot_is_quarantined)
{
	struct hugering_arena *a = th_new_arena();
	/* ATTACH_WQ to a non-io_uring fd fails after the rings were pinned */
	struct io_uring_params bad = { .flags = IORING_SETUP_SQPOLL | IORING_SETUP_ATTACH_WQ };
	struct hugering_init_opts o = { .arena = a, .numa_node = -1,
					.policy = HUGERING_POLICY_NOMMAP };
	struct hugering_arena_stats st;
	struct io_uring ring;

	int p[2];

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(pipe(p), 0);
	bad.wq_fd = (unsigned)p[0];
	cr_assert_lt(hugering_queue_init_opts(64, &ring, &bad, &o), 0);
	close(p[0]);
	close(p[1]);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_gt(st.bytes_waiting, 0);
	cr_assert_eq(ring_in(a, 64, 0, 0, &ring), 0);
	th_sleep_ms(40);
	th_nops(&ring, 3 * 64);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* Without resize, the slot waits in quarantine and is not handed out again. */
Test(arena, quarantine_never_reuses_a_dirty_slot)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_ring_info i1, i2;
	struct hugering_arena_stats st;
	struct io_uring ring, keep;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(ring_in(a, 64, 0, 0, &keep), 0);
	cr_assert_eq(ring_in(a, 256, 512, 0, &ring), 0);
	cr_assert_eq(hugering_ring_info(&ring, &i1), 0);
	cr_assert_eq(i1.recycle, HUGERING_RECYCLE_QUARANTINE);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.bytes_waiting, i1.mem_bytes);
	cr_assert_eq(ring_in(a, 256, 512, 0, &ring), 0);
	cr_assert_eq(hugering_ring_info(&ring, &i2), 0);
	cr_assert((char *)i2.mem >= (char *)i1.mem + i1.mem_bytes ||
		  (char *)i2.mem + i2.mem_bytes <= (char *)i1.mem, "dirty slot reused");
	cr_assert_eq(i2.page_addr, i1.page_addr, "same page, fresh room");
	hugering_queue_exit(&ring);
	hugering_queue_exit(&keep);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* 256 live 64-entry rings fit in at most 8 hugepages, and all work. */
Test(arena, dense_packing_256_rings, .timeout = 120)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_arena_stats st;
	struct io_uring *rings = calloc(256, sizeof(*rings));

	th_need_pool(SZ_2M, 10);
	cr_assert_not_null(rings);
	for (int i = 0; i < 256; i++)
		cr_assert_eq(ring_in(a, 64, 0, 0, &rings[i]), 0, "ring %d: %s", i,
			     hugering_last_error());
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.rings_live, 256);
	cr_assert_leq(st.pages_held, 8, "256 rings hold %u pages", st.pages_held);
	cr_log_info("256 64-entry rings in %u hugepage(s)", st.pages_held);
	for (int i = 0; i < 256; i++)
		th_nops(&rings[i], 128);
	for (int i = 0; i < 256; i++)
		hugering_queue_exit(&rings[i]);
	free(rings);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* Leave exactly @n usable pages of the pool. */
static void pool_of(long n, struct th_hog *hog)
{
	long usable;

	th_exhaust(SZ_2M, hog);
	usable = 0;
	/* give back all but... : punch pages out of the hog until n are usable */
	for (size_t off = 0; usable < n && off < hog->len; off += SZ_2M) {
		cr_assert_eq(fallocate(hog->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)off, SZ_2M), 0);
		usable++;
	}
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages") -
		     th_pool_field(SZ_2M, "resv_hugepages"), n);
}

static void churn(long cycles)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_arena_stats st;
	struct th_hog hog;
	long fallbacks = 0;

	th_need_pool(SZ_2M, 64);
	pool_of(64, &hog);
	for (long i = 0; i < cycles; i++) {
		struct io_uring ring;
		int ret = ring_in(a, 256, 512, 0, &ring);

		cr_assert_eq(ret, 0, "cycle %ld: %s: %s", i, strerror(-ret), hugering_last_error());
		hugering_queue_exit(&ring);
	}
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_log_info("%ld cycles: %llu pages retired, %llu pool waits, %u pages held", cycles,
		    (unsigned long long)st.pages_retired, (unsigned long long)st.pool_waits,
		    st.pages_held);
	cr_assert_eq(fallbacks, 0);
	cr_assert_eq(hugering_arena_destroy(a), 0);
	th_release(&hog);
}

Test(arena, churn_20000_cycles_on_64_page_pool, .timeout = 600)
{
	churn(20000);
}

/* Fast enough for the default suite; HUGERING_LONG_CYCLES makes it longer (make check-long). */
Test(arena, churn_100000_cycles_on_64_page_pool, .timeout = 3600)
{
	const char *env = getenv("HUGERING_LONG_CYCLES");

	churn(env ? atol(env) : 100000);
}

/* 4 threads x 1,500 create/NOP/destroy cycles of mixed sizes. */
struct worker {
	struct hugering_arena *a;
	int id;
	long failed, corrupt;
	char err[256];
};

static void *worker(void *arg)
{
	static const unsigned shapes[][2] = { { 8, 0 }, { 64, 0 }, { 256, 512 }, { 1024, 4096 },
					      { 4096, 65536 } };
	struct worker *w = arg;
	unsigned seed = (unsigned)w->id * 2654435761u;

	for (int i = 0; i < 1500; i++) {
		const unsigned *s = shapes[rand_r(&seed) % 5];
		struct io_uring ring;
		unsigned n;

		if (ring_in(w->a, s[0], s[1], 0, &ring)) {
			if (!w->failed++)
				snprintf(w->err, sizeof(w->err), "%s", hugering_last_error());
			continue;
		}
		n = ring.sq.ring_entries;
		for (unsigned k = 0; k < n; k++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

			io_uring_prep_nop(sqe);
			sqe->user_data = ((uint64_t)w->id << 32) | k;
		}
		if (io_uring_submit_and_wait(&ring, n) != (int)n)
			w->corrupt++;
		for (unsigned k = 0; k < n; k++) {
			struct io_uring_cqe *cqe;

			if (io_uring_peek_cqe(&ring, &cqe) ||
			    cqe->user_data != (((uint64_t)w->id << 32) | k)) {
				w->corrupt++;
				break;
			}
			io_uring_cqe_seen(&ring, cqe);
		}
		hugering_queue_exit(&ring);
	}
	return NULL;
}

Test(arena, four_threads_mixed_churn, .timeout = 600)
{
	struct hugering_arena *a = th_new_arena();
	struct worker w[4];
	pthread_t t[4];

	th_need_pool(SZ_2M, 32);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ .a = a, .id = i + 1 };
		cr_assert_eq(pthread_create(&t[i], NULL, worker, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].failed, 0, "thread %d: %ld failures, first: %s", i, w[i].failed,
			     w[i].err);
		cr_assert_eq(w[i].corrupt, 0, "thread %d: corrupted completions", i);
	}
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* Destroy returns every page (within a bounded wait) and closes every fd. */
Test(arena, destroy_returns_pages_and_fds)
{
	long free0;
	int fds;
	struct hugering_arena *a;
	struct io_uring ring[40];

	th_need_pool(SZ_2M, 16);
	th_wait_pool(SZ_2M, th_pool_field(SZ_2M, "nr_hugepages"), 500);
	free0 = th_pool_field(SZ_2M, "free_hugepages");
	fds = th_fd_count();
	a = th_new_arena();
	for (int i = 0; i < 40; i++)
		cr_assert_eq(ring_in(a, i % 2 ? 1024 : 64, i % 2 ? 4096 : 0, 0, &ring[i]), 0,
			     "%s", hugering_last_error());
	cr_assert_lt(th_pool_field(SZ_2M, "free_hugepages"), free0);
	cr_assert_eq(hugering_arena_destroy(a), -EBUSY, "rings still live");
	for (int i = 0; i < 40; i++)
		hugering_queue_exit(&ring[i]);
	cr_assert_eq(hugering_arena_destroy(a), 0);
	cr_assert_eq(th_fd_count(), fds, "fd leaked");
	cr_assert(th_wait_pool(SZ_2M, free0, 1000), "pool back to %ld within 1 s: %ld", free0,
		  th_pool_field(SZ_2M, "free_hugepages") - th_pool_field(SZ_2M, "resv_hugepages"));
}

/* Rings bigger than a page get their own region; info says where a ring lives. */
Test(arena, info_reports_where_rings_live)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_ring_info small, big;
	struct io_uring r1, r2;
	/*
	 * Any ring over 2 MiB will do; liburing before 2.9 cannot place SQE128
	 * in user memory (ring/s32k_64k_sqe128 says so): CQE32 is as big.
	 */
	unsigned big_flags = th_liburing_cannot(IORING_SETUP_SQE128) ? IORING_SETUP_CQE32
								       : IORING_SETUP_SQE128;

	th_need_pool(SZ_2M, 6);
	cr_assert_eq(ring_in(a, 64, 0, 0, &r1), 0);
	cr_assert_eq(ring_in(a, 32768, 65536, big_flags, &r2), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&r1, &small), 0);
	cr_assert_eq(hugering_ring_info(&r2, &big), 0);
	cr_assert_eq((char *)small.page_addr + small.page_offset, (char *)small.mem);
	cr_assert_eq(small.page_size, SZ_2M);
	cr_assert_eq((uintptr_t)small.page_addr % SZ_2M, 0);
	cr_assert_eq(big.recycle, HUGERING_RECYCLE_DEDICATED);
	cr_assert_gt(big.mem_bytes, SZ_2M);
	th_nops(&r2, 2 * 65536);
	hugering_queue_exit(&r1);
	hugering_queue_exit(&r2);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

Test(arena, bad_options)
{
	struct hugering_arena_opts o = { .numa_node = -1 };
	struct hugering_arena *a;

	cr_assert_eq(hugering_arena_create(NULL, &a), -EINVAL);
	cr_assert_eq(hugering_arena_create(&o, NULL), -EINVAL);
	o.page_size = 3 * MiB;
	cr_assert_eq(hugering_arena_create(&o, &a), -EINVAL);
	o = (struct hugering_arena_opts){ .numa_node = -1, .flags = 1u << 9 };
	cr_assert_eq(hugering_arena_create(&o, &a), -EINVAL);
	o = (struct hugering_arena_opts){ .numa_node = 999 };
	cr_assert_eq(hugering_arena_create(&o, &a), -EINVAL);
	o = (struct hugering_arena_opts){ .numa_node = -1, .wait_ms = -2 };
	cr_assert_eq(hugering_arena_create(&o, &a), -EINVAL);
	cr_assert_eq(hugering_arena_stats(NULL, NULL), -EINVAL);
	cr_assert_eq(hugering_arena_destroy(NULL), 0);
}

/* max_bytes: the limit is an error (nommap) or a reported fallback (auto). */
Test(arena, byte_limit)
{
	struct hugering_arena_opts ao = { .numa_node = -1, .max_bytes = SZ_2M };
	struct hugering_init_opts io = { .numa_node = -1 };
	struct hugering_ring_info info;
	struct hugering_arena *a;
	struct io_uring r1, r2;

	th_need_pool(SZ_2M, 3);
	cr_assert_eq(hugering_arena_create(&ao, &a), 0);
	io.arena = a;
	cr_assert_eq(ring_in(a, 4096, 65536, 0, &r1), 0);
	cr_assert_eq(ring_in(a, 4096, 65536, 0, &r2), -ENOSPC);
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 65536 };

	cr_assert_eq(hugering_queue_init_opts(4096, &r2, &p, &io), 0);
	cr_assert_eq(hugering_ring_info(&r2, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_KERNEL);
	cr_assert_eq(info.fallback_errno, ENOSPC);
	hugering_queue_exit(&r2);
	hugering_queue_exit(&r1);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/*
 * Fork: the child uses inherited rings, makes its own from a fresh default
 * arena (never from pages it shares with the parent), and cannot use an
 * inherited explicit arena.
 */
Test(arena, fork_child_gets_its_own_arena)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_arena *parent_default = hugering_default_arena();
	struct io_uring ring;
	pid_t pid;
	int st;

	th_need_pool(SZ_2M, 6);
	cr_assert_eq(ring_in(a, 64, 0, 0, &ring), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		struct io_uring mine, bad;
		struct io_uring_params p = { 0 };

		if (hugering_default_arena() == parent_default)
			_exit(2);
		if (ring_in(a, 64, 0, 0, &bad) != -ECHILD)
			_exit(3);
		if (hugering_queue_init_params(64, &mine, &p))
			_exit(4);
		hugering_queue_exit(&mine);
		/* the inherited ring works here, and exiting it leaves the parent's arena alone */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct io_uring_cqe *cqe;

		io_uring_prep_nop(sqe);
		if (io_uring_submit_and_wait(&ring, 1) != 1 || io_uring_peek_cqe(&ring, &cqe))
			_exit(5);
		io_uring_cqe_seen(&ring, cqe);
		hugering_queue_exit(&ring);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "child step %d failed", WEXITSTATUS(st));
	/* the child's NOP went through the shared ring memory */
	cr_assert_eq(*ring.cq.khead, 1);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/*
 * The resize threshold is a ring size, not a fraction of the page: on a
 * 1 GiB page a 1.3 MiB DEFER_TASKRUN ring is resized away and its slot
 * reused, not quarantined until ~780 rings later a whole 1 GiB page stalls.
 */
Test(arena, resize_threshold_is_bytes_on_1g_pages)
{
	unsigned flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	struct hugering_arena_opts o = { .page_size = SZ_1G, .numa_node = -1 };
	struct hugering_ring_info i1, i2;
	struct hugering_arena *a;
	struct io_uring ring;

	th_need_pool(SZ_1G, 1);
	cr_assert_eq(hugering_arena_create(&o, &a), 0);
	cr_assert_eq(ring_in(a, 4096, 65536, flags, &ring), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &i1), 0);
	cr_assert_eq(i1.page_size, SZ_1G);
	cr_assert_eq(i1.recycle, HUGERING_RECYCLE_RESIZE);
	hugering_queue_exit(&ring);
	cr_assert_eq(ring_in(a, 4096, 65536, flags, &ring), 0);
	cr_assert_eq(hugering_ring_info(&ring, &i2), 0);
	cr_assert_eq(i2.mem, i1.mem, "the clean slot is reused");
	th_nops(&ring, 3 * 4096);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

static unsigned pages_held(struct hugering_arena *a)
{
	struct hugering_arena_stats st;

	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	return st.pages_held;
}

/*
 * Trim gives back the pages no live ring uses (issue 16, defect 15: the
 * default arena kept up to 13 hugepages after every ring was gone).  Rings
 * of ~800 KiB, two per 2 MiB page: live + dead on page 1, dead on page 2.
 * Page 2 keeps room for its ring's shape, so exit leaves it held; trim
 * gives it back, keeps page 1 (its live ring keeps working), and the pool
 * gets the page once the kernel has torn the dead ring down.
 */
Test(arena, trim_gives_back_pages_without_live_rings)
{
	struct hugering_arena_opts o = { .page_size = SZ_2M };
	struct io_uring live, dead1, dead2;
	struct hugering_arena *a;
	long usable0;

	th_need_pool(SZ_2M, 4);
	th_settle_pool(SZ_2M);
	usable0 = th_pool_field(SZ_2M, "free_hugepages") - th_pool_field(SZ_2M, "resv_hugepages");
	cr_assert_eq(hugering_arena_create(&o, &a), 0);
	cr_assert_eq(ring_in(a, 8192, 0, 0, &live), 0);
	cr_assert_eq(ring_in(a, 8192, 0, 0, &dead1), 0);
	cr_assert_eq(ring_in(a, 8192, 0, 0, &dead2), 0);
	cr_assert_eq(pages_held(a), 2);
	hugering_queue_exit(&dead1);
	hugering_queue_exit(&dead2);
	cr_assert_eq(pages_held(a), 2, "exit keeps a page with room for its shape");
	cr_assert_eq(hugering_arena_trim(a), 1);
	cr_assert_eq(pages_held(a), 1, "only the live ring's page is held");
	th_nops(&live, 64);
	cr_assert(th_wait_pool(SZ_2M, usable0 - 1, 2000), "the pool got the trimmed page back");
	cr_assert_eq(hugering_arena_trim(a), 0, "nothing left to trim");
	hugering_queue_exit(&live);
	cr_assert_eq(hugering_arena_destroy(a), 0);
	cr_assert_eq(hugering_arena_trim(NULL), -EINVAL);
}

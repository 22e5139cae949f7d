/* SPDX-License-Identifier: MIT */
/*
 * HUGERING_ARENA_PREPARE: the background worker faults in the next fresh
 * page while rings churn.  A ready page must be as safe as one faulted in by
 * the caller (never a frame a dying ring may write) for every kind of ring
 * (plain, SQPOLL, DEFER_TASKRUN, IOPOLL, CQE32/SQE128), a long churn must
 * stay in hugepages, the thread must exist only while there is work, and an
 * arena must be destroyable, trimmable and forkable while the worker runs
 * for it.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(prepare, .init = th_init, .fini = th_fini, .timeout = 300);

static struct hugering_arena *arena_with(unsigned flags, size_t max_bytes)
{
	struct hugering_arena_opts o = { .flags = flags, .max_bytes = max_bytes };
	struct hugering_arena *a;

	cr_assert_eq(hugering_arena_create(&o, &a), 0, "%s", hugering_last_error());
	return a;
}

/*
 * A ring that fills most of a 2 MiB page (1.3-1.5 MiB; CQE32: half the CQEs,
 * the same bytes): every exit retires it.
 */
static int big_ring(struct hugering_arena *a, unsigned flags, struct io_uring *ring)
{
	struct io_uring_params p = {
		.flags = IORING_SETUP_CQSIZE | flags,
		.cq_entries = (flags & IORING_SETUP_CQE32) ? 32768 : 65536,
	};
	struct hugering_init_opts o = { .arena = a, .policy = HUGERING_POLICY_NOMMAP };

	return hugering_queue_init_opts(4096, ring, &p, &o);
}

static int worker_threads(void)
{
	return th_threads_named("hugering-bg");
}

static struct hugering_arena_stats stats_of(struct hugering_arena *a)
{
	struct hugering_arena_stats st;

	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	return st;
}

static void cycle(struct hugering_arena *a, unsigned flags)
{
	struct io_uring ring;

	cr_assert_eq(big_ring(a, flags, &ring), 0, "%s", hugering_last_error());
	th_nops(&ring, 64);
	hugering_queue_exit(&ring);
}

#define DEFER (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)

static struct hugering_ring_info info_of(const struct io_uring *ring)
{
	struct hugering_ring_info info;

	cr_assert_eq(hugering_ring_info(ring, &info), 0);
	return info;
}

/* The next ring, in a hugepage with the flags asked for. */
static void next_ring(struct hugering_arena *a, unsigned flags, struct io_uring *ring, int round)
{
	struct hugering_ring_info info;

	cr_assert_eq(big_ring(a, flags, ring), 0, "round %d: %s", round, hugering_last_error());
	info = info_of(ring);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE);
	cr_assert_eq(info.setup_flags & flags, flags, "flags 0x%x asked, 0x%x set", flags,
		     info.setup_flags);
}

/* Skip where this kernel or liburing cannot make such a ring in user memory. */
static void need_shape(struct hugering_arena *a, unsigned flags)
{
	const char *cannot = th_liburing_cannot(flags);
	struct io_uring ring;
	int ret;

	if (cannot)
		cr_skip_test("%s", cannot);
	ret = big_ring(a, flags, &ring);
	if (ret == -EINVAL && (flags & IORING_SETUP_IOPOLL))
		cr_skip_test("this kernel refuses IOPOLL rings: %s", hugering_last_error());
	cr_assert_eq(ret, 0, "%s", hugering_last_error());
	hugering_queue_exit(&ring);
}

/*
 * The witness: destroy a ring mid-use, take the next ring at once (from a
 * ready page, or from the very slot a resize freed), wait past the dying
 * ring's late writes (40 ms), and every NOP of 3 x SQ size must complete
 * exactly once: a write by the previous ring (its SQ head, its CQ tail)
 * would lose or repeat completions.  @arena_flags are added to PREPARE.
 * Returns how many rounds got the previous ring's slot back.
 */
static int ready_pages_are_safe(unsigned arena_flags, unsigned flags)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE | arena_flags, 0);
	struct hugering_ring_info i0, i1;
	struct io_uring ring;
	int same = 0;

	th_need_pool(SZ_2M, 8);
	need_shape(a, flags);
	for (int i = 0; i < 15; i++) {
		next_ring(a, flags, &ring, i);
		i0 = info_of(&ring);
		th_nops(&ring, ring.sq.ring_entries);
		hugering_queue_exit(&ring);
		th_sleep_ms(5);	/* room for the worker to have a page ready */
		next_ring(a, flags, &ring, i);
		i1 = info_of(&ring);
		same += i1.page_addr == i0.page_addr && i1.page_offset == i0.page_offset;
		th_sleep_ms(40);
		th_nops(&ring, 3 * ring.sq.ring_entries);
		hugering_queue_exit(&ring);
	}
	cr_log_info("flags 0x%x: %d of 15 rings in their predecessor's slot; %llu ready pages "
		    "used, %llu resize-recycled", flags, same,
		    (unsigned long long)stats_of(a).prepared_used,
		    (unsigned long long)stats_of(a).resize_recycled);
	if (!stats_of(a).resize_recycled)
		cr_assert_gt(stats_of(a).prepared_used, 0, "no ring ever took a ready page");
	cr_assert_eq(hugering_arena_destroy(a), 0);
	return same;
}

Test(prepare, ready_pages_are_safe_plain)  { ready_pages_are_safe(0, 0); }
Test(prepare, ready_pages_are_safe_sqpoll) { ready_pages_are_safe(0, IORING_SETUP_SQPOLL); }
Test(prepare, ready_pages_are_safe_iopoll) { ready_pages_are_safe(0, IORING_SETUP_IOPOLL); }
Test(prepare, ready_pages_are_safe_cqe32)  { ready_pages_are_safe(0, IORING_SETUP_CQE32); }
Test(prepare, ready_pages_are_safe_sqe128) { ready_pages_are_safe(0, IORING_SETUP_SQE128); }
Test(prepare, ready_pages_are_safe_sqe128_cqe32)
{
	ready_pages_are_safe(0, IORING_SETUP_SQE128 | IORING_SETUP_CQE32);
}

/* DEFER_TASKRUN rings quarantined (no resize recycling): ready pages, as for the others. */
Test(prepare, ready_pages_are_safe_defer_taskrun)
{
	ready_pages_are_safe(HUGERING_ARENA_NO_RESIZE, DEFER);
}

/*
 * DEFER_TASKRUN rings recycled by resize (6.13+): the next ring gets the
 * very slot its predecessor had, in the same page, at once.
 */
Test(prepare, resized_slots_are_safe_defer_taskrun)
{
	struct hugering_kernel_caps caps;
	int same;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	same = ready_pages_are_safe(0, DEFER);
	if (caps.resize)
		cr_assert_eq(same, 15, "only %d of 15 rings reused the resized-away slot", same);
}

/*
 * Churn: create + destroy with a PREPARE arena and the automatic policy
 * (falling back to a kernel-mapped ring is allowed, and counted): at most
 * 1% of the rings may leave hugepages.  256/512 rings (about 70 a page):
 * a page retires, and a ready one is taken, every ~70 cycles; unprivileged,
 * the dying rings' RLIMIT_MEMLOCK charge stays small.  10^5 cycles in the
 * suite, HUGERING_PREPARE_CHURN_CYCLES for more (make check-long).
 */
static void churn(long cycles)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);
	struct hugering_init_opts o = { .arena = a, .policy = HUGERING_POLICY_AUTO };
	struct hugering_arena_stats st;
	long fallbacks = 0;
	int first = 0;

	th_need_pool(SZ_2M, 64);
	for (long i = 0; i < cycles; i++) {
		struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 512 };
		struct hugering_ring_info info;
		struct io_uring ring;
		int ret = hugering_queue_init_opts(256, &ring, &p, &o);

		cr_assert_eq(ret, 0, "cycle %ld: %s: %s", i, strerror(-ret), hugering_last_error());
		info = info_of(&ring);
		if (info.mode != HUGERING_MODE_NOMMAP_HUGE && !fallbacks++)
			first = info.fallback_errno;
		hugering_queue_exit(&ring);
	}
	st = stats_of(a);
	cr_log_info("%ld cycles: %ld fallbacks (first: %s), %llu pages retired, %llu prepared, "
		    "%llu ready pages used, %llu pool waits", cycles, fallbacks,
		    first ? strerrorname_np(first) : "none", (unsigned long long)st.pages_retired,
		    (unsigned long long)st.pages_prepared, (unsigned long long)st.prepared_used,
		    (unsigned long long)st.pool_waits);
	cr_assert_leq(fallbacks * 100, cycles, "%ld of %ld rings fell back (first: %s)",
		      fallbacks, cycles, first ? strerrorname_np(first) : "?");
	cr_assert_gt(st.prepared_used, 0, "no ring ever took a ready page");
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

Test(prepare, churn_100000_cycles, .timeout = 3600)
{
	const char *env = getenv("HUGERING_PREPARE_CHURN_CYCLES");

	churn(env ? atol(env) : 100000);
}

/* Off by default: no thread, nothing prepared. */
Test(prepare, off_by_default)
{
	struct hugering_arena *a = arena_with(0, 0);

	th_need_pool(SZ_2M, 4);
	for (int i = 0; i < 20; i++) {
		cycle(a, 0);
		cr_assert_eq(worker_threads(), 0, "a worker thread without HUGERING_ARENA_PREPARE");
	}
	cr_assert_eq(stats_of(a).pages_prepared, 0);
	cr_assert_gt(stats_of(a).pages_retired, 0);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* The thread starts with the work and ends about 1 s after it. */
Test(prepare, thread_comes_and_goes)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);
	int seen = 0;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(worker_threads(), 0);
	for (int i = 0; i < 20; i++) {
		cycle(a, 0);
		th_sleep_ms(2);
		seen += worker_threads();
	}
	cr_assert_gt(seen, 0, "no hugering-bg thread while rings churned");
	for (int waited = 0; worker_threads() && waited < 5000; waited += 50)
		th_sleep_ms(50);
	cr_assert_eq(worker_threads(), 0, "the worker outlived its work by 5 s");
	cr_assert_gt(stats_of(a).pages_prepared, 0);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* Destroy right after the exit that asked for a page: no wait, no leak, no use after free. */
Test(prepare, destroy_while_preparing)
{
	th_need_pool(SZ_2M, 4);
	for (int i = 0; i < 20; i++) {
		struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);

		cycle(a, 0);
		cycle(a, 0);
		cr_assert_eq(hugering_arena_destroy(a), 0, "round %d: %s", i, hugering_last_error());
	}
}

/* Trim gives the ready page back too, and no refill under way brings one back. */
Test(prepare, trim_takes_the_ready_page)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);

	th_need_pool(SZ_2M, 4);
	for (int i = 0; i < 5; i++)
		cycle(a, 0);
	cr_assert_geq(hugering_arena_trim(a), 0);
	cr_assert_eq(stats_of(a).pages_held, 0, "after the trim: %u pages held, %u rings live, "
		     "%zu bytes free", stats_of(a).pages_held, stats_of(a).rings_live,
		     stats_of(a).bytes_free);
	th_sleep_ms(50);
	cr_assert_eq(stats_of(a).pages_held, 0, "a page came back after the trim");
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/*
 * The ready page counts against max_bytes but is a cache: with room for two
 * pages, one holding a live ring, a churning ring never fails for it.
 */
Test(prepare, ready_page_yields_to_max_bytes)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 2 * SZ_2M);
	struct io_uring keep;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(big_ring(a, 0, &keep), 0, "%s", hugering_last_error());
	for (int i = 0; i < 30; i++) {
		cycle(a, 0);
		if (i % 3 == 0)
			th_sleep_ms(3);
		cr_assert_leq(stats_of(a).pages_held, 2);
	}
	hugering_queue_exit(&keep);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* A child of a process whose worker runs gets a worker of its own. */
Test(prepare, fork_child_prepares_its_own)
{
	struct hugering_arena *a = arena_with(HUGERING_ARENA_PREPARE, 0);
	int status;
	pid_t pid;

	th_need_pool(SZ_2M, 6);
	for (int i = 0; i < 5; i++)
		cycle(a, 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hugering_arena_opts o = { .flags = HUGERING_ARENA_PREPARE };
		struct hugering_arena *mine;
		struct hugering_arena_stats st;
		int ok = 1;

		if (hugering_arena_create(&o, &mine))
			_exit(2);
		for (int i = 0; i < 10; i++) {
			struct io_uring ring;

			if (big_ring(mine, 0, &ring))
				_exit(3);
			hugering_queue_exit(&ring);
			th_sleep_ms(3);
		}
		ok = !hugering_arena_stats(mine, &st) && st.prepared_used > 0;
		_exit(ok && !hugering_arena_destroy(mine) ? 0 : 4);
	}
	for (int i = 0; i < 5; i++)
		cycle(a, 0);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* SPDX-License-Identifier: MIT */
/*
 * The liburing underneath: which one runs, and the defects of old ones that
 * hugering works around (lib/compat.h, lib/layout.c, lib/ring.c).  Meant to
 * pass on every liburing hugering supports (2.5+); `make check-liburing25`
 * runs them against liburing 2.5 with HUGERING_TEST_LIBURING=2.5.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(liburing, .init = th_init, .fini = th_fini, .timeout = 60);

/* Is the page at @p still mapped? */
static bool mapped(const void *p)
{
	unsigned char v;

	return mincore((void *)((uintptr_t)p & ~4095UL), 4096, &v) == 0;
}

/* The library that runs is the one the headers describe (and the one asked for). */
Test(liburing, runs_the_liburing_it_was_built_against)
{
	const char *want = getenv("HUGERING_TEST_LIBURING");
	char got[32];

	snprintf(got, sizeof(got), "%d.%d", io_uring_major_version(), io_uring_minor_version());
	cr_log_info("liburing %s (headers %d.%d)", got, IO_URING_VERSION_MAJOR,
		    IO_URING_VERSION_MINOR);
	cr_assert_eq(io_uring_major_version(), IO_URING_VERSION_MAJOR, "running %s", got);
	cr_assert_eq(io_uring_minor_version(), IO_URING_VERSION_MINOR, "running %s", got);
	if (want)
		cr_assert_str_eq(got, want, "HUGERING_TEST_LIBURING=%s but liburing %s runs",
				 want, got);
}

/*
 * liburing 2.5-2.7 unmap the caller's memory in io_uring_queue_exit();
 * hr_queue_exit_app_mem() must leave it mapped on every version.
 */
Test(liburing, queue_exit_leaves_application_memory_mapped)
{
	size_t len = 64 * 4096;
	char *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct io_uring_params p = { 0 };
	struct io_uring ring;
	int ret;

	cr_assert_neq(b, MAP_FAILED);
	ret = io_uring_queue_init_mem(64, &ring, &p, b, len);
	cr_assert_geq(ret, 0, "io_uring_queue_init_mem: %s", strerror(-ret));
	th_nops(&ring, 256);
	hr_queue_exit_app_mem(&ring);
	cr_assert(mapped(b), "the SQEs' page was unmapped");
	cr_assert(mapped(b + len - 1), "the rings' last page was unmapped");
	cr_assert_eq(munmap(b, len), 0);
}

/*
 * The same through the factory, where it matters: a DEFER_TASKRUN ring is
 * resized away at exit and its dedicated region kept as a spare for the
 * next ring of its shape.  With 32768 entries its SQEs are exactly the
 * region's first 2 MiB hugepage, which liburing 2.5-2.7 would unmap
 * (munmap of a hugetlb range needs whole hugepages, so smaller rings are
 * spared): the next ring would then be set up in a hole.
 */
Test(liburing, factory_exit_keeps_a_spare_region_mapped)
{
	struct hugering_arena_opts ao = { .numa_node = -1 };
	struct hugering_init_opts o = { .numa_node = -1, .policy = HUGERING_POLICY_NOMMAP };
	struct hugering_arena_stats st;
	struct hugering_ring_info info;
	struct io_uring ring;
	void *first = NULL;

	th_need_pool(SZ_2M, 6);
	cr_assert_eq(hugering_arena_create(&ao, &o.arena), 0);
	for (int i = 0; i < 2; i++) {
		struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
						      IORING_SETUP_DEFER_TASKRUN |
						      IORING_SETUP_CQSIZE,
					     .cq_entries = 65536 };

		cr_assert_eq(hugering_queue_init_opts(32768, &ring, &p, &o), 0, "ring %d: %s", i,
			     hugering_last_error());
		cr_assert_eq(hugering_ring_info(&ring, &info), 0);
		cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "%s", info.fallback_reason);
		if (!first)
			first = info.mem;
		cr_assert_eq(info.mem, first, "ring %d is not in the spare: the test tests nothing",
			     i);
		th_nops(&ring, 2 * 32768);
		hugering_queue_exit(&ring);
		cr_assert(mapped(info.mem), "ring %d: the spare's SQE page was unmapped", i);
	}
	cr_assert_eq(hugering_arena_stats(o.arena, &st), 0);
	cr_assert_eq(st.resize_recycled, 2);
	cr_assert_eq(hugering_arena_destroy(o.arena), 0);
}

/*
 * NO_SQARRAY asked for by the caller: liburing before 2.6 would write its SQ
 * index array over the ring header, so the factory drops the flag there;
 * either way the ring works and p->flags says what it got.
 */
Test(liburing, caller_no_sqarray_gives_a_working_ring)
{
	struct io_uring_params p = { .flags = IORING_SETUP_NO_SQARRAY };
	struct hugering_ring_info info;
	struct io_uring ring;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_queue_init_params(256, &ring, &p), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "%s", info.fallback_reason);
	cr_assert_eq(p.flags & IORING_SETUP_NO_SQARRAY, th_no_sqarray(), "flags 0x%x", p.flags);
	th_nops(&ring, 4 * 512);
	hugering_queue_exit(&ring);
}

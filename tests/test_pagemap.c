/* SPDX-License-Identifier: MIT */
/* Pagemap reading and hugering_mem_verify on memory the test builds itself. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(pagemap, .init = th_init, .fini = th_fini, .timeout = 300);

Test(pagemap, pfn_visibility_matches_independent_reading)
{
	cr_assert_eq(hugering_pfn_visible(), th_pfn_visible() ? 1 : 0);
}

static void *hugetlb_pages(int fd, size_t n)
{
	void *p;

	cr_assert_eq(ftruncate(fd, (off_t)(n * SZ_2M)), 0);
	p = mmap(NULL, n * SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

Test(pagemap, addr_info_on_hugetlb_page)
{
	int fd = memfd_create("t", MFD_HUGETLB | MFD_HUGE_2MB);
	struct hugering_addr_info ai;
	char *p;

	th_need_pool(SZ_2M, 1);
	cr_assert_geq(fd, 0);
	p = hugetlb_pages(fd, 1);
	cr_assert_eq(hugering_addr_info(p + 12345, &ai), 0);
	cr_assert(ai.present);
	cr_assert_eq(ai.page_size, SZ_2M);
	cr_assert_eq(ai.backing, HUGERING_BACKING_HUGETLB);
	cr_assert_eq(ai.pfn, th_pfn(p + 12345));
	cr_assert_geq(ai.numa_node, 0);
	if (th_pfn_visible())
		cr_assert_eq(ai.phys_addr, th_pfn(p) * 4096 + 12345);
	else
		cr_assert_eq(ai.phys_addr, 0);
	munmap(p, SZ_2M);
	close(fd);
}

Test(pagemap, addr_info_on_base_page_and_errors)
{
	struct hugering_addr_info ai;
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(madvise(p, 8192, MADV_NOHUGEPAGE), 0);
	p[0] = 1;
	cr_assert_eq(hugering_addr_info(p, &ai), 0);
	cr_assert(ai.present);
	cr_assert_eq(ai.page_size, 4096);
	cr_assert_eq(ai.backing, HUGERING_BACKING_BASE);
	/* Never touched: not present, no frame. */
	cr_assert_eq(hugering_addr_info(p + 4096, &ai), 0);
	cr_assert_not(ai.present);
	cr_assert_eq(ai.pfn, 0);
	cr_assert_eq(ai.numa_node, -1);
	munmap(p, 8192);
	cr_assert_eq(hugering_addr_info(p, &ai), -EFAULT, "unmapped");
	cr_assert_eq(hugering_addr_info(NULL, &ai), -EINVAL);
	cr_assert_eq(hugering_addr_info(&ai, NULL), -EINVAL);
}

Test(pagemap, verify_bad_input)
{
	struct hugering_verify v;
	char buf[16];
	void *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_eq(hugering_mem_verify(NULL, 4096, &v), -EINVAL);
	cr_assert_eq(hugering_mem_verify(buf, 0, &v), -EINVAL);
	cr_assert_eq(hugering_mem_verify(buf, sizeof(buf), NULL), -EINVAL);
	cr_assert_eq(hugering_mem_verify(buf, SIZE_MAX, &v), -EINVAL, "wraps");
	munmap(p, 4096);
	cr_assert_eq(hugering_mem_verify(p, 4096, &v), -EFAULT, "unmapped");
}

/* A malloc'd buffer: verify agrees with the truth, whatever it is. */
Test(pagemap, verify_malloc_buffer_is_honest)
{
	size_t len = 256 * 1024;
	char *buf = malloc(len);
	struct hugering_verify v;
	long truth;

	cr_assert_not_null(buf);
	memset(buf, 0x5a, len);
	truth = th_runs(buf, len);
	cr_assert_eq(hugering_mem_verify(buf, len, &v), 0);
	cr_assert_eq(v.pages_missing, 0);
	if (th_pfn_visible()) {
		cr_assert_eq(v.proof, HUGERING_PROOF_PAGEMAP);
		cr_assert_eq(v.runs, (unsigned)truth);
		cr_assert_eq(v.contiguous, truth == 1 ? HUGERING_CONTIG_YES : HUGERING_CONTIG_NO);
		cr_assert_eq(v.phys_addr, th_pfn(buf) * 4096 + (uintptr_t)buf % 4096);
	} else {
		cr_assert_eq(truth, -1);
		cr_assert_eq(v.proof, HUGERING_PROOF_NONE);
		cr_assert_eq(v.contiguous, HUGERING_CONTIG_UNKNOWN);
		cr_assert_eq(v.runs, 0);
		cr_assert_eq(v.phys_addr, 0);
	}
	free(buf);
}

/* Untouched memory has no frames: UNKNOWN, and the count says why. */
Test(pagemap, verify_never_claims_absent_pages)
{
	char *p = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct hugering_verify v;

	cr_assert_neq(p, MAP_FAILED);
	p[0] = 1;
	cr_assert_eq(hugering_mem_verify(p, 16 * 4096, &v), 0);
	cr_assert_eq(v.pages, 16);
	cr_assert_eq(v.pages_missing, 15);
	cr_assert_eq(v.contiguous, HUGERING_CONTIG_UNKNOWN);
	cr_assert_eq(v.proof, HUGERING_PROOF_NONE);
	munmap(p, 16 * 4096);
}

/*
 * Deliberately non-contiguous: the same hugepage mapped twice back to back
 * (frame A, then A again), and three pages mapped in reverse file order.
 */
Test(pagemap, verify_reports_deliberate_discontiguity)
{
	int fd = memfd_create("t", MFD_HUGETLB | MFD_HUGE_2MB);
	struct hugering_verify v;
	char *base;

	th_need_pool(SZ_2M, 3);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 3 * SZ_2M), 0);
	base = mmap(NULL, 3 * SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	cr_assert_neq(base, MAP_FAILED);
	/* Twice the same page: [A][A] */
	cr_assert_neq(mmap(base + SZ_2M, SZ_2M, PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, 0), MAP_FAILED);
	cr_assert_eq(hugering_mem_verify(base, 2 * SZ_2M, &v), 0);
	if (th_pfn_visible()) {
		cr_assert_eq(th_runs(base, 2 * SZ_2M), 2);
		cr_assert_eq(v.contiguous, HUGERING_CONTIG_NO);
		cr_assert_eq(v.proof, HUGERING_PROOF_PAGEMAP);
		cr_assert_eq(v.runs, 2);
	} else {
		cr_assert_eq(v.contiguous, HUGERING_CONTIG_UNKNOWN);
		cr_assert_eq(v.proof, HUGERING_PROOF_NONE);
	}
	/* Reverse order: [C][B][A] */
	for (int i = 0; i < 3; i++)
		cr_assert_neq(mmap(base + i * SZ_2M, SZ_2M, PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd,
				   (off_t)((2 - i) * SZ_2M)), MAP_FAILED);
	cr_assert_eq(hugering_mem_verify(base, 3 * SZ_2M, &v), 0);
	if (th_pfn_visible()) {
		/*
		 * Usually 2 or 3 runs; 1 when the pool handed the file its pages in
		 * descending frame order (a LIFO free list refilled in ascending
		 * order does): reversed, they are adjacent.  The library must agree
		 * with our own reading either way.
		 */
		long truth = th_runs(base, 3 * SZ_2M);

		cr_assert_geq(truth, 1);
		cr_assert_eq(v.runs, (unsigned)truth);
		cr_assert_eq(v.contiguous, truth == 1 ? HUGERING_CONTIG_YES : HUGERING_CONTIG_NO);
	} else {
		cr_assert_neq(v.proof, HUGERING_PROOF_PAGEMAP);
	}
	/* Inside one page: contiguous whatever the privilege. */
	cr_assert_eq(hugering_mem_verify(base + 4096, SZ_2M - 8192, &v), 0);
	cr_assert_eq(v.contiguous, HUGERING_CONTIG_YES);
	cr_assert_eq(v.proof, th_pfn_visible() ? HUGERING_PROOF_PAGEMAP
					       : HUGERING_PROOF_CONSTRUCTION);
	cr_assert_eq(v.page_size, SZ_2M);
	cr_assert_eq(v.backing, HUGERING_BACKING_HUGETLB);
	munmap(base, 3 * SZ_2M);
	close(fd);
}

Test(pagemap, enum_names)
{
	cr_assert_str_eq(hugering_contig_name(HUGERING_CONTIG_YES), "yes");
	cr_assert_str_eq(hugering_contig_name(HUGERING_CONTIG_NO), "no");
	cr_assert_str_eq(hugering_contig_name(42), "unknown");
	cr_assert_str_eq(hugering_proof_name(HUGERING_PROOF_PAGEMAP), "pagemap");
	cr_assert_str_eq(hugering_proof_name(HUGERING_PROOF_CONSTRUCTION), "construction");
	cr_assert_str_eq(hugering_backing_name(HUGERING_BACKING_HUGETLB), "hugetlb");
}

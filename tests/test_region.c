/* SPDX-License-Identifier: MIT */
/* Region allocation: contiguity by independent pagemap reading, pool, fork. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(region, .init = th_init, .fini = th_fini, .timeout = 300);

static struct hugering_region_opts opts(size_t size, size_t ps, unsigned flags)
{
	struct hugering_region_opts o = {
		.size = size, .page_size = ps, .numa_node = -1, .flags = flags,
	};
	return o;
}

static bool all_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i += 4096)
		if (p[i] || p[i + 4095])
			return false;
	return true;
}

/*
 * A contiguous region of @size on @ps pages: the test's own pagemap reading
 * finds one run, and the library's verification agrees.  Unprivileged,
 * nothing may claim pagemap proof; several pages cannot be proven at all.
 */
static void check_contig_region(size_t size, size_t ps)
{
	struct hugering_region_opts o = opts(size, ps, HUGERING_REGION_CONTIG);
	size_t pages = (size + ps - 1) / ps;
	struct hugering_region *r = NULL;
	struct hugering_region_info ri;
	struct hugering_verify v;
	int fds = th_fd_count();
	int ret;

	th_need_pool(ps, (long)pages);
	th_need_contig_run(ps, (long)pages);
	ret = hugering_region_alloc(&o, &r);
	if (!th_pfn_visible() && pages > 1) {
		cr_assert_eq(ret, -EPERM, "unprovable contiguity must be refused, got %d", ret);
		cr_assert_null(r);
		cr_assert_eq(th_fd_count(), fds, "fd leaked on error path");
		return;
	}
	cr_assert_eq(ret, 0, "alloc %zu on %zu: %s", size, ps, strerror(-ret));
	char *p = hugering_region_addr(r);

	cr_assert_eq((uintptr_t)p % ps, 0, "aligned to the page size");
	cr_assert_eq(hugering_region_page_size(r), ps);
	cr_assert_eq(hugering_region_size(r), pages * ps);
	cr_assert(all_zero(p, hugering_region_size(r)), "zeroed");
	memset(p, 0xab, size);	/* usable for the whole requested size */

	cr_assert_eq(hugering_mem_verify(p, hugering_region_size(r), &v), 0);
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.hugepages, pages);
	cr_assert_eq(ri.backing, HUGERING_BACKING_HUGETLB);
	cr_assert_eq(ri.fallback_errno, 0);
	cr_assert_eq(v.page_size, ps);
	cr_assert_eq(v.contiguous, HUGERING_CONTIG_YES);
	cr_assert_eq(v.runs, 1);
	if (th_pfn_visible()) {
		cr_assert_eq(th_runs(p, hugering_region_size(r)), 1,
			     "independent pagemap reading: not one run");
		cr_assert_eq(v.proof, HUGERING_PROOF_PAGEMAP);
		cr_assert_eq(v.phys_addr, th_pfn(p) * 4096);
	} else {
		cr_assert_eq(v.proof, HUGERING_PROOF_CONSTRUCTION);
		cr_assert_eq(v.phys_addr, 0);
	}
	cr_assert_eq(ri.proof, v.proof);
	hugering_region_free(r);
	cr_assert_eq(th_fd_count(), fds, "fd leaked");
}

Test(region, contig_4k_on_2m)        { check_contig_region(4096, SZ_2M); }
Test(region, contig_64k_on_2m)       { check_contig_region(64 * 1024, SZ_2M); }
Test(region, contig_2m_on_2m)        { check_contig_region(SZ_2M, SZ_2M); }
Test(region, contig_2m_plus_1_on_2m) { check_contig_region(SZ_2M + 1, SZ_2M); }
Test(region, contig_6m_on_2m)        { check_contig_region(6 * MiB, SZ_2M); }
Test(region, contig_20m_on_2m)       { check_contig_region(20 * MiB, SZ_2M); }
Test(region, contig_1g_on_1g)        { check_contig_region(GiB, GiB); }

/*
 * Automatic page size, unprivileged: 6 MiB cannot be proven on 2 MiB pages,
 * so a 1 GiB page (contiguous by construction) is used when one is free.
 */
Test(region, auto_size_proves_by_construction_when_pfns_hidden)
{
	struct hugering_region_opts o = opts(6 * MiB, 0, HUGERING_REGION_CONTIG);
	struct hugering_region *r;
	struct hugering_region_info ri;

	th_need_pool(SZ_2M, 3);
	th_need_pool(GiB, 1);
	th_need_contig_run(SZ_2M, 3);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.contiguous, HUGERING_CONTIG_YES);
	if (th_pfn_visible()) {
		cr_assert_eq(ri.page_size, SZ_2M, "smallest size first");
		cr_assert_eq(ri.proof, HUGERING_PROOF_PAGEMAP);
	} else {
		cr_assert_eq(ri.page_size, GiB);
		cr_assert_eq(ri.proof, HUGERING_PROOF_CONSTRUCTION);
	}
	hugering_region_free(r);
}

Test(region, bad_input)
{
	struct hugering_region *r = (void *)1;
	struct hugering_region_opts o;

	o = opts(4096, 0, 0);
	cr_assert_eq(hugering_region_alloc(NULL, &r), -EINVAL);
	cr_assert_eq(hugering_region_alloc(&o, NULL), -EINVAL);
	o = opts(0, 0, 0);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "size 0");
	cr_assert_null(r, "*out cleared on error");
	o = opts(SIZE_MAX, 0, 0);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "absurd size");
	o = opts((size_t)1 << 50, SZ_2M, 0);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "more than RAM");
	o = opts(4096, 3 * MiB, 0);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "unsupported page size");
	o = opts(4096, 8192, 0);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "unsupported page size");
	o = opts(4096, 0, 1u << 20);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "unknown flag");
	o = opts(4096, 0, 0);
	o.resv[1] = 1;
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "reserved field");
	o = opts(4096, 0, 0);
	o.numa_node = 999;
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "offline node");
	o.numa_node = -5;
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "negative node");
	o = opts(64 * 1024, 4096, HUGERING_REGION_CONTIG);
	cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL, "base pages cannot be contiguous");
	/* Accessors tolerate NULL. */
	hugering_region_free(NULL);
	cr_assert_null(hugering_region_addr(NULL));
	cr_assert_eq(hugering_region_size(NULL), 0);
	cr_assert_eq(hugering_region_page_size(NULL), 0);
}

/* Empty pool: CONTIG alone fails cleanly, FALLBACK gives base pages. */
Test(region, empty_pool_enomem_or_fallback)
{
	struct hugering_region_opts o = opts(6 * MiB, SZ_2M, HUGERING_REGION_CONTIG);
	struct hugering_region *r = NULL;
	struct hugering_region_info ri;
	struct hugering_verify v;
	struct th_hog hog;
	int fds;

	th_need_pool(SZ_2M, 1);
	th_exhaust(SZ_2M, &hog);
	fds = th_fd_count();
	cr_assert_eq(hugering_region_alloc(&o, &r), -ENOMEM);
	cr_assert_null(r);
	o.size = 4096;
	cr_assert_eq(hugering_region_alloc(&o, &r), -ENOMEM, "single page too");
	cr_assert_eq(th_fd_count(), fds);

	o.size = 6 * MiB;
	o.flags |= HUGERING_REGION_FALLBACK;
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.page_size, 4096);
	cr_assert_eq(ri.hugepages, 0);
	cr_assert_neq(ri.backing, HUGERING_BACKING_HUGETLB);
	cr_assert_eq(ri.fallback_errno, ENOMEM);
	cr_assert_neq(ri.fallback_reason[0], '\0');
	cr_assert_geq(hugering_region_size(r), 6 * MiB);
	memset(hugering_region_addr(r), 1, 6 * MiB);
	cr_assert_eq(hugering_mem_verify(hugering_region_addr(r), 6 * MiB, &v), 0);
	cr_assert_neq(v.backing, HUGERING_BACKING_HUGETLB);
	cr_assert_eq(v.page_size, 4096);
	if (th_pfn_visible())
		cr_assert_eq(v.runs, (unsigned)th_runs(hugering_region_addr(r), 6 * MiB));
	hugering_region_free(r);
	th_release(&hog);
}

/* Unprivileged with FALLBACK: hugepages, but contiguity honestly unknown. */
Test(region, fallback_without_pfns_keeps_hugepages)
{
	struct hugering_region_opts o = opts(6 * MiB, SZ_2M,
					     HUGERING_REGION_CONTIG | HUGERING_REGION_FALLBACK);
	struct hugering_region *r;
	struct hugering_region_info ri;

	th_need_pool(SZ_2M, 3);
	th_need_contig_run(SZ_2M, 3);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.backing, HUGERING_BACKING_HUGETLB);
	cr_assert_eq(ri.hugepages, 3);
	if (th_pfn_visible()) {
		cr_assert_eq(ri.fallback_errno, 0);
		cr_assert_eq(ri.contiguous, HUGERING_CONTIG_YES);
	} else {
		cr_assert_eq(ri.fallback_errno, EPERM);
		cr_assert_eq(ri.contiguous, HUGERING_CONTIG_UNKNOWN);
		cr_assert_eq(ri.proof, HUGERING_PROOF_NONE);
	}
	hugering_region_free(r);
}

struct frame_at {
	uint64_t pfn;
	size_t i;
};

static int by_pfn(const void *a, const void *b)
{
	uint64_t x = ((const struct frame_at *)a)->pfn, y = ((const struct frame_at *)b)->pfn;

	return x < y ? -1 : x > y;
}

/* Index into sorted @f of a run of 3 adjacent 2 MiB frames, or -1. */
static long run_of_three(const struct frame_at *f, size_t n)
{
	for (size_t i = 2; i < n; i++)
		if (f[i].pfn == f[i - 1].pfn + 512 && f[i - 1].pfn == f[i - 2].pfn + 512)
			return (long)i - 2;
	return -1;
}

/*
 * The pool's free list is LIFO: give a run back first and 400 lone pages
 * (no two adjacent) after it, holding the rest, and the run lies under
 * them.  The default search must still find it (a fixed 8 doubling rounds
 * read 384 pages for 3 and said ENOMEM).
 */
Test(region, contig_run_found_deep_in_pool)
{
	struct hugering_region_opts o = opts(6 * MiB, SZ_2M, HUGERING_REGION_CONTIG);
	struct hugering_region *r;
	struct hugering_region_info ri;
	struct frame_at *f;
	struct th_hog hog;
	uint64_t last = 0;
	size_t n, lone = 0;
	long run;

	if (!th_pfn_visible())
		cr_skip_test("reads PFNs: needs CAP_SYS_ADMIN");
	th_grow_pool(SZ_2M, 1000);
	th_exhaust(SZ_2M, &hog);
	n = hog.len / SZ_2M;
	f = calloc(n, sizeof(*f));
	cr_assert_not_null(f);
	for (size_t i = 0; i < n; i++)
		f[i] = (struct frame_at){ th_pfn((char *)hog.addr + i * SZ_2M), i };
	qsort(f, n, sizeof(*f), by_pfn);
	run = run_of_three(f, n);
	if (run >= 0)
		for (long k = run; k < run + 3; k++)
			th_punch(hog.fd, f[k].i * SZ_2M, SZ_2M);
	for (size_t k = 0; run >= 0 && k < n && lone < 400; k++) {
		bool near_run = k + 1 >= (size_t)run && k <= (size_t)run + 3;

		if (near_run || (last && f[k].pfn == last + 512))
			continue;
		th_punch(hog.fd, f[k].i * SZ_2M, SZ_2M);
		last = f[k].pfn;
		lone++;
	}
	free(f);
	if (lone < 400) {
		th_release(&hog);
		cr_skip_test("no 3-page run and 400 lone pages among the pool's %zu pages", n);
	}
	cr_assert_eq(hugering_region_alloc(&o, &r), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.contiguous, HUGERING_CONTIG_YES);
	cr_assert_eq(th_runs(hugering_region_addr(r), 6 * MiB), 1);
	hugering_region_free(r);
	th_release(&hog);
}

/* Every page the search took comes back: during, the region's; after, none. */
Test(region, free_returns_pages_to_pool)
{
	struct hugering_region_opts o = opts(6 * MiB, SZ_2M,
					     HUGERING_REGION_CONTIG | HUGERING_REGION_FALLBACK);
	long free0 = th_pool_field(SZ_2M, "free_hugepages");
	long resv0 = th_pool_field(SZ_2M, "resv_hugepages");
	struct hugering_region *r;

	th_need_pool(SZ_2M, 3);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages"), free0 - 3,
		     "exactly the region's pages are held");
	cr_assert_eq(th_pool_field(SZ_2M, "resv_hugepages"), resv0);
	hugering_region_free(r);
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages"), free0);
	cr_assert_eq(th_pool_field(SZ_2M, "resv_hugepages"), resv0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * A pool with free pages but no two of them physically adjacent: take every
 * page, then give back every second one in frame order.  A 2-page CONTIG
 * request must search, give up with -ENOMEM, and leave the pool as it was.
 */
Test(region, contig_search_gives_up_cleanly)
{
	struct hugering_region_opts o = opts(2 * SZ_2M, SZ_2M, HUGERING_REGION_CONTIG);
	struct hugering_region *r = NULL;
	struct th_hog hog;
	uint64_t *key;
	size_t n;
	long free_before;
	int fds;

	th_need_pool(SZ_2M, 6);
	if (!th_pfn_visible()) {
		cr_assert_eq(hugering_region_alloc(&o, &r), -EPERM);
		return;
	}
	th_exhaust(SZ_2M, &hog);
	n = hog.len / SZ_2M;
	key = calloc(n, sizeof(*key));
	cr_assert_not_null(key);
	/* frame number in the high bits, page index in the low 16 */
	for (size_t i = 0; i < n; i++)
		key[i] = th_pfn((char *)hog.addr + i * SZ_2M) << 16 | i;
	qsort(key, n, sizeof(*key), cmp_u64);
	for (size_t i = 0; i < n; i += 2)
		cr_assert_eq(fallocate(hog.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)((key[i] & 0xffff) * SZ_2M), SZ_2M), 0);
	free(key);
	free_before = th_pool_field(SZ_2M, "free_hugepages");
	cr_assert_geq(free_before, 3);
	fds = th_fd_count();
	cr_assert_eq(hugering_region_alloc(&o, &r), -ENOMEM);
	cr_assert_null(r);
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages"), free_before, "search leaked pages");
	cr_assert_eq(th_fd_count(), fds);
	/* One page needs no search and still works. */
	o.size = SZ_2M;
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	hugering_region_free(r);
	th_release(&hog);
}

Test(region, numa_node_placement_verified)
{
	int nodes[8], n = hugering_numa_nodes(nodes, 8);
	struct hugering_region_opts o = opts(SZ_2M, SZ_2M,
					     HUGERING_REGION_CONTIG | HUGERING_REGION_NUMA_NODE);
	struct hugering_region *r;
	struct hugering_region_info ri;
	struct hugering_addr_info ai;

	cr_assert_gt(n, 0);
	th_need_pool(SZ_2M, 1);
	o.numa_node = nodes[0];
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.numa_node, nodes[0]);
	cr_assert_eq(hugering_addr_info(hugering_region_addr(r), &ai), 0);
	cr_assert_eq(ai.numa_node, nodes[0]);
	hugering_region_free(r);
}

/* Shared by default (like a kernel-mapped ring); DONTFORK keeps it from children. */
static int child_sees(struct hugering_region *r, bool write)
{
	volatile char *p = hugering_region_addr(r);
	pid_t pid = fork();
	int st;

	cr_assert_geq(pid, 0);
	if (!pid) {
		struct hugering_addr_info ai;

		if (hugering_addr_info((void *)p, &ai) == -EFAULT)
			_exit(3);	/* not mapped here */
		if (write)
			p[100] = 42;
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	return WEXITSTATUS(st);
}

Test(region, shared_with_children_unless_dontfork)
{
	struct hugering_region_opts o = opts(SZ_2M, SZ_2M, HUGERING_REGION_CONTIG);
	struct hugering_region *r;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(child_sees(r, true), 0);
	cr_assert_eq(((char *)hugering_region_addr(r))[100], 42,
		     "child's write must reach the parent (MAP_SHARED)");
	hugering_region_free(r);

	o.flags |= HUGERING_REGION_DONTFORK;
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(child_sees(r, false), 3, "DONTFORK region mapped in child");
	hugering_region_free(r);
}

/* 4 threads allocate, fill, check and free for 10 s: nothing lost. */
struct churn {
	int id;
	long ok, failed, corrupt;
	time_t until;
};

static void *churn_thread(void *arg)
{
	static const size_t sizes[] = { 4096, 64 * 1024, SZ_2M, SZ_2M + 1, 6 * MiB };
	struct churn *c = arg;
	unsigned seed = (unsigned)c->id * 7919u;

	while (time(NULL) < c->until) {
		size_t size = sizes[rand_r(&seed) % 5];
		struct hugering_region_opts o = opts(size, SZ_2M, HUGERING_REGION_CONTIG |
						     HUGERING_REGION_FALLBACK);
		struct hugering_region *r;
		unsigned char *p;

		if (hugering_region_alloc(&o, &r)) {
			c->failed++;
			continue;
		}
		p = hugering_region_addr(r);
		for (size_t i = 0; i < size; i += 4096)
			p[i] = (unsigned char)(c->id + i / 4096);
		for (size_t i = 0; i < size; i += 4096)
			c->corrupt += p[i] != (unsigned char)(c->id + i / 4096);
		hugering_region_free(r);
		c->ok++;
	}
	return NULL;
}

Test(region, four_threads_ten_seconds_lose_nothing, .timeout = 60)
{
	long free0 = th_pool_field(SZ_2M, "free_hugepages");
	long resv0 = th_pool_field(SZ_2M, "resv_hugepages");
	struct churn c[4];
	pthread_t t[4];
	long ok = 0;

	th_need_pool(SZ_2M, 24);
	for (int i = 0; i < 4; i++) {
		c[i] = (struct churn){ .id = i + 1, .until = time(NULL) + 10 };
		cr_assert_eq(pthread_create(&t[i], NULL, churn_thread, &c[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(c[i].failed, 0, "thread %d: %ld failures", i, c[i].failed);
		cr_assert_eq(c[i].corrupt, 0, "thread %d: corruption", i);
		cr_assert_gt(c[i].ok, 0, "thread %d made no progress", i);
		ok += c[i].ok;
	}
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages"), free0, "pages lost");
	cr_assert_eq(th_pool_field(SZ_2M, "resv_hugepages"), resv0, "reservations lost");
	cr_log_info("4 threads: %ld alloc/free cycles in 10 s", ok);
}

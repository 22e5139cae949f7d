/* SPDX-License-Identifier: MIT */
/*
 * Hardening (issue 16), the hostile system rather than hostile input: a
 * host process with a huge memory map, no free file descriptors, an empty
 * pool under REGISTERED_FD_ONLY, another library's environment.  Each test
 * fails without its fix; none asserts on time.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define HR_BASE_PAGE 4096UL

TestSuite(hardening, .init = th_init, .fini = th_fini, .timeout = 120);

/* ------------------------------------------------------------------ */
/* Defect 14: creation cost must not grow with the process's map        */
/* ------------------------------------------------------------------ */

/* Bytes this process has read through read(2)-like calls (/proc/self/io). */
static unsigned long long rchar(void)
{
	char buf[512], *p;
	unsigned long long v = 0;
	int fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	cr_assert_geq(fd, 0, "/proc/self/io: %s", strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	p = strstr(buf, "rchar:");
	cr_assert_not_null(p);
	cr_assert_eq(sscanf(p, "rchar: %llu", &v), 1);
	return v;
}

/*
 * @n separate VMAs (pages of alternating protection in one reservation),
 * placed low (32 TiB: above ASan's shadow, below the program and every
 * mmap the library makes), so that any reading of smaps in address order
 * has to get through all of them before it reaches the library's memory.
 */
#define MANY_VMAS_AT ((void *)0x200000000000UL)

static void *many_vmas(size_t n, size_t *len)
{
	char *p;

	*len = 2 * n * HR_BASE_PAGE;
	p = mmap(MANY_VMAS_AT, *len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		cr_skip_test("cannot reserve %zu bytes at %p: %s", *len, MANY_VMAS_AT,
			     strerror(errno));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(mprotect(p + 2 * i * HR_BASE_PAGE, HR_BASE_PAGE, PROT_READ), 0,
			     "mprotect: %s", strerror(errno));
	return p;
}

/* What the smaps of @n extra VMAs would cost to read: far more than this. */
#define READ_BUDGET (256UL << 10)

Test(hardening, big_map_region_reads_no_smaps)
{
	struct hugering_region_opts o = { .size = SZ_2M, .flags = HUGERING_REGION_FALLBACK };
	struct hugering_region *r;
	struct hugering_verify v;
	unsigned long long before, after;
	size_t len;
	void *vmas = many_vmas(20000, &len);

	before = rchar();
	cr_assert_eq(hugering_region_alloc(&o, &r), 0, "%s", hugering_last_error());
	after = rchar();
	cr_expect_lt(after - before, READ_BUDGET,
		     "a 2 MiB region read %llu bytes with 20000 VMAs mapped below it",
		     after - before);
	before = rchar();
	cr_assert_eq(hugering_mem_verify(hugering_region_addr(r), hugering_region_size(r), &v), 0);
	after = rchar();
	cr_expect_lt(after - before, READ_BUDGET,
		     "hugering_mem_verify read %llu bytes with 20000 VMAs mapped", after - before);
	cr_expect_eq(v.page_size, hugering_region_page_size(r));
	hugering_region_free(r);
	munmap(vmas, len);
}

Test(hardening, big_map_large_ring_reads_no_smaps)
{
	struct io_uring ring;
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 65536 };
	unsigned long long before, after;
	size_t len;
	void *vmas = many_vmas(20000, &len);
	int ret;

	before = rchar();
	ret = hugering_queue_init_params(32768, &ring, &p);
	after = rchar();
	cr_assert_eq(ret, 0, "%s: %s", strerror(-ret), hugering_last_error());
	cr_expect_lt(after - before, READ_BUDGET,
		     "a 32768/65536 ring read %llu bytes with 20000 VMAs mapped", after - before);
	hugering_queue_exit(&ring);
	munmap(vmas, len);
}

/* The public verify of memory the library did not map: the VMA's page size. */
Test(hardening, verify_foreign_memory_big_map)
{
	struct hugering_verify v;
	unsigned long long before, after;
	size_t len;
	char *vmas = many_vmas(20000, &len);
	char *mine = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(mine, MAP_FAILED);
	memset(mine, 1, 64 << 10);
	before = rchar();
	cr_assert_eq(hugering_mem_verify(mine, 64 << 10, &v), 0);
	after = rchar();
	cr_expect_lt(after - before, READ_BUDGET, "verify read %llu bytes", after - before);
	cr_expect_eq(v.page_size, HR_BASE_PAGE);
	cr_expect_eq(v.pages_missing, 0);
	/* A page of the many: its own VMA, found by address. */
	vmas[2 * 100 * HR_BASE_PAGE + HR_BASE_PAGE] = 1;
	cr_assert_eq(hugering_mem_verify(vmas + 2 * 100 * HR_BASE_PAGE + HR_BASE_PAGE,
					 HR_BASE_PAGE, &v), 0);
	cr_expect_eq(v.page_size, HR_BASE_PAGE);
	cr_expect_eq(v.backing, HUGERING_BACKING_BASE);
	/* Across a gap: not mapped, as before. */
	cr_expect_eq(hugering_mem_verify(vmas + len, HR_BASE_PAGE, &v), -EFAULT);
	munmap(mine, 64 << 10);
	munmap(vmas, len);
}

/* ------------------------------------------------------------------ */
/* Defect 6: no free descriptor is not a bad option                      */
/* ------------------------------------------------------------------ */

/* Every descriptor up to a lowered RLIMIT_NOFILE taken; undone by fds_free. */
struct fd_hog {
	struct rlimit old;
	int fds[512];
	int n;
};

static void fds_exhaust(struct fd_hog *h)
{
	struct rlimit lim;
	int fd;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &h->old), 0);
	lim = h->old;
	lim.rlim_cur = (rlim_t)th_fd_count() + 64;
	if (lim.rlim_cur > h->old.rlim_cur)
		lim.rlim_cur = h->old.rlim_cur;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0, "setrlimit: %s", strerror(errno));
	h->n = 0;
	while (h->n < (int)(sizeof(h->fds) / sizeof(h->fds[0])) && (fd = dup(0)) >= 0)
		h->fds[h->n++] = fd;
	cr_assert_eq(errno, EMFILE, "dup stopped with %s, not EMFILE", strerror(errno));
}

static void fds_free(struct fd_hog *h)
{
	while (h->n)
		close(h->fds[--h->n]);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &h->old), 0);
}

static bool exhaustion_errno(int ret)
{
	return ret == -EMFILE || ret == -ENFILE || ret == -ENOMEM;
}

/* The error and its reason, both naming the exhaustion. */
static void expect_exhaustion(int ret, const char *what)
{
	const char *why = hugering_last_error();

	cr_expect(exhaustion_errno(ret), "%s under fd exhaustion: %d (%s), want -EMFILE: %s",
		  what, ret, strerror(-ret), why);
	cr_expect(strstr(why, strerror(EMFILE)) || strstr(why, strerror(ENFILE)) ||
		  strstr(why, strerror(ENOMEM)),
		  "%s: the reason does not say descriptors ran out: \"%s\"", what, why);
}

/* A 2 MiB region made with no descriptor left (@page_size 0: automatic). */
static void region_without_fds(size_t page_size, const char *what)
{
	struct hugering_region_opts o = { .size = SZ_2M, .page_size = page_size };
	struct hugering_region *r = NULL;
	struct fd_hog h;
	int ret;

	fds_exhaust(&h);
	ret = hugering_region_alloc(&o, &r);
	fds_free(&h);
	hugering_region_free(r);
	expect_exhaustion(ret, what);
}

Test(hardening, fd_exhaustion_region_given_page_size)
{
	region_without_fds(SZ_2M, "2 MiB region, page size given");
}

Test(hardening, fd_exhaustion_region_automatic)
{
	region_without_fds(0, "2 MiB region, automatic page size");
}

Test(hardening, fd_exhaustion_arena_create)
{
	struct hugering_arena_opts o = { 0 };
	struct hugering_arena *a = NULL;
	struct fd_hog h;
	int ret;

	fds_exhaust(&h);
	ret = hugering_arena_create(&o, &a);
	fds_free(&h);
	if (a)
		hugering_arena_destroy(a);
	expect_exhaustion(ret, "hugering_arena_create");
}

Test(hardening, fd_exhaustion_large_ring)
{
	struct io_uring ring;
	struct io_uring_params p = { 0 };
	struct fd_hog h;
	int ret;

	fds_exhaust(&h);
	ret = hugering_queue_init_params(32768, &ring, &p);
	fds_free(&h);
	if (!ret)
		hugering_queue_exit(&ring);
	expect_exhaustion(ret, "32768-entry ring");
	/* The kernel probe that ran out of descriptors was not kept. */
	memset(&p, 0, sizeof(p));
	ret = hugering_queue_init_params(8, &ring, &p);
	cr_assert_eq(ret, 0, "a ring after descriptors came back: %s: %s", strerror(-ret),
		     hugering_last_error());
	hugering_queue_exit(&ring);
}

/* ------------------------------------------------------------------ */
/* Defect 5: libhugetlbfs's environment must not reach hugering           */
/* ------------------------------------------------------------------ */

static char out5[65536];

/* hugering-diag under @env; its stderr into @err (the command's output). */
static int diag_with_env(const char *env, const char *args, char *err, size_t len)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "%s '%s' %s 2>&1 >/dev/null", env, th_diag_tool(), args);
	return th_run(cmd, err, len);
}

Test(hardening, libhugetlbfs_env_prints_nothing)
{
	static const char *envs[] = {
		"HUGETLB_VERBOSE=99",
		"HUGETLB_VERBOSE=99 HUGETLB_PATH=/nonexistent",
		"HUGETLB_DEFAULT_PAGE_SIZE=garbage",
		"HUGETLB_DEFAULT_PAGE_SIZE=1G HUGETLB_VERBOSE=3",
		"HUGETLB_MORECORE=yes HUGETLB_ELFMAP=RW HUGETLB_VERBOSE=99",
	};

	for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "env %s", envs[i]);
		diag_with_env(cmd, "--no-trial", out5, sizeof(out5));
		cr_expect_str_empty(out5, "under %s, stderr: %.400s", envs[i], out5);
	}
}

/*
 * HUGETLB_DEFAULT_PAGE_SIZE=1G with a 1 GiB hugetlbfs mount (the case
 * libhugetlbfs honours) must not change the default page size; the mount
 * lives in a private mount namespace, so only root runs this.
 */
Test(hardening, libhugetlbfs_default_size_ignored)
{
	char cmd[1024], want[64];
	long kb = -1;
	FILE *f;

	if (geteuid())
		cr_skip_test("needs root to mount hugetlbfs in a private namespace");
	if (access("/sys/kernel/mm/hugepages/hugepages-1048576kB", F_OK))
		cr_skip_test("no 1 GiB hugepages in this kernel");
	f = fopen("/proc/meminfo", "re");
	cr_assert_not_null(f);
	while (fgets(cmd, sizeof(cmd), f))
		if (sscanf(cmd, "Hugepagesize: %ld kB", &kb) == 1)
			break;
	fclose(f);
	cr_assert_gt(kb, 0);
	snprintf(cmd, sizeof(cmd),
		 "unshare -m sh -c 'd=$(mktemp -d) && mount -t hugetlbfs -o pagesize=1G none $d "
		 "&& HUGETLB_DEFAULT_PAGE_SIZE=1G \"%s\" --json --no-trial; umount $d; rmdir $d'",
		 th_diag_tool());
	th_run(cmd, out5, sizeof(out5));
	snprintf(want, sizeof(want), "\"size_kb\":%ld,\"default\":true", kb);
	cr_expect_not_null(strstr(out5, want), "with HUGETLB_DEFAULT_PAGE_SIZE=1G and a 1 GiB "
			   "mount the default is no longer %ld kB: %.600s", kb, out5);
}

/* ------------------------------------------------------------------ */
/* Defect 13: REGISTERED_FD_ONLY has no kernel-mapped fallback           */
/* ------------------------------------------------------------------ */

/*
 * The kernel requires NO_MMAP with REGISTERED_FD_ONLY, so with the pool
 * empty the auto policy keeps the ring in user memory of base pages
 * (NOMMAP_BASE) and says why; a ring of 4096/8192 entries spans many base
 * pages (this kernel maps any pages: Linux 6.10+).
 */
Test(hardening, fd_only_empty_pool_base_pages)
{
	struct io_uring_params p = { .flags = IORING_SETUP_REGISTERED_FD_ONLY };
	struct hugering_ring_info info;
	struct hugering_kernel_caps caps;
	struct io_uring ring;
	struct th_hog hog;
	int ret;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	if (caps.nommap != HUGERING_NOMMAP_ANY)
		cr_skip_test("base-page rings of many pages need Linux 6.10+ (NO_MMAP class %s)",
			     hugering_nommap_name(caps.nommap));
	th_need_pool(SZ_2M, 1);
	th_exhaust(SZ_2M, &hog);
	ret = hugering_queue_init_params(4096, &ring, &p);
	cr_assert_eq(ret, 0, "REGISTERED_FD_ONLY, empty pool: %s: %s", strerror(-ret),
		     hugering_last_error());
	cr_assert_eq(ring.ring_fd, -1);
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_expect_eq(info.mode, HUGERING_MODE_NOMMAP_BASE, "mode %s",
		     hugering_mode_name(info.mode));
	cr_expect_eq(info.fallback_errno, ENOMEM);
	cr_expect(strstr(info.fallback_reason, "REGISTERED_FD_ONLY"), "%s", info.fallback_reason);
	th_nops(&ring, 8192);
	hugering_queue_exit(&ring);
	th_release(&hog);
}

/* The kernel policy cannot make such a ring: the kernel's -EINVAL, named. */
Test(hardening, fd_only_kernel_policy_says_why)
{
	struct io_uring_params p = { .flags = IORING_SETUP_REGISTERED_FD_ONLY };
	struct hugering_init_opts o = { .policy = HUGERING_POLICY_KERNEL };
	struct io_uring ring;
	int ret;

	ret = hugering_queue_init_opts(64, &ring, &p, &o);
	cr_assert_eq(ret, -EINVAL);
	cr_expect(strstr(hugering_last_error(), "REGISTERED_FD_ONLY") &&
		  strstr(hugering_last_error(), "NO_MMAP"), "%s", hugering_last_error());
}

/*
 * ATTACH_WQ takes the first ring's fd (the kernel fdget()s wq_fd); a
 * REGISTERED_FD_ONLY ring has none: refused up front, no ring left, and
 * nothing attached to fd -1 (or to whatever fd 0xffffffff would be).
 */
Test(hardening, fd_only_sqpoll_group_refused)
{
	struct io_uring_params p = { .flags = IORING_SETUP_REGISTERED_FD_ONLY };
	struct io_uring rings[2];
	int fds = th_fd_count(), ret;

	ret = hugering_sqpoll_group(rings, 2, 64, &p, NULL);
	if (!ret) {
		hugering_queue_exit(&rings[1]);
		hugering_queue_exit(&rings[0]);
	}
	cr_assert_eq(ret, -EINVAL, "got %d", ret);
	cr_expect(strstr(hugering_last_error(), "REGISTERED_FD_ONLY") &&
		  strstr(hugering_last_error(), "wq_fd"), "%s", hugering_last_error());
	cr_expect_eq(th_fd_count(), fds);
}

/* ------------------------------------------------------------------ */
/* Defect 10: parameters io_uring rejects are not a memory story          */
/* ------------------------------------------------------------------ */

struct bad_params {
	const char *name;
	struct io_uring_params p;
	int err;		/* what the kernel (and liburing) return */
	const char *says;	/* in the reason */
};

static void arena_now(struct hugering_arena_stats *st)
{
	cr_assert_eq(hugering_arena_stats(hugering_default_arena(), st), 0);
}

/*
 * Refused before any memory is taken: the kernel's errno (liburing's for
 * the same call), a reason naming the parameter, no memory story, and the
 * default arena untouched (no slot quarantined, no ring made).
 */
Test(hardening, bad_params_refused_before_memory)
{
	struct bad_params cases[] = {
		{ "SQPOLL+DEFER_TASKRUN", { .flags = IORING_SETUP_SQPOLL |
			IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN }, -EINVAL,
		  "SQPOLL" },
		{ "DEFER_TASKRUN alone", { .flags = IORING_SETUP_DEFER_TASKRUN }, -EINVAL,
		  "SINGLE_ISSUER" },
		{ "ATTACH_WQ to a closed fd", { .flags = IORING_SETUP_ATTACH_WQ, .wq_fd = 1000000 },
		  -ENXIO, "wq_fd" },
		{ "SQ_AFF CPU 1000", { .flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF,
			.sq_thread_cpu = 1000 }, -EINVAL, "sq_thread_cpu" },
		{ "resv[1] = 1", { .resv = { 0, 1, 0 } }, -EINVAL, "resv" },
	};
	struct hugering_arena_stats before, after;

	th_need_pool(SZ_2M, 1);
	arena_now(&before);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct io_uring_params p = cases[i].p, lp = cases[i].p;
		struct io_uring ring;
		int ret = hugering_queue_init_params(64, &ring, &p);
		int lret = io_uring_queue_init_params(64, &ring, &lp);

		if (!lret)
			io_uring_queue_exit(&ring);
		cr_expect_eq(lret, cases[i].err, "%s: liburing gives %d", cases[i].name, lret);
		cr_expect_eq(ret, cases[i].err, "%s: %d, want %d (liburing's)", cases[i].name, ret,
			     cases[i].err);
		cr_expect(strstr(hugering_last_error(), cases[i].says), "%s: \"%s\"", cases[i].name,
			  hugering_last_error());
		cr_expect_null(strstr(hugering_last_error(), "memory"), "%s: a memory story: \"%s\"",
			       cases[i].name, hugering_last_error());
	}
	arena_now(&after);
	cr_expect_eq(after.bytes_waiting, before.bytes_waiting, "a slot was quarantined");
	cr_expect_eq(after.rings_created, before.rings_created);
	cr_expect_eq(after.pages_held, before.pages_held, "pages taken for a refused ring");
}

/*
 * What is left to the kernel (TASKRUN_FLAG without COOP_TASKRUN or
 * DEFER_TASKRUN): when the kernel-mapped retry fails the same way, the
 * kernel's errno and its reason, not "user memory was not used".
 */
Test(hardening, kernel_refusal_told_as_such)
{
	struct io_uring_params p = { .flags = IORING_SETUP_TASKRUN_FLAG };
	struct io_uring ring;
	int ret;

	th_need_pool(SZ_2M, 1);
	ret = hugering_queue_init_params(64, &ring, &p);
	if (!ret)
		hugering_queue_exit(&ring);
	cr_assert_eq(ret, -EINVAL);
	cr_expect_null(strstr(hugering_last_error(), "user memory was not used"), "\"%s\"",
		       hugering_last_error());
	cr_expect(strstr(hugering_last_error(), "refuses these parameters"), "\"%s\"",
		  hugering_last_error());
}

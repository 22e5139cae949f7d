/* SPDX-License-Identifier: MIT */
/*
 * hugetlb cgroup limits, for real: the test moves its own process into a
 * fresh cgroup under the one the harness prepared
 * (HUGERING_TEST_HUGETLB_CGROUP) and limits it.  A fault over the limit
 * would be SIGBUS; the library must turn it into -ENOMEM and say which
 * cgroup file refused.  The empty cgroups are removed by the harness.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(cgroup, .init = th_init, .fini = th_fini, .timeout = 60);

struct cg {
	char dir[1024];
	bool v1;
};

/* Write @text into @dir/@file; 0 or errno. */
static int try_put_text(const char *dir, const char *file, const char *text)
{
	char path[1100];
	int fd, err = 0;
	size_t n = strlen(text);

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return errno;
	if (write(fd, text, n) != (ssize_t)n)
		err = errno;
	close(fd);
	return err;
}

/* Write @v (< 0: no limit, "-1" in v1, "max" in v2) into @dir/@file; 0 or errno. */
static int try_put(const char *dir, bool v1, const char *file, long long v)
{
	char path[1100], buf[32];
	int fd, n, err = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	n = v < 0 && !v1 ? snprintf(buf, sizeof(buf), "max") : snprintf(buf, sizeof(buf), "%lld", v);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return errno;
	if (write(fd, buf, (size_t)n) != n)
		err = errno;
	close(fd);
	return err;
}

/* A cgroup file name for 2 MiB pages in this hierarchy's spelling. */
static const char *file(const struct cg *c, int which)
{
	static const char *const v1[] = { "hugetlb.2MB.limit_in_bytes",
					  "hugetlb.2MB.rsvd.limit_in_bytes",
					  "hugetlb.2MB.failcnt" };
	static const char *const v2[] = { "hugetlb.2MB.max", "hugetlb.2MB.rsvd.max",
					  "hugetlb.2MB.events" };

	return c->v1 ? v1[which] : v2[which];
}

enum { LIMIT, RSVD_LIMIT, FAILS };

/*
 * Write @v into @file of @dir; v2 lets a process move only with write access
 * to the common ancestor's cgroup.procs (the root's), so unprivileged there
 * the test cannot be set up (v1 delegates by directory).
 */
static void put(const struct cg *c, const char *dir, const char *name, long long v)
{
	int err = try_put(dir, c->v1, name, v);

	if ((err == EACCES || err == EPERM) && !c->v1 && geteuid())
		cr_skip_test("cgroup v2: %s needs root (%s)", name, strerror(err));
	cr_assert_eq(err, 0, "%s/%s = %lld: %s", dir, name, v, strerror(err));
}

static const char *harness_cgroup(void)
{
	const char *base = getenv("HUGERING_TEST_HUGETLB_CGROUP");

	if (!base || !*base) {
		if (th_ci())
			cr_assert_fail("no hugetlb cgroup from the harness (run as root: "
				       "scripts/run-tests.sh prepares one)");
		cr_skip_test("no hugetlb cgroup: run the tests as root through scripts/run-tests.sh");
	}
	return base;
}

/*
 * Move this process into a new hugetlb cgroup limited to @limit / @rsvd bytes
 * (-1: none); with @nested, into an unlimited child of it (the limit is a
 * parent's, as a pod's or a slice's would be).
 */
static void enter(struct cg *c, long long limit, long long rsvd, bool nested)
{
	const char *base = harness_cgroup();
	char path[1100];

	snprintf(c->dir, sizeof(c->dir), "%s/t-%d", base, (int)getpid());
	cr_assert_eq(mkdir(c->dir, 0755), 0, "mkdir %s: %s", c->dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/hugetlb.2MB.limit_in_bytes", c->dir);
	c->v1 = !access(path, F_OK);
	put(c, c->dir, file(c, LIMIT), limit);
	put(c, c->dir, file(c, RSVD_LIMIT), rsvd);
	snprintf(path, sizeof(path), "%s/leaf", c->dir);
	if (nested)
		cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s: %s", path, strerror(errno));
	put(c, nested ? path : c->dir, "cgroup.procs", getpid());
}

/*
 * Move this process into a cgroup five levels below a new one under the
 * harness's, each level named with 70 characters (a path longer than any
 * fixed reason buffer the library had), limited there to @limit bytes.
 * In v2 each level passes the controller down.
 */
static void enter_deep(struct cg *c, long long limit)
{
	static const char name[] = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij";
	char path[1100];
	size_t n;
	int err;

	snprintf(c->dir, sizeof(c->dir), "%s/t-%d", harness_cgroup(), (int)getpid());
	cr_assert_eq(mkdir(c->dir, 0755), 0, "mkdir %s: %s", c->dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/hugetlb.2MB.limit_in_bytes", c->dir);
	c->v1 = !access(path, F_OK);
	for (int i = 0; i < 5; i++) {
		if (!c->v1) {
			err = try_put_text(c->dir, "cgroup.subtree_control", "+hugetlb");
			cr_assert_eq(err, 0, "%s: +hugetlb: %s", c->dir, strerror(err));
		}
		n = strlen(c->dir);
		snprintf(c->dir + n, sizeof(c->dir) - n, "/level-%d-%s", i, name);
		cr_assert_eq(mkdir(c->dir, 0755), 0, "mkdir %s: %s", c->dir, strerror(errno));
	}
	cr_assert_gt(strlen(c->dir), 300, "%s", c->dir);
	put(c, c->dir, file(c, LIMIT), limit);
	put(c, c->dir, "cgroup.procs", getpid());
}

/* How often the cgroup refused a page (v1 failcnt; v2 events "max N"). */
static long fails(const struct cg *c)
{
	char path[1100], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", c->dir, file(c, FAILS));
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = c->v1 ? buf : strstr(buf, "max ");
	return p ? atol(c->v1 ? p : p + 4) : -1;
}

static int region(size_t pages, struct hugering_region **r)
{
	struct hugering_region_opts o = { .size = pages * SZ_2M, .page_size = SZ_2M,
					  .numa_node = -1 };

	return hugering_region_alloc(&o, r);
}

/* Over the fault-time limit: -ENOMEM naming the limit file, no SIGBUS, no page kept. */
Test(cgroup, fault_limit_is_enomem_with_the_file_named)
{
	struct hugering_region *r;
	long free0;
	struct cg c;

	th_need_pool(SZ_2M, 4);
	enter(&c, 2 * (long long)SZ_2M, -1, false);
	cr_assert_eq(region(2, &r), 0, "within the limit: %s", hugering_last_error());
	hugering_region_free(r);
	free0 = th_pool_field(SZ_2M, "free_hugepages");
	cr_assert_eq(region(3, &r), -ENOMEM);
	cr_assert(strstr(hugering_last_error(), "hugetlb cgroup limit") &&
		  strstr(hugering_last_error(), file(&c, LIMIT)), "%s", hugering_last_error());
	cr_assert_gt(fails(&c), 0, "the cgroup never refused a page: nothing was tested");
	/* >=: an earlier test's rings may still be handing pages back */
	cr_assert_geq(th_pool_field(SZ_2M, "free_hugepages"), free0, "pages kept after failing");
}

/* Over the reservation limit: refused at mmap, named too. */
Test(cgroup, reservation_limit_is_enomem_with_the_file_named)
{
	struct hugering_region *r;
	struct cg c;

	th_need_pool(SZ_2M, 4);
	enter(&c, -1, (long long)SZ_2M, false);
	cr_assert_eq(region(1, &r), 0, "within the limit: %s", hugering_last_error());
	hugering_region_free(r);
	cr_assert_eq(region(2, &r), -ENOMEM);
	cr_assert(strstr(hugering_last_error(), file(&c, RSVD_LIMIT)), "%s",
		  hugering_last_error());
}

/* A ring whose arena cannot get a page: kernel-mapped, and the reason is the cgroup. */
Test(cgroup, ring_falls_back_saying_cgroup)
{
	struct hugering_arena_opts ao = { .page_size = SZ_2M, .numa_node = -1, .wait_ms = -1 };
	struct io_uring_params p = { 0 };
	struct hugering_ring_info info;
	struct hugering_arena *a;
	struct hugering_init_opts o = { .numa_node = -1 };
	struct io_uring ring;
	struct cg c;

	th_need_pool(SZ_2M, 2);
	enter(&c, 0, -1, false);
	cr_assert_eq(hugering_arena_create(&ao, &a), 0, "%s", hugering_last_error());
	o.arena = a;
	cr_assert_eq(hugering_queue_init_opts(256, &ring, &p, &o), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_KERNEL);
	cr_assert_eq(info.fallback_errno, ENOMEM);
	cr_assert(strstr(info.fallback_reason, "hugetlb cgroup limit"), "%s", info.fallback_reason);
	th_nops(&ring, 2 * p.cq_entries);
	hugering_queue_exit(&ring);

	/* nommap: the error itself, same words. */
	o.policy = HUGERING_POLICY_NOMMAP;
	p = (struct io_uring_params){ 0 };
	cr_assert_eq(hugering_queue_init_opts(256, &ring, &p, &o), -ENOMEM);
	cr_assert(strstr(hugering_last_error(), "hugetlb cgroup limit"), "%s", hugering_last_error());
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* FALLBACK over the limit: base pages, and the reason names the cgroup. */
Test(cgroup, fallback_region_says_cgroup)
{
	struct hugering_region_opts o = { .size = 2 * SZ_2M, .page_size = SZ_2M, .numa_node = -1,
					  .flags = HUGERING_REGION_FALLBACK };
	struct hugering_region_info info;
	struct hugering_region *r;
	struct cg c;

	th_need_pool(SZ_2M, 2);
	enter(&c, 0, -1, false);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_region_info(r, &info), 0);
	cr_assert_eq(info.page_size, 4096);
	cr_assert_eq(info.fallback_errno, ENOMEM);
	cr_assert(strstr(info.fallback_reason, "base pages: hugetlb cgroup limit"), "%s",
		  info.fallback_reason);
	hugering_region_free(r);
}

/* The limit is on the parent: found by walking up, and named. */
Test(cgroup, parent_limit_is_found)
{
	struct hugering_region *r;
	struct cg c;

	th_need_pool(SZ_2M, 4);
	enter(&c, (long long)SZ_2M, -1, true);
	cr_assert_eq(region(2, &r), -ENOMEM);
	cr_assert(strstr(hugering_last_error(), file(&c, LIMIT)) &&
		  strstr(hugering_last_error(), c.dir) && !strstr(hugering_last_error(), "leaf"),
		  "%s", hugering_last_error());
}

/*
 * A cgroup path longer than 300 characters: the ring's fallback reason, the
 * nommap error and a region's fallback reason name it whole.
 */
Test(cgroup, long_cgroup_path_named_whole)
{
	struct hugering_arena_opts ao = { .page_size = SZ_2M, .wait_ms = -1 };
	struct hugering_region_opts ro = { .size = SZ_2M, .page_size = SZ_2M,
					   .flags = HUGERING_REGION_FALLBACK };
	struct io_uring_params p = { 0 };
	struct hugering_init_opts o = { 0 };
	struct hugering_region_info ri;
	struct hugering_ring_info info;
	struct hugering_region *r;
	struct hugering_arena *a;
	struct io_uring ring;
	struct cg c;

	th_need_pool(SZ_2M, 2);
	enter_deep(&c, 0);
	cr_assert_eq(hugering_arena_create(&ao, &a), 0, "%s", hugering_last_error());
	o.arena = a;
	cr_assert_eq(hugering_queue_init_opts(256, &ring, &p, &o), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_KERNEL);
	cr_assert(strstr(info.fallback_reason, "hugetlb cgroup limit") &&
		  strstr(info.fallback_reason, c.dir), "cgroup %s, reason %s", c.dir,
		  info.fallback_reason);
	hugering_queue_exit(&ring);

	o.policy = HUGERING_POLICY_NOMMAP;
	p = (struct io_uring_params){ 0 };
	cr_assert_eq(hugering_queue_init_opts(256, &ring, &p, &o), -ENOMEM);
	cr_assert(strstr(hugering_last_error(), c.dir), "cgroup %s, error %s", c.dir,
		  hugering_last_error());
	cr_assert_eq(hugering_arena_destroy(a), 0);

	cr_assert_eq(hugering_region_alloc(&ro, &r), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_region_info(r, &ri), 0);
	cr_assert_eq(ri.page_size, 4096);
	cr_assert(strstr(ri.fallback_reason, c.dir), "cgroup %s, reason %s", c.dir,
		  ri.fallback_reason);
	hugering_region_free(r);
	ro.flags = 0;
	cr_assert_eq(hugering_region_alloc(&ro, &r), -ENOMEM);
	cr_assert(strstr(hugering_last_error(), c.dir), "cgroup %s, error %s", c.dir,
		  hugering_last_error());
}

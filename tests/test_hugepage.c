/* SPDX-License-Identifier: MIT */
/* Hugepage discovery against what sysfs and /proc say, read independently. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(hugepage, .init = th_init, .fini = th_fini, .timeout = 300);

/* Every hugepages-NkB directory in sysfs, as the truth. */
static int sysfs_sizes(size_t *out, int max)
{
	DIR *d = opendir("/sys/kernel/mm/hugepages");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		size_t kb;

		if (sscanf(e->d_name, "hugepages-%zukB", &kb) == 1 && n < max)
			out[n++] = kb * 1024;
	}
	closedir(d);
	return n;
}

Test(hugepage, sizes_match_sysfs_sorted)
{
	size_t want[HUGERING_MAX_PAGE_SIZES], got[HUGERING_MAX_PAGE_SIZES];
	int nw = sysfs_sizes(want, HUGERING_MAX_PAGE_SIZES);
	int ng = hugering_page_sizes(got, HUGERING_MAX_PAGE_SIZES);

	cr_assert_eq(ng, nw);
	for (int i = 0; i < ng; i++) {
		bool found = false;

		for (int j = 0; j < nw; j++)
			found |= got[i] == want[j];
		cr_assert(found, "size %zu not in sysfs", got[i]);
		if (i)
			cr_assert_gt(got[i], got[i - 1], "not ascending");
	}
	cr_assert_eq(hugering_page_sizes(got, 1), 1, "max must cap the count");
	cr_assert_eq(hugering_page_sizes(NULL, 4), -EINVAL);
}

Test(hugepage, default_size_is_meminfo_hugepagesize)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[256];
	size_t kb = 0;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %zu kB", &kb) == 1)
			break;
	fclose(f);
	cr_assert_eq(hugering_default_page_size(), kb * 1024);
}

Test(hugepage, pool_counts_match_sysfs)
{
	struct hugering_pool p;

	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &p), 0);
	cr_assert_eq(p.page_size, SZ_2M);
	cr_assert_eq(p.total, th_pool_field(SZ_2M, "nr_hugepages"));
	cr_assert_eq(p.free, th_pool_field(SZ_2M, "free_hugepages"));
	cr_assert_eq(p.reserved, th_pool_field(SZ_2M, "resv_hugepages"));
	cr_assert_eq(p.surplus, th_pool_field(SZ_2M, "surplus_hugepages"));
	cr_assert_eq(p.overcommit, th_pool_field(SZ_2M, "nr_overcommit_hugepages"));
	cr_assert_eq(p.usable, p.free - p.reserved);
	cr_assert_eq(p.is_default, hugering_default_page_size() == SZ_2M);
}

Test(hugepage, pool_usable_drops_with_reservation)
{
	struct hugering_pool before, after;
	struct hugering_region_opts o = { .size = 2 * SZ_2M, .page_size = SZ_2M,
					  .numa_node = -1 };
	struct hugering_region *r;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &before), 0);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &after), 0);
	cr_assert_eq(after.usable, before.usable - 2);
	hugering_region_free(r);
}

Test(hugepage, per_node_pools_add_up)
{
	int nodes[64], n = hugering_numa_nodes(nodes, 64);
	long total = 0, free_sum = 0;
	struct hugering_pool sys, p;

	cr_assert_gt(n, 0);
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &sys), 0);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(hugering_pool_get(SZ_2M, nodes[i], &p), 0);
		cr_assert_eq(p.numa_node, nodes[i]);
		cr_assert_eq(p.reserved, -1, "nodes keep no reservations");
		total += p.total;
		free_sum += p.free;
	}
	cr_assert_eq(total, sys.total);
	cr_assert_eq(free_sum, sys.free);
}

Test(hugepage, bad_pool_requests)
{
	struct hugering_pool p;

	cr_assert_eq(hugering_pool_get(SZ_2M, -1, NULL), -EINVAL);
	cr_assert_eq(hugering_pool_get(0, -1, &p), -EINVAL);
	cr_assert_eq(hugering_pool_get(3 * MiB, -1, &p), -EINVAL);
	cr_assert_eq(hugering_pool_get(4096, -1, &p), -EINVAL);
	cr_assert_eq(hugering_pool_get(SZ_2M, -2, &p), -EINVAL);
	cr_assert_eq(hugering_pool_get(SZ_2M, 999, &p), -ENODEV);
}

Test(hugepage, numa_nodes_match_sysfs)
{
	int nodes[64], n = hugering_numa_nodes(nodes, 64);

	cr_assert_gt(n, 0);
	for (int i = 0; i < n; i++) {
		char path[128];

		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", nodes[i]);
		cr_assert_eq(access(path, F_OK), 0, "%s", path);
	}
}

static int count_hugetlbfs_mounts(void)
{
	FILE *f = fopen("/proc/self/mounts", "r");
	char dev[256], dir[256], type[64];
	int n = 0;

	cr_assert_not_null(f);
	while (fscanf(f, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3)
		n += !strcmp(type, "hugetlbfs");
	fclose(f);
	return n;
}

Test(hugepage, mounts_match_mount_table)
{
	struct hugering_mount m[16];

	cr_assert_eq(hugering_mounts(m, 16), count_hugetlbfs_mounts());
}

/*
 * Root: mount hugetlbfs with pagesize=1G and 2M in a private mount namespace
 * (this test's own process) and find both with their page sizes.
 */
Test(hugepage, mounts_found_with_page_size)
{
	char d2[] = "/tmp/hr-mnt2-XXXXXX", d1[] = "/tmp/hr-mnt1-XXXXXX";
	struct hugering_mount m[16];
	int n, seen = 0;

	if (geteuid() != 0) {
		cr_assert_eq(unshare(CLONE_NEWNS), -1, "unprivileged unshare must fail");
		return;	/* the unprivileged side is mounts_match_mount_table */
	}
	cr_assert_eq(unshare(CLONE_NEWNS), 0);
	cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
	cr_assert_not_null(mkdtemp(d2));
	cr_assert_not_null(mkdtemp(d1));
	cr_assert_eq(mount("none", d2, "hugetlbfs", 0, "pagesize=2M"), 0);
	cr_assert_eq(mount("none", d1, "hugetlbfs", 0, "pagesize=1G"), 0);
	n = hugering_mounts(m, 16);
	for (int i = 0; i < n; i++) {
		if (!strcmp(m[i].path, d2)) {
			cr_assert_eq(m[i].page_size, SZ_2M);
			seen |= 1;
		}
		if (!strcmp(m[i].path, d1)) {
			cr_assert_eq(m[i].page_size, GiB);
			seen |= 2;
		}
	}
	umount(d2);
	umount(d1);
	rmdir(d2);
	rmdir(d1);
	cr_assert_eq(seen, 3, "both mounts found");
}

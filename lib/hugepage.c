/* SPDX-License-Identifier: MIT */
/*
 * Hugepage discovery: which sizes the kernel offers (via libhugetlbfs), the
 * pool counters per size and per NUMA node (sysfs), hugetlbfs mounts.
 */
#include <errno.h>
#include <stddef.h>
#include <hugetlbfs.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

int hugering_page_sizes(size_t *sizes, int max)
{
	long raw[HUGERING_MAX_PAGE_SIZES];
	int n, i, kept = 0;

	if (!sizes || max < 0)
		return -EINVAL;
	n = gethugepagesizes(raw, HUGERING_MAX_PAGE_SIZES);
	if (n < 0)
		return -ENOSYS;	/* no hugetlb support in this kernel */
	size_t all[HUGERING_MAX_PAGE_SIZES];

	for (i = 0; i < n; i++)
		if (raw[i] > 0)
			all[kept++] = (size_t)raw[i];
	qsort(all, kept, sizeof(all[0]), cmp_size);
	if (kept > max)
		kept = max;
	memcpy(sizes, all, kept * sizeof(all[0]));
	return kept;
}

size_t hugering_default_page_size(void)
{
	long sz = gethugepagesize();

	return sz > 0 ? (size_t)sz : 0;
}

bool hr_page_size_supported(size_t page_size)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES];
	int n = hugering_page_sizes(sizes, HUGERING_MAX_PAGE_SIZES);

	for (int i = 0; i < n; i++)
		if (sizes[i] == page_size)
			return true;
	return false;
}

bool hr_numa_node_online(int node)
{
	int nodes[1024];
	int n = hugering_numa_nodes(nodes, 1024);

	for (int i = 0; i < n; i++)
		if (nodes[i] == node)
			return true;
	return false;
}

/* Parse a sysfs cpulist/nodelist such as "0-3,8,10-11". */
static int parse_list(const char *s, int *out, int max)
{
	int n = 0;

	while (*s && *s != '\n') {
		char *end;
		long a = strtol(s, &end, 10), b;

		if (end == s)
			return -EIO;
		b = a;
		if (*end == '-')
			b = strtol(end + 1, &end, 10);
		for (long v = a; v <= b; v++) {
			if (n < max)
				out[n] = (int)v;
			n++;
		}
		s = *end == ',' ? end + 1 : end;
	}
	return n < max ? n : max;
}

int hugering_numa_nodes(int *nodes, int max)
{
	char buf[4096];
	int ret;

	if (!nodes || max < 0)
		return -EINVAL;
	ret = hr_read_text("/sys/devices/system/node/online", buf, sizeof(buf));
	if (ret == -ENOENT) {
		/* Kernel without NUMA: everything is node 0. */
		if (max > 0)
			nodes[0] = 0;
		return max > 0;
	}
	if (ret < 0)
		return ret;
	return parse_list(buf, nodes, max);
}

static int pool_dir(size_t page_size, int node, char *buf, size_t len)
{
	int n;

	if (node < 0)
		n = snprintf(buf, len, "/sys/kernel/mm/hugepages/hugepages-%zukB",
			     page_size / 1024);
	else
		n = snprintf(buf, len,
			     "/sys/devices/system/node/node%d/hugepages/hugepages-%zukB",
			     node, page_size / 1024);
	return n < (int)len ? 0 : -ENAMETOOLONG;
}

static long pool_field(const char *dir, const char *name, int *err)
{
	char path[512];
	long v = -1;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ret = hr_read_long(path, &v);
	if (ret < 0 && !*err)
		*err = ret;
	return ret < 0 ? -1 : v;
}

int hugering_pool_get(size_t page_size, int numa_node, struct hugering_pool *out)
{
	char dir[256];
	int err = 0;

	if (!out || !page_size || numa_node < -1)
		return -EINVAL;
	if (!hr_page_size_supported(page_size))
		return -EINVAL;
	if (numa_node >= 0 && !hr_numa_node_online(numa_node))
		return -ENODEV;
	if (pool_dir(page_size, numa_node, dir, sizeof(dir)))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->page_size = page_size;
	out->numa_node = numa_node;
	out->is_default = page_size == hugering_default_page_size();
	out->total = pool_field(dir, "nr_hugepages", &err);
	out->free = pool_field(dir, "free_hugepages", &err);
	out->surplus = pool_field(dir, "surplus_hugepages", &err);
	if (numa_node < 0) {
		out->reserved = pool_field(dir, "resv_hugepages", &err);
		out->overcommit = pool_field(dir, "nr_overcommit_hugepages", &err);
		out->usable = out->free - out->reserved;
	} else {
		/* The kernel keeps reservations only system-wide. */
		out->reserved = -1;
		out->overcommit = -1;
		out->usable = out->free;
	}
	if (out->usable < 0)
		out->usable = 0;
	return err;
}

int hr_pool_usable(size_t page_size, int numa_node, long *usable)
{
	struct hugering_pool p;
	int ret = hugering_pool_get(page_size, numa_node, &p);

	if (ret < 0)
		return ret;
	*usable = p.usable;
	if (numa_node >= 0) {
		/* A node cannot give more than the system has unreserved. */
		ret = hugering_pool_get(page_size, -1, &p);
		if (ret < 0)
			return ret;
		if (p.usable < *usable)
			*usable = p.usable;
	}
	return 0;
}

/* "pagesize=1G" / "pagesize=2M" / "pagesize=2097152" */
static size_t parse_pagesize_opt(const char *opts)
{
	const char *p = strstr(opts, "pagesize=");
	char *end;
	unsigned long long v;

	if (!p)
		return hugering_default_page_size();
	v = strtoull(p + 9, &end, 10);
	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	default: break;
	}
	return (size_t)v;
}

int hugering_mounts(struct hugering_mount *out, int max)
{
	/*
	 * libhugetlbfs's hugetlbfs_find_path_for_size() names one mount per
	 * size; operators want all of them, so read the mount table here.
	 */
	FILE *f;
	struct mntent ent;
	char buf[4096];
	int n = 0;

	if (!out || max < 0)
		return -EINVAL;
	f = setmntent("/proc/self/mounts", "re");
	if (!f)
		return -errno;
	while (getmntent_r(f, &ent, buf, sizeof(buf))) {
		if (strcmp(ent.mnt_type, "hugetlbfs"))
			continue;
		if (n < max) {
			hr_copy_str(out[n].path, sizeof(out[n].path), ent.mnt_dir);
			out[n].page_size = parse_pagesize_opt(ent.mnt_opts);
			n++;
		}
	}
	endmntent(f);
	return n;
}

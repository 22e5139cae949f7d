/* SPDX-License-Identifier: MIT */
/*
 * Hugepage discovery: which sizes the kernel offers (sysfs), the
 * pool counters per size and per NUMA node (sysfs), hugetlbfs mounts, and
 * why hugepages could not be had (the pool, else cgroup.c's limits).
 *
 * Every reader takes a root: "" for the live system, or the tree named by
 * HUGERING_SYSROOT (a captured or fake /sys and /proc, for hugering-diag and
 * its tests).  The public functions honour HUGERING_SYSROOT; the allocator
 * always reads the live system.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * "hugepages-2048kB" -> 2048; 0 for any other name, or a size that does not
 * fit in bytes (a hostile tree; sscanf would overflow silently).
 */
static size_t dir_kb(const char *name)
{
	const char *p = name + strlen("hugepages-");
	unsigned long long kb;
	char *end;

	if (strncmp(name, "hugepages-", strlen("hugepages-")) || *p < '0' || *p > '9')
		return 0;
	errno = 0;
	kb = strtoull(p, &end, 10);
	if (errno || strcmp(end, "kB") || kb > SIZE_MAX / 1024)
		return 0;
	return (size_t)kb;
}

/*
 * The sizes the kernel offers, from sysfs, for the live system as for
 * another root.  Not through libhugetlbfs: its HUGETLB_* environment
 * (HUGETLB_DEFAULT_PAGE_SIZE, HUGETLB_VERBOSE, ...) would change our answers
 * and print to stderr, and a library must do neither.  -ENOSYS without
 * hugetlb in the kernel; the real errno (EMFILE, ENOMEM, ...) otherwise.
 */
static int raw_sizes(const char *root, size_t *all)
{
	char path[512];
	DIR *d;
	struct dirent *e;
	int kept = 0;

	hr_path(root, "/sys/kernel/mm/hugepages", path, sizeof(path));
	d = opendir(path);
	if (!d)
		return errno == ENOENT || errno == ENOTDIR ? -ENOSYS : -errno;
	while ((e = readdir(d)) && kept < HUGERING_MAX_PAGE_SIZES) {
		size_t kb = dir_kb(e->d_name);

		if (kb)
			all[kept++] = kb * 1024;
	}
	closedir(d);
	return kept;
}

int hr_page_sizes_at(const char *root, size_t *sizes, int max)
{
	size_t all[HUGERING_MAX_PAGE_SIZES];
	int kept;

	if (!sizes || max < 0)
		return -EINVAL;
	kept = raw_sizes(root, all);
	if (kept < 0)
		return kept;
	qsort(all, kept, sizeof(all[0]), cmp_size);
	if (kept > max)
		kept = max;
	memcpy(sizes, all, kept * sizeof(all[0]));
	return kept;
}

int hugering_page_sizes(size_t *sizes, int max)
{
	return HR_PUBLIC(hr_page_sizes_at(hr_sysroot(), sizes, max));
}

int hr_default_page_size_get(const char *root, size_t *ps)
{
	char path[512], buf[8192], *s;
	size_t kb;
	int ret;

	/* The kernel's default, never HUGETLB_DEFAULT_PAGE_SIZE's (see raw_sizes). */
	hr_path(root, "/proc/meminfo", path, sizeof(path));
	ret = hr_read_text(path, buf, sizeof(buf));
	if (ret < 0)
		return ret;
	s = strstr(buf, "Hugepagesize:");
	if (!s || sscanf(s, "Hugepagesize: %zu kB", &kb) != 1 || !kb || kb > SIZE_MAX / 1024)
		return -ENOSYS;	/* no hugetlb in this kernel */
	*ps = kb * 1024;
	return 0;
}

size_t hr_default_page_size_at(const char *root)
{
	size_t ps = 0;

	return hr_default_page_size_get(root, &ps) ? 0 : ps;
}

size_t hugering_default_page_size(void)
{
	hr_clear_error();
	return hr_default_page_size_at(hr_sysroot());
}

/*
 * 0 if the kernel offers @page_size, -EINVAL if it does not, the errno if
 * the sizes cannot be read (EMFILE with every descriptor taken is not a
 * bad option).
 */
int hr_page_size_check(size_t page_size)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES];
	int n = hr_page_sizes_at("", sizes, HUGERING_MAX_PAGE_SIZES);

	if (n < 0)
		return n == -ENOSYS ? -EINVAL : n;
	for (int i = 0; i < n; i++)
		if (sizes[i] == page_size)
			return 0;
	return -EINVAL;
}

bool hr_page_size_supported(size_t page_size)
{
	return hr_page_size_check(page_size) == 0;
}

/* As hr_page_size_check, for a NUMA node. */
static int numa_node_check(int node)
{
	int nodes[1024];
	int n = hr_numa_nodes_at("", nodes, 1024);

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++)
		if (nodes[i] == node)
			return 0;
	return -EINVAL;
}

bool hr_numa_node_online(int node)
{
	return numa_node_check(node) == 0;
}

/*
 * A public options struct's node: named only with its NUMA_NODE flag, so
 * zeroed options mean any node (-1 inside the library).  -1 without the
 * flag is the older spelling of "any"; any other unflagged value is an
 * error rather than a silent guess.
 */
int hr_opts_node(int numa_node, bool flagged, int *node)
{
	if (!flagged) {
		*node = -1;
		return numa_node == 0 || numa_node == -1 ? 0 : -EINVAL;
	}
	*node = numa_node;
	return numa_node >= 0 ? numa_node_check(numa_node) : -EINVAL;
}

/* One list number: a node id, 0..INT_MAX, digits only. */
static bool list_number(const char *s, char **end, int *out)
{
	long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtol(s, end, 10);
	if (errno || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

/*
 * The CPU's node as the kernel sees it: getcpu for the calling thread (a
 * snapshot: the thread may move later, as with any first-touch placement),
 * else the nodeN link in the CPU's sysfs directory.  A kernel without NUMA
 * has neither a node link nor more than one node: node 0.
 */
int hr_cpu_node(int cpu, int *node)
{
	char path[64];
	struct dirent *e;
	DIR *d;

	if (cpu < 0) {
		unsigned c, n;

		if (syscall(SYS_getcpu, &c, &n, NULL))
			return -errno;
		*node = (int)n;
		return 0;
	}
	snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d", cpu);
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? -EINVAL : -errno;
	*node = 0;
	while ((e = readdir(d))) {
		int n;
		char *end;

		if (strncmp(e->d_name, "node", 4) || !list_number(e->d_name + 4, &end, &n) || *end)
			continue;
		*node = n;
		break;
	}
	closedir(d);
	return 0;
}

int hr_opts_node_local(int numa_node, bool flagged, bool local, int cpu, int *node)
{
	int ret;

	if (!local)
		return hr_opts_node(numa_node, flagged, node);
	if (flagged || (numa_node != 0 && numa_node != -1))
		return -EINVAL;
	ret = hr_cpu_node(cpu, node);
	return ret ? ret : numa_node_check(*node);
}

/*
 * Parse a sysfs cpulist/nodelist such as "0-3,8,10-11" into at most @max
 * ids.  The file may come from a hostile tree (HUGERING_SYSROOT): a range
 * is walked only as far as @out has room, so "0-2000000000" costs @max
 * steps, and anything that is not such a list is -EIO.
 */
static int parse_list(const char *s, int *out, int max)
{
	int n = 0, last = -1;

	while (*s && *s != '\n') {
		char *end;
		int a, b;

		if (!list_number(s, &end, &a))
			return -EIO;
		b = a;
		if (*end == '-' && !list_number(end + 1, &end, &b))
			return -EIO;
		/* The kernel prints ranges ascending and apart: anything else is not its. */
		if (b < a || a <= last || (*end && *end != ',' && *end != '\n'))
			return -EIO;
		last = b;
		for (int v = a; n < max; v++) {
			out[n++] = v;
			if (v == b)
				break;
		}
		s = *end == ',' ? end + 1 : end;
	}
	return n;
}

int hr_numa_nodes_at(const char *root, int *nodes, int max)
{
	char buf[4096], path[512];
	int ret;

	if (!nodes || max < 0)
		return -EINVAL;
	hr_path(root, "/sys/devices/system/node/online", path, sizeof(path));
	ret = hr_read_text(path, buf, sizeof(buf));
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

int hugering_numa_nodes(int *nodes, int max)
{
	return HR_PUBLIC(hr_numa_nodes_at(hr_sysroot(), nodes, max));
}

static int pool_dir(const char *root, size_t page_size, int node, char *buf, size_t len)
{
	int n;

	if (node < 0)
		n = snprintf(buf, len, "%s/sys/kernel/mm/hugepages/hugepages-%zukB", root,
			     page_size / 1024);
	else
		n = snprintf(buf, len,
			     "%s/sys/devices/system/node/node%d/hugepages/hugepages-%zukB",
			     root, node, page_size / 1024);
	return n < (int)len ? 0 : -ENAMETOOLONG;
}

static long pool_field(const char *dir, const char *name, int *err)
{
	char path[1200];
	long v = -1;
	int ret;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ret = hr_read_long(path, &v);
	if (!ret && v < 0)
		ret = -EIO;	/* a page count is never negative */
	if (ret < 0 && !*err)
		*err = ret;
	return ret < 0 ? -1 : v;
}

static bool size_at(const char *root, size_t page_size)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES];
	int n = hr_page_sizes_at(root, sizes, HUGERING_MAX_PAGE_SIZES);

	for (int i = 0; i < n; i++)
		if (sizes[i] == page_size)
			return true;
	return false;
}

static bool node_at(const char *root, int node)
{
	int nodes[1024];
	int n = hr_numa_nodes_at(root, nodes, 1024);

	for (int i = 0; i < n; i++)
		if (nodes[i] == node)
			return true;
	return false;
}

int hr_pool_get_at(const char *root, size_t page_size, int numa_node,
		   struct hugering_pool *out)
{
	char dir[1024];
	int err = 0;

	if (!out || !page_size || numa_node < -1)
		return -EINVAL;
	if (!size_at(root, page_size))
		return -EINVAL;
	if (numa_node >= 0 && !node_at(root, numa_node))
		return -ENODEV;
	if (pool_dir(root, page_size, numa_node, dir, sizeof(dir)))
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->page_size = page_size;
	out->numa_node = numa_node;
	out->is_default = page_size == hr_default_page_size_at(root);
	out->total = pool_field(dir, "nr_hugepages", &err);
	out->free = pool_field(dir, "free_hugepages", &err);
	out->surplus = pool_field(dir, "surplus_hugepages", &err);
	if (numa_node < 0) {
		out->reserved = pool_field(dir, "resv_hugepages", &err);
		out->overcommit = pool_field(dir, "nr_overcommit_hugepages", &err);
		/* Both >= 0 when read (-1 unreadable): no overflow, none guessed. */
		out->usable = out->free >= 0 && out->reserved >= 0 ? out->free - out->reserved : 0;
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

int hugering_pool_get(size_t page_size, int numa_node, struct hugering_pool *out)
{
	return HR_PUBLIC(hr_pool_get_at(hr_sysroot(), page_size, numa_node, out));
}

int hr_pool_usable(size_t page_size, int numa_node, long *usable)
{
	struct hugering_pool p;
	int ret = hr_pool_get_at("", page_size, numa_node, &p);

	if (ret < 0)
		return ret;
	*usable = p.usable;
	if (numa_node >= 0) {
		/* A node cannot give more than the system has unreserved. */
		ret = hr_pool_get_at("", page_size, -1, &p);
		if (ret < 0)
			return ret;
		if (p.usable < *usable)
			*usable = p.usable;
	}
	return 0;
}

/* "pagesize=1G" / "pagesize=2M" / "pagesize=2097152" */
size_t hr_mount_page_size(const char *root, const char *opts)
{
	const char *p = strstr(opts, "pagesize=");
	char *end;
	unsigned long long v;

	if (!p)
		return hr_default_page_size_at(root);
	v = strtoull(p + 9, &end, 10);
	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	default: break;
	}
	return (size_t)v;
}

int hr_mounts_at(const char *root, struct hugering_mount *out, int max)
{
	/*
	 * libhugetlbfs's hugetlbfs_find_path_for_size() names one mount per
	 * size; operators want all of them, so read the mount table here.
	 */
	FILE *f;
	struct mntent ent;
	char *buf, path[PATH_MAX];
	int n = 0, ret = 0;

	if (!out || max < 0)
		return -EINVAL;
	hr_path(root, "/proc/self/mounts", path, sizeof(path));
	f = setmntent(path, "re");
	if (!f)
		return -errno;
	buf = malloc(HR_MNT_LINE_MAX);
	if (!buf) {
		endmntent(f);
		return -ENOMEM;
	}
	while (!ret && getmntent_r(f, &ent, buf, HR_MNT_LINE_MAX)) {
		if (strcmp(ent.mnt_type, "hugetlbfs"))
			continue;
		if (n < max) {
			memset(&out[n], 0, sizeof(out[n]));
			/* Whole and kept: a caller's array of mounts needs no freeing. */
			out[n].path = hr_intern(ent.mnt_dir);
			if (!out[n].path)
				ret = -ENOMEM;
			out[n].page_size = hr_mount_page_size(root, ent.mnt_opts);
			n++;
		}
	}
	endmntent(f);
	free(buf);
	return ret ? ret : n;
}

int hugering_mounts(struct hugering_mount *out, int max)
{
	return HR_PUBLIC(hr_mounts_at(hr_sysroot(), out, max));
}

/*
 * Why @bytes more of @ps pages (on @node, -1 any) cannot be had: this
 * process's hugetlb cgroup or a parent (fault-time or reservation limit),
 * else the pool.  False if neither explains it (the pool has them:
 * fragmentation, NUMA placement, a race); *@why then says what was seen.
 * *@why is a heap string for the caller to free (NULL when memory is out).
 */
bool hr_explain_no_hugepages(size_t ps, int node, size_t bytes, char **why)
{
	struct hugering_pool pool;
	long long need = (long long)HR_ALIGN_UP(bytes, ps);

	/*
	 * The pool first: it is a few sysfs reads, while the cgroup walk parses
	 * mounts and cgroup files, and rings fall back here on every setup
	 * when the pool is empty.  A short pool explains the failure whatever
	 * the cgroup says.
	 */
	if (hr_pool_get_at("", ps, node, &pool)) {
		*why = hr_strf("no %zu kB hugepages in this kernel%s", ps >> 10,
			       node >= 0 ? " on this node" : "");
		return true;
	}
	if (pool.usable * (long long)ps < need) {
		*why = hr_strf("hugepage pool %s: %zu kB pool%s has %ld usable pages "
			       "(%ld free, %ld reserved), %lld kB needed",
			       pool.usable > 0 ? "short" : "empty", ps >> 10,
			       node >= 0 ? " of the node" : "", pool.usable, pool.free,
			       pool.reserved, need >> 10);
		return true;
	}
	if (hr_hugetlb_cgroup_refuses(ps, need, why))
		return true;
	*why = hr_strf("%lld kB of %zu kB hugepages not obtained though the pool%s has %ld "
		       "usable pages", need >> 10, ps >> 10, node >= 0 ? " of the node" : "",
		       pool.usable);
	return false;
}

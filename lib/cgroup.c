/* SPDX-License-Identifier: MIT */
/*
 * hugetlb cgroup limits: which cgroup (v1 hierarchy, else the unified one)
 * charges this process's hugepages of one size, its limits and usage, and
 * whether it or a parent keeps more pages out.  A fault over such a limit
 * is SIGBUS, a reservation over it -ENOMEM at mmap: naming the cgroup file
 * is the only way a caller learns why.
 *
 * Every reader takes a root: "" for the live system, or the tree named by
 * HUGERING_SYSROOT (hugering-diag and its tests).
 */
#include <errno.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* "2MB", "1GB": a page size as hugetlb cgroup file names spell it. */
static void cg_size_name(size_t ps, char *buf, size_t len)
{
	if (ps >= (1UL << 30))
		snprintf(buf, len, "%zuGB", ps >> 30);
	else if (ps >= (1UL << 20))
		snprintf(buf, len, "%zuMB", ps >> 20);
	else
		snprintf(buf, len, "%zuKB", ps >> 10);
}

/*
 * Where the hierarchy holding hugetlb is mounted, from @root/proc/self/mounts:
 * the v1 one (@v1), or the unified one (cgroup2).
 */
static int cg_mount(const char *root, bool v1, char *dir, size_t len)
{
	char path[PATH_MAX], *buf;
	struct mntent ent;
	FILE *f;
	int ret = -ENOENT;

	hr_path(root, "/proc/self/mounts", path, sizeof(path));
	f = setmntent(path, "re");
	if (!f)
		return -ENOENT;
	buf = malloc(HR_MNT_LINE_MAX);
	if (!buf) {
		endmntent(f);
		return -ENOMEM;
	}
	/* getmntent_r: rings may be created on several threads at once */
	while (ret && getmntent_r(f, &ent, buf, HR_MNT_LINE_MAX))
		if (v1 ? !strcmp(ent.mnt_type, "cgroup") && hasmntopt(&ent, "hugetlb")
		       : !strcmp(ent.mnt_type, "cgroup2")) {
			/* A cut mount point would name another directory. */
			ret = strlen(ent.mnt_dir) < len ? 0 : -ENAMETOOLONG;
			if (!ret)
				strcpy(dir, ent.mnt_dir);
		}
	endmntent(f);
	free(buf);
	return ret;
}

/* A limit or usage file: -1 for "max", v1's "no limit" (~2^63), or unreadable. */
static long long cg_bytes(const char *root, const char *dir, const char *file)
{
	char path[PATH_MAX], buf[64], *end;
	long long v;

	if (snprintf(path, sizeof(path), "%s%s/%s", root, dir, file) >= (int)sizeof(path) ||
	    hr_read_text(path, buf, sizeof(buf)) <= 0 || !strncmp(buf, "max", 3))
		return -1;
	v = strtoll(buf, &end, 10);
	return end == buf || v >= LLONG_MAX / 2 ? -1 : v;
}

/* Fill @cg from the v1 (@v1 true) or v2 files in @cg->dir. */
static int cg_read(const char *root, size_t ps, bool v1, struct hr_hugetlb_cg *cg)
{
	static const char *const v1_files[] = { "limit_in_bytes", "usage_in_bytes",
						"rsvd.limit_in_bytes", "rsvd.usage_in_bytes" };
	static const char *const v2_files[] = { "max", "current", "rsvd.max", "rsvd.current" };
	const char *const *files = v1 ? v1_files : v2_files;
	long long *vals[] = { &cg->max, &cg->usage, &cg->rsvd_max, &cg->rsvd_usage };
	char name[16], path[PATH_MAX];

	cg_size_name(ps, name, sizeof(name));
	for (int i = 0; i < 4; i++) {
		snprintf(cg->file[i], sizeof(cg->file[i]), "hugetlb.%s.%s", name, files[i]);
		*vals[i] = cg_bytes(root, cg->dir, cg->file[i]);
	}
	/* Neither limit nor usage file: no hugetlb controller here for this size. */
	for (int i = 0; i < 2; i++) {
		if (snprintf(path, sizeof(path), "%s%s/%s", root, cg->dir, cg->file[i]) <
		    (int)sizeof(path) && !access(path, F_OK))
			return 0;
	}
	return -ENOENT;
}

/* Up to the parent cgroup; false at the top of the hierarchy. */
static bool cg_parent(struct hr_hugetlb_cg *cg)
{
	char *slash = strrchr(cg->dir, '/');

	if (!slash || (size_t)(slash - cg->dir) < cg->top)
		return false;
	*slash = '\0';
	return true;
}

/*
 * Fill @cg for the cgroup at @mnt + @path or, where that one does not have
 * the controller (a v2 leaf below a parent that did not enable it: its pages
 * are charged to that parent), the nearest ancestor that has.
 */
static int cg_nearest(const char *root, const char *mnt, const char *path, size_t ps, bool v1,
		      struct hr_hugetlb_cg *cg)
{
	if (snprintf(cg->dir, sizeof(cg->dir), "%s%s", mnt, strcmp(path, "/") ? path : "") >=
	    (int)sizeof(cg->dir))
		return -ENAMETOOLONG;
	cg->top = strlen(mnt);
	cg->v1 = v1;
	while (cg_read(root, ps, v1, cg))
		if (!cg_parent(cg))
			return -ENOENT;
	return 0;
}

/*
 * /proc/self/cgroup: a line per hierarchy, each with a path of up to
 * PATH_MAX.  Read whole or not at all: a cut path names another cgroup.
 */
#define CG_TEXT_MAX (16 * PATH_MAX)

static int cg_scan(const char *root, size_t ps, char *text, struct hr_hugetlb_cg *cg)
{
	char path[PATH_MAX], mnt[PATH_MAX], *line, *save = NULL;
	const char *v2_path = NULL;
	int n;

	hr_path(root, "/proc/self/cgroup", path, sizeof(path));
	n = hr_read_text(path, text, CG_TEXT_MAX);
	if (n < 0 || n == CG_TEXT_MAX - 1)
		return -ENOENT;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *p = strchr(line, ':'), *q = p ? strchr(p + 1, ':') : NULL;

		if (!q)
			continue;
		*q = '\0';
		if (!strcmp(p + 1, "") && !strncmp(line, "0:", 2))
			v2_path = q + 1;
		/* A hierarchy of its own (v1): the unified one cannot have it. */
		else if (strstr(p + 1, "hugetlb") && !cg_mount(root, true, mnt, sizeof(mnt)))
			return cg_nearest(root, mnt, q + 1, ps, true, cg);
	}
	if (!v2_path || !*v2_path)
		return -ENOENT;
	if (cg_mount(root, false, mnt, sizeof(mnt)))
		strcpy(mnt, "/sys/fs/cgroup");	/* where systemd puts it */
	return cg_nearest(root, mnt, v2_path, ps, false, cg);
}

int hr_hugetlb_cgroup_at(const char *root, size_t ps, struct hr_hugetlb_cg *cg)
{
	char *text = malloc(CG_TEXT_MAX);
	int ret;

	memset(cg, 0, sizeof(*cg));
	cg->max = cg->usage = cg->rsvd_max = cg->rsvd_usage = -1;
	if (!text)
		return -ENOMEM;
	ret = cg_scan(root, ps, text, cg);
	free(text);
	return ret;
}

/*
 * Does the cgroup in @cg->dir, or a parent of it, keep @need bytes of @ps
 * pages out?  A limit set on a parent (a pod, a slice) binds as much as one
 * on the leaf.
 */
static bool cg_refuses(struct hr_hugetlb_cg *cg, size_t ps, long long need, char **why)
{
	do {
		for (int i = 0; i < 4; i += 2) {
			long long max = i ? cg->rsvd_max : cg->max;
			long long used = i ? cg->rsvd_usage : cg->usage;

			if (max >= 0 && used >= 0 && used + need > max) {
				*why = hr_strf("hugetlb cgroup limit %s = %lld kB, %lld kB in use, "
					       "%lld kB more needed (cgroup %s)", cg->file[i],
					       max >> 10, used >> 10, need >> 10, cg->dir);
				return true;
			}
		}
	} while (cg_parent(cg) && !cg_read("", ps, cg->v1, cg));
	return false;
}

bool hr_hugetlb_cgroup_refuses(size_t ps, long long need, char **why)
{
	struct hr_hugetlb_cg cg;

	return !hr_hugetlb_cgroup_at("", ps, &cg) && cg_refuses(&cg, ps, need, why);
}

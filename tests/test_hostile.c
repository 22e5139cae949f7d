/* SPDX-License-Identifier: MIT */
/*
 * Hostile input (issue 16): fake /sys and /proc trees that no kernel
 * writes, read through HUGERING_SYSROOT by the library and by
 * hugering-diag, and API misuse.  Each case must give a defined answer,
 * never a crash, a hang or undefined behaviour (the ASan+UBSan run turns
 * UB into a failure).  The tool's report of each tree is compared with a
 * golden file, text and JSON; HUGERING_UPDATE_GOLDEN=1 rewrites them.
 *
 * A tree is a copy of tests/data/sysroot/twonode in a temporary directory
 * with the hostile files written over it, so the data stays readable and
 * the 100 KB line is not committed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include "../tools/diag/model.h"

static void hostile_fini(void);

TestSuite(hostile, .init = th_init, .fini = hostile_fini, .timeout = 120);

#define HP2M "/sys/kernel/mm/hugepages/hugepages-2048kB"

/* ------------------------------------------------------------------ */
/* Trees                                                               */
/* ------------------------------------------------------------------ */

struct tree {
	char root[256];
};

/* The test's tree, removed by the suite's fini even when an assertion failed. */
static char tree_dir[256];

static void tree_remove(void)
{
	char cmd[512], buf[64];

	if (!tree_dir[0])
		return;
	unsetenv("HUGERING_SYSROOT");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tree_dir);
	th_run(cmd, buf, sizeof(buf));
	tree_dir[0] = '\0';
}

static void hostile_fini(void)
{
	tree_remove();
	th_fini();
}

/* A copy of the twonode tree; HUGERING_SYSROOT points at it for the library. */
static void tree_new(struct tree *t)
{
	char cmd[1024], buf[256];

	snprintf(t->root, sizeof(t->root), "/tmp/hugering-hostile.XXXXXX");
	cr_assert_not_null(mkdtemp(t->root), "mkdtemp: %s", strerror(errno));
	snprintf(tree_dir, sizeof(tree_dir), "%s", t->root);
	snprintf(cmd, sizeof(cmd), "cp -R '%s/sysroot/twonode/.' '%s/' 2>&1", th_data_dir(), t->root);
	cr_assert_eq(th_run(cmd, buf, sizeof(buf)), 0, "%s: %s", cmd, buf);
	setenv("HUGERING_SYSROOT", t->root, 1);
}

static void tree_free(struct tree *t)
{
	(void)t;
	tree_remove();
}

/* Every directory of @path (relative to the tree) up to its last slash. */
static void tree_mkdirs(const struct tree *t, const char *rel)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s%s", t->root, rel);
	for (char *p = path + strlen(t->root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		cr_assert(!mkdir(path, 0755) || errno == EEXIST, "mkdir %s: %s", path,
			  strerror(errno));
		*p = '/';
	}
}

/* Write @len bytes of @text to @rel in the tree (replacing it). */
static void tree_put_n(const struct tree *t, const char *rel, const char *text, size_t len)
{
	char path[1024];
	int fd;

	tree_mkdirs(t, rel);
	snprintf(path, sizeof(path), "%s%s", t->root, rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void tree_put(const struct tree *t, const char *rel, const char *text)
{
	tree_put_n(t, rel, text, strlen(text));
}

/* A line of @n bytes: @n - strlen(@tail) - 1 copies of @fill, @tail, newline. */
static void tree_put_long_line(const struct tree *t, const char *rel, char fill,
			       const char *tail, size_t n)
{
	char *s = malloc(n);
	size_t k = strlen(tail);

	cr_assert_not_null(s);
	memset(s, fill, n - k - 1);
	memcpy(s + n - k - 1, tail, k);
	s[n - 1] = '\n';
	tree_put_n(t, rel, s, n);
	free(s);
}

/* A pool directory with every counter @v (no such directory in a kernel for 1 kB). */
static void tree_pool_dir(const struct tree *t, const char *dir, const char *v)
{
	static const char *const files[] = { "nr_hugepages", "free_hugepages", "resv_hugepages",
					     "surplus_hugepages", "nr_overcommit_hugepages" };
	char rel[512];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(rel, sizeof(rel), "%s/%s", dir, files[i]);
		tree_put(t, rel, v);
	}
}

/* ------------------------------------------------------------------ */
/* The tool on a tree                                                  */
/* ------------------------------------------------------------------ */

static char out[131072];

/*
 * hugering-diag --no-trial on the tree: it must end by itself (timeout: a
 * hang is a failure, not a stuck suite) with 0 or 1, never a signal.
 */
static void run_diag(const struct tree *t, const char *args)
{
	char cmd[2048];
	int rc;

	snprintf(cmd, sizeof(cmd), "HUGERING_SYSROOT='%s' timeout 20 '%s' --no-trial %s", t->root,
		 th_diag_tool(), args);
	rc = th_run(cmd, out, sizeof(out));
	cr_assert(rc == 0 || rc == 1, "%s: exit %d%s\n%s", cmd, rc,
		  rc == 124 ? " (hung: killed after 20 s)" : rc > 128 ? " (killed by a signal)" : "",
		  out);
}

/* Cut @s to [@from, @to): the part of the report that comes only from the tree. */
static char *section(char *s, const char *from, const char *to)
{
	char *a = strstr(s, from), *b = a ? strstr(a, to) : NULL;

	cr_assert(a && b, "no %s ... %s in:\n%s", from, to, s);
	*b = '\0';
	return a;
}

static void drop_line(char *s, const char *start)
{
	char *line = strstr(s, start), *eol = line ? strchr(line, '\n') : NULL;

	if (eol)
		memmove(line, eol + 1, strlen(eol + 1) + 1);
}

/* @got against tests/data/golden/@name (or written there when updating). */
static void golden_cmp(const char *got, const char *name)
{
	static char want[65536];
	char path[512];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/golden/%s", th_data_dir(), name);
	if (getenv("HUGERING_UPDATE_GOLDEN")) {
		f = fopen(path, "w");
		cr_assert_not_null(f, "%s: %s", path, strerror(errno));
		fputs(got, f);
		fclose(f);
		return;
	}
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	n = fread(want, 1, sizeof(want) - 1, f);
	want[n] = '\0';
	fclose(f);
	cr_assert_str_eq(got, want, "report differs from %s:\n%s", path, got);
}

/* Text report (Hugepages to Checks, the live PFN line left out) against @name.txt. */
static void golden_text(const struct tree *t, const char *name)
{
	char file[128];
	char *s;

	run_diag(t, "");
	s = section(out, "Hugepages\n", "Checks\n");
	drop_line(s, "  pagemap PFNs");
	snprintf(file, sizeof(file), "hostile-%s.txt", name);
	golden_cmp(s, file);
}

/* JSON report from "hugepages" to "trial" (all from the tree) against @name.json. */
static void golden_json(const struct tree *t, const char *name)
{
	char file[128];
	char *s;

	run_diag(t, "--json");
	s = section(out, "\"hugepages\":", "\"trial\":");
	snprintf(file, sizeof(file), "hostile-%s.json", name);
	golden_cmp(s, file);
}

/* ------------------------------------------------------------------ */
/* Defect 1: node lists                                                */
/* ------------------------------------------------------------------ */

#define NODES_ONLINE "/sys/devices/system/node/online"

/* A range past INT_MAX once overflowed the counter and wrote out of bounds. */
Test(hostile, node_list_huge_range)
{
	int nodes[16];
	struct tree t;

	tree_new(&t);
	tree_put(&t, NODES_ONLINE, "0-9223372036854775807\n");
	cr_assert_eq(hugering_numa_nodes(nodes, 16), -EIO);
	golden_text(&t, "node-range-huge");
	golden_json(&t, "node-range-huge");
	tree_free(&t);
}

/* "0-2000000000" once took 2e9 steps per read (the tool hung > 20 s). */
Test(hostile, node_list_long_range_is_bounded, .timeout = 60)
{
	int nodes[4];
	struct tree t;

	tree_new(&t);
	tree_put(&t, NODES_ONLINE, "0-2000000000\n");
	cr_assert_eq(hugering_numa_nodes(nodes, 4), 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(nodes[i], i);
	cr_assert_eq(hugering_numa_nodes(nodes, 0), 0);
	golden_text(&t, "node-range-long");
	golden_json(&t, "node-range-long");
	tree_free(&t);
}

/* Not a list: an error, not a guess. */
Test(hostile, node_list_garbage)
{
	static const char *const bad[] = { "-1\n", "3-1\n", "0-1x\n", "1--5\n", "0,,a\n",
					   "2147483648\n", "0-\n", "3,1\n", "0-2,2\n" };
	int nodes[8];
	struct tree t;

	tree_new(&t);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		tree_put(&t, NODES_ONLINE, bad[i]);
		cr_assert_eq(hugering_numa_nodes(nodes, 8), -EIO, "online = %s", bad[i]);
	}
	tree_put(&t, NODES_ONLINE, "0-1,4,6-7\n");
	cr_assert_eq(hugering_numa_nodes(nodes, 8), 5);
	cr_assert(nodes[0] == 0 && nodes[1] == 1 && nodes[2] == 4 && nodes[3] == 6 &&
		  nodes[4] == 7);
	tree_free(&t);
}

/* ------------------------------------------------------------------ */
/* Defect 2: blank osrelease                                           */
/* ------------------------------------------------------------------ */

Test(hostile, blank_osrelease)
{
	struct diag *d = malloc(sizeof(*d));
	struct tree t;

	cr_assert_not_null(d);
	tree_new(&t);
	tree_put(&t, "/proc/sys/kernel/osrelease", "\n");
	cr_assert_eq(diag_collect(d, 0), 0);
	cr_assert_str_eq(d->release, "unknown");
	run_diag(&t, "");
	cr_assert(strstr(out, "  release           unknown\n"), "%s", out);
	run_diag(&t, "--json");
	cr_assert(strstr(out, "\"kernel\":{\"release\":\"unknown\","), "%s", out);
	tree_free(&t);
	diag_free(d);
	free(d);
}

/* ------------------------------------------------------------------ */
/* Defect 3: the default arena is not the caller's to destroy          */
/* ------------------------------------------------------------------ */

Test(hostile, default_arena_destroy_refused)
{
	struct hugering_arena *a = hugering_default_arena();
	struct hugering_ring_info info;
	struct io_uring ring;

	cr_assert_not_null(a);
	cr_assert_eq(hugering_arena_destroy(a), -EBUSY);
	cr_assert(strstr(hugering_last_error(), "default arena"), "%s", hugering_last_error());
	/* Still the library's arena, and still usable (ASan: no use after free). */
	cr_assert_eq(hugering_default_arena(), a);
	cr_assert_eq(hugering_queue_init(8, &ring, 0), 0);
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	th_nops(&ring, 16);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), -EBUSY);
}

/* ------------------------------------------------------------------ */
/* Defect 4: CONTIG | FALLBACK on base pages                           */
/* ------------------------------------------------------------------ */

/*
 * Option checking admits it (FALLBACK), so it must succeed: base pages,
 * and unless pagemap proves the frames adjacent, a fallback that says so
 * (ENOMEM: seen apart; EPERM: PFNs hidden).  It used to fail -ENOMEM always.
 */
Test(hostile, contig_fallback_on_base_pages)
{
	static const size_t sizes[] = { 8192, 64 * 1024, 1 * MiB };
	struct hugering_region_opts o = { .page_size = 4096, .numa_node = -1,
					  .flags = HUGERING_REGION_CONTIG |
						   HUGERING_REGION_FALLBACK };
	int want_errno = th_pfn_visible() ? ENOMEM : EPERM;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct hugering_region_info ri;
		struct hugering_region *r;
		int ret;

		o.size = sizes[i];
		ret = hugering_region_alloc(&o, &r);
		cr_assert_eq(ret, 0, "%zu bytes: %d (%s)", sizes[i], ret, hugering_last_error());
		cr_assert_eq(hugering_region_info(r, &ri), 0);
		cr_assert_eq(ri.page_size, 4096);
		cr_assert_eq(ri.backing, HUGERING_BACKING_BASE);
		if (ri.contiguous == HUGERING_CONTIG_YES) {
			cr_assert_eq(ri.fallback_errno, 0);
			cr_assert_eq(th_runs(ri.addr, ri.size), 1);
		} else {
			cr_assert_eq(ri.fallback_errno, want_errno, "%zu bytes: %d (%s)", sizes[i],
				     ri.fallback_errno, ri.fallback_reason);
			cr_assert(strstr(ri.fallback_reason, "base pages"), "%s",
				  ri.fallback_reason);
		}
		hugering_region_free(r);
	}
	/* Without FALLBACK the promise cannot be kept: still refused up front. */
	o.flags = HUGERING_REGION_CONTIG;
	o.size = 8192;
	{
		struct hugering_region *r;

		cr_assert_eq(hugering_region_alloc(&o, &r), -EINVAL);
	}
}

/* ------------------------------------------------------------------ */
/* Defect 7: undefined behaviour on hostile counters                   */
/* ------------------------------------------------------------------ */

static long reservable_of(const struct diag *d, size_t ps)
{
	for (int i = 0; i < d->nsizes; i++)
		if (d->sizes[i].pool.page_size == ps)
			return d->sizes[i].reservable;
	cr_assert_fail("no %zu kB size in the report", ps >> 10);
	return 0;
}

/* Negative counts were shifted left, huge ones overflowed: now unknown. */
Test(hostile, buddyinfo_negative_and_huge)
{
	static const char *const lines[] = {
		"Node 0, zone   Normal    100     50     20     10      5      3      2      1      4      2     -5\n",
		"Node 0, zone   Normal    100     50     20     10      5      3      2      1      4      2 9223372036854775807\n",
		"Node 0, zone   Normal    100     50     20     10      5      3      2      1      4 4611686018427387904 2305843009213693952\n",
	};
	static const char *const names[] = { "buddy-negative", "buddy-huge", "buddy-sum" };
	struct diag *d = malloc(sizeof(*d));
	struct tree t;

	cr_assert_not_null(d);
	tree_new(&t);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		tree_put(&t, "/proc/buddyinfo", lines[i]);
		cr_assert_eq(diag_collect(d, 0), 0);
		cr_assert_eq(reservable_of(d, SZ_2M), -1, "%s", lines[i]);
		diag_free(d);
		golden_text(&t, names[i]);
		golden_json(&t, names[i]);
	}
	tree_free(&t);
	diag_free(d);
	free(d);
}

/* A hugepages-1kB directory: 1 kB / 4 kB = 0 reached clz(0). */
Test(hostile, one_kb_page_size)
{
	struct diag *d = malloc(sizeof(*d));
	struct tree t;

	cr_assert_not_null(d);
	tree_new(&t);
	tree_pool_dir(&t, "/sys/kernel/mm/hugepages/hugepages-1kB", "1\n");
	tree_pool_dir(&t, "/sys/kernel/mm/hugepages/hugepages-0kB", "1\n");
	tree_pool_dir(&t, "/sys/kernel/mm/hugepages/hugepages-99999999999999999999kB", "1\n");
	cr_assert_eq(diag_collect(d, 0), 0);
	cr_assert_eq(d->nsizes, 3, "1 kB, 2 MiB and 1 GiB; no 0 kB, no overflowing size");
	cr_assert_eq(reservable_of(d, 1024), -1);
	golden_text(&t, "one-kb");
	golden_json(&t, "one-kb");
	tree_free(&t);
	diag_free(d);
	free(d);
}

/*
 * free_hugepages = LONG_MAX and a resv_hugepages line of 100 KB (unreadable
 * as a number, once taken as -1): usable = free - reserved overflowed.  A
 * 100 KB line of zeros ending in 12 once read as 0 (the first 63 bytes).
 */
Test(hostile, counter_100kb_line)
{
	struct hugering_pool p;
	struct tree t;

	tree_new(&t);
	tree_put(&t, HP2M "/free_hugepages", "9223372036854775807\n");
	tree_put_long_line(&t, HP2M "/resv_hugepages", '9', "", 100 * 1024);
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &p), -EIO);
	cr_assert_eq(p.free, LONG_MAX);
	cr_assert_eq(p.reserved, -1);
	cr_assert_eq(p.usable, 0);
	golden_text(&t, "counter-100kb");
	golden_json(&t, "counter-100kb");

	tree_put(&t, HP2M "/free_hugepages", "5\n");
	tree_put_long_line(&t, HP2M "/resv_hugepages", '0', "12", 100 * 1024);
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &p), -EIO);
	cr_assert_eq(p.reserved, -1, "a cut number is not a number");
	tree_put(&t, HP2M "/resv_hugepages", "-3\n");
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &p), -EIO, "a page count is never negative");
	tree_put(&t, HP2M "/resv_hugepages", "3 pages\n");
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &p), -EIO, "trailing garbage");
	tree_put(&t, HP2M "/resv_hugepages", "3\n");
	cr_assert_eq(hugering_pool_get(SZ_2M, -1, &p), 0);
	cr_assert_eq(p.usable, 2);
	tree_free(&t);
}

/* ------------------------------------------------------------------ */
/* Defect 9: JSON is valid UTF-8                                       */
/* ------------------------------------------------------------------ */

/*
 * Strict UTF-8 (RFC 3629), written apart from the tool's: decode each
 * character and reject overlong forms, surrogates and code points past
 * U+10FFFF.  Returns the offset of the first bad byte, or -1.
 */
static long bad_utf8_at(const unsigned char *s, size_t len)
{
	static const unsigned long min[] = { 0, 0, 0x80, 0x800, 0x10000 };

	for (size_t i = 0; i < len;) {
		unsigned long cp;
		int n = s[i] < 0x80 ? 1 : (s[i] >> 5) == 6 ? 2 : (s[i] >> 4) == 14 ? 3 :
			(s[i] >> 3) == 30 ? 4 : 0;

		if (!n || i + n > len)
			return (long)i;
		cp = n == 1 ? s[i] : s[i] & (0x7f >> n);
		for (int k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return (long)i;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return (long)i;
		i += n;
	}
	return -1;
}

#define BLOCK30 "abcdefghijklmnopqrstuvwxyz0123"	/* 30 bytes */

/*
 * Bytes >= 0x80 from the tree: a mount path with invalid, overlong and
 * surrogate sequences and one with a real "é", a release and a THP mode
 * with a stray byte, a block device whose 32-byte name ends in "é" (the
 * model once cut names at 31 bytes, between the character's two bytes).
 */
static void tree_non_utf8(struct tree *t)
{
	char rel[128];

	tree_put(t, "/proc/self/mounts",
		 "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
		 "hugetlbfs /dev/huge\xff\xfe hugetlbfs rw,relatime,pagesize=2M 0 0\n"
		 "hugetlbfs /mnt/h\xc3\xa9 hugetlbfs rw,relatime,pagesize=2M 0 0\n"
		 "hugetlbfs /mnt/x\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80 hugetlbfs rw,pagesize=1G 0 0\n");
	tree_put(t, "/proc/sys/kernel/osrelease", "6.12.48\xff-amd64\n");
	tree_put(t, "/sys/kernel/mm/transparent_hugepage/enabled", "always [m\xe9vise] never\n");
	snprintf(rel, sizeof(rel), "/sys/block/%s\xc3\xa9/queue/io_poll", BLOCK30);
	tree_put(t, rel, "1\n");
}

Test(hostile, json_is_valid_utf8)
{
	struct diag *d = malloc(sizeof(*d));
	struct tree t;
	long bad;

	cr_assert_not_null(d);
	tree_new(&t);
	tree_non_utf8(&t);
	/* Nothing is cut: the name keeps its "é". */
	cr_assert_eq(diag_collect(d, 0), 0);
	cr_assert_eq(d->nblocks, 3);
	cr_assert_str_eq(d->blocks[0].name, BLOCK30 "\xc3\xa9");
	run_diag(&t, "--json");
	bad = bad_utf8_at((const unsigned char *)out, strlen(out));
	cr_assert_eq(bad, -1, "invalid UTF-8 at byte %ld: ...%.40s", bad, out + (bad > 20 ? bad - 20 : 0));
	cr_assert(strstr(out, "\"/dev/huge\\ufffd\\ufffd\""), "%s", out);
	cr_assert(strstr(out, "\"/mnt/h\xc3\xa9\""), "a valid character is kept: %s", out);
	cr_assert(strstr(out, "\"release\":\"6.12.48\\ufffd-amd64\""), "%s", out);
	cr_assert(strstr(out, "\"enabled\":\"m\\ufffdvise\""), "%s", out);
	cr_assert(strstr(out, "{\"name\":\"" BLOCK30 "\xc3\xa9\","), "%s", out);
	golden_json(&t, "non-utf8");
	tree_free(&t);
	diag_free(d);
	free(d);
}

/* ------------------------------------------------------------------ */
/* Defect 12                                                           */
/* ------------------------------------------------------------------ */

Test(hostile, diag_failed_null)
{
	cr_assert_eq(diag_failed(NULL), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Defect 8: unknown is reported as unknown                            */
/* ------------------------------------------------------------------ */

/*
 * One garbage counter once dropped the whole 2 MiB size from the report
 * (no check ran for it, exit 0), and an unreadable limits file read as
 * "RLIMIT_MEMLOCK is no constraint".
 */
Test(hostile, unreadable_counter_and_limits_are_unknown)
{
	char path[1024];
	struct tree t;

	tree_new(&t);
	tree_put(&t, HP2M "/resv_hugepages", "garbage\n");
	snprintf(path, sizeof(path), "%s/proc/self/limits", t.root);
	cr_assert_eq(unlink(path), 0);
	run_diag(&t, "");
	cr_assert(strstr(out, "2048 kB"), "the 2 MiB size left the report:\n%s", out);
	cr_assert(strstr(out, "cannot read the 2048 kB pool's counters"), "%s", out);
	cr_assert(strstr(out, "RLIMIT_MEMLOCK is unknown"), "%s", out);
	cr_assert_null(strstr(out, "RLIMIT_MEMLOCK is no constraint"), "%s", out);
	run_diag(&t, "--json");
	cr_assert(strstr(out, "\"size_kb\":2048,\"default\":true,\"total\":null"), "%s", out);
	cr_assert(strstr(out, "\"counters_error\":\""), "%s", out);
	cr_assert(strstr(out, "\"memlock_soft\":null,\"memlock_hard\":null,\"memlock_error\":\""),
		  "%s", out);
	tree_free(&t);
}

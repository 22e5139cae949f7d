/* SPDX-License-Identifier: MIT */
/*
 * hugering-diag: the library's figures against sysfs read independently,
 * the tool's exit status and fixes on a real empty pool, golden human output
 * against fake /sys and /proc trees (HUGERING_SYSROOT), and the report under
 * the 6.5 and 6.1 personas.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "helpers.h"
#include "persona.h"

TestSuite(diag, .init = th_init, .fini = th_fini, .timeout = 300);

/* Run the tool with @args (and @sysroot if not NULL); output into @buf. */
static int run_tool(const char *sysroot, const char *args, char *buf, size_t len)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "%s%s%s '%s' %s", sysroot ? "HUGERING_SYSROOT='" : "",
		 sysroot ? sysroot : "", sysroot ? "'" : "", th_diag_tool(), args);
	return th_run(cmd, buf, len);
}

/* Acceptance 1: every figure equals the kernel's own, per size and node. */
Test(diag, figures_equal_sysfs)
{
	struct hugering_diag *d = malloc(sizeof(*d));
	char path[256];

	cr_assert_not_null(d);
	cr_assert_eq(hugering_diag_collect(d, 0), 0);
	cr_assert_gt(d->nsizes, 0);
	for (int i = 0; i < d->nsizes; i++) {
		const struct hugering_diag_size *s = &d->sizes[i];
		size_t kb = s->pool.page_size >> 10;
		static const struct { const char *f; size_t off; } fields[] = {
			{ "nr_hugepages", offsetof(struct hugering_pool, total) },
			{ "free_hugepages", offsetof(struct hugering_pool, free) },
			{ "resv_hugepages", offsetof(struct hugering_pool, reserved) },
			{ "surplus_hugepages", offsetof(struct hugering_pool, surplus) },
			{ "nr_overcommit_hugepages", offsetof(struct hugering_pool, overcommit) },
		};

		for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
			snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/%s",
				 kb, fields[k].f);
			cr_assert_eq(*(const long *)((const char *)&s->pool + fields[k].off),
				     th_read_long(path), "%zu kB %s", kb, fields[k].f);
		}
		for (int n = 0; n < s->nnodes; n++) {
			snprintf(path, sizeof(path),
				 "/sys/devices/system/node/node%d/hugepages/hugepages-%zukB/nr_hugepages",
				 s->nodes[n].numa_node, kb);
			cr_assert_eq(s->nodes[n].total, th_read_long(path));
			snprintf(path, sizeof(path),
				 "/sys/devices/system/node/node%d/hugepages/hugepages-%zukB/free_hugepages",
				 s->nodes[n].numa_node, kb);
			cr_assert_eq(s->nodes[n].free, th_read_long(path));
		}
	}
	cr_assert_eq(d->io_uring_disabled, th_read_long("/proc/sys/kernel/io_uring_disabled"));
	cr_assert_eq(d->pfn_visible, th_pfn_visible());
	free(d);
}

/* The tool's JSON says the same, with every documented key. */
Test(diag, json_has_every_key)
{
	static const char *keys[] = {
		"\"kernel\":", "\"release\":", "\"io_uring_disabled\":", "\"nommap\":\"any\"",
		"\"resize_rings\":", "\"pagemap\":", "\"pfn_visible\":", "\"hugepages\":",
		"\"size_kb\":2048", "\"default\":true", "\"total\":", "\"free\":", "\"reserved\":",
		"\"surplus\":", "\"overcommit\":", "\"mounts\":", "\"nodes\":", "\"node\":",
		"\"thp\":", "\"enabled\":", "\"limits\":", "\"memlock_soft\":",
		"\"memlock_hard\":", "\"trial\":", "\"region_ok\":", "\"contiguous\":",
		"\"ring_mode\":", "\"error\":", "\"checks\":", "\"id\":", "\"status\":",
		"\"message\":", "\"fix\":", "\"block\":", "\"io_poll\":",
	};
	static char out[65536];
	char want[64];
	int rc;

	th_need_pool(SZ_2M, 4);
	rc = run_tool(NULL, "--json", out, sizeof(out));
	cr_assert(rc == 0 || rc == 1, "exit %d", rc);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		cr_assert(strstr(out, keys[i]), "missing %s in %s", keys[i], out);
	snprintf(want, sizeof(want), "\"size_kb\":2048,\"default\":true,\"total\":%ld,",
		 th_pool_field(SZ_2M, "nr_hugepages"));
	cr_assert(strstr(out, want), "2 MiB total not %s", want);
	cr_assert(strstr(out, "\"ring_mode\":\"nommap_huge\""), "trial ring: %s", out);
}

/* Acceptance 2: an empty pool is a failed check with the fix; pages back: 0. */
Test(diag, empty_pool_fails_with_fix_then_passes)
{
	static char out[65536];
	struct th_hog hog;
	int rc;

	th_need_pool(SZ_2M, 16);
	rc = run_tool(NULL, "--no-trial", out, sizeof(out));
	cr_assert_eq(rc, 0, "with pages: exit %d\n%s", rc, out);
	th_exhaust(SZ_2M, &hog);
	rc = run_tool(NULL, "--no-trial", out, sizeof(out));
	th_release(&hog);
	cr_assert_eq(rc, 1, "empty pool: exit %d\n%s", rc, out);
	cr_assert(strstr(out, "fail  hugepages_2048kB"), "%s", out);
	cr_assert(strstr(out, "fix: echo 64 | sudo tee /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
		  "%s", out);
}

Test(diag, usage_errors_exit_2)
{
	static char out[4096];

	cr_assert_eq(run_tool(NULL, "--bogus 2>/dev/null", out, sizeof(out)), 2);
	cr_assert_eq(run_tool(NULL, "extra 2>/dev/null", out, sizeof(out)), 2);
	cr_assert_eq(run_tool(NULL, "--help", out, sizeof(out)), 0);
	cr_assert(strstr(out, "usage: hugering-diag"));
	cr_assert_eq(run_tool(NULL, "--version", out, sizeof(out)), 0);
	cr_assert(strstr(out, "hugering-diag 0."));
}

/*
 * Acceptance 4: golden human output against fake trees.  The Hugepages and
 * Process sections come only from the tree (the live PFN line aside).
 */
static void golden(const char *tree)
{
	static char out[65536], want[16384];
	char root[512], path[512], *from, *to, *line;
	FILE *f;
	size_t n;

	snprintf(root, sizeof(root), "%s/sysroot/%s", th_data_dir(), tree);
	run_tool(root, "--no-trial", out, sizeof(out));
	from = strstr(out, "Hugepages\n");
	to = strstr(out, "Checks\n");
	cr_assert(from && to, "%s", out);
	*to = '\0';
	line = strstr(from, "  pagemap PFNs");
	if (line) {
		char *eol = strchr(line, '\n');

		memmove(line, eol + 1, strlen(eol + 1) + 1);
	}
	snprintf(path, sizeof(path), "%s/golden/%s.txt", th_data_dir(), tree);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	n = fread(want, 1, sizeof(want) - 1, f);
	want[n] = '\0';
	fclose(f);
	cr_assert_str_eq(from, want, "%s differs from %s", tree, path);
}

Test(diag, golden_two_numa_nodes)  { golden("twonode"); }
Test(diag, golden_no_hugepages)    { golden("nohuge"); }
Test(diag, golden_1g_only)         { golden("1g-only"); }

Test(diag, fake_tree_checks)
{
	static char out[65536];
	char root[512];

	snprintf(root, sizeof(root), "%s/sysroot/nohuge", th_data_dir());
	cr_assert_eq(run_tool(root, "--no-trial", out, sizeof(out)), 1);
	cr_assert(strstr(out, "fail  hugepages_2048kB"), "%s", out);
	cr_assert(strstr(out, "nr_hugepages"), "%s", out);
	/* cgroup v1 limits, found through the tree's mount of the hugetlb hierarchy */
	cr_assert_eq(run_tool(root, "--no-trial --json", out, sizeof(out)), 1);
	cr_assert(strstr(out, "\"cgroup_max\":-1,\"cgroup_rsvd_max\":4194304,"), "%s", out);
	cr_assert(strstr(out, "\"cgroup_max\":1073741824,\"cgroup_rsvd_max\":-1,"), "%s", out);
	snprintf(root, sizeof(root), "%s/sysroot/twonode", th_data_dir());
	run_tool(root, "--no-trial", out, sizeof(out));
	cr_assert(strstr(out, "warn  sqpoll_napi"), "non-preemptible + busy_poll: %s", out);
	cr_assert(strstr(out, "warn  memlock"), "%s", out);
	cr_assert(strstr(out, "release           6.12.48-amd64"), "%s", out);
}

/* Acceptance 3: under the personas, the class and the trial's fallback. */
static void under_persona(enum persona p, int nommap, int fallback_errno)
{
	struct hugering_diag *d = malloc(sizeof(*d));
	bool fallback_seen = false;

	cr_assert_not_null(d);
	th_need_pool(SZ_2M, 4);
	persona_install(p);
	cr_assert_eq(hugering_diag_collect(d, HUGERING_DIAG_TRIAL), 0);
	cr_assert_eq(d->caps.nommap, nommap, "%s", hugering_nommap_name(d->caps.nommap));
	cr_assert_gt(d->ntrials, 0);
	for (int i = 0; i < d->ntrials; i++)
		for (int k = 0; k < 2; k++) {
			const struct hugering_diag_ring *r = &d->trials[i].rings[k];

			cr_assert_eq(r->err, 0, "%s", r->reason);
			if (r->mode == HUGERING_MODE_KERNEL) {
				cr_assert_eq(r->fallback_errno, fallback_errno);
				cr_assert_neq(r->reason[0], '\0');
				fallback_seen = true;
			}
		}
	cr_assert(fallback_seen, "no trial ring fell back");
	for (int i = 0; i < d->nchecks; i++)
		if (!strcmp(d->checks[i].id, "nommap"))
			cr_assert_eq(d->checks[i].status, HUGERING_CHECK_WARN);
	free(d);
}

Test(diag, persona_6_5) { under_persona(PERSONA_6_5, HUGERING_NOMMAP_SINGLE_PAGE, EFAULT); }
Test(diag, persona_6_1) { under_persona(PERSONA_6_1, HUGERING_NOMMAP_UNSUPPORTED, EINVAL); }

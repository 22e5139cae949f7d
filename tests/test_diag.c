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
#include <unistd.h>

#include "helpers.h"
#include "../tools/diag/model.h"
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
	struct diag *d = malloc(sizeof(*d));
	char path[256];

	cr_assert_not_null(d);
	cr_assert_eq(diag_collect(d, 0), 0);
	cr_assert_gt(d->nsizes, 0);
	for (int i = 0; i < d->nsizes; i++) {
		const struct diag_size *s = &d->sizes[i];
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
	diag_free(d);
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
	struct diag *d = malloc(sizeof(*d));
	bool fallback_seen = false;

	cr_assert_not_null(d);
	th_need_pool(SZ_2M, 4);
	persona_install(p);
	cr_assert_eq(diag_collect(d, DIAG_TRIAL), 0);
	cr_assert_eq(d->caps.nommap, nommap, "%s", hugering_nommap_name(d->caps.nommap));
	cr_assert_gt(d->ntrials, 0);
	for (int i = 0; i < d->ntrials; i++)
		for (int k = 0; k < 2; k++) {
			const struct diag_ring *r = &d->trials[i].rings[k];

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
			cr_assert_eq(d->checks[i].status, DIAG_WARN);
	diag_free(d);
	free(d);
}

Test(diag, persona_6_5) { under_persona(PERSONA_6_5, HUGERING_NOMMAP_SINGLE_PAGE, EFAULT); }
Test(diag, persona_6_1) { under_persona(PERSONA_6_1, HUGERING_NOMMAP_UNSUPPORTED, EINVAL); }

/* ------------------------------------------------------------------ */
/* Issue 17: --reserve, --fix, --persist and the new checks            */
/* ------------------------------------------------------------------ */

#define NR_2M "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"

static bool is_root(void)
{
	return geteuid() == 0;
}

static void write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s", path);
	fprintf(f, "%ld\n", v);
	fclose(f);
}

/* A writable copy of tests/data/sysroot/@tree in @dir. */
static void tree_copy(const char *tree, char *dir, size_t len)
{
	char cmd[1024], out[1024];

	snprintf(dir, len, "/tmp/hugering-diag-tree.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "cp -R '%s/sysroot/%s/.' '%s/' 2>&1", th_data_dir(), tree, dir);
	cr_assert_eq(th_run(cmd, out, sizeof(out)), 0, "%s", out);
}

static void tree_remove(const char *dir)
{
	char cmd[600], out[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	th_run(cmd, out, sizeof(out));
}

/*
 * Acceptance 4: the new checks' lines (and fix lines) on fake trees against
 * golden files; the other checks probe the live kernel, so they are left out.
 */
static void golden_checks(const char *tree)
{
	static const char *ids[] = { "min_free_kbytes ", "swap ", "overcommit " };
	static char out[65536], got[8192], want[8192];
	char root[512], path[512], *line, *save = NULL;
	bool keep = false;

	snprintf(root, sizeof(root), "%s/sysroot/%s", th_data_dir(), tree);
	run_tool(root, "--no-trial", out, sizeof(out));
	got[0] = '\0';
	line = strstr(out, "Checks\n");
	cr_assert_not_null(line, "%s", out);
	for (line = strtok_r(line, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strstr(line, " fix: ") && !strncmp(line, "        ", 8)) {
			if (keep)
				strcat(strcat(got, line), "\n");
			continue;
		}
		keep = false;
		for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
			keep |= strlen(line) > 8 && !strncmp(line + 8, ids[i], strlen(ids[i]));
		if (keep)
			strcat(strcat(got, line), "\n");
	}
	snprintf(path, sizeof(path), "%s/golden/%s-checks.txt", th_data_dir(), tree);
	th_slurp(path, want, sizeof(want));
	cr_assert_str_eq(got, want, "%s differs from %s", tree, path);
}

Test(diag, golden_checks_fragile) { golden_checks("fragile"); }
Test(diag, golden_checks_roomy)   { golden_checks("roomy"); }

/*
 * The model has no caps (issue 15): the twonode tree grown to 20 NUMA
 * nodes, 22 disks and 20 hugetlbfs mounts of 2 MiB pages, one of them with
 * a 400-byte path, reports every one, whole.  (It once kept 16 nodes, 16
 * disks, 4 mounts per size of 16 in all, and cut paths at 255 bytes.)
 */
#define BIG_NODES 20
#define BIG_DISKS 20
#define BIG_MOUNTS 18

static void tree_grow_big(const char *dir, const char *long_path)
{
	char cmd[4096], out[1024];

	snprintf(cmd, sizeof(cmd),
		 "set -e; cd '%s'; echo 0-%d > sys/devices/system/node/online; "
		 "for n in $(seq 0 %d); do "
		 "d=sys/devices/system/node/node$n/hugepages/hugepages-2048kB; mkdir -p $d; "
		 "echo $n > $d/nr_hugepages; echo 1 > $d/free_hugepages; "
		 "echo 0 > $d/surplus_hugepages; done; "
		 "for n in $(seq 0 %d); do mkdir -p sys/block/vd$n/queue; "
		 "echo 0 > sys/block/vd$n/queue/io_poll; done; "
		 "for n in $(seq 0 %d); do "
		 "echo \"hugetlbfs /mnt/h$n hugetlbfs rw,pagesize=2M 0 0\" >> proc/self/mounts; done; "
		 "echo 'hugetlbfs %s hugetlbfs rw,pagesize=2M 0 0' >> proc/self/mounts 2>&1",
		 dir, BIG_NODES - 1, BIG_NODES - 1, BIG_DISKS - 1, BIG_MOUNTS - 1, long_path);
	cr_assert_eq(th_run(cmd, out, sizeof(out)), 0, "%s", out);
}

Test(diag, big_machine_nothing_dropped)
{
	static char out[262144], want[4096];
	char dir[256], long_path[401], *p;
	int n = 0;

	memset(long_path, 'x', sizeof(long_path) - 1);
	long_path[sizeof(long_path) - 1] = '\0';
	memcpy(long_path, "/mnt/", 5);
	long_path[sizeof(long_path) - 2] = 'Z';	/* the last byte, to see it is there */
	tree_copy("twonode", dir, sizeof(dir));
	tree_grow_big(dir, long_path);
	run_tool(dir, "--no-trial --json", out, sizeof(out));
	tree_remove(dir);

	p = want + sprintf(want, "\"numa\":{\"nodes\":[");
	for (int i = 0; i < BIG_NODES; i++)
		p += sprintf(p, "%s%d", i ? "," : "", i);
	sprintf(p, "]}");
	cr_assert(strstr(out, want), "want %s in %s", want, out);
	/* Each node's 2 MiB pool, the last one too. */
	for (int i = 0; i < BIG_NODES; i++) {
		sprintf(want, "{\"node\":%d,\"total\":%d,\"free\":1,\"surplus\":0}", i, i);
		cr_assert(strstr(out, want), "want %s in %s", want, out);
	}
	for (int i = 0; i < BIG_DISKS; i++) {
		sprintf(want, "{\"name\":\"vd%d\",\"io_poll\":0,\"poll_queues\":-1}", i);
		cr_assert(strstr(out, want), "want %s in %s", want, out);
	}
	for (p = out; (p = strstr(p, "{\"name\":")); p++)
		n++;
	cr_assert_eq(n, BIG_DISKS + 2, "nvme0n1, sda and the %d vd* disks: %s", BIG_DISKS, out);
	for (int i = 0; i < BIG_MOUNTS; i++) {
		sprintf(want, "\"/mnt/h%d\"", i);
		cr_assert(strstr(out, want), "want %s in %s", want, out);
	}
	sprintf(want, ",\"%s\"],\"nodes\":[", long_path);
	cr_assert(strstr(out, want), "the %zu-byte path, whole, last: %s", strlen(long_path), out);
}

/* Acceptance 1 (real kernel): set, free, too many, no such node. */
Test(diag, reserve_real_pool)
{
	static char out[65536];
	long saved = th_read_long(NR_2M), too_many;
	char args[128];
	int rc;

	/* No such node, and a malformed request: exit 2 for everyone. */
	cr_assert_eq(run_tool(NULL, "--reserve 2M:64@999 2>&1", out, sizeof(out)), 2, "%s", out);
	cr_assert(strstr(out, "node 999 does not exist"), "%s", out);
	cr_assert_eq(run_tool(NULL, "--reserve 2M 2>&1", out, sizeof(out)), 2, "%s", out);
	if (!is_root()) {
		rc = run_tool(NULL, "--reserve 2M:64 2>&1", out, sizeof(out));
		cr_assert_eq(rc, 2, "%s", out);
		cr_assert(strstr(out, "needs root"), "%s", out);
		cr_assert(strstr(out, "echo 64 > " NR_2M), "%s", out);
		cr_assert_eq(th_read_long(NR_2M), saved);
		return;
	}
	rc = run_tool(NULL, "--reserve 2M:0", out, sizeof(out));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_eq(th_read_long(NR_2M), 0, "%s", out);
	rc = run_tool(NULL, "--reserve 2M:64", out, sizeof(out));
	cr_assert_eq(th_read_long(NR_2M), 64, "%s", out);
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert(strstr(out, "now 64"), "%s", out);
	cr_assert(strstr(out, "largest contiguous run: "), "%s", out);
	cr_assert(!strstr(out, "run: unknown"), "PFNs visible as root: %s", out);
	rc = run_tool(NULL, "--reserve 2M:64 --json", out, sizeof(out));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert(strstr(out, "\"action\":\"reserve\""), "%s", out);
	cr_assert(strstr(out, "\"asked\":64,\"before\":64,\"obtained\":64"), "%s", out);
	cr_assert(strstr(out, "\"pool\":[{\"size_kb\":2048,\"total\":64,"), "%s", out);
	rc = run_tool(NULL, "--reserve 2M:0", out, sizeof(out));
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_eq(th_read_long(NR_2M), 0, "%s", out);
	/* More than the machine has: exit 1 with the count obtained. */
	too_many = (long)(sysconf(_SC_PHYS_PAGES) / (SZ_2M / sysconf(_SC_PAGESIZE))) + 1;
	snprintf(args, sizeof(args), "--reserve 2M:%ld --json", too_many);
	rc = run_tool(NULL, args, out, sizeof(out));
	write_long(NR_2M, saved);
	cr_assert_eq(rc, 1, "%s", out);
	cr_assert(strstr(out, "\"exit\":1"), "%s", out);
	cr_assert(strstr(out, "\"obtained\":"), "%s", out);
	cr_assert_eq(th_read_long(NR_2M), saved);
}

/* Acceptance 2 on a fake tree: the dry run writes nothing, --fix writes. */
Test(diag, fix_dry_run_fake_tree)
{
	static char out[65536], cmd[2048], before[4096], after[4096];
	char dir[256], mfk[512], nr[512];

	tree_copy("fragile", dir, sizeof(dir));
	snprintf(mfk, sizeof(mfk), "%s/proc/sys/vm/min_free_kbytes", dir);
	snprintf(nr, sizeof(nr), "%s" NR_2M, dir);
	snprintf(cmd, sizeof(cmd), "cat '%s' '%s'", mfk, nr);
	th_run(cmd, before, sizeof(before));
	cr_assert_eq(run_tool(dir, "--fix --dry-run", out, sizeof(out)), 0, "%s", out);
	th_run(cmd, after, sizeof(after));
	cr_assert_str_eq(before, after, "the dry run changed the tree");
	snprintf(cmd, sizeof(cmd), "echo 22528 > %s", mfk);
	cr_assert(strstr(out, cmd), "%s", out);
	snprintf(cmd, sizeof(cmd), "echo 64 > %s", nr);
	cr_assert(strstr(out, cmd), "%s", out);
	cr_assert_eq(run_tool(dir, "--fix --dry-run --json", out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"action\":\"fix\",\"dry_run\":true"), "%s", out);
	cr_assert(strstr(out, "\"status\":\"planned\""), "%s", out);
	/* Applied: the files say what the commands said (a fake tree's free count stays 0). */
	run_tool(dir, "--fix", out, sizeof(out));
	cr_assert_eq(th_read_long(mfk), 22528, "%s", out);
	cr_assert_eq(th_read_long(nr), 64, "%s", out);
	cr_assert(strstr(out, "applied min_free_kbytes"), "%s", out);
	tree_remove(dir);
}

/* Acceptance 2 on the real kernel: with the pool used up, the fix. */
Test(diag, fix_real_pool)
{
	static char out[65536];
	long saved = th_read_long(NR_2M), mfk = th_read_long("/proc/sys/vm/min_free_kbytes");
	struct th_hog hog;
	int rc, rc_dry, rc_after = -1;
	static char dry[65536];
	long held;

	th_need_pool(SZ_2M, 4);
	th_exhaust(SZ_2M, &hog);
	held = th_read_long(NR_2M);
	rc_dry = run_tool(NULL, "--fix --dry-run", dry, sizeof(dry));
	cr_assert_eq(th_read_long(NR_2M), held, "the dry run changed the pool");
	rc = run_tool(NULL, "--fix 2>&1", out, sizeof(out));
	if (rc == 0 || rc == 1)
		rc_after = run_tool(NULL, "--no-trial", out + strlen(out), sizeof(out) - strlen(out));
	th_release(&hog);
	if (is_root())
		write_long(NR_2M, saved);
	cr_assert_eq(rc_dry, 0, "%s", dry);
	cr_assert(strstr(dry, "nr_hugepages"), "the dry run names the pool: %s", dry);
	cr_assert_eq(th_read_long("/proc/sys/vm/min_free_kbytes"), mfk);
	if (!is_root()) {
		cr_assert_eq(rc, 2, "%s", out);
		cr_assert(strstr(out, "--fix needs root"), "%s", out);
		cr_assert(strstr(out, "echo "), "the commands: %s", out);
		return;
	}
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_eq(rc_after, 0, "the next run has a failed check:\n%s", out);
	cr_assert(strstr(out, "applied hugepages_2048kB"), "%s", out);
	cr_assert_eq(th_read_long(NR_2M), saved);
}

/*
 * Acceptance 3: --persist into a fake root, twice (the second changes
 * nothing), --undo; as root, sysctl --system in a chroot of that root
 * applies the file to the tree's /proc/sys files.
 */
Test(diag, persist_fake_root)
{
	static char out[65536], first[4096], second[4096];
	char dir[256], file[512], cmd[2048];

	tree_copy("roomy", dir, sizeof(dir));
	snprintf(file, sizeof(file), "%s/etc/sysctl.d/60-hugering.conf", dir);
	cr_assert_eq(run_tool(dir, "--persist", out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "wrote "), "%s", out);
	cr_assert(strstr(out, "hugepagesz=1G hugepages=2"), "%s", out);
	th_slurp(file, first, sizeof(first));
	cr_assert(strstr(first, "vm.nr_hugepages = 64\n"), "%s", first);
	cr_assert(strstr(first, "vm.min_free_kbytes = 90112\n"), "%s", first);
	cr_assert(strstr(first, "vm.nr_overcommit_hugepages = 8\n"), "%s", first);
	cr_assert_eq(run_tool(dir, "--persist --json", out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "\"action\":\"persist\""), "%s", out);
	cr_assert(strstr(out, "\"changed\":false"), "the second run changed something: %s", out);
	th_slurp(file, second, sizeof(second));
	cr_assert_str_eq(first, second);
	if (is_root()) {
		snprintf(cmd, sizeof(cmd),
			 "set -e; cd '%s'; echo 0 > proc/sys/vm/nr_hugepages; "
			 "echo 0 > proc/sys/vm/nr_overcommit_hugepages; s=$(command -v sysctl); "
			 "mkdir -p .$(dirname $s); cp $s .$s; "
			 "for l in $(ldd $s | grep -o '/[^ ]*'); do mkdir -p .$(dirname $l); "
			 "cp -L $l .$l; done; chroot . $s --system 2>&1", dir);
		cr_assert_eq(th_run(cmd, out, sizeof(out)), 0, "sysctl --system in the fake root "
			     "(procps installed?): %s", out);
		cr_assert(strstr(out, "60-hugering.conf"), "%s", out);
		snprintf(cmd, sizeof(cmd), "%s/proc/sys/vm/nr_hugepages", dir);
		cr_assert_eq(th_read_long(cmd), 64, "sysctl --system did not apply it: %s", out);
		snprintf(cmd, sizeof(cmd), "%s/proc/sys/vm/nr_overcommit_hugepages", dir);
		cr_assert_eq(th_read_long(cmd), 8, "%s", out);
	}
	cr_assert_eq(run_tool(dir, "--persist --undo", out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "removed "), "%s", out);
	cr_assert_neq(access(file, F_OK), 0, "%s still there", file);
	cr_assert_eq(run_tool(dir, "--persist --undo", out, sizeof(out)), 0, "%s", out);
	cr_assert(strstr(out, "nothing to undo"), "%s", out);
	/* A file that is not ours is left alone. */
	snprintf(cmd, sizeof(cmd), "echo 'vm.swappiness = 1' > '%s'", file);
	th_run(cmd, out, sizeof(out));
	cr_assert_eq(run_tool(dir, "--persist --undo 2>&1", out, sizeof(out)), 1, "%s", out);
	cr_assert_eq(access(file, F_OK), 0);
	tree_remove(dir);
}

/* Actions go one at a time; the modifiers need their action. */
Test(diag, action_usage_errors)
{
	static char out[4096];

	cr_assert_eq(run_tool(NULL, "--fix --persist 2>/dev/null", out, sizeof(out)), 2);
	cr_assert_eq(run_tool(NULL, "--undo 2>/dev/null", out, sizeof(out)), 2);
	cr_assert_eq(run_tool(NULL, "--dry-run 2>/dev/null", out, sizeof(out)), 2);
	cr_assert_eq(run_tool(NULL, "--fix --thp sometimes 2>/dev/null", out, sizeof(out)), 2);
	cr_assert_eq(run_tool(NULL, "--reserve 5Q:1 2>/dev/null", out, sizeof(out)), 2);
	cr_assert_eq(run_tool(NULL, "--reserve 3M:1 2>/dev/null", out, sizeof(out)), 2);
}

static long usable(size_t ps)
{
	return th_pool_field(ps, "free_hugepages") - th_pool_field(ps, "resv_hugepages");
}

/*
 * Issue 16, defect 11: the trial's rings pinned their pages for ~15 ms after
 * the tool exited, so a program (or a second run) started right after found
 * the pool short.  The pool must be whole again when the tool returns.
 */
Test(diag, trial_gives_the_pool_back_before_exit)
{
	long before2, before1 = -1;
	char out[65536];

	th_need_pool(SZ_2M, 2);
	th_settle_pool(SZ_2M);
	before2 = usable(SZ_2M);
	if (th_pool_field(SZ_1G, "nr_hugepages") > 0) {
		th_settle_pool(SZ_1G);
		before1 = usable(SZ_1G);
	}
	for (int i = 0; i < 3; i++) {
		run_tool(NULL, "--json", out, sizeof(out));
		cr_assert_eq(usable(SZ_2M), before2, "run %d: 2 MiB pool short right after exit", i);
		if (before1 >= 0)
			cr_assert_eq(usable(SZ_1G), before1, "run %d: 1 GiB pool short after exit", i);
	}
}

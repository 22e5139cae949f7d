/* SPDX-License-Identifier: MIT */
/*
 * hugering-bench as a user runs it: --json carries every documented key for
 * every result, churn shows liburing's own NO_MMAP allocation running out
 * where hugering survives the whole cap, the empty-pool phase gets
 * kernel-mapped rings for ENOMEM without waiting, --csv has one row per
 * result, the plot is drawn with every mode in it (the buffer section's
 * too), and bad input is one clear line with a non-zero exit.  No timing is asserted: speed is the
 * benchmark's output.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(bench, .init = th_init, .fini = th_fini, .timeout = 600);

#define OUT_LEN (256 * 1024)
/* Static: a failed assertion ends the test without a leak to report. */
static char out[OUT_LEN];
#define SMALL_RUN "--modes kernel,liburing-nommap,user-4k,hugering,floor " \
		  "--shapes small,large --iterations 20 --seconds 0.02"

static const char *bench(void)
{
	const char *b = getenv("HUGERING_BENCH_BIN");

	return b ? b : "build/bench/hugering-bench";
}

static int run_bench(const char *args, char *buf)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "'%s' %s 2>/dev/null", bench(), args);
	return th_run(cmd, buf, OUT_LEN);
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The object that starts with @key, up to its closing brace, in @obj. */
static void object_at(const char *json, const char *key, char *obj, size_t len)
{
	const char *p, *end;

	p = strstr(json, key);
	cr_assert_not_null(p, "no %s in\n%s", key, json);
	end = strstr(p, "\"error\": ");
	cr_assert_not_null(end);
	end = strchr(end, '}');
	cr_assert_not_null(end);
	cr_assert_lt((size_t)(end - p), len);
	memcpy(obj, p, (size_t)(end - p));
	obj[end - p] = 0;
}

/* The result object of @mode on @shape. */
static void result_of(const char *json, const char *mode, const char *shape, char *obj,
		      size_t len)
{
	char key[128];

	snprintf(key, sizeof(key), "{\"mode\": \"%s\", \"shape\": \"%s\"", mode, shape);
	object_at(json, key, obj, len);
}

/* The empty-pool entry of @shape (after the results). */
static void empty_pool_of(const char *json, const char *shape, char *obj, size_t len)
{
	const char *phase = strstr(json, "\"empty_pool\": [");
	char key[128];

	cr_assert_not_null(phase, "no empty_pool in\n%s", json);
	snprintf(key, sizeof(key), "{\"shape\": \"%s\"", shape);
	object_at(phase, key, obj, len);
}

static long field_long(const char *obj, const char *key)
{
	char k[64];
	const char *p;

	snprintf(k, sizeof(k), "\"%s\": ", key);
	p = strstr(obj, k);
	cr_assert_not_null(p, "no %s in %s", key, obj);
	return strtol(p + strlen(k), NULL, 10);
}

Test(bench, json_has_every_key_and_churn_tells_the_modes_apart)
{
	static const char *const result_keys[] = {
		"\"mode\": ", "\"shape\": ", "\"sq\": ", "\"cq\": ", "\"flags\": ",
		"\"create_destroy_us_median\": ", "\"create_destroy_us_p99\": ",
		"\"cycles_per_s\": ", "\"churn_cycles_ok\": ", "\"nop_mops\": {\"b1\": ",
		"\"sweep_mops\": ", "\"ring_bytes\": ", "\"hugepages_used\": ", "\"error\": ",
		"\"nop_vs_kernel\": {\"b1\": ", "\"create_destroy_vs_kernel\": ",
	};
	static const char *const machine_keys[] = {
		"\"machine\": {\"kernel\": \"", "\"cpus\": ", "\"cpu_model\": ", "\"pmu\": ",
		"\"results\": [",
	};
	char obj[2048], *empty;
	int results;

	th_need_pool(SZ_2M, 8);
	cr_assert_eq(run_bench("--quick --json " SMALL_RUN, out), 0);
	for (size_t i = 0; i < sizeof(machine_keys) / sizeof(machine_keys[0]); i++)
		cr_assert_eq(count(out, machine_keys[i]), 1, "%s", machine_keys[i]);
	/* Keys are counted in the results: the empty-pool phase after them has its own. */
	empty = strstr(out, ",\n  \"empty_pool\": [");
	cr_assert_not_null(empty, "%s", out);
	*empty = 0;
	results = count(out, "{\"mode\": ");
	cr_assert_eq(results, 1 + 2 * 4, "floor + 2 shapes x 4 modes:\n%s", out);
	for (size_t i = 0; i < sizeof(result_keys) / sizeof(result_keys[0]); i++)
		cr_assert_eq(count(out, result_keys[i]), results, "%s", result_keys[i]);
	/* in nop_mops and in nop_vs_kernel */
	cr_assert_eq(count(out, "\"b32\": "), 2 * results);
	cr_assert_eq(count(out, "\"b256\": "), 2 * results);

	/* Acceptance 3: hugering survives the whole cap, liburing's own does not. */
	result_of(out, "hugering", "large", obj, sizeof(obj));
	cr_assert_eq(field_long(obj, "churn_cycles_ok"), field_long(obj, "churn_cap"), "%s", obj);
	cr_assert(strstr(obj, "\"error\": null"), "%s", obj);
	result_of(out, "liburing-nommap", "large", obj, sizeof(obj));
	cr_assert_lt(field_long(obj, "churn_cycles_ok"), field_long(obj, "churn_cap"), "%s", obj);
	cr_assert(strstr(obj, "create failed after"), "%s", obj);
	/*
	 * Same ring memory in every mode: 4096 SQEs and 65536 CQEs, without an
	 * SQ array where the factory sets NO_SQARRAY (liburing 2.6+), with one
	 * (16 KiB more, one page after rounding) on liburing 2.5.
	 */
	result_of(out, "kernel", "large", obj, sizeof(obj));
	cr_assert_eq(field_long(obj, "ring_bytes"), th_no_sqarray() ? 1314816 : 1331200);
}

/*
 * Acceptance of the empty pool: while another process holds every usable
 * page, the drop-in's rings are kernel-mapped for ENOMEM, every cycle of
 * the cap completes, and no allocation waited for the pool.  Its cost
 * against the kernel-mapped ring is the bench's figure, not asserted here.
 * No pool needed: without one the pool is empty anyway.  Unprivileged,
 * kernel-mapped rings are charged to RLIMIT_MEMLOCK (Linux 6.14+) and a
 * destroyed ring's charge goes a moment later: large ones may run out
 * there, liburing's and the drop-in's alike, which the row reports.
 */
Test(bench, empty_pool_falls_back_at_once)
{
	static const char *const keys[] = {
		"{\"shape\": ", "\"sq\": ", "\"cq\": ", "\"flags\": ", "\"hugering_us_median\": ",
		"\"hugering_us_p99\": ", "\"kernel_us_median\": ", "\"kernel_us_p99\": ",
		"\"cost_vs_kernel\": ", "\"create_destroy_vs_kernel\": ", "\"cycles_ok\": ",
		"\"cycles_cap\": ", "\"hugering_mode\": ", "\"fallback_errno\": ",
		"\"fallback_reason\": ", "\"rings_not_fallback\": ", "\"pool_waits\": ",
		"\"pool_pages_held\": ", "\"pool_usable_left\": ", "\"ok\": ", "\"error\": ",
	};
	char obj[2048];

	cr_assert_eq(run_bench("--quick --json --modes kernel,hugering --shapes small,large "
			       "--iterations 20 --seconds 0.01", out), 0);
	for (const char *s = "small\0large\0"; *s; s += strlen(s) + 1) {
		empty_pool_of(out, s, obj, sizeof(obj));
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			cr_assert(strstr(obj, keys[i]), "%s: no %s in %s", s, keys[i], obj);
		cr_assert(strstr(obj, "\"hugering_mode\": \"kernel\""), "%s", obj);
		cr_assert_eq(field_long(obj, "fallback_errno"), ENOMEM, "%s", obj);
		cr_assert_eq(field_long(obj, "rings_not_fallback"), 0, "%s", obj);
		cr_assert(strstr(obj, "\"pool_waits\": 0,"), "%s", obj);
		cr_assert_eq(field_long(obj, "pool_usable_left"), 0, "%s", obj);
		if (geteuid() && !strcmp(s, "large") && strstr(obj, "\"ok\": false")) {
			cr_assert(strstr(obj, "create failed after"), "%s", obj);
			cr_assert(strstr(obj, "Cannot allocate memory"), "%s", obj);
			continue;
		}
		cr_assert_eq(field_long(obj, "cycles_ok"), field_long(obj, "cycles_cap"), "%s", obj);
		cr_assert(strstr(obj, "\"ok\": true, \"error\": null"), "%s", obj);
	}
	/* Skipped on request: the key stays, empty. */
	cr_assert_eq(run_bench("--quick --json --modes kernel,hugering --shapes small "
			       "--iterations 10 --seconds 0.01 --no-empty-pool", out), 0);
	cr_assert(strstr(out, "\"empty_pool\": [\n  ]"), "%s", out);
}

Test(bench, csv_has_a_row_per_result)
{

	cr_assert_eq(run_bench("--quick --csv --modes kernel,hugering --shapes small "
			       "--iterations 10 --seconds 0.01", out), 0);
	cr_assert_eq(strncmp(out, "mode,shape,sq,cq,flags,", 23), 0, "%s", out);
	cr_assert_eq(count(out, "\n"), 4, "header + 2 rows + the empty pool's:\n%s", out);
	cr_assert(strstr(out, "\nhugering,small,64,128,SINGLE_ISSUER|DEFER_TASKRUN,"), "%s", out);
	cr_assert(strstr(out, "\nhugering-auto,small,64,128,SINGLE_ISSUER|DEFER_TASKRUN,"), "%s",
		  out);
	cr_assert(strstr(out, ",empty-pool,"), "%s", out);
}

Test(bench, plot_shows_every_mode)
{
	char path[] = "/tmp/hugering-bench-test-XXXXXX.svg", cmd[256];
	int fd = mkstemps(path, 4);

	cr_assert_geq(fd, 0);
	close(fd);
	th_need_pool(SZ_2M, 8);
	snprintf(cmd, sizeof(cmd), "--quick --plot %s " SMALL_RUN, path);
	cr_assert_eq(run_bench(cmd, out), 0);
	snprintf(cmd, sizeof(cmd), "cat %s", path);
	cr_assert_eq(th_run(cmd, out, OUT_LEN), 0);
	cr_assert(strstr(out, "<svg"), "not an SVG");
	cr_assert(strstr(out, "create+destroy"));
	for (const char *m = "kernel\0liburing-nommap\0user-4k\0hugering\0"; *m; m += strlen(m) + 1)
		cr_assert(strstr(out, m), "%s missing from the plot", m);
	unlink(path);
}

/* One line on stderr saying what is wrong, exit status 2 (1 for --plot). */
static void refused(const char *args, int status, const char *says)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1 >/dev/null", bench(), args);
	cr_assert_eq(th_run(cmd, out, OUT_LEN), status, "%s: %s", args, out);
	cr_assert_eq(count(out, "\n"), 1, "%s: one line, got:\n%s", args, out);
	cr_assert(strstr(out, says), "%s: %s", args, out);
}

Test(bench, bad_input_is_one_clear_line)
{
	refused("--iterations 0", 2, "--iterations '0'");
	refused("--iterations 12x", 2, "--iterations '12x'");
	refused("--modes kernel,bogus", 2, "unknown mode in 'bogus'");
	refused("--shapes huge", 2, "unknown shape in 'huge'");
	refused("--flags sqpoll", 2, "want defer or plain");
	refused("--json --csv", 2, "exclusive");
	refused("--cpu 4096", 2, "--cpu '4096'");
	refused("--cpu 1000", 1, "not a CPU this process may run on");
	refused("--plot out.gif", 1, "must end in .png or .svg");
	refused("--plot \"it's.svg\"", 1, "quotes, backslashes and newlines");
	refused("extra", 2, "unexpected argument 'extra'");
}

/*
 * --big-map (issue 16, defect 14): both rows measured in a small and a big
 * process, the heap below the library's memory, no error.  The ratio is
 * the bench's to report, not a test's to assert (timing).
 */
Test(bench, big_map_rows)
{
	const char *b;

	cr_assert_eq(run_bench("--quick --json --modes kernel --shapes small --iterations 5 "
			       "--seconds 0.01 --no-empty-pool --big-map", out), 0);
	b = strstr(out, "\"big_map\": {");
	cr_assert_not_null(b, "%s", out);
	cr_expect_not_null(strstr(b, "\"heap_bytes\": 6442450944"), "%s", b);
	cr_expect_eq(count(b, "\"ratio\": null"), 0, "a row not measured: %s", b);
	cr_expect_eq(count(b, "\"ratio\": "), 2, "%s", b);
	cr_expect_not_null(strstr(b, "\"what\": \"region 2 MiB\""), "%s", b);
	cr_expect_not_null(strstr(b, "\"what\": \"ring 32768/65536\""), "%s", b);
	cr_expect_not_null(strstr(b, "\"error\": null}"), "%s", b);
	/* Without the option: no key. */
	cr_assert_eq(run_bench("--quick --json --modes kernel --shapes small --iterations 5 "
			       "--seconds 0.01 --no-empty-pool", out), 0);
	cr_expect_null(strstr(out, "\"big_map\""), "%s", out);
}

/*
 * The objects of the buffer section's array @name ("registration", ...),
 * one at a time: @obj gets the next one after *@at (no nested braces in
 * them); false after the last.
 */
static bool next_object(const char *section, const char *name, const char **at, char *obj,
			size_t len)
{
	char key[64];
	const char *arr, *end, *p, *q;

	snprintf(key, sizeof(key), "\"%s\": [", name);
	arr = strstr(section, key);
	cr_assert_not_null(arr, "no %s in\n%s", key, section);
	end = strchr(arr, ']');
	cr_assert_not_null(end);
	p = strchr(*at ? *at : arr, '{');
	if (!p || p > end)
		return false;
	q = strchr(p, '}');
	cr_assert_not_null(q);
	cr_assert_lt((size_t)(q - p), len);
	memcpy(obj, p, (size_t)(q - p + 1));
	obj[q - p + 1] = 0;
	*at = q;
	return true;
}

/*
 * A cell has its @figures (not null) and no skip reason, or a skip reason
 * and no figures (a prediction is no figure: a skipped cell may have one).
 */
static bool measured_or_skipped(const char *obj, const char *const *figures, size_t n)
{
	bool skipped = !strstr(obj, "\"skipped\": null");
	char key[64];

	cr_assert(strstr(obj, "\"error\": null"), "an error is neither figures nor a skip: %s", obj);
	if (skipped)
		cr_assert(strstr(obj, "\"skipped\": \"skipped: "), "%s", obj);
	for (size_t i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "\"%s\": null", figures[i]);
		cr_assert(!strstr(obj, key) == !skipped, "%s: %s", skipped ? "skipped with figures" :
			  "no skip reason, no figure", obj);
	}
	return !skipped;
}

/*
 * --buffers-only (issue 13), small sizes: the three parts' JSON keys, and
 * every cell either measured or skipped with its reason (a 1 GiB page
 * missing, RLIMIT_MEMLOCK as nobody), never an error.  As root nothing the
 * 4 KiB side needs is missing: those cells must have figures, and with the
 * pool reserved the hugepage ones too (the 1 GiB page apart).  Figures are
 * the bench's output; no timing is asserted.
 */
Test(bench, buffers_section_measures_or_skips_every_cell)
{
	static const char *const reg_figs[] = {
		"register_ms", "unregister_ms", "vs_4k", "vmpin_growth",
		"charge_matches", "clone_ms", "clone_vmpin_growth", "cloned", "again_ms",
		"again_vmpin_growth",
	};
	static const char *const io_figs[] = { "gbps", "iops" };
	static const char *const recv_figs[] = { "gbps" };
	static const char *const goal_keys[] = {
		"\"register_bytes\": ", "\"register_2m_vs_4k\": ", "\"register_goal_met\": ",
		"\"charge_matches_prediction\": ", "\"read_fixed_1m_vs_4k\": ",
		"\"read_goal_met\": ",
	};
	const char *b, *at = NULL;
	char obj[2048];
	int n = 0;
	bool root = !geteuid();

	th_need_pool(SZ_2M, 24);
	cr_assert_eq(run_bench("--buffers-only --quick --json --buf-sizes 2M,4M --buf-recv-mib 4",
			       out), 0);
	cr_assert_eq(count(out, "{\"mode\": "), 0, "--buffers-only runs no ring mode: %s", out);
	b = strstr(out, "\"buffers\": {");
	cr_assert_not_null(b, "%s", out);
	while (next_object(b, "registration", &at, obj, sizeof(obj))) {
		bool m = measured_or_skipped(obj, reg_figs, sizeof(reg_figs) / sizeof(reg_figs[0]));

		cr_assert(strstr(obj, n / 3 ? "\"bytes\": 4194304" : "\"bytes\": 2097152"), "%s", obj);
		if (root && n % 3 != 2)	/* 4k, 2m */
			cr_assert(m, "as root with the pool reserved: %s", obj);
		if (m) {	/* VmPin is the kernel's figure, the prediction hugering's */
			cr_assert(strstr(obj, "\"charge_matches\": true"), "%s", obj);
			cr_assert(strstr(obj, "\"clone_vmpin_growth\": 0,"), "%s", obj);
		}
		n++;
	}
	cr_assert_eq(n, 2 * 3, "2 sizes x 4k, 2m, 1g: %s", b);
	for (n = 0, at = NULL; next_object(b, "read_fixed", &at, obj, sizeof(obj)); n++) {
		bool m = measured_or_skipped(obj, io_figs, 2);

		cr_assert(strstr(obj, n % 2 ? "\"buffers\": \"hugering\"" : "\"buffers\": \"4k\""),
			  "%s", obj);
		if (root)
			cr_assert(m, "as root: %s", obj);
		if (m)
			cr_assert_gt(field_long(obj, "reads"), 0, "%s", obj);
	}
	cr_assert_eq(n, 3 * 2, "3 I/O sizes x 4k, hugering: %s", b);
	for (n = 0, at = NULL; next_object(b, "recv", &at, obj, sizeof(obj)); n++) {
		bool m = measured_or_skipped(obj, recv_figs, 1);

		cr_assert(m, "loopback TCP needs nothing to skip for: %s", obj);
		/* 3 slices of 4 MiB, every byte counted */
		cr_assert_eq(field_long(obj, "bytes"), 3L * 4 * 1024 * 1024, "%s", obj);
		if (n && root)	/* with the pool reserved */
			cr_assert(strstr(obj, "\"ring\": \"hugering\", \"ring_mode\": \"nommap_huge\", "
					      "\"buf_ring\": \"huge\""), "%s", obj);
	}
	cr_assert_eq(n, 2, "liburing, hugering: %s", b);
	for (size_t i = 0; i < sizeof(goal_keys) / sizeof(goal_keys[0]); i++)
		cr_assert(strstr(b, goal_keys[i]), "no %s in %s", goal_keys[i], b);
	cr_assert(strstr(b, "\"register_goal_met\": null"), "the goal is about 1 GiB: %s", b);

	/* CSV: a header and a row per registration, clone, again, read and receive cell. */
	cr_assert_eq(run_bench("--buffers-only --quick --csv --buf-sizes 2M --buf-recv-mib 1",
			       out), 0);
	cr_assert_eq(strncmp(out, "section,size_bytes,memory,", 26), 0, "%s", out);
	cr_assert_eq(count(out, "\n"), 1 + 3 * 3 + 6 + 2, "%s", out);
	cr_assert_eq(count(out, "\nrecv,"), 2, "%s", out);
}

Test(bench, buffers_bad_input_is_one_clear_line)
{
	refused("--buf-sizes 3K", 2, "--buf-sizes '3K'");
	refused("--buf-sizes 2G", 2, "at most 1G");
	refused("--buf-recv-mib 0", 2, "--buf-recv-mib '0'");
}

static bool file_nonempty(const char *path)
{
	FILE *f = fopen(path, "r");
	bool some = f && fgetc(f) != EOF;

	if (f)
		fclose(f);
	return some;
}

/*
 * --plot with the buffer section: --buffers-only draws it into FILE; with
 * the ring modes (--buffers) the rings keep FILE and the buffers get
 * FILE-buffers.EXT.
 */
Test(bench, buffers_plot_is_drawn)
{
	char png[] = "/tmp/hugering-bench-test-XXXXXX.png";
	char svg[] = "/tmp/hugering-bench-test-XXXXXX.svg";
	char bsvg[64], cmd[512];
	int fd;

	if (system("command -v gnuplot >/dev/null 2>&1"))
		cr_skip_test("gnuplot is not installed (apt-get install gnuplot-nox): --plot cannot draw");
	th_need_pool(SZ_2M, 24);
	fd = mkstemps(png, 4);
	cr_assert_geq(fd, 0);
	close(fd);
	unlink(png);
	snprintf(cmd, sizeof(cmd), "--buffers-only --quick --buf-sizes 8M --buf-recv-mib 8 --plot %s",
		 png);
	cr_assert_eq(run_bench(cmd, out), 0);
	cr_assert(file_nonempty(png), "%s: no plot", png);
	unlink(png);

	fd = mkstemps(svg, 4);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(bsvg, sizeof(bsvg), "%.*s-buffers.svg", (int)strlen(svg) - 4, svg);
	snprintf(cmd, sizeof(cmd), "--quick --no-empty-pool --buffers --buf-sizes 8M "
		 "--buf-recv-mib 8 --plot %s " SMALL_RUN, svg);
	cr_assert_eq(run_bench(cmd, out), 0);
	snprintf(cmd, sizeof(cmd), "cat %s", svg);
	cr_assert_eq(th_run(cmd, out, OUT_LEN), 0);
	cr_assert(strstr(out, "create+destroy"), "the ring plot is not in %s", svg);
	snprintf(cmd, sizeof(cmd), "cat %s", bsvg);
	cr_assert_eq(th_run(cmd, out, OUT_LEN), 0, "no buffer plot %s", bsvg);
	for (const char *t = "register 1 MiB\0READ_FIXED\0multishot receive\0"; *t;
	     t += strlen(t) + 1)
		cr_assert(strstr(out, t), "%s missing from %s", t, bsvg);
	unlink(svg);
	unlink(bsvg);
}

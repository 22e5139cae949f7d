/* SPDX-License-Identifier: MIT */
/*
 * hugering-bench reports.  Ratios are always against a peer measured in the
 * same run: "x kernel" compares with the kernel-mapped ring of the same
 * shape (kernel-sqpoll for SQPOLL modes), "x floor" with io_uring_setup(1)
 * + close.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hugering.h>

#include "report.h"

static const char *shape_name(const struct report *r, const struct cell *c)
{
	return c->shape < 0 ? "floor" : r->shapes[c->shape].name;
}

/* The kernel-mapped cell this one is compared with. */
static const struct cell *peer(const struct report *r, const struct cell *c)
{
	const struct mode_def *m = &r->modes[c->mode];

	for (int i = 0; i < r->n; i++)
		if (r->cells[i].shape == c->shape && is_peer_of(&r->modes[r->cells[i].mode], m))
			return &r->cells[i];
	return NULL;
}

static const struct cell *floor_cell(const struct report *r)
{
	for (int i = 0; i < r->n; i++)
		if (r->modes[r->cells[i].mode].kind == KIND_FLOOR)
			return &r->cells[i];
	return NULL;
}

static double ratio(double num, double den)
{
	return num > 0 && den > 0 ? num / den : -1;
}

static void flag_names(unsigned flags, char *buf, size_t len)
{
	static const struct { unsigned bit; const char *name; } names[] = {
		{ IORING_SETUP_SQPOLL, "SQPOLL" },
		{ IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER" },
		{ IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN" },
		{ IORING_SETUP_SQE128, "SQE128" },
		{ IORING_SETUP_CQE32, "CQE32" },
	};
	size_t used = 0;

	buf[0] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (flags & names[i].bit)
			used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s%s",
						 used ? "|" : "", names[i].name);
	if (!used)
		snprintf(buf, len, "0");
}

/* ------------------------------------------------------------------ */
/* Table                                                               */
/* ------------------------------------------------------------------ */

/* "%*.Nf" or "-" for a value not measured. */
static void num(FILE *f, int width, int prec, double v, const char *suffix)
{
	char b[32];

	if (v < 0)
		snprintf(b, sizeof(b), "-");
	else
		snprintf(b, sizeof(b), "%.*f%s", prec, v, suffix);
	fprintf(f, " %*s", width, b);
}

static void table_head(FILE *f, const struct report *r)
{
	char flags[128];

	flag_names(r->flags, flags, sizeof(flags));
	fprintf(f, "hugering-bench: kernel %s, %d CPUs (%s), liburing %d.%d\n", r->mc->kernel,
		r->mc->cpus, r->mc->cpu_model, r->mc->liburing_major, r->mc->liburing_minor);
	if (!r->n)	/* --buffers-only: its tables say what they ran */
		return;
	fprintf(f, "flags %s on every ring (SQPOLL modes: SQPOLL, without DEFER_TASKRUN); %ld "
		"create+destroy cycles per cell at least;\nNOPs %.2f s per batch; dTLB misses: %s\n\n",
		flags, r->iterations,
		r->nop_seconds, r->mc->pmu ? "perf_event_open" : "unavailable (no PMU)");
}

static void table_create(FILE *f, const struct report *r)
{
	const struct cell *fl = floor_cell(r);
	size_t ps = hugering_default_page_size();

	fprintf(f, "create+destroy, us per cycle; x kernel = median over rounds of kernel's round "
		"median / this mode's (> 1: faster;\n* = run alone: kernel median / mode median); "
		"x floor = mode median / floor median;\ncpu/cyc = CPU us per cycle of every thread "
		"of the mode's process (not the kernel's own workers)\n");
	fprintf(f, "%-11s %-16s %9s %9s %10s %8s %7s %8s %8s %12s %10s %6s %7s  %s\n", "shape",
		"mode", "median", "p99", "cycles/s", "x kernel", "x rate", "x floor", "cpu/cyc",
		"churn ok/cap", "ring bytes", "pages", "per 2M", "error");
	for (int i = 0; i < r->n; i++) {
		const struct cell *c = &r->cells[i], *k = peer(r, c);
		char churn[32];

		snprintf(churn, sizeof(churn), "%ld/%ld", c->cycles, c->cap);
		fprintf(f, "%-11s %-16s", shape_name(r, c), r->modes[c->mode].name);
		num(f, 9, 1, c->cd_median_us, "");
		num(f, 9, 1, c->cd_p99_us, "");
		num(f, 10, 0, c->cycles_per_s, "");
		num(f, 8, 2, c->cd_x >= 0 ? c->cd_x : k ? ratio(k->cd_median_us, c->cd_median_us)
			     : -1, c->cd_x >= 0 ? "" : "*");
		num(f, 7, 2, k ? ratio(c->cycles_per_s, k->cycles_per_s) : -1, "");
		num(f, 8, 2, fl ? ratio(c->cd_median_us, fl->cd_median_us) : -1, "");
		num(f, 8, 1, c->cpu_us, "");
		fprintf(f, " %12s", churn);
		num(f, 10, 0, c->ring_bytes ? (double)c->ring_bytes : -1, "");
		fprintf(f, " %6ld", c->hugepages_used);
		num(f, 7, 0, c->ring_bytes && ps ? (double)(ps / c->ring_bytes) : -1, "");
		fprintf(f, "  %s\n", c->error[0] ? c->error : "-");
	}
	fprintf(f, "pages: pool pages taken during the churn and still held after it; "
		"per 2M: rings of this shape one 2 MiB page holds\n\n");
}

static void table_nops(FILE *f, const struct report *r)
{
	fprintf(f, "NOP throughput, M ops/s on %d warm rings per mode used in turn (median of %d "
		"slices); sweep = the whole SQ per batch;\nx = median of (this mode / kernel) over "
		"rounds of adjacent slices\n", NOP_COPIES, nop_rounds(r->quick));
	fprintf(f, "%-11s %-16s %7s %7s %7s %7s %7s %7s %7s %7s %9s\n", "shape", "mode", "b1",
		"b32", "b256", "sweep", "x b1", "x b32", "x b256", "x sweep", "dTLB/op");
	for (int i = 0; i < r->n; i++) {
		const struct cell *c = &r->cells[i];

		if (c->shape < 0)
			continue;
		fprintf(f, "%-11s %-16s", shape_name(r, c), r->modes[c->mode].name);
		for (int b = 0; b < NBATCH; b++)
			num(f, 7, 2, c->nop_mops[b], "");
		num(f, 7, 2, c->sweep_mops, "");
		for (int b = 0; b <= NBATCH; b++)
			num(f, 7, 3, c->nop_x[b], "");
		num(f, 9, 4, c->dtlb_per_op, "");
		fputc('\n', f);
	}
}

/* "ENOMEM" for the errno the empty-pool phase expects, else the number. */
static const char *errno_name(int err, char *buf, size_t len)
{
	if (err == ENOMEM)
		return "ENOMEM";
	snprintf(buf, len, "%d", err);
	return buf;
}

static void table_empty(FILE *f, const struct report *r)
{
	const struct empty_row *e = r->empty;

	if (!r->nempty)
		return;
	fprintf(f, "\nempty pool: another process held every usable %zu kB page (%ld pages); "
		"hugering-auto (the drop-in: auto policy, default\narena) and kernel took turns "
		"creating and destroying rings, us per cycle (k = kernel); cost x kernel = median over\n"
		"rounds of hugering-auto's round median / kernel's (acceptance: <= 1.10); every ring "
		"must be kernel-mapped for ENOMEM, no pool wait\n", hugering_default_page_size() >> 10,
		e[0].pages_held);
	fprintf(f, "%-11s %-16s %9s %9s %9s %9s %13s %-9s %-8s %6s %12s  %s\n", "shape", "mode",
		"median", "p99", "k median", "k p99", "cost x kernel", "got", "fallback", "waits",
		"churn ok/cap", "result");
	for (int i = 0; i < r->nempty; i++) {
		const struct cell *k = &e[i].kernel, *g = &e[i].hugering;
		char churn[32], num_buf[16];

		snprintf(churn, sizeof(churn), "%ld/%ld", g->cycles, g->cap);
		fprintf(f, "%-11s %-16s", r->shapes[g->shape].name, r->modes[g->mode].name);
		num(f, 9, 1, g->cd_median_us, "");
		num(f, 9, 1, g->cd_p99_us, "");
		num(f, 9, 1, k->cd_median_us, "");
		num(f, 9, 1, k->cd_p99_us, "");
		num(f, 13, 2, e[i].cost_x, "");
		fprintf(f, " %-9s %-8s", g->ring_mode ? hugering_mode_name(g->ring_mode) : "-",
			g->ring_mode ? errno_name(g->fallback_errno, num_buf, sizeof(num_buf)) : "-");
		num(f, 6, 0, (double)g->pool_waits, "");
		fprintf(f, " %12s  %s%s\n", churn, e[i].ok ? "ok" : "FAILED: ", e[i].error);
	}
}

static void table_bigmap(FILE *f, const struct report *r)
{
	const struct bigmap *b = r->big;

	if (!b || !b->ran)
		return;
	fprintf(f, "\nbig map: creation in this process (%ld VMAs), then with a %zu GiB heap of "
		"many VMAs mapped %s (%ld VMAs);\nmedian ms of %s, ratio big / small "
		"(goal: <= 1.50)\n", b->vmas_small, b->heap_bytes >> 30,
		b->heap_low ? "below the library's memory" : "(not below: hint address taken)",
		b->vmas_big, "31 creations");
	fprintf(f, "%-18s %10s %10s %8s\n", "what", "small ms", "big ms", "ratio");
	for (int i = 0; i < 2; i++) {
		fprintf(f, "%-18s", b->rows[i].what);
		num(f, 10, 3, b->rows[i].small_ms > 0 ? b->rows[i].small_ms : -1, "");
		num(f, 10, 3, b->rows[i].big_ms > 0 ? b->rows[i].big_ms : -1, "");
		num(f, 8, 2, b->rows[i].ratio, "");
		fputc('\n', f);
	}
	if (b->ring_mode)
		fprintf(f, "rings got mode %s\n", hugering_mode_name(b->ring_mode));
	if (b->error[0])
		fprintf(f, "FAILED: %s\n", b->error);
}

void report_table(FILE *f, const struct report *r)
{
	table_head(f, r);
	if (r->n) {	/* not with --buffers-only */
		table_create(f, r);
		table_nops(f, r);
	}
	table_empty(f, r);
	table_bigmap(f, r);
	buffers_table(f, r->buf);
}

/* ------------------------------------------------------------------ */
/* JSON and CSV                                                        */
/* ------------------------------------------------------------------ */

void report_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void report_json_num(FILE *f, double v, int prec, const char *none)
{
	if (v < 0)
		fputs(none, f);
	else
		fprintf(f, "%.*f", prec, v);
}

static void json_cell(FILE *f, const struct report *r, const struct cell *c)
{
	char flags[128];

	flag_names(c->flags, flags, sizeof(flags));
	fprintf(f, "    {\"mode\": ");
	report_json_str(f, r->modes[c->mode].name);
	fprintf(f, ", \"shape\": ");
	report_json_str(f, shape_name(r, c));
	fprintf(f, ", \"sq\": %u, \"cq\": %u, \"flags\": ", c->sq, c->cq);
	report_json_str(f, flags);
	fprintf(f, ",\n     \"create_destroy_us_median\": ");
	report_json_num(f, c->cd_median_us, 2, "null");
	fprintf(f, ", \"create_destroy_us_p99\": ");
	report_json_num(f, c->cd_p99_us, 2, "null");
	fprintf(f, ", \"cycles_per_s\": ");
	report_json_num(f, c->cycles_per_s, 1, "null");
	fprintf(f, ", \"cpu_us_per_cycle\": ");
	report_json_num(f, c->cpu_us, 2, "null");
	fprintf(f, ", \"create_destroy_vs_kernel\": ");
	report_json_num(f, c->cd_x, 3, "null");
	fprintf(f, ",\n     \"churn_cycles_ok\": %ld, \"churn_cap\": %ld, \"nop_mops\": {", c->cycles,
		c->cap);
	for (int b = 0; b < NBATCH; b++) {
		fprintf(f, "%s\"b%u\": ", b ? ", " : "", batches[b]);
		report_json_num(f, c->nop_mops[b], 4, "null");
	}
	fprintf(f, "}, \"sweep_mops\": ");
	report_json_num(f, c->sweep_mops, 4, "null");
	fprintf(f, ", \"nop_vs_kernel\": {");
	for (int b = 0; b <= NBATCH; b++) {
		if (b < NBATCH)
			fprintf(f, "%s\"b%u\": ", b ? ", " : "", batches[b]);
		else
			fprintf(f, ", \"sweep\": ");
		report_json_num(f, c->nop_x[b], 4, "null");
	}
	fputc('}', f);
	fprintf(f, ", \"dtlb_misses_per_op\": ");
	report_json_num(f, c->dtlb_per_op, 5, "null");
	fprintf(f, ",\n     \"ring_bytes\": %zu, \"hugepages_used\": %ld, \"error\": ", c->ring_bytes,
		c->hugepages_used);
	if (c->error[0])
		report_json_str(f, c->error);
	else
		fputs("null", f);
	fputc('}', f);
}

static void json_empty(FILE *f, const struct report *r, const struct empty_row *e)
{
	const struct cell *k = &e->kernel, *g = &e->hugering;
	char flags[128];

	flag_names(g->flags, flags, sizeof(flags));
	fprintf(f, "    {\"shape\": ");
	report_json_str(f, r->shapes[g->shape].name);
	fprintf(f, ", \"sq\": %u, \"cq\": %u, \"flags\": ", g->sq, g->cq);
	report_json_str(f, flags);
	fprintf(f, ",\n     \"hugering_us_median\": ");
	report_json_num(f, g->cd_median_us, 2, "null");
	fprintf(f, ", \"hugering_us_p99\": ");
	report_json_num(f, g->cd_p99_us, 2, "null");
	fprintf(f, ", \"kernel_us_median\": ");
	report_json_num(f, k->cd_median_us, 2, "null");
	fprintf(f, ", \"kernel_us_p99\": ");
	report_json_num(f, k->cd_p99_us, 2, "null");
	fprintf(f, ",\n     \"cost_vs_kernel\": ");
	report_json_num(f, e->cost_x, 3, "null");
	fprintf(f, ", \"create_destroy_vs_kernel\": ");
	report_json_num(f, g->cd_x, 3, "null");
	fprintf(f, ", \"cycles_ok\": %ld, \"cycles_cap\": %ld,\n     \"hugering_mode\": ",
		g->cycles, g->cap);
	if (g->ring_mode)
		report_json_str(f, hugering_mode_name(g->ring_mode));
	else
		fputs("null", f);
	fprintf(f, ", \"fallback_errno\": %d, \"fallback_reason\": ", g->fallback_errno);
	report_json_str(f, g->fallback_reason);
	fprintf(f, ", \"rings_not_fallback\": %ld, \"pool_waits\": ", g->rings_unexpected);
	report_json_num(f, (double)g->pool_waits, 0, "null");
	fprintf(f, ",\n     \"pool_pages_held\": %ld, \"pool_usable_left\": %ld, \"ok\": %s, "
		"\"error\": ", e->pages_held, e->usable_left, e->ok ? "true" : "false");
	if (e->error[0])
		report_json_str(f, e->error);
	else
		fputs("null", f);
	fputc('}', f);
}

/* "big_map" (only when the phase ran: --big-map). */
static void json_bigmap(FILE *f, const struct bigmap *b)
{
	if (!b || !b->ran)
		return;
	fprintf(f, ",\n  \"big_map\": {\"heap_bytes\": %zu, \"heap_below_library\": %s, "
		"\"vmas_small\": %ld, \"vmas_big\": %ld, \"ring_mode\": ", b->heap_bytes,
		b->heap_low ? "true" : "false", b->vmas_small, b->vmas_big);
	if (b->ring_mode)
		report_json_str(f, hugering_mode_name(b->ring_mode));
	else
		fputs("null", f);
	fprintf(f, ",\n    \"rows\": [");
	for (int i = 0; i < 2; i++) {
		fprintf(f, "%s{\"what\": ", i ? ", " : "");
		report_json_str(f, b->rows[i].what);
		fprintf(f, ", \"small_ms\": ");
		report_json_num(f, b->rows[i].small_ms > 0 ? b->rows[i].small_ms : -1, 4, "null");
		fprintf(f, ", \"big_ms\": ");
		report_json_num(f, b->rows[i].big_ms > 0 ? b->rows[i].big_ms : -1, 4, "null");
		fprintf(f, ", \"ratio\": ");
		report_json_num(f, b->rows[i].ratio, 3, "null");
		fputc('}', f);
	}
	fprintf(f, "],\n    \"error\": ");
	if (b->error[0])
		report_json_str(f, b->error);
	else
		fputs("null", f);
	fputc('}', f);
}

void report_json(FILE *f, const struct report *r)
{
	fprintf(f, "{\n  \"machine\": {\"kernel\": ");
	report_json_str(f, r->mc->kernel);
	fprintf(f, ", \"cpus\": %d, \"cpu_model\": ", r->mc->cpus);
	report_json_str(f, r->mc->cpu_model);
	fprintf(f, ", \"pmu\": %s, \"liburing\": \"%d.%d\"},\n  \"results\": [\n",
		r->mc->pmu ? "true" : "false", r->mc->liburing_major, r->mc->liburing_minor);
	for (int i = 0; i < r->n; i++) {
		json_cell(f, r, &r->cells[i]);
		fputs(i + 1 < r->n ? ",\n" : "\n", f);
	}
	fprintf(f, "  ],\n  \"empty_pool\": [\n");
	for (int i = 0; i < r->nempty; i++) {
		json_empty(f, r, &r->empty[i]);
		fputs(i + 1 < r->nempty ? ",\n" : "\n", f);
	}
	fprintf(f, "  ]");
	json_bigmap(f, r->big);
	buffers_json(f, r->buf);
	fprintf(f, "\n}\n");
}

void report_csv_str(FILE *f, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* One row's fields up to error, no line end. */
static void csv_cell(FILE *f, const struct report *r, const struct cell *c)
{
	char flags[128];

	flag_names(c->flags, flags, sizeof(flags));
	fprintf(f, "%s,%s,%u,%u,%s,", r->modes[c->mode].name, shape_name(r, c), c->sq,
		c->cq, flags);
	report_json_num(f, c->cd_median_us, 2, "");
	fputc(',', f);
	report_json_num(f, c->cd_p99_us, 2, "");
	fputc(',', f);
	report_json_num(f, c->cycles_per_s, 1, "");
	fputc(',', f);
	report_json_num(f, c->cpu_us, 2, "");
	fputc(',', f);
	report_json_num(f, c->cd_x, 3, "");
	fprintf(f, ",%ld,%ld", c->cycles, c->cap);
	for (int b = 0; b < NBATCH; b++) {
		fputc(',', f);
		report_json_num(f, c->nop_mops[b], 4, "");
	}
	fputc(',', f);
	report_json_num(f, c->sweep_mops, 4, "");
	for (int b = 0; b <= NBATCH; b++) {
		fputc(',', f);
		report_json_num(f, c->nop_x[b], 4, "");
	}
	fputc(',', f);
	report_json_num(f, c->dtlb_per_op, 5, "");
	fprintf(f, ",%zu,%ld,", c->ring_bytes, c->hugepages_used);
	report_csv_str(f, c->error);
}

/*
 * The empty-pool phase: a hugering-auto row per shape (its error is the
 * row's verdict), with the kernel peer's median and what the rings got in
 * the columns after error; main rows leave those empty.
 */
static void csv_empty(FILE *f, const struct report *r, const struct empty_row *e)
{
	struct cell g = e->hugering;

	snprintf(g.error, sizeof(g.error), "%s", e->error);
	csv_cell(f, r, &g);
	fputs(",empty-pool,", f);
	report_json_num(f, e->kernel.cd_median_us, 2, "");
	fputc(',', f);
	report_json_num(f, e->cost_x, 3, "");
	fprintf(f, ",%s,%d,", g.ring_mode ? hugering_mode_name(g.ring_mode) : "", g.fallback_errno);
	report_json_num(f, (double)g.pool_waits, 0, "");
	fprintf(f, ",%s\n", e->ok ? "true" : "false");
}

void report_csv(FILE *f, const struct report *r)
{
	if (r->n)
		fprintf(f, "mode,shape,sq,cq,flags,create_destroy_us_median,create_destroy_us_p99,"
		"cycles_per_s,cpu_us_per_cycle,create_destroy_vs_kernel,churn_cycles_ok,churn_cap,nop_mops_b1,nop_mops_b32,nop_mops_b256,"
		"sweep_mops,nop_vs_kernel_b1,nop_vs_kernel_b32,nop_vs_kernel_b256,"
		"nop_vs_kernel_sweep,dtlb_misses_per_op,ring_bytes,hugepages_used,error,"
		"phase,kernel_us_median,cost_vs_kernel,hugering_mode,fallback_errno,pool_waits,ok\n");
	for (int i = 0; i < r->n; i++) {
		csv_cell(f, r, &r->cells[i]);
		fputs(",main,,,,,,\n", f);
	}
	for (int i = 0; i < r->nempty; i++)
		csv_empty(f, r, &r->empty[i]);
	/* The buffer section has columns of its own: after a blank line, or alone. */
	if (r->buf && r->buf->ran && r->n)
		fputc('\n', f);
	buffers_csv(f, r->buf);
}

/* ------------------------------------------------------------------ */
/* Plot (gnuplot)                                                      */
/* ------------------------------------------------------------------ */

static const char *plot_ext(const char *path)
{
	const char *dot = strrchr(path, '.');

	return dot && (!strcmp(dot, ".png") || !strcmp(dot, ".svg")) ? dot + 1 : NULL;
}

int report_plot_check(const char *path)
{
	if (!plot_ext(path)) {
		fprintf(stderr, "hugering-bench: --plot %s: the file must end in .png or .svg\n",
			path);
		return -EINVAL;
	}
	if (strpbrk(path, "'\\\n")) {
		fprintf(stderr, "hugering-bench: --plot %s: quotes, backslashes and newlines in the "
			"file name are not supported; pick another name\n", path);
		return -EINVAL;
	}
	if (system("command -v gnuplot >/dev/null 2>&1")) {
		fprintf(stderr, "hugering-bench: --plot needs gnuplot, which is not installed: "
			"apt-get install gnuplot-nox (or run make bench as root)\n");
		return -ENOENT;
	}
	return 0;
}

/* Distinct non-floor modes in the run, in table order. */
static int plot_modes(const struct report *r, int *out)
{
	int n = 0;

	for (int i = 0; i < r->n; i++) {
		int m = r->cells[i].mode, k;

		if (r->cells[i].shape < 0)
			continue;
		for (k = 0; k < n && out[k] != m; k++)
			;
		if (k == n)
			out[n++] = m;
	}
	return n;
}

static const struct cell *cell_at(const struct report *r, int shape, int mode)
{
	for (int i = 0; i < r->n; i++)
		if (r->cells[i].shape == shape && r->cells[i].mode == mode)
			return &r->cells[i];
	return NULL;
}

/* Rows: shapes; columns: create+destroy median per mode, then NOP b32 per mode. */
static void ring_data(FILE *f, const struct report *r)
{
	int pm[64], npm = plot_modes(r, pm), last = -2;

	for (int i = 0; i < r->n; i++) {
		int s = r->cells[i].shape;

		if (s < 0 || s == last)
			continue;
		last = s;
		fprintf(f, "%s", r->shapes[s].name);
		for (int k = 0; k < npm; k++) {
			const struct cell *c = cell_at(r, s, pm[k]);

			fputc(' ', f);
			report_json_num(f, c ? c->cd_median_us : -1, 2, "?");
		}
		for (int k = 0; k < npm; k++) {
			const struct cell *c = cell_at(r, s, pm[k]);

			fputc(' ', f);
			report_json_num(f, c ? c->nop_mops[1] : -1, 4, "?");
		}
		fputc('\n', f);
	}
}

static void plot_terminal(FILE *f, const char *path, int width, bool cairo)
{
	bool svg = !strcmp(plot_ext(path), "svg");

	fprintf(f, "set terminal %s size %d,560%s\n", svg ? "svg" : cairo ? "pngcairo" : "png",
		width, svg || !cairo ? "" : " font 'sans,10'");
	fprintf(f, "set output '%s'\nset datafile missing '?'\n", path);
}

static void ring_script(FILE *f, const char *path, const char *data, const struct report *r,
			bool cairo)
{
	int pm[64], npm = plot_modes(r, pm);

	plot_terminal(f, path, 1400, cairo);
	fprintf(f, "set style data histograms\nset style histogram clustered gap 1\n"
		"set style fill solid 0.85 border -1\nset key top left\nset grid ytics\n"
		"set xtics rotate by -20\nset multiplot layout 1,2 title "
		"'hugering-bench: kernel %s, %d CPUs'\n", r->mc->kernel, r->mc->cpus);
	fprintf(f, "set title 'create+destroy, median us per cycle (log, lower is faster)'\n"
		"set logscale y\nplot ");
	for (int k = 0; k < npm; k++)
		fprintf(f, "%s'%s' using %d:xtic(1) title '%s'", k ? ", " : "", data, k + 2,
			r->modes[pm[k]].name);
	fprintf(f, "\nunset logscale y\nset yrange [0:*]\n"
		"set title 'NOP throughput at batch 32, M ops/s (higher is better)'\nplot ");
	for (int k = 0; k < npm; k++)
		fprintf(f, "%s'%s' using %d:xtic(1) title '%s'", k ? ", " : "", data, npm + k + 2,
			r->modes[pm[k]].name);
	fprintf(f, "\nunset multiplot\n");
}

/*
 * The buffer section: three data blocks (gnuplot's index 0, 1, 2), one row
 * per bar, x placed here so that bars of a group sit side by side:
 *   0: registration  x ms "VmPin label"
 *   1: READ_FIXED     x gbps min max
 *   2: receive        x gbps min max
 * "?" where a cell was not measured, so gnuplot leaves its bar out.
 */
#define BAR_W 0.26

static void size_label(char *s, size_t len, long long bytes)
{
	if (bytes < 0)
		snprintf(s, len, "?");
	else if (bytes >= 1LL << 30 && !(bytes & ((1LL << 30) - 1)))
		snprintf(s, len, "%lldG", bytes >> 30);
	else if (bytes >= 1LL << 20)
		snprintf(s, len, "%lldM", bytes >> 20);
	else
		snprintf(s, len, "%lldK", bytes >> 10);
}

static bool reg_ok(const struct buf_reg *g)
{
	return !g->skip[0] && !g->error[0] && g->reg_ms > 0;
}

static bool io_ok(const struct buf_io *io)
{
	return !io->skip[0] && !io->error[0] && io->gbps > 0;
}

static bool rx_ok(const struct buf_recv *rx)
{
	return !rx->skip[0] && !rx->error[0] && rx->gbps > 0;
}

static void gbps_row(FILE *f, double x, double gbps, double lo, double hi, bool ok)
{
	fprintf(f, "%.2f ", x);
	report_json_num(f, ok ? gbps : -1, 3, "?");
	fputc(' ', f);
	report_json_num(f, ok ? lo : -1, 3, "?");
	fputc(' ', f);
	report_json_num(f, ok ? hi : -1, 3, "?");
	fputc('\n', f);
}

static void buffers_data(FILE *f, const struct report *r)
{
	const struct buf_results *b = r->buf;
	char pin[32];

	for (int k = 0; k < BP_N; k++) {
		for (int s = 0; s < b->nsizes; s++) {
			const struct buf_reg *g = &b->reg[s][k];
			bool ok = reg_ok(g);

			size_label(pin, sizeof(pin), g->pin_growth);
			fprintf(f, "%.2f ", s + (k - 1) * BAR_W);
			report_json_num(f, ok ? g->reg_ms : -1, 4, "?");
			fprintf(f, " \"%s\"\n", pin);
		}
		fputc('\n', f);		/* one block per memory kind within index 0 */
	}
	fprintf(f, "\n");
	for (int k = 0; k < BS_N; k++) {
		for (int i = 0; i < BUF_NIO; i++) {
			const struct buf_io *io = &b->io[i][k];

			gbps_row(f, i + (k - 0.5) * BAR_W, io->gbps, io->gbps_min, io->gbps_max,
				 io_ok(io));
		}
		fputc('\n', f);
	}
	fprintf(f, "\n");
	for (int k = 0; k < BS_N; k++) {
		const struct buf_recv *rx = &b->recv[k];

		gbps_row(f, k, rx->gbps, rx->gbps_min, rx->gbps_max,
			 rx_ok(rx));
	}
}

static void buffers_xtics(FILE *f, const struct buf_results *b)
{
	char l[32];

	fprintf(f, "set xtics (");
	for (int s = 0; s < b->nsizes; s++) {
		size_label(l, sizeof(l), (long long)b->reg[s][BP_2M].bytes);
		fprintf(f, "%s'%s' %d", s ? ", " : "", l, s);
	}
	fprintf(f, ")\nset xrange [-0.6:%d.6]\n", b->nsizes - 1);
}

/* How many bars each panel has: 0 and gnuplot would fail on an empty plot. */
static void panel_bars(const struct buf_results *b, int n[3])
{
	n[0] = n[1] = n[2] = 0;
	for (int s = 0; s < b->nsizes; s++)
		for (int k = 0; k < BP_N; k++)
			n[0] += reg_ok(&b->reg[s][k]);
	for (int i = 0; i < BUF_NIO; i++)
		for (int k = 0; k < BS_N; k++)
			n[1] += io_ok(&b->io[i][k]);
	for (int k = 0; k < BS_N; k++)
		n[2] += rx_ok(&b->recv[k]);
}

/* A panel without a bar: its axes and why, instead of a gnuplot error. */
static void empty_panel(FILE *f)
{
	fprintf(f, "unset key\nset yrange [0:1]\nset label 1 'not measured here: "
		"the table says why' at graph 0.5,0.5 center\nplot 2 notitle\n"
		"unset label 1\nset key top left\n");
}

static void buffers_script(FILE *f, const char *path, const char *data, const struct report *r,
			   bool cairo)
{
	static const char *const pages[BP_N] = { "4 KiB pages", "2 MiB pages", "1 GiB pages" };
	static const char *const color[3] = { "#9e9e9e", "#1f77b4", "#ff7f0e" };
	const struct buf_results *b = r->buf;
	int bars[3];

	panel_bars(b, bars);
	plot_terminal(f, path, 1500, cairo);
	fprintf(f, "set style fill solid 0.85 border -1\nset boxwidth %.2f absolute\n"
		"set key top left\nset grid ytics\nset bars 2\nset termoption noenhanced\n"
		"set multiplot layout 1,3 title 'hugering-bench --buffers: kernel %s, %d CPUs'\n",
		BAR_W, r->mc->kernel, r->mc->cpus);
	/* (a) registration, with the VmPin charge over each bar */
	fprintf(f, "set title \"register 1 MiB buffers: median ms\\n"
		"(log, lower is faster; label: VmPin charge)\"\nset xlabel 'buffer memory registered'\nset logscale y\n"
		"set yrange [*:*]\nset offsets 0,0,graph 0.12,0\n");
	buffers_xtics(f, b);
	if (!bars[0])
		empty_panel(f);
	else
		fprintf(f, "plot ");
	for (int k = 0; k < BP_N && bars[0]; k++)
		fprintf(f, "%s'%s' index 0 every :::%d::%d using 1:2 with boxes lc rgb '%s' "
			"title '%s', '' index 0 every :::%d::%d using 1:2:3 with labels "
			"offset 0,0.7 font ',8' notitle", k ? ", " : "", data, k, k, color[k],
			pages[k], k, k);
	/* (b) READ_FIXED, and (c) receive: the slices' min-max as error bars */
	fprintf(f, "\nunset logscale y\nset yrange [0:*]\n"
		"set offsets 0,0,graph 0.08,0\n"
		"set title \"READ_FIXED, O_DIRECT from tmpfs: GB/s\\n"
		"(higher is better; median of slices, bars: min-max)\"\nset xlabel 'I/O size'\n"
		"set xtics ('4K' 0, '64K' 1, '1M' 2)\nset xrange [-0.6:2.6]\n");
	if (!bars[1])
		empty_panel(f);
	else
		fprintf(f, "plot ");
	for (int k = 0; k < BS_N && bars[1]; k++)
		fprintf(f, "%s'%s' index 1 every :::%d::%d using 1:2 with boxes lc rgb '%s' "
			"title '%s', '' index 1 every :::%d::%d using 1:2:3:4 with yerrorbars "
			"lc rgb 'black' pt 7 ps 0.4 notitle", k ? ", " : "", data, k, k, color[k ? 1 : 0],
			k ? "hugering buffers" : "4 KiB-page buffers", k, k);
	fprintf(f, "\nset title \"multishot receive, loopback TCP: GB/s\\n"
		"(higher is better; median of slices, bars: min-max)\"\nset xlabel 'provided buffer ring'\n"
		"set xtics ('liburing' 0, 'hugering' 1)\nset xrange [-0.7:1.7]\n"
		"set boxwidth 0.5 absolute\nset yrange [0:*]\n");
	if (!bars[2]) {
		empty_panel(f);
		fprintf(f, "unset multiplot\n");
		return;
	}
	fprintf(f, "plot '%s' index 2 every ::0::0 using 1:2 with boxes "
		"lc rgb '%s' notitle, '' index 2 every ::1::1 using 1:2 with boxes lc rgb '%s' "
		"notitle, '' index 2 using 1:2:3:4 with yerrorbars lc rgb 'black' pt 7 ps 0.4 notitle\n"
		"unset multiplot\n", data, color[0], color[1]);
}

typedef void (*data_fn)(FILE *f, const struct report *r);
typedef void (*script_fn)(FILE *f, const char *path, const char *data, const struct report *r,
			  bool cairo);

static int run_gnuplot(const char *path, const char *data, const struct report *r,
		       script_fn script, bool cairo)
{
	FILE *g = popen("gnuplot 2>/dev/null", "w");
	int st;

	if (!g)
		return -errno;
	script(g, path, data, r, cairo);
	st = pclose(g);
	return st == 0 ? 0 : -EIO;
}

static int draw(const char *path, const struct report *r, data_fn fill, script_fn script)
{
	char data[] = "/tmp/hugering-bench-XXXXXX";
	int fd = mkstemp(data), ret;
	FILE *f;

	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		fprintf(stderr, "hugering-bench: --plot: cannot write a temporary file in /tmp: "
			"%s\n", strerror(errno));
		return -EIO;
	}
	fill(f, r);
	fclose(f);
	/* pngcairo looks better; plain png (libgd) where cairo is not built in */
	ret = run_gnuplot(path, data, r, script, true);
	if (ret)
		ret = run_gnuplot(path, data, r, script, false);
	unlink(data);
	if (ret)
		fprintf(stderr, "hugering-bench: --plot %s: gnuplot failed (can %s be written?)\n",
			path, path);
	return ret;
}

int report_plot_buffers_path(const char *path, char *out, size_t len)
{
	const char *ext = plot_ext(path);
	int n;

	if (!ext)
		return -EINVAL;
	n = snprintf(out, len, "%.*s-buffers.%s", (int)(ext - 1 - path), path, ext);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int report_plot(const char *path, const struct report *r)
{
	bool rings = r->n > 0, bufs = r->buf && r->buf->ran;
	char bpath[4096];
	int ret = 0;

	if (rings)
		ret = draw(path, r, ring_data, ring_script);
	if (ret || !bufs)
		return ret;
	if (!rings)
		return draw(path, r, buffers_data, buffers_script);
	if (report_plot_buffers_path(path, bpath, sizeof(bpath))) {
		fprintf(stderr, "hugering-bench: --plot %s: the name is too long for the buffer "
			"plot's (-buffers added); pick a shorter one\n", path);
		return -ENAMETOOLONG;
	}
	fprintf(stderr, "hugering-bench: the buffer section's plot is in %s\n", bpath);
	return draw(bpath, r, buffers_data, buffers_script);
}

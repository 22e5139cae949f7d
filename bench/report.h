/* SPDX-License-Identifier: MIT */
/* hugering-bench reports: table, JSON, CSV, gnuplot. */
#ifndef HUGERING_BENCH_REPORT_H
#define HUGERING_BENCH_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "bench.h"
#include "buffers.h"

struct machine {
	char kernel[65];
	int cpus;
	char cpu_model[128];
	bool pmu;
	int liburing_major, liburing_minor;
};

struct report {
	const struct machine *mc;
	const struct cell *cells;
	int n;
	const struct mode_def *modes;
	const struct shape_def *shapes;
	unsigned flags;		/* the run's setup flags before shape and mode */
	long iterations;
	double nop_seconds;
	bool quick;
	const struct empty_row *empty;	/* the empty-pool phase; NULL: not run */
	int nempty;
	const struct bigmap *big;	/* the big-map phase; ->ran false: not run */
	const struct buf_results *buf;	/* the buffer section; NULL: not run */
};

void report_table(FILE *f, const struct report *r);
void report_json(FILE *f, const struct report *r);
/* @s as a quoted JSON string. */
void report_json_str(FILE *f, const char *s);
/* @v with @prec decimals, or @none (null in JSON, empty in CSV) when not measured (< 0). */
void report_json_num(FILE *f, double v, int prec, const char *none);
/* @s as a CSV field: quoted when it holds a comma, a quote or a line break. */
void report_csv_str(FILE *f, const char *s);
void report_csv(FILE *f, const struct report *r);
/* 0 if @path can be plotted here (extension, gnuplot); else says why on stderr. */
int report_plot_check(const char *path);
/*
 * The ring modes into @path; the buffer section (when it ran) into @path too
 * when no ring mode ran (--buffers-only), else into report_plot_buffers_path.
 */
int report_plot(const char *path, const struct report *r);
/* @path with "-buffers" before its extension: out.png -> out-buffers.png. */
int report_plot_buffers_path(const char *path, char *out, size_t len);

#endif

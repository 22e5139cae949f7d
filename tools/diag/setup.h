/* SPDX-License-Identifier: MIT */
/*
 * hugering-diag's actions that change the machine: --reserve, --fix,
 * --persist.  They live in the tool, not the library: the library only
 * reads and reports.  Every path is below HUGERING_SYSROOT when it is set.
 * Each returns the tool's exit status (0 done, 1 fell short, 2 usage,
 * unknown size or node, or root needed).
 */
#ifndef HUGERING_DIAG_SETUP_H
#define HUGERING_DIAG_SETUP_H

#include <stdbool.h>
#include <stddef.h>

#define SETUP_MAX_REQS 16

struct reserve_req {
	size_t page_size;
	long count;
	int node;		/* -1: the whole system */
};

struct setup_opts {
	bool json;
	bool dry_run;
	bool undo;
	bool enable_io_uring;	/* --fix may set kernel.io_uring_disabled = 0 */
	const char *thp;	/* --fix sets this THP mode; NULL: leave THP alone */
};

/* "2M:64@0" -> @r; 0, or -EINVAL with a message in @err. */
int setup_parse_reserve(const char *arg, struct reserve_req *r, char *err, size_t errlen);
int setup_reserve(const struct reserve_req *reqs, int n, const struct setup_opts *o);
int setup_fix(const struct setup_opts *o);
int setup_persist(const struct setup_opts *o);

#endif

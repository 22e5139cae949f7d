/* SPDX-License-Identifier: MIT */
/*
 * hugering-diag --reserve, --fix and --persist: the machine set up, not
 * only explained.  hugeadm and dpdk-hugepages.py do the same for pools;
 * this adds contiguity (what hugering needs) and the report's own fixes.
 *
 * Safety rules: the pool is grown only from compacted memory and never past
 * what leaves an eighth of memory to everything else; shrinking is the
 * kernel's (it never takes a page in use); io_uring_disabled and THP change
 * only when asked; --dry-run writes nothing; --persist writes one file that
 * says it is ours, and --persist --undo removes only that file.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hugering.h>

#include "model.h"
#include "setup.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define MPOL_BIND_MODE 2
#define MAX_CMDS 4
#define MAX_STEPS 24
#define PERSIST_FILE "/etc/sysctl.d/60-hugering.conf"
#define PERSIST_MARK "# Written by hugering-diag --persist"

/* ------------------------------------------------------------------ */
/* Files below the sysroot                                             */
/* ------------------------------------------------------------------ */

static const char *sysroot(void)
{
	const char *r = getenv("HUGERING_SYSROOT");

	return r ? r : "";
}

static void rpath(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* @fmt (an absolute path) below the sysroot. */
static void rpath(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = (size_t)snprintf(buf, len, "%s", sysroot());
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf + (n < len ? n : len - 1), n < len ? len - n : 1, fmt, ap);
	va_end(ap);
}

static long read_long(const char *path)
{
	char buf[64];
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f))
		v = strtol(buf, NULL, 10);
	fclose(f);
	return v;
}

static int write_str(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");
	int ret = 0;

	if (!f)
		return -errno;
	if (fputs(s, f) < 0)
		ret = -errno;
	if (fclose(f) && !ret)
		ret = -errno;	/* sysfs reports a refused value at close */
	return ret;
}

/* "Key:   123 kB" from (the sysroot's) /proc/meminfo; -1 if absent. */
static long long meminfo_kb(const char *key)
{
	char path[1024], line[256];
	size_t klen = strlen(key);
	long long v = -1;
	FILE *f;

	rpath(path, sizeof(path), "/proc/meminfo");
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtoll(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* May we write @path?  Live: only root; a fake tree: whoever can write it. */
static bool can_write(const char *path)
{
	if (!*sysroot())
		return geteuid() == 0;
	return access(path, W_OK) == 0;
}

/* ------------------------------------------------------------------ */
/* Steps: what was asked, the exact commands, what happened            */
/* ------------------------------------------------------------------ */

struct step {
	char check[32];			/* the report's check id, or "reserve" */
	const char *status;		/* planned, applied, failed, short, skipped, manual */
	int ncmds;
	char cmds[MAX_CMDS][1100];
	char note[1200];
	/* pools only */
	struct reserve_req req;
	long before, obtained, released, in_use_kept, capped_at, measured, run;
	int run_err;			/* 0: run measured; -errno why not */
	bool is_pool;
};

static void step_cmd(struct step *s, const char *path, const char *value)
{
	if (s->ncmds < MAX_CMDS)
		snprintf(s->cmds[s->ncmds++], sizeof(s->cmds[0]), "echo %s > %s", value, path);
}

/* Write @value to @path (unless only planning) and record the command. */
static int step_write(struct step *s, bool apply, const char *path, const char *value)
{
	step_cmd(s, path, value);
	return apply ? write_str(path, value) : 0;
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

/* What the pools are now, every size and node. */
static void json_pool(void)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES];
	int nodes[64];
	int n = hugering_page_sizes(sizes, HUGERING_MAX_PAGE_SIZES);
	int nn = hugering_numa_nodes(nodes, 64);

	printf("\"pool\":[");
	for (int i = 0; i < n; i++) {
		struct hugering_pool p;

		if (hugering_pool_get(sizes[i], -1, &p))
			continue;
		printf("%s{\"size_kb\":%zu,\"total\":%ld,\"free\":%ld,\"reserved\":%ld,"
		       "\"surplus\":%ld,\"overcommit\":%ld,\"nodes\":[", i ? "," : "",
		       sizes[i] >> 10, p.total, p.free, p.reserved, p.surplus, p.overcommit);
		for (int k = 0, first = 1; k < nn; k++) {
			if (hugering_pool_get(sizes[i], nodes[k], &p))
				continue;
			printf("%s{\"node\":%d,\"total\":%ld,\"free\":%ld,\"surplus\":%ld}",
			       first ? "" : ",", nodes[k], p.total, p.free, p.surplus);
			first = 0;
		}
		printf("]}");
	}
	printf("]");
}

static void json_step(const struct step *s)
{
	printf("{\"check\":");
	json_str(s->check);
	printf(",\"status\":\"%s\",\"commands\":[", s->status);
	for (int i = 0; i < s->ncmds; i++) {
		printf(i ? "," : "");
		json_str(s->cmds[i]);
	}
	printf("],\"note\":");
	json_str(s->note);
	if (s->is_pool)
		printf(",\"size_kb\":%zu,\"node\":%d,\"asked\":%ld,\"before\":%ld,\"obtained\":%ld,"
		       "\"released_first\":%ld,\"in_use_kept\":%ld,\"capped_at\":%ld,"
		       "\"free_measured\":%ld,\"largest_run\":%ld", s->req.page_size >> 10,
		       s->req.node, s->req.count, s->before, s->obtained, s->released,
		       s->in_use_kept, s->capped_at, s->measured, s->run);
	printf("}");
}

static void json_steps(const char *action, const struct setup_opts *o, const struct step *st,
		       int n, int exit_code)
{
	printf("{\"action\":\"%s\",\"dry_run\":%s,\"steps\":[", action,
	       o->dry_run ? "true" : "false");
	for (int i = 0; i < n; i++) {
		printf(i ? "," : "");
		json_step(&st[i]);
	}
	printf("],");
	json_pool();
	printf(",\"exit\":%d}\n", exit_code);
}

/* ------------------------------------------------------------------ */
/* --reserve                                                           */
/* ------------------------------------------------------------------ */

/* "2M", "1G", "2048k", "2MB", "2MiB", "1048576kB" -> bytes; 0 if bad. */
static size_t parse_size(const char *s, const char **end)
{
	char *e;
	unsigned long long v = strtoull(s, &e, 10);
	int shift;

	if (e == s || !isdigit((unsigned char)*s))
		return 0;
	switch (toupper((unsigned char)*e)) {
	case 'K': shift = 10; break;
	case 'M': shift = 20; break;
	case 'G': shift = 30; break;
	default: return 0;
	}
	e++;
	if (*e == 'i' && e[1] == 'B')
		e += 2;
	else if (*e == 'B' || *e == 'b')
		e++;
	*end = e;
	return v && v < (1ULL << 20) ? (size_t)(v << shift) : 0;
}

int setup_parse_reserve(const char *arg, struct reserve_req *r, char *err, size_t errlen)
{
	const char *p;
	char *e;

	r->page_size = parse_size(arg, &p);
	if (!r->page_size || *p != ':') {
		snprintf(err, errlen, "--reserve %s: want SIZE:COUNT[@NODE], e.g. 2M:64 or 1G:2@0", arg);
		return -EINVAL;
	}
	errno = 0;
	r->count = strtol(p + 1, &e, 10);
	if (e == p + 1 || errno || r->count < 0) {
		snprintf(err, errlen, "--reserve %s: COUNT must be a number of pages, 0 or more", arg);
		return -EINVAL;
	}
	r->node = -1;
	if (*e == '@') {
		char *n;

		errno = 0;
		r->node = (int)strtol(e + 1, &n, 10);
		if (n == e + 1 || *n || errno || r->node < 0) {
			snprintf(err, errlen, "--reserve %s: NODE must be a node number", arg);
			return -EINVAL;
		}
	} else if (*e) {
		snprintf(err, errlen, "--reserve %s: want SIZE:COUNT[@NODE]", arg);
		return -EINVAL;
	}
	return 0;
}

static void pool_file(char *buf, size_t len, const struct reserve_req *r, const char *file)
{
	if (r->node < 0)
		rpath(buf, len, "/sys/kernel/mm/hugepages/hugepages-%zukB/%s", r->page_size >> 10, file);
	else
		rpath(buf, len, "/sys/devices/system/node/node%d/hugepages/hugepages-%zukB/%s",
		      r->node, r->page_size >> 10, file);
}

/* The size and node exist (else exit 2, with one line saying which). */
static int reserve_check(const struct reserve_req *r)
{
	char path[1024];
	struct stat st;

	rpath(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB", r->page_size >> 10);
	if (stat(path, &st)) {
		fprintf(stderr, "hugering-diag: this kernel has no %zu kB hugepages (%s is missing); "
			"hugering-diag lists the sizes it has\n", r->page_size >> 10, path);
		return 2;
	}
	if (r->node < 0)
		return 0;
	rpath(path, sizeof(path), "/sys/devices/system/node/node%d", r->node);
	if (stat(path, &st)) {
		fprintf(stderr, "hugering-diag: NUMA node %d does not exist (%s is missing); "
			"hugering-diag lists the nodes\n", r->node, path);
		return 2;
	}
	pool_file(path, sizeof(path), r, "nr_hugepages");
	if (stat(path, &st)) {
		fprintf(stderr, "hugering-diag: node %d has no %zu kB pool (%s is missing)\n",
			r->node, r->page_size >> 10, path);
		return 2;
	}
	return 0;
}

/*
 * The most pages the pool may grow to: what leaves an eighth of memory
 * (at least 512 MiB) to everything else; -1 when meminfo does not say.
 * Asking the kernel for more would let the pool eat the page cache and
 * push the machine into the OOM killer.
 */
static long pool_cap(size_t ps, long before)
{
	long long avail = meminfo_kb("MemAvailable"), total = meminfo_kb("MemTotal");
	long long margin;

	if (avail < 0 || total < 0)
		return -1;
	margin = total / 8 > (512LL << 10) ? total / 8 : (512LL << 10);
	if (avail <= margin)
		return before;
	return before + (long)((avail - margin) * 1024 / (long long)ps);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The longest run of physically adjacent pages among the pool's free ones:
 * map them all, fault them in (MADV_POPULATE_WRITE: an error, not SIGBUS,
 * if one is missing), read each PFN.  Only where PFNs are visible.
 */
static int measure_run(const struct reserve_req *r, long *measured, long *run)
{
	struct hugering_pool p;
	size_t ps = r->page_size, len;
	uint64_t *pfn;
	long n, best = 0, cur = 0;
	int shift = __builtin_ctzl(ps), ret = 0;
	char *mem;

	*measured = *run = -1;
	if (*sysroot())
		return -ENOTSUP;
	if (hugering_pfn_visible() <= 0)
		return -EPERM;
	if (hugering_pool_get(ps, -1, &p))
		return -ENOENT;
	n = p.usable;
	if (r->node >= 0) {
		struct hugering_pool np;

		if (!hugering_pool_get(ps, r->node, &np) && np.free < n)
			n = np.free;
	}
	if (n <= 0) {
		*measured = *run = 0;
		return 0;
	}
	/* Mapping faults (zeroes) every page: not for more than 4 GiB. */
	if ((unsigned long long)n * ps > (4ULL << 30))
		return -E2BIG;
	len = (size_t)n * ps;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (shift << MAP_HUGE_SHIFT), -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	pfn = calloc((size_t)n, sizeof(*pfn));
	if (!pfn) {
		munmap(mem, len);
		return -ENOMEM;
	}
	if (r->node >= 0) {
		unsigned long mask[16] = { 0 };

		if (r->node < (int)(sizeof(mask) * 8))
			mask[r->node / 64] = 1UL << (r->node % 64);
		if (syscall(SYS_mbind, mem, len, MPOL_BIND_MODE, mask, sizeof(mask) * 8, 0))
			ret = -errno;
	}
	if (!ret && madvise(mem, len, MADV_POPULATE_WRITE))
		ret = -errno;
	for (long i = 0; !ret && i < n; i++) {
		struct hugering_addr_info ai;

		ret = hugering_addr_info(mem + (size_t)i * ps, &ai);
		pfn[i] = ai.pfn;
	}
	if (!ret) {
		qsort(pfn, (size_t)n, sizeof(*pfn), cmp_u64);
		for (long i = 0; i < n; i++) {
			cur = i && pfn[i] == pfn[i - 1] + ps / 4096 ? cur + 1 : 1;
			best = cur > best ? cur : best;
		}
		*measured = n;
		*run = best;
	}
	free(pfn);
	munmap(mem, len);
	return ret;
}

/*
 * Set one pool to r->count pages.  Growing: the pool's unused free pages
 * go back first (2 MiB only: a 1 GiB page given back may not come back),
 * memory is compacted, then the kernel is asked for the count, so the
 * pages come from memory made as adjacent as it can be.  Shrinking: the
 * kernel frees only free pages; pages in use stay (as surplus) until freed.
 * @apply false: only the commands.
 */
static void reserve_one(const struct reserve_req *r, bool apply, struct step *s)
{
	char nr[1024], val[32], compact[1024];
	long surplus_before, target = r->count, unused = 0;
	struct hugering_pool p;
	int err = 0;

	memset(s, 0, sizeof(*s));
	s->is_pool = true;
	s->req = *r;
	s->capped_at = s->measured = s->run = -1;
	pool_file(nr, sizeof(nr), r, "nr_hugepages");
	s->before = read_long(nr);
	{
		char sp[1024];

		pool_file(sp, sizeof(sp), r, "surplus_hugepages");
		surplus_before = read_long(sp);
	}
	if (r->count > s->before) {
		long cap = pool_cap(r->page_size, s->before);

		if (cap >= 0 && target > cap) {
			target = cap > s->before ? cap : s->before;
			s->capped_at = target;
		}
		if (r->node < 0 && r->page_size < (1UL << 30) &&
		    !hugering_pool_get(r->page_size, -1, &p) && p.usable > 0)
			unused = p.usable;
		if (unused) {
			snprintf(val, sizeof(val), "%ld", s->before - unused);
			err = step_write(s, apply, nr, val);
			s->released = err ? 0 : unused;
		}
		if (r->node < 0)
			rpath(compact, sizeof(compact), "/proc/sys/vm/compact_memory");
		else
			rpath(compact, sizeof(compact), "/sys/devices/system/node/node%d/compact", r->node);
		step_write(s, apply, compact, "1");	/* best effort: no CONFIG_COMPACTION */
	}
	if (target != s->before || s->released) {
		snprintf(val, sizeof(val), "%ld", target);
		err = step_write(s, apply, nr, val);
	}
	if (!apply) {
		s->status = "planned";
		s->obtained = s->before;
		return;
	}
	s->obtained = read_long(nr);
	if (r->count < s->before) {
		char sp[1024];

		pool_file(sp, sizeof(sp), r, "surplus_hugepages");
		s->in_use_kept = read_long(sp) - surplus_before;
		if (s->in_use_kept < 0)
			s->in_use_kept = 0;
	}
	s->status = err && s->obtained < 0 ? "failed" :
		    (r->count >= s->before ? s->obtained >= r->count : s->obtained <= r->count) ?
		    "applied" : "short";
	if (s->capped_at >= 0)
		snprintf(s->note, sizeof(s->note), "stopped at %ld pages: more would leave less than "
			 "an eighth of memory to everything else", s->capped_at);
	else if (err && strcmp(s->status, "applied"))
		snprintf(s->note, sizeof(s->note), "writing %s: %s", nr, strerror(-err));
	else if (!strcmp(s->status, "short"))
		snprintf(s->note, sizeof(s->note), "the kernel found only %ld free %zu kB blocks, "
			 "even after compaction", s->obtained, r->page_size >> 10);
	if (s->in_use_kept > 0 || (r->count < s->before && s->obtained > r->count))
		snprintf(s->note, sizeof(s->note), "%ld pages are in use: the kernel never takes a "
			 "page in use, so they stay (as surplus) until their users free them",
			 s->in_use_kept > 0 ? s->in_use_kept : s->obtained - r->count);
	s->run_err = measure_run(r, &s->measured, &s->run);
}

static void print_pool_step(const struct step *s)
{
	char where[32] = "";

	if (s->req.node >= 0)
		snprintf(where, sizeof(where), " on node %d", s->req.node);
	printf("%zu kB pages%s: asked %ld, had %ld, now %ld", s->req.page_size >> 10, where,
	       s->req.count, s->before, s->obtained);
	if (s->released)
		printf(" (%ld free pages released and memory compacted first)", s->released);
	printf("\n");
	if (s->run >= 0)
		printf("  largest contiguous run: %ld of the %ld free pages (%ld MiB)\n", s->run,
		       s->measured, s->run * (long)(s->req.page_size >> 20));
	else
		printf("  largest contiguous run: unknown (%s)\n",
		       s->run_err == -EPERM ? "PFNs hidden: run as root" :
		       s->run_err == -ENOTSUP ? "a fake tree (HUGERING_SYSROOT)" :
		       s->run_err == -E2BIG ? "not measured: over 4 GiB of free pages" :
		       strerror(-s->run_err));
	if (s->note[0])
		printf("  %s\n", s->note);
}

/* Commands for someone who is not root (or a dry run), one per line. */
static void print_commands(const struct step *st, int n)
{
	for (int i = 0; i < n; i++) {
		if (!st[i].ncmds)
			continue;
		printf("# %s%s%s\n", st[i].check, st[i].note[0] ? ": " : "", st[i].note);
		for (int k = 0; k < st[i].ncmds; k++)
			printf("%s\n", st[i].cmds[k]);
	}
}

int setup_reserve(const struct reserve_req *reqs, int n, const struct setup_opts *o)
{
	static struct step st[SETUP_MAX_REQS];
	char nr[1024];
	bool apply = !o->dry_run;
	int ret = 0;

	for (int i = 0; i < n; i++)
		if ((ret = reserve_check(&reqs[i])))
			return ret;
	pool_file(nr, sizeof(nr), &reqs[0], "nr_hugepages");
	if (apply && !can_write(nr)) {
		for (int i = 0; i < n; i++) {
			reserve_one(&reqs[i], false, &st[i]);
			snprintf(st[i].check, sizeof(st[i].check), "reserve");
		}
		fprintf(stderr, "hugering-diag: --reserve needs root (it writes /sys and /proc/sys); "
			"run these as root:\n");
		if (o->json)
			json_steps("reserve", o, st, n, 2);
		else
			print_commands(st, n);
		return 2;
	}
	for (int i = 0; i < n; i++) {
		reserve_one(&reqs[i], apply, &st[i]);
		snprintf(st[i].check, sizeof(st[i].check), "reserve");
		if (apply && strcmp(st[i].status, "applied"))
			ret = 1;
	}
	if (o->json) {
		json_steps("reserve", o, st, n, ret);
	} else if (!apply) {
		print_commands(st, n);
	} else {
		for (int i = 0; i < n; i++)
			print_pool_step(&st[i]);
	}
	return ret;
}

/* ------------------------------------------------------------------ */
/* --fix                                                               */
/* ------------------------------------------------------------------ */

/* A value the report's fix names: "... vm.min_free_kbytes=67584" -> 67584. */
static long fix_value(const char *fix, const char *key)
{
	const char *p = strstr(fix, key);

	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* The pool the report wants: enough usable pages for the trial and more. */
static void plan_pool(const struct diag *d, const struct diag_check *c,
		      bool apply, struct step *s)
{
	size_t kb = 0;

	sscanf(c->id, "hugepages_%zukB", &kb);
	for (int i = 0; i < d->nsizes; i++) {
		const struct hugering_pool *p = &d->sizes[i].pool;
		long want = p->page_size >= (1UL << 30) ? 2 : 64;
		struct reserve_req r = { .page_size = p->page_size, .node = -1 };

		if (p->page_size >> 10 != kb)
			continue;
		r.count = p->total + (want > p->usable ? want - p->usable : 0);
		reserve_one(&r, apply, s);
		return;
	}
	s->status = "manual";
}

static void plan_write(struct step *s, bool apply, const char *abs, const char *value)
{
	char path[1024];
	int err;

	rpath(path, sizeof(path), "%s", abs);
	err = step_write(s, apply, path, value);
	s->status = !apply ? "planned" : err ? "failed" : "applied";
	if (err)
		snprintf(s->note, sizeof(s->note), "writing %s: %s", path, strerror(-err));
}

/* One step per check that is not ok; what --fix may not do is "manual". */
static int plan_fix(const struct diag *d, const struct setup_opts *o, bool apply,
		    struct step *st)
{
	int n = 0;

	if (o->thp) {
		memset(&st[n], 0, sizeof(st[n]));
		snprintf(st[n].check, sizeof(st[n].check), "thp");
		plan_write(&st[n++], apply, "/sys/kernel/mm/transparent_hugepage/enabled", o->thp);
	}
	for (int i = 0; i < d->nchecks && n < MAX_STEPS; i++) {
		const struct diag_check *c = &d->checks[i];
		struct step *s = &st[n];
		char val[32];

		if (c->status == DIAG_OK)
			continue;
		memset(s, 0, sizeof(*s));
		if (!strncmp(c->id, "hugepages_", 10) && strstr(c->fix, "nr_hugepages")) {
			plan_pool(d, c, apply, s);
		} else if (!strcmp(c->id, "min_free_kbytes") &&
			   fix_value(c->fix, "vm.min_free_kbytes=") > 0) {
			snprintf(val, sizeof(val), "%ld", fix_value(c->fix, "vm.min_free_kbytes="));
			plan_write(s, apply, "/proc/sys/vm/min_free_kbytes", val);
		} else if (!strcmp(c->id, "io_uring") && d->io_uring_disabled > 0 &&
			   o->enable_io_uring) {
			plan_write(s, apply, "/proc/sys/kernel/io_uring_disabled", "0");
		} else if (!strcmp(c->id, "io_uring") && d->io_uring_disabled > 0) {
			s->status = "skipped";
			snprintf(s->note, sizeof(s->note), "kernel.io_uring_disabled is a security "
				 "choice: --fix --enable-io-uring changes it (%s)", c->fix);
		} else {
			s->status = "manual";
			snprintf(s->note, sizeof(s->note), "not safe or not possible at run time: %s",
				 c->fix[0] ? c->fix : c->message);
		}
		snprintf(s->check, sizeof(s->check), "%s", c->id);
		n++;
	}
	return n;
}

static void print_fix(const struct step *st, int n, int failed_after)
{
	int applied = 0;

	for (int i = 0; i < n; i++) {
		if (!st[i].ncmds)
			continue;
		applied++;
		printf("%-7s %s\n", st[i].status, st[i].check);
		for (int k = 0; k < st[i].ncmds; k++)
			printf("          %s\n", st[i].cmds[k]);
		if (st[i].is_pool)
			printf("          %zu kB pool: had %ld, now %ld\n", st[i].req.page_size >> 10,
			       st[i].before, st[i].obtained);
		if (st[i].note[0])
			printf("          %s\n", st[i].note);
	}
	for (int i = 0; i < n; i++)
		if (!st[i].ncmds)
			printf("%-7s %s: %s\n", st[i].status, st[i].check, st[i].note);
	if (!applied)
		printf("nothing to fix at run time\n");
	printf("after: %s\n", failed_after ? "a check still fails (run hugering-diag)" :
	       "no check fails");
}

int setup_fix(const struct setup_opts *o)
{
	static struct step st[MAX_STEPS];
	struct diag d;
	bool apply = !o->dry_run;
	int n, ret = 0, todo = 0, failed_after;

	if (diag_collect(&d, 0)) {
		fprintf(stderr, "hugering-diag: collecting failed: out of memory\n");
		return 1;
	}
	n = plan_fix(&d, o, false, st);
	for (int i = 0; i < n; i++)
		todo += st[i].ncmds > 0;
	if (apply && todo) {
		char probe[1024];

		rpath(probe, sizeof(probe), "/proc/sys/vm/compact_memory");
		for (int i = 0; *sysroot() && i < n; i++)	/* a fake tree: a file a step writes */
			if (st[i].ncmds) {
				snprintf(probe, sizeof(probe), "%s",
					 strrchr(st[i].cmds[st[i].ncmds - 1], '>') + 2);
				break;
			}
		if (!can_write(probe)) {
			fprintf(stderr, "hugering-diag: --fix needs root (it writes /sys and "
				"/proc/sys); run these as root:\n");
			if (o->json)
				json_steps("fix", o, st, n, 2);
			else
				print_commands(st, n);
			diag_free(&d);
			return 2;
		}
		n = plan_fix(&d, o, true, st);
	}
	if (!apply) {
		if (o->json)
			json_steps("fix", o, st, n, 0);
		else
			print_commands(st, n);
		diag_free(&d);
		return 0;
	}
	for (int i = 0; i < n; i++)
		if (!strcmp(st[i].status, "failed") || !strcmp(st[i].status, "short"))
			ret = 1;
	diag_free(&d);
	failed_after = diag_collect(&d, 0) || diag_failed(&d);
	diag_free(&d);
	if (failed_after)
		ret = 1;
	if (o->json)
		json_steps("fix", o, st, n, ret);
	else
		print_fix(st, n, failed_after);
	return ret;
}

/* ------------------------------------------------------------------ */
/* --persist                                                           */
/* ------------------------------------------------------------------ */

/*
 * The file's text: the 2 MiB pool (vm.nr_hugepages sets the default size's
 * pool), min_free_kbytes at least what fragmentation avoidance needs, and
 * surplus pages if set.  1 GiB pages go on the kernel command line: at run
 * time memory is rarely free in 1 GiB pieces.
 */
static void persist_text(const struct diag *d, char *buf, size_t len, char *cmdline,
			 size_t clen)
{
	size_t off = 0;
	char path[1024];
	long mfk;

	off += (size_t)snprintf(buf + off, len - off, "%s: what survives a reboot.\n"
				"# hugering-diag --persist --undo removes this file.\n", PERSIST_MARK);
	cmdline[0] = '\0';
	for (int i = 0; i < d->nsizes; i++) {
		const struct hugering_pool *p = &d->sizes[i].pool;
		long count = p->total > 0 ? p->total : p->page_size >= (1UL << 30) ? 2 : 64;

		if (p->is_default && p->page_size == (2UL << 20)) {
			off += (size_t)snprintf(buf + off, len - off, "vm.nr_hugepages = %ld\n", count);
			if (p->overcommit > 0)
				off += (size_t)snprintf(buf + off, len - off,
							"vm.nr_overcommit_hugepages = %ld\n",
							p->overcommit);
		} else if (p->page_size >= (1UL << 30)) {
			snprintf(cmdline, clen, "hugepagesz=%zuG hugepages=%ld", p->page_size >> 30,
				 count);
		}
	}
	rpath(path, sizeof(path), "/proc/sys/vm/min_free_kbytes");
	mfk = read_long(path);
	for (int i = 0; i < d->nchecks; i++)
		if (!strcmp(d->checks[i].id, "min_free_kbytes") &&
		    fix_value(d->checks[i].fix, "vm.min_free_kbytes=") > mfk)
			mfk = fix_value(d->checks[i].fix, "vm.min_free_kbytes=");
	if (mfk > 0)
		snprintf(buf + off, len - off, "vm.min_free_kbytes = %ld\n", mfk);
}

/* The file is ours if its first line says so. */
static int persist_read(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	buf[0] = '\0';
	if (!f)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
	return strncmp(buf, PERSIST_MARK, strlen(PERSIST_MARK)) ? -EEXIST : 0;
}

static void persist_json(const char *path, bool undo, bool dry, bool changed, const char *text,
			 const char *cmdline, int exit_code)
{
	printf("{\"action\":\"persist\",\"undo\":%s,\"dry_run\":%s,\"file\":", undo ? "true" : "false",
	       dry ? "true" : "false");
	json_str(path);
	printf(",\"changed\":%s,\"content\":", changed ? "true" : "false");
	json_str(text);
	printf(",\"kernel_cmdline\":");
	json_str(cmdline);
	printf(",");
	json_pool();
	printf(",\"exit\":%d}\n", exit_code);
}

static int persist_undo(const struct setup_opts *o, const char *path)
{
	char old[4096];
	int r = persist_read(path, old, sizeof(old));
	bool changed = false;

	if (r == -EEXIST) {
		fprintf(stderr, "hugering-diag: %s was not written by hugering-diag: left alone\n", path);
		return 1;
	}
	if (!r && !o->dry_run) {
		if (!can_write(path) || unlink(path)) {
			fprintf(stderr, "hugering-diag: cannot remove %s: %s; as root: rm %s\n", path,
				strerror(can_write(path) ? errno : EACCES), path);
			return 2;
		}
		changed = true;
	}
	if (o->json)
		persist_json(path, true, o->dry_run, changed, "", "", 0);
	else if (r)
		printf("nothing to undo: %s does not exist\n", path);
	else
		printf("%s %s\n", o->dry_run ? "would remove" : "removed", path);
	return 0;
}

int setup_persist(const struct setup_opts *o)
{
	static char text[4096], old[4096];
	char path[1024], dir[1024], cmdline[128];
	struct diag d;
	bool changed;
	int r;

	rpath(path, sizeof(path), PERSIST_FILE);
	if (o->undo)
		return persist_undo(o, path);
	if (diag_collect(&d, 0)) {
		fprintf(stderr, "hugering-diag: collecting failed: out of memory\n");
		return 1;
	}
	persist_text(&d, text, sizeof(text), cmdline, sizeof(cmdline));
	diag_free(&d);
	r = persist_read(path, old, sizeof(old));
	if (r == -EEXIST) {
		fprintf(stderr, "hugering-diag: %s exists and was not written by hugering-diag: "
			"left alone; move it away first\n", path);
		return 1;
	}
	changed = strcmp(old, text) != 0;
	rpath(dir, sizeof(dir), "/etc/sysctl.d");
	if (changed && !o->dry_run) {
		if (*sysroot()) {	/* a fake root may lack them */
			char etc[1024];

			rpath(etc, sizeof(etc), "/etc");
			mkdir(etc, 0755);
			mkdir(dir, 0755);
		}
		if (!can_write(dir) || write_str(path, text)) {
			fprintf(stderr, "hugering-diag: --persist needs root to write %s; as root, "
				"write this there:\n", path);
			fputs(text, stdout);
			return 2;
		}
	}
	if (o->json) {
		persist_json(path, false, o->dry_run, changed, text, cmdline, 0);
		return 0;
	}
	printf("%s %s\n", !changed ? "unchanged:" : o->dry_run ? "would write" : "wrote", path);
	fputs(text, stdout);
	if (changed && !o->dry_run)
		printf("applied at boot; now: sysctl -p %s\n", path);
	if (cmdline[0])
		printf("1 GiB pages can only be reserved reliably at boot: add to the kernel command "
		       "line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub):\n  %s\n",
		       cmdline);
	printf("RLIMIT_MEMLOCK is no sysctl: for a service, LimitMEMLOCK=infinity in its unit\n");
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * hugering-diag: what this machine's hugepages and io_uring can do, what is
 * wrong, and the exact command that fixes it.  tools/diag/collect.c
 * collects (diag_collect, diag/model.h); this file only formats.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hugering.h>

#include "diag/model.h"
#include "diag/setup.h"

#define VERSION "0.1.0"

static const char usage_text[] =
	"usage: hugering-diag [--json] [--trial | --no-trial] [--help] [--version]\n"
	"       hugering-diag --reserve SIZE:COUNT[@NODE]... [--dry-run] [--json]\n"
	"       hugering-diag --fix [--dry-run] [--enable-io-uring] [--thp MODE] [--json]\n"
	"       hugering-diag --persist [--undo] [--dry-run] [--json]\n"
	"  What this machine's hugepages and io_uring can do, what is wrong, and the\n"
	"  command that fixes it.  Exit 0: no check failed; 1: a check failed; 2: usage.\n"
	"  --no-trial skips allocating a region and creating rings for real.\n"
	"  --reserve 2M:64 sets a pool from compacted memory (repeatable; @NODE for one\n"
	"  node) and reports the largest contiguous run; exit 1 if fewer were obtained,\n"
	"  2 for an unknown size or node or without root.\n"
	"  --fix applies the report's run-time fixes (--dry-run prints the commands).\n"
	"  --persist writes /etc/sysctl.d/60-hugering.conf; --persist --undo removes it.\n"
	"  HUGERING_SYSROOT=DIR reads (and for actions writes) /sys, /proc and /etc\n"
	"  below DIR (the probe stays live).\n";

/* ------------------------------------------------------------------ */
/* Human output                                                        */
/* ------------------------------------------------------------------ */

static const char *nommap_text(int c)
{
	switch (c) {
	case HUGERING_NOMMAP_ANY:
		return "any: rings can live in any hugepage memory";
	case HUGERING_NOMMAP_CONTIG:
		return "contiguous: each ring region must be physically contiguous (6.6-6.9)";
	case HUGERING_NOMMAP_SINGLE_PAGE:
		return "single_page: regions over 4 KiB fail with EFAULT (6.5 bug)";
	default:
		return "unsupported: no IORING_SETUP_NO_MMAP (< 6.5), rings are kernel-mapped";
	}
}

static void limit_text(char *buf, size_t len, unsigned long long v)
{
	if (v == ~0ULL)
		snprintf(buf, len, "unlimited");
	else
		snprintf(buf, len, "%llu kB", v >> 10);
}

static void print_kernel(const struct diag *d)
{
	printf("Kernel\n");
	printf("  %-17s %s\n", "release", d->release);
	printf("  %-17s %s (kernel.io_uring_disabled = %d)\n", "io_uring",
	       d->caps.io_uring == 0 ? "available" :
	       d->caps.io_uring == -EPERM ? "disabled" : "absent", d->io_uring_disabled);
	printf("  %-17s %s\n", "NO_MMAP", nommap_text(d->caps.nommap));
	printf("  %-17s %s\n", "ring resize", d->caps.resize ? "yes (6.13+)" : "no");
	printf("  %-17s %s / %s\n", "SQPOLL / IOPOLL", d->sqpoll ? "yes" : "no",
	       d->iopoll ? "yes" : "no");
	printf("  %-17s %s\n", "preemptible",
	       d->preemptible < 0 ? "unknown" : d->preemptible ? "yes" : "no");
}

static void print_size_row(const struct diag_size *s)
{
	char size[24], resv[24];

	snprintf(size, sizeof(size), "%zu kB%s", s->pool.page_size >> 10,
		 s->pool.is_default ? " *" : "");
	if (s->reservable < 0)
		snprintf(resv, sizeof(resv), "?");
	else
		snprintf(resv, sizeof(resv), "%ld", s->reservable);
	if (s->pool_err)
		printf("  %-13s %-41s %10s  ", size, "unknown: counters unreadable", resv);
	else
		printf("  %-13s %6ld %6ld %6ld %6ld %6ld %6ld %10s  ", size, s->pool.total,
		       s->pool.free, s->pool.reserved, s->pool.surplus, s->pool.overcommit,
		       s->pool.usable, resv);
	for (int k = 0; k < s->nmounts; k++)
		printf("%s%s", k ? "," : "", s->mounts[k]);
	printf("%s\n", s->nmounts ? "" : "-");
	for (int k = 0; k < s->nnodes; k++)
		printf("    node %-6d %6ld %6ld %6s %6ld\n", s->nodes[k].numa_node,
		       s->nodes[k].total, s->nodes[k].free, "", s->nodes[k].surplus);
	if (s->cgroup_max >= 0)
		printf("    cgroup limit %lld kB\n", s->cgroup_max >> 10);
	if (s->cgroup_rsvd_max >= 0)
		printf("    cgroup reservation limit %lld kB\n", s->cgroup_rsvd_max >> 10);
}

static void print_hugepages(const struct diag *d)
{
	printf("Hugepages\n");
	if (!d->nsizes) {
		printf("  none: this kernel offers no hugepages\n");
		return;
	}
	printf("  %-13s %6s %6s %6s %6s %6s %6s %10s  %s\n", "size", "total", "free", "rsvd",
	       "surp", "overc", "usable", "reservable", "mounts");
	for (int i = 0; i < d->nsizes; i++)
		print_size_row(&d->sizes[i]);
	printf("  * default size; reservable: free buddy blocks big enough (? = unknown)\n");
}

/*
 * What registering buffers costs against RLIMIT_MEMLOCK (kernel-facts.md
 * §11.2): each compound page a registration pins is charged at its full
 * size, once per ring (unless cloned), so the charge is the buffers rounded
 * up to whole pages.  Two typical cases: 64 MiB of buffers in default-size
 * pages (4 KiB pages without hugepages), and one 4 KiB buffer in the
 * largest page size.
 */
struct reg_cost {
	unsigned long long bytes, page, charge;
};

static int reg_costs(const struct diag *d, struct reg_cost out[2])
{
	unsigned long long def = 4096, big = 0;

	for (int i = 0; i < d->nsizes; i++) {
		unsigned long long ps = d->sizes[i].pool.page_size;

		if (d->sizes[i].pool.is_default)
			def = ps;
		if (ps > big)
			big = ps;
	}
	out[0] = (struct reg_cost){ 64ULL << 20, def, ((64ULL << 20) + def - 1) / def * def };
	if (!big)
		return 1;
	out[1] = (struct reg_cost){ 4096, big, big };
	return 2;
}

/* 1 within the limit (or not charged), 0 over it, -1 unknown. */
static int reg_fits(const struct diag *d, unsigned long long charge)
{
	if (d->cap_ipc_lock || (!d->memlock_err && d->memlock_soft == ~0ULL))
		return 1;
	if (d->memlock_err)
		return -1;
	return charge <= d->memlock_soft;
}

static const char *fits_text(const struct diag *d, unsigned long long charge)
{
	if (d->cap_ipc_lock)
		return "not charged (CAP_IPC_LOCK)";
	switch (reg_fits(d, charge)) {
	case 1:
		return "within the limit";
	case 0:
		return "over the limit";
	default:
		return "the limit is unknown";
	}
}

/* 4 KiB, 2 MiB, 1 GiB: the largest binary unit that divides @v. */
static void size_text(char *buf, size_t len, unsigned long long v)
{
	if (v && !(v & ((1ULL << 30) - 1)))
		snprintf(buf, len, "%llu GiB", v >> 30);
	else if (v && !(v & ((1ULL << 20) - 1)))
		snprintf(buf, len, "%llu MiB", v >> 20);
	else
		snprintf(buf, len, "%llu KiB", v >> 10);
}

static void print_reg_costs(const struct diag *d)
{
	char b[32], pg[32], ch[32];
	struct reg_cost c[2];
	int n = reg_costs(d, c);

	for (int i = 0; i < n; i++) {
		size_text(b, sizeof(b), c[i].bytes);
		size_text(pg, sizeof(pg), c[i].page);
		size_text(ch, sizeof(ch), c[i].charge);
		if (i)
			printf("  %-17s a %s buffer in a %s page charges %s per ring: %s\n", "", b,
			       pg, ch, fits_text(d, c[i].charge));
		else
			printf("  %-17s %s of buffers in %s pages charges %s per ring: %s\n",
			       "registration", b, pg, ch, fits_text(d, c[i].charge));
	}
}

static void print_process(const struct diag *d)
{
	char soft[32], hard[32];

	limit_text(soft, sizeof(soft), d->memlock_soft);
	limit_text(hard, sizeof(hard), d->memlock_hard);
	printf("Process\n");
	if (d->memlock_err)
		printf("  %-17s unknown (%s)%s\n", "RLIMIT_MEMLOCK", strerror(-d->memlock_err),
		       d->cap_ipc_lock ? " (CAP_IPC_LOCK: not charged)" : "");
	else
		printf("  %-17s %s soft, %s hard%s\n", "RLIMIT_MEMLOCK", soft, hard,
		       d->cap_ipc_lock ? " (CAP_IPC_LOCK: not charged)" : "");
	print_reg_costs(d);
	printf("  %-17s %s\n", "pagemap PFNs", d->pfn_visible ? "visible" : "hidden (no CAP_SYS_ADMIN)");
	printf("  %-17s", "NUMA nodes");
	for (int i = 0; i < d->nnodes; i++)
		printf(" %d", d->nodes[i]);
	printf("\n  %-17s %s\n", "THP", d->thp_enabled);
}

static void print_blocks(const struct diag *d)
{
	printf("Block devices (polled I/O, IOPOLL)\n");
	if (!d->nblocks)
		printf("  none\n");
	for (int i = 0; i < d->nblocks; i++) {
		const struct diag_block *b = &d->blocks[i];

		printf("  %-17s io_poll %s", b->name,
		       b->io_poll < 0 ? "unknown" : b->io_poll ? "yes" : "no");
		if (b->poll_queues >= 0)
			printf(", nvme.poll_queues = %d", b->poll_queues);
		printf("\n");
	}
}

static void print_trial(const struct diag *d)
{
	printf("Trial\n");
	for (int i = 0; i < d->ntrials; i++) {
		const struct diag_trial *t = &d->trials[i];

		printf("  %zu kB: region ", t->page_size >> 10);
		if (t->region_err)
			printf("failed (%s)\n", strerror(-t->region_err));
		else
			printf("ok, contiguous %s (%s)\n", hugering_contig_name(t->contiguous),
			       hugering_proof_name(t->proof));
		for (int k = 0; k < 2; k++) {
			const struct diag_ring *r = &t->rings[k];

			printf("    ring %u/%u: ", r->sq, r->cq);
			if (r->err)
				printf("failed: %s\n", r->reason);
			else if (r->reason[0])
				printf("%s (%s)\n", hugering_mode_name(r->mode), r->reason);
			else
				printf("%s\n", hugering_mode_name(r->mode));
		}
	}
}

static void print_checks(const struct diag *d)
{
	printf("Checks\n");
	for (int i = 0; i < d->nchecks; i++) {
		const struct diag_check *c = &d->checks[i];

		printf("  %-4s  %-20s %s\n", diag_status_name(c->status), c->id,
		       c->message);
		if (c->fix[0] && c->status != DIAG_OK)
			printf("  %-4s  %-20s fix: %s\n", "", "", c->fix);
	}
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

/*
 * Length of the well-formed UTF-8 character at @s (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), 0 if there is none.
 * Stops at the first bad byte, so never reads past a NUL.
 */
static int utf8_char(const unsigned char *s)
{
	unsigned char lo = 0x80, hi = 0xbf;
	int n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	n = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/*
 * A JSON string.  Paths, the release and sysfs strings are bytes, not
 * text: a byte that does not start a well-formed UTF-8 character becomes
 * U+FFFD, so the output is always valid UTF-8 (RFC 8259).
 */
static void json_str(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	putchar('"');
	while (*s) {
		int n = utf8_char(s);

		if (!n)
			fputs("\\ufffd", stdout);
		else if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if (*s < 0x20)
			printf("\\u%04x", *s);
		else
			fwrite(s, 1, (size_t)n, stdout);
		s += n ? n : 1;
	}
	putchar('"');
}

static long long json_limit(unsigned long long v)
{
	return v == ~0ULL ? -1 : (long long)v;
}

static void json_kernel(const struct diag *d)
{
	printf("\"kernel\":{\"release\":");
	json_str(d->release);
	printf(",\"io_uring_disabled\":%d,\"io_uring\":%s,\"nommap\":\"%s\","
	       "\"resize_rings\":%s,\"sqpoll\":%s,\"iopoll\":%s,\"preemptible\":%d,"
	       "\"ring_header\":%u},", d->io_uring_disabled,
	       d->caps.io_uring == 0 ? "\"available\"" :
	       d->caps.io_uring == -EPERM ? "\"disabled\"" : "\"absent\"",
	       hugering_nommap_name(d->caps.nommap), d->caps.resize ? "true" : "false",
	       d->sqpoll ? "true" : "false", d->iopoll ? "true" : "false", d->preemptible,
	       d->caps.ring_header);
	printf("\"pagemap\":{\"pfn_visible\":%s},", d->pfn_visible ? "true" : "false");
}

/* The pool's counters, or null for each and the reason when unreadable. */
static void json_counters(const struct diag_size *s)
{
	if (s->pool_err) {
		printf("\"total\":null,\"free\":null,\"reserved\":null,\"surplus\":null,"
		       "\"overcommit\":null,\"usable\":null,\"counters_error\":");
		json_str(strerror(-s->pool_err));
		printf(",");
		return;
	}
	printf("\"total\":%ld,\"free\":%ld,\"reserved\":%ld,\"surplus\":%ld,"
	       "\"overcommit\":%ld,\"usable\":%ld,\"counters_error\":null,", s->pool.total,
	       s->pool.free, s->pool.reserved, s->pool.surplus, s->pool.overcommit,
	       s->pool.usable);
}

static void json_hugepages(const struct diag *d)
{
	printf("\"hugepages\":[");
	for (int i = 0; i < d->nsizes; i++) {
		const struct diag_size *s = &d->sizes[i];

		printf("%s{\"size_kb\":%zu,\"default\":%s,", i ? "," : "",
		       s->pool.page_size >> 10, s->pool.is_default ? "true" : "false");
		json_counters(s);
		printf("\"reservable\":%ld,\"cgroup_max\":%lld,\"cgroup_rsvd_max\":%lld,\"mounts\":[",
		       s->reservable, s->cgroup_max, s->cgroup_rsvd_max);
		for (int k = 0; k < s->nmounts; k++) {
			printf(k ? "," : "");
			json_str(s->mounts[k]);
		}
		printf("],\"nodes\":[");
		for (int k = 0; k < s->nnodes; k++)
			printf("%s{\"node\":%d,\"total\":%ld,\"free\":%ld,\"surplus\":%ld}",
			       k ? "," : "", s->nodes[k].numa_node, s->nodes[k].total,
			       s->nodes[k].free, s->nodes[k].surplus);
		printf("]}");
	}
	printf("],");
}

/* "registration":[{bytes, page_kb, charge, fits (null: limit unknown)}...] */
static void json_reg_costs(const struct diag *d)
{
	struct reg_cost c[2];
	int n = reg_costs(d, c);

	printf(",\"registration\":[");
	for (int i = 0; i < n; i++) {
		int fits = reg_fits(d, c[i].charge);

		printf("%s{\"bytes\":%llu,\"page_kb\":%llu,\"charge\":%llu,\"fits\":%s}",
		       i ? "," : "", c[i].bytes, c[i].page >> 10, c[i].charge,
		       fits < 0 ? "null" : fits ? "true" : "false");
	}
	printf("]");
}

static void json_process(const struct diag *d)
{
	printf("\"numa\":{\"nodes\":[");
	for (int i = 0; i < d->nnodes; i++)
		printf("%s%d", i ? "," : "", d->nodes[i]);
	printf("]},\"thp\":{\"enabled\":");
	json_str(d->thp_enabled);
	printf("},\"limits\":{");
	if (d->memlock_err) {
		printf("\"memlock_soft\":null,\"memlock_hard\":null,\"memlock_error\":");
		json_str(strerror(-d->memlock_err));
	} else {
		printf("\"memlock_soft\":%lld,\"memlock_hard\":%lld,\"memlock_error\":null",
		       json_limit(d->memlock_soft), json_limit(d->memlock_hard));
	}
	printf(",\"cap_ipc_lock\":%s", d->cap_ipc_lock ? "true" : "false");
	json_reg_costs(d);
	printf("},");
	printf("\"block\":[");
	for (int i = 0; i < d->nblocks; i++) {
		printf("%s{\"name\":", i ? "," : "");
		json_str(d->blocks[i].name);
		printf(",\"io_poll\":%d,\"poll_queues\":%d}", d->blocks[i].io_poll,
		       d->blocks[i].poll_queues);
	}
	printf("],");
}

static void json_trial(const struct diag *d)
{
	printf("\"trial\":[");
	for (int i = 0; i < d->ntrials; i++) {
		const struct diag_trial *t = &d->trials[i];
		const struct diag_ring *r0 = &t->rings[0];
		const char *err = t->region_err ? strerror(-t->region_err) :
				  r0->err ? r0->reason : NULL;

		printf("%s{\"size_kb\":%zu,\"region_ok\":%s,\"contiguous\":\"%s\",\"proof\":\"%s\","
		       "\"ring_mode\":\"%s\",\"error\":", i ? "," : "", t->page_size >> 10,
		       t->region_err ? "false" : "true", hugering_contig_name(t->contiguous),
		       hugering_proof_name(t->proof), r0->err ? "none" : hugering_mode_name(r0->mode));
		if (err)
			json_str(err);
		else
			printf("null");
		printf(",\"rings\":[");
		for (int k = 0; k < 2; k++) {
			const struct diag_ring *r = &t->rings[k];

			printf("%s{\"sq\":%u,\"cq\":%u,\"mode\":\"%s\",\"error\":%d,"
			       "\"fallback_errno\":%d,\"reason\":", k ? "," : "", r->sq, r->cq,
			       r->err ? "none" : hugering_mode_name(r->mode), r->err,
			       r->fallback_errno);
			json_str(r->reason);
			printf("}");
		}
		printf("]}");
	}
	printf("],");
}

static void json_checks(const struct diag *d)
{
	printf("\"checks\":[");
	for (int i = 0; i < d->nchecks; i++) {
		const struct diag_check *c = &d->checks[i];

		printf("%s{\"id\":", i ? "," : "");
		json_str(c->id);
		printf(",\"status\":\"%s\",\"message\":", diag_status_name(c->status));
		json_str(c->message);
		printf(",\"fix\":");
		json_str(c->fix);
		printf("}");
	}
	printf("]");
}

static void print_json(const struct diag *d)
{
	printf("{");
	json_kernel(d);
	json_hugepages(d);
	json_process(d);
	json_trial(d);
	json_checks(d);
	printf("}\n");
}

/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "trial", no_argument, NULL, 't' },
		{ "no-trial", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "reserve", required_argument, NULL, 'r' },
		{ "fix", no_argument, NULL, 'f' },
		{ "persist", no_argument, NULL, 'p' },
		{ "undo", no_argument, NULL, 'u' },
		{ "dry-run", no_argument, NULL, 'd' },
		{ "enable-io-uring", no_argument, NULL, 'E' },
		{ "thp", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	static struct reserve_req reqs[SETUP_MAX_REQS];
	struct setup_opts so = { 0 };
	struct diag d;
	bool json = false, trial = true, fix = false, persist = false;
	int c, ret, nreqs = 0;
	char err[256];

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 't': trial = true; break;
		case 'n': trial = false; break;
		case 'h': fputs(usage_text, stdout); return 0;
		case 'V': printf("hugering-diag " VERSION "\n"); return 0;
		case 'r':
			if (nreqs == SETUP_MAX_REQS) {
				fprintf(stderr, "hugering-diag: at most %d --reserve\n", SETUP_MAX_REQS);
				return 2;
			}
			if (setup_parse_reserve(optarg, &reqs[nreqs++], err, sizeof(err))) {
				fprintf(stderr, "hugering-diag: %s\n", err);
				return 2;
			}
			break;
		case 'f': fix = true; break;
		case 'p': persist = true; break;
		case 'u': so.undo = true; break;
		case 'd': so.dry_run = true; break;
		case 'E': so.enable_io_uring = true; break;
		case 'T': so.thp = optarg; break;
		default: fputs(usage_text, stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hugering-diag: unexpected argument '%s'; see --help\n", argv[optind]);
		return 2;
	}
	so.json = json;
	if ((nreqs > 0) + fix + persist > 1) {
		fprintf(stderr, "hugering-diag: one action at a time: --reserve, --fix or --persist\n");
		return 2;
	}
	if ((so.undo && !persist) || ((so.dry_run || so.undo) && !nreqs && !fix && !persist) ||
	    ((so.enable_io_uring || so.thp) && !fix)) {
		fprintf(stderr, "hugering-diag: --undo goes with --persist, --dry-run with an action, "
			"--enable-io-uring and --thp with --fix; see --help\n");
		return 2;
	}
	if (so.thp && strcmp(so.thp, "always") && strcmp(so.thp, "madvise") &&
	    strcmp(so.thp, "never")) {
		fprintf(stderr, "hugering-diag: --thp %s: want always, madvise or never\n", so.thp);
		return 2;
	}
	if (nreqs)
		return setup_reserve(reqs, nreqs, &so);
	if (fix)
		return setup_fix(&so);
	if (persist)
		return setup_persist(&so);
	ret = diag_collect(&d, trial ? DIAG_TRIAL : 0);
	if (ret) {
		fprintf(stderr, "hugering-diag: collecting failed: %s\n", strerror(-ret));
		return 1;
	}
	if (json) {
		print_json(&d);
	} else {
		print_kernel(&d);
		print_hugepages(&d);
		print_process(&d);
		print_blocks(&d);
		if (trial)
			print_trial(&d);
		print_checks(&d);
	}
	ret = diag_failed(&d);
	diag_free(&d);
	return ret;
}

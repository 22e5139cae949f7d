/* SPDX-License-Identifier: MIT */
/*
 * Fault injection below the arena (issue 16): every public operation is run
 * once to count its hr_sys_* calls (K), then again K times with call n
 * failing (n = 1..K, with each errno that fits the syscall).  Each time it
 * must return 0 (a fallback, reported) or -errno with a reason, and leave no
 * fd, no hugepage and (ASan build) no memory behind; no crash, no SIGBUS.
 *
 * Built only into build/tests/hugering-fault, linked with
 * tests/fault/sys-fault.o in place of lib/sys.o.  Each site hit (syscall and
 * caller) and its outcomes go to the Criterion log and to $HUGERING_FAULT_LOG;
 * scripts/check-fault-sites.sh (make check-fault) then fails unless every
 * hr_sys_* call in lib/ was failed at least once by some case here.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "fault/sys-fault.h"
#include "../tools/diag/model.h"

#define PAGE_4K 4096UL

static void report_sites(bool to_criterion);

static void fault_fini(void)
{
	report_sites(true);
	th_fini();
}

TestSuite(fault, .init = th_init, .fini = fault_fini, .timeout = 600);

/* What the operation under test said when it failed (read at once). */
static char why[256];

static int failed(int ret)
{
	if (ret < 0)
		snprintf(why, sizeof(why), "%s", hugering_last_error());
	return ret;
}

/* The errnos that fit each syscall. */
static const int *errs_for(const char *name, int *n)
{
	static const int fd_errs[] = { EMFILE, ENOMEM };
	static const int mem_errs[] = { ENOMEM, EFAULT, EINTR };
	static const int setup_errs[] = { ENOMEM, EMFILE, EFAULT, EINTR };
	static const int other[] = { ENOMEM, EINTR };

	if (!strcmp(name, "memfd_create")) {
		*n = 2;
		return fd_errs;
	}
	if (!strcmp(name, "madvise") || !strcmp(name, "move_pages") ||
	    !strncmp(name, "pread", 5) || !strncmp(name, "ioctl", 5)) {
		*n = 3;
		return mem_errs;
	}
	if (!strcmp(name, "io_uring_setup") || !strcmp(name, "io_uring_register")) {
		*n = 4;
		return setup_errs;
	}
	*n = 2;
	return other;
}

/*
 * Free hugepages.  Not minus resv_hugepages: a failed populate leaves the
 * reservation its mmap made in the memfd (the kernel releases a shared
 * mapping's reservation on punch only for pages that exist), which the next
 * page at that offset takes over; the pages themselves must all come back.
 */
static long usable(void)
{
	return th_pool_field(SZ_2M, "free_hugepages");
}

static bool wait_free(long n, int ms)
{
	for (int w = 0; usable() < n; w += 5) {
		if (w >= ms)
			return false;
		usleep(5000);
	}
	return true;
}

/*
 * Run @run(@arg) once to warm up (one-time probes), once counting calls,
 * then once per (call, errno) with that call failing.
 */
static void sweep(const char *what, int (*run)(void *), void *arg)
{
	char names[512][40];
	long k, injected = 0;
	int ret, fd0;
	long free0;

	ret = run(arg);
	cr_assert_leq(ret, 0, "%s: warm-up returned %d", what, ret);
	th_settle_pool(SZ_2M);
	free0 = usable();
	fd0 = th_fd_count();
	fault_arm(0, 0);
	ret = run(arg);
	k = fault_calls();
	fault_disarm();
	cr_assert_leq(k, 512, "%s: %ld calls", what, k);
	for (long i = 1; i <= k; i++)
		snprintf(names[i - 1], sizeof(names[0]), "%s", fault_name(i));
	cr_log_info("%s: %ld hr_sys calls without faults (returned %d)", what, k, ret);
	cr_assert(wait_free(free0, 3000), "%s: unfaulted run kept hugepages", what);
	for (long n = 1; n <= k; n++) {
		int nerr;
		const int *errs = errs_for(names[n - 1], &nerr);

		if (!fault_injectable(names[n - 1]))
			continue;
		for (int e = 0; e < nerr; e++) {
			char out[96];

			why[0] = 0;
			fault_arm(n, errs[e]);
			ret = run(arg);
			fault_disarm();
			if (!fault_fired())
				continue;	/* this run took another path */
			injected++;
			cr_assert(ret <= 0, "%s: call %ld (%s) -%s: returned %d", what, n,
				  names[n - 1], strerrorname_np(errs[e]), ret);
			cr_assert(ret == 0 || why[0], "%s: call %ld (%s) -%s: %d without a reason",
				  what, n, names[n - 1], strerrorname_np(errs[e]), ret);
			snprintf(out, sizeof(out), "%s: -%s -> %s", what, strerrorname_np(errs[e]),
				 ret ? strerrorname_np(-ret) : "0");
			fault_note_outcome(out);
			cr_assert_eq(th_fd_count(), fd0, "%s: call %ld (%s) -%s: fd leaked (%d -> %d)",
				     what, n, names[n - 1], strerrorname_np(errs[e]), fd0,
				     th_fd_count());
			cr_assert(wait_free(free0, 3000),
				  "%s: call %ld (%s) -%s: hugepages kept (%ld usable, had %ld)",
				  what, n, names[n - 1], strerrorname_np(errs[e]), usable(), free0);
		}
	}
	cr_log_info("%s: %ld faults injected over %ld calls", what, injected, k);
}

static long held_by_default_arena(void)
{
	struct hugering_arena_stats st;

	if (hugering_arena_stats(hugering_default_arena(), &st))
		return 0;
	return st.pages_held;
}

/*
 * One run in a fresh child, so that the once-per-process work (the kernel
 * probe, the ring header read, the default arena's first page) happens in
 * it; fails call @n with -@err.  The child checks what sweep() checks (pages
 * the default arena keeps for later rings count as given back) and reports
 * its sites; returns the child's number of calls.
 */
static long child_run(const char *what, int (*run)(void *), void *arg, long n, int err)
{
	char msg[256] = "";
	long calls = 0;
	int pfd[2], status;
	pid_t pid;

	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		/* First: a child makes its own default arena (and memfd). */
		long held0 = held_by_default_arena(), free0 = usable();
		int fd0 = th_fd_count(), ret;

		fault_reset_sites();
		why[0] = 0;
		fault_arm(n, err);
		ret = run(arg);
		fault_disarm();
		calls = fault_calls();
		if (ret > 0)
			snprintf(msg, sizeof(msg), "returned %d", ret);
		else if (ret < 0 && !why[0])
			snprintf(msg, sizeof(msg), "%s without a reason", strerrorname_np(-ret));
		else if (th_fd_count() != fd0)
			snprintf(msg, sizeof(msg), "fd leaked (%d -> %d)", fd0, th_fd_count());
		for (int w = 0; !msg[0]; w += 5) {
			long back = usable() + held_by_default_arena() - held0;

			if (back >= free0)
				break;
			if (w >= 3000)
				snprintf(msg, sizeof(msg), "hugepages kept (%ld back, had %ld)",
					 back, free0);
			usleep(5000);
		}
		if (fault_fired()) {
			char out[96];

			snprintf(out, sizeof(out), "%s: -%s -> %s", what, strerrorname_np(err),
				 ret ? strerrorname_np(-ret) : "0");
			fault_note_outcome(out);
		}
		/* Not through Criterion: its channel is the parent's, not a child's. */
		report_sites(false);
		if (write(pfd[1], &calls, sizeof(calls)) != sizeof(calls) ||
		    write(pfd[1], msg, sizeof(msg)) != sizeof(msg))
			_exit(2);
		_exit(msg[0] ? 1 : 0);
	}
	close(pfd[1]);
	if (read(pfd[0], &calls, sizeof(calls)) != sizeof(calls) ||
	    read(pfd[0], msg, sizeof(msg)) != sizeof(msg))
		snprintf(msg, sizeof(msg), "child died before reporting");
	close(pfd[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "%s: call %ld -%s: %s (status %#x)", what, n, n ? strerrorname_np(err) : "-",
		  msg, status);
	return calls;
}

/* sweep() for what a process does once: each run in a fresh child. */
static void sweep_first(const char *what, int (*run)(void *), void *arg)
{
	static const int errs[] = { ENOMEM, EMFILE, EFAULT, EINTR };
	long k = child_run(what, run, arg, 0, 0);

	cr_log_info("%s (first in a process): %ld hr_sys calls without faults", what, k);
	for (long n = 1; n <= k; n++)
		for (int e = 0; e < 4; e++)
			child_run(what, run, arg, n, errs[e]);
}

/* The caller of each site, as addr2line names it. */
static void symbol_of(void *addr, char *buf, size_t len)
{
	Dl_info di;
	char cmd[512];
	FILE *f;

	snprintf(buf, len, "%p", addr);
	char exe[256];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (!dladdr(addr, &di) || n <= 0)
		return;
	exe[n] = 0;	/* Criterion renames its workers: argv[0] is no path */
	/* The return address is past the call: ask for the call itself. */
	snprintf(cmd, sizeof(cmd), "addr2line -f -s -e '%s' %#lx 2>&1 | paste -sd ' '",
		 di.dli_fname && strchr(di.dli_fname, '/') ? di.dli_fname : exe,
		 (unsigned long)((char *)addr - (char *)di.dli_fbase - 1));
	f = popen(cmd, "r");
	if (!f)
		return;
	if (fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = 0;
	pclose(f);
}

static void report_sites(bool to_criterion)
{
	const char *path = getenv("HUGERING_FAULT_LOG");
	const struct fault_site *s;
	FILE *log = path ? fopen(path, "a") : NULL;
	int n;

	s = fault_sites(&n);
	for (int i = 0; i < n; i++) {
		char sym[256];

		symbol_of(s[i].caller, sym, sizeof(sym));
		if (to_criterion)
			cr_log_info("site %s in %s: %ld calls, %ld failed: %s", s[i].name, sym,
				    s[i].calls, s[i].failed, s[i].outcomes[0] ? s[i].outcomes :
				    fault_injectable(s[i].name) ? "-" : "not injectable");
		if (log)
			fprintf(log, "%s\t%s\t%ld\t%ld\t%s\n", s[i].name, sym, s[i].calls,
				s[i].failed, s[i].outcomes[0] ? s[i].outcomes :
				fault_injectable(s[i].name) ? "-" : "not injectable");
	}
	if (log)
		fclose(log);
}

/* Regions */

static int region_op(void *arg)
{
	const struct hugering_region_opts *o = arg;
	struct hugering_region *r = NULL;
	int ret = failed(hugering_region_alloc(o, &r));

	if (!ret)
		hugering_region_free(r);
	return ret;
}

Test(fault, region_contig)
{
	struct hugering_region_opts o = { .size = 3 * SZ_2M, .page_size = SZ_2M,
					  .flags = HUGERING_REGION_CONTIG };

	th_need_pool(SZ_2M, 8);
	sweep("region_alloc CONTIG 3x2M", region_op, &o);
}

Test(fault, region_contig_fallback)
{
	struct hugering_region_opts o = { .size = 3 * SZ_2M, .page_size = SZ_2M,
					  .flags = HUGERING_REGION_CONTIG | HUGERING_REGION_FALLBACK |
						   HUGERING_REGION_DONTFORK };

	th_need_pool(SZ_2M, 8);
	sweep("region_alloc CONTIG|FALLBACK|DONTFORK 3x2M", region_op, &o);
}

Test(fault, region_base)
{
	struct hugering_region_opts o = { .size = 3 * PAGE_4K, .page_size = PAGE_4K };

	sweep("region_alloc 4k pages", region_op, &o);
}

/* A node named: the mbind before populate (bind_node). */
Test(fault, region_numa_node)
{
	struct hugering_region_opts o = { .size = 2 * SZ_2M, .page_size = SZ_2M,
					  .numa_node = 0, .flags = HUGERING_REGION_NUMA_NODE };

	th_need_pool(SZ_2M, 4);
	sweep("region_alloc 2x2M on node 0", region_op, &o);
}

/*
 * The pages of the first CONTIG search round made non-adjacent, so that the
 * search grows and punches the pages outside its run (punch_others).  The
 * pool's free list is LIFO: of a file's pages with sorted frames p0 < p1 <
 * p2 < ..., give back all but p0 and p2, then p2, then p0; the next two
 * pages taken are p0 and p2, which are never adjacent.  Done before every
 * run, as each run reorders the free list.
 */
#define ARRANGE_PAGES 8

static int by_pfn(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return x[0] < y[0] ? -1 : x[0] > y[0];
}

static void arrange_free_list(void)
{
	uint64_t pages[ARRANGE_PAGES][2];	/* pfn, file offset */
	int fd = memfd_create("fault-arrange", MFD_HUGETLB | MFD_HUGE_2MB);
	size_t len = ARRANGE_PAGES * SZ_2M;
	char *p;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)len), 0);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	for (int i = 0; i < ARRANGE_PAGES; i++) {
		pages[i][0] = th_pfn(p + i * SZ_2M);
		pages[i][1] = i * SZ_2M;
		cr_assert_neq(pages[i][0], 0, "arranging the pool needs visible PFNs");
	}
	munmap(p, len);
	qsort(pages, ARRANGE_PAGES, sizeof(pages[0]), by_pfn);
	for (int i = ARRANGE_PAGES - 1; i >= 0; i--)
		if (i != 0 && i != 2)
			th_punch(fd, pages[i][1], SZ_2M);
	th_punch(fd, pages[2][1], SZ_2M);
	th_punch(fd, pages[0][1], SZ_2M);
	close(fd);
}

static int region_arranged_op(void *arg)
{
	arrange_free_list();
	return region_op(arg);
}

Test(fault, region_contig_search_punches)
{
	struct hugering_region_opts o = { .size = 2 * SZ_2M, .page_size = SZ_2M,
					  .flags = HUGERING_REGION_CONTIG };

	if (!th_pfn_visible())
		cr_skip_test("PFNs hidden: the pool cannot be arranged (root pass covers it)");
	th_need_pool(SZ_2M, 16);
	th_need_contig_run(SZ_2M, 2);
	sweep("region_alloc CONTIG 2x2M, first pages apart", region_arranged_op, &o);
}

/* Arenas */

static int arena_op(void *arg)
{
	struct hugering_arena_opts ao = { .flags = *(unsigned *)arg };
	struct hugering_init_opts o = { .policy = HUGERING_POLICY_NOMMAP };
	struct io_uring ring;
	struct io_uring_params p;
	struct hugering_arena *a;
	int ret;

	memset(&p, 0, sizeof(p));
	ret = failed(hugering_arena_create(&ao, &a));
	if (ret)
		return ret;
	o.arena = a;
	ret = failed(hugering_queue_init_opts(64, &ring, &p, &o));
	if (!ret)
		hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0, "arena_destroy: %s", hugering_last_error());
	return ret;
}

Test(fault, arena_ring)
{
	unsigned flags = HUGERING_ARENA_DONTFORK;

	th_need_pool(SZ_2M, 4);
	sweep("arena_create + ring + exit + destroy", arena_op, &flags);
}

/* Rings from the default arena */

struct ring_case {
	unsigned entries, cq;
	int policy;
	unsigned flags;
};

static int ring_op(void *arg)
{
	const struct ring_case *c = arg;
	struct hugering_init_opts o = { .policy = c->policy };
	struct io_uring_params p;
	struct io_uring ring;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = c->flags;
	if (c->cq) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = c->cq;
	}
	ret = failed(hugering_queue_init_opts(c->entries, &ring, &p, &o));
	if (!ret) {
		struct hugering_ring_info info;

		cr_assert_eq(hugering_ring_info(&ring, &info), 0);
		if (c->policy == HUGERING_POLICY_NOMMAP)
			cr_assert_neq(info.mode, HUGERING_MODE_KERNEL, "nommap policy fell back");
		th_nops(&ring, 8);
		hugering_queue_exit(&ring);
	}
	return ret;
}

Test(fault, ring_small_auto)
{
	struct ring_case c = { 256, 0, HUGERING_POLICY_AUTO, 0 };

	th_need_pool(SZ_2M, 4);
	sweep("queue_init 256 auto", ring_op, &c);
}

Test(fault, ring_small_nommap)
{
	struct ring_case c = { 256, 0, HUGERING_POLICY_NOMMAP, 0 };

	th_need_pool(SZ_2M, 4);
	sweep("queue_init 256 nommap", ring_op, &c);
}

Test(fault, ring_large_auto)
{
	struct ring_case c = { 32768, 65536, HUGERING_POLICY_AUTO, 0 };

	th_need_pool(SZ_2M, 8);
	sweep("queue_init 32768/65536 auto", ring_op, &c);
}

Test(fault, ring_large_nommap)
{
	struct ring_case c = { 32768, 65536, HUGERING_POLICY_NOMMAP, 0 };

	th_need_pool(SZ_2M, 8);
	sweep("queue_init 32768/65536 nommap", ring_op, &c);
}

/* Verification of hugepage and base-page memory */

struct verify_case {
	void *huge, *base;
};

static int verify_op(void *arg)
{
	struct verify_case *c = arg;
	struct hugering_verify v;
	int ret = failed(hugering_mem_verify(c->huge, SZ_2M, &v));

	if (ret)
		return ret;
	return failed(hugering_mem_verify(c->base, 4 * PAGE_4K, &v));
}

Test(fault, mem_verify)
{
	struct hugering_region_opts o = { .size = SZ_2M, .page_size = SZ_2M };
	struct hugering_region *r;
	struct verify_case c;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0, "%s", hugering_last_error());
	c.huge = hugering_region_addr(r);
	c.base = mmap(NULL, 4 * PAGE_4K, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	cr_assert_neq(c.base, MAP_FAILED);
	sweep("mem_verify 2M + 4k", verify_op, &c);
	munmap(c.base, 4 * PAGE_4K);
	hugering_region_free(r);
}

/* Exit by resize (DEFER_TASKRUN): the slot is freed at once through a tiny region. */
Test(fault, ring_defer_taskrun)
{
	struct ring_case c = { 256, 0, HUGERING_POLICY_AUTO,
			       IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };

	th_need_pool(SZ_2M, 4);
	sweep("queue_init 256 DEFER_TASKRUN auto", ring_op, &c);
}

/*
 * A ring of 64 KiB or more on DEFER_TASKRUN: its exit resizes it into a
 * throw-away region (resize_away) so the slot is reusable at once; a
 * failure there quarantines the slot instead.
 */
static void resized_case(void (*how)(const char *, int (*)(void *), void *))
{
	struct ring_case c = { 4096, 0, HUGERING_POLICY_AUTO,
			       IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
	struct hugering_kernel_caps caps;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	if (!caps.resize)
		cr_skip_test("kernel %s cannot resize rings (6.13+)", caps.release);
	th_need_pool(SZ_2M, 4);
	how("queue_init 4096 DEFER_TASKRUN auto", ring_op, &c);
}

Test(fault, ring_defer_taskrun_resized) { resized_case(sweep); }

/* The throw-away region is mapped once per process: fail it in a fresh one. */
Test(fault, ring_defer_taskrun_resized_first) { resized_case(sweep_first); }

/*
 * A user-facing resize (hugering_ring_resize, Linux 6.13+): a 64-entry
 * DEFER_TASKRUN ring grown to 4096/65536 and used; a failed resize must
 * leave the ring as it was, still usable.
 */
static int resize_op(void *arg)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
						IORING_SETUP_DEFER_TASKRUN };
	struct io_uring ring;
	int ret;

	(void)arg;
	ret = failed(hugering_queue_init_params(64, &ring, &p));
	if (ret)
		return ret;
	th_nops(&ring, 8);
	memset(&p, 0, sizeof(p));
	p.sq_entries = 4096;
	p.cq_entries = 65536;
	p.flags = IORING_SETUP_CQSIZE;
	ret = failed(hugering_ring_resize(&ring, &p));
	th_nops(&ring, 8);
	hugering_queue_exit(&ring);
	return ret;
}

Test(fault, ring_resize)
{
	struct hugering_kernel_caps caps;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	if (!caps.resize)
		cr_skip_test("kernel %s cannot resize rings (6.13+)", caps.release);
	th_need_pool(SZ_2M, 4);
	sweep("ring_resize 64 -> 4096/65536 DEFER_TASKRUN", resize_op, NULL);
}

/*
 * Registered buffers shared by clone: a pool, two rings, register on one,
 * clone into the other (IORING_REGISTER_CLONE_BUFFERS, or registering
 * again where the clone is refused), everything given back each run.
 */
static int clone_op(void *arg)
{
	struct hugering_bufpool *pool;
	struct io_uring src, dst;
	int ret;

	(void)arg;
	ret = failed(hugering_bufpool_create(4, 64 << 10, NULL, &pool));
	if (ret)
		return ret;
	ret = failed(hugering_queue_init(8, &src, 0));
	if (ret)
		goto out_pool;
	ret = failed(hugering_queue_init(8, &dst, 0));
	if (ret)
		goto out_src;
	ret = failed(hugering_register_buffers(&src, pool, NULL, 0, 0, NULL));
	if (!ret)
		ret = failed(hugering_clone_buffers(&dst, &src, NULL));
	hugering_unregister_buffers(&dst);
	hugering_unregister_buffers(&src);
	hugering_queue_exit(&dst);
out_src:
	hugering_queue_exit(&src);
out_pool:
	hugering_bufpool_destroy(pool);
	return ret;
}

Test(fault, clone_buffers)
{
	th_need_pool(SZ_2M, 4);
	sweep("register + clone buffers", clone_op, NULL);
}

/*
 * The ring pool: a pooled ring used (io-wq limits changed, a timeout in
 * flight), exited (drained, reset, kept or closed), created again and
 * exited, on a thread of its own whose exit closes what the pool kept,
 * so each run leaves nothing.  Any failed call in the reset closes the
 * ring instead of pooling it; the second create is then a fresh ring.
 */
static void *pool_thread(void *arg)
{
	static struct __kernel_timespec ts = { .tv_sec = 30 };
	struct hugering_init_opts o = { .flags = HUGERING_INIT_POOLED };
	struct io_uring_params p;
	struct io_uring ring;
	unsigned limits[2] = { 2, 3 };
	int *ret = arg;

	for (int round = 0; round < 2; round++) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
		*ret = failed(hugering_queue_init_opts(8, &ring, &p, &o));
		if (*ret)
			return NULL;
		io_uring_register_iowq_max_workers(&ring, limits);
		io_uring_prep_timeout(io_uring_get_sqe(&ring), &ts, 0, 0);
		io_uring_submit(&ring);
		hugering_queue_exit(&ring);
	}
	return NULL;
}

static int pool_op(void *arg)
{
	pthread_t t;
	int ret = 0;

	(void)arg;
	cr_assert_eq(pthread_create(&t, NULL, pool_thread, &ret), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	return ret;
}

Test(fault, ring_pool)
{
	th_need_pool(SZ_2M, 4);
	sweep("pooled ring: use, exit (reset), create, exit, thread exit", pool_op, NULL);
}

/* The diagnosis without its trial: the SQPOLL/IOPOLL test rings (can_create). */
static int diag_op(void *arg)
{
	struct diag *d = calloc(1, sizeof(*d));
	int ret;

	(void)arg;
	cr_assert_not_null(d);
	ret = failed(diag_collect(d, 0));
	diag_free(d);
	free(d);
	return ret;
}

Test(fault, diag_collect)
{
	sweep("diag_collect", diag_op, NULL);
}

/* Once per process: the kernel probe, the ring header read, the first arena page. */
static int probe_op(void *arg)
{
	struct hugering_kernel_caps caps;

	(void)arg;
	return failed(hugering_probe_kernel(&caps));
}

Test(fault, first_probe)
{
	sweep_first("probe_kernel", probe_op, NULL);
}

Test(fault, first_ring)
{
	struct ring_case c = { 256, 0, HUGERING_POLICY_AUTO, 0 };

	th_need_pool(SZ_2M, 4);
	sweep_first("queue_init 256 auto", ring_op, &c);
}

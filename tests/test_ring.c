/* SPDX-License-Identifier: MIT */
/* The ring factory on the real kernel: every shape, policies, errors, fork. */
#include <criterion/criterion.h>
#include <sched.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "shapes.h"

TestSuite(ring, .init = th_init, .fini = th_fini, .timeout = 300);

static size_t default_ps(void)
{
	return hugering_default_page_size();
}

/* Pages a shape's ring memory needs, for the pool precondition. */
static long pages_for(const struct shape *s)
{
	struct io_uring_params p = shape_params(s);
	struct hugering_layout l;

	p.flags |= IORING_SETUP_NO_MMAP | th_no_sqarray();
	cr_assert_eq(hugering_ring_layout(s->entries, &p, &l), 0);
	return (long)((l.total_bytes + SZ_2M - 1) / SZ_2M);
}

static void check_shape_real(const struct shape *s)
{
	struct io_uring_params p = shape_params(s);
	const char *cannot = th_liburing_cannot(p.flags);
	struct hugering_ring_info info;
	struct io_uring ring;
	int fds = th_fd_count(), ret;
	char *mem;

	th_need_pool(SZ_2M, pages_for(s) + 2);
	ret = hugering_queue_init_params(s->entries, &ring, &p);
	cr_assert_eq(ret, 0, "init: %s: %s", strerror(-ret), hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	if (cannot) {
		/* The factory's answer: a working kernel-mapped ring, saying why. */
		cr_assert_eq(info.mode, HUGERING_MODE_KERNEL, "mode %s", hugering_mode_name(info.mode));
		cr_assert_eq(info.fallback_errno, ENOTSUP);
		cr_assert(strstr(info.fallback_reason, "liburing"), "%s", info.fallback_reason);
		th_nops(&ring, 2 * p.cq_entries);
		hugering_queue_exit(&ring);
		cr_assert_eq(th_fd_count(), fds, "fd leaked");
		cr_skip_test("%s", cannot);
	}
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "mode %s: %s",
		     hugering_mode_name(info.mode), info.fallback_reason);
	cr_assert_eq(info.fallback_errno, 0);
	cr_assert_eq(info.page_size, default_ps());
	/* params filled back as liburing does */
	cr_assert(p.flags & IORING_SETUP_NO_MMAP);
	cr_assert_eq(p.sq_entries, info.sq_entries);
	cr_assert_eq(p.cq_entries, info.cq_entries);
	cr_assert_eq(ring.sq.ring_entries, p.sq_entries);
	cr_assert_eq(ring.cq.ring_entries, p.cq_entries);
	/* the SQEs and rings really are in that memory, and it is hugetlb */
	mem = info.mem;
	cr_assert_eq((void *)ring.sq.sqes, (void *)mem);
	cr_assert_eq((void *)ring.cq.khead, (void *)(mem + info.rings_offset + p.cq_off.head));
	cr_assert_eq(p.sq_off.user_addr, (uintptr_t)mem);
	struct hugering_addr_info ai;

	cr_assert_eq(hugering_addr_info(ring.cq.cqes, &ai), 0);
	cr_assert_eq(ai.backing, HUGERING_BACKING_HUGETLB);
	th_nops(&ring, 2 * p.cq_entries);
	hugering_queue_exit(&ring);
	cr_assert_eq(th_fd_count(), fds, "fd leaked");
}

#define REAL_SHAPE(name, e, c, f) \
	Test(ring, name) { struct shape s = { e, c, f }; check_shape_real(&s); }
SHAPE_LIST(REAL_SHAPE)

Test(ring, clamp_and_rounding_reported)
{
	struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP,
				     .cq_entries = 1u << 20 };
	struct hugering_ring_info info;
	struct io_uring ring;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(hugering_queue_init_params(100000, &ring, &p), 0);
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.sq_entries, 32768);
	cr_assert_eq(info.cq_entries, 65536);
	hugering_queue_exit(&ring);
}

Test(ring, probe_on_this_kernel)
{
	struct hugering_kernel_caps caps;
	struct io_uring_params p;
	int fd;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	cr_assert_eq(caps.io_uring, 0);
	/* This machine runs 6.18: any memory, resize, NO_SQARRAY. */
	cr_assert_eq(caps.nommap, HUGERING_NOMMAP_ANY, "%s", hugering_nommap_name(caps.nommap));
	cr_assert_eq(caps.resize, 1);
	cr_assert_eq(caps.no_sqarray, 1);
	cr_assert_eq(caps.pfn_visible, th_pfn_visible());
	memset(&p, 0, sizeof(p));
	fd = io_uring_setup(1, &p);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(caps.ring_header, p.cq_off.cqes);
	cr_assert_neq(caps.release[0], '\0');
	cr_assert_eq(hugering_probe_kernel(NULL), -EINVAL);
}

/* Bad input: the errno liburing gives, and nothing leaked. */
Test(ring, bad_input_same_errno_nothing_leaked)
{
	struct { unsigned entries, flags, cq; } cases[] = {
		{ 0, 0, 0 },					/* no entries */
		{ 32769, 0, 0 },				/* > 32768 without CLAMP */
		{ 64, IORING_SETUP_CQSIZE, 32 },		/* CQ < SQ */
		{ 64, IORING_SETUP_CQSIZE, 0 },			/* CQSIZE with 0 */
		{ 64, IORING_SETUP_CQSIZE, 65537 },		/* CQ > 65536 without CLAMP */
		{ 64, 1u << 31, 0 },				/* unknown flag */
		{ 64, IORING_SETUP_SQ_AFF, 0 },			/* SQ_AFF without SQPOLL */
		{ 64, IORING_SETUP_DEFER_TASKRUN, 0 },		/* without SINGLE_ISSUER */
	};
	struct hugering_arena_stats st0, st;
	int fds = th_fd_count();
	long free0;

	th_need_pool(SZ_2M, 2);
	/* The previous test's rings may still be giving pages back. */
	th_settle_pool(SZ_2M);
	free0 = th_pool_field(SZ_2M, "free_hugepages");
	cr_assert_eq(hugering_arena_stats(hugering_default_arena(), &st0), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct io_uring_params p = { .flags = cases[i].flags, .cq_entries = cases[i].cq };
		struct io_uring_params q = p;
		struct io_uring ring, lring;
		int want = io_uring_queue_init_params(cases[i].entries, &lring, &q);
		int got = hugering_queue_init_params(cases[i].entries, &ring, &p);

		if (!want)
			io_uring_queue_exit(&lring);
		cr_assert_lt(want, 0, "case %zu: liburing accepted it", i);
		cr_assert_eq(got, want, "case %zu: got %d, liburing %d", i, got, want);
		cr_assert_neq(hugering_last_error()[0], '\0');
	}
	cr_assert_eq(hugering_queue_init_params(8, NULL, &(struct io_uring_params){ 0 }), -EINVAL);
	cr_assert_eq(hugering_queue_init_params(8, &(struct io_uring){ 0 }, NULL), -EINVAL);
	cr_assert_eq(th_fd_count(), fds, "fd leaked");
	/* Pages the arena keeps for the next ring are not leaked; nothing else is held. */
	cr_assert_eq(hugering_arena_stats(hugering_default_arena(), &st), 0);
	cr_assert_eq(st.rings_live, 0);
	cr_assert_eq(st.bytes_in_use, 0);
	/* a failed setup may have been pinned: its memory waits in quarantine */
	th_wait_pool(SZ_2M, free0 - (st.pages_held - st0.pages_held), 1000);
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages"),
		     free0 - (long)(st.pages_held - st0.pages_held), "pages leaked");
}

Test(ring, bad_init_opts)
{
	struct io_uring_params p = { 0 };
	struct hugering_init_opts o = { .numa_node = -1, .page_size = 3 * MiB };
	struct io_uring ring;

	cr_assert_eq(hugering_queue_init_opts(8, &ring, &p, &o), -EINVAL);
	o = (struct hugering_init_opts){ .numa_node = 999 };
	cr_assert_eq(hugering_queue_init_opts(8, &ring, &p, &o), -EINVAL);
	o = (struct hugering_init_opts){ .numa_node = -1, .policy = 17 };
	cr_assert_eq(hugering_queue_init_opts(8, &ring, &p, &o), -EINVAL);
	o = (struct hugering_init_opts){ .numa_node = -1, .resv = { 1 } };
	cr_assert_eq(hugering_queue_init_opts(8, &ring, &p, &o), -EINVAL);
}

Test(ring, env_kernel_policy_always_kernel_mapped)
{
	struct io_uring_params p = { 0 };
	struct hugering_ring_info info;

	setenv("HUGERING_MODE", "kernel", 1);
	info = th_ring_in_mode(64, &p, NULL, HUGERING_MODE_KERNEL, 256);
	cr_assert_eq(info.fallback_errno, 0, "policy, not a failure");
	cr_assert_not(p.flags & IORING_SETUP_NO_MMAP);
}

Test(ring, env_unknown_value_is_an_error)
{
	struct io_uring_params p = { 0 };
	struct io_uring ring;

	setenv("HUGERING_MODE", "hugepages-please", 1);
	cr_assert_eq(hugering_queue_init_params(8, &ring, &p), -EINVAL);
	cr_assert(strstr(hugering_last_error(), "HUGERING_MODE"), "%s", hugering_last_error());
}

/* API policy overrides the environment. */
Test(ring, api_policy_overrides_env)
{
	struct io_uring_params p = { 0 };
	struct hugering_init_opts o = { .policy = HUGERING_POLICY_NOMMAP, .numa_node = -1 };

	th_need_pool(SZ_2M, 2);
	setenv("HUGERING_MODE", "kernel", 1);
	th_ring_in_mode(64, &p, &o, HUGERING_MODE_NOMMAP_HUGE, 64);
}

/* Base pages on request: NO_MMAP, not hugepages. */
Test(ring, base_pages_on_request)
{
	struct io_uring_params p = { 0 };
	struct hugering_init_opts o = { .page_size = 4096, .numa_node = -1 };
	struct hugering_ring_info info;

	info = th_ring_in_mode(256, &p, &o, HUGERING_MODE_NOMMAP_BASE, 1024);
	cr_assert_eq(info.page_size, 4096);
}

/* Empty pool: auto falls back and says so; nommap fails with -ENOMEM. */
Test(ring, empty_pool_fallback_reported)
{
	struct io_uring_params p = { 0 };
	struct hugering_ring_info info;
	struct io_uring ring;
	struct th_hog hog;
	int fds;

	th_need_pool(SZ_2M, 1);
	th_exhaust(SZ_2M, &hog);
	fds = th_fd_count();
	cr_assert_eq(hugering_queue_init_params(256, &ring, &p), 0);
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_KERNEL);
	cr_assert_eq(info.fallback_errno, ENOMEM);
	cr_assert(strstr(info.fallback_reason, "hugepage pool empty"), "%s", info.fallback_reason);
	th_nops(&ring, 1024);
	hugering_queue_exit(&ring);

	setenv("HUGERING_MODE", "nommap", 1);
	p = (struct io_uring_params){ 0 };
	cr_assert_eq(hugering_queue_init_params(256, &ring, &p), -ENOMEM);
	cr_assert(strstr(hugering_last_error(), "pool"), "%s", hugering_last_error());
	cr_assert_eq(th_fd_count(), fds);
	th_release(&hog);
}

static void drop_cap_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	cr_assert_eq(syscall(SYS_capget, &h, d), 0);
	d[0].effective &= ~(1u << CAP_IPC_LOCK);
	d[0].permitted &= ~(1u << CAP_IPC_LOCK);
	cr_assert_eq(syscall(SYS_capset, &h, d), 0);
}

/* Linux 6.14+ charges ring memory to RLIMIT_MEMLOCK: said as such. */
Test(ring, memlock_enomem_reported_as_memlock)
{
	struct rlimit rl = { 64 * 1024, 64 * 1024 };
	struct io_uring_params p = { 0 };
	struct io_uring_params lp = { .flags = IORING_SETUP_NO_MMAP | th_no_sqarray() };
	struct hugering_layout l;
	struct io_uring ring;
	char amount[32], why[512];
	int ret;

	th_need_pool(SZ_2M, 2);
	drop_cap_ipc_lock();
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	ret = hugering_queue_init_params(4096, &ring, &p);
	cr_assert_eq(ret, -ENOMEM, "got %d", ret);
	/* The reason describes the last call only: keep it before the next. */
	snprintf(why, sizeof(why), "%s", hugering_last_error());
	cr_assert(strstr(why, "RLIMIT_MEMLOCK"), "%s", why);
	/* what the kernel charges: both regions, page by page */
	cr_assert_eq(hugering_ring_layout(4096, &lp, &l), 0);
	snprintf(amount, sizeof(amount), "%zu", l.sqes_bytes + l.rings_bytes);
	cr_assert(strstr(why, amount), "amount %s missing: %s", amount, why);
}

/*
 * The limit leaves room for a ring's rings but not its SQEs while the ring
 * just destroyed still holds its charge: a setup right after a destroy is
 * refused (an arena that never waits shows it), and one that waits retries
 * in the same memory until the charge is gone.  That is safe only because
 * the kernel frees the rings before it returns the error: were a half-made
 * ring left to be torn down, it would reset the new ring's CQ tail and
 * completions would vanish.
 */
Test(ring, memlock_retry_in_place_completes_exactly, .timeout = 120)
{
	struct io_uring_params lp = { .flags = IORING_SETUP_NO_MMAP | th_no_sqarray() };
	struct hugering_arena_opts ao = { .numa_node = -1, .wait_ms = -1 };
	struct hugering_arena *nowait;
	struct hugering_layout l;
	struct rlimit rl;
	int refused = 0;

	th_need_pool(SZ_2M, 8);
	cr_assert_eq(hugering_ring_layout(4096, &lp, &l), 0);
	rl.rlim_cur = rl.rlim_max = l.sqes_bytes + 2 * l.rings_bytes + 4096;
	drop_cap_ipc_lock();
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
	cr_assert_eq(hugering_arena_create(&ao, &nowait), 0);
	for (int i = 0; i < 20; i++) {
		struct hugering_init_opts o = { .arena = nowait, .numa_node = -1,
						.policy = HUGERING_POLICY_NOMMAP };
		struct io_uring_params p = { 0 };
		struct io_uring ring;
		int ret;

		cr_assert_eq(hugering_queue_init_params(4096, &ring, &p), 0, "%s",
			     hugering_last_error());
		th_nops(&ring, 4096);
		hugering_queue_exit(&ring);
		ret = hugering_queue_init_opts(4096, &ring, &p, (i & 1) ? &o : NULL);
		if ((i & 1) && ret == -ENOMEM) {
			refused++;
			continue;
		}
		cr_assert_eq(ret, 0, "%s", hugering_last_error());
		usleep(40000);	/* past any teardown of a half-made ring */
		th_nops(&ring, 3 * 4096);
		hugering_queue_exit(&ring);
	}
	cr_assert_gt(refused, 0, "the limit never refused a setup: the test tests nothing");
	cr_assert_eq(hugering_arena_destroy(nowait), 0);
}

/* A forked child uses the parent's ring: the memory must be shared. */
Test(ring, forked_child_uses_ring)
{
	struct io_uring_params p = { 0 };
	struct io_uring ring;
	pid_t pid;
	int st;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_queue_init_params(64, &ring, &p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		struct io_uring_cqe *cqe;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		io_uring_prep_nop(sqe);
		sqe->user_data = 77;
		if (io_uring_submit(&ring) != 1 || io_uring_wait_cqe(&ring, &cqe) ||
		    cqe->user_data != 77)
			_exit(1);
		io_uring_cqe_seen(&ring, cqe);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child could not use the ring");
	/* The child's submission and reaping are visible here. */
	cr_assert_eq(*ring.cq.khead, 1);
	cr_assert_eq(*ring.sq.ktail, 1);
	hugering_queue_exit(&ring);
}

Test(ring, info_and_exit_on_foreign_rings)
{
	struct hugering_ring_info info;
	struct io_uring ring;

	cr_assert_eq(io_uring_queue_init(8, &ring, 0), 0);
	cr_assert_eq(hugering_ring_info(&ring, &info), -ENOENT);
	hugering_queue_exit(&ring);	/* a plain liburing ring is accepted */
	cr_assert_eq(hugering_ring_info(NULL, &info), -EINVAL);
	hugering_queue_exit(NULL);
}

/* Many rings live at once, each with its own memory, all usable. */
Test(ring, sixteen_rings_at_once)
{
	struct io_uring ring[16];

	th_need_pool(SZ_2M, 18);
	for (int i = 0; i < 16; i++) {
		struct io_uring_params p = { 0 };

		cr_assert_eq(hugering_queue_init_params(64, &ring[i], &p), 0);
	}
	for (int i = 0; i < 16; i++)
		th_nops(&ring[i], 128);
	for (int i = 0; i < 16; i++)
		hugering_queue_exit(&ring[i]);
}

/* Every other setup flag and field reaches the kernel, in user memory. */
static void flags_ring(unsigned entries, struct io_uring_params *p, struct io_uring *ring)
{
	struct hugering_ring_info info;
	unsigned want = p->flags;
	int ret = hugering_queue_init_params(entries, ring, p);

	cr_assert_eq(ret, 0, "flags 0x%x: %s: %s", want, strerror(-ret), hugering_last_error());
	cr_assert_eq(hugering_ring_info(ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "flags 0x%x: %s", want,
		     info.fallback_reason);
	cr_assert_eq(p->flags & want, want, "flags 0x%x lost: 0x%x", want, p->flags);
}

Test(ring, sqpoll_pinned_with_idle)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF,
				     .sq_thread_cpu = 0, .sq_thread_idle = 50 };
	struct io_uring ring;

	th_need_pool(SZ_2M, 2);
	flags_ring(128, &p, &ring);
	cr_assert_eq(p.sq_thread_cpu, 0);
	cr_assert_eq(p.sq_thread_idle, 50);
	th_nops(&ring, 1024);
	hugering_queue_exit(&ring);
}

Test(ring, attach_wq_shares_the_first_rings_workers)
{
	struct io_uring_params p1 = { .flags = IORING_SETUP_SQPOLL };
	struct io_uring_params p2 = { .flags = IORING_SETUP_SQPOLL | IORING_SETUP_ATTACH_WQ };
	struct io_uring r1, r2;

	th_need_pool(SZ_2M, 3);
	flags_ring(64, &p1, &r1);
	p2.wq_fd = (unsigned)r1.ring_fd;
	flags_ring(64, &p2, &r2);
	th_nops(&r1, 128);
	th_nops(&r2, 128);
	hugering_queue_exit(&r2);
	hugering_queue_exit(&r1);
}

Test(ring, taskrun_submit_all_disabled_registered_fd)
{
	struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN |
				     IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_SUBMIT_ALL };
	struct io_uring ring;

	th_need_pool(SZ_2M, 3);
	flags_ring(64, &p, &ring);
	th_nops(&ring, 256);
	hugering_queue_exit(&ring);

	p = (struct io_uring_params){ .flags = IORING_SETUP_R_DISABLED };
	flags_ring(64, &p, &ring);
	cr_assert_eq(io_uring_enable_rings(&ring), 0);
	th_nops(&ring, 256);
	hugering_queue_exit(&ring);

	/* REGISTERED_FD_ONLY requires NO_MMAP: only possible in user memory. */
	p = (struct io_uring_params){ .flags = IORING_SETUP_REGISTERED_FD_ONLY };
	flags_ring(64, &p, &ring);
	cr_assert_eq(ring.ring_fd, -1);
	th_nops(&ring, 256);
	hugering_queue_exit(&ring);
}

Test(ring, iopoll_flag_kept)
{
	struct io_uring_params p = { .flags = IORING_SETUP_IOPOLL };
	struct io_uring ring;

	th_need_pool(SZ_2M, 2);
	flags_ring(64, &p, &ring);
	hugering_queue_exit(&ring);
}

/* A ring struct copied elsewhere is still known (keyed by its memory). */
Test(ring, info_survives_struct_copy)
{
	struct io_uring_params p = { 0 };
	struct hugering_ring_info info;
	struct io_uring ring, copy;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_queue_init_params(64, &ring, &p), 0);
	copy = ring;
	cr_assert_eq(hugering_ring_info(&copy, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE);
	th_nops(&copy, 64);
	hugering_queue_exit(&copy);
}

/* A CPU outside the allowed set: a clear error naming the CPU and the set. */
Test(ring, sq_thread_cpu_outside_cpuset_named)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF,
				     .sq_thread_cpu = 1000 };
	struct io_uring ring;

	cr_assert_eq(hugering_queue_init_params(64, &ring, &p), -EINVAL);
	cr_assert(strstr(hugering_last_error(), "sq_thread_cpu 1000"), "%s", hugering_last_error());
	cr_assert(strstr(hugering_last_error(), "{0"), "%s", hugering_last_error());
}

/*
 * The kernel checks sq_thread_cpu against the task's cpuset, not its
 * sched_setaffinity mask: a process pinned to one CPU may put its SQ thread
 * on another (hugering-bench --cpu does).  hugering must not refuse it.
 */
Test(ring, sq_thread_cpu_outside_affinity_but_in_cpuset)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF,
				     .sq_thread_idle = 10 };
	struct io_uring_params q;
	struct io_uring ring, lring;
	cpu_set_t all, one;

	cr_assert_eq(sched_getaffinity(0, sizeof(all), &all), 0);
	if (CPU_COUNT(&all) < 2)
		cr_skip_test("needs two CPUs");
	th_need_pool(SZ_2M, 2);
	/* This thread on the first allowed CPU, the SQ thread on the last. */
	CPU_ZERO(&one);
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (CPU_ISSET(c, &all) && !CPU_COUNT(&one))
			CPU_SET(c, &one);
		else if (CPU_ISSET(c, &all))
			p.sq_thread_cpu = (unsigned)c;
	}
	cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	q = p;
	cr_assert_eq(io_uring_queue_init_params(64, &lring, &q), 0, "the kernel accepts it");
	io_uring_queue_exit(&lring);
	cr_assert_eq(hugering_queue_init_params(64, &ring, &p), 0, "%s", hugering_last_error());
	th_nops(&ring, 256);
	hugering_queue_exit(&ring);
	sched_setaffinity(0, sizeof(all), &all);
}

/*
 * 4 rings sharing one SQPOLL thread, each driven by its own thread: 10^6
 * NOPs in all, in bursts with sleeps longer than the 1 ms idle so the SQ
 * thread keeps going to sleep: every completion exact, no lost wakeup.
 */
#define GROUP 4
#define GROUP_NOPS (1000000 / GROUP)

struct driver {
	struct io_uring *ring;
	int id;
	long bad;
};

static void *drive(void *arg)
{
	struct driver *d = arg;
	unsigned long long next = 0;

	while (next < GROUP_NOPS) {
		unsigned burst = 64;

		for (unsigned i = 0; i < burst; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(d->ring);

			io_uring_prep_nop(sqe);
			sqe->user_data = next + i;
		}
		/* with SQPOLL this counts what the thread has not consumed yet */
		if (io_uring_submit(d->ring) < 0)
			d->bad++;
		for (unsigned i = 0; i < burst; i++) {
			struct io_uring_cqe *cqe;

			if (io_uring_wait_cqe(d->ring, &cqe) || cqe->user_data != next + i ||
			    cqe->res) {
				d->bad++;
				return NULL;
			}
			io_uring_cqe_seen(d->ring, cqe);
		}
		next += burst;
		if ((next / burst) % 256 == 0)
			usleep(2000);	/* > sq_thread_idle: the thread sleeps */
	}
	return NULL;
}

static int sqpoll_threads(void)
{
	return th_threads_named("iou-sqp-");
}

Test(ring, sqpoll_group_shares_one_thread, .timeout = 300)
{
	struct io_uring_params p = { .sq_thread_idle = 1 };
	struct hugering_ring_info info;
	struct io_uring rings[GROUP];
	struct driver d[GROUP];
	pthread_t t[GROUP];

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(hugering_sqpoll_group(rings, GROUP, 256, &p, NULL), 0, "%s",
		     hugering_last_error());
	for (int i = 0; i < GROUP; i++) {
		cr_assert_eq(hugering_ring_info(&rings[i], &info), 0);
		cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE);
		cr_assert(info.setup_flags & IORING_SETUP_SQPOLL);
	}
	/* An SQ thread names itself iou-sqp-* once it first runs: give it a second. */
	for (int i = 0; i < 1000 && !sqpoll_threads(); i++)
		usleep(1000);
	cr_assert_eq(sqpoll_threads(), 1, "one shared SQ thread");
	for (int i = 0; i < GROUP; i++) {
		d[i] = (struct driver){ .ring = &rings[i], .id = i };
		cr_assert_eq(pthread_create(&t[i], NULL, drive, &d[i]), 0);
	}
	for (int i = 0; i < GROUP; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(d[i].bad, 0, "ring %d: lost or wrong completions", i);
	}
	for (int i = 0; i < GROUP; i++)
		hugering_queue_exit(&rings[i]);
}

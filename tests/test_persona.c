/* SPDX-License-Identifier: MIT */
/*
 * The factory on kernels this machine does not run, emulated at the syscall
 * boundary (persona.c): 6.1 (no NO_MMAP), 6.5 (the EFAULT bug), 6.6-6.9
 * (physically contiguous regions only), io_uring disabled.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "persona.h"
#include "shapes.h"

TestSuite(persona, .init = th_init, .fini = th_fini, .timeout = 300);

#define PAGE 4096UL

static unsigned pow2(unsigned v)
{
	unsigned r = 1;

	while (r < v)
		r <<= 1;
	return r;
}

/* Would each region fit one page on 6.5 (header 320, SQ array present)? */
static bool fits_one_page_on_6_5(const struct shape *s)
{
	unsigned sq = pow2(s->entries > 32768 ? 32768 : s->entries);
	unsigned cq = s->cq ? pow2(s->cq > 65536 ? 65536 : s->cq) : 2 * sq;
	size_t r = 320 + 16UL * cq, sqes = (size_t)sq * ((s->flags & IORING_SETUP_SQE128) ? 128 : 64);

	if (s->flags & IORING_SETUP_CQE32)
		r *= 2;
	r = ((r + 63) & ~63UL) + 4UL * sq;
	return r <= PAGE && sqes <= PAGE;
}

static void create(const struct shape *s, struct io_uring *ring, struct io_uring_params *p,
		   struct hugering_ring_info *info)
{
	const char *cannot = th_liburing_cannot(s->flags);
	int ret;

	*p = shape_params(s);
	ret = hugering_queue_init_params(s->entries, ring, p);
	cr_assert_eq(ret, 0, "%s: %s", strerror(-ret), hugering_last_error());
	cr_assert_eq(hugering_ring_info(ring, info), 0);
	if (cannot) {
		/* The running liburing refuses first: a kernel-mapped ring, saying so. */
		cr_assert_eq(info->mode, HUGERING_MODE_KERNEL);
		cr_assert_eq(info->fallback_errno, ENOTSUP, "%s", info->fallback_reason);
		th_nops(ring, 2 * p->cq_entries);
		hugering_queue_exit(ring);
		cr_skip_test("%s", cannot);
	}
}

static void expect_probe(int nommap)
{
	struct hugering_kernel_caps caps;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	cr_assert_eq(caps.nommap, nommap, "probe says %s", hugering_nommap_name(caps.nommap));
	cr_assert_eq(caps.resize, 0, "resize arrived in 6.13");
}

/* Regions bigger than one 2 MiB page need a proven run or a 1 GiB page. */
static void need_memory(const struct shape *s)
{
	struct io_uring_params p = shape_params(s);
	struct hugering_layout l;

	p.flags |= IORING_SETUP_NO_MMAP | th_no_sqarray();
	cr_assert_eq(hugering_ring_layout(s->entries, &p, &l), 0);
	th_need_pool(SZ_2M, (long)(l.total_bytes / SZ_2M) + 2);
	if (l.total_bytes > SZ_2M && !th_pfn_visible()) {
		/* the last test's ring may still pin the 1 GiB page */
		th_wait_pool(GiB, 1, 2000);
		th_need_pool(GiB, 1);
	}
}

static void on_6_6(const struct shape *s)
{
	struct hugering_ring_info info;
	struct io_uring_params p;
	struct io_uring ring;

	need_memory(s);
	persona_install(PERSONA_6_6);
	expect_probe(HUGERING_NOMMAP_CONTIG);
	create(s, &ring, &p, &info);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "%s", info.fallback_reason);
	cr_assert_eq(info.contiguous, HUGERING_CONTIG_YES);
	cr_assert_neq(info.proof, HUGERING_PROOF_NONE);
	if (th_pfn_visible()) {
		cr_assert_eq(th_runs((void *)(uintptr_t)p.sq_off.user_addr,
				     (size_t)p.sq_entries * 64), 1);
		cr_assert_eq(th_runs((void *)(uintptr_t)p.cq_off.user_addr,
				     p.cq_off.cqes + 16UL * p.cq_entries), 1);
	}
	th_nops(&ring, 2 * p.cq_entries);
	hugering_queue_exit(&ring);
}

static void on_6_5(const struct shape *s)
{
	struct hugering_ring_info info;
	struct io_uring_params p;
	struct io_uring ring;

	th_need_pool(SZ_2M, 2);
	persona_install(PERSONA_6_5);
	expect_probe(HUGERING_NOMMAP_SINGLE_PAGE);
	create(s, &ring, &p, &info);
	if (fits_one_page_on_6_5(s)) {
		cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE, "%s", info.fallback_reason);
		cr_assert_not(p.flags & IORING_SETUP_NO_SQARRAY, "6.5 has no NO_SQARRAY");
	} else {
		cr_assert_eq(info.mode, HUGERING_MODE_KERNEL);
		cr_assert_eq(info.fallback_errno, EFAULT);
		cr_assert(strstr(info.fallback_reason, "6.5"), "%s", info.fallback_reason);
	}
	th_nops(&ring, 2 * p.cq_entries);
	hugering_queue_exit(&ring);
}

static void on_6_1(const struct shape *s)
{
	struct hugering_ring_info info;
	struct io_uring_params p;
	struct io_uring ring;

	persona_install(PERSONA_6_1);
	expect_probe(HUGERING_NOMMAP_UNSUPPORTED);
	create(s, &ring, &p, &info);
	cr_assert_eq(info.mode, HUGERING_MODE_KERNEL);
	cr_assert_eq(info.fallback_errno, EINVAL);
	cr_assert(strstr(info.fallback_reason, "NO_MMAP"), "%s", info.fallback_reason);
	th_nops(&ring, 2 * p.cq_entries);
	hugering_queue_exit(&ring);
}

#define ON_6_6(name, e, c, f) \
	Test(persona, linux_6_6_##name, .timeout = 60) { struct shape s = { e, c, f }; on_6_6(&s); }
#define ON_6_5(name, e, c, f) \
	Test(persona, linux_6_5_##name, .timeout = 60) { struct shape s = { e, c, f }; on_6_5(&s); }
#define ON_6_1(name, e, c, f) \
	Test(persona, linux_6_1_##name, .timeout = 60) { struct shape s = { e, c, f }; on_6_1(&s); }
SHAPE_LIST(ON_6_6)
SHAPE_LIST(ON_6_5)
SHAPE_LIST(ON_6_1)

Test(persona, disabled_is_eperm_nothing_leaked)
{
	struct hugering_kernel_caps caps;
	struct io_uring_params p = { 0 };
	long free0 = th_pool_field(SZ_2M, "free_hugepages");
	struct io_uring ring;
	int fds;

	persona_install(PERSONA_DISABLED);
	fds = th_fd_count();
	cr_assert_eq(hugering_queue_init_params(64, &ring, &p), -EPERM);
	cr_assert(strstr(hugering_last_error(), "disabled"), "%s", hugering_last_error());
	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	cr_assert_eq(caps.io_uring, -EPERM);
	cr_assert_eq(th_fd_count(), fds);
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages"), free0);
}

Test(persona, no_io_uring_is_enosys)
{
	struct hugering_kernel_caps caps;
	struct io_uring_params p = { 0 };
	struct io_uring ring;
	int fds;

	persona_install(PERSONA_ENOSYS);
	fds = th_fd_count();
	cr_assert_eq(hugering_queue_init_params(64, &ring, &p), -ENOSYS);
	cr_assert(strstr(hugering_last_error(), "no io_uring"), "%s", hugering_last_error());
	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	cr_assert_eq(caps.io_uring, -ENOSYS);
	cr_assert_eq(caps.nommap, HUGERING_NOMMAP_UNSUPPORTED);
	cr_assert_eq(th_fd_count(), fds);
}

/* Many threads ask at once: one probe, one answer. */
static void *probe_thread(void *arg)
{
	hugering_probe_kernel(arg);
	return NULL;
}

Test(persona, probe_once_and_thread_safe)
{
	struct hugering_kernel_caps caps[8];
	pthread_t t[8];
	unsigned setups;

	persona_install(PERSONA_6_6);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, probe_thread, &caps[i]), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	setups = persona_passed() + persona_refused();
	for (int i = 0; i < 8; i++)
		cr_assert_eq(memcmp(&caps[i], &caps[0], sizeof(caps[0])), 0);
	cr_assert_eq(caps[0].nommap, HUGERING_NOMMAP_CONTIG);
	hugering_probe_kernel(&caps[0]);
	cr_assert_eq(persona_passed() + persona_refused(), setups, "probed twice");
	cr_assert_leq(setups, 8, "a probe should take a handful of syscalls, took %u", setups);
}

/* HUGERING_MODE=nommap: the kernel's own error, never a fallback. */
Test(persona, nommap_policy_on_6_5_fails_with_kernel_error)
{
	struct io_uring_params p = { 0 };
	struct hugering_ring_info info;
	struct io_uring ring;
	int fds;

	th_need_pool(SZ_2M, 2);
	persona_install(PERSONA_6_5);
	setenv("HUGERING_MODE", "nommap", 1);
	fds = th_fd_count();
	cr_assert_eq(hugering_queue_init_params(256, &ring, &p), -EFAULT);
	cr_assert_neq(hugering_last_error()[0], '\0');
	cr_assert_eq(th_fd_count(), fds);
	/* one page per region is fine on 6.5 */
	p = (struct io_uring_params){ 0 };
	cr_assert_eq(hugering_queue_init_params(8, &ring, &p), 0);
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, HUGERING_MODE_NOMMAP_HUGE);
	hugering_queue_exit(&ring);
}

Test(persona, nommap_policy_on_6_1_fails_with_einval)
{
	struct io_uring_params p = { 0 };
	struct io_uring ring;

	th_need_pool(SZ_2M, 2);
	persona_install(PERSONA_6_1);
	setenv("HUGERING_MODE", "nommap", 1);
	cr_assert_eq(hugering_queue_init_params(8, &ring, &p), -EINVAL);
}

Test(persona, kernel_policy_on_6_6_maps_by_kernel)
{
	struct io_uring_params p = { 0 };

	persona_install(PERSONA_6_6);
	setenv("HUGERING_MODE", "kernel", 1);
	cr_assert_eq(th_ring_in_mode(4096, &p, NULL, HUGERING_MODE_KERNEL, 8192).fallback_errno, 0);
}

/* The persona itself refuses what that kernel refused (a test of the test). */
Test(persona, persona_6_6_refuses_discontiguous_memory)
{
	struct hugering_region_opts o = { .size = 3 * SZ_2M, .page_size = SZ_2M,
					  .numa_node = -1 };
	struct hugering_region *r;
	struct io_uring_params p = { .flags = IORING_SETUP_NO_MMAP | IORING_SETUP_CQSIZE,
				     .cq_entries = 65536 };
	char *b;

	th_need_pool(SZ_2M, 3);
	persona_install(PERSONA_6_6);
	cr_assert_eq(hugering_region_alloc(&o, &r), 0);
	b = hugering_region_addr(r);
	/* rings 1 MiB + 4 KiB straddling two hugepages: contiguous only by luck */
	p.sq_off.user_addr = (uintptr_t)b;
	p.cq_off.user_addr = (uintptr_t)(b + SZ_2M - 512 * 1024);
	int fd = io_uring_setup(8, &p);
	bool contiguous = th_pfn_visible() &&
			  th_runs(b + SZ_2M - 512 * 1024, 1024 * 1024 + 4096) == 1;

	if (fd >= 0)
		close(fd);
	cr_assert_eq(fd >= 0, contiguous, "setup %d, contiguous %d", fd, contiguous);
	if (!contiguous)
		cr_assert_eq(fd, -EINVAL);
	hugering_region_free(r);
}

/*
 * A signal that lands after the kernel queued a notification but before the
 * supervisor received it leaves the listener's count one ahead: its next
 * receive fails with ENOENT.  The supervisor must keep serving, or the next
 * io_uring syscall waits forever (seen as rare 60 s timeouts under ASan).
 */
static atomic_bool storm_on;

static void on_usr1(int sig) { (void)sig; }

static void *signal_storm(void *arg)
{
	pthread_t target = *(pthread_t *)arg;

	while (atomic_load(&storm_on)) {
		pthread_kill(target, SIGUSR1);
		usleep(20);
	}
	return NULL;
}

Test(persona, survives_signals_during_setup, .timeout = 20)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
	pthread_t self = pthread_self(), storm;
	unsigned calls = 0, refused0;

	/* Refused in the supervisor: no real ring, no memlock charge. */
	persona_install(PERSONA_DISABLED);
	cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	atomic_store(&storm_on, true);
	cr_assert_eq(pthread_create(&storm, NULL, signal_storm, &self), 0);
	refused0 = persona_refused();
	/* Until the storm has hit the window a few times, then some more. */
	for (unsigned extra = 0; extra < 1000 && calls < 200000; calls++) {
		struct io_uring_params p = { 0 };

		cr_assert_eq(io_uring_setup(8, &p), -EPERM, "call %u", calls);
		if (persona_interrupted() >= 3)
			extra++;
	}
	atomic_store(&storm_on, false);
	pthread_join(storm, NULL);
	cr_assert_geq(persona_interrupted(), 3, "the signals never hit the window in %u calls: "
		      "this test proved nothing", calls);
	/* a request interrupted after it was taken is refused twice */
	cr_assert_geq(persona_refused() - refused0, calls);
}

/*
 * Recycled ring memory: the earlier ring's heads and tails are still there
 * when the library takes the slot again, and must be zero by the time the
 * kernel sees it (kernels before 2025 did not zero a user ring's header).
 * Seen at the syscall boundary, before the kernel's own memset.
 */
static void recycled_header(unsigned entries, unsigned cq)
{
	const unsigned flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			       IORING_SETUP_CQSIZE;
	struct io_uring_params p = { .flags = flags, .cq_entries = cq };
	struct hugering_ring_info i1, i2;
	struct hugering_layout lay;
	struct io_uring ring;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(hugering_ring_layout(entries, &p, &lay), 0);
	persona_install(PERSONA_REAL);
	persona_witness_header(lay.header);
	cr_assert_eq(hugering_queue_init_params(entries, &ring, &p), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &i1), 0);
	cr_assert_eq(i1.recycle, HUGERING_RECYCLE_RESIZE, "this kernel resizes: %d", i1.recycle);
	cr_assert_eq(persona_header_zero(), 1, "a fresh ring's header");
	th_nops(&ring, cq + entries / 2);	/* heads and tails past zero, wrapped */
	hugering_queue_exit(&ring);

	/* Resized away: the memory is the library's again, stale values and all. */
	cr_assert_not(th_all_zero((char *)i1.mem + i1.rings_offset, lay.header),
		      "the old header is already zero: this test would prove nothing");

	p = (struct io_uring_params){ .flags = flags, .cq_entries = cq };
	cr_assert_eq(hugering_queue_init_params(entries, &ring, &p), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &i2), 0);
	cr_assert_eq(i2.mem, i1.mem, "the same memory was expected to be reused");
	cr_assert_eq(persona_header_zero(), 1, "stale header handed to the kernel");
	th_nops(&ring, 100);
	hugering_queue_exit(&ring);
}

Test(persona, recycled_header_zero_before_setup) { recycled_header(2048, 8192); }
Test(persona, recycled_header_zero_before_setup_large) { recycled_header(4096, 65536); }

/* ------------------------------------------------------------------ */
/* Buffer rings and registered buffers on older kernels (issue 13)     */
/* ------------------------------------------------------------------ */

/* One datagram received through buffer group @bgid's only buffer. */
static void recv_through(struct io_uring *ring, struct io_uring_buf_ring *br, int bgid)
{
	static char buf[64];
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	int fds[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds), 0);
	io_uring_buf_ring_add(br, buf, sizeof(buf), 42, io_uring_buf_ring_mask(64), 0);
	io_uring_buf_ring_advance(br, 1);
	cr_assert_eq(write(fds[1], "persona", 8), 8);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_recv(sqe, fds[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)bgid;
	cr_assert_eq(io_uring_submit_and_wait(ring, 1), 1);
	cr_assert_eq(io_uring_wait_cqe(ring, &cqe), 0);
	cr_assert_eq(cqe->res, 8, "recv: %d", cqe->res);
	cr_assert_eq(cqe->flags >> IORING_CQE_BUFFER_SHIFT, 42u);
	io_uring_cqe_seen(ring, cqe);
	cr_assert_str_eq(buf, "persona");
	close(fds[0]);
	close(fds[1]);
}

/*
 * User-memory buffer rings exist since 5.19: in hugepages on 6.1 and 6.6.
 * IOU_PBUF_RING_INC (6.12) is refused -EINVAL, exactly as liburing's own
 * io_uring_setup_buf_ring() gets it, with the reason naming the flag, and
 * nothing is left taken.
 */
static void buf_rings_on(enum persona p)
{
	struct hugering_arena_stats st0, st;
	struct hugering_buf_ring_info info;
	struct io_uring_params par = { 0 };
	struct io_uring_buf_ring *br;
	struct io_uring ring;
	unsigned refused;
	int err, lerr;

	th_need_pool(SZ_2M, 2);
	persona_install(p);
	cr_assert_eq(hugering_queue_init_params(8, &ring, &par), 0, "%s", hugering_last_error());
	br = hugering_setup_buf_ring(&ring, 64, 1, 0, &err);
	cr_assert_not_null(br, "%d %s", err, hugering_last_error());
	cr_assert_eq(hugering_buf_ring_info(&ring, 1, &info), 0);
	cr_assert_eq(info.mode, HUGERING_BUF_RING_HUGE, "%s", info.fallback_reason);
	recv_through(&ring, br, 1);
	cr_assert_eq(hugering_arena_stats(hugering_default_arena(), &st0), 0);
	refused = persona_refused();
	cr_assert_null(hugering_setup_buf_ring(&ring, 64, 2, IOU_PBUF_RING_INC, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_gt(persona_refused(), refused, "the persona did not refuse INC");
	cr_assert_not_null(strstr(hugering_last_error(), "IOU_PBUF_RING_INC needs Linux 6.12"),
			   "%s", hugering_last_error());
	/* liburing before 2.9 here (2.5 checked) drops the flags: no INC to compare. */
	if (!io_uring_check_version(2, 9)) {
		cr_assert_null(io_uring_setup_buf_ring(&ring, 64, 2, IOU_PBUF_RING_INC, &lerr));
		cr_assert_eq(lerr, err, "liburing: %d, hugering: %d", lerr, err);
	}
	cr_assert_eq(hugering_buf_ring_info(&ring, 2, &info), -ENOENT);
	cr_assert_eq(hugering_arena_stats(hugering_default_arena(), &st), 0);
	cr_assert_eq(st.rings_live, st0.rings_live);
	cr_assert_eq(st.bytes_waiting, st0.bytes_waiting);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, 64, 1), 0);
	hugering_queue_exit(&ring);
}

Test(persona, linux_6_1_buf_ring_user_memory_no_inc) { buf_rings_on(PERSONA_6_1); }
Test(persona, linux_6_6_buf_ring_user_memory_no_inc) { buf_rings_on(PERSONA_6_6); }

/* The persona itself: 6.1 knew no buffer ring flags, 6.6 knew IOU_PBUF_RING_MMAP. */
Test(persona, pbuf_ring_flags_as_those_kernels)
{
	struct io_uring_buf_reg reg = { .ring_entries = 8, .bgid = 3,
					.flags = IOU_PBUF_RING_MMAP };
	struct io_uring ring;

	persona_install(PERSONA_6_1);
	cr_assert_eq(io_uring_queue_init(8, &ring, 0), 0);
	cr_assert_eq(io_uring_register_buf_ring(&ring, &reg, 0), -EINVAL);
	io_uring_queue_exit(&ring);
}

Test(persona, pbuf_ring_mmap_on_6_6)
{
	struct io_uring_buf_reg reg = { .ring_entries = 8, .bgid = 3,
					.flags = IOU_PBUF_RING_MMAP };
	struct io_uring ring;

	persona_install(PERSONA_6_6);
	cr_assert_eq(io_uring_queue_init(8, &ring, 0), 0);
	cr_assert_eq(io_uring_register_buf_ring(&ring, &reg, 0), 0);
	reg.flags = IOU_PBUF_RING_INC;
	reg.bgid = 4;
	cr_assert_eq(io_uring_register_buf_ring(&ring, &reg, 0), -EINVAL);
	io_uring_queue_exit(&ring);
}

/*
 * Registered buffers on 6.1: registration works (5.1+), clone (6.12) is
 * missing: the buffers are registered on the second ring again and the
 * repeated charge is reported.
 */
Test(persona, linux_6_1_clone_falls_back_with_repeated_charge)
{
	struct hugering_bufpool_opts o = { 0 };
	struct hugering_reg_charge first, c;
	struct io_uring_params par = { 0 };
	struct hugering_bufpool *pool;
	struct io_uring a, b;

	th_need_pool(SZ_2M, 4);
	persona_install(PERSONA_6_1);
	cr_assert_eq(hugering_queue_init_params(8, &a, &par), 0);
	cr_assert_eq(hugering_queue_init_params(8, &b, &par), 0);
	cr_assert_eq(hugering_bufpool_create(8, 65536, &o, &pool), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_register_buffers(&a, pool, NULL, 0, 0, &first), 0, "%s",
		     hugering_last_error());
	memset(&c, 0xff, sizeof(c));
	cr_assert_eq(hugering_clone_buffers(&b, &a, &c), 0, "%s", hugering_last_error());
	cr_assert_eq(c.cloned, 0);
	cr_assert_eq(c.charge_bytes, first.charge_bytes);
	cr_assert_gt(c.charge_bytes, 0);
	hugering_queue_exit(&a);
	hugering_queue_exit(&b);
	hugering_bufpool_destroy(pool);
}

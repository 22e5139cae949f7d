/* SPDX-License-Identifier: MIT */
/*
 * hugering_ring_resize(): rings in user memory resized into new arena
 * memory (Linux 6.13+, DEFER_TASKRUN), requests in flight kept, the old
 * memory reused at once and never written by the resized ring; the
 * refusals (-EOVERFLOW, -EOPNOTSUPP, -EINVAL); kernel-mapped rings through
 * liburing.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "persona.h"

TestSuite(resize, .init = th_init, .fini = th_fini, .timeout = 120);

#define DEFER (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)

static void need_resize(void)
{
	struct hugering_kernel_caps c;

	cr_assert_eq(hugering_probe_kernel(&c), 0);
	if (!c.resize)
		cr_skip_test("this kernel cannot resize rings (Linux < 6.13)");
}

static void ring_in(struct hugering_arena *a, int policy, unsigned entries, unsigned cq,
		    unsigned flags, struct io_uring *ring)
{
	struct io_uring_params p = { .flags = flags };
	struct hugering_init_opts o = { .arena = a, .numa_node = -1, .policy = policy };

	if (cq) {
		p.flags |= IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
	}
	cr_assert_eq(hugering_queue_init_opts(entries, ring, &p, &o), 0, "%s",
		     hugering_last_error());
}

static int resize(struct io_uring *ring, unsigned sq, unsigned cq)
{
	struct io_uring_params p = { .sq_entries = sq };

	if (cq) {
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = cq;
	}
	return hugering_ring_resize(ring, &p);
}

static struct hugering_ring_info info_of(const struct io_uring *ring)
{
	struct hugering_ring_info i;

	cr_assert_eq(hugering_ring_info(ring, &i), 0);
	return i;
}

/* @n NOPs with user_data @base + i, prepared, not submitted. */
static void prep_nops(struct io_uring *ring, unsigned n, uint64_t base)
{
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

		cr_assert_not_null(sqe);
		io_uring_prep_nop(sqe);
		sqe->user_data = base + i;
	}
}

/* Reap exactly @n CQEs, user_data @base + i in order, and no more. */
static void reap_in_order(struct io_uring *ring, unsigned n, uint64_t base)
{
	struct io_uring_cqe *cqe;

	for (unsigned i = 0; i < n; i++) {
		cr_assert_eq(io_uring_wait_cqe(ring, &cqe), 0, "CQE %u of %u missing", i, n);
		cr_assert_eq(cqe->user_data, base + i, "CQE %u: user_data %llu, want %llu", i,
			     (unsigned long long)cqe->user_data, (unsigned long long)(base + i));
		cr_assert_eq(cqe->res, 0);
		io_uring_cqe_seen(ring, cqe);
	}
	cr_assert_eq(io_uring_peek_cqe(ring, &cqe), -EAGAIN, "a stray CQE");
}

/* 64 -> 4096 SQ, 65536 CQ: new memory, new sizes reported, NOPs complete exactly. */
Test(resize, grow_64_to_4096_65536)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_ring_info i0, i1;
	struct hugering_layout lay;
	struct io_uring_params lp = { .flags = IORING_SETUP_CQSIZE | th_no_sqarray(),
				      .cq_entries = 65536 };
	struct io_uring ring;

	need_resize();
	th_need_pool(SZ_2M, 4);
	ring_in(a, HUGERING_POLICY_NOMMAP, 64, 0, DEFER, &ring);
	th_nops(&ring, 200);
	i0 = info_of(&ring);
	cr_assert_eq(resize(&ring, 4096, 65536), 0, "%s", hugering_last_error());
	i1 = info_of(&ring);
	cr_assert_eq(i1.sq_entries, 4096);
	cr_assert_eq(i1.cq_entries, 65536);
	cr_assert_eq(ring.sq.ring_entries, 4096);
	cr_assert_eq(ring.cq.ring_entries, 65536);
	cr_assert_eq(ring.sq.ring_mask, 4095);
	cr_assert_eq(ring.cq.ring_mask, 65535);
	cr_assert_neq(i1.mem, i0.mem);
	cr_assert_eq(ring.sq.sqes, i1.mem);
	cr_assert_eq((char *)ring.cq.ring_ptr, (char *)i1.mem + i1.rings_offset);
	cr_assert_eq(hugering_ring_layout(4096, &lp, &lay), 0);
	cr_assert_eq(i1.mem_bytes, lay.total_bytes);
	cr_assert_eq(i1.mode, HUGERING_MODE_NOMMAP_HUGE);
	th_nops(&ring, 3 * 4096);
	/* and back down */
	cr_assert_eq(resize(&ring, 64, 128), 0, "%s", hugering_last_error());
	cr_assert_eq(info_of(&ring).sq_entries, 64);
	cr_assert_eq(info_of(&ring).cq_entries, 128);
	th_nops(&ring, 3 * 64);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* SQEs prepared before the resize are submitted after it and complete; unreaped CQEs stay. */
Test(resize, inflight_sqes_and_cqes_survive)
{
	struct hugering_arena *a = th_new_arena();
	struct io_uring ring;

	need_resize();
	th_need_pool(SZ_2M, 4);
	ring_in(a, HUGERING_POLICY_NOMMAP, 64, 0, DEFER, &ring);
	th_nops(&ring, 100);	/* tails off zero, masks wrapped */
	prep_nops(&ring, 30, 1000);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 30), 30);
	prep_nops(&ring, 20, 2000);	/* prepared, not submitted */
	cr_assert_eq(resize(&ring, 1024, 4096), 0, "%s", hugering_last_error());
	reap_in_order(&ring, 30, 1000);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 20), 20);
	reap_in_order(&ring, 20, 2000);
	/* and again, shrinking, with both kinds pending */
	prep_nops(&ring, 40, 3000);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 40), 40);
	prep_nops(&ring, 7, 4000);
	cr_assert_eq(resize(&ring, 16, 64), 0, "%s", hugering_last_error());
	reap_in_order(&ring, 40, 3000);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 7), 7);
	reap_in_order(&ring, 7, 4000);
	th_nops(&ring, 3 * 16);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/*
 * Shrinking below what is pending: -EOVERFLOW, the ring unchanged and
 * working, the new memory back in the arena (and never written later).
 */
Test(resize, overflow_keeps_the_ring)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_ring_info i0, i1;
	struct hugering_arena_stats s0, s1;
	struct io_uring ring, other;

	need_resize();
	th_need_pool(SZ_2M, 4);
	ring_in(a, HUGERING_POLICY_NOMMAP, 64, 256, DEFER, &ring);
	prep_nops(&ring, 64, 100);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 64), 64);
	prep_nops(&ring, 36, 164);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 36), 36);
	i0 = info_of(&ring);
	cr_assert_eq(hugering_arena_stats(a, &s0), 0);
	cr_assert_eq(resize(&ring, 16, 64), -EOVERFLOW);
	cr_assert(strlen(hugering_last_error()) > 0);
	i1 = info_of(&ring);
	cr_assert_eq(i1.mem, i0.mem);
	cr_assert_eq(i1.cq_entries, 256);
	cr_assert_eq(ring.cq.ring_entries, 256);
	cr_assert_eq(hugering_arena_stats(a, &s1), 0);
	cr_assert_eq(s1.rings_live, s0.rings_live);
	cr_assert_eq(s1.bytes_waiting, s0.bytes_waiting, "the new slot is not quarantined");
	reap_in_order(&ring, 100, 100);

	/* Unsubmitted SQEs that would not fit: refused before the kernel is asked. */
	prep_nops(&ring, 40, 500);
	cr_assert_eq(resize(&ring, 16, 64), -EOVERFLOW);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 40), 40);
	reap_in_order(&ring, 40, 500);

	/* The freed new slot takes another ring; the first never writes it. */
	ring_in(a, HUGERING_POLICY_NOMMAP, 16, 64, DEFER, &other);
	th_sleep_ms(40);
	th_nops(&other, 3 * 16);
	th_nops(&ring, 3 * 64);
	th_nops(&other, 3 * 16);
	hugering_queue_exit(&other);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

static void old_slot_reused(unsigned sq, unsigned cq, unsigned new_sq, unsigned new_cq)
{
	struct hugering_arena *a = th_new_arena();
	struct hugering_ring_info i0, i1, w;
	struct hugering_arena_stats s0, s1;
	struct io_uring ring, witness;

	need_resize();
	th_need_pool(SZ_2M, 4);
	ring_in(a, HUGERING_POLICY_NOMMAP, sq, cq, DEFER, &ring);
	th_nops(&ring, 2 * sq + 5);
	i0 = info_of(&ring);
	cr_assert_eq(hugering_arena_stats(a, &s0), 0);
	cr_assert_eq(resize(&ring, new_sq, new_cq), 0, "%s", hugering_last_error());
	i1 = info_of(&ring);
	cr_assert_eq(hugering_arena_stats(a, &s1), 0);
	cr_assert_eq(s1.resize_recycled, s0.resize_recycled + 1);
	cr_assert_eq(s1.bytes_waiting, s0.bytes_waiting, "the old slot is not quarantined");
	cr_assert_neq(i1.mem, i0.mem);

	/* The next ring of the old shape gets the old memory at once. */
	ring_in(a, HUGERING_POLICY_NOMMAP, sq, cq, DEFER, &witness);
	w = info_of(&witness);
	cr_assert_eq(w.page_addr, i0.page_addr, "the old slot is reused");
	cr_assert_eq(w.page_offset, i0.page_offset, "the old slot is reused");
	th_sleep_ms(40);
	th_nops(&witness, 3 * sq);
	th_nops(&ring, 3 * i1.sq_entries);
	th_nops(&witness, 3 * sq);
	hugering_queue_exit(&witness);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

Test(resize, old_slot_reused_small_grow) { old_slot_reused(64, 0, 256, 1024); }
Test(resize, old_slot_reused_large_grow) { old_slot_reused(2048, 8192, 4096, 16384); }
Test(resize, old_slot_reused_shrink)     { old_slot_reused(2048, 8192, 128, 256); }

/* A ring without DEFER_TASKRUN: the kernel cannot resize it. */
Test(resize, plain_ring_not_supported)
{
	struct io_uring ring;

	need_resize();
	th_need_pool(SZ_2M, 2);
	ring_in(NULL, HUGERING_POLICY_AUTO, 64, 0, 0, &ring);
	cr_assert_eq(resize(&ring, 256, 0), -EOPNOTSUPP);
	cr_assert_not_null(strstr(hugering_last_error(), "DEFER_TASKRUN"), "%s",
			   hugering_last_error());
	cr_assert_eq(info_of(&ring).sq_entries, 64);
	th_nops(&ring, 3 * 64);
	hugering_queue_exit(&ring);
}

/*
 * On a 6.12 kernel (emulated at the syscall boundary: the resize opcode is
 * unknown there) a DEFER_TASKRUN ring in user memory: -EOPNOTSUPP with the
 * reason, the ring unchanged and usable.
 */
Test(resize, emulated_6_12_not_supported)
{
	unsigned flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	struct io_uring ring;

	th_need_pool(SZ_2M, 2);
	persona_install(PERSONA_6_12);
	ring_in(NULL, HUGERING_POLICY_AUTO, 64, 0, flags, &ring);
	cr_assert_eq(info_of(&ring).mode, HUGERING_MODE_NOMMAP_HUGE);
	cr_assert_eq(resize(&ring, 256, 0), -EOPNOTSUPP);
	cr_assert_not_null(strstr(hugering_last_error(), "6.13"), "%s", hugering_last_error());
	cr_assert_eq(info_of(&ring).sq_entries, 64);
	th_nops(&ring, 3 * 64);
	hugering_queue_exit(&ring);
}

/* Kernel-mapped rings are resized by liburing (2.9+). */
Test(resize, kernel_mapped_ring_through_liburing)
{
	struct io_uring ring;
	struct hugering_ring_info i;
	int ret;

	need_resize();
	ring_in(NULL, HUGERING_POLICY_KERNEL, 64, 0, DEFER, &ring);
	th_nops(&ring, 100);
	prep_nops(&ring, 10, 700);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 10), 10);
	ret = resize(&ring, 4096, 65536);
#if IO_URING_VERSION_MAJOR == 2 && IO_URING_VERSION_MINOR < 9
	cr_assert_eq(ret, -EOPNOTSUPP);
	cr_assert_not_null(strstr(hugering_last_error(), "liburing"), "%s", hugering_last_error());
	reap_in_order(&ring, 10, 700);
	th_nops(&ring, 3 * 64);
#else
	cr_assert_eq(ret, 0, "%s", hugering_last_error());
	i = info_of(&ring);
	cr_assert_eq(i.mode, HUGERING_MODE_KERNEL);
	cr_assert_eq(i.sq_entries, 4096);
	cr_assert_eq(i.cq_entries, 65536);
	cr_assert_eq(i.mem, ring.sq.sqes);
	reap_in_order(&ring, 10, 700);
	th_nops(&ring, 3 * 4096);
#endif
	(void)i;
	hugering_queue_exit(&ring);
}

/* Bad input: the kernel's -EINVAL, before anything is touched. */
Test(resize, bad_input)
{
	struct io_uring_params p = { .sq_entries = 128 };
	struct io_uring ring, plain;

	cr_assert_eq(hugering_ring_resize(NULL, &p), -EINVAL);
	th_need_pool(SZ_2M, 2);
	ring_in(NULL, HUGERING_POLICY_AUTO, 64, 0, DEFER, &ring);
	cr_assert_eq(hugering_ring_resize(&ring, NULL), -EINVAL);
	p.sq_entries = 0;
	cr_assert_eq(hugering_ring_resize(&ring, &p), -EINVAL);
	cr_assert(strlen(hugering_last_error()) > 0);
	p.sq_entries = 128;
	p.flags = IORING_SETUP_SQPOLL;
	cr_assert_eq(hugering_ring_resize(&ring, &p), -EINVAL);
	p.flags = IORING_SETUP_DEFER_TASKRUN;
	cr_assert_eq(hugering_ring_resize(&ring, &p), -EINVAL);
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = 0;
	cr_assert_eq(hugering_ring_resize(&ring, &p), -EINVAL);
	p.cq_entries = 64;	/* CQ smaller than SQ */
	cr_assert_eq(hugering_ring_resize(&ring, &p), -EINVAL);
	cr_assert_eq(info_of(&ring).sq_entries, 64);
	th_nops(&ring, 3 * 64);
	hugering_queue_exit(&ring);

	/* A ring hugering did not make. */
	cr_assert_eq(io_uring_queue_init(8, &plain, 0), 0);
	p.flags = 0;
	cr_assert_eq(hugering_ring_resize(&plain, &p), -ENOENT);
	io_uring_queue_exit(&plain);
}

/* SPDX-License-Identifier: MIT */
/*
 * Buffer pools and registered buffers (issue 13): the pool's layout in
 * hugepages, filling a provided buffer ring for multishot receive,
 * READ_FIXED/WRITE_FIXED with O_DIRECT through a registered pool, the
 * memlock charge predicted (and checked against VmPin), a registration
 * over RLIMIT_MEMLOCK refused with the figure, clone without a second
 * charge, and bad input.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "persona.h"

TestSuite(regbuf, .init = th_init, .fini = th_fini, .timeout = 120);

#define KiB 1024UL

static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 13 + (i >> 9) + (i >> 17));
}

/* VmPin of this process, read independently of the library. */
static uint64_t vm_pin(void)
{
	char buf[4096], *s;
	unsigned long long kb = 0;

	th_slurp("/proc/self/status", buf, sizeof(buf));
	s = strstr(buf, "VmPin:");
	cr_assert_not_null(s, "no VmPin in /proc/self/status");
	cr_assert_eq(sscanf(s, "VmPin: %llu kB", &kb), 1);
	return (uint64_t)kb << 10;
}

static void ring_up(struct io_uring *ring)
{
	struct io_uring_params p = { 0 };

	cr_assert_eq(hugering_queue_init_params(64, ring, &p), 0, "%s", hugering_last_error());
}

static struct hugering_bufpool *pool_up(unsigned count, size_t size, size_t page_size,
					struct hugering_bufpool_info *info)
{
	struct hugering_bufpool_opts o = { .page_size = page_size };
	struct hugering_bufpool *p;

	cr_assert_eq(hugering_bufpool_create(count, size, &o, &p), 0, "%s",
		     hugering_last_error());
	cr_assert_eq(hugering_bufpool_info(p, info), 0);
	return p;
}

/* Buffer @i lies in pages of @ps as the layout promises; returns its address. */
static char *check_buf(struct hugering_bufpool *p, const struct hugering_bufpool_info *in,
		       unsigned i)
{
	char *b = hugering_bufpool_buf(p, i);
	uintptr_t a = (uintptr_t)b, ps = in->page_size;

	cr_assert_not_null(b);
	cr_assert_geq(b, (char *)in->mem);
	cr_assert_leq(b + in->buf_size, (char *)in->mem + in->mem_bytes);
	if (in->buf_size <= ps)
		cr_assert_eq(a / ps, (a + in->buf_size - 1) / ps,
			     "buffer %u (%zu bytes at %#lx) straddles a page", i, in->buf_size,
			     (unsigned long)a);
	else
		cr_assert_eq(a % ps, 0, "buffer %u larger than a page does not start one", i);
	return b;
}

Test(regbuf, pool_layout_in_hugepages)
{
	static const struct { unsigned count; size_t size; } shapes[] = {
		{ 100, 3000 }, { 600, 4096 }, { 5, 1000 }, { 3, 3 * MiB }, { 700, 64 * KiB },
	};
	struct hugering_bufpool_info in;
	struct hugering_addr_info ai;

	th_need_pool(SZ_2M, 32);
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		struct hugering_bufpool *p = pool_up(shapes[s].count, shapes[s].size, 0, &in);
		char *prev = NULL;

		cr_assert_eq(in.page_size, SZ_2M, "shape %zu: %s", s, in.fallback_reason);
		cr_assert_eq(in.fallback_errno, 0);
		cr_assert_str_empty(in.fallback_reason);
		cr_assert_eq(in.count, shapes[s].count);
		cr_assert_eq(in.mem_bytes % SZ_2M, 0);
		cr_assert_eq(in.pages, in.mem_bytes / SZ_2M);
		for (unsigned i = 0; i < in.count; i++) {
			char *b = check_buf(p, &in, i);

			cr_assert(!prev || b >= prev + in.buf_size, "buffers %u and %u overlap",
				  i - 1, i);
			prev = b;
			memset(b, (int)i, in.buf_size);
		}
		cr_assert_null(hugering_bufpool_buf(p, in.count));
		cr_assert_eq(hugering_addr_info(prev, &ai), 0);
		cr_assert_eq(ai.backing, HUGERING_BACKING_HUGETLB);
		cr_assert_eq(ai.page_size, SZ_2M);
		/* Packed: pages used are what the count needs, no more. */
		if (in.bufs_per_page)
			cr_assert_eq(in.pages, (in.count + in.bufs_per_page - 1) / in.bufs_per_page);
		hugering_bufpool_destroy(p);
	}
}

Test(regbuf, pool_falls_back_to_base_pages)
{
	struct hugering_bufpool_opts o = { .flags = HUGERING_BUFPOOL_NO_FALLBACK };
	struct hugering_bufpool_info in;
	struct hugering_bufpool *p;
	struct th_hog hog;

	th_exhaust(SZ_2M, &hog);
	cr_assert_eq(hugering_bufpool_create(8, 4096, &o, &p), -ENOMEM);
	cr_assert_str_not_empty(hugering_last_error());
	p = pool_up(8, 4096, 0, &in);
	cr_assert_eq(in.page_size, 4096);
	cr_assert_eq(in.fallback_errno, ENOMEM);
	cr_assert_str_not_empty(in.fallback_reason);
	for (unsigned i = 0; i < 8; i++)
		memset(check_buf(p, &in, i), 1, 4096);
	hugering_bufpool_destroy(p);
	th_release(&hog);
}

Test(regbuf, bad_input_is_einval)
{
	struct hugering_bufpool_opts o = { 0 };
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c;
	struct hugering_bufpool *p, *q = (void *)1;
	struct io_uring ring;
	struct iovec iov[2];
	char *mem;

	cr_assert_eq(hugering_bufpool_create(1, 4096, NULL, NULL), -EINVAL);
	cr_assert_eq(hugering_bufpool_create(0, 4096, NULL, &q), -EINVAL);
	cr_assert_null(q);
	cr_assert_str_not_empty(hugering_last_error());
	cr_assert_eq(hugering_bufpool_create(1, 0, NULL, &q), -EINVAL);
	cr_assert_eq(hugering_bufpool_create(1, (1UL << 30) + 1, NULL, &q), -EINVAL);
	cr_assert_eq(hugering_bufpool_create(1, SIZE_MAX, NULL, &q), -EINVAL);
	cr_assert_eq(hugering_bufpool_create(HUGERING_BUFPOOL_MAX_COUNT + 1, 64, NULL, &q), -EINVAL);
	o.align = 3;
	cr_assert_eq(hugering_bufpool_create(1, 64, &o, &q), -EINVAL);
	o.align = 8192;
	cr_assert_eq(hugering_bufpool_create(1, 64, &o, &q), -EINVAL);
	o = (struct hugering_bufpool_opts){ .resv = { 1 } };
	cr_assert_eq(hugering_bufpool_create(1, 64, &o, &q), -EINVAL);
	o = (struct hugering_bufpool_opts){ .flags = 1u << 30 };
	cr_assert_eq(hugering_bufpool_create(1, 64, &o, &q), -EINVAL);
	o = (struct hugering_bufpool_opts){ .page_size = 12345 };
	cr_assert_eq(hugering_bufpool_create(1, 64, &o, &q), -EINVAL);
	cr_assert_eq(hugering_bufpool_info(NULL, &in), -EINVAL);
	cr_assert_null(hugering_bufpool_buf(NULL, 0));
	cr_assert_eq(hugering_bufpool_iovecs(NULL, iov, 2), -EINVAL);
	cr_assert_eq(hugering_bufpool_fill(NULL, (void *)4096, 8), -EINVAL);
	hugering_bufpool_destroy(NULL);

	p = pool_up(4, 4096, 4096, &in);
	cr_assert_eq(hugering_bufpool_info(p, NULL), -EINVAL);
	cr_assert_eq(hugering_bufpool_iovecs(p, NULL, 0), 4);
	cr_assert_eq(hugering_bufpool_iovecs(p, iov, 2), -ENOSPC);
	cr_assert_eq(hugering_bufpool_fill(p, NULL, 8), -EINVAL);
	cr_assert_eq(hugering_bufpool_fill(p, (void *)4096, 2), -EINVAL);	/* ring < pool */
	cr_assert_eq(hugering_bufpool_fill(p, (void *)4096, 6), -EINVAL);	/* not pow2 */

	ring_up(&ring);
	mem = hugering_bufpool_buf(p, 0);
	cr_assert_eq(hugering_register_buffers(NULL, p, NULL, 0, 0, &c), -EINVAL);
	cr_assert_eq(hugering_register_buffers(&ring, NULL, NULL, 0, 0, &c), -EINVAL);
	iov[0] = (struct iovec){ mem, 4096 };
	cr_assert_eq(hugering_register_buffers(&ring, p, iov, 1, 0, &c), -EINVAL);
	cr_assert_eq(hugering_register_buffers(&ring, NULL, iov, 0, 0, &c), -EINVAL);
	cr_assert_eq(hugering_register_buffers(&ring, NULL, iov, 16385, 0, &c), -EINVAL);
	iov[0] = (struct iovec){ mem, 0 };
	cr_assert_eq(hugering_register_buffers(&ring, NULL, iov, 1, 0, &c), -EINVAL);
	iov[0] = (struct iovec){ mem, (1UL << 30) + 1 };
	cr_assert_eq(hugering_register_buffers(&ring, NULL, iov, 1, 0, &c), -EINVAL);
	iov[0] = (struct iovec){ NULL, 4096 };
	cr_assert_eq(hugering_register_buffers(&ring, NULL, iov, 1, 0, &c), -EINVAL);
	iov[0] = (struct iovec){ (void *)(UINTPTR_MAX - 10), 4096 };
	cr_assert_eq(hugering_register_buffers(&ring, NULL, iov, 1, 0, &c), -EINVAL);
	cr_assert_str_not_empty(hugering_last_error());
	cr_assert_eq(hugering_register_charge(p, NULL, 0, 0, NULL), -EINVAL);
	/* Unmapped memory: -EFAULT from the prediction, before the kernel. */
	{
		char *hole = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		cr_assert_neq(hole, MAP_FAILED);
		munmap(hole, 8192);
		iov[0] = (struct iovec){ hole, 4096 };
		cr_assert_eq(hugering_register_charge(NULL, iov, 1, 0, &c), -EFAULT);
	}
	cr_assert_eq(hugering_clone_buffers(&ring, &ring, &c), -EINVAL);
	cr_assert_eq(hugering_clone_buffers(NULL, &ring, &c), -EINVAL);
	cr_assert_eq(hugering_unregister_buffers(NULL), -EINVAL);
	/* Nothing was registered by any of it. */
	cr_assert_eq(hugering_unregister_buffers(&ring), -ENXIO);
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(p);
}

/* ------------------------------------------------------------------ */
/* Provided buffer ring filled from a pool                             */
/* ------------------------------------------------------------------ */


static void arm_recv(struct io_uring *ring, int fd, int bgid)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	cr_assert_not_null(sqe);
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)bgid;
	cr_assert_eq(io_uring_submit(ring), 1);
}

Test(regbuf, pool_fills_buffer_ring_for_multishot_recv)
{
	enum { NB = 64, BS = 4096, BGID = 3 };
	const size_t total = 2 * MiB;
	struct hugering_bufpool_info in;
	struct hugering_bufpool *p;
	struct io_uring_buf_ring *br;
	struct io_uring ring;
	struct th_sender s;
	unsigned fifo[4 * NB], fhead = 0, ftail = 0;
	size_t off = 0;
	pthread_t t;
	int fds[2], err;

	th_need_pool(SZ_2M, 4);
	ring_up(&ring);
	p = pool_up(NB, BS, 0, &in);
	cr_assert_eq(in.page_size, SZ_2M, "%s", in.fallback_reason);
	br = hugering_setup_buf_ring(&ring, NB, BGID, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	cr_assert_eq(hugering_bufpool_fill(p, br, NB), NB, "%s", hugering_last_error());
	for (unsigned b = 0; b < NB; b++)
		fifo[ftail++] = b;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	s = (struct th_sender){ .fd = fds[1], .total = total, .pattern = pattern };
	cr_assert_eq(pthread_create(&t, NULL, th_send_all, &s), 0);
	arm_recv(&ring, fds[0], BGID);
	while (off < total) {
		struct io_uring_cqe *cqe;
		unsigned bid, flags;
		unsigned char *b;
		int res;

		cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
		res = cqe->res;
		flags = cqe->flags;
		io_uring_cqe_seen(&ring, cqe);
		if (res == -ENOBUFS) {
			arm_recv(&ring, fds[0], BGID);
			continue;
		}
		cr_assert_gt(res, 0, "recv: %d at offset %zu", res, off);
		cr_assert(flags & IORING_CQE_F_BUFFER);
		bid = flags >> IORING_CQE_BUFFER_SHIFT;
		cr_assert_eq(bid, fifo[fhead % (4 * NB)], "kernel used buffer %u, head is %u", bid,
			     fifo[fhead % (4 * NB)]);
		fhead++;
		b = hugering_bufpool_buf(p, bid);
		cr_assert_not_null(b);
		for (int i = 0; i < res; i++)
			cr_assert_eq(b[i], pattern(off + (size_t)i), "byte %zu (buffer %u)",
				     off + (size_t)i, bid);
		off += (size_t)res;
		io_uring_buf_ring_add(br, b, BS, (unsigned short)bid, io_uring_buf_ring_mask(NB), 0);
		io_uring_buf_ring_advance(br, 1);
		fifo[ftail++ % (4 * NB)] = bid;
		if (!(flags & IORING_CQE_F_MORE) && off < total)
			arm_recv(&ring, fds[0], BGID);
	}
	cr_assert_eq(off, total);
	pthread_join(t, NULL);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, NB, BGID), 0);
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(p);
	close(fds[0]);
	close(fds[1]);
}

/* ------------------------------------------------------------------ */
/* Fixed buffers with O_DIRECT                                         */
/* ------------------------------------------------------------------ */

#define NFIX 16
#define FIXSZ (64 * KiB)

static int direct_file(char *path, size_t len)
{
	int fd;

	snprintf(path, 64, "/tmp/hugering-regbuf-XXXXXX");
	fd = mkostemp(path, O_DIRECT);
	cr_assert_geq(fd, 0, "mkostemp O_DIRECT: %s", strerror(errno));
	unlink(path);
	cr_assert_eq(ftruncate(fd, (off_t)len), 0);
	return fd;
}

/* One fixed read or write of buffer @idx at file offset @off; asserts it completed whole. */
static void rw_fixed(struct io_uring *ring, bool write, int fd, void *buf, unsigned idx,
		     off_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;

	cr_assert_not_null(sqe);
	if (write)
		io_uring_prep_write_fixed(sqe, fd, buf, FIXSZ, (uint64_t)off, (int)idx);
	else
		io_uring_prep_read_fixed(sqe, fd, buf, FIXSZ, (uint64_t)off, (int)idx);
	cr_assert_eq(io_uring_submit_and_wait(ring, 1), 1);
	cr_assert_eq(io_uring_wait_cqe(ring, &cqe), 0);
	cr_assert_eq(cqe->res, (int)FIXSZ, "%s_FIXED of buffer %u: %d (%s)",
		     write ? "WRITE" : "READ", idx, cqe->res,
		     cqe->res < 0 ? strerror(-cqe->res) : "short");
	io_uring_cqe_seen(ring, cqe);
}

/* Pagemap proof (root): buffer @b is in the frame run of its hugepage. */
static void prove_in_hugepage(const void *b, size_t ps)
{
	const char *page = (const char *)((uintptr_t)b & ~(ps - 1));
	struct hugering_addr_info ai;

	cr_assert_eq(hugering_addr_info(b, &ai), 0);
	cr_assert_eq(ai.backing, HUGERING_BACKING_HUGETLB);
	cr_assert_eq(ai.page_size, ps);
	if (th_pfn_visible()) {
		uint64_t pfn = th_pfn(b), base = th_pfn(page);

		cr_assert_neq(base, 0);
		cr_assert_eq(base % (ps / 4096), 0, "hugepage frame %#llx not aligned",
			     (unsigned long long)base);
		cr_assert_eq(pfn - base, (uint64_t)((const char *)b - page) / 4096,
			     "not the hugepage's frame");
	}
}

Test(regbuf, read_write_fixed_odirect)
{
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c, c2;
	struct hugering_bufpool *p;
	struct io_uring ring;
	char path[64];
	uint64_t pin0, pin1;
	int fd;

	th_need_pool(SZ_2M, 4);
	ring_up(&ring);
	p = pool_up(NFIX, FIXSZ, 0, &in);
	cr_assert_eq(in.page_size, SZ_2M, "%s", in.fallback_reason);
	cr_assert_eq(in.pages, 1);
	cr_assert_eq(hugering_register_charge(p, NULL, 0, 0, &c), 0, "%s", hugering_last_error());
	/* 16 x 64 KiB in one 2 MiB page: that page, charged once, in full. */
	cr_assert_eq(c.entries, NFIX);
	cr_assert_eq(c.buffer_bytes, NFIX * FIXSZ);
	cr_assert_eq(c.pages, 1);
	cr_assert_eq(c.charge_bytes, SZ_2M);
	cr_assert_eq(c.page_size, SZ_2M);
	cr_assert_eq(c.exact, 1);
	pin0 = vm_pin();
	cr_assert_eq(hugering_register_buffers(&ring, p, NULL, 0, 0, &c2), 0, "%s",
		     hugering_last_error());
	pin1 = vm_pin();
	cr_assert_eq(c2.charge_bytes, c.charge_bytes);
	cr_assert_eq(pin1 - pin0, c.charge_bytes, "VmPin grew by %llu, predicted %llu",
		     (unsigned long long)(pin1 - pin0), (unsigned long long)c.charge_bytes);

	fd = direct_file(path, NFIX * FIXSZ);
	for (unsigned i = 0; i < NFIX; i++) {
		unsigned char *b = hugering_bufpool_buf(p, i);

		prove_in_hugepage(b, SZ_2M);
		for (size_t k = 0; k < FIXSZ; k++)
			b[k] = pattern(i * FIXSZ + k);
		rw_fixed(&ring, true, fd, b, i, (off_t)(i * FIXSZ));
	}
	/* Read back into other buffers (reversed), cleared first. */
	for (unsigned i = 0; i < NFIX; i++)
		memset(hugering_bufpool_buf(p, i), 0, FIXSZ);
	for (unsigned i = 0; i < NFIX; i++)
		rw_fixed(&ring, false, fd, hugering_bufpool_buf(p, NFIX - 1 - i), NFIX - 1 - i,
			 (off_t)(i * FIXSZ));
	for (unsigned i = 0; i < NFIX; i++) {
		const unsigned char *b = hugering_bufpool_buf(p, NFIX - 1 - i);

		for (size_t k = 0; k < FIXSZ; k++)
			cr_assert_eq(b[k], pattern(i * FIXSZ + k), "file block %u byte %zu", i, k);
	}
	cr_assert_eq(hugering_unregister_buffers(&ring), 0, "%s", hugering_last_error());
	cr_assert_eq(vm_pin(), pin0, "unregister did not give the charge back");
	close(fd);
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(p);
}

/* 4 KiB pages: every page of every buffer is charged (no compound page to share). */
Test(regbuf, base_pages_charge_per_page)
{
	struct hugering_reg_charge c;
	struct io_uring ring;
	struct iovec iov[3];
	uint64_t pin0;
	char *m;

	m = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(madvise(m, 64 * KiB, MADV_NOHUGEPAGE), 0);
	memset(m, 1, 64 * KiB);
	/* Two buffers sharing one page: the kernel charges it twice. */
	iov[0] = (struct iovec){ m, 6000 };		/* pages 0, 1 */
	iov[1] = (struct iovec){ m + 6000, 100 };	/* page 1 again */
	iov[2] = (struct iovec){ m + 16 * KiB, 32 * KiB };	/* 8 pages */
	cr_assert_eq(hugering_register_charge(NULL, iov, 3, 0, &c), 0, "%s", hugering_last_error());
	cr_assert_eq(c.pages, 11);
	cr_assert_eq(c.charge_bytes, 11 * 4096);
	cr_assert_eq(c.page_size, 4096);
	cr_assert_eq(c.exact, 1);
	ring_up(&ring);
	pin0 = vm_pin();
	cr_assert_eq(hugering_register_buffers(&ring, NULL, iov, 3, 0, NULL), 0, "%s",
		     hugering_last_error());
	cr_assert_eq(vm_pin() - pin0, c.charge_bytes);
	cr_assert_eq(hugering_unregister_buffers(&ring), 0);
	hugering_queue_exit(&ring);
	munmap(m, 64 * KiB);
}

/* ------------------------------------------------------------------ */
/* RLIMIT_MEMLOCK                                                      */
/* ------------------------------------------------------------------ */

Test(regbuf, memlock_limit_refused_with_figure)
{
	struct rlimit rl = { .rlim_cur = MiB, .rlim_max = MiB };
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c;
	struct hugering_bufpool *big, *small;
	struct io_uring ring;
	char want[32];
	uint64_t pin0;
	int ret;

	th_need_pool(SZ_2M, 4);
	th_drop_ipc_lock();
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0, "%s", strerror(errno));
	ring_up(&ring);
	/* One 4 KiB buffer in a 2 MiB page: charged 2 MiB, over 1 MiB. */
	big = pool_up(1, 4096, 0, &in);
	cr_assert_eq(in.page_size, SZ_2M, "%s", in.fallback_reason);
	pin0 = vm_pin();
	memset(&c, 0xff, sizeof(c));
	cr_assert_eq(hugering_register_buffers(&ring, big, NULL, 0, 0, &c), -ENOMEM);
	cr_assert_eq(c.charge_bytes, SZ_2M);
	cr_assert_eq(c.limit, MiB);
	cr_assert_eq(c.cap_ipc_lock, 0);
	cr_assert_eq(c.fits, 0);
	snprintf(want, sizeof(want), "%lu bytes", SZ_2M);
	cr_assert_not_null(strstr(hugering_last_error(), want), "reason lacks the figure: %s",
			   hugering_last_error());
	cr_assert_not_null(strstr(hugering_last_error(), "1048576"), "%s", hugering_last_error());
	cr_assert_not_null(strstr(hugering_last_error(), "RLIMIT_MEMLOCK"));
	cr_assert_eq(vm_pin(), pin0, "a refused registration pinned something");
	/* The kernel agrees: the same buffer registered directly is refused. */
	{
		struct iovec iov = { hugering_bufpool_buf(big, 0), 4096 };

		cr_assert_eq(io_uring_register_buffers(&ring, &iov, 1), -ENOMEM);
	}
	/* 16 x 4 KiB in base pages: 64 KiB, under the limit. */
	small = pool_up(16, 4096, 4096, &in);
	cr_assert_eq(hugering_register_charge(small, NULL, 0, 0, &c), 0);
	cr_assert_eq(c.charge_bytes, 64 * KiB);
	cr_assert_eq(c.fits, 1);
	/* Rings of earlier tests may hold this user's charge a moment longer. */
	for (int i = 0; i < 40; i++) {
		ret = hugering_register_buffers(&ring, small, NULL, 0, 0, &c);
		if (ret != -ENOMEM || !c.fits)
			break;
		usleep(50000);
	}
	cr_assert_eq(ret, 0, "%d %s", ret, hugering_last_error());
	cr_assert_eq(vm_pin() - pin0, 64 * KiB);
	cr_assert_eq(hugering_unregister_buffers(&ring), 0);
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(big);
	hugering_bufpool_destroy(small);
}

/* ------------------------------------------------------------------ */
/* Clone                                                               */
/* ------------------------------------------------------------------ */

Test(regbuf, clone_shares_without_second_charge)
{
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c;
	struct hugering_bufpool *p;
	struct io_uring a, b;
	char path[64];
	uint64_t pin0, pin1;
	int fd, ret;

	th_need_pool(SZ_2M, 4);
	ring_up(&a);
	ring_up(&b);
	p = pool_up(NFIX, FIXSZ, 0, &in);
	cr_assert_eq(in.page_size, SZ_2M, "%s", in.fallback_reason);
	cr_assert_eq(hugering_register_buffers(&a, p, NULL, 0, 0, &c), 0, "%s",
		     hugering_last_error());
	/* Data written through ring a's table ... */
	fd = direct_file(path, NFIX * FIXSZ);
	for (unsigned i = 0; i < NFIX; i++) {
		unsigned char *buf = hugering_bufpool_buf(p, i);

		for (size_t k = 0; k < FIXSZ; k++)
			buf[k] = pattern(i * FIXSZ + k + 7);
		rw_fixed(&a, true, fd, buf, i, (off_t)(i * FIXSZ));
		memset(buf, 0, FIXSZ);
	}
	pin0 = vm_pin();
	ret = hugering_clone_buffers(&b, &a, &c);
	cr_assert_eq(ret, 0, "%s", hugering_last_error());
	pin1 = vm_pin();
	if (!c.cloned)
		cr_skip("kernel refused IORING_REGISTER_CLONE_BUFFERS: %s", c.fallback_reason);
	cr_assert_eq(c.charge_bytes, 0);
	cr_assert_eq(c.fallback_errno, 0);
	cr_assert_str_empty(c.fallback_reason);
	cr_assert_eq(pin1, pin0, "clone charged VmPin again: %llu -> %llu",
		     (unsigned long long)pin0, (unsigned long long)pin1);
	/* ... read back through ring b's cloned table. */
	for (unsigned i = 0; i < NFIX; i++)
		rw_fixed(&b, false, fd, hugering_bufpool_buf(p, i), i, (off_t)(i * FIXSZ));
	for (unsigned i = 0; i < NFIX; i++) {
		const unsigned char *buf = hugering_bufpool_buf(p, i);

		for (size_t k = 0; k < FIXSZ; k++)
			cr_assert_eq(buf[k], pattern(i * FIXSZ + k + 7), "block %u byte %zu", i, k);
	}
	/* A second clone into a ring that has buffers: the kernel's -EBUSY, no fallback. */
	cr_assert_eq(hugering_clone_buffers(&b, &a, &c), -EBUSY);
	cr_assert_str_not_empty(hugering_last_error());
	cr_assert_eq(hugering_unregister_buffers(&b), 0);
	cr_assert_eq(hugering_unregister_buffers(&a), 0);
	close(fd);
	hugering_queue_exit(&a);
	hugering_queue_exit(&b);
	hugering_bufpool_destroy(p);
}

/*
 * A kernel without IORING_REGISTER_CLONE_BUFFERS (the 6.6 persona answers
 * -EINVAL, as 6.6 does for an unknown opcode): the buffers are registered
 * on the second ring again, the repeated charge reported and seen in VmPin.
 */
Test(regbuf, clone_falls_back_to_registering_again)
{
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c, first;
	struct hugering_bufpool *p;
	struct io_uring a, b, plain;
	struct iovec iov;
	char path[64];
	uint64_t pin0;
	int fd;

	th_need_pool(SZ_2M, 4);
	persona_install(PERSONA_6_6);
	ring_up(&a);
	ring_up(&b);
	p = pool_up(NFIX, FIXSZ, 0, &in);
	cr_assert_eq(in.page_size, SZ_2M, "%s", in.fallback_reason);
	cr_assert_eq(hugering_register_buffers(&a, p, NULL, 0, 0, &first), 0, "%s",
		     hugering_last_error());
	fd = direct_file(path, NFIX * FIXSZ);
	for (unsigned i = 0; i < NFIX; i++) {
		unsigned char *buf = hugering_bufpool_buf(p, i);

		for (size_t k = 0; k < FIXSZ; k++)
			buf[k] = pattern(i * FIXSZ + k + 3);
		rw_fixed(&a, true, fd, buf, i, (off_t)(i * FIXSZ));
		memset(buf, 0, FIXSZ);
	}
	pin0 = vm_pin();
	memset(&c, 0xff, sizeof(c));
	cr_assert_eq(hugering_clone_buffers(&b, &a, &c), 0, "%s", hugering_last_error());
	cr_assert_geq(persona_refused(), 1);
	cr_assert_eq(c.cloned, 0);
	cr_assert_eq(c.charge_bytes, first.charge_bytes);
	/* Why, in the struct (the ring's record owns the text) ... */
	cr_assert_eq(c.fallback_errno, EINVAL);
	cr_assert_not_null(c.fallback_reason);
	cr_assert_not_null(strstr(c.fallback_reason, "IORING_REGISTER_CLONE_BUFFERS"), "%s",
			   c.fallback_reason);
	cr_assert_not_null(strstr(c.fallback_reason, "6.12"), "%s", c.fallback_reason);
	cr_assert_not_null(strstr(c.fallback_reason, "registered on this ring again"), "%s",
			   c.fallback_reason);
	/* ... and the first registration's says nothing. */
	cr_assert_eq(first.fallback_errno, 0);
	cr_assert_str_empty(first.fallback_reason);
	cr_assert_eq(vm_pin() - pin0, c.charge_bytes, "the repeated charge is not what VmPin shows");
	for (unsigned i = 0; i < NFIX; i++)
		rw_fixed(&b, false, fd, hugering_bufpool_buf(p, i), i, (off_t)(i * FIXSZ));
	for (unsigned i = 0; i < NFIX; i++) {
		const unsigned char *buf = hugering_bufpool_buf(p, i);

		for (size_t k = 0; k < FIXSZ; k++)
			cr_assert_eq(buf[k], pattern(i * FIXSZ + k + 3), "block %u byte %zu", i, k);
	}
	/* Buffers registered behind hugering's back: nothing to register again. */
	ring_up(&plain);
	cr_assert_eq(hugering_unregister_buffers(&a), 0);
	iov = (struct iovec){ hugering_bufpool_buf(p, 0), FIXSZ };
	cr_assert_eq(io_uring_register_buffers(&a, &iov, 1), 0);
	cr_assert_eq(hugering_clone_buffers(&plain, &a, &c), -EINVAL);
	cr_assert_not_null(strstr(hugering_last_error(), "nothing to register again"), "%s",
			   hugering_last_error());
	close(fd);
	hugering_queue_exit(&plain);
	hugering_queue_exit(&a);
	hugering_queue_exit(&b);
	hugering_bufpool_destroy(p);
}

/*
 * HUGERING_REG_SPANS: a pool of more buffers than a table holds registers
 * as runs of whole pages; a fixed read through the span's entry lands in
 * the buffer.  Caller iovecs over 1 GiB split into 1 GiB entries.
 */
Test(regbuf, spans_register_large_pools_and_split_iovecs)
{
	struct hugering_bufpool_opts o = { .align = 64 };
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct hugering_bufpool *p;
	struct io_uring ring;
	struct iovec iov;
	char path[] = "/tmp/hugering-spans-XXXXXX", msg[64];
	unsigned char *b;
	size_t big = (1UL << 30) + 8192;
	char *m;
	int fd, idx;

	th_need_pool(SZ_2M, 4);
	cr_assert_eq(hugering_bufpool_create(20000, 64, &o, &p), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_bufpool_info(p, &in), 0);
	cr_assert_eq(in.page_size, SZ_2M, "%s", in.fallback_reason);
	cr_assert_eq(in.stride, 64);
	cr_assert_eq(in.pages, 1);
	ring_up(&ring);
	cr_assert_eq(hugering_register_buffers(&ring, p, NULL, 0, 0, &c), -EINVAL);
	cr_assert_not_null(strstr(hugering_last_error(), "HUGERING_REG_SPANS"), "%s",
			   hugering_last_error());
	cr_assert_eq(hugering_register_buffers(&ring, p, NULL, 0, 1u << 7, &c), -EINVAL);
	cr_assert_eq(hugering_register_buffers(&ring, p, NULL, 0, HUGERING_REG_SPANS, &c), 0,
		     "%s", hugering_last_error());
	cr_assert_eq(c.entries, 1);
	cr_assert_eq(c.buffer_bytes, SZ_2M);
	cr_assert_eq(c.charge_bytes, SZ_2M);
	idx = hugering_bufpool_reg_index(p, 19999, HUGERING_REG_SPANS);
	cr_assert_eq(idx, 0);
	cr_assert_eq(hugering_bufpool_reg_index(p, 19999, 0), 19999);
	cr_assert_eq(hugering_bufpool_reg_index(p, 20000, 0), -EINVAL);
	cr_assert_eq(hugering_bufpool_reg_index(NULL, 0, 0), -EINVAL);

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	for (size_t k = 0; k < sizeof(msg); k++)
		msg[k] = (char)pattern(k + 99);
	cr_assert_eq(write(fd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	b = hugering_bufpool_buf(p, 19999);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read_fixed(sqe, fd, b, 64, 0, idx);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 1), 1);
	cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
	cr_assert_eq(cqe->res, 64, "READ_FIXED through the span: %d", cqe->res);
	io_uring_cqe_seen(&ring, cqe);
	cr_assert_eq(memcmp(b, msg, 64), 0);
	cr_assert_eq(hugering_unregister_buffers(&ring), 0);
	close(fd);
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(p);

	/* 1 GiB + 8 KiB of caller memory: two entries with SPANS, refused without. */
	m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	cr_assert_neq(m, MAP_FAILED);
	madvise(m, big, MADV_NOHUGEPAGE);
	iov = (struct iovec){ m, big };
	cr_assert_eq(hugering_register_charge(NULL, &iov, 1, 0, &c), -EINVAL);
	cr_assert_eq(hugering_register_charge(NULL, &iov, 1, HUGERING_REG_SPANS, &c), 0, "%s",
		     hugering_last_error());
	cr_assert_eq(c.entries, 2);
	cr_assert_eq(c.buffer_bytes, big);
	cr_assert_eq(c.charge_bytes, big);
	cr_assert_eq(c.pages, big / 4096);
	munmap(m, big);
}

/*
 * One 4 KiB buffer in a 1 GiB page is charged 1 GiB: predicted, and then
 * either registered with VmPin growing by exactly that (within the limit,
 * or CAP_IPC_LOCK) or refused with the figure.
 */
Test(regbuf, one_gib_page_charges_one_gib)
{
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c;
	struct hugering_bufpool *p;
	struct io_uring ring;
	uint64_t pin0;
	int ret;

	th_need_pool(SZ_1G, 1);
	p = pool_up(1, 4096, SZ_1G, &in);
	cr_assert_eq(in.page_size, SZ_1G, "%s", in.fallback_reason);
	cr_assert_eq(hugering_register_charge(p, NULL, 0, 0, &c), 0, "%s", hugering_last_error());
	cr_assert_eq(c.buffer_bytes, 4096);
	cr_assert_eq(c.charge_bytes, SZ_1G);
	cr_assert_eq(c.pages, 1);
	ring_up(&ring);
	pin0 = vm_pin();
	ret = hugering_register_buffers(&ring, p, NULL, 0, 0, &c);
	if (c.fits) {
		cr_assert_eq(ret, 0, "%s", hugering_last_error());
		cr_assert_eq(vm_pin() - pin0, SZ_1G);
		cr_assert_eq(hugering_unregister_buffers(&ring), 0);
	} else {
		cr_assert_eq(ret, -ENOMEM);
		cr_assert_not_null(strstr(hugering_last_error(), "1073741824"), "%s",
				   hugering_last_error());
		cr_assert_eq(vm_pin(), pin0);
	}
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(p);
}

/* ------------------------------------------------------------------ */
/* fork()                                                              */
/* ------------------------------------------------------------------ */

/* One READ_FIXED of @len bytes at 0 of @fd into @buf (table entry @idx); its result. */
static int read_fixed_res(struct io_uring *ring, int fd, void *buf, unsigned len, unsigned idx)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int res;

	cr_assert_not_null(sqe);
	io_uring_prep_read_fixed(sqe, fd, buf, len, 0, (int)idx);
	cr_assert_eq(io_uring_submit_and_wait(ring, 1), 1);
	cr_assert_eq(io_uring_wait_cqe(ring, &cqe), 0);
	res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
}

/* What the child saw, as its exit status: 0 all as it should be, else the step that was not. */
static int child_on_inherited(struct io_uring *ring, struct io_uring_buf_ring *br, int bgid)
{
	struct hugering_buf_ring_info info;

	/* The ring is shared with the parent: unregistering here would do it for both. */
	if (hugering_unregister_buffers(ring) != -ECHILD || !*hugering_last_error())
		return 1;
	if (hugering_free_buf_ring(ring, br, 16, bgid) != -ECHILD || !*hugering_last_error())
		return 2;
	if (hugering_buf_ring_info(ring, bgid, &info) || info.mem != (void *)br)
		return 3;
	/* Closing our copy drops our records of it, and only ours. */
	hugering_queue_exit(ring);
	if (hugering_buf_ring_info(ring, bgid, &info) != -ENOENT)
		return 4;
	/* No record left: the kernel's answer for a closed fd, not -ECHILD. */
	if (hugering_unregister_buffers(ring) != -EBADF)
		return 5;
	return 0;
}

/*
 * A child that inherited a ring with a registered pool and a buffer ring
 * cannot unregister either (-ECHILD: the ring is the parent's too), and
 * its hugering_queue_exit() drops its own records only.  The parent then
 * still reads through its fixed buffers, receives into its buffer ring,
 * and unregisters both.  (Without the guard the child's unregister would
 * have removed the parent's table: its READ_FIXED would fail.)
 */
Test(regbuf, fork_child_leaves_parent_buffers_alone)
{
	struct hugering_bufpool_info in;
	struct io_uring_buf_ring *br;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	struct hugering_bufpool *p;
	struct io_uring ring;
	char path[] = "/tmp/hugering-fork-XXXXXX", msg[512], got[16];
	int fd, fds[2], err, status;
	unsigned char *b;
	pid_t pid;

	th_need_pool(SZ_2M, 4);
	ring_up(&ring);
	p = pool_up(4, 4096, 0, &in);
	cr_assert_eq(hugering_register_buffers(&ring, p, NULL, 0, 0, NULL), 0, "%s",
		     hugering_last_error());
	br = hugering_setup_buf_ring(&ring, 16, 5, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	io_uring_buf_ring_add(br, got, sizeof(got), 9, io_uring_buf_ring_mask(16), 0);
	io_uring_buf_ring_advance(br, 1);

	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid)
		_exit(child_on_inherited(&ring, br, 5));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child step %d failed",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);

	/* The parent's table is intact ... */
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	for (size_t k = 0; k < sizeof(msg); k++)
		msg[k] = (char)pattern(k + 5);
	cr_assert_eq(write(fd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
	b = hugering_bufpool_buf(p, 2);
	memset(b, 0, sizeof(msg));
	cr_assert_eq(read_fixed_res(&ring, fd, b, sizeof(msg), 2), (int)sizeof(msg),
		     "READ_FIXED after the child: the parent's buffers are gone");
	cr_assert_eq(memcmp(b, msg, sizeof(msg)), 0);
	/* ... and so is its buffer ring. */
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds), 0);
	cr_assert_eq(write(fds[1], "parent", 7), 7);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_recv(sqe, fds[0], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = 5;
	cr_assert_eq(io_uring_submit_and_wait(&ring, 1), 1);
	cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
	cr_assert_eq(cqe->res, 7, "recv into the parent's buffer ring: %d", cqe->res);
	cr_assert_eq(cqe->flags >> IORING_CQE_BUFFER_SHIFT, 9u);
	io_uring_cqe_seen(&ring, cqe);
	cr_assert_str_eq(got, "parent");

	cr_assert_eq(hugering_free_buf_ring(&ring, br, 16, 5), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_unregister_buffers(&ring), 0, "%s", hugering_last_error());
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(p);
	close(fd);
	close(fds[0]);
	close(fds[1]);
}

/* Without unregistering, hugering_queue_exit() drops the ring's record: nothing stale to clone. */
Test(regbuf, queue_exit_drops_the_record)
{
	struct hugering_bufpool_info in;
	struct hugering_reg_charge c;
	struct hugering_bufpool *p;
	struct io_uring a, b;

	th_need_pool(SZ_2M, 4);
	ring_up(&a);
	p = pool_up(4, 4096, 0, &in);
	cr_assert_eq(hugering_register_buffers(&a, p, NULL, 0, 0, NULL), 0, "%s",
		     hugering_last_error());
	hugering_queue_exit(&a);
	/* a's fd is closed: with a stale record this would still say "registered by us". */
	ring_up(&b);
	persona_install(PERSONA_6_6);	/* clone refused: the fallback would use a record */
	cr_assert_lt(hugering_clone_buffers(&b, &a, &c), 0);
	cr_assert_null(strstr(hugering_last_error(), "registered again"), "%s",
		       hugering_last_error());
	hugering_queue_exit(&b);
	hugering_bufpool_destroy(p);
}

struct reg_churn {
	struct io_uring *ring;
	struct hugering_bufpool *pool;
	volatile bool stop;
};

static void *churn_registrations(void *arg)
{
	struct reg_churn *c = arg;

	while (!c->stop)
		if (!hugering_register_buffers(c->ring, c->pool, NULL, 0, 0, NULL))
			hugering_unregister_buffers(c->ring);
	return NULL;
}

/*
 * fork() while another thread registers and unregisters: the child finds
 * the records' lock free (inherited held, its first call would hang until
 * the timeout) and is refused the parent's unregister.
 */
Test(regbuf, fork_while_busy)
{
	struct hugering_bufpool_info in;
	struct hugering_bufpool *p, *q;
	struct reg_churn c = { 0 };
	struct io_uring ring, other;
	pthread_t t;

	th_need_pool(SZ_2M, 4);
	ring_up(&ring);
	ring_up(&other);
	p = pool_up(4, 4096, 0, &in);
	q = pool_up(4, 4096, 0, &in);
	cr_assert_eq(hugering_register_buffers(&ring, p, NULL, 0, 0, NULL), 0, "%s",
		     hugering_last_error());
	c = (struct reg_churn){ .ring = &other, .pool = q };
	cr_assert_eq(pthread_create(&t, NULL, churn_registrations, &c), 0);
	for (int i = 0; i < 50; i++) {
		int status;
		pid_t pid = fork();

		cr_assert_geq(pid, 0);
		if (!pid)
			_exit(hugering_unregister_buffers(&ring) == -ECHILD ? 0 : 1);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
	}
	c.stop = true;
	pthread_join(t, NULL);
	cr_assert_eq(hugering_unregister_buffers(&ring), 0);
	hugering_unregister_buffers(&other);
	hugering_queue_exit(&ring);
	hugering_queue_exit(&other);
	hugering_bufpool_destroy(p);
	hugering_bufpool_destroy(q);
}

/* ------------------------------------------------------------------ */
/* Recycling: the tag CQE is the kernel's last reference               */
/* ------------------------------------------------------------------ */

#define WTAG 0xfeed0001ULL
#define WLEN 4096

static long usable_2m(void)
{
	return th_pool_field(SZ_2M, "free_hugepages") - th_pool_field(SZ_2M, "resv_hugepages");
}

/* Is Linux at least @maj.@min (uname)? */
static bool kernel_at_least(int maj, int min)
{
	char rel[256];
	int a = 0, b = 0;

	th_slurp("/proc/sys/kernel/osrelease", rel, sizeof(rel));
	if (sscanf(rel, "%d.%d", &a, &b) != 2)
		return false;
	return a > maj || (a == maj && b >= min);
}

/*
 * The witness for registered-buffer recycling.  A pool buffer registered
 * with a tag; a READ_FIXED into it from an empty pipe stays pending and
 * holds the buffer.  The table lets go of it (@update: replaced by an
 * empty entry; else unregistered), the pool is destroyed (its memory
 * unmapped, its file closed) and a new pool created at once and filled
 * with a known byte.  The old page stays out of the hugepage pool while
 * the kernel holds it (the usable count does not come back), the new pool
 * is not on its frames (pagemap, as root), then data comes into the pipe:
 * the read completes whole (into the old, still pinned page), the tag CQE
 * comes only after it, the old page goes back to the pool only then, and
 * the new pool's memory is untouched.
 */
static void witness_pending_read(bool update)
{
	struct hugering_bufpool_info in, in2;
	struct hugering_bufpool *p, *q;
	struct __kernel_timespec ts = { .tv_nsec = 50 * 1000000 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	struct iovec iov;
	__u64 tag = WTAG;
	uint64_t old_pfn = 0, seen[2];
	unsigned char msg[WLEN], *b;
	long u_pool, u_held;
	int pfd[2], res[2];

	th_need_pool(SZ_2M, 4);
	ring_up(&ring);
	p = pool_up(1, WLEN, 0, &in);
	cr_assert_eq(in.page_size, SZ_2M, "%s", in.fallback_reason);
	b = hugering_bufpool_buf(p, 0);
	memset(b, 0xaa, WLEN);
	if (th_pfn_visible())
		old_pfn = th_pfn(b);
	cr_assert_eq(hugering_bufpool_iovecs(p, &iov, 1), 1);
	cr_assert_eq(io_uring_register_buffers_tags(&ring, &iov, &tag, 1), 0);
	cr_assert_eq(pipe(pfd), 0);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read_fixed(sqe, pfd[0], b, WLEN, 0, 0);
	sqe->user_data = 1;
	cr_assert_eq(io_uring_submit(&ring), 1);
	cr_assert_eq(io_uring_wait_cqe_timeout(&ring, &cqe, &ts), -ETIME,
		     "the read from an empty pipe completed: res %d", cqe ? cqe->res : 0);

	/* The table lets go; the pending read still holds the buffer. */
	if (update) {
		struct iovec none = { NULL, 0 };
		__u64 no_tag = 0;

		cr_assert_eq(io_uring_register_buffers_update_tag(&ring, 0, &none, &no_tag, 1), 1);
	} else {
		cr_assert_eq(hugering_unregister_buffers(&ring), 0, "%s", hugering_last_error());
	}
	cr_assert_eq(io_uring_wait_cqe_timeout(&ring, &cqe, &ts), -ETIME,
		     "a CQE (user_data %#llx) while the read holds the buffer",
		     cqe ? (unsigned long long)cqe->user_data : 0ULL);
	th_settle_pool(SZ_2M);
	u_pool = usable_2m();
	hugering_bufpool_destroy(p);
	th_settle_pool(SZ_2M);
	u_held = usable_2m();
	cr_assert_eq(u_held, u_pool, "destroying the pool gave %ld pages back while the kernel "
		     "holds its page", u_held - u_pool);

	/* A new pool at once: never on the old frames. */
	q = pool_up(1, WLEN, 0, &in2);
	cr_assert_eq(in2.page_size, SZ_2M, "%s", in2.fallback_reason);
	memset(hugering_bufpool_buf(q, 0), 0x55, WLEN);
	if (old_pfn) {
		uint64_t now = th_pfn(hugering_bufpool_buf(q, 0));

		cr_assert_neq(now / (SZ_2M / 4096), old_pfn / (SZ_2M / 4096),
			      "the new pool got the pinned page (pfn %#llx)",
			      (unsigned long long)now);
	}

	/* The data comes: the read completes, then (only then) the tag. */
	for (size_t k = 0; k < WLEN; k++)
		msg[k] = (unsigned char)pattern(k + 11);
	cr_assert_eq(write(pfd[1], msg, WLEN), WLEN);
	for (int i = 0; i < 2; i++) {
		struct __kernel_timespec wait = { .tv_sec = 10 };

		cr_assert_eq(io_uring_wait_cqe_timeout(&ring, &cqe, &wait), 0, "CQE %d missing", i);
		seen[i] = cqe->user_data;
		res[i] = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
	}
	cr_assert_eq(seen[0], 1, "first CQE %#llx: the tag came before the read completed",
		     (unsigned long long)seen[0]);
	cr_assert_eq(res[0], WLEN, "READ_FIXED into the released buffer: %d", res[0]);
	cr_assert_eq(seen[1], WTAG, "second CQE %#llx, not the tag", (unsigned long long)seen[1]);
	cr_assert_eq(res[1], 0);
	/* Unpinned: the page goes back to the pool (the new pool still holds one). */
	cr_assert(th_wait_pool(SZ_2M, u_held, 2000), "the old page did not come back after the "
		  "tag: usable %ld, want %ld", usable_2m(), u_held);
	for (size_t k = 0; k < WLEN; k++)
		cr_assert_eq(((unsigned char *)hugering_bufpool_buf(q, 0))[k], 0x55,
			     "byte %zu of the new pool was written", k);
	if (update)
		cr_assert_eq(hugering_unregister_buffers(&ring), 0, "%s", hugering_last_error());
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(q);
	close(pfd[0]);
	close(pfd[1]);
}

Test(regbuf, witness_unregister_with_read_in_flight)
{
	/* Before 6.13 unregistering waits for every request using the table (quiesce). */
	if (!kernel_at_least(6, 13))
		cr_skip("before Linux 6.13 IORING_UNREGISTER_BUFFERS waits for the pending read "
			"(io_rsrc_ref_quiesce): the update variant covers these kernels");
	witness_pending_read(false);
}

Test(regbuf, witness_update_with_read_in_flight)
{
	witness_pending_read(true);
}

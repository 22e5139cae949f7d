/* SPDX-License-Identifier: MIT */
/*
 * Provided buffer rings in hugepage memory (issue 13): multishot receive
 * over a socketpair and loopback TCP (with and without IOU_PBUF_RING_INC,
 * buffers from an array or from a hugering buffer pool filling the ring),
 * the memory in hugepages, many rings per page, clean reuse after free,
 * quarantine when the ring dies first (and the recycling witness: memory
 * handed out right after such a close is never written by the dying ring),
 * liburing's fallback on an empty pool.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

TestSuite(bufring, .init = th_init, .fini = th_fini, .timeout = 120);

#define NBUFS 64
#define BUF_SIZE 4096
#define TOTAL (1024 * 1024)

/* The byte at stream offset @i: position-dependent, so a reorder shows. */
static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + (i >> 8) + (i >> 16));
}


static void tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(l, 0);
	cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(l, 1), 0);
	cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	fds[1] = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(fds[1], (struct sockaddr *)&a, sizeof(a)), 0);
	fds[0] = accept(l, NULL, NULL);
	cr_assert_geq(fds[0], 0);
	close(l);
}

static void arm_recv(struct io_uring *ring, int fd, int bgid)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	cr_assert_not_null(sqe);
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)bgid;
	cr_assert_eq(io_uring_submit(ring), 1);
}

/* Where the stream's buffers live: a hugering buffer pool, or a plain array. */
struct stream_bufs {
	struct hugering_bufpool *pool;
	unsigned char *plain;
};

static unsigned char *buf_at(const struct stream_bufs *sb, unsigned bid)
{
	return sb->pool ? hugering_bufpool_buf(sb->pool, bid) : sb->plain + (size_t)bid * BUF_SIZE;
}

/* All NBUFS buffers into the ring, buffer b at ring index b (from the pool: its fill). */
static void fill_ring(struct io_uring_buf_ring *br, const struct stream_bufs *sb)
{
	int mask = io_uring_buf_ring_mask(NBUFS);

	if (sb->pool) {
		cr_assert_eq(hugering_bufpool_fill(sb->pool, br, NBUFS), NBUFS, "%s",
			     hugering_last_error());
		return;
	}
	for (unsigned b = 0; b < NBUFS; b++)
		io_uring_buf_ring_add(br, buf_at(sb, b), BUF_SIZE, (unsigned short)b, mask, (int)b);
	io_uring_buf_ring_advance(br, NBUFS);
}

/*
 * With IOU_PBUF_RING_INC the kernel writes the partly used buffer back
 * into the ring entry at its head (io_kbuf_inc_commit): the address moved
 * past what it filled, the length shrunk by it; once the buffer is used up
 * the length is 0 and the address stays where it was.  @idx is the entry's
 * ring index, @buf the buffer, @used what the completions so far put in it.
 * The receive goes on while we look (completions not reaped yet may have
 * moved the entry further): @exact only when all the data has come.
 */
static void check_inc_entry(const struct io_uring_buf_ring *br, unsigned idx,
			    const unsigned char *buf, size_t used, bool exact)
{
	const struct io_uring_buf *e = &br->bufs[idx & (NBUFS - 1)];
	uint64_t addr = __atomic_load_n(&e->addr, __ATOMIC_ACQUIRE);
	uint32_t len = __atomic_load_n(&e->len, __ATOMIC_ACQUIRE);
	uint64_t want = (uint64_t)(uintptr_t)(buf + used), end = (uint64_t)(uintptr_t)(buf + BUF_SIZE);

	if (exact) {
		cr_assert_eq(addr, want, "ring entry %u: addr %#llx, want the buffer + %zu (%#llx)",
			     idx, (unsigned long long)addr, used, (unsigned long long)want);
		cr_assert_eq(len, BUF_SIZE - used, "ring entry %u: len %u, want %zu", idx, len,
			     BUF_SIZE - used);
		return;
	}
	cr_assert(addr >= want && addr <= end, "ring entry %u: addr %#llx, not past the %zu bytes "
		  "received into buffer %p", idx, (unsigned long long)addr, used, (const void *)buf);
	/*
	 * The kernel stores the address, then the length, as plain stores: read
	 * while it commits, the two disagree for a moment (seen once, in a CI
	 * run).  Read again until they agree; an entry written wrong never does.
	 */
	for (int i = 0; i < 10000 && len && addr + len != end; i++) {
		sched_yield();
		addr = __atomic_load_n(&e->addr, __ATOMIC_ACQUIRE);
		len = __atomic_load_n(&e->len, __ATOMIC_ACQUIRE);
	}
	cr_assert(!len || addr + len == end, "ring entry %u: addr %#llx + len %u is not the "
		  "buffer's end %#llx", idx, (unsigned long long)addr, len, (unsigned long long)end);
}

/*
 * Multishot receive of the whole stream into buffer group @bgid.  The
 * kernel takes buffers from the head in the order we added them: every
 * completion's buffer id must be the next one we queued (a FIFO kept here),
 * and with IOU_PBUF_RING_INC the same buffer is reported until a completion
 * comes without IORING_CQE_F_BUF_MORE, its data continuing where the last
 * one ended (and the ring entry says so: check_inc_entry).  Returns how many
 * completions had BUF_MORE.
 */
static unsigned recv_stream(struct io_uring *ring, struct io_uring_buf_ring *br, int bgid,
			    int fd, size_t total, bool inc, const struct stream_bufs *sb)
{
	unsigned fifo[4 * NBUFS], fhead = 0, ftail = 0, more = 0;
	size_t used[NBUFS] = { 0 }, off = 0;
	int mask = io_uring_buf_ring_mask(NBUFS);

	fill_ring(br, sb);
	for (unsigned b = 0; b < NBUFS; b++)
		fifo[ftail++ % (4 * NBUFS)] = b;
	arm_recv(ring, fd, bgid);
	while (off < total) {
		struct io_uring_cqe *cqe;
		unsigned bid, flags;
		unsigned char *buf;
		int res;

		cr_assert_eq(io_uring_wait_cqe(ring, &cqe), 0);
		res = cqe->res;
		flags = cqe->flags;
		io_uring_cqe_seen(ring, cqe);
		if (res == -ENOBUFS) {
			cr_assert(!(flags & IORING_CQE_F_MORE));
			arm_recv(ring, fd, bgid);
			continue;
		}
		cr_assert_gt(res, 0, "recv: %d (%s) at offset %zu", res, strerror(-res), off);
		cr_assert(flags & IORING_CQE_F_BUFFER);
		bid = flags >> IORING_CQE_BUFFER_SHIFT;
		cr_assert_lt(bid, NBUFS);
		cr_assert_eq(bid, fifo[fhead % (4 * NBUFS)],
			     "kernel used buffer %u, the ring's head is %u%s", bid,
			     fifo[fhead % (4 * NBUFS)], used[fifo[fhead % (4 * NBUFS)]] ?
			     " (left with IORING_CQE_F_BUF_MORE: the kernel must continue in it)" : "");
		cr_assert_leq(used[bid] + (size_t)res, BUF_SIZE);
		buf = buf_at(sb, bid);
		for (int i = 0; i < res; i++)
			cr_assert_eq(buf[used[bid] + (size_t)i], pattern(off + (size_t)i),
				     "byte %zu (buffer %u at offset %zu)", off + (size_t)i, bid,
				     used[bid] + (size_t)i);
		off += (size_t)res;
		if (flags & IORING_CQE_F_BUF_MORE) {
			/* Still the kernel's: the next completion continues in it. */
			cr_assert(inc, "BUF_MORE without IOU_PBUF_RING_INC");
			used[bid] += (size_t)res;
			check_inc_entry(br, fhead, buf, used[bid], false);
			more++;
		} else {
			/* The buffer is ours again: back at the tail. */
			used[bid] = 0;
			fhead++;
			io_uring_buf_ring_add(br, buf, BUF_SIZE, (unsigned short)bid, mask, 0);
			io_uring_buf_ring_advance(br, 1);
			fifo[ftail++ % (4 * NBUFS)] = bid;
		}
		if (!(flags & IORING_CQE_F_MORE) && off < total)
			arm_recv(ring, fd, bgid);
	}
	cr_assert_eq(off, total);
	/* Everything came: a buffer left partly used is exactly where the last completion left it. */
	if (used[fifo[fhead % (4 * NBUFS)]])
		check_inc_entry(br, fhead, buf_at(sb, fifo[fhead % (4 * NBUFS)]),
				used[fifo[fhead % (4 * NBUFS)]], true);
	return more;
}

static void ring_up(struct io_uring *ring)
{
	struct io_uring_params p = { 0 };

	cr_assert_eq(hugering_queue_init_params(64, ring, &p), 0, "%s", hugering_last_error());
}

/*
 * Whole stream over @fds through a hugering buffer ring; asserts it is in
 * hugepages.  @pooled: the buffers come from a hugering buffer pool (in
 * hugepages too) that fills the ring; else from a plain array.
 */
static void stream_test(int fds[2], unsigned flags, bool pooled)
{
	struct hugering_buf_ring_info info;
	struct th_sender s = { .fd = fds[1], .total = TOTAL, .pattern = pattern };
	struct stream_bufs sb = { 0 };
	struct io_uring_buf_ring *br;
	struct io_uring ring;
	pthread_t t;
	unsigned more;
	int err = 1;

	th_need_pool(SZ_2M, 3);
	ring_up(&ring);
	br = hugering_setup_buf_ring(&ring, NBUFS, 7, flags, &err);
	if (!br && err == -EINVAL && (flags & IOU_PBUF_RING_INC))
		cr_skip("kernel lacks IOU_PBUF_RING_INC (Linux < 6.12): %s", hugering_last_error());
	cr_assert_not_null(br, "setup: %d %s", err, hugering_last_error());
	cr_assert_eq(err, 0);
	cr_assert_str_empty(hugering_last_error());
	cr_assert_eq(hugering_buf_ring_info(&ring, 7, &info), 0);
	cr_assert_eq(info.mode, HUGERING_BUF_RING_HUGE, "fell back: %s", info.fallback_reason);
	cr_assert_eq(info.flags, flags);
	cr_assert_eq((void *)br, info.mem);
	if (pooled) {
		struct hugering_bufpool_info pi;
		struct hugering_addr_info ai;

		cr_assert_eq(hugering_bufpool_create(NBUFS, BUF_SIZE, NULL, &sb.pool), 0, "%s",
			     hugering_last_error());
		cr_assert_eq(hugering_bufpool_info(sb.pool, &pi), 0);
		cr_assert_eq(pi.page_size, hugering_default_page_size(), "pool fell back: %s",
			     pi.fallback_reason);
		cr_assert_eq(hugering_addr_info(hugering_bufpool_buf(sb.pool, NBUFS - 1), &ai), 0);
		cr_assert_eq(ai.backing, HUGERING_BACKING_HUGETLB);
	} else {
		sb.plain = aligned_alloc(4096, NBUFS * BUF_SIZE);
		cr_assert_not_null(sb.plain);
	}
	cr_assert_eq(pthread_create(&t, NULL, th_send_all, &s), 0);
	more = recv_stream(&ring, br, 7, fds[0], TOTAL, flags & IOU_PBUF_RING_INC, &sb);
	pthread_join(t, NULL);
	/* 4 KiB buffers, sends of at most 3000 bytes: INC must have shared buffers. */
	if (flags & IOU_PBUF_RING_INC)
		cr_assert_gt(more, 0, "no completion with IORING_CQE_F_BUF_MORE");
	cr_log_info("stream (%s, %s): %u completions with BUF_MORE", flags ? "INC" : "plain",
		    pooled ? "pool" : "array", more);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, NBUFS, 7), 0, "%s", hugering_last_error());
	cr_assert_eq(hugering_buf_ring_info(&ring, 7, &info), -ENOENT);
	hugering_queue_exit(&ring);
	hugering_bufpool_destroy(sb.pool);
	free(sb.plain);
	close(fds[0]);
	close(fds[1]);
}

Test(bufring, multishot_recv_socketpair)
{
	int fds[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	stream_test(fds, 0, false);
}

Test(bufring, multishot_recv_tcp)
{
	int fds[2];

	tcp_pair(fds);
	stream_test(fds, 0, false);
}

Test(bufring, multishot_recv_socketpair_inc)
{
	int fds[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	stream_test(fds, IOU_PBUF_RING_INC, false);
}

Test(bufring, multishot_recv_tcp_inc)
{
	int fds[2];

	tcp_pair(fds);
	stream_test(fds, IOU_PBUF_RING_INC, false);
}

/* Issue 13 acceptance 1 as a program would do it: ring and buffers both hugering's. */
Test(bufring, multishot_recv_tcp_pool)
{
	int fds[2];

	tcp_pair(fds);
	stream_test(fds, 0, true);
}

Test(bufring, multishot_recv_tcp_pool_inc)
{
	int fds[2];

	tcp_pair(fds);
	stream_test(fds, IOU_PBUF_RING_INC, true);
}

Test(bufring, multishot_recv_socketpair_pool_inc)
{
	int fds[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	stream_test(fds, IOU_PBUF_RING_INC, true);
}

/* The memory is a hugetlb page (pagemap-proven as root: same frame run as its page). */
Test(bufring, memory_in_hugepages)
{
	struct hugering_buf_ring_info info;
	struct hugering_addr_info ai;
	struct hugering_verify v;
	struct io_uring_buf_ring *br;
	struct io_uring ring;
	int err;

	th_need_pool(SZ_2M, 2);
	ring_up(&ring);
	br = hugering_setup_buf_ring(&ring, 256, 1, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	cr_assert_eq(hugering_buf_ring_info(&ring, 1, &info), 0);
	cr_assert_eq(info.mode, HUGERING_BUF_RING_HUGE);
	cr_assert_eq(info.page_size, hugering_default_page_size());
	cr_assert_eq(info.mem_bytes, 4096);
	cr_assert_eq((uintptr_t)br % 4096, 0);
	cr_assert_eq((char *)info.page_addr + info.page_offset, (char *)br);
	cr_assert_eq(hugering_addr_info(br, &ai), 0);
	cr_assert_eq(ai.backing, HUGERING_BACKING_HUGETLB);
	cr_assert_eq(ai.page_size, info.page_size);
	cr_assert_eq(hugering_mem_verify(br, info.mem_bytes, &v), 0);
	cr_assert_eq(v.page_size, info.page_size);
	cr_assert_eq(v.backing, HUGERING_BACKING_HUGETLB);
	if (th_pfn_visible()) {
		uint64_t pfn = th_pfn(br), base = th_pfn(info.page_addr);

		cr_assert_neq(pfn, 0);
		cr_assert_eq(pfn - base, info.page_offset / 4096,
			     "not the hugepage's frame: pfn %#llx, page %#llx",
			     (unsigned long long)pfn, (unsigned long long)base);
		cr_assert_eq(v.proof, HUGERING_PROOF_PAGEMAP);
	}
	cr_assert_eq(hugering_free_buf_ring(&ring, br, 256, 1), 0);
	hugering_queue_exit(&ring);
}

/* Eight rings of 256 entries in one hugepage, each used by the kernel. */
Test(bufring, many_rings_share_one_page)
{
	struct io_uring_buf_ring *br[8];
	struct hugering_buf_ring_info info[8];
	static char bufs[8][64];
	struct io_uring ring;
	int fds[2], err;

	th_need_pool(SZ_2M, 2);
	ring_up(&ring);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM, 0, fds), 0);
	for (int g = 0; g < 8; g++) {
		br[g] = hugering_setup_buf_ring(&ring, 256, g, 0, &err);
		cr_assert_not_null(br[g], "group %d: %s", g, hugering_last_error());
		cr_assert_eq(hugering_buf_ring_info(&ring, g, &info[g]), 0);
		cr_assert_eq(info[g].mode, HUGERING_BUF_RING_HUGE);
		cr_assert_eq(info[g].page_addr, info[0].page_addr, "ring %d in another page", g);
		for (int h = 0; h < g; h++) {
			uintptr_t a = (uintptr_t)br[g], b = (uintptr_t)br[h];

			cr_assert(a >= b + 4096 || b >= a + 4096, "rings %d and %d overlap", g, h);
		}
		io_uring_buf_ring_add(br[g], bufs[g], sizeof(bufs[g]), (unsigned short)(100 + g),
				      io_uring_buf_ring_mask(256), 0);
		io_uring_buf_ring_advance(br[g], 1);
	}
	/* One datagram per group, received into that group's only buffer. */
	for (int g = 0; g < 8; g++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		struct io_uring_cqe *cqe;
		char msg[16];

		snprintf(msg, sizeof(msg), "group-%d", g);
		cr_assert_eq(write(fds[1], msg, strlen(msg) + 1), (ssize_t)strlen(msg) + 1);
		io_uring_prep_recv(sqe, fds[0], NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = (uint16_t)g;
		cr_assert_eq(io_uring_submit_and_wait(&ring, 1), 1);
		cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
		cr_assert_eq(cqe->res, (int)strlen(msg) + 1);
		cr_assert_eq(cqe->flags >> IORING_CQE_BUFFER_SHIFT, 100u + (unsigned)g);
		cr_assert_str_eq(bufs[g], msg);
		io_uring_cqe_seen(&ring, cqe);
	}
	for (int g = 0; g < 8; g++)
		cr_assert_eq(hugering_free_buf_ring(&ring, br[g], 256, g), 0);
	hugering_queue_exit(&ring);
	close(fds[0]);
	close(fds[1]);
}

static void ring_in(struct hugering_arena *a, struct io_uring *ring)
{
	struct io_uring_params p = { 0 };
	struct hugering_init_opts o = { .arena = a, .policy = HUGERING_POLICY_NOMMAP };

	cr_assert_eq(hugering_queue_init_opts(64, ring, &p, &o), 0, "%s", hugering_last_error());
}

/* Unregistered memory is reusable at once: the next buffer ring gets it (clean). */
Test(bufring, free_then_setup_reuses_memory)
{
	struct hugering_arena *a;
	struct hugering_arena_stats st0, st;
	struct io_uring_buf_ring *br, *br2;
	struct io_uring ring;
	int err;

	th_need_pool(SZ_2M, 2);
	a = th_new_arena();
	ring_in(a, &ring);
	cr_assert_eq(hugering_arena_stats(a, &st0), 0);
	br = hugering_setup_buf_ring(&ring, 256, 3, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.rings_live, st0.rings_live + 1, "not from the ring's arena");
	/* Dirty it as a program would: the next ring must start clean anyway. */
	memset(br, 0xa5, 4096);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, 256, 3), 0);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.rings_live, st0.rings_live);
	cr_assert_eq(st.bytes_waiting, st0.bytes_waiting, "a clean free was quarantined");
	for (int i = 0; i < 50; i++) {
		br2 = hugering_setup_buf_ring(&ring, 256, 4, 0, &err);
		cr_assert_eq(br2, br, "cycle %d: clean memory not reused", i);
		cr_assert_eq(br2->tail, 0);
		cr_assert_eq(hugering_free_buf_ring(&ring, br2, 256, 4), 0);
	}
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/*
 * A ring destroyed with its buffer ring still registered: the buffer ring's
 * memory is quarantined (bytes_waiting), never handed out again while the
 * page lives; a neighbour ring keeps the page alive meanwhile.
 */
Test(bufring, ring_exit_without_unregister_quarantines)
{
	struct hugering_arena *a;
	struct hugering_arena_stats st0, st;
	struct hugering_ring_info ri;
	struct io_uring_buf_ring *br, *br2;
	struct io_uring ring, keep;
	int err;

	th_need_pool(SZ_2M, 2);
	a = th_new_arena();
	ring_in(a, &keep);
	ring_in(a, &ring);
	cr_assert_eq(hugering_ring_info(&ring, &ri), 0);
	br = hugering_setup_buf_ring(&ring, 256, 5, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	cr_assert_eq(hugering_arena_stats(a, &st0), 0);
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.rings_live, st0.rings_live - 2);
	cr_assert_eq(st.bytes_waiting, st0.bytes_waiting + ri.mem_bytes + 4096,
		     "waiting %zu, expected %zu + ring %zu + 4096", st.bytes_waiting,
		     st0.bytes_waiting, ri.mem_bytes);
	for (int i = 0; i < 50; i++) {
		br2 = hugering_setup_buf_ring(&keep, 256, 5, 0, &err);
		cr_assert_not_null(br2, "%s", hugering_last_error());
		cr_assert_neq(br2, br, "cycle %d: quarantined memory handed out again", i);
		cr_assert_eq(hugering_free_buf_ring(&keep, br2, 256, 5), 0);
	}
	hugering_queue_exit(&keep);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* A plain liburing ring closed first: free fails (-EBADF) and quarantines. */
Test(bufring, free_after_close_quarantines)
{
	struct hugering_arena_stats st0, st;
	struct hugering_arena *a;
	struct io_uring_buf_ring *br;
	struct io_uring ring;
	int err;

	th_need_pool(SZ_2M, 2);
	cr_assert_eq(io_uring_queue_init(8, &ring, 0), 0);
	br = hugering_setup_buf_ring(&ring, 256, 9, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	a = hugering_default_arena();
	cr_assert_not_null(a);
	cr_assert_eq(hugering_arena_stats(a, &st0), 0);
	io_uring_queue_exit(&ring);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, 256, 9), -EBADF);
	cr_assert_str_not_empty(hugering_last_error());
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	cr_assert_eq(st.rings_live, st0.rings_live - 1);
	cr_assert_eq(st.bytes_waiting, st0.bytes_waiting + 4096);
}

/* Errors: the kernel's, with a reason, and nothing taken. */
Test(bufring, errors_take_nothing)
{
	struct hugering_arena_stats st0, st;
	struct io_uring_buf_ring *br;
	struct io_uring ring;
	int err;

	th_need_pool(SZ_2M, 2);
	ring_up(&ring);
	cr_assert_null(hugering_setup_buf_ring(&ring, 3, 1, 0, &err));
	cr_assert_eq(err, -EINVAL);
	cr_assert_str_not_empty(hugering_last_error());
	cr_assert_null(hugering_setup_buf_ring(&ring, 65536, 1, 0, &err));
	cr_assert_eq(err, -EINVAL);
	br = hugering_setup_buf_ring(&ring, 16, 1, 0, &err);
	cr_assert_not_null(br);
	cr_assert_eq(hugering_arena_stats(hugering_default_arena(), &st0), 0);
	cr_assert_null(hugering_setup_buf_ring(&ring, 16, 1, 0, &err));
	cr_assert_eq(err, -EEXIST);
	cr_assert_str_not_empty(hugering_last_error());
	cr_assert_eq(hugering_arena_stats(hugering_default_arena(), &st), 0);
	cr_assert_eq(st.rings_live, st0.rings_live);
	cr_assert_eq(st.bytes_waiting, st0.bytes_waiting);
	cr_assert_eq(hugering_free_buf_ring(&ring, (void *)4096, 16, 1), -EINVAL);
	cr_assert_lt(hugering_free_buf_ring(&ring, br, 16, 2), 0);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, 16, 1), 0);
	hugering_queue_exit(&ring);
}

/* Empty pool: liburing's own buffer ring, said so, and it works. */
Test(bufring, empty_pool_falls_back_to_liburing)
{
	struct hugering_buf_ring_info info;
	struct stream_bufs sb = { 0 };
	struct io_uring_buf_ring *br;
	struct th_sender s;
	struct th_hog hog;
	struct io_uring ring;
	pthread_t t;
	int fds[2], err;

	th_exhaust(hugering_default_page_size(), &hog);
	ring_up(&ring);
	br = hugering_setup_buf_ring(&ring, NBUFS, 2, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	cr_assert_eq(err, 0);
	cr_assert_str_empty(hugering_last_error());
	cr_assert_eq(hugering_buf_ring_info(&ring, 2, &info), 0);
	cr_assert_eq(info.mode, HUGERING_BUF_RING_LIBURING);
	cr_assert_eq(info.fallback_errno, ENOMEM);
	cr_assert_str_not_empty(info.fallback_reason);
	cr_assert_eq(info.page_size, 4096);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	s = (struct th_sender){ .fd = fds[1], .total = TOTAL / 4, .pattern = pattern };
	cr_assert_eq(pthread_create(&t, NULL, th_send_all, &s), 0);
	sb.plain = aligned_alloc(4096, NBUFS * BUF_SIZE);
	cr_assert_not_null(sb.plain);
	recv_stream(&ring, br, 2, fds[0], TOTAL / 4, false, &sb);
	pthread_join(t, NULL);
	free(sb.plain);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, NBUFS, 2), 0);
	hugering_queue_exit(&ring);
	th_release(&hog);
	close(fds[0]);
	close(fds[1]);
}

struct churn {
	struct io_uring *ring;
	volatile bool stop;
};

static void *churn_buf_rings(void *arg)
{
	struct churn *c = arg;
	int err;

	while (!c->stop) {
		struct io_uring_buf_ring *br = hugering_setup_buf_ring(c->ring, 16, 11, 0, &err);

		if (br)
			hugering_free_buf_ring(c->ring, br, 16, 11);
	}
	return NULL;
}

/*
 * fork() while another thread sets buffer rings up and frees them: the
 * child finds the records unlocked (a lock inherited held would hang it
 * until the timeout) and reads its inherited buffer ring's info.
 */
Test(bufring, fork_while_busy)
{
	struct hugering_buf_ring_info info;
	struct io_uring_buf_ring *br;
	struct churn c = { 0 };
	struct io_uring ring;
	pthread_t t;
	int err;

	th_need_pool(SZ_2M, 2);
	ring_up(&ring);
	br = hugering_setup_buf_ring(&ring, 16, 10, 0, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	c.ring = &ring;
	cr_assert_eq(pthread_create(&t, NULL, churn_buf_rings, &c), 0);
	for (int i = 0; i < 50; i++) {
		int status;
		pid_t pid = fork();

		cr_assert_geq(pid, 0);
		if (!pid)
			_exit(hugering_buf_ring_info(&ring, 10, &info) == 0 &&
			      info.mem == (void *)br ? 0 : 1);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed", i);
	}
	c.stop = true;
	pthread_join(t, NULL);
	cr_assert_eq(hugering_free_buf_ring(&ring, br, 16, 10), 0);
	hugering_queue_exit(&ring);
}

/* ------------------------------------------------------------------ */
/* Recycling witness (acceptance 5)                                    */
/* ------------------------------------------------------------------ */

struct flood {
	int fd;
	volatile bool stop;
};

/* Keeps data coming into the old ring's socket until told to stop. */
static void *flood(void *arg)
{
	struct flood *f = arg;
	unsigned char buf[512];

	memset(buf, 0xc3, sizeof(buf));
	while (!f->stop) {
		if (write(f->fd, buf, sizeof(buf)) < 0)
			th_sleep_ms(1);	/* socket full (nonblocking) or gone */
	}
	return NULL;
}

#define WBUFS 16

/*
 * An INC buffer ring on @ring with a multishot receive armed on @fd and at
 * least one completion reaped (so the kernel has written the ring memory).
 */
static struct io_uring_buf_ring *busy_inc_ring(struct io_uring *ring, int fd, int wfd,
					       unsigned char *bufs)
{
	struct io_uring_buf_ring *br;
	struct io_uring_cqe *cqe;
	int err;

	br = hugering_setup_buf_ring(ring, WBUFS, 1, IOU_PBUF_RING_INC, &err);
	if (!br && err == -EINVAL)
		cr_skip("kernel lacks IOU_PBUF_RING_INC (Linux < 6.12)");
	cr_assert_not_null(br, "%s", hugering_last_error());
	for (unsigned b = 0; b < WBUFS; b++)
		io_uring_buf_ring_add(br, bufs + b * BUF_SIZE, BUF_SIZE, (unsigned short)b,
				      io_uring_buf_ring_mask(WBUFS), (int)b);
	io_uring_buf_ring_advance(br, WBUFS);
	arm_recv(ring, fd, 1);
	cr_assert_eq(write(wfd, "hello", 5), 5);
	cr_assert_eq(io_uring_wait_cqe(ring, &cqe), 0);
	cr_assert_eq(cqe->res, 5, "recv: %d", cqe->res);
	cr_assert(cqe->flags & IORING_CQE_F_BUF_MORE, "INC consumed part of a buffer");
	io_uring_cqe_seen(ring, cqe);
	return br;
}

/* A new INC buffer ring on @ring over @bufs (filled 0x5a); @snap gets its bytes. */
static struct io_uring_buf_ring *fresh_ring(struct io_uring *ring, unsigned char *bufs,
					    unsigned char *snap, struct hugering_buf_ring_info *info)
{
	struct io_uring_buf_ring *br;
	int err;

	br = hugering_setup_buf_ring(ring, WBUFS, 1, IOU_PBUF_RING_INC, &err);
	cr_assert_not_null(br, "%s", hugering_last_error());
	cr_assert_eq(hugering_buf_ring_info(ring, 1, info), 0);
	memset(bufs, 0x5a, WBUFS * BUF_SIZE);
	for (unsigned b = 0; b < WBUFS; b++)
		io_uring_buf_ring_add(br, bufs + b * BUF_SIZE, BUF_SIZE, (unsigned short)(b + 1000),
				      io_uring_buf_ring_mask(WBUFS), (int)b);
	io_uring_buf_ring_advance(br, WBUFS);
	memcpy(snap, br, info->mem_bytes);
	return br;
}

/* After 40 ms (past any late write): the new ring and its buffers are as written. */
static void untouched(const struct io_uring_buf_ring *br, const unsigned char *snap,
		      const unsigned char *bufs, size_t len, int round)
{
	th_sleep_ms(40);
	cr_assert_eq(memcmp(br, snap, len), 0, "round %d: the new buffer ring was written", round);
	for (size_t i = 0; i < WBUFS * BUF_SIZE; i++)
		cr_assert_eq(bufs[i], 0x5a, "round %d: byte %zu of the new buffers was written "
			     "(by the dying ring's receive)", round, i);
}

/*
 * The witness: an INC buffer ring in use (multishot receive armed, data
 * flowing) when its io_uring ring is closed WITHOUT unregistering; at once
 * a new buffer ring of the same size is set up on a new ring and filled
 * with a known pattern, then left alone for 40 ms while data keeps coming
 * into the old socket.  The new ring's memory and buffers must be exactly
 * as written.  In hugepages the old memory is quarantined, so the new ring
 * never lands on it; in liburing's fallback the old mapping is unmapped and
 * the address may come back, backed by other frames (the kernel pins the
 * old ones): then the witness shows that reuse was safe.  Returns how many
 * rounds reused the old address.
 */
static int witness_close_without_unregister(struct hugering_arena *a, int rounds)
{
	static unsigned char old_bufs[WBUFS * BUF_SIZE], new_bufs[WBUFS * BUF_SIZE];
	static unsigned char snap[65536];
	int same = 0;

	for (int i = 0; i < rounds; i++) {
		struct hugering_buf_ring_info oi, ni;
		struct io_uring_buf_ring *old, *br;
		struct io_uring A, B;
		struct flood f;
		pthread_t t;
		int fds[2];

		a ? ring_in(a, &A) : ring_up(&A);
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
		old = busy_inc_ring(&A, fds[0], fds[1], old_bufs);
		cr_assert_eq(hugering_buf_ring_info(&A, 1, &oi), 0);
		f = (struct flood){ .fd = fds[1] };
		cr_assert_eq(pthread_create(&t, NULL, flood, &f), 0);
		th_sleep_ms(2);
		hugering_queue_exit(&A);	/* no hugering_free_buf_ring */
		a ? ring_in(a, &B) : ring_up(&B);
		br = fresh_ring(&B, new_bufs, snap, &ni);
		cr_assert_eq(ni.mode, oi.mode);
		if (ni.mode == HUGERING_BUF_RING_HUGE)
			cr_assert_neq((void *)br, (void *)old,
				      "round %d: memory of a ring closed without unregister was "
				      "handed out at once", i);
		same += (void *)br == (void *)old;
		untouched(br, snap, new_bufs, ni.mem_bytes, i);
		f.stop = true;
		pthread_join(t, NULL);
		cr_assert_eq(hugering_free_buf_ring(&B, br, WBUFS, 1), 0, "%s", hugering_last_error());
		hugering_queue_exit(&B);
		close(fds[0]);
		close(fds[1]);
	}
	return same;
}

Test(bufring, witness_ring_closed_without_unregister)
{
	struct hugering_arena *a;

	th_need_pool(SZ_2M, 4);
	a = th_new_arena();
	cr_assert_eq(witness_close_without_unregister(a, 10), 0);
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* The same in liburing's fallback memory (empty pool): reuse of the address is safe. */
Test(bufring, witness_ring_closed_without_unregister_fallback)
{
	struct th_hog hog;
	int same;

	th_exhaust(hugering_default_page_size(), &hog);
	same = witness_close_without_unregister(NULL, 10);
	cr_log_info("fallback witness: %d of 10 rounds reused the old address", same);
	th_release(&hog);
}

/*
 * The inverse: unregistered by hugering_free_buf_ring() while its ring
 * lives on with the receive still armed and data flowing, the memory is
 * handed out at once (to a buffer ring of another ring) and nothing writes it.
 */
Test(bufring, witness_free_reuses_at_once)
{
	static unsigned char old_bufs[WBUFS * BUF_SIZE], new_bufs[WBUFS * BUF_SIZE];
	static unsigned char snap[4096];
	struct hugering_arena *a;

	th_need_pool(SZ_2M, 4);
	a = th_new_arena();
	for (int i = 0; i < 10; i++) {
		struct hugering_buf_ring_info ni;
		struct io_uring_buf_ring *old, *br;
		struct io_uring A, B;
		struct flood f;
		pthread_t t;
		int fds[2];

		ring_in(a, &A);
		ring_in(a, &B);
		cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
		old = busy_inc_ring(&A, fds[0], fds[1], old_bufs);
		f = (struct flood){ .fd = fds[1] };
		cr_assert_eq(pthread_create(&t, NULL, flood, &f), 0);
		th_sleep_ms(2);
		cr_assert_eq(hugering_free_buf_ring(&A, old, WBUFS, 1), 0, "%s",
			     hugering_last_error());
		br = fresh_ring(&B, new_bufs, snap, &ni);
		cr_assert_eq(ni.mode, HUGERING_BUF_RING_HUGE, "%s", ni.fallback_reason);
		cr_assert_eq((void *)br, (void *)old, "round %d: clean memory not reused at once", i);
		untouched(br, snap, new_bufs, ni.mem_bytes, i);
		f.stop = true;
		pthread_join(t, NULL);
		cr_assert_eq(hugering_free_buf_ring(&B, br, WBUFS, 1), 0);
		hugering_queue_exit(&A);
		hugering_queue_exit(&B);
		close(fds[0]);
		close(fds[1]);
	}
	cr_assert_eq(hugering_arena_destroy(a), 0);
}

/* ------------------------------------------------------------------ */
/* Churn (issue 13 goal: 10^5 cycles, <= 1 % fallback)                 */
/* ------------------------------------------------------------------ */

/* Leave exactly @n usable 2 MiB pages of the pool (the rest held by @hog). */
static void pool_of(long n, struct th_hog *hog)
{
	long usable = 0;

	th_exhaust(SZ_2M, hog);
	for (size_t off = 0; usable < n && off < hog->len; off += SZ_2M) {
		cr_assert_eq(fallocate(hog->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)off, SZ_2M), 0);
		usable++;
	}
	cr_assert_eq(th_pool_field(SZ_2M, "free_hugepages") -
		     th_pool_field(SZ_2M, "resv_hugepages"), n);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * @cycles buffer ring setups on an 8-page pool: most freed properly (the
 * memory comes back at once), every 16th left registered while its
 * io_uring ring is closed (quarantined; the page retires once its rings
 * are gone, and the dying ring's pin is given back by the kernel later).
 * The pool never runs dry for good: at most 1 % of the setups fall back
 * to liburing's memory (hugering_buf_ring_info's mode), none fails.
 */
static void buf_churn(long cycles)
{
	struct hugering_arena_stats st;
	struct hugering_arena *a;
	struct io_uring ring;
	struct th_hog hog;
	long fallbacks = 0, closes = 0, memlock_waits = 0;
	char first[256] = "";
	double t0, dt;

	th_need_pool(SZ_2M, 8);
	pool_of(8, &hog);
	a = th_new_arena();
	ring_in(a, &ring);
	t0 = now_s();
	for (long i = 0; i < cycles; i++) {
		struct hugering_buf_ring_info info;
		struct io_uring_buf_ring *br;
		int err;

		br = hugering_setup_buf_ring(&ring, 256, 1, 0, &err);
		/*
		 * Unprivileged, the memlock charge of rings closed a moment ago
		 * is released asynchronously (as th_setup_retry says): the
		 * kernel refuses any memory, ours or liburing's, meanwhile.
		 */
		for (int w = 0; !br && err == -ENOMEM && w < 2000; w++) {
			if (!w)
				memlock_waits++;
			th_sleep_ms(1);
			br = hugering_setup_buf_ring(&ring, 256, 1, 0, &err);
		}
		cr_assert_not_null(br, "cycle %ld: %d %s", i, err, hugering_last_error());
		cr_assert_eq(hugering_buf_ring_info(&ring, 1, &info), 0);
		if (info.mode != HUGERING_BUF_RING_HUGE && !fallbacks++)
			snprintf(first, sizeof(first), "cycle %ld: %s", i, info.fallback_reason);
		if (i % 16 == 15) {
			hugering_queue_exit(&ring);	/* still registered */
			ring_in(a, &ring);
			closes++;
		} else {
			cr_assert_eq(hugering_free_buf_ring(&ring, br, 256, 1), 0, "cycle %ld: %s", i,
				     hugering_last_error());
		}
	}
	dt = now_s() - t0;
	hugering_queue_exit(&ring);
	cr_assert_eq(hugering_arena_stats(a, &st), 0);
	fprintf(stderr, "bufring churn (%s): %ld cycles (%ld ring closes without free) in %.1f s, "
		"%.0f cycles/s, %ld fallbacks%s%s; %ld memlock waits; %llu pages retired, "
		"%llu pool waits\n", geteuid() ? "unprivileged" : "root",
		cycles, closes, dt, (double)cycles / dt, fallbacks, fallbacks ? ", first: " : "",
		first, memlock_waits, (unsigned long long)st.pages_retired,
		(unsigned long long)st.pool_waits);
	cr_assert_leq(fallbacks * 100, cycles, "%ld of %ld fell back (first %s)", fallbacks,
		      cycles, first);
	cr_assert_eq(hugering_arena_destroy(a), 0);
	th_release(&hog);
}

/* 10^5 cycles take well under a second here; HUGERING_BUF_CHURN_CYCLES for more (make check-long). */
Test(bufring, churn_100000_cycles_on_8_page_pool, .timeout = 3600)
{
	const char *env = getenv("HUGERING_BUF_CHURN_CYCLES");

	buf_churn(env ? atol(env) : 100000);
}

/* ------------------------------------------------------------------ */
/* RLIMIT_MEMLOCK                                                      */
/* ------------------------------------------------------------------ */

#define FILL_RINGS 512
#define FILL_BRS 64

struct filler {
	struct io_uring rings[FILL_RINGS];
	struct io_uring_buf_ring *brs[FILL_BRS];
	int nrings, nbrs;
};

static void close_filler(struct filler *f);

/*
 * Charge this user's RLIMIT_MEMLOCK to the brim: kernel-mapped rings (two
 * pages each) until the kernel refuses one, then one-page buffer rings of
 * liburing's on the first of them until it refuses those too.  Rings closed
 * a moment ago (the library's probe, an earlier round) give their charge
 * back late: top up after a pause until nothing more fits.  False when
 * nothing is charged (a kernel before 6.14).
 */
static bool top_up(struct filler *f)
{
	int err = 0, added = 1;

	for (int pass = 0; added && pass < 20; pass++) {
		added = 0;
		if (pass)
			usleep(30000);
		while (f->nrings < FILL_RINGS && !io_uring_queue_init(8, &f->rings[f->nrings], 0))
			f->nrings++, added++;
		cr_assert_gt(f->nrings, 0, "not even one ring fits in the limit");
		while (f->nbrs < FILL_BRS &&
		       (f->brs[f->nbrs] = io_uring_setup_buf_ring(&f->rings[0], 16, 100 + f->nbrs, 0,
								  &err)))
			f->nbrs++, added++;
		if (f->nrings == FILL_RINGS || f->nbrs == FILL_BRS) {
			close_filler(f);
			return false;
		}
		cr_assert_eq(err, -ENOMEM, "filler buffer ring: %s", strerror(-err));
	}
	cr_assert_eq(added, 0, "the charge kept moving");
	return true;
}

static bool fill_memlock(struct filler *f)
{
	f->nrings = f->nbrs = 0;
	return top_up(f);
}

/*
 * Close every filler ring: their charge goes back only when the kernel's
 * asynchronous teardown ends.  liburing's buffer ring mappings are ours to
 * unmap (the kernel pins the pages until then).
 */
static void close_filler(struct filler *f)
{
	for (int i = 0; i < f->nrings; i++)
		io_uring_queue_exit(&f->rings[i]);
	for (int i = 0; i < f->nbrs; i++)
		munmap(f->brs[i], 4096);
}

/*
 * Unprivileged (root without CAP_IPC_LOCK here), the kernel charges buffer
 * rings to RLIMIT_MEMLOCK as it charges rings (6.14+).  With the limit
 * really used up, hugering_setup_buf_ring() fails -ENOMEM naming the limit
 * (not liburing's memory, which would be charged the same).  Right after
 * rings filling the limit are closed, their charge is still held for a few
 * ms: a buffer ring of liburing's set up at that moment is refused (the
 * pressure is real), and hugering_setup_buf_ring() right after it waits
 * that out and succeeds, in hugepages.
 */
Test(bufring, memlock_pressure_waits_for_dying_rings)
{
	struct rlimit rl = { .rlim_cur = 256 * 1024, .rlim_max = 256 * 1024 };
	struct hugering_buf_ring_info info;
	static struct filler f;
	struct io_uring_buf_ring *br;
	struct io_uring ring;
	char limit[32];
	int err, pressure = 0;

	th_need_pool(SZ_2M, 2);
	th_drop_ipc_lock();
	ring_up(&ring);
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0, "%s", strerror(errno));
	if (!fill_memlock(&f))
		cr_skip("this kernel charges rings or buffer rings nothing against "
			"RLIMIT_MEMLOCK (before 6.14): no pressure to wait out");
	/*
	 * Rings this process closed just before (the library's probe, on a
	 * thread that may lack CAP_IPC_LOCK too) can give their charge back
	 * after the fill: then the setup rightly succeeds; take the room and
	 * try again.
	 */
	for (int tries = 0; (br = hugering_setup_buf_ring(&ring, 16, 1, 0, &err)); tries++) {
		cr_assert_lt(tries, 5, "set up over a full RLIMIT_MEMLOCK 5 times (%d rings, %d "
			     "buffer rings filled it)", f.nrings, f.nbrs);
		cr_assert_eq(hugering_free_buf_ring(&ring, br, 16, 1), 0);
		cr_assert(top_up(&f));
	}
	cr_assert_eq(err, -ENOMEM);
	snprintf(limit, sizeof(limit), "%llu", (unsigned long long)rl.rlim_cur);
	cr_assert_not_null(strstr(hugering_last_error(), "RLIMIT_MEMLOCK"), "%s",
			   hugering_last_error());
	cr_assert_not_null(strstr(hugering_last_error(), limit), "reason lacks the limit: %s",
			   hugering_last_error());
	close_filler(&f);

	for (int round = 0; round < 5; round++) {
		struct io_uring_buf_ring *probe;
		int perr;

		/* Waits for the last round's charge to go; then fill again. */
		br = hugering_setup_buf_ring(&ring, 16, 2, 0, &err);
		cr_assert_not_null(br, "%s", hugering_last_error());
		cr_assert_eq(hugering_free_buf_ring(&ring, br, 16, 2), 0);
		cr_assert(fill_memlock(&f));
		close_filler(&f);
		probe = io_uring_setup_buf_ring(&ring, 16, 3, 0, &perr);
		if (probe)
			cr_assert_eq(io_uring_free_buf_ring(&ring, probe, 16, 3), 0);
		else
			cr_assert_eq(perr, -ENOMEM, "%s", strerror(-perr));
		pressure += !probe;
		br = hugering_setup_buf_ring(&ring, 16, 1, 0, &err);
		cr_assert_not_null(br, "round %d: %d %s", round, err, hugering_last_error());
		cr_assert_eq(hugering_buf_ring_info(&ring, 1, &info), 0);
		cr_assert_eq(info.mode, HUGERING_BUF_RING_HUGE, "%s", info.fallback_reason);
		cr_assert_eq(hugering_free_buf_ring(&ring, br, 16, 1), 0);
	}
	cr_log_info("memlock: %d of 5 rounds refused a buffer ring right after the close", pressure);
	cr_assert_gt(pressure, 0, "the dying rings' charge was never seen: nothing was waited for");
	hugering_queue_exit(&ring);
}

/* SPDX-License-Identifier: MIT */
/*
 * plain-ring: an ordinary liburing program, linked dynamically with
 * -luring and knowing nothing of hugering, for the preload test
 * (tests/test_preload.c).  It makes rings of several sizes with
 * io_uring_queue_init and io_uring_queue_init_params, runs NOPs on each,
 * destroys them with io_uring_queue_exit; one more ring from
 * io_uring_queue_init_mem in its own memory (which the preload must leave
 * alone); and two bad calls whose errors must not change under the preload.
 *
 * Per ring it prints whether its memory is the application's
 * (IORING_SETUP_NO_MMAP in ring.flags): a witness independent of the
 * preload's own report.  Exit 0 when every NOP completed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <liburing.h>

struct shape {
	unsigned sq, cq;	/* cq 0: the kernel's default */
	int use_params;		/* io_uring_queue_init_params, else io_uring_queue_init */
};

static const struct shape shapes[] = {
	{ 8, 0, 0 },
	{ 64, 0, 1 },
	{ 256, 512, 1 },
	{ 4096, 65536, 1 },
};

/* @n NOPs in batches of the SQ size; each must complete once with res 0. */
static int run_nops(struct io_uring *ring, unsigned n)
{
	unsigned done = 0;

	while (done < n) {
		unsigned batch = 0, seen = 0;
		struct io_uring_sqe *sqe;
		struct io_uring_cqe *cqe;
		int ret;

		while (done + batch < n && (sqe = io_uring_get_sqe(ring))) {
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, done + batch + 1);
			batch++;
		}
		ret = io_uring_submit_and_wait(ring, batch);
		if (ret != (int)batch) {
			fprintf(stderr, "plain-ring: submit %u NOPs: %d\n", batch, ret);
			return -1;
		}
		while (seen < batch) {
			ret = io_uring_wait_cqe(ring, &cqe);
			if (ret || cqe->res != 0 || cqe->user_data != done + seen + 1) {
				fprintf(stderr, "plain-ring: NOP %u: ret %d res %d data %llu\n",
					done + seen + 1, ret, ret ? 0 : cqe->res,
					ret ? 0ULL : (unsigned long long)cqe->user_data);
				return -1;
			}
			io_uring_cqe_seen(ring, cqe);
			seen++;
		}
		done += batch;
	}
	return 0;
}

static int make_ring(const struct shape *s, struct io_uring *ring)
{
	struct io_uring_params p;

	if (!s->use_params)
		return io_uring_queue_init(s->sq, ring, 0);
	memset(&p, 0, sizeof(p));
	if (s->cq) {
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = s->cq;
	}
	return io_uring_queue_init_params(s->sq, ring, &p);
}

static int one_shape(const struct shape *s)
{
	struct io_uring ring;
	unsigned n = s->sq * 2;
	int ret = make_ring(s, &ring);

	if (ret) {
		fprintf(stderr, "plain-ring: ring %u/%u: %s\n", s->sq, s->cq, strerror(-ret));
		return -1;
	}
	ret = run_nops(&ring, n);
	printf("ring %u/%u: sq %u cq %u nommap=%d nops=%u %s\n", s->sq, s->cq,
	       ring.sq.ring_entries, ring.cq.ring_entries,
	       !!(ring.flags & IORING_SETUP_NO_MMAP), n, ret ? "FAILED" : "ok");
	io_uring_queue_exit(&ring);
	return ret;
}

/* A ring in this program's own memory: the preload must pass it through. */
static int own_memory_ring(void)
{
	size_t len = 64 * 1024;
	void *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct io_uring_params p;
	struct io_uring ring;
	int ret;

	if (buf == MAP_FAILED)
		return -1;
	memset(&p, 0, sizeof(p));
	ret = io_uring_queue_init_mem(8, &ring, &p, buf, len);
	if (ret < 0) {
		fprintf(stderr, "plain-ring: io_uring_queue_init_mem: %s\n", strerror(-ret));
		munmap(buf, len);
		return -1;
	}
	ret = run_nops(&ring, 16);
	printf("ring mem: nommap=%d own=%d nops=16 %s\n", !!(ring.flags & IORING_SETUP_NO_MMAP),
	       ring.sq.sqes == buf, ret ? "FAILED" : "ok");
	io_uring_queue_exit(&ring);
	munmap(buf, len);
	return ret;
}

/* Errors the preload must return unchanged: 0 entries, too many without CLAMP. */
static void bad_calls(void)
{
	struct io_uring_params p;
	struct io_uring ring;

	printf("init(0) = %d\n", io_uring_queue_init(0, &ring, 0));
	memset(&p, 0, sizeof(p));
	printf("init_params(65536) = %d\n", io_uring_queue_init_params(65536, &ring, &p));
}

int main(void)
{
	int failed = 0;

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		failed |= one_shape(&shapes[i]);
	failed |= own_memory_ring();
	bad_calls();
	printf("plain-ring: %s\n", failed ? "FAILED" : "all NOPs completed");
	return failed ? 1 : 0;
}

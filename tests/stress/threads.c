/* SPDX-License-Identifier: MIT */
/*
 * Threads against shared state, as a plain program so that ThreadSanitizer
 * can run it (Criterion's process arena does not start under TSan):
 * 4 threads x 1,500 create/NOP/destroy cycles of mixed ring sizes in one
 * arena, 4 threads allocating and freeing regions, 8 threads probing.
 * Prints "N passed, N failed" and exits non-zero on any failure.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hugering.h>

#define THREADS 4
#define CYCLES 1500

static int passed, failed;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "PASS" : "FAIL", what);
	if (ok)
		passed++;
	else
		failed++;
}

struct worker {
	struct hugering_arena *a;
	int id;
	long bad;
};

static int nops(struct io_uring *ring, uint64_t tag)
{
	unsigned n = ring->sq.ring_entries;

	for (unsigned k = 0; k < n; k++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

		io_uring_prep_nop(sqe);
		sqe->user_data = tag | k;
	}
	if (io_uring_submit_and_wait(ring, n) != (int)n)
		return -1;
	for (unsigned k = 0; k < n; k++) {
		struct io_uring_cqe *cqe;

		if (io_uring_peek_cqe(ring, &cqe) || cqe->user_data != (tag | k))
			return -1;
		io_uring_cqe_seen(ring, cqe);
	}
	return 0;
}

static void *ring_worker(void *arg)
{
	static const unsigned shapes[][3] = {
		{ 8, 0, 0 }, { 64, 0, 0 }, { 256, 512, 0 }, { 1024, 4096, 0 },
		{ 2048, 8192, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN },
	};
	struct worker *w = arg;
	unsigned seed = (unsigned)w->id * 2654435761u;

	for (int i = 0; i < CYCLES; i++) {
		const unsigned *s = shapes[rand_r(&seed) % 5];
		struct io_uring_params p = { .flags = s[2] };
		struct hugering_init_opts o = { .arena = w->a, .numa_node = -1,
						.policy = HUGERING_POLICY_NOMMAP };
		struct io_uring ring;

		if (s[1]) {
			p.flags |= IORING_SETUP_CQSIZE;
			p.cq_entries = s[1];
		}
		if (hugering_queue_init_opts(s[0], &ring, &p, &o)) {
			fprintf(stderr, "thread %d: %s\n", w->id, hugering_last_error());
			w->bad++;
			continue;
		}
		w->bad += nops(&ring, (uint64_t)w->id << 32) != 0;
		hugering_queue_exit(&ring);
	}
	return NULL;
}

static void *region_worker(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 300; i++) {
		struct hugering_region_opts o = {
			.size = (size_t)(1 + i % 3) << 20, .page_size = 2 << 20, .numa_node = -1,
			.flags = HUGERING_REGION_CONTIG | HUGERING_REGION_FALLBACK,
		};
		struct hugering_region *r;

		if (hugering_region_alloc(&o, &r)) {
			w->bad++;
			continue;
		}
		memset(hugering_region_addr(r), w->id, o.size);
		hugering_region_free(r);
	}
	return NULL;
}

static void *probe_worker(void *arg)
{
	struct hugering_kernel_caps *c = arg;

	hugering_probe_kernel(c);
	hugering_default_arena();
	return NULL;
}

static long run(void *(*fn)(void *), struct hugering_arena *a)
{
	struct worker w[THREADS];
	pthread_t t[THREADS];
	long bad = 0;

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .a = a, .id = i + 1 };
		pthread_create(&t[i], NULL, fn, &w[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		bad += w[i].bad;
	}
	return bad;
}

int main(void)
{
	struct hugering_arena_opts ao = { .numa_node = -1 };
	struct hugering_kernel_caps caps[8];
	struct hugering_arena_stats st;
	struct hugering_arena *a;
	pthread_t t[8];

	for (int i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, probe_worker, &caps[i]);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	check(!memcmp(&caps[0], &caps[7], sizeof(caps[0])), "8 threads probe once, same answer");

	if (hugering_arena_create(&ao, &a)) {
		check(0, "arena create");
		return 1;
	}
	check(run(ring_worker, a) == 0, "4 threads x 1500 ring cycles, mixed sizes");
	hugering_arena_stats(a, &st);
	check(st.rings_live == 0, "no ring left live");
	check(hugering_arena_destroy(a) == 0, "arena destroyed");
	check(run(region_worker, NULL) == 0, "4 threads x 300 region cycles");
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}

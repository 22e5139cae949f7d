/* SPDX-License-Identifier: MIT */
/*
 * hugering-bench: io_uring ring memory modes compared side by side, in one
 * run on one machine, as ratios against the kernel-mapped ring.
 *
 * Each mode on each shape runs in a child process of its own (a "cell"):
 * liburing's own NO_MMAP allocation never unmaps its hugepages, so it would
 * drain the pool for every mode after it; between cells the runner waits for
 * the pool to refill (rings die asynchronously).  A cell measures, in order:
 *   - NOP throughput on one warm ring at batch 1, 32, 256, and a sweep that
 *     fills the whole SQ each round (every SQE and CQE slot is touched);
 *   - create+destroy cycles up to the churn cap, each timed: median, p99,
 *     cycles per second, and how many completed before the first failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hugering.h>

#include "../lib/compat.h"
#include "bench.h"
#include "buffers.h"
#include "report.h"

#define SZ_1G (1UL << 30)
#define DEFER (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)

static const struct mode_def modes[] = {
	{ "kernel", KIND_KERNEL, false, true },
	{ "liburing-nommap", KIND_LIBURING_NOMMAP, false, true },
	{ "user-4k", KIND_USER_4K, false, true },
	{ "hugering", KIND_HUGERING, false, true },
	{ "hugering-1g", KIND_HUGERING_1G, false, true },
	{ "floor", KIND_FLOOR, false, true },
	{ "kernel-sqpoll", KIND_KERNEL, true, false },
	{ "hugering-sqpoll", KIND_HUGERING, true, false },
	{ "hugering-prepare", KIND_HUGERING_PREP, false, false },
	{ "hugering-pool", KIND_HUGERING_POOL, false, false },
	/* Last, not a --modes choice: the drop-in of the empty-pool phase. */
	{ "hugering-auto", KIND_HUGERING_AUTO, false, false },
};
#define NMODES (sizeof(modes) / sizeof(modes[0]) - 1)
#define MODE_AUTO ((int)NMODES)

static const struct shape_def shapes[] = {
	{ "small", 64, 128, 0 },
	{ "medium", 256, 512, 0 },
	{ "large", 4096, 65536, 0 },
	{ "max", 32768, 65536, 0 },
	{ "max-sqe128", 32768, 65536, IORING_SETUP_SQE128 },
	{ "max-cqe32", 32768, 65536, IORING_SETUP_CQE32 },
};
#define NSHAPES (sizeof(shapes) / sizeof(shapes[0]))

struct options {
	bool mode_on[NMODES], shape_on[NSHAPES];
	long iterations;
	double nop_seconds;
	int cpu;
	unsigned flags;		/* DEFER or 0 */
	bool json, csv, quick, no_compact, no_empty_pool, big_map;
	bool buffers, buffers_only;	/* the buffer section (buffers.c); alone */
	struct buf_opts buf;
	const char *plot;
};

/* ------------------------------------------------------------------ */
/* Rings of each mode                                                  */
/* ------------------------------------------------------------------ */

/* What a cell keeps between creating a ring and destroying it. */
struct maker {
	const struct mode_def *m;
	struct hugering_arena *arena;	/* hugering-1g */
	void *buf;			/* user-4k */
	size_t buf_len;
	size_t ring_len;		/* user-4k: computed once, outside the timed cycles */
};

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/*
 * With --cpu the SQ threads of SQPOLL modes would share the submitter's CPU
 * (they inherit its affinity): they get another CPU of the original set.
 * Set once before any measurement.
 */
static int sqpoll_cpu = -1;

static unsigned cell_flags(const struct mode_def *m, const struct shape_def *s, unsigned flags)
{
	flags |= s->flags;
	if (m->sqpoll)	/* the kernel refuses SQPOLL with DEFER_TASKRUN */
		flags = (flags & ~IORING_SETUP_DEFER_TASKRUN) | IORING_SETUP_SQPOLL;
	return flags;
}

/*
 * The layout of a shape's ring memory as the factory makes it: NO_SQARRAY
 * where the running liburing knows it (2.6+; 2.5 keeps an SQ array).
 */
static int shape_layout(unsigned sq, const struct io_uring_params *p,
			struct hugering_layout *lay)
{
	struct io_uring_params q = *p;

	q.flags |= IORING_SETUP_NO_MMAP;
	if (!io_uring_check_version(2, 6))
		q.flags |= IORING_SETUP_NO_SQARRAY;
	return hugering_ring_layout(sq, &q, lay);
}

/* Bytes of ring memory a shape needs (the same in every mode). */
static size_t ring_bytes(unsigned sq, const struct io_uring_params *p)
{
	struct hugering_layout lay;

	return shape_layout(sq, p, &lay) ? 0 : lay.total_bytes;
}

static int user_4k_ring(struct maker *mk, unsigned sq, struct io_uring *ring,
			struct io_uring_params *p)
{
	size_t len;
	int ret;

	if (!mk->ring_len) {
		struct hugering_layout lay;

		if (shape_layout(sq, p, &lay))
			return -EINVAL;
		/* SQE128 before liburing 2.9: its SQEs would overlap the rings. */
		if (!lay.liburing_ok)
			return -ENOTSUP;
		mk->ring_len = lay.total_bytes;
	}
	len = mk->ring_len;
	/* Fresh base pages each time: the dying ring keeps the old ones pinned. */
	mk->buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mk->buf == MAP_FAILED)
		return -errno;
	mk->buf_len = len;
	ret = io_uring_queue_init_mem(sq, ring, p, mk->buf, len);
	if (ret < 0) {
		munmap(mk->buf, len);
		return ret;
	}
	return 0;
}

static int floor_ring(struct io_uring *ring)
{
	struct io_uring_params p = { 0 };
	int fd = io_uring_setup(1, &p);

	if (fd < 0)
		return fd;
	ring->ring_fd = fd;
	return 0;
}

static int make_ring(struct maker *mk, unsigned sq, unsigned cq, unsigned flags,
		     struct io_uring *ring)
{
	struct io_uring_params p = { .flags = flags | IORING_SETUP_CQSIZE, .cq_entries = cq };
	struct hugering_init_opts o = { .arena = mk->arena, .numa_node = -1,
					.policy = HUGERING_POLICY_NOMMAP };

	if (flags & IORING_SETUP_SQPOLL) {
		p.sq_thread_idle = 1;	/* ms: idle rings of the other modes sleep */
		if (sqpoll_cpu >= 0) {
			p.flags |= IORING_SETUP_SQ_AFF;
			p.sq_thread_cpu = (unsigned)sqpoll_cpu;
		}
	}
	switch (mk->m->kind) {
	case KIND_KERNEL:
		return io_uring_queue_init_params(sq, ring, &p);
	case KIND_LIBURING_NOMMAP:
		p.flags |= IORING_SETUP_NO_MMAP;
		return io_uring_queue_init_params(sq, ring, &p);
	case KIND_USER_4K:
		return user_4k_ring(mk, sq, ring, &p);
	case KIND_HUGERING:
	case KIND_HUGERING_1G:
	case KIND_HUGERING_PREP:
		return hugering_queue_init_opts(sq, ring, &p, &o);
	case KIND_HUGERING_POOL:
		o.flags = HUGERING_INIT_POOLED;
		return hugering_queue_init_opts(sq, ring, &p, &o);
	case KIND_HUGERING_AUTO:
		/* hugering_queue_init_params as it behaves without HUGERING_MODE */
		o.policy = HUGERING_POLICY_AUTO;
		return hugering_queue_init_opts(sq, ring, &p, &o);
	case KIND_FLOOR:
		return floor_ring(ring);
	}
	return -EINVAL;
}

static void drop_ring(struct maker *mk, struct io_uring *ring)
{
	switch (mk->m->kind) {
	case KIND_HUGERING:
	case KIND_HUGERING_1G:
	case KIND_HUGERING_AUTO:
	case KIND_HUGERING_PREP:
	case KIND_HUGERING_POOL:
		hugering_queue_exit(ring);
		break;
	case KIND_FLOOR:
		close(ring->ring_fd);
		break;
	case KIND_USER_4K:
		hr_queue_exit_app_mem(ring);	/* liburing < 2.8 would unmap it */
		break;
	default:
		io_uring_queue_exit(ring);
	}
	if (mk->buf) {
		munmap(mk->buf, mk->buf_len);
		mk->buf = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* Measurements                                                        */
/* ------------------------------------------------------------------ */

/*
 * An SQ thread posts a batch's CQEs before it moves the SQ head past it, so
 * the SQ can look full when every completion is in.  The kernel judges room
 * by the published tail, liburing by its local one: publish what is
 * prepared, then wait for room.  NULL if none comes.
 */
static struct io_uring_sqe *sqpoll_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe;

	if (io_uring_submit(ring) < 0)
		return NULL;
	for (int tries = 0; !(sqe = io_uring_get_sqe(ring)) && tries < 20000; tries++) {
		int ret = io_uring_sqring_wait(ring);

		if (ret < 0 && ret != -EINTR)
			return NULL;
		if (!io_uring_sq_space_left(ring))
			usleep(1000);
	}
	return sqe;
}

/* Submit @batch NOPs and reap them, for @secs; NOPs per second / 1e6. */
static double nop_mops(struct io_uring *ring, unsigned batch, double secs)
{
	double t0 = now_us(), end = t0 + secs * 1e6, t;
	long ops = 0;

	do {
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (!sqe && (ring->flags & IORING_SETUP_SQPOLL))
				sqe = sqpoll_sqe(ring);
			if (!sqe)
				return -1;
			io_uring_prep_nop(sqe);
		}
		if (io_uring_submit_and_wait(ring, batch) < 0)
			return -1;
		while (io_uring_cq_ready(ring) < batch) {
			struct io_uring_cqe *cqe;

			if (io_uring_wait_cqe_nr(ring, &cqe, batch))
				return -1;
		}
		io_uring_cq_advance(ring, batch);
		ops += batch;
		t = now_us();
	} while (t < end);
	return ops / (t - t0);
}

/* A dTLB read-miss counter for this thread, user and kernel; -1 without a PMU. */
static int dtlb_counter(void)
{
	struct perf_event_attr a = {
		.type = PERF_TYPE_HW_CACHE,
		.size = sizeof(a),
		.config = PERF_COUNT_HW_CACHE_DTLB | (PERF_COUNT_HW_CACHE_OP_READ << 8) |
			  (PERF_COUNT_HW_CACHE_RESULT_MISS << 16),
		.disabled = 1,
	};

	return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
}

static bool pmu_available(void)
{
	int fd = dtlb_counter();

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median of the @n values >= 0 in @v (sorted in place); -1 if none. */
static double median_of(double *v, int n)
{
	int first = 0, k;

	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	while (first < n && v[first] < 0)
		first++;	/* failed slices */
	k = n - first;
	if (!k)
		return -1;
	return k % 2 ? v[first + k / 2] : (v[first + k / 2 - 1] + v[first + k / 2]) / 2;
}

static long pool_in_use(size_t ps)
{
	struct hugering_pool p;

	if (!ps || hugering_pool_get(ps, -1, &p))
		return 0;
	return p.total - p.free;
}

static bool is_hugering(const struct mode_def *m)
{
	return m->kind == KIND_HUGERING || m->kind == KIND_HUGERING_1G ||
	       m->kind == KIND_HUGERING_AUTO || m->kind == KIND_HUGERING_PREP ||
	       m->kind == KIND_HUGERING_POOL;
}

static void set_error(struct cell *c, const struct mode_def *m, const char *what, int err)
{
	const char *why = is_hugering(m) ? hugering_last_error() : strerror(-err);

	snprintf(c->error, sizeof(c->error), "%s: %s", what, why && *why ? why : strerror(-err));
}

static int open_maker(struct maker *mk, struct cell *c)
{
	struct hugering_arena_opts ao = { .page_size = SZ_1G, .numa_node = -1 };
	struct hugering_pool p;
	int ret;

	if (mk->m->kind == KIND_HUGERING_PREP) {
		struct hugering_arena_opts prep = { .flags = HUGERING_ARENA_PREPARE };

		ret = hugering_arena_create(&prep, &mk->arena);
		if (ret)
			set_error(c, mk->m, "arena", ret);
		return ret;
	}
	if (mk->m->kind != KIND_HUGERING_1G)
		return 0;
	if (hugering_pool_get(SZ_1G, -1, &p) || p.total <= 0) {
		snprintf(c->error, sizeof(c->error), "no 1 GiB hugepages reserved (echo 1 | sudo "
			 "tee /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages)");
		return -ENOMEM;
	}
	ret = hugering_arena_create(&ao, &mk->arena);
	if (ret)
		set_error(c, mk->m, "1 GiB arena", ret);
	return ret;
}

/* ------------------------------------------------------------------ */
/* create+destroy                                                      */
/* ------------------------------------------------------------------ */

struct churn {
	struct maker mk;
	const struct shape_def *s;
	struct cell *c;
	double *t;		/* each completed cycle, in us */
	double busy_us;		/* time spent in cycles (not waiting for a turn) */
	double cpu0_us;		/* process CPU time when the cycles began */
	long before;		/* pool pages in use at the start */
	size_t ps;
	bool failed;
};

/*
 * The empty-pool phase asserts what every auto ring got: kernel-mapped
 * because the pool had no page (ENOMEM).  The cell keeps the first ring's
 * mode, or the first that got anything else, and counts those.  Returns
 * the us this took, which are not part of the cycle.
 */
static double note_mode(struct cell *c, const struct io_uring *ring)
{
	double t0 = now_us();
	struct hugering_ring_info in;
	char why[192];
	bool expected;

	if (hugering_ring_info(ring, &in)) {
		memset(&in, 0, sizeof(in));
		snprintf(why, sizeof(why), "hugering_ring_info: %s", hugering_last_error());
		in.fallback_reason = why;
	}
	expected = in.mode == HUGERING_MODE_KERNEL && in.fallback_errno == ENOMEM;
	if (!c->ring_mode || (!expected && !c->rings_unexpected)) {
		c->ring_mode = in.mode;
		c->fallback_errno = in.fallback_errno;
		snprintf(c->fallback_reason, sizeof(c->fallback_reason), "%s", in.fallback_reason);
	}
	c->rings_unexpected += !expected;
	return now_us() - t0;
}

/*
 * One untimed cycle first: what a process pays once (hugering's arena and
 * its first page, a whole 1 GiB page for hugering-1g) is not recycling.
 */
static int warm_up(struct churn *ch)
{
	struct io_uring ring;
	int ret = make_ring(&ch->mk, ch->s->sq, ch->s->cq, ch->c->flags, &ring);

	if (ret) {
		set_error(ch->c, ch->mk.m, "create failed after 0 cycles", ret);
		ch->failed = true;
		return 0;	/* the churn reports 0 cycles */
	}
	if (ch->mk.m->kind == KIND_HUGERING_AUTO)
		note_mode(ch->c, &ring);
	drop_ring(&ch->mk, &ring);
	return 0;
}

/*
 * CPU time of every thread of this process, user and system: a mode that
 * moves work to a thread of its own (hugering-prepare) pays for it here.
 * The kernel's own workers (a ring's teardown) are not counted, for any mode.
 */
static double process_cpu_us(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return -1;
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

static int churn_open(struct churn *ch, struct cell *c)
{
	const struct mode_def *m = &modes[c->mode];
	int ret;

	memset(ch, 0, sizeof(*ch));
	ch->c = c;
	ch->mk.m = m;
	ch->s = &shapes[c->shape < 0 ? 0 : c->shape];
	ch->ps = m->kind == KIND_HUGERING_1G ? SZ_1G : hugering_default_page_size();
	ch->t = calloc((size_t)c->cap, sizeof(*ch->t));
	if (!ch->t) {
		snprintf(c->error, sizeof(c->error), "out of memory for %ld samples", c->cap);
		return -ENOMEM;
	}
	if (open_maker(&ch->mk, c)) {
		free(ch->t);
		return -1;
	}
	ch->before = pool_in_use(ch->ps);
	ret = warm_up(ch);
	ch->cpu0_us = process_cpu_us();
	return ret;
}

/* Up to @k more cycles, stopping at the first failure; false once failed. */
static bool churn_slice(struct churn *ch, long k)
{
	struct cell *c = ch->c;
	long first = c->cycles;
	double start = now_us(), aside_all = 0;

	for (long i = 0; i < k && c->cycles < c->cap && !ch->failed; i++) {
		struct io_uring ring;
		double t0 = now_us(), aside = 0;
		int ret = make_ring(&ch->mk, ch->s->sq, ch->s->cq, c->flags, &ring);

		if (ret) {
			char what[64];

			snprintf(what, sizeof(what), "create failed after %ld cycles", c->cycles);
			set_error(c, ch->mk.m, what, ret);
			ch->failed = true;
			break;
		}
		if (ch->mk.m->kind == KIND_HUGERING_AUTO)
			aside = note_mode(c, &ring);
		drop_ring(&ch->mk, &ring);
		ch->t[c->cycles++] = now_us() - t0 - aside;
		aside_all += aside;
	}
	ch->busy_us += now_us() - start - aside_all;
	/* In place: only churn_close reads ch->t again, and it sorts it all. */
	if (c->cycles > first && c->nrounds < MAX_ROUNDS)
		c->cd_rounds[c->nrounds++] = median_of(ch->t + first, (int)(c->cycles - first));
	return !ch->failed;
}

/*
 * Hugepages the mode holds after its churn.  Modes take turns, so the pool
 * counters mix them: hugering's come from its arena; liburing's own
 * allocation runs alone, its pool delta is its own; the rest use none.
 */
static long pages_used(struct churn *ch)
{
	struct hugering_arena_stats st;
	struct hugering_arena *a;

	switch (ch->mk.m->kind) {
	case KIND_HUGERING:
	case KIND_HUGERING_1G:
	case KIND_HUGERING_AUTO:
	case KIND_HUGERING_PREP:
	case KIND_HUGERING_POOL:
		a = ch->mk.arena ? ch->mk.arena : hugering_default_arena();
		return a && !hugering_arena_stats(a, &st) ? st.pages_held : 0;
	case KIND_LIBURING_NOMMAP:
		return pool_in_use(ch->ps) - ch->before;
	default:
		return 0;
	}
}

static void churn_close(struct churn *ch)
{
	struct cell *c = ch->c;

	c->hugepages_used = pages_used(ch);
	if (ch->mk.m->kind == KIND_HUGERING_AUTO) {
		struct hugering_arena_stats st;

		if (!hugering_arena_stats(hugering_default_arena(), &st))
			c->pool_waits = (long long)st.pool_waits;
	}
	if (c->cycles) {
		double cpu = process_cpu_us();

		if (cpu >= 0 && ch->cpu0_us >= 0)
			c->cpu_us = (cpu - ch->cpu0_us) / (double)c->cycles;
		c->cycles_per_s = c->cycles / (ch->busy_us / 1e6);
		qsort(ch->t, (size_t)c->cycles, sizeof(*ch->t), cmp_double);
		c->cd_median_us = ch->t[c->cycles / 2];
		c->cd_p99_us = ch->t[c->cycles * 99 / 100];
	}
	free(ch->t);
	hugering_arena_destroy(ch->mk.arena);
}

/* A mode alone: all its cycles in one go. */
static void churn_alone(const struct options *o, struct cell **cs, int n)
{
	struct churn ch;

	(void)o;
	for (int i = 0; i < n; i++) {
		if (churn_open(&ch, cs[i]))
			continue;
		churn_slice(&ch, cs[i]->cap);
		churn_close(&ch);
	}
}

/*
 * A worker process for one mode: runs a slice of cycles each time it is
 * told how many (0: stop), answers 0 (fine) or 1 (failed), and at the end
 * sends its cell.
 */
static void churn_worker(struct cell *c, int cmd, int res)
{
	struct churn ch;
	bool ok = !churn_open(&ch, c), opened = ok;
	long k;

	while (read(cmd, &k, sizeof(k)) == sizeof(k) && k > 0) {
		char st;

		ok = ok && churn_slice(&ch, k);
		st = ok ? 0 : 1;
		if (write(res, &st, 1) != 1)
			break;
	}
	if (opened)
		churn_close(&ch);
	_exit(write(res, c, sizeof(*c)) != sizeof(*c));
}

/*
 * NOP throughput of every mode on one shape, in one process: one warm ring
 * per mode, measured in short slices that take turns (the order rotates
 * each round), so that drift of a shared machine hits every mode alike.
 * Each figure is the median of its slices.
 */
#define MAX_RINGS 16
#define NTESTS (NBATCH + 1)	/* the batches, then the sweep */
/*
 * Rings per mode, used in turn: where a ring's memory lands physically
 * (cache colouring) moves a sweep by up to 10% run to run, in every mode.
 */

struct nop_run {
	struct maker mk[MAX_RINGS][NOP_COPIES];
	struct io_uring ring[MAX_RINGS][NOP_COPIES];
	int copies[MAX_RINGS];	/* rings made for the mode; 0: none */
	double slice[NTESTS][MAX_RINGS][MAX_ROUNDS];
	long long misses[MAX_RINGS];
	double sweep_us[MAX_RINGS];
};

/* The kernel-mapped ring this one is compared with, in the group. */
static int peer_of(struct cell **cs, int n, int i)
{
	for (int k = 0; k < n; k++)
		if (is_peer_of(&modes[cs[k]->mode], &modes[cs[i]->mode]))
			return k;
	return -1;
}

/*
 * Median over rounds of @num[r] / @den[r] where both were measured; -1 if
 * none, or with @need_all if any round is missing.
 */
static double paired_median(const double *num, const double *den, int rounds, bool need_all)
{
	double x[MAX_ROUNDS];
	int nx = 0;

	for (int r = 0; r < rounds; r++)
		if (num[r] > 0 && den[r] > 0)
			x[nx++] = num[r] / den[r];
	return nx && (!need_all || nx == rounds) ? median_of(x, nx) : -1;
}

/* Before the medians sort the slices: ratios of slices of the same round. */
static void paired_ratios(struct nop_run *nr, struct cell **cs, int n, int test, int rounds)
{
	for (int i = 0; i < n; i++) {
		int k = peer_of(cs, n, i);

		cs[i]->nop_x[test] = k < 0 ? -1 : paired_median(nr->slice[test][i],
							       nr->slice[test][k], rounds, true);
	}
}

static void nop_slices(const struct options *o, struct nop_run *nr, struct cell **cs, int n,
		       int test, int rounds)
{
	double secs = o->nop_seconds / rounds;

	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < n; k++) {
			int i = (k + r) % n;
			struct io_uring *ring = &nr->ring[i][nr->copies[i] ? r % nr->copies[i] : 0];
			unsigned sq = ring->sq.ring_entries;
			unsigned batch = test < NBATCH ? batches[test] : sq;
			int fd;
			long long m = 0;
			double t0 = now_us();

			if (!nr->copies[i] || batch > sq) {
				nr->slice[test][i][r] = -1;
				continue;
			}
			fd = test == NBATCH ? dtlb_counter() : -1;
			if (fd >= 0)
				ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
			nr->slice[test][i][r] = nop_mops(ring, batch, secs);
			if (fd >= 0 && read(fd, &m, sizeof(m)) == sizeof(m)) {
				nr->misses[i] += m;
				nr->sweep_us[i] += now_us() - t0;
			}
			if (fd >= 0)
				close(fd);
		}
	}
	paired_ratios(nr, cs, n, test, rounds);
	for (int i = 0; i < n; i++) {
		double v = nr->slice[test][i][0] < 0 ? -1 : median_of(nr->slice[test][i], rounds);

		if (test < NBATCH)
			cs[i]->nop_mops[test] = v;
		else
			cs[i]->sweep_mops = v;
		if (test == NBATCH && nr->sweep_us[i] > 0 && v > 0)
			cs[i]->dtlb_per_op = nr->misses[i] / (v * nr->sweep_us[i]);
	}
}

/*
 * Ring @k of every mode, the first rings of all modes before any second
 * one: where memory is short (RLIMIT_MEMLOCK unprivileged) the spare copies
 * are what is missing.  Only a failure of a mode's first ring is its error.
 */
static void make_copies(struct nop_run *nr, struct cell **cs, int n, int k)
{
	for (int i = 0; i < n && i < MAX_RINGS; i++) {
		struct cell *c = cs[i];
		int ret;

		if (!k) {
			nr->mk[i][0].m = &modes[c->mode];
			if (open_maker(&nr->mk[i][0], c))
				continue;
		} else if (nr->copies[i] < k) {
			continue;	/* an earlier one failed */
		}
		nr->mk[i][k] = nr->mk[i][0];	/* the same arena, a buffer of its own */
		nr->mk[i][k].buf = NULL;
		ret = make_ring(&nr->mk[i][k], c->sq, c->cq, c->flags, &nr->ring[i][k]);
		if (!ret)
			nr->copies[i]++;
		else if (!k)
			set_error(c, nr->mk[i][0].m, "create failed", ret);
	}
}

static void run_nops(const struct options *o, struct cell **cs, int n)
{
	struct nop_run *nr = calloc(1, sizeof(*nr));
	int rounds = nop_rounds(o->quick);

	if (!nr)
		return;
	for (int k = 0; k < NOP_COPIES; k++)
		make_copies(nr, cs, n, k);
	for (int t = 0; t < NTESTS; t++)
		nop_slices(o, nr, cs, n, t, rounds);
	for (int i = 0; i < n && i < MAX_RINGS; i++) {
		for (int k = 0; k < nr->copies[i]; k++)
			drop_ring(&nr->mk[i][k], &nr->ring[i][k]);
		hugering_arena_destroy(nr->mk[i][0].arena);
	}
	free(nr);
}

/* ------------------------------------------------------------------ */
/* Running cells in children                                           */
/* ------------------------------------------------------------------ */

/* Dying rings of the last cell give their hugepages back within ms. */
static void settle_pool(void)
{
	size_t sizes[] = { hugering_default_page_size(), SZ_1G };

	for (int i = 0; i < 300; i++) {
		bool full = true;

		for (size_t k = 0; k < 2; k++) {
			struct hugering_pool p;

			if (sizes[k] && !hugering_pool_get(sizes[k], -1, &p) && p.free < p.total)
				full = false;
		}
		if (full)
			return;
		usleep(10000);
	}
}

typedef void (*cell_fn)(const struct options *o, struct cell **cs, int n);

/* @fn on @cs in a child process; the cells come back through a pipe. */
static void run_isolated(const struct options *o, struct cell **cs, int n, cell_fn fn)
{
	int fds[2], got = 0;
	pid_t pid;

	if (pipe(fds)) {
		for (int i = 0; i < n; i++)
			snprintf(cs[i]->error, sizeof(cs[i]->error), "pipe: %s", strerror(errno));
		return;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		bool ok = true;

		close(fds[0]);
		fn(o, cs, n);
		for (int i = 0; i < n; i++)
			ok &= write(fds[1], cs[i], sizeof(*cs[i])) == sizeof(*cs[i]);
		_exit(!ok);
	}
	close(fds[1]);
	for (; pid > 0 && got < n; got++) {
		struct cell r;

		if (read(fds[0], &r, sizeof(r)) != sizeof(r))
			break;
		*cs[got] = r;
	}
	for (int i = got; i < n; i++)
		snprintf(cs[i]->error, sizeof(cs[i]->error), "the measuring process failed (%s)",
			 pid < 0 ? strerror(errno) : "died");
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	settle_pool();
}

static long churn_cap(const struct options *o)
{
	struct hugering_pool p;

	/* Past the whole 2 MiB pool, so a mode that leaks a page per ring shows it. */
	if (!hugering_pool_get(hugering_default_page_size(), -1, &p) &&
	    p.total + 64 > o->iterations)
		return p.total + 64;
	return o->iterations;
}

static void init_cell(const struct options *o, int m, int s, long cap, struct cell *c)
{
	memset(c, 0, sizeof(*c));
	c->mode = m;
	c->shape = s;
	c->cap = modes[m].kind == KIND_FLOOR ? o->iterations : cap;
	c->sq = modes[m].kind == KIND_FLOOR ? 1 : shapes[s].sq;
	c->cq = modes[m].kind == KIND_FLOOR ? 2 : shapes[s].cq;
	c->flags = modes[m].kind == KIND_FLOOR ? 0 : cell_flags(&modes[m], &shapes[s], o->flags);
	for (int b = 0; b < NBATCH; b++)
		c->nop_mops[b] = -1;
	for (int b = 0; b <= NBATCH; b++)
		c->nop_x[b] = -1;
	c->cd_x = -1;
	c->pool_waits = -1;
	c->cd_median_us = c->cd_p99_us = c->cycles_per_s = -1;	/* until a cycle ran */
	c->cpu_us = -1;
	c->sweep_mops = -1;
	c->dtlb_per_op = -1;
	if (modes[m].kind != KIND_FLOOR) {
		struct io_uring_params p = { .flags = c->flags | IORING_SETUP_CQSIZE,
					     .cq_entries = c->cq };

		c->ring_bytes = ring_bytes(c->sq, &p);
	}
}

/* The floor runs once (shape index -1); every other mode on every shape. */
static int plan(const struct options *o, struct cell **out)
{
	long cap = churn_cap(o);
	struct cell *cells = calloc(NMODES * NSHAPES + 1, sizeof(*cells));
	int n = 0;

	if (!cells)
		return -ENOMEM;
	for (size_t m = 0; m < NMODES; m++)
		if (o->mode_on[m] && modes[m].kind == KIND_FLOOR)
			init_cell(o, (int)m, -1, cap, &cells[n++]);
	for (size_t s = 0; s < NSHAPES; s++)
		for (size_t m = 0; m < NMODES; m++)
			if (o->shape_on[s] && o->mode_on[m] && modes[m].kind != KIND_FLOOR)
				init_cell(o, (int)m, (int)s, cap, &cells[n++]);
	*out = cells;
	return n;
}

struct worker {
	pid_t pid;
	int cmd, res;
	bool alive;
};

static int start_worker(struct cell *c, struct worker *w)
{
	int cmd[2], res[2];

	*w = (struct worker){ .pid = -1, .cmd = -1, .res = -1 };
	if (pipe(cmd))
		return -errno;
	if (pipe(res)) {
		close(cmd[0]);
		close(cmd[1]);
		return -errno;
	}
	fflush(NULL);
	w->pid = fork();
	if (w->pid == 0) {
		close(cmd[1]);
		close(res[0]);
		churn_worker(c, cmd[0], res[1]);
	}
	close(cmd[0]);
	close(res[1]);
	if (w->pid < 0) {
		int err = -errno;

		close(cmd[1]);
		close(res[0]);
		return err;
	}
	w->cmd = cmd[1];
	w->res = res[0];
	w->alive = true;
	return 0;
}

/* Tell @w to run @k cycles; false once it failed or died. */
static bool turn(struct worker *w, long k)
{
	char st = 1;

	if (write(w->cmd, &k, sizeof(k)) != sizeof(k) || read(w->res, &st, 1) != 1)
		return false;
	return st == 0;
}

static void finish_worker(struct worker *w, struct cell *c)
{
	long stop = 0;
	struct cell r;

	if (w->pid <= 0) {
		snprintf(c->error, sizeof(c->error), "could not start the measuring process");
		return;
	}
	if (write(w->cmd, &stop, sizeof(stop)) == sizeof(stop) &&
	    read(w->res, &r, sizeof(r)) == sizeof(r))
		*c = r;
	else
		snprintf(c->error, sizeof(c->error), "the measuring process died");
	close(w->cmd);
	close(w->res);
	waitpid(w->pid, NULL, 0);
}

/* kernel's round median / this mode's, median over the rounds both ran. */
static void paired_cd(struct cell **cs, int n)
{
	for (int i = 0; i < n; i++) {
		int k = peer_of(cs, n, i);
		int rounds = k < 0 ? 0 : cs[i]->nrounds < cs[k]->nrounds ? cs[i]->nrounds
									: cs[k]->nrounds;

		cs[i]->cd_x = k < 0 ? -1 : paired_median(cs[k]->cd_rounds, cs[i]->cd_rounds, rounds,
							 false);
	}
}

/*
 * create+destroy of several modes, one process each, taking turns in
 * rounds (the order rotates): a slow phase of the machine hits them alike.
 */
static void churn_turns(const struct options *o, struct cell **cs, int n)
{
	struct worker w[MAX_RINGS];
	int rounds = o->quick ? 12 : 32;
	long k = (cs[0]->cap + rounds - 1) / rounds;

	for (int i = 0; i < n; i++)
		start_worker(cs[i], &w[i]);
	for (int r = 0; r < rounds; r++)
		for (int j = 0; j < n; j++) {
			struct worker *x = &w[(j + r) % n];

			if (x->alive)
				x->alive = turn(x, k);
		}
	for (int i = 0; i < n; i++)
		finish_worker(&w[i], cs[i]);
	paired_cd(cs, n);
}

static void churn_interleaved(const struct options *o, struct cell **cs, int n)
{
	churn_turns(o, cs, n);
	settle_pool();
}

static void progress(int done, int total, const char *what, const char *shape)
{
	fprintf(stderr, "hugering-bench: [%d/%d] %s %s\n", done, total, what, shape);
}

/*
 * The kernel-mapped ring's setup cost follows memory fragmentation (its
 * high-order allocations succeed or fall back): measured here it drifted
 * from 404 to 667 us for 4096/65536 rings over 20 minutes.  As root,
 * compact memory before each churn so every run starts it from the same
 * state; elsewhere (or with --no-compact) leave it.
 */
static void compact_memory(const struct options *o)
{
	int fd = o->no_compact ? -1 : open("/proc/sys/vm/compact_memory", O_WRONLY);

	if (fd < 0)
		return;
	if (write(fd, "1", 1) != 1)
		fprintf(stderr, "hugering-bench: compacting memory: %s\n", strerror(errno));
	close(fd);
}

/*
 * Per shape: NOPs of all its modes in one process, then create+destroy of
 * the modes taking turns, then liburing's own NO_MMAP alone: it keeps a
 * hugepage per ring it ever made, which would starve the others.
 */
static void run_all(const struct options *o, struct cell *cells, int n)
{
	int steps = 0, done = 0;

	for (int i = 0; i < n; i++)
		if (i == 0 || cells[i].shape != cells[i - 1].shape)
			steps += cells[i].shape < 0 ? 1 : 3;
	for (int i = 0; i < n;) {
		struct cell *turns[MAX_RINGS], *alone[MAX_RINGS], *all[MAX_RINGS];
		int nt = 0, na = 0, g = 0, first = i;
		const char *sh = cells[first].shape < 0 ? "" : shapes[cells[first].shape].name;

		for (; i < n && cells[i].shape == cells[first].shape && g < MAX_RINGS; i++) {
			bool leaks = modes[cells[i].mode].kind == KIND_LIBURING_NOMMAP;

			all[g++] = &cells[i];
			if (leaks || cells[i].shape < 0)
				alone[na++] = &cells[i];
			else
				turns[nt++] = &cells[i];
		}
		if (cells[first].shape < 0) {
			progress(++done, steps, "create+destroy", "floor");
			run_isolated(o, alone, na, churn_alone);
			continue;
		}
		progress(++done, steps, "NOP throughput", sh);
		run_isolated(o, all, g, run_nops);
		progress(++done, steps, "create+destroy, modes taking turns", sh);
		compact_memory(o);
		if (nt)
			churn_interleaved(o, turns, nt);
		++done;
		for (int k = 0; k < na; k++) {
			progress(done, steps, "create+destroy alone (liburing-nommap)", sh);
			run_isolated(o, &alone[k], 1, churn_alone);
		}
	}
}

/* ------------------------------------------------------------------ */
/* The empty-pool phase                                                */
/* ------------------------------------------------------------------ */

/*
 * Where the pool cannot give a page (nr_hugepages 0, the default almost
 * everywhere, or a pool other programs hold), the drop-in falls back to a
 * kernel-mapped ring and must cost what liburing's costs.  For the phase a
 * child process holds every usable page of the default size in a hugetlb
 * memfd (no mount, no privilege): the pool is full of another process's
 * pages.  It lets go when its pipe closes, and dies with the bench.
 */
struct holder {
	pid_t pid;
	int cmd;		/* closing it releases the pages */
	long pages;		/* pool pages it took */
	char error[160];
};

#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

/* In the holder: every usable page, again if dying rings give some back. */
static long take_pool(size_t ps)
{
	unsigned flags = MFD_CLOEXEC | MFD_HUGETLB |
			 ((unsigned)__builtin_ctzl(ps) << MFD_HUGE_SHIFT);
	long before = pool_in_use(ps);
	struct hugering_pool p;

	for (int tries = 0; tries < 16; tries++) {
		int fd;

		if (hugering_pool_get(ps, -1, &p) || p.usable <= 0)
			break;
		fd = memfd_create("hugering-bench-hold", flags);
		if (fd < 0)
			break;
		/* The file's pages are its own until the holder exits: no mapping needed. */
		if (fallocate(fd, 0, 0, (off_t)((size_t)p.usable * ps)))
			usleep(10000);	/* some went elsewhere meanwhile: look again */
	}
	return pool_in_use(ps) - before;
}

static void hold_pool(size_t ps, struct holder *h)
{
	pid_t bench = getpid();
	int cmd[2], res[2];

	*h = (struct holder){ .pid = -1, .cmd = -1 };
	if (!ps)
		return;		/* no hugepages in this kernel: nothing to hold */
	if (pipe(cmd) || pipe(res)) {
		snprintf(h->error, sizeof(h->error), "pipe: %s", strerror(errno));
		return;
	}
	fflush(NULL);
	h->pid = fork();
	if (h->pid == 0) {
		long got;
		char c;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != bench)
			_exit(0);	/* the bench died before that */
		close(cmd[1]);
		close(res[0]);
		got = take_pool(ps);
		if (write(res[1], &got, sizeof(got)) != sizeof(got))
			_exit(1);
		while (read(cmd[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(cmd[0]);
	close(res[1]);
	h->cmd = cmd[1];
	if (h->pid < 0 || read(res[0], &h->pages, sizeof(h->pages)) != sizeof(h->pages))
		snprintf(h->error, sizeof(h->error), "the process holding the pool failed (%s)",
			 h->pid < 0 ? strerror(errno) : "died");
	close(res[0]);
}

static void release_pool(struct holder *h)
{
	if (h->cmd >= 0)
		close(h->cmd);
	if (h->pid > 0)
		waitpid(h->pid, NULL, 0);
}

static int mode_index(enum mode_kind kind)
{
	for (size_t m = 0; m < NMODES; m++)
		if (modes[m].kind == kind && !modes[m].sqpoll)
			return (int)m;
	return -1;
}

/* One row per shape of the run, when it compares kernel and hugering. */
static int plan_empty(const struct options *o, struct empty_row **out)
{
	int kernel = mode_index(KIND_KERNEL), huge = mode_index(KIND_HUGERING), n = 0;
	struct empty_row *rows;

	*out = NULL;
	if (o->no_empty_pool || !o->mode_on[kernel] || !o->mode_on[huge])
		return 0;
	rows = calloc(NSHAPES, sizeof(*rows));
	if (!rows)
		return -ENOMEM;
	for (size_t s = 0; s < NSHAPES; s++) {
		if (!o->shape_on[s])
			continue;
		init_cell(o, kernel, (int)s, o->iterations, &rows[n].kernel);
		init_cell(o, MODE_AUTO, (int)s, o->iterations, &rows[n].hugering);
		rows[n++].cost_x = -1;
	}
	*out = rows;
	return n;
}

/* Assert what the phase is about; the first thing wrong is the row's error. */
static void judge_row(struct empty_row *r, const struct holder *h)
{
	const struct cell *k = &r->kernel, *g = &r->hugering;
	int rounds = k->nrounds < g->nrounds ? k->nrounds : g->nrounds;
	char *e = r->error;
	size_t len = sizeof(r->error);

	r->cost_x = paired_median(g->cd_rounds, k->cd_rounds, rounds, false);
	if (h->error[0])
		snprintf(e, len, "%s", h->error);
	else if (k->error[0])
		snprintf(e, len, "kernel: %s", k->error);
	else if (g->error[0])
		snprintf(e, len, "hugering: %s", g->error);
	else if (g->rings_unexpected && g->ring_mode != HUGERING_MODE_KERNEL)
		snprintf(e, len, "%ld of %ld rings got mode %s: the pool still gave pages (%ld "
			 "usable while held; nr_overcommit_hugepages?)", g->rings_unexpected,
			 g->cycles + 1, hugering_mode_name(g->ring_mode), r->usable_left);
	else if (g->rings_unexpected)
		snprintf(e, len, "%ld of %ld rings fell back for errno %d, not ENOMEM: %s",
			 g->rings_unexpected, g->cycles + 1, g->fallback_errno, g->fallback_reason);
	else if (g->pool_waits < 0)
		snprintf(e, len, "the default arena's pool waits are unknown");
	else if (g->pool_waits)
		snprintf(e, len, "%lld allocations waited for the pool", g->pool_waits);
	r->ok = !e[0];
}

static long pool_usable(size_t ps)
{
	struct hugering_pool p;

	return ps && !hugering_pool_get(ps, -1, &p) ? p.usable : 0;
}

/* After the other modes: the pool is held for this phase only. */
static void run_empty_pool(const struct options *o, struct empty_row *rows, int n)
{
	size_t ps = hugering_default_page_size();
	struct holder h;

	if (n <= 0)
		return;
	hold_pool(ps, &h);
	for (int i = 0; i < n; i++) {
		struct empty_row *r = &rows[i];
		struct cell *cs[2] = { &r->kernel, &r->hugering };
		long left;

		progress(i + 1, n, "empty pool: create+destroy, kernel and hugering-auto taking turns",
			 shapes[r->kernel.shape].name);
		compact_memory(o);
		r->pages_held = h.pages;
		r->usable_left = pool_usable(ps);
		churn_turns(o, cs, 2);
		left = pool_usable(ps);
		if (left > r->usable_left)
			r->usable_left = left;
		judge_row(r, &h);
	}
	release_pool(&h);
	settle_pool();
}

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hugering-bench [--quick] [--modes LIST|all] [--shapes LIST] [--iterations N]\n"
		"                      [--seconds S] [--flags defer|plain] [--cpu N] [--no-compact]\n"
		"                      [--no-empty-pool] [--big-map] [--json | --csv]\n"
		"                      [--plot FILE.png|FILE.svg]\n"
		"                      [--buffers | --buffers-only] [--buf-sizes LIST] [--buf-recv-mib N]\n"
		"modes:  kernel liburing-nommap user-4k hugering hugering-1g floor (default),\n"
		"        kernel-sqpoll hugering-sqpoll hugering-prepare hugering-pool\n"
		"shapes: small (64) medium (256/512) large (4096/65536) max (32768/65536)\n"
		"        max-sqe128 max-cqe32\n"
		"buffers: --buffers adds the buffer section (registration, READ_FIXED, multishot\n"
		"        receive), --buffers-only runs it alone; --buf-sizes 64M,256M,1G (default)\n"
		"        --buf-recv-mib 256 (32 with --quick): bytes per receive slice\n");
}

static int die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "hugering-bench: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "; see hugering-bench --help\n");
	return 2;
}

/* Turn on the names in the comma-separated @list; -1 on an unknown name. */
static int pick(const char *list, const char *const *names, size_t n, size_t stride,
		bool *on, const char **bad)
{
	char *copy = strdup(list), *save = NULL;

	memset(on, 0, n);
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < n; i++)
			if (!strcmp(tok, *(const char *const *)((const char *)names + i * stride)))
				break;
		if (i == n && strcmp(tok, "all")) {
			*bad = list + (tok - copy);
			free(copy);
			return -1;
		}
		for (size_t k = 0; k < n; k++)
			if (i == n || k == i)
				on[k] = true;
	}
	free(copy);
	return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int pin_cpu(int cpu)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set)) {
		fprintf(stderr, "hugering-bench: --cpu %d: not a CPU this process may run on "
			"(see taskset -p $$); pick one of those\n", cpu);
		return -1;
	}
	for (int c = 0; c < CPU_SETSIZE && sqpoll_cpu < 0; c++)
		if (c != cpu && CPU_ISSET(c, &set))
			sqpoll_cpu = c;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{ "quick", no_argument, NULL, 'q' }, { "modes", required_argument, NULL, 'm' },
		{ "shapes", required_argument, NULL, 's' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "seconds", required_argument, NULL, 'S' }, { "cpu", required_argument, NULL, 'c' },
		{ "flags", required_argument, NULL, 'f' }, { "json", no_argument, NULL, 'j' },
		{ "csv", no_argument, NULL, 'v' }, { "plot", required_argument, NULL, 'p' },
		{ "no-compact", no_argument, NULL, 'n' }, { "help", no_argument, NULL, 'h' },
		{ "no-empty-pool", no_argument, NULL, 'E' },
		{ "big-map", no_argument, NULL, 'B' },
		{ "buffers", no_argument, NULL, 'b' },
		{ "buffers-only", no_argument, NULL, 'O' },
		{ "buf-sizes", required_argument, NULL, 'z' },
		{ "buf-recv-mib", required_argument, NULL, 'r' },
		{ 0 }
	};
	const char *modes_arg = NULL, *bad = NULL;
	long v, recv_mib = 0;
	int c;

	*o = (struct options){ .cpu = -1, .flags = DEFER, .iterations = 0 };
	while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
		switch (c) {
		case 'q': o->quick = true; break;
		case 'm': modes_arg = optarg; break;
		case 's':
			if (pick(optarg, &shapes[0].name, NSHAPES, sizeof(shapes[0]), o->shape_on, &bad))
				return die_usage("unknown shape in '%s'", bad);
			break;
		case 'i':
			if (parse_long(optarg, 1, 10000000, &o->iterations))
				return die_usage("--iterations '%s': want 1..10000000", optarg);
			break;
		case 'S':
			o->nop_seconds = atof(optarg);
			if (!(o->nop_seconds > 0 && o->nop_seconds <= 60))
				return die_usage("--seconds '%s': want a number in (0, 60]", optarg);
			break;
		case 'c':
			if (parse_long(optarg, 0, CPU_SETSIZE - 1, &v))
				return die_usage("--cpu '%s': want a CPU number", optarg);
			o->cpu = (int)v;
			break;
		case 'f':
			if (strcmp(optarg, "defer") && strcmp(optarg, "plain"))
				return die_usage("--flags '%s': want defer or plain", optarg);
			o->flags = strcmp(optarg, "defer") ? 0 : DEFER;
			break;
		case 'j': o->json = true; break;
		case 'n': o->no_compact = true; break;
		case 'E': o->no_empty_pool = true; break;
		case 'B': o->big_map = true; break;
		case 'b': o->buffers = true; break;
		case 'O': o->buffers = o->buffers_only = true; break;
		case 'z':
			if (buf_parse_sizes(optarg, &o->buf))
				return 2;
			break;
		case 'r':
			if (parse_long(optarg, 1, 65536, &recv_mib))
				return die_usage("--buf-recv-mib '%s': want 1..65536", optarg);
			break;
		case 'v': o->csv = true; break;
		case 'p': o->plot = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc)
		return die_usage("unexpected argument '%s'", argv[optind]);
	if (o->json && o->csv)
		return die_usage("%s", "--json and --csv are exclusive");
	if (modes_arg) {
		if (pick(modes_arg, &modes[0].name, NMODES, sizeof(modes[0]), o->mode_on, &bad))
			return die_usage("unknown mode in '%s'", bad);
	} else {
		for (size_t m = 0; m < NMODES; m++)
			o->mode_on[m] = modes[m].by_default;
	}
	bool any_shape = false;

	for (size_t s = 0; s < NSHAPES; s++)
		any_shape |= o->shape_on[s];
	if (!any_shape)
		memset(o->shape_on, 1, sizeof(o->shape_on));
	if (!o->iterations)
		o->iterations = o->quick ? 150 : 1000;
	if (!o->nop_seconds)
		o->nop_seconds = o->quick ? 0.1 : 0.5;
	if (!o->buf.nsizes)
		buf_parse_sizes("64M,256M,1G", &o->buf);
	o->buf.quick = o->quick;
	o->buf.recv_bytes = (size_t)(recv_mib ? recv_mib : o->quick ? 32 : 256) << 20;
	if (o->plot && report_plot_check(o->plot))
		return 1;
	if (o->cpu >= 0 && pin_cpu(o->cpu))
		return 1;
	return 0;
}

/* ------------------------------------------------------------------ */

static void machine_info(struct machine *mc)
{
	struct utsname u;
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "r");

	memset(mc, 0, sizeof(*mc));
	if (!uname(&u))
		snprintf(mc->kernel, sizeof(mc->kernel), "%s", u.release);
	mc->cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && colon) {
			snprintf(mc->cpu_model, sizeof(mc->cpu_model), "%s", colon + 2);
			mc->cpu_model[strcspn(mc->cpu_model, "\n")] = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	mc->pmu = pmu_available();
	mc->liburing_major = io_uring_major_version();
	mc->liburing_minor = io_uring_minor_version();
}

int main(int argc, char **argv)
{
	struct options o;
	struct machine mc;
	struct report rp;
	struct cell *cells;
	struct empty_row *empty;
	struct bigmap big = { 0 };
	struct buf_results *buf = NULL;
	int n = 0, ne = 0, ret = parse_args(argc, argv, &o);

	if (ret)
		return ret;
	/* A worker that dies must not take the run with it: its pipe says so. */
	signal(SIGPIPE, SIG_IGN);
	cells = NULL;
	empty = NULL;
	if (!o.buffers_only) {
		n = plan(&o, &cells);
		if (n <= 0) {
			fprintf(stderr, "hugering-bench: nothing to run (no mode or shape selected)\n");
			return 2;
		}
		ne = plan_empty(&o, &empty);
	}
	machine_info(&mc);
	settle_pool();
	run_all(&o, cells, n);
	run_empty_pool(&o, empty, ne);
	if (o.buffers) {
		buf = calloc(1, sizeof(*buf));
		if (!buf) {
			fprintf(stderr, "hugering-bench: out of memory\n");
			return 1;
		}
		bench_buffers(&o.buf, buf);
	}
	if (o.big_map && !o.buffers_only) {
		progress(1, 1, "big map: creation with a 6 GiB heap of many VMAs", "");
		bench_bigmap(&big);
		settle_pool();
	}
	rp = (struct report){ .mc = &mc, .cells = cells, .n = n, .modes = modes,
			      .shapes = shapes, .flags = o.flags, .iterations = o.iterations,
			      .nop_seconds = o.nop_seconds, .quick = o.quick,
			      .empty = empty, .nempty = ne > 0 ? ne : 0, .big = &big, .buf = buf };
	if (o.json)
		report_json(stdout, &rp);
	else if (o.csv)
		report_csv(stdout, &rp);
	else
		report_table(stdout, &rp);
	ret = o.plot ? report_plot(o.plot, &rp) : 0;
	free(cells);
	free(empty);
	free(buf);
	return ret ? 1 : 0;
}

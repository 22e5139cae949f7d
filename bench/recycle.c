/* SPDX-License-Identifier: MIT */
/*
 * What recycling ring memory costs: create+destroy cycles of one ring shape,
 * timed per cycle, for each way of getting ring memory, in one run, with
 * ratios against the kernel-mapped peer.
 *
 *   recycle [CYCLES [ENTRIES [CQ]]]     default 5000 256 512
 *
 * Modes:
 *   kernel            io_uring_queue_init_params / io_uring_queue_exit
 *   kernel-defer      the same with SINGLE_ISSUER|DEFER_TASKRUN
 *   liburing-nommap   liburing's own NO_MMAP allocation (one hugepage per ring)
 *   hugering          arena, quarantine + page retirement
 *   hugering-resize   arena, DEFER_TASKRUN ring resized away before close
 *
 * Each mode runs in its own child process: liburing 2.9's own NO_MMAP
 * allocation never unmaps its hugepages, so it drains the pool for the rest
 * of the process that used it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hugering.h>

struct mode {
	const char *name;
	unsigned flags;
	int kind;	/* 0 liburing, 1 liburing NO_MMAP, 2 hugering */
};

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int create(const struct mode *m, struct hugering_arena *a, unsigned entries,
		  unsigned cq, struct io_uring *ring)
{
	struct io_uring_params p = { .flags = m->flags | IORING_SETUP_CQSIZE, .cq_entries = cq };
	struct hugering_init_opts o = { .arena = a, .numa_node = -1,
					.policy = HUGERING_POLICY_NOMMAP };

	if (m->kind == 1)
		p.flags |= IORING_SETUP_NO_MMAP;
	if (m->kind == 2)
		return hugering_queue_init_opts(entries, ring, &p, &o);
	return io_uring_queue_init_params(entries, ring, &p);
}

static void destroy(const struct mode *m, struct io_uring *ring)
{
	if (m->kind == 2)
		hugering_queue_exit(ring);
	else
		io_uring_queue_exit(ring);
}

struct result {
	double median, p99, mean;
	long ok;
	int err;
};

static struct result run(const struct mode *m, long cycles, unsigned entries, unsigned cq)
{
	struct hugering_arena_opts ao = { .numa_node = -1 };
	struct hugering_arena *a = NULL;
	double *t = calloc(cycles, sizeof(*t));
	struct result r = { 0 };

	if (m->kind == 2 && hugering_arena_create(&ao, &a)) {
		r.err = -ENOMEM;
		return r;
	}
	for (long i = 0; i < cycles; i++) {
		struct io_uring ring;
		double t0 = now_us();
		int ret = create(m, a, entries, cq, &ring);

		if (ret) {
			r.err = ret;
			break;
		}
		destroy(m, &ring);
		t[r.ok++] = now_us() - t0;
	}
	if (r.ok) {
		for (long i = 0; i < r.ok; i++)
			r.mean += t[i] / r.ok;
		qsort(t, r.ok, sizeof(*t), cmp_double);
		r.median = t[r.ok / 2];
		r.p99 = t[r.ok * 99 / 100];
	}
	free(t);
	hugering_arena_destroy(a);
	return r;
}

/*
 * Rings closed by the last mode are torn down by the kernel one after the
 * other; let the pool refill before timing the next (at most 20 s).
 */
static void settle_pool(void)
{
	size_t ps = hugering_default_page_size();

	for (int i = 0; i < 2000; i++) {
		struct hugering_pool p;

		if (!ps || hugering_pool_get(ps, -1, &p) || p.free >= p.total)
			return;
		usleep(10000);
	}
}

/* run() in a child; the result comes back through a pipe. */
static struct result run_isolated(const struct mode *m, long cycles, unsigned entries,
				  unsigned cq)
{
	struct result r = { .err = -ECHILD };
	int fds[2];
	pid_t pid;

	if (pipe(fds))
		return r;
	pid = fork();
	if (pid == 0) {
		r = run(m, cycles, entries, cq);
		_exit(write(fds[1], &r, sizeof(r)) != sizeof(r));
	}
	close(fds[1]);
	if (pid < 0 || read(fds[0], &r, sizeof(r)) != sizeof(r))
		r = (struct result){ .err = -ECHILD };
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	settle_pool();
	return r;
}

int main(int argc, char **argv)
{
	long cycles = argc > 1 ? atol(argv[1]) : 5000;
	unsigned entries = argc > 2 ? (unsigned)atoi(argv[2]) : 256;
	unsigned cq = argc > 3 ? (unsigned)atoi(argv[3]) : 2 * entries;
	const unsigned defer = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	const struct mode modes[] = {
		{ "kernel", 0, 0 },
		{ "kernel-defer", defer, 0 },
		{ "liburing-nommap", 0, 1 },
		{ "hugering", 0, 2 },
		{ "hugering-resize", defer, 2 },
	};
	struct result base = { 0 };

	printf("%ld create+destroy cycles of %u/%u rings, liburing %d.%d\n", cycles, entries, cq,
	       io_uring_major_version(), io_uring_minor_version());
	printf("%-16s %10s %10s %10s %10s %12s  %s\n", "mode", "mean_us", "median_us", "p99_us",
	       "vs_kernel", "cycles_ok", "first error");
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		struct result r = run_isolated(&modes[i], cycles, entries, cq);

		if (i == 0)
			base = r;
		printf("%-16s %10.1f %10.1f %10.1f %9.2fx %12ld  %s\n", modes[i].name, r.mean,
		       r.median, r.p99, base.mean > 0 && r.mean > 0 ? base.mean / r.mean : 0.0,
		       r.ok, r.err ? strerror(-r.err) : "-");
	}
	printf("vs_kernel: kernel mean / mode mean (> 1 = faster than kernel-mapped)\n");
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * hugering-bench --buffers (issue 13): the memory that carries the data,
 * in 4 KiB pages (what a program mallocs, registered with liburing) against
 * hugering's pools in hugepages, measured side by side in one run:
 *   - registration: time and memlock charge (VmPin growth, next to
 *     hugering_register_charge's prediction) of 64 MiB .. 1 GiB of 1 MiB
 *     buffers in 4 KiB, 2 MiB and 1 GiB pages; a clone into a second ring
 *     against registering again there;
 *   - READ_FIXED with O_DIRECT from a tmpfs file at 4 KiB, 64 KiB, 1 MiB;
 *   - multishot receive over loopback TCP into a provided buffer ring,
 *     liburing's own (ring, buffer ring, malloc'd buffers) against hugering's.
 * Each part runs in a child process of its own (registration: one per size),
 * so a part starts from a full pool and its pins die with it.  Within a part
 * the two (three) memories take turns in rounds, the order rotating, and a
 * ratio is the median over rounds of the ratio within a round: drift of a
 * shared machine hits both alike.  Data is verified (byte counts, a pattern)
 * so that a broken run cannot look fast.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hugering.h>

#include "buffers.h"
#include "report.h"

#define MiB (1UL << 20)
#define SZ_2M (2UL << 20)
#define SZ_1G (1UL << 30)
#define REG_BUF MiB		/* registration: buffers of 1 MiB */
#define QD 32			/* READ_FIXED queue depth */
#define FILE_BYTES (64 * MiB)
#define RECV_BUFS 128
#define RECV_BUF (64 * 1024)
#define RECV_BGID 7
#define PAT_PERIOD 4093		/* prime: no buffer or write size is a multiple */
#define SEND_CHUNK (64 * 1024)
#define DEFER (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)

static const unsigned io_sizes[BUF_NIO] = { 4096, 64 * 1024, 1024 * 1024 };
static const char *const page_names[BP_N] = { "4k", "2m", "1g" };
static const char *const side_names[BS_N] = { "4k", "hugering" };
static const char *const recv_names[BS_N] = { "liburing", "hugering" };

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median of the values >= 0 in @v (sorted in place); -1 if none. */
static double median(double *v, int n)
{
	int first = 0, k;

	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	while (first < n && v[first] < 0)
		first++;
	k = n - first;
	if (!k)
		return -1;
	return k % 2 ? v[first + k / 2] : (v[first + k / 2 - 1] + v[first + k / 2]) / 2;
}

/* Median over rounds of @num[r] / @den[r] where both were measured. */
static double paired(const double *num, const double *den, int rounds)
{
	double x[BUF_MAX_ROUNDS];
	int nx = 0;

	for (int r = 0; r < rounds; r++)
		if (num[r] > 0 && den[r] > 0)
			x[nx++] = num[r] / den[r];
	return nx ? median(x, nx) : -1;
}

/* The smallest and largest of the values >= 0 in @v; -1 if none. */
static void spread(const double *v, int n, double *lo, double *hi)
{
	*lo = *hi = -1;
	for (int i = 0; i < n; i++) {
		if (v[i] < 0)
			continue;
		if (*lo < 0 || v[i] < *lo)
			*lo = v[i];
		if (v[i] > *hi)
			*hi = v[i];
	}
}

/* VmPin of this process in bytes; -1 unknown. */
static long long vm_pin(void)
{
	char line[256];
	long long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %lld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb < 0 ? -1 : kb << 10;
}

static long pool_usable(size_t ps)
{
	struct hugering_pool p;

	return hugering_pool_get(ps, -1, &p) ? -1 : p.usable;
}

static const size_t pool_sizes[2] = { SZ_2M, SZ_1G };

/* Free pages of each size now (-1: unknown), before a child takes some. */
static void pool_free(long out[2])
{
	for (int k = 0; k < 2; k++) {
		struct hugering_pool p;

		out[k] = hugering_pool_get(pool_sizes[k], -1, &p) ? -1 : p.free;
	}
}

/*
 * A child's hugepages come back once it is gone, its rings' a moment later
 * (they die asynchronously): wait up to 3 s for the free counts of @before.
 * Not for a full pool: other programs may hold pages all along.
 */
static void settle(const long before[2])
{
	for (int i = 0; i < 300; i++) {
		long now[2];

		pool_free(now);
		if (now[0] >= before[0] && now[1] >= before[1])
			return;
		usleep(10000);
	}
}

/* A ring as the peer makes it: kernel-mapped, one issuer. */
static int plain_ring(struct io_uring *ring)
{
	struct io_uring_params p = { .flags = DEFER };

	return io_uring_queue_init_params(64, ring, &p);
}

/* @bytes of anonymous 4 KiB pages, faulted in; NULL on failure. */
static void *base_pages(size_t bytes)
{
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return NULL;
	/* THP would make them 2 MiB pages: this side is what malloc gives without it. */
	madvise(m, bytes, MADV_NOHUGEPAGE);
	memset(m, 0x5a, bytes);
	return m;
}

/*
 * @fn(@arg) in a child process; @len bytes at @arg come back through a
 * pipe.  A child that dies leaves @what in @err.
 */
static void in_child(void (*fn)(void *), void *arg, size_t len, char *err, size_t errlen,
		     const char *what)
{
	int fds[2];
	size_t got = 0;
	long before[2];
	pid_t pid;

	pool_free(before);
	if (pipe(fds)) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return;
	}
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		size_t off = 0;

		close(fds[0]);
		fn(arg);
		while (off < len) {
			ssize_t w = write(fds[1], (char *)arg + off, len - off);

			if (w <= 0)
				_exit(1);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(fds[1]);
	while (pid > 0 && got < len) {
		ssize_t n = read(fds[0], (char *)arg + got, len - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	if (pid < 0 || got < len)
		snprintf(err, errlen, "%s: the measuring process %s", what,
			 pid < 0 ? strerror(errno) : "died");
	settle(before);
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */
/* ------------------------------------------------------------------ */

struct reg_kind {
	struct buf_reg *out;
	int kind;
	void *mem;			/* 4k */
	struct hugering_bufpool *pool;	/* 2m, 1g */
	struct iovec *iov;
	unsigned n;
	struct io_uring ring, ring2;
	int rings;			/* made: 0, 1, 2 */
	double t[BUF_MAX_ROUNDS], u[BUF_MAX_ROUNDS], c[BUF_MAX_ROUNDS], a[BUF_MAX_ROUNDS];
};

struct reg_job {
	struct buf_reg cells[BP_N];
	size_t bytes;
	int rounds;
};

static size_t kind_page(int kind)
{
	return kind == BP_4K ? 4096 : kind == BP_2M ? SZ_2M : SZ_1G;
}

/* Why hugepages of @ps cannot hold @bytes here, in @skip; 0 if they can. */
static int pages_short(size_t ps, size_t bytes, char *skip, size_t len)
{
	long need = (long)((bytes + ps - 1) / ps), have = pool_usable(ps);
	const char *dir = ps == SZ_1G ? "hugepages-1048576kB" : "hugepages-2048kB";

	if (have >= need)
		return 0;
	if (ps == SZ_1G && need == 1)
		snprintf(skip, len, "skipped: no 1 GiB page (reserve one: echo 1 | sudo tee "
			 "/sys/kernel/mm/hugepages/%s/nr_hugepages)", dir);
	else
		snprintf(skip, len, "skipped: %ld usable %zu kB pages, %ld needed (reserve "
			 "more: echo N | sudo tee /sys/kernel/mm/hugepages/%s/nr_hugepages, or "
			 "HUGERING_TEST_PAGES_2M=N scripts/with-pool.sh)", have < 0 ? 0 : have,
			 ps >> 10, need, dir);
	return -1;
}

static int reg_do(struct reg_kind *k, struct io_uring *ring)
{
	if (k->kind == BP_4K)
		return io_uring_register_buffers(ring, k->iov, k->n);
	return hugering_register_buffers(ring, k->pool, NULL, 0, 0, NULL);
}

static int unreg_do(struct reg_kind *k, struct io_uring *ring)
{
	return k->kind == BP_4K ? io_uring_unregister_buffers(ring) :
				  hugering_unregister_buffers(ring);
}

/* An error of this kind: a memlock refusal is the machine's limit (a skip). */
static void reg_fail(struct reg_kind *k, const char *what, int ret)
{
	struct buf_reg *o = k->out;
	struct rlimit rl;
	const char *why = k->kind == BP_4K ? strerror(-ret) : hugering_last_error();

	if (ret == -ENOMEM && !getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY &&
	    geteuid())
		snprintf(o->skip, sizeof(o->skip), "skipped: %s: over RLIMIT_MEMLOCK (%llu kB; "
			 "%lld kB predicted): %s", what, (unsigned long long)rl.rlim_cur >> 10,
			 o->predicted >> 10, why);
	else
		snprintf(o->error, sizeof(o->error), "%s: %s", what, why);
}

static int reg_open(struct reg_kind *k, size_t bytes)
{
	struct buf_reg *o = k->out;
	struct hugering_bufpool_opts po = { .page_size = kind_page(k->kind),
					    .flags = HUGERING_BUFPOOL_NO_FALLBACK };
	struct hugering_reg_charge pred;
	int ret;

	k->n = (unsigned)(bytes / REG_BUF);
	o->entries = k->n;
	if (k->kind != BP_4K && pages_short(po.page_size, bytes, o->skip, sizeof(o->skip)))
		return -1;
	k->iov = calloc(k->n, sizeof(*k->iov));
	if (!k->iov)
		return -1;
	if (k->kind == BP_4K) {
		k->mem = base_pages(bytes);
		if (!k->mem) {
			snprintf(o->error, sizeof(o->error), "%zu bytes of base pages: %s", bytes,
				 strerror(errno));
			return -1;
		}
		for (unsigned i = 0; i < k->n; i++)
			k->iov[i] = (struct iovec){ (char *)k->mem + (size_t)i * REG_BUF, REG_BUF };
		ret = hugering_register_charge(NULL, k->iov, k->n, 0, &pred);
	} else {
		ret = hugering_bufpool_create(k->n, REG_BUF, &po, &k->pool);
		if (ret) {
			snprintf(o->error, sizeof(o->error), "buffer pool: %s", hugering_last_error());
			return -1;
		}
		ret = hugering_register_charge(k->pool, NULL, 0, 0, &pred);
	}
	o->predicted = ret ? -1 : (long long)pred.charge_bytes;
	for (; k->rings < 2; k->rings++) {
		ret = plain_ring(k->rings ? &k->ring2 : &k->ring);
		if (ret) {
			snprintf(o->error, sizeof(o->error), "ring: %s", strerror(-ret));
			return -1;
		}
	}
	o->charge_ok = o->predicted >= 0;
	return 0;
}

static void reg_close(struct reg_kind *k)
{
	if (k->rings > 1)
		io_uring_queue_exit(&k->ring2);
	if (k->rings > 0)
		io_uring_queue_exit(&k->ring);
	hugering_bufpool_destroy(k->pool);
	if (k->mem)
		munmap(k->mem, k->n * REG_BUF);
	free(k->iov);
}

/* One registration, timed, with its VmPin growth checked against the prediction. */
static bool reg_round(struct reg_kind *k, int r)
{
	struct buf_reg *o = k->out;
	long long p0 = vm_pin(), p1;
	double t0 = now_ms();
	int ret = reg_do(k, &k->ring);

	k->t[r] = now_ms() - t0;
	p1 = vm_pin();
	if (ret) {
		reg_fail(k, "register", ret);
		return false;
	}
	o->pin_growth = p0 < 0 || p1 < 0 ? -1 : p1 - p0;
	if (o->pin_growth != o->predicted)
		o->charge_ok = false;
	t0 = now_ms();
	ret = unreg_do(k, &k->ring);
	k->u[r] = now_ms() - t0;
	if (ret) {
		snprintf(o->error, sizeof(o->error), "unregister: %s", strerror(-ret));
		return false;
	}
	return true;
}

/* Into the second ring: a clone, then registering there again (both timed). */
static bool clone_round(struct reg_kind *k, int r)
{
	struct buf_reg *o = k->out;
	struct hugering_reg_charge c;
	long long p0, p1;
	double t0;
	int ret = reg_do(k, &k->ring);

	if (ret) {
		reg_fail(k, "register (clone source)", ret);
		return false;
	}
	p0 = vm_pin();
	t0 = now_ms();
	ret = hugering_clone_buffers(&k->ring2, &k->ring, &c);
	k->c[r] = now_ms() - t0;
	p1 = vm_pin();
	if (ret) {
		snprintf(o->error, sizeof(o->error), "clone: %s", hugering_last_error());
		unreg_do(k, &k->ring);
		return false;
	}
	o->cloned = c.cloned;
	o->clone_pin = p0 < 0 || p1 < 0 ? -1 : p1 - p0;
	hugering_unregister_buffers(&k->ring2);
	p0 = vm_pin();
	t0 = now_ms();
	ret = reg_do(k, &k->ring2);
	k->a[r] = now_ms() - t0;
	p1 = vm_pin();
	o->again_pin = p0 < 0 || p1 < 0 ? -1 : p1 - p0;
	if (!ret)
		unreg_do(k, &k->ring2);
	unreg_do(k, &k->ring);
	if (ret)
		reg_fail(k, "register again", ret);
	return !ret;
}

static void reg_child(void *arg)
{
	struct reg_job *j = arg;
	struct reg_kind ks[BP_N];
	bool live[BP_N];

	memset(ks, 0, sizeof(ks));
	for (int i = 0; i < BP_N; i++) {
		ks[i].out = &j->cells[i];
		ks[i].kind = i;
		live[i] = !reg_open(&ks[i], j->bytes);
	}
	for (int r = 0; r < j->rounds; r++) {
		for (int s = 0; s < BP_N; s++) {
			int i = (s + r) % BP_N;

			ks[i].t[r] = ks[i].u[r] = ks[i].c[r] = ks[i].a[r] = -1;
			if (live[i])
				live[i] = reg_round(&ks[i], r) && clone_round(&ks[i], r);
		}
	}
	for (int i = 0; i < BP_N; i++) {
		struct buf_reg *o = ks[i].out;
		bool measured = !o->skip[0] && !o->error[0];

		if (measured)
			o->x_4k = paired(ks[BP_4K].t, ks[i].t, j->rounds);
		if (measured) {
			o->reg_ms = median(ks[i].t, j->rounds);
			o->unreg_ms = median(ks[i].u, j->rounds);
			o->clone_ms = median(ks[i].c, j->rounds);
			o->again_ms = median(ks[i].a, j->rounds);
		}
		reg_close(&ks[i]);
	}
}

static void init_reg(struct buf_reg *o, size_t bytes)
{
	*o = (struct buf_reg){ .bytes = bytes, .reg_ms = -1, .unreg_ms = -1, .x_4k = -1,
			       .pin_growth = -1, .predicted = -1, .clone_ms = -1,
			       .again_ms = -1, .clone_pin = -1, .again_pin = -1 };
}

static void run_registration(const struct buf_opts *o, struct buf_results *r)
{
	for (int s = 0; s < o->nsizes; s++) {
		struct reg_job j = { .bytes = o->sizes[s], .rounds = r->reg_rounds };
		char err[320] = "";

		fprintf(stderr, "hugering-bench: buffers: registering %zu MiB in 4 KiB, 2 MiB, "
			"1 GiB pages\n", o->sizes[s] >> 20);
		for (int k = 0; k < BP_N; k++)
			init_reg(&j.cells[k], o->sizes[s]);
		in_child(reg_child, &j, sizeof(j), err, sizeof(err), "registration");
		for (int k = 0; k < BP_N; k++) {
			r->reg[s][k] = j.cells[k];
			if (err[0] && !j.cells[k].skip[0])
				snprintf(r->reg[s][k].error, sizeof(r->reg[s][k].error), "%s", err);
		}
	}
}

/* ------------------------------------------------------------------ */
/* READ_FIXED with O_DIRECT from tmpfs                                 */
/* ------------------------------------------------------------------ */

struct io_side {
	struct buf_io *out;
	int kind;
	unsigned io;
	struct io_uring ring;
	bool have_ring;
	void *mem;
	struct hugering_bufpool *pool;
	char *buf[QD];
	unsigned long long cursor;	/* next file offset, wrapping */
	double gbps[BUF_MAX_ROUNDS], iops[BUF_MAX_ROUNDS];
};

struct io_job {
	struct buf_io cells[BUF_NIO][BS_N];
	int rounds;
	double slice_s;
	char path[64];
};

/* Every 4 KiB block of the file starts with its own offset. */
static int make_file(const char *path, char *err, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	uint64_t *blk = malloc(MiB);
	int ret = 0;

	if (fd < 0 || !blk) {
		snprintf(err, len, "skipped: cannot create %s: %s", path, strerror(errno));
		ret = -1;
	}
	for (size_t off = 0; !ret && off < FILE_BYTES; off += MiB) {
		memset(blk, 0xa5, MiB);
		for (size_t b = 0; b < MiB; b += 4096)
			blk[b / 8] = off + b;
		if (pwrite(fd, blk, MiB, (off_t)off) != (ssize_t)MiB) {
			snprintf(err, len, "skipped: writing %s: %s", path, strerror(errno));
			ret = -1;
		}
	}
	free(blk);
	if (fd >= 0)
		close(fd);
	return ret;
}

static int io_open(struct io_side *s)
{
	struct buf_io *o = s->out;
	struct hugering_bufpool_opts po = { .flags = HUGERING_BUFPOOL_NO_FALLBACK };
	int ret = plain_ring(&s->ring);

	if (ret) {
		snprintf(o->error, sizeof(o->error), "ring: %s", strerror(-ret));
		return -1;
	}
	s->have_ring = true;
	if (s->kind == BS_4K) {
		struct iovec iov[QD];

		s->mem = base_pages((size_t)QD * s->io);
		if (!s->mem) {
			snprintf(o->error, sizeof(o->error), "base pages: %s", strerror(errno));
			return -1;
		}
		for (int i = 0; i < QD; i++) {
			s->buf[i] = (char *)s->mem + (size_t)i * s->io;
			iov[i] = (struct iovec){ s->buf[i], s->io };
		}
		o->page_size = 4096;
		ret = io_uring_register_buffers(&s->ring, iov, QD);
	} else {
		struct hugering_bufpool_info pi;

		ret = hugering_bufpool_create(QD, s->io, &po, &s->pool);
		if (ret) {
			snprintf(o->skip, sizeof(o->skip), "skipped: buffer pool: %s",
				 hugering_last_error());
			return -1;
		}
		hugering_bufpool_info(s->pool, &pi);
		o->page_size = pi.page_size;
		for (int i = 0; i < QD; i++)
			s->buf[i] = hugering_bufpool_buf(s->pool, (unsigned)i);
		ret = hugering_register_buffers(&s->ring, s->pool, NULL, 0, 0, NULL);
	}
	if (ret == -ENOMEM && geteuid())
		snprintf(o->skip, sizeof(o->skip), "skipped: registering %u x %u bytes: over "
			 "RLIMIT_MEMLOCK (run as root or raise ulimit -l)", QD, s->io);
	else if (ret)
		snprintf(o->error, sizeof(o->error), "register: %s", s->kind == BS_4K ?
			 strerror(-ret) : hugering_last_error());
	return ret ? -1 : 0;
}

static void io_close(struct io_side *s)
{
	if (s->have_ring)
		io_uring_queue_exit(&s->ring);
	hugering_bufpool_destroy(s->pool);
	if (s->mem)
		munmap(s->mem, (size_t)QD * s->io);
}

static bool io_queue(struct io_side *s, int fd, unsigned i)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	unsigned long long off = s->cursor;

	if (!sqe)
		return false;
	s->cursor = (s->cursor + s->io) % FILE_BYTES;
	io_uring_prep_read_fixed(sqe, fd, s->buf[i], s->io, off, (int)i);
	sqe->user_data = off | i;	/* offsets are 4 KiB aligned, i < 4096 */
	return true;
}

/* The read landed where asked: first and last block carry their offsets. */
static bool io_check(const struct io_side *s, const struct io_uring_cqe *cqe)
{
	unsigned i = (unsigned)(cqe->user_data & 4095);
	unsigned long long off = cqe->user_data & ~4095ULL, last = off + s->io - 4096;

	return cqe->res == (int)s->io && *(const uint64_t *)s->buf[i] == off &&
	       *(const uint64_t *)(s->buf[i] + s->io - 4096) == last;
}

/* @secs of reads at depth QD; GB/s and IOPS into round @r.  false on a bad read. */
static bool io_slice(struct io_side *s, int fd, double secs, int r)
{
	struct buf_io *o = s->out;
	unsigned inflight = 0;
	long long ops = 0;
	double t0 = now_ms(), end = t0 + secs * 1e3, t = t0;
	bool more = true;

	for (unsigned i = 0; i < QD; i++)
		inflight += io_queue(s, fd, i);
	while (inflight) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret = io_uring_submit_and_wait(&s->ring, 1);

		if (ret < 0) {
			snprintf(o->error, sizeof(o->error), "submit: %s", strerror(-ret));
			return false;
		}
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			if (!io_check(s, cqe)) {
				snprintf(o->error, sizeof(o->error), "read at %llu: res %d, data "
					 "not what the file holds", cqe->user_data & ~4095ULL,
					 cqe->res);
				io_uring_cq_advance(&s->ring, seen);
				return false;
			}
			ops++;
			seen++;
			inflight--;
			if (more)
				inflight += io_queue(s, fd, (unsigned)(cqe->user_data & 4095));
		}
		io_uring_cq_advance(&s->ring, seen);
		t = now_ms();
		more = t < end;
	}
	o->ops += ops;
	s->iops[r] = ops / ((t - t0) / 1e3);
	s->gbps[r] = s->iops[r] * s->io / 1e9;
	return true;
}

static void io_child(void *arg)
{
	struct io_job *j = arg;
	char skip[320] = "";
	int fd = -1;

	if (!make_file(j->path, skip, sizeof(skip))) {
		fd = open(j->path, O_RDONLY | O_DIRECT);
		if (fd < 0)
			snprintf(skip, sizeof(skip), "skipped: open O_DIRECT on tmpfs (%s): %s%s",
				 j->path, strerror(errno), errno == EINVAL ?
				 " (tmpfs has O_DIRECT from Linux 6.6)" : "");
	}
	for (int n = 0; n < BUF_NIO; n++) {
		struct io_side s[BS_N];
		bool live[BS_N];

		memset(s, 0, sizeof(s));
		for (int k = 0; k < BS_N; k++) {
			s[k].out = &j->cells[n][k];
			s[k].kind = k;
			s[k].io = io_sizes[n];
			if (skip[0])
				snprintf(s[k].out->skip, sizeof(s[k].out->skip), "%s", skip);
			live[k] = !skip[0] && !io_open(&s[k]);
		}
		for (int r = 0; r < j->rounds; r++) {
			for (int q = 0; q < BS_N; q++) {
				int k = (q + r) % BS_N;

				s[k].gbps[r] = s[k].iops[r] = -1;
				if (live[k])
					live[k] = io_slice(&s[k], fd, j->slice_s, r);
			}
		}
		for (int k = 0; k < BS_N; k++) {
			struct buf_io *o = s[k].out;

			if (!o->skip[0] && !o->error[0]) {
				if (k == BS_HUGERING && live[BS_4K])
					o->x = paired(s[k].gbps, s[BS_4K].gbps, j->rounds);
				spread(s[k].gbps, j->rounds, &o->gbps_min, &o->gbps_max);
				o->gbps = median(s[k].gbps, j->rounds);
				o->iops = median(s[k].iops, j->rounds);
			}
			io_close(&s[k]);
		}
	}
	if (fd >= 0)
		close(fd);
	unlink(j->path);
}

static void run_read_fixed(struct buf_results *r)
{
	struct io_job *j = calloc(1, sizeof(*j));
	char err[320] = "";

	if (!j) {
		for (int n = 0; n < BUF_NIO; n++)
			for (int k = 0; k < BS_N; k++)
				r->io[n][k] = (struct buf_io){ .io_bytes = io_sizes[n], .gbps = -1,
							       .iops = -1, .x = -1, .gbps_min = -1,
							       .gbps_max = -1, .error = "out of memory" };
		return;
	}
	fprintf(stderr, "hugering-bench: buffers: READ_FIXED, O_DIRECT from tmpfs\n");
	j->rounds = r->io_rounds;
	j->slice_s = r->io_slice_s;
	snprintf(j->path, sizeof(j->path), "/dev/shm/hugering-bench-%d", (int)getpid());
	for (int n = 0; n < BUF_NIO; n++)
		for (int k = 0; k < BS_N; k++)
			j->cells[n][k] = (struct buf_io){ .io_bytes = io_sizes[n], .gbps = -1,
							  .iops = -1, .x = -1, .gbps_min = -1,
							  .gbps_max = -1 };
	in_child(io_child, j, sizeof(*j), err, sizeof(err), "READ_FIXED");
	unlink(j->path);	/* if the child died before */
	for (int n = 0; n < BUF_NIO; n++)
		for (int k = 0; k < BS_N; k++) {
			r->io[n][k] = j->cells[n][k];
			if (err[0] && !r->io[n][k].skip[0])
				snprintf(r->io[n][k].error, sizeof(r->io[n][k].error), "%s", err);
		}
	free(j);
}

/* ------------------------------------------------------------------ */
/* Multishot receive into a provided buffer ring                       */
/* ------------------------------------------------------------------ */

/* The byte at stream offset @i. */
static unsigned char pattern(size_t i)
{
	i %= PAT_PERIOD;
	return (unsigned char)(i * 7 + (i >> 5) + 1);
}

struct sender {
	int fd;
	size_t total;
	const unsigned char *src;	/* pattern from offset 0, PAT_PERIOD + SEND_CHUNK bytes */
	size_t sent;
};

static void *send_all(void *arg)
{
	struct sender *s = arg;

	while (s->sent < s->total) {
		size_t len = s->total - s->sent < SEND_CHUNK ? s->total - s->sent : SEND_CHUNK;
		ssize_t w = write(s->fd, s->src + s->sent % PAT_PERIOD, len);

		if (w <= 0)
			break;
		s->sent += (size_t)w;
	}
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

static int tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), ret = -1;

	fds[0] = fds[1] = -1;
	if (l >= 0 && !bind(l, (struct sockaddr *)&a, sizeof(a)) && !listen(l, 1) &&
	    !getsockname(l, (struct sockaddr *)&a, &alen)) {
		fds[1] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[1] >= 0 && !connect(fds[1], (struct sockaddr *)&a, sizeof(a)))
			fds[0] = accept(l, NULL, NULL);
		ret = fds[0] >= 0 ? 0 : -1;
	}
	if (l >= 0)
		close(l);
	return ret;
}

struct rx_side {
	struct buf_recv *out;
	int kind;
	struct io_uring ring;
	bool have_ring;
	struct io_uring_buf_ring *br;
	unsigned char *bufs;		/* liburing side: malloc'd */
	struct hugering_bufpool *pool;	/* hugering side */
	double gbps[BUF_MAX_ROUNDS];
};

struct rx_job {
	struct buf_recv cells[BS_N];
	int rounds;
	size_t bytes;
};

static unsigned char *rx_buf(const struct rx_side *s, unsigned bid)
{
	return s->kind == BS_4K ? s->bufs + (size_t)bid * RECV_BUF :
				  hugering_bufpool_buf(s->pool, bid);
}

static int rx_open(struct rx_side *s)
{
	struct buf_recv *o = s->out;
	struct io_uring_params p = { .flags = DEFER };
	int ret, err = 0;

	if (s->kind == BS_4K) {
		ret = io_uring_queue_init_params(64, &s->ring, &p);
	} else {
		ret = hugering_queue_init_params(64, &s->ring, &p);
	}
	if (ret) {
		snprintf(o->error, sizeof(o->error), "ring: %s", strerror(-ret));
		return -1;
	}
	s->have_ring = true;
	if (s->kind == BS_4K) {
		s->br = io_uring_setup_buf_ring(&s->ring, RECV_BUFS, RECV_BGID, 0, &err);
		s->bufs = malloc((size_t)RECV_BUFS * RECV_BUF);
		if (s->bufs)
			memset(s->bufs, 0, (size_t)RECV_BUFS * RECV_BUF);
		o->page_size = 4096;
	} else {
		struct hugering_ring_info ri;
		struct hugering_buf_ring_info bi;
		struct hugering_bufpool_info pi;

		if (!hugering_ring_info(&s->ring, &ri))
			o->ring_mode = ri.mode;
		s->br = hugering_setup_buf_ring(&s->ring, RECV_BUFS, RECV_BGID, 0, &err);
		if (s->br && !hugering_buf_ring_info(&s->ring, RECV_BGID, &bi))
			o->br_mode = bi.mode;
		if (!hugering_bufpool_create(RECV_BUFS, RECV_BUF, NULL, &s->pool) &&
		    !hugering_bufpool_info(s->pool, &pi))
			o->page_size = pi.page_size;
	}
	if (!s->br) {
		snprintf(o->error, sizeof(o->error), "buffer ring: %s", strerror(-err));
		return -1;
	}
	if (s->kind == BS_4K && !s->bufs) {
		snprintf(o->error, sizeof(o->error), "buffers: out of memory");
		return -1;
	}
	if (s->kind == BS_HUGERING && !s->pool) {
		snprintf(o->error, sizeof(o->error), "buffer pool: %s", hugering_last_error());
		return -1;
	}
	if (s->kind == BS_HUGERING) {
		hugering_bufpool_fill(s->pool, s->br, RECV_BUFS);
	} else {
		for (unsigned b = 0; b < RECV_BUFS; b++)
			io_uring_buf_ring_add(s->br, rx_buf(s, b), RECV_BUF, (unsigned short)b,
					      io_uring_buf_ring_mask(RECV_BUFS), (int)b);
		io_uring_buf_ring_advance(s->br, RECV_BUFS);
	}
	return 0;
}

static void rx_close(struct rx_side *s)
{
	if (s->br && s->kind == BS_4K)
		io_uring_free_buf_ring(&s->ring, s->br, RECV_BUFS, RECV_BGID);
	else if (s->br)
		hugering_free_buf_ring(&s->ring, s->br, RECV_BUFS, RECV_BGID);
	if (s->have_ring && s->kind == BS_4K)
		io_uring_queue_exit(&s->ring);
	else if (s->have_ring)
		hugering_queue_exit(&s->ring);
	hugering_bufpool_destroy(s->pool);
	free(s->bufs);
}

static bool rx_arm(struct rx_side *s, int fd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe)
		return false;
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RECV_BGID;
	return io_uring_submit(&s->ring) == 1;
}

/*
 * One completion: its bytes continue the stream (first and last checked
 * against the pattern), the buffer goes back to the ring.  1 at the end of
 * the stream, 0 to go on, -1 wrong.
 */
static int rx_cqe(struct rx_side *s, int fd, const struct io_uring_cqe *cqe, size_t *off)
{
	struct buf_recv *o = s->out;
	unsigned bid;
	unsigned char *b;

	o->cqes++;
	if (cqe->res == -ENOBUFS)
		return rx_arm(s, fd) ? 0 : -1;
	if (cqe->res < 0) {
		snprintf(o->error, sizeof(o->error), "recv at %zu: %s", *off, strerror(-cqe->res));
		return -1;
	}
	if (cqe->res == 0)
		return 1;
	bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	b = rx_buf(s, bid);
	if (!(cqe->flags & IORING_CQE_F_BUFFER) || bid >= RECV_BUFS || b[0] != pattern(*off) ||
	    b[cqe->res - 1] != pattern(*off + (size_t)cqe->res - 1)) {
		snprintf(o->error, sizeof(o->error), "recv at %zu: %d bytes in buffer %u are not "
			 "the stream's", *off, cqe->res, bid);
		return -1;
	}
	*off += (size_t)cqe->res;
	io_uring_buf_ring_add(s->br, b, RECV_BUF, (unsigned short)bid,
			      io_uring_buf_ring_mask(RECV_BUFS), 0);
	io_uring_buf_ring_advance(s->br, 1);
	if (!(cqe->flags & IORING_CQE_F_MORE))
		return rx_arm(s, fd) ? 0 : -1;
	return 0;
}

static bool rx_slice(struct rx_side *s, const unsigned char *src, size_t total, int r)
{
	struct buf_recv *o = s->out;
	struct sender snd = { .total = total, .src = src };
	pthread_t th;
	size_t off = 0;
	int fds[2], st = 0;
	double t0;

	if (tcp_pair(fds)) {
		snprintf(o->error, sizeof(o->error), "loopback TCP: %s", strerror(errno));
		return false;
	}
	snd.fd = fds[1];
	t0 = now_ms();
	if (!rx_arm(s, fds[0]) || pthread_create(&th, NULL, send_all, &snd)) {
		snprintf(o->error, sizeof(o->error), "start: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return false;
	}
	while (!st) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		int ret = io_uring_submit_and_wait(&s->ring, 1);

		if (ret < 0) {
			snprintf(o->error, sizeof(o->error), "wait: %s", strerror(-ret));
			st = -1;
			break;
		}
		io_uring_for_each_cqe(&s->ring, head, cqe) {
			seen++;
			st = rx_cqe(s, fds[0], cqe, &off);
			if (st)
				break;
		}
		io_uring_cq_advance(&s->ring, seen);
	}
	s->gbps[r] = off / ((now_ms() - t0) / 1e3) / 1e9;
	/* A recv still armed after an error: the socket's close ends it. */
	shutdown(fds[0], SHUT_RDWR);
	pthread_join(th, NULL);
	close(fds[0]);
	close(fds[1]);
	o->bytes += (long long)off;
	if (st > 0 && (off != total || snd.sent != total)) {
		snprintf(o->error, sizeof(o->error), "received %zu bytes of %zu (%zu sent)", off,
			 total, snd.sent);
		st = -1;
	}
	if (st < 0)
		s->gbps[r] = -1;
	return st > 0;
}

static void rx_child(void *arg)
{
	struct rx_job *j = arg;
	struct rx_side s[BS_N];
	bool live[BS_N];
	unsigned char *src = malloc(PAT_PERIOD + SEND_CHUNK);

	memset(s, 0, sizeof(s));
	for (size_t i = 0; src && i < PAT_PERIOD + SEND_CHUNK; i++)
		src[i] = pattern(i);
	for (int k = 0; k < BS_N; k++) {
		s[k].out = &j->cells[k];
		s[k].kind = k;
		live[k] = src && !rx_open(&s[k]);
	}
	for (int r = 0; r < j->rounds; r++)
		for (int q = 0; q < BS_N; q++) {
			int k = (q + r) % BS_N;

			s[k].gbps[r] = -1;
			if (live[k])
				live[k] = rx_slice(&s[k], src, j->bytes, r);
		}
	for (int k = 0; k < BS_N; k++) {
		struct buf_recv *o = s[k].out;

		if (!o->error[0]) {
			if (k == BS_HUGERING && live[BS_4K])
				o->x = paired(s[k].gbps, s[BS_4K].gbps, j->rounds);
			spread(s[k].gbps, j->rounds, &o->gbps_min, &o->gbps_max);
			o->gbps = median(s[k].gbps, j->rounds);
		}
		rx_close(&s[k]);
	}
	free(src);
}

static void run_recv(struct buf_results *r)
{
	struct rx_job j = { .rounds = r->recv_rounds, .bytes = r->recv_bytes };
	char err[320] = "";

	fprintf(stderr, "hugering-bench: buffers: multishot receive over loopback TCP\n");
	for (int k = 0; k < BS_N; k++)
		j.cells[k] = (struct buf_recv){ .gbps = -1, .x = -1, .gbps_min = -1,
						.gbps_max = -1 };
	in_child(rx_child, &j, sizeof(j), err, sizeof(err), "receive");
	for (int k = 0; k < BS_N; k++) {
		r->recv[k] = j.cells[k];
		if (err[0])
			snprintf(r->recv[k].error, sizeof(r->recv[k].error), "%s", err);
	}
}

/* ------------------------------------------------------------------ */

int buf_parse_sizes(const char *list, struct buf_opts *o)
{
	const char *p = list;

	o->nsizes = 0;
	while (*p) {
		char *end;
		unsigned long long v = strtoull(p, &end, 10);
		size_t unit = *end == 'G' ? SZ_1G : *end == 'M' ? MiB : 0;

		if (end == p || !unit || !v || o->nsizes == BUF_MAX_SIZES || v * unit > SZ_1G ||
		    (end[1] && end[1] != ',')) {
			fprintf(stderr, "hugering-bench: --buf-sizes '%s': want up to %d sizes "
				"like 64M,256M,1G (whole MiB, at most 1G); see hugering-bench "
				"--help\n", list, BUF_MAX_SIZES);
			return -1;
		}
		o->sizes[o->nsizes++] = (size_t)(v * unit);
		p = end[1] ? end + 2 : end + 1;
	}
	if (!o->nsizes) {
		fprintf(stderr, "hugering-bench: --buf-sizes '%s': no size; see hugering-bench "
			"--help\n", list);
		return -1;
	}
	return 0;
}

void bench_buffers(const struct buf_opts *o, struct buf_results *r)
{
	memset(r, 0, sizeof(*r));
	r->ran = true;
	r->reg_rounds = o->quick ? 3 : 7;
	r->io_rounds = o->quick ? 5 : 15;
	r->io_slice_s = o->quick ? 0.02 : 0.1;
	r->recv_rounds = o->quick ? 3 : 5;
	r->qd = QD;
	r->file_bytes = FILE_BYTES;
	r->recv_bytes = o->recv_bytes;
	r->recv_bufs = RECV_BUFS;
	r->recv_buf_bytes = RECV_BUF;
	r->nsizes = o->nsizes;
	run_registration(o, r);
	run_read_fixed(r);
	run_recv(r);
}

/* ------------------------------------------------------------------ */
/* Reports                                                             */
/* ------------------------------------------------------------------ */

static void cellnum(FILE *f, int width, int prec, double v)
{
	char b[32];

	if (v < 0)
		snprintf(b, sizeof(b), "-");
	else
		snprintf(b, sizeof(b), "%.*f", prec, v);
	fprintf(f, " %*s", width, b);
}

static void range(FILE *f, int width, double lo, double hi)
{
	char b[48];

	if (lo < 0)
		snprintf(b, sizeof(b), "-");
	else
		snprintf(b, sizeof(b), "%.2f-%.2f", lo, hi);
	fprintf(f, " %*s", width, b);
}

static void kb(FILE *f, int width, long long bytes)
{
	cellnum(f, width, 0, bytes < 0 ? -1 : (double)(bytes >> 10));
}

static const char *why(const char *skip, const char *error)
{
	return skip[0] ? skip : error[0] ? error : "-";
}

/* The 1 GiB registration if run (else the largest): 4K/2M time, charge check. */
static const struct buf_reg *goal_reg(const struct buf_results *r)
{
	int best = -1;

	for (int s = 0; s < r->nsizes; s++)
		if (best < 0 || r->reg[s][BP_2M].bytes > r->reg[best][BP_2M].bytes)
			best = s;
	return best < 0 ? NULL : r->reg[best];
}

static bool charges_match(const struct buf_results *r, int *checked)
{
	bool ok = true;

	*checked = 0;
	for (int s = 0; s < r->nsizes; s++)
		for (int k = 0; k < BP_N; k++)
			if (r->reg[s][k].reg_ms >= 0) {
				++*checked;
				ok &= r->reg[s][k].charge_ok;
			}
	return ok;
}

static void table_goals(FILE *f, const struct buf_results *r)
{
	const struct buf_reg *g = goal_reg(r);
	const struct buf_io *io = &r->io[BUF_NIO - 1][BS_HUGERING];
	int checked;
	bool match = charges_match(r, &checked);

	fprintf(f, "goals:\n");
	if (g && g[BP_2M].x_4k > 0)
		fprintf(f, "  registering %zu MiB in 2 MiB pages >= 5x faster than in 4 KiB pages: "
			"%.2fx: %s\n", g[BP_2M].bytes >> 20, g[BP_2M].x_4k,
			g[BP_2M].bytes < SZ_1G ? "not judged (the goal is about 1 GiB)" :
			g[BP_2M].x_4k >= 5 ? "met" : "NOT met");
	else
		fprintf(f, "  registering 1 GiB in 2 MiB pages >= 5x faster than in 4 KiB pages: "
			"not measured\n");
	fprintf(f, "  memlock charge (VmPin growth) == hugering's prediction: %s (%d cells)\n",
		!checked ? "not measured" : match ? "met" : "NOT met", checked);
	if (io->x > 0)
		fprintf(f, "  READ_FIXED at 1 MiB, hugering / 4k >= 1.0x: %.3fx: %s\n", io->x,
			io->x >= 1.0 ? "met" : "NOT met");
	else
		fprintf(f, "  READ_FIXED at 1 MiB, hugering / 4k >= 1.0x: not measured\n");
}

void buffers_table(FILE *f, const struct buf_results *r)
{
	if (!r || !r->ran)
		return;
	fprintf(f, "\nbuffers: registration of 1 MiB buffers (%d rounds, the page kinds taking "
		"turns; ms = median); x 4k = median over\nrounds of 4 KiB's time / this one's; "
		"VmPin growth (kB) next to hugering_register_charge's prediction;\nclone = "
		"hugering_clone_buffers into a second ring, again = registering in that ring "
		"again\n", r->reg_rounds);
	fprintf(f, "%-8s %-5s %7s %9s %9s %7s %11s %11s %6s %9s %9s %9s %9s  %s\n", "size", "pages",
		"entries", "reg ms", "unreg ms", "x 4k", "VmPin kB", "predict kB", "match",
		"clone ms", "clone kB", "again ms", "again kB", "note");
	for (int s = 0; s < r->nsizes; s++)
		for (int k = 0; k < BP_N; k++) {
			const struct buf_reg *c = &r->reg[s][k];
			bool m = c->reg_ms >= 0;

			fprintf(f, "%5zu MiB %-5s %7u", c->bytes >> 20, page_names[k], c->entries);
			cellnum(f, 9, 2, c->reg_ms);
			cellnum(f, 9, 2, c->unreg_ms);
			cellnum(f, 7, 2, c->x_4k);
			kb(f, 11, m ? c->pin_growth : -1);
			kb(f, 11, c->predicted);
			fprintf(f, " %6s", m ? (c->charge_ok ? "yes" : "NO") : "-");
			cellnum(f, 9, 3, c->clone_ms);
			kb(f, 9, m ? c->clone_pin : -1);
			cellnum(f, 9, 2, c->again_ms);
			kb(f, 9, m ? c->again_pin : -1);
			fprintf(f, "  %s%s\n", m && !c->cloned ? "not cloned (registered again) " : "",
				why(c->skip, c->error));
		}
	fprintf(f, "\nbuffers: READ_FIXED, O_DIRECT from a %zu MiB tmpfs file, queue depth %u, "
		"%d slices of %.2f s per cell taking turns;\nx = median over rounds of hugering "
		"/ 4k (4k: anonymous 4 KiB pages registered with liburing; hugering: a buffer "
		"pool)\n", r->file_bytes >> 20, r->qd, r->io_rounds, r->io_slice_s);
	fprintf(f, "%-8s %-9s %6s %9s %15s %10s %7s %10s  %s\n", "io", "buffers", "pages", "GB/s",
		"slices min-max", "IOPS", "x", "reads", "note");
	for (int n = 0; n < BUF_NIO; n++)
		for (int k = 0; k < BS_N; k++) {
			const struct buf_io *c = &r->io[n][k];

			fprintf(f, "%5u KiB %-9s %6s", c->io_bytes >> 10, side_names[k],
				c->page_size ? (c->page_size >= SZ_2M ? "2M" : "4k") : "-");
			cellnum(f, 9, 3, c->gbps);
			range(f, 15, c->gbps_min, c->gbps_max);
			cellnum(f, 10, 0, c->iops);
			cellnum(f, 7, 3, c->x);
			fprintf(f, " %10lld  %s\n", c->ops, why(c->skip, c->error));
		}
	fprintf(f, "\nbuffers: multishot receive over loopback TCP, %d slices of %zu MiB per side "
		"taking turns, %u buffers of %zu KiB in a\nprovided buffer ring; x = median over "
		"rounds of hugering / liburing; every byte counted, each completion's ends "
		"checked\n", r->recv_rounds, r->recv_bytes >> 20, r->recv_bufs,
		r->recv_buf_bytes >> 10);
	fprintf(f, "%-9s %-12s %-8s %6s %9s %15s %7s %12s %9s  %s\n", "ring", "ring mode",
		"buf ring", "pages", "GB/s", "slices min-max", "x", "bytes", "cqes", "note");
	for (int k = 0; k < BS_N; k++) {
		const struct buf_recv *c = &r->recv[k];

		fprintf(f, "%-9s %-12s %-8s %6s", recv_names[k],
			k == BS_4K ? "kernel" : c->ring_mode ? hugering_mode_name(c->ring_mode) : "-",
			k == BS_4K ? "liburing" : c->br_mode == HUGERING_BUF_RING_HUGE ? "huge" :
			c->br_mode ? "liburing" : "-",
			c->page_size ? (c->page_size >= SZ_2M ? "2M" : "4k") : "-");
		cellnum(f, 9, 3, c->gbps);
		range(f, 15, c->gbps_min, c->gbps_max);
		cellnum(f, 7, 3, c->x);
		fprintf(f, " %12lld %9lld  %s\n", c->bytes, c->cqes, why(c->skip, c->error));
	}
	fputc('\n', f);
	table_goals(f, r);
}

/* @s, or null when empty. */
static void jstr(FILE *f, const char *s)
{
	if (!s || !*s)
		fputs("null", f);
	else
		report_json_str(f, s);
}

static void jll(FILE *f, long long v, const char *none)
{
	if (v < 0)
		fputs(none, f);
	else
		fprintf(f, "%lld", v);
}

static void json_goals(FILE *f, const struct buf_results *r)
{
	const struct buf_reg *g = goal_reg(r);
	double x = g ? g[BP_2M].x_4k : -1, io = r->io[BUF_NIO - 1][BS_HUGERING].x;
	int checked;
	bool match = charges_match(r, &checked);

	fprintf(f, "    \"goals\": {\"register_bytes\": %zu, \"register_2m_vs_4k\": ",
		g ? g[BP_2M].bytes : 0);
	report_json_num(f, x, 3, "null");
	fprintf(f, ", \"register_goal_met\": %s, \"charge_matches_prediction\": %s, "
		"\"read_fixed_1m_vs_4k\": ", x < 0 || !g || g[BP_2M].bytes < SZ_1G ? "null" :
		x >= 5 ? "true" : "false", !checked ? "null" : match ? "true" : "false");
	report_json_num(f, io, 4, "null");
	fprintf(f, ", \"read_goal_met\": %s}\n", io < 0 ? "null" : io >= 1.0 ? "true" : "false");
}

void buffers_json(FILE *f, const struct buf_results *r)
{
	if (!r || !r->ran)
		return;
	fprintf(f, ",\n  \"buffers\": {\n    \"registration\": [\n");
	for (int s = 0; s < r->nsizes; s++)
		for (int k = 0; k < BP_N; k++) {
			const struct buf_reg *c = &r->reg[s][k];
			bool m = c->reg_ms >= 0;

			fprintf(f, "      {\"bytes\": %zu, \"pages\": \"%s\", \"entries\": %u, "
				"\"register_ms\": ", c->bytes, page_names[k], c->entries);
			report_json_num(f, c->reg_ms, 4, "null");
			fprintf(f, ", \"unregister_ms\": ");
			report_json_num(f, c->unreg_ms, 4, "null");
			fprintf(f, ", \"vs_4k\": ");
			report_json_num(f, c->x_4k, 3, "null");
			fprintf(f, ",\n       \"vmpin_growth\": ");
			jll(f, m ? c->pin_growth : -1, "null");
			fprintf(f, ", \"predicted_charge\": ");
			jll(f, c->predicted, "null");
			fprintf(f, ", \"charge_matches\": %s, \"clone_ms\": ",
				m ? (c->charge_ok ? "true" : "false") : "null");
			report_json_num(f, c->clone_ms, 4, "null");
			fprintf(f, ", \"clone_vmpin_growth\": ");
			jll(f, m ? c->clone_pin : -1, "null");
			fprintf(f, ", \"cloned\": %s, \"again_ms\": ", m ? (c->cloned ? "true" :
				"false") : "null");
			report_json_num(f, c->again_ms, 4, "null");
			fprintf(f, ", \"again_vmpin_growth\": ");
			jll(f, m ? c->again_pin : -1, "null");
			fprintf(f, ",\n       \"skipped\": ");
			jstr(f, c->skip);
			fprintf(f, ", \"error\": ");
			jstr(f, c->error);
			fprintf(f, "}%s\n", s + 1 < r->nsizes || k + 1 < BP_N ? "," : "");
		}
	fprintf(f, "    ],\n    \"read_fixed\": [\n");
	for (int n = 0; n < BUF_NIO; n++)
		for (int k = 0; k < BS_N; k++) {
			const struct buf_io *c = &r->io[n][k];

			fprintf(f, "      {\"io_bytes\": %u, \"buffers\": \"%s\", \"page_size\": %zu, "
				"\"queue_depth\": %u, \"gbps\": ", c->io_bytes, side_names[k],
				c->page_size, r->qd);
			report_json_num(f, c->gbps, 4, "null");
			fprintf(f, ", \"gbps_min\": ");
			report_json_num(f, c->gbps_min, 4, "null");
			fprintf(f, ", \"gbps_max\": ");
			report_json_num(f, c->gbps_max, 4, "null");
			fprintf(f, ", \"iops\": ");
			report_json_num(f, c->iops, 0, "null");
			fprintf(f, ", \"vs_4k\": ");
			report_json_num(f, c->x, 4, "null");
			fprintf(f, ", \"reads\": %lld,\n       \"skipped\": ", c->ops);
			jstr(f, c->skip);
			fprintf(f, ", \"error\": ");
			jstr(f, c->error);
			fprintf(f, "}%s\n", n + 1 < BUF_NIO || k + 1 < BS_N ? "," : "");
		}
	fprintf(f, "    ],\n    \"recv\": [\n");
	for (int k = 0; k < BS_N; k++) {
		const struct buf_recv *c = &r->recv[k];

		fprintf(f, "      {\"ring\": \"%s\", \"ring_mode\": ", recv_names[k]);
		jstr(f, k == BS_4K ? "kernel" : c->ring_mode ? hugering_mode_name(c->ring_mode) : "");
		fprintf(f, ", \"buf_ring\": ");
		jstr(f, k == BS_4K ? "liburing" : c->br_mode == HUGERING_BUF_RING_HUGE ? "huge" :
		     c->br_mode ? "liburing" : "");
		fprintf(f, ", \"page_size\": %zu, \"slice_bytes\": %zu, \"gbps\": ", c->page_size,
			r->recv_bytes);
		report_json_num(f, c->gbps, 4, "null");
		fprintf(f, ", \"gbps_min\": ");
		report_json_num(f, c->gbps_min, 4, "null");
		fprintf(f, ", \"gbps_max\": ");
		report_json_num(f, c->gbps_max, 4, "null");
		fprintf(f, ", \"vs_liburing\": ");
		report_json_num(f, c->x, 4, "null");
		fprintf(f, ", \"bytes\": %lld, \"cqes\": %lld,\n       \"skipped\": ", c->bytes,
			c->cqes);
		jstr(f, c->skip);
		fprintf(f, ", \"error\": ");
		jstr(f, c->error);
		fprintf(f, "}%s\n", k + 1 < BS_N ? "," : "");
	}
	fprintf(f, "    ],\n");
	json_goals(f, r);
	fprintf(f, "  }");
}

/* section,size_bytes,memory,ms,vmpin_growth,predicted_charge,gbps,iops,ratio,skipped,error */
static void csv_row(FILE *f, const char *section, size_t size, const char *mem, double ms,
		    long long pin, long long pred, double gbps, double iops, double x,
		    const char *skip, const char *error)
{
	fprintf(f, "%s,%zu,%s,", section, size, mem);
	report_json_num(f, ms, 4, "");
	fputc(',', f);
	jll(f, pin, "");
	fputc(',', f);
	jll(f, pred, "");
	fputc(',', f);
	report_json_num(f, gbps, 4, "");
	fputc(',', f);
	report_json_num(f, iops, 0, "");
	fputc(',', f);
	report_json_num(f, x, 4, "");
	fputc(',', f);
	report_csv_str(f, skip);
	fputc(',', f);
	report_csv_str(f, error);
	fputc('\n', f);
}

void buffers_csv(FILE *f, const struct buf_results *r)
{
	if (!r || !r->ran)
		return;
	fprintf(f, "section,size_bytes,memory,ms,vmpin_growth,predicted_charge,gbps,iops,ratio,"
		"skipped,error\n");
	for (int s = 0; s < r->nsizes; s++)
		for (int k = 0; k < BP_N; k++) {
			const struct buf_reg *c = &r->reg[s][k];
			bool m = c->reg_ms >= 0;

			csv_row(f, "register", c->bytes, page_names[k], c->reg_ms,
				m ? c->pin_growth : -1, c->predicted, -1, -1, c->x_4k, c->skip,
				c->error);
			csv_row(f, "clone", c->bytes, page_names[k], c->clone_ms,
				m ? c->clone_pin : -1, -1, -1, -1, -1, c->skip, c->error);
			csv_row(f, "register-again", c->bytes, page_names[k], c->again_ms,
				m ? c->again_pin : -1, c->predicted, -1, -1, -1, c->skip, c->error);
		}
	for (int n = 0; n < BUF_NIO; n++)
		for (int k = 0; k < BS_N; k++) {
			const struct buf_io *c = &r->io[n][k];

			csv_row(f, "read_fixed", c->io_bytes, side_names[k], -1, -1, -1, c->gbps,
				c->iops, c->x, c->skip, c->error);
		}
	for (int k = 0; k < BS_N; k++) {
		const struct buf_recv *c = &r->recv[k];

		csv_row(f, "recv", r->recv_bytes, recv_names[k], -1, -1, -1, c->gbps, -1, c->x,
			c->skip, c->error);
	}
}

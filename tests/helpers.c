/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <time.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include <liburing.h>

#include "helpers.h"

#define PRESENT (1ULL << 63)
#define PFN_MASK ((1ULL << 55) - 1)

static uint64_t entry(int fd, uintptr_t a)
{
	uint64_t e = 0;

	cr_assert_eq(pread(fd, &e, 8, (off_t)(a / 4096) * 8), 8, "pagemap pread");
	return e;
}

uint64_t th_pfn(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t e;

	cr_assert_geq(fd, 0);
	e = entry(fd, (uintptr_t)addr);
	close(fd);
	return (e & PRESENT) ? e & PFN_MASK : 0;
}

long th_runs(const void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr & ~4095UL;
	uintptr_t end = ((uintptr_t)addr + len + 4095) & ~4095UL;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	uint64_t prev = 0;
	long runs = 0;

	cr_assert_geq(fd, 0);
	for (; a < end; a += 4096) {
		uint64_t e = entry(fd, a), pfn = e & PFN_MASK;

		if (!(e & PRESENT) || !pfn) {
			close(fd);
			return -1;
		}
		if (!runs || pfn != prev + 1)
			runs++;
		prev = pfn;
	}
	close(fd);
	return runs;
}

bool th_pfn_visible(void)
{
	static char page[4096] __attribute__((aligned(4096)));

	page[0] = 1;
	return th_pfn(page) != 0;
}

void th_check_privilege_expectation(void)
{
	const char *want = getenv("HUGERING_TEST_EXPECT_PFN");

	if (!want)
		return;
	cr_assert_eq(th_pfn_visible(), atoi(want) != 0,
		     "harness expected PFNs %s, but they are %s",
		     atoi(want) ? "visible" : "hidden",
		     th_pfn_visible() ? "visible" : "hidden");
}

void th_init(void)
{
	th_check_privilege_expectation();
	/* The default arena (and its memfd) lives as long as the process. */
	cr_assert_not_null(hugering_default_arena());
	/*
	 * Unprivileged, ring memory is charged to the user's RLIMIT_MEMLOCK
	 * (Linux 6.14+) and uncharged only when the kernel's asynchronous
	 * teardown of the last test's rings ends (12-19 ms measured): let it.
	 */
	if (geteuid() != 0)
		usleep(40000);
}

void th_fini(void)
{
#ifdef __SANITIZE_ADDRESS__
	/* Assertions in .fini do not fail a test in Criterion 2.4: crash. */
	if (__lsan_do_recoverable_leak_check()) {
		fprintf(stderr, "LeakSanitizer found leaks (report above)\n");
		abort();
	}
#endif
}

long th_read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

long th_pool_field(size_t page_size, const char *field)
{
	char path[256];

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/%s",
		 page_size / 1024, field);
	return th_read_long(path);
}

bool th_ci(void)
{
	const char *ci = getenv("CI");

	return ci && *ci && strcmp(ci, "false");
}

bool th_all_zero(const void *p, size_t len)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

void th_need_pool(size_t page_size, long n)
{
	long usable = th_pool_field(page_size, "free_hugepages") -
		      th_pool_field(page_size, "resv_hugepages");

	if (usable >= n)
		return;
	if (th_ci())
		cr_assert_fail("needs %ld usable %zu kB hugepages, pool has %ld "
			 "(CI must reserve them: run as root)", n, page_size >> 10, usable);
	cr_skip_test("needs %ld usable %zu kB hugepages, pool has %ld: "
		     "echo %ld | sudo tee /sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
		     n, page_size >> 10, usable, page_size < GiB ? n + 64 : n,
		     page_size >> 10);
}

static long usable_now(size_t page_size)
{
	return th_pool_field(page_size, "free_hugepages") -
	       th_pool_field(page_size, "resv_hugepages");
}

/* Rings destroyed by earlier tests return pages asynchronously: let that end. */
void th_settle_pool(size_t page_size)
{
	long last = usable_now(page_size);

	for (int same = 0, waited = 0; same < 5 && waited < 2000; waited += 20) {
		long now;

		usleep(20000);
		now = usable_now(page_size);
		same = now == last ? same + 1 : 0;
		last = now;
	}
}

void th_exhaust(size_t page_size, struct th_hog *h)
{
	unsigned shift = (unsigned)__builtin_ctzl(page_size);
	long usable;

	memset(h, 0, sizeof(*h));
	h->fd = -1;
	th_settle_pool(page_size);
	usable = usable_now(page_size);
	if (usable <= 0)
		return;
	h->fd = memfd_create("hog", MFD_HUGETLB | (shift << MAP_HUGE_SHIFT));
	cr_assert_geq(h->fd, 0);
	h->len = (size_t)usable * page_size;
	cr_assert_eq(ftruncate(h->fd, (off_t)h->len), 0);
	h->addr = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       h->fd, 0);
	cr_assert_neq(h->addr, MAP_FAILED, "hog mmap");
	cr_assert_eq(usable_now(page_size), 0, "pool not empty");
}

void th_release(struct th_hog *h)
{
	if (h->addr)
		munmap(h->addr, h->len);
	if (h->fd >= 0)
		close(h->fd);
	h->addr = NULL;
	h->fd = -1;
}

int th_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	cr_assert_not_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

int th_threads_named(const char *prefix)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		char path[300], comm[64] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;	/* the thread just ended */
		if (fgets(comm, sizeof(comm), f) && !strncmp(comm, prefix, strlen(prefix)))
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

bool th_wait_pool(size_t page_size, long n, int ms)
{
	for (int waited = 0; ; waited += 5) {
		long usable = th_pool_field(page_size, "free_hugepages") -
			      th_pool_field(page_size, "resv_hugepages");

		if (usable >= n)
			return true;
		if (waited >= ms)
			return false;
		usleep(5000);
	}
}

/*
 * Publish the prepared SQEs; how many that was.  With SQPOLL,
 * io_uring_submit() returns what the SQ thread has not consumed yet (tail -
 * head), which can include earlier batches or miss SQEs already taken: count
 * them ourselves there (the completions prove they ran).
 */
static int publish(struct io_uring *ring)
{
	int prepared = (int)(ring->sq.sqe_tail - ring->sq.sqe_head);
	int ret = io_uring_submit(ring);

	cr_assert_geq(ret, 0, "submit: %s", strerror(-ret));
	return ring->flags & IORING_SETUP_SQPOLL ? prepared : ret;
}

/*
 * An SQ thread posts CQEs before it moves the SQ head (8 SQEs at a time per
 * ring when rings share it), so the SQ can look full after every completion
 * arrived.  The kernel judges "full" by the published tail, liburing by its
 * local one: publish what is prepared, then wait for room (bounded).
 */
static struct io_uring_sqe *sqpoll_sqe(struct io_uring *ring, int *submitted)
{
	struct io_uring_sqe *sqe;

	*submitted += publish(ring);
	for (int tries = 0; !(sqe = io_uring_get_sqe(ring)) && tries < 20000; tries++) {
		int ret = io_uring_sqring_wait(ring);

		cr_assert(ret >= 0 || ret == -EINTR, "sqring_wait: %s", strerror(-ret));
		if (!io_uring_sq_space_left(ring))
			usleep(1000);
	}
	return sqe;
}

void th_nops(struct io_uring *ring, unsigned n)
{
	unsigned sq = ring->sq.ring_entries, done = 0, tail0 = *ring->cq.ktail;

	while (done < n) {
		unsigned batch = n - done < sq ? n - done : sq;
		int submitted = 0;

		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (!sqe && (ring->flags & IORING_SETUP_SQPOLL))
				sqe = sqpoll_sqe(ring, &submitted);
			cr_assert_not_null(sqe, "no SQE at %u", done + i);
			io_uring_prep_nop(sqe);
			sqe->user_data = tail0 + done + i + 1;
		}
		submitted += publish(ring);
		cr_assert_eq(submitted, (int)batch);
		/* Bounded: a lost completion is a failure that says so, not a hang. */
		{
			struct __kernel_timespec ts = { .tv_sec = 20 };
			struct io_uring_cqe *cqe;
			int ret = io_uring_wait_cqes(ring, &cqe, batch, &ts, NULL);

			cr_assert_eq(ret, 0, "%u NOPs from %u: no %u completions in 20 s (%s): CQ "
				     "tail moved %u", batch, done, batch, strerror(-ret),
				     *ring->cq.ktail - tail0);
			while (io_uring_cq_ready(ring) < batch)
				cr_assert_eq(io_uring_wait_cqe_nr(ring, &cqe, batch), 0);
		}
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_cqe *cqe;

			cr_assert_eq(io_uring_peek_cqe(ring, &cqe), 0, "CQE %u missing", done + i);
			cr_assert_eq(cqe->user_data, (uint64_t)tail0 + done + i + 1,
				     "CQE out of order: got %llu, want %u",
				     (unsigned long long)cqe->user_data, tail0 + done + i + 1);
			cr_assert_eq(cqe->res, 0);
			io_uring_cqe_seen(ring, cqe);
		}
		done += batch;
	}
	cr_assert_eq(io_uring_cq_ready(ring), 0, "extra completions");
	cr_assert_eq(*ring->cq.ktail - tail0, n, "CQ tail moved %u for %u NOPs",
		     *ring->cq.ktail - tail0, n);
	cr_assert_eq(*ring->cq.koverflow, 0, "CQ overflowed");
}

int th_setup_retry(unsigned entries, const struct io_uring_params *p, struct io_uring_params *out)
{
	for (int waited = 0; ; waited += 5) {
		int fd;

		*out = *p;
		fd = io_uring_setup(entries, out);
		if (fd != -ENOMEM || geteuid() == 0 || waited >= 2000)
			return fd;
		usleep(5000);
	}
}

/* Kept copies, on a list so they stay reachable (LeakSanitizer). */
struct kept {
	struct kept *next;
	char text[];
};

static struct kept *kept;

const char *th_keep(const char *s)
{
	size_t n = strlen(s) + 1;
	struct kept *k = malloc(sizeof(*k) + n);

	cr_assert_not_null(k);
	memcpy(k->text, s, n);
	k->next = kept;
	kept = k;
	return k->text;
}

struct hugering_ring_info th_ring_in_mode(unsigned entries, struct io_uring_params *p,
					  const struct hugering_init_opts *o, int mode,
					  unsigned nops)
{
	struct hugering_ring_info info;
	struct io_uring ring;
	int ret = hugering_queue_init_opts(entries, &ring, p, o);

	cr_assert_eq(ret, 0, "init: %s: %s", strerror(-ret), hugering_last_error());
	cr_assert_eq(hugering_ring_info(&ring, &info), 0);
	cr_assert_eq(info.mode, mode, "mode %s, wanted %s: %s", hugering_mode_name(info.mode),
		     hugering_mode_name(mode), info.fallback_reason);
	if (nops)
		th_nops(&ring, nops);
	/* The reasons are the library's only until the ring exits. */
	info.fallback_reason = th_keep(info.fallback_reason);
	info.iopoll_reason = th_keep(info.iopoll_reason);
	hugering_queue_exit(&ring);
	return info;
}

int th_run(const char *cmd, char *buf, size_t len)
{
	size_t n = 0;
	FILE *p = popen(cmd, "r");
	int st;

	cr_assert_not_null(p, "popen %s", cmd);
	while (n + 1 < len && (n += fread(buf + n, 1, len - 1 - n, p)) && !feof(p))
		;
	buf[n] = '\0';
	st = pclose(p);
	cr_assert(WIFEXITED(st), "%s did not exit", cmd);
	return WEXITSTATUS(st);
}

unsigned th_no_sqarray(void)
{
	return io_uring_check_version(2, 6) ? 0 : IORING_SETUP_NO_SQARRAY;
}

const char *th_liburing_cannot(unsigned flags)
{
	static char why[200];

	if (!(flags & IORING_SETUP_SQE128) || !io_uring_check_version(2, 9))
		return NULL;
	snprintf(why, sizeof(why), "liburing %d.%d cannot place SQE128 rings in user memory "
		 "(io_uring_queue_init_mem counts 64-byte SQEs before 2.9: they would overlap "
		 "the rings)", io_uring_major_version(), io_uring_minor_version());
	return why;
}

const char *th_env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v ? v : fallback;
}

const char *th_diag_tool(void)
{
	return th_env_or("HUGERING_DIAG_BIN", "build/tools/hugering-diag");
}

const char *th_data_dir(void)
{
	return th_env_or("HUGERING_TEST_DATA", "tests/data");
}

static void write_sys(const char *path, long v)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fprintf(f, "%ld\n", v);
		fclose(f);
	}
}

void th_slurp(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(buf, 1, len - 1, f);
		fclose(f);
	}
	buf[n] = '\0';
}

void th_punch(int fd, size_t off, size_t len)
{
	cr_assert_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			       (off_t)len), 0, "punch: %s", strerror(errno));
}

/* As root, at least @n pages in the pool (the harness restores it); else skip. */
void th_grow_pool(size_t page_size, long n)
{
	char nr[128];
	long cur;

	snprintf(nr, sizeof(nr), "/sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
		 page_size >> 10);
	cur = th_read_long(nr);
	if (cur >= n)
		return;
	if (geteuid() == 0) {
		write_sys("/proc/sys/vm/compact_memory", 1);
		write_sys(nr, n);
	}
	if (th_read_long(nr) < n)
		cr_skip_test("needs a pool of %ld %zu kB hugepages (has %ld)", n, page_size >> 10,
			     th_read_long(nr));
}

/*
 * Earlier tests may have emptied and refilled the pool (nr_hugepages = 0
 * and back), and the kernel refills it from lone scattered blocks first:
 * as the harness does at the start (scripts/pool.sh pool_ensure_run),
 * compact and double the pool, up to an eighth of memory, until a run of
 * @n pages exists.  The harness restores the pool.
 */
void th_need_contig_run(size_t page_size, long n)
{
	struct hugering_region_opts o = { .size = (size_t)n * page_size, .page_size = page_size,
					  .numa_node = -1, .flags = HUGERING_REGION_CONTIG };
	long cap = sysconf(_SC_PHYS_PAGES) / 8 / (long)(page_size / 4096);
	char nr[128];

	if (geteuid() != 0 || n < 2 || page_size >= GiB)
		return;
	snprintf(nr, sizeof(nr), "/sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
		 page_size >> 10);
	for (;;) {
		struct hugering_region *r;
		long cur = th_read_long(nr);

		if (!hugering_region_alloc(&o, &r)) {
			hugering_region_free(r);
			return;
		}
		if (cur < 0 || cur >= cap)
			break;
		write_sys("/proc/sys/vm/compact_memory", 1);
		write_sys(nr, 2 * cur < cap ? 2 * cur : cap);
		if (th_read_long(nr) <= cur)
			break;
	}
	cr_skip_test("memory too fragmented: no %ld physically adjacent %zu kB hugepages in a "
		     "pool of %ld pages (grown up to an eighth of memory after compaction): %s",
		     n, page_size >> 10, th_read_long(nr), hugering_last_error());
}

void *th_send_all(void *arg)
{
	struct th_sender *s = arg;
	unsigned char buf[3000];
	size_t off = 0, n = 1;

	while (off < s->total) {
		size_t len = n % sizeof(buf) + 1;
		ssize_t w;

		if (len > s->total - off)
			len = s->total - off;
		for (size_t i = 0; i < len; i++)
			buf[i] = s->pattern(off + i);
		w = write(s->fd, buf, len);
		if (w <= 0)
			break;
		off += (size_t)w;
		n = n * 31 + 17;
	}
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

void th_sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&t, NULL);
}

struct hugering_arena *th_new_arena(void)
{
	struct hugering_arena_opts o = { .numa_node = -1 };
	struct hugering_arena *a;

	cr_assert_eq(hugering_arena_create(&o, &a), 0, "%s", hugering_last_error());
	return a;
}

void th_drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];

	cr_assert_eq(syscall(SYS_capget, &h, d), 0);
	d[0].effective &= ~(1u << CAP_IPC_LOCK);
	cr_assert_eq(syscall(SYS_capset, &h, d), 0, "capset: %s", strerror(errno));
}

/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the public options structs through the entry points
 * that take them, without consuming hugepages: hugering_region_alloc on
 * base pages or page sizes the kernel does not offer (at most 64 KiB),
 * hugering_arena_create/stats/trim/destroy, and hugering_queue_init_opts
 * under HUGERING_POLICY_KERNEL (kernel-mapped rings, entries < 8192).
 * Every call must return 0 or a negative errno with a reason in
 * hugering_last_error(); success must be undone without leaking memory or
 * file descriptors.  The input is read as a stream of little-endian words.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <hugering.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct in {
	const uint8_t *d;
	size_t n;
};

static uint64_t take(struct in *in, int bytes)
{
	uint64_t v = 0;

	for (int i = 0; i < bytes && in->n; i++, in->d++, in->n--)
		v |= (uint64_t)*in->d << (8 * i);
	return v;
}

static void fail(const char *what, int ret)
{
	fprintf(stderr, "fuzz_opts: %s (ret %d, last error '%s')\n", what, ret,
		hugering_last_error());
	abort();
}

#define require(cond, ret) do { if (!(cond)) fail(#cond, (ret)); } while (0)

/* 0, or -errno with a reason. */
static void check_ret(int ret)
{
	require(ret <= 0 && ret > -4096, ret);
	if (ret < 0)
		require(hugering_last_error()[0], ret);
}

/* A reserved-field word: mostly zero, so the rest of the checks are reached. */
static unsigned resv_word(struct in *in)
{
	unsigned sel = (unsigned)take(in, 1);

	return sel < 224 ? 0 : (unsigned)take(in, 4);
}

/* Page sizes that take no hugepage: base pages and sizes no kernel offers. */
static size_t region_page_size(struct in *in)
{
	static const size_t sizes[] = { 4096, 4096, 1, 2048, 8192, 3u << 20, (2u << 20) + 4096,
					1ull << 40, SIZE_MAX, (size_t)1 << 63 };

	return sizes[take(in, 1) % (sizeof(sizes) / sizeof(sizes[0]))];
}

/* Anything goes for arenas: creating one takes no hugepage. */
static size_t any_page_size(struct in *in)
{
	static const size_t sizes[] = { 0, 4096, 2u << 20, 1u << 30, 1, 1024, 8192, 3u << 20,
					SIZE_MAX };
	unsigned sel = (unsigned)take(in, 1);

	return sel < 200 ? sizes[sel % (sizeof(sizes) / sizeof(sizes[0]))] : take(in, 8);
}

static int node_value(struct in *in)
{
	static const int nodes[] = { 0, -1, 1, -2, 1023, 1024, INT32_MAX, INT32_MIN };
	unsigned sel = (unsigned)take(in, 1);

	return sel < 200 ? nodes[sel % 8] : (int)take(in, 4);
}

static void fuzz_region(struct in *in)
{
	struct hugering_region_opts o;
	struct hugering_region *r = NULL;
	struct hugering_region_info info;
	uint64_t size = take(in, 4);
	int ret;

	memset(&o, 0, sizeof(o));
	/* Small, or beyond all of RAM (refused); never gigabytes of base pages. */
	o.size = size & 0x80000000u ? SIZE_MAX - (size & 0xffff) : size & 0xffff;
	o.page_size = region_page_size(in);
	o.numa_node = node_value(in);
	o.flags = (unsigned)take(in, 1);
	if (o.flags & 0x80)
		o.flags |= (unsigned)take(in, 4);
	o.max_tries = (unsigned)take(in, 1);
	for (int i = 0; i < 3; i++)
		o.resv[i] = resv_word(in);
	ret = hugering_region_alloc(&o, &r);
	check_ret(ret);
	if (ret) {
		require(r == NULL || ret == 0, ret);
		return;
	}
	require(r != NULL, ret);
	require(hugering_region_size(r) >= o.size, ret);
	require(hugering_region_page_size(r) == 4096, ret);
	require(hugering_region_info(r, &info) == 0, -1);
	require(info.addr == hugering_region_addr(r) && info.size == hugering_region_size(r), 0);
	require(info.fallback_reason && strlen(info.fallback_reason) < SIZE_MAX, 0);
	((volatile char *)info.addr)[0] = 1;
	((volatile char *)info.addr)[info.size - 1] = 1;
	hugering_region_free(r);
}

static struct hugering_arena *fuzz_arena(struct in *in)
{
	struct hugering_arena_opts o;
	struct hugering_arena_stats st;
	struct hugering_arena *a = NULL;
	int ret;

	memset(&o, 0, sizeof(o));
	o.page_size = any_page_size(in);
	o.numa_node = node_value(in);
	o.max_bytes = take(in, 1) < 128 ? 0 : take(in, 8);
	o.wait_ms = (int)take(in, 1) - 2;
	if (o.wait_ms > 100)
		o.wait_ms = (int)take(in, 4);
	o.flags = (unsigned)take(in, 1);
	if (o.flags & 0x80)
		o.flags |= (unsigned)take(in, 4);
	for (int i = 0; i < 4; i++)
		o.resv[i] = resv_word(in);
	ret = hugering_arena_create(&o, &a);
	check_ret(ret);
	if (ret) {
		require(a == NULL, ret);
		return NULL;
	}
	require(a != NULL, 0);
	check_ret(hugering_arena_stats(a, &st));
	require(st.pages_held == 0 && st.rings_live == 0, 0);
	check_ret(hugering_arena_trim(a));
	return a;
}

static void fuzz_queue(struct in *in, struct hugering_arena *a)
{
	static int fds[4];
	struct hugering_init_opts o;
	struct io_uring_params p;
	struct hugering_ring_info info;
	struct io_uring ring;
	unsigned entries = (unsigned)take(in, 2) & 0x1fff;
	int ret, with_p;

	memset(&o, 0, sizeof(o));
	memset(&p, 0, sizeof(p));
	o.policy = HUGERING_POLICY_KERNEL;
	o.arena = take(in, 1) & 1 ? a : NULL;
	o.page_size = any_page_size(in);
	o.numa_node = node_value(in);
	o.flags = (unsigned)take(in, 1);
	if (o.flags & 0x80)
		o.flags |= (unsigned)take(in, 4);
	for (int i = 0; i < 4; i++)
		o.resv[i] = resv_word(in);
	/* iopoll_fds: a few descriptors (stdio, closed ones, -1), or NULL. */
	o.n_iopoll_fds = (unsigned)take(in, 1);
	if (o.n_iopoll_fds < 128) {
		o.n_iopoll_fds %= 5;
		for (unsigned i = 0; i < 4; i++)
			fds[i] = (int)(take(in, 1) % 8) - 1;
		o.iopoll_fds = fds;
	}
	with_p = take(in, 1) != 0xff;
	p.flags = (unsigned)take(in, 4);
	p.cq_entries = (unsigned)take(in, 3);
	p.sq_thread_cpu = (unsigned)take(in, 1) < 240 ? (unsigned)take(in, 1) % 4 : (unsigned)take(in, 4);
	p.sq_thread_idle = (unsigned)take(in, 1) % 20;	/* ms an SQPOLL thread waits */
	p.wq_fd = (unsigned)((int)(take(in, 1) % 12) - 1);
	for (int i = 0; i < 3; i++)
		p.resv[i] = resv_word(in);
	memset(&ring, 0, sizeof(ring));
	ret = hugering_queue_init_opts(entries, &ring, with_p ? &p : NULL, &o);
	check_ret(ret);
	if (ret) {
		require(hugering_ring_info(&ring, &info) < 0 || ring.ring_fd > 0, ret);
		return;
	}
	require(hugering_ring_info(&ring, &info) == 0, 0);
	require(info.mode == HUGERING_MODE_KERNEL, 0);
	require(info.sq_entries >= entries && info.cq_entries >= info.sq_entries, 0);
	require(info.fallback_reason && strlen(info.fallback_reason) < SIZE_MAX, 0);
	require(info.iopoll_reason && strlen(info.iopoll_reason) < SIZE_MAX, 0);
	hugering_queue_exit(&ring);
}

/*
 * Descriptors of the kinds the library opens (rings, memfds, /proc and
 * /sys files) open now.  Others are libFuzzer's: its symbolizer's pipes,
 * the /dev/null it puts stdout on when merging.
 */
static int open_fds(char *last, size_t len)
{
	char link[64], what[256];
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		fail("opendir /proc/self/fd", -errno);
	while ((e = readdir(d))) {
		ssize_t k;

		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		k = readlink(link, what, sizeof(what) - 1);
		if (k < 0)
			continue;
		what[k] = '\0';
		if (strcmp(what, "anon_inode:[io_uring]") && strncmp(what, "/memfd:", 7) &&
		    strncmp(what, "/proc/", 6) && strncmp(what, "/sys/", 5))
			continue;
		snprintf(last, len, "%s -> %s", e->d_name, what);
		n++;
	}
	closedir(d);
	return n;
}

static int fd_mark = -1;
static char fd_last[320];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct io_uring ring;
	struct hugering_kernel_caps caps;
	struct hugering_init_opts o = { .policy = HUGERING_POLICY_KERNEL };

	(void)argc;
	(void)argv;
	/* What the library keeps for the process (probe, default arena) first. */
	hugering_probe_kernel(&caps);
	hugering_default_arena();
	if (!hugering_queue_init_opts(8, &ring, NULL, &o))
		hugering_queue_exit(&ring);
	fd_mark = open_fds(fd_last, sizeof(fd_last));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct hugering_arena *a;

	fuzz_region(&in);
	a = fuzz_arena(&in);
	fuzz_queue(&in, a);
	if (a)
		check_ret(hugering_arena_destroy(a));
	/* The default arena is the library's: destroying it is refused. */
	if (size && data[0] == 0x42)
		require(hugering_arena_destroy(hugering_default_arena()) < 0, 0);
	if (open_fds(fd_last, sizeof(fd_last)) != fd_mark) {
		fprintf(stderr, "fuzz_opts: %d descriptors open, %d before; last %s\n",
			open_fds(fd_last, sizeof(fd_last)), fd_mark, fd_last);
		fail("a descriptor leaked", 0);
	}
	return 0;
}

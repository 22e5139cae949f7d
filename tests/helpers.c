/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

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

long th_pool_field(size_t page_size, const char *field)
{
	char path[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/%s",
		 page_size / 1024, field);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

void th_need_pool(size_t page_size, long n)
{
	long usable = th_pool_field(page_size, "free_hugepages") -
		      th_pool_field(page_size, "resv_hugepages");
	const char *ci = getenv("CI");

	if (usable >= n)
		return;
	if (ci && *ci && strcmp(ci, "false"))
		cr_assert_fail("needs %ld usable %zu kB hugepages, pool has %ld "
			 "(CI must reserve them: run as root)", n, page_size >> 10, usable);
	cr_skip_test("needs %ld usable %zu kB hugepages, pool has %ld: "
		     "echo %ld | sudo tee /sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
		     n, page_size >> 10, usable, page_size < GiB ? n + 64 : n,
		     page_size >> 10);
}

void th_exhaust(size_t page_size, struct th_hog *h)
{
	long usable = th_pool_field(page_size, "free_hugepages") -
		      th_pool_field(page_size, "resv_hugepages");
	unsigned shift = (unsigned)__builtin_ctzl(page_size);

	memset(h, 0, sizeof(*h));
	h->fd = -1;
	if (usable <= 0)
		return;
	h->fd = memfd_create("hog", MFD_HUGETLB | (shift << MAP_HUGE_SHIFT));
	cr_assert_geq(h->fd, 0);
	h->len = (size_t)usable * page_size;
	cr_assert_eq(ftruncate(h->fd, (off_t)h->len), 0);
	h->addr = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       h->fd, 0);
	cr_assert_neq(h->addr, MAP_FAILED, "hog mmap");
	cr_assert_eq(th_pool_field(page_size, "free_hugepages") -
		     th_pool_field(page_size, "resv_hugepages"), 0, "pool not empty");
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

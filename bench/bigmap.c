/* SPDX-License-Identifier: MIT */
/*
 * The big-map phase (hugering-bench --big-map, issue 16 defect 14): does
 * creating a region or a large ring cost more in a process with a large,
 * many-VMA address space, as databases and runtimes have?  Creation is
 * timed in this process as it is (small), then again after a 6 GiB heap
 * of many VMAs is mapped, and reported as a ratio (goal <= 1.5).
 *
 * The heap is reserved, not touched (MAP_NORESERVE): only its VMAs matter.
 * It is split into VMAs by alternating the protection of its chunks, and
 * placed low in the address space (32 TiB, where a brk heap or a JVM's
 * reserved heap sits, below every mmap the library makes), so that a scan
 * of /proc/self/smaps in address order has to pass all of it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <hugering.h>

#include "bench.h"
#include "../lib/compat.h"

#define HEAP_AT ((void *)0x200000000000UL)
#define HEAP_BYTES (6UL << 30)
#define HEAP_VMAS 32768UL	/* max_map_count is 65530 by default */
#define SAMPLES 31

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_ms(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_ms);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Median ms of creating a 2 MiB region (FALLBACK: a short pool still runs). */
static int time_region(double *out, char *err, size_t len)
{
	struct hugering_region_opts o = { .size = 2UL << 20, .flags = HUGERING_REGION_FALLBACK };
	double v[SAMPLES];

	for (int i = 0; i < SAMPLES; i++) {
		struct hugering_region *r;
		double t0 = now_ms();
		int ret = hugering_region_alloc(&o, &r);

		v[i] = now_ms() - t0;
		if (ret) {
			snprintf(err, len, "region: %s: %s", strerror(-ret), hugering_last_error());
			return ret;
		}
		hugering_region_free(r);
	}
	*out = median(v, SAMPLES);
	return 0;
}

/* Median ms of creating a 32768/65536 ring through the factory (auto policy). */
static int time_ring(double *out, int *mode, char *err, size_t len)
{
	double v[SAMPLES];

	for (int i = 0; i < SAMPLES; i++) {
		struct io_uring ring;
		struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE, .cq_entries = 65536 };
		struct hugering_ring_info info;
		double t0 = now_ms();
		int ret = hugering_queue_init_params(32768, &ring, &p);

		v[i] = now_ms() - t0;
		if (ret) {
			snprintf(err, len, "ring: %s: %s", strerror(-ret), hugering_last_error());
			return ret;
		}
		if (!hugering_ring_info(&ring, &info))
			*mode = info.mode;
		hugering_queue_exit(&ring);
	}
	*out = median(v, SAMPLES);
	return 0;
}

/* The heap: one reservation, every other chunk read-only: HEAP_VMAS VMAs. */
static char *map_heap(char *err, size_t len)
{
	size_t chunk = HEAP_BYTES / HEAP_VMAS;
	char *p = mmap(HEAP_AT, HEAP_BYTES, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)	/* taken: anywhere, which may put it above the library's */
		p = mmap(NULL, HEAP_BYTES, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		snprintf(err, len, "cannot reserve the 6 GiB heap: %s", strerror(errno));
		return NULL;
	}
	for (size_t i = 1; i < HEAP_VMAS; i += 2) {
		if (mprotect(p + i * chunk, chunk, PROT_READ)) {
			snprintf(err, len, "heap VMA %zu: mprotect: %s (vm.max_map_count?)", i,
				 strerror(errno));
			munmap(p, HEAP_BYTES);
			return NULL;
		}
	}
	return p;
}

/* VMAs of this process, counted from /proc/self/maps (outside the timing). */
static long count_vmas(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void ratio(struct bigmap_row *r)
{
	r->ratio = r->small_ms > 0 && r->big_ms > 0 ? r->big_ms / r->small_ms : -1;
}

void bench_bigmap(struct bigmap *b)
{
	char *heap;
	int ret;

	memset(b, 0, sizeof(*b));
	b->ran = true;
	snprintf(b->rows[0].what, sizeof(b->rows[0].what), "region 2 MiB");
	snprintf(b->rows[1].what, sizeof(b->rows[1].what), "ring 32768/65536");
	b->rows[0].ratio = b->rows[1].ratio = -1;
	b->vmas_small = count_vmas();
	ret = time_region(&b->rows[0].small_ms, b->error, sizeof(b->error));
	if (!ret)
		ret = time_ring(&b->rows[1].small_ms, &b->ring_mode, b->error, sizeof(b->error));
	if (ret)
		return;
	heap = map_heap(b->error, sizeof(b->error));
	if (!heap)
		return;
	b->heap_bytes = HEAP_BYTES;
	b->heap_low = heap == (char *)HEAP_AT;
	b->vmas_big = count_vmas();
	ret = time_region(&b->rows[0].big_ms, b->error, sizeof(b->error));
	if (!ret)
		ret = time_ring(&b->rows[1].big_ms, &b->ring_mode, b->error, sizeof(b->error));
	munmap(heap, HEAP_BYTES);
	ratio(&b->rows[0]);
	ratio(&b->rows[1]);
}

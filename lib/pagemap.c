/* SPDX-License-Identifier: MIT */
/*
 * Pagemap: virtual to physical frame numbers through /proc/self/pagemap,
 * physically contiguous runs, the page size and NUMA node behind an address,
 * and hugering_mem_verify().
 *
 * PFNs read as 0 without CAP_SYS_ADMIN (since Linux 4.2); the present bit is
 * still reported.  A present page never has PFN 0 in practice (x86 reserves
 * it), so "present with PFN 0" means "hidden".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* Entries read per pread when walking a long range (16 KiB of pagemap). */
#define PAGEMAP_CHUNK 2048

int hr_pagemap_open(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int hr_pagemap_read(int fd, uintptr_t addr, size_t n, uint64_t *out)
{
	off_t off = (off_t)(addr / HR_BASE_PAGE) * 8;
	size_t want = n * 8;
	ssize_t got = pread(fd, out, want, off);

	if (got < 0)
		return -errno;
	return (size_t)got == want ? 0 : -EIO;
}

int hr_pfn_visible(void)
{
	/* Our own stack page is certainly present. */
	volatile char probe = 1;
	uint64_t e;
	int fd = hr_pagemap_open(), ret;

	if (fd < 0)
		return fd;
	ret = hr_pagemap_read(fd, (uintptr_t)&probe, 1, &e);
	close(fd);
	if (ret < 0)
		return ret;
	if (!(e & HR_PAGEMAP_PRESENT))
		return -EIO;
	return (e & HR_PAGEMAP_PFN_MASK) != 0;
}

int hr_numa_nodes_of(void *const *addrs, size_t n, int *nodes)
{
	/* move_pages with no target nodes only reports where pages are. */
	long ret = syscall(SYS_move_pages, 0, (unsigned long)n, addrs, NULL,
			   nodes, 0);

	return ret < 0 ? -errno : 0;
}

/*
 * Page size of the VMA containing @addr, from /proc/self/smaps.  For a
 * non-hugetlb VMA, @backing says whether THP covers all of it (THP), part
 * of it (MIXED) or none (BASE).
 */
size_t hr_vma_page_size(uintptr_t addr, int *backing, uintptr_t *vma_end)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	size_t kps = 0;
	unsigned long rss = 0, thp = 0;

	*backing = HUGERING_BACKING_UNKNOWN;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, v;

		/* Field names never parse as "hex-hex": only VMA headers do. */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			if (in)
				break;
			in = addr >= lo && addr < hi;
			if (in && vma_end)
				*vma_end = hi;
			continue;
		}
		if (!in)
			continue;
		if (sscanf(line, "KernelPageSize: %lu kB", &v) == 1)
			kps = v * 1024;
		else if (sscanf(line, "Rss: %lu kB", &v) == 1)
			rss = v;
		else if (sscanf(line, "AnonHugePages: %lu kB", &v) == 1 ||
			 sscanf(line, "ShmemPmdMapped: %lu kB", &v) == 1 ||
			 sscanf(line, "FilePmdMapped: %lu kB", &v) == 1)
			thp += v;
	}
	fclose(f);
	if (!kps)
		return 0;
	if (kps > HR_BASE_PAGE)
		*backing = HUGERING_BACKING_HUGETLB;
	else if (thp && thp >= rss)
		*backing = HUGERING_BACKING_THP;
	else if (thp)
		*backing = HUGERING_BACKING_MIXED;
	else
		*backing = HUGERING_BACKING_BASE;
	return kps;
}

static size_t thp_pmd_size(void)
{
	long v;

	if (hr_read_long("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", &v) < 0)
		return 2UL << 20;
	return (size_t)v;
}

static int addr_info(const void *addr, struct hugering_addr_info *out)
{
	uintptr_t a = (uintptr_t)addr;
	uint64_t e;
	int fd, ret, backing;
	size_t ps;

	if (!addr || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->numa_node = -1;
	ps = hr_vma_page_size(a, &backing, NULL);
	if (!ps)
		return -EFAULT;
	fd = hr_pagemap_open();
	if (fd < 0)
		return fd;
	ret = hr_pagemap_read(fd, a, 1, &e);
	close(fd);
	if (ret < 0)
		return ret;
	out->present = !!(e & HR_PAGEMAP_PRESENT);
	out->swapped = !!(e & HR_PAGEMAP_SWAPPED);
	if (out->present) {
		out->pfn = e & HR_PAGEMAP_PFN_MASK;
		if (out->pfn)
			out->phys_addr = out->pfn * HR_BASE_PAGE + a % HR_BASE_PAGE;
		void *page = (void *)(a & ~(HR_BASE_PAGE - 1));
		int node;

		if (hr_numa_nodes_of(&page, 1, &node) == 0 && node >= 0)
			out->numa_node = node;
	}
	out->backing = backing;
	out->page_size = backing == HUGERING_BACKING_THP ? thp_pmd_size() : ps;
	return 0;
}

/* Walk state for hugering_mem_verify. */
struct walk {
	uint64_t prev_pfn;
	bool have_prev;
	bool hidden;		/* a present page read PFN 0 */
	unsigned runs;
	size_t missing;
	uint64_t first_pfn;
};

static void walk_entry(struct walk *w, uint64_t e, size_t idx)
{
	uint64_t pfn = e & HR_PAGEMAP_PFN_MASK;

	if (!(e & HR_PAGEMAP_PRESENT)) {
		w->missing++;
		w->have_prev = false;
		return;
	}
	if (!pfn) {
		w->hidden = true;
		return;
	}
	if (idx == 0)
		w->first_pfn = pfn;
	if (!w->have_prev || pfn != w->prev_pfn + 1)
		w->runs++;
	w->prev_pfn = pfn;
	w->have_prev = true;
}

static int walk_range(uintptr_t start, size_t n, struct walk *w)
{
	uint64_t buf[PAGEMAP_CHUNK];
	int fd = hr_pagemap_open(), ret = 0;

	if (fd < 0)
		return fd;
	for (size_t done = 0; done < n && !ret; ) {
		size_t k = n - done < PAGEMAP_CHUNK ? n - done : PAGEMAP_CHUNK;

		ret = hr_pagemap_read(fd, start + done * HR_BASE_PAGE, k, buf);
		for (size_t i = 0; !ret && i < k; i++)
			walk_entry(w, buf[i], done + i);
		done += k;
	}
	close(fd);
	return ret;
}

/*
 * One node for the whole range, or -1.  Asks once per backing page (once per
 * hugepage), in batches.
 */
static int range_node(uintptr_t start, size_t len, size_t step)
{
	enum { BATCH = 512 };
	void *addrs[BATCH];
	int nodes[BATCH], node = -2;
	uintptr_t first = start & ~(step - 1);

	for (uintptr_t a = first; a < start + len; ) {
		size_t k = 0;

		while (k < BATCH && a < start + len) {
			addrs[k++] = (void *)a;
			a += step;
		}
		if (hr_numa_nodes_of(addrs, k, nodes) < 0)
			return -1;
		for (size_t i = 0; i < k; i++) {
			if (nodes[i] < 0 || (node != -2 && nodes[i] != node))
				return -1;
			node = nodes[i];
		}
	}
	return node < 0 ? -1 : node;
}

/* Every VMA over the range must exist; returns the smallest page size. */
static size_t range_page_size(uintptr_t start, size_t len, int *backing)
{
	size_t min_ps = 0;
	int first_backing = HUGERING_BACKING_UNKNOWN;

	for (uintptr_t a = start; a < start + len; ) {
		int b;
		uintptr_t vma_end = 0;
		size_t ps = hr_vma_page_size(a, &b, &vma_end);

		if (!ps)
			return 0;
		if (!min_ps || ps < min_ps)
			min_ps = ps;
		if (first_backing == HUGERING_BACKING_UNKNOWN)
			first_backing = b;
		else if (b != first_backing)
			first_backing = HUGERING_BACKING_MIXED;
		a = vma_end;
	}
	*backing = first_backing;
	return min_ps;
}

int hr_mem_verify(const void *addr, size_t len, struct hugering_verify *out)
{
	uintptr_t a = (uintptr_t)addr, start, end;
	struct walk w = { 0 };
	int ret, backing;
	size_t ps, n;

	if (!addr || !out || !len || a + len < a)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->numa_node = -1;
	start = a & ~(HR_BASE_PAGE - 1);
	end = HR_ALIGN_UP(a + len, HR_BASE_PAGE);
	n = (end - start) / HR_BASE_PAGE;

	ps = range_page_size(start, end - start, &backing);
	if (!ps)
		return -EFAULT;
	ret = walk_range(start, n, &w);
	if (ret < 0)
		return ret;

	out->pages = n;
	out->pages_missing = w.missing;
	out->backing = backing;
	out->page_size = backing == HUGERING_BACKING_THP ? thp_pmd_size() : ps;
	if (!w.missing)
		out->numa_node = range_node(start, end - start,
					    ps > HR_BASE_PAGE ? ps : HR_BASE_PAGE);

	if (w.missing) {
		/* Absent pages have no frame yet: nothing can be claimed. */
		out->contiguous = HUGERING_CONTIG_UNKNOWN;
		out->proof = HUGERING_PROOF_NONE;
	} else if (!w.hidden) {
		out->contiguous = w.runs == 1 ? HUGERING_CONTIG_YES : HUGERING_CONTIG_NO;
		out->proof = HUGERING_PROOF_PAGEMAP;
		out->runs = w.runs;
		out->phys_addr = w.first_pfn * HR_BASE_PAGE + a % HR_BASE_PAGE;
	} else if (backing == HUGERING_BACKING_HUGETLB &&
		   (a & ~(ps - 1)) == ((a + len - 1) & ~(ps - 1))) {
		/* Inside one hugetlb page: one physical page by definition. */
		out->contiguous = HUGERING_CONTIG_YES;
		out->proof = HUGERING_PROOF_CONSTRUCTION;
		out->runs = 1;
	} else {
		out->contiguous = HUGERING_CONTIG_UNKNOWN;
		out->proof = HUGERING_PROOF_NONE;
	}
	return 0;
}

const char *hugering_contig_name(int c)
{
	switch (c) {
	case HUGERING_CONTIG_YES: return "yes";
	case HUGERING_CONTIG_NO: return "no";
	default: return "unknown";
	}
}

const char *hugering_proof_name(int p)
{
	switch (p) {
	case HUGERING_PROOF_PAGEMAP: return "pagemap";
	case HUGERING_PROOF_CONSTRUCTION: return "construction";
	default: return "none";
	}
}

const char *hugering_backing_name(int b)
{
	switch (b) {
	case HUGERING_BACKING_BASE: return "base";
	case HUGERING_BACKING_THP: return "thp";
	case HUGERING_BACKING_HUGETLB: return "hugetlb";
	case HUGERING_BACKING_MIXED: return "mixed";
	default: return "unknown";
	}
}

int hugering_pfn_visible(void)
{
	return HR_PUBLIC(hr_pfn_visible());
}

int hugering_addr_info(const void *addr, struct hugering_addr_info *out)
{
	return HR_PUBLIC(addr_info(addr, out));
}

int hugering_mem_verify(const void *addr, size_t len, struct hugering_verify *out)
{
	return HR_PUBLIC(hr_mem_verify(addr, len, out));
}

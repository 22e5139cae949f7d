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
#include <sys/ioctl.h>
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
	ssize_t got = hr_sys_pread(fd, out, want, off);

	if (got < 0)
		return (int)got;
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
	return hr_sys_move_pages((unsigned long)n, addrs, nodes);
}

/*
 * The kernel's ABI for PROCMAP_QUERY (Linux 6.11) and PAGEMAP_SCAN (6.7),
 * under our own names so that older headers build; _IOWR encodes the size,
 * so the numbers match the kernel's only if the layouts do.
 */
struct hr_procmap_query {
	uint64_t size, query_flags, query_addr;
	uint64_t vma_start, vma_end, vma_flags, vma_page_size, vma_offset, inode;
	uint32_t dev_major, dev_minor, vma_name_size, build_id_size;
	uint64_t vma_name_addr, build_id_addr;
};
#define HR_PROCMAP_QUERY _IOWR('f', 17, struct hr_procmap_query)

struct hr_page_region {
	uint64_t start, end, categories;
};
struct hr_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define HR_PAGEMAP_SCAN _IOWR('f', 16, struct hr_pm_scan_arg)
#define HR_PAGE_IS_PRESENT (1 << 3)
#define HR_PAGE_IS_HUGE (1 << 6)

/*
 * Backing of a base-page VMA from its present pages: all, some or none
 * mapped huge (THP), as smaps's Rss against AnonHugePages would say.  One
 * PAGEMAP_SCAN walk of this VMA's page tables; -errno where the kernel has
 * no PAGEMAP_SCAN.
 */
static int scan_thp(uintptr_t lo, uintptr_t hi, int *backing)
{
	struct hr_page_region vec[64];
	struct hr_pm_scan_arg a = {
		.size = sizeof(a), .start = lo, .end = hi,
		.vec = (uintptr_t)vec, .vec_len = 64,
		.category_mask = HR_PAGE_IS_PRESENT,
		.return_mask = HR_PAGE_IS_PRESENT | HR_PAGE_IS_HUGE,
	};
	uint64_t present = 0, huge = 0;
	int fd = hr_pagemap_open();

	if (fd < 0)
		return fd;
	while (a.start < a.end) {
		long n = hr_sys_ioctl(fd, HR_PAGEMAP_SCAN, &a);

		if (n < 0) {
			close(fd);
			return (int)n;
		}
		for (long i = 0; i < n; i++) {
			present += vec[i].end - vec[i].start;
			if (vec[i].categories & HR_PAGE_IS_HUGE)
				huge += vec[i].end - vec[i].start;
		}
		if (a.walk_end <= a.start)
			break;
		a.start = a.walk_end;
	}
	close(fd);
	*backing = !huge ? HUGERING_BACKING_BASE :
		   huge >= present ? HUGERING_BACKING_THP : HUGERING_BACKING_MIXED;
	return 0;
}

/*
 * The VMA holding @addr through PROCMAP_QUERY: only that VMA is looked up,
 * whatever the size of the process's map.  -ENOTTY (or -EINVAL) before
 * Linux 6.11, -ENOENT if @addr is not mapped.
 */
static int query_vma(uintptr_t addr, uintptr_t *lo, uintptr_t *hi, size_t *ps)
{
	struct hr_procmap_query q = {
		.size = sizeof(q), .query_addr = addr,
	};
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), ret = 0;

	if (fd < 0)
		return -errno;
	ret = (int)hr_sys_ioctl(fd, HR_PROCMAP_QUERY, &q);
	close(fd);
	if (ret)
		return ret;
	*lo = q.vma_start;
	*hi = q.vma_end;
	*ps = q.vma_page_size;
	return 0;
}

/*
 * The fallback for kernels without PROCMAP_QUERY: /proc/self/smaps up to
 * the VMA holding @addr, not a line further.  For a non-hugetlb VMA,
 * @backing says whether THP covers all of it (THP), part of it (MIXED) or
 * none (BASE).
 */
static size_t smaps_page_size(uintptr_t addr, int *backing, uintptr_t *vma_end)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	size_t kps = 0;
	unsigned long rss = 0, thp = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, v;

		/* Field names never parse as "hex-hex": only VMA headers do. */
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			if (in || lo > addr)
				break;	/* sorted by address: @addr is behind us */
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

/*
 * Page size of the VMA containing @addr.  Creation cost must not grow with
 * the host process's map (a database's can hold tens of thousands of VMAs;
 * reading all of smaps took 57 ms there), so the VMA is asked for by
 * address, and smaps is read, up to that VMA only, where the kernel cannot
 * answer.
 */
size_t hr_vma_page_size(uintptr_t addr, int *backing, uintptr_t *vma_end)
{
	uintptr_t lo = 0, hi = 0;
	size_t ps = 0;
	int ret;

	*backing = HUGERING_BACKING_UNKNOWN;
	ret = query_vma(addr, &lo, &hi, &ps);
	if (ret == -ENOENT || (!ret && !ps))
		return 0;
	if (ret || (ps <= HR_BASE_PAGE && scan_thp(lo, hi, backing) < 0))
		return smaps_page_size(addr, backing, vma_end);
	if (ps > HR_BASE_PAGE)
		*backing = HUGERING_BACKING_HUGETLB;
	if (vma_end)
		*vma_end = hi;
	return ps;
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

/*
 * hugering_mem_verify() for memory whose hugetlb page size @known the caller
 * mapped itself (0: unknown, ask the kernel for each VMA).
 */
int hr_mem_verify(const void *addr, size_t len, size_t known, struct hugering_verify *out)
{
	uintptr_t a = (uintptr_t)addr, start, end;
	struct walk w = { 0 };
	int ret, backing = HUGERING_BACKING_HUGETLB;
	size_t ps = known, n;

	if (!addr || !out || !len || a + len < a)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->numa_node = -1;
	start = a & ~(HR_BASE_PAGE - 1);
	end = HR_ALIGN_UP(a + len, HR_BASE_PAGE);
	n = (end - start) / HR_BASE_PAGE;

	if (!ps)
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
	return HR_PUBLIC(hr_mem_verify(addr, len, 0, out));
}

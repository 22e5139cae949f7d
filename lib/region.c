/* SPDX-License-Identifier: MIT */
/*
 * Regions: shared memory from hugetlb memfds, one hugepage or several
 * physically adjacent ones, proven through pagemap.
 *
 * Why a memfd: ring memory must behave like a kernel-mapped ring across
 * fork (MAP_SHARED), needs no hugetlbfs mount, and lets us map chosen pages
 * at chosen addresses: several pages are faulted in, their frames read from
 * pagemap, a physically adjacent run is mapped at consecutive addresses (as
 * DPDK's legacy EAL does with hugetlbfs files) and the rest punched out of
 * the file, which hands them straight back to the pool.
 *
 * Why MADV_POPULATE_WRITE: a hugetlb fault that cannot be satisfied (node
 * short, cgroup limit) raises SIGBUS; the madvise reports it as an error.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <linux/mempolicy.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

/*
 * max_tries = 0: keep doubling until the usable pool is taken.  A fixed
 * round count made the search depth depend on the region's size (3 pages
 * searched 384 of a 1,500-page pool, 10 pages 1,280), so a run deep in the
 * free list gave a false -ENOMEM; the pool bounds the search anyway.
 */
#define DEFAULT_MAX_TRIES UINT_MAX
#define MAX_NUMA_NODE 1023

struct hugering_region {
	void *addr;
	size_t size;
	size_t page_size;
	int fd;
	int numa_node;
	unsigned flags;
	unsigned hugepages;
	int backing;
	int contiguous;
	int proof;
	int fallback_errno;
	const char *fallback_reason;	/* "" or the region's own heap copy */
};

/* One hugepage of the file being searched: its frame and file offset. */
struct frame {
	uint64_t pfn;
	off_t off;
};

int hr_memfd_for(size_t page_size, const char *name)
{
	unsigned flags = MFD_CLOEXEC;

	if (page_size > HR_BASE_PAGE)
		flags |= MFD_HUGETLB | (hr_log2(page_size) << MFD_HUGE_SHIFT);
	return hr_sys_memfd_create(name, flags);
}

static int bind_node(void *addr, size_t len, int node)
{
	unsigned long mask[(MAX_NUMA_NODE + 1) / (8 * sizeof(unsigned long))] = { 0 };

	if (node < 0)
		return 0;
	mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
	return hr_sys_mbind(addr, len, MPOL_BIND, mask, MAX_NUMA_NODE + 2, 0);
}

/* Fault every page in; an unsatisfiable fault becomes -ENOMEM, not SIGBUS. */
static int populate(void *addr, size_t len)
{
	int ret = hr_sys_madvise(addr, len, MADV_POPULATE_WRITE);

	switch (ret) {
	case 0:
		return 0;
	case -EINVAL:
		return -EOPNOTSUPP;	/* kernel < 5.14 */
	case -EFAULT:
	case -ENOMEM:
	case -EHWPOISON:
		return -ENOMEM;
	default:
		return ret;
	}
}

/*
 * Map @len bytes of @fd at @off (at @fixed if not NULL), bind to @node and
 * fault in.  On error nothing stays mapped.
 */
int hr_map_populated(int fd, off_t off, size_t len, int node, void *fixed,
		     void **out)
{
	int flags = MAP_SHARED | (fixed ? MAP_FIXED : 0);
	void *p;
	int ret = hr_sys_mmap(fixed, len, PROT_READ | PROT_WRITE, flags, fd, off, &p);

	if (ret)
		return ret == -ENOSPC ? -ENOMEM : ret;
	ret = bind_node(p, len, node);
	if (!ret)
		ret = populate(p, len);
	if (ret) {
		hr_sys_munmap(p, len);
		return ret;
	}
	*out = p;
	return 0;
}

static void set_reason(struct hugering_region *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_reason(struct hugering_region *r, int err, const char *fmt, ...)
{
	va_list ap;
	char *text;

	r->fallback_errno = -err;
	va_start(ap, fmt);
	text = hr_vstrf(fmt, ap);
	va_end(ap);
	hr_reason_free(r->fallback_reason);
	r->fallback_reason = hr_reason_dup(text);
	free(text);
}

/* Pages anywhere, mapped in file order: contiguity is whatever it is. */
static int alloc_linear(struct hugering_region *r, size_t ps, size_t n, int node)
{
	int fd = hr_memfd_for(ps, "hugering"), ret;

	if (fd < 0)
		return fd;
	ret = hr_sys_ftruncate(fd, (off_t)(n * ps));
	if (ret)
		goto err;
	ret = hr_map_populated(fd, 0, n * ps, node, NULL, &r->addr);
	if (ret)
		goto err;
	r->fd = fd;
	r->size = n * ps;
	r->page_size = ps;
	r->hugepages = ps > HR_BASE_PAGE ? (unsigned)n : 0;
	return 0;
err:
	close(fd);
	return ret;
}

static int cmp_frame(const void *a, const void *b)
{
	uint64_t x = ((const struct frame *)a)->pfn, y = ((const struct frame *)b)->pfn;

	return x < y ? -1 : x > y;
}

/* Index in sorted @f of the first run of @n physically adjacent pages, or -1. */
static long find_run(const struct frame *f, size_t have, size_t n, uint64_t step)
{
	size_t start = 0;

	for (size_t i = 1; i <= have; i++) {
		if (i == have || f[i].pfn != f[i - 1].pfn + step) {
			if (i - start >= n)
				return (long)start;
			start = i;
		}
	}
	return -1;
}

/*
 * Grow the search file from @have to @want pages: fault the new pages in
 * through a temporary mapping and record their head frames.
 */
static int grow_frames(int fd, size_t ps, int node, struct frame *f,
		       size_t have, size_t want, int pm)
{
	size_t add = want - have;
	void *tmp;
	int ret;

	ret = hr_sys_ftruncate(fd, (off_t)(want * ps));
	if (ret)
		return ret;
	ret = hr_map_populated(fd, (off_t)(have * ps), add * ps, node, NULL, &tmp);
	if (ret)
		return ret;
	for (size_t i = 0; i < add && !ret; i++) {
		uint64_t e;

		ret = hr_pagemap_read(pm, (uintptr_t)tmp + i * ps, 1, &e);
		f[have + i].pfn = e & HR_PAGEMAP_PFN_MASK;
		f[have + i].off = (off_t)((have + i) * ps);
		if (!ret && !f[have + i].pfn)
			ret = -EPERM;	/* PFNs hidden after all */
	}
	hr_sys_munmap(tmp, add * ps);
	return ret;
}

/* Map the chosen frames at consecutive addresses, in frame order. */
static int map_run(int fd, size_t ps, const struct frame *run, size_t n,
		   int node, void **out)
{
	size_t len = n * ps;
	void *v;
	char *resv, *base;
	int ret = hr_sys_mmap(NULL, len + ps, PROT_NONE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, &v);

	if (ret)
		return ret;
	resv = v;
	base = (char *)HR_ALIGN_UP((uintptr_t)resv, ps);
	if (base > resv)
		hr_sys_munmap(resv, base - resv);
	hr_sys_munmap(base + len, resv + len + ps - (base + len));
	for (size_t i = 0; i < n && !ret; i++) {
		void *p;

		ret = hr_map_populated(fd, run[i].off, ps, node, base + i * ps, &p);
	}
	if (ret) {
		hr_sys_munmap(base, len);
		return ret;
	}
	*out = base;
	return 0;
}

/* Give every page of the file outside the run back to the pool. */
static void punch_others(int fd, size_t ps, const struct frame *f, size_t have,
			 long start, size_t n)
{
	for (size_t i = 0; i < have; i++) {
		if ((long)i >= start && i < start + n)
			continue;
		/* Failure only keeps a page until the region is freed. */
		(void)hr_sys_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       f[i].off, (off_t)ps);
	}
}

static size_t next_want(size_t have, size_t n, size_t ps, int node)
{
	long usable = 0;
	size_t grow = have > n ? have : n;

	if (hr_pool_usable(ps, node, &usable) < 0 || usable <= 0)
		return have;
	if ((size_t)usable < grow)
		grow = (size_t)usable;
	return have + grow;
}

/*
 * @n physically adjacent hugepages: take pages, read their frames, look for
 * a run; take more (doubling) for at most @tries rounds.
 */
static int alloc_contig_run(struct hugering_region *r, size_t ps, size_t n,
			    int node, unsigned tries)
{
	uint64_t step = ps / HR_BASE_PAGE;
	struct frame *f = NULL;
	size_t have = 0, cap = 0;
	long start = -1;
	int fd, pm, ret = 0;

	fd = hr_memfd_for(ps, "hugering");
	if (fd < 0)
		return fd;
	pm = hr_pagemap_open();
	if (pm < 0) {
		close(fd);
		return pm;
	}
	for (unsigned t = 0; t < tries && start < 0; t++) {
		size_t want = t ? next_want(have, n, ps, node) : n;

		if (want == have)
			break;	/* pool exhausted: nothing more to try */
		if (want > cap) {
			struct frame *nf = realloc(f, want * sizeof(*f));

			if (!nf) {
				ret = -ENOMEM;
				break;
			}
			f = nf;
			cap = want;
		}
		ret = grow_frames(fd, ps, node, f, have, want, pm);
		if (ret == -ENOMEM && have) {
			ret = 0;	/* pool ran dry: decide on what we have */
			break;
		}
		if (ret)
			break;
		have = want;
		qsort(f, have, sizeof(*f), cmp_frame);
		start = find_run(f, have, n, step);
	}
	close(pm);
	if (!ret && start < 0)
		ret = -ENOMEM;
	if (!ret)
		ret = map_run(fd, ps, f + start, n, node, &r->addr);
	if (!ret) {
		punch_others(fd, ps, f, have, start, n);
		r->fd = fd;
		r->size = n * ps;
		r->page_size = ps;
		r->hugepages = (unsigned)n;
	} else {
		close(fd);
	}
	free(f);
	return ret;
}

/* Hugepages of one size: one page, a proven run, or any pages. */
static int alloc_huge(struct hugering_region *r, const struct hugering_region_opts *o,
		      size_t ps, bool contig)
{
	size_t n = HR_ALIGN_UP(o->size, ps) / ps;
	unsigned tries = o->max_tries ? o->max_tries : DEFAULT_MAX_TRIES;
	long usable = 0;
	int ret;

	ret = hr_pool_usable(ps, o->numa_node, &usable);
	if (ret < 0)
		return ret;
	if ((size_t)usable < n)
		return -ENOMEM;
	if (n == 1 || !contig)
		return alloc_linear(r, ps, n, o->numa_node);
	ret = hr_pfn_visible();
	if (ret <= 0)
		return ret < 0 ? ret : -EPERM;
	return alloc_contig_run(r, ps, n, o->numa_node, tries);
}

/*
 * Try each candidate hugepage size in ascending order (only the requested
 * one if given).  CONTIG across several pages needs visible PFNs; without
 * them a larger page that holds the whole region is proof by construction.
 * -EPERM wins over -ENOMEM when both happened: some pool could have served
 * the region, and privilege is what is missing.
 */
static int alloc_any_huge(struct hugering_region *r, const struct hugering_region_opts *o,
			  bool contig)
{
	size_t sizes[HUGERING_MAX_PAGE_SIZES];
	int n, ret = -ENOMEM, first = 0;

	if (o->page_size) {
		sizes[0] = o->page_size;
		n = 1;
	} else {
		n = hr_page_sizes_at("", sizes, HUGERING_MAX_PAGE_SIZES);
		if (n < 0)
			return n;
	}
	for (int i = 0; i < n; i++) {
		ret = alloc_huge(r, o, sizes[i], contig);
		if (!ret)
			return 0;
		if (!first || ret == -EPERM)
			first = ret;
		if (ret != -ENOMEM && ret != -EPERM)
			return ret;
	}
	return first ? first : ret;
}

static int alloc_base(struct hugering_region *r, const struct hugering_region_opts *o)
{
	return alloc_linear(r, HR_BASE_PAGE, HR_ALIGN_UP(o->size, HR_BASE_PAGE) / HR_BASE_PAGE,
			    o->numa_node);
}

static const char *why(int err)
{
	return err == -EPERM ? "physical contiguity unprovable: PFNs hidden (needs CAP_SYS_ADMIN)"
			     : "hugepage pool short";
}

/* The hugepage size a region asks for: its own, or the default. */
static size_t wanted_page_size(const struct hugering_region_opts *o)
{
	return o->page_size ? o->page_size : hr_default_page_size_at("");
}

/*
 * Why hugepages failed, for a fallback reason: a cgroup limit is worth
 * naming.  A heap string for the caller to free (NULL when memory is out).
 */
static char *why_for(const struct hugering_region_opts *o, int err)
{
	size_t ps = wanted_page_size(o);
	char *buf = NULL;

	if (err == -ENOMEM && ps > HR_BASE_PAGE &&
	    hr_explain_no_hugepages(ps, o->numa_node, o->size, &buf))
		return buf;
	free(buf);
	return hr_strf("%s", why(err));
}

/* FALLBACK: hugepages without the contiguity promise, then base pages. */
static int alloc_fallback(struct hugering_region *r, const struct hugering_region_opts *o,
			  int err)
{
	char *text;
	int ret = -ENOMEM;

	if (o->page_size != HR_BASE_PAGE && (o->flags & HUGERING_REGION_CONTIG)) {
		ret = alloc_any_huge(r, o, false);
		if (!ret) {
			set_reason(r, err, "%s: hugepages without proven contiguity",
				   why(err));
			return 0;
		}
	}
	if (ret != -ENOMEM && ret != -EPERM)
		return ret;
	ret = alloc_base(r, o);
	if (!ret) {
		text = why_for(o, err);
		set_reason(r, err, "base pages: %s", text ? text : why(err));
		free(text);
	}
	return ret;
}

/* hugering_last_error() for a failed region: the cgroup, the pool, or contiguity. */
static void explain_failure(const struct hugering_region_opts *o, int err)
{
	size_t ps = wanted_page_size(o);
	char *buf = NULL;
	bool explained;

	if (err == -EPERM) {
		hr_set_error("%s", why(err));
		return;
	}
	if (err != -ENOMEM || ps <= HR_BASE_PAGE) {
		hr_set_error("region of %zu bytes: %s", o->size, strerror(-err));
		return;
	}
	explained = hr_explain_no_hugepages(ps, o->numa_node, o->size, &buf);
	if (!buf) {
		hr_set_error("region of %zu bytes: %s", o->size, strerror(-err));
	} else if (explained || !(o->flags & HUGERING_REGION_CONTIG)) {
		hr_set_error("%s", buf);
	} else {
		char tries[40] = "the whole usable pool";

		if (o->max_tries)
			snprintf(tries, sizeof(tries), "%u doubling rounds", o->max_tries);
		hr_set_error("no physically contiguous run of %zu kB in %s (%s)",
			     HR_ALIGN_UP(o->size, ps) >> 10, tries, buf);
	}
	free(buf);
}

static int check_opts(const struct hugering_region_opts *o)
{
	long phys = sysconf(_SC_PHYS_PAGES);
	int node;

	if (!o->size || o->flags & ~HUGERING_REGION_FLAGS_ALL)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(o->resv) / sizeof(o->resv[0]); i++)
		if (o->resv[i])
			return -EINVAL;
	/* Larger than all of RAM cannot be meant. */
	if (phys > 0 && o->size / HR_BASE_PAGE > (size_t)phys)
		return -EINVAL;
	if (o->page_size && o->page_size != HR_BASE_PAGE) {
		int ret = hr_page_size_check(o->page_size);

		if (ret)
			return ret;	/* -EMFILE etc. are not bad options */
	}
	/* Base pages cannot promise contiguity beyond one page. */
	if (o->page_size == HR_BASE_PAGE && (o->flags & HUGERING_REGION_CONTIG) &&
	    o->size > HR_BASE_PAGE && !(o->flags & HUGERING_REGION_FALLBACK))
		return -EINVAL;
	if (o->numa_node < -1 || o->numa_node > MAX_NUMA_NODE)
		return -EINVAL;
	return o->numa_node >= 0 ? hr_opts_node(o->numa_node, true, &node) : 0;
}

/*
 * CONTIG|FALLBACK on base pages beyond one page (check_opts admits only
 * that): contiguity is what FALLBACK lets go of, as for hugepages.  Unless
 * the frames happen to be proven adjacent, the region is the fallback and
 * says so; without this, the promise check below failed it every time.
 */
static void base_contig_fallback(struct hugering_region *r, const struct hugering_region_opts *o)
{
	if (r->page_size != HR_BASE_PAGE || r->size <= HR_BASE_PAGE || r->fallback_errno ||
	    !(o->flags & HUGERING_REGION_CONTIG) || r->contiguous == HUGERING_CONTIG_YES)
		return;
	if (r->contiguous == HUGERING_CONTIG_NO)
		set_reason(r, -ENOMEM, "base pages: %zu kB not physically contiguous "
			   "(4 KiB pages promise one page at most)", r->size >> 10);
	else
		set_reason(r, -EPERM, "base pages: contiguity of %zu kB unprovable: %s",
			   r->size >> 10, why(-EPERM));
}

/* Record what the region really is, read back from the kernel. */
static int settle(struct hugering_region *r, const struct hugering_region_opts *o)
{
	struct hugering_verify v;
	int ret;

	if (o->flags & HUGERING_REGION_DONTFORK) {
		ret = hr_sys_madvise(r->addr, r->size, MADV_DONTFORK);
		if (ret)
			return ret;
	}
	/* A hugetlb memfd's backing is known: no need to look the VMA up. */
	ret = hr_mem_verify(r->addr, r->size,
			    r->page_size > HR_BASE_PAGE ? r->page_size : 0, &v);
	if (ret)
		return ret;
	r->backing = v.backing;
	r->contiguous = v.contiguous;
	r->proof = v.proof;
	r->numa_node = v.numa_node;
	/* A node was asked for: prove it, after fault-in. */
	if (o->numa_node >= 0 && v.numa_node != o->numa_node)
		return -ENOMEM;
	base_contig_fallback(r, o);
	/* CONTIG without FALLBACK is a promise: never hand out a NO. */
	if ((o->flags & HUGERING_REGION_CONTIG) && !r->fallback_errno &&
	    r->contiguous == HUGERING_CONTIG_NO)
		return -ENOMEM;
	return 0;
}

static void release(struct hugering_region *r)
{
	if (r->addr)
		hr_sys_munmap(r->addr, r->size);
	if (r->fd >= 0)
		close(r->fd);
	r->addr = NULL;
	r->fd = -1;
}

int hr_region_alloc(const struct hugering_region_opts *o, struct hugering_region **out)
{
	struct hugering_region *r;
	bool contig;
	int ret;

	*out = NULL;
	ret = check_opts(o);
	if (ret)
		return ret;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = -1;
	r->flags = o->flags;
	r->fallback_reason = "";
	contig = o->flags & HUGERING_REGION_CONTIG;

	if (o->page_size == HR_BASE_PAGE) {
		ret = alloc_base(r, o);
	} else {
		ret = alloc_any_huge(r, o, contig);
		if ((ret == -ENOMEM || ret == -EPERM) &&
		    (o->flags & HUGERING_REGION_FALLBACK)) {
			release(r);
			ret = alloc_fallback(r, o, ret);
		}
	}
	if (!ret)
		ret = settle(r, o);
	if (ret) {
		hr_region_free(r);
		return ret;
	}
	*out = r;
	return 0;
}

static int region_alloc(const struct hugering_region_opts *o, struct hugering_region **out)
{
	struct hugering_region_opts ro;
	int ret;

	if (!o || !out)
		return -EINVAL;
	*out = NULL;
	ro = *o;
	ro.flags &= ~(HUGERING_REGION_NUMA_NODE | HUGERING_REGION_NODE_LOCAL);
	ret = hr_opts_node_local(o->numa_node, o->flags & HUGERING_REGION_NUMA_NODE,
				 o->flags & HUGERING_REGION_NODE_LOCAL, -1, &ro.numa_node);
	if (!ret)
		ret = check_opts(&ro);
	if (ret == -EINVAL) {
		hr_set_error("bad hugering_region_opts (size, page size, NUMA node, flags or "
			     "reserved fields; NUMA_NODE and NODE_LOCAL exclude each other)");
		return ret;
	}
	if (ret) {
		/* The options could not be checked: say why, not "bad options". */
		hr_set_error("region options: cannot read the kernel's hugepage sizes or "
			     "NUMA nodes: %s", strerror(-ret));
		return ret;
	}
	ret = hr_region_alloc(&ro, out);
	/* Explained after the failed attempt let go of its pages. */
	if (ret)
		explain_failure(&ro, ret);
	return ret;
}

void hr_region_free(struct hugering_region *r)
{
	if (!r)
		return;
	release(r);
	hr_reason_free(r->fallback_reason);
	free(r);
}

void *hugering_region_addr(const struct hugering_region *r)
{
	return r ? r->addr : NULL;
}

size_t hugering_region_size(const struct hugering_region *r)
{
	return r ? r->size : 0;
}

size_t hugering_region_page_size(const struct hugering_region *r)
{
	return r ? r->page_size : 0;
}

int hr_region_info(const struct hugering_region *r, struct hugering_region_info *out)
{
	if (!r || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->addr = r->addr;
	out->size = r->size;
	out->page_size = r->page_size;
	out->backing = r->backing;
	out->contiguous = r->contiguous;
	out->proof = r->proof;
	out->numa_node = r->numa_node;
	out->hugepages = r->hugepages;
	out->fallback_errno = r->fallback_errno;
	out->fallback_reason = r->fallback_reason;
	out->fd = r->fd;
	return 0;
}

int hugering_region_alloc(const struct hugering_region_opts *o,
			  struct hugering_region **out)
{
	return HR_PUBLIC(region_alloc(o, out));
}

/* Cannot fail: leaves the last error alone (a cleanup after a failure). */
void hugering_region_free(struct hugering_region *r)
{
	hr_region_free(r);
}

int hugering_region_info(const struct hugering_region *r,
			 struct hugering_region_info *out)
{
	return HR_PUBLIC(hr_region_info(r, out));
}

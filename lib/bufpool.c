/* SPDX-License-Identifier: MIT */
/*
 * Buffer pools: N buffers of S bytes in a hugepage region of their own
 * (kernel-facts.md §11), for provided buffer rings and fixed buffers.
 *
 * Layout: buffers are packed at a stride (S rounded up to the alignment)
 * within a page and never cross a page boundary, so each buffer is one
 * bvec, pins one compound page, and the kernel's memlock charge is a
 * known number of whole pages.  A buffer larger than a page starts on a
 * page boundary and covers the fewest pages it can (the kernel coalesces
 * it on 6.12+: every folio the same size, fully covered but the last).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct hugering_bufpool {
	struct hugering_region *region;
	char *mem;
	size_t mem_bytes;
	unsigned count;
	size_t size;
	size_t stride;
	size_t page_size;
	unsigned per_page;	/* 0: a buffer takes stride / page_size pages */
	int fallback_errno;
	char *reason;		/* whole, heap; NULL: none */
};

static size_t default_align(size_t size)
{
	size_t a = 1;

	while (a < size && a < HR_BASE_PAGE)
		a <<= 1;
	return a;
}

/* Place the buffers in pages of @ps. */
static void lay_out(struct hugering_bufpool *p, size_t align, size_t ps)
{
	size_t stride = HR_ALIGN_UP(p->size, align);

	p->page_size = ps;
	if (stride <= ps) {
		p->stride = stride;
		p->per_page = (unsigned)(ps / stride);
		p->mem_bytes = ((size_t)p->count + p->per_page - 1) / p->per_page * ps;
	} else {
		p->stride = HR_ALIGN_UP(stride, ps);
		p->per_page = 0;
		p->mem_bytes = p->stride * p->count;
	}
}

static int check(unsigned count, size_t size, const struct hugering_bufpool_opts *o)
{
	if (!count || count > HUGERING_BUFPOOL_MAX_COUNT) {
		hr_set_error("a buffer pool has 1 to %u buffers, not %u", HUGERING_BUFPOOL_MAX_COUNT,
			     count);
		return -EINVAL;
	}
	if (!size || size > HUGERING_BUFPOOL_MAX_SIZE) {
		hr_set_error("buffer size %zu: 1 byte to 1 GiB (the kernel's fixed-buffer limit)",
			     size);
		return -EINVAL;
	}
	if (o->align && (!hr_is_pow2(o->align) || o->align > HR_BASE_PAGE)) {
		hr_set_error("alignment %zu: a power of two up to 4096", o->align);
		return -EINVAL;
	}
	if ((o->flags & ~HUGERING_BUFPOOL_FLAGS_ALL) || o->resv[0] || o->resv[1] ||
	    o->resv[2] || o->resv[3]) {
		hr_set_error("unknown hugering_bufpool_opts flags or non-zero reserved fields");
		return -EINVAL;
	}
	if (o->page_size && o->page_size != HR_BASE_PAGE && hr_page_size_check(o->page_size)) {
		hr_set_error("page size %zu is not one this kernel offers", o->page_size);
		return -EINVAL;
	}
	return 0;
}

static int alloc_pages(struct hugering_bufpool *p, size_t ps, int node)
{
	struct hugering_region_opts ro = { .size = p->mem_bytes, .page_size = ps,
					   .numa_node = node };
	struct hugering_region_info ri;
	int ret = hr_region_alloc(&ro, &p->region);

	if (ret)
		return ret;
	hr_region_info(p->region, &ri);
	p->mem = ri.addr;
	return 0;
}

static int bufpool_create(unsigned count, size_t size, const struct hugering_bufpool_opts *uo,
			  struct hugering_bufpool **out)
{
	struct hugering_bufpool_opts o = { 0 };
	struct hugering_bufpool *p;
	size_t ps, align;
	int node = -1, ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (uo)
		o = *uo;
	ret = check(count, size, &o);
	if (ret)
		return ret;
	ret = hr_opts_node(o.numa_node, o.flags & HUGERING_BUFPOOL_NUMA_NODE, &node);
	if (ret) {
		hr_set_error("NUMA node %d is not online", o.numa_node);
		return ret;
	}
	ps = o.page_size ? o.page_size : hr_default_page_size_at("");
	align = o.align ? o.align : default_align(size);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->count = count;
	p->size = size;
	ret = -ENOMEM;
	if (ps > HR_BASE_PAGE) {
		lay_out(p, align, ps);
		ret = alloc_pages(p, ps, node);
		if (ret && ret != -ENOMEM && ret != -EPERM) {
			hr_set_error("buffer pool of %zu bytes: %s", p->mem_bytes, strerror(-ret));
			goto fail;
		}
		if (ret)
			hr_explain_no_hugepages(ps, node, p->mem_bytes, &p->reason);
		if (ret && (o.flags & HUGERING_BUFPOOL_NO_FALLBACK)) {
			hr_set_error("buffer pool of %zu bytes: %s", p->mem_bytes,
				     p->reason ? p->reason : "out of memory");
			goto fail;
		}
	} else if (!ps) {
		p->reason = hr_strf("no hugetlb in this kernel");
		if (o.flags & HUGERING_BUFPOOL_NO_FALLBACK) {
			hr_set_error("buffer pool: no hugetlb in this kernel");
			goto fail;
		}
	}
	if (ret) {
		p->fallback_errno = -ret;
		lay_out(p, align, HR_BASE_PAGE);
		ret = alloc_pages(p, HR_BASE_PAGE, node);
		if (ret) {
			hr_set_error("buffer pool of %zu bytes in base pages: %s", p->mem_bytes,
				     strerror(-ret));
			goto fail;
		}
		if (ps > HR_BASE_PAGE)
			hr_log(HUGERING_LOG_WARN, "buffer pool in base pages: %s",
			       p->reason ? p->reason : "");
		if (o.page_size == HR_BASE_PAGE) {
			p->fallback_errno = 0;	/* asked for */
			free(p->reason);
			p->reason = NULL;
		}
	}
	*out = p;
	return 0;
fail:
	free(p->reason);
	free(p);
	return ret;
}

int hugering_bufpool_create(unsigned count, size_t size, const struct hugering_bufpool_opts *o,
			    struct hugering_bufpool **out)
{
	return HR_PUBLIC(bufpool_create(count, size, o, out));
}

void hugering_bufpool_destroy(struct hugering_bufpool *p)
{
	if (!p)
		return;
	hr_region_free(p->region);
	free(p->reason);
	free(p);
}

/* Offset of buffer @i in the pool's memory. */
static size_t buf_off(const struct hugering_bufpool *p, unsigned i)
{
	if (!p->per_page)
		return (size_t)i * p->stride;
	return (size_t)(i / p->per_page) * p->page_size + (size_t)(i % p->per_page) * p->stride;
}

void *hr_bufpool_buf(const struct hugering_bufpool *p, unsigned i)
{
	return p && i < p->count ? p->mem + buf_off(p, i) : NULL;
}

void *hugering_bufpool_buf(const struct hugering_bufpool *p, unsigned i)
{
	return hr_bufpool_buf(p, i);
}

int hr_bufpool_info(const struct hugering_bufpool *p, struct hugering_bufpool_info *out)
{
	if (!p || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->mem = p->mem;
	out->mem_bytes = p->mem_bytes;
	out->count = p->count;
	out->buf_size = p->size;
	out->stride = p->stride;
	out->page_size = p->page_size;
	out->bufs_per_page = p->per_page;
	out->pages = (unsigned)(p->mem_bytes / p->page_size);
	out->fallback_errno = p->fallback_errno;
	out->fallback_reason = p->reason ? p->reason : "";
	return 0;
}

int hugering_bufpool_info(const struct hugering_bufpool *p, struct hugering_bufpool_info *out)
{
	return HR_PUBLIC(hr_bufpool_info(p, out));
}

int hr_bufpool_iovecs(const struct hugering_bufpool *p, struct iovec *iov, unsigned max)
{
	if (!p)
		return -EINVAL;
	if (!iov)
		return (int)p->count;
	if (max < p->count) {
		hr_set_error("%u iovecs do not hold a pool of %u buffers", max, p->count);
		return -ENOSPC;
	}
	for (unsigned i = 0; i < p->count; i++) {
		iov[i].iov_base = p->mem + buf_off(p, i);
		iov[i].iov_len = p->size;
	}
	return (int)p->count;
}

int hugering_bufpool_iovecs(const struct hugering_bufpool *p, struct iovec *iov, unsigned max)
{
	return HR_PUBLIC(hr_bufpool_iovecs(p, iov, max));
}

static int bufpool_fill(const struct hugering_bufpool *p, struct io_uring_buf_ring *br,
			unsigned nentries)
{
	int mask;

	if (!p || !br || !hr_is_pow2(nentries) || nentries > 32768) {
		hr_set_error("bufpool_fill: NULL pool or ring, or %u entries (a power of two "
			     "up to 32768)", nentries);
		return -EINVAL;
	}
	if (nentries < p->count) {
		hr_set_error("a buffer ring of %u entries cannot take %u buffers", nentries,
			     p->count);
		return -EINVAL;
	}
	mask = io_uring_buf_ring_mask(nentries);
	for (unsigned i = 0; i < p->count; i++)
		io_uring_buf_ring_add(br, p->mem + buf_off(p, i), (unsigned)p->size,
				      (unsigned short)i, mask, (int)i);
	io_uring_buf_ring_advance(br, (int)p->count);
	return (int)p->count;
}

int hugering_bufpool_fill(const struct hugering_bufpool *p, struct io_uring_buf_ring *br,
			  unsigned nentries)
{
	return HR_PUBLIC(bufpool_fill(p, br, nentries));
}

/*
 * HUGERING_REG_SPANS: the pool as runs of whole pages (whole buffers when
 * a buffer is larger than a page), each at most 1 GiB (the kernel's limit
 * for one fixed buffer).  Buffers never cross a span: spans are whole
 * units and buffers never cross a unit.
 */
static size_t span_bytes(const struct hugering_bufpool *p)
{
	size_t unit = p->per_page ? p->page_size : p->stride;

	return (HUGERING_BUFPOOL_MAX_SIZE / unit) * unit;
}

int hr_bufpool_spans(const struct hugering_bufpool *p, struct iovec *iov, unsigned max)
{
	size_t span = span_bytes(p), n = (p->mem_bytes + span - 1) / span;

	if (!iov)
		return (int)n;
	if (max < n)
		return -ENOSPC;
	for (size_t k = 0; k < n; k++) {
		size_t off = k * span;

		iov[k].iov_base = p->mem + off;
		iov[k].iov_len = p->mem_bytes - off < span ? p->mem_bytes - off : span;
	}
	return (int)n;
}

static int reg_index(const struct hugering_bufpool *p, unsigned i, unsigned flags)
{
	if (!p || i >= p->count || (flags & ~HUGERING_REG_SPANS)) {
		hr_set_error("no buffer %u in this pool, or unknown flags %#x", i, flags);
		return -EINVAL;
	}
	if (!(flags & HUGERING_REG_SPANS))
		return (int)i;
	return (int)(buf_off(p, i) / span_bytes(p));
}

int hugering_bufpool_reg_index(const struct hugering_bufpool *p, unsigned i, unsigned flags)
{
	return HR_PUBLIC(reg_index(p, i, flags));
}

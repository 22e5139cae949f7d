/* SPDX-License-Identifier: MIT */
/*
 * hugering: physically contiguous hugepage memory, proven through
 * /proc/self/pagemap, for io_uring rings.
 *
 * Every function that can fail returns 0 (or a count where said) on success
 * and a negative errno on failure, like liburing.  Nothing here prints.
 */
#ifndef HUGERING_H
#define HUGERING_H

#include <stddef.h>
#include <stdint.h>
#include <liburing.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HUGERING_VERSION_MAJOR 0
#define HUGERING_VERSION_MINOR 1

/* ------------------------------------------------------------------ */
/* Hugepage discovery                                                  */
/* ------------------------------------------------------------------ */

/* Upper bound on the number of page sizes one machine offers. */
#define HUGERING_MAX_PAGE_SIZES 8

/*
 * Hugepage sizes this kernel offers, ascending, in bytes (the base page is
 * not included).  Returns how many were stored, at most @max.
 */
int hugering_page_sizes(size_t *sizes, int max);

/* The default hugepage size (Hugepagesize in /proc/meminfo); 0 if none. */
size_t hugering_default_page_size(void);

/*
 * One hugepage pool.  For a NUMA node only total, free and surplus are kept
 * by the kernel; reserved and overcommit are then -1.
 */
struct hugering_pool {
	size_t page_size;
	int numa_node;		/* -1: whole system */
	int is_default;		/* the default hugepage size */
	long total;		/* nr_hugepages */
	long free;		/* free_hugepages */
	long reserved;		/* resv_hugepages: promised, not yet faulted */
	long surplus;		/* surplus_hugepages */
	long overcommit;	/* nr_overcommit_hugepages */
	long usable;		/* free - reserved: what an allocation can count on now */
};

/* Pool counters for @page_size on @numa_node (-1 = the whole system). */
int hugering_pool_get(size_t page_size, int numa_node, struct hugering_pool *out);

/* Online NUMA nodes, ascending.  Returns how many were stored, at most @max. */
int hugering_numa_nodes(int *nodes, int max);

struct hugering_mount {
	char path[256];
	size_t page_size;
};

/* hugetlbfs mounts.  Returns how many were stored, at most @max. */
int hugering_mounts(struct hugering_mount *out, int max);

/* ------------------------------------------------------------------ */
/* Pagemap                                                             */
/* ------------------------------------------------------------------ */

/*
 * 1 if this process reads real PFNs from /proc/self/pagemap (CAP_SYS_ADMIN),
 * 0 if they read as 0, negative errno if pagemap cannot be read.
 */
int hugering_pfn_visible(void);

enum hugering_backing {
	HUGERING_BACKING_UNKNOWN = 0,
	HUGERING_BACKING_BASE,		/* ordinary base pages */
	HUGERING_BACKING_THP,		/* transparent hugepages */
	HUGERING_BACKING_HUGETLB,	/* hugetlb pages */
	HUGERING_BACKING_MIXED,		/* some THP, some base pages */
};

/* What backs one address. */
struct hugering_addr_info {
	int present;		/* page is in memory */
	int swapped;
	uint64_t pfn;		/* 0 when not present or PFNs are hidden */
	uint64_t phys_addr;	/* 0 when unknown */
	size_t page_size;	/* size of the page backing it */
	int backing;		/* enum hugering_backing */
	int numa_node;		/* -1 when not present */
};

int hugering_addr_info(const void *addr, struct hugering_addr_info *out);

/* ------------------------------------------------------------------ */
/* Verification                                                        */
/* ------------------------------------------------------------------ */

enum hugering_contig {
	HUGERING_CONTIG_UNKNOWN = 0,
	HUGERING_CONTIG_YES,
	HUGERING_CONTIG_NO,
};

enum hugering_proof {
	HUGERING_PROOF_NONE = 0,	/* nothing proves the answer */
	HUGERING_PROOF_PAGEMAP,		/* PFNs read from /proc/self/pagemap */
	HUGERING_PROOF_CONSTRUCTION,	/* range lies inside one hugetlb page */
};

struct hugering_verify {
	int contiguous;		/* enum hugering_contig */
	int proof;		/* enum hugering_proof */
	uint64_t phys_addr;	/* physical address of the first byte; 0 if unknown */
	unsigned runs;		/* physically contiguous runs (1 = contiguous); 0 if unknown */
	size_t page_size;	/* smallest page size backing the range */
	int backing;		/* enum hugering_backing */
	int numa_node;		/* node of every page; -1 if mixed or unknown */
	size_t pages;		/* 4 KiB pages examined */
	size_t pages_missing;	/* of those, not present (never faulted or swapped) */
};

/*
 * Is [addr, addr+len) physically contiguous?  Works on any mapped memory of
 * this process.  It reads, it never faults pages in: touch the memory first.
 * YES/NO come with pagemap proof only when PFNs are visible; otherwise YES by
 * construction when the range lies inside one hugetlb page, else UNKNOWN.
 * -EINVAL for NULL, len 0 or a wrapping range; -EFAULT if part of the range
 * is not mapped.
 */
int hugering_mem_verify(const void *addr, size_t len, struct hugering_verify *out);

/* ------------------------------------------------------------------ */
/* Regions                                                             */
/* ------------------------------------------------------------------ */

/* Must be physically contiguous (proven; see hugering_region_info). */
#define HUGERING_REGION_CONTIG		(1u << 0)
/* Smaller pages allowed when the hugepage pool is short. */
#define HUGERING_REGION_FALLBACK	(1u << 1)
/* Keep the region out of forked children (MADV_DONTFORK). */
#define HUGERING_REGION_DONTFORK	(1u << 2)
#define HUGERING_REGION_FLAGS_ALL	(HUGERING_REGION_CONTIG | \
					 HUGERING_REGION_FALLBACK | \
					 HUGERING_REGION_DONTFORK)

struct hugering_region_opts {
	size_t size;		/* bytes wanted, > 0 */
	size_t page_size;	/* 0 = automatic; else a hugepage size or 4096 */
	int numa_node;		/* -1 = any */
	unsigned flags;		/* HUGERING_REGION_* */
	unsigned max_tries;	/* contiguous search rounds; 0 = default (8) */
	unsigned resv[3];	/* must be zero */
};

struct hugering_region;

/*
 * Allocate a region of shared memory (a hugetlb memfd, mapped MAP_SHARED, so
 * a forked child sees the same memory, as with a kernel-mapped ring), zeroed
 * and faulted in.  The size is rounded up to the page size.
 *
 * -EINVAL: bad options; -ENOMEM: the pool cannot supply it (or no physically
 * contiguous run was found within max_tries); -EPERM: CONTIG across several
 * hugepages needs visible PFNs (CAP_SYS_ADMIN) and no single larger page
 * could hold it.  Never SIGBUS: pages are faulted in with errors reported.
 */
int hugering_region_alloc(const struct hugering_region_opts *o,
			  struct hugering_region **out);
void hugering_region_free(struct hugering_region *r);
void *hugering_region_addr(const struct hugering_region *r);
size_t hugering_region_size(const struct hugering_region *r);
size_t hugering_region_page_size(const struct hugering_region *r);

struct hugering_region_info {
	void *addr;
	size_t size;
	size_t page_size;
	int backing;		/* enum hugering_backing */
	int contiguous;		/* enum hugering_contig, as established at allocation */
	int proof;		/* enum hugering_proof, as established at allocation */
	int numa_node;		/* node all pages are on; -1 if not known */
	unsigned hugepages;	/* hugetlb pages held */
	int fallback_errno;	/* 0, or why a smaller page was used */
	char fallback_reason[128];
	int fd;			/* the backing memfd (owned by the region) */
};

int hugering_region_info(const struct hugering_region *r,
			 struct hugering_region_info *out);

/* Human-readable names for the enums above (static strings). */
const char *hugering_contig_name(int contig);
const char *hugering_proof_name(int proof);
const char *hugering_backing_name(int backing);

#ifdef __cplusplus
}
#endif
#endif /* HUGERING_H */

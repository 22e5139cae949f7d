/* SPDX-License-Identifier: MIT */
/*
 * hugering: physically contiguous hugepage memory, proven through
 * /proc/self/pagemap, for io_uring rings.
 *
 * Every function that can fail returns 0 (or a count where said) on success
 * and a negative errno on failure, like liburing.  Nothing here prints.
 *
 * Output structs end in reserved space the library zeroes, so later fields
 * fit without changing their size (abi/ records every layout).
 *
 * Text in output structs (reasons, paths) is never cut: a const char *,
 * never NULL ("" when there is none), owned by the library; each field
 * says how long it stays valid.
 *
 * Options structs: a zeroed struct (or NULL where allowed) means the
 * defaults, field by field.  A NUMA node is named only with the struct's
 * *_NUMA_NODE flag (then numa_node 0 is node 0); without it numa_node must
 * be 0 (or -1, the older spelling) and means any node.  The *_NODE_LOCAL
 * flag names the node of the CPU instead: the calling thread's, as getcpu()
 * reports it at the call (the SQPOLL thread's CPU for a ring with
 * IORING_SETUP_SQPOLL|IORING_SETUP_SQ_AFF); with *_NUMA_NODE it is -EINVAL.
 * Either way the node is required, as for *_NUMA_NODE: memory on another
 * node is a failure (-ENOMEM), never a silent placement elsewhere.  On a
 * machine with one node, that node is 0.
 */
#ifndef HUGERING_H
#define HUGERING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <liburing.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The library is built with -fvisibility=hidden: what this header declares
 * is its whole interface (lib/hugering.map lists it per release).
 */
#pragma GCC visibility push(default)

/* The one source of the version: the Makefile and pkg-config read it here. */
#define HUGERING_VERSION_MAJOR 0
#define HUGERING_VERSION_MINOR 1
#define HUGERING_VERSION_PATCH 0

/* True when the headers compiled against are older than @major.@minor. */
#define HUGERING_CHECK_VERSION(major, minor)                                   \
	((major) > HUGERING_VERSION_MAJOR ||                                   \
	 ((major) == HUGERING_VERSION_MAJOR && (minor) > HUGERING_VERSION_MINOR))

/* The version of the library loaded at run time (may differ from the header's). */
int hugering_major_version(void);
int hugering_minor_version(void);
/* True when the loaded library is older than @major.@minor. */
bool hugering_check_version(int major, int minor);

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
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

/* Pool counters for @page_size on @numa_node (-1 = the whole system). */
int hugering_pool_get(size_t page_size, int numa_node, struct hugering_pool *out);

/* Online NUMA nodes, ascending.  Returns how many were stored, at most @max. */
int hugering_numa_nodes(int *nodes, int max);

struct hugering_mount {
	const char *path;	/* kept by the library for the life of the process */
	size_t page_size;
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
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
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
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
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
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
/* numa_node names the node (0 is node 0); without it 0 means any. */
#define HUGERING_REGION_NUMA_NODE	(1u << 3)
/* On the node of the calling thread's CPU (numa_node 0; not with NUMA_NODE). */
#define HUGERING_REGION_NODE_LOCAL	(1u << 4)
#define HUGERING_REGION_FLAGS_ALL	(HUGERING_REGION_CONTIG | \
					 HUGERING_REGION_FALLBACK | \
					 HUGERING_REGION_DONTFORK | \
					 HUGERING_REGION_NUMA_NODE | \
					 HUGERING_REGION_NODE_LOCAL)

struct hugering_region_opts {
	size_t size;		/* bytes wanted, > 0 */
	size_t page_size;	/* 0 = automatic; else a hugepage size or 4096 */
	int numa_node;		/* with HUGERING_REGION_NUMA_NODE; else 0 = any */
	unsigned flags;		/* HUGERING_REGION_* */
	unsigned max_tries;	/* contiguous search rounds; 0 = the whole pool */
	unsigned resv[3];	/* must be zero */
};

struct hugering_region;

/*
 * Allocate a region of shared memory (a hugetlb memfd, mapped MAP_SHARED, so
 * a forked child sees the same memory, as with a kernel-mapped ring), zeroed
 * and faulted in.  The size is rounded up to the page size.
 *
 * -EINVAL: bad options; -ENOMEM: the pool cannot supply it (or no physically
 * contiguous run was found in the pool, or within max_tries rounds);
 * -EPERM: CONTIG across several hugepages needs visible PFNs (CAP_SYS_ADMIN)
 * and no single larger page
 * could hold it.  Never SIGBUS: pages are faulted in with errors reported.
 * hugering_last_error() says why: the hugetlb cgroup limit (naming its file),
 * the pool's counts, or no contiguous run.
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
	const char *fallback_reason;	/* valid until hugering_region_free() */
	int fd;			/* the backing memfd (owned by the region) */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

int hugering_region_info(const struct hugering_region *r,
			 struct hugering_region_info *out);

/* ------------------------------------------------------------------ */
/* Ring layout                                                         */
/* ------------------------------------------------------------------ */

/*
 * The memory a NO_MMAP ring of @entries and @p (flags, cq_entries) needs,
 * exactly as the running kernel will pin it.  Entry counts are rounded and
 * clamped as the kernel does; -EINVAL wherever the kernel would refuse
 * (0 entries, > 32768 without CLAMP, CQ < SQ after rounding, unknown flags,
 * CQE_MIXED with CQE32), -EOVERFLOW for CQE_MIXED with a 1-entry CQ (as
 * the kernel).
 */
struct hugering_layout {
	unsigned sq_entries;	/* as the kernel rounds them */
	unsigned cq_entries;
	unsigned flags;		/* the setup flags this layout is for */
	unsigned header;	/* sizeof(struct io_rings) on this kernel */
	unsigned sq_array_off;	/* offset of the SQ index array; 0 with NO_SQARRAY */
	size_t rings_raw;	/* rings region bytes before page rounding */
	size_t sqes_bytes;	/* SQE region the kernel pins (page-rounded) */
	size_t rings_bytes;	/* rings region the kernel pins (page-rounded) */
	size_t rings_offset;	/* where the rings start in hugering's buffer */
	size_t total_bytes;	/* hugering's buffer: rings_offset + rings_bytes */
	int liburing_ok;	/* the running liburing can place this shape */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

int hugering_ring_layout(unsigned entries, const struct io_uring_params *p,
			 struct hugering_layout *out);

/* ------------------------------------------------------------------ */
/* Kernel probe                                                        */
/* ------------------------------------------------------------------ */

/* What the kernel accepts as NO_MMAP ring memory. */
enum hugering_nommap {
	HUGERING_NOMMAP_UNSUPPORTED = 0,	/* < 6.5: flag unknown */
	HUGERING_NOMMAP_SINGLE_PAGE,		/* 6.5, 6.6.0-6.6.4: regions of one page only (EFAULT bug) */
	HUGERING_NOMMAP_CONTIG,			/* 6.6.5-6.9: each region physically contiguous */
	HUGERING_NOMMAP_ANY,			/* 6.10+, 6.6.84+: any page-aligned memory */
};

struct hugering_kernel_caps {
	int io_uring;		/* 0 usable; -EPERM disabled (sysctl); -ENOSYS absent */
	int nommap;		/* enum hugering_nommap */
	int resize;		/* IORING_REGISTER_RESIZE_RINGS works */
	int pfn_visible;	/* pagemap shows PFNs to this process */
	int no_sqarray;		/* IORING_SETUP_NO_SQARRAY accepted */
	unsigned ring_header;	/* sizeof(struct io_rings) */
	unsigned features;	/* io_uring_params.features */
	char release[65];	/* uname -r */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

/* Probed once per process by behaviour, then cached; thread-safe. */
int hugering_probe_kernel(struct hugering_kernel_caps *out);
const char *hugering_nommap_name(int nommap);

/* ------------------------------------------------------------------ */
/* Arenas: many rings per hugepage, recycled safely                    */
/* ------------------------------------------------------------------ */

/*
 * An arena carves ring memory out of hugepages: rings that fit in one page
 * share pages (256 64-entry rings per 2 MiB page); larger rings get a region
 * of their own.  The memory of a destroyed ring is never handed to another
 * ring while the kernel may still write it (it does, 12-19 ms after close).
 * hugering_queue_init* use a process-wide default arena unless given one.
 *
 * Thread-safe.  An arena belongs to the process that created it: after
 * fork() a child uses the rings it inherited, but makes new rings from its
 * own default arena; an inherited explicit arena gives -ECHILD.
 */
struct hugering_arena;

#define HUGERING_ARENA_DONTFORK	 (1u << 0)	/* MADV_DONTFORK on every arena page */
#define HUGERING_ARENA_NO_RESIZE (1u << 1)	/* never recycle by ring resize */
/*
 * Recycled ring memory gets a zeroed header (heads, tails, flags); its SQE
 * and CQE slots keep bytes of this process's earlier rings, as any ring's
 * slots do after the first lap.  This flag zeroes all of it instead (costs
 * a memset of the ring per reuse: ~100 us for 2 MiB).
 */
#define HUGERING_ARENA_ZERO_RECYCLED (1u << 2)
/* numa_node names the node (0 is node 0); without it 0 means any. */
#define HUGERING_ARENA_NUMA_NODE (1u << 3)
/*
 * On the node of the CPU of the thread calling hugering_arena_create(),
 * fixed then for the arena's life (numa_node 0; not with NUMA_NODE).
 */
#define HUGERING_ARENA_NODE_LOCAL (1u << 4)
/*
 * Fault in the next fresh page ahead of need.  Once the arena retires pages
 * (plain and SQPOLL rings that fill a page: their memory is never reused),
 * a background thread ("hugering-bg", started then, gone after 1 s without
 * work) keeps one fresh page ready, so the next ring does not wait for the
 * kernel to zero one (~0.3 ms for 2 MiB).  The zeroing is not saved: the
 * process spends as much CPU or more, on another thread.  Off by default.
 */
#define HUGERING_ARENA_PREPARE	 (1u << 5)
#define HUGERING_ARENA_FLAGS_ALL (HUGERING_ARENA_DONTFORK | HUGERING_ARENA_NO_RESIZE | \
				  HUGERING_ARENA_ZERO_RECYCLED | HUGERING_ARENA_NUMA_NODE | \
				  HUGERING_ARENA_NODE_LOCAL | HUGERING_ARENA_PREPARE)

struct hugering_arena_opts {
	size_t page_size;	/* 0 = default hugepage size */
	int numa_node;		/* with HUGERING_ARENA_NUMA_NODE; else 0 = any */
	size_t max_bytes;	/* hugepage memory the arena may hold; 0 = no limit */
	int wait_ms;		/* wait this long for the pool to refill after this process
				 * freed hugepages (dying rings): 0 = default (250), -1 = never */
	unsigned flags;		/* HUGERING_ARENA_* */
	unsigned resv[4];	/* must be zero */
};

struct hugering_arena_stats {
	size_t page_size;
	unsigned pages_held;	/* hugepages the arena holds (shared, ready and dedicated) */
	unsigned rings_live;
	size_t bytes_in_use;	/* memory of live rings */
	size_t bytes_waiting;	/* memory of destroyed rings the kernel may still write */
	size_t bytes_free;	/* never used, or recycled by resize: ready for rings */
	uint64_t rings_created;
	uint64_t pages_retired;	/* shared pages given back once all their rings were gone */
	uint64_t resize_recycled; /* rings whose memory was freed at once by a resize */
	uint64_t pool_waits;	/* allocations that waited for the pool */
	uint64_t pages_prepared; /* fresh pages faulted in ahead of need (background) */
	uint64_t prepared_used;	/* of those, taken by a ring */
	uint64_t resv[6];	/* zeroed by the library: room for new fields */
};

int hugering_arena_create(const struct hugering_arena_opts *o, struct hugering_arena **out);
/*
 * -EBUSY while rings made from it are alive, and always for
 * hugering_default_arena() (the library's, kept for the process's life);
 * then nothing is freed.  -ECHILD in a forked child (the parent's arena).
 */
int hugering_arena_destroy(struct hugering_arena *a);
int hugering_arena_stats(struct hugering_arena *a, struct hugering_arena_stats *out);
/*
 * Give back every hugepage the arena holds that no live ring uses: spare
 * regions (and their fds) and shared pages whose rings are all gone, also
 * of the default arena.  Pages dying rings still pin return to the pool
 * when the kernel lets go of them.  Returns how many hugepages were given
 * back, or -ECHILD in a forked child.
 */
int hugering_arena_trim(struct hugering_arena *a);
/* The process-wide arena hugering_queue_init* use; created on first use. */
struct hugering_arena *hugering_default_arena(void);

/* How a ring's memory is recycled when it is destroyed. */
enum hugering_recycle {
	HUGERING_RECYCLE_NONE = 0,	/* kernel-mapped: the kernel's business */
	HUGERING_RECYCLE_RESIZE,	/* resized into a throw-away region first: reusable at once */
	HUGERING_RECYCLE_QUARANTINE,	/* never reused; its page is replaced when all its rings are gone */
	HUGERING_RECYCLE_DEDICATED,	/* its own region, unmapped at exit */
};

/* ------------------------------------------------------------------ */
/* Ring factory                                                        */
/* ------------------------------------------------------------------ */

enum hugering_mode {
	HUGERING_MODE_NOMMAP_HUGE = 1,	/* NO_MMAP ring in hugepages */
	HUGERING_MODE_NOMMAP_BASE,	/* NO_MMAP ring in base pages */
	HUGERING_MODE_KERNEL,		/* ordinary kernel-mapped ring */
};

enum hugering_policy {
	HUGERING_POLICY_ENV = 0,	/* HUGERING_MODE from the environment, else auto */
	HUGERING_POLICY_AUTO,		/* user memory where the kernel takes it, else kernel-mapped */
	HUGERING_POLICY_NOMMAP,		/* user memory or fail with the error: never fall back */
	HUGERING_POLICY_KERNEL,		/* always kernel-mapped */
};

struct hugering_init_opts {
	int policy;		/* enum hugering_policy */
	struct hugering_arena *arena;	/* NULL = the default arena */
	size_t page_size;	/* 0 = the arena's; 4096 = base pages (own region) */
	int numa_node;		/* with HUGERING_INIT_NUMA_NODE: an own region on that
				 * node; else 0 = the arena's */
	/*
	 * With IORING_SETUP_IOPOLL: the files the ring will do I/O on.  If one
	 * cannot be polled (hugering_iopoll_probe), the ring is made without
	 * IOPOLL and hugering_ring_info() says so (iopoll_degraded, reason),
	 * or with HUGERING_INIT_IOPOLL_STRICT the call fails -EOPNOTSUPP.
	 */
	const int *iopoll_fds;
	unsigned n_iopoll_fds;
	unsigned flags;		/* HUGERING_INIT_* */
	unsigned resv[4];	/* must be zero */
};

#define HUGERING_INIT_IOPOLL_STRICT (1u << 0)
/* numa_node names the node (0 is node 0); without it 0 means the arena's. */
#define HUGERING_INIT_NUMA_NODE (1u << 1)
/*
 * As HUGERING_INIT_NUMA_NODE with the node of the calling thread's CPU, or
 * with IORING_SETUP_SQPOLL|IORING_SETUP_SQ_AFF of sq_thread_cpu (the CPU
 * that works the rings).  numa_node 0; not with HUGERING_INIT_NUMA_NODE.
 * The ring gets a region of its own unless the arena is on that node (an
 * arena made with HUGERING_ARENA_NODE_LOCAL on the same node packs rings).
 */
#define HUGERING_INIT_NODE_LOCAL (1u << 2)
/*
 * Keep the ring alive at hugering_queue_exit() and hand it to a later
 * create with the same entries, params and options, instead of closing it
 * (off unless asked for, on both the create and the reuse).  At exit the
 * ring is drained and reset: unsubmitted SQEs dropped, every request
 * cancelled (at most 50 ms), every completion reaped, files, buffers,
 * eventfd, NAPI, io-wq affinity, hugering's buffer rings unregistered,
 * io-wq max workers put back, no personality registered since (a probe);
 * then /proc/self/fdinfo must show nothing left, or the ring is closed as
 * without the flag.  Never pooled (closed):
 * kernel-mapped rings, SQPOLL, R_DISABLED, ATTACH_WQ, IOPOLL with
 * iopoll_fds, REGISTERED_FD_ONLY, a registered ring fd, a CQ overflow or
 * dropped SQEs, requests that do not cancel.  SINGLE_ISSUER rings go only
 * to their creating thread and close at its exit.  At most 8 rings are
 * kept per process, each at most 1 s idle; a forked child never gets its
 * parent's.  A pooled ring's SQ/CQ heads and tails are where the last user
 * left them (empty: head == tail), not 0.  Buffer groups hugering did not
 * set up (liburing's buffer rings, IORING_OP_PROVIDE_BUFFERS),
 * IORING_REGISTER_MEM_REGION and zero-copy receive queues are invisible to
 * hugering: free them before exit.
 * hugering_ring_info() says pooled (1: the ring was used before).
 */
#define HUGERING_INIT_POOLED (1u << 3)

struct hugering_ring_info {
	int mode;		/* enum hugering_mode */
	int fallback_errno;	/* 0, or why user memory was not used */
	const char *fallback_reason;	/* valid until hugering_queue_exit() */
	size_t page_size;	/* page size of the ring memory */
	size_t mem_bytes;	/* ring memory: SQEs + rings (kernel mode: as mapped) */
	unsigned sq_entries;
	unsigned cq_entries;
	unsigned setup_flags;	/* flags the kernel accepted */
	void *mem;		/* start of the ring memory (the SQEs) */
	size_t rings_offset;	/* rings start at mem + rings_offset (user memory only) */
	int contiguous;		/* enum hugering_contig of the ring memory */
	int proof;		/* enum hugering_proof */
	int numa_node;
	void *page_addr;	/* the hugepage (or own region) holding the ring */
	size_t page_offset;	/* mem - page_addr */
	int recycle;		/* enum hugering_recycle */
	int iopoll_degraded;	/* IOPOLL was asked for and dropped: see iopoll_reason */
	const char *iopoll_reason;	/* valid until hugering_queue_exit() */
	int pooled;		/* 1: a pooled ring (HUGERING_INIT_POOLED), reused */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

/*
 * Drop-in replacements for io_uring_queue_init{,_params}.  The ring's SQEs
 * and rings live in hugepage memory (IORING_SETUP_NO_MMAP) where the kernel
 * allows it; otherwise, under the auto policy, the ring is kernel-mapped and
 * hugering_ring_info() says why.  @p is filled back as liburing does.
 * Environment: HUGERING_MODE=auto|nommap|kernel (an unknown value: -EINVAL).
 * On failure hugering_last_error() tells why.
 */
int hugering_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int hugering_queue_init_params(unsigned entries, struct io_uring *ring,
			       struct io_uring_params *p);
int hugering_queue_init_opts(unsigned entries, struct io_uring *ring,
			     struct io_uring_params *p,
			     const struct hugering_init_opts *o);
/* For every ring made above, kernel-mapped or not; also any liburing ring. */
void hugering_queue_exit(struct io_uring *ring);
/* -ENOENT for a ring hugering did not make. */
int hugering_ring_info(const struct io_uring *ring, struct hugering_ring_info *out);
/*
 * io_uring_resize_rings() for rings made above, in user memory too (which
 * liburing refuses): new SQ and CQ sizes from @p->sq_entries and, with
 * IORING_SETUP_CQSIZE, @p->cq_entries (the only flags allowed: CQSIZE and
 * CLAMP, else -EINVAL).  Linux 6.13+ and IORING_SETUP_DEFER_TASKRUN rings
 * only, else -EOPNOTSUPP with the reason.  A ring in user memory gets new
 * memory from its arena and its old memory is reused at once; a
 * kernel-mapped ring is resized by liburing (2.9+; -EOPNOTSUPP when built
 * against an older one).  SQEs prepared or submitted and CQEs not yet seen
 * are kept; when they do not fit, -EOVERFLOW and the ring is unchanged.
 * On success @p holds the kernel's answer (entries as rounded, offsets)
 * with flags cleared, as liburing leaves it; on failure @p is untouched
 * (user memory) and nothing changes.  Pointers into the ring (SQEs, CQEs)
 * are invalid after a success.  From the ring's submitter thread only.
 */
int hugering_ring_resize(struct io_uring *ring, struct io_uring_params *p);
const char *hugering_mode_name(int mode);

/*
 * Why this thread's last hugering call failed: one line, whole (valid until
 * this thread's next hugering call; freed at thread exit).  Every function
 * that can fail clears it on entry and sets it on every failure, so it
 * describes the last call only ("" after a success).  Functions that
 * cannot fail (the frees and exits, names, accessors, versions) leave it
 * alone, so cleaning up after a failure keeps its reason.
 */
const char *hugering_last_error(void);

/*
 * Events the library does not report through return values, to a callback
 * of yours (the library itself never prints):
 *   HUGERING_LOG_WARN   a ring fell back to kernel-mapped memory, and why
 *   HUGERING_LOG_INFO   an allocation waited for the pool to refill; an
 *                       arena page retired (handed back to the pool)
 *   HUGERING_LOG_DEBUG  every failure reason (what hugering_last_error says)
 * Called on the thread the event happens on (possibly the library's probe
 * thread), possibly with a library lock held: the callback must not call
 * hugering.  @msg is valid during the call only.
 * hugering_set_log(NULL, 0, NULL) turns it off (the default).
 */
enum hugering_log_level {
	HUGERING_LOG_WARN = 1,
	HUGERING_LOG_INFO,
	HUGERING_LOG_DEBUG,
};

typedef void (*hugering_log_fn)(int level, const char *msg, void *arg);

/* Events up to @max_level go to @fn.  -EINVAL for a level out of range. */
int hugering_set_log(hugering_log_fn fn, int max_level, void *arg);

/* ------------------------------------------------------------------ */
/* Provided buffer rings                                               */
/* ------------------------------------------------------------------ */

/*
 * Drop-in replacements for liburing's io_uring_setup_buf_ring() and
 * io_uring_free_buf_ring(): same arguments, same return convention (NULL
 * and *@err = -errno; 0 or -errno).  The buffer ring lives in hugepage
 * memory from the ring's arena (the default arena for other rings), many
 * rings per hugepage at 4 KiB alignment, registered with
 * IORING_REGISTER_PBUF_RING (@flags, e.g. IOU_PBUF_RING_INC, pass through).
 * Where hugepages are short or the kernel refuses the memory, liburing's
 * own allocation is used and hugering_buf_ring_info() says why.  After
 * hugering_queue_exit() a ring's buffer rings are gone (their memory is
 * quarantined, never handed out while the dying ring may write it).
 */
struct io_uring_buf_ring *hugering_setup_buf_ring(struct io_uring *ring, unsigned int nentries,
						  int bgid, unsigned int flags, int *err);
int hugering_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br,
			   unsigned int nentries, int bgid);

enum hugering_buf_ring_mode {
	HUGERING_BUF_RING_HUGE = 1,	/* in a hugering arena's hugepage */
	HUGERING_BUF_RING_LIBURING,	/* liburing's own allocation (fallback) */
};

struct hugering_buf_ring_info {
	int mode;		/* enum hugering_buf_ring_mode */
	int fallback_errno;	/* 0, or why hugepage memory was not used */
	const char *fallback_reason;	/* valid until the buffer ring is freed (or its ring exits) */
	int bgid;
	unsigned nentries;
	unsigned flags;		/* as registered (IOU_PBUF_RING_INC) */
	void *mem;		/* the buffer ring */
	size_t mem_bytes;	/* what the kernel pins: nentries * 16, page-rounded */
	size_t page_size;	/* of the memory holding it */
	void *page_addr;	/* the hugepage holding it (HUGE), else mem */
	size_t page_offset;	/* mem - page_addr */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

/* -ENOENT when @bgid of @ring was not set up by hugering_setup_buf_ring(). */
int hugering_buf_ring_info(const struct io_uring *ring, int bgid,
			   struct hugering_buf_ring_info *out);

/* ------------------------------------------------------------------ */
/* Buffer pools and registered (fixed) buffers                         */
/* ------------------------------------------------------------------ */

/*
 * A buffer pool: @count buffers of @size bytes in hugepage memory (a region
 * of its own, shared memory like ring memory).  A buffer never straddles a
 * hugepage boundary unless @size is larger than a hugepage (then it starts
 * on one).  Where the pool is short, base pages are used and the info says
 * why (HUGERING_BUFPOOL_NO_FALLBACK: -ENOMEM instead).
 */
#define HUGERING_BUFPOOL_NO_FALLBACK	(1u << 0)
/* numa_node names the node (0 is node 0); without it 0 means any. */
#define HUGERING_BUFPOOL_NUMA_NODE	(1u << 1)
#define HUGERING_BUFPOOL_FLAGS_ALL	(HUGERING_BUFPOOL_NO_FALLBACK | \
					 HUGERING_BUFPOOL_NUMA_NODE)
/* The largest buffer and pool: the kernel's limit for one fixed buffer; bids are 16 bits. */
#define HUGERING_BUFPOOL_MAX_SIZE	(1UL << 30)
#define HUGERING_BUFPOOL_MAX_COUNT	65536u

struct hugering_bufpool_opts {
	size_t page_size;	/* 0 = default hugepage size; 4096 = base pages */
	size_t align;		/* buffer alignment, a power of two <= 4096;
				 * 0 = the power of two >= size, at most 4096 */
	int numa_node;		/* with HUGERING_BUFPOOL_NUMA_NODE; else 0 = any */
	unsigned flags;		/* HUGERING_BUFPOOL_* */
	unsigned resv[4];	/* must be zero */
};

struct hugering_bufpool_info {
	void *mem;		/* the pool's memory; buffer 0 starts here */
	size_t mem_bytes;	/* whole pages */
	unsigned count;
	size_t buf_size;
	size_t stride;		/* distance between buffers within a page */
	size_t page_size;	/* of the memory (4096 after a fallback) */
	unsigned bufs_per_page;	/* 0 when a buffer is larger than a page */
	unsigned pages;		/* pages of page_size holding buffers */
	int fallback_errno;	/* 0, or why base pages were used */
	const char *fallback_reason;	/* "" if none; valid while the pool lives */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

struct hugering_bufpool;

/* -EINVAL for 0 or > HUGERING_BUFPOOL_MAX_* buffers or bytes, bad opts (NULL = defaults). */
int hugering_bufpool_create(unsigned count, size_t size, const struct hugering_bufpool_opts *o,
			    struct hugering_bufpool **out);
/* Registered buffers stay pinned by the kernel (safe) until unregistered. */
void hugering_bufpool_destroy(struct hugering_bufpool *p);
int hugering_bufpool_info(const struct hugering_bufpool *p, struct hugering_bufpool_info *out);
/* Buffer @i's address; NULL when out of range. */
void *hugering_bufpool_buf(const struct hugering_bufpool *p, unsigned i);
/*
 * One iovec per buffer, buffer i in @iov[i], for io_uring_register_buffers()
 * or hugering_register_buffers().  Returns the count; -ENOSPC if @max is
 * smaller (with @iov NULL: only the count).
 */
int hugering_bufpool_iovecs(const struct hugering_bufpool *p, struct iovec *iov, unsigned max);
/*
 * Add every buffer to a provided buffer ring of @nentries (buffer id i is
 * buffer i) and advance its tail once.  Returns the count; -EINVAL when the
 * ring is smaller than the pool.
 */
int hugering_bufpool_fill(const struct hugering_bufpool *p, struct io_uring_buf_ring *br,
			  unsigned nentries);

/*
 * What registering buffers costs.  The kernel charges each compound page a
 * registration pins at its full size, once per ring (a 4 KiB buffer in a
 * 1 GiB page charges 1 GiB), each base page once per buffer that covers it,
 * to RLIMIT_MEMLOCK (per user) unless CAP_IPC_LOCK, and to VmPin either way.
 */
struct hugering_reg_charge {
	uint64_t charge_bytes;	/* predicted charge (and VmPin growth) */
	uint64_t buffer_bytes;	/* sum of the buffers' lengths */
	unsigned entries;	/* table entries the registration takes */
	unsigned pages;		/* pages charged (each compound page once) */
	size_t page_size;	/* largest page size seen */
	int exact;		/* 0: transparent hugepages seen, charge is a lower bound */
	int cap_ipc_lock;	/* 1: not charged against the limit */
	uint64_t limit;		/* RLIMIT_MEMLOCK soft limit; UINT64_MAX = unlimited */
	uint64_t pinned;	/* VmPin of this process now; UINT64_MAX = unknown */
	int fits;		/* 1: within the limit (or not charged), 0: would be refused */
	int cloned;		/* hugering_clone_buffers: 1 shared, 0 registered again */
	int fallback_errno;	/* hugering_clone_buffers: 0, or the clone's error when
				 * registered again */
	const char *fallback_reason;	/* "" or why the clone fell back; valid until
					 * @dst's buffers are unregistered or @dst exits */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

/*
 * Table layout.  Default: a pool registers one entry per buffer (entry i is
 * buffer i), caller iovecs one entry each.  HUGERING_REG_SPANS: a pool
 * registers runs of whole pages of at most 1 GiB holding whole buffers
 * (buffer i is in entry hugering_bufpool_reg_index(); for pools of more
 * than 16384 buffers), caller iovecs over 1 GiB are split into 1 GiB
 * pieces (consecutive entries).  Runs of hugepages are coalesced by the
 * kernel on 6.12+ (one bvec per folio).
 */
#define HUGERING_REG_SPANS	(1u << 0)

/*
 * Predict registering @pool's buffers or @nr caller @iov (exactly one of
 * the two), laid out by @flags.  -EINVAL for empty or oversized buffers
 * (0 or > 1 GiB each, > 16384 entries: the kernel's limits); -EFAULT for
 * unmapped memory.
 */
int hugering_register_charge(const struct hugering_bufpool *pool, const struct iovec *iov,
			     unsigned nr, unsigned flags, struct hugering_reg_charge *out);
/* The table entry of buffer @i registered with @flags; -EINVAL out of range. */
int hugering_bufpool_reg_index(const struct hugering_bufpool *p, unsigned i, unsigned flags);
/*
 * io_uring_register_buffers() of @pool or @iov, laid out by @flags, after
 * the prediction above: -ENOMEM, with the limit and the predicted bytes in
 * hugering_last_error(), where the kernel would refuse it.  @out (may be
 * NULL) gets the prediction.  Sparse tables and tagged updates: use
 * liburing's io_uring_register_buffers_sparse()/_tags()/_update_tag()
 * directly; hugering_register_charge() predicts their cost.
 */
int hugering_register_buffers(struct io_uring *ring, const struct hugering_bufpool *pool,
			      const struct iovec *iov, unsigned nr, unsigned flags,
			      struct hugering_reg_charge *out);
/* io_uring_unregister_buffers(), and forget what hugering_register_buffers() recorded. */
int hugering_unregister_buffers(struct io_uring *ring);
/*
 * Give @dst the buffers registered on @src without charging them again
 * (IORING_REGISTER_CLONE_BUFFERS, Linux 6.12).  Where the kernel lacks or
 * refuses it (-EINVAL, -EOPNOTSUPP) and @src's buffers came from
 * hugering_register_buffers(), they are registered on @dst again:
 * @out->cloned is 0, charge_bytes the repeated charge, fallback_errno and
 * fallback_reason why.
 */
int hugering_clone_buffers(struct io_uring *dst, struct io_uring *src,
			   struct hugering_reg_charge *out);

/* ------------------------------------------------------------------ */
/* Polled I/O                                                          */
/* ------------------------------------------------------------------ */

struct hugering_iopoll_verdict {
	int supported;		/* 1 yes, 0 no, -1 unknown */
	const char *reason;	/* kept by the library for the life of the process */
	uint64_t resv[8];	/* zeroed by the library: room for new fields */
};

/*
 * Can @fd do polled I/O on an IORING_SETUP_IOPOLL ring here?  From the file
 * type, O_DIRECT, the disk's queue/io_poll (partitions resolved), and on the
 * live system a one-block polled read.  -EBADF for a bad fd.
 */
int hugering_iopoll_probe(int fd, struct hugering_iopoll_verdict *out);

/*
 * A completion came back -EOPNOTSUPP from an IOPOLL ring: was it polled I/O
 * that @fd cannot do?  Returns 1 and the reason in @buf (switch that file to
 * a ring without IOPOLL and resubmit), 0 if not, -errno on bad input;
 * -ERANGE if the reason does not fit in @len bytes (never cut:
 * hugering_last_error() says how many it needs).
 */
int hugering_iopoll_explain(const struct io_uring_cqe *cqe, int fd, char *buf, size_t len);

/*
 * @n rings sharing one SQPOLL kernel thread: the first is created with
 * IORING_SETUP_SQPOLL and @p's other flags and fields (sq_thread_cpu with
 * SQ_AFF, sq_thread_idle), the others attach to it (IORING_SETUP_ATTACH_WQ),
 * all through hugering_queue_init_opts (ring memory in hugepages).  The
 * thread is shared only within this process (a kernel rule).  On failure no
 * ring is left.  Destroy each with hugering_queue_exit().
 *
 * Submitting: io_uring_submit() on each ring, from one thread per ring.
 * liburing publishes the SQEs, then the SQ tail with a store-release, then a
 * full barrier, and only then reads IORING_SQ_NEED_WAKEUP to wake a sleeping
 * thread; checking the flag before the barrier loses wakeups.
 */
int hugering_sqpoll_group(struct io_uring *rings, unsigned n, unsigned entries,
			  const struct io_uring_params *p, const struct hugering_init_opts *o);

/* Human-readable names for the enums above (static strings). */
const char *hugering_contig_name(int contig);
const char *hugering_proof_name(int proof);
const char *hugering_backing_name(int backing);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* HUGERING_H */

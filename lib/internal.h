/* SPDX-License-Identifier: MIT */
/* Interfaces shared between the layers of libhugering; not installed. */
#ifndef HUGERING_INTERNAL_H
#define HUGERING_INTERNAL_H

#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hugering.h"
#include "compat.h"

#define HR_BASE_PAGE 4096UL
#define HR_PAGEMAP_PFN_MASK ((1ULL << 55) - 1)
#define HR_PAGEMAP_SWAPPED (1ULL << 62)
#define HR_PAGEMAP_PRESENT (1ULL << 63)

#define HR_ALIGN_UP(x, a) (((x) + (a) - 1) & ~((size_t)(a) - 1))

static inline bool hr_is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

/*
 * sys.c: the platform layer.  Each call returns -errno on failure (fds,
 * byte counts and ioctl results otherwise); tests link a fault seam in its
 * place (tests/fault/sys-fault.c).
 */
struct io_uring_params;
int hr_sys_memfd_create(const char *name, unsigned flags);
int hr_sys_ftruncate(int fd, off_t len);
int hr_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
		void **out);
int hr_sys_munmap(void *addr, size_t len);
int hr_sys_fallocate(int fd, int mode, off_t off, off_t len);
int hr_sys_madvise(void *addr, size_t len, int advice);
int hr_sys_mbind(void *addr, size_t len, int mode, const unsigned long *mask,
		 unsigned long maxnode, unsigned flags);
/* Where @n pages are (move_pages without target nodes). */
int hr_sys_move_pages(unsigned long n, void *const *addrs, int *nodes);
int hr_sys_io_uring_setup(unsigned entries, struct io_uring_params *p);
int hr_sys_io_uring_register(int fd, unsigned op, void *arg, unsigned nr);
ssize_t hr_sys_pread(int fd, void *buf, size_t len, off_t off);
long hr_sys_ioctl(int fd, unsigned long req, void *arg);

/* util.c */
int hr_read_long(const char *path, long *out);
int hr_read_text(const char *path, char *buf, size_t len);
unsigned hr_log2(size_t x);
void hr_copy_str(char *dst, size_t len, const char *src);
/* Heap strings of the formatted size (never cut); NULL when memory is out. */
char *hr_vstrf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
char *hr_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An object's reason: "" (static) or a heap copy; hr_reason_free tells them apart. */
const char *hr_reason_dup(const char *s);
void hr_reason_free(const char *s);
/* One copy of @s for the life of the process (answers no object owns). */
const char *hr_intern(const char *s);
bool hr_liburing_at_least(int major, int minor);
/* A mount table line: source and mount point of up to PATH_MAX each, type, options. */
#define HR_MNT_LINE_MAX (3 * PATH_MAX)
/* HUGERING_SYSROOT, or "" for the live system. */
const char *hr_sysroot(void);
void hr_path(const char *root, const char *abs, char *buf, size_t len);
#define HR_CAP_IPC_LOCK 14
/* Is @cap in this process's effective set (CapEff in @root/proc/self/status)? */
bool hr_cap_effective(const char *root, int cap);
int hr_cpuset_cpus(cpu_set_t *out, char *list, size_t len);
/* Run @fn(@arg) on a short-lived thread of its own and wait for it. */
void hr_run_on_helper(void (*fn)(void *), void *arg);
/* CLOCK_MONOTONIC in ms. */
long hr_now_ms(void);

/*
 * worker.c: one background thread for work the caller should not wait
 * for.  A job is embedded in its owner; fields are the worker's.
 */
struct hr_job {
	struct hr_job *next;
	void (*run)(struct hr_job *j);
	bool queued, running, again;
	long due_ms;			/* hr_now_ms() it may run at; 0 = now */
};
/* Queue @j unless it is queued or running; starts the thread if need be. */
void hr_worker_post(struct hr_job *j);
/*
 * The same, to run no earlier than @due_ms (hr_now_ms()); posted while it
 * runs (also from its own run), it runs again then (the earliest asked).
 */
void hr_worker_post_at(struct hr_job *j, long due_ms);
/* After this, @j is neither queued nor running (a run in progress is waited for). */
void hr_worker_cancel(struct hr_job *j);
/* Threads started so far in this process. */
unsigned long hr_worker_started(void);
void hr_worker_fork_prepare(void);
void hr_worker_fork_parent(void);
void hr_worker_fork_child(void);

/* cgroup.c: this process's hugetlb cgroup for one page size (v1 hierarchy, else v2). */
struct hr_hugetlb_cg {
	char dir[PATH_MAX];	/* a longer one cannot be read by path: -ENAMETOOLONG */
	size_t top;		/* length of the hierarchy's mount point in dir */
	char file[4][48];	/* limit, usage, rsvd limit, rsvd usage file names */
	bool v1;
	long long max, usage;		/* bytes; -1: no limit / unknown */
	long long rsvd_max, rsvd_usage;
};
int hr_hugetlb_cgroup_at(const char *root, size_t ps, struct hr_hugetlb_cg *cg);
/*
 * Does this process's hugetlb cgroup, or a parent, keep @need more bytes of
 * @ps pages out?  Then *@why names the limit file and the cgroup (heap,
 * the caller's to free).
 */
bool hr_hugetlb_cgroup_refuses(size_t ps, long long need, char **why);

/* hugepage.c: @root "" is the live system */
int hr_page_sizes_at(const char *root, size_t *sizes, int max);
size_t hr_default_page_size_at(const char *root);
/* The default hugepage size: 0, -ENOSYS (no hugetlb), or -errno if unreadable. */
int hr_default_page_size_get(const char *root, size_t *ps);
int hr_numa_nodes_at(const char *root, int *nodes, int max);
int hr_pool_get_at(const char *root, size_t page_size, int numa_node,
		   struct hugering_pool *out);
int hr_mounts_at(const char *root, struct hugering_mount *out, int max);
/* A hugetlbfs mount's page size, from its options ("pagesize=2M"; else the default). */
size_t hr_mount_page_size(const char *root, const char *opts);
bool hr_page_size_supported(size_t page_size);
/* 0, -EINVAL (not offered), or -errno when the sizes cannot be read. */
int hr_page_size_check(size_t page_size);
int hr_pool_usable(size_t page_size, int numa_node, long *usable);
bool hr_numa_node_online(int node);
/* An options struct's numa_node and NUMA_NODE flag -> @node (-1 = any). */
int hr_opts_node(int numa_node, bool flagged, int *node);
/* The node of @cpu, or of the CPU the calling thread is on (@cpu < 0). */
int hr_cpu_node(int cpu, int *node);
/*
 * hr_opts_node with a *_NODE_LOCAL flag: @local puts @node on hr_cpu_node(@cpu);
 * -EINVAL with the NUMA_NODE flag too (one way to name a node).
 */
int hr_opts_node_local(int numa_node, bool flagged, bool local, int cpu, int *node);
/*
 * One line: why @bytes more of @ps pages on @node (-1 any) cannot be had;
 * *@why is the caller's to free (NULL when memory is out).
 */
bool hr_explain_no_hugepages(size_t ps, int node, size_t bytes, char **why);

/* pagemap.c */
int hr_pagemap_open(void);
int hr_pfn_visible(void);
/* Read @n entries for the 4 KiB pages starting at @addr in one pread. */
int hr_pagemap_read(int fd, uintptr_t addr, size_t n, uint64_t *out);
/* Node of each of @n addresses (move_pages); -errno per entry if unknown. */
int hr_numa_nodes_of(void *const *addrs, size_t n, int *nodes);
/*
 * The page size of the VMA holding @addr (KernelPageSize in smaps) and where
 * that VMA ends; 0 if @addr is not mapped.
 */
size_t hr_vma_page_size(uintptr_t addr, int *backing, uintptr_t *vma_end);
/*
 * hugering_mem_verify() of memory the library mapped itself from a hugetlb
 * memfd of page size @known (0: unknown, the kernel is asked per VMA).
 */
int hr_mem_verify(const void *addr, size_t len, size_t known, struct hugering_verify *out);

/* region.c */
int hr_memfd_for(size_t page_size, const char *name);
/* hugering_region_alloc on checked options, without setting the last error. */
int hr_region_alloc(const struct hugering_region_opts *o, struct hugering_region **out);
void hr_region_free(struct hugering_region *r);
int hr_region_info(const struct hugering_region *r, struct hugering_region_info *out);
/*
 * Map @len bytes of @fd at @off (at @fixed if not NULL), bind to @node and
 * fault in; -ENOMEM (never SIGBUS) when the pool cannot supply it.
 */
int hr_map_populated(int fd, off_t off, size_t len, int node, void *fixed, void **out);

/* arena.c: one ring's memory */
struct hr_page;
struct hr_slot {
	struct hugering_arena *arena;	/* NULL: an own region outside any arena */
	struct hr_page *page;		/* shared page, or NULL: own region */
	struct hugering_region *region;	/* own region */
	char *addr;
	size_t len;
	size_t held;			/* own region: hugepage bytes held */
	char *page_addr;
	size_t page_size;
	bool reused;			/* a resize-recycled slot: not zero */
	bool contig;			/* own region: physically contiguous */
};
int hr_arena_alloc(struct hugering_arena *a, size_t len, bool contig, struct hr_slot *s);
int hr_own_region(const struct hugering_region_opts *ro, int wait_ms, uint64_t *waits,
		  struct hr_slot *s);
void hr_arena_free(struct hr_slot *s, bool clean);
int hr_arena_wait_ms(const struct hugering_arena *a);
struct hugering_arena *hr_default_arena(void);
/* How long this thread's last allocation waited for the pool (ms; 0 = not). */
int hr_arena_last_wait_ms(void);
/* Did this process let go of hugepages dying rings may pin, at or after @t ms? */
bool hr_arena_released_since(long t);
bool hr_arena_may_resize(const struct hugering_arena *a);
bool hr_arena_zero_recycled(const struct hugering_arena *a);
size_t hr_arena_page_size(const struct hugering_arena *a);
int hr_arena_node(const struct hugering_arena *a);

/* layout.c */
int hr_ring_layout(unsigned entries, const struct io_uring_params *p,
		   struct hugering_layout *out);
unsigned hr_ring_header(void);
int hr_ring_entries(unsigned entries, const struct io_uring_params *p,
		    unsigned *sq, unsigned *cq);

/* iopoll.c */
int hr_iopoll_probe(int fd, struct hugering_iopoll_verdict *out);

/* probe.c */
const struct hugering_kernel_caps *hr_caps(void);

/* ringpool.c: what a ring created with HUGERING_INIT_POOLED is pooled by. */
struct hr_pool_rec {
	bool candidate;			/* may be pooled at exit (decided at creation) */
	unsigned entries;		/* as the caller asked */
	struct io_uring_params want;	/* the caller's params (checked, normalised) */
	int policy;
	struct hugering_arena *arena;	/* the options' (NULL: the default arena) */
	size_t page_size;
	int numa_node;
	struct io_uring_params got;	/* filled back at first creation */
	int info_fd;			/* /proc/self/fdinfo/<fd_num>, open while a candidate */
	int fd_num;			/* the program's fd number of the ring at creation */
	uint64_t ino;			/* the ring file's inode number */
	int pers_next;			/* the personality id the next probe must get */
	unsigned sq_head;		/* the SQ head when last handed out: nothing submitted since if equal */
	uint64_t barriers;		/* drain barriers submitted (their user_data differ) */
	uint8_t int_flags;		/* liburing's int_flags at creation */
	uint64_t owner;			/* the creating thread's token */
	uid_t ruid;			/* the creator's real uid: the kernel charges locked memory to it */
	bool ipc_lock;			/* ... unless it had CAP_IPC_LOCK then */
};

/* registry.c: what hugering knows of each ring it made, keyed by its SQE address */
struct hr_ring_rec {
	struct hr_ring_rec *next;
	const void *key;
	bool user_mem;			/* else kernel-mapped */
	int ref_fd;			/* user_mem: our own reference to the ring */
	struct hr_slot slot;
	struct hugering_ring_info info;	/* reasons: "" or the record's heap copies */
	struct hr_pool_rec pool;
};
/* A record with "" reasons; NULL (and the error set) when memory is out. */
struct hr_ring_rec *hr_ring_rec_new(void);
void hr_ring_rec_free(struct hr_ring_rec *rec);
void hr_registry_add(struct hr_ring_rec *rec);
/* Unlink and return the record of @key, or NULL. */
struct hr_ring_rec *hr_registry_take(const void *key);
void hr_registry_note_iopoll(const void *key, const char *why);
void hr_registry_note_fallback(const void *key, int err, const char *why);
int hr_registry_info(const void *key, struct hugering_ring_info *out);
/* The arena a hugering ring's memory came from; NULL for any other ring. */
struct hugering_arena *hr_ring_arena(const struct io_uring *ring);
/*
 * Added at load time by the layers above that keep per-ring records
 * (bufring.c, regbuf.c), which the registry cannot call: exit runs in
 * hugering_queue_exit() on every ring before it is closed, so its records
 * go (buffer rings quarantined); the fork handlers run inside the
 * registry's, in the order added (their locks are never held across a call
 * into another layer's, so any order is safe).
 */
struct hr_ring_hooks {
	void (*exit)(const struct io_uring *ring);
	/* Unregister and forget @ring's buffer rings (it is being pooled); 0 or -errno. */
	int (*reset)(const struct io_uring *ring);
	void (*fork_prepare)(void);
	void (*fork_parent)(void);
	void (*fork_child)(void);
};
void hr_ring_hooks_add(const struct hr_ring_hooks *h);
/* Every hook's exit, for @ring about to be closed. */
void hr_ring_hooks_exit(const struct io_uring *ring);
/* Every hook's reset, for @ring about to be pooled: 0, or the first -errno. */
int hr_ring_hooks_reset(const struct io_uring *ring);

/* bufring.c, regbuf.c: @ring was resized, its records were keyed by @old_key. */
void hr_bufring_moved(const void *old_key, const struct io_uring *ring);
void hr_regbuf_moved(const void *old_key, const struct io_uring *ring);
/* Mark the registered ring of @key a pool candidate, with @pr. */
/* false: no such ring (the caller still owns what @pr holds). */
bool hr_registry_note_pool(const void *key, const struct hr_pool_rec *pr);
/* hugering's own fd of a ring in user memory (not IOPOLL-degraded), else -1. */
int hr_registry_ref_fd(const void *key);

/* bufpool.c */
void *hr_bufpool_buf(const struct hugering_bufpool *p, unsigned i);
int hr_bufpool_info(const struct hugering_bufpool *p, struct hugering_bufpool_info *out);
int hr_bufpool_iovecs(const struct hugering_bufpool *p, struct iovec *iov, unsigned max);
/* The pool as HUGERING_REG_SPANS entries; with @iov NULL, how many. */
int hr_bufpool_spans(const struct hugering_bufpool *p, struct iovec *iov, unsigned max);

/* arena.c: fork handlers, run by registry.c's (default arena lock first). */
void hr_arena_fork_prepare(void);
void hr_arena_fork_parent(void);
void hr_arena_fork_child(void);

/* policy.c: the options' policy, else HUGERING_MODE's (auto when unset). */
int hr_ring_policy(const struct hugering_init_opts *o, int *policy);

/* cpuset.c: after an -EINVAL, say so if sq_thread_cpu is outside the cpuset. */
void hr_explain_sq_cpu(const struct io_uring_params *p);

/* params.c: the caller's input, before any memory is taken */
int hr_check_init_opts(const struct hugering_init_opts *o, const struct io_uring_params *p,
		       struct hugering_init_opts *norm);
int hr_check_setup_params(const struct io_uring_params *p);

/* place.c: a slot made ready for a ring (a recycled one zeroed as needed) */
void hr_slot_prepare(const struct hugering_layout *lay, const struct hr_slot *s);
/* place.c: set the ring up in slot @s as @lay says (-EPROTO if liburing put it elsewhere) */
int hr_setup_in(unsigned entries, struct io_uring *ring, const struct io_uring_params *in,
		struct io_uring_params *q, const struct hugering_layout *lay,
		const struct hr_slot *s);

/* memlock.c */
struct rlimit;
/* Would RLIMIT_MEMLOCK explain an -ENOMEM from io_uring_setup (6.14+)? */
bool hr_memlock_explains(struct rlimit *rl);
/*
 * @try(@arg) retried for up to @wait_ms while it fails with an -ENOMEM
 * RLIMIT_MEMLOCK may explain (a dying ring still holds this user's
 * charge); *@explained: it still did at the end (then @rl is the limit).
 */
int hr_memlock_retry(int (*try)(void *), void *arg, int wait_ms, struct rlimit *rl,
		     bool *explained);
/* hr_setup_in, retried up to @wait_ms while a dying ring holds the memlock charge. */
int hr_setup_waiting(unsigned entries, struct io_uring *ring, const struct io_uring_params *in,
		     struct io_uring_params *q, const struct hugering_layout *lay,
		     struct hr_slot *s, int wait_ms);

/* resize.c */
/* Will this ring be recycled by resize at exit? */
bool hr_resize_recycles(const struct io_uring_params *q, const struct hr_slot *s);
/* Resize the ring into a throw-away region; true if its memory is free now. */
bool hr_resize_away(const struct io_uring *ring, int fd);

/* kernelring.c: a kernel-mapped ring; @err and @reason say why not user memory. */
int hr_kernel_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		   const struct io_uring_params *orig, int err, const char *reason);

/* emptypool.c */
/* A pool found empty for this ring's arena, size and node: its reason (heap), or NULL. */
char *hr_empty_pool_known(const struct hugering_init_opts *o, size_t bytes);
void hr_empty_pool_note(const struct hugering_init_opts *o, size_t bytes, const char *reason);
/* Why the pool gave no ring memory: a heap string (NULL when memory is out). */
char *hr_pool_reason(const struct hugering_layout *lay, const struct hugering_init_opts *o);

/* usermem.c: a ring in user memory, or its fallback as @policy says. */
int hr_user_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		 const struct io_uring_params *orig, int policy,
		 const struct hugering_init_opts *o);
/* ring_info's memory fields of a ring in @s laid out as @lay (recycle as @q's flags allow). */
void hr_slot_info(const struct io_uring_params *q, const struct hugering_layout *lay,
		  const struct hr_slot *s, struct hugering_ring_info *info);

/*
 * ringpool.c: live rings kept for reuse (HUGERING_INIT_POOLED).  Close
 * @ring as hugering_queue_exit() always did (its record freed).
 */
void hr_ring_close(struct io_uring *ring, struct hr_ring_rec *rec);
/* After a successful create with POOLED: decide whether the ring may be pooled at exit. */
void hr_pool_note(struct io_uring *ring, unsigned entries, const struct io_uring_params *want,
		  const struct io_uring_params *got, int policy, const struct hugering_init_opts *o);
/* A pooled ring for this create, filled into @ring and @p: 0, or -ENOENT. */
int hr_pool_get(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		const struct io_uring_params *want, int policy,
		const struct hugering_init_opts *o);
/* Reset @ring and keep it: true; false when it must be closed (nothing kept). */
bool hr_pool_put(struct io_uring *ring, struct hr_ring_rec *rec);
void hr_pool_forget(struct hr_ring_rec *rec);

/* ring.c: the entry points' work, for sqpoll.c */
int hr_queue_init_opts(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		       const struct hugering_init_opts *o);
void hr_queue_exit(struct io_uring *ring);

/*
 * error.c: this thread's hugering_last_error().  Every public entry point
 * runs through HR_PUBLIC: the reason is cleared on entry and set on every
 * failure, so it is never stale; inside the library, layers call each
 * other's hr_* functions, never the public ones (which would clear it).
 */
/* hugering_last_error() for the library itself. */
const char *hr_last_error(void);
void hr_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hr_clear_error(void);
/* To the caller's hugering_set_log() callback, if one takes @level. */
void hr_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool hr_log_on(int level);
int hr_result(int ret, const char *what);
#define HR_PUBLIC(call) (hr_clear_error(), hr_result((call), __func__))

#endif

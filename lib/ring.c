/* SPDX-License-Identifier: MIT */
/*
 * Ring factory: io_uring rings whose SQEs and rings live in hugepage memory
 * (IORING_SETUP_NO_MMAP), with a fallback to kernel-mapped rings that is
 * always reported, never silent.
 *
 * The ring itself is set up by liburing's io_uring_queue_init_mem() so that
 * struct io_uring stays liburing's to interpret (its private flags differ
 * between versions); hugering only hands it a buffer laid out for the
 * running liburing (layout.c) and checks afterwards that liburing put the
 * regions where the layout said.
 *
 * Each ring remembers its memory in a registry keyed by the SQE address
 * (stable across copies of struct io_uring), so hugering_queue_exit() and
 * hugering_ring_info() need nothing but the ring.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define REGISTRY_BUCKETS 256

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

struct ring_rec {
	struct ring_rec *next;
	const void *key;
	bool user_mem;			/* else kernel-mapped */
	int ref_fd;			/* user_mem: our own reference to the ring */
	struct hr_slot slot;
	struct hugering_ring_info info;
};

/* A record whose reasons are "" until said (the public fields are never NULL). */
static struct ring_rec *rec_new(void)
{
	struct ring_rec *rec = calloc(1, sizeof(*rec));

	if (!rec) {
		hr_set_error("out of memory for the ring record");
		return NULL;
	}
	rec->info.fallback_reason = "";
	rec->info.iopoll_reason = "";
	return rec;
}

/* The reasons live as long as the ring: freed with its record. */
static void rec_free(struct ring_rec *rec)
{
	if (!rec)
		return;
	hr_reason_free(rec->info.fallback_reason);
	hr_reason_free(rec->info.iopoll_reason);
	free(rec);
}

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ring_rec *registry[REGISTRY_BUCKETS];

const struct hr_ring_hooks *hr_ring_hooks;
/* The hooks prepare ran, for parent and child (they may be set meanwhile). */
static __thread const struct hr_ring_hooks *fork_hooks;

/*
 * fork(), in one place and one order: the default arena's lock, then the
 * registry's, then the buffer rings' (bufring.c, through the hooks), so that
 * none is inherited held.  The child gets its own default arena (arena.c
 * says why).
 */
static void atfork_prepare(void)
{
	hr_arena_fork_prepare();
	pthread_mutex_lock(&registry_lock);
	fork_hooks = __atomic_load_n(&hr_ring_hooks, __ATOMIC_ACQUIRE);
	if (fork_hooks)
		fork_hooks->fork_prepare();
}

static void atfork_parent(void)
{
	if (fork_hooks)
		fork_hooks->fork_parent();
	pthread_mutex_unlock(&registry_lock);
	hr_arena_fork_parent();
}

static void atfork_child(void)
{
	if (fork_hooks)
		fork_hooks->fork_child();
	pthread_mutex_unlock(&registry_lock);
	hr_arena_fork_child();
}

/* At load time, so no fork can come before it. */
__attribute__((constructor)) static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static struct ring_rec **bucket(const void *key)
{
	uintptr_t k = (uintptr_t)key >> 12;

	return &registry[(k ^ (k >> 8)) % REGISTRY_BUCKETS];
}

static void registry_add(struct ring_rec *rec)
{
	pthread_mutex_lock(&registry_lock);
	struct ring_rec **b = bucket(rec->key);

	rec->next = *b;
	*b = rec;
	pthread_mutex_unlock(&registry_lock);
}

static struct ring_rec *registry_take(const void *key)
{
	struct ring_rec **pp, *rec = NULL;

	pthread_mutex_lock(&registry_lock);
	for (pp = bucket(key); *pp; pp = &(*pp)->next) {
		if ((*pp)->key == key) {
			rec = *pp;
			*pp = rec->next;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return rec;
}

static void registry_note_iopoll(const void *key, const char *why)
{
	pthread_mutex_lock(&registry_lock);
	for (struct ring_rec *r = *bucket(key); r; r = r->next) {
		if (r->key == key) {
			r->info.iopoll_degraded = 1;
			hr_reason_free(r->info.iopoll_reason);
			r->info.iopoll_reason = hr_reason_dup(why);
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

static void registry_note_fallback(const void *key, int err, const char *why)
{
	pthread_mutex_lock(&registry_lock);
	for (struct ring_rec *r = *bucket(key); r; r = r->next) {
		if (r->key == key) {
			r->info.fallback_errno = err;
			hr_reason_free(r->info.fallback_reason);
			r->info.fallback_reason = hr_reason_dup(why);
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}

struct hugering_arena *hr_ring_arena(const struct io_uring *ring)
{
	struct hugering_arena *a = NULL;
	const void *key = ring->sq.sqes;

	pthread_mutex_lock(&registry_lock);
	for (struct ring_rec *r = *bucket(key); r; r = r->next) {
		if (r->key == key) {
			a = r->user_mem ? r->slot.arena : NULL;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return a;
}

static int registry_info(const void *key, struct hugering_ring_info *out)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&registry_lock);
	for (struct ring_rec *r = *bucket(key); r; r = r->next) {
		if (r->key == key) {
			*out = r->info;
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return ret;
}

/* ------------------------------------------------------------------ */
/* Policy and input                                                    */
/* ------------------------------------------------------------------ */

static int resolve_policy(const struct hugering_init_opts *o, int *policy)
{
	const char *e;

	if (o && o->policy != HUGERING_POLICY_ENV) {
		if (o->policy < HUGERING_POLICY_AUTO || o->policy > HUGERING_POLICY_KERNEL) {
			hr_set_error("unknown policy %d", o->policy);
			return -EINVAL;
		}
		*policy = o->policy;
		return 0;
	}
	e = getenv("HUGERING_MODE");
	if (!e || !*e || !strcmp(e, "auto"))
		*policy = HUGERING_POLICY_AUTO;
	else if (!strcmp(e, "nommap"))
		*policy = HUGERING_POLICY_NOMMAP;
	else if (!strcmp(e, "kernel"))
		*policy = HUGERING_POLICY_KERNEL;
	else {
		hr_set_error("HUGERING_MODE=%s: expected auto, nommap or kernel", e);
		return -EINVAL;
	}
	return 0;
}

static int check_init_opts(const struct hugering_init_opts *o, struct hugering_init_opts *norm)
{
	int ret;

	if (!o)
		return 0;
	*norm = *o;
	norm->flags &= ~HUGERING_INIT_NUMA_NODE;
	if (o->flags & ~(HUGERING_INIT_IOPOLL_STRICT | HUGERING_INIT_NUMA_NODE) ||
	    (o->n_iopoll_fds && !o->iopoll_fds))
		goto bad;
	for (size_t i = 0; i < sizeof(o->resv) / sizeof(o->resv[0]); i++)
		if (o->resv[i])
			goto bad;
	ret = o->page_size && o->page_size != HR_BASE_PAGE ? hr_page_size_check(o->page_size) : 0;
	if (!ret)
		ret = hr_opts_node(o->numa_node, o->flags & HUGERING_INIT_NUMA_NODE,
				   &norm->numa_node);
	if (ret && ret != -EINVAL) {
		hr_set_error("ring options: cannot read the kernel's hugepage sizes or NUMA "
			     "nodes: %s", strerror(-ret));
		return ret;
	}
	if (ret)
		goto bad;
	return 0;
bad:
	hr_set_error("bad hugering_init_opts (page size, NUMA node, flags, iopoll_fds or reserved fields)");
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* Kernel-mapped rings                                                 */
/* ------------------------------------------------------------------ */

static void fill_kernel_info(const struct io_uring *ring, const struct io_uring_params *p,
			     struct hugering_ring_info *info)
{
	size_t sqe = (p->flags & IORING_SETUP_SQE128) ? 128 : 64;

	info->mode = HUGERING_MODE_KERNEL;
	info->page_size = HR_BASE_PAGE;
	info->mem_bytes = ring->sq.ring_sz + sqe * p->sq_entries;
	info->sq_entries = p->sq_entries;
	info->cq_entries = p->cq_entries;
	info->setup_flags = p->flags;
	info->mem = ring->sq.sqes;
	info->numa_node = -1;
}

static bool memlock_explains(struct rlimit *rl);

/* Why a kernel-mapped setup failed: the parameters, the memlock limit, or as is. */
static void kernel_ring_error(int ret, int err, const char *reason)
{
	struct rlimit rl;

	if (err && ret == -err)
		/* The same failure without user memory: not the memory's. */
		hr_set_error("io_uring_setup failed: %s (the same with and without user "
			     "memory: the kernel refuses these parameters)", strerror(-ret));
	else if (ret == -ENOMEM && memlock_explains(&rl))
		hr_set_error("io_uring_setup failed: %s: RLIMIT_MEMLOCK (%llu bytes) is charged "
			     "for ring memory (Linux 6.14+: per user, shared by all this user's "
			     "rings): raise ulimit -l or grant CAP_IPC_LOCK%s%s", strerror(-ret),
			     (unsigned long long)rl.rlim_cur,
			     *reason ? "; user memory was not used: " : "", reason);
	else
		hr_set_error("io_uring_setup failed: %s%s%s", strerror(-ret),
			     *reason ? "; user memory was not used: " : "", reason);
}

/*
 * A kernel-mapped ring from the caller's original parameters.  @err and
 * @reason say why user memory was not used (0/"" when by policy).
 */
static int kernel_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		       const struct io_uring_params *orig, int err, const char *reason)
{
	struct io_uring_params q = *orig;
	struct ring_rec *rec;
	int ret;

	if (orig->flags & IORING_SETUP_REGISTERED_FD_ONLY) {
		/* The kernel's -EINVAL, with the kernel's reason. */
		hr_set_error("IORING_SETUP_REGISTERED_FD_ONLY needs the ring in user memory "
			     "(the kernel requires IORING_SETUP_NO_MMAP with it): no kernel-mapped "
			     "ring can have it%s%s", *reason ? "; user memory was not used: " : "",
			     reason);
		return -EINVAL;
	}
	rec = rec_new();
	if (!rec)
		return -ENOMEM;
	q.flags &= ~IORING_SETUP_NO_MMAP;
	ret = io_uring_queue_init_params(entries, ring, &q);
	if (ret) {
		kernel_ring_error(ret, err, reason);
		rec_free(rec);
		return ret;
	}
	rec->key = ring->sq.sqes;
	fill_kernel_info(ring, &q, &rec->info);
	if (*reason)
		hr_log(HUGERING_LOG_WARN, "ring of %u entries fell back to kernel-mapped memory: %s",
		       entries, reason);
	rec->info.fallback_errno = err;
	rec->info.fallback_reason = hr_reason_dup(reason);
	registry_add(rec);
	*p = q;
	return 0;
}

/* ------------------------------------------------------------------ */
/* User-memory rings                                                   */
/* ------------------------------------------------------------------ */

/* Would RLIMIT_MEMLOCK explain an -ENOMEM from io_uring_setup (6.14+)? */
static bool memlock_explains(struct rlimit *rl)
{
	if (hr_cap_effective("", HR_CAP_IPC_LOCK) || getrlimit(RLIMIT_MEMLOCK, rl))
		return false;
	return rl->rlim_cur != RLIM_INFINITY;
}

static const char *class_reason(int nommap, int err)
{
	switch (nommap) {
	case HUGERING_NOMMAP_UNSUPPORTED:
		return "kernel has no IORING_SETUP_NO_MMAP (Linux < 6.5)";
	case HUGERING_NOMMAP_SINGLE_PAGE:
		return "Linux 6.5 NO_MMAP bug: ring memory regions larger than one page "
		       "fail with EFAULT (liburing #1032)";
	case HUGERING_NOMMAP_CONTIG:
		return err == -EPERM
			? "kernel requires physically contiguous ring memory (Linux 6.6-6.9 "
			  "behaviour), unprovable across hugepages without CAP_SYS_ADMIN"
			: "kernel requires physically contiguous ring memory (Linux 6.6-6.9 behaviour)";
	default:
		return "kernel refused user ring memory";
	}
}

/*
 * Would this kernel refuse user memory for this layout?  Returns the error
 * it would give (and that the caller's policy then acts on), or 0.
 */
static int kernel_would_refuse(int nommap, const struct hugering_layout *lay, size_t ps)
{
	switch (nommap) {
	case HUGERING_NOMMAP_UNSUPPORTED:
		return -EINVAL;
	case HUGERING_NOMMAP_SINGLE_PAGE:
		return lay->sqes_bytes > HR_BASE_PAGE || lay->rings_bytes > HR_BASE_PAGE
			? -EFAULT : 0;
	case HUGERING_NOMMAP_CONTIG:
		/* Base pages are contiguous only page by page. */
		return ps == HR_BASE_PAGE &&
		       (lay->sqes_bytes > HR_BASE_PAGE || lay->rings_bytes > HR_BASE_PAGE)
			? -EINVAL : 0;
	default:
		return 0;
	}
}

/*
 * Where the ring's memory comes from: the arena (given or default), or a
 * region of its own when the caller asks for a page size or node the arena
 * does not have (base pages always get their own region).
 */
static int alloc_ring_mem(const struct hugering_layout *lay, int nommap,
			  const struct hugering_init_opts *o, struct hr_slot *s)
{
	struct hugering_arena *a = o && o->arena ? o->arena : hr_default_arena();
	size_t ps = o ? o->page_size : 0;
	int node = o ? o->numa_node : -1;
	bool contig = nommap == HUGERING_NOMMAP_CONTIG;
	struct hugering_region_opts ro = { .size = lay->total_bytes, .numa_node = node };

	if (a && (!ps || ps == hr_arena_page_size(a)) &&
	    (node < 0 || node == hr_arena_node(a)))
		return hr_arena_alloc(a, lay->total_bytes, contig, s);
	/* page_size 0 is the arena's, also for a region of its own on a node. */
	if (!ps)
		ps = a ? hr_arena_page_size(a) : hr_default_page_size_at("");
	if (!ps)
		return -ENOMEM;
	if (contig && ps != HR_BASE_PAGE)
		ro.flags = HUGERING_REGION_CONTIG;
	ro.page_size = ps;
	return hr_own_region(&ro, hr_arena_wait_ms(a), NULL, s);
}

/*
 * A pool found unable to give a page, and no ring of ours dying to refill
 * it: the next rings fall back at once for a short while instead of
 * trying and explaining again (both cost more than the kernel-mapped ring
 * itself: a ring per call on a machine without hugepages must cost what a
 * liburing ring costs).  Asked again after POOL_RECHECK_MS, or at once after
 * this process let go of hugepages.
 */
#define POOL_RECHECK_MS 100

static struct {
	pthread_mutex_t lock;
	long since;			/* 0: nothing known */
	const struct hugering_arena *arena;
	size_t ps;
	int node;
	size_t bytes;			/* the smallest ring it failed for */
	char *reason;			/* heap; replaced by the next note */
} empty_pool = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void empty_pool_key(const struct hugering_init_opts *o,
			   const struct hugering_arena **a, size_t *ps, int *node)
{
	*a = o && o->arena ? o->arena : hr_default_arena();
	*ps = o ? o->page_size : 0;
	*node = o ? o->numa_node : -1;
}

/* The reason noted, as a heap copy for the caller to free; NULL if none is known. */
static char *empty_pool_known(const struct hugering_init_opts *o, size_t bytes)
{
	char *reason = NULL;
	const struct hugering_arena *a;
	bool known;
	size_t ps;
	int node;

	empty_pool_key(o, &a, &ps, &node);
	pthread_mutex_lock(&empty_pool.lock);
	known = empty_pool.since && empty_pool.arena == a && empty_pool.ps == ps &&
		empty_pool.node == node && bytes >= empty_pool.bytes &&
		hr_now_ms() - empty_pool.since < POOL_RECHECK_MS &&
		!hr_arena_released_since(empty_pool.since);
	if (known && empty_pool.reason)
		reason = strdup(empty_pool.reason);
	pthread_mutex_unlock(&empty_pool.lock);
	return reason;
}

static void empty_pool_note(const struct hugering_init_opts *o, size_t bytes,
			    const char *reason)
{
	pthread_mutex_lock(&empty_pool.lock);
	empty_pool.bytes = bytes;
	empty_pool_key(o, &empty_pool.arena, &empty_pool.ps, &empty_pool.node);
	empty_pool.since = hr_now_ms();
	free(empty_pool.reason);
	empty_pool.reason = strdup(reason);
	pthread_mutex_unlock(&empty_pool.lock);
}

/* Why the pool gave no ring memory: a heap string (NULL when memory is out). */
static char *pool_reason(const struct hugering_layout *lay, const struct hugering_init_opts *o)
{
	struct hugering_arena *a = o && o->arena ? o->arena : hr_default_arena();
	size_t ps = o && o->page_size ? o->page_size :
		    a ? hr_arena_page_size(a) : hr_default_page_size_at("");

	if (ps > HR_BASE_PAGE) {
		int node = o && o->numa_node >= 0 ? o->numa_node : a ? hr_arena_node(a) : -1;
		int waited = hr_arena_last_wait_ms();
		char *buf = NULL, *w;

		hr_explain_no_hugepages(ps, node, lay->total_bytes, &buf);
		if (waited <= 0 || !buf)
			return buf;
		w = hr_strf("%s; waited %d ms", buf, waited);
		free(buf);
		return w;
	}
	return hr_strf("no memory for %zu bytes of ring memory", lay->total_bytes);
}

/*
 * Resize-to-throw-away costs a fixed ~30 us per ring.  Quarantine costs the
 * ring's share of a fresh page, which the kernel zeroes: about 175 us per
 * MiB of ring, whatever the page size (350 us per 2 MiB page; a 1 GiB page
 * stalls ~0.2 s once per page).  They break even near 128 KiB (measured on
 * 2 MiB pages: bench/recycle, README): resize from there up.  An arena's
 * dedicated region (a ring larger than a page) is always worth it: it is
 * kept as a spare instead of being faulted in again.
 */
#define RESIZE_MIN_BYTES (128u << 10)

static bool resize_recycles(const struct io_uring_params *q, const struct hr_slot *s)
{
	if (!s->arena || !hr_caps()->resize || !(q->flags & IORING_SETUP_DEFER_TASKRUN) ||
	    !hr_arena_may_resize(s->arena))
		return false;
	return !s->page || s->len >= RESIZE_MIN_BYTES;
}

static void fill_user_info(const struct io_uring_params *q, const struct hugering_layout *lay,
			   const struct hr_slot *s, struct hugering_ring_info *info)
{
	info->mode = s->page_size > HR_BASE_PAGE ? HUGERING_MODE_NOMMAP_HUGE
						 : HUGERING_MODE_NOMMAP_BASE;
	info->page_size = s->page_size;
	info->mem_bytes = lay->total_bytes;
	info->sq_entries = q->sq_entries;
	info->cq_entries = q->cq_entries;
	info->setup_flags = q->flags;
	info->mem = s->addr;
	info->rings_offset = lay->rings_offset;
	info->page_addr = s->page_addr;
	info->page_offset = (size_t)(s->addr - s->page_addr);
	info->numa_node = -1;
	if (s->page) {
		/* A slot inside one hugetlb page: one frame, by construction. */
		info->contiguous = HUGERING_CONTIG_YES;
		info->proof = HUGERING_PROOF_CONSTRUCTION;
		info->numa_node = hr_arena_node(s->arena);
		info->recycle = resize_recycles(q, s) ? HUGERING_RECYCLE_RESIZE
						      : HUGERING_RECYCLE_QUARANTINE;
	} else {
		struct hugering_region_info ri;

		hr_region_info(s->region, &ri);
		info->contiguous = ri.contiguous;
		info->proof = ri.proof;
		info->numa_node = ri.numa_node;
		info->recycle = resize_recycles(q, s) ? HUGERING_RECYCLE_RESIZE
						      : HUGERING_RECYCLE_DEDICATED;
	}
}

/* The rings' header, and the SQ index array when there is one. */
static size_t ring_header_bytes(const struct hugering_layout *lay)
{
	return lay->sq_array_off ? lay->rings_raw : lay->header;
}

/*
 * Set the ring up in @r.  liburing places SQEs at the buffer start and the
 * rings at rings_offset; a liburing that placed them elsewhere would have
 * the kernel pin memory the layout did not account for, so that is an error.
 */
static int setup_in(unsigned entries, struct io_uring *ring, const struct io_uring_params *in,
		    struct io_uring_params *q, const struct hugering_layout *lay,
		    const struct hr_slot *s)
{
	char *buf = s->addr;
	int ret;

	/*
	 * The kernel sets the masks and sizes of user ring memory but not the
	 * heads, tails and flags: a recycled slot gets a zeroed header.  Its
	 * SQE and CQE slots keep an earlier ring's bytes, as any ring's slots
	 * do after the first lap: SQEs are written whole before submission,
	 * CQEs before the tail moves past them.  The arena may ask for all.
	 */
	if (s->reused && hr_arena_zero_recycled(s->arena))
		memset(buf, 0, lay->total_bytes);
	else if (s->reused)
		memset(buf + lay->rings_offset, 0, ring_header_bytes(lay));
	*q = *in;
	ret = io_uring_queue_init_mem(entries, ring, q, buf, lay->total_bytes);
	if (ret < 0)
		return ret;
	if (q->sq_off.user_addr != (uintptr_t)buf ||
	    q->cq_off.user_addr != (uintptr_t)(buf + lay->rings_offset)) {
		hr_queue_exit_app_mem(ring);	/* compat.h: liburing < 2.8 */
		hr_set_error("liburing %d.%d placed ring memory where hugering's layout "
			     "did not expect it", io_uring_major_version(),
			     io_uring_minor_version());
		return -EPROTO;
	}
	return 0;
}

/*
 * A kernel-mapped ring's mappings hold its file, so it lives until
 * io_uring_queue_exit() even if the program closes its fd number.  A ring
 * in user memory has no mapping of the file: hugering holds a duplicate fd
 * (close-on-exec, like the mappings that exec drops) so the ring lives
 * exactly as long, and acts on that fd, never on a number the program may
 * have closed and reused.
 */
static int hold_ring(const struct io_uring *ring, int *ref_fd)
{
	/*
	 * IORING_SETUP_REGISTERED_FD_ONLY: no fd the program could close; the
	 * registered index holds the ring until io_uring_queue_exit.
	 */
	if (ring->ring_fd < 0) {
		*ref_fd = -1;
		return 0;
	}
	*ref_fd = fcntl(ring->ring_fd, F_DUPFD_CLOEXEC, 0);
	return *ref_fd < 0 ? -errno : 0;
}

static int user_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		     const struct io_uring_params *orig, int policy,
		     const struct hugering_init_opts *o);

/*
 * IORING_SETUP_REGISTERED_FD_ONLY exists only with NO_MMAP (the kernel and
 * liburing both refuse it otherwise): there is no kernel-mapped ring to
 * fall back to.  What keeps the program's request -- a ring without an
 * fd -- is user memory of base pages (NOMMAP_BASE): any size where the
 * kernel maps any pages (6.10+, 6.6.84+), one page elsewhere.  When even
 * that cannot be had, the error names REGISTERED_FD_ONLY as the reason
 * there is no fallback.  @err and @reason say why hugepages were not used.
 */
static int fd_only_fallback(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
			    const struct io_uring_params *orig, const struct hugering_init_opts *o,
			    int err, const char *reason)
{
	struct hugering_init_opts b;
	char *why;
	int ret;

	if (o && o->page_size == HR_BASE_PAGE)
		return kernel_ring(entries, ring, p, orig, err, reason);	/* says why not */
	if (o) {
		b = *o;
	} else {
		memset(&b, 0, sizeof(b));
		b.numa_node = -1;
	}
	b.page_size = HR_BASE_PAGE;
	ret = user_ring(entries, ring, p, orig, HUGERING_POLICY_NOMMAP, &b);
	if (ret) {
		/* hr_set_error takes a fresh copy, so quoting the current reason is safe. */
		hr_set_error("IORING_SETUP_REGISTERED_FD_ONLY needs the ring in user memory (no "
			     "kernel-mapped fallback exists): hugepages: %s; base pages: %s",
			     reason, hugering_last_error());
		return ret;
	}
	why = hr_strf("REGISTERED_FD_ONLY: base pages, not kernel-mapped: %s", reason);
	registry_note_fallback(ring->sq.sqes, err, why ? why : "");
	free(why);
	return 0;
}

/* Hugepages are out: a kernel-mapped ring, or for REGISTERED_FD_ONLY base pages. */
static int fall_back(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		     const struct io_uring_params *orig, const struct hugering_init_opts *o,
		     int err, const char *reason)
{
	if (orig->flags & IORING_SETUP_REGISTERED_FD_ONLY)
		return fd_only_fallback(entries, ring, p, orig, o, err, reason);
	return kernel_ring(entries, ring, p, orig, err, reason);
}

/* No user memory: fall back, or under the nommap policy, fail with @err. */
static int no_user_memory(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
			  const struct io_uring_params *orig, int policy, int err,
			  const char *reason, const struct hugering_init_opts *o)
{
	if (policy == HUGERING_POLICY_NOMMAP) {
		hr_set_error("%s", reason);
		return err;
	}
	return fall_back(entries, ring, p, orig, o, -err, reason);
}

/* The flags hugering adds, and the layout for them. */
static int user_layout(unsigned entries, const struct io_uring_params *orig,
		       struct io_uring_params *q, struct hugering_layout *lay)
{
	int ret;

	*q = *orig;
	q->flags |= IORING_SETUP_NO_MMAP;
	/* Like liburing >= 2.6; 2.5 would write its SQ array over the header. */
	if (hr_caps()->no_sqarray && hr_liburing_at_least(2, 6))
		q->flags |= IORING_SETUP_NO_SQARRAY;
	ret = hr_ring_layout(entries, q, lay);
	if (ret)
		hr_set_error("invalid ring shape: %u entries, flags 0x%x, cq_entries %u",
			     entries, q->flags, q->cq_entries);
	return ret;
}

/*
 * Set up in @s.  Unprivileged on 6.14+, a ring just destroyed still holds
 * its RLIMIT_MEMLOCK charge for a few ms: wait for it like for the pool.
 * Retrying in the same memory is safe: the charge is taken while the
 * regions are created (io_allocate_scq_urings), which frees the rings before
 * it returns the error, so no half-made ring is left to write them.
 */
static int setup_waiting(unsigned entries, struct io_uring *ring, const struct io_uring_params *in,
			 struct io_uring_params *q, const struct hugering_layout *lay,
			 struct hr_slot *s, int wait_ms)
{
	struct timespec t0, t;
	struct rlimit rl;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		ret = setup_in(entries, ring, in, q, lay, s);
		if (ret != -ENOMEM || !memlock_explains(&rl))
			return ret;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= wait_ms)
			break;
		s->reused = true;	/* the kernel may have touched it: zero again */
		usleep(1000);
	}
	/* A kernel-mapped ring is charged the same: no fallback. */
	hr_set_error("RLIMIT_MEMLOCK: the ring needs %zu bytes locked (charged per user, "
		     "shared by all this user's rings; Linux 6.14+), limit is %llu: raise "
		     "ulimit -l or grant CAP_IPC_LOCK", lay->sqes_bytes + lay->rings_bytes,
		     (unsigned long long)rl.rlim_cur);
	return -ENOMEM;
}

/* No user memory, because of @err; @reason is a heap string, freed here. */
static int no_user_memory_free(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
			       const struct io_uring_params *orig, int policy, int err,
			       char *reason, const struct hugering_init_opts *o)
{
	int ret = no_user_memory(entries, ring, p, orig, policy, err,
				 reason ? reason : "out of memory for the reason", o);

	free(reason);
	return ret;
}

static int user_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		     const struct io_uring_params *orig, int policy,
		     const struct hugering_init_opts *o)
{
	const struct hugering_kernel_caps *caps = hr_caps();
	struct hugering_layout lay;
	struct io_uring_params q, in;
	struct ring_rec *rec;
	char *reason;
	int ret, refuse;

	ret = user_layout(entries, orig, &in, &lay);
	if (ret)
		return ret;
	if (!lay.liburing_ok) {
		reason = hr_strf("liburing %d.%d cannot place this ring in user memory (SQE128 "
				 "needs 2.9, NO_SQARRAY 2.6; 2.7 misplaces an SQ array)",
				 io_uring_major_version(), io_uring_minor_version());
		return no_user_memory_free(entries, ring, p, orig, policy, -ENOTSUP, reason, o);
	}
	refuse = kernel_would_refuse(caps->nommap, &lay, o ? o->page_size : 0);
	if (refuse && policy == HUGERING_POLICY_AUTO)
		return fall_back(entries, ring, p, orig, o, -refuse,
				 class_reason(caps->nommap, refuse));

	if (policy == HUGERING_POLICY_AUTO && (reason = empty_pool_known(o, lay.total_bytes))) {
		ret = fall_back(entries, ring, p, orig, o, ENOMEM, reason);
		free(reason);
		return ret;
	}
	rec = rec_new();
	if (!rec)
		return -ENOMEM;
	ret = alloc_ring_mem(&lay, caps->nommap, o, &rec->slot);
	if (ret == -ENOMEM || ret == -EPERM || ret == -ENOSPC) {
		rec_free(rec);
		if (ret == -ENOMEM) {
			reason = pool_reason(&lay, o);
			if (!hr_arena_last_wait_ms() && reason)
				empty_pool_note(o, lay.total_bytes, reason);
		} else if (ret == -ENOSPC)
			reason = hr_strf("arena limit (max_bytes) reached");
		else
			reason = hr_strf("%s", class_reason(caps->nommap, ret));
		return no_user_memory_free(entries, ring, p, orig, policy, ret, reason, o);
	}
	if (ret) {
		rec_free(rec);
		hr_set_error(ret == -ECHILD ? "this arena belongs to the parent process"
			     : "allocating %zu bytes of ring memory failed", lay.total_bytes);
		return ret;
	}

	ret = setup_waiting(entries, ring, &in, &q, &lay, &rec->slot,
			    hr_arena_wait_ms(rec->slot.arena));
	if (ret) {
		/*
		 * The kernel may have pinned the memory before failing (or the
		 * ring existed, -EPROTO) and tears it down asynchronously, writing
		 * into it: quarantine, never reuse.
		 */
		hr_arena_free(&rec->slot, false);
		rec_free(rec);
		if (ret == -EPROTO || ret == -ENOMEM)
			return ret;
		reason = hr_strf("%s (io_uring_setup: %s)", class_reason(caps->nommap, ret),
				 strerror(-ret));
		/* If the kernel-mapped ring fails too, it was not the memory. */
		return no_user_memory_free(entries, ring, p, orig, policy, ret, reason, o);
	}
	ret = hold_ring(ring, &rec->ref_fd);
	if (ret) {
		hr_queue_exit_app_mem(ring);	/* compat.h: liburing < 2.8 */
		hr_arena_free(&rec->slot, false);
		rec_free(rec);
		reason = hr_strf("no file descriptor left for hugering's own reference to the "
				 "ring (%s)", strerror(-ret));
		return no_user_memory_free(entries, ring, p, orig, policy, ret, reason, o);
	}
	rec->key = ring->sq.sqes;
	rec->user_mem = true;
	fill_user_info(&q, &lay, &rec->slot, &rec->info);
	registry_add(rec);
	*p = q;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */
/* ------------------------------------------------------------------ */

/*
 * IOPOLL asked for, with the files it is for: keep it only if every file
 * can be polled; otherwise drop it (said in ring_info) or, strict, fail.
 */
static int iopoll_policy(struct io_uring_params *q, const struct hugering_init_opts *o,
			 char **why)
{
	if (!(q->flags & IORING_SETUP_IOPOLL) || !o || !o->n_iopoll_fds)
		return 0;
	for (unsigned i = 0; i < o->n_iopoll_fds; i++) {
		struct hugering_iopoll_verdict v;
		int ret = hr_iopoll_probe(o->iopoll_fds[i], &v);

		if (ret) {
			hr_set_error("iopoll_fds[%u] = %d: %s", i, o->iopoll_fds[i], strerror(-ret));
			return ret;
		}
		if (v.supported == 1)
			continue;
		if (o->flags & HUGERING_INIT_IOPOLL_STRICT) {
			hr_set_error("IOPOLL refused (strict): fd %d: %s", o->iopoll_fds[i],
				     v.reason);
			return -EOPNOTSUPP;
		}
		*why = hr_strf("fd %d: %s", o->iopoll_fds[i], v.reason);
		if (!*why) {
			hr_set_error("out of memory for the IOPOLL reason");
			return -ENOMEM;
		}
		q->flags &= ~IORING_SETUP_IOPOLL;
		return 0;
	}
	return 0;
}

/*
 * Parameters every kernel with NO_MMAP (6.5+) rejects whatever the memory:
 * refused here with the kernel's errno and a reason, before any memory is
 * taken.  The kernel checks some of them only after it pinned the ring's
 * memory, so a failed setup cost an arena slot (quarantined: its teardown
 * may still write there) and a second, kernel-mapped setup, and was then
 * told as a memory story.  Only rules that hold on every such kernel; the
 * rest is the kernel's to judge (and kernel_ring_error's to tell).
 */
static void explain_sq_cpu(const struct io_uring_params *p);

static int check_setup_params(const struct io_uring_params *p)
{
	unsigned f = p->flags;
	long cpus;

	for (size_t i = 0; i < sizeof(p->resv) / sizeof(p->resv[0]); i++) {
		if (p->resv[i]) {
			hr_set_error("io_uring_params.resv[%zu] is %u: must be zero", i, p->resv[i]);
			return -EINVAL;
		}
	}
	if ((f & IORING_SETUP_DEFER_TASKRUN) && !(f & IORING_SETUP_SINGLE_ISSUER)) {
		hr_set_error("IORING_SETUP_DEFER_TASKRUN requires IORING_SETUP_SINGLE_ISSUER");
		return -EINVAL;
	}
	if ((f & IORING_SETUP_DEFER_TASKRUN) && (f & IORING_SETUP_SQPOLL)) {
		hr_set_error("IORING_SETUP_DEFER_TASKRUN cannot be combined with "
			     "IORING_SETUP_SQPOLL");
		return -EINVAL;
	}
	if ((f & IORING_SETUP_ATTACH_WQ) && fcntl((int)p->wq_fd, F_GETFD) < 0) {
		hr_set_error("IORING_SETUP_ATTACH_WQ: wq_fd %d is not an open file descriptor",
			     (int)p->wq_fd);
		return -ENXIO;
	}
	if (!(f & IORING_SETUP_SQPOLL) || !(f & IORING_SETUP_SQ_AFF))
		return 0;
	/* Only then: sysconf reads /sys (3 syscalls, ~5 us a ring otherwise). */
	cpus = sysconf(_SC_NPROCESSORS_CONF);
	if (cpus > 0 && p->sq_thread_cpu >= (unsigned long)cpus) {
		hr_set_error("sq_thread_cpu %u: this machine has CPUs 0-%ld", p->sq_thread_cpu,
			     cpus - 1);
		explain_sq_cpu(p);	/* and which of them the cpuset allows */
		return -EINVAL;
	}
	return 0;
}

/*
 * SQ_AFF with a CPU outside the process's cpuset is a bare -EINVAL from the
 * kernel: when setup failed so, say which CPU and which set.  Only after the
 * kernel refused: which set it checks has changed between versions, and a
 * set too long to read is no reason to refuse anything.
 */
static void explain_sq_cpu(const struct io_uring_params *p)
{
	char set[4096];
	cpu_set_t cpus;

	if (!(p->flags & IORING_SETUP_SQPOLL) || !(p->flags & IORING_SETUP_SQ_AFF) ||
	    p->sq_thread_cpu >= CPU_SETSIZE || hr_cpuset_cpus(&cpus, set, sizeof(set)) ||
	    CPU_ISSET(p->sq_thread_cpu, &cpus))
		return;
	hr_set_error("sq_thread_cpu %u is outside the CPUs this process's cpuset allows {%s}",
		     p->sq_thread_cpu, set);
}

static int queue_init_opts(unsigned entries, struct io_uring *ring,
			   struct io_uring_params *p, const struct hugering_init_opts *o)
{
	const struct hugering_kernel_caps *caps;
	struct hugering_init_opts norm;
	struct io_uring_params orig;
	char *degraded = NULL;
	int policy, ret;

	if (!ring || !p) {
		hr_set_error("NULL ring or params");
		return -EINVAL;
	}
	ret = check_init_opts(o, &norm);
	/* From here on numa_node is the library's: -1 = the arena's. */
	if (o)
		o = &norm;
	if (!ret)
		ret = resolve_policy(o, &policy);
	if (ret)
		return ret;
	caps = hr_caps();
	if (caps->io_uring < 0) {
		if (caps->io_uring == -EPERM)
			hr_set_error("io_uring is disabled for this process "
				     "(sysctl kernel.io_uring_disabled)");
		else if (caps->io_uring == -ENOSYS)
			hr_set_error("this kernel has no io_uring");
		else
			hr_set_error("cannot probe the kernel's io_uring: %s",
				     strerror(-caps->io_uring));
		return caps->io_uring;
	}
	orig = *p;
	/* Where the ring's memory lives is hugering's choice. */
	orig.flags &= ~IORING_SETUP_NO_MMAP;
	ret = check_setup_params(&orig);
	if (ret)
		return ret;
	/*
	 * liburing < 2.6 predates NO_SQARRAY: it fills its SQ index array at
	 * sq_off.array, 0 then, i.e. over the ring header, in every mode.  The
	 * ring keeps its SQ array instead (p->flags comes back without it).
	 */
	if (!hr_liburing_at_least(2, 6))
		orig.flags &= ~IORING_SETUP_NO_SQARRAY;
	ret = iopoll_policy(&orig, o, &degraded);
	if (ret)
		return ret;
	if (policy == HUGERING_POLICY_KERNEL)
		ret = kernel_ring(entries, ring, p, &orig, 0, "");
	else
		ret = user_ring(entries, ring, p, &orig, policy, o);
	if (!ret && degraded)
		registry_note_iopoll(ring->sq.sqes, degraded);
	free(degraded);
	if (ret == -EINVAL)
		explain_sq_cpu(p);
	return ret;
}

int hugering_queue_init_opts(unsigned entries, struct io_uring *ring,
			     struct io_uring_params *p, const struct hugering_init_opts *o)
{
	return HR_PUBLIC(queue_init_opts(entries, ring, p, o));
}

int hugering_queue_init_params(unsigned entries, struct io_uring *ring,
			       struct io_uring_params *p)
{
	return HR_PUBLIC(queue_init_opts(entries, ring, p, NULL));
}

int hugering_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	return HR_PUBLIC(queue_init_opts(entries, ring, &p, NULL));
}

/*
 * Move a DEFER_TASKRUN ring into a tiny throw-away region (Linux 6.13+):
 * the kernel unpins the old memory before returning, so the slot can take
 * a new ring at once.  The throw-away pages stay pinned until the ring's
 * teardown; unmapping our view of them is harmless.  @fd is hugering's own
 * reference (hold_ring), or -1 for a ring that only has a registered index.
 */
static bool resize_away(const struct io_uring *ring, int fd)
{
	size_t len = 2 * HR_BASE_PAGE;
	unsigned op = IORING_REGISTER_RESIZE_RINGS;
	struct io_uring_params p;
	char *t;
	void *v;
	int ret;

	if (hr_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0, &v))
		return false;
	t = v;
	memset(&p, 0, sizeof(p));
	p.sq_entries = 1;
	p.cq_entries = 2;
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_off.user_addr = (uintptr_t)t;
	p.sq_off.user_addr = (uintptr_t)(t + HR_BASE_PAGE);
	if (fd < 0) {
		fd = ring->enter_ring_fd;
		op |= IORING_REGISTER_USE_REGISTERED_RING;
	}
	/* -EOVERFLOW (completions pending) or -EEXIST (not the submitter): quarantine */
	ret = hr_sys_io_uring_register(fd, op, &p, 1);
	hr_sys_munmap(t, len);
	return ret == 0;
}

static void queue_exit(struct io_uring *ring)
{
	struct ring_rec *rec;
	const struct hr_ring_hooks *hooks;
	bool clean = false;

	if (!ring)
		return;
	/* Buffer rings first: the ring may still write them until it is gone. */
	hooks = __atomic_load_n(&hr_ring_hooks, __ATOMIC_ACQUIRE);
	if (hooks)
		hooks->exit(ring);
	rec = registry_take(ring->sq.sqes);
	if (rec && rec->user_mem && rec->info.recycle == HUGERING_RECYCLE_RESIZE)
		clean = resize_away(ring, rec->ref_fd);
	/*
	 * liburing closes the fd (and unregisters a registered ring fd); it
	 * leaves application memory alone.  The kernel may write the ring
	 * memory once more during its asynchronous teardown: the arena never
	 * gives that memory to another ring (unless resized away above).
	 * liburing < 2.8 would unmap it: see hr_queue_exit_app_mem (compat.h).
	 */
	if (rec && rec->user_mem) {
		hr_queue_exit_app_mem(ring);
		if (rec->ref_fd >= 0)
			close(rec->ref_fd);
		hr_arena_free(&rec->slot, clean);
	} else {
		io_uring_queue_exit(ring);
	}
	rec_free(rec);
}

/* Cannot fail: leaves the last error alone (a cleanup after a failure). */
void hugering_queue_exit(struct io_uring *ring)
{
	queue_exit(ring);
}

int hugering_ring_info(const struct io_uring *ring, struct hugering_ring_info *out)
{
	hr_clear_error();
	if (!ring || !out)
		return hr_result(-EINVAL, __func__);
	return hr_result(registry_info(ring->sq.sqes, out), __func__);
}

const char *hugering_mode_name(int mode)
{
	switch (mode) {
	case HUGERING_MODE_NOMMAP_HUGE: return "nommap_huge";
	case HUGERING_MODE_NOMMAP_BASE: return "nommap_base";
	case HUGERING_MODE_KERNEL: return "kernel";
	default: return "unknown";
	}
}

static int sqpoll_group(struct io_uring *rings, unsigned n, unsigned entries,
			const struct io_uring_params *p, const struct hugering_init_opts *o)
{
	int ret = 0;

	if (!rings || !n || !p) {
		hr_set_error("sqpoll group: NULL rings/params or n = 0");
		return -EINVAL;
	}
	/*
	 * ATTACH_WQ names the first ring by a file descriptor (the kernel
	 * fdget()s wq_fd; a registered ring index is not looked up there), and
	 * a REGISTERED_FD_ONLY ring has none: refuse before any ring exists.
	 */
	if (n > 1 && (p->flags & IORING_SETUP_REGISTERED_FD_ONLY)) {
		hr_set_error("sqpoll group: IORING_SETUP_REGISTERED_FD_ONLY leaves the first ring "
			     "no file descriptor for IORING_SETUP_ATTACH_WQ's wq_fd (the kernel takes "
			     "an fd, not a registered index): drop the flag, or register each ring "
			     "with io_uring_register_ring_fd() after the group is made");
		return -EINVAL;
	}
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_params q = *p;

		q.flags |= IORING_SETUP_SQPOLL;
		if (i) {
			/* ATTACH_WQ shares the first ring's SQ thread. */
			q.flags |= IORING_SETUP_ATTACH_WQ;
			q.wq_fd = (unsigned)rings[0].ring_fd;
		}
		ret = queue_init_opts(entries, &rings[i], &q, o);
		if (ret) {
			while (i--)
				queue_exit(&rings[i]);
			return ret;
		}
	}
	return 0;
}

int hugering_sqpoll_group(struct io_uring *rings, unsigned n, unsigned entries,
			  const struct io_uring_params *p, const struct hugering_init_opts *o)
{
	return HR_PUBLIC(sqpoll_group(rings, n, entries, p, o));
}

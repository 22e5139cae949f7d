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
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "internal.h"

#define CAP_IPC_LOCK_BIT 14
#define REGISTRY_BUCKETS 256

static __thread char last_error[256];

void hr_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *hugering_last_error(void)
{
	return last_error;
}

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

struct ring_rec {
	struct ring_rec *next;
	const void *key;
	struct hugering_region *region;	/* NULL: kernel-mapped */
	struct hugering_ring_info info;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ring_rec *registry[REGISTRY_BUCKETS];

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

static int check_init_opts(const struct hugering_init_opts *o)
{
	if (!o)
		return 0;
	for (size_t i = 0; i < sizeof(o->resv) / sizeof(o->resv[0]); i++)
		if (o->resv[i])
			goto bad;
	if (o->page_size && o->page_size != HR_BASE_PAGE &&
	    !hr_page_size_supported(o->page_size))
		goto bad;
	if (o->numa_node < -1 || (o->numa_node >= 0 && !hr_numa_node_online(o->numa_node)))
		goto bad;
	return 0;
bad:
	hr_set_error("bad hugering_init_opts (page size, NUMA node or reserved fields)");
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

/*
 * A kernel-mapped ring from the caller's original parameters.  @err and
 * @reason say why user memory was not used (0/"" when by policy).
 */
static int kernel_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		       const struct io_uring_params *orig, int err, const char *reason)
{
	struct io_uring_params q = *orig;
	struct ring_rec *rec = calloc(1, sizeof(*rec));
	int ret;

	if (!rec) {
		hr_set_error("out of memory for the ring record");
		return -ENOMEM;
	}
	q.flags &= ~IORING_SETUP_NO_MMAP;
	ret = io_uring_queue_init_params(entries, ring, &q);
	if (ret) {
		hr_set_error("io_uring_setup failed: %s%s%s", strerror(-ret),
			     *reason ? "; user memory was not used: " : "", reason);
		free(rec);
		return ret;
	}
	rec->key = ring->sq.sqes;
	fill_kernel_info(ring, &q, &rec->info);
	rec->info.fallback_errno = err;
	hr_copy_str(rec->info.fallback_reason, sizeof(rec->info.fallback_reason), reason);
	registry_add(rec);
	*p = q;
	return 0;
}

/* ------------------------------------------------------------------ */
/* User-memory rings                                                   */
/* ------------------------------------------------------------------ */

static bool has_cap(int cap)
{
	char buf[4096], *s;
	unsigned long long eff;

	if (hr_read_text("/proc/self/status", buf, sizeof(buf)) < 0)
		return false;
	s = strstr(buf, "CapEff:");
	if (!s || sscanf(s, "CapEff: %llx", &eff) != 1)
		return false;
	return eff & (1ULL << cap);
}

/* Would RLIMIT_MEMLOCK explain an -ENOMEM from io_uring_setup (6.14+)? */
static bool memlock_explains(struct rlimit *rl)
{
	if (has_cap(CAP_IPC_LOCK_BIT) || getrlimit(RLIMIT_MEMLOCK, rl))
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

static int alloc_ring_mem(const struct hugering_layout *lay, int nommap,
			  const struct hugering_init_opts *o, struct hugering_region **r)
{
	struct hugering_region_opts ro = {
		.size = lay->total_bytes,
		.numa_node = o ? o->numa_node : -1,
	};
	size_t ps = o ? o->page_size : 0;

	if (nommap == HUGERING_NOMMAP_CONTIG && ps != HR_BASE_PAGE) {
		/* Automatic size may prove contiguity with one larger page. */
		ro.flags = HUGERING_REGION_CONTIG;
		ro.page_size = ps;
	} else {
		ro.page_size = ps ? ps : hugering_default_page_size();
		if (!ro.page_size)
			ro.page_size = HR_BASE_PAGE;
	}
	return hugering_region_alloc(&ro, r);
}

static void pool_reason(char *buf, size_t len, const struct hugering_layout *lay,
			const struct hugering_init_opts *o)
{
	size_t ps = o && o->page_size ? o->page_size : hugering_default_page_size();
	struct hugering_pool pool;

	if (ps > HR_BASE_PAGE && !hugering_pool_get(ps, -1, &pool))
		snprintf(buf, len, "hugepage pool empty: %zu kB pool has %ld usable pages, "
			 "ring needs %zu bytes", ps >> 10, pool.usable, lay->total_bytes);
	else
		snprintf(buf, len, "no memory for %zu bytes of ring memory", lay->total_bytes);
}

static void fill_user_info(const struct io_uring_params *q, const struct hugering_layout *lay,
			   struct hugering_region *r, struct hugering_ring_info *info)
{
	struct hugering_region_info ri;

	hugering_region_info(r, &ri);
	info->mode = ri.page_size > HR_BASE_PAGE ? HUGERING_MODE_NOMMAP_HUGE
						 : HUGERING_MODE_NOMMAP_BASE;
	info->page_size = ri.page_size;
	info->mem_bytes = lay->total_bytes;
	info->sq_entries = q->sq_entries;
	info->cq_entries = q->cq_entries;
	info->setup_flags = q->flags;
	info->mem = ri.addr;
	info->rings_offset = lay->rings_offset;
	info->contiguous = ri.contiguous;
	info->proof = ri.proof;
	info->numa_node = ri.numa_node;
}

/*
 * Set the ring up in @r.  liburing places SQEs at the buffer start and the
 * rings at rings_offset; a liburing that placed them elsewhere would have
 * the kernel pin memory the layout did not account for, so that is an error.
 */
static int setup_in(unsigned entries, struct io_uring *ring, struct io_uring_params *q,
		    const struct hugering_layout *lay, struct hugering_region *r)
{
	char *buf = hugering_region_addr(r);
	int ret = io_uring_queue_init_mem(entries, ring, q, buf, lay->total_bytes);

	if (ret < 0)
		return ret;
	if (q->sq_off.user_addr != (uintptr_t)buf ||
	    q->cq_off.user_addr != (uintptr_t)(buf + lay->rings_offset)) {
		io_uring_queue_exit(ring);
		hr_set_error("liburing %d.%d placed ring memory where hugering's layout "
			     "did not expect it", io_uring_major_version(),
			     io_uring_minor_version());
		return -EPROTO;
	}
	return 0;
}

static int user_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		     const struct io_uring_params *orig, int policy,
		     const struct hugering_init_opts *o)
{
	const struct hugering_kernel_caps *caps = hr_caps();
	struct hugering_layout lay;
	struct io_uring_params q = *orig;
	struct hugering_region *r = NULL;
	struct ring_rec *rec;
	char reason[192];
	struct rlimit rl;
	int ret, refuse;
	size_t ps = o ? o->page_size : 0;

	q.flags |= IORING_SETUP_NO_MMAP;
	/* Like liburing >= 2.6; 2.5 would write its SQ array over the header. */
	if (caps->no_sqarray && hr_liburing_at_least(2, 6))
		q.flags |= IORING_SETUP_NO_SQARRAY;
	ret = hugering_ring_layout(entries, &q, &lay);
	if (ret) {
		hr_set_error("invalid ring shape: %u entries, flags 0x%x, cq_entries %u",
			     entries, q.flags, q.cq_entries);
		return ret;
	}
	if (!lay.liburing_ok) {
		snprintf(reason, sizeof(reason), "liburing %d.%d cannot place this ring in user "
			 "memory (SQE128 needs 2.9, an SQ array 2.8)",
			 io_uring_major_version(), io_uring_minor_version());
		if (policy == HUGERING_POLICY_NOMMAP) {
			hr_set_error("%s", reason);
			return -ENOTSUP;
		}
		return kernel_ring(entries, ring, p, orig, ENOTSUP, reason);
	}
	refuse = kernel_would_refuse(caps->nommap, &lay, ps);
	if (refuse && policy == HUGERING_POLICY_AUTO)
		return kernel_ring(entries, ring, p, orig, -refuse,
				   class_reason(caps->nommap, refuse));

	ret = alloc_ring_mem(&lay, caps->nommap, o, &r);
	if (ret == -ENOMEM || ret == -EPERM) {
		if (ret == -ENOMEM)
			pool_reason(reason, sizeof(reason), &lay, o);
		else
			hr_copy_str(reason, sizeof(reason), class_reason(caps->nommap, ret));
		if (policy == HUGERING_POLICY_NOMMAP) {
			hr_set_error("%s", reason);
			return ret;
		}
		return kernel_ring(entries, ring, p, orig, -ret, reason);
	}
	if (ret) {
		hr_set_error("allocating %zu bytes of ring memory: %s", lay.total_bytes,
			     strerror(-ret));
		return ret;
	}

	ret = setup_in(entries, ring, &q, &lay, r);
	if (ret == -EPROTO) {
		hugering_region_free(r);
		return ret;
	}
	if (ret) {
		hugering_region_free(r);
		if (ret == -ENOMEM && memlock_explains(&rl)) {
			/* A kernel-mapped ring is charged the same: no fallback. */
			hr_set_error("RLIMIT_MEMLOCK: the ring needs %zu bytes locked (charged per "
				     "user, shared by all this user's rings; Linux 6.14+), limit "
				     "is %llu: raise ulimit -l or grant CAP_IPC_LOCK",
				     lay.sqes_bytes + lay.rings_bytes,
				     (unsigned long long)rl.rlim_cur);
			return ret;
		}
		if (policy == HUGERING_POLICY_NOMMAP) {
			hr_set_error("io_uring_setup with user memory failed: %s (%s)",
				     strerror(-ret), class_reason(caps->nommap, ret));
			return ret;
		}
		/* If the kernel-mapped ring fails too, it was not the memory. */
		snprintf(reason, sizeof(reason), "%s (io_uring_setup: %s)",
			 class_reason(caps->nommap, ret), strerror(-ret));
		return kernel_ring(entries, ring, p, orig, -ret, reason);
	}

	rec = calloc(1, sizeof(*rec));
	if (!rec) {
		io_uring_queue_exit(ring);
		hugering_region_free(r);
		hr_set_error("out of memory for the ring record");
		return -ENOMEM;
	}
	rec->key = ring->sq.sqes;
	rec->region = r;
	fill_user_info(&q, &lay, r, &rec->info);
	registry_add(rec);
	*p = q;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                 */
/* ------------------------------------------------------------------ */

int hugering_queue_init_opts(unsigned entries, struct io_uring *ring,
			     struct io_uring_params *p, const struct hugering_init_opts *o)
{
	const struct hugering_kernel_caps *caps;
	struct io_uring_params orig;
	int policy, ret;

	if (!ring || !p) {
		hr_set_error("NULL ring or params");
		return -EINVAL;
	}
	ret = check_init_opts(o);
	if (!ret)
		ret = resolve_policy(o, &policy);
	if (ret)
		return ret;
	caps = hr_caps();
	if (caps->io_uring < 0) {
		hr_set_error(caps->io_uring == -EPERM
			     ? "io_uring is disabled for this process (sysctl kernel.io_uring_disabled)"
			     : "this kernel has no io_uring");
		return caps->io_uring;
	}
	orig = *p;
	/* Where the ring's memory lives is hugering's choice. */
	orig.flags &= ~IORING_SETUP_NO_MMAP;
	if (policy == HUGERING_POLICY_KERNEL)
		return kernel_ring(entries, ring, p, &orig, 0, "");
	return user_ring(entries, ring, p, &orig, policy, o);
}

int hugering_queue_init_params(unsigned entries, struct io_uring *ring,
			       struct io_uring_params *p)
{
	return hugering_queue_init_opts(entries, ring, p, NULL);
}

int hugering_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	return hugering_queue_init_params(entries, ring, &p);
}

void hugering_queue_exit(struct io_uring *ring)
{
	struct ring_rec *rec;

	if (!ring)
		return;
	rec = registry_take(ring->sq.sqes);
	/*
	 * liburing closes the fd (and unregisters a registered ring fd); it
	 * leaves application memory alone.  The kernel keeps the pages pinned
	 * until its asynchronous teardown; unmapping our view of them is safe,
	 * they are only reused once the kernel has let them go.
	 */
	io_uring_queue_exit(ring);
	if (rec) {
		hugering_region_free(rec->region);
		free(rec);
	}
}

int hugering_ring_info(const struct io_uring *ring, struct hugering_ring_info *out)
{
	if (!ring || !out)
		return -EINVAL;
	return registry_info(ring->sq.sqes, out);
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

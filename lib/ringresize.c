/* SPDX-License-Identifier: MIT */
/*
 * hugering_ring_resize(): new SQ and CQ sizes for a live ring (Linux 6.13+,
 * DEFER_TASKRUN rings, IORING_REGISTER_RESIZE_RINGS; kernel-facts.md §5,
 * §11.4).  liburing refuses rings in user memory, so for those hugering
 * takes new memory from the ring's arena (the same placement as a new
 * ring), asks the kernel itself and points struct io_uring at the new
 * memory as liburing does after its own resize of mapped rings.  The old
 * memory is unpinned by the kernel before the call returns, so its slot goes
 * back to the arena clean at once.  Kernel-mapped rings are liburing's:
 * handed to io_uring_resize_rings() (liburing 2.9+).
 *
 * Above the buffer layers (LAYERS): their records are keyed by the SQE
 * address, which a resize changes.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* The only flags a resize may pass (the kernel's RESIZE_FLAGS). */
#define RESIZE_FLAGS (IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP)
/* Kept from the ring by the kernel (its COPY_FLAGS, up to 6.18). */
#define COPY_FLAGS (IORING_SETUP_NO_MMAP | IORING_SETUP_REGISTERED_FD_ONLY | \
		    IORING_SETUP_SQE128 | IORING_SETUP_CQE32 | IORING_SETUP_NO_SQARRAY | \
		    (1u << 18) /* CQE_MIXED */ | (1u << 19) /* SQE_MIXED */)

/* liburing >= 2.9 at build time: io_uring_resize_rings exists. */
#if defined(IO_URING_VERSION_MAJOR) && \
	(IO_URING_VERSION_MAJOR > 2 || (IO_URING_VERSION_MAJOR == 2 && IO_URING_VERSION_MINOR >= 9))
#define HR_HAVE_LIBURING_RESIZE 1
#else
#define HR_HAVE_LIBURING_RESIZE 0
#endif

static int check_input(const struct io_uring *ring, const struct io_uring_params *p)
{
	if (!ring || !p) {
		hr_set_error("NULL ring or params");
		return -EINVAL;
	}
	if (p->flags & ~RESIZE_FLAGS) {
		hr_set_error("resize flags 0x%x: only IORING_SETUP_CQSIZE and IORING_SETUP_CLAMP "
			     "may be passed (the rest is kept from the ring)", p->flags);
		return -EINVAL;
	}
	if (!p->sq_entries) {
		hr_set_error("resize to 0 SQ entries");
		return -EINVAL;
	}
	if ((p->flags & IORING_SETUP_CQSIZE) && !p->cq_entries) {
		hr_set_error("IORING_SETUP_CQSIZE with 0 CQ entries");
		return -EINVAL;
	}
	return 0;
}

/* -EOPNOTSUPP where the kernel cannot resize this ring, with the reason. */
static int check_support(const struct hr_ring_rec *rec)
{
	if (!hr_caps()->resize) {
		hr_set_error("this kernel cannot resize rings (IORING_REGISTER_RESIZE_RINGS "
			     "needs Linux 6.13+)");
		return -EOPNOTSUPP;
	}
	if (!(rec->info.setup_flags & IORING_SETUP_DEFER_TASKRUN)) {
		hr_set_error("the kernel resizes only IORING_SETUP_DEFER_TASKRUN rings "
			     "(this ring's flags: 0x%x)", rec->info.setup_flags);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* The new layout, as the kernel will size it: the ring's kept flags and the new counts. */
static int new_layout(const struct hr_ring_rec *rec, const struct io_uring_params *p,
		      struct hugering_layout *lay)
{
	struct io_uring_params q;
	int ret;

	memset(&q, 0, sizeof(q));
	q.flags = (rec->info.setup_flags & COPY_FLAGS) | (p->flags & RESIZE_FLAGS);
	q.cq_entries = p->cq_entries;
	ret = hr_ring_layout(p->sq_entries, &q, lay);
	if (ret)
		hr_set_error("invalid ring size: %u SQ entries, %u CQ entries, flags 0x%x "
			     "(SQ <= 32768, CQ <= 65536 and >= SQ, or IORING_SETUP_CLAMP)",
			     p->sq_entries, p->cq_entries, p->flags);
	return ret;
}

/*
 * Memory for the new rings, placed as for a new ring: the arena's (a slot
 * in a shared page, or a dedicated region), else a region of the ring's
 * own page size on the node it is on.
 */
static int alloc_new(const struct hr_ring_rec *rec, const struct hugering_layout *lay,
		     struct hr_slot *s)
{
	const struct hr_slot *old = &rec->slot;
	bool contig = hr_caps()->nommap == HUGERING_NOMMAP_CONTIG;
	struct hugering_region_opts ro = {
		.size = lay->total_bytes,
		.page_size = old->page_size,
		.numa_node = rec->info.numa_node,
	};
	int ret;

	if (old->arena)
		ret = hr_arena_alloc(old->arena, lay->total_bytes, contig, s);
	else {
		if (contig && old->page_size != HR_BASE_PAGE)
			ro.flags = HUGERING_REGION_CONTIG;
		ret = hr_own_region(&ro, hr_arena_wait_ms(NULL), NULL, s);
	}
	if (ret == -ENOSPC)
		hr_set_error("no memory for the resized ring: the arena's limit (max_bytes) "
			     "is reached");
	else if (ret)
		hr_set_error("no memory for the resized ring (%zu bytes of %zu-byte pages): %s",
			     lay->total_bytes, old->page_size, strerror(-ret));
	return ret;
}

/* Prepared SQEs liburing has not handed to the kernel yet (sqe_head..sqe_tail). */
static unsigned unsubmitted(const struct io_uring *ring)
{
	unsigned ktail = __atomic_load_n(ring->sq.ktail, __ATOMIC_ACQUIRE);

	return ring->sq.sqe_tail - ktail;
}

/* Every SQE the kernel has not consumed, submitted or not. */
static unsigned sq_pending(const struct io_uring *ring)
{
	return ring->sq.sqe_tail - __atomic_load_n(ring->sq.khead, __ATOMIC_ACQUIRE);
}

/* The register call, on hugering's own reference or the registered index. */
static int resize_call(const struct io_uring *ring, int ref_fd, struct io_uring_params *k)
{
	unsigned op = IORING_REGISTER_RESIZE_RINGS;
	int fd = ref_fd;

	if (fd < 0) {
		fd = ring->enter_ring_fd;
		op |= IORING_REGISTER_USE_REGISTERED_RING;
	}
	return hr_sys_io_uring_register(fd, op, k, 1);
}

static void *at(void *base, unsigned off)
{
	return (char *)base + off;
}

/*
 * Point @ring at the new memory from the kernel's answer @k, as liburing
 * does after it maps resized rings: every k* pointer from the returned
 * offsets, the cached masks and sizes from the new header, the local SQE
 * head and tail kept; the SQ index array (when there is one) maps slot i
 * to SQE i, as at setup.  The resize answer leaves sq_off.array as it was
 * passed (the kernel sets it only at setup): its place is the layout's,
 * where the kernel's rings_size() put it.
 */
static void repoint(struct io_uring *ring, const struct io_uring_params *k,
		    const struct hugering_layout *lay, char *sqes, char *rings)
{
	struct io_uring_sq *sq = &ring->sq;
	struct io_uring_cq *cq = &ring->cq;

	sq->sqes = (struct io_uring_sqe *)sqes;
	sq->ring_ptr = rings;
	cq->ring_ptr = rings;
	sq->khead = at(rings, k->sq_off.head);
	sq->ktail = at(rings, k->sq_off.tail);
	sq->kring_mask = at(rings, k->sq_off.ring_mask);
	sq->kring_entries = at(rings, k->sq_off.ring_entries);
	sq->kflags = at(rings, k->sq_off.flags);
	sq->kdropped = at(rings, k->sq_off.dropped);
	cq->khead = at(rings, k->cq_off.head);
	cq->ktail = at(rings, k->cq_off.tail);
	cq->kring_mask = at(rings, k->cq_off.ring_mask);
	cq->kring_entries = at(rings, k->cq_off.ring_entries);
	cq->koverflow = at(rings, k->cq_off.overflow);
	cq->cqes = at(rings, k->cq_off.cqes);
	if (k->cq_off.flags)
		cq->kflags = at(rings, k->cq_off.flags);
	sq->ring_mask = *sq->kring_mask;
	sq->ring_entries = *sq->kring_entries;
	cq->ring_mask = *cq->kring_mask;
	cq->ring_entries = *cq->kring_entries;
	if (!(k->flags & IORING_SETUP_NO_SQARRAY)) {
		sq->array = at(rings, lay->sq_array_off);
		for (unsigned i = 0; i < sq->ring_entries; i++)
			sq->array[i] = i;
	}
}

/*
 * The kernel copied the SQEs it was given (khead..ktail); those liburing
 * has prepared but not flushed (ktail..sqe_tail) are the library's to
 * carry, from the old memory, still mapped, to the same indexes masked anew.
 */
static void carry_unsubmitted(struct io_uring *ring, const char *old_sqes, unsigned old_mask,
			      size_t sqe_size)
{
	unsigned from = *ring->sq.ktail;
	char *sqes = (char *)ring->sq.sqes;

	for (unsigned i = from; i != ring->sq.sqe_tail; i++)
		memcpy(sqes + (size_t)(i & ring->sq.ring_mask) * sqe_size,
		       old_sqes + (size_t)(i & old_mask) * sqe_size, sqe_size);
}

static void update_info(struct hr_ring_rec *rec, const struct io_uring_params *k,
			const struct hugering_layout *lay)
{
	struct hugering_ring_info *info = &rec->info;
	struct io_uring_params q = { .flags = info->setup_flags };
	int recycle = info->recycle;

	info->sq_entries = k->sq_entries;
	info->cq_entries = k->cq_entries;
	/* Recycled at exit as a new ring of this size would be. */
	hr_slot_info(&q, lay, &rec->slot, info);
	if (recycle == HUGERING_RECYCLE_NONE)
		info->recycle = recycle;
}

/* A ring in user memory: new memory, the kernel's resize, the pointers fixed up. */
static int resize_user(struct io_uring *ring, struct io_uring_params *p, struct hr_ring_rec *rec)
{
	size_t sqe_size = (rec->info.setup_flags & IORING_SETUP_SQE128) ? 128 : 64;
	struct hugering_layout lay;
	struct io_uring_params k;
	struct hr_slot s, old;
	char *old_sqes = (char *)ring->sq.sqes;
	unsigned old_mask = ring->sq.ring_mask;
	int ret;

	ret = new_layout(rec, p, &lay);
	if (ret)
		return ret;
	if (sq_pending(ring) > lay.sq_entries) {
		hr_set_error("%u SQEs are pending (%u not yet submitted): more than the %u "
			     "of the new SQ ring; the ring is unchanged", sq_pending(ring),
			     unsubmitted(ring), lay.sq_entries);
		return -EOVERFLOW;
	}
	ret = alloc_new(rec, &lay, &s);
	if (ret)
		return ret;
	hr_slot_prepare(&lay, &s);
	memset(&k, 0, sizeof(k));
	k.sq_entries = p->sq_entries;
	k.cq_entries = p->cq_entries;
	k.flags = p->flags & RESIZE_FLAGS;
	k.sq_off.user_addr = (uintptr_t)s.addr;
	k.cq_off.user_addr = (uintptr_t)(s.addr + lay.rings_offset);
	ret = resize_call(ring, rec->ref_fd, &k);
	if (ret) {
		/*
		 * Every failure path of io_register_resize_rings frees the new
		 * regions before it returns (io_register_free_rings, which
		 * unpins synchronously): nothing in the kernel refers to the
		 * slot, and the bytes it wrote (header, copied SQEs/CQEs) are
		 * what a recycled slot's preparation clears.  Back clean.
		 */
		hr_arena_free(&s, true);
		if (ret == -EOVERFLOW)
			hr_set_error("more CQEs are waiting than the new CQ ring holds (or SQEs "
				     "than the new SQ ring): the ring is unchanged");
		else if (ret == -EEXIST)
			hr_set_error("only the ring's submitter task may resize it "
				     "(IORING_SETUP_SINGLE_ISSUER)");
		else
			hr_set_error("IORING_REGISTER_RESIZE_RINGS failed: %s", strerror(-ret));
		return ret;
	}
	repoint(ring, &k, &lay, s.addr, s.addr + lay.rings_offset);
	k.sq_off.array = lay.sq_array_off;
	carry_unsubmitted(ring, old_sqes, old_mask, sqe_size);
	/* Unpinned by the kernel before it returned: reusable at once. */
	old = rec->slot;
	rec->slot = s;
	hr_arena_free(&old, true);
	update_info(rec, &k, &lay);
	*p = k;
	p->flags = 0;	/* as liburing leaves it, ready for the next resize */
	return 0;
}

/* A kernel-mapped ring: liburing's own resize. */
static int resize_kernel(struct io_uring *ring, struct io_uring_params *p, struct hr_ring_rec *rec)
{
#if HR_HAVE_LIBURING_RESIZE
	size_t sqe_size = (rec->info.setup_flags & IORING_SETUP_SQE128) ? 128 : 64;
	int ret = io_uring_resize_rings(ring, p);

	if (ret) {
		hr_set_error("io_uring_resize_rings failed: %s", strerror(-ret));
		return ret;
	}
	rec->info.sq_entries = ring->sq.ring_entries;
	rec->info.cq_entries = ring->cq.ring_entries;
	rec->info.mem = ring->sq.sqes;
	rec->info.mem_bytes = ring->sq.ring_sz + sqe_size * ring->sq.ring_entries;
	return 0;
#else
	(void)ring;
	(void)p;
	(void)rec;
	hr_set_error("this kernel-mapped ring would be resized by liburing's "
		     "io_uring_resize_rings, which liburing %d.%d (built against) lacks: "
		     "liburing 2.9+ has it", IO_URING_VERSION_MAJOR, IO_URING_VERSION_MINOR);
	return -EOPNOTSUPP;
#endif
}

static int ring_resize(struct io_uring *ring, struct io_uring_params *p)
{
	struct hr_ring_rec *rec;
	const void *old_key;
	int ret;

	ret = check_input(ring, p);
	if (ret)
		return ret;
	old_key = ring->sq.sqes;
	/*
	 * Out of the registry while it changes (a SINGLE_ISSUER ring is its
	 * thread's alone), back under its new key, or its old one on failure.
	 */
	rec = hr_registry_take(old_key);
	if (!rec) {
		hr_set_error("not a ring made by hugering_queue_init*");
		return -ENOENT;
	}
	ret = check_support(rec);
	if (!ret)
		ret = rec->user_mem ? resize_user(ring, p, rec) : resize_kernel(ring, p, rec);
	rec->key = ring->sq.sqes;
	/* Its params are no longer those it was made with: never pooled. */
	if (!ret)
		hr_pool_forget(rec);
	hr_registry_add(rec);
	if (!ret && rec->key != old_key) {
		hr_bufring_moved(old_key, ring);
		hr_regbuf_moved(old_key, ring);
	}
	return ret;
}

int hugering_ring_resize(struct io_uring *ring, struct io_uring_params *p)
{
	return HR_PUBLIC(ring_resize(ring, p));
}

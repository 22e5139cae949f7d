/* SPDX-License-Identifier: MIT */
/*
 * Rings in user memory (IORING_SETUP_NO_MMAP): the memory from an arena or
 * a region of the ring's own, what this kernel and liburing would refuse,
 * and the fallback when hugepages are out (kernel-mapped, or base pages for
 * REGISTERED_FD_ONLY), always with its reason.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

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

/* Where @s is and how it will be recycled, for a ring laid out as @lay. */
void hr_slot_info(const struct io_uring_params *q, const struct hugering_layout *lay,
		  const struct hr_slot *s, struct hugering_ring_info *info)
{
	info->mem_bytes = lay->total_bytes;
	info->mem = s->addr;
	info->rings_offset = lay->rings_offset;
	info->page_addr = s->page_addr;
	info->page_offset = (size_t)(s->addr - s->page_addr);
	if (s->page) {
		/* A slot inside one hugetlb page: one frame, by construction. */
		info->contiguous = HUGERING_CONTIG_YES;
		info->proof = HUGERING_PROOF_CONSTRUCTION;
		info->numa_node = hr_arena_node(s->arena);
		info->recycle = hr_resize_recycles(q, s) ? HUGERING_RECYCLE_RESIZE
						      : HUGERING_RECYCLE_QUARANTINE;
	} else {
		struct hugering_region_info ri;

		hr_region_info(s->region, &ri);
		info->contiguous = ri.contiguous;
		info->proof = ri.proof;
		info->numa_node = ri.numa_node;
		info->recycle = hr_resize_recycles(q, s) ? HUGERING_RECYCLE_RESIZE
						      : HUGERING_RECYCLE_DEDICATED;
	}
}

static void fill_user_info(const struct io_uring_params *q, const struct hugering_layout *lay,
			   const struct hr_slot *s, struct hugering_ring_info *info)
{
	info->mode = s->page_size > HR_BASE_PAGE ? HUGERING_MODE_NOMMAP_HUGE
						 : HUGERING_MODE_NOMMAP_BASE;
	info->page_size = s->page_size;
	info->sq_entries = q->sq_entries;
	info->cq_entries = q->cq_entries;
	info->setup_flags = q->flags;
	hr_slot_info(q, lay, s, info);
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
		return hr_kernel_ring(entries, ring, p, orig, err, reason);	/* says why not */
	if (o) {
		b = *o;
	} else {
		memset(&b, 0, sizeof(b));
		b.numa_node = -1;
	}
	b.page_size = HR_BASE_PAGE;
	ret = hr_user_ring(entries, ring, p, orig, HUGERING_POLICY_NOMMAP, &b);
	if (ret) {
		/* hr_set_error takes a fresh copy, so quoting the current reason is safe. */
		hr_set_error("IORING_SETUP_REGISTERED_FD_ONLY needs the ring in user memory (no "
			     "kernel-mapped fallback exists): hugepages: %s; base pages: %s",
			     reason, hr_last_error());
		return ret;
	}
	why = hr_strf("REGISTERED_FD_ONLY: base pages, not kernel-mapped: %s", reason);
	hr_registry_note_fallback(ring->sq.sqes, err, why ? why : "");
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
	return hr_kernel_ring(entries, ring, p, orig, err, reason);
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

int hr_user_ring(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		 const struct io_uring_params *orig, int policy,
		 const struct hugering_init_opts *o)
{
	const struct hugering_kernel_caps *caps = hr_caps();
	struct hugering_layout lay;
	struct io_uring_params q, in;
	struct hr_ring_rec *rec;
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

	if (policy == HUGERING_POLICY_AUTO && (reason = hr_empty_pool_known(o, lay.total_bytes))) {
		ret = fall_back(entries, ring, p, orig, o, ENOMEM, reason);
		free(reason);
		return ret;
	}
	rec = hr_ring_rec_new();
	if (!rec)
		return -ENOMEM;
	ret = alloc_ring_mem(&lay, caps->nommap, o, &rec->slot);
	if (ret == -ENOMEM || ret == -EPERM || ret == -ENOSPC) {
		hr_ring_rec_free(rec);
		if (ret == -ENOMEM) {
			reason = hr_pool_reason(&lay, o);
			if (!hr_arena_last_wait_ms() && reason)
				hr_empty_pool_note(o, lay.total_bytes, reason);
		} else if (ret == -ENOSPC)
			reason = hr_strf("arena limit (max_bytes) reached");
		else
			reason = hr_strf("%s", class_reason(caps->nommap, ret));
		return no_user_memory_free(entries, ring, p, orig, policy, ret, reason, o);
	}
	if (ret) {
		hr_ring_rec_free(rec);
		hr_set_error(ret == -ECHILD ? "this arena belongs to the parent process"
			     : "allocating %zu bytes of ring memory failed", lay.total_bytes);
		return ret;
	}

	ret = hr_setup_waiting(entries, ring, &in, &q, &lay, &rec->slot,
			    hr_arena_wait_ms(rec->slot.arena));
	if (ret) {
		/*
		 * The kernel may have pinned the memory before failing (or the
		 * ring existed, -EPROTO) and tears it down asynchronously, writing
		 * into it: quarantine, never reuse.
		 */
		hr_arena_free(&rec->slot, false);
		hr_ring_rec_free(rec);
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
		hr_ring_rec_free(rec);
		reason = hr_strf("no file descriptor left for hugering's own reference to the "
				 "ring (%s)", strerror(-ret));
		return no_user_memory_free(entries, ring, p, orig, policy, ret, reason, o);
	}
	rec->key = ring->sq.sqes;
	rec->user_mem = true;
	fill_user_info(&q, &lay, &rec->slot, &rec->info);
	hr_registry_add(rec);
	*p = q;
	return 0;
}

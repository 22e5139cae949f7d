/* SPDX-License-Identifier: MIT */
/*
 * Provided buffer rings in hugepage memory: liburing's
 * io_uring_setup_buf_ring()/io_uring_free_buf_ring(), with the ring memory
 * carved from an arena (kernel-facts.md §11.1).
 *
 * The kernel pins PAGE_ALIGN(nentries * 16) bytes at a page-aligned
 * address and needs no contiguity, so a buffer ring is an arena slot of
 * that size: one 2 MiB page holds 512 rings of 256 entries.  Recycling:
 *  - IORING_UNREGISTER_PBUF_RING unpins before it returns, and a failed
 *    IORING_REGISTER_PBUF_RING unpins whatever it pinned before returning:
 *    the slot goes back clean, reusable at once;
 *  - a ring destroyed (or whose fd is gone) with buffer rings still
 *    registered unpins them in its asynchronous teardown, which may still
 *    write them (IOU_PBUF_RING_INC writes back addr/len): those slots are
 *    quarantined like ring memory, never handed out again.
 * Where the arena cannot supply a page, or the kernel refuses the memory,
 * liburing's own allocation is used and the record says why.  The kernel
 * charges a buffer ring to RLIMIT_MEMLOCK like ring memory (6.14+, unless
 * CAP_IPC_LOCK): a refusal while rings just closed still hold this user's
 * charge is waited out as ring setup does (memlock.c); still refused, it is
 * the answer, with the limit (liburing's memory would be charged the same).
 *
 * Records are keyed by the ring (its SQE address and fd, as the caller's
 * struct io_uring shows them) and bgid.  hugering_queue_exit() reaches them
 * through hr_ring_hooks (registry.c is a layer below and cannot call up),
 * which also run our fork handlers inside registry.c's.  A child inherits
 * the records with the rings, which it shares with the parent: it may read
 * them and drop them (hugering_queue_exit closes only its own fd), but not
 * unregister a buffer ring the parent set up (that would unregister it for
 * the parent too): -ECHILD.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"

struct buf_rec {
	struct buf_rec *next;
	const void *key;		/* ring->sq.sqes */
	int ring_fd;
	pid_t pid;			/* the process that set it up */
	bool arena;			/* memory in slot; else liburing's mapping */
	struct hr_slot slot;
	struct io_uring_buf_ring *br;
	struct hugering_buf_ring_info info;
};

static pthread_mutex_t recs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct buf_rec *recs;

/* The kernel keeps bgid in 16 bits (struct io_uring_buf_reg.bgid). */
static bool rec_is(const struct buf_rec *r, const struct io_uring *ring, int bgid)
{
	return r->key == ring->sq.sqes && r->ring_fd == ring->ring_fd &&
	       (uint16_t)r->info.bgid == (uint16_t)bgid;
}

/* Under the lock: unlink and return the record of @ring's @bgid, or NULL. */
static struct buf_rec *take_locked(const struct io_uring *ring, int bgid)
{
	for (struct buf_rec **pp = &recs; *pp; pp = &(*pp)->next) {
		struct buf_rec *r = *pp;

		if (rec_is(r, ring, bgid)) {
			*pp = r->next;
			return r;
		}
	}
	return NULL;
}

/*
 * The buffer ring may still be in the kernel's hands (its ring is dying):
 * hugepage memory is quarantined, liburing's mapping is only unmapped (the
 * kernel's pin keeps the pages until the teardown drops it).
 */
static void rec_free(struct buf_rec *r)
{
	hr_reason_free(r->info.fallback_reason);
	free(r);
}

static void drop_dirty(struct buf_rec *r)
{
	if (r->arena)
		hr_arena_free(&r->slot, false);
	else
		munmap(r->br, r->info.mem_bytes);
	rec_free(r);
}

/* Unlink and return every record of @ring's buffer rings. */
static struct buf_rec *take_ring_recs(const struct io_uring *ring)
{
	struct buf_rec *gone = NULL, *r;

	pthread_mutex_lock(&recs_lock);
	for (struct buf_rec **pp = &recs; (r = *pp);) {
		if (r->key == ring->sq.sqes && r->ring_fd == ring->ring_fd) {
			*pp = r->next;
			r->next = gone;
			gone = r;
		} else {
			pp = &r->next;
		}
	}
	pthread_mutex_unlock(&recs_lock);
	return gone;
}

/* hr_ring_hooks.exit: every buffer ring of @ring, which is about to be closed. */
static void ring_exit(const struct io_uring *ring)
{
	struct buf_rec *gone = take_ring_recs(ring), *r;

	while ((r = gone)) {
		gone = r->next;
		drop_dirty(r);
	}
}

/*
 * hr_ring_hooks.reset: @ring is being pooled, live: unregister each of its
 * buffer rings (the kernel unpins it before returning) and forget it.  Its
 * memory is quarantined all the same, as at exit.  -errno if one stays.
 */
static int ring_reset(const struct io_uring *ring)
{
	struct buf_rec *gone = take_ring_recs(ring), *r;
	int ret = 0;

	while ((r = gone)) {
		gone = r->next;
		if (!ret)
			ret = io_uring_unregister_buf_ring((struct io_uring *)ring, r->info.bgid);
		drop_dirty(r);
	}
	return ret;
}

/* fork(): the child inherits the records (its rings' memory is shared) and an unheld lock. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&recs_lock);
}

static void fork_release(void)
{
	pthread_mutex_unlock(&recs_lock);
}

static const struct hr_ring_hooks hooks = {
	.exit = ring_exit,
	.reset = ring_reset,
	.fork_prepare = fork_prepare,
	.fork_parent = fork_release,
	.fork_child = fork_release,
};

__attribute__((constructor)) static void add_hooks(void)
{
	hr_ring_hooks_add(&hooks);
}

/*
 * A new registration of @bgid on this ring was accepted: any record of the
 * same key is stale (unregistered behind our back, or an earlier ring with
 * the same fd and SQE address); we cannot tell which, so quarantine.
 */
static void add_rec(struct buf_rec *rec, const struct io_uring *ring)
{
	struct buf_rec *stale;

	pthread_mutex_lock(&recs_lock);
	stale = take_locked(ring, rec->info.bgid);
	rec->next = recs;
	recs = rec;
	pthread_mutex_unlock(&recs_lock);
	if (stale)
		drop_dirty(stale);
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */
/* ------------------------------------------------------------------ */

static size_t ring_bytes(unsigned nentries)
{
	return HR_ALIGN_UP((size_t)nentries * sizeof(struct io_uring_buf), HR_BASE_PAGE);
}

/* Why the arena gave no memory: a heap string (NULL when memory is out). */
static char *arena_reason(struct hugering_arena *a, int ret, size_t len)
{
	char *why = NULL;

	if (!a)
		return hr_strf("no arena: %s", hr_last_error()[0] ?
			       hr_last_error() : "no hugetlb in this kernel");
	if (ret == -ENOMEM) {
		hr_explain_no_hugepages(hr_arena_page_size(a), hr_arena_node(a), len, &why);
		return why;
	}
	if (ret == -ENOSPC)
		return hr_strf("arena limit (max_bytes) reached");
	if (ret == -ECHILD)
		return hr_strf("the ring's arena belongs to the parent process");
	return hr_strf("arena allocation of %zu bytes failed: %s", len, strerror(-ret));
}

/*
 * Out of RLIMIT_MEMLOCK for @len bytes after waiting: liburing's memory
 * would be charged the same, so this is the answer (no fallback).
 */
static void memlock_error(size_t len, const struct rlimit *rl)
{
	hr_set_error("IORING_REGISTER_PBUF_RING: out of RLIMIT_MEMLOCK: the buffer ring needs "
		     "%zu bytes locked (charged per user, shared by all this user's rings and "
		     "buffer rings; Linux 6.14+), limit is %llu bytes: raise ulimit -l or grant "
		     "CAP_IPC_LOCK", len, (unsigned long long)rl->rlim_cur);
}

struct reg_try {
	struct io_uring *ring;
	struct io_uring_buf_reg *reg;
	unsigned nentries, flags;
	int bgid;
	struct io_uring_buf_ring *br;	/* by_liburing's result */
};

/* A failed registration holds no pin and wrote nothing: the same memory can be tried again. */
static int register_once(void *arg)
{
	struct reg_try *t = arg;

	return io_uring_register_buf_ring(t->ring, t->reg, t->flags);
}

static int liburing_once(void *arg)
{
	struct reg_try *t = arg;
	int ret;

	t->br = io_uring_setup_buf_ring(t->ring, t->nentries, t->bgid, t->flags, &ret);
	return t->br ? 0 : ret;
}

/*
 * Register @nentries at an arena slot.  Returns 0 with @rec filled, or
 * the error: -ENOMEM etc. from the arena, or the kernel's; *@why (heap,
 * the caller's to free) says it.  *@memlock: the kernel's -ENOMEM is
 * RLIMIT_MEMLOCK's, still after waiting for dying rings' charge (@rl).
 */
static int in_arena(struct io_uring *ring, unsigned nentries, int bgid, unsigned flags,
		    struct buf_rec *rec, char **why, bool *memlock, struct rlimit *rl)
{
	struct reg_try t = { .ring = ring, .flags = flags };
	struct hugering_arena *a = hr_ring_arena(ring);
	size_t len = ring_bytes(nentries);
	struct io_uring_buf_reg reg;
	int ret;

	if (!a)
		a = hr_default_arena();
	ret = a ? hr_arena_alloc(a, len, false, &rec->slot) : -ENOMEM;
	if (ret) {
		*why = arena_reason(a, ret, len);
		return ret;
	}
	/* The kernel reads the tail from this memory: a recycled slot starts clean. */
	if (rec->slot.reused)
		memset(rec->slot.addr, 0, len);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uintptr_t)rec->slot.addr;
	reg.ring_entries = nentries;
	reg.bgid = (uint16_t)bgid;
	/*
	 * In the registration itself: liburing 2.9 ORs its flags argument in
	 * here, liburing 2.5 drops it, which would make IOU_PBUF_RING_INC a
	 * silent no-op there.
	 */
	reg.flags = (uint16_t)flags;
	t.reg = &reg;
	ret = hr_memlock_retry(register_once, &t, hr_arena_wait_ms(a), rl, memlock);
	if (ret) {
		/* A failed registration holds no pin when it returns. */
		hr_arena_free(&rec->slot, true);
		*why = hr_strf("the kernel refused the buffer ring in hugepage memory "
			       "(IORING_REGISTER_PBUF_RING: %s)", strerror(-ret));
		return ret;
	}
	rec->arena = true;
	rec->br = (struct io_uring_buf_ring *)rec->slot.addr;
	rec->info.mode = HUGERING_BUF_RING_HUGE;
	rec->info.mem = rec->slot.addr;
	rec->info.page_size = rec->slot.page_size;
	rec->info.page_addr = rec->slot.page_addr;
	rec->info.page_offset = (size_t)(rec->slot.addr - rec->slot.page_addr);
	return 0;
}

/*
 * Buffer ring flags older kernels refuse with -EINVAL (io_register_pbuf_ring):
 * the field was padding before 6.4, IOU_PBUF_RING_INC came in 6.12.
 */
static const char *inc_hint(unsigned flags, int err)
{
	if (err != -EINVAL)
		return "";
	if (flags & IOU_PBUF_RING_INC)
		return "; IOU_PBUF_RING_INC needs Linux 6.12";
	if (flags)
		return "; buffer ring flags need Linux 6.4 (IOU_PBUF_RING_MMAP)";
	return "";
}

/* liburing's own buffer ring, because of @err (@why); its charge waited for like ours. */
static int by_liburing(struct io_uring *ring, unsigned nentries, int bgid, unsigned flags,
		       struct buf_rec *rec, int err, const char *why)
{
	struct reg_try t = { .ring = ring, .nentries = nentries, .bgid = bgid, .flags = flags };
	struct rlimit rl;
	bool memlock;
	int ret = hr_memlock_retry(liburing_once, &t, hr_arena_wait_ms(hr_ring_arena(ring)), &rl,
				   &memlock);

	rec->br = t.br;
	if (!rec->br) {
		if (memlock)
			memlock_error(rec->info.mem_bytes, &rl);
		else if (ret == err)
			hr_set_error("io_uring_setup_buf_ring: %s (the same with liburing's "
				     "memory: the kernel refuses these parameters%s)", strerror(-ret),
				     inc_hint(flags, ret));
		else
			hr_set_error("io_uring_setup_buf_ring: %s; hugepage memory was not "
				     "used: %s", strerror(-ret), why);
		return ret;
	}
	hr_log(HUGERING_LOG_WARN, "buffer ring %d (%u entries) fell back to liburing's memory: %s",
	       bgid, nentries, why);
	rec->info.mode = HUGERING_BUF_RING_LIBURING;
	rec->info.fallback_errno = -err;
	rec->info.fallback_reason = hr_reason_dup(why);
	rec->info.mem = rec->br;
	rec->info.page_size = HR_BASE_PAGE;
	rec->info.page_addr = rec->br;
	return 0;
}

static struct io_uring_buf_ring *setup_buf_ring(struct io_uring *ring, unsigned nentries,
						int bgid, unsigned flags, int *err)
{
	struct buf_rec *rec;
	struct rlimit rl;
	char *why = NULL;
	bool memlock = false;
	int ret;

	*err = 0;
	if (!ring) {
		hr_set_error("NULL ring");
		*err = -EINVAL;
		return NULL;
	}
	/* The kernel's own checks, before any memory is taken. */
	if (!hr_is_pow2(nentries) || nentries >= 65536) {
		hr_set_error("nentries %u: a buffer ring has a power of two below 65536 entries",
			     nentries);
		*err = -EINVAL;
		return NULL;
	}
	rec = calloc(1, sizeof(*rec));
	if (!rec) {
		hr_set_error("out of memory for the buffer ring record");
		*err = -ENOMEM;
		return NULL;
	}
	rec->key = ring->sq.sqes;
	rec->ring_fd = ring->ring_fd;
	rec->pid = getpid();
	rec->info.fallback_reason = "";
	rec->info.bgid = bgid;
	rec->info.nentries = nentries;
	rec->info.flags = flags;
	rec->info.mem_bytes = ring_bytes(nentries);
	ret = in_arena(ring, nentries, bgid, flags, rec, &why, &memlock, &rl);
	/*
	 * bgid taken, or flags this kernel does not know: the kernel's answer
	 * whatever the memory (and liburing < 2.6 would drop the flags, making
	 * its memory "work" without them).
	 */
	if (memlock)
		memlock_error(rec->info.mem_bytes, &rl);
	else if (ret == -EEXIST)
		hr_set_error("buffer group %d is already registered on this ring", bgid);
	else if (ret == -EINVAL && flags)
		hr_set_error("io_uring_register_buf_ring: %s (the kernel refuses these flags%s)",
			     strerror(-ret), inc_hint(flags, ret));
	else if (ret)
		ret = by_liburing(ring, nentries, bgid, flags, rec, ret,
				  why ? why : "out of memory for the reason");
	free(why);
	if (ret) {
		rec_free(rec);
		*err = ret;
		return NULL;
	}
	io_uring_buf_ring_init(rec->br);
	add_rec(rec, ring);
	hr_clear_error();	/* what the arena or the first try said is not a failure */
	return rec->br;
}

struct io_uring_buf_ring *hugering_setup_buf_ring(struct io_uring *ring, unsigned int nentries,
						  int bgid, unsigned int flags, int *err)
{
	struct io_uring_buf_ring *br;
	int ret;

	hr_clear_error();
	br = setup_buf_ring(ring, nentries, bgid, flags, err ? err : &ret);
	if (!br)
		hr_result(err ? *err : ret, __func__);
	return br;
}

/* ------------------------------------------------------------------ */
/* Free and info                                                       */
/* ------------------------------------------------------------------ */

static int free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br,
			 unsigned nentries, int bgid)
{
	struct io_uring_buf_ring *have = NULL;
	struct buf_rec *r;
	bool ours = false;
	pid_t owner = 0;
	int ret;

	if (!ring)
		return -EINVAL;
	pthread_mutex_lock(&recs_lock);
	for (r = recs; r; r = r->next) {
		if (rec_is(r, ring, bgid)) {
			ours = true;
			have = r->br;
			owner = r->pid;
			break;
		}
	}
	pthread_mutex_unlock(&recs_lock);
	if (!ours)
		return io_uring_free_buf_ring(ring, br, nentries, bgid);	/* not ours */
	if (owner != getpid()) {
		hr_set_error("buffer group %d was set up by process %d on a ring this process "
			     "inherited (the parent's ring, shared): unregistering it here would "
			     "unregister it for that process too; hugering_queue_exit() closes "
			     "this process's copy of the ring", bgid, (int)owner);
		return -ECHILD;
	}
	if (have != br) {
		hr_set_error("buffer group %d's ring is at %p, not %p", bgid, (void *)have,
			     (void *)br);
		return -EINVAL;
	}
	ret = io_uring_unregister_buf_ring(ring, bgid);
	if (ret && ret != -EBADF && ret != -ENXIO) {
		hr_set_error("IORING_UNREGISTER_PBUF_RING of group %d: %s (the buffer ring "
			     "stays registered)", bgid, strerror(-ret));
		return ret;
	}
	pthread_mutex_lock(&recs_lock);
	r = take_locked(ring, bgid);
	pthread_mutex_unlock(&recs_lock);
	if (!r)
		return ret;	/* a racing free took it */
	if (ret) {
		/* The ring's fd is gone: the kernel may still hold the memory. */
		hr_set_error("IORING_UNREGISTER_PBUF_RING of group %d: %s (the ring is closed; "
			     "its memory is quarantined)", bgid, strerror(-ret));
		drop_dirty(r);
		return ret;
	}
	/* Unregistered: unpinned before the call returned, reusable now. */
	if (r->arena)
		hr_arena_free(&r->slot, true);
	else
		munmap(r->br, (size_t)r->info.nentries * sizeof(struct io_uring_buf));
	rec_free(r);
	return 0;
}

int hugering_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br,
			   unsigned int nentries, int bgid)
{
	return HR_PUBLIC(free_buf_ring(ring, br, nentries, bgid));
}

static int buf_ring_info(const struct io_uring *ring, int bgid,
			 struct hugering_buf_ring_info *out)
{
	int ret = -ENOENT;

	if (!ring || !out)
		return -EINVAL;
	pthread_mutex_lock(&recs_lock);
	for (struct buf_rec *r = recs; r; r = r->next) {
		if (rec_is(r, ring, bgid)) {
			*out = r->info;
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&recs_lock);
	if (ret)
		hr_set_error("buffer group %d of this ring was not set up by "
			     "hugering_setup_buf_ring", bgid);
	return ret;
}

int hugering_buf_ring_info(const struct io_uring *ring, int bgid,
			   struct hugering_buf_ring_info *out)
{
	return HR_PUBLIC(buf_ring_info(ring, bgid, out));
}

/* hugering_ring_resize moved @ring's SQEs: its buffer rings follow the new key. */
void hr_bufring_moved(const void *old_key, const struct io_uring *ring)
{
	pthread_mutex_lock(&recs_lock);
	for (struct buf_rec *r = recs; r; r = r->next)
		if (r->key == old_key && r->ring_fd == ring->ring_fd)
			r->key = ring->sq.sqes;
	pthread_mutex_unlock(&recs_lock);
}

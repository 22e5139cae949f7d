/* SPDX-License-Identifier: MIT */
/*
 * Arenas: ring memory carved out of hugepages, recycled safely.
 *
 * The hazard (DESIGN.md §5): closing a ring does not release its memory.
 * The kernel tears the ring down asynchronously and writes its SQ head and
 * CQ tail into that memory once more, 12-19 ms after close; a new ring
 * placed there before that loses completions.  Dying rings also keep their
 * pages pinned, so the pool is short for a while.
 *
 * What this arena does about it:
 *  - rings that fit in one hugepage get a slot in a shared page: the
 *    tightest fit among the page's clean slots and the room no ring ever
 *    used (best fit keeps large clean slots whole for large rings);
 *  - a destroyed ring's slot is never reused (quarantine) unless the ring
 *    was first resized into a throw-away region (resize.c does that for
 *    DEFER_TASKRUN rings on kernels with IORING_REGISTER_RESIZE_RINGS: the
 *    kernel then unpins the slot synchronously), in which case the slot is
 *    clean and goes back on the page's free list;
 *  - once every ring of a used-up page is gone, the page is retired: our
 *    mapping is removed and the page punched out of the memfd.  The kernel
 *    frees the old frame when the last dying ring unpins it; the file
 *    offset, now a hole, later gets a fresh page;
 *  - the next fresh page is faulted in ahead of need by the background
 *    worker (worker.c) once pages are being retired, so a ring that needs
 *    one does not wait ~0.4 ms for the kernel to zero 2 MiB: nothing a
 *    process can see says when a plain or SQPOLL ring's teardown has
 *    unpinned its memory (the kernel does it in an asynchronous worker and
 *    signals no one), so that memory is never reused and a fresh, zeroed
 *    page is the only safe one; the zeroing is not saved (the process
 *    spends as much CPU or up to ~20% more, measured), only moved off the
 *    caller's path (opt-in: HUGERING_ARENA_PREPARE; like jemalloc's
 *    background thread, a library thread is the program's choice);
 *  - larger rings get a region of their own, unmapped when they die;
 *  - when the pool is empty because this process's dying rings still pin
 *    pages (it let go of hugepages within wait_ms), allocation waits a
 *    bounded time for the kernel to give them back, then fails -ENOMEM; a
 *    pool that is simply empty, absent or held by others fails at once;
 *    faults go through MADV_POPULATE_WRITE, so never SIGBUS.
 *
 * Locking: one mutex per arena, never held across a syscall that can block
 * (mmap, populate, punch, waits happen outside it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_WAIT_MS 250
/* Clean dedicated regions kept for the next ring of the same size. */
#define SPARE_MAX 4
#define WAIT_STEP_US 1000
/* Fresh pages kept faulted in for the next ring (the worker refills). */
#define READY_MAX 1
/* Sparse size of the arena memfd: offsets are handed out, never truncated. */
#define ARENA_FILE_SIZE (1ULL << 40)

struct extent {
	size_t off, len;
};

/* A dedicated region whose ring was resized away: no kernel reference left. */
struct spare {
	struct hugering_region *region;
	size_t held;
	bool contig;
};

struct hr_page {
	struct hr_page *next;
	char *addr;
	off_t off;		/* in the arena memfd */
	size_t bump;		/* first byte no ring has used */
	unsigned live, dead;
	size_t live_bytes, dead_bytes;
	struct extent *free;	/* clean slots (resize-recycled) */
	unsigned nfree, capfree;
};

struct hugering_arena {
	pthread_mutex_t lock;
	pid_t owner;
	size_t ps;
	int node;
	size_t max_bytes;
	int wait_ms;
	unsigned flags;
	int fd;
	off_t next_off;
	off_t *holes;		/* punched offsets, ready for fresh pages */
	unsigned nholes, capholes;
	struct hr_page *pages;
	unsigned npages;
	unsigned pending_pages;	/* being faulted in, counted against max_bytes */
	unsigned retiring;	/* pages being unmapped and punched */
	uint64_t pool_waits;	/* atomic: bumped outside the lock */
	struct hr_page *ready;	/* fresh pages faulted in ahead of need */
	unsigned nready;
	unsigned preparing;	/* pages the worker is faulting in (also in pending_pages) */
	struct hr_job prepare;	/* refills ready (worker.c) */
	unsigned own_regions;	/* rings with a region of their own */
	size_t own_bytes, own_held;	/* own_held includes the spares */
	struct spare spares[SPARE_MAX];
	unsigned nspares;
	struct hugering_arena_stats st;
};

/* ------------------------------------------------------------------ */

/* Valid options, and the node they name (-1 = any). */
static int check_arena_opts(const struct hugering_arena_opts *o, int *node)
{
	for (size_t i = 0; i < sizeof(o->resv) / sizeof(o->resv[0]); i++)
		if (o->resv[i])
			return -EINVAL;
	if (o->flags & ~HUGERING_ARENA_FLAGS_ALL || o->wait_ms < -1)
		return -EINVAL;
	if (o->page_size) {
		int ret = hr_page_size_check(o->page_size);

		if (ret)
			return ret;
	}
	return hr_opts_node_local(o->numa_node, o->flags & HUGERING_ARENA_NUMA_NODE,
				  o->flags & HUGERING_ARENA_NODE_LOCAL, -1, node);
}

static void prepare_run(struct hr_job *j);

static int arena_create(const struct hugering_arena_opts *o, struct hugering_arena **out)
{
	struct hugering_arena *a;
	int node, ret;

	if (!o || !out)
		return -EINVAL;
	*out = NULL;
	ret = check_arena_opts(o, &node);
	if (ret) {
		if (ret == -EINVAL)
			hr_set_error("bad hugering_arena_opts (page size, NUMA node, flags, "
				     "wait_ms or reserved fields; NUMA_NODE and NODE_LOCAL "
				     "exclude each other)");
		else
			hr_set_error("arena options: cannot read the kernel's hugepage sizes "
				     "or NUMA nodes: %s", strerror(-ret));
		return ret;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->ps = o->page_size;
	ret = a->ps ? 0 : hr_default_page_size_get("", &a->ps);
	if (ret) {
		hr_set_error("arena: no default hugepage size: %s",
			     ret == -ENOSYS ? "no hugetlb in this kernel" : strerror(-ret));
		free(a);
		return ret;
	}
	a->node = node;
	a->max_bytes = o->max_bytes;
	a->wait_ms = o->wait_ms ? o->wait_ms : DEFAULT_WAIT_MS;
	a->flags = o->flags & ~(HUGERING_ARENA_NUMA_NODE | HUGERING_ARENA_NODE_LOCAL);
	a->owner = getpid();
	a->fd = hr_memfd_for(a->ps, "hugering-arena");
	if (a->fd < 0) {
		ret = a->fd;
		hr_set_error("arena: memfd_create of %zu kB pages: %s", a->ps >> 10,
			     strerror(-ret));
		free(a);
		return ret;
	}
	ret = hr_sys_ftruncate(a->fd, (off_t)ARENA_FILE_SIZE);
	if (ret) {
		hr_set_error("arena: ftruncate of its memfd: %s", strerror(-ret));
		close(a->fd);
		free(a);
		return ret;
	}
	pthread_mutex_init(&a->lock, NULL);
	a->prepare.run = prepare_run;
	a->st.page_size = a->ps;
	*out = a;
	return 0;
}

static void note_release(void);

/* The frame goes back to the pool when the last dying ring unpins it. */
static bool punch(struct hugering_arena *a, off_t off)
{
	return !hr_sys_fallocate(a->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
				 (off_t)a->ps);
}

/* Returns whether the offset is a hole again (safe to give a fresh page). */
static bool drop_page(struct hugering_arena *a, struct hr_page *pg)
{
	bool holed;

	hr_sys_munmap(pg->addr, a->ps);
	holed = punch(a, pg->off);
	note_release();
	free(pg->free);
	free(pg);
	return holed;
}

static bool is_default_arena(const struct hugering_arena *a);

static int arena_destroy(struct hugering_arena *a)
{
	struct hr_page *pg, *next;

	if (!a)
		return 0;
	if (a->owner != getpid())
		return -ECHILD;
	/* The library keeps using it (hugering_queue_init*): never freed. */
	if (is_default_arena(a)) {
		hr_set_error("the default arena belongs to the library and lives as long as "
			     "the process; destroy only arenas from hugering_arena_create");
		return -EBUSY;
	}
	pthread_mutex_lock(&a->lock);
	if (a->st.rings_live || a->retiring) {
		pthread_mutex_unlock(&a->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&a->lock);
	/* No refill may start or be under way once the arena is gone. */
	hr_worker_cancel(&a->prepare);
	pthread_mutex_lock(&a->lock);
	if (a->pending_pages) {
		pthread_mutex_unlock(&a->lock);
		return -EBUSY;
	}
	pthread_mutex_unlock(&a->lock);
	for (pg = a->pages; pg; pg = next) {
		next = pg->next;
		drop_page(a, pg);
	}
	for (pg = a->ready; pg; pg = next) {
		next = pg->next;
		drop_page(a, pg);
	}
	while (a->nspares)
		hr_region_free(a->spares[--a->nspares].region);
	close(a->fd);
	free(a->holes);
	pthread_mutex_destroy(&a->lock);
	free(a);
	return 0;
}

static int arena_stats(struct hugering_arena *a, struct hugering_arena_stats *out)
{
	if (!a || !out)
		return -EINVAL;
	pthread_mutex_lock(&a->lock);
	*out = a->st;
	out->pool_waits = __atomic_load_n(&a->pool_waits, __ATOMIC_RELAXED);
	out->pages_held = a->npages + a->nready + (unsigned)(a->own_held / a->ps);
	out->bytes_in_use = a->own_bytes;
	out->bytes_waiting = 0;
	out->bytes_free = a->nready * a->ps;
	for (struct hr_page *pg = a->pages; pg; pg = pg->next) {
		out->bytes_in_use += pg->live_bytes;
		out->bytes_waiting += pg->dead_bytes;
		out->bytes_free += a->ps - pg->bump;
		for (unsigned i = 0; i < pg->nfree; i++)
			out->bytes_free += pg->free[i].len;
	}
	for (unsigned i = 0; i < a->nspares; i++)
		out->bytes_free += a->spares[i].held;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Waiting for the pool                                                */
/* ------------------------------------------------------------------ */

/*
 * When this process last let go of hugepage memory that a dying ring may
 * still pin (a retired page, a ring's own region): ms on CLOCK_MONOTONIC,
 * 0 = never.  Only then is the pool about to refill; an empty or absent
 * pool, or one full of other processes' pages, is not worth waiting for.
 */
static long last_release_ms;
static __thread int last_wait_ms;

static void note_release(void)
{
	__atomic_store_n(&last_release_ms, hr_now_ms(), __ATOMIC_RELAXED);
}

bool hr_arena_released_since(long t)
{
	long r = __atomic_load_n(&last_release_ms, __ATOMIC_RELAXED);

	return r && r >= t;
}

int hr_arena_last_wait_ms(void)
{
	return last_wait_ms;
}

/*
 * Run @try until it stops failing with -ENOMEM or @wait_ms passes, as long
 * as this process released pinned hugepages within @wait_ms (dying rings
 * give their pages back within milliseconds).  Counts a wait in @waits.
 */
static int with_pool_wait(int wait_ms, uint64_t *waits, int (*try)(void *), void *arg)
{
	long start = hr_now_ms(), deadline = start + (wait_ms > 0 ? wait_ms : 0);
	bool waited = false;
	int ret;

	while ((ret = try(arg)) == -ENOMEM && wait_ms > 0 && hr_now_ms() < deadline &&
	       hr_arena_released_since(start - wait_ms)) {
		waited = true;
		usleep(WAIT_STEP_US);
	}
	last_wait_ms = waited ? (int)(hr_now_ms() - start) : 0;
	if (waited && waits)
		__atomic_add_fetch(waits, 1, __ATOMIC_RELAXED);
	if (waited)
		hr_log(HUGERING_LOG_INFO, "arena: waited %d ms for the hugepage pool to refill (%s)",
		       last_wait_ms, ret ? "still short" : "got it");
	return ret;
}

/* ------------------------------------------------------------------ */
/* Shared pages                                                        */
/* ------------------------------------------------------------------ */

struct page_try {
	struct hugering_arena *a;
	off_t off;
	char *addr;
};

static int try_map_page(void *arg)
{
	struct page_try *t = arg;

	return hr_map_populated(t->a->fd, t->off, t->a->ps, t->a->node, NULL,
				(void **)&t->addr);
}

static off_t take_offset(struct hugering_arena *a)
{
	if (a->nholes)
		return a->holes[--a->nholes];
	a->next_off += (off_t)a->ps;
	return a->next_off - (off_t)a->ps;
}

static void give_offset(struct hugering_arena *a, off_t off)
{
	if (a->nholes == a->capholes) {
		unsigned cap = a->capholes ? 2 * a->capholes : 16;
		off_t *h = realloc(a->holes, cap * sizeof(*h));

		if (!h)
			return;	/* the offset is lost, the file is sparse: harmless */
		a->holes = h;
		a->capholes = cap;
	}
	a->holes[a->nholes++] = off;
}

/* Ready pages never held a ring: punched, their frames are free at once. */
static size_t drop_ready(struct hugering_arena *a)
{
	struct hr_page *pg, *next;
	size_t held;

	pthread_mutex_lock(&a->lock);
	pg = a->ready;
	held = a->nready * a->ps;
	a->ready = NULL;
	a->nready = 0;
	a->retiring++;	/* keeps destroy away while they go */
	pthread_mutex_unlock(&a->lock);
	for (; pg; pg = next) {
		off_t off = pg->off;
		bool holed;

		next = pg->next;
		holed = drop_page(a, pg);
		pthread_mutex_lock(&a->lock);
		if (holed)
			give_offset(a, off);
		pthread_mutex_unlock(&a->lock);
	}
	pthread_mutex_lock(&a->lock);
	a->retiring--;
	pthread_mutex_unlock(&a->lock);
	return held;
}

/*
 * Spare regions and ready pages go back to the pool when memory is short
 * (max_bytes, or an empty pool): they are a cache, never a reason to fail.
 * Returns the bytes of hugepages they held (0: there were none).
 */
static size_t drop_spares(struct hugering_arena *a)
{
	struct spare sp[SPARE_MAX];
	size_t ready = drop_ready(a), held = 0;
	unsigned n;

	pthread_mutex_lock(&a->lock);
	n = a->nspares;
	memcpy(sp, a->spares, n * sizeof(sp[0]));
	for (unsigned i = 0; i < n; i++)
		held += sp[i].held;
	a->own_held -= held;
	a->nspares = 0;
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < n; i++)
		hr_region_free(sp[i].region);
	return ready + held;
}

/* Under the lock: would @bytes more go past max_bytes? */
static bool over_limit(const struct hugering_arena *a, size_t bytes)
{
	return a->max_bytes &&
	       (a->npages + a->nready + a->pending_pages) * a->ps + a->own_held + bytes >
		       a->max_bytes;
}

/* Under the lock (dropped and retaken): room for @bytes, spares given up if need be. */
static bool room_for(struct hugering_arena *a, size_t bytes)
{
	while (over_limit(a, bytes)) {
		size_t dropped;

		pthread_mutex_unlock(&a->lock);
		dropped = drop_spares(a);
		pthread_mutex_lock(&a->lock);
		if (!dropped)
			return false;
	}
	return true;
}

/* One try; if the pool is short, give the spares back first, then wait for it. */
static int spares_then_wait(struct hugering_arena *a, int (*try)(void *), void *arg)
{
	int ret = try(arg);

	if (ret != -ENOMEM)
		return ret;
	drop_spares(a);
	return with_pool_wait(a->wait_ms, &a->pool_waits, try, arg);
}

/* Fault in the page at t->off (MADV_DONTFORK if the arena asks for it). */
static int fault_page(struct page_try *t, int (*how)(struct hugering_arena *, int (*)(void *),
						    void *))
{
	int ret = how(t->a, try_map_page, t);

	if (!ret && (t->a->flags & HUGERING_ARENA_DONTFORK)) {
		ret = hr_sys_madvise(t->addr, t->a->ps, MADV_DONTFORK);
		if (ret)
			hr_sys_munmap(t->addr, t->a->ps);
	}
	return ret;
}

/* Whatever reached the file at @off goes back to the pool; the offset is reused if holed. */
static void fault_failed(struct hugering_arena *a, off_t off)
{
	bool holed = punch(a, off);

	pthread_mutex_lock(&a->lock);
	a->pending_pages--;
	if (holed)
		give_offset(a, off);
	pthread_mutex_unlock(&a->lock);
}

static int try_once(struct hugering_arena *a, int (*try)(void *), void *arg)
{
	(void)a;
	return try(arg);
}

/*
 * The worker's job: one fresh page faulted in ahead of need.  A single try:
 * with the pool short it is a cache not worth waiting for.  Without a node
 * the page lands on the worker's node, as it would on the caller's.
 */
static void prepare_run(struct hr_job *j)
{
	struct hugering_arena *a = (struct hugering_arena *)((char *)j -
							      offsetof(struct hugering_arena, prepare));
	struct page_try t = { .a = a };
	struct hr_page *pg;

	pthread_mutex_lock(&a->lock);
	if (a->nready >= READY_MAX || over_limit(a, a->ps)) {
		pthread_mutex_unlock(&a->lock);
		return;
	}
	a->pending_pages++;
	a->preparing++;
	t.off = take_offset(a);
	pthread_mutex_unlock(&a->lock);

	pg = calloc(1, sizeof(*pg));
	if (!pg || fault_page(&t, try_once)) {
		free(pg);
		pthread_mutex_lock(&a->lock);
		a->preparing--;
		pthread_mutex_unlock(&a->lock);
		fault_failed(a, t.off);
		return;
	}
	pg->addr = t.addr;
	pg->off = t.off;
	pthread_mutex_lock(&a->lock);
	a->pending_pages--;
	a->preparing--;
	pg->next = a->ready;
	a->ready = pg;
	a->nready++;
	a->st.pages_prepared++;
	pthread_mutex_unlock(&a->lock);
}

/* Pages are being retired: have the next fresh one faulted in ahead of need. */
static void want_ready_page(struct hugering_arena *a)
{
	if (a->flags & HUGERING_ARENA_PREPARE)
		hr_worker_post(&a->prepare);
}

/* Under the lock: a ready page, counted as pending like one being faulted in. */
static struct hr_page *take_ready(struct hugering_arena *a)
{
	struct hr_page *pg = a->ready;

	if (!pg)
		return NULL;
	a->ready = pg->next;
	a->nready--;
	pg->next = NULL;
	a->pending_pages++;
	a->st.prepared_used++;
	return pg;
}

/* A fresh page: a ready one, or faulted in outside the lock, waiting for the pool if empty. */
static int add_page(struct hugering_arena *a, struct hr_page **out)
{
	struct page_try t = { .a = a };
	struct hr_page *pg;
	int ret;

	pthread_mutex_lock(&a->lock);
	pg = take_ready(a);
	if (!pg && a->preparing && over_limit(a, a->ps)) {
		/* The page the worker is faulting in is the room there is: wait for it. */
		pthread_mutex_unlock(&a->lock);
		hr_worker_cancel(&a->prepare);
		pthread_mutex_lock(&a->lock);
		pg = take_ready(a);
	}
	if (pg) {
		pthread_mutex_unlock(&a->lock);
		want_ready_page(a);
		*out = pg;
		return 0;
	}
	if (!room_for(a, a->ps)) {
		pthread_mutex_unlock(&a->lock);
		return -ENOSPC;
	}
	a->pending_pages++;
	t.off = take_offset(a);
	pthread_mutex_unlock(&a->lock);

	pg = calloc(1, sizeof(*pg));
	ret = pg ? fault_page(&t, spares_then_wait) : -ENOMEM;
	if (ret) {
		free(pg);
		fault_failed(a, t.off);
		return ret;
	}
	pg->addr = t.addr;
	pg->off = t.off;
	*out = pg;
	return 0;
}

/*
 * Under the lock: the tightest room of @len in @pg, a clean extent or the
 * never-used tail (best fit).  First fit would cut a small ring out of the
 * one clean extent a larger ring could reuse (a ring whose resize failed
 * keeps its small slot, quarantined at exit, and the next resize of that
 * size found no room left), and the arena took a fresh hugepage it then
 * kept: best fit leaves the large extents whole.
 */
static bool carve(struct hr_page *pg, size_t ps, size_t len, size_t *off, bool *reused)
{
	size_t best = ps - pg->bump >= len ? ps - pg->bump : SIZE_MAX;
	unsigned pick = pg->nfree;	/* the tail */

	for (unsigned i = 0; i < pg->nfree; i++) {
		if (pg->free[i].len >= len && pg->free[i].len < best) {
			best = pg->free[i].len;
			pick = i;
		}
	}
	if (best == SIZE_MAX)
		return false;
	if (pick == pg->nfree) {
		*off = pg->bump;
		pg->bump += len;
		return true;
	}
	*reused = true;
	*off = pg->free[pick].off;
	pg->free[pick].off += len;
	pg->free[pick].len -= len;
	if (!pg->free[pick].len)
		pg->free[pick] = pg->free[--pg->nfree];
	return true;
}

static void take_slot(struct hugering_arena *a, struct hr_page *pg, size_t off, size_t len,
		      struct hr_slot *s)
{
	pg->live++;
	pg->live_bytes += len;
	a->st.rings_live++;
	a->st.rings_created++;
	s->arena = a;
	s->page = pg;
	s->addr = pg->addr + off;
	s->len = len;
	s->page_addr = pg->addr;
	s->page_size = a->ps;
}

static void retire(struct hugering_arena *a, struct hr_page *pg);
static void unlink_page(struct hugering_arena *a, struct hr_page *pg);

static int shared_slot(struct hugering_arena *a, size_t len, struct hr_slot *s)
{
	struct hr_page *pg, *idle = NULL;
	size_t off = 0;
	int ret;

	pthread_mutex_lock(&a->lock);
	for (pg = a->pages; pg; pg = pg->next) {
		if (carve(pg, a->ps, len, &off, &s->reused)) {
			take_slot(a, pg, off, len, s);
			pthread_mutex_unlock(&a->lock);
			return 0;
		}
		if (!pg->live && pg->dead && !idle)
			idle = pg;
	}
	/* A page holding only dead rings and too little room: make it fresh. */
	if (idle) {
		unlink_page(a, idle);
		a->retiring++;
	}
	pthread_mutex_unlock(&a->lock);
	if (idle)
		retire(a, idle);

	ret = add_page(a, &pg);
	if (ret)
		return ret;
	pthread_mutex_lock(&a->lock);
	a->pending_pages--;
	pg->next = a->pages;
	a->pages = pg;
	a->npages++;
	carve(pg, a->ps, len, &off, &s->reused);
	take_slot(a, pg, off, len, s);
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Rings with a region of their own                                    */
/* ------------------------------------------------------------------ */

/* A ring's memory is the whole of region @r. */
static void slot_in_region(struct hr_slot *s, struct hugering_region *r)
{
	struct hugering_region_info ri;

	hr_region_info(r, &ri);
	s->region = r;
	s->addr = ri.addr;
	s->len = ri.size;
	s->page_addr = ri.addr;
	s->page_size = ri.page_size;
}

struct region_try {
	const struct hugering_region_opts *ro;
	struct hugering_region *r;
};

static int try_region(void *arg)
{
	struct region_try *t = arg;

	/* quiet: retried every ms while the pool refills; the caller explains */
	return hr_region_alloc(t->ro, &t->r);
}

int hr_own_region(const struct hugering_region_opts *ro, int wait_ms, uint64_t *waits,
		  struct hr_slot *s)
{
	struct region_try t = { .ro = ro };
	int ret = with_pool_wait(wait_ms, waits, try_region, &t);

	if (ret)
		return ret;
	memset(s, 0, sizeof(*s));
	slot_in_region(s, t.r);
	return 0;
}

static void count_own(struct hugering_arena *a, struct hr_slot *s, size_t held)
{
	s->arena = a;
	s->held = held;
	a->own_regions++;
	a->own_bytes += s->len;
	a->st.rings_live++;
	a->st.rings_created++;
}

/* Under the lock: a spare region of the same size, ready for a ring. */
static bool take_spare(struct hugering_arena *a, size_t held, bool contig, struct hr_slot *s)
{
	for (unsigned i = 0; i < a->nspares; i++) {
		struct spare sp = a->spares[i];

		if (sp.held != held || sp.contig != contig)
			continue;
		a->spares[i] = a->spares[--a->nspares];
		slot_in_region(s, sp.region);
		s->contig = sp.contig;
		s->reused = true;
		count_own(a, s, held);
		return true;
	}
	return false;
}

static int own_slot(struct hugering_arena *a, size_t len, bool contig, struct hr_slot *s)
{
	struct hugering_region_opts ro = {
		.size = len,
		.numa_node = a->node,
		/* automatic size may prove contiguity with one larger page */
		.page_size = contig ? 0 : a->ps,
		.flags = contig ? HUGERING_REGION_CONTIG : 0,
	};
	struct region_try t = { .ro = &ro };
	size_t held = HR_ALIGN_UP(len, a->ps);
	int ret;

	if (a->flags & HUGERING_ARENA_DONTFORK)
		ro.flags |= HUGERING_REGION_DONTFORK;
	pthread_mutex_lock(&a->lock);
	if (take_spare(a, held, contig, s)) {
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	if (!room_for(a, held)) {
		pthread_mutex_unlock(&a->lock);
		return -ENOSPC;
	}
	a->own_held += held;	/* claimed before the syscalls, against races */
	pthread_mutex_unlock(&a->lock);

	ret = spares_then_wait(a, try_region, &t);
	if (!ret)
		slot_in_region(s, t.r);
	s->contig = contig;
	pthread_mutex_lock(&a->lock);
	if (ret)
		a->own_held -= held;
	else
		count_own(a, s, held);
	pthread_mutex_unlock(&a->lock);
	return ret;
}

/* ------------------------------------------------------------------ */
/* The interface the ring layers use                                  */
/* ------------------------------------------------------------------ */

int hr_arena_alloc(struct hugering_arena *a, size_t len, bool contig, struct hr_slot *s)
{
	if (a->owner != getpid())
		return -ECHILD;
	memset(s, 0, sizeof(*s));
	if (len > a->ps)
		return own_slot(a, len, contig, s);
	return shared_slot(a, len, s);
}

/* Under the lock: the slot goes back clean, or into quarantine. */
static bool put_slot(struct hugering_arena *a, struct hr_page *pg, const struct hr_slot *s,
		     bool clean)
{
	size_t off = (size_t)(s->addr - pg->addr);

	pg->live--;
	pg->live_bytes -= s->len;
	if (clean) {
		if (pg->nfree == pg->capfree) {
			unsigned cap = pg->capfree ? 2 * pg->capfree : 4;
			struct extent *e = realloc(pg->free, cap * sizeof(*e));

			if (!e)
				clean = false;	/* cannot track it: treat as dirty */
			else {
				pg->free = e;
				pg->capfree = cap;
			}
		}
		if (clean)
			pg->free[pg->nfree++] = (struct extent){ off, s->len };
	}
	if (!clean) {
		pg->dead++;
		pg->dead_bytes += s->len;
	}
	if (!pg->live && !pg->dead && pg->nfree) {
		/*
		 * Every slot came back clean: the used part of the page is one
		 * clean extent (reused memory, zeroed before the next ring).
		 */
		pg->free[0] = (struct extent){ 0, pg->bump };
		pg->nfree = 1;
		return false;
	}
	/*
	 * All its rings gone, some dirty, and no room left for a ring like the
	 * one just freed (rings come and go in the same shapes): retire it.
	 */
	return !pg->live && a->ps - pg->bump < s->len;
}

static void unlink_page(struct hugering_arena *a, struct hr_page *pg)
{
	for (struct hr_page **pp = &a->pages; *pp; pp = &(*pp)->next) {
		if (*pp == pg) {
			*pp = pg->next;
			a->npages--;
			return;
		}
	}
}

/*
 * A dedicated region goes back to the pool, or, when its ring was resized
 * away (nothing in the kernel refers to it), is kept as a spare.
 */
static void free_own(struct hugering_arena *a, struct hr_slot *s, bool clean)
{
	bool keep = false;

	if (!a) {
		hr_region_free(s->region);
		note_release();
		return;
	}
	pthread_mutex_lock(&a->lock);
	a->own_regions--;
	a->own_bytes -= s->len;
	a->st.rings_live--;
	if (clean) {
		a->st.resize_recycled++;
		keep = a->nspares < SPARE_MAX;
	}
	if (keep)
		a->spares[a->nspares++] = (struct spare){ s->region, s->held, s->contig };
	else
		a->own_held -= s->held;
	pthread_mutex_unlock(&a->lock);
	if (!keep) {
		hr_region_free(s->region);
		note_release();
	}
}

void hr_arena_free(struct hr_slot *s, bool clean)
{
	struct hugering_arena *a = s->arena;
	struct hr_page *pg = s->page;

	if (a && a->owner != getpid())
		return;	/* inherited from the parent: its memory, not ours to recycle */
	if (!pg) {
		free_own(a, s, clean);
		return;
	}
	pthread_mutex_lock(&a->lock);
	a->st.rings_live--;
	if (clean)
		a->st.resize_recycled++;
	if (!put_slot(a, pg, s, clean)) {
		pthread_mutex_unlock(&a->lock);
		return;
	}
	unlink_page(a, pg);
	a->retiring++;
	pthread_mutex_unlock(&a->lock);
	/* Posted while retiring keeps destroy away: the arena is still there. */
	want_ready_page(a);
	retire(a, pg);
}

/*
 * @pg is off the list (and counted in a->retiring, which keeps destroy
 * away): unmap and punch it outside the lock.  Its offset is reused only if
 * the punch worked: otherwise the old frame, which dying rings may still
 * write, would come back.
 */
static void retire(struct hugering_arena *a, struct hr_page *pg)
{
	off_t off = pg->off;
	bool holed = drop_page(a, pg);

	pthread_mutex_lock(&a->lock);
	a->st.pages_retired++;
	if (holed)
		give_offset(a, off);
	a->retiring--;
	pthread_mutex_unlock(&a->lock);
	hr_log(HUGERING_LOG_INFO, "arena: page at offset %lld retired (%s)", (long long)off,
	       holed ? "back to the pool" : "punch failed: kept until the arena goes");
}

/*
 * Unlink every shared page without a live ring (it may hold clean slots or
 * dead rings' memory, which retiring keeps safe), then spares; retire the
 * pages outside the lock.
 */
static int arena_trim(struct hugering_arena *a)
{
	struct hr_page *idle = NULL, *pg, *next;
	unsigned spare_pages = 0, n = 0;

	if (!a)
		return -EINVAL;
	if (a->owner != getpid())
		return -ECHILD;
	/* A refill under way would put a page back right after the trim. */
	hr_worker_cancel(&a->prepare);
	pthread_mutex_lock(&a->lock);
	for (pg = a->pages; pg; pg = next) {
		next = pg->next;
		if (pg->live)
			continue;
		unlink_page(a, pg);
		a->retiring++;
		pg->next = idle;
		idle = pg;
		n++;
	}
	pthread_mutex_unlock(&a->lock);
	/* Spares were resized away, ready pages never held a ring: nothing pins them. */
	spare_pages = (unsigned)(drop_spares(a) / a->ps);
	for (pg = idle; pg; pg = next) {
		next = pg->next;
		retire(a, pg);
	}
	hr_log(HUGERING_LOG_INFO, "arena: trimmed %u shared pages and %u pages of spare regions "
	       "and ready pages",
	       n, spare_pages);
	return (int)(n + spare_pages);
}

int hr_arena_wait_ms(const struct hugering_arena *a)
{
	return a ? a->wait_ms : DEFAULT_WAIT_MS;
}

bool hr_arena_may_resize(const struct hugering_arena *a)
{
	return a && !(a->flags & HUGERING_ARENA_NO_RESIZE);
}

bool hr_arena_zero_recycled(const struct hugering_arena *a)
{
	return a && (a->flags & HUGERING_ARENA_ZERO_RECYCLED);
}

size_t hr_arena_page_size(const struct hugering_arena *a)
{
	return a->ps;
}

int hr_arena_node(const struct hugering_arena *a)
{
	return a->node;
}

/* ------------------------------------------------------------------ */
/* The default arena                                                   */
/* ------------------------------------------------------------------ */

static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hugering_arena *default_arena;

/* fork() handlers, called by registry.c's in its fixed order. */
void hr_arena_fork_prepare(void)
{
	pthread_mutex_lock(&default_lock);
	hr_worker_fork_prepare();
}

void hr_arena_fork_parent(void)
{
	hr_worker_fork_parent();
	pthread_mutex_unlock(&default_lock);
}

/*
 * The child shares the parent's pages (MAP_SHARED): allocating from them
 * would hand out slots the parent hands out too.  It gets its own arena.
 */
void hr_arena_fork_child(void)
{
	hr_worker_fork_child();
	default_arena = NULL;
	pthread_mutex_unlock(&default_lock);
}

struct hugering_arena *hr_default_arena(void)
{
	struct hugering_arena_opts o = { 0 };
	struct hugering_arena *a, *mine = NULL;

	pthread_mutex_lock(&default_lock);
	a = default_arena;
	pthread_mutex_unlock(&default_lock);
	if (a)
		return a;
	/* Created outside the lock; a racing thread's arena may win. */
	if (arena_create(&o, &mine))
		return NULL;
	pthread_mutex_lock(&default_lock);
	if (!default_arena)
		default_arena = mine, mine = NULL;
	a = default_arena;
	pthread_mutex_unlock(&default_lock);
	if (mine)
		arena_destroy(mine);
	return a;
}

static bool is_default_arena(const struct hugering_arena *a)
{
	bool is;

	pthread_mutex_lock(&default_lock);
	is = a == default_arena;
	pthread_mutex_unlock(&default_lock);
	return is;
}

int hugering_arena_create(const struct hugering_arena_opts *o, struct hugering_arena **out)
{
	return HR_PUBLIC(arena_create(o, out));
}

int hugering_arena_destroy(struct hugering_arena *a)
{
	return HR_PUBLIC(arena_destroy(a));
}

int hugering_arena_stats(struct hugering_arena *a, struct hugering_arena_stats *out)
{
	return HR_PUBLIC(arena_stats(a, out));
}

int hugering_arena_trim(struct hugering_arena *a)
{
	return HR_PUBLIC(arena_trim(a));
}

struct hugering_arena *hugering_default_arena(void)
{
	struct hugering_arena *a;

	hr_clear_error();
	a = hr_default_arena();
	if (!a && !hr_last_error()[0])
		hr_set_error("the default arena could not be created (no hugetlb in this kernel, "
			     "or out of memory or file descriptors)");
	return a;
}

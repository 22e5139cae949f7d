/* SPDX-License-Identifier: MIT */
/*
 * An empty pool: why it gave no ring memory, and remembered for a while so
 * the next rings fall back at once instead of trying and explaining again.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
char *hr_empty_pool_known(const struct hugering_init_opts *o, size_t bytes)
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

void hr_empty_pool_note(const struct hugering_init_opts *o, size_t bytes, const char *reason)
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
char *hr_pool_reason(const struct hugering_layout *lay, const struct hugering_init_opts *o)
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

/* SPDX-License-Identifier: MIT */
/*
 * The ring registry: what hugering knows of each ring it made (its memory,
 * its reasons), keyed by the SQE address (stable across copies of struct
 * io_uring), so hugering_queue_exit() and hugering_ring_info() need nothing
 * but the ring.  Fork handling lives here too, in one place and one order,
 * because the registry's lock sits between the arena's and the buffer
 * rings' (and this file is linked whenever rings are).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define REGISTRY_BUCKETS 256

/* A record whose reasons are "" until said (the public fields are never NULL). */
struct hr_ring_rec *hr_ring_rec_new(void)
{
	struct hr_ring_rec *rec = calloc(1, sizeof(*rec));

	if (!rec) {
		hr_set_error("out of memory for the ring record");
		return NULL;
	}
	rec->info.fallback_reason = "";
	rec->info.iopoll_reason = "";
	rec->pool.info_fd = -1;
	return rec;
}

/* The reasons live as long as the ring: freed with its record. */
void hr_ring_rec_free(struct hr_ring_rec *rec)
{
	if (!rec)
		return;
	hr_reason_free(rec->info.fallback_reason);
	hr_reason_free(rec->info.iopoll_reason);
	if (rec->pool.info_fd >= 0)
		close(rec->pool.info_fd);
	free(rec);
}

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hr_ring_rec *registry[REGISTRY_BUCKETS];

#define MAX_HOOKS 4
static const struct hr_ring_hooks *hooks[MAX_HOOKS];
static unsigned nhooks;
/* How many hooks prepare ran, for parent and child (one may be added meanwhile). */
static __thread unsigned fork_nhooks;

/* From constructors (load time): a slot is filled before the count shows it. */
void hr_ring_hooks_add(const struct hr_ring_hooks *h)
{
	static pthread_mutex_t add_lock = PTHREAD_MUTEX_INITIALIZER;
	unsigned n;

	pthread_mutex_lock(&add_lock);
	n = __atomic_load_n(&nhooks, __ATOMIC_ACQUIRE);
	if (n < MAX_HOOKS) {
		hooks[n] = h;
		__atomic_store_n(&nhooks, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&add_lock);
}

void hr_ring_hooks_exit(const struct io_uring *ring)
{
	unsigned n = __atomic_load_n(&nhooks, __ATOMIC_ACQUIRE);

	for (unsigned i = 0; i < n; i++)
		hooks[i]->exit(ring);
}

int hr_ring_hooks_reset(const struct io_uring *ring)
{
	unsigned n = __atomic_load_n(&nhooks, __ATOMIC_ACQUIRE);
	int ret;

	for (unsigned i = 0; i < n; i++)
		if (hooks[i]->reset && (ret = hooks[i]->reset(ring)))
			return ret;
	return 0;
}

/*
 * fork(), in one place and one order: the default arena's lock, then the
 * registry's, then the buffer rings' and registered buffers' (bufring.c,
 * regbuf.c, through the hooks), so that none is inherited held.  The child
 * gets its own default arena (arena.c says why); the records of inherited
 * rings stay the parent's (their owners refuse to unregister for it).
 */
static void atfork_prepare(void)
{
	hr_arena_fork_prepare();
	pthread_mutex_lock(&registry_lock);
	fork_nhooks = __atomic_load_n(&nhooks, __ATOMIC_ACQUIRE);
	for (unsigned i = 0; i < fork_nhooks; i++)
		hooks[i]->fork_prepare();
}

/*
 * The child holds every live ring's fd now.  Into a ring without
 * SINGLE_ISSUER it may submit after the parent's exit, and its completions
 * would reach the ring's next owner: such a ring is no longer pooled.  (A
 * SINGLE_ISSUER ring refuses the child's submissions.)
 */
static void unpool_shared_rings(void)
{
	for (size_t b = 0; b < REGISTRY_BUCKETS; b++)
		for (struct hr_ring_rec *r = registry[b]; r; r = r->next)
			if (!(r->pool.want.flags & IORING_SETUP_SINGLE_ISSUER))
				r->pool.candidate = false;
}

static void atfork_parent(void)
{
	for (unsigned i = fork_nhooks; i-- > 0;)
		hooks[i]->fork_parent();
	unpool_shared_rings();
	pthread_mutex_unlock(&registry_lock);
	hr_arena_fork_parent();
}

static void atfork_child(void)
{
	for (unsigned i = fork_nhooks; i-- > 0;)
		hooks[i]->fork_child();
	pthread_mutex_unlock(&registry_lock);
	hr_arena_fork_child();
}

/* At load time, so no fork can come before it. */
__attribute__((constructor)) static void register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static struct hr_ring_rec **bucket(const void *key)
{
	uintptr_t k = (uintptr_t)key >> 12;

	return &registry[(k ^ (k >> 8)) % REGISTRY_BUCKETS];
}

void hr_registry_add(struct hr_ring_rec *rec)
{
	pthread_mutex_lock(&registry_lock);
	struct hr_ring_rec **b = bucket(rec->key);

	rec->next = *b;
	*b = rec;
	pthread_mutex_unlock(&registry_lock);
}

struct hr_ring_rec *hr_registry_take(const void *key)
{
	struct hr_ring_rec **pp, *rec = NULL;

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

/* Under registry_lock: the record of @key, or NULL. */
static struct hr_ring_rec *find_locked(const void *key)
{
	for (struct hr_ring_rec *r = *bucket(key); r; r = r->next)
		if (r->key == key)
			return r;
	return NULL;
}

void hr_registry_note_iopoll(const void *key, const char *why)
{
	struct hr_ring_rec *r;

	pthread_mutex_lock(&registry_lock);
	if ((r = find_locked(key))) {
		r->info.iopoll_degraded = 1;
		hr_reason_free(r->info.iopoll_reason);
		r->info.iopoll_reason = hr_reason_dup(why);
	}
	pthread_mutex_unlock(&registry_lock);
}

void hr_registry_note_fallback(const void *key, int err, const char *why)
{
	struct hr_ring_rec *r;

	pthread_mutex_lock(&registry_lock);
	if ((r = find_locked(key))) {
		r->info.fallback_errno = err;
		hr_reason_free(r->info.fallback_reason);
		r->info.fallback_reason = hr_reason_dup(why);
	}
	pthread_mutex_unlock(&registry_lock);
}

struct hugering_arena *hr_ring_arena(const struct io_uring *ring)
{
	struct hugering_arena *a = NULL;
	struct hr_ring_rec *r;

	pthread_mutex_lock(&registry_lock);
	if ((r = find_locked(ring->sq.sqes)) && r->user_mem)
		a = r->slot.arena;
	pthread_mutex_unlock(&registry_lock);
	return a;
}

int hr_registry_info(const void *key, struct hugering_ring_info *out)
{
	struct hr_ring_rec *r;
	int ret = -ENOENT;

	pthread_mutex_lock(&registry_lock);
	if ((r = find_locked(key))) {
		*out = r->info;
		ret = 0;
	}
	pthread_mutex_unlock(&registry_lock);
	return ret;
}

bool hr_registry_note_pool(const void *key, const struct hr_pool_rec *pr)
{
	struct hr_ring_rec *r;

	pthread_mutex_lock(&registry_lock);
	if ((r = find_locked(key)))
		r->pool = *pr;
	pthread_mutex_unlock(&registry_lock);
	return r != NULL;
}

/* hugering's own reference to a ring in user memory, or -1. */
int hr_registry_ref_fd(const void *key)
{
	struct hr_ring_rec *r;
	int fd = -1;

	pthread_mutex_lock(&registry_lock);
	if ((r = find_locked(key)) && r->user_mem && !r->info.iopoll_degraded)
		fd = r->ref_fd;
	pthread_mutex_unlock(&registry_lock);
	return fd;
}

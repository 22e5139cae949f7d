/* SPDX-License-Identifier: MIT */
/*
 * Registered (fixed) buffers: the memlock charge predicted before the
 * kernel is asked, and buffers shared between rings by cloning
 * (kernel-facts.md §11.2).
 *
 * The charge (io_uring/rsrc.c, io_buffer_account_pin): every compound page
 * a registration pins is charged at its full size once per ring
 * (headpage_already_acct looks through the whole table), every base page
 * once per buffer covering it; to the user's RLIMIT_MEMLOCK unless the
 * ring's creator had CAP_IPC_LOCK, to the mm's pinned_vm (VmPin) always.
 * We predict it from the layout (the page size of each VMA) and refuse
 * with the figures where the kernel would answer a bare -ENOMEM.
 *
 * What hugering_register_buffers() registered is recorded per ring (its
 * SQE address and fd, as bufring.c keys buffer rings), so a clone the
 * kernel refuses can register the same buffers again.  The record goes
 * with the registration (unregister) or with the ring (hugering_queue_exit,
 * through hr_ring_hooks, which also keep our lock out of fork()).  A child
 * inherits the records with the rings, which it shares with the parent: it
 * may clone from them and drop them, but not unregister the parent's
 * buffers (that would unregister them for the parent too): -ECHILD.
 *
 * Recycling: the kernel pins every page it registers (FOLL_LONGTERM) and
 * lets go only when the last reference to the buffer goes: the table's
 * (unregister, update) and every request's in flight, signalled by the tag
 * CQE when the buffer has a tag.  Nothing here hands buffer memory out
 * again: a pool is a region of its own, unmapped and its file closed when
 * destroyed; the pinned pages stay out of the hugepage pool (and out of
 * any new pool) until the kernel unpins them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"

#define MAX_ENTRIES 16384u	/* IORING_MAX_REG_BUFFERS */
#define MAX_BUF (1UL << 30)	/* io_validate_user_buf_range */

/* IORING_REGISTER_CLONE_BUFFERS' argument (6.12; src_off/dst_off/nr since 6.13). */
struct hr_clone_arg {
	uint32_t src_fd;
	uint32_t flags;
	uint32_t src_off;
	uint32_t dst_off;
	uint32_t nr;
	uint32_t pad[3];
};

struct reg_rec {
	struct reg_rec *next;
	const void *key;
	int ring_fd;
	pid_t pid;		/* the process that registered them */
	unsigned nr;
	struct iovec *iov;
	struct hugering_reg_charge charge;
	const char *reason;	/* why a clone fell back: charge.fallback_reason's owner */
};

static pthread_mutex_t recs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reg_rec *recs;

/* ------------------------------------------------------------------ */
/* Prediction                                                          */
/* ------------------------------------------------------------------ */

struct head {
	uintptr_t addr;
	size_t size;
};

struct walk {
	struct head *heads;
	size_t nheads, cap;
	uint64_t base_pages;
	uintptr_t lo, hi;	/* the last VMA looked up: [lo, hi) */
	size_t ps;
	int backing;
};

static int push_head(struct walk *w, uintptr_t addr, size_t size)
{
	if (w->nheads && w->heads[w->nheads - 1].addr == addr)
		return 0;	/* the same page as the buffer before */
	if (w->nheads == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 256;
		struct head *h = realloc(w->heads, cap * sizeof(*h));

		if (!h)
			return -ENOMEM;
		w->heads = h;
		w->cap = cap;
	}
	w->heads[w->nheads++] = (struct head){ addr, size };
	return 0;
}

/* The page size at @a, from the VMA looked up last when it holds @a. */
static size_t page_size_at(struct walk *w, uintptr_t a, size_t known, uintptr_t *seg_hi)
{
	uintptr_t end = 0;

	if (known) {
		*seg_hi = UINTPTR_MAX;
		return known;
	}
	if (a >= w->lo && a < w->hi) {
		*seg_hi = w->hi;
		return w->ps;
	}
	w->ps = hr_vma_page_size(a, &w->backing, &end);
	if (!w->ps)
		return 0;
	w->lo = a;
	w->hi = end > a ? end : HR_ALIGN_UP(a + 1, w->ps);
	*seg_hi = w->hi;
	return w->ps;
}

/* One buffer's pages into @w; @known: the page size if the caller knows it. */
static int walk_buffer(struct walk *w, uintptr_t a, size_t len, size_t known,
		       struct hugering_reg_charge *out)
{
	uintptr_t end = a + len, seg_hi;

	while (a < end) {
		size_t ps = page_size_at(w, a, known, &seg_hi);
		uintptr_t seg_end = seg_hi < end ? seg_hi : end;

		if (!ps) {
			hr_set_error("buffer memory at %p is not mapped", (void *)a);
			return -EFAULT;
		}
		if (ps > out->page_size)
			out->page_size = ps;
		if (ps > HR_BASE_PAGE) {
			for (uintptr_t h = a & ~(ps - 1); h < seg_end; h += ps)
				if (push_head(w, h, ps))
					return -ENOMEM;
		} else {
			if (!known && w->backing != HUGERING_BACKING_BASE)
				out->exact = 0;	/* THP: compound, charged in full */
			w->base_pages += (HR_ALIGN_UP(seg_end, HR_BASE_PAGE) -
					  (a & ~(HR_BASE_PAGE - 1))) / HR_BASE_PAGE;
		}
		a = seg_end;
	}
	return 0;
}

static int cmp_head(const void *x, const void *y)
{
	const struct head *a = x, *b = y;

	return a->addr < b->addr ? -1 : a->addr > b->addr;
}

/* VmPin of this process in bytes, or UINT64_MAX. */
static uint64_t vm_pin(void)
{
	char buf[4096], *s;
	unsigned long long kb;

	if (hr_read_text("/proc/self/status", buf, sizeof(buf)) < 0 || !(s = strstr(buf, "VmPin:")) ||
	    sscanf(s, "VmPin: %llu kB", &kb) != 1)
		return UINT64_MAX;
	return (uint64_t)kb << 10;
}

static void limits(struct hugering_reg_charge *out)
{
	struct rlimit rl;

	out->cap_ipc_lock = hr_cap_effective("", HR_CAP_IPC_LOCK);
	out->limit = UINT64_MAX;
	if (!getrlimit(RLIMIT_MEMLOCK, &rl) && rl.rlim_cur != RLIM_INFINITY)
		out->limit = rl.rlim_cur;
	out->pinned = vm_pin();
	out->fits = out->cap_ipc_lock || out->limit == UINT64_MAX ||
		    (out->charge_bytes <= out->limit &&
		     (out->pinned == UINT64_MAX || out->pinned <= out->limit - out->charge_bytes));
}

static int check_iovecs(const struct iovec *iov, unsigned nr)
{
	if (!iov || !nr || nr > MAX_ENTRIES) {
		hr_set_error("%u buffers: a table holds 1 to %u", nr, MAX_ENTRIES);
		return -EINVAL;
	}
	for (unsigned i = 0; i < nr; i++) {
		uintptr_t a = (uintptr_t)iov[i].iov_base;

		if (!a || !iov[i].iov_len || iov[i].iov_len > MAX_BUF ||
		    a + iov[i].iov_len < a) {
			hr_set_error("buffer %u (%p, %zu bytes): a fixed buffer is 1 byte to "
				     "1 GiB of mapped memory", i, iov[i].iov_base, iov[i].iov_len);
			return -EINVAL;
		}
	}
	return 0;
}

/* The charge of registering @iov in one table; @known: their page size, or 0. */
static int predict(const struct iovec *iov, unsigned nr, size_t known,
		   struct hugering_reg_charge *out)
{
	struct walk w = { 0 };
	int ret = check_iovecs(iov, nr);

	memset(out, 0, sizeof(*out));
	out->fallback_reason = "";
	out->exact = 1;
	out->entries = nr;
	for (unsigned i = 0; !ret && i < nr; i++) {
		out->buffer_bytes += iov[i].iov_len;
		ret = walk_buffer(&w, (uintptr_t)iov[i].iov_base, iov[i].iov_len, known, out);
	}
	if (ret) {
		free(w.heads);
		return ret;
	}
	if (w.nheads)
		qsort(w.heads, w.nheads, sizeof(*w.heads), cmp_head);
	out->pages = (unsigned)w.base_pages;
	out->charge_bytes = w.base_pages * HR_BASE_PAGE;
	for (size_t i = 0; i < w.nheads; i++) {
		if (i && w.heads[i].addr == w.heads[i - 1].addr)
			continue;
		out->pages++;
		out->charge_bytes += w.heads[i].size;
	}
	free(w.heads);
	limits(out);
	return 0;
}

/* @uiov with every iovec over 1 GiB split into 1 GiB pieces (malloc'd), in *@iov. */
static int split(const struct iovec *uiov, unsigned nr, struct iovec **iov, unsigned *n)
{
	size_t total = 0, k = 0;

	if (!uiov || !nr || nr > MAX_ENTRIES)
		return check_iovecs(uiov, nr);
	for (unsigned i = 0; i < nr; i++)
		total += uiov[i].iov_len ? (uiov[i].iov_len + MAX_BUF - 1) / MAX_BUF : 1;
	if (total > MAX_ENTRIES) {
		hr_set_error("%zu entries after splitting at 1 GiB: a table holds %u", total,
			     MAX_ENTRIES);
		return -EINVAL;
	}
	*iov = calloc(total, sizeof(**iov));
	if (!*iov)
		return -ENOMEM;
	for (unsigned i = 0; i < nr; i++) {
		size_t off = 0;

		do {
			size_t len = uiov[i].iov_len - off;

			(*iov)[k].iov_base = (char *)uiov[i].iov_base + off;
			(*iov)[k++].iov_len = len < MAX_BUF ? len : MAX_BUF;
			off += MAX_BUF;
		} while (off < uiov[i].iov_len);
	}
	*n = (unsigned)total;
	return 0;
}

/*
 * The entries to register: @pool's buffers or spans, or the caller's
 * iovecs (split with SPANS); malloc'd into *@iov unless they are @uiov
 * as given.  *@known: the pool's page size.
 */
static int source(const struct hugering_bufpool *pool, const struct iovec *uiov, unsigned nr,
		  unsigned flags, struct iovec **iov, unsigned *n, size_t *known)
{
	struct hugering_bufpool_info pi;
	bool spans = flags & HUGERING_REG_SPANS;
	int ret;

	*iov = NULL;
	*known = 0;
	if (!pool == !uiov || (flags & ~HUGERING_REG_SPANS)) {
		hr_set_error("pass a buffer pool or iovecs, exactly one of them, and only "
			     "HUGERING_REG_SPANS in flags");
		return -EINVAL;
	}
	if (!pool) {
		*n = nr;
		return spans ? split(uiov, nr, iov, n) : 0;
	}
	hr_bufpool_info(pool, &pi);
	ret = spans ? hr_bufpool_spans(pool, NULL, 0) : (int)pi.count;
	if ((unsigned)ret > MAX_ENTRIES) {
		hr_set_error("a pool of %u buffers does not fit a table of %u entries: "
			     "register it with HUGERING_REG_SPANS", pi.count, MAX_ENTRIES);
		return -EINVAL;
	}
	*n = (unsigned)ret;
	*iov = calloc(*n, sizeof(**iov));
	if (!*iov)
		return -ENOMEM;
	ret = spans ? hr_bufpool_spans(pool, *iov, *n) : hr_bufpool_iovecs(pool, *iov, *n);
	if (ret < 0) {
		free(*iov);
		*iov = NULL;
		return ret;
	}
	*known = pi.page_size;
	return 0;
}

static int register_charge(const struct hugering_bufpool *pool, const struct iovec *uiov,
			   unsigned nr, unsigned flags, struct hugering_reg_charge *out)
{
	struct iovec *iov;
	size_t known;
	int ret;

	if (!out)
		return -EINVAL;
	ret = source(pool, uiov, nr, flags, &iov, &nr, &known);
	if (ret)
		return ret;
	ret = predict(iov ? iov : uiov, nr, known, out);
	free(iov);
	return ret;
}

int hugering_register_charge(const struct hugering_bufpool *pool, const struct iovec *iov,
			     unsigned nr, unsigned flags, struct hugering_reg_charge *out)
{
	return HR_PUBLIC(register_charge(pool, iov, nr, flags, out));
}

/* ------------------------------------------------------------------ */
/* Registration                                                        */
/* ------------------------------------------------------------------ */

static bool rec_is(const struct reg_rec *r, const struct io_uring *ring)
{
	return r->key == ring->sq.sqes && r->ring_fd == ring->ring_fd;
}

static struct reg_rec *take_locked(const struct io_uring *ring)
{
	for (struct reg_rec **pp = &recs; *pp; pp = &(*pp)->next) {
		struct reg_rec *r = *pp;

		if (rec_is(r, ring)) {
			*pp = r->next;
			return r;
		}
	}
	return NULL;
}

static void rec_free(struct reg_rec *r)
{
	if (r) {
		hr_reason_free(r->reason);
		free(r->iov);
		free(r);
	}
}

/* hr_ring_hooks.exit: @ring is about to be closed; its table goes with it. */
static void forget(const struct io_uring *ring)
{
	struct reg_rec *r;

	pthread_mutex_lock(&recs_lock);
	r = take_locked(ring);
	pthread_mutex_unlock(&recs_lock);
	rec_free(r);
}

/* fork(): the child inherits the records and an unheld lock. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&recs_lock);
}

static void fork_release(void)
{
	pthread_mutex_unlock(&recs_lock);
}

/* hr_ring_hooks.reset: @ring is pooled, its buffers unregistered by the pool. */
static int ring_reset(const struct io_uring *ring)
{
	forget(ring);
	return 0;
}

static const struct hr_ring_hooks hooks = {
	.exit = forget,
	.reset = ring_reset,
	.fork_prepare = fork_prepare,
	.fork_parent = fork_release,
	.fork_child = fork_release,
};

__attribute__((constructor)) static void add_hooks(void)
{
	hr_ring_hooks_add(&hooks);
}

/* Record @iov as @ring's table; a stale record of the same key goes. */
static void remember(const struct io_uring *ring, const struct iovec *iov, unsigned nr,
		     const struct hugering_reg_charge *c)
{
	struct reg_rec *r = calloc(1, sizeof(*r)), *stale;

	if (r)
		r->iov = malloc(nr * sizeof(*iov));
	if (!r || !r->iov) {
		free(r);	/* only a clone's fallback needs it */
		return;
	}
	memcpy(r->iov, iov, nr * sizeof(*iov));
	r->nr = nr;
	r->key = ring->sq.sqes;
	r->ring_fd = ring->ring_fd;
	r->pid = getpid();
	r->charge = *c;
	pthread_mutex_lock(&recs_lock);
	stale = take_locked(ring);
	r->next = recs;
	recs = r;
	pthread_mutex_unlock(&recs_lock);
	rec_free(stale);
}

static void refuse(const struct hugering_reg_charge *c)
{
	char pinned[64] = "an unknown amount";

	if (c->pinned != UINT64_MAX)
		snprintf(pinned, sizeof(pinned), "%llu bytes", (unsigned long long)c->pinned);
	hr_set_error("registering %u buffers (%llu bytes) would charge %llu bytes to "
		     "RLIMIT_MEMLOCK (%u pages up to %zu kB: the kernel charges every hugepage "
		     "a buffer touches in full, once per ring), over the limit of %llu bytes "
		     "with %s already pinned (VmPin): raise the limit (ulimit -l, "
		     "LimitMEMLOCK=), grant CAP_IPC_LOCK, or use smaller pages",
		     c->entries, (unsigned long long)c->buffer_bytes,
		     (unsigned long long)c->charge_bytes, c->pages, c->page_size >> 10,
		     (unsigned long long)c->limit, pinned);
}

static int register_iovecs(struct io_uring *ring, const struct iovec *iov, unsigned nr,
			   size_t known, struct hugering_reg_charge *c)
{
	int ret = predict(iov, nr, known, c);

	if (ret)
		return ret;
	if (!c->fits) {
		refuse(c);
		return -ENOMEM;
	}
	ret = io_uring_register_buffers(ring, iov, nr);
	if (ret == -ENOMEM && !c->cap_ipc_lock && c->limit != UINT64_MAX)
		hr_set_error("IORING_REGISTER_BUFFERS: out of RLIMIT_MEMLOCK (%llu bytes): "
			     "%llu bytes predicted, %llu pinned by this process; other "
			     "processes of this user hold the rest", (unsigned long long)c->limit,
			     (unsigned long long)c->charge_bytes,
			     (unsigned long long)c->pinned);
	else if (ret)
		hr_set_error("IORING_REGISTER_BUFFERS of %u buffers: %s", nr, strerror(-ret));
	if (!ret)
		remember(ring, iov, nr, c);
	return ret;
}

static int register_buffers(struct io_uring *ring, const struct hugering_bufpool *pool,
			    const struct iovec *uiov, unsigned nr, unsigned flags,
			    struct hugering_reg_charge *out)
{
	struct hugering_reg_charge c;
	struct iovec *iov;
	size_t known;
	int ret;

	if (!ring) {
		hr_set_error("NULL ring");
		return -EINVAL;
	}
	ret = source(pool, uiov, nr, flags, &iov, &nr, &known);
	if (ret)
		return ret;
	ret = register_iovecs(ring, iov ? iov : uiov, nr, known, &c);
	free(iov);
	if (out && (!ret || ret == -ENOMEM))
		*out = c;
	return ret;
}

int hugering_register_buffers(struct io_uring *ring, const struct hugering_bufpool *pool,
			      const struct iovec *iov, unsigned nr, unsigned flags,
			      struct hugering_reg_charge *out)
{
	return HR_PUBLIC(register_buffers(ring, pool, iov, nr, flags, out));
}

/* The process that registered @ring's buffers through us, or 0. */
static pid_t owner_of(const struct io_uring *ring)
{
	pid_t pid = 0;

	pthread_mutex_lock(&recs_lock);
	for (struct reg_rec *r = recs; r; r = r->next) {
		if (rec_is(r, ring)) {
			pid = r->pid;
			break;
		}
	}
	pthread_mutex_unlock(&recs_lock);
	return pid;
}

static int unregister_buffers(struct io_uring *ring)
{
	struct reg_rec *r;
	pid_t owner;
	int ret;

	if (!ring)
		return -EINVAL;
	owner = owner_of(ring);
	if (owner && owner != getpid()) {
		hr_set_error("the buffers were registered by process %d on a ring this process "
			     "inherited (the parent's ring, shared): unregistering them here would "
			     "unregister them for that process too; hugering_queue_exit() closes "
			     "this process's copy of the ring", (int)owner);
		return -ECHILD;
	}
	ret = io_uring_unregister_buffers(ring);
	if (ret && ret != -EBADF) {
		hr_set_error("IORING_UNREGISTER_BUFFERS: %s", strerror(-ret));
		return ret;
	}
	pthread_mutex_lock(&recs_lock);
	r = take_locked(ring);
	pthread_mutex_unlock(&recs_lock);
	rec_free(r);
	if (ret)
		hr_set_error("IORING_UNREGISTER_BUFFERS: %s", strerror(-ret));
	return ret;
}

int hugering_unregister_buffers(struct io_uring *ring)
{
	return HR_PUBLIC(unregister_buffers(ring));
}

/* ------------------------------------------------------------------ */
/* Clone                                                               */
/* ------------------------------------------------------------------ */

/*
 * @why becomes the reason of @ring's record (its own copy, living as long
 * as the record: until the buffers are unregistered or the ring exits).
 * Returns the copy, or "" (no record, or out of memory).
 */
static const char *note_reason(const struct io_uring *ring, const char *why)
{
	const char *kept = "";

	pthread_mutex_lock(&recs_lock);
	for (struct reg_rec *r = recs; r; r = r->next) {
		if (rec_is(r, ring)) {
			hr_reason_free(r->reason);
			r->reason = hr_reason_dup(why);
			kept = r->reason;
			break;
		}
	}
	pthread_mutex_unlock(&recs_lock);
	return kept;
}

/* Why IORING_REGISTER_CLONE_BUFFERS refused @err, as far as we know. */
static const char *clone_hint(int err)
{
	if (err == -EINVAL)
		return "the kernel lacks it (before Linux 6.12) or refuses it for these two rings "
		       "(they differ in user or memory accounting)";
	return "the kernel does not support it here";
}

/* A copy of @ring's record (iovecs malloc'd), or false. */
static bool record_of(const struct io_uring *ring, struct reg_rec *copy)
{
	bool found = false;

	pthread_mutex_lock(&recs_lock);
	for (struct reg_rec *r = recs; r; r = r->next) {
		if (rec_is(r, ring)) {
			*copy = *r;
			copy->iov = malloc(r->nr * sizeof(*r->iov));
			if (copy->iov) {
				memcpy(copy->iov, r->iov, r->nr * sizeof(*r->iov));
				found = true;
			}
			break;
		}
	}
	pthread_mutex_unlock(&recs_lock);
	return found;
}

static int clone_buffers(struct io_uring *dst, struct io_uring *src,
			 struct hugering_reg_charge *out)
{
	struct hr_clone_arg arg = { 0 };
	struct hugering_reg_charge c = { .fallback_reason = "" };
	struct reg_rec rec;
	bool have;
	int ret;

	if (!dst || !src || dst == src) {
		hr_set_error("clone needs two different rings");
		return -EINVAL;
	}
	have = record_of(src, &rec);
	arg.src_fd = (uint32_t)src->ring_fd;
	ret = hr_sys_io_uring_register(dst->ring_fd, IORING_REGISTER_CLONE_BUFFERS, &arg, 1);
	if (!ret) {
		memset(&c, 0, sizeof(c));
		if (have)
			c = rec.charge;
		c.charge_bytes = 0;	/* shared: the source ring's charge covers it */
		c.pages = 0;
		c.cloned = 1;
		c.fallback_errno = 0;
		c.fallback_reason = "";
		limits(&c);
		if (have)
			remember(dst, rec.iov, rec.nr, &c);
	} else if ((ret == -EINVAL || ret == -EOPNOTSUPP) && have) {
		int err = ret;

		ret = register_iovecs(dst, rec.iov, rec.nr, 0, &c);
		c.cloned = 0;
		c.fallback_errno = -err;
		if (!ret) {
			char *why = hr_strf("IORING_REGISTER_CLONE_BUFFERS: %s (%s); the buffers "
					    "were registered on this ring again, charging %llu "
					    "bytes once more", strerror(-err), clone_hint(err),
					    (unsigned long long)c.charge_bytes);

			c.fallback_reason = note_reason(dst, why ? why : "");
			hr_log(HUGERING_LOG_WARN, "%s", c.fallback_reason);
			free(why);
		}
	} else {
		hr_set_error("IORING_REGISTER_CLONE_BUFFERS: %s%s", strerror(-ret),
			     have || (ret != -EINVAL && ret != -EOPNOTSUPP) ? "" :
			     " (and the source's buffers were not registered by "
			     "hugering_register_buffers: nothing to register again)");
	}
	if (have)
		free(rec.iov);
	if (out && (!ret || ret == -ENOMEM))
		*out = c;
	return ret;
}

int hugering_clone_buffers(struct io_uring *dst, struct io_uring *src,
			   struct hugering_reg_charge *out)
{
	return HR_PUBLIC(clone_buffers(dst, src, out));
}

/* hugering_ring_resize moved @ring's SQEs: its table's record follows the new key. */
void hr_regbuf_moved(const void *old_key, const struct io_uring *ring)
{
	pthread_mutex_lock(&recs_lock);
	for (struct reg_rec *r = recs; r; r = r->next)
		if (r->key == old_key && r->ring_fd == ring->ring_fd)
			r->key = ring->sq.sqes;
	pthread_mutex_unlock(&recs_lock);
}

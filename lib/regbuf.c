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
 * kernel refuses can register the same buffers again.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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
	unsigned nr;
	struct iovec *iov;
	struct hugering_reg_charge charge;
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
		free(r->iov);
		free(r);
	}
}

/* hr_regbuf_forget: @ring is pooled, its buffers unregistered by the pool. */
static void forget(const struct io_uring *ring)
{
	struct reg_rec *r;

	pthread_mutex_lock(&recs_lock);
	r = take_locked(ring);
	pthread_mutex_unlock(&recs_lock);
	rec_free(r);
}

__attribute__((constructor)) static void set_forget(void)
{
	hr_regbuf_forget = forget;
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

static int unregister_buffers(struct io_uring *ring)
{
	struct reg_rec *r;
	int ret;

	if (!ring)
		return -EINVAL;
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
	struct hugering_reg_charge c = { 0 };
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
		limits(&c);
		if (have)
			remember(dst, rec.iov, rec.nr, &c);
	} else if ((ret == -EINVAL || ret == -EOPNOTSUPP) && have) {
		int err = ret;

		ret = register_iovecs(dst, rec.iov, rec.nr, 0, &c);
		if (!ret)
			hr_log(HUGERING_LOG_WARN, "IORING_REGISTER_CLONE_BUFFERS: %s; buffers "
			       "registered again, charging %llu bytes once more", strerror(-err),
			       (unsigned long long)c.charge_bytes);
		c.cloned = 0;
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

/* SPDX-License-Identifier: MIT */
/*
 * Ring factory: io_uring rings whose SQEs and rings live in hugepage memory
 * (IORING_SETUP_NO_MMAP), with a fallback to kernel-mapped rings that is
 * always reported, never silent.  The drop-in entry points: input checked
 * (params.c), policy (policy.c), IOPOLL kept or dropped, then a ring in
 * user memory (usermem.c) or kernel-mapped (kernelring.c), recorded in the
 * registry; and its exit, recycling its memory (resize.c, the arena), or
 * keeping the ring live for reuse (ringpool.c, HUGERING_INIT_POOLED).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

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

int hr_queue_init_opts(unsigned entries, struct io_uring *ring,
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
	ret = hr_check_init_opts(o, p, &norm);
	/* From here on numa_node is the library's: -1 = the arena's. */
	if (o)
		o = &norm;
	if (!ret)
		ret = hr_ring_policy(o, &policy);
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
	ret = hr_check_setup_params(&orig);
	if (ret)
		return ret;
	/*
	 * liburing < 2.6 predates NO_SQARRAY: it fills its SQ index array at
	 * sq_off.array, 0 then, i.e. over the ring header, in every mode.  The
	 * ring keeps its SQ array instead (p->flags comes back without it).
	 */
	if (!hr_liburing_at_least(2, 6))
		orig.flags &= ~IORING_SETUP_NO_SQARRAY;
	if (o && hr_pool_get(entries, ring, p, &orig, policy, o) == 0)
		return 0;
	ret = iopoll_policy(&orig, o, &degraded);
	if (ret)
		return ret;
	if (policy == HUGERING_POLICY_KERNEL)
		ret = hr_kernel_ring(entries, ring, p, &orig, 0, "");
	else
		ret = hr_user_ring(entries, ring, p, &orig, policy, o);
	if (!ret && degraded)
		hr_registry_note_iopoll(ring->sq.sqes, degraded);
	free(degraded);
	if (!ret && o)
		hr_pool_note(ring, entries, &orig, p, policy, o);
	if (ret == -EINVAL)
		hr_explain_sq_cpu(p);
	return ret;
}

int hugering_queue_init_opts(unsigned entries, struct io_uring *ring,
			     struct io_uring_params *p, const struct hugering_init_opts *o)
{
	return HR_PUBLIC(hr_queue_init_opts(entries, ring, p, o));
}

int hugering_queue_init_params(unsigned entries, struct io_uring *ring,
			       struct io_uring_params *p)
{
	return HR_PUBLIC(hr_queue_init_opts(entries, ring, p, NULL));
}

int hugering_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	struct io_uring_params p;

	memset(&p, 0, sizeof(p));
	p.flags = flags;
	return HR_PUBLIC(hr_queue_init_opts(entries, ring, &p, NULL));
}

void hr_queue_exit(struct io_uring *ring)
{
	struct hr_ring_rec *rec;
	if (!ring)
		return;
	rec = hr_registry_take(ring->sq.sqes);
	/* HUGERING_INIT_POOLED: reset and kept (ringpool.c), or closed below. */
	if (rec && rec->pool.candidate && hr_pool_put(ring, rec))
		return;
	/* Buffer rings first: the ring may still write them until it is gone. */
	hr_ring_hooks_exit(ring);
	hr_ring_close(ring, rec);
}

/* Cannot fail: leaves the last error alone (a cleanup after a failure). */
void hugering_queue_exit(struct io_uring *ring)
{
	hr_queue_exit(ring);
}

int hugering_ring_info(const struct io_uring *ring, struct hugering_ring_info *out)
{
	hr_clear_error();
	if (!ring || !out)
		return hr_result(-EINVAL, __func__);
	return hr_result(hr_registry_info(ring->sq.sqes, out), __func__);
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

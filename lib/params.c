/* SPDX-License-Identifier: MIT */
/*
 * What the caller asked for, checked before any memory is taken: the init
 * options, and the io_uring_params every kernel with NO_MMAP refuses.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* The CPU whose node HUGERING_INIT_NODE_LOCAL means: the SQPOLL thread's if pinned. */
static int local_cpu(const struct io_uring_params *p)
{
	unsigned sq_cpu = IORING_SETUP_SQPOLL | IORING_SETUP_SQ_AFF;

	if ((p->flags & sq_cpu) != sq_cpu)
		return -1;
	return p->sq_thread_cpu > INT_MAX ? INT_MAX : (int)p->sq_thread_cpu;
}

int hr_check_init_opts(const struct hugering_init_opts *o, const struct io_uring_params *p,
		       struct hugering_init_opts *norm)
{
	int ret;

	if (!o)
		return 0;
	*norm = *o;
	norm->flags &= ~(HUGERING_INIT_NUMA_NODE | HUGERING_INIT_NODE_LOCAL);
	if (o->flags & ~(HUGERING_INIT_IOPOLL_STRICT | HUGERING_INIT_NUMA_NODE |
			 HUGERING_INIT_NODE_LOCAL | HUGERING_INIT_POOLED) ||
	    (o->n_iopoll_fds && !o->iopoll_fds))
		goto bad;
	for (size_t i = 0; i < sizeof(o->resv) / sizeof(o->resv[0]); i++)
		if (o->resv[i])
			goto bad;
	ret = o->page_size && o->page_size != HR_BASE_PAGE ? hr_page_size_check(o->page_size) : 0;
	if (!ret && (o->flags & HUGERING_INIT_NODE_LOCAL) && local_cpu(p) >= 0 &&
	    hr_cpu_node(local_cpu(p), &norm->numa_node) == -EINVAL) {
		hr_set_error("HUGERING_INIT_NODE_LOCAL: sq_thread_cpu %u is no CPU of this "
			     "machine", p->sq_thread_cpu);
		return -EINVAL;
	}
	if (!ret)
		ret = hr_opts_node_local(o->numa_node, o->flags & HUGERING_INIT_NUMA_NODE,
					 o->flags & HUGERING_INIT_NODE_LOCAL, local_cpu(p),
					 &norm->numa_node);
	if (ret && ret != -EINVAL) {
		hr_set_error("ring options: cannot read the kernel's hugepage sizes or NUMA "
			     "nodes: %s", strerror(-ret));
		return ret;
	}
	if (ret)
		goto bad;
	return 0;
bad:
	hr_set_error("bad hugering_init_opts (page size, NUMA node, flags, iopoll_fds or "
		     "reserved fields; NUMA_NODE and NODE_LOCAL exclude each other)");
	return -EINVAL;
}

/*
 * Parameters every kernel with NO_MMAP (6.5+) rejects whatever the memory:
 * refused here with the kernel's errno and a reason, before any memory is
 * taken.  The kernel checks some of them only after it pinned the ring's
 * memory, so a failed setup cost an arena slot (quarantined: its teardown
 * may still write there) and a second, kernel-mapped setup, and was then
 * told as a memory story.  Only rules that hold on every such kernel; the
 * rest is the kernel's to judge (and kernel_ring_error's to tell).
 */
int hr_check_setup_params(const struct io_uring_params *p)
{
	unsigned f = p->flags;
	long cpus;

	for (size_t i = 0; i < sizeof(p->resv) / sizeof(p->resv[0]); i++) {
		if (p->resv[i]) {
			hr_set_error("io_uring_params.resv[%zu] is %u: must be zero", i, p->resv[i]);
			return -EINVAL;
		}
	}
	if ((f & IORING_SETUP_DEFER_TASKRUN) && !(f & IORING_SETUP_SINGLE_ISSUER)) {
		hr_set_error("IORING_SETUP_DEFER_TASKRUN requires IORING_SETUP_SINGLE_ISSUER");
		return -EINVAL;
	}
	if ((f & IORING_SETUP_DEFER_TASKRUN) && (f & IORING_SETUP_SQPOLL)) {
		hr_set_error("IORING_SETUP_DEFER_TASKRUN cannot be combined with "
			     "IORING_SETUP_SQPOLL");
		return -EINVAL;
	}
	if ((f & IORING_SETUP_ATTACH_WQ) && fcntl((int)p->wq_fd, F_GETFD) < 0) {
		hr_set_error("IORING_SETUP_ATTACH_WQ: wq_fd %d is not an open file descriptor",
			     (int)p->wq_fd);
		return -ENXIO;
	}
	if (!(f & IORING_SETUP_SQPOLL) || !(f & IORING_SETUP_SQ_AFF))
		return 0;
	/* Only then: sysconf reads /sys (3 syscalls, ~5 us a ring otherwise). */
	cpus = sysconf(_SC_NPROCESSORS_CONF);
	if (cpus > 0 && p->sq_thread_cpu >= (unsigned long)cpus) {
		hr_set_error("sq_thread_cpu %u: this machine has CPUs 0-%ld", p->sq_thread_cpu,
			     cpus - 1);
		hr_explain_sq_cpu(p);	/* and which of them the cpuset allows */
		return -EINVAL;
	}
	return 0;
}
